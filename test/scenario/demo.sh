# test/scenario/demo.sh -- `make demo` keeps working: the whole tour, on a
# small database (5,000 customers instead of 100,000).  The demo checks its
# own results as it goes (every refusal's SQLSTATE, the 500 exported rows,
# the same data before and after the key rotation, verify_audit()) and fails
# if one is off.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

demo_log=$PGG_WORK/demo.log
(unset PGHOST PGPORT PGDATABASE PGUSER KEEP
 DEMO_CUSTOMERS=5000 "$PGG_REPO/examples/demo.sh") >"$demo_log" 2>&1
demo_rc=$?
[ "$demo_rc" -eq 0 ] || tail -30 "$demo_log" | sed 's/^/  # /'
pgg_is "make demo (5,000 customers) succeeds" "$demo_rc" 0
pgg_ok "... through all ten steps" grep -q '^==== 10\. Is the audit trail intact' "$demo_log"
pgg_ok "... and removes its cluster" grep -q '^Stopping and removing the cluster' "$demo_log"
