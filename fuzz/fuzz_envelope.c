/*-------------------------------------------------------------------------
 *
 * fuzz_envelope.c
 *		Fuzz target for the envelope: its text and binary input, the
 *		functions that read a stored envelope, and sealing and opening.
 *
 * The first input byte picks the type (bit 0: encrypted_text or
 * encrypted_bytea) and the mode (bits 1-2); the rest is the payload.
 *
 *	0 text input: "pii_guard:" || payload through encrypted_*_in, the path
 *	  of COPY and of a restore (envelope_from_text: base64 decoding, then
 *	  crypto_check_envelope).  Errors: 22P02 only.  An accepted envelope
 *	  must print and read back to the same bytes, and go through 3.
 *	1 binary input: the payload as a wire message through encrypted_*_recv
 *	  (crypto_check_envelope on raw bytes).  Errors: 22P03 only.  An
 *	  accepted envelope must send back as the same bytes, and go through 3.
 *	2 a stored value: the payload as the datum itself, as a damaged row
 *	  would hold it, through everything that reads one (3).
 *	3 seal and open: the payload (after two bytes that say which envelope
 *	  byte to flip, and with what) is encrypted under the test key.  The
 *	  envelope must pass the input check, open to the payload, re-encrypt,
 *	  equal its plaintext by blind index; flipped, it must not open.
 *
 * Reading a stored value ("3" above): key_id, hash, hash_extended, cmp,
 * eq_plain, reencrypt and crypto_open.  Errors: XX001 (damaged) and 42704
 * (no such key) only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/elog.h"

#include "fuzz.h"
#include "pii_guard.h"

#define ERRORS_OF_STORED_VALUES(code) \
	((code) == ERRCODE_DATA_CORRUPTED || (code) == ERRCODE_UNDEFINED_OBJECT)

/* crypto_open(envelope, kind) as an SQL-callable function. */
static Datum
fuzz_open(PG_FUNCTION_ARGS)
{
	return PointerGetDatum(crypto_open(PG_GETARG_BYTEA_PP(0), PG_GETARG_CHAR(1)));
}

/* The SQL type of an envelope kind, for messages. */
static const char *
type_name(char kind)
{
	return kind == ENV_KIND_TEXT ? "encrypted_text" : "encrypted_bytea";
}

/*
 * Run every function that reads a stored envelope on env.  Returns the
 * plaintext if it opened, else NULL.
 */
static bytea *
fuzz_stored(bytea *env, bytea *plain_guess)
{
	Datum		r;
	Datum		r2;
	bool		ok;
	bool		header_ok;
	char		kind;

	header_ok = fuzz_call(pii_guard_envelope_key_id, &r, 1, PointerGetDatum(env));
	FUZZ_CHECK(header_ok || fuzz_error.sqlerrcode == ERRCODE_DATA_CORRUPTED,
			   "key_id: unexpected error %s: %s",
			   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
	FUZZ_CHECK(header_ok == (VARSIZE_ANY_EXHDR(env) >= ENV_HEADER_LEN),
			   "key_id: header check disagrees with the length");
	if (!header_ok)
		return NULL;
	FUZZ_CHECK((uint32) DatumGetInt32(r) == envelope_key_id(env),
			   "key_id disagrees with envelope_key_id");

	FUZZ_CHECK(fuzz_call(pii_guard_envelope_hash, &r, 1, PointerGetDatum(env)),
			   "hash failed on a value with a header: %s", fuzz_error.message);
	FUZZ_CHECK(fuzz_call(pii_guard_envelope_hash_extended, &r, 2,
						 PointerGetDatum(env), Int64GetDatum(0)),
			   "hash_extended failed: %s", fuzz_error.message);
	FUZZ_CHECK(fuzz_call(pii_guard_envelope_cmp, &r, 2, PointerGetDatum(env),
						 PointerGetDatum(env)) && DatumGetInt32(r) == 0,
			   "an envelope does not compare equal to itself");
	if (plain_guess != NULL)
	{
		FUZZ_CHECK(fuzz_call(pii_guard_envelope_eq_plain, &r, 2,
							 PointerGetDatum(env), PointerGetDatum(plain_guess)),
				   "eq_plain failed: %s", fuzz_error.message);
	}

	kind = VARDATA_ANY(env)[ENV_OFF_KIND];
	ok = fuzz_call(fuzz_open, &r, 2, PointerGetDatum(env), CharGetDatum(kind));
	FUZZ_CHECK(ok || ERRORS_OF_STORED_VALUES(fuzz_error.sqlerrcode),
			   "crypto_open: unexpected error %s: %s",
			   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
	if (!ok)
	{
		FUZZ_CHECK(!fuzz_call(pii_guard_reencrypt, &r2, 1, PointerGetDatum(env)) &&
				   ERRORS_OF_STORED_VALUES(fuzz_error.sqlerrcode),
				   "reencrypt did what crypto_open refused, or failed otherwise: %s",
				   fuzz_error.message);
		return NULL;
	}
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(env) >= ENV_OVERHEAD &&
			   VARSIZE_ANY_EXHDR(DatumGetPointer(r)) ==
			   VARSIZE_ANY_EXHDR(env) - ENV_OVERHEAD,
			   "crypto_open returned a plaintext of the wrong length");

	/* Re-encryption gives a new envelope of the same plaintext. */
	FUZZ_CHECK(fuzz_call(pii_guard_reencrypt, &r2, 1, PointerGetDatum(env)),
			   "reencrypt failed on an envelope that opens: %s", fuzz_error.message);
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(DatumGetPointer(r2)) == VARSIZE_ANY_EXHDR(env) &&
			   memcmp(VARDATA_ANY(DatumGetPointer(r2)), VARDATA_ANY(env),
					  ENV_OFF_NONCE) == 0,
			   "reencrypt changed the envelope's header or length");
	FUZZ_CHECK(fuzz_call(fuzz_open, &r2, 2, r2, CharGetDatum(kind)) &&
			   VARSIZE_ANY_EXHDR(DatumGetPointer(r2)) ==
			   VARSIZE_ANY_EXHDR(DatumGetPointer(r)) &&
			   memcmp(VARDATA_ANY(DatumGetPointer(r2)), VARDATA_ANY(DatumGetPointer(r)),
					  VARSIZE_ANY_EXHDR(DatumGetPointer(r))) == 0,
			   "a re-encrypted envelope does not open to the same plaintext");
	return (bytea *) DatumGetPointer(r);
}

/* An envelope accepted by an input function: structurally sound. */
static void
fuzz_check_accepted(bytea *env, char kind)
{
	const uint8 *e = (const uint8 *) VARDATA_ANY(env);

	FUZZ_CHECK(VARSIZE_ANY_EXHDR(env) >= ENV_OVERHEAD &&
			   e[ENV_OFF_VERSION] == ENV_VERSION &&
			   e[ENV_OFF_KIND] == (uint8) kind && envelope_key_id(env) != 0,
			   "%s input accepted a malformed envelope", type_name(kind));
}

/* Text form: "pii_guard:" || base64, through the type's input function. */
static void
fuzz_text_form(const uint8_t *data, size_t size, char kind, bool then_stored)
{
	PGFunction in = kind == ENV_KIND_TEXT ?
		pii_guard_encrypted_text_in : pii_guard_encrypted_bytea_in;
	char	   *s = palloc(ENV_TEXT_PREFIX_LEN + size + 1);
	Datum		env;
	Datum		out;
	Datum		again;

	memcpy(s, ENV_TEXT_PREFIX, ENV_TEXT_PREFIX_LEN);
	memcpy(s + ENV_TEXT_PREFIX_LEN, data, size);
	s[ENV_TEXT_PREFIX_LEN + size] = '\0';	/* a cstring ends at a NUL */
	if (!fuzz_call(in, &env, 1, CStringGetDatum(s)))
	{
		FUZZ_CHECK(fuzz_error.sqlerrcode == ERRCODE_INVALID_TEXT_REPRESENTATION,
				   "%s input: unexpected error %s: %s", type_name(kind),
				   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
		return;
	}
	fuzz_check_accepted((bytea *) DatumGetPointer(env), kind);

	FUZZ_CHECK(fuzz_call(pii_guard_envelope_out, &out, 1, env),
			   "envelope_out failed: %s", fuzz_error.message);
	FUZZ_CHECK(strncmp(DatumGetCString(out), ENV_TEXT_PREFIX, ENV_TEXT_PREFIX_LEN) == 0,
			   "envelope_out lost the prefix");
	FUZZ_CHECK(fuzz_call(in, &again, 1, out),
			   "%s input refused its own output: %s", type_name(kind),
			   fuzz_error.message);
	FUZZ_CHECK(VARSIZE_ANY(DatumGetPointer(again)) == VARSIZE_ANY(DatumGetPointer(env)) &&
			   memcmp(DatumGetPointer(again), DatumGetPointer(env),
					  VARSIZE_ANY(DatumGetPointer(env))) == 0,
			   "an envelope does not read back as it printed");
	if (then_stored)
		fuzz_stored((bytea *) DatumGetPointer(env), NULL);
}

/* Binary form: a wire message through the type's receive function. */
static void
fuzz_binary_form(const uint8_t *data, size_t size, char kind, bool then_stored)
{
	PGFunction recv = kind == ENV_KIND_TEXT ?
		pii_guard_encrypted_text_recv : pii_guard_encrypted_bytea_recv;
	StringInfoData buf;
	Datum		env;
	Datum		sent;

	/* An exact-size copy, as the message buffer would hold the bytes. */
	buf.data = palloc(Max(size, 1));
	memcpy(buf.data, data, size);
	buf.len = size;
	buf.maxlen = Max(size, 1);
	buf.cursor = 0;
	if (!fuzz_call(recv, &env, 1, PointerGetDatum(&buf)))
	{
		FUZZ_CHECK(fuzz_error.sqlerrcode == ERRCODE_INVALID_BINARY_REPRESENTATION,
				   "%s receive: unexpected error %s: %s", type_name(kind),
				   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
		return;
	}
	fuzz_check_accepted((bytea *) DatumGetPointer(env), kind);
	FUZZ_CHECK(fuzz_call(pii_guard_envelope_send, &sent, 1, env),
			   "envelope_send failed: %s", fuzz_error.message);
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(DatumGetPointer(sent)) == size &&
			   memcmp(VARDATA_ANY(DatumGetPointer(sent)), data, size) == 0,
			   "an envelope does not send as it was received");
	if (then_stored)
		fuzz_stored((bytea *) DatumGetPointer(env), NULL);
}

/* Seal the payload, check the envelope, open it; then tamper with it. */
static void
fuzz_seal_open(const uint8_t *data, size_t size, char kind)
{
	size_t		flip_at;
	uint8		flip;
	bytea	   *env;
	bytea	   *plain;
	bytea	   *opened;
	size_t		envlen;
	char	   *text_form;
	Datum		r;
	bool		ok;

	if (size < 2)
		return;
	flip_at = data[0];
	flip = data[1];
	data += 2;
	size -= 2;

	plain = (bytea *) fuzz_text(data, size, false);
	PG_TRY();
	{
		env = crypto_seal(kind, (const char *) data, size);
	}
	PG_CATCH();
	{
		fuzz_fail("crypto_seal failed: %s", fuzz_error.message);
	}
	PG_END_TRY();
	envlen = VARSIZE_ANY_EXHDR(env);
	FUZZ_CHECK(envlen == size + ENV_OVERHEAD, "sealed envelope has the wrong length");
	fuzz_check_accepted(env, kind);
	FUZZ_CHECK(envelope_key_id(env) == FUZZ_ENCRYPT_KEY_ID,
			   "sealed under a key that is not the active one");

	/* Both input forms accept it and give it back unchanged. */
	text_form = DatumGetCString(DirectFunctionCall1(pii_guard_envelope_out,
													PointerGetDatum(env)));
	fuzz_text_form((const uint8_t *) text_form + ENV_TEXT_PREFIX_LEN,
				   strlen(text_form) - ENV_TEXT_PREFIX_LEN, kind, false);
	fuzz_binary_form((const uint8_t *) VARDATA_ANY(env), envlen, kind, false);

	opened = fuzz_stored(env, plain);
	FUZZ_CHECK(opened != NULL, "a freshly sealed envelope does not open: %s",
			   fuzz_error.message);
	FUZZ_CHECK(VARSIZE_ANY_EXHDR(opened) == size &&
			   memcmp(VARDATA_ANY(opened), data, size) == 0,
			   "an envelope opens to another plaintext");
	FUZZ_CHECK(fuzz_call(pii_guard_envelope_eq_plain, &r, 2, PointerGetDatum(env),
						 PointerGetDatum(plain)) && DatumGetBool(r),
			   "an envelope is not equal to its own plaintext");

	/* One byte changed anywhere: the envelope must not open. */
	if (flip == 0)
		return;
	flip_at %= envlen;
	VARDATA(env)[flip_at] ^= flip;
	ok = fuzz_call(fuzz_open, &r, 2, PointerGetDatum(env), CharGetDatum(kind));
	FUZZ_CHECK(!ok, "an envelope changed at byte %zu still opens", flip_at);
	FUZZ_CHECK(ERRORS_OF_STORED_VALUES(fuzz_error.sqlerrcode),
			   "a changed envelope: unexpected error %s: %s",
			   unpack_sql_state(fuzz_error.sqlerrcode), fuzz_error.message);
}

/* libFuzzer's entry point: one input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		kind;

	if (size < 1)
		return 0;
	kind = (data[0] & 1) ? ENV_KIND_BYTEA : ENV_KIND_TEXT;
	switch ((data[0] >> 1) & 3)
	{
		case 0:
			fuzz_text_form(data + 1, size - 1, kind, true);
			break;
		case 1:
			fuzz_binary_form(data + 1, size - 1, kind, true);
			break;
		case 2:
			fuzz_stored((bytea *) fuzz_text(data + 1, size - 1, size % 2 == 0),
						(bytea *) fuzz_text(data + 1, size - 1, false));
			break;
		case 3:
			fuzz_seal_open(data + 1, size - 1, kind);
			break;
	}
	fuzz_reset_memory();
	return 0;
}
