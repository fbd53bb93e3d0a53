/* crypto.c: SHA-256 and HMAC-SHA256 over OpenSSL (see crypto.h). */
#include "core/crypto.h"

#include <string.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <pthread.h>

#include "core/core.h"

void osb_sha256(unsigned char out[OSB_SHA256_LEN], const void *p, size_t n) {
  SHA256(p, n, out);
}

void osb_sha256_hex(char out[2 * OSB_SHA256_LEN + 1], const void *p, size_t n) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(p, n, md);
  osb_hex(out, md, sizeof(md));
}

/* HMAC-SHA256 with the keyed contexts cached per thread. OpenSSL 3's
 * one-shot HMAC() fetches the algorithm and keys a fresh context on every
 * call, which is most of its cost for a JWT-sized input; the server uses a
 * handful of keys (JWT_SECRET, SUPABASE_JWT_SECRET, the CSRF key), so each
 * keeps one EVP_MAC_CTX that is re-initialised with its existing key. */
#define HMAC_CACHE 4
#define HMAC_KEY_MAX 256

typedef struct hmac_slot {
  EVP_MAC_CTX *ctx;
  size_t keylen;
  unsigned char key[HMAC_KEY_MAX];
} hmac_slot_t;

static _Thread_local hmac_slot_t hmac_slots[HMAC_CACHE];
static _Thread_local unsigned hmac_next;
static EVP_MAC *hmac_alg;
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_fetch(void) { hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL); }

static EVP_MAC_CTX *hmac_ctx(const void *key, size_t keylen) {
  for (unsigned i = 0; i < HMAC_CACHE; i++) {
    hmac_slot_t *s = &hmac_slots[i];
    if (s->ctx && s->keylen == keylen && memcmp(s->key, key, keylen) == 0) {
      if (EVP_MAC_init(s->ctx, NULL, 0, NULL) != 1) return NULL;
      return s->ctx;
    }
  }
  if (keylen > HMAC_KEY_MAX) return NULL;
  pthread_once(&hmac_once, hmac_fetch);
  if (!hmac_alg) return NULL;
  hmac_slot_t *s = &hmac_slots[hmac_next++ % HMAC_CACHE];
  EVP_MAC_CTX_free(s->ctx);
  s->ctx = EVP_MAC_CTX_new(hmac_alg);
  s->keylen = 0;
  if (!s->ctx) return NULL;
  OSSL_PARAM params[] = {
    OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
    OSSL_PARAM_construct_end(),
  };
  static const unsigned char empty = 0;
  if (EVP_MAC_init(s->ctx, keylen ? key : &empty, keylen, params) != 1) {
    EVP_MAC_CTX_free(s->ctx);
    s->ctx = NULL;
    return NULL;
  }
  memcpy(s->key, key, keylen);
  s->keylen = keylen;
  return s->ctx;
}

void osb_hmac_sha256(unsigned char out[OSB_SHA256_LEN], const void *key, size_t keylen,
                     const void *p, size_t n) {
  EVP_MAC_CTX *ctx = hmac_ctx(key, keylen);
  size_t outl = 0;
  if (ctx && EVP_MAC_update(ctx, p, n) == 1 && EVP_MAC_final(ctx, out, &outl, 32) == 1 && outl == 32)
    return;
  /* Uncached path (very long keys, or OpenSSL trouble): the one-shot call. */
  unsigned int mdlen = 32;
  static const unsigned char empty = 0;
  unsigned char *r = HMAC(EVP_sha256(), keylen ? key : &empty, (int)keylen, p, n, out, &mdlen);
  osb_assert(r != NULL && mdlen == 32);
}

void osb_hmac_cache_clear(void) {
  for (unsigned i = 0; i < HMAC_CACHE; i++) {
    EVP_MAC_CTX_free(hmac_slots[i].ctx);
    OPENSSL_cleanse(hmac_slots[i].key, sizeof(hmac_slots[i].key));
    hmac_slots[i].ctx = NULL;
    hmac_slots[i].keylen = 0;
  }
}
