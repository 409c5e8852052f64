# test/scenario/log_privacy.sh -- a statement that carried plaintext of a
# protected value never copies it into the server log, whatever raises the
# error and whenever it is logged.
#
# The server runs with log_min_error_statement = error (the default: every
# error logs its STATEMENT) and log_min_duration_statement = 0 (every
# statement's text is logged with its duration).  Each case puts its own
# phone number in a statement and makes it fail (or just run):
#  - a multi-statement query string whose second statement fails;
#  - COPY FROM STDIN with a malformed line (the line is the error's CONTEXT);
#  - a UNIQUE violation in an INSERT that also calls an IMMUTABLE function
#    (folded, with an executor of its own, while planning);
#  - an INSERT run by EXECUTE in a DO block (the SQL is the CONTEXT);
#  - a prepared statement (extended protocol) whose literal was encrypted at
#    Parse and whose second Execute fails;
#  - a statement that succeeds (its duration line);
# then the server log must hold none of the phone numbers -- while an error
# of a statement without plaintext is still logged with its STATEMENT.
#
# Sourced by test/run.sh in a subshell after test/lib.sh, pgg_init and
# pgg_install.

name=logp
pgg_new_cluster $name "log_min_duration_statement = 0" "log_min_error_statement = error"
pgg_start $name
lp_psql() { psql -X -q -h "$(pgg_sock $name)" -p 5432 -U postgres -d postgres "$@"; }
lp_psql -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION pii_guard;
CREATE TABLE t (id int PRIMARY KEY, phone pii_guard.encrypted_text UNIQUE, n int);
CREATE FUNCTION one() RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN 1; END $$;
INSERT INTO t VALUES (100, pii_guard.encrypt('x'), 0);
SQL
lp_phones=(13822220002 13833330003 13844440004 13811110001 13877770007 13855550005)

# 1. Two statements in one query string; the second fails.
lp_psql -c "INSERT INTO t VALUES (2, '13822220002', 0); SELECT 1/0;" 2>/dev/null
# 2. COPY with an extra field on its line.
printf '3\t13833330003\t3\textra\n' | lp_psql -c "COPY t FROM STDIN" 2>/dev/null
# 3. UNIQUE violation; one() is folded at plan time.
lp_psql -c "INSERT INTO t VALUES (4, '13844440004', one())" 2>/dev/null
lp_psql -c "INSERT INTO t VALUES (5, '13844440004', one())" 2>/dev/null
# 4. EXECUTE in a DO block (the second insert fails, so neither is kept).
lp_psql -c "DO \$\$ BEGIN EXECUTE 'INSERT INTO t VALUES (6, ''13811110001'', 1)'; EXECUTE 'INSERT INTO t VALUES (7, ''13811110001'', 1)'; END \$\$" 2>/dev/null
# 5. A prepared statement, executed twice: the second Execute fails.
echo "INSERT INTO t VALUES (8, '13877770007', 1);" >"$PGG_WORK/logp.sql"
pgbench -n -M prepared -t 2 -h "$(pgg_sock $name)" -p 5432 -U postgres -f "$PGG_WORK/logp.sql" postgres \
	>/dev/null 2>&1
# 6. A statement that succeeds.
lp_psql -c "INSERT INTO t VALUES (9, '13855550005', 1)"
# And a plain error, with nothing of pii_guard in it.
lp_psql -c "SELECT 1/0 AS plain_error" 2>/dev/null

pgg_wait 5 grep -q 'plain_error' "$(pgg_log $name)"	# (the last statement is logged)
pgg_ok "the failing prepared statement did fail (not vacuous)" \
	grep -q 'duplicate key value violates unique constraint "t_pkey"' "$(pgg_log $name)"
pgg_ok "the malformed COPY line did fail (not vacuous)" \
	grep -q 'extra data after last expected column' "$(pgg_log $name)"
for p in "${lp_phones[@]}"; do
	pgg_is "no $p in the server log" "$(grep -c "$p" "$(pgg_log $name)")" 0
done
pgg_ok "an error without plaintext still logs its STATEMENT" \
	grep -q 'STATEMENT:  SELECT 1/0 AS plain_error' "$(pgg_log $name)"
pgg_ok "statement durations are still logged, text withheld where it held plaintext" \
	grep -q 'duration: .* statement: (withheld from the server log by pii_guard' "$(pgg_log $name)"
pgg_ok "... and so are the prepared statement's parse and bind durations" \
	grep -q 'duration: .* parse ...: (withheld from the server log by pii_guard' "$(pgg_log $name)"
pgg_is "the statements that succeeded stored their values" \
	"$(lp_psql -tAc "SELECT string_agg(pii_guard.decrypt(phone), ',' ORDER BY id) FROM t WHERE id < 100")" \
	"13844440004,13877770007,13855550005"
pgg_stop $name
