/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit store: what an event holds (AuditEvent, its lossless list
 *		fields), how it is written to pii_guard.audit_log (straight to the
 *		heap and its indexes, with its row MAC), the hash chain and its
 *		seals, the anchor kept outside the database, the JSON mirror,
 *		grant expiries and alerts.  The events themselves are made in
 *		audit_events.c; the queue is audit_queue.c, the worker audit_worker.c.
 *
 * Two paths into pii_guard.audit_log:
 *
 *	write and admin events are inserted in the transaction that makes the
 *	change (audit_insert_now), so they are atomic with it;
 *
 *	read, export and deny events are handed to audit_queue.c, which queues
 *	them in shared memory for the audit worker of their database, so a
 *	denial is recorded although the statement that caused it rolls back.
 *
 * Tamper evidence.  Every row carries row_mac, an HMAC-SHA256 (under the
 * 'audit' data key) of its content; a BEFORE INSERT trigger computes it for
 * inserts made by this file and refuses other inserts that carry none.
 * The worker seals committed rows into pii_guard.audit_seal, each seal's
 * chain_hash = SHA-256(previous chain_hash || event_id || row_mac), in
 * sealing order, so that writers never wait for the chain.
 * pii_guard.verify_audit() recomputes both.  Nobody may UPDATE, DELETE or
 * TRUNCATE either table (triggers refuse it even for superusers, who can
 * disable triggers -- which verify_audit then exposes).
 *
 * No event ever holds a value of a protected column: relation and column
 * names, row keys, counts, query ids and SQLSTATEs only.
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
#include "utils/arrayaccess.h"
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

/* Settings */
bool		pii_guard_audit_reads = true;
int			pii_guard_audit_max_row_keys = 100;
char	   *pii_guard_audit_log_destination = NULL;

static bool audit_inserting = false;	/* our own INSERT into audit_log */
static bool audit_mirror_to_log = false;

/* GUC check hook of audit_log_destination: 'table' or 'table,log'. */
bool
audit_destination_check(char **newval, void **extra pg_attribute_unused(),
						 GucSource source pg_attribute_unused())
{
	if (*newval == NULL || strcmp(*newval, "table") == 0 ||
		strcmp(*newval, "table,log") == 0 || strcmp(*newval, "log,table") == 0)
		return true;
	GUC_check_errdetail("Valid values are \"table\" and \"table,log\".");
	return false;
}

void
audit_destination_assign(const char *newval, void *extra pg_attribute_unused())
{
	audit_mirror_to_log = newval != NULL && strstr(newval, "log") != NULL;
}

/* Copy s into a fixed-size field, truncated at a character boundary. */
static void
audit_copy(char *dst, const char *s, int size)
{
	int			len;

	if (s == NULL)
	{
		dst[0] = '\0';
		return;
	}
	len = strlen(s);
	if (len >= size)
		len = pg_mbcliplen(s, len, size - 1);
	memcpy(dst, s, len);
	dst[len] = '\0';
}

static char client_addr[48];
static bool client_addr_known = false;

/* Fill the context fields of an event (who, where, when). */

void
audit_event_init(AuditEvent *ev, char kind)
{
	memset(ev, 0, sizeof(*ev));
	ev->dboid = MyDatabaseId;
	ev->kind = kind;
	ev->at = GetCurrentTimestamp();
	ev->pid = MyProcPid;
	ev->session_role = GetSessionUserId();
	ev->current_role = GetUserId();
	ev->xid = GetTopTransactionIdIfAny();
	ev->query_id = compat_query_id();
	/* (The client's address is the session's: converted once.) */
	if (!client_addr_known && MyBEEntry != NULL)
	{
		if (MyBEEntry->st_clientaddr.salen > 0 &&
			MyBEEntry->st_clientaddr.addr.ss_family != AF_UNIX)
			(void) pg_getnameinfo_all(&MyBEEntry->st_clientaddr.addr,
									  MyBEEntry->st_clientaddr.salen,
									  client_addr, sizeof(client_addr),
									  NULL, 0, NI_NUMERICHOST);
		client_addr_known = true;
	}
	memcpy(ev->client_addr, client_addr, sizeof(ev->client_addr));
	if (application_name)
		audit_copy(ev->application_name, application_name, sizeof(ev->application_name));
}

void
audit_event_set(char *field, int size, const char *value)
{
	audit_copy(field, value, size);
}

/*
 * The send functions of audit_log's columns, looked up once per backend
 * (each lookup is a syscache search and an fmgr_info; per column of every
 * event, they cost more than the HMAC).  Rebuilt when the row type is not
 * the one they were looked up for.
 */
typedef struct AuditMacColumns
{
	int			natts;
	Oid		   *typids;			/* InvalidOid: not in the MAC */
	FmgrInfo   *send;
} AuditMacColumns;

static AuditMacColumns mac_columns;

/* The type a column's MAC part is sent as; InvalidOid: not in the MAC. */
static inline Oid
audit_mac_type(Form_pg_attribute att)
{
	if (att->attisdropped || strcmp(NameStr(att->attname), "row_mac") == 0)
		return InvalidOid;
	return att->atttypid;
}

static const AuditMacColumns *
audit_mac_columns(TupleDesc desc)
{
	AuditMacColumns *c = &mac_columns;
	int			i;

	if (c->natts == desc->natts)
	{
		for (i = 0; i < desc->natts; i++)
			if (c->typids[i] != audit_mac_type(TupleDescAttr(desc, i)))
				break;
		if (i == desc->natts)
			return c;
	}

	if (c->typids)
	{
		pfree(c->typids);
		pfree(c->send);
	}
	c->natts = 0;
	c->typids = MemoryContextAllocZero(TopMemoryContext, desc->natts * sizeof(Oid));
	c->send = MemoryContextAllocZero(TopMemoryContext, desc->natts * sizeof(FmgrInfo));
	for (i = 0; i < desc->natts; i++)
	{
		Oid			typid = audit_mac_type(TupleDescAttr(desc, i));
		Oid			typsend;
		bool		varlena;

		if (typid == InvalidOid)
			continue;
		/* Binary send form: independent of TimeZone, DateStyle, ... */
		getTypeBinaryOutputInfo(typid, &typsend, &varlena);
		fmgr_info_cxt(typsend, &c->send[i], TopMemoryContext);
		c->typids[i] = typid;
	}
	c->natts = desc->natts;
	return c;
}

static inline void
mac_put32(StringInfo buf, uint32 v)
{
	v = pg_hton32(v);
	appendBinaryStringInfo(buf, (const char *) &v, 4);
}

static inline void
mac_put64(StringInfo buf, uint64 v)
{
	v = pg_hton64(v);
	appendBinaryStringInfo(buf, (const char *) &v, 8);
}

/*
 * The binary send form of a text array, with its elements' bytes as they
 * are stored (array_send's layout: dimensions, null flag, element type,
 * bounds, then each element's length, -1 for NULL, and bytes).
 */
static void
mac_text_array(StringInfo buf, Datum value)
{
	ArrayType  *a = DatumGetArrayTypeP(value);
	int			ndim = ARR_NDIM(a);
	int			nitems = ArrayGetNItems(ndim, ARR_DIMS(a));
	array_iter	it;

	mac_put32(buf, ndim);
	mac_put32(buf, ARR_HASNULL(a) ? 1 : 0);
	mac_put32(buf, ARR_ELEMTYPE(a));
	for (int d = 0; d < ndim; d++)
	{
		mac_put32(buf, ARR_DIMS(a)[d]);
		mac_put32(buf, ARR_LBOUND(a)[d]);
	}
	array_iter_setup(&it, (AnyArrayType *) a);
	for (int i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		e = array_iter_next(&it, &isnull, i, -1, false, TYPALIGN_INT);

		if (isnull)
			mac_put32(buf, (uint32) -1);
		else
		{
			mac_put32(buf, VARSIZE_ANY_EXHDR(DatumGetPointer(e)));
			appendBinaryStringInfo(buf, VARDATA_ANY(DatumGetPointer(e)),
								   VARSIZE_ANY_EXHDR(DatumGetPointer(e)));
		}
	}
}

/*
 * A column's part of the MAC: its binary send form -- but text as it is
 * stored, never converted to the session's client_encoding as textsend
 * converts it (so that a row written or verified by a GBK or LATIN1
 * session MACs as in any other, and a character the client encoding
 * lacks is no error).  For text in a session whose client encoding is the
 * database's, and for ASCII text in any session, the same bytes as
 * textsend's; the types of audit_log's columns are built in, other types
 * (a column a DBA added) take their send function.
 */
static void
audit_mac_value(StringInfo buf, Oid typid, FmgrInfo *send, Datum value)
{
	int			lenpos;
	int			start;
	uint32		len;

	lenpos = buf->len;
	mac_put32(buf, 0);			/* (the length, filled in below) */
	start = buf->len;
	switch (typid)
	{
		case TEXTOID:
		case BYTEAOID:
			appendBinaryStringInfo(buf, VARDATA_ANY(DatumGetPointer(value)),
								   VARSIZE_ANY_EXHDR(DatumGetPointer(value)));
			break;
		case INT4OID:
			mac_put32(buf, (uint32) DatumGetInt32(value));
			break;
		case INT8OID:
		case TIMESTAMPTZOID:
			mac_put64(buf, (uint64) DatumGetInt64(value));
			break;
		case TEXTARRAYOID:
			mac_text_array(buf, value);
			break;
		default:
			{
				bytea	   *b = SendFunctionCall(send, value);

				appendBinaryStringInfo(buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
			}
	}
	len = pg_hton32(buf->len - start);
	memcpy(buf->data + lenpos, &len, 4);
}

/*
 * MAC of an audit_log row: HMAC over every column but row_mac, each as a
 * tag and its length-prefixed binary send form (audit_mac_value).  From
 * the row's values.
 */
static void
audit_values_mac(const Datum *values, const bool *nulls, TupleDesc desc, uint8 *out)
{
	DataKey    *key = keys_audit();
	const AuditMacColumns *cols = audit_mac_columns(desc);
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < desc->natts; i++)
	{
		if (cols->typids[i] == InvalidOid)
			continue;
		if (nulls[i])
			appendStringInfoChar(&buf, 'N');
		else
		{
			appendStringInfoChar(&buf, 'V');
			audit_mac_value(&buf, cols->typids[i], &cols->send[i], values[i]);
		}
	}
	crypto_hmac(key->mac, 'a', buf.data, buf.len, out, 32);
	pfree(buf.data);
}

/* The same, of a stored row. */
static void
audit_row_mac(HeapTuple tuple, TupleDesc desc, uint8 *out)
{
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	heap_deform_tuple(tuple, desc, values, nulls);
	audit_values_mac(values, nulls, desc, out);
	pfree(values);
	pfree(nulls);
}

PG_FUNCTION_INFO_V1(pii_guard_audit_log_guard);
PG_FUNCTION_INFO_V1(pii_guard_audit_row_ok);
PG_FUNCTION_INFO_V1(pii_guard_audit_chain_next);

/*
 * SQL function: audit_log_guard() returns trigger
 *
 * BEFORE INSERT OR UPDATE OR DELETE (row) and TRUNCATE (statement) on
 * audit_log and audit_seal: append-only for everyone; pii_guard's own
 * inserts get their MAC here; a row arriving with a MAC (a restore) is
 * taken as it is and verified by verify_audit().
 */
Datum
pii_guard_audit_log_guard(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	int			macatt;
	bool		isnull;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "audit_log_guard must be called as a trigger");
	/* The archive step's deletes (audit_archive.c), and nothing else. */
	if (TRIGGER_FIRED_BY_DELETE(td->tg_event) && audit_archiving &&
		TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return PointerGetDatum(td->tg_trigtuple);
	if (!TRIGGER_FIRED_BY_INSERT(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s is append-only", RelationGetRelationName(td->tg_relation)),
				 errdetail("Audit rows can be neither changed nor removed, by any role.")));

	tuple = td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	macatt = SPI_fnumber(desc, "row_mac");
	if (macatt <= 0)
	{
		/* audit_archives: recorded by the archive step only */
		if (!audit_archiving &&
			strcmp(RelationGetRelationName(td->tg_relation), "audit_archives") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("audit archives are recorded by pii_guard only"),
					 errhint("Archive audit events with pii_guard.archive_audit().")));
		return PointerGetDatum(tuple);	/* audit_seal: chain_hash is its own proof */
	}
	(void) heap_getattr(tuple, macatt, desc, &isnull);
	if (!isnull)
		return PointerGetDatum(tuple);
	if (!audit_inserting)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("audit events are written by pii_guard only"),
				 errdetail("An inserted row must come from pii_guard or carry the row MAC it was written with.")));
	{
		uint8		mac[32];
		bytea	   *b = palloc(VARHDRSZ + 32);
		int			att = macatt;
		Datum		value;
		bool		null = false;

		audit_row_mac(tuple, desc, mac);
		SET_VARSIZE(b, VARHDRSZ + 32);
		memcpy(VARDATA(b), mac, 32);
		value = PointerGetDatum(b);
		tuple = heap_modify_tuple_by_cols(tuple, desc, 1, &att, &value, &null);
	}
	return PointerGetDatum(tuple);
}

/* SQL function: _audit_row_ok(pii_guard.audit_log) returns boolean */
Datum
pii_guard_audit_row_ok(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(0);
	TupleDesc	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
											  HeapTupleHeaderGetTypMod(rec));
	HeapTupleData tuple;
	int			macatt = SPI_fnumber(desc, "row_mac");
	bool		isnull;
	Datum		stored;
	uint8		mac[32];
	bool		ok;

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	stored = heap_getattr(&tuple, macatt, desc, &isnull);
	if (isnull || VARSIZE_ANY_EXHDR(DatumGetByteaPP(stored)) != 32)
		ok = false;
	else
	{
		audit_row_mac(&tuple, desc, mac);
		ok = CRYPTO_memcmp(mac, VARDATA_ANY(DatumGetByteaPP(stored)), 32) == 0;
	}
	ReleaseTupleDesc(desc);
	PG_RETURN_BOOL(ok);
}

/* The next link of the chain: SHA-256(prev || event_id || row_mac). */
bytea *
audit_chain_link(bytea *prev, int64 event_id, bytea *row_mac)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bytea	   *out = palloc(VARHDRSZ + 32);
	unsigned int len;
	uint8		id[8];
	int			i;

	for (i = 0; i < 8; i++)
		id[i] = (uint8) ((uint64) event_id >> (56 - 8 * i));
	if (ctx == NULL ||
		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
		(prev && EVP_DigestUpdate(ctx, VARDATA_ANY(prev), VARSIZE_ANY_EXHDR(prev)) != 1) ||
		EVP_DigestUpdate(ctx, id, 8) != 1 ||
		(row_mac && EVP_DigestUpdate(ctx, VARDATA_ANY(row_mac), VARSIZE_ANY_EXHDR(row_mac)) != 1) ||
		EVP_DigestFinal_ex(ctx, (uint8 *) VARDATA(out), &len) != 1)
	{
		EVP_MD_CTX_free(ctx);
		crypto_failure("SHA-256");
	}
	EVP_MD_CTX_free(ctx);
	SET_VARSIZE(out, VARHDRSZ + 32);
	return out;
}

/* SQL function: _audit_chain_next(prev bytea, event_id bigint, row_mac bytea) returns bytea */
Datum
pii_guard_audit_chain_next(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(audit_chain_link(PG_ARGISNULL(0) ? NULL : PG_GETARG_BYTEA_PP(0),
									   PG_GETARG_INT64(1),
									   PG_ARGISNULL(2) ? NULL : PG_GETARG_BYTEA_PP(2)));
}

/*
 * List fields (column names, row keys) are lossless lists in a fixed-size
 * field: elements separated by commas, a comma or backslash within an
 * element escaped by a backslash -- so that a row key "ACME,Inc" stays one
 * key.  Lists of the same field concatenate with a comma.
 */

/*
 * Append element s to a list field of size bytes whose length is *len, if
 * it fits; false if it does not.
 */
bool
audit_list_append(char *field, int size, int *len, const char *s)
{
	int			add = 0;
	const char *c;

	for (c = s; *c; c++)
		add += (*c == ',' || *c == '\\') ? 2 : 1;
	if (*len + add + 2 >= size)
		return false;
	if (*len > 0)
		field[(*len)++] = ',';
	for (c = s; *c; c++)
	{
		if (*c == ',' || *c == '\\')
			field[(*len)++] = '\\';
		field[(*len)++] = *c;
	}
	field[*len] = '\0';
	return true;
}

/* Append element s to a list field, as far as it fits. */
void
audit_list_add(char *field, int size, const char *s)
{
	int			len = strlen(field);

	(void) audit_list_append(field, size, &len, s);
}

/*
 * The next element of a list field from *p (unescaped, palloc'd), *p moved
 * past it; NULL at the end.
 */
char *
audit_list_next(const char **p)
{
	StringInfoData item;
	const char *c = *p;

	if (*c == '\0')
		return NULL;
	initStringInfo(&item);
	for (; *c && *c != ','; c++)
	{
		if (*c == '\\' && c[1] != '\0')
			c++;
		appendStringInfoChar(&item, *c);
	}
	*p = *c == ',' ? c + 1 : c;
	return item.data;
}

/* Does list field list hold element s? */
bool
audit_list_has(const char *list, const char *s)
{
	const char *p = list;
	char	   *item;

	while ((item = audit_list_next(&p)) != NULL)
	{
		bool		same = strcmp(item, s) == 0;

		pfree(item);
		if (same)
			return true;
	}
	return false;
}

/* Text array from a list field (NULL when empty). */
static Datum
audit_list_datum(const char *list, bool *isnull)
{
	Datum	   *elems;
	int			n = 0;
	const char *p = list;
	char	   *item;

	*isnull = (list == NULL || list[0] == '\0');
	if (*isnull)
		return (Datum) 0;
	elems = palloc(sizeof(Datum) * (strlen(list) / 2 + 2));
	while ((item = audit_list_next(&p)) != NULL)
		elems[n++] = PointerGetDatum(cstring_to_text(item));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* A role's name for a JSON line (its OID where none can be had). */
static void
audit_json_role(StringInfo buf, Oid role)
{
	const char *name = NULL;

	/*
	 * No catalog lookups in an aborted transaction; there the session
	 * role's name is still known (the setting session_authorization).
	 */
	if (IsTransactionState())
		name = GetUserNameFromId(role, true);
	else if (OidIsValid(role) && role == GetSessionUserId())
		name = GetConfigOption("session_authorization", true, false);
	escape_json(buf, name ? name : psprintf("%u", role));
}

/* A list field as a JSON array of strings. */
static void
audit_json_list(StringInfo buf, const char *list)
{
	const char *p = list;
	char	   *item;

	appendStringInfoChar(buf, '[');
	while ((item = audit_list_next(&p)) != NULL)
	{
		if (buf->data[buf->len - 1] != '[')
			appendStringInfoChar(buf, ',');
		escape_json(buf, item);
		pfree(item);
	}
	appendStringInfoChar(buf, ']');
}

/*
 * One event as a JSON object: the fields of the JSON mirror, event_id null
 * when negative (a standby's event has none); "full" adds the client,
 * application, query id and row keys (what audit_log holds besides).
 * Never a value.
 */
void
audit_event_json(StringInfo buf, const AuditEvent *ev, int64 event_id, bool full)
{
	if (event_id < 0)
		appendStringInfoString(buf, "{\"event_id\":null,\"kind\":");
	else
		appendStringInfo(buf, "{\"event_id\":" INT64_FORMAT ",\"kind\":", event_id);
	escape_json(buf, audit_kind_name(ev->kind));
	appendStringInfoString(buf, ",\"time\":");
	escape_json(buf, timestamptz_to_str(ev->at));
	appendStringInfoString(buf, ",\"session_role\":");
	audit_json_role(buf, ev->session_role);
	appendStringInfoString(buf, ",\"current_role\":");
	audit_json_role(buf, ev->current_role);
	appendStringInfo(buf, ",\"pid\":%d", ev->pid);
	if (full)
	{
		appendStringInfoString(buf, ",\"client_addr\":");
		escape_json(buf, ev->client_addr);
		appendStringInfoString(buf, ",\"application_name\":");
		escape_json(buf, ev->application_name);
		appendStringInfo(buf, ",\"query_id\":" UINT64_FORMAT, ev->query_id);
	}
	appendStringInfoString(buf, ",\"relation\":");
	escape_json(buf, ev->relation);
	appendStringInfoString(buf, ",\"operation\":");
	escape_json(buf, ev->operation);
	appendStringInfo(buf, ",\"rows\":" INT64_FORMAT ",\"columns_clear\":", ev->rows);
	escape_json(buf, ev->columns_clear);
	appendStringInfoString(buf, ",\"columns_masked\":");
	escape_json(buf, ev->columns_masked);
	if (full)
	{
		appendStringInfoString(buf, ",\"row_keys\":");
		audit_json_list(buf, ev->row_keys);
		appendStringInfoString(buf, ",\"row_keys_masked\":");
		audit_json_list(buf, ev->row_keys_masked);
	}
	appendStringInfoString(buf, ",\"detail\":");
	escape_json(buf, ev->detail);
	appendStringInfoChar(buf, '}');
}

/* Mirror one event to the server log as a JSON line, if configured. */
static void
audit_mirror(const AuditEvent *ev, int64 event_id)
{
	StringInfoData buf;

	if (!audit_mirror_to_log)
		return;
	initStringInfo(&buf);
	audit_event_json(&buf, ev, event_id, false);
	ereport(LOG, (errmsg("pii_guard audit: %s", buf.data), errhidestmt(true)));
	pfree(buf.data);
}

const char *
audit_kind_name(char kind)
{
	switch (kind)
	{
		case AUDIT_READ:
			return "read";
		case AUDIT_WRITE:
			return "write";
		case AUDIT_EXPORT:
			return "export";
		case AUDIT_DENY:
			return "deny";
		case AUDIT_ALERT:
			return "alert";
		default:
			return "admin";
	}
}

/* The columns of audit_log an event fills, by attribute number. */
typedef struct AuditLogColumns
{
	Oid			relid;
	uint64		generation;
	Oid			seq;			/* audit_log_event_id_seq */
	AttrNumber	event_id, event_time, kind, session_role, acting_role, client_addr,
				application_name, backend_pid, xid, query_id, relation, operation,
				columns_clear, columns_masked, columns_changed, rows, row_keys,
				row_keys_masked, detail, row_mac;
} AuditLogColumns;

static AuditLogColumns audit_log_columns;

/* Look up audit_log's columns (again when the policy generation moves). */
static const AuditLogColumns *
audit_log_columns_of(Relation rel)
{
	AuditLogColumns *c = &audit_log_columns;
	TupleDesc	desc = RelationGetDescr(rel);

	if (c->relid == RelationGetRelid(rel) && c->generation == policy_current_generation())
		return c;
	memset(c, 0, sizeof(*c));
#define AUDIT_COL(f) c->f = SPI_fnumber(desc, #f)
	AUDIT_COL(event_id);
	AUDIT_COL(event_time);
	AUDIT_COL(kind);
	AUDIT_COL(session_role);
	AUDIT_COL(acting_role);
	AUDIT_COL(client_addr);
	AUDIT_COL(application_name);
	AUDIT_COL(backend_pid);
	AUDIT_COL(xid);
	AUDIT_COL(query_id);
	AUDIT_COL(relation);
	AUDIT_COL(operation);
	AUDIT_COL(columns_clear);
	AUDIT_COL(columns_masked);
	AUDIT_COL(columns_changed);
	AUDIT_COL(rows);
	AUDIT_COL(row_keys);
	AUDIT_COL(row_keys_masked);
	AUDIT_COL(detail);
	AUDIT_COL(row_mac);
#undef AUDIT_COL
	c->seq = pii_guard_relation_oid("audit_log_event_id_seq", false);
	if (c->event_id <= 0 || c->event_time <= 0 || c->kind <= 0 || c->session_role <= 0 ||
		c->acting_role <= 0 || c->row_mac <= 0)
		elog(ERROR, "pii_guard.audit_log is not as this library expects");
	c->relid = RelationGetRelid(rel);
	c->generation = policy_current_generation();
	return c;
}

/* Set column att (if audit_log has it) of values/nulls. */
static inline void
audit_set(Datum *values, bool *nulls, AttrNumber att, Datum value, bool isnull)
{
	if (att <= 0)
		return;
	values[att - 1] = isnull ? (Datum) 0 : value;
	nulls[att - 1] = isnull;
}

/*
 * Insert events into audit_log with a query, as the extension owner:
 * the way when audit_log has triggers of someone's (a DBA forwarding
 * events elsewhere), which must fire.  (Like every query text in this
 * file, this one names pg_catalog for every type, operator and function
 * it uses: the owner context pins search_path too, but the text should
 * not need it.)
 */
#define NARGS 18
static int64
audit_insert_events_spi(const AuditEvent *events, int n)
{
	static const char *sql =
		"INSERT INTO pii_guard.audit_log (event_time, kind, session_role, acting_role, "
		" client_addr, application_name, backend_pid, xid, query_id, relation, operation, "
		" columns_clear, columns_masked, columns_changed, rows, row_keys, row_keys_masked, detail) "
		"VALUES ($1, $2, $3, $4, $5::pg_catalog.inet, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) "
		"RETURNING event_id";
	Oid			argtypes[NARGS] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, INT4OID, INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT8OID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	static SPIPlanPtr plan = NULL;	/* kept: the plan cache revalidates it */
	OwnerContext oc;
	volatile int64 last = 0;
	int			i;
	bool		save = audit_inserting;

	owner_spi_begin(&oc);
	if (plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, NARGS, argtypes);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the audit insert");
		plan = p;
	}
	audit_inserting = true;
	PG_TRY();
	{
		for (i = 0; i < n; i++)
		{
			const AuditEvent *ev = &events[i];
			Datum		v[NARGS];
			char		nulls[NARGS + 1];
			bool		isnull;
			const char *s;
			int			j;

			if (ev->kind == 0)
				continue;		/* dropped (audit_resolve_refusals) */
			memset(nulls, ' ', NARGS);
			nulls[NARGS] = '\0';
			v[0] = TimestampTzGetDatum(ev->at);
			v[1] = CStringGetTextDatum(audit_kind_name(ev->kind));
			s = GetUserNameFromId(ev->session_role, true);
			v[2] = CStringGetTextDatum(s ? s : psprintf("%u", ev->session_role));
			s = GetUserNameFromId(ev->current_role, true);
			v[3] = CStringGetTextDatum(s ? s : psprintf("%u", ev->current_role));
			if (ev->client_addr[0] && strcmp(ev->client_addr, "[local]") != 0)
				v[4] = CStringGetTextDatum(ev->client_addr);
			else
				nulls[4] = 'n';
			v[5] = CStringGetTextDatum(ev->application_name);
			v[6] = Int32GetDatum(ev->pid);
			v[7] = Int64GetDatum((int64) ev->xid);
			if (ev->xid == InvalidTransactionId)
				nulls[7] = 'n';
			v[8] = Int64GetDatum((int64) ev->query_id);
			if (ev->query_id == 0)
				nulls[8] = 'n';
			v[9] = CStringGetTextDatum(ev->relation);
			if (!ev->relation[0])
				nulls[9] = 'n';
			v[10] = CStringGetTextDatum(ev->operation);
			if (!ev->operation[0])
				nulls[10] = 'n';
			v[11] = audit_list_datum(ev->columns_clear, &isnull);
			nulls[11] = isnull ? 'n' : ' ';
			v[12] = audit_list_datum(ev->columns_masked, &isnull);
			nulls[12] = isnull ? 'n' : ' ';
			v[13] = audit_list_datum(ev->columns_changed, &isnull);
			nulls[13] = isnull ? 'n' : ' ';
			v[14] = Int64GetDatum(ev->rows);
			v[15] = audit_list_datum(ev->row_keys, &isnull);
			nulls[15] = isnull ? 'n' : ' ';
			v[16] = audit_list_datum(ev->row_keys_masked, &isnull);
			nulls[16] = isnull ? 'n' : ' ';
			v[17] = CStringGetTextDatum(ev->detail);
			if (!ev->detail[0])
				nulls[17] = 'n';
			for (j = 0; j < NARGS; j++)
				if (nulls[j] == 'n')
					v[j] = (Datum) 0;
			if (SPI_execute_plan(plan, v, nulls, false, 1) != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "could not insert an audit event");
			last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
			if (audit_inserted_first == 0)
				audit_inserted_first = last;
			audit_mirror(ev, last);
		}
	}
	PG_FINALLY();
	{
		audit_inserting = save;
	}
	PG_END_TRY();
	owner_spi_end(&oc);
	return last;
}
#undef NARGS

/* Has audit_log triggers besides pii_guard's own guard? */
static bool
audit_log_has_other_triggers(Relation rel)
{
	TriggerDesc *td = rel->trigdesc;

	if (td == NULL)
		return false;
	for (int i = 0; i < td->numtriggers; i++)
		if (strcmp(td->triggers[i].tgname, "audit_log_guard") != 0 &&
			strcmp(td->triggers[i].tgname, "audit_log_no_truncate") != 0)
			return true;
	return false;
}

/*
 * audit_log's indexes, as the direct insert below maintains them: what
 * ExecOpenIndices and ExecInsertIndexTuples would build for every event
 * (an IndexInfo per index, the partial index's predicate and the
 * expression index's expressions made executable -- a third of an
 * event's cost) is built once per backend, until audit_log or one of its
 * indexes changes.  Only for B-tree and BRIN indexes with immediate
 * constraints and no exclusion constraint; anything else (an index a DBA
 * added of another kind) takes the executor's own way.
 */
typedef struct AuditIndexes
{
	bool		valid;
	bool		usable;			/* else: ExecOpenIndices and ExecInsertIndexTuples */
	Oid			relid;
	int			n;
	Oid		   *oids;
	IndexInfo **info;
} AuditIndexes;

static AuditIndexes audit_indexes;
static MemoryContext AuditIndexContext = NULL;

/* A relation changed (relcache invalidation): audit_log or its indexes? */
void
audit_relation_changed(Oid relid)
{
	if (!audit_indexes.valid)
		return;
	if (relid == InvalidOid || relid == audit_indexes.relid)
		audit_indexes.valid = false;
	for (int i = 0; audit_indexes.valid && i < audit_indexes.n; i++)
		if (audit_indexes.oids[i] == relid)
			audit_indexes.valid = false;
}

/* The indexes of rel (audit_log), built if need be. */
static AuditIndexes *
audit_indexes_of(Relation rel)
{
	List	   *oids;
	ListCell   *lc;
	MemoryContext old;
	int			i = 0;

	if (audit_indexes.valid && audit_indexes.relid == RelationGetRelid(rel))
		return &audit_indexes;
	if (AuditIndexContext == NULL)
		AuditIndexContext = AllocSetContextCreate(TopMemoryContext, "pii_guard audit indexes",
												  ALLOCSET_SMALL_SIZES);
	MemoryContextReset(AuditIndexContext);
	memset(&audit_indexes, 0, sizeof(audit_indexes));
	old = MemoryContextSwitchTo(AuditIndexContext);
	oids = RelationGetIndexList(rel);
	audit_indexes.relid = RelationGetRelid(rel);
	audit_indexes.n = list_length(oids);
	audit_indexes.oids = palloc0(sizeof(Oid) * Max(audit_indexes.n, 1));
	audit_indexes.info = palloc0(sizeof(IndexInfo *) * Max(audit_indexes.n, 1));
	audit_indexes.usable = true;
	foreach(lc, oids)
	{
		Relation	irel = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(irel);

		if ((irel->rd_rel->relam != BTREE_AM_OID && irel->rd_rel->relam != BRIN_AM_OID) ||
			ii->ii_ExclusionOps != NULL ||
			!irel->rd_index->indimmediate)
			audit_indexes.usable = false;
		if (ii->ii_Predicate != NIL)
			ii->ii_PredicateState =
				ExecInitQual((List *) expression_planner((Expr *) ii->ii_Predicate), NULL);
		if (ii->ii_Expressions != NIL)
			ii->ii_ExpressionsState =
				ExecInitExprList((List *) expression_planner((Expr *) ii->ii_Expressions), NULL);
		audit_indexes.oids[i] = lfirst_oid(lc);
		audit_indexes.info[i] = ii;
		i++;
		index_close(irel, NoLock);
	}
	MemoryContextSwitchTo(old);
	audit_indexes.valid = true;
	return &audit_indexes;
}

/* Insert the index entries of tuple (stored in slot) into audit_log's indexes. */
static void
audit_insert_index_entries(Relation rel, const AuditIndexes *ai, Relation *irels,
						   HeapTuple tuple, TupleTableSlot *slot, EState *estate)
{
	ExprContext *econtext = GetPerTupleExprContext(estate);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	econtext->ecxt_scantuple = slot;
	for (int i = 0; i < ai->n; i++)
	{
		IndexInfo  *ii = ai->info[i];

		if (!ii->ii_ReadyForInserts)
			continue;
		if (ii->ii_PredicateState != NULL && !ExecQual(ii->ii_PredicateState, econtext))
			continue;
		/* (opened when first needed: a partial index most events skip) */
		if (irels[i] == NULL)
			irels[i] = index_open(ai->oids[i], RowExclusiveLock);
		FormIndexDatum(ii, slot, estate, values, isnull);
		(void) index_insert(irels[i], values, isnull, &tuple->t_self, rel,
							ii->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
#if PG_VERSION_NUM >= 140000
							false,
#endif
							ii);
	}
}

/*
 * Insert events into audit_log, in the current transaction.  Returns the
 * event_id of the last one.  The rows are written straight to the table
 * and its indexes -- no query, no executor: this is the write path of
 * every audited statement, and it is pii_guard's own table (its guard
 * trigger exists to refuse everyone else's rows; the row MAC it would add
 * is computed here).  If someone gave the table triggers of their own,
 * the rows go in by a query, so that those fire.
 */
int64		audit_inserted_first = 0;	/* the first id of the last insert */

int64
audit_insert_events(const AuditEvent *events, int n)
{
	Relation	rel;
	TupleDesc	desc;
	const AuditLogColumns *c;
	EState	   *estate;
	ResultRelInfo *rri = NULL;
	const AuditIndexes *ai;
	Relation   *irels = NULL;
	TupleTableSlot *slot;
	Datum	   *values;
	bool	   *nulls;
	int64		last = 0;
	int			i;

	audit_inserted_first = 0;
	rel = table_open(pii_guard_relation_oid("audit_log", false), RowExclusiveLock);
	if (audit_log_has_other_triggers(rel))
	{
		table_close(rel, NoLock);
		return audit_insert_events_spi(events, n);
	}
	desc = RelationGetDescr(rel);
	c = audit_log_columns_of(rel);
	ai = audit_indexes_of(rel);
	estate = CreateExecutorState();
	if (ai->usable)
	{
		irels = palloc0(sizeof(Relation) * Max(ai->n, 1));
	}
	else
	{
		rri = makeNode(ResultRelInfo);
		InitResultRelInfo(rri, rel, 1, NULL, 0);
		ExecOpenIndices(rri, false);
	}
	slot = ExecInitExtraTupleSlot(estate, desc, &TTSOpsHeapTuple);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	for (i = 0; i < n; i++)
	{
		const AuditEvent *ev = &events[i];
		HeapTuple	tuple;
		const char *s;
		bool		isnull;
		uint8		mac[32];
		bytea	   *macb;
		Datum		d;

		if (ev->kind == 0)
			continue;			/* dropped (audit_resolve_refusals) */
		for (int j = 0; j < desc->natts; j++)
		{
			values[j] = (Datum) 0;
			nulls[j] = true;
		}
		last = nextval_internal(c->seq, false);
		if (audit_inserted_first == 0)
			audit_inserted_first = last;
		audit_set(values, nulls, c->event_id, Int64GetDatum(last), false);
		audit_set(values, nulls, c->event_time, TimestampTzGetDatum(ev->at), false);
		audit_set(values, nulls, c->kind, CStringGetTextDatum(audit_kind_name(ev->kind)), false);
		s = GetUserNameFromId(ev->session_role, true);
		audit_set(values, nulls, c->session_role,
				  CStringGetTextDatum(s ? s : psprintf("%u", ev->session_role)), false);
		s = GetUserNameFromId(ev->current_role, true);
		audit_set(values, nulls, c->acting_role,
				  CStringGetTextDatum(s ? s : psprintf("%u", ev->current_role)), false);
		if (ev->client_addr[0] && strcmp(ev->client_addr, "[local]") != 0)
			audit_set(values, nulls, c->client_addr,
					  DirectFunctionCall1(inet_in, CStringGetDatum(ev->client_addr)), false);
		audit_set(values, nulls, c->application_name, CStringGetTextDatum(ev->application_name), false);
		audit_set(values, nulls, c->backend_pid, Int32GetDatum(ev->pid), false);
		audit_set(values, nulls, c->xid, Int64GetDatum((int64) ev->xid), ev->xid == InvalidTransactionId);
		audit_set(values, nulls, c->query_id, Int64GetDatum((int64) ev->query_id), ev->query_id == 0);
		audit_set(values, nulls, c->relation, CStringGetTextDatum(ev->relation), !ev->relation[0]);
		audit_set(values, nulls, c->operation, CStringGetTextDatum(ev->operation), !ev->operation[0]);
		d = audit_list_datum(ev->columns_clear, &isnull);
		audit_set(values, nulls, c->columns_clear, d, isnull);
		d = audit_list_datum(ev->columns_masked, &isnull);
		audit_set(values, nulls, c->columns_masked, d, isnull);
		d = audit_list_datum(ev->columns_changed, &isnull);
		audit_set(values, nulls, c->columns_changed, d, isnull);
		audit_set(values, nulls, c->rows, Int64GetDatum(ev->rows), false);
		d = audit_list_datum(ev->row_keys, &isnull);
		audit_set(values, nulls, c->row_keys, d, isnull);
		d = audit_list_datum(ev->row_keys_masked, &isnull);
		audit_set(values, nulls, c->row_keys_masked, d, isnull);
		audit_set(values, nulls, c->detail, CStringGetTextDatum(ev->detail), !ev->detail[0]);

		/* The row MAC, over the row as it is stored (row_mac NULL). */
		audit_values_mac(values, nulls, desc, mac);
		macb = palloc(VARHDRSZ + 32);
		SET_VARSIZE(macb, VARHDRSZ + 32);
		memcpy(VARDATA(macb), mac, 32);
		audit_set(values, nulls, c->row_mac, PointerGetDatum(macb), false);
		tuple = heap_form_tuple(desc, values, nulls);

		simple_heap_insert(rel, tuple);
		ExecStoreHeapTuple(tuple, slot, false);
		if (ai->usable)
			audit_insert_index_entries(rel, ai, irels, tuple, slot, estate);
		else
			compat_insert_index_tuples(rri, slot, estate);
		ExecClearTuple(slot);
		heap_freetuple(tuple);
		audit_mirror(ev, last);
		ResetPerTupleExprContext(estate);
	}
	if (ai->usable)
	{
		for (i = 0; i < ai->n; i++)
			if (irels[i] != NULL)
				index_close(irels[i], NoLock);
	}
	else
		ExecCloseIndices(rri);
	ExecResetTupleTable(estate->es_tupleTable, false);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	/* (what follows in this transaction sees the rows) */
	CommandCounterIncrement();
	return last;
}

/* Insert one event now, atomically with the current transaction. */
int64
audit_insert_now(const AuditEvent *ev)
{
	int64		id = audit_insert_events(ev, 1);

	audit_ensure_worker();
	return id;
}

/*
 * What the worker knows of unsealed rows below the newest sealed one: the
 * event ids missing when it last sealed rows above it (an id is taken from
 * the sequence before its transaction commits, so a later id can commit
 * first; or the transaction rolled back, and the id never comes).  Each is
 * looked for again at every seal, for AUDIT_GAP_KEEP; after that, the
 * sweep finds it if it ever comes.  When the gaps are not known -- the
 * worker's first seal, after a failed cycle, too many gaps -- the seal
 * looks at the last AUDIT_SEAL_WINDOW event ids instead.  (Looking at that
 * window at every seal made the worker read ten thousand rows of each
 * table every half second, whatever was written.)
 */
#define AUDIT_MAX_GAPS		10000
#define AUDIT_GAP_KEEP		(60 * USECS_PER_SEC)

static int64 *seal_gaps = NULL;		/* ascending */
static TimestampTz *seal_gap_since = NULL;
static int	nseal_gaps = 0;
static bool seal_gaps_known = false;

/* Forget the gaps (the worker's cycle failed: what it sealed is undone). */
void
audit_seal_forget(void)
{
	seal_gaps_known = false;
	nseal_gaps = 0;
}

/*
 * After a seal: remove the ids it sealed from the gaps, drop those kept
 * long enough, and add the ids missing between the newest sealed row
 * before it (newest) and the newest it sealed.  ids[0 .. n - 1] ascending.
 */
static void
audit_seal_note_gaps(const Datum *ids, uint64 n, int64 newest, TimestampTz now)
{
	int			kept = 0;
	uint64		k = 0;
	int64		expected = newest + 1;

	if (seal_gaps == NULL)
	{
		seal_gaps = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * AUDIT_MAX_GAPS);
		seal_gap_since = MemoryContextAlloc(TopMemoryContext, sizeof(TimestampTz) * AUDIT_MAX_GAPS);
	}
	for (int i = 0; i < nseal_gaps; i++)
	{
		while (k < n && DatumGetInt64(ids[k]) < seal_gaps[i])
			k++;
		if (k < n && DatumGetInt64(ids[k]) == seal_gaps[i])
			continue;			/* sealed now */
		if (now - seal_gap_since[i] > AUDIT_GAP_KEEP)
			continue;			/* the sweep's now */
		seal_gaps[kept] = seal_gaps[i];
		seal_gap_since[kept] = seal_gap_since[i];
		kept++;
	}
	nseal_gaps = kept;
	for (k = 0; k < n; k++)
	{
		int64		id = DatumGetInt64(ids[k]);

		if (id <= newest)
			continue;
		if (id - expected > AUDIT_MAX_GAPS - nseal_gaps)
		{
			audit_seal_forget();
			return;
		}
		for (; expected < id; expected++)
		{
			seal_gaps[nseal_gaps] = expected;
			seal_gap_since[nseal_gaps] = now;
			nseal_gaps++;
		}
		expected = id + 1;
	}
	seal_gaps_known = true;
}

/*
 * Seal committed, unsealed rows into the chain, in event_id order, as the
 * extension owner.  Runs in the worker's transaction.  Every query is
 * bounded, so that its cost does not grow with the size of audit_log:
 * without sweep, the rows above the newest sealed one and the known gaps
 * below it (or, when those are not known, the last 10,000 event ids); with
 * sweep, the 100,000 ids from *sweep on, after which *sweep moves on (back
 * to the start past the newest sealed row).  The sweep, run now and then,
 * catches rows whose transactions committed long after their neighbours.
 */
/*
 * The chain's head, anchored outside the database.  Deleting the newest
 * rows and their seals (a superuser with the guards off) leaves a chain
 * that verifies; a head kept elsewhere -- the server log, or wherever
 * pii_guard.audit_anchor_command appends it -- does not match it any more
 * (verify_audit(anchor)).  After each sealing that moved the head, once
 * the worker's transaction has committed, the head is logged as
 *   pii_guard audit anchor: database "D" anchor SEQ:HASH (event E)
 * and given to the command, if one is set (%a the anchor, %d the database,
 * %s the seal sequence, %e the event id, %h the hash in hex, %% a %),
 * run as the key commands are, for at most 10 s (what it prints is
 * ignored).
 */
/*
 * A command template with its %-placeholders replaced: %X becomes the
 * value of letter X in letters (values[i] for letters[i]), %% a %, any
 * other %X stays X.
 */
static char *
audit_command_expand(const char *tmpl, const char *letters, const char *const *values)
{
	StringInfoData cmd;

	initStringInfo(&cmd);
	for (const char *p = tmpl; *p; p++)
	{
		const char *at;

		if (*p != '%' || p[1] == '\0')
		{
			appendStringInfoChar(&cmd, *p);
			continue;
		}
		p++;
		at = strchr(letters, *p);
		if (at != NULL && *p != '\0')
			appendStringInfoString(&cmd, values[at - letters]);
		else
			appendStringInfoChar(&cmd, *p);
	}
	return cmd.data;
}

/* Run an audit command (as the key commands run); a failure is a WARNING. */
static void
audit_command_run(const char *command, const char *setting, const char *what)
{
	char		out[64];
	size_t		nout;
	int			rc;
	const char *failure = keys_run_command(command, out, sizeof(out), &nout, 10, &rc);

	if (failure == NULL && rc != 0)
		failure = wait_result_to_str(rc);
	if (failure != NULL)
		ereport(WARNING,
				(errmsg("%s failed for %s: %s", setting, what, failure),
				 errhint("The event is in the audit log; the command is run again for the next one.")));
}

static bool anchor_pending = false;
static int64 anchor_seq;
static int64 anchor_event;
static uint8 anchor_hash[32];
static char anchor_db[NAMEDATALEN];	/* (named in the transaction) */

char	   *pii_guard_audit_anchor_command = NULL;

void
audit_anchor_publish(bool committed)
{
	char		hex[65];
	char		anchor[96];
	char		seq[24];
	char		event[24];
	char		db[NAMEDATALEN];
	const char *values[5];
	char	   *cmd;

	if (!anchor_pending)
		return;
	anchor_pending = false;
	if (!committed)
		return;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", anchor_hash[i]);
	snprintf(anchor, sizeof(anchor), INT64_FORMAT ":%s", anchor_seq, hex);
	ereport(LOG,
			(errmsg("pii_guard audit anchor: database \"%s\" anchor %s (event " INT64_FORMAT ")",
					anchor_db, anchor, anchor_event),
			 errhidestmt(true)));
	if (pii_guard_audit_anchor_command == NULL || pii_guard_audit_anchor_command[0] == '\0')
		return;
	/* (a database name may hold anything: only safe characters) */
	for (int i = 0; i < NAMEDATALEN; i++)
	{
		char		c = anchor_db[i];

		db[i] = (c == '\0' || isalnum((unsigned char) c) || c == '_' || c == '-') ? c : '_';
		if (c == '\0')
			break;
	}
	snprintf(seq, sizeof(seq), INT64_FORMAT, anchor_seq);
	snprintf(event, sizeof(event), INT64_FORMAT, anchor_event);
	values[0] = anchor;
	values[1] = db;
	values[2] = seq;
	values[3] = event;
	values[4] = hex;
	cmd = audit_command_expand(pii_guard_audit_anchor_command, "adseh", values);
	audit_command_run(cmd, "pii_guard.audit_anchor_command", anchor);
	pfree(cmd);
}

/*
 * Alerts (see the install script's _alerts_due): in the worker, once a
 * second, the thresholds the events it wrote since cross become alert
 * events, each NOTIFY pii_guard_alert with its event id; once committed,
 * pii_guard.alert_command runs for each (%i the event id, %r the role,
 * %a the rule).
 */
char	   *pii_guard_alert_command = NULL;
static List *alerts_pending = NIL;	/* "id role rule" strings, TopMemoryContext */
static int64 alerts_from = 0;	/* events written, not yet looked at */
static int64 alerts_to = 0;
static TimestampTz alerts_checked = 0;

void
audit_raise_alerts(int64 first, int64 last, bool hurry)
{
	OwnerContext oc;
	MemoryContext outer = CurrentMemoryContext;
	AuditEvent *evs = NULL;
	uint64		n = 0;
	int64		id;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	TimestampTz now = GetCurrentTimestamp();

	/*
	 * At most once a second, over the events written since the last look:
	 * the thresholds' sums read up to an hour of audit_log, which must not
	 * be done at every cycle of a busy worker.  (Called at every cycle,
	 * with no events too, so that a quiet spell does not hold a due alert;
	 * hurry: the worker is stopping.)
	 */
	if (first > 0 && last >= first)
	{
		if (alerts_from == 0)
			alerts_from = first;
		alerts_to = last;
	}
	if (alerts_from == 0 || (!hurry && now - alerts_checked < USECS_PER_SEC))
		return;
	first = alerts_from;
	last = alerts_to;
	alerts_from = alerts_to = 0;
	alerts_checked = now;
	/* (the worker's snapshot must see the rows just inserted) */
	if (ActiveSnapshotSet())
		UpdateActiveSnapshotCommandId();
	owner_spi_begin(&oc);
	if (SPI_execute("SELECT 1 FROM pii_guard.profiles p WHERE p.alert_denials_per_minute IS NOT NULL "
					"OR p.alert_rows_per_hour IS NOT NULL OR p.alert_work_from IS NOT NULL "
					"OR p.alert_dormant_after IS NOT NULL LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the alert thresholds");
	if (SPI_processed == 0)
	{
		owner_spi_end(&oc);
		return;
	}
	args[0] = Int64GetDatum(first);
	args[1] = Int64GetDatum(last);
	if (SPI_execute_with_args("SELECT * FROM pii_guard._alerts_due($1, $2)", 2, argtypes, args,
							  NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look for alerts");
	n = SPI_processed;
	if (n > 0)
	{
		evs = MemoryContextAllocZero(outer, sizeof(AuditEvent) * n);
	}
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *session = SPI_getvalue(t, d, 1);
		char	   *acting = SPI_getvalue(t, d, 2);

		audit_event_init(&evs[i], AUDIT_ALERT);
		evs[i].session_role = session ? get_role_oid(session, true) : InvalidOid;
		evs[i].current_role = acting ? get_role_oid(acting, true) : InvalidOid;
		evs[i].pid = 0;
		evs[i].client_addr[0] = '\0';
		evs[i].application_name[0] = '\0';
		AUDIT_SET(&evs[i], operation, SPI_getvalue(t, d, 3));
		AUDIT_SET(&evs[i], detail, SPI_getvalue(t, d, 4));
	}
	owner_spi_end(&oc);
	if (n == 0)
		return;
	(void) audit_insert_events(evs, (int) n);
	id = audit_inserted_first;
	for (uint64 i = 0; i < n; i++, id++)
	{
		char		payload[32];
		MemoryContext old;

		snprintf(payload, sizeof(payload), INT64_FORMAT, id);
		Async_Notify("pii_guard_alert", payload);
		old = MemoryContextSwitchTo(TopMemoryContext);
		alerts_pending = lappend(alerts_pending,
								 psprintf(INT64_FORMAT "\t%u\t%s", id, evs[i].current_role, evs[i].operation));
		MemoryContextSwitchTo(old);
	}
}

/* After the worker's commit (or its failure): run the alert command. */
void
audit_alerts_publish(bool committed)
{
	List	   *pending = alerts_pending;
	ListCell   *lc;

	alerts_pending = NIL;
	foreach(lc, pending)
	{
		char	   *id = (char *) lfirst(lc);
		char	   *role = strchr(id, '\t');
		char	   *rule = role ? strchr(role + 1, '\t') : NULL;
		const char *values[3];
		char	   *cmd;

		if (!committed || rule == NULL || pii_guard_alert_command == NULL ||
			pii_guard_alert_command[0] == '\0')
			continue;
		*role++ = '\0';
		*rule++ = '\0';
		values[0] = id;
		values[1] = role;		/* (an OID) */
		values[2] = rule;
		cmd = audit_command_expand(pii_guard_alert_command, "ira", values);
		audit_command_run(cmd, "pii_guard.alert_command", psprintf("alert %s", id));
		pfree(cmd);
	}
	list_free_deep(pending);
}

#define AUDIT_SEAL_WINDOW	10000
#define AUDIT_SWEEP_CHUNK	100000
void
audit_seal_rows(int64 *sweep)
{
	OwnerContext oc;
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	bytea	   *prev = NULL;
	int64		seq = 0;
	int64		newest = 0;
	bool		isnull;
	bool		by_gaps;
	Oid			argtypes[3] = {INT8ARRAYOID, INT8ARRAYOID, BYTEAARRAYOID};
	Oid			rangetypes[2] = {INT8OID, INT8OID};
	Oid			gaptypes[2] = {INT8OID, INT8ARRAYOID};
	Datum		range[2];
	Datum	   *seqs;
	Datum	   *ids;
	Datum	   *links;
	Datum		v[3];

	owner_spi_begin(&oc);
	if (SPI_execute("SELECT s.seal_seq, s.chain_hash FROM pii_guard.audit_seal s "
					"ORDER BY s.seal_seq DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the audit chain");
	if (SPI_processed == 1)
	{
		seq = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		prev = DatumGetByteaPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	if (SPI_execute("SELECT s.event_id FROM pii_guard.audit_seal s "
					"ORDER BY s.event_id DESC LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the audit chain");
	if (SPI_processed == 1)
		newest = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	by_gaps = sweep == NULL && seal_gaps_known;
	if (by_gaps)
	{
		Datum	   *gaps = palloc(sizeof(Datum) * Max(nseal_gaps, 1));

		for (int g = 0; g < nseal_gaps; g++)
			gaps[g] = Int64GetDatum(seal_gaps[g]);
		range[0] = Int64GetDatum(newest);
		range[1] = PointerGetDatum(construct_array(gaps, nseal_gaps, INT8OID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		/* (Nothing above the newest sealed row is sealed: no anti-join there.) */
		if (SPI_execute_with_args("SELECT a.event_id, a.row_mac FROM pii_guard.audit_log a "
								  "WHERE a.event_id OPERATOR(pg_catalog.>) $1 "
								  "UNION ALL "
								  "SELECT a.event_id, a.row_mac FROM pii_guard.audit_log a "
								  "WHERE a.event_id OPERATOR(pg_catalog.=) ANY ($2) "
								  "AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s "
								  "  WHERE s.event_id OPERATOR(pg_catalog.=) a.event_id) "
								  "ORDER BY 1 LIMIT 10000",
								  2, gaptypes, range, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read unsealed audit rows");
	}
	else
	{
		if (sweep == NULL)
		{
			range[0] = Int64GetDatum(newest - AUDIT_SEAL_WINDOW);
			range[1] = Int64GetDatum(PG_INT64_MAX);
		}
		else
		{
			if (*sweep > newest)
				*sweep = 0;
			range[0] = Int64GetDatum(*sweep);
			range[1] = Int64GetDatum(*sweep + AUDIT_SWEEP_CHUNK);
			*sweep += AUDIT_SWEEP_CHUNK;
		}
		/*
		 * The ids first, from the two primary keys alone (index-only scans
		 * of a log that autovacuum keeps all-visible: a sweep reads no
		 * row), then the few rows they name.  (The range on audit_seal
		 * too: or the anti-join reads all of it.)
		 */
		if (SPI_execute_with_args("SELECT pg_catalog.array_agg(u.event_id) FROM ("
								  " SELECT a.event_id FROM pii_guard.audit_log a "
								  " WHERE a.event_id OPERATOR(pg_catalog.>) $1 "
								  " AND a.event_id OPERATOR(pg_catalog.<=) $2 "
								  " AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_seal s "
								  "  WHERE s.event_id OPERATOR(pg_catalog.=) a.event_id "
								  "    AND s.event_id OPERATOR(pg_catalog.>) $1 "
								  "    AND s.event_id OPERATOR(pg_catalog.<=) $2) "
								  " ORDER BY a.event_id LIMIT 10000) u",
								  2, rangetypes, range, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read unsealed audit rows");
		range[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (isnull)
			range[0] = PointerGetDatum(construct_empty_array(INT8OID));
		if (SPI_execute_with_args("SELECT a.event_id, a.row_mac FROM pii_guard.audit_log a "
								  "WHERE a.event_id OPERATOR(pg_catalog.=) ANY ($1) "
								  "ORDER BY a.event_id",
								  1, &gaptypes[1], range, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read unsealed audit rows");
	}
	rows = SPI_tuptable;
	n = SPI_processed;
	if (n > 0)
	{
		seqs = palloc(sizeof(Datum) * n);
		ids = palloc(sizeof(Datum) * n);
		links = palloc(sizeof(Datum) * n);
		for (i = 0; i < n; i++)
		{
			int64		event_id = DatumGetInt64(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			Datum		m = SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull);
			bytea	   *link = audit_chain_link(prev, event_id, isnull ? NULL : DatumGetByteaPP(m));

			seq++;
			seqs[i] = Int64GetDatum(seq);
			ids[i] = Int64GetDatum(event_id);
			links[i] = PointerGetDatum(link);
			prev = link;
		}
		/* The new head, for the anchor (published once committed). */
		anchor_seq = seq;
		anchor_event = DatumGetInt64(ids[n - 1]);
		memcpy(anchor_hash, VARDATA_ANY(prev), Min(VARSIZE_ANY_EXHDR(prev), sizeof(anchor_hash)));
		if (anchor_db[0] == '\0')
		{
			char	   *db = get_database_name(MyDatabaseId);

			strlcpy(anchor_db, db ? db : "?", sizeof(anchor_db));
		}
		anchor_pending = true;
		/* One statement for the whole batch. */
		v[0] = PointerGetDatum(construct_array(seqs, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[1] = PointerGetDatum(construct_array(ids, (int) n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		v[2] = PointerGetDatum(construct_array(links, (int) n, BYTEAOID, -1, false, TYPALIGN_INT));
		if (SPI_execute_with_args("INSERT INTO pii_guard.audit_seal (seal_seq, event_id, chain_hash) "
								  "SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
								  3, argtypes, v, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not seal audit rows");
	}
	else
		ids = NULL;
	/* The gaps below what this seal reached (not the sweep's business). */
	if (sweep == NULL)
		audit_seal_note_gaps(ids, n, newest, GetCurrentTimestamp());
	owner_spi_end(&oc);
}

/*
 * Grants expire by themselves; the worker records each expiry once, as an
 * admin event, so that the trail shows issue, use and end of every grant.
 * The grants are read as the extension owner; the events name the worker's
 * own role as acting role, as every event the worker makes.  Only grants
 * that ended after since are looked at (DT_NOBEGIN: all); whether a grant's
 * expiry is recorded is one probe of the partial index
 * audit_log_grant_expired, never a scan of audit_log.  Returns the time up
 * to which every ended grant it could see is now recorded (0 when there
 * were more than it takes at once): the caller's next since, once this
 * transaction has committed.
 */
TimestampTz
audit_record_grant_expiries(TimestampTz since)
{
	OwnerContext oc;
	Oid			acting_role = GetUserId();
	MemoryContext outer = CurrentMemoryContext;
	uint64		i;
	uint64		n;
	SPITupleTable *rows;
	AuditEvent *evs = NULL;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		args[1];
	TimestampTz done = GetCurrentTransactionStartTimestamp();	/* now() */

	owner_spi_begin(&oc);
	/*
	 * An expiry recorded before an archive's cutoff has been archived: only
	 * grants that ended at or after the newest cutoff are looked at.
	 */
	if (OidIsValid(pii_guard_relation_oid("audit_archives", true)))
	{
		bool		isnull;
		Datum		cutoff;

		if (SPI_execute("SELECT pg_catalog.max(x.older_than) FROM pii_guard.audit_archives x",
						true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read pii_guard.audit_archives");
		cutoff = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull && DatumGetTimestampTz(cutoff) - 1 > since)
			since = DatumGetTimestampTz(cutoff) - 1;
	}
	args[0] = TimestampTzGetDatum(since);
	if (SPI_execute_with_args("SELECT g.grant_id, g.kind, g.role::pg_catalog.text, "
							  "       coalesce(g.base::pg_catalog.text, ''), g.valid_until "
							  "FROM pii_guard.grants g "
							  "WHERE g.valid_until OPERATOR(pg_catalog.<=) pg_catalog.now() "
							  "AND g.valid_until OPERATOR(pg_catalog.>) $1 "
							  "AND g.revoked_at IS NULL "
							  "AND NOT EXISTS (SELECT 1 FROM pii_guard.audit_log a "
							  "  WHERE a.kind OPERATOR(pg_catalog.=) 'admin' "
							  "    AND a.operation OPERATOR(pg_catalog.=) 'grant_expired' "
							  "    AND pg_catalog.split_part(a.detail, ':', 1) OPERATOR(pg_catalog.=) "
							  "        pg_catalog.concat('grant ', g.grant_id)) "
							  "ORDER BY g.grant_id LIMIT 100",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read expired grants");
	rows = SPI_tuptable;
	n = SPI_processed;
	if (n > 0)
		evs = MemoryContextAlloc(outer, sizeof(AuditEvent) * n);
	for (i = 0; i < n; i++)
	{
		audit_event_init(&evs[i], AUDIT_ADMIN);
		evs[i].current_role = acting_role;
		AUDIT_SET(&evs[i], operation, "grant_expired");
		snprintf(evs[i].detail, sizeof(evs[i].detail), "grant %s: %s grant for %s on %s ended at %s",
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 1),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 2),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 3),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 4),
				 SPI_getvalue(rows->vals[i], rows->tupdesc, 5));
	}
	owner_spi_end(&oc);
	if (n > 0)
		audit_insert_events(evs, (int) n);
	return n < 100 ? done : 0;
}
