-- The seed CRM of the role suites, for a Citus coordinator and for one
-- server alike (test/citus/run.sh loads it into both, and runs
-- test/citus/roles.sql against both): customers, their orders and their
-- support tickets -- distributed, co-located by customer, when Citus is
-- in the database -- the roles of a typical customer database, and the
-- policy of test/fixtures/crm.sql extended to the two new tables.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

-- Profiles and people (roles are cluster-wide: created once per server;
-- Citus creates them on the workers).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'marketing') THEN
        CREATE ROLE marketing NOLOGIN;
        CREATE ROLE sales NOLOGIN;
        CREATE ROLE support NOLOGIN;
        CREATE ROLE manager NOLOGIN;
        CREATE ROLE intern NOLOGIN;
        CREATE ROLE mkt_amy LOGIN IN ROLE marketing;
        CREATE ROLE sales_bob LOGIN IN ROLE sales;
        CREATE ROLE sales_carl LOGIN IN ROLE sales;
        CREATE ROLE support_dan LOGIN IN ROLE support;
        CREATE ROLE mgr_eve LOGIN IN ROLE manager, pii_guard_approver;
        CREATE ROLE intern_fay LOGIN IN ROLE intern;
    END IF;
END
$$;

CREATE TABLE customers (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    phone         pii_guard.encrypted_text,
    national_id   pii_guard.encrypted_text,
    email         text,
    address       text,
    channel       text,
    campaign      text,
    service_tier  text NOT NULL DEFAULT 'standard',
    deal_amount   numeric(12,2),
    sales_owner   name NOT NULL DEFAULT current_user
);
-- (On Citus a unique key must hold the distribution column: the row key of
-- orders and tickets is their id, unique with the customer's.)
CREATE TABLE orders (
    id            bigserial,
    customer_id   bigint NOT NULL,
    card          pii_guard.encrypted_text,
    ship_to       text,
    amount        numeric(12,2) NOT NULL,
    placed_on     date NOT NULL,
    PRIMARY KEY (customer_id, id)
);
CREATE TABLE tickets (
    id            bigserial,
    customer_id   bigint NOT NULL,
    subject       text NOT NULL,
    callback      pii_guard.encrypted_text,
    body          text,
    PRIMARY KEY (customer_id, id)
);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        PERFORM create_distributed_table('customers', 'id', shard_count => 8);
        PERFORM create_distributed_table('orders', 'customer_id', colocate_with => 'customers');
        PERFORM create_distributed_table('tickets', 'customer_id', colocate_with => 'customers');
    ELSE
        -- (one server: the id alone is the row key)
        CREATE UNIQUE INDEX orders_id ON orders (id);
        CREATE UNIQUE INDEX tickets_id ON tickets (id);
    END IF;
END
$$;

INSERT INTO customers (name, phone, national_id, email, address, channel, campaign,
                       service_tier, deal_amount, sales_owner) VALUES
 ('张三丰', '13812345678', '110101199003071234', 'zhangsan@example.com',
  '北京市朝阳区建国路88号', 'web', 'spring2026', 'gold', 120000.00, 'sales_bob'),
 ('李小龙', '13900001111', '440301198512120018', 'lixiaolong@example.com',
  '广东省深圳市南山区科技园南区8栋', 'store', 'summer2026', 'standard', 3500.50, 'sales_bob'),
 ('王芳', '13711112222', '31010419920815432X', 'wangfang@example.com',
  '上海市浦东新区世纪大道100号', 'referral', 'spring2026', 'silver', 800.00, 'sales_carl'),
 ('John Smith', '+86 136 0000 3333', '110105198001010011', 'john.smith@example.com',
  '1600 Amphitheatre Pkwy, Mountain View, CA 94043', 'web', 'intl2026', 'standard', 15000.00, 'sales_carl');
-- Thirty more of sales_carl's, for the export limits (intern: 20 per statement).
INSERT INTO customers (name, phone, national_id, email, sales_owner)
SELECT 'Kunde ' || g, '1350000' || lpad(g::text, 4, '0'), '3101041990010' || lpad(g::text, 5, '0'),
       'kunde' || g || '@example.com', 'sales_carl'
  FROM generate_series(1, 30) g;
INSERT INTO orders (id, customer_id, card, ship_to, amount, placed_on) VALUES
 (1, 1, '6222021234567890123', '北京市朝阳区建国路88号', 1999.00, '2026-03-01'),
 (2, 1, '6222021234567890123', '北京市海淀区中关村大街1号', 59.90, '2026-04-12'),
 (3, 2, '6217001234567890', '广东省深圳市南山区科技园南区8栋', 299.00, '2026-05-20'),
 (4, 3, '4111111111111111', '上海市浦东新区世纪大道100号', 88.00, '2026-06-02'),
 (5, 4, '5500000000000004', '1600 Amphitheatre Pkwy, Mountain View, CA 94043', 1200.00, '2026-07-07');
SELECT setval('orders_id_seq', 5);
INSERT INTO tickets (id, customer_id, subject, callback, body) VALUES
 (1, 1, 'delivery', '13812345678', 'Call back after 6pm, the parcel went to 北京市朝阳区建国路88号'),
 (2, 3, 'refund', '13711112222', 'Refund to card 4111111111111111 please'),
 (3, 4, 'address change', '+86 136 0000 3333', 'New address: 1 Infinite Loop, Cupertino');
SELECT setval('tickets_id_seq', 3);

GRANT SELECT ON customers, orders, tickets TO marketing, sales, support, manager, intern;
-- Writes (test/citus/writes.sql): sales and support update some columns of
-- customers, managers write everything.
GRANT UPDATE (name, phone, email, address, deal_amount) ON customers TO sales;
GRANT UPDATE (phone, email, address, service_tier) ON customers TO support;
GRANT INSERT, UPDATE, DELETE ON customers, orders, tickets TO manager;
GRANT USAGE ON SEQUENCE customers_id_seq, orders_id_seq, tickets_id_seq TO manager;

-- Sales see only their own customers (row-level security on the base
-- table; a policy without a subquery, which Citus refuses in a policy:
-- is_superuser tells the superuser, who bypasses row-level security on
-- the table but reads it through the view as its owner).
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY sales_own_customers ON customers
    USING (sales_owner = current_user
           OR NOT pg_has_role(current_user, 'sales', 'USAGE')
           OR current_setting('is_superuser') = 'on');

-- Classification and masks (the row key of orders and tickets named: it is
-- not their primary key).
SELECT pii_guard.protect_table('orders', 'id');
SELECT pii_guard.protect_table('tickets', 'id');
SELECT pii_guard.protect_column('customers', 'name',        'sensitive', 'pii_guard.mask_name(text)');
SELECT pii_guard.protect_column('customers', 'phone',       'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('customers', 'national_id', 'core',      'pii_guard.mask_cn_id(text)');
SELECT pii_guard.protect_column('customers', 'email',       'sensitive', 'pii_guard.mask_email(text)');
SELECT pii_guard.protect_column('customers', 'address',     'sensitive', 'pii_guard.mask_address(text)');
SELECT pii_guard.protect_column('customers', 'channel',     'internal',  'pii_guard.partial(text,integer,text,integer)', '{1,***,0}');
SELECT pii_guard.protect_column('customers', 'campaign',    'internal',  'pii_guard.partial(text,integer,text,integer)', '{2,***,0}');
SELECT pii_guard.protect_column('customers', 'service_tier','internal',  'pii_guard.partial(text,integer,text,integer)', '{1,***,0}');
SELECT pii_guard.protect_column('customers', 'deal_amount', 'sensitive');
SELECT pii_guard.protect_column('orders',    'card',        'core',      'pii_guard.mask_bank_card(text)');
SELECT pii_guard.protect_column('orders',    'ship_to',     'sensitive', 'pii_guard.mask_address(text)');
SELECT pii_guard.protect_column('tickets',   'callback',    'sensitive', 'pii_guard.mask_phone(text)');
SELECT pii_guard.protect_column('tickets',   'body',        'sensitive');

-- Profiles: clearance, and per-column exceptions.
SELECT pii_guard.set_clearance('marketing', 'internal', 'acquisition channels and campaigns only');
SELECT pii_guard.set_column_access('marketing', 'customers', c, 'hidden')
  FROM unnest(ARRAY['name', 'phone', 'national_id', 'email', 'address', 'service_tier', 'deal_amount']::name[]) c;
SELECT pii_guard.set_clearance('sales', 'sensitive', 'own customers, contacts in clear');
SELECT pii_guard.set_clearance('support', 'sensitive', 'all customers, contacts in clear, no deal amounts');
SELECT pii_guard.set_column_access('support', 'customers', 'deal_amount', 'hidden');
SELECT pii_guard.set_clearance('manager', 'sensitive', 'everything; national IDs and cards need an approval');
SELECT pii_guard.set_clearance('intern', 'public', 'masked data only');
SELECT pii_guard.set_export_limits('intern', 20, NULL);
RESET client_min_messages;
