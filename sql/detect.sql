-- Detectors: detect_kind(value) names the kind of personal data a value
-- looks like by its content, or NULL -- true values and decoys of each kind.
SELECT v AS value, pii_guard.detect_kind(v) AS kind, expected,
       pii_guard.detect_kind(v) IS NOT DISTINCT FROM expected AS ok
  FROM (VALUES
    -- resident ID: province code, birth date, ISO 7064 MOD 11-2 check digit
    ('110101199003071233', 'cn_id'),
    ('440306200002290041', 'cn_id'),          -- born on 29 February 2000
    ('32010219851231881x', NULL),              -- wrong check digit (and lower-case x)
    ('110101199003071234', NULL),              -- wrong check digit
    ('110101199002301237', NULL),              -- 30 February
    ('990101199003071230', NULL),              -- no such province
    ('51010719781108002X', NULL),              -- check digit is 7, not X
    ('510107197811080027', 'cn_id'),
    -- mobile numbers
    ('13812345678', 'mobile'),
    ('138 1234 5678', 'mobile'),
    ('+86 138-1234-5678', 'mobile'),
    ('8613812345678', 'mobile'),
    ('12812345678', NULL),                     -- 12x is no mobile prefix
    ('138123456789', NULL),                    -- 12 digits
    ('+1 138 1234 5678', NULL),
    -- bank cards: a network prefix and the Luhn check digit
    ('6217001234567890122', 'bank_card'),
    ('6222 0210 0112 3456 789', 'bank_card'),
    ('4111111111111111', 'bank_card'),
    ('5500005555555559', 'bank_card'),
    ('6013829391065908385', 'bank_card'),    -- an issuer's own BIN (Bank of China 601382)
    ('6013829391065908386', NULL),             -- the same, Luhn fails
    ('9558801001114937581', 'bank_card'),    -- ICBC's own 9558, 19 digits
    ('6217001234567890123', NULL),             -- Luhn fails
    ('2024120612345678', NULL),                -- an order number: no network, no Luhn
    ('1234567890123452', NULL),                -- Luhn holds, no card network
    -- e-mail
    ('zhang.san@example.com', 'email'),
    ('li+crm@mail.example.cn', 'email'),
    ('zhang.san@localhost', NULL),
    ('@example.com', NULL),
    ('zhang..san@example.com', NULL),
    ('zhang san@example.com', NULL),
    -- landlines
    ('010-12345678', 'landline'),
    ('0755 8765 4321', 'landline'),
    ('02112345678', 'landline'),
    ('(010)12345678', 'landline'),             -- area code in parentheses
    ('(0755) 8888-1234', 'landline'),
    ('010-12345678-123', 'landline'),          -- with an extension
    ('010-12345678转123', 'landline'),
    ('021 6666 8888 ext 12', 'landline'),
    ('13812345678-123', NULL),                 -- a mobile with an "extension"
    ('(010)123', NULL),
    ('0012345678', NULL),                      -- an international prefix
    ('012345', NULL),
    -- passports
    ('E12345678', 'passport'),
    ('EA1234567', 'passport'),
    ('G87654321', 'passport'),
    ('E1234567', NULL),
    ('X12345678', NULL),
    -- IPv4
    ('192.168.1.20', 'ipv4'),
    ('10.0.0.1', 'ipv4'),
    ('256.1.1.1', NULL),
    ('192.168.01.1', NULL),
    ('1.2.3', NULL),
    ('1.2.3.4.5', NULL),
    -- plates
    ('京A12345', 'plate'),
    ('粤B·D12345', 'plate'),                  -- new-energy plate, with its dot
    ('京A1234', NULL),
    ('A12345', NULL),
    -- names
    ('张三', 'cn_name'),
    ('欧阳娜娜', 'cn_name'),
    ('王小明', 'cn_name'),
    ('上官云', 'cn_name'),                     -- a compound surname
    ('上官', NULL),                            -- ... alone
    ('你好', NULL),                            -- no surname
    ('张三丰先生来了', NULL),                  -- too long for a name
    ('华东区', NULL),                          -- a region, a department, a
    ('销售部', NULL),                          -- membership, a product, a
    ('金卡会员', NULL),                        -- colour, a size, a city: words
    ('蓝牙耳机', NULL),                        -- of a CRM that begin with a
    ('白色', NULL),                            -- surname
    ('大号', NULL),
    ('成都', NULL),
    -- addresses
    ('广东省深圳市南山区科技园路1号', 'address'),
    ('北京市朝阳区建国路88号', 'address'),
    ('朝阳区建国路88号', 'address'),          -- district, street, number
    ('上海市', NULL),
    ('今天天气很好我们去公园', NULL),
    -- nothing
    ('hello world', NULL),
    ('', NULL),
    ('   ', NULL),
    ('2024-12-06', NULL),
    ('ORD-20241206-0001', NULL)
  ) AS t(v, expected)
 ORDER BY ok, v;

-- No input makes a detector fail: long values, control characters,
-- every byte.
SELECT count(*) AS none_failed FROM (
    SELECT pii_guard.detect_kind(repeat('1', n)) FROM generate_series(0, 600) n
    UNION ALL
    SELECT pii_guard.detect_kind(repeat(chr(n), 20)) FROM generate_series(1, 1000) n
    UNION ALL
    SELECT pii_guard.detect_kind(repeat('张', n)) FROM generate_series(0, 300) n) s;
-- NULL in, NULL out.
SELECT pii_guard.detect_kind(NULL) IS NULL AS null_in_null_out;

-- Discovery over a table that nobody has protected yet: content and name.
CREATE SCHEMA crm_raw;
CREATE TABLE crm_raw.leads (
    id        serial PRIMARY KEY,
    contact   text,          -- Chinese names
    mobile_no text,          -- mobiles, one in ten malformed
    idno      varchar(18),   -- resident IDs, one with a wrong check digit
    card      text,          -- UnionPay cards
    mail      text,          -- e-mail
    addr      text,          -- addresses
    order_no  text,          -- decoys: order numbers shaped like cards
    remark    text,          -- free text
    shouji    text,          -- named like a mobile column, still empty
    tel_num   bigint,        -- mobiles stored as numbers
    created   date,
    backup_no pii_guard.encrypted_text);   -- encrypted, not yet protected: read decrypted
INSERT INTO crm_raw.leads (contact, mobile_no, idno, card, mail, addr, order_no, remark, tel_num, created, backup_no)
SELECT (ARRAY['张三', '李四', '王小明', '欧阳娜娜', '陈静'])[1 + g % 5],
       CASE WHEN g % 10 = 0 THEN '1234' ELSE '138' || lpad(g::text, 8, '0') END,
       CASE WHEN g = 1 THEN '110101199003071234' ELSE '110101199003071233' END,
       '6217001234567890122',
       'user' || g || '@example.com',
       '广东省深圳市南山区科技园路' || g || '号',
       '20241206' || lpad(g::text, 8, '0'),
       'called back, wants a quote',
       13900000000 + g,
       date '2024-01-01' + g,
       ('137' || lpad(g::text, 8, '0'))::pii_guard.encrypted_text
  FROM generate_series(1, 40) g;
SELECT relation, column_name, data_type, kind, matched_by, share, sampled, suggested_level, suggested_mask
  FROM pii_guard.discover('crm_raw') ORDER BY column_name;
SELECT protect_call FROM pii_guard.discover('crm_raw.leads') WHERE column_name = 'idno';
-- Each run is an admin event; a table that does not exist is an error.
SELECT count(*) AS discover_events FROM pii_guard.audit_log WHERE kind = 'admin' AND operation = 'discover';
SELECT * FROM pii_guard.discover('crm_raw.nope');
SELECT * FROM pii_guard.discover('crm_raw', 0);
-- Who may run it: pii_guard_admin, reading only what it may read.
CREATE ROLE regress_disc_admin IN ROLE pii_guard_admin;
CREATE ROLE regress_disc_nobody;
GRANT USAGE ON SCHEMA crm_raw TO regress_disc_admin, regress_disc_nobody;
SET ROLE regress_disc_nobody;
SELECT * FROM pii_guard.discover('crm_raw');
RESET ROLE;
SET ROLE regress_disc_admin;
SELECT count(*) AS columns_found_without_select FROM pii_guard.discover('crm_raw');
RESET ROLE;
DROP SCHEMA crm_raw CASCADE;
DROP ROLE regress_disc_admin, regress_disc_nobody;

-- Pseudonyms of masked copies are what the detectors call their kind: a
-- candidate that is not (1 name in 20,000 ended in a character names do
-- not end in) is drawn again.
SELECT k, count(*) FILTER (WHERE pii_guard.detect_kind(
              pii_guard._fake(k, g::text, decode(md5(g::text) || md5(k || g), 'hex'), 0)) IS DISTINCT FROM k) AS not_its_kind
  FROM generate_series(1, 20000) g, unnest('{cn_name,mobile,cn_id,bank_card,email}'::text[]) k
 GROUP BY k ORDER BY k;
