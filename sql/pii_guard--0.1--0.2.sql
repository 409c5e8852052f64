/* pii_guard--0.1--0.2.sql: the changes of version 0.2 over 0.1 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION pii_guard UPDATE TO '0.2'" to load this file. \quit

-- 0.1 is released and its script is never edited: everything 0.2 changes
-- is here, and CREATE EXTENSION of 0.2 runs the 0.1 script and then this
-- one.  Each change says why.

--------------------------------------------------------------------------
-- Export-row limits: what export approvals have used, kept with the policy
--------------------------------------------------------------------------

-- Rows each export approval has carried, copied from shared memory by the
-- audit worker (about every 0.2 s), so that a dump, a restore into another
-- database and a replica carry it: a used-up approval stays used up.
-- Keyed by grant id and the grant's created_at, since grant ids start
-- again after DROP and CREATE EXTENSION.  Written by pii_guard only.
CREATE TABLE @extschema@.export_grant_use (
    grant_id    bigint PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    used        bigint NOT NULL CHECK (used >= 0)
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.export_grant_use', '');
REVOKE ALL ON @extschema@.export_grant_use FROM PUBLIC;
GRANT SELECT ON @extschema@.export_grant_use TO pii_guard_admin, pii_guard_approver, pii_guard_auditor;

-- 0.1 said that approved rows count toward the day and are used before the
-- profile's own allowance; they are now only the rows beyond it.
COMMENT ON FUNCTION @extschema@.approve_export(regrole, bigint, timestamptz, text) IS
    'time-boxed export approval: up to rows protected rows beyond the role''s export limits, until valid_until; they do not count toward the day';
