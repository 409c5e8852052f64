/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PG_VERSION_NUM guard of pii_guard lives here.
 *
 * pii_guard is developed against PostgreSQL 15 and kept building on 13
 * through 17 where that costs little.  Code elsewhere uses the names defined
 * below and never tests PG_VERSION_NUM itself.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PII_GUARD_COMPAT_H
#define PII_GUARD_COMPAT_H

#include "postgres.h"

#include "common/base64.h"
#include "utils/guc.h"

#if PG_VERSION_NUM < 130000
#error "pii_guard requires PostgreSQL 13 or later"
#endif

/* PostgreSQL 15 renamed EmitWarningsOnPlaceholders. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* PostgreSQL 18 changed the base64 routines to take uint8 buffers. */
#if PG_VERSION_NUM >= 180000
#define compat_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#define compat_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (uint8 *) (dst), (dstlen))
#else
#define compat_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (char *) (dst), (dstlen))
#define compat_b64_decode(src, len, dst, dstlen) \
	pg_b64_decode((src), (len), (char *) (dst), (dstlen))
#endif

#endif							/* PII_GUARD_COMPAT_H */
