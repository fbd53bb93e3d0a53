/* top.c: `osbackend top [--url URL]`, the dashboard in a terminal.
 *
 * A small WebSocket client on libuv (the server's framing code builds
 * unmasked server frames and parses masked client ones, the opposite of
 * what a client needs, so the few lines of client framing live here):
 * connect, upgrade, `auth {token}` with OSB_TOKEN after `welcome`,
 * `subscribe dashboard:metrics`, and redraw an 80×24 screen on every sample
 * and once a second. Any disconnection reconnects with a capped, jittered
 * backoff; `q`, Ctrl-C or SIGTERM leave the alternate screen, show the
 * cursor and restore the terminal mode. No ncurses: a full redraw of 24
 * short lines a second needs nothing but ANSI escapes. */
#include "apps/top.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "core/core.h"

#define CHANNEL "dashboard:metrics"
#define SPARK_N 60
#define MAX_FRAME (1u << 20)
#define COLS 80

typedef enum { ST_CONNECTING, ST_HANDSHAKE, ST_LIVE, ST_DOWN } state_t;

static struct {
  uv_loop_t loop;
  uv_tcp_t tcp;
  bool tcp_open;
  uv_connect_t conn_req;
  uv_getaddrinfo_t gai;
  uv_timer_t tick, retry;
  uv_signal_t sigint, sigterm, sigwinch;
  uv_tty_t tin;
  bool tty;
  bool quitting;

  char host[256], port[8], path[512], url[800];
  const char *token;

  state_t state;
  char note[256];            /* why it is not live */
  unsigned attempt;
  osb_buf_t in;              /* bytes read, not yet parsed */
  osb_buf_t msg;             /* a fragmented message being reassembled */
  json_t *last;              /* the last sample */
  uint64_t last_ms;
  double rps[SPARK_N], wsc[SPARK_N];
  size_t nspark;
} T;

/* ---- output ---- */

static void out(const char *s, size_t n) {
  while (n) {
    ssize_t w = write(STDOUT_FILENO, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

/* Append a line clipped to COLS visible characters (escape sequences do not count). */
static void line(osb_buf_t *b, const char *fmt, ...) OSB_PRINTF(2, 3);
static void line(osb_buf_t *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  size_t vis = 0, i = 0, n = strlen(tmp);
  for (; i < n && vis < COLS; i++) {
    if (tmp[i] == '\x1b') {
      while (i < n && tmp[i] != 'm') osb_buf_append(b, &tmp[i++], 1);
      if (i < n) osb_buf_append(b, &tmp[i], 1);
      continue;
    }
    osb_buf_append(b, &tmp[i], 1);
    if (((unsigned char)tmp[i] & 0xC0) != 0x80) vis++;
  }
  osb_buf_puts(b, "\x1b[0m\x1b[K\r\n");
}

static double fig(const char *group, const char *key, bool *ok) {
  json_t *v = json_object_get(json_object_get(T.last, group), key);
  if (ok) *ok = json_is_number(v);
  return json_is_number(v) ? json_number_value(v) : 0;
}

static void bar(char *out_, size_t width, double frac) {
  if (!(frac >= 0)) frac = 0;
  if (frac > 1) frac = 1;
  size_t fill = (size_t)lround(frac * (double)width);
  out_[0] = '[';
  for (size_t i = 0; i < width; i++) out_[1 + i] = i < fill ? '#' : '.';
  out_[width + 1] = ']';
  out_[width + 2] = 0;
}

static const char *colour_of(const char *st) {
  if (!st) return "\x1b[37m";
  if (!strcmp(st, "pass") || !strcmp(st, "closed")) return "\x1b[32m";
  if (!strcmp(st, "warn") || !strcmp(st, "half_open")) return "\x1b[33m";
  if (!strcmp(st, "fail") || !strcmp(st, "open")) return "\x1b[31m";
  return "\x1b[37m";
}

static void spark(char *o, const double *v, size_t n) {
  static const char lv[] = " .:-=+*#%@";
  double max = 0;
  for (size_t i = 0; i < n; i++) max = v[i] > max ? v[i] : max;
  for (size_t i = 0; i < n; i++) o[i] = lv[max > 0 ? (int)lround(v[i] / max * 9.0) : 0];
  o[n] = 0;
}

static void draw(void) {
  if (T.quitting) return;
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_puts(&b, "\x1b[H");
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  const char *st = T.state == ST_LIVE ? "\x1b[30;42m live " : T.state == ST_DOWN ? "\x1b[37;41m disconnected - reconnecting "
                                                                                 : "\x1b[30;43m connecting ";
  line(&b, "\x1b[1mosbackend top\x1b[0m  %.40s  %s\x1b[0m  %02d:%02d:%02d UTC", T.url, st, tm.tm_hour, tm.tm_min,
       tm.tm_sec);
  line(&b, "%.80s", "--------------------------------------------------------------------------------");
  if (!T.last) {
    line(&b, "%s", T.note[0] ? T.note : "waiting for the first sample...");
    for (int i = 0; i < 19; i++) line(&b, "%s", "");
  } else {
    char bb[64], sp[SPARK_N + 1];
    bool ok;
    double rps = fig("http", "rps", NULL);
    line(&b, "HTTP       %9.1f req/s   p50 %7.2f ms  p95 %7.2f ms  p99 %7.2f ms", rps, fig("http", "p50_ms", NULL),
         fig("http", "p95_ms", NULL), fig("http", "p99_ms", NULL));
    spark(sp, T.rps, T.nspark);
    line(&b, "req/s      |%-60s|", sp);
    double er = fig("http", "error_rate", NULL);
    bar(bb, 40, er);
    line(&b, "errors     %s %s%6.2f %%\x1b[0m", bb, er > 0.05 ? "\x1b[31m" : er > 0 ? "\x1b[33m" : "\x1b[32m", er * 100);
    double act = fig("db", "active", NULL), max = fig("db", "max", NULL);
    bar(bb, 40, max > 0 ? act / max : 0);
    line(&b, "database   %s %3.0f/%-3.0f idle %.0f waiting %.0f", bb, act, max, fig("db", "idle", NULL),
         fig("db", "waiting", NULL));
    double wsc = json_number_value(json_object_get(json_object_get(T.last, "ws"), "connections"));
    line(&b, "websocket  %9.0f clients", wsc);
    spark(sp, T.wsc, T.nspark);
    line(&b, "clients    |%-60s|", sp);
    double hr = fig("cache", "hit_ratio", &ok);
    bar(bb, 40, ok ? hr : 0);
    if (ok) line(&b, "cache hit  %s %6.1f %%", bb, hr * 100);
    else line(&b, "cache hit  %s      -   (no lookups)", bb);
    double rss = fig("process", "rss_bytes", NULL), cpu = fig("process", "cpu_pct", NULL);
    line(&b, "memory     %9.1f MiB", rss / 1048576.0);
    bar(bb, 40, cpu / 100.0);
    line(&b, "cpu        %s %6.1f %%", bb, cpu);
    json_t *br = json_object_get(T.last, "breakers");
    const char *llm = json_string_value(json_object_get(br, "llm")), *tts = json_string_value(json_object_get(br, "tts"));
    line(&b, "breakers   llm %s%-9s\x1b[0m  tts %s%-9s\x1b[0m", colour_of(llm), llm ? llm : "-", colour_of(tts),
         tts ? tts : "-");
    /* Components, as many per line as fit. */
    osb_buf_t cl = OSB_BUF_INIT;
    int vis = 11, rows = 0;
    osb_buf_puts(&cl, "components ");
    const char *name;
    json_t *v;
    json_object_foreach(json_object_get(T.last, "components"), name, v) {
      const char *s = json_string_value(v);
      int w = (int)strlen(name) + 1 + (int)strlen(s ? s : "?") + 2;
      if (vis + w > COLS && rows < 2) {
        line(&b, "%s", cl.base);
        cl.len = 0;
        osb_buf_puts(&cl, "           ");
        vis = 11;
        rows++;
      }
      osb_buf_printf(&cl, "%s %s%s\x1b[0m  ", name, colour_of(s), s ? s : "?");
      vis += w;
    }
    line(&b, "%s", cl.base ? cl.base : "");
    osb_buf_free(&cl);
    for (int i = rows; i < 2; i++) line(&b, "%s", "");
    uint64_t age = (uint64_t)(uv_now(&T.loop) - T.last_ms);
    line(&b, "%s", "");
    line(&b, "last sample %.1f s ago%s%s", (double)age / 1000.0, T.note[0] ? "   " : "", T.note);
    for (int i = 0; i < 5; i++) line(&b, "%s", "");
  }
  line(&b, "%s", "");
  line(&b, "\x1b[2mq quit   sparklines: last %d samples   %s\x1b[0m", SPARK_N, CHANNEL);
  b.len -= 2;   /* the last row ends without a newline: 24 rows, no scrolling */
  osb_buf_puts(&b, "\x1b[J");
  out(b.base, b.len);
  osb_buf_free(&b);
}

/* ---- WebSocket client ---- */

static void schedule_retry(void);

static void on_tcp_closed(uv_handle_t *h) {
  OSB_UNUSED(h);
  T.tcp_open = false;
  if (!T.quitting) schedule_retry();
}

static void drop(const char *why) {
  if (why && *why) snprintf(T.note, sizeof(T.note), "%s", why);
  if (T.state != ST_DOWN) T.state = ST_DOWN;
  T.in.len = 0;
  T.msg.len = 0;
  if (T.tcp_open && !uv_is_closing((uv_handle_t *)&T.tcp)) uv_close((uv_handle_t *)&T.tcp, on_tcp_closed);
  draw();
}

typedef struct wreq {
  uv_write_t w;
  char data[];
} wreq_t;

static void on_written(uv_write_t *w, int status) {
  OSB_UNUSED(status);
  free(w);
}

static void send_raw(const void *p, size_t n) {
  if (!T.tcp_open || uv_is_closing((uv_handle_t *)&T.tcp)) return;
  wreq_t *r = osb_malloc(sizeof(*r) + n);
  memcpy(r->data, p, n);
  uv_buf_t buf = uv_buf_init(r->data, (unsigned)n);
  if (uv_write(&r->w, (uv_stream_t *)&T.tcp, &buf, 1, on_written) != 0) free(r);
}

/* A client frame: FIN, opcode, masked payload (RFC 6455 §5.3). */
static void send_frame(int opcode, const char *p, size_t n) {
  osb_buf_t b = OSB_BUF_INIT;
  unsigned char h[14];
  size_t hl = 2;
  h[0] = (unsigned char)(0x80 | opcode);
  if (n < 126) {
    h[1] = (unsigned char)(0x80 | n);
  } else if (n < 65536) {
    h[1] = 0x80 | 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    hl = 4;
  } else {
    h[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  unsigned char key[4];
  osb_random_bytes(key, sizeof(key));
  memcpy(h + hl, key, 4);
  hl += 4;
  osb_buf_append(&b, h, hl);
  osb_buf_reserve(&b, n);
  for (size_t i = 0; i < n; i++) b.base[b.len + i] = (char)(p[i] ^ key[i % 4]);
  b.len += n;
  send_raw(b.base, b.len);
  osb_buf_free(&b);
}

static void send_json(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  send_frame(0x1, s, strlen(s));
  free(s);
}

static void on_sample(json_t *data) {
  json_decref(T.last);
  T.last = json_incref(data);
  T.last_ms = uv_now(&T.loop);
  if (T.nspark == SPARK_N) {
    memmove(T.rps, T.rps + 1, sizeof(double) * (SPARK_N - 1));
    memmove(T.wsc, T.wsc + 1, sizeof(double) * (SPARK_N - 1));
    T.nspark--;
  }
  T.rps[T.nspark] = json_number_value(json_object_get(json_object_get(data, "http"), "rps"));
  T.wsc[T.nspark] = json_number_value(json_object_get(json_object_get(data, "ws"), "connections"));
  T.nspark++;
  T.note[0] = 0;
  draw();
}

static void on_text(const char *p, size_t n) {
  json_t *m = json_loadb(p, n, 0, NULL);
  if (!m) return;
  const char *type = json_string_value(json_object_get(m, "type"));
  if (!type) type = "";
  if (!strcmp(type, "welcome")) {
    if (T.token && *T.token) send_json(json_pack("{s:s, s:i, s:s}", "type", "auth", "id", 1, "token", T.token));
    else send_json(json_pack("{s:s, s:i, s:s}", "type", "subscribe", "id", 2, "channel", CHANNEL));
  } else if (!strcmp(type, "authenticated")) {
    send_json(json_pack("{s:s, s:i, s:s}", "type", "subscribe", "id", 2, "channel", CHANNEL));
  } else if (!strcmp(type, "subscribed")) {
    T.state = ST_LIVE;
    T.attempt = 0;
    snprintf(T.note, sizeof(T.note), "subscribed; the first sample comes within 2 s");
    draw();
  } else if (!strcmp(type, "message")) {
    json_t *data = json_object_get(m, "data");
    const char *dt = json_string_value(json_object_get(data, "type"));
    if (dt && !strcmp(dt, "metrics")) on_sample(data);
  } else if (!strcmp(type, "error")) {
    const char *code = json_string_value(json_object_get(m, "code"));
    if (code && !strcmp(code, "unauthorized")) drop("unauthorized: OSB_TOKEN was refused (expired? sign in again)");
    else if (code && !strcmp(code, "forbidden")) drop("forbidden: dashboard:metrics is for admins; OSB_TOKEN must be an admin's");
  }
  json_decref(m);
}

/* Parse what arrived; false when the connection was dropped. */
static bool parse_frames(void) {
  size_t off = 0;
  while (T.in.len - off >= 2) {
    const unsigned char *p = (const unsigned char *)T.in.base + off;
    size_t avail = T.in.len - off;
    bool fin = p[0] & 0x80;
    int op = p[0] & 0x0f;
    if (p[1] & 0x80) { drop("protocol error: a masked server frame"); return false; }
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = ((uint64_t)p[2] << 8) | p[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | p[2 + i];
      hl = 10;
    }
    if (len > MAX_FRAME) { drop("protocol error: frame too large"); return false; }
    if (avail < hl + len) break;
    const char *pl = (const char *)p + hl;
    off += hl + (size_t)len;
    switch (op) {
      case 0x0:   /* continuation */
      case 0x1:
        osb_buf_append(&T.msg, pl, (size_t)len);
        if (fin) {
          on_text(T.msg.base, T.msg.len);
          T.msg.len = 0;
          if (!T.tcp_open || T.state == ST_DOWN) return false;
        }
        break;
      case 0x8:
        drop("the server closed the connection");
        return false;
      case 0x9:
        send_frame(0xA, pl, (size_t)len);
        break;
      default:
        break;   /* pong, binary: not used */
    }
  }
  memmove(T.in.base, T.in.base + off, T.in.len - off);
  T.in.len -= off;
  return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  OSB_UNUSED(h);
  static char slab[65536];
  OSB_UNUSED(suggested);
  *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  OSB_UNUSED(s);
  if (nread < 0) {
    drop(nread == UV_EOF ? "the server went away" : uv_strerror((int)nread));
    return;
  }
  if (nread == 0) return;
  osb_buf_append(&T.in, buf->base, (size_t)nread);
  if (T.state == ST_HANDSHAKE) {
    char *end = strstr(T.in.base, "\r\n\r\n");
    if (!end) {
      if (T.in.len > 16384) drop("bad handshake answer");
      return;
    }
    if (strncmp(T.in.base, "HTTP/1.1 101", 12) != 0) {
      char first[96];
      size_t n = strcspn(T.in.base, "\r\n");
      snprintf(first, sizeof(first), "upgrade refused: %.*s", (int)(n < 60 ? n : 60), T.in.base);
      drop(first);
      return;
    }
    size_t used = (size_t)(end + 4 - T.in.base);
    memmove(T.in.base, T.in.base + used, T.in.len - used);
    T.in.len -= used;
    T.in.base[T.in.len] = 0;
    T.state = ST_CONNECTING;   /* upgraded; live once subscribed */
  }
  parse_frames();
}

static void on_connected(uv_connect_t *req, int status) {
  OSB_UNUSED(req);
  if (status != 0) {
    drop(uv_strerror(status));
    return;
  }
  unsigned char key[16];
  osb_random_bytes(key, sizeof(key));
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char k[25];
  for (int i = 0, o = 0; i < 16; i += 3) {
    uint32_t v = (uint32_t)key[i] << 16 | (i + 1 < 16 ? (uint32_t)key[i + 1] << 8 : 0) | (i + 2 < 16 ? key[i + 2] : 0);
    k[o++] = b64[(v >> 18) & 63];
    k[o++] = b64[(v >> 12) & 63];
    k[o++] = i + 1 < 16 ? b64[(v >> 6) & 63] : '=';
    k[o++] = i + 2 < 16 ? b64[v & 63] : '=';
    k[o] = 0;
  }
  char head[1024];
  int n = snprintf(head, sizeof(head),
                   "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: osbackend-top\r\n\r\n",
                   T.path, T.host, T.port, k);
  T.state = ST_HANDSHAKE;
  T.in.len = 0;
  send_raw(head, (size_t)n);
  uv_read_start((uv_stream_t *)&T.tcp, on_alloc, on_read);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai) {
  OSB_UNUSED(g);
  if (T.quitting) {
    uv_freeaddrinfo(ai);
    return;
  }
  if (status != 0 || !ai) {
    snprintf(T.note, sizeof(T.note), "cannot resolve %.60s: %s", T.host, uv_strerror(status));
    T.state = ST_DOWN;
    uv_freeaddrinfo(ai);
    draw();
    schedule_retry();
    return;
  }
  uv_tcp_init(&T.loop, &T.tcp);
  T.tcp_open = true;
  uv_tcp_nodelay(&T.tcp, 1);
  int rc = uv_tcp_connect(&T.conn_req, &T.tcp, ai->ai_addr, on_connected);
  uv_freeaddrinfo(ai);
  if (rc != 0) drop(uv_strerror(rc));
}

static void start_connect(uv_timer_t *t) {
  OSB_UNUSED(t);
  if (T.quitting) return;
  if (T.state != ST_DOWN || !T.last) T.state = ST_CONNECTING;
  struct addrinfo hints = {0};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(&T.loop, &T.gai, on_resolved, T.host, T.port, &hints);
  if (rc != 0) {
    snprintf(T.note, sizeof(T.note), "cannot resolve %.60s: %s", T.host, uv_strerror(rc));
    schedule_retry();
  }
}

static void schedule_retry(void) {
  if (T.quitting) return;
  double step = 250.0 * pow(2.0, T.attempt < 5 ? T.attempt : 5);
  if (step > 5000) step = 5000;
  unsigned char r;
  osb_random_bytes(&r, 1);
  T.attempt++;
  uv_timer_start(&T.retry, start_connect, (uint64_t)(step * (0.5 + r / 510.0)), 0);
}

/* ---- keys, signals, the clock ---- */

static void quit(void) {
  if (T.quitting) return;
  T.quitting = true;
  if (T.tty) {
    uv_read_stop((uv_stream_t *)&T.tin);
    uv_tty_reset_mode();
  }
  static const char restore[] = "\x1b[0m\x1b[?25h\x1b[?1049l";
  out(restore, sizeof(restore) - 1);
  uv_stop(&T.loop);
}

static void on_key_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  OSB_UNUSED(h);
  OSB_UNUSED(suggested);
  static char k[64];
  *buf = uv_buf_init(k, sizeof(k));
}

static void on_key(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  OSB_UNUSED(s);
  if (n < 0) {   /* the terminal went away */
    quit();
    return;
  }
  for (ssize_t i = 0; i < n; i++) {
    char c = buf->base[i];
    if (c == 'q' || c == 'Q' || c == 3 /* Ctrl-C in raw mode */ || c == 4 /* Ctrl-D */) {
      quit();
      return;
    }
  }
}

static void on_signal(uv_signal_t *s, int sig) {
  OSB_UNUSED(s);
  if (sig == SIGWINCH) draw();
  else quit();
}

static void on_tick(uv_timer_t *t) {
  OSB_UNUSED(t);
  draw();
}

/* ---- arguments ---- */

static int parse_url(const char *url) {
  const char *p = url;
  if (!strncmp(p, "ws://", 5)) p += 5;
  else if (!strncmp(p, "http://", 7)) p += 7;
  else if (!strncmp(p, "wss://", 6) || !strncmp(p, "https://", 8)) {
    fprintf(stderr, "osbackend top: TLS (wss/https) is not supported; reach the server over ws:// "
                    "(for example through an SSH tunnel)\n");
    return -1;
  } else if (strstr(p, "://")) {
    fprintf(stderr, "osbackend top: --url must be ws://host:port[/ws] or http://host:port\n");
    return -1;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof(T.host)) {
    fprintf(stderr, "osbackend top: no host in --url %s\n", url);
    return -1;
  }
  memcpy(T.host, p, hl);
  T.host[hl] = 0;
  p += hl;
  snprintf(T.port, sizeof(T.port), "80");
  if (*p == ':') {
    p++;
    size_t pl = strspn(p, "0123456789");
    if (pl == 0 || pl > 5) {
      fprintf(stderr, "osbackend top: bad port in --url %s\n", url);
      return -1;
    }
    memcpy(T.port, p, pl);
    T.port[pl] = 0;
    p += pl;
  }
  snprintf(T.path, sizeof(T.path), "%s", (*p == '/' && p[1]) ? p : "/ws");
  snprintf(T.url, sizeof(T.url), "ws://%s:%s%s", T.host, T.port, T.path);
  return 0;
}

static void close_walk(uv_handle_t *h, void *arg) {
  OSB_UNUSED(arg);
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int osb_top_main(int argc, char **argv) {
  const char *url = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--url") && i + 1 < argc) url = argv[++i];
    else if (!strncmp(argv[i], "--url=", 6)) url = argv[i] + 6;
    else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: osbackend top [--url ws://host:port/ws]   (token from OSB_TOKEN, an admin's access token)\n");
      return 0;
    } else {
      fprintf(stderr, "osbackend top: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  memset(&T, 0, sizeof(T));
  char def[64];
  if (!url) {
    const char *port = getenv("PORT");
    snprintf(def, sizeof(def), "ws://127.0.0.1:%s/ws", port && *port ? port : "10000");
    url = def;
  }
  if (parse_url(url) != 0) return 2;
  T.token = getenv("OSB_TOKEN");
  if (!T.token || !*T.token)
    snprintf(T.note, sizeof(T.note), "no OSB_TOKEN: set it to an admin's access token (POST /api/auth/login)");

  uv_loop_init(&T.loop);
  uv_timer_init(&T.loop, &T.tick);
  uv_timer_init(&T.loop, &T.retry);
  uv_signal_init(&T.loop, &T.sigint);
  uv_signal_init(&T.loop, &T.sigterm);
  uv_signal_init(&T.loop, &T.sigwinch);
  uv_signal_start(&T.sigint, on_signal, SIGINT);
  uv_signal_start(&T.sigterm, on_signal, SIGTERM);
  uv_signal_start(&T.sigwinch, on_signal, SIGWINCH);
  T.tty = isatty(STDIN_FILENO) && uv_guess_handle(STDIN_FILENO) == UV_TTY;
  if (T.tty) {
    uv_tty_init(&T.loop, &T.tin, STDIN_FILENO, 1);
    uv_tty_set_mode(&T.tin, UV_TTY_MODE_RAW);
    uv_read_start((uv_stream_t *)&T.tin, on_key_alloc, on_key);
  }
  static const char enter[] = "\x1b[?1049h\x1b[?25l\x1b[2J";
  out(enter, sizeof(enter) - 1);
  signal(SIGPIPE, SIG_IGN);

  uv_timer_start(&T.tick, on_tick, 1000, 1000);
  draw();
  start_connect(NULL);
  uv_run(&T.loop, UV_RUN_DEFAULT);

  quit();
  uv_walk(&T.loop, close_walk, NULL);
  uv_run(&T.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&T.loop);
  json_decref(T.last);
  osb_buf_free(&T.in);
  osb_buf_free(&T.msg);
  if (rc != 0) fprintf(stderr, "osbackend top: the event loop did not close cleanly\n");
  return 0;
}
