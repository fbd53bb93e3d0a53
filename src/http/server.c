/* server.c: the listening socket, connections, HTTP/1.1 parsing and the
 * output queue every response and WebSocket frame goes through.
 *
 * Connection life cycle: accept → read (HTTP: http-parser; one request at a
 * time, pipelined ones wait in `in`) → handler → response queued → flushed
 * once per loop iteration from core's before-sleep phase (the "http" step), with
 * uv_try_write first and one uv_write in flight for the rest. Every path
 * that ends a connection goes through osb__conn_close(); memory is freed in
 * the tcp handle's close callback only. */
#include "http/internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <errno.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif

#include "core/config.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"

/* The listen backlog, and the bound on the accept-queue drain at shutdown. */
#define OSB__LISTEN_BACKLOG 4096

osb__server_t osb__srv;

static http_parser_settings parser_settings;
static osb_list_t req_freelist;
static size_t req_freelist_len;

typedef struct {
  osb_http_hook_fn fn;
} hook_t;
static hook_t hooks[8];
static int nhooks;

static osb_metric_t *m_duration, *m_conn_total, *m_paused, *m_resets;
static osb_series_t *s_conn_total, *s_paused, *s_resets;

static void conn_process(osb__conn_t *c);
/* A dispatched request is being handled: later bytes wait. (A request whose
 * head or body is still arriving is not busy: parsing goes on.) */
static inline bool conn_busy(const osb__conn_t *c) { return c->req && c->req->dispatched; }
static size_t conn_parse(osb__conn_t *c, const char *data, size_t len);
static void conn_write(osb__conn_t *c);
static void conn_update_reading(osb__conn_t *c);

/* Output bound of an HTTP connection, in the units of WS_SEND_BUFFER_BYTES:
 * unsent bytes in its output queue. Past HTTP_SEND_BUFFER_BYTES no further
 * pipelined request is parsed and the socket is not read (a client that
 * sends requests but never reads the answers would otherwise grow memory
 * without bound: synchronous handlers answer as fast as it sends); both
 * resume once the queue drains to half the bound. One response is never
 * cut: the bound is checked between requests. */
static inline bool out_full(const osb__conn_t *c) {
  return c->queued_bytes > (size_t)osb_cfg->http_send_buffer_bytes;
}

void osb_http_add_hook(osb_http_hook_fn fn) {
  osb_assert(nhooks < (int)OSB_ARRAY_LEN(hooks));
  hooks[nhooks++].fn = fn;
}

size_t osb_http_open_connections(void) { return osb__srv.nconns; }
size_t osb_http_inflight(void) { return osb__srv.inflight; }

/* ---- requests ---- */

/* ---- the request clock ----
 * A request's duration runs from its start to its answer. The answer
 * reads the clock; the start reuses the loop's latest reading of this
 * iteration (the previous answer's, usually microseconds before) and reads
 * the clock only when there is none, so a busy loop reads it about once
 * per request instead of twice. A reading is dropped right before the
 * loop may block in poll (the "http-clock" step, after every other), so a
 * start is never earlier than the poll that reported the request's
 * socket readable: its bytes were there by then (bytes that came later on
 * the same socket, read in the same iteration, may be counted from up to
 * that iteration's earlier work). Against the previous rule (the clock
 * read when parsing began) a duration now also counts the time the
 * request waited behind earlier callbacks of the same iteration, which is
 * time the client waited too. */
#define OSB__STEP_HTTP_CLOCK INT_MAX
static uint64_t clock_ns;
static bool clock_live;

static inline uint64_t req_clock_start(void) {
  if (!clock_live) {
    clock_ns = uv_hrtime();
    clock_live = true;
  }
  return clock_ns;
}

static inline uint64_t req_clock_now(void) {
  clock_ns = uv_hrtime();
  clock_live = true;
  return clock_ns;
}

static bool clock_step(void *ud) {
  OSB_UNUSED(ud);
  clock_live = false;
  return false;
}

/* Request ids: a random per-process prefix and a counter, unique and cheap. */
static char rid_prefix[9];
static uint64_t rid_counter;

static void gen_request_id(char *out) {
  if (!rid_prefix[0]) {
    unsigned char b[4];
    osb_random_bytes(b, sizeof(b));
    osb_hex(rid_prefix, b, sizeof(b));
  }
  static const char hex[] = "0123456789abcdef";
  uint64_t n = ++rid_counter;
  memcpy(out, rid_prefix, 8);
  out[8] = '-';
  for (int i = 0; i < 12; i++) out[9 + i] = hex[(n >> (4 * (11 - i))) & 15];
  out[21] = 0;
}

static osb_req_t *req_new(osb__conn_t *c) {
  osb_req_t *r;
  if (!osb_list_empty(&req_freelist)) {
    osb_list_t *n = req_freelist.next;
    osb_list_remove(n);
    req_freelist_len--;
    r = osb_container_of(n, osb_req_t, node);
    /* Clear the per-request part only (everything before hbuf): the
     * buffers keep their capacity and the header and parameter arrays are
     * read only up to their counts, so the 5 KB behind need no memset. */
    memset(r, 0, offsetof(osb_req_t, hbuf));
    osb_buf_reset(&r->hbuf);
    osb_buf_reset(&r->body);
    osb_buf_reset(&r->rhead);
  } else {
    r = osb_calloc(1, sizeof(*r));
  }
  osb_list_init(&r->node);
  r->conn = c;
  r->start_ns = req_clock_start();
  r->start_ms = uv_now(osb__srv.loop);
  memcpy(r->ip, c->http->ip, sizeof(r->ip));
  gen_request_id(r->id);
  osb__srv.inflight++;
  return r;
}

void osb__req_free(osb_req_t *r) {
  if (r->json) json_decref(r->json);
  if (r->principal && r->principal_free) r->principal_free(r->principal);
  osb__arena_reset(r);
  if (req_freelist_len < 256 && r->hbuf.cap <= 64 * 1024 && r->body.cap <= 64 * 1024) {
    osb_list_insert_head(&req_freelist, &r->node);
    req_freelist_len++;
    return;
  }
  osb_buf_free(&r->hbuf);
  osb_buf_free(&r->body);
  osb_buf_free(&r->rhead);
  free(r->arena);
  free(r);
}

static void access_log(osb_req_t *r, uint64_t ns) {
  int level = r->status >= 500 ? OSB_LOG_WARN : OSB_LOG_INFO;
  if (!osb_log_enabled(level)) return;
  const osb_log_kv_t kv[] = {
    OSB_KV_S("request_id", r->id),
    OSB_KV_S("method", http_method_str(r->hp_method)),
    OSB_KV_S("route", r->route ? r->route : "unmatched"),
    OSB_KV_S("path", r->path ? r->path : ""),
    OSB_KV_I("status", r->status),
    OSB_KV_US("duration_ms", ns / 1000),
    OSB_KV_S("ip", r->ip),
  };
  osb_log_kv(level, "http", "request", kv, OSB_ARRAY_LEN(kv));
}

/* "200" etc. for the status label, without printf */
static const char *status_str(int status, char *buf) {
  if (status < 100 || status > 999) status = 999;
  buf[0] = (char)('0' + status / 100);
  buf[1] = (char)('0' + status / 10 % 10);
  buf[2] = (char)('0' + status % 10);
  buf[3] = 0;
  return buf;
}

/* The request-duration series of each (route, method, status) seen, so
 * that recording a request does not hash its three labels again: a route
 * is a pattern string the router owns until osb__router_reset, or a
 * literal, so its address names it. Filled on first use, emptied whenever
 * the histogram is registered anew (server start) and at dispose; a
 * combination that finds no free slot among its probes is looked up by
 * its labels as before. */
#define DUR_CACHE_SLOTS 256
#define DUR_CACHE_PROBES 8
typedef struct {
  const char *route;
  int status;
  enum http_method method;
  osb_series_t *series;
} dur_slot_t;
static dur_slot_t dur_cache[DUR_CACHE_SLOTS];

static osb_series_t *duration_series(const osb_req_t *r) {
  const char *route = r->route ? r->route : "unmatched";
  uintptr_t h = ((uintptr_t)route >> 4) * 0x9E3779B1u + (uintptr_t)r->status * 31u + (uintptr_t)r->hp_method;
  h ^= h >> 9;
  dur_slot_t *free_slot = NULL;
  for (unsigned i = 0; i < DUR_CACHE_PROBES; i++) {
    dur_slot_t *d = &dur_cache[(h + i) & (DUR_CACHE_SLOTS - 1)];
    if (!d->series) {
      free_slot = d;
      break;
    }
    if (d->route == route && d->status == r->status && d->method == r->hp_method) return d->series;
  }
  char status[4];
  const char *labels[3] = {http_method_str(r->hp_method), route, status_str(r->status, status)};
  osb_series_t *s = osb_metric_series(m_duration, labels, 3);
  if (free_slot) *free_slot = (dur_slot_t){route, r->status, r->hp_method, s};
  return s;
}

void osb__req_finished(osb_req_t *r) {
  uint64_t ns = req_clock_now() - r->start_ns;
  osb_series_observe(duration_series(r), (double)ns / 1e9);
  access_log(r, ns);
  osb__srv.inflight--;

  osb__conn_t *c = r->conn;
  if (c) {
    c->req = NULL;
    if (c->has_http) c->http->requests++;
    if (!c->closing && c->mode == OSB__CONN_HTTP) {
      if (!r->keep_alive || osb__srv.no_keepalive || r->errored) {
        c->close_after_flush = true;
        c->phase = OSB__PHASE_DRAIN;
        osb__conn_set_deadline(c, uv_now(osb__srv.loop) + 5000);
      } else {
        c->phase = OSB__PHASE_IDLE;
        osb__conn_set_deadline(c, uv_now(osb__srv.loop) + (uint64_t)osb_cfg->http_idle_timeout_ms);
      }
      /* Leftover pipelined bytes are parsed from the flusher, never from
       * inside the handler that just finished (no re-entry). */
      osb__conn_schedule_flush(c);
    }
  }
  if (r->dispose_fn) {
    osb_req_cb fn = r->dispose_fn;
    r->dispose_fn = NULL;
    fn(r, r->dispose_ud);
  }
  osb__req_free(r);
}

/* ---- parser callbacks ---- */

static osb__conn_t *pconn(http_parser *p) { return p->data; }

/* Parsing stops with `status`; `why` (static text) is the error message. */
static int req_fail(osb_req_t *r, int status, const char *why) {
  r->errored = true;
  r->status = status;
  r->err = why;
  return -1;
}

static const char too_large[] = "request header block too large (16 KiB, 100 headers at most)";

static int on_message_begin(http_parser *p) {
  osb__conn_t *c = pconn(p);
  osb_assert(c->req == NULL);
  c->req = req_new(c);
  /* A new connection is in the head phase from accept: its deadline stands,
   * except at the stop, where it was cut to the short grace for a first
   * request (shutdown_conn): a request that began in time gets its head
   * timeout. */
  if (c->phase != OSB__PHASE_HEAD || osb__srv.shutting_down) {
    c->phase = OSB__PHASE_HEAD;
    osb__conn_set_deadline(c, uv_now(osb__srv.loop) + (uint64_t)osb_cfg->http_header_timeout_ms);
  }
  return 0;
}

static int head_append(osb_req_t *r, const char *at, size_t len) {
  if (r->hbuf.len + len > OSB__MAX_HEADER_BYTES) return req_fail(r, 431, too_large);
  osb_buf_append(&r->hbuf, at, len);
  return 0;
}

/* Trailer fields (after a chunked body) are read and dropped (RFC 9110
 * §6.5.1 lets a recipient ignore them): they never become headers, so no
 * accessor can see them. Their size counts against the head's limit. */
static int trailer_bytes(osb_req_t *r, size_t len) {
  r->trailer_bytes += len;
  if (r->hbuf.len + r->trailer_bytes > OSB__MAX_HEADER_BYTES) return req_fail(r, 431, too_large);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  osb_req_t *r = pconn(p)->req;
  if (r->url_len == 0) r->url_off = r->hbuf.len;
  r->url_len += len;
  return head_append(r, at, len);
}

/* tchar (RFC 9110 §5.6.2). http-parser lets a space through in a field name
 * ("Transfer-Encoding : chunked" becomes an unknown header named
 * "transfer-encoding "), which a lenient proxy in front may read as
 * Transfer-Encoding: request smuggling. RFC 9112 §5.1: 400. */
static const bool tchar[256] = {
  ['0' ... '9'] = true, ['a' ... 'z'] = true, ['A' ... 'Z'] = true,
  ['!'] = true, ['#'] = true, ['$'] = true, ['%'] = true, ['&'] = true, ['\''] = true, ['*'] = true,
  ['+'] = true, ['-'] = true, ['.'] = true, ['^'] = true, ['_'] = true, ['`'] = true, ['|'] = true, ['~'] = true,
};
static inline bool is_tchar(unsigned char ch) { return tchar[ch]; }

static int on_header_field(http_parser *p, const char *at, size_t len) {
  osb_req_t *r = pconn(p)->req;
  for (size_t i = 0; i < len; i++)
    if (!is_tchar((unsigned char)at[i])) return req_fail(r, 400, "invalid character in a header name (whitespace before the colon?)");
  if (r->head_done) return trailer_bytes(r, len);
  if (r->nfields == 0 || r->last_was_value) {
    if (r->nfields >= OSB__MAX_HEADERS) return req_fail(r, 431, too_large);
    r->hdr_off[r->nfields][0] = r->hbuf.len;
    r->hdr_off[r->nfields][1] = 0;
    r->hdr_off[r->nfields][2] = 0;
    r->hdr_off[r->nfields][3] = 0;
    r->nfields++;
    r->last_was_value = false;
  }
  r->hdr_off[r->nfields - 1][1] += len;
  return head_append(r, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  osb_req_t *r = pconn(p)->req;
  if (r->head_done) return trailer_bytes(r, len);
  /* http-parser always reports a name first; a peer must not be able to
   * reach hdr_off[-1] should that ever change */
  if (r->nfields == 0) return req_fail(r, 400, "header value without a name");
  if (!r->last_was_value) {
    r->hdr_off[r->nfields - 1][2] = r->hbuf.len;
    r->last_was_value = true;
  }
  r->hdr_off[r->nfields - 1][3] += len;
  return head_append(r, at, len);
}

/* A peer sending X-Forwarded-For is a proxy we were not told about: with
 * TRUST_PROXY=0 every client behind it shares its address, so one rate-limit
 * bucket and one login throttle serve them all. Said once per process, in
 * the log and as `warn` in /health/details (docs/deploy.md). */
static bool proxy_warned;

static void proxy_untrusted(const osb_req_t *r) {
  proxy_warned = true;
  char reason[160];
  snprintf(reason, sizeof(reason), "requests from %s carry X-Forwarded-For but TRUST_PROXY=0: set TRUST_PROXY=1 "
           "behind one proxy", r->ip);
  osb_log(OSB_LOG_WARN, "http", "%s (until then every client behind that proxy shares its address: one rate-limit "
          "bucket and one login throttle for all)", reason);
  osb_health_set("proxy", OSB_HEALTH_WARN, reason, false);
}

static bool valid_request_id(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 36) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_' || ch == '.'))
      return false;
  }
  return true;
}

static osb_method_t map_method(enum http_method m) {
  switch (m) {
    case HTTP_GET: return OSB_GET;
    case HTTP_HEAD: return OSB_HEAD;
    case HTTP_POST: return OSB_POST;
    case HTTP_PUT: return OSB_PUT;
    case HTTP_PATCH: return OSB_PATCH;
    case HTTP_DELETE: return OSB_DELETE;
    case HTTP_OPTIONS: return OSB_OPTIONS;
    default: return 0;
  }
}

/* The path of an absolute-form target ("http://host:port/path?q", RFC 9112
 * §3.2.2): servers must accept it and route on its path. Returns the path
 * (possibly "", meaning "/"), or NULL if `url` is not in absolute form. */
static char *absolute_form_path(char *url) {
  const char *scheme = strncasecmp(url, "http://", 7) == 0 ? url + 7 : strncasecmp(url, "https://", 8) == 0 ? url + 8 : NULL;
  if (!scheme) return NULL;
  return (char *)scheme + strcspn(scheme, "/?#");
}

/* Split the request target into the raw path, its decoded copy and the
 * query. Origin-form ("/path?q"), absolute-form (routed on its path) and
 * asterisk-form (OPTIONS only) are accepted; authority-form is CONNECT's,
 * which is not served. */
static int parse_target(osb_req_t *r, char *url, enum http_method method) {
  if (url[0] == '*' && url[1] == 0) {
    if (method != HTTP_OPTIONS) return req_fail(r, 400, "the request target * is only for OPTIONS");
    r->asterisk = true;
    r->path = r->rawpath = "*";
    return 0;
  }
  char *path = url[0] == '/' ? NULL : absolute_form_path(url);
  if (path) {
    /* RFC 9112 §3.2.2: the target's authority replaces the Host field
     * (which must still be present for HTTP/1.1, and is, once) */
    const char *auth = strchr(url, ':') + 3;
    size_t alen = (size_t)(path - auth);
    for (int i = 0; i < r->nheaders; i++) {
      if (strcmp(r->hn[i], "host") != 0) continue;
      char *h = osb__arena_alloc(r, alen + 1);
      memcpy(h, auth, alen);
      h[alen] = 0;
      r->hv[i] = h;
    }
  } else {
    path = url;
  }
  char *q = strchr(path, '?');
  if (q) {
    *q = 0;
    r->query = q + 1;
  }
  char *hash = strchr(r->query ? r->query : path, '#');
  if (hash) *hash = 0;
  if (path != url && path[0] == 0) path = "/";
  if (path[0] != '/') return req_fail(r, 400, "the request target must be a path or an absolute http(s) URL");
  r->rawpath = path;
  size_t rawlen = strlen(path);
  if (!memchr(path, '%', rawlen)) {
    r->path = path;   /* nothing to decode: the raw path is the decoded one */
    return 0;
  }
  char *dec = osb__arena_alloc(r, rawlen + 1);
  memcpy(dec, path, rawlen + 1);
  int n = osb__url_decode(dec, rawlen, false);
  if (n < 0) return req_fail(r, 400, "invalid percent-encoding in the path");
  if (memchr(dec, 0, (size_t)n) != NULL) return req_fail(r, 400, "NUL in the path");
  r->path = dec;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  osb__conn_t *c = pconn(p);
  osb_req_t *r = c->req;
  r->head_done = true;
  /* Copy names (lower-cased) and values NUL-terminated into the arena,
   * and note on the way the fields read for every request. */
  const char *base = r->hbuf.base;
  int nhost = 0;
  const char *rid = NULL;
  bool xff = false;
  for (int i = 0; i < r->nfields; i++) {
    size_t no = r->hdr_off[i][0], nl = r->hdr_off[i][1], vo = r->hdr_off[i][2], vl = r->hdr_off[i][3];
    char *nm = osb__arena_alloc(r, nl + vl + 2);
    for (size_t k = 0; k < nl; k++) {
      char ch = base[no + k];
      nm[k] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    nm[nl] = 0;
    char *v = nm + nl + 1;
    memcpy(v, base + vo, vl);
    v[vl] = 0;
    r->hn[i] = nm;
    r->hv[i] = v;
    if (nl == 4 && memcmp(nm, "host", 4) == 0) nhost++;
    else if (nl == 12 && !rid && memcmp(nm, "x-request-id", 12) == 0) rid = v;
    else if (nl == 15 && memcmp(nm, "x-forwarded-for", 15) == 0) xff = true;
  }
  r->nheaders = r->nfields;   /* only now may the accessors look at hn/hv */
  r->hp_method = p->method;
  r->method = map_method(p->method);
  r->keep_alive = http_should_keep_alive(p) != 0;
  r->http10 = p->http_minor == 0;
  r->upgrade = p->upgrade;
  r->head_only = p->method == HTTP_HEAD;
  /* the body may still be on its way: allow it a while longer */
  osb__conn_set_deadline(c, uv_now(osb__srv.loop) + 30000 + (uint64_t)osb_cfg->http_header_timeout_ms);

  /* Split the URL into path and query; decode a copy of the path. */
  char *url = osb__arena_alloc(r, r->url_len + 1);
  memcpy(url, base + r->url_off, r->url_len);
  url[r->url_len] = 0;
  r->path = "/";
  if (p->http_major != 1) return req_fail(r, 505, "only HTTP/1.x is supported");
  if (p->http_minor >= 1 && nhost == 0) return req_fail(r, 400, "an HTTP/1.1 request needs a Host header");
  if (nhost > 1) return req_fail(r, 400, "more than one Host header");
  int rc = parse_target(r, url, p->method);
  if (rc != 0) return rc;

  if (rid && valid_request_id(rid)) memcpy(r->id, rid, strlen(rid) + 1);   /* at most 36 bytes */
  if (osb_cfg->trust_proxy > 0) {
    osb__req_forwarded_ip(r, osb_cfg->trust_proxy, r->ip, sizeof(r->ip));
    /* Behind the proxy the connection belongs to the client its head names. */
    if (osb__edge_account(c, r->ip) != 0) return req_fail(r, 429, "too many connections from this address");
  } else if (!proxy_warned && xff) {
    proxy_untrusted(r);
  }
  if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)osb_cfg->max_body_bytes)
    return req_fail(r, 413, "request body too large");
  if (r->method == 0) return req_fail(r, 405, "unsupported method");
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  osb_req_t *r = pconn(p)->req;
  if (osb_buf_try_reserve(&r->body, len, (size_t)osb_cfg->max_body_bytes) != 0) return req_fail(r, 413, "request body too large");
  osb_buf_append(&r->body, at, len);
  return 0;
}

static int on_message_complete(http_parser *p) {
  /* Pause: the request is dispatched from conn_parse, outside the parser. */
  http_parser_pause(p, 1);
  return 0;
}

/* ---- dispatch ---- */

/* "Allow: GET, HEAD, ..." for the methods in `mask`. */
static void allow_header(osb_req_t *r, unsigned mask) {
  static const struct { osb_method_t m; const char *n; } names[] = {
    {OSB_GET, "GET"}, {OSB_HEAD, "HEAD"}, {OSB_POST, "POST"}, {OSB_PUT, "PUT"},
    {OSB_PATCH, "PATCH"}, {OSB_DELETE, "DELETE"}, {OSB_OPTIONS, "OPTIONS"}};
  char allow[64];
  size_t n = 0;
  for (size_t i = 0; i < OSB_ARRAY_LEN(names); i++) {
    if (!(mask & names[i].m)) continue;
    n += (size_t)snprintf(allow + n, sizeof(allow) - n, "%s%s", n ? ", " : "", names[i].n);
  }
  osb_res_header(r, "Allow", allow);
}

static void dispatch(osb__conn_t *c) {
  osb_req_t *r = c->req;
  r->dispatched = true;
  c->phase = OSB__PHASE_BUSY;
  c->deadline = 0;
  if (r->upgrade && !osb__ws_is_upgrade(r)) r->keep_alive = false;  /* other upgrades: answer, then close */

  if (r->asterisk) {
    /* OPTIONS * (RFC 9110 §9.3.7): what the server as a whole supports */
    r->route = "*";
    allow_header(r, OSB_GET | OSB_HEAD | OSB_POST | OSB_PUT | OSB_PATCH | OSB_DELETE | OSB_OPTIONS);
    osb_res_send(r, 204, NULL, NULL, 0);
    return;
  }
  osb__match_t m;
  int rc = osb__router_match(r->method == OSB_HEAD ? OSB_GET : r->method, r->rawpath, r, &m);
  if (rc == 0) {
    r->route = m.pattern;
    r->nparams = m.nparams;
    memcpy(r->pnames, m.pnames, sizeof(m.pnames));
    memcpy(r->pvalues, m.pvalues, sizeof(m.pvalues));
  }
  if (r->method == OSB_OPTIONS && osb_req_header(r, "access-control-request-method")) {
    if (rc != OSB_ENOTFOUND) r->route = r->route ? r->route : "preflight";
    osb__cors_preflight(r);
    return;
  }
  if (rc == OSB_ENOTFOUND) {
    osb_res_error(r, 404, "not_found", "no route for %s", r->path);
    return;
  }
  if (rc != 0) {
    r->route = m.pattern;
    allow_header(r, m.allow | (m.allow & OSB_GET ? OSB_HEAD : 0) | OSB_OPTIONS);
    if (r->method == OSB_OPTIONS) {
      osb_res_send(r, 204, NULL, NULL, 0);
      return;
    }
    osb_res_error(r, 405, "method_not_allowed", "%s is not allowed here", http_method_str(r->hp_method));
    return;
  }
  for (int i = 0; i < nhooks; i++)
    if (!hooks[i].fn(r)) return;
  m.fn(r);
}

/* Parse as much of data as one-request-at-a-time allows; returns bytes used. */
static size_t conn_parse(osb__conn_t *c, const char *data, size_t len) {
  size_t off = 0;
  while (off < len && !c->closing && c->mode == OSB__CONN_HTTP && !conn_busy(c) && !c->close_after_flush &&
         !c->out_paused && !out_full(c)) {
    size_t n = http_parser_execute(&c->http->parser, &parser_settings, data + off, len - off);
    off += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->http->parser);
    if (e == HPE_PAUSED) {
      http_parser_pause(&c->http->parser, 0);
      dispatch(c);
      continue;  /* a synchronous handler left c->req NULL: go on with the next request */
    }
    if (e != HPE_OK) {
      osb_req_t *r = c->req;
      int status = (r && r->errored) ? r->status : 400;
      const char *code = status == 431 ? "headers_too_large" : status == 413 ? "body_too_large"
                       : status == 405 ? "method_not_allowed" : status == 429 ? "too_many_connections"
                       : status == 505 ? "http_version_not_supported" : "bad_request";
      const char *msg = (r && r->errored && r->err) ? r->err : http_errno_description(e);
      if (r) {
        r->errored = true;
        r->keep_alive = false;
        r->dispatched = true;
        osb_res_error(r, status, code, "%s", msg);
      } else {
        osb__res_simple_error(c, status, code, msg, true);
      }
      return len;
    }
    if (n == 0) break;
  }
  /* After an upgrade the rest (if any) is WebSocket data: the caller hands it over. */
  return off;
}

/* The connection was upgraded while its input was parsed: its HTTP state
 * goes (an idle WebSocket does not keep it), and bytes pipelined behind
 * the upgrade (`rest`, which may point into that state's buffer) are
 * handed to the WebSocket reader. */
static void conn_upgraded(osb__conn_t *c, const char *rest, size_t len) {
  osb__http_t *h = c->has_http ? c->http : NULL;
  c->has_http = false;
  c->rx = NULL;   /* the union's other member from now on */
  if (!c->closing && len) osb__ws_on_data(c, rest, len);
  if (h) {
    osb_buf_free(&h->in);
    free(h);
  }
}

void osb__conn_http_end(osb__conn_t *c) {
  if (c->has_http) conn_upgraded(c, c->http->in.base, c->http->in.len);
}

static void conn_process(osb__conn_t *c) {
  if (c->processing || c->closing || !c->has_http || c->http->in.len == 0) return;
  osb_buf_t *in = &c->http->in;
  c->processing = true;
  size_t used = conn_parse(c, in->base, in->len);
  if (!c->closing) osb_buf_consume(in, used);
  c->processing = false;
  if (c->mode == OSB__CONN_WS) {
    conn_upgraded(c, in->base, c->closing ? 0 : in->len);
    return;
  }
  if (in->len == 0 && in->cap > 4096) osb_buf_free(in);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  if (!osb__srv.readbuf_lent) {
    osb__srv.readbuf_lent = true;
    *buf = uv_buf_init(osb__srv.readbuf, sizeof(osb__srv.readbuf));
  } else {
    *buf = uv_buf_init(osb_malloc(suggested), (unsigned)suggested);
  }
}

static void release_readbuf(const uv_buf_t *buf) {
  if (buf->base == osb__srv.readbuf) osb__srv.readbuf_lent = false;
  else free(buf->base);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  osb__conn_t *c = osb_container_of((uv_tcp_t *)s, osb__conn_t, tcp);
  if (nread < 0) {
    release_readbuf(buf);
    osb__conn_close(c, nread == UV_EOF ? "peer closed" : uv_strerror((int)nread));
    return;
  }
  if (nread == 0 || c->closing || c->lingering) {   /* lingering: discard */
    release_readbuf(buf);
    return;
  }
  if (c->mode == OSB__CONN_WS) {
    osb__ws_on_data(c, buf->base, (size_t)nread);
  } else if (c->http->in.len || conn_busy(c) || c->processing) {
    /* busy or leftover: keep the bytes for later, bounded. Decide about
     * reading after processing: a connection that is not busy (its request
     * just finished) consumes the backlog here, and nothing would restart a
     * read stopped over a backlog that is gone. */
    osb_buf_append(&c->http->in, buf->base, (size_t)nread);
    conn_process(c);
  } else {
    c->processing = true;
    size_t used = conn_parse(c, buf->base, (size_t)nread);
    c->processing = false;
    if (c->mode == OSB__CONN_WS) conn_upgraded(c, buf->base + used, c->closing ? 0 : (size_t)nread - used);
    else if (!c->closing && used < (size_t)nread) osb_buf_append(&c->http->in, buf->base + used, (size_t)nread - used);
  }
  if (!c->closing) conn_update_reading(c);
  release_readbuf(buf);
}

/* Read an HTTP connection only while its input backlog and its output queue
 * are within their bounds (see out_full). Called after reading, after
 * parsing and from the flusher. */
static void conn_update_reading(osb__conn_t *c) {
  if (c->closing || c->mode != OSB__CONN_HTTP || c->lingering) return;
  if (c->out_paused) {
    if (c->queued_bytes <= (size_t)osb_cfg->http_send_buffer_bytes / 2) c->out_paused = false;
  } else if (out_full(c)) {
    c->out_paused = true;
    osb_series_inc(s_paused, 1);
    if (osb_log_enabled(OSB_LOG_DEBUG))
      osb_log(OSB_LOG_DEBUG, "http", "conn %llu (%s): %zu unsent bytes, reading paused", (unsigned long long)c->id,
              c->http->ip, c->queued_bytes);
  }
  size_t backlog = c->http->in.len;
  bool stop = c->out_paused || backlog > (size_t)osb_cfg->max_body_bytes + OSB__MAX_HEADER_BYTES;
  bool start = !c->out_paused && backlog < 64 * 1024 && !c->close_after_flush;
  if (c->reading && stop) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  } else if (!c->reading && start) {
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->reading = true;
  }
}

/* The output queue shrank: a connection paused over it resumes (from the
 * flusher, never from inside a write callback's caller). */
static void conn_output_progress(osb__conn_t *c) {
  if (c->out_paused && c->queued_bytes <= (size_t)osb_cfg->http_send_buffer_bytes / 2) osb__conn_schedule_flush(c);
}

/* ---- output queue ---- */

void osb__conn_schedule_flush(osb__conn_t *c) {
  if (!osb_list_linked(&c->flush_node) && !c->closing) {
    osb_list_insert_tail(c->mode == OSB__CONN_HTTP ? &osb__srv.pending_http : &osb__srv.pending_flush,
                         &c->flush_node);
    osb_core_wake();
  }
}

void osb__conn_queue(osb__conn_t *c, osb_msg_t *m) {
  if (c->closing) return;
  osb__outq_t *q = c->q;
  if (!q || q->len == q->cap) {
    uint32_t ncap = q ? q->cap * 2 : 4;   /* a power of two: indexes wrap with a mask */
    osb_assert((ncap & (ncap - 1)) == 0);
    osb__outq_t *nq = osb_malloc(sizeof(*nq) + sizeof(nq->e[0]) * ncap);
    nq->head = 0;
    nq->len = q ? q->len : 0;
    nq->cap = ncap;
    for (uint32_t i = 0; i < nq->len; i++) nq->e[i] = *osb__outq_at(q, i);
    free(q);
    c->q = q = nq;
  }
  osb__outq_ent_t *e = osb__outq_at(q, q->len);
  e->msg = osb_msg_ref(m);
  e->off = 0;
  q->len++;
  c->queued_bytes += m->len;
  osb__conn_schedule_flush(c);
}

static void queue_pop(osb__conn_t *c) {
  osb__outq_t *q = c->q;
  osb__outq_ent_t *e = &q->e[q->head];
  osb_msg_unref(e->msg);
  e->msg = NULL;
  q->head = (q->head + 1) & (q->cap - 1);
  q->len--;
}

/* Give the ring back (it must be empty). */
static void queue_drop_ring(osb__conn_t *c) {
  free(c->q);
  c->q = NULL;
}

static void queue_free(osb__conn_t *c) {
  while (osb__conn_qlen(c)) queue_pop(c);
  queue_drop_ring(c);
  c->queued_bytes = 0;
}

void osb__conn_discard_queue(osb__conn_t *c) {
  /* keep the entries owned by the write in flight and a partly written head */
  uint32_t keep = c->inflight;
  osb__outq_t *q = c->q;
  if (!q) return;
  if (keep == 0 && q->len && q->e[q->head].off > 0) keep = 1;
  while (q->len > keep) {
    osb__outq_ent_t *last = osb__outq_at(q, q->len - 1);
    c->queued_bytes -= last->msg->len - last->off;
    osb_msg_unref(last->msg);
    last->msg = NULL;
    q->len--;
  }
}

static void queue_advance(osb__conn_t *c, size_t n) {
  c->queued_bytes -= n;
  while (n > 0) {
    osb__outq_ent_t *e = &c->q->e[c->q->head];
    size_t rem = e->msg->len - e->off;
    if (n >= rem) {
      n -= rem;
      queue_pop(c);
    } else {
      e->off += n;
      n = 0;
    }
  }
  /* pop empty messages at the head */
  while (osb__conn_qlen(c) && c->q->e[c->q->head].msg->len == c->q->e[c->q->head].off) queue_pop(c);
  conn_output_progress(c);
}

#define OSB__MAX_IOV 64

static uint32_t build_iov(osb__conn_t *c, uv_buf_t *iov) {
  uint32_t n = 0;
  uint32_t len = osb__conn_qlen(c);
  for (uint32_t i = 0; i < len && n < OSB__MAX_IOV; i++) {
    osb__outq_ent_t *e = osb__outq_at(c->q, i);
    iov[n++] = uv_buf_init(e->msg->data + e->off, (unsigned)(e->msg->len - e->off));
  }
  return n;
}

/* Lingering close (nginx's lingering_close, RFC 9112 §9.6): an HTTP
 * connection that ends after its answer may still have request bytes in
 * flight from the peer (a 413 for a body it is still uploading, a 400 in
 * the middle of a pipeline). Closing now would make the kernel answer them
 * with RST, which can destroy the answer before the client reads it. So we
 * send FIN (uv_shutdown, after the queued writes), keep reading and
 * discarding until the peer closes, and close at EOF or after LINGER_MS. */
#define LINGER_MS 2000

static void on_linger_shutdown(uv_shutdown_t *sr, int status) {
  OSB_UNUSED(status);
  free(sr);
}

static bool conn_linger(osb__conn_t *c) {
  if (c->mode != OSB__CONN_HTTP || c->lingering) return false;
  uv_shutdown_t *sr = osb_malloc(sizeof(*sr));
  if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_linger_shutdown) != 0) {
    free(sr);
    return false;
  }
  c->lingering = true;
  osb_buf_free(&c->http->in);
  c->phase = OSB__PHASE_DRAIN;
  osb__conn_set_deadline(c, uv_now(osb__srv.loop) + LINGER_MS);
  if (!c->reading) {
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->reading = true;
  }
  return true;
}

static void after_flush_empty(osb__conn_t *c) {
  if (osb__conn_qlen(c) == 0) {
    if (c->close_after_flush) {
      if (!c->lingering && !conn_linger(c)) osb__conn_close(c, "done");
      return;
    }
    /* A new WebSocket gives its ring back at once after its first few
     * writes (the 101 and welcome, the subscribe answers): ten thousand
     * sockets connecting together would each keep 96 bytes until the next
     * sweep, heap that stays behind for good between the long-lived
     * connections (it is not returned to the system). After that the
     * ring stays until the sweep finds the queue empty, so a fan-out does
     * not allocate one per write. */
    bool young_ws = c->mode == OSB__CONN_WS && c->ws.drained < 4;
    if (c->mode == OSB__CONN_WS && c->ws.drained < UINT8_MAX) c->ws.drained++;
    if (c->q && (c->q->cap > 16 || young_ws)) queue_drop_ring(c);
  }
}

static void on_write(uv_write_t *w, int status) {
  osb__conn_t *c = osb_container_of((uv_tcp_t *)w->handle, osb__conn_t, tcp);
  free(w);
  uint32_t done = c->inflight;
  c->inflight = 0;
  if (status < 0) {
    /* UV_ECANCELED while closing, or a write error: the close path frees the queue */
    if (!c->closing) osb__conn_close(c, uv_strerror(status));
    return;
  }
  for (uint32_t i = 0; i < done; i++) {
    osb__outq_ent_t *e = &c->q->e[c->q->head];
    c->queued_bytes -= e->msg->len - e->off;
    queue_pop(c);
  }
  if (c->closing) return;
  conn_output_progress(c);
  if (osb__conn_qlen(c)) conn_write(c);
  else after_flush_empty(c);
  if (!c->closing) osb__conn_stream_drain_check(c);
}

static void conn_write(osb__conn_t *c) {
  if (c->closing || c->inflight) return;
  uv_buf_t iov[OSB__MAX_IOV];
  uint32_t n = build_iov(c, iov);
  if (n == 0) {
    after_flush_empty(c);
    return;
  }
  int w = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
  if (w < 0 && w != UV_EAGAIN) {
    osb__conn_close(c, uv_strerror(w));
    return;
  }
  if (w > 0) queue_advance(c, (size_t)w);
  if (osb__conn_qlen(c) == 0) {
    after_flush_empty(c);
    return;
  }
  n = build_iov(c, iov);
  uv_write_t *wreq = osb_malloc(sizeof(uv_write_t));
  c->inflight = (uint8_t)n;   /* at most OSB__MAX_IOV: a write is in flight while it is not 0 */
  int rc = uv_write(wreq, (uv_stream_t *)&c->tcp, iov, n, on_write);
  if (rc < 0) {
    free(wreq);
    c->inflight = 0;
    osb__conn_close(c, uv_strerror(rc));
  }
}

/* Never closes the connection, even on a write error (the flusher finds the
 * error again and closes from its own context): callers such as fan-out
 * loops must not see on_close run inside a send. */
void osb__conn_flush_now(osb__conn_t *c) {
  if (c->closing || c->inflight || osb__conn_qlen(c) == 0) return;
  uv_buf_t iov[OSB__MAX_IOV];
  uint32_t n = build_iov(c, iov);
  int w = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
  if (w > 0) queue_advance(c, (size_t)w);
  osb__conn_schedule_flush(c);
}

/* Output not yet written to the kernel: queued, or left in the write in flight. */
static size_t unsent_out(osb__conn_t *c) {
  return c->queued_bytes + uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
}

/* Bytes in the kernel's send queue the peer has not acknowledged yet. */
static size_t kernel_unacked(osb__conn_t *c) {
#ifdef SIOCOUTQ
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0) return (size_t)n;
#endif
  return 0;
}

/* Bytes the peer has still to take, in user space and in the kernel: it
 * shrinks while a slow reader makes progress. Counting the kernel's part
 * tells a peer that reads (slowly) from one that stopped, once everything
 * fits in the socket buffer. */
static size_t pending_out(osb__conn_t *c) {
  return unsent_out(c) + kernel_unacked(c);
}

/* Bytes still to be written from user space (a stream's cap counts these). */
size_t osb__conn_pending_out(osb__conn_t *c) { return unsent_out(c); }

void osb__conn_stream_drain_check(osb__conn_t *c) {
  osb_req_t *r = c->req;
  if (c->closing || !r || !r->streaming || r->finished || !r->drain_fn) return;
  size_t cap = r->stream_cap ? r->stream_cap : OSB_STREAM_CAP_DEFAULT;
  if (osb__conn_pending_out(c) > cap / 2) return;
  osb_req_cb fn = r->drain_fn;
  r->drain_fn = NULL;
  fn(r, r->drain_ud);
}

/* A deadline passed while a response is still being written: give it more
 * time as long as the peer keeps reading, so a slow reader of a large reply
 * is not cut off, and, on WebSocket connections (stall time WS_IDLE_TIMEOUT_MS), while
 * output is left in user space and the peer has taken nothing for less than
 * that: a frame partly written must be finished, and the close frame
 * written, or the peer would read a truncated stream. Once everything is in
 * the kernel a normal close delivers it whole. Returns true if the deadline
 * was extended; if not, osb__conn_close resets a connection that still has
 * unsent output. */
static bool still_writing(osb__conn_t *c, uint64_t now) {
  size_t left = pending_out(c);
  if (left == 0) return false;
  if ((uint32_t)left != c->drain_mark) {   /* low 32 bits: any progress changes them */
    c->drain_mark = (uint32_t)left;
    c->progress_ms = (uint32_t)now;
    osb__conn_set_deadline(c, now + 5000);
    return true;
  }
  uint32_t stall_ms = c->mode == OSB__CONN_WS ? (uint32_t)osb_cfg->ws_idle_timeout_ms : 0;
  if (stall_ms && unsent_out(c) && (uint32_t)now - c->progress_ms < stall_ms) {
    osb__conn_set_deadline(c, now + 1000);
    return true;
  }
  return false;
}

/* Connections a round writes from the WebSocket list. Core runs at most
 * OSB_CORE_STEP_ROUNDS rounds per before-sleep phase and then polls
 * without blocking when work is left, so one phase writes at most 8 × 256
 * sockets before the loop reads again: with 10,000 subscribers a publish
 * that arrives mid-drain is read and answered after about 2,000 writes,
 * not after all of them (redis caps its writes per event the same way,
 * NET_MAX_WRITES_PER_EVENT). Connections still waiting keep their place,
 * ahead of those scheduled since, and meanwhile gather more messages, so
 * they leave in fewer writes. */
#define OSB__WS_FLUSH_BATCH 256

/* Put everything in `from` back at the head of `h`, in order. */
static void list_splice_head(osb_list_t *h, osb_list_t *from) {
  if (osb_list_empty(from)) return;
  osb_list_t *first = from->next, *last = from->prev;
  last->next = h->next;
  h->next->prev = last;
  h->next = first;
  first->prev = h;
  osb_list_init(from);
}

/* Flush up to `max` connections of one list: parse pipelined requests left
 * waiting, then write what was queued. Handlers run here may schedule more
 * connections, and may take any other connection out of this round
 * (osb__conn_close, a WebSocket send that writes at once): so always take
 * the head, never keep a "next". */
static void flush_list(osb_list_t *list, size_t max) {
  osb_list_t round;
  osb_list_move(&round, list);
  size_t done = 0;
  while (!osb_list_empty(&round) && done < max) {
    osb_list_t *pos = round.next;
    osb__conn_t *c = osb_container_of(pos, osb__conn_t, flush_node);
    osb_list_remove(pos);
    if (c->closing) continue;
    done++;
    if (c->mode == OSB__CONN_HTTP) {
      conn_update_reading(c);   /* lifts an output pause once the queue drained */
      if (!conn_busy(c) && c->http->in.len && !c->close_after_flush && !c->out_paused) {
        conn_process(c);
        if (c->closing) continue;
        conn_update_reading(c);
        osb_list_remove(&c->flush_node);  /* processing may have scheduled it again */
      }
    }
    conn_write(c);
    osb__conn_stream_drain_check(c);
  }
  list_splice_head(list, &round);
}

/* One flush round: HTTP connections first, then (some of the) WebSocket
 * ones. A publish answered during the iteration is written before the
 * fan-out it caused (thousands of subscriber writes), as uWebSockets
 * answers at once and drains its subscribers at the end of the iteration:
 * the publisher hears back within one write, keeps its next publishes
 * coming, and more of them reach each subscriber's queue before the next
 * drain (more messages per write syscall). Pipelined requests parsed in
 * the HTTP pass fan out into queues that the WebSocket pass writes. */
static void flush_round(void) {
  flush_list(&osb__srv.pending_http, SIZE_MAX);
  flush_list(&osb__srv.pending_flush, OSB__WS_FLUSH_BATCH);
}

/* The HTTP step of core's before-sleep phase (OSB_STEP_HTTP, first): runs
 * every loop iteration before the loop blocks, so everything queued during
 * the iteration leaves in as few writes as possible, and requests pipelined
 * behind a finished one are dispatched in the same iteration; the queries
 * they start are synced by the PostgreSQL step that follows in the same
 * round. Core repeats the round while a step did work. */
static bool http_step(void *ud) {
  OSB_UNUSED(ud);
  if (osb_list_empty(&osb__srv.pending_flush) && osb_list_empty(&osb__srv.pending_http)) return false;
  flush_round();
  return true;
}

/* ---- connections ---- */

static void conn_free(osb__conn_t *c) {
  if (c->holds == 0 && c->tcp_closed) free(c);
}

void osb__conn_unhold(osb__conn_t *c) {
  osb_assert(c->holds > 0);
  c->holds--;
  conn_free(c);
}

static void on_close(uv_handle_t *h) {
  osb__conn_t *c = osb_container_of((uv_tcp_t *)h, osb__conn_t, tcp);
  queue_free(c);
  if (c->has_http) {
    osb_buf_free(&c->http->in);
    free(c->http);
    c->http = NULL;
    c->has_http = false;
  } else {
    osb__ws_dispose(c);
  }
  osb_list_remove(&c->flush_node);
  osb__edge_release(c);
  osb__srv.nconns--;
  c->tcp_closed = true;
  conn_free(c);
}

void osb__conn_ip(const osb__conn_t *c, char out[46]) {
  out[0] = 0;
  if (c->addr6) uv_inet_ntop(AF_INET6, c->addr, out, 46);
  else uv_inet_ntop(AF_INET, c->addr, out, 46);
}

osb__conn_t *osb__conn_alloc(uv_loop_t *loop, size_t user) {
  osb_assert(user <= UINT16_MAX);
  osb__conn_t *c = osb_calloc(1, sizeof(*c) + user);
  c->user_cap = (uint16_t)user;
  c->http = osb_calloc(1, sizeof(*c->http));
  c->has_http = true;
  http_parser_init(&c->http->parser, HTTP_REQUEST);
  c->http->parser.data = c;
  osb_list_init(&c->flush_node);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = &osb__srv;   /* the mark osb__conn_foreach looks for */
  return c;
}

typedef struct {
  void (*fn)(osb__conn_t *c, void *ud);
  void *ud;
} conn_walk_t;

static void conn_walk_cb(uv_handle_t *h, void *arg) {
  conn_walk_t *w = arg;
  if (h->type == UV_TCP && h->data == &osb__srv && h != (uv_handle_t *)&osb__srv.listener)
    w->fn(osb_container_of((uv_tcp_t *)h, osb__conn_t, tcp), w->ud);
}

/* libuv's uv_walk moves its handle list aside and puts each handle back
 * before calling back, so the walk survives fn closing any connection
 * (a handle leaves the list only in its close callback, which never runs
 * inside fn), and skips handles created meanwhile. */
void osb__conn_foreach(void (*fn)(osb__conn_t *c, void *ud), void *ud) {
  if (!osb__srv.loop) return;
  conn_walk_t w = {fn, ud};
  uv_walk(osb__srv.loop, conn_walk_cb, &w);
}

void osb__conn_close(osb__conn_t *c, const char *reason) {
  if (c->closing) return;
  c->closing = true;
  if (osb_log_enabled(OSB_LOG_DEBUG))
  {
    char ip[46];
    osb__conn_ip(c, ip);
    osb_log(OSB_LOG_DEBUG, "http", "conn %llu (%s) closed: %s", (unsigned long long)c->id, ip, reason);
  }
  osb_list_remove(&c->flush_node);
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
  osb_req_t *detached = NULL;
  if (c->req) {
    /* detach: the handler still owns the request and finishes it later */
    c->req->conn = NULL;
    if (!c->req->dispatched) {
      /* never dispatched: nobody else owns it */
      osb__srv.inflight--;
      osb__req_free(c->req);
    } else {
      detached = c->req;
    }
    c->req = NULL;
  }
  if (c->mode == OSB__CONN_WS) osb__ws_on_close(c);
  /* Unsent output means the stream would end mid-response or mid-frame, or
   * before the close frame: reset instead. (uv_close cancels the write in
   * flight, whose first part the kernel may already hold.) */
  if (unsent_out(c) && uv_tcp_close_reset(&c->tcp, on_close) == 0) {
    osb_series_inc(s_resets, 1);
    if (osb_log_enabled(OSB_LOG_DEBUG)) {
      char ip[46];
      osb__conn_ip(c, ip);
      osb_log(OSB_LOG_DEBUG, "http", "conn %llu (%s) reset: output left unsent", (unsigned long long)c->id, ip);
    }
  } else {
    uv_close((uv_handle_t *)&c->tcp, on_close);
  }
  /* Last, with the connection fully closing: the handler may finish the
   * request from its detach callback (the answer is discarded). */
  if (detached && detached->detach_fn) {
    osb_req_cb fn = detached->detach_fn;
    detached->detach_fn = NULL;
    fn(detached, detached->detach_ud);
  }
}

/* A connection block whose socket could not be taken over: closed before
 * it ever counted as a connection. */
static void conn_discard(osb__conn_t *c) {
  free(c->http);
  c->tcp.data = NULL;   /* not a connection for osb__conn_foreach */
  uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);  /* tcp is the first member */
}

static void conn_accepted(osb__conn_t *c);

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) {
    osb__edge_accept_failed(server, status);
    return;
  }
  osb__conn_t *c = osb__conn_alloc(osb__srv.loop, osb__ws_user_size());
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_discard(c);
    return;
  }
  conn_accepted(c);
}

/* Before the listener closes: take every connection the kernel has already
 * completed (the accept queue), so it is served like any other instead of
 * being reset by the close. What connects after this is refused. Still
 * reset by the kernel: a handshake that completes between the last
 * accept() and the close(), and one still in progress at the close (the
 * server's SYN-ACK sent, the client's ACK not yet in: on loopback
 * microseconds, over a network one round trip). Bounded by the listen
 * backlog; a connection reset while queued is skipped (as libuv does),
 * any other accept error (EMFILE included) ends the drain. */
static void accept_backlog(void) {
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)&osb__srv.listener, &lfd) != 0) return;
  for (int n = 0; n < OSB__LISTEN_BACKLOG; n++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0 && (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)) continue;
    if (fd < 0) return;
    osb__conn_t *c = osb__conn_alloc(osb__srv.loop, osb__ws_user_size());
    if (uv_tcp_open(&c->tcp, fd) != 0) {
      close(fd);
      conn_discard(c);
      continue;
    }
    conn_accepted(c);
  }
}

static void conn_accepted(osb__conn_t *c) {
  osb__srv.nconns++;
  c->id = ++osb__srv.next_conn_id;
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    /* binary in the connection (16 bytes), text in the HTTP state */
    if (ss.ss_family == AF_INET6) {
      c->addr6 = true;
      memcpy(c->addr, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    } else {
      memcpy(c->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    }
    osb__conn_ip(c, c->http->ip);
  }
  /* The head timeout counts from accept: a connection that never sends a
   * byte is gone after HTTP_HEADER_TIMEOUT_MS, not the idle timeout. */
  c->phase = OSB__PHASE_HEAD;
  osb__conn_set_deadline(c, uv_now(osb__srv.loop) + (uint64_t)osb_cfg->http_header_timeout_ms);
  osb_series_inc(s_conn_total, 1);
  if (osb__srv.shutting_down) {
    osb__conn_close(c, "shutting down");
    return;
  }
  if (!osb__edge_admit(c)) {
    osb__conn_close(c, "refused");
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  c->reading = true;
}

/* One timer checks every connection's deadline (idle keep-alive, slow
 * request heads, WebSocket ping/silence, drain after close). Cheaper in
 * memory and in syscalls than a timer per connection. */
static void sweep_conn(osb__conn_t *c, void *ud) {
  uint64_t now = *(const uint64_t *)ud;
  if (c->closing) return;
  if (c->q && c->q->len == 0) {
    /* An idle connection owns no output ring (96 bytes of heap per idle
     * WebSocket); a busy one keeps its ring between sweeps, so fan-out
     * does not allocate per delivery (see also after_flush_empty). */
    queue_drop_ring(c);
  }
  switch (c->phase) {
    case OSB__PHASE_IDLE:
      if (osb__conn_deadline_passed(c, now) && !still_writing(c, now)) osb__conn_close(c, "idle timeout");
      break;
    case OSB__PHASE_HEAD:
      if (osb__conn_deadline_passed(c, now)) {
        if (c->req) {
          c->req->errored = true;
          c->req->keep_alive = false;
          c->req->dispatched = true;
          c->phase = OSB__PHASE_BUSY;
          osb_res_error(c->req, 408, "request_timeout", "request head not received in time");
        } else {
          /* Nothing received since accept: nobody to answer (a 408 could
           * be read as the answer to a request sent just now). */
          osb__conn_close(c, "head timeout, nothing received");
        }
      }
      break;
    case OSB__PHASE_WS:
      osb__ws_sweep(c, now);
      break;
    case OSB__PHASE_DRAIN:
      if (osb__conn_deadline_passed(c, now) && !still_writing(c, now)) osb__conn_close(c, "drain timeout");
      break;
    default:
      break;
  }
}

static void on_sweep(uv_timer_t *t) {
  uint64_t now = uv_now(osb__srv.loop);
  osb__conn_foreach(sweep_conn, &now);
}

static double g_open_conns(void *ud) { return (double)osb__srv.nconns; }
static double g_inflight(void *ud) { return (double)osb__srv.inflight; }

static void http_drain_hook(void *ud) {
  OSB_UNUSED(ud);
  osb_http_server_drain();
}

static void http_shutdown_hook(void *ud) {
  OSB_UNUSED(ud);
  osb_http_server_shutdown();
}

/* WORKERS > 1 (main.c forks the workers): every worker binds the same
 * port with SO_REUSEPORT and the kernel spreads new connections over
 * them. libuv 1.44 has no UV_TCP_REUSEPORT, so the socket is made here and
 * handed to libuv with uv_tcp_open. */
static int bind_reuseport(uv_tcp_t *t, const struct sockaddr *sa) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  int on = 1;
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, sa, len) != 0) {
    int e = errno;
    close(fd);
    return uv_translate_sys_error(e);
  }
  int rc = uv_tcp_open(t, (uv_os_sock_t)fd);
  if (rc != 0) close(fd);
  return rc;
}

int osb_http_server_start(uv_loop_t *loop) {
  osb__server_t *s = &osb__srv;
  s->loop = loop;
  osb_list_init(&s->pending_flush);
  osb_list_init(&s->pending_http);
  osb_list_init(&req_freelist);

  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_url = on_url;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;

  m_duration = osb_metric_histogram("http_server_request_duration_seconds",
                                    "Duration of HTTP server requests", "http_request_method,http_route,http_response_status_code",
                                    NULL, 0);
  memset(dur_cache, 0, sizeof(dur_cache));
  m_conn_total = osb_metric_counter("http_server_connections_total", "TCP connections accepted", NULL);
  s_conn_total = osb_metric_series0(m_conn_total);
  m_paused = osb_metric_counter("http_server_output_paused_total",
                                "Times a connection stopped reading: unsent output over HTTP_SEND_BUFFER_BYTES", NULL);
  s_paused = osb_metric_series0(m_paused);
  m_resets = osb_metric_counter("http_server_connection_resets_total",
                                "Connections reset (RST) instead of closed because the peer left output unread", NULL);
  s_resets = osb_metric_series0(m_resets);
  osb_metric_gauge_fn("http_server_open_connections", "Open connections (HTTP and WebSocket)", g_open_conns, NULL);
  osb_metric_gauge_fn("http_server_active_requests", "Requests being handled", g_inflight, NULL);
  osb__cors_init(osb_cfg->cors_origins);
  osb__ws_init();
  osb__edge_init();

  union { struct sockaddr_in v4; struct sockaddr_in6 v6; } addr;
  int rc;
  if (strchr(osb_cfg->host, ':')) rc = uv_ip6_addr(osb_cfg->host, osb_cfg->port, &addr.v6);
  else rc = uv_ip4_addr(osb_cfg->host, osb_cfg->port, &addr.v4);
  if (rc != 0) {
    osb_log(OSB_LOG_ERROR, "http", "HOST=%s is not an IP address: %s", osb_cfg->host, uv_strerror(rc));
    return rc;
  }
  uv_tcp_init(loop, &s->listener);
  if (osb_cfg->workers > 1) rc = bind_reuseport(&s->listener, (const struct sockaddr *)&addr);
  else rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, OSB__LISTEN_BACKLOG, on_connection);
  if (rc != 0) {
    osb_log(OSB_LOG_ERROR, "http", "cannot listen on %s:%d: %s", osb_cfg->host, osb_cfg->port, uv_strerror(rc));
    uv_close((uv_handle_t *)&s->listener, NULL);
    return rc;
  }
  s->listening = true;
  struct sockaddr_storage bound;
  int blen = sizeof(bound);
  int port = osb_cfg->port;
  if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen) == 0)
    port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                             : ((struct sockaddr_in *)&bound)->sin_port);

  uv_timer_init(loop, &s->sweep);
  uint64_t every = 500;
  uv_timer_start(&s->sweep, on_sweep, every, every);
  osb_core_step_add("http", OSB_STEP_HTTP, http_step, NULL);
  osb_core_step_add("http-clock", OSB__STEP_HTTP_CLOCK, clock_step, NULL);
  clock_live = false;
  osb_core_on_shutdown("http-drain", OSB_SHUTDOWN_HTTP_DRAIN, http_drain_hook, NULL);
  osb_core_on_shutdown("http", OSB_SHUTDOWN_HTTP, http_shutdown_hook, NULL);

  osb_log_fields(OSB_LOG_INFO, "http", "listening",
                 json_pack("{s:s, s:i, s:s}", "host", osb_cfg->host, "port", port, "websocket", "/ws"));
  return 0;
}

void osb_http_server_drain(void) { osb__srv.no_keepalive = true; }

/* How long a connection that has sent nothing yet may still deliver its
 * first request after the listener closed (then the sweep closes it). */
#define OSB__SHUTDOWN_GRACE_MS 250

/* Bytes the peer sent that the loop has not read yet: a request on the
 * wire. Such a connection is not idle; closing it would reset it (unread
 * input makes close() send RST) and lose a request the client already sent,
 * e.g. on a connection accepted just before the listener closed. */
static bool input_pending(osb__conn_t *c) {
  uv_os_fd_t fd;
  char b;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return false;
  return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

static void shutdown_conn(osb__conn_t *c, void *ud) {
  OSB_UNUSED(ud);
  if (c->closing) return;
  if (c->mode == OSB__CONN_WS) {
    osb__ws_shutdown(c);
  } else if (c->phase == OSB__PHASE_IDLE || (c->phase == OSB__PHASE_HEAD && !c->req)) {
    /* A request begun (even before its URL), one already read and waiting
     * behind an answer (pipelined, or paused on output), or one in the
     * socket: not idle, it is answered with Connection: close. */
    if (input_pending(c) || (c->has_http && c->http->in.len)) return;
    if (c->phase == OSB__PHASE_HEAD && !c->req) {
      /* Accepted, nothing received yet: its first request may still be
       * on the way (sent right after the handshake, which the accept
       * raced). The sweep closes it if nothing came within the grace. */
      uint64_t grace = uv_now(osb__srv.loop) + OSB__SHUTDOWN_GRACE_MS;
      if (!c->deadline || (int32_t)(c->deadline - (uint32_t)grace) > 0) osb__conn_set_deadline(c, grace);
    } else if (osb__conn_qlen(c)) {
      c->close_after_flush = true;
    } else {
      osb__conn_close(c, "shutting down");
    }
  }
  /* busy connections, and idle ones whose next request is already in the
   * socket, close after their response (keep-alive is off now) */
}

void osb_http_server_shutdown(void) {
  osb__server_t *s = &osb__srv;
  if (s->shutting_down) return;
  s->no_keepalive = true;
  if (s->listening) {
    accept_backlog();   /* while shutting_down is false: these are served */
    osb_handle_close((uv_handle_t *)&s->listener);
    s->listening = false;
  }
  s->shutting_down = true;
  osb__conn_foreach(shutdown_conn, NULL);
}

static void force_close_conn(osb__conn_t *c, void *ud) {
  OSB_UNUSED(ud);
  osb__conn_close(c, "shutdown timeout");
}

void osb_http_server_force_close(void) { osb__conn_foreach(force_close_conn, NULL); }

void osb_http_server_stop(void) {
  osb__server_t *s = &osb__srv;
  if (!s->loop) return;  /* never started */
  if (s->listening) {
    osb_handle_close((uv_handle_t *)&s->listener);
    s->listening = false;
  }
  osb_handle_close((uv_handle_t *)&s->sweep);
  osb_core_step_remove("http");
  osb_core_step_remove("http-clock");
}

void osb_http_server_dispose(void) {
  while (req_freelist.next && !osb_list_empty(&req_freelist)) {
    osb_list_t *n = req_freelist.next;
    osb_list_remove(n);
    osb_req_t *r = osb_container_of(n, osb_req_t, node);
    osb_buf_free(&r->hbuf);
    osb_buf_free(&r->body);
    osb_buf_free(&r->rhead);
    free(r->arena);
    free(r);
  }
  req_freelist_len = 0;
  memset(dur_cache, 0, sizeof(dur_cache));
  osb__res_pool_dispose();
  osb__cors_dispose();
  osb__ws_dispose_module();
  osb__edge_dispose();
  osb__router_reset();
  nhooks = 0;
}
