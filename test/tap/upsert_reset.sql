-- test/tap/upsert_reset.sql -- included (\ir) by test/attack_upsert.sql
-- before its committed set-up and after its tests: drops what the set-up
-- made, if it is there.  (Not a suite: test/run.sh runs test/*.sql only.)
SET client_min_messages = warning;
DO $reset$
BEGIN
    IF to_regclass('public.tap_au_dc') IS NOT NULL THEN
        PERFORM pii_guard.unprotect_table('public.tap_au_dc');
    END IF;
    DROP TABLE IF EXISTS public.tap_au_dc;
    DROP TABLE IF EXISTS public.tap_au_ref;
    DROP PROCEDURE IF EXISTS public.tap_au_commit(text);
END
$reset$;
