/* The request path of a small synchronous answer (GET /health and its
 * like) through the real connection code (server.c included through the
 * fuzz harness: no sockets, output taken from the queue as the peer would
 * read it): it allocates nothing once warm, every answer keeps its head
 * (X-Request-ID, security headers, Date), every request is counted in the
 * duration histogram under its method, route and status, and the reusable
 * response buffers never hand out one that is still queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../../fuzz/conn_harness.h"

#include "obs/metrics.h"

/* ---- counting allocations ----
 * Under ASan its allocator reports every malloc/calloc/realloc; without it,
 * glibc's own entry points are wrapped. */
static volatile long n_allocs;
static volatile bool counting;

#if defined(__SANITIZE_ADDRESS__)
void __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                               void (*free_hook)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n) {
  (void)p; (void)n;
  if (counting) n_allocs++;
}
static void on_free(const volatile void *p) { (void)p; }
static void count_init(void) { __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free); }
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
void *malloc(size_t n) {
  if (counting) n_allocs++;
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  if (counting) n_allocs++;
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  if (counting) n_allocs++;
  return __libc_realloc(p, n);
}
static void count_init(void) {}
#endif

/* ---- routes ---- */

static osb_msg_t *health_body;
static osb_msg_t *big_shared;
static char big[10000];

static void h_health(osb_req_t *r) { osb_res_msg(r, 200, "application/json", health_body); }
static void h_created(osb_req_t *r) { osb_res_send(r, 201, "application/json", "{\"ok\":true}", 11); }
static void h_big(osb_req_t *r) { osb_res_send(r, 200, "text/plain", big, sizeof(big)); }
static void h_bigmsg(osb_req_t *r) { osb_res_msg(r, 200, "text/plain", big_shared); }
static void h_json(osb_req_t *r) { osb_res_json(r, 200, json_pack("{s:i}", "n", 7)); }
static int hook_runs;
static bool hook(osb_req_t *r) {
  (void)r;
  hook_runs++;
  return true;
}

static void routes(void) {
  static const char ok[] = "{\"status\":\"pass\"}";
  health_body = osb_msg_from(ok, sizeof(ok) - 1);
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)('a' + i % 26);
  big_shared = osb_msg_from(big, 5000);
  osb_route(OSB_GET, "/health", h_health);
  osb_route(OSB_GET | OSB_POST, "/created", h_created);
  osb_route(OSB_GET, "/big", h_big);
  osb_route(OSB_GET, "/bigmsg", h_bigmsg);
  osb_route(OSB_GET, "/json", h_json);
  osb_http_add_hook(hook);
}

/* Deliver `req` as one read and take everything queued, as a peer reading
 * all of it. Pipelined requests in one read are all answered before the
 * output is taken, so their responses are queued together. */
static void deliver(osb__conn_t *c, const char *req) {
  size_t n = strlen(req);
  assert_true(n <= OSB__READ_BUF);
  osb__srv.readbuf_lent = true;
  memcpy(osb__srv.readbuf, req, n);
  uv_buf_t buf = uv_buf_init(osb__srv.readbuf, (unsigned)n);
  on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &buf);
  assert_false(c->closing);
}

static void roundtrip(osb__conn_t *c, const char *req, osb_buf_t *out) {
  deliver(c, req);
  while (osb__conn_qlen(c)) {
    osb__outq_ent_t *e = osb__outq_at(c->q, 0);
    if (out) osb_buf_append(out, e->msg->data + e->off, e->msg->len - e->off);
    c->queued_bytes -= e->msg->len - e->off;
    queue_pop(c);
  }
  osb_list_remove(&c->flush_node);
  osb_list_init(&c->flush_node);
}

static const char HEALTH[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/* The value of header `name` in the response starting at `resp` (up to its blank line). */
static bool resp_header(const char *resp, const char *name, char *val, size_t vlen) {
  const char *end = strstr(resp, "\r\n\r\n");
  size_t nl = strlen(name);
  for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
    const char *line = p + 2;
    if (strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 2;
      size_t l = (size_t)(strstr(v, "\r\n") - v);
      if (l >= vlen) return false;
      memcpy(val, v, l);
      val[l] = 0;
      return true;
    }
  }
  return false;
}

static uint64_t duration_count(const char *method, const char *route, const char *status) {
  osb_metric_t *m = osb_metric_find("http_server_request_duration_seconds");
  assert_non_null(m);
  for (osb_series_t *s = osb_metric_next_series(m, NULL); s; s = osb_metric_next_series(m, s))
    if (strcmp(osb_series_label(s, 0), method) == 0 && strcmp(osb_series_label(s, 1), route) == 0 &&
        strcmp(osb_series_label(s, 2), status) == 0)
      return (uint64_t)osb_series_value(s);
  return 0;
}

static void health_allocates_nothing_once_warm(void **state) {
  (void)state;
  osb__conn_t *c = fz_conn_new();
  osb_buf_t out = OSB_BUF_INIT;
  for (int i = 0; i < 200; i++) roundtrip(c, HEALTH, NULL);   /* freelists, arena, pool, series */
  roundtrip(c, HEALTH, &out);   /* the output buffer has its capacity */
  osb_buf_reset(&out);
  n_allocs = 0;
  counting = true;
  for (int i = 0; i < 1000; i++) {
    roundtrip(c, HEALTH, &out);
    osb_buf_reset(&out);
  }
  counting = false;
  assert_int_equal(n_allocs, 0);
  osb_buf_free(&out);
  fz_conn_end(c);
}

static void every_answer_keeps_its_head(void **state) {
  (void)state;
  osb__conn_t *c = fz_conn_new();
  char prev[64] = "", id[64], v[128];
  for (int i = 0; i < 50; i++) {
    osb_buf_t out = OSB_BUF_INIT;
    roundtrip(c, HEALTH, &out);
    assert_true(strncmp(out.base, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_true(resp_header(out.base, "X-Request-ID", id, sizeof(id)));
    assert_true(strlen(id) > 8);
    assert_string_not_equal(id, prev);   /* a fresh id per request */
    strcpy(prev, id);
    assert_true(resp_header(out.base, "Date", v, sizeof(v)));
    assert_true(resp_header(out.base, "X-Content-Type-Options", v, sizeof(v)));
    assert_string_equal(v, "nosniff");
    assert_true(resp_header(out.base, "X-Frame-Options", v, sizeof(v)));
    assert_true(resp_header(out.base, "Referrer-Policy", v, sizeof(v)));
    assert_true(resp_header(out.base, "Content-Length", v, sizeof(v)));
    assert_string_equal(v, "17");
    assert_string_equal(strstr(out.base, "\r\n\r\n") + 4, "{\"status\":\"pass\"}");
    osb_buf_free(&out);
  }
  /* a valid id sent by the client is the request's; an invalid one is replaced */
  osb_buf_t out = OSB_BUF_INIT;
  roundtrip(c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: abc-123.X_y\r\n\r\n", &out);
  assert_true(resp_header(out.base, "X-Request-ID", id, sizeof(id)));
  assert_string_equal(id, "abc-123.X_y");
  osb_buf_reset(&out);
  roundtrip(c, "GET /health HTTP/1.1\r\nHost: x\r\nx-request-id: bad id!\r\n\r\n", &out);
  assert_true(resp_header(out.base, "X-Request-ID", id, sizeof(id)));
  assert_string_not_equal(id, "bad id!");
  assert_true(strlen(id) > 8);
  osb_buf_free(&out);
  fz_conn_end(c);
}

static void every_request_is_counted_under_its_labels(void **state) {
  (void)state;
  uint64_t h0 = duration_count("GET", "/health", "200"), n0 = duration_count("GET", "unmatched", "404");
  uint64_t c0 = duration_count("POST", "/created", "201"), g0 = duration_count("GET", "/created", "201");
  uint64_t m0 = duration_count("DELETE", "/created", "405");
  int hooks0 = hook_runs;
  osb__conn_t *c = fz_conn_new();
  for (int i = 0; i < 300; i++) {
    roundtrip(c, HEALTH, NULL);
    if (i % 3 == 0) roundtrip(c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
    if (i % 5 == 0) roundtrip(c, "POST /created HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", NULL);
    if (i % 7 == 0) roundtrip(c, "GET /created HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
    if (i % 11 == 0) roundtrip(c, "DELETE /created HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
  }
  assert_int_equal(duration_count("GET", "/health", "200") - h0, 300);
  assert_int_equal(duration_count("GET", "unmatched", "404") - n0, 100);
  assert_int_equal(duration_count("POST", "/created", "201") - c0, 60);
  assert_int_equal(duration_count("GET", "/created", "201") - g0, 43);
  assert_int_equal(duration_count("DELETE", "/created", "405") - m0, 28);
  /* routed requests ran the hooks; 404 and 405 answers do not */
  assert_int_equal(hook_runs - hooks0, 300 + 60 + 43);
  fz_conn_end(c);
}

/* Bodies of every size and kind, GET and HEAD: Content-Length and the
 * bytes that follow agree. */
static void bodies_of_every_kind(void **state) {
  (void)state;
  static const struct { const char *path; size_t len; const char *start; } cases[] = {
    {"/health", 17, "{\"status\":\"pass\"}"}, {"/created", 11, "{\"ok\":true}"},
    {"/big", sizeof(big), "abcdefgh"}, {"/bigmsg", 5000, "abcdefgh"}, {"/json", 7, "{\"n\":7}"},
  };
  osb__conn_t *c = fz_conn_new();
  for (size_t i = 0; i < OSB_ARRAY_LEN(cases); i++) {
    for (int head = 0; head < 2; head++) {
      char req[128], v[32];
      snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", head ? "HEAD" : "GET", cases[i].path);
      osb_buf_t out = OSB_BUF_INIT;
      roundtrip(c, req, &out);
      assert_true(resp_header(out.base, "Content-Length", v, sizeof(v)));
      assert_int_equal(strtoul(v, NULL, 10), cases[i].len);
      const char *body = strstr(out.base, "\r\n\r\n") + 4;
      size_t blen = out.len - (size_t)(body - out.base);
      assert_int_equal(blen, head ? 0 : cases[i].len);
      if (!head) assert_memory_equal(body, cases[i].start, strlen(cases[i].start));
      if (!head && cases[i].len == sizeof(big)) assert_memory_equal(body, big, sizeof(big));
      osb_buf_free(&out);
    }
  }
  fz_conn_end(c);
}

/* More answers queued at once than the pool holds: none is overwritten
 * while queued, they leave in order, and those past the pool weigh what
 * they hold (a client that never reads piles up HTTP_SEND_BUFFER_BYTES of
 * them, not that many pool-sized buffers). */
static void queued_answers_are_never_reused(void **state) {
  (void)state;
  osb__conn_t *c = fz_conn_new();
  enum { N = 150 };
  osb_buf_t in = OSB_BUF_INIT, out = OSB_BUF_INIT;
  for (int i = 0; i < N; i++)
    osb_buf_printf(&in, "GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: r%d\r\n\r\n", i);
  deliver(c, in.base);
  assert_int_equal(osb__conn_qlen(c), N);
  int pooled = 0;
  for (uint32_t i = 0; i < osb__conn_qlen(c); i++) {
    const osb_msg_t *m = osb__outq_at(c->q, i)->msg;
    if (m->cap == OSB__RESP_BUF) pooled++;
    else assert_true(m->cap < 512);
  }
  assert_in_range(pooled, 1, OSB__RESP_POOL);
  roundtrip(c, "", &out);   /* take the queue */
  const char *p = out.base;
  for (int i = 0; i < N; i++) {
    char want[32], id[64];
    snprintf(want, sizeof(want), "r%d", i);
    p = strstr(p, "HTTP/1.1 200 OK\r\n");
    assert_non_null(p);
    assert_true(resp_header(p, "X-Request-ID", id, sizeof(id)));
    assert_string_equal(id, want);
    p = strstr(p, "\r\n\r\n") + 4;
    assert_memory_equal(p, "{\"status\":\"pass\"}", 17);
  }
  osb_buf_free(&in);
  osb_buf_free(&out);
  fz_conn_end(c);
}

int main(void) {
  (void)fz_splits;
  (void)fz_feed_split;
  (void)fz_deliver;
  count_init();
  fz_init_server(routes);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(health_allocates_nothing_once_warm),
    cmocka_unit_test(every_answer_keeps_its_head),
    cmocka_unit_test(every_request_is_counted_under_its_labels),
    cmocka_unit_test(bodies_of_every_kind),
    cmocka_unit_test(queued_answers_are_never_reused),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  osb_http_server_stop();
  uv_run(&fz_loop, UV_RUN_NOWAIT);
  osb_http_server_dispose();
  osb_msg_unref(health_body);
  osb_msg_unref(big_shared);
  osb_metrics_reset();
  return rc;
}
