/*-------------------------------------------------------------------------
 *
 * pg_stubs.c
 *		The parts of a PostgreSQL backend that pii_guard's masks and
 *		envelope parser call, for running them outside a server.
 *
 * libpgcommon and libpgport bring the real encoding tables, base64, hash
 * and printf code; this file stands in for the rest, and is honest about
 * it:
 *
 * Memory.  There is one memory context, reset after every input.  Each
 * palloc is its own malloc of exactly the size asked for (the server's
 * AllocSet carves chunks out of bigger blocks, where an overrun goes
 * unnoticed), so AddressSanitizer reports a read or write past a palloc'd
 * buffer, a use after pfree and a pfree of a pointer palloc never returned.
 * Sizes are limited as the server limits them.  Values with a 1-byte
 * header (fuzz_text) end right at an inaccessible page, so that reading
 * past one faults even in code built without the sanitizer, such as
 * libpgcommon's (that is how an over-read in utf8_to_unicode() showed).
 * A test can make the next palloc raise "out of memory"
 * (fuzz_fail_next_alloc).
 *
 * Errors.  errstart/errfinish collect the report; ereport(ERROR) longjmps
 * to the innermost PG_TRY, as the server does, and fuzz_call() catches it.
 * An ERROR outside fuzz_call(), a FATAL or a PANIC aborts.
 *
 * Resource owners.  There is one, always current; the release callbacks
 * registered (crypto.c's, which frees keyed OpenSSL contexts) run when a
 * test calls fuzz_release_resources(), as a transaction's end runs them.
 * The fuzz targets never do: they keep what they build for the process.
 *
 * Everything else the object files reference but the fuzz targets never
 * reach (catalog lookups, numeric and calendar arithmetic, privileges)
 * aborts with its name if called, so a target that strays there fails
 * loudly instead of testing a stand-in.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>

#include "access/relation.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "fuzz.h"
#include "pii_guard.h"

/* ----------------------------------------------------------------------
 * Memory
 * ----------------------------------------------------------------------
 */

static MemoryContextData fuzz_context;
MemoryContext CurrentMemoryContext = &fuzz_context;

static void **chunks;
static size_t nchunks;
static size_t maxchunks;

/* Allocations that end at a guard page: the pointer, the mapping. */
typedef struct GuardedChunk
{
	void	   *pointer;
	void	   *map;
	size_t		maplen;
} GuardedChunk;

static GuardedChunk guarded[16];
static int	nguarded;

/* Set by fuzz_fail_next_alloc(): the next palloc raises "out of memory". */
static bool fail_next_alloc = false;

/*
 * size bytes that end where an inaccessible page begins (no alignment:
 * for data read a byte at a time).
 */
static void *
fuzz_alloc_guarded(size_t size)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	size_t		maplen = (size + page - 1) / page * page + page;
	char	   *map;

	if (nguarded == lengthof(guarded))
		fuzz_fail("too many guarded allocations for one input");
	map = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED || mprotect(map + maplen - page, page, PROT_NONE) != 0)
		fuzz_fail("could not map a guarded allocation");
	guarded[nguarded].pointer = map + maplen - page - size;
	guarded[nguarded].map = map;
	guarded[nguarded].maplen = maplen;
	return guarded[nguarded++].pointer;
}

/* Unmap a guarded allocation; false if pointer is not one. */
static bool
fuzz_free_guarded(void *pointer)
{
	int			i;

	for (i = 0; i < nguarded; i++)
		if (guarded[i].pointer == pointer)
		{
			munmap(guarded[i].map, guarded[i].maplen);
			guarded[i] = guarded[--nguarded];
			return true;
		}
	return false;
}

/* One palloc: its own malloc, checked and limited as the server's. */
static void *
fuzz_alloc(Size size, bool huge, bool zero)
{
	void	   *p;

	if (huge ? !AllocHugeSizeIsValid(size) : !AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	if (fail_next_alloc)
	{
		fail_next_alloc = false;
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu (fuzz_fail_next_alloc).", size)));
	}
	if (nchunks == maxchunks)
	{
		maxchunks = maxchunks ? 2 * maxchunks : 64;
		chunks = realloc(chunks, maxchunks * sizeof(void *));
		if (chunks == NULL)
			abort();
	}
	p = zero ? calloc(1, size) : malloc(size);
	/* malloc(0) may return NULL; palloc(0) never does */
	if (p == NULL && size == 0)
		p = malloc(1);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed on request of size %zu.", size)));
	chunks[nchunks++] = p;
	return p;
}

/* Make the next palloc fail as the server's does when memory runs out. */
void
fuzz_fail_next_alloc(void)
{
	fail_next_alloc = true;
}

/* The slot of a palloc'd pointer; aborts for anything else. */
static size_t
fuzz_chunk(void *pointer)
{
	size_t		i = nchunks;

	while (i > 0)
		if (chunks[--i] == pointer)
			return i;
	fuzz_fail("pfree or repalloc of a pointer palloc did not return");
}

/* The server's allocation functions, each on fuzz_alloc. */
void *
palloc(Size size)
{
	return fuzz_alloc(size, false, false);
}

void *
palloc0(Size size)
{
	return fuzz_alloc(size, false, true);
}

void *
MemoryContextAlloc(MemoryContext context pg_attribute_unused(), Size size)
{
	return fuzz_alloc(size, false, false);
}

void *
MemoryContextAllocZero(MemoryContext context pg_attribute_unused(), Size size)
{
	return fuzz_alloc(size, false, true);
}

void *
MemoryContextAllocZeroAligned(MemoryContext context pg_attribute_unused(), Size size)
{
	return fuzz_alloc(size, false, true);
}

void *
MemoryContextAllocHuge(MemoryContext context pg_attribute_unused(), Size size)
{
	return fuzz_alloc(size, true, false);
}

void *
repalloc(void *pointer, Size size)
{
	size_t		i = fuzz_chunk(pointer);
	void	   *p;

	if (!AllocSizeIsValid(size))
		elog(ERROR, "invalid memory alloc request size %zu", size);
	p = realloc(pointer, Max(size, 1));
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	chunks[i] = p;
	return p;
}

void
pfree(void *pointer)
{
	size_t		i;

	if (fuzz_free_guarded(pointer))
		return;
	i = fuzz_chunk(pointer);

	free(pointer);
	chunks[i] = chunks[--nchunks];
}

char *
pstrdup(const char *in)
{
	size_t		len = strlen(in);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len + 1);
	return out;
}

/* Free everything palloc'd since the last reset: the per-input context. */
void
fuzz_reset_memory(void)
{
	while (nchunks > 0)
		free(chunks[--nchunks]);
	while (nguarded > 0)
		fuzz_free_guarded(guarded[0].pointer);
}

/* ----------------------------------------------------------------------
 * Errors
 * ----------------------------------------------------------------------
 */

sigjmp_buf *PG_exception_stack = NULL;
ErrorContextCallback *error_context_stack = NULL;

FuzzError	fuzz_error;
static FuzzError pending;
static bool in_error = false;

/* A check failed: say which, and abort (the fuzzer keeps the input). */
void
fuzz_fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "pii_guard fuzz check failed: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

/*
 * The ereport() machinery: errstart() begins a report, the err*()
 * functions fill it in, errfinish() ends it (longjmp for an ERROR).
 */
bool
errstart(int elevel, const char *domain pg_attribute_unused())
{
	if (in_error)
		fuzz_fail("error raised while reporting an error");
	in_error = true;
	memset(&pending, 0, sizeof(pending));
	pending.elevel = elevel;
	pending.sqlerrcode = elevel >= ERROR ? ERRCODE_INTERNAL_ERROR : 0;
	return true;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	in_error = false;
	pending.funcname = funcname;
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%s:%d %s: level %d: %s [%s]\n", filename, lineno,
				funcname, pending.elevel, pending.message, pending.detail);
	if (pending.elevel < ERROR)
		return;
	if (pending.elevel > ERROR)
		fuzz_fail("%s at %s:%d: %s", pending.elevel == FATAL ? "FATAL" : "PANIC",
				  filename, lineno, pending.message);
	if (PG_exception_stack == NULL)
		fuzz_fail("ERROR outside fuzz_call() at %s:%d: %s", filename, lineno,
				  pending.message);
	fuzz_error = pending;
	siglongjmp(*PG_exception_stack, 1);
}

/* PG_RE_THROW: pass the error in fuzz_error on to the next PG_TRY out. */
void
pg_re_throw(void)
{
	if (PG_exception_stack == NULL)
		fuzz_fail("PG_RE_THROW outside fuzz_call(): %s", fuzz_error.message);
	siglongjmp(*PG_exception_stack, 1);
}

int
errcode(int sqlerrcode)
{
	pending.sqlerrcode = sqlerrcode;
	return 0;
}

int
errhidestmt(bool hide_stmt pg_attribute_unused())
{
	return 0;
}

/* The message functions format for real: a bad format or argument shows. */
#define FUZZ_FORMAT(field) \
	do { \
		va_list		ap; \
		va_start(ap, fmt); \
		pg_vsnprintf(pending.field, sizeof(pending.field), fmt, ap); \
		va_end(ap); \
	} while (0)

int
errmsg(const char *fmt,...)
{
	FUZZ_FORMAT(message);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	FUZZ_FORMAT(message);
	return 0;
}

int
errdetail(const char *fmt,...)
{
	FUZZ_FORMAT(detail);
	return 0;
}

int
errdetail_internal(const char *fmt,...)
{
	FUZZ_FORMAT(detail);
	return 0;
}

int
errhint(const char *fmt,...)
{
	char		hint[512];
	va_list		ap;

	va_start(ap, fmt);
	pg_vsnprintf(hint, sizeof(hint), fmt, ap);
	va_end(ap);
	return 0;
}

/* The five-character SQLSTATE of an error code, as elog.c spells it. */
char *
unpack_sql_state(int sql_state)
{
	static char buf[12];
	int			i;

	for (i = 0; i < 5; i++)
	{
		buf[i] = PGUNSIXBIT(sql_state);
		sql_state >>= 6;
	}
	buf[i] = '\0';
	return buf;
}

/*
 * Call fn(args...) as the executor would (no collation, a fresh FmgrInfo
 * whose fn_mcxt is the per-input context).  False if it raised an ERROR,
 * which is then in fuzz_error.
 */
bool
fuzz_call(PGFunction fn, Datum *result, int nargs,...)
{
	FmgrInfo	flinfo;
	LOCAL_FCINFO(fcinfo, 4);
	va_list		ap;
	volatile bool ok = true;
	int			i;

	Assert(nargs <= 4);
	memset(&flinfo, 0, sizeof(flinfo));
	flinfo.fn_addr = fn;
	flinfo.fn_nargs = nargs;
	flinfo.fn_strict = true;
	flinfo.fn_mcxt = CurrentMemoryContext;
	InitFunctionCallInfoData(*fcinfo, &flinfo, nargs, InvalidOid, NULL, NULL);
	va_start(ap, nargs);
	for (i = 0; i < nargs; i++)
	{
		fcinfo->args[i].value = va_arg(ap, Datum);
		fcinfo->args[i].isnull = false;
	}
	va_end(ap);

	PG_TRY();
	{
		*result = fn(fcinfo);
		if (fcinfo->isnull)
			fuzz_fail("a STRICT function returned NULL for non-NULL arguments");
	}
	PG_CATCH();
	{
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/* ----------------------------------------------------------------------
 * Resource owners
 * ----------------------------------------------------------------------
 */

/* The one resource owner: any non-NULL pointer no other owner has. */
static char fuzz_owner;
ResourceOwner CurrentResourceOwner = (ResourceOwner) &fuzz_owner;

static struct
{
	ResourceReleaseCallback callback;
	void	   *arg;
}			release_callbacks[8];
static int	nrelease_callbacks;

void
RegisterResourceReleaseCallback(ResourceReleaseCallback callback, void *arg)
{
	if (nrelease_callbacks == lengthof(release_callbacks))
		fuzz_fail("too many resource release callbacks");
	release_callbacks[nrelease_callbacks].callback = callback;
	release_callbacks[nrelease_callbacks].arg = arg;
	nrelease_callbacks++;
}

/*
 * Release the resource owner as a transaction's commit or abort does: each
 * phase in turn, every callback in each.
 */
void
fuzz_release_resources(bool isCommit)
{
	ResourceReleasePhase phases[] = {RESOURCE_RELEASE_BEFORE_LOCKS,
		RESOURCE_RELEASE_LOCKS, RESOURCE_RELEASE_AFTER_LOCKS};
	int			p;
	int			i;

	for (p = 0; p < (int) lengthof(phases); p++)
		for (i = 0; i < nrelease_callbacks; i++)
			release_callbacks[i].callback(phases[p], isCommit, true,
										  release_callbacks[i].arg);
}

/* ----------------------------------------------------------------------
 * Encodings and text
 * ----------------------------------------------------------------------
 */

static int	database_encoding = PG_UTF8;

void
fuzz_set_encoding(int encoding)
{
	database_encoding = encoding;
}

/* The database encoding: UTF8 unless a target asks for another. */
int
GetDatabaseEncoding(void)
{
	return database_encoding;
}

const char *
GetDatabaseEncodingName(void)
{
	return pg_encoding_to_char(database_encoding);
}

/* Would the server accept s as a value in this encoding? */
bool
fuzz_valid_in_encoding(int encoding, const char *s, size_t len)
{
	return pg_encoding_verifymbstr(encoding, s, (int) len) == (int) len;
}

bool
pg_verifymbstr(const char *mbstr, int len, bool noError)
{
	if (fuzz_valid_in_encoding(database_encoding, mbstr, len))
		return true;
	if (noError)
		return false;
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("invalid byte sequence for encoding \"%s\"",
					GetDatabaseEncodingName())));
}

/*
 * A text datum holding data: a 4-byte header, or the 1-byte header the
 * server gives short values on disk (which PG_GETARG_TEXT_PP passes on),
 * if it fits.  Either way, the datum ends where its memory does; with a
 * 1-byte header, at a guard page (a 4-byte header must be aligned).
 */
text *
fuzz_text(const uint8_t *data, size_t len, bool short_header)
{
	char	   *t;

	if (short_header && len + VARHDRSZ_SHORT <= VARATT_SHORT_MAX)
	{
		t = fuzz_alloc_guarded(VARHDRSZ_SHORT + len);
		SET_VARSIZE_SHORT(t, VARHDRSZ_SHORT + len);
		memcpy(t + VARHDRSZ_SHORT, data, len);
	}
	else
	{
		t = palloc(VARHDRSZ + len);
		SET_VARSIZE(t, VARHDRSZ + len);
		memcpy(t + VARHDRSZ, data, len);
	}
	return (text *) t;
}

/* No value is ever toasted here; a short header is expanded, as detoasting does. */
struct varlena *
pg_detoast_datum(struct varlena *datum)
{
	if (VARATT_IS_EXTERNAL(datum) || VARATT_IS_COMPRESSED(datum))
		fuzz_fail("pg_detoast_datum of a toasted value");
	if (VARATT_IS_SHORT(datum))
	{
		Size		len = VARSIZE_SHORT(datum) - VARHDRSZ_SHORT;
		struct varlena *copy = palloc(VARHDRSZ + len);

		SET_VARSIZE(copy, VARHDRSZ + len);
		memcpy(VARDATA(copy), VARDATA_SHORT(datum), len);
		return copy;
	}
	return datum;
}

struct varlena *
pg_detoast_datum_packed(struct varlena *datum)
{
	if (VARATT_IS_EXTERNAL(datum) || VARATT_IS_COMPRESSED(datum))
		fuzz_fail("pg_detoast_datum_packed of a toasted value");
	return datum;
}

/* varlena.c's conversions between C strings and text. */
text *
cstring_to_text_with_len(const char *s, int len)
{
	text	   *result = (text *) palloc(len + VARHDRSZ);

	SET_VARSIZE(result, len + VARHDRSZ);
	memcpy(VARDATA(result), s, len);
	return result;
}

text *
cstring_to_text(const char *s)
{
	return cstring_to_text_with_len(s, strlen(s));
}

char *
text_to_cstring(const text *t)
{
	text	   *tunpacked = (text *) pg_detoast_datum_packed((struct varlena *) t);
	int			len = VARSIZE_ANY_EXHDR(tunpacked);
	char	   *result = (char *) palloc(len + 1);

	memcpy(result, VARDATA_ANY(tunpacked), len);
	result[len] = '\0';
	return result;
}

/* ----------------------------------------------------------------------
 * fmgr and the wire format (binary send/receive)
 * ----------------------------------------------------------------------
 */

int			MyProcPid;

/* fmgr's direct calls and the wire format helpers, as in the server. */
Datum
DirectFunctionCall1Coll(PGFunction func, Oid collation, Datum arg1)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

Datum
DirectFunctionCall2Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2)
{
	LOCAL_FCINFO(fcinfo, 2);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 2, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

Datum
DirectFunctionCall3Coll(PGFunction func, Oid collation, Datum arg1, Datum arg2,
						Datum arg3)
{
	LOCAL_FCINFO(fcinfo, 3);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 3, collation, NULL, NULL);
	fcinfo->args[0].value = arg1;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = arg2;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = arg3;
	fcinfo->args[2].isnull = false;
	result = (*func) (fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "function %p returned NULL", (void *) func);
	return result;
}

void
pq_copymsgbytes(StringInfo msg, char *buf, int datalen)
{
	if (datalen < 0 || datalen > (msg->len - msg->cursor))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("insufficient data left in message")));
	memcpy(buf, &msg->data[msg->cursor], datalen);
	msg->cursor += datalen;
}

void
pq_begintypsend(StringInfo buf)
{
	initStringInfo(buf);
	appendStringInfoSpaces(buf, VARHDRSZ);
}

void
pq_sendbytes(StringInfo buf, const char *data, int datalen)
{
	appendBinaryStringInfo(buf, data, datalen);
}

bytea *
pq_endtypsend(StringInfo buf)
{
	bytea	   *result = (bytea *) buf->data;

	SET_VARSIZE(result, buf->len);
	return result;
}

/* The statement's text is not logged here anyway. */
void
statement_note_plaintext(void)
{
}

/* ----------------------------------------------------------------------
 * Referenced by the object files, never reached by the fuzz targets
 * ----------------------------------------------------------------------
 */

#define FUZZ_UNREACHABLE(name) \
	fuzz_fail("%s is not available outside the server", name)

#define FUZZ_UNREACHABLE_FN(name) \
	Datum name(FunctionCallInfo fcinfo pg_attribute_unused()) \
	{ \
		FUZZ_UNREACHABLE(#name); \
	}

/* numeric and time zone arithmetic: noise(numeric), mask_date(timestamptz) */
FUZZ_UNREACHABLE_FN(numeric_add)
FUZZ_UNREACHABLE_FN(numeric_cmp)
FUZZ_UNREACHABLE_FN(numeric_in)
FUZZ_UNREACHABLE_FN(numeric_mul)
FUZZ_UNREACHABLE_FN(numeric_round)
FUZZ_UNREACHABLE_FN(numeric_scale)
FUZZ_UNREACHABLE_FN(float8_numeric)
FUZZ_UNREACHABLE_FN(int8_numeric)
FUZZ_UNREACHABLE_FN(timestamp_zone)
FUZZ_UNREACHABLE_FN(timestamptz_zone)
FUZZ_UNREACHABLE_FN(byteain)

char *
numeric_normalize(Numeric num pg_attribute_unused())
{
	FUZZ_UNREACHABLE("numeric_normalize");
}

/* the calendar: mask_date() */
void
j2date(int jd pg_attribute_unused(), int *year pg_attribute_unused(),
	   int *month pg_attribute_unused(), int *day pg_attribute_unused())
{
	FUZZ_UNREACHABLE("j2date");
}

int
date2j(int year pg_attribute_unused(), int month pg_attribute_unused(),
	   int day pg_attribute_unused())
{
	FUZZ_UNREACHABLE("date2j");
}

int
timestamp2tm(Timestamp dt pg_attribute_unused(), int *tzp pg_attribute_unused(),
			 struct pg_tm *tm pg_attribute_unused(),
			 fsec_t *fsec pg_attribute_unused(),
			 const char **tzn pg_attribute_unused(),
			 pg_tz *attimezone pg_attribute_unused())
{
	FUZZ_UNREACHABLE("timestamp2tm");
}

int
tm2timestamp(struct pg_tm *tm pg_attribute_unused(), fsec_t fsec pg_attribute_unused(),
			 int *tzp pg_attribute_unused(), Timestamp *dt pg_attribute_unused())
{
	FUZZ_UNREACHABLE("tm2timestamp");
}

/* catalogs and privileges: decrypt(), the relation check */
bool
superuser(void)
{
	FUZZ_UNREACHABLE("superuser");
}

/* The fuzzing "user" is a superuser: it may encrypt (enctype_trusted). */
Oid
GetUserId(void)
{
	return BOOTSTRAP_SUPERUSERID;
}

bool
superuser_arg(Oid roleid)
{
	return roleid == BOOTSTRAP_SUPERUSERID;
}

uint64
policy_current_generation(void)
{
	return 1;
}

bool
views_any_owned_by(Oid userid pg_attribute_unused())
{
	FUZZ_UNREACHABLE("views_any_owned_by");
}

int
statement_planning_depth(void)
{
	return 0;
}

oidvector *
buildoidvector(const Oid *oids pg_attribute_unused(), int n pg_attribute_unused())
{
	FUZZ_UNREACHABLE("buildoidvector");
}

struct varlena *
pg_detoast_datum_copy(struct varlena *datum pg_attribute_unused())
{
	FUZZ_UNREACHABLE("pg_detoast_datum_copy");
}

/* arrays: the probes of an IN list (_blind_probe(text[])) */
void
deconstruct_array(ArrayType *array pg_attribute_unused(), Oid elmtype pg_attribute_unused(),
				  int elmlen pg_attribute_unused(), bool elmbyval pg_attribute_unused(),
				  char elmalign pg_attribute_unused(), Datum **elemsp pg_attribute_unused(),
				  bool **nullsp pg_attribute_unused(), int *nelemsp pg_attribute_unused())
{
	FUZZ_UNREACHABLE("deconstruct_array");
}

ArrayType *
construct_md_array(Datum *elems pg_attribute_unused(), bool *nulls pg_attribute_unused(),
				   int ndims pg_attribute_unused(), int *dims pg_attribute_unused(),
				   int *lbs pg_attribute_unused(), Oid elmtype pg_attribute_unused(),
				   int elmlen pg_attribute_unused(), bool elmbyval pg_attribute_unused(),
				   char elmalign pg_attribute_unused())
{
	FUZZ_UNREACHABLE("construct_md_array");
}

/* (key_id(): as 0.3 declares it) */
Oid
get_func_rettype(Oid funcid pg_attribute_unused())
{
	return INT8OID;
}

void
get_typlenbyvalalign(Oid typid pg_attribute_unused(), int16 *typlen pg_attribute_unused(),
					 bool *typbyval pg_attribute_unused(), char *typalign pg_attribute_unused())
{
	FUZZ_UNREACHABLE("get_typlenbyvalalign");
}

Oid
get_role_oid(const char *rolname pg_attribute_unused(),
			 bool missing_ok pg_attribute_unused())
{
	FUZZ_UNREACHABLE("get_role_oid");
}

bool
has_privs_of_role(Oid member pg_attribute_unused(), Oid role pg_attribute_unused())
{
	FUZZ_UNREACHABLE("has_privs_of_role");
}

Oid
GetSysCacheOid(int cacheId pg_attribute_unused(), AttrNumber oidcol pg_attribute_unused(),
			   Datum key1 pg_attribute_unused(), Datum key2 pg_attribute_unused(),
			   Datum key3 pg_attribute_unused(), Datum key4 pg_attribute_unused())
{
	FUZZ_UNREACHABLE("GetSysCacheOid");
}

Relation
try_relation_open(Oid relationId pg_attribute_unused(),
				  LOCKMODE lockmode pg_attribute_unused())
{
	FUZZ_UNREACHABLE("try_relation_open");
}

void
relation_close(Relation relation pg_attribute_unused(),
			   LOCKMODE lockmode pg_attribute_unused())
{
	FUZZ_UNREACHABLE("relation_close");
}

Oid
pii_guard_schema_oid(bool missing_ok pg_attribute_unused())
{
	FUZZ_UNREACHABLE("pii_guard_schema_oid");
}

void
audit_deny(const char *relation pg_attribute_unused(),
		   const char *operation pg_attribute_unused(),
		   const char *detail pg_attribute_unused())
{
	FUZZ_UNREACHABLE("audit_deny");
}

/* (Values are never toasted here: envelope_header() only slices those.) */
struct varlena *
pg_detoast_datum_slice(struct varlena *datum pg_attribute_unused(),
					   int32 first pg_attribute_unused(),
					   int32 count pg_attribute_unused())
{
	FUZZ_UNREACHABLE("pg_detoast_datum_slice");
}
