/*-------------------------------------------------------------------------
 *
 * fuzz_keys.c
 *		Fixed test data keys in place of keys.c, for the fuzz targets.
 *
 * keys.c reads and unwraps data keys through SPI, which needs a server.
 * The fuzz targets only need keys to exist: an encrypt key (id 1), the
 * blind index key (id 2) and the pseudonym key (id 3), built once with
 * crypto.c's own constructors from constant bytes (they protect nothing)
 * and kept for the life of the process, as a backend's key cache is.
 * keys_lookup() refuses every other id exactly as keys.c does, so a fuzzed
 * envelope naming an unknown key takes the server's error path.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"
#include "pii_guard.h"

static DataKey encrypt_key;
static DataKey blind_key;
static DataKey pseudonym_key;
static bool built = false;

/* Build the three keys on first use. */
static void
fuzz_build_keys(void)
{
	uint8		key[PII_KEY_LEN];

	if (built)
		return;
	memset(key, 0x11, sizeof(key));
	encrypt_key.key_id = FUZZ_ENCRYPT_KEY_ID;
	encrypt_key.purpose = KEY_PURPOSE_ENCRYPT;
	encrypt_key.enc = crypto_new_gcm_ctx(key, true);
	encrypt_key.dec = crypto_new_gcm_ctx(key, false);
	memset(key, 0x22, sizeof(key));
	blind_key.key_id = FUZZ_BLIND_KEY_ID;
	blind_key.purpose = KEY_PURPOSE_BLIND;
	blind_key.mac = crypto_new_hmac(key);
	memset(key, 0x33, sizeof(key));
	pseudonym_key.key_id = FUZZ_PSEUDONYM_KEY_ID;
	pseudonym_key.purpose = KEY_PURPOSE_PSEUDONYM;
	pseudonym_key.mac = crypto_new_hmac(key);
	FUZZ_CHECK(encrypt_key.enc && encrypt_key.dec && blind_key.mac &&
			   pseudonym_key.mac, "could not build the test keys");
	/* kept for the process, as keys.c's cache keeps its keys */
	crypto_adopt(encrypt_key.enc);
	crypto_adopt(encrypt_key.dec);
	crypto_adopt(blind_key.mac);
	crypto_adopt(pseudonym_key.mac);
	built = true;
}

/* keys.c's API, on the test keys. */
DataKey *
keys_lookup(uint32 key_id)
{
	fuzz_build_keys();
	switch (key_id)
	{
		case FUZZ_ENCRYPT_KEY_ID:
			return &encrypt_key;
		case FUZZ_BLIND_KEY_ID:
			return &blind_key;
		case FUZZ_PSEUDONYM_KEY_ID:
			return &pseudonym_key;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errhidestmt(true),
			 errmsg("pii_guard data key %u does not exist", key_id)));
}

void
keys_current(DataKey **ek, DataKey **bk)
{
	fuzz_build_keys();
	*ek = &encrypt_key;
	*bk = &blind_key;
}

/* (subject keys: no envelope the harness makes names one) */
void
keys_subject_sealer(uint32 key_id, DataKey **ek pg_attribute_unused(),
					DataKey **bk pg_attribute_unused())
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errhidestmt(true),
			 errmsg("pii_guard subject key %u does not exist", key_id)));
}

DataKey *
keys_pseudonym(void)
{
	fuzz_build_keys();
	return &pseudonym_key;
}
