--
-- Masking views: a protected table's name reads through a view that shows
-- each column clear, masked or NULL for the current role; writes go through
-- it; the base table fails closed; unprotecting puts everything back.
--
\set VERBOSITY terse
CREATE SCHEMA crm;
GRANT USAGE ON SCHEMA crm TO PUBLIC;
SET search_path = crm, public;
-- A mask function of one's own: a superuser's, LEAKPROOF, search_path set.
CREATE FUNCTION mask3(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
SET search_path = pg_catalog
AS $$ SELECT left($1, 3) || repeat('*', greatest(length($1) - 3, 0)) $$;

CREATE ROLE regress_mgr;
CREATE ROLE regress_intern;
CREATE ROLE regress_nobody;
CREATE ROLE regress_admin IN ROLE pii_guard_admin;

CREATE TABLE regions (code text PRIMARY KEY);
INSERT INTO regions VALUES ('north'), ('south');
CREATE TABLE customers (
    id       serial PRIMARY KEY,
    name     text NOT NULL,
    phone    pii_guard.encrypted_text,
    email    text,
    tier     text NOT NULL DEFAULT 'basic',
    region   text REFERENCES regions,
    score    int GENERATED ALWAYS AS (length(name)) STORED,
    touched  int NOT NULL DEFAULT 0
);
CREATE INDEX customers_email ON customers (email);
CREATE TABLE orders (
    id           int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  int NOT NULL REFERENCES customers,
    total        numeric NOT NULL
);
-- A trigger on the base table keeps working behind the view.
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch();

GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO regress_mgr;
GRANT SELECT, INSERT ON customers TO regress_intern;
GRANT UPDATE (name, phone, email) ON customers TO regress_intern;
GRANT SELECT ON customers TO regress_nobody;
GRANT USAGE ON SEQUENCE customers_id_seq TO regress_mgr, regress_intern;
GRANT SELECT, INSERT ON orders TO regress_mgr, regress_intern;

INSERT INTO customers (name, phone, email, region) VALUES
    ('张三丰', '13812345678', 'zhangsan@example.com', 'north'),
    ('John Smith', '13900001111', 'john@example.com', 'south');

-- A role that may insert but holds no privilege on the sequence: pii_guard
-- gives it USAGE while the table is protected, and takes it back after.
GRANT INSERT ON customers TO regress_nobody;
COMMENT ON TABLE customers IS 'our customers';
COMMENT ON COLUMN customers.phone IS 'mobile';
ALTER TABLE customers SET (fillfactor = 90);

-- What the table looks like; unprotect_table must give it all back.
CREATE TEMP VIEW table_state AS
SELECT 'class' AS what, format('%s %s %s %s %s', c.relname, c.relnamespace::regnamespace, c.relacl,
                               c.reloptions, obj_description(c.oid, 'pg_class')) AS detail
  FROM pg_class c WHERE c.oid = 'customers'::regclass
UNION ALL
SELECT 'column', format('%s %s %s %s %s %s', a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                        a.attacl, col_description(a.attrelid, a.attnum))
  FROM pg_attribute a WHERE a.attrelid = 'customers'::regclass AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'sequence', format('%s %s', s.relname, s.relacl)
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
 WHERE d.classid = 'pg_class'::regclass AND d.refobjid = 'customers'::regclass AND d.deptype IN ('a', 'i')
UNION ALL
SELECT 'index', pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = 'customers'::regclass
UNION ALL
SELECT 'trigger', pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE t.tgrelid = 'customers'::regclass AND NOT t.tgisinternal
UNION ALL
SELECT 'constraint', pg_get_constraintdef(k.oid) FROM pg_constraint k WHERE k.conrelid = 'customers'::regclass
   OR k.confrelid = 'customers'::regclass;
CREATE TEMP TABLE snapshot AS SELECT * FROM table_state;

-- Protect: the table moves to crm_pii, the view takes its name.
SELECT pii_guard.protect_table('customers');
SELECT pii_guard.protect_column('customers', 'phone', 'sensitive', 'mask3(text)');
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'mask3(text)');
SELECT pii_guard.protect_column('customers', 'tier', 'internal');
SELECT pii_guard.set_clearance('regress_mgr', 'sensitive');
SELECT pii_guard.set_clearance('regress_intern', 'public');
SELECT relname, relnamespace::regnamespace, relkind FROM pg_class
 WHERE relname IN ('customers', 'customers__pii_write')
   AND relnamespace::regnamespace::text LIKE 'crm%' ORDER BY 2, 1;
SELECT * FROM pii_guard.effective_access('regress_intern') WHERE table_name LIKE 'crm.%';
SELECT * FROM pii_guard.effective_access('regress_mgr') WHERE table_name LIKE 'crm.%';
SELECT * FROM pii_guard.effective_access('regress_nobody') WHERE table_name LIKE 'crm.%';

-- The same SELECT, three roles.
SET ROLE regress_mgr;
SELECT id, name, phone, email, tier, region FROM customers ORDER BY id;
SET ROLE regress_intern;
SELECT id, name, phone, email, tier, region FROM customers ORDER BY id;
SET ROLE regress_nobody;
SELECT id, name, phone, email, tier, region FROM customers ORDER BY id;
RESET ROLE;
-- The owner and superusers see everything.
SELECT id, name, phone, email, tier FROM customers ORDER BY id;

-- Filters see masked values only: no inference through WHERE.
SET ROLE regress_intern;
SELECT count(*) FROM customers WHERE phone = '13812345678';
SELECT count(*) FROM customers WHERE email LIKE 'zhangsan%';
SELECT count(*) FROM customers WHERE tier = 'basic';
RESET ROLE;

-- Writes through the view: defaults and serial apply, RETURNING shows the
-- new id (and the row as the writer may see it).
SET ROLE regress_intern;
INSERT INTO customers (name, phone, email, region)
VALUES ('李四', '13711112222', 'lisi@example.com', 'north')
RETURNING id, name, phone, email, tier, score;
-- An UPDATE that does not name a masked column never overwrites it.
UPDATE customers SET name = '张三' WHERE id = 1 RETURNING id, name, phone, email;
-- Column privileges on the view decide what may change.
UPDATE customers SET tier = 'gold' WHERE id = 1;
DELETE FROM customers WHERE id = 2;
-- Foreign keys to the base table keep working.
INSERT INTO orders (customer_id, total) VALUES (3, 99.5) RETURNING id, customer_id;
INSERT INTO orders (customer_id, total) VALUES (42, 1);
RESET ROLE;
SET ROLE regress_mgr;
SELECT id, name, phone, email, tier, score, touched FROM customers ORDER BY id;
UPDATE customers SET phone = '13800000000', tier = 'gold' WHERE id = 1 RETURNING id, phone, tier, touched;
DELETE FROM customers WHERE id = 2 RETURNING id, name, phone;
DELETE FROM customers WHERE id = 3;
RESET ROLE;
SELECT id, name, pii_guard.decrypt(phone) AS phone, email, tier, touched FROM crm_pii.customers ORDER BY id;

-- An UPDATE writes only the columns its SET names, and a protected one only
-- when its new value is not what the role was shown: a hidden phone set to
-- NULL and an e-mail set to exactly the mask it shows stay as they are (an
-- ORM saving a whole row sends them back), a new name is written, and
-- columns it does not name are never written.
-- column_access() answers for a role named as regrole (or its oid, as
-- before), and for the masking view's name as for its base table.
SELECT pii_guard.column_access('regress_intern', 'customers', 'phone') AS by_view,
       pii_guard.column_access('regress_intern', 'crm_pii.customers', 'phone') AS by_table,
       pii_guard.column_access('regress_intern'::regrole::oid, 'customers', 'phone') AS by_oid,
       pii_guard.column_access('regress_intern', 'customers', 'name') AS unprotected;
SELECT pii_guard.set_column_access('regress_intern', 'customers', 'phone', 'hidden');
SET ROLE regress_intern;
SELECT id, phone, email FROM customers WHERE id = 3;
UPDATE customers SET phone = NULL WHERE id = 3;
UPDATE customers SET email = 'lis*************' WHERE id = 3;
UPDATE customers SET name = '李四' WHERE id = 3;
RESET ROLE;
SELECT pii_guard.reset_column_access('regress_intern', 'customers', 'phone');
SELECT id, name, pii_guard.decrypt(phone) AS phone_kept, email FROM crm_pii.customers WHERE id = 3;
-- Set to another value, they are written.
SELECT pii_guard.set_column_access('regress_intern', 'customers', 'phone', 'hidden');
SET ROLE regress_intern;
UPDATE customers SET phone = '13700000000', email = 'li.si@example.com' WHERE id = 3;
RESET ROLE;
SELECT pii_guard.reset_column_access('regress_intern', 'customers', 'phone');
SELECT id, pii_guard.decrypt(phone) AS phone, email FROM crm_pii.customers WHERE id = 3;
UPDATE crm_pii.customers SET phone = '13711112222', email = 'lisi@example.com' WHERE id = 3;
-- Column-level INSERT privileges: the insert writes the columns it names
-- and the defaults, and needs no privilege on the others.
CREATE ROLE regress_inserter;
GRANT SELECT, INSERT (name, phone) ON customers TO regress_inserter;
SET ROLE regress_inserter;
INSERT INTO customers (name, phone) VALUES ('王五', '13655556666') RETURNING id, tier, touched;
INSERT INTO customers (name, email) VALUES ('赵六', 'zhao@example.com');
RESET ROLE;
SELECT id, name, pii_guard.decrypt(phone) AS phone, email, tier, touched FROM crm_pii.customers
 WHERE name = '王五';
SELECT last_value = (SELECT max(id) FROM crm_pii.customers) AS one_value_drawn_per_insert
  FROM crm_pii.customers_id_seq;
DELETE FROM crm_pii.customers WHERE name = '王五';
-- INSERT ... ON CONFLICT, as ORMs upsert: the conflict target is the
-- view's columns (the base table's indexes answer), EXCLUDED is the row
-- that was to be inserted; a value sent back as shown leaves the stored
-- one.  (Each conflict is a probe for a governed role: test/probes.sql.)
SET ROLE regress_mgr;
INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT DO NOTHING;
INSERT INTO customers (id, name, phone) VALUES (1, '张三', '13812345678')
    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, phone = EXCLUDED.phone
    RETURNING id, name, phone;
INSERT INTO customers (id, name, phone) VALUES (77, '新客', '13677770000')
    ON CONFLICT (id) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, name, phone;
RESET ROLE;
SELECT id, name, pii_guard.decrypt(phone) AS phone FROM crm_pii.customers WHERE id IN (1, 77) ORDER BY id;
DELETE FROM crm_pii.customers WHERE id = 77;
SET ROLE regress_mgr;
-- What only the base table's EXCLUDED could give is refused, clearly.
\set VERBOSITY default
INSERT INTO customers (id, name, phone) VALUES (1, 'x', '1') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.phone;
\set VERBOSITY terse
WITH n AS (INSERT INTO customers (id, name) VALUES (1, 'x') ON CONFLICT DO NOTHING RETURNING id)
SELECT * FROM n;
-- One statement may write one view twice with different columns.
WITH a AS (UPDATE customers SET name = name WHERE id = 1 RETURNING id)
UPDATE customers SET email = email WHERE id = 3;
RESET ROLE;
-- The write view is pii_guard's own path: governed roles may not use it,
-- not even for what they may do through the masking view.
SET ROLE regress_intern;
\set VERBOSITY default
INSERT INTO crm_pii.customers__pii_write (id, name) VALUES (1, 'probe') ON CONFLICT DO NOTHING;
\set VERBOSITY terse
SELECT id FROM crm_pii.customers__pii_write;
UPDATE crm_pii.customers__pii_write SET name = 'x' WHERE id = 1;
RESET ROLE;
DROP OWNED BY regress_inserter;
DROP ROLE regress_inserter;

-- The base table fails closed for governed roles: by name, through
-- search_path, TABLE, COPY, even with a mistaken grant.
SET ROLE regress_intern;
SELECT * FROM crm_pii.customers;
SET search_path = crm_pii, crm, public;
SELECT * FROM customers;
SET search_path = crm, public;
TABLE crm_pii.customers;
COPY crm_pii.customers TO stdout;
COPY (SELECT * FROM crm_pii.customers) TO stdout;
SELECT * FROM crm_pii.customers__pii_write;
RESET ROLE;
GRANT SELECT ON crm_pii.customers TO regress_intern;
SET ROLE regress_intern;
\set VERBOSITY default
SELECT name FROM crm_pii.customers;
\set VERBOSITY terse
RESET ROLE;
REVOKE SELECT ON crm_pii.customers FROM regress_intern;

-- Policy is managed by pii_guard_admin members, not by others.
SET ROLE regress_intern;
SELECT pii_guard.set_clearance('regress_intern', 'core');
SELECT pii_guard.protect_column('customers', 'name', 'sensitive');
INSERT INTO pii_guard.profiles VALUES ('regress_intern', 'core');
RESET ROLE;
SET ROLE regress_admin;
SELECT pii_guard.protect_column('customers', 'region', 'internal');
SELECT column_name, level FROM pii_guard.column_rules WHERE base::text LIKE 'crm_pii.%' ORDER BY 1;
RESET ROLE;

-- Columns added, dropped, renamed or retyped on the base table (or through
-- the view's name, as migration tools do) show up in the view at once.
ALTER TABLE customers ADD COLUMN note text;
ALTER TABLE crm_pii.customers RENAME COLUMN email TO mail;
ALTER TABLE customers ALTER COLUMN tier TYPE varchar(20);
CREATE INDEX customers_name ON customers (name);
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'crm' AND table_name = 'customers' ORDER BY ordinal_position;
SELECT column_name, level FROM pii_guard.column_rules WHERE base::text LIKE 'crm_pii.%' ORDER BY 1;
SELECT indexrelid::regclass FROM pg_index WHERE indrelid = 'crm_pii.customers'::regclass ORDER BY 1;
SET ROLE regress_intern;
SELECT id, name, phone, mail, note FROM customers ORDER BY id;
UPDATE customers SET mail = 'new@example.com' WHERE id = 1;
RESET ROLE;
SELECT mail FROM crm_pii.customers WHERE id = 1;
ALTER TABLE customers DROP COLUMN note;
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'crm' AND table_name = 'customers' ORDER BY ordinal_position;
ALTER TABLE customers RENAME COLUMN mail TO email;
ALTER TABLE customers ALTER COLUMN tier TYPE text;

-- Views built on a masking view -- even a governed role's temporary view --
-- survive every change that keeps its columns: the masking view is
-- replaced in place.
CREATE VIEW customer_names AS SELECT id, name, tier, email FROM customers;
GRANT SELECT ON customer_names TO regress_intern;
SET ROLE regress_intern;
CREATE TEMP VIEW intern_phones AS SELECT id, phone FROM customers;
RESET ROLE;
ALTER TABLE customers ADD COLUMN nickname varchar(10);
SELECT pii_guard.protect_column('customers', 'name', 'sensitive', 'mask3(text)');
SELECT pii_guard.protect_column('customers', 'nickname', 'sensitive');
ALTER TABLE customers RENAME COLUMN nickname TO alias;
SELECT pii_guard.unprotect_column('customers', 'alias');
SELECT pii_guard.refresh_views();
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'customers'::regclass AND attname IN ('name', 'alias') ORDER BY attnum;
SET ROLE regress_intern;
SELECT * FROM customer_names ORDER BY id;
SELECT * FROM intern_phones ORDER BY id;
DROP VIEW intern_phones;
RESET ROLE;
SELECT pii_guard.unprotect_column('customers', 'name');
-- Dropping a column or changing its type must drop the masking view: with
-- a view built on it that is refused, naming the view.
\set VERBOSITY default
ALTER TABLE customers DROP COLUMN alias;
SELECT pii_guard.unprotect_table('customers');
\set VERBOSITY terse
ALTER TABLE customers ALTER COLUMN alias TYPE text;
DROP VIEW customer_names;
ALTER TABLE customers DROP COLUMN alias;

-- Mask functions see the plaintext of every value they mask, for every
-- reader: only functions that cannot pass it on are accepted.
\set VERBOSITY default
CREATE FUNCTION leaky_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT
SET search_path = pg_catalog AS $$ SELECT left($1, 3) $$;
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'leaky_mask(text)');
\set VERBOSITY terse
CREATE FUNCTION unpinned_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
AS $$ SELECT left($1, 3) $$;
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'unpinned_mask(text)');
CREATE FUNCTION volatile_mask(text) RETURNS text LANGUAGE sql VOLATILE STRICT LEAKPROOF
SET search_path = pg_catalog AS $$ SELECT left($1, 3) $$;
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'volatile_mask(text)');
CREATE FUNCTION definer_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF SECURITY DEFINER
SET search_path = pg_catalog AS $$ SELECT left($1, 3) $$;
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'definer_mask(text)');
CREATE FUNCTION atomic_mask(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT LEAKPROOF
BEGIN ATOMIC SELECT left($1, 3) || '**'; END;
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'atomic_mask(text)');
SET ROLE regress_intern;
SELECT id, email FROM customers ORDER BY id;
RESET ROLE;
-- A mask function in use cannot be dropped.
DROP FUNCTION atomic_mask(text);
SELECT pii_guard.protect_column('customers', 'email', 'sensitive', 'mask3(text)');
DROP FUNCTION leaky_mask(text), unpinned_mask(text), volatile_mask(text), definer_mask(text), atomic_mask(text);
-- Checked again at use: a mask function given away to a non-superuser
-- leaves its columns hidden, with a WARNING (once per backend and change).
ALTER FUNCTION mask3(text) OWNER TO regress_admin;
SET ROLE regress_intern;
\set VERBOSITY default
SELECT id, email FROM customers ORDER BY id;
RESET ROLE;
ALTER FUNCTION mask3(text) OWNER TO regress_nobody;
SET ROLE regress_intern;
\set VERBOSITY sqlstate
SELECT id, email FROM customers ORDER BY id;
\set VERBOSITY terse
RESET ROLE;
ALTER FUNCTION mask3(text) OWNER TO CURRENT_USER;
SET ROLE regress_intern;
SELECT id, email FROM customers ORDER BY id;
RESET ROLE;

-- Key rotation on a protected table, named by its (view) name.
SET client_min_messages = warning;
SELECT pii_guard.rotate_data_key() > 0 AS rotated;
CALL pii_guard.reencrypt_column('customers', 'phone');
RESET client_min_messages;
SELECT count(*) AS phones_on_old_keys FROM crm_pii.customers
 WHERE pii_guard.key_id(phone) <> (SELECT key_id FROM pii_guard.key_status
                                    WHERE purpose = 'encrypt' AND state = 'active');

-- Unprotect: the table is back exactly as it was.
SELECT pii_guard.unprotect_table('customers');
DROP INDEX customers_name;
-- (Both ways: nothing missing, nothing added.)
(SELECT 'missing' AS diff, * FROM snapshot EXCEPT SELECT 'missing', * FROM table_state)
UNION ALL
(SELECT 'added', * FROM table_state EXCEPT SELECT 'added', * FROM snapshot)
ORDER BY 1, 2, 3;
SELECT count(*) AS protected_tables FROM pii_guard.protected_tables WHERE view_schema = 'crm';
SELECT nspname FROM pg_namespace WHERE nspname = 'crm_pii';

-- Identity primary keys, ALWAYS and BY DEFAULT: INSERT ... RETURNING id
-- through the view returns the new id.
CREATE TABLE t_always (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, phone text);
CREATE TABLE t_by_default (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, phone text);
GRANT SELECT, INSERT, UPDATE ON t_always, t_by_default TO regress_intern;
SELECT pii_guard.protect_table('t_always') IS NOT NULL AS protected;
SELECT pii_guard.protect_column('t_always', 'phone', 'sensitive', 'mask3(text)');
SELECT pii_guard.protect_column('t_by_default', 'phone', 'sensitive', 'mask3(text)');
SET ROLE regress_intern;
INSERT INTO t_always (phone) VALUES ('13812345678') RETURNING id, phone;
INSERT INTO t_always (phone) VALUES ('13900001111') RETURNING id, phone;
INSERT INTO t_by_default (phone) VALUES ('13812345678') RETURNING id, phone;
INSERT INTO t_by_default (id, phone) VALUES (42, '13700000000') RETURNING id, phone;
UPDATE t_always SET phone = '13000000000' WHERE id = 2 RETURNING id, phone;
-- The trigger never writes an identity ALWAYS column, and says so.
INSERT INTO t_always (id, phone) VALUES (99, '13000000001');
INSERT INTO t_always (id, phone) VALUES (DEFAULT, '13000000001') RETURNING id;
UPDATE t_always SET id = 5 WHERE id = 1;
RESET ROLE;
SELECT id, phone FROM t_always ORDER BY id;
SELECT id, phone FROM t_by_default ORDER BY id;
SELECT pii_guard.unprotect_table('t_always');
SELECT pii_guard.unprotect_table('t_by_default');
DROP TABLE t_always, t_by_default;

-- A wide table: updates that change different columns far to the right
-- get their own plans (they once shared one, writing the wrong column or
-- crashing).
DO $$
BEGIN
    EXECUTE 'CREATE TABLE wide (id bigint PRIMARY KEY, '
         || (SELECT string_agg(format('c%s text', g), ', ') FROM generate_series(2, 519) g)
         || ', n int)';
END $$;
INSERT INTO wide (id, c515, n) VALUES (1, 'a', 1);
GRANT SELECT, UPDATE ON wide TO regress_intern;
SELECT pii_guard.protect_table('wide') IS NOT NULL AS protected;
SET ROLE regress_intern;
UPDATE wide SET c515 = 'hello' WHERE id = 1;
UPDATE wide SET n = 42 WHERE id = 1;
UPDATE wide SET c519 = 'z' WHERE id = 1;
SELECT c515, c519, n FROM wide;
RESET ROLE;
SELECT pii_guard.unprotect_table('wide');
DROP TABLE wide;
RESET search_path;

-- The roles go (installcheck may run again on the same server).
SET client_min_messages = warning;
DROP OWNED BY regress_admin, regress_intern, regress_mgr, regress_nobody CASCADE;
DROP ROLE regress_admin, regress_intern, regress_mgr, regress_nobody;
RESET client_min_messages;
