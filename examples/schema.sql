-- examples/schema.sql -- the demo's customer database, as an application
-- would have created it: customers, their orders, their service tickets.
--
-- Run as crm_dba (examples/roles.sql), who owns the tables.  The only thing
-- pii_guard asks of the schema is the column type of the values that must
-- never be stored in clear: phone, national ID number and bank card are
-- pii_guard.encrypted_text (AES-256-GCM on disk, in backups, dumps and
-- replicas).  Everything else -- which role sees what, masks, export limits,
-- audit -- is policy, added afterwards by examples/policy.sql without
-- changing a table or a query of the application.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE TABLE customers (
    id            bigserial PRIMARY KEY,          -- the row key: audit and approvals name rows by it
    name          text NOT NULL,
    birth_date    date,
    phone         pii_guard.encrypted_text,       -- mobile number, encrypted
    national_id   pii_guard.encrypted_text,       -- resident identity card number, encrypted
    bank_card     pii_guard.encrypted_text,       -- card on file, encrypted
    email         text,
    address       text,
    channel       text,                           -- how the customer was acquired
    campaign      text,                           -- the campaign that brought them
    service_tier  text NOT NULL DEFAULT 'standard'
                  CHECK (service_tier IN ('standard', 'silver', 'gold', 'platinum')),
    deal_amount   numeric(12,2),                  -- open sales opportunity
    sales_notes   text,                           -- the sales rep's follow-up notes
    sales_owner   name NOT NULL DEFAULT current_user,   -- the rep who owns the customer
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Equality on an encrypted column compares its blind index (an HMAC of the
-- plaintext), so UNIQUE and ordinary btree indexes work: a lookup by phone
-- number is an index scan, and no index holds a plaintext.
CREATE UNIQUE INDEX customers_phone_key ON customers (phone);
CREATE UNIQUE INDEX customers_national_id_key ON customers (national_id);
CREATE INDEX customers_sales_owner_idx ON customers (sales_owner);

CREATE TABLE orders (
    id            bigserial PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers,
    ordered_at    timestamptz NOT NULL,
    product       text NOT NULL,
    quantity      integer NOT NULL,
    amount        numeric(12,2) NOT NULL,
    status        text NOT NULL,
    channel       text
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);

CREATE TABLE service_tickets (
    id            bigserial PRIMARY KEY,
    customer_id   bigint NOT NULL REFERENCES customers,
    opened_at     timestamptz NOT NULL,
    channel       text NOT NULL,                  -- hotline, wechat, e-mail, web chat
    category      text NOT NULL,
    summary       text,                           -- free text: may quote personal data
    status        text NOT NULL,
    agent         name
);
CREATE INDEX service_tickets_customer_id_idx ON service_tickets (customer_id);
RESET client_min_messages;
