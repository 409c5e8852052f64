/*-------------------------------------------------------------------------
 *
 * reveal.c
 *		reveal(), the function masking views call on every protected column,
 *		and the proof that a call is a masking view's own scan of its own
 *		row.
 *
 * The per-row path, top-down: reveal() -> the call site's cached decision
 * (policy.c) -> the audit note (audit.c) -> decrypting the envelope
 * (crypto.c) -> the mask (reveal_mask).  Export limits count where the
 * values leave the statement (exports.c), not here.
 *
 * Which calls may reveal.  reveal(value, base, col, row_key) decides by
 * the current role's policy for base.col and the row key: it would decrypt
 * any envelope handed to it, under any row key.  So it returns anything
 * only when it is evaluated by a masking view's query over its base table,
 * on the value of the row being read, with that row's own key -- and that
 * is established from the plan the executor runs, not from what the query
 * or any catalog says.  When a plan is made (hooks.c's planner hook),
 * reveal_prove_plan() walks every expression of every plan node; for each
 * call of reveal() it follows the value and the row key through the plan
 * -- join inputs, sorts, appends, subquery and CTE scans, index-only scans
 * -- down to the scan that produces them, and requires that:
 *
 *	- both are plain columns of the same scan, of the same row (or of the
 *	  same row a ModifyTable node writes, for its RETURNING list);
 *	- that scan reads base (or a partition or inheritance child of it, as
 *	  this query expanded it; on a Citus worker, a shard of it) and is
 *	  checked as pii_guard_owner -- the owner of the masking views, whose
 *	  expansion is the only way a governed role reaches a base table past
 *	  the fail-closed check (on a worker, cluster.c's admission of the
 *	  coordinator's query on the shard);
 *	- the value is the column named col and the key is base's row key.
 *
 * A call that passes is marked (its location becomes PII_SITE_MARK, a value
 * no parser or stored expression carries); every other call keeps -1.
 * A passing call whose value goes nowhere outside is marked otherwise: a
 * direct argument of a built-in comparison (or IS NULL) in a condition
 * that chooses rows (a filter, a join's, an index's, WITH CHECK, ON
 * CONFLICT ... WHERE) PII_SITE_MARK_QUIET -- a search: the read event says
 * the statement searched by the column, and counts nothing; the value an
 * UPDATE of its own base table writes back into the column it came from
 * (SET col = col) PII_SITE_MARK_WRITE -- no read.  A value that reaches a
 * function, a cast or another column stays a read.  They decide as any
 * proved call does.  So a search that finds
 * nothing is not a read of every row it looked at, and an UPDATE's read
 * event names the columns it returns, not those its SET reads.  A node
 * the planner put in two places is marked by the one that outputs it.  At
 * its first call per site, reveal() refuses an unmarked site (42501,
 * audited) unless the user is a superuser.  So a rule, a policy, a
 * default, a generated column, a CHECK or domain constraint, an index
 * expression, a trigger's WHEN, a view, a function of any language, a
 * prepared statement or a typed query -- anything of a governed role's
 * making -- may name reveal(), but none of them ever gets a value from it:
 * expressions the executor evaluates from the catalogs never pass through
 * the planner hook, and those that do cannot be proved.  Table owners are
 * exempt from masking but not from this rule: their own queries read the
 * base table directly.
 *
 * The proof runs once per plan (cached plans keep their marks) and only
 * when the plan calls reveal() at all.
 *
 * Cache.  reveal() keeps in fn_extra the decision for its call site, the
 * mask function's FmgrInfo and the row key's output function, so that a
 * row costs a generation check, a user check and a time comparison.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "nodes/pathnodes.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

/* What reveal() keeps in fn_extra. */
typedef struct RevealCache
{
	void	   *audit_site;		/* audit.c's per-call-site state */
	uint64		generation;
	Oid			userid;
	Decision   *decision;
	/* Derived from the decision when it is (re)loaded, for the row path: */
	bool		never_expires;	/* decision->expires == DT_NOEND */
	bool		governed;		/* has a rule and the user is not exempt */
	bool		per_row;		/* row-specific grants: look at the row key */
	bool		quiet;			/* the site's value goes nowhere: no read */
	bool		search;			/* ... it is in a condition (a search) */
	ColumnAccess access;		/* the access for every row, unless per_row */
	FmgrInfo	mask_finfo;
	bool		mask_ready;
	Oid			rowkey_type;
	FmgrInfo	rowkey_out;
	bool		rowkey_ready;
	FunctionCallInfo mask_fcinfo;
	/* _write_set() only, for this user: */
	bool		write_ready;
	bool		may_select;		/* sees the view's column */
	bool		may_update;		/* may update it */
	bool		key_locked;		/* the row key, and a governed role */
	char		kind;			/* ENV_KIND_* of an encrypted column, or 0 */
	bool		value_sealed;	/* the new value is an envelope (EXCLUDED's) */
	int16		value_typlen;
	bool		value_typbyval;
} RevealCache;



/*
 * The OIDs of the reveal() functions in this database (looked up through
 * the syscache: this serves the planner, not rows).
 */
static int
reveal_lookup_oids(Oid *oids, int max)
{
	Oid			nsp = pii_guard_schema_oid(true);
	CatCList   *list;
	int			i;
	int			n = 0;

	if (!OidIsValid(nsp))
		return 0;
	/* (and _reveal_shard(), reveal() declared IMMUTABLE for Citus: see write.c) */
	for (int name = 0; name < 2; name++)
	{
		list = SearchSysCacheList1(PROCNAMEARGSNSP, CStringGetDatum(name == 0 ? "reveal" : "_reveal_shard"));
		for (i = 0; i < list->n_members && n < max; i++)
		{
			Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(&list->members[i]->tuple);

			if (proc->pronamespace == nsp)
				oids[n++] = proc->oid;
		}
		ReleaseSysCacheList(list);
	}
	return n;
}

/*
 * The reveal() functions' OIDs, kept while the policy generation holds (it
 * moves when the extension goes or comes).  Returns how many.
 */
int
reveal_functions(const Oid **oids)
{
	static Oid	cached[8];
	static int	ncached = 0;
	static uint64 cached_generation = 0;
	uint64		generation = policy_current_generation();

	if (cached_generation != generation)
	{
		ncached = reveal_lookup_oids(cached, lengthof(cached));
		cached_generation = generation;
	}
	*oids = cached;
	return ncached;
}

/* What reveal_prove_plan carries through the plan. */
typedef struct ProofContext
{
	PlannedStmt *stmt;
	const Oid  *reveal_oids;
	int			nreveal;
	Oid			view_owner;		/* pii_guard_owner */
	Plan	   *node;			/* the node whose expressions are walked */
	List	   *quiet_sites;	/* ... calls there whose value goes nowhere */
	int			quiet_mark;		/* ... marked this (QUIET or WRITE) */
	List	   *writes;			/* WriteChild: children of ModifyTable nodes */
	Oid			base;			/* the call being proved: its table ... */
	const char *col;			/* ... and column */
	List	   *params;			/* ParamSources of correlated subplans */
	Index		proved_rti;		/* the scan the last call proved reads */
} ProofContext;

/* The child of a ModifyTable: the new rows of the relations it writes. */
typedef struct WriteChild
{
	Plan	   *child;
	List	   *relids;			/* Oids of the relations written */
	List	   *rtis;			/* ... and their range table indexes */
} WriteChild;

/*
 * A parameter of a correlated subplan: the value the parent plan node
 * passes (an argument of the SubPlan expression in it), for one parent row.
 */
typedef struct ParamSource
{
	int			paramid;
	Plan	   *parent;
	SubPlan    *subplan;		/* (the call: same call, same parent row) */
	Expr	   *arg;
} ParamSource;

static bool reveal_prove_pair(ProofContext *cx, Plan *plan, Expr *value,
							  Expr *key, int depth);
static bool reveal_prove_params(ProofContext *cx, Param *value, Param *key, int depth);

/* The expression of output column attno of plan, or NULL. */
static Expr *
reveal_output(Plan *plan, AttrNumber attno)
{
	TargetEntry *tle;

	if (plan == NULL || attno <= 0 || attno > list_length(plan->targetlist))
		return NULL;
	tle = list_nth_node(TargetEntry, plan->targetlist, attno - 1);
	return tle->expr;
}

/* The range table index of the top parent of an inheritance child. */
static Index
reveal_top_parent(PlannedStmt *stmt, Index rti)
{
	int			guard = list_length(stmt->rtable);
	bool		moved = true;

	while (moved && guard-- > 0)
	{
		ListCell   *lc;

		moved = false;
		foreach(lc, stmt->appendRelations)
		{
			AppendRelInfo *ai = lfirst_node(AppendRelInfo, lc);

			if (ai->child_relid == rti)
			{
				rti = ai->parent_relid;
				moved = true;
				break;
			}
		}
	}
	return rti;
}

/*
 * The base case: columns value_att and key_att of range table entry rti,
 * which a scan reads.  Proved if the entry is base (or one of its children
 * in this query, or on a Citus worker one of its shards, which cluster.c
 * admitted), reached through a view of pii_guard_owner's, and the columns
 * are col and base's row key.
 */
static bool
reveal_prove_scan(ProofContext *cx, Index rti, AttrNumber value_att,
				  AttrNumber key_att)
{
	RangeTblEntry *rte;
	RangeTblEntry *top;
	const char *row_key;
	char	   *name;

	if (rti < 1 || rti > (Index) list_length(cx->stmt->rtable))
		return false;
	rte = rt_fetch(rti, cx->stmt->rtable);
	if (rte->rtekind != RTE_RELATION)
		return false;
	top = rt_fetch(reveal_top_parent(cx->stmt, rti), cx->stmt->rtable);
	if (top->rtekind != RTE_RELATION ||
		(top->relid != cx->base && views_table_of_shard(top->relid) != cx->base) ||
		!OidIsValid(cx->view_owner) ||
		compat_rte_check_as_user(cx->stmt, top) != cx->view_owner)
		return false;
	row_key = views_row_key(cx->base);
	if (row_key == NULL)
		return false;
	/* By name: a partition may number its columns differently. */
	name = get_attname(rte->relid, value_att, true);
	if (name == NULL || strcmp(name, cx->col) != 0)
		return false;
	name = get_attname(rte->relid, key_att, true);
	if (name == NULL || strcmp(name, row_key) != 0)
		return false;
	cx->proved_rti = rti;
	return true;
}

/* Prove the pair in every child of an Append or MergeAppend. */
static bool
reveal_prove_children(ProofContext *cx, List *children, AttrNumber value_att,
					  AttrNumber key_att, int depth)
{
	ListCell   *lc;

	if (children == NIL)
		return false;
	foreach(lc, children)
	{
		Plan	   *child = (Plan *) lfirst(lc);

		if (!reveal_prove_pair(cx, child, reveal_output(child, value_att),
							   reveal_output(child, key_att), depth + 1))
			return false;
	}
	return true;
}

/*
 * Two parameters of a correlated subplan (`SELECT (SELECT c.phone) FROM
 * customers c`: the view's reveal() ends up in the subplan, on parameters):
 * proved if one call of the subplan passes both, from expressions of its
 * parent node that are proved there -- the same parent row.
 */
static bool
reveal_prove_params(ProofContext *cx, Param *value, Param *key, int depth)
{
	ParamSource *pv = NULL;
	ParamSource *pk = NULL;
	ListCell   *lc;

	if (value->paramkind != PARAM_EXEC || key->paramkind != PARAM_EXEC)
		return false;
	foreach(lc, cx->params)
	{
		ParamSource *ps = (ParamSource *) lfirst(lc);

		if (ps->paramid == value->paramid)
		{
			if (pv != NULL)
				return false;	/* (set in two places: not followed) */
			pv = ps;
		}
		if (ps->paramid == key->paramid)
		{
			if (pk != NULL)
				return false;
			pk = ps;
		}
	}
	if (pv == NULL || pk == NULL || pv->subplan != pk->subplan || pv->parent != pk->parent)
		return false;
	return reveal_prove_pair(cx, pv->parent, pv->arg, pk->arg, depth + 1);
}

/*
 * Do expressions value and key, evaluated in plan node plan, both come
 * from the same row of a scan of the protected table cx is proving for?
 * Follows them down the plan: a join's or upper node's input columns, an
 * append's children, a subquery's or CTE's outputs, an index-only scan's
 * index columns.  Anything else -- a constant, a parameter, a function of
 * columns, a column of another relation, two different rows -- is not.
 */
static bool
reveal_prove_pair(ProofContext *cx, Plan *plan, Expr *value, Expr *key, int depth)
{
	Var		   *v;
	Var		   *k;

	check_stack_depth();
	if (plan == NULL || value == NULL || key == NULL || depth > 100)
		return false;
	if (IsA(value, Param) && IsA(key, Param))
		return reveal_prove_params(cx, (Param *) value, (Param *) key, depth);
	if (!IsA(value, Var) || !IsA(key, Var))
		return false;
	v = (Var *) value;
	k = (Var *) key;
	if (v->varlevelsup != 0 || k->varlevelsup != 0 || v->varno != k->varno)
		return false;

	switch (v->varno)
	{
		case OUTER_VAR:
			if (IsA(plan, Append))
				return reveal_prove_children(cx, ((Append *) plan)->appendplans,
											 v->varattno, k->varattno, depth);
			if (IsA(plan, MergeAppend))
				return reveal_prove_children(cx, ((MergeAppend *) plan)->mergeplans,
											 v->varattno, k->varattno, depth);
			return reveal_prove_pair(cx, outerPlan(plan),
									 reveal_output(outerPlan(plan), v->varattno),
									 reveal_output(outerPlan(plan), k->varattno), depth + 1);
		case INNER_VAR:
			return reveal_prove_pair(cx, innerPlan(plan),
									 reveal_output(innerPlan(plan), v->varattno),
									 reveal_output(innerPlan(plan), k->varattno), depth + 1);
		case INDEX_VAR:
			{
				IndexOnlyScan *ios = (IndexOnlyScan *) plan;
				Expr	   *iv;
				Expr	   *ik;

				if (!IsA(plan, IndexOnlyScan) ||
					v->varattno <= 0 || v->varattno > list_length(ios->indextlist) ||
					k->varattno <= 0 || k->varattno > list_length(ios->indextlist))
					return false;
				iv = list_nth_node(TargetEntry, ios->indextlist, v->varattno - 1)->expr;
				ik = list_nth_node(TargetEntry, ios->indextlist, k->varattno - 1)->expr;
				if (!IsA(iv, Var) || !IsA(ik, Var) ||
					(Index) ((Var *) iv)->varno != ios->scan.scanrelid ||
					(Index) ((Var *) ik)->varno != ios->scan.scanrelid)
					return false;
				return reveal_prove_scan(cx, ios->scan.scanrelid,
										 ((Var *) iv)->varattno, ((Var *) ik)->varattno);
			}
		default:
			break;
	}

	/* A column of the range table entry the node scans. */
	switch (nodeTag(plan))
	{
		case T_SeqScan:
		case T_SampleScan:
		case T_IndexScan:
		case T_IndexOnlyScan:
		case T_BitmapHeapScan:
		case T_TidScan:
		case T_TidRangeScan:
			if (((Scan *) plan)->scanrelid != (Index) v->varno)
				return false;
			return reveal_prove_scan(cx, v->varno, v->varattno, k->varattno);
		case T_SubqueryScan:
			{
				Plan	   *sub = ((SubqueryScan *) plan)->subplan;

				if (((Scan *) plan)->scanrelid != (Index) v->varno)
					return false;
				return reveal_prove_pair(cx, sub, reveal_output(sub, v->varattno),
										 reveal_output(sub, k->varattno), depth + 1);
			}
		case T_ModifyTable:
			/* RETURNING (and ON CONFLICT's SET): a result relation's row */
			if (!list_member_int(((ModifyTable *) plan)->resultRelations, v->varno))
				return false;
			return reveal_prove_scan(cx, v->varno, v->varattno, k->varattno);
		case T_CteScan:
			{
				CteScan    *cs = (CteScan *) plan;
				Plan	   *sub;

				if (cs->scan.scanrelid != (Index) v->varno ||
					cs->ctePlanId < 1 || cs->ctePlanId > list_length(cx->stmt->subplans))
					return false;
				sub = (Plan *) list_nth(cx->stmt->subplans, cs->ctePlanId - 1);
				return reveal_prove_pair(cx, sub, reveal_output(sub, v->varattno),
										 reveal_output(sub, k->varattno), depth + 1);
			}
		default:
			return false;
	}
}

/* Is funcid one of the reveal() functions? */
static inline bool
reveal_is_reveal(ProofContext *cx, Oid funcid)
{
	return reveal_is_one_of(cx->reveal_oids, cx->nreveal, funcid);
}

/* Prove one call of reveal() found in cx->node's expressions. */
static bool
reveal_prove_call(ProofContext *cx, FuncExpr *fe)
{
	Const	   *base;
	Const	   *col;

	if (list_length(fe->args) != 4 ||
		!IsA(lsecond(fe->args), Const) || !IsA(lthird(fe->args), Const))
		return false;
	base = lsecond_node(Const, fe->args);
	col = lthird_node(Const, fe->args);
	if (base->constisnull || col->constisnull ||
		base->consttype != REGCLASSOID || col->consttype != NAMEOID)
		return false;
	cx->base = DatumGetObjectId(base->constvalue);
	cx->col = NameStr(*DatumGetName(col->constvalue));
	return reveal_prove_pair(cx, cx->node, linitial(fe->args), lfourth(fe->args), 0);
}

/* Expression walker: mark the reveal() calls that are proved, unmark the rest. */
static bool
reveal_expr_walker(Node *node, ProofContext *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && reveal_is_reveal(cx, ((FuncExpr *) node)->funcid))
	{
		FuncExpr   *fe = (FuncExpr *) node;

		if (!reveal_prove_call(cx, fe))
			fe->location = -1;
		else if (fe->location == PII_SITE_MARK)
			;					/* (output elsewhere: stays a read) */
		else if (list_member_ptr(cx->quiet_sites, fe))
			fe->location = cx->quiet_mark;
		else
			fe->location = PII_SITE_MARK;
	}
	return expression_tree_walker(node, reveal_expr_walker, (void *) cx);
}

/*
 * Call fn for every expression of plan node plan (its target list, quals
 * and the node-specific ones), then for its children's.  An expression is
 * given with the node it is evaluated in, whose inputs its Vars refer to.
 */
static void
plan_walk_node(Plan *plan, PlanExprCallback fn, void *arg)
{
	List	   *children = NIL;
	ListCell   *lc;

	if (plan == NULL)
		return;
	check_stack_depth();
	fn(plan, (Node *) plan->targetlist, arg);
	fn(plan, (Node *) plan->qual, arg);
	switch (nodeTag(plan))
	{
		case T_Result:
			fn(plan, ((Result *) plan)->resconstantqual, arg);
			break;
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			fn(plan, (Node *) ((Join *) plan)->joinqual, arg);
			if (IsA(plan, MergeJoin))
				fn(plan, (Node *) ((MergeJoin *) plan)->mergeclauses, arg);
			if (IsA(plan, HashJoin))
			{
				fn(plan, (Node *) ((HashJoin *) plan)->hashclauses, arg);
				fn(plan, (Node *) ((HashJoin *) plan)->hashkeys, arg);
			}
			break;
		case T_Hash:
			fn(plan, (Node *) ((Hash *) plan)->hashkeys, arg);
			break;
		case T_IndexScan:
			fn(plan, (Node *) ((IndexScan *) plan)->indexqualorig, arg);
			fn(plan, (Node *) ((IndexScan *) plan)->indexorderbyorig, arg);
			break;
		case T_IndexOnlyScan:
			fn(plan, (Node *) ((IndexOnlyScan *) plan)->recheckqual, arg);
			break;
		case T_BitmapHeapScan:
			fn(plan, (Node *) ((BitmapHeapScan *) plan)->bitmapqualorig, arg);
			break;
		case T_Limit:
			fn(plan, ((Limit *) plan)->limitOffset, arg);
			fn(plan, ((Limit *) plan)->limitCount, arg);
			break;
		case T_ModifyTable:
			fn(plan, (Node *) ((ModifyTable *) plan)->returningLists, arg);
			fn(plan, (Node *) ((ModifyTable *) plan)->withCheckOptionLists, arg);
			fn(plan, (Node *) ((ModifyTable *) plan)->onConflictSet, arg);
			fn(plan, ((ModifyTable *) plan)->onConflictWhere, arg);
			break;
		case T_FunctionScan:
			fn(plan, (Node *) ((FunctionScan *) plan)->functions, arg);
			break;
		case T_ValuesScan:
			fn(plan, (Node *) ((ValuesScan *) plan)->values_lists, arg);
			break;
		default:
			break;
	}

	plan_walk_node(plan->lefttree, fn, arg);
	plan_walk_node(plan->righttree, fn, arg);
	switch (nodeTag(plan))
	{
		case T_Append:
			children = ((Append *) plan)->appendplans;
			break;
		case T_MergeAppend:
			children = ((MergeAppend *) plan)->mergeplans;
			break;
		case T_BitmapAnd:
			children = ((BitmapAnd *) plan)->bitmapplans;
			break;
		case T_BitmapOr:
			children = ((BitmapOr *) plan)->bitmapplans;
			break;
		case T_SubqueryScan:
			plan_walk_node(((SubqueryScan *) plan)->subplan, fn, arg);
			break;
		case T_CustomScan:
			children = ((CustomScan *) plan)->custom_plans;
			break;
		default:
			break;
	}
	foreach(lc, children)
		plan_walk_node((Plan *) lfirst(lc), fn, arg);
}

/*
 * Call fn for every expression of every node of stmt's plan and of its
 * subplans (SubPlans' and CTEs').  Nodes of a kind not listed in
 * plan_walk_node give their target list and quals only.
 */
void
plan_walk_expressions(PlannedStmt *stmt, PlanExprCallback fn, void *arg)
{
	ListCell   *lc;

	plan_walk_node(stmt->planTree, fn, arg);
	foreach(lc, stmt->subplans)
		plan_walk_node((Plan *) lfirst(lc), fn, arg);
}

/* Expression walker: the parameters correlated SubPlans are passed. */
static bool
reveal_params_walker(Node *node, ProofContext *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, SubPlan))
	{
		SubPlan    *sp = (SubPlan *) node;
		int			n = Min(list_length(sp->parParam), list_length(sp->args));

		for (int i = 0; i < n; i++)
		{
			ParamSource *ps = palloc(sizeof(ParamSource));

			ps->paramid = list_nth_int(sp->parParam, i);
			ps->parent = cx->node;
			ps->subplan = sp;
			ps->arg = (Expr *) list_nth(sp->args, i);
			cx->params = lappend(cx->params, ps);
		}
	}
	return expression_tree_walker(node, reveal_params_walker, (void *) cx);
}

/* plan_walk_expressions callback: the parameters of correlated subplans. */
static void
reveal_find_params(Plan *plan, Node *exprs, void *arg)
{
	ProofContext *cx = (ProofContext *) arg;

	cx->node = plan;
	(void) reveal_params_walker(exprs, cx);
}

/*
 * Does a node's expression list exprs choose rows (a filter, a join's
 * condition, an index's, a gating qual) rather than compute output?
 */
bool
plan_exprs_choose_rows(const Plan *plan, const Node *exprs)
{
	if (exprs == NULL)
		return false;
	if (exprs == (const Node *) plan->qual)
		return true;
	switch (nodeTag(plan))
	{
		case T_NestLoop:
		case T_MergeJoin:
		case T_HashJoin:
			return exprs == (const Node *) ((const Join *) plan)->joinqual ||
				(IsA(plan, MergeJoin) && exprs == (const Node *) ((const MergeJoin *) plan)->mergeclauses) ||
				(IsA(plan, HashJoin) && exprs == (const Node *) ((const HashJoin *) plan)->hashclauses);
		case T_IndexScan:
			return exprs == (const Node *) ((const IndexScan *) plan)->indexqualorig;
		case T_IndexOnlyScan:
			return exprs == (const Node *) ((const IndexOnlyScan *) plan)->recheckqual;
		case T_BitmapHeapScan:
			return exprs == (const Node *) ((const BitmapHeapScan *) plan)->bitmapqualorig;
		case T_Result:
			return exprs == ((const Result *) plan)->resconstantqual;
		default:
			return false;
	}
}

/* plan_walk_expressions callback: the children of ModifyTable nodes. */
static void
/* cppcheck-suppress constParameter ; a PlanExprCallback */
reveal_find_writes(Plan *plan, Node *exprs, void *arg)
{
	ProofContext *cx = (ProofContext *) arg;
	ModifyTable *mt = (ModifyTable *) plan;
	WriteChild *wc;
	ListCell   *lc;

	/* (once per node: with its target list) */
	if (!IsA(plan, ModifyTable) || exprs != (Node *) plan->targetlist ||
		plan->lefttree == NULL || mt->operation != CMD_UPDATE)
		return;
	wc = palloc0(sizeof(WriteChild));
	wc->child = plan->lefttree;
	foreach(lc, mt->resultRelations)
	{
		wc->relids = lappend_oid(wc->relids, rt_fetch(lfirst_int(lc), cx->stmt->rtable)->relid);
		wc->rtis = lappend_int(wc->rtis, lfirst_int(lc));
	}
	if (mt->rootRelation > 0)
		wc->relids = lappend_oid(wc->relids, rt_fetch(mt->rootRelation, cx->stmt->rtable)->relid);
	cx->writes = lappend(cx->writes, wc);
}

/* node, under any relabelling, if it is a call of reveal(); else NULL. */
static FuncExpr *
reveal_call_of(ProofContext *cx, Node *node)
{
	while (node != NULL && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node != NULL && IsA(node, FuncExpr) && reveal_is_reveal(cx, ((FuncExpr *) node)->funcid))
		return (FuncExpr *) node;
	return NULL;
}

/*
 * The calls of reveal() in a condition whose value goes nowhere: a direct
 * argument of a built-in boolean operator (=, <, LIKE, ~, = ANY, ...) or
 * of IS [NOT] NULL, itself a conjunct or under AND/OR/NOT.  A call whose
 * value reaches anything else -- a function, a cast (whose error would
 * show it), an operator of a role's making -- stays a read.
 */
static void
reveal_find_searches(ProofContext *cx, Node *node)
{
	List	   *args = NIL;
	Oid			fn = InvalidOid;
	ListCell   *lc;

	if (node == NULL)
		return;
	if (IsA(node, List))
	{
		foreach(lc, (List *) node)
			reveal_find_searches(cx, (Node *) lfirst(lc));
		return;
	}
	if (IsA(node, BoolExpr))
	{
		reveal_find_searches(cx, (Node *) ((BoolExpr *) node)->args);
		return;
	}
	if (IsA(node, OpExpr) && ((OpExpr *) node)->opresulttype == BOOLOID)
	{
		set_opfuncid((OpExpr *) node);
		fn = ((OpExpr *) node)->opfuncid;
		args = ((OpExpr *) node)->args;
	}
	else if (IsA(node, ScalarArrayOpExpr))
	{
		set_sa_opfuncid((ScalarArrayOpExpr *) node);
		fn = ((ScalarArrayOpExpr *) node)->opfuncid;
		args = ((ScalarArrayOpExpr *) node)->args;
	}
	else if (IsA(node, NullTest))
	{
		fn = F_BOOLEQ;			/* (no function: nothing is passed the value) */
		args = list_make1(((NullTest *) node)->arg);
	}
	if (!OidIsValid(fn) || fn >= FirstNormalObjectId)
		return;
	foreach(lc, args)
	{
		FuncExpr   *fe = reveal_call_of(cx, (Node *) lfirst(lc));

		if (fe != NULL)
			cx->quiet_sites = lappend(cx->quiet_sites, fe);
	}
}

/* Is one of relids, the tables a ModifyTable writes, base (or a shard of it)? */
static bool
reveal_writes_base(List *relids, Oid base)
{
	ListCell   *lc;

	foreach(lc, relids)
		if (lfirst_oid(lc) == base || views_table_of_shard(lfirst_oid(lc)) == base)
			return true;
	return false;
}

/*
 * The calls of reveal() in the new row of a masking view's UPDATE whose
 * value goes back into the column it was read from (SET col = col, as an
 * ORM's whole-row save sends): the target entry is that call, or the
 * value argument of _write_set() for that column, read from the row
 * written (not from another row, as UPDATE ... FROM may).  A value written
 * into another column, or computed, stays a read.
 */
static void
reveal_find_writebacks(ProofContext *cx, List *tlist, WriteChild *wc)
{
	ListCell   *lc;

	foreach(lc, tlist)
	{
		TargetEntry *te = lfirst_node(TargetEntry, lc);
		Node	   *value = (Node *) te->expr;
		const char *col = te->resname;
		FuncExpr   *fe;

		if (te->resjunk)
			continue;
		if (IsA(value, FuncExpr) && PII_SITE_MARKED(((FuncExpr *) value)->location) &&
			(list_length(((FuncExpr *) value)->args) == 5 ||
			 list_length(((FuncExpr *) value)->args) == 6) &&
			IsA(lthird(((FuncExpr *) value)->args), Const) &&
			((Const *) lthird(((FuncExpr *) value)->args))->consttype == NAMEOID &&
			!((Const *) lthird(((FuncExpr *) value)->args))->constisnull)
		{
			/* (_write_set(stored, base, col, row key, value[, may])) */
			col = NameStr(*DatumGetName(((Const *) lthird(((FuncExpr *) value)->args))->constvalue));
			value = (Node *) list_nth(((FuncExpr *) value)->args, 4);
		}
		fe = reveal_call_of(cx, value);
		cx->proved_rti = 0;
		if (fe == NULL || col == NULL || !reveal_prove_call(cx, fe) ||
			strcmp(cx->col, col) != 0 || !reveal_writes_base(wc->relids, cx->base) ||
			!list_member_int(wc->rtis, (int) cx->proved_rti))
			continue;
		cx->quiet_sites = lappend(cx->quiet_sites, fe);
	}
}

/* plan_walk_expressions callback of the proof. */
static void
reveal_prove_exprs(Plan *plan, Node *exprs, void *arg)
{
	ProofContext *cx = (ProofContext *) arg;
	ListCell   *lc;

	cx->node = plan;
	cx->quiet_sites = NIL;
	if (plan_exprs_choose_rows(plan, exprs) ||
		(IsA(plan, ModifyTable) &&
		 (exprs == (Node *) ((ModifyTable *) plan)->withCheckOptionLists ||
		  exprs == ((ModifyTable *) plan)->onConflictWhere)))
	{
		cx->quiet_mark = PII_SITE_MARK_QUIET;
		reveal_find_searches(cx, exprs);
	}
	else if (exprs == (Node *) plan->targetlist)
	{
		cx->quiet_mark = PII_SITE_MARK_WRITE;
		foreach(lc, cx->writes)
			if (((WriteChild *) lfirst(lc))->child == plan)
				reveal_find_writebacks(cx, plan->targetlist, (WriteChild *) lfirst(lc));
	}
	(void) reveal_expr_walker(exprs, cx);
	list_free(cx->quiet_sites);
	cx->quiet_sites = NIL;
}

/*
 * hooks.c, once a plan is made: mark the calls of reveal() that are a
 * masking view's own scan of its own row (see the file header).
 */
void
reveal_prove_plan(PlannedStmt *stmt)
{
	ProofContext cx;

	memset(&cx, 0, sizeof(cx));
	cx.nreveal = reveal_functions(&cx.reveal_oids);
	if (cx.nreveal == 0 || stmt == NULL || stmt->commandType == CMD_UTILITY)
		return;
	cx.stmt = stmt;
	cx.view_owner = views_owner_role();
	if (stmt->subplans != NIL)
		plan_walk_expressions(stmt, reveal_find_params, &cx);
	if (stmt->commandType == CMD_UPDATE || stmt->hasModifyingCTE)
		plan_walk_expressions(stmt, reveal_find_writes, &cx);
	plan_walk_expressions(stmt, reveal_prove_exprs, &cx);
}

/*
 * Can stmt's plan reveal protected values: does it read a protected base
 * table through a pii_guard view, or write through a masking view (whose
 * RETURNING shows its columns)?  (Cheap: the range table only.)
 */
bool
reveal_plan_reveals(PlannedStmt *stmt)
{
	Oid			owner = views_owner_role();
	ListCell   *lc;

	if (!OidIsValid(owner))
		return false;
	foreach(lc, stmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind != RTE_RELATION)
			continue;
		if (compat_rte_check_as_user(stmt, rte) == owner && views_is_protected_base(rte->relid))
			return true;
		if (rte->relkind == RELKIND_VIEW && OidIsValid(views_base_of_view(rte->relid)))
			return true;
	}
	return false;
}

/*
 * A call of reveal() or of a write function at a site neither the plan's
 * proof nor the write rewrite marked: refused, audited.
 */
static void
reveal_refuse_site(FunctionCallInfo fcinfo, Oid relid)
{
	FuncExpr   *fe = (FuncExpr *) fcinfo->flinfo->fn_expr;
	char	   *fn = (fe != NULL && IsA(fe, FuncExpr)) ? get_func_name(fe->funcid) : NULL;

	if (fn == NULL)
		fn = "reveal";
	audit_deny(views_masking_view_name(relid), fn,
			   psprintf("%s() called outside a masking view's own scan or write of its own row", fn));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("pii_guard.%s() can only be used by masking views", fn),
			 errdetail("It works only where a masking view's own read or write of its base table calls it, for the row being read or written."),
			 errhint("Query the table's masking view instead.")));
}

/*
 * reveal() is called by masking views only, on the column it names, and
 * at a call site reveal_prove_plan marked (see the file header).  Checked
 * once per call site:
 *	- the site must be marked, unless the user is a superuser;
 *	- at an unmarked site (a superuser's call), the value must have the
 *	  named column's type (encrypted columns: the same encrypted type), and
 *	  the column must exist, so that no mask function is handed a value of
 *	  another type.  (A marked site's value is that column.)
 */
static void
reveal_check_call(FunctionCallInfo fcinfo)
{
	FuncExpr   *fe = (FuncExpr *) fcinfo->flinfo->fn_expr;
	Oid			relid = PG_GETARG_OID(1);
	Name		attname = PG_GETARG_NAME(2);
	HeapTuple	atttup;
	Oid			coltype = InvalidOid;
	Oid			argtype;

	/*
	 * A marked site's value is the named column itself (the proof, or the
	 * write rewrite, matched it by name): its type is the column's.
	 */
	if (fe != NULL && IsA(fe, FuncExpr) && PII_SITE_MARKED(fe->location))
		return;

	/* (Once per call site, so once per statement: one syscache lookup.) */
	argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	atttup = SearchSysCacheAttName(relid, NameStr(*attname));
	if (HeapTupleIsValid(atttup))
	{
		coltype = ((Form_pg_attribute) GETSTRUCT(atttup))->atttypid;
		ReleaseSysCache(atttup);
	}
	if (!OidIsValid(coltype) || coltype != argtype)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("reveal() was given a value that is not a value of column \"%s\"",
						NameStr(*attname)),
				 errhint("reveal() is called by pii_guard's masking views; query the view instead.")));
	/*
	 * A superuser's own call answers, as pii_guard cannot refuse them
	 * anything -- but not the IMMUTABLE twins of Citus writes
	 * (_reveal_shard, _write_set_shard), which can be stored in what a
	 * superuser may run without meaning to (an index expression, a
	 * generated column of a table someone else made, which a restore or a
	 * COPY fills): a superuser's own write through a masking view has them
	 * proved as anyone's (cluster.c admits the statement).
	 */
	if (superuser() && func_volatile(fcinfo->flinfo->fn_oid) != PROVOLATILE_IMMUTABLE)
		return;
	reveal_refuse_site(fcinfo, relid);
}

/* Load (or reload) the reveal() call-site cache; the slow path. */
static pg_noinline RevealCache *
reveal_cache_refresh(FunctionCallInfo fcinfo)
{
	RevealCache *rc = (RevealCache *) fcinfo->flinfo->fn_extra;
	Oid			userid = GetUserId();
	Decision   *d;

	if (rc == NULL)
	{
		reveal_check_call(fcinfo);
		rc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RevealCache));
		rc->rowkey_type = get_fn_expr_argtype(fcinfo->flinfo, 3);
		if (fcinfo->flinfo->fn_expr != NULL && IsA(fcinfo->flinfo->fn_expr, FuncExpr))
		{
			int			loc = ((FuncExpr *) fcinfo->flinfo->fn_expr)->location;

			rc->search = loc == PII_SITE_MARK_QUIET;
			rc->quiet = rc->search || loc == PII_SITE_MARK_WRITE;
		}
		fcinfo->flinfo->fn_extra = rc;
	}
	if (rc->decision == NULL || rc->generation != policy_current_generation() ||
		rc->userid != userid ||
		GetCurrentStatementStartTimestamp() >= rc->decision->expires)
	{
		Oid			relid = PG_GETARG_OID(1);
		Name		attname = PG_GETARG_NAME(2);

		rc->decision = policy_decide(userid, relid, NameStr(*attname));
		rc->generation = policy_generation;
		rc->userid = userid;
		rc->mask_ready = false;
		rc->write_ready = false;
	}
	d = rc->decision;
	rc->never_expires = d->expires == DT_NOEND;
	rc->governed = d->has_rule && !d->exempt;
	rc->per_row = rc->governed && d->access != ACCESS_CLEAR && d->rowkeys != NULL;
	rc->access = rc->governed ? d->access : ACCESS_CLEAR;
	return rc;
}

/*
 * The reveal() call-site cache.  The per-row fast path: same policy, same
 * user, no grant ending.
 */
static inline RevealCache *
reveal_cache(FunctionCallInfo fcinfo)
{
	RevealCache *rc = (RevealCache *) fcinfo->flinfo->fn_extra;

	if (likely(rc != NULL && rc->decision != NULL &&
			   rc->generation == policy_generation && rc->userid == GetUserId() &&
			   (rc->never_expires ||
				GetCurrentStatementStartTimestamp() < rc->decision->expires)))
		return rc;
	return reveal_cache_refresh(fcinfo);
}

/* The access for a row with a row-specific grant somewhere; the slow path. */
static pg_noinline ColumnAccess
reveal_row_access(FunctionCallInfo fcinfo, RevealCache *rc)
{
	char	   *rowkey;

	if (rc->rowkey_type == INT8OID || rc->rowkey_type == INT4OID || rc->rowkey_type == INT2OID)
	{
		int64		k;

		if (PG_ARGISNULL(3))
			return rc->decision->access;
		k = rc->rowkey_type == INT8OID ? PG_GETARG_INT64(3) :
			rc->rowkey_type == INT4OID ? (int64) PG_GETARG_INT32(3) : (int64) PG_GETARG_INT16(3);
		return policy_row_key_int(rc->decision, k) ? ACCESS_CLEAR : rc->decision->access;
	}

	if (!rc->rowkey_ready)
	{
		Oid			typoutput;
		bool		varlena;

		getTypeOutputInfo(rc->rowkey_type, &typoutput, &varlena);
		fmgr_info_cxt(typoutput, &rc->rowkey_out, fcinfo->flinfo->fn_mcxt);
		rc->rowkey_ready = true;
	}
	rowkey = PG_ARGISNULL(3) ? NULL : OutputFunctionCall(&rc->rowkey_out, PG_GETARG_DATUM(3));
	return policy_row_access(rc->decision, rowkey);
}

/* The access for this call's row. */
static inline ColumnAccess
reveal_access(FunctionCallInfo fcinfo, RevealCache *rc)
{
	if (likely(!rc->per_row))
		return rc->access;
	return reveal_row_access(fcinfo, rc);
}

/*
 * Tell the audit what this call produced (exempt roles are not governed).
 * Export limits count where values leave the statement, not here
 * (exports.c).
 */
static inline void
reveal_note(FunctionCallInfo fcinfo, RevealCache *rc, ColumnAccess access)
{
	if (!rc->governed)
		return;
	if (rc->quiet)
	{
		if (rc->search)
			audit_note_search(PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(2)), fcinfo,
							  &rc->audit_site);
		return;
	}
	audit_note_reveal(PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(2)), access,
					  fcinfo, 3, &rc->audit_site);
}

/* Apply the mask function of the decision to value. */
static Datum
reveal_mask(FunctionCallInfo fcinfo, RevealCache *rc, Datum value, bool *isnull)
{
	Decision   *d = rc->decision;
	FunctionCallInfo mfc;
	Datum		result;
	int			i;

	if (!rc->mask_ready)
	{
		fmgr_info_cxt(d->mask_fn, &rc->mask_finfo, fcinfo->flinfo->fn_mcxt);
		if (rc->mask_fcinfo == NULL)
			rc->mask_fcinfo = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
													 SizeForFunctionCallInfo(FUNC_MAX_ARGS));
		rc->mask_ready = true;
	}
	mfc = rc->mask_fcinfo;
	InitFunctionCallInfoData(*mfc, &rc->mask_finfo, d->mask_nargs + 1,
							 fcinfo->fncollation, NULL, NULL);
	mfc->args[0].value = value;
	mfc->args[0].isnull = false;
	for (i = 0; i < d->mask_nargs; i++)
	{
		mfc->args[i + 1].value = d->mask_args[i];
		mfc->args[i + 1].isnull = d->mask_argnulls[i];
		if (d->mask_argnulls[i] && rc->mask_finfo.fn_strict)
		{
			*isnull = true;
			return (Datum) 0;
		}
	}
	if (OidIsValid(d->mask_run_as))
	{
		/*
		 * A mask in SQL or PL/pgSQL runs as its owner (a superuser or the
		 * extension owner, see policy_mask_problem), like an index
		 * expression: what its body uses needs no privilege of the reader,
		 * and it cannot SET ROLE.  An ERROR restores the user at abort.
		 */
		Oid			save_userid;
		int			save_sec_context;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(d->mask_run_as, save_sec_context |
							   SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		result = FunctionCallInvoke(mfc);
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	else
		result = FunctionCallInvoke(mfc);
	*isnull = mfc->isnull;
	return result;
}


PG_FUNCTION_INFO_V1(pii_guard_reveal);
PG_FUNCTION_INFO_V1(pii_guard_reveal_text);
PG_FUNCTION_INFO_V1(pii_guard_reveal_bytea);

/*
 * Argument 0 (a stored value, not NULL) as the current role may see it,
 * for access: the value (decrypted when kind is an envelope's kind), the
 * mask function's result, or NULL.  A decrypted plaintext is palloc'd.
 */
static Datum
reveal_value(FunctionCallInfo fcinfo, RevealCache *rc, ColumnAccess access,
			 char kind, bool *isnull)
{
	bytea	   *env;
	bytea	   *plain;
	Datum		result;

	*isnull = false;
	if (access == ACCESS_HIDDEN)
	{
		*isnull = true;
		return (Datum) 0;
	}
	if (kind == 0)
	{
		if (access == ACCESS_CLEAR)
			return PG_GETARG_DATUM(0);
		return reveal_mask(fcinfo, rc, PG_GETARG_DATUM(0), isnull);
	}
	if (unlikely(!rc->decision->has_rule && !rc->decision->exempt))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("column \"%s\" is not protected by pii_guard", NameStr(*PG_GETARG_NAME(2))),
				 errhint("Protect it with pii_guard.protect_column().")));
	env = PG_GETARG_BYTEA_PP(0);
	/* a value whose subject key was destroyed reads as NULL (crypto-shredding) */
	if (unlikely(envelope_key_id(env) >= SUBJECT_KEY_MIN) &&
		keys_subject_state(envelope_key_id(env)) == SUBJECT_KEY_SHREDDED)
	{
		*isnull = true;
		return (Datum) 0;
	}
	plain = crypto_open(env, kind);
	if (kind == ENV_KIND_TEXT)
		enctype_check_encoding(plain);
	if (access == ACCESS_CLEAR)
		return PointerGetDatum(plain);
	result = reveal_mask(fcinfo, rc, PointerGetDatum(plain), isnull);
	crypto_wipe(plain);
	return result;
}

/* Shared body of the reveal() variants. */
static inline Datum
reveal_body(FunctionCallInfo fcinfo, char kind)
{
	RevealCache *rc = reveal_cache(fcinfo);
	ColumnAccess access = reveal_access(fcinfo, rc);
	Datum		result;
	bool		isnull;

	reveal_note(fcinfo, rc, access);
	result = reveal_value(fcinfo, rc, access, kind, &isnull);
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * SQL function: reveal(value anyelement, base regclass, col name, row_key "any")
 *		returns anyelement
 *
 * A plaintext column as the current role may see it: the value, the mask
 * function's result, or NULL.
 */
Datum
pii_guard_reveal(PG_FUNCTION_ARGS)
{
	return reveal_body(fcinfo, 0);
}

/*
 * SQL function: reveal(value encrypted_text, base regclass, col name,
 *		row_key "any") returns text
 */
Datum
pii_guard_reveal_text(PG_FUNCTION_ARGS)
{
	return reveal_body(fcinfo, ENV_KIND_TEXT);
}

/*
 * SQL function: reveal(value encrypted_bytea, base regclass, col name,
 *		row_key "any") returns bytea
 */
Datum
pii_guard_reveal_bytea(PG_FUNCTION_ARGS)
{
	return reveal_body(fcinfo, ENV_KIND_BYTEA);
}


/*----------
 * What a write through a masking view stores (write.c puts these calls
 * into the statement it rewrites onto the base table, marked).
 *----------
 */

PG_FUNCTION_INFO_V1(pii_guard_write_seal);
PG_FUNCTION_INFO_V1(pii_guard_write_set);
PG_FUNCTION_INFO_V1(pii_guard_write_may);

/*
 * The envelope kind of column col of base, for a value of type argtype
 * (text for encrypted_text, bytea for encrypted_bytea); 0 if the column is
 * not encrypted.
 */
static char
reveal_column_kind(Oid base, const char *col)
{
	HeapTuple	atttup = SearchSysCacheAttName(base, col);
	Oid			coltype = InvalidOid;

	if (HeapTupleIsValid(atttup))
	{
		coltype = ((Form_pg_attribute) GETSTRUCT(atttup))->atttypid;
		ReleaseSysCache(atttup);
	}
	if (OidIsValid(coltype) && coltype == enctype_encrypted_text_oid())
		return ENV_KIND_TEXT;
	if (OidIsValid(coltype) && coltype == enctype_encrypted_bytea_oid())
		return ENV_KIND_BYTEA;
	return 0;
}

/*
 * SQL function: _write_seal(value text, base regclass, col name)
 *		returns encrypted_text (and the bytea / encrypted_bytea form)
 *
 * The envelope of a value an INSERT through the masking view writes to
 * encrypted column col of base.  Only where the rewrite put it.
 */
Datum
pii_guard_write_seal(PG_FUNCTION_ARGS)
{
	char		kind = (char) (intptr_t) fcinfo->flinfo->fn_extra;
	struct varlena *value;

	if (kind == 0)
	{
		FuncExpr   *fe = (FuncExpr *) fcinfo->flinfo->fn_expr;
		Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);

		kind = reveal_column_kind(PG_GETARG_OID(1), NameStr(*PG_GETARG_NAME(2)));
		if (kind == 0 || (kind == ENV_KIND_TEXT) != (argtype == TEXTOID))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" is not an encrypted column of that type",
							NameStr(*PG_GETARG_NAME(2)))));
		if (!(fe != NULL && IsA(fe, FuncExpr) && PII_SITE_MARKED(fe->location)) && !superuser())
			reveal_refuse_site(fcinfo, PG_GETARG_OID(1));
		fcinfo->flinfo->fn_extra = (void *) (intptr_t) kind;
	}
	value = PG_GETARG_VARLENA_PP(0);
	statement_note_plaintext();
	PG_RETURN_BYTEA_P(crypto_seal(kind, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value)));
}

/*
 * What user may do with column col of relation rel: *may_select, and
 * *may_update (on the relation, or on the column).
 */
static void
reveal_column_privileges(Oid rel, const char *col, Oid user, bool *may_select, bool *may_update)
{
	AttrNumber	att = OidIsValid(rel) ? get_attnum(rel, col) : InvalidAttrNumber;

	*may_select = att != InvalidAttrNumber &&
		(pg_class_aclcheck(rel, user, ACL_SELECT) == ACLCHECK_OK ||
		 pg_attribute_aclcheck(rel, att, user, ACL_SELECT) == ACLCHECK_OK);
	*may_update = att != InvalidAttrNumber &&
		(pg_class_aclcheck(rel, user, ACL_UPDATE) == ACLCHECK_OK ||
		 pg_attribute_aclcheck(rel, att, user, ACL_UPDATE) == ACLCHECK_OK);
}

/*
 * SQL function: _write_may(view regclass, col name) returns integer
 *
 * What the current role may do with column col of masking view view: 1 if
 * it may read it, plus 2 if it may update it (0 if there is no such
 * column).  For _write_set_shard(), which decides on a Citus worker, where
 * the view is not (write.c): the coordinator evaluates it.
 */
Datum
pii_guard_write_may(PG_FUNCTION_ARGS)
{
	bool		may_select;
	bool		may_update;

	reveal_column_privileges(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1)), GetUserId(),
							 &may_select, &may_update);
	PG_RETURN_INT32((may_select ? 1 : 0) + (may_update ? 2 : 0));
}

/* What _write_set needs to know once per call site and user. */
static void
reveal_write_prepare(FunctionCallInfo fcinfo, RevealCache *rc)
{
	Oid			base = PG_GETARG_OID(1);
	const char *col = NameStr(*PG_GETARG_NAME(2));
	Oid			user = GetUserId();
	const char *key = views_row_key(base);

	if (PG_NARGS() == 6)
	{
		/*
		 * _write_set_shard(): what the role may do with the view's column,
		 * as the coordinator found it (the view is there, not here).
		 */
		int32		may = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT32(5);

		rc->may_select = (may & 1) != 0;
		rc->may_update = (may & 2) != 0;
	}
	else
		reveal_column_privileges(views_view_of_base(base), col, user, &rc->may_select, &rc->may_update);
	rc->key_locked = key != NULL && strcmp(key, col) == 0 && !policy_is_exempt(user, base);
	rc->kind = reveal_column_kind(base, col);
	rc->value_sealed = rc->kind != 0 &&
		get_fn_expr_argtype(fcinfo->flinfo, 4) == get_fn_expr_argtype(fcinfo->flinfo, 0);
	get_typlenbyval(get_fn_expr_argtype(fcinfo->flinfo, 4), &rc->value_typlen, &rc->value_typbyval);
	rc->write_ready = true;
}

/*
 * SQL function: _write_set(stored anyelement, base regclass, col name,
 *		row_key "any", value "any") returns anyelement
 *
 * What an UPDATE through base's masking view stores in column col of the
 * row with key row_key, stored there now, when it sets the column to
 * value (of the view column's type).  If value is what the role is shown
 * for that row -- the value, its mask, NULL for a hidden column -- the
 * stored value stays: a mask is never written back, and a column sent back
 * as it was read (an ORM saving a whole row) needs no privilege.  Else the
 * role must hold UPDATE on the view's column, must not be changing the row
 * key if it is governed, and the value is written (sealed, for an
 * encrypted column; value may also be the column's own envelope, from ON
 * CONFLICT's EXCLUDED, compared decrypted and stored as it is).  The
 * arguments are in reveal()'s order, so that the
 * same call-site cache serves.  Only where the rewrite put it.
 */
Datum
pii_guard_write_set(PG_FUNCTION_ARGS)
{
	RevealCache *rc = reveal_cache(fcinfo);
	bool		value_null = PG_ARGISNULL(4);
	Datum		value = value_null ? (Datum) 0 : PG_GETARG_DATUM(4);

	if (!rc->write_ready)
		reveal_write_prepare(fcinfo, rc);
	if (rc->may_select)
	{
		bool		shown_null = true;
		Datum		shown = (Datum) 0;
		ColumnAccess access = ACCESS_HIDDEN;
		bool		same;

		if (!PG_ARGISNULL(0))
		{
			access = reveal_access(fcinfo, rc);
			shown = reveal_value(fcinfo, rc, access, rc->kind, &shown_null);
		}
		if (shown_null || value_null)
			same = shown_null == value_null;
		else if (rc->value_sealed)
		{
			/* ON CONFLICT's SET col = EXCLUDED.col: the envelope just sealed */
			bytea	   *plain = crypto_open((bytea *) PG_DETOAST_DATUM_PACKED(value), rc->kind);

			same = datum_image_eq(shown, PointerGetDatum(plain), false, -1);
			crypto_wipe(plain);
		}
		else
			same = datum_image_eq(shown, value, rc->value_typbyval, rc->value_typlen);
		/* (a decrypted plaintext goes at once) */
		if (rc->kind != 0 && access == ACCESS_CLEAR && !shown_null)
			crypto_wipe((bytea *) DatumGetPointer(shown));
		if (same)
		{
			if (PG_ARGISNULL(0))
				PG_RETURN_NULL();
			PG_RETURN_DATUM(PG_GETARG_DATUM(0));
		}
	}
	if (rc->key_locked)
		views_refuse_row_key_change(PG_GETARG_OID(1));
	if (!rc->may_update)
	{
		const char *view = views_masking_view_name(PG_GETARG_OID(1));

		audit_deny(view, "UPDATE",
				   psprintf("refused: no UPDATE privilege on column %s",
							quote_identifier(NameStr(*PG_GETARG_NAME(2)))));
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for view %s",
						OidIsValid(views_view_of_base(PG_GETARG_OID(1))) ?
						get_rel_name(views_view_of_base(PG_GETARG_OID(1))) :
						(view ? view : "?")),
				 errdetail("The role may not update column \"%s\"; a value sent back as the role read it would be left as it is.",
						   NameStr(*PG_GETARG_NAME(2)))));
	}
	if (PG_NARGS() == 6)
		cluster_write_changed(NameStr(*PG_GETARG_NAME(2)));
	if (value_null)
		PG_RETURN_NULL();
	if (rc->kind != 0 && !rc->value_sealed)
	{
		struct varlena *v = PG_DETOAST_DATUM_PACKED(value);

		statement_note_plaintext();
		PG_RETURN_BYTEA_P(crypto_seal(rc->kind, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v)));
	}
	PG_RETURN_DATUM(value);
}
