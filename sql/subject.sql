-- A customer's request: what is held about them and who saw it
-- (subject_report), and the right to deletion (erase_subject).
SET client_min_messages = warning;
CREATE SCHEMA subj;
CREATE TABLE subj.members (
    id     integer PRIMARY KEY,
    name   text NOT NULL,
    phone  pii_guard.encrypted_text,
    idno   text,
    notes  text,
    tier   text);
CREATE TABLE subj.tickets (id integer PRIMARY KEY, member_id integer REFERENCES subj.members ON DELETE CASCADE,
                           summary text);
INSERT INTO subj.members VALUES
    (1, '张三', '13812345678', '110101199003071233', 'prefers calls', 'gold'),
    (2, '李四', '13987654321', '440306200002290041', NULL, 'silver');
INSERT INTO subj.tickets VALUES (10, 1, 'billing'), (11, 1, 'delivery'), (12, 2, 'other');
CREATE ROLE subj_clerk NOLOGIN;
CREATE ROLE subj_dpo NOLOGIN IN ROLE pii_guard_auditor;
CREATE ROLE subj_admin NOLOGIN IN ROLE pii_guard_admin;
GRANT USAGE ON SCHEMA subj TO subj_clerk, subj_dpo, subj_admin;
GRANT SELECT, UPDATE ON subj.members TO subj_clerk;
GRANT SELECT, DELETE ON subj.members TO subj_admin;
SELECT pii_guard.protect_column('subj.members', 'name', 'internal', 'pii_guard.partial(text,integer,text,integer)', '{1,**,0}');
SELECT pii_guard.protect_column('subj.members', 'phone', 'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('subj.members', 'idno', 'core', 'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('subj.members', 'notes', 'sensitive');
SELECT pii_guard.protect_column('subj.tickets', 'summary', 'sensitive');
SELECT pii_guard.set_clearance('subj_clerk', 'sensitive');
RESET client_min_messages;

-- The clerk reads and changes member 1; reads member 2 masked.
SELECT max(event_id) AS start FROM pii_guard.audit_log \gset
SET ROLE subj_clerk;
SELECT id, name, phone, idno FROM subj.members WHERE id = 1;
UPDATE subj.members SET tier = 'platinum' WHERE id = 1;
SELECT id, idno FROM subj.members WHERE id = 2;
RESET ROLE;
-- (read events arrive asynchronously)
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXIT WHEN (SELECT count(*) FROM pii_guard.audit_log
                    WHERE relation = 'subj.members' AND kind = 'read') >= 2;
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;

-- The report, as the data protection officer (an auditor: no clearance,
-- so the values are masked or hidden as for anyone without it).
SET ROLE subj_dpo;
SELECT section, item, value, by_role, detail FROM pii_guard.subject_report('subj.members', '1');
RESET ROLE;
-- As a superuser: every value in clear.
SELECT section, item, value FROM pii_guard.subject_report('subj.members', '1') WHERE section = 'held';
-- With an approval of that row, the officer sees it in clear.
CREATE ROLE subj_approver NOLOGIN IN ROLE pii_guard_approver;
GRANT USAGE ON SCHEMA subj TO subj_approver;
SET ROLE subj_approver;
SELECT pii_guard.approve('subj_dpo', 'subj.members', now() + interval '1 hour', 'request 2026-0042',
                         '{phone,idno,notes}', '{1}') AS grant_id \gset
RESET ROLE;
SET ROLE subj_dpo;
SELECT section, item, value,
       CASE WHEN section = 'approval' THEN regexp_replace(detail, '^until [^,]*,', 'until …,') ELSE detail END AS detail
  FROM pii_guard.subject_report('subj.members', '1') WHERE section IN ('held', 'approval');
RESET ROLE;
-- Each report is an admin event naming what it showed in clear; neither
-- the clerk nor an administrator may ask; a row that does not exist, a
-- table that is not protected.
SELECT detail FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation = 'subject_report' AND event_id > :start ORDER BY event_id;
SET ROLE subj_clerk;
SELECT * FROM pii_guard.subject_report('subj.members', '1');
RESET ROLE;
SET ROLE subj_admin;
SELECT * FROM pii_guard.subject_report('subj.members', '1');
RESET ROLE;
-- The functions behind the wrappers check whom they are told they act
-- for: the officer cannot report as another role, the admin cannot record
-- an erasure as one.
-- (as their sessions: SET ROLE from a superuser would leave the session
-- a superuser's)
SET SESSION AUTHORIZATION subj_dpo;
SELECT count(*) FROM pii_guard._subject_report('subj_clerk', 'subj.members', '1');
SELECT count(*) > 0 AS own_report FROM pii_guard._subject_report('subj_dpo', 'subj.members', '1');
RESET SESSION AUTHORIZATION;
SET SESSION AUTHORIZATION subj_admin;
SELECT pii_guard._audit_erasure('subj_clerk', 'subj.members', '1', 'forged', 1);
RESET SESSION AUTHORIZATION;
SELECT * FROM pii_guard.subject_report('subj.members', '99');
SELECT * FROM pii_guard.subject_report('pg_class', '1');

-- Consents: purposes an administrator defines; consents recorded and
-- withdrawn through functions, each an admin event; in the report.
SELECT pii_guard.define_purpose('marketing', 'offers by SMS and e-mail');
SELECT pii_guard.define_purpose('Bad Name', 'x');
SELECT pii_guard.record_consent('subj.members', '1', 'marketing', 'web form v3', '{phone}',
                                timestamptz '2026-01-05 10:00+08') AS consent_id;
SELECT pii_guard.record_consent('subj.members', '1', 'service', 'web form v3');
SELECT pii_guard.record_consent('subj.members', '99', 'marketing', 'web form v3');
SELECT pii_guard.record_consent('subj.members', '1', 'marketing', 'web form v3', '{tier}');
SELECT pii_guard.record_consent('subj.members', '1', 'marketing', '');
SELECT pii_guard.withdraw_consent('subj.members', '1', 'marketing', 'phone call') AS withdrawn;
SELECT pii_guard.withdraw_consent('subj.members', '1', 'marketing', 'phone call');
SET ROLE subj_clerk;
SELECT pii_guard.record_consent('subj.members', '2', 'marketing', 'forged');
SELECT count(*) FROM pii_guard.consents;
RESET ROLE;
SET ROLE subj_dpo;
SELECT section, item, value, by_role, regexp_replace(detail, 'withdrawn [^(]*', 'withdrawn … ') AS detail
  FROM pii_guard.subject_report('subj.members', '1') WHERE section = 'consent';
RESET ROLE;
SELECT operation, regexp_replace(detail, ', given .*', ', given …') AS detail FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation IN ('define_purpose', 'record_consent', 'withdraw_consent')
   AND event_id > :start ORDER BY event_id;

-- Erasure: by an admin, with a reason, through the masking view with the
-- admin's own privileges; the tickets cascade; audited.  A trigger the
-- table's owner put on it runs with the admin's rights, not a superuser's.
CREATE TABLE subj.trigger_runs (who name, super boolean);
GRANT INSERT ON subj.trigger_runs TO PUBLIC;
CREATE FUNCTION subj.note_delete() RETURNS trigger LANGUAGE plpgsql AS
  'BEGIN INSERT INTO subj.trigger_runs SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user; RETURN OLD; END';
CREATE TRIGGER note_delete BEFORE DELETE ON subj_pii.members FOR EACH ROW EXECUTE FUNCTION subj.note_delete();
SET ROLE subj_dpo;
SELECT pii_guard.erase_subject('subj.members', '1', 'request 2026-0042');
RESET ROLE;
SET ROLE subj_admin;
SELECT pii_guard.erase_subject('subj.members', '1', '');
SELECT pii_guard.erase_subject('subj.members', '1', 'request 2026-0042') AS erased;
SELECT pii_guard.erase_subject('subj.members', '1', 'request 2026-0042');
RESET ROLE;
SELECT (SELECT count(*) FROM subj_pii.members WHERE id = 1) AS client_rows,
       (SELECT count(*) FROM subj_pii.tickets WHERE member_id = 1) AS ticket_rows,
       (SELECT count(*) FROM subj_pii.tickets) AS tickets_left;
SELECT * FROM subj.trigger_runs;
SELECT operation, detail FROM pii_guard.audit_log
 WHERE kind = 'admin' AND operation = 'erase_subject' AND event_id > :start;
-- The admin cannot record an erasure that did not happen.
SET ROLE subj_admin;
SELECT pii_guard._audit_erasure('subj_admin', 'subj.members', '2', 'forged', 1);
RESET ROLE;

-- A read under a declared purpose says so in its event.
SELECT pii_guard.set_purposes('subj_clerk', '{marketing}');
SELECT max(event_id) AS start FROM pii_guard.audit_log \gset
SELECT set_config('x.start', :'start', false) IS NOT NULL AS noted;
SET SESSION AUTHORIZATION subj_clerk;
SET pii_guard.purpose = 'marketing';
SELECT count(phone) FROM subj.members;
RESET pii_guard.purpose;
RESET SESSION AUTHORIZATION;
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pii_guard.audit_log WHERE kind = 'read' AND event_id > current_setting('x.start')::bigint);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$$;
SELECT relation, detail FROM pii_guard.audit_log WHERE kind = 'read' AND event_id > :start;

SET client_min_messages = warning;
DROP SCHEMA subj CASCADE;
DROP SCHEMA subj_pii CASCADE;
SELECT pii_guard.drop_profile('subj_clerk');
DELETE FROM pii_guard.purposes;
DROP ROLE subj_clerk, subj_dpo, subj_admin, subj_approver;
