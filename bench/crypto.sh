# bench/crypto.sh -- the "crypto" section of bench/run.sh (sourced, not run).
#
# What one encrypted value costs, on insert and on a decrypting scan, against
# the same work on plain text and against pgcrypto -- all in one run on one
# cluster, so that the ratios are comparable even where absolute figures are
# not.  The targets this section checks (README, Performance):
#
#   decrypting scan       <= 0.5 µs per value above the plain scan
#   encryption on insert  <= 0.8 µs per value above the plain insert
#   and both overheads at most pgcrypto's encrypt_iv/decrypt_iv (AES-CBC)
#
# Method
#   - N values (BENCH_ROWS, default 1,000,000) of realistic, distinct CN
#     mobile numbers: a real 3-digit prefix and 8 digits that g * 48271 mod
#     10^8 makes distinct (48271 is prime, so that is a bijection).  Every
#     variant inserts the same values with the same generator, so its cost
#     cancels out of the overheads.
#   - All tables are ordinary logged tables (autovacuum off on them: we
#     VACUUM ANALYZE ourselves, and a worker waking up mid-measurement on a
#     2-core machine would skew it).
#   - Inserts: TRUNCATE, CHECKPOINT (so that no checkpoint lands inside the
#     timed statement), then the timed INSERT; BENCH_RUNS times (default 3),
#     best run kept.  The last run's rows stay for the scans.
#   - Scans: VACUUM ANALYZE after loading (hint bits, visibility map), then
#     each query once untimed to warm the caches, then BENCH_RUNS timed runs,
#     best kept.  Every headline scan has the shape sum(length(...)), so that
#     each value is read, detoasted and (where encrypted) decrypted.
#   - Timing is server-side: clock_timestamp() around EXECUTE in a plpgsql
#     function (bench_times(), defined by run.sh), so client round trips and
#     psql start-up are not counted.  Parallel query and JIT are off for the
#     whole cluster: single-core figures.
#   - pgcrypto's pgp_sym_* derive a key from the passphrase (S2K) for every
#     value and cost ~1000x more, so they run once on a sample of
#     CRYPTO_SAMPLE rows (default 20,000) and are scaled to per-value cost.
#   - encrypt_iv uses a fixed IV: the cheapest (and insecure) way to use it,
#     so its figures are a lower bound for pgcrypto.  pii_guard draws a fresh
#     random nonce for every value and adds a blind index (HMAC-SHA256) and
#     an authentication tag.

CRYPTO_SAMPLE=${CRYPTO_SAMPLE:-20000}

# A realistic CN mobile number for each g of generate_series(1, n) g.
CRYPTO_PHONE="(ARRAY['130','131','132','133','134','135','136','137','138','139',
'147','150','151','152','153','155','156','157','158','159',
'166','176','177','178','180','181','182','183','186','189'])[1 + g % 30]
 || lpad((g::bigint * 48271 % 100000000)::text, 8, '0')"
CRYPTO_KEY="'\\x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'::bytea"
CRYPTO_IV="'\\x00000000000000000000000000000000'::bytea"
CRYPTO_PASS="'correct horse battery staple'"

# crypto_insert NAME TABLE ROWS STATEMENT: time an insert (or COPY) into an
# emptied TABLE, BENCH_RUNS times after a CHECKPOINT each, and record it.
crypto_insert() {
	local name=$1 table=$2 rows=$3 stmt=$4 runs=${5:-$RUNS} i ms times=()
	for ((i = 0; i < runs; i++)); do
		sql -c "TRUNCATE $table" -c "CHECKPOINT" >/dev/null
		ms=$(sql -c "SELECT (bench_times(\$bench\$$stmt\$bench\$, 1))[1]")
		times+=("$ms")
	done
	record "$name" "$rows" "${times[@]}"
}

# crypto_scan NAME ROWS QUERY [RUNS]: warm-up run, then RUNS timed runs.
crypto_scan() {
	local name=$1 rows=$2 query=$3 runs=${4:-$RUNS} warmup=1 times
	[ "$runs" -gt 1 ] || warmup=0
	times=$(sql -c "SELECT unnest(bench_times(\$bench\$$query\$bench\$, $runs, $warmup))")
	# shellcheck disable=SC2086
	record "$name" "$rows" $times
}

crypto() {
	local sample=$((CRYPTO_SAMPLE < N ? CRYPTO_SAMPLE : N))
	local gen="FROM generate_series(1, $N) g"
	local gen_sample="FROM generate_series(1, $sample) g"
	local phones=$PGG_WORK/bench/phones.txt

	say "== crypto: $N phone numbers; pgp_sym_* on a sample of $sample; best of $RUNS runs"
	sql <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TABLE plain (phone text) WITH (autovacuum_enabled = off);
CREATE TABLE enc (phone pii_guard.encrypted_text) WITH (autovacuum_enabled = off);
CREATE TABLE cbc (phone bytea) WITH (autovacuum_enabled = off);
CREATE TABLE pgp (phone bytea) WITH (autovacuum_enabled = off);
CREATE TABLE wide (phone text) WITH (autovacuum_enabled = off);
-- Data keys are created on first use: not inside a measurement.
SELECT pii_guard.encrypt('warm up the data keys');
-- The same values as a file, for the COPY rows (the type's input function).
COPY (SELECT $CRYPTO_PHONE $gen) TO '$phones';
SQL

	# --- inserts ---------------------------------------------------------
	crypto_insert ins_plain plain "$N" \
		"INSERT INTO plain (phone) SELECT $CRYPTO_PHONE $gen"
	# A text expression assigned to an encrypted_text column: the assignment
	# cast, which is pii_guard.encrypt(text).  This is the application path.
	crypto_insert ins_enc enc "$N" \
		"INSERT INTO enc (phone) SELECT $CRYPTO_PHONE $gen"
	crypto_insert ins_enc_fn enc "$N" \
		"INSERT INTO enc (phone) SELECT pii_guard.encrypt($CRYPTO_PHONE) $gen"
	# COPY and untyped literals go through the type's input function instead.
	crypto_insert copy_plain plain "$N" "COPY plain (phone) FROM '$phones'"
	crypto_insert copy_enc enc "$N" "COPY enc (phone) FROM '$phones'"
	crypto_insert ins_cbc cbc "$N" \
		"INSERT INTO cbc (phone) SELECT encrypt_iv(convert_to($CRYPTO_PHONE, 'UTF8'), $CRYPTO_KEY, $CRYPTO_IV, 'aes-cbc/pad:pkcs') $gen"
	# Diagnostic: plain text as wide as an envelope (11 + 50 bytes), to split
	# the encrypting insert's overhead into wider rows and encryption.
	crypto_insert ins_wide wide "$N" \
		"INSERT INTO wide (phone) SELECT $CRYPTO_PHONE || '$(printf '%050d' 0)' $gen"
	crypto_insert ins_pgp pgp "$sample" \
		"INSERT INTO pgp (phone) SELECT pgp_sym_encrypt($CRYPTO_PHONE, $CRYPTO_PASS) $gen_sample" 1

	# --- scans -----------------------------------------------------------
	sql -c "VACUUM ANALYZE plain, enc, cbc, pgp, wide" >/dev/null
	crypto_scan scan_plain "$N" "SELECT sum(length(phone)) FROM plain"
	crypto_scan scan_enc "$N" "SELECT sum(length(pii_guard.decrypt(phone))) FROM enc"
	crypto_scan scan_cbc "$N" \
		"SELECT sum(length(convert_from(decrypt_iv(phone, $CRYPTO_KEY, $CRYPTO_IV, 'aes-cbc/pad:pkcs'), 'UTF8'))) FROM cbc"
	crypto_scan scan_pgp "$sample" \
		"SELECT sum(length(pgp_sym_decrypt(phone, $CRYPTO_PASS))) FROM pgp" 1
	# Diagnostics: the same scans reading each value without decrypting it,
	# to split the decrypting scan's overhead into wider rows and decryption.
	crypto_scan raw_plain "$N" "SELECT sum(pg_column_size(phone)) FROM plain"
	crypto_scan raw_enc "$N" "SELECT sum(pg_column_size(phone)) FROM enc"
	# ... and encrypt() alone, in a scan: its CPU cost without the insert.
	crypto_scan raw_encrypt "$N" "SELECT sum(pg_column_size(pii_guard.encrypt(phone))) FROM plain"

	# Correctness guard: the decrypting scans must see the values inserted.
	local check_sum
	check_sum=$(sql -c "SELECT (SELECT sum(length(phone)) FROM plain) = (SELECT sum(length(pii_guard.decrypt(phone))) FROM enc)
	                       AND (SELECT sum(length(phone)) FROM plain) = (SELECT sum(length(convert_from(decrypt_iv(phone, $CRYPTO_KEY, $CRYPTO_IV, 'aes-cbc/pad:pkcs'), 'UTF8'))) FROM cbc)
	                       AND (SELECT count(*) FROM plain) = $N")
	[ "$check_sum" = t ] || bench_die "crypto: the tables do not hold the same $N values"
	local sizes
	sizes=$(sql -F ' ' -c "SELECT pg_size_pretty(pg_table_size('plain')), pg_size_pretty(pg_table_size('enc')), pg_size_pretty(pg_table_size('cbc'))")

	# --- report ----------------------------------------------------------
	say "  µs per value (spread = worst run / best run - 1)"
	crypto_row() { say "$(printf '  %-56s %9s  %s' "$1" "${US[$2]}" "${SPREAD[$2]}")"; }
	crypto_row "INSERT ... SELECT, plain text" ins_plain
	crypto_row "INSERT ... SELECT, pii_guard (assignment cast)" ins_enc
	crypto_row "INSERT ... SELECT, pii_guard.encrypt()" ins_enc_fn
	crypto_row "COPY FROM file, plain text" copy_plain
	crypto_row "COPY FROM file, pii_guard (type input function)" copy_enc
	crypto_row "INSERT ... SELECT, pgcrypto encrypt_iv AES-256-CBC" ins_cbc
	crypto_row "INSERT ... SELECT, pgcrypto pgp_sym_encrypt (sample)" ins_pgp
	crypto_row "INSERT ... SELECT, plain text as wide as an envelope" ins_wide
	crypto_row "scan sum(length(phone)), plain text" scan_plain
	crypto_row "scan sum(length(pii_guard.decrypt(phone)))" scan_enc
	crypto_row "scan sum(length(convert_from(decrypt_iv(...))))" scan_cbc
	crypto_row "scan sum(length(pgp_sym_decrypt(...))) (sample)" scan_pgp
	crypto_row "scan sum(pg_column_size(phone)), plain text" raw_plain
	crypto_row "scan sum(pg_column_size(phone)), pii_guard, no decrypt" raw_enc
	crypto_row "scan sum(pg_column_size(pii_guard.encrypt(phone))), plain" raw_encrypt
	say "  table sizes: plain, pii_guard, encrypt_iv: $sizes"

	local e_pii e_fn e_copy e_cbc e_pgp e_width e_crypto d_pii d_cbc d_pgp d_width d_crypto
	e_pii=$(minus "${US[ins_enc]}" "${US[ins_plain]}")
	e_fn=$(minus "${US[ins_enc_fn]}" "${US[ins_plain]}")
	e_copy=$(minus "${US[copy_enc]}" "${US[copy_plain]}")
	e_cbc=$(minus "${US[ins_cbc]}" "${US[ins_plain]}")
	e_pgp=$(minus "${US[ins_pgp]}" "${US[ins_plain]}")
	d_pii=$(minus "${US[scan_enc]}" "${US[scan_plain]}")
	d_cbc=$(minus "${US[scan_cbc]}" "${US[scan_plain]}")
	d_pgp=$(minus "${US[scan_pgp]}" "${US[scan_plain]}")
	e_width=$(minus "${US[ins_wide]}" "${US[ins_plain]}")
	e_crypto=$(minus "${US[raw_encrypt]}" "${US[raw_plain]}")
	d_width=$(minus "${US[raw_enc]}" "${US[raw_plain]}")
	d_crypto=$(minus "$d_pii" "$d_width")
	say "  overhead over plain text, µs per value        encrypt (insert)  decrypt (scan)"
	say "$(printf '  %-46s %16s  %14s' "pii_guard (AES-256-GCM + blind index)" "$e_pii" "$d_pii")"
	say "$(printf '  %-46s %16s  %14s' "pii_guard, encrypt() / COPY" "$e_fn / $e_copy" "")"
	say "$(printf '  %-46s %16s  %14s' "pgcrypto encrypt_iv/decrypt_iv (AES-256-CBC)" "$e_cbc" "$d_cbc")"
	say "$(printf '  %-46s %16s  %14s' "pgcrypto pgp_sym_encrypt/pgp_sym_decrypt" "$e_pgp" "$d_pgp")"
	# Where the overheads go: the wider-row baselines (ins_wide, raw_enc) and
	# encrypt() evaluated in a scan with nothing stored (raw_encrypt).
	say "  where it goes, µs per value:"
	say "    encrypting insert $e_pii ≈ wider rows $e_width + encrypt() itself $e_crypto" \
		"(remainder $(minus "$e_pii" "$(awk -v a="$e_width" -v b="$e_crypto" 'BEGIN { print a + b }')"))"
	say "    decrypting scan   $d_pii = wider rows $d_width + decrypt() itself $d_crypto"
	say "  ratios of overheads:"
	say "    pii_guard / encrypt_iv $(ratio "$e_pii" "$e_cbc")×, pii_guard / decrypt_iv $(ratio "$d_pii" "$d_cbc")×" \
		"(below 1: pii_guard costs less)"
	say "    pgp_sym_encrypt / pii_guard $(ratio "$e_pgp" "$e_pii")×, pgp_sym_decrypt / pii_guard $(ratio "$d_pgp" "$d_pii")×" \
		"(pgp_sym_* cost that many times more)"
	say "  targets:"
	check "decrypting scan, µs per value above the plain scan" "$d_pii" "<=" 0.5
	check "encryption on insert, µs per value above the plain insert" "$e_pii" "<=" 0.8
	check "decrypt overhead / decrypt_iv's" "$(ratio "$d_pii" "$d_cbc")" "<=" 1
	check "encrypt overhead / encrypt_iv's" "$(ratio "$e_pii" "$e_cbc")" "<=" 1

	sql -c "DROP TABLE plain, enc, cbc, pgp, wide" >/dev/null
	rm -f "$phones"
}
