/*-------------------------------------------------------------------------
 *
 * fuzz_partial.c
 *		Fuzz target for partial(value text, keep_prefix int, pad text,
 *		keep_suffix int).
 *
 * Input: keep_prefix and keep_suffix as 4 bytes each (little-endian, any
 * int32, negative ones included), the pad's length (one byte) and the pad,
 * then the value.  The value is read in UTF8 with a 1-byte varlena header
 * (and a guard page after it), and in EUC_TW (characters of up to 4
 * bytes) with a 4-byte header.  What must hold:
 *
 *	- an ERROR only for a negative count, and then 22023;
 *	- the result is a prefix of the value, the pad, and a suffix of the
 *	  value, and at least one byte of a non-empty value is hidden (an
 *	  empty value gives an empty result);
 *	- for a value valid in the encoding, prefix and suffix are whole
 *	  characters, and (with a valid pad) the result is valid too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"

/* A little-endian int32 from 4 input bytes. */
static int32
fuzz_int32(const uint8_t *p)
{
	return (int32) ((uint32) p[0] | (uint32) p[1] << 8 |
					(uint32) p[2] << 16 | (uint32) p[3] << 24);
}

/*
 * Is out = value[0..p) || pad || value[len-q..len) with p + q < len, and,
 * if whole_chars, value[0..p) and value[len-q..len) valid in encoding?  The
 * split is ambiguous (an empty pad, a pad that repeats the value), so every
 * candidate is tried.
 */
static bool
fuzz_is_partial(const char *out, size_t outlen, const char *s, size_t len,
				const char *pad, size_t padlen, bool whole_chars, int encoding)
{
	size_t		p;

	if (outlen < padlen)
		return false;
	for (p = 0; p <= len && p <= outlen - padlen; p++)
	{
		size_t		q = outlen - padlen - p;

		if (p > 0 && out[p - 1] != s[p - 1])
			break;
		if (q <= len && p + q < len &&
			memcmp(out + p, pad, padlen) == 0 &&
			memcmp(out + p + padlen, s + len - q, q) == 0 &&
			(!whole_chars ||
			 (fuzz_valid_in_encoding(encoding, s, p) &&
			  fuzz_valid_in_encoding(encoding, s + len - q, q))))
			return true;
	}
	return false;
}

/* Run partial() once in one encoding and check the result. */
static void
fuzz_partial_once(int32 prefix, int32 suffix, const uint8_t *pad, size_t padlen,
				  const uint8_t *value, size_t len, int encoding, bool short_header)
{
	Datum		result;
	text	   *out;
	bool		valid;

	fuzz_set_encoding(encoding);
	if (!fuzz_call(pii_guard_partial, &result, 4,
				   PointerGetDatum(fuzz_text(value, len, short_header)),
				   Int32GetDatum(prefix),
				   PointerGetDatum(fuzz_text(pad, padlen, short_header)),
				   Int32GetDatum(suffix)))
	{
		FUZZ_CHECK((prefix < 0 || suffix < 0) &&
				   fuzz_error.sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE,
				   "partial(.., %d, .., %d) raised %s: %s", prefix, suffix,
				   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
		return;
	}
	FUZZ_CHECK(prefix >= 0 && suffix >= 0,
			   "partial accepted a negative count (%d, %d)", prefix, suffix);
	out = (text *) DatumGetPointer(result);
	if (len == 0)
	{
		/* An empty value stays empty: there is nothing to pad. */
		FUZZ_CHECK(VARSIZE_ANY_EXHDR(out) == 0, "partial of an empty value is not empty");
		return;
	}
	valid = fuzz_valid_in_encoding(encoding, (const char *) value, len);
	FUZZ_CHECK(fuzz_is_partial(VARDATA_ANY(out), VARSIZE_ANY_EXHDR(out),
							   (const char *) value, len, (const char *) pad,
							   padlen, valid, encoding),
			   "partial(.., %d, .., %d) is not prefix || pad || suffix, shows every byte or cuts a character (%s)",
			   prefix, suffix, pg_encoding_to_char(encoding));
	FUZZ_CHECK(!valid ||
			   !fuzz_valid_in_encoding(encoding, (const char *) pad, padlen) ||
			   fuzz_valid_in_encoding(encoding, VARDATA_ANY(out),
									  VARSIZE_ANY_EXHDR(out)),
			   "partial made valid text invalid (%s)", pg_encoding_to_char(encoding));
	fuzz_reset_memory();
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32		prefix;
	int32		suffix;
	size_t		padlen;

	if (size < 9)
		return 0;
	prefix = fuzz_int32(data);
	suffix = fuzz_int32(data + 4);
	padlen = Min(data[8], size - 9);
	data += 9;
	size -= 9;
	fuzz_partial_once(prefix, suffix, data, padlen, data + padlen, size - padlen,
					  PG_UTF8, true);
	fuzz_partial_once(prefix, suffix, data, padlen, data + padlen, size - padlen,
					  PG_EUC_TW, false);
	fuzz_set_encoding(PG_UTF8);
	fuzz_reset_memory();
	return 0;
}
