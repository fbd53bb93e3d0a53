/* test_client.c: the libcurl-multi client on a real loop against a local
 * HTTP server in the same loop (scripted per test): answers, connection
 * reuse, streams through the SSE parser, timeouts (head and gap), the size
 * limit, refused connections, cancellation, the bulkhead and the breaker.
 * Ends with a clean uv_loop_close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/core.h"
#include "obs/metrics.h"
#include "upstream/internal.h"

/* ---- the scripted server ---- */

typedef enum { M_OK, M_SSE, M_STALL_HEAD, M_STALL_BODY, M_BIG, M_500, M_CLOSE } mode_t_;

static uv_loop_t loop;
static uv_tcp_t listener;
static int port, refused_port;
static mode_t_ mode;
static int accepted, requests;

typedef struct sconn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  osb_buf_t in;
  int step;
  int closing;
} sconn_t;

static void sconn_closed(uv_handle_t *h) {
  sconn_t *c = h->data;
  if (--c->closing == 0) {
    osb_buf_free(&c->in);
    free(c);
  }
}
static void sconn_close(sconn_t *c) {
  if (c->closing) return;
  c->closing = 2;
  uv_close((uv_handle_t *)&c->tcp, sconn_closed);
  uv_close((uv_handle_t *)&c->timer, sconn_closed);
}

typedef struct { uv_write_t w; char *p; } wreq_t;
static void on_written(uv_write_t *w, int st) {
  wreq_t *r = (wreq_t *)w;
  free(r->p);
  free(r);
}
static void swrite(sconn_t *c, const char *s, size_t n) {
  wreq_t *r = osb_malloc(sizeof(*r));
  r->p = osb_malloc(n);
  memcpy(r->p, s, n);
  uv_buf_t b = uv_buf_init(r->p, (unsigned)n);
  uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written);
}
static void swrites(sconn_t *c, const char *s) { swrite(c, s, strlen(s)); }

static void sse_step(uv_timer_t *t) {
  sconn_t *c = t->data;
  switch (c->step++) {
    case 0: swrites(c, "data: a"); break;
    case 1: swrites(c, "\n\ndata: b\r"); break;
    case 2:
      if (mode == M_STALL_BODY) return;   /* stall mid-stream */
      swrites(c, "\n\r\n");
      break;
    default: sconn_close(c); return;
  }
  uv_timer_start(&c->timer, sse_step, 30, 0);
}

static void respond(sconn_t *c) {
  requests++;
  switch (mode) {
    case M_OK: swrites(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"); break;
    case M_500: swrites(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"); break;
    case M_SSE:
    case M_STALL_BODY:
      swrites(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
      c->step = 0;
      uv_timer_start(&c->timer, sse_step, 30, 0);
      break;
    case M_BIG: {
      swrites(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
      char *z = osb_calloc(1, 100000);
      swrite(c, z, 100000);
      free(z);
      break;
    }
    case M_STALL_HEAD: break;
    case M_CLOSE: sconn_close(c); break;
  }
}

static void salloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  static char buf[65536];
  *b = uv_buf_init(buf, sizeof(buf));
}
static void sread(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  sconn_t *c = s->data;
  if (n < 0) {
    sconn_close(c);
    return;
  }
  osb_buf_append(&c->in, b->base, (size_t)n);
  for (;;) {
    char *end = c->in.base ? strstr(c->in.base, "\r\n\r\n") : NULL;
    if (!end) return;
    size_t head = (size_t)(end - c->in.base) + 4, clen = 0;
    char *cl = strcasestr(c->in.base, "content-length:");
    if (cl && cl < end) clen = (size_t)strtoul(cl + 15, NULL, 10);
    if (c->in.len < head + clen) return;
    osb_buf_consume(&c->in, head + clen);
    respond(c);
    if (c->closing) return;
  }
}
static void on_conn(uv_stream_t *l, int st) {
  sconn_t *c = osb_calloc(1, sizeof(*c));
  uv_tcp_init(&loop, &c->tcp);
  uv_timer_init(&loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  uv_accept(l, (uv_stream_t *)&c->tcp);
  accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, salloc, sread);
}

/* ---- helpers ---- */

typedef struct {
  int done;
  osb_upstream_result_t r;
  char body[64];
  char sse[8][16];
  int nsse;
  osb_sse_t parser;
} probe_t;

static int on_sse(void *ud, const osb_sse_event_t *e) {
  probe_t *p = ud;
  if (p->nsse < 8) snprintf(p->sse[p->nsse], 16, "%s", e->data);
  p->nsse++;
  return 0;
}
static int on_data(void *ud, const char *s, size_t n) {
  probe_t *p = ud;
  return osb_sse_feed(&p->parser, s, n);
}
static void on_done(void *ud, const osb_upstream_result_t *r) {
  probe_t *p = ud;
  p->done++;
  p->r = *r;
  p->r.body = NULL;
  p->r.reason = NULL;
  p->r.content_type = NULL;
  snprintf(p->body, sizeof(p->body), "%.*s", (int)(r->body_len < 63 ? r->body_len : 63), r->body);
}
static const osb_upstream_cbs_t CBS = {.on_data = on_data, .on_done = on_done};

/* Cancels its own call from inside on_data (a client that went away mid-stream). */
static osb_upstream_call_t *self_call;
static int chunks_seen;
static int on_data_cancel(void *ud, const char *s, size_t n) {
  chunks_seen++;
  osb_upstream_cancel(self_call);
  return 0;
}
static const osb_upstream_cbs_t CANCEL_CBS = {.on_data = on_data_cancel, .on_done = on_done};

/* UV_RUN_ONCE blocks in poll after running due timers when nothing else
 * is pending: a ticking timer keeps each turn short. */
static uv_timer_t tick;
static void on_tick(uv_timer_t *t) {}

static void run_until(int *flag, int want) {
  uint64_t t0 = uv_now(&loop);
  while (*flag < want) {
    uv_run(&loop, UV_RUN_ONCE);
    if (uv_now(&loop) - t0 > 10000) fail_msg("timed out waiting");
  }
}

static char url[64];
static osb_upstream_call_t *go(osb_upstream_t *u, probe_t *p, bool stream, int timeout_ms, size_t max) {
  memset(p, 0, sizeof(*p));
  osb_sse_init(&p->parser, on_sse, p, 0);
  osb_upstream_req_t req = {.url = url, .body = "{}", .body_len = 2, .stream = stream,
                            .timeout_ms = timeout_ms, .max_response_bytes = max};
  return osb_upstream_call(u, &req, &CBS, p);
}

/* ---- tests ---- */

static void answers_and_reuses_the_connection(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_ok", url, 4, NULL);
  mode = M_OK;
  accepted = 0;
  probe_t p;
  go(u, &p, false, 2000, 0);
  assert_int_equal(p.done, 0);   /* never from inside the call */
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, 0);
  assert_int_equal(p.r.status, 200);
  assert_string_equal(p.body, "hello");
  go(u, &p, false, 2000, 0);
  run_until(&p.done, 1);
  assert_int_equal(p.r.status, 200);
  assert_int_equal(accepted, 1);   /* kept alive and reused */
  assert_int_equal(osb_upstream_in_flight(u), 0);
  osb_sse_dispose(&p.parser);
}

static void streams_pieces_through_the_sse_parser(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_sse", url, 4, NULL);
  mode = M_SSE;
  probe_t p;
  go(u, &p, true, 2000, 0);
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, 0);
  assert_int_equal(p.r.status, 200);
  assert_int_equal(p.nsse, 2);
  assert_string_equal(p.sse[0], "a");
  assert_string_equal(p.sse[1], "b");
  osb_sse_dispose(&p.parser);
}

static void a_stalled_head_times_out(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_stall", url, 4, NULL);
  mode = M_STALL_HEAD;
  probe_t p;
  uint64_t t0 = uv_now(&loop);
  go(u, &p, false, 300, 0);
  run_until(&p.done, 1);
  uint64_t el = uv_now(&loop) - t0;
  assert_int_equal(p.r.err, OSB_ETIMEOUT);
  assert_false(p.r.rejected);
  assert_true(el >= 250 && el < 3000);
  osb_sse_dispose(&p.parser);
}

static void a_stream_that_stops_times_out_after_the_gap(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_gap", url, 4, NULL);
  mode = M_STALL_BODY;
  probe_t p;
  uint64_t t0 = uv_now(&loop);
  go(u, &p, true, 400, 0);
  run_until(&p.done, 1);
  uint64_t el = uv_now(&loop) - t0;
  assert_int_equal(p.r.err, OSB_ETIMEOUT);
  assert_int_equal(p.nsse, 1);         /* what arrived before the stall was delivered */
  assert_true(el >= 400 && el < 3000); /* the gap counts from the last chunk */
  osb_sse_dispose(&p.parser);
}

static void the_response_size_is_limited(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_big", url, 4, NULL);
  mode = M_BIG;
  probe_t p;
  go(u, &p, false, 2000, 1000);
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, OSB_ETOOBIG);
  go(u, &p, false, 2000, 200000);
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, 0);
  assert_int_equal(p.r.body_len, 100000);
  osb_sse_dispose(&p.parser);
}

static void refused_and_dropped_connections_fail(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_refused", url, 4, NULL);
  char bad[64];
  snprintf(bad, sizeof(bad), "http://127.0.0.1:%d/x", refused_port);
  probe_t p;
  memset(&p, 0, sizeof(p));
  osb_upstream_req_t req = {.url = bad, .timeout_ms = 2000};
  osb_upstream_call(u, &req, &CBS, &p);
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, OSB_EPROTO);
  assert_int_equal(u->br.failures, 1);
  mode = M_CLOSE;
  go(u, &p, false, 2000, 0);
  run_until(&p.done, 1);
  assert_int_equal(p.r.err, OSB_EPROTO);
  osb_sse_dispose(&p.parser);
}

static void a_cancelled_call_never_calls_back(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_cancel", url, 4, NULL);
  mode = M_STALL_HEAD;
  int before = requests;
  probe_t p, q;
  osb_upstream_call_t *c = go(u, &p, false, 5000, 0);
  osb_upstream_call_t *d = go(u, &q, false, 5000, 0);
  osb_upstream_cancel(d);   /* before it even started */
  while (requests == before) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(osb_upstream_in_flight(u), 1);
  osb_upstream_cancel(c);   /* running */
  assert_int_equal(osb_upstream_in_flight(u), 0);
  for (int i = 0; i < 20; i++) uv_run(&loop, UV_RUN_NOWAIT);
  assert_int_equal(p.done + q.done, 0);
  assert_int_equal(u->br.cancelled, 2);
  assert_int_equal(u->br.failures, 0);
  osb_sse_dispose(&p.parser);
  osb_sse_dispose(&q.parser);
}

static void a_stream_cancelled_from_its_own_callback_stops(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_selfcancel", url, 4, NULL);
  mode = M_SSE;
  probe_t p;
  memset(&p, 0, sizeof(p));
  chunks_seen = 0;
  osb_upstream_req_t req = {.url = url, .body = "{}", .body_len = 2, .stream = true, .timeout_ms = 2000};
  self_call = osb_upstream_call(u, &req, &CANCEL_CBS, &p);
  while (chunks_seen == 0) uv_run(&loop, UV_RUN_ONCE);
  for (int i = 0; i < 30; i++) uv_run(&loop, UV_RUN_ONCE);   /* the rest of the stream would arrive by now */
  assert_int_equal(chunks_seen, 1);
  assert_int_equal(p.done, 0);
  assert_int_equal(osb_upstream_in_flight(u), 0);
  assert_int_equal(u->br.cancelled, 1);
  assert_int_equal(u->br.failures, 0);
}

static void the_bulkhead_queues_then_rejects(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_bulk", url, 2, NULL);
  mode = M_STALL_HEAD;
  int before = requests;
  probe_t p[3];
  osb_upstream_call_t *c0 = go(u, &p[0], false, 5000, 0);
  osb_upstream_call_t *c1 = go(u, &p[1], false, 5000, 0);
  uint64_t t0 = uv_now(&loop);
  go(u, &p[2], false, 5000, 0);
  assert_int_equal(u->queued, 1);
  run_until(&p[2].done, 1);
  uint64_t waited = uv_now(&loop) - t0;
  assert_int_equal(p[2].r.err, OSB_EUNAVAIL);
  assert_true(p[2].r.rejected);
  assert_true(p[2].r.retry_after_s >= 1);
  assert_true(waited >= 950 && waited < 3000);   /* waited up to 1 s for a slot */
  assert_int_equal(requests - before, 2);       /* only two reached the server */
  /* A freed slot admits a waiter. */
  probe_t w;
  go(u, &w, false, 5000, 0);
  osb_upstream_cancel(c0);
  assert_int_equal(u->queued, 0);
  assert_int_equal(osb_upstream_in_flight(u), 2);
  osb_upstream_cancel(c1);
  for (int i = 0; i < 3; i++) osb_sse_dispose(&p[i].parser);
  /* the admitted waiter: cancel it through the running list */
  osb_upstream_call_t *last = osb_container_of(u->running.next, osb_upstream_call_t, node);
  osb_upstream_cancel(last);
  assert_int_equal(osb_upstream_in_flight(u), 0);
  osb_sse_dispose(&w.parser);
}

static void five_failures_open_the_breaker_and_no_call_goes_out(void **state) {
  osb_upstream_t *u = osb_upstream_register("t_breaker", url, 4, NULL);
  mode = M_500;
  int before = requests;
  probe_t p;
  for (int i = 0; i < 5; i++) {
    go(u, &p, false, 2000, 0);
    run_until(&p.done, 1);
    assert_int_equal(p.r.status, 500);
  }
  assert_int_equal(osb_upstream_state(u), OSB_BREAKER_OPEN);
  go(u, &p, false, 2000, 0);
  run_until(&p.done, 1);
  assert_true(p.r.rejected);
  assert_int_equal(p.r.err, OSB_EUNAVAIL);
  assert_true(p.r.retry_after_s >= 1);
  assert_int_equal(requests - before, 5);
  /* 4xx is a success: a fresh upstream sees 404s and stays closed. */
  osb_sse_dispose(&p.parser);
}

static int setup(void **state) {
  uv_loop_init(&loop);
  osb_core_init(&loop);
  assert_int_equal(osb_upstream_init(&loop), 0);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&loop, &listener);
  uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0);
  uv_listen((uv_stream_t *)&listener, 128, on_conn);
  struct sockaddr_in got;
  int len = sizeof(got);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&got, &len);
  port = ntohs(got.sin_port);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/x", port);
  /* A port nobody listens on: bind, read it, close. */
  uv_tcp_t tmp;
  uv_tcp_init(&loop, &tmp);
  uv_tcp_bind(&tmp, (const struct sockaddr *)&a, 0);
  len = sizeof(got);
  uv_tcp_getsockname(&tmp, (struct sockaddr *)&got, &len);
  refused_port = ntohs(got.sin_port);
  uv_close((uv_handle_t *)&tmp, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_timer_init(&loop, &tick);
  uv_timer_start(&tick, on_tick, 10, 10);
  return 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) {
    if (h->data) sconn_close(h->data);
    else uv_close(h, NULL);
  }
}

static int teardown(void **state) {
  osb_upstream_close();
  uv_close((uv_handle_t *)&tick, NULL);
  uv_close((uv_handle_t *)&listener, NULL);
  uv_walk(&loop, walk_close, NULL);
  for (int i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(osb__client_handles(), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_upstream_dispose();
  osb_metrics_reset();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(answers_and_reuses_the_connection),
    cmocka_unit_test(streams_pieces_through_the_sse_parser),
    cmocka_unit_test(a_stalled_head_times_out),
    cmocka_unit_test(a_stream_that_stops_times_out_after_the_gap),
    cmocka_unit_test(the_response_size_is_limited),
    cmocka_unit_test(refused_and_dropped_connections_fail),
    cmocka_unit_test(a_cancelled_call_never_calls_back),
    cmocka_unit_test(a_stream_cancelled_from_its_own_callback_stops),
    cmocka_unit_test(the_bulkhead_queues_then_rejects),
    cmocka_unit_test(five_failures_open_the_breaker_and_no_call_goes_out),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
