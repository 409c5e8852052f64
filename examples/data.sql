-- examples/data.sql -- 100,000 customers that look real, with their orders
-- and service tickets, generated in SQL.
--
-- Run as crm_dba after examples/schema.sql (psql -v customers=N for another
-- size).  Deterministic: every choice is taken from an md5 of what is being
-- chosen and the row number, so every run produces the same people.  And the
-- same at every size: a customer's values come from its id alone (the ID
-- number's sequence number also from the customers of lower id born on the
-- same day in the same district), never from N, so customer 1042 -- whom
-- README.md's tour shows -- is the same person among 5,000 customers (make
-- test) as among 100,000 (make demo).  Orders and tickets are spread over
-- all N customers: which ones a customer has does depend on N.
--
--   * names: a surname (common ones more often, a few compound ones) and one
--     or two given-name characters;
--   * mobile numbers: a real mobile prefix and 8 digits, unique;
--   * national ID numbers (GB 11643): the 6-digit code of a real district,
--     the date of birth, a 3-digit sequence number and the ISO 7064
--     MOD 11-2 check character;
--   * bank cards: a real issuer prefix (BIN), 16 or 19 digits, the last one
--     a valid Luhn check digit;
--   * e-mail addresses built from the name's pinyin, or a QQ number;
--   * addresses: province, city, district, street and number, and often the
--     residential compound, building and flat.
--
-- One INSERT ... SELECT per table: phone, national ID and bank card are
-- typed text here, and the assignment to the encrypted_text columns
-- encrypts them (about a microsecond per value).
\set ON_ERROR_STOP 1
\if :{?customers}
\else
\set customers 100000
\endif
SET client_min_messages = warning;

-- Compiling these one-off queries would take longer than running them; and
-- the rows are sorted (customers by id, orders and tickets by date), which
-- is quicker in memory.
SET jit = off;
SET work_mem = '64MB';

-- A deterministic choice among n (1..n), seeded by what is chosen and the row.
CREATE FUNCTION pg_temp.pick(what text, seed bigint, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1 + ('x' || substr(md5(what || ':' || seed::text), 1, 7))::bit(28)::integer % n $$;

-- The i-th digit of a string of digits.
CREATE FUNCTION pg_temp.digit(digits text, i integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT substr(digits, i, 1)::integer $$;

-- The check character of an 18-character resident identity card number
-- (GB 11643): ISO 7064 MOD 11-2 over the first 17 digits, with the weights
-- 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2; the remainder mod 11 picks the
-- character from '10X98765432'.  (Written out rather than aggregated, so
-- that the planner inlines it: 100,000 calls cost next to nothing.)
CREATE FUNCTION pg_temp.cn_id_check(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT substr('10X98765432', 1 + (
                7 * pg_temp.digit(body, 1)  +  9 * pg_temp.digit(body, 2)  + 10 * pg_temp.digit(body, 3)
             +  5 * pg_temp.digit(body, 4)  +  8 * pg_temp.digit(body, 5)  +  4 * pg_temp.digit(body, 6)
             +  2 * pg_temp.digit(body, 7)  +  1 * pg_temp.digit(body, 8)  +  6 * pg_temp.digit(body, 9)
             +  3 * pg_temp.digit(body, 10) +  7 * pg_temp.digit(body, 11) +  9 * pg_temp.digit(body, 12)
             + 10 * pg_temp.digit(body, 13) +  5 * pg_temp.digit(body, 14) +  8 * pg_temp.digit(body, 15)
             +  4 * pg_temp.digit(body, 16) +  2 * pg_temp.digit(body, 17)) % 11, 1)
$$;

-- Luhn: counting from the right, every other digit -- starting with the
-- last digit of the body, next to where the check digit goes -- is doubled,
-- and a doubled digit counts as the sum of its digits (0 2 4 6 8 1 3 5 7 9
-- for 0..9); the check digit brings the total to a multiple of 10.
CREATE FUNCTION pg_temp.doubled(digits text, i integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT substr('0246813579', 1 + substr(digits, i, 1)::integer, 1)::integer $$;

-- The check digit for an 18-digit body: the doubled digits are at the even
-- positions.
CREATE FUNCTION pg_temp.luhn_digit18(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ((10 - (  pg_temp.digit(body, 1)  + pg_temp.doubled(body, 2)
                   + pg_temp.digit(body, 3)  + pg_temp.doubled(body, 4)
                   + pg_temp.digit(body, 5)  + pg_temp.doubled(body, 6)
                   + pg_temp.digit(body, 7)  + pg_temp.doubled(body, 8)
                   + pg_temp.digit(body, 9)  + pg_temp.doubled(body, 10)
                   + pg_temp.digit(body, 11) + pg_temp.doubled(body, 12)
                   + pg_temp.digit(body, 13) + pg_temp.doubled(body, 14)
                   + pg_temp.digit(body, 15) + pg_temp.doubled(body, 16)
                   + pg_temp.digit(body, 17) + pg_temp.doubled(body, 18)) % 10) % 10)::text
$$;

-- The Luhn check digit for a body of up to 18 digits: leading zeros change
-- no sum, so pad it to 18.
CREATE FUNCTION pg_temp.luhn_digit(body text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_temp.luhn_digit18(lpad(body, 18, '0')) $$;

-- Districts: code (the first 6 digits of an ID number), province, city
-- (empty for the four municipalities), district.
CREATE TEMPORARY TABLE districts (n serial PRIMARY KEY, code text, province text, city text, district text);
INSERT INTO districts (code, province, city, district) VALUES
    ('110101', '北京市', '', '东城区'),   ('110105', '北京市', '', '朝阳区'),
    ('110108', '北京市', '', '海淀区'),   ('310104', '上海市', '', '徐汇区'),
    ('310115', '上海市', '', '浦东新区'), ('120101', '天津市', '', '和平区'),
    ('500103', '重庆市', '', '渝中区'),
    ('440106', '广东省', '广州市', '天河区'), ('440304', '广东省', '深圳市', '福田区'),
    ('440305', '广东省', '深圳市', '南山区'), ('330106', '浙江省', '杭州市', '西湖区'),
    ('330108', '浙江省', '杭州市', '滨江区'), ('320102', '江苏省', '南京市', '玄武区'),
    ('320505', '江苏省', '苏州市', '虎丘区'), ('510107', '四川省', '成都市', '武侯区'),
    ('420106', '湖北省', '武汉市', '武昌区'), ('610113', '陕西省', '西安市', '雁塔区'),
    ('370202', '山东省', '青岛市', '市南区'), ('350203', '福建省', '厦门市', '思明区'),
    ('430104', '湖南省', '长沙市', '岳麓区'), ('410105', '河南省', '郑州市', '金水区');

INSERT INTO customers (id, name, birth_date, phone, national_id, bank_card, email, address,
                       channel, campaign, service_tier, deal_amount, sales_notes, sales_owner,
                       created_at)
WITH a AS (
    SELECT
        -- the most common surnames first (chosen more often), compound ones last
        '{王,李,张,刘,陈,杨,黄,赵,吴,周,徐,孙,马,朱,胡,郭,何,林,高,罗,郑,梁,谢,宋,唐,许,邓,韩,冯,曹,
          彭,曾,肖,田,董,潘,袁,蔡,蒋,余,于,杜,叶,程,魏,苏,吕,丁,任,卢,姚,沈,钟,姜,崔,谭,陆,范,汪,廖,
          石,金,韦,贾,夏,付,方,邹,熊,白,孟,秦,邱,侯,江,尹,薛,闫,段,雷,龙,黎,史,陶,贺,毛,郝,顾,龚,邵,
          万,覃,武,钱,戴,严,莫,孔,向,常,欧阳,司马,诸葛,上官,慕容}'::text[] AS surname,
        '{wang,li,zhang,liu,chen,yang,huang,zhao,wu,zhou,xu,sun,ma,zhu,hu,guo,he,lin,gao,luo,zheng,
          liang,xie,song,tang,xu,deng,han,feng,cao,peng,zeng,xiao,tian,dong,pan,yuan,cai,jiang,yu,yu,du,
          ye,cheng,wei,su,lv,ding,ren,lu,yao,shen,zhong,jiang,cui,tan,lu,fan,wang,liao,shi,jin,wei,jia,
          xia,fu,fang,zou,xiong,bai,meng,qin,qiu,hou,jiang,yin,xue,yan,duan,lei,long,li,shi,tao,he,mao,
          hao,gu,gong,shao,wan,qin,wu,qian,dai,yan,mo,kong,xiang,chang,ouyang,sima,zhuge,shangguan,
          murong}'::text[] AS surname_py,
        '{伟,芳,娜,敏,静,丽,强,磊,军,洋,勇,艳,杰,娟,涛,明,超,秀,霞,平,刚,桂,英,华,玉,萍,红,建,文,辉,
          鹏,宇,浩,婷,雪,琳,晨,欣,怡,佳,子,梓,涵,轩,博,思,雨,泽,嘉,俊,晓,志,海,云,飞,斌,峰,凯,琪,颖,
          慧,倩,丹,璐,昊,然,一,诺,安,宁,德,国,成,春,兰,梅,龙,亮,林,瑶}'::text[] AS given,
        '{wei,fang,na,min,jing,li,qiang,lei,jun,yang,yong,yan,jie,juan,tao,ming,chao,xiu,xia,ping,
          gang,gui,ying,hua,yu,ping,hong,jian,wen,hui,peng,yu,hao,ting,xue,lin,chen,xin,yi,jia,zi,zi,
          han,xuan,bo,si,yu,ze,jia,jun,xiao,zhi,hai,yun,fei,bin,feng,kai,qi,ying,hui,qian,dan,lu,hao,
          ran,yi,nuo,an,ning,de,guo,cheng,chun,lan,mei,long,liang,lin,yao}'::text[] AS given_py,
        '{130,131,132,133,134,135,136,137,138,139,150,151,152,153,155,156,157,158,159,166,
          176,177,178,180,181,182,183,184,185,186,187,188,189,191,198,199}'::text[] AS mobile_prefix,
        -- issuer prefix and card length
        '{622202:19,621226:19,622848:19,621700:19,622262:19,622588:16,621483:16,436742:16,
          625911:16,601382:19}'::text[] AS card_bin,
        '{163.com,126.com,sina.com,gmail.com,outlook.com,foxmail.com,hotmail.com,yeah.net}'::text[] AS domain,
        '{人民路,解放路,中山路,建设路,和平路,长江路,黄河路,文化路,新华路,胜利路,朝阳路,东风路,青年路,
          光明路,幸福路,建国路,学院路,科技路,滨江路,湖滨路}'::text[] AS street,
        '{阳光花园,锦绣家园,翠苑小区,金色港湾,滨江花园,万科城,世纪新城,绿地公馆,香樟苑,东方明珠苑}'::text[] AS compound,
        '{web,app,store,wechat,referral,partner,hotline}'::text[] AS channel,
        '{none,spring2025,618_2025,double11_2025,newyear2026,spring2026,618_2026}'::text[] AS campaign,
        '{客户对年度套餐感兴趣，下周二回访,已发送报价单，等待客户确认,客户要求上门演示,
          预算有限，建议推荐标准版,老客户推荐，优先跟进,合同已在法务审核中,
          客户暂无需求，三个月后再联系,需要开具增值税专用发票}'::text[] AS note,
        (SELECT count(*)::integer FROM districts) AS districts
),
-- Step 1: every random choice for each customer.  (MATERIALIZED: each is
-- computed once, however often step 2 uses it.)
choice AS MATERIALIZED (
    SELECT g.id,
           -- the lower of two draws: the front of the list comes up more often
           least(pg_temp.pick('surname-1', g.id, cardinality(a.surname)),
                 pg_temp.pick('surname-2', g.id, cardinality(a.surname))) AS surname,
           pg_temp.pick('given-1', g.id, cardinality(a.given)) AS given1,
           pg_temp.pick('given-2', g.id, cardinality(a.given)) AS given2,
           pg_temp.pick('given-len', g.id, 10) <= 7 AS two_given,           -- 70%: two characters
           date '1955-01-01' + pg_temp.pick('born', g.id, 18250) - 1 AS born,
           pg_temp.pick('birthplace', g.id, a.districts) AS birthplace,     -- the ID number's district
           pg_temp.pick('id-seq', g.id, 1000) - 1 AS id_seq,
           pg_temp.pick('mobile', g.id, cardinality(a.mobile_prefix)) AS mobile,
           pg_temp.pick('bin', g.id, cardinality(a.card_bin)) AS bin,
           pg_temp.pick('card-a', g.id, 1000000) - 1 AS card_a,
           pg_temp.pick('card-b', g.id, 1000000) - 1 AS card_b,
           pg_temp.pick('mail', g.id, 10) AS mail_style,
           pg_temp.pick('domain', g.id, cardinality(a.domain)) AS domain,
           pg_temp.pick('mail-n', g.id, 100) - 1 AS mail_n,
           100000 + pg_temp.pick('qq', g.id, 200000000) AS qq,
           pg_temp.pick('home', g.id, a.districts) AS home,
           pg_temp.pick('street', g.id, cardinality(a.street)) AS street,
           pg_temp.pick('number', g.id, 999) AS house_number,
           pg_temp.pick('flat', g.id, 10) <= 7 AS in_compound,               -- 70%: a flat
           pg_temp.pick('compound', g.id, cardinality(a.compound)) AS compound,
           pg_temp.pick('building', g.id, 30) AS building,
           pg_temp.pick('floor', g.id, 32) AS floor,
           pg_temp.pick('flat-no', g.id, 4) AS flat,
           pg_temp.pick('channel', g.id, cardinality(a.channel)) AS channel,
           pg_temp.pick('campaign', g.id, cardinality(a.campaign)) AS campaign,
           pg_temp.pick('tier', g.id, 100) AS tier,
           pg_temp.pick('deal', g.id, 10) <= 4 AS has_deal,                  -- 40%: an open deal
           pg_temp.pick('deal-amount', g.id, 19950000) AS deal_cents,
           pg_temp.pick('notes', g.id, 10) <= 6 AS has_notes,
           pg_temp.pick('note', g.id, cardinality(a.note)) AS note,
           pg_temp.pick('owner', g.id, 2) AS owner,
           pg_temp.pick('since', g.id, 2500 * 24 * 60) AS since_minutes
      FROM a CROSS JOIN generate_series(1, :customers) AS g(id)
),
-- Step 2: the values, from the choices.
person AS MATERIALIZED (
    SELECT c.*,
           a.surname[c.surname] || a.given[c.given1]
               || CASE WHEN c.two_given THEN a.given[c.given2] ELSE '' END AS name,
           a.surname_py[c.surname] AS surname_py,
           a.given_py[c.given1] || CASE WHEN c.two_given THEN a.given_py[c.given2] ELSE '' END AS given_py,
           -- the 8 digits are a permutation of the id: every customer has a different number
           a.mobile_prefix[c.mobile] || lpad(((c.id::bigint * 37139213 + 5501) % 100000000)::text, 8, '0')
               AS phone,
           -- district, date of birth, sequence number: the sequence numbers of people
           -- born on the same day in the same district differ (and the numbers with them)
           birthplace.code || to_char(c.born, 'YYYYMMDD')
               || lpad(((first_value(c.id_seq) OVER same_day + 137 * (row_number() OVER same_day - 1))
                        % 1000)::text, 3, '0') AS id_body,
           split_part(a.card_bin[c.bin], ':', 1)
               || left(lpad(c.card_a::text, 6, '0') || lpad(c.card_b::text, 6, '0'),
                       split_part(a.card_bin[c.bin], ':', 2)::integer - 7) AS card_body,
           a.domain[c.domain] AS mail_domain,
           home.province || home.city || home.district || a.street[c.street] || c.house_number || '号'
               || CASE WHEN c.in_compound
                       THEN a.compound[c.compound] || c.building || '栋'
                            || c.floor || lpad(c.flat::text, 2, '0') || '室'
                       ELSE '' END AS address,
           a.channel[c.channel] AS channel_name,
           a.campaign[c.campaign] AS campaign_name,
           a.note[c.note] AS note_text
      FROM choice c
     CROSS JOIN a
      JOIN districts birthplace ON birthplace.n = c.birthplace
      JOIN districts home ON home.n = c.home
    WINDOW same_day AS (PARTITION BY c.birthplace, c.born ORDER BY c.id)
)
SELECT id, name, born, phone,
       id_body || pg_temp.cn_id_check(id_body),
       card_body || pg_temp.luhn_digit(card_body),
       CASE WHEN mail_style <= 3 THEN given_py || '.' || surname_py || '@' || mail_domain
            WHEN mail_style <= 6 THEN surname_py || given_py || mail_n || '@' || mail_domain
            WHEN mail_style <= 9 THEN qq || '@qq.com'
            ELSE left(given_py, 1) || surname_py || extract(year FROM born) || '@' || mail_domain
       END,
       address, channel_name, campaign_name,
       CASE WHEN tier <= 70 THEN 'standard' WHEN tier <= 90 THEN 'silver'
            WHEN tier <= 98 THEN 'gold' ELSE 'platinum' END,
       CASE WHEN has_deal THEN (50000 + deal_cents) / 100.0 END,
       CASE WHEN has_notes THEN note_text END,
       CASE owner WHEN 1 THEN 'sales_bob' ELSE 'sales_carl' END,
       timestamptz '2019-01-01 09:00+08' + since_minutes * interval '1 minute'
  FROM person
 ORDER BY id;
SELECT setval('customers_id_seq', :customers);

-- About two orders per customer.
INSERT INTO orders (customer_id, ordered_at, product, quantity, amount, status, channel)
WITH choice AS MATERIALIZED (
    SELECT pg_temp.pick('order-customer', o, :customers) AS customer_id,
           timestamptz '2020-01-01 08:00+08' + pg_temp.pick('ordered', o, 2450 * 24 * 60) * interval '1 minute'
               AS ordered_at,
           ('{年度会员:1288.00,季度会员:399.00,智能音箱:499.00,蓝牙耳机:299.00,空气净化器:1999.00,
          扫地机器人:2499.00,电动牙刷:199.00,保温杯:89.00,行李箱:699.00,咖啡机:1599.00}'::text[])
               [pg_temp.pick('product', o, 10)] AS product,     -- name:unit price
           pg_temp.pick('quantity', o, 3) AS quantity,
           pg_temp.pick('status', o, 100) AS status,
           (ARRAY['web', 'app', 'store', 'wechat'])[pg_temp.pick('order-channel', o, 4)] AS channel
      FROM generate_series(1, 2 * :customers) AS o
)
SELECT customer_id, ordered_at, split_part(product, ':', 1), quantity,
       split_part(product, ':', 2)::numeric * quantity,
       CASE WHEN status <= 80 THEN 'delivered' WHEN status <= 88 THEN 'shipped' WHEN status <= 92 THEN 'paid'
            WHEN status <= 97 THEN 'refunded' ELSE 'cancelled' END,
       channel
  FROM choice
 ORDER BY ordered_at;

-- Service tickets for about a third of the customers.
INSERT INTO service_tickets (customer_id, opened_at, channel, category, summary, status, agent)
WITH choice AS MATERIALIZED (
    SELECT pg_temp.pick('ticket-customer', t, :customers) AS customer_id,
           timestamptz '2021-01-01 08:00+08' + pg_temp.pick('opened', t, 2100 * 24 * 60) * interval '1 minute'
               AS opened_at,
           (ARRAY['hotline', 'wechat', 'e-mail', 'web chat'])[pg_temp.pick('ticket-channel', t, 4)] AS channel,
           (ARRAY['support_dan', 'support_lily', 'support_max'])[pg_temp.pick('agent', t, 3)] AS agent,
           ('{账单疑问:客户询问本月账单中的重复扣款，已核实并退款,
          物流查询:客户催问包裹配送进度，已联系快递加急,
          退换货:客户反映蓝牙耳机左声道无声，已安排换货,
          产品故障:扫地机器人无法回充，远程指导后恢复,
          账户安全:客户称收到可疑验证码短信，已冻结账户并回访,
          发票:客户要求补开增值税专用发票，已转财务,
          投诉:客户投诉安装师傅迟到两小时，已致歉并补偿优惠券,
          资料变更:客户要求更新收货地址和预留手机号，已核实身份后修改}'::text[])
               [pg_temp.pick('topic', t, 8)] AS topic,           -- category:summary
           pg_temp.pick('ticket-status', t, 100) AS status
      FROM generate_series(1, :customers * 3 / 10) AS t
)
SELECT customer_id, opened_at, channel, split_part(topic, ':', 1), split_part(topic, ':', 2),
       CASE WHEN status <= 85 THEN 'closed' WHEN status <= 93 THEN 'resolved' WHEN status <= 97 THEN 'pending'
            ELSE 'open' END,
       agent
  FROM choice
 ORDER BY opened_at;

ANALYZE customers;
ANALYZE orders;
ANALYZE service_tickets;
RESET client_min_messages;
