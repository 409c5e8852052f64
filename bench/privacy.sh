# bench/privacy.sh -- the privacy section of bench/run.sh: what consents and
# subject keys (crypto-shredding) cost on reads through a masking view.
#
# One table of PRIVACY_ROWS people (default 200000): name, e-mail and an
# encrypted phone, all protected.  Two roles with the same clearance: one
# works for 'service' (needs no consent), one for 'marketing' (needs it),
# and every customer consented to marketing, so both see every value in
# clear -- the difference is the per-row consent check alone.  A copy of the
# table keeps its phones under per-customer subject keys (shred_by); read by
# the service role, the difference against the first table is the subject
# keys alone.  Each read is timed twice:
#  - warm: in one session, best of BENCH_RUNS after a warm-up (a pooled
#    application connection; the consents and keys are loaded once);
#  - cold: a new session per run, streaming every row to the client (psql
#    COPY TO STDOUT), so loading the consents or keys is in every figure.
# Target (README, Performance): with consents, reads at >= 0.9x the speed
# without (warm).  Subject keys: measured, no target -- every value of a
# different person means keying AES-GCM afresh (~0.15 us).

privacy() {
	local rows=${PRIVACY_ROWS:-200000}
	say "== privacy: consents and subject keys on reads, $rows people (name, e-mail, encrypted phone)"
	sql <<SQL >/dev/null
SET client_min_messages = warning;
CREATE ROLE bench_service LOGIN;
CREATE ROLE bench_mkt LOGIN;
CREATE TABLE people (id int PRIMARY KEY, name text, email text, phone pii_guard.encrypted_text);
INSERT INTO people
SELECT g, 'Name' || g, 'user' || g || '@example.com', '138' || lpad(g::text, 8, '0')
  FROM generate_series(1, $rows) g;
CREATE TABLE people_s (LIKE people INCLUDING ALL);
GRANT SELECT ON people, people_s TO bench_service, bench_mkt;
SELECT pii_guard.protect_column(t, 'name', 'sensitive', 'pii_guard.mask_name(text)'),
       pii_guard.protect_column(t, 'email', 'sensitive', 'pii_guard.mask_email(text)'),
       pii_guard.protect_column(t, 'phone', 'sensitive', 'pii_guard.mask_phone(text)')
  FROM unnest('{people,people_s}'::regclass[]) t;
-- (named before the rows arrive: re-sealing existing rows would leave the
-- table twice the size until VACUUM FULL, and time the bloat)
SELECT pii_guard.shred_by('people_s');
INSERT INTO public_pii.people_s SELECT * FROM public_pii.people;
SELECT pii_guard.define_purpose('service', 'serving the customer''s own requests', false);
SELECT pii_guard.define_purpose('marketing', 'offers by e-mail');
SELECT pii_guard.set_clearance('bench_service', 'sensitive'), pii_guard.set_clearance('bench_mkt', 'sensitive');
SELECT pii_guard.set_purposes('bench_service', '{service}'), pii_guard.set_purposes('bench_mkt', '{marketing}');
-- every customer's consent (in bulk: record_consent() is one call per consent)
INSERT INTO pii_guard.consents (base, row_key, purpose, given_at, how)
SELECT 'public_pii.people'::regclass, g::text, 'marketing', now() - interval '1 day', 'sign-up form'
  FROM generate_series(1, $rows) g;
VACUUM ANALYZE public_pii.people, public_pii.people_s;
SQL
	local q="SELECT sum(length(name) + length(email) + length(phone)) FROM"
	local w_off w_on w_keys c_off c_on c_keys cols="id, name, email, phone"
	# (every value is clear for both roles: the same output)
	[ "$(sql -c "SET ROLE bench_mkt" -c "SELECT count(*) FROM people WHERE phone LIKE '138%' AND name LIKE 'Name%'")" = "$rows" ] ||
		bench_die "privacy: the marketing role does not see every consented row in clear"
	w_off=$(sql -c "SET ROLE bench_service" -c "SELECT bench_ms('$q public.people', $RUNS)")
	w_on=$(sql -c "SET ROLE bench_mkt" -c "SELECT bench_ms('$q public.people', $RUNS)")
	w_keys=$(sql -c "SET ROLE bench_service" -c "SELECT bench_ms('$q public.people_s', $RUNS)")
	c_off=$(client_ms bench_service "COPY (SELECT $cols FROM public.people) TO STDOUT")
	c_on=$(client_ms bench_mkt "COPY (SELECT $cols FROM public.people) TO STDOUT")
	c_keys=$(client_ms bench_service "COPY (SELECT $cols FROM public.people_s) TO STDOUT")
	say "  warm session, three values per row folded in the server, µs per row: no consent needed $(us "$w_off" "$rows"), consent checked $(us "$w_on" "$rows"), subject keys $(us "$w_keys" "$rows")"
	say "    speed with consents $(ratio "$w_off" "$w_on")× of without; with subject keys $(ratio "$w_off" "$w_keys")× of the data key"
	say "  new session per read, every row to the client, µs per row: no consent needed $(us "$c_off" "$rows"), consent checked $(us "$c_on" "$rows"), subject keys $(us "$c_keys" "$rows")"
	say "    speed with consents $(ratio "$c_off" "$c_on")× of without (loading $rows consents per session included); with subject keys $(ratio "$c_off" "$c_keys")× ($rows keys unwrapped per session)"
	check "reads with consent checks, warm (speed ratio)" "$(ratio "$w_off" "$w_on")" ">=" 0.9
	sql -c "SET client_min_messages = warning" -c "SELECT pii_guard.unprotect_table('people')" \
		-c "SELECT pii_guard.unprotect_table('people_s')" -c "DROP TABLE people, people_s" \
		-c "DELETE FROM pii_guard.subject_keys" \
		-c "DROP OWNED BY bench_service, bench_mkt" -c "DROP ROLE bench_service, bench_mkt" >/dev/null
}
