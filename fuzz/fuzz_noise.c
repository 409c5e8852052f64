/*-------------------------------------------------------------------------
 *
 * fuzz_noise.c
 *		Fuzz target for noise(integer|bigint|double precision, ratio), under
 *		the fixed test pseudonym key (fuzz_keys.c).
 *
 * Input: one byte that picks the type (value % 3) and how the ratio is
 * read ((value / 3) % 2: as the raw 8 bytes of a double, NaN and
 * infinities included, or as a 32-bit fraction of 1, so that most inputs
 * are valid ratios), the ratio, then the value (4, 8 or 8 bytes).
 * noise(numeric) is not fuzzed: its arithmetic is the server's numeric
 * code, which exists only in the postgres executable.  What must hold:
 *
 *	- an ERROR only for a ratio outside [0, 1] (or NaN), and then 22023;
 *	- ratio 0 gives the value back; any other ratio moves an integer by at
 *	  least 1 and at most max(1, round(ratio * |value|)), clamped to the
 *	  type's range (so only a value at a bound may stay put);
 *	- a double moves by at most ratio * |value| (plus rounding: one unit in
 *	  the last place, which for subnormals is most of the value), stays
 *	  finite (clamped to the largest double) and is never NaN;
 *	- the same value and ratio give the same result twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "fuzz.h"

/* A little-endian uint64 from 8 input bytes. */
static uint64
fuzz_uint64(const uint8_t *p)
{
	uint64		x = 0;
	int			i;

	for (i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

/*
 * Call a noise function; false if it refused the ratio (as it must when,
 * and only when, the ratio is invalid).  Checks that it is deterministic.
 */
static bool
fuzz_noise_call(PGFunction fn, Datum value, double ratio, Datum *result)
{
	Datum		again;
	bool		ok = fuzz_call(fn, result, 2, value, Float8GetDatum(ratio));
	bool		valid = !isnan(ratio) && ratio >= 0.0 && ratio <= 1.0;

	if (!ok)
	{
		FUZZ_CHECK(!valid && fuzz_error.sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE,
				   "noise(.., %.17g) raised %s: %s", ratio,
				   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
		return false;
	}
	FUZZ_CHECK(valid, "noise accepted the ratio %.17g", ratio);
	FUZZ_CHECK(fuzz_call(fn, &again, 2, value, Float8GetDatum(ratio)) &&
			   again == *result, "noise is not deterministic");
	return true;
}

/* An integer's noise: |moved| in [1, max(1, round(ratio * |value|))]. */
static void
fuzz_check_integer(long double value, long double result, double ratio,
				   long double min, long double max)
{
	long double moved = fabsl(result - value);
	/* (double) value * offset rounds; allow for it on 64-bit values */
	long double bound = fmaxl(1.0L, rintl(ratio * fabsl(value)) + 1.0L +
							  fabsl(value) * 4.0L * DBL_EPSILON);

	if (ratio == 0.0)
	{
		FUZZ_CHECK(result == value, "noise with ratio 0 changed the value");
		return;
	}
	FUZZ_CHECK(moved <= bound, "noise(%.0Lf, %.17g) = %.0Lf moved too far",
			   value, ratio, result);
	FUZZ_CHECK(moved >= 1.0L || value == min || value == max,
			   "noise(%.0Lf, %.17g) did not move the value", value, ratio);
	FUZZ_CHECK(result >= min && result <= max, "noise left the type's range");
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			type;
	double		ratio;
	uint64		raw;
	Datum		result;

	if (size < 1 + 8 + 8)
		return 0;
	type = data[0] % 3;
	raw = fuzz_uint64(data + 1);
	if ((data[0] / 3) % 2 == 0)
		memcpy(&ratio, &raw, sizeof(ratio));
	else
		ratio = (double) (uint32) raw / (double) PG_UINT32_MAX;
	data += 9;

	switch (type)
	{
		case 0:
			{
				int32		value = (int32) fuzz_uint64(data);

				if (fuzz_noise_call(pii_guard_noise_int4, Int32GetDatum(value),
									ratio, &result))
					fuzz_check_integer(value, DatumGetInt32(result), ratio,
									   PG_INT32_MIN, PG_INT32_MAX);
				break;
			}
		case 1:
			{
				int64		value = (int64) fuzz_uint64(data);

				if (fuzz_noise_call(pii_guard_noise_int8, Int64GetDatum(value),
									ratio, &result))
					fuzz_check_integer(value, DatumGetInt64(result), ratio,
									   (long double) PG_INT64_MIN,
									   (long double) PG_INT64_MAX);
				break;
			}
		case 2:
			{
				uint64		bits = fuzz_uint64(data);
				double		value;
				double		out;

				memcpy(&value, &bits, sizeof(value));
				if (!fuzz_noise_call(pii_guard_noise_float8, Float8GetDatum(value),
									 ratio, &result))
					break;
				out = DatumGetFloat8(result);
				if (isnan(value) || isinf(value) || ratio == 0.0)
				{
					FUZZ_CHECK(memcmp(&out, &value, sizeof(out)) == 0,
							   "noise changed NaN, an infinity or a ratio-0 value");
					break;
				}
				FUZZ_CHECK(isfinite(out), "noise(%.17g, %.17g) is not finite", value, ratio);
				/* (plus one unit in the last place: subnormals round coarsely) */
				FUZZ_CHECK(fabsl((long double) out - value) <=
						   fabsl((long double) value) * ratio * (1.0L + 4.0L * DBL_EPSILON) +
						   fabs(nextafter(value, INFINITY) - value),
						   "noise(%.17g, %.17g) = %.17g moved too far", value, ratio, out);
				break;
			}
	}
	fuzz_reset_memory();
	return 0;
}
