/* test_seams.c: what work that outlives a request builds on: the dispose
 * and detach callbacks, a stream's back-pressure (cap, OSB_ESLOW, drain,
 * OSB_ECLOSED), and the one error-code → HTTP mapping. The server runs on
 * a real loop with a libuv client in the same process; every test ends with
 * the loop closed cleanly by the owners (no walk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <uv.h>

#include "core/config.h"
#include "http/internal.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"

static uv_loop_t loop;
static osb_config_t cfg;
static int port;

/* ---- a client: send one buffer, collect the answer ---- */

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  const char *send;
  const char *until;     /* stop reading when the answer contains this */
  bool close_after_send;
  osb_buf_t got;
  bool closed;
} client_t;

static void client_closed(uv_handle_t *h) { ((client_t *)h->data)->closed = true; }
static void client_close(client_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, client_closed);
}
static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) { *b = uv_buf_init(malloc(s), (unsigned)s); }
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = s->data;
  if (n > 0) osb_buf_append(&c->got, b->base, (size_t)n);
  free(b->base);
  if (n < 0 || (c->until && c->got.base && strstr(c->got.base, c->until))) client_close(c);
}
static void on_written(uv_write_t *w, int status) {
  client_t *c = w->data;
  if (c->close_after_send) client_close(c);
  else uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}
static void on_connect(uv_connect_t *r, int status) {
  client_t *c = r->data;
  assert_int_equal(status, 0);
  uv_buf_t b = uv_buf_init((char *)c->send, (unsigned)strlen(c->send));
  c->wreq.data = c;
  uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}
static void client_start(client_t *c) {
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c->creq.data = c;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, on_connect);
}

static bool deadline_hit;
static void on_deadline(uv_timer_t *t) { deadline_hit = true; }
static bool run_until(bool (*pred)(void *), void *arg, uint64_t ms) {
  uv_timer_t t;
  deadline_hit = false;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, on_deadline, ms, 0);
  while (!pred(arg) && !deadline_hit) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  return pred(arg);
}
static bool client_done(void *arg) { return ((client_t *)arg)->closed && osb_http_open_connections() == 0; }
static bool nothing_inflight(void *arg) { return osb_http_inflight() == 0; }
static int disposed;
static bool two_disposed(void *arg) { return disposed == 2; }

/* ---- handlers ---- */

static int detached, drained;
static osb_req_t *held;
static int writes_ok, write_slow;

static void count_dispose(osb_req_t *r, void *ud) {
  assert_ptr_equal(ud, &disposed);
  disposed++;
}

static void h_sync(osb_req_t *r) {
  osb_req_on_dispose(r, count_dispose, &disposed);
  osb_res_send(r, 200, "text/plain", "ok", 2);
}

/* The handler keeps the request; the client leaves; the detach callback
 * finishes it (the answer is discarded), then dispose runs. */
static void finish_on_detach(osb_req_t *r, void *ud) {
  detached++;
  assert_true(osb_req_detached(r));
  assert_int_equal(disposed, 0);
  held = NULL;
  osb_res_error_code(r, OSB_EUNAVAIL, "client went away");
}
static void h_hold(osb_req_t *r) {
  held = r;
  osb_req_on_dispose(r, count_dispose, &disposed);
  osb_req_on_detach(r, finish_on_detach, NULL);
}

/* A stream with a 64 KiB cap: writes 16 KiB chunks until the cap says
 * stop, then goes on from the drain callback until 24 chunks are out. */
#define CHUNK (16 * 1024)
#define NCHUNKS 24
static char chunk[CHUNK];
static int chunks_out;
static void stream_more(osb_req_t *r, void *ud);
static void stream_pump(osb_req_t *r) {
  while (chunks_out < NCHUNKS) {
    int rc = osb_res_stream_write(r, chunk, CHUNK);
    if (rc == OSB_ESLOW) {
      write_slow++;
      osb_res_stream_on_drain(r, stream_more, NULL);
      return;
    }
    assert_int_equal(rc, 0);
    writes_ok++;
    chunks_out++;
  }
  osb_res_stream_write(r, "END", 3);
  osb_res_stream_end(r);
}
static void stream_more(osb_req_t *r, void *ud) {
  drained++;
  stream_pump(r);
}
static void h_stream(osb_req_t *r) {
  osb_res_stream_start(r, 200, "application/octet-stream");
  osb_res_stream_set_cap(r, 64 * 1024);
  stream_pump(r);
  /* one handler call queued at most the cap (the first chunk always goes) */
  assert_true(writes_ok >= 3 && writes_ok <= 4);
  assert_int_equal(write_slow, 1);
}

/* A stream whose reader leaves: the detach callback learns it, writes
 * report OSB_ECLOSED, the handler ends the stream. */
static void stream_detached(osb_req_t *r, void *ud) {
  detached++;
  assert_int_equal(osb_res_stream_write(r, "x", 1), OSB_ECLOSED);
  held = NULL;
  osb_res_stream_end(r);
}
static void h_stream_hold(osb_req_t *r) {
  osb_res_stream_start(r, 200, "text/event-stream");
  assert_int_equal(osb_res_stream_write(r, "data: 1\n\n", 9), 0);
  osb_req_on_detach(r, stream_detached, NULL);
  osb_req_on_dispose(r, count_dispose, &disposed);
  held = r;
}

static void h_err(osb_req_t *r) {
  const char *e = osb_req_query(r, "e");
  osb_res_error_code(r, e ? atoi(e) : 0, "mapped");
}

/* ---- tests ---- */

static void dispose_runs_once_when_a_finished_request_is_freed(void **state) {
  client_t c = {.send = "GET /sync HTTP/1.1\r\nHost: a\r\n\r\nGET /sync HTTP/1.1\r\nHost: a\r\n\r\n",
                .until = "ok\x01"};   /* never matches: read until the test closes */
  client_start(&c);
  assert_true(run_until(two_disposed, NULL, 3000));
  client_close(&c);
  assert_true(run_until(client_done, &c, 3000));
  assert_int_equal(disposed, 2);
  assert_int_equal(detached, 0);
  osb_buf_free(&c.got);
}

static void detach_runs_when_the_client_leaves_a_held_request(void **state) {
  client_t c = {.send = "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n", .close_after_send = true};
  client_start(&c);
  assert_true(run_until(client_done, &c, 3000));
  assert_true(run_until(nothing_inflight, NULL, 3000));
  assert_int_equal(detached, 1);
  assert_int_equal(disposed, 1);   /* after the detach callback finished it */
  assert_null(held);
  osb_buf_free(&c.got);
}

static void a_stream_past_its_cap_reports_eslow_and_resumes_on_drain(void **state) {
  client_t c = {.send = "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n", .until = "END\r\n0\r\n\r\n"};
  client_start(&c);
  assert_true(run_until(client_done, &c, 5000));
  assert_int_equal(chunks_out, NCHUNKS);
  assert_true(drained >= 1);
  assert_int_equal(write_slow, drained);
  /* every chunk arrived: 24 x 16 KiB of data plus the chunk framing */
  assert_true(c.got.len > (size_t)NCHUNKS * CHUNK);
  assert_non_null(strstr(c.got.base, "END\r\n0\r\n\r\n"));
  osb_buf_free(&c.got);
}

static void a_streams_reader_leaving_is_reported_to_the_writer(void **state) {
  client_t c = {.send = "GET /sse HTTP/1.1\r\nHost: a\r\n\r\n", .until = "data: 1"};
  client_start(&c);
  assert_true(run_until(client_done, &c, 3000));
  assert_true(run_until(nothing_inflight, NULL, 3000));
  assert_int_equal(detached, 1);
  assert_int_equal(disposed, 1);
  assert_null(held);
  osb_buf_free(&c.got);
}

static void one_vocabulary_for_error_codes(void **state) {
  static const struct { int err; int status; const char *code; } want[] = {
    {OSB_EINVAL, 400, "bad_request"},   {OSB_EPROTO, 400, "bad_request"},
    {OSB_EDENIED, 403, "forbidden"},    {OSB_ENOTFOUND, 404, "not_found"},
    {OSB_ECONFLICT, 409, "conflict"},   {OSB_ETOOBIG, 413, "too_large"},
    {OSB_EUNAVAIL, 503, "unavailable"}, {OSB_ETIMEOUT, 503, "unavailable"},
    {OSB_ESLOW, 503, "unavailable"},    {UV_ETIMEDOUT, 503, "unavailable"},
    {UV_ECONNREFUSED, 503, "unavailable"}, {UV_EAI_NONAME, 503, "unavailable"},
    {UV_ENOENT, 404, "not_found"},      {UV_EACCES, 403, "forbidden"},
    {OSB_EDB, 500, "internal"},         {OSB_ECONFIG, 500, "internal"},
    {UV_EIO, 500, "internal"},          {0, 500, "internal"},
  };
  for (size_t i = 0; i < OSB_ARRAY_LEN(want); i++) {
    const char *code = NULL;
    assert_int_equal(osb_http_error_status(want[i].err, &code), want[i].status);
    assert_string_equal(code, want[i].code);
  }
  /* on the wire: status, code, and Retry-After on 503 */
  char req[128];
  snprintf(req, sizeof(req), "GET /err?e=%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", OSB_EUNAVAIL);
  client_t c = {.send = req};
  client_start(&c);
  assert_true(run_until(client_done, &c, 3000));
  assert_non_null(strstr(c.got.base, "HTTP/1.1 503"));
  assert_non_null(strstr(c.got.base, "Retry-After: 1\r\n"));
  assert_non_null(strstr(c.got.base, "\"code\":\"unavailable\",\"message\":\"mapped\""));
  osb_buf_free(&c.got);
}

static int setup(void **state) {
  setenv("PORT", "0", 1);
  setenv("HOST", "127.0.0.1", 1);
  setenv("OSB_ENV_FILE", "/nonexistent/.env", 1);
  setenv("LOG_LEVEL", "error", 1);
  char err[256], warn[256];
  assert_int_equal(osb_config_load(&cfg, err, sizeof(err), warn, sizeof(warn)), 0);
  osb_log_init(cfg.log_level, cfg.log_format);
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_route(OSB_GET, "/sync", h_sync);
  osb_route(OSB_GET, "/hold", h_hold);
  osb_route(OSB_GET, "/stream", h_stream);
  osb_route(OSB_GET, "/sse", h_stream_hold);
  osb_route(OSB_GET, "/err", h_err);
  assert_int_equal(osb_http_server_start(&loop), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  assert_int_equal(uv_tcp_getsockname(&osb__srv.listener, (struct sockaddr *)&ss, &len), 0);
  port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  memset(chunk, 'x', sizeof(chunk));
  return 0;
}

static int reset(void **state) {
  disposed = detached = drained = writes_ok = write_slow = chunks_out = 0;
  held = NULL;
  return 0;
}

/* The owners close their handles: no uv_walk here, so a handle left open
 * by the server or core fails uv_loop_close. */
static int teardown(void **state) {
  osb_http_server_shutdown();
  osb_http_server_stop();
  osb_core_close();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_http_server_dispose();
  osb_metrics_reset();
  osb_health_reset();
  osb_config_dispose(&cfg);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(dispose_runs_once_when_a_finished_request_is_freed, reset),
    cmocka_unit_test_setup(detach_runs_when_the_client_leaves_a_held_request, reset),
    cmocka_unit_test_setup(a_stream_past_its_cap_reports_eslow_and_resumes_on_drain, reset),
    cmocka_unit_test_setup(a_streams_reader_leaving_is_reported_to_the_writer, reset),
    cmocka_unit_test_setup(one_vocabulary_for_error_codes, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
