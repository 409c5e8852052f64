/*-------------------------------------------------------------------------
 *
 * limits.c
 *		Export-row limits: per statement and per rolling 24 hours, and the
 *		time-boxed export approvals that raise them.
 *
 * What counts.  A protected row counts once per statement as soon as one of
 * its protected values is produced, clear or masked, wherever it goes: to
 * the client, COPY, a cursor, CREATE TABLE AS, INSERT ... SELECT, a
 * function's result, an aggregate.  reveal() reports every value it
 * produces (limits_count_row); a hidden value (NULL) produces nothing, and
 * count(*) never calls reveal().  Rows are told apart by a 64-bit hash of
 * (table, row key) in a per-statement set, so a row whose phone and e-mail
 * are both shown counts once.  reveal() is PARALLEL RESTRICTED, so all
 * counting happens in one process.
 *
 * Statement.  The top-level statement -- including everything its
 * functions run -- except for rows fetched from a user-declared cursor,
 * which count cumulatively for that cursor across FETCHes.
 *
 * Day.  A rolling window of 24 hourly buckets per (database, session
 * user) in shared memory, so that it holds across sessions and cannot be
 * reset by SET ROLE or a SECURITY DEFINER function; the audit worker
 * writes the buckets (and what export approvals have used) to
 * $PGDATA/pg_pii_guard/limits.state, read back at server start, so a
 * restart does not hand out a fresh day's budget.
 *
 * Limits.  From the acting role's profiles, union semantics: the most open
 * one; NULL means unlimited, and so does having no profile with a limit.
 * While the role has a live export approval with rows left, every row it
 * produces consumes the approval (and still counts toward the day); once
 * the approval is used up, the profile's limits apply again -- so with an
 * approval for 500 rows a statement produces 500 rows and the 501st is
 * refused (unless the profile itself allows more).
 *
 * Exceeding a limit raises SQLSTATE 54P01 at the row that would exceed it:
 * no value past the limit is produced.  The refusal is audited (through the
 * queue, so it survives the rollback).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "pii_guard.h"

#define LIMITS_MAX_ROLES	4096
#define LIMITS_MAX_GRANTS	4096
#define LIMITS_HOURS		24
#define LIMITS_STATE_FILE	"pg_pii_guard/limits.state"
#define LIMITS_STATE_MAGIC	0x50474c32	/* "PGL2" */

typedef struct DayKey
{
	Oid			dboid;
	Oid			roleid;
} DayKey;

typedef struct DayCounter
{
	DayKey		key;
	int64		hour[LIMITS_HOURS];		/* the hour each bucket counts */
	int64		rows[LIMITS_HOURS];
} DayCounter;

typedef struct GrantKey
{
	Oid			dboid;
	int64		grant_id;
} GrantKey;

typedef struct GrantUse
{
	GrantKey	key;			/* hash key: grant ids are unique per database */
	int64		used;
} GrantUse;

typedef struct LimitsShared
{
	LWLock	   *lock;
	bool		dirty;
} LimitsShared;

static LimitsShared *limits_shared = NULL;
static HTAB *day_counters = NULL;
static HTAB *grant_uses = NULL;

/* The effective limits of a role, cached per backend. */
typedef struct RoleLimits
{
	Oid			userid;
	uint64		generation;
	TimestampTz expires;
	bool		exempt;
	int64		per_statement;	/* -1: unlimited */
	int64		per_day;
	int			ngrants;
	int64		grant_id[8];
	int64		grant_rows[8];
} RoleLimits;

static RoleLimits role_limits;

/* A counting scope: the top-level statement, or one cursor. */
typedef struct CountScope
{
	HTAB	   *seen;
	int64		rows;
	int64		granted;		/* rows that consumed an export approval */
	int64		last_grant;
} CountScope;

static CountScope statement_scope;
static MemoryContext LimitsContext = NULL;

typedef struct CursorScope
{
	char		name[NAMEDATALEN];	/* hash key */
	CountScope	scope;
} CursorScope;

static HTAB *cursor_scopes = NULL;

/*
 * Cursors the client declared (DECLARE at top level).  Functions' internal
 * cursors (PL/pgSQL FOR loops) are portals too, but their rows count for
 * the statement that runs the function.
 */
void
limits_note_user_cursor(const char *name)
{
	CursorScope *cs;
	bool		found;

	if (name == NULL || name[0] == '\0')
		return;
	if (LimitsContext == NULL)
		LimitsContext = AllocSetContextCreate(TopMemoryContext, "pii_guard limits",
											  ALLOCSET_SMALL_SIZES);
	if (cursor_scopes == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(CursorScope);
		ctl.hcxt = LimitsContext;
		cursor_scopes = hash_create("pii_guard cursor counts", 8, &ctl,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	cs = hash_search(cursor_scopes, name, HASH_ENTER, &found);
	memset(&cs->scope, 0, sizeof(cs->scope));
}

Size
limits_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(LimitsShared));

	size = add_size(size, hash_estimate_size(LIMITS_MAX_ROLES, sizeof(DayCounter)));
	size = add_size(size, hash_estimate_size(LIMITS_MAX_GRANTS, sizeof(GrantUse)));
	return size;
}

/* Read the persisted counters (postmaster, at shared memory creation). */
static void
limits_load_state(void)
{
	FILE	   *f = AllocateFile(LIMITS_STATE_FILE, PG_BINARY_R);
	uint32		magic;
	int32		nday;
	int32		ngrant;
	int			i;

	if (f == NULL)
		return;
	if (fread(&magic, sizeof(magic), 1, f) != 1 || magic != LIMITS_STATE_MAGIC ||
		fread(&nday, sizeof(nday), 1, f) != 1)
		goto done;
	for (i = 0; i < nday; i++)
	{
		DayCounter	dc;
		DayCounter *e;

		if (fread(&dc, sizeof(dc), 1, f) != 1)
			goto done;
		e = hash_search(day_counters, &dc.key, HASH_ENTER_NULL, NULL);
		if (e)
			memcpy(e, &dc, sizeof(dc));
	}
	if (fread(&ngrant, sizeof(ngrant), 1, f) != 1)
		goto done;
	for (i = 0; i < ngrant; i++)
	{
		GrantUse	gu;
		GrantUse   *e;

		if (fread(&gu, sizeof(gu), 1, f) != 1)
			goto done;
		e = hash_search(grant_uses, &gu.key, HASH_ENTER_NULL, NULL);
		if (e)
			memcpy(e, &gu, sizeof(gu));
	}
done:
	FreeFile(f);
}

/* shmem_startup_hook part: attach to (or create) the counters. */
void
limits_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	limits_shared = ShmemInitStruct("pii_guard limits", sizeof(LimitsShared), &found);
	if (!found)
	{
		limits_shared->lock = &(GetNamedLWLockTranche("pii_guard limits"))->lock;
		limits_shared->dirty = false;
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DayKey);
	ctl.entrysize = sizeof(DayCounter);
	day_counters = ShmemInitHash("pii_guard day counters", LIMITS_MAX_ROLES, LIMITS_MAX_ROLES,
								 &ctl, HASH_ELEM | HASH_BLOBS);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(GrantKey);
	ctl.entrysize = sizeof(GrantUse);
	grant_uses = ShmemInitHash("pii_guard export approval use", LIMITS_MAX_GRANTS, LIMITS_MAX_GRANTS,
							   &ctl, HASH_ELEM | HASH_BLOBS);
	if (!found && !IsUnderPostmaster)
		limits_load_state();
	LWLockRelease(AddinShmemInitLock);
}

void
limits_shmem_request(void)
{
	RequestAddinShmemSpace(limits_shmem_size());
	RequestNamedLWLockTranche("pii_guard limits", 1);
}

/*
 * Write the counters to disk if they changed (the audit worker calls this
 * every cycle): temporary file, fsync, rename.
 */
void
limits_persist(void)
{
	HASH_SEQ_STATUS status;
	DayCounter *dc;
	GrantUse   *gu;
	FILE	   *f;
	uint32		magic = LIMITS_STATE_MAGIC;
	int32		n;
	char		tmp[MAXPGPATH];

	if (limits_shared == NULL)
		return;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	if (!limits_shared->dirty)
	{
		LWLockRelease(limits_shared->lock);
		return;
	}
	(void) MakePGDirectory("pg_pii_guard");
	snprintf(tmp, sizeof(tmp), "%s.tmp", LIMITS_STATE_FILE);
	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
	{
		LWLockRelease(limits_shared->lock);
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not write \"%s\": %m", tmp)));
		return;
	}
	fwrite(&magic, sizeof(magic), 1, f);
	n = (int32) hash_get_num_entries(day_counters);
	fwrite(&n, sizeof(n), 1, f);
	hash_seq_init(&status, day_counters);
	while ((dc = hash_seq_search(&status)) != NULL)
		fwrite(dc, sizeof(*dc), 1, f);
	n = (int32) hash_get_num_entries(grant_uses);
	fwrite(&n, sizeof(n), 1, f);
	hash_seq_init(&status, grant_uses);
	while ((gu = hash_seq_search(&status)) != NULL)
		fwrite(gu, sizeof(*gu), 1, f);
	if (fflush(f) != 0 || pg_fsync(fileno(f)) != 0 || FreeFile(f) != 0 ||
		durable_rename(tmp, LIMITS_STATE_FILE, WARNING) != 0)
	{
		LWLockRelease(limits_shared->lock);
		return;
	}
	limits_shared->dirty = false;
	LWLockRelease(limits_shared->lock);
}

/* The current hour number, from the statement's start. */
static int64
limits_hour(void)
{
	return GetCurrentStatementStartTimestamp() / USECS_PER_HOUR;
}

/* Rows counted for (db, role) in the last 24 hours, plus add. */
static int64
limits_day_add(Oid roleid, int64 add)
{
	DayKey		key;
	DayCounter *dc;
	int64		now = limits_hour();
	int64		total = 0;
	int			slot = (int) (now % LIMITS_HOURS);
	int			i;
	bool		found;

	key.dboid = MyDatabaseId;
	key.roleid = roleid;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	dc = hash_search(day_counters, &key, add > 0 ? HASH_ENTER_NULL : HASH_FIND, &found);
	if (dc == NULL)
	{
		LWLockRelease(limits_shared->lock);
		if (add > 0)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("too many roles with pii_guard export counters")));
		return 0;
	}
	if (!found)
	{
		memset(dc->hour, 0, sizeof(dc->hour));
		memset(dc->rows, 0, sizeof(dc->rows));
	}
	if (dc->hour[slot] != now)
	{
		dc->hour[slot] = now;
		dc->rows[slot] = 0;
	}
	dc->rows[slot] += add;
	if (add != 0)
		limits_shared->dirty = true;
	for (i = 0; i < LIMITS_HOURS; i++)
		if (dc->hour[i] > now - LIMITS_HOURS)
			total += dc->rows[i];
	LWLockRelease(limits_shared->lock);
	return total;
}

/* Rows of an export approval used so far, plus add. */
static int64
limits_grant_add(int64 grant_id, int64 add)
{
	GrantUse   *gu;
	GrantKey	key;
	bool		found;
	int64		used;

	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.grant_id = grant_id;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	gu = hash_search(grant_uses, &key, add > 0 ? HASH_ENTER_NULL : HASH_FIND, &found);
	if (gu == NULL)
	{
		LWLockRelease(limits_shared->lock);
		return 0;
	}
	if (!found)
		gu->used = 0;
	gu->used += add;
	used = gu->used;
	if (add != 0)
		limits_shared->dirty = true;
	LWLockRelease(limits_shared->lock);
	return used;
}

/* Load the acting role's limits and live export approvals. */
static void
limits_load_role(Oid userid)
{
	OwnerContext oc;
	Oid			argtypes[2] = {OIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	TimestampTz now = GetCurrentStatementStartTimestamp();
	uint64		i;
	bool		isnull;

	memset(&role_limits, 0, sizeof(role_limits));
	role_limits.userid = userid;
	role_limits.generation = policy_current_generation();
	role_limits.expires = DT_NOEND;
	role_limits.per_statement = -1;
	role_limits.per_day = -1;
	role_limits.exempt = superuser_arg(userid);
	if (role_limits.exempt || !OidIsValid(pii_guard_relation_oid("profiles", true)))
		return;

	values[0] = ObjectIdGetDatum(userid);
	values[1] = TimestampTzGetDatum(now);
	pii_guard_enter_owner_context(&oc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* Union: unlimited if any profile is; else the largest limit. */
	if (SPI_execute_with_args("SELECT CASE WHEN count(*) = 0 OR bool_or(p.max_rows_per_statement IS NULL) "
							  "            THEN -1 ELSE max(p.max_rows_per_statement) END, "
							  "       CASE WHEN count(*) = 0 OR bool_or(p.max_rows_per_day IS NULL) "
							  "            THEN -1 ELSE max(p.max_rows_per_day) END "
							  "FROM pii_guard.profiles p "
							  "WHERE pg_catalog.pg_has_role($1, p.role, 'USAGE')",
							  1, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export limits");
	role_limits.per_statement = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 1, &isnull));
	role_limits.per_day = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 2, &isnull));
	if (SPI_execute_with_args("SELECT g.grant_id, g.rows, g.valid_from, g.valid_until "
							  "FROM pii_guard.grants g "
							  "WHERE g.kind = 'export' AND g.revoked_at IS NULL "
							  "  AND g.valid_until > $2 "
							  "  AND pg_catalog.pg_has_role($1, g.role, 'USAGE') "
							  "ORDER BY g.valid_until, g.grant_id",
							  2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export approvals");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		TimestampTz from = DatumGetTimestampTz(SPI_getbinval(row, desc, 3, &isnull));
		TimestampTz until = DatumGetTimestampTz(SPI_getbinval(row, desc, 4, &isnull));

		if (from > now)
		{
			role_limits.expires = Min(role_limits.expires, from);
			continue;
		}
		role_limits.expires = Min(role_limits.expires, until);
		if (role_limits.ngrants < (int) lengthof(role_limits.grant_id))
		{
			role_limits.grant_id[role_limits.ngrants] =
				DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
			role_limits.grant_rows[role_limits.ngrants] =
				DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
			role_limits.ngrants++;
		}
	}
	SPI_finish();
	pii_guard_leave_owner_context(&oc);
}

/* Does the acting role have any limit at all? (cheap, cached) */
static RoleLimits *
limits_current(void)
{
	Oid			userid = GetUserId();

	if (likely(role_limits.userid == userid &&
			   role_limits.generation == policy_current_generation() &&
			   role_limits.expires == DT_NOEND))
		return &role_limits;
	if (role_limits.userid != userid ||
		role_limits.generation != policy_current_generation() ||
		GetCurrentStatementStartTimestamp() >= role_limits.expires)
		limits_load_role(userid);
	return &role_limits;
}

/* Rows of a live approval still available (consulting shared memory). */
static int64
limits_grant_remaining(RoleLimits *rl, int *which)
{
	int			i;

	for (i = 0; i < rl->ngrants; i++)
	{
		int64		left = rl->grant_rows[i] - limits_grant_add(rl->grant_id[i], 0);

		if (left > 0)
		{
			*which = i;
			return left;
		}
	}
	*which = -1;
	return 0;
}

/* The scope rows count in right now: a user cursor, or the statement. */
static CountScope *
limits_scope(void)
{
	if (LimitsContext == NULL)
		LimitsContext = AllocSetContextCreate(TopMemoryContext, "pii_guard limits",
											  ALLOCSET_SMALL_SIZES);
	if (cursor_scopes != NULL && ActivePortal != NULL && ActivePortal->name != NULL &&
		ActivePortal->name[0] != '\0')
	{
		CursorScope *cs = hash_search(cursor_scopes, ActivePortal->name, HASH_FIND, NULL);

		if (cs != NULL)
			return &cs->scope;
	}
	return &statement_scope;
}

/* Raise the export-limit error (after auditing it). */
static void
limits_refuse(const char *what, int64 limit, int64 count, const char *relation)
{
	char		detail[256];

	snprintf(detail, sizeof(detail),
			 "export limit: %s limit of " INT64_FORMAT " protected rows reached at row " INT64_FORMAT,
			 what, limit, count);
	audit_deny(relation, "export", detail);
	ereport(ERROR,
			(errcode(ERRCODE_PII_GUARD_EXPORT_LIMIT),
			 errmsg("pii_guard export limit exceeded"),
			 errdetail("The limit is " INT64_FORMAT " protected rows %s; this would be row " INT64_FORMAT ".",
					   limit, what, count),
			 errhint("Ask a member of pii_guard_approver for an export approval: pii_guard.approve_export(role, rows, valid_until, reason).")));
}

/*
 * A protected value of row (relid, rowkey) is being produced.  Counts the
 * row once per scope and refuses it if it would exceed a limit.
 */
void
limits_count_row(Oid relid, Datum rowkey, Oid rowkey_type, bool rowkey_null)
{
	RoleLimits *rl;
	CountScope *scope;
	uint64		h;
	bool		found;
	int			which;
	int64		grant_left;
	int64		day;

	rl = limits_current();
	if (rl->exempt || (rl->per_statement < 0 && rl->per_day < 0))
		return;

	scope = limits_scope();
	if (scope->seen == NULL)
	{
		HASHCTL		ctl;

		/* The statement's set is kept and emptied; a cursor's is its own. */
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(uint64);
		ctl.hcxt = scope == &statement_scope ? TopMemoryContext : LimitsContext;
		scope->seen = hash_create("pii_guard counted rows", 256, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (rowkey_null)
		h = hash_bytes_uint32_extended((uint32) relid, (uint64) scope->rows + 1);
	else
	{
		TypeCacheEntry *tce = lookup_type_cache(rowkey_type, TYPECACHE_HASH_EXTENDED_PROC_FINFO);

		if (!OidIsValid(tce->hash_extended_proc))
			h = hash_bytes_uint32_extended((uint32) relid, (uint64) scope->rows + 1);
		else
			h = DatumGetUInt64(FunctionCall2(&tce->hash_extended_proc_finfo, rowkey,
											 Int64GetDatum((int64) relid)));
	}
	(void) hash_search(scope->seen, &h, HASH_ENTER, &found);
	if (found)
		return;

	/* A new row for this scope: a live export approval carries it first. */
	grant_left = limits_grant_remaining(rl, &which);
	if (grant_left > 0)
	{
		/* An export approval carries this row. */
		scope->rows++;
		scope->granted++;
		scope->last_grant = rl->grant_id[which];
		(void) limits_grant_add(rl->grant_id[which], 1);
		(void) limits_day_add(GetSessionUserId(), 1);
		return;
	}
	if (rl->per_statement >= 0 && scope->rows + 1 > rl->per_statement)
	{
		(void) hash_search(scope->seen, &h, HASH_REMOVE, NULL);
		limits_refuse("per statement", rl->per_statement, scope->rows + 1,
					  views_masking_view_name(relid));
	}
	if (rl->per_day >= 0)
	{
		day = limits_day_add(GetSessionUserId(), 1);
		if (day > rl->per_day)
		{
			(void) limits_day_add(GetSessionUserId(), -1);
			(void) hash_search(scope->seen, &h, HASH_REMOVE, NULL);
			limits_refuse("per 24 hours", rl->per_day, day,
						  views_masking_view_name(relid));
		}
	}
	else
		(void) limits_day_add(GetSessionUserId(), 1);
	scope->rows++;
}

/*
 * The top-level statement is over: forget its rows.  Returns how many rows
 * an export approval carried (for the audit), and which one.
 */
int64
limits_end_statement(int64 *grant_id)
{
	int64		granted = statement_scope.granted;
	HTAB	   *seen = statement_scope.seen;

	*grant_id = statement_scope.last_grant;
	if (seen != NULL && statement_scope.rows > 0)
	{
		HASH_SEQ_STATUS status;
		uint64	   *h;

		if (statement_scope.rows > 10000)
		{
			/* A big one: cheaper to start afresh. */
			hash_destroy(seen);
			seen = NULL;
		}
		else
		{
			hash_seq_init(&status, seen);
			while ((h = hash_seq_search(&status)) != NULL)
				(void) hash_search(seen, h, HASH_REMOVE, NULL);
		}
	}
	memset(&statement_scope, 0, sizeof(statement_scope));
	statement_scope.seen = seen;
	return granted;
}

/* Transaction end: cursors are gone (WITH HOLD ones too is acceptable). */
void
limits_end_transaction(void)
{
	int64		ignored;

	(void) limits_end_statement(&ignored);
	if (LimitsContext)
		MemoryContextReset(LimitsContext);
	cursor_scopes = NULL;
}

/* Forget cached limits (policy changed). */
void
limits_invalidate(void)
{
	role_limits.userid = InvalidOid;
}

PG_FUNCTION_INFO_V1(pii_guard_export_usage);

/*
 * SQL function: export_usage(role regrole, OUT rows_last_24h bigint)
 *
 * Protected rows the session role produced in the last 24 hours.
 */
Datum
pii_guard_export_usage(PG_FUNCTION_ARGS)
{
	if (limits_shared == NULL)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(limits_day_add(PG_GETARG_OID(0), 0));
}

PG_FUNCTION_INFO_V1(pii_guard_export_grant_used);

/* SQL function: export_grant_used(grant_id bigint) returns bigint */
Datum
pii_guard_export_grant_used(PG_FUNCTION_ARGS)
{
	if (limits_shared == NULL)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(limits_grant_add(PG_GETARG_INT64(0), 0));
}
