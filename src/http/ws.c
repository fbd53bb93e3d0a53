/* ws.c: WebSocket (RFC 6455) on the HTTP port.
 *
 * Reading: wslay's frame layer decodes client frames (header, masking,
 * control-frame rules). A wslay frame context carries a 4 KiB input buffer,
 * which at tens of thousands of idle sockets would dominate memory, so the
 * connections share ONE context: we measure each frame's length from its
 * header, and hand wslay a frame only once all its bytes are here, so the
 * context is back at a frame boundary, with an empty buffer, after every
 * frame. Partial frames wait in a buffer of the connection's own, allocated
 * only while one is incomplete (osb__ws_rx_t), like a fragmented message.
 *
 * Writing: server frames are unmasked, so every subscriber of a message gets
 * identical bytes. wslay's event API would copy each queued message per
 * connection; instead a frame is built once (osb_ws_frame_*) and the same
 * refcounted osb_msg_t goes into every connection's output queue (server.c).
 * Every frame but the final close frame, data or control (pongs, the
 * server's pings), goes through one bounded path, ws_enqueue(): a client
 * that does not read is closed with 1013 past WS_SEND_BUFFER_BYTES whatever
 * it made the server send.
 *
 * What a client can make the server hold is bounded in size and in time:
 * a frame or fragmented message must end within WS_MESSAGE_TIMEOUT_MS of
 * its first byte (1008), and pings and pongs from the client are limited to
 * WS_CONTROL_FRAMES_PER_S (1008), since each ping costs a pong.
 *
 * UTF-8 validation is hand-written (RFC 3629 ranges, overlongs and
 * surrogates rejected): none of the project's libraries exposes a validator
 * for arbitrary bytes, and it is thirty lines. */
#include "http/internal.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "core/config.h"
#include "core/json.h"
#include "core/tbucket.h"
#include "obs/log.h"
#include "obs/metrics.h"

static const osb_ws_handler_t *handler;
static size_t ws_open;
static osb_msg_t *ping_frame;
static wslay_frame_context_ptr shared_ctx;
static struct { const uint8_t *p; size_t len, off; } feed;
static osb_metric_t *m_in, *m_out, *m_slow, *m_closed, *m_ctl_flood, *m_msg_timeout;
static osb_series_t *s_in, *s_out, *s_slow, *s_ctl_flood, *s_msg_timeout;

#define WS(c) ((osb_ws_t *)(c))
#define CONN(ws) ((osb__conn_t *)(ws))

size_t osb_ws_count(void) { return ws_open; }

/* ---- frames ---- */

void osb_ws_frame_finish(osb_msg_t *m, int opcode) {
  uint8_t h[10];
  size_t hl;
  size_t n = m->len;
  h[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (n < 126) {
    h[1] = (uint8_t)n;
    hl = 2;
  } else if (n < 65536) {
    h[1] = 126;
    h[2] = (uint8_t)(n >> 8);
    h[3] = (uint8_t)n;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  osb_msg_prepend(m, h, hl);
}

osb_msg_t *osb_ws_frame_new(int opcode, const void *payload, size_t len) {
  osb_msg_t *m = osb_msg_new(OSB_WS_HEADROOM, len);
  if (len) memcpy(m->data, payload, len);
  m->len = len;
  osb_ws_frame_finish(m, opcode);
  return m;
}

osb_msg_t *osb_ws_frame_json(const json_t *j) {
  osb_msg_t *m = osb_msg_new(OSB_WS_HEADROOM, 128);
  osb_json_dump_append(j, &m);   /* the one serializer (core/json.h) */
  osb_ws_frame_finish(m, OSB_WS_TEXT);
  return m;
}

static osb_msg_t *close_frame(uint16_t code, const char *reason) {
  uint8_t p[125];
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 123) rl = 123;
  p[0] = (uint8_t)(code >> 8);
  p[1] = (uint8_t)code;
  if (rl) memcpy(p + 2, reason, rl);
  return osb_ws_frame_new(0x8, p, 2 + rl);
}

/* ---- the default handler: welcome, ping → pong, anything else → error ---- */

static void def_open(osb_ws_t *ws, osb_req_t *req) {
  json_t *j = json_pack("{s:s, s:I, s:n, s:i}", "type", "welcome", "conn_id", (json_int_t)osb_ws_id(ws),
                        "user", "heartbeat_s", osb_cfg->ws_ping_interval_ms / 1000);
  osb_ws_send_json(ws, j);
}

static void def_message(osb_ws_t *ws, bool binary, const char *data, size_t len) {
  json_t *msg = json_loadb(data, len, 0, NULL);
  json_t *id = msg ? json_object_get(msg, "id") : NULL;
  const char *type = msg ? json_string_value(json_object_get(msg, "type")) : NULL;
  json_t *reply;
  if (!msg || !json_is_object(msg)) {
    reply = json_pack("{s:s, s:s, s:s}", "type", "error", "code", "bad_json", "message", "messages are JSON objects");
  } else if (type && strcmp(type, "ping") == 0) {
    reply = json_pack("{s:s}", "type", "pong");
  } else {
    reply = json_pack("{s:s, s:s, s:s}", "type", "error", "code", "unknown_type", "message", "unknown message type");
  }
  if (id) json_object_set(reply, "id", id);
  json_decref(msg);
  osb_ws_send_json(ws, reply);
}

static void def_close(osb_ws_t *ws, uint16_t code) {}

static const osb_ws_handler_t default_handler = {def_open, def_message, def_close, 0};

void osb_ws_set_handler(const osb_ws_handler_t *h) { handler = h ? h : &default_handler; }

/* ---- accessors ---- */

uint64_t osb_ws_id(const osb_ws_t *ws) { return CONN(ws)->id; }
bool osb_ws_closing(const osb_ws_t *ws) { return CONN(ws)->closing || CONN(ws)->ws.close_sent; }
void *osb_ws_user(osb_ws_t *ws) { return CONN(ws)->user; }
osb_ws_t *osb_ws_of_user(void *user) {
  return WS((osb__conn_t *)((char *)user - offsetof(osb__conn_t, user)));
}
void osb_ws_hold(osb_ws_t *ws) {
  osb_assert(CONN(ws)->holds < UINT16_MAX);
  CONN(ws)->holds++;
}
void osb_ws_unhold(osb_ws_t *ws) { osb__conn_unhold(CONN(ws)); }
size_t osb__ws_user_size(void) { return handler ? handler->user_size : 0; }

/* ---- sending ---- */

static void begin_drain(osb__conn_t *c) {
  c->close_after_flush = true;
  c->phase = OSB__PHASE_DRAIN;
  osb__conn_set_deadline(c, uv_now(osb__srv.loop) + 5000);
}

void osb_ws_close(osb_ws_t *ws, uint16_t code, const char *reason) {
  osb__conn_t *c = CONN(ws);
  if (c->closing || c->ws.close_sent) return;
  c->ws.close_sent = true;
  c->ws.close_code = code;
  osb_msg_t *f = close_frame(code, reason);
  osb__conn_queue(c, f);
  osb_msg_unref(f);
  /* wait (bounded) for the peer's close reply; the drain deadline ends it otherwise */
  c->phase = OSB__PHASE_DRAIN;
  osb__conn_set_deadline(c, uv_now(osb__srv.loop) + 5000);
}

/* The bounded send path: every frame the server sends except the close
 * frame (data frames, pongs, pings). Returns 0, OSB_ECLOSED, or OSB_ESLOW
 * when this frame took the connection past WS_SEND_BUFFER_BYTES, after the
 * kernel took what it would: the connection is then closing with 1013. */
static int ws_enqueue(osb__conn_t *c, osb_msg_t *frame) {
  if (c->closing || c->ws.close_sent) return OSB_ECLOSED;
  osb__conn_queue(c, frame);
  if (c->queued_bytes > (size_t)osb_cfg->ws_send_buffer_bytes) {
    /* Over the limit within this iteration: let the kernel take what it can
     * first, so a burst to a client that reads is not mistaken for a slow one. */
    osb__conn_flush_now(c);
    if (c->closing) return OSB_ECLOSED;
  }
  if (c->queued_bytes > (size_t)osb_cfg->ws_send_buffer_bytes) {
    /* Slow consumer: drop what it has not started receiving and tell it why. */
    osb_series_inc(s_slow, 1);
    osb__conn_discard_queue(c);
    osb_ws_close(WS(c), 1013, "send buffer limit exceeded");
    return OSB_ESLOW;
  }
  return 0;
}

int osb_ws_send(osb_ws_t *ws, osb_msg_t *frame) {
  int rc = ws_enqueue(CONN(ws), frame);
  if (rc != OSB_ECLOSED) osb_series_inc(s_out, 1);
  return rc;
}

int osb_ws_send_json(osb_ws_t *ws, json_t *j) {
  osb_msg_t *f = osb_ws_frame_json(j);
  json_decref(j);
  int rc = osb_ws_send(ws, f);
  osb_msg_unref(f);
  return rc;
}

/* ---- receiving ---- */

static ssize_t feed_recv(uint8_t *buf, size_t len, int flags, void *ud) {
  size_t n = feed.len - feed.off;
  if (n > len) n = len;
  if (n == 0) return 0;  /* wslay turns this into WANT_READ; cannot happen with whole frames */
  memcpy(buf, feed.p + feed.off, n);
  feed.off += n;
  return (ssize_t)n;
}

static ssize_t no_send(const uint8_t *d, size_t l, int f, void *ud) { return WSLAY_ERR_INVALID_ARGUMENT; }
static int no_genmask(uint8_t *buf, size_t len, void *ud) { return -1; }

static void ctx_reset(void) {
  static const struct wslay_frame_callbacks cbs = {no_send, feed_recv, no_genmask};
  if (shared_ctx) wslay_frame_context_free(shared_ctx);
  osb_assert(wslay_frame_context_init(&shared_ctx, &cbs, NULL) == 0);
}

static bool valid_close_code(uint16_t code) {
  if (code < 1000 || code >= 5000) return false;
  if (code == 1004 || code == 1005 || code == 1006 || code == 1015) return false;
  if (code > 1015 && code < 3000) return false;
  return true;
}

static void fail(osb__conn_t *c, uint16_t code, const char *why) {
  if (osb_log_enabled(OSB_LOG_DEBUG))
    osb_log(OSB_LOG_DEBUG, "ws", "conn %llu: closing %u: %s", (unsigned long long)c->id, code, why);
  osb__conn_discard_queue(c);
  osb_ws_close(WS(c), code, why);
  c->close_after_flush = true;  /* protocol errors: no need to wait for the reply */
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
  }
}

/* Token bucket for pings and pongs from the client: WS_CONTROL_FRAMES_PER_S
 * refilled per second, bursts of twice that. Each ping costs a pong, and
 * no real client pings more than a few times a minute. */
static bool control_admit(osb__conn_t *c) {
  int rate = osb_cfg->ws_control_frames_per_s;
  if (rate <= 0) return true;
  uint64_t now = uv_now(osb__srv.loop);
  return osb_tbucket32_take(&c->ws.ctl, rate, 2.0 * rate, now);
}

/* The receive state of an incomplete frame or message, allocated for one. */
static osb__ws_rx_t *rx_get(osb__conn_t *c) {
  if (!c->rx) c->rx = osb_calloc(1, sizeof(*c->rx));
  return c->rx;
}

static void rx_free(osb__conn_t *c) {
  osb__ws_rx_t *rx = c->rx;
  if (!rx) return;
  osb_buf_free(&rx->in);
  osb_buf_free(&rx->msg);
  free(rx);
  c->rx = NULL;
}

/* Nothing incomplete any more: an idle socket keeps no receive state. */
static void rx_trim(osb__conn_t *c) {
  osb__ws_rx_t *rx = c->rx;
  if (rx && rx->in.len == 0 && rx->msg.len == 0 && rx->msg_opcode == 0) rx_free(c);
}

static void msg_drop(osb__conn_t *c) {
  if (c->rx) osb_buf_free(&c->rx->msg);
}

/* One complete frame: opcode, fin, payload (unmasked). Returns false to stop reading. */
static bool on_frame(osb__conn_t *c, uint8_t opcode, bool fin, const uint8_t *p, size_t n) {
  osb__ws_state_t *w = &c->ws;
  switch (opcode) {
    case 0x0: /* continuation */
    case 0x1:
    case 0x2: {
      osb__ws_rx_t *rx = c->rx;
      uint8_t cur = rx ? rx->msg_opcode : 0;   /* the fragmented message in progress */
      if (opcode == 0 && cur == 0) { fail(c, 1002, "continuation without a message"); return false; }
      if (opcode != 0 && cur != 0) { fail(c, 1002, "new message inside a fragmented one"); return false; }
      uint8_t op = opcode ? opcode : cur;
      size_t have = rx ? rx->msg.len : 0;
      if (have + n > (size_t)osb_cfg->ws_max_message_bytes) { fail(c, 1009, "message too big"); return false; }
      const uint8_t *data = p;
      size_t len = n;
      bool whole = fin && have == 0;
      if (!whole) {
        rx = rx_get(c);
        if (!fin) {
          rx->msg_opcode = op;
          if (rx->msg_since == 0) rx->msg_since = uv_now(osb__srv.loop);
        }
        osb_buf_append(&rx->msg, p, n);
        if (!fin) return true;
        data = (const uint8_t *)rx->msg.base;
        len = rx->msg.len;
      }
      if (rx) {
        rx->msg_opcode = 0;
        rx->msg_since = 0;
      }
      if (op == 0x1 && !osb__utf8_valid(data, len)) {
        msg_drop(c);
        fail(c, 1007, "invalid UTF-8 in a text message");
        return false;
      }
      osb_series_inc(s_in, 1);
      if (!w->close_sent && handler->user_size <= c->user_cap)
        handler->on_message(WS(c), op == 0x2, (const char *)data, len);
      if (!whole) msg_drop(c);
      return !c->closing;
    }
    case 0x8: { /* close */
      uint16_t code = 1005;
      if (n == 1) { fail(c, 1002, "bad close payload"); return false; }
      if (n >= 2) {
        code = (uint16_t)((p[0] << 8) | p[1]);
        if (!valid_close_code(code)) { fail(c, 1002, "invalid close code"); return false; }
        if (!osb__utf8_valid(p + 2, n - 2)) { fail(c, 1007, "invalid UTF-8 in close reason"); return false; }
      }
      if (w->close_sent) {
        /* Both sides closed. Ours may still be queued (the peer's close
         * crossed it): let it go out first, then close the socket. */
        if (osb__conn_qlen(c)) begin_drain(c);
        else osb__conn_close(c, "close handshake done");
      } else {
        /* echo the code, then close once it is written */
        w->close_code = code;
        osb_ws_close(WS(c), code == 1005 ? 1000 : code, NULL);
        begin_drain(c);
      }
      return false;
    }
    case 0x9:   /* ping → pong with the same payload, through the bounded path */
    case 0xA: { /* pong: last_rx already updated */
      if (w->close_sent) return true;   /* closing: nothing more is answered */
      if (!control_admit(c)) {
        /* Unlike fail(), go on reading (and ignoring) what the peer sends:
         * stopping with its pings unread in the socket would make the close
         * reset the connection, and the peer would never see the 1008. */
        osb_series_inc(s_ctl_flood, 1);
        char ip[46];
        osb__conn_ip(c, ip);
        osb_log(OSB_LOG_WARN, "ws", "conn %llu (%s): closing 1008: more than %d pings/pongs per second",
                (unsigned long long)c->id, ip, osb_cfg->ws_control_frames_per_s);
        osb__conn_discard_queue(c);
        osb_ws_close(WS(c), 1008, "control frame rate limit exceeded");
        return true;
      }
      if (opcode == 0xA) return true;
      osb_msg_t *f = osb_ws_frame_new(0xA, p, n);
      ws_enqueue(c, f);   /* past the bound: closing with 1013, later pings go unanswered */
      osb_msg_unref(f);
      return !c->closing;
    }
    default:
      fail(c, 1002, "reserved opcode");
      return false;
  }
}

/* Consume whole frames from data; returns bytes used (the rest is a partial frame). */
static size_t parse_frames(osb__conn_t *c, const uint8_t *data, size_t len) {
  size_t pos = 0;
  while (pos < len && !c->closing && c->mode == OSB__CONN_WS && c->reading) {
    const uint8_t *h = data + pos;
    size_t avail = len - pos;
    if (avail < 2) break;
    bool masked = h[1] & 0x80;
    uint64_t plen = h[1] & 0x7f;
    size_t hl = 2;
    if (plen == 126) hl += 2;
    else if (plen == 127) hl += 8;
    if (masked) hl += 4;
    if (avail < hl) break;
    if (plen == 126) plen = ((uint64_t)h[2] << 8) | h[3];
    else if (plen == 127) {
      plen = 0;
      for (int i = 0; i < 8; i++) plen = (plen << 8) | h[2 + i];
    }
    if (!masked) { fail(c, 1002, "client frames must be masked"); return len; }
    if (h[0] & 0x70) { fail(c, 1002, "reserved bits set"); return len; }
    if (plen > (uint64_t)osb_cfg->ws_max_message_bytes) { fail(c, 1009, "frame too big"); return len; }
    if (avail < hl + plen) break;
    if (c->ws.close_sent && (h[0] & 0x0f) != 0x8) {
      /* Closing: only the peer's close reply matters. Skip the rest unread
       * (not unmasked, not decoded), so a peer that floods after our close
       * frame costs little CPU until it replies or the drain deadline. */
      pos += hl + (size_t)plen;
      continue;
    }

    /* a whole frame: let wslay decode it from the shared context */
    feed.p = h;
    feed.len = hl + (size_t)plen;
    feed.off = 0;
    uint8_t opcode = 0;
    bool fin = false;
    osb_buf_t payload = OSB_BUF_INIT;
    const uint8_t *pp = NULL;
    size_t pn = 0;
    bool err = false;
    for (;;) {
      struct wslay_frame_iocb io;
      memset(&io, 0, sizeof(io));
      ssize_t r = wslay_frame_recv(shared_ctx, &io);
      if (r < 0) { err = true; break; }
      opcode = io.opcode;
      fin = io.fin;
      if (feed.off == feed.len && io.data_length == plen && payload.len == 0) {
        pp = io.data; pn = io.data_length;   /* the usual case: one chunk */
        break;
      }
      osb_buf_append(&payload, io.data, io.data_length);
      if (payload.len == plen && feed.off == feed.len) { pp = (const uint8_t *)payload.base; pn = payload.len; break; }
    }
    pos += feed.len;
    feed.p = NULL;
    if (err) {
      ctx_reset();
      osb_buf_free(&payload);
      fail(c, 1002, "malformed frame");
      return len;
    }
    bool go_on = on_frame(c, opcode, fin, pp ? pp : (const uint8_t *)"", pn);
    osb_buf_free(&payload);
    if (!go_on) return len;
  }
  return pos;
}

void osb__ws_on_data(osb__conn_t *c, const char *data, size_t len) {
  osb__ws_state_t *w = &c->ws;
  uint64_t now = uv_now(osb__srv.loop);
  w->last_rx = (uint32_t)now;
  size_t used;
  osb__ws_rx_t *rx = c->rx;
  if (rx && rx->in.len) {
    osb_buf_append(&rx->in, data, len);
    used = parse_frames(c, (const uint8_t *)rx->in.base, rx->in.len);
    if (c->closing) return;
    osb_buf_consume(&rx->in, used);
    if (rx->in.len == 0) osb_buf_free(&rx->in);
  } else {
    used = parse_frames(c, (const uint8_t *)data, len);
    if (c->closing) return;
    if (used < len) osb_buf_append(&rx_get(c)->in, data + used, len - used);
  }
  rx = c->rx;
  if (!rx) return;
  /* The deadline of a partial frame runs from its first byte: from now if a
   * frame ended in these bytes (the rest began here), else it keeps running. */
  if (rx->in.len == 0) rx->frame_since = 0;
  else if (used > 0 || rx->frame_since == 0) rx->frame_since = now;
  rx_trim(c);
}

/* ---- timers (called from the server's sweep) ---- */

void osb__ws_sweep(osb__conn_t *c, uint64_t now) {
  osb__ws_state_t *w = &c->ws;
  osb__ws_rx_t *rx = c->rx;
  uint64_t limit = (uint64_t)osb_cfg->ws_message_timeout_ms;
  if (rx && ((rx->frame_since && now - rx->frame_since >= limit) || (rx->msg_since && now - rx->msg_since >= limit))) {
    /* A frame or message trickled in slowly holds up to two buffers of
     * WS_MAX_MESSAGE_BYTES; it does not get to keep them for ever. */
    osb_series_inc(s_msg_timeout, 1);
    rx_free(c);
    fail(c, 1008, "message not completed in time");
    return;
  }
  uint32_t now32 = (uint32_t)now;   /* ages modulo 2^32 ms (internal.h) */
  if (now32 - w->last_rx >= (uint32_t)osb_cfg->ws_idle_timeout_ms) {
    osb_ws_close(WS(c), 1001, "idle timeout");
    return;
  }
  if (now32 - w->last_ping >= (uint32_t)osb_cfg->ws_ping_interval_ms) {
    w->last_ping = now32;
    ws_enqueue(c, ping_frame);
  }
}

void osb__ws_shutdown(osb__conn_t *c) { osb_ws_close(WS(c), 1001, "server shutting down"); }

void osb__ws_on_close(osb__conn_t *c) {
  osb__ws_state_t *w = &c->ws;
  if (c->mode != OSB__CONN_WS || w->on_close_called) return;
  w->on_close_called = true;
  ws_open--;
  /* bounded label set: the standard codes, or "other" */
  uint16_t cc = w->close_code ? w->close_code : 1006;
  char code[8];
  if (cc >= 1000 && cc <= 1015) snprintf(code, sizeof(code), "%u", cc);
  else snprintf(code, sizeof(code), "other");
  osb_series_inc(osb_metric_series1(m_closed, code), 1);
  /* a handler set after this connection was accepted has no user area here */
  if (handler->user_size <= c->user_cap) handler->on_close(WS(c), w->close_code ? w->close_code : 1006);
}

void osb__ws_dispose(osb__conn_t *c) { rx_free(c); }

/* ---- the upgrade ---- */

static bool header_has_token(const char *v, const char *token) {
  if (!v) return false;
  size_t tl = strlen(token);
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    size_t l = strcspn(p, ",");
    size_t e = l;
    while (e && (p[e - 1] == ' ' || p[e - 1] == '\t')) e--;
    if (e == tl && strncasecmp(p, token, tl) == 0) return true;
    p += l;
  }
  return false;
}

bool osb__ws_is_upgrade(osb_req_t *req) {
  return req->method == OSB_GET && strcmp(req->path, "/ws") == 0 &&
         header_has_token(osb_req_header(req, "upgrade"), "websocket") &&
         header_has_token(osb_req_header(req, "connection"), "upgrade");
}

static void ws_route(osb_req_t *req) {
  if (!osb__ws_is_upgrade(req)) {
    osb_res_header(req, "Upgrade", "websocket");
    osb_res_error(req, 426, "upgrade_required", "GET /ws needs a WebSocket upgrade");
    return;
  }
  osb__ws_upgrade(req);
}

void osb__ws_upgrade(osb_req_t *req) {
  osb__conn_t *c = req->conn;
  const char *key = osb_req_header(req, "sec-websocket-key");
  const char *ver = osb_req_header(req, "sec-websocket-version");
  if (!key || strlen(key) != 24) {
    osb_res_error(req, 400, "bad_handshake", "Sec-WebSocket-Key is missing or malformed");
    return;
  }
  if (!ver || strcmp(ver, "13") != 0) {
    osb_res_header(req, "Sec-WebSocket-Version", "13");
    osb_res_error(req, 426, "bad_handshake", "only WebSocket version 13 is supported");
    return;
  }
  if (osb__srv.shutting_down) {
    osb_res_error(req, 503, "shutting_down", "the server is shutting down");
    return;
  }
  if (ws_open >= (size_t)osb_cfg->ws_max_connections) {
    osb_res_header(req, "Retry-After", "5");
    osb_res_error(req, 503, "too_many_connections", "WebSocket connection limit reached");
    return;
  }
  if (!c) {  /* detached: nothing to upgrade */
    osb_res_error(req, 400, "bad_handshake", "connection gone");
    return;
  }
  if (handler->user_size > c->user_cap) {   /* accepted before the handler was set */
    osb_res_header(req, "Retry-After", "1");
    osb_res_error(req, 503, "starting", "the server is starting");
    return;
  }
  /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  char buf[24 + sizeof(guid)];
  memcpy(buf, key, 24);
  memcpy(buf + 24, guid, sizeof(guid) - 1);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)buf, 24 + sizeof(guid) - 1, digest);
  char accept[32];
  EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);

  osb_res_header(req, "Upgrade", "websocket");
  osb_res_header(req, "Connection", "Upgrade");
  osb_res_header(req, "Sec-WebSocket-Accept", accept);

  c->mode = OSB__CONN_WS;
  c->phase = OSB__PHASE_WS;
  c->deadline = 0;
  uint64_t now = uv_now(osb__srv.loop);
  memset(&c->ws, 0, sizeof(c->ws));
  c->ws.last_rx = c->ws.last_ping = (uint32_t)now;
  osb_tbucket32_init(&c->ws.ctl, 2.0 * osb_cfg->ws_control_frames_per_s, now);
  memset(c->user, 0, c->user_cap);
  ws_open++;
  /* The 101 goes out first; on_open may queue frames right behind it. */
  osb__res_head(req, 101, NULL);
  handler->on_open(WS(c), req);
  osb__res_finish_upgraded(req);
  /* Upgraded from the parser (the usual case), the server drops the HTTP
   * state once parsing stops; from anywhere else, now. */
  if (!c->processing) osb__conn_http_end(c);
}

/* ---- module set-up ---- */

static double g_ws_open(void *ud) { return (double)ws_open; }

void osb__ws_init(void) {
  if (!handler) handler = &default_handler;
  ctx_reset();
  uint8_t none[1];
  if (!ping_frame) ping_frame = osb_ws_frame_new(0x9, none, 0);
  osb_metric_gauge_fn("websocket_connections", "Open WebSocket connections", g_ws_open, NULL);
  m_in = osb_metric_counter("websocket_messages_received_total", "Data messages received from clients", NULL);
  m_out = osb_metric_counter("websocket_messages_sent_total", "Frames queued to clients", NULL);
  m_slow = osb_metric_counter("websocket_slow_consumer_closes_total", "Connections closed with 1013 for exceeding WS_SEND_BUFFER_BYTES", NULL);
  m_closed = osb_metric_counter("websocket_closes_total", "Closed WebSocket connections by close code", "code");
  m_ctl_flood = osb_metric_counter("websocket_control_flood_closes_total",
                                   "Connections closed with 1008 for exceeding WS_CONTROL_FRAMES_PER_S", NULL);
  m_msg_timeout = osb_metric_counter("websocket_message_timeout_closes_total",
                                     "Connections closed with 1008 for a frame or message not completed within WS_MESSAGE_TIMEOUT_MS", NULL);
  s_ctl_flood = osb_metric_series0(m_ctl_flood);
  s_msg_timeout = osb_metric_series0(m_msg_timeout);
  s_in = osb_metric_series0(m_in);
  s_out = osb_metric_series0(m_out);
  s_slow = osb_metric_series0(m_slow);
  osb_route(OSB_GET, "/ws", ws_route);
}

void osb__ws_dispose_module(void) {
  if (shared_ctx) wslay_frame_context_free(shared_ctx);
  shared_ctx = NULL;
  osb_msg_unref(ping_frame);
  ping_frame = NULL;
}
