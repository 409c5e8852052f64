/*-------------------------------------------------------------------------
 *
 * key_cleanup.c
 *		Unit test: an ERROR raised while a keyed OpenSSL context or key
 *		bytes exist leaves neither behind.
 *
 * keys.c and crypto.c, built from src/ unchanged, run here against
 * pg_stubs.c and a stand-in for what keys.c needs of the server: SPI on a
 * pii_guard.data_keys table kept in memory (the statements keys.c runs,
 * told apart by their text), a hash table with dynahash's interface whose
 * inserts can be made to fail, and the relcache callback.  The master keys
 * come from real commands (echo), as in the postmaster.
 *
 * The ERRORs are the ones the server can raise but SQL can't provoke on
 * demand: RAND_bytes failing (a legacy RAND_METHOD fails the requests of a
 * chosen length: the 12-byte nonce of a key wrapping), an insert into the
 * key cache running out of memory, a palloc running out of memory.  Each
 * statement runs under PG_TRY, as in a backend; after an ERROR the resource
 * owner is released as an abort releases it (fuzz_release_resources), and
 * the test checks
 *
 *	- that OpenSSL holds as much memory as before the statement: every
 *	  allocation through OpenSSL's allocator is counted
 *	  (CRYPTO_set_mem_functions), so a keyed context or HMAC state left
 *	  behind is a count that does not come back down;
 *	- that the key bytes the statement had on its stack are gone: the
 *	  RAND_METHOD fills each 32-byte request (a new data key) with a known
 *	  pattern and notes where it wrote it, EVP_DecryptUpdate (wrapped at
 *	  link time) notes where an unwrapped key went, read (wrapped too) where
 *	  a key command's output went; the test looks there right after the
 *	  ERROR, before anything can reuse that stack (the statement runs below
 *	  a 16 kB cushion).
 *
 * `make fuzz-regress` (fuzz/run.sh regress) runs it.  It prints one line
 * per check and ends with "N checks, no failure" (exit status 0) or
 * "N checks, M failed" (exit status 1).
 *
 *-------------------------------------------------------------------------
 */
/* RAND_METHOD: the way to make RAND_bytes fail on demand. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "fuzz.h"
#include "pii_guard.h"

extern Datum pii_guard_rotate_data_key(PG_FUNCTION_ARGS);
extern Datum pii_guard_rewrap_data_keys(PG_FUNCTION_ARGS);

#define MASTER_1_HEX "4b31" "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"
#define MASTER_2_HEX "4b32" "f1f2f3f4f5f6f7f8f9fafbfcfdfeff00e1e2e3e4e5e6e7e8e9eaebecedee"

/* ----------------------------------------------------------------------
 * What OpenSSL holds: its allocations, counted
 * ----------------------------------------------------------------------
 */

static long openssl_live = 0;

static void *
count_malloc(size_t num, const char *file pg_attribute_unused(),
			 int line pg_attribute_unused())
{
	void	   *p = malloc(num);

	if (p != NULL)
		openssl_live++;
	return p;
}

static void *
count_realloc(void *addr, size_t num, const char *file, int line)
{
	if (addr == NULL)
		return count_malloc(num, file, line);
	if (num == 0)
	{
		free(addr);
		openssl_live--;
		return NULL;
	}
	return realloc(addr, num);
}

static void
count_free(void *addr, const char *file pg_attribute_unused(),
		   int line pg_attribute_unused())
{
	if (addr == NULL)
		return;
	free(addr);
	openssl_live--;
}

/* ----------------------------------------------------------------------
 * Randomness that fails on demand, and data keys that can be recognised
 * ----------------------------------------------------------------------
 */

static int	rand_fail_length = 0;	/* requests of this length fail */
static uint8 data_key_pattern[PII_KEY_LEN];
static uint8 *data_key_at = NULL;	/* where the last data key was drawn */
static uint64 rand_state = UINT64CONST(0x9E3779B97F4A7C15);

static int
test_rand_bytes(unsigned char *buf, int num)
{
	int			i;

	if (num == rand_fail_length)
		return 0;
	if (num == PII_KEY_LEN)
	{
		memcpy(buf, data_key_pattern, PII_KEY_LEN);
		data_key_at = buf;
		return 1;
	}
	/* (nonces and key ids: xorshift64 is random enough for a test) */
	for (i = 0; i < num; i++)
	{
		rand_state ^= rand_state << 13;
		rand_state ^= rand_state >> 7;
		rand_state ^= rand_state << 17;
		buf[i] = (uint8) rand_state;
	}
	return 1;
}

static int
test_rand_status(void)
{
	return 1;
}

static RAND_METHOD test_rand = {
	.bytes = test_rand_bytes,
	.pseudorand = test_rand_bytes,
	.status = test_rand_status,
};

/* crypto.c's unwrapping decrypts a data key: note where it goes. */
static uint8 *unwrapped_key_at = NULL;

extern int	__real_EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out,
									 int *outl, const unsigned char *in, int inl);
extern int	__wrap_EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out,
									 int *outl, const unsigned char *in, int inl);

int
__wrap_EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl,
						 const unsigned char *in, int inl)
{
	if (out != NULL && inl == PII_KEY_LEN)
		unwrapped_key_at = out;
	return __real_EVP_DecryptUpdate(ctx, out, outl, in, inl);
}

/* keys.c reads a master key command's output: note where, when asked. */
static bool capture_read = false;
static uint8 *command_output_at = NULL;

extern ssize_t __real_read(int fd, void *buf, size_t count);
extern ssize_t __wrap_read(int fd, void *buf, size_t count);

ssize_t
__wrap_read(int fd, void *buf, size_t count)
{
	if (capture_read && command_output_at == NULL)
		command_output_at = buf;
	return __real_read(fd, buf, count);
}

/*
 * Do len bytes at p, maybe in a stack frame an ERROR has left, still equal
 * pattern?  (Not instrumented: AddressSanitizer may keep such frames
 * poisoned; not inlined, so that its frame is small and its own.)
 */
static pg_noinline bool __attribute__((no_sanitize_address))
still_there(const volatile uint8 *p, const uint8 *pattern, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (p[i] != pattern[i])
			return false;
	return true;
}

/* ----------------------------------------------------------------------
 * pii_guard.data_keys, in memory, through SPI
 * ----------------------------------------------------------------------
 */

typedef struct FakeKeyRow
{
	int32		key_id;
	char		purpose[16];
	bool		active;
	bytea	   *wrapped;		/* malloc'd */
	bytea	   *fingerprint;	/* malloc'd */
} FakeKeyRow;

static FakeKeyRow key_rows[32];
static int	nkey_rows = 0;

/* The table as the running statement found it: an ERROR restores it. */
static FakeKeyRow saved_key_rows[lengthof(key_rows)];
static int	saved_nkey_rows = 0;

/* Every bytea a row ever held (a rollback may bring one back). */
static bytea *kept_bytea[256];
static int	nkept_bytea = 0;

/* A result row, as SPI_getbinval and SPI_getvalue read it. */
typedef struct FakeResultRow
{
	Datum		values[4];
	bool		nulls[4];
	const char *texts[4];
} FakeResultRow;

static FakeResultRow result_rows[lengthof(key_rows)];
static HeapTuple result_vals[lengthof(key_rows)];
static SPITupleTable result_table;

uint64		SPI_processed = 0;
SPITupleTable *SPI_tuptable = NULL;
int			SPI_result = 0;

/* A lasting copy of a bytea datum (which keys.c palloc'd). */
static bytea *
bytea_keep(Datum d)
{
	const bytea *b = DatumGetByteaPP(d);
	Size		len = VARSIZE_ANY_EXHDR(b);
	bytea	   *copy = malloc(VARHDRSZ + len);

	if (copy == NULL || nkept_bytea == lengthof(kept_bytea))
		fuzz_fail("out of memory for the fake data_keys table");
	SET_VARSIZE(copy, VARHDRSZ + len);
	memcpy(VARDATA(copy), VARDATA_ANY(b), len);
	kept_bytea[nkept_bytea++] = copy;
	return copy;
}

static FakeKeyRow *
find_key_row(int32 key_id)
{
	int			i;

	for (i = 0; i < nkey_rows; i++)
		if (key_rows[i].key_id == key_id)
			return &key_rows[i];
	return NULL;
}

/* Add a result row from the table row r, with the columns named in cols. */
static void
add_result(const FakeKeyRow *r, const char *cols)
{
	FakeResultRow *out = &result_rows[SPI_processed];
	int			c;

	memset(out, 0, sizeof(*out));
	for (c = 0; cols[c]; c++)
		switch (cols[c])
		{
			case 'i':
				out->values[c] = Int32GetDatum(r->key_id);
				break;
			case 'p':
				out->texts[c] = r->purpose;
				break;
			case 'w':
				out->values[c] = PointerGetDatum(r->wrapped);
				break;
			case 'f':
				out->values[c] = PointerGetDatum(r->fingerprint);
				break;
		}
	result_vals[SPI_processed] = (HeapTuple) out;
	SPI_processed++;
}

/* Run one of the statements keys.c runs. */
static int
fake_execute(const char *sql, Datum *values)
{
	int			i;

	SPI_processed = 0;
	SPI_tuptable = &result_table;
	result_table.vals = result_vals;
	result_table.tupdesc = NULL;

	if (strncmp(sql, "LOCK TABLE pii_guard.data_keys", 30) == 0)
		return SPI_OK_UTILITY;
	if (strncmp(sql, "SELECT max(key_id) + 1 ", 23) == 0)
	{
		int32		max = 0;

		memset(&result_rows[0], 0, sizeof(result_rows[0]));
		for (i = 0; i < nkey_rows; i++)
			max = Max(max, key_rows[i].key_id);
		result_rows[0].values[0] = Int32GetDatum(max + 1);
		result_rows[0].nulls[0] = nkey_rows == 0;
		result_vals[0] = (HeapTuple) &result_rows[0];
		SPI_processed = 1;
		return SPI_OK_SELECT;
	}
	if (strncmp(sql, "SELECT key_id, master_key_fingerprint ", 38) == 0)
	{
		for (i = 0; i < nkey_rows; i++)
			add_result(&key_rows[i], "if");
		return SPI_OK_SELECT;
	}
	if (strncmp(sql, "SELECT key_id, purpose FROM pii_guard.data_keys WHERE state = 'active'", 70) == 0)
	{
		for (i = 0; i < nkey_rows; i++)
			if (key_rows[i].active)
				add_result(&key_rows[i], "ip");
		return SPI_OK_SELECT;
	}
	if (strncmp(sql, "SELECT purpose, wrapped_key, master_key_fingerprint ", 52) == 0)
	{
		FakeKeyRow *r = find_key_row(DatumGetInt32(values[0]));

		if (r != NULL)
			add_result(r, "pwf");
		return SPI_OK_SELECT;
	}
	if (strncmp(sql, "SELECT key_id, purpose, wrapped_key, master_key_fingerprint ", 60) == 0)
	{
		for (i = 0; i < nkey_rows; i++)
			add_result(&key_rows[i], "ipwf");
		return SPI_OK_SELECT;
	}
	if (strncmp(sql, "UPDATE pii_guard.data_keys SET state = 'retired'", 48) == 0)
	{
		char	   *purpose = text_to_cstring(DatumGetTextPP(values[0]));

		for (i = 0; i < nkey_rows; i++)
			if (key_rows[i].active && strcmp(key_rows[i].purpose, purpose) == 0)
			{
				key_rows[i].active = false;
				SPI_processed++;
			}
		return SPI_OK_UPDATE;
	}
	if (strncmp(sql, "INSERT INTO pii_guard.data_keys ", 32) == 0)
	{
		FakeKeyRow *r = &key_rows[nkey_rows];

		if (nkey_rows == lengthof(key_rows))
			fuzz_fail("too many data keys");
		memset(r, 0, sizeof(*r));
		r->key_id = DatumGetInt32(values[0]);
		strlcpy(r->purpose, text_to_cstring(DatumGetTextPP(values[1])),
				sizeof(r->purpose));
		r->active = true;
		r->wrapped = bytea_keep(values[2]);
		r->fingerprint = bytea_keep(values[3]);
		nkey_rows++;
		SPI_processed = 1;
		return SPI_OK_INSERT;
	}
	if (strncmp(sql, "UPDATE pii_guard.data_keys SET wrapped_key = $2, ", 49) == 0)
	{
		FakeKeyRow *r = find_key_row(DatumGetInt32(values[0]));

		if (r != NULL)
		{
			r->wrapped = bytea_keep(values[1]);
			r->fingerprint = bytea_keep(values[2]);
			SPI_processed = 1;
		}
		return SPI_OK_UPDATE;
	}
	fuzz_fail("unexpected statement: %s", sql);
}

int
SPI_connect(void)
{
	return SPI_OK_CONNECT;
}

int
SPI_finish(void)
{
	return SPI_OK_FINISH;
}

/* A "plan" is the statement's text. */
SPIPlanPtr
SPI_prepare(const char *src, int nargs pg_attribute_unused(),
			Oid *argtypes pg_attribute_unused())
{
	return (SPIPlanPtr) unconstify(char *, src);
}

int
SPI_execute_plan(SPIPlanPtr plan, Datum *Values, const char *Nulls pg_attribute_unused(),
				 bool read_only pg_attribute_unused(), long tcount pg_attribute_unused())
{
	return fake_execute((const char *) plan, Values);
}

int
SPI_execute_snapshot(SPIPlanPtr plan, Datum *Values, const char *Nulls pg_attribute_unused(),
					 Snapshot snapshot pg_attribute_unused(),
					 Snapshot crosscheck_snapshot pg_attribute_unused(),
					 bool read_only pg_attribute_unused(),
					 bool fire_triggers pg_attribute_unused(),
					 long tcount pg_attribute_unused())
{
	return fake_execute((const char *) plan, Values);
}

int
SPI_execute_with_args(const char *src, int nargs pg_attribute_unused(),
					  Oid *argtypes pg_attribute_unused(), Datum *Values,
					  const char *Nulls pg_attribute_unused(),
					  bool read_only pg_attribute_unused(),
					  long tcount pg_attribute_unused())
{
	return fake_execute(src, Values);
}

int
SPI_execute(const char *src, bool read_only pg_attribute_unused(),
			long tcount pg_attribute_unused())
{
	return fake_execute(src, NULL);
}

Datum
SPI_getbinval(HeapTuple tuple, TupleDesc tupdesc pg_attribute_unused(),
			  int fnumber, bool *isnull)
{
	const FakeResultRow *row = (const FakeResultRow *) tuple;

	*isnull = row->nulls[fnumber - 1];
	return row->values[fnumber - 1];
}

char *
SPI_getvalue(HeapTuple tuple, TupleDesc tupdesc pg_attribute_unused(), int fnumber)
{
	const FakeResultRow *row = (const FakeResultRow *) tuple;

	return row->texts[fnumber - 1] ? pstrdup(row->texts[fnumber - 1]) : NULL;
}

const char *
SPI_result_code_string(int code pg_attribute_unused())
{
	return "SPI_ERROR (fake)";
}

/* ----------------------------------------------------------------------
 * The key cache's hash table, whose inserts can fail
 * ----------------------------------------------------------------------
 */

#define FAKE_HASH_SLOTS 32
#define FAKE_HASH_ENTRY 64

struct HTAB
{
	Size		keysize;
	Size		entrysize;
	bool		used[FAKE_HASH_SLOTS];
	char		entries[FAKE_HASH_SLOTS][FAKE_HASH_ENTRY];
};

static HTAB fake_hash[2];		/* keys.c's two: data keys, subject keys */
static bool hash_enter_fails = false;

/* (keys.c makes its two tables at each rebuild: a new one replaces the last of its name.) */
HTAB *
hash_create(const char *tabname, long nelem pg_attribute_unused(),
			const HASHCTL *info, int flags pg_attribute_unused())
{
	HTAB	   *h = &fake_hash[strcmp(tabname, "pii_guard data keys") == 0 ? 0 : 1];

	if (info->entrysize > FAKE_HASH_ENTRY)
		fuzz_fail("hash entries too big for the fake hash table");
	memset(h, 0, sizeof(HTAB));
	h->keysize = info->keysize;
	h->entrysize = info->entrysize;
	return h;
}

void *
hash_search(HTAB *hashp, const void *keyPtr, HASHACTION action, bool *foundPtr)
{
	int			i;
	int			free_slot = -1;

	for (i = 0; i < FAKE_HASH_SLOTS; i++)
	{
		if (!hashp->used[i])
		{
			if (free_slot < 0)
				free_slot = i;
			continue;
		}
		if (memcmp(hashp->entries[i], keyPtr, hashp->keysize) == 0)
		{
			if (foundPtr)
				*foundPtr = true;
			if (action == HASH_REMOVE)
				hashp->used[i] = false;
			return hashp->entries[i];
		}
	}
	if (foundPtr)
		*foundPtr = false;
	if (action != HASH_ENTER)
		return NULL;
	/* as dynahash reports it */
	if (hash_enter_fails || free_slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	hashp->used[free_slot] = true;
	memset(hashp->entries[free_slot], 0, FAKE_HASH_ENTRY);
	memcpy(hashp->entries[free_slot], keyPtr, hashp->keysize);
	return hashp->entries[free_slot];
}

void
hash_seq_init(HASH_SEQ_STATUS *status, HTAB *hashp)
{
	status->hashp = hashp;
	status->curBucket = 0;
}

void *
hash_seq_search(HASH_SEQ_STATUS *status)
{
	while (status->curBucket < FAKE_HASH_SLOTS)
	{
		uint32		i = status->curBucket++;

		if (status->hashp->used[i])
			return status->hashp->entries[i];
	}
	return NULL;
}

/* ----------------------------------------------------------------------
 * The rest of the server keys.c calls
 * ----------------------------------------------------------------------
 */

char	   *pii_guard_master_key_command = NULL;
char	   *pii_guard_previous_master_key_command = NULL;
int			pii_guard_master_key_timeout = 10;
bool		XactReadOnly = false;
MemoryContext TopMemoryContext = NULL;

/* What a change to pii_guard.data_keys sends every backend. */
static void
invalidate_key_cache(void)
{
	keys_relation_changed(InvalidOid);
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent pg_attribute_unused(),
							  const char *name pg_attribute_unused(),
							  Size minContextSize pg_attribute_unused(),
							  Size initBlockSize pg_attribute_unused(),
							  Size maxBlockSize pg_attribute_unused())
{
	return CurrentMemoryContext;
}

void
MemoryContextReset(MemoryContext context pg_attribute_unused())
{
}

TimestampTz
GetCurrentTimestamp(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (TimestampTz) tv.tv_sec * USECS_PER_SEC + tv.tv_usec;
}

Snapshot
GetLatestSnapshot(void)
{
	return NULL;
}

bool
IsInParallelMode(void)
{
	return false;
}

void
owner_spi_begin(OwnerContext *ctx pg_attribute_unused())
{
	(void) SPI_connect();
}

void
owner_spi_end(OwnerContext *ctx pg_attribute_unused())
{
	SPI_finish();
}

/* data_keys exists; audit_log doesn't (so no audit event is written). */
Oid
pii_guard_relation_oid(const char *relname, bool missing_ok)
{
	if (strcmp(relname, "data_keys") == 0)
		return (Oid) 16384;
	if (!missing_ok)
		fuzz_fail("pii_guard_relation_oid(%s)", relname);
	return InvalidOid;
}

/* No Citus here: the key tables are read as themselves. */
void
pii_guard_local_table(const char *relname, char *buf, Oid *relid)
{
	snprintf(buf, PII_LOCAL_TABLE_LEN, "pii_guard.%s", relname);
	*relid = pii_guard_relation_oid(relname, true);
}

#define UNREACHABLE(name) fuzz_fail("%s is not available in this test", name)

void
audit_event_init(AuditEvent *ev pg_attribute_unused(), char kind pg_attribute_unused())
{
	UNREACHABLE("audit_event_init");
}

void
audit_event_set(char *field pg_attribute_unused(), int size pg_attribute_unused(),
				const char *value pg_attribute_unused())
{
	UNREACHABLE("audit_event_set");
}

int64
audit_insert_now(const AuditEvent *ev pg_attribute_unused())
{
	UNREACHABLE("audit_insert_now");
}

void
CacheInvalidateRelcacheByRelid(Oid relid pg_attribute_unused())
{
	UNREACHABLE("CacheInvalidateRelcacheByRelid");
}

TypeFuncClass
get_call_result_type(FunctionCallInfo fcinfo pg_attribute_unused(),
					 Oid *resultTypeId pg_attribute_unused(),
					 TupleDesc *resultTupleDesc pg_attribute_unused())
{
	UNREACHABLE("get_call_result_type");
}

TupleDesc
BlessTupleDesc(TupleDesc tupdesc pg_attribute_unused())
{
	UNREACHABLE("BlessTupleDesc");
}

HeapTuple
heap_form_tuple(TupleDesc tupleDescriptor pg_attribute_unused(),
				Datum *values pg_attribute_unused(), bool *isnull pg_attribute_unused())
{
	UNREACHABLE("heap_form_tuple");
}

Datum
HeapTupleHeaderGetDatum(HeapTupleHeader tuple pg_attribute_unused())
{
	UNREACHABLE("HeapTupleHeaderGetDatum");
}

/* ----------------------------------------------------------------------
 * The test
 * ----------------------------------------------------------------------
 */

typedef void (*TestStep) (void);

static TestStep current_step;
static Datum step_result;
static uint32 step_key_id;
static bool step_round_trip_ok;

/*
 * Run the step below a 16 kB cushion, so that what the caller does after
 * an ERROR can't overwrite the step's dead stack frames before they are
 * looked at.
 */
static pg_noinline void
run_cushioned(void)
{
	volatile char cushion[16384];

	cushion[0] = 0;
	current_step();
	cushion[sizeof(cushion) - 1] = 0;
}

/*
 * Run a step as a statement: true if it raised no ERROR (which is then in
 * fuzz_error, and has rolled back what the step did to data_keys).
 */
static bool
run_step(TestStep step)
{
	volatile bool ok = true;

	current_step = step;
	memcpy(saved_key_rows, key_rows, sizeof(key_rows));
	saved_nkey_rows = nkey_rows;
	PG_TRY();
	{
		run_cushioned();
	}
	PG_CATCH();
	{
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
	{
		memcpy(key_rows, saved_key_rows, sizeof(key_rows));
		nkey_rows = saved_nkey_rows;
	}
	return ok;
}

static void
step_rotate(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	step_result = pii_guard_rotate_data_key(fcinfo);
}

static void
step_rewrap(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	step_result = pii_guard_rewrap_data_keys(fcinfo);
}

static void
step_lookup(void)
{
	(void) keys_lookup(step_key_id);
}

static void
step_load_master_keys(void)
{
	keys_load_master_keys();
}

/* Seal and open a value: the cached keys work. */
static void
step_round_trip(void)
{
	static const char value[] = "a value to protect";
	bytea	   *env = crypto_seal(ENV_KIND_TEXT, value, sizeof(value) - 1);
	bytea	   *plain = crypto_open(env, ENV_KIND_TEXT);

	step_round_trip_ok = VARSIZE(plain) - VARHDRSZ == sizeof(value) - 1 &&
		memcmp(VARDATA(plain), value, sizeof(value) - 1) == 0;
	crypto_wipe(plain);
}

static int	checks = 0;
static int	failures = 0;
static char detail[256];		/* why the next check fails, if it does */

static void
check(bool ok, const char *what)
{
	checks++;
	if (!ok)
		failures++;
	printf("%s: %s\n", ok ? "ok" : "FAILED", what);
	if (!ok && detail[0] != '\0')
		printf("    (%s)\n", detail);
	detail[0] = '\0';
}

/* Did the last step fail with this message? */
static bool
failed_with(bool ok, const char *message)
{
	if (ok)
	{
		snprintf(detail, sizeof(detail), "there was no error");
		return false;
	}
	if (strstr(fuzz_error.message, message) == NULL)
	{
		snprintf(detail, sizeof(detail), "the error was: %s", fuzz_error.message);
		return false;
	}
	return true;
}

/* Did OpenSSL's memory come back to what it was? */
static bool
openssl_back_to(long before)
{
	if (openssl_live != before)
		snprintf(detail, sizeof(detail),
				 "OpenSSL holds %ld allocations more than before the statement",
				 openssl_live - before);
	return openssl_live == before;
}

static uint32
key_id_of(const char *purpose)
{
	int			i;

	for (i = 0; i < nkey_rows; i++)
		if (key_rows[i].active && strcmp(key_rows[i].purpose, purpose) == 0)
			return (uint32) key_rows[i].key_id;
	fuzz_fail("no active %s key", purpose);
}

int
main(int argc pg_attribute_unused(), char **argv pg_attribute_unused())
{
	static const char master_1_hex[] = MASTER_1_HEX;
	static const struct
	{
		const char *purpose;
		const char *what;
	}			lookups[] = {
		{"encrypt", "an encryption key (two AES-256-GCM contexts)"},
		{"blind_index", "the blind index key (an HMAC-SHA256 state)"},
	};
	char		what[256];
	long		before;
	long		after;
	bool		ok;
	bool		left;
	int			i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free))
		fuzz_fail("OpenSSL allocated memory before main()");
	for (i = 0; i < PII_KEY_LEN; i++)
		data_key_pattern[i] = (uint8) (0xa7 ^ (i * 29));
	if (!RAND_set_rand_method(&test_rand))
		fuzz_fail("RAND_set_rand_method failed");
	MyProcPid = getpid();

	/* The master key, as the postmaster loads it. */
	pii_guard_master_key_command = "echo " MASTER_1_HEX;
	keys_load_master_keys();
	check(keys_master_key_available(), "the master key loads from its command");

	/*
	 * Warm up: OpenSSL builds its algorithm tables and error state once, on
	 * first use; those are not what is counted.  The first rotation creates
	 * the blind index key and an encryption key; a failed one, whose data
	 * key can't be drawn, runs the error path with no key in play.
	 */
	ok = run_step(step_rotate);
	fuzz_release_resources(true);
	check(ok && nkey_rows == 2, "rotate_data_key() creates the first keys");
	for (i = 0; i < (int) lengthof(lookups); i++)
	{
		step_key_id = key_id_of(lookups[i].purpose);
		ok = run_step(step_lookup);
		fuzz_release_resources(true);
		check(ok, "the keys load into the cache");
	}
	rand_fail_length = PII_KEY_LEN;
	ok = run_step(step_rotate);
	rand_fail_length = 0;
	fuzz_release_resources(false);
	check(failed_with(ok, "RAND_bytes"),
		  "rotate_data_key() fails when no data key can be drawn");

	/*
	 * 1. rotate_data_key(): the nonce for wrapping the new data key can't be
	 * drawn.  crypto_wrap_key() used to build the context keyed with the
	 * master key first; keys_create() wiped the new key only on success.
	 */
	before = openssl_live;
	data_key_at = NULL;
	rand_fail_length = ENV_NONCE_LEN;
	ok = run_step(step_rotate);
	rand_fail_length = 0;
	left = data_key_at != NULL && still_there(data_key_at, data_key_pattern, PII_KEY_LEN);
	check(failed_with(ok, "RAND_bytes"),
		  "rotate_data_key() fails when the nonce of the key wrapping can't be drawn");
	check(data_key_at != NULL && !left,
		  "  ... and the new data key is wiped from the stack");
	fuzz_release_resources(false);
	check(openssl_back_to(before),
		  "  ... and no context keyed with the master key is left after the abort");

	/*
	 * 2. Loading a key into the cache: the hash table insert runs out of
	 * memory after the key's contexts are built.
	 */
	invalidate_key_cache();
	step_key_id = 0x7fffffff;
	ok = run_step(step_lookup);
	fuzz_release_resources(false);
	check(failed_with(ok, "does not exist"),
		  "a key that does not exist is reported as such (and the stale cache is rebuilt)");
	for (i = 0; i < (int) lengthof(lookups); i++)
	{
		step_key_id = key_id_of(lookups[i].purpose);
		before = openssl_live;
		unwrapped_key_at = NULL;
		hash_enter_fails = true;
		ok = run_step(step_lookup);
		hash_enter_fails = false;
		left = unwrapped_key_at != NULL &&
			still_there(unwrapped_key_at, data_key_pattern, PII_KEY_LEN);
		snprintf(what, sizeof(what),
				 "loading %s fails when its cache entry can't be allocated",
				 lookups[i].what);
		check(failed_with(ok, "out of memory"), what);
		check(unwrapped_key_at != NULL && !left,
			  "  ... and the unwrapped key is wiped from the stack");
		fuzz_release_resources(false);
		check(openssl_back_to(before),
			  "  ... and nothing keyed with it is left after the abort");
		ok = run_step(step_lookup);
		after = openssl_live;
		fuzz_release_resources(true);
		check(ok && openssl_live == after && openssl_live > before,
			  "  ... and it loads next time, the cache keeping its contexts past the commit");
	}
	ok = run_step(step_round_trip);
	fuzz_release_resources(true);
	check(ok && step_round_trip_ok, "the cached keys seal and open a value");

	/*
	 * 3. rewrap_data_keys(): the nonce for re-wrapping a data key under the
	 * new master key can't be drawn.  The key, unwrapped with the previous
	 * master key, was wiped only on success.
	 */
	pii_guard_master_key_command = "echo " MASTER_2_HEX;
	pii_guard_previous_master_key_command = "echo " MASTER_1_HEX;
	keys_load_master_keys();
	check(keys_master_key_available(), "a new master key loads, with the previous one");
	before = openssl_live;
	unwrapped_key_at = NULL;
	rand_fail_length = ENV_NONCE_LEN;
	ok = run_step(step_rewrap);
	rand_fail_length = 0;
	left = unwrapped_key_at != NULL &&
		still_there(unwrapped_key_at, data_key_pattern, PII_KEY_LEN);
	check(failed_with(ok, "RAND_bytes"),
		  "rewrap_data_keys() fails when the nonce of a re-wrapping can't be drawn");
	check(unwrapped_key_at != NULL && !left,
		  "  ... and the unwrapped data key is wiped from the stack");
	fuzz_release_resources(false);
	check(openssl_back_to(before),
		  "  ... and no context keyed with the new master key is left after the abort");
	ok = run_step(step_rewrap);
	fuzz_release_resources(true);
	check(ok && DatumGetInt32(step_result) == nkey_rows,
		  "rewrap_data_keys() then re-wraps every key");
	invalidate_key_cache();
	ok = run_step(step_round_trip);
	fuzz_release_resources(true);
	check(ok && step_round_trip_ok,
		  "the re-wrapped keys load under the new master key and work");

	/*
	 * 4. Loading the master key: the command printed the key but failed,
	 * and the message for its exit status can't be allocated.  Its output
	 * was wiped only after that message was made.
	 */
	pii_guard_master_key_command = "echo " MASTER_1_HEX "; exit 3";
	pii_guard_previous_master_key_command = NULL;
	command_output_at = NULL;
	capture_read = true;
	fuzz_fail_next_alloc();
	ok = run_step(step_load_master_keys);
	capture_read = false;
	left = command_output_at != NULL &&
		still_there(command_output_at, (const uint8 *) master_1_hex, 64);
	check(failed_with(ok, "out of memory"),
		  "loading the master key fails when the reason its command failed can't be allocated");
	check(command_output_at != NULL && !left,
		  "  ... and the command's output (the key) is wiped from the stack");

	printf("key_cleanup: %d checks, %s\n", checks,
		   failures == 0 ? "no failure" : psprintf("%d failed", failures));
	return failures == 0 ? 0 : 1;
}
