# test/scenario/audit_seal_gaps.sh -- rows whose transactions commit after later ones were sealed.
# An event id is taken from the sequence before its transaction commits,
# so a later id can be sealed first; the worker remembers the ids missing
# below what it sealed and looks for them again at every seal (instead of
# reading the last 10,000 event ids of both tables every half second).
# A write held open while others are written and sealed is sealed once it
# commits, within a few seconds (well before the next sweep); an id whose
# transaction rolled back never comes and breaks nothing; the chain
# verifies.
name=sealgaps
pgg_new_cluster $name
pgg_start $name
pgg_psql $name -d postgres >/dev/null <<'SQL'
CREATE EXTENSION pii_guard;
CREATE TABLE t (id int PRIMARY KEY, phone pii_guard.encrypted_text);
SELECT pii_guard.protect_column('t', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SQL
wait_sealed() {	# wait_sealed SECONDS: until no committed row is unsealed
	pgg_wait "$1" pgg_all_sealed $name postgres
}
pgg_ok "the first events are sealed" wait_sealed 20
# Let the first sweep pass (it runs at the worker's first cycle, then every 10 s).
sleep 1
# A write held open: its event id is taken now, its row commits in 4 s.
PGAPPNAME=held_write pgg_psql $name -d postgres -c "BEGIN; INSERT INTO public_pii.t VALUES (1, '13800000001');
	SELECT pg_sleep(4); COMMIT;" >/dev/null &
held=$!
held_write_sleeps() {	# it has inserted its row and sleeps in its transaction
	[ "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pg_stat_activity
	      WHERE application_name = 'held_write' AND wait_event = 'PgSleep'")" = 1 ]
}
pgg_wait 3 held_write_sleeps
held_id=$(pgg_psql $name -d postgres -tAc "SELECT last_value FROM pii_guard.audit_log_event_id_seq")
# One that rolls back: its id never comes.
pgg_psql $name -d postgres -c "BEGIN; INSERT INTO public_pii.t VALUES (99, '13800000099'); ROLLBACK;" >/dev/null
for i in 2 3 4 5 6; do
	pgg_psql $name -d postgres -c "INSERT INTO public_pii.t VALUES ($i, '1380000000$i')" >/dev/null
done
pgg_ok "the later writes are sealed while the first is still open" wait_sealed 3
pgg_is "... above the held one's id" "$(pgg_psql $name -d postgres -tAc "SELECT max(event_id) > $held_id FROM pii_guard.audit_seal")" t
wait $held
t0=$(date +%s%N)
pgg_ok "the held write's event is sealed once it commits" wait_sealed 5
t1=$(date +%s%N)
pgg_ok "... within 3 s (the gap is looked for at every seal, not left to the sweep): $(((t1 - t0) / 1000000)) ms" \
	test $(((t1 - t0) / 1000000)) -lt 3000
pgg_is "the held write's event is in the chain" \
	"$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.audit_log a JOIN pii_guard.audit_seal s USING (event_id)
	    WHERE a.kind = 'write' AND a.row_keys = '{1}'")" 1
pgg_is "the chain verifies" "$(pgg_psql $name -d postgres -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_is "no ERROR in the server log" "$(grep -c 'ERROR:' "$(pgg_log $name)")" 0
pgg_stop $name
