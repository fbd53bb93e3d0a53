/* cookie_query_fuzz.c: libFuzzer driver for the request accessors a handler
 * uses on attacker-chosen strings (request.c): osb_req_cookie() over Cookie
 * headers, osb_req_query() over query strings, osb__url_decode(), and the
 * CSRF double-submit check (cookie.c). The input is split at the first NUL:
 * [Cookie header value] \0 [query string] \0 [name to look up].
 * Oracles: a value found is NUL-terminated and no longer than its source;
 * url_decode never grows its input and fails only on a bad escape; a CSRF
 * token made for a user passes for that user and no other, and the fuzzed
 * cookie never passes unless it equals the header byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/internal.h"
#include "http/internal.h"

static const char key[] = "csrf-fuzz-key-0123456789abcdef";

static void lookups(osb_req_t *r, const char *name, size_t srclen) {
  static const char *const names[] = {"osb_session", "osb_csrf", "a", "", "q", "limit"};
  for (size_t i = 0; i <= OSB_ARRAY_LEN(names); i++) {
    const char *n = i < OSB_ARRAY_LEN(names) ? names[i] : name;
    const char *v = osb_req_cookie(r, n);
    if (v) osb_assert(strlen(v) <= srclen);
    v = osb_req_query(r, n);
    if (v) osb_assert(strlen(v) <= srclen);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 8192) return 0;
  char *buf = malloc(size + 3);
  memcpy(buf, data, size);
  buf[size] = buf[size + 1] = buf[size + 2] = 0;
  const char *cookie = buf;
  const char *query = cookie + strlen(cookie) + 1;
  const char *name = query <= buf + size ? query + strlen(query) + 1 : buf + size + 2;
  if (name > buf + size + 2) name = buf + size + 2;
  if (query > buf + size + 1) query = buf + size + 1;

  osb_req_t *r = calloc(1, sizeof(*r));
  r->nheaders = 2;
  r->hn[0] = "cookie";
  r->hv[0] = cookie;
  r->hn[1] = "x-other";
  r->hv[1] = query;
  r->query = (char *)query;
  lookups(r, name, size);
  osb_assert(osb_req_header(r, "Cookie") == cookie);

  /* url_decode in place, both modes */
  size_t ql = strlen(query);
  for (int plus = 0; plus < 2; plus++) {
    char *d = strndup(query, ql);
    int n = osb__url_decode(d, ql, plus != 0);
    osb_assert(n <= (int)ql);
    if (n < 0) osb_assert(strchr(query, '%') != NULL);
    free(d);
  }

  /* CSRF: the fuzzed cookie value as both cookie and header */
  const char *ck = osb_req_cookie(r, "osb_csrf");
  if (ck && osb__csrf_check(key, sizeof(key) - 1, "u1", ck, ck)) {
    /* only a token carrying our MAC passes: it must be 45 chars with a '.' */
    osb_assert(strlen(ck) == OSB__CSRF_LEN && ck[22] == '.');
  }
  if (ck) osb_assert(!osb__csrf_check(key, sizeof(key) - 1, "u1", ck, name) || strcmp(ck, name) == 0);
  char tok[OSB__CSRF_LEN + 1];
  osb__csrf_make(tok, key, sizeof(key) - 1, name);
  osb_assert(osb__csrf_check(key, sizeof(key) - 1, name, tok, tok));
  size_t nl = strlen(name);
  char *other = malloc(nl + 2);
  memcpy(other, name, nl);
  memcpy(other + nl, "x", 2);   /* a different user id: the name plus one byte */
  osb_assert(!osb__csrf_check(key, sizeof(key) - 1, other, tok, tok));
  free(other);

  osb__arena_reset(r);
  free(r->arena);
  free(r);
  free(buf);
  return 0;
}
