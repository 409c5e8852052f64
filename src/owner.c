/*-------------------------------------------------------------------------
 *
 * owner.c
 *		Acting as the extension's owner, and where its objects are.
 *
 * pii_guard's internal queries (policy decisions, export limits, keys,
 * audit inserts) must need no privilege of the role that happens to be
 * running and must resolve no object of that role's choosing.  They run
 * through one bracket, owner_spi_begin()/owner_spi_end():
 *
 *	- the user becomes the owner of the pii_guard schema (the extension's
 *	  owner) with SECURITY_RESTRICTED_OPERATION, so that nothing they run
 *	  can change the role or leave state behind;
 *	- search_path is pg_catalog, pg_temp for the duration (a GUC nest level
 *	  that is popped on the way out);
 *	- SPI is connected; and if no snapshot is active (a cache filled from an
 *	  executor's end, from a transaction callback's neighbourhood), one is
 *	  pushed for the bracket, so that SPI never runs without one.
 *
 * An ERROR between begin and end needs no cleanup here: (sub)transaction
 * abort restores the user, pops the GUC level, releases SPI and the
 * snapshot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "pii_guard.h"

/* OID of the pii_guard schema, or InvalidOid if missing_ok and absent. */
Oid
pii_guard_schema_oid(bool missing_ok)
{
	return get_namespace_oid(PII_GUARD_SCHEMA, missing_ok);
}

/* OID of a relation in the pii_guard schema. */
Oid
pii_guard_relation_oid(const char *relname, bool missing_ok)
{
	Oid			nsp = pii_guard_schema_oid(missing_ok);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid) && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" does not exist", PII_GUARD_SCHEMA, relname),
				 errhint("Run CREATE EXTENSION pii_guard in this database.")));
	return relid;
}

/*
 * Act as the owner of the pii_guard schema (the extension's owner) with a
 * safe search_path (and, on Citus, its reference tables readable: see
 * pii_guard_citus_loaded in citus.c).  See the file header.
 */
void
pii_guard_enter_owner_context(OwnerContext *ctx)
{
	Oid			nsp = pii_guard_schema_oid(false);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for namespace %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tup))->nspowner;
	ReleaseSysCache(tup);

	GetUserIdAndSecContext(&ctx->save_userid, &ctx->save_sec_context);
	SetUserIdAndSecContext(owner, ctx->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	ctx->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (pii_guard_citus_loaded())
		(void) set_config_option("citus.allow_nested_distributed_execution", "on",
								 PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	ctx->pushed_snapshot = false;
}

/* Undo pii_guard_enter_owner_context. */
void
pii_guard_leave_owner_context(OwnerContext *ctx)
{
	AtEOXact_GUC(true, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}

/*
 * The bracket of every internal query: owner context, a snapshot, SPI.
 * Only inside a transaction: a caller outside one has nothing to read.
 */
void
owner_spi_begin(OwnerContext *ctx)
{
	if (!IsTransactionState())
		elog(ERROR, "pii_guard: internal query outside a transaction");
	pii_guard_enter_owner_context(ctx);
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		ctx->pushed_snapshot = true;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* End the bracket owner_spi_begin opened. */
void
owner_spi_end(OwnerContext *ctx)
{
	SPI_finish();
	if (ctx->pushed_snapshot)
		PopActiveSnapshot();
	pii_guard_leave_owner_context(ctx);
}
