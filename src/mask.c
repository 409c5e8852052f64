/*-------------------------------------------------------------------------
 *
 * mask.c
 *		The masking function catalogue: phone numbers, resident ID numbers,
 *		bank cards, e-mail addresses, names, addresses, dates, partial(),
 *		keyed pseudonyms and deterministic noise.
 *
 * Every function returns the type of the value it masks (text -> text,
 * date -> date, numeric -> numeric ...): a masking view's column has one
 * type for every role, whether reveal() (policy.c) hands it the value, its
 * mask or NULL.  Extra arguments (a precision, a ratio) are constants stored
 * with the column rule.
 *
 * Characters, not bytes.  Values are read one character at a time with
 * pg_encoding_mblen() for the database encoding, clamped to the bytes that
 * remain, so that not even a malformed value can be overrun or raise an
 * error.  A character is classified by its Unicode code point, which is known
 * for ASCII in every server encoding and for every character in a UTF8
 * database.  In other encodings a non-ASCII character is MASK_CP_OTHER: it
 * is counted and masked like any other, but never recognised as a CJK
 * ideograph or a full-width digit, so Chinese names fall back to the Latin
 * rule (the first character), Chinese addresses to the comma rule, and so
 * on -- less is shown, never more.
 *
 * What a mask shows.  Each text function recognises the formats users
 * expect and normalises them: separators are dropped from phone, ID and card
 * numbers, so "138 1234 5678" and "138-1234-5678" mask alike.  Each hidden
 * character becomes one '*', except in addresses, where a fixed "****" does
 * not tell how long the hidden part was.  A value a function does not
 * recognise gets the generic mask: one '*' per character, keeping the first
 * character only when there are at least MASK_GENERIC_KEEP_MIN.  No function
 * shows a short value whole.
 *
 * Leakproofness.  The text masks (mask_phone ... mask_address) raise no
 * error for any input: they read and copy bytes and allocate at most the
 * input's size plus a constant, as a huge allocation, so that a 1 GB value
 * takes the same path as a short one.  They are declared LEAKPROOF, so the
 * planner may evaluate them ahead of a security barrier's own conditions.
 * mask_date() and partial() reject bad parameters (and out-of-range
 * results), noise() rejects a bad ratio (and clamps its result to the
 * type's range), and pseudonym() and noise() need the master key, so those
 * are not leakproof.
 *
 * Keyed functions.  pseudonym() and noise() are HMAC-SHA256 under the
 * pseudonym data key (keys.c), domain-separated by the first byte hashed:
 * 'p' for pseudonyms, 'n' for noise ('t', 'b' and 'f' are crypto.c's).  The
 * same input gives the same output on every call, so repeating a query and
 * averaging recovers nothing, and without the key nobody can compute or
 * invert them.  Whoever may call them can still test guesses (pseudonymise
 * every phone number and compare), so the install script revokes EXECUTE on
 * them from PUBLIC; masking views reach them through reveal(), which needs
 * no privilege on the mask function.  They are declared IMMUTABLE, as
 * masking needs; that holds while the pseudonym key is not rotated, so do
 * not build indexes on them.  The key is created lazily by the first call
 * (a row in pii_guard.data_keys), which must therefore run in a read-write
 * transaction (keys.c refuses otherwise, with a hint) and not in a parallel
 * worker (where the server refuses the write): they are PARALLEL
 * RESTRICTED.  Keyed on the value alone, equal values get equal outputs, in
 * every row and table: that is what makes a pseudonym joinable, and what
 * keeps averaging repeated noisy reads from converging on the value.
 *
 * Noise moves every value: the step is rounded to the value's resolution
 * (1 for integers, the last digit for numerics) and is at least one unit,
 * so a value small against 1 / ratio does not come back unchanged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "common/int.h"
#include "common/shortest_dec.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

/* The code point of a non-ASCII character of unknown class (not Unicode). */
#define MASK_CP_OTHER			((pg_wchar) 0x110000)

/* The generic mask keeps the first character of values this long. */
#define MASK_GENERIC_KEEP_MIN	6

/* The longest international number, country code included (E.164). */
#define MASK_E164_MAX_DIGITS	15

/* Address levels are looked for among the first ADDR_SCAN_MAX characters. */
#define ADDR_SCAN_MAX			64
#define ADDR_LEVEL_MAX			16	/* longest level name, with its suffix */
#define ADDR_STARS				"****"

/* HMAC domains (crypto.c uses 't', 'b' and 'f' under other keys). */
#define MASK_DOMAIN_PSEUDONYM	'p'
#define MASK_DOMAIN_NOISE		'n'
#define PSEUDONYM_BYTES			8	/* 64 bits, shown as 16 hex digits */

/* The longest text value a function may return. */
#define MASK_MAX_TEXT			(MaxAllocSize - VARHDRSZ)

/* A value read one character at a time. */
typedef struct MaskReader
{
	const char *p;				/* next unread byte */
	const char *end;
	int			encoding;
	bool		utf8;
	const char *chr;			/* the character last read */
	int			chrlen;
} MaskReader;

/* A text result being written; its size is bounded in advance. */
typedef struct MaskWriter
{
	text	   *result;
	char	   *p;
#ifdef USE_ASSERT_CHECKING
	char	   *end;
#endif
} MaskWriter;

/*
 * Compound (two-character) surnames, as code point pairs: the list in common
 * use, in simplified and traditional script.  Left out on purpose are those
 * whose first character is itself a common one-character surname (钟离,
 * 单于, 宗政, 左丘, 梁丘, 段干, 乐正, 谷梁): keeping two characters of a
 * three-character name would show part of the given name when the surname
 * is really the single character.
 */
static const pg_wchar compound_surnames[][2] = {
	{0x6B27, 0x9633},			/* 欧阳 */
	{0x53F8, 0x9A6C},			/* 司马 */
	{0x4E0A, 0x5B98},			/* 上官 */
	{0x8BF8, 0x845B},			/* 诸葛 */
	{0x4E1C, 0x65B9},			/* 东方 */
	{0x7687, 0x752B},			/* 皇甫 */
	{0x5C09, 0x8FDF},			/* 尉迟 */
	{0x516C, 0x5B59},			/* 公孙 */
	{0x6155, 0x5BB9},			/* 慕容 */
	{0x957F, 0x5B59},			/* 长孙 */
	{0x5B87, 0x6587},			/* 宇文 */
	{0x53F8, 0x5F92},			/* 司徒 */
	{0x4EE4, 0x72D0},			/* 令狐 */
	{0x590F, 0x4FAF},			/* 夏侯 */
	{0x8F69, 0x8F95},			/* 轩辕 */
	{0x7AEF, 0x6728},			/* 端木 */
	{0x72EC, 0x5B64},			/* 独孤 */
	{0x5357, 0x5BAB},			/* 南宫 */
	{0x897F, 0x95E8},			/* 西门 */
	{0x767E, 0x91CC},			/* 百里 */
	{0x547C, 0x5EF6},			/* 呼延 */
	{0x7533, 0x5C60},			/* 申屠 */
	{0x4E07, 0x4FDF},			/* 万俟 */
	{0x95FB, 0x4EBA},			/* 闻人 */
	{0x53F8, 0x7A7A},			/* 司空 */
	{0x6FB9, 0x53F0},			/* 澹台 */
	{0x516C, 0x51B6},			/* 公冶 */
	{0x592A, 0x53F2},			/* 太史 */
	{0x6DF3, 0x4E8E},			/* 淳于 */
	{0x6FEE, 0x9633},			/* 濮阳 */
	{0x62D3, 0x8DCB},			/* 拓跋 */
	{0x8D6B, 0x8FDE},			/* 赫连 */
	{0x7B2C, 0x4E94},			/* 第五 */
	{0x9C9C, 0x4E8E},			/* 鲜于 */
	{0x95FE, 0x4E18},			/* 闾丘 */
	{0x5BB0, 0x7236},			/* 宰父 */
	{0x5DEB, 0x9A6C},			/* 巫马 */
	{0x516C, 0x7F8A},			/* 公羊 */
	{0x516C, 0x897F},			/* 公西 */
	{0x6F06, 0x96D5},			/* 漆雕 */
	{0x58E4, 0x9A77},			/* 壤驷 */
	{0x516C, 0x826F},			/* 公良 */
	{0x5939, 0x8C37},			/* 夹谷 */
	{0x7F8A, 0x820C},			/* 羊舌 */
	{0x5FAE, 0x751F},			/* 微生 */
	{0x4E1C, 0x90ED},			/* 东郭 */
	{0x5357, 0x95E8},			/* 南门 */
	{0x4E1C, 0x95E8},			/* 东门 */
	{0x4EC9, 0x7763},			/* 仉督 */
	{0x5B50, 0x8F66},			/* 子车 */
	{0x989B, 0x5B59},			/* 颛孙 */
	{0x53F8, 0x5BC7},			/* 司寇 */
	{0x4E93, 0x5B98},			/* 亓官 */
	{0x4EF2, 0x5B59},			/* 仲孙 */
	{0x592A, 0x53D4},			/* 太叔 */
	{0x6B50, 0x967D},			/* 歐陽 */
	{0x53F8, 0x99AC},			/* 司馬 */
	{0x8AF8, 0x845B},			/* 諸葛 */
	{0x6771, 0x65B9},			/* 東方 */
	{0x9577, 0x5B6B},			/* 長孫 */
	{0x5C09, 0x9072},			/* 尉遲 */
	{0x516C, 0x5B6B},			/* 公孫 */
	{0x8ED2, 0x8F45},			/* 軒轅 */
	{0x7368, 0x5B64},			/* 獨孤 */
	{0x5357, 0x5BAE},			/* 南宮 */
	{0x897F, 0x9580},			/* 西門 */
	{0x842C, 0x4FDF},			/* 萬俟 */
	{0x805E, 0x4EBA},			/* 聞人 */
	{0x6FB9, 0x81FA},			/* 澹臺 */
	{0x6FEE, 0x967D},			/* 濮陽 */
	{0x9BAE, 0x4E8E},			/* 鮮于 */
	{0x95AD, 0x4E18},			/* 閭丘 */
	{0x6771, 0x90ED},			/* 東郭 */
	{0x5357, 0x9580},			/* 南門 */
	{0x6771, 0x9580},			/* 東門 */
	{0x9853, 0x5B6B},			/* 顓孫 */
	{0x58E4, 0x99DF},			/* 壤駟 */
	{0x5DEB, 0x99AC},			/* 巫馬 */
};

/* Characters of Chinese addresses (simplified and traditional). */
#define CP_SHENG	0x7701		/* 省 province */
#define CP_SHI		0x5E02		/* 市 city */
#define CP_QU		0x533A		/* 区 district */
#define CP_QU_T		0x5340		/* 區 */
#define CP_XIAN		0x53BF		/* 县 county */
#define CP_XIAN_T	0x7E23		/* 縣 */
#define CP_QI		0x65D7		/* 旗 banner */
#define CP_MENG		0x76DF		/* 盟 league */
#define CP_ZHOU		0x5DDE		/* 州 prefecture */
#define CP_ZI		0x81EA		/* 自 (自治区 autonomous region) */
#define CP_ZHI		0x6CBB		/* 治 */
#define CP_XING		0x884C		/* 行 (特别行政区 special administrative region) */
#define CP_ZHENG	0x653F		/* 政 */
#define CP_DI		0x5730		/* 地 (地区 prefecture) */

/* Street-level markers: everything from a street on is hidden. */
static const pg_wchar street_markers[] = {
	0x8DEF,						/* 路 road */
	0x8857,						/* 街 street */
	0x9053,						/* 道 avenue; 街道 subdistrict */
	0x5DF7,						/* 巷 lane */
	0x5F04,						/* 弄 alley */
	0x53F7, 0x865F,				/* 号 號 number */
	0x6751,						/* 村 village */
	0x9547, 0x93AE,				/* 镇 鎮 town */
	0x4E61, 0x9109,				/* 乡 鄉 township */
	0x5C6F,						/* 屯 hamlet */
	0x7EC4, 0x7D44,				/* 组 組 village group */
	0x680B, 0x68DF, 0x5E62,		/* 栋 棟 幢 building */
	0x697C, 0x6A13,				/* 楼 樓 floor, building */
	0x5C42, 0x5C64,				/* 层 層 floor */
	0x5BA4,						/* 室 room */
	0x5EA7,						/* 座 block */
	0x82D1,						/* 苑 residential estate */
	0x56ED, 0x5712,				/* 园 園 park, estate */
};

/*
 * Characters that make a following 区 a place within a district, not a
 * district: 小区 (housing estate), 社区 (community), 校区 (campus), 厂区
 * (works), 景区 (scenic area).
 */
static const pg_wchar sub_district_prefixes[] = {
	0x5C0F, 0x793E, 0x6821, 0x5382, 0x5EE0, 0x666F,
};

/*
 * Two-digit ITU country codes; codes beginning with 1 or 7 have one digit,
 * all others three.
 */
static const bool two_digit_country_code[100] = {
	[20] = true, [27] = true,
	[30] = true, [31] = true, [32] = true, [33] = true, [34] = true,
	[36] = true, [39] = true, [40] = true, [41] = true,
	[43] = true, [44] = true, [45] = true, [46] = true, [47] = true,
	[48] = true, [49] = true,
	[51] = true, [52] = true, [53] = true, [54] = true, [55] = true,
	[56] = true, [57] = true, [58] = true,
	[60] = true, [61] = true, [62] = true, [63] = true, [64] = true,
	[65] = true, [66] = true,
	[81] = true, [82] = true, [84] = true, [86] = true,
	[90] = true, [91] = true, [92] = true, [93] = true, [94] = true,
	[95] = true, [98] = true,
};

/* ----------------------------------------------------------------------
 * Reading characters and writing results
 * ----------------------------------------------------------------------
 */

static void
mask_reader_init(MaskReader *r, const char *s, Size len)
{
	r->p = s;
	r->end = s + len;
	r->encoding = GetDatabaseEncoding();
	r->utf8 = (r->encoding == PG_UTF8);
	r->chr = s;
	r->chrlen = 0;
}

static inline bool
mask_more(const MaskReader *r)
{
	return r->p < r->end;
}

/* mask_next for a character of more than one byte: the slow path. */
static pg_noinline pg_wchar
mask_next_mb(MaskReader *r)
{
	const unsigned char *p = (const unsigned char *) r->p;
	int			remain = r->end - r->p;
	int			len;
	pg_wchar	c;

	len = pg_encoding_mblen(r->encoding, (const char *) p);

	/*
	 * Malformed: take the rest as one character.  Its code point is
	 * unknown: pg_utf8_islegal() trusts the length it is given, and would
	 * pass a lead byte cut short, which utf8_to_unicode() then reads past.
	 */
	if (len < 1 || len > remain)
	{
		len = remain;
		c = MASK_CP_OTHER;
	}
	else if (r->utf8 && pg_utf8_islegal(p, len))
		c = utf8_to_unicode(p);
	else
		c = MASK_CP_OTHER;
	r->chr = r->p;
	r->chrlen = len;
	r->p += len;
	return c;
}

/*
 * Read the next character (the caller checked mask_more) and return its
 * code point, or MASK_CP_OTHER where that is unknown.  ASCII, the most
 * common case (names, e-mail addresses, digits), is read inline.
 */
static inline pg_wchar
mask_next(MaskReader *r)
{
	unsigned char c = (unsigned char) *r->p;

	if (likely(c < 0x80))
	{
		r->chr = r->p;
		r->chrlen = 1;
		r->p++;
		return c;
	}

	/*
	 * UTF-8 of two or three bytes (the Latin, Greek, Cyrillic and CJK
	 * characters of names and addresses), well-formed by the rules of
	 * pg_utf8_islegal(): no overlong form, no surrogate.  Anything else
	 * takes the slow path.
	 */
	if (likely(r->utf8))
	{
		const unsigned char *p = (const unsigned char *) r->p;
		Size		remain = r->end - r->p;

		if (c >= 0xC2 && c <= 0xDF && remain >= 2 && (p[1] & 0xC0) == 0x80)
		{
			r->chr = r->p;
			r->chrlen = 2;
			r->p += 2;
			return ((pg_wchar) (c & 0x1F) << 6) | (p[1] & 0x3F);
		}
		if (c >= 0xE0 && c <= 0xEF && remain >= 3 &&
			p[1] >= (c == 0xE0 ? 0xA0 : 0x80) && p[1] <= (c == 0xED ? 0x9F : 0xBF) &&
			(p[2] & 0xC0) == 0x80)
		{
			r->chr = r->p;
			r->chrlen = 3;
			r->p += 3;
			return ((pg_wchar) (c & 0x0F) << 12) | ((pg_wchar) (p[1] & 0x3F) << 6) |
				(p[2] & 0x3F);
		}
	}
	return mask_next_mb(r);
}

/* The number of characters in s. */
static int64
mask_count_chars(const char *s, Size len)
{
	MaskReader	r;
	int64		n = 0;
	Size		i;

	/* Most values are ASCII: one byte, one character. */
	for (i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
			break;
	if (i == len)
		return (int64) len;
	mask_reader_init(&r, s + i, len - i);
	while (mask_more(&r))
	{
		mask_next(&r);
		n++;
	}
	return (int64) i + n;
}

/* Start a result of at most maxlen bytes. */
static void
mask_writer_init(MaskWriter *w, Size maxlen)
{
	Assert(maxlen <= MASK_MAX_TEXT);
	w->result = (text *) MemoryContextAllocHuge(CurrentMemoryContext,
												VARHDRSZ + maxlen);
	w->p = VARDATA(w->result);
#ifdef USE_ASSERT_CHECKING
	w->end = w->p + maxlen;
#endif
}

/* (Masks write a character at a time: one byte, without a call.) */
static inline void
mask_put(MaskWriter *w, const char *s, Size len)
{
	Assert(w->p + len <= w->end);
	if (len == 1)
		*w->p++ = *s;
	else
	{
		memcpy(w->p, s, len);
		w->p += len;
	}
}

static inline void
mask_put_stars(MaskWriter *w, int64 n)
{
	Assert(n >= 0 && w->p + n <= w->end);
	if (n == 1)
		*w->p++ = '*';
	else
	{
		memset(w->p, '*', n);
		w->p += n;
	}
}

static text *
mask_finish(MaskWriter *w)
{
	SET_VARSIZE(w->result, w->p - (char *) w->result);
	return w->result;
}

/* A constant result. */
static text *
mask_constant(const char *s)
{
	return cstring_to_text(s);
}

/* The value of a decimal digit (ASCII or full width), else -1. */
static inline int
mask_digit(pg_wchar c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 0xFF10 && c <= 0xFF19)
		return c - 0xFF10;
	return -1;
}

static inline bool
mask_is_space(pg_wchar c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\v' || c == '\f' || c == 0x3000;
}

/* Is c a CJK unified or compatibility ideograph? */
static inline bool
mask_is_cjk(pg_wchar c)
{
	return (c >= 0x3400 && c <= 0x4DBF) ||	/* extension A */
		(c >= 0x4E00 && c <= 0x9FFF) || /* unified ideographs */
		(c >= 0xF900 && c <= 0xFAFF) || /* compatibility ideographs */
		(c >= 0x20000 && c <= 0x323AF); /* extensions B to H */
}

static bool
mask_in_list(pg_wchar c, const pg_wchar *list, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (list[i] == c)
			return true;
	return false;
}

/*
 * The generic mask, for values a function does not recognise: one '*' per
 * character, after the first character when there are enough of them that
 * one says little.
 */
static text *
mask_generic(const char *s, Size len)
{
	MaskReader	r;
	MaskWriter	w;
	int64		n = mask_count_chars(s, len);

	mask_writer_init(&w, len);
	if (n >= MASK_GENERIC_KEEP_MIN)
	{
		mask_reader_init(&r, s, len);
		mask_next(&r);
		mask_put(&w, r.chr, r.chrlen);
		n--;
	}
	mask_put_stars(&w, n);
	return mask_finish(&w);
}

/*
 * Collect the digits of s into digits (at least len bytes), as ASCII,
 * skipping the separators in seps.  *plus is set if s has a leading '+' and
 * plus is not NULL.  Returns the number of digits, or -1 if s holds anything
 * else.
 */
static int64
mask_collect_digits(const char *s, Size len, const char *seps,
					char *digits, bool *plus)
{
	MaskReader	r;
	int64		n = 0;

	if (plus)
		*plus = false;
	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		pg_wchar	c = mask_next(&r);
		int			d = mask_digit(c);

		if (d >= 0)
			digits[n++] = (char) ('0' + d);
		else if (c < 0x80 && c != '\0' && strchr(seps, (int) c) != NULL)
			continue;
		else if (plus && (c == '+' || c == 0xFF0B) && n == 0 && !*plus)
			*plus = true;
		else
			return -1;
	}
	return n;
}

/* ----------------------------------------------------------------------
 * Phone numbers
 * ----------------------------------------------------------------------
 */

/* A mainland China mobile number: 11 digits, 1 then 3 to 9. */
static inline bool
mask_is_cn_mobile(const char *d, int64 n)
{
	return n == 11 && d[0] == '1' && d[1] >= '3' && d[1] <= '9';
}

/*
 * The digits of a number other than a mobile: the last 4 of 8 or more, the
 * last 2 of 5 to 7, none of 4 or fewer; one '*' per hidden digit.
 */
static void
mask_put_phone_tail(MaskWriter *w, const char *d, int64 n)
{
	int64		keep = n >= 8 ? 4 : n >= 5 ? 2 : 0;

	mask_put_stars(w, n - keep);
	mask_put(w, d + n - keep, keep);
}

/* The national part of a number: a mobile as 138****5678, else its tail. */
static void
mask_put_national(MaskWriter *w, const char *d, int64 n)
{
	if (mask_is_cn_mobile(d, n))
	{
		mask_put(w, d, 3);
		mask_put_stars(w, 4);
		mask_put(w, d + 7, 4);
	}
	else
		mask_put_phone_tail(w, d, n);
}

/* The length of the country code that d begins with; 0 if none can. */
static int
mask_country_code_length(const char *d, int64 n)
{
	int			len;

	if (n < 1 || d[0] == '0')
		return 0;
	if (d[0] == '1' || d[0] == '7')
		len = 1;
	else if (n >= 2 && two_digit_country_code[(d[0] - '0') * 10 + (d[1] - '0')])
		len = 2;
	else
		len = 3;
	/* A country code alone is not a number. */
	return n > len ? len : 0;
}

static text *
mask_phone_text(const char *s, Size len)
{
	char	   *digits = MemoryContextAllocHuge(CurrentMemoryContext, len + 1);
	bool		plus;
	int64		n = mask_collect_digits(s, len, " -().", digits, &plus);
	MaskWriter	w;

	if (n <= 0)
		return mask_generic(s, len);

	/* International: +CC... or 00CC... */
	if (plus || (n > 2 && digits[0] == '0' && digits[1] == '0'))
	{
		const char *d = plus ? digits : digits + 2;
		int64		nd = plus ? n : n - 2;
		int			cc = 0;

		if (nd <= MASK_E164_MAX_DIGITS)
			cc = mask_country_code_length(d, nd);
		if (cc == 0)
			return mask_generic(s, len);
		mask_writer_init(&w, nd + 2);
		mask_put(&w, "+", 1);
		mask_put(&w, d, cc);
		mask_put(&w, " ", 1);
		if (cc == 2 && d[0] == '8' && d[1] == '6')
			mask_put_national(&w, d + cc, nd - cc);
		else
			mask_put_phone_tail(&w, d + cc, nd - cc);
		return mask_finish(&w);
	}

	mask_writer_init(&w, n);
	mask_put_national(&w, digits, n);
	return mask_finish(&w);
}

/* SQL function: mask_phone(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_phone);

Datum
pii_guard_mask_phone(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_phone_text(VARDATA_ANY(value),
									 VARSIZE_ANY_EXHDR(value)));
}

/* ----------------------------------------------------------------------
 * Resident identity card numbers and bank cards
 * ----------------------------------------------------------------------
 */

static text *
mask_cn_id_text(const char *s, Size len)
{
	MaskReader	r;
	MaskWriter	w;
	char		sym[19];
	int			n = 0;
	int			i;

	/* Up to 18 digits, the last of them possibly X; spaces and '-' ignored. */
	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		pg_wchar	c = mask_next(&r);
		int			d = mask_digit(c);

		if (c == ' ' || c == '-')
			continue;
		if (n == 18)
			return mask_generic(s, len);
		if (d >= 0)
			sym[n++] = (char) ('0' + d);
		else if (c == 'X' || c == 'x' || c == 0xFF38 || c == 0xFF58)
			sym[n++] = 'X';		/* the check digit 10, upper case */
		else
			return mask_generic(s, len);
	}
	for (i = 0; i < n - 1; i++)
		if (sym[i] == 'X')
			return mask_generic(s, len);

	if (n == 18)
	{
		mask_writer_init(&w, 18);
		mask_put(&w, sym, 6);
		mask_put_stars(&w, 8);
		mask_put(&w, sym + 14, 4);
		return mask_finish(&w);
	}
	if (n == 15 && sym[14] != 'X')
	{
		mask_writer_init(&w, 15);
		mask_put(&w, sym, 6);
		mask_put_stars(&w, 6);
		mask_put(&w, sym + 12, 3);
		return mask_finish(&w);
	}
	return mask_generic(s, len);
}

/* SQL function: mask_cn_id(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_cn_id);

Datum
pii_guard_mask_cn_id(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_cn_id_text(VARDATA_ANY(value),
									 VARSIZE_ANY_EXHDR(value)));
}

/*
 * A card number of 16 to 19 digits shows its first 6 (the issuer) and last
 * 4, the usual form; shorter numbers show less, so that no more than half
 * of the digits ever shows: 13 to 15 digits their first 2 (the network)
 * and last 4, 8 to 12 digits (and anything longer than 19) only the last 4,
 * and nothing under 8.
 */
static text *
mask_bank_card_text(const char *s, Size len)
{
	char	   *digits = MemoryContextAllocHuge(CurrentMemoryContext, len + 1);
	int64		n = mask_collect_digits(s, len, " -", digits, NULL);
	MaskWriter	w;

	if (n <= 0)
		return mask_generic(s, len);
	mask_writer_init(&w, n);
	if (n >= 16 && n <= 19)
	{
		mask_put(&w, digits, 6);
		mask_put_stars(&w, n - 10);
		mask_put(&w, digits + n - 4, 4);
	}
	else if (n >= 13 && n <= 15)
	{
		mask_put(&w, digits, 2);
		mask_put_stars(&w, n - 6);
		mask_put(&w, digits + n - 4, 4);
	}
	else if (n >= 8)
	{
		mask_put_stars(&w, n - 4);
		mask_put(&w, digits + n - 4, 4);
	}
	else
		mask_put_stars(&w, n);
	return mask_finish(&w);
}

/* SQL function: mask_bank_card(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_bank_card);

Datum
pii_guard_mask_bank_card(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_bank_card_text(VARDATA_ANY(value),
										 VARSIZE_ANY_EXHDR(value)));
}

/* ----------------------------------------------------------------------
 * E-mail addresses
 * ----------------------------------------------------------------------
 */

/*
 * The first character of the local part, one '*' per other character, and
 * the domain.  The domain follows the last '@' (a quoted local part may
 * hold one); '@' is ASCII, and no server encoding uses ASCII bytes inside
 * multibyte characters, so a byte search is safe.
 */
static text *
mask_email_text(const char *s, Size len)
{
	const char *at = NULL;
	const char *p;
	MaskReader	r;
	MaskWriter	w;
	int64		n;

	for (p = s; p < s + len; p++)
		if (*p == '@')
			at = p;
	if (at == NULL || at == s || at == s + len - 1)
		return mask_generic(s, len);

	n = mask_count_chars(s, at - s);
	mask_writer_init(&w, len);
	if (n > 1)
	{
		mask_reader_init(&r, s, at - s);
		mask_next(&r);
		mask_put(&w, r.chr, r.chrlen);
		n--;
	}
	mask_put_stars(&w, n);
	mask_put(&w, at, s + len - at);
	return mask_finish(&w);
}

/* SQL function: mask_email(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_email);

Datum
pii_guard_mask_email(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_email_text(VARDATA_ANY(value),
									 VARSIZE_ANY_EXHDR(value)));
}

/* ----------------------------------------------------------------------
 * Names
 * ----------------------------------------------------------------------
 */

/* Characters that separate the words of a name; they are shown. */
static inline bool
mask_is_name_separator(pg_wchar c)
{
	return mask_is_space(c) || c == '-' || c == '\'' || c == '.' ||
		c == ',' || c == 0x00B7 || c == 0x2019 || c == 0x30FB;
}

/*
 * compound_surnames as 64-bit keys (first << 32 | second), sorted, and a
 * bitmap of the first characters (all in the Basic Multilingual Plane) that
 * settles most names with one test.
 */
static uint64 compound_surname_keys[lengthof(compound_surnames)];
static uint64 compound_surname_firsts[0x10000 / 64];
static bool compound_surname_keys_ready = false;

static int
mask_cmp_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * Is c1 c2 a compound surname?  Asked for every name of three characters or
 * more that a masking view shows: the first character's bit, then a binary
 * search (a scan of the list was two thirds of mask_name()'s time, a binary
 * search alone still a half).
 */
static bool
mask_is_compound_surname(pg_wchar c1, pg_wchar c2)
{
	uint64		key = ((uint64) c1 << 32) | c2;

	if (unlikely(!compound_surname_keys_ready))
	{
		int			i;

		for (i = 0; i < (int) lengthof(compound_surnames); i++)
		{
			pg_wchar	first = compound_surnames[i][0];

			Assert(first < 0x10000);
			compound_surname_keys[i] = ((uint64) first << 32) | compound_surnames[i][1];
			compound_surname_firsts[first / 64] |= UINT64CONST(1) << (first % 64);
		}
		qsort(compound_surname_keys, lengthof(compound_surname_keys),
			  sizeof(uint64), mask_cmp_uint64);
		compound_surname_keys_ready = true;
	}
	if (c1 >= 0x10000 ||
		(compound_surname_firsts[c1 / 64] & (UINT64CONST(1) << (c1 % 64))) == 0)
		return false;
	{
		int			lo = 0;
		int			hi = (int) lengthof(compound_surname_keys) - 1;

		while (lo <= hi)
		{
			int			mid = (lo + hi) / 2;

			if (compound_surname_keys[mid] == key)
				return true;
			if (compound_surname_keys[mid] < key)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
	return false;
}

/*
 * Chinese: the surname (two characters for a compound surname when the
 * name has three or more), one '*' per other character.
 */
static text *
mask_name_chinese(const char *s, Size len, int64 n)
{
	MaskReader	r;
	MaskWriter	w;
	pg_wchar	c1;
	pg_wchar	c2;
	const char *second;
	int			secondlen;

	mask_writer_init(&w, len);
	if (n == 1)
	{
		mask_put_stars(&w, 1);
		return mask_finish(&w);
	}
	mask_reader_init(&r, s, len);
	c1 = mask_next(&r);
	mask_put(&w, r.chr, r.chrlen);
	c2 = mask_next(&r);
	second = r.chr;
	secondlen = r.chrlen;
	if (n >= 3 && mask_is_compound_surname(c1, c2))
	{
		mask_put(&w, second, secondlen);
		mask_put_stars(&w, n - 2);
	}
	else
		mask_put_stars(&w, n - 1);
	return mask_finish(&w);
}

/*
 * Latin and other scripts: the initial of each word, one '*' per other
 * character, separators as they are.  A name of one letter shows none, a
 * name of initials only its first.
 */
static text *
mask_name_latin(const char *s, Size len)
{
	MaskReader	r;
	MaskWriter	w;
	int64		letters = 0;
	int64		words = 0;
	bool		word_start = true;

	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		if (mask_is_name_separator(mask_next(&r)))
			word_start = true;
		else
		{
			letters++;
			words += word_start;
			word_start = false;
		}
	}
	if (letters == 0)
		return mask_generic(s, len);
	/* Initials only ("J R"): show the first, or the name would be whole. */
	if (letters == words)
		words = 1;
	word_start = true;

	mask_writer_init(&w, len);
	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		if (mask_is_name_separator(mask_next(&r)))
		{
			mask_put(&w, r.chr, r.chrlen);
			word_start = true;
		}
		else
		{
			if (word_start && words > 0 && letters > 1)
			{
				mask_put(&w, r.chr, r.chrlen);
				words--;
			}
			else
				mask_put_stars(&w, 1);
			word_start = false;
		}
	}
	return mask_finish(&w);
}

/* Leading and trailing white space is dropped; the rule follows the script. */
static text *
mask_name_text(const char *s, Size len)
{
	MaskReader	r;
	const char *start = NULL;
	const char *end = s;
	pg_wchar	first = 0;
	int64		seen = 0;
	int64		n = 0;		/* characters from start to end */

	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		pg_wchar	c = mask_next(&r);

		if (start != NULL)
			seen++;
		if (mask_is_space(c))
			continue;
		if (start == NULL)
		{
			start = r.chr;
			first = c;
			seen = 1;
		}
		end = r.p;
		n = seen;
	}
	if (start == NULL)
		return mask_generic(s, len);
	if (mask_is_cjk(first))
		return mask_name_chinese(start, end - start, n);
	return mask_name_latin(start, end - start);
}

/* SQL function: mask_name(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_name);

Datum
pii_guard_mask_name(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_name_text(VARDATA_ANY(value),
									VARSIZE_ANY_EXHDR(value)));
}

/* ----------------------------------------------------------------------
 * Addresses
 * ----------------------------------------------------------------------
 */

/*
 * The rank of the administrative level whose name is cps[start..end), or 0
 * if it is none: 1 province (省, 自治区, 特别行政区), 2 prefecture (市, 州,
 * 盟, 地区), 3 county (区, 县, 旗, or a 市 under a prefecture).  prev is
 * the rank of the level before.
 */
static int
mask_address_rank(const pg_wchar *cps, int start, int end, int prev)
{
	pg_wchar	last = cps[end - 1];
	pg_wchar	before = cps[end - 2];	/* a level has two characters or more */

	switch (last)
	{
		case CP_SHENG:
			return 1;
		case CP_ZHOU:
		case CP_MENG:
			return 2;
		case CP_SHI:
			return prev < 2 ? 2 : 3;
		case CP_XIAN:
		case CP_XIAN_T:
		case CP_QI:
			return 3;
		case CP_QU:
		case CP_QU_T:
			if (end - start >= 3 &&
				((cps[end - 3] == CP_ZI && before == CP_ZHI) ||
				 (cps[end - 3] == CP_XING && before == CP_ZHENG)))
				return 1;
			if (before == CP_DI)
				return 2;
			if (mask_in_list(before, sub_district_prefixes,
							 lengthof(sub_district_prefixes)))
				return 0;
			return 3;
	}
	return 0;
}

static inline bool
mask_is_level_suffix(pg_wchar c)
{
	return c == CP_SHENG || c == CP_SHI || c == CP_QU || c == CP_QU_T ||
		c == CP_XIAN || c == CP_XIAN_T || c == CP_QI || c == CP_MENG ||
		c == CP_ZHOU;
}

static inline bool
mask_is_street_marker(pg_wchar c)
{
	return mask_in_list(c, street_markers, lengthof(street_markers));
}

/*
 * The end of the administrative level name that begins at cps[start] (after
 * white space), or 0 if none does: CJK characters up to a level suffix,
 * with no street-level marker on the way.  A suffix or marker that begins
 * the name is part of it (市中区, 道里区), not its end.
 */
static int
mask_address_find_level(const pg_wchar *cps, int nc, int start)
{
	int			i;

	while (start < nc && mask_is_space(cps[start]))
		start++;
	for (i = start; i < nc && i - start < ADDR_LEVEL_MAX; i++)
	{
		int			end = i + 1;

		if (!mask_is_cjk(cps[i]))
			break;
		if (i == start)
			continue;
		if (mask_is_street_marker(cps[i]))
			break;
		if (!mask_is_level_suffix(cps[i]))
			continue;
		/* 州 then a suffix is one name: 杭州市, 贵州省, 通州区 */
		if (cps[i] == CP_ZHOU && end < nc && end - start < ADDR_LEVEL_MAX &&
			cps[end] != CP_ZHOU && cps[end] != CP_MENG &&
			cps[end] != CP_QI && mask_is_level_suffix(cps[end]))
			end++;
		return end;
	}
	return 0;
}

/*
 * The number of leading characters of a Chinese address that name its
 * province, city and district: up to three levels, each ranked below the
 * one before, found before any street-level marker.
 */
static int
mask_address_levels(const pg_wchar *cps, int nc)
{
	int			kept = 0;
	int			rank = 0;

	while (rank < 3)
	{
		int			start = kept;
		int			end = mask_address_find_level(cps, nc, start);
		int			r;

		if (end == 0)
			break;

		/*
		 * A level run straight into a street marker is part of a street-level
		 * name (周市镇), unless a level begins with the marker (哈尔滨市道里区).
		 */
		if (end < nc && mask_is_street_marker(cps[end]) &&
			mask_address_find_level(cps, nc, end) == 0)
			break;
		while (start < end && mask_is_space(cps[start]))
			start++;
		r = mask_address_rank(cps, start, end, rank);
		if (r <= rank)
			break;
		rank = r;
		kept = end;
	}
	return kept;
}

static text *
mask_address_chinese(const char *s, Size len)
{
	MaskReader	r;
	MaskWriter	w;
	pg_wchar	cps[ADDR_SCAN_MAX] = {0};	/* (only cps[0 .. nc - 1] are read) */
	const char *ends[ADDR_SCAN_MAX];
	int			nc = 0;
	int			kept;

	mask_reader_init(&r, s, len);
	while (mask_more(&r) && nc < ADDR_SCAN_MAX)
	{
		cps[nc] = mask_next(&r);
		ends[nc++] = r.p;
	}

	kept = mask_address_levels(cps, nc);
	if (kept == 0)
	{
		/* No level: at most two characters, and always less than half. */
		kept = Min(2, (nc - 1) / 2);
	}
	/* cppcheck-suppress uninitvar ; kept <= nc, and ends[0 .. nc - 1] are set */
	mask_writer_init(&w, (kept > 0 ? ends[kept - 1] - s : 0) + strlen(ADDR_STARS));
	if (kept > 0)
		mask_put(&w, s, ends[kept - 1] - s);
	mask_put(&w, ADDR_STARS, strlen(ADDR_STARS));
	return mask_finish(&w);
}

/*
 * Comma-separated addresses: the first segment (street and number) is
 * hidden, and so is every following segment with a digit in it (flat,
 * building), except the last (postcode and region).  ',' and digits are
 * ASCII, so bytes are searched.
 */
static text *
mask_address_latin(const char *s, Size len)
{
	const char *end = s + len;
	const char *shown = memchr(s, ',', len);
	MaskWriter	w;

	if (shown == NULL)
		return mask_constant(ADDR_STARS);
	for (;;)
	{
		const char *next = memchr(shown + 1, ',', end - shown - 1);
		const char *p;
		bool		digit = false;

		if (next == NULL)
			break;
		for (p = shown + 1; p < next && !digit; p++)
			digit = (*p >= '0' && *p <= '9');
		if (!digit)
			break;
		shown = next;
	}
	/* Only a value of nearly 1 GB could outgrow a text; show nothing then. */
	if ((Size) (end - shown) > MASK_MAX_TEXT - strlen(ADDR_STARS))
		return mask_constant(ADDR_STARS);
	mask_writer_init(&w, strlen(ADDR_STARS) + (end - shown));
	mask_put(&w, ADDR_STARS, strlen(ADDR_STARS));
	mask_put(&w, shown, end - shown);
	return mask_finish(&w);
}

static text *
mask_address_text(const char *s, Size len)
{
	MaskReader	r;

	mask_reader_init(&r, s, len);
	while (mask_more(&r))
	{
		pg_wchar	c = mask_next(&r);

		if (mask_is_space(c))
			continue;
		len -= r.chr - s;
		s = r.chr;
		if (mask_is_cjk(c))
			return mask_address_chinese(s, len);
		return mask_address_latin(s, len);
	}
	return mask_generic(s, len);
}

/* SQL function: mask_address(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_mask_address);

Datum
pii_guard_mask_address(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(mask_address_text(VARDATA_ANY(value),
									   VARSIZE_ANY_EXHDR(value)));
}

/* ----------------------------------------------------------------------
 * Dates
 * ----------------------------------------------------------------------
 */

typedef enum DatePrecision
{
	DATE_PRECISION_YEAR,
	DATE_PRECISION_MONTH
} DatePrecision;

static DatePrecision
mask_date_precision(text *precision)
{
	char	   *p = text_to_cstring(precision);

	if (pg_strcasecmp(p, "year") == 0)
		return DATE_PRECISION_YEAR;
	if (pg_strcasecmp(p, "month") == 0)
		return DATE_PRECISION_MONTH;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errhidestmt(true),
			 errmsg("invalid precision for pii_guard.mask_date"),
			 errdetail("The precision must be \"year\" or \"month\"."),
			 errhint("Use 'year' to keep only the year, or 'month' to keep the year and the month.")));
	return DATE_PRECISION_YEAR; /* keep compiler quiet */
}

/* A timestamp truncated to the year or month, like date_trunc. */
static Timestamp
mask_truncate_timestamp(Timestamp ts, DatePrecision precision)
{
	struct pg_tm tm;
	fsec_t		fsec;
	Timestamp	result;

	if (TIMESTAMP_NOT_FINITE(ts))
		return ts;
	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errhidestmt(true),
				 errmsg("timestamp out of range")));
	if (precision == DATE_PRECISION_YEAR)
		tm.tm_mon = 1;
	tm.tm_mday = 1;
	tm.tm_hour = 0;
	tm.tm_min = 0;
	tm.tm_sec = 0;
	if (tm2timestamp(&tm, 0, NULL, &result) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errhidestmt(true),
				 errmsg("timestamp out of range")));
	return result;
}

/* SQL function: mask_date(date, text) returns date */
PG_FUNCTION_INFO_V1(pii_guard_mask_date);

Datum
pii_guard_mask_date(PG_FUNCTION_ARGS)
{
	DateADT		value = PG_GETARG_DATEADT(0);
	DatePrecision precision = mask_date_precision(PG_GETARG_TEXT_PP(1));
	int			year;
	int			month;
	int			day;
	DateADT		result;

	if (DATE_NOT_FINITE(value))
		PG_RETURN_DATEADT(value);
	j2date(value + POSTGRES_EPOCH_JDATE, &year, &month, &day);
	if (precision == DATE_PRECISION_YEAR)
		month = 1;
	result = date2j(year, month, 1) - POSTGRES_EPOCH_JDATE;
	/* The first days of 4714 BC come before the earliest date. */
	if (!IS_VALID_JULIAN(year, month, 1) || !IS_VALID_DATE(result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errhidestmt(true),
				 errmsg("date out of range")));
	PG_RETURN_DATEADT(result);
}

/* SQL function: mask_date(timestamp, text) returns timestamp */
PG_FUNCTION_INFO_V1(pii_guard_mask_date_timestamp);

Datum
pii_guard_mask_date_timestamp(PG_FUNCTION_ARGS)
{
	Timestamp	value = PG_GETARG_TIMESTAMP(0);
	DatePrecision precision = mask_date_precision(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TIMESTAMP(mask_truncate_timestamp(value, precision));
}

/*
 * A timestamptz is truncated in the time zone given as an argument, like
 * timezone(zone, value), and not in the session's TimeZone, on which an
 * IMMUTABLE function must not depend.  UTC would do for that, but it would
 * move a birthday at local midnight east of Greenwich into the year or
 * month before; so the caller names the zone its dates belong to.
 */
/* SQL function: mask_date(timestamptz, text, text) returns timestamptz */
PG_FUNCTION_INFO_V1(pii_guard_mask_date_timestamptz);

Datum
pii_guard_mask_date_timestamptz(PG_FUNCTION_ARGS)
{
	TimestampTz value = PG_GETARG_TIMESTAMPTZ(0);
	DatePrecision precision = mask_date_precision(PG_GETARG_TEXT_PP(1));
	Datum		zone = PG_GETARG_DATUM(2);
	Timestamp	local;

	if (TIMESTAMP_NOT_FINITE(value))
		PG_RETURN_TIMESTAMPTZ(value);
	local = DatumGetTimestamp(DirectFunctionCall2(timestamptz_zone, zone,
												  TimestampTzGetDatum(value)));
	local = mask_truncate_timestamp(local, precision);
	PG_RETURN_DATUM(DirectFunctionCall2(timestamp_zone, zone,
										TimestampGetDatum(local)));
}

/* ----------------------------------------------------------------------
 * partial()
 * ----------------------------------------------------------------------
 */

/*
 * The first keep_prefix and last keep_suffix characters with pad between.
 * When they would show every character, the larger count shrinks first
 * (then the suffix, on a tie) until one character is hidden.
 */
/* SQL function: partial(text, integer, text, integer) returns text */
PG_FUNCTION_INFO_V1(pii_guard_partial);

Datum
pii_guard_partial(PG_FUNCTION_ARGS)
{
	text	   *value = PG_GETARG_TEXT_PP(0);
	int64		prefix = PG_GETARG_INT32(1);
	text	   *pad = PG_GETARG_TEXT_PP(2);
	int64		suffix = PG_GETARG_INT32(3);
	const char *s = VARDATA_ANY(value);
	Size		len = VARSIZE_ANY_EXHDR(value);
	Size		padlen = VARSIZE_ANY_EXHDR(pad);
	int64		n;
	int64		excess;
	int64		i;
	const char *prefix_end = s;
	const char *suffix_start = s + len;
	MaskReader	r;
	MaskWriter	w;

	if (prefix < 0 || suffix < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("pii_guard.partial cannot keep a negative number of characters"),
				 errdetail("keep_prefix and keep_suffix must be zero or more.")));

	n = mask_count_chars(s, len);
	if (n == 0)
		PG_RETURN_TEXT_P(mask_constant(""));

	excess = prefix + suffix - (n - 1);
	if (excess > 0)
	{
		int64		d = Min(excess, Abs(prefix - suffix));

		if (prefix > suffix)
			prefix -= d;
		else
			suffix -= d;
		excess -= d;
		suffix -= (excess + 1) / 2;
		prefix -= excess / 2;
	}

	if (n == (int64) len)
	{
		/* ASCII: characters are bytes. */
		prefix_end = s + prefix;
		suffix_start = s + len - suffix;
	}
	else
	{
		mask_reader_init(&r, s, len);
		for (i = 0; i < n; i++)
		{
			mask_next(&r);
			if (i == prefix - 1)
				prefix_end = r.p;
			if (i == n - suffix)
				suffix_start = r.chr;
		}
	}

	if ((Size) (prefix_end - s) + padlen + (Size) (s + len - suffix_start) > MASK_MAX_TEXT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errhidestmt(true),
				 errmsg("result of pii_guard.partial is too long")));
	mask_writer_init(&w, (prefix_end - s) + padlen + (s + len - suffix_start));
	mask_put(&w, s, prefix_end - s);
	mask_put(&w, VARDATA_ANY(pad), padlen);
	mask_put(&w, suffix_start, s + len - suffix_start);
	PG_RETURN_TEXT_P(mask_finish(&w));
}

/* ----------------------------------------------------------------------
 * Keyed pseudonyms and noise
 * ----------------------------------------------------------------------
 */

/* SQL function: pseudonym(text) returns text */
PG_FUNCTION_INFO_V1(pii_guard_pseudonym);

Datum
pii_guard_pseudonym(PG_FUNCTION_ARGS)
{
	static const char hex[] = "0123456789abcdef";
	text	   *value = PG_GETARG_TEXT_PP(0);
	DataKey    *key = keys_pseudonym();
	uint8		mac[PSEUDONYM_BYTES];
	char		token[PSEUDONYM_BYTES * 2 + 1];
	int			i;

	crypto_hmac(key->mac, MASK_DOMAIN_PSEUDONYM, VARDATA_ANY(value),
				VARSIZE_ANY_EXHDR(value), mac, PSEUDONYM_BYTES);
	for (i = 0; i < PSEUDONYM_BYTES; i++)
	{
		token[2 * i] = hex[mac[i] >> 4];
		token[2 * i + 1] = hex[mac[i] & 0x0F];
	}
	token[PSEUDONYM_BYTES * 2] = '\0';
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/* Refuse a ratio outside [0, 1]. */
static void
mask_check_ratio(double ratio)
{
	if (isnan(ratio) || ratio < 0.0 || ratio > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errhidestmt(true),
				 errmsg("invalid ratio for pii_guard.noise"),
				 errdetail("The ratio must be between 0 and 1: the result lies within value * (1 - ratio) and value * (1 + ratio).")));
}

/*
 * u * ratio, with u in [-1, 1) drawn from HMAC(pseudonym key, 'n' ||
 * canonical value || '/' || ratio).  The ratio is hashed too: were u the
 * same under every ratio, two ratios would give two equations that solve
 * for the value.  The key is fetched before the value is looked at, so that
 * whether a call fails for want of a key does not depend on the value.
 */
static double
mask_noise_offset(DataKey *key, const char *canonical, double ratio)
{
	StringInfoData buf;
	char		ratio_text[DOUBLE_SHORTEST_DECIMAL_LEN];
	uint8		mac[8];
	uint64		x = 0;
	double		u;
	int			i;

	double_to_shortest_decimal_buf(ratio, ratio_text);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s/%s", canonical, ratio_text);
	crypto_hmac(key->mac, MASK_DOMAIN_NOISE, buf.data, buf.len, mac, sizeof(mac));
	pfree(buf.data);
	for (i = 0; i < 8; i++)
		x = (x << 8) | mac[i];
	/* 53 random bits: exact in a double, so |u| < 1 and |u * ratio| <= ratio */
	u = (double) (x >> 11) / (double) (UINT64CONST(1) << 53) * 2.0 - 1.0;
	return u * ratio;
}

/*
 * The step noise() takes at a resolution of one unit (1 for integers, one
 * unit of the last digit for numerics), given the unrounded step: rounded
 * to the nearest unit, and at least one unit, in the direction of the keyed
 * offset, so that no value -- however small against 1 / ratio -- comes back
 * unchanged.  |step| <= max(1, round(ratio * |value|)) in units.
 */
static double
mask_noise_step(double raw, double offset)
{
	double		step = rint(raw);

	if (step == 0.0)
		step = offset < 0.0 ? -1.0 : 1.0;
	return step;
}

/*
 * value + value * offset, rounded to the value's own scale, at least one
 * unit of it (mask_noise_step).  NaN and the infinities are returned as they
 * are.
 */
/* SQL function: noise(numeric, double precision) returns numeric */
PG_FUNCTION_INFO_V1(pii_guard_noise_numeric);

Datum
pii_guard_noise_numeric(PG_FUNCTION_ARGS)
{
	Numeric		value = PG_GETARG_NUMERIC(0);
	double		ratio = PG_GETARG_FLOAT8(1);
	DataKey    *key;
	char	   *canonical;
	int32		scale;
	double		offset;
	Datum		delta;

	mask_check_ratio(ratio);
	if (ratio == 0.0)
		PG_RETURN_NUMERIC(value);
	key = keys_pseudonym();

	/* Trailing zeros dropped: 1.50 and 1.5 get the same noise. */
	canonical = numeric_normalize(value);
	if (strchr(canonical, 'N') != NULL || strchr(canonical, 'I') != NULL)
		PG_RETURN_NUMERIC(value);	/* NaN, Infinity, -Infinity */

	scale = DatumGetInt32(DirectFunctionCall1(numeric_scale, NumericGetDatum(value)));
	offset = mask_noise_offset(key, canonical, ratio);
	delta = DirectFunctionCall1(float8_numeric, Float8GetDatum(offset));
	delta = DirectFunctionCall2(numeric_mul, NumericGetDatum(value), delta);
	delta = DirectFunctionCall2(numeric_round, delta, Int32GetDatum(scale));
	if (DatumGetInt32(DirectFunctionCall2(numeric_cmp, delta,
										  DirectFunctionCall1(int8_numeric, Int64GetDatum(0)))) == 0)
	{
		/* One unit of the last digit, 10^-scale, in the offset's direction. */
		delta = DirectFunctionCall3(numeric_in,
								   CStringGetDatum(psprintf("%s1e%d", offset < 0.0 ? "-" : "",
															-scale)),
								   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	PG_RETURN_DATUM(DirectFunctionCall2(numeric_add, NumericGetDatum(value), delta));
}

/*
 * Integers move by at least 1 (mask_noise_step), and a result beyond the
 * type's range is clamped to it rather than raising an error.
 */
/* SQL function: noise(integer, double precision) returns integer */
PG_FUNCTION_INFO_V1(pii_guard_noise_int4);

Datum
pii_guard_noise_int4(PG_FUNCTION_ARGS)
{
	int32		value = PG_GETARG_INT32(0);
	double		ratio = PG_GETARG_FLOAT8(1);
	DataKey    *key;
	char		canonical[16];
	double		offset;
	int64		result;

	mask_check_ratio(ratio);
	if (ratio == 0.0)
		PG_RETURN_INT32(value);
	key = keys_pseudonym();
	snprintf(canonical, sizeof(canonical), "%d", value);
	offset = mask_noise_offset(key, canonical, ratio);
	/* |step| <= |value| + 1 < 2^32: exact in an int64 */
	result = (int64) value + (int64) mask_noise_step((double) value * offset, offset);
	result = Max(result, PG_INT32_MIN);
	result = Min(result, PG_INT32_MAX);
	PG_RETURN_INT32((int32) result);
}

/* SQL function: noise(bigint, double precision) returns bigint */
PG_FUNCTION_INFO_V1(pii_guard_noise_int8);

Datum
pii_guard_noise_int8(PG_FUNCTION_ARGS)
{
	int64		value = PG_GETARG_INT64(0);
	double		ratio = PG_GETARG_FLOAT8(1);
	DataKey    *key;
	char		canonical[24];
	double		offset;
	double		step;
	int64		result;

	mask_check_ratio(ratio);
	if (ratio == 0.0)
		PG_RETURN_INT64(value);
	key = keys_pseudonym();
	snprintf(canonical, sizeof(canonical), INT64_FORMAT, value);
	offset = mask_noise_offset(key, canonical, ratio);
	step = mask_noise_step((double) value * offset, offset);
	if (!FLOAT8_FITS_IN_INT64(step) ||
		pg_add_s64_overflow(value, (int64) step, &result))
		result = step > 0.0 ? PG_INT64_MAX : PG_INT64_MIN;
	PG_RETURN_INT64(result);
}

/* SQL function: noise(double precision, double precision) returns double precision */
PG_FUNCTION_INFO_V1(pii_guard_noise_float8);

Datum
pii_guard_noise_float8(PG_FUNCTION_ARGS)
{
	double		value = PG_GETARG_FLOAT8(0);
	double		ratio = PG_GETARG_FLOAT8(1);
	DataKey    *key;
	char		canonical[DOUBLE_SHORTEST_DECIMAL_LEN];
	double		result;

	mask_check_ratio(ratio);
	if (ratio == 0.0)
		PG_RETURN_FLOAT8(value);
	key = keys_pseudonym();
	if (isnan(value) || isinf(value))
		PG_RETURN_FLOAT8(value);
	double_to_shortest_decimal_buf(value, canonical);
	result = value + value * mask_noise_offset(key, canonical, ratio);
	/* Clamped to the type's range, as the integer variants are. */
	if (isinf(result))
		result = copysign(DBL_MAX, result);
	PG_RETURN_FLOAT8(result);
}
