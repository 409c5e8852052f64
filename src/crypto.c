/*-------------------------------------------------------------------------
 *
 * crypto.c
 *		AES-256-GCM envelopes, the blind index, and data key wrapping.
 *
 * Every value is sealed under the active data key with a fresh random
 * 96-bit nonce; the envelope header (see pii_guard.h) is the GCM additional
 * data.  The blind index is a truncated HMAC-SHA256 of the plaintext under a
 * separate key, so that equality (and therefore btree/hash indexes, UNIQUE
 * and hash joins) works on ciphertext without decrypting.
 *
 * Speed: the keyed cipher and MAC contexts are built once per data key and
 * per backend (keys.c caches them); sealing a value only resets the nonce.
 * HMAC-SHA256 is computed from SHA-256 states that have already absorbed
 * the key's inner and outer pads (RFC 2104), copied per value: OpenSSL 3's
 * EVP_MAC re-initialises a provider context for every MAC, which made the
 * blind index cost more than the encryption itself.  The low-level SHA-256
 * routines this needs are deprecated in OpenSSL 3.0 but kept (and use the
 * same SHA extensions); a regression test pins the result (the test master
 * key's fingerprint is checked against an independent HMAC).
 * Nonces come from a small per-backend pool filled by RAND_bytes, which is
 * discarded if the process id changes, so a pool can never be shared by two
 * processes through fork().
 *
 * Secrets: this file never copies key material into palloc'd memory;
 * stack buffers holding keys are wiped with OPENSSL_cleanse before return.
 *
 * Resource owners.  A keyed OpenSSL object (an EVP_CIPHER_CTX or a
 * CryptoHmac, made by crypto_new_gcm_ctx or crypto_new_hmac) holds a key
 * schedule in OpenSSL's heap, which an ERROR would leave there, uncleansed,
 * if one were raised between creating the object and freeing it: a longjmp
 * skips the free.  So every keyed object starts out tied to the resource
 * owner that is current when it is made, as pgcrypto does: a list of live
 * objects and their owners, and a resource release callback that frees and
 * cleanses the objects of the owner being released at (sub)transaction
 * abort (at commit too, with a WARNING: that would be a missing free).
 * crypto_free_gcm_ctx and crypto_free_hmac take an object off the list;
 * crypto_adopt takes it off the list without freeing it, for the key cache
 * (keys.c), which keeps its contexts beyond the transaction and frees them
 * itself.  RegisterResourceReleaseCallback works on PostgreSQL 13 to 17 (17
 * adds ResourceOwnerDesc, which we don't need).  Nothing on the list
 * raises: its nodes come from OpenSSL's allocator, and a failed allocation
 * is a failure to create the object.  Where it is simpler, code is ordered
 * so that nothing can raise while a keyed object exists at all (the key
 * wrapping draws its nonce before it builds its context); callers wipe
 * key bytes on their stack in PG_CATCH too where a call in between may
 * raise.
 *
 *-------------------------------------------------------------------------
 */
/* The low-level SHA-256 routines: see "Speed" above. */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "postgres.h"

#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "pii_guard.h"

/* The longest plaintext whose envelope still fits text output in 1 GB. */
#define PII_MAX_PLAINTEXT \
	((Size) ((MaxAllocSize - ENV_TEXT_PREFIX_LEN - 8) / 4) * 3 - ENV_OVERHEAD)

static const char fingerprint_label[] = "pii_guard master key fingerprint v1";
static const char wrap_label[] = "pii_guard data key v1";

/* An HMAC-SHA256 key: SHA-256 states after the inner and the outer pad. */
struct CryptoHmac
{
	SHA256_CTX	inner;
	SHA256_CTX	outer;
};

/*
 * A keyed object not yet freed nor adopted, and the resource owner it
 * belongs to (see "Resource owners" above).
 */
typedef struct LiveKeyed
{
	void	   *object;			/* an EVP_CIPHER_CTX or a CryptoHmac */
	bool		is_hmac;
	ResourceOwner owner;		/* NULL outside a transaction: never released
								 * by the callback */
	struct LiveKeyed *next;
} LiveKeyed;

static LiveKeyed *live_keyed = NULL;
static bool live_keyed_callback_registered = false;

static uint8 nonce_pool[ENV_NONCE_LEN * 256];
static int	nonce_pool_pos = sizeof(nonce_pool);
static pid_t nonce_pool_pid = 0;

/* Report an OpenSSL failure that valid input can't cause. */
void
crypto_failure(const char *what)
{
	unsigned long code = ERR_get_error();
	const char *reason = code ? ERR_reason_error_string(code) : NULL;

	ERR_clear_error();
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errhidestmt(true),
			 errmsg("OpenSSL failure in %s", what),
			 errdetail("%s", reason ? reason : "no reason given")));
}

/* Fill buf with cryptographically strong random bytes. */
void
crypto_random_bytes(uint8 *buf, int len)
{
	if (RAND_bytes(buf, len) != 1)
		crypto_failure("RAND_bytes");
}

/* Take one fresh nonce from the per-process pool. */
static void
crypto_next_nonce(uint8 *nonce)
{
	if (nonce_pool_pid != MyProcPid ||
		nonce_pool_pos + ENV_NONCE_LEN > (int) sizeof(nonce_pool))
	{
		crypto_random_bytes(nonce_pool, sizeof(nonce_pool));
		nonce_pool_pos = 0;
		nonce_pool_pid = MyProcPid;
	}
	memcpy(nonce, nonce_pool + nonce_pool_pos, ENV_NONCE_LEN);
	OPENSSL_cleanse(nonce_pool + nonce_pool_pos, ENV_NONCE_LEN);
	nonce_pool_pos += ENV_NONCE_LEN;
}

/* Cleanse and free a keyed object, whichever kind it is. */
static void
crypto_destroy_keyed(void *object, bool is_hmac)
{
	if (is_hmac)
		OPENSSL_clear_free(object, sizeof(CryptoHmac));
	else
		EVP_CIPHER_CTX_free((EVP_CIPHER_CTX *) object);	/* cleanses the key */
}

/*
 * Resource release callback: free the keyed objects of the resource owner
 * being released.  At commit there should be none left; one is freed all
 * the same, and reported as the bug it is.
 */
static void
crypto_release_keyed(ResourceReleasePhase phase, bool isCommit,
					 bool isTopLevel pg_attribute_unused(),
					 void *arg pg_attribute_unused())
{
	LiveKeyed **link = &live_keyed;
	int			freed = 0;

	if (phase != RESOURCE_RELEASE_BEFORE_LOCKS)
		return;
	while (*link != NULL)
	{
		LiveKeyed  *node = *link;

		if (node->owner != CurrentResourceOwner)
		{
			link = &node->next;
			continue;
		}
		*link = node->next;
		crypto_destroy_keyed(node->object, node->is_hmac);
		OPENSSL_free(node);
		freed++;
	}
	if (isCommit && freed > 0)
		elog(WARNING, "pii_guard: %d keyed OpenSSL contexts were not freed before the end of their resource owner",
			 freed);
}

/*
 * Register crypto_release_keyed once per process; before any keyed object
 * exists, since registering allocates memory and may raise.
 */
static void
crypto_register_release(void)
{
	if (live_keyed_callback_registered)
		return;
	RegisterResourceReleaseCallback(crypto_release_keyed, NULL);
	live_keyed_callback_registered = true;
}

/*
 * Tie a new keyed object to the current resource owner.  Never raises:
 * false when the list node can't be allocated (the caller frees the object
 * and reports the failure).
 */
static bool
crypto_track_keyed(void *object, bool is_hmac)
{
	LiveKeyed  *node = OPENSSL_malloc(sizeof(LiveKeyed));

	if (node == NULL)
		return false;
	node->object = object;
	node->is_hmac = is_hmac;
	node->owner = CurrentResourceOwner;
	node->next = live_keyed;
	live_keyed = node;
	return true;
}

/* Take an object off the list of live keyed objects, if it is on it. */
static void
crypto_untrack_keyed(const void *object)
{
	LiveKeyed **link;

	for (link = &live_keyed; *link != NULL; link = &(*link)->next)
	{
		LiveKeyed  *node = *link;

		if (node->object == object)
		{
			*link = node->next;
			OPENSSL_free(node);
			return;
		}
	}
}

/*
 * The caller (the key cache) keeps a keyed object beyond the current
 * resource owner: no abort frees it from now on; the caller frees it with
 * crypto_free_gcm_ctx or crypto_free_hmac.  Never raises.
 */
void
crypto_adopt(const void *object)
{
	if (object != NULL)
		crypto_untrack_keyed(object);
}

/*
 * Build an AES-256-GCM context keyed for encryption or decryption; NULL on
 * failure (the caller wipes the key before reporting it).
 */
EVP_CIPHER_CTX *
crypto_new_gcm_ctx(const uint8 *key, bool encrypt)
{
	EVP_CIPHER_CTX *ctx;

	crypto_register_release();
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		return NULL;
	if ((encrypt ?
		 EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL) :
		 EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, NULL)) != 1 ||
		!crypto_track_keyed(ctx, false))
	{
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Free (and so cleanse) a context made by crypto_new_gcm_ctx; NULL is ok. */
void
crypto_free_gcm_ctx(EVP_CIPHER_CTX *ctx)
{
	if (ctx == NULL)
		return;
	crypto_untrack_keyed(ctx);
	EVP_CIPHER_CTX_free(ctx);
}

/*
 * Key an HMAC-SHA256 context (key is PII_KEY_LEN bytes, shorter than the
 * 64-byte block, so it is padded, not hashed); NULL on failure.  The
 * context is key material: it lives in OpenSSL's heap and is cleansed by
 * crypto_free_hmac.
 */
CryptoHmac *
crypto_new_hmac(const uint8 *key)
{
	CryptoHmac *h;
	uint8		pad[SHA256_CBLOCK];
	int			i;
	bool		ok;

	crypto_register_release();
	h = OPENSSL_zalloc(sizeof(CryptoHmac));
	if (h == NULL)
		return NULL;
	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < PII_KEY_LEN; i++)
		pad[i] ^= key[i];
	ok = SHA256_Init(&h->inner) == 1 &&
		SHA256_Update(&h->inner, pad, sizeof(pad)) == 1;
	memset(pad, 0x5c, sizeof(pad));
	for (i = 0; i < PII_KEY_LEN; i++)
		pad[i] ^= key[i];
	ok = ok && SHA256_Init(&h->outer) == 1 &&
		SHA256_Update(&h->outer, pad, sizeof(pad)) == 1;
	OPENSSL_cleanse(pad, sizeof(pad));
	if (!ok || !crypto_track_keyed(h, true))
	{
		OPENSSL_clear_free(h, sizeof(CryptoHmac));
		return NULL;
	}
	return h;
}

/* Cleanse and free an HMAC context; NULL is ok. */
void
crypto_free_hmac(CryptoHmac *h)
{
	if (h == NULL)
		return;
	crypto_untrack_keyed(h);
	OPENSSL_clear_free(h, sizeof(CryptoHmac));
}

/*
 * HMAC-SHA256 of (domain byte || data) under the key mac was built with,
 * truncated to outlen bytes.  The domain byte keeps text and bytea values
 * (and any later use of the same key) from sharing index entries.
 */
void
crypto_hmac(const CryptoHmac *mac, char domain, const char *data, Size len,
			uint8 *out, Size outlen)
{
	SHA256_CTX	c;
	uint8		inner[SHA256_DIGEST_LENGTH];
	uint8		full[SHA256_DIGEST_LENGTH];

	Assert(outlen <= SHA256_DIGEST_LENGTH);
	c = mac->inner;
	SHA256_Update(&c, &domain, 1);
	SHA256_Update(&c, data, len);
	SHA256_Final(inner, &c);
	c = mac->outer;
	SHA256_Update(&c, inner, sizeof(inner));
	SHA256_Final(full, &c);
	memcpy(out, full, outlen);
}

/*
 * Known-answer test of crypto_hmac on a multi-block message, run once at
 * load: a wrong MAC would silently make new blind indexes unequal to the
 * stored ones (and audit rows fail verification).  The expected value is
 * HMAC-SHA256 under the key 00 01 .. 1f of 't' followed by the 200 bytes
 * i % 251, as computed by `openssl dgst -sha256 -mac HMAC`.
 */
bool
crypto_self_test(void)
{
	static const uint8 expected[8] = {0x5c, 0x8d, 0xa3, 0x9f, 0xcb, 0xde, 0xc1, 0xd5};
	uint8		key[PII_KEY_LEN];
	char		msg[200];
	uint8		mac[8];
	CryptoHmac *h;
	int			i;

	for (i = 0; i < PII_KEY_LEN; i++)
		key[i] = (uint8) i;
	for (i = 0; i < (int) sizeof(msg); i++)
		msg[i] = (char) (i % 251);
	h = crypto_new_hmac(key);
	if (h == NULL)
		return false;
	crypto_hmac(h, 't', msg, sizeof(msg), mac, sizeof(mac));
	crypto_free_hmac(h);
	return memcmp(mac, expected, sizeof(mac)) == 0;
}

/*
 * Get (encrypting) or set (decrypting) the GCM tag.  The parameter call is
 * what EVP_CIPHER_CTX_ctrl translates to in OpenSSL 3, minus the
 * translation, which cost a tenth of sealing a short value.
 */
static bool
crypto_gcm_tag(EVP_CIPHER_CTX *ctx, uint8 *tag, bool get)
{
	OSSL_PARAM	params[2];

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG,
												  tag, ENV_TAG_LEN);
	params[1] = OSSL_PARAM_construct_end();
	return (get ? EVP_CIPHER_CTX_get_params(ctx, params) :
			EVP_CIPHER_CTX_set_params(ctx, params)) == 1;
}

/* The first bytes of HMAC-SHA256(master, label): names a master key. */
void
crypto_fingerprint(const uint8 *master, uint8 *out)
{
	CryptoHmac *mac = crypto_new_hmac(master);

	if (mac == NULL)
		crypto_failure("HMAC-SHA256 setup");
	crypto_hmac(mac, 'f', fingerprint_label, sizeof(fingerprint_label) - 1,
				out, PII_FINGERPRINT_LEN);
	crypto_free_hmac(mac);
}

/* The additional data that binds a wrapped key to its id and purpose. */
static int
crypto_wrap_aad(uint32 key_id, char purpose, uint8 *aad)
{
	int			n = sizeof(wrap_label) - 1;

	memcpy(aad, wrap_label, n);
	aad[n++] = (uint8) (key_id >> 24);
	aad[n++] = (uint8) (key_id >> 16);
	aad[n++] = (uint8) (key_id >> 8);
	aad[n++] = (uint8) key_id;
	aad[n++] = (uint8) purpose;
	return n;
}

/*
 * Wrap a data key under a master key: nonce || AES-256-GCM(key) || tag,
 * with the key id and purpose as additional data.  The nonce is drawn
 * before the context keyed with the master key exists, so that nothing can
 * raise while it does.  Raises on failure: the caller wipes key in
 * PG_CATCH.
 */
void
crypto_wrap_key(const uint8 *master, uint32 key_id, char purpose,
				const uint8 *key, uint8 *wrapped)
{
	EVP_CIPHER_CTX *ctx;
	uint8		aad[64];
	int			aad_len = crypto_wrap_aad(key_id, purpose, aad);
	int			outl;
	bool		ok;

	crypto_random_bytes(wrapped, ENV_NONCE_LEN);
	ctx = crypto_new_gcm_ctx(master, true);
	if (ctx == NULL)
		crypto_failure("AES-256-GCM setup");
	ok = EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, wrapped) == 1 &&
		EVP_EncryptUpdate(ctx, NULL, &outl, aad, aad_len) == 1 &&
		EVP_EncryptUpdate(ctx, wrapped + ENV_NONCE_LEN, &outl,
						  key, PII_KEY_LEN) == 1 &&
		EVP_EncryptFinal_ex(ctx, wrapped + ENV_NONCE_LEN + PII_KEY_LEN,
							&outl) == 1 &&
		crypto_gcm_tag(ctx, wrapped + ENV_NONCE_LEN + PII_KEY_LEN, true);
	crypto_free_gcm_ctx(ctx);
	if (!ok)
		crypto_failure("data key wrapping");
}

/*
 * Unwrap a data key; false when authentication fails (wrong master key or
 * a damaged row).  key is cleansed on failure.
 */
bool
crypto_unwrap_key(const uint8 *master, uint32 key_id, char purpose,
				  const uint8 *wrapped, uint8 *key)
{
	EVP_CIPHER_CTX *ctx = crypto_new_gcm_ctx(master, false);
	bool		ok;

	if (ctx == NULL)
		crypto_failure("AES-256-GCM setup");
	ok = crypto_unwrap_key_with(ctx, key_id, purpose, wrapped, key);
	crypto_free_gcm_ctx(ctx);
	return ok;
}

/*
 * crypto_unwrap_key with a decryption context already keyed with the
 * master key (keys.c keeps one for the many subject keys a scan unwraps).
 */
bool
crypto_unwrap_key_with(EVP_CIPHER_CTX *ctx, uint32 key_id, char purpose,
					   const uint8 *wrapped, uint8 *key)
{
	uint8		aad[64];
	int			aad_len = crypto_wrap_aad(key_id, purpose, aad);
	uint8		tail[16];
	int			outl;
	bool		ok;

	ok = EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, wrapped) == 1 &&
		EVP_DecryptUpdate(ctx, NULL, &outl, aad, aad_len) == 1 &&
		EVP_DecryptUpdate(ctx, key, &outl, wrapped + ENV_NONCE_LEN,
						  PII_KEY_LEN) == 1 &&
		crypto_gcm_tag(ctx, (uint8 *) (wrapped + ENV_NONCE_LEN + PII_KEY_LEN), false) &&
		EVP_DecryptFinal_ex(ctx, tail, &outl) == 1;
	ERR_clear_error();
	if (!ok)
		OPENSSL_cleanse(key, PII_KEY_LEN);
	return ok;
}

/* Decode a big-endian key id at p. */
static inline uint32
read_key_id(const char *p)
{
	const uint8 *u = (const uint8 *) p;

	return ((uint32) u[0] << 24) | ((uint32) u[1] << 16) |
		((uint32) u[2] << 8) | (uint32) u[3];
}

/*
 * Check an envelope's structure (not its authenticity, which needs the key
 * and is checked on decryption).  Errors never show the value itself.
 */
void
crypto_check_envelope(const char *env, Size len, char kind, bool binary_input)
{
	int			code = binary_input ? ERRCODE_INVALID_BINARY_REPRESENTATION :
	ERRCODE_INVALID_TEXT_REPRESENTATION;
	const char *type_name = kind == ENV_KIND_TEXT ?
	"encrypted_text" : "encrypted_bytea";

	if (len < ENV_OVERHEAD)
		ereport(ERROR,
				(errcode(code),
				 errhidestmt(true),
				 errmsg("malformed %s envelope", type_name),
				 errdetail("An envelope has at least %d bytes; this one has %zu.",
						   ENV_OVERHEAD, len)));
	if ((uint8) env[ENV_OFF_VERSION] != ENV_VERSION)
		ereport(ERROR,
				(errcode(code),
				 errhidestmt(true),
				 errmsg("unsupported %s envelope version %d", type_name,
						(int) (uint8) env[ENV_OFF_VERSION]),
				 errdetail("This version of pii_guard reads envelope version %d.",
						   ENV_VERSION),
				 errhint("The value was written by a newer pii_guard, or it is damaged.")));
	if (env[ENV_OFF_KIND] != kind)
		ereport(ERROR,
				(errcode(code),
				 errhidestmt(true),
				 errmsg("malformed %s envelope", type_name),
				 errdetail("The envelope holds a value of another encrypted type.")));
	if (read_key_id(env + ENV_OFF_KEY_ID) == 0)
		ereport(ERROR,
				(errcode(code),
				 errhidestmt(true),
				 errmsg("malformed %s envelope", type_name),
				 errdetail("The envelope names data key 0, which never exists.")));
}

/* The data key id of an envelope. */
uint32
envelope_key_id(const bytea *envelope)
{
	return read_key_id(VARDATA_ANY(envelope) + ENV_OFF_KEY_ID);
}

/*
 * Encrypt len bytes of plaintext under the active data key, or under
 * subject key subject_key (non-zero), and return the envelope as a
 * palloc'd bytea-shaped varlena.
 */
static bytea *
crypto_seal_under(char kind, const char *plain, Size len, uint32 subject_key)
{
	DataKey    *ek;
	DataKey    *bk;
	bytea	   *result;
	uint8	   *env;
	int			outl;

	if (len > PII_MAX_PLAINTEXT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errhidestmt(true),
				 errmsg("value too long to encrypt"),
				 errdetail("The value has %zu bytes; the maximum is %zu.",
						   len, (Size) PII_MAX_PLAINTEXT)));

	if (subject_key != 0)
		keys_subject_sealer(subject_key, &ek, &bk);
	else
		keys_current(&ek, &bk);
	statement_note_plaintext();

	result = (bytea *) palloc(VARHDRSZ + len + ENV_OVERHEAD);
	SET_VARSIZE(result, VARHDRSZ + len + ENV_OVERHEAD);
	env = (uint8 *) VARDATA(result);

	env[ENV_OFF_VERSION] = ENV_VERSION;
	env[ENV_OFF_KIND] = (uint8) kind;
	env[ENV_OFF_KEY_ID] = (uint8) (ek->key_id >> 24);
	env[ENV_OFF_KEY_ID + 1] = (uint8) (ek->key_id >> 16);
	env[ENV_OFF_KEY_ID + 2] = (uint8) (ek->key_id >> 8);
	env[ENV_OFF_KEY_ID + 3] = (uint8) ek->key_id;
	crypto_next_nonce(env + ENV_OFF_NONCE);
	crypto_hmac(bk->mac, kind, plain, len, env + ENV_OFF_BLIND, ENV_BLIND_LEN);

	if (EVP_EncryptInit_ex(ek->enc, NULL, NULL, ek->rekey,
						   env + ENV_OFF_NONCE) != 1 ||
		EVP_EncryptUpdate(ek->enc, NULL, &outl, env, ENV_HEADER_LEN) != 1 ||
		(len > 0 &&
		 EVP_EncryptUpdate(ek->enc, env + ENV_HEADER_LEN, &outl,
						   (const uint8 *) plain, (int) len) != 1) ||
		EVP_EncryptFinal_ex(ek->enc, env + ENV_HEADER_LEN + len, &outl) != 1 ||
		!crypto_gcm_tag(ek->enc, env + ENV_HEADER_LEN + len, true))
		crypto_failure("AES-256-GCM encryption");

	return result;
}

/* Encrypt under the active data key (see crypto_seal_under). */
bytea *
crypto_seal(char kind, const char *plain, Size len)
{
	return crypto_seal_under(kind, plain, len, 0);
}

/* Encrypt under a subject key (crypto-shredding; see keys.c). */
bytea *
crypto_seal_subject(char kind, const char *plain, Size len, uint32 subject_key)
{
	Assert(subject_key >= SUBJECT_KEY_MIN);
	return crypto_seal_under(kind, plain, len, subject_key);
}

/*
 * A probe for plaintext plain: an envelope header carrying its blind index
 * and nothing to decrypt (no key id, a zero nonce, no ciphertext, a zero
 * tag).  It is only ever compared with stored envelopes (enctype.c's
 * _blind_probe, for lookups through masking views) and never stored or
 * returned; were it ever decrypted, it would fail authentication.
 */
bytea *
crypto_probe(char kind, const char *plain, Size len)
{
	DataKey    *ek;
	DataKey    *bk;
	bytea	   *result;
	uint8	   *env;

	keys_current(&ek, &bk);
	statement_note_plaintext();
	result = (bytea *) palloc0(VARHDRSZ + ENV_OVERHEAD);
	SET_VARSIZE(result, VARHDRSZ + ENV_OVERHEAD);
	env = (uint8 *) VARDATA(result);
	env[ENV_OFF_VERSION] = ENV_VERSION;
	env[ENV_OFF_KIND] = (uint8) kind;
	crypto_hmac(bk->mac, kind, plain, len, env + ENV_OFF_BLIND, ENV_BLIND_LEN);
	return result;
}

/*
 * Authenticate and decrypt an envelope of the given kind.  Returns the
 * plaintext as a palloc'd varlena (text and bytea share that layout).
 */
bytea *
crypto_open(const bytea *envelope, char kind)
{
	const uint8 *env = (const uint8 *) VARDATA_ANY(envelope);
	Size		env_len = VARSIZE_ANY_EXHDR(envelope);
	Size		len;
	DataKey    *key;
	bytea	   *result;
	uint8	   *plain;
	uint8		tail[16];
	int			outl;

	/* Values reach us only through the checked I/O routines; be defensive. */
	if (env_len < ENV_OVERHEAD || env[ENV_OFF_VERSION] != ENV_VERSION ||
		env[ENV_OFF_KIND] != (uint8) kind)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("encrypted value is damaged"),
				 errdetail("Its envelope header is not valid.")));

	len = env_len - ENV_OVERHEAD;
	key = keys_lookup(read_key_id((const char *) env + ENV_OFF_KEY_ID));
	if (key->dec == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("encrypted value is damaged"),
				 errdetail("Its envelope names data key %u, which is not an encryption key.",
						   key->key_id)));

	result = (bytea *) palloc(VARHDRSZ + len);
	SET_VARSIZE(result, VARHDRSZ + len);
	plain = (uint8 *) VARDATA(result);
	if (EVP_DecryptInit_ex(key->dec, NULL, NULL, key->rekey,
						   env + ENV_OFF_NONCE) != 1 ||
		EVP_DecryptUpdate(key->dec, NULL, &outl, env, ENV_HEADER_LEN) != 1 ||
		(len > 0 &&
		 EVP_DecryptUpdate(key->dec, plain, &outl,
						   env + ENV_HEADER_LEN, (int) len) != 1) ||
		!crypto_gcm_tag(key->dec, (uint8 *) (env + ENV_HEADER_LEN + len), false) ||
		EVP_DecryptFinal_ex(key->dec, tail, &outl) != 1)
	{
		ERR_clear_error();
		OPENSSL_cleanse(plain, len);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errhidestmt(true),
				 errmsg("encrypted value failed authentication"),
				 errdetail("The envelope was altered after it was written, or it is damaged; "
						   "it cannot be decrypted.")));
	}
	return result;
}

/* Wipe and free a plaintext buffer returned by crypto_open. */
void
crypto_wipe(bytea *plain)
{
	OPENSSL_cleanse(VARDATA(plain), VARSIZE(plain) - VARHDRSZ);
	pfree(plain);
}
