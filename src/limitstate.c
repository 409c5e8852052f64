/*-------------------------------------------------------------------------
 *
 * limitstate.c
 *		The shared state behind the export-row limits: every (database,
 *		role)'s rolling day, and the rows each export approval has carried;
 *		how both survive a restart, a dump and a reinstall.
 *
 * limits.c decides what counts and when to refuse; this file keeps the
 * counters that must hold across sessions and processes.
 *
 * Day window.  Per (database, session role): 25 hourly buckets, each
 * tagged with the hour it counts (hours since 2000-01-01 UTC, from the
 * current time when the row is produced).  A bucket counts while its hour is one of
 * the last 25 including the current one, so a row counts for at least 24
 * and at most 25 hours: a budget spent at 10:59 comes back at 11:00 the
 * next day, never earlier.  An entry whose buckets are all outside the
 * window is dead and is evicted when the table is full.
 *
 * Approval use.  Keyed by (database, grant id, the grant's created_at): a
 * grant id alone is reused after DROP and CREATE EXTENSION, created_at is
 * not.  Each entry also holds the approval's size and end, so that a row
 * is taken from it under the lock, atomically with the check that rows are
 * left and that it has not ended (by the current time, not the
 * statement's).  The audit worker of each database copies what its
 * approvals have used into pii_guard.export_grant_use (dumped with the
 * policy), marks revoked approvals, and drops the entries of approvals that
 * ended more than a minute ago, or that it has not found a minute after
 * their first use (their grant is gone, or was never committed; it reads
 * grants with a snapshot taken after copying the entries, so a grant a
 * backend saw committed is always found) -- so a restored or
 * replicated database starts from what its approvals had used, not from
 * zero.  Entries of 0.1's state file have no created_at: they are kept
 * under DT_NOBEGIN and adopted by the first use of the approval with that
 * id.
 *
 * Capacity.  pii_guard.max_export_counters day counters and
 * pii_guard.max_export_approvals approvals in use, cluster-wide.  When a
 * new entry does not fit the statement fails with SQLSTATE 53400: a limit
 * that cannot be recorded is not applied as if it were unlimited.
 *
 * Locking.  limits_shared->lock guards both tables: LW_SHARED to read,
 * LW_EXCLUSIVE to change; never held across file I/O or SPI.
 * limits_shared->persist_lock serialises writers of limits.state (every
 * database's audit worker calls limits_persist), so that a snapshot never
 * overwrites a newer one.
 *
 * Persistence.  $PGDATA/pg_pii_guard/limits.state, written by the audit
 * workers when something changed (every cycle, about 0.2 s): the counters
 * are copied under the lock and written outside it, to a temporary file,
 * fsync'ed and renamed; the postmaster reads it back when it creates
 * shared memory.  What a crash (or immediate shutdown) loses is what
 * changed since the last write.  The format: uint32 magic "PGL3", uint32
 * day entries, uint32 approval entries; each day entry uint32 database,
 * uint32 role, then 25 pairs of int64 (hour, rows); each approval entry
 * uint32 database, uint32 revoked, int64 grant id, created_at, rows,
 * valid_until, used; then the CRC-32C of everything before it.  All in the
 * server's byte order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "pii_guard.h"

#define LIMITS_STATE_DIR	"pg_pii_guard"
#define LIMITS_STATE_FILE	"pg_pii_guard/limits.state"
#define LIMITS_STATE_TMP	"pg_pii_guard/limits.state.tmp"
#define LIMITS_MAGIC_V2		0x50474c32	/* "PGL2": 0.1's raw structs */
#define LIMITS_MAGIC		0x50474c33	/* "PGL3" */
#define LIMITS_V2_HOURS		24
#define LIMITS_GRACE		(60 * USECS_PER_SEC)

int			pii_guard_max_export_counters = 4096;
int			pii_guard_max_export_approvals = 4096;

typedef struct DayKey
{
	Oid			dboid;
	Oid			roleid;
} DayKey;

typedef struct DayCounter
{
	DayKey		key;
	int64		hour[LIMITS_BUCKETS];	/* the hour each bucket counts */
	int64		rows[LIMITS_BUCKETS];
} DayCounter;

typedef struct GrantKey
{
	Oid			dboid;
	int64		grant_id;
	TimestampTz created_at;		/* DT_NOBEGIN: from 0.1's state file */
} GrantKey;

typedef struct GrantUse
{
	GrantKey	key;			/* hash key; padding zeroed */
	int64		rows;
	TimestampTz valid_until;
	int64		used;
	TimestampTz first_use;		/* when this entry was made */
	bool		revoked;
} GrantUse;

typedef struct LimitsShared
{
	LWLock	   *lock;			/* both tables */
	LWLock	   *persist_lock;	/* one writer of limits.state at a time */
	uint64		changes;		/* bumped by every change (under lock) */
	uint64		persisted;		/* changes limits.state holds (persist_lock) */
} LimitsShared;

static LimitsShared *limits_shared = NULL;
static HTAB *day_counters = NULL;
static HTAB *grant_uses = NULL;

/* An approval use key, padding zeroed (the hash compares bytes). */
static void
limits_grant_key(GrantKey *key, int64 grant_id, TimestampTz created_at)
{
	memset(key, 0, sizeof(*key));
	key->dboid = MyDatabaseId;
	key->grant_id = grant_id;
	key->created_at = created_at;
}

Size
limits_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(LimitsShared));

	size = add_size(size, hash_estimate_size(pii_guard_max_export_counters, sizeof(DayCounter)));
	size = add_size(size, hash_estimate_size(pii_guard_max_export_approvals, sizeof(GrantUse)));
	return size;
}

void
limits_shmem_request(void)
{
	RequestAddinShmemSpace(limits_shmem_size());
	RequestNamedLWLockTranche("pii_guard limits", 2);
}

/* The hour that "now" counts in. */
static int64
limits_now_hour(void)
{
	return GetCurrentTimestamp() / USECS_PER_HOUR;
}

/* Does any bucket of dc still count at hour now? */
static bool
limits_day_alive(const DayCounter *dc, int64 now)
{
	int			i;

	for (i = 0; i < LIMITS_BUCKETS; i++)
		if (dc->rows[i] > 0 && dc->hour[i] > now - LIMITS_BUCKETS)
			return true;
	return false;
}

/* Put one row count into its bucket (loading, and counting). */
static void
limits_day_put(DayCounter *dc, int64 hour, int64 rows)
{
	int			slot = (int) (hour % LIMITS_BUCKETS);

	if (dc->hour[slot] != hour)
	{
		if (dc->hour[slot] > hour)
			return;				/* an older hour than the bucket holds */
		dc->hour[slot] = hour;
		dc->rows[slot] = 0;
	}
	dc->rows[slot] += rows;
}

/* Read fields from the state file; false at its end. */
static bool
limits_read(FILE *f, void *p, size_t len, pg_crc32c *crc)
{
	if (fread(p, len, 1, f) != 1)
		return false;
	if (crc)
		COMP_CRC32C(*crc, p, len);
	return true;
}

/* Read 0.1's state file (raw structs, 24 buckets). */
static void
limits_load_v2(FILE *f)
{
	int32		n;
	int			i;
	int			j;
	struct
	{
		DayKey		key;
		int64		hour[LIMITS_V2_HOURS];
		int64		rows[LIMITS_V2_HOURS];
	}			old_day;
	struct
	{
		Oid			dboid;
		int64		grant_id;
		int64		used;
	}			old_grant;

	if (!limits_read(f, &n, sizeof(n), NULL))
		return;
	for (i = 0; i < n; i++)
	{
		DayCounter *dc;
		bool		found;

		if (!limits_read(f, &old_day, sizeof(old_day), NULL))
			return;
		dc = hash_search(day_counters, &old_day.key, HASH_ENTER_NULL, &found);
		if (dc == NULL)
			continue;
		if (!found)
		{
			memset(dc->hour, 0, sizeof(dc->hour));
			memset(dc->rows, 0, sizeof(dc->rows));
		}
		for (j = 0; j < LIMITS_V2_HOURS; j++)
			limits_day_put(dc, old_day.hour[j], old_day.rows[j]);
	}
	if (!limits_read(f, &n, sizeof(n), NULL))
		return;
	for (i = 0; i < n; i++)
	{
		GrantKey	key;
		GrantUse   *gu;

		if (!limits_read(f, &old_grant, sizeof(old_grant), NULL))
			return;
		memset(&key, 0, sizeof(key));
		key.dboid = old_grant.dboid;
		key.grant_id = old_grant.grant_id;
		key.created_at = DT_NOBEGIN;
		gu = hash_search(grant_uses, &key, HASH_ENTER_NULL, NULL);
		if (gu == NULL)
			continue;
		gu->rows = PG_INT64_MAX;
		gu->valid_until = DT_NOEND;
		gu->used = old_grant.used;
		gu->first_use = GetCurrentTimestamp();
		gu->revoked = false;
	}
}

/*
 * Read the persisted counters (postmaster, when it creates shared memory).
 * A damaged file is reported and ignored.
 */
static void
limits_load_state(void)
{
	FILE	   *f = AllocateFile(LIMITS_STATE_FILE, PG_BINARY_R);
	pg_crc32c	crc;
	pg_crc32c	stored;
	uint32		magic;
	uint32		nday;
	uint32		ngrant;
	uint32		i;
	int			j;

	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %m", LIMITS_STATE_FILE)));
		return;
	}
	INIT_CRC32C(crc);
	if (!limits_read(f, &magic, sizeof(magic), &crc))
		goto bad;
	if (magic == LIMITS_MAGIC_V2)
	{
		limits_load_v2(f);
		FreeFile(f);
		return;
	}
	if (magic != LIMITS_MAGIC || !limits_read(f, &nday, sizeof(nday), &crc) ||
		!limits_read(f, &ngrant, sizeof(ngrant), &crc))
		goto bad;
	for (i = 0; i < nday; i++)
	{
		DayKey		key;
		int64		hour[LIMITS_BUCKETS];
		int64		rows[LIMITS_BUCKETS];
		DayCounter *dc;
		bool		found;

		memset(&key, 0, sizeof(key));
		if (!limits_read(f, &key.dboid, sizeof(uint32), &crc) ||
			!limits_read(f, &key.roleid, sizeof(uint32), &crc))
			goto bad;
		for (j = 0; j < LIMITS_BUCKETS; j++)
			if (!limits_read(f, &hour[j], sizeof(int64), &crc) ||
				!limits_read(f, &rows[j], sizeof(int64), &crc))
				goto bad;
		dc = hash_search(day_counters, &key, HASH_ENTER_NULL, &found);
		if (dc == NULL)
			continue;
		if (!found)
		{
			memset(dc->hour, 0, sizeof(dc->hour));
			memset(dc->rows, 0, sizeof(dc->rows));
		}
		for (j = 0; j < LIMITS_BUCKETS; j++)
			limits_day_put(dc, hour[j], rows[j]);
	}
	for (i = 0; i < ngrant; i++)
	{
		uint32		dboid;
		uint32		revoked;
		int64		v[5];
		GrantKey	key;
		GrantUse   *gu;

		if (!limits_read(f, &dboid, sizeof(dboid), &crc) ||
			!limits_read(f, &revoked, sizeof(revoked), &crc) ||
			!limits_read(f, v, sizeof(v), &crc))
			goto bad;
		memset(&key, 0, sizeof(key));
		key.dboid = dboid;
		key.grant_id = v[0];
		key.created_at = v[1];
		gu = hash_search(grant_uses, &key, HASH_ENTER_NULL, NULL);
		if (gu == NULL)
			continue;
		gu->rows = v[2];
		gu->valid_until = v[3];
		gu->used = v[4];
		gu->first_use = GetCurrentTimestamp();
		gu->revoked = revoked != 0;
	}
	FIN_CRC32C(crc);
	if (!limits_read(f, &stored, sizeof(stored), NULL) || !EQ_CRC32C(crc, stored))
		goto bad;
	FreeFile(f);
	return;

bad:
	FreeFile(f);
	ereport(LOG,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("ignoring damaged pii_guard export counters in \"%s\"", LIMITS_STATE_FILE),
			 errdetail("Counts read before the damage are kept; the rest of the day's usage is lost.")));
}

/* shmem_startup_hook part: attach to (or create) the counters. */
void
limits_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	limits_shared = ShmemInitStruct("pii_guard limits", sizeof(LimitsShared), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("pii_guard limits");

		limits_shared->lock = &locks[0].lock;
		limits_shared->persist_lock = &locks[1].lock;
		limits_shared->changes = 0;
		limits_shared->persisted = 0;
	}
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(DayKey);
	ctl.entrysize = sizeof(DayCounter);
	day_counters = ShmemInitHash("pii_guard day counters",
								 pii_guard_max_export_counters, pii_guard_max_export_counters,
								 &ctl, HASH_ELEM | HASH_BLOBS);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(GrantKey);
	ctl.entrysize = sizeof(GrantUse);
	grant_uses = ShmemInitHash("pii_guard export approval use",
							   pii_guard_max_export_approvals, pii_guard_max_export_approvals,
							   &ctl, HASH_ELEM | HASH_BLOBS);
	if (!found && !IsUnderPostmaster)
		limits_load_state();
	LWLockRelease(AddinShmemInitLock);
}

/* Append the counters to buf (under the lock, shared). */
static void
limits_serialize(StringInfo buf)
{
	HASH_SEQ_STATUS status;
	DayCounter *dc;
	GrantUse   *gu;
	uint32		magic = LIMITS_MAGIC;
	uint32		nday = 0;
	uint32		ngrant = 0;
	int64		now = limits_now_hour();
	int			counts_at;
	int			i;
	pg_crc32c	crc;

	appendBinaryStringInfo(buf, (char *) &magic, sizeof(magic));
	counts_at = buf->len;
	appendBinaryStringInfo(buf, (char *) &nday, sizeof(nday));
	appendBinaryStringInfo(buf, (char *) &ngrant, sizeof(ngrant));
	hash_seq_init(&status, day_counters);
	while ((dc = hash_seq_search(&status)) != NULL)
	{
		uint32		ids[2] = {dc->key.dboid, dc->key.roleid};

		if (!limits_day_alive(dc, now))
			continue;
		appendBinaryStringInfo(buf, (char *) ids, sizeof(ids));
		for (i = 0; i < LIMITS_BUCKETS; i++)
		{
			appendBinaryStringInfo(buf, (char *) &dc->hour[i], sizeof(int64));
			appendBinaryStringInfo(buf, (char *) &dc->rows[i], sizeof(int64));
		}
		nday++;
	}
	hash_seq_init(&status, grant_uses);
	while ((gu = hash_seq_search(&status)) != NULL)
	{
		uint32		head[2] = {gu->key.dboid, gu->revoked ? 1 : 0};
		int64		v[5] = {gu->key.grant_id, gu->key.created_at, gu->rows,
		gu->valid_until, gu->used};

		appendBinaryStringInfo(buf, (char *) head, sizeof(head));
		appendBinaryStringInfo(buf, (char *) v, sizeof(v));
		ngrant++;
	}
	memcpy(buf->data + counts_at, &nday, sizeof(nday));
	memcpy(buf->data + counts_at + sizeof(nday), &ngrant, sizeof(ngrant));
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf->data, buf->len);
	FIN_CRC32C(crc);
	appendBinaryStringInfo(buf, (char *) &crc, sizeof(crc));
}

/*
 * Write the counters to disk if they changed (the audit workers call this
 * every cycle): copied under the lock, written outside it to a temporary
 * file, fsync'ed and renamed.  Failures are logged; the next call retries.
 */
void
limits_persist(void)
{
	StringInfoData buf;
	uint64		changes;
	int			fd;
	bool		ok = false;

	if (limits_shared == NULL)
		return;
	LWLockAcquire(limits_shared->persist_lock, LW_EXCLUSIVE);
	LWLockAcquire(limits_shared->lock, LW_SHARED);
	changes = limits_shared->changes;
	if (changes == limits_shared->persisted)
	{
		LWLockRelease(limits_shared->lock);
		LWLockRelease(limits_shared->persist_lock);
		return;
	}
	initStringInfo(&buf);
	limits_serialize(&buf);
	LWLockRelease(limits_shared->lock);

	(void) MakePGDirectory(LIMITS_STATE_DIR);
	fd = OpenTransientFile(LIMITS_STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("could not create \"%s\": %m", LIMITS_STATE_TMP)));
	else
	{
		errno = 0;
		if (write(fd, buf.data, buf.len) != buf.len)
		{
			if (errno == 0)
				errno = ENOSPC;
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not write \"%s\": %m", LIMITS_STATE_TMP)));
		}
		else if (pg_fsync(fd) != 0)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not fsync \"%s\": %m", LIMITS_STATE_TMP)));
		else
			ok = true;
		if (CloseTransientFile(fd) != 0)
		{
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not close \"%s\": %m", LIMITS_STATE_TMP)));
			ok = false;
		}
		if (ok && durable_rename(LIMITS_STATE_TMP, LIMITS_STATE_FILE, LOG) != 0)
			ok = false;
	}
	if (ok)
		limits_shared->persisted = changes;
	LWLockRelease(limits_shared->persist_lock);
	pfree(buf.data);
}

/* Remove day counters with nothing left in the window (under the lock). */
static int
limits_evict_days(int64 now)
{
	HASH_SEQ_STATUS status;
	DayCounter *dc;
	int			n = 0;

	hash_seq_init(&status, day_counters);
	while ((dc = hash_seq_search(&status)) != NULL)
		if (!limits_day_alive(dc, now))
		{
			(void) hash_search(day_counters, &dc->key, HASH_REMOVE, NULL);
			n++;
		}
	return n;
}

/* Rows counted in the window of dc at hour now. */
static int64
limits_day_sum(const DayCounter *dc, int64 now)
{
	int64		total = 0;
	int			i;

	for (i = 0; i < LIMITS_BUCKETS; i++)
		if (dc->hour[i] > now - LIMITS_BUCKETS)
			total += dc->rows[i];
	return total;
}

/*
 * Count one row for (this database, roleid) unless the window already holds
 * per_day rows (per_day < 0: no limit, always count).  Returns whether the
 * row was counted; *total is the window's rows before it.
 */
bool
limits_day_take(Oid roleid, int64 per_day, int64 *total)
{
	DayKey		key;
	DayCounter *dc;
	int64		now = limits_now_hour();
	bool		found = false;

	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.roleid = roleid;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	dc = hash_search(day_counters, &key, HASH_FIND, NULL);
	if (dc == NULL)
	{
		if (hash_get_num_entries(day_counters) >= pii_guard_max_export_counters)
			(void) limits_evict_days(now);
		if (hash_get_num_entries(day_counters) < pii_guard_max_export_counters)
			dc = hash_search(day_counters, &key, HASH_ENTER_NULL, &found);
		if (dc == NULL)
		{
			LWLockRelease(limits_shared->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many roles with pii_guard export counters"),
					 errdetail("All %d counters hold rows of the last 24 hours.",
							   pii_guard_max_export_counters),
					 errhint("Raise pii_guard.max_export_counters (this needs a restart).")));
		}
		memset(dc->hour, 0, sizeof(dc->hour));
		memset(dc->rows, 0, sizeof(dc->rows));
	}
	*total = limits_day_sum(dc, now);
	if (per_day >= 0 && *total + 1 > per_day)
	{
		LWLockRelease(limits_shared->lock);
		return false;
	}
	limits_day_put(dc, now, 1);
	limits_shared->changes++;
	LWLockRelease(limits_shared->lock);
	return true;
}

/*
 * Add n rows to (this database, roleid)'s day regardless of its limit;
 * for probes, at abort (views.c): never raises, and when no counter can
 * be had the rows are not counted.  True if they were.
 */
bool
limits_day_add(Oid roleid, int64 n)
{
	DayKey		key;
	DayCounter *dc;
	int64		now = limits_now_hour();
	bool		found = false;

	if (limits_shared == NULL)
		return false;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.roleid = roleid;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	dc = hash_search(day_counters, &key, HASH_FIND, NULL);
	if (dc == NULL && hash_get_num_entries(day_counters) < pii_guard_max_export_counters)
	{
		dc = hash_search(day_counters, &key, HASH_ENTER_NULL, &found);
		if (dc != NULL)
		{
			memset(dc->hour, 0, sizeof(dc->hour));
			memset(dc->rows, 0, sizeof(dc->rows));
		}
	}
	if (dc != NULL)
	{
		limits_day_put(dc, now, n);
		limits_shared->changes++;
	}
	LWLockRelease(limits_shared->lock);
	return dc != NULL;
}

/* Rows counted for (this database, roleid) in the window. */
int64
limits_day_total(Oid roleid)
{
	DayKey		key;
	DayCounter *dc;
	int64		total = 0;

	if (limits_shared == NULL)
		return 0;
	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.roleid = roleid;
	LWLockAcquire(limits_shared->lock, LW_SHARED);
	dc = hash_search(day_counters, &key, HASH_FIND, NULL);
	if (dc != NULL)
		total = limits_day_sum(dc, limits_now_hour());
	LWLockRelease(limits_shared->lock);
	return total;
}

/* Rows approval a has carried (shared memory, or what the table says). */
int64
limits_grant_used(const LimitsApproval *a)
{
	GrantKey	key;
	GrantUse   *gu;
	int64		used = a->stored_used;

	if (limits_shared == NULL)
		return used;
	LWLockAcquire(limits_shared->lock, LW_SHARED);
	limits_grant_key(&key, a->grant_id, a->created_at);
	gu = hash_search(grant_uses, &key, HASH_FIND, NULL);
	if (gu == NULL)
	{
		limits_grant_key(&key, a->grant_id, DT_NOBEGIN);
		gu = hash_search(grant_uses, &key, HASH_FIND, NULL);
	}
	if (gu != NULL)
		used = Max(used, gu->used);
	LWLockRelease(limits_shared->lock);
	return used;
}

/*
 * Take one row from the first of the n approvals that has rows left and has
 * not ended or been revoked, in one critical section, so that concurrent
 * sessions cannot overshoot an approval.  Returns its index, or -1.
 */
int
limits_grant_take(const LimitsApproval *a, int n)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (n == 0)
		return -1;
	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		GrantKey	key;
		GrantUse   *gu;
		bool		found;

		if (now >= a[i].valid_until || a[i].stored_used >= a[i].rows)
			continue;
		limits_grant_key(&key, a[i].grant_id, a[i].created_at);
		gu = hash_search(grant_uses, &key, HASH_FIND, NULL);
		if (gu == NULL)
		{
			GrantKey	legacy;
			GrantUse   *old;
			int64		used = a[i].stored_used;

			limits_grant_key(&legacy, a[i].grant_id, DT_NOBEGIN);
			old = hash_search(grant_uses, &legacy, HASH_FIND, NULL);
			if (old != NULL)
			{
				/* 0.1 counted this approval's use: adopt it. */
				used = Max(used, old->used);
				(void) hash_search(grant_uses, &legacy, HASH_REMOVE, NULL);
			}
			if (hash_get_num_entries(grant_uses) < pii_guard_max_export_approvals)
				gu = hash_search(grant_uses, &key, HASH_ENTER_NULL, &found);
			if (gu == NULL)
			{
				LWLockRelease(limits_shared->lock);
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("too many pii_guard export approvals in use"),
						 errdetail("The use of %d export approvals that have not ended is being counted.",
								   pii_guard_max_export_approvals),
						 errhint("Raise pii_guard.max_export_approvals (this needs a restart), or revoke approvals that are no longer needed.")));
			}
			gu->rows = a[i].rows;
			gu->valid_until = a[i].valid_until;
			gu->used = used;
			gu->first_use = now;
			gu->revoked = false;
		}
		if (gu->revoked || gu->used >= gu->rows || now >= gu->valid_until)
			continue;
		gu->used++;
		limits_shared->changes++;
		LWLockRelease(limits_shared->lock);
		return i;
	}
	LWLockRelease(limits_shared->lock);
	return -1;
}

/* A snapshot of one approval use, for the worker's sync. */
typedef struct GrantSnap
{
	GrantKey	key;
	int64		used;
	TimestampTz valid_until;
	TimestampTz first_use;
} GrantSnap;

/*
 * The sync's SQL, in a subtransaction so that a failure here never costs
 * the audit worker its transaction.  Records what this database's
 * approvals used, and returns which of them are revoked or gone.
 */
static void
limits_sync_sql(GrantSnap *snaps, int n, bool *revoked, bool *gone)
{
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *created = palloc(sizeof(Datum) * n);
	Datum	   *used = palloc(sizeof(Datum) * n);
	Oid			argtypes[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID};
	Datum		values[3];
	uint64		r;
	int			i;

	for (i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(snaps[i].key.grant_id);
		created[i] = TimestampTzGetDatum(snaps[i].key.created_at);
		used[i] = Int64GetDatum(snaps[i].used);
	}
	values[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[1] = PointerGetDatum(construct_array(created, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[2] = PointerGetDatum(construct_array(used, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	if (SPI_execute_with_args("INSERT INTO pii_guard.export_grant_use AS u (grant_id, created_at, used) "
							  "SELECT g.grant_id, g.created_at, s.used "
							  "  FROM unnest($1, $2, $3) AS s(grant_id, created_at, used) "
							  "  JOIN pii_guard.grants g ON g.grant_id = s.grant_id AND g.created_at = s.created_at "
							  "ON CONFLICT (grant_id) DO UPDATE "
							  "  SET created_at = excluded.created_at, used = excluded.used "
							  "  WHERE u.created_at <> excluded.created_at OR u.used < excluded.used",
							  3, argtypes, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record pii_guard export approval use");
	/* Legacy entries (no created_at) match by id; they end with the grant. */
	if (SPI_execute_with_args("SELECT s.i, g.grant_id IS NULL, g.revoked_at IS NOT NULL "
							  "  FROM unnest($1, $2) WITH ORDINALITY AS s(grant_id, created_at, i) "
							  "  LEFT JOIN pii_guard.grants g ON g.grant_id = s.grant_id "
							  "       AND (g.created_at = s.created_at OR "
							  "            (s.created_at = '-infinity' AND "
							  "             g.valid_until > pg_catalog.now() - interval '1 minute')) "
							  "       AND g.kind = 'export' "
							  " WHERE g.grant_id IS NULL OR g.revoked_at IS NOT NULL",
							  2, argtypes, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pii_guard export approvals");
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		idx = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull)) - 1;

		if (idx < 0 || idx >= n)
			continue;
		gone[idx] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
		revoked[idx] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 3, &isnull));
	}
}

/*
 * Audit worker, inside its transaction: copy what this database's
 * approvals have used into pii_guard.export_grant_use (so that dumps and
 * replicas carry it), mark revoked ones, and forget approvals that ended
 * more than a minute ago or no longer exist.  Runs when the counters
 * changed, and every 50th call regardless.
 */
void
limits_sync_grant_use(void)
{
	static uint64 last_changes = 0;
	static int	calls = 0;
	HASH_SEQ_STATUS status;
	GrantUse   *gu;
	GrantSnap  *snaps;
	bool	   *revoked;
	bool	   *gone;
	int			n = 0;
	int			max;
	int			i;
	uint64		changes;
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	if (limits_shared == NULL ||
		!OidIsValid(pii_guard_relation_oid("export_grant_use", true)))
		return;
	LWLockAcquire(limits_shared->lock, LW_SHARED);
	changes = limits_shared->changes;
	if (changes == last_changes && ++calls % 50 != 0)
	{
		LWLockRelease(limits_shared->lock);
		return;
	}
	max = (int) hash_get_num_entries(grant_uses);
	snaps = palloc(sizeof(GrantSnap) * Max(max, 1));
	hash_seq_init(&status, grant_uses);
	while ((gu = hash_seq_search(&status)) != NULL)
	{
		if (gu->key.dboid != MyDatabaseId || n >= max)
			continue;
		snaps[n].key = gu->key;
		snaps[n].used = gu->used;
		snaps[n].valid_until = gu->valid_until;
		snaps[n].first_use = gu->first_use;
		n++;
	}
	LWLockRelease(limits_shared->lock);
	last_changes = changes;
	if (n == 0)
		return;

	revoked = palloc0(sizeof(bool) * n);
	gone = palloc0(sizeof(bool) * n);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		limits_sync_sql(snaps, n, revoked, gone);
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("could not record the use of pii_guard export approvals: %s", edata->message)));
		FreeErrorData(edata);
		last_changes = 0;		/* try again next time */
		return;
	}
	PG_END_TRY();

	LWLockAcquire(limits_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		bool		ended = now > snaps[i].valid_until &&
		now - snaps[i].valid_until > LIMITS_GRACE;

		/*
		 * A grant is gone only if it still is a while after its first use:
		 * the transaction that inserted it may not have committed yet.
		 */
		if (gone[i] && now - snaps[i].first_use <= LIMITS_GRACE)
			continue;
		if (gone[i] || ended)
		{
			(void) hash_search(grant_uses, &snaps[i].key, HASH_REMOVE, NULL);
			limits_shared->changes++;
		}
		else if (revoked[i])
		{
			gu = hash_search(grant_uses, &snaps[i].key, HASH_FIND, NULL);
			if (gu != NULL && !gu->revoked)
			{
				gu->revoked = true;
				limits_shared->changes++;
			}
		}
	}
	LWLockRelease(limits_shared->lock);
}
