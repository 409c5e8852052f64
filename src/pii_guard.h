/*-------------------------------------------------------------------------
 *
 * pii_guard.h
 *		Declarations shared by the pii_guard source files.
 *
 * One .c file per concern, by layer from the ground up (a file calls only
 * files of its own or lower layers):
 *
 *	ground		compat.h	every PG_VERSION_NUM guard
 *				owner.c		acting as the extension owner; its schema and
 *							relations; the owner + SPI bracket
 *				citus.c		on a Citus cluster: its catalogs, where a
 *							table's rows are on this node, task
 *							connections
 *				statement.c	per-statement state: nesting level, command,
 *							export flag, plaintext marks, maintenance
 *	crypto		crypto.c	AES-256-GCM envelopes, blind index, key wrapping
 *				keys.c		master key, data keys, their per-backend cache
 *				enctype.c	the encrypted_text and encrypted_bytea types,
 *							who may encrypt and compare, the lookup probe
 *	shaping		mask.c		the mask functions
 *				detect.c	detectors: the kind of personal data a value
 *							looks like
 *				fake.c		format-preserving pseudonyms for masked copies
 *	audit		audit_events.c	the producers: denials and refusals, read
 *							notes and read events, write events
 *				audit.c		the store: event fields, insert, row MAC,
 *							chain, seals, anchors, JSON mirror, alerts
 *				audit_queue.c	the queue, pending slots, spill files,
 *							worker slots
 *				audit_worker.c	the worker: its cycle and periodic work
 *				audit_archive.c	retention: sealed events archived to
 *							JSON-lines files, then deleted
 *	decisions	policy.c	access decisions and their cache
 *				limits.c	export-row limits: what counts, scopes,
 *							approvals
 *				limitstate.c	their shared counters and persistence
 *	views		views.c		masking views: the protected-table cache, the
 *							fail-closed check, the write trigger
 *				lookup.c	indexable lookups through masking views
 *				write.c		writes on masking views rewritten onto their
 *							base tables
 *	per row		reveal.c	reveal(), and the proof that a call is a
 *							masking view's own scan of its own row
 *				shred.c		crypto-shredding: the row trigger sealing
 *							values under their subject's key
 *	top			cluster.c	on a Citus worker: who may log in, which
 *							queries may read protected shards
 *				ddl.c		utility statements on protected tables
 *				hooks.c		executor, planner, utility and log hooks:
 *							dispatch only
 *				pii_guard.c	_PG_init, settings
 *
 *-------------------------------------------------------------------------
 */
#ifndef PII_GUARD_H
#define PII_GUARD_H

#include "postgres.h"

#include <openssl/evp.h>

#include "access/xact.h"
#include "compat.h"
#include "fmgr.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "tcop/dest.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#define PII_GUARD_SCHEMA		"pii_guard"
#define PII_GUARD_ENCRYPTOR_ROLE	"pii_guard_encryptor"
#define PII_GUARD_ADMIN_ROLE	"pii_guard_admin"

/*
 * Envelope, version 1 (binary form; the text form is ENVELOPE_TEXT_PREFIX
 * followed by the base64 of these bytes):
 *
 *	offset	size
 *	0		1	format version (1)
 *	1		1	kind: 't' for encrypted_text, 'b' for encrypted_bytea
 *	2		4	data key id, big-endian
 *	6		12	GCM nonce, random
 *	18		16	blind index: HMAC-SHA256(blind key, kind || plaintext), truncated
 *	34		n	ciphertext (n = length of the plaintext)
 *	34+n	16	GCM tag
 *
 * The 34 header bytes are the GCM additional authenticated data, so no
 * header field (key id, kind, blind index) can be changed undetected.
 */
#define ENV_VERSION			1
#define ENV_KIND_TEXT		't'
#define ENV_KIND_BYTEA		'b'
#define ENV_OFF_VERSION		0
#define ENV_OFF_KIND		1
#define ENV_OFF_KEY_ID		2
#define ENV_OFF_NONCE		6
#define ENV_OFF_BLIND		18
#define ENV_HEADER_LEN		34
#define ENV_NONCE_LEN		12
#define ENV_BLIND_LEN		16
#define ENV_TAG_LEN			16
#define ENV_OVERHEAD		(ENV_HEADER_LEN + ENV_TAG_LEN)
#define ENV_TEXT_PREFIX		"pii_guard:"
#define ENV_TEXT_PREFIX_LEN (sizeof(ENV_TEXT_PREFIX) - 1)

#define PII_KEY_LEN			32	/* AES-256 and HMAC-SHA256 key length */
#define PII_FINGERPRINT_LEN 8	/* master key fingerprint stored per data key */
#define PII_WRAPPED_LEN		(ENV_NONCE_LEN + PII_KEY_LEN + ENV_TAG_LEN)

/* Data key purposes, as stored in pii_guard.data_keys.purpose. */
#define KEY_PURPOSE_ENCRYPT 'e'
#define KEY_PURPOSE_BLIND	'b'
#define KEY_PURPOSE_PSEUDONYM 'p'
#define KEY_PURPOSE_AUDIT	'a'
#define KEY_PURPOSE_SUBJECT 's'	/* subject keys (crypto-shredding): their own table */

/* Subject key ids are this and up; data key ids stay below. */
#define SUBJECT_KEY_MIN		0x80000000U
#define SUBJECT_KEY_LIVE	1
#define SUBJECT_KEY_SHREDDED 2
#define SUBJECT_KEY_UNKNOWN 3

/* pii_guard.c */
extern char *pii_guard_master_key_command;
extern char *pii_guard_previous_master_key_command;
extern int	pii_guard_master_key_timeout;

/* owner.c */
typedef struct OwnerContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	bool		pushed_snapshot;
} OwnerContext;

extern void pii_guard_enter_owner_context(OwnerContext *ctx);
extern void pii_guard_leave_owner_context(OwnerContext *ctx);
extern void owner_spi_begin(OwnerContext *ctx);
extern void owner_spi_end(OwnerContext *ctx);
extern Oid	pii_guard_schema_oid(bool missing_ok);
extern Oid	pii_guard_relation_oid(const char *relname, bool missing_ok);
#define PII_LOCAL_TABLE_LEN (NAMEDATALEN * 2 + 2)

/* citus.c */
extern void pii_guard_local_table(const char *relname, char *buf, Oid *relid);
extern int	pii_guard_shard_ids(Oid logical, int64 **shardids);
extern Oid	pii_guard_shard_relid(Oid logical, int64 shardid);
extern bool pii_guard_on_citus_worker(void);
extern bool pii_guard_citus_loaded(void);
extern void citus_note_login(bool from_cluster, const char *appname);
extern void citus_note_utility(Node *parsetree);
extern bool citus_in_task(void);

/* statement.c */
extern int	statement_nesting_level(void);
extern void statement_push(void);
extern void statement_pop(void);
extern void statement_begin(const char *command, bool is_export, bool replace);
extern void statement_forget(void);
extern bool statement_is_export(void);
extern const char *statement_command(void);
extern void statement_note_plaintext(void);
extern bool statement_logging_plaintext(void);
extern void statement_scrub_log(ErrorData *edata);
extern bool statement_in_maintenance(void);
extern void statement_maintenance(bool on);
extern void statement_xact_end(bool toplevel);
extern void statement_subxact_end(SubXactEvent event);
extern int	statement_planning_depth(void);
extern bool statement_in_internal(void);
extern void statement_internal(bool entering);
extern void statement_planning(bool entering);

/*
 * The location every call site that pii_guard made or proved carries
 * (reveal() in a masking view's scan, the probes lookup.c adds).  The
 * parser only ever sets a location >= -1 and stored expressions are read
 * back with -1, so no expression of anyone else's making carries it.
 */
#define PII_SITE_MARK		(-0x50494947)

/*
 * A proved reveal() call whose value goes nowhere outside (a condition
 * that chooses rows: a search; the new value of a masking view's own
 * UPDATE: a write): it decides as any proved call does, and is no read
 * (reveal.c).
 */
#define PII_SITE_MARK_QUIET	(-0x50494948)	/* a condition: a search */
#define PII_SITE_MARK_WRITE	(-0x50494949)	/* a value written back */
#define PII_SITE_MARKED(loc) \
	((loc) == PII_SITE_MARK || (loc) == PII_SITE_MARK_QUIET || (loc) == PII_SITE_MARK_WRITE)

/* keys.c */
typedef struct CryptoHmac CryptoHmac;	/* a keyed HMAC-SHA256, crypto.c */

typedef struct DataKey
{
	uint32		key_id;			/* hash key: must be first */
	char		purpose;		/* KEY_PURPOSE_* */
	EVP_CIPHER_CTX *enc;		/* keyed AES-256-GCM contexts (encrypt keys) */
	EVP_CIPHER_CTX *dec;
	CryptoHmac *mac;			/* keyed HMAC-SHA256 (blind index, pseudonym
								 * and audit keys) */
	const uint8 *rekey;			/* a subject key: enc/dec are shared contexts
								 * to be keyed with it along with the nonce */
} DataKey;

extern void keys_load_master_keys(void);
extern void keys_relation_changed(Oid relid);
extern DataKey *keys_lookup(uint32 key_id);
extern int	keys_subject_state(uint32 key_id);
extern bool keys_subject_is_of(uint32 key_id, Oid subject_base, const char *row_key);
extern void keys_subject_sealer(uint32 key_id, DataKey **encrypt_key, DataKey **blind_key);
extern uint32 keys_subject_key_id(Oid subject_base, const char *row_key);
extern void keys_current(DataKey **encrypt_key, DataKey **blind_key);
extern DataKey *keys_pseudonym(void);
extern DataKey *keys_audit(void);
extern bool keys_master_key_available(void);

/* crypto.c */
extern void crypto_failure(const char *what) pg_attribute_noreturn();
extern bool crypto_self_test(void);
extern void crypto_random_bytes(uint8 *buf, int len);
extern void crypto_fingerprint(const uint8 *master, uint8 *out);
extern void crypto_wrap_key(const uint8 *master, uint32 key_id, char purpose,
							const uint8 *key, uint8 *wrapped);
extern bool crypto_unwrap_key(const uint8 *master, uint32 key_id, char purpose,
							  const uint8 *wrapped, uint8 *key);
extern bool crypto_unwrap_key_with(EVP_CIPHER_CTX *ctx, uint32 key_id, char purpose,
								   const uint8 *wrapped, uint8 *key);
extern EVP_CIPHER_CTX *crypto_new_gcm_ctx(const uint8 *key, bool encrypt);
extern void crypto_free_gcm_ctx(EVP_CIPHER_CTX *ctx);
extern CryptoHmac *crypto_new_hmac(const uint8 *key);
extern void crypto_free_hmac(CryptoHmac *mac);
extern void crypto_adopt(const void *object);
extern void crypto_hmac(const CryptoHmac *mac, char domain, const char *data,
						Size len, uint8 *out, Size outlen);
extern bytea *crypto_seal(char kind, const char *plain, Size len);
extern bytea *crypto_seal_subject(char kind, const char *plain, Size len, uint32 subject_key);
extern bytea *crypto_probe(char kind, const char *plain, Size len);
extern bytea *crypto_open(const bytea *envelope, char kind);
extern void crypto_check_envelope(const char *env, Size len, char kind,
								  bool binary_input);
extern uint32 envelope_key_id(const bytea *envelope);

extern void crypto_wipe(bytea *plain);

/* enctype.c */
extern bool enctype_may_decrypt(void);
extern bool enctype_trusted(void);
extern void enctype_check_encoding(bytea *plain);
extern bool enctype_relation_has_encrypted(Oid relid);
extern Oid	enctype_encrypted_text_oid(void);
extern Oid	enctype_encrypted_bytea_oid(void);
extern Oid	enctype_probe_function(Oid encrypted_type);
extern Oid	enctype_array_probe_function(Oid encrypted_type);
extern void enctype_register_callbacks(void);

/* policy.c */
typedef enum ColumnAccess
{
	ACCESS_HIDDEN = 0,
	ACCESS_MASKED = 1,
	ACCESS_CLEAR = 2
} ColumnAccess;

/*
 * What a role may see of one protected column, for rows without a
 * row-specific grant (and which rows have one).  Computed by policy.c,
 * read on every row by reveal.c.
 */
typedef struct DecisionKey
{
	Oid			userid;
	Oid			relid;
	NameData	attname;
} DecisionKey;

/*
 * Row keys a decision opens (approvals of rows, consents), in PolicyContext:
 * unsorted as read, sorted on the first lookup by text, and as integers
 * (a sorted array, or a bitmap when dense) on the first lookup by number.
 */
typedef struct RowKeySet
{
	int			n;
	char	  **keys;
	bool		sorted;
	bool		int_ready;
	int			nint;
	int64	   *intkeys;		/* sorted */
	int64		bitmap_min;		/* or, when they are dense, a bitmap from here */
	int64		bitmap_bits;
	uint64	   *bitmap;
} RowKeySet;

typedef struct Decision
{
	DecisionKey key;			/* hash key: must be first */
	bool		has_rule;		/* false: the column is not protected */
	bool		exempt;			/* superuser or table owner */
	char		level[16];		/* the column's level, for reports */
	ColumnAccess access;		/* for rows without a row-specific grant */
	Oid			mask_fn;		/* InvalidOid: no mask function */
	Oid			mask_run_as;	/* the mask's owner, for masks not in C */
	int			mask_nargs;		/* extra arguments after the value */
	Datum	   *mask_args;
	bool	   *mask_argnulls;
	TimestampTz expires;		/* recompute from this statement time on */
	struct RowKeySet *rowkeys;	/* rows opened by an approval or a consent;
								 * NULL: none (may be shared by decisions) */
} Decision;

extern int	pii_guard_max_grant_duration;

extern uint64 policy_generation;

extern void policy_register_callbacks(void);
extern void policy_relation_changed(Oid relid);
extern uint64 policy_current_generation(void);
extern void policy_watch_function(Oid fn);
extern bool policy_is_exempt(Oid userid, Oid relid);
extern const char *policy_mask_problem(Oid fn, int *sqlstate);
extern Decision *policy_decide(Oid userid, Oid relid, const char *attname);
extern ColumnAccess policy_row_access(Decision *d, const char *rowkey);
extern bool policy_row_key_int(Decision *d, int64 key);
extern const char *policy_access_name(ColumnAccess access);
extern bool policy_clear_for_all_rows(Oid relid, const char *attname, bool encrypted);
extern char *pii_guard_purpose;
extern bool policy_purpose_check(char **newval, void **extra, GucSource source);
extern void policy_purpose_assign(const char *newval, void *extra);

/* lookup.c */
extern bool lookup_add_quals(Query *parse);
extern void lookup_register_callbacks(void);

/* views.c */
#define PII_GUARD_OWNER_ROLE	"pii_guard_owner"

extern bool views_is_protected_base(Oid relid);
extern const char *views_masking_view_name(Oid relid);
extern void views_relation_name(Oid relid, char *buf, int size);
extern Oid	views_base_of_view(Oid relid);
extern const char *views_row_key(Oid base);
extern Oid	views_view_of_base(Oid base);
extern Oid	views_table_of(Oid relid);
extern Oid	views_table_of_shard(Oid relid);
extern bool views_is_citus(Oid relid);
extern void views_refuse_citus_write(Oid view_relid, const char *what, const char *hint);
extern void views_refuse_citus_writes(Query *query);
extern uint64 views_cache_version(void);
extern void views_refuse_row_key_change(Oid base) pg_attribute_noreturn();
extern Oid	views_owner_role(void);
extern bool views_any_owned_by(Oid userid);
extern bool views_check_permissions(List *perms, bool ereport_on_violation);
extern bool views_check_relation(Oid relid, Oid check_as, bool ereport_on_violation);
extern void views_audit_refusals(Query *parse);
struct QueryDesc;
extern void views_note_statement(struct QueryDesc *queryDesc, int eflags);
extern void views_copy_target(Oid view_relid, List *attnames, MemoryContext cxt);
extern void views_register_callbacks(void);
extern void views_relation_changed(Oid relid);
extern void views_report_probes(void);
extern void views_note_probes_of(Oid base, int n);
extern void views_governed_write(void);
extern bool views_governed_write_seen(void);
extern bool views_writing(void);
extern void views_xact_end(bool aborted);
extern void views_statement_boundary(void);
extern bool views_constraint_error(ErrorData *ed);

/* write.c */
extern void write_rewrite(Query *query);
extern void write_executor_start(struct QueryDesc *queryDesc, int eflags);
extern bool write_is_rewritten_target(PlannedStmt *stmt, RangeTblEntry *rte);
extern bool write_is_shard_write_function(Oid funcid, bool *is_set);
extern void write_citus_plan(Query *parse);

/* reveal.c */
typedef void (*PlanExprCallback) (Plan *plan, Node *exprs, void *arg);

extern int	reveal_functions(const Oid **oids);

/* Is funcid among the n reveal() functions oids (reveal_functions)? */
static inline bool
reveal_is_one_of(const Oid *oids, int n, Oid funcid)
{
	for (int i = 0; i < n; i++)
		if (oids[i] == funcid)
			return true;
	return false;
}
extern void reveal_prove_plan(PlannedStmt *stmt);
extern bool reveal_plan_reveals(PlannedStmt *stmt);
extern void plan_walk_expressions(PlannedStmt *stmt, PlanExprCallback fn, void *arg);
extern bool plan_exprs_choose_rows(const Plan *plan, const Node *exprs);

/* exports.c */
struct QueryDesc;
extern void exports_mark_plan(PlannedStmt *stmt);
typedef struct CitusExports CitusExports;
extern CitusExports *exports_citus_before(Query *parse);
extern void exports_citus_after(PlannedStmt *stmt, CitusExports *ce);
extern void exports_start(struct QueryDesc *queryDesc, int eflags);
extern DestReceiver *exports_wrap_dest(struct QueryDesc *queryDesc);

/* ddl.c */
typedef struct DdlAfter
{
	bool		tree_copied;	/* the statement was copied to be changed */
	bool		rebuild;		/* rebuild base's masking views afterwards */
	Oid			base;
	const char *rename_from;	/* a column rename to carry into the views */
	const char *rename_to;
	List	   *new_columns;	/* names of the columns the statement adds */
} DdlAfter;

/* pii_guard.protect_new_columns */
typedef enum ProtectNewColumns
{
	PROTECT_NEW_OFF,			/* a new column is public until classified */
	PROTECT_NEW_CLASSIFY,		/* classified by name and content, else hidden */
	PROTECT_NEW_HIDE			/* hidden until an administrator classifies it */
} ProtectNewColumns;

extern int	pii_guard_protect_new_columns;

extern void ddl_before(PlannedStmt **pstmt, bool read_only_tree, DdlAfter *after);
extern void ddl_after(const DdlAfter *after);

/* limits.c */
#define ERRCODE_PII_GUARD_EXPORT_LIMIT MAKE_SQLSTATE('5','4','P','0','1')

extern int	pii_guard_default_max_rows_per_statement;
extern int	pii_guard_default_max_rows_per_day;

extern bool limits_role_unlimited(void);
extern void limits_count_row(Oid relid, Datum rowkey, Oid rowkey_type, bool rowkey_null);
extern bool limits_enter_portal(void);
extern void limits_leave_portal(bool pushed);
extern void limits_statement_boundary(void);
extern void limits_statement_done(bool aborting);
extern void limits_invalidate(void);
extern void limits_charge_probes(int n);
extern void limits_count_output(Oid relid);

/* limitstate.c */
#define LIMITS_BUCKETS	25		/* hourly: a rolling window of 24 to 25 hours */

/* An export approval as a backend loaded it. */
typedef struct LimitsApproval
{
	int64		grant_id;
	TimestampTz created_at;		/* with grant_id: unique across reinstalls */
	int64		rows;
	TimestampTz valid_until;
	int64		stored_used;	/* from pii_guard.export_grant_use */
} LimitsApproval;

extern int	pii_guard_max_export_counters;
extern int	pii_guard_max_export_approvals;

extern Size limits_shmem_size(void);
extern void limits_shmem_request(void);
extern void limits_shmem_startup(void);
extern void limits_persist(void);
extern void limits_sync_grant_use(void);
extern bool limits_day_take(Oid roleid, int64 per_day, int64 *total);
extern bool limits_day_add(Oid roleid, int64 n);
extern int64 limits_day_total(Oid roleid);
extern int	limits_grant_take(const LimitsApproval *approvals, int n);
extern int64 limits_grant_used(const LimitsApproval *approval);

/* hooks.c */
extern void hooks_install(void);

/* cluster.c */
struct Port;
extern char *pii_guard_cluster_peer_cn;
extern void cluster_check_login(struct Port *port, int status);
extern void cluster_admit_task(Query *parse);
extern void cluster_write_start(struct QueryDesc *queryDesc, int eflags);
extern void cluster_write_finish(struct QueryDesc *queryDesc);
extern void cluster_write_changed(const char *col);
extern void cluster_audit_utility(Node *parsetree, uint64 processed);

/* audit.c */
extern void audit_relation_changed(Oid relid);
#define AUDIT_READ		'r'
#define AUDIT_WRITE		'w'
#define AUDIT_EXPORT	'e'
#define AUDIT_DENY		'd'
#define AUDIT_ADMIN		'a'
#define AUDIT_REFUSAL	'p'		/* queued only: a deny event, object unresolved */
#define AUDIT_ALERT		'l'

/* One audit event, as queued in shared memory (fixed size, no pointers). */
typedef struct AuditEvent
{
	uint64		seq;			/* queue position; set by audit_enqueue */
	Oid			dboid;			/* InvalidOid: slot free */
	char		kind;			/* AUDIT_* */
	TimestampTz at;
	int			pid;
	Oid			session_role;
	Oid			current_role;
	TransactionId xid;
	uint64		query_id;
	int64		rows;
	char		client_addr[48];
	char		application_name[64];
	char		relation[2 * NAMEDATALEN + 8];
	char		operation[32];
	char		columns_clear[512];
	char		columns_masked[512];
	char		columns_changed[512];
	char		row_keys[1024];
	char		row_keys_masked[512];
	char		detail[512];
} AuditEvent;

extern bool pii_guard_audit_reads;
extern int	pii_guard_audit_queue_size;

/* audit_queue.c */
extern int	pii_guard_audit_enqueue_timeout;
extern int	pii_guard_audit_max_row_keys;
extern char *pii_guard_audit_log_destination;

extern bool audit_destination_check(char **newval, void **extra, GucSource source);
extern void audit_destination_assign(const char *newval, void *extra);
extern void audit_event_init(AuditEvent *ev, char kind);
extern void audit_event_set(char *field, int size, const char *value);
extern int64 audit_insert_events(const AuditEvent *events, int n);
extern int64 audit_insert_now(const AuditEvent *ev);
extern void audit_seal_rows(int64 *sweep);
extern bytea *audit_chain_link(bytea *prev, int64 event_id, bytea *row_mac);

/* audit_archive.c */
extern char *pii_guard_audit_retention;
extern char *pii_guard_audit_archive_directory;
extern bool audit_archiving;
extern bool audit_retention_check(char **newval, void **extra, GucSource source);
extern bool audit_retention_cutoff(TimestampTz *cutoff);
extern int64 audit_archive(TimestampTz cutoff, int64 max_events, char *file, int filesize,
						   int64 *first_seal, int64 *last_seal);
extern char *pii_guard_audit_anchor_command;
extern const char *keys_run_command(const char *command, char *buf, size_t size, size_t *n,
									int timeout_s, int *exit_status);
extern void audit_anchor_publish(bool committed);
extern char *pii_guard_alert_command;
extern int64 audit_inserted_first;
extern void audit_raise_alerts(int64 first, int64 last, bool hurry);
extern void audit_alerts_publish(bool committed);
extern void audit_seal_forget(void);
extern TimestampTz audit_record_grant_expiries(TimestampTz since);
extern void audit_event_json(StringInfo buf, const AuditEvent *ev, int64 event_id, bool full);
extern const char *audit_kind_name(char kind);
extern bool audit_list_append(char *field, int size, int *len, const char *s);
extern void audit_list_add(char *field, int size, const char *s);
extern char *audit_list_next(const char **p);
extern bool audit_list_has(const char *list, const char *s);
extern void audit_deny(const char *relation, const char *operation, const char *detail);
extern void audit_refusal_seen(const ErrorData *edata, const char *command);
extern void audit_refusal_passing(const char *command);
extern void audit_refusal_forget(void);
extern void audit_resolve_refusals(AuditEvent *events, int n);
extern void audit_note_reveal(Oid relid, const char *attname, ColumnAccess access,
							  FunctionCallInfo fcinfo, int rowkey_arg, void **cache);
extern void audit_flush_reads(bool aborting);
extern void audit_note_search(Oid relid, const char *attname, FunctionCallInfo fcinfo, void **cache);
extern void audit_flush_writes(void);
extern void audit_write_event(const AuditEvent *ev);
extern void audit_writes_subxact(SubXactEvent event, SubTransactionId mySubid,
								 SubTransactionId parentSubid);

/* detect.c */
extern const char detect_surnames[];
extern const char *detect_kind(const char *s, int len);
extern bool detect_cn_province(int code);
extern char detect_cn_id_check(const char *d17);
extern bool detect_valid_date(int year, int month, int day);
extern char detect_luhn_check(char *d, int n);

/* audit_queue.c */
#define AUDIT_BATCH			128		/* events a worker cycle takes at most */
extern void audit_shmem_request(void);
extern void audit_shmem_startup(void);
extern void audit_enqueue(const AuditEvent *ev, bool aborting);
extern void audit_submit(const AuditEvent *ev, bool aborting);
extern void audit_ensure_worker(void);
extern int	audit_queue_take(Oid dboid, AuditEvent *batch, uint64 *seqs, int max);
extern void audit_queue_release(Oid dboid, const uint64 *seqs, int n);
extern void audit_queue_move_orphans(Oid self, AuditEvent *scratch);
extern int	audit_read_spill(Oid dboid, AuditEvent *events, char (*files)[MAXPGPATH], int max);
extern void audit_spill_remove(char (*files)[MAXPGPATH], int n);
extern void audit_remove_stale_spill_files(void);
extern void audit_remove_dropped_spill_files(Oid self);
extern int	audit_harvest_pending(Oid dboid, AuditEvent *events, int max);
extern void audit_coalesce_denials(AuditEvent *events, int n);
extern int	audit_worker_claim(Oid dboid);
extern void audit_worker_release(int code, Datum arg);
extern pid_t audit_worker_pid(Oid dboid);

/* audit_worker.c */
extern void audit_release_database(Node *parsetree);

#define AUDIT_SET(ev, field, value) audit_event_set((ev)->field, sizeof((ev)->field), (value))

#endif							/* PII_GUARD_H */
