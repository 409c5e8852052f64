/*-------------------------------------------------------------------------
 *
 * fuzz_detect.c
 *		Fuzz target for the detectors (detect.c): detect_kind() of any bytes,
 *		in a UTF8 database and in another server encoding (picked by the
 *		input's length).  What must hold for every input, valid in the
 *		encoding or not:
 *
 *	- no ERROR at all: detect_kind() is documented never to fail;
 *	- the answer is NULL or one of the ten kinds;
 *	- the kinds that need Chinese characters (cn_name, plate, address) are
 *	  found in a UTF8 database only;
 *	- a cn_id is 18 bytes once trimmed of blanks, a mobile at most 20
 *	  (digits and separators), an ipv4 at most 15.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"
#include "pii_guard.h"

static const int other_encodings[] = {
	PG_EUC_CN, PG_EUC_JP, PG_EUC_KR, PG_EUC_TW, PG_EUC_JIS_2004,
	PG_MULE_INTERNAL, PG_SQL_ASCII, PG_LATIN1, PG_WIN1251,
};

static const char *const kinds[] = {
	"cn_id", "mobile", "bank_card", "email", "landline", "passport", "ipv4",
	"plate", "cn_name", "address",
};

/* The length of s without its leading and trailing blanks. */
static size_t
trimmed_length(const uint8_t *s, size_t n)
{
	size_t		a = 0;

	while (a < n && (s[a] == ' ' || s[a] == '\t'))
		a++;
	while (n > a && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return n - a;
}

static void
fuzz_detect_once(const uint8_t *data, size_t size, int encoding)
{
	const char *volatile kind = NULL;
	volatile bool ok = true;
	int			k;

	fuzz_set_encoding(encoding);
	PG_TRY();
	{
		kind = detect_kind((const char *) data, (int) Min(size, (size_t) PG_INT32_MAX));
	}
	PG_CATCH();
	{
		ok = false;
	}
	PG_END_TRY();
	FUZZ_CHECK(ok, "detect_kind raised an ERROR (%s) in %s: %s",
			   unpack_sql_state(fuzz_error.sqlerrcode), pg_encoding_to_char(encoding),
			   fuzz_error.message);
	if (kind != NULL)
	{
		for (k = 0; k < (int) lengthof(kinds); k++)
			if (strcmp(kind, kinds[k]) == 0)
				break;
		FUZZ_CHECK(k < (int) lengthof(kinds), "detect_kind answered an unknown kind \"%s\"", kind);
		FUZZ_CHECK(encoding == PG_UTF8 ||
				   (strcmp(kind, "cn_name") != 0 && strcmp(kind, "plate") != 0 &&
					strcmp(kind, "address") != 0),
				   "detect_kind found %s in %s", kind, pg_encoding_to_char(encoding));
		FUZZ_CHECK(strcmp(kind, "cn_id") != 0 || trimmed_length(data, size) == 18,
				   "a cn_id of %zu bytes", trimmed_length(data, size));
		FUZZ_CHECK(strcmp(kind, "mobile") != 0 || trimmed_length(data, size) <= 20,
				   "a mobile of %zu bytes", trimmed_length(data, size));
		FUZZ_CHECK(strcmp(kind, "ipv4") != 0 || trimmed_length(data, size) <= 15,
				   "an ipv4 of %zu bytes", trimmed_length(data, size));
	}
	fuzz_reset_memory();
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_detect_once(data, size, PG_UTF8);
	fuzz_detect_once(data, size, other_encodings[size % lengthof(other_encodings)]);
	fuzz_set_encoding(PG_UTF8);
	return 0;
}
