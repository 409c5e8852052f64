/*-------------------------------------------------------------------------
 *
 * detect.c
 *		Detectors: what kind of personal data a text value looks like, by
 *		its content -- the mask functions' siblings.  detect_kind(value)
 *		returns one of
 *
 *		cn_id		an 18-character resident ID: a known province code, a
 *					valid birth date, and the ISO 7064 MOD 11-2 check digit
 *		mobile		a mainland mobile number: 11 digits, 1[3-9]..., with or
 *					without +86 / 86 and separators
 *		bank_card	13-19 digits with a card network's prefix (UnionPay 62,
 *					issuers' 60, Visa, Mastercard, Amex, JCB, Discover) and a valid Luhn
 *					check digit
 *		email		local@domain.tld
 *		landline	0 + a 2-3 digit area code + a 7-8 digit number
 *		passport	a mainland passport number (E/G + 8 digits, E + letter +
 *					7 digits, D/S/P(E) + 7 digits)
 *		ipv4		four dotted decimal octets
 *		plate		a vehicle plate: a province character, a letter, 5
 *					characters (6 for new-energy plates)
 *		cn_name		2-4 Chinese characters beginning with a common surname
 *		address		Chinese text naming a province or city and a street,
 *					number, district or county
 *
 *		or NULL.  Decoys stay NULL: an order number shaped like a card
 *		without its check digit or network prefix, an ID number with a
 *		wrong check digit or an impossible birth date, a 12-digit "mobile".
 *
 * Like the masks, a detector raises no error for any input and reads at
 * most the value's bytes; Chinese characters are recognised in a UTF8
 * database only (elsewhere cn_name, plate and address are never found --
 * the column-name rules of discovery still apply there).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "pii_guard.h"

/* Values longer than this are none of the kinds (an address is the longest). */
#define DETECT_MAX_BYTES	512
#define DETECT_MAX_CHARS	128

/* A value as code points (non-UTF8 databases: ASCII only, the rest 0). */
typedef struct DetectValue
{
	pg_wchar	c[DETECT_MAX_CHARS];
	int			n;
} DetectValue;

static bool
detect_decode(const char *s, int len, DetectValue *v)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	const char *p = s;
	const char *end = s + len;

	v->n = 0;
	while (p < end)
	{
		int			l = utf8 ? pg_utf_mblen((const unsigned char *) p) : pg_encoding_mblen(GetDatabaseEncoding(), p);
		pg_wchar	c;

		if (l <= 0 || l > end - p || v->n == DETECT_MAX_CHARS)
			return false;
		if (l == 1)
			c = (unsigned char) *p;
		else if (utf8 && pg_utf8_islegal((const unsigned char *) p, l))
			c = utf8_to_unicode((const unsigned char *) p);
		else
			c = 0;				/* not recognised */
		v->c[v->n++] = c;
		p += l;
	}
	/* trim spaces */
	while (v->n > 0 && (v->c[v->n - 1] == ' ' || v->c[v->n - 1] == '\t'))
		v->n--;
	{
		int			k = 0;

		while (k < v->n && (v->c[k] == ' ' || v->c[k] == '\t'))
			k++;
		if (k > 0)
		{
			memmove(v->c, v->c + k, sizeof(pg_wchar) * (v->n - k));
			v->n -= k;
		}
	}
	return v->n > 0;
}

static inline bool
is_digit(pg_wchar c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_upper(pg_wchar c)
{
	return c >= 'A' && c <= 'Z';
}

static inline bool
is_cjk(pg_wchar c)
{
	return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF);
}

/*
 * The digits of v, dropping the separators ' ' and '-' between groups of
 * digits (one at a time, at most DETECT_MAX_SEPARATORS) and a leading '+'
 * when plus is true; false if anything else is there or more than max
 * digits.
 */
#define DETECT_MAX_SEPARATORS	5

static bool
detect_digits(const DetectValue *v, bool plus, char *d, int *n, int max)
{
	int			seps = 0;

	*n = 0;
	for (int i = 0; i < v->n; i++)
	{
		pg_wchar	c = v->c[i];

		if (is_digit(c))
		{
			if (*n == max)
				return false;
			d[(*n)++] = (char) c;
		}
		else if (!(c == '+' && plus && i == 0) &&
				 !((c == ' ' || c == '-') && i > 0 && is_digit(v->c[i - 1]) &&
				   ++seps <= DETECT_MAX_SEPARATORS))
			return false;
	}
	return *n > 0;
}

/* Province-level codes that begin a resident ID. */
bool
detect_cn_province(int code)
{
	static const int codes[] = {
		11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37,
		41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65,
		71, 81, 82, 83, 91,
	};

	for (int i = 0; i < (int) lengthof(codes); i++)
		if (codes[i] == code)
			return true;
	return false;
}

/* The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits. */
char
detect_cn_id_check(const char *d17)
{
	static const int weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
	int			sum = 0;

	for (int i = 0; i < 17; i++)
		sum += (d17[i] - '0') * weights[i];
	return "10X98765432"[sum % 11];
}

/* Is y-m-d a date of the Gregorian calendar? */
bool
detect_valid_date(int year, int month, int day)
{
	static const int days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (month < 1 || month > 12 || day < 1 || day > days[month - 1])
		return false;
	return month != 2 || day <= 28 ||
		(year % 4 == 0 && (year % 100 != 0 || year % 400 == 0));
}

static bool
detect_cn_id(const DetectValue *v)
{
	char		d[17];
	int			year;
	int			month;
	int			day;
	pg_wchar	last;

	if (v->n != 18)
		return false;
	for (int i = 0; i < 17; i++)
	{
		if (!is_digit(v->c[i]))
			return false;
		d[i] = (char) v->c[i];
	}
	last = v->c[17] == 'x' ? 'X' : v->c[17];
	if (last != (pg_wchar) detect_cn_id_check(d))
		return false;
	if (!detect_cn_province((d[0] - '0') * 10 + (d[1] - '0')))
		return false;
	year = 0;
	for (int i = 6; i < 10; i++)
		year = year * 10 + (d[i] - '0');
	month = (d[10] - '0') * 10 + (d[11] - '0');
	day = (d[12] - '0') * 10 + (d[13] - '0');
	return year >= 1880 && year <= 2100 && detect_valid_date(year, month, day);
}

static bool
detect_mobile(const DetectValue *v)
{
	char		d[16];
	int			n;
	const char *m;

	if (!detect_digits(v, true, d, &n, 15))
		return false;
	m = d;
	if (n == 13 && d[0] == '8' && d[1] == '6')
	{
		m += 2;
		n -= 2;
	}
	else if (v->c[0] == '+')
		return false;
	return n == 11 && m[0] == '1' && m[1] >= '3' && m[1] <= '9';
}

/*
 * The Luhn sum of the n digits d, the last of them counted as the check
 * digit (0 when they carry a valid check digit).
 */
static int
detect_luhn_sum(const char *d, int n)
{
	int			sum = 0;

	for (int i = 0; i < n; i++)
	{
		int			x = d[n - 1 - i] - '0';

		if (i % 2 == 1)
		{
			x *= 2;
			if (x > 9)
				x -= 9;
		}
		sum += x;
	}
	return sum % 10;
}

static bool
detect_luhn(const char *d, int n)
{
	return detect_luhn_sum(d, n) == 0;
}

/* The check digit that, put at d[n - 1], makes the n digits d Luhn-valid. */
char
detect_luhn_check(char *d, int n)
{
	d[n - 1] = '0';
	return (char) ('0' + (10 - detect_luhn_sum(d, n)) % 10);
}

static bool
detect_bank_card(const DetectValue *v)
{
	char		d[20];
	int			n;
	int			p2;
	int			p4;

	if (!detect_digits(v, false, d, &n, 19) || n < 13 || v->c[0] == '+')
		return false;
	p2 = (d[0] - '0') * 10 + (d[1] - '0');
	p4 = p2 * 100 + (d[2] - '0') * 10 + (d[3] - '0');
	if (!(p2 == 62 ||				/* UnionPay */
		  (p2 == 60 && n >= 16) ||	/* issuers' own BINs (601382 Bank of China), Discover 6011 */
		  (p4 == 9558 && n == 19) ||	/* ICBC's own, before UnionPay */
		  (d[0] == '4' && (n == 13 || n == 16 || n == 19)) ||	/* Visa */
		  (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n == 16) ||	/* Mastercard */
		  ((p2 == 34 || p2 == 37) && n == 15) ||	/* Amex */
		  (p2 == 35 && n >= 16) ||	/* JCB */
		  (p2 == 65 && n >= 16)))	/* Discover */
		return false;
	return detect_luhn(d, n);
}

static bool
detect_email(const DetectValue *v)
{
	int			at = -1;
	int			lastdot = -1;

	for (int i = 0; i < v->n; i++)
	{
		pg_wchar	c = v->c[i];

		if (c == '@')
		{
			if (at >= 0)
				return false;
			at = i;
		}
		else if (c == '.')
		{
			if (i == 0 || v->c[i - 1] == '.' || v->c[i - 1] == '@')
				return false;
			if (at >= 0)
				lastdot = i;
		}
		else if (!(is_digit(c) || is_upper(c) || (c >= 'a' && c <= 'z') ||
				   (at < 0 && c > 0 && c < 128 && strchr("!#$%&'*+/=?^_`{|}~-", (int) c) != NULL) ||
				   (at >= 0 && c == '-')))
			return false;
	}
	if (at < 1 || lastdot < at + 2 || v->n - lastdot - 1 < 2)
		return false;
	for (int i = lastdot + 1; i < v->n; i++)
		if (!((v->c[i] >= 'a' && v->c[i] <= 'z') || is_upper(v->c[i])))
			return false;
	return true;
}

static bool
detect_landline_plain(const DetectValue *v)
{
	char		d[16];
	int			n;

	if (v->n == 0 || v->c[0] != '0' || !detect_digits(v, false, d, &n, 12))
		return false;
	/* 0 + area code (2-3 digits) + 7-8 digits; not a mobile's shape */
	return n >= 10 && n <= 12 && d[1] != '0';
}

/*
 * A landline, also written with its area code in parentheses -- (010)
 * 1234-5678 -- and with an extension: -123, 转123, ext 123, x123 (1-5
 * digits).
 */
static bool
detect_landline(const DetectValue *v)
{
	DetectValue w;
	int			digits = 0;
	int			mark;
	int			k = 0;

	/* an extension: the number before it, blanks trimmed, is a landline */
	while (digits < v->n && digits <= 5 && is_digit(v->c[v->n - 1 - digits]))
		digits++;
	mark = v->n - 1 - digits;
	if (digits >= 1 && digits <= 5 && mark > 0)
	{
		pg_wchar	c = v->c[mark];

		if (c == 0x8F6C || c == 'x' || c == 'X' || (c == '-' && v->c[mark - 1] != ' '))
			k = mark;
		else if ((c == ' ' || c == '.') && mark >= 3 &&
				 (v->c[mark - 1] == 't' || v->c[mark - 1] == 'T') &&
				 (v->c[mark - 2] == 'x' || v->c[mark - 2] == 'X') &&
				 (v->c[mark - 3] == 'e' || v->c[mark - 3] == 'E'))
			k = mark - 3;
		while (k > 0 && v->c[k - 1] == ' ')
			k--;
		if (k >= 10)
		{
			w.n = k;
			memcpy(w.c, v->c, sizeof(pg_wchar) * k);
			if (detect_landline(&w))
				return true;
		}
	}
	/* (area code) number: as area code-number */
	if (v->n > 6 && v->c[0] == '(')
	{
		int			close = 0;

		for (int i = 1; i < v->n && i <= 5 && close == 0; i++)
			if (v->c[i] == ')')
				close = i;
		if (close >= 4)
		{
			int			i = close + 1;

			w.n = 0;
			for (int j = 1; j < close; j++)
				w.c[w.n++] = v->c[j];
			if (i < v->n && (v->c[i] == ' ' || v->c[i] == '-'))
				i++;
			if (i < v->n)
				w.c[w.n++] = '-';
			for (; i < v->n; i++)
				w.c[w.n++] = v->c[i];
			return detect_landline_plain(&w);
		}
	}
	return detect_landline_plain(v);
}

static bool
detect_passport(const DetectValue *v)
{
	int			digits = 0;

	for (int i = 1; i < v->n; i++)
		digits += is_digit(v->c[i]) ? 1 : 0;
	if (v->n == 9 && (v->c[0] == 'E' || v->c[0] == 'G') && digits == 8)
		return true;
	if (v->n == 9 && v->c[0] == 'E' && is_upper(v->c[1]) && v->c[1] != 'I' &&
		v->c[1] != 'O' && digits == 7)
		return true;
	if (v->n == 8 && (v->c[0] == 'D' || v->c[0] == 'S' || v->c[0] == 'P') && digits == 7)
		return true;
	return v->n == 9 && (v->c[0] == 'D' || v->c[0] == 'S' || v->c[0] == 'P') &&
		v->c[1] == 'E' && digits == 7;
}

static bool
detect_ipv4(const DetectValue *v)
{
	int			octets = 0;
	int			i = 0;

	while (i < v->n)
	{
		int			val = 0;
		int			len = 0;

		while (i < v->n && is_digit(v->c[i]) && len < 4)
		{
			val = val * 10 + (int) (v->c[i] - '0');
			i++;
			len++;
		}
		if (len == 0 || len > 3 || val > 255 || (len > 1 && v->c[i - len] == '0'))
			return false;
		octets++;
		if (i == v->n)
			break;
		if (v->c[i] != '.' || octets == 4)
			return false;
		i++;
		if (i == v->n)
			return false;
	}
	return octets == 4;
}

/* Does the UTF-8 list hold code point c? */
static bool
detect_in_list(const char *list, pg_wchar c)
{
	const unsigned char *p = (const unsigned char *) list;

	while (*p)
	{
		if (utf8_to_unicode(p) == c)
			return true;
		p += pg_utf_mblen(p);
	}
	return false;
}

static const char plate_provinces[] =
"京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼";

static bool
detect_plate(const DetectValue *v)
{
	int			rest;

	if (v->n < 7 || v->n > 9 || !is_cjk(v->c[0]) || !detect_in_list(plate_provinces, v->c[0]) ||
		!is_upper(v->c[1]))
		return false;
	rest = 0;
	for (int i = 2; i < v->n; i++)
	{
		pg_wchar	c = v->c[i];

		if (c == '-' || c == 0x00B7 || c == ' ')	/* separators */
			continue;
		if (!(is_digit(c) || (is_upper(c) && c != 'I' && c != 'O')))
			return false;
		rest++;
	}
	return rest == 5 || rest == 6;
}

/* Common one-character surnames (those of about nine in ten people). */
const char detect_surnames[] =
"王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
"沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔"
"向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌"
"毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦"
"麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩"
"明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强"
"帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄邸雍辜羊乌母裘亓修"
"邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯元束檀衣信展阴昝智幸奉植衡"
"富尧闭由";

/*
 * Characters that end the words of a CRM (places, departments, statuses,
 * products, colours, sizes) and no given name: 华东区, 销售部, 金卡会员,
 * 蓝牙耳机, 白色, 大号.
 */
static const char not_name_ends[] =
"区县市省州镇乡村路街巷号楼部组司店厂局处室院校馆所站队会员色器机杯箱宝账款票单件品务询货诉更线门";

/* Compound surnames whose first character is no surname of its own. */
static const char *const compound_surnames[] = {
	"上官", "司马", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
	"司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延",
	"申屠", "太史", "闻人", "澹台", "公冶", "宗政", "濮阳", "淳于", "单于", "钟离",
	"万俟", "拓跋", "完颜", "赫连", "第五",
};

/* Do the first two characters of v spell one of the pairs? */
static bool
detect_starts_with_pair(const DetectValue *v, const char *const *pairs, int npairs)
{
	for (int i = 0; i < npairs; i++)
	{
		const unsigned char *p = (const unsigned char *) pairs[i];

		if (utf8_to_unicode(p) == v->c[0] &&
			utf8_to_unicode(p + pg_utf_mblen(p)) == v->c[1])
			return true;
	}
	return false;
}

/* Two-character cities that begin with a surname. */
static const char *const surname_cities[] = {
	"成都", "武汉", "沈阳", "宁波", "南京", "南宁", "南昌", "南通", "贵阳", "江阴",
	"常熟", "温岭", "黄山", "金华", "柳州", "余姚",
};

static bool
detect_cn_name(const DetectValue *v)
{
	if (v->n < 2 || v->n > 4)
		return false;
	for (int i = 0; i < v->n; i++)
		if (!is_cjk(v->c[i]))
			return false;
	if (detect_in_list(not_name_ends, v->c[v->n - 1]))
		return false;
	if (v->n >= 3 && detect_starts_with_pair(v, compound_surnames, lengthof(compound_surnames)))
		return true;
	if (!detect_in_list(detect_surnames, v->c[0]))
		return false;
	return v->n > 2 || !detect_starts_with_pair(v, surname_cities, lengthof(surname_cities));
}

static bool
detect_address(const DetectValue *v)
{
	static const char region[] = "省市州盟旗";
	static const char place[] = "区县镇乡村街路道巷弄号楼栋室园里";
	int			cjk = 0;
	bool		has_region = false;
	int			places = 0;

	if (v->n < 6)
		return false;
	for (int i = 0; i < v->n; i++)
	{
		pg_wchar	c = v->c[i];

		if (!is_cjk(c))
			continue;
		cjk++;
		if (i > 0 && detect_in_list(region, c))
			has_region = true;
		else if (i > 0 && detect_in_list(place, c))
			places++;
	}
	/* a province or city and a place; or district, street and number */
	return cjk * 2 >= v->n && ((has_region && places >= 1) || places >= 3);
}

/* The kind of personal data value looks like, or NULL. */
const char *
detect_kind(const char *s, int len)
{
	DetectValue v;

	if (len <= 0 || len > DETECT_MAX_BYTES || !detect_decode(s, len, &v))
		return NULL;
	if (detect_cn_id(&v))
		return "cn_id";
	if (detect_mobile(&v))
		return "mobile";
	if (detect_bank_card(&v))
		return "bank_card";
	if (detect_email(&v))
		return "email";
	if (detect_landline(&v))
		return "landline";
	if (detect_passport(&v))
		return "passport";
	if (detect_ipv4(&v))
		return "ipv4";
	if (GetDatabaseEncoding() != PG_UTF8)
		return NULL;
	if (detect_plate(&v))
		return "plate";
	if (detect_cn_name(&v))
		return "cn_name";
	if (detect_address(&v))
		return "address";
	return NULL;
}

PG_FUNCTION_INFO_V1(pii_guard_detect_kind);

/* SQL function: detect_kind(value text) returns text */
Datum
pii_guard_detect_kind(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *kind = detect_kind(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));

	if (kind == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(kind));
}
