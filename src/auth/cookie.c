/* cookie.c: Set-Cookie values and the signed double-submit CSRF token.
 *
 * Plain double submit (cookie == header) trusts that only our own pages can
 * write the cookie. With a shared SSO_COOKIE_DOMAIN any sibling subdomain
 * can plant an osb_csrf cookie, so the token also carries a MAC over the
 * user id: a planted token made for another (or no) user does not pass. */
#include "auth/internal.h"

#include <sodium.h>

void osb__cookie_build(osb_buf_t *out, const char *name, const char *value, const char *path,
                       long max_age_s, bool http_only, const osb__cookie_opts_t *o) {
  osb_buf_printf(out, "%s=%s; Path=%s; Max-Age=%ld", name, value ? value : "", path,
                 max_age_s > 0 ? max_age_s : 0);
  if (max_age_s <= 0) osb_buf_puts(out, "; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
  if (o && o->domain && o->domain[0]) osb_buf_printf(out, "; Domain=%s", o->domain);
  if (http_only) osb_buf_puts(out, "; HttpOnly");
  if (o && o->secure) osb_buf_puts(out, "; Secure");
  osb_buf_puts(out, "; SameSite=Lax");
}

#define NONCE_BYTES 16   /* 22 characters */
#define MAC_BYTES 16     /* 22 characters */

static void csrf_mac(char out[23], const void *key, size_t keylen, const char *user_id,
                     const char *nonce, size_t noncelen) {
  osb_buf_t m = OSB_BUF_INIT;
  osb_buf_puts(&m, "osb-csrf");
  osb_buf_append(&m, "", 1);
  osb_buf_puts(&m, user_id ? user_id : "");
  osb_buf_append(&m, "", 1);
  osb_buf_append(&m, nonce, noncelen);
  unsigned char mac[32];
  osb__hmac_sha256(mac, key, keylen, m.base, m.len);
  osb__b64url_encode(out, mac, MAC_BYTES);
  osb_buf_free(&m);
}

void osb__csrf_make(char out[OSB__CSRF_LEN + 1], const void *key, size_t keylen, const char *user_id) {
  unsigned char nonce[NONCE_BYTES];
  osb_random_bytes(nonce, sizeof(nonce));
  osb__b64url_encode(out, nonce, sizeof(nonce));
  out[22] = '.';
  csrf_mac(out + 23, key, keylen, user_id, out, 22);
}

bool osb__csrf_check(const void *key, size_t keylen, const char *user_id, const char *cookie,
                     const char *header) {
  if (!cookie || !header) return false;
  size_t cl = strlen(cookie), hl = strlen(header);
  if (!osb_consttime_eq(cookie, cl, header, hl)) return false;
  if (cl != OSB__CSRF_LEN || cookie[22] != '.') return false;
  char mac[23];
  csrf_mac(mac, key, keylen, user_id, cookie, 22);
  return sodium_memcmp(mac, cookie + 23, 22) == 0;
}
