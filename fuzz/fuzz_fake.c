/*-------------------------------------------------------------------------
 *
 * fuzz_fake.c
 *		Fuzz target for the pseudonyms of masked copies (fake.c):
 *		_fake(kind, value, secret, attempt) of any value, the kind, the
 *		secret (16-47 bytes) and the attempt taken from the input, in a
 *		UTF8 database and in another server encoding.  What must hold:
 *
 *	- no ERROR at all for the seven kinds and a secret of 16 bytes or more;
 *	- the same arguments, the same pseudonym (joins in the copy rely on it);
 *	- the form of the kind: a mobile number detect_kind() calls a mobile,
 *	  or (from a landline) 0 + area code + '-' + 8 digits; a resident ID it
 *	  calls a cn_id (province, birth date, check character); a card number
 *	  of 13-19 digits with a valid Luhn digit; an e-mail address it calls
 *	  one; in UTF8 a name it calls a cn_name; redacted-<12 hex digits>;
 *	- a pseudonym never contains the value's bytes beyond what the kind
 *	  keeps (a prefix of at most six digits).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "fuzz.h"
#include "pii_guard.h"

extern Datum pii_guard_fake(PG_FUNCTION_ARGS);

static const char *const kinds[] = {
	"mobile", "landline", "cn_id", "bank_card", "email", "cn_name", "text",
};

static text *
fuzz_fake_call(const char *kind, const uint8_t *value, size_t len, const uint8_t *secret,
			   size_t secret_len, int32 attempt)
{
	Datum		result;

	if (!fuzz_call(pii_guard_fake, &result, 4, CStringGetTextDatum(kind),
				   PointerGetDatum(fuzz_text(value, len, false)),
				   PointerGetDatum(fuzz_text(secret, secret_len, false)),
				   Int32GetDatum(attempt)))
		fuzz_fail("_fake(%s) raised an ERROR: %s", kind, fuzz_error.message);
	return (text *) DatumGetPointer(result);
}

static bool
all_digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

static void
fuzz_fake_check(const char *kind, const char *out, int n, int encoding)
{
	const char *detected = detect_kind(out, n);

	if (strcmp(kind, "mobile") == 0 || strcmp(kind, "landline") == 0)
		FUZZ_CHECK((n == 11 && detected != NULL && strcmp(detected, "mobile") == 0) ||
				   ((n == 12 || n == 13) && out[0] == '0' && out[n - 9] == '-' &&
					all_digits(out, n - 9) && all_digits(out + n - 8, 8)),
				   "a %s pseudonym \"%.*s\"", kind, n, out);
	else if (strcmp(kind, "cn_id") == 0)
		FUZZ_CHECK(detected != NULL && strcmp(detected, "cn_id") == 0,
				   "a cn_id pseudonym \"%.*s\"", n, out);
	else if (strcmp(kind, "bank_card") == 0)
	{
		char		d[19];

		FUZZ_CHECK(n >= 13 && n <= 19 && all_digits(out, n), "a card pseudonym \"%.*s\"", n, out);
		memcpy(d, out, n);
		FUZZ_CHECK(detect_luhn_check(d, n) == out[n - 1], "a card pseudonym failing Luhn: \"%.*s\"", n, out);
	}
	else if (strcmp(kind, "email") == 0)
		FUZZ_CHECK(detected != NULL && strcmp(detected, "email") == 0 && n == 23,
				   "an e-mail pseudonym \"%.*s\"", n, out);
	else if (strcmp(kind, "cn_name") == 0)
		FUZZ_CHECK(encoding == PG_UTF8 ? (detected != NULL && strcmp(detected, "cn_name") == 0)
				   : (n == 11 && out[0] == 'N'),
				   "a name pseudonym \"%.*s\" in %s", n, out, pg_encoding_to_char(encoding));
	else
		FUZZ_CHECK(n == 21 && strncmp(out, "redacted-", 9) == 0, "a text pseudonym \"%.*s\"", n, out);
}

/* libFuzzer's entry point: one input (kind, attempt, secret length, secret, value). */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *kind;
	size_t		secret_len;
	int32		attempt;
	int			encoding;
	text	   *a;
	text	   *b;

	if (size < 3)
		return 0;
	kind = kinds[data[0] % lengthof(kinds)];
	attempt = data[1] % 8;
	secret_len = 16 + data[2] % 32;
	if (size < 3 + secret_len)
		return 0;
	encoding = (data[0] / lengthof(kinds)) % 2 == 0 ? PG_UTF8 : PG_GBK;
	if (encoding == PG_GBK)
		encoding = PG_EUC_CN;		/* (a server encoding) */
	fuzz_set_encoding(encoding);
	a = fuzz_fake_call(kind, data + 3 + secret_len, size - 3 - secret_len, data + 3, secret_len, attempt);
	b = fuzz_fake_call(kind, data + 3 + secret_len, size - 3 - secret_len, data + 3, secret_len, attempt);
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
			   memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0,
			   "the same arguments gave two pseudonyms");
	fuzz_fake_check(kind, VARDATA_ANY(a), VARSIZE_ANY_EXHDR(a), encoding);
	fuzz_set_encoding(PG_UTF8);
	fuzz_reset_memory();
	return 0;
}
