/* request.c: request accessors and the per-request arena. */
#include "http/internal.h"

#include <stdlib.h>
#include <strings.h>

#include "core/config.h"
#include "core/json.h"

/* ---- arena: blocks chained from the request, freed (or kept for reuse) with it ---- */

#define ARENA_FIRST 2048

void *osb__arena_alloc(osb_req_t *req, size_t n) {
  n = (n + 15) & ~(size_t)15;
  osb__arena_blk_t *b = req->arena;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > ARENA_FIRST ? n : ARENA_FIRST;
    if (b && b->cap * 2 > cap) cap = b->cap * 2;
    osb__arena_blk_t *nb = osb_malloc(sizeof(*nb) + cap);
    nb->next = b;
    nb->used = 0;
    nb->cap = cap;
    req->arena = b = nb;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

/* Free all blocks but the last (the first allocated, ARENA_FIRST bytes), which is kept for reuse. */
void osb__arena_reset(osb_req_t *req) {
  osb__arena_blk_t *b = req->arena;
  while (b && b->next) {
    osb__arena_blk_t *next = b->next;
    free(b);
    b = next;
  }
  if (b && b->cap > ARENA_FIRST) {
    free(b);
    b = NULL;
  }
  if (b) b->used = 0;
  req->arena = b;
}

void *osb_req_alloc(osb_req_t *req, size_t n) { return osb__arena_alloc(req, n); }

char *osb_req_strdup(osb_req_t *req, const char *s) {
  size_t n = strlen(s);
  char *p = osb__arena_alloc(req, n + 1);
  memcpy(p, s, n + 1);
  return p;
}

/* ---- decoding ---- */

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int osb__url_decode(char *s, size_t n, bool plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= n) return -1;
      int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
      if (h < 0 || l < 0) return -1;
      c = (char)(h * 16 + l);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    s[o++] = c;
  }
  s[o] = 0;
  return (int)o;
}

/* ---- accessors ---- */

osb_method_t osb_req_method(const osb_req_t *req) { return req->method; }
const char *osb_req_method_name(const osb_req_t *req) { return http_method_str(req->hp_method); }
const char *osb_req_path(const osb_req_t *req) { return req->path ? req->path : "/"; }
const char *osb_req_route(const osb_req_t *req) { return req->route ? req->route : "unmatched"; }
const char *osb_req_id(const osb_req_t *req) { return req->id; }
const char *osb_req_ip(const osb_req_t *req) { return req->ip; }
bool osb_req_detached(const osb_req_t *req) { return req->conn == NULL; }

void osb_req_on_dispose(osb_req_t *req, osb_req_cb fn, void *ud) {
  req->dispose_fn = fn;
  req->dispose_ud = ud;
}

void osb_req_on_detach(osb_req_t *req, osb_req_cb fn, void *ud) {
  req->detach_fn = fn;
  req->detach_ud = ud;
}
uint64_t osb_req_start_ms(const osb_req_t *req) { return req->start_ms; }

const char *osb_req_param(const osb_req_t *req, const char *name) {
  for (int i = 0; i < req->nparams; i++)
    if (strcmp(req->pnames[i], name) == 0) return req->pvalues[i];
  return NULL;
}

/* Stored names are lower-case: most fields differ from `name` in their
 * first byte, checked before the whole comparison. */
const char *osb_req_header(const osb_req_t *req, const char *name) {
  size_t n = strlen(name);
  char c0 = (name[0] >= 'A' && name[0] <= 'Z') ? (char)(name[0] + 32) : name[0];
  for (int i = 0; i < req->nheaders; i++) {
    const char *h = req->hn[i];
    if (!h || h[0] != c0) continue;
    if (strncasecmp(h, name, n) == 0 && h[n] == 0) return req->hv[i];
  }
  return NULL;
}

/* X-Forwarded-Proto is one value per proxy, like X-Forwarded-For (a proxy
 * that appends writes "http, https"): the same entry is read for both, so
 * the scheme and the client address come from the same trusted hop. */
bool osb_req_is_https(const osb_req_t *req) {
  if (osb_cfg->trust_proxy <= 0) return false;
  char v[8];
  if (!osb__req_forwarded(req, "x-forwarded-proto", osb_cfg->trust_proxy, v, sizeof(v))) return false;
  return strcasecmp(v, "https") == 0;
}

/* Entries are read from the right: the last header line first, each line
 * from its end. Empty entries ("a,,b", a trailing comma) are skipped. */
bool osb__req_forwarded(const osb_req_t *req, const char *name, int hops, char *out, size_t outlen) {
  if (hops < 1 || outlen == 0) return false;
  const char *pick = NULL;
  size_t picklen = 0;
  int seen = 0;
  for (int i = req->nheaders - 1; i >= 0 && seen < hops; i--) {
    if (!req->hn[i] || strcmp(req->hn[i], name) != 0) continue;
    const char *v = req->hv[i];
    const char *end = v + strlen(v);
    while (end > v && seen < hops) {
      const char *comma = end;
      while (comma > v && comma[-1] != ',') comma--;
      const char *a = comma, *b = end;
      while (a < b && (*a == ' ' || *a == '\t')) a++;
      while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
      if (a < b) {
        pick = a;
        picklen = (size_t)(b - a);
        seen++;
      }
      end = comma > v ? comma - 1 : v;
    }
  }
  if (!pick || picklen >= outlen) return false;
  memcpy(out, pick, picklen);
  out[picklen] = 0;
  return true;
}

bool osb__req_forwarded_ip(const osb_req_t *req, int hops, char *out, size_t outlen) {
  char ip[64];
  if (!osb__req_forwarded(req, "x-forwarded-for", hops, ip, sizeof(ip))) return false;
  unsigned char bin[16];
  bool v6 = strchr(ip, ':') != NULL;
  if (uv_inet_pton(v6 ? AF_INET6 : AF_INET, ip, bin) != 0) return false;
  size_t n = strlen(ip);
  if (n >= outlen) return false;
  memcpy(out, ip, n + 1);
  return true;
}

const char *osb_req_query(const osb_req_t *req, const char *name) {
  if (!req->query) return NULL;
  size_t nlen = strlen(name);
  const char *p = req->query;
  while (*p) {
    const char *amp = strchr(p, '&');
    size_t seg = amp ? (size_t)(amp - p) : strlen(p);
    const char *eq = memchr(p, '=', seg);
    size_t klen = eq ? (size_t)(eq - p) : seg;
    /* keys are compared decoded only when they contain escapes (rare) */
    char kbuf[128];
    if (klen < sizeof(kbuf)) {
      memcpy(kbuf, p, klen);
      int kl = osb__url_decode(kbuf, klen, true);
      if (kl >= 0 && (size_t)kl == nlen && memcmp(kbuf, name, nlen) == 0) {
        size_t vlen = eq ? seg - klen - 1 : 0;
        char *v = osb__arena_alloc((osb_req_t *)req, vlen + 1);
        if (eq) memcpy(v, eq + 1, vlen);
        v[vlen] = 0;
        if (osb__url_decode(v, vlen, true) < 0) return NULL;
        return v;
      }
    }
    if (!amp) break;
    p = amp + 1;
  }
  return NULL;
}

const char *osb_req_cookie(const osb_req_t *req, const char *name) {
  size_t nlen = strlen(name);
  for (int i = 0; i < req->nheaders; i++) {
    if (strcmp(req->hn[i], "cookie") != 0) continue;
    const char *p = req->hv[i];
    while (*p) {
      while (*p == ' ' || *p == ';') p++;
      const char *eq = strchr(p, '=');
      const char *semi = strchr(p, ';');
      if (!eq || (semi && semi < eq)) {
        if (!semi) break;
        p = semi + 1;
        continue;
      }
      size_t klen = (size_t)(eq - p);
      while (klen && p[klen - 1] == ' ') klen--;
      const char *v = eq + 1;
      size_t vlen = semi ? (size_t)(semi - v) : strlen(v);
      if (klen == nlen && memcmp(p, name, nlen) == 0) {
        while (vlen && v[vlen - 1] == ' ') vlen--;
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') { v++; vlen -= 2; }
        char *out = osb__arena_alloc((osb_req_t *)req, vlen + 1);
        memcpy(out, v, vlen);
        out[vlen] = 0;
        return out;
      }
      if (!semi) break;
      p = semi + 1;
    }
  }
  return NULL;
}

const char *osb_req_body(const osb_req_t *req, size_t *len) {
  if (len) *len = req->body.len;
  return req->body.base ? req->body.base : "";
}

json_t *osb_req_json(osb_req_t *req) {
  if (req->json) return req->json;
  if (req->body.len == 0) {
    osb_res_error(req, 400, "invalid_json", "a JSON body is required");
    return NULL;
  }
  json_error_t e;
  json_t *j = json_loadb(req->body.base, req->body.len, JSON_REJECT_DUPLICATES, &e);
  if (!j) {
    /* Position and kind only: jansson's text quotes the input ("near
     * '\"passw...'"), which would echo a password back and into logs. */
    osb_res_error(req, 400, "invalid_json", "invalid JSON at line %d column %d (byte %d): %s", e.line, e.column,
                  e.position, osb_json_error_kind(&e));
    return NULL;
  }
  if (!json_is_object(j)) {
    json_decref(j);
    osb_res_error(req, 400, "invalid_json", "the JSON body must be an object");
    return NULL;
  }
  req->json = j;
  return j;
}

struct osb_principal *osb_req_principal(const osb_req_t *req) { return req->principal; }

void osb_req_set_principal(osb_req_t *req, struct osb_principal *p, void (*free_fn)(struct osb_principal *)) {
  if (req->principal && req->principal_free && req->principal != p) req->principal_free(req->principal);
  req->principal = p;
  req->principal_free = free_fn;
}
