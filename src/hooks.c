/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		Executor and utility hooks: dispatch only; the work is in views.c.
 *
 * Every hook chains to the one installed before it.
 *
 * ExecutorCheckPerms_hook (queries and COPY alike): the fail-closed check
 * that keeps governed roles off protected base tables.
 *
 * Nesting and statement boundaries.  ExecutorRun/Finish, ProcessUtility
 * and the planner keep a nesting level, restored in PG_FINALLY (so it is
 * balanced after any ERROR; it is not reset at transaction abort, which
 * also happens inside a procedure that runs ROLLBACK).  The planner is
 * counted because it runs executors of its own (constant folding of an
 * immutable function that queries a view) outside of ExecutorRun.
 *
 * Two notions of "end" use it:
 *
 *	Every execution that returns to nesting level 0 -- ExecutorEnd, or a
 *	utility statement's return -- flushes the reads into audit events
 *	(audit_flush_reads), the rows export approvals carried into export
 *	events (limits_statement_done), and forgets the statement's command
 *	tag and plaintext flag.  A failed statement's are flushed by the abort
 *	callback.
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
 * ExecutorRun/Finish and ProcessUtility also tell limits.c which portal
 * they run in, so that a cursor's rows count for it across fetches.
 *
 * emit_log_hook keeps the text (and the error details and context) of a
 * statement that carried plaintext of protected values out of the server
 * log.
 *
 * ProcessUtility_hook: DDL that migration tools aim at a masking view's
 * name -- ALTER TABLE, ALTER TABLE ... RENAME COLUMN, CREATE INDEX -- is
 * forwarded to the base table; and DDL that changes a protected table's
 * columns is followed by replacing the masking views in place (so that views
 * built on them survive), preceded by dropping them only for DROP COLUMN and
 * ALTER COLUMN TYPE (a view pins the columns it reads), in the same
 * transaction.
 * While pii_guard itself runs DDL (protecting, unprotecting, rebuilding),
 * the maintenance flag turns this off; it is reset at transaction end.
 * Statements that need a database to themselves (DROP DATABASE, ...) first
 * let audit_worker.c stop that database's audit worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "common/hashfn.h"
#include "catalog/objectaccess.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_attrdef.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_policy.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_rewrite.h"
#include "catalog/pg_trigger.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "catalog/namespace.h"
#include "commands/prepare.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "tcop/tcopprot.h"
#include "optimizer/planner.h"
#include "tcop/pquery.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "tcop/utility.h"
#include "tcop/cmdtag.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "pii_guard.h"

static ExecutorCheckPerms_hook_type prev_ExecutorCheckPerms = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static planner_hook_type prev_planner = NULL;
static object_access_hook_type prev_object_access = NULL;
static int	maintenance_depth = 0;
static int	nesting_level = 0;	/* executor and utility nesting */

/*
 * Statements that carried plaintext, for the log hook.  The mark belongs to
 * the client message -- statement_timestamp() is when it arrived -- so it
 * covers every statement of a multi-statement query string and executors
 * run during planning, and needs no reset; and the last few query texts
 * are kept as hashes, so that an error at Execute of a statement whose
 * literal was encrypted at Parse (another message) is covered too.
 */
#define PLAINTEXT_TEXTS 16
static TimestampTz plaintext_message = 0;	/* 0: never noted */
static uint64 plaintext_texts[PLAINTEXT_TEXTS];
static int	plaintext_next = 0;
static const char *statement_command = NULL;	/* the top-level command */
static bool statement_is_export = false;

/* Does the top-level statement take data out (COPY TO, CREATE TABLE AS, INSERT ... SELECT)? */
bool
hooks_statement_is_export(void)
{
	return statement_is_export;
}

/* The top-level statement's command tag, for audit events. */
const char *
hooks_statement_command(void)
{
	return statement_command ? statement_command : "SELECT";
}

/* Execution is back at nesting level 0: report it, forget the statement. */
static void
hooks_statement_done(void)
{
	audit_flush_reads(false);
	limits_statement_done(false);
	statement_is_export = false;
	statement_command = NULL;
}

/* Memory context callback: a client's query's executor state is gone. */
static void
hooks_query_gone(void *arg pg_attribute_unused())
{
	limits_statement_boundary();
}

/* Hash of a query text, for plaintext_texts. */
static uint64
hooks_text_hash(const char *text)
{
	return hash_bytes_extended((const unsigned char *) text, (int) strlen(text), 0);
}

/*
 * The current statement's text may hold plaintext of a protected value (it
 * encrypted a literal, compared a plaintext with an encrypted column, wrote
 * through a masking view, or copies data into a protected table): keep it,
 * and the details and context that may quote its values, out of the
 * server log.  Called per value: the first call of a message does the work.
 */
void
hooks_note_plaintext(void)
{
	TimestampTz message = GetCurrentStatementStartTimestamp();

	if (likely(message == plaintext_message))
		return;
	plaintext_message = message;
	if (debug_query_string != NULL)
	{
		plaintext_texts[plaintext_next] = hooks_text_hash(debug_query_string);
		plaintext_next = (plaintext_next + 1) % PLAINTEXT_TEXTS;
	}
}

/* Did the statement being logged carry plaintext? */
static bool
hooks_logging_plaintext(void)
{
	uint64		h;
	int			i;

	if (plaintext_message == 0)
		return false;
	if (plaintext_message == GetCurrentStatementStartTimestamp())
		return true;
	if (debug_query_string == NULL)
		return false;
	h = hooks_text_hash(debug_query_string);
	for (i = 0; i < PLAINTEXT_TEXTS; i++)
		if (plaintext_texts[i] == h)
			return true;
	return false;
}

/*
 * The statement text that PostgreSQL's own statement logging puts in the
 * message itself (log_min_duration_statement, and log_statement at Execute
 * of the extended protocol): cut after its prefix.  Returns NULL when the
 * message is not one of those.
 */
static char *
hooks_withhold_statement(const char *message)
{
	/* After "duration: ... ms", or at the start of the message. */
	static const char *const marks[] = {
		"  statement: ", "  execute ", "  parse ", "  bind ",
		"statement: ", "execute "
	};
	int			i;

	for (i = 0; i < (int) lengthof(marks); i++)
	{
		const char *p = strstr(message, marks[i]);

		if (p != NULL && (marks[i][0] == ' ' || p == message))
			return psprintf("%.*s%s(withheld from the server log by pii_guard: it may hold personal data)",
							(int) (p - message + strlen(marks[i])), message,
							strchr(marks[i], ':') == NULL ? "...: " : "");
	}
	return NULL;
}

/*
 * emit_log_hook: for such a statement, no STATEMENT line, no DETAIL and no
 * CONTEXT in the server log, and no statement text in PostgreSQL's own
 * statement logging (the client still gets the full error).
 */
static void
pii_guard_emit_log(ErrorData *edata)
{
	if (edata->output_to_server && hooks_logging_plaintext())
	{
		edata->hide_stmt = true;
		edata->hide_ctx = true;
		if (edata->detail != NULL || edata->detail_log != NULL)
			edata->detail_log = pstrdup("(withheld from the server log by pii_guard: it may quote personal data)");
		if (edata->elevel == LOG && edata->message != NULL)
		{
			char	   *cut = hooks_withhold_statement(edata->message);

			if (cut != NULL)
				edata->message = cut;
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

int
hooks_nesting_level(void)
{
	return nesting_level;
}

/*
 * ExecutorStart: the fail-closed check once more, before PostgreSQL's own
 * privilege check, so that a refusal by missing privileges is audited as
 * well; afterwards, the columns the statement writes on masking views.
 */
/*
 * A role refused by PostgreSQL's own privilege check on a masking view (no
 * grant on it) is refused while the statement is planned (the view's
 * expansion) or when the executor starts, after any hook of ours: note the
 * refusal ahead of the planner, so that it is audited like pii_guard's own
 * refusals.  Column-level grants are left to PostgreSQL.
 */
static bool
hooks_audit_view_refusals(List *perms)
{
	static const struct
	{
		AclMode		mode;
		const char *name;
	}			modes[] = {
		{ACL_SELECT, "SELECT"}, {ACL_INSERT, "INSERT"},
		{ACL_UPDATE, "UPDATE"}, {ACL_DELETE, "DELETE"}
	};
	ListCell   *lc;

	foreach(lc, perms)
	{
		Oid			relid;
		Oid			check_as;
		AclMode		required;
		Bitmapset  *inserted;
		Bitmapset  *updated;
		Oid			user;

		if (!compat_perm_relation(lfirst(lc), &relid, &check_as) ||
			!compat_perm_columns(lfirst(lc), &relid, &required, &inserted, &updated) ||
			required == 0 || !OidIsValid(views_base_of_view(relid)))
			continue;
		user = OidIsValid(check_as) ? check_as : GetUserId();
		for (int i = 0; i < (int) lengthof(modes); i++)
		{
			if (!(required & modes[i].mode) ||
				pg_class_aclmask(relid, user, modes[i].mode, ACLMASK_ANY) != 0 ||
				(modes[i].mode != ACL_DELETE &&
				 pg_attribute_aclcheck_all(relid, user, modes[i].mode, ACLMASK_ANY) == ACLCHECK_OK))
				continue;
			audit_deny(views_masking_view_name(relid), "permission denied",
					   psprintf("the role holds no %s privilege on the masking view", modes[i].name));
			return true;
		}
	}
	return false;
}

/* Every query level of a statement, subqueries and CTEs included. */
static bool
hooks_refusal_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;

#if PG_VERSION_NUM >= 160000
		if (hooks_audit_view_refusals(q->rteperminfos))
			return true;
#else
		if (hooks_audit_view_refusals(q->rtable))
			return true;
#endif
		return query_tree_walker(q, hooks_refusal_walker, context, 0);
	}
	return expression_tree_walker(node, hooks_refusal_walker, context);
}

static void
pii_guard_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (maintenance_depth == 0 && !(eflags & EXEC_FLAG_EXPLAIN_ONLY))
		views_check_permissions(COMPAT_PLANNED_PERMS(queryDesc->plannedstmt));
	if (nesting_level == 0 && statement_command == NULL)
	{
		statement_command = GetCommandTagName(CreateCommandTag((Node *) queryDesc->plannedstmt));
		if (queryDesc->operation == CMD_INSERT)
			statement_is_export = true;
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	views_note_statement(queryDesc, eflags);

	/* A query a portal starts at level 0 is a client's statement. */
	if (nesting_level == 0 && ActivePortal != NULL && queryDesc->estate != NULL)
	{
		MemoryContextCallback *cb;

		cb = MemoryContextAlloc(queryDesc->estate->es_query_cxt, sizeof(MemoryContextCallback));
		cb->func = hooks_query_gone;
		cb->arg = NULL;
		MemoryContextRegisterResetCallback(queryDesc->estate->es_query_cxt, cb);
	}
}

/*
 * ExecutorRun: count nesting, so that nested statements' ends don't flush,
 * and tell the export limits which portal the rows are produced for.
 */
static void
pii_guard_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					  uint64 count, bool execute_once)
{
	bool		pushed = limits_enter_portal();

	nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		nesting_level--;
		limits_leave_portal(pushed);
	}
	PG_END_TRY();

	/*
	 * A client's query has run for now (an Execute message may stop it
	 * after some rows and resume it later): a boundary, unless what
	 * ExecutorFinish still has to do (AFTER triggers, modifying CTEs) can
	 * produce rows of the same statement.
	 */
	if (nesting_level == 0 && ActivePortal != NULL &&
		queryDesc->operation == CMD_SELECT && !queryDesc->plannedstmt->hasModifyingCTE)
		limits_statement_boundary();
}

/* ExecutorFinish (AFTER triggers run here): likewise. */
static void
pii_guard_ExecutorFinish(QueryDesc *queryDesc)
{
	bool		pushed = limits_enter_portal();

	nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		nesting_level--;
		limits_leave_portal(pushed);
	}
	PG_END_TRY();
}

/* ExecutorEnd: back at level 0, the reads become events. */
static void
pii_guard_ExecutorEnd(QueryDesc *queryDesc)
{
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (nesting_level == 0)
		hooks_statement_done();
}

/*
 * planner_hook: planning is one level down, so that executors it runs
 * (constant folding) are part of the statement being planned.
 */
static PlannedStmt *
pii_guard_planner(Query *parse, const char *query_string, int cursorOptions,
				  ParamListInfo boundParams)
{
	PlannedStmt *result;
	volatile bool for_role = false;

	/* Lookups through masking views by roles that see the column clear. */
	if (maintenance_depth == 0 && IsTransactionState())
	{
		(void) hooks_refusal_walker((Node *) parse, NULL);
		for_role = lookup_add_quals(parse);
	}

	nesting_level++;
	PG_TRY();
	{
		if (prev_planner)
			result = prev_planner(parse, query_string, cursorOptions, boundParams);
		else
			result = standard_planner(parse, query_string, cursorOptions, boundParams);
	}
	PG_FINALLY();
	{
		nesting_level--;
	}
	PG_END_TRY();
	if (for_role)
	{
		/* Replanned when the user or the policy changes (lookup.c). */
		result->dependsOnRole = true;
		result->relationOids = lappend_oid(result->relationOids,
										   pii_guard_relation_oid("column_rules", false));
	}
	return result;
}

/* Executor permission hook: the fail-closed base table check. */
static bool
pii_guard_ExecutorCheckPerms(COMPAT_CHECKPERMS_PARAMS)
{
	if (prev_ExecutorCheckPerms &&
		!prev_ExecutorCheckPerms(COMPAT_CHECKPERMS_ARGS))
		return false;
	if (maintenance_depth == 0 && IsTransactionState())
		views_check_permissions(COMPAT_CHECKPERMS_LIST);
	return true;
}

/*
 * If rv names a masking view, point it at the base table instead; return
 * the protected base table rv now names, or InvalidOid.
 */
static Oid
hooks_retarget(RangeVar *rv)
{
	Oid			relid;
	Oid			base;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		return InvalidOid;
	base = views_base_of_view(relid);
	if (OidIsValid(base))
	{
		rv->schemaname = get_namespace_name(get_rel_namespace(base));
		rv->relname = get_rel_name(base);
		return base;
	}
	return views_is_protected_base(relid) ? relid : InvalidOid;
}

/*
 * Does an ALTER TABLE change what the masking views are built from (the
 * columns, their types, defaults or identity)?  Constraints, ownership,
 * RLS, storage and the like leave the views alone -- which matters during a
 * restore, whose post-data section alters protected tables.
 */
static bool
hooks_changes_columns(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		switch (cmd->subtype)
		{
			case AT_AddColumn:
			case AT_DropColumn:
			case AT_AlterColumnType:
			case AT_ColumnDefault:
			case AT_AddIdentity:
			case AT_SetIdentity:
			case AT_DropIdentity:
			case AT_DropExpression:
				return true;
			default:
				break;
		}
	}
	return false;
}

/*
 * Does an ALTER TABLE remove a column or change a column's type?  Only then
 * must the masking views be dropped before it (a view pins the columns it
 * shows); any other change is followed by replacing them in place.
 */
static bool
hooks_drops_columns(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_DropColumn || cmd->subtype == AT_AlterColumnType)
			return true;
	}
	return false;
}

/*
 * The ownership check PostgreSQL makes for ALTER TABLE, made before
 * pii_guard rebuilds the views as the extension owner: a non-owner's
 * statement must fail at once, with the same error, and not after the view
 * maintenance took locks that readers would queue behind.
 */
static void
hooks_check_owner(Oid base)
{
	if (!compat_class_ownercheck(base, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(base)),
					   get_rel_name(base));
}

/* Call a pii_guard maintenance function on base, as the extension owner. */
static void
hooks_call(const char *sql, Oid base, const char *from, const char *to)
{
	OwnerContext oc;
	Oid			argtypes[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[4] = "   ";

	values[0] = ObjectIdGetDatum(base);
	values[1] = from ? CStringGetTextDatum(from) : (Datum) 0;
	values[2] = to ? CStringGetTextDatum(to) : (Datum) 0;
	if (!from)
		nulls[1] = 'n';
	if (!to)
		nulls[2] = 'n';

	maintenance_depth++;
	pii_guard_enter_owner_context(&oc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 3, argtypes, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pii_guard view maintenance failed: %s", sql);
	SPI_finish();
	pii_guard_leave_owner_context(&oc);
	maintenance_depth--;
}

/*
 * Run the utility statement one nesting level down.  Back at level 0 it is
 * over; if a portal ran it, it was a client's statement.
 */
static void
hooks_run_utility(COMPAT_UTILITY_PARAMS)
{
	bool		client = nesting_level == 0 && ActivePortal != NULL;
	bool		pushed = limits_enter_portal();

	nesting_level++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(COMPAT_UTILITY_ARGS);
		else
			standard_ProcessUtility(COMPAT_UTILITY_ARGS);
	}
	PG_FINALLY();
	{
		nesting_level--;
		limits_leave_portal(pushed);
	}
	PG_END_TRY();
	if (nesting_level == 0)
	{
		if (client)
			limits_statement_boundary();
		hooks_statement_done();
	}
}

/*
 * The write-audit triggers (audit_table(): pii_guard_audit_*) are what puts
 * every change of an audited table into the audit log.  Their table's owner
 * may otherwise disable, drop, rename or replace them and write unaudited:
 * outside pii_guard's own maintenance that is refused to anyone but a
 * superuser, and a superuser's doing it is an admin event in the log.
 */
#define AUDIT_TRIGGER_PREFIX "pii_guard_audit_"

static bool
hooks_is_audit_trigger(const char *name)
{
	return name != NULL &&
		strncmp(name, AUDIT_TRIGGER_PREFIX, strlen(AUDIT_TRIGGER_PREFIX)) == 0;
}

/* Does relid carry a write-audit trigger? */
static bool
hooks_has_audit_trigger(Oid relid)
{
	Relation	rel;
	bool		found = false;

	rel = table_open(relid, AccessShareLock);
	if (rel->trigdesc)
	{
		for (int i = 0; i < rel->trigdesc->numtriggers && !found; i++)
			found = hooks_is_audit_trigger(rel->trigdesc->triggers[i].tgname);
	}
	table_close(rel, AccessShareLock);
	return found;
}

static void
hooks_audit_trigger_change(Oid relid, const char *trigger, const char *action,
						   const char *done)
{
	AuditEvent	ev;
	char	   *relname;

	if (!OidIsValid(relid))
		return;
	if (trigger ? !hooks_is_audit_trigger(trigger) : !hooks_has_audit_trigger(relid))
		return;
	relname = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
										 get_rel_name(relid));
	if (!superuser())
	{
		audit_deny(relname, psprintf("%s audit trigger", action),
				   "refused: only a superuser may switch a table's write audit off behind pii_guard's back");
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s the write-audit trigger%s of table %s",
						action, trigger ? "" : "s", relname),
				 errdetail("Changes to %s are audited; only a superuser may turn that off behind pii_guard's back.",
						   relname),
				 errhint("Use pii_guard.unaudit_table() or pii_guard.unprotect_table() (pii_guard_admin).")));
	}
	audit_event_init(&ev, AUDIT_ADMIN);
	AUDIT_SET(&ev, relation, relname);
	AUDIT_SET(&ev, operation, "audit_trigger_changed");
	AUDIT_SET(&ev, detail,
			  psprintf("audit trigger%s %s %s on table %s by role %s",
					   trigger ? "" : "s", trigger ? trigger : "(all)", done, relname,
					   GetUserNameFromId(GetUserId(), false)));
	(void) audit_insert_now(&ev);
}

static void
hooks_guard_audit_triggers(Node *parsetree)
{
	if (IsA(parsetree, AlterTableStmt))
	{
		AlterTableStmt *stmt = (AlterTableStmt *) parsetree;
		ListCell   *lc;
		Oid			relid;

		if (stmt->objtype != OBJECT_TABLE)
			return;
		relid = RangeVarGetRelid(stmt->relation, NoLock, true);
		foreach(lc, stmt->cmds)
		{
			AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

			switch (cmd->subtype)
			{
				case AT_DisableTrig:
				case AT_EnableReplicaTrig:
					hooks_audit_trigger_change(relid, cmd->name, "disable", "disabled");
					break;
				case AT_DisableTrigAll:
				case AT_DisableTrigUser:
					hooks_audit_trigger_change(relid, NULL, "disable", "disabled");
					break;
				default:
					break;
			}
		}
	}
	else if (IsA(parsetree, DropStmt) &&
			 ((DropStmt *) parsetree)->removeType == OBJECT_TRIGGER)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) parsetree)->objects)
		{
			List	   *names = (List *) lfirst(lc);
			List	   *relname;

			if (list_length(names) < 2)
				continue;
			relname = list_copy_head(names, list_length(names) - 1);
			hooks_audit_trigger_change(RangeVarGetRelid(makeRangeVarFromNameList(relname),
														NoLock, true),
									   strVal(llast(names)), "drop", "dropped");
		}
	}
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_TRIGGER)
	{
		RenameStmt *rs = (RenameStmt *) parsetree;

		hooks_audit_trigger_change(RangeVarGetRelid(rs->relation, NoLock, true),
								   rs->subname, "rename", "renamed");
	}
	else if (IsA(parsetree, CreateTrigStmt) &&
			 hooks_is_audit_trigger(((CreateTrigStmt *) parsetree)->trigname))
	{
		CreateTrigStmt *ct = (CreateTrigStmt *) parsetree;
		Oid			relid = RangeVarGetRelid(ct->relation, NoLock, true);

		/* a replacement, or one posing as pii_guard's */
		if (OidIsValid(relid) && !superuser())
		{
			audit_deny(quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid)),
					   "create audit trigger",
					   "refused: trigger names beginning with pii_guard_audit_ are pii_guard's");
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("trigger names beginning with \"%s\" are reserved for pii_guard",
							AUDIT_TRIGGER_PREFIX),
					 errhint("Use pii_guard.audit_table() to audit writes to a table.")));
		}
		if (ct->replace)
			hooks_audit_trigger_change(relid, ct->trigname, "replace", "replaced");
	}
}

/* Utility hook: forward DDL aimed at masking views; rebuild around it. */
static void
pii_guard_ProcessUtility(COMPAT_UTILITY_PARAMS)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			base = InvalidOid;
	bool		rebuild = false;
	bool		detach = false;
	const char *rename_from = NULL;
	const char *rename_to = NULL;

	if (maintenance_depth == 0 && IsTransactionState() &&
		(IsA(parsetree, AlterTableStmt) || IsA(parsetree, RenameStmt) ||
		 IsA(parsetree, IndexStmt)))
	{
		if (COMPAT_UTILITY_READONLY_TREE)
		{
			pstmt = copyObject(pstmt);
			parsetree = pstmt->utilityStmt;
			COMPAT_UTILITY_TREE_COPIED();
		}
		if (IsA(parsetree, AlterTableStmt) &&
			((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE)
		{
			base = hooks_retarget(((AlterTableStmt *) parsetree)->relation);
			rebuild = OidIsValid(base) &&
				hooks_changes_columns((AlterTableStmt *) parsetree);
			detach = rebuild && hooks_drops_columns((AlterTableStmt *) parsetree);
		}
		else if (IsA(parsetree, RenameStmt) &&
				 ((RenameStmt *) parsetree)->renameType == OBJECT_COLUMN &&
				 ((RenameStmt *) parsetree)->relationType == OBJECT_TABLE)
		{
			RenameStmt *rs = (RenameStmt *) parsetree;

			base = hooks_retarget(rs->relation);
			rebuild = OidIsValid(base);
			rename_from = rs->subname;
			rename_to = rs->newname;
		}
		else if (IsA(parsetree, IndexStmt))
			(void) hooks_retarget(((IndexStmt *) parsetree)->relation);
	}
	if (maintenance_depth == 0 && IsTransactionState() && IsA(parsetree, CopyStmt) &&
		((CopyStmt *) parsetree)->relation != NULL)
	{
		Oid			relid = RangeVarGetRelid(((CopyStmt *) parsetree)->relation, NoLock, true);

		if (OidIsValid(relid))
		{
			views_check_relation(relid, InvalidOid);
			/* Its data lines reach the log in an error's CONTEXT. */
			if (((CopyStmt *) parsetree)->is_from &&
				(views_is_protected_base(relid) || enctype_relation_has_encrypted(relid)))
				hooks_note_plaintext();
		}
	}

	if (maintenance_depth == 0 && IsTransactionState())
		hooks_guard_audit_triggers(parsetree);
	if (rebuild)
		hooks_check_owner(base);
	if (detach)
		hooks_call("SELECT pii_guard._detach_views($1, $2, $3)", base, NULL, NULL);
	audit_release_database(parsetree);

	if (nesting_level == 0)
	{
		statement_command = GetCommandTagName(CreateCommandTag(parsetree));
		statement_is_export =
			(IsA(parsetree, CopyStmt) && !((CopyStmt *) parsetree)->is_from) ||
			IsA(parsetree, CreateTableAsStmt);
		/*
		 * EXECUTE of a prepared INSERT: its executor starts one level down,
		 * where ExecutorStart no longer looks; it is as much an export as
		 * the same INSERT ... SELECT sent unprepared.
		 */
		if (IsA(parsetree, ExecuteStmt))
		{
			PreparedStatement *ps =
				FetchPreparedStatement(((ExecuteStmt *) parsetree)->name, false);

			if (ps && ps->plansource->commandTag == CMDTAG_INSERT)
				statement_is_export = true;
		}
	}
	hooks_run_utility(COMPAT_UTILITY_ARGS);

	if (rebuild)
		hooks_call("SELECT pii_guard._attach_views($1, $2, $3)", base,
				   rename_from, rename_to);
}

/*
 * Transaction end: a maintenance flag never outlives its transaction, and
 * the reads of a failed statement are still reported.  A top-level
 * transaction's end (nesting level 0: not a procedure's COMMIT or
 * ROLLBACK) is a statement boundary; rows that deferred triggers produced
 * at commit are reported before it, while catalog access still works.
 */
static void
hooks_xact_callback(XactEvent event, void *arg pg_attribute_unused())
{
	bool		toplevel = nesting_level == 0;

	if ((event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT) &&
		toplevel)
		limits_statement_done(false);
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		audit_flush_reads(true);
		if (toplevel)
			limits_statement_done(true);
	}
	if ((event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		 event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT) &&
		toplevel)
	{
		limits_statement_boundary();
		statement_is_export = false;
		statement_command = NULL;
	}
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		maintenance_depth = 0;
	}
}



/*
 * Does the stored expression (nodeToString form) in column attnum of the
 * catalog row objectId of catalog classId call reveal()?  The row was just
 * written, so it is read with SnapshotSelf.
 */
static bool
hooks_stored_calls_reveal(Oid classId, Oid indexId, Oid objectId, AttrNumber attnum)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		found = false;

	rel = table_open(classId, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(objectId));
	scan = systable_beginscan(rel, indexId, true, SnapshotSelf, 1, &key);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, attnum, RelationGetDescr(rel), &isnull);

		if (!isnull)
			found |= policy_text_calls_reveal(TextDatumGetCString(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * object_access_hook: reveal() belongs in pii_guard's masking views only.
 * A view, rule, CHECK constraint, policy or trigger condition of a governed
 * role's making that called it could hand it copied envelopes (or pick the
 * row key) under the decision for a column the role sees in clear.  Such
 * definitions are refused when created or replaced, except by superusers
 * and by pii_guard itself.  (reveal() also refuses calls typed in queries:
 * see policy.c.)
 */
static void
pii_guard_object_access(ObjectAccessType access, Oid classId, Oid objectId,
						int subId, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, classId, objectId, subId, arg);
	if ((access != OAT_POST_CREATE && access != OAT_POST_ALTER) ||
		maintenance_depth > 0 || !IsTransactionState() || superuser())
		return;
	if (!policy_reveal_exists())
		return;
	if ((classId == RewriteRelationId &&
		 hooks_stored_calls_reveal(RewriteRelationId, RewriteOidIndexId, objectId,
								   Anum_pg_rewrite_ev_action)) ||
		(classId == ConstraintRelationId &&
		 hooks_stored_calls_reveal(ConstraintRelationId, ConstraintOidIndexId, objectId,
								   Anum_pg_constraint_conbin)) ||
		(classId == PolicyRelationId &&
		 (hooks_stored_calls_reveal(PolicyRelationId, PolicyOidIndexId, objectId,
									Anum_pg_policy_polqual) ||
		  hooks_stored_calls_reveal(PolicyRelationId, PolicyOidIndexId, objectId,
									Anum_pg_policy_polwithcheck))) ||
		(classId == TriggerRelationId &&
		 hooks_stored_calls_reveal(TriggerRelationId, TriggerOidIndexId, objectId,
								   Anum_pg_trigger_tgqual)) ||
		(classId == AttrDefaultRelationId &&
		 hooks_stored_calls_reveal(AttrDefaultRelationId, AttrDefaultOidIndexId, objectId,
								   Anum_pg_attrdef_adbin)) ||
		(classId == ProcedureRelationId &&
		 hooks_stored_calls_reveal(ProcedureRelationId, ProcedureOidIndexId, objectId,
								   Anum_pg_proc_prosqlbody)))
	{
		audit_deny(NULL, "reveal", "a definition calling pii_guard.reveal() was refused");
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pii_guard.reveal() can only be used by masking views"),
				 errdetail("Only pii_guard's own masking views (and superusers) may call it."),
				 errhint("Query the table's masking view instead.")));
	}
}

PG_FUNCTION_INFO_V1(pii_guard_maintenance);

/*
 * SQL function: _maintenance(on boolean) returns void
 *
 * pii_guard's own DDL (protect, unprotect, rebuild) runs with the hooks'
 * forwarding and fail-closed checks off.  Not granted to anyone.
 */
Datum
pii_guard_maintenance(PG_FUNCTION_ARGS)
{
	if (PG_GETARG_BOOL(0))
		maintenance_depth++;
	else if (maintenance_depth > 0)
		maintenance_depth--;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pii_guard_in_maintenance);

/* SQL function: _in_maintenance() returns boolean */
Datum
pii_guard_in_maintenance(FunctionCallInfo fcinfo pg_attribute_unused())
{
	PG_RETURN_BOOL(maintenance_depth > 0);
}

void
hooks_install(void)
{
	prev_ExecutorCheckPerms = ExecutorCheckPerms_hook;
	ExecutorCheckPerms_hook = pii_guard_ExecutorCheckPerms;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = pii_guard_ProcessUtility;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = pii_guard_emit_log;
	prev_object_access = object_access_hook;
	object_access_hook = pii_guard_object_access;
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
	RegisterXactCallback(hooks_xact_callback, NULL);
}
