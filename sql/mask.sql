--
-- The masking function catalogue: every function, with Chinese and Latin
-- values, separators, short, empty, too long and NULL values, bad
-- parameters, and the properties of the keyed functions.
--
\set VERBOSITY terse
SET search_path = pii_guard, public;
SET DateStyle = 'ISO, YMD';

-- Phone numbers: mainland mobiles, international forms, landlines, short
-- numbers, and anything else.
SELECT v AS phone, mask_phone(v) AS masked
  FROM unnest(ARRAY[
    '13812345678', '138 1234 5678', '138-1234-5678', '(138) 1234.5678',
    '+86 138 1234 5678', '+8613812345678', '008613812345678', '(+86) 13812345678',
    '+86 10 8765 4321', '+1 (650) 253-0000', '+44 20 7946 0958',
    '+7 495 123 45 67', '+852 2345 6789', '+353 1 234 5678', '00 44 20 7946 0958',
    '+12', '+999', '+0123', '+1', '+',
    '010-8765-4321', '87654321', '8765432', '12345', '1234', '1',
    '１３８１２３４５６７８', '12345678901234567890',
    '+86 138 1234 5678 ext. 9', 'call me', 'n/a', '---', '****', ' ', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- Resident identity card numbers: 18 characters (check digit X in either
-- case), the old 15 digits, and everything else.
SELECT v AS id, mask_cn_id(v) AS masked
  FROM unnest(ARRAY[
    '110101199003071234', '11010119900307123X', '11010119900307123x',
    '110101 19900307 1234', '110101-19900307-123x', '110101900307123',
    '1101011990030712', '1101011990030712345', '11010119900307X234',
    '11010190030712X', 'ABCDEFGHIJKLMNOPQR', 'x', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- Bank cards: 16 to 19 digits show the first 6 and last 4; shorter ones
-- less, never more than half of the digits (13 to 15: first 2 and last 4;
-- 8 to 12: last 4).
SELECT v AS card, mask_bank_card(v) AS masked,
       length(regexp_replace(mask_bank_card(v), '[^0-9]', '', 'g')) AS digits_shown
  FROM unnest(ARRAY[
    '6222021234567890123', '6222 0212 3456 7890 123', '6222-0212-3456-7890',
    '6222021234567890', '622202123456789', '3782 822463 10005', '62220212345678', '6222021234567',
    '622202123456', '62220212345', '12345678', '1234567', '1',
    '12345678901234567890123', '6222 0212 3456 789O', 'card', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- E-mail addresses: the local part counted in characters.
SELECT v AS email, mask_email(v) AS masked
  FROM unnest(ARRAY[
    'zhangsan@example.com', 'z@example.com', 'ab@example.com',
    '张三丰@例子.中国', 'Ülrich.Groß@example.de', '"a@b"@example.org',
    '@example.com', 'zhangsan@', 'zhangsan', '@', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- Names: Chinese (compound surnames keep two characters from three on) and
-- Latin (the initial of each word), in characters.
SELECT v AS name, mask_name(v) AS masked
  FROM unnest(ARRAY[
    '张三丰', '张三', '张', '欧阳娜娜', '欧阳锋', '欧阳', '司马相如', '諸葛亮',
    '阿依古丽·买买提', '  张三丰  ',
    'John Smith', 'Jean-Luc Picard', 'O''Brien', 'J. R. R. Tolkien', 'Mary  Ann',
    'Ömer Faruk', 'Владимир Путин', 'J', 'J.', 'A B', '---', '***', '   ', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- Every compound surname keeps its two characters in a three-character
-- name; a two-character name and one starting with either character alone
-- keep one.
SELECT count(*) AS compound_surnames,
       count(*) FILTER (WHERE mask_name(s || '某') = s || '*') AS kept_both,
       count(*) FILTER (WHERE mask_name(s) = left(s, 1) || '*') AS two_chars_keep_one,
       count(*) FILTER (WHERE mask_name(left(s, 1) || '某' || right(s, 1)) = left(s, 1) || '**') AS split_keep_one
  FROM unnest(string_to_array('欧阳,司马,上官,诸葛,东方,皇甫,尉迟,公孙,慕容,长孙,宇文,司徒,令狐,夏侯,轩辕,端木,独孤,南宫,西门,百里,呼延,申屠,万俟,闻人,司空,澹台,公冶,太史,淳于,濮阳,拓跋,赫连,第五,鲜于,闾丘,宰父,巫马,公羊,公西,漆雕,壤驷,公良,夹谷,羊舌,微生,东郭,南门,东门,仉督,子车,颛孙,司寇,亓官,仲孙,太叔,歐陽,司馬,諸葛,東方,長孫,尉遲,公孫,軒轅,獨孤,南宮,西門,萬俟,聞人,澹臺,濮陽,鮮于,閭丘,東郭,南門,東門,顓孫,壤駟,巫馬', ',')) s;

-- Addresses: province, city and district kept, the rest a fixed "****".
SELECT v AS address, mask_address(v) AS masked
  FROM unnest(ARRAY[
    '北京市朝阳区建国路88号',
    '广东省深圳市南山区科技园南区8栋',
    '内蒙古自治区呼和浩特市新城区新华大街1号',
    '新疆维吾尔自治区伊犁哈萨克自治州伊宁市解放路',
    '湖北省恩施土家族苗族自治州恩施市舒家湾',
    '香港特别行政区中西区皇后大道中99号',
    '西藏自治区阿里地区噶尔县',
    '上海市浦东新区张江镇科苑路88号',
    '浙江省杭州市西湖区文三路100号',
    '北京市通州区新华大街',
    '山东省济南市市中区经十路',
    '黑龙江省哈尔滨市道里区中央大街',
    '江苏省昆山市周市镇',
    '江苏省苏州市苏州工业园区星湖街328号',
    '北京市朝阳区望京小区3号楼',
    '深圳市南山区科技园南区8栋',
    '台北市大安區忠孝東路四段1號',
    '北京市 朝阳区 建国路88号',
    '北京市朝阳区',
    '建国路88号', '某地', '某地方', '某个地方', '北',
    '1600 Amphitheatre Pkwy, Mountain View, CA 94043',
    'Apt 5, 1600 Amphitheatre Pkwy, Mountain View, CA 94043',
    'Flat 2, 10 Downing St, London SW1A 2AA',
    '221B Baker Street', ', London', '   ', ''
  ]) WITH ORDINALITY AS t(v, i) ORDER BY i;

-- NULL in, NULL out (every function is STRICT).
SELECT mask_phone(NULL) IS NULL AS phone, mask_cn_id(NULL) IS NULL AS id,
       mask_bank_card(NULL) IS NULL AS card, mask_email(NULL) IS NULL AS email,
       mask_name(NULL) IS NULL AS name, mask_address(NULL) IS NULL AS address,
       mask_date(NULL::date, 'year') IS NULL AS date,
       mask_date('1990-03-07'::date, NULL) IS NULL AS date_precision,
       partial(NULL, 1, '*', 1) IS NULL AS partial,
       partial('abc', 1, NULL, 1) IS NULL AS partial_pad;

-- Very long values: no error, nothing shown beyond what the rule allows.
SELECT length(mask_phone(v)) AS phone, right(mask_phone(v), 5) AS phone_tail,
       length(mask_bank_card(v)) AS card, length(mask_cn_id(v)) AS id,
       left(mask_cn_id(v), 2) AS id_head
  FROM (SELECT repeat('1', 1000000) AS v) s;
SELECT length(mask_name(v)) AS name, length(mask_email(v)) AS email,
       mask_address(v) AS address, length(partial(v, 2, '~', 2)) AS partial
  FROM (SELECT repeat('张三 Smith-@,', 100000) AS v) s;

-- Dates: generalised to the year or the month.
SELECT mask_date('1990-03-07'::date, 'year') AS year,
       mask_date('1990-03-07'::date, 'month') AS month,
       mask_date('1990-03-07'::date, 'Month') AS month_any_case,
       mask_date('infinity'::date, 'year') AS infinite;
SELECT mask_date('1990-03-07 13:45:12.5'::timestamp, 'year') AS year,
       mask_date('1990-03-07 13:45:12.5'::timestamp, 'month') AS month,
       mask_date('-infinity'::timestamp, 'month') AS infinite;
-- A timestamptz is truncated in the time zone given, whatever TimeZone is.
SET TimeZone = 'America/New_York';
SELECT mask_date('1990-01-01 00:30+08'::timestamptz, 'year', 'Asia/Shanghai')
           AT TIME ZONE 'Asia/Shanghai' AS shanghai_year,
       mask_date('1990-03-01 00:30+08'::timestamptz, 'month', 'Asia/Shanghai')
           AT TIME ZONE 'Asia/Shanghai' AS shanghai_month,
       mask_date('1990-01-01 00:30+08'::timestamptz, 'year', 'UTC')
           AT TIME ZONE 'UTC' AS utc_year;
RESET TimeZone;
SELECT pg_typeof(mask_date(current_date, 'year')) AS date,
       pg_typeof(mask_date(localtimestamp, 'year')) AS ts,
       pg_typeof(mask_date(now(), 'year', 'UTC')) AS tstz;

-- A bad precision is an error (once with its detail and hint).
\set VERBOSITY default
SELECT mask_date('1990-03-07'::date, 'day');
\set VERBOSITY terse
SELECT mask_date('1990-03-07'::timestamp, '');
SELECT mask_date(now(), 'year', 'Nowhere/Atlantis');
-- No zone, no guess: the session's TimeZone would make it unstable.
SELECT mask_date(now(), 'year');
-- The first days of time cannot go back to the start of their year.
SELECT mask_date('4714-11-24 BC'::date, 'year');

-- partial(): prefix, pad, suffix; at least one character always hidden.
SELECT v AS value, partial(v, 3, '****', 4) AS masked
  FROM unnest(ARRAY['13812345678', 'abcdefg', 'abc', 'ab', 'a', '张三丰先生', ''])
       WITH ORDINALITY AS t(v, i) ORDER BY i;
SELECT partial('abcdef', 10, '*', 0) AS prefix_only,
       partial('abcdef', 0, '*', 10) AS suffix_only,
       partial('abcdef', 2147483647, '#', 2147483647) AS both_huge,
       partial('abcdef', 2, '', 2) AS empty_pad,
       partial('abcdef', 0, '[hidden]', 0) AS pad_only,
       partial('', 0, '*', 0) AS empty;
SELECT partial('abc', -1, '*', 1);
SELECT partial('abc', 1, '*', -1);

-- pg_proc: all IMMUTABLE and STRICT; PARALLEL SAFE except the keyed ones
-- (their first call creates the pseudonym key); the text masks leakproof.
SELECT p.oid::regprocedure AS function, p.prorettype::regtype AS returns,
       p.provolatile AS volatile, p.proisstrict AS strict,
       p.proparallel AS parallel, p.proleakproof AS leakproof
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace
   AND (p.proname LIKE 'mask\_%' OR p.proname IN ('partial', 'pseudonym', 'noise'))
 ORDER BY p.proname, p.oid::regprocedure::text;

-- Every masking function returns the type it masks.
SELECT p.oid::regprocedure AS function
  FROM pg_proc p
 WHERE p.pronamespace = 'pii_guard'::regnamespace
   AND (p.proname LIKE 'mask\_%' OR p.proname IN ('partial', 'pseudonym', 'noise'))
   AND p.prorettype <> p.proargtypes[0];

-- The keyed functions are for pii_guard_admin (masking views reach them
-- through reveal()); the others are for everyone.
SET ROLE pii_guard_auditor;
SELECT mask_phone('13812345678') AS public_mask;
SELECT pseudonym('13812345678');
SELECT noise(100, 0.1);
RESET ROLE;

-- The pseudonym key is created on first use: not in a read-only transaction.
BEGIN READ ONLY;
SELECT pseudonym('13812345678');
ROLLBACK;

-- The keyed functions, in a transaction that is rolled back, so that the
-- pseudonym key created here does not show in the keys suite.
BEGIN;
CREATE TEMP TABLE people (id int, phone text, salary numeric(12, 2), age int,
                          balance bigint, score float8) ON COMMIT DROP;
INSERT INTO people
SELECT g, '138' || lpad(g::text, 8, '0'), g * 13.57, 18 + g % 60, g * 1000003, g / 7.0
  FROM generate_series(1, 2000) g;

-- Pseudonyms: 16 hex digits, the same for the same value on every call and
-- in every row, different for different values.
SELECT pseudonym('13812345678') ~ '^[0-9a-f]{16}$' AS hex16,
       pseudonym('13812345678') = pseudonym('13812345678') AS stable,
       pseudonym('13812345678') <> pseudonym('13812345679') AS differs,
       pseudonym('') ~ '^[0-9a-f]{16}$' AS empty_ok,
       pseudonym('张三丰') ~ '^[0-9a-f]{16}$' AS utf8_ok,
       pseudonym(repeat('x', 1000000)) ~ '^[0-9a-f]{16}$' AS long_ok;
SELECT count(DISTINCT pseudonym(phone)) AS distinct_tokens, count(*) AS rows
  FROM people;
SELECT count(DISTINCT pseudonym(p.phone)) AS tokens_for_one_value
  FROM people p CROSS JOIN generate_series(1, 50) g
 WHERE p.id = 42;
-- Not a hash anyone can compute without the key.
SELECT pseudonym('13812345678') <> left(encode(sha256('13812345678'), 'hex'), 16) AS keyed;

-- Noise: within ratio * |value| (rounded to the value's last digit, and at
-- least one unit of it), the same on every call (so averaging repeated
-- queries recovers nothing), the input's type and scale.
SELECT count(*) FILTER (WHERE abs(noise(salary, 0.1) - salary) > greatest(0.01, round(0.1 * abs(salary), 2))) AS numeric_out,
       count(*) FILTER (WHERE abs(noise(age, 0.2) - age) > greatest(1, round(0.2 * abs(age)))) AS int_out,
       count(*) FILTER (WHERE abs(noise(balance, 0.25) - balance) > greatest(1, round(0.25 * abs(balance)))) AS bigint_out,
       count(*) FILTER (WHERE abs(noise(score, 0.05) - score) > 0.05 * abs(score) * (1 + 1e-12)) AS float_out,
       count(*) FILTER (WHERE noise(salary, 0.1) <> salary) > 1900 AS numeric_moved,
       count(*) FILTER (WHERE noise(balance, 0.25) <> balance) > 1900 AS bigint_moved
  FROM people;
SELECT count(DISTINCT noise(p.salary, 0.1)) AS values_for_one_row,
       count(DISTINCT noise(p.age, 0.3)) AS ints_for_one_row
  FROM people p CROSS JOIN generate_series(1, 50) g
 WHERE p.id = 42;
-- Spread over both sides: the offsets are not all one sign.
SELECT count(*) FILTER (WHERE noise(salary, 0.1) > salary) > 800 AS some_up,
       count(*) FILTER (WHERE noise(salary, 0.1) < salary) > 800 AS some_down,
       abs(avg((noise(salary, 0.1) - salary) / salary)) < 0.01 AS centred
  FROM people;
-- The offset depends on the ratio too (else two ratios would solve for the value).
SELECT count(*) FILTER (WHERE (noise(salary, 0.1) - salary) / 0.1 =
                              (noise(salary, 0.2) - salary) / 0.2) < 20 AS ratio_keyed
  FROM people;
-- Every value moves, however small against 1 / ratio: integers by at
-- least 1, numerics by at least one unit of their last digit.
SELECT count(*) FILTER (WHERE noise(age, 0.001) = age) AS ints_unmoved,
       count(*) FILTER (WHERE abs(noise(age, 0.001) - age) <> 1) AS ints_not_by_one,
       count(*) FILTER (WHERE noise(id % 7, 0.1) = id % 7) AS small_ints_unmoved,
       count(*) FILTER (WHERE noise((id % 7)::bigint, 0.1) = id % 7) AS small_bigints_unmoved,
       count(*) FILTER (WHERE noise(salary, 0.0001) = salary) AS numerics_unmoved,
       count(*) FILTER (WHERE noise((id % 5)::numeric, 0.01) = id % 5) AS small_numerics_unmoved
  FROM people;
SELECT abs(noise(0, 1)) AS zero_int, abs(noise(0.00, 1)) AS zero_numeric, abs(noise(1, 0.01) - 1) AS one,
       abs(noise(0.05, 0.1) - 0.05) AS last_digit;
-- Near the ends of the range: clamped, never an error.
SELECT noise(2147483600, 0.5) BETWEEN 1073741800 AND 2147483647 AS int_clamped,
       noise(-2147483600, 0.5) BETWEEN -2147483648 AND -1073741800 AS int_clamped_negative,
       noise(9223372036854775000::bigint, 1) > 0 AS bigint_clamped,
       noise(-9223372036854775000::bigint, 1) < 0 AS bigint_clamped_negative,
       noise(1.7e308::float8, 1) <= 1.7976931348623157e308 AS float_clamped;
-- Trailing zeros: the same unrounded step at two scales, alike to within
-- rounding -- but where it is under half a unit, which moves 100 by one unit
-- in its direction (never 0) and 100.00 by less.
SELECT scale(noise(12345.67, 0.2)) AS scale_2, scale(noise(100.000, 0.5)) AS scale_3,
       (abs((noise(100.00, 0.2) - 100) - (noise(100::numeric, 0.2) - 100)) <= 0.5
        OR (abs(noise(100.00, 0.2) - 100) < 0.5 AND
            noise(100::numeric, 0.2) - 100 = sign(noise(100.00, 0.2) - 100))) AS trailing_zeros_alike,
       pg_typeof(noise(12345.67, 0.2)) AS numeric, pg_typeof(noise(5, 0.2)) AS int,
       pg_typeof(noise(5::bigint, 0.2)) AS bigint, pg_typeof(noise(5::float8, 0.2)) AS float;
SELECT noise(12345.67, 0) AS ratio_zero, noise(7, 0) AS int_ratio_zero,
       noise('NaN'::numeric, 0.5) AS nan, noise('Infinity'::numeric, 0.5) AS inf,
       noise('-Infinity'::float8, 0.5) AS float_inf, noise('NaN'::float8, 0.5) AS float_nan;
ROLLBACK;

-- Bad ratios (once with the detail), refused before any key is needed.
\set VERBOSITY default
SELECT noise(100, -0.1);
\set VERBOSITY terse
SELECT noise(100, 1.5);
SELECT noise(100.5, 'NaN');
SELECT noise(100::bigint, 'Infinity');
SELECT noise(NULL::numeric, 0.1) IS NULL AS null_value, noise(1.5, NULL) IS NULL AS null_ratio,
       pseudonym(NULL) IS NULL AS null_pseudonym;

RESET search_path;
RESET DateStyle;
