/*-------------------------------------------------------------------------
 *
 * audit_events.c
 *		The producers of audit events: denials (pii_guard's own and the
 *		privilege refusals PostgreSQL raises), the read notes reveal()
 *		makes and the read events they become, the write trigger and the
 *		write events of a masking view's trigger path, and the SQL-callable
 *		admin and deny events.  What an event holds and how it is stored is
 *		audit.c's; how it reaches the worker, audit_queue.c's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/ip.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "optimizer/optimizer.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "pii_guard.h"

/* A refusal on its way up has been recorded (see audit_refusal_seen). */
static bool refusal_recorded = false;

/*
 * Record a denial; it reaches the audit log even though the statement that
 * caused it is about to fail.
 */
void
audit_deny(const char *relation, const char *operation, const char *detail)
{
	AuditEvent	ev;

	audit_event_init(&ev, AUDIT_DENY);
	AUDIT_SET(&ev, relation, relation);
	AUDIT_SET(&ev, operation, operation);
	AUDIT_SET(&ev, detail, detail);
	audit_submit(&ev, false);
	/* (the error that follows is this refusal: not recorded again) */
	refusal_recorded = true;
}

/*
 * Refusals by PostgreSQL's own privilege checks ("permission denied for
 * table profiles", "must be owner of function protect_column") are deny
 * events too, when they concern pii_guard's objects or a protected
 * relation -- whatever the object, not a list of them.
 *
 * They are seen on the error's way up, where no catalog may be read: in
 * the executor and utility hooks' error paths (so that a refusal that an
 * exception block then catches is recorded too) and in the log hook (the
 * rest, such as a refusal while a statement is parsed).  The backend
 * queues the object's kind and name as PostgreSQL's message gives them
 * (AUDIT_REFUSAL; the kind's class and relkind in columns_clear); the worker
 * resolves them (audit_resolve_refusals): an event on pii_guard's objects
 * or a protected relation or its masking view becomes a deny event naming
 * the object schema-qualified, the others are dropped.
 *
 * A refusal is recorded once, although its error passes several hooks
 * (and pii_guard's own refusals were recorded by audit_deny before they
 * were raised): the flag is set when one is recorded and cleared when an
 * error can no longer be on its way up -- a subtransaction or
 * transaction end, and a new statement.
 */

/* The kinds of object PostgreSQL's privilege messages name that can be ours. */
static const struct
{
	const char *word;			/* as in the message: "permission denied for <word> %s" */
	char		cls;			/* r relation, f routine, n schema, t type */
	char		relkind;		/* a relation's, when the word says */
}			refusal_kinds[] = {
	{"table", 'r', RELKIND_RELATION}, {"view", 'r', RELKIND_VIEW},
	{"materialized view", 'r', RELKIND_MATVIEW}, {"sequence", 'r', RELKIND_SEQUENCE},
	{"foreign table", 'r', RELKIND_FOREIGN_TABLE}, {"index", 'r', RELKIND_INDEX},
	{"function", 'f', 0}, {"procedure", 'f', 0}, {"routine", 'f', 0}, {"aggregate", 'f', 0},
	{"schema", 'n', 0}, {"type", 't', 0}, {"domain", 't', 0}
};

/* The form of a column privilege refusal (its relation is the object). */
#define REFUSAL_COLUMN_FORM "column \"%s\" of relation \"%s\""

void
audit_refusal_forget(void)
{
	refusal_recorded = false;
}

/*
 * The nargs (1 or 2) %s arguments by which message was formatted from fmt,
 * into args (each of size bytes); false if message is not of that form.
 */
static bool
audit_refusal_args(const char *fmt, const char *message, int nargs,
				   char args[][2 * NAMEDATALEN], int size)
{
	const char *seg[3];
	int			seglen[3];
	const char *m = message;
	int			mlen = strlen(message);
	int			i;

	/* The format's text around its %s. */
	seg[0] = fmt;
	for (i = 0; i < nargs; i++)
	{
		const char *pct = strstr(seg[i], "%s");

		if (pct == NULL)
			return false;
		seglen[i] = pct - seg[i];
		seg[i + 1] = pct + 2;
	}
	seglen[nargs] = strlen(seg[nargs]);
	if (strstr(seg[nargs], "%") != NULL ||
		mlen < seglen[0] + seglen[nargs] ||
		strncmp(m, seg[0], seglen[0]) != 0 ||
		strcmp(m + mlen - seglen[nargs], seg[nargs]) != 0)
		return false;
	m += seglen[0];
	for (i = 0; i < nargs; i++)
	{
		const char *end = message + mlen - seglen[nargs];
		int			len;

		if (i < nargs - 1)
		{
			char		sep[64];

			if (seglen[i + 1] == 0 || seglen[i + 1] >= (int) sizeof(sep))
				return false;
			memcpy(sep, seg[i + 1], seglen[i + 1]);
			sep[seglen[i + 1]] = '\0';
			end = strstr(m, sep);
			if (end == NULL)
				return false;
		}
		len = end - m;
		if (len <= 0 || len >= size)
			return false;
		memcpy(args[i], m, len);
		args[i][len] = '\0';
		m = end + (i < nargs - 1 ? seglen[i + 1] : 0);
	}
	return true;
}

/*
 * An error on its way up: a privilege refusal by PostgreSQL's checks is
 * queued for the worker to resolve, once.  command is the statement that
 * was refused (NULL: unknown).  Reads no catalog: safe on an error path.
 */
void
audit_refusal_seen(const ErrorData *ed, const char *command)
{
	static const char *const prefixes[] = {"permission denied for ", "must be owner of "};
	const char *rest = NULL;
	const char *word = NULL;
	bool		owner = false;
	char		cls = 0;
	char		relkind = 0;
	int			nargs = 1;
	const char *fmt;
	char		args[2][2 * NAMEDATALEN];
	AuditEvent	ev;
	int			i;

	if (refusal_recorded || ed->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE ||
		ed->message_id == NULL || ed->message == NULL || IsParallelWorker())
		return;
	for (i = 0; i < (int) lengthof(prefixes) && rest == NULL; i++)
	{
		if (strncmp(ed->message_id, prefixes[i], strlen(prefixes[i])) == 0)
		{
			rest = ed->message_id + strlen(prefixes[i]);
			owner = i == 1;
		}
	}
	if (rest == NULL)
		return;
	if (!owner && strcmp(rest, REFUSAL_COLUMN_FORM) == 0)
	{
		word = "column";
		cls = 'r';
		nargs = 2;
	}
	for (i = 0; i < (int) lengthof(refusal_kinds) && cls == 0; i++)
	{
		int			len = strlen(refusal_kinds[i].word);

		if (strncmp(rest, refusal_kinds[i].word, len) == 0 && strcmp(rest + len, " %s") == 0)
		{
			word = refusal_kinds[i].word;
			cls = refusal_kinds[i].cls;
			relkind = refusal_kinds[i].relkind;
		}
	}
	if (cls == 0)
		return;
	/* The message is in the server's language: match its own format. */
	fmt = dgettext(ed->domain, ed->message_id);
	if (!audit_refusal_args(fmt, ed->message, nargs, args, sizeof(args[0])) &&
		(fmt == ed->message_id ||
		 !audit_refusal_args(ed->message_id, ed->message, nargs, args, sizeof(args[0]))))
		return;

	audit_event_init(&ev, AUDIT_REFUSAL);
	AUDIT_SET(&ev, relation, args[nargs - 1]);
	if (!owner && cls == 'f')
		AUDIT_SET(&ev, operation, "EXECUTE");
	else if (!owner && cls == 't')
		AUDIT_SET(&ev, operation, "USAGE");
	else
		AUDIT_SET(&ev, operation, command ? command : "statement");
	ev.columns_clear[0] = cls;
	ev.columns_clear[1] = relkind;
	if (nargs == 2)
		snprintf(ev.detail, sizeof(ev.detail),
				 "refused by PostgreSQL's privilege check: permission denied for column %s of relation %s",
				 quote_identifier(args[0]), quote_identifier(args[1]));
	else
		snprintf(ev.detail, sizeof(ev.detail),
				 "refused by PostgreSQL's privilege check: %s%s %s",
				 prefixes[owner ? 1 : 0], word, quote_identifier(args[0]));
	audit_submit(&ev, true);
	refusal_recorded = true;
}

/*
 * In an executor or utility hook's error path (PG_CATCH): the error on
 * its way up, looked at by audit_refusal_seen.
 */
void
audit_refusal_passing(const char *command)
{
	MemoryContext old;
	ErrorData  *ed;

	if (refusal_recorded || geterrcode() != ERRCODE_INSUFFICIENT_PRIVILEGE ||
		!IsTransactionState())
		return;
	old = MemoryContextSwitchTo(CurTransactionContext);
	ed = CopyErrorData();
	audit_refusal_seen(ed, command);
	FreeErrorData(ed);
	MemoryContextSwitchTo(old);
}

/*
 * Is the object of class cls named name (unqualified, as a privilege
 * message names it) pii_guard's own or a protected relation (a protected
 * table, a partition of one, a masking view), or a schema holding a
 * protected table?
 * Its schema-qualified name into out.  In an SPI bracket.
 */
static bool
audit_refusal_object(char cls, char relkind, const char *name, char *out, int size)
{
	static const char *const queries[] = {
		/* (of relations of that name, one of the message's kind first) */
		"SELECT c.oid, c.relnamespace FROM pg_catalog.pg_class c "
		"WHERE c.relname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
		"ORDER BY c.relkind OPERATOR(pg_catalog.<>) $3, c.oid",
		"SELECT p.oid, p.pronamespace FROM pg_catalog.pg_proc p "
		"WHERE p.proname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
		"AND p.pronamespace OPERATOR(pg_catalog.=) $2",
		"SELECT c.oid, n.oid FROM pg_catalog.pg_namespace n "
		"JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) n.oid "
		"WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
		"UNION ALL SELECT 0, n.oid FROM pg_catalog.pg_namespace n "
		"WHERE n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name",
		"SELECT t.oid, t.typnamespace FROM pg_catalog.pg_type t "
		"WHERE t.typname OPERATOR(pg_catalog.=) $1::pg_catalog.name "
		"AND t.typnamespace OPERATOR(pg_catalog.=) $2"
	};
	Oid			nsp = pii_guard_schema_oid(true);
	Oid			argtypes[3] = {TEXTOID, OIDOID, CHAROID};
	Datum		args[3];
	const char *sql;
	uint64		i;
	static const char classes[] = "rfnt";	/* (queries' order) */
	const char *at = cls != '\0' ? strchr(classes, cls) : NULL;

	if (at == NULL)
		return false;
	sql = queries[at - classes];
	args[0] = CStringGetTextDatum(name);
	args[1] = ObjectIdGetDatum(nsp);
	args[2] = CharGetDatum(relkind);
	if (SPI_execute_with_args(sql, cls == 'r' ? 3 : 2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up the object of a privilege refusal");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			oid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		Oid			objnsp = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		bool		ours = objnsp == nsp;

		/* a protected relation; a schema holding a protected table */
		if (!ours && cls == 'r')
			ours = views_is_protected_base(oid) || OidIsValid(views_base_of_view(oid));
		else if (!ours && cls == 'n' && OidIsValid(oid))
			ours = views_is_protected_base(oid);
		if (!ours)
			continue;
		if (cls == 'n')
			strlcpy(out, quote_identifier(name), size);
		else
			strlcpy(out, quote_qualified_identifier(get_namespace_name(objnsp), name), size);
		return true;
	}
	return false;
}

/*
 * In the audit worker, before its events are inserted: the privilege
 * refusals resolved (see above); those not about pii_guard's objects or a
 * protected relation get kind 0, which audit_insert_events skips.
 */
void
audit_resolve_refusals(AuditEvent *events, int n)
{
	OwnerContext oc;
	int			i;

	for (i = 0; i < n && events[i].kind != AUDIT_REFUSAL; i++)
		;
	if (i == n)
		return;
	owner_spi_begin(&oc);
	for (; i < n; i++)
	{
		AuditEvent *ev = &events[i];
		char		cls = ev->columns_clear[0];
		char		relkind = ev->columns_clear[1];
		char		qualified[sizeof(ev->relation)];

		if (ev->kind != AUDIT_REFUSAL)
			continue;
		memset(ev->columns_clear, 0, 2);
		if (audit_refusal_object(cls, relkind, ev->relation, qualified, sizeof(qualified)))
		{
			ev->kind = AUDIT_DENY;
			AUDIT_SET(ev, relation, qualified);
		}
		else
			ev->kind = 0;
	}
	owner_spi_end(&oc);
}

/*
 * Reads: reveal() notes, per protected column, how many values it produced
 * clear, masked or hidden in the current top-level statement, and (up to
 * pii_guard.audit_max_row_keys) which rows.  audit_flush_reads turns that
 * into one read event per relation when the statement ends (or fails).
 *
 * This is on the path of every value a governed role reads, so it is kept
 * cheap: the relations a backend reads are a short list kept for its life
 * (with the row key's output function), each with its columns; a call site
 * finds its column once per statement; the row keys are the relation's,
 * not each column's (a row's columns come one after the other, so a key
 * equal to the last one is not converted to text again).
 */
typedef struct ReadColumn
{
	NameData	attname;
	int64		clear;
	int64		masked;
	int64		hidden;
	bool		searched;		/* in a condition that chose rows (no count) */
} ReadColumn;

typedef struct ReadKeys
{
	List	   *keys;			/* distinct row keys, as text (ReadContext) */
	bool		have_last;
	Datum		last;			/* the last key added (copied, ReadContext) */
} ReadKeys;

typedef struct ReadRel
{
	Oid			relid;
	char		name[2 * NAMEDATALEN + 8];	/* how events name it */
	uint64		epoch;			/* the statement the counts are of */
	int			ncols;
	int			maxcols;
	ReadColumn *cols;			/* TopMemoryContext */
	ReadKeys	clear;
	ReadKeys	masked;
	Oid			keytype;		/* what keyout is the output function of */
	int16		keylen;
	bool		keybyval;
	FmgrInfo	keyout;
} ReadRel;

static MemoryContext ReadContext = NULL;
static List *read_rels = NIL;	/* of ReadRel *, TopMemoryContext */
static uint64 reads_epoch = 1;	/* bumped at every flush */
static bool reads_pending = false;	/* a read was noted since the last flush */
/*
 * The statement that made them: a portal's reads may be flushed when it is
 * closed, by the next statement (COMMIT, ROLLBACK, CLOSE ...).
 */
static char reads_command[32];

/* The per-call-site cache reveal() keeps for us. */
typedef struct ReadSite
{
	uint64		epoch;
	ReadRel    *rel;
	int			col;
} ReadSite;

/* The entry of relid, its counts those of this statement. */
static ReadRel *
audit_read_rel(Oid relid)
{
	ListCell   *lc;
	ReadRel    *rel = NULL;
	MemoryContext old;

	foreach(lc, read_rels)
	{
		if (((ReadRel *) lfirst(lc))->relid == relid)
		{
			rel = (ReadRel *) lfirst(lc);
			break;
		}
	}
	if (rel == NULL)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		rel = palloc0(sizeof(ReadRel));
		rel->relid = relid;
		rel->maxcols = 8;
		rel->cols = palloc(sizeof(ReadColumn) * rel->maxcols);
		read_rels = lappend(read_rels, rel);
		MemoryContextSwitchTo(old);
	}
	if (rel->epoch != reads_epoch)
	{
		/* (The columns stay, their counts start again.) */
		rel->epoch = reads_epoch;
		views_relation_name(relid, rel->name, sizeof(rel->name));
		for (int i = 0; i < rel->ncols; i++)
		{
			rel->cols[i].clear = rel->cols[i].masked = rel->cols[i].hidden = 0;
			rel->cols[i].searched = false;
		}
		memset(&rel->clear, 0, sizeof(ReadKeys));
		memset(&rel->masked, 0, sizeof(ReadKeys));
	}
	return rel;
}

/* The index of column attname in rel (added if new). */
static int
audit_read_col(ReadRel *rel, const char *attname)
{
	ReadColumn *col;

	for (int i = 0; i < rel->ncols; i++)
		if (strcmp(NameStr(rel->cols[i].attname), attname) == 0)
			return i;
	if (rel->ncols == rel->maxcols)
	{
		rel->maxcols *= 2;
		rel->cols = repalloc(rel->cols, sizeof(ReadColumn) * rel->maxcols);
	}
	col = &rel->cols[rel->ncols];
	namestrcpy(&col->attname, attname);
	col->clear = col->masked = col->hidden = 0;
	col->searched = false;
	return rel->ncols++;
}

/* Note row key value (of type keytype) in rk, up to the bound. */
static void
audit_read_key(ReadRel *rel, ReadKeys *rk, Oid keytype, Datum value)
{
	MemoryContext old;
	char	   *k;
	ListCell   *lc;

	if (rk->have_last && rel->keytype == keytype &&
		datumIsEqual(rk->last, value, rel->keybyval, rel->keylen))
		return;
	if (list_length(rk->keys) >= pii_guard_audit_max_row_keys)
		return;
	if (rel->keytype != keytype)
	{
		Oid			typoutput;
		bool		varlena;

		getTypeOutputInfo(keytype, &typoutput, &varlena);
		fmgr_info_cxt(typoutput, &rel->keyout, TopMemoryContext);
		get_typlenbyval(keytype, &rel->keylen, &rel->keybyval);
		rel->keytype = keytype;
		rel->clear.have_last = rel->masked.have_last = false;
	}
	k = OutputFunctionCall(&rel->keyout, value);
	old = MemoryContextSwitchTo(ReadContext);
	rk->last = datumCopy(value, rel->keybyval, rel->keylen);
	rk->have_last = true;
	foreach(lc, rk->keys)
	{
		if (strcmp(strVal(lfirst(lc)), k) == 0)
		{
			MemoryContextSwitchTo(old);
			return;
		}
	}
	rk->keys = lappend(rk->keys, makeString(pstrdup(k)));
	MemoryContextSwitchTo(old);
}

/* A call site's column in the statement's reads (found once a statement). */
static inline ReadSite *
audit_read_site(Oid relid, const char *attname, FunctionCallInfo fcinfo, void **cache)
{
	ReadSite   *site = (ReadSite *) *cache;

	if (unlikely(site == NULL))
	{
		site = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ReadSite));
		*cache = site;
	}
	if (site->epoch != reads_epoch)
	{
		if (ReadContext == NULL)
			ReadContext = AllocSetContextCreate(TopMemoryContext, "pii_guard reads",
												ALLOCSET_SMALL_SIZES);
		site->rel = audit_read_rel(relid);
		site->col = audit_read_col(site->rel, attname);
		site->epoch = reads_epoch;
		if (!reads_pending)
			strlcpy(reads_command, statement_command(), sizeof(reads_command));
		reads_pending = true;
	}
	return site;
}

/*
 * A protected column was used in a condition that chose rows (reveal.c's
 * quiet sites): no value left, nothing is counted, but the statement's
 * read event says it searched by the column -- also a search that found
 * nothing.
 */
void
audit_note_search(Oid relid, const char *attname, FunctionCallInfo fcinfo, void **cache)
{
	ReadSite   *site;

	if (!pii_guard_audit_reads)
		return;
	site = audit_read_site(relid, attname, fcinfo, cache);
	site->rel->cols[site->col].searched = true;
}

void
audit_note_reveal(Oid relid, const char *attname, ColumnAccess access,
				  FunctionCallInfo fcinfo, int rowkey_arg, void **cache)
{
	ReadSite   *site;
	ReadRel    *rel;
	ReadColumn *col;
	ReadKeys   *rk = NULL;

	if (!pii_guard_audit_reads)
		return;
	site = audit_read_site(relid, attname, fcinfo, cache);
	rel = site->rel;
	col = &rel->cols[site->col];
	if (access == ACCESS_CLEAR)
	{
		col->clear++;
		rk = &rel->clear;
	}
	else if (access == ACCESS_MASKED)
	{
		col->masked++;
		rk = &rel->masked;
	}
	else
		col->hidden++;

	/* (once the event's list of keys is full, nothing more to look up) */
	if (rk != NULL && !PG_ARGISNULL(rowkey_arg) &&
		list_length(rk->keys) < pii_guard_audit_max_row_keys)
		audit_read_key(rel, rk, get_fn_expr_argtype(fcinfo->flinfo, rowkey_arg),
					   PG_GETARG_DATUM(rowkey_arg));
}

/* Append the keys of list (distinct) to a list field, as far as they fit. */
static void
audit_list_add_keys(char *field, int size, List *keys)
{
	int			len = strlen(field);
	ListCell   *lc;

	foreach(lc, keys)
	{
		if (!audit_list_append(field, size, &len, strVal(lfirst(lc))))
			return;
	}
}

/*
 * The statement is over (or failed): one read event per relation it
 * revealed protected columns of.
 */
void
audit_flush_reads(bool aborting)
{
	ListCell   *lc;
	bool		export;
	uint64		epoch = reads_epoch;
	const char *command = reads_command[0] ? reads_command : statement_command();

	if (!reads_pending)
		return;
	reads_pending = false;
	reads_epoch++;
	export = statement_is_export();

	foreach(lc, read_rels)
	{
		ReadRel    *rel = (ReadRel *) lfirst(lc);
		AuditEvent	ev;
		int64		rows = 0;
		int			distinct_keys;
		bool		overflow;
		ListCell   *k;

		if (rel->epoch != epoch || rel->ncols == 0)
			continue;
		audit_event_init(&ev, export ? AUDIT_EXPORT : AUDIT_READ);
		/* (named when first read: at an abort, the catalogs cannot be read) */
		AUDIT_SET(&ev, relation, rel->name);
		if (aborting)
			snprintf(ev.operation, sizeof(ev.operation), "%s (failed)", command);
		else
			AUDIT_SET(&ev, operation, command);

		/* Row keys are listed for every clear or masked value: count them. */
		overflow = list_length(rel->clear.keys) >= pii_guard_audit_max_row_keys ||
			list_length(rel->masked.keys) >= pii_guard_audit_max_row_keys;
		for (int i = 0; i < rel->ncols; i++)
		{
			ReadColumn *col = &rel->cols[i];

			rows = Max(rows, col->clear + col->masked + col->hidden);
			if (col->hidden > 0)
				overflow = true;
			if (col->clear > 0)
				audit_list_add(ev.columns_clear, sizeof(ev.columns_clear), NameStr(col->attname));
			if (col->masked > 0)
				audit_list_add(ev.columns_masked, sizeof(ev.columns_masked), NameStr(col->attname));
			if (col->searched)
			{
				int			len = strlen(ev.detail);

				snprintf(ev.detail + len, sizeof(ev.detail) - len, "%s%s",
						 len == 0 ? "searched by " : ", ", quote_identifier(NameStr(col->attname)));
			}
		}
		if (pii_guard_purpose != NULL && pii_guard_purpose[0] != '\0')
		{
			int			len = strlen(ev.detail);

			snprintf(ev.detail + len, sizeof(ev.detail) - len, "%sfor purpose %s",
					 len == 0 ? "" : "; ", pii_guard_purpose);
		}
		audit_list_add_keys(ev.row_keys, sizeof(ev.row_keys), rel->clear.keys);
		audit_list_add_keys(ev.row_keys_masked, sizeof(ev.row_keys_masked), rel->masked.keys);
		distinct_keys = list_length(rel->clear.keys);
		if (!overflow)
		{
			foreach(k, rel->masked.keys)
				if (!list_member(rel->clear.keys, lfirst(k)))
					distinct_keys++;
		}
		ev.rows = rows;
		if (!overflow && distinct_keys < pii_guard_audit_max_row_keys)
			ev.rows = distinct_keys;
		audit_submit(&ev, aborting);
	}
	if (ReadContext != NULL)
		MemoryContextReset(ReadContext);
}

PG_FUNCTION_INFO_V1(pii_guard_audit_write);
PG_FUNCTION_INFO_V1(pii_guard_audit_admin);

/* Output-function text of column att (1-based) of slot, or NULL. */
static char *
audit_slot_text(TupleTableSlot *slot, int att)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);
	Oid			typoutput;
	bool		varlena;

	if (isnull)
		return NULL;
	getTypeOutputInfo(TupleDescAttr(slot->tts_tupleDescriptor, att - 1)->atttypid,
					  &typoutput, &varlena);
	return OidOutputFunctionCall(typoutput, d);
}

/*
 * Write events of the rows a masking view's trigger writes, one statement
 * per row (COPY view FROM, and what the rewrite does not take): merged per
 * relation and operation into one event for the statement that fired the
 * trigger, as a write to a plain table is one event per statement.  They
 * are inserted when that statement ends (audit_flush_writes, from the
 * executor and utility hooks), in its transaction; an aborted
 * subtransaction takes those it wrote with it, as it takes the rows.
 */
typedef struct PendingWrite
{
	SubTransactionId subid;		/* of the (sub)transaction that wrote */
	AuditEvent	ev;
} PendingWrite;

static List *pending_writes = NIL;	/* of PendingWrite, in TopMemoryContext */

/*
 * Merge b into a (same relation, operation and subtransaction): rows
 * added, row keys up to pii_guard.audit_max_row_keys, columns united.
 */
static void
audit_merge_write(AuditEvent *a, const AuditEvent *b)
{
	const char *p = a->row_keys;
	int			nkeys = 0;
	int			len = strlen(a->row_keys);
	char	   *item;

	a->rows += b->rows;
	while ((item = audit_list_next(&p)) != NULL)
	{
		pfree(item);
		nkeys++;
	}
	p = b->row_keys;
	while (nkeys < pii_guard_audit_max_row_keys && (item = audit_list_next(&p)) != NULL)
	{
		if (!audit_list_append(a->row_keys, sizeof(a->row_keys), &len, item))
			break;
		nkeys++;
	}
	p = b->columns_changed;
	while ((item = audit_list_next(&p)) != NULL)
		if (!audit_list_has(a->columns_changed, item))
			audit_list_add(a->columns_changed, sizeof(a->columns_changed), item);
}

/* A write event: now, or merged for its statement (see above). */
void
audit_write_event(const AuditEvent *ev)
{
	SubTransactionId subid = GetCurrentSubTransactionId();
	MemoryContext old;
	PendingWrite *pw;
	ListCell   *lc;

	if (!views_writing())
	{
		(void) audit_insert_now(ev);
		return;
	}
	foreach(lc, pending_writes)
	{
		pw = (PendingWrite *) lfirst(lc);
		if (pw->subid == subid && strcmp(pw->ev.relation, ev->relation) == 0 &&
			strcmp(pw->ev.operation, ev->operation) == 0 &&
			pw->ev.current_role == ev->current_role)
		{
			audit_merge_write(&pw->ev, ev);
			return;
		}
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	pw = palloc(sizeof(PendingWrite));
	pw->subid = subid;
	memcpy(&pw->ev, ev, sizeof(AuditEvent));
	pending_writes = lappend(pending_writes, pw);
	MemoryContextSwitchTo(old);
}

/*
 * A statement ended without error: the write events merged for it are
 * inserted (unless it is itself a trigger's statement, whose writes are
 * its caller's).
 */
void
audit_flush_writes(void)
{
	List	   *writes = pending_writes;
	ListCell   *lc;

	if (writes == NIL || views_writing() || !IsTransactionState())
		return;
	pending_writes = NIL;
	foreach(lc, writes)
		(void) audit_insert_now(&((PendingWrite *) lfirst(lc))->ev);
	list_free_deep(writes);
}

/*
 * Subtransaction and transaction ends: an aborted one's pending writes
 * are gone with its rows (mySubid InvalidSubTransactionId: the whole
 * transaction); a committed subtransaction's become its parent's.
 */
void
audit_writes_subxact(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid)
{
	ListCell   *lc;

	foreach(lc, pending_writes)
	{
		PendingWrite *pw = (PendingWrite *) lfirst(lc);

		if (event == SUBXACT_EVENT_COMMIT_SUB && pw->subid == mySubid)
			pw->subid = parentSubid;
		else if (event == SUBXACT_EVENT_ABORT_SUB &&
				 (pw->subid == mySubid || mySubid == InvalidSubTransactionId))
		{
			pending_writes = foreach_delete_current(pending_writes, lc);
			pfree(pw);
		}
	}
}

/*
 * SQL function: audit_write() returns trigger
 *
 * AFTER INSERT/UPDATE/DELETE ... FOR EACH STATEMENT with transition tables
 * (and AFTER TRUNCATE): one write event per statement, in its transaction,
 * with the row keys (bounded) and the names of the columns it changed --
 * never their values.  Argument: the row key column.
 */
Datum
pii_guard_audit_write(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	AuditEvent	ev;
	int			keyatt;
	const char *view;
	TupleTableSlot *oldslot = NULL;
	TupleTableSlot *newslot = NULL;
	bool	   *changed;
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_write must be called as a trigger");
	if (!TRIGGER_FIRED_FOR_STATEMENT(td->tg_event) ||
		!TRIGGER_FIRED_AFTER(td->tg_event) || td->tg_trigger->tgnargs < 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pii_guard.audit_write() must be fired AFTER ... FOR EACH STATEMENT with the row key column as argument"),
				 errhint("Use pii_guard.audit_table() to put a table under write audit.")));
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	keyatt = SPI_fnumber(desc, td->tg_trigger->tgargs[0]);
	changed = palloc0(sizeof(bool) * desc->natts);

	audit_event_init(&ev, AUDIT_WRITE);
	view = views_masking_view_name(RelationGetRelid(rel));
	if (view)
		AUDIT_SET(&ev, relation, view);
	else
		AUDIT_SET(&ev, relation, quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
															RelationGetRelationName(rel)));
	AUDIT_SET(&ev, operation,
			  TRIGGER_FIRED_BY_INSERT(td->tg_event) ? "INSERT" :
			  TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
			  TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" : "TRUNCATE");

	if (td->tg_oldtable)
		oldslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (td->tg_newtable)
		newslot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	if (oldslot)
		tuplestore_rescan(td->tg_oldtable);
	if (newslot)
		tuplestore_rescan(td->tg_newtable);
	for (;;)
	{
		bool		have_old = oldslot && tuplestore_gettupleslot(td->tg_oldtable, true, false, oldslot);
		bool		have_new = newslot && tuplestore_gettupleslot(td->tg_newtable, true, false, newslot);
		TupleTableSlot *keyslot = have_new ? newslot : oldslot;

		if (!have_old && !have_new)
			break;
		ev.rows++;
		if (keyatt > 0 && ev.rows <= pii_guard_audit_max_row_keys)
		{
			char	   *k = audit_slot_text(keyslot, keyatt);

			if (k)
				audit_list_add(ev.row_keys, sizeof(ev.row_keys), k);
		}
		for (i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);
			bool		n1 = true;
			bool		n2 = true;
			Datum		d1 = (Datum) 0;
			Datum		d2 = (Datum) 0;

			if (att->attisdropped || changed[i])
				continue;
			if (have_new)
				d2 = slot_getattr(newslot, i + 1, &n2);
			if (have_old)
				d1 = slot_getattr(oldslot, i + 1, &n1);
			if (have_new && have_old)
				changed[i] = n1 != n2 || (!n1 && !datumIsEqual(d1, d2, att->attbyval, att->attlen));
			else if (have_new)
				changed[i] = !n2;
		}
	}
	for (i = 0; i < desc->natts; i++)
		if (changed[i])
			audit_list_add(ev.columns_changed, sizeof(ev.columns_changed),
						   NameStr(TupleDescAttr(desc, i)->attname));
	if (oldslot)
		ExecDropSingleTupleTableSlot(oldslot);
	if (newslot)
		ExecDropSingleTupleTableSlot(newslot);
	if (ev.rows > 0 || TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
		audit_write_event(&ev);
	return PointerGetDatum(NULL);
}

/*
 * SQL function: _audit_admin(action text, detail text) returns bigint
 *
 * An admin event (policy, keys, grants), in the current transaction.
 */
Datum
pii_guard_audit_admin(PG_FUNCTION_ARGS)
{
	AuditEvent	ev;

	audit_event_init(&ev, AUDIT_ADMIN);
	AUDIT_SET(&ev, operation, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	if (!PG_ARGISNULL(1))
		AUDIT_SET(&ev, detail, text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_INT64(audit_insert_now(&ev));
}

PG_FUNCTION_INFO_V1(pii_guard_audit_deny);

/*
 * SQL function: _audit_deny(operation text, detail text) returns void
 *
 * A denial raised in SQL (before its RAISE): queued, so it survives the
 * rollback that follows.
 */
Datum
pii_guard_audit_deny(PG_FUNCTION_ARGS)
{
	audit_deny(NULL, text_to_cstring(PG_GETARG_TEXT_PP(0)),
			   PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}
