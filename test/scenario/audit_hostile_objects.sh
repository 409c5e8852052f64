# test/scenario/audit_hostile_objects.sh -- objects planted in public never run inside the audit worker.
# The owner of a database (not a superuser) plants operators and an
# aggregate in public that would beat pg_catalog's -- ||(text, bigint),
# =(text, text), =(bigint, bigint), max(bigint) -- each of which notes who
# ran it and tries ALTER ROLE ... SUPERUSER, and puts public first in the
# database's search_path.  Then the worker restarts, records a grant's
# expiry and seals new rows.  None of the planted objects may run, and the
# owner must not have become a superuser.
name=hostile
pgg_new_cluster $name
pgg_start $name
# Every client session here puts pg_catalog first: what is tested is the
# worker, not a superuser's own search_path.
export PGOPTIONS="-c search_path=pg_catalog,public"
hpsql() { pgg_psql $name -d hostile "$@"; }
pgg_psql $name -d postgres -c "CREATE ROLE mallory LOGIN" -c "CREATE DATABASE hostile OWNER mallory"
hpsql <<'SQL'
CREATE EXTENSION pii_guard;
CREATE ROLE h_clerk;
CREATE ROLE h_approver IN ROLE pii_guard_approver;
CREATE TABLE public.accounts (id int PRIMARY KEY, phone pii_guard.encrypted_text);
INSERT INTO public.accounts VALUES (1, '13812345678'), (2, '13900001111');
SELECT pii_guard.protect_table('public.accounts');
SQL
dboid=$(hpsql -tAc "SELECT oid FROM pg_database WHERE datname = 'hostile'")
worker_pid() { pgg_worker_pid $name "$dboid"; }

# The database owner plants its objects (public belongs to it).
psql -X -q -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 -U mallory -d hostile <<'SQL'
CREATE TABLE public.hostile_calls (what text, by_role text, backend_type text);
GRANT INSERT ON public.hostile_calls TO PUBLIC;
CREATE FUNCTION public.hostile_note(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.hostile_calls
    SELECT what, current_user, a.backend_type FROM pg_catalog.pg_stat_activity a
     WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid();
    BEGIN
        EXECUTE 'ALTER ROLE mallory SUPERUSER';
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
END
$$;
CREATE FUNCTION public.hostile_concat(text, bigint) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.hostile_note('||(text, bigint)');
    RETURN pg_catalog.textcat($1, $2::pg_catalog.text);
END
$$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.hostile_concat);
CREATE FUNCTION public.hostile_eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.hostile_note('=(text, text)');
    RETURN pg_catalog.texteq($1, $2);
END
$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.hostile_eq_text);
CREATE FUNCTION public.hostile_eq_int8(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.hostile_note('=(bigint, bigint)');
    RETURN pg_catalog.int8eq($1, $2);
END
$$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.hostile_eq_int8);
CREATE FUNCTION public.hostile_larger(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.hostile_note('max(bigint)');
    RETURN pg_catalog.int8larger($1, $2);
END
$$;
CREATE AGGREGATE public.max(bigint) (SFUNC = public.hostile_larger, STYPE = bigint);
ALTER DATABASE hostile SET search_path = public, pg_catalog;
SQL

# Restart the worker, so that it connects with the database's new settings.
worker=$(worker_pid)
pgg_ok "the audit worker of the database runs" test -n "$worker"
kill -TERM "$worker"
pgg_gone "$worker"
pgg_ok "it stopped" bash -c "! kill -0 $worker 2>/dev/null"

# Two grants that end within seconds (so that the second expiry is checked
# against the first one's event), and writes for the chain to seal; any use
# of pii_guard starts the worker again.
approve() {
	psql -X -q -tA -v ON_ERROR_STOP=1 -h "$(pgg_sock $name)" -p 5432 -U postgres -d hostile \
		-c "SET ROLE h_approver" \
		-c "SELECT pii_guard.approve('h_clerk', 'public.accounts', clock_timestamp() + interval '$1', 'hostile test')"
}
grant1=$(approve '1 second')
grant2=$(approve '3 seconds')
hpsql -c "INSERT INTO public.accounts VALUES (3, '13700002222')" -c "UPDATE public.accounts SET phone = '13700003333' WHERE id = 3"
expiries_recorded() {	# of the two grants
	hpsql -tAc "SELECT count(*) FROM pii_guard.audit_log WHERE kind = 'admin'
		AND operation = 'grant_expired' AND (detail LIKE 'grant $grant1:%' OR detail LIKE 'grant $grant2:%')"
}
both_expiries_recorded() { [ "$(expiries_recorded)" = 2 ]; }
pgg_wait 30 both_expiries_recorded
pgg_is "the worker recorded both grants' expiry" "$(expiries_recorded)" 2
pgg_wait 30 pgg_all_sealed $name hostile
pgg_is "the worker sealed every row" "$(pgg_unsealed $name hostile)" 0
pgg_is "the chain verifies" "$(hpsql -tAc "SELECT count(*) FROM pii_guard.verify_audit()")" 0
pgg_is "no planted operator or aggregate ran" \
	"$(hpsql -tAc "SELECT coalesce(string_agg(DISTINCT what || ' by ' || by_role || ' in ' || backend_type, '; '), 'none') FROM public.hostile_calls")" none
pgg_is "the database owner is not a superuser" \
	"$(hpsql -tAc "SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'")" f
unset PGOPTIONS
pgg_stop $name
