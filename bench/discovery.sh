# bench/discovery.sh -- the "discovery" and "copy" sections of bench/run.sh
# (sourced, not run).
#
# discovery: what finding personal data costs, and how often it is right.
#
#   (a) pii_guard.discover() timed on a table of DISCOVER_ROWS rows (default
#       10,000,000) of eight columns as an application has them -- id, a
#       mobile number, an 18-character resident ID (real district code,
#       birth date, MOD 11-2 check character), a UnionPay card (prefix 62,
#       Luhn check digit), an e-mail address, a Chinese name, an order number
#       and a free-text note -- after ANALYZE, as a table in use would be
#       (discover() samples a table by its reltuples).  The first call and
#       the best of BENCH_RUNS are reported, and the same on the table's
#       first 1,000,000 rows for scale.  Target: seconds (checked: < 10 s).
#       The table is built from 1,000,000 distinct generated rows inserted
#       again with other ids until it has DISCOVER_ROWS (UNLOGGED: what is
#       measured is reading it, not writing WAL for it).
#   (b) detect_kind() precision and recall on labelled values:
#       DISCOVERY_LABELLED (default 2,000) true values of each of the ten
#       kinds, in the formats people write them (mobile numbers with +86 and
#       separators, cards grouped by four and older domestic cards outside
#       62, landlines with parentheses or an extension, addresses without a
#       province, rare and compound surnames ...), and
#       as many decoys of each of twelve groups labelled "no kind" (order
#       numbers shaped like mobiles and cards, ID numbers with a wrong check
#       character or an impossible date, cards failing Luhn, random digit
#       strings, words, dates, amounts, codes, free text).  The formats and
#       their shares are this file's guesses at real data, not the
#       detector's rules: the misses and false positives are listed by
#       format so that the figures can be read for what they are.
#   (c) discover() column by column on the examples' database
#       (examples/roles.sql, schema.sql, data.sql with
#       DISCOVERY_DEMO_CUSTOMERS customers, default 100,000; NOT policy.sql,
#       so nothing is protected yet), against the truth written below from
#       examples/schema.sql: as loaded (phone, national ID and bank card are
#       pii_guard.encrypted_text there) and in a plaintext copy of the same
#       tables (how an application that never encrypted would hold them).
#
# copy: a masked copy of a customers table (COPY_ROWS rows, default
# 200,000; name, phone, national_id, bank_card, email, address masked), by
# pii_guard.anonymize_into() and by PostgreSQL Anonymizer 1.1.0, against a
# plain CREATE TABLE ... AS SELECT * of the same table.  The same generated
# rows, in a database of each extension's own:
#
#   copy_pii    pii_guard: the table protected with protect_column (levels
#               and masks as examples/policy.sql), copied with
#               pii_guard.anonymize_into(target, '{public}') -- and a second
#               copy of the table, in schema crm_enc, whose phone,
#               national_id and bank_card are encrypted_text (as
#               examples/schema.sql has them), copied the same way; and
#               its anonymised dump, bin/pii_guard_dump (anonymize_into and
#               pg_dump of the copy: one run).  If this build has no
#               anonymize_into, that is said and the rest is still measured.
#   copy_anon   the anonymizer, built with PGXS from the tarball in
#               ../shared/peers (ANON_TARBALL), cached under
#               ${TMPDIR:-/tmp}/pii_guard-bench-peers so that a rerun does
#               not rebuild it, installed into the run's private
#               installation like pii_guard (never into the system's), and
#               loaded only in this database (session_preload_libraries:
#               its SECURITY LABEL provider lives in its library; static
#               masking and its dump need no shared_preload_libraries).
#               Masking rules: partial() for phone, ID and card (the shape of
#               pii_guard's masks), pseudo_last_name() and pseudo_email()
#               (consistent pseudonyms), fake_address().  Measured: a masked
#               copy in one pass (CREATE TABLE AS SELECT with
#               anon.mask_filters(), what its dump does per table), static
#               masking (anon.anonymize_table() on a plain copy: an UPDATE of
#               every row), and its anonymous dump (bin/pg_dump_anon.sh, the
#               shell version shipped in 1.1.0 and deprecated there; the Go
#               version needs a Go toolchain and modules from the network)
#               against pg_dump of the same table.
#
# Every copy is checked, not assumed: its row count, and no row holding its
# original's value in any masked column (joined by id); a dump is checked by
# looking for 1,000 real phone numbers in it (and in the plain dump, where
# they must be found, so that the check is known to work).

DISCOVER_ROWS=${DISCOVER_ROWS:-10000000}
DISCOVERY_LABELLED=${DISCOVERY_LABELLED:-2000}
DISCOVERY_DEMO_CUSTOMERS=${DISCOVERY_DEMO_CUSTOMERS:-100000}
COPY_ROWS=${COPY_ROWS:-200000}
ANON_VERSION=1.1.0
ANON_TARBALL=${ANON_TARBALL:-$PGG_REPO/../shared/peers/postgresql_anonymizer-$ANON_VERSION.tgz}

# say_lines: say every line of standard input.
say_lines() {
	local line
	while IFS= read -r line; do say "$line"; done
}

# db_ms DB SQL: milliseconds the server took for SQL (one statement) in
# database DB, measured by psql's \timing (the round trip of that statement
# only, not the connection).
db_ms() {
	psql -X -q -v ON_ERROR_STOP=1 -tA -d "$1" -c '\timing on' -c "$2" >"$PGG_WORK/db_ms.raw" ||
		{ cat "$PGG_WORK/db_ms.raw" >&2; bench_die "db_ms: $2 failed in $1"; }
	awk '/^Time: / { t = $2 } END { if (t == "") exit 1; printf "%.1f", t }' "$PGG_WORK/db_ms.raw"
}

best() { printf '%s\n' "$@" | sort -g | head -1; }		# best MS... -> the smallest
secs() { awk -v ms="$1" 'BEGIN { printf "%.2f", ms / 1000 }'; }	# ms -> seconds
# ms -> "S s, U µs per row" for a copy of COPY_ROWS rows
copy_t() { awk -v ms="$1" -v n="$COPY_ROWS" 'BEGIN { printf "%.2f s, %.1f µs per row", ms / 1000, ms * 1000 / n }'; }

# The generators' SQL helpers, for the session that generates (pg_temp).
# Every choice is a hash of the row number and a seed, so every run
# produces the same rows.
gen_helpers() {
	cat <<'SQL'
SET client_min_messages = warning;
-- r(g, seed, n): a deterministic draw in 0 .. n-1; pick(array, g, seed): an element
CREATE FUNCTION pg_temp.r(g bigint, seed int, n bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
AS $$ SELECT (hashint8extended(g, seed) & 9223372036854775807) % n $$;
CREATE FUNCTION pg_temp.pick(a text[], g bigint, seed int) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT a[1 + pg_temp.r(g, seed, cardinality(a))] $$;
-- n random digits
CREATE FUNCTION pg_temp.digits(g bigint, seed int, n int) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT CASE WHEN n <= 12 THEN lpad(pg_temp.r(g, seed, (10::bigint ^ n)::bigint)::text, n, '0')
                  ELSE lpad(pg_temp.r(g, seed, 1000000000000)::text, 12, '0')
                       || lpad(pg_temp.r(g, seed + 1, (10::bigint ^ (n - 12))::bigint)::text, n - 12, '0') END $$;
-- the i-th digit of a string of digits
CREATE FUNCTION pg_temp.d(s text, i int) RETURNS int LANGUAGE sql IMMUTABLE
AS $$ SELECT ascii(substr(s, i, 1)) - 48 $$;
-- GB 11643 check character of a 17-digit resident ID body: ISO 7064 MOD 11-2
-- (written out rather than aggregated, so that the planner inlines it)
CREATE FUNCTION pg_temp.cn_id_check(b text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT substr('10X98765432', 1 + (7 * pg_temp.d(b, 1) + 9 * pg_temp.d(b, 2) + 10 * pg_temp.d(b, 3)
        + 5 * pg_temp.d(b, 4) + 8 * pg_temp.d(b, 5) + 4 * pg_temp.d(b, 6) + 2 * pg_temp.d(b, 7)
        + pg_temp.d(b, 8) + 6 * pg_temp.d(b, 9) + 3 * pg_temp.d(b, 10) + 7 * pg_temp.d(b, 11)
        + 9 * pg_temp.d(b, 12) + 10 * pg_temp.d(b, 13) + 5 * pg_temp.d(b, 14) + 8 * pg_temp.d(b, 15)
        + 4 * pg_temp.d(b, 16) + 2 * pg_temp.d(b, 17)) % 11, 1) $$;
-- Luhn check digit of a body of up to 18 digits (zero-padded to 18: leading
-- zeros change no sum; the doubled digits are then at the even positions)
CREATE FUNCTION pg_temp.dbl(s text, i int) RETURNS int LANGUAGE sql IMMUTABLE
AS $$ SELECT ascii(substr('0246813579', 1 + pg_temp.d(s, i), 1)) - 48 $$;
CREATE FUNCTION pg_temp.luhn18(b text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT ((10 - (pg_temp.d(b, 1) + pg_temp.dbl(b, 2) + pg_temp.d(b, 3) + pg_temp.dbl(b, 4)
        + pg_temp.d(b, 5) + pg_temp.dbl(b, 6) + pg_temp.d(b, 7) + pg_temp.dbl(b, 8)
        + pg_temp.d(b, 9) + pg_temp.dbl(b, 10) + pg_temp.d(b, 11) + pg_temp.dbl(b, 12)
        + pg_temp.d(b, 13) + pg_temp.dbl(b, 14) + pg_temp.d(b, 15) + pg_temp.dbl(b, 16)
        + pg_temp.d(b, 17) + pg_temp.dbl(b, 18)) % 10) % 10)::text $$;
CREATE FUNCTION pg_temp.luhn(b text) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT pg_temp.luhn18(lpad(b, 18, '0')) $$;
SQL
}

# The value generators both sections use, as SQL expressions of the row
# number g (a bigint column or variable in scope).
GEN_MOBILE="'1' || (3 + pg_temp.r(g, 1, 7)) || pg_temp.digits(g, 2, 9)"
GEN_ID_BODY="pg_temp.pick('{110101,110105,310104,310115,440305,440106,330106,320102,510107,420106,610113,370202,350203,430104,410105}', g, 10)
             || to_char(date '1950-01-01' + pg_temp.r(g, 11, 20000)::int, 'YYYYMMDD') || pg_temp.digits(g, 12, 3)"
GEN_CARD_BODY="'62' || pg_temp.pick('{2202,1226,2848,1700,2588,5911}', g, 13)
               || pg_temp.digits(g, 14, CASE WHEN pg_temp.r(g, 15, 2) = 0 THEN 9 ELSE 12 END)"
GEN_NAME="pg_temp.pick('{王,李,张,刘,陈,杨,黄,赵,吴,周,徐,孙,马,朱,胡,郭,何,林,高,罗,郑,梁,谢,宋,唐,许}', g, 4)
          || pg_temp.pick('{伟,芳,娜,敏,静,丽,强,磊,军,洋,勇,艳,杰,涛,明,超,霞,平,刚,华}', g, 5)
          || pg_temp.pick('{\"\",华,明,平,红,婷,宇,浩}', g, 6)"
GEN_EMAIL="pg_temp.pick('{wang,li,zhang,liu,chen,yang,huang,zhao,wu,zhou}', g, 16) || g
           || '@' || pg_temp.pick('{qq.com,163.com,126.com,sina.com,gmail.com,foxmail.com}', g, 3)"
GEN_ADDRESS="pg_temp.pick('{北京市朝阳区建国路,上海市浦东新区世纪大道,广东省深圳市南山区科技园路,浙江省杭州市西湖区文三路,四川省成都市武侯区人民南路,湖北省武汉市武昌区中南路}', g, 17)
             || (1 + pg_temp.r(g, 18, 999)) || '号'"

# ===========================================================================
# discovery
# ===========================================================================

# disc_make_tables: disc.people_1m (min(1,000,000, DISCOVER_ROWS) distinct
# rows) and, when DISCOVER_ROWS is larger, disc.people (DISCOVER_ROWS rows:
# the first table's rows again with other ids), both analysed.
disc_make_tables() {
	local base=$(( DISCOVER_ROWS < 1000000 ? DISCOVER_ROWS : 1000000 ))
	sql <<SQL >/dev/null
$(gen_helpers)
CREATE SCHEMA disc;
CREATE UNLOGGED TABLE disc.people_1m (id bigint, mobile text, id_card text, bank_card text,
                                      email text, name text, order_no text, note text);
INSERT INTO disc.people_1m
SELECT g, $GEN_MOBILE, idb || pg_temp.cn_id_check(idb), cb || pg_temp.luhn(cb),
       $GEN_EMAIL, $GEN_NAME,
       -- order numbers: the day, then 8 digits (16 digits, no card network)
       to_char(date '2020-01-01' + pg_temp.r(g, 7, 1800)::int, 'YYYYMMDD') || pg_temp.digits(g, 8, 8),
       pg_temp.pick('{客户要求周五前发货,已电话回访，客户满意,请开具增值税专用发票,退货处理中,"VIP customer, call before delivery",no answer}', g, 9)
  FROM generate_series(1, $base) g,
       LATERAL (SELECT $GEN_ID_BODY AS idb, $GEN_CARD_BODY AS cb) x;
SQL
	if [ "$DISCOVER_ROWS" -gt "$base" ]; then
		sql <<SQL >/dev/null
CREATE UNLOGGED TABLE disc.people (LIKE disc.people_1m);
INSERT INTO disc.people
SELECT p.id + k * $base, p.mobile, p.id_card, p.bank_card, p.email, p.name, p.order_no, p.note
  FROM generate_series(0, ($DISCOVER_ROWS - 1) / $base) k, disc.people_1m p
 WHERE p.id + k * $base <= $DISCOVER_ROWS;
SQL
	fi
	sql -c "ANALYZE disc.people_1m" >/dev/null
	[ "$DISCOVER_ROWS" -le "$base" ] || sql -c "ANALYZE disc.people" >/dev/null
}

# disc_found TABLE: what discover() found there, "column=kind ..." in column order.
disc_found() {
	sql -c "SELECT coalesce(string_agg(column_name || '=' || kind, ' ' ORDER BY o), '(nothing)')
	          FROM pii_guard.discover('$1') WITH ORDINALITY AS f(relation, column_name, data_type, kind,
	               matched_by, share, sampled, suggested_level, suggested_mask, protect_call, o)"
}

# disc_labelled: disc.labelled (label, variant, value): DISCOVERY_LABELLED
# true values of every kind and as many decoys (label NULL) of each group.
disc_labelled() {
	local n=$DISCOVERY_LABELLED
	sql <<SQL >/dev/null
$(gen_helpers)
CREATE TABLE disc.labelled (label text, variant text, value text);

-- Resident IDs: a real district's code, a birth date 1930-2012, a sequence
-- number, the check character (a tenth of them upper-case X; of those, one
-- in five written with a lower-case x).
INSERT INTO disc.labelled
SELECT 'cn_id', CASE WHEN c = 'X' AND pg_temp.r(g, 103, 5) = 0 THEN 'lower-case x' ELSE '18 characters' END,
       b || CASE WHEN c = 'X' AND pg_temp.r(g, 103, 5) = 0 THEN 'x' ELSE c END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{110101,110105,110108,120101,130102,130602,140105,150102,210102,210202,220102,230102,310104,310115,320102,320505,330106,330212,340104,350203,360102,370102,370202,410105,420106,430104,440106,440304,440305,450103,460106,500103,510107,520102,530102,540102,610113,620102,630102,640104,650102}', g, 101)
                       || to_char(date '1930-01-01' + pg_temp.r(g, 102, 30000)::int, 'YYYYMMDD')
                       || pg_temp.digits(g, 104, 3) AS b) x,
       LATERAL (SELECT pg_temp.cn_id_check(x.b) AS c) y;

-- Mobile numbers: the prefixes in use, 8 digits; 70 % as 11 digits, the
-- rest with spaces, dashes, +86 or 86.
INSERT INTO disc.labelled
SELECT 'mobile', v,
       CASE v WHEN '13812345678' THEN m
              WHEN '138 1234 5678' THEN substr(m, 1, 3) || ' ' || substr(m, 4, 4) || ' ' || substr(m, 8)
              WHEN '138-1234-5678' THEN substr(m, 1, 3) || '-' || substr(m, 4, 4) || '-' || substr(m, 8)
              WHEN '+86 13812345678' THEN '+86 ' || m
              ELSE '86' || m END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{130,131,132,133,134,135,136,137,138,139,145,147,150,151,152,153,155,156,157,158,159,162,165,166,167,170,171,172,173,175,176,177,178,180,181,182,183,184,185,186,187,188,189,190,191,192,193,195,196,197,198,199}', g, 201)
                       || pg_temp.digits(g, 202, 8) AS m,
                       (ARRAY['13812345678', '138 1234 5678', '138-1234-5678', '+86 13812345678', '8613812345678'])
                         [CASE WHEN pg_temp.r(g, 203, 100) < 70 THEN 1 WHEN pg_temp.r(g, 203, 100) < 80 THEN 2
                               WHEN pg_temp.r(g, 203, 100) < 85 THEN 3 WHEN pg_temp.r(g, 203, 100) < 95 THEN 4 ELSE 5 END] AS v) x;

-- Bank cards: 80 % UnionPay (62, 16 or 19 digits), 5 % older domestic
-- debit cards outside 62 (Bank of China 601382, ICBC 9558; examples/data.sql
-- has 601382 too), 10 % Visa, 5 % Mastercard, with the Luhn digit; a fifth
-- grouped by four with spaces.
INSERT INTO disc.labelled
SELECT 'bank_card', net || CASE WHEN grouped THEN ', grouped by 4' ELSE '' END,
       CASE WHEN grouped THEN regexp_replace(card, '([0-9]{4})(?=[0-9])', '\1 ', 'g') ELSE card END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT CASE WHEN pg_temp.r(g, 301, 100) < 80 THEN 'UnionPay'
                            WHEN pg_temp.r(g, 301, 100) < 85 THEN 'domestic, not 62'
                            WHEN pg_temp.r(g, 301, 100) < 95 THEN 'Visa' ELSE 'Mastercard' END AS net,
                       pg_temp.r(g, 302, 5) = 0 AS grouped) a,
       LATERAL (SELECT CASE a.net
                         WHEN 'UnionPay' THEN pg_temp.pick('{622202,622848,621700,622588,621226,622262,625911,623668,621661,622609,620522,622700}', g, 303)
                                              || pg_temp.digits(g, 304, CASE WHEN pg_temp.r(g, 305, 2) = 0 THEN 9 ELSE 12 END)
                         WHEN 'domestic, not 62' THEN pg_temp.pick('{601382,955880,955888}', g, 303) || pg_temp.digits(g, 304, 12)
                         WHEN 'Visa' THEN pg_temp.pick('{427020,436742,438088,405512,433670}', g, 303) || pg_temp.digits(g, 304, 9)
                         ELSE pg_temp.pick('{512425,524091,552599,536484,518905}', g, 303) || pg_temp.digits(g, 304, 9) END AS body) b,
       LATERAL (SELECT b.body || pg_temp.luhn(b.body) AS card) c;

-- E-mail addresses: pinyin names, QQ numbers, initials and years, with
-- dots, underscores, capitals; Chinese providers first.
INSERT INTO disc.labelled
SELECT 'email', v, l || '@' || pg_temp.pick('{qq.com,163.com,126.com,sina.com,sina.cn,sohu.com,139.com,aliyun.com,foxmail.com,yeah.net,gmail.com,outlook.com,hotmail.com,corp.example.com.cn,pku.edu.cn}', g, 401)
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{wang,li,zhang,liu,chen,yang,huang,zhao,wu,zhou,xu,sun,ma,zhu,hu,guo,he,lin,gao,luo,ouyang}', g, 402) AS s,
                       pg_temp.pick('{wei,fang,na,min,jing,li,qiang,lei,jun,yang,yong,yan,jie,tao,ming,chao,xiaoming,jianguo,zihan,yuxuan}', g, 403) AS n,
                       pg_temp.r(g, 404, 6) AS style) a,
       LATERAL (SELECT (ARRAY['given.surname', 'surnamegiven88', 'QQ number', 'wzhang1990', 'surname_given', 'Given.Surname'])[a.style + 1] AS v,
                       CASE a.style WHEN 0 THEN a.n || '.' || a.s
                                    WHEN 1 THEN a.s || a.n || pg_temp.r(g, 405, 1000)
                                    WHEN 2 THEN (10000 + pg_temp.r(g, 406, 3000000000))::text
                                    WHEN 3 THEN left(a.n, 1) || a.s || (1960 + pg_temp.r(g, 407, 50))
                                    WHEN 4 THEN a.s || '_' || a.n
                                    ELSE initcap(a.n) || '.' || initcap(a.s) END AS l) b;

-- Landlines: 0, an area code (2 digits and 8-digit numbers, or 3 digits and
-- 7 or 8), written 60 % with a dash, 15 % as digits, 10 % grouped by four,
-- 10 % with the area code in parentheses, 5 % with an extension.
INSERT INTO disc.labelled
SELECT 'landline', v,
       CASE v WHEN '010-12345678' THEN '0' || ac || '-' || num
              WHEN '01012345678' THEN '0' || ac || num
              WHEN '010 1234 5678' THEN '0' || ac || ' ' || left(num, length(num) - 4) || ' ' || right(num, 4)
              WHEN '(010)12345678' THEN '(0' || ac || ')' || num
              ELSE '0' || ac || '-' || num || '-' || (800 + pg_temp.r(g, 505, 200)) END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT CASE WHEN pg_temp.r(g, 501, 2) = 0 THEN pg_temp.pick('{10,20,21,22,23,24,25,27,28,29}', g, 502)
                            ELSE pg_temp.pick('{311,351,371,431,451,471,531,551,571,574,591,592,731,755,757,769,771,791,851,871,898,931,951,971,991}', g, 502) END AS ac) a,
       LATERAL (SELECT (2 + pg_temp.r(g, 503, 7)) || pg_temp.digits(g, 504, CASE WHEN length(a.ac) = 2 OR pg_temp.r(g, 506, 10) < 7 THEN 7 ELSE 6 END) AS num,
                       (ARRAY['010-12345678', '01012345678', '010 1234 5678', '(010)12345678', '010-12345678-801'])
                         [CASE WHEN pg_temp.r(g, 507, 100) < 60 THEN 1 WHEN pg_temp.r(g, 507, 100) < 75 THEN 2
                               WHEN pg_temp.r(g, 507, 100) < 85 THEN 3 WHEN pg_temp.r(g, 507, 100) < 95 THEN 4 ELSE 5 END] AS v) b;

-- Passports: E + 8 digits, E + a letter + 7 digits, G + 8 digits (older),
-- and diplomatic/service/official ones (D, S, P, DE, SE, PE + 7 digits).
INSERT INTO disc.labelled
SELECT 'passport', v,
       CASE v WHEN 'E12345678' THEN 'E' || pg_temp.digits(g, 602, 8)
              WHEN 'EA1234567' THEN 'E' || pg_temp.pick('{A,B,C,D,E,F,G,H,J,K,L,M,N,P,Q,R,S,T,U,V,W,X,Y,Z}', g, 603) || pg_temp.digits(g, 602, 7)
              WHEN 'G12345678' THEN 'G' || pg_temp.digits(g, 602, 8)
              ELSE pg_temp.pick('{D,S,P,DE,SE,PE}', g, 604) || pg_temp.digits(g, 602, 7) END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT (ARRAY['E12345678', 'EA1234567', 'G12345678', 'D/S/P(E)1234567'])
                         [CASE WHEN pg_temp.r(g, 601, 100) < 50 THEN 1 WHEN pg_temp.r(g, 601, 100) < 85 THEN 2
                               WHEN pg_temp.r(g, 601, 100) < 95 THEN 3 ELSE 4 END] AS v) a;

-- IPv4 addresses: private ranges and public ones.
INSERT INTO disc.labelled
SELECT 'ipv4', v,
       CASE v WHEN '192.168.x.x' THEN '192.168.' || pg_temp.r(g, 702, 256) || '.' || (1 + pg_temp.r(g, 703, 254))
              WHEN '10.x.x.x' THEN '10.' || pg_temp.r(g, 702, 256) || '.' || pg_temp.r(g, 703, 256) || '.' || (1 + pg_temp.r(g, 704, 254))
              WHEN '172.16-31.x.x' THEN '172.' || (16 + pg_temp.r(g, 702, 16)) || '.' || pg_temp.r(g, 703, 256) || '.' || (1 + pg_temp.r(g, 704, 254))
              ELSE (1 + pg_temp.r(g, 702, 223)) || '.' || pg_temp.r(g, 703, 256) || '.' || pg_temp.r(g, 704, 256) || '.' || (1 + pg_temp.r(g, 705, 254)) END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT (ARRAY['192.168.x.x', '10.x.x.x', '172.16-31.x.x', 'public'])
                         [CASE WHEN pg_temp.r(g, 701, 100) < 40 THEN 1 WHEN pg_temp.r(g, 701, 100) < 60 THEN 2
                               WHEN pg_temp.r(g, 701, 100) < 70 THEN 3 ELSE 4 END] AS v) a;

-- Plates: a province's character, a letter, five characters (digits, and
-- letters other than I and O); 15 % new-energy plates (D or F and five
-- digits); 10 % written with a middle dot or a space.
INSERT INTO disc.labelled
SELECT 'plate', v,
       p || l || CASE sep WHEN 1 THEN '·' WHEN 2 THEN ' ' ELSE '' END || rest
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{京,津,沪,渝,冀,豫,云,辽,黑,湘,皖,鲁,新,苏,浙,赣,鄂,桂,甘,晋,蒙,陕,吉,闽,贵,粤,青,藏,川,宁,琼}', g, 801) AS p,
                       pg_temp.pick('{A,A,A,B,B,C,D,E,F,G,H,J,K,L,M,N}', g, 802) AS l,
                       pg_temp.r(g, 803, 100) < 15 AS ev,
                       CASE WHEN pg_temp.r(g, 804, 100) < 5 THEN 1 WHEN pg_temp.r(g, 804, 100) < 10 THEN 2 ELSE 0 END AS sep) a,
       LATERAL (SELECT CASE WHEN a.ev THEN pg_temp.pick('{D,F}', g, 805) || pg_temp.digits(g, 806, 5)
                            ELSE string_agg(CASE WHEN pg_temp.r(g * 8 + i, 807, 10) < 2
                                                 THEN pg_temp.pick('{A,B,C,D,E,F,G,H,J,K,L,M,N,P,Q,R,S,T,U,V,W,X,Y,Z}', g * 8 + i, 808)
                                                 ELSE pg_temp.r(g * 8 + i, 809, 10)::text END, '' ORDER BY i) END AS rest
                  FROM generate_series(1, 5) i) b,
       LATERAL (SELECT CASE WHEN a.ev THEN 'new energy' ELSE 'ordinary' END
                       || CASE a.sep WHEN 1 THEN ', with ·' WHEN 2 THEN ', with a space' ELSE '' END AS v) c;

-- Names: 95 % one of the hundred commonest surnames (the front of the list
-- more often), 3 % rarer single surnames, 2 % compound ones; one given
-- character (30 %) or two.
INSERT INTO disc.labelled
SELECT 'cn_name', v, s || g1 || CASE WHEN two THEN g2 ELSE '' END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.r(g, 901, 100) AS k, pg_temp.r(g, 902, 10) < 7 AS two,
                       pg_temp.pick('{伟,芳,娜,敏,静,丽,强,磊,军,洋,勇,艳,杰,娟,涛,明,超,秀,霞,平,刚,桂,英,华,玉,萍,红,建,文,辉,鹏,宇,浩,婷,雪,琳,晨,欣,怡,佳,子,梓,涵,轩,博,思,雨,泽,嘉,俊,晓,志,海,云,飞,斌,峰,凯,琪,颖,慧,倩,丹,璐,昊,然,一,诺,安,宁,德,国,成,春,兰,梅,龙,亮,林,瑶}', g, 903) AS g1,
                       pg_temp.pick('{伟,芳,娜,敏,静,丽,强,磊,军,洋,勇,艳,杰,娟,涛,明,超,秀,霞,平,刚,桂,英,华,玉,萍,红,建,文,辉,鹏,宇,浩,婷,雪,琳,晨,欣,怡,佳,子,梓,涵,轩,博,思,雨,泽,嘉,俊,晓,志,海,云,飞,斌,峰,凯,琪,颖,慧,倩,丹,璐,昊,然,一,诺,安,宁,德,国,成,春,兰,梅,龙,亮,林,瑶}', g, 904) AS g2) a,
       LATERAL (SELECT CASE WHEN a.k < 95 THEN 'common surname' WHEN a.k < 98 THEN 'rare surname' ELSE 'compound surname' END AS v,
                       CASE WHEN a.k < 95
                            THEN ('{王,李,张,刘,陈,杨,黄,赵,吴,周,徐,孙,马,朱,胡,郭,何,林,高,罗,郑,梁,谢,宋,唐,许,韩,冯,邓,曹,彭,曾,肖,田,董,袁,潘,于,蒋,蔡,余,杜,叶,程,苏,魏,吕,丁,任,沈,姚,卢,姜,崔,钟,谭,陆,汪,范,金,石,廖,贾,夏,韦,付,方,白,邹,孟,熊,秦,邱,江,尹,薛,闫,段,雷,侯,龙,史,陶,黎,贺,顾,毛,郝,龚,邵,万,钱,严,覃,武,戴,莫,孔,向,汤}'::text[])
                                 [1 + least(pg_temp.r(g, 905, 100), pg_temp.r(g, 906, 100))]
                            WHEN a.k < 98 THEN pg_temp.pick('{郗,亓,佘,逄,笪,仉,邴,隗,禤,訾,栾,晏,岑,冼,濮,宓,蔺,闵,糜,缪}', g, 907)
                            ELSE pg_temp.pick('{欧阳,司马,诸葛,上官,慕容,令狐,皇甫,东方,尉迟,公孙,夏侯,端木,独孤,长孙,西门}', g, 907) END AS s) b;

-- Addresses: 45 % province, city, district, street and number (half with
-- a compound, building, unit and flat), 20 % a municipality's, 10 % county,
-- town and village, 15 % without the province, 10 % only the district and
-- street (as people type them in a city's own shop).
INSERT INTO disc.labelled
SELECT 'address', v,
       CASE v WHEN 'province city district street' THEN pr || ci || di || st || no || flat
              WHEN 'municipality district street' THEN mu || st || no || flat
              WHEN 'county town village' THEN co
              WHEN 'city district street' THEN ci || di || st || no || flat
              ELSE di || st || no || flat END
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.r(g, 1002, 9) AS k) k,
       LATERAL (SELECT (ARRAY['广东省','广东省','浙江省','江苏省','四川省','湖北省','陕西省','山东省','福建省'])[k.k + 1] AS pr,
                       (ARRAY['深圳市','广州市','杭州市','南京市','成都市','武汉市','西安市','青岛市','厦门市'])[k.k + 1] AS ci,
                       (ARRAY['南山区','天河区','西湖区','玄武区','武侯区','武昌区','雁塔区','市南区','思明区'])[k.k + 1] AS di,
                       pg_temp.pick('{北京市朝阳区,北京市海淀区,上海市徐汇区,上海市浦东新区,天津市和平区,重庆市渝中区}', g, 1003) AS mu,
                       pg_temp.pick('{人民路,解放路,中山路,建设路,和平路,长江路,文化路,新华路,科技园路,建国路,学院路,滨江大道,世纪大道,文三路}', g, 1004) AS st,
                       (1 + pg_temp.r(g, 1005, 999)) || '号' AS no,
                       CASE WHEN pg_temp.r(g, 1006, 2) = 0
                            THEN pg_temp.pick('{阳光花园,锦绣家园,翠苑小区,金色港湾,万科城,世纪新城,绿地公馆}', g, 1007)
                                 || (1 + pg_temp.r(g, 1008, 30)) || '栋' || (1 + pg_temp.r(g, 1009, 4)) || '单元'
                                 || (1 + pg_temp.r(g, 1010, 30)) || lpad((1 + pg_temp.r(g, 1011, 4))::text, 2, '0') || '室'
                            ELSE '' END AS flat,
                       pg_temp.pick('{河南省周口市淮阳县城关镇,湖南省邵阳市隆回县桃洪镇,云南省大理州宾川县金牛镇,内蒙古自治区赤峰市宁城县天义镇}', g, 1012)
                         || pg_temp.pick('{前进村,新华村,红旗村,张庄村}', g, 1013) || (1 + pg_temp.r(g, 1014, 12)) || '组' AS co,
                       (ARRAY['province city district street', 'municipality district street', 'county town village',
                              'city district street', 'district and street only'])
                         [CASE WHEN pg_temp.r(g, 1001, 100) < 45 THEN 1 WHEN pg_temp.r(g, 1001, 100) < 65 THEN 2
                               WHEN pg_temp.r(g, 1001, 100) < 75 THEN 3 WHEN pg_temp.r(g, 1001, 100) < 90 THEN 4 ELSE 5 END] AS v) a;

-- Decoys: no kind.
INSERT INTO disc.labelled
SELECT NULL, 'order no., 11 digits, 10/11/12...', '1' || pg_temp.r(g, 1101, 3) || pg_temp.digits(g, 1102, 9)
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'order no., 12 digits, 13-19...', '1' || (3 + pg_temp.r(g, 1111, 7)) || pg_temp.digits(g, 1112, 10)
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'order no., date + 8 digits', to_char(date '2019-01-01' + pg_temp.r(g, 1121, 2500)::int, 'YYYYMMDD') || pg_temp.digits(g, 1122, 8)
  FROM generate_series(1, $n) g
UNION ALL
-- a resident ID with a wrong check character
SELECT NULL, 'ID number, wrong check character',
       b || substr('10X98765432', (1 + (strpos('10X98765432', pg_temp.cn_id_check(b)) + pg_temp.r(g, 1133, 10)) % 11)::int, 1)
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{110101,310104,440305,330106,510107,420106}', g, 1131)
                       || to_char(date '1950-01-01' + pg_temp.r(g, 1132, 20000)::int, 'YYYYMMDD') || pg_temp.digits(g, 1134, 3) AS b) x
UNION ALL
-- an impossible birth date (30 or 31 February, 31 April, month 13, day 00),
-- with the check character right for it
SELECT NULL, 'ID number, impossible date', b || pg_temp.cn_id_check(b)
  FROM generate_series(1, $n) g,
       LATERAL (SELECT pg_temp.pick('{110101,310104,440305,330106,510107,420106}', g, 1141)
                       || (1950 + pg_temp.r(g, 1142, 55)) || pg_temp.pick('{0230,0231,0431,1301,0600,1132}', g, 1143)
                       || pg_temp.digits(g, 1144, 3) AS b) x
UNION ALL
-- a UnionPay-shaped number whose last digit fails Luhn
SELECT NULL, 'card number, Luhn fails', body || ((pg_temp.luhn(body)::int + 1 + pg_temp.r(g, 1153, 9)) % 10)
  FROM generate_series(1, $n) g,
       LATERAL (SELECT '62' || pg_temp.pick('{2202,2848,1700,2588}', g, 1151)
                       || pg_temp.digits(g, 1152, CASE WHEN pg_temp.r(g, 1154, 2) = 0 THEN 9 ELSE 12 END) AS body) x
UNION ALL
SELECT NULL, 'random digits, 5-20', pg_temp.digits(g, 1161, 5 + pg_temp.r(g, 1162, 16)::int)
  FROM generate_series(1, $n) g
UNION ALL
-- (what short-text columns of a CRM hold: statuses, products, categories,
-- departments, cities, colours and sizes -- Chinese and English)
SELECT NULL, 'words and short phrases',
       pg_temp.pick('{pending,delivered,refunded,cancelled,gold,silver,standard,customer,invoice,Beijing,Shanghai,N/A,unknown,test,admin,true,false,"hello world",已完成,待发货,已发货,已签收,已退款,已取消,处理中,待审核,普通会员,高级会员,金卡会员,年度会员,智能音箱,蓝牙耳机,空气净化器,扫地机器人,电动牙刷,保温杯,行李箱,咖啡机,手机壳,充电宝,账单疑问,物流查询,退换货,产品故障,投诉,发票,资料变更,售后服务,销售部,市场部,客服部,财务部,技术部,华东区,华南区,华北区,北京,上海,广州,深圳,杭州,成都,南京,武汉,西安,重庆,白色,黑色,金色,银色,红色,蓝色,大号,中号,小号,线上,线下,微信,支付宝,银行转账,货到付款}', g, 1171)
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'dates and times',
       to_char(timestamp '2015-01-01' + pg_temp.r(g, 1181, 300000000) * interval '1 second',
               pg_temp.pick('{YYYY-MM-DD,YYYY/MM/DD,YYYYMMDD,YYYY年MM月DD日,"YYYY-MM-DD HH24:MI:SS",DD.MM.YYYY}', g, 1182))
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'amounts', CASE pg_temp.r(g, 1191, 5)
                          WHEN 0 THEN (pg_temp.r(g, 1192, 10000000) / 100.0)::text
                          WHEN 1 THEN '¥' || to_char(pg_temp.r(g, 1192, 10000000) / 100.0, 'FM9,999,990.00')
                          WHEN 2 THEN '-' || (pg_temp.r(g, 1192, 100000) / 100.0)::text
                          WHEN 3 THEN (pg_temp.r(g, 1192, 1000) / 10.0) || '%'
                          ELSE 'USD ' || (pg_temp.r(g, 1192, 1000000) / 100.0)::text END
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'codes: SKU, tracking, UUID, hash, version, MAC', CASE pg_temp.r(g, 1201, 8)
                          WHEN 0 THEN 'SKU-' || pg_temp.digits(g, 1202, 6)
                          WHEN 1 THEN pg_temp.pick('{SF,JD,YT,ZT}', g, 1203) || pg_temp.digits(g, 1202, 13)
                          WHEN 2 THEN md5(g::text)::uuid::text
                          WHEN 3 THEN md5('x' || g)
                          WHEN 4 THEN pg_temp.r(g, 1204, 5) || '.' || pg_temp.r(g, 1205, 20) || '.' || pg_temp.r(g, 1206, 40)
                          WHEN 5 THEN (1 + pg_temp.r(g, 1204, 12)) || '.' || pg_temp.r(g, 1205, 4) || '.' || (10000 + pg_temp.r(g, 1206, 10000)) || '.' || pg_temp.r(g, 1207, 4000)
                          WHEN 6 THEN upper(regexp_replace(left(md5('m' || g), 12), '(..)(?=.)', '\1:', 'g'))
                          ELSE pg_temp.pick('{A,B,C,K,M,T}', g, 1203) || pg_temp.digits(g, 1202, 6 + pg_temp.r(g, 1208, 4)::int) END
  FROM generate_series(1, $n) g
UNION ALL
SELECT NULL, 'free text',
       pg_temp.pick('{客户来电咨询退货流程,已电话回访，客户表示满意,请尽快安排发货,客户要求开具发票,产品质量问题，已登记,下周二再联系,客户暂无需求,已发送报价单，等待确认,"called back, wants a quote",please ship before Friday,VIP customer,"no answer, try again tomorrow"}', g, 1211)
       || pg_temp.pick('{"",。,！," (urgent)"}', g, 1212)
  FROM generate_series(1, $n) g;
SQL
}

# disc_precision: the per-kind table for detect_kind over disc.labelled,
# then where its misses and false positives come from.
disc_precision() {
	sql <<'SQL' | say_lines
-- (key: the kind for true values, the group for decoys)
CREATE TEMP TABLE d AS
SELECT label, variant, coalesce(label, 'decoy: ' || variant) AS key, value,
       pii_guard.detect_kind(value) AS found
  FROM disc.labelled;
CREATE TEMP TABLE totals AS SELECT key, variant, count(*) AS n FROM d GROUP BY 1, 2;
CREATE TEMP TABLE key_totals AS SELECT key, count(*) AS n FROM d GROUP BY 1;
SELECT format('    %-10s %7s %7s %7s %10s %7s', 'kind', 'values', 'found', 'right', 'precision', 'recall')
UNION ALL
(SELECT format('    %-10s %7s %7s %7s %10s %7s', k.kind, n, tp + fp, tp,
               CASE WHEN tp + fp > 0 THEN to_char(tp::numeric / (tp + fp), 'FM0.000') ELSE 'n/a' END,
               CASE WHEN n > 0 THEN to_char(tp::numeric / n, 'FM0.000') ELSE 'n/a' END)
   FROM unnest('{cn_id,mobile,bank_card,email,landline,passport,ipv4,plate,cn_name,address}'::text[])
        WITH ORDINALITY AS k(kind, o),
        LATERAL (SELECT count(*) FILTER (WHERE d.label = k.kind) AS n,
                        count(*) FILTER (WHERE d.label = k.kind AND d.found = k.kind) AS tp,
                        count(*) FILTER (WHERE d.found = k.kind AND d.label IS DISTINCT FROM k.kind) AS fp
                   FROM d) c
  ORDER BY o)
UNION ALL
SELECT format('    %-10s %7s %7s', '(decoys)', count(*), count(found))
         || format('   (%s%% of the decoys taken for a kind)',
                   to_char(100.0 * count(found) / greatest(count(*), 1), 'FM990.0'))
  FROM d WHERE label IS NULL
UNION ALL
SELECT '  misses (true values given another kind or none), by format:'
UNION ALL
(SELECT format('    %-10s %-32s -> %-9s %6s of %-6s e.g. %s', m.label, m.variant, m.found, m.n, t.n, m.example)
   FROM (SELECT key, label, variant, coalesce(found, 'nothing') AS found, count(*) AS n, min(value) AS example
           FROM d WHERE label IS NOT NULL AND found IS DISTINCT FROM label
          GROUP BY 1, 2, 3, 4) m
   JOIN totals t USING (key, variant)
  ORDER BY m.n DESC, m.label, m.variant LIMIT 30)
UNION ALL
SELECT '  false positives (decoys, or values of another kind, taken for a kind), by group:'
UNION ALL
(SELECT format('    %-48s -> %-9s %6s of %-6s e.g. %s', f.key, f.found, f.n, t.n, f.example)
   FROM (SELECT key, found, count(*) AS n, min(value) AS example
           FROM d WHERE found IS NOT NULL AND found IS DISTINCT FROM label
          GROUP BY 1, 2) f
   JOIN key_totals t USING (key)
  ORDER BY f.n DESC, f.key LIMIT 30);
SQL
}

# The truth for the examples' columns (examples/schema.sql): the kind each
# holds; a column not listed holds none of them.  birth_date is personal
# data that discover() knows by its name only (no detector for dates);
# sales_notes and service_tickets.summary are free text that may quote
# personal data, but no one kind -- listed as none.
DISC_TRUTH="('customers','name','cn_name'), ('customers','birth_date','birth_date'),
            ('customers','phone','mobile'), ('customers','national_id','cn_id'),
            ('customers','bank_card','bank_card'), ('customers','email','email'),
            ('customers','address','address')"

# disc_demo: discover() column by column on the examples' database.
disc_demo() {
	local t0 t1 db=disc_demo
	t0=$(date +%s)
	sql -c "CREATE DATABASE $db" >/dev/null
	sql -d $db -c "CREATE EXTENSION pii_guard" -f examples/roles.sql >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -U crm_dba -d $db -f examples/schema.sql >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -U crm_dba -d $db -v customers="$DISCOVERY_DEMO_CUSTOMERS" \
		-f examples/data.sql >/dev/null
	# The plaintext copy: the same tables, the encrypted columns decrypted.
	sql -d $db <<'SQL' >/dev/null
SET client_min_messages = warning;
CREATE SCHEMA plain;
CREATE TABLE plain.customers AS
SELECT id, name, birth_date, pii_guard.decrypt(phone) AS phone, pii_guard.decrypt(national_id) AS national_id,
       pii_guard.decrypt(bank_card) AS bank_card, email, address, channel, campaign, service_tier,
       deal_amount, sales_notes, sales_owner, created_at
  FROM public.customers;
CREATE TABLE plain.orders AS SELECT * FROM public.orders;
CREATE TABLE plain.service_tickets AS SELECT * FROM public.service_tickets;
ANALYZE plain.customers, plain.orders, plain.service_tickets;
SQL
	t1=$(date +%s)
	local ms_loaded ms_plain
	ms_loaded=$(db_ms $db "SELECT count(*) FROM pii_guard.discover('public')")
	ms_plain=$(db_ms $db "SELECT count(*) FROM pii_guard.discover('plain')")
	say "  discover() on the examples' database ($DISCOVERY_DEMO_CUSTOMERS customers, their orders and tickets; roles," \
		"schema and data loaded, no policy; $((t1 - t0)) s to load): $(secs "$ms_loaded") s as loaded," \
		"$(secs "$ms_plain") s on the plaintext copy"
	sql -d $db <<SQL | say_lines
SET client_min_messages = warning;
CREATE TEMP TABLE truth (tab name, col name, kind text);
INSERT INTO truth VALUES $DISC_TRUTH;
CREATE TEMP TABLE cols AS
SELECT s.schema, c.relname AS tab, a.attname AS col, a.attnum, format_type(a.atttypid, a.atttypmod) AS type, t.kind AS truth
  FROM unnest('{public,plain}'::name[]) s(schema)
  JOIN pg_class c ON c.relnamespace = s.schema::regnamespace AND c.relkind = 'r'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN truth t ON t.tab = c.relname AND t.col = a.attname;
CREATE TEMP TABLE found AS
SELECT 'public'::name AS schema, (SELECT relname FROM pg_class WHERE oid = f.relation) AS tab, f.column_name AS col,
       f.kind, f.matched_by, f.share
  FROM pii_guard.discover('public') f
UNION ALL
SELECT 'plain', (SELECT relname FROM pg_class WHERE oid = f.relation), f.column_name, f.kind, f.matched_by, f.share
  FROM pii_guard.discover('plain') f;
CREATE TEMP TABLE judged AS
SELECT c.schema, c.tab, c.col, c.attnum, c.type, c.truth, f.kind AS found,
       CASE WHEN f.kind IS NULL AND c.truth IS NULL THEN ''
            -- (the types discover() examines)
            WHEN f.kind IS NULL THEN format('missed (%s%s)', CASE WHEN c.type ~ '^(text|character|bigint|numeric|date|timestamp|inet|name)'
                                                                THEN 'examined, ' ELSE 'not examined: ' END, c.type)
            ELSE format('%s (%s, %s)', f.kind, f.matched_by, f.share)
                 || CASE WHEN f.kind IS NOT DISTINCT FROM c.truth THEN '' ELSE ' WRONG' END END AS shown
  FROM cols c LEFT JOIN found f USING (schema, tab, col);
SELECT format('    %-28s %-11s %-50s %s', 'column', 'truth', 'as loaded', 'plaintext copy')
UNION ALL
(SELECT format('    %-28s %-11s %-50s %s', l.tab || '.' || l.col, coalesce(l.truth, '-'), l.shown, p.shown)
   FROM judged l JOIN judged p ON p.schema = 'plain' AND p.tab = l.tab AND p.col = l.col
  WHERE l.schema = 'public' AND (l.truth IS NOT NULL OR l.found IS NOT NULL OR p.found IS NOT NULL)
  ORDER BY l.tab, l.attnum)
UNION ALL
(SELECT format('    %-13s columns %s, with personal data %s; flagged %s, of them right %s: precision %s, recall %s',
               CASE schema WHEN 'public' THEN 'as loaded:' ELSE 'plaintext:' END,
               count(*), count(truth), count(found), count(*) FILTER (WHERE found = truth),
               CASE WHEN count(found) > 0 THEN to_char(count(*) FILTER (WHERE found = truth)::numeric / count(found), 'FM0.000') ELSE 'n/a' END,
               CASE WHEN count(truth) > 0 THEN to_char(count(*) FILTER (WHERE found = truth)::numeric / count(truth), 'FM0.000') ELSE 'n/a' END)
   FROM judged GROUP BY schema ORDER BY schema DESC);
SQL
	sql -c "DROP DATABASE $db" >/dev/null
}

discovery() {
	say "== discovery: pii_guard.discover() on a $DISCOVER_ROWS-row table; detect_kind() and discover() precision and recall"
	local t0 t1
	t0=$(date +%s)
	disc_make_tables
	t1=$(date +%s)
	local big=disc.people n_big=$DISCOVER_ROWS n_base=$(( DISCOVER_ROWS < 1000000 ? DISCOVER_ROWS : 1000000 ))
	[ "$DISCOVER_ROWS" -gt "$n_base" ] || big=disc.people_1m
	say "  table: id, mobile, id_card, bank_card, email, name, order_no, note; $n_big rows," \
		"$(sql -c "SELECT pg_size_pretty(pg_table_size('$big'))"), generated and analysed in $((t1 - t0)) s"

	# (a) time: the first call (its sample's pages maybe not yet in shared
	# buffers), then the best of RUNS after a warm-up.
	local q="SELECT count(*) FROM pii_guard.discover(''$big'')" first best100k first_base best_base best found expect
	first=$(sql -c "SELECT bench_ms('$q', 1)")
	best=$(sql -c "SELECT bench_ms('$q', $RUNS)")
	best100k=$(sql -c "SELECT bench_ms('SELECT count(*) FROM pii_guard.discover(''$big'', 100000)', $RUNS)")
	found=$(disc_found "$big")
	expect="mobile=mobile id_card=cn_id bank_card=bank_card email=email name=cn_name"
	say "  discover('$big'): first call $(secs "$first") s, best of $RUNS $(secs "$best") s;" \
		"with sample_rows => 100000: $(secs "$best100k") s"
	if [ "$found" = "$expect" ]; then
		say "    found: $found (as generated; id, order_no, note: nothing)"
	else
		say "    found: $found -- NOT what was generated ($expect)"
	fi
	if [ "$big" != disc.people_1m ]; then
		q="SELECT count(*) FROM pii_guard.discover(''disc.people_1m'')"
		first_base=$(sql -c "SELECT bench_ms('$q', 1)")
		best_base=$(sql -c "SELECT bench_ms('$q', $RUNS)")
		say "  for scale, discover() on its first $n_base rows: first call $(secs "$first_base") s, best $(secs "$best_base") s"
	fi
	check "discover() on a $n_big-row table, first call (seconds)" "$(secs "$first")" "<=" 10
	sql -c "DROP TABLE IF EXISTS disc.people" >/dev/null

	# (b) detect_kind on labelled values
	disc_labelled
	say "  detect_kind() on labelled values: $DISCOVERY_LABELLED true values of each kind in several formats," \
		"and $DISCOVERY_LABELLED decoys of each of 12 groups (precision = right / found, recall = right / values):"
	disc_precision
	sql -c "SET client_min_messages = warning" -c "DROP SCHEMA disc CASCADE" >/dev/null

	# (c) discover() column by column on the examples
	disc_demo
}

# ===========================================================================
# copy
# ===========================================================================

# anon_build: build PostgreSQL Anonymizer from its tarball (once: the build
# is kept in ANON_DIR) and install it into this run's private installation.
# Sets ANON_DIR, or ANON_WHY (what went wrong) and returns 1.
ANON_DIR='' ANON_WHY=''
anon_build() {
	local cache=${TMPDIR:-/tmp}/pii_guard-bench-peers
	ANON_DIR=$cache/postgresql_anonymizer-$ANON_VERSION-pg$PG_MAJOR
	if [ ! -f "$ANON_TARBALL" ]; then
		ANON_WHY="$ANON_TARBALL not found (ANON_TARBALL)"
		return 1
	fi
	# (Rebuilt if the tarball is newer than the build, or a build was cut short.)
	if [ ! -f "$ANON_DIR/.built" ] || [ "$ANON_TARBALL" -nt "$ANON_DIR/.built" ]; then
		rm -rf "$ANON_DIR"
		mkdir -p "$ANON_DIR"
		tar -xzf "$ANON_TARBALL" -C "$ANON_DIR" --strip-components=1 ||
			{ ANON_WHY="could not unpack $ANON_TARBALL"; return 1; }
		make -C "$ANON_DIR" PG_CONFIG="$PG_CONFIG" >"$ANON_DIR/build.log" 2>&1 ||
			{ ANON_WHY="build failed (see $ANON_DIR/build.log)"; return 1; }
		touch "$ANON_DIR/.built"
	fi
	make -C "$ANON_DIR" PG_CONFIG="$PG_CONFIG" install DESTDIR="$PGG_WORK/inst" >"$PGG_WORK/anon-install.log" 2>&1 ||
		{ ANON_WHY="install into $PGG_WORK/inst failed: $(tail -3 "$PGG_WORK/anon-install.log")"; return 1; }
}

# The customers table (columns in text) and its COPY_ROWS generated rows.
copy_customers_sql() {	# copy_customers_sql TABLE
	cat <<SQL
$(gen_helpers)
CREATE TABLE $1 (id bigint PRIMARY KEY, name text NOT NULL, phone text, national_id text, bank_card text,
                 email text, address text, created_at timestamptz NOT NULL);
INSERT INTO $1
SELECT g, $GEN_NAME, $GEN_MOBILE, idb || pg_temp.cn_id_check(idb), cb || pg_temp.luhn(cb),
       $GEN_EMAIL, $GEN_ADDRESS,
       timestamptz '2020-01-01 00:00+08' + pg_temp.r(g, 20, 150000000) * interval '1 second'
  FROM generate_series(1, $COPY_ROWS) g,
       LATERAL (SELECT $GEN_ID_BODY AS idb, $GEN_CARD_BODY AS cb) x;
SQL
}

# pii_guard's protection of the customers table: levels and masks as
# examples/policy.sql.
copy_protect_sql() {	# copy_protect_sql TABLE
	cat <<SQL
SELECT pii_guard.protect_column('$1', 'name',        'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('$1', 'phone',       'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('$1', 'national_id', 'core',      'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('$1', 'bank_card',   'core',      'pii_guard.mask_bank_card(text)');
SELECT pii_guard.protect_column('$1', 'email',       'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.protect_column('$1', 'address',     'sensitive', 'pii_guard.mask_address(text)');
SQL
}

# A function that says, for a copy and its original joined by id, how many
# rows the copy has and how many hold their original's value in each masked
# column (an encrypted column is compared decrypted).
COPY_LEAKS_SQL=$(cat <<'SQL'
CREATE FUNCTION pg_temp.leaks(copy_rel regclass, orig_rel regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    col text;
    expr text := format('count(*) || '' rows''');
    r text;
BEGIN
    FOREACH col IN ARRAY '{name,phone,national_id,bank_card,email,address}'::text[] LOOP
        expr := expr || format(' || '', %s '' || count(*) FILTER (WHERE %s = %s)', col,
            CASE WHEN (SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = copy_rel AND attname = col) = 'pii_guard.encrypted_text'
                 THEN format('pii_guard.decrypt(c.%I)', col) ELSE format('c.%I::text', col) END,
            CASE WHEN (SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = orig_rel AND attname = col) = 'pii_guard.encrypted_text'
                 THEN format('pii_guard.decrypt(o.%I)', col) ELSE format('o.%I::text', col) END);
    END LOOP;
    EXECUTE format('SELECT %s FROM %s c JOIN %s o USING (id)', expr, copy_rel, orig_rel) INTO r;
    RETURN r;
END $$;
SQL
)

# copy_leaks DB COPY ORIG -> "N rows, name 0, phone 0, ..."
copy_leaks() {
	psql -X -q -v ON_ERROR_STOP=1 -tA -d "$1" -c "$COPY_LEAKS_SQL" -c "SELECT pg_temp.leaks('$2', '$3')"
}

# leak_free "N rows, name 0, ..." ROWS -> 0 if ROWS rows and no column above 0
leak_free() {
	awk -v want="$2" -F', ' '{
		split($1, a, " "); if (a[1] != want) exit 1
		for (i = 2; i <= NF; i++) { split($i, b, " "); if (b[2] != 0) exit 1 }
	}' <<<"$1"
}

# xr A B -> "A/B×", or n/a when either was not measured
xr() {
	if [ -n "$1" ] && [ -n "$2" ]; then echo "$(ratio "$1" "$2")×"; else echo n/a; fi
}

# say_leaks INDENT LEAKS: copy_leaks' answer, checked.
say_leaks() {
	if leak_free "$2" "$COPY_ROWS"; then
		say "$1checked: $2 (its rows, then those holding their real value, by column)"
	else
		say "$1CHECK FAILED: $2 ($COPY_ROWS rows expected, none holding its real value)"
	fi
}

# plain_copy_ms DB SOURCE -> best of RUNS of CREATE TABLE AS SELECT * FROM SOURCE
plain_copy_ms() {
	local i t=()
	for ((i = 0; i < RUNS; i++)); do
		sql -d "$1" -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS ref.plain_copy" -c "CHECKPOINT" >/dev/null
		t+=("$(db_ms "$1" "CREATE TABLE ref.plain_copy AS SELECT * FROM $2")")
	done
	best "${t[@]}"
}

# pii_copy TARGET [SOURCE_SCHEMAS]: the best of RUNS of
# pii_guard.anonymize_into(TARGET[, SOURCE_SCHEMAS]) in copy_pii, in ms, in
# PII_MS; the last run's result rows in PII_COPY_OUT.  The target schema is
# dropped before each run; created first only if the function wants it to
# exist.  (Not called in $(...): it sets these variables.)
PII_CREATE_TARGET='' PII_COPY_OUT='' PII_MS=''
pii_copy() {
	local target=$1 call i t=() err create
	call="SELECT * FROM pii_guard.anonymize_into('$target'"
	[ -z "${2:-}" ] || call+=", '$2'"
	call+=")"
	for ((i = 0; i < RUNS; i++)); do
		create=()
		[ -z "$PII_CREATE_TARGET" ] || create=(-c "CREATE SCHEMA $target")
		sql -d copy_pii -c "SET client_min_messages = warning" -c "DROP SCHEMA IF EXISTS $target CASCADE" \
			"${create[@]}" -c "CHECKPOINT" >/dev/null
		if ! err=$(psql -X -q -v ON_ERROR_STOP=1 -tA -d copy_pii -c '\timing on' -c "$call" 2>&1 >"$PGG_WORK/db_ms.raw"); then
			# (The first run tells whether the target must exist beforehand.)
			if [ -z "$PII_CREATE_TARGET" ] && [ "$i" -eq 0 ] && [[ $err == *schema*"does not exist"* ]]; then
				PII_CREATE_TARGET=1
				i=-1
				continue
			fi
			bench_die "copy: $call failed: $err"
		fi
		t+=("$(awk '/^Time: / { t = $2 } END { printf "%.1f", t }' "$PGG_WORK/db_ms.raw")")
	done
	PII_COPY_OUT=$(grep -v '^Time: ' "$PGG_WORK/db_ms.raw" | sed '/^$/d' | tr '\n' ';' | sed 's/;$//; s/;/; /g')
	PII_MS=$(best "${t[@]}")
}

# The anonymizer's masking rules, the same for the source and its copies.
anon_labels() {	# anon_labels TABLE
	cat <<SQL
SECURITY LABEL FOR anon ON COLUMN $1.name IS 'MASKED WITH FUNCTION anon.pseudo_last_name(name)';
SECURITY LABEL FOR anon ON COLUMN $1.phone IS 'MASKED WITH FUNCTION anon.partial(phone, 3, \$\$****\$\$, 4)';
SECURITY LABEL FOR anon ON COLUMN $1.national_id IS 'MASKED WITH FUNCTION anon.partial(national_id, 6, \$\$********\$\$, 4)';
SECURITY LABEL FOR anon ON COLUMN $1.bank_card IS 'MASKED WITH FUNCTION anon.partial(bank_card, 6, \$\$*********\$\$, 4)';
SECURITY LABEL FOR anon ON COLUMN $1.email IS 'MASKED WITH FUNCTION anon.pseudo_email(email)';
SECURITY LABEL FOR anon ON COLUMN $1.address IS 'MASKED WITH FUNCTION anon.fake_address()';
SQL
}

# dump_ms FILE COMMAND...: best of RUNS of the client command writing FILE, in ms.
dump_ms() {
	local file=$1 i t0 t1 t=()
	shift
	for ((i = 0; i < RUNS; i++)); do
		rm -f "$file"
		t0=$(date +%s%N)
		"$@" >/dev/null 2>"$PGG_WORK/dump.err" || { cat "$PGG_WORK/dump.err" >&2; bench_die "copy: $* failed"; }
		t1=$(date +%s%N)
		t+=("$(( (t1 - t0) / 1000000 ))")
	done
	best "${t[@]}"
}

copy() {
	local n=$COPY_ROWS
	say "== copy: masked copies of a $n-row customers table (name, phone, national_id, bank_card, email, address)," \
		"pii_guard.anonymize_into vs PostgreSQL Anonymizer $ANON_VERSION, best of $RUNS"

	# --- pii_guard -------------------------------------------------------
	sql -c "CREATE DATABASE copy_pii" >/dev/null
	sql -d copy_pii <<SQL >/dev/null
CREATE EXTENSION pii_guard;
CREATE SCHEMA ref;
CREATE SCHEMA crm_enc;
$(copy_customers_sql public.customers)
-- The same rows with phone, national ID and card encrypted, as examples/schema.sql has them.
CREATE TABLE crm_enc.customers (id bigint PRIMARY KEY, name text NOT NULL, phone pii_guard.encrypted_text,
    national_id pii_guard.encrypted_text, bank_card pii_guard.encrypted_text, email text, address text,
    created_at timestamptz NOT NULL);
INSERT INTO crm_enc.customers SELECT * FROM public.customers;
$(copy_protect_sql public.customers)
$(copy_protect_sql crm_enc.customers)
SQL
	local base base_enc
	base=$(sql -d copy_pii -c "SELECT base::regclass FROM pii_guard.protected_tables WHERE view_schema = 'public' AND view_name = 'customers'")
	base_enc=$(sql -d copy_pii -c "SELECT base::regclass FROM pii_guard.protected_tables WHERE view_schema = 'crm_enc' AND view_name = 'customers'")
	if [ -z "$base" ] || [ -z "$base_enc" ]; then bench_die "copy: the customers tables were not protected"; fi
	sql -d copy_pii -c "VACUUM ANALYZE $base, $base_enc" >/dev/null
	local p_plain p_plain_enc p_pii='' p_pii_enc='' d_pii='' found_d have_into leaks leaks_enc
	p_plain=$(plain_copy_ms copy_pii "$base")
	p_plain_enc=$(plain_copy_ms copy_pii "$base_enc")
	have_into=$(sql -d copy_pii -c "SELECT to_regprocedure('pii_guard.anonymize_into(name,name[],text)') IS NOT NULL
	                                    OR EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'anonymize_into'
	                                                  AND pronamespace = 'pii_guard'::regnamespace)")
	say "  plain copy, CREATE TABLE ... AS SELECT * FROM the base table (reference): $(copy_t "$p_plain");" \
		"with phone, ID and card encrypted_text $(copy_t "$p_plain_enc")"
	if [ "$have_into" = t ]; then
		pii_copy masked_copy '{public}'
		p_pii=$PII_MS
		say "  pii_guard.anonymize_into('masked_copy', '{public}'): $(copy_t "$p_pii") ($(ratio "$p_pii" "$p_plain")× the plain copy)"
		say "    returned: $PII_COPY_OUT"
		if [ -n "$(sql -d copy_pii -c "SELECT to_regclass('masked_copy.customers')")" ]; then
			leaks=$(copy_leaks copy_pii masked_copy.customers "$base")
			say_leaks "    " "$leaks"
		else
			say "    (no table masked_copy.customers to check)"
		fi
		pii_copy masked_enc '{crm_enc}'
		p_pii_enc=$PII_MS
		say "  the same from the table with encrypted columns: $(copy_t "$p_pii_enc")" \
			"($(ratio "$p_pii_enc" "$p_plain_enc")× its plain copy, $(ratio "$p_pii_enc" "$p_plain")× the plaintext table's)"
		say "    returned: $PII_COPY_OUT"
		if [ -n "$(sql -d copy_pii -c "SELECT to_regclass('masked_enc.customers')")" ]; then
			leaks_enc=$(copy_leaks copy_pii masked_enc.customers "$base")
			say_leaks "    " "$leaks_enc"
		fi
		# Its anonymised dump: anonymize_into (timed above) and pg_dump of the
		# copy -- one run, then 1,000 real phone numbers looked for in it, as
		# whole numbers (grep -w: a made-up card or ID number may hold some
		# phone's 11 digits by chance, which is no leak).
		if [ -f "$PGG_REPO/bin/pii_guard_dump" ]; then
			sql -d copy_pii -c "SELECT phone FROM $base ORDER BY id LIMIT 1000" >"$PGG_WORK/phones.txt"
			d_pii=$(RUNS=1 dump_ms "$PGG_WORK/pii.dump" bash "$PGG_REPO/bin/pii_guard_dump" -d copy_pii -s public \
				-f "$PGG_WORK/pii.dump")
			found_d=$(grep -c -w -F -f "$PGG_WORK/phones.txt" "$PGG_WORK/pii.dump" || true)
			say "  pii_guard's anonymised dump, bin/pii_guard_dump -s public (one run): $(secs "$d_pii") s;" \
				"lines with one of 1,000 real phone numbers in it: $found_d ($(wc -l <"$PGG_WORK/pii.dump") lines)"
			rm -f "$PGG_WORK/pii.dump" "$PGG_WORK/phones.txt"
		fi
	else
		say "  pii_guard.anonymize_into: not available (this build of pii_guard has no such function)"
	fi

	# --- PostgreSQL Anonymizer ------------------------------------------------
	local a_plain='' a_masked='' a_static='' a_dump='' a_pgdump='' leaks_a leaks_s found_a found_p
	if ! anon_build; then
		say "  PostgreSQL Anonymizer $ANON_VERSION: not available: $ANON_WHY"
	else
		sql -c "CREATE DATABASE copy_anon" -c "ALTER DATABASE copy_anon SET session_preload_libraries = 'anon'" >/dev/null
		sql -d copy_anon <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION anon CASCADE;
SELECT anon.init();
CREATE SCHEMA ref;
$(copy_customers_sql public.customers)
$(anon_labels public.customers)
VACUUM ANALYZE public.customers;
SQL
		# The same rows in both databases, or the comparison means nothing.
		[ "$(sql -d copy_anon -c "SELECT md5(string_agg(phone || national_id || bank_card, ',' ORDER BY id)) FROM customers")" = \
		  "$(sql -d copy_pii -c "SELECT md5(string_agg(phone || national_id || bank_card, ',' ORDER BY id)) FROM $base")" ] ||
			bench_die "copy: the two databases do not hold the same customers"
		a_plain=$(plain_copy_ms copy_anon public.customers)
		# (a) a masked copy in one pass, with the rules' expressions
		local filters i t=()
		filters=$(sql -d copy_anon -c "SELECT anon.mask_filters('public.customers'::regclass)")
		for ((i = 0; i < RUNS; i++)); do
			sql -d copy_anon -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS ref.masked" -c "CHECKPOINT" >/dev/null
			t+=("$(db_ms copy_anon "CREATE TABLE ref.masked AS SELECT $filters FROM public.customers")")
		done
		a_masked=$(best "${t[@]}")
		leaks_a=$(copy_leaks copy_anon ref.masked public.customers)
		# (what each rule costs: the copy with that column's rule alone, one
		# run each, less the plain copy, per row)
		local rule col ms per_rule=''
		for col in name phone national_id bank_card email address; do
			rule=$(sql -d copy_anon -c "SELECT masking_filter FROM anon.pg_masking_rules
			                             WHERE attrelid = 'public.customers'::regclass AND attname = '$col'")
			sql -d copy_anon -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS ref.one_rule" -c "CHECKPOINT" >/dev/null
			ms=$(db_ms copy_anon "CREATE TABLE ref.one_rule AS SELECT $rule AS x FROM public.customers")
			per_rule+="${per_rule:+, }$col $(awk -v ms="$ms" -v n="$n" 'BEGIN { printf "%.1f", ms * 1000 / n }')"
		done
		sql -d copy_anon -c "DROP TABLE ref.one_rule" >/dev/null
		# (b) static masking: anonymize_table() on a plain copy, which it updates in place
		t=()
		for ((i = 0; i < RUNS; i++)); do
			sql -d copy_anon -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS ref.static" \
				-c "CREATE TABLE ref.static AS SELECT * FROM public.customers" -c "$(anon_labels ref.static)" \
				-c "VACUUM ANALYZE ref.static" -c "CHECKPOINT" >/dev/null
			t+=("$(db_ms copy_anon "SELECT anon.anonymize_table('ref.static')")")
		done
		a_static=$(best "${t[@]}")
		leaks_s=$(copy_leaks copy_anon ref.static public.customers)
		say "  PostgreSQL Anonymizer $ANON_VERSION (rules: pseudo_last_name, partial for phone, ID and card, pseudo_email, fake_address):"
		say "    plain copy in its database (reference): $(copy_t "$a_plain")"
		say "    masked copy in one pass, CREATE TABLE AS SELECT anon.mask_filters(...): $(copy_t "$a_masked")" \
			"($(ratio "$a_masked" "$a_plain")× the plain copy)"
		say_leaks "      " "$leaks_a"
		say "      each rule alone, µs per row (CREATE TABLE AS SELECT of that expression only): $per_rule"
		say "    static masking, anon.anonymize_table() on a plain copy: $(copy_t "$a_static");" \
			"with the copy $(copy_t "$(awk -v a="$a_static" -v b="$a_plain" 'BEGIN { print a + b }')")" \
			"($(ratio "$(awk -v a="$a_static" -v b="$a_plain" 'BEGIN { print a + b }')" "$a_plain")× the plain copy)"
		say_leaks "      " "$leaks_s"
		# (c) its anonymous dump, against pg_dump of the same table; 1,000
		# real phone numbers looked for in each
		sql -d copy_anon -c "SELECT phone FROM public.customers ORDER BY id LIMIT 1000" >"$PGG_WORK/phones.txt"
		a_pgdump=$(dump_ms "$PGG_WORK/plain.dump" pg_dump -d copy_anon -t public.customers -f "$PGG_WORK/plain.dump")
		a_dump=$(dump_ms "$PGG_WORK/anon.dump" bash "$ANON_DIR/bin/pg_dump_anon.sh" -d copy_anon -t public.customers \
			-f "$PGG_WORK/anon.dump")
		found_p=$(grep -c -w -F -f "$PGG_WORK/phones.txt" "$PGG_WORK/plain.dump" || true)
		found_a=$(grep -c -w -F -f "$PGG_WORK/phones.txt" "$PGG_WORK/anon.dump" || true)
		say "    anonymous dump, bin/pg_dump_anon.sh (the shell version, deprecated in $ANON_VERSION): $(secs "$a_dump") s;" \
			"pg_dump of the table $(secs "$a_pgdump") s ($(ratio "$a_dump" "$a_pgdump")×)"
		say "      checked: lines with one of 1,000 real phone numbers: $found_a in the anonymous dump" \
			"($(wc -l <"$PGG_WORK/anon.dump") lines), $found_p in pg_dump's"
		[ "$found_p" -gt 0 ] || say "      (the check found nothing in the plain dump either: it does not work)"
		rm -f "$PGG_WORK/plain.dump" "$PGG_WORK/anon.dump" "$PGG_WORK/phones.txt"
		sql -c "DROP DATABASE copy_anon" >/dev/null
	fi

	# --- side by side ---------------------------------------------------------
	local a_total=''
	[ -z "$a_static" ] || a_total=$(awk -v a="$a_static" -v b="$a_plain" 'BEGIN { print a + b }')
	say "  ratios: pii_guard's copy / plain copy $(xr "$p_pii" "$p_plain");" \
		"anonymizer's one-pass copy / plain copy $(xr "$a_masked" "$a_plain");" \
		"anonymizer's static masking (plain copy + anonymize_table) / plain copy $(xr "$a_total" "$a_plain")"
	say "          pii_guard / anonymizer, one-pass copy $(xr "$p_pii" "$a_masked"), static masking $(xr "$p_pii" "$a_total")," \
		"anonymised dump $(xr "$d_pii" "$a_dump") (bin/pii_guard_dump / pg_dump_anon.sh)"
	say "  (not the same work: pii_guard writes format-preserving pseudonyms of name, phone, ID, card and e-mail," \
		"masks the address, then checks the copy for every real value; the anonymizer's rules above mask phone," \
		"ID and card with partial(), pick name and e-mail from its lists, and do not check the result)"
	sql -c "DROP DATABASE copy_pii" >/dev/null
}
