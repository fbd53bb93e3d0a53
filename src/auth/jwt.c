/* jwt.c: compact JWS with HMAC-SHA256, and nothing else.
 *
 * The verifier decides the algorithm, not the token: the header must say
 * "alg":"HS256" exactly. `none`, RS256 (the classic public-key-as-HMAC-key
 * confusion), a missing alg and a `crit` header we cannot honour are all
 * refused before the signature is even computed. The signature is compared
 * in constant time, and the payload is parsed only once it is authentic. */
#include "auth/internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <sodium.h>

static const char hs256_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
/* base64url of hs256_header */
static const char hs256_header_b64[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

char *osb__jwt_sign(const void *key, size_t keylen, const json_t *claims) {
  char *payload = json_dumps(claims, JSON_COMPACT);
  osb_assert(payload != NULL);
  size_t hl = sizeof(hs256_header) - 1, pl = strlen(payload);
  size_t he = osb__b64url_len(hl), pe = osb__b64url_len(pl), se = osb__b64url_len(32);
  char *out = osb_malloc(he + 1 + pe + 1 + se + 1);
  osb__b64url_encode(out, hs256_header, hl);
  out[he] = '.';
  osb__b64url_encode(out + he + 1, payload, pl);
  unsigned char mac[32];
  osb__hmac_sha256(mac, key, keylen, out, he + 1 + pe);
  out[he + 1 + pe] = '.';
  osb__b64url_encode(out + he + 1 + pe + 1, mac, sizeof(mac));
  free(payload);
  return out;
}

/* Decode one base64url segment and parse it as a JSON object. */
static json_t *decode_object(const char *s, size_t n) {
  char *raw = osb_malloc(n * 3 / 4 + 1);
  size_t rl = 0;
  json_t *j = NULL;
  if (osb__b64url_decode(raw, &rl, s, n) < 0) goto out;
  j = json_loadb(raw, rl, JSON_REJECT_DUPLICATES, NULL);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
out:
  free(raw);
  return j;
}

/* A NumericDate: integer, or a real with an integral value range we accept. */
static bool numeric_date(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return true;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (!(d > -1e15 && d < 1e15)) return false;
    *out = (int64_t)d;
    return true;
  }
  return false;
}

int osb__jwt_verify(const char *token, size_t len, const void *key, size_t keylen,
                    int64_t now_s, int64_t skew_s, json_t **claims) {
  if (claims) *claims = NULL;
  if (!token || len == 0 || len > OSB__TOKEN_MAX) return OSB__JWT_EMALFORMED;
  const char *d1 = memchr(token, '.', len);
  if (!d1) return OSB__JWT_EMALFORMED;
  const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
  if (!d2) return OSB__JWT_EMALFORMED;
  if (memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) return OSB__JWT_EMALFORMED;
  size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1), sl = len - (size_t)(d2 + 1 - token);
  if (hl == 0 || pl == 0) return OSB__JWT_EMALFORMED;

  int rc = 0;
  json_t *header = NULL, *payload = NULL;
  /* Fast path: our own header, byte for byte, needs no parsing. Anything
   * else goes through the full check. */
  if (!(hl == sizeof(hs256_header_b64) - 1 && memcmp(token, hs256_header_b64, hl) == 0)) {
    header = decode_object(token, hl);
    if (!header) return OSB__JWT_EMALFORMED;
    const json_t *alg = json_object_get(header, "alg");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5 || json_object_get(header, "crit")) {
      rc = OSB__JWT_EALG;
      goto out;
    }
  }

  unsigned char sig[48], mac[32];
  size_t siglen = 0;
  if (sl != osb__b64url_len(32) || osb__b64url_decode(sig, &siglen, d2 + 1, sl) < 0 || siglen != 32) {
    rc = OSB__JWT_ESIG;
    goto out;
  }
  osb__hmac_sha256(mac, key, keylen, token, (size_t)(d2 - token));
  if (sodium_memcmp(mac, sig, 32) != 0) {
    rc = OSB__JWT_ESIG;
    goto out;
  }

  payload = decode_object(d1 + 1, pl);
  if (!payload) {
    rc = OSB__JWT_EMALFORMED;
    goto out;
  }
  int64_t exp, t;
  if (!numeric_date(json_object_get(payload, "exp"), &exp) || exp <= now_s - skew_s) {
    rc = OSB__JWT_EEXPIRED;
    goto out;
  }
  const json_t *nbf = json_object_get(payload, "nbf");
  if (nbf && (!numeric_date(nbf, &t) || t > now_s + skew_s)) {
    rc = OSB__JWT_ENOTYET;
    goto out;
  }
  const json_t *iat = json_object_get(payload, "iat");
  if (iat && (!numeric_date(iat, &t) || t > now_s + skew_s)) {
    rc = OSB__JWT_ENOTYET;
    goto out;
  }
  if (claims) {
    *claims = payload;
    payload = NULL;
  }
out:
  json_decref(header);
  json_decref(payload);
  return rc;
}

const char *osb__jwt_strerror(int err) {
  switch (err) {
    case 0: return "ok";
    case OSB__JWT_EMALFORMED: return "malformed token";
    case OSB__JWT_EALG: return "algorithm not allowed";
    case OSB__JWT_ESIG: return "bad signature";
    case OSB__JWT_EEXPIRED: return "token expired";
    case OSB__JWT_ENOTYET: return "token not yet valid";
    default: return "invalid token";
  }
}
