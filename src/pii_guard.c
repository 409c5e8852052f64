/*-------------------------------------------------------------------------
 *
 * pii_guard.c
 *		Module initialisation, settings, and the owner-context helper.
 *
 * pii_guard must be preloaded (shared_preload_libraries): the master key is
 * read once by the postmaster, and later features install executor hooks and
 * shared memory that only a preloaded library can have.  _PG_init therefore
 * refuses to run anywhere else, with a hint.
 *
 * Settings:
 *	pii_guard.master_key_command			PGC_POSTMASTER, superuser-only
 *	pii_guard.previous_master_key_command	PGC_POSTMASTER, superuser-only
 * Both are shown only to superusers (GUC_SUPERUSER_ONLY); the key they print
 * is never stored as a setting at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "pii_guard.h"

PG_MODULE_MAGIC;

char	   *pii_guard_master_key_command = NULL;
char	   *pii_guard_previous_master_key_command = NULL;

void		_PG_init(void);

/*
 * Module load: define settings, read the master key, register callbacks.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pii_guard must be loaded via shared_preload_libraries"),
				 errhint("Add pii_guard to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineCustomStringVariable("pii_guard.master_key_command",
							   "Command that prints the 256-bit master key as 64 hexadecimal digits.",
							   "Run once at server start; the key is never stored in the database.",
							   &pii_guard_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.previous_master_key_command",
							   "Command that prints the previous master key, during master key rotation.",
							   "Data keys still wrapped by this key stay usable until pii_guard.rewrap_data_keys() re-wraps them.",
							   &pii_guard_previous_master_key_command,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("pii_guard");

	keys_load_master_keys();
	keys_register_callbacks();
	policy_register_callbacks();
	hooks_install();
}

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
 * safe search_path, so that internal SPI queries need no privilege of the
 * calling role and no object of its choosing can be resolved by them.
 * Transaction and subtransaction abort restore both, so an ERROR between
 * enter and leave needs no cleanup here.
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
}

/* Undo pii_guard_enter_owner_context. */
void
pii_guard_leave_owner_context(OwnerContext *ctx)
{
	AtEOXact_GUC(true, ctx->save_nestlevel);
	SetUserIdAndSecContext(ctx->save_userid, ctx->save_sec_context);
}
