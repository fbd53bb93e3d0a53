/* ws.h: WebSocket connections on the HTTP port (GET /ws).
 *
 * The HTTP connection is upgraded in place: the same object, socket and
 * output queue, now reading WebSocket frames. wslay parses client frames
 * (masking, fragmentation, control frames); server frames are unmasked, so
 * outgoing frames are built once by osb_ws_frame_*() and the same refcounted
 * osb_msg_t is queued on every subscriber without copying (wslay's event API
 * would copy each message per connection, which fan-out cannot afford).
 *
 * A connection whose queued unsent bytes exceed WS_SEND_BUFFER_BYTES, after
 * the kernel has taken what it will, is closed with 1013, whatever filled
 * them: data frames, pongs and the server's pings all count; frames over
 * WS_MAX_MESSAGE_BYTES → 1009; invalid UTF-8 text → 1007; unmasked client
 * frames → 1002; a frame or fragmented message not complete within
 * WS_MESSAGE_TIMEOUT_MS of its first byte → 1008; more pings and pongs from
 * the client than WS_CONTROL_FRAMES_PER_S → 1008. The server pings every
 * WS_PING_INTERVAL_MS and drops a connection silent for WS_IDLE_TIMEOUT_MS.
 * A closing connection whose peer stopped reading before the close frame
 * (or the frame before it) was written whole is waited for while it has
 * taken nothing for less than WS_IDLE_TIMEOUT_MS, then reset: the peer sees
 * whole frames and a close frame, or a reset, never a truncated frame
 * followed by a normal end of stream. Loop thread only. */
#ifndef OSB_WS_H
#define OSB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "http/http.h"

typedef struct osb_ws osb_ws_t;

/* The application side of every WebSocket. on_open runs right after the
 * 101 response is queued; `req` is the upgrade request (headers, cookies,
 * ?token=) and is valid only during the call. on_message gets one complete
 * (reassembled) data message. on_close runs exactly once when the
 * connection closes for any reason; the osb_ws_t is freed after it returns
 * unless it is held (osb_ws_hold).
 *
 * user_size: bytes of per-connection application state the WebSocket layer
 * allocates inside the connection itself (osb_ws_user), zeroed before
 * on_open, as uWebSockets does: an idle socket is one allocation, not one
 * for the connection and one for what the application keeps about it. */
typedef struct osb_ws_handler {
  void (*on_open)(osb_ws_t *ws, osb_req_t *req);
  void (*on_message)(osb_ws_t *ws, bool binary, const char *data, size_t len);
  void (*on_close)(osb_ws_t *ws, uint16_t code);
  size_t user_size;
} osb_ws_handler_t;

/* Replace the handler (the realtime hub does, before the server accepts
 * anything: a connection's memory is sized at accept, so an upgrade whose
 * connection was accepted with a smaller user area is refused with 503).
 * The default one sends welcome, answers ping with pong and anything else
 * with an error. */
void osb_ws_set_handler(const osb_ws_handler_t *h);

/* Frames. OSB_WS_HEADROOM bytes in front of a payload are enough for any
 * server frame header. */
#define OSB_WS_HEADROOM 10
#define OSB_WS_TEXT 0x1
#define OSB_WS_BINARY 0x2
/* Build a frame from a payload (copied once). refcnt 1, owned by the caller. */
osb_msg_t *osb_ws_frame_new(int opcode, const void *payload, size_t len);
/* Serialize `j` once (compact) straight into a frame. Does not steal j. */
osb_msg_t *osb_ws_frame_json(const json_t *j);
/* Turn a msg created with osb_msg_new(OSB_WS_HEADROOM, n) and filled with a
 * payload into a frame by writing the header into its headroom. */
void osb_ws_frame_finish(osb_msg_t *m, int opcode);

/* Queue a frame (takes a reference). Returns 0, OSB_ECLOSED if the
 * connection is closing, or OSB_ESLOW if this frame pushed it past the send
 * buffer limit (the connection is then being closed with 1013). Never blocks
 * and never copies. */
int osb_ws_send(osb_ws_t *ws, osb_msg_t *frame);
/* Convenience: serialize and send one JSON object; steals j. */
int osb_ws_send_json(osb_ws_t *ws, json_t *j);

/* Start the close handshake with code and reason; idempotent. */
void osb_ws_close(osb_ws_t *ws, uint16_t code, const char *reason);

uint64_t osb_ws_id(const osb_ws_t *ws);
bool osb_ws_closing(const osb_ws_t *ws);
/* The handler's user_size bytes, in the connection's own memory (8-byte
 * aligned); valid from on_open until on_close returns, or until the last
 * osb_ws_unhold after that. */
void *osb_ws_user(osb_ws_t *ws);
/* The connection whose user area this is. */
osb_ws_t *osb_ws_of_user(void *user);
/* Keep the connection's memory (so its user area) past on_close, for
 * state that operations still pending refer to; the socket is closed as
 * usual, and once closed nothing is sent. osb_ws_unhold drops one hold;
 * the memory goes with the last one (or when the socket closes, if
 * later). */
void osb_ws_hold(osb_ws_t *ws);
void osb_ws_unhold(osb_ws_t *ws);

/* Number of open WebSocket connections. */
size_t osb_ws_count(void);

#endif
