/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		Executor, planner, utility and log hooks: dispatch only.
 *
 * Every hook chains to the one installed before it, and hands the work to
 * the file of its concern:
 *
 *	ExecutorCheckPerms	the fail-closed check on protected base tables
 *						(views.c), for queries and COPY alike; it honours
 *						ereport_on_violation;
 *	post_parse_analyze	writes on masking views rewritten onto their base
 *						tables (write.c);
 *	planner				on a Citus worker, the coordinator's queries on
 *						protected shards admitted (cluster.c), and
 *						lookups through masking views (lookup.c), before
 *						planning; on the coordinator, what a query on a
 *						distributed table's masking view lets leave
 *						(exports.c), found before and marked after it;
 *						after it, the plan is proved: which
 *						reveal() calls are masking views' own (reveal.c),
 *						and where protected values go into aggregates
 *						and functions is marked (exports.c);
 *	ExecutorStart		the fail-closed check once more, the columns a
 *						statement writes through masking views (views.c),
 *						the probes of a rewritten write (write.c), where
 *						its protected values leave (exports.c);
 *	ExecutorRun/Finish	nesting, the portal rows count for (limits.c), the
 *						destination wrapped to count them (exports.c);
 *	ExecutorEnd			back at level 0: reads become events (audit.c);
 *	ProcessUtility		DDL aimed at protected tables (ddl.c); a SET of
 *						application_name noted (citus.c);
 *	emit_log_hook		statements that carried plaintext stay out of the
 *						server log (statement.c); a privilege refusal no
 *						hook's error path saw is audited (audit.c).
 *
 * The planner, executor and utility hooks' error paths audit privilege
 * refusals PostgreSQL raises (audit.c), so that one an exception block
 * catches is recorded too.
 *
 * The state all of them keep -- nesting level, command, export flag,
 * plaintext marks, maintenance -- is in statement.c.
 *
 * Statement boundaries.  Two notions of "end" use the nesting level:
 *
 *	Every execution that returns to nesting level 0 -- ExecutorEnd, or a
 *	utility statement's return -- flushes the reads into audit events
 *	(audit_flush_reads), the rows export approvals carried into export
 *	events (limits_statement_done), and forgets the statement's command
 *	tag.  A failed statement's are flushed by the abort callback.
 *
 *	A real top-level boundary ends the export limits' statement scope
 *	(limits_statement_boundary).  Not every return to level 0 is one:
 *	deferred triggers at commit and fast-path function calls run their
 *	queries at level 0 with no client statement around them, and a
 *	procedure commits between its statements.  A boundary is the end of a
 *	statement that a portal started at level 0 -- a client's statement:
 *	for a query, when its executor state is freed (a callback on the
 *	EState's memory, which fires at ExecutorEnd and in abort cleanup
 *	alike), and for a plain SELECT already when ExecutorRun returns (an
 *	Execute message that stops after some rows ends a statement, while the
 *	portal's own count goes on); for a utility statement, its return --
 *	and the end of a top-level transaction.
 *
 * The planner is counted as a level because it runs executors of its own
 * (constant folding of an immutable function that queries a view).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "commands/prepare.h"
#include "executor/executor.h"
#include "libpq/auth.h"
#include "optimizer/planner.h"
#include "parser/analyze.h"
#include "tcop/cmdtag.h"
#include "tcop/pquery.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/portal.h"

#include "pii_guard.h"

static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;
static ExecutorCheckPerms_hook_type prev_ExecutorCheckPerms = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static planner_hook_type prev_planner = NULL;
static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;

/* Execution is back at nesting level 0: report it, forget the statement. */
static void
hooks_statement_done(void)
{
	views_statement_boundary();
	audit_flush_reads(false);
	views_report_probes();		/* (those of a statement that succeeded) */
	limits_statement_done(false);
	statement_forget();
}

/* The command tag of a query's statement (for audit events). */
static const char *
hooks_command_of(QueryDesc *queryDesc)
{
	return GetCommandTagName(CreateCommandTag((Node *) queryDesc->plannedstmt));
}

/* Memory context callback: a client's query's executor state is gone. */
static void
hooks_query_gone(void *arg pg_attribute_unused())
{
	limits_statement_boundary();
}

/*
 * In an executor or utility hook's error path: an error on its way up is
 * looked at -- a privilege refusal is audited (audit.c; command is the
 * refused statement's), a constraint violation of a governed write loses
 * its DETAIL and a unique violation is a probe (views.c) -- and rethrown
 * changed if it was.
 */
static void
hooks_error_passing(const char *command)
{
	MemoryContext old;
	ErrorData  *ed;

	audit_refusal_passing(command);
	if (!views_governed_write_seen() || !IsTransactionState())
		return;
	old = MemoryContextSwitchTo(CurTransactionContext);
	ed = CopyErrorData();
	MemoryContextSwitchTo(old);
	if (views_constraint_error(ed))
	{
		FlushErrorState();
		ReThrowError(ed);
	}
	FreeErrorData(ed);
}

/* emit_log_hook */
static void
pii_guard_emit_log(ErrorData *edata)
{
	/* (what fails at commit passed no hook: a deferred constraint) */
	if (edata->elevel >= ERROR && views_governed_write_seen())
		(void) views_constraint_error(edata);
	/* (a refusal that passed no hook of ours: while a statement is parsed) */
	if (edata->elevel == ERROR && MyBackendType == B_BACKEND)
		audit_refusal_seen(edata, ActivePortal != NULL && ActivePortal->commandTag != CMDTAG_UNKNOWN ?
						   GetCommandTagName(ActivePortal->commandTag) : NULL);
	statement_scrub_log(edata);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* post_parse_analyze_hook */
static void
pii_guard_post_parse_analyze(COMPAT_ANALYZE_PARAMS)
{
	if (prev_post_parse_analyze)
		prev_post_parse_analyze(COMPAT_ANALYZE_ARGS);
	if (statement_nesting_level() == 0)
	{
		views_statement_boundary();
		audit_refusal_forget();
	}
	if (!statement_in_maintenance() && IsTransactionState())
	{
		write_rewrite(query);
	}
}

/*
 * Where a statement's protected values leave (exports.c), looked at one
 * level down: what it asks the catalogs is not a statement.
 *
 * Not for the plan a parallel worker is started with: it is a part of the
 * leader's, whose rows reach the leader and are counted there, where they
 * leave (seen from inside the worker, the leader's initplans are unknown
 * parameters).  Queries nested in it, such as a PARALLEL SAFE function's,
 * are looked at: the limits refuse what they reveal in a worker.
 */
static void
hooks_exports_start(QueryDesc *queryDesc, int eflags)
{
	statement_push();
	PG_TRY();
	{
		exports_start(queryDesc, eflags);
	}
	PG_FINALLY();
	{
		statement_pop();
	}
	PG_END_TRY();
}

/*
 * A started query's writes through masking views: the columns they target
 * (views.c), the probes of a rewritten write (write.c).  One level down:
 * what they ask the catalogs (the role's limits, say) is not a statement,
 * whose end at level 0 would end this one's (flush its reads, forget its
 * command).
 */
static void
hooks_note_start(QueryDesc *queryDesc, int eflags)
{
	statement_push();
	PG_TRY();
	{
		views_note_statement(queryDesc, eflags);
		write_executor_start(queryDesc, eflags);
	}
	PG_FINALLY();
	{
		statement_pop();
	}
	PG_END_TRY();
}

/* ExecutorStart */
static void
pii_guard_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (!statement_in_maintenance() && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
		(void) views_check_permissions(COMPAT_PLANNED_PERMS(queryDesc->plannedstmt), true);
	if (statement_nesting_level() == 0)
		statement_begin(GetCommandTagName(CreateCommandTag((Node *) queryDesc->plannedstmt)),
						queryDesc->operation == CMD_INSERT, false);
	PG_TRY();
	{
		if (prev_ExecutorStart)
			prev_ExecutorStart(queryDesc, eflags);
		else
			standard_ExecutorStart(queryDesc, eflags);
	}
	PG_CATCH();
	{
		/* (PostgreSQL's privilege checks of relations and functions) */
		audit_refusal_passing(hooks_command_of(queryDesc));
		PG_RE_THROW();
	}
	PG_END_TRY();
	hooks_note_start(queryDesc, eflags);
	if (statement_nesting_level() == 0)
		cluster_write_start(queryDesc, eflags);

	if (!(IsParallelWorker() && statement_nesting_level() == 0))
		hooks_exports_start(queryDesc, eflags);

	/* A query a portal starts at level 0 is a client's statement. */
	if (statement_nesting_level() == 0 && ActivePortal != NULL && queryDesc->estate != NULL)
	{
		MemoryContextCallback *cb;

		cb = MemoryContextAlloc(queryDesc->estate->es_query_cxt, sizeof(MemoryContextCallback));
		cb->func = hooks_query_gone;
		cb->arg = NULL;
		MemoryContextRegisterResetCallback(queryDesc->estate->es_query_cxt, cb);
	}
}

/*
 * ExecutorRun: one level down, so that nested statements' ends don't
 * flush, in the portal the rows are produced for.
 */
static void
pii_guard_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					  uint64 count, bool execute_once)
{
	bool		pushed = limits_enter_portal();
	DestReceiver *dest = queryDesc->dest;
	DestReceiver *counted = exports_wrap_dest(queryDesc);

	statement_push();
	PG_TRY();
	{
		if (counted != NULL)
			queryDesc->dest = counted;
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_CATCH();
	{
		queryDesc->dest = dest;
		statement_pop();
		limits_leave_portal(pushed);
		hooks_error_passing(hooks_command_of(queryDesc));
		PG_RE_THROW();
	}
	PG_END_TRY();
	queryDesc->dest = dest;
	statement_pop();
	limits_leave_portal(pushed);

	/*
	 * A client's query has run for now (an Execute message may stop it
	 * after some rows and resume it later): a boundary, unless what
	 * ExecutorFinish still has to do (AFTER triggers, modifying CTEs) can
	 * produce rows of the same statement.
	 */
	if (statement_nesting_level() == 0 && ActivePortal != NULL &&
		queryDesc->operation == CMD_SELECT && !queryDesc->plannedstmt->hasModifyingCTE)
		limits_statement_boundary();
}

/* ExecutorFinish (AFTER triggers run here): likewise. */
static void
pii_guard_ExecutorFinish(QueryDesc *queryDesc)
{
	bool		pushed = limits_enter_portal();

	statement_push();
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_CATCH();
	{
		statement_pop();
		limits_leave_portal(pushed);
		hooks_error_passing(hooks_command_of(queryDesc));
		PG_RE_THROW();
	}
	PG_END_TRY();
	statement_pop();
	limits_leave_portal(pushed);
	if (statement_nesting_level() == 0)
		cluster_write_finish(queryDesc);
	audit_flush_writes();
}

/* ExecutorEnd: back at level 0, the reads become events. */
static void
pii_guard_ExecutorEnd(QueryDesc *queryDesc)
{
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (statement_nesting_level() == 0)
		hooks_statement_done();
}

/*
 * planner_hook: lookups before planning; planning one level down, so that
 * executors it runs are part of the statement being planned; the finished
 * plan proved.
 */
static PlannedStmt *
pii_guard_planner(Query *parse, const char *query_string, int cursorOptions,
				  ParamListInfo boundParams)
{
	PlannedStmt *volatile result = NULL;
	volatile bool for_role = false;
	CitusExports *volatile citus = NULL;

	if (!statement_in_maintenance() && IsTransactionState())
	{
		cluster_admit_task(parse);
		views_audit_refusals(parse);
		for_role = lookup_add_quals(parse);
		write_citus_plan(parse);
		citus = exports_citus_before(parse);
	}

	statement_push();
	statement_planning(true);
	PG_TRY();
	{
		if (prev_planner)
			result = prev_planner(parse, query_string, cursorOptions, boundParams);
		else
			result = standard_planner(parse, query_string, cursorOptions, boundParams);
	}
	PG_CATCH();
	{
		statement_planning(false);
		statement_pop();
		/* (the planner checks the privileges of what it removes) */
		audit_refusal_passing(GetCommandTagName(CreateCommandTag((Node *) parse)));
		PG_RE_THROW();
	}
	PG_END_TRY();
	statement_planning(false);
	statement_pop();
	if (for_role)
	{
		/* Replanned when the user or the policy changes (lookup.c). */
		result->dependsOnRole = true;
		result->relationOids = lappend_oid(result->relationOids,
										   pii_guard_relation_oid("column_rules", false));
	}
	if (citus != NULL)
		exports_citus_after(result, citus);
	if (IsTransactionState())
	{
		reveal_prove_plan(result);
		exports_mark_plan(result);
	}
	return result;
}

/* ExecutorCheckPerms_hook */
static bool
pii_guard_ExecutorCheckPerms(COMPAT_CHECKPERMS_PARAMS)
{
	if (prev_ExecutorCheckPerms &&
		!prev_ExecutorCheckPerms(COMPAT_CHECKPERMS_ARGS))
		return false;
	if (!statement_in_maintenance() && IsTransactionState())
		return views_check_permissions(COMPAT_CHECKPERMS_LIST, ereport_on_violation);
	return true;
}

/*
 * Run the utility statement one nesting level down.  Back at level 0 it is
 * over; if a portal ran it, it was a client's statement.
 */
static void
hooks_run_utility(COMPAT_UTILITY_PARAMS)
{
	bool		client = statement_nesting_level() == 0 && ActivePortal != NULL;
	bool		pushed = limits_enter_portal();

	statement_push();
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(COMPAT_UTILITY_ARGS);
		else
			standard_ProcessUtility(COMPAT_UTILITY_ARGS);
	}
	PG_CATCH();
	{
		statement_pop();
		limits_leave_portal(pushed);
		hooks_error_passing(GetCommandTagName(CreateCommandTag(pstmt->utilityStmt)));
		PG_RE_THROW();
	}
	PG_END_TRY();
	statement_pop();
	limits_leave_portal(pushed);
	audit_flush_writes();
	if (statement_nesting_level() == 0)
	{
		if (client)
			limits_statement_boundary();
		hooks_statement_done();
	}
}

/*
 * Does a top-level utility statement take data out?  COPY TO, CREATE
 * TABLE AS, and EXECUTE of a prepared INSERT (its executor starts one
 * level down, where ExecutorStart no longer looks; it is as much an export
 * as the same INSERT ... SELECT sent unprepared).
 */
static bool
hooks_utility_is_export(Node *parsetree)
{
	if (IsA(parsetree, CopyStmt))
		return !((CopyStmt *) parsetree)->is_from;
	if (IsA(parsetree, CreateTableAsStmt))
		return true;
	if (IsA(parsetree, ExecuteStmt))
	{
		PreparedStatement *ps =
			FetchPreparedStatement(((ExecuteStmt *) parsetree)->name, false);

		return ps && ps->plansource->commandTag == CMDTAG_INSERT;
	}
	return false;
}

/*
 * DDL aimed at protected tables, before it runs (ddl.c); it looks the
 * relation up, with PostgreSQL's ownership check: a refusal is audited.
 */
static void
hooks_ddl_before(PlannedStmt **pstmt, bool read_only_tree, DdlAfter *after)
{
	PG_TRY();
	{
		ddl_before(pstmt, read_only_tree, after);
	}
	PG_CATCH();
	{
		audit_refusal_passing(GetCommandTagName(CreateCommandTag((*pstmt)->utilityStmt)));
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* ProcessUtility_hook */
static void
pii_guard_ProcessUtility(COMPAT_UTILITY_PARAMS)
{
	DdlAfter	after;
	Node	   *parsetree;

	citus_note_utility(pstmt->utilityStmt);
	hooks_ddl_before(&pstmt, COMPAT_UTILITY_READONLY_TREE, &after);
	if (after.tree_copied)
		COMPAT_UTILITY_TREE_COPIED();
	parsetree = pstmt->utilityStmt;
	audit_release_database(parsetree);
	if (statement_nesting_level() == 0)
		statement_begin(GetCommandTagName(CreateCommandTag(parsetree)),
						hooks_utility_is_export(parsetree), true);
	hooks_run_utility(COMPAT_UTILITY_ARGS);
	cluster_audit_utility(parsetree, qc != NULL ? qc->nprocessed : 0);
	ddl_after(&after);
}

/*
 * Transaction end: the reads of a failed statement are still reported.  A
 * top-level transaction's end (nesting level 0: not a procedure's COMMIT
 * or ROLLBACK) is a statement boundary; rows that deferred triggers
 * produced at commit are reported before it, while catalog access still
 * works.  No maintenance outlives its transaction (statement.c).
 */
static void
hooks_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	bool		toplevel = statement_nesting_level() == 0;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			audit_flush_writes();
			if (toplevel)
				limits_statement_done(false);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			audit_refusal_forget();
			audit_writes_subxact(SUBXACT_EVENT_ABORT_SUB, InvalidSubTransactionId,
								 InvalidSubTransactionId);
			audit_flush_reads(true);
			views_report_probes();
			if (toplevel)
			{
				limits_statement_done(true);
				limits_statement_boundary();
			}
			statement_xact_end(toplevel);
			views_xact_end(true);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			audit_refusal_forget();
			if (toplevel)
				limits_statement_boundary();
			statement_xact_end(toplevel);
			views_xact_end(false);
			break;
		default:
			break;
	}
}

/*
 * Subtransaction end: maintenance entered in an aborted subtransaction is
 * left (statement.c), its probes reported (views.c).
 */
static void
hooks_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid,
					   void *arg pg_attribute_unused())
{
	statement_subxact_end(event);
	audit_writes_subxact(event, mySubid, parentSubid);
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		views_report_probes();
		audit_refusal_forget();
	}
}

/* Logins: see cluster.c. */
static void
pii_guard_ClientAuthentication(Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	cluster_check_login(port, status);
}

void
hooks_install(void)
{
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = pii_guard_ClientAuthentication;
	prev_ExecutorCheckPerms = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = pii_guard_ExecutorCheckPerms;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pii_guard_ProcessUtility;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = pii_guard_emit_log;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = pii_guard_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = pii_guard_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = pii_guard_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = pii_guard_ExecutorEnd;
	prev_planner = planner_hook;
	planner_hook = pii_guard_planner;
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = pii_guard_post_parse_analyze;
	RegisterXactCallback(hooks_xact_callback, NULL);
	RegisterSubXactCallback(hooks_subxact_callback, NULL);
}
