/*-------------------------------------------------------------------------
 *
 * ddl.c
 *		Utility statements that concern protected tables: DDL aimed at a
 *		masking view's name, column changes, and the write-audit triggers.
 *
 * Forwarding.  Migration tools aim DDL at the name applications use -- the
 * masking view's: ALTER TABLE, ALTER TABLE ... RENAME COLUMN and CREATE
 * INDEX on it are pointed at the base table instead, and so is a foreign
 * key that references it (CREATE TABLE, ALTER TABLE ... ADD).
 *
 * New columns.  With pii_guard.protect_new_columns, a column added to a
 * protected table is classified (_protect_new_column: by its name and
 * content, else hidden until an administrator classifies it), in the same
 * statement, so that it is never shown in clear unclassified.
 *
 * Rebuilding.  DDL that changes a protected table's columns is followed by
 * replacing the masking views in place (so that views built on them
 * survive), preceded by dropping them only for DROP COLUMN and ALTER
 * COLUMN TYPE (a view pins the columns it reads), in the same transaction,
 * as the extension owner and in maintenance (statement.c).
 *
 * Write-audit triggers.  audit_table() puts pii_guard_audit_* triggers on
 * a table; its owner could otherwise disable, drop, rename or replace them
 * and write unaudited.  Outside pii_guard's own maintenance that is
 * refused to anyone but a superuser, and a superuser's doing it is an
 * admin event in the log.
 *
 * COPY names its table itself, with no executor start for COPY FROM: the
 * fail-closed check is made here, and a COPY FROM into a table with
 * encrypted columns marks the statement as carrying plaintext.  COPY FROM a
 * masking view with a column list tells the view's write trigger which
 * columns it writes; COPY TO a masking view (which PostgreSQL refuses for
 * a view) copies the view's query instead.
 *
 * Nothing here runs during maintenance, nor outside a transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "pii_guard.h"

/*
 * If rv names a masking view, point it at the base table instead; return
 * the protected base table rv now names, or InvalidOid.
 */
static Oid
ddl_retarget(RangeVar *rv)
{
	Oid			relid;
	Oid			base;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid))
		return InvalidOid;
	base = views_base_of_view(relid);
	/*
	 * (Citus passes DDL on to the workers as it was written: aimed at the
	 * view's name, which names nothing there.)
	 */
	if (OidIsValid(base) && views_is_citus(base))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("DDL aimed at the masking view %s of a distributed table is not forwarded to the table",
						views_masking_view_name(base)),
				 errhint("Name the table itself: %s.",
						 quote_qualified_identifier(get_namespace_name(get_rel_namespace(base)),
													get_rel_name(base)))));
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
ddl_changes_columns(AlterTableStmt *stmt)
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
ddl_drops_columns(AlterTableStmt *stmt)
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
 * A foreign key that names a masking view references its base table
 * instead (PostgreSQL refuses a view): migrations that add a table
 * referencing customers keep working once customers is protected.
 */
static void
ddl_retarget_foreign_key(Node *node)
{
	if (node != NULL && IsA(node, Constraint) &&
		((Constraint *) node)->contype == CONSTR_FOREIGN &&
		((Constraint *) node)->pktable != NULL)
		(void) ddl_retarget(((Constraint *) node)->pktable);
}

/* The foreign keys of a CREATE TABLE: of its columns and of the table. */
static void
ddl_retarget_create(CreateStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->tableElts)
	{
		Node	   *elt = (Node *) lfirst(lc);

		if (IsA(elt, ColumnDef))
		{
			ListCell   *cc;

			foreach(cc, ((ColumnDef *) elt)->constraints)
				ddl_retarget_foreign_key((Node *) lfirst(cc));
		}
		else
			ddl_retarget_foreign_key(elt);
	}
	foreach(lc, stmt->constraints)
		ddl_retarget_foreign_key((Node *) lfirst(lc));
}

/* The foreign keys an ALTER TABLE adds. */
static void
ddl_retarget_alter(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_AddConstraint)
			ddl_retarget_foreign_key(cmd->def);
		else if (cmd->subtype == AT_AddColumn && cmd->def != NULL && IsA(cmd->def, ColumnDef))
		{
			ListCell   *cc;

			foreach(cc, ((ColumnDef *) cmd->def)->constraints)
				ddl_retarget_foreign_key((Node *) lfirst(cc));
		}
	}
}

/*
 * The columns an ALTER TABLE adds to base (not those ADD COLUMN IF NOT
 * EXISTS names and base already has), for pii_guard.protect_new_columns.
 */
static List *
ddl_new_columns(Oid base, AlterTableStmt *stmt)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = (AlterTableCmd *) lfirst(lc);

		if (cmd->subtype == AT_AddColumn && IsA(cmd->def, ColumnDef))
		{
			const char *name = ((ColumnDef *) cmd->def)->colname;

			if (get_attnum(base, name) == InvalidAttrNumber)
				names = lappend(names, pstrdup(name));
		}
	}
	return names;
}

/*
 * The ownership check PostgreSQL makes for ALTER TABLE, made before
 * pii_guard rebuilds the views as the extension owner: a non-owner's
 * statement must fail at once, with the same error, and not after the view
 * maintenance took locks that readers would queue behind.
 */
static void
ddl_check_owner(Oid base)
{
	if (!compat_class_ownercheck(base, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(base)),
					   get_rel_name(base));
}

/* Call a pii_guard maintenance function on base, as the extension owner. */
static void
ddl_call(const char *sql, Oid base, const char *from, const char *to)
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

	statement_maintenance(true);
	owner_spi_begin(&oc);
	if (SPI_execute_with_args(sql, 3, argtypes, values, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pii_guard view maintenance failed: %s", sql);
	owner_spi_end(&oc);
	statement_maintenance(false);
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
ddl_is_audit_trigger(const char *name)
{
	return name != NULL &&
		strncmp(name, AUDIT_TRIGGER_PREFIX, strlen(AUDIT_TRIGGER_PREFIX)) == 0;
}

/* Does relid carry a write-audit trigger? */
static bool
ddl_has_audit_trigger(Oid relid)
{
	Relation	rel;
	bool		found = false;

	rel = table_open(relid, AccessShareLock);
	if (rel->trigdesc)
	{
		for (int i = 0; i < rel->trigdesc->numtriggers && !found; i++)
			found = ddl_is_audit_trigger(rel->trigdesc->triggers[i].tgname);
	}
	table_close(rel, AccessShareLock);
	return found;
}

static void
ddl_audit_trigger_change(Oid relid, const char *trigger, const char *action,
						   const char *done)
{
	AuditEvent	ev;
	char	   *relname;

	if (!OidIsValid(relid))
		return;
	if (trigger ? !ddl_is_audit_trigger(trigger) : !ddl_has_audit_trigger(relid))
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
ddl_guard_audit_triggers(Node *parsetree)
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
					ddl_audit_trigger_change(relid, cmd->name, "disable", "disabled");
					break;
				case AT_DisableTrigAll:
				case AT_DisableTrigUser:
					ddl_audit_trigger_change(relid, NULL, "disable", "disabled");
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
			ddl_audit_trigger_change(RangeVarGetRelid(makeRangeVarFromNameList(relname),
														NoLock, true),
									   strVal(llast(names)), "drop", "dropped");
		}
	}
	else if (IsA(parsetree, RenameStmt) &&
			 ((RenameStmt *) parsetree)->renameType == OBJECT_TRIGGER)
	{
		RenameStmt *rs = (RenameStmt *) parsetree;

		ddl_audit_trigger_change(RangeVarGetRelid(rs->relation, NoLock, true),
								   rs->subname, "rename", "renamed");
	}
	else if (IsA(parsetree, CreateTrigStmt) &&
			 ddl_is_audit_trigger(((CreateTrigStmt *) parsetree)->trigname))
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
			ddl_audit_trigger_change(relid, ct->trigname, "replace", "replaced");
	}
}

/*
 * COPY masking_view [(columns)] TO: PostgreSQL copies only from tables, so
 * it becomes COPY (SELECT columns FROM masking_view) TO -- what the role may
 * see of the rows, as any query on the view.
 */
static void
ddl_copy_view_to(CopyStmt *cs, Oid relid)
{
	StringInfoData sql;
	ListCell   *lc;
	List	   *raw;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	if (cs->attlist == NIL)
		appendStringInfoChar(&sql, '*');
	foreach(lc, cs->attlist)
		appendStringInfo(&sql, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(strVal(lfirst(lc))));
	appendStringInfo(&sql, " FROM %s",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	raw = raw_parser(sql.data, RAW_PARSE_DEFAULT);
	cs->query = linitial_node(RawStmt, raw)->stmt;
	cs->relation = NULL;
	cs->attlist = NIL;
}

/*
 * Before a utility statement runs: forward it, check it, and say what must
 * happen after it (ddl_after).  *pstmt is replaced by a copy when the
 * statement is changed and the tree given is read-only.
 */
void
ddl_before(PlannedStmt **pstmt, bool read_only_tree, DdlAfter *after)
{
	Node	   *parsetree = (*pstmt)->utilityStmt;
	bool		detach = false;

	memset(after, 0, sizeof(*after));
	if (statement_in_maintenance() || !IsTransactionState())
		return;

	/*
	 * (On a Citus worker, DDL on a protected table is the coordinator's,
	 * passed on by Citus to the table's shell and shards: the masking views
	 * and the policy are the coordinator's to change.)
	 */
	if ((IsA(parsetree, AlterTableStmt) || IsA(parsetree, RenameStmt) ||
		 IsA(parsetree, IndexStmt) || IsA(parsetree, CreateStmt)) &&
		!pii_guard_on_citus_worker())
	{
		if (read_only_tree)
		{
			*pstmt = copyObject(*pstmt);
			parsetree = (*pstmt)->utilityStmt;
			after->tree_copied = true;
		}
		if (IsA(parsetree, AlterTableStmt) &&
			((AlterTableStmt *) parsetree)->objtype == OBJECT_TABLE)
		{
			ddl_retarget_alter((AlterTableStmt *) parsetree);
			after->base = ddl_retarget(((AlterTableStmt *) parsetree)->relation);
			after->rebuild = OidIsValid(after->base) &&
				ddl_changes_columns((AlterTableStmt *) parsetree);
			detach = after->rebuild && ddl_drops_columns((AlterTableStmt *) parsetree);
			if (after->rebuild && pii_guard_protect_new_columns != PROTECT_NEW_OFF)
				after->new_columns = ddl_new_columns(after->base, (AlterTableStmt *) parsetree);
		}
		else if (IsA(parsetree, RenameStmt) &&
				 ((RenameStmt *) parsetree)->renameType == OBJECT_COLUMN &&
				 ((RenameStmt *) parsetree)->relationType == OBJECT_TABLE)
		{
			RenameStmt *rs = (RenameStmt *) parsetree;

			after->base = ddl_retarget(rs->relation);
			after->rebuild = OidIsValid(after->base);
			after->rename_from = rs->subname;
			after->rename_to = rs->newname;
		}
		else if (IsA(parsetree, IndexStmt))
			(void) ddl_retarget(((IndexStmt *) parsetree)->relation);
		else if (IsA(parsetree, CreateStmt))
			ddl_retarget_create((CreateStmt *) parsetree);
	}
	if (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->relation != NULL)
	{
		CopyStmt   *cs = (CopyStmt *) parsetree;
		Oid			relid = RangeVarGetRelid(cs->relation, NoLock, true);

		if (OidIsValid(relid))
		{
			views_check_relation(relid, InvalidOid, true);
			/* Its data lines reach the log in an error's CONTEXT. */
			if (cs->is_from &&
				(views_is_protected_base(relid) || enctype_relation_has_encrypted(relid) ||
				 OidIsValid(views_base_of_view(relid))))
				statement_note_plaintext();
			if (OidIsValid(views_base_of_view(relid)))
			{
				if (cs->is_from)
					views_refuse_citus_write(relid, "COPY FROM", NULL);
				if (cs->is_from && cs->attlist != NIL)
					views_copy_target(relid, cs->attlist, CurrentMemoryContext);
				else if (!cs->is_from)
				{
					if (read_only_tree)
					{
						*pstmt = copyObject(*pstmt);
						parsetree = (*pstmt)->utilityStmt;
						after->tree_copied = true;
					}
					ddl_copy_view_to((CopyStmt *) parsetree, relid);
				}
			}
		}
	}

	ddl_guard_audit_triggers(parsetree);
	if (after->rebuild)
		ddl_check_owner(after->base);

	/*
	 * A distributed table's DDL, then its masking views' policy rows (a
	 * Citus reference table, with foreign keys) in the same transaction:
	 * Citus allows that only over one connection per node, from the DDL on.
	 */
	if (after->rebuild && views_is_citus(after->base))
		(void) set_config_option("citus.multi_shard_modify_mode", "sequential",
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	if (detach)
		ddl_call("SELECT pii_guard._detach_views($1, $2, $3)", after->base, NULL, NULL);
}

/*
 * After the utility statement: rebuild the views if ddl_before said so, and
 * protect the columns it added (pii_guard.protect_new_columns).
 */
void
ddl_after(const DdlAfter *after)
{
	ListCell   *lc;

	if (after->rebuild)
		ddl_call("SELECT pii_guard._attach_views($1, $2, $3)", after->base,
				 after->rename_from, after->rename_to);
	foreach(lc, after->new_columns)
		ddl_call("SELECT pii_guard._protect_new_column($1, $2, $3)", after->base,
				 (const char *) lfirst(lc),
				 pii_guard_protect_new_columns == PROTECT_NEW_HIDE ? "hide" : "classify");
}
