# test/scenario/readme.sh -- README.md cannot drift from the code: every
# ```sql block in it is run, in order, against the examples' database
# (examples/roles.sql, schema.sql, 5,000 customers of data.sql, policy.sql),
# and everything the extension installs is named in it.
#
# The blocks are run by test/readme_blocks.py (shared with
# test/scenario/demo.sh, which runs them on the database make demo KEEP=1
# leaves).  The line just before each ```sql fence says how to run the block:
#   <!-- readme-test -->                       as the superuser; must succeed
#   <!-- readme-test: as=ROLE -->              as ROLE (a connection as it if
#                                              it can log in, else SET ROLE)
#   <!-- readme-test: error=SQLSTATE -->       must fail with that SQLSTATE
#   <!-- readme-test: as=ROLE error=SQLSTATE -->
#   <!-- illustration -->                      not run (a template)
# A ```sql block without one fails.  A ```text block marked
# <!-- readme-test: output --> right after a block is what psql must print
# for it (aligned format, trailing blanks ignored).
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

pgg_new_cluster readme
pgg_start readme
rd_setup() {
	pgg_new_db readme readme &&
	pgg_psql readme -d readme -f "$PGG_REPO/examples/roles.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-f "$PGG_REPO/examples/schema.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-v customers="${DEMO_CUSTOMERS:-5000}" -f "$PGG_REPO/examples/data.sql" &&
	psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock readme)" -p 5432 -U crm_dba -d readme \
		-f "$PGG_REPO/examples/policy.sql"
} >"$PGG_WORK/readme_setup.log" 2>&1
rd_setup || tail -20 "$PGG_WORK/readme_setup.log" | sed 's/^/  # /'
pgg_ok "the examples load" grep -vq ERROR "$PGG_WORK/readme_setup.log"

rd_log=$PGG_WORK/readme_blocks.log
/usr/bin/python3 "$PGG_REPO/test/readme_blocks.py" "$PGG_REPO/README.md" "$(pgg_sock readme)" \
	"$PGG_WORK/readme_output.log" --dbname readme --catalogue >"$rd_log" 2>&1
rd_rc=$?
grep '^not ok\|^   \|^     ' "$rd_log" | sed 's/^/  # /'
tail -2 "$rd_log" | sed 's/^/  # /'
pgg_is "every SQL block of README.md runs as it says, and it names everything installed" "$rd_rc" 0
