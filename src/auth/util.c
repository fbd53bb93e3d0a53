/* util.c: hashing helpers and e-mail normalisation for the auth module. */
#include "auth/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

void osb__sha256_hex(char out[65], const void *p, size_t n) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(p, n, md);
  osb_hex(out, md, sizeof(md));
}

void osb__hmac_sha256(unsigned char out[32], const void *key, size_t keylen, const void *p, size_t n) {
  unsigned int mdlen = 32;
  /* An empty key is legal for HMAC but OpenSSL wants a non-NULL pointer. */
  static const unsigned char empty = 0;
  unsigned char *r = HMAC(EVP_sha256(), keylen ? key : &empty, (int)keylen, p, n, out, &mdlen);
  osb_assert(r != NULL && mdlen == 32);
}

char *osb__email_normalize(const char *in) {
  if (!in) return NULL;
  size_t len = strlen(in);
  size_t a = 0, b = len;
  while (a < b && isspace((unsigned char)in[a])) a++;
  while (b > a && isspace((unsigned char)in[b - 1])) b--;
  size_t n = b - a;
  if (n < 3 || n > OSB__EMAIL_MAX) return NULL;
  char *out = osb_malloc(n + 1);
  size_t at = 0, ats = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)in[a + i];
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' || c == ',' || c == ';' || c == '<' ||
        c == '>') {
      free(out);
      return NULL;
    }
    if (c == '@') { at = i; ats++; }
    out[i] = (char)tolower(c);
  }
  out[n] = 0;
  if (ats != 1 || at == 0 || at == n - 1) {
    free(out);
    return NULL;
  }
  return out;
}
