-- pgTAP: state that turns protection off is scoped to what undoes it, and
-- the fail-closed check answers the way its caller asks.
--
-- 1. pii_guard's maintenance (its own DDL runs with the fail-closed checks
--    off) is tied to the (sub)transaction that entered it: a savepoint
--    rolled back, or a PL/pgSQL exception block that catches an error
--    raised while it was on, leaves it -- so a governed role's direct read
--    of a base table is refused again at once.  Before 0.3 it survived
--    ROLLBACK TO SAVEPOINT and the rest of the transaction ran unchecked.
-- 2. The ExecutorCheckPerms hook honours ereport_on_violation: asked not to
--    raise (a foreign key's initial check, RI_Initial_Check), it answers
--    false and PostgreSQL falls back to checking row by row, as the
--    referenced table's owner -- it used to raise a fail-closed refusal.
BEGIN;
SELECT plan(12);

-- 1. ereport_on_violation (first: it must not run in maintenance).  A REFERENCES grant on a protected base table
-- and SELECT on it (the grant event trigger would revoke them at once: they
-- are put in place with the trigger off, as mistaken grants that slipped
-- through; PostgreSQL's own check of the initial validation needs both
-- before it asks the hook).
ALTER EVENT TRIGGER pii_guard_grant DISABLE;
GRANT REFERENCES (id), SELECT (id) ON public_pii.customers TO intern_fay;
ALTER EVENT TRIGGER pii_guard_grant ENABLE;
CREATE TABLE public.tap_orders (id int PRIMARY KEY, customer_id bigint);
INSERT INTO public.tap_orders VALUES (1, 1), (2, 3);
ALTER TABLE public.tap_orders OWNER TO intern_fay;
SET LOCAL ROLE intern_fay;
SELECT lives_ok($$ALTER TABLE public.tap_orders
                    ADD FOREIGN KEY (customer_id) REFERENCES public_pii.customers (id)$$,
                'a foreign key''s initial check asks the hook not to raise: it falls back, and the key is added');
SELECT throws_ok($$INSERT INTO public.tap_orders VALUES (3, 99)$$, '23503', NULL,
                 '... and the key holds');
SELECT throws_ok($$SELECT * FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 '... while reading the base table is still refused');
RESET ROLE;


-- 2. Maintenance.
SELECT is(pii_guard._in_maintenance(), false, 'not in maintenance at the start');
SAVEPOINT s1;
SELECT pii_guard._maintenance(true);
SELECT is(pii_guard._in_maintenance(), true, 'in maintenance inside the savepoint');
ROLLBACK TO SAVEPOINT s1;
SELECT is(pii_guard._in_maintenance(), false, 'ROLLBACK TO SAVEPOINT leaves maintenance');
SET LOCAL ROLE intern_fay;
SELECT throws_ok($$SELECT phone FROM public_pii.customers$$, '42501', 'permission denied for table customers',
                 '... and the fail-closed check refuses the intern the base table again');
RESET ROLE;

DO $$
BEGIN
    PERFORM pii_guard._maintenance(true);
    RAISE EXCEPTION 'fails half way';
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
SELECT is(pii_guard._in_maintenance(), false,
          'an exception block that catches an error raised in maintenance leaves it');

-- Nested: what a committed subtransaction entered belongs to its parent
-- (a function that enters and leaves across a released savepoint).
SAVEPOINT s2;
SELECT pii_guard._maintenance(true);
RELEASE SAVEPOINT s2;
SELECT is(pii_guard._in_maintenance(), true, 'a released savepoint hands maintenance to its parent');
SAVEPOINT s3;
SELECT pii_guard._maintenance(true);
ROLLBACK TO SAVEPOINT s3;
SELECT is(pii_guard._in_maintenance(), true, '... an inner rollback leaves only its own entry');
SELECT pii_guard._maintenance(false);
SELECT is(pii_guard._in_maintenance(), false, '... and leaving the outer one ends it');

SET LOCAL ROLE intern_fay;
SELECT throws_ok($$SELECT pii_guard._maintenance(true)$$, '42501', NULL,
                 'nobody is granted _maintenance()');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
