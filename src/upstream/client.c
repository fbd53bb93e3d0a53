/* client.c: libcurl's multi-socket API on the event loop.
 *
 * curl's documented libuv integration (docs/examples/multi-uv.c): curl
 * tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * wake it (CURLMOPT_TIMERFUNCTION); we keep one uv_poll_t per socket and
 * one uv_timer_t, and feed readiness back with curl_multi_socket_action().
 * Finished transfers are collected with curl_multi_info_read() after each
 * action, outside curl's callbacks, so completion callbacks may start or
 * cancel other calls.
 *
 * Ownership: each socket context (uv_poll_t) is owned by the module and
 * freed in its close callback; curl's CURL_POLL_REMOVE comes before curl
 * closes the socket, and the poll is stopped at once (libuv forbids closing
 * a polled fd). A stream's gap timeout is one sweep timer over the running
 * streams (not a timer per call).
 *
 * Names resolve through curl's threaded resolver (AsynchDNS), so the loop
 * never blocks on DNS; init warns when the library lacks it. */
#include "upstream/internal.h"

#include <stdlib.h>
#include <strings.h>

#include "core/config.h"
#include "obs/log.h"

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  osb_list_t node;      /* in socks while curl uses the socket */
} sock_ctx_t;
static osb_list_t socks = {&socks, &socks};

static uv_loop_t *loop;
static CURLM *multi;
static uv_timer_t curl_timer, sweep_timer;
static bool timers_open, closing, global_done;
static size_t open_handles;     /* polls + timers not yet through their close callback */
static size_t streams_running;
static osb_list_t streams = {&streams, &streams};   /* running stream calls (their c->deferred node) */

static void check_multi_info(void);

/* ---- socket and timer callbacks ---- */

static void on_handle_closed(uv_handle_t *h) {
  open_handles--;
  if (h->type == UV_POLL) free(osb_container_of((uv_poll_t *)h, sock_ctx_t, poll));
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_ctx_t *s = osb_container_of(p, sock_ctx_t, poll);
  if (!multi) return;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  int running;
  curl_multi_socket_action(multi, s->fd, flags, &running);
  check_multi_info();
}

static int socket_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp) {
  sock_ctx_t *s = socketp;
  if (action == CURL_POLL_REMOVE) {
    if (s) {
      osb_list_remove(&s->node);
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_handle_closed);
      curl_multi_assign(multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = osb_calloc(1, sizeof(*s));
    s->fd = fd;
    if (uv_poll_init_socket(loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    open_handles++;
    osb_list_insert_tail(&socks, &s->node);
    curl_multi_assign(multi, fd, s);
  }
  int ev = 0;
  if (action == CURL_POLL_IN || action == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_curl_timer(uv_timer_t *t) {
  if (!multi) return;
  int running;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info();
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp) {
  if (!timers_open) return 0;
  if (timeout_ms < 0) uv_timer_stop(&curl_timer);
  else uv_timer_start(&curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- per-transfer callbacks (inside curl) ---- */

static void set_reason(osb_upstream_call_t *c, const char *fmt, ...) OSB_PRINTF(2, 3);
static void set_reason(osb_upstream_call_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->reason_buf, sizeof(c->reason_buf), fmt, ap);
  va_end(ap);
  c->reason = c->reason_buf;
}

/* The head is complete once the first body byte arrives (or the transfer
 * ends): report it to a stream's on_head once. Returns false to abort. */
static bool deliver_head(osb_upstream_call_t *c) {
  if (c->head_seen) return true;
  c->head_seen = true;
  long code = 0;
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
  c->status = (int)code;
  if (!c->stream || !c->cbs->on_head) return true;
  c->in_cb = true;
  int rc = c->cbs->on_head(c->ud, c->status, c->content_type);
  c->in_cb = false;
  if (rc != 0 || c->cancelled) {
    if (!c->cancelled) {
      c->err = OSB_EPROTO;
      c->reason = "aborted";
    }
    return false;
  }
  return true;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud) {
  osb_upstream_call_t *c = ud;
  size_t n = size * nmemb;
  uint64_t now = osb_now_ms();
  if (!c->first_byte_ms) c->first_byte_ms = now > c->start_ms ? now - c->start_ms : 1;
  c->last_io_ms = now;
  if (!deliver_head(c)) return 0;
  if (c->stream) {
    if (c->resp.len + n > c->max_bytes) goto too_big;   /* total bytes of the stream */
    c->resp.len += n;                                   /* counted, not kept */
    c->in_cb = true;
    int rc = c->cbs->on_data ? c->cbs->on_data(c->ud, p, n) : 0;
    c->in_cb = false;
    if (rc != 0 || c->cancelled) {
      if (!c->cancelled) {
        c->err = OSB_EPROTO;
        c->reason = "aborted";
      }
      return 0;
    }
    return n;
  }
  if (osb_buf_try_reserve(&c->resp, n + 1, c->max_bytes + 1) != 0) goto too_big;
  osb_buf_append(&c->resp, p, n);
  return n;
too_big:
  c->err = OSB_ETOOBIG;
  set_reason(c, "response larger than %zu bytes", c->max_bytes);
  return 0;
}

static size_t header_cb(char *p, size_t size, size_t nmemb, void *ud) {
  osb_upstream_call_t *c = ud;
  size_t n = size * nmemb;
  c->last_io_ms = osb_now_ms();
  /* A new status line (after 1xx or a redirect we do not follow) starts over. */
  if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
    free(c->content_type);
    c->content_type = NULL;
    c->retry_after_s = 0;
    return n;
  }
  const char *colon = memchr(p, ':', n);
  if (!colon) return n;
  size_t klen = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + n;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
  if (osb_strcaseeq_n(p, klen, "content-type")) {
    free(c->content_type);
    c->content_type = osb_strndup(v, (size_t)(end - v));
  } else if (osb_strcaseeq_n(p, klen, "retry-after")) {
    unsigned s = 0;
    const char *q = v;
    for (; q < end && *q >= '0' && *q <= '9' && s < 86400; q++) s = s * 10 + (unsigned)(*q - '0');
    if (q == end && q > v) c->retry_after_s = s;
  }
  return n;
}

/* ---- finishing ---- */

static void finish(osb_upstream_call_t *c, CURLcode res) {
  if (c->stream) {
    osb_list_remove(&c->deferred);
    streams_running--;
  }
  if (res == CURLE_OK) {
    if (!c->head_seen) deliver_head(c);    /* empty body */
    if (c->cancelled || c->err) goto done;
    long code = 0;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &code);
    c->status = (int)code;
    c->err = 0;
  } else if (!c->err) {
    switch (res) {
      case CURLE_OPERATION_TIMEDOUT:
        c->err = OSB_ETIMEOUT;
        set_reason(c, "no answer within %d ms", c->timeout_ms);
        break;
      case CURLE_FILESIZE_EXCEEDED:
        c->err = OSB_ETOOBIG;
        set_reason(c, "response larger than %zu bytes", c->max_bytes);
        break;
      default:
        c->err = OSB_EPROTO;
        set_reason(c, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(res));
        break;
    }
  }
done:
  if (c->first_byte_ms == 0 && c->head_seen) {
    curl_off_t t = 0;
    curl_easy_getinfo(c->easy, CURLINFO_STARTTRANSFER_TIME_T, &t);
    c->first_byte_ms = (uint64_t)(t / 1000) + 1;
  }
  curl_multi_remove_handle(multi, c->easy);
  curl_easy_cleanup(c->easy);
  c->easy = NULL;
  osb__call_finished(c);
}

static void check_multi_info(void) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    osb_upstream_call_t *c = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
    finish(c, msg->data.result);
  }
}

/* Streams: fail those silent for longer than their gap timeout. */
static void on_sweep(uv_timer_t *t) {
  uint64_t now = osb_now_ms();
  /* finish() runs on_done, which may cancel other streams: rescan after each. */
  for (bool again = true; again;) {
    again = false;
    osb_list_t *pos;
    for (pos = streams.next; pos != &streams; pos = pos->next) {
      osb_upstream_call_t *c = osb_container_of(pos, osb_upstream_call_t, deferred);
      if (now - c->last_io_ms < (uint64_t)c->timeout_ms) continue;
      c->err = OSB_ETIMEOUT;
      set_reason(c, "no data for %d ms", c->timeout_ms);
      finish(c, CURLE_OPERATION_TIMEDOUT);
      again = true;
      break;
    }
  }
  if (streams_running == 0) uv_timer_stop(&sweep_timer);
}

/* ---- the module's side ---- */

int osb__client_init(uv_loop_t *l) {
  if (multi) return 0;
  loop = l;
  global_done = false;
  CURLcode gc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (gc != CURLE_OK) {
    osb_log(OSB_LOG_ERROR, "upstream", "curl_global_init: %s", curl_easy_strerror(gc));
    return OSB_EUNAVAIL;
  }
  curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);
  if (!(vi->features & CURL_VERSION_ASYNCHDNS))
    osb_log(OSB_LOG_WARN, "upstream", "libcurl %s resolves names synchronously (no AsynchDNS): "
            "use IP addresses in upstream URLs", vi->version);
  osb_log(OSB_LOG_DEBUG, "upstream", "libcurl %s, %s, http2 %s, async dns %s", vi->version,
          vi->ssl_version ? vi->ssl_version : "no TLS", (vi->features & CURL_VERSION_HTTP2) ? "yes" : "no",
          (vi->features & CURL_VERSION_ASYNCHDNS) ? "yes" : "no");
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 512L);   /* idle connections kept for reuse */
  uv_timer_init(loop, &curl_timer);
  uv_timer_init(loop, &sweep_timer);
  open_handles += 2;
  timers_open = true;
  closing = false;
  return 0;
}

int osb__client_start(osb_upstream_call_t *c) {
  if (!multi || closing) return OSB_EUNAVAIL;
  CURL *e = curl_easy_init();
  if (!e) return OSB_EUNAVAIL;
  c->easy = e;
  c->errbuf[0] = 0;
  curl_easy_setopt(e, CURLOPT_URL, c->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)c);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  if (strncasecmp(c->url, "https://", 8) == 0) curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "osbackend/" OSB_VERSION);
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
  if (!c->stream) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
  if (c->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
  if (c->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
  }
  if (strcmp(c->method, "GET") == 0) {
    if (!c->body) curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(c->method, "POST") != 0 || !c->body) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->method);
  }
  c->start_ms = c->last_io_ms = osb_now_ms();
  CURLMcode mc = curl_multi_add_handle(multi, e);
  if (mc != CURLM_OK) {
    osb_log(OSB_LOG_ERROR, "upstream", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    curl_easy_cleanup(e);
    c->easy = NULL;
    return OSB_EUNAVAIL;
  }
  if (c->stream) {
    osb_list_insert_tail(&streams, &c->deferred);
    if (streams_running++ == 0) {
      uint64_t every = (uint64_t)c->timeout_ms / 10;
      if (every < 10) every = 10;
      if (every > 250) every = 250;
      uv_timer_start(&sweep_timer, on_sweep, every, every);
    }
  }
  return 0;
}

void osb__client_abort(osb_upstream_call_t *c) {
  if (!c->easy) return;
  if (c->stream) {
    osb_list_remove(&c->deferred);
    streams_running--;
  }
  curl_multi_remove_handle(multi, c->easy);
  curl_easy_cleanup(c->easy);
  c->easy = NULL;
}

void osb__client_close(void) {
  if (!multi || closing) return;
  closing = true;
  /* Every call was aborted by the caller: cleaning up now closes the cached
   * connections while the loop still runs (curl reports each socket with
   * CURL_POLL_REMOVE); contexts it did not report are closed here. */
  curl_multi_cleanup(multi);
  multi = NULL;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &socks) {
    sock_ctx_t *s = osb_container_of(pos, sock_ctx_t, node);
    osb_list_remove(&s->node);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_handle_closed);
  }
  if (timers_open) {
    timers_open = false;
    uv_timer_stop(&curl_timer);
    uv_timer_stop(&sweep_timer);
    uv_close((uv_handle_t *)&curl_timer, on_handle_closed);
    uv_close((uv_handle_t *)&sweep_timer, on_handle_closed);
  }
}

void osb__client_dispose(void) {
  if (multi) osb__client_close();   /* dispose without close: nothing ran */
  if (!global_done && loop) {
    curl_global_cleanup();
    global_done = true;
  }
}

size_t osb__client_handles(void) { return open_handles; }
