-- The data inventory, the policy lint (check_policy) and protection by
-- default (pii_guard.protect_new_columns): every check, found and then
-- fixed; who may run them.
SET client_min_messages = warning;
CREATE SCHEMA lint_app;
CREATE TABLE lint_app.people (
    id     integer PRIMARY KEY,
    name   text,
    birth  date,
    idno   text,
    phone  text,
    note   text);
INSERT INTO lint_app.people
SELECT g, '张三', date '1990-03-07', '110101199003071233', '1380000' || lpad(g::text, 4, '0'), 'vip'
  FROM generate_series(1, 20) g;
CREATE ROLE lint_staff NOLOGIN;
CREATE ROLE lint_intern NOLOGIN;
CREATE ROLE lint_auditor NOLOGIN IN ROLE pii_guard_auditor;
GRANT USAGE ON SCHEMA lint_app TO lint_staff, lint_intern;
GRANT SELECT ON lint_app.people TO lint_staff, lint_intern;
SELECT pii_guard.protect_column('lint_app.people', 'name', 'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('lint_app.people', 'birth', 'sensitive');
SELECT pii_guard.protect_column('lint_app.people', 'idno', 'core', 'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('lint_app.people', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_clearance('lint_staff', 'sensitive');
SELECT pii_guard.set_clearance('lint_intern', 'public');
SELECT pii_guard.set_export_limits('lint_intern', 10, 100);
-- A table nobody protected, holding phones, that the intern may read.
CREATE TABLE lint_app.contacts (id integer PRIMARY KEY, phone2 text);
INSERT INTO lint_app.contacts SELECT g, '1390000' || lpad(g::text, 4, '0') FROM generate_series(1, 20) g;
GRANT SELECT ON lint_app.contacts TO lint_intern;
SELECT relation, column_name, kind, matched_by FROM pii_guard.discover('lint_app');
-- An encrypted column no masking view decides about.
CREATE TABLE lint_app.vault (id integer PRIMARY KEY, secret_no pii_guard.encrypted_text);
-- A privilege on the companion schema (one on the base table itself
-- pii_guard takes back at once).
GRANT CREATE ON SCHEMA lint_app_pii TO lint_staff;
GRANT SELECT ON lint_app_pii.people TO lint_intern;
-- An approval that unmasks every row, for two days.
CREATE ROLE lint_approver NOLOGIN IN ROLE pii_guard_approver;
GRANT USAGE ON SCHEMA lint_app TO lint_approver;
SET ROLE lint_approver;
SELECT pii_guard.approve('lint_intern', 'lint_app.people', now() + interval '2 days', 'lint test', '{name}') > 0 AS approved;
RESET ROLE;
-- A mask that stops qualifying once it is altered.
CREATE FUNCTION lint_app.mask_note(v text) RETURNS text
    LANGUAGE sql IMMUTABLE LEAKPROOF SET search_path = pg_catalog AS $$ SELECT '***' $$;
SELECT pii_guard.protect_column('lint_app.people', 'note', 'sensitive', 'lint_app.mask_note(text)');
ALTER FUNCTION lint_app.mask_note(text) VOLATILE;
RESET client_min_messages;

SELECT severity, check_name, object, problem FROM pii_guard.check_policy() WHERE object ~ 'lint';

-- The inventory: protected and detected columns, who sees them in clear.
SELECT table_name, column_name, status, kind, level, mask, clear_to
  FROM pii_guard.inventory WHERE table_name ~ 'lint';

-- Fix each finding; the lint is then quiet.
SET client_min_messages = warning;
SELECT pii_guard.protect_column('lint_app.people', 'birth', 'core', 'pii_guard.mask_date(date,text)', '{year}');
SELECT pii_guard.protect_column('lint_app.people', 'name', 'sensitive',
                                'pii_guard.partial(text,integer,text,integer)', '{1,**,0}');
SELECT pii_guard.protect_column('lint_app.contacts', 'phone2', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.set_export_limits('lint_staff', 100, 1000);
SELECT pii_guard.protect_column('lint_app.vault', 'secret_no', 'core');
REVOKE CREATE ON SCHEMA lint_app_pii FROM lint_staff;
SELECT pii_guard.revoke_grant(grant_id) FROM pii_guard.grants WHERE role = 'lint_intern'::regrole;
ALTER FUNCTION lint_app.mask_note(text) IMMUTABLE;
RESET client_min_messages;
SELECT count(*) AS findings FROM pii_guard.check_policy() WHERE object ~ 'lint';

-- The inventory's last reads come from the audit trail: the staff read a
-- name in clear, the intern a phone masked.
SET ROLE lint_staff;
SELECT count(name) FROM lint_app.people WHERE id = 1;
RESET ROLE;
SET ROLE lint_intern;
SELECT count(phone) FROM lint_app.people WHERE id = 1;
RESET ROLE;
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXIT WHEN (SELECT count(*) FROM pii_guard.audit_log
                    WHERE relation = 'lint_app.people' AND kind = 'read') >= 2;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT column_name, last_read IS NOT NULL AS read, last_read_clear IS NOT NULL AS read_clear
  FROM pii_guard.inventory
 WHERE table_name = 'lint_app.people' AND column_name IN ('name', 'phone', 'idno') ORDER BY column_name;

-- Who may run them: admins and auditors, nobody else.
SET ROLE lint_auditor;
SELECT count(*) AS auditor_findings FROM pii_guard.check_policy() WHERE object ~ 'lint';
SELECT count(*) > 0 AS auditor_reads_inventory FROM pii_guard.inventory;
-- A table of the lint's working name, with a trigger, in the caller's
-- temporary schema: dropped, its trigger never run with the lint's rights.
CREATE TEMP TABLE seen (who name);
CREATE TEMP TABLE _lint_access (profile regrole, base regclass, view_name text,
    column_name name, kind text, access text);
CREATE FUNCTION pg_temp.note_it() RETURNS trigger LANGUAGE plpgsql AS
  'BEGIN INSERT INTO pg_temp.seen VALUES (current_user); RETURN NEW; END';
CREATE TRIGGER note_it BEFORE INSERT ON _lint_access FOR EACH ROW EXECUTE FUNCTION pg_temp.note_it();
SELECT count(*) AS auditor_findings FROM pii_guard.check_policy() WHERE object ~ 'lint';
SELECT count(*) AS trigger_runs FROM pg_temp.seen;
DROP TABLE pg_temp.seen;
DROP FUNCTION pg_temp.note_it();
RESET ROLE;
SET ROLE lint_intern;
SELECT * FROM pii_guard.check_policy();
SELECT * FROM pii_guard.inventory;
RESET ROLE;

-- Protection by default: columns added to a protected table.
SET client_min_messages = warning;
SET pii_guard.protect_new_columns = classify;
ALTER TABLE lint_app.people ADD COLUMN mobile_2 text, ADD COLUMN points integer,
    ADD COLUMN mail text DEFAULT 'someone@example.com', ADD COLUMN IF NOT EXISTS phone text;
-- (phone existed: left as it was)
SELECT column_name, level, mask_function FROM pii_guard.column_rules
 WHERE base = 'lint_app_pii.people'::regclass ORDER BY column_name;
SELECT column_name, decision, kind, classified_at IS NOT NULL AS classified
  FROM pii_guard.new_columns WHERE base = 'lint_app_pii.people'::regclass ORDER BY column_name;
SELECT operation, detail FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation = 'protect_new_column' ORDER BY event_id;
-- The intern and the staff see nothing of the unclassified column, the
-- staff sees the classified ones as their level says.
SET ROLE lint_intern;
SELECT id, mobile_2, points, mail FROM lint_app.people WHERE id = 1;
RESET ROLE;
SELECT check_name, object FROM pii_guard.check_policy() WHERE object ~ 'lint';
SELECT table_name, column_name, status FROM pii_guard.inventory WHERE column_name = 'points';
-- An administrator classifies it.
SELECT pii_guard.unprotect_column('lint_app.people', 'points');
SELECT column_name, classified_at IS NOT NULL AS classified
  FROM pii_guard.new_columns WHERE column_name = 'points';
SELECT count(*) AS findings FROM pii_guard.check_policy() WHERE object ~ 'lint';
-- A column of a type with a cast to text its owner wrote: the
-- classification (run as the extension owner) does not call the cast.
CREATE TYPE lint_app.tag AS (v text);
CREATE TABLE lint_app.cast_calls (who name);
CREATE FUNCTION lint_app.tag_text(t lint_app.tag) RETURNS text LANGUAGE plpgsql AS
  'BEGIN INSERT INTO lint_app.cast_calls VALUES (current_user); RETURN t.v; END';
CREATE CAST (lint_app.tag AS text) WITH FUNCTION lint_app.tag_text(lint_app.tag);
ALTER TABLE lint_app.people ADD COLUMN mobile_tag lint_app.tag DEFAULT ROW('13800000000');
SELECT count(*) AS cast_calls FROM lint_app.cast_calls;
SELECT column_name, level FROM pii_guard.column_rules WHERE column_name = 'mobile_tag';
-- hide: hidden even when its name says what it holds; off: public.
SET pii_guard.protect_new_columns = hide;
ALTER TABLE lint_app.people ADD COLUMN phone_3 text;
SET pii_guard.protect_new_columns = off;
ALTER TABLE lint_app.people ADD COLUMN remark text;
SELECT column_name, level, mask_function FROM pii_guard.column_rules
 WHERE base = 'lint_app_pii.people'::regclass AND column_name IN ('phone_3', 'remark');
RESET pii_guard.protect_new_columns;
RESET client_min_messages;
-- Only a superuser sets it.
SET ROLE lint_staff;
SET pii_guard.protect_new_columns = off;
RESET ROLE;

SET client_min_messages = warning;
DROP SCHEMA lint_app CASCADE;
DROP SCHEMA lint_app_pii CASCADE;
DELETE FROM pii_guard.new_columns;
SELECT pii_guard.drop_profile(r) FROM unnest('{lint_staff,lint_intern}'::regrole[]) r;
DROP ROLE lint_staff, lint_intern, lint_auditor, lint_approver;
