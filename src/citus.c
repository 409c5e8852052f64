/*-------------------------------------------------------------------------
 *
 * citus.c
 *		What pii_guard knows of Citus, when it runs on a Citus cluster: its
 *		catalogs, where a table's rows are on this node, and whether this
 *		backend runs the coordinator's tasks.
 *
 * Nothing here needs Citus to build or to run: Citus's catalogs are read
 * by name (heap scans under the latest snapshot, no SPI and no planning
 * through Citus, so that they serve inside a query on a shard), and a
 * database without them answers "no Citus".
 *
 * Task connections.  On a worker, the coordinator's executor sends the
 * queries it deparsed for each shard over connections it opens as the
 * reading role, with application_name "citus_internal gpid=..." in the
 * connection's start-up packet.  run_command_on_workers() and its kin open
 * the same kind of connection and then SET application_name to
 * "citus_run_command gpid=..." before the caller's SQL.  So a backend runs
 * only the coordinator's tasks while it (1) was admitted by the login gate
 * with the cluster's certificate (cluster.c), (2) started as
 * "citus_internal gpid=..." with the coordinator's node in the gpid (not
 * another worker's: citus_from_coordinator), and (3) has never had
 * application_name set, reset or changed since -- which, by Citus or by
 * anyone, marks the backend for the rest of its life.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "pii_guard.h"

#define CITUS_TASK_APPLICATION_PREFIX "citus_internal gpid="

/* What the login of this backend was (citus_note_login). */
static bool login_from_cluster = false;
static char *login_application_name = NULL;
static bool application_name_set = false;

/* A Citus catalog table (in pg_catalog), or InvalidOid without Citus. */
static Oid
citus_catalog(const char *name)
{
	return get_relname_relid(name, PG_CATALOG_NAMESPACE);
}

/*
 * Integer column att of the first row of Citus catalog catalog that key
 * (if not NULL) finds, read with a fresh snapshot, into *value; false if
 * there is none (or it is NULL).
 */
static bool
citus_catalog_int(Oid catalog, AttrNumber att, ScanKey key, int32 *value)
{
	Relation	rel = table_open(catalog, AccessShareLock);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snapshot, key ? 1 : 0, key);
	HeapTuple	tup = heap_getnext(scan, ForwardScanDirection);
	bool		isnull = true;

	if (tup != NULL)
	{
		Datum		d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

		if (!isnull)
			*value = DatumGetInt32(d);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return !isnull;
}

/*
 * Is Citus loaded in this server (preloaded: known from the start)?
 *
 * Then pii_guard's policy tables are reference tables (citus_setup()), and
 * its own queries of them -- a decision's, made where the shards are,
 * inside the query on a shard that a worker runs for the coordinator --
 * are what Citus calls nested distributed execution and refuses by
 * default.  A reference table has a placement on every node, which Citus
 * reads locally; the owner bracket (owner.c) allows them, for the bracket
 * only.
 */
bool
pii_guard_citus_loaded(void)
{
	static int	loaded = -1;

	/* (a placeholder, which SET makes of any name, is not Citus) */
	if (loaded < 0)
		loaded = GetConfigOption("citus.allow_nested_distributed_execution", true, false) != NULL &&
			!compat_guc_is_placeholder("citus.allow_nested_distributed_execution");
	return loaded == 1;
}

/*
 * The shard ids of Citus table logical (pg_dist_shard), in *shardids
 * (palloc'd in the current context, or NULL); returns how many: none
 * without Citus or for a table Citus does not know.
 */
int
pii_guard_shard_ids(Oid logical, int64 **shardids)
{
	Oid			catalog;
	Relation	rel;
	AttrNumber	att_rel;
	AttrNumber	att_shard;
	ScanKeyData key;
	Snapshot	snapshot;
	TableScanDesc scan;
	HeapTuple	tup;
	int			n = 0;
	int			size = 8;

	*shardids = NULL;
	if (!OidIsValid(logical) || !pii_guard_citus_loaded())
		return 0;
	catalog = citus_catalog("pg_dist_shard");
	if (!OidIsValid(catalog))
		return 0;
	att_rel = get_attnum(catalog, "logicalrelid");
	att_shard = get_attnum(catalog, "shardid");
	if (att_rel == InvalidAttrNumber || att_shard == InvalidAttrNumber)
		return 0;
	rel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&key, att_rel, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(logical));
	snapshot = RegisterSnapshot(IsInParallelMode() ? GetTransactionSnapshot() : GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 1, &key);
	*shardids = palloc(sizeof(int64) * size);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, att_shard, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		if (n == size)
		{
			size *= 2;
			*shardids = repalloc(*shardids, sizeof(int64) * size);
		}
		(*shardids)[n++] = DatumGetInt64(d);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return n;
}

/*
 * The local relation holding shard shardid of table logical on this node
 * (<name>_<shardid> in the table's schema), or InvalidOid if this node
 * holds none.  (Citus shortens a shard's name, with a hash, only when the
 * name and its suffix pass NAMEDATALEN: such a shard is not found, and is
 * then refused to governed roles like any table pii_guard does not know.)
 */
Oid
pii_guard_shard_relid(Oid logical, int64 shardid)
{
	char	   *relname = get_rel_name(logical);
	char		shard[NAMEDATALEN + 24];

	if (relname == NULL)
		return InvalidOid;
	snprintf(shard, sizeof(shard), "%s_" INT64_FORMAT, relname, shardid);
	if (strlen(shard) >= NAMEDATALEN)
		return InvalidOid;
	return get_relname_relid(shard, get_rel_namespace(logical));
}

/*
 * Is this node a Citus worker (its group in pg_dist_local_group is not the
 * coordinator's, 0)?  Known for good once true; read again in each
 * transaction while it is 0 (a node becomes a worker when the coordinator
 * adds it).
 */
bool
pii_guard_on_citus_worker(void)
{
	static int	worker = -1;
	static LocalTransactionId asked_in = InvalidLocalTransactionId;
	Oid			catalog;
	int32		group;

	if (worker == 1 || (worker == 0 && asked_in == compat_my_lxid()))
		return worker == 1;
	if (!pii_guard_citus_loaded() || !IsTransactionState())
		return false;
	asked_in = compat_my_lxid();
	worker = 0;
	catalog = citus_catalog("pg_dist_local_group");
	if (!OidIsValid(catalog))
		return false;
	if (citus_catalog_int(catalog, 1, NULL, &group) && group != 0)
		worker = 1;
	return worker == 1;
}

/*
 * The relation this node reads one of pii_guard's tables from, as a
 * qualified name in buf (at least PII_LOCAL_TABLE_LEN bytes), and its OID
 * in *relid (which the caller's cache invalidation should watch).
 *
 * On Citus, once pii_guard.citus_setup() has made a table a reference
 * table, its rows live in a placement on every node, named
 * pii_guard.<relname>_<shardid>; the table itself is an empty shell, and a
 * query on it is a distributed query, which Citus refuses inside a query on
 * a shard -- exactly where a worker decrypts or masks.  So a node that holds
 * the placement reads it directly (a plain local table: no planning through
 * Citus, no connection).  Without Citus, or on a node without a placement,
 * the table itself.  Writes always go to the table itself, so that Citus
 * replicates them to every placement in one two-phase commit.
 */
void
pii_guard_local_table(const char *relname, char *buf, Oid *relid)
{
	Oid			nsp = pii_guard_schema_oid(false);
	Oid			logical = get_relname_relid(relname, nsp);
	int64	   *shardids;

	snprintf(buf, PII_LOCAL_TABLE_LEN, "%s.%s", PII_GUARD_SCHEMA, relname);
	*relid = logical;
	if (pii_guard_shard_ids(logical, &shardids) == 1)
	{
		Oid			placement = pii_guard_shard_relid(logical, shardids[0]);

		if (OidIsValid(placement))
		{
			snprintf(buf, PII_LOCAL_TABLE_LEN, "%s.%s", PII_GUARD_SCHEMA, get_rel_name(placement));
			*relid = placement;
		}
	}
	if (shardids != NULL)
		pfree(shardids);
}

/*
 * The login gate (cluster.c) admitted this backend: with the coordinator's
 * certificate or not, under which application_name.
 */
void
citus_note_login(bool from_cluster, const char *appname)
{
	login_from_cluster = from_cluster;
	if (appname != NULL)
		login_application_name = MemoryContextStrdup(TopMemoryContext, appname);
}

/*
 * A utility statement is about to run: a SET or RESET of application_name
 * (or of everything), or DISCARD, marks the backend as no longer running
 * only the coordinator's tasks.
 */
void
citus_note_utility(Node *parsetree)
{
	if (IsA(parsetree, VariableSetStmt))
	{
		VariableSetStmt *stmt = (VariableSetStmt *) parsetree;

		if (stmt->kind == VAR_RESET_ALL ||
			(stmt->name != NULL && pg_strcasecmp(stmt->name, "application_name") == 0))
			application_name_set = true;
	}
	else if (IsA(parsetree, DiscardStmt))
		application_name_set = true;
}

/*
 * Was this backend started by the coordinator's executor -- not by another
 * worker's?  A worker runs distributed queries of its own too: a function
 * the coordinator delegated to it, or pushed down in a query, may plan one
 * there (citus.allow_nested_distributed_execution is anyone's to set),
 * whose tasks reach the other workers over connections like the
 * coordinator's -- with the values they reveal going back into that
 * function, past the coordinator's count.  Citus names the node a
 * connection comes from in its application_name: the global process id,
 * node id times 10^10 plus the process id.  The coordinator is the node of
 * group 0 in pg_dist_node.  Known once per backend.
 */
static bool
citus_from_coordinator(void)
{
	static int	from = -1;
	int64		gpid;
	char	   *end;
	Oid			catalog;
	ScanKeyData key;
	AttrNumber	att_node;
	AttrNumber	att_group;
	int32		group;

	if (from >= 0 || !IsTransactionState())
		return from == 1;
	from = 0;
	errno = 0;
	gpid = strtoi64(login_application_name + strlen(CITUS_TASK_APPLICATION_PREFIX), &end, 10);
	if (errno != 0 || *end != '\0' || gpid <= 0)
		return false;
	catalog = citus_catalog("pg_dist_node");
	if (!OidIsValid(catalog))
		return false;
	att_node = get_attnum(catalog, "nodeid");
	att_group = get_attnum(catalog, "groupid");
	if (att_node == InvalidAttrNumber || att_group == InvalidAttrNumber)
		return false;
	ScanKeyInit(&key, att_node, BTEqualStrategyNumber, F_INT4EQ,
				Int32GetDatum((int32) (gpid / INT64CONST(10000000000))));
	if (citus_catalog_int(catalog, att_group, &key, &group) && group == 0)
		from = 1;
	return from == 1;
}

/*
 * Does this backend run only the coordinator's tasks (see the file
 * header)?  An application_name other than the start-up packet's
 * (set_config(), a function's SET clause) marks it too.
 */
bool
citus_in_task(void)
{
	if (!login_from_cluster || application_name_set || login_application_name == NULL)
		return false;
	if (strncmp(login_application_name, CITUS_TASK_APPLICATION_PREFIX,
				strlen(CITUS_TASK_APPLICATION_PREFIX)) != 0)
		return false;
	if (application_name == NULL || strcmp(application_name, login_application_name) != 0)
	{
		application_name_set = true;
		return false;
	}
	return citus_from_coordinator();
}

PG_FUNCTION_INFO_V1(pii_guard_citus_worker);

/* SQL function: _citus_worker() returns boolean -- is this a Citus worker? */
Datum
pii_guard_citus_worker(PG_FUNCTION_ARGS)
{
	(void) fcinfo;
	PG_RETURN_BOOL(pii_guard_on_citus_worker());
}
