/*-------------------------------------------------------------------------
 *
 * cluster.c
 *		On a Citus worker: who may log in, and which queries on the shards
 *		of protected tables a governed role's connection may run.
 *
 * Citus opens its connections to the workers as the role running the
 * statement on the coordinator, so every role that reads distributed tables
 * can log in on the workers -- and could connect to one directly, past the
 * coordinator, where pii_guard's masking, limits and audit are decided.
 * With pii_guard.cluster_peer_cn set (on the workers), a role other than a
 * superuser is admitted only over TLS with a client certificate that the
 * server verified against its ssl_ca_file and whose common name is that
 * setting: the certificate the coordinator presents through
 * citus.node_conninfo (sslcert, sslkey), whose key a client does not have.
 * Everyone else is refused before the session starts (28000), whatever
 * pg_hba.conf says -- sessions and logical replication connections alike.
 *
 * Shards.  A query on a masking view of a distributed table is planned on
 * the coordinator and sent to the workers as one query per shard, which
 * Citus deparses from the expanded view: the view's own query, with the
 * base table's name replaced by the shard's --
 *
 *	SELECT ... FROM (SELECT id, pii_guard.reveal(phone,
 *		'public_pii.customers'::regclass, 'phone'::name, id) AS phone, ...
 *		FROM public_pii.customers_102008 customers) customers WHERE ...
 *
 * -- run on the worker as the reading role, which holds no privilege on
 * the shard (protect_table took them all, and Citus took them off the
 * shards).  cluster_admit_task() lets such a query read the shard as
 * pii_guard_owner, the views' owner, as the view would on one server --
 * and only then -- when
 *
 *	- this backend runs the coordinator's tasks only (citus.c): admitted
 *	  with the coordinator's certificate (so pii_guard.cluster_peer_cn must
 *	  be set), started by Citus's executor, never given another
 *	  application_name -- not a run_command_on_workers() connection, which
 *	  carries the caller's SQL, nor one a client opened;
 *	- the query is the statement the coordinator sent (nesting level 0),
 *	  not one a function runs;
 *	- and in the whole query every reference to a protected column of the
 *	  shard (one with a rule, or encrypted) is the value of a reveal() call
 *	  naming the shard's table, that very column and the row key of the
 *	  same row -- what the masking view writes, and nothing else: no
 *	  protected column in a condition, a join, a function or a whole-row
 *	  reference.  The other columns are what the view shows as they are.
 *
 * Everything else about the query is proved as on one server: reveal()'s
 * proof of the finished plan (reveal.c) accepts the shard as the table,
 * row-level security applies (the shard's policies, as the view owner's),
 * and each reveal() decides by the reading role's policy, read from this
 * node's placement of the policy tables.  A query not admitted reads the
 * shard with the role's own privileges, which are none: the fail-closed
 * check refuses it (42501, audited on this node).
 *
 * Writes.  A write through such a view is rewritten on the coordinator
 * onto the base table (write.c) and sent for each shard; the shard is its
 * result relation.  cluster_admit_write() admits it on the same terms,
 * and when its SET entries and inserted envelopes are the rewrite's own;
 * its rows are then audited here (cluster_write_start), since Citus
 * refuses the statement triggers that audit writes on one server.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "replication/walsender.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pii_guard.h"

char	   *pii_guard_cluster_peer_cn = NULL;

/* The row key an admitted UPDATE or DELETE returns to the write audit. */
#define CLUSTER_ROW_KEY_JUNK "pii_guard_row_key"

/*
 * The statement admitted is a superuser's or pii_guard_owner's: admitted
 * whatever the policy exempts them from, so that the calls of the rewrite's
 * functions in it are proved (the IMMUTABLE ones answer nobody anywhere
 * else: reveal.c).
 */
static bool admit_trusted = false;

/* Does this connection come from the cluster (the coordinator's certificate)? */
static bool
cluster_peer(Port *port)
{
#ifdef USE_SSL
	return port->ssl_in_use && port->peer_cert_valid && port->peer_cn != NULL &&
		strcmp(port->peer_cn, pii_guard_cluster_peer_cn) == 0;
#else
	return false;
#endif
}

/*
 * After authentication (ClientAuthentication_hook, in the transaction that
 * InitPostgres opens for it): refuse a role other than a superuser that did
 * not come from the cluster.  Physical replication connections (which run
 * no SQL) are left to pg_hba.conf; a logical one (replication=database)
 * runs SQL in the database like any session, and is checked.
 */
void
cluster_check_login(Port *port, int status)
{
	Oid			roleid;
	bool		peer;

	if (status != STATUS_OK || pii_guard_cluster_peer_cn == NULL ||
		pii_guard_cluster_peer_cn[0] == '\0' || (am_walsender && !am_db_walsender))
		return;
	peer = cluster_peer(port);
	citus_note_login(peer, port->application_name);
	roleid = get_role_oid(port->user_name, true);
	if ((OidIsValid(roleid) && superuser_arg(roleid)) || peer)
		return;
	ereport(FATAL,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("role \"%s\" may connect to this node only through the Citus coordinator",
					port->user_name),
			 errdetail("pii_guard.cluster_peer_cn is set: roles other than superusers are admitted only with the coordinator's client certificate."),
			 errhint("Connect to the coordinator.")));
}

/* What the admission of one range table entry of a shard checks. */
typedef struct AdmitContext
{
	Query	   *query;			/* the query whose range table holds it */
	int			rti;
	int			depth;			/* of the node walked, below query */
	Oid			base;			/* the protected table */
	Oid			shard;
	AttrNumber	rowkey_att;
	Bitmapset  *protected_atts;
	Bitmapset  *encrypted_atts;
	const Oid  *reveal_oids;
	int			nreveal;
	bool		refused;
} AdmitContext;

static bool cluster_admit_walker(Node *node, AdmitContext *cx);
static void cluster_return_row_key(Query *query, RangeTblEntry *rte, Oid base);

/* A Var of the shard's entry, seen from the node walked? */
static bool
cluster_is_shard_var(AdmitContext *cx, Node *node)
{
	return node != NULL && IsA(node, Var) &&
		((Var *) node)->varlevelsup == (Index) cx->depth &&
		(int) ((Var *) node)->varno == cx->rti;
}

/*
 * reveal(value, base, col, row_key) as the masking view writes it: value a
 * column of the shard, base the shard's table, col that column's name,
 * row_key the table's row key of the same row.
 */
static bool
cluster_reveal_is_views(AdmitContext *cx, FuncExpr *fe)
{
	Node	   *value;
	Node	   *base;
	Node	   *col;
	Node	   *key;
	char	   *attname;

	if (list_length(fe->args) != 4)
		return false;
	/* (a binary-compatible relabeling at most: no cast function sees the value) */
	value = linitial(fe->args);
	if (IsA(value, RelabelType))
		value = (Node *) ((RelabelType *) value)->arg;
	base = lsecond(fe->args);
	col = lthird(fe->args);
	key = lfourth(fe->args);
	if (IsA(key, RelabelType))
		key = (Node *) ((RelabelType *) key)->arg;
	if (!cluster_is_shard_var(cx, value) || ((Var *) value)->varattno <= 0 ||
		!cluster_is_shard_var(cx, key) || ((Var *) key)->varattno != cx->rowkey_att)
		return false;
	if (!IsA(base, Const) || ((Const *) base)->constisnull ||
		((Const *) base)->consttype != REGCLASSOID ||
		DatumGetObjectId(((Const *) base)->constvalue) != cx->base)
		return false;
	if (!IsA(col, Const) || ((Const *) col)->constisnull ||
		((Const *) col)->consttype != NAMEOID)
		return false;
	attname = get_attname(cx->shard, ((Var *) value)->varattno, true);
	return attname != NULL &&
		strcmp(attname, NameStr(*DatumGetName(((Const *) col)->constvalue))) == 0;
}

/*
 * A Var that reads a protected column of the shard outside reveal(): of
 * its entry, or of a join of the shard's query that passes one on.
 */
static bool
cluster_var_refused(AdmitContext *cx, Var *var)
{
	RangeTblEntry *rte;

	if (var->varlevelsup != (Index) cx->depth)
		return false;
	if ((int) var->varno == cx->rti)
		return var->varattno == 0 || bms_is_member(var->varattno, cx->protected_atts);
	if ((int) var->varno < 1 || (int) var->varno > list_length(cx->query->rtable))
		return true;
	rte = rt_fetch(var->varno, cx->query->rtable);
	if (rte->rtekind != RTE_JOIN)
		return false;
	if (var->varattno <= 0 || var->varattno > list_length(rte->joinaliasvars))
		return true;			/* a whole join row: not followed */
	{
		int			depth = cx->depth;
		bool		refused;

		/* (alias expressions name the query's own entries) */
		cx->depth = 0;
		refused = cluster_admit_walker(list_nth(rte->joinaliasvars, var->varattno - 1), cx);
		cx->depth = depth;
		return refused;
	}
}

static bool
cluster_admit_walker(Node *node, AdmitContext *cx)
{
	if (node == NULL)
		return false;
	if (IsA(node, Var))
	{
		if (cluster_var_refused(cx, (Var *) node))
		{
			cx->refused = true;
			return true;
		}
		return false;
	}
	if (IsA(node, FuncExpr) && reveal_is_one_of(cx->reveal_oids, cx->nreveal, ((FuncExpr *) node)->funcid) &&
		cluster_reveal_is_views(cx, (FuncExpr *) node))
		return false;			/* (its value and key are the view's) */
	if (IsA(node, Query))
	{
		bool		result;

		cx->depth++;
		result = query_tree_walker((Query *) node, cluster_admit_walker, cx,
								   QTW_IGNORE_JOINALIASES);
		cx->depth--;
		return result;
	}
	return expression_tree_walker(node, cluster_admit_walker, cx);
}

/*
 * The admission's context for range table entry rti of query, a shard of
 * protected table base: false if there is nothing to admit (an exempt
 * role, a table without a row key).
 */
static bool
cluster_admit_init(AdmitContext *cx, Query *query, int rti, RangeTblEntry *rte, Oid base)
{
	const char *row_key = views_row_key(base);
	int			natts;
	int			att;
	HeapTuple	tup;

	if (row_key == NULL || (!admit_trusted && policy_is_exempt(GetUserId(), rte->relid)))
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rte->relid));
	if (!HeapTupleIsValid(tup))
		return false;
	natts = ((Form_pg_class) GETSTRUCT(tup))->relnatts;
	ReleaseSysCache(tup);
	memset(cx, 0, sizeof(*cx));
	cx->query = query;
	cx->rti = rti;
	cx->base = base;
	cx->shard = rte->relid;
	cx->rowkey_att = get_attnum(rte->relid, row_key);
	cx->nreveal = reveal_functions(&cx->reveal_oids);
	if (cx->rowkey_att == InvalidAttrNumber || cx->nreveal == 0)
		return false;
	for (att = 1; att <= natts; att++)
	{
		char	   *attname = get_attname(rte->relid, (AttrNumber) att, true);
		Oid			type;

		if (attname == NULL)
			continue;			/* dropped */
		type = get_atttype(rte->relid, (AttrNumber) att);
		if (type == enctype_encrypted_text_oid() || type == enctype_encrypted_bytea_oid())
			cx->encrypted_atts = bms_add_member(cx->encrypted_atts, att);
		if (type == enctype_encrypted_text_oid() || type == enctype_encrypted_bytea_oid() ||
			policy_decide(GetUserId(), base, attname)->has_rule)
			cx->protected_atts = bms_add_member(cx->protected_atts, att);
	}
	return true;
}

/*
 * Range table entry rti of query reads a shard of a protected table: set it
 * to be checked as pii_guard_owner if the query uses the shard's protected
 * columns as the masking view does (see the file header).
 */
static void
cluster_admit_entry(Query *query, int rti, RangeTblEntry *rte, Oid base, Oid owner)
{
	AdmitContext cx;

	if (!cluster_admit_init(&cx, query, rti, rte, base))
		return;
	(void) query_tree_walker(query, cluster_admit_walker, &cx, QTW_IGNORE_JOINALIASES);
	if (!cx.refused)
		compat_query_set_check_as_user(query, rte, owner);
}

/*
 * A Const of type type (not NULL if not_null), or a column's value in a
 * VALUES list of such constants.
 */
static bool
cluster_is_const(AdmitContext *cx, Node *node, Oid type, bool not_null)
{
	if (node != NULL && IsA(node, Const))
		return ((Const *) node)->consttype == type && !(not_null && ((Const *) node)->constisnull);
	if (node != NULL && IsA(node, Var) && ((Var *) node)->varlevelsup == 0 &&
		((Var *) node)->varno >= 1 && (int) ((Var *) node)->varno <= list_length(cx->query->rtable))
	{
		RangeTblEntry *rte = rt_fetch(((Var *) node)->varno, cx->query->rtable);
		ListCell   *lc;

		if (rte->rtekind != RTE_VALUES || ((Var *) node)->varattno <= 0)
			return false;
		foreach(lc, rte->values_lists)
		{
			List	   *row = (List *) lfirst(lc);

			if (((Var *) node)->varattno > list_length(row) ||
				!cluster_is_const(cx, list_nth(row, ((Var *) node)->varattno - 1), type, not_null))
				return false;
		}
		return true;
	}
	return false;
}

/*
 * A SET entry as the rewrite writes it: _write_set_shard(stored, base, col,
 * row_key, value, may), stored the column set, base the shard's table, col
 * that column's name, row_key the row key of the same row, may a constant
 * (the coordinator's _write_may()), and value using no protected column
 * outside reveal().  Returns the call (to be marked if the whole statement
 * is admitted), or NULL.
 */
static FuncExpr *
cluster_write_set_ok(AdmitContext *cx, TargetEntry *tle)
{
	Node	   *expr = (Node *) tle->expr;
	FuncExpr   *fe;
	bool		is_set;
	Node	   *base;
	Node	   *col;
	char	   *attname;

	/*
	 * (the parser's coercion of the value to the column's type modifier or
	 * domain, on top: it checks the value written, whatever it is)
	 */
	for (;;)
	{
		if (expr != NULL && IsA(expr, RelabelType))
			expr = (Node *) ((RelabelType *) expr)->arg;
		else if (expr != NULL && IsA(expr, CoerceToDomain))
			expr = (Node *) ((CoerceToDomain *) expr)->arg;
		else if (expr != NULL && IsA(expr, FuncExpr) && exprIsLengthCoercion(expr, NULL))
			expr = linitial(((FuncExpr *) expr)->args);
		else
			break;
	}
	fe = (FuncExpr *) expr;
	if (fe == NULL || !IsA(fe, FuncExpr) || list_length(fe->args) != 6 ||
		!write_is_shard_write_function(fe->funcid, &is_set) || !is_set)
		return NULL;
	base = lsecond(fe->args);
	col = lthird(fe->args);
	if (!cluster_is_shard_var(cx, linitial(fe->args)) ||
		((Var *) linitial(fe->args))->varattno != tle->resno ||
		!cluster_is_shard_var(cx, lfourth(fe->args)) ||
		((Var *) lfourth(fe->args))->varattno != cx->rowkey_att ||
		!IsA(base, Const) || !cluster_is_const(cx, base, REGCLASSOID, true) ||
		DatumGetObjectId(((Const *) base)->constvalue) != cx->base ||
		!cluster_is_const(cx, col, NAMEOID, true) ||
		!IsA(col, Const) ||
		!cluster_is_const(cx, list_nth(fe->args, 5), INT4OID, true) ||
		!IsA(list_nth(fe->args, 5), Const))
		return NULL;
	attname = get_attname(cx->shard, tle->resno, true);
	if (attname == NULL || strcmp(attname, NameStr(*DatumGetName(((Const *) col)->constvalue))) != 0)
		return NULL;
	if (cluster_admit_walker(list_nth(fe->args, 4), cx))
		return NULL;
	return fe;
}

/*
 * The coordinator's rewrite of a write through the masking view of a
 * distributed table (write.c), as Citus sends it for one shard -- result
 * relation entry rte of query.  Admitted as pii_guard_owner (see the file
 * header) when, besides what a read needs of every other use of the
 * shard's protected columns (they are reveal()'s, here _reveal_shard()'s,
 * in WHERE and RETURNING):
 *
 *	UPDATE	every SET entry is the rewrite's _write_set_shard() of that
 *			column (cluster_write_set_ok);
 *	INSERT	every encrypted column's value is a constant, the envelope that
 *			_write_seal() made on the coordinator;
 *	DELETE	nothing more;
 *
 * and there is no ON CONFLICT and no WITH query, and the shard is a
 * table (a partitioned one's rows are written to its partitions, which the
 * write audit does not follow).  The UPDATE and DELETE also return the row
 * key of each row they write, to this node's write audit
 * (cluster_write_start), as a column of their own.
 */
static void
cluster_admit_write(Query *query, RangeTblEntry *rte, Oid base, Oid owner)
{
	AdmitContext cx;
	Query		walked;
	ListCell   *lc;
	List	   *sets = NIL;

	if (query->onConflict != NULL || query->cteList != NIL || query->hasModifyingCTE ||
		rte->relkind != RELKIND_RELATION ||
		!cluster_admit_init(&cx, query, query->resultRelation, rte, base))
		return;
	/* (every part of the query but its target list, walked as a read's) */
	walked = *query;
	walked.targetList = NIL;
	if (query_tree_walker(&walked, cluster_admit_walker, &cx, QTW_IGNORE_JOINALIASES) || cx.refused)
		return;
	foreach(lc, query->targetList)
	{
		TargetEntry *tle = lfirst_node(TargetEntry, lc);

		if (tle->resjunk || query->commandType == CMD_DELETE)
		{
			if (cluster_admit_walker((Node *) tle->expr, &cx))
				return;
		}
		else if (query->commandType == CMD_UPDATE)
		{
			FuncExpr   *set = cluster_write_set_ok(&cx, tle);

			if (set == NULL)
				return;
			sets = lappend(sets, set);
		}
		else if (bms_is_member(tle->resno, cx.encrypted_atts))
		{
			if (!cluster_is_const(&cx, (Node *) tle->expr, get_atttype(cx.shard, tle->resno), false))
				return;
		}
		else if (cluster_admit_walker((Node *) tle->expr, &cx))
			return;
	}
	foreach(lc, sets)
		((FuncExpr *) lfirst(lc))->location = PII_SITE_MARK;
	compat_query_set_check_as_user(query, rte, owner);
	cluster_return_row_key(query, rte, base);
}

/*
 * An UPDATE or DELETE of query's result relation rte, a shard of protected
 * table base, that the write audit follows: it returns the row key of each
 * row it writes, as a column of its own.
 */
static void
cluster_return_row_key(Query *query, RangeTblEntry *rte, Oid base)
{
	const char *row_key = views_row_key(base);
	AttrNumber	att = row_key ? get_attnum(rte->relid, row_key) : InvalidAttrNumber;
	Oid			type;
	int32		typmod;
	Oid			collation;

	ListCell   *lc;

	if (query->commandType == CMD_INSERT || att == InvalidAttrNumber)
		return;
	foreach(lc, query->targetList)
		if (lfirst_node(TargetEntry, lc)->resname != NULL &&
			strcmp(lfirst_node(TargetEntry, lc)->resname, CLUSTER_ROW_KEY_JUNK) == 0)
			return;				/* (added already) */
	get_atttypetypmodcoll(rte->relid, att, &type, &typmod, &collation);
	query->targetList = lappend(query->targetList,
								makeTargetEntry((Expr *) makeVar(query->resultRelation, att,
																 type, typmod, collation, 0),
												list_length(query->targetList) + 1,
												pstrdup(CLUSTER_ROW_KEY_JUNK), true));
}

/* The statement admitted. */
typedef struct FindContext
{
	Query	   *top;
	Oid			owner;
} FindContext;

/*
 * Every query level of a statement: its entries that read such shards, and
 * the shard the statement itself writes.
 */
static bool
cluster_find_shards(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		Oid			owner = ((FindContext *) context)->owner;
		ListCell   *lc;
		int			rti = 0;

		foreach(lc, query->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
			Oid			base;

			rti++;
			if (rte->rtekind != RTE_RELATION)
				continue;
			base = views_table_of_shard(rte->relid);
			if (!OidIsValid(base))
				continue;
			if (rti != query->resultRelation)
				cluster_admit_entry(query, rti, rte, base, owner);
			else if (query == ((FindContext *) context)->top)
				cluster_admit_write(query, rte, base, owner);
		}
		return query_tree_walker(query, cluster_find_shards, context, QTW_IGNORE_JOINALIASES);
	}
	return expression_tree_walker(node, cluster_find_shards, context);
}

/*
 * Planner hook, before planning: on a Citus worker, admit the coordinator's
 * task queries on the shards of protected tables (see the file header).
 */
void
cluster_admit_task(Query *parse)
{
	FindContext fc;

	if (!pii_guard_citus_loaded() || statement_nesting_level() != 0 ||
		!IsTransactionState() || !citus_in_task() || !pii_guard_on_citus_worker())
		return;
	fc.owner = views_owner_role();
	fc.top = parse;
	if (!OidIsValid(fc.owner))
		return;
	admit_trusted = superuser() || GetUserId() == fc.owner;
	(void) cluster_find_shards((Node *) parse, &fc);
	/*
	 * Their own writes on the shards (not the rewrite's: on the table
	 * itself), which they may do without admission, are audited too.
	 */
	if (admit_trusted && (parse->commandType == CMD_UPDATE || parse->commandType == CMD_DELETE) &&
		parse->resultRelation > 0)
	{
		RangeTblEntry *rte = rt_fetch(parse->resultRelation, parse->rtable);
		Oid			base = rte->rtekind == RTE_RELATION ?
			views_table_of_shard(rte->relid) : InvalidOid;

		if (OidIsValid(base))
			cluster_return_row_key(parse, rte, base);
	}
}

/*----------
 * The write audit of an admitted write (a statement on one shard).  Citus
 * refuses the statement triggers that audit writes on one server (and the
 * coordinator never sees the rows), so the worker that writes the rows
 * records the event, in the same transaction: one per statement on a
 * shard, the auditor's cluster_audit_log shows them with the others.  Its
 * rows are the rows written; its row keys those of the rows fed to the
 * write (the admission made the UPDATE and DELETE return them); its
 * changed columns those an INSERT gives a value, and those for which an
 * UPDATE's _write_set_shard() stored a new value (cluster_write_changed),
 * not the ones sent back as they were read.
 *----------
 */
typedef struct ShardWrite
{
	EState	   *estate;
	PlanState  *sub;			/* the ModifyTable's input, wrapped */
	ExecProcNodeMtd sub_real;
	AttrNumber	key;			/* the row key in the input's rows, if there */
	FmgrInfo	key_out;		/* ... its output function */
	bool		insert;
	Oid			relid;			/* the shard */
	bool	   *given;			/* INSERT: the columns given a value */
	int			ngiven;
	int64		fed;
	AuditEvent	ev;
} ShardWrite;

static ShardWrite *shard_write = NULL;

/* Memory context callback: the statement's executor state is gone. */
static void
cluster_write_forget(void *arg)
{
	if (shard_write != NULL && shard_write->estate == (EState *) arg)
		shard_write = NULL;
}

/* Column col changed, for the event of sw. */
static void
cluster_write_changed_in(ShardWrite *sw, const char *col)
{
	if (!audit_list_has(sw->ev.columns_changed, col))
		audit_list_add(sw->ev.columns_changed, sizeof(sw->ev.columns_changed), col);
}

/* The wrapped input of the ModifyTable node: the rows it writes. */
static TupleTableSlot *
cluster_write_fed(PlanState *ps)
{
	ShardWrite *sw = shard_write;
	TupleTableSlot *slot;

	if (sw == NULL || sw->sub != ps)
		elog(ERROR, "pii_guard: shard write state lost");
	slot = sw->sub_real(ps);
	if (TupIsNull(slot))
		return slot;
	if (++sw->fed <= pii_guard_audit_max_row_keys && sw->key != InvalidAttrNumber)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, sw->key, &isnull);

		if (!isnull)
		{
			if (sw->key_out.fn_oid == InvalidOid)
			{
				Oid			typoutput;
				bool		varlena;

				getTypeOutputInfo(TupleDescAttr(slot->tts_tupleDescriptor, sw->key - 1)->atttypid,
								  &typoutput, &varlena);
				fmgr_info_cxt(typoutput, &sw->key_out, sw->estate->es_query_cxt);
			}
			audit_list_add(sw->ev.row_keys, sizeof(sw->ev.row_keys), OutputFunctionCall(&sw->key_out, d));
		}
	}
	if (sw->insert)
	{
		slot_getallattrs(slot);
		for (int i = 0; i < slot->tts_nvalid && i < sw->ngiven; i++)
			if (!slot->tts_isnull[i])
				sw->given[i] = true;
	}
	return slot;
}

/* Does an expression call _write_set_shard()? */
static bool
cluster_calls_write_set(Node *node, void *context)
{
	bool		is_set;

	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) &&
		write_is_shard_write_function(((FuncExpr *) node)->funcid, &is_set) && is_set)
		return true;
	return expression_tree_walker(node, cluster_calls_write_set, context);
}

/*
 * The columns an UPDATE of shard relid sets, as changed -- one that does
 * not set them through _write_set_shard() (a superuser's, or the owner's,
 * on the table itself), which tells which of its values changed.
 */
static void
cluster_write_set_columns(ShardWrite *sw, ModifyTableState *mts, Oid relid)
{
#ifdef COMPAT_UPDATE_COLNOS
	ModifyTable *mt = (ModifyTable *) mts->ps.plan;
	ListCell   *lc;

	if (mt->updateColnosLists == NIL ||
		cluster_calls_write_set((Node *) outerPlanState(mts)->plan->targetlist, NULL))
		return;
	foreach(lc, (List *) linitial(mt->updateColnosLists))
	{
		char	   *att = get_attname(relid, (AttrNumber) lfirst_int(lc), true);

		if (att != NULL && !audit_list_has(sw->ev.columns_changed, att))
			audit_list_add(sw->ev.columns_changed, sizeof(sw->ev.columns_changed), att);
	}
#endif
}

/*
 * hooks.c, ExecutorStart at level 0: a write on a shard of a protected
 * table that the coordinator sent -- an admitted one (only the admission
 * makes a shard's entry checked as pii_guard_owner on a worker), or a
 * superuser's or pii_guard_owner's -- gets its write audit.
 */
void
cluster_write_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	RangeTblEntry *rte;
	ModifyTableState *mts;
	Oid			base;
	Oid			owner;
	bool		admitted;
	ShardWrite *sw;
	MemoryContextCallback *cb;

	shard_write = NULL;
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->estate == NULL ||
		!pii_guard_citus_loaded() || stmt->commandType == CMD_SELECT ||
		stmt->commandType == CMD_UTILITY || stmt->resultRelations == NIL)
		return;
	rte = rt_fetch(linitial_int(stmt->resultRelations), stmt->rtable);
	owner = views_owner_role();
	base = rte->rtekind == RTE_RELATION ? views_table_of_shard(rte->relid) : InvalidOid;
	if (!OidIsValid(base) || !OidIsValid(owner) || !citus_in_task())
		return;
	admitted = compat_rte_check_as_user(stmt, rte) == owner;
	if (!admitted && !superuser() && GetUserId() != owner)
		return;
	mts = queryDesc->planstate != NULL && IsA(queryDesc->planstate, ModifyTableState) ?
		(ModifyTableState *) queryDesc->planstate : NULL;
	if (list_length(stmt->resultRelations) != 1 || mts == NULL || outerPlanState(mts) == NULL)
	{
		/* (an admitted write is audited, or not done) */
		if (admitted)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("pii_guard cannot audit this write on a shard of %s",
							views_masking_view_name(base))));
		return;
	}
	sw = MemoryContextAllocZero(queryDesc->estate->es_query_cxt, sizeof(ShardWrite));
	sw->estate = queryDesc->estate;
	sw->relid = rte->relid;
	sw->insert = stmt->commandType == CMD_INSERT;
	if (sw->insert)
	{
		sw->ngiven = list_length(outerPlanState(mts)->plan->targetlist);
		sw->given = MemoryContextAllocZero(queryDesc->estate->es_query_cxt,
										   sizeof(bool) * Max(sw->ngiven, 1));
	}
	if (sw->insert)
		sw->key = get_attnum(rte->relid, views_row_key(base));
	else
		sw->key = ExecFindJunkAttributeInTlist(outerPlanState(mts)->plan->targetlist,
											   CLUSTER_ROW_KEY_JUNK);
	/* (InvalidAttrNumber: a statement planned without it; its rows only) */
	audit_event_init(&sw->ev, AUDIT_WRITE);
	views_relation_name(base, sw->ev.relation, sizeof(sw->ev.relation));
	AUDIT_SET(&sw->ev, operation, stmt->commandType == CMD_INSERT ? "INSERT" :
			  stmt->commandType == CMD_UPDATE ? "UPDATE" : "DELETE");
	if (stmt->commandType == CMD_UPDATE)
		cluster_write_set_columns(sw, mts, rte->relid);
	sw->sub = outerPlanState(mts);
	sw->sub_real = sw->sub->ExecProcNodeReal;
	sw->sub->ExecProcNodeReal = cluster_write_fed;
	cb = MemoryContextAlloc(queryDesc->estate->es_query_cxt, sizeof(MemoryContextCallback));
	cb->func = cluster_write_forget;
	cb->arg = queryDesc->estate;
	MemoryContextRegisterResetCallback(queryDesc->estate->es_query_cxt, cb);
	shard_write = sw;
}

/* _write_set_shard() stored a new value in column col (reveal.c). */
void
cluster_write_changed(const char *col)
{
	if (shard_write != NULL)
		cluster_write_changed_in(shard_write, col);
}

/* hooks.c, ExecutorFinish at level 0: the write's event. */
void
cluster_write_finish(QueryDesc *queryDesc)
{
	ShardWrite *sw = shard_write;

	if (sw == NULL || sw->estate != queryDesc->estate)
		return;
	shard_write = NULL;
	for (int i = 0; i < sw->ngiven; i++)
	{
		char	   *att = sw->given[i] ? get_attname(sw->relid, (AttrNumber) (i + 1), true) : NULL;

		if (att != NULL)
			cluster_write_changed_in(sw, att);
	}
	sw->ev.rows = (int64) queryDesc->estate->es_processed;
	if (sw->ev.rows > 0)
		audit_write_event(&sw->ev);
}

/*
 * On the coordinator, after a utility statement: a superuser's or the
 * owner's COPY FROM into a protected distributed table itself, or its
 * TRUNCATE, is a write event here.  (Citus sends both to the shards as
 * utility statements, which the workers' write audit does not see, and
 * refuses the triggers that audit them on one server.  COPY's row keys
 * are not known here: rows only.)
 */
static void
cluster_audit_base(Oid relid, const char *operation, int64 rows, const char *detail)
{
	AuditEvent	ev;

	if (!OidIsValid(relid) || !views_is_citus(relid) || views_table_of(relid) != relid)
		return;
	audit_event_init(&ev, AUDIT_WRITE);
	views_relation_name(relid, ev.relation, sizeof(ev.relation));
	AUDIT_SET(&ev, operation, operation);
	if (detail != NULL)
		AUDIT_SET(&ev, detail, detail);
	ev.rows = rows;
	audit_write_event(&ev);
}

void
cluster_audit_utility(Node *parsetree, uint64 processed)
{
	if (parsetree == NULL || !pii_guard_citus_loaded() || !IsTransactionState() ||
		pii_guard_on_citus_worker())
		return;
	if (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->is_from &&
		((CopyStmt *) parsetree)->relation != NULL && processed > 0)
		cluster_audit_base(RangeVarGetRelid(((CopyStmt *) parsetree)->relation, NoLock, true),
						   "INSERT", (int64) processed, "COPY FROM (row keys not recorded on Citus)");
	else if (IsA(parsetree, TruncateStmt))
	{
		ListCell   *lc;

		foreach(lc, ((TruncateStmt *) parsetree)->relations)
			cluster_audit_base(RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true),
							   "TRUNCATE", 0, NULL);
	}
}
