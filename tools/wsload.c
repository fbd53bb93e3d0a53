/* wsload.c: WebSocket fan-out load generator (osbackend's benchmark tool).
 *
 * Opens --conns WebSocket connections to ws://HOST:PORT/ws, subscribes each to
 * one channel, then publishes --rate messages/s for --duration s through
 * `POST /api/realtime/publish` and measures how every message reaches every
 * subscriber: deliveries, loss, latency (publish send time to frame arrival)
 * and the server's resident memory per idle connection. It speaks only the
 * protocol subset osbackend and the Node.js baseline share (subscribe →
 * subscribed, message frames, WebSocket ping/pong/close), so the same run
 * measures both.
 *
 * Shape: one libuv loop per worker. Worker 0 runs on the main thread and
 * also hosts the controller (phase machine) and the publisher; with
 * --threads N, workers 1..N-1 run their own loop on their own thread and own
 * a contiguous share of the connections. Workers share nothing mutable with
 * each other; the controller reads their progress counters through relaxed
 * atomics (each written by one thread only) and steers them through three
 * atomic flags (ramp over, stop, publish window end). Detailed figures
 * (histograms, per-publish delivery counts) are merged after the threads
 * have been joined.
 *
 * Phases: RAMP (connect, handshake, subscribe; at most --ramp-batch
 * connections in flight so the server's listen backlog is never overrun),
 * SETTLE (let the server go idle, read its RSS), PUBLISH (a uv timer sends
 * the number of publishes due so far on each tick), DRAIN (wait up to
 * --drain-ms for outstanding replies and deliveries), REPORT.
 *
 * WebSocket frames are parsed here rather than with wslay: wslay's event API
 * copies every message into its own buffer and drives I/O through blocking
 * style recv/send callbacks, while this client needs a tiny subset (unmasked
 * server frames: text, continuation, ping, pong, close) and reads hundreds
 * of thousands of small frames per second across thousands of sockets. We
 * parse in place from one loop-wide read buffer and only copy the tail of a
 * frame split across reads, so idle connections own no buffer at all.
 *
 * Receivers do not parse JSON: they locate the "type" value, and in message
 * frames the "t" (send time, CLOCK_MONOTONIC µs) and "i" (publish index)
 * numbers, by scanning for the quoted key. Latencies go into a log-linear
 * histogram (exact below 256 µs, then 128 sub-buckets per power of two, so
 * under 1 % relative error, up to 60 s).
 *
 * With --market N the publisher writes through the Market Data API instead:
 * publish i is `PUT /api/market/procedures/<1 + i % N>` with
 * {"market_size_usd": t, "avg_price_usd": i}, and receivers read t and i
 * from those two fields of the procedure.updated event (subscribe to
 * market:all). The latency is then PUT sent → event received: the write's
 * transaction, its commit and the fan-out.
 *
 * Exit status: 0 if every connection subscribed and every acknowledged
 * publish reached every subscriber; 1 otherwise (or on the overall
 * deadline); 2 on bad usage. The last line of output is
 * `WSLOAD {json}` for scripts. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <openssl/evp.h>
#include <uv.h>

#include "core/core.h"

/* ------------------------------------------------------------------ options */

typedef struct opts {
  const char *host;
  int port;
  int pub_port;         /* 0: the same as port (--pub-port: publish through another instance) */
  const char *path;
  uint32_t conns;
  uint32_t rate;        /* publishes per second */
  uint32_t duration_s;  /* publish phase */
  const char *channel;
  const char *key;
  int server_pid;       /* 0: no RSS figures */
  uint32_t drain_ms;
  uint32_t threads;
  uint32_t ramp_batch;  /* connections in flight during the ramp, all workers */
  uint32_t ramp_timeout_ms;
  uint32_t settle_ms;
  uint32_t market;      /* 0: POST /api/realtime/publish; N: PUT procedures 1..N */
  uint32_t pub_conns;
  uint32_t pub_inflight; /* pipelined requests per publisher connection */
  uint32_t tick_ms;
  bool quiet;
} opts_t;

static opts_t O = {
  .host = "127.0.0.1", .port = 10000, .path = "/ws", .conns = 100, .rate = 100,
  .duration_s = 10, .channel = "market:all", .drain_ms = 5000, .threads = 1,
  .ramp_batch = 256, .ramp_timeout_ms = 60000, .settle_ms = 500, .pub_conns = 4,
  .pub_inflight = 32, .tick_ms = 1,
};

/* -------------------------------------------------------------------- clock */

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---------------------------------------------------------------- histogram */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_US 60000000ull
/* 60e6 < 2^26: highest exponent 25 → index (25-7)*128 + 255 = 2559. */
#define HIST_BUCKETS ((26 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

static unsigned hist_index(uint64_t v) {
  if (v > HIST_MAX_US) v = HIST_MAX_US;
  if (v < 2 * HIST_SUB) return (unsigned)v;
  unsigned exp = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = exp - HIST_SUB_BITS;
  return shift * HIST_SUB + (unsigned)(v >> shift);
}

/* Middle of a bucket, in µs. */
static double hist_value(unsigned idx) {
  if (idx < 2 * HIST_SUB) return idx;
  unsigned shift = idx / HIST_SUB - 1;
  uint64_t lo = (uint64_t)(idx - shift * HIST_SUB) << shift;
  return (double)lo + (double)(1ull << shift) / 2.0;
}

static double hist_percentile(const uint64_t *h, uint64_t total, double p) {
  if (total == 0) return 0;
  uint64_t want = (uint64_t)((double)total * p / 100.0 + 0.999999);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += h[i];
    if (seen >= want) return hist_value(i);
  }
  return hist_value(HIST_BUCKETS - 1);
}

/* ------------------------------------------------------------------- shared */

enum { PH_RAMP, PH_SETTLE, PH_PUBLISH, PH_DRAIN, PH_DONE };

typedef struct worker worker_t;

static struct {
  atomic_int ramp_over;          /* controller → workers: abandon pending conns */
  atomic_int stop;               /* controller → workers: close everything */
  _Atomic uint64_t window_end;   /* planned end of the publish window (µs) */
  uint32_t npub;                 /* rate × duration: publish indexes 0..npub-1 */
  worker_t *workers;
  char handshake_req[512];
  size_t handshake_len;
  char subscribe_msg[512];
  size_t subscribe_len;
} G;

/* ---------------------------------------------------------------- WS client */

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_SUBSCRIBING, ST_SUBSCRIBED, ST_CLOSED };

typedef struct conn {
  uv_tcp_t tcp;          /* tcp.data = this */
  uv_connect_t creq;
  worker_t *w;
  uint8_t state;
  uint8_t frag_op;       /* opcode of a fragmented message in progress, 0 = none */
  bool pending;          /* counted in worker->pending (ramp window) */
  char accept[29];       /* expected Sec-WebSocket-Accept */
  osb_buf_t in;          /* unparsed tail of the stream (split frame / header) */
  osb_buf_t frag;        /* reassembled fragments */
} conn_t;

#define RBUF_SIZE 65536
#define MAX_FRAME (16u << 20)
#define MAX_HANDSHAKE 8192

struct worker {
  int id;
  uv_loop_t loop;
  uv_timer_t tick;
  uv_thread_t thread;
  conn_t *conns;
  uint32_t nconns, next, pending, window;
  uint32_t open_handles;
  uint64_t rng;
  /* progress, written by this worker only, read by the controller */
  _Atomic uint64_t a_subscribed, a_failed, a_received, a_dropped, a_resolved;
  /* figures read after join */
  uint64_t made;            /* 101 handshakes */
  uint64_t recv_window;     /* deliveries that arrived inside the publish window */
  uint64_t recv_unparsed;   /* message frames without t/i */
  uint64_t server_pings, server_closes, other_frames, error_frames;
  uint64_t first_us, last_us;
  uint64_t max_us;
  uint64_t hist[HIST_BUCKETS];
  uint32_t *counts;         /* deliveries per publish index */
  char first_error[160];
  char rbuf[RBUF_SIZE];
  bool rbuf_busy;
};

static void worker_note_error(worker_t *w, const char *fmt, ...) OSB_PRINTF(2, 3);
static void worker_note_error(worker_t *w, const char *fmt, ...) {
  if (w->first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->first_error, sizeof w->first_error, fmt, ap);
  va_end(ap);
}

static uint64_t rng_next(uint64_t *s) { /* xorshift64*: masking keys only */
  uint64_t x = *s;
  x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static void counter_inc(_Atomic uint64_t *a) {
  atomic_store_explicit(a, atomic_load_explicit(a, memory_order_relaxed) + 1, memory_order_relaxed);
}
static uint64_t counter_get(_Atomic uint64_t *a) { return atomic_load_explicit(a, memory_order_relaxed); }

static void ramp_fill(worker_t *w);

static void conn_close_cb(uv_handle_t *h) {
  conn_t *c = h->data;
  osb_buf_free(&c->in);
  osb_buf_free(&c->frag);
  c->w->open_handles--;
}

/* The one teardown: counts the connection as failed (before subscribed) or
 * dropped (after), frees the ramp slot, closes the socket. Idempotent.
 * Buffers are freed in the close callback, so a parser still walking
 * c->in when this runs stays valid; it checks c->state afterwards. */
static void conn_close(conn_t *c, const char *why) {
  worker_t *w = c->w;
  if (c->state == ST_CLOSED || c->state == ST_IDLE) return;
  if (c->state == ST_SUBSCRIBED) {
    if (why) { counter_inc(&w->a_dropped); worker_note_error(w, "dropped after subscribe: %s", why); }
  } else {
    counter_inc(&w->a_failed);
    counter_inc(&w->a_resolved);
    worker_note_error(w, "connection failed: %s", why ? why : "closed");
  }
  if (c->pending) { c->pending = false; w->pending--; }
  c->state = ST_CLOSED;
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
  if (why && !atomic_load(&G.ramp_over) && !atomic_load(&G.stop)) ramp_fill(w);
}

typedef struct wreq { uv_write_t req; char data[]; } wreq_t;

static void conn_write_cb(uv_write_t *req, int status) {
  conn_t *c = req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED) conn_close(c, uv_strerror(status));
}

static int conn_write(conn_t *c, const void *p, size_t n) {
  wreq_t *wr = osb_malloc(sizeof *wr + n);
  memcpy(wr->data, p, n);
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
  int r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb);
  if (r < 0) free(wr);
  return r;
}

/* A masked client frame (RFC 6455 §5.3: every client frame is masked). */
static int conn_send_frame(conn_t *c, int op, const void *p, size_t n) {
  size_t hdr = 2 + (n < 126 ? 0 : n <= 0xffff ? 2 : 8) + 4;
  wreq_t *wr = osb_malloc(sizeof *wr + hdr + n);
  uint8_t *o = (uint8_t *)wr->data;
  size_t k = 0;
  o[k++] = (uint8_t)(0x80 | op);
  if (n < 126) {
    o[k++] = (uint8_t)(0x80 | n);
  } else if (n <= 0xffff) {
    o[k++] = 0x80 | 126;
    o[k++] = (uint8_t)(n >> 8); o[k++] = (uint8_t)n;
  } else {
    o[k++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) o[k++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  uint32_t m32 = (uint32_t)rng_next(&c->w->rng);
  uint8_t *mask = o + k;
  memcpy(mask, &m32, 4);
  k += 4;
  const uint8_t *src = p;
  for (size_t i = 0; i < n; i++) o[k + i] = src[i] ^ mask[i & 3];
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)(hdr + n));
  int r = uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, conn_write_cb);
  if (r < 0) free(wr);
  return r;
}

/* Find `"key"` followed by optional blanks and ':' and return the first
 * non-blank byte of its value, or NULL. */
static const char *find_key(const char *p, const char *end, const char *key, size_t klen) {
  while (p < end) {
    const char *q = memmem(p, (size_t)(end - p), key, klen);
    if (!q) return NULL;
    const char *v = q + klen;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
    if (v < end && *v == ':') {
      v++;
      while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
      return v;
    }
    p = q + 1;
  }
  return NULL;
}

static bool parse_u64(const char *p, const char *end, uint64_t *out) {
  if (!p || p >= end || *p < '0' || *p > '9') return false;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  *out = v;
  return true;
}

static bool type_is(const char *v, const char *end, const char *want) {
  size_t n = strlen(want);
  return v && v < end && *v == '"' && (size_t)(end - v) > n + 1 && memcmp(v + 1, want, n) == 0 && v[1 + n] == '"';
}

static void on_subscribed(conn_t *c) {
  worker_t *w = c->w;
  c->state = ST_SUBSCRIBED;
  if (c->pending) { c->pending = false; w->pending--; }
  counter_inc(&w->a_subscribed);
  counter_inc(&w->a_resolved);
  if (!atomic_load(&G.ramp_over)) ramp_fill(w);
}

static void on_text(conn_t *c, const char *d, size_t n, uint64_t arrival) {
  worker_t *w = c->w;
  const char *end = d + n;
  const char *tv = find_key(d, end, "\"type\"", 6);
  if (type_is(tv, end, "message")) {
    if (c->state != ST_SUBSCRIBED) { w->other_frames++; return; }
    const char *data = find_key(d, end, "\"data\"", 6);
    const char *from = data ? data : d;
    uint64_t t, i;
    bool ok = O.market
      ? parse_u64(find_key(from, end, "\"market_size_usd\"", 17), end, &t) &&
        parse_u64(find_key(from, end, "\"avg_price_usd\"", 15), end, &i)
      : parse_u64(find_key(from, end, "\"t\"", 3), end, &t) && parse_u64(find_key(from, end, "\"i\"", 3), end, &i);
    if (!ok) {
      w->recv_unparsed++;
      return;
    }
    uint64_t lat = arrival > t ? arrival - t : 0;
    w->hist[hist_index(lat)]++;
    if (lat > w->max_us) w->max_us = lat;
    if (i < G.npub) w->counts[i]++;
    if (!w->first_us) w->first_us = arrival;
    w->last_us = arrival;
    if (arrival <= atomic_load_explicit(&G.window_end, memory_order_relaxed)) w->recv_window++;
    counter_inc(&w->a_received);
  } else if (type_is(tv, end, "subscribed")) {
    if (c->state == ST_SUBSCRIBING) on_subscribed(c);
  } else if (type_is(tv, end, "error")) {
    w->error_frames++;
    if (c->state == ST_SUBSCRIBING) {
      char why[120];
      snprintf(why, sizeof why, "subscribe refused: %.*s", (int)(n > 90 ? 90 : n), d);
      conn_close(c, why);
    }
  } else {
    w->other_frames++; /* welcome, pong, presence...: not ours to judge */
  }
}

/* One complete frame. Returns false if the connection was closed. */
static bool on_frame(conn_t *c, bool fin, int op, const char *p, size_t n, uint64_t arrival) {
  worker_t *w = c->w;
  switch (op) {
  case 0x9: /* ping → pong with the same payload */
    w->server_pings++;
    if (conn_send_frame(c, 0xA, p, n) < 0) { conn_close(c, "pong write failed"); return false; }
    return true;
  case 0xA:
    return true;
  case 0x8: {
    w->server_closes++;
    unsigned code = n >= 2 ? ((unsigned)(uint8_t)p[0] << 8 | (uint8_t)p[1]) : 1005;
    char why[96];
    snprintf(why, sizeof why, "server closed (code %u%s%.*s)", code, n > 2 ? ": " : "",
             (int)(n > 2 ? (n - 2 > 60 ? 60 : n - 2) : 0), p + 2);
    uint8_t echo[2] = {(uint8_t)(code == 1005 ? 1000 >> 8 : code >> 8), (uint8_t)(code == 1005 ? 1000 & 0xff : code)};
    (void)conn_send_frame(c, 0x8, echo, 2);
    conn_close(c, atomic_load(&G.stop) ? NULL : why);
    return false;
  }
  case 0x1:
  case 0x2:
    if (c->frag_op) { conn_close(c, "new data frame inside a fragmented message"); return false; }
    if (fin) {
      if (op == 0x1) on_text(c, p, n, arrival);
      else w->other_frames++;
      return c->state != ST_CLOSED;
    }
    c->frag_op = (uint8_t)op;
    osb_buf_reset(&c->frag);
    osb_buf_append(&c->frag, p, n);
    return true;
  case 0x0:
    if (!c->frag_op) { conn_close(c, "continuation without a start frame"); return false; }
    if (c->frag.len + n > MAX_FRAME) { conn_close(c, "fragmented message too large"); return false; }
    osb_buf_append(&c->frag, p, n);
    if (fin) {
      int fop = c->frag_op;
      c->frag_op = 0;
      if (fop == 0x1) on_text(c, c->frag.base, c->frag.len, arrival);
      else w->other_frames++;
      if (c->state == ST_CLOSED) return false;
      osb_buf_free(&c->frag);
    }
    return true;
  default:
    conn_close(c, "unknown opcode");
    return false;
  }
}

/* Parse frames from p[0..n). Returns bytes consumed, or -1 if closed. */
static ssize_t parse_frames(conn_t *c, const char *p, size_t n, uint64_t arrival) {
  size_t off = 0;
  while (n - off >= 2) {
    const uint8_t *h = (const uint8_t *)p + off;
    bool fin = h[0] & 0x80;
    int op = h[0] & 0x0f;
    if (h[0] & 0x70) { conn_close(c, "reserved bits set"); return -1; }
    if (h[1] & 0x80) { conn_close(c, "masked server frame"); return -1; }
    uint64_t len = h[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (n - off < 4) break;
      len = (uint64_t)h[2] << 8 | h[3];
      hdr = 4;
    } else if (len == 127) {
      if (n - off < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
      hdr = 10;
    }
    if (len > MAX_FRAME) { conn_close(c, "frame too large"); return -1; }
    if (n - off < hdr + len) break;
    if (!on_frame(c, fin, op, p + off + hdr, (size_t)len, arrival)) return -1;
    off += hdr + (size_t)len;
  }
  return (ssize_t)off;
}

static bool header_value_eq(const char *head, size_t hlen, const char *name, const char *want) {
  size_t nl = strlen(name);
  const char *p = head, *end = head + hlen;
  while (p < end) {
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!eol) eol = end;
    if ((size_t)(eol - p) > nl && p[nl] == ':' && osb_strcaseeq_n(p, nl, name)) {
      const char *v = p + nl + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      return (size_t)(ve - v) == strlen(want) && memcmp(v, want, (size_t)(ve - v)) == 0;
    }
    p = eol + 2;
  }
  return false;
}

/* Parse the 101 response head. Returns bytes consumed, 0 if incomplete,
 * -1 if the connection was closed. */
static ssize_t parse_handshake(conn_t *c, const char *p, size_t n) {
  const char *eoh = memmem(p, n, "\r\n\r\n", 4);
  if (!eoh) {
    if (n > MAX_HANDSHAKE) { conn_close(c, "handshake response too large"); return -1; }
    return 0;
  }
  size_t hlen = (size_t)(eoh - p) + 4;
  if (hlen < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
    char why[96];
    const char *eol = memchr(p, '\r', hlen);
    snprintf(why, sizeof why, "handshake refused: %.*s", (int)((eol ? eol - p : 40) > 60 ? 60 : (eol ? eol - p : 40)), p);
    conn_close(c, why);
    return -1;
  }
  if (!header_value_eq(p, hlen, "sec-websocket-accept", c->accept)) {
    conn_close(c, "bad Sec-WebSocket-Accept");
    return -1;
  }
  c->w->made++;
  c->state = ST_SUBSCRIBING;
  if (conn_send_frame(c, 0x1, G.subscribe_msg, G.subscribe_len) < 0) {
    conn_close(c, "subscribe write failed");
    return -1;
  }
  return (ssize_t)hlen;
}

/* Consume as much of p[0..n) as possible. Returns consumed or -1. */
static ssize_t conn_consume(conn_t *c, const char *p, size_t n, uint64_t arrival) {
  size_t off = 0;
  if (c->state == ST_HANDSHAKE) {
    ssize_t r = parse_handshake(c, p, n);
    if (r <= 0) return r;
    off = (size_t)r;
  }
  ssize_t r = parse_frames(c, p + off, n - off, arrival);
  if (r < 0) return -1;
  return (ssize_t)off + r;
}

static void conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  worker_t *w = c->w;
  /* One loop-wide buffer: read_cb runs right after alloc_cb for the same
   * handle, so it is never lent twice. */
  osb_assert(!w->rbuf_busy);
  w->rbuf_busy = true;
  *buf = uv_buf_init(w->rbuf, RBUF_SIZE);
}

static void conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  worker_t *w = c->w;
  w->rbuf_busy = false;
  if (nread == 0) return;
  if (nread < 0) {
    conn_close(c, nread == UV_EOF ? (c->state == ST_SUBSCRIBED ? "EOF" : "EOF before subscribed")
                                  : uv_strerror((int)nread));
    return;
  }
  if (c->state == ST_CLOSED) return;
  uint64_t arrival = now_us();
  if (c->in.len == 0) {
    ssize_t used = conn_consume(c, buf->base, (size_t)nread, arrival);
    if (used < 0) return;
    if ((size_t)used < (size_t)nread) osb_buf_append(&c->in, buf->base + used, (size_t)nread - (size_t)used);
  } else {
    osb_buf_append(&c->in, buf->base, (size_t)nread);
    ssize_t used = conn_consume(c, c->in.base, c->in.len, arrival);
    if (used < 0) return;
    if ((size_t)used == c->in.len) osb_buf_free(&c->in);
    else osb_buf_consume(&c->in, (size_t)used);
  }
}

static void conn_connect_cb(uv_connect_t *req, int status) {
  conn_t *c = osb_container_of(req, conn_t, creq);
  if (c->state == ST_CLOSED) return;
  if (status < 0) { conn_close(c, uv_strerror(status)); return; }
  c->state = ST_HANDSHAKE;
  /* A fresh random Sec-WebSocket-Key per connection; the template has one
   * %s slot for it. */
  char hs[700];
  char key_b64[25];
  uint8_t key[16];
  for (int i = 0; i < 16; i += 8) { uint64_t r = rng_next(&c->w->rng); memcpy(key + i, &r, 8); }
  EVP_EncodeBlock((unsigned char *)key_b64, key, 16);
  char cat[64];
  snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key_b64);
  unsigned char sha[EVP_MAX_MD_SIZE];
  unsigned shalen = 0;
  EVP_Digest(cat, strlen(cat), sha, &shalen, EVP_sha1(), NULL);
  EVP_EncodeBlock((unsigned char *)c->accept, sha, (int)shalen);
  int n = snprintf(hs, sizeof hs, G.handshake_req, key_b64);
  int r = conn_write(c, hs, (size_t)n);
  if (r == 0) r = uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb, conn_read_cb);
  if (r < 0) conn_close(c, uv_strerror(r));
}

static void conn_start(worker_t *w, conn_t *c) {
  struct sockaddr_in sa;
  c->w = w;
  c->pending = true;
  w->pending++;
  int r = uv_ip4_addr(O.host, O.port, &sa);
  if (r == 0) r = uv_tcp_init(&w->loop, &c->tcp);
  if (r < 0) {
    c->state = ST_CLOSED;
    c->pending = false;
    w->pending--;
    counter_inc(&w->a_failed);
    counter_inc(&w->a_resolved);
    worker_note_error(w, "connection failed: %s", uv_strerror(r));
    return;
  }
  w->open_handles++;
  c->tcp.data = c;
  c->state = ST_CONNECTING;
  uv_tcp_nodelay(&c->tcp, 1);
  r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, conn_connect_cb);
  if (r < 0) conn_close(c, uv_strerror(r));
}

static void ramp_fill(worker_t *w) {
  while (w->pending < w->window && w->next < w->nconns) conn_start(w, &w->conns[w->next++]);
}

static void worker_tick_cb(uv_timer_t *t) {
  worker_t *w = t->data;
  if (w->next == 0 && w->nconns) ramp_fill(w);
  if (atomic_load(&G.ramp_over) || atomic_load(&G.stop)) {
    /* Abandon connections still in flight and never start the rest. */
    for (uint32_t i = 0; i < w->next; i++)
      if (w->conns[i].state != ST_SUBSCRIBED && w->conns[i].state != ST_CLOSED)
        conn_close(&w->conns[i], "ramp timeout");
    while (w->next < w->nconns) {
      w->next++;
      counter_inc(&w->a_failed);
      counter_inc(&w->a_resolved);
      worker_note_error(w, "connection failed: %s", "ramp timeout, never started");
    }
  }
  if (atomic_load(&G.stop)) {
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn_t *c = &w->conns[i];
      if (c->state == ST_SUBSCRIBED) {
        uint8_t bye[2] = {1000 >> 8, 1000 & 0xff};
        (void)conn_send_frame(c, 0x8, bye, 2);
      }
      conn_close(c, NULL);
    }
    uv_close((uv_handle_t *)&w->tick, NULL);
  }
}

static void worker_thread_main(void *arg) {
  worker_t *w = arg;
  uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* ---------------------------------------------------------------- publisher */

typedef struct pubconn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int idx;
  int state;           /* ST_IDLE, ST_CONNECTING, ST_SUBSCRIBED (= open), ST_CLOSED */
  http_parser parser;
  uint32_t *fifo;      /* publish indexes awaiting a response, in order */
  uint64_t *fifo_us;   /* and when each was built (now_us), for the publish latency */
  uint32_t head, count;
  osb_buf_t out;       /* requests built during this tick */
  uint32_t out_n;
} pubconn_t;

static struct {
  uv_loop_t *loop;
  uv_timer_t tick;
  pubconn_t *pc;
  uint32_t rr;
  char req_head[512];    /* up to "Content-Length: " */
  uint64_t start_us, end_us;
  uint32_t sent, acked, non2xx, errors, unanswered, connect_fails;
  uint8_t *acked_flag;
  uint64_t lat_hist[HIST_BUCKETS]; /* publish request built → response parsed, µs */
  uint64_t lat_n, lat_max_us;
  int first_status;
  char first_error[200];
  bool running, done;
} P;

static http_parser_settings pub_settings;

static uint32_t pub_inflight_total(void) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < O.pub_conns; i++) n += P.pc[i].count;
  return n;
}

static void pub_note_error(const char *fmt, ...) OSB_PRINTF(1, 2);
static void pub_note_error(const char *fmt, ...) {
  if (P.first_error[0]) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(P.first_error, sizeof P.first_error, fmt, ap);
  va_end(ap);
}

static void pub_close_cb(uv_handle_t *h) {
  pubconn_t *pc = h->data;
  pc->state = ST_IDLE;
}

static void pub_close(pubconn_t *pc, const char *why) {
  if (pc->state == ST_IDLE || pc->state == ST_CLOSED) return;
  if (why && pc->count) pub_note_error("publisher connection lost with %u in flight: %s", pc->count, why);
  if (why) P.errors += pc->count;    /* connection lost under them */
  else P.unanswered += pc->count;    /* still waiting when the run stopped */
  pc->count = 0;
  pc->head = 0;
  osb_buf_free(&pc->out);
  pc->out_n = 0;
  pc->state = ST_CLOSED;
  if (!uv_is_closing((uv_handle_t *)&pc->tcp)) uv_close((uv_handle_t *)&pc->tcp, pub_close_cb);
}

static int pub_on_headers_complete(http_parser *hp) {
  if ((hp->status_code < 200 || hp->status_code > 299) && !P.first_status) P.first_status = hp->status_code;
  return 0;
}

static int pub_on_body(http_parser *hp, const char *at, size_t n) {
  if (hp->status_code < 200 || hp->status_code > 299)
    pub_note_error("HTTP %d: %.*s", hp->status_code, (int)(n > 150 ? 150 : n), at);
  return 0;
}

static int pub_on_message_complete(http_parser *hp) {
  pubconn_t *pc = hp->data;
  if (pc->count == 0) return 0; /* a response nobody asked for */
  uint32_t i = pc->fifo[pc->head];
  uint64_t lat = now_us() - pc->fifo_us[pc->head];
  P.lat_hist[hist_index(lat)]++;
  P.lat_n++;
  if (lat > P.lat_max_us) P.lat_max_us = lat;
  pc->head = (pc->head + 1) % O.pub_inflight;
  pc->count--;
  if (hp->status_code >= 200 && hp->status_code <= 299) {
    P.acked++;
    if (i < G.npub) P.acked_flag[i] = 1;
  } else {
    P.non2xx++;
    if (!P.first_error[0]) pub_note_error("HTTP %d", hp->status_code);
  }
  return 0;
}

static void pub_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char rb[RBUF_SIZE]; /* main loop only */
  *buf = uv_buf_init(rb, sizeof rb);
}

static void pub_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pubconn_t *pc = s->data;
  if (nread == 0) return;
  if (nread < 0) { pub_close(pc, nread == UV_EOF ? "EOF" : uv_strerror((int)nread)); return; }
  size_t used = http_parser_execute(&pc->parser, &pub_settings, buf->base, (size_t)nread);
  if (HTTP_PARSER_ERRNO(&pc->parser) != HPE_OK || used != (size_t)nread) {
    pub_close(pc, http_errno_name(HTTP_PARSER_ERRNO(&pc->parser)));
  }
}

static void pub_connect_cb(uv_connect_t *req, int status) {
  pubconn_t *pc = osb_container_of(req, pubconn_t, creq);
  if (pc->state != ST_CONNECTING) return;
  if (status < 0) {
    P.connect_fails++;
    pub_note_error("publisher connect: %s", uv_strerror(status));
    pc->state = ST_CLOSED;
    uv_close((uv_handle_t *)&pc->tcp, pub_close_cb);
    return;
  }
  int r = uv_read_start((uv_stream_t *)&pc->tcp, pub_alloc_cb, pub_read_cb);
  if (r < 0) { pub_close(pc, uv_strerror(r)); return; }
  pc->state = ST_SUBSCRIBED;
}

static void pub_connect(pubconn_t *pc) {
  struct sockaddr_in sa;
  if (uv_ip4_addr(O.host, O.pub_port ? O.pub_port : O.port, &sa) < 0 || uv_tcp_init(P.loop, &pc->tcp) < 0) return;
  pc->tcp.data = pc;
  uv_tcp_nodelay(&pc->tcp, 1);
  http_parser_init(&pc->parser, HTTP_RESPONSE);
  pc->parser.data = pc;
  pc->head = pc->count = 0;
  pc->state = ST_CONNECTING;
  if (uv_tcp_connect(&pc->creq, &pc->tcp, (const struct sockaddr *)&sa, pub_connect_cb) < 0) {
    P.connect_fails++;
    pc->state = ST_CLOSED;
    uv_close((uv_handle_t *)&pc->tcp, pub_close_cb);
  }
}

static void pub_write_cb(uv_write_t *req, int status) {
  pubconn_t *pc = req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED) pub_close(pc, uv_strerror(status));
}

static bool pub_enqueue(uint32_t i, uint64_t t) {
  for (uint32_t k = 0; k < O.pub_conns; k++) {
    pubconn_t *pc = &P.pc[(P.rr + k) % O.pub_conns];
    if (pc->state != ST_SUBSCRIBED || pc->count >= O.pub_inflight) continue;
    P.rr = (P.rr + k + 1) % O.pub_conns;
    char body[640];
    if (O.market) {
      int bl = snprintf(body, sizeof body, "{\"market_size_usd\":%" PRIu64 ",\"avg_price_usd\":%" PRIu32 "}", t, i);
      osb_buf_printf(&pc->out, "PUT /api/market/procedures/%u%s%d\r\n\r\n%s", 1 + i % O.market, P.req_head, bl, body);
    } else {
      osb_buf_t ch = OSB_BUF_INIT;
      osb_buf_json_str(&ch, O.channel, strlen(O.channel));
      int bl = snprintf(body, sizeof body, "{\"channel\":%s,\"data\":{\"t\":%" PRIu64 ",\"i\":%" PRIu32 "}}",
                        ch.base, t, i);
      osb_buf_free(&ch);
      osb_buf_printf(&pc->out, "POST /api/realtime/publish%s%d\r\n\r\n%s", P.req_head, bl, body);
    }
    pc->out_n++;
    pc->fifo[(pc->head + pc->count) % O.pub_inflight] = i;
    pc->fifo_us[(pc->head + pc->count) % O.pub_inflight] = t;
    pc->count++;
    return true;
  }
  return false;
}

static void pub_flush(void) {
  for (uint32_t k = 0; k < O.pub_conns; k++) {
    pubconn_t *pc = &P.pc[k];
    if (!pc->out.len) continue;
    wreq_t *wr = osb_malloc(sizeof *wr + pc->out.len);
    memcpy(wr->data, pc->out.base, pc->out.len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)pc->out.len);
    osb_buf_reset(&pc->out);
    pc->out_n = 0;
    int r = uv_write(&wr->req, (uv_stream_t *)&pc->tcp, &b, 1, pub_write_cb);
    if (r < 0) { free(wr); pub_close(pc, uv_strerror(r)); }
  }
}

static void pub_tick_cb(uv_timer_t *t) {
  uint64_t now = now_us();
  uint64_t el = now - P.start_us;
  uint64_t due = el * O.rate / 1000000u;
  if (due > G.npub) due = G.npub;
  /* Reconnect publisher connections lost mid-run. */
  for (uint32_t k = 0; k < O.pub_conns; k++)
    if (P.pc[k].state == ST_IDLE) pub_connect(&P.pc[k]);
  while (P.sent < due) {
    if (!pub_enqueue(P.sent, now)) break; /* every connection at its in-flight cap */
    P.sent++;
  }
  pub_flush();
  if (el >= (uint64_t)O.duration_s * 1000000u) {
    P.end_us = now;
    P.running = false;
    P.done = true;
    uv_timer_stop(&P.tick);
  }
}

/* --------------------------------------------------------------- controller */

static struct {
  int phase;
  uv_timer_t tick;
  uv_signal_t sigint;
  uint64_t t0, ramp_deadline, settle_at, drain_deadline, hard_deadline;
  uint64_t ramp_end_us;
  uint64_t subs_at_start;
  uint64_t cpu_start_us, cpu_end_us; /* this process, all threads (getrusage) */
  /* the server's (--server-pid) user and system CPU, µs, from /proc/PID/stat:
   * at the start of the publish window, at its end, and once the drain is over */
  uint64_t srv_u0, srv_s0, srv_u1, srv_s1, srv_u2, srv_s2, drain_end_us;
  long rss_before_kb, rss_idle_kb;
  bool interrupted, deadline_hit;
} C;

static uint64_t cpu_used_us(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
         (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* utime and stime of pid in µs (fields 14 and 15 of /proc/PID/stat). */
static bool read_cpu_us(int pid, uint64_t *user, uint64_t *sys) {
  if (pid <= 0) return false;
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  const char *p = strrchr(line, ')'); /* the command name may hold spaces */
  if (!p) return false;
  unsigned long long ut = 0, st = 0;
  /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return false;
  long hz = sysconf(_SC_CLK_TCK);
  if (hz <= 0) hz = 100;
  *user = ut * 1000000ull / (unsigned long long)hz;
  *sys = st * 1000000ull / (unsigned long long)hz;
  return true;
}

static long read_rss_kb(int pid) {
  if (pid <= 0) return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
  fclose(f);
  return kb;
}

static uint64_t sum_counter(size_t off) {
  uint64_t s = 0;
  for (uint32_t i = 0; i < O.threads; i++)
    s += counter_get((_Atomic uint64_t *)((char *)&G.workers[i] + off));
  return s;
}
#define SUM(field) sum_counter(offsetof(worker_t, field))

static void say(const char *fmt, ...) OSB_PRINTF(1, 2);
static void say(const char *fmt, ...) {
  if (O.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "wsload: [%6.2fs] ", (double)(now_us() - C.t0) / 1e6);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void controller_stop(void) {
  C.phase = PH_DONE;
  atomic_store(&G.stop, 1);
  uv_timer_stop(&C.tick);
  uv_close((uv_handle_t *)&C.tick, NULL);
  uv_close((uv_handle_t *)&C.sigint, NULL);
  if (!uv_is_closing((uv_handle_t *)&P.tick)) uv_close((uv_handle_t *)&P.tick, NULL);
  for (uint32_t k = 0; k < O.pub_conns; k++) {
    pubconn_t *pc = &P.pc[k];
    if (pc->state == ST_CONNECTING || pc->state == ST_SUBSCRIBED) pub_close(pc, NULL);
  }
}

static void controller_tick_cb(uv_timer_t *t) {
  uint64_t now = now_us();
  if (now >= C.hard_deadline && C.phase != PH_DONE) {
    C.deadline_hit = true;
    say("overall deadline reached, stopping");
    controller_stop();
    return;
  }
  switch (C.phase) {
  case PH_RAMP: {
    uint64_t resolved = SUM(a_resolved);
    if (resolved >= O.conns) {
      C.ramp_end_us = now;
      C.phase = PH_SETTLE;
      C.settle_at = now + (uint64_t)O.settle_ms * 1000u;
      say("ramp done: %" PRIu64 " subscribed, %" PRIu64 " failed", SUM(a_subscribed), SUM(a_failed));
    } else if (now >= C.ramp_deadline && !atomic_load(&G.ramp_over)) {
      say("ramp timeout: %" PRIu64 "/%u resolved", resolved, O.conns);
      atomic_store(&G.ramp_over, 1);
    }
    break;
  }
  case PH_SETTLE: {
    if (now < C.settle_at) break;
    C.rss_idle_kb = read_rss_kb(O.server_pid);
    C.subs_at_start = SUM(a_subscribed) - SUM(a_dropped);
    if (C.subs_at_start == 0) {
      say("no subscribed connections; not publishing");
      controller_stop();
      break;
    }
    bool any = false;
    for (uint32_t k = 0; k < O.pub_conns; k++) any |= P.pc[k].state == ST_SUBSCRIBED;
    if (!any) {
      say("no publisher connection is open; not publishing");
      controller_stop();
      break;
    }
    C.phase = PH_PUBLISH;
    C.cpu_start_us = cpu_used_us();
    read_cpu_us(O.server_pid, &C.srv_u0, &C.srv_s0);
    P.start_us = now_us();
    atomic_store(&G.window_end, P.start_us + (uint64_t)O.duration_s * 1000000u);
    P.running = true;
    say("publishing %u msg/s for %us to %" PRIu64 " subscribers", O.rate, O.duration_s, C.subs_at_start);
    uv_timer_start(&P.tick, pub_tick_cb, 0, O.tick_ms);
    break;
  }
  case PH_PUBLISH:
    if (P.done) {
      C.cpu_end_us = cpu_used_us();
      read_cpu_us(O.server_pid, &C.srv_u1, &C.srv_s1);
      C.phase = PH_DRAIN;
      C.drain_deadline = now + (uint64_t)O.drain_ms * 1000u;
      say("publish phase over: %u sent, %u acked; draining", P.sent, P.acked);
    }
    break;
  case PH_DRAIN: {
    bool replies_done = pub_inflight_total() == 0;
    bool deliveries_done = SUM(a_received) >= (uint64_t)P.acked * C.subs_at_start;
    if ((replies_done && deliveries_done) || now >= C.drain_deadline) {
      if (!(replies_done && deliveries_done)) say("drain timeout");
      read_cpu_us(O.server_pid, &C.srv_u2, &C.srv_s2);
      C.drain_end_us = now;
      controller_stop();
    }
    break;
  }
  default:
    break;
  }
}

static void sigint_cb(uv_signal_t *s, int signum) {
  C.interrupted = true;
  say("interrupted");
  if (C.phase != PH_DONE) controller_stop();
}

/* ------------------------------------------------------------------- report */

static void usage(FILE *f) {
  fprintf(f,
    "usage: wsload [options]\n"
    "  --port P            server port (default 10000)\n"
    "  --pub-port P        publish through this port instead (another instance: cross-instance latency)\n"
    "  --host H            server IPv4 address (default 127.0.0.1)\n"
    "  --path /ws          WebSocket path\n"
    "  --conns N           WebSocket connections (default 100)\n"
    "  --rate R            publishes per second (default 100)\n"
    "  --duration S        publish phase in seconds (default 10)\n"
    "  --channel C         channel (default market:all)\n"
    "  --key K             publish bearer key (default: env SERVICE_API_KEY)\n"
    "  --server-pid P      report the server's RSS (VmRSS of /proc/P/status)\n"
    "  --drain-ms MS       wait for outstanding deliveries after publishing (default 5000)\n"
    "  --threads N         client event loops, each owning a share of the sockets (default 1)\n"
    "  --ramp-batch N      connections in flight while ramping up (default 256)\n"
    "  --ramp-timeout-ms MS  give up on connections not subscribed by then (default 60000)\n"
    "  --settle-ms MS      idle pause before the idle RSS reading (default 500)\n"
    "  --pub-conns N       keep-alive publisher connections (default 4)\n"
    "  --pub-inflight N    pipelined publishes per publisher connection (default 32)\n"
    "  --tick-ms MS        publisher timer period (default 1)\n"
    "  --market N          publish by PUT /api/market/procedures/<1+i%%N> (latency: write → event)\n"
    "  --quiet             no progress lines on stderr\n");
}

static bool parse_uint(const char *s, uint32_t lo, uint32_t hi, uint32_t *out) {
  char *e;
  errno = 0;
  unsigned long v = strtoul(s, &e, 10);
  if (errno || *s == '\0' || *e || *s == '-' || v < lo || v > hi) return false;
  *out = (uint32_t)v;
  return true;
}

static int parse_opts(int argc, char **argv) {
  static const struct option lo[] = {
    {"port", 1, 0, 'p'}, {"host", 1, 0, 'H'}, {"path", 1, 0, 'P'}, {"conns", 1, 0, 'c'},
    {"rate", 1, 0, 'r'}, {"duration", 1, 0, 'd'}, {"channel", 1, 0, 'C'}, {"key", 1, 0, 'k'},
    {"server-pid", 1, 0, 's'}, {"drain-ms", 1, 0, 'D'}, {"threads", 1, 0, 't'},
    {"ramp-batch", 1, 0, 'b'}, {"ramp-timeout-ms", 1, 0, 'T'}, {"settle-ms", 1, 0, 'S'},
    {"pub-conns", 1, 0, 'n'}, {"pub-inflight", 1, 0, 'i'}, {"tick-ms", 1, 0, 'm'},
    {"market", 1, 0, 'M'}, {"pub-port", 1, 0, 'o'}, {"quiet", 0, 0, 'q'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  int ch;
  uint32_t v;
  while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
#define NUM(lo_, hi_, dst) do { if (!parse_uint(optarg, lo_, hi_, &v)) goto bad; dst = v; } while (0)
    switch (ch) {
    case 'p': NUM(1, 65535, O.port); break;
    case 'o': NUM(1, 65535, O.pub_port); break;
    case 'H': O.host = optarg; break;
    case 'P': O.path = optarg; break;
    case 'c': NUM(1, 1000000, O.conns); break;
    case 'r': NUM(1, 1000000, O.rate); break;
    case 'd': NUM(1, 3600, O.duration_s); break;
    case 'C': O.channel = optarg; break;
    case 'k': O.key = optarg; break;
    case 's': NUM(1, 0x7fffffff, O.server_pid); break;
    case 'D': NUM(0, 600000, O.drain_ms); break;
    case 't': NUM(1, 64, O.threads); break;
    case 'b': NUM(1, 100000, O.ramp_batch); break;
    case 'T': NUM(100, 3600000, O.ramp_timeout_ms); break;
    case 'S': NUM(0, 600000, O.settle_ms); break;
    case 'n': NUM(1, 256, O.pub_conns); break;
    case 'i': NUM(1, 65536, O.pub_inflight); break;
    case 'm': NUM(1, 1000, O.tick_ms); break;
    case 'M': NUM(1, 2147483647, O.market); break;
    case 'q': O.quiet = true; break;
    case 'h': usage(stdout); exit(0);
    default: goto bad;
    }
#undef NUM
  }
  if (optind != argc) goto bad;
  if (!O.key) O.key = getenv("SERVICE_API_KEY");
  if (!O.key || !*O.key) { fprintf(stderr, "wsload: --key or SERVICE_API_KEY is required\n"); return -1; }
  if (strlen(O.key) > 256 || strpbrk(O.key, "\r\n")) { fprintf(stderr, "wsload: bad --key\n"); return -1; }
  if (strlen(O.channel) > 256 || strlen(O.path) > 200 || strpbrk(O.path, "\r\n %")) {
    fprintf(stderr, "wsload: --channel or --path too long or invalid\n");
    return -1;
  }
  if ((uint64_t)O.rate * O.duration_s > 10000000u) {
    fprintf(stderr, "wsload: rate × duration must stay under 10,000,000 publishes\n");
    return -1;
  }
  if (O.threads > O.conns) O.threads = O.conns;
  return 0;
bad:
  fprintf(stderr, "wsload: bad option or value%s%s\n", optind <= argc && argv[optind - 1] ? ": " : "",
          optind <= argc && argv[optind - 1] ? argv[optind - 1] : "");
  usage(stderr);
  return -1;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) perror("wsload: setrlimit");
  }
  if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)O.conns + O.pub_conns + 32 > rl.rlim_cur)
    fprintf(stderr, "wsload: warning: %u connections need more descriptors than RLIMIT_NOFILE (%llu)\n",
            O.conns, (unsigned long long)rl.rlim_cur);
}

static void json_escape_into(char *out, size_t outlen, const char *s) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_json_str(&b, s, strlen(s));
  snprintf(out, outlen, "%s", b.base);
  osb_buf_free(&b);
}

int main(int argc, char **argv) {
  if (parse_opts(argc, argv) < 0) return 2;
  raise_nofile();
  C.t0 = now_us();
  G.npub = O.rate * O.duration_s;
  atomic_store(&G.window_end, UINT64_MAX);

  G.handshake_len = (size_t)snprintf(G.handshake_req, sizeof G.handshake_req,
    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: %%s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: wsload\r\n\r\n",
    O.path, O.host, O.port);
  {
    char ch[600];
    json_escape_into(ch, sizeof ch, O.channel);
    G.subscribe_len = (size_t)snprintf(G.subscribe_msg, sizeof G.subscribe_msg,
                                       "{\"type\":\"subscribe\",\"channel\":%s,\"id\":1}", ch);
  }
  snprintf(P.req_head, sizeof P.req_head,
           " HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: ", O.host, O.pub_port ? O.pub_port : O.port, O.key);

  C.rss_before_kb = read_rss_kb(O.server_pid);
  if (O.server_pid && C.rss_before_kb < 0)
    fprintf(stderr, "wsload: warning: cannot read /proc/%d/status\n", O.server_pid);

  /* Workers: contiguous shares of the connections. */
  G.workers = osb_calloc(O.threads, sizeof(worker_t));
  uint64_t seed;
  if (getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = now_us() ^ (uint64_t)getpid() << 32;
  conn_t *all = osb_calloc(O.conns, sizeof(conn_t));
  for (uint32_t i = 0, first = 0; i < O.threads; i++) {
    worker_t *w = &G.workers[i];
    w->id = (int)i;
    w->nconns = O.conns / O.threads + (i < O.conns % O.threads);
    w->conns = all + first;
    first += w->nconns;
    w->window = O.ramp_batch / O.threads ? O.ramp_batch / O.threads : 1;
    w->rng = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    if (!w->rng) w->rng = 1;
    w->counts = osb_calloc(G.npub ? G.npub : 1, sizeof(uint32_t));
    osb_assert(uv_loop_init(&w->loop) == 0);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, worker_tick_cb, 0, 20);
  }
  worker_t *w0 = &G.workers[0];
  P.loop = &w0->loop;
  P.pc = osb_calloc(O.pub_conns, sizeof(pubconn_t));
  P.acked_flag = osb_calloc(G.npub ? G.npub : 1, 1);
  pub_settings.on_headers_complete = pub_on_headers_complete;
  pub_settings.on_body = pub_on_body;
  pub_settings.on_message_complete = pub_on_message_complete;
  for (uint32_t k = 0; k < O.pub_conns; k++) {
    P.pc[k].idx = (int)k;
    P.pc[k].fifo = osb_calloc(O.pub_inflight, sizeof(uint32_t));
    P.pc[k].fifo_us = osb_calloc(O.pub_inflight, sizeof(uint64_t));
    pub_connect(&P.pc[k]);
  }
  uv_timer_init(P.loop, &P.tick);

  C.phase = PH_RAMP;
  C.ramp_deadline = C.t0 + (uint64_t)O.ramp_timeout_ms * 1000u;
  C.hard_deadline = C.ramp_deadline + (uint64_t)O.settle_ms * 1000u + (uint64_t)O.duration_s * 1000000u +
                    (uint64_t)O.drain_ms * 1000u + 15000000u;
  uv_timer_init(P.loop, &C.tick);
  uv_timer_start(&C.tick, controller_tick_cb, 10, 10);
  uv_signal_init(P.loop, &C.sigint);
  uv_signal_start(&C.sigint, sigint_cb, SIGINT);

  say("%u connections to ws://%s:%d%s on %u loop(s), channel %s", O.conns, O.host, O.port, O.path,
      O.threads, O.channel);
  for (uint32_t i = 1; i < O.threads; i++)
    osb_assert(uv_thread_create(&G.workers[i].thread, worker_thread_main, &G.workers[i]) == 0);
  uv_run(P.loop, UV_RUN_DEFAULT);
  for (uint32_t i = 1; i < O.threads; i++) uv_thread_join(&G.workers[i].thread);
  uint64_t t_end = now_us();

  /* ---- merge ---- */
  static uint64_t hist[HIST_BUCKETS];
  uint64_t made = 0, subscribed = 0, failed = 0, dropped = 0, received = 0, recv_window = 0,
           unparsed = 0, pings = 0, closes = 0, maxus = 0, first_us = UINT64_MAX, last_us = 0;
  const char *first_error = "";
  for (uint32_t i = 0; i < O.threads; i++) {
    worker_t *w = &G.workers[i];
    made += w->made;
    subscribed += counter_get(&w->a_subscribed);
    failed += counter_get(&w->a_failed);
    dropped += counter_get(&w->a_dropped);
    received += counter_get(&w->a_received);
    recv_window += w->recv_window;
    unparsed += w->recv_unparsed;
    pings += w->server_pings;
    closes += w->server_closes;
    if (w->max_us > maxus) maxus = w->max_us;
    if (w->first_us && w->first_us < first_us) first_us = w->first_us;
    if (w->last_us > last_us) last_us = w->last_us;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) hist[b] += w->hist[b];
    if (!first_error[0] && w->first_error[0]) first_error = w->first_error;
    if (i > 0) osb_assert(uv_loop_close(&w->loop) == 0);
  }
  /* Per publish: deliveries of acknowledged publishes, capped at one per
   * subscriber (more would be duplicates); deliveries of publishes that were
   * never acknowledged are reported apart. */
  uint64_t subs = C.subs_at_start, expected = (uint64_t)P.acked * subs, got = 0, dups = 0, unacked_deliv = 0;
  for (uint32_t i = 0; i < G.npub; i++) {
    uint64_t n = 0;
    for (uint32_t k = 0; k < O.threads; k++) n += G.workers[k].counts[i];
    if (P.acked_flag[i]) {
      got += n > subs ? subs : n;
      if (n > subs) dups += n - subs;
    } else {
      unacked_deliv += n;
    }
  }
  uint64_t lost = expected - got;
  uint64_t hist_total = 0;
  for (unsigned b = 0; b < HIST_BUCKETS; b++) hist_total += hist[b];
  double window_s = P.start_us ? (double)O.duration_s : 0;
  double dps = window_s > 0 ? (double)recv_window / window_s : 0;
  double span_s = (last_us > P.start_us && P.start_us) ? (double)(last_us - P.start_us) / 1e6 : 0;
  double dps_span = span_s > 0 ? (double)received / span_s : 0;
  double p50 = hist_percentile(hist, hist_total, 50) / 1000.0, p95 = hist_percentile(hist, hist_total, 95) / 1000.0,
         p99 = hist_percentile(hist, hist_total, 99) / 1000.0, pmax = (double)maxus / 1000.0;
  double loss_pct = expected ? 100.0 * (double)lost / (double)expected : 0;
  double rss_per_conn = (C.rss_before_kb >= 0 && C.rss_idle_kb >= 0 && subscribed)
                            ? (double)(C.rss_idle_kb - C.rss_before_kb) / (double)subscribed : -1;
  uint32_t unanswered = P.unanswered;
  /* Our own CPU over the publish window, in % of one core: near 100 × loops
   * means the figures are the client's limit, not the server's. */
  double pub_s = P.end_us > P.start_us ? (double)(P.end_us - P.start_us) / 1e6 : 0;
  double client_cpu = pub_s > 0 && C.cpu_end_us >= C.cpu_start_us
                          ? (double)(C.cpu_end_us - C.cpu_start_us) / 1e4 / pub_s : 0;
  double pl50 = hist_percentile(P.lat_hist, P.lat_n, 50) / 1000.0,
         pl99 = hist_percentile(P.lat_hist, P.lat_n, 99) / 1000.0;
  /* The server's CPU: % of one core over the publish window, and CPU time
   * per delivery from the window's start to the end of the drain (when the
   * last delivery arrived), so deliveries still being written after the
   * window are counted with the CPU they cost. */
  bool srv_cpu = O.server_pid && C.drain_end_us && C.srv_u2 + C.srv_s2 >= C.srv_u0 + C.srv_s0;
  double srv_user_pct = srv_cpu && pub_s > 0 ? (double)(C.srv_u1 - C.srv_u0) / 1e4 / pub_s : -1;
  double srv_sys_pct = srv_cpu && pub_s > 0 ? (double)(C.srv_s1 - C.srv_s0) / 1e4 / pub_s : -1;
  double srv_pct = srv_cpu && pub_s > 0 ? srv_user_pct + srv_sys_pct : -1;
  double srv_ns_per = srv_cpu && received
                          ? (double)(C.srv_u2 + C.srv_s2 - C.srv_u0 - C.srv_s0) * 1000.0 / (double)received : -1;
  double srv_user_share = srv_cpu && C.srv_u2 + C.srv_s2 > C.srv_u0 + C.srv_s0
                          ? 100.0 * (double)(C.srv_u2 - C.srv_u0) / (double)(C.srv_u2 + C.srv_s2 - C.srv_u0 - C.srv_s0) : -1;
  double ramp_s = C.ramp_end_us ? (double)(C.ramp_end_us - C.t0) / 1e6 : -1;
  bool ok = !C.interrupted && !C.deadline_hit && failed == 0 && dropped == 0 && subscribed == O.conns &&
            P.sent == G.npub && P.acked == P.sent && lost == 0;

  printf("wsload: ws://%s:%d%s channel %s, %u conns, %u msg/s for %us, %u loop(s)\n", O.host, O.port, O.path,
         O.channel, O.conns, O.rate, O.duration_s, O.threads);
  printf("  connections   attempted %u  made %" PRIu64 "  subscribed %" PRIu64 "  failed %" PRIu64
         "  dropped %" PRIu64 "  (ramp %.2fs)\n", O.conns, made, subscribed, failed, dropped, ramp_s);
  printf("  publishes     due %u  sent %u  acked %u  non-2xx %u  errors %u  unanswered %u\n", G.npub, P.sent,
         P.acked, P.non2xx, P.errors, unanswered);
  printf("  deliveries    expected %" PRIu64 "  received %" PRIu64 "  lost %" PRIu64 " (%.4f%%)  dup %" PRIu64
         "  of-unacked %" PRIu64 "  unparsed %" PRIu64 "\n", expected, got, lost, loss_pct, dups, unacked_deliv,
         unparsed);
  printf("  throughput    %.0f deliveries/s in the %.0fs publish window (%.0f/s over %.2fs to the last arrival)\n",
         dps, window_s, dps_span, span_s);
  printf("  latency ms    p50 %.3f  p95 %.3f  p99 %.3f  max %.3f  (n=%" PRIu64 ")\n", p50, p95, p99, pmax,
         hist_total);
  printf("  publish ms    p50 %.3f  p99 %.3f  max %.3f  (request sent → response, n=%" PRIu64 ")\n", pl50, pl99,
         (double)P.lat_max_us / 1000.0, P.lat_n);
  if (srv_cpu)
    printf("  server CPU    %.1f%% of one core in the window (user %.1f%%, system %.1f%%); %.0f ns per delivery"
           " (%.0f%% user)\n", srv_pct, srv_user_pct, srv_sys_pct, srv_ns_per, srv_user_share);
  if (O.server_pid)
    printf("  server RSS    before %ld KB  idle with %" PRIu64 " sockets %ld KB  → %.2f KB/connection\n",
           C.rss_before_kb, subscribed, C.rss_idle_kb, rss_per_conn);
  printf("  server pings %" PRIu64 ", server closes %" PRIu64 "; wsload CPU %.0f%% of one core during the window%s\n",
         pings, closes, client_cpu,
         client_cpu >= 90.0 * O.threads ? " (client-bound: try --threads 2)" : "");
  if (first_error[0]) printf("  first connection error: %s\n", first_error);
  if (P.first_error[0]) printf("  first publish error: %s\n", P.first_error);
  if (C.deadline_hit) printf("  stopped by the overall deadline\n");
  printf("  result        %s\n", ok ? "OK" : "FAIL");

  char chan[600], cerr[400], perr[500];
  json_escape_into(chan, sizeof chan, O.channel);
  json_escape_into(cerr, sizeof cerr, first_error);
  json_escape_into(perr, sizeof perr, P.first_error);
  printf("WSLOAD {\"ok\":%s,\"port\":%d,\"channel\":%s,\"conns\":%u,\"rate\":%u,\"duration_s\":%u,\"threads\":%u,"
         "\"conns_attempted\":%u,\"conns_made\":%" PRIu64 ",\"conns_subscribed\":%" PRIu64 ",\"conns_failed\":%" PRIu64
         ",\"conns_dropped\":%" PRIu64 ",\"ramp_s\":%.3f,"
         "\"pub_due\":%u,\"pub_sent\":%u,\"pub_acked\":%u,\"pub_non2xx\":%u,\"pub_errors\":%u,\"pub_unanswered\":%u,"
         "\"deliveries_expected\":%" PRIu64 ",\"deliveries_received\":%" PRIu64 ",\"lost\":%" PRIu64
         ",\"loss_pct\":%.6f,\"duplicates\":%" PRIu64 ",\"deliveries_per_s\":%.1f,\"deliveries_per_s_span\":%.1f,"
         "\"p50_ms\":%.3f,\"p95_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
         "\"rss_before_kb\":%ld,\"rss_idle_kb\":%ld,\"rss_per_conn_kb\":%.3f,"
         "\"server_pings\":%" PRIu64 ",\"server_closes\":%" PRIu64 ",\"deadline_hit\":%s,\"elapsed_s\":%.2f,"
         "\"client_cpu_pct\":%.1f,\"pub_p50_ms\":%.3f,\"pub_p99_ms\":%.3f,\"pub_max_ms\":%.3f,"
         "\"server_cpu_pct\":%.1f,\"server_user_pct\":%.1f,\"server_sys_pct\":%.1f,\"server_ns_per_delivery\":%.1f,"
         "\"server_user_share_pct\":%.1f,\"pub_first_status\":%d,\"first_conn_error\":%s,\"first_pub_error\":%s}\n",
         ok ? "true" : "false", O.port, chan, O.conns, O.rate, O.duration_s, O.threads, O.conns, made, subscribed,
         failed, dropped, ramp_s, G.npub, P.sent, P.acked, P.non2xx, P.errors, unanswered, expected, got, lost,
         loss_pct, dups, dps, dps_span, p50, p95, p99, pmax, C.rss_before_kb, C.rss_idle_kb, rss_per_conn, pings,
         closes, C.deadline_hit ? "true" : "false", (double)(t_end - C.t0) / 1e6, client_cpu, pl50, pl99,
         (double)P.lat_max_us / 1000.0, srv_pct, srv_user_pct, srv_sys_pct, srv_ns_per, srv_user_share, P.first_status, cerr, perr);
  fflush(stdout);

  int rc = uv_loop_close(&w0->loop);
  if (rc != 0) fprintf(stderr, "wsload: warning: loop not clean at exit (%s)\n", uv_strerror(rc));
  for (uint32_t i = 0; i < O.threads; i++) free(G.workers[i].counts);
  for (uint32_t k = 0; k < O.pub_conns; k++) { free(P.pc[k].fifo); free(P.pc[k].fifo_us); osb_buf_free(&P.pc[k].out); }
  free(P.pc);
  free(P.acked_flag);
  free(all);
  free(G.workers);
  return ok ? 0 : 1;
}
