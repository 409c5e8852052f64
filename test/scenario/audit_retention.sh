# test/scenario/audit_retention.sh -- pii_guard.audit_retention: the audit
# worker moves sealed events older than the retention to a JSON-lines
# archive file (with the chain, so it verifies offline) and deletes them;
# verify_audit() continues the chain from the last archive,
# verify_audit_archive() checks the files, verify_audit(anchor) an anchor
# whose seal was archived.  What was archived was checked on the way out; a
# changed, cut, shortened or missing file, or a removed archive record, is
# found; an aborted step leaves no file; nobody writes archive records.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=retention
pgg_new_cluster $name
pgg_start $name
rpsql() { psql -X -q -h "$(pgg_sock $name)" -p 5432 -U postgres -d postgres "$@"; }
as_auditor() { psql -X -q -h "$(pgg_sock $name)" -p 5432 -U rt_auditor -d postgres "$@"; }
data=$(pgg_data $name)
archdir="$data/pii_guard_archive"
anchors="$data/anchors.txt"	# (where the server may write)
holds() { [ "$(rpsql -tAc "$1")" = t ]; }	# holds SQL: it returns true
grant_end_recorded() { holds "SELECT EXISTS (SELECT 1 FROM pii_guard.audit_log WHERE operation = 'grant_expired')"; }
archived() { holds "SELECT EXISTS (SELECT 1 FROM pii_guard.audit_archives)"; }
archive_step_recorded() {	# archive_step_recorded FILE: its admin event names it and its SHA-256
	holds "SELECT EXISTS (SELECT 1 FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'archive_audit'
	          AND detail LIKE '%archived to $1, sha256 %')"
}

rpsql -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE EXTENSION pii_guard;
CREATE ROLE rt_staff;
CREATE ROLE rt_clerk LOGIN IN ROLE rt_staff;
CREATE ROLE rt_auditor LOGIN IN ROLE pii_guard_auditor;
CREATE ROLE rt_approver IN ROLE pii_guard_approver;
CREATE TABLE clients (id int PRIMARY KEY, phone pii_guard.encrypted_text, note text);
INSERT INTO clients SELECT g, '1380000' || lpad(g::text, 4, '0'), 'ACME,Inc' FROM generate_series(1, 20) g;
GRANT SELECT ON clients TO rt_staff;
SELECT pii_guard.protect_table('clients');
SELECT pii_guard.protect_column('clients', 'phone', 'sensitive');
SELECT pii_guard.set_clearance('rt_staff', 'sensitive', 'clerks');
ALTER SYSTEM SET pii_guard.audit_anchor_command = 'echo "%a" >> $anchors';
SELECT pg_reload_conf();
SQL
for i in 1 2 3; do
	psql -X -q -h "$(pgg_sock $name)" -p 5432 -U rt_clerk -d postgres -c "SELECT phone FROM clients WHERE id = $i" >/dev/null
done
rpsql -c "SET ROLE rt_approver" -c "SELECT pii_guard.approve('rt_clerk', 'clients', clock_timestamp() + interval '1 second', 'callback')" >/dev/null
pgg_ok "the grant's end is recorded" pgg_wait 15 grant_end_recorded
pgg_ok "everything is sealed" pgg_wait 15 pgg_all_sealed $name postgres
early_anchor=$(head -1 "$anchors")
pgg_ok "an early anchor was kept" grep -qE '^[0-9]+:[0-9a-f]{64}$' <<<"$early_anchor"

# Without a retention, archive_audit() needs an interval; only superusers run it.
out=$(rpsql -c "SELECT * FROM pii_guard.archive_audit()" 2>&1)
pgg_ok "no retention set: archive_audit() says so (55000)" grep -q "no audit retention is set" <<<"$out"
out=$(as_auditor -c "SELECT * FROM pii_guard.archive_audit('0 s')" 2>&1)
pgg_ok "an auditor may not archive" grep -q "permission denied for function archive_audit" <<<"$out"
out=$(rpsql -c "ALTER SYSTEM SET pii_guard.audit_retention = 'forever'" 2>&1)
pgg_ok "a retention that is no interval is refused" grep -q "is an interval" <<<"$out"
out=$(rpsql -c "ALTER SYSTEM SET pii_guard.audit_retention = '-1 day'" 2>&1)
pgg_ok "... so is a negative one" grep -q "must be a positive interval" <<<"$out"

# An aborted archive step removes its file and keeps the rows.
before=$(rpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")
rpsql -c "BEGIN" -c "SELECT * FROM pii_guard.archive_audit('0 s')" -c "ROLLBACK" >/dev/null
pgg_is "an aborted archive step leaves no file" "$(ls "$archdir" 2>/dev/null | wc -l)" 0
pgg_is "... and every row" "$(rpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")" "$before"

# The retention set: the worker archives what is older, at once.
sleep 1
rpsql -c "ALTER SYSTEM SET pii_guard.audit_retention = '1 s'" -c "SELECT pg_reload_conf()" >/dev/null
pgg_ok "the worker archived the events older than the retention" pgg_wait 15 archived
rpsql -c "ALTER SYSTEM RESET pii_guard.audit_retention" -c "SELECT pg_reload_conf()" >/dev/null
file1=$(rpsql -tAc "SELECT file FROM pii_guard.audit_archives ORDER BY first_seal LIMIT 1")
pgg_ok "the archive file is in the archive directory" test -s "$archdir/$file1"
pgg_ok "the server log says so" grep -q "pii_guard archived [0-9]* audit events (seals 1 to" "$(pgg_log $name)"
pgg_is "the archived events left the table, the newest seal stayed" \
	"$(rpsql -tAc "SELECT (SELECT count(*) FROM pii_guard.audit_log l JOIN pii_guard.audit_seal s USING (event_id)
	                 WHERE s.seal_seq <= a.last_seal) || ' ' || (SELECT count(*) > 0 FROM pii_guard.audit_seal)
	               FROM pii_guard.audit_archives a")" "0 true"
pgg_ok "the step is an admin event naming the file and its SHA-256" \
	pgg_wait 15 archive_step_recorded "$file1"
pgg_is "the file holds a header, the events and an end line" \
	"$(head -1 "$archdir/$file1" | grep -c '"pii_guard_audit_archive": 1')$(tail -1 "$archdir/$file1" | grep -c '"end": true')" 11
pgg_is "no plaintext value is in it" "$(grep -c 13800000 "$archdir/$file1")" 0
pgg_is "verify_audit() continues from the archive" "$(as_auditor -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_is "the archive verifies (an auditor may check it)" \
	"$(as_auditor -tAc "SELECT count(*) FROM pii_guard.verify_audit_archive()")" 0
pgg_is "the early anchor, now archived, verifies" \
	"$(as_auditor -tAc "SELECT count(*) FROM pii_guard.verify_audit('$early_anchor')")" 0
seq=${early_anchor%%:*}
pgg_ok "... and a forged one at that seal does not" \
	grep -q "does not match the anchor" <<<"$(as_auditor -tAc "SELECT problem FROM pii_guard.verify_audit('$seq:$(printf '0%.0s' $(seq 64))')")"

# Offline: the chain verifies with SHA-256 alone, from the header's hash.
if command -v python3 >/dev/null; then
	offline=$(python3 - "$archdir/$file1" <<'PY'
import hashlib, json, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
head, events, end = lines[0], lines[1:-1], lines[-1]
prev = bytes.fromhex(head['prev_chain_hash']) if head['prev_chain_hash'] else b''
seq = head['first_seal']
for e in events:
    assert e['seal_seq'] == seq, 'seal missing'
    h = hashlib.sha256(prev + e['event_id'].to_bytes(8, 'big') + bytes.fromhex(e['row_mac'][2:])).digest()
    assert h.hex() == e['chain_hash'], 'chain link'
    prev, seq = h, seq + 1
assert end['end'] and end['events'] == len(events) and end['last_chain_hash'] == prev.hex()
print('verified', len(events))
PY
)
	pgg_ok "the archive's chain verifies offline" grep -q "^verified [0-9]" <<<"$offline"
fi

# New events, a second archive continuing the chain.
psql -X -q -h "$(pgg_sock $name)" -p 5432 -U rt_clerk -d postgres -c "SELECT phone FROM clients WHERE id = 4" >/dev/null
pgg_ok "the new read is sealed" pgg_wait 15 pgg_all_sealed $name postgres
rpsql -c "SELECT pg_sleep(0.2)" -c "SELECT * FROM pii_guard.archive_audit('0 s')" >/dev/null
pgg_is "a second archive continues the first" \
	"$(rpsql -tAc "SELECT count(*) || ' ' || bool_and(b.prev_chain_hash = a.last_chain_hash AND b.first_seal = a.last_seal + 1)
	               FROM pii_guard.audit_archives a JOIN pii_guard.audit_archives b ON b.first_seal > a.first_seal")" "1 true"
file2=$(rpsql -tAc "SELECT file FROM pii_guard.audit_archives ORDER BY first_seal DESC LIMIT 1")
pgg_is "archives and table verify" \
	"$(as_auditor -tAc "SELECT (SELECT count(*) FROM pii_guard.verify_audit()) + (SELECT count(*) FROM pii_guard.verify_audit_archive())")" 0

# Nobody writes archive records or deletes events, superusers neither.
out=$(rpsql -c "INSERT INTO pii_guard.audit_archives SELECT 'x.jsonl', 999, 999, 1, 1, 1, NULL, '\x00', '\x00', now()" 2>&1)
pgg_ok "an archive record cannot be forged" grep -q "recorded by pii_guard only" <<<"$out"
out=$(rpsql -c "DELETE FROM pii_guard.audit_archives" 2>&1)
pgg_ok "... nor removed" grep -q "append-only" <<<"$out"
out=$(rpsql -c "DELETE FROM pii_guard.audit_log" 2>&1)
pgg_ok "events are still deleted by the archive step only" grep -q "append-only" <<<"$out"

# Each kind of damage to a file is found (and undone after).
check() { as_auditor -tAc "SELECT problem FROM pii_guard.verify_audit_archive('$file1')"; }
cp -p "$archdir/$file1" "$data/keep.jsonl"	# (-p: the server's own file, as root too)
sed -i '2s/"kind": "admin"/"kind": "read"/' "$archdir/$file1"
out=$(check)
pgg_ok "a changed event: the file's SHA-256" grep -q "does not match the SHA-256" <<<"$out"
pgg_ok "... and the row's MAC" grep -q "archived row does not match its MAC" <<<"$out"
cp -p "$data/keep.jsonl" "$archdir/$file1"
sed -i '3d' "$archdir/$file1"
pgg_ok "a removed event: a missing seal" grep -q "a seal is missing in the archive" <<<"$(check)"
cp -p "$data/keep.jsonl" "$archdir/$file1"
sed -i '$d' "$archdir/$file1"
pgg_ok "a cut file: no end line" grep -q "has no end line" <<<"$(check)"
cp -p "$data/keep.jsonl" "$archdir/$file1"
sed -i '2s/^{/{x/' "$archdir/$file1"
pgg_ok "a line that is no JSON" grep -q "line 2 of the archive is not an archived event" <<<"$(check)"
cp -p "$data/keep.jsonl" "$archdir/$file1"
cp "$archdir/$file2" "$archdir/$file1"
pgg_ok "another archive in its place" grep -q "header does not match" <<<"$(check)"
rm "$archdir/$file1"
pgg_ok "a missing file" grep -q "the archive file is missing" <<<"$(check)"
pgg_ok "... also when verify_audit(anchor) needs it" grep -q "the archive file is missing" \
	<<<"$(as_auditor -tAc "SELECT problem FROM pii_guard.verify_audit('$early_anchor')")"
cp -p "$data/keep.jsonl" "$archdir/$file1"
pgg_is "restored, it verifies again" "$(check 2>&1 | wc -w)" 0

# A removed archive record (a superuser with the guards off) cuts the chain.
rpsql -v ON_ERROR_STOP=1 >/dev/null <<SQL
BEGIN;
ALTER TABLE pii_guard.audit_archives DISABLE TRIGGER USER;
DELETE FROM pii_guard.audit_archives WHERE file = '$file1';
SELECT problem FROM pii_guard.verify_audit() \g $data/cut.txt
ROLLBACK;
SQL
pgg_ok "a removed archive record: verify_audit() finds the cut" grep -q "an archive is missing" "$data/cut.txt"

# A changed row stops the archive step: nothing is archived.
rpsql -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT pg_sleep(0.6);
BEGIN;
ALTER TABLE pii_guard.audit_log DISABLE TRIGGER USER;
UPDATE pii_guard.audit_log SET detail = 'changed' WHERE event_id = (SELECT min(event_id) FROM pii_guard.audit_log);
ALTER TABLE pii_guard.audit_log ENABLE TRIGGER USER;
COMMIT;
SQL
n=$(rpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")
out=$(rpsql -c "SELECT * FROM pii_guard.archive_audit('0 s')" 2>&1)
pgg_ok "a changed row stops the archive step (XX001)" grep -q "does not verify: nothing was archived" <<<"$out"
pgg_is "... and every row stays" "$(rpsql -tAc "SELECT count(*) FROM pii_guard.audit_log")" "$n"
pgg_is "... and no file is left" "$(ls "$archdir" | wc -l)" 2
out=$(rpsql 2>&1 <<'SQL'
BEGIN;
DO $$ BEGIN PERFORM pii_guard.archive_audit('0 s'); EXCEPTION WHEN data_corrupted THEN RAISE NOTICE 'caught'; END $$;
DELETE FROM pii_guard.audit_log;
ROLLBACK;
SQL
)
pgg_ok "a caught failure of the step lets no delete through afterwards" \
	grep -q "caught.*append-only" <<<"$(tr '\n' ' ' <<<"$out")"
pgg_is "... and leaves no file" "$(ls "$archdir" | wc -l)" 2

# An archived grant expiry is not recorded again (a restart looks at all grants).
pgg_restart $name
sleep 1.5
pgg_is "the archived grant expiry is not recorded again" \
	"$(rpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE operation = 'grant_expired'")" 0
pgg_stop $name
