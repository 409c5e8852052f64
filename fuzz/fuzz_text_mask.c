/*-------------------------------------------------------------------------
 *
 * fuzz_text_mask.c
 *		Fuzz target for one text mask: mask_phone, mask_cn_id,
 *		mask_bank_card, mask_email, mask_name or mask_address, chosen at
 *		build time with -DFUZZ_MASK=pii_guard_mask_<name>.
 *
 * The input is the value itself, any bytes.  It is masked twice: in a UTF8
 * database with the 1-byte header short values have on disk (a guard page
 * right after it: see pg_stubs.c), and in another server encoding (picked
 * by the input's length, so the fuzzer can reach each) with a 4-byte
 * header.  What must hold for every input, valid in the encoding or not:
 *
 *	- no ERROR at all: these masks are LEAKPROOF, which promises that no
 *	  value makes them fail (mask.c's header);
 *	- the result is at most 4 bytes longer than the value (mask.c promises
 *	  the input's size plus a constant);
 *	- a non-empty value is masked: the result has at least one '*';
 *	- a value that is valid in the encoding gives a result that is too
 *	  (a mask never cuts a character in two).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"

#ifndef FUZZ_MASK
#error "build with -DFUZZ_MASK=pii_guard_mask_<name>"
#endif
#define FUZZ_STR2(x) #x
#define FUZZ_STR(x) FUZZ_STR2(x)

/* Server encodings with multibyte characters, and two single-byte ones. */
static const int other_encodings[] = {
	PG_EUC_CN, PG_EUC_JP, PG_EUC_KR, PG_EUC_TW, PG_EUC_JIS_2004,
	PG_MULE_INTERNAL, PG_SQL_ASCII, PG_LATIN1, PG_WIN1251,
};

/* Mask one value in one encoding and check the result. */
static void
fuzz_mask_once(const uint8_t *data, size_t size, int encoding, bool short_header)
{
	Datum		result;
	text	   *out;
	size_t		outlen;

	fuzz_set_encoding(encoding);
	if (!fuzz_call(FUZZ_MASK, &result, 1,
				   PointerGetDatum(fuzz_text(data, size, short_header))))
		fuzz_fail("%s raised an ERROR (%s) in %s: %s", FUZZ_STR(FUZZ_MASK),
				  unpack_sql_state(fuzz_error.sqlerrcode),
				  pg_encoding_to_char(encoding), fuzz_error.message);
	out = (text *) DatumGetPointer(result);
	outlen = VARSIZE_ANY_EXHDR(out);
	FUZZ_CHECK(outlen <= size + 4, "%s: %zu bytes in, %zu out",
			   FUZZ_STR(FUZZ_MASK), size, outlen);
	FUZZ_CHECK(size == 0 || memchr(VARDATA_ANY(out), '*', outlen) != NULL,
			   "%s showed a value unmasked (%s)", FUZZ_STR(FUZZ_MASK),
			   pg_encoding_to_char(encoding));
	FUZZ_CHECK(!fuzz_valid_in_encoding(encoding, (const char *) data, size) ||
			   fuzz_valid_in_encoding(encoding, VARDATA_ANY(out), outlen),
			   "%s made a valid %s value invalid", FUZZ_STR(FUZZ_MASK),
			   pg_encoding_to_char(encoding));
	fuzz_reset_memory();
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_mask_once(data, size, PG_UTF8, true);
	fuzz_mask_once(data, size,
				   other_encodings[size % lengthof(other_encodings)], false);
	fuzz_set_encoding(PG_UTF8);
	return 0;
}
