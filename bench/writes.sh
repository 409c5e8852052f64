# bench/writes.sh -- the "writes" section of bench/run.sh (sourced, not run).
#
# What an application pays to write (and to read a row back) through a
# masking view, against the same work on tables pii_guard does not govern --
# all in one run on one cluster.  The targets this section checks (README,
# Performance):
#
#   bulk INSERT through the masking view   >= 0.8x the rows per second of the
#                                             same table with encrypted columns
#                                             and no masking view
#   point read by primary key, pgbench     >= 0.9x of a plain table (-M prepared)
#                                          >= 0.8x of a plain table (-M simple)
#   UPDATE of an encrypted column by       >= 0.7x of a plain table
#     primary key, pgbench
#
# Tables: three copies of a customers table as an application creates it
# (id bigserial primary key, name, phone, national_id, email, address, city,
# sales_owner, created_at), WRITES_ROWS rows each (default 100,000), the
# primary key their only index, autovacuum off on them (we VACUUM ANALYZE
# ourselves, so that no worker wakes up inside a measurement):
#
#   customers        protected: phone and national_id encrypted_text, and
#                    name, phone, national_id, email, address classified
#                    'sensitive' with masks.  public.customers is the masking
#                    view; the table is public_pii.customers.
#   customers_enc    the same columns and types, encrypted_text included,
#                    and no masking view: what an application that encrypts
#                    without pii_guard's policy writes to.
#   customers_plain  text everywhere, no pii_guard object at all.
#
# Roles (non-superusers, so that nothing is exempt by accident):
#
#   bench_sales   a profile (NOLOGIN) like examples/policy.sql's sales:
#                 clearance 'sensitive' (so it sees every column in clear),
#                 SELECT, INSERT and UPDATE on customers
#   bench_rep     LOGIN, member of bench_sales: a governed role; all its
#                 statements go through the masking view
#   bench_owner   LOGIN, owns customers_enc and customers_plain, member of
#                 pii_guard_encryptor (the role pii_guard requires of anyone
#                 who encrypts outside a masking view)
#
# Method
#   - Bulk insert: WRITES_ROWS rows sent as multi-row INSERT ... VALUES
#     statements of 1,000 rows (what psycopg2's execute_values and ORMs'
#     bulk_create send), one psql session, each statement its own
#     transaction; the same statements, but for the table's name, into the
#     three tables.  Timed from the client; before each run TRUNCATE ...
#     RESTART IDENTITY, CHECKPOINT and a drained audit queue; the targets
#     alternate (plain, encrypted, view, plain, ...), BENCH_RUNS rounds, best
#     kept.  After each run the row count is checked; after the last, the
#     first and last rows must hold what was sent (decrypted as superuser,
#     and as bench_rep sees them through the view).  The last run's rows
#     stay for the pgbench runs.
#   - pgbench: 2 clients; each side of a comparison gets BENCH_SECONDS in two
#     runs of half that, in the order A B B A (so that the machine's load
#     changing weighs on both alike), its TPS the mean of the two; six such
#     measurements keep the section near two minutes.  Every run starts
#     after a VACUUM (the updates leave dead rows), a CHECKPOINT and a
#     drained audit queue.  A run that aborts or reports a
#     failed transaction stops the benchmark.  Reads: the same SELECT of
#     every column by a random id, as bench_rep through the masking view and
#     as bench_owner on customers_plain.  Updates (-M simple, pgbench's
#     default): UPDATE ... SET phone = :newvalue WHERE id = :id, with new
#     values that no inserted row has (prefix 199), so that afterwards the
#     rows changed can be counted (decrypted, as superuser) and must be
#     between 1 and the transactions pgbench reports; then one UPDATE by
#     hand must change one row, stored encrypted, to the value written.
#   - That the governed role goes through the masking view is checked, not
#     assumed: customers is a view for it, the base table refuses it, and
#     its reads and updates leave read and write events in the audit.
#   - pii_guard's read audit is on (its default) for the reads through the
#     view; every write through the view is audited too (always).  Export
#     limits: none (the default).

WRITES_ROWS=${WRITES_ROWS:-100000}
WRITES_BATCH=1000

# The customers table, with TYPE for phone and national_id.
writes_table() {	# writes_table NAME TYPE
	cat <<SQL
CREATE TABLE $1 (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    phone       $2,
    national_id $2,
    email       text,
    address     text,
    city        text,
    sales_owner name NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_enabled = off);
SQL
}

# writes_insert NAME ROLE TABLE BASE: run the bulk-insert statements into
# TABLE as ROLE into an emptied BASE, check the row count, and append the
# microseconds it took to WMS[NAME].
declare -A WMS=()
writes_insert() {
	local name=$1 role=$2 table=$3 base=$4 t0 t1 n
	sql -c "TRUNCATE $base RESTART IDENTITY" -c "CHECKPOINT" >/dev/null
	drain
	sed "s/@TABLE@/$table/" "$PGG_WORK/writes_insert.sql" >"$PGG_WORK/writes_$name.sql"
	t0=$(date +%s%N)
	psql -X -q -v ON_ERROR_STOP=1 -U "$role" -f "$PGG_WORK/writes_$name.sql" >/dev/null ||
		bench_die "writes: the bulk insert into $table as $role failed"
	t1=$(date +%s%N)
	WMS[$name]="${WMS[$name]:-} $(( (t1 - t0) / 1000 ))"
	n=$(sql -c "SELECT count(*) FROM $base")
	[ "$n" = "$WRITES_ROWS" ] || bench_die "writes: $base holds $n rows after the insert as $role, not $WRITES_ROWS"
}

# writes_rate NAME -> rows per second of the best run in WMS[NAME]
writes_rate() {
	# shellcheck disable=SC2086
	printf '%s\n' ${WMS[$1]} | awk -v n="$WRITES_ROWS" '
		NR == 1 || $1 < best { best = $1 } END { printf "%.0f", n / (best / 1e6) }'
}
writes_us() { awk -v r="$1" 'BEGIN { printf "%.2f", 1e6 / r }'; }	# rows/s -> µs per row
writes_spread() {
	# shellcheck disable=SC2086
	printf '%s\n' ${WMS[$1]} | awk '
		NR == 1 || $1 < best { best = $1 } NR == 1 || $1 > worst { worst = $1 }
		END { if (NR > 1) printf "%.0f%%", (worst / best - 1) * 100; else print "(1 run)" }'
}

# writes_pgbench NAME ROLE MODE SCRIPT SECONDS: one pgbench run; its TPS is
# appended to WRUNS[NAME], its transactions added to WTX[NAME].  An aborted
# client, a failed transaction or no transaction at all stops the benchmark.
declare -A WRUNS=() WTX=() WTPS=()
writes_pgbench() {
	local name=$1 role=$2 mode=$3 script=$4 secs=$5 out=$PGG_WORK/writes_pgbench.out failed tx tps
	# (Each run starts from a vacuumed table: the updates leave dead rows.)
	sql -c "VACUUM customers_plain, public_pii.customers" -c "CHECKPOINT" >/dev/null
	drain
	if ! pgbench -n -h "$PGHOST" -p "$PGPORT" -U "$role" -M "$mode" -c 2 -j 2 -T "$secs" \
		-f "$script" postgres >"$out" 2>&1; then
		tail -15 "$out" | sed 's/^/    /' >&2
		bench_die "writes: pgbench $name as $role failed"
	fi
	tx=$(awk '/^number of transactions actually processed: / { print $6 }' "$out")
	failed=$(awk '/^number of failed transactions: / { print $5 }' "$out")
	tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$out")
	if [ "${failed:-0}" != 0 ] || [ "${tx:-0}" -le 0 ] || [ "${tps:-0}" -le 0 ]; then
		sed 's/^/    /' "$out" >&2
		bench_die "writes: pgbench $name as $role: ${failed:-?} failed transactions, ${tx:-no} transactions"
	fi
	WRUNS[$name]="${WRUNS[$name]:-}${WRUNS[$name]:+ }$tps"
	WTX[$name]=$(( ${WTX[$name]:-0} + tx ))
}

# writes_pair MODE NAME_A ROLE_A SCRIPT_A NAME_B ROLE_B SCRIPT_B: A and B
# side by side, BENCH_SECONDS each, as two runs of half that in the order
# A B B A, so that a change in the machine's load during the four runs
# weighs on both alike.  WTPS[NAME] is the mean of a side's two runs.
writes_pair() {
	local mode=$1 half=$(( SECS / 2 > 0 ? SECS / 2 : 1 )) name
	writes_pgbench "$2" "$3" "$mode" "$4" "$half"
	writes_pgbench "$5" "$6" "$mode" "$7" "$half"
	writes_pgbench "$5" "$6" "$mode" "$7" "$half"
	writes_pgbench "$2" "$3" "$mode" "$4" "$half"
	for name in "$2" "$5"; do
		# shellcheck disable=SC2086
		WTPS[$name]=$(printf '%s\n' ${WRUNS[$name]} | awk '{ s += $1 } END { printf "%.0f", s / NR }')
	done
}

# writes_tps_row LABEL NAME [PEER]: a report line, TPS (and its two runs),
# and the ratio to PEER's.
writes_tps_row() {
	local extra=""
	[ -z "${3:-}" ] || extra="  $(ratio "${WTPS[$2]}" "${WTPS[$3]}")× of plain"
	say "$(printf '    %-62s %7s  (runs %s)%s' "$1" "${WTPS[$2]}" "${WRUNS[$2]// /, }" "$extra")"
}

# writes_as ROLE SQL: one statement as ROLE (a session of its own).
writes_as() { psql -X -q -v ON_ERROR_STOP=1 -tA -U "$1" -c "$2"; }

writes() {
	local n=$WRITES_ROWS
	say "== writes: customers table, $n rows; bulk INSERT in batches of $WRITES_BATCH rows (best of $RUNS);" \
		"pgbench, 2 clients, ${SECS}s per side of each comparison"
	[ "$n" -ge "$WRITES_BATCH" ] && [ $((n % WRITES_BATCH)) -eq 0 ] ||
		bench_die "writes: WRITES_ROWS ($n) must be a multiple of $WRITES_BATCH"

	sql <<SQL >/dev/null
SET client_min_messages = warning;
CREATE ROLE bench_sales NOLOGIN;
CREATE ROLE bench_rep LOGIN IN ROLE bench_sales;
CREATE ROLE bench_owner LOGIN IN ROLE pii_guard_encryptor;
$(writes_table customers pii_guard.encrypted_text)
$(writes_table customers_enc pii_guard.encrypted_text)
$(writes_table customers_plain text)
ALTER TABLE customers_enc OWNER TO bench_owner;
ALTER TABLE customers_plain OWNER TO bench_owner;
-- Like examples/policy.sql: ordinary grants to the profile, which move to
-- the masking view when the table is protected.
GRANT SELECT, INSERT, UPDATE ON customers TO bench_sales;
GRANT USAGE ON SEQUENCE customers_id_seq TO bench_sales;
SELECT pii_guard.protect_table('public.customers');
SELECT pii_guard.protect_column('customers', 'name',        'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('customers', 'phone',       'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('customers', 'national_id', 'sensitive', 'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('customers', 'email',       'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.protect_column('customers', 'address',     'sensitive', 'pii_guard.mask_address(text)');
SELECT pii_guard.set_clearance('bench_sales', 'sensitive', 'bench: contacts in clear');
-- Data keys are created on first use: not inside a measurement.
SELECT pii_guard.encrypt('warm up the data keys');
SQL

	# The statements: WRITES_ROWS realistic rows, 1,000 to a statement, the
	# table's name left as @TABLE@.  Phones as in the crypto section (no
	# prefix 199, which the updates below write); 18-character ID numbers.
	sql >"$PGG_WORK/writes_insert.sql" <<SQL
SELECT 'INSERT INTO @TABLE@ (name, phone, national_id, email, address, city, sales_owner) VALUES '
       || string_agg(format('(%L,%L,%L,%L,%L,%L,%L)',
              (ARRAY['王','李','张','刘','陈','杨','黄','赵','吴','周'])[1 + g % 10]
                || (ARRAY['伟','芳','娜','敏','静','丽','强','磊','军','洋','勇','艳'])[1 + g / 10 % 12]
                || (ARRAY['','华','明','平','红'])[1 + g / 120 % 5],
              $CRYPTO_PHONE,
              (ARRAY['110101','310104','440305','330106','510107'])[1 + g % 5]
                || to_char(date '1960-01-01' + (g * 7919 % 16000), 'YYYYMMDD')
                || lpad((g % 1000)::text, 3, '0') || (g % 10)::text,
              'user' || g || '@example.com',
              (ARRAY['北京市朝阳区建国路','上海市浦东新区世纪大道','广东省深圳市南山区科技园路',
                     '浙江省杭州市西湖区文三路','四川省成都市武侯区人民南路'])[1 + g % 5]
                || (g % 900 + 1) || '号',
              (ARRAY['北京','上海','深圳','杭州','成都'])[1 + g % 5],
              'bench_rep'), ', ' ORDER BY g) || ';'
  FROM generate_series(1, $n) g
 GROUP BY (g - 1) / $WRITES_BATCH
 ORDER BY (g - 1) / $WRITES_BATCH;
SQL
	[ "$(wc -l <"$PGG_WORK/writes_insert.sql")" -eq $((n / WRITES_BATCH)) ] ||
		bench_die "writes: the insert statements were not generated"

	# --- the masking view is what the governed role writes to and reads ----
	local kind denied write_path
	kind=$(writes_as bench_rep "SELECT n.nspname || '.' || c.relname || ' ' || c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'customers'::regclass")
	[ "$kind" = "public.customers v" ] || bench_die "writes: customers is not a view for bench_rep ($kind)"
	denied=$(writes_as bench_rep "SELECT 1 FROM public_pii.customers LIMIT 1" 2>&1 || true)
	case $denied in
		*"permission denied"*) ;;
		*) bench_die "writes: bench_rep can read the base table public_pii.customers ($denied)" ;;
	esac
	# (Rewritten onto the base table when analysed, PostgreSQL 14-15; else
	# the view's INSTEAD OF row trigger.)
	if writes_as bench_rep "EXPLAIN (VERBOSE, COSTS OFF) UPDATE customers SET city = city WHERE id = 1" |
		grep -q "Update on public_pii.customers"; then
		write_path="rewritten onto the base table public_pii.customers (one statement, no trigger call per row)"
	else
		write_path=$(sql -c "SELECT string_agg(t.tgname || ' -> ' || t.tgfoid::regproc, ', ')
		                       FROM pg_trigger t WHERE t.tgrelid = 'public.customers'::regclass
		                        AND t.tgtype & 64 <> 0 AND t.tgtype & 1 <> 0")	# INSTEAD OF, FOR EACH ROW
		write_path="the INSTEAD OF row trigger ${write_path:-(none found)}"
	fi
	say "  writes through the masking view go through: $write_path"
	say "  read audit for bench_rep: pii_guard.audit_reads = $(writes_as bench_rep "SHOW pii_guard.audit_reads") (the default);" \
		"export limits: none (the default); writes are always audited"

	# --- 1. bulk insert ------------------------------------------------------
	local i
	for ((i = 0; i < RUNS; i++)); do
		writes_insert plain bench_owner customers_plain customers_plain
		writes_insert enc bench_owner customers_enc customers_enc
		writes_insert view bench_rep customers public_pii.customers
	done
	# What was inserted is what was sent, encrypted where the type says so.
	local expect got
	expect=$(sql -c "SELECT string_agg(phone || ' ' || national_id, ' ' ORDER BY id) FROM customers_plain WHERE id IN (1, $n)")
	got=$(sql -c "SELECT string_agg(pii_guard.decrypt(phone) || ' ' || pii_guard.decrypt(national_id), ' ' ORDER BY id) FROM customers_enc WHERE id IN (1, $n)")
	[ "$got" = "$expect" ] || bench_die "writes: customers_enc holds ($got), not ($expect)"
	got=$(sql -c "SELECT string_agg(pii_guard.decrypt(phone) || ' ' || pii_guard.decrypt(national_id), ' ' ORDER BY id) FROM public_pii.customers WHERE id IN (1, $n)")
	[ "$got" = "$expect" ] || bench_die "writes: public_pii.customers holds ($got), not ($expect)"
	got=$(writes_as bench_rep "SELECT string_agg(phone || ' ' || national_id, ' ' ORDER BY id) FROM customers WHERE id IN (1, $n)")
	[ "$got" = "$expect" ] || bench_die "writes: bench_rep sees ($got) through the view, not ($expect) in clear"
	local r_plain r_enc r_view
	r_plain=$(writes_rate plain)
	r_enc=$(writes_rate enc)
	r_view=$(writes_rate view)

	# --- 2. point reads ------------------------------------------------------
	sql -c "VACUUM ANALYZE customers_plain, customers_enc, public_pii.customers" >/dev/null
	local cols="id, name, phone, national_id, email, address, city, sales_owner" t
	for t in customers customers_plain; do
		cat >"$PGG_WORK/writes_r_$t.sql" <<EOF
\\set id random(1, $n)
SELECT $cols FROM $t WHERE id = :id;
EOF
		cat >"$PGG_WORK/writes_u_$t.sql" <<EOF
\\set id random(1, $n)
\\set newvalue random(19900000000, 19999999999)
UPDATE $t SET phone = :newvalue WHERE id = :id;
EOF
	done
	local reads0 reads1
	reads0=$(sql -c "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'read' AND session_role = 'bench_rep'")
	writes_pair prepared r_view_prep bench_rep "$PGG_WORK/writes_r_customers.sql" \
		r_plain_prep bench_owner "$PGG_WORK/writes_r_customers_plain.sql"
	writes_pair simple r_view_simple bench_rep "$PGG_WORK/writes_r_customers.sql" \
		r_plain_simple bench_owner "$PGG_WORK/writes_r_customers_plain.sql"
	drain
	reads1=$(sql -c "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'read' AND session_role = 'bench_rep'")
	# (Read events may be coalesced: there is at least one, not one per read.)
	[ "$reads1" -gt "$reads0" ] ||
		bench_die "writes: the reads through the masking view left no read event in the audit"

	# --- 3. updates of an encrypted column -----------------------------------
	local writes0 writes1 changed_view changed_plain
	writes0=$(sql -c "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'write' AND session_role = 'bench_rep'")
	writes_pair simple u_view bench_rep "$PGG_WORK/writes_u_customers.sql" \
		u_plain bench_owner "$PGG_WORK/writes_u_customers_plain.sql"
	drain
	writes1=$(sql -c "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'write' AND session_role = 'bench_rep'")
	[ "$writes1" -gt "$writes0" ] ||
		bench_die "writes: the updates through the masking view left no write event in the audit"
	changed_view=$(sql -c "SELECT count(*) FROM public_pii.customers WHERE pii_guard.decrypt(phone) LIKE '199%'")
	changed_plain=$(sql -c "SELECT count(*) FROM customers_plain WHERE phone LIKE '199%'")
	[ "$changed_view" -gt 0 ] && [ "$changed_view" -le "${WTX[u_view]}" ] ||
		bench_die "writes: $changed_view rows changed through the masking view for ${WTX[u_view]} updates"
	[ "$changed_plain" -gt 0 ] && [ "$changed_plain" -le "${WTX[u_plain]}" ] ||
		bench_die "writes: $changed_plain rows of customers_plain changed for ${WTX[u_plain]} updates"
	# One more, by hand: one row changed, and the value written is stored
	# encrypted and decrypts to what was written.
	got=$(writes_as bench_rep "UPDATE customers SET phone = '19900000042' WHERE id = 42 RETURNING phone")
	[ "$got" = 19900000042 ] || bench_die "writes: UPDATE through the view returned ($got)"
	got=$(sql -c "SELECT pii_guard.decrypt(phone) || ' ' || (phone::text LIKE 'pii_guard:%') FROM public_pii.customers WHERE id = 42")
	[ "$got" = "19900000042 true" ] || bench_die "writes: row 42 holds ($got) after the update"

	# --- report ---------------------------------------------------------------
	say "  bulk INSERT ... VALUES, $WRITES_BATCH rows per statement, rows per second (spread = worst run / best run - 1):"
	say "$(printf '    %-62s %7s  %s' "plain table, text columns (bench_owner)" "$r_plain" "$(writes_spread plain)")"
	say "$(printf '    %-62s %7s  %s' "encrypted columns, no masking view (bench_owner, encryptor)" "$r_enc" "$(writes_spread enc)")"
	say "$(printf '    %-62s %7s  %s' "through the masking view (bench_rep, governed)" "$r_view" "$(writes_spread view)")"
	say "    µs per row: plain $(writes_us "$r_plain"), encrypted $(writes_us "$r_enc"), masking view $(writes_us "$r_view");" \
		"view vs encrypted $(ratio "$r_view" "$r_enc")×, vs plain $(ratio "$r_view" "$r_plain")×; encrypted vs plain $(ratio "$r_enc" "$r_plain")×"
	say "  point read by primary key (SELECT of 8 columns), TPS, mean of two runs of $(( SECS / 2 > 0 ? SECS / 2 : 1 ))s (order A B B A):"
	writes_tps_row "-M prepared: plain table as its owner" r_plain_prep
	writes_tps_row "-M prepared: masking view as bench_rep (clear, read audit on)" r_view_prep r_plain_prep
	writes_tps_row "-M simple:   plain table as its owner" r_plain_simple
	writes_tps_row "-M simple:   masking view as bench_rep (clear, read audit on)" r_view_simple r_plain_simple
	say "    read events recorded for bench_rep: $((reads1 - reads0)) (for $((WTX[r_view_prep] + WTX[r_view_simple])) reads; events are coalesced)"
	say "  UPDATE customers SET phone = :newvalue WHERE id = :id, -M simple, TPS (the same way):"
	writes_tps_row "plain table as its owner" u_plain
	writes_tps_row "masking view as bench_rep (phone encrypted_text)" u_view u_plain
	say "    rows changed: plain $changed_plain of ${WTX[u_plain]} updates, masking view $changed_view of ${WTX[u_view]};" \
		"write events recorded for bench_rep: $((writes1 - writes0))"
	say "  targets:"
	check "bulk insert through the masking view vs encrypted table without view (ratio)" "$(ratio "$r_view" "$r_enc")" ">=" 0.8
	check "point read, -M prepared, masking view vs plain table (ratio)" "$(ratio "${WTPS[r_view_prep]}" "${WTPS[r_plain_prep]}")" ">=" 0.9
	check "point read, -M simple, masking view vs plain table (ratio)" "$(ratio "${WTPS[r_view_simple]}" "${WTPS[r_plain_simple]}")" ">=" 0.8
	check "UPDATE of an encrypted column, masking view vs plain table (ratio)" "$(ratio "${WTPS[u_view]}" "${WTPS[u_plain]}")" ">=" 0.7

	sql -c "SELECT pii_guard.unprotect_table('customers')" \
		-c "DROP TABLE customers, customers_enc, customers_plain" \
		-c "DROP OWNED BY bench_sales, bench_rep, bench_owner" \
		-c "DROP ROLE bench_rep, bench_sales, bench_owner" >/dev/null
	rm -f "$PGG_WORK"/writes_*
}
