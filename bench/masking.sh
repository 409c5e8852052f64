# bench/masking.sh -- the masking section of bench/run.sh: pii_guard's
# masking view beside PostgreSQL Anonymizer's dynamic masking, on the same
# table, in the same run.
#
# MASKING_ROWS people (default 200000): id, name, e-mail, city.  Streamed to
# a client (psql, COPY (SELECT ...) TO STDOUT into /dev/null, a new session
# per run, plain and masked interleaved, best of MASKING_RUNS = 7 after a
# warm-up each) with two masked columns (name
# and e-mail; city plain):
#   plain       the table itself, by its owner (in each database: the
#               reference for that database's ratio);
#   pii_guard   a role of clearance public through the masking view, read
#               audit on (the default: every read is an audit event);
#   anonymizer  PostgreSQL Anonymizer 1.1.0 (built from ../shared/peers, as
#               the copy section does, into this run's installation), its
#               dynamic masking (anon.start_dynamic_masking(), a role labelled
#               MASKED reads the generated view in schema mask) with the
#               same masks: partial() keeping the name's first character and
#               the e-mail's domain -- the shapes of pii_guard's mask_name and
#               mask_email.
# Both databases hold the same rows (checked).  Targets (README,
# Performance): pii_guard <= 1.2x the plain table, and ahead of the
# anonymizer.

masking() {
	local rows=${MASKING_ROWS:-200000}
	say "== masking: $rows rows with two masked columns streamed to a client, pii_guard vs PostgreSQL Anonymizer $ANON_VERSION"
	local gen="SELECT g, (ARRAY['王','李','张','刘','陈'])[1 + g % 5] || (ARRAY['伟','芳','娜','敏','静'])[1 + g % 5] || g % 97,
	                  'user' || g || '@example.com', 'city' || (g % 100)
	             FROM generate_series(1, $rows) g"
	sql <<SQL >/dev/null
SET client_min_messages = warning;
CREATE ROLE bench_m_masked LOGIN;
CREATE TABLE people_m (id int PRIMARY KEY, name text, email text, city text);
INSERT INTO people_m $gen;
GRANT SELECT ON people_m TO bench_m_masked;
SELECT pii_guard.protect_column('people_m', 'name', 'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('people_m', 'email', 'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.set_clearance('bench_m_masked', 'public');
VACUUM ANALYZE public_pii.people_m;
SQL
	[ "$(sql -c "SHOW pii_guard.audit_reads")" = on ] || bench_die "masking: read audit is off"
	local cols="id, name, email, city" p_plain p_pii a_plain a_anon=''
	# (interleaved, best of MASKING_RUNS each: one run is 0.1-0.3 s, where
	# the machine's other work shows)
	local i t_a t_b
	p_plain='' p_pii=''
	for ((i = 0; i < ${MASKING_RUNS:-7}; i++)); do
		t_a=$(RUNS=1 client_ms postgres "COPY (SELECT $cols FROM public_pii.people_m) TO STDOUT")
		t_b=$(RUNS=1 client_ms bench_m_masked "COPY (SELECT $cols FROM public.people_m) TO STDOUT")
		p_plain=$(best $t_a $p_plain)
		p_pii=$(best $t_b $p_pii)
	done
	# (masked, as a role of clearance public sees them)
	[ "$(psql -X -tA -U bench_m_masked -c "SELECT name LIKE '李%*' AND email LIKE '%*@example.com' FROM people_m WHERE id = 1")" = t ] ||
		bench_die "masking: pii_guard's masked role does not see masks"

	if ! anon_build; then
		say "  PostgreSQL Anonymizer $ANON_VERSION: not available: $ANON_WHY"
	else
		sql -c "CREATE DATABASE masking_anon" \
			-c "ALTER DATABASE masking_anon SET session_preload_libraries = 'anon'" >/dev/null
		sql -d masking_anon <<SQL >/dev/null
SET client_min_messages = warning;
CREATE EXTENSION anon CASCADE;
CREATE TABLE people_m (id int PRIMARY KEY, name text, email text, city text);
INSERT INTO people_m $gen;
SECURITY LABEL FOR anon ON ROLE bench_m_masked IS 'MASKED';
SECURITY LABEL FOR anon ON COLUMN people_m.name IS 'MASKED WITH FUNCTION anon.partial(name, 1, \$\$**\$\$, 0)';
SECURITY LABEL FOR anon ON COLUMN people_m.email IS
    'MASKED WITH FUNCTION anon.partial_email(email)';
GRANT SELECT ON people_m TO bench_m_masked;
SELECT anon.start_dynamic_masking();
VACUUM ANALYZE people_m;
SQL
		[ "$(sql -d masking_anon -c "SELECT md5(string_agg(name || email || city, ',' ORDER BY id)) FROM people_m")" = \
		  "$(sql -c "SELECT md5(string_agg(name || email || city, ',' ORDER BY id)) FROM public_pii.people_m")" ] ||
			bench_die "masking: the two databases do not hold the same rows"
		[ "$(psql -X -tA -U bench_m_masked -d masking_anon -c "SELECT name LIKE '李**' AND email LIKE '%*%' FROM people_m WHERE id = 1")" = t ] ||
			bench_die "masking: the anonymizer's masked role does not see masks"
		a_plain=''
		a_anon=''
		for ((i = 0; i < ${MASKING_RUNS:-7}; i++)); do
			t_a=$(PGDATABASE=masking_anon RUNS=1 client_ms postgres "COPY (SELECT $cols FROM public.people_m) TO STDOUT")
			t_b=$(PGDATABASE=masking_anon RUNS=1 client_ms bench_m_masked "COPY (SELECT $cols FROM people_m) TO STDOUT")
			a_plain=$(best $t_a $a_plain)
			a_anon=$(best $t_b $a_anon)
		done
	fi
	local line1 line2
	line1="  µs per row: plain $(us "$p_plain" "$rows"), pii_guard's masking view (read audit on) $(us "$p_pii" "$rows")"
	line2="    ratios to the plain table: pii_guard $(ratio "$p_pii" "$p_plain")×"
	if [ -n "$a_anon" ]; then
		line1="$line1; in the anonymizer's database: plain $(us "$a_plain" "$rows"), its dynamic masking $(us "$a_anon" "$rows")"
		line2="$line2, anonymizer $(ratio "$a_anon" "$a_plain")×"
	fi
	say "$line1"
	say "$line2"
	check "masked scan with read audit, vs the plain table (ratio)" "$(ratio "$p_pii" "$p_plain")" "<=" 1.2
	if [ -n "$a_anon" ]; then
		check "ahead of the anonymizer (pii_guard's ratio / the anonymizer's)" \
			"$(awk -v a="$p_pii" -v b="$p_plain" -v c="$a_anon" -v d="$a_plain" 'BEGIN { printf "%.2f", (a / b) / (c / d) }')" "<=" 1.0
	fi
	sql -c "SET client_min_messages = warning" -c "SELECT pii_guard.unprotect_table('people_m')" \
		-c "DROP TABLE people_m" -c "DROP DATABASE IF EXISTS masking_anon" \
		-c "DROP OWNED BY bench_m_masked" -c "DROP ROLE bench_m_masked" >/dev/null
}
