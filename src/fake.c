/*-------------------------------------------------------------------------
 *
 * fake.c
 *		Format-preserving pseudonyms for masked copies (anonymize_into):
 *		_fake(kind, value, secret, attempt) returns a made-up value of the
 *		same kind and form as value --
 *
 *		mobile, landline	a mobile number with value's three-digit
 *					prefix, or (when value is one) a landline with its area
 *					code, the rest made up
 *		cn_id		a resident ID of value's province (Beijing's when value
 *					names none), with a made-up
 *					district, birth date (1950-2005) and sequence number,
 *					and a valid MOD 11-2 check character
 *		bank_card	a card number of value's length and issuer (its first
 *					six digits), a made-up account and a valid Luhn digit
 *		email		u<10 hex digits>@example.com
 *		cn_name		a common surname and one or two given-name characters
 *					(the number made up, not value's)
 *		text		redacted-<12 hex digits>
 *
 *		-- made up from HMAC-SHA256(secret, kind, attempt, value): the same
 *		value, secret and attempt give the same pseudonym in every table,
 *		so joins and foreign keys of a copy still hold; without the secret
 *		(a random one per copy, never stored) a pseudonym cannot be traced
 *		back to its value, not even by testing guesses.  anonymize_into
 *		makes a pseudonym again, with the next attempt, where two values
 *		met or a pseudonym is some real value.
 *
 * Only what makes a value's form is kept (a prefix, an issuer, a province,
 * a length); everything that identifies the person is made up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "pii_guard.h"

#define FAKE_SECRET_MIN		16
#define FAKE_MAX_DIGITS		19

/*
 * The secret, keyed once per call site: the SHA-256 states after HMAC's
 * inner and outer pads (RFC 2104), kept in fn_extra for the rows that
 * follow with the same secret.
 */
typedef struct FakeKey
{
	bytea	   *secret;			/* a copy, to tell a new secret */
	SHA256_CTX	inner;
	SHA256_CTX	outer;
} FakeKey;

/* A stream of pseudo-random bytes: HMAC-SHA256 blocks with a counter. */
typedef struct FakeStream
{
	const FakeKey *key;
	const char *kind;
	int32		attempt;
	const char *value;
	int			value_len;
	uint32		counter;
	uint8		block[32];
	int			used;
} FakeStream;

static FakeKey *
fake_key(FunctionCallInfo fcinfo, bytea *secret)
{
	FakeKey    *key = (FakeKey *) fcinfo->flinfo->fn_extra;
	uint8		k[SHA256_CBLOCK];
	uint8		pad[SHA256_CBLOCK];
	Size		len = VARSIZE_ANY_EXHDR(secret);

	if (key != NULL && VARSIZE_ANY_EXHDR(key->secret) == len &&
		memcmp(VARDATA_ANY(key->secret), VARDATA_ANY(secret), len) == 0)
		return key;
	if (key == NULL)
		key = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FakeKey));
	else
	{
		explicit_bzero(VARDATA(key->secret), VARSIZE(key->secret) - VARHDRSZ);
		pfree(key->secret);
	}
	key->secret = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, len + VARHDRSZ);
	SET_VARSIZE(key->secret, len + VARHDRSZ);
	memcpy(VARDATA(key->secret), VARDATA_ANY(secret), len);

	memset(k, 0, sizeof(k));
	if (len > SHA256_CBLOCK)
		SHA256((const uint8 *) VARDATA_ANY(secret), len, k);
	else
		memcpy(k, VARDATA_ANY(secret), len);
	for (int i = 0; i < SHA256_CBLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	SHA256_Init(&key->inner);
	SHA256_Update(&key->inner, pad, sizeof(pad));
	for (int i = 0; i < SHA256_CBLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	SHA256_Init(&key->outer);
	SHA256_Update(&key->outer, pad, sizeof(pad));
	explicit_bzero(k, sizeof(k));
	explicit_bzero(pad, sizeof(pad));
	fcinfo->flinfo->fn_extra = key;
	return key;
}

static void
fake_refill(FakeStream *fs)
{
	SHA256_CTX	ctx;
	uint8		inner[SHA256_DIGEST_LENGTH];
	uint8		head[8];

	/* counter, attempt: big-endian; then kind, a zero byte, the value */
	for (int i = 0; i < 4; i++)
	{
		head[i] = (uint8) (fs->counter >> (24 - 8 * i));
		head[4 + i] = (uint8) ((uint32) fs->attempt >> (24 - 8 * i));
	}
	fs->counter++;
	ctx = fs->key->inner;
	SHA256_Update(&ctx, head, sizeof(head));
	SHA256_Update(&ctx, fs->kind, strlen(fs->kind) + 1);
	SHA256_Update(&ctx, fs->value, fs->value_len);
	SHA256_Final(inner, &ctx);
	ctx = fs->key->outer;
	SHA256_Update(&ctx, inner, sizeof(inner));
	SHA256_Final(fs->block, &ctx);
	explicit_bzero(&ctx, sizeof(ctx));
	fs->used = 0;
}

/* A uniformly distributed number in [0, n), 0 < n <= 256. */
static int
fake_below(FakeStream *fs, int n)
{
	int			limit;

	if (n <= 1)
		return 0;
	limit = 256 - 256 % n;
	for (;;)
	{
		int			b;

		if (fs->used == (int) sizeof(fs->block))
			fake_refill(fs);
		b = fs->block[fs->used++];
		if (b < limit)
			return b % n;
	}
}

static void
fake_digits(FakeStream *fs, char *d, int n)
{
	for (int i = 0; i < n; i++)
		d[i] = (char) ('0' + fake_below(fs, 10));
}

static void
fake_hex(FakeStream *fs, StringInfo out, int n)
{
	for (int i = 0; i < n; i++)
		appendStringInfoChar(out, "0123456789abcdef"[fake_below(fs, 16)]);
}

/* value's digits (at most max of them), and how many there are. */
static int
fake_value_digits(const char *value, int len, char *d, int max)
{
	int			n = 0;

	for (int i = 0; i < len && n < max; i++)
		if (value[i] >= '0' && value[i] <= '9')
			d[n++] = value[i];
	return n;
}

static void
fake_phone(FakeStream *fs, StringInfo out)
{
	char		d[FAKE_MAX_DIGITS];
	char		rest[8];
	int			n = fake_value_digits(fs->value, fs->value_len, d, FAKE_MAX_DIGITS);
	const char *m = d;

	if (n == 13 && d[0] == '8' && d[1] == '6')
	{
		m += 2;
		n -= 2;
	}
	if (n >= 10 && m[0] == '0')
	{
		/* a landline: area code (010, 02x: 3 digits; else 4), 8 digits */
		int			area = (m[1] == '1' || m[1] == '2') ? 3 : 4;

		appendBinaryStringInfo(out, m, area);
		appendStringInfoChar(out, '-');
		rest[0] = (char) ('2' + fake_below(fs, 8));
		fake_digits(fs, rest + 1, 7);
		appendBinaryStringInfo(out, rest, 8);
		return;
	}
	if (n == 11 && m[0] == '1' && m[1] >= '3' && m[1] <= '9')
		appendBinaryStringInfo(out, m, 3);
	else
		appendStringInfoString(out, "138");
	fake_digits(fs, rest, 8);
	appendBinaryStringInfo(out, rest, 8);
}

static void
fake_cn_id(FakeStream *fs, StringInfo out)
{
	char		d[18];
	char		v[2];
	int			year;
	int			month;
	int			day;
	int			j;

	if (fake_value_digits(fs->value, fs->value_len, v, 2) == 2 &&
		detect_cn_province((v[0] - '0') * 10 + (v[1] - '0')))
	{
		d[0] = v[0];
		d[1] = v[1];
	}
	else
	{
		d[0] = '1';				/* Beijing */
		d[1] = '1';
	}
	/* district: city 01-20, county 01-30 */
	j = 1 + fake_below(fs, 20);
	d[2] = (char) ('0' + j / 10);
	d[3] = (char) ('0' + j % 10);
	j = 1 + fake_below(fs, 30);
	d[4] = (char) ('0' + j / 10);
	d[5] = (char) ('0' + j % 10);
	/* birth date: 1950-2005, any month, a day that month has */
	year = 1950 + fake_below(fs, 56);
	month = 1 + fake_below(fs, 12);
	do
		day = 1 + fake_below(fs, 31);
	while (!detect_valid_date(year, month, day));
	snprintf(d + 6, 9, "%04d%02d%02d", year, month, day);
	fake_digits(fs, d + 14, 3);
	d[17] = detect_cn_id_check(d);
	appendBinaryStringInfo(out, d, 18);
}

static void
fake_bank_card(FakeStream *fs, StringInfo out)
{
	char		d[FAKE_MAX_DIGITS];
	int			n = fake_value_digits(fs->value, fs->value_len, d, FAKE_MAX_DIGITS);

	if (n < 13)
	{
		/* not a card number: a UnionPay one of 16 digits */
		for (int i = 0; i < 6; i++)
			d[i] = "622202"[i];
		n = 16;
	}
	fake_digits(fs, d + 6, n - 7);
	d[n - 1] = detect_luhn_check(d, n);
	appendBinaryStringInfo(out, d, n);
}

/* The i-th character of a UTF-8 list (wrapping around). */
static void
fake_pick_utf8(FakeStream *fs, StringInfo out, const char *list, int limit)
{
	const unsigned char *p = (const unsigned char *) list;
	int			count = 0;
	int			i;

	while (p[0] != '\0' && count < limit)
	{
		p += pg_utf_mblen(p);
		count++;
	}
	i = fake_below(fs, count);
	p = (const unsigned char *) list;
	while (i-- > 0)
		p += pg_utf_mblen(p);
	appendBinaryStringInfo(out, (const char *) p, pg_utf_mblen(p));
}

static void
fake_cn_name(FakeStream *fs, StringInfo out)
{
	static const char given[] =
	"伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉建国红志文斌丹"
	"宇浩凯健俊帆帅旭宁龙林欣佳雪梅琳晨颖倩婷瑶怡博文海波峰亮成春梓涵子轩若汐"
	"诗雨思远嘉欣晓东志强永新世杰天佑一鸣雅琴慧玲淑珍晶莹振华";

	if (GetDatabaseEncoding() != PG_UTF8)
	{
		appendStringInfoChar(out, 'N');
		fake_hex(fs, out, 10);
		return;
	}
	fake_pick_utf8(fs, out, detect_surnames, 100);
	fake_pick_utf8(fs, out, given, 1000);
	if (fake_below(fs, 10) < 7)
		fake_pick_utf8(fs, out, given, 1000);
}

PG_FUNCTION_INFO_V1(pii_guard_fake);

/* SQL function: _fake(kind text, value text, secret bytea, attempt integer) returns text */
Datum
pii_guard_fake(PG_FUNCTION_ARGS)
{
	char	   *kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *value = PG_GETARG_TEXT_PP(1);
	bytea	   *secret = PG_GETARG_BYTEA_PP(2);
	FakeStream	fs;
	StringInfoData out;

	if (VARSIZE_ANY_EXHDR(secret) < FAKE_SECRET_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a pseudonym secret must have at least %d bytes", FAKE_SECRET_MIN)));
	memset(&fs, 0, sizeof(fs));
	fs.key = fake_key(fcinfo, secret);
	fs.kind = kind;
	fs.attempt = PG_GETARG_INT32(3);
	fs.value = VARDATA_ANY(value);
	fs.value_len = VARSIZE_ANY_EXHDR(value);
	fs.used = (int) sizeof(fs.block);
	initStringInfo(&out);

	/*
	 * A pseudonym must be what detect_kind() calls its kind (a masked copy
	 * is checked so, and so would a tester's tools): a candidate it does not
	 * recognise -- a name ending in a character names do not end in, say --
	 * is drawn again from the same stream, so the result stays a function of
	 * the secret, the value and the attempt.
	 */
	for (int draw = 0; draw < 16; draw++)
	{
		const char *expect = kind;
		const char *got;

		resetStringInfo(&out);
		if (strcmp(kind, "mobile") == 0 || strcmp(kind, "landline") == 0)
			fake_phone(&fs, &out);
		else if (strcmp(kind, "cn_id") == 0)
			fake_cn_id(&fs, &out);
		else if (strcmp(kind, "bank_card") == 0)
			fake_bank_card(&fs, &out);
		else if (strcmp(kind, "email") == 0)
		{
			appendStringInfoChar(&out, 'u');
			fake_hex(&fs, &out, 10);
			appendStringInfoString(&out, "@example.com");
		}
		else if (strcmp(kind, "cn_name") == 0)
			fake_cn_name(&fs, &out);
		else if (strcmp(kind, "text") == 0)
		{
			appendStringInfoString(&out, "redacted-");
			fake_hex(&fs, &out, 12);
			expect = NULL;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown pseudonym kind \"%s\"", kind),
					 errhint("The kinds are mobile, landline, cn_id, bank_card, email, cn_name and text.")));
		if (expect == NULL || GetDatabaseEncoding() != PG_UTF8)
			break;
		got = detect_kind(out.data, out.len);
		if (got != NULL && strcmp(got, expect) == 0)
			break;
	}
	explicit_bzero(fs.block, sizeof(fs.block));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}
