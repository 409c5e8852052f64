/*-------------------------------------------------------------------------
 *
 * fuzz_pseudonym.c
 *		Fuzz target for pseudonym(text), under the fixed test pseudonym key
 *		(fuzz_keys.c).
 *
 * The input is the value, any bytes.  What must hold: no ERROR (the
 * key exists), a result of exactly 16 lower-case hex digits, and the same
 * one for the same value whichever varlena header it has.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"

/* The pseudonym of a value, checked for its form. */
static text *
fuzz_pseudonym_of(const uint8_t *data, size_t size, bool short_header)
{
	Datum		result;
	text	   *out;
	int			i;

	if (!fuzz_call(pii_guard_pseudonym, &result, 1,
				   PointerGetDatum(fuzz_text(data, size, short_header))))
		fuzz_fail("pseudonym raised an ERROR: %s", fuzz_error.message);
	out = (text *) DatumGetPointer(result);
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(out) == 16, "a pseudonym of %zu bytes",
			   (size_t) VARSIZE_ANY_EXHDR(out));
	for (i = 0; i < 16; i++)
		FUZZ_CHECK((VARDATA_ANY(out)[i] >= '0' && VARDATA_ANY(out)[i] <= '9') ||
				   (VARDATA_ANY(out)[i] >= 'a' && VARDATA_ANY(out)[i] <= 'f'),
				   "a pseudonym that is not lower-case hex");
	return out;
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	text	   *a = fuzz_pseudonym_of(data, size, false);
	text	   *b = fuzz_pseudonym_of(data, size, true);

	FUZZ_CHECK(memcmp(VARDATA_ANY(a), VARDATA_ANY(b), 16) == 0,
			   "the same value got two pseudonyms");
	fuzz_reset_memory();
	return 0;
}
