/*-------------------------------------------------------------------------
 *
 * lookup.c
 *		Equality lookups through a masking view use the base table's indexes.
 *
 * A filter on a masking view's column compares what the role sees:
 * `WHERE phone = '13812345678'` on the view is `reveal(phone, ...) =
 * '13812345678'`, which no index answers, so every row is read and revealed.
 * For a role that sees the column in clear on every row, reveal() returns
 * the stored value itself (for an encrypted column, its plaintext), so the
 * filter means the same as comparing the stored column: for a plaintext
 * column `phone = '13812345678'`, for an encrypted one `phone =
 * _blind_probe('13812345678')` -- an envelope header carrying the value's
 * blind index, which the column's index answers.  A list is the same:
 * `phone IN ('138...', '139...')` and `phone = ANY ($1)` are `phone = ANY
 * (_blind_probe(ARRAY[...]))`, the array of the values' probes, which a
 * btree index answers in one scan.  So, before planning, for each such
 * filter -- view column = constant or parameter (text or varchar for an
 * encrypted column), or view column = ANY (a list of them: an array
 * constant, an array parameter -- text[] or varchar[] --, or ARRAY[...] /
 * IN (...) of constants and parameters), at the top level of a WHERE
 * clause -- that comparison is added inside the view's subquery, where the
 * stored column is in scope.  The filter itself stays: the result is the
 * same whichever the planner uses.  For every other role (masked, hidden, a
 * row-specific or time-boxed grant) nothing is added, and a filter keeps
 * seeing only what the role sees.
 *
 * The probe answers only where it was put: its call carries PII_SITE_MARK
 * (enctype.c refuses a plaintext comparison anywhere else to everyone but
 * trusted roles, since it would test guesses against any envelope).  And
 * it is put only on the column the reveal() call names, of the table it
 * names: a subquery of anyone's making may call reveal() on a table of
 * stolen envelopes, and a comparison added there would run before reveal()
 * refused -- whether it refused would tell whether a guess matched.
 *
 * Row-level security.  The added comparison is leakproof, so the planner
 * may evaluate it -- through the index -- before the base table's
 * row-level security quals, on rows the role may not see; EXPLAIN ANALYZE
 * would then count them ("Rows Removed by Filter"), telling whether a
 * value exists among them.  So it is added as it is only when the role's
 * policies hide nothing: each security qual of the base table, evaluated
 * for the current role as the planner estimates (current_user,
 * pg_has_role() and other stable functions folded), is constant true.
 * Otherwise -- a sales rep whose policy keeps only his own customers -- it
 * is wrapped in _after_policies(), an identity that is not leakproof: the
 * planner then evaluates it only after the policy, on the rep's own rows,
 * and before the role's own filter (it is cheaper), so that only the rows
 * that match are revealed.  No index, but nothing about other rows shows.
 *
 * A plan with such a filter depends on the role and the policy, whether or
 * not the comparison was added: lookup_add_quals says so, and hooks.c marks
 * the plan dependsOnRole and makes it depend on the policy sentinel
 * relation, so a cached plan is replanned when the user or the policy
 * changes; a change of role membership resets the plan cache (row-level
 * security policies are the base table's, whose changes replan already).
 * Nothing here can widen what a role sees: the comparison added is only
 * ever the role's own filter, on a value the role sees in clear anyway.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "nodes/pathnodes.h"
#include "parser/parsetree.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/syscache.h"
#include "utils/builtins.h"
#include "utils/typcache.h"

#include "pii_guard.h"

typedef struct LookupContext
{
	const Oid  *reveal_oids;
	int			nreveal;
	Oid			encrypted_text;
	Oid			encrypted_bytea;
	Oid			after_policies; /* pii_guard._after_policies(boolean) */
	bool		for_role;		/* a filter's plan depends on the role */
} LookupContext;

/*
 * Do the row-level security quals of base table entry rte hide nothing
 * from the current role?  Each must fold, as the planner estimates (stable
 * functions and current_user evaluated now), to constant true.
 */
static bool
lookup_policies_hide_nothing(RangeTblEntry *rte)
{
	PlannerGlobal glob;
	PlannerInfo root;
	ListCell   *lc;

	if (rte->securityQuals == NIL)
		return true;
	memset(&glob, 0, sizeof(glob));
	memset(&root, 0, sizeof(root));
	glob.type = T_PlannerGlobal;
	root.type = T_PlannerInfo;
	root.glob = &glob;
	foreach(lc, rte->securityQuals)
	{
		Node	   *qual = (Node *) lfirst(lc);
		Node	   *folded;

		if (IsA(qual, List))
			qual = (Node *) make_ands_explicit((List *) qual);
		folded = estimate_expression_value(&root, copyObject(qual));
		if (folded == NULL || !IsA(folded, Const) || ((Const *) folded)->constisnull ||
			!DatumGetBool(((Const *) folded)->constvalue))
			return false;
	}
	return true;
}

static void lookup_query_tree(Query *q, LookupContext *cxt);

/* Strip the relabelling and collation nodes around an expression. */
static Node *
lookup_strip(Node *node)
{
	while (node != NULL)
	{
		if (IsA(node, RelabelType))
			node = (Node *) ((RelabelType *) node)->arg;
		else if (IsA(node, CollateExpr))
			node = (Node *) ((CollateExpr *) node)->arg;
		else
			break;
	}
	return node;
}

/*
 * expr, unwrapped, if it is a call of reveal() on a column with constant
 * table and column names; else NULL.
 */
static FuncExpr *
lookup_as_reveal(LookupContext *cxt, Node *expr)
{
	FuncExpr   *fe;

	expr = lookup_strip(expr);
	if (expr == NULL || !IsA(expr, FuncExpr))
		return NULL;
	fe = (FuncExpr *) expr;
	if (!reveal_is_one_of(cxt->reveal_oids, cxt->nreveal, fe->funcid) || list_length(fe->args) != 4 ||
		!IsA(linitial(fe->args), Var) || !IsA(lsecond(fe->args), Const) ||
		!IsA(lthird(fe->args), Const) ||
		((Const *) lsecond(fe->args))->constisnull ||
		((Const *) lthird(fe->args))->constisnull)
		return NULL;
	return fe;
}

/* The reveal() call a masking view's column is, or NULL. */
static FuncExpr *
lookup_reveal_call(LookupContext *cxt, Query *view, AttrNumber attno)
{
	TargetEntry *tle;

	if (attno <= 0 || attno > list_length(view->targetList))
		return NULL;
	tle = list_nth_node(TargetEntry, view->targetList, attno - 1);
	if (tle->resjunk || tle->resno != attno)
		return NULL;
	return lookup_as_reveal(cxt, (Node *) tle->expr);
}

/*
 * Is node a constant or a parameter, possibly relabelled (a varchar
 * compared as text), of type typid?
 */
static bool
lookup_is_value(Node *node, Oid typid)
{
	Node	   *inner = lookup_strip(node);

	if (node == NULL || exprType(node) != typid)
		return false;
	return IsA(inner, Const) ||
		(IsA(inner, Param) && ((Param *) inner)->paramkind == PARAM_EXTERN);
}

/*
 * Is node, of the array type of elemtype, a list of values in the sense of
 * lookup_is_value: an array constant, a parameter (`= ANY ($1)`), or
 * ARRAY[...] / IN (...) of constants and parameters -- possibly each
 * element relabelled without a function, as a varchar[] parameter is
 * compared as text[]?  Nothing else: an element computed per row or from
 * a subquery would make the probe's work a row's, not the statement's.
 */
static bool
lookup_is_array_value(Node *node, Oid elemtype)
{
	Node	   *inner = lookup_strip(node);
	Oid			arraytype = get_array_type(elemtype);
	ListCell   *lc;

	if (node == NULL || !OidIsValid(arraytype) || exprType(node) != arraytype)
		return false;
	if (IsA(inner, ArrayCoerceExpr))
	{
		ArrayCoerceExpr *coerce = (ArrayCoerceExpr *) inner;
		Node	   *each = lookup_strip((Node *) coerce->elemexpr);

		if (each == NULL || !IsA(each, CaseTestExpr))
			return false;
		elemtype = get_element_type(exprType((Node *) coerce->arg));
		inner = lookup_strip((Node *) coerce->arg);
	}
	if (IsA(inner, Const))
		return true;
	if (IsA(inner, Param))
		return ((Param *) inner)->paramkind == PARAM_EXTERN;
	if (!IsA(inner, ArrayExpr) || ((ArrayExpr *) inner)->multidims)
		return false;
	foreach(lc, ((ArrayExpr *) inner)->elements)
	{
		if (!lookup_is_value((Node *) lfirst(lc), elemtype))
			return false;
	}
	return true;
}

/*
 * The reveal() call that expr -- one side of a filter of the query whose
 * range table entry varno is view -- reads, if expr is a column of view.
 */
static FuncExpr *
lookup_view_column(LookupContext *cxt, Query *view, Index varno, Node *expr)
{
	Var		   *var;

	expr = lookup_strip(expr);
	if (expr == NULL || !IsA(expr, Var))
		return NULL;
	var = (Var *) expr;
	if (var->varno != (int) varno || var->varlevelsup != 0)
		return NULL;
	return lookup_reveal_call(cxt, view, var->varattno);
}

/*
 * The reveal() call expr is, in a write on a masking view that write.c
 * rewrote onto its base table (q's result relation, reached as the views'
 * owner): there the view's columns are their expressions already.
 */
static FuncExpr *
lookup_direct_column(LookupContext *cxt, Query *q, Node *expr)
{
	FuncExpr   *fe = lookup_as_reveal(cxt, expr);
	Var		   *var;

	if (fe == NULL)
		return NULL;
	var = (Var *) linitial(fe->args);
	if (var->varlevelsup != 0 || var->varno != q->resultRelation)
		return NULL;
	return fe;
}

/*
 * If qual is `view column = value` or `view column = ANY (values)` -- an
 * IN list -- for view (range table index varno of q), with the column a
 * reveal() the current role sees in clear on every row, add the same
 * comparison on the stored column to the view's subquery (see the file
 * header).
 */
static void
lookup_try_qual(LookupContext *cxt, Query *view, Index varno, Node *qual, bool direct)
{
	List	   *args;
	Oid			qual_opno;
	Oid			collid;
	bool		is_array;
	Node	   *value;
	FuncExpr   *reveal;
	Var		   *stored;
	Oid			stored_type;
	Oid			opno;
	Oid			relid;
	const char *attname;
	Expr	   *compared;
	Expr	   *added;
	RangeTblEntry *base_rte;
	bool		encrypted;

	if (IsA(qual, OpExpr))
	{
		args = ((OpExpr *) qual)->args;
		qual_opno = ((OpExpr *) qual)->opno;
		collid = ((OpExpr *) qual)->inputcollid;
		is_array = false;
	}
	else if (IsA(qual, ScalarArrayOpExpr) && ((ScalarArrayOpExpr *) qual)->useOr)
	{
		args = ((ScalarArrayOpExpr *) qual)->args;
		qual_opno = ((ScalarArrayOpExpr *) qual)->opno;
		collid = ((ScalarArrayOpExpr *) qual)->inputcollid;
		is_array = true;
	}
	else
		return;
	if (list_length(args) != 2)
		return;
	/* (the array of `= ANY` is always on the right) */
	if ((reveal = direct ? lookup_direct_column(cxt, view, linitial(args)) :
		 lookup_view_column(cxt, view, varno, linitial(args))) != NULL)
		value = lsecond(args);
	else if (!is_array &&
			 (reveal = direct ? lookup_direct_column(cxt, view, lsecond(args)) :
			  lookup_view_column(cxt, view, varno, lsecond(args))) != NULL)
		value = linitial(args);
	else
		return;
	/* Only a deterministic comparison means the same on stored bytes. */
	if (OidIsValid(collid) && !get_collation_isdeterministic(collid))
		return;

	stored = (Var *) linitial(reveal->args);
	stored_type = stored->vartype;
	encrypted = stored_type == cxt->encrypted_text || stored_type == cxt->encrypted_bytea;
	if (encrypted)
	{
		Oid			plain = stored_type == cxt->encrypted_text ? TEXTOID : BYTEAOID;
		Oid			probe;
		Oid			probe_type;
		FuncExpr   *call;

		/* The view's column is text (bytea): the same equality on it. */
		if (qual_opno != (plain == TEXTOID ? TextEqualOperator : ByteaEqualOperator))
			return;
		if (is_array)
		{
			if (!lookup_is_array_value(value, plain))
				return;
			probe = enctype_array_probe_function(stored_type);
			probe_type = get_array_type(stored_type);
		}
		else
		{
			if (!lookup_is_value(value, plain))
				return;
			probe = enctype_probe_function(stored_type);
			probe_type = stored_type;
		}
		if (!OidIsValid(probe) || !OidIsValid(probe_type))
			return;
		call = makeFuncExpr(probe, probe_type, list_make1(copyObject(value)),
							InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		call->location = PII_SITE_MARK;
		compared = (Expr *) call;
		/* cppcheck-suppress unknownEvaluationOrder ; the two makeString() are independent */
		opno = OpernameGetOprid(list_make2(makeString("pg_catalog"), makeString("=")),
								stored_type, stored_type);
	}
	else
	{
		TypeCacheEntry *tce = lookup_type_cache(stored_type, TYPECACHE_EQ_OPR);

		if (qual_opno != tce->eq_opr ||
			!(is_array ? lookup_is_array_value(value, stored_type) :
			  lookup_is_value(value, stored_type)))
			return;
		compared = (Expr *) copyObject(value);
		opno = qual_opno;
	}
	if (!OidIsValid(opno))
		return;

	/* Whichever way it is decided, the plan is the role's own. */
	cxt->for_role = true;
	relid = DatumGetObjectId(((Const *) lsecond(reveal->args))->constvalue);
	attname = NameStr(*DatumGetName(((Const *) lthird(reveal->args))->constvalue));
	/*
	 * (Not on a Citus table: the workers admit a protected column only
	 * inside reveal() -- cluster.c -- so the filter stays the view's.)
	 */
	if (views_is_citus(relid) || !policy_clear_for_all_rows(relid, attname, encrypted))
		return;
	if (stored->varlevelsup != 0 || stored->varno < 1 ||
		stored->varno > list_length(view->rtable))
		return;
	base_rte = rt_fetch(stored->varno, view->rtable);

	/*
	 * The stored column must be the column reveal() names, of the table it
	 * names.  Anyone may call reveal() in a subquery of their own, on a
	 * column of their own table of envelopes (a stolen dump), naming a
	 * protected column they see in clear: a comparison added there would
	 * be evaluated on every row before reveal() refuses, so whether the
	 * statement reached reveal() -- and was refused -- would tell whether
	 * the value searched for matched an envelope.  On the protected table
	 * itself, only its masking view's scan gets past the permission check.
	 */
	if (base_rte->rtekind != RTE_RELATION || base_rte->relid != relid ||
		stored->varattno != get_attnum(relid, attname))
		return;

	if (is_array)
	{
		ScalarArrayOpExpr *any = makeNode(ScalarArrayOpExpr);

		any->opno = opno;
		any->opfuncid = get_opcode(opno);
		any->hashfuncid = InvalidOid;
		any->negfuncid = InvalidOid;
		any->useOr = true;
		any->inputcollid = collid;
		/* cppcheck-suppress unknownEvaluationOrder ; copyObject() and compared are independent */
		any->args = list_make2(copyObject(stored), compared);
		any->location = -1;
		added = (Expr *) any;
	}
	else
	{
		added = make_opclause(opno, BOOLOID, false, (Expr *) copyObject(stored),
							  compared, InvalidOid, collid);
		set_opfuncid((OpExpr *) added);
	}
	if (!lookup_policies_hide_nothing(base_rte))
	{
		if (!OidIsValid(cxt->after_policies))
			return;
		added = (Expr *) makeFuncExpr(cxt->after_policies, BOOLOID, list_make1(added),
									  InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	}
	view->jointree->quals = make_and_qual(view->jointree->quals, (Node *) added);
}

/* Look at the WHERE clause of q for filters on the masking views it reads. */
static void
lookup_query(Query *q, LookupContext *cxt)
{
	List	   *quals;
	ListCell   *lc;
	Index		varno = 0;

	if (q->jointree == NULL || q->jointree->quals == NULL)
		return;
	quals = make_ands_implicit((Expr *) q->jointree->quals);
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
		ListCell   *lq;

		varno++;
		if (rte->rtekind != RTE_SUBQUERY || rte->subquery == NULL ||
			rte->security_barrier || rte->subquery->jointree == NULL)
			continue;
		foreach(lq, quals)
			lookup_try_qual(cxt, rte->subquery, varno, lfirst(lq), false);
	}
#ifdef COMPAT_FAST_WRITES
	/* An UPDATE or DELETE on a masking view, rewritten onto its base table */
	if ((q->commandType == CMD_UPDATE || q->commandType == CMD_DELETE) &&
		q->resultRelation > 0 && OidIsValid(views_owner_role()) &&
		rt_fetch(q->resultRelation, q->rtable)->checkAsUser == views_owner_role() &&
		OidIsValid(views_table_of(rt_fetch(q->resultRelation, q->rtable)->relid)))
	{
		foreach(lc, quals)
			lookup_try_qual(cxt, q, q->resultRelation, lfirst(lc), true);
	}
#endif
}

/* Subqueries in expressions (SubLinks): their queries. */
static bool
lookup_sublink_walker(Node *node, LookupContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, SubLink))
	{
		lookup_query_tree((Query *) ((SubLink *) node)->subselect, cxt);
		return expression_tree_walker(((SubLink *) node)->testexpr,
									  lookup_sublink_walker, (void *) cxt);
	}
	return expression_tree_walker(node, lookup_sublink_walker, (void *) cxt);
}

/*
 * q and every query in it: subqueries in FROM, CTEs, and -- only when it
 * has any, since walking every expression costs -- SubLinks.
 */
static void
lookup_query_tree(Query *q, LookupContext *cxt)
{
	ListCell   *lc;

	check_stack_depth();
	lookup_query(q, cxt);
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_SUBQUERY && rte->subquery != NULL)
			lookup_query_tree(rte->subquery, cxt);
	}
	foreach(lc, q->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query))
			lookup_query_tree((Query *) cte->ctequery, cxt);
	}
	if (q->hasSubLinks)
		(void) query_tree_walker(q, lookup_sublink_walker, (void *) cxt,
								 QTW_IGNORE_RANGE_TABLE | QTW_IGNORE_CTE_SUBQUERIES);
}

/* pii_guard._after_policies(boolean), or InvalidOid (before 0.3). */
static Oid
lookup_after_policies_oid(void)
{
	Oid			nsp = pii_guard_schema_oid(true);
	Oid			argtype = BOOLOID;

	if (!OidIsValid(nsp))
		return InvalidOid;
	return GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
						   CStringGetDatum("_after_policies"),
						   PointerGetDatum(buildoidvector(&argtype, 1)),
						   ObjectIdGetDatum(nsp));
}

/*
 * Add the indexable comparisons (see the file header) to a query about to
 * be planned.  True if it has a filter they apply to, added or not: then
 * its plan depends on the role and the policy either way.
 */
bool
lookup_add_quals(Query *parse)
{
	LookupContext cxt;

	memset(&cxt, 0, sizeof(cxt));
	cxt.nreveal = reveal_functions(&cxt.reveal_oids);
	if (cxt.nreveal == 0)
		return false;
	cxt.encrypted_text = enctype_encrypted_text_oid();
	cxt.encrypted_bytea = enctype_encrypted_bytea_oid();
	cxt.after_policies = lookup_after_policies_oid();
	lookup_query_tree(parse, &cxt);
	return cxt.for_role;
}

/* A role joined or left a profile: plans made for it may be stale. */
static void
lookup_membership_callback(Datum arg pg_attribute_unused(),
						   int cacheid pg_attribute_unused(),
						   uint32 hashvalue pg_attribute_unused())
{
	ResetPlanCache();
}

void
lookup_register_callbacks(void)
{
	CacheRegisterSyscacheCallback(AUTHMEMROLEMEM, lookup_membership_callback, (Datum) 0);
}

PG_FUNCTION_INFO_V1(pii_guard_after_policies);

/*
 * SQL function: _after_policies(boolean) returns boolean
 *
 * The identity, not leakproof: a lookup comparison wrapped in it is
 * evaluated after the row-level security policies (see the file header).
 */
Datum
pii_guard_after_policies(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
