/* jwt_fuzz.c: libFuzzer driver for JWT parsing and verification (jwt.c,
 * b64url.c). Three checks per input:
 *  - the input as a token: osb__jwt_verify() returns 0 or one of its error
 *    codes, and claims are returned only on success;
 *  - the input as claims: if it is a JSON object with an integral exp in
 *    the future, signing it and verifying the result must succeed and give
 *    the same claims back; flipping one signature character must fail;
 *  - base64url: decode(encode(x)) == x, and the strict decoder never writes
 *    more than len*3/4 bytes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"

static const char key[] = "fuzzing-key-0123456789abcdef-0123456789";
#define NOW 1800000000

static void check_token(const char *tok, size_t len) {
  json_t *claims = (json_t *)1;
  int rc = osb__jwt_verify(tok, len, key, sizeof(key) - 1, NOW, 60, &claims);
  if (rc == 0) {
    osb_assert(claims && json_is_object(claims));
    json_decref(claims);
  } else {
    osb_assert(rc < 0 && claims == NULL);
    osb_assert(osb__jwt_strerror(rc) != NULL);
  }
}

static void check_roundtrip(const uint8_t *data, size_t size) {
  json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
  if (!j || !json_is_object(j)) goto out;
  json_object_set_new(j, "exp", json_integer(NOW + 3600));
  json_object_del(j, "nbf");
  json_object_del(j, "iat");
  char *tok = osb__jwt_sign(key, sizeof(key) - 1, j);
  size_t tl = strlen(tok);
  if (tl <= OSB__TOKEN_MAX) {
    json_t *back = NULL;
    int rc = osb__jwt_verify(tok, tl, key, sizeof(key) - 1, NOW, 60, &back);
    if (rc != 0 || !json_equal(back, j)) {
      fprintf(stderr, "sign/verify round trip failed: rc=%d token=%s\n", rc, tok);
      abort();
    }
    json_decref(back);
    tok[tl - 1] = tok[tl - 1] == 'A' ? 'B' : 'A';
    osb_assert(osb__jwt_verify(tok, tl, key, sizeof(key) - 1, NOW, 60, NULL) != 0);
  }
  free(tok);
out:
  json_decref(j);
}

static void check_b64(const uint8_t *data, size_t size) {
  char *enc = malloc(osb__b64url_len(size) + 1);
  osb__b64url_encode(enc, data, size);
  osb_assert(strlen(enc) == osb__b64url_len(size));
  uint8_t *dec = malloc(size + 1);
  size_t dl = 0;
  osb_assert(osb__b64url_decode(dec, &dl, enc, strlen(enc)) == 0 && dl == size && memcmp(dec, data, size) == 0);
  free(dec);
  free(enc);
  /* the input itself as base64url: the decoder stays within n*3/4 */
  size_t cap = size * 3 / 4 + 1;
  uint8_t *out = malloc(cap);
  dl = 0;
  if (osb__b64url_decode(out, &dl, (const char *)data, size) == 0) osb_assert(dl <= size * 3 / 4);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_token((const char *)data, size);
  check_roundtrip(data, size);
  check_b64(data, size);
  return 0;
}
