/*-------------------------------------------------------------------------
 *
 * pii_guard.c
 *		Module initialisation and settings.
 *
 * pii_guard must be preloaded (shared_preload_libraries): the master key is
 * read once by the postmaster, and later features install executor hooks and
 * shared memory that only a preloaded library can have.  _PG_init therefore
 * refuses to run anywhere else, with a hint.
 *
 * Settings (none can be changed by an ordinary role):
 *	pii_guard.master_key_command			PGC_POSTMASTER, superuser-only
 *	pii_guard.previous_master_key_command	PGC_POSTMASTER, superuser-only
 *	pii_guard.master_key_timeout			PGC_POSTMASTER
 *	pii_guard.audit_reads					PGC_SUSET
 *	pii_guard.audit_queue_size				PGC_POSTMASTER
 *	pii_guard.audit_enqueue_timeout			PGC_SUSET
 *	pii_guard.audit_max_row_keys			PGC_SUSET
 *	pii_guard.audit_log_destination			PGC_SIGHUP
 *	pii_guard.max_grant_duration			PGC_SUSET
 *	pii_guard.default_max_rows_per_statement	PGC_SUSET
 *	pii_guard.default_max_rows_per_day		PGC_SUSET
 *	pii_guard.max_export_counters			PGC_POSTMASTER
 *	pii_guard.max_export_approvals			PGC_POSTMASTER
 *	pii_guard.protect_new_columns			PGC_SUSET
 * The two key commands are shown only to superusers (GUC_SUPERUSER_ONLY);
 * the key they print is never stored as a setting at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/inval.h"

#include "pii_guard.h"

PG_MODULE_MAGIC;

char	   *pii_guard_master_key_command = NULL;
char	   *pii_guard_previous_master_key_command = NULL;
int			pii_guard_master_key_timeout = 30;
int			pii_guard_protect_new_columns = PROTECT_NEW_OFF;
char	   *pii_guard_purpose = NULL;

static const struct config_enum_entry protect_new_columns_options[] = {
	{"off", PROTECT_NEW_OFF, false},
	{"classify", PROTECT_NEW_CLASSIFY, false},
	{"hide", PROTECT_NEW_HIDE, false},
	{NULL, 0, false}
};

void		_PG_init(void);

#ifdef COMPAT_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
pii_guard_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	audit_shmem_request();
	limits_shmem_request();
}
#endif

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
pii_guard_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	audit_shmem_startup();
	limits_shmem_startup();
}

/* Relcache invalidation: every module's caches that depend on a relation. */
static void
pii_guard_relcache_callback(Datum arg pg_attribute_unused(), Oid relid)
{
	keys_relation_changed(relid);
	policy_relation_changed(relid);
	views_relation_changed(relid);
	audit_relation_changed(relid);
}

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

	DefineCustomIntVariable("pii_guard.master_key_timeout",
							"How long the server waits for a master key command at start.",
							"A command still running then is killed, and the server starts without that key.",
							&pii_guard_master_key_timeout,
							30, 1, 3600,
							PGC_POSTMASTER,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.audit_anchor_command",
							   "Shell command given the audit chain's head after each sealing.",
							   "%a is the anchor (seq:hash) for verify_audit(anchor), %d the database, %s the seal sequence, %e the event id, %h the hash; e.g. an append to a write-once file or a SIEM.",
							   &pii_guard_audit_anchor_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.cluster_peer_cn",
							   "On a Citus worker: the common name of the client certificate the coordinator presents.",
							   "Set, roles other than superusers may connect to this node only over TLS with a client certificate, verified against ssl_ca_file, of this common name (the coordinator's, through citus.node_conninfo).  Empty: no such check.",
							   &pii_guard_cluster_peer_cn,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.alert_command",
							   "Shell command run for each alert (after NOTIFY pii_guard_alert).",
							   "%i is the alert's event id, %r the role's OID, %a the rule.",
							   &pii_guard_alert_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.audit_retention",
							   "How long audit events stay in pii_guard.audit_log before they are archived.",
							   "An interval, e.g. '3 years'.  The audit worker moves sealed events older than that to a JSON-lines file in pii_guard.audit_archive_directory, then deletes them.  Empty: events stay.",
							   &pii_guard_audit_retention,
							   "",
							   PGC_SIGHUP,
							   0,
							   audit_retention_check, NULL, NULL);

	DefineCustomStringVariable("pii_guard.audit_archive_directory",
							   "Directory of the audit archive files.",
							   "Absolute, or relative to the data directory.",
							   &pii_guard_audit_archive_directory,
							   "pii_guard_archive",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("pii_guard.audit_reads",
							 "Records read events for protected columns.",
							 "Write, deny, export and admin events are always recorded.",
							 &pii_guard_audit_reads,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.audit_queue_size",
							"Number of audit events the shared-memory queue holds.",
							NULL,
							&pii_guard_audit_queue_size,
							1024, 1, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.audit_enqueue_timeout",
							"How long a backend waits for room in a full audit queue before spilling the event to disk.",
							NULL,
							&pii_guard_audit_enqueue_timeout,
							1000, 0, 60000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.audit_max_row_keys",
							"Most row keys one audit event lists.",
							NULL,
							&pii_guard_audit_max_row_keys,
							100, 0, 10000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.audit_log_destination",
							   "Where audit events go: \"table\", or \"table,log\" to mirror each as a JSON line in the server log.",
							   NULL,
							   &pii_guard_audit_log_destination,
							   "table",
							   PGC_SIGHUP,
							   0,
							   audit_destination_check, audit_destination_assign, NULL);

	DefineCustomEnumVariable("pii_guard.protect_new_columns",
							 "What a column added to a protected table is until an administrator classifies it: off (public), classify, or hide.",
							 "classify: protected by what its name and content say it holds, else hidden; hide: hidden.",
							 &pii_guard_protect_new_columns,
							 PROTECT_NEW_OFF, protect_new_columns_options,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("pii_guard.purpose",
							   "The purpose this session uses personal data for (a purpose defined with pii_guard.define_purpose).",
							   "A profile limited to purposes counts only for its own; one that needs consent shows a column in clear only on consented rows.",
							   &pii_guard_purpose,
							   "",
							   PGC_USERSET,
							   0,
							   policy_purpose_check, policy_purpose_assign, NULL);

	DefineCustomIntVariable("pii_guard.max_grant_duration",
							"Longest time an approval (pii_guard.approve, approve_export) may last.",
							"Approvals are time-boxed: one that would end later is refused.",
							&pii_guard_max_grant_duration,
							7 * 24 * 60, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.default_max_rows_per_statement",
							"Export limit per statement for governed roles whose profiles set none (-1: unlimited).",
							"Applies to roles without a profile, and to profiles whose max_rows_per_statement is NULL.",
							&pii_guard_default_max_rows_per_statement,
							-1, -1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.default_max_rows_per_day",
							"Export limit per rolling day for governed roles whose profiles set none (-1: unlimited).",
							"Applies to roles without a profile, and to profiles whose max_rows_per_day is NULL.",
							&pii_guard_default_max_rows_per_day,
							-1, -1, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.max_export_counters",
							"Number of (database, role) day counters of the export limits kept in shared memory.",
							NULL,
							&pii_guard_max_export_counters,
							4096, 1, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pii_guard.max_export_approvals",
							"Number of export approvals whose use can be counted at once.",
							NULL,
							&pii_guard_max_export_approvals,
							4096, 1, 1000000,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("pii_guard");

#ifdef COMPAT_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pii_guard_shmem_request;
#else
	audit_shmem_request();
	limits_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pii_guard_shmem_startup;
	compat_enable_query_id();

	keys_load_master_keys();
	/*
	 * One relcache callback for all of pii_guard: PostgreSQL has ten slots
	 * per backend, its own caches take two and Citus five.
	 */
	CacheRegisterRelcacheCallback(pii_guard_relcache_callback, (Datum) 0);
	policy_register_callbacks();
	views_register_callbacks();
	lookup_register_callbacks();
	hooks_install();
}
