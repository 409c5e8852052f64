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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "replication/walsender.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pii_guard.h"

char	   *pii_guard_cluster_peer_cn = NULL;

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
	const Oid  *reveal_oids;
	int			nreveal;
	bool		refused;
} AdmitContext;

static bool cluster_admit_walker(Node *node, AdmitContext *cx);

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
 * Range table entry rti of query reads a shard of a protected table: set it
 * to be checked as pii_guard_owner if the query uses the shard's protected
 * columns as the masking view does (see the file header).
 */
static void
cluster_admit_entry(Query *query, int rti, RangeTblEntry *rte, Oid base, Oid owner)
{
	AdmitContext cx;
	const char *row_key = views_row_key(base);
	int			natts;
	int			att;
	HeapTuple	tup;

	if (row_key == NULL || policy_is_exempt(GetUserId(), rte->relid))
		return;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rte->relid));
	if (!HeapTupleIsValid(tup))
		return;
	natts = ((Form_pg_class) GETSTRUCT(tup))->relnatts;
	ReleaseSysCache(tup);
	memset(&cx, 0, sizeof(cx));
	cx.query = query;
	cx.rti = rti;
	cx.base = base;
	cx.shard = rte->relid;
	cx.rowkey_att = get_attnum(rte->relid, row_key);
	cx.nreveal = reveal_functions(&cx.reveal_oids);
	if (cx.rowkey_att == InvalidAttrNumber || cx.nreveal == 0)
		return;
	for (att = 1; att <= natts; att++)
	{
		char	   *attname = get_attname(rte->relid, (AttrNumber) att, true);
		Oid			type;

		if (attname == NULL)
			continue;			/* dropped */
		type = get_atttype(rte->relid, (AttrNumber) att);
		if (type == enctype_encrypted_text_oid() || type == enctype_encrypted_bytea_oid() ||
			policy_decide(GetUserId(), base, attname)->has_rule)
			cx.protected_atts = bms_add_member(cx.protected_atts, att);
	}
	(void) query_tree_walker(query, cluster_admit_walker, &cx, QTW_IGNORE_JOINALIASES);
	if (!cx.refused)
		compat_query_set_check_as_user(query, rte, owner);
}

/* Every query level of a statement: its entries that read such shards. */
static bool
cluster_find_shards(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		Oid			owner = *(Oid *) context;
		ListCell   *lc;
		int			rti = 0;

		foreach(lc, query->rtable)
		{
			RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);
			Oid			base;

			rti++;
			if (rte->rtekind != RTE_RELATION || rti == query->resultRelation)
				continue;
			base = views_table_of_shard(rte->relid);
			if (OidIsValid(base))
				cluster_admit_entry(query, rti, rte, base, owner);
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
	Oid			owner;

	if (!pii_guard_citus_loaded() || statement_nesting_level() != 0 ||
		!IsTransactionState() || superuser() || !citus_in_task() ||
		!pii_guard_on_citus_worker())
		return;
	owner = views_owner_role();
	if (!OidIsValid(owner))
		return;
	(void) cluster_find_shards((Node *) parse, &owner);
}
