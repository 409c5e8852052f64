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
 * pii_guard_owner, to which RLS applies).  It writes exactly the columns
 * the statement targets: an UPDATE the columns its SET names (a column it
 * does not name carries the masked or NULL value the view showed, and
 * writing it back would destroy the stored value), an INSERT the columns it
 * names plus those the view has a default for.  PostgreSQL does not tell an
 * INSTEAD OF trigger which columns those are, so views_note_statement()
 * learns them at ExecutorStart from the statement's permission entries for
 * the masking view (insertedCols, updatedCols) and keeps them, newest
 * statement first, in the statement's executor memory: a reset callback
 * unlinks them when it is freed, at ExecutorEnd or abort.  The row returned
 * to RETURNING is read back through the masking view, so it is masked for
 * the invoker like any other read.
 *
 * Masks are never written back.  An UPDATE writes a protected column only
 * when its new value differs from what the role was shown for that row
 * (views_shown_again): a value sent back as it was loaded -- the mask, NULL
 * for a hidden column -- leaves the stored value as it is.
 *
 * What a write may do.  The values a statement gives for encrypted columns
 * are plaintext, always (a string that looks like an envelope included):
 * the trigger seals them itself, in the column's kind, and hands the write
 * view envelopes -- the only place a governed role's plaintext is sealed
 * (enctype.c refuses it anywhere else: an envelope of a plaintext of one's
 * choosing shows its blind index).  A governed role may not change a row
 * key (an unmask grant is for a row key: moving the key would move the
 * grant to another customer's row).  A write that fails on a unique or
 * exclusion constraint tells whether a value exists, also among rows that
 * row-level security hides: each is a probe, audited as a deny event and
 * counted against the role's export limits when the (sub)transaction
 * aborts, where nothing else is held.
 *
 * Fail-closed.  views_check_relation() refuses a governed role's direct
 * access to a protected base table, whatever privileges someone granted by
 * mistake.  Access through our views carries checkAsUser = pii_guard_owner
 * and passes.  The write view is refused too, except to the trigger's own
 * statement: views_writing_level holds the nesting level it runs at, so
 * that nothing nested inside it (a base table trigger) passes either.
 *
 * Cache.  pii_guard.protected_tables is read whole (it is small) by a heap
 * scan -- no SPI, so it can be built wherever a transaction is open --
 * into ViewsContext, keyed by the base table's, the masking view's and the
 * write view's OIDs.  It is built aside and takes over only when complete,
 * and it is rebuilt when the policy generation (policy.c) moves or one of
 * its relations or a schema changes: never on unrelated catalog traffic.
 * Saved SPI plans of the trigger are dropped with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "parser/parsetree.h"
#include "tcop/pquery.h"
#include "utils/portal.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "pii_guard.h"

typedef struct ProtectedTable
{
	Oid			relid;			/* hash key: base table, masking or write view */
	Oid			base_relid;
	Oid			view_relid;
	Oid			write_relid;
	char	   *base_name;		/* qualified, quoted */
	char	   *view_name;		/* qualified, quoted */
	char	   *write_name;		/* qualified, quoted */
	char	   *row_key;		/* column name, unquoted */
	char	   *rel_nsp;		/* the schema and name of relid itself */
	char	   *rel_name;		/* (for errors, which name their table) */
	char	   *sealed;			/* per masking view column (0-based): the
								 * envelope kind the trigger seals it into,
								 * or 0; NULL until the trigger first runs */
	int			nsealed;
	bool		citus;			/* base is a Citus table (distributed or
								 * reference) */
	bool		shard;			/* relid is one of its shards, on this node */
} ProtectedTable;

typedef struct PlanEntry
{
	char		key[NAMEDATALEN * 4];	/* view oid, operation, column mask */
	SPIPlanPtr	plan;
} PlanEntry;

/*
 * The columns a running statement targets on a masking view (INSERT's
 * column list, UPDATE's SET list), for its INSTEAD OF trigger, which
 * PostgreSQL does not tell.  Kept in the statement's executor memory and
 * unlinked when that is freed, at ExecutorEnd or abort.
 */
typedef struct WriteTarget
{
	struct WriteTarget *next;
	void	   *owner;			/* the statement's EState */
	Oid			view_relid;
	CmdType		operation;		/* CMD_INSERT or CMD_UPDATE */
	Bitmapset  *columns;		/* offset by FirstLowInvalidHeapAttributeNumber */
	bool		ambiguous;		/* targeted twice, with different columns */
} WriteTarget;

static MemoryContext ViewsContext = NULL;
static HTAB *protected_tables = NULL;
static HTAB *saved_plans = NULL;
static bool views_valid = false;	/* protected_tables is complete and current */
static uint64 views_generation = 0; /* the policy generation it was built at */
static uint64 views_builds = 0;	/* builds so far: the cache's version */
static Oid	owner_role = InvalidOid;
static WriteTarget *write_targets = NULL;	/* newest statement first */
static int	views_writing_level = -1;	/* nesting level of the trigger's own write */
static int	views_write_depth = 0;	/* masking_view_write calls running */

/* Conflicts of writes through a masking view, reported at (sub)abort. */
static int	pending_probes = 0;
static char pending_probe_view[2 * NAMEDATALEN + 8];

/*
 * Free the trigger's saved plans; run before ViewsContext is dropped.
 * (Not as its reset callback: saved_plans lives in a child context of its
 * own, dynahash's, which is deleted before callbacks run.)
 */
static void
views_free_plans(void)
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

/* A text column of a protected_tables row, or NULL. */
static char *
views_row_text(HeapTuple tup, TupleDesc desc, AttrNumber attnum)
{
	bool		isnull;
	Datum		d;

	if (attnum == InvalidAttrNumber)
		return NULL;
	d = heap_getattr(tup, attnum, desc, &isnull);
	return isnull ? NULL : pstrdup(NameStr(*DatumGetName(d)));
}

/* Enter one protected table under its base, masking view and write view. */
static void
views_enter(HTAB *tables, ProtectedTable *proto)
{
	Oid			keys[3];
	int			i;

	keys[0] = proto->base_relid;
	keys[1] = proto->view_relid;
	keys[2] = proto->write_relid;
	for (i = 0; i < 3; i++)
	{
		ProtectedTable *e;

		if (!OidIsValid(keys[i]))
			continue;
		e = hash_search(tables, &keys[i], HASH_ENTER, NULL);
		*e = *proto;
		e->relid = keys[i];
		e->rel_nsp = get_namespace_name(get_rel_namespace(keys[i]));
		e->rel_name = get_rel_name(keys[i]);
	}
}

/*
 * Enter the partitions and inheritance children of a protected table under
 * their own OIDs: they hold its rows, and the fail-closed check treats them
 * as it treats the table.  (Attaching or creating a partition invalidates
 * the parent's relcache entry, which rebuilds this cache.)
 */
static void
views_enter_descendants(HTAB *tables, ProtectedTable *proto)
{
	List	   *all;
	ListCell   *lc;

	if (!has_subclass(proto->base_relid))
		return;
	all = find_all_inheritors(proto->base_relid, NoLock, NULL);
	foreach(lc, all)
	{
		Oid			child = lfirst_oid(lc);
		ProtectedTable *e;

		if (child == proto->base_relid)
			continue;
		e = hash_search(tables, &child, HASH_ENTER, NULL);
		*e = *proto;
		e->relid = child;
		e->rel_nsp = get_namespace_name(get_rel_namespace(child));
		e->rel_name = get_rel_name(child);
	}
}

/*
 * Enter the shards of a protected Citus table that this node holds under
 * their own OIDs: on a worker, the queries the coordinator sends read them
 * by name (public_pii.customers_102008), and the fail-closed check and
 * reveal()'s proof treat them as the table (cluster.c admits the queries
 * that read them as its masking view does).
 */
static void
views_enter_shards(HTAB *tables, ProtectedTable *proto, int nshards, int64 *shardids)
{
	int			i;

	for (i = 0; i < nshards; i++)
	{
		Oid			shard = pii_guard_shard_relid(proto->base_relid, shardids[i]);
		ProtectedTable *e;

		if (!OidIsValid(shard))
			continue;
		e = hash_search(tables, &shard, HASH_ENTER, NULL);
		*e = *proto;
		e->relid = shard;
		e->shard = true;
		e->rel_nsp = get_namespace_name(get_rel_namespace(shard));
		e->rel_name = get_rel_name(shard);
	}
}

/*
 * Build the protected-table cache from pii_guard.protected_tables: a heap
 * scan under the latest snapshot, no SPI and no executor, so that it can
 * be built wherever a transaction is open (an executor's end included) and
 * nothing it does re-enters these hooks.  Built aside, in a context that
 * belongs to the caller's memory until the build is complete: an ERROR
 * half way leaves the previous cache invalid and frees the half-built one.
 */
static void
views_build(void)
{
	uint64		generation = policy_current_generation();
	MemoryContext building;
	MemoryContext old;
	HTAB	   *tables;
	HTAB	   *plans;
	HASHCTL		ctl;
	Oid			tables_relid;

	building = AllocSetContextCreate(CurrentMemoryContext, "pii_guard masking views",
									 ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ProtectedTable);
	ctl.hcxt = building;
	tables = hash_create("pii_guard protected tables", 16, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN * 4;
	ctl.entrysize = sizeof(PlanEntry);
	ctl.hcxt = building;
	plans = hash_create("pii_guard write plans", 16, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	tables_relid = pii_guard_relation_oid("protected_tables", true);
	if (OidIsValid(tables_relid))
	{
		char		placement[PII_LOCAL_TABLE_LEN];

		/* (on Citus, a reference table: this node's placement holds it) */
		pii_guard_local_table("protected_tables", placement, &tables_relid);
	}
	if (OidIsValid(tables_relid))
	{
		Relation	rel = table_open(tables_relid, AccessShareLock);
		TupleDesc	desc = RelationGetDescr(rel);
		AttrNumber	att_base = get_attnum(tables_relid, "base");
		AttrNumber	att_schema = get_attnum(tables_relid, "view_schema");
		AttrNumber	att_view = get_attnum(tables_relid, "view_name");
		AttrNumber	att_write = get_attnum(tables_relid, "write_view_name");
		AttrNumber	att_key = get_attnum(tables_relid, "row_key");
		/* (No new snapshot may be taken in a parallel worker: its own then.) */
		Snapshot	snapshot = RegisterSnapshot(IsInParallelMode() ?
												GetTransactionSnapshot() :
												GetLatestSnapshot());
		TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
		HeapTuple	tup;

		old = MemoryContextSwitchTo(building);
		while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			ProtectedTable proto;
			bool		isnull;
			Datum		d = heap_getattr(tup, att_base, desc, &isnull);
			char	   *view_schema = views_row_text(tup, desc, att_schema);
			char	   *view_name = views_row_text(tup, desc, att_view);
			char	   *write_name = views_row_text(tup, desc, att_write);
			char	   *base_rel;
			char	   *base_nsp;
			Oid			base_nspid;
			int64	   *shardids;
			int			nshards;

			memset(&proto, 0, sizeof(proto));
			if (isnull)
				continue;
			proto.base_relid = DatumGetObjectId(d);
			base_rel = get_rel_name(proto.base_relid);
			base_nspid = get_rel_namespace(proto.base_relid);
			base_nsp = OidIsValid(base_nspid) ? get_namespace_name(base_nspid) : NULL;
			if (base_rel == NULL || base_nsp == NULL || view_schema == NULL ||
				view_name == NULL || write_name == NULL)
				continue;		/* a table dropped meanwhile */
			proto.view_relid = get_relname_relid(view_name,
												 get_namespace_oid(view_schema, true));
			proto.write_relid = get_relname_relid(write_name, base_nspid);
			proto.base_name = quote_qualified_identifier(base_nsp, base_rel);
			proto.view_name = quote_qualified_identifier(view_schema, view_name);
			proto.write_name = quote_qualified_identifier(base_nsp, write_name);
			proto.row_key = views_row_text(tup, desc, att_key);
			nshards = pii_guard_shard_ids(proto.base_relid, &shardids);
			proto.citus = nshards > 0;
			views_enter(tables, &proto);
			views_enter_descendants(tables, &proto);
			views_enter_shards(tables, &proto, nshards, shardids);
			if (shardids != NULL)
				pfree(shardids);
		}
		MemoryContextSwitchTo(old);
		table_endscan(scan);
		UnregisterSnapshot(snapshot);
		table_close(rel, AccessShareLock);
	}

	/* Complete: it replaces the previous cache. */
	views_free_plans();
	if (ViewsContext != NULL)
		MemoryContextDelete(ViewsContext);
	MemoryContextSetParent(building, TopMemoryContext);
	ViewsContext = building;
	protected_tables = tables;
	saved_plans = plans;
	owner_role = get_role_oid(PII_GUARD_OWNER_ROLE, true);
	views_generation = generation;
	views_builds++;
	views_valid = true;
	/* pii_guard is in use in this database: its audit worker should run. */
	if (hash_get_num_entries(tables) > 0)
		audit_ensure_worker();
}

/*
 * The protected-table cache, rebuilt if stale.  While a masking view's
 * write trigger runs, the cache it started with is kept (its plans and
 * entries are in use).  Outside a transaction there is nothing to read:
 * NULL, which callers treat as "unknown".
 */
static HTAB *
views_cache(void)
{
	if (protected_tables != NULL && views_write_depth > 0)
		return protected_tables;
	if (views_valid && views_generation == policy_current_generation())
		return protected_tables;
	if (!IsTransactionState())
		return NULL;
	views_build();
	return protected_tables;
}

/* The protected-table entry for a base table, masking or write view, or NULL. */
static pg_noinline ProtectedTable *
views_lookup(Oid relid)
{
	HTAB	   *tables = views_cache();

	if (tables == NULL)
		return NULL;
	return hash_search(tables, &relid, HASH_FIND, NULL);
}

/*
 * A relation changed (relcache invalidation): a protected table or one of
 * its views (a rename, a schema move, dropped) -- or everything did.
 */
void
views_relation_changed(Oid relid)
{
	if (!views_valid)
		return;
	if (relid == InvalidOid ||
		(protected_tables != NULL && hash_search(protected_tables, &relid, HASH_FIND, NULL) != NULL))
		views_valid = false;
}

/* Syscache callback: a schema was renamed or dropped, or a role changed. */
static void
views_syscache_callback(Datum arg pg_attribute_unused(),
						int cacheid pg_attribute_unused(),
						uint32 hashvalue pg_attribute_unused())
{
	views_valid = false;
}

void
views_register_callbacks(void)
{
	CacheRegisterSyscacheCallback(NAMESPACEOID, views_syscache_callback, (Datum) 0);
}

/* Is relid a protected base table? */
bool
views_is_protected_base(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return pt != NULL && pt->base_relid == relid;
}

/*
 * The protected base table relid is, or whose partition or inheritance
 * child it is; InvalidOid if none.
 */
Oid
views_table_of(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	if (pt == NULL || relid == pt->view_relid || relid == pt->write_relid)
		return InvalidOid;
	return pt->base_relid;
}

/*
 * The protected table whose shard relid is, on this node (Citus), or
 * InvalidOid.
 */
Oid
views_table_of_shard(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return (pt != NULL && pt->shard) ? pt->base_relid : InvalidOid;
}

/* Is relid a protected Citus table, one of its views or shards? */
bool
views_is_citus(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return pt != NULL && pt->citus;
}

/*
 * A write through the masking view of a Citus table that the rewrite does
 * not do (write.c) -- what: COPY FROM, INSERT ... ON CONFLICT, one in a
 * WITH query, MERGE -- refused, saying why.  (It would go to the view's
 * trigger, and Citus refuses a write on a view over its tables, with a
 * message that does not say what to do.)
 */
void
views_refuse_citus_write(Oid view_relid, const char *what, const char *hint)
{
	ProtectedTable *pt = views_lookup(view_relid);

	if (pt == NULL || !pt->citus || pt->view_relid != view_relid)
		return;
#ifdef COMPAT_FAST_WRITES
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s through the masking view %s of a distributed table is not supported",
					what, pt->view_name),
			 errdetail("On a distributed table pii_guard writes through the masking view what it can rewrite onto %s: INSERT ... VALUES, UPDATE and DELETE, each a statement of its own.",
					   pt->base_name),
			 errhint("%s", hint ? hint : "Write the rows with INSERT ... VALUES, UPDATE or DELETE on the view.")));
#else
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s through the masking view %s of a distributed table is not supported",
					what, pt->view_name),
			 errdetail("On this PostgreSQL version a masking view is written through its trigger, which cannot write the rows of a distributed table; PostgreSQL 14 and 15 write through it onto %s.",
					   pt->base_name)));
#endif
}

/* Every write of a query tree: views_refuse_citus_write. */
void
views_refuse_citus_writes(Query *query)
{
	ListCell   *lc;

	if (query == NULL || !pii_guard_citus_loaded())
		return;
	foreach(lc, query->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query))
			views_refuse_citus_writes((Query *) cte->ctequery);
	}
	if (query->commandType != CMD_SELECT && query->commandType != CMD_UTILITY &&
		query->resultRelation > 0)
	{
		RangeTblEntry *rte = rt_fetch(query->resultRelation, query->rtable);

		if (rte->rtekind == RTE_RELATION)
			views_refuse_citus_write(rte->relid, "this write", NULL);
	}
}

/* The masking view of a protected base table or masking view, quoted. */
const char *
views_masking_view_name(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return pt ? pt->view_name : NULL;
}

/*
 * How events name relation relid, into buf: its masking view's name if it
 * is protected, else its schema-qualified name (as of now: events are
 * read after renames, drops and restores, when an OID means nothing).
 */
void
views_relation_name(Oid relid, char *buf, int size)
{
	const char *view = views_masking_view_name(relid);
	char	   *rel;
	char	   *nsp;

	if (view != NULL)
	{
		strlcpy(buf, view, size);
		return;
	}
	rel = get_rel_name(relid);
	nsp = rel ? get_namespace_name(get_rel_namespace(relid)) : NULL;
	if (rel != NULL && nsp != NULL)
		strlcpy(buf, quote_qualified_identifier(nsp, rel), size);
	else
		snprintf(buf, size, "%u", relid);
}

/* The base table behind a masking view, or InvalidOid. */
Oid
views_base_of_view(Oid relid)
{
	ProtectedTable *pt = views_lookup(relid);

	return (pt != NULL && pt->view_relid == relid) ? pt->base_relid : InvalidOid;
}

/*
 * The version of the protected-table cache (made current): it changes
 * whenever the cache is rebuilt, for what others learn from the catalogs
 * about protected tables and their views (write.c).
 */
uint64
views_cache_version(void)
{
	(void) views_cache();
	return views_builds;
}

/* The masking view of protected base table base, or InvalidOid. */
Oid
views_view_of_base(Oid base)
{
	ProtectedTable *pt = views_lookup(base);

	return (pt != NULL && pt->base_relid == base) ? pt->view_relid : InvalidOid;
}

/* The row key column of protected base table base, or NULL. */
const char *
views_row_key(Oid base)
{
	ProtectedTable *pt = views_lookup(base);

	return (pt != NULL && pt->base_relid == base) ? pt->row_key : NULL;
}

/* pii_guard_owner, the owner of every masking and write view. */
Oid
views_owner_role(void)
{
	(void) views_cache();
	return owner_role;
}

/* Has userid the privileges of the owner of some protected table? */
bool
views_any_owned_by(Oid userid)
{
	HTAB	   *tables = views_cache();
	HASH_SEQ_STATUS status;
	ProtectedTable *pt;
	bool		found = false;

	if (tables == NULL)
		return false;
	hash_seq_init(&status, tables);
	while ((pt = hash_seq_search(&status)) != NULL)
	{
		HeapTuple	tup;

		if (found || pt->relid != pt->base_relid)
			continue;
		tup = SearchSysCache1(RELOID, ObjectIdGetDatum(pt->base_relid));
		if (!HeapTupleIsValid(tup))
			continue;
		found = has_privs_of_role(userid, ((Form_pg_class) GETSTRUCT(tup))->relowner);
		ReleaseSysCache(tup);
	}
	return found;
}

/*
 * Fail-closed check of the permission list of a query or COPY (range table
 * entries, or RTEPermissionInfos from PostgreSQL 16 on): a governed role
 * may not reach a protected base table except through pii_guard's views.
 * With ereport_on_violation false (RI_Initial_Check asks so, to fall back
 * to another way), a refusal is returned, not raised, and not audited.
 */
bool
views_check_permissions(List *perms, bool ereport_on_violation)
{
	ListCell   *lc;

	foreach(lc, perms)
	{
		Oid			relid;
		Oid			check_as;

		if (compat_perm_relation(lfirst(lc), &relid, &check_as) &&
			!views_check_relation(relid, check_as, ereport_on_violation))
			return false;
	}
	return true;
}

/*
 * The write view is pii_guard's own path from masking_view_write() to the
 * base table: governed roles hold INSERT/UPDATE/DELETE on it for that, but
 * may not use it themselves (it would bypass the masking view; INSERT ...
 * ON CONFLICT DO NOTHING on it, for one, tells whether a row exists that
 * row-level security hides).  Only the trigger's own statement, at the
 * nesting level the trigger recorded, passes.
 */
static bool
views_check_write_view(ProtectedTable *pt, Oid relid, Oid user, bool ereport_on_violation)
{
	if (views_writing_level >= 0 && views_writing_level == statement_nesting_level())
		return true;
	if ((OidIsValid(owner_role) && user == owner_role) ||
		policy_is_exempt(user, pt->base_relid))
		return true;
	if (!ereport_on_violation)
		return false;
	audit_deny(pt->base_name, "direct access",
			   "fail-closed: a governed role reached for a masking view's write path");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for view %s", get_rel_name(relid)),
			 errdetail("View %s is pii_guard's internal write path to %s; rows are written through its masking view.",
					   pt->write_name, pt->base_name),
			 errhint("Use %s instead.", pt->view_name)));
	return false;
}

/*
 * The fail-closed check for one relation reached as check_as (InvalidOid:
 * the current user) -- a protected table, or a partition or inheritance
 * child of one; refusals are audited.  Returns false for a refusal
 * only when !ereport_on_violation.
 */
bool
views_check_relation(Oid relid, Oid check_as, bool ereport_on_violation)
{
	Oid			user;
	HTAB	   *tables = views_cache();
	ProtectedTable *pt;

	/* Unknown (no transaction to read the cache in) is protected. */
	if (tables == NULL)
	{
		if (!ereport_on_violation)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("pii_guard cannot tell whether relation %u is protected outside a transaction", relid)));
	}
	pt = hash_search(tables, &relid, HASH_FIND, NULL);
	if (pt == NULL)
		return true;
	user = OidIsValid(check_as) ? check_as : GetUserId();
	if (relid == pt->write_relid)
		return views_check_write_view(pt, relid, user, ereport_on_violation);
	if (relid == pt->view_relid)
		return true;
	/* the base table, or one of its partitions or inheritance children */
	if (OidIsValid(owner_role) && user == owner_role)
		return true;
	if (policy_is_exempt(user, relid))
		return true;
	if (!ereport_on_violation)
		return false;
	audit_deny(pt->base_name, "direct access",
			   "fail-closed: a governed role reached for a protected base table");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for table %s", get_rel_name(relid)),
			 errdetail("Table %s is protected by pii_guard; its data is read and written through its masking view.",
					   pt->base_name),
			 errhint("Use %s instead.", pt->view_name)));
	return false;
}

/*
 * A role refused by PostgreSQL's own privilege check on a masking view (no
 * grant on it) is refused while the statement is planned (the view's
 * expansion) or when the executor starts, after any hook of ours: note the
 * refusal ahead of the planner, so that it is audited like pii_guard's own
 * refusals.  Column-level grants are left to PostgreSQL.
 */
static bool
views_audit_refusals_in(List *perms)
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

static bool views_refusal_query(Query *q);

/* Every query level of a statement, subqueries and CTEs included. */
static bool
views_refusal_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
		return views_refusal_query((Query *) node);
	return expression_tree_walker(node, views_refusal_walker, context);
}

/*
 * One query level and those under it.  Queries nest in a query's range
 * table (subqueries, a view's query once rewritten), its CTEs and its
 * sublinks; only a query with sublinks has its expressions walked (the
 * rest of a statement's expressions, a masking view's many among them,
 * hold no query).
 */
static bool
views_refusal_query(Query *q)
{
	ListCell   *lc;

	if (views_audit_refusals_in(COMPAT_QUERY_PERMS(q)))
		return true;
	if (q->hasSubLinks)
		return query_tree_walker(q, views_refusal_walker, NULL, 0);
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_SUBQUERY && rte->subquery != NULL &&
			views_refusal_query(rte->subquery))
			return true;
	}
	foreach(lc, q->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query) && views_refusal_query((Query *) cte->ctequery))
			return true;
	}
	return false;
}


/*
 * hooks.c, before planning: audit a refusal PostgreSQL's own privilege
 * check will make on a masking view.
 */
void
views_audit_refusals(Query *parse)
{
	(void) views_refusal_walker((Node *) parse, NULL);
}

/* Memory context callback: the statement that owned these targets ended. */
static void
views_forget_targets(void *arg)	/* cppcheck-suppress constParameter ; a MemoryContextCallback */
{
	WriteTarget **link = &write_targets;

	while (*link != NULL)
	{
		if ((*link)->owner == arg)
			*link = (*link)->next;
		else
			link = &(*link)->next;
	}
}

/* A new write target of owner's, in the current memory context. */
static void
views_push_target(void *owner, Oid view_relid, CmdType operation, const Bitmapset *columns)
{
	WriteTarget *t = palloc0(sizeof(WriteTarget));

	t->owner = owner;
	t->view_relid = view_relid;
	t->operation = operation;
	t->columns = bms_copy(columns);
	t->next = write_targets;
	write_targets = t;
}

/* Note that the statement of estate targets columns of a masking view. */
static void
views_add_target(EState *estate, bool *registered, Oid view_relid,
				 CmdType operation, Bitmapset *columns)
{
	WriteTarget *t;
	MemoryContext old;

	for (t = write_targets; t != NULL && t->owner == estate; t = t->next)
		if (t->view_relid == view_relid && t->operation == operation)
		{
			if (!bms_equal(t->columns, columns))
				t->ambiguous = true;
			return;
		}
	old = MemoryContextSwitchTo(estate->es_query_cxt);
	if (!*registered)
	{
		MemoryContextCallback *cb = palloc(sizeof(MemoryContextCallback));

		cb->func = views_forget_targets;
		cb->arg = estate;
		MemoryContextRegisterResetCallback(estate->es_query_cxt, cb);
		*registered = true;
	}
	views_push_target(estate, view_relid, operation, columns);
	MemoryContextSwitchTo(old);
}

/*
 * INSERT ... ON CONFLICT on a masking view would be accepted and its ON
 * CONFLICT clause ignored (the INSTEAD OF trigger inserts): refuse it.
 */
static void
views_refuse_on_conflict(PlannedStmt *ps, Plan *plan)
{
	ModifyTable *mt = (ModifyTable *) plan;
	ListCell   *lc;

	if (plan == NULL || !IsA(plan, ModifyTable) || mt->onConflictAction == ONCONFLICT_NONE)
		return;
	foreach(lc, mt->resultRelations)
	{
		RangeTblEntry *rte = rt_fetch(lfirst_int(lc), ps->rtable);

		if (rte->rtekind == RTE_RELATION && OidIsValid(views_base_of_view(rte->relid)))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("INSERT ... ON CONFLICT is not supported on masking view %s",
							views_masking_view_name(rte->relid)),
					 errdetail("Rows are written through the view by a trigger, which cannot honour ON CONFLICT."),
					 errhint("Check for the row first (SELECT ... FOR UPDATE), then INSERT or UPDATE it.")));
	}
}

/*
 * ExecutorStart (after the executor state exists): learn which columns the
 * statement targets on masking views, for masking_view_write(), and refuse
 * ON CONFLICT on them.
 */
void
views_note_statement(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *ps = queryDesc->plannedstmt;
	bool		registered = false;
	ListCell   *lc;

	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->estate == NULL ||
		(ps->commandType != CMD_INSERT && ps->commandType != CMD_UPDATE && !ps->hasModifyingCTE))
		return;
	views_refuse_on_conflict(ps, ps->planTree);
	foreach(lc, ps->subplans)
		views_refuse_on_conflict(ps, (Plan *) lfirst(lc));
	foreach(lc, COMPAT_PLANNED_PERMS(ps))
	{
		Oid			relid;
		AclMode		perms;
		Bitmapset  *inserted;
		Bitmapset  *updated;

		if (!compat_perm_columns(lfirst(lc), &relid, &perms, &inserted, &updated) ||
			!(perms & (ACL_INSERT | ACL_UPDATE)) || !OidIsValid(views_base_of_view(relid)))
			continue;
		if (perms & ACL_INSERT)
			views_add_target(queryDesc->estate, &registered, relid, CMD_INSERT, inserted);
		/* (SELECT ... FOR UPDATE asks for ACL_UPDATE too, with no columns) */
		if ((perms & ACL_UPDATE) && !bms_is_empty(updated))
			views_add_target(queryDesc->estate, &registered, relid, CMD_UPDATE, updated);
	}
}

/*
 * ddl.c: COPY view (columns) FROM is running; it has no executor start for
 * views_note_statement to learn its columns from.  The trigger writes the
 * columns it names (and the defaults), as for INSERT; the target lives in
 * the statement's memory (cxt) and goes with it.
 */
void
views_copy_target(Oid view_relid, List *attnames, MemoryContext cxt)
{
	Bitmapset  *columns = NULL;
	ListCell   *lc;
	MemoryContextCallback *cb;
	MemoryContext old;

	foreach(lc, attnames)
	{
		AttrNumber	attno = get_attnum(view_relid, strVal(lfirst(lc)));

		if (attno == InvalidAttrNumber)
			return;				/* COPY itself reports the unknown column */
		columns = bms_add_member(columns, attno - FirstLowInvalidHeapAttributeNumber);
	}
	old = MemoryContextSwitchTo(cxt);
	views_push_target(cxt, view_relid, CMD_INSERT, columns);
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = views_forget_targets;
	cb->arg = cxt;
	MemoryContextRegisterResetCallback(cxt, cb);
	MemoryContextSwitchTo(old);
}

/*
 * The columns the running statement targets on view_relid for operation
 * (NULL: none noted, as for COPY FROM, which has no executor start).
 */
static WriteTarget *
views_find_target(Oid view_relid, CmdType operation)
{
	WriteTarget *t;

	for (t = write_targets; t != NULL; t = t->next)
		if (t->view_relid == view_relid && t->operation == operation)
		{
			if (t->ambiguous)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("a statement cannot write masking view %s twice with different columns",
								views_masking_view_name(view_relid)),
						 errhint("Run the writes as separate statements.")));
			return t;
		}
	return NULL;
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
views_read_back(ProtectedTable *pt, TupleDesc desc pg_attribute_unused(),
				Datum rowkey, Oid keytype)
{
	char		key[NAMEDATALEN * 4];
	StringInfoData sql;
	SPIPlanPtr	plan;

	snprintf(key, sizeof(key), "%u:R", pt->view_relid);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT * FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
					 pt->view_name, quote_identifier(pt->row_key));
	plan = views_plan(key, sql.data, 1, &keytype);
	/* (the row goes to the statement's RETURNING, which counts it there) */
	statement_internal(true);
	PG_TRY();
	{
		if (SPI_execute_plan(plan, &rowkey, NULL, false, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read back a row of %s", pt->view_name);
	}
	PG_FINALLY();
	{
		statement_internal(false);
	}
	PG_END_TRY();
	if (SPI_processed != 1)
		return NULL;
	return SPI_copytuple(SPI_tuptable->vals[0]);
}

/*
 * Is view column attnum (1-based) one the trigger never writes?  The
 * trigger's arguments name them (generated and identity ALWAYS columns).
 */
static bool
views_never_written(TriggerData *td, Form_pg_attribute att)
{
	int			i;

	for (i = 0; i < td->tg_trigger->tgnargs; i++)
		if (strcmp(td->tg_trigger->tgargs[i], NameStr(att->attname)) == 0)
			return true;
	return false;
}

/* Does the statement's target list name view column attnum? */
static inline bool
views_targets(WriteTarget *target, int attnum)
{
	return target == NULL ||
		bms_is_member(attnum - FirstLowInvalidHeapAttributeNumber, target->columns);
}

/*
 * A write through pt's masking view failed on a unique or exclusion
 * constraint: a probe.  Only noted here, in the middle of the error; the
 * (sub)transaction's abort reports it (views_report_probes).
 */
static void
views_note_probe(ProtectedTable *pt)
{
	pending_probes++;
	strlcpy(pending_probe_view, pt->view_name, sizeof(pending_probe_view));
}

/*
 * Run one of the trigger's statements on the write view; the fail-closed
 * check lets a statement at this nesting level through (and nothing that
 * runs inside it, such as base table triggers).  A governed role's write
 * is noted, for its constraint violations (views_constraint_error).
 */
static int
views_execute(SPIPlanPtr plan, Datum *values, const char *nulls,
			  bool governed)
{
	int			save = views_writing_level;
	int			ret = 0;

	if (governed)
		views_governed_write();
	PG_TRY();
	{
		views_writing_level = statement_nesting_level();
		ret = SPI_execute_plan(plan, values, nulls, false, 0);
	}
	PG_CATCH();
	{
		views_writing_level = save;
		PG_RE_THROW();
	}
	PG_END_TRY();
	views_writing_level = save;
	return ret;
}

/*
 * Constraint violations of governed writes.
 *
 * A write that breaks a constraint of a protected table gets PostgreSQL's
 * error, whose DETAIL may show the row: "Failing row contains (...)" for
 * NOT NULL, CHECK, partition and check-option violations lists the columns
 * the statement wrote -- on the base table, the envelopes of the values
 * written and of the stored values an UPDATE keeps, whose blind indexes
 * test guesses.  And a unique or exclusion violation tells whether a value
 * exists: a probe.  PostgreSQL raises these wherever they happen -- in the
 * write, at the end of the statement (a deferrable constraint), at SET
 * CONSTRAINTS, at commit -- so they are looked at on their way up: in every
 * executor hook's and the utility hook's error path, and in the
 * emit_log_hook (commit).  Once a governed role has written a protected
 * table in the transaction, a violation of a constraint of a protected
 * table (named by the error's table, matched against this cache: no
 * catalog access while the error is in flight) loses its DETAIL, and a
 * unique or exclusion violation is noted as a probe, once per error.
 */
static bool governed_write_seen = false;
static bool probe_error_counted = false;

/*
 * A transaction with a governed write aborted, perhaps under an error still
 * on its way up: a COMMIT inside a DO block or procedure (SPI) aborts the
 * transaction before its deferred constraint's error has passed a hook or
 * been emitted.  Such an error is still looked at, until the next
 * statement begins or ends.
 */
static bool governed_write_aborted = false;

/* A governed role writes a protected table (write.c, the trigger). */
void
views_governed_write(void)
{
	governed_write_seen = true;
}

bool
views_governed_write_seen(void)
{
	return governed_write_seen || governed_write_aborted;
}

/* The transaction ends (aborted: true if it aborted). */
void
views_xact_end(bool aborted)
{
	if (aborted && governed_write_seen)
		governed_write_aborted = true;
	else
		probe_error_counted = false;
	if (!aborted)
		governed_write_aborted = false;
	governed_write_seen = false;
}

/* A top-level statement begins or ends: no error of an earlier one is in flight. */
void
views_statement_boundary(void)
{
	if (governed_write_aborted)
	{
		governed_write_aborted = false;
		probe_error_counted = false;
	}
}

/* The protected table whose relation (or partition) is nsp.name, if any. */
static ProtectedTable *
views_by_name(const char *nsp, const char *name)
{
	HASH_SEQ_STATUS status;
	ProtectedTable *pt;

	if (protected_tables == NULL || nsp == NULL || name == NULL)
		return NULL;
	hash_seq_init(&status, protected_tables);
	while ((pt = hash_seq_search(&status)) != NULL)
	{
		if (pt->relid == pt->view_relid || pt->relid == pt->write_relid ||
			pt->rel_nsp == NULL || pt->rel_name == NULL)
			continue;
		if (strcmp(pt->rel_name, name) == 0 && strcmp(pt->rel_nsp, nsp) == 0)
		{
			hash_seq_term(&status);
			return pt;
		}
	}
	return NULL;
}

/*
 * An error on its way up (see above): true if ed was changed (its DETAIL
 * taken out), for the caller to throw it so.
 */
bool
views_constraint_error(ErrorData *ed)
{
	ProtectedTable *pt;

	if (!(governed_write_seen || governed_write_aborted) ||
		(ERRCODE_TO_CATEGORY(ed->sqlerrcode) != ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION &&
		 ed->sqlerrcode != ERRCODE_WITH_CHECK_OPTION_VIOLATION))
		return false;
	pt = views_by_name(ed->schema_name, ed->table_name);
	if (pt == NULL)
		return false;
	if ((ed->sqlerrcode == ERRCODE_UNIQUE_VIOLATION ||
		 ed->sqlerrcode == ERRCODE_EXCLUSION_VIOLATION) && !probe_error_counted)
	{
		views_note_probe(pt);
		probe_error_counted = true;
	}
	if (ed->detail == NULL && ed->detail_log == NULL)
		return false;
	ed->detail = pstrdup("The row's values are not shown: the columns of a protected table hold envelopes of protected values.");
	ed->detail_log = NULL;
	return true;
}

/* write.c: a rewritten write on base's masking view conflicted n times. */
void
views_note_probes_of(Oid base, int n)
{
	ProtectedTable *pt = views_lookup(base);

	if (pt != NULL && n > 0)
	{
		views_note_probe(pt);
		pending_probes += n - 1;
	}
}

/*
 * (Sub)transaction abort, and the end of a statement (hooks.c): the probes
 * noted since the last time -- unique violations, and conflicts of INSERT
 * ... ON CONFLICT -- become a deny event and count against the role's
 * export limits.  At an abort, every lock the failed statement held is
 * released by now.
 */
void
views_report_probes(void)
{
	AuditEvent	ev;
	int			n = pending_probes;

	probe_error_counted = false;
	if (n == 0)
		return;
	pending_probes = 0;
	audit_event_init(&ev, AUDIT_DENY);
	AUDIT_SET(&ev, relation, pending_probe_view);
	AUDIT_SET(&ev, operation, "probe");
	ev.rows = n;
	snprintf(ev.detail, sizeof(ev.detail),
			 "%d write%s through the masking view conflicted with existing rows (a unique or exclusion constraint, or ON CONFLICT): each tells whether a value exists, and counts against the export limits",
			 n, n == 1 ? "" : "s");
	audit_submit(&ev, true);
	limits_charge_probes(n);
}

/*
 * The envelope kind each column of pt's masking view is sealed into by
 * the trigger (the write view's column is encrypted), learnt once per
 * cache.
 */
static const char *
views_sealed_columns(ProtectedTable *pt, TupleDesc desc)
{
	Oid			enc_text = enctype_encrypted_text_oid();
	Oid			enc_bytea = enctype_encrypted_bytea_oid();
	char	   *sealed;
	int			i;

	if (pt->sealed != NULL && pt->nsealed == desc->natts)
		return pt->sealed;
	sealed = MemoryContextAllocZero(ViewsContext, desc->natts);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		HeapTuple	wtup;
		Oid			wtype;

		if (att->attisdropped)
			continue;
		wtup = SearchSysCacheAttName(pt->write_relid, NameStr(att->attname));
		if (!HeapTupleIsValid(wtup))
			continue;
		wtype = ((Form_pg_attribute) GETSTRUCT(wtup))->atttypid;
		ReleaseSysCache(wtup);
		if (OidIsValid(enc_text) && wtype == enc_text)
			sealed[i] = ENV_KIND_TEXT;
		else if (OidIsValid(enc_bytea) && wtype == enc_bytea)
			sealed[i] = ENV_KIND_BYTEA;
	}
	pt->sealed = sealed;
	pt->nsealed = desc->natts;
	return sealed;
}

/* The type of the parameter a value of view column i is passed as. */
static inline Oid
views_param_type(const char *sealed, int i, Form_pg_attribute att)
{
	if (sealed[i] == ENV_KIND_TEXT)
		return enctype_encrypted_text_oid();
	if (sealed[i] == ENV_KIND_BYTEA)
		return enctype_encrypted_bytea_oid();
	return att->atttypid;
}

/*
 * The value of view column i as passed to the write view: for an
 * encrypted column, the plaintext sealed here (always as plaintext, even
 * if it looks like an envelope).
 */
static inline Datum
views_param_value(const char *sealed, int i, Datum v, bool isnull)
{
	struct varlena *plain;

	if (isnull || sealed[i] == 0)
		return v;
	plain = PG_DETOAST_DATUM_PACKED(v);
	return PointerGetDatum(crypto_seal(sealed[i], VARDATA_ANY(plain),
									   VARSIZE_ANY_EXHDR(plain)));
}

/*
 * Is the new value of protected view column i (attribute att) the value the
 * role was shown for this row -- its mask, NULL for a hidden one, or the
 * clear value unchanged?  Then the stored value stays as it is: an ORM that
 * saves a whole row it loaded (Django's save(), Hibernate without dynamic
 * update) sends back the masks it was shown, and writing them would destroy
 * the real values.
 */
static bool
views_shown_again(ProtectedTable *pt, Form_pg_attribute att, HeapTuple oldtup,
				  TupleDesc desc, int i, Datum newval, bool newnull)
{
	bool		oldnull;
	Datum		oldval = SPI_getbinval(oldtup, desc, i, &oldnull);

	if (oldnull != newnull ||
		(!oldnull && !datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
		return false;
	return policy_decide(GetUserId(), pt->base_relid, NameStr(att->attname))->has_rule;
}

/*
 * A governed role's UPDATE may not change the row key: refused (audited)
 * unless the new value is the old one (an ORM saving a whole row).
 */
static void
views_check_row_key(ProtectedTable *pt, Form_pg_attribute att, Datum oldval,
					bool oldnull, Datum newval, bool newnull)
{
	if (oldnull == newnull &&
		(oldnull || datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
		return;
	if (policy_is_exempt(GetUserId(), pt->base_relid))
		return;
	views_refuse_row_key_change(pt->base_relid);
}

/*
 * A governed role's UPDATE through base's masking view changes the row
 * key: refused, audited.
 */
void
views_refuse_row_key_change(Oid base)
{
	ProtectedTable *pt = views_lookup(base);
	const char *view = pt ? pt->view_name : "?";
	const char *key = pt ? pt->row_key : "?";

	audit_deny(view, "UPDATE",
			   psprintf("refused: a governed role may not change row key column %s (grants are given for row keys)",
						quote_identifier(key)));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to change row key column \"%s\" of %s", key, view),
			 errdetail("Approvals are given for row keys: a row key of a protected table can be changed only by the table's owner."),
			 errhint("Insert a new row and delete the old one, or ask the table's owner.")));
}

/* A saved plan for sql under key, or a one-off plan if the key is too long. */
static SPIPlanPtr
views_plan_for(StringInfo key, const char *sql, int nargs, Oid *argtypes, bool *keep)
{
	SPIPlanPtr	plan;

	*keep = key->len < NAMEDATALEN * 4;
	if (*keep)
		plan = views_plan(key->data, sql, nargs, argtypes);
	else
	{
		plan = SPI_prepare(sql, nargs, argtypes);
		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\"", sql);
	}
	if (SPI_getargcount(plan) != nargs)
		elog(ERROR, "cached plan does not match its statement \"%s\"", sql);
	return plan;
}

/*
 * Does anyone look at the row the trigger returns?  Only RETURNING does
 * (and the row count, which any non-NULL row satisfies).  When the
 * top-level statement is a plain INSERT/UPDATE/DELETE without RETURNING,
 * or a COPY ... FROM, the read-back through the masking view is skipped
 * (no read event for rows nobody reads); anything else
 * (RETURNING, a writable CTE, a function's nested statement) reads back.
 */
static bool
views_statement_wants_rows(void)
{
	PlannedStmt *ps;

	if (ActivePortal == NULL || list_length(ActivePortal->stmts) != 1)
		return true;
	ps = linitial_node(PlannedStmt, ActivePortal->stmts);
	/* (COPY ... FROM returns no row to anyone) */
	if (ps->commandType == CMD_UTILITY && IsA(ps->utilityStmt, CopyStmt) &&
		((CopyStmt *) ps->utilityStmt)->is_from && statement_nesting_level() <= 1)
		return false;
	if (ps->commandType != CMD_INSERT && ps->commandType != CMD_UPDATE &&
		ps->commandType != CMD_DELETE)
		return true;
	return ps->hasReturning || statement_nesting_level() > 1;
}

/* Write one row of a masking view through its write view (see below). */
static HeapTuple
views_write_row(TriggerData *td, ProtectedTable *pt)
{
	Relation	view = td->tg_relation;
	TupleDesc	desc = RelationGetDescr(view);
	int			natts = desc->natts;
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
	bool		governed;
	const char *sealed;

	keyatt = views_rowkey_attnum(desc, pt);
	keytype = TupleDescAttr(desc, keyatt - 1)->atttypid;
	statement_note_plaintext();
	wants_rows = views_statement_wants_rows();
	sealed = views_sealed_columns(pt, desc);
	governed = !policy_is_exempt(GetUserId(), pt->base_relid);
	/* (a probe's count needs the role's limits: load them while we can) */
	if (governed)
		(void) limits_role_unlimited();

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
		WriteTarget *target = views_find_target(pt->view_relid, CMD_INSERT);
		StringInfoData cached;	/* the plan's cache key: the written attnums */
		Datum		newkey;
		SPIPlanPtr	plan;
		bool		keep;

		/*
		 * The columns the statement names, and those it does not name but
		 * the view has a default for (the value the view's default gave,
		 * which is the table's own default); the others are left to the
		 * table (NULL, or a domain's default).
		 */
		appendStringInfo(&sql, "INSERT INTO %s (", pt->write_name);
		initStringInfo(&cached);
		appendStringInfo(&cached, "%u:I", pt->view_relid);
		for (i = 1; i <= natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i - 1);
			bool		targeted = views_targets(target, i);
			Datum		v;

			if (att->attisdropped)
				continue;
			v = SPI_getbinval(newtup, desc, i, &isnull);
			if (views_never_written(td, att))
			{
				if (targeted && !isnull)
					ereport(ERROR,
							(errcode(ERRCODE_GENERATED_ALWAYS),
							 errmsg("cannot insert a non-DEFAULT value into column \"%s\"",
									NameStr(att->attname)),
							 errdetail("Column \"%s\" of %s is generated by the database (a generated column or an identity column GENERATED ALWAYS).",
									   NameStr(att->attname), pt->base_name)));
				continue;
			}
			if (!targeted && !att->atthasdef)
				continue;
			values[nargs] = views_param_value(sealed, i - 1, v, isnull);
			nulls[nargs] = isnull ? 'n' : ' ';
			argtypes[nargs] = views_param_type(sealed, i - 1, att);
			appendStringInfo(&sql, "%s%s", nargs ? ", " : "",
							 quote_identifier(NameStr(att->attname)));
			appendStringInfo(&cols, "%s$%d", nargs ? ", " : "", nargs + 1);
			appendStringInfo(&cached, ":%d", i);
			nargs++;
		}
		nulls[nargs] = '\0';
		if (nargs == 0)
		{
			resetStringInfo(&sql);
			appendStringInfo(&sql, "INSERT INTO %s DEFAULT VALUES", pt->write_name);
		}
		else
			appendStringInfo(&sql, ") VALUES (%s)", cols.data);
		appendStringInfo(&sql, " RETURNING %s", quote_identifier(pt->row_key));
		plan = views_plan_for(&cached, sql.data, nargs, argtypes, &keep);
		if (views_execute(plan, values, nulls, governed) != SPI_OK_INSERT_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "insert through masking view %s failed", pt->view_name);
		if (!keep)
			SPI_freeplan(plan);
		newkey = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		result = wants_rows ? views_read_back(pt, desc, newkey, keytype) : NULL;
		if (result == NULL)
			result = newtup;
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		HeapTuple	oldtup = td->tg_trigtuple;
		HeapTuple	newtup = td->tg_newtuple;
		WriteTarget *target = views_find_target(pt->view_relid, CMD_UPDATE);
		StringInfoData cached;	/* the plan's cache key: the written attnums */
		int			nchanged = 0;
		Datum		oldkey = SPI_getbinval(oldtup, desc, keyatt, &isnull);
		Datum		newkey;
		SPIPlanPtr	plan;
		bool		keep;

		/*
		 * Exactly the columns the statement's SET names, and of those the
		 * protected ones only when the new value is not what the view
		 * showed: a column it does not name, or names with the value it was
		 * shown, carries the masked (or NULL) value, and writing it back
		 * would destroy the stored value.
		 */
		if (target == NULL)
			elog(ERROR, "no statement is updating masking view %s", pt->view_name);
		appendStringInfo(&sql, "UPDATE %s SET ", pt->write_name);
		initStringInfo(&cached);
		appendStringInfo(&cached, "%u:U", pt->view_relid);
		for (i = 1; i <= natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i - 1);
			bool		newnull;
			Datum		newval;

			if (att->attisdropped || !views_targets(target, i))
				continue;
			newval = SPI_getbinval(newtup, desc, i, &newnull);
			if (views_never_written(td, att))
			{
				if (!newnull)
					ereport(ERROR,
							(errcode(ERRCODE_GENERATED_ALWAYS),
							 errmsg("column \"%s\" can only be updated to DEFAULT",
									NameStr(att->attname)),
							 errdetail("Column \"%s\" of %s is generated by the database (a generated column or an identity column GENERATED ALWAYS).",
									   NameStr(att->attname), pt->base_name)));
				continue;
			}
			if (i == keyatt)
			{
				bool		oldnull;
				Datum		oldval = SPI_getbinval(oldtup, desc, i, &oldnull);

				views_check_row_key(pt, att, oldval, oldnull, newval, newnull);
			}
			if (views_shown_again(pt, att, oldtup, desc, i, newval, newnull))
				continue;
			values[nargs] = views_param_value(sealed, i - 1, newval, newnull);
			nulls[nargs] = newnull ? 'n' : ' ';
			argtypes[nargs] = views_param_type(sealed, i - 1, att);
			appendStringInfo(&sql, "%s%s = $%d", nchanged ? ", " : "",
							 quote_identifier(NameStr(att->attname)), nargs + 1);
			appendStringInfo(&cached, ":%d", i);
			nargs++;
			nchanged++;
		}
		if (nchanged == 0)
		{
			SPI_finish();
			return newtup;
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
		 * Plans are cached under the exact list of written columns; a list
		 * too long for a cache key gets a one-off plan.
		 */
		plan = views_plan_for(&cached, sql.data, nargs, argtypes, &keep);
		if (views_execute(plan, values, nulls, governed) != SPI_OK_UPDATE_RETURNING)
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
		if (views_execute(views_plan(key, sql.data, 1, argtypes), values, NULL, false) != SPI_OK_DELETE)
			elog(ERROR, "delete through masking view %s failed", pt->view_name);
		result = SPI_processed > 0 ? oldtup : NULL;
	}

	SPI_finish();
	return result;
}

/* Is a write through a masking view's trigger running (audit.c)? */
bool
views_writing(void)
{
	return views_write_depth > 0;
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
	ProtectedTable *pt;
	HeapTuple	result = NULL;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_INSTEAD(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "masking_view_write must be an INSTEAD OF row trigger");

	pt = views_lookup(RelationGetRelid(td->tg_relation));
	if (pt == NULL || pt->view_relid != RelationGetRelid(td->tg_relation))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not a pii_guard masking view",
						RelationGetRelationName(td->tg_relation))));

	/*
	 * pt and the saved plans live in ViewsContext: while the row is being
	 * written, a policy change seen by the statements it runs (their
	 * executor start looks the cache up) must not reload the cache from
	 * under them.
	 */
	views_write_depth++;
	PG_TRY();
	{
		result = views_write_row(td, pt);
	}
	PG_FINALLY();
	{
		views_write_depth--;
	}
	PG_END_TRY();
	return PointerGetDatum(result);
}
