/* The server on a real loop with a libuv client in the same process
 * (libuv's TEST_IMPL shape): callbacks are counted, the loop runs to
 * completion and uv_loop_close() must succeed. */
#include <errno.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
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

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t creq;
  const char *chunks[4];
  int nchunks, sent;
  osb_buf_t got;
  int expect_responses;
  int connect_cb_called, close_cb_called, read_eof;
  bool close_early;     /* close right after the first chunk */
} client_t;

static void client_close_cb(uv_handle_t *h) {
  client_t *c = h->data;
  c->close_cb_called++;
}

static int count_responses(const osb_buf_t *b) {
  int n = 0;
  for (const char *p = b->base; p && (p = strstr(p, "HTTP/1.1 ")); p++) n++;
  return n;
}

static void stop_when_done(client_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, client_close_cb);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) { *b = uv_buf_init(malloc(s), (unsigned)s); }

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client_t *c = s->data;
  if (n > 0) osb_buf_append(&c->got, b->base, (size_t)n);
  free(b->base);
  if (n == UV_EOF) c->read_eof++;
  if (n < 0 || (c->expect_responses && count_responses(&c->got) >= c->expect_responses &&
                c->got.base[c->got.len - 1] == '}'))
    stop_when_done(c);
}

static void send_next(client_t *c);

static void on_write(uv_write_t *w, int status) {
  client_t *c = w->data;
  bool last = c->sent == c->nchunks;
  free(w);
  assert_int_equal(status, 0);
  if (last && c->close_early) stop_when_done(c);
}

static void on_timer(uv_timer_t *t) {
  client_t *c = t->data;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  send_next(c);
}

/* Chunks go out 20 ms apart, so each one is a separate read on the server. */
static void send_next(client_t *c) {
  if (c->sent >= c->nchunks) return;
  uv_buf_t b = uv_buf_init((char *)c->chunks[c->sent], (unsigned)strlen(c->chunks[c->sent]));
  c->sent++;
  uv_write_t *w = malloc(sizeof(*w));
  w->data = c;
  uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (c->sent < c->nchunks) {
    uv_timer_t *t = malloc(sizeof(*t));
    uv_timer_init(&loop, t);
    t->data = c;
    uv_timer_start(t, on_timer, 20, 0);
  }
}

static void on_connect(uv_connect_t *r, int status) {
  client_t *c = r->data;
  assert_int_equal(status, 0);
  c->connect_cb_called++;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  send_next(c);
}

static void client_start(client_t *c) {
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, on_connect);
}

static void health(osb_req_t *r) { osb_res_send(r, 200, "application/json", "{}", 2); }

/* A handler that answers later, from a timer: the async rule. */
static void later_cb(uv_timer_t *t) {
  osb_req_t *r = t->data;
  uv_close((uv_handle_t *)t, (uv_close_cb)free);
  osb_res_json(r, 200, json_pack("{s:b}", "detached", osb_req_detached(r)));
}
static void later(osb_req_t *r) {
  uv_timer_t *t = malloc(sizeof(*t));
  uv_timer_init(&loop, t);
  t->data = r;
  uv_timer_start(t, later_cb, 30, 0);
}


/* ---- helpers for the tests below ---- */

/* A request held by /hold until the test finishes it. */
static osb_req_t *held;
static void hold(osb_req_t *r) { held = r; }

/* The first WebSocket connection on the server, or NULL. */
static void first_ws_cb(osb__conn_t *c, void *ud) {
  osb_ws_t **first = ud;
  if (!*first && c->mode == OSB__CONN_WS && !c->closing) *first = (osb_ws_t *)c;
}
static osb_ws_t *first_ws(void) {
  osb_ws_t *first = NULL;
  osb__conn_foreach(first_ws_cb, &first);
  return first;
}

/* Queue a frame on every open WebSocket; counts the ones that took it. */
static osb_msg_t *batch_frame;
static void batch_send_cb(osb__conn_t *c, void *ud) {
  int *queued = ud;
  if (c->mode == OSB__CONN_WS && !c->closing && osb_ws_send((osb_ws_t *)c, batch_frame) == 0) (*queued)++;
}

/* A REST handler that fans out to a WebSocket (the realtime hub's publish):
 * a frame over the send buffer limit makes osb_ws_send write at once. */
static void poke(osb_req_t *r) {
  osb_ws_t *ws = first_ws();
  size_t n = (size_t)osb_cfg->ws_send_buffer_bytes + 1000;
  char *big = calloc(1, n);
  osb_msg_t *f = osb_ws_frame_new(OSB_WS_BINARY, big, n);
  free(big);
  if (ws) osb_ws_send(ws, f);
  osb_msg_unref(f);
  osb_res_send(r, 200, "application/json", "{}", 2);
}

static void stream(osb_req_t *r) {
  osb_res_stream_start(r, 200, "text/plain");
  osb_res_stream_write(r, "hello", 5);
  osb_res_stream_end(r);
}

static bool deadline_hit;
static void on_deadline(uv_timer_t *t) { deadline_hit = true; }

/* Run the loop until pred() or `ms` passed; returns pred(). */
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

static bool has_responses(void *arg) {
  client_t *c = arg;
  return count_responses(&c->got) >= c->expect_responses && c->got.len && c->got.base[c->got.len - 1] == '}';
}
static bool held_set(void *arg) { return held != NULL; }
static bool ws_welcomed(void *arg) {
  client_t *c = arg;
  return first_ws() && c->got.base && strstr(c->got.base, "welcome");
}
static bool all_closed(void *arg) {
  client_t *a = arg;
  return a->close_cb_called && osb_http_open_connections() == 0;
}

static const char ws_handshake[] =
  "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* A handler run from the flusher (a pipelined request) that makes another
 * connection, next in the same flush round, write at once must not leave
 * the round looping forever on that connection. */
static void handler_in_flush_round_flushes_another_conn(void **state) {
  alarm(20);  /* the defect was an endless loop: fail instead of hanging */
  int saved_limit = cfg.ws_send_buffer_bytes;
  cfg.ws_send_buffer_bytes = 1024;
  client_t x = {0}, a = {0};
  x.chunks[0] = ws_handshake;
  x.nchunks = 1;
  client_start(&x);
  assert_true(run_until(ws_welcomed, &x, 3000));

  held = NULL;
  a.chunks[0] = "GET /hold HTTP/1.1\r\nHost: a\r\n\r\nGET /poke HTTP/1.1\r\nHost: a\r\n\r\n";
  a.nchunks = 1;
  a.expect_responses = 2;
  client_start(&a);
  assert_true(run_until(held_set, NULL, 3000));

  /* Same loop iteration: A finishes (flush scheduled first), then X gets a
   * frame (flush scheduled second). The flush round then runs /poke on A. */
  osb_req_t *r = held;
  held = NULL;
  osb_res_send(r, 200, "application/json", "{}", 2);
  osb_msg_t *f = osb_ws_frame_new(OSB_WS_TEXT, "x", 1);
  osb_ws_send(first_ws(), f);
  osb_msg_unref(f);

  assert_true(run_until(has_responses, &a, 3000));
  assert_int_equal(count_responses(&a.got), 2);
  stop_when_done(&a);
  stop_when_done(&x);
  assert_true(run_until(all_closed, &x, 3000));
  assert_true(run_until(all_closed, &a, 3000));
  cfg.ws_send_buffer_bytes = saved_limit;
  osb_buf_free(&a.got);
  osb_buf_free(&x.got);
  alarm(0);
}

/* /fan: the realtime publish's shape: queue a frame to the first WebSocket
 * (the fan-out), then answer. Both wait for the before-sleep flush, and
 * the answer is flushed first: the HTTP list comes before the WebSocket one. */
static bool fan_answer_first;
static void fan(osb_req_t *r) {
  osb__conn_t *hc = r->conn;
  osb__conn_t *wc = (osb__conn_t *)first_ws();
  osb_msg_t *f = osb_ws_frame_new(OSB_WS_TEXT, "fan-frame", 9);
  osb_ws_send((osb_ws_t *)wc, f);
  osb_msg_unref(f);
  osb_res_send(r, 200, "application/json", "{}", 2);
  fan_answer_first = osb__srv.pending_http.next == &hc->flush_node &&
                     osb__srv.pending_flush.next == &wc->flush_node;
}

static const char *want_text;
static bool got_text(void *arg) {
  client_t *c = arg;
  return c->got.base && memmem(c->got.base, c->got.len, want_text, strlen(want_text)) != NULL;
}
static bool ws_ring_freed(void *arg) {
  osb__conn_t *c = (osb__conn_t *)first_ws();
  return c && c->q == NULL;
}

static void publish_answer_flushed_before_fanout(void **state) {
  client_t x = {0}, a = {0};
  x.chunks[0] = ws_handshake;
  x.nchunks = 1;
  client_start(&x);
  assert_true(run_until(ws_welcomed, &x, 3000));
  osb__conn_t *wc = (osb__conn_t *)first_ws();
  assert_false(wc->has_http);   /* the HTTP state went with the upgrade */
  assert_null(wc->rx);          /* nothing incomplete: no receive state */

  fan_answer_first = false;
  a.chunks[0] = "GET /fan HTTP/1.1\r\nHost: a\r\n\r\n";
  a.nchunks = 1;
  a.expect_responses = 1;
  client_start(&a);
  assert_true(run_until(has_responses, &a, 3000));
  assert_true(fan_answer_first);
  want_text = "fan-frame";
  assert_true(run_until(got_text, &x, 3000));   /* and the fan-out is not lost */

  /* Idle now: the sweep gives the output ring back, and the next frame
   * gets a new one. */
  assert_true(run_until(ws_ring_freed, NULL, 3000));
  osb_msg_t *f = osb_ws_frame_new(OSB_WS_TEXT, "after-sweep", 11);
  assert_int_equal(osb_ws_send(first_ws(), f), 0);
  osb_msg_unref(f);
  want_text = "after-sweep";
  assert_true(run_until(got_text, &x, 3000));

  stop_when_done(&a);
  stop_when_done(&x);
  assert_true(run_until(all_closed, &x, 3000));
  assert_true(run_until(all_closed, &a, 3000));
  osb_buf_free(&a.got);
  osb_buf_free(&x.got);
}

/* More WebSocket connections with output than one round writes (256): the
 * before-sleep phase takes several rounds, and every connection still gets
 * its frame, once. */
#define NBATCH 300
static client_t batch[NBATCH];
static bool batch_pred_all(void *arg) {
  const char *want = arg;
  for (int i = 0; i < NBATCH; i++)
    if (!batch[i].got.base || !memmem(batch[i].got.base, batch[i].got.len, want, strlen(want))) return false;
  return true;
}
static bool batch_closed(void *arg) {
  for (int i = 0; i < NBATCH; i++)
    if (!batch[i].close_cb_called) return false;
  return osb_http_open_connections() == 0;
}
static int count_in(const osb_buf_t *b, const char *needle) {
  int n = 0;
  size_t l = strlen(needle);
  for (const char *p = b->base, *e = b->base + b->len; p && (p = memmem(p, (size_t)(e - p), needle, l)); p += l) n++;
  return n;
}

/* The per-socket budget (docs/benchmarks.md, RSS per idle WebSocket): an
 * idle WebSocket is libuv's handle, these fields and the handler's user
 * area, in one allocation. */
static void idle_websocket_layout(void **state) {
  printf("osb__conn_t %zu bytes (uv_tcp_t %zu), user area at %zu; HTTP state %zu\n", sizeof(osb__conn_t),
         sizeof(uv_tcp_t), offsetof(osb__conn_t, user), sizeof(osb__http_t));
  assert_true(sizeof(osb__conn_t) - sizeof(uv_tcp_t) <= 120);
  assert_int_equal(offsetof(osb__conn_t, user) % 8, 0);
  /* With the realtime client's 88-byte user area (its own guard is in
   * tests/unit/realtime/test_hub.c) the block is at most 456 bytes: a
   * 464-byte malloc chunk (glibc: usable = chunk - 8). */
  size_t block = offsetof(osb__conn_t, user) + 88;
  void *p = malloc(block);
  printf("idle WebSocket block %zu bytes, usable %zu\n", block, malloc_usable_size(p));
  assert_true(block <= 456);
  assert_true(malloc_usable_size(p) <= 456);
  free(p);
}

static void ws_flush_rounds_are_capped_and_lose_nothing(void **state) {
  memset(batch, 0, sizeof(batch));
  for (int i = 0; i < NBATCH; i++) {
    batch[i].chunks[0] = ws_handshake;
    batch[i].nchunks = 1;
    client_start(&batch[i]);
  }
  assert_true(run_until(batch_pred_all, "welcome", 10000));
  batch_frame = osb_ws_frame_new(OSB_WS_TEXT, "batch-frame", 11);
  int queued = 0;
  osb__conn_foreach(batch_send_cb, &queued);
  osb_msg_unref(batch_frame);
  assert_int_equal(queued, NBATCH);
  /* 256 in the first round, 44 in the second, then a quiet round */
  assert_true(osb_core_run_steps() >= 3);
  assert_true(osb_list_empty(&osb__srv.pending_flush));
  assert_true(run_until(batch_pred_all, "batch-frame", 10000));
  for (int i = 0; i < NBATCH; i++) assert_int_equal(count_in(&batch[i].got, "batch-frame"), 1);
  for (int i = 0; i < NBATCH; i++) stop_when_done(&batch[i]);
  assert_true(run_until(batch_closed, NULL, 10000));
  for (int i = 0; i < NBATCH; i++) osb_buf_free(&batch[i].got);
}

/* Bytes that arrive just after an asynchronous request finished, and push
 * the pipelined backlog over the read limit, must not leave the connection
 * with reading stopped once the backlog is processed. */
static char *big_chunk1, *big_chunk2;
static client_t *burst_client;
static uv_async_t finisher;
/* Runs in the poll phase (like a threadpool or database completion), just
 * before the server reads the client's next bytes in that same phase. */
static void finish_held(uv_async_t *a) {
  osb_res_send(held, 200, "application/json", "{}", 2);
  held = NULL;
}
static void finish_held_then_write(uv_timer_t *t) {
  uv_async_send(&finisher);
  send_next(burst_client);
  uv_close((uv_handle_t *)t, NULL);
}

static void read_resumes_after_backlog_processed(void **state) {
  int saved_max = cfg.max_body_bytes;
  cfg.max_body_bytes = 64;  /* read limit: 64 + 16 KiB of backlog */
  static const char one[] = "GET /h HTTP/1.1\r\nHost: a\r\n\r\n";
  size_t n1 = 16000 / (sizeof(one) - 1), n2 = 1000 / (sizeof(one) - 1);
  const char head[] = "GET /hold HTTP/1.1\r\nHost: a\r\n\r\n";
  big_chunk1 = calloc(1, sizeof(head) + n1 * (sizeof(one) - 1) + 1);
  strcpy(big_chunk1, head);
  for (size_t i = 0; i < n1; i++) strcat(big_chunk1, one);
  big_chunk2 = calloc(1, n2 * (sizeof(one) - 1) + 1);
  for (size_t i = 0; i < n2; i++) strcat(big_chunk2, one);

  client_t c = {0};
  c.chunks[0] = big_chunk1;
  c.chunks[1] = big_chunk2;
  c.chunks[2] = one;
  c.nchunks = 1;  /* chunk 1 now; chunk 2 from the timer; chunk 3 20 ms later */
  c.expect_responses = (int)(1 + n1 + n2 + 1);
  burst_client = &c;
  held = NULL;
  client_start(&c);
  assert_true(run_until(held_set, NULL, 3000));
  c.nchunks = 3;
  uv_async_init(&loop, &finisher, finish_held);
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  uv_timer_start(&t, finish_held_then_write, 0, 0);

  run_until(has_responses, &c, 3000);
  assert_int_equal(count_responses(&c.got), c.expect_responses);
  stop_when_done(&c);
  assert_true(run_until(all_closed, &c, 3000));
  uv_close((uv_handle_t *)&finisher, NULL);
  cfg.max_body_bytes = saved_max;
  free(big_chunk1);
  free(big_chunk2);
  osb_buf_free(&c.got);
}

/* RFC 7230 3.3: a response to HEAD has no body, streamed ones included. */
static void head_of_streamed_response_has_no_body(void **state) {
  client_t c = {0};
  c.chunks[0] = "HEAD /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /h HTTP/1.1\r\nHost: a\r\n\r\n";
  c.nchunks = 1;
  c.expect_responses = 2;
  client_start(&c);
  assert_true(run_until(has_responses, &c, 3000));
  /* the HEAD response's head is followed directly by the next response */
  const char *end = strstr(c.got.base, "\r\n\r\n");
  assert_non_null(end);
  assert_memory_equal(end + 4, "HTTP/1.1 200", 12);
  assert_null(strstr(c.got.base, "hello"));
  stop_when_done(&c);
  assert_true(run_until(all_closed, &c, 3000));
  osb_buf_free(&c.got);
}

/* A stream to an HTTP/1.0 client: no chunked coding (HTTP/1.0 has none),
 * the raw bytes, and the connection closes to end them. */
static void http10_stream_is_close_delimited(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  c.nchunks = 1;
  client_start(&c);
  assert_true(run_until(all_closed, &c, 3000));
  assert_int_equal(c.read_eof, 1);
  osb_buf_append(&c.got, "", 1);
  assert_non_null(strstr(c.got.base, "HTTP/1.1 200"));
  assert_null(strstr(c.got.base, "Transfer-Encoding"));
  assert_null(strstr(c.got.base, "Content-Length"));
  assert_non_null(strstr(c.got.base, "Connection: close\r\n"));
  const char *end = strstr(c.got.base, "\r\n\r\n");
  assert_non_null(end);
  assert_string_equal(end + 4, "hello");
  osb_buf_free(&c.got);
}

/* Trailer fields after a chunked body: the handler sees only the head's
 * headers (issue 8: they were counted in nheaders with NULL names, and
 * osb_req_cookie crashed on them). */
static void hdrs(osb_req_t *r) {
  const char *ck = osb_req_cookie(r, "a");
  osb_res_json(r, 200, json_pack("{s:i, s:b, s:s?}", "n", r->nheaders, "trailer", osb_req_header(r, "x-trailer") != NULL,
                                 "cookie", ck));
}

static void trailer_fields_never_become_headers(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET /hdrs HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n0\r\nX-Trailer: 1\r\nCookie: a=1\r\n\r\n";
  c.nchunks = 1;
  c.expect_responses = 1;
  client_start(&c);
  assert_true(run_until(has_responses, &c, 3000));
  assert_non_null(strstr(c.got.base, "HTTP/1.1 200"));
  assert_non_null(strstr(c.got.base, "{\"n\":2,\"trailer\":false,\"cookie\":null}"));
  stop_when_done(&c);
  assert_true(run_until(all_closed, &c, 3000));
  osb_buf_free(&c.got);
}

static void host(osb_req_t *r) {
  osb_res_json(r, 200, json_pack("{s:s?, s:s}", "host", osb_req_header(r, "host"), "path", osb_req_path(r)));
}

/* absolute-form (RFC 9112 §3.2.2): routed on its path, and its authority
 * replaces the Host field. */
static void absolute_form_routes_on_path_and_sets_host(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET http://api.example.test:8080/host%2Dx?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
  c.nchunks = 1;
  c.expect_responses = 1;
  client_start(&c);
  assert_true(run_until(has_responses, &c, 3000));
  assert_non_null(strstr(c.got.base, "{\"host\":\"api.example.test:8080\",\"path\":\"/host-x\"}"));
  stop_when_done(&c);
  assert_true(run_until(all_closed, &c, 3000));
  osb_buf_free(&c.got);
}

/* The most a connection had queued and unsent when a request was handled. */
static size_t max_queued;
static void queued(osb_req_t *r) {
  if (r->conn && r->conn->queued_bytes > max_queued) max_queued = r->conn->queued_bytes;
  osb_res_send(r, 200, "application/json", "{}", 2);
}

/* Pipelined requests to a synchronous handler: once the unsent output passes
 * HTTP_SEND_BUFFER_BYTES no further request is parsed until it drains, and
 * every request is still answered, in order. (Before, one read's worth of
 * requests, ~2,000, was answered into the queue at once.) */
static void pipelined_output_is_bounded(void **state) {
  int saved = cfg.http_send_buffer_bytes;
  cfg.http_send_buffer_bytes = 2048;
  static const char one[] = "GET /q HTTP/1.1\r\nHost: a\r\n\r\n";
  enum { N = 2000 };
  char *burst = calloc(1, N * (sizeof(one) - 1) + 1);
  for (int i = 0; i < N; i++) memcpy(burst + i * (sizeof(one) - 1), one, sizeof(one) - 1);
  max_queued = 0;
  client_t c = {0};
  c.chunks[0] = burst;
  c.nchunks = 1;
  c.expect_responses = N;
  client_start(&c);
  assert_true(run_until(has_responses, &c, 20000));
  assert_int_equal(count_responses(&c.got), N);
  /* the bound plus at most one response */
  assert_true(max_queued <= (size_t)cfg.http_send_buffer_bytes + 1024);
  stop_when_done(&c);
  assert_true(run_until(all_closed, &c, 3000));
  osb_buf_free(&c.got);
  free(burst);
  cfg.http_send_buffer_bytes = saved;
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
  osb_route(OSB_GET, "/h", health);
  osb_route(OSB_GET, "/later", later);
  osb_route(OSB_GET, "/hold", hold);
  osb_route(OSB_GET, "/poke", poke);
  osb_route(OSB_GET, "/fan", fan);
  osb_route(OSB_GET, "/stream", stream);
  osb_route(OSB_GET, "/hdrs", hdrs);
  osb_route(OSB_GET, "/q", queued);
  osb_route(OSB_GET, "/host-x", host);
  assert_int_equal(osb_http_server_start(&loop), 0);
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  assert_int_equal(uv_tcp_getsockname(&osb__srv.listener, (struct sockaddr *)&ss, &len), 0);
  port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

static void close_walk(uv_handle_t *h, void *a) { if (!uv_is_closing(h)) uv_close(h, NULL); }

static int teardown(void **state) {
  osb_http_server_shutdown();
  osb_http_server_stop();
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_walk(&loop, close_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_http_server_dispose();
  osb_metrics_reset();
  osb_health_reset();
  osb_config_dispose(&cfg);
  return 0;
}

/* Run until the client is closed and the server has released the connection. */
static void run_client(client_t *c) {
  while (c->close_cb_called == 0 || osb_http_open_connections() > 0) uv_run(&loop, UV_RUN_ONCE);
}

static void pipelined_split_across_reads(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET /h HTTP/1.1\r\nHost: a\r\nX-Req";
  c.chunks[1] = "uest-ID: one\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\nX-Request-ID: two\r\n\r\nGET /h HTT";
  c.chunks[2] = "P/1.1\r\nHost: a\r\nX-Request-ID: three\r\n\r\n";
  c.nchunks = 3;
  c.expect_responses = 3;
  client_start(&c);
  run_client(&c);
  assert_int_equal(c.connect_cb_called, 1);
  assert_int_equal(count_responses(&c.got), 3);
  const char *one = strstr(c.got.base, "X-Request-ID: one");
  const char *two = strstr(c.got.base, "X-Request-ID: two");
  const char *three = strstr(c.got.base, "X-Request-ID: three");
  assert_non_null(one);
  assert_non_null(two);
  assert_non_null(three);
  assert_true(one < two && two < three);
  assert_non_null(strstr(c.got.base, "HTTP/1.1 404"));
  osb_buf_free(&c.got);
}

static void async_response_keeps_order(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET /later HTTP/1.1\r\nHost: a\r\n\r\nGET /h HTTP/1.1\r\nHost: a\r\n\r\n";
  c.nchunks = 1;
  c.expect_responses = 2;
  client_start(&c);
  run_client(&c);
  assert_int_equal(count_responses(&c.got), 2);
  const char *a = strstr(c.got.base, "{\"detached\":false}");
  const char *b = strstr(c.got.base, "\r\n\r\n{}");
  assert_non_null(a);
  assert_non_null(b);
  assert_true(a < b);
  osb_buf_free(&c.got);
}

static void client_gone_mid_request_detaches(void **state) {
  client_t c = {0};
  c.chunks[0] = "GET /later HTTP/1.1\r\nHost: a\r\n\r\n";
  c.nchunks = 1;
  c.close_early = true;
  size_t inflight_before = osb_http_inflight();
  client_start(&c);
  run_client(&c);
  /* the request outlives its connection and finishes on its own */
  while (osb_http_inflight() > inflight_before) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(osb_http_open_connections(), 0);
  assert_int_equal(c.close_cb_called, 1);
  osb_buf_free(&c.got);
}

/* Connections the kernel completed but the loop had not accepted yet (the
 * accept queue) when the shutdown closes the listener are served, not reset
 * by the close. Blocking clients connect and send while the loop is not
 * running, so every one of them is still in the queue at the shutdown. Runs
 * last: the listener is gone afterwards. */
static void shutdown_serves_the_accept_backlog(void **state) {
  enum { N = 8 };
  int fds[N];
  const char *req = "GET /h HTTP/1.1\r\nHost: a\r\n\r\n";
  for (int i = 0; i < N; i++) {
    fds[i] = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fds[i] >= 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(send(fds[i], req, strlen(req), 0), (ssize_t)strlen(req));
  }
  assert_int_equal(osb_http_open_connections(), 0);   /* none accepted yet */
  osb_http_server_shutdown();
  /* Run the loop and read the clients until each one has seen its end of
   * stream (EOF after the answer) or an error (the reset), at most 5 s. */
  char got[N][2048];
  size_t len[N] = {0};
  int end[N] = {0};   /* 0 open, 1 EOF, -errno */
  uint64_t t0 = uv_hrtime();
  for (int left = N; left > 0 && uv_hrtime() - t0 < 5000000000ull;) {
    uv_run(&loop, UV_RUN_NOWAIT);
    for (int i = 0; i < N; i++) {
      if (end[i]) continue;
      ssize_t n = recv(fds[i], got[i] + len[i], sizeof(got[i]) - 1 - len[i], MSG_DONTWAIT);
      if (n > 0) len[i] += (size_t)n;
      else if (n == 0) end[i] = 1, left--;
      else if (errno != EAGAIN && errno != EWOULDBLOCK) end[i] = -errno, left--;
    }
  }
  for (int i = 0; i < N; i++) {
    got[i][len[i]] = 0;
    assert_int_equal(end[i], 1);   /* EOF after the answer, not ECONNRESET */
    assert_non_null(strstr(got[i], "HTTP/1.1 200"));
    assert_non_null(strstr(got[i], "Connection: close"));
    close(fds[i]);
  }
  while (osb_http_open_connections() > 0) uv_run(&loop, UV_RUN_ONCE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(pipelined_split_across_reads),
    cmocka_unit_test(async_response_keeps_order),
    cmocka_unit_test(client_gone_mid_request_detaches),
    cmocka_unit_test(handler_in_flush_round_flushes_another_conn),
    cmocka_unit_test(publish_answer_flushed_before_fanout),
    cmocka_unit_test(ws_flush_rounds_are_capped_and_lose_nothing),
    cmocka_unit_test(idle_websocket_layout),
    cmocka_unit_test(read_resumes_after_backlog_processed),
    cmocka_unit_test(head_of_streamed_response_has_no_body),
    cmocka_unit_test(http10_stream_is_close_delimited),
    cmocka_unit_test(trailer_fields_never_become_headers),
    cmocka_unit_test(pipelined_output_is_bounded),
    cmocka_unit_test(absolute_form_routes_on_path_and_sets_host),
    cmocka_unit_test(shutdown_serves_the_accept_backlog),   /* last: closes the listener */
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
