/* crypto.h: SHA-256 and HMAC-SHA256 (OpenSSL), for every module.
 *
 * auth signs tokens and CSRF values with these and stores refresh tokens
 * as SHA-256 digests; anything else that needs a digest or a MAC (an
 * upstream's request signature, a cache key) calls the same functions.
 * Thread-safe: HMAC keeps a few keyed contexts per thread (the threadpool
 * hashes passwords and verifies tokens too). Constant-time comparison of
 * MACs is osb_consttime_eq (core.h). */
#ifndef OSB_CORE_CRYPTO_H
#define OSB_CORE_CRYPTO_H

#include <stddef.h>

#define OSB_SHA256_LEN 32

void osb_sha256(unsigned char out[OSB_SHA256_LEN], const void *p, size_t n);
/* SHA-256 of p as 64 lowercase hex characters + NUL. */
void osb_sha256_hex(char out[2 * OSB_SHA256_LEN + 1], const void *p, size_t n);
/* HMAC-SHA256 of p under key (any length; an empty key is allowed). */
void osb_hmac_sha256(unsigned char out[OSB_SHA256_LEN], const void *key, size_t keylen,
                     const void *p, size_t n);
/* Free this thread's cached HMAC contexts and wipe their key copies
 * (shutdown, tests, after a key rotation). */
void osb_hmac_cache_clear(void);

#endif
