/* util.c: e-mail normalisation for the auth module (SHA-256 and HMAC are
 * core's: core/crypto.h). */
#include "auth/internal.h"

#include <ctype.h>
#include <stdlib.h>

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
