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

-- "Three years after the customer's last order": the latest date of the
-- rows of an activity table that refer to it, when later than its own.
SET client_min_messages = warning;
CREATE TABLE ret.members (id integer PRIMARY KEY, joined date NOT NULL, name text NOT NULL);
CREATE TABLE ret.purchases (id integer PRIMARY KEY, member_id integer REFERENCES ret.members ON DELETE CASCADE,
                            bought date NOT NULL);
CREATE TABLE ret.unrelated (id integer PRIMARY KEY, bought date);
INSERT INTO ret.members VALUES (1, '2015-01-01', 'a'), (2, '2015-01-01', 'b'), (3, '2015-01-01', 'c'),
                               (4, current_date - 10, 'd');
INSERT INTO ret.purchases VALUES (10, 1, '2016-01-01'), (11, 2, '2016-01-01'), (12, 2, current_date - 30),
                                 (13, 4, current_date - 5);
SELECT pii_guard.protect_column('ret.members', 'name', 'sensitive', 'pii_guard.mask_name(text)');
RESET client_min_messages;
SELECT pii_guard.set_retention('ret.members', 'joined', '3 years', 'delete', 100, 'ret.unrelated', 'bought');
SELECT pii_guard.set_retention('ret.members', 'joined', '3 years', 'delete', 100, 'ret.purchases', 'member_id');
SELECT pii_guard.set_retention('ret.members', 'joined', '3 years', 'delete', 100, 'ret.purchases', NULL);
SELECT pii_guard.set_retention('ret.members', 'joined', '3 years', 'delete', 100, 'ret.purchases', 'bought');
SELECT activity, activity_column, activity_key FROM pii_guard.retention_rules WHERE base = 'ret_pii.members'::regclass;
CALL pii_guard.apply_retention();
-- 1: joined and last bought long ago (gone); 2: bought a month ago (kept);
-- 3: never bought, joined long ago (gone); 4: new (kept)
SELECT id FROM ret_pii.members ORDER BY id;
SELECT id FROM ret.purchases ORDER BY id;
SELECT regexp_replace(detail, ' before .*', ' before …') AS detail
  FROM pii_guard.audit_log WHERE kind = 'admin' AND operation IN ('set_retention', 'apply_retention')
 ORDER BY event_id DESC LIMIT 2;

SET client_min_messages = warning;
DROP SCHEMA ret CASCADE;
DROP SCHEMA ret_pii CASCADE;
DROP ROLE ret_clerk;
