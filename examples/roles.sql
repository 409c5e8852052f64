-- examples/roles.sql -- the people of the demo's customer database.
--
-- Run as a superuser (roles are cluster-wide), in the demo database, after
-- CREATE EXTENSION pii_guard (which creates pii_guard_admin,
-- pii_guard_approver and pii_guard_auditor).  Safe to run twice: roles that
-- exist already are kept.
--
-- Two kinds of roles:
--   * profiles: NOLOGIN group roles, one per job.  Privileges (GRANT) and the
--     pii_guard policy (clearance, column exceptions, export limits) are
--     given to these, never to a person;
--   * people: LOGIN roles that are members of one profile.  Moving someone
--     to another job is one GRANT and one REVOKE; a departed account is
--     one DROP ROLE (or NOLOGIN), and nothing else has to change.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

DO $roles$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES
            -- profiles
            ('marketing',   false, NULL::text[]),
            ('sales',       false, NULL),
            ('support',     false, NULL),
            ('manager',     false, NULL),
            ('intern',      false, NULL),
            -- the DBA who owns the customer tables and runs pii_guard (not
            -- a superuser: pii_guard_admin is enough to protect, classify
            -- and rotate keys)
            ('crm_dba',     true,  '{pii_guard_admin}'),
            -- people
            ('mkt_amy',     true,  '{marketing}'),
            ('sales_bob',   true,  '{sales}'),
            ('sales_carl',  true,  '{sales}'),
            ('support_dan', true,  '{support}'),
            ('mgr_eve',     true,  '{manager,pii_guard_approver}'),   -- approves requests
            ('intern_fay',  true,  '{intern}'),
            -- a second intern: make demo spends his export budget, so that
            -- intern_fay's stays whole for the README's tour
            ('intern_gus',  true,  '{intern}'),
            ('audit_ann',   true,  '{pii_guard_auditor}')              -- reads the audit trail only
        ) AS t(name, login, member_of)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
            EXECUTE format('CREATE ROLE %I %s', r.name, CASE WHEN r.login THEN 'LOGIN' ELSE 'NOLOGIN' END);
        END IF;
        IF r.member_of IS NOT NULL THEN
            EXECUTE format('GRANT %s TO %I',
                           (SELECT string_agg(quote_ident(m), ', ') FROM unnest(r.member_of) m), r.name);
        END IF;
    END LOOP;
END
$roles$;

-- The DBA creates the tables in schema public (PostgreSQL 15 no longer lets
-- everyone create there).
GRANT CREATE ON SCHEMA public TO crm_dba;
RESET client_min_messages;
