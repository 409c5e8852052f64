/*-------------------------------------------------------------------------
 *
 * keys.c
 *		The master key, the data keys, and their per-backend cache.
 *
 * Master key.  pii_guard.master_key_command (PGC_POSTMASTER, superuser-only)
 * is run once, in the postmaster, by _PG_init; its stdout is 64 hex digits.
 * The key lives in this file's static memory and is inherited by every
 * backend through fork(); it is never written to the database, a log or a
 * message.  For master key rotation pii_guard.previous_master_key_command
 * supplies the old key alongside the new one, so that data keys still
 * wrapped by the old key stay usable until pii_guard.rewrap_data_keys() has
 * re-wrapped them.  When a command is missing, fails or prints something
 * else, the server starts anyway; every call that needs the key then fails
 * with the reason (never the output) in errdetail.
 *
 * Data keys.  pii_guard.data_keys holds 256-bit keys wrapped (AES-256-GCM,
 * additional data = key id and purpose) by the master key, with the master
 * key's fingerprint so that "wrong master key" is told apart from "damaged
 * row".  One 'encrypt' key is active for new values; one 'blind_index' key
 * computes blind indexes and is never rotated (every index entry depends on
 * it); one 'pseudonym' key keys the pseudonym masking function; one
 * 'audit' key keys the MACs of audit rows.  Keys are created lazily on first
 * use rather than at CREATE EXTENSION, so that restoring a dump brings back
 * the original keys instead of colliding with fresh ones.  A database's
 * first key id is random and the next ones follow it, so that key ids of
 * different databases practically never meet.
 *
 * Cache.  Unwrapped keys are cached per backend, as keyed OpenSSL contexts,
 * in KeysContext under TopMemoryContext; keys_free_cache frees the contexts
 * (OpenSSL cleanses their key schedules) before the cache is rebuilt.  A
 * new context belongs to the current resource owner (see crypto.c) until
 * its cache entry holds it and the cache adopts it, so that an error while
 * the entry is made (out of memory in hash_search) frees it at abort.  Key
 * bytes unwrapped or drawn into a stack buffer are wiped also when an
 * ERROR passes (PG_CATCH, then re-thrown), since unwrapping, wrapping and
 * building contexts may all raise.  (PG_CATCH rather than PG_FINALLY: GCC's
 * -Wclobbered takes PG_FINALLY's own flag for clobbered in some of these
 * functions.)  It
 * is not KeysContext's reset callback: the hash table lives in a child
 * context of its own (dynahash's), which MemoryContextReset deletes before
 * it runs the parent's callbacks, so a callback would read freed memory.
 * A statement trigger on pii_guard.data_keys sends a relcache invalidation
 * for the table, and our relcache callback marks the cache stale; it is
 * rebuilt on next use, never inside the callback, so pointers handed out
 * stay valid for the duration of the call that asked for them.
 *
 * Subject keys (crypto-shredding).  A table named by shred_by() keeps its
 * encrypted values under a key per subject (one row key of the subject's
 * table): random, wrapped by the master key (additional data: key id and
 * purpose 's'), in pii_guard.subject_keys, which no dump holds.  Their ids
 * are SUBJECT_KEY_MIN and up, so an envelope's key id says which table it
 * is in.  Reads must stay cheap with a key per customer: keys are read in
 * blocks of SUBJECT_BLOCK consecutive ids (ids are handed out in order, so
 * one query serves the rows written together), unwrapped on first use,
 * and kept as raw bytes (not as OpenSSL contexts, a few hundred bytes
 * each); one decryption and one encryption context are re-keyed per value
 * (an AES key schedule, skipped when the key is the last one's).  The raw
 * keys are wiped when the cache is rebuilt.  Destroying a key is an UPDATE
 * of its row, whose statement trigger invalidates every session's cache.
 *
 * Access.  Key rows are read and written through SPI as the extension's
 * owner with search_path pinned (owner_spi_begin), so that
 * application roles need no privilege on the table.  Reads use the latest
 * snapshot: keys never change once written, and a REPEATABLE READ
 * transaction must still find a key created after its snapshot.  Creating
 * or rotating keys takes SHARE ROW EXCLUSIVE on the table, which serialises
 * creators without blocking readers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <ctype.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <openssl/crypto.h>

#include "access/xact.h"
#include "common/hashfn.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "pii_guard.h"

typedef struct MasterKey
{
	bool		loaded;
	uint8		key[PII_KEY_LEN];
	uint8		fingerprint[PII_FINGERPRINT_LEN];
	char		problem[200];	/* why it is not loaded; never secret */
} MasterKey;

static MasterKey master_current;
static MasterKey master_previous;

static MemoryContext KeysContext = NULL;
static HTAB *key_cache = NULL;
static bool key_cache_valid = false;
static uint64 key_cache_generation = 0;	/* bumped at every rebuild */
static DataKey *current_encrypt_key = NULL;
static DataKey *current_blind_key = NULL;
static DataKey *current_pseudonym_key = NULL;
static DataKey *current_audit_key = NULL;
static Oid	data_keys_relid = InvalidOid;

/*
 * Where this node reads data_keys and subject_keys from (on Citus, the
 * local placement of the reference table: see pii_guard_local_table()),
 * resolved once per cache generation, and those relations' OIDs, which the
 * relcache callback watches too.
 */
static bool keys_tables_resolved = false;
static char data_keys_read[PII_LOCAL_TABLE_LEN];
static char subject_keys_read[PII_LOCAL_TABLE_LEN];
static Oid	data_keys_read_relid = InvalidOid;
static Oid	subject_keys_read_relid = InvalidOid;

/* Subject keys: see "Subject keys" above. */
#define SUBJECT_BLOCK 1024

typedef struct SubjectKey
{
	bool		present;		/* a row has this id */
	bool		shredded;		/* destroyed: no key bytes */
	bool		unwrapped;		/* key holds the key */
	Oid			subject_base;
	uint64		rowkey_hash;	/* of the subject's row key as text */
	uint8		wrapped[PII_WRAPPED_LEN];
	uint8		fp[PII_FINGERPRINT_LEN];
	uint8		key[PII_KEY_LEN];
} SubjectKey;

/* SUBJECT_BLOCK consecutive ids, found by their block number */
typedef struct SubjectBlock
{
	uint32		block;			/* hash key: must be first */
	SubjectKey *keys;
} SubjectBlock;

static HTAB *subject_cache = NULL;	/* of SubjectBlock; in KeysContext, with key_cache */
static SubjectBlock *subject_last = NULL;	/* the block found last */
static Oid	subject_keys_relid = InvalidOid;
static EVP_CIPHER_CTX *subject_dec = NULL;	/* re-keyed per value */
static EVP_CIPHER_CTX *subject_enc = NULL;
static DataKey subject_current;	/* what keys_lookup returns for a subject key */

static const char *
purpose_name(char purpose)
{
	switch (purpose)
	{
		case KEY_PURPOSE_BLIND:
			return "blind_index";
		case KEY_PURPOSE_PSEUDONYM:
			return "pseudonym";
		case KEY_PURPOSE_AUDIT:
			return "audit";
		case KEY_PURPOSE_SUBJECT:
			return "subject";
		default:
			return "encrypt";
	}
}

static char
purpose_from_name(const char *name)
{
	if (name != NULL && strcmp(name, "blind_index") == 0)
		return KEY_PURPOSE_BLIND;
	if (name != NULL && strcmp(name, "pseudonym") == 0)
		return KEY_PURPOSE_PSEUDONYM;
	if (name != NULL && strcmp(name, "audit") == 0)
		return KEY_PURPOSE_AUDIT;
	if (name != NULL && strcmp(name, "subject") == 0)
		return KEY_PURPOSE_SUBJECT;
	return KEY_PURPOSE_ENCRYPT;
}

/* Hex form of a fingerprint, palloc'd. */
static char *
fingerprint_hex(const uint8 *fp)
{
	char	   *hex = palloc(PII_FINGERPRINT_LEN * 2 + 1);
	int			i;

	for (i = 0; i < PII_FINGERPRINT_LEN; i++)
		snprintf(hex + i * 2, 3, "%02x", fp[i]);
	return hex;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Run command with /bin/sh, its standard output into buf (at most size - 1
 * bytes; *n is set to size when it printed more), waiting at most timeout_s
 * seconds.  The command runs in a process group of its own, which is killed
 * on timeout, so a key service that never answers cannot keep the server
 * from starting.  Returns NULL, or the reason for a failure (a static
 * string or a wait_result_to_str); never anything the command printed.
 * (The audit anchor command runs the same way, audit.c.)
 */
const char *
keys_run_command(const char *command, char *buf, size_t size, size_t *n,
				 int timeout_s, int *exit_status)
{
	int			fds[2];
	pid_t		pid;
	TimestampTz deadline;
	int			status;
	bool		timed_out = false;

	*n = 0;
	*exit_status = 0;
	if (pipe(fds) != 0)
		return "a pipe could not be created";
	(void) fflush(NULL);		/* else the child may repeat buffered output */
	pid = fork();
	if (pid < 0)
	{
		close(fds[0]);
		close(fds[1]);
		return "the command could not be started";
	}
	if (pid == 0)
	{
		sigset_t	none;

		/* The postmaster starts up with signals blocked: not the command. */
		sigemptyset(&none);
		(void) sigprocmask(SIG_SETMASK, &none, NULL);
		(void) setpgid(0, 0);
		close(fds[0]);
		if (dup2(fds[1], STDOUT_FILENO) < 0)
			_exit(127);
		close(fds[1]);
		execl("/bin/sh", "sh", "-c", command, (char *) NULL);
		_exit(127);
	}
	(void) setpgid(pid, pid);	/* (whichever of the two runs first) */
	close(fds[1]);

	deadline = GetCurrentTimestamp() + (TimestampTz) timeout_s * USECS_PER_SEC;
	for (;;)
	{
		struct pollfd pfd;
		long		left_ms = (deadline - GetCurrentTimestamp()) / 1000;
		ssize_t		got;
		char		sink[256];

		if (left_ms <= 0)
		{
			timed_out = true;
			break;
		}
		pfd.fd = fds[0];
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, (int) Min(left_ms, 1000)) < 0)
		{
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd.revents == 0)
			continue;
		/* Read into buf while it has room, then drain (and remember). */
		if (*n < size - 1)
			got = read(fds[0], buf + *n, size - 1 - *n);
		else
		{
			got = read(fds[0], sink, sizeof(sink));
			if (got > 0)
				*n = size;
			OPENSSL_cleanse(sink, sizeof(sink));
		}
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (*n < size)
			*n += got;
	}
	close(fds[0]);
	if (timed_out)
		(void) kill(-pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0)
	{
		if (errno != EINTR)
		{
			status = -1;
			break;
		}
	}
	if (timed_out)
		return "timed out";
	*exit_status = status;
	return NULL;
}

/*
 * Run one key command and load its key into mk.  Runs in the postmaster
 * (or a standalone backend): it must not ereport(ERROR), and it reports
 * only the reason for a failure, never what the command printed.
 */
static void
keys_load_one(MasterKey *mk, const char *command, const char *setting)
{
	char		buf[256];
	size_t		n = 0;
	size_t		start;
	size_t		end;
	int			status;
	const char *failure;
	int			i;

	memset(mk, 0, sizeof(*mk));
	if (command == NULL || command[0] == '\0')
	{
		snprintf(mk->problem, sizeof(mk->problem), "%s is not set", setting);
		return;
	}

	failure = keys_run_command(command, buf, sizeof(buf), &n,
							   pii_guard_master_key_timeout, &status);
	if (failure != NULL)
	{
		if (strcmp(failure, "timed out") == 0)
			snprintf(mk->problem, sizeof(mk->problem),
					 "%s did not finish within %d seconds (pii_guard.master_key_timeout)",
					 setting, pii_guard_master_key_timeout);
		else
			snprintf(mk->problem, sizeof(mk->problem), "%s: %s", setting, failure);
		OPENSSL_cleanse(buf, sizeof(buf));
		return;
	}
	if (status != 0)
	{
		char	   *reason;

		/* (before wait_result_to_str, which allocates and so may raise) */
		OPENSSL_cleanse(buf, sizeof(buf));
		reason = wait_result_to_str(status);
		snprintf(mk->problem, sizeof(mk->problem), "%s failed: %s",
				 setting, reason);
		pfree(reason);
		return;
	}

	start = 0;
	end = Min(n, sizeof(buf) - 1);
	/* cppcheck-suppress knownConditionTrueFalse ; n is set by keys_run_command() */
	while (start < end && isspace((unsigned char) buf[start]))
		start++;
	while (end > start && isspace((unsigned char) buf[end - 1]))
		end--;
	if (n >= sizeof(buf) || end - start != PII_KEY_LEN * 2)
	{
		snprintf(mk->problem, sizeof(mk->problem),
				 "the output of %s is not 64 hexadecimal digits", setting);
		OPENSSL_cleanse(buf, sizeof(buf));
		return;
	}
	for (i = 0; i < PII_KEY_LEN; i++)
	{
		int			hi = hex_value(buf[start + 2 * i]);
		int			lo = hex_value(buf[start + 2 * i + 1]);

		if (hi < 0 || lo < 0)
		{
			OPENSSL_cleanse(mk->key, sizeof(mk->key));
			OPENSSL_cleanse(buf, sizeof(buf));
			snprintf(mk->problem, sizeof(mk->problem),
					 "the output of %s is not 64 hexadecimal digits", setting);
			return;
		}
		mk->key[i] = (uint8) (hi << 4 | lo);
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	crypto_fingerprint(mk->key, mk->fingerprint);
	mk->loaded = true;
}

/*
 * Load the master key (and the previous one, if configured).  Called by
 * _PG_init, which runs in the postmaster when we are preloaded.
 */
void
keys_load_master_keys(void)
{
	keys_load_one(&master_current, pii_guard_master_key_command,
				  "pii_guard.master_key_command");
	if (!crypto_self_test())
	{
		/* Keys would be usable, but every MAC computed with them wrong. */
		OPENSSL_cleanse(&master_current, sizeof(master_current));
		snprintf(master_current.problem, sizeof(master_current.problem),
				 "the HMAC-SHA256 self-test failed: this build of pii_guard or of OpenSSL computes wrong MACs");
	}
	if (master_current.loaded)
		ereport(LOG,
				(errmsg("pii_guard: master key loaded, fingerprint %s",
						fingerprint_hex(master_current.fingerprint))));
	else
		ereport(WARNING,
				(errmsg("pii_guard: no master key: %s", master_current.problem),
				 errdetail("Encrypted values can be neither written nor read until the server is restarted with a working master key command."),
				 errhint("Set pii_guard.master_key_command to a command that prints the 256-bit master key as 64 hexadecimal digits.")));

	if (pii_guard_previous_master_key_command != NULL &&
		pii_guard_previous_master_key_command[0] != '\0')
	{
		keys_load_one(&master_previous, pii_guard_previous_master_key_command,
					  "pii_guard.previous_master_key_command");
		if (master_previous.loaded)
			ereport(LOG,
					(errmsg("pii_guard: previous master key loaded, fingerprint %s",
							fingerprint_hex(master_previous.fingerprint))));
		else
			ereport(WARNING,
					(errmsg("pii_guard: no previous master key: %s",
							master_previous.problem)));
	}
	else
		memset(&master_previous, 0, sizeof(master_previous));
}

bool
keys_master_key_available(void)
{
	return master_current.loaded;
}

/* ERROR unless the current master key is loaded. */
static void
keys_require_master_key(void)
{
	if (!master_current.loaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errhidestmt(true),
				 errmsg("pii_guard master key is not available"),
				 errdetail("%s.", master_current.problem),
				 errhint("Set pii_guard.master_key_command in postgresql.conf to a command that prints the master key as 64 hexadecimal digits, and restart the server.")));
}

/*
 * Free the OpenSSL contexts of every cached key and forget the cache; run
 * before KeysContext is reset (see "Cache" above).
 */
static void
keys_free_cache(void)
{
	HASH_SEQ_STATUS status;
	DataKey    *entry;

	if (key_cache == NULL)
		return;
	hash_seq_init(&status, key_cache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		crypto_free_gcm_ctx(entry->enc);
		crypto_free_gcm_ctx(entry->dec);
		crypto_free_hmac(entry->mac);
	}
	key_cache = NULL;
	if (subject_cache != NULL)
	{
		SubjectBlock *blk;

		hash_seq_init(&status, subject_cache);
		while ((blk = hash_seq_search(&status)) != NULL)
			for (int i = 0; i < SUBJECT_BLOCK; i++)
				OPENSSL_cleanse(blk->keys[i].key, PII_KEY_LEN);
		subject_cache = NULL;
	}
	subject_last = NULL;
	crypto_free_gcm_ctx(subject_dec);
	crypto_free_gcm_ctx(subject_enc);
	subject_dec = subject_enc = NULL;
	current_encrypt_key = NULL;
	current_blind_key = NULL;
	current_pseudonym_key = NULL;
	current_audit_key = NULL;
}

/* A relation changed: a change to pii_guard.data_keys makes the cache stale. */
void
keys_relation_changed(Oid relid)
{
	if (relid == InvalidOid || relid == data_keys_relid ||
		(OidIsValid(relid) && (relid == subject_keys_relid ||
							   relid == data_keys_read_relid ||
							   relid == subject_keys_read_relid)))
	{
		key_cache_valid = false;
		keys_tables_resolved = false;
	}
}


/* Make sure key_cache exists and is not stale. */
static void
keys_ensure_cache(void)
{
	HASHCTL		ctl;

	if (key_cache_valid && key_cache != NULL)
		return;

	if (KeysContext == NULL)
		KeysContext = AllocSetContextCreate(TopMemoryContext,
											"pii_guard data keys",
											ALLOCSET_SMALL_SIZES);
	keys_free_cache();
	MemoryContextReset(KeysContext);
	key_cache_generation++;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(DataKey);
	ctl.hcxt = KeysContext;
	key_cache = hash_create("pii_guard data keys", 16, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.entrysize = sizeof(SubjectBlock);
	subject_cache = hash_create("pii_guard subject keys", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* An invalidation arriving from here on marks the new cache stale. */
	key_cache_valid = true;
	data_keys_relid = pii_guard_relation_oid("data_keys", false);
	subject_keys_relid = pii_guard_relation_oid("subject_keys", true);
	keys_tables_resolved = false;
}

/*
 * Resolve where this node reads the key tables; the caller is in SPI.  (Not
 * through keys_ensure_cache(), which may rebuild the cache under a caller
 * holding keys from it: the first key access of a backend can be a subject
 * key's creation, before any cache exists.)
 */
static void
keys_resolve_tables(void)
{
	if (keys_tables_resolved)
		return;
	data_keys_read[0] = subject_keys_read[0] = '\0';
	data_keys_read_relid = subject_keys_read_relid = InvalidOid;
	pii_guard_local_table("data_keys", data_keys_read, &data_keys_read_relid);
	if (OidIsValid(pii_guard_relation_oid("subject_keys", true)))
		pii_guard_local_table("subject_keys", subject_keys_read, &subject_keys_read_relid);
	keys_tables_resolved = true;
}

/* A key query naming the table it reads as %s, for this node. */
static char *
keys_sql(const char *fmt, const char *table)
{
	keys_resolve_tables();
	if (table[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.subject_keys\" does not exist", PII_GUARD_SCHEMA),
				 errhint("Run ALTER EXTENSION pii_guard UPDATE.")));
	return psprintf(fmt, table);
}

/* Run a prepared read (or update) against the latest snapshot. */
static int
keys_spi_latest(const char *sql, int nargs, Oid *argtypes, Datum *values,
				bool read_only)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, argtypes);
	int			ret;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for pii_guard key query: %s",
			 SPI_result_code_string(SPI_result));
	/* (No new snapshot may be taken in a parallel query: use the current one.) */
	if (IsInParallelMode())
		ret = SPI_execute_plan(plan, values, NULL, read_only, 0);
	else
		ret = SPI_execute_snapshot(plan, values, NULL, GetLatestSnapshot(),
								   InvalidSnapshot, read_only, true, 0);
	if (ret < 0)
		elog(ERROR, "pii_guard key query failed: %s",
			 SPI_result_code_string(ret));
	return ret;
}

/* Copy a bytea column of an SPI result row into buf; false if wrong size. */
static bool
keys_spi_bytea(SPITupleTable *tt, uint64 row, int col, uint8 *buf, Size len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tt->vals[row], tt->tupdesc, col, &isnull);
	bytea	   *b;

	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	if (VARSIZE_ANY_EXHDR(b) != len)
		return false;
	memcpy(buf, VARDATA_ANY(b), len);
	return true;
}

/*
 * A decryption context keyed with a master key, kept for the life of the
 * backend (the key is in this file's memory for that long anyway): a scan
 * under subject keys unwraps one per person, and keying a context per key
 * cost more than the unwrapping.
 */
static EVP_CIPHER_CTX *
keys_master_unwrapper(const MasterKey *mk)
{
	static EVP_CIPHER_CTX *unwrap_current = NULL;
	static EVP_CIPHER_CTX *unwrap_previous = NULL;
	EVP_CIPHER_CTX **slot = mk == &master_current ? &unwrap_current : &unwrap_previous;

	if (*slot == NULL)
	{
		EVP_CIPHER_CTX *ctx = crypto_new_gcm_ctx(mk->key, false);

		if (ctx == NULL)
			crypto_failure("AES-256-GCM setup");
		crypto_adopt(ctx);
		*slot = ctx;
	}
	return *slot;
}

/*
 * Unwrap a data key row with whichever loaded master key its fingerprint
 * names.  Errors tell a wrong master key apart from a damaged row.
 */
static void
keys_unwrap_row(uint32 key_id, char purpose, const uint8 *wrapped,
				const uint8 *fp, uint8 *key)
{
	const MasterKey *mk = NULL;

	keys_require_master_key();
	if (memcmp(fp, master_current.fingerprint, PII_FINGERPRINT_LEN) == 0)
		mk = &master_current;
	else if (master_previous.loaded &&
			 memcmp(fp, master_previous.fingerprint, PII_FINGERPRINT_LEN) == 0)
		mk = &master_previous;
	else
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errhidestmt(true),
				 errmsg("pii_guard data key %u is wrapped by a different master key", key_id),
				 errdetail("The key was wrapped by the master key with fingerprint %s; this server's master key has fingerprint %s.",
						   fingerprint_hex(fp),
						   fingerprint_hex(master_current.fingerprint)),
				 errhint("Start the server with the master key this database was encrypted under, or supply that key as pii_guard.previous_master_key_command and run pii_guard.rewrap_data_keys().")));

	if (!(purpose == KEY_PURPOSE_SUBJECT ?
		  crypto_unwrap_key_with(keys_master_unwrapper(mk), key_id, purpose, wrapped, key) :
		  crypto_unwrap_key(mk->key, key_id, purpose, wrapped, key)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("pii_guard data key %u cannot be unwrapped", key_id),
				 errdetail("Its master key fingerprint matches, but the wrapped key fails authentication: the row in pii_guard.data_keys is damaged."),
				 errhint("Restore pii_guard.data_keys from a backup.")));
}

/* Index of a purpose in the arrays of active key ids. */
#define KEY_SLOT_ENCRYPT	0
#define KEY_SLOT_BLIND		1
#define KEY_SLOT_PSEUDONYM	2
#define KEY_SLOT_AUDIT		3
#define KEY_SLOTS			4

static int
key_slot(char purpose)
{
	return purpose == KEY_PURPOSE_BLIND ? KEY_SLOT_BLIND :
		purpose == KEY_PURPOSE_PSEUDONYM ? KEY_SLOT_PSEUDONYM :
		purpose == KEY_PURPOSE_AUDIT ? KEY_SLOT_AUDIT : KEY_SLOT_ENCRYPT;
}

/*
 * Build the cache entry for an unwrapped key and wipe the key bytes.  The
 * new contexts belong to the current resource owner until the entry holds
 * them: if hash_search raises (out of memory), the abort frees them.
 */
static DataKey *
keys_cache_insert(uint32 key_id, char purpose, uint8 *key)
{
	EVP_CIPHER_CTX *enc = NULL;
	EVP_CIPHER_CTX *dec = NULL;
	CryptoHmac *mac = NULL;
	DataKey    *entry;
	bool		found;

	if (purpose == KEY_PURPOSE_ENCRYPT)
	{
		enc = crypto_new_gcm_ctx(key, true);
		dec = crypto_new_gcm_ctx(key, false);
	}
	else
		mac = crypto_new_hmac(key);
	OPENSSL_cleanse(key, PII_KEY_LEN);
	if (purpose == KEY_PURPOSE_ENCRYPT ? (enc == NULL || dec == NULL) : mac == NULL)
	{
		crypto_free_gcm_ctx(enc);
		crypto_free_gcm_ctx(dec);
		crypto_failure("data key setup");
	}

	entry = hash_search(key_cache, &key_id, HASH_ENTER, &found);
	if (found)
	{
		/* Loaded meanwhile by a nested call; keep the first one. */
		crypto_free_gcm_ctx(enc);
		crypto_free_gcm_ctx(dec);
		crypto_free_hmac(mac);
		return entry;
	}
	/* Nothing raises from here on: the cache takes the contexts over. */
	entry->purpose = purpose;
	entry->enc = enc;
	entry->dec = dec;
	entry->mac = mac;
	entry->rekey = NULL;
	crypto_adopt(enc);
	crypto_adopt(dec);
	crypto_adopt(mac);
	return entry;
}

/*
 * Unwrap a data key row and cache the key.  The key bytes are wiped also
 * when unwrapping or building its contexts raises.
 */
static DataKey *
keys_unwrap_and_cache(uint32 key_id, char purpose, const uint8 *wrapped,
					  const uint8 *fp)
{
	uint8		key[PII_KEY_LEN];
	DataKey    *volatile entry = NULL;

	PG_TRY();
	{
		keys_unwrap_row(key_id, purpose, wrapped, fp, key);
		entry = keys_cache_insert(key_id, purpose, key);
	}
	PG_CATCH();
	{
		OPENSSL_cleanse(key, PII_KEY_LEN);
		PG_RE_THROW();
	}
	PG_END_TRY();
	OPENSSL_cleanse(key, PII_KEY_LEN);	/* (keys_cache_insert wiped it already) */
	return entry;
}

/* Read, unwrap and cache one key; NULL if no row has that id. */
static DataKey *
keys_load(uint32 key_id)
{
	OwnerContext oc;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1] = {Int32GetDatum((int32) key_id)};
	uint8		wrapped[PII_WRAPPED_LEN];
	uint8		fp[PII_FINGERPRINT_LEN];
	char		purpose = 0;
	bool		found = false;
	bool		well_formed = false;

	owner_spi_begin(&oc);
	keys_spi_latest(keys_sql("SELECT purpose, wrapped_key, master_key_fingerprint "
							 "FROM %s WHERE key_id = $1", data_keys_read),
					1, argtypes, values, true);
	if (SPI_processed == 1)
	{
		char	   *p = SPI_getvalue(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1);

		found = true;
		purpose = purpose_from_name(p);
		well_formed = keys_spi_bytea(SPI_tuptable, 0, 2, wrapped, PII_WRAPPED_LEN) &&
			keys_spi_bytea(SPI_tuptable, 0, 3, fp, PII_FINGERPRINT_LEN);
	}
	owner_spi_end(&oc);

	if (!found)
		return NULL;
	if (!well_formed)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("pii_guard data key %u cannot be unwrapped", key_id),
				 errdetail("Its wrapped key or fingerprint has the wrong length: the row in pii_guard.data_keys is damaged.")));

	return keys_unwrap_and_cache(key_id, purpose, wrapped, fp);
}

static DataKey *keys_subject_opener(uint32 key_id);

/* The cached key with this id, loading it on first use. */
DataKey *
keys_lookup(uint32 key_id)
{
	DataKey    *entry;

	if (key_id >= SUBJECT_KEY_MIN)
		return keys_subject_opener(key_id);
	keys_ensure_cache();
	entry = hash_search(key_cache, &key_id, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	entry = keys_load(key_id);
	if (entry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errhidestmt(true),
				 errmsg("pii_guard data key %u does not exist", key_id),
				 errdetail("The encrypted value names a data key that is not in pii_guard.data_keys."),
				 errhint("If this database was restored from a dump, restore the table pii_guard.data_keys from the same dump.")));
	return entry;
}

/*
 * A database whose keys are wrapped by a master key this server doesn't
 * have must not get new keys under this one: that would retire its active
 * key and strand new values under the wrong master key.  The caller holds
 * the table lock and is connected to SPI.
 */
static void
keys_refuse_foreign_master_key(void)
{
	uint64		i;

	keys_spi_latest(keys_sql("SELECT key_id, master_key_fingerprint FROM %s "
							 "ORDER BY key_id", data_keys_read), 0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		uint32		key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
																  SPI_tuptable->tupdesc,
																  1, &isnull));
		uint8		fp[PII_FINGERPRINT_LEN];

		if (!keys_spi_bytea(SPI_tuptable, i, 2, fp, PII_FINGERPRINT_LEN))
			continue;
		if (memcmp(fp, master_current.fingerprint, PII_FINGERPRINT_LEN) == 0 ||
			(master_previous.loaded &&
			 memcmp(fp, master_previous.fingerprint, PII_FINGERPRINT_LEN) == 0))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errhidestmt(true),
				 errmsg("pii_guard data key %u is wrapped by a different master key", key_id),
				 errdetail("The key was wrapped by the master key with fingerprint %s; this server's master key has fingerprint %s. No new data key is created under a master key the database's keys do not share.",
						   fingerprint_hex(fp),
						   fingerprint_hex(master_current.fingerprint)),
				 errhint("Start the server with the master key this database was encrypted under, or supply that key as pii_guard.previous_master_key_command and run pii_guard.rewrap_data_keys().")));
	}
}

/*
 * A new random key, wrapped by the current master key for key_id and
 * purpose, into wrapped (a bytea of PII_WRAPPED_LEN bytes) with the master
 * key's fingerprint into fp.  The key bytes are wiped also when wrapping
 * raises.
 */
static void
keys_new_wrapped(uint32 key_id, char purpose, bytea *wrapped, bytea *fp)
{
	uint8		key[PII_KEY_LEN];

	SET_VARSIZE(wrapped, VARHDRSZ + PII_WRAPPED_LEN);
	SET_VARSIZE(fp, VARHDRSZ + PII_FINGERPRINT_LEN);
	PG_TRY();
	{
		crypto_random_bytes(key, PII_KEY_LEN);
		crypto_wrap_key(master_current.key, key_id, purpose, key,
						(uint8 *) VARDATA(wrapped));
	}
	PG_CATCH();
	{
		OPENSSL_cleanse(key, PII_KEY_LEN);
		PG_RE_THROW();
	}
	PG_END_TRY();
	OPENSSL_cleanse(key, PII_KEY_LEN);
	memcpy(VARDATA(fp), master_current.fingerprint, PII_FINGERPRINT_LEN);
}

/*
 * Create a key of the given purpose and make it the active one, retiring
 * the previously active key of that purpose.  The caller holds the table
 * lock, is connected to SPI and runs in the owner context.
 */
static uint32
keys_create(char purpose)
{
	Oid			argtypes[4] = {INT4OID, TEXTOID, BYTEAOID, BYTEAOID};
	Datum		values[4];
	bytea	   *wrapped = palloc(VARHDRSZ + PII_WRAPPED_LEN);
	bytea	   *fp = palloc(VARHDRSZ + PII_FINGERPRINT_LEN);
	uint32		key_id;
	bool		isnull;

	keys_require_master_key();
	if (XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errhidestmt(true),
				 errmsg("cannot create a pii_guard data key in a read-only transaction"),
				 errhint("Run SELECT pii_guard.rotate_data_key() once in a read-write transaction on the primary.")));

	keys_refuse_foreign_master_key();
	keys_spi_latest(keys_sql("SELECT max(key_id) + 1 FROM %s", data_keys_read),
					0, NULL, NULL, true);
	key_id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 1,
												  &isnull));
	if (isnull)
	{
		/*
		 * A database's first key id is random, the next ones follow it: so
		 * an envelope that comes from another database (a logical replica,
		 * a COPY between databases) names a key this one does not have --
		 * reported as such -- instead of another key with the same small
		 * id, which would fail authentication as if the value had been
		 * tampered with.  Below 2^30, leaving room for as many rotations.
		 */
		uint32		r;

		crypto_random_bytes((uint8 *) &r, sizeof(r));
		key_id = 1 + r % (1U << 30);
	}

	values[0] = CStringGetTextDatum(purpose_name(purpose));
	keys_spi_latest("UPDATE pii_guard.data_keys "
					"SET state = 'retired', retired_at = pg_catalog.now() "
					"WHERE purpose = $1 AND state = 'active'",
					1, argtypes + 1, values, false);

	keys_new_wrapped(key_id, purpose, wrapped, fp);

	values[0] = Int32GetDatum((int32) key_id);
	values[1] = CStringGetTextDatum(purpose_name(purpose));
	values[2] = PointerGetDatum(wrapped);
	values[3] = PointerGetDatum(fp);
	if (SPI_execute_with_args("INSERT INTO pii_guard.data_keys "
							  "(key_id, purpose, state, wrapped_key, master_key_fingerprint) "
							  "VALUES ($1, $2, 'active', $3, $4)",
							  4, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert pii_guard data key");
	return key_id;
}

/* Take the lock that serialises key creation and rotation. */
static void
keys_lock_table(void)
{
	if (SPI_execute("LOCK TABLE pii_guard.data_keys IN SHARE ROW EXCLUSIVE MODE",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock pii_guard.data_keys");
}

/*
 * Ids of the active keys, indexed by KEY_SLOT_* (0 where none); the caller
 * is connected to SPI.
 */
static void
keys_active_ids(uint32 *ids)
{
	uint64		i;

	memset(ids, 0, sizeof(uint32) * KEY_SLOTS);
	keys_spi_latest(keys_sql("SELECT key_id, purpose FROM %s "
							 "WHERE state = 'active'", data_keys_read), 0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		uint32		id = (uint32) DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc,
															  1, &isnull));
		char		purpose = purpose_from_name(SPI_getvalue(SPI_tuptable->vals[i],
															 SPI_tuptable->tupdesc, 2));

		ids[key_slot(purpose)] = id;
	}
}

/*
 * Ids of the active keys of the given purposes, creating the missing ones
 * (under the table lock, after looking again).
 */
static void
keys_ensure_active(const char *purposes, uint32 *ids)
{
	OwnerContext oc;
	const char *p;
	bool		missing = false;

	keys_require_master_key();
	owner_spi_begin(&oc);
	keys_active_ids(ids);
	for (p = purposes; *p; p++)
		missing |= ids[key_slot(*p)] == 0;
	if (missing)
	{
		keys_lock_table();
		keys_active_ids(ids);
		for (p = purposes; *p; p++)
			if (ids[key_slot(*p)] == 0)
				ids[key_slot(*p)] = keys_create(*p);
	}
	owner_spi_end(&oc);
}

/* The cached key with this id, which must have the given purpose. */
static DataKey *
keys_lookup_purpose(uint32 key_id, char purpose)
{
	DataKey    *key = keys_lookup(key_id);

	if (key->purpose != purpose)
		elog(ERROR, "pii_guard data key %u has purpose %s, not %s",
			 key_id, purpose_name(key->purpose), purpose_name(purpose));
	return key;
}

/*
 * The active encryption key and the blind index key, creating them on first
 * use.
 */
void
keys_current(DataKey **encrypt_key, DataKey **blind_key)
{
	uint32		ids[KEY_SLOTS];

	keys_ensure_cache();
	while (current_encrypt_key == NULL || current_blind_key == NULL)
	{
		DataKey    *ek;
		DataKey    *bk;
		uint64		generation;

		keys_ensure_active((const char[]) {KEY_PURPOSE_ENCRYPT, KEY_PURPOSE_BLIND, 0}, ids);

		/*
		 * Loading a key runs SPI, which may accept an invalidation of
		 * data_keys; the second lookup then rebuilds the cache and frees
		 * the entry the first one returned.  Keep the pair only if both
		 * come from the same cache.
		 */
		ek = keys_lookup_purpose(ids[KEY_SLOT_ENCRYPT], KEY_PURPOSE_ENCRYPT);
		generation = key_cache_generation;
		bk = keys_lookup_purpose(ids[KEY_SLOT_BLIND], KEY_PURPOSE_BLIND);
		if (generation == key_cache_generation)
		{
			current_encrypt_key = ek;
			current_blind_key = bk;
		}
		keys_ensure_cache();
	}
	*encrypt_key = current_encrypt_key;
	*blind_key = current_blind_key;
}

/*
 * The pseudonym key (an HMAC key, like the blind index key but separate, so
 * that pseudonyms can't be matched against blind indexes), created on first
 * use.
 */
DataKey *
keys_pseudonym(void)
{
	uint32		ids[KEY_SLOTS];

	keys_ensure_cache();
	if (current_pseudonym_key == NULL)
	{
		keys_ensure_active((const char[]) {KEY_PURPOSE_PSEUDONYM, 0}, ids);
		current_pseudonym_key = keys_lookup_purpose(ids[KEY_SLOT_PSEUDONYM],
													KEY_PURPOSE_PSEUDONYM);
	}
	return current_pseudonym_key;
}

/*
 * The audit key: the HMAC key of audit rows' MACs.  A data key, so that it
 * survives master key rotation (it is re-wrapped like the others).
 */
DataKey *
keys_audit(void)
{
	uint32		ids[KEY_SLOTS];

	keys_ensure_cache();
	if (current_audit_key == NULL)
	{
		keys_ensure_active((const char[]) {KEY_PURPOSE_AUDIT, 0}, ids);
		current_audit_key = keys_lookup_purpose(ids[KEY_SLOT_AUDIT], KEY_PURPOSE_AUDIT);
	}
	return current_audit_key;
}

/* An admin audit event for a key operation, in the current transaction. */
static void
keys_audit_admin(const char *action, const char *detail)
{
	AuditEvent	ev;

	if (!OidIsValid(pii_guard_relation_oid("audit_log", true)))
		return;
	audit_event_init(&ev, AUDIT_ADMIN);
	AUDIT_SET(&ev, operation, action);
	AUDIT_SET(&ev, detail, detail);
	(void) audit_insert_now(&ev);
}

/* The hash of a subject's row key, to tell whose a cached key is. */
static uint64
subject_rowkey_hash(const char *row_key)
{
	return hash_bytes_extended((const unsigned char *) row_key, (int) strlen(row_key), 0);
}

/*
 * Read the subject keys of key_id's block into the cache (those not there
 * yet).  Latest snapshot, like data keys: a key another session created
 * and committed after this transaction's snapshot is found.
 */
static SubjectBlock *
keys_subject_load_block(uint32 key_id)
{
	OwnerContext oc;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2];
	uint32		block = key_id / SUBJECT_BLOCK;
	uint64		first = (uint64) block * SUBJECT_BLOCK;
	bool		found;
	SubjectBlock *blk;

	blk = hash_search(subject_cache, &block, HASH_ENTER, &found);
	if (!found)
	{
		blk->keys = NULL;
		blk->keys = MemoryContextAllocZero(KeysContext, sizeof(SubjectKey) * SUBJECT_BLOCK);
	}
	if (!OidIsValid(subject_keys_relid))
		return blk;
	values[0] = Int64GetDatum((int64) first);
	values[1] = Int64GetDatum((int64) (first + SUBJECT_BLOCK - 1));
	owner_spi_begin(&oc);
	keys_spi_latest(keys_sql("SELECT key_id, subject_base::pg_catalog.oid, row_key, wrapped_key, "
							 "       master_key_fingerprint "
							 "FROM %s WHERE key_id BETWEEN $1 AND $2", subject_keys_read),
					2, argtypes, values, true);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	row = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		uint32		id = (uint32) DatumGetInt64(SPI_getbinval(row, desc, 1, &isnull));
		SubjectKey *sk = &blk->keys[id % SUBJECT_BLOCK];

		if (sk->present)
			continue;
		sk->unwrapped = false;
		sk->subject_base = DatumGetObjectId(SPI_getbinval(row, desc, 2, &isnull));
		sk->rowkey_hash = subject_rowkey_hash(SPI_getvalue(row, desc, 3));
		sk->shredded = !keys_spi_bytea(SPI_tuptable, i, 4, sk->wrapped, PII_WRAPPED_LEN) ||
			!keys_spi_bytea(SPI_tuptable, i, 5, sk->fp, PII_FINGERPRINT_LEN);
		sk->present = true;
	}
	owner_spi_end(&oc);
	return blk;
}

/*
 * The cache entry of a subject key, or NULL when no row has that id.  Rows
 * are read in id order, and so are their keys: the block found last is
 * tried first.
 */
static SubjectKey *
keys_subject(uint32 key_id)
{
	uint32		block = key_id / SUBJECT_BLOCK;
	SubjectBlock *blk;
	SubjectKey *sk;

	keys_ensure_cache();
	blk = subject_last;
	if (blk == NULL || blk->block != block)
		blk = hash_search(subject_cache, &block, HASH_FIND, NULL);
	if (blk == NULL || !blk->keys[key_id % SUBJECT_BLOCK].present)
	{
		keys_subject_load_block(key_id);
		/* (SPI may have taken an invalidation: the cache is rebuilt, empty) */
		keys_ensure_cache();
		blk = hash_search(subject_cache, &block, HASH_FIND, NULL);
		if (blk == NULL)
			blk = keys_subject_load_block(key_id);
	}
	subject_last = blk;
	sk = &blk->keys[key_id % SUBJECT_BLOCK];
	return sk->present ? sk : NULL;
}

/* A subject key's state: SUBJECT_KEY_LIVE, _SHREDDED or _UNKNOWN. */
int
keys_subject_state(uint32 key_id)
{
	SubjectKey *sk = keys_subject(key_id);

	return sk == NULL ? SUBJECT_KEY_UNKNOWN :
		sk->shredded ? SUBJECT_KEY_SHREDDED : SUBJECT_KEY_LIVE;
}

/* Is key_id the live key of the subject (subject_base, row_key)? */
bool
keys_subject_is_of(uint32 key_id, Oid subject_base, const char *row_key)
{
	SubjectKey *sk = keys_subject(key_id);

	return sk != NULL && !sk->shredded && sk->subject_base == subject_base &&
		sk->rowkey_hash == subject_rowkey_hash(row_key);
}

/* The entry of a usable subject key, unwrapped; raises otherwise. */
static SubjectKey *
keys_subject_ready(uint32 key_id)
{
	SubjectKey *sk = keys_subject(key_id);

	if (sk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errhidestmt(true),
				 errmsg("pii_guard subject key %u does not exist", key_id),
				 errdetail("The value was encrypted under a person's own key (crypto-shredding); those keys are kept only in pii_guard.subject_keys of the database that wrote them, never in a dump."),
				 errhint("Copy pii_guard.subject_keys from that database (as a superuser, with \\copy), or restore this database from a physical backup.")));
	if (sk->shredded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errhidestmt(true),
				 errmsg("the key of this encrypted value was destroyed"),
				 errdetail("Subject key %u was shredded (pii_guard.shred_subject or erase_subject): the value can no longer be decrypted.",
						   key_id)));
	if (!sk->unwrapped)
	{
		keys_unwrap_row(key_id, KEY_PURPOSE_SUBJECT, sk->wrapped, sk->fp, sk->key);
		sk->unwrapped = true;
	}
	return sk;
}

/* Key ctx (the shared context) with key; creates it the first time. */
static EVP_CIPHER_CTX *
keys_subject_rekey(EVP_CIPHER_CTX *ctx, const uint8 *key, bool encrypt)
{
	if (ctx == NULL)
	{
		ctx = crypto_new_gcm_ctx(key, encrypt);
		if (ctx == NULL)
			crypto_failure("subject key setup");
		crypto_adopt(ctx);
		return ctx;
	}
	if ((encrypt ? EVP_EncryptInit_ex(ctx, NULL, NULL, key, NULL) :
		 EVP_DecryptInit_ex(ctx, NULL, NULL, key, NULL)) != 1)
		crypto_failure("subject key setup");
	return ctx;
}

/*
 * keys_lookup for a subject key: a DataKey whose decryption context holds
 * the key, valid until the next call into this file.
 */
static DataKey *
keys_subject_opener(uint32 key_id)
{
	SubjectKey *sk = keys_subject_ready(key_id);

	if (subject_dec == NULL)
		subject_dec = keys_subject_rekey(subject_dec, sk->key, false);
	subject_current.key_id = key_id;
	subject_current.purpose = KEY_PURPOSE_ENCRYPT;
	subject_current.enc = NULL;
	subject_current.dec = subject_dec;
	subject_current.mac = NULL;
	/* keyed with the nonce, in one call (crypto_open) */
	subject_current.rekey = sk->key;
	return &subject_current;
}

/*
 * For sealing under subject key key_id: *encrypt_key holds that key, and
 * *blind_key is the blind index key (the same for every value, so that
 * equality and lookups work across subjects).  Valid until the next call
 * into this file.
 */
void
keys_subject_sealer(uint32 key_id, DataKey **encrypt_key, DataKey **blind_key)
{
	SubjectKey *sk;
	DataKey    *ek;

	for (;;)
	{
		uint64		generation;

		sk = keys_subject_ready(key_id);
		generation = key_cache_generation;
		keys_current(&ek, blind_key);
		if (generation == key_cache_generation)
			break;
	}
	if (subject_enc == NULL)
		subject_enc = keys_subject_rekey(subject_enc, sk->key, true);
	subject_current.key_id = key_id;
	subject_current.purpose = KEY_PURPOSE_ENCRYPT;
	subject_current.enc = subject_enc;
	subject_current.dec = NULL;
	subject_current.mac = NULL;
	subject_current.rekey = sk->key;	/* keyed with the nonce (crypto_seal) */
	*encrypt_key = &subject_current;
}

/*
 * The live subject key of (subject_base, row_key), created if it has none:
 * its id.  Runs as the extension owner; two sessions creating the same
 * subject's key at once end with one (the unique index on live keys).
 */
uint32
keys_subject_key_id(Oid subject_base, const char *row_key)
{
	OwnerContext oc;
	Oid			argtypes[5] = {OIDOID, TEXTOID, INT8OID, BYTEAOID, BYTEAOID};
	Datum		values[5];
	uint32		key_id = 0;

	values[0] = ObjectIdGetDatum(subject_base);
	values[1] = CStringGetTextDatum(row_key);
	owner_spi_begin(&oc);
	for (int attempt = 0; key_id == 0; attempt++)
	{
		bytea	   *wrapped = palloc(VARHDRSZ + PII_WRAPPED_LEN);
		bytea	   *fp = palloc(VARHDRSZ + PII_FINGERPRINT_LEN);
		bool		isnull;

		keys_spi_latest(keys_sql("SELECT key_id FROM %s "
								 "WHERE subject_base = $1 AND row_key = $2 AND shredded_at IS NULL",
								 subject_keys_read),
						2, argtypes, values, true);
		if (SPI_processed == 1)
		{
			key_id = (uint32) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));
			break;
		}
		if (attempt == 3)
			elog(ERROR, "pii_guard: could not create a subject key");
		keys_require_master_key();
		if (XactReadOnly)
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot create a pii_guard subject key in a read-only transaction")));
		if (SPI_execute("SELECT pg_catalog.nextval('pii_guard.subject_key_ids')", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "pii_guard: subject key id sequence failed");
		values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		keys_new_wrapped((uint32) DatumGetInt64(values[2]), KEY_PURPOSE_SUBJECT, wrapped, fp);
		values[3] = PointerGetDatum(wrapped);
		values[4] = PointerGetDatum(fp);
		/* (a conflict: the subject got a key meanwhile, or the id is taken) */
		if (SPI_execute_with_args("INSERT INTO pii_guard.subject_keys "
								  "(key_id, subject_base, row_key, wrapped_key, master_key_fingerprint) "
								  "VALUES ($3, $1, $2, $4, $5) ON CONFLICT DO NOTHING RETURNING key_id",
								  5, argtypes, values, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not insert pii_guard subject key");
		if (SPI_processed == 1)
			key_id = (uint32) DatumGetInt64(values[2]);
	}
	owner_spi_end(&oc);
	return key_id;
}

PG_FUNCTION_INFO_V1(pii_guard_rotate_data_key);
PG_FUNCTION_INFO_V1(pii_guard_rewrap_data_keys);
PG_FUNCTION_INFO_V1(pii_guard_ensure_data_keys);
PG_FUNCTION_INFO_V1(pii_guard_master_key_info);
PG_FUNCTION_INFO_V1(pii_guard_data_keys_changed);

/*
 * SQL function: rotate_data_key() returns integer
 *
 * Makes a new encryption key active and retires the previous one; values
 * already written stay readable under their own key until re-encrypted.
 */
Datum
pii_guard_rotate_data_key(FunctionCallInfo fcinfo pg_attribute_unused())
{
	OwnerContext oc;
	uint32		ids[KEY_SLOTS];
	uint32		new_id;

	keys_require_master_key();
	owner_spi_begin(&oc);
	keys_lock_table();
	keys_active_ids(ids);
	if (ids[KEY_SLOT_BLIND] == 0)
		keys_create(KEY_PURPOSE_BLIND);
	new_id = keys_create(KEY_PURPOSE_ENCRYPT);
	owner_spi_end(&oc);
	keys_audit_admin("rotate_data_key", psprintf("data key %u is now the active encryption key", new_id));

	PG_RETURN_INT32((int32) new_id);
}

/*
 * Re-wrap one data key under the current master key, into wrapped
 * (PII_WRAPPED_LEN bytes).  The unwrapped key is wiped also when wrapping
 * raises.
 */
static void
keys_rewrap_one(uint32 key_id, char purpose, const uint8 *wrapped_old,
				const uint8 *fp_old, uint8 *wrapped)
{
	uint8		key[PII_KEY_LEN];

	PG_TRY();
	{
		keys_unwrap_row(key_id, purpose, wrapped_old, fp_old, key);
		crypto_wrap_key(master_current.key, key_id, purpose, key, wrapped);
	}
	PG_CATCH();
	{
		OPENSSL_cleanse(key, PII_KEY_LEN);
		PG_RE_THROW();
	}
	PG_END_TRY();
	OPENSSL_cleanse(key, PII_KEY_LEN);
}

/*
 * Re-wrap the keys a query lists (key id, purpose name, wrapped key,
 * fingerprint) that are not yet wrapped by the current master key, and
 * store each with update (parameters: key id, wrapped key, fingerprint).
 * Key ids are integer (data keys) or bigint (subject keys: int8_ids).
 * Runs in the owner's SPI bracket; returns how many.
 */
static int32
keys_rewrap_rows(const char *query, const char *update, const char *table, bool int8_ids)
{
	Oid			argtypes[3] = {int8_ids ? INT8OID : INT4OID, BYTEAOID, BYTEAOID};
	uint64		i;
	uint64		nrows;
	int32		count = 0;
	SPITupleTable *rows;

	keys_spi_latest(query, 0, NULL, NULL, true);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	for (i = 0; i < nrows; i++)
	{
		bool		isnull;
		uint32		key_id;
		char		purpose;
		uint8		wrapped_old[PII_WRAPPED_LEN];
		uint8		fp_old[PII_FINGERPRINT_LEN];
		bytea	   *wrapped = palloc(VARHDRSZ + PII_WRAPPED_LEN);
		bytea	   *fp = palloc(VARHDRSZ + PII_FINGERPRINT_LEN);
		Datum		values[3];

		key_id = int8_ids ?
			(uint32) DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull)) :
			(uint32) DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
		purpose = purpose_from_name(SPI_getvalue(rows->vals[i], rows->tupdesc, 2));
		if (!keys_spi_bytea(rows, i, 3, wrapped_old, PII_WRAPPED_LEN) ||
			!keys_spi_bytea(rows, i, 4, fp_old, PII_FINGERPRINT_LEN))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errhidestmt(true),
					 errmsg("pii_guard key %u cannot be unwrapped", key_id),
					 errdetail("Its wrapped key or fingerprint has the wrong length: the row in %s is damaged.",
							   table)));
		if (memcmp(fp_old, master_current.fingerprint, PII_FINGERPRINT_LEN) == 0)
			continue;

		SET_VARSIZE(wrapped, VARHDRSZ + PII_WRAPPED_LEN);
		SET_VARSIZE(fp, VARHDRSZ + PII_FINGERPRINT_LEN);
		keys_rewrap_one(key_id, purpose, wrapped_old, fp_old,
						(uint8 *) VARDATA(wrapped));
		memcpy(VARDATA(fp), master_current.fingerprint, PII_FINGERPRINT_LEN);

		values[0] = int8_ids ? Int64GetDatum((int64) key_id) : Int32GetDatum((int32) key_id);
		values[1] = PointerGetDatum(wrapped);
		values[2] = PointerGetDatum(fp);
		if (SPI_execute_with_args(update, 3, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not re-wrap pii_guard key %u", key_id);
		count++;
	}
	return count;
}

/*
 * SQL function: _ensure_data_keys() returns void
 *
 * An active key of every purpose, created now where missing (as the first
 * use would), so that no node ever needs to create one later: on Citus a
 * worker cannot, from inside the query on a shard where it decrypts.
 */
Datum
pii_guard_ensure_data_keys(FunctionCallInfo fcinfo pg_attribute_unused())
{
	uint32		ids[KEY_SLOTS];

	keys_ensure_active((const char[]) {KEY_PURPOSE_ENCRYPT, KEY_PURPOSE_BLIND,
									   KEY_PURPOSE_PSEUDONYM, KEY_PURPOSE_AUDIT, 0}, ids);
	PG_RETURN_VOID();
}

/*
 * SQL function: rewrap_data_keys() returns integer
 *
 * Re-wraps every data key and every live subject key not yet wrapped by
 * the current master key, using the previous master key; returns how many
 * were re-wrapped.
 */
Datum
pii_guard_rewrap_data_keys(FunctionCallInfo fcinfo pg_attribute_unused())
{
	OwnerContext oc;
	int32		count;
	int32		subject_count = 0;

	keys_require_master_key();
	owner_spi_begin(&oc);
	keys_lock_table();
	count = keys_rewrap_rows("SELECT key_id, purpose, wrapped_key, master_key_fingerprint "
							 "FROM pii_guard.data_keys ORDER BY key_id",
							 "UPDATE pii_guard.data_keys "
							 "SET wrapped_key = $2, master_key_fingerprint = $3 WHERE key_id = $1",
							 "pii_guard.data_keys", false);
	if (OidIsValid(pii_guard_relation_oid("subject_keys", true)))
		subject_count = keys_rewrap_rows("SELECT key_id, 'subject', wrapped_key, master_key_fingerprint "
										 "FROM pii_guard.subject_keys WHERE shredded_at IS NULL "
										 "ORDER BY key_id",
										 "UPDATE pii_guard.subject_keys "
										 "SET wrapped_key = $2, master_key_fingerprint = $3 WHERE key_id = $1",
										 "pii_guard.subject_keys", true);
	owner_spi_end(&oc);
	keys_audit_admin("rewrap_data_keys",
					 psprintf("%d data keys%s re-wrapped under the master key with fingerprint %s",
							  count,
							  subject_count > 0 ? psprintf(" and %d subject keys", subject_count) : "",
							  fingerprint_hex(master_current.fingerprint)));

	PG_RETURN_INT32(count + subject_count);
}

/*
 * SQL function: master_key_info(previous boolean,
 *		OUT available boolean, OUT fingerprint bytea, OUT problem text)
 *
 * Whether the (previous) master key is loaded, its fingerprint, and why not.
 */
Datum
pii_guard_master_key_info(PG_FUNCTION_ARGS)
{
	const MasterKey *mk = PG_GETARG_BOOL(0) ? &master_previous : &master_current;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	values[0] = BoolGetDatum(mk->loaded);
	if (mk->loaded)
	{
		bytea	   *fp = palloc(VARHDRSZ + PII_FINGERPRINT_LEN);

		SET_VARSIZE(fp, VARHDRSZ + PII_FINGERPRINT_LEN);
		memcpy(VARDATA(fp), mk->fingerprint, PII_FINGERPRINT_LEN);
		values[1] = PointerGetDatum(fp);
		nulls[2] = true;
	}
	else
	{
		nulls[1] = true;
		if (mk->problem[0] != '\0')
			values[2] = CStringGetTextDatum(mk->problem);
		else
			nulls[2] = true;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * SQL function: data_keys_changed() returns trigger
 *
 * Statement trigger on pii_guard.data_keys: every backend drops its cached
 * keys when this transaction commits.
 */
Datum
pii_guard_data_keys_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "data_keys_changed must be called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
