/*-------------------------------------------------------------------------
 *
 * shred.c
 *		Crypto-shredding: the row trigger that keeps a table's encrypted
 *		values under the key of the person each row belongs to.
 *
 * shred_by() records in pii_guard.shredding which column says whose a row
 * is (the table's row key, or a foreign key to the subject's table) and
 * creates this BEFORE INSERT OR UPDATE row trigger, named to run after the
 * table's own BEFORE triggers.  For each encrypted value of the new row:
 *	under a data key (every value is sealed so on input) => opened and
 *	  sealed again under the subject's key, created on first use;
 *	under the subject's own live key => kept;
 *	under another subject's live key (the row's subject changed, or a value
 *	  copied from another row) => sealed again under this subject's;
 *	under a destroyed or unknown subject key (a restore, a copy from another
 *	  database before its keys were brought) => kept as it is: it cannot be
 *	  opened, and must not be lost.
 * A row with no subject (NULL) keeps its values under the data key.  The
 * plaintext is wiped at once; nothing of it leaves this file.  The keys
 * themselves: keys.c, "Subject keys".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "pii_guard.h"

/* What the trigger needs to know of its table, once per statement. */
typedef struct ShredTable
{
	bool		enabled;		/* the table is in pii_guard.shredding */
	Oid			subject_base;
	AttrNumber	subject_att;
	FmgrInfo	subject_out;
	int			nenc;			/* encrypted columns */
	AttrNumber *enc_att;
	char	   *enc_kind;
} ShredTable;

/* Read the table's entry of pii_guard.shredding (as the extension owner). */
static ShredTable *
shred_table(FunctionCallInfo fcinfo, Relation rel)
{
	ShredTable *st = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ShredTable));
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			relid = RelationGetRelid(rel);
	OwnerContext oc;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	char	   *column = NULL;
	bool		isnull;

	owner_spi_begin(&oc);
	if (SPI_execute_with_args("SELECT s.subject_column, s.subject_base::pg_catalog.oid "
							  "FROM pii_guard.shredding s "
							  "WHERE s.base = $1 OR s.base IN "
							  "  (SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) a)",
							  1, argtypes, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pii_guard: could not read pii_guard.shredding");
	if (SPI_processed == 1)
	{
		column = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt,
									 SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		st->subject_base = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 2, &isnull));
	}
	owner_spi_end(&oc);

	fcinfo->flinfo->fn_extra = st;
	if (column == NULL)
		return st;
	st->subject_att = get_attnum(relid, column);
	if (st->subject_att == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", column,
						RelationGetRelationName(rel)),
				 errdetail("pii_guard.shredding names it as the column that says whose each row is."),
				 errhint("Run pii_guard.shred_by() again with the column that says it now.")));
	{
		Oid			typoutput;
		bool		varlena;

		getTypeOutputInfo(TupleDescAttr(desc, st->subject_att - 1)->atttypid, &typoutput, &varlena);
		fmgr_info_cxt(typoutput, &st->subject_out, fcinfo->flinfo->fn_mcxt);
	}
	st->enc_att = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(AttrNumber) * desc->natts);
	st->enc_kind = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->atttypid == enctype_encrypted_text_oid() || att->atttypid == enctype_encrypted_bytea_oid())
		{
			st->enc_att[st->nenc] = att->attnum;
			st->enc_kind[st->nenc] = att->atttypid == enctype_encrypted_text_oid() ?
				ENV_KIND_TEXT : ENV_KIND_BYTEA;
			st->nenc++;
		}
	}
	st->enabled = true;
	return st;
}

PG_FUNCTION_INFO_V1(pii_guard_subject_seal);

/*
 * SQL function: _subject_seal() returns trigger
 *
 * BEFORE INSERT OR UPDATE, FOR EACH ROW, on a table named by shred_by():
 * the row's encrypted values under its subject's key (see the header).
 */
Datum
pii_guard_subject_seal(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	ShredTable *st;
	Datum		subject;
	bool		isnull;
	char	   *row_key = NULL;
	uint32		key_id = 0;
	int		   *cols;
	Datum	   *newvals;
	bool	   *newnulls;
	int			n = 0;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(td->tg_event) || TRIGGER_FIRED_BY_UPDATE(td->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("_subject_seal must be a BEFORE INSERT OR UPDATE row trigger")));
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);

	st = (ShredTable *) fcinfo->flinfo->fn_extra;
	if (st == NULL)
		st = shred_table(fcinfo, td->tg_relation);
	if (!st->enabled || st->nenc == 0)
		return PointerGetDatum(tuple);

	subject = heap_getattr(tuple, st->subject_att, desc, &isnull);
	if (isnull)
		return PointerGetDatum(tuple);

	cols = palloc(sizeof(int) * st->nenc);
	newvals = palloc(sizeof(Datum) * st->nenc);
	newnulls = palloc0(sizeof(bool) * st->nenc);
	for (int i = 0; i < st->nenc; i++)
	{
		Datum		value = heap_getattr(tuple, st->enc_att[i], desc, &isnull);
		bytea	   *env;
		uint32		id;
		bytea	   *plain;

		if (isnull)
			continue;
		env = (bytea *) PG_DETOAST_DATUM_PACKED(value);
		if (VARSIZE_ANY_EXHDR(env) < ENV_OVERHEAD)
			continue;			/* (the type's checks refuse it; not ours to say) */
		id = envelope_key_id(env);
		if (row_key == NULL)
			row_key = OutputFunctionCall(&st->subject_out, subject);
		if (id >= SUBJECT_KEY_MIN)
		{
			if (id == key_id || keys_subject_state(id) != SUBJECT_KEY_LIVE)
				continue;
			if (keys_subject_is_of(id, st->subject_base, row_key))
			{
				key_id = id;
				continue;
			}
		}
		if (key_id == 0)
			key_id = keys_subject_key_id(st->subject_base, row_key);
		plain = crypto_open(env, st->enc_kind[i]);
		cols[n] = st->enc_att[i];
		newvals[n] = PointerGetDatum(crypto_seal_subject(st->enc_kind[i], VARDATA(plain),
														 VARSIZE(plain) - VARHDRSZ, key_id));
		crypto_wipe(plain);
		n++;
	}
	if (n == 0)
		return PointerGetDatum(tuple);
	return PointerGetDatum(heap_modify_tuple_by_cols(tuple, desc, n, cols, newvals, newnulls));
}
