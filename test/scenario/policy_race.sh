# test/scenario/policy_race.sh -- decisions are computed while the policy
# changes under them.
#
# A reader whose column access depends on row-specific grants reads the
# masked column through the masking view, in fresh sessions (every
# decision computed anew), while an approver issues grants for some of its
# rows as fast as it can (each one invalidates every backend's decisions).
# It also writes through the view (prepared, RETURNING the row as it sees
# it): the write trigger keeps the masking views' cache it started with
# while it runs, since the statements it runs would reload it from under it.
# Before decisions were computed aside and entered only when no cache reset
# came in between, a reset during the computation freed the row keys the
# new decision then pointed at, and a read crashed the backend within
# seconds (found by make soak).
#
# Proves: no backend crashes, both clients run without error, and the
# reader sees exactly the rows granted to it in clear, the others masked.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=prace
pgg_new_cluster $name
pgg_start $name
pgg_psql $name -d postgres <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE pr_reader LOGIN;
CREATE ROLE pr_approver LOGIN IN ROLE pii_guard_approver;
CREATE TABLE pr (id int PRIMARY KEY, phone pii_guard.encrypted_text, note text);
INSERT INTO pr SELECT g, '1370000' || lpad(g::text, 4, '0'), 'n' || g FROM generate_series(1, 200) g;
GRANT SELECT, UPDATE (note), INSERT ON pr TO pr_reader;
SELECT pii_guard.protect_column('pr', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('pr_reader', 'public');
SQL
cat >"$PGG_WORK/prace_read.sql" <<'EOF'
\set id random(1, 200)
SELECT id, phone FROM pr WHERE id BETWEEN :id AND :id + 5;
EOF
cat >"$PGG_WORK/prace_write.sql" <<'EOF'
\set id random(1, 200)
UPDATE pr SET note = 'n' || :id WHERE id = :id RETURNING id, phone;
EOF
cat >"$PGG_WORK/prace_approve.sql" <<'EOF'
\set id random(1, 200)
SELECT pii_guard.approve('pr_reader', 'pr', now() + interval '1 hour', 'race test', '{phone}', ARRAY[:id::text]);
EOF
prace_bench() {	# prace_bench LOG USER ARGS...
	local log=$1 user=$2
	shift 2
	pgbench -n -h "$(pgg_sock $name)" -p 5432 -U "$user" "$@" postgres >"$log" 2>&1
}
prace_bench "$PGG_WORK/prace_read.log" pr_reader -C -c 3 -j 3 -T 8 -f "$PGG_WORK/prace_read.sql" &
prace_reader=$!
prace_bench "$PGG_WORK/prace_write.log" pr_reader -M prepared -c 2 -j 2 -T 8 -f "$PGG_WORK/prace_write.sql" &
prace_writer=$!
prace_bench "$PGG_WORK/prace_approve.log" pr_approver -c 1 -T 8 -f "$PGG_WORK/prace_approve.sql"
prace_approve_rc=$?
wait $prace_reader
prace_read_rc=$?
wait $prace_writer
prace_write_rc=$?

pgg_is "no backend crashed" "$(grep -c 'terminated by signal' "$(pgg_log $name)")" 0
pgg_is "the reading clients ran without error" "$prace_read_rc" 0
pgg_is "the writing clients (through the view, RETURNING) ran without error" "$prace_write_rc" 0
pgg_is "the approving client ran without error" "$prace_approve_rc" 0
pgg_ok "grants were issued during the reads" test "$(pgg_psql $name -d postgres -tAc \
	"SELECT count(*) FROM pii_guard.grants")" -gt 50
pgg_is "the reader sees exactly the granted rows in clear" \
	"$(psql -X -q -tA -h "$(pgg_sock $name)" -p 5432 -U pr_reader -d postgres -c \
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM pr WHERE phone NOT LIKE '%*%'")" \
	"$(pgg_psql $name -d postgres -tAc \
		"SELECT string_agg(k, ',' ORDER BY k::int) FROM (SELECT DISTINCT k FROM pii_guard.grants, unnest(row_keys) k) s")"
pgg_stop $name
