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
 * ExecutorRun/Finish/End and ProcessUtility keep a nesting level, restored
 * in PG_FINALLY, so that the reads of a top-level statement (including
 * everything its functions ran) become audit events once, when it ends;
 * a failed statement's reads are reported by the abort callback.
 *
 * emit_log_hook keeps the text (and error details) of a statement that
 * carried plaintext of protected values out of the server log.
 *
 * ProcessUtility_hook: DDL that migration tools aim at a masking view's
 * name -- ALTER TABLE, ALTER TABLE ... RENAME COLUMN, CREATE INDEX -- is
 * forwarded to the base table; and DDL that changes a protected table's
 * columns is bracketed by dropping the masking views first (a view pins the
 * columns it reads, so DROP COLUMN or ALTER COLUMN TYPE would fail) and
 * rebuilding them afterwards, with their grants, in the same transaction.
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
#include "catalog/objectaccess.h"
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
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "tcop/cmdtag.h"
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
static object_access_hook_type prev_object_access = NULL;
static int	maintenance_depth = 0;
static int	nesting_level = 0;	/* executor and utility nesting */
static bool statement_has_plaintext = false;
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

/* Forget what we knew of the finished top-level statement. */
static void
hooks_statement_done(void)
{
	audit_flush_reads(false);
	statement_has_plaintext = false;
	statement_is_export = false;
	statement_command = NULL;
}

/*
 * The current statement's text may hold plaintext of a protected value (it
 * encrypted a literal or wrote through a masking view): keep it, and the
 * error details that may quote its values, out of the server log.
 */
void
hooks_note_plaintext(void)
{
	statement_has_plaintext = true;
}

/*
 * emit_log_hook: for such a statement, no STATEMENT line and no DETAIL in
 * the server log (the client still gets the full error).
 */
static void
pii_guard_emit_log(ErrorData *edata)
{
	if (statement_has_plaintext)
	{
		edata->hide_stmt = true;
		if (edata->detail != NULL || edata->detail_log != NULL)
			edata->detail_log = pstrdup("(withheld from the server log by pii_guard: it may quote personal data)");
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
 * well.
 */
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
}

/* ExecutorRun: count nesting, so that nested statements' ends don't flush. */
static void
pii_guard_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					  uint64 count, bool execute_once)
{
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
	}
	PG_END_TRY();
}

static void
pii_guard_ExecutorFinish(QueryDesc *queryDesc)
{
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
	}
	PG_END_TRY();
}

/* ExecutorEnd: a top-level statement is over; its reads become events. */
static void
pii_guard_ExecutorEnd(QueryDesc *queryDesc)
{
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
	if (nesting_level == 0)
	{
		audit_flush_reads(false);
		statement_has_plaintext = false;
	}
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

/* Run the utility statement one nesting level down. */
static void
hooks_run_utility(COMPAT_UTILITY_PARAMS)
{
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
	}
	PG_END_TRY();
	if (nesting_level == 0)
		hooks_statement_done();
}

/* Utility hook: forward DDL aimed at masking views; rebuild around it. */
static void
pii_guard_ProcessUtility(COMPAT_UTILITY_PARAMS)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			base = InvalidOid;
	bool		rebuild = false;
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
			views_check_relation(relid, InvalidOid);
	}

	if (rebuild)
		hooks_call("SELECT pii_guard._detach_views($1, $2, $3)", base, NULL, NULL);
	audit_release_database(parsetree);

	if (nesting_level == 0)
	{
		statement_command = GetCommandTagName(CreateCommandTag(parsetree));
		statement_is_export =
			(IsA(parsetree, CopyStmt) && !((CopyStmt *) parsetree)->is_from) ||
			IsA(parsetree, CreateTableAsStmt);
		if (IsA(parsetree, DeclareCursorStmt))
			limits_note_user_cursor(((DeclareCursorStmt *) parsetree)->portalname);
	}
	hooks_run_utility(COMPAT_UTILITY_ARGS);

	if (rebuild)
		hooks_call("SELECT pii_guard._attach_views($1, $2, $3)", base,
				   rename_from, rename_to);
}

/*
 * Transaction end: a maintenance flag never outlives its transaction, and
 * the reads of a failed statement are still reported.
 */
static void
hooks_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		nesting_level = 0;
		audit_flush_reads(true);
	}
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		limits_end_transaction();
		statement_is_export = false;
		statement_command = NULL;
	}
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		maintenance_depth = 0;
		statement_has_plaintext = false;
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
pii_guard_in_maintenance(PG_FUNCTION_ARGS)
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
	RegisterXactCallback(hooks_xact_callback, NULL);
}
