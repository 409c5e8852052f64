/*-------------------------------------------------------------------------
 *
 * fuzz.h
 *		What the fuzz targets share: calling a pii_guard SQL function
 *		outside a server, and the checks that turn a wrong result into a
 *		crash the fuzzer reports.
 *
 * The targets link pii_guard's own object files (mask.o, crypto.o,
 * enctype.o, built from src/ unchanged) against PostgreSQL's libpgcommon
 * and libpgport and against pg_stubs.c, which stands in for the server:
 * palloc is malloc, one allocation each, so that AddressSanitizer sees an
 * overrun of a palloc'd buffer as what it is; ereport(ERROR) longjmps back
 * to fuzz_call(), like the server's PG_TRY.  An ERROR is a valid outcome
 * for most inputs (each target says which errors it accepts); a crash, a
 * sanitizer report or a failed check is a bug.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PII_GUARD_FUZZ_H
#define PII_GUARD_FUZZ_H

#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"

/* The error the last fuzz_call() that failed raised. */
typedef struct FuzzError
{
	int			elevel;
	int			sqlerrcode;
	const char *funcname;		/* where it was raised */
	char		message[512];
	char		detail[512];
} FuzzError;

extern FuzzError fuzz_error;

/* pg_stubs.c: the stand-in server. */
extern void fuzz_set_encoding(int encoding);
extern void fuzz_reset_memory(void);
extern void fuzz_release_resources(bool isCommit);
extern void fuzz_fail_next_alloc(void);
extern bool fuzz_call(PGFunction fn, Datum *result, int nargs,...);
extern text *fuzz_text(const uint8_t *data, size_t len, bool short_header);
/* (printf, not PostgreSQL's gnu_printf: clang builds the targets) */
extern void fuzz_fail(const char *fmt,...)
			__attribute__((format(printf, 1, 2))) pg_attribute_noreturn();
extern bool fuzz_valid_in_encoding(int encoding, const char *s, size_t len);

/* Abort with a message unless cond holds. */
#define FUZZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
			fuzz_fail(__VA_ARGS__); \
	} while (0)

/* fuzz_keys.c: fixed test data keys in place of keys.c. */
#define FUZZ_ENCRYPT_KEY_ID		1
#define FUZZ_BLIND_KEY_ID		2
#define FUZZ_PSEUDONYM_KEY_ID	3

/* The SQL functions under test (declared by PG_FUNCTION_INFO_V1 in src/). */
extern Datum pii_guard_mask_phone(PG_FUNCTION_ARGS);
extern Datum pii_guard_mask_cn_id(PG_FUNCTION_ARGS);
extern Datum pii_guard_mask_bank_card(PG_FUNCTION_ARGS);
extern Datum pii_guard_mask_email(PG_FUNCTION_ARGS);
extern Datum pii_guard_mask_name(PG_FUNCTION_ARGS);
extern Datum pii_guard_mask_address(PG_FUNCTION_ARGS);
extern Datum pii_guard_partial(PG_FUNCTION_ARGS);
extern Datum pii_guard_pseudonym(PG_FUNCTION_ARGS);
extern Datum pii_guard_noise_int4(PG_FUNCTION_ARGS);
extern Datum pii_guard_noise_int8(PG_FUNCTION_ARGS);
extern Datum pii_guard_noise_float8(PG_FUNCTION_ARGS);
extern Datum pii_guard_encrypted_text_in(PG_FUNCTION_ARGS);
extern Datum pii_guard_encrypted_bytea_in(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_out(PG_FUNCTION_ARGS);
extern Datum pii_guard_encrypted_text_recv(PG_FUNCTION_ARGS);
extern Datum pii_guard_encrypted_bytea_recv(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_send(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_cmp(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_hash(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_hash_extended(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_key_id(PG_FUNCTION_ARGS);
extern Datum pii_guard_envelope_eq_plain(PG_FUNCTION_ARGS);
extern Datum pii_guard_reencrypt(PG_FUNCTION_ARGS);

/* libFuzzer's entry points (standalone.c calls them without libFuzzer). */
extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif							/* PII_GUARD_FUZZ_H */
