/* conn_harness.h: the real HTTP connection code (server.c is #included, so
 * its statics are reachable) on a loop that never does network I/O. A fake
 * connection has an initialised uv_tcp_t without a socket; input goes
 * through conn_process() exactly as on_read() would deliver it, pipelined
 * leftovers are parsed as the flusher would, and queued output is dropped
 * as if the peer had read it. Closing runs the real on_close() through
 * uv_run(UV_RUN_NOWAIT), which only fires close callbacks here.
 *
 * Used by http_fuzz.c and ws_fuzz.c; each defines its own routes. */
#ifndef OSB_FUZZ_CONN_HARNESS_H
#define OSB_FUZZ_CONN_HARNESS_H

#include "../../src/http/server.c"

#include <stdlib.h>

#include "obs/log.h"

static uv_loop_t fz_loop;
static osb_config_t fz_cfg;

/* Config from the table's defaults plus a few overrides; logging quiet. */
static void fz_init_server(void (*add_routes)(void)) {
  setenv("HOST", "127.0.0.1", 1);
  setenv("PORT", "0", 1);
  setenv("LOG_LEVEL", "error", 1);
  setenv("MAX_BODY_BYTES", "4096", 1);
  setenv("WS_MAX_MESSAGE_BYTES", "4096", 1);
  setenv("OSB_ENV_FILE", "/nonexistent/.env", 1);
  char err[512], warn[512];
  if (uv_loop_init(&fz_loop) != 0 || osb_config_load(&fz_cfg, err, sizeof(err), warn, sizeof(warn)) != 0) {
    fprintf(stderr, "fuzz harness: setup failed: %s\n", err);
    abort();
  }
  osb_log_init(fz_cfg.log_level, fz_cfg.log_format);
  add_routes();
  /* Binds 127.0.0.1:0 and registers the parser callbacks; the loop is never
   * run long enough to accept anything. */
  if (osb_http_server_start(&fz_loop) != 0) abort();
}

static osb__conn_t *fz_conn_new(void) {
  osb__conn_t *c = osb__conn_alloc(&fz_loop, osb__ws_user_size());
  osb__srv.nconns++;
  c->id = ++osb__srv.next_conn_id;
  c->addr[0] = 127;
  c->addr[3] = 1;
  strcpy(c->http->ip, "127.0.0.1");
  c->phase = OSB__PHASE_IDLE;
  osb__conn_set_deadline(c, uv_now(&fz_loop) + (uint64_t)osb_cfg->http_idle_timeout_ms);
  c->reading = false;  /* no uv_read_start: there is no socket */
  return c;
}

/* The peer "read" everything queued: drop it as a completed write would
 * (queue entries are released, close_after_flush honoured). */
static void fz_drain_output(osb__conn_t *c) {
  if (c->closing) return;
  osb_list_remove(&c->flush_node);
  osb_list_init(&c->flush_node);
  while (osb__conn_qlen(c)) {
    osb__outq_ent_t *e = &c->q->e[c->q->head];
    c->queued_bytes -= e->msg->len - e->off;
    queue_pop(c);
  }
  after_flush_empty(c);
}

/* Deliver bytes as reads, through the real on_read() (with the shared read
 * buffer lent, as on_alloc() does), then let the "flusher" parse pipelined
 * requests (bounded rounds) and drop the output. */
static void fz_deliver(osb__conn_t *c, const uint8_t *data, size_t len) {
  while (len > 0 && !c->closing) {
    size_t n = len < OSB__READ_BUF ? len : OSB__READ_BUF;
    osb_assert(!osb__srv.readbuf_lent);
    osb__srv.readbuf_lent = true;
    memcpy(osb__srv.readbuf, data, n);
    uv_buf_t buf = uv_buf_init(osb__srv.readbuf, (unsigned)n);
    on_read((uv_stream_t *)&c->tcp, (ssize_t)n, &buf);
    data += n;
    len -= n;
    for (int round = 0; round < 64 && !c->closing; round++) {
      bool more = c->mode == OSB__CONN_HTTP && !conn_busy(c) && c->http->in.len && !c->close_after_flush;
      if (more) conn_process(c);
      fz_drain_output(c);
      if (!more) break;
    }
  }
}

static void fz_conn_end(osb__conn_t *c) {
  if (!c->closing) osb__conn_close(c, "fuzz input done");
  /* runs on_close (frees the connection); nothing else is ready */
  uv_run(&fz_loop, UV_RUN_NOWAIT);
}

/* Split the input into up to 3 reads at offsets taken from its first bytes,
 * so partial heads and frames are exercised. Returns the payload start. */
static size_t fz_splits(const uint8_t *data, size_t size, size_t cut[2]) {
  cut[0] = cut[1] = 0;
  if (size < 2) return 0;
  cut[0] = data[0];
  cut[1] = (size_t)data[0] + data[1];
  return 2;
}

static void fz_feed_split(osb__conn_t *c, const uint8_t *p, size_t n, const size_t cut[2]) {
  size_t a = cut[0] < n ? cut[0] : n;
  size_t b = cut[1] < n ? cut[1] : n;
  if (b < a) b = a;
  fz_deliver(c, p, a);
  fz_deliver(c, p + a, b - a);
  fz_deliver(c, p + b, n - b);
}

#endif
