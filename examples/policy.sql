-- examples/policy.sql -- protecting a customer database with pii_guard.
--
-- THE example to copy.  It takes the tables of examples/schema.sql as an
-- application created them and, without changing a table or a query of that
-- application, decides for every role of examples/roles.sql:
--
--   1. which tables it may read and change at all, and which columns it may
--      change                     -- PostgreSQL's own GRANTs, as always;
--   2. which rows                 -- row-level security ("sales see only
--                                    their own customers");
--   3. which columns it sees in clear, masked or not at all
--                                 -- pii_guard: classify each column (level
--                                    and mask), give each profile a
--                                    clearance and its exceptions;
--   4. how many protected rows it may take out per statement and per day
--                                 -- pii_guard export limits.
-- Everything it reads, writes, exports or is refused is audited from the
-- moment a table is protected.
--
-- Run it as the owner of the tables (here crm_dba, a member of
-- pii_guard_admin; a superuser works too) after the data is loaded.  The
-- profiles are NOLOGIN group roles; people get their rights by membership.
--
--   profile     what the job needs                             clearance
--   ---------   --------------------------------------------   ---------
--   marketing   acquisition channel and campaigns only;        internal
--               no contact details, no amounts
--   sales       contacts and follow-up notes of their OWN      sensitive
--               customers; cannot change the service tier;
--               cannot export
--   support     contacts and service history of all            sensitive
--               customers; no sales opportunities; cannot
--               export
--   manager     everything, a bounded number of rows at a      sensitive
--               time; core data (ID number, bank card, birth
--               date) needs an approval to be seen in clear
--   intern      masked data only; no bulk export at all        public
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

--------------------------------------------------------------------------
-- 1. Privileges: who may read and change which table, and which columns.
--------------------------------------------------------------------------
-- Ordinary GRANTs, to the profiles.  pii_guard keeps them: when a table is
-- protected (step 3) its grants move to the masking view that takes its
-- name, and column-level UPDATE grants keep deciding who may change what.

GRANT SELECT ON customers TO marketing, sales, support, manager, intern;
-- Sales add customers and keep their contact details, notes and deals up
-- to date -- but may not change a customer's service tier (no grant on
-- service_tier) nor hand a customer to another rep (no grant on sales_owner).
GRANT INSERT ON customers TO sales;
GRANT UPDATE (name, phone, email, address, deal_amount, sales_notes) ON customers TO sales;
-- Support correct contact details and set the service tier.
GRANT UPDATE (phone, email, address, service_tier) ON customers TO support;
GRANT INSERT, UPDATE, DELETE ON customers TO manager;
GRANT USAGE ON SEQUENCE customers_id_seq TO sales, manager;

-- Orders: purchase history.  Marketing analyse it (without amounts, see
-- step 3), support answer questions about it.  Sales get none: orders
-- carry no owner, and sales may only see their own customers.
GRANT SELECT ON orders TO marketing, support, manager, intern;

-- Service tickets: support's own work; nobody else but managers (and the
-- intern, masked) reads them.
GRANT SELECT ON service_tickets TO support, manager, intern;
GRANT INSERT, UPDATE (status, summary) ON service_tickets TO support;
GRANT USAGE ON SEQUENCE service_tickets_id_seq TO support;

--------------------------------------------------------------------------
-- 2. Rows: sales see (and change) only their own customers.
--------------------------------------------------------------------------
-- Row-level security on the table.  pii_guard's views are owned by the
-- role pii_guard_owner (so RLS applies to every reader), while current_user
-- stays the person asking.  So a policy names no roles (it is TO PUBLIC)
-- and tests membership in its expression with pg_has_role(current_user,
-- ...): everyone who is not in sales passes, sales pass for their rows.
-- A superuser has the privileges of every role, so pg_has_role() alone
-- would count one as a sales rep with no customers: the last line lets
-- superusers see every row.  (The table's owner is not subject to RLS.)
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY sales_own_customers ON customers
    USING (sales_owner = current_user
           OR NOT pg_has_role(current_user, 'sales', 'USAGE')
           OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user))
    WITH CHECK (sales_owner = current_user
           OR NOT pg_has_role(current_user, 'sales', 'USAGE')
           OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user));

--------------------------------------------------------------------------
-- 3a. Classification: every column that holds personal data gets a level
--     and, usually, a mask.
--------------------------------------------------------------------------
-- Levels: public < internal < sensitive < core.  A role whose clearance
-- reaches a column's level sees it in clear; below that it sees the mask's
-- output, or NULL if the column has no mask ("hidden").
--
-- protect_column() protects the table on first use: public.customers moves
-- to public_pii.customers (governed roles can no longer touch it -- not by
-- name, not by COPY, not by search_path tricks) and a masking view takes
-- its place under the old name, so the application's SQL is unchanged.
-- The row key (the primary key) names rows in the audit and in approvals.
-- Columns not listed (id, sales_owner, created_at) stay as they are:
-- public.
--
--   column        level       mask: what a role below the level sees
-- A name's mask keeps its first character only and always shows two
-- stars: a mask as long as the name would tell the rare four-character
-- names apart.  The birth date is core, like the ID number: the ID
-- number's mask hides exactly its birth date, so whoever saw the date in
-- clear could rebuild the whole number.  (pii_guard.check_policy() finds
-- both.)
SELECT pii_guard.protect_column('customers', 'name',         'sensitive',
                                'pii_guard.partial(text,integer,text,integer)', '{1,**,0}');  -- 张三丰 -> 张**
SELECT pii_guard.protect_column('customers', 'birth_date',   'core',
                                'pii_guard.mask_date(date,text)', '{year}');  -- 1990-03-07 -> 1990-01-01
SELECT pii_guard.protect_column('customers', 'phone',        'sensitive',
                                'pii_guard.mask_phone(text)');          -- 138****5678
SELECT pii_guard.protect_column('customers', 'national_id',  'core',
                                'pii_guard.mask_cn_id(text)');          -- 110101********1234
SELECT pii_guard.protect_column('customers', 'bank_card',    'core',
                                'pii_guard.mask_bank_card(text)');      -- 622202*********0123
SELECT pii_guard.protect_column('customers', 'email',        'sensitive',
                                'pii_guard.mask_email(text)');          -- z*******@example.com
SELECT pii_guard.protect_column('customers', 'address',      'sensitive',
                                'pii_guard.mask_address(text)');        -- province, city, district only
SELECT pii_guard.protect_column('customers', 'channel',      'internal',
                                'pii_guard.partial(text,integer,text,integer)', '{1,***,0}');   -- w***
SELECT pii_guard.protect_column('customers', 'campaign',     'internal',
                                'pii_guard.partial(text,integer,text,integer)', '{2,***,0}');   -- sp***
SELECT pii_guard.protect_column('customers', 'service_tier', 'internal',
                                'pii_guard.partial(text,integer,text,integer)', '{1,***,0}');   -- g***
SELECT pii_guard.protect_column('customers', 'deal_amount',  'sensitive',
                                'pii_guard.noise(numeric,double precision)', '{0.2}');  -- +/- 20%, same every time
SELECT pii_guard.protect_column('customers', 'sales_notes',  'sensitive');   -- no mask: hidden below

-- Orders: the amount is business-sensitive; below the level it is blurred.
SELECT pii_guard.protect_column('orders', 'amount', 'sensitive',
                                'pii_guard.noise(numeric,double precision)', '{0.1}');
-- Service tickets: the summary is free text that quotes customers (their
-- complaints, new addresses, phone numbers): sensitive, and no mask can
-- make free text safe, so below the level it is hidden.
SELECT pii_guard.protect_column('service_tickets', 'summary', 'sensitive');

--------------------------------------------------------------------------
-- 3b. Profiles: a clearance per group role, and per-column exceptions.
--------------------------------------------------------------------------
-- A person sees the union of the profiles they are a member of.  A role
-- that is no profile sees nothing protected in clear (only masks).

-- Marketing: cleared for internal (channel, campaign, service tier); every
-- contact detail and amount hidden outright -- not even masked.
SELECT pii_guard.set_clearance('marketing', 'internal', 'acquisition channels and campaigns only');
SELECT pii_guard.set_column_access('marketing', 'customers', c, 'hidden')
  FROM unnest('{name,birth_date,phone,national_id,bank_card,email,address,deal_amount,sales_notes}'::name[]) AS c;
SELECT pii_guard.set_column_access('marketing', 'orders', 'amount', 'hidden');

-- Sales: contacts, notes and deals of their own customers in clear (rows:
-- step 2); ID number and bank card masked (core: above their clearance).
SELECT pii_guard.set_clearance('sales', 'sensitive', 'own customers: contacts, notes and deals in clear');

-- Support: contacts and service history in clear, not the sales
-- opportunities.
SELECT pii_guard.set_clearance('support', 'sensitive', 'all customers: contacts and service history in clear');
SELECT pii_guard.set_column_access('support', 'customers', 'deal_amount', 'hidden');
SELECT pii_guard.set_column_access('support', 'customers', 'sales_notes', 'hidden');

-- Managers: everything up to sensitive; ID numbers and bank cards (core)
-- masked unless someone in pii_guard_approver approves a time-boxed
-- pii_guard.approve() for the rows and columns needed.
SELECT pii_guard.set_clearance('manager', 'sensitive', 'everything; core data needs an approval');

-- Interns: public only, so every protected column is masked (or hidden
-- where there is no mask).
SELECT pii_guard.set_clearance('intern', 'public', 'masked data only');

--------------------------------------------------------------------------
-- 4. Export limits: protected rows per statement and per rolling 24 hours.
--------------------------------------------------------------------------
-- A row counts once per statement as soon as one protected value of it --
-- clear or masked -- is produced: to the screen, COPY TO, CREATE TABLE AS,
-- an aggregate.  count(*) and unprotected columns cost nothing.  Beyond the
-- limit: SQLSTATE 54P01, audited; more needs pii_guard.approve_export().
-- NULL sets no limit (unlimited, unless pii_guard.default_max_rows_per_*
-- say otherwise).  A person gets the most open of their profiles.  An
-- export approval adds rows beyond these limits; they do not count toward
-- the day.

-- Sales and support work customer by customer: a screenful at a time, a
-- working day's worth a day -- no bulk export.
SELECT pii_guard.set_export_limits('sales',   100, 1000);
SELECT pii_guard.set_export_limits('support', 100, 2000);
-- Interns: a few rows at a time, a screenful a day, and no bulk export at
-- all (more only through an approval).
SELECT pii_guard.set_export_limits('intern',   20,   20);
-- Managers are the ones authorised to export in bulk -- within a bound:
-- beyond it, someone else approves (pii_guard.approve_export()).
SELECT pii_guard.set_export_limits('manager', 10000, 100000);
-- Marketing see nothing above internal (channel, campaign, tier), and their
-- statistics run over every customer (GROUP BY channel produces the channel
-- of each row, which counts): unlimited.
SELECT pii_guard.set_export_limits('marketing', NULL, NULL);

RESET client_min_messages;

-- Check the result: what each profile sees of every protected column, and
-- what a reviewer would flag (nothing, for this policy).
--   SELECT * FROM pii_guard.effective_access('support');
--   SELECT * FROM pii_guard.check_policy();
-- And review it every quarter (as a member of pii_guard_auditor):
--   SELECT * FROM pii_guard.access_review;
--   SELECT * FROM pii_guard.idle_privileged_roles('90 days');
