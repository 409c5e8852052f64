/*-------------------------------------------------------------------------
 *
 * audit_worker.c
 *		The per-database audit worker: what it does with the events that
 *		audit_queue.c brings it, and the periodic work of the audit.
 *
 * One dynamic background worker per database that uses pii_guard, started
 * on demand by the first backend that needs it (never by the postmaster:
 * a dropped database's worker would come back forever).  It connects as
 * the bootstrap superuser, so its session settings are pinned before it
 * connects (search_path = pg_catalog, pg_temp, no read-only default, no
 * timeouts, triggers firing) and its queries run as the extension owner.
 * Each cycle takes its database's queued, spilled and pending events,
 * writes them (audit.c), raises alerts, records grant expiries, seals the
 * chain and keeps limits.state; only after its transaction commits does it
 * free the events' queue slots and spill files.  An ERROR in a cycle is
 * logged and the cycle retried with a back-off.  Asked to stop (SIGTERM:
 * server shutdown, DROP DATABASE, pg_terminate_backend), it first writes
 * what is queued, exits with code 0.  With pii_guard.audit_retention set,
 * it runs the archive step (audit_archive.c) hourly, in a transaction of
 * its own.
 *
 * A worker stays connected to its database; the utility hook has it
 * stopped first (audit_release_database) when the database's owner runs a
 * statement that needs the database to itself, such as DROP DATABASE.
 *
 * Hot standby.  The worker runs on a standby too (started from a
 * consistent state), keeps limits.state and otherwise waits; after a
 * promotion its next cycle works as on any primary.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

/*
 * The worker's state.  The batch arrays live in TopMemoryContext; the
 * counts describe the cycle in progress, so that an ERROR in it knows what
 * to put back.
 */
typedef struct WorkerState
{
	Oid			dboid;
	int			slot;			/* its worker slot (audit_worker_claim) */
	AuditEvent *batch;			/* queued, then spilled, then harvested */
	uint64	   *seqs;			/* queue positions of the queued ones */
	char		(*files)[MAXPGPATH];	/* spill files of the spilled ones */
	AuditEvent *orphans;		/* other databases' events being moved */
	int			nqueued;
	int			nspill;
	int			nharvest;
	bool		installed;		/* pii_guard is in this database */
	bool		standby;		/* the last cycle ran in recovery */
	bool		draining;		/* asked to stop: seal what we wrote */
	TimestampTz last_seal;
	TimestampTz last_sweep;
	int64		sweep_from;		/* where the next sweep begins */
	TimestampTz last_expiry_check;
	TimestampTz last_full_expiry_check;
	TimestampTz expiry_since;	/* grants that ended before are recorded */
	int			cycles;			/* cycles that committed */
	int			idle_cycles;	/* consecutive ones without pii_guard */
	int			backoff_ms;		/* wait after a failed cycle */
	TimestampTz last_archive;	/* the last archive step (0: due) */
} WorkerState;

static WorkerState ws;
static volatile sig_atomic_t worker_got_sigterm = false;

#define AUDIT_MAX_BACKOFF_MS	10000

/* Rates of the worker's periodic work (microseconds). */
#define AUDIT_SEAL_INTERVAL			(500 * INT64CONST(1000))
#define AUDIT_SWEEP_INTERVAL		(10 * USECS_PER_SEC)
#define AUDIT_ARCHIVE_INTERVAL		(3600 * USECS_PER_SEC)
#define AUDIT_ARCHIVE_BATCH			100000
#define AUDIT_EXPIRY_INTERVAL		USECS_PER_SEC
#define AUDIT_FULL_EXPIRY_INTERVAL	(60 * USECS_PER_SEC)
#define AUDIT_EXPIRY_MARGIN			(60 * USECS_PER_SEC)

/*
 * SIGTERM: leave the main loop, drain, exit with code 0.  (SIGNAL_ARGS,
 * spelled out: the parameter is unused.)
 */
static void
audit_worker_sigterm(int postgres_signal_arg pg_attribute_unused())
{
	int			save_errno = errno;

	worker_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

PGDLLEXPORT void pii_guard_audit_worker_main(Datum arg);

/*
 * The worker runs as the bootstrap superuser.  Settings that the database's
 * owner (ALTER DATABASE ... SET) or anyone with ALTER ROLE could give it must
 * decide neither what its queries resolve to nor whether they can run:
 * pin them, before connecting, at a priority that no database or role
 * setting overrides (as autovacuum does).
 */
static void
audit_worker_pin_settings(void)
{
	static const char *const pins[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_deferrable", "off"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
#ifdef COMPAT_HAS_TRANSACTION_TIMEOUT
		{"transaction_timeout", "0"},
#endif
		{"session_replication_role", "origin"},	/* or no row MAC trigger */
		{"exit_on_error", "off"},	/* an ERROR is retried, not fatal */
	};
	int			i;

	for (i = 0; i < (int) lengthof(pins); i++)
		SetConfigOption(pins[i][0], pins[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * One cycle: copy this database's queued events out (their slots stay in
 * use), read its spill files and take its pending reads; insert them all,
 * record grant expiries and seal, in one transaction; after the commit,
 * free the slots and remove the files.  Returns how many events it wrote.
 */
static int
audit_worker_cycle(void)
{
	int			n = 0;
	int			total;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz expiry_done = 0;
	int64		sweep = 0;

	ws.nqueued = ws.nspill = ws.nharvest = 0;
	ws.standby = RecoveryInProgress();
	if (ws.standby)
	{
		/*
		 * A hot standby: nothing can be written, and nothing is queued
		 * (audit_enqueue logs events instead).  Keep the export counters
		 * in limits.state and wait for a promotion; the first cycle after
		 * it works as on any primary.
		 */
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		ws.installed = OidIsValid(pii_guard_relation_oid("audit_log", true));
		PopActiveSnapshot();
		CommitTransactionCommand();
		limits_persist();
		return 0;
	}
	n = audit_queue_take(ws.dboid, ws.batch, ws.seqs, AUDIT_BATCH);
	ws.nqueued = n;
	ws.nspill = audit_read_spill(ws.dboid, ws.batch + n, ws.files, AUDIT_BATCH - n);
	/* From here on, an ERROR must hand the pending reads back. */
	ws.nharvest = audit_harvest_pending(ws.dboid, ws.batch + n + ws.nspill,
										AUDIT_BATCH - n - ws.nspill);
	total = ws.nqueued + ws.nspill + ws.nharvest;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pii_guard audit");
	ws.installed = OidIsValid(pii_guard_relation_oid("audit_log", true));
	if (ws.installed)
	{
		if (total > 0)
		{
			/* (on a copy: an ERROR hands the batch back as it was) */
			AuditEvent *rows = palloc(sizeof(AuditEvent) * total);
			int64		last;

			memcpy(rows, ws.batch, sizeof(AuditEvent) * total);
			audit_resolve_refusals(rows, total);
			audit_coalesce_denials(rows, total);
			last = audit_insert_events(rows, total);
			audit_raise_alerts(audit_inserted_first, last, ws.draining);
			pfree(rows);
		}
		else
			audit_raise_alerts(0, 0, ws.draining);	/* (those due from earlier cycles) */

		/*
		 * The periodic work runs at most at its own rate, however often
		 * events wake us, and each piece is bounded (see audit.c): a
		 * grant's end is recorded within a second; rows are sealed every
		 * half second; a sweep over 100,000 event ids for rows that
		 * committed late every 10 s; every minute the grants are looked at
		 * from the start, in case one committed after it had ended.
		 */
		if (ws.draining || now - ws.last_expiry_check >= AUDIT_EXPIRY_INTERVAL)
		{
			if (now - ws.last_full_expiry_check >= AUDIT_FULL_EXPIRY_INTERVAL)
			{
				ws.expiry_since = DT_NOBEGIN;
				ws.last_full_expiry_check = now;
			}
			expiry_done = audit_record_grant_expiries(ws.expiry_since);
			ws.last_expiry_check = now;
		}
		if (ws.draining || now - ws.last_seal >= AUDIT_SEAL_INTERVAL)
		{
			audit_seal_rows(NULL);
			ws.last_seal = now;
		}
		if (now - ws.last_sweep >= AUDIT_SWEEP_INTERVAL)
		{
			/* (Its read-only queries must see the seals just made.) */
			CommandCounterIncrement();
			UpdateActiveSnapshotCommandId();
			sweep = ws.sweep_from;
			audit_seal_rows(&sweep);
			ws.last_sweep = now;
		}
		/* Export approvals' use, into export_grant_use (limitstate.c). */
		limits_sync_grant_use();
	}
	if (ws.cycles % 25 == 0)
		audit_remove_dropped_spill_files(ws.dboid);
	PopActiveSnapshot();
	CommitTransactionCommand();
	audit_anchor_publish(true);
	audit_alerts_publish(true);
	pgstat_report_activity(STATE_IDLE, NULL);
	ws.nharvest = 0;
	/* (Only once committed: or a failed cycle would skip grants.) */
	if (expiry_done != 0)
		ws.expiry_since = expiry_done - AUDIT_EXPIRY_MARGIN;
	if (sweep != 0)
		ws.sweep_from = sweep;

	/* Committed (or nowhere to go): free the slots and spill files. */
	audit_queue_release(ws.dboid, ws.seqs, ws.nqueued);
	audit_spill_remove(ws.files, ws.nspill);
	ws.nqueued = ws.nspill = 0;

	audit_queue_move_orphans(ws.dboid, ws.orphans);
	limits_persist();
	ws.cycles++;
	return total;
}

/*
 * After an ERROR in a cycle: report it and clean up as the main loop of a
 * backend does.  Queued events keep their slots and spill files stay on
 * disk, so they are simply taken again; the pending reads this cycle had
 * taken go back to the queue (or to a spill file).
 */
static void
audit_worker_recover(void)
{
	int			i;

	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();

	for (i = 0; i < ws.nharvest; i++)
		audit_enqueue(&ws.batch[ws.nqueued + ws.nspill + i], true);
	ws.nqueued = ws.nspill = ws.nharvest = 0;
}

/*
 * The retention step (audit_archive.c), in a transaction of its own, when
 * pii_guard.audit_retention is set: every hour, at start and after a
 * configuration reload, and at once again after a full batch.  An ERROR
 * (a chain that does not verify, a directory it cannot write) is logged
 * and the step tried again an hour later; the events stay in the table.
 */
static void
audit_worker_retention(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext cxt = CurrentMemoryContext;

	if (pii_guard_audit_retention == NULL || pii_guard_audit_retention[0] == '\0' ||
		!ws.installed || ws.standby || ws.draining ||
		(ws.last_archive != 0 && now - ws.last_archive < AUDIT_ARCHIVE_INTERVAL))
		return;
	ws.last_archive = now;
	PG_TRY();
	{
		TimestampTz cutoff;
		char		file[MAXPGPATH];
		int64		first;
		int64		last;
		int64		n = 0;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pii_guard audit archive");
		if (OidIsValid(pii_guard_relation_oid("audit_archives", true)) &&
			audit_retention_cutoff(&cutoff))
			n = audit_archive(cutoff, AUDIT_ARCHIVE_BATCH, file, sizeof(file), &first, &last);
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (n > 0)
			ereport(LOG,
					(errmsg("pii_guard archived " INT64_FORMAT " audit events (seals " INT64_FORMAT
							" to " INT64_FORMAT ") to %s", n, first, last, file)));
		if (n >= AUDIT_ARCHIVE_BATCH)
			ws.last_archive = 0;	/* more are due */
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		pgstat_report_activity(STATE_IDLE, NULL);
		RESUME_INTERRUPTS();
	}
	PG_END_TRY();
}

/*
 * Run one cycle; an ERROR in it is logged and the cycle retried later, with
 * a back-off, so that one bad cycle does not stop the worker.  Returns the
 * events written, or -1 when the cycle failed.
 */
static int
audit_worker_run_cycle(void)
{
	volatile int written = -1;

	PG_TRY();
	{
		written = audit_worker_cycle();
		ws.backoff_ms = 0;
	}
	PG_CATCH();
	{
		audit_worker_recover();
		audit_seal_forget();
		audit_anchor_publish(false);
		audit_alerts_publish(false);
		ws.backoff_ms = ws.backoff_ms == 0 ? 1000 :
			Min(ws.backoff_ms * 2, AUDIT_MAX_BACKOFF_MS);
	}
	PG_END_TRY();
	return written;
}

/*
 * Asked to stop: write what is queued, and what the other backends of this
 * database hand over as they exit (their pending reads), for as long as
 * they are there, up to a few seconds.  (DROP DATABASE ... WITH (FORCE)
 * waits five seconds for us.)
 */
static void
audit_worker_drain(void)
{
	TimestampTz give_up = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 3000);

	ws.draining = true;

	for (;;)
	{
		int			written = audit_worker_run_cycle();

		if (GetCurrentTimestamp() >= give_up)
			break;
		if (written >= AUDIT_BATCH)
			continue;
		if (written >= 0 && CountDBBackends(ws.dboid) <= 1)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Background worker: write this database's queued events, seal the chain. */
void
pii_guard_audit_worker_main(Datum arg)
{
	memset(&ws, 0, sizeof(ws));
	ws.dboid = DatumGetObjectId(arg);

	pqsignal(SIGTERM, audit_worker_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	audit_worker_pin_settings();
	BackgroundWorkerInitializeConnectionByOid(ws.dboid, InvalidOid, 0);

	/* After connecting: InitPostgres frees the postmaster's memory. */
	ws.batch = MemoryContextAlloc(TopMemoryContext, sizeof(AuditEvent) * AUDIT_BATCH);
	ws.seqs = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * AUDIT_BATCH);
	ws.files = MemoryContextAlloc(TopMemoryContext, MAXPGPATH * AUDIT_BATCH);
	ws.orphans = MemoryContextAlloc(TopMemoryContext, sizeof(AuditEvent) * AUDIT_BATCH);

	/* Another worker for this database already runs: leave it the job. */
	ws.slot = audit_worker_claim(ws.dboid);
	if (ws.slot < 0)
		proc_exit(0);
	on_shmem_exit(audit_worker_release, Int32GetDatum(ws.slot));
	audit_remove_stale_spill_files();

	while (!worker_got_sigterm)
	{
		int			written;
		long		wait_ms = 200;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			ws.last_archive = 0;	/* a new retention applies now */
		}
		written = audit_worker_run_cycle();
		if (written >= 0)
			audit_worker_retention();
		if (written < 0)
		{
			/* Back off for real: enqueuing backends set our latch. */
			TimestampTz until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															ws.backoff_ms);

			wait_ms = 0;
			while (!worker_got_sigterm)
			{
				long		left = (long) ((until - GetCurrentTimestamp()) / 1000);

				if (left <= 0)
					break;
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 left, PG_WAIT_EXTENSION);
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
			}
		}
		else
		{
			/*
			 * No pii_guard here (yet: the CREATE EXTENSION that started us
			 * may not have committed; or any more): give up after half a
			 * minute.
			 */
			if (!ws.installed && ++ws.idle_cycles > 150)
				break;
			if (ws.installed)
				ws.idle_cycles = 0;
			if (written >= AUDIT_BATCH)
				wait_ms = 0;
			else if (ws.standby)
				wait_ms = 1000;
		}
		if (wait_ms > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}

	if (worker_got_sigterm)
		audit_worker_drain();
	limits_persist();
	proc_exit(0);
}

/*
 * DROP DATABASE, ALTER DATABASE ... RENAME TO or SET TABLESPACE, and
 * CREATE DATABASE ... TEMPLATE need the database to themselves, but its
 * audit worker stays connected (and, being a superuser's session, a
 * non-superuser's DROP DATABASE ... WITH (FORCE) may not terminate it).
 * Called by the utility hook before such a statement: when the current
 * role owns the database (or is a superuser), stop its worker -- which
 * first writes what is queued -- and wait, up to 5 s, until it is gone.
 * The next backend that needs a worker there starts one again.
 */
void
audit_release_database(Node *parsetree)
{
	const char *dbname = NULL;
	ListCell   *lc;
	Oid			dboid;
	pid_t		pid = 0;
	int			i;

	if (IsA(parsetree, DropdbStmt))
		dbname = ((DropdbStmt *) parsetree)->dbname;
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
		dbname = ((RenameStmt *) parsetree)->subname;
	else if (IsA(parsetree, AlterDatabaseStmt))
	{
		foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
	}
	else if (IsA(parsetree, CreatedbStmt))
	{
		foreach(lc, ((CreatedbStmt *) parsetree)->options)
		{
			DefElem    *opt = (DefElem *) lfirst(lc);

			if (strcmp(opt->defname, "template") == 0 && opt->arg != NULL)
				dbname = defGetString(opt);
		}
	}
	if (dbname == NULL || !IsTransactionState())
		return;
	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || dboid == MyDatabaseId ||
		!compat_database_ownercheck(dboid, GetUserId()))
		return;

	pid = audit_worker_pid(dboid);
	if (pid == 0 || kill(pid, SIGTERM) != 0)
		return;
	for (i = 0; i < 500 && BackendPidGetProc(pid) != NULL; i++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
