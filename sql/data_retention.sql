-- Retention of protected rows: set_retention() and CALL apply_retention()
-- (deleted or anonymised in committed, audited batches; resumable).
SET client_min_messages = warning;
CREATE SCHEMA ret;
CREATE TABLE ret.visits (id integer PRIMARY KEY, visited date NOT NULL, name text NOT NULL, phone text);
INSERT INTO ret.visits
SELECT g, CASE WHEN g <= 20 THEN date '2020-01-01' + g ELSE current_date - g END,
       '张三', '1380000' || lpad(g::text, 4, '0')
  FROM generate_series(1, 25) g;
CREATE TABLE ret.leads (id integer PRIMARY KEY, created timestamptz NOT NULL, name text NOT NULL,
                        phone text, score integer NOT NULL DEFAULT 0);
INSERT INTO ret.leads
SELECT g, CASE WHEN g <= 10 THEN timestamptz '2019-06-01 00:00+00' ELSE now() END,
       '李四', '1390000' || lpad(g::text, 4, '0'), g
  FROM generate_series(1, 12) g;
SELECT pii_guard.protect_column('ret.visits', 'name', 'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('ret.visits', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('ret.leads', 'name', 'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('ret.leads', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
CREATE ROLE ret_clerk NOLOGIN;
GRANT USAGE ON SCHEMA ret TO ret_clerk;
RESET client_min_messages;
SELECT max(event_id) AS start FROM pii_guard.audit_log \gset

-- Rules: a date column, a positive keep, an action the columns allow.
SELECT pii_guard.set_retention('ret.visits', 'name', '3 years');
SELECT pii_guard.set_retention('ret.visits', 'visited', '-1 day');
SELECT pii_guard.set_retention('ret.visits', 'visited', '3 years', 'shred');
SELECT pii_guard.set_retention('pg_class', 'visited', '3 years');
SELECT pii_guard.set_retention('ret.visits', 'visited', '3 years', 'delete', 7);
SELECT pii_guard.set_retention('ret.leads', 'created', '5 years', 'anonymize', 4);
SELECT base, date_column, keep, action, batch_rows FROM pii_guard.retention_rules ORDER BY base::text;
-- Only administrators set and apply them.
SET ROLE ret_clerk;
SELECT pii_guard.set_retention('ret.visits', 'visited', '1 day');
CALL pii_guard.apply_retention();
RESET ROLE;

-- A run stopped after about 5 rows, then the rest: nothing lost, nothing twice.
CALL pii_guard.apply_retention(5);
SELECT (SELECT count(*) FROM ret_pii.leads WHERE phone IS NULL) AS leads_anonymised,
       (SELECT count(*) FROM ret_pii.visits) AS visits_left;
CALL pii_guard.apply_retention();
SELECT id, name, phone, score FROM ret_pii.leads ORDER BY id;
SELECT count(*) AS visits_left, min(visited) >= current_date - 30 AS only_recent FROM ret_pii.visits;
-- Each committed batch is an admin event with its count.
SELECT operation, regexp_replace(detail, ' before .*', ' before …') AS detail
  FROM pii_guard.audit_log WHERE kind = 'admin' AND event_id > :start ORDER BY event_id;
-- Again: nothing left to do.
CALL pii_guard.apply_retention();
SELECT last_applied IS NOT NULL AS applied FROM pii_guard.retention_rules ORDER BY base::text;
-- A NOT NULL protected column of another type cannot be anonymised; no
-- keep, no rule.
SELECT pii_guard.protect_column('ret.leads', 'score', 'sensitive');
SELECT pii_guard.set_retention('ret.leads', 'created', '5 years', 'anonymize');
SELECT pii_guard.set_retention('ret.leads', 'created', NULL);
SELECT count(*) AS rules FROM pii_guard.retention_rules;

SET client_min_messages = warning;
DROP SCHEMA ret CASCADE;
DROP SCHEMA ret_pii CASCADE;
DROP ROLE ret_clerk;
