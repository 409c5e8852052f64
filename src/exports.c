/*-------------------------------------------------------------------------
 *
 * exports.c
 *		What leaves: the places where a statement's protected values reach a
 *		destination outside the protected table, where export limits count.
 *
 * A row counts against a role's export limits when it delivers protected
 * values (clear or masked) somewhere else -- the client, COPY TO, a file,
 * another table, a function -- not when the executor merely touches it.
 * Rows only filtered, joined, sorted or skipped (OFFSET) do not count, nor
 * writes without RETURNING, nor count().  But when a condition that
 * chooses rows -- a filter, a join's, an index's -- tests a protected
 * value, which rows come out is itself protected (the ids of every
 * customer whose name starts with a surname): then every row the statement
 * returns or writes elsewhere counts, whatever its columns.  Which values are protected is
 * known from the plan: an expression is "tainted" when it contains a call
 * of reveal() that reveal.c proved (a masking view's column), or takes a
 * column, a subquery output or a parameter that is -- followed through the
 * plan the way reveal.c follows its proof.  Where tainted values leave:
 *
 *	the rows a plan returns	-- to the client, COPY TO, CREATE TABLE AS,
 *		a cursor, SPI (a function's query), a SQL function's result -- are
 *		counted as they reach the statement's destination: the executor's
 *		DestReceiver is wrapped while it runs (exports_wrap_dest), and a
 *		row counts when one of its tainted columns is not NULL (a hidden
 *		value is NULL: nothing protected is delivered).  Rows a LIMIT ...
 *		OFFSET skips never get there; a row a cursor delivers again (FETCH
 *		BACKWARD) counts again, except that a cursor WITH HOLD, run again
 *		from its start into its store at COMMIT, counts each row once.  RETURNING through a masking view returns
 *		the view's columns: the protected ones are tainted.
 *	rows written to another table -- INSERT ... SELECT, UPDATE ... FROM --
 *		count as the ModifyTable node takes them from its subplan (its
 *		child's ExecProcNode is wrapped), when a written column is tainted
 *		and the target is not a masking view (writes through the view go
 *		back into the protected table).
 *	aggregates that build a value from protected inputs (string_agg,
 *		array_agg, json_agg, max, ...; not count) -- each input counts,
 *		where it is folded in;
 *	functions that could pass a value on -- any function not owned by a
 *		superuser, and any VOLATILE one (pg_notify(), lo_from_bytea(),
 *		dblink ...) -- each call with a tainted argument counts.
 * The last two are marked in the plan when it is made (exports_mark_plan):
 * their tainted arguments are wrapped in _exported(value, table, row key),
 * which counts the row (once per row and statement, by its key, as reveal()
 * used to) and returns the value; an argument whose row is not known there
 * is wrapped in _exported(value), which counts each value.  Counting never
 * decides what a role sees; it only refuses, with 54P01, the row that would
 * exceed a limit (limits.c), before the value is delivered.
 *
 * pii_guard's own statements (the masking view's read-back for RETURNING)
 * deliver nothing anywhere: statement_internal() turns counting off for
 * them.  Roles without limits pay nothing at run time: exports_start
 * returns at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "tcop/pquery.h"
#include "utils/portal.h"
#include "utils/syscache.h"

#include "pii_guard.h"

/* What the analysis of one plan carries. */
typedef struct ExportsCx
{
	PlannedStmt *stmt;
	const Oid  *reveal_oids;
	int			nreveal;
	HTAB	   *memo;			/* (Plan *, attno) -> tainted */
	HTAB	   *params;			/* PARAM_EXEC id -> where it is set */
	Oid			charged;		/* a protected table the plan reads */
	bool		uncounted;		/* a value no _exported() could wrap */
} ExportsCx;

/* Where a PARAM_EXEC parameter gets its value. */
typedef struct ParamSource
{
	int			paramid;		/* hash key */
	Plan	   *plan;			/* the plan node the value is computed in */
	Node	   *expr;			/* ... as this expression (a nestloop's) */
	Plan	   *subplan;		/* or the output column of an initplan */
	AttrNumber	attno;
	int8		tainted;		/* -1: not known yet */
} ParamSource;

typedef struct TaintKey
{
	Plan	   *plan;
	AttrNumber	attno;
} TaintKey;

typedef struct TaintEntry
{
	TaintKey	key;
	bool		tainted;
} TaintEntry;

/* A counting wrapper of a PlanState's ExecProcNodeReal (ModifyTable input). */
typedef struct CountedNode
{
	PlanState  *ps;
	ExecProcNodeMtd real;
	Bitmapset  *columns;		/* tainted written columns of its output */
	bool		every_row;		/* rows chosen by protected values */
	Oid			relid;
	void	   *owner;			/* the ExportsInfo of its query */
	struct CountedNode *next;
} CountedNode;

/* What exports_start learnt about one running query. */
typedef struct ExportsInfo
{
	QueryDesc  *qd;
	Bitmapset  *columns;		/* tainted output columns (attnos) */
	Oid			relid;			/* the table to charge (for messages) */
	bool		writes;			/* it counts rows it writes elsewhere */
	bool		every_row;		/* rows chosen by protected values */
	struct ExportsInfo *next;
} ExportsInfo;

/* The wrapped destination of a running query. */
typedef struct ExportDest
{
	DestReceiver pub;
	DestReceiver *inner;
	ExportsInfo *info;
	uint64		skip;			/* rows this run delivers again */
} ExportDest;

static ExportsInfo *running = NULL; /* newest first */
static CountedNode *counted_nodes = NULL;

static bool exports_tainted(ExportsCx *cx, Plan *plan, Node *expr, int depth);
static Oid	exports_protected_oid(void);
static bool exports_output_tainted(ExportsCx *cx, Plan *plan, AttrNumber attno, int depth);

/* Is fe a call of reveal() that reveal.c proved? */
static inline bool
exports_is_revealed(ExportsCx *cx, FuncExpr *fe)
{
	return PII_SITE_MARKED(fe->location) &&
		reveal_is_one_of(cx->reveal_oids, cx->nreveal, fe->funcid);
}

/* The expression of output column attno of plan, or NULL. */
static Node *
exports_output(Plan *plan, AttrNumber attno)
{
	if (plan == NULL || attno <= 0 || attno > list_length(plan->targetlist))
		return NULL;
	return (Node *) list_nth_node(TargetEntry, plan->targetlist, attno - 1)->expr;
}

/* Is output column attno of plan tainted?  Memoised per analysis. */
static bool
exports_output_tainted(ExportsCx *cx, Plan *plan, AttrNumber attno, int depth)
{
	TaintKey	key;
	TaintEntry *e;
	bool		found;
	bool		tainted;

	if (plan == NULL)
		return false;
	memset(&key, 0, sizeof(key));
	key.plan = plan;
	key.attno = attno;
	e = hash_search(cx->memo, &key, HASH_ENTER, &found);
	if (found)
		return e->tainted;
	e->tainted = true;			/* (a cycle counts as tainted) */
	tainted = exports_tainted(cx, plan, exports_output(plan, attno), depth + 1);
	e = hash_search(cx->memo, &key, HASH_FIND, NULL);
	e->tainted = tainted;
	return tainted;
}

/* Any child of an Append-like node with a tainted output column attno? */
static bool
exports_children_tainted(ExportsCx *cx, List *children, AttrNumber attno, int depth)
{
	ListCell   *lc;

	foreach(lc, children)
		if (exports_output_tainted(cx, (Plan *) lfirst(lc), attno, depth))
			return true;
	return false;
}

/*
 * Is column v of plan node plan a protected value?  Followed down the plan
 * (see reveal.c for the same walk): join and upper nodes' inputs, every
 * child of an append, subquery and CTE outputs.  A raw column of a table
 * is not -- governed roles reach protected ones only through reveal() --
 * except the columns of a masking view a RETURNING list returns.  Where
 * the plan cannot be followed, the answer is yes.
 */
static bool
exports_var_tainted(ExportsCx *cx, Plan *plan, Var *v, int depth)
{
	RangeTblEntry *rte;

	if (depth > 200 || v->varlevelsup != 0)
		return true;
	/* a Citus scan's rows: marked above it (exports_citus_after) */
	if (IsA(plan, CustomScan) &&
		strncmp(((CustomScan *) plan)->methods->CustomName, "Citus", 5) == 0)
		return false;
	switch (v->varno)
	{
		case OUTER_VAR:
			if (IsA(plan, Append))
				return exports_children_tainted(cx, ((Append *) plan)->appendplans, v->varattno, depth);
			if (IsA(plan, MergeAppend))
				return exports_children_tainted(cx, ((MergeAppend *) plan)->mergeplans, v->varattno, depth);
			if (IsA(plan, RecursiveUnion))
				return exports_output_tainted(cx, outerPlan(plan), v->varattno, depth) ||
					exports_output_tainted(cx, innerPlan(plan), v->varattno, depth);
			return exports_output_tainted(cx, outerPlan(plan), v->varattno, depth);
		case INNER_VAR:
			return exports_output_tainted(cx, innerPlan(plan), v->varattno, depth);
		case INDEX_VAR:
			/* an index-only scan's index columns are stored values */
			return !IsA(plan, IndexOnlyScan);
		default:
			break;
	}
	switch (nodeTag(plan))
	{
		case T_SubqueryScan:
			return exports_output_tainted(cx, ((SubqueryScan *) plan)->subplan, v->varattno, depth);
		case T_CteScan:
			{
				CteScan    *cs = (CteScan *) plan;

				if (cs->ctePlanId < 1 || cs->ctePlanId > list_length(cx->stmt->subplans))
					return true;
				return exports_output_tainted(cx, list_nth(cx->stmt->subplans, cs->ctePlanId - 1),
											  v->varattno, depth);
			}
		case T_CustomScan:
		case T_WorkTableScan:
		case T_ForeignScan:
			return true;
		case T_ValuesScan:
			{
				ListCell   *lc;

				foreach(lc, ((ValuesScan *) plan)->values_lists)
				{
					List	   *row = (List *) lfirst(lc);

					if (v->varattno >= 1 && v->varattno <= list_length(row) &&
						exports_tainted(cx, plan, list_nth(row, v->varattno - 1), depth + 1))
						return true;
				}
				return false;
			}
		case T_ModifyTable:
			/* RETURNING: the result relation's columns */
			if (v->varno < 1 || v->varno > list_length(cx->stmt->rtable))
				return true;
			rte = rt_fetch(v->varno, cx->stmt->rtable);
			if (rte->rtekind != RTE_RELATION || !OidIsValid(views_base_of_view(rte->relid)))
				return false;
			{
				char	   *att = get_attname(rte->relid, v->varattno, true);
				Oid			base = views_base_of_view(rte->relid);

				if (att == NULL)
					return true;
				if (!policy_decide(GetUserId(), base, att)->has_rule)
					return false;
				if (!OidIsValid(cx->charged))
					cx->charged = base;
				return true;
			}
		default:
			/* a function's results are counted where its queries return them */
			return false;
	}
}

static void exports_map_node(ExportsCx *cx, Plan *plan);

/* Record where the parameters set by a list of SubPlans (initplans) come from. */
static void
exports_map_initplans(ExportsCx *cx, List *initplans)
{
	ListCell   *lc;

	foreach(lc, initplans)
	{
		SubPlan    *sp = (SubPlan *) lfirst(lc);
		ListCell   *lp;
		int			col = 0;

		if (!IsA(sp, SubPlan) || sp->plan_id < 1 || sp->plan_id > list_length(cx->stmt->subplans))
			continue;
		foreach(lp, sp->setParam)
		{
			int			paramid = lfirst_int(lp);
			ParamSource *ps = hash_search(cx->params, &paramid, HASH_ENTER, NULL);

			ps->plan = NULL;
			ps->expr = NULL;
			ps->subplan = list_nth(cx->stmt->subplans, sp->plan_id - 1);
			ps->attno = ++col;
			ps->tainted = -1;
		}
	}
}

/* exports_map_node for every node of a list of plans. */
static void
exports_map_list(ExportsCx *cx, List *plans)
{
	ListCell   *lc;

	foreach(lc, plans)
		exports_map_node(cx, (Plan *) lfirst(lc));
}

/* Record the parameters plan and its children set. */
static void
exports_map_node(ExportsCx *cx, Plan *plan)
{
	if (plan == NULL)
		return;
	check_stack_depth();
	exports_map_initplans(cx, plan->initPlan);
	if (IsA(plan, NestLoop))
	{
		ListCell   *lc;

		foreach(lc, ((NestLoop *) plan)->nestParams)
		{
			NestLoopParam *nlp = lfirst_node(NestLoopParam, lc);
			ParamSource *ps = hash_search(cx->params, &nlp->paramno, HASH_ENTER, NULL);

			ps->plan = plan;
			ps->expr = (Node *) nlp->paramval;
			ps->subplan = NULL;
			ps->tainted = -1;
		}
	}
	exports_map_node(cx, plan->lefttree);
	exports_map_node(cx, plan->righttree);
	switch (nodeTag(plan))
	{
		case T_Append:
			exports_map_list(cx, ((Append *) plan)->appendplans);
			break;
		case T_MergeAppend:
			exports_map_list(cx, ((MergeAppend *) plan)->mergeplans);
			break;
		case T_BitmapAnd:
			exports_map_list(cx, ((BitmapAnd *) plan)->bitmapplans);
			break;
		case T_BitmapOr:
			exports_map_list(cx, ((BitmapOr *) plan)->bitmapplans);
			break;
		case T_SubqueryScan:
			exports_map_node(cx, ((SubqueryScan *) plan)->subplan);
			break;
		case T_CustomScan:
			exports_map_list(cx, ((CustomScan *) plan)->custom_plans);
			break;
		default:
			break;
	}
}

/*
 * Is PARAM_EXEC parameter paramid a protected value?  An initplan's output
 * column or a nestloop's outer value, as tainted as what sets it; a
 * parameter whose setter is not found (a correlated subplan's, say) is.
 */
static bool
exports_param_tainted(ExportsCx *cx, int paramid, int depth)
{
	ParamSource *ps;
	bool		tainted;

	if (cx->params == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int);
		ctl.entrysize = sizeof(ParamSource);
		ctl.hcxt = CurrentMemoryContext;
		cx->params = hash_create("pii_guard params", 16, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		exports_map_node(cx, cx->stmt->planTree);
		exports_map_list(cx, cx->stmt->subplans);
	}
	ps = hash_search(cx->params, &paramid, HASH_FIND, NULL);
	if (ps == NULL)
		return true;
	if (ps->tainted >= 0)
		return ps->tainted;
	ps->tainted = 1;			/* (a cycle counts as tainted) */
	tainted = ps->subplan != NULL ?
		exports_output_tainted(cx, ps->subplan, ps->attno, depth) :
		exports_tainted(cx, ps->plan, ps->expr, depth + 1);
	ps = hash_search(cx->params, &paramid, HASH_FIND, NULL);
	ps->tainted = tainted ? 1 : 0;
	return tainted;
}

/* Expression walker for exports_tainted. */
typedef struct TaintWalk
{
	ExportsCx  *cx;
	Plan	   *plan;
	int			depth;
} TaintWalk;

static bool
exports_taint_walker(Node *node, TaintWalk *tw)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_FuncExpr:
			if (exports_is_revealed(tw->cx, (FuncExpr *) node) ||
				(PII_SITE_MARKED(((FuncExpr *) node)->location) &&
				 ((FuncExpr *) node)->funcid == exports_protected_oid()))
			{
				FuncExpr   *fe = (FuncExpr *) node;

				if (!OidIsValid(tw->cx->charged) && IsA(lsecond(fe->args), Const))
					tw->cx->charged = DatumGetObjectId(((Const *) lsecond(fe->args))->constvalue);
				return true;
			}
			break;
		case T_Aggref:
			/* its protected inputs are counted where they are folded in */
			return false;
		case T_Var:
			return exports_var_tainted(tw->cx, tw->plan, (Var *) node, tw->depth);
		case T_Param:
			/* a subquery's output or a join's outer value */
			return ((Param *) node)->paramkind == PARAM_EXEC &&
				exports_param_tainted(tw->cx, ((Param *) node)->paramid, tw->depth);
		case T_SubPlan:
			{
				SubPlan    *sp = (SubPlan *) node;
				Plan	   *sub;

				if (sp->plan_id >= 1 && sp->plan_id <= list_length(tw->cx->stmt->subplans))
				{
					sub = list_nth(tw->cx->stmt->subplans, sp->plan_id - 1);
					for (int i = 1; sub && i <= list_length(sub->targetlist); i++)
						if (exports_output_tainted(tw->cx, sub, i, tw->depth))
							return true;
				}
				break;
			}
		default:
			break;
	}
	return expression_tree_walker(node, exports_taint_walker, (void *) tw);
}

/* Is expr, evaluated in plan node plan, built from a protected value? */
static bool
exports_tainted(ExportsCx *cx, Plan *plan, Node *expr, int depth)
{
	TaintWalk	tw;

	if (expr == NULL)
		return false;
	check_stack_depth();
	tw.cx = cx;
	tw.plan = plan;
	tw.depth = depth;
	return exports_taint_walker(expr, &tw);
}

/* Set up an analysis of stmt (false: pii_guard is not installed here). */
static bool
exports_cx_init(ExportsCx *cx, PlannedStmt *stmt)
{
	HASHCTL		ctl;

	memset(cx, 0, sizeof(*cx));
	cx->nreveal = reveal_functions(&cx->reveal_oids);
	if (cx->nreveal == 0)
		return false;
	cx->stmt = stmt;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(TaintKey);
	ctl.entrysize = sizeof(TaintEntry);
	ctl.hcxt = CurrentMemoryContext;
	cx->memo = hash_create("pii_guard taint", 32, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return true;
}

/*----------
 * Plan time: the aggregates and sink functions.
 *----------
 */

/* _exported(anyelement[, regclass, "any"]), by number of arguments. */
static Oid
exports_counter_oid(int nargs)
{
	static Oid	oids[2];
	static uint64 generation = 0;
	Oid			nsp;

	if (generation != policy_current_generation())
	{
		CatCList   *list;

		oids[0] = oids[1] = InvalidOid;
		nsp = pii_guard_schema_oid(true);
		if (OidIsValid(nsp))
		{
			list = SearchSysCacheList1(PROCNAMEARGSNSP, CStringGetDatum("_exported"));
			for (int i = 0; i < list->n_members; i++)
			{
				Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(&list->members[i]->tuple);

				if (proc->pronamespace == nsp && (proc->pronargs == 1 || proc->pronargs == 3))
					oids[proc->pronargs == 1 ? 0 : 1] = proc->oid;
			}
			ReleaseSysCacheList(list);
		}
		generation = policy_current_generation();
	}
	return oids[nargs == 1 ? 0 : 1];
}

/*
 * Could function fn pass a value on?  Not if a superuser owns it and it is
 * not VOLATILE (the system's functions, extensions' functions, pii_guard's
 * own masks): a role's own function could write what it is given anywhere,
 * and a volatile one could send it (pg_notify, lo_from_bytea, dblink).
 */
static bool
exports_is_sink(Oid fn)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		sink;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		return true;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	sink = proc->provolatile == PROVOLATILE_VOLATILE || !superuser_arg(proc->proowner);
	ReleaseSysCache(tup);
	return sink;
}

/* The first proved reveal() call in expr (its table and row key), or NULL. */
static bool
exports_find_reveal_walker(Node *node, void *arg)
{
	void	  **out = (void **) arg;
	ExportsCx  *cx = (ExportsCx *) out[0];

	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && exports_is_revealed(cx, (FuncExpr *) node))
	{
		out[1] = node;
		return true;
	}
	return expression_tree_walker(node, exports_find_reveal_walker, arg);
}

/*
 * Wrap *slot (a tainted argument) in _exported: with the table and row key
 * of the reveal() call inside it when there is one, so that a row counts
 * once however many of its values go in; else per value.
 */
static void
exports_wrap(ExportsCx *cx, Node **slot)
{
	void	   *found[2] = {cx, NULL};
	Oid			type = exprType(*slot);
	FuncExpr   *fe;
	List	   *args;

	if (type == InvalidOid || type == RECORDOID || get_typtype(type) == TYPTYPE_PSEUDO)
		return;
	(void) exports_find_reveal_walker(*slot, found);
	if (found[1] != NULL && OidIsValid(exports_counter_oid(3)))
	{
		FuncExpr   *reveal = (FuncExpr *) found[1];

		/* cppcheck-suppress unknownEvaluationOrder ; the two copies are independent */
		args = list_make3(*slot, copyObject(lsecond(reveal->args)), copyObject(lfourth(reveal->args)));
		fe = makeFuncExpr(exports_counter_oid(3), type, args, InvalidOid,
						  exprCollation(*slot), COERCE_EXPLICIT_CALL);
	}
	else if (OidIsValid(exports_counter_oid(1)))
		fe = makeFuncExpr(exports_counter_oid(1), type, list_make1(*slot), InvalidOid,
						  exprCollation(*slot), COERCE_EXPLICIT_CALL);
	else
	{
		/* (under SQL objects before 0.3: exports_start refuses it) */
		cx->uncounted = true;
		return;
	}
	fe->location = PII_SITE_MARK;
	*slot = (Node *) fe;
}

/* Wrap the tainted arguments in a list of expressions (or TargetEntries). */
static void
exports_wrap_args(ExportsCx *cx, Plan *plan, List *args)
{
	ListCell   *lc;

	foreach(lc, args)
	{
		Node	  **slot = (Node **) &lfirst(lc);

		if (*slot != NULL && IsA(*slot, TargetEntry))
			slot = (Node **) &((TargetEntry *) *slot)->expr;
		if (*slot != NULL && IsA(*slot, FuncExpr) && PII_SITE_MARKED(((FuncExpr *) *slot)->location) &&
			((FuncExpr *) *slot)->funcresulttype == exprType(*slot) &&
			(((FuncExpr *) *slot)->funcid == exports_counter_oid(1) ||
			 ((FuncExpr *) *slot)->funcid == exports_counter_oid(3)))
			continue;			/* counted already */
		if (exports_tainted(cx, plan, *slot, 0))
			exports_wrap(cx, slot);
	}
}

typedef struct MarkWalk
{
	ExportsCx  *cx;
	Plan	   *plan;
} MarkWalk;

/*
 * Expression walker: wrap the tainted inputs of aggregates and sinks.
 * Inner expressions first, so that a sink inside another's argument (or
 * inside count()'s) counts before it gets the value.
 */
static bool
exports_mark_walker(Node *node, MarkWalk *mw)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && PII_SITE_MARKED(((FuncExpr *) node)->location))
		return false;			/* reveal(), _exported(), a probe */
	(void) expression_tree_walker(node, exports_mark_walker, (void *) mw);
	switch (nodeTag(node))
	{
		case T_Aggref:
			{
				Aggref	   *agg = (Aggref *) node;

				/* (its FILTER and ORDER BY only choose and order) */
				if (agg->aggfnoid != F_COUNT_ANY && agg->aggfnoid != F_COUNT_)
					exports_wrap_args(mw->cx, mw->plan, agg->args);
				break;
			}
		case T_FuncExpr:
			if (exports_is_sink(((FuncExpr *) node)->funcid))
				exports_wrap_args(mw->cx, mw->plan, ((FuncExpr *) node)->args);
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			if (exports_is_sink(((OpExpr *) node)->opfuncid))
				exports_wrap_args(mw->cx, mw->plan, ((OpExpr *) node)->args);
			break;
		case T_ScalarArrayOpExpr:
			if (exports_is_sink(((ScalarArrayOpExpr *) node)->opfuncid))
				exports_wrap_args(mw->cx, mw->plan, ((ScalarArrayOpExpr *) node)->args);
			break;
		case T_WindowFunc:
			if (exports_is_sink(((WindowFunc *) node)->winfnoid))
				exports_wrap_args(mw->cx, mw->plan, ((WindowFunc *) node)->args);
			break;
		default:
			break;
	}
	return false;
}

/* Plan node callback of exports_mark_plan. */
static void
exports_mark_node(Plan *plan, Node *exprs, void *arg)
{
	MarkWalk	mw;

	mw.cx = (ExportsCx *) arg;
	mw.plan = plan;
	(void) exports_mark_walker(exprs, &mw);
}

/*
 * hooks.c, once a plan is made and proved (reveal.c): wrap the protected
 * inputs of aggregates and of functions that could pass them on in
 * _exported(), so that they count (see the file header).  Plans that
 * reveal nothing are left as they are.
 */
void
exports_mark_plan(PlannedStmt *stmt)
{
	ExportsCx	cx;

	if (stmt == NULL || stmt->commandType == CMD_UTILITY || !reveal_plan_reveals(stmt) ||
		!exports_cx_init(&cx, stmt))
		return;
	plan_walk_expressions(stmt, exports_mark_node, &cx);
	hash_destroy(cx.memo);
	if (cx.params)
		hash_destroy(cx.params);
}

/*----------
 * Citus.  A query on a masking view of a distributed table is planned on
 * the coordinator into a Citus scan whose rows the workers compute --
 * reveal() runs there, in the queries Citus sends them, and their rows
 * are not counted there (limits.c: the rows of a task go to the
 * coordinator).  The coordinator's plan shows no reveal() to follow, so
 * what leaves is found in the query before Citus plans it
 * (exports_citus_before), by the same rules at the level of the query:
 *
 *	- an output column carries protected values when its expression
 *	  contains a masking view's reveal(), followed through subqueries,
 *	  CTEs, joins and sublinks;
 *	- when a condition anywhere in the query -- WHERE, JOIN ... ON,
 *	  HAVING -- tests a protected value, every row counts;
 *	- a protected value folded into an aggregate (other than count) or
 *	  passed to a function that could pass it on (exports_is_sink), or
 *	  written -- it, or rows it chose -- into another table (INSERT ...
 *	  SELECT, UPDATE ... FROM, RETURNING), would be counted where that
 *	  happens on one server; on Citus the workers do it, out of the
 *	  coordinator's sight, so a role with export limits is refused such a
 *	  query (0A000), and one without is not concerned.
 *
 * Once the plan is made (exports_citus_after), its rows are handed out
 * through a Result node whose columns wrap the protected outputs in
 * _protected(value, table) -- the identity, marked as pii_guard's own --
 * which the taint analysis takes for a protected value, as it takes a
 * proved reveal(); the Citus scan's own outputs are not (they are the
 * workers' rows, counted by these markers where they leave).
 *----------
 */

/* What the query-level analysis carries. */
typedef struct QueryTaint
{
	List	   *stack;			/* Query *, innermost first */
	const Oid  *reveal_oids;
	int			nreveal;
	Oid			owner;			/* pii_guard_owner */
	Oid			charged;		/* a protected Citus table read */
	bool		reads;			/* a masking view of a Citus table is read */
	bool		selects;		/* a condition tests a protected value */
	bool		folds;			/* ... one is folded, passed on, or written */
	bool		writes;			/* the statement (or a CTE of it) writes ... */
	bool		returns;		/* ... and returns rows, or writes elsewhere */
	bool		write_folds;	/* a write takes or returns protected values */
	List	   *ctes;			/* CommonTableExprs being followed (recursion) */
} QueryTaint;

/* What exports_citus_before found, for exports_citus_after. */
struct CitusExports
{
	Bitmapset  *columns;		/* the protected output columns (resnos) */
	bool		every_row;
	bool		folds;
	bool		write_folds;
	Oid			charged;
	bool		subplan;		/* planned while another query is */
};

static bool exports_qtaint(QueryTaint *qt, Node *expr);

/* Output column attno of sub (whose parents are stack) protected? */
static bool
exports_qtaint_output(QueryTaint *qt, Query *sub, List *stack, AttrNumber attno)
{
	List	   *saved = qt->stack;
	TargetEntry *tle;
	bool		result;

	if (sub == NULL)
		return true;
	check_stack_depth();
	if (sub->setOperations != NULL)
	{
		ListCell   *lc;

		/* (a set operation's columns are its branches', each a subquery) */
		qt->stack = lcons(sub, stack);
		result = false;
		foreach(lc, sub->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_SUBQUERY &&
				exports_qtaint_output(qt, rte->subquery, qt->stack, attno))
			{
				result = true;
				break;
			}
		}
		qt->stack = saved;
		return result;
	}
	tle = get_tle_by_resno(sub->targetList, attno);
	if (tle == NULL)
		return true;
	qt->stack = lcons(sub, stack);
	result = exports_qtaint(qt, (Node *) tle->expr);
	qt->stack = saved;
	return result;
}

/* Any output column of sub protected? */
static bool
exports_qtaint_any_output(QueryTaint *qt, Query *sub, List *stack)
{
	ListCell   *lc;

	foreach(lc, sub->targetList)
		if (exports_qtaint_output(qt, sub, stack, lfirst_node(TargetEntry, lc)->resno))
			return true;
	return false;
}

/* A Var of the query level it names: what it reads. */
static bool
exports_qtaint_var(QueryTaint *qt, Var *v)
{
	Query	   *q;
	List	   *stack;
	RangeTblEntry *rte;

	if ((int) v->varlevelsup >= list_length(qt->stack))
		return true;
	stack = list_copy_tail(qt->stack, v->varlevelsup);
	q = linitial(stack);
	if ((int) v->varno < 1 || (int) v->varno > list_length(q->rtable))
		return true;
	rte = rt_fetch(v->varno, q->rtable);
	switch (rte->rtekind)
	{
		case RTE_RELATION:
			return false;		/* a stored value, reached only through reveal() */
		case RTE_SUBQUERY:
			return v->varattno == 0 ? exports_qtaint_any_output(qt, rte->subquery, stack) :
				exports_qtaint_output(qt, rte->subquery, stack, v->varattno);
		case RTE_JOIN:
			{
				List	   *saved = qt->stack;
				bool		result;

				if (v->varattno <= 0 || v->varattno > list_length(rte->joinaliasvars))
					return true;
				qt->stack = stack;
				result = exports_qtaint(qt, list_nth(rte->joinaliasvars, v->varattno - 1));
				qt->stack = saved;
				return result;
			}
		case RTE_CTE:
			{
				int			up = rte->ctelevelsup;
				ListCell   *lc;

				if (up >= list_length(stack))
					return true;
				foreach(lc, ((Query *) list_nth(stack, up))->cteList)
				{
					CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

					if (strcmp(cte->ctename, rte->ctename) == 0 && IsA(cte->ctequery, Query))
					{
						bool		result;

						/* (a recursive CTE's own rows: as its other branch) */
						if (list_member_ptr(qt->ctes, cte))
							return false;
						qt->ctes = lappend(qt->ctes, cte);
						result = v->varattno == 0 ?
							exports_qtaint_any_output(qt, (Query *) cte->ctequery,
													  list_copy_tail(stack, up)) :
							exports_qtaint_output(qt, (Query *) cte->ctequery,
												  list_copy_tail(stack, up), v->varattno);
						qt->ctes = list_delete_ptr(qt->ctes, cte);
						return result;
					}
				}
				return true;
			}
		case RTE_FUNCTION:
		case RTE_VALUES:
		case RTE_TABLEFUNC:
			{
				List	   *saved = qt->stack;
				bool		result;

				qt->stack = stack;
				result = exports_qtaint(qt, rte->rtekind == RTE_FUNCTION ? (Node *) rte->functions :
										rte->rtekind == RTE_VALUES ? (Node *) rte->values_lists :
										(Node *) rte->tablefunc);
				qt->stack = saved;
				return result;
			}
		default:
			return true;
	}
}

static bool
exports_qtaint_walker(Node *node, QueryTaint *qt)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr))
	{
		FuncExpr   *fe = (FuncExpr *) node;

		if (reveal_is_one_of(qt->reveal_oids, qt->nreveal, fe->funcid))
		{
			if (!OidIsValid(qt->charged) && list_length(fe->args) == 4 &&
				IsA(lsecond(fe->args), Const))
				qt->charged = DatumGetObjectId(((Const *) lsecond(fe->args))->constvalue);
			return true;
		}
	}
	if (IsA(node, Var))
		return exports_qtaint_var(qt, (Var *) node);
	if (IsA(node, SubLink))
	{
		SubLink    *sl = (SubLink *) node;

		if (exports_qtaint_walker(sl->testexpr, qt))
			return true;
		return IsA(sl->subselect, Query) &&
			exports_qtaint_any_output(qt, (Query *) sl->subselect, qt->stack);
	}
	if (IsA(node, Query))
		return true;			/* (not reached: sublinks are above) */
	return expression_tree_walker(node, exports_qtaint_walker, (void *) qt);
}

/* Is expr, in the query on top of qt->stack, built from a protected value? */
static bool
exports_qtaint(QueryTaint *qt, Node *expr)
{
	if (expr == NULL)
		return false;
	check_stack_depth();
	return exports_qtaint_walker(expr, qt);
}

/* Any argument in args protected? */
static bool
exports_qtaint_args(QueryTaint *qt, List *args)
{
	ListCell   *lc;

	foreach(lc, args)
	{
		Node	   *arg = lfirst(lc);

		if (arg != NULL && IsA(arg, TargetEntry))
			arg = (Node *) ((TargetEntry *) arg)->expr;
		if (exports_qtaint(qt, arg))
			return true;
	}
	return false;
}

/*
 * The values a write through the masking view of a Citus table stores
 * (write.c: each SET entry is _write_set_shard(stored, ..., value, may)):
 * any of them protected, other than a column set to itself (which stores
 * what it holds)?
 */
static bool
exports_qtaint_own_write(QueryTaint *qt, List *targetList)
{
	ListCell   *lc;

	foreach(lc, targetList)
	{
		Node	   *expr = (Node *) lfirst_node(TargetEntry, lc)->expr;
		bool		is_set;

		if (IsA(expr, FuncExpr) && list_length(((FuncExpr *) expr)->args) == 6 &&
			write_is_shard_write_function(((FuncExpr *) expr)->funcid, &is_set) && is_set)
		{
			List	   *args = ((FuncExpr *) expr)->args;
			Node	   *value = list_nth(args, 4);
			Node	   *shown;
			Var		   *stored = linitial(args);

			/* (the view's column: its reveal(), under a COLLATE or relabeling) */
			while (IsA(value, CollateExpr) || IsA(value, RelabelType))
				value = IsA(value, CollateExpr) ? (Node *) ((CollateExpr *) value)->arg :
					(Node *) ((RelabelType *) value)->arg;
			shown = IsA(value, FuncExpr) &&
				reveal_is_one_of(qt->reveal_oids, qt->nreveal, ((FuncExpr *) value)->funcid) ?
				linitial(((FuncExpr *) value)->args) : NULL;

			if (shown != NULL && IsA(shown, Var) && IsA(stored, Var) &&
				((Var *) shown)->varno == stored->varno &&
				((Var *) shown)->varattno == stored->varattno &&
				((Var *) shown)->varlevelsup == stored->varlevelsup)
				continue;
			expr = list_nth(args, 4);
		}
		if (exports_qtaint(qt, expr))
			return true;
	}
	return false;
}

/*
 * Is q the rewrite of a write through the masking view of a Citus table
 * (its target a protected Citus table reached as the views' owner)?  Its
 * rows stay in that table.
 */
static bool
exports_own_write(QueryTaint *qt, Query *q)
{
	RangeTblEntry *rte;

	if (q->resultRelation <= 0 || q->onConflict != NULL)
		return false;
	rte = rt_fetch(q->resultRelation, q->rtable);
	return rte->rtekind == RTE_RELATION && views_is_citus(rte->relid) &&
		compat_query_check_as_user(q, rte) == qt->owner;
}

/*
 * Walk every query level of a statement: the masking views of Citus tables
 * it reads, its conditions on protected values, and where it folds or
 * passes them on.
 */
static bool
exports_citus_walker(Node *node, QueryTaint *qt)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Query:
			{
				Query	   *q = (Query *) node;
				List	   *saved = qt->stack;

				qt->stack = lcons(q, qt->stack);
				if (!qt->selects && exports_qtaint(qt, q->havingQual))
					qt->selects = true;
				/*
				 * A write (of the statement, or of a CTE of it) whose rows
				 * carry protected values, or are chosen by them, or whose
				 * RETURNING returns them: counted on one server as the
				 * rows are written, on Citus out of the coordinator's
				 * sight -- refused under export limits, as folding is.
				 */
				if (q->commandType != CMD_SELECT && q->commandType != CMD_UTILITY)
				{
					bool		own = exports_own_write(qt, q);

					/*
					 * (A write through the view keeps its rows in the
					 * table: the rows a search chose leave only if it
					 * returns them.)
					 */
					qt->writes = true;
					if (!own || q->returningList != NIL)
						qt->returns = true;
					if ((own ? exports_qtaint_own_write(qt, q->targetList) :
						 exports_qtaint_args(qt, q->targetList)) ||
						exports_qtaint_args(qt, q->returningList))
						qt->folds = qt->write_folds = true;
				}
				(void) query_tree_walker(q, exports_citus_walker, (void *) qt,
										 QTW_IGNORE_JOINALIASES);
				qt->stack = saved;
				return false;
			}
		case T_FromExpr:
			if (!qt->selects && exports_qtaint(qt, ((FromExpr *) node)->quals))
				qt->selects = true;
			break;
		case T_JoinExpr:
			if (!qt->selects && exports_qtaint(qt, ((JoinExpr *) node)->quals))
				qt->selects = true;
			break;
		case T_Aggref:
			if (!qt->folds && ((Aggref *) node)->aggfnoid != F_COUNT_ANY &&
				((Aggref *) node)->aggfnoid != F_COUNT_ &&
				exports_qtaint_args(qt, ((Aggref *) node)->args))
				qt->folds = true;
			break;
		case T_FuncExpr:
			if (!qt->folds && exports_is_sink(((FuncExpr *) node)->funcid) &&
				exports_qtaint_args(qt, ((FuncExpr *) node)->args))
				qt->folds = true;
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			if (!qt->folds && exports_is_sink(((OpExpr *) node)->opfuncid) &&
				exports_qtaint_args(qt, ((OpExpr *) node)->args))
				qt->folds = true;
			break;
		case T_ScalarArrayOpExpr:
			if (!qt->folds && exports_is_sink(((ScalarArrayOpExpr *) node)->opfuncid) &&
				exports_qtaint_args(qt, ((ScalarArrayOpExpr *) node)->args))
				qt->folds = true;
			break;
		case T_WindowFunc:
			if (!qt->folds && exports_is_sink(((WindowFunc *) node)->winfnoid) &&
				exports_qtaint_args(qt, ((WindowFunc *) node)->args))
				qt->folds = true;
			break;
		default:
			break;
	}
	return expression_tree_walker(node, exports_citus_walker, (void *) qt);
}

/* Does a query tree read a masking view of a Citus table? */
static bool
exports_reads_citus_walker(Node *node, void *arg)
{
	Oid			owner = *(Oid *) arg;

	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;
		ListCell   *lc;

		foreach(lc, q->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

			if (rte->rtekind == RTE_RELATION && views_is_citus(rte->relid) &&
				compat_query_check_as_user(q, rte) == owner)
				return true;
		}
		return query_tree_walker(q, exports_reads_citus_walker, arg, QTW_IGNORE_JOINALIASES);
	}
	return expression_tree_walker(node, exports_reads_citus_walker, arg);
}

/*
 * hooks.c, before planning: does the query read a masking view of a Citus
 * table?  Then what leaves it (see above), for exports_citus_after; else
 * NULL.
 */
CitusExports *
exports_citus_before(Query *parse)
{
	QueryTaint	qt;
	CitusExports *ce;
	ListCell   *lc;

	if (parse->commandType == CMD_UTILITY || !pii_guard_citus_loaded() ||
		pii_guard_on_citus_worker())
		return NULL;
	memset(&qt, 0, sizeof(qt));
	qt.nreveal = reveal_functions(&qt.reveal_oids);
	qt.owner = views_owner_role();
	if (qt.nreveal == 0 || !OidIsValid(qt.owner) ||
		!exports_reads_citus_walker((Node *) parse, &qt.owner))
		return NULL;
	qt.reads = true;
	(void) exports_citus_walker((Node *) parse, &qt);
	/* (rows a protected value chose, written anywhere: see above) */
	if (qt.writes && qt.returns && qt.selects)
		qt.folds = qt.write_folds = true;
	ce = palloc0(sizeof(CitusExports));
	qt.stack = list_make1(parse);
	foreach(lc, parse->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Oid			type = exprType((Node *) tle->expr);

		if (tle->resjunk || !exports_qtaint(&qt, (Node *) tle->expr))
			continue;
		/* (a whole row, or a value no marker can wrap: every row counts) */
		if (type == RECORDOID || type_is_rowtype(type) || get_typtype(type) == TYPTYPE_PSEUDO)
			qt.selects = true;
		else
			ce->columns = bms_add_member(ce->columns, tle->resno);
	}
	ce->every_row = qt.selects;
	ce->folds = qt.folds;
	ce->write_folds = qt.write_folds;
	ce->charged = qt.charged;
	ce->subplan = statement_planning_depth() > 0;
	return ce;
}

/* _protected(anyelement, regclass), or InvalidOid (before it existed). */
static Oid
exports_protected_oid(void)
{
	static Oid	oid = InvalidOid;
	static uint64 generation = 0;

	if (generation != policy_current_generation())
	{
		Oid			nsp = pii_guard_schema_oid(true);
		Oid			argtypes[2] = {ANYELEMENTOID, REGCLASSOID};

		oid = OidIsValid(nsp) ?
			GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid, CStringGetDatum("_protected"),
							PointerGetDatum(buildoidvector(argtypes, 2)), ObjectIdGetDatum(nsp)) :
			InvalidOid;
		generation = policy_current_generation();
	}
	return oid;
}

static int	exports_max_node_id(Plan *plan);

/* The highest plan node id in a list of plans. */
static int
exports_max_node_id_list(List *plans)
{
	ListCell   *lc;
	int			max = 0;

	foreach(lc, plans)
		max = Max(max, exports_max_node_id((Plan *) lfirst(lc)));
	return max;
}

/* The highest plan node id in a plan tree (its children of every kind). */
static int
exports_max_node_id(Plan *plan)
{
	int			max;

	if (plan == NULL)
		return 0;
	check_stack_depth();
	max = plan->plan_node_id;
	max = Max(max, exports_max_node_id(plan->lefttree));
	max = Max(max, exports_max_node_id(plan->righttree));
	switch (nodeTag(plan))
	{
		case T_Append:
			max = Max(max, exports_max_node_id_list(((Append *) plan)->appendplans));
			break;
		case T_MergeAppend:
			max = Max(max, exports_max_node_id_list(((MergeAppend *) plan)->mergeplans));
			break;
		case T_BitmapAnd:
			max = Max(max, exports_max_node_id_list(((BitmapAnd *) plan)->bitmapplans));
			break;
		case T_BitmapOr:
			max = Max(max, exports_max_node_id_list(((BitmapOr *) plan)->bitmapplans));
			break;
		case T_SubqueryScan:
			max = Max(max, exports_max_node_id(((SubqueryScan *) plan)->subplan));
			break;
		case T_CustomScan:
			max = Max(max, exports_max_node_id_list(((CustomScan *) plan)->custom_plans));
			break;
		default:
			break;
	}
	return max;
}

/*
 * hooks.c, once the plan is made: hand its rows out through a Result whose
 * protected columns are marked (see above); refuse a role with export
 * limits a query that folds protected values (the plan depends on the role
 * and on the policy, and is made again when either changes).
 */
void
exports_citus_after(PlannedStmt *stmt, CitusExports *ce)
{
	Oid			marker = exports_protected_oid();
	Result	   *top;
	ListCell   *lc;
	int			maxid = 0;

	stmt->dependsOnRole = true;
	stmt->relationOids = lappend_oid(stmt->relationOids,
									 pii_guard_relation_oid("column_rules", false));
	if (ce->write_folds && !limits_role_unlimited())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pii_guard cannot count the protected values a write on a Citus table takes or returns"),
				 errdetail("Your role has export limits; on a distributed table the workers read the values the write stores elsewhere, returns, or chooses its rows by, where they are not counted."),
				 errhint("Write values of your own (not read from protected columns), without RETURNING protected columns, or ask without export limits.")));
	if (ce->folds && !limits_role_unlimited())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("pii_guard cannot count protected values folded into an aggregate or passed to a function on a Citus table"),
				 errdetail("Your role has export limits; on a distributed table the workers fold the values, where the rows they come from are not counted."),
				 errhint("Select the rows themselves (they count as they leave), or ask for the aggregate without export limits.")));
	/*
	 * (A query Citus plans while it plans another -- a subquery or CTE it
	 * runs first, into an intermediate result -- delivers its rows to that
	 * other query, whose own analysis followed them into it.)
	 */
	if ((ce->columns == NULL && !ce->every_row) || ce->subplan || !OidIsValid(marker) ||
		stmt->planTree == NULL || stmt->commandType != CMD_SELECT)
		return;
	top = makeNode(Result);
	/*
	 * Rows chosen by a protected value count whatever their columns (even
	 * none, or NULLs): a marked constant condition says so to the
	 * analysis (exports_selection_tainted), as a tested reveal() would.
	 */
	if (ce->every_row)
	{
		Const	   *table = makeConst(REGCLASSOID, -1, InvalidOid, 4,
									  ObjectIdGetDatum(ce->charged), false, true);
		/* cppcheck-suppress unknownEvaluationOrder ; both built just here */
		FuncExpr   *fe = makeFuncExpr(marker, BOOLOID, list_make2(makeBoolConst(true, false), table),
									  InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);

		fe->location = PII_SITE_MARK;
		top->resconstantqual = (Node *) list_make1(fe);
	}
	foreach(lc, stmt->planTree->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);
		Var		   *var = makeVarFromTargetEntry(OUTER_VAR, tle);
		Expr	   *expr = (Expr *) var;

		if (!tle->resjunk && bms_is_member(tle->resno, ce->columns))
		{
			Const	   *table = makeConst(REGCLASSOID, -1, InvalidOid, 4,
										  ObjectIdGetDatum(ce->charged), false, true);
			/* cppcheck-suppress unknownEvaluationOrder ; var and table are built above */
			FuncExpr   *fe = makeFuncExpr(marker, var->vartype, list_make2(var, table),
										  var->varcollid, var->varcollid, COERCE_EXPLICIT_CALL);

			fe->location = PII_SITE_MARK;
			expr = (Expr *) fe;
		}
		top->plan.targetlist = lappend(top->plan.targetlist,
									   makeTargetEntry(expr, tle->resno, tle->resname, tle->resjunk));
	}
	top->plan.lefttree = stmt->planTree;
	top->plan.startup_cost = stmt->planTree->startup_cost;
	top->plan.total_cost = stmt->planTree->total_cost;
	top->plan.plan_rows = stmt->planTree->plan_rows;
	top->plan.plan_width = stmt->planTree->plan_width;
	top->plan.parallel_safe = false;
	maxid = exports_max_node_id(stmt->planTree);
	foreach(lc, stmt->subplans)
		maxid = Max(maxid, exports_max_node_id((Plan *) lfirst(lc)));
	top->plan.plan_node_id = maxid + 1;
	stmt->planTree = (Plan *) top;
}

/*----------
 * Run time: the rows a query returns or writes elsewhere.
 *----------
 */

/* Does the row in slot carry a value of one of columns (not NULL)? */
static bool
exports_carries(TupleTableSlot *slot, const Bitmapset *columns)
{
	int			att = -1;

	while ((att = bms_next_member(columns, att)) >= 0)
	{
		if (att > slot->tts_tupleDescriptor->natts)
			continue;
		slot_getsomeattrs(slot, att);
		if (!slot->tts_isnull[att - 1])
			return true;
	}
	return false;
}

/* The wrapped ExecProcNodeReal of a ModifyTable's input. */
static TupleTableSlot *
exports_exec_counted(PlanState *ps)
{
	CountedNode *cn;
	TupleTableSlot *slot;

	for (cn = counted_nodes; cn != NULL && cn->ps != ps; cn = cn->next)
		;
	if (cn == NULL)
		elog(ERROR, "pii_guard: counted plan node not found");
	slot = cn->real(ps);
	if (!TupIsNull(slot) && !statement_in_internal() &&
		(cn->every_row || exports_carries(slot, cn->columns)))
		limits_count_output(cn->relid);
	return slot;
}

/* Memory context callback: a query's executor state is gone. */
static void
exports_forget(void *arg)
{
	ExportsInfo *info = (ExportsInfo *) arg;
	ExportsInfo **link;
	CountedNode **cl;

	for (link = &running; *link != NULL; link = &(*link)->next)
		if (*link == info)
		{
			*link = info->next;
			break;
		}
	for (cl = &counted_nodes; *cl != NULL;)
	{
		if ((*cl)->owner == info)
			*cl = (*cl)->next;
		else
			cl = &(*cl)->next;
	}
}

/*
 * Count the rows a ModifyTable node takes from its input when it writes
 * tainted columns into a table that is not a masking view.
 */
static void
exports_count_writes(ExportsCx *cx, ExportsInfo *info, ModifyTableState *mts)
{
	ModifyTable *mt = (ModifyTable *) mts->ps.plan;
	Plan	   *sub = outerPlan(mt);
	PlanState  *subps = outerPlanState(mts);
	Bitmapset  *columns = NULL;
	ListCell   *lc;
	CountedNode *cn;

	if (sub == NULL || subps == NULL || mt->operation == CMD_DELETE ||
		subps->ExecProcNodeReal == exports_exec_counted)
		return;
	foreach(lc, mt->resultRelations)
	{
		RangeTblEntry *rte = rt_fetch(lfirst_int(lc), cx->stmt->rtable);

		/* writes through a masking view go back into the protected table */
		if (rte->rtekind == RTE_RELATION && OidIsValid(views_base_of_view(rte->relid)))
			return;
		if (write_is_rewritten_target(cx->stmt, rte))
			return;
	}
	foreach(lc, sub->targetlist)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (!tle->resjunk && exports_output_tainted(cx, sub, tle->resno, 0))
			columns = bms_add_member(columns, tle->resno);
	}
	if (compat_is_merge(mt) && exports_tainted(cx, (Plan *) mt, compat_merge_actions(mt), 0))
	{
		/* (MERGE's actions compute what they write: count every row) */
		foreach(lc, sub->targetlist)
			columns = bms_add_member(columns, lfirst_node(TargetEntry, lc)->resno);
	}
	if (columns == NULL && !info->every_row)
		return;
	cn = palloc0(sizeof(CountedNode));
	cn->every_row = info->every_row;
	cn->ps = subps;
	cn->real = subps->ExecProcNodeReal;
	cn->columns = columns;
	cn->relid = cx->charged;
	cn->owner = info;
	subps->ExecProcNodeReal = exports_exec_counted;
	cn->next = counted_nodes;
	counted_nodes = cn;
	info->writes = true;
}

/* planstate_tree_walker callback: ModifyTable nodes. */
static bool
exports_find_writes(PlanState *ps, void *arg)
{
	void	  **a = (void **) arg;

	if (ps == NULL)
		return false;
	if (IsA(ps, ModifyTableState))
		exports_count_writes((ExportsCx *) a[0], (ExportsInfo *) a[1], (ModifyTableState *) ps);
	return planstate_tree_walker(ps, exports_find_writes, arg);
}

/* plan_walk_expressions callback: is a condition that chooses rows tainted? */
static void
exports_selection_walk(Plan *plan, Node *exprs, void *arg)
{
	void	  **a = (void **) arg;
	ExportsCx  *cx = (ExportsCx *) a[0];
	bool	   *found = (bool *) a[1];
	bool		chooses;

	if (*found || exprs == NULL)
		return;
	chooses = plan_exprs_choose_rows(plan, exprs);
	if (chooses && exports_tainted(cx, plan, exprs, 0))
		*found = true;
}

/*
 * Does a condition of stmt's plan -- a filter, a join's, an index's --
 * test protected values?  Then which rows come out is itself protected
 * information (the ids of every customer whose name starts with a
 * surname), and every row the statement returns or writes elsewhere
 * counts, whatever its columns.
 */
static bool
exports_selection_tainted(ExportsCx *cx, PlannedStmt *stmt)
{
	bool		found = false;
	void	   *args[2];

	args[0] = cx;
	args[1] = &found;
	plan_walk_expressions(stmt, exports_selection_walk, args);
	return found;
}

/*
 * hooks.c, at ExecutorStart (after the executor state exists): for a role
 * with export limits and a plan that reveals protected values, find where
 * they leave -- the columns of the rows it returns, and the rows it writes
 * into other tables.
 */
void
exports_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	ExportsCx	cx;
	ExportsInfo *info;
	MemoryContext old;
	MemoryContextCallback *cb;
	void	   *args[2];

	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->estate == NULL ||
		stmt->commandType == CMD_UTILITY || statement_in_internal() ||
		!reveal_plan_reveals(stmt) || limits_role_unlimited())
		return;
	old = MemoryContextSwitchTo(queryDesc->estate->es_query_cxt);
	if (!exports_cx_init(&cx, stmt))
	{
		MemoryContextSwitchTo(old);
		return;
	}

	/*
	 * Under the SQL objects of a release before 0.3 there is no _exported()
	 * to count aggregate inputs and function arguments with: a role with
	 * limits is refused a plan that would need it, until the update.
	 */
	if (!OidIsValid(exports_counter_oid(1)))
	{
		plan_walk_expressions(stmt, exports_mark_node, &cx);
		if (cx.uncounted)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("pii_guard's SQL objects are older than its library"),
					 errdetail("This statement passes protected values to an aggregate or a function, which export limits count through pii_guard._exported(), added in version 0.3."),
					 errhint("Run ALTER EXTENSION pii_guard UPDATE.")));
	}
	info = palloc0(sizeof(ExportsInfo));
	info->qd = queryDesc;
	for (int i = 1; i <= list_length(stmt->planTree->targetlist); i++)
	{
		TargetEntry *tle = list_nth_node(TargetEntry, stmt->planTree->targetlist, i - 1);

		if (!tle->resjunk && exports_output_tainted(&cx, stmt->planTree, i, 0))
			info->columns = bms_add_member(info->columns, i);
	}
	info->every_row = exports_selection_tainted(&cx, stmt);
	args[0] = &cx;
	args[1] = info;
	(void) exports_find_writes(queryDesc->planstate, args);
	{
		ListCell   *lc;

		foreach(lc, queryDesc->estate->es_subplanstates)
			(void) exports_find_writes((PlanState *) lfirst(lc), args);
	}
	for (CountedNode *cn = counted_nodes; cn != NULL; cn = cn->next)
		if (cn->owner == info && !OidIsValid(cn->relid))
			cn->relid = cx.charged;
	info->relid = cx.charged;
	hash_destroy(cx.memo);
	if (cx.params)
		hash_destroy(cx.params);

	if (info->columns == NULL && !info->writes && !info->every_row)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	info->next = running;
	running = info;
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = exports_forget;
	cb->arg = info;
	MemoryContextRegisterResetCallback(queryDesc->estate->es_query_cxt, cb);
	MemoryContextSwitchTo(old);
}

/* DestReceiver callbacks of the wrapped destination. */
static bool
exports_receive(TupleTableSlot *slot, DestReceiver *self)
{
	ExportDest *ed = (ExportDest *) self;

	if (ed->skip > 0)
		ed->skip--;
	else if (!statement_in_internal() &&
			 (ed->info->every_row || exports_carries(slot, ed->info->columns)))
		limits_count_output(ed->info->relid);
	return ed->inner->receiveSlot(slot, ed->inner);
}

static void
exports_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	ExportDest *ed = (ExportDest *) self;

	ed->inner->rStartup(ed->inner, operation, typeinfo);
}

static void
exports_shutdown(DestReceiver *self)
{
	ExportDest *ed = (ExportDest *) self;

	ed->inner->rShutdown(ed->inner);
}

static void
exports_destroy(DestReceiver *self pg_attribute_unused())
{
	/* the inner destination belongs to whoever made it */
}

/*
 * hooks.c, around ExecutorRun: the destination the query's rows go to,
 * wrapped so that those carrying protected values count; NULL when there
 * is nothing to count (then the query's own destination stays).
 */
DestReceiver *
exports_wrap_dest(QueryDesc *queryDesc)
{
	ExportsInfo *info;
	ExportDest *ed;

	if (running == NULL || queryDesc->dest == NULL || queryDesc->dest->mydest == DestNone)
		return NULL;
	for (info = running; info != NULL && info->qd != queryDesc; info = info->next)
		;
	if (info == NULL || (info->columns == NULL && !info->every_row))
		return NULL;
	ed = MemoryContextAllocZero(queryDesc->estate->es_query_cxt, sizeof(ExportDest));
	ed->pub.receiveSlot = exports_receive;
	ed->pub.rStartup = exports_startup;
	ed->pub.rShutdown = exports_shutdown;
	ed->pub.rDestroy = exports_destroy;
	ed->pub.mydest = queryDesc->dest->mydest;
	ed->inner = queryDesc->dest;
	ed->info = info;

	/*
	 * A cursor WITH HOLD is run again from its start at COMMIT, into a
	 * store its later FETCHes read (which run no executor): the rows it had
	 * delivered before count once, the rest now.
	 */
	if (ActivePortal != NULL && ActivePortal->queryDesc == queryDesc &&
		(ActivePortal->cursorOptions & CURSOR_OPT_HOLD) &&
		ActivePortal->holdStore != NULL && queryDesc->dest->mydest == DestTuplestore)
		ed->skip = ActivePortal->portalPos;
	return &ed->pub;
}

PG_FUNCTION_INFO_V1(pii_guard_exported);
PG_FUNCTION_INFO_V1(pii_guard_exported_row);

/*
 * SQL function: _exported(value anyelement) returns anyelement
 *
 * The value leaves (see the file header): one row counts, unless it is
 * NULL.
 */
Datum
pii_guard_exported(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!statement_in_internal())
		limits_count_output(InvalidOid);
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * SQL function: _exported(value anyelement, base regclass, row_key "any")
 *		returns anyelement
 *
 * The value of row row_key of base leaves: the row counts, once per
 * statement (and cursor) however many of its values do.
 */
Datum
pii_guard_exported_row(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!statement_in_internal() && !PG_ARGISNULL(1))
	{
		/* (the row key's type, once per call site: this runs on every row) */
		if (fcinfo->flinfo->fn_extra == NULL)
			fcinfo->flinfo->fn_extra = (void *) (uintptr_t) get_fn_expr_argtype(fcinfo->flinfo, 2);
		limits_count_row(PG_GETARG_OID(1), PG_GETARG_DATUM(2),
						 (Oid) (uintptr_t) fcinfo->flinfo->fn_extra, PG_ARGISNULL(2));
	}
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

PG_FUNCTION_INFO_V1(pii_guard_protected);

/*
 * SQL function: _protected(value anyelement, base regclass) returns
 * anyelement -- the identity (see "Citus" above).
 */
Datum
pii_guard_protected(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
