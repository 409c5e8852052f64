/*-------------------------------------------------------------------------
 *
 * audit.c
 *		Audit events: the shared-memory queue, the per-database background
 *		worker that writes them, the row MAC and the hash chain.
 *
 * Two paths into pii_guard.audit_log:
 *
 *	write and admin events are inserted in the transaction that makes the
 *	change (audit_insert_now), so they are atomic with it;
 *
 *	read, export and deny events are enqueued in shared memory and written
 *	by the audit worker of their database in its own transactions, so a
 *	denial is recorded although the statement that caused it rolls back.
 *
 * Queue.  A ring of fixed-size AuditEvent slots under one LWLock.  A full
 * queue applies back-pressure: the enqueuing backend waits on a condition
 * variable up to pii_guard.audit_enqueue_timeout, then spills the event to
 * a file under $PGDATA/pg_pii_guard/ which the worker ingests; an event is
 * never dropped.  (In an aborting transaction we never wait: we spill at
 * once.)  The worker copies its database's events out, inserts them, and
 * only after its transaction commits frees their slots: a worker that dies
 * half-way leaves them queued for its successor.  What a crash of the whole
 * server can lose is what was still queued in shared memory: events of the
 * last moments, never a committed change's write event.
 *
 * Workers.  One dynamic background worker per database that uses
 * pii_guard, started on demand by the first backend that needs it and
 * restarted by the postmaster if it dies.
 *
 * Tamper evidence.  Every row carries row_mac, an HMAC-SHA256 (under the
 * 'audit' data key) of its content; a BEFORE INSERT trigger computes it for
 * inserts made by this file and refuses other inserts that carry none.
 * The worker seals committed rows into pii_guard.audit_seal, each seal's
 * chain_hash = SHA-256(previous chain_hash || event_id || row_mac), in
 * sealing order, so that writers never wait for the chain.
 * pii_guard.verify_audit() recomputes both.  Nobody may UPDATE, DELETE or
 * TRUNCATE either table (triggers refuse it even for superusers, who can
 * disable triggers -- which verify_audit then exposes).
 *
 * No event ever holds a value of a protected column: relation and column
 * names, row keys, counts, query ids and SQLSTATEs only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "common/ip.h"
#include "utils/backend_status.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/hsearch.h"
#include "utils/typcache.h"
#include "executor/tuptable.h"
#include "nodes/value.h"
#include "access/htup_details.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

#define AUDIT_MAX_WORKERS	64
#define AUDIT_BATCH			128
#define AUDIT_SPILL_DIR		"pg_pii_guard"

typedef struct AuditWorkerSlot
{
	Oid			dboid;
	pid_t		pid;
	Latch	   *latch;
	TimestampTz requested_at;
} AuditWorkerSlot;

typedef struct AuditShared
{
	LWLock	   *lock;
	ConditionVariable space_cv;
	uint64		head;			/* sequence number of the next event */
	uint64		tail;			/* oldest slot still in use */
	int			capacity;
	uint64		spilled;		/* events that went to spill files */
	uint64		spill_counter;
	AuditWorkerSlot workers[AUDIT_MAX_WORKERS];
	AuditEvent	events[FLEXIBLE_ARRAY_MEMBER];
} AuditShared;

/* Settings */
bool		pii_guard_audit_reads = true;
int			pii_guard_audit_queue_size = 1024;
int			pii_guard_audit_enqueue_timeout = 1000;
int			pii_guard_audit_max_row_keys = 100;
char	   *pii_guard_audit_log_destination = NULL;

/*
 * Coalescing of read events.  A backend keeps its latest read event in its
 * own slot in shared memory and merges the next one into it while they
 * describe the same reads (role, relation, columns, query) and the merged
 * row keys still fit; the worker harvests the slots every cycle.  So a
 * stream of identical single-row lookups costs one event per hundred rows
 * or per worker cycle, not one per statement -- and no row key is lost.
 */
typedef struct PendingSlot
{
	slock_t		mutex;
	bool		used;
	int			statements;
	AuditEvent	ev;
} PendingSlot;

static AuditShared *audit_shared = NULL;
static PendingSlot *pending_slots = NULL;
static int	pending_nslots = 0;
static bool pending_exit_registered = false;

static int	audit_harvest_pending(Oid dboid, AuditEvent *events, int max);
static bool audit_inserting = false;	/* our own INSERT into audit_log */
static bool audit_mirror_to_log = false;

static Size
audit_shmem_size(void)
{
	return add_size(offsetof(AuditShared, events),
					mul_size(sizeof(AuditEvent), pii_guard_audit_queue_size));
}

static int
audit_pending_count(void)
{
	return MaxBackends > 0 ? MaxBackends : 1024;
}

/* shmem_request_hook (or _PG_init before 15): reserve the queue. */
void
audit_shmem_request(void)
{
	RequestAddinShmemSpace(audit_shmem_size());
	RequestAddinShmemSpace(mul_size(sizeof(PendingSlot), audit_pending_count()));
	RequestNamedLWLockTranche("pii_guard audit", 1);
}

/* shmem_startup_hook: create or attach to the queue. */
void
audit_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	audit_shared = ShmemInitStruct("pii_guard audit queue", audit_shmem_size(), &found);
	if (!found)
	{
		memset(audit_shared, 0, offsetof(AuditShared, events));
		audit_shared->lock = &(GetNamedLWLockTranche("pii_guard audit"))->lock;
		ConditionVariableInit(&audit_shared->space_cv);
		audit_shared->capacity = pii_guard_audit_queue_size;
	}
	pending_nslots = audit_pending_count();
	pending_slots = ShmemInitStruct("pii_guard audit pending reads",
									mul_size(sizeof(PendingSlot), pending_nslots), &found);
	if (!found)
	{
		int			i;

		for (i = 0; i < pending_nslots; i++)
		{
			SpinLockInit(&pending_slots[i].mutex);
			pending_slots[i].used = false;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* GUC check hook of audit_log_destination: 'table' or 'table,log'. */
bool
audit_destination_check(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || strcmp(*newval, "table") == 0 ||
		strcmp(*newval, "table,log") == 0 || strcmp(*newval, "log,table") == 0)
		return true;
	GUC_check_errdetail("Valid values are \"table\" and \"table,log\".");
	return false;
}

void
audit_destination_assign(const char *newval, void *extra)
{
	audit_mirror_to_log = newval != NULL && strstr(newval, "log") != NULL;
}

/* Copy s into a fixed-size field, truncated at a character boundary. */
static void
audit_copy(char *dst, const char *s, int size)
{
	int			len;

	if (s == NULL)
	{
		dst[0] = '\0';
		return;
	}
	len = strlen(s);
	if (len >= size)
		len = pg_mbcliplen(s, len, size - 1);
	memcpy(dst, s, len);
	dst[len] = '\0';
}

/* Fill the context fields of an event (who, where, when). */
void
audit_event_init(AuditEvent *ev, char kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->dboid = MyDatabaseId;
	ev->kind = kind;
	ev->at = GetCurrentTimestamp();
	ev->pid = MyProcPid;
	ev->session_role = GetSessionUserId();
	ev->current_role = GetUserId();
	ev->xid = GetTopTransactionIdIfAny();
	ev->query_id = compat_query_id();
	if (MyBEEntry != NULL && MyBEEntry->st_clientaddr.salen > 0 &&
		MyBEEntry->st_clientaddr.addr.ss_family != AF_UNIX)
		(void) pg_getnameinfo_all(&MyBEEntry->st_clientaddr.addr,
								  MyBEEntry->st_clientaddr.salen,
								  ev->client_addr, sizeof(ev->client_addr),
								  NULL, 0, NI_NUMERICHOST);
	if (application_name)
		audit_copy(ev->application_name, application_name, sizeof(ev->application_name));
}

void
audit_event_set(char *field, int size, const char *value)
{
	audit_copy(field, value, size);
}

/* Path of the spill directory, created on demand. */
static void
audit_spill_dir(char *path, int size)
{
	snprintf(path, size, "%s/%s", DataDir, AUDIT_SPILL_DIR);
}

/*
 * Spill one event to its own file (written to a temporary name, fsynced
 * and renamed, so the worker never reads half an event).
 */
static void
audit_spill(const AuditEvent *ev)
{
	char		dir[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		path[MAXPGPATH];
	uint64		n;
	int			fd;

	audit_spill_dir(dir, sizeof(dir));
	(void) MakePGDirectory(dir);
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	n = ++audit_shared->spill_counter;
	audit_shared->spilled++;
	LWLockRelease(audit_shared->lock);
	snprintf(tmp, sizeof(tmp), "%s/%u.%d.%llu.tmp", dir, ev->dboid, MyProcPid,
			 (unsigned long long) n);
	snprintf(path, sizeof(path), "%s/%u.%d.%llu.event", dir, ev->dboid, MyProcPid,
			 (unsigned long long) n);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0 || write(fd, ev, sizeof(*ev)) != sizeof(*ev) || pg_fsync(fd) != 0 ||
		CloseTransientFile(fd) != 0 || rename(tmp, path) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("pii_guard could neither queue nor spill an audit event: %m"),
				 errdetail("Stopping rather than losing the event.")));
}

/* Wake (or start) the audit worker of ev's database. */
static void
audit_wake_worker(Oid dboid, bool may_start)
{
	int			i;
	int			free_slot = -1;
	Latch	   *latch = NULL;
	bool		need_start = false;

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < AUDIT_MAX_WORKERS; i++)
	{
		AuditWorkerSlot *w = &audit_shared->workers[i];

		if (w->dboid == dboid)
		{
			if (w->pid != 0)
				latch = w->latch;
			else if (may_start &&
					 TimestampDifferenceExceeds(w->requested_at, GetCurrentTimestamp(), 1000))
			{
				w->requested_at = GetCurrentTimestamp();
				need_start = true;
			}
			break;
		}
		if (w->dboid == InvalidOid && free_slot < 0)
			free_slot = i;
	}
	if (i == AUDIT_MAX_WORKERS && may_start && free_slot >= 0)
	{
		audit_shared->workers[free_slot].dboid = dboid;
		audit_shared->workers[free_slot].pid = 0;
		audit_shared->workers[free_slot].requested_at = GetCurrentTimestamp();
		need_start = true;
	}
	LWLockRelease(audit_shared->lock);

	if (latch)
		SetLatch(latch);
	if (need_start)
	{
		BackgroundWorker bgw;

		memset(&bgw, 0, sizeof(bgw));
		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		/*
		 * Not restarted by the postmaster (a dropped database's worker would
		 * come back forever): the next backend that needs it starts it.
		 */
		bgw.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pii_guard");
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "pii_guard_audit_worker_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "pii_guard audit worker for database %u", dboid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, "pii_guard audit worker");
		bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
		bgw.bgw_notify_pid = 0;
		if (!RegisterDynamicBackgroundWorker(&bgw, NULL))
			ereport(WARNING,
					(errmsg("pii_guard could not start the audit worker for this database"),
					 errdetail("Audit events stay queued until it can start."),
					 errhint("Raise max_worker_processes.")));
	}
}

/*
 * Make sure this database's audit worker runs (at most once a second per
 * backend: it takes the queue's lock).
 */
void
audit_ensure_worker(void)
{
	static TimestampTz last_check = 0;
	TimestampTz now;

	if (audit_shared == NULL || !OidIsValid(MyDatabaseId) || IsBackgroundWorker)
		return;
	now = GetCurrentTimestamp();
	if (now - last_check < USECS_PER_SEC)
		return;
	last_check = now;
	audit_wake_worker(MyDatabaseId, true);
}

/*
 * Queue an event for the worker.  Waits for space (back-pressure) unless
 * aborting, then spills: an event is never dropped.
 */
void
audit_enqueue(const AuditEvent *ev, bool aborting)
{
	TimestampTz deadline;
	bool		queued = false;

	if (audit_shared == NULL)
		return;
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   pii_guard_audit_enqueue_timeout);
	for (;;)
	{
		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		if (audit_shared->head - audit_shared->tail < (uint64) audit_shared->capacity)
		{
			AuditEvent *slot = &audit_shared->events[audit_shared->head % audit_shared->capacity];

			memcpy(slot, ev, sizeof(*ev));
			slot->seq = audit_shared->head;
			audit_shared->head++;
			queued = true;
		}
		LWLockRelease(audit_shared->lock);
		if (queued || aborting)
			break;
		if (GetCurrentTimestamp() >= deadline)
			break;
		audit_wake_worker(ev->dboid, true);
		(void) ConditionVariableTimedSleep(&audit_shared->space_cv, 100,
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	if (!queued)
		audit_spill(ev);
	audit_wake_worker(ev->dboid, !aborting);
}

/*
 * MAC of an audit_log row: HMAC over every column but row_mac, each as a
 * tag and its length-prefixed binary send form.
 */
static void
audit_row_mac(HeapTuple tuple, TupleDesc desc, uint8 *out)
{
	DataKey    *key = keys_audit();
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		isnull;
		Datum		d;
		Oid			typoutput;
		bool		varlena;

		if (att->attisdropped || strcmp(NameStr(att->attname), "row_mac") == 0)
			continue;
		d = heap_getattr(tuple, i + 1, desc, &isnull);
		if (isnull)
			appendStringInfoChar(&buf, 'N');
		else
		{
			bytea	   *b;
			uint32		len;

			/* Binary send form: independent of TimeZone, DateStyle, ... */
			getTypeBinaryOutputInfo(att->atttypid, &typoutput, &varlena);
			b = OidSendFunctionCall(typoutput, d);
			len = pg_hton32(VARSIZE(b) - VARHDRSZ);
			appendStringInfoChar(&buf, 'V');
			appendBinaryStringInfo(&buf, (const char *) &len, 4);
			appendBinaryStringInfo(&buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
		}
	}
	crypto_hmac(key->mac, 'a', buf.data, buf.len, out, 32);
	pfree(buf.data);
}

PG_FUNCTION_INFO_V1(pii_guard_audit_log_guard);
PG_FUNCTION_INFO_V1(pii_guard_audit_row_ok);
PG_FUNCTION_INFO_V1(pii_guard_audit_chain_next);
PG_FUNCTION_INFO_V1(pii_guard_audit_queue_status);

/*
 * SQL function: audit_log_guard() returns trigger
 *
 * BEFORE INSERT OR UPDATE OR DELETE (row) and TRUNCATE (statement) on
 * audit_log and audit_seal: append-only for everyone; pii_guard's own
 * inserts get their MAC here; a row arriving with a MAC (a restore) is
 * taken as it is and verified by verify_audit().
 */
Datum
pii_guard_audit_log_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	int			macatt;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_log_guard must be called as a trigger");
	if (!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s is append-only", RelationGetRelationName(td->tg_relation)),
				 errdetail("Audit rows can be neither changed nor removed, by any role.")));

	tuple = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	macatt = SPI_fnumber(desc, "row_mac");
	if (macatt <= 0)
		return PointerGetDatum(tuple);	/* audit_seal: chain_hash is its own proof */
	(void) heap_getattr(tuple, macatt, desc, &isnull);
	if (!isnull)
		return PointerGetDatum(tuple);
	if (!audit_inserting)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit events are written by pii_guard only"),
				 errdetail("An inserted row must come from pii_guard or carry the row MAC it was written with.")));
	{
		uint8		mac[32];
		bytea	   *b = palloc(VARHDRSZ + 32);
		int			att = macatt;
		Datum		value;
		bool		null = false;

		audit_row_mac(tuple, desc, mac);
		SET_VARSIZE(b, VARHDRSZ + 32);
		memcpy(VARDATA(b), mac, 32);
		value = PointerGetDatum(b);
		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &att, &value, &null);
	}
	return PointerGetDatum(tuple);
}

/* SQL function: _audit_row_ok(pii_guard.audit_log) returns boolean */
Datum
pii_guard_audit_row_ok(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
											  HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;
	int			macatt = SPI_fnumber(desc, "row_mac");
	bool		isnull;
	Datum		stored;
	uint8		mac[32];
	bool		ok;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	stored = heap_getattr(&tuple, macatt, desc, &isnull);
	if (isnull || VARSIZE_ANY_EXHDR(DatumGetByteaPP(stored)) != 32)
		ok = false;
	else
	{
		audit_row_mac(&tuple, desc, mac);
		ok = CRYPTO_memcmp(mac, VARDATA_ANY(DatumGetByteaPP(stored)), 32) == 0;
	}
	ReleaseTupleDesc(desc);
	PG_RETURN_BOOL(ok);
}

/* The next link of the chain: SHA-256(prev || event_id || row_mac). */
static bytea *
audit_chain_link(bytea *prev, int64 event_id, bytea *row_mac)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bytea	   *out = palloc(VARHDRSZ + 32);
	unsigned int len;
	uint8		id[8];
	int			i;

	for (i = 0; i < 8; i++)
		id[i] = (uint8) ((uint64) event_id >> (56 - 8 * i));
	if (ctx == NULL ||
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		(prev && EVP_DigestUpdate(ctx, VARDATA_ANY(prev), VARSIZE_ANY_EXHDR(prev)) != 1) ||
		EVP_DigestUpdate(ctx, id, 8) != 1 ||
		(row_mac && EVP_DigestUpdate(ctx, VARDATA_ANY(row_mac), VARSIZE_ANY_EXHDR(row_mac)) != 1) ||
		EVP_DigestFinal_ex(ctx, (uint8 *) VARDATA(out), &len) != 1)
	{
		EVP_MD_CTX_free(ctx);
		crypto_failure("SHA-256");
	}
	EVP_MD_CTX_free(ctx);
	SET_VARSIZE(out, VARHDRSZ + 32);
	return out;
}

/* SQL function: _audit_chain_next(prev bytea, event_id bigint, row_mac bytea) returns bytea */
Datum
pii_guard_audit_chain_next(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(audit_chain_link(PG_ARGISNULL(0) ? NULL : PG_GETARG_BYTEA_PP(0),
									   PG_GETARG_INT64(1),
									   PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2)));
}

/*
 * SQL function: audit_queue_status(OUT queued bigint, OUT capacity integer,
 *		OUT spilled bigint, OUT workers integer)
 */
Datum
pii_guard_audit_queue_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	int			i;
	int			workers = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (audit_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pii_guard audit queue is not initialised")));
	LWLockAcquire(audit_shared->lock, LW_SHARED);
	values[0] = Int64GetDatum((int64) (audit_shared->head - audit_shared->tail));
	values[1] = Int32GetDatum(audit_shared->capacity);
	values[2] = Int64GetDatum((int64) audit_shared->spilled);
	for (i = 0; i < AUDIT_MAX_WORKERS; i++)
		if (audit_shared->workers[i].pid != 0)
			workers++;
	LWLockRelease(audit_shared->lock);
	values[3] = Int32GetDatum(workers);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* Text array from a comma-separated list (NULL when empty). */
static Datum
audit_list_datum(const char *list, bool *isnull)
{
	Datum	   *elems;
	int			n = 0;
	const char *p;
	const char *start;

	*isnull = (list == NULL || list[0] == '\0');
	if (*isnull)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * (strlen(list) / 2 + 2));
	for (start = p = list;; p++)
	{
		if (*p == ',' || *p == '\0')
		{
			elems[n++] = PointerGetDatum(cstring_to_text_with_len(start, p - start));
			if (*p == '\0')
				break;
			start = p + 1;
		}
	}
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* Mirror one event to the server log as a JSON line, if configured. */
static void
audit_mirror(const AuditEvent *ev, int64 event_id)
{
	StringInfoData buf;

	if (!audit_mirror_to_log)
		return;
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"event_id\":" INT64_FORMAT ",\"kind\":", event_id);
	escape_json(&buf, audit_kind_name(ev->kind));
	appendStringInfoString(&buf, ",\"time\":");
	escape_json(&buf, timestamptz_to_str(ev->at));
	appendStringInfoString(&buf, ",\"session_role\":");
	escape_json(&buf, GetUserNameFromId(ev->session_role, true) ? GetUserNameFromId(ev->session_role, true) : "");
	appendStringInfoString(&buf, ",\"current_role\":");
	escape_json(&buf, GetUserNameFromId(ev->current_role, true) ? GetUserNameFromId(ev->current_role, true) : "");
	appendStringInfo(&buf, ",\"pid\":%d,\"relation\":", ev->pid);
	escape_json(&buf, ev->relation);
	appendStringInfoString(&buf, ",\"operation\":");
	escape_json(&buf, ev->operation);
	appendStringInfo(&buf, ",\"rows\":" INT64_FORMAT ",\"columns_clear\":", ev->rows);
	escape_json(&buf, ev->columns_clear);
	appendStringInfoString(&buf, ",\"columns_masked\":");
	escape_json(&buf, ev->columns_masked);
	appendStringInfoString(&buf, ",\"detail\":");
	escape_json(&buf, ev->detail);
	appendStringInfoChar(&buf, '}');
	ereport(LOG, (errmsg("pii_guard audit: %s", buf.data), errhidestmt(true)));
	pfree(buf.data);
}

const char *
audit_kind_name(char kind)
{
	switch (kind)
	{
		case AUDIT_READ:
			return "read";
		case AUDIT_WRITE:
			return "write";
		case AUDIT_EXPORT:
			return "export";
		case AUDIT_DENY:
			return "deny";
		default:
			return "admin";
	}
}

/*
 * Insert events into audit_log, in the current transaction, as the
 * extension owner.  Returns the event_id of the last one.
 */
#define NARGS 18
static int64
audit_insert(const AuditEvent *events, int n)
{
	static const char *sql =
		"INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role, "
		" client_addr, application_name, backend_pid, xid, query_id, relation, operation, "
		" columns_clear, columns_masked, columns_changed, rows, row_keys, row_keys_masked, detail) "
		"VALUES ($1, $2, $3, $4, $5::inet, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
		"RETURNING event_id";
	Oid			argtypes[NARGS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, INT4OID, INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	static SPIPlanPtr plan = NULL;	/* kept: the plan cache revalidates it */
	OwnerContext oc;
	volatile int64 last = 0;
	int			i;
	bool		save = audit_inserting;

	pii_guard_enter_owner_context(&oc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, NARGS, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the audit insert");
		plan = p;
	}
	audit_inserting = true;
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			const AuditEvent *ev = &events[i];
			Datum		v[NARGS];
			char		nulls[NARGS + 1];
			bool		isnull;
			const char *s;
			int			j;

			memset(nulls, ' ', NARGS);
			nulls[NARGS] = '\0';
			v[0] = TimestampTzGetDatum(ev->at);
			v[1] = CStringGetTextDatum(audit_kind_name(ev->kind));
			s = GetUserNameFromId(ev->session_role, true);
			v[2] = CStringGetTextDatum(s ? s : psprintf("%u", ev->session_role));
			s = GetUserNameFromId(ev->current_role, true);
			v[3] = CStringGetTextDatum(s ? s : psprintf("%u", ev->current_role));
			if (ev->client_addr[0] && strcmp(ev->client_addr, "[local]") != 0)
				v[4] = CStringGetTextDatum(ev->client_addr);
			else
				nulls[4] = 'n';
			v[5] = CStringGetTextDatum(ev->application_name);
			v[6] = Int32GetDatum(ev->pid);
			v[7] = Int64GetDatum((int64) ev->xid);
			if (ev->xid == InvalidTransactionId)
				nulls[7] = 'n';
			v[8] = Int64GetDatum((int64) ev->query_id);
			if (ev->query_id == 0)
				nulls[8] = 'n';
			v[9] = CStringGetTextDatum(ev->relation);
			if (!ev->relation[0])
				nulls[9] = 'n';
			v[10] = CStringGetTextDatum(ev->operation);
			if (!ev->operation[0])
				nulls[10] = 'n';
			v[11] = audit_list_datum(ev->columns_clear, &isnull);
			nulls[11] = isnull ? 'n' : ' ';
			v[12] = audit_list_datum(ev->columns_masked, &isnull);
			nulls[12] = isnull ? 'n' : ' ';
			v[13] = audit_list_datum(ev->columns_changed, &isnull);
			nulls[13] = isnull ? 'n' : ' ';
			v[14] = Int64GetDatum(ev->rows);
			v[15] = audit_list_datum(ev->row_keys, &isnull);
			nulls[15] = isnull ? 'n' : ' ';
			v[16] = audit_list_datum(ev->row_keys_masked, &isnull);
			nulls[16] = isnull ? 'n' : ' ';
			v[17] = CStringGetTextDatum(ev->detail);
			if (!ev->detail[0])
				nulls[17] = 'n';
			for (j = 0; j < NARGS; j++)
				if (nulls[j] == 'n')
					v[j] = (Datum) 0;
			if (SPI_execute_plan(plan, v, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "could not insert an audit event");
			last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
			audit_mirror(ev, last);
		}
	}
	PG_FINALLY();
	{
		audit_inserting = save;
	}
	PG_END_TRY();
	SPI_finish();
	pii_guard_leave_owner_context(&oc);
	return last;
}
#undef NARGS

/* Insert one event now, atomically with the current transaction. */
int64
audit_insert_now(const AuditEvent *ev)
{
	int64		id = audit_insert(ev, 1);

	audit_ensure_worker();
	return id;
}

/*
 * Seal committed, unsealed rows into the chain, in event_id order.  Runs in
 * the worker's transaction.  A full anti-join now and then catches rows
 * whose transactions committed long after their neighbours.
 */
static void
audit_seal(bool full_scan)
{
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	bytea	   *prev = NULL;
	int64		seq = 0;
	bool		isnull;
	Oid			argtypes[3] = {INT8ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID};
	Datum	   *seqs;
	Datum	   *ids;
	Datum	   *links;
	Datum		v[3];

	if (SPI_execute("SELECT seal_seq, chain_hash FROM pii_guard.audit_seal "
					"ORDER BY seal_seq DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the audit chain");
	if (SPI_processed == 1)
	{
		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		prev = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (SPI_execute(full_scan ?
					"SELECT a.event_id, a.row_mac FROM pii_guard.audit_log a "
					"WHERE NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id) "
					"ORDER BY a.event_id LIMIT 10000" :
					"SELECT a.event_id, a.row_mac FROM pii_guard.audit_log a "
					"WHERE a.event_id > coalesce((SELECT max(event_id) FROM pii_guard.audit_seal), 0) - 10000 "
					"AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s WHERE s.event_id = a.event_id) "
					"ORDER BY a.event_id LIMIT 10000",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read unsealed audit rows");
	rows = SPI_tuptable;
	n = SPI_processed;
	if (n == 0)
		return;
	seqs = palloc(sizeof(Datum) * n);
	ids = palloc(sizeof(Datum) * n);
	links = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
	{
		int64		event_id = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
		Datum		m = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
		bytea	   *link = audit_chain_link(prev, event_id, isnull ? NULL : DatumGetByteaPP(m));

		seq++;
		seqs[i] = Int64GetDatum(seq);
		ids[i] = Int64GetDatum(event_id);
		links[i] = PointerGetDatum(link);
		prev = link;
	}
	/* One statement for the whole batch. */
	v[0] = PointerGetDatum(construct_array(seqs, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[1] = PointerGetDatum(construct_array(ids, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	v[2] = PointerGetDatum(construct_array(links, (int) n, BYTEAOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args("INSERT INTO pii_guard.audit_seal (seal_seq, event_id, chain_hash) "
							  "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
							  3, argtypes, v, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not seal audit rows");
}

/* Read the spill files of this database into events (up to max). */
static int
audit_read_spill(Oid dboid, AuditEvent *events, char (*files)[MAXPGPATH], int max)
{
	char		dir[MAXPGPATH];
	char		prefix[32];
	DIR		   *d;
	struct dirent *de;
	int			n = 0;

	audit_spill_dir(dir, sizeof(dir));
	snprintf(prefix, sizeof(prefix), "%u.", dboid);
	d = AllocateDir(dir);
	if (d == NULL)
		return 0;
	while (n < max && (de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		int			fd;
		size_t		len = strlen(de->d_name);

		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 ||
			len < 6 || strcmp(de->d_name + len - 6, ".event") != 0)
			continue;
		snprintf(files[n], MAXPGPATH, "%s/%s", dir, de->d_name);
		fd = OpenTransientFile(files[n], O_RDONLY | PG_BINARY);
		if (fd < 0)
			continue;
		if (read(fd, &events[n], sizeof(AuditEvent)) == sizeof(AuditEvent))
			n++;
		CloseTransientFile(fd);
	}
	FreeDir(d);
	return n;
}

/*
 * Grants expire by themselves; the worker records each expiry once, as an
 * admin event, so that the trail shows issue, use and end of every grant.
 */
static void
audit_grant_expiries(void)
{
	uint64		i;
	uint64		n;
	SPITupleTable *rows;
	AuditEvent *evs;

	if (SPI_execute("SELECT g.grant_id, g.kind, g.role::text, coalesce(g.base::text, ''), g.valid_until "
					"FROM pii_guard.grants g "
					"WHERE g.valid_until <= pg_catalog.now() AND g.revoked_at IS NULL "
					"AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_log a "
					"  WHERE a.kind = 'admin' AND a.operation = 'grant_expired' "
					"    AND a.detail LIKE 'grant ' || g.grant_id || ':%') "
					"ORDER BY g.grant_id LIMIT 100", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read expired grants");
	rows = SPI_tuptable;
	n = SPI_processed;
	if (n == 0)
		return;
	evs = palloc(sizeof(AuditEvent) * n);
	for (i = 0; i < n; i++)
	{
		audit_event_init(&evs[i], AUDIT_ADMIN);
		AUDIT_SET(&evs[i], operation, "grant_expired");
		snprintf(evs[i].detail, sizeof(evs[i].detail), "grant %s: %s grant for %s on %s ended at %s",
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 1),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 2),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 3),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 4),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 5));
	}
	audit_insert(evs, (int) n);
}

static volatile sig_atomic_t worker_got_sigterm = false;

static void
audit_worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	worker_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

PGDLLEXPORT void pii_guard_audit_worker_main(Datum arg);

/* Background worker: write this database's queued events, seal the chain. */
void
pii_guard_audit_worker_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	AuditWorkerSlot *me = NULL;
	AuditEvent *batch;
	uint64	   *seqs;
	char		(*files)[MAXPGPATH];
	int			cycles = 0;
	int			idle_cycles = 0;
	int			i;

	pqsignal(SIGTERM, audit_worker_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/* After connecting: InitPostgres frees the postmaster's memory. */
	batch = MemoryContextAlloc(TopMemoryContext, sizeof(AuditEvent) * AUDIT_BATCH);
	seqs = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * AUDIT_BATCH);
	files = MemoryContextAlloc(TopMemoryContext, MAXPGPATH * AUDIT_BATCH);

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < AUDIT_MAX_WORKERS; i++)
		if (audit_shared->workers[i].dboid == dboid)
			me = &audit_shared->workers[i];
	for (i = 0; me == NULL && i < AUDIT_MAX_WORKERS; i++)
		if (audit_shared->workers[i].dboid == InvalidOid)
		{
			me = &audit_shared->workers[i];
			me->dboid = dboid;
		}
	/* Another worker for this database already runs: leave it the job. */
	if (me != NULL && me->pid != 0 && me->pid != MyProcPid && kill(me->pid, 0) == 0)
		me = NULL;
	else if (me != NULL)
	{
		me->pid = MyProcPid;
		me->latch = MyLatch;
	}
	LWLockRelease(audit_shared->lock);
	if (me == NULL)
		proc_exit(0);

	while (!worker_got_sigterm)
	{
		int			n = 0;
		int			nspill;
		int			nharvest;
		uint64		pos;
		bool		installed;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* Copy this database's queued events out; the slots stay in use. */
		LWLockAcquire(audit_shared->lock, LW_SHARED);
		for (pos = audit_shared->tail; pos < audit_shared->head && n < AUDIT_BATCH; pos++)
		{
			AuditEvent *ev = &audit_shared->events[pos % audit_shared->capacity];

			if (ev->dboid == dboid)
			{
				memcpy(&batch[n], ev, sizeof(AuditEvent));
				seqs[n] = ev->seq;
				n++;
			}
		}
		LWLockRelease(audit_shared->lock);
		nspill = audit_read_spill(dboid, batch + n, files, AUDIT_BATCH - n);
		nharvest = audit_harvest_pending(dboid, batch + n + nspill, AUDIT_BATCH - n - nspill);

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pii_guard audit");
		installed = OidIsValid(pii_guard_relation_oid("audit_log", true));
		if (installed)
		{
			if (n + nspill + nharvest > 0)
				audit_insert(batch, n + nspill + nharvest);
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			if (cycles % 5 == 0)
				audit_grant_expiries();
			audit_seal(cycles % 600 == 0);
			SPI_finish();
			limits_sync_grant_use();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);

		/* Committed (or nowhere to go): free the slots and spill files. */
		LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < n; i++)
		{
			AuditEvent *ev = &audit_shared->events[seqs[i] % audit_shared->capacity];

			if (ev->seq == seqs[i] && ev->dboid == dboid)
				ev->dboid = InvalidOid;
		}
		while (audit_shared->tail < audit_shared->head &&
			   audit_shared->events[audit_shared->tail % audit_shared->capacity].dboid == InvalidOid)
			audit_shared->tail++;
		LWLockRelease(audit_shared->lock);
		ConditionVariableBroadcast(&audit_shared->space_cv);
		for (i = 0; i < nspill; i++)
			(void) unlink(files[i]);

		limits_persist();
		/*
		 * No pii_guard here (yet: the CREATE EXTENSION that started us may
		 * not have committed; or any more): give up after half a minute.
		 */
		if (!installed && ++idle_cycles > 150)
			break;
		if (installed)
			idle_cycles = 0;
		cycles++;
		if (n + nspill + nharvest < AUDIT_BATCH)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 200L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}

	limits_persist();
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	me->pid = 0;
	me->latch = NULL;
	if (worker_got_sigterm)
		me->requested_at = 0;
	else
		me->dboid = InvalidOid;
	LWLockRelease(audit_shared->lock);
	proc_exit(worker_got_sigterm ? 1 : 0);
}

/*
 * Record a denial; it reaches the audit log even though the statement that
 * caused it is about to fail.
 */
void
audit_deny(const char *relation, const char *operation, const char *detail)
{
	AuditEvent	ev;

	audit_event_init(&ev, AUDIT_DENY);
	AUDIT_SET(&ev, relation, relation);
	AUDIT_SET(&ev, operation, operation);
	AUDIT_SET(&ev, detail, detail);
	audit_enqueue(&ev, false);
}

/*
 * Reads: reveal() notes, per protected column, how many values it produced
 * clear, masked or hidden in the current top-level statement, and (up to
 * pii_guard.audit_max_row_keys) which rows.  audit_flush_reads turns that
 * into one read event per relation when the statement ends (or fails).
 */
typedef struct ReadKey
{
	Oid			relid;
	NameData	attname;
} ReadKey;

typedef struct ReadColumn
{
	ReadKey		key;
	int64		clear;
	int64		masked;
	int64		hidden;
	List	   *keys_clear;
	List	   *keys_masked;
} ReadColumn;

static MemoryContext ReadContext = NULL;
static HTAB *reads = NULL;
static uint64 reads_epoch = 1;	/* bumped at every flush */

/* The per-call-site cache reveal() keeps for us. */
typedef struct ReadSite
{
	uint64		epoch;
	ReadColumn *col;
	FmgrInfo	keyout;
	bool		keyout_ready;
} ReadSite;

void
audit_note_reveal(Oid relid, const char *attname, ColumnAccess access,
				  FunctionCallInfo fcinfo, int rowkey_arg, void **cache)
{
	ReadSite   *site = (ReadSite *) *cache;
	ReadColumn *col;
	List	  **keys = NULL;

	if (!pii_guard_audit_reads)
		return;
	if (site == NULL)
	{
		site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ReadSite));
		*cache = site;
	}
	if (site->epoch != reads_epoch || site->col == NULL)
	{
		ReadKey		key;
		bool		found;

		if (ReadContext == NULL)
			ReadContext = AllocSetContextCreate(TopMemoryContext, "pii_guard reads",
												ALLOCSET_SMALL_SIZES);
		if (reads == NULL)
		{
			HASHCTL		ctl;

			/* Kept for the backend's life; emptied after each statement. */
			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = sizeof(ReadKey);
			ctl.entrysize = sizeof(ReadColumn);
			ctl.hcxt = TopMemoryContext;
			reads = hash_create("pii_guard reads", 16, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		}
		memset(&key, 0, sizeof(key));
		key.relid = relid;
		namestrcpy(&key.attname, attname);
		col = hash_search(reads, &key, HASH_ENTER, &found);
		if (!found)
		{
			col->clear = col->masked = col->hidden = 0;
			col->keys_clear = col->keys_masked = NIL;
		}
		site->col = col;
		site->epoch = reads_epoch;
	}
	col = site->col;
	if (access == ACCESS_CLEAR)
	{
		col->clear++;
		keys = &col->keys_clear;
	}
	else if (access == ACCESS_MASKED)
	{
		col->masked++;
		keys = &col->keys_masked;
	}
	else
		col->hidden++;

	if (keys != NULL && list_length(*keys) < pii_guard_audit_max_row_keys &&
		!PG_ARGISNULL(rowkey_arg))
	{
		MemoryContext old;
		char	   *k;

		if (!site->keyout_ready)
		{
			Oid			typoutput;
			bool		varlena;

			getTypeOutputInfo(get_fn_expr_argtype(fcinfo->flinfo, rowkey_arg),
							  &typoutput, &varlena);
			fmgr_info_cxt(typoutput, &site->keyout, fcinfo->flinfo->fn_mcxt);
			site->keyout_ready = true;
		}
		k = OutputFunctionCall(&site->keyout, PG_GETARG_DATUM(rowkey_arg));
		old = MemoryContextSwitchTo(ReadContext);
		if (!list_member(*keys, makeString(k)))
			*keys = lappend(*keys, makeString(pstrdup(k)));
		MemoryContextSwitchTo(old);
	}
}

/* Do two read events describe the same reads (all but rows and row keys)? */
static bool
audit_same_reads(const AuditEvent *a, const AuditEvent *b)
{
	return a->dboid == b->dboid && a->kind == b->kind &&
		a->session_role == b->session_role && a->current_role == b->current_role &&
		a->pid == b->pid && a->query_id == b->query_id &&
		strcmp(a->relation, b->relation) == 0 &&
		strcmp(a->operation, b->operation) == 0 &&
		strcmp(a->columns_clear, b->columns_clear) == 0 &&
		strcmp(a->columns_masked, b->columns_masked) == 0 &&
		strcmp(a->detail, b->detail) == 0 &&
		strlen(a->row_keys) + strlen(b->row_keys) + 2 < sizeof(a->row_keys) &&
		strlen(a->row_keys_masked) + strlen(b->row_keys_masked) + 2 < sizeof(a->row_keys_masked);
}

/* Merge b's rows and row keys into a (audit_same_reads said they fit). */
static void
audit_merge_reads(AuditEvent *a, const AuditEvent *b)
{
	a->rows += b->rows;
	if (b->row_keys[0])
	{
		if (a->row_keys[0])
			strcat(a->row_keys, ",");
		strcat(a->row_keys, b->row_keys);
	}
	if (b->row_keys_masked[0])
	{
		if (a->row_keys_masked[0])
			strcat(a->row_keys_masked, ",");
		strcat(a->row_keys_masked, b->row_keys_masked);
	}
}

/* Backend exit: its pending read event goes to the queue. */
static void
audit_pending_exit(int code, Datum arg)
{
	int			slot = compat_backend_slot();
	PendingSlot *ps;
	AuditEvent	ev;
	bool		had = false;

	if (pending_slots == NULL || slot < 0 || slot >= pending_nslots)
		return;
	ps = &pending_slots[slot];
	SpinLockAcquire(&ps->mutex);
	if (ps->used)
	{
		memcpy(&ev, &ps->ev, sizeof(ev));
		ps->used = false;
		had = true;
	}
	SpinLockRelease(&ps->mutex);
	if (had)
		audit_enqueue(&ev, true);
}

/*
 * Hand a read event to this backend's pending slot (merging it into the
 * pending one if they describe the same reads); what it displaces goes to
 * the queue.  Other events, and backends without a slot, go to the queue.
 */
static void
audit_submit_read(const AuditEvent *ev, bool aborting)
{
	int			slot = compat_backend_slot();
	PendingSlot *ps;
	AuditEvent	displaced;
	bool		have_displaced = false;

	if (pending_slots == NULL || aborting || ev->kind != AUDIT_READ ||
		slot < 0 || slot >= pending_nslots)
	{
		audit_enqueue(ev, aborting);
		return;
	}
	if (!pending_exit_registered)
	{
		before_shmem_exit(audit_pending_exit, (Datum) 0);
		pending_exit_registered = true;
	}
	ps = &pending_slots[slot];
	SpinLockAcquire(&ps->mutex);
	if (ps->used && audit_same_reads(&ps->ev, ev))
	{
		audit_merge_reads(&ps->ev, ev);
		ps->statements++;
	}
	else
	{
		if (ps->used)
		{
			memcpy(&displaced, &ps->ev, sizeof(displaced));
			have_displaced = true;
		}
		memcpy(&ps->ev, ev, sizeof(*ev));
		ps->statements = 1;
		ps->used = true;
	}
	SpinLockRelease(&ps->mutex);
	if (have_displaced)
		audit_enqueue(&displaced, false);
}

/* Worker: take the pending read events of this database. */
static int
audit_harvest_pending(Oid dboid, AuditEvent *events, int max)
{
	int			i;
	int			n = 0;

	for (i = 0; i < pending_nslots && n < max; i++)
	{
		PendingSlot *ps = &pending_slots[i];

		if (!ps->used || ps->ev.dboid != dboid)
			continue;
		SpinLockAcquire(&ps->mutex);
		if (ps->used && ps->ev.dboid == dboid)
		{
			memcpy(&events[n], &ps->ev, sizeof(AuditEvent));
			if (ps->statements > 1)
				snprintf(events[n].detail + strlen(events[n].detail),
						 sizeof(events[n].detail) - strlen(events[n].detail),
						 "%s%d statements", events[n].detail[0] ? "; " : "", ps->statements);
			ps->used = false;
			n++;
		}
		SpinLockRelease(&ps->mutex);
	}
	return n;
}

/* Is s one of the items of a comma-separated list? */
static bool
audit_list_has(const char *list, const char *s)
{
	size_t		len = strlen(s);
	const char *p = list;

	while ((p = strstr(p, s)) != NULL)
	{
		if ((p == list || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
			return true;
		p++;
	}
	return false;
}

/* Append s to a comma-separated list field, as far as it fits. */
static void
audit_list_add(char *field, int size, const char *s)
{
	int			len = strlen(field);
	int			add = strlen(s);

	if (len + add + 2 >= size)
		return;
	if (len > 0)
		field[len++] = ',';
	memcpy(field + len, s, add + 1);
}

/*
 * The statement is over (or failed): one read event per relation it
 * revealed protected columns of.
 */
void
audit_flush_reads(bool aborting)
{
	HASH_SEQ_STATUS status;
	ReadColumn *col;
	List	   *rels = NIL;
	ListCell   *lc;
	bool		export = hooks_statement_is_export();

	if (reads == NULL || hash_get_num_entries(reads) == 0)
		return;
	reads_epoch++;

	hash_seq_init(&status, reads);
	while ((col = hash_seq_search(&status)) != NULL)
		rels = list_append_unique_oid(rels, col->key.relid);

	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);
		AuditEvent	ev;
		int64		rows = 0;
		int			distinct_keys = 0;
		bool		overflow = false;
		List	   *seen = NIL;
		const char *view;

		audit_event_init(&ev, export ? AUDIT_EXPORT : AUDIT_READ);
		view = aborting ? NULL : views_masking_view_name(relid);
		if (view)
			AUDIT_SET(&ev, relation, view);
		else
			snprintf(ev.relation, sizeof(ev.relation), "%u", relid);
		if (aborting)
			snprintf(ev.operation, sizeof(ev.operation), "%s (failed)", hooks_statement_command());
		else
			AUDIT_SET(&ev, operation, hooks_statement_command());
		hash_seq_init(&status, reads);
		while ((col = hash_seq_search(&status)) != NULL)
		{
			ListCell   *k;

			if (col->key.relid != relid)
				continue;
			rows = Max(rows, col->clear + col->masked + col->hidden);
			/* Row keys are listed for every clear or masked value: count them. */
			if (col->hidden > 0 ||
				list_length(col->keys_clear) >= pii_guard_audit_max_row_keys ||
				list_length(col->keys_masked) >= pii_guard_audit_max_row_keys)
				overflow = true;
			foreach(k, col->keys_clear)
				seen = list_append_unique(seen, lfirst(k));
			foreach(k, col->keys_masked)
				seen = list_append_unique(seen, lfirst(k));
			if (col->clear > 0)
				audit_list_add(ev.columns_clear, sizeof(ev.columns_clear), NameStr(col->key.attname));
			if (col->masked > 0)
				audit_list_add(ev.columns_masked, sizeof(ev.columns_masked), NameStr(col->key.attname));
			foreach(k, col->keys_clear)
				if (!audit_list_has(ev.row_keys, strVal(lfirst(k))))
					audit_list_add(ev.row_keys, sizeof(ev.row_keys), strVal(lfirst(k)));
			foreach(k, col->keys_masked)
				if (!audit_list_has(ev.row_keys_masked, strVal(lfirst(k))))
					audit_list_add(ev.row_keys_masked, sizeof(ev.row_keys_masked), strVal(lfirst(k)));
		}
		distinct_keys = list_length(seen);
		ev.rows = rows;
		if (distinct_keys < pii_guard_audit_max_row_keys && !overflow)
			ev.rows = distinct_keys;
		audit_submit_read(&ev, aborting);
	}
	/* Empty the table (a few entries) and free the row key lists. */
	hash_seq_init(&status, reads);
	while ((col = hash_seq_search(&status)) != NULL)
		(void) hash_search(reads, &col->key, HASH_REMOVE, NULL);
	MemoryContextReset(ReadContext);
}

PG_FUNCTION_INFO_V1(pii_guard_audit_write);
PG_FUNCTION_INFO_V1(pii_guard_audit_admin);

/* Output-function text of column att (1-based) of slot, or NULL. */
static char *
audit_slot_text(TupleTableSlot *slot, int att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	Oid			typoutput;
	bool		varlena;

	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(slot->tts_tupleDescriptor, att - 1)->atttypid,
					  &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, d);
}

/*
 * SQL function: audit_write() returns trigger
 *
 * AFTER INSERT/UPDATE/DELETE ... FOR EACH STATEMENT with transition tables
 * (and AFTER TRUNCATE): one write event per statement, in its transaction,
 * with the row keys (bounded) and the names of the columns it changed --
 * never their values.  Argument: the row key column.
 */
Datum
pii_guard_audit_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	AuditEvent	ev;
	int			keyatt;
	const char *view;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	bool	   *changed;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) || td->tg_trigger->tgnargs < 1)
		elog(ERROR, "audit_write must be an AFTER ... FOR EACH STATEMENT trigger with the row key as argument");
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	keyatt = SPI_fnumber(desc, td->tg_trigger->tgargs[0]);
	changed = palloc0(sizeof(bool) * desc->natts);

	audit_event_init(&ev, AUDIT_WRITE);
	view = views_masking_view_name(RelationGetRelid(rel));
	if (view)
		AUDIT_SET(&ev, relation, view);
	else
		AUDIT_SET(&ev, relation, quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															RelationGetRelationName(rel)));
	AUDIT_SET(&ev, operation,
			  TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "INSERT" :
			  TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
			  TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE");

	if (td->tg_oldtable)
		oldslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (td->tg_newtable)
		newslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (oldslot)
		tuplestore_rescan(td->tg_oldtable);
	if (newslot)
		tuplestore_rescan(td->tg_newtable);
	for (;;)
	{
		bool		have_old = oldslot && tuplestore_gettupleslot(td->tg_oldtable, true, false, oldslot);
		bool		have_new = newslot && tuplestore_gettupleslot(td->tg_newtable, true, false, newslot);
		TupleTableSlot *keyslot = have_new ? newslot : oldslot;

		if (!have_old && !have_new)
			break;
		ev.rows++;
		if (keyatt > 0 && ev.rows <= pii_guard_audit_max_row_keys)
		{
			char	   *k = audit_slot_text(keyslot, keyatt);

			if (k)
				audit_list_add(ev.row_keys, sizeof(ev.row_keys), k);
		}
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		n1 = true;
			bool		n2 = true;
			Datum		d1 = (Datum) 0;
			Datum		d2 = (Datum) 0;

			if (att->attisdropped || changed[i])
				continue;
			if (have_new)
				d2 = slot_getattr(newslot, i + 1, &n2);
			if (have_old)
				d1 = slot_getattr(oldslot, i + 1, &n1);
			if (have_new && have_old)
				changed[i] = n1 != n2 || (!n1 && !datumIsEqual(d1, d2, att->attbyval, att->attlen));
			else if (have_new)
				changed[i] = !n2;
		}
	}
	for (i = 0; i < desc->natts; i++)
		if (changed[i])
			audit_list_add(ev.columns_changed, sizeof(ev.columns_changed),
						   NameStr(TupleDescAttr(desc, i)->attname));
	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);
	if (ev.rows > 0 || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		(void) audit_insert_now(&ev);
	return PointerGetDatum(NULL);
}

/*
 * SQL function: _audit_admin(action text, detail text) returns bigint
 *
 * An admin event (policy, keys, grants), in the current transaction.
 */
Datum
pii_guard_audit_admin(PG_FUNCTION_ARGS)
{
	AuditEvent	ev;

	audit_event_init(&ev, AUDIT_ADMIN);
	AUDIT_SET(&ev, operation, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!PG_ARGISNULL(1))
		AUDIT_SET(&ev, detail, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_INT64(audit_insert_now(&ev));
}

PG_FUNCTION_INFO_V1(pii_guard_audit_deny);

/*
 * SQL function: _audit_deny(operation text, detail text) returns void
 *
 * A denial raised in SQL (before its RAISE): queued, so it survives the
 * rollback that follows.
 */
Datum
pii_guard_audit_deny(PG_FUNCTION_ARGS)
{
	audit_deny(NULL, text_to_cstring(PG_GETARG_TEXT_PP(0)),
			   PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}
