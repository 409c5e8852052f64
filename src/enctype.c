/*-------------------------------------------------------------------------
 *
 * enctype.c
 *		The SQL types pii_guard.encrypted_text and pii_guard.encrypted_bytea.
 *
 * Both are varlenas holding an envelope (pii_guard.h).  Their text form is
 * ENV_TEXT_PREFIX followed by the envelope in base64.
 *
 * Input: a string with the envelope prefix is an envelope (that is how dumps
 * and COPY restore) and is checked structurally, not decrypted: keys may be
 * restored after the data.  Any other string is plaintext and is encrypted
 * under the active data key.  Output, send and receive only ever handle the
 * envelope, so plaintext never leaves through the type itself: pg_dump,
 * COPY, replication and logs see ciphertext.  Plaintext leaves only through
 * decrypt() (refused to roles that may not) and, later, masking views.
 *
 * Comparison: equality, btree and hash support compare the blind index, so
 * `col = 'plaintext'`, UNIQUE, hash joins and indexes work without
 * decrypting.  The btree ordering is the ordering of blind indexes, which
 * says nothing about the plaintexts; so that nobody mistakes it for one, its
 * operators are spelled ~<~ ~<=~ ~>=~ ~>~ and there is no "<" on these types.
 * The same C functions serve both types: the kind byte is in the header and
 * the blind index is domain-separated by kind.
 *
 * Who may make a blind index.  An envelope carries the blind index of its
 * plaintext, and comparing a plaintext with an envelope computes one: so
 * whoever may encrypt or compare a plaintext of their choosing can test
 * guesses against any envelope they hold (a stolen dump, say) -- a
 * million a second.  Both are therefore reserved to trusted roles
 * (enctype_trusted: superusers, members of pii_guard_admin and of
 * pii_guard_encryptor, and owners of protected tables).  Everyone else
 * writes plaintext only through a masking view, whose trigger seals it
 * (views.c), and searches only through a masking view, where lookup.c
 * compares the stored column with a probe -- _blind_probe(), which
 * answers only at the call sites lookup.c built (PII_SITE_MARK), for
 * roles that see the column in clear anyway.  Envelope text input (dumps,
 * COPY) and envelope-to-envelope comparison use no key and stay open:
 * which stored values are equal is what a dump shows already.  Refusals
 * are 42501, audited.
 *
 * Errors: every ERROR raised while handling a value (here, in crypto.c and
 * in keys.c) carries errhidestmt(true).  The statement text may hold the
 * plaintext -- INSERT ... VALUES ('13812345678') -- and must not be written
 * to the server log beside our error.  No message ever quotes a value.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/crypto.h>

#include "access/hash.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "common/hashfn.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "pii_guard.h"

/* Per-call-site cache of the decrypt permission decision. */
typedef struct DecryptPermission
{
	Oid			userid;
	bool		allowed;
} DecryptPermission;

/*
 * Header bytes of an envelope without detoasting all of it.  Sets *copy
 * when it had to fetch a slice, which the caller pfrees.
 */
static const uint8 *
envelope_header(Datum d, struct varlena **copy)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(d);

	*copy = NULL;
	if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
	{
		v = pg_detoast_datum_slice(v, 0, ENV_HEADER_LEN);
		*copy = v;
	}
	if (VARSIZE_ANY_EXHDR(v) < ENV_HEADER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("encrypted value is damaged"),
				 errdetail("Its envelope is shorter than an envelope header.")));
	return (const uint8 *) VARDATA_ANY(v);
}

/* memcmp of the blind indexes of two envelopes. */
static int
envelope_compare(Datum a, Datum b)
{
	struct varlena *ca;
	struct varlena *cb;
	const uint8 *ha = envelope_header(a, &ca);
	const uint8 *hb = envelope_header(b, &cb);
	int			r = memcmp(ha + ENV_OFF_BLIND, hb + ENV_OFF_BLIND, ENV_BLIND_LEN);

	if (ca)
		pfree(ca);
	if (cb)
		pfree(cb);
	return r;
}

/* Parse the text form of an envelope. */
static bytea *
envelope_from_text(const char *s, char kind)
{
	const char *b64 = s + ENV_TEXT_PREFIX_LEN;
	int			b64_len = (int) strlen(b64);
	int			max_len = pg_b64_dec_len(b64_len);
	bytea	   *result = (bytea *) palloc(VARHDRSZ + max_len);
	int			len;

	len = compat_b64_decode(b64, b64_len, VARDATA(result), max_len);
	if (len < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errhidestmt(true),
				 errmsg("malformed %s envelope",
						kind == ENV_KIND_TEXT ? "encrypted_text" : "encrypted_bytea"),
				 errdetail("The text after \"%s\" is not valid base64.", ENV_TEXT_PREFIX),
				 errhint("Values that begin with \"%s\" are read as envelopes; use pii_guard.encrypt() to encrypt such a string as plaintext.",
						 ENV_TEXT_PREFIX)));
	crypto_check_envelope(VARDATA(result), len, kind, false);
	SET_VARSIZE(result, VARHDRSZ + len);
	return result;
}

/* The text form of an envelope. */
static char *
envelope_to_text(Datum d)
{
	bytea	   *env = DatumGetByteaPP(d);
	int			len = VARSIZE_ANY_EXHDR(env);
	int			enc_len = pg_b64_enc_len(len);
	char	   *out = palloc(ENV_TEXT_PREFIX_LEN + enc_len + 1);
	int			n;

	memcpy(out, ENV_TEXT_PREFIX, ENV_TEXT_PREFIX_LEN);
	n = compat_b64_encode(VARDATA_ANY(env), len, out + ENV_TEXT_PREFIX_LEN, enc_len);
	if (n < 0)
		elog(ERROR, "could not encode pii_guard envelope");
	out[ENV_TEXT_PREFIX_LEN + n] = '\0';
	return out;
}

/* Binary receive: the raw envelope, checked structurally. */
static bytea *
envelope_recv(StringInfo buf, char kind)
{
	int			len = buf->len - buf->cursor;
	bytea	   *result = (bytea *) palloc(VARHDRSZ + len);

	SET_VARSIZE(result, VARHDRSZ + len);
	pq_copymsgbytes(buf, VARDATA(result), len);
	crypto_check_envelope(VARDATA(result), len, kind, true);
	return result;
}

/*
 * May the current user see plaintext through decrypt()?  Superusers and
 * members of pii_guard_admin may.
 */
bool
enctype_may_decrypt(void)
{
	Oid			admin;

	if (superuser())
		return true;
	admin = get_role_oid(PII_GUARD_ADMIN_ROLE, true);
	return OidIsValid(admin) && has_privs_of_role(GetUserId(), admin);
}

/* Type OIDs and the trust cache, per policy generation. */
static uint64 types_generation = 0;
static Oid	encrypted_text_oid = InvalidOid;
static Oid	encrypted_bytea_oid = InvalidOid;
static Oid	probe_text_oid = InvalidOid;
static Oid	probe_bytea_oid = InvalidOid;
static Oid	trusted_userid = InvalidOid;
static uint64 trusted_generation = 0;
static bool trusted_answer = false;

/* Look the types and probe functions up again if the policy moved. */
static void
enctype_load_oids(void)
{
	uint64		generation = policy_current_generation();
	Oid			nsp;

	if (types_generation == generation)
		return;
	encrypted_text_oid = encrypted_bytea_oid = InvalidOid;
	probe_text_oid = probe_bytea_oid = InvalidOid;
	nsp = pii_guard_schema_oid(true);
	if (OidIsValid(nsp))
	{
		oidvector  *args;
		Oid			argtype;

		encrypted_text_oid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											 CStringGetDatum("encrypted_text"),
											 ObjectIdGetDatum(nsp));
		encrypted_bytea_oid = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
											  CStringGetDatum("encrypted_bytea"),
											  ObjectIdGetDatum(nsp));
		argtype = TEXTOID;
		args = buildoidvector(&argtype, 1);
		probe_text_oid = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
										 CStringGetDatum("_blind_probe"),
										 PointerGetDatum(args), ObjectIdGetDatum(nsp));
		argtype = BYTEAOID;
		args = buildoidvector(&argtype, 1);
		probe_bytea_oid = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
										  CStringGetDatum("_blind_probe"),
										  PointerGetDatum(args), ObjectIdGetDatum(nsp));
	}
	types_generation = generation;
}

/* pii_guard.encrypted_text's OID (InvalidOid: not installed here). */
Oid
enctype_encrypted_text_oid(void)
{
	enctype_load_oids();
	return encrypted_text_oid;
}

/* pii_guard.encrypted_bytea's OID (InvalidOid: not installed here). */
Oid
enctype_encrypted_bytea_oid(void)
{
	enctype_load_oids();
	return encrypted_bytea_oid;
}

/* The probe function for an encrypted type (_blind_probe), or InvalidOid. */
Oid
enctype_probe_function(Oid encrypted_type)
{
	enctype_load_oids();
	if (OidIsValid(encrypted_type) && encrypted_type == encrypted_text_oid)
		return probe_text_oid;
	if (OidIsValid(encrypted_type) && encrypted_type == encrypted_bytea_oid)
		return probe_bytea_oid;
	return InvalidOid;
}

/*
 * May the current user make blind indexes of plaintexts of its choosing
 * (encrypt, compare a plaintext with an envelope)?  Superusers, members of
 * pii_guard_admin or pii_guard_encryptor, and roles with the privileges of
 * a protected table's owner may.  Cached per user and policy generation
 * (role changes move it).
 */
bool
enctype_trusted(void)
{
	Oid			userid = GetUserId();
	uint64		generation = policy_current_generation();
	Oid			role;

	if (trusted_userid == userid && trusted_generation == generation)
		return trusted_answer;
	trusted_answer = superuser_arg(userid);
	if (!trusted_answer)
	{
		role = get_role_oid(PII_GUARD_ADMIN_ROLE, true);
		trusted_answer = OidIsValid(role) && has_privs_of_role(userid, role);
	}
	if (!trusted_answer)
	{
		role = get_role_oid(PII_GUARD_ENCRYPTOR_ROLE, true);
		trusted_answer = OidIsValid(role) && has_privs_of_role(userid, role);
	}
	if (!trusted_answer)
		trusted_answer = views_any_owned_by(userid);
	trusted_userid = userid;
	trusted_generation = generation;
	return trusted_answer;
}

/* ERROR (audited) unless the current user may encrypt a plaintext. */
static void
enctype_check_seal(void)
{
	if (likely(enctype_trusted()))
		return;
	audit_deny(NULL, "encrypt",
			   "refused: encrypting a plaintext outside a masking view shows its blind index");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errhidestmt(true),
			 errmsg("permission denied to encrypt pii_guard values"),
			 errdetail("Outside a masking view only superusers, members of %s and %s, and owners of protected tables may encrypt: an envelope shows the blind index of its plaintext, which can be compared with stolen values.",
					   PII_GUARD_ADMIN_ROLE, PII_GUARD_ENCRYPTOR_ROLE),
			 errhint("Write the value through the table's masking view.")));
}

/* ERROR (audited) unless the current user may compare a plaintext. */
static void
enctype_check_compare(void)
{
	if (likely(enctype_trusted()))
		return;
	audit_deny(NULL, "compare",
			   "refused: comparing a plaintext with encrypted values computes its blind index");
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errhidestmt(true),
			 errmsg("permission denied to compare plaintext with pii_guard encrypted values"),
			 errdetail("Only superusers, members of %s and %s, and owners of protected tables may: the comparison would test guesses against any envelope.",
					   PII_GUARD_ADMIN_ROLE, PII_GUARD_ENCRYPTOR_ROLE),
			 errhint("Search through the table's masking view, where the column is compared as the role sees it.")));
}

/* ERROR unless the current user may decrypt; cached per call site. */
static void
enctype_check_decrypt(FunctionCallInfo fcinfo)
{
	DecryptPermission *perm = (DecryptPermission *) fcinfo->flinfo->fn_extra;
	Oid			userid = GetUserId();

	if (perm == NULL || perm->userid != userid)
	{
		if (perm == NULL)
		{
			perm = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt,
									  sizeof(DecryptPermission));
			fcinfo->flinfo->fn_extra = perm;
		}
		perm->userid = userid;
		perm->allowed = enctype_may_decrypt();
	}
	if (!perm->allowed)
	{
		audit_deny(NULL, "decrypt", "pii_guard.decrypt() refused: not a superuser or pii_guard_admin member");
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errhidestmt(true),
				 errmsg("permission denied to decrypt pii_guard values"),
				 errdetail("Only superusers and members of %s may decrypt.",
						   PII_GUARD_ADMIN_ROLE)));
	}
}

/* Does relation relid have a column of an encrypted type? */
bool
enctype_relation_has_encrypted(Oid relid)
{
	Oid			nsp = pii_guard_schema_oid(true);
	Oid			types[2];
	Relation	rel;
	TupleDesc	desc;
	bool		found = false;
	int			i;

	if (!OidIsValid(nsp))
		return false;
	types[0] = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("encrypted_text"), ObjectIdGetDatum(nsp));
	types[1] = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("encrypted_bytea"), ObjectIdGetDatum(nsp));
	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		return false;
	desc = RelationGetDescr(rel);
	for (i = 0; i < desc->natts && !found; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		found = !att->attisdropped &&
			(att->atttypid == types[0] || att->atttypid == types[1]);
	}
	relation_close(rel, AccessShareLock);
	return found;
}

PG_FUNCTION_INFO_V1(pii_guard_encrypted_text_in);
PG_FUNCTION_INFO_V1(pii_guard_encrypted_bytea_in);
PG_FUNCTION_INFO_V1(pii_guard_envelope_out);
PG_FUNCTION_INFO_V1(pii_guard_encrypted_text_recv);
PG_FUNCTION_INFO_V1(pii_guard_encrypted_bytea_recv);
PG_FUNCTION_INFO_V1(pii_guard_envelope_send);
PG_FUNCTION_INFO_V1(pii_guard_envelope_eq);
PG_FUNCTION_INFO_V1(pii_guard_envelope_ne);
PG_FUNCTION_INFO_V1(pii_guard_envelope_lt);
PG_FUNCTION_INFO_V1(pii_guard_envelope_le);
PG_FUNCTION_INFO_V1(pii_guard_envelope_ge);
PG_FUNCTION_INFO_V1(pii_guard_envelope_gt);
PG_FUNCTION_INFO_V1(pii_guard_envelope_cmp);
PG_FUNCTION_INFO_V1(pii_guard_envelope_hash);
PG_FUNCTION_INFO_V1(pii_guard_envelope_hash_extended);
PG_FUNCTION_INFO_V1(pii_guard_envelope_key_id);
PG_FUNCTION_INFO_V1(pii_guard_encrypt_text);
PG_FUNCTION_INFO_V1(pii_guard_encrypt_bytea);
PG_FUNCTION_INFO_V1(pii_guard_decrypt_text);
PG_FUNCTION_INFO_V1(pii_guard_decrypt_bytea);
PG_FUNCTION_INFO_V1(pii_guard_reencrypt);

/* SQL function: encrypted_text_in(cstring) returns encrypted_text */
Datum
pii_guard_encrypted_text_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);

	if (strncmp(s, ENV_TEXT_PREFIX, ENV_TEXT_PREFIX_LEN) == 0)
		PG_RETURN_BYTEA_P(envelope_from_text(s, ENV_KIND_TEXT));
	enctype_check_seal();
	PG_RETURN_BYTEA_P(crypto_seal(ENV_KIND_TEXT, s, strlen(s)));
}

/* SQL function: encrypted_bytea_in(cstring) returns encrypted_bytea */
Datum
pii_guard_encrypted_bytea_in(PG_FUNCTION_ARGS)
{
	char	   *s = PG_GETARG_CSTRING(0);
	bytea	   *plain;

	if (strncmp(s, ENV_TEXT_PREFIX, ENV_TEXT_PREFIX_LEN) == 0)
		PG_RETURN_BYTEA_P(envelope_from_text(s, ENV_KIND_BYTEA));
	enctype_check_seal();
	plain = DatumGetByteaPP(DirectFunctionCall1(byteain, CStringGetDatum(s)));
	PG_RETURN_BYTEA_P(crypto_seal(ENV_KIND_BYTEA, VARDATA_ANY(plain),
								  VARSIZE_ANY_EXHDR(plain)));
}

/* SQL function: envelope_out(encrypted_text|encrypted_bytea) returns cstring */
Datum
pii_guard_envelope_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(envelope_to_text(PG_GETARG_DATUM(0)));
}

/* SQL function: encrypted_text_recv(internal) returns encrypted_text */
Datum
pii_guard_encrypted_text_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(envelope_recv((StringInfo) PG_GETARG_POINTER(0),
									ENV_KIND_TEXT));
}

/* SQL function: encrypted_bytea_recv(internal) returns encrypted_bytea */
Datum
pii_guard_encrypted_bytea_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(envelope_recv((StringInfo) PG_GETARG_POINTER(0),
									ENV_KIND_BYTEA));
}

/* SQL function: envelope_send(encrypted_text|encrypted_bytea) returns bytea */
Datum
pii_guard_envelope_send(PG_FUNCTION_ARGS)
{
	bytea	   *env = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(env), VARSIZE_ANY_EXHDR(env));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* SQL functions: envelope_eq/ne/lt/le/ge/gt(a, b) returns boolean */
Datum
pii_guard_envelope_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) == 0);
}

Datum
pii_guard_envelope_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) != 0);
}

Datum
pii_guard_envelope_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) < 0);
}

Datum
pii_guard_envelope_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) <= 0);
}

Datum
pii_guard_envelope_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) >= 0);
}

Datum
pii_guard_envelope_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) > 0);
}

/* SQL function: envelope_cmp(a, b) returns integer (btree support 1) */
Datum
pii_guard_envelope_cmp(PG_FUNCTION_ARGS)
{
	int			r = envelope_compare(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1));

	PG_RETURN_INT32(r < 0 ? -1 : (r > 0 ? 1 : 0));
}

/* SQL function: envelope_hash(a) returns integer (hash support 1) */
Datum
pii_guard_envelope_hash(PG_FUNCTION_ARGS)
{
	struct varlena *copy;
	const uint8 *h = envelope_header(PG_GETARG_DATUM(0), &copy);
	Datum		r = hash_any(h + ENV_OFF_BLIND, ENV_BLIND_LEN);

	if (copy)
		pfree(copy);
	return r;
}

/* SQL function: envelope_hash_extended(a, bigint) returns bigint */
Datum
pii_guard_envelope_hash_extended(PG_FUNCTION_ARGS)
{
	struct varlena *copy;
	const uint8 *h = envelope_header(PG_GETARG_DATUM(0), &copy);
	Datum		r = hash_any_extended(h + ENV_OFF_BLIND, ENV_BLIND_LEN,
									  PG_GETARG_INT64(1));

	if (copy)
		pfree(copy);
	return r;
}

/*
 * Cross-type equality: an envelope against a plaintext (text, varchar or
 * bytea), as prepared statements with typed parameters and drivers that
 * send strings as varchar compare.  The plaintext's blind index is computed
 * -- never the envelope decrypted -- and the last one is kept per call site,
 * so a parameter compared with every row costs one HMAC.
 */
typedef struct PlainBlind
{
	Oid			checked_user;	/* the user enctype_check_compare passed */
	Size		len;			/* of the plaintext, kept in data */
	char		kind;
	char	   *data;			/* palloc'd in fn_mcxt, or NULL */
	uint8		blind[ENV_BLIND_LEN];
} PlainBlind;

/* The blind index of plaintext p under kind, cached in flinfo. */
static const uint8 *
plain_blind(FmgrInfo *flinfo, char kind, const struct varlena *p)
{
	PlainBlind *pb = (PlainBlind *) flinfo->fn_extra;
	const char *data = VARDATA_ANY(p);
	Size		len = VARSIZE_ANY_EXHDR(p);
	DataKey    *ek;
	DataKey    *bk;

	if (pb == NULL)
	{
		pb = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(PlainBlind));
		flinfo->fn_extra = pb;
	}
	if (unlikely(pb->checked_user != GetUserId()))
	{
		enctype_check_compare();
		pb->checked_user = GetUserId();
	}
	if (pb->data != NULL && pb->kind == kind && pb->len == len &&
		memcmp(pb->data, data, len) == 0)
		return pb->blind;
	if (pb->data != NULL)
	{
		OPENSSL_cleanse(pb->data, pb->len);
		pfree(pb->data);
		pb->data = NULL;
	}
	/* The statement holds a plaintext: keep its text out of the log. */
	statement_note_plaintext();
	keys_current(&ek, &bk);
	crypto_hmac(bk->mac, kind, data, len, pb->blind, ENV_BLIND_LEN);
	pb->data = MemoryContextAlloc(flinfo->fn_mcxt, Max(len, 1));
	memcpy(pb->data, data, len);
	pb->len = len;
	pb->kind = kind;
	return pb->blind;
}

/* memcmp of an envelope's blind index with a plaintext's. */
static int
envelope_compare_plain(FunctionCallInfo fcinfo, Datum env, Datum plain)
{
	struct varlena *copy;
	const uint8 *h = envelope_header(env, &copy);
	char		kind = (char) h[ENV_OFF_KIND];
	uint8		blind[ENV_BLIND_LEN];
	int			r;

	memcpy(blind, h + ENV_OFF_BLIND, ENV_BLIND_LEN);
	if (copy)
		pfree(copy);
	r = memcmp(blind, plain_blind(fcinfo->flinfo, kind,
								  (struct varlena *) PG_DETOAST_DATUM_PACKED(plain)),
			   ENV_BLIND_LEN);
	return r;
}

PG_FUNCTION_INFO_V1(pii_guard_envelope_eq_plain);
PG_FUNCTION_INFO_V1(pii_guard_envelope_ne_plain);
PG_FUNCTION_INFO_V1(pii_guard_envelope_cmp_plain);
PG_FUNCTION_INFO_V1(pii_guard_plain_eq_envelope);
PG_FUNCTION_INFO_V1(pii_guard_plain_ne_envelope);
PG_FUNCTION_INFO_V1(pii_guard_plain_cmp_envelope);
PG_FUNCTION_INFO_V1(pii_guard_plain_text_hash);
PG_FUNCTION_INFO_V1(pii_guard_plain_text_hash_extended);
PG_FUNCTION_INFO_V1(pii_guard_plain_bytea_hash);
PG_FUNCTION_INFO_V1(pii_guard_plain_bytea_hash_extended);

/* SQL functions: encrypted_*_eq_plain / _ne_plain(envelope, plaintext) returns boolean */
Datum
pii_guard_envelope_eq_plain(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare_plain(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) == 0);
}

Datum
pii_guard_envelope_ne_plain(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare_plain(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)) != 0);
}

/* SQL function: encrypted_*_cmp_plain(envelope, plaintext) returns integer (btree support 1) */
Datum
pii_guard_envelope_cmp_plain(PG_FUNCTION_ARGS)
{
	int			r = envelope_compare_plain(fcinfo, PG_GETARG_DATUM(0), PG_GETARG_DATUM(1));

	PG_RETURN_INT32(r < 0 ? -1 : (r > 0 ? 1 : 0));
}

/* SQL functions: plain_eq_encrypted_* / _ne_(plaintext, envelope) returns boolean */
Datum
pii_guard_plain_eq_envelope(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare_plain(fcinfo, PG_GETARG_DATUM(1), PG_GETARG_DATUM(0)) == 0);
}

Datum
pii_guard_plain_ne_envelope(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(envelope_compare_plain(fcinfo, PG_GETARG_DATUM(1), PG_GETARG_DATUM(0)) != 0);
}

/* SQL function: plain_cmp_encrypted_*(plaintext, envelope) returns integer (btree support 1) */
Datum
pii_guard_plain_cmp_envelope(PG_FUNCTION_ARGS)
{
	int			r = envelope_compare_plain(fcinfo, PG_GETARG_DATUM(1), PG_GETARG_DATUM(0));

	PG_RETURN_INT32(r < 0 ? 1 : (r > 0 ? -1 : 0));
}

/*
 * SQL functions: plaintext_blind_hash(text|bytea) returns integer, and
 * _extended (hash support 1 and 2 for the plaintext side): the hash an
 * envelope of that plaintext has, so hash joins and hash indexes can
 * compare across the two types.
 */
Datum
pii_guard_plain_text_hash(PG_FUNCTION_ARGS)
{
	return hash_any(plain_blind(fcinfo->flinfo, ENV_KIND_TEXT, PG_GETARG_VARLENA_PP(0)),
					ENV_BLIND_LEN);
}

Datum
pii_guard_plain_text_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_any_extended(plain_blind(fcinfo->flinfo, ENV_KIND_TEXT, PG_GETARG_VARLENA_PP(0)),
							 ENV_BLIND_LEN, PG_GETARG_INT64(1));
}

Datum
pii_guard_plain_bytea_hash(PG_FUNCTION_ARGS)
{
	return hash_any(plain_blind(fcinfo->flinfo, ENV_KIND_BYTEA, PG_GETARG_VARLENA_PP(0)),
					ENV_BLIND_LEN);
}

Datum
pii_guard_plain_bytea_hash_extended(PG_FUNCTION_ARGS)
{
	return hash_any_extended(plain_blind(fcinfo->flinfo, ENV_KIND_BYTEA, PG_GETARG_VARLENA_PP(0)),
							 ENV_BLIND_LEN, PG_GETARG_INT64(1));
}

/*
 * SQL function: key_id(encrypted_text|encrypted_bytea) returns bigint
 * (a data key's id, or a subject key's: 2^31 and up; 0.1 and 0.2 declared
 * it integer, and read a subject key's id as negative)
 */
Datum
pii_guard_envelope_key_id(PG_FUNCTION_ARGS)
{
	struct varlena *copy;
	const uint8 *h = envelope_header(PG_GETARG_DATUM(0), &copy);
	uint32		id = ((uint32) h[ENV_OFF_KEY_ID] << 24) |
		((uint32) h[ENV_OFF_KEY_ID + 1] << 16) |
		((uint32) h[ENV_OFF_KEY_ID + 2] << 8) |
		(uint32) h[ENV_OFF_KEY_ID + 3];

	if (copy)
		pfree(copy);
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra =
			(void *) (uintptr_t) (get_func_rettype(fcinfo->flinfo->fn_oid) == INT4OID ? 4 : 8);
	if ((uintptr_t) fcinfo->flinfo->fn_extra == 4)
		PG_RETURN_INT32((int32) id);
	PG_RETURN_INT64((int64) id);
}

/* SQL function: encrypt(text) returns encrypted_text */
Datum
pii_guard_encrypt_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	enctype_check_seal();
	PG_RETURN_BYTEA_P(crypto_seal(ENV_KIND_TEXT, VARDATA_ANY(t),
								  VARSIZE_ANY_EXHDR(t)));
}

/* SQL function: encrypt(bytea) returns encrypted_bytea */
Datum
pii_guard_encrypt_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	enctype_check_seal();
	PG_RETURN_BYTEA_P(crypto_seal(ENV_KIND_BYTEA, VARDATA_ANY(b),
								  VARSIZE_ANY_EXHDR(b)));
}

/*
 * ERROR (wiping the buffer) unless decrypted text is valid in the database
 * encoding; the message never shows the bytes.
 */
void
enctype_check_encoding(bytea *plain)
{
	if (!pg_verifymbstr(VARDATA(plain), VARSIZE(plain) - VARHDRSZ, true))
	{
		OPENSSL_cleanse(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errhidestmt(true),
				 errmsg("decrypted value is not valid in encoding \"%s\"",
						GetDatabaseEncodingName()),
				 errdetail("The value was encrypted in a database with another encoding.")));
	}
}

/* SQL function: decrypt(encrypted_text) returns text */
Datum
pii_guard_decrypt_text(PG_FUNCTION_ARGS)
{
	bytea	   *plain;

	enctype_check_decrypt(fcinfo);
	plain = crypto_open(PG_GETARG_BYTEA_PP(0), ENV_KIND_TEXT);
	enctype_check_encoding(plain);
	PG_RETURN_TEXT_P((text *) plain);
}

/* SQL function: decrypt(encrypted_bytea) returns bytea */
Datum
pii_guard_decrypt_bytea(PG_FUNCTION_ARGS)
{
	enctype_check_decrypt(fcinfo);
	PG_RETURN_BYTEA_P(crypto_open(PG_GETARG_BYTEA_PP(0), ENV_KIND_BYTEA));
}

/*
 * SQL function: reencrypt(encrypted_text) returns encrypted_text
 *		(and the same for encrypted_bytea)
 *
 * The same plaintext sealed under the active data key.  Never returns
 * plaintext; the intermediate copy is wiped.
 */
Datum
pii_guard_reencrypt(PG_FUNCTION_ARGS)
{
	bytea	   *env = PG_GETARG_BYTEA_PP(0);
	char		kind;
	bytea	   *plain;
	bytea	   *result;

	if (VARSIZE_ANY_EXHDR(env) < ENV_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("encrypted value is damaged"),
				 errdetail("Its envelope is shorter than the envelope overhead.")));
	kind = VARDATA_ANY(env)[ENV_OFF_KIND];
	plain = crypto_open(env, kind);
	result = crypto_seal(kind, VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
	crypto_wipe(plain);
	PG_RETURN_BYTEA_P(result);
}

/*
 * What _blind_probe keeps in fn_extra: the last argument (a plaintext, or
 * an array of them) and its probe, so that a filter evaluated on every row
 * seals once.
 */
typedef struct ProbeCache
{
	Oid			userid;
	Size		len;
	char	   *data;			/* the argument's bytes, wiped when replaced */
	struct varlena *probe;
} ProbeCache;

/*
 * The probes of an array of plaintexts of kind, as an array of the
 * encrypted type of the same shape: a NULL element stays NULL (its
 * comparison with a stored value is NULL, as the role's own filter's is).
 */
static ArrayType *
enctype_probe_array(ArrayType *plain, char kind)
{
	Oid			plain_type = kind == ENV_KIND_TEXT ? TEXTOID : BYTEAOID;
	Oid			probe_type = kind == ENV_KIND_TEXT ? enctype_encrypted_text_oid() :
		enctype_encrypted_bytea_oid();
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	/* The SQL signature says text[] (bytea[]): anything else is a bug. */
	if (ARR_ELEMTYPE(plain) != plain_type || !OidIsValid(probe_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errhidestmt(true),
				 errmsg_internal("pii_guard._blind_probe: unexpected array element type %u",
								 ARR_ELEMTYPE(plain))));
	deconstruct_array(plain, plain_type, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		struct varlena *p;

		if (nulls[i])
			continue;
		p = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(elems[i]));
		elems[i] = PointerGetDatum(crypto_probe(kind, VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p)));
	}
	get_typlenbyvalalign(probe_type, &typlen, &typbyval, &typalign);
	return construct_md_array(elems, nulls, ARR_NDIM(plain), ARR_DIMS(plain),
							  ARR_LBOUND(plain), probe_type, typlen, typbyval, typalign);
}

/*
 * The probe for plaintext p: an envelope header with its blind index
 * (crypto_probe), which the stored column is compared with -- or, for an
 * array of plaintexts (an IN list, `= ANY ($1)`), the array of their
 * probes.  Both forms share everything but the sealing: who it answers,
 * the cache and the wiping.  Answers a trusted user anywhere, and everyone
 * at a call site lookup.c built (the filter of a role that sees the column
 * in clear on every row).  Anywhere else the planner's own evaluation (a
 * selectivity estimate) gets no answer, and a statement an ERROR.
 */
static Datum
enctype_probe(FunctionCallInfo fcinfo, char kind, bool array)
{
	struct varlena *arg = array ? (struct varlena *) PG_GETARG_ARRAYTYPE_P(0) :
		PG_GETARG_VARLENA_PP(0);
	Node	   *site = fcinfo->flinfo->fn_expr;
	ProbeCache *pc = (ProbeCache *) fcinfo->flinfo->fn_extra;
	const char *data = VARDATA_ANY(arg);
	Size		len = VARSIZE_ANY_EXHDR(arg);
	struct varlena *result;
	MemoryContext old;

	if (pc == NULL)
	{
		pc = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(ProbeCache));
		fcinfo->flinfo->fn_extra = pc;
	}
	if (pc->userid != GetUserId())
	{
		if (!(site != NULL && IsA(site, FuncExpr) &&
			  PII_SITE_MARKED(((FuncExpr *) site)->location)) &&
			!enctype_trusted())
		{
			if (statement_planning_depth() > 0)
				PG_RETURN_NULL();
			enctype_check_compare();
		}
		pc->userid = GetUserId();
	}
	statement_note_plaintext();

	/*
	 * The same argument as last time: the same probe.  (An array's bytes
	 * are its dimensions, null bitmap and elements: equal bytes, equal
	 * arrays.)
	 */
	if (pc->probe != NULL && pc->len == len && memcmp(pc->data, data, len) == 0)
		PG_RETURN_POINTER(pg_detoast_datum_copy(pc->probe));
	if (pc->data != NULL)
	{
		OPENSSL_cleanse(pc->data, pc->len);
		pfree(pc->data);
		pfree(pc->probe);
		pc->data = NULL;
		pc->probe = NULL;
	}
	if (array)
		result = (struct varlena *) enctype_probe_array((ArrayType *) arg, kind);
	else
		result = (struct varlena *) crypto_probe(kind, data, len);
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	pc->probe = pg_detoast_datum_copy(result);
	pc->data = palloc(Max(len, 1));
	memcpy(pc->data, data, len);
	pc->len = len;
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(result);
}

/*
 * The array probe for an encrypted type (_blind_probe(text[]) for
 * encrypted_text, _blind_probe(bytea[]) for encrypted_bytea), or
 * InvalidOid: not installed here, or not yet (a library newer than the
 * extension's objects).  Looked up only when a lookup needs it.
 */
Oid
enctype_array_probe_function(Oid encrypted_type)
{
	Oid			nsp = pii_guard_schema_oid(true);
	Oid			argtype;

	if (!OidIsValid(nsp) || !OidIsValid(encrypted_type))
		return InvalidOid;
	if (encrypted_type == enctype_encrypted_text_oid())
		argtype = TEXTARRAYOID;
	else if (encrypted_type == enctype_encrypted_bytea_oid())
		argtype = BYTEAARRAYOID;
	else
		return InvalidOid;
	return GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
						   CStringGetDatum("_blind_probe"),
						   PointerGetDatum(buildoidvector(&argtype, 1)),
						   ObjectIdGetDatum(nsp));
}

PG_FUNCTION_INFO_V1(pii_guard_blind_probe_text);
PG_FUNCTION_INFO_V1(pii_guard_blind_probe_bytea);
PG_FUNCTION_INFO_V1(pii_guard_blind_probe_text_array);
PG_FUNCTION_INFO_V1(pii_guard_blind_probe_bytea_array);

/* SQL function: _blind_probe(text) returns encrypted_text */
Datum
pii_guard_blind_probe_text(PG_FUNCTION_ARGS)
{
	return enctype_probe(fcinfo, ENV_KIND_TEXT, false);
}

/* SQL function: _blind_probe(bytea) returns encrypted_bytea */
Datum
pii_guard_blind_probe_bytea(PG_FUNCTION_ARGS)
{
	return enctype_probe(fcinfo, ENV_KIND_BYTEA, false);
}

/* SQL function: _blind_probe(text[]) returns encrypted_text[] */
Datum
pii_guard_blind_probe_text_array(PG_FUNCTION_ARGS)
{
	return enctype_probe(fcinfo, ENV_KIND_TEXT, true);
}

/* SQL function: _blind_probe(bytea[]) returns encrypted_bytea[] */
Datum
pii_guard_blind_probe_bytea_array(PG_FUNCTION_ARGS)
{
	return enctype_probe(fcinfo, ENV_KIND_BYTEA, true);
}
