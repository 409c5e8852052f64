/*-------------------------------------------------------------------------
 *
 * audit_archive.c
 *		Retention of the audit trail.  pii_guard.audit_retention says how
 *		long events stay in pii_guard.audit_log; the archive step moves the
 *		sealed events older than that -- always a prefix of the chain -- to
 *		a JSON-lines file in pii_guard.audit_archive_directory and deletes
 *		them from audit_log and audit_seal, in one transaction, recording
 *		the file in pii_guard.audit_archives.
 *
 * An archive file, one JSON object per line:
 *
 *	{"pii_guard_audit_archive": 1, "database": ..., "first_seal": N,
 *	 "prev_chain_hash": HEX or null, "older_than": ..., "created_at": ...}
 *	one line per event, in seal order: every audit_log column (row_mac as
 *	"\\x..."), plus "seal_seq" and "chain_hash" (hex)
 *	{"end": true, "events": n, "last_seal": M, "last_chain_hash": HEX}
 *
 * so it verifies without the database: chain_hash = SHA-256(previous
 * chain_hash || event_id as 8 bytes big-endian || row_mac), from the
 * header's prev_chain_hash; a missing trailer is a cut file.  In a
 * database holding the audit key, verify_audit_archive() also checks each
 * row against its MAC, and the file against the SHA-256 recorded for it.
 * verify_audit() continues the table's chain from the last archive.
 *
 * What is archived has been checked on the way out: a seal missing in the
 * sequence, a sealed row missing, a row that fails its MAC or a link that
 * does not match stops the step with an ERROR, and nothing is deleted.
 * The newest seal always stays in the table (the worker continues the
 * chain from it).  The file is written under a temporary name, fsynced
 * and renamed before the rows are deleted; if the transaction aborts, the
 * file (or the temporary one) is removed again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

/* Settings */
char	   *pii_guard_audit_retention = NULL;
char	   *pii_guard_audit_archive_directory = NULL;

/* Deleting archived rows: the guard trigger lets these deletes through. */
bool		audit_archiving = false;

/* A file written by this transaction, removed if it aborts. */
static char archive_written[MAXPGPATH];
static bool archive_callback_registered = false;

/* An archive step stops after this many events (one file). */
#define AUDIT_ARCHIVE_MAX_EVENTS	1000000

/*
 * GUC check hook of pii_guard.audit_retention: empty (keep events in the
 * table for ever) or a positive interval, e.g. '3 years'.
 */
bool
audit_retention_check(char **newval, void **extra pg_attribute_unused(),
					  GucSource source pg_attribute_unused())
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	Interval   *volatile iv = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	PG_TRY();
	{
		iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(*newval),
												   ObjectIdGetDatum(InvalidOid),
												   Int32GetDatum(-1)));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
	{
		GUC_check_errdetail("pii_guard.audit_retention is an interval, e.g. '3 years' or '400 days'.");
		return false;
	}
	if (iv->month < 0 || iv->day < 0 || iv->time < 0 ||
		(iv->month == 0 && iv->day == 0 && iv->time == 0))
	{
		GUC_check_errdetail("pii_guard.audit_retention must be a positive interval; empty keeps events for ever.");
		return false;
	}
	return true;
}

/* The archive directory (absolute, or relative to the data directory). */
static void
audit_archive_dir(char *path, int size)
{
	const char *dir = pii_guard_audit_archive_directory;

	if (dir == NULL || dir[0] == '\0')
		dir = "pii_guard_archive";
	if (is_absolute_path(dir))
		strlcpy(path, dir, size);
	else
		snprintf(path, size, "%s/%s", DataDir, dir);
}

static void
audit_archive_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		audit_archiving = false;
	if (archive_written[0] == '\0')
		return;
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		if (unlink(archive_written) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not remove audit archive \"%s\" of an aborted archive step: %m",
							archive_written)));
		archive_written[0] = '\0';
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
			 event == XACT_EVENT_PREPARE)
		archive_written[0] = '\0';
}

static void
hex_of(const uint8 *b, int n, char *out)
{
	for (int i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* Write a line and feed it to the file's digest. */
static void
archive_put(FILE *f, EVP_MD_CTX *md, const char *path, StringInfo line)
{
	appendStringInfoChar(line, '\n');
	if (fwrite(line->data, 1, line->len, f) != (size_t) line->len)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write audit archive \"%s\": %m", path)));
	if (EVP_DigestUpdate(md, line->data, line->len) != 1)
		crypto_failure("SHA-256");
	resetStringInfo(line);
}

/* A value of column col of the current SPI row. */
static Datum
spi_col(SPITupleTable *t, uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(t->vals[row], t->tupdesc, col, isnull);
}

/*
 * Archive the sealed events with event_time before cutoff that come first
 * in the chain, at most max_events of them, into one file.  Runs as the
 * extension owner in the caller's transaction.  Returns the number of
 * events archived (0: nothing was due), the file's name in *file.
 */
static int64
audit_archive_step(TimestampTz cutoff, int64 max_events, char *file, int filesize,
				   int64 *first_seal, int64 *last_seal)
{
	OwnerContext oc;
	int64		expected = 1;
	int64		head;
	bytea	   *prev = NULL;
	bytea	   *first_prev;
	char		dir[MAXPGPATH];
	char		path[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		hex[65];
	uint8		digest[32];
	unsigned int dlen;
	FILE	   *f;
	EVP_MD_CTX *md;
	StringInfoData line;
	Portal		portal;
	Oid			types[4] = {INT8OID, INT8OID, TIMESTAMPTZOID, INT8OID};
	Datum		args[4];
	int64		n = 0;
	int64		first_event = 0;
	int64		last_event = 0;
	bool		done = false;
	bool		isnull;
	char	   *dbname;

	file[0] = '\0';
	max_events = Min(Max(max_events, 1), AUDIT_ARCHIVE_MAX_EVENTS);
	owner_spi_begin(&oc);
	/* One archive step at a time (the worker's, or a superuser's). */
	if (SPI_execute("LOCK TABLE pii_guard.audit_archives IN SHARE ROW EXCLUSIVE MODE",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock pii_guard.audit_archives");
	if (SPI_execute("SELECT a.last_seal, a.last_chain_hash FROM pii_guard.audit_archives a "
					"ORDER BY a.last_seal DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard.audit_archives");
	if (SPI_processed == 1)
	{
		expected = DatumGetInt64(spi_col(SPI_tuptable, 0, 1, &isnull)) + 1;
		prev = DatumGetByteaPCopy(spi_col(SPI_tuptable, 0, 2, &isnull));
	}
	first_prev = prev;
	if (SPI_execute("SELECT pg_catalog.max(s.seal_seq) FROM pii_guard.audit_seal s",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard.audit_seal");
	head = DatumGetInt64(spi_col(SPI_tuptable, 0, 1, &isnull));
	if (isnull || head <= expected)
	{
		owner_spi_end(&oc);
		return 0;
	}

	/* The events, in seal order, each with what proves it. */
	args[0] = Int64GetDatum(expected);
	args[1] = Int64GetDatum(head);
	args[2] = TimestampTzGetDatum(cutoff);
	args[3] = Int64GetDatum(max_events);
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT s.seal_seq, s.chain_hash, l.event_id, l.row_mac, "
									   "       l.event_time OPERATOR(pg_catalog.<) $3, "
									   "       pii_guard._audit_row_ok(l), "
									   "       (pg_catalog.to_jsonb(l) OPERATOR(pg_catalog.||) "
									   "        pg_catalog.jsonb_build_object('seal_seq', s.seal_seq, "
									   "          'chain_hash', pg_catalog.encode(s.chain_hash, 'hex')))::pg_catalog.text "
									   "FROM pii_guard.audit_seal s "
									   "LEFT JOIN pii_guard.audit_log l ON l.event_id OPERATOR(pg_catalog.=) s.event_id "
									   "WHERE s.seal_seq OPERATOR(pg_catalog.>=) $1 "
									   "  AND s.seal_seq OPERATOR(pg_catalog.<) $2 "
									   "ORDER BY s.seal_seq LIMIT $4",
									   4, types, args, NULL, true, CURSOR_OPT_NO_SCROLL);

	audit_archive_dir(dir, sizeof(dir));
	if (MakePGDirectory(dir) != 0 && errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create audit archive directory \"%s\": %m", dir),
				 errhint("Set pii_guard.audit_archive_directory to a directory the server can write.")));
	snprintf(file, filesize, "audit-%u-" INT64_FORMAT ".jsonl", MyDatabaseId, expected);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (!archive_callback_registered)
	{
		RegisterXactCallback(audit_archive_xact_callback, NULL);
		archive_callback_registered = true;
	}
	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create audit archive \"%s\": %m", tmp)));
	strlcpy(archive_written, tmp, sizeof(archive_written));
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		crypto_failure("SHA-256");

	initStringInfo(&line);
	dbname = get_database_name(MyDatabaseId);
	appendStringInfoString(&line, "{\"pii_guard_audit_archive\": 1, \"database\": ");
	escape_json(&line, dbname ? dbname : "?");
	appendStringInfo(&line, ", \"first_seal\": " INT64_FORMAT ", \"prev_chain_hash\": ", expected);
	if (prev)
	{
		hex_of((uint8 *) VARDATA_ANY(prev), 32, hex);
		appendStringInfo(&line, "\"%s\"", hex);
	}
	else
		appendStringInfoString(&line, "null");
	appendStringInfoString(&line, ", \"older_than\": ");
	escape_json(&line, timestamptz_to_str(cutoff));
	appendStringInfoString(&line, ", \"created_at\": ");
	escape_json(&line, timestamptz_to_str(GetCurrentTimestamp()));
	appendStringInfoChar(&line, '}');
	archive_put(f, md, tmp, &line);

	while (!done)
	{
		SPITupleTable *t;
		uint64		got;

		SPI_cursor_fetch(portal, true, 1000);
		t = SPI_tuptable;
		got = SPI_processed;
		if (got == 0)
			break;
		for (uint64 i = 0; i < got; i++)
		{
			int64		seq = DatumGetInt64(spi_col(t, i, 1, &isnull));
			bytea	   *hash = DatumGetByteaPP(spi_col(t, i, 2, &isnull));
			Datum		id = spi_col(t, i, 3, &isnull);
			bool		missing = isnull;
			Datum		mac;
			bool		macnull;
			bytea	   *link;
			bool		ok;

			if (seq != expected + n)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("the audit chain is broken at seal " INT64_FORMAT ": nothing was archived",
								expected + n),
						 errhint("Run pii_guard.verify_audit() to see what was changed.")));
			if (missing)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("the sealed audit row of seal " INT64_FORMAT " is missing: nothing was archived", seq),
						 errhint("Run pii_guard.verify_audit() to see what was changed.")));
			if (!DatumGetBool(spi_col(t, i, 5, &isnull)))
			{
				done = true;	/* the first event not yet due */
				break;
			}
			ok = DatumGetBool(spi_col(t, i, 6, &isnull)) && !isnull;
			mac = spi_col(t, i, 4, &macnull);
			link = audit_chain_link(prev, DatumGetInt64(id), macnull ? NULL : DatumGetByteaPP(mac));
			if (!ok || VARSIZE_ANY_EXHDR(hash) != 32 ||
				memcmp(VARDATA_ANY(link), VARDATA_ANY(hash), 32) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("audit event " INT64_FORMAT " (seal " INT64_FORMAT ") does not verify: nothing was archived",
								DatumGetInt64(id), seq),
						 errhint("Run pii_guard.verify_audit() to see what was changed.")));
			prev = link;
			if (n == 0)
				first_event = DatumGetInt64(id);
			last_event = DatumGetInt64(id);
			appendStringInfoString(&line, SPI_getvalue(t->vals[i], t->tupdesc, 7));
			archive_put(f, md, tmp, &line);
			n++;
		}
		SPI_freetuptable(t);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);

	if (n == 0)
	{
		FreeFile(f);
		EVP_MD_CTX_free(md);
		(void) unlink(tmp);
		archive_written[0] = '\0';
		file[0] = '\0';
		owner_spi_end(&oc);
		return 0;
	}
	hex_of((uint8 *) VARDATA_ANY(prev), 32, hex);
	appendStringInfo(&line, "{\"end\": true, \"events\": " INT64_FORMAT ", \"last_seal\": " INT64_FORMAT
					 ", \"last_chain_hash\": \"%s\"}", n, expected + n - 1, hex);
	archive_put(f, md, tmp, &line);
	if (EVP_DigestFinal_ex(md, digest, &dlen) != 1)
		crypto_failure("SHA-256");
	EVP_MD_CTX_free(md);
	if (fflush(f) != 0 || pg_fsync(fileno(f)) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write audit archive \"%s\": %m", tmp)));
	if (FreeFile(f) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close audit archive \"%s\": %m", tmp)));
	(void) durable_rename(tmp, path, ERROR);
	strlcpy(archive_written, path, sizeof(archive_written));

	/* Record it, then delete what it holds. */
	audit_archiving = true;
	{
		Oid			rtypes[10] = {TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
		BYTEAOID, BYTEAOID, BYTEAOID, TIMESTAMPTZOID};
		Datum		r[10];
		char		rnulls[10];
		bytea	   *d = palloc(VARHDRSZ + 32);

		memset(rnulls, ' ', sizeof(rnulls));

		SET_VARSIZE(d, VARHDRSZ + 32);
		memcpy(VARDATA(d), digest, 32);
		r[0] = CStringGetTextDatum(file);
		r[1] = Int64GetDatum(expected);
		r[2] = Int64GetDatum(expected + n - 1);
		r[3] = Int64GetDatum(first_event);
		r[4] = Int64GetDatum(last_event);
		r[5] = Int64GetDatum(n);
		r[6] = PointerGetDatum(first_prev);
		if (first_prev == NULL)
			rnulls[6] = 'n';
		r[7] = PointerGetDatum(prev);
		r[8] = PointerGetDatum(d);
		r[9] = TimestampTzGetDatum(cutoff);
		if (SPI_execute_with_args("INSERT INTO pii_guard.audit_archives (file, first_seal, last_seal, "
								  "first_event, last_event, events, prev_chain_hash, last_chain_hash, "
								  "sha256, older_than) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
								  10, rtypes, r, rnulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the audit archive");
		if (SPI_execute_with_args("DELETE FROM pii_guard.audit_log l USING pii_guard.audit_seal s "
								  "WHERE s.event_id OPERATOR(pg_catalog.=) l.event_id "
								  "AND s.seal_seq OPERATOR(pg_catalog.>=) $2 "
								  "AND s.seal_seq OPERATOR(pg_catalog.<=) $3",
								  3, rtypes, r, NULL, false, 0) != SPI_OK_DELETE ||
			(int64) SPI_processed != n)
			elog(ERROR, "archived audit rows changed while they were archived");
		if (SPI_execute_with_args("DELETE FROM pii_guard.audit_seal s "
								  "WHERE s.seal_seq OPERATOR(pg_catalog.>=) $2 "
								  "AND s.seal_seq OPERATOR(pg_catalog.<=) $3",
								  3, rtypes, r, NULL, false, 0) != SPI_OK_DELETE ||
			(int64) SPI_processed != n)
			elog(ERROR, "archived audit seals changed while they were archived");
	}
	audit_archiving = false;
	owner_spi_end(&oc);

	*first_seal = expected;
	*last_seal = expected + n - 1;
	{
		AuditEvent	ev;
		char		dhex[65];

		hex_of(digest, 32, dhex);
		audit_event_init(&ev, AUDIT_ADMIN);
		AUDIT_SET(&ev, operation, "archive_audit");
		snprintf(ev.detail, sizeof(ev.detail),
				 INT64_FORMAT " events (" INT64_FORMAT " to " INT64_FORMAT ", seals " INT64_FORMAT
				 " to " INT64_FORMAT ") from before %s archived to %s, sha256 %s",
				 n, first_event, last_event, *first_seal, *last_seal,
				 timestamptz_to_str(cutoff), file, dhex);
		(void) audit_insert_now(&ev);
	}
	return n;
}

/*
 * The same, and on an ERROR (also one a caller's exception block catches)
 * the deletes are no longer let through and the file is removed.  (A
 * subtransaction rolled back after a step that succeeded leaves its file,
 * unrecorded: the next step, from the same seal, writes it again.)
 */
int64
audit_archive(TimestampTz cutoff, int64 max_events, char *file, int filesize,
			  int64 *first_seal, int64 *last_seal)
{
	int64		n = 0;

	PG_TRY();
	{
		n = audit_archive_step(cutoff, max_events, file, filesize, first_seal, last_seal);
	}
	PG_CATCH();
	{
		audit_archiving = false;
		if (archive_written[0] != '\0')
			(void) unlink(archive_written);
		archive_written[0] = '\0';
		PG_RE_THROW();
	}
	PG_END_TRY();
	return n;
}

/*
 * The cutoff of the retention setting (now minus pii_guard.audit_retention),
 * or false when none is set.
 */
bool
audit_retention_cutoff(TimestampTz *cutoff)
{
	Datum		iv;

	if (pii_guard_audit_retention == NULL || pii_guard_audit_retention[0] == '\0')
		return false;
	iv = DirectFunctionCall3(interval_in, CStringGetDatum(pii_guard_audit_retention),
							 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	*cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													  TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
													  iv));
	return true;
}

PG_FUNCTION_INFO_V1(pii_guard_archive_audit);

/*
 * SQL function: archive_audit(older_than interval DEFAULT NULL,
 *		max_events integer DEFAULT 100000,
 *		OUT file text, OUT first_seal bigint, OUT last_seal bigint,
 *		OUT events bigint) returns record
 *
 * The archive step now, for events older than older_than (default: the
 * pii_guard.audit_retention setting).  Superusers only unless granted.
 */
Datum
pii_guard_archive_audit(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	TimestampTz cutoff;
	char		file[MAXPGPATH];
	int64		first = 0;
	int64		last = 0;
	int64		n;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "archive_audit must return a record");
	if (!PG_ARGISNULL(0))
		cutoff = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
														 PG_GETARG_DATUM(0)));
	else if (!audit_retention_cutoff(&cutoff))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no audit retention is set"),
				 errhint("Set pii_guard.audit_retention (e.g. '3 years'), or give archive_audit() an interval.")));
	if (cutoff > GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("archive_audit() archives events from the past only"),
				 errdetail("older_than must not be a negative interval.")));
	n = audit_archive(cutoff, PG_ARGISNULL(1) ? 100000 : PG_GETARG_INT32(1),
					  file, sizeof(file), &first, &last);
	if (n == 0)
	{
		nulls[0] = nulls[1] = nulls[2] = true;
		values[3] = Int64GetDatum(0);
	}
	else
	{
		values[0] = CStringGetTextDatum(file);
		values[1] = Int64GetDatum(first);
		values[2] = Int64GetDatum(last);
		values[3] = Int64GetDatum(n);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}
