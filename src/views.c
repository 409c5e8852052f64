/*-------------------------------------------------------------------------
 *
 * views.c
 *		Masking views: the protected-table cache, the fail-closed check on
 *		base tables, and the generic INSTEAD OF trigger that writes through
 *		a masking view.
 *
 * A protected table public.t lives as <companion>.t (companion schema
 * public_pii); public.t is the masking view (owned by pii_guard_owner; not
 * security_barrier, as it has no quals of its own and every protected
 * column goes through reveal()) and <companion>.t__pii_write is a plain auto-updatable
 * view of the base table, also owned by pii_guard_owner, on which governed
 * roles hold INSERT/UPDATE/DELETE mirroring their grants on the masking
 * view and SELECT on the row key only.  The SQL side (pii_guard--*.sql)
 * builds them; this file only reads pii_guard.protected_tables.
 *
 * Writes.  masking_view_write() runs as the invoker, so row-level security
 * on the base table sees the invoker's current_user for writes exactly as
 * for reads (the base table is reached through a view owned by
 * pii_guard_owner, to which RLS applies).  An UPDATE writes only the
 * columns whose new value differs from the old one: a column the statement
 * did not change carries the masked (or NULL) value the view showed, and
 * writing it back would destroy the stored value.  The row returned to
 * RETURNING is read back through the masking view, so it is masked for the
 * invoker like any other read.
 *
 * Fail-closed.  pii_guard_check_base_access() refuses a governed role's
 * direct access to a protected base table, whatever privileges someone
 * granted by mistake.  Access through our views carries checkAsUser =
 * pii_guard_owner and passes.
 *
 * Cache.  protected_tables is read whole (it is small) into ViewsContext,
 * keyed by both the base table's and the masking view's OIDs, and reloaded
 * when the policy generation (policy.c) changes.  Saved SPI plans of the
 * trigger are dropped with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parsetree.h"
#include "tcop/pquery.h"
#include "utils/portal.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pii_guard.h"

typedef struct ProtectedTable
{
	Oid			relid;			/* hash key: base table or masking view */
	Oid			base_relid;
	Oid			view_relid;
	char	   *base_name;		/* qualified, quoted */
	char	   *view_name;		/* qualified, quoted */
	char	   *write_name;		/* qualified, quoted */
	char	   *row_key;		/* column name, unquoted */
} ProtectedTable;

typedef struct PlanEntry
{
	char		key[NAMEDATALEN * 4];	/* view oid, operation, column mask */
	SPIPlanPtr	plan;
} PlanEntry;

static MemoryContext ViewsContext = NULL;
static HTAB *protected_tables = NULL;
static HTAB *saved_plans = NULL;
static uint64 views_generation = 0;
static bool views_loading = false;
static Oid	views_owner_role = InvalidOid;

/* Free the trigger's saved plans; ViewsContext reset callback. */
static void
views_free_plans(void *arg)
{
	HASH_SEQ_STATUS status;
	PlanEntry  *pe;

	if (saved_plans == NULL)
		return;
	hash_seq_init(&status, saved_plans);
	while ((pe = hash_seq_search(&status)) != NULL)
		if (pe->plan)
			SPI_freeplan(pe->plan);
	saved_plans = NULL;
}

/* Load pii_guard.protected_tables into the cache if it is stale. */
static void
views_ensure_cache(void)
{
	HASHCTL		ctl;
	MemoryContextCallback *cb;
	OwnerContext oc;
	Oid			tables_relid;
	uint64		i;

	if (protected_tables != NULL && views_generation == policy_current_generation())
		return;
	if (views_loading)
		return;

	if (ViewsContext == NULL)
		ViewsContext = AllocSetContextCreate(TopMemoryContext,
											 "pii_guard masking views",
											 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(ViewsContext);
	protected_tables = NULL;
	cb = MemoryContextAlloc(ViewsContext, sizeof(MemoryContextCallback));
	cb->func = views_free_plans;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(ViewsContext, cb);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ProtectedTable);
	ctl.hcxt = ViewsContext;
	protected_tables = hash_create("pii_guard protected tables", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN * 4;
	ctl.entrysize = sizeof(PlanEntry);
	ctl.hcxt = ViewsContext;
	saved_plans = hash_create("pii_guard write plans", 16, &ctl,
							  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	views_generation = policy_current_generation();
	views_owner_role = get_role_oid(PII_GUARD_OWNER_ROLE, true);

	tables_relid = pii_guard_relation_oid("protected_tables", true);
	if (!OidIsValid(tables_relid) || !IsTransactionState())
		return;

	views_loading = true;
	PG_TRY();
	{
		pii_guard_enter_owner_context(&oc);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute("SELECT p.base::oid, "
						"  pg_catalog.to_regclass(pg_catalog.format('%I.%I', p.view_schema, p.view_name))::oid, "
						"  pg_catalog.format('%I.%I', n.nspname, c.relname), "
						"  pg_catalog.format('%I.%I', p.view_schema, p.view_name), "
						"  pg_catalog.format('%I.%I', n.nspname, p.write_view_name), "
						"  p.row_key "
						"FROM pii_guard.protected_tables p "
						"JOIN pg_catalog.pg_class c ON c.oid = p.base "
						"JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
						true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read pii_guard.protected_tables");
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTuple	row = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Oid			base = DatumGetObjectId(SPI_getbinval(row, desc, 1, &isnull));
			Datum		v = SPI_getbinval(row, desc, 2, &isnull);
			Oid			view = isnull ? InvalidOid : DatumGetObjectId(v);
			ProtectedTable proto;
			ProtectedTable *e;
			MemoryContext old = MemoryContextSwitchTo(ViewsContext);

			proto.base_relid = base;
			proto.view_relid = view;
			proto.base_name = pstrdup(SPI_getvalue(row, desc, 3));
			proto.view_name = pstrdup(SPI_getvalue(row, desc, 4));
			proto.write_name = pstrdup(SPI_getvalue(row, desc, 5));
			proto.row_key = pstrdup(SPI_getvalue(row, desc, 6));
			MemoryContextSwitchTo(old);

			e = hash_search(protected_tables, &base, HASH_ENTER, NULL);
			proto.relid = base;
			*e = proto;
			if (OidIsValid(view))
			{
				e = hash_search(protected_tables, &view, HASH_ENTER, NULL);
				proto.relid = view;
				*e = proto;
			}
		}
		SPI_finish();
		pii_guard_leave_owner_context(&oc);
	}
	PG_FINALLY();
	{
		views_loading = false;
	}
	PG_END_TRY();
	/* pii_guard is in use in this database: its audit worker should run. */
	audit_ensure_worker();
}

/* The protected-table entry for a base table or masking view, or NULL. */
static ProtectedTable *
views_lookup(Oid relid)
{
	views_ensure_cache();
	if (protected_tables == NULL)
		return NULL;
	return hash_search(protected_tables, &relid, HASH_FIND, NULL);
}

/* Is relid a protected base table? (false while the cache loads) */
bool
views_is_protected_base(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return pt != NULL && pt->base_relid == relid;
}

/* The masking view of a protected base table or masking view, quoted. */
const char *
views_masking_view_name(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return pt ? pt->view_name : NULL;
}

/* The base table behind a masking view, or InvalidOid. */
Oid
views_base_of_view(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return (pt != NULL && pt->view_relid == relid) ? pt->base_relid : InvalidOid;
}

/*
 * Fail-closed check of the permission list of a query or COPY (range table
 * entries, or RTEPermissionInfos from PostgreSQL 16 on): a governed role
 * may not reach a protected base table except through pii_guard's views.
 */
void
views_check_permissions(List *perms)
{
	ListCell   *lc;

	if (views_loading)
		return;
	foreach(lc, perms)
	{
		Oid			relid;
		Oid			check_as;

		if (compat_perm_relation(lfirst(lc), &relid, &check_as))
			views_check_relation(relid, check_as);
	}
}

/*
 * The fail-closed check for one relation reached as check_as (InvalidOid:
 * the current user); refusals are audited.
 */
void
views_check_relation(Oid relid, Oid check_as)
{
	Oid			user;

	if (views_loading || !views_is_protected_base(relid))
		return;
	user = OidIsValid(check_as) ? check_as : GetUserId();
	if (OidIsValid(views_owner_role) && user == views_owner_role)
		return;
	if (policy_is_exempt(user, relid))
		return;
	audit_deny(views_lookup(relid)->base_name, "direct access",
			   "fail-closed: a governed role reached for a protected base table");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for table %s", get_rel_name(relid)),
			 errdetail("Table %s is protected by pii_guard; its data is read and written through its masking view.",
					   views_lookup(relid)->base_name),
			 errhint("Use %s instead.", views_masking_view_name(relid))));
}

/* A saved plan for sql, cached under key. */
static SPIPlanPtr
views_plan(const char *key, const char *sql, int nargs, Oid *argtypes)
{
	PlanEntry  *pe;
	bool		found;
	SPIPlanPtr	plan;

	pe = hash_search(saved_plans, key, HASH_ENTER, &found);
	if (found && pe->plan != NULL)
		return pe->plan;
	pe->plan = NULL;
	plan = SPI_prepare(sql, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	pe->plan = plan;
	return plan;
}

/* Column number (1-based) of the row key in the view, or an ERROR. */
static int
views_rowkey_attnum(TupleDesc desc, ProtectedTable *pt)
{
	int			attnum = SPI_fnumber(desc, pt->row_key);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("masking view %s has no row key column \"%s\"",
						pt->view_name, pt->row_key),
				 errhint("Run SELECT pii_guard.refresh_views().")));
	return attnum;
}

/*
 * Read one row back through the masking view (so it is masked for the
 * invoker); NULL when it is not visible to the invoker.
 */
static HeapTuple
views_read_back(ProtectedTable *pt, TupleDesc desc, Datum rowkey, Oid keytype)
{
	char		key[NAMEDATALEN * 4];
	StringInfoData sql;
	SPIPlanPtr	plan;

	snprintf(key, sizeof(key), "%u:R", pt->view_relid);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
					 pt->view_name, quote_identifier(pt->row_key));
	plan = views_plan(key, sql.data, 1, &keytype);
	if (SPI_execute_plan(plan, &rowkey, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read back a row of %s", pt->view_name);
	if (SPI_processed != 1)
		return NULL;
	return SPI_copytuple(SPI_tuptable->vals[0]);
}

/*
 * Is view column attnum (1-based) written to the base table?  The trigger's
 * arguments name the columns that never are (generated, identity ALWAYS).
 */
static bool
views_writable_column(TriggerData *td, TupleDesc desc, int attnum)
{
	Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
	int			i;

	if (att->attisdropped)
		return false;
	for (i = 0; i < td->tg_trigger->tgnargs; i++)
		if (strcmp(td->tg_trigger->tgargs[i], NameStr(att->attname)) == 0)
			return false;
	return true;
}

/*
 * Does anyone look at the row the trigger returns?  Only RETURNING does
 * (and the row count, which any non-NULL row satisfies).  When the
 * top-level statement is a plain INSERT/UPDATE/DELETE without RETURNING,
 * the read-back through the masking view is skipped; anything else
 * (RETURNING, a writable CTE, a function's nested statement) reads back.
 */
static bool
views_statement_wants_rows(void)
{
	PlannedStmt *ps;

	if (ActivePortal == NULL || list_length(ActivePortal->stmts) != 1)
		return true;
	ps = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (ps->commandType != CMD_INSERT && ps->commandType != CMD_UPDATE &&
		ps->commandType != CMD_DELETE)
		return true;
	return ps->hasReturning || hooks_nesting_level() > 1;
}

PG_FUNCTION_INFO_V1(pii_guard_masking_view_write);

/*
 * SQL function: masking_view_write() returns trigger
 *
 * INSTEAD OF INSERT OR UPDATE OR DELETE FOR EACH ROW on a masking view.
 */
Datum
pii_guard_masking_view_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	view;
	TupleDesc	desc;
	ProtectedTable *pt;
	int			natts;
	int			keyatt;
	Oid			keytype;
	HeapTuple	result = NULL;
	StringInfoData sql;
	StringInfoData cols;
	char		key[NAMEDATALEN * 4];
	Oid		   *argtypes;
	Datum	   *values;
	char	   *nulls;
	int			nargs = 0;
	int			i;
	bool		isnull;
	bool		wants_rows;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_INSTEAD(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "masking_view_write must be an INSTEAD OF row trigger");

	view = td->tg_relation;
	desc = RelationGetDescr(view);
	natts = desc->natts;
	pt = views_lookup(RelationGetRelid(view));
	if (pt == NULL || pt->view_relid != RelationGetRelid(view))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not a pii_guard masking view",
						RelationGetRelationName(view))));
	keyatt = views_rowkey_attnum(desc, pt);
	keytype = TupleDescAttr(desc, keyatt - 1)->atttypid;
	hooks_note_plaintext();
	wants_rows = views_statement_wants_rows();

	argtypes = palloc(sizeof(Oid) * (natts + 1));
	values = palloc(sizeof(Datum) * (natts + 1));
	nulls = palloc(natts + 2);
	initStringInfo(&sql);
	initStringInfo(&cols);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		HeapTuple	newtup = td->tg_trigtuple;
		Datum		newkey;

		appendStringInfo(&sql, "INSERT INTO %s (", pt->write_name);
		for (i = 1; i <= natts; i++)
		{
			if (!views_writable_column(td, desc, i))
				continue;
			values[nargs] = SPI_getbinval(newtup, desc, i, &isnull);
			nulls[nargs] = isnull ? 'n' : ' ';
			argtypes[nargs] = TupleDescAttr(desc, i - 1)->atttypid;
			appendStringInfo(&sql, "%s%s", nargs ? ", " : "",
							 quote_identifier(NameStr(TupleDescAttr(desc, i - 1)->attname)));
			appendStringInfo(&cols, "%s$%d", nargs ? ", " : "", nargs + 1);
			nargs++;
		}
		nulls[nargs] = '\0';
		appendStringInfo(&sql, ") VALUES (%s) RETURNING %s", cols.data,
						 quote_identifier(pt->row_key));
		snprintf(key, sizeof(key), "%u:I", pt->view_relid);
		if (SPI_execute_plan(views_plan(key, sql.data, nargs, argtypes),
							 values, nulls, false, 0) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "insert through masking view %s failed", pt->view_name);
		newkey = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		result = wants_rows ? views_read_back(pt, desc, newkey, keytype) : NULL;
		if (result == NULL)
			result = newtup;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;
		StringInfoData cached;	/* the plan's cache key: the changed attnums */
		int			nchanged = 0;
		Datum		oldkey = SPI_getbinval(oldtup, desc, keyatt, &isnull);
		Datum		newkey;
		SPIPlanPtr	plan;
		bool		keep;

		appendStringInfo(&sql, "UPDATE %s SET ", pt->write_name);
		initStringInfo(&cached);
		appendStringInfo(&cached, "%u:U", pt->view_relid);
		for (i = 1; i <= natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i - 1);
			bool		oldnull;
			bool		newnull;
			Datum		oldval;
			Datum		newval;

			if (!views_writable_column(td, desc, i))
				continue;
			oldval = SPI_getbinval(oldtup, desc, i, &oldnull);
			newval = SPI_getbinval(newtup, desc, i, &newnull);
			/* Unchanged (possibly masked or hidden) values are never written. */
			if (oldnull == newnull &&
				(oldnull || datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
				continue;
			values[nargs] = newval;
			nulls[nargs] = newnull ? 'n' : ' ';
			argtypes[nargs] = att->atttypid;
			appendStringInfo(&sql, "%s%s = $%d", nchanged ? ", " : "",
							 quote_identifier(NameStr(att->attname)), nargs + 1);
			appendStringInfo(&cached, ":%d", i);
			nargs++;
			nchanged++;
		}
		if (nchanged == 0)
		{
			SPI_finish();
			return PointerGetDatum(newtup);
		}
		values[nargs] = oldkey;
		nulls[nargs] = ' ';
		argtypes[nargs] = keytype;
		nargs++;
		nulls[nargs] = '\0';
		appendStringInfo(&sql, " WHERE %s OPERATOR(pg_catalog.=) $%d RETURNING %s",
						 quote_identifier(pt->row_key), nargs,
						 quote_identifier(pt->row_key));
		/*
		 * Plans are cached under the exact list of changed columns; a list
		 * too long for a cache key gets a one-off plan.
		 */
		keep = cached.len < (int) sizeof(key);
		if (keep)
			plan = views_plan(cached.data, sql.data, nargs, argtypes);
		else
		{
			plan = SPI_prepare(sql.data, nargs, argtypes);
			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed for \"%s\"", sql.data);
		}
		if (SPI_getargcount(plan) != nargs)
			elog(ERROR, "cached plan for %s does not match its statement", pt->view_name);
		if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "update through masking view %s failed", pt->view_name);
		if (!keep)
			SPI_freeplan(plan);
		if (SPI_processed == 0)
			result = NULL;
		else
		{
			newkey = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			result = wants_rows ? views_read_back(pt, desc, newkey, keytype) : NULL;
			if (result == NULL)
				result = newtup;
		}
	}
	else
	{
		HeapTuple	oldtup = td->tg_trigtuple;

		values[0] = SPI_getbinval(oldtup, desc, keyatt, &isnull);
		argtypes[0] = keytype;
		appendStringInfo(&sql, "DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
						 pt->write_name, quote_identifier(pt->row_key));
		snprintf(key, sizeof(key), "%u:D", pt->view_relid);
		if (SPI_execute_plan(views_plan(key, sql.data, 1, argtypes),
							 values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "delete through masking view %s failed", pt->view_name);
		result = SPI_processed > 0 ? oldtup : NULL;
	}

	SPI_finish();
	return PointerGetDatum(result);
}
