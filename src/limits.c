/*-------------------------------------------------------------------------
 *
 * limits.c
 *		Export-row limits: per statement and per rolling day, and the
 *		time-boxed export approvals that raise them.  (The shared counters
 *		are in limitstate.c.)
 *
 * What counts.  A row counts when it delivers protected values (clear or
 * masked) somewhere outside the protected table -- to the client, COPY TO,
 * a cursor, CREATE TABLE AS, INSERT ... SELECT into another table, a
 * function, an aggregate's result: exports.c finds those places in the
 * plan and calls limits_count_output (a row each) or limits_count_row (a
 * row of a table once per scope, by its key, however many of its values go
 * in).  Rows only filtered, joined, sorted or skipped count nothing, nor
 * count(), nor writes without RETURNING.
 *
 * Scopes.  Every row counts in the statement's scope and in the scope of
 * every user-visible portal whose execution is under way (hooks.c tells us
 * when one starts and ends running): cursors from DECLARE (at top level or
 * through EXECUTE), refcursors opened by functions, PL/pgSQL loops, and
 * protocol-level portals, named or not.  A portal's scope is created at its
 * first counted row, keyed by the Portal itself (never by its name), is
 * never reset while the portal exists, and is dropped by a callback on the
 * portal's memory context when the portal goes.  So a cursor's count is
 * cumulative across FETCHes, however it was opened and whatever other
 * statements run in between, and a statement's limit also bounds every
 * cursor it fetches from.  The statement scope ends at real top-level
 * boundaries only (hooks.c: the end of a statement a client's portal ran,
 * the end of a top-level transaction); work done while planning, in
 * deferred triggers at commit, in fast-path function calls, or inside a
 * procedure between its COMMITs belongs to the statement around it.
 *
 * Parallel workers.  reveal() is PARALLEL RESTRICTED, but a PARALLEL SAFE
 * function can read a masking view inside a worker, which would count in a
 * budget of its own.  A role with export limits is therefore refused any
 * protected value in a parallel worker (SQLSTATE 0A000, audited), before
 * anything is decrypted or masked.
 *
 * Limits.  From the acting role's profiles, union semantics: the most open
 * one.  A profile's NULL means that it sets no limit: it then has the
 * default of pii_guard.default_max_rows_per_statement and
 * pii_guard.default_max_rows_per_day (-1, the default, is unlimited), as
 * has a governed role with no profile at all.
 *
 * Approvals.  A row within the profile's limits is charged to them (and to
 * the day).  A row beyond them -- past the per-statement limit of one of
 * its scopes, or past the day's -- is carried by a live export approval
 * that has rows left, the one ending soonest first, and does not count
 * toward the day; with none, it is refused.  So an approval for 500 rows
 * lets a statement produce 500 rows beyond the profile's allowance, small
 * lookups within the allowance never touch it, and approved rows never
 * eat the day's budget.  An approval for a group role is one pool its
 * members share.  Used-up approvals are not loaded.  Every statement that
 * used an approval leaves one export event per approval naming it, with
 * the rows it carried (FETCHes included).
 *
 * Exceeding a limit raises SQLSTATE 54P01 at the row that would exceed it:
 * no value past the limit is produced.  The refusal is audited (through the
 * queue, so it survives the rollback).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "pii_guard.h"

#define SCOPE_INLINE		16	/* row hashes kept without a hash table */
#define MAX_PORTAL_DEPTH	64

int			pii_guard_default_max_rows_per_statement = -1;
int			pii_guard_default_max_rows_per_day = -1;

/* The acting role's limits and live approvals, cached per backend. */
typedef struct RoleLimits
{
	Oid			userid;
	uint64		generation;
	TimestampTz expires;		/* when an approval starts or ends */
	bool		exempt;
	int64		nprofiles;
	int64		stmt_unset;		/* profiles without a per-statement limit */
	int64		stmt_max;		/* largest limit set, -1 if none */
	int64		day_unset;
	int64		day_max;
	int			napprovals;
	LimitsApproval *approvals;
} RoleLimits;

static RoleLimits role_limits;
static bool role_limits_task = false;	/* exempt as a Citus task connection */

/* A counting scope: the statement, or one portal. */
typedef struct CountScope
{
	uint64		generation;		/* statement scope: its statement */
	int64		rows;			/* distinct rows counted */
	int64		own;			/* of which charged to the profile */
	int			ninline;
	uint64		inline_keys[SCOPE_INLINE];
	HTAB	   *seen;			/* the rest, in LimitsContext */
} CountScope;

typedef struct PortalScope
{
	Portal		portal;			/* hash key */
	CountScope	scope;
} PortalScope;

/* Rows an approval carried in the current statement, for its event. */
typedef struct ApprovalUse
{
	int64		grant_id;
	int64		rows;
	char		relation[2 * NAMEDATALEN + 8];	/* named while catalogs work */
} ApprovalUse;

static MemoryContext LimitsContext = NULL;
static CountScope statement_scope;
static uint64 statement_generation = 1;
static HTAB *portal_scopes = NULL;
static Portal portal_stack[MAX_PORTAL_DEPTH];
static int	portal_depth = 0;
static ApprovalUse *pending_uses = NULL;
static int	npending = 0;
static int	maxpending = 0;
static bool counters_changed = false;
static uint64 null_keys = 0;

/* The context everything here lives in. */
static MemoryContext
limits_context(void)
{
	if (LimitsContext == NULL)
		LimitsContext = AllocSetContextCreate(TopMemoryContext, "pii_guard limits",
											  ALLOCSET_SMALL_SIZES);
	return LimitsContext;
}

/* Is row hash h in scope s? */
static bool
scope_contains(CountScope *s, uint64 h)
{
	int			i;

	for (i = 0; i < s->ninline; i++)
		if (s->inline_keys[i] == h)
			return true;
	return s->seen != NULL && hash_search(s->seen, &h, HASH_FIND, NULL) != NULL;
}

/* Add row hash h (not yet in it) to scope s. */
static void
scope_add(CountScope *s, uint64 h)
{
	if (s->ninline < SCOPE_INLINE)
	{
		s->inline_keys[s->ninline++] = h;
		return;
	}
	if (s->seen == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(uint64);
		ctl.hcxt = limits_context();
		s->seen = hash_create("pii_guard counted rows", 256, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	(void) hash_search(s->seen, &h, HASH_ENTER, NULL);
}

/* Empty scope s (a small table is kept for the next statement). */
static void
scope_reset(CountScope *s, uint64 generation)
{
	HTAB	   *seen = s->seen;

	if (seen != NULL)
	{
		if (hash_get_num_entries(seen) > 10000)
		{
			hash_destroy(seen);
			seen = NULL;
		}
		else
		{
			HASH_SEQ_STATUS status;
			uint64	   *h;

			hash_seq_init(&status, seen);
			while ((h = hash_seq_search(&status)) != NULL)
				(void) hash_search(seen, h, HASH_REMOVE, NULL);
		}
	}
	memset(s, 0, sizeof(*s));
	s->seen = seen;
	s->generation = generation;
}

/* The portal's memory is going: so is its scope. */
static void
limits_portal_gone(void *arg)
{
	Portal		portal = (Portal) arg;
	PortalScope *ps;

	if (portal_scopes == NULL)
		return;
	ps = hash_search(portal_scopes, &portal, HASH_FIND, NULL);
	if (ps == NULL)
		return;
	if (ps->scope.seen != NULL)
		hash_destroy(ps->scope.seen);
	(void) hash_search(portal_scopes, &portal, HASH_REMOVE, NULL);
}

/* The scope of a live portal, created at its first counted row. */
static CountScope *
limits_portal_scope(Portal portal)
{
	PortalScope *ps;
	bool		found;

	if (portal_scopes == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Portal);
		ctl.entrysize = sizeof(PortalScope);
		ctl.hcxt = limits_context();
		portal_scopes = hash_create("pii_guard portal counts", 16, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	ps = hash_search(portal_scopes, &portal, HASH_ENTER, &found);
	if (!found)
	{
		MemoryContextCallback *cb;

		memset(&ps->scope, 0, sizeof(ps->scope));
		cb = MemoryContextAlloc(portal->portalContext, sizeof(MemoryContextCallback));
		cb->func = limits_portal_gone;
		cb->arg = portal;
		MemoryContextRegisterResetCallback(portal->portalContext, cb);
	}
	return &ps->scope;
}

/*
 * hooks.c: the executor or a utility statement starts running in
 * ActivePortal.  Returns whether a portal was pushed (pass it to
 * limits_leave_portal).  Portals that are not user-visible -- the simple
 * protocol's unnamed portal, EXECUTE's -- last one statement and need no
 * scope of their own.
 */
bool
limits_enter_portal(void)
{
	Portal		portal = ActivePortal;

	if (portal == NULL || !portal->visible ||
		(portal_depth > 0 && portal_stack[portal_depth - 1] == portal))
		return false;
	if (portal_depth >= MAX_PORTAL_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
				 errmsg("cursors are nested too deeply for pii_guard's export limits"),
				 errdetail("At most %d cursors can run one inside another.", MAX_PORTAL_DEPTH)));
	portal_stack[portal_depth++] = portal;
	return true;
}

/* hooks.c: the run that limits_enter_portal pushed a portal for is over. */
void
limits_leave_portal(bool pushed)
{
	if (pushed && portal_depth > 0)
		portal_depth--;
}

/*
 * hooks.c: a top-level statement is over (or a top-level transaction
 * ends).  The statement scope starts afresh at the next counted row.
 * Called from memory context callbacks too: only bumps a counter.
 */
void
limits_statement_boundary(void)
{
	statement_generation++;
}

/* Remember that approval which carried a row of relid in this statement. */
static void
limits_note_use(int64 grant_id, Oid relid)
{
	int			i;

	for (i = 0; i < npending; i++)
		if (pending_uses[i].grant_id == grant_id)
		{
			pending_uses[i].rows++;
			return;
		}
	if (npending == maxpending)
	{
		maxpending = Max(8, maxpending * 2);
		pending_uses = pending_uses == NULL ?
			MemoryContextAlloc(limits_context(), sizeof(ApprovalUse) * maxpending) :
			repalloc(pending_uses, sizeof(ApprovalUse) * maxpending);
	}
	pending_uses[npending].grant_id = grant_id;
	pending_uses[npending].rows = 1;
	views_relation_name(relid, pending_uses[npending].relation,
						sizeof(pending_uses[npending].relation));
	npending++;
}

/*
 * hooks.c, at the end of every nesting-level-0 execution (and at abort):
 * one export event per approval that carried rows since the last call,
 * naming it.  Wakes the audit worker when counters changed, so that they
 * are persisted even when no read events are written.
 */
void
limits_statement_done(bool aborting)
{
	int			i;

	for (i = 0; i < npending; i++)
	{
		AuditEvent	ev;

		audit_event_init(&ev, AUDIT_EXPORT);
		AUDIT_SET(&ev, relation, pending_uses[i].relation);
		if (aborting)
			snprintf(ev.operation, sizeof(ev.operation), "%s (failed)", statement_command());
		else
			AUDIT_SET(&ev, operation, statement_command());
		ev.rows = pending_uses[i].rows;
		snprintf(ev.detail, sizeof(ev.detail),
				 INT64_FORMAT " rows under export approval " INT64_FORMAT,
				 pending_uses[i].rows, pending_uses[i].grant_id);
		audit_enqueue(&ev, aborting);
	}
	npending = 0;
	if (counters_changed && !aborting)
		audit_ensure_worker();
	counters_changed = false;
}

/* Make rl the cached limits of the acting role (replacing the old ones). */
static void
limits_install_role(const RoleLimits *rl)
{
	if (role_limits.approvals != NULL)
		pfree(role_limits.approvals);
	role_limits = *rl;
}

/* Load the acting role's limits and live, not used-up export approvals. */
static void
limits_load_role(Oid userid)
{
	RoleLimits	rl;
	OwnerContext oc;
	Oid			argtypes[2] = {OIDOID, TIMESTAMPTZOID};
	Datum		values[2];
	TimestampTz now = GetCurrentStatementStartTimestamp();
	bool		have_use_table;
	uint64		i;
	bool		isnull;
	HeapTuple	row;
	TupleDesc	desc;

	/*
	 * Built aside and installed only when complete: an ERROR half way (a
	 * cancel during the queries) must not leave a half-loaded role that
	 * reads as "no limits".
	 */
	rl.userid = InvalidOid;
	memset(&rl, 0, sizeof(rl));
	rl.userid = userid;
	rl.generation = policy_current_generation();
	rl.expires = DT_NOEND;
	rl.stmt_max = -1;
	rl.day_max = -1;
	/*
	 * (On a Citus worker, the rows a task of the coordinator's returns go to
	 * the coordinator, where what leaves the cluster is counted.)
	 */
	role_limits_task = citus_in_task();
	rl.exempt = superuser_arg(userid) || role_limits_task;
	if (rl.exempt || !OidIsValid(pii_guard_relation_oid("profiles", true)))
	{
		rl.exempt = true;
		limits_install_role(&rl);
		return;
	}
	have_use_table = OidIsValid(pii_guard_relation_oid("export_grant_use", true));

	values[0] = ObjectIdGetDatum(userid);
	values[1] = TimestampTzGetDatum(now);
	owner_spi_begin(&oc);
	if (SPI_execute_with_args("SELECT count(*), "
							  "       count(*) FILTER (WHERE p.max_rows_per_statement IS NULL), "
							  "       coalesce(max(p.max_rows_per_statement), -1), "
							  "       count(*) FILTER (WHERE p.max_rows_per_day IS NULL), "
							  "       coalesce(max(p.max_rows_per_day), -1) "
							  "FROM pii_guard.profiles p "
							  "WHERE pg_catalog.pg_has_role($1, p.role, 'USAGE')",
							  1, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export limits");
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	rl.nprofiles = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
	rl.stmt_unset = DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
	rl.stmt_max = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
	rl.day_unset = DatumGetInt64(SPI_getbinval(row, desc, 4, &isnull));
	rl.day_max = DatumGetInt64(SPI_getbinval(row, desc, 5, &isnull));

	if (SPI_execute_with_args(have_use_table ?
							  "SELECT g.grant_id, g.created_at, g.rows, g.valid_from, g.valid_until, "
							  "       coalesce(u.used, 0) "
							  "FROM pii_guard.grants g "
							  "LEFT JOIN pii_guard.export_grant_use u "
							  "       ON u.grant_id = g.grant_id AND u.created_at = g.created_at "
							  "WHERE g.kind = 'export' AND g.revoked_at IS NULL "
							  "  AND g.valid_until > $2 AND coalesce(u.used, 0) < g.rows "
							  "  AND pg_catalog.pg_has_role($1, g.role, 'USAGE') "
							  "ORDER BY g.valid_until, g.grant_id" :
							  "SELECT g.grant_id, g.created_at, g.rows, g.valid_from, g.valid_until, 0::bigint "
							  "FROM pii_guard.grants g "
							  "WHERE g.kind = 'export' AND g.revoked_at IS NULL "
							  "  AND g.valid_until > $2 "
							  "  AND pg_catalog.pg_has_role($1, g.role, 'USAGE') "
							  "ORDER BY g.valid_until, g.grant_id",
							  2, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export approvals");
	if (SPI_processed > 0)
		rl.approvals = MemoryContextAlloc(limits_context(),
												   sizeof(LimitsApproval) * SPI_processed);
	desc = SPI_tuptable->tupdesc;
	for (i = 0; i < SPI_processed; i++)
	{
		LimitsApproval *a = &rl.approvals[rl.napprovals];
		TimestampTz from;

		row = SPI_tuptable->vals[i];
		from = DatumGetTimestampTz(SPI_getbinval(row, desc, 4, &isnull));
		if (from > now)
		{
			rl.expires = Min(rl.expires, from);
			continue;
		}
		a->grant_id = DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		a->created_at = DatumGetTimestampTz(SPI_getbinval(row, desc, 2, &isnull));
		a->rows = DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
		a->valid_until = DatumGetTimestampTz(SPI_getbinval(row, desc, 5, &isnull));
		a->stored_used = DatumGetInt64(SPI_getbinval(row, desc, 6, &isnull));
		/* Used up (by what shared memory says): not worth a slot. */
		if (limits_grant_used(a) >= a->rows)
			continue;
		rl.expires = Min(rl.expires, a->valid_until);
		rl.napprovals++;
	}
	owner_spi_end(&oc);
	limits_install_role(&rl);
}

/* The acting role's limits, reloaded when the policy changed or an approval starts or ends. */
static RoleLimits *
limits_current(void)
{
	Oid			userid = GetUserId();

	if (likely(role_limits.userid == userid &&
			   role_limits.generation == policy_current_generation() &&
			   (!role_limits_task || citus_in_task()) &&
			   (role_limits.expires == DT_NOEND ||
				GetCurrentStatementStartTimestamp() < role_limits.expires)))
		return &role_limits;
	limits_load_role(userid);
	return &role_limits;
}

/*
 * One limit from the profiles: unlimited (-1) if any profile is unlimited,
 * else the largest.  A profile that sets none has the default; so has a
 * role without profiles.
 */
static inline int64
limits_combine(int64 nprofiles, int64 nunset, int64 maxset, int dflt)
{
	if (nprofiles == 0 || nunset == nprofiles)
		return dflt;
	if (nunset > 0)
		return dflt < 0 ? -1 : Max(maxset, (int64) dflt);
	return maxset;
}

/*
 * Do no export limits apply to the current user now?  reveal() keeps the
 * answer per call site while the policy generation, the user and the
 * default limits stay the same: none of them changed, none of the limits
 * did (approvals only ever raise limits).
 */
bool
limits_role_unlimited(void)
{
	RoleLimits *rl = limits_current();

	return rl->exempt ||
		(limits_combine(rl->nprofiles, rl->stmt_unset, rl->stmt_max,
						pii_guard_default_max_rows_per_statement) < 0 &&
		 limits_combine(rl->nprofiles, rl->day_unset, rl->day_max,
						pii_guard_default_max_rows_per_day) < 0);
}

static void limits_refuse_parallel(Oid relid) pg_attribute_noreturn();
static void limits_refuse(const char *what, int64 limit, int64 count, Oid relid,
						  Portal portal, bool had_approvals) pg_attribute_noreturn();

/* Record a refused parallel-worker read, and raise it. */
static void
limits_refuse_parallel(Oid relid)
{
	audit_deny(views_masking_view_name(relid), "export",
			   "export limit: protected values refused in a parallel worker");
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("pii_guard does not produce protected values in parallel workers for roles with export limits"),
			 errdetail("A function marked PARALLEL SAFE read a masking view inside a parallel worker, where its rows could not be counted with the statement's."),
			 errhint("Declare the function PARALLEL RESTRICTED, or set max_parallel_workers_per_gather to 0.")));
}

/* Raise the export-limit error (after auditing it). */
static void
limits_refuse(const char *what, int64 limit, int64 count, Oid relid,
			  Portal portal, bool had_approvals)
{
	char		detail[256];

	snprintf(detail, sizeof(detail),
			 "export limit: %s limit of " INT64_FORMAT " protected rows reached at row " INT64_FORMAT "%s",
			 what, limit, count, portal ? " of a cursor" : "");
	audit_deny(views_masking_view_name(relid), "export", detail);
	if (portal)
		ereport(ERROR,
				(errcode(ERRCODE_PII_GUARD_EXPORT_LIMIT),
				 errmsg("pii_guard export limit exceeded"),
				 errdetail("The limit is " INT64_FORMAT " protected rows %s, counted across the fetches of a cursor; this would be row " INT64_FORMAT " of cursor \"%s\".%s",
						   limit, what, count, portal->name,
						   had_approvals ? " The role's export approvals have no rows left." : ""),
				 errhint("Ask a member of pii_guard_approver for an export approval: pii_guard.approve_export(role, rows, valid_until, reason).")));
	ereport(ERROR,
			(errcode(ERRCODE_PII_GUARD_EXPORT_LIMIT),
			 errmsg("pii_guard export limit exceeded"),
			 errdetail("The limit is " INT64_FORMAT " protected rows %s; this would be row " INT64_FORMAT ".%s",
					   limit, what, count,
					   had_approvals ? " The role's export approvals have no rows left." : ""),
			 errhint("Ask a member of pii_guard_approver for an export approval: pii_guard.approve_export(role, rows, valid_until, reason).")));
}

/*
 * A protected value of row (relid, rowkey) is about to be produced.  Counts
 * the row once per scope, and refuses it if it would exceed a limit that no
 * live export approval can carry.
 */
void
limits_count_row(Oid relid, Datum rowkey, Oid rowkey_type, bool rowkey_null)
{
	RoleLimits *rl;
	int64		per_statement;
	int64		per_day;
	CountScope *scopes[MAX_PORTAL_DEPTH + 1];
	bool		is_new[MAX_PORTAL_DEPTH + 1];
	int			nscopes = 0;
	int			over = -1;
	bool		any_new = false;
	bool		all_new = true;
	bool		day_over = false;
	bool		carried = false;
	int64		day = 0;
	uint64		h;
	int			i;

	rl = limits_current();
	if (rl->exempt)
		return;
	per_statement = limits_combine(rl->nprofiles, rl->stmt_unset, rl->stmt_max,
								   pii_guard_default_max_rows_per_statement);
	per_day = limits_combine(rl->nprofiles, rl->day_unset, rl->day_max,
							 pii_guard_default_max_rows_per_day);
	if (per_statement < 0 && per_day < 0)
		return;
	if (IsParallelWorker())
		limits_refuse_parallel(relid);

	if (rowkey_null)
		h = hash_bytes_uint32_extended((uint32) relid, ++null_keys);
	else
	{
		TypeCacheEntry *tce = lookup_type_cache(rowkey_type, TYPECACHE_HASH_EXTENDED_PROC_FINFO);

		if (!OidIsValid(tce->hash_extended_proc))
			h = hash_bytes_uint32_extended((uint32) relid, ++null_keys);
		else
			h = DatumGetUInt64(FunctionCall2(&tce->hash_extended_proc_finfo, rowkey,
											 Int64GetDatum((int64) relid)));
	}

	if (statement_scope.generation != statement_generation)
		scope_reset(&statement_scope, statement_generation);
	scopes[nscopes++] = &statement_scope;
	for (i = 0; i < portal_depth; i++)
		scopes[nscopes++] = limits_portal_scope(portal_stack[i]);

	for (i = 0; i < nscopes; i++)
	{
		is_new[i] = !scope_contains(scopes[i], h);
		if (!is_new[i])
		{
			all_new = false;
			continue;
		}
		any_new = true;
		if (per_statement >= 0 && scopes[i]->own >= per_statement && over < 0)
			over = i;
	}
	if (!any_new)
		return;

	/* A row new everywhere counts toward the day, if the profile carries it. */
	if (over < 0 && all_new)
	{
		if (limits_day_take(GetSessionUserId(), per_day, &day))
			counters_changed = true;
		else
			day_over = true;
	}
	if (over >= 0 || day_over)
	{
		int			which = limits_grant_take(rl->approvals, rl->napprovals);

		if (which < 0)
		{
			if (over >= 0)
				limits_refuse("per statement", per_statement, scopes[over]->rows + 1, relid,
							  over > 0 ? portal_stack[over - 1] : NULL, rl->napprovals > 0);
			limits_refuse("per 24 hours", per_day, day + 1, relid, NULL, rl->napprovals > 0);
		}
		carried = true;
		counters_changed = true;
		limits_note_use(rl->approvals[which].grant_id, relid);
	}
	for (i = 0; i < nscopes; i++)
	{
		if (!is_new[i])
			continue;
		scope_add(scopes[i], h);
		scopes[i]->rows++;
		if (!carried)
			scopes[i]->own++;
	}
}

/*
 * views.c, at the abort of a (sub)transaction: n writes through a masking
 * view by the acting role conflicted with existing rows (probes).  Each
 * counts as a row toward the role's day -- also past its limit: the probe
 * has been answered, but the rows the role may still take shrink -- if the
 * role has limits at all (loaded before the write).  Never raises.
 */
void
limits_charge_probes(int n)
{
	if (n <= 0 || role_limits.userid != GetUserId() || role_limits.exempt ||
		(limits_combine(role_limits.nprofiles, role_limits.stmt_unset, role_limits.stmt_max,
						pii_guard_default_max_rows_per_statement) < 0 &&
		 limits_combine(role_limits.nprofiles, role_limits.day_unset, role_limits.day_max,
						pii_guard_default_max_rows_per_day) < 0))
		return;
	if (limits_day_add(GetSessionUserId(), n))
		counters_changed = true;
}

/*
 * exports.c: a row of protected values of relid leaves the statement (to
 * the client, another table, a function).  Counts as a row of its own.
 */
void
limits_count_output(Oid relid)
{
	limits_count_row(relid, (Datum) 0, InvalidOid, true);
}

/* Forget cached limits (policy changed). */
void
limits_invalidate(void)
{
	role_limits.userid = InvalidOid;
}

PG_FUNCTION_INFO_V1(pii_guard_export_usage);

/*
 * SQL function: export_usage(role regrole) returns bigint
 *
 * Protected rows the role, as session role, produced in this database in
 * the rolling day (rows carried by export approvals are not in it).
 */
Datum
pii_guard_export_usage(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(limits_day_total(PG_GETARG_OID(0)));
}

PG_FUNCTION_INFO_V1(pii_guard_export_grant_used);

/*
 * SQL function: export_grant_used(grant_id bigint) returns bigint
 *
 * Rows export approval grant_id has carried: what shared memory counts, or
 * what pii_guard.export_grant_use recorded (after a restore, on a standby),
 * whichever is more.
 */
Datum
pii_guard_export_grant_used(PG_FUNCTION_ARGS)
{
	OwnerContext oc;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];
	LimitsApproval a;
	bool		isnull;
	bool		found;

	memset(&a, 0, sizeof(a));
	a.grant_id = PG_GETARG_INT64(0);
	values[0] = Int64GetDatum(a.grant_id);
	owner_spi_begin(&oc);
	if (SPI_execute_with_args(OidIsValid(pii_guard_relation_oid("export_grant_use", true)) ?
							  "SELECT g.created_at, coalesce(u.used, 0) FROM pii_guard.grants g "
							  "LEFT JOIN pii_guard.export_grant_use u "
							  "       ON u.grant_id = g.grant_id AND u.created_at = g.created_at "
							  "WHERE g.grant_id = $1" :
							  "SELECT g.created_at, 0::bigint FROM pii_guard.grants g WHERE g.grant_id = $1",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export approvals");
	found = SPI_processed > 0;
	if (found)
	{
		a.created_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 1, &isnull));
		a.stored_used = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	}
	owner_spi_end(&oc);
	if (!found)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(limits_grant_used(&a));
}
