/* response.c: building responses. One allocation per response: the head is
 * written into the headroom of the message that holds the body, and the
 * message is queued on the connection as one reference. */
#include "http/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "core/config.h"
#include "core/json.h"

const char *osb_http_status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

/* ---- Date, cached per second ---- */

static time_t date_sec;
static char date_line[64];
static size_t date_len;

/* The current line; *len gets its length. */
static const char *date_current(size_t *len) {
  time_t now = time(NULL);
  if (now != date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    date_len = strftime(date_line, sizeof(date_line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    date_sec = now;
  }
  *len = date_len;
  return date_line;
}

size_t osb__date_header(char *out) {
  size_t n;
  const char *line = date_current(&n);
  memcpy(out, line, n);
  return n;
}

/* ---- CORS ---- */

static char **cors_origins;
static size_t cors_n;

void osb__cors_init(const char *origins) {
  osb__cors_dispose();
  if (!origins || !*origins) return;
  const char *p = origins;
  while (*p) {
    while (*p == ' ' || *p == ',') p++;
    if (!*p) break;
    size_t len = strcspn(p, ",");
    size_t l = len;
    while (l && p[l - 1] == ' ') l--;
    while (l && p[l - 1] == '/') l--;   /* "https://a.example/" names the same origin */
    if (l) {
      cors_origins = osb_realloc(cors_origins, sizeof(char *) * (cors_n + 1));
      cors_origins[cors_n++] = osb_strndup(p, l);
    }
    p += len;
  }
}

void osb__cors_dispose(void) {
  for (size_t i = 0; i < cors_n; i++) free(cors_origins[i]);
  free(cors_origins);
  cors_origins = NULL;
  cors_n = 0;
}

static const char *cors_allowed(const osb_req_t *req) {
  if (!cors_n) return NULL;
  const char *o = osb_req_header(req, "origin");
  if (!o) return NULL;
  for (size_t i = 0; i < cors_n; i++)
    if (strcmp(cors_origins[i], o) == 0 || strcmp(cors_origins[i], "*") == 0) return o;
  return NULL;
}

bool osb_http_origin_allowed(const osb_req_t *req) {
  const char *o = osb_req_header(req, "origin");
  if (!o) return true;   /* not a browser, or a same-origin navigation */
  if (cors_allowed(req)) return true;
  const char *host = osb_req_header(req, "host");
  if (!host) return false;
  const char *sep = strstr(o, "://");
  return sep && strcasecmp(sep + 3, host) == 0;
}

/* ---- head ---- */

typedef struct {
  char *p;
  size_t len, cap;
} hw_t;

static void hw_put(hw_t *w, const char *s, size_t n) {
  osb_assert(w->len + n <= w->cap);
  memcpy(w->p + w->len, s, n);
  w->len += n;
}
#define HW_LIT(w, s) hw_put((w), (s), sizeof(s) - 1)
static void hw_str(hw_t *w, const char *s) { hw_put(w, s, strlen(s)); }

static size_t head_estimate(const osb_req_t *req, const char *ctype) {
  size_t n = 512 + (req ? req->rhead.len : 0) + (ctype ? strlen(ctype) : 0);
  if (req) {
    const char *o = cors_allowed(req);
    if (o) n += strlen(o) + 128;
  }
  return n;
}

/* Writes the status line and headers. `body_len` -1 means chunked, -2 a
 * body delimited by the close (a stream to an HTTP/1.0 client). */
static void hw_uint(hw_t *w, unsigned long long v) {
  char tmp[24];
  char *e = tmp + sizeof(tmp), *p = e;
  do { *--p = (char)('0' + v % 10); v /= 10; } while (v);
  hw_put(w, p, (size_t)(e - p));
}

static void head_write(hw_t *w, osb_req_t *req, int status, const char *ctype, long long body_len, bool keep_alive) {
  HW_LIT(w, "HTTP/1.1 ");
  hw_uint(w, (unsigned)status);
  HW_LIT(w, " ");
  hw_str(w, osb_http_status_text(status));
  HW_LIT(w, "\r\n");
  size_t dlen;
  const char *date = date_current(&dlen);
  hw_put(w, date, dlen);
  if (ctype) {
    HW_LIT(w, "Content-Type: ");
    hw_str(w, ctype);
    HW_LIT(w, "\r\n");
  }
  if (body_len >= 0) {
    if (status != 204 && status != 304 && status != 101) {
      HW_LIT(w, "Content-Length: ");
      hw_uint(w, (unsigned long long)body_len);
      HW_LIT(w, "\r\n");
    }
  } else if (body_len == -1) {
    HW_LIT(w, "Transfer-Encoding: chunked\r\n");
  }
  /* HTTP/1.1 connections persist unless one side says close (RFC 9112
   * 9.3), so keep-alive is said only to HTTP/1.0 clients, which need it. */
  if (status != 101) {
    if (!keep_alive) HW_LIT(w, "Connection: close\r\n");
    else if (!req || req->http10) HW_LIT(w, "Connection: keep-alive\r\n");
  }
  HW_LIT(w, "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n");
  if (req) {
    HW_LIT(w, "X-Request-ID: ");
    hw_str(w, req->id);
    HW_LIT(w, "\r\n");
    if (osb_req_is_https(req)) HW_LIT(w, "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n");
    const char *o = cors_allowed(req);
    if (o) {
      HW_LIT(w, "Access-Control-Allow-Origin: ");
      hw_str(w, o);
      HW_LIT(w, "\r\nAccess-Control-Allow-Credentials: true\r\nAccess-Control-Expose-Headers: X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset\r\nVary: Origin\r\n");
    }
    if (req->rhead.len) hw_put(w, req->rhead.base, req->rhead.len);
  }
  HW_LIT(w, "\r\n");
}

static bool req_keep_alive(const osb_req_t *req) {
  return req->keep_alive && !req->errored && !osb__srv.no_keepalive && req->conn && !req->conn->close_after_flush;
}

/* ---- response buffers ----
 * Most answers, a head and a small body, fit in OSB__RESP_BUF bytes. Such an
 * answer is written straight into one of a few reusable messages instead
 * of a fresh allocation: the pool keeps a reference to each of its
 * messages, so one whose count is back to 1 has been written and released
 * by every queue and can be filled again. A busy server would otherwise
 * allocate and free one message per response, in batches (a loop
 * iteration's answers are written together), past what malloc's
 * per-thread cache serves quickly. The pool grows on demand up to
 * OSB__RESP_POOL messages (OSB__RESP_POOL × OSB__RESP_BUF bytes at most, kept until
 * dispose); when every one is still queued somewhere, an answer gets a
 * message of its own as before. Pool messages are only ever filled here,
 * never grown (osb_msg_append could move them). */
#define RESP_POOL_SCAN 8

static osb_msg_t *resp_pool[OSB__RESP_POOL];
static unsigned resp_npool, resp_next;

/* A pool message for an answer of up to `need` bytes (headroom 0, one
 * reference for the caller), or NULL: too large, or every pool message is
 * still queued and the pool is full. Then the caller allocates one of the
 * exact size: answers piling up on a connection that does not read (up to
 * HTTP_SEND_BUFFER_BYTES of them) cost what they weigh, not OSB__RESP_BUF each. */
static osb_msg_t *resp_pool_take(size_t need) {
  if (need > OSB__RESP_BUF) return NULL;
  for (unsigned k = 0; k < resp_npool && k < RESP_POOL_SCAN; k++) {
    unsigned i = (resp_next + k) % resp_npool;
    osb_msg_t *m = resp_pool[i];
    if (m->refcnt != 1) continue;   /* still queued on some connection */
    resp_next = i + 1;
    m->refcnt = 2;
    m->headroom = 0;
    m->len = 0;
    m->cap = OSB__RESP_BUF;
    m->data = m->buf;
    return m;
  }
  if (resp_npool == OSB__RESP_POOL) return NULL;
  osb_msg_t *m = osb_msg_new(0, OSB__RESP_BUF);
  resp_pool[resp_npool++] = osb_msg_ref(m);
  return m;
}

/* Head and `blen` bytes of body in one message: written straight into a
 * pool message, else into a stack buffer and copied into one of the exact
 * size. `est` bounds the head (head_estimate). */
static osb_msg_t *resp_build(osb_req_t *req, int status, const char *ctype, long long body_len, bool ka,
                             size_t est, const void *body, size_t blen) {
  osb_msg_t *h = resp_pool_take(est + blen);
  if (h) {
    hw_t w = {h->data, 0, est};
    head_write(&w, req, status, ctype, body_len, ka);
    if (blen) memcpy(h->data + w.len, body, blen);
    h->len = w.len + blen;
    return h;
  }
  char stackbuf[1024];
  char *hb = est <= sizeof(stackbuf) ? stackbuf : osb_malloc(est);
  hw_t w = {hb, 0, est};
  head_write(&w, req, status, ctype, body_len, ka);
  h = osb_msg_new(0, w.len + blen);
  memcpy(h->data, hb, w.len);
  if (blen) memcpy(h->data + w.len, body, blen);
  h->len = w.len + blen;
  if (hb != stackbuf) free(hb);
  return h;
}

void osb__res_pool_dispose(void) {
  for (unsigned i = 0; i < resp_npool; i++) osb_msg_unref(resp_pool[i]);
  resp_npool = resp_next = 0;
}

/* Queue the head and the body, finish. The body is one of: `copy` (len
 * bytes to copy: osb_res_send), `m` (a message built with headroom for
 * the head, its len bytes: osb_res_json), or `shared` (a prebuilt body,
 * sent by reference or copied when small: osb_res_msg). `body_len` is what
 * Content-Length says (for HEAD the body itself is left out). */
static void finish_with(osb_req_t *req, int status, const char *ctype, const void *copy, size_t body_len,
                        osb_msg_t *m, osb_msg_t *shared) {
  osb_assert(!req->finished);
  req->finished = true;
  req->status = status;
  bool ka = req_keep_alive(req);
  req->keep_alive = ka;
  if (req->conn && !req->conn->closing) {
    size_t est = head_estimate(req, ctype);
    size_t send = req->head_only ? 0 : body_len;   /* bytes of body that go out */
    if (m) send = m->len;
    bool send_shared = shared && shared->len && !req->head_only;
    /* A body small enough is copied behind the head: one buffer, one iovec. */
    const void *inline_body = NULL;
    if (!m && !shared) inline_body = copy;
    else if (send_shared && shared->len <= 4096) inline_body = shared->data;
    if (m && est <= m->headroom) {
      char stackbuf[1024];
      char *hb = est <= sizeof(stackbuf) ? stackbuf : osb_malloc(est);
      hw_t w = {hb, 0, est};
      head_write(&w, req, status, ctype, (long long)body_len, ka);
      osb_msg_prepend(m, hb, w.len);
      osb__conn_queue(req->conn, m);
      if (hb != stackbuf) free(hb);
    } else if (!m && (inline_body || !send_shared)) {
      size_t blen = inline_body ? send : 0;
      osb_msg_t *h = resp_build(req, status, ctype, (long long)body_len, ka, est, inline_body, blen);
      osb__conn_queue(req->conn, h);
      osb_msg_unref(h);
      send_shared = false;
    } else {
      /* The head alone, then the body by reference. */
      osb_msg_t *h = resp_build(req, status, ctype, (long long)body_len, ka, est, NULL, 0);
      osb__conn_queue(req->conn, h);
      osb_msg_unref(h);
      if (m && m->len) osb__conn_queue(req->conn, m);
    }
    if (send_shared) osb__conn_queue(req->conn, shared);
  }
  osb_msg_unref(m);
  osb__req_finished(req);
}

void osb_res_header(osb_req_t *req, const char *name, const char *value) {
  osb_buf_puts(&req->rhead, name);
  osb_buf_puts(&req->rhead, ": ");
  /* header injection: values never carry CR or LF */
  for (const char *p = value; *p; p++) {
    char ch = (*p == '\r' || *p == '\n') ? ' ' : *p;
    osb_buf_append(&req->rhead, &ch, 1);
  }
  osb_buf_puts(&req->rhead, "\r\n");
}

#define HEADROOM_FOR(req, ctype) (head_estimate((req), (ctype)))

void osb_res_send(osb_req_t *req, int status, const char *content_type, const void *body, size_t len) {
  size_t blen = req->head_only ? 0 : len;
  if (blen <= 4096 || !req->conn) {
    finish_with(req, status, content_type, body, len, NULL, NULL);
    return;
  }
  /* A large body: one copy into a message with room for the head. */
  osb_msg_t *m = osb_msg_new(HEADROOM_FOR(req, content_type), blen);
  memcpy(m->data, body, blen);
  m->len = blen;
  finish_with(req, status, content_type, NULL, len, m, NULL);
}

typedef struct { osb_msg_t *m; } dumpctx_t;

void osb_res_json(osb_req_t *req, int status, json_t *body) {
  size_t hr = HEADROOM_FOR(req, "application/json");
  dumpctx_t d = {osb_msg_new(hr, 256)};
  if (body) {
    osb_json_dump_append(body, &d.m);   /* the one serializer (core/json.h) */
    json_decref(body);
  }
  size_t len = d.m->len;
  if (req->head_only) d.m->len = 0;
  finish_with(req, status, "application/json", NULL, len, d.m, NULL);
}

/* Error bodies are built by hand, not with json_pack, which fails (and
 * left the body empty) on a message that is not valid UTF-8: a path with
 * %ff, or one cut mid-character. osb_buf_json_str always yields valid JSON,
 * and a message too long for the buffer is cut at a character boundary. */
void osb_res_error(osb_req_t *req, int status, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  size_t mlen = n < 0 ? 0 : (size_t)n;
  if (mlen >= sizeof(msg)) {
    mlen = osb_utf8_trim(msg, sizeof(msg) - 4);
    memcpy(msg + mlen, "...", 4);
    mlen += 3;
  }
  if (status == 401 && !strstr(req->rhead.base ? req->rhead.base : "", "WWW-Authenticate"))
    osb_res_header(req, "WWW-Authenticate", "Bearer");
  osb_buf_t body = OSB_BUF_INIT;
  osb_buf_puts(&body, "{\"error\":{\"code\":");
  osb_buf_json_str(&body, code, strlen(code));
  osb_buf_puts(&body, ",\"message\":");
  osb_buf_json_str(&body, msg, mlen);
  osb_buf_puts(&body, ",\"request_id\":");
  osb_buf_json_str(&body, req->id, strlen(req->id));
  osb_buf_puts(&body, "}}");
  osb_res_send(req, status, "application/json", body.base, body.len);
  osb_buf_free(&body);
}

int osb_http_error_status(int err, const char **code) {
  int status;
  const char *c;
  switch (err) {
    case OSB_EINVAL: case OSB_EPROTO: case UV_EINVAL:
      status = 400; c = "bad_request"; break;
    case OSB_EDENIED: case UV_EACCES: case UV_EPERM:
      status = 403; c = "forbidden"; break;
    case OSB_ENOTFOUND: case UV_ENOENT:
      status = 404; c = "not_found"; break;
    case OSB_ECONFLICT: case UV_EEXIST:
      status = 409; c = "conflict"; break;
    case OSB_ETOOBIG: case UV_E2BIG: case UV_EMSGSIZE:
      status = 413; c = "too_large"; break;
    case OSB_EUNAVAIL: case OSB_ETIMEOUT: case OSB_ESLOW: case OSB_ECLOSED:
    case UV_ETIMEDOUT: case UV_ECANCELED: case UV_ECONNREFUSED: case UV_ECONNRESET:
    case UV_EAI_AGAIN: case UV_EAI_FAIL: case UV_EAI_NONAME: case UV_ENETUNREACH: case UV_EHOSTUNREACH:
      status = 503; c = "unavailable"; break;
    default:
      status = 500; c = "internal"; break;
  }
  if (code) *code = c;
  return status;
}

void osb_res_error_code(osb_req_t *req, int err, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const char *code;
  int status = osb_http_error_status(err, &code);
  if (status == 503 && !strstr(req->rhead.base ? req->rhead.base : "", "Retry-After"))
    osb_res_header(req, "Retry-After", "1");
  osb_res_error(req, status, code, "%s", msg);
}

void osb_res_msg(osb_req_t *req, int status, const char *content_type, osb_msg_t *body) {
  finish_with(req, status, content_type, NULL, body ? body->len : 0, NULL, body);
}

/* ---- streaming ---- */

void osb_res_stream_start(osb_req_t *req, int status, const char *content_type) {
  osb_assert(!req->finished && !req->streaming);
  req->streaming = true;
  req->status = status;
  /* HTTP/1.0 has no chunked coding (RFC 9112 6.1): its stream is the raw
   * bytes, ended by closing the connection. */
  req->keep_alive = !req->http10 && req_keep_alive(req);
  if (!req->conn || req->conn->closing) return;
  size_t est = head_estimate(req, content_type) + 64;
  char *hb = osb_malloc(est);
  hw_t w = {hb, 0, est};
  head_write(&w, req, status, content_type, req->http10 ? -2 : -1, req->keep_alive);
  osb_msg_t *m = osb_msg_from(hb, w.len);
  free(hb);
  osb__conn_queue(req->conn, m);
  osb_msg_unref(m);
}

int osb_res_stream_write(osb_req_t *req, const void *data, size_t len) {
  osb_assert(req->streaming && !req->finished);
  if (!req->conn || req->conn->closing) return OSB_ECLOSED;
  /* HEAD: the head says chunked, as GET's would, but no chunk follows */
  if (len == 0 || req->head_only) return 0;
  size_t cap = req->stream_cap ? req->stream_cap : OSB_STREAM_CAP_DEFAULT;
  size_t pending = osb__conn_pending_out(req->conn);
  if (pending > 0 && pending + len > cap) return OSB_ESLOW;
  if (req->http10) {
    osb_msg_t *raw = osb_msg_from(data, len);
    osb__conn_queue(req->conn, raw);
    osb_msg_unref(raw);
    return 0;
  }
  char hdr[24];
  int n = snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
  osb_msg_t *m = osb_msg_new(0, (size_t)n + len + 2);
  memcpy(m->data, hdr, (size_t)n);
  memcpy(m->data + n, data, len);
  memcpy(m->data + n + len, "\r\n", 2);
  m->len = (size_t)n + len + 2;
  osb__conn_queue(req->conn, m);
  osb_msg_unref(m);
  return 0;
}

void osb_res_stream_set_cap(osb_req_t *req, size_t cap_bytes) { req->stream_cap = cap_bytes; }

void osb_res_stream_on_drain(osb_req_t *req, osb_req_cb fn, void *ud) {
  osb_assert(req->streaming && !req->finished);
  req->drain_fn = fn;
  req->drain_ud = ud;
  /* already drained: the next flush says so */
  if (fn && req->conn && !req->conn->closing) osb__conn_schedule_flush(req->conn);
}

void osb_res_stream_end(osb_req_t *req) {
  osb_assert(req->streaming && !req->finished);
  req->finished = true;
  if (req->conn && !req->conn->closing && !req->head_only && !req->http10) {
    osb_msg_t *m = osb_msg_from("0\r\n\r\n", 5);
    osb__conn_queue(req->conn, m);
    osb_msg_unref(m);
  }
  osb__req_finished(req);
}

/* ---- errors without a request (garbage before a request line) ---- */

void osb__res_simple_error(osb__conn_t *c, int status, const char *code, const char *message, bool close) {
  if (c->closing) return;
  osb_buf_t body = OSB_BUF_INIT;
  osb_buf_printf(&body, "{\"error\":{\"code\":\"%s\",\"message\":", code);
  osb_buf_json_str(&body, message, strlen(message));
  osb_buf_puts(&body, ",\"request_id\":null}}");
  char hb[512];
  hw_t w = {hb, 0, sizeof(hb)};
  head_write(&w, NULL, status, "application/json", (long long)body.len, !close);
  osb_msg_t *m = osb_msg_new(0, w.len + body.len);
  memcpy(m->data, hb, w.len);
  memcpy(m->data + w.len, body.base, body.len);
  m->len = w.len + body.len;
  osb__conn_queue(c, m);
  osb_msg_unref(m);
  osb_buf_free(&body);
  if (close) {
    c->close_after_flush = true;
    c->phase = OSB__PHASE_DRAIN;
    osb__conn_set_deadline(c, uv_now(osb__srv.loop) + 5000);
  }
}

bool osb__cors_preflight(osb_req_t *req) {
  const char *o = cors_allowed(req);
  if (!o) {
    osb_res_error(req, 403, "cors_forbidden", "origin not allowed");
    return false;
  }
  const char *want = osb_req_header(req, "access-control-request-headers");
  osb_res_header(req, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS");
  osb_res_header(req, "Access-Control-Allow-Headers",
                 want && *want ? want : "Authorization, Content-Type, X-CSRF-Token, X-Request-ID, Prefer, Accept");
  osb_res_header(req, "Access-Control-Max-Age", "600");
  osb_res_send(req, 204, NULL, NULL, 0);
  return true;
}

void osb__res_head(osb_req_t *req, int status, const char *content_type) {
  req->status = status;
  if (!req->conn || req->conn->closing) return;
  size_t est = head_estimate(req, content_type);
  char *hb = osb_malloc(est);
  hw_t w = {hb, 0, est};
  head_write(&w, req, status, content_type, 0, true);
  osb_msg_t *m = osb_msg_from(hb, w.len);
  free(hb);
  osb__conn_queue(req->conn, m);
  osb_msg_unref(m);
}

void osb__res_finish_upgraded(osb_req_t *req) {
  osb_assert(!req->finished);
  req->finished = true;
  osb__req_finished(req);
}
