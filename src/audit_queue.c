/*-------------------------------------------------------------------------
 *
 * audit_queue.c
 *		How read, export and deny events travel to the audit worker: the
 *		shared-memory queue, spill files, pending (coalesced) events, and
 *		the worker slots through which a backend wakes or starts the worker
 *		of its database.  The worker itself (what it does with them) is
 *		audit_worker.c.
 *
 * Queue.  A ring of fixed-size AuditEvent slots under one LWLock.  A full
 * queue applies back-pressure: the enqueuing backend waits on a condition
 * variable up to pii_guard.audit_enqueue_timeout, then spills the event to
 * a file under $PGDATA/pg_pii_guard/ which the worker ingests; an event is
 * never dropped.  (In an aborting transaction, or when the statement is
 * being cancelled or the backend terminated, we never wait: we spill at
 * once.)  A spill file is written under a .tmp name and moved into place
 * with durable_rename; a .tmp whose writer is gone is removed when a worker
 * starts.  The worker copies its database's events out (audit_queue_take),
 * inserts them, and only after its transaction commits frees their slots
 * (audit_queue_release) and removes their files (audit_spill_remove): a
 * worker that fails half-way leaves them for its next cycle or its
 * successor.  What a crash of the whole server can lose is what was still
 * queued in shared memory: events of the last moments, never a committed
 * change's write event.
 *
 * Worker slots.  AuditShared.workers has one slot per database with a
 * worker: its pid and latch.  A backend that queues an event sets the
 * latch, or registers a dynamic background worker when none runs (at most
 * once a second); the worker claims the slot when it starts and gives it
 * back (an on_shmem_exit callback) however it ends; a slot whose process is
 * gone counts as free.
 *
 * Hot standby.  Nothing can be inserted in recovery, and a queue nobody
 * empties would make every event wait out the enqueue timeout: there
 * audit_enqueue writes each event at once as a JSON line to the server log
 * ("pii_guard audit (standby): ...") and queues nothing.
 *
 * One database never holds up the others.  Only a database's own worker
 * frees its slots, and the tail moves only over free slots; so every
 * worker moves the events at the tail whose database has no live worker
 * (it cannot be registered, it died, the database is gone) into spill
 * files of that database (audit_queue_move_orphans), and now and then
 * removes the spill files of databases that no longer exist.
 *
 * Locking.  AuditShared.lock (an LWLock) guards the ring, its counters and
 * the worker slots; nothing is done under it but copying and bookkeeping
 * (spill files are written after it is released).  Each pending-event slot
 * has its own LWLock; no one holds two of these locks at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_crc32c.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

#define AUDIT_MAX_WORKERS	64
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
int			pii_guard_audit_queue_size = 1024;
int			pii_guard_audit_enqueue_timeout = 1000;

/*
 * Coalescing of read and deny events.  A backend keeps its latest distinct
 * read events, and its recent distinct deny events, in slots in shared memory
 * (below), and merges the next one of the kind into it while they describe
 * the same thing (role, application, relation, operation, columns, query
 * id, reason) and
 * the merged row keys still fit; the worker harvests the slots every
 * cycle (a tenth of a second when it is idle).  So a stream of identical
 * single-row lookups costs one event per hundred rows or per worker cycle,
 * not one per statement -- and no row key is lost; and a loop of refused
 * statements is one deny event per cycle with its count ("N times"), not
 * a flood that fills the queue that every other backend shares.  Each
 * slot has an LWLock of its own (tranche "pii_guard audit pending
 * events"): comparing, merging and copying an event is a few kilobytes of
 * work, too much for a spinlock.
 */
typedef struct PendingSlot
{
	bool		used;
	int			statements;
	uint64		taken;			/* when it was filled (a per-backend count) */
	AuditEvent	ev;
} PendingSlot;

#define PENDING_TRANCHE		"pii_guard audit pending events"

static AuditShared *audit_shared = NULL;
static PendingSlot *pending_slots = NULL;
static LWLockPadded *pending_locks = NULL;
static int	pending_nslots = 0;		/* fixed when shared memory is requested */
static bool pending_exit_registered = false;

static bool audit_pid_alive(pid_t pid);

/* Size of the queue in shared memory. */
static Size
audit_shmem_size(void)
{
	return add_size(offsetof(AuditShared, events),
					mul_size(sizeof(AuditEvent), pii_guard_audit_queue_size));
}

/*
 * Pending-event slots: four per backend for its read events (so that the
 * statements of a transaction that alternate -- an UPDATE and a SELECT of
 * the same rows, say -- each coalesce in a slot of their own instead of
 * displacing each other at every statement, which sent every read event to
 * the queue and woke the worker for it), and a table of deny-event slots
 * that backends share, four per backend, in which an event's place is
 * found by a hash of what it describes (probing a few slots on): so that
 * refusals that alternate coalesce too, each in its own slot, however many
 * sessions refuse at once.
 */
#define PENDING_READS_PER_BACKEND	4
#define PENDING_DENY_PER_BACKEND	4
#define PENDING_PROBES				8

static int
audit_pending_backends(void)
{
	return MaxBackends > 0 ? MaxBackends : 1024;
}

static int
audit_pending_count(void)
{
	return (PENDING_READS_PER_BACKEND + PENDING_DENY_PER_BACKEND) * audit_pending_backends();
}

/* The number of read slots (which come first), all backends'. */
static int
audit_pending_read_slots(void)
{
	return PENDING_READS_PER_BACKEND * audit_pending_backends();
}

/* A hash of what an event describes (the fields audit_same_event compares). */
static uint32
audit_event_hash(const AuditEvent *ev)
{
	uint32		h = hash_bytes((const unsigned char *) &ev->pid, sizeof(ev->pid));

	h = hash_combine(h, hash_bytes((const unsigned char *) &ev->current_role, sizeof(Oid)));
	h = hash_combine(h, hash_bytes((const unsigned char *) &ev->query_id, sizeof(uint64)));
	h = hash_combine(h, hash_bytes((const unsigned char *) ev->relation, strlen(ev->relation)));
	h = hash_combine(h, hash_bytes((const unsigned char *) ev->operation, strlen(ev->operation)));
	return hash_combine(h, hash_bytes((const unsigned char *) ev->detail, strlen(ev->detail)));
}

/*
 * The slots an event may be pending in (into slots[], up to
 * PENDING_PROBES): its backend's read slot, or the deny slots its hash
 * leads to.  0: it does not coalesce (another kind, or no slot).
 */
static int
audit_pending_slots(const AuditEvent *ev, int *slots)
{
	int			backends = audit_pending_backends();
	int			backend = compat_backend_slot();
	int			nreads = audit_pending_read_slots();
	int			ndeny = pending_nslots - nreads;
	uint32		start;

	StaticAssertStmt(PENDING_READS_PER_BACKEND <= PENDING_PROBES, "read slots fit slots[]");
	if (backend < 0 || backend >= backends || ndeny < PENDING_PROBES)
		return 0;
	if (ev->kind == AUDIT_READ)
	{
		for (int i = 0; i < PENDING_READS_PER_BACKEND; i++)
			slots[i] = backend * PENDING_READS_PER_BACKEND + i;
		return PENDING_READS_PER_BACKEND;
	}
	if (ev->kind != AUDIT_DENY && ev->kind != AUDIT_REFUSAL)
		return 0;
	start = audit_event_hash(ev) % (uint32) ndeny;
	for (int i = 0; i < PENDING_PROBES; i++)
		slots[i] = nreads + (int) ((start + i) % (uint32) ndeny);
	return PENDING_PROBES;
}

/* shmem_request_hook (or _PG_init before 15): reserve the queue. */
void
audit_shmem_request(void)
{
	pending_nslots = audit_pending_count();
	RequestAddinShmemSpace(audit_shmem_size());
	RequestAddinShmemSpace(mul_size(sizeof(PendingSlot), pending_nslots));
	RequestNamedLWLockTranche("pii_guard audit", 1);
	RequestNamedLWLockTranche(PENDING_TRANCHE, pending_nslots);
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
	if (pending_nslots == 0)	/* (EXEC_BACKEND: no request hook here) */
		pending_nslots = audit_pending_count();
	pending_slots = ShmemInitStruct("pii_guard audit pending events",
									mul_size(sizeof(PendingSlot), pending_nslots), &found);
	pending_locks = GetNamedLWLockTranche(PENDING_TRANCHE);
	if (!found)
	{
		int			i;

		for (i = 0; i < pending_nslots; i++)
			pending_slots[i].used = false;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Path of the spill directory, created on demand. */
static void
audit_spill_dir(char *path, int size)
{
	snprintf(path, size, "%s/%s", DataDir, AUDIT_SPILL_DIR);
}

/*
 * A spill file: a header, then the event.  The header says what the file
 * is (magic), its layout (version, the event's size) and its CRC-32C, so
 * that a file of another version, a torn or damaged one, is recognised --
 * set aside with a WARNING, never read as an event nor dropped unseen.
 * (Files of the first layout, the bare event, are read as they are.)
 */
#define SPILL_MAGIC		0x50494753	/* "PIGS" */
#define SPILL_VERSION	2

typedef struct SpillHeader
{
	uint32		magic;
	uint16		version;
	uint16		header_size;
	uint32		event_size;
	pg_crc32c	crc;			/* of the event */
} SpillHeader;

static void
audit_spill_header(SpillHeader *hdr, const AuditEvent *ev)
{
	memset(hdr, 0, sizeof(*hdr));
	hdr->magic = SPILL_MAGIC;
	hdr->version = SPILL_VERSION;
	hdr->header_size = sizeof(SpillHeader);
	hdr->event_size = sizeof(AuditEvent);
	INIT_CRC32C(hdr->crc);
	COMP_CRC32C(hdr->crc, ev, sizeof(AuditEvent));
	FIN_CRC32C(hdr->crc);
}

/*
 * Read spill file fd (of size size) into ev: false (with a WARNING, the
 * file renamed to .bad) if it is not a whole, intact event.
 */
static bool
audit_spill_read(int fd, const char *path, off_t size, AuditEvent *ev)
{
	SpillHeader hdr;
	pg_crc32c	crc;
	const char *problem = NULL;
	char		bad[MAXPGPATH];

	if (size == (off_t) sizeof(AuditEvent))
	{
		/* (the first layout: the bare event) */
		if (read(fd, ev, sizeof(AuditEvent)) == sizeof(AuditEvent))
			return true;
		problem = "it could not be read";
	}
	else if (size != (off_t) (sizeof(SpillHeader) + sizeof(AuditEvent)) ||
			 read(fd, &hdr, sizeof(hdr)) != sizeof(hdr) ||
			 read(fd, ev, sizeof(AuditEvent)) != sizeof(AuditEvent))
		problem = "it has not the size of an event of this version";
	else if (hdr.magic != SPILL_MAGIC || hdr.version != SPILL_VERSION ||
			 hdr.header_size != sizeof(SpillHeader) || hdr.event_size != sizeof(AuditEvent))
		problem = "its header is not of this version";
	else
	{
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, ev, sizeof(AuditEvent));
		FIN_CRC32C(crc);
		if (!EQ_CRC32C(crc, hdr.crc))
			problem = "its checksum does not match: it is damaged";
	}
	if (problem == NULL)
		return true;
	snprintf(bad, sizeof(bad), "%s.bad", path);
	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("pii_guard audit spill file \"%s\" was set aside: %s", path, problem),
			 errdetail("It is renamed to \"%s\"; the event it holds is not in the audit log.", bad),
			 errhint("Keep the file for the audit; a pii_guard of the version that wrote it can read it.")));
	(void) durable_rename(path, bad, LOG);
	return false;
}

/*
 * Spill one event to its own file: written under a temporary name, then
 * renamed into place with durable_rename (which fsyncs the file and the
 * directory), so that the worker never reads half an event and a crash
 * loses no spilled one.
 */
static void
audit_spill(const AuditEvent *ev)
{
	SpillHeader hdr;
	char		dir[MAXPGPATH];
	char		tmp[MAXPGPATH];
	char		path[MAXPGPATH];
	uint64		n;
	int			fd;

	audit_spill_dir(dir, sizeof(dir));
	if (MakePGDirectory(dir) == 0)
		(void) fsync_fname_ext(DataDir, true, false, LOG);
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	n = ++audit_shared->spill_counter;
	audit_shared->spilled++;
	LWLockRelease(audit_shared->lock);
	snprintf(tmp, sizeof(tmp), "%s/%u.%d.%llu.tmp", dir, ev->dboid, MyProcPid,
			 (unsigned long long) n);
	snprintf(path, sizeof(path), "%s/%u.%d.%llu.event", dir, ev->dboid, MyProcPid,
			 (unsigned long long) n);
	audit_spill_header(&hdr, ev);
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0 || write(fd, &hdr, sizeof(hdr)) != sizeof(hdr) ||
		write(fd, ev, sizeof(*ev)) != sizeof(*ev) ||
		CloseTransientFile(fd) != 0 || durable_rename(tmp, path, LOG) != 0)
		ereport(PANIC,
				(errcode_for_file_access(),
				 errmsg("pii_guard could neither queue nor spill an audit event: %m"),
				 errdetail("Stopping rather than losing the event.")));
}

/*
 * Parse a spill file name, "DBOID.PID.N.EXT" (all decimal): false for a
 * name of any other form or with a number out of range (a stray file in
 * the directory).  *ext points into name.
 */
static bool
audit_parse_spill_name(const char *name, Oid *db, int *pid, const char **ext)
{
	const char *p = name;
	char	   *end;
	unsigned long v;
	int			i;

	for (i = 0; i < 3; i++)
	{
		if (*p < '0' || *p > '9')
			return false;
		errno = 0;
		v = strtoul(p, &end, 10);
		if (errno != 0 || *end != '.')
			return false;
		if (i == 0)
		{
			if (v > PG_UINT32_MAX)
				return false;
			*db = (Oid) v;
		}
		else if (i == 1)
		{
			if (v > (unsigned long) PG_INT32_MAX)
				return false;
			*pid = (int) v;
		}
		p = end + 1;
	}
	*ext = p;
	return true;
}

/*
 * Remove spill files that were never renamed into place: their writer
 * died (a crash) before the event was complete, and no live backend has
 * that process id.  The event itself went with the crash.
 */
void
audit_remove_stale_spill_files(void)
{
	char		dir[MAXPGPATH];
	DIR		   *d;
	struct dirent *de;

	audit_spill_dir(dir, sizeof(dir));
	d = AllocateDir(dir);
	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		Oid			db;
		int			pid;
		const char *ext;
		char		path[MAXPGPATH];

		if (!audit_parse_spill_name(de->d_name, &db, &pid, &ext) ||
			strcmp(ext, "tmp") != 0 || BackendPidGetProc(pid) != NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) == 0)
			ereport(LOG,
					(errmsg("pii_guard removed stale audit spill file \"%s\"", path),
					 errdetail("Process %d began writing it and ended before it was complete.", pid)));
	}
	FreeDir(d);
}

/*
 * Wake the audit worker of dboid, or, when may_start and none runs, start
 * one (at most once a second).  A slot whose worker died without giving it
 * back is taken as free; so is a slot a worker was requested for long ago
 * that never came (its database may be gone).
 */
static void
audit_wake_worker(Oid dboid, bool may_start)
{
	int			i;
	int			free_slot = -1;
	Latch	   *latch = NULL;
	bool		need_start = false;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < AUDIT_MAX_WORKERS; i++)
	{
		AuditWorkerSlot *w = &audit_shared->workers[i];

		if (w->dboid == dboid)
		{
			/* (One kill(pid, 0) per call at most: this runs per event.) */
			if (w->pid != 0 && may_start && !audit_pid_alive(w->pid))
			{
				w->pid = 0;
				w->latch = NULL;
				w->requested_at = 0;
			}
			if (w->pid != 0)
				latch = w->latch;
			else if (may_start &&
					 TimestampDifferenceExceeds(w->requested_at, now, 1000))
			{
				w->requested_at = now;
				need_start = true;
			}
			break;
		}
		if (free_slot < 0 &&
			(w->dboid == InvalidOid ||
			 (w->pid == 0 && TimestampDifferenceExceeds(w->requested_at, now, 10000))))
			free_slot = i;
	}
	if (i == AUDIT_MAX_WORKERS && may_start && free_slot >= 0)
	{
		audit_shared->workers[free_slot].dboid = dboid;
		audit_shared->workers[free_slot].pid = 0;
		audit_shared->workers[free_slot].latch = NULL;
		audit_shared->workers[free_slot].requested_at = now;
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
		/* (On a hot standby too: it keeps limits.state, and waits.) */
		bgw.bgw_start_time = BgWorkerStart_ConsistentState;

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
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pii_guard could not start the audit worker for this database"),
					 errdetail("Audit events stay queued, or go to spill files, until it can start."),
					 errhint("Raise max_worker_processes: each database that uses pii_guard needs one audit worker.")));
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
 * A hot standby cannot write audit_log (nor can its worker), and a queue
 * that nobody empties would make every event wait out
 * pii_guard.audit_enqueue_timeout and then spill.  So in recovery an event
 * is written at once, as one JSON line, to the server log: "pii_guard audit
 * (standby): {...}" -- the fields of the JSON mirror (no event_id: it has
 * none), and the client, application, query id and row keys that audit_log
 * would have held; never a value.
 */
static void
audit_log_standby(const AuditEvent *ev)
{
	StringInfoData buf;

	initStringInfo(&buf);
	audit_event_json(&buf, ev, -1, true);
	ereport(LOG, (errmsg("pii_guard audit (standby): %s", buf.data), errhidestmt(true)));
	pfree(buf.data);
}

/*
 * Queue an event for the worker.  Waits for space (back-pressure) unless
 * aborting, then spills: an event is never dropped.  Interrupts are held
 * while waiting, so that a cancel or a termination (a statement_timeout,
 * say) cannot throw out of the wait and lose the event: it is spilled at
 * once instead, and the interrupt is served afterwards.
 */
void
audit_enqueue(const AuditEvent *ev, bool aborting)
{
	TimestampTz deadline;
	bool		queued = false;

	if (audit_shared == NULL)
		return;
	if (RecoveryInProgress())
	{
		audit_log_standby(ev);
		return;
	}
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   pii_guard_audit_enqueue_timeout);
	HOLD_INTERRUPTS();
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
		if (QueryCancelPending || ProcDiePending ||
			GetCurrentTimestamp() >= deadline)
			break;
		audit_wake_worker(ev->dboid, true);
		(void) ConditionVariableTimedSleep(&audit_shared->space_cv, 100,
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	if (!queued)
		audit_spill(ev);
	RESUME_INTERRUPTS();
	audit_wake_worker(ev->dboid, !aborting);
}

/* Read the spill files of this database into events (up to max). */
int
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
		{
			struct stat st;
			bool		ok = fstat(fd, &st) == 0 &&
				audit_spill_read(fd, files[n], st.st_size, &events[n]);

			CloseTransientFile(fd);
			if (ok)
				n++;
		}
	}
	FreeDir(d);
	return n;
}

/*
 * Do two events describe the same reads, or the same refusal (all but
 * rows and, for reads, row keys)?
 */
static bool
audit_same_event(const AuditEvent *a, const AuditEvent *b)
{
	if (!(a->dboid == b->dboid && a->kind == b->kind &&
		  a->session_role == b->session_role && a->current_role == b->current_role &&
		  a->pid == b->pid && a->query_id == b->query_id &&
		  strcmp(a->application_name, b->application_name) == 0 &&
		  strcmp(a->relation, b->relation) == 0 &&
		  strcmp(a->operation, b->operation) == 0 &&
		  strcmp(a->columns_clear, b->columns_clear) == 0 &&
		  strcmp(a->columns_masked, b->columns_masked) == 0 &&
		  strcmp(a->columns_changed, b->columns_changed) == 0 &&
		  strcmp(a->detail, b->detail) == 0))
		return false;
	if (a->kind != AUDIT_READ)
		return strcmp(a->row_keys, b->row_keys) == 0 &&
			strcmp(a->row_keys_masked, b->row_keys_masked) == 0;
	return strlen(a->row_keys) + strlen(b->row_keys) + 2 < sizeof(a->row_keys) &&
		strlen(a->row_keys_masked) + strlen(b->row_keys_masked) + 2 < sizeof(a->row_keys_masked);
}

/* Append list field b to list field a (audit_same_reads said it fits). */
static inline void
audit_merge_list(char *a, const char *b)
{
	size_t		alen;

	if (b[0] == '\0')
		return;
	alen = strlen(a);
	if (alen > 0)
		a[alen++] = ',';
	memcpy(a + alen, b, strlen(b) + 1);
}

/*
 * How many refusals a deny event stands for: its detail's "; N times"
 * (which *baselen is set to leave out), or 1.
 */
static int64
audit_deny_times(const AuditEvent *ev, int *baselen)
{
	const char *suffix = strrchr(ev->detail, ';');
	int64		n;
	char	   *end;

	*baselen = strlen(ev->detail);
	if (suffix == NULL || strncmp(suffix, "; ", 2) != 0)
		return 1;
	n = strtoi64(suffix + 2, &end, 10);
	if (end == suffix + 2 || strcmp(end, " times") != 0 || n < 1)
		return 1;
	*baselen = suffix - ev->detail;
	return n;
}

/*
 * The worker's batch: identical deny events (as audit_same_event, their
 * counts aside) become one, their counts and rows added -- also when they
 * alternate (a flood of varied refusals), which the backends' pending slots,
 * holding one event each, do not merge.  A merged event gets kind 0
 * (audit_insert_events skips it).
 */
void
audit_coalesce_denials(AuditEvent *events, int n)
{
	for (int i = 1; i < n; i++)
	{
		AuditEvent *b = &events[i];
		int			blen;
		int64		bn;

		if (b->kind != AUDIT_DENY)
			continue;
		bn = audit_deny_times(b, &blen);
		for (int j = 0; j < i; j++)
		{
			AuditEvent *a = &events[j];
			int			alen;
			int64		an;
			char		adetail[sizeof(a->detail)];

			if (a->kind != AUDIT_DENY)
				continue;
			an = audit_deny_times(a, &alen);
			if (alen != blen || strncmp(a->detail, b->detail, alen) != 0)
				continue;
			/* (the same but for the counts: compare with equal details) */
			memcpy(adetail, a->detail, sizeof(adetail));
			a->detail[alen] = '\0';
			b->detail[blen] = '\0';
			if (!audit_same_event(a, b))
			{
				memcpy(a->detail, adetail, sizeof(adetail));
				if (bn > 1)
					snprintf(b->detail + blen, sizeof(b->detail) - blen, "; " INT64_FORMAT " times", bn);
				continue;
			}
			a->rows += b->rows;
			snprintf(a->detail + alen, sizeof(a->detail) - alen, "; " INT64_FORMAT " times", an + bn);
			b->kind = 0;
			break;
		}
	}
}

/* Merge b's rows and a read's row keys into a (audit_same_event said they fit). */
static void
audit_merge_events(AuditEvent *a, const AuditEvent *b)
{
	a->rows += b->rows;
	if (a->kind != AUDIT_READ)
		return;
	audit_merge_list(a->row_keys, b->row_keys);
	audit_merge_list(a->row_keys_masked, b->row_keys_masked);
}

/*
 * Is the queue more than half full?  Then refusals that do not coalesce (a
 * flood of varied ones) go to spill files, at their session's expense
 * (a file and an fsync each), and leave the queue to other sessions'
 * events, which would otherwise wait for room.
 */
static bool
audit_queue_crowded(void)
{
	bool		crowded;

	LWLockAcquire(audit_shared->lock, LW_SHARED);
	crowded = audit_shared->head - audit_shared->tail > (uint64) audit_shared->capacity / 2;
	LWLockRelease(audit_shared->lock);
	return crowded;
}

/* A pending event as the worker writes it: a count of what it merged. */
static void
audit_pending_take(PendingSlot *ps, AuditEvent *ev)
{
	memcpy(ev, &ps->ev, sizeof(AuditEvent));
	if (ps->statements > 1)
		snprintf(ev->detail + strlen(ev->detail), sizeof(ev->detail) - strlen(ev->detail),
				 ev->kind == AUDIT_READ ? "%s%d statements" : "%s%d times",
				 ev->detail[0] ? "; " : "", ps->statements);
	ps->used = false;
}

/* Backend exit: its pending events go to the queue. */
static void
audit_pending_exit(int code pg_attribute_unused(),
				   Datum arg pg_attribute_unused())
{
	int			backend = compat_backend_slot();

	if (pending_slots == NULL || backend < 0 || backend >= audit_pending_backends())
		return;
	/* (its read slots; and its deny events, wherever they hashed to) */
	for (int slot = 0; slot < pending_nslots; slot++)
	{
		PendingSlot *ps = &pending_slots[slot];
		AuditEvent	ev;
		bool		had = false;
		bool		own = slot / PENDING_READS_PER_BACKEND == backend &&
			slot < audit_pending_read_slots();

		if (!own && (slot < audit_pending_read_slots() ||
					 !ps->used || ps->ev.pid != MyProcPid))
			continue;
		LWLockAcquire(&pending_locks[slot].lock, LW_EXCLUSIVE);
		if (ps->used && (own || ps->ev.pid == MyProcPid))
		{
			audit_pending_take(ps, &ev);
			had = true;
		}
		LWLockRelease(&pending_locks[slot].lock);
		if (had)
			audit_enqueue(&ev, true);
	}
}

/*
 * Hand an event to the queue, by way of this backend's pending slots for
 * read and deny events: merged into a pending one if they describe the
 * same thing, else into a free slot or the oldest one's place (what it
 * displaces goes to the queue).
 * Reads of a statement that failed (aborting) go to the queue at once;
 * a refusal is merged whether or not its statement fails.  Other events,
 * and backends without a slot, go to the queue.
 */
void
audit_submit(const AuditEvent *ev, bool aborting)
{
	static uint64 fills = 0;
	int			slots[PENDING_PROBES];
	int			nslots = pending_slots ? audit_pending_slots(ev, slots) : 0;
	int			slot = -1;
	int			oldest = -1;
	PendingSlot *ps;
	AuditEvent	displaced;
	bool		have_displaced = false;

	/* (In recovery no worker harvests the slots: audit_enqueue logs it.) */
	if (nslots == 0 || (aborting && ev->kind == AUDIT_READ) || RecoveryInProgress())
	{
		audit_enqueue(ev, aborting);
		return;
	}
	if (!pending_exit_registered)
	{
		before_shmem_exit(audit_pending_exit, (Datum) 0);
		pending_exit_registered = true;
	}
	/* The same event pending: merged. */
	for (int k = 0; k < nslots; k++)
	{
		int			i = slots[k];

		ps = &pending_slots[i];
		LWLockAcquire(&pending_locks[i].lock, LW_EXCLUSIVE);
		if (ps->used && audit_same_event(&ps->ev, ev))
		{
			audit_merge_events(&ps->ev, ev);
			ps->statements++;
			LWLockRelease(&pending_locks[i].lock);
			return;
		}
		if (!ps->used && slot < 0)
			slot = i;
		if (ps->used && (oldest < 0 || ps->taken < pending_slots[oldest].taken))
			oldest = i;
		LWLockRelease(&pending_locks[i].lock);
	}
	/* Else a free slot, or the oldest, whose event goes to the queue. */
	if (slot < 0)
		slot = oldest >= 0 ? oldest : slots[0];
	ps = &pending_slots[slot];
	LWLockAcquire(&pending_locks[slot].lock, LW_EXCLUSIVE);
	if (ps->used)
	{
		audit_pending_take(ps, &displaced);
		have_displaced = true;
	}
	memcpy(&ps->ev, ev, sizeof(*ev));
	ps->statements = 1;
	ps->taken = ++fills;
	ps->used = true;
	LWLockRelease(&pending_locks[slot].lock);
	if (have_displaced && displaced.kind != AUDIT_READ && audit_queue_crowded())
		audit_spill(&displaced);	/* (a flood of refusals pays for itself) */
	else if (have_displaced)
		audit_enqueue(&displaced, aborting);
	else
		audit_ensure_worker();
}

/* Worker: take the pending events of this database. */
int
audit_harvest_pending(Oid dboid, AuditEvent *events, int max)
{
	int			i;
	int			n = 0;

	for (i = 0; i < pending_nslots && n < max; i++)
	{
		PendingSlot *ps = &pending_slots[i];

		/* (Unlocked first look, so as not to lock every slot: a hint only.) */
		if (!ps->used || ps->ev.dboid != dboid)
			continue;
		LWLockAcquire(&pending_locks[i].lock, LW_EXCLUSIVE);
		if (ps->used && ps->ev.dboid == dboid)
			audit_pending_take(ps, &events[n++]);
		LWLockRelease(&pending_locks[i].lock);
	}
	return n;
}

/* Does process pid exist?  (Workers run as the server's OS user.) */
static bool
audit_pid_alive(pid_t pid)
{
	return pid != 0 && (kill(pid, 0) == 0 || errno != ESRCH);
}

/*
 * on_shmem_exit: give the worker slot back however the worker leaves (its
 * own exit, a FATAL, the postmaster's death), so that the next backend that
 * needs a worker for this database starts one.
 */
void
audit_worker_release(int code pg_attribute_unused(), Datum arg)
{
	AuditWorkerSlot *me = &audit_shared->workers[DatumGetInt32(arg)];

	/* (Nothing else runs in this process any more.) */
	LWLockReleaseAll();
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	if (me->pid == MyProcPid)
	{
		me->pid = 0;
		me->latch = NULL;
		me->dboid = InvalidOid;
		me->requested_at = 0;
	}
	LWLockRelease(audit_shared->lock);
}

/*
 * Take the worker slot of dboid.  Returns its index, or -1 when another
 * live worker has it (or no slot is left).
 */
int
audit_worker_claim(Oid dboid)
{
	int			i;
	int			slot = -1;
	bool		none_left = false;

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < AUDIT_MAX_WORKERS && slot < 0; i++)
		if (audit_shared->workers[i].dboid == dboid)
			slot = i;
	for (i = 0; i < AUDIT_MAX_WORKERS && slot < 0; i++)
		if (audit_shared->workers[i].dboid == InvalidOid)
		{
			slot = i;
			audit_shared->workers[i].dboid = dboid;
		}
	if (slot < 0)
		none_left = true;
	else
	{
		AuditWorkerSlot *w = &audit_shared->workers[slot];

		if (w->pid != 0 && w->pid != MyProcPid && audit_pid_alive(w->pid))
			slot = -1;
		else
		{
			w->pid = MyProcPid;
			w->latch = MyLatch;
		}
	}
	LWLockRelease(audit_shared->lock);
	if (none_left)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pii_guard has no audit worker slot left for database %u", dboid),
				 errdetail("At most %d databases can have an audit worker at a time.", AUDIT_MAX_WORKERS)));
	return slot;
}

/* Does a live worker hold the slot of dboid?  (Caller holds the lock.) */
static bool
audit_worker_running(Oid dboid)
{
	int			i;

	for (i = 0; i < AUDIT_MAX_WORKERS; i++)
	{
		AuditWorkerSlot *w = &audit_shared->workers[i];

		if (w->dboid == dboid && w->pid != 0 && audit_pid_alive(w->pid))
			return true;
	}
	return false;
}

/*
 * Only a database's own worker frees its slots, and the ring's tail moves
 * only over free slots: events at the tail whose database has no running
 * worker (it cannot start, it died, the database was dropped) would keep
 * every later slot in use, and every backend of every database would wait
 * and spill.  So any worker moves such events into spill files of their
 * database, which its worker ingests when it runs, and frees their slots.
 * (Spill files of a database that no longer exists are removed by
 * audit_remove_dropped_spill_files.)  self: the calling worker's database;
 * scratch: room for AUDIT_BATCH events.
 */
void
audit_queue_move_orphans(Oid self, AuditEvent *scratch)
{
	int			n = 0;
	int			i;
	uint64		pos;
	Oid			last_orphaned = InvalidOid;

	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (pos = audit_shared->tail; pos < audit_shared->head && n < AUDIT_BATCH; pos++)
	{
		AuditEvent *ev = &audit_shared->events[pos % audit_shared->capacity];

		/* Free, or ours: freed by this worker's own cycles. */
		if (ev->dboid == InvalidOid || ev->dboid == self)
			continue;
		if (ev->dboid != last_orphaned)
		{
			if (audit_worker_running(ev->dboid))
				break;
			last_orphaned = ev->dboid;
		}
		memcpy(&scratch[n++], ev, sizeof(AuditEvent));
		ev->dboid = InvalidOid;
	}
	while (audit_shared->tail < audit_shared->head &&
		   audit_shared->events[audit_shared->tail % audit_shared->capacity].dboid == InvalidOid)
		audit_shared->tail++;
	LWLockRelease(audit_shared->lock);

	/*
	 * Out of the ring and not yet on disk only for these moments: a crash
	 * now loses them, as it would have lost them in the ring.
	 */
	for (i = 0; i < n; i++)
		audit_spill(&scratch[i]);
	if (n > 0)
		ConditionVariableBroadcast(&audit_shared->space_cv);
}

/*
 * Remove the spill files of databases that no longer exist (dropped while
 * they had events queued, or with spill files no worker had read yet),
 * with a LOG line per database.  Runs in a transaction: it looks the
 * databases up.
 */
void
audit_remove_dropped_spill_files(Oid self)
{
	char		dir[MAXPGPATH];
	DIR		   *d;
	struct dirent *de;
	Oid			gone[32];
	int			removed[32];
	int			ngone = 0;
	int			i;

	audit_spill_dir(dir, sizeof(dir));
	d = AllocateDir(dir);
	if (d == NULL)
		return;
	while ((de = ReadDirExtended(d, dir, LOG)) != NULL)
	{
		Oid			db;
		int			pid;
		const char *ext;
		char		path[MAXPGPATH];

		if (!audit_parse_spill_name(de->d_name, &db, &pid, &ext) ||
			strcmp(ext, "event") != 0 || db == self ||
			SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum((Oid) db)))
			continue;
		for (i = 0; i < ngone && gone[i] != (Oid) db; i++)
			;
		if (i == ngone)
		{
			if (ngone == (int) lengthof(gone))
				continue;		/* the next pass takes these */
			gone[ngone] = (Oid) db;
			removed[ngone++] = 0;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) == 0)
			removed[i]++;
	}
	FreeDir(d);
	for (i = 0; i < ngone; i++)
		if (removed[i] > 0)
			ereport(LOG,
					(errmsg("pii_guard removed %d audit spill files of database %u, which no longer exists",
							removed[i], gone[i])));
}

PG_FUNCTION_INFO_V1(pii_guard_audit_queue_status);

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

/*
 * Worker: copy the queued events of dboid (up to max) into batch, their
 * queue positions into seqs.  Their slots stay in use until
 * audit_queue_release, once what the worker made of them has committed.
 */
int
audit_queue_take(Oid dboid, AuditEvent *batch, uint64 *seqs, int max)
{
	int			n = 0;
	uint64		pos;

	LWLockAcquire(audit_shared->lock, LW_SHARED);
	for (pos = audit_shared->tail; pos < audit_shared->head && n < max; pos++)
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
	return n;
}

/* Worker: free the slots audit_queue_take copied (their events are written). */
void
audit_queue_release(Oid dboid, const uint64 *seqs, int n)
{
	LWLockAcquire(audit_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
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
}

/* Worker: remove the spill files whose events are written. */
void
audit_spill_remove(char (*files)[MAXPGPATH], int n)
{
	char		dir[MAXPGPATH];

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		(void) unlink(files[i]);
	/* (Or a crash could bring a written event back.) */
	audit_spill_dir(dir, sizeof(dir));
	(void) fsync_fname_ext(dir, true, false, LOG);
}

/* The pid of dboid's audit worker, or 0 when none runs. */
pid_t
audit_worker_pid(Oid dboid)
{
	pid_t		pid = 0;

	if (audit_shared == NULL)
		return 0;
	LWLockAcquire(audit_shared->lock, LW_SHARED);
	for (int i = 0; i < AUDIT_MAX_WORKERS; i++)
		if (audit_shared->workers[i].dboid == dboid && audit_shared->workers[i].pid != 0)
			pid = audit_shared->workers[i].pid;
	LWLockRelease(audit_shared->lock);
	return pid;
}
