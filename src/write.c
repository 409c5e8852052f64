/*-------------------------------------------------------------------------
 *
 * write.c
 *		The fast write path: INSERT, UPDATE and DELETE on a masking view,
 *		rewritten when they are analysed into the same statement on the
 *		base table.
 *
 * A masking view is not updatable by PostgreSQL itself (its protected
 * columns are reveal() calls), so its INSTEAD OF trigger (views.c) writes
 * through it: one trigger call and one statement on the write view per
 * row, and one audit event per row (the base table's statement trigger
 * fires for each).  That is correct but slow.  This file rewrites the
 * statements it can, as PostgreSQL rewrites a write on an auto-updatable
 * view: the target becomes the base table, reached as the view's owner
 * (pii_guard_owner, so row-level security applies as it does to reads),
 * and every reference to a view column becomes the view's expression for
 * it over the base table's row -- its reveal() call for a protected
 * column.  The view's entry stays in the range table, so the invoker's
 * privileges on the view are checked as for any write on a view.  What
 * each write stores:
 *
 *	INSERT		a value for an encrypted column is sealed by _write_seal();
 *				defaults are the table's (the view's mirror them);
 *	UPDATE		each SET column stores _write_set(stored, table, column, row
 *				key, new value), which keeps the stored value when the new
 *				value is what the role was shown for the row (masks are
 *				never written back; a column sent back unchanged needs no
 *				UPDATE privilege, so its column is taken off the view's
 *				permission check and checked there when it does change),
 *				refuses a governed role's change of the row key, and seals
 *				a new value for an encrypted column;
 *	DELETE		nothing more;
 *	RETURNING	the view's expressions: masked for the invoker, like a read.
 *
 * Those calls are marked (PII_SITE_MARK, which no parser produces): called
 * anywhere else they refuse (reveal.c).  The statement runs as one
 * statement on the base table: one write event, the table's own triggers,
 * constraints and indexes.  A unique or exclusion violation is still a
 * probe (views.c): the ModifyTable node of a rewritten statement is
 * wrapped to note it.
 *
 * What is not rewritten goes through the trigger, unchanged: statements a
 * rule produces (they are never analysed), COPY FROM, a view with other
 * triggers or rules, a VALUES list giving DEFAULT for an encrypted column,
 * WHERE CURRENT OF, and INSERT ... ON CONFLICT (refused, views.c).
 *
 * Only on PostgreSQL 14 and 15 (compat.h: COMPAT_FAST_WRITES); elsewhere
 * every write goes through the trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/analyze.h"
#include "parser/parse_relation.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteHandler.h"
#include "rewrite/rewriteManip.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "pii_guard.h"

PG_FUNCTION_INFO_V1(pii_guard_write_conflict);

/* The row a rewritten ON CONFLICT DO UPDATE works on was counted a probe. */
static bool write_row_counted = false;

/*
 * SQL function: _write_conflict(base regclass, pass boolean) returns boolean
 *
 * An INSERT ... ON CONFLICT DO UPDATE through base's masking view met an
 * existing row: whether a row with that key (or value) exists is told, so
 * for a governed role it is a probe, like a unique violation.  Returns
 * pass, the DO UPDATE's own WHERE (true without one).  Only where the
 * rewrite put it.
 */
Datum
pii_guard_write_conflict(PG_FUNCTION_ARGS)
{
	FuncExpr   *fe = (FuncExpr *) fcinfo->flinfo->fn_expr;
	Oid			base;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("pii_guard._write_conflict() can only be used by masking views")));
	base = PG_GETARG_OID(0);

	if (fcinfo->flinfo->fn_extra == NULL)
	{
		if (!(fe != NULL && IsA(fe, FuncExpr) && PII_SITE_MARKED(fe->location)) && !superuser())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("pii_guard._write_conflict() can only be used by masking views")));
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(bool));
		*(bool *) fcinfo->flinfo->fn_extra = !policy_is_exempt(GetUserId(), base);
	}
	if (*(bool *) fcinfo->flinfo->fn_extra && !write_row_counted)
		views_note_probes_of(base, 1);
	write_row_counted = true;
	if (PG_NARGS() < 2)
		PG_RETURN_BOOL(true);	/* (the SQL objects of an earlier 0.3) */
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	PG_RETURN_BOOL(PG_GETARG_BOOL(1));
}

/*
 * An INSERT ... ON CONFLICT on a masking view that is not rewritten: its
 * trigger cannot honour it (PostgreSQL would only say that the view has no
 * index matching the conflict target).
 */
static void
write_refuse_conflict_view(Query *q)
{
	RangeTblEntry *rte = rt_fetch(q->resultRelation, q->rtable);

	if (rte->rtekind == RTE_RELATION && OidIsValid(views_base_of_view(rte->relid)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("INSERT ... ON CONFLICT is not supported on masking view %s",
						get_rel_name(rte->relid)),
				 errdetail("Only a write rewritten onto the base table can honour it, and this one was not (a view with triggers or rules of its own, or a server before PostgreSQL 14 or from 16 on)."),
				 errhint("Insert and update in two statements.")));
}

#ifdef COMPAT_FAST_WRITES

/* One column of the masking view, as the view computes it. */
typedef struct ViewColumn
{
	AttrNumber	base_att;		/* the base table's column */
	Oid			base_type;
	Oid			base_collation;
	char		kind;			/* ENV_KIND_* if encrypted, else 0 */
	const char *name;
	Oid			view_type;
} ViewColumn;

/* The internal functions, looked up while the policy generation holds. */
typedef struct WriteFunctions
{
	uint64		generation;
	Oid			seal_text;		/* _write_seal(text, regclass, name) */
	Oid			seal_bytea;		/* _write_seal(bytea, regclass, name) */
	Oid			set;			/* _write_set(anyelement, regclass, name, "any", "any") */
	Oid			conflict;		/* _write_conflict(regclass) */
	/* Citus (see "Citus" below): */
	Oid			set_shard;		/* _write_set_shard(..., may integer) */
	Oid			may;			/* _write_may(regclass, name) */
	int			nreveal;
	Oid			reveal[4];		/* the reveal() functions ... */
	Oid			reveal_shard[4];	/* ... and their _reveal_shard() */
} WriteFunctions;

static WriteFunctions write_fns;

/*
 * The function name(nargs arguments) of pii_guard's schema nsp, whose first
 * argument is of type arg0 (any, if InvalidOid); InvalidOid if none.
 */
static Oid
write_proc(Oid nsp, const char *name, int nargs, Oid arg0)
{
	CatCList   *list = SearchSysCacheList1(PROCNAMEARGSNSP, CStringGetDatum(name));
	Oid			oid = InvalidOid;

	for (int i = 0; i < list->n_members; i++)
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(&list->members[i]->tuple);

		if (proc->pronamespace == nsp && proc->pronargs == nargs &&
			(!OidIsValid(arg0) || proc->proargtypes.values[0] == arg0))
			oid = proc->oid;
	}
	ReleaseSysCacheList(list);
	return oid;
}

/*
 * The functions of a write on a Citus table's masking view: _write_set_shard,
 * _write_may, and _reveal_shard for each reveal() (by the type of its
 * value).  Left InvalidOid (such writes refused) if any is missing.
 */
static void
write_citus_functions(Oid nsp)
{
	CatCList   *list;

	write_fns.set_shard = write_proc(nsp, "_write_set_shard", 6, InvalidOid);
	write_fns.may = write_proc(nsp, "_write_may", 2, InvalidOid);
	list = SearchSysCacheList1(PROCNAMEARGSNSP, CStringGetDatum("reveal"));
	for (int i = 0; i < list->n_members && write_fns.nreveal < (int) lengthof(write_fns.reveal); i++)
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(&list->members[i]->tuple);
		Oid			twin;

		if (proc->pronamespace != nsp || proc->pronargs != 4)
			continue;
		twin = write_proc(nsp, "_reveal_shard", 4, proc->proargtypes.values[0]);
		if (!OidIsValid(twin))
		{
			write_fns.set_shard = InvalidOid;
			break;
		}
		write_fns.reveal[write_fns.nreveal] = proc->oid;
		write_fns.reveal_shard[write_fns.nreveal++] = twin;
	}
	ReleaseSysCacheList(list);
	if (!OidIsValid(write_fns.may) || write_fns.nreveal == 0)
		write_fns.set_shard = InvalidOid;
}

/* Look up the internal functions (InvalidOid: not installed, old schema). */
static bool
write_functions(void)
{
	uint64		generation = policy_current_generation();
	Oid			nsp;

	if (write_fns.generation == generation)
		return OidIsValid(write_fns.set);
	memset(&write_fns, 0, sizeof(write_fns));
	write_fns.generation = generation;
	nsp = pii_guard_schema_oid(true);
	if (!OidIsValid(nsp))
		return false;
	write_fns.seal_text = write_proc(nsp, "_write_seal", 3, TEXTOID);
	write_fns.seal_bytea = write_proc(nsp, "_write_seal", 3, BYTEAOID);
	write_fns.set = write_proc(nsp, "_write_set", 5, InvalidOid);
	write_fns.conflict = write_proc(nsp, "_write_conflict", 2, InvalidOid);
	if (!OidIsValid(write_fns.seal_text) || !OidIsValid(write_fns.seal_bytea) ||
		!OidIsValid(write_fns.conflict))
		write_fns.set = InvalidOid;
	write_citus_functions(nsp);
	return OidIsValid(write_fns.set);
}

/*
 * For cluster.c, admitting a write on a shard: is funcid _write_set_shard()
 * (*is_set) or _write_seal()?
 */
bool
write_is_shard_write_function(Oid funcid, bool *is_set)
{
	if (!write_functions() || !OidIsValid(funcid))
		return false;
	*is_set = funcid == write_fns.set_shard;
	return *is_set || funcid == write_fns.seal_text || funcid == write_fns.seal_bytea;
}

/* Is funcid one of the reveal() functions? */
static bool
write_is_reveal(Oid funcid)
{
	const Oid  *oids;
	int			n = reveal_functions(&oids);

	for (int i = 0; i < n; i++)
		if (oids[i] == funcid)
			return true;
	return false;
}

/*
 * The view's condition: none, or conditions on constants only (a rebuilt
 * masking view names the mask functions it uses that way, so that they
 * cannot be dropped from under it).  The rewritten UPDATE or DELETE keeps
 * them.
 */
static bool
write_constant_quals(Node *quals)
{
	return quals == NULL ||
		(!contain_vars_of_level(quals, 0) &&
		 !checkExprHasSubLink(quals) && !contain_volatile_functions(quals));
}

/*
 * The view's own query, checked to be a masking view's shape: one base
 * table, no condition, every column a column of it or reveal() of one.
 * Fills cols[view attno - 1]; returns the base table's range table index
 * in the view's query, or 0 if the view is not of that shape.
 */
static int
write_view_shape(Relation view, Query *vq, Oid base, ViewColumn *cols, int ncols)
{
	RangeTblRef *rtr;
	RangeTblEntry *brte;
	ListCell   *lc;
	Oid			enc_text = enctype_encrypted_text_oid();
	Oid			enc_bytea = enctype_encrypted_bytea_oid();

	if (vq->commandType != CMD_SELECT || vq->jointree == NULL ||
		!write_constant_quals(vq->jointree->quals) || list_length(vq->jointree->fromlist) != 1 ||
		!IsA(linitial(vq->jointree->fromlist), RangeTblRef) ||
		vq->hasSubLinks || vq->hasAggs || vq->hasWindowFuncs || vq->hasTargetSRFs ||
		vq->groupClause || vq->distinctClause || vq->sortClause ||
		vq->limitCount || vq->limitOffset || vq->setOperations || vq->cteList)
		return 0;
	rtr = linitial_node(RangeTblRef, vq->jointree->fromlist);
	brte = rt_fetch(rtr->rtindex, vq->rtable);
	if (brte->rtekind != RTE_RELATION || brte->relid != base)
		return 0;
	if (list_length(vq->targetList) != ncols)
		return 0;
	foreach(lc, vq->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Expr	   *e = tle->expr;
		Var		   *v;
		ViewColumn *c;

		if (tle->resjunk || tle->resno < 1 || tle->resno > ncols)
			return 0;
		c = &cols[tle->resno - 1];
		/* (the view's COLLATE and typmod casts of reveal()'s result) */
		for (;;)
		{
			if (IsA(e, CollateExpr))
				e = ((CollateExpr *) e)->arg;
			else if (IsA(e, RelabelType))
				e = ((RelabelType *) e)->arg;
			else if (exprIsLengthCoercion((Node *) e, NULL))
				e = linitial(((FuncExpr *) e)->args);
			else
				break;
		}
		if (IsA(e, FuncExpr) && write_is_reveal(((FuncExpr *) e)->funcid) &&
			list_length(((FuncExpr *) e)->args) == 4)
			e = linitial(((FuncExpr *) e)->args);
		if (!IsA(e, Var))
			return 0;
		v = (Var *) e;
		if (v->varno != rtr->rtindex || v->varlevelsup != 0 || v->varattno < 1)
			return 0;
		c->base_att = v->varattno;
		c->base_type = v->vartype;
		c->base_collation = v->varcollid;
		c->kind = (OidIsValid(enc_text) && v->vartype == enc_text) ? ENV_KIND_TEXT :
			(OidIsValid(enc_bytea) && v->vartype == enc_bytea) ? ENV_KIND_BYTEA : 0;
		c->name = get_attname(base, v->varattno, false);
		c->view_type = exprType((Node *) tle->expr);
		/* a view column of another type is an encrypted column's, only */
		if (c->kind == 0 && c->view_type != c->base_type)
			return 0;
		if (strcmp(c->name, NameStr(TupleDescAttr(RelationGetDescr(view), tle->resno - 1)->attname)) != 0)
			return 0;
	}
	return rtr->rtindex;
}

/* Is the view's only trigger pii_guard's, and its only rule its SELECT? */
static bool
write_view_plain(Relation view)
{
	TriggerDesc *td = view->trigdesc;

	if (td == NULL || td->numtriggers != 1 ||
		strcmp(td->triggers[0].tgname, "pii_guard_write") != 0)
		return false;
	return view->rd_rules != NULL && view->rd_rules->numLocks == 1;
}

/* A marked call of one of the write functions. */
static Expr *
write_call(Oid funcid, Oid rettype, Oid collation, List *args)
{
	FuncExpr   *fe = makeFuncExpr(funcid, rettype, args, collation, InvalidOid,
								  COERCE_EXPLICIT_CALL);

	fe->location = PII_SITE_MARK;
	return (Expr *) fe;
}

/* The constant arguments (base regclass, col name) of a write call. */
static List *
write_const_args(Oid base, const char *col)
{
	Name		n = palloc0(NAMEDATALEN);

	namestrcpy(n, col);
	/* cppcheck-suppress unknownEvaluationOrder ; the two makeConst() are independent */
	return list_make2(makeConst(REGCLASSOID, -1, InvalidOid, sizeof(Oid),
								ObjectIdGetDatum(base), false, true),
					  makeConst(NAMEOID, -1, C_COLLATION_OID, NAMEDATALEN,
								NameGetDatum(n), false, false));
}

/* _write_seal() of value, for encrypted column c of base. */
static Expr *
write_seal_call(ViewColumn *c, Oid base, Expr *value)
{
	return write_call(c->kind == ENV_KIND_TEXT ? write_fns.seal_text : write_fns.seal_bytea,
					  c->base_type, InvalidOid, lcons(value, write_const_args(base, c->name)));
}

/* Does a VALUES list of q give DEFAULT in column attno of its entry rti? */
static bool
write_values_default(Query *q, Var *v)
{
	RangeTblEntry *rte;
	ListCell   *lc;

	if (v->varlevelsup != 0 || v->varno < 1 || v->varno > list_length(q->rtable))
		return false;
	rte = rt_fetch(v->varno, q->rtable);
	if (rte->rtekind != RTE_VALUES)
		return false;
	foreach(lc, rte->values_lists)
	{
		List	   *row = (List *) lfirst(lc);

		if (v->varattno >= 1 && v->varattno <= list_length(row) &&
			IsA(list_nth(row, v->varattno - 1), SetToDefault))
			return true;
	}
	return false;
}

static bool
write_has_current_of(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, CurrentOfExpr))
		return true;
	return expression_tree_walker(node, write_has_current_of, context);
}

/*
 * Can q's target list be written by the rewrite?  INSERT: every column a
 * column of the view; an encrypted column's value not a VALUES list's
 * DEFAULT.
 */
static bool
write_targets_ok(Query *q, ViewColumn *cols, int ncols)
{
	ListCell   *lc;

	foreach(lc, q->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (tle->resjunk)
			continue;
		if (tle->resno < 1 || tle->resno > ncols || cols[tle->resno - 1].base_att == 0)
			return false;
		if (q->commandType == CMD_INSERT && cols[tle->resno - 1].kind != 0 &&
			IsA(tle->expr, Var) && write_values_default(q, (Var *) tle->expr))
			return false;
	}
	return true;
}

/*
 * What write_var_walker looks for: a Var of range table entry varno of the
 * query it starts in, seen from depth levels down (subqueries) --
 *	WALK_OUTER_REF		at any depth below the top: a subquery refers to it;
 *	WALK_SEALED			at any depth: an encrypted column of it (by the
 *						view's columns cols), or its whole row.
 */
typedef enum VarWalkMode
{
	WALK_OUTER_REF,
	WALK_SEALED
} VarWalkMode;

typedef struct VarWalk
{
	VarWalkMode mode;
	int			varno;
	int			depth;
	ViewColumn *cols;
	int			ncols;
} VarWalk;

static bool
write_var_walker(Node *node, VarWalk *vw)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;

		if (v->varno != vw->varno || (int) v->varlevelsup != vw->depth)
			return false;
		if (vw->mode == WALK_OUTER_REF)
			return vw->depth > 0;
		return v->varattno < 1 || v->varattno > vw->ncols || vw->cols[v->varattno - 1].kind != 0;
	}
	if (IsA(node, Query))
	{
		bool		found;

		vw->depth++;
		found = query_tree_walker((Query *) node, write_var_walker, (void *) vw, 0);
		vw->depth--;
		return found;
	}
	return expression_tree_walker(node, write_var_walker, (void *) vw);
}

/* Is tle `SET col = EXCLUDED.col`, of its own column? */
static bool
write_set_is_excluded(TargetEntry *tle, int excl)
{
	Var		   *v = (Var *) tle->expr;

	return IsA(v, Var) && v->varno == excl && v->varlevelsup == 0 && v->varattno == tle->resno;
}

/* An ON CONFLICT clause through a masking view that cannot be honoured. */
static void
write_conflict_refuse(Query *q, const char *detail)
{
	Oid			view = rt_fetch(q->resultRelation, q->rtable)->relid;

	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("this INSERT ... ON CONFLICT is not supported on masking view %s",
					get_rel_name(view)),
			 errdetail_internal("%s", detail),
			 errhint("Name the conflict target by its columns, and set an encrypted column from EXCLUDED only as SET col = EXCLUDED.col.")));
}

/*
 * Check q's ON CONFLICT clause, which only the rewrite can honour: its
 * conflict target must be columns of the view (the base table's indexes
 * answer it); EXCLUDED's encrypted columns may only be set back to their
 * own column; DO NOTHING only at the top (its conflicts are counted from
 * the statement's row count).  Refused (0A000) otherwise.
 */
static void
write_check_conflict(Query *q, ViewColumn *cols, int ncols, bool top)
{
	OnConflictExpr *oc = q->onConflict;
	VarWalk		vw;
	ListCell   *lc;

	if (oc->action == ONCONFLICT_NOTHING && !top)
		write_conflict_refuse(q, "ON CONFLICT DO NOTHING through a masking view cannot be in a WITH query.");
	if (OidIsValid(oc->constraint))
		write_conflict_refuse(q, "A masking view has no constraints of its own (ON CONSTRAINT).");
	foreach(lc, oc->arbiterElems)
	{
		InferenceElem *ie = lfirst_node(InferenceElem, lc);
		Var		   *v = (Var *) ie->expr;

		if (!IsA(v, Var) || v->varno != q->resultRelation || v->varlevelsup != 0 ||
			v->varattno < 1 || v->varattno > ncols || cols[v->varattno - 1].base_att == 0)
			write_conflict_refuse(q, "The conflict target must be columns of the view, not expressions.");
	}
	if (oc->arbiterWhere != NULL &&
		(checkExprHasSubLink(oc->arbiterWhere) || contain_vars_of_level(oc->arbiterWhere, 1)))
		write_conflict_refuse(q, "The conflict target's WHERE must be a condition on the view's columns.");
	if (oc->action != ONCONFLICT_UPDATE)
		return;
	/*
	 * EXCLUDED's value of an encrypted column is an envelope on the base
	 * table; the view's EXCLUDED would be its plaintext, which only SET col
	 * = EXCLUDED.col may use.
	 */
	vw.mode = WALK_SEALED;
	vw.varno = oc->exclRelIndex;
	vw.cols = cols;
	vw.ncols = ncols;
	vw.depth = 0;
	foreach(lc, oc->onConflictSet)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		/*
		 * (Every entry, the junk ones too: SET (a, b) = (SELECT ...) puts
		 * its sub-select in one, where EXCLUDED is a level up.)
		 */
		if (!tle->resjunk && write_set_is_excluded(tle, oc->exclRelIndex))
			continue;
		if (write_var_walker((Node *) tle->expr, &vw))
			write_conflict_refuse(q, "EXCLUDED's value of an encrypted column is used other than to set the same column.");
	}
	if (write_var_walker(oc->onConflictWhere, &vw))
		write_conflict_refuse(q, "EXCLUDED's value of an encrypted column is used in the DO UPDATE's WHERE.");
}

/* A target list giving each view column as its base table column of rti. */
static List *
write_raw_tlist(ViewColumn *cols, int ncols, int rti)
{
	List	   *tlist = NIL;

	for (int i = 0; i < ncols; i++)
	{
		Expr	   *e;

		if (cols[i].base_att != 0)
			e = (Expr *) makeVar(rti, cols[i].base_att, cols[i].base_type, -1,
								 cols[i].base_collation, 0);
		else
			e = (Expr *) makeNullConst(cols[i].view_type, -1, InvalidOid);
		tlist = lappend(tlist, makeTargetEntry(e, i + 1, NULL, false));
	}
	return tlist;
}

/*
 * The ON CONFLICT clause of q, for the base table new_rti (see
 * write_rewrite_one): the conflict target is the base table's columns;
 * DO UPDATE gets the base table's EXCLUDED, whose values are the row that
 * was to be inserted -- SET col = EXCLUDED.col takes that (sealed) value
 * as it is (_write_set compares it decrypted); a view column of EXCLUDED
 * elsewhere is that column's value.
 */
static void
write_rewrite_conflict(Query *q, int view_rti, RangeTblEntry *vrte, Oid base,
					   ViewColumn *cols, int ncols, int new_rti)
{
	OnConflictExpr *oc = q->onConflict;
	List	   *raw = write_raw_tlist(cols, ncols, new_rti);
	Relation	brel;
	ParseNamespaceItem *nsi;
	RangeTblEntry *erte;
	RangeTblEntry *old_erte;
	int			old_excl = oc->exclRelIndex;
	int			new_excl;
	ListCell   *lc;

	oc->arbiterElems = (List *) ReplaceVarsFromTargetList((Node *) oc->arbiterElems, view_rti, 0, vrte,
														  raw, REPLACEVARS_REPORT_ERROR, 0, NULL);
	oc->arbiterWhere = ReplaceVarsFromTargetList(oc->arbiterWhere, view_rti, 0, vrte,
												 raw, REPLACEVARS_REPORT_ERROR, 0, NULL);
	if (oc->action != ONCONFLICT_UPDATE)
		return;

	brel = relation_open(base, RowExclusiveLock);
	nsi = addRangeTableEntryForRelation(make_parsestate(NULL), brel, RowExclusiveLock,
										makeAlias("excluded", NIL), false, false);
	erte = nsi->p_rte;
	erte->relkind = RELKIND_COMPOSITE_TYPE;
	erte->requiredPerms = 0;
	erte->checkAsUser = views_owner_role();
	q->rtable = lappend(q->rtable, erte);
	new_excl = list_length(q->rtable);
	oc->exclRelIndex = new_excl;
	oc->exclRelTlist = BuildOnConflictExcludedTargetlist(brel, new_excl);
	relation_close(brel, NoLock);

	foreach(lc, oc->onConflictSet)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		ViewColumn *c;

		if (tle->resjunk || !write_set_is_excluded(tle, old_excl))
			continue;
		c = &cols[tle->resno - 1];
		tle->expr = (Expr *) makeVar(new_excl, c->base_att, c->base_type, -1, c->base_collation, 0);
	}
	old_erte = rt_fetch(old_excl, q->rtable);
	raw = write_raw_tlist(cols, ncols, new_excl);
	oc->onConflictSet = (List *) ReplaceVarsFromTargetList((Node *) oc->onConflictSet, old_excl, 0, old_erte,
														   raw, REPLACEVARS_REPORT_ERROR, 0, &q->hasSubLinks);
	oc->onConflictWhere = ReplaceVarsFromTargetList(oc->onConflictWhere, old_excl, 0, old_erte,
													raw, REPLACEVARS_REPORT_ERROR, 0, &q->hasSubLinks);
}

/*
 * The value an UPDATE (or ON CONFLICT DO UPDATE) SET entry stores through
 * the rewrite: _write_set() of the stored value, the row key and the new
 * value.
 */
static Expr *
write_set_call(Oid base, ViewColumn *cols, ViewColumn *c, AttrNumber key_att, int rti, Expr *value,
			   Oid citus_view)
{
	List	   *args;

	args = list_make1(makeVar(rti, c->base_att, c->base_type, -1, c->base_collation, 0));
	args = list_concat(args, write_const_args(base, c->name));
	args = lappend(args, makeVar(rti, key_att, cols[key_att - 1].base_type, -1,
								 cols[key_att - 1].base_collation, 0));
	args = lappend(args, value);
	if (OidIsValid(citus_view))
	{
		/* (what the role may do with the view's column: evaluated by Citus here) */
		List	   *may_args = write_const_args(citus_view, c->name);

		args = lappend(args, makeFuncExpr(write_fns.may, INT4OID, may_args, InvalidOid,
										  InvalidOid, COERCE_EXPLICIT_CALL));
		return write_call(write_fns.set_shard, c->base_type, c->base_collation, args);
	}
	return write_call(write_fns.set, c->base_type, c->base_collation, args);
}

/*----------
 * Citus.  A write on the masking view of a distributed table is rewritten
 * as on one server, with what Citus needs to plan it on the distributed
 * base table and send it to the workers (cluster.c admits it there):
 *
 *	- reveal() and _write_set() become _reveal_shard() and
 *	  _write_set_shard(), the same functions declared IMMUTABLE (Citus
 *	  plans no other function that reads a column in an UPDATE's SET or
 *	  WHERE, or any in a RETURNING list); _write_set_shard() is also given
 *	  what the role may do with the view's column, _write_may(view,
 *	  column), which Citus evaluates here, before it sends the statement;
 *	- _write_seal() stays: Citus evaluates it here too (an INSERT's values
 *	  are constants), and sends the envelope;
 *	- the base table's entry takes the place of the view's, which moves to
 *	  the end of the range table, kept for the role's privileges on the
 *	  view (Citus takes the first entry for an INSERT's target, and refuses
 *	  a write whose first entry is a view); an INSERT's target is given an
 *	  alias, so that RETURNING's references to it print right where Citus
 *	  prints the statement for a shard.
 *
 * Not rewritten, so refused (0A000): INSERT ... ON CONFLICT and writes in
 * WITH queries on such a view, and what is not rewritten on one server
 * either (views_refuse_citus_write).
 *----------
 */

/*
 * The writes on a Citus table's view that the rewrite leaves to Citus and
 * the workers: refused here, saying so, what the workers would refuse
 * without saying why -- an INSERT whose rows are not a VALUES list (Citus
 * would copy them to the shards, where nothing admits a COPY), a column
 * set to its DEFAULT (evaluated on the worker, not _write_set_shard()'s),
 * a partitioned table (its partitions' writes are not audited there).
 */
static void
write_citus_check(Query *q, Oid view_relid, Oid base)
{
	ListCell   *lc;

	if (get_rel_relkind(base) != RELKIND_RELATION)
		views_refuse_citus_write(view_relid, "a write on a partitioned table",
								  "Write its rows on the table itself, as its owner.");
	if (q->commandType == CMD_INSERT)
		foreach(lc, q->jointree->fromlist)
		{
			Node	   *item = lfirst(lc);

			if (!IsA(item, RangeTblRef) ||
				rt_fetch(((RangeTblRef *) item)->rtindex, q->rtable)->rtekind != RTE_VALUES)
				views_refuse_citus_write(view_relid, "INSERT ... SELECT", NULL);
		}
	if (q->commandType == CMD_UPDATE)
		foreach(lc, q->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (!tle->resjunk && IsA(tle->expr, SetToDefault))
				views_refuse_citus_write(view_relid, "UPDATE ... SET column = DEFAULT", NULL);
		}
}

/* Expression tree walker: reveal() calls become _reveal_shard() calls. */
static bool
write_citus_reveals(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		FuncExpr   *fe = (FuncExpr *) node;

		for (int i = 0; i < write_fns.nreveal; i++)
			if (fe->funcid == write_fns.reveal[i])
				fe->funcid = write_fns.reveal_shard[i];
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, write_citus_reveals, context, 0);
	return expression_tree_walker(node, write_citus_reveals, context);
}

/*
 * hooks.c, before planning: a rewritten write on a Citus table whose other
 * relations include masking views (UPDATE ... FROM, a subquery on one),
 * expanded by now into their reveal() calls: those become _reveal_shard()
 * calls too, which Citus plans in such a write.
 */
void
write_citus_plan(Query *parse)
{
	RangeTblEntry *rte;

	if (parse->commandType == CMD_SELECT || parse->commandType == CMD_UTILITY ||
		parse->resultRelation <= 0 || !pii_guard_citus_loaded() || !write_functions() ||
		!OidIsValid(write_fns.set_shard))
		return;
	rte = rt_fetch(parse->resultRelation, parse->rtable);
	if (rte->rtekind != RTE_RELATION || !views_is_citus(rte->relid) ||
		compat_query_check_as_user(parse, rte) != views_owner_role())
		return;
	(void) query_tree_walker(parse, write_citus_reveals, NULL, 0);
}

/*
 * An INSERT's value for encrypted column c that is a column of its VALUES
 * list: sealed in each row of the list, where Citus evaluates it (Citus
 * takes the rows of a multi-row INSERT apart by shard, and sends a value it
 * does not find in them as the text of a reference to the list).  False if
 * the value is something else.
 */
static bool
write_citus_seal_values(Query *q, TargetEntry *tle, ViewColumn *c, Oid base)
{
	Var		   *v = (Var *) tle->expr;
	RangeTblEntry *rte;
	ListCell   *lc;
	int			i;

	if (!IsA(v, Var) || v->varlevelsup != 0 || v->varattno <= 0)
		return false;
	rte = rt_fetch(v->varno, q->rtable);
	if (rte->rtekind != RTE_VALUES)
		return false;
	i = v->varattno - 1;
	foreach(lc, rte->values_lists)
	{
		List	   *row = (List *) lfirst(lc);
		ListCell   *item = list_nth_cell(row, i);

		lfirst(item) = write_seal_call(c, base, (Expr *) lfirst(item));
	}
	list_nth_cell(rte->coltypes, i)->oid_value = c->base_type;
	list_nth_cell(rte->coltypmods, i)->int_value = -1;
	list_nth_cell(rte->colcollations, i)->oid_value = InvalidOid;
	v->vartype = c->base_type;
	v->vartypmod = -1;
	v->varcollid = InvalidOid;
	return true;
}

/*
 * What the rewrite needs of a masking view, learnt once per view and kept
 * while the protected-table cache (views.c) is the same build: it is
 * rebuilt whenever a protected table, its views or the policy change.
 */
typedef struct WriteShape
{
	Oid			view_relid;		/* hash key */
	uint64		version;		/* views_cache_version() it was learnt at */
	bool		ok;				/* a view the rewrite can write through */
	int			base_rti;		/* the base table's entry in the view's query */
	int			ncols;
	ViewColumn *cols;
	List	   *tlist;			/* the view's target list */
	Node	   *quals;			/* ... and condition (on constants) */
	RangeTblEntry *base_rte;	/* the base table's entry */
	AttrNumber	key_att;
} WriteShape;

static HTAB *write_shapes = NULL;
static MemoryContext WriteContext = NULL;
static uint64 write_shapes_version = 0;

/* The shape of masking view view_relid of base, or NULL if not writable so. */
static WriteShape *
write_shape(Oid view_relid, Oid base, const char *row_key)
{
	uint64		version = views_cache_version();
	WriteShape *ws;
	bool		found;
	Relation	view;
	MemoryContext old;

	if (write_shapes == NULL || write_shapes_version != version)
	{
		HASHCTL		ctl;

		if (WriteContext == NULL)
			WriteContext = AllocSetContextCreate(TopMemoryContext, "pii_guard write shapes",
												 ALLOCSET_SMALL_SIZES);
		else
			MemoryContextReset(WriteContext);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(WriteShape);
		ctl.hcxt = WriteContext;
		write_shapes = hash_create("pii_guard write shapes", 16, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		write_shapes_version = version;
	}
	ws = hash_search(write_shapes, &view_relid, HASH_ENTER, &found);
	if (found)
		return ws->ok ? ws : NULL;

	/* (an ERROR below leaves the entry not ok: learnt again next time) */
	ws->ok = false;
	ws->version = version;
	view = relation_open(view_relid, NoLock);
	old = MemoryContextSwitchTo(WriteContext);
	PG_TRY();
	{
		if (write_view_plain(view))
		{
			Query	   *vq = get_view_query(view);

			ws->ncols = RelationGetDescr(view)->natts;
			ws->cols = palloc0(sizeof(ViewColumn) * ws->ncols);
			ws->base_rti = write_view_shape(view, vq, base, ws->cols, ws->ncols);
			if (ws->base_rti != 0)
			{
				ws->tlist = copyObject(vq->targetList);
				ws->quals = copyObject(vq->jointree->quals);
				ws->base_rte = copyObject(rt_fetch(ws->base_rti, vq->rtable));
				for (int i = 0; i < ws->ncols; i++)
					if (ws->cols[i].base_att != 0 && strcmp(ws->cols[i].name, row_key) == 0)
						ws->key_att = ws->cols[i].base_att;
				ws->ok = ws->key_att != InvalidAttrNumber;
			}
		}
	}
	PG_FINALLY();
	{
		MemoryContextSwitchTo(old);
		relation_close(view, NoLock);
	}
	PG_END_TRY();
	return ws->ok ? ws : NULL;
}

/* The attribute numbers of varno's columns that q refers to (level 0). */
typedef struct AttnoWalk
{
	int			varno;
	Bitmapset  *attnos;
} AttnoWalk;

static bool
write_attnos_walker(Node *node, AttnoWalk *aw)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		Var		   *v = (Var *) node;

		if (v->varno == aw->varno && v->varlevelsup == 0)
			aw->attnos = bms_add_member(aw->attnos, v->varattno - FirstLowInvalidHeapAttributeNumber);
		return false;
	}
	if (IsA(node, Query))
		return false;			/* (the view's row from subqueries: refused) */
	return expression_tree_walker(node, write_attnos_walker, (void *) aw);
}

/*
 * The view's target list, for ReplaceVarsFromTargetList: a copy of the
 * entries q refers to (all of them for a whole-row reference), a NULL of
 * the column's type for the others, the base table's Vars numbered rti.
 */
static List *
write_view_tlist(WriteShape *ws, Query *q, int view_rti, int rti)
{
	AttnoWalk	aw;
	List	   *tlist = NIL;
	bool		all;
	ListCell   *lc;

	aw.varno = view_rti;
	aw.attnos = NULL;
	(void) query_tree_walker(q, write_attnos_walker, (void *) &aw, 0);
	all = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, aw.attnos);
	foreach(lc, ws->tlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (all || bms_is_member(tle->resno - FirstLowInvalidHeapAttributeNumber, aw.attnos))
			tle = copyObject(tle);
		else
			tle = makeTargetEntry((Expr *) makeNullConst(exprType((Node *) tle->expr), -1, InvalidOid),
								  tle->resno, tle->resname, false);
		tlist = lappend(tlist, tle);
	}
	ChangeVarNodes((Node *) tlist, ws->base_rti, rti, 0);
	return tlist;
}

/*
 * Rewrite one INSERT, UPDATE or DELETE on a masking view onto its base
 * table; false (q untouched) when it is left to the trigger.  top: q is
 * the statement itself, not one of its WITH queries.
 */
static bool
write_rewrite_one(Query *orig, bool top)
{
	Query	   *q = orig;
	RangeTblEntry *vrte = rt_fetch(q->resultRelation, q->rtable);
	int			view_rti = q->resultRelation;
	RangeTblEntry *nrte;
	int			new_rti;
	Oid			base;
	WriteShape *ws;
	ViewColumn *cols;
	int			ncols;
	List	   *view_tlist;
	Node	   *view_quals = NULL;
	const char *row_key;
	AttrNumber	key_att;
	Oid			owner;
	ListCell   *lc;
	Bitmapset  *base_cols = NULL;
	Bitmapset  *relaxed = NULL;
	Bitmapset  *nrte_updated = NULL;
	bool		citus;

	if (vrte->rtekind != RTE_RELATION || vrte->relkind != RELKIND_VIEW)
		return false;
	base = views_base_of_view(vrte->relid);
	if (!OidIsValid(base))
		return false;
	owner = views_owner_role();
	row_key = views_row_key(base);
	if (!OidIsValid(owner) || row_key == NULL || !write_functions())
		return false;
	citus = views_is_citus(base);
	if (citus && !OidIsValid(write_fns.set_shard))
		return false;
	if (citus && q->onConflict != NULL)
		views_refuse_citus_write(vrte->relid, "INSERT ... ON CONFLICT", NULL);
	if (citus && !top)
		views_refuse_citus_write(vrte->relid, "a write in a WITH query", NULL);
	if (citus)
		write_citus_check(q, vrte->relid, base);
	if (write_has_current_of((Node *) q->jointree, NULL))
		return false;

	/* The view (locked by the analysis), as the rewrite knows it. */
	ws = write_shape(vrte->relid, base, row_key);
	if (ws == NULL)
		return false;
	cols = ws->cols;
	ncols = ws->ncols;
	key_att = ws->key_att;
	if (!write_targets_ok(q, cols, ncols))
		return false;
	if (q->onConflict != NULL)
		write_check_conflict(q, cols, ncols, top);
	/* A row key set to DEFAULT: the trigger refuses it to governed roles. */
	if (q->commandType == CMD_UPDATE)
		foreach(lc, q->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (!tle->resjunk && IsA(tle->expr, SetToDefault) &&
				cols[tle->resno - 1].base_att == key_att)
				return false;
		}
	if (q->onConflict != NULL && q->onConflict->action == ONCONFLICT_UPDATE)
		foreach(lc, q->onConflict->onConflictSet)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (!tle->resjunk && IsA(tle->expr, SetToDefault) &&
				cols[tle->resno - 1].base_att == key_att)
				write_conflict_refuse(q, "ON CONFLICT DO UPDATE may not set the row key to its default.");
		}
	/*
	 * Subqueries referring to the written row (`RETURNING (SELECT
	 * national_id)`): the trigger's.
	 */
	{
		VarWalk		vw;

		vw.mode = WALK_OUTER_REF;
		vw.varno = view_rti;
		vw.depth = 0;
		vw.cols = NULL;
		vw.ncols = 0;
		if (query_tree_walker(q, write_var_walker, (void *) &vw, 0))
		{
			if (q->onConflict != NULL)
				write_conflict_refuse(q, "A subquery refers to the row written.");
			return false;
		}
	}

	/*
	 * From here on q is rewritten.  The base table's entry: the view's,
	 * checked as the view's owner, for the same operation.
	 */
	nrte = copyObject(ws->base_rte);
	nrte->checkAsUser = owner;
	nrte->rellockmode = RowExclusiveLock;
	nrte->selectedCols = NULL;
	nrte->insertedCols = NULL;
	nrte->updatedCols = NULL;
	nrte->extraUpdatedCols = NULL;
	nrte->inFromCl = false;
	switch (q->commandType)
	{
		case CMD_INSERT:
			nrte->requiredPerms = ACL_INSERT | (q->returningList ? ACL_SELECT : 0);
			if (q->onConflict != NULL && q->onConflict->action == ONCONFLICT_UPDATE)
				nrte->requiredPerms |= ACL_UPDATE | ACL_SELECT;
			nrte->inh = false;
			break;
		case CMD_UPDATE:
			nrte->requiredPerms = ACL_UPDATE | ACL_SELECT;
			break;
		default:
			nrte->requiredPerms = ACL_DELETE | ACL_SELECT;
			break;
	}
	q->rtable = lappend(q->rtable, nrte);
	new_rti = list_length(q->rtable);
	view_tlist = write_view_tlist(ws, q, view_rti, new_rti);
	view_quals = copyObject(ws->quals);

	/* The values written, in the base table's columns. */
	if (q->commandType != CMD_DELETE)
	{
		foreach(lc, q->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);
			ViewColumn *c;

			if (tle->resjunk)
				continue;
			c = &cols[tle->resno - 1];
			if (q->commandType == CMD_INSERT && c->kind != 0 && !IsA(tle->expr, SetToDefault) &&
				!(citus && write_citus_seal_values(q, tle, c, base)))
				tle->expr = write_seal_call(c, base, tle->expr);
			base_cols = bms_add_member(base_cols, c->base_att - FirstLowInvalidHeapAttributeNumber);
		}
	}

	if (q->onConflict != NULL)
		write_rewrite_conflict(q, view_rti, vrte, base, cols, ncols, new_rti);

	/* References to the view's columns become its expressions. */
	q = (Query *) ReplaceVarsFromTargetList((Node *) q, view_rti, 0, vrte, view_tlist,
											REPLACEVARS_REPORT_ERROR, 0, &q->hasSubLinks);
	/* (a copy, with copies of the range table entries) */
	vrte = rt_fetch(view_rti, q->rtable);
	nrte = rt_fetch(new_rti, q->rtable);
	if (citus)
		(void) query_tree_walker(q, write_citus_reveals, NULL, 0);

	if (q->commandType == CMD_UPDATE)
	{
		foreach(lc, q->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (tle->resjunk || IsA(tle->expr, SetToDefault))
				continue;
			tle->expr = write_set_call(base, cols, &cols[tle->resno - 1], key_att, new_rti, tle->expr,
									   citus ? vrte->relid : InvalidOid);
			relaxed = bms_add_member(relaxed, tle->resno - FirstLowInvalidHeapAttributeNumber);
		}
	}
	if (q->onConflict != NULL && q->onConflict->action == ONCONFLICT_UPDATE)
	{
		OnConflictExpr *oc = q->onConflict;
		Bitmapset  *set_cols = NULL;

		foreach(lc, oc->onConflictSet)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);
			ViewColumn *c;

			if (tle->resjunk || IsA(tle->expr, SetToDefault))
				continue;
			c = &cols[tle->resno - 1];
			tle->expr = write_set_call(base, cols, c, key_att, new_rti, tle->expr, InvalidOid);
			relaxed = bms_add_member(relaxed, tle->resno - FirstLowInvalidHeapAttributeNumber);
			set_cols = bms_add_member(set_cols, c->base_att - FirstLowInvalidHeapAttributeNumber);
		}
		foreach(lc, oc->onConflictSet)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (!tle->resjunk)
				tle->resno = cols[tle->resno - 1].base_att;
		}
		/*
		 * Every conflict is a probe: counted where DO UPDATE meets one, by a
		 * call that holds the WHERE written (not ANDed with it: the planner
		 * would fold "... AND false" away, and the conflict with it).
		 */
		{
			Node	   *base_arg = linitial(write_const_args(base, row_key));
			Node	   *pass = oc->onConflictWhere != NULL ? oc->onConflictWhere :
				makeBoolConst(true, false);
			List	   *args;

			/* cppcheck-suppress unknownEvaluationOrder ; two variables, no side effect */
			args = list_make2(base_arg, pass);
			oc->onConflictWhere = (Node *) write_call(write_fns.conflict, BOOLOID, InvalidOid, args);
		}
		nrte_updated = set_cols;
	}
	if (q->commandType != CMD_DELETE)
	{
		foreach(lc, q->targetList)
		{
			TargetEntry *tle = lfirst_node(TargetEntry, lc);

			if (!tle->resjunk)
				tle->resno = cols[tle->resno - 1].base_att;
		}
	}

	/*
	 * The view's entry stays, for the invoker's privileges on it; a column
	 * an UPDATE sets through _write_set is checked there, when it changes.
	 */
	vrte->updatedCols = bms_del_members(vrte->updatedCols, relaxed);
	nrte->updatedCols = nrte_updated;
	if (q->commandType == CMD_INSERT)
		nrte->insertedCols = base_cols;
	else if (q->commandType == CMD_UPDATE)
		nrte->updatedCols = base_cols;
	ChangeVarNodes((Node *) q, view_rti, new_rti, 0);
	Assert(q->resultRelation == new_rti);
	if (citus)
	{
		ListCell   *vcell = list_nth_cell(q->rtable, view_rti - 1);
		ListCell   *ncell = list_nth_cell(q->rtable, new_rti - 1);

		/*
		 * The base table takes the view's place in the range table (Citus
		 * takes an INSERT's first entry for its target, and refuses a
		 * write whose first entry is a view); nothing refers to the view's
		 * entry any more.
		 */
		lfirst(vcell) = nrte;
		lfirst(ncell) = vrte;
		ChangeVarNodes((Node *) q, new_rti, view_rti, 0);
		/* (named, so that RETURNING's references to it print right) */
		if (q->commandType == CMD_INSERT && nrte->alias == NULL)
			nrte->alias = makeAlias("citus_table_alias", NIL);
	}
	/*
	 * (On Citus, conditions on constants that hold -- the mask functions a
	 * rebuilt view names -- are left out: each shard's statement would
	 * carry them for the worker to parse and check again.)
	 */
	if (view_quals != NULL && citus && q->commandType != CMD_INSERT)
		view_quals = eval_const_expressions(NULL, view_quals);
	if (view_quals != NULL && q->commandType != CMD_INSERT &&
		!(citus && IsA(view_quals, Const) && !((Const *) view_quals)->constisnull &&
		  DatumGetBool(((Const *) view_quals)->constvalue)))
		AddQual(q, view_quals);
	/* The caller holds orig: it becomes the rewritten statement. */
	memcpy(orig, q, sizeof(Query));
	return true;
}

/*
 * hooks.c, post_parse_analyze_hook: rewrite the writes on masking views of
 * query, its data-modifying WITH queries and an EXPLAINed statement.
 */
static void
write_rewrite_query(Query *query, bool top)
{
	ListCell   *lc;

	if (query == NULL)
		return;
	if (query->commandType == CMD_UTILITY)
	{
		if (query->utilityStmt != NULL && IsA(query->utilityStmt, ExplainStmt) &&
			IsA(((ExplainStmt *) query->utilityStmt)->query, Query))
			write_rewrite_query((Query *) ((ExplainStmt *) query->utilityStmt)->query, top);
		return;
	}
	foreach(lc, query->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query) && ((Query *) cte->ctequery)->commandType != CMD_SELECT)
			write_rewrite_query((Query *) cte->ctequery, false);
	}
	if ((query->commandType == CMD_INSERT || query->commandType == CMD_UPDATE ||
		 query->commandType == CMD_DELETE) && query->resultRelation > 0 &&
		!write_rewrite_one(query, top))
	{
		RangeTblEntry *rte = rt_fetch(query->resultRelation, query->rtable);

		/* (the trigger cannot write a distributed table's rows: Citus refuses) */
		if (rte->rtekind == RTE_RELATION)
			views_refuse_citus_write(rte->relid, "this write", NULL);
		if (query->onConflict != NULL)
			write_refuse_conflict_view(query);
	}
}

void
write_rewrite(Query *query)
{
	write_rewrite_query(query, true);
}

/*----------
 * Run time: the probes of a rewritten write.
 *----------
 */

/* A ModifyTable node of a rewritten write by a governed role, wrapped. */
typedef struct ProbedNode
{
	PlanState  *ps;
	ExecProcNodeMtd real;
	Oid			base;
	EState	   *estate;
	/*
	 * ON CONFLICT: DO NOTHING's conflicts are the rows it skips, each
	 * counted when the next row is asked for (or the input ends): a row fed
	 * that did not add to es_processed was skipped.  Counted as they come,
	 * so that a statement that fails later has counted what it learnt.
	 */
	bool		count_skips;
	PlanState  *sub;			/* its input, wrapped to follow the rows */
	ExecProcNodeMtd sub_real;
	bool		pending;		/* a row was fed, its outcome not looked at */
	uint64		processed_at_feed;	/* es_processed when it was fed */
	bool		done;
	struct ProbedNode *next;
} ProbedNode;

static ProbedNode *probed_nodes = NULL;

/* The wrapped node ps, found. */
static ProbedNode *
write_probed_node(const PlanState *ps)
{
	ProbedNode *pn = probed_nodes;

	while (pn != NULL && pn->ps != ps && pn->sub != ps)
		pn = pn->next;
	if (pn == NULL)
		elog(ERROR, "pii_guard: probed plan node not found");
	return pn;
}

/* DO NOTHING: was the row fed last skipped (a conflict)?  Counted once. */
static void
write_count_skipped(ProbedNode *pn)
{
	if (pn->pending && pn->estate->es_processed == pn->processed_at_feed)
		views_note_probes_of(pn->base, 1);
	pn->pending = false;
}

/*
 * Did the 42501 being raised come from row-level security refusing the
 * existing row an ON CONFLICT DO UPDATE met (a conflict: the row exists),
 * not the new row's WITH CHECK?  By the message's untranslated text.
 */
static bool
write_error_is_conflict_check(MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ErrorData  *ed = CopyErrorData();
	bool		conflict;

	conflict = ed->message_id != NULL && strstr(ed->message_id, "(USING expression)") != NULL;
	FreeErrorData(ed);
	MemoryContextSwitchTo(old);
	return conflict;
}

/*
 * The wrapped ExecProcNodeReal: the conflicts of ON CONFLICT are probes
 * (views.c reports them at the statement's end or the abort).
 */
static TupleTableSlot *
write_exec_probed(PlanState *ps)
{
	ProbedNode *volatile pn = write_probed_node(ps);
	TupleTableSlot *volatile slot = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	ExecProcNodeMtd real;
	Oid			base;
	bool		do_update;

	base = pn->base;
	real = pn->real;
	do_update = ((ModifyTable *) ps->plan)->onConflictAction == ONCONFLICT_UPDATE;
	PG_TRY();
	{
		slot = real(ps);
	}
	PG_CATCH();
	{
		int			code = geterrcode();

		/*
		 * ON CONFLICT DO UPDATE of a row that row-level security hides
		 * fails on its policy before the conflict is counted: the failure
		 * tells that the row exists.  (Not the new row's WITH CHECK, which
		 * is no conflict.  Unique violations, wherever they are raised,
		 * are views.c's: views_constraint_error.)
		 */
		if (code == ERRCODE_INSUFFICIENT_PRIVILEGE && do_update && !write_row_counted &&
			write_error_is_conflict_check(cxt))
			views_note_probes_of(base, 1);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (pn->count_skips && TupIsNull(slot) && !pn->done)
	{
		write_count_skipped(pn);
		pn->done = true;
	}
	return slot;
}

/* The wrapped input of an ON CONFLICT DO NOTHING: the rows fed to it. */
static TupleTableSlot *
write_exec_fed(PlanState *ps)
{
	ProbedNode *pn = write_probed_node(ps);
	TupleTableSlot *slot;

	write_count_skipped(pn);	/* (the row before, before anything can fail) */
	slot = pn->sub_real(ps);
	if (!TupIsNull(slot) && pn->count_skips)
	{
		pn->pending = true;
		pn->processed_at_feed = pn->estate->es_processed;
	}
	write_row_counted = false;
	return slot;
}

/* Memory context callback: the statement's executor state is gone. */
static void
write_forget(void *arg)
{
	ProbedNode **link = &probed_nodes;

	while (*link != NULL)
	{
		if ((*link)->estate == (EState *) arg)
			*link = (*link)->next;
		else
			link = &(*link)->next;
	}
}

/*
 * Is rte, a result relation of stmt, the base table (or a partition of it)
 * of a write on a masking view that write_rewrite rewrote -- reached as the
 * views' owner?  The base table of protected table *base.
 */
static bool
write_rewritten_target(PlannedStmt *stmt, RangeTblEntry *rte, Oid *base)
{
	Oid			owner = views_owner_role();

	if (rte->rtekind != RTE_RELATION || !OidIsValid(owner) ||
		compat_rte_check_as_user(stmt, rte) != owner)
		return false;
	*base = views_table_of(rte->relid);
	return OidIsValid(*base);
}

bool
write_is_rewritten_target(PlannedStmt *stmt, RangeTblEntry *rte)
{
	Oid			base;

	return write_rewritten_target(stmt, rte, &base);
}

/* planstate_tree_walker callback: the ModifyTable nodes of rewritten writes. */
static bool
write_find_nodes(PlanState *ps, void *arg)
{
	QueryDesc  *qd = (QueryDesc *) arg;

	if (ps == NULL)
		return false;
	if (IsA(ps, ModifyTableState) && ps->ExecProcNodeReal != write_exec_probed)
	{
		ModifyTable *mt = (ModifyTable *) ps->plan;
		ListCell   *lc;
		Oid			base = InvalidOid;

		foreach(lc, mt->resultRelations)
			if (write_rewritten_target(qd->plannedstmt,
									   rt_fetch(lfirst_int(lc), qd->plannedstmt->rtable), &base))
				break;
		if (OidIsValid(base))
		{
			/* values for protected columns are in the statement's text */
			if (mt->operation != CMD_DELETE)
				statement_note_plaintext();
			if (!policy_is_exempt(GetUserId(), base))
			{
				views_governed_write();
				/* (a probe's count needs the role's limits: load them now) */
				(void) limits_role_unlimited();
			}
			if (!policy_is_exempt(GetUserId(), base) &&
				mt->onConflictAction != ONCONFLICT_NONE && outerPlanState(ps) != NULL)
			{
				ProbedNode *pn = MemoryContextAllocZero(qd->estate->es_query_cxt, sizeof(ProbedNode));
				ProbedNode *other;

				for (other = probed_nodes; other != NULL && other->estate != qd->estate;
					 other = other->next)
					;
				if (other == NULL)
				{
					MemoryContextCallback *cb;

					cb = MemoryContextAlloc(qd->estate->es_query_cxt, sizeof(MemoryContextCallback));
					cb->func = write_forget;
					cb->arg = qd->estate;
					MemoryContextRegisterResetCallback(qd->estate->es_query_cxt, cb);
				}
				pn->ps = ps;
				pn->real = ps->ExecProcNodeReal;
				pn->base = base;
				pn->estate = qd->estate;
				pn->count_skips = mt->onConflictAction == ONCONFLICT_NOTHING && mt->canSetTag;
				pn->sub = outerPlanState(ps);
				pn->sub_real = pn->sub->ExecProcNodeReal;
				pn->sub->ExecProcNodeReal = write_exec_fed;
				pn->next = probed_nodes;
				probed_nodes = pn;
				ps->ExecProcNodeReal = write_exec_probed;
			}
		}
	}
	return planstate_tree_walker(ps, write_find_nodes, arg);
}

/*
 * hooks.c, at ExecutorStart (after the executor state exists): the
 * rewritten writes' plaintext marks, the governed writes (views.c looks at
 * their constraint violations), and the conflicts of ON CONFLICT.
 */
void
write_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *ps = queryDesc->plannedstmt;
	ListCell   *lc;

	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->estate == NULL ||
		ps->commandType == CMD_UTILITY ||
		(ps->commandType == CMD_SELECT && !ps->hasModifyingCTE) ||
		ps->resultRelations == NIL)
		return;
	(void) write_find_nodes(queryDesc->planstate, queryDesc);
	foreach(lc, queryDesc->estate->es_subplanstates)
		(void) write_find_nodes((PlanState *) lfirst(lc), queryDesc);
}

#else							/* !COMPAT_FAST_WRITES */

void
write_citus_plan(Query *parse)
{
	(void) parse;
}

bool
write_is_shard_write_function(Oid funcid, bool *is_set)
{
	(void) funcid;
	*is_set = false;
	return false;
}

void
write_rewrite(Query *query)
{
	ListCell   *lc;

	if (query == NULL || query->commandType == CMD_UTILITY)
		return;
	/* (through the trigger, which cannot write a distributed table's rows) */
	views_refuse_citus_writes(query);
	foreach(lc, query->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query))
			write_rewrite((Query *) cte->ctequery);
	}
	if (query->commandType == CMD_INSERT && query->resultRelation > 0 && query->onConflict != NULL)
		write_refuse_conflict_view(query);
}

void
write_executor_start(struct QueryDesc *queryDesc, int eflags)
{
	(void) queryDesc;
	(void) eflags;
}

bool
write_is_rewritten_target(PlannedStmt *stmt, RangeTblEntry *rte)
{
	(void) stmt;
	(void) rte;
	return false;
}

#endif							/* COMPAT_FAST_WRITES */
