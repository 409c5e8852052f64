# test/scenario/demo.sh -- `make demo` keeps working, and README.md matches
# what `make demo KEEP=1` leaves behind.
#
#  1. The whole demo, with KEEP=1, on a small database: 6,000 customers
#     instead of 100,000 -- deliberately not the 5,000 of
#     test/scenario/readme.sh, so that an output of the README that depends
#     on the number of customers fails one of the two scenarios.  The demo
#     checks its own results as it goes (every refusal's SQLSTATE, the 500
#     exported rows, the same data before and after the key rotation,
#     verify_audit()) and fails if one is off.
#  2. Every ```sql block of README.md, run by test/readme_blocks.py exactly
#     as test/scenario/readme.sh runs them (markers, roles, SQLSTATEs, the
#     outputs shown), but against the demo's database pii_guard_demo, at the
#     socket and port the demo printed -- after the demo's own steps, as a
#     reader would run them.  All of them, not only the "Five-minute tour"
#     that the README says to run there: the reference sections' blocks hold
#     there too, and they run after the tour, so what they change (a table
#     contacts, a column wechat_id, approvals) reaches no output the tour
#     shows.  (Not the catalogue check: readme.sh does that.)  What 6,000
#     customers cannot show: plans that only 100,000 get, parallel ones.
#  3. The kept cluster is stopped with the command the demo printed, and its
#     work directory removed.  The demo's work directory is made under
#     $PGG_WORK (TMPDIR), and a trap stops and removes whatever is left of
#     it when this scenario ends -- also on failure or interrupt.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

demo_log=$PGG_WORK/demo.log
demo_customers=6000

# Whatever the demo left: its clusters stopped, its work directory removed
# (kept with make test's KEEP=1, inside the work directory it keeps).
demo_cleanup() {
	local pid_file
	for pid_file in "$PGG_WORK"/pii_guard.*/*/data/postmaster.pid; do
		[ -f "$pid_file" ] || continue
		pgg_as_server "$PGG_SERVER_BIN/pg_ctl" -D "$(dirname "$pid_file")" \
			-m immediate -w -t 30 stop >/dev/null 2>&1 || true
	done
	[ -n "${KEEP:-}" ] || rm -rf "$PGG_WORK"/pii_guard.*
}
trap demo_cleanup EXIT

(unset PGHOST PGPORT PGDATABASE PGUSER
 export TMPDIR=$PGG_WORK KEEP=1 DEMO_CUSTOMERS=$demo_customers
 "$PGG_REPO/examples/demo.sh") >"$demo_log" 2>&1
demo_rc=$?
[ "$demo_rc" -eq 0 ] || tail -30 "$demo_log" | sed 's/^/  # /'
pgg_is "make demo KEEP=1 (6,000 customers) succeeds" "$demo_rc" 0
pgg_ok "... through all ten steps" grep -q '^==== 10\. Is the audit trail intact' "$demo_log"

# What it printed: how to connect, and how to stop it.
#     psql -h SOCKET_DIR -p PORT -U mgr_eve DATABASE
#     [runuser -u postgres -- ].../pg_ctl -D DATA stop && rm -rf WORK
read -r _ _ demo_sock _ demo_port _ _ demo_db _ < <(grep -m1 '^ *psql -h .* -U mgr_eve ' "$demo_log")
demo_stop=$(sed -n '/^Stop it and remove everything with:$/{n;s/^ *//;p;q}' "$demo_log")
demo_work=${demo_stop##*rm -rf }
if test -n "$demo_sock" -a -n "$demo_port" -a "$demo_db" = pii_guard_demo -a -n "$demo_stop" \
	-a -S "$demo_sock/.s.PGSQL.$demo_port"; then
	demo_kept=1
else
	demo_kept=
fi
pgg_ok "... and leaves its cluster running, saying how to connect and how to stop it" test -n "$demo_kept"
# (Without it, nothing more to check: the trap cleans up.)
if [ -n "$demo_kept" ]; then
	# The README's blocks, as readme.sh runs them.
	readme_log=$PGG_WORK/demo_readme_blocks.log
	/usr/bin/python3 "$PGG_REPO/test/readme_blocks.py" "$PGG_REPO/README.md" "$demo_sock" \
		"$PGG_WORK/demo_readme_output.log" --port "$demo_port" --dbname "$demo_db" >"$readme_log" 2>&1
	readme_rc=$?
	grep '^not ok\|^   \|^     ' "$readme_log" | sed 's/^/  # /'
	tail -1 "$readme_log" | sed 's/^/  # /'
	pgg_is "every SQL block of README.md runs as it says on the database make demo KEEP=1 leaves" "$readme_rc" 0

	# Stop it as the demo says (only a command of the form it prints: the
	# server's pg_ctl, then rm -rf of a directory under $PGG_WORK).
	stop_re="^(runuser -u postgres -- )?[^ ]+/pg_ctl -D [^ ]+ stop && rm -rf $PGG_WORK/pii_guard\.[A-Za-z0-9]+\$"
	if [[ "$demo_stop" =~ $stop_re ]]; then
		bash -c "$demo_stop" >/dev/null 2>&1
		stop_rc=$?
	else
		echo "  # unexpected stop command: $demo_stop"
		stop_rc=1
	fi
	pgg_is "the stop command it printed succeeds" "$stop_rc" 0
	pgg_ok "... the cluster is stopped" test ! -e "$demo_sock/.s.PGSQL.$demo_port"
	pgg_ok "... and its work directory removed" test -n "$demo_work" -a ! -e "$demo_work"
fi
