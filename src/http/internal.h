/* internal.h: what the files of the http module share (server.c, request.c,
 * response.c, router.c, ws.c). Nothing outside src/http includes this. */
#ifndef OSB_HTTP_INTERNAL_H
#define OSB_HTTP_INTERNAL_H

#include <http_parser.h>
#include <jansson.h>
#include <uv.h>

#include "core/core.h"
#include "core/tbucket.h"
#include "http/http.h"
#include "http/ws.h"

#define OSB__MAX_HEADERS 100
#define OSB__MAX_HEADER_BYTES (16 * 1024)
#define OSB__MAX_PARAMS 8
#define OSB__READ_BUF (64 * 1024)

typedef enum { OSB__CONN_HTTP, OSB__CONN_WS } osb__conn_mode_t;

typedef struct osb__addr osb__addr_t;   /* edge.c: one client address's connection count */

/* One output queue entry: a reference to a shared message and how much of it
 * was already written. */
typedef struct osb__outq_ent { osb_msg_t *msg; size_t off; } osb__outq_ent_t;

/* A connection's output ring, its head, length and capacity (a power of
 * two) in its own allocation: a connection without one (an idle WebSocket)
 * pays 8 bytes. */
typedef struct osb__outq {
  uint32_t head, len, cap;
  osb__outq_ent_t e[];
} osb__outq_t;

/* HTTP-only state of a connection: allocated at accept and freed when the
 * connection is upgraded to WebSocket (HTTP parsing never resumes), so an
 * idle WebSocket does not carry a parser, an input buffer or the address
 * text of its requests. */
typedef struct osb__http_state {
  http_parser parser;
  osb_buf_t in;                 /* unparsed bytes (only while some remain) */
  uint32_t requests;            /* served on this connection */
  char ip[46];                  /* the peer address as text (requests copy it) */
} osb__http_t;

/* WebSocket receive state only a partial frame or a fragmented message
 * needs: allocated for one, freed once both are done (ws.c). */
typedef struct osb__ws_rx {
  osb_buf_t in;                 /* a partial frame */
  osb_buf_t msg;                /* a fragmented data message being reassembled */
  uint64_t frame_since;         /* loop ms the partial frame in `in` began; 0 = none */
  uint64_t msg_since;           /* loop ms the fragmented message began; 0 = none */
  uint8_t msg_opcode;           /* of the fragmented message; 0 = none in progress */
} osb__ws_rx_t;

/* WebSocket state (mode == OSB__CONN_WS), inside the connection. Times are
 * the low 32 bits of the loop's ms clock, compared by modular difference
 * (right for ages under 49 days; a WebSocket is pinged every
 * WS_PING_INTERVAL_MS and dropped after WS_IDLE_TIMEOUT_MS of silence). */
typedef struct osb__ws_state {
  uint32_t last_rx;             /* last byte received */
  uint32_t last_ping;           /* last ping sent */
  osb_tbucket32_t ctl;          /* inbound control-frame bucket (WS_CONTROL_FRAMES_PER_S) */
  uint16_t close_code;
  bool close_sent : 1;
  bool on_close_called : 1;
  uint8_t drained;              /* times the output queue emptied, up to 255 (server.c) */
} osb__ws_state_t;

/* A connection: one TCP socket, HTTP first, possibly upgraded to WebSocket in
 * place. Owned by the server (listed by libuv's own handle list, see
 * osb__conn_foreach: no list node of its own); osb__conn_close is the one
 * close path. The memory is freed once the tcp handle's close callback ran
 * and nobody holds it (osb_ws_hold: the application state of a WebSocket,
 * in the user area at the end, may outlive the socket while an operation
 * started for it is pending). A request being handled holds conn->req; when
 * the connection closes first, the request is detached (req->conn = NULL)
 * and frees itself when finished. Timeouts are checked by one server-wide
 * sweep timer, so a connection owns no timer handle.
 *
 * An idle WebSocket is this one allocation: libuv's handle, the fields
 * below, and the application's user area (the realtime client and its first
 * subscription); docs/benchmarks.md has the byte count. */
typedef struct osb__conn {
  uv_tcp_t tcp;                 /* first: the handle's memory is the conn's */
  osb_list_t flush_node;        /* server.pending_http (HTTP mode) or server.pending_flush
                                 * (WebSocket) while it has unsent data or pipelined input */
  uint64_t id;
  osb__addr_t *acct;            /* the address this connection is counted under (edge.c); NULL: none */
  struct osb_req *req;          /* request being parsed or handled (HTTP) */
  /* HTTP mode: its state until the upgrade; WebSocket: the receive state
   * of an incomplete frame or message (ws.c), NULL when none. has_http
   * tells which. */
  union {
    osb__http_t *http;
    osb__ws_rx_t *rx;
  };

  /* output: a ring of message references, one uv_write in flight at most */
  osb__outq_t *q;               /* NULL: none (empty); osb__conn_qlen */
  size_t queued_bytes;          /* unsent bytes in the queue */
  uint32_t deadline;            /* loop ms, low 32 bits (osb__conn_set_deadline); 0 = none.
                                 * What it means depends on the phase */
  uint32_t drain_mark;          /* pending output (low 32 bits) when a deadline was last extended */
  uint32_t progress_ms;         /* loop ms (low 32 bits) the peer was last seen taking output */
  osb__ws_state_t ws;           /* WebSocket (mode == OSB__CONN_WS) */
  uint16_t holds;               /* osb_ws_hold: the memory outlives the socket while > 0 */
  uint16_t user_cap;            /* bytes of user area allocated at the end */
  uint8_t addr[16];             /* peer address: IPv6, or IPv4 in the first 4 bytes (addr6 clear) */
  uint8_t phase;                /* osb__phase_t */
  uint8_t inflight;             /* entries (from qhead) owned by the write in flight; 0 = none */
  bool mode : 1;                /* osb__conn_mode_t */
  bool has_http : 1;            /* `http` (not `rx`) is the union's member */
  bool addr6 : 1;
  bool closing : 1;             /* osb__conn_close was called */
  bool close_after_flush : 1;   /* close once the queue is empty */
  bool lingering : 1;           /* answer sent and FIN queued: reading to discard until EOF */
  bool reading : 1;
  bool processing : 1;          /* inside conn_process: no re-entry */
  bool out_paused : 1;          /* HTTP: queued_bytes passed HTTP_SEND_BUFFER_BYTES; no parsing
                                 * or reading until it drains to half of it */
  bool tcp_closed : 1;          /* the handle's close callback ran */

  _Alignas(8) unsigned char user[];   /* user_cap bytes: the WebSocket handler's user area */
} osb__conn_t;

/* Deadlines are at most minutes away: the low 32 bits of the loop clock,
 * compared by modular difference, 0 kept for "none". */
static inline void osb__conn_set_deadline(osb__conn_t *c, uint64_t at_ms) {
  c->deadline = (uint32_t)at_ms ? (uint32_t)at_ms : 1;
}
static inline bool osb__conn_deadline_passed(const osb__conn_t *c, uint64_t now_ms) {
  return c->deadline && (int32_t)((uint32_t)now_ms - c->deadline) >= 0;
}

/* Entries in the output queue. */
static inline uint32_t osb__conn_qlen(const osb__conn_t *c) { return c->q ? c->q->len : 0; }
/* The i-th entry from the head (i < len). */
static inline osb__outq_ent_t *osb__outq_at(osb__outq_t *q, uint32_t i) { return &q->e[(q->head + i) & (q->cap - 1)]; }

typedef enum {
  OSB__PHASE_IDLE = 0,          /* keep-alive, waiting for a request: idle timeout */
  OSB__PHASE_HEAD,              /* reading a request head: header timeout → 408 */
  OSB__PHASE_BUSY,              /* handling a request: no timeout here */
  OSB__PHASE_WS,                /* WebSocket: ping/idle */
  OSB__PHASE_DRAIN,             /* closing after flush: hard deadline */
} osb__phase_t;

/* Request arena: a chain of blocks, the first one inline. */
typedef struct osb__arena_blk { struct osb__arena_blk *next; size_t used, cap; char data[]; } osb__arena_blk_t;

struct osb_req {
  /* Everything up to `hbuf` is cleared for each request (req_new); what
   * follows is kept between the requests a freelisted struct serves: the
   * buffers keep their capacity, the arrays are valid up to their counts
   * (nfields, nheaders, nparams) and id/ip are written whole. */
  osb__conn_t *conn;            /* NULL once detached */
  osb_list_t node;              /* freelist / inflight list */
  uint64_t start_ns;
  uint64_t start_ms;
  enum http_method hp_method;
  osb_method_t method;
  bool keep_alive;
  bool http10;                  /* HTTP/1.0: keep-alive is said, not implied */
  bool finished;
  bool streaming;
  bool head_only;
  bool upgrade;
  bool errored;                 /* a limit was hit while parsing: answer and close */
  bool dispatched;              /* handed to a handler: only finishing frees it */
  int status;
  size_t url_off, url_len;      /* the request target in hbuf */
  int nfields;                  /* header fields recorded in hdr_off while the head is parsed */
  bool last_was_value;
  bool head_done;               /* on_headers_complete ran: later fields are trailers */
  size_t trailer_bytes;         /* trailer fields read (and dropped) so far */
  const char *err;              /* why parsing failed (static text), with `status` */
  /* What the accessors see: the head's fields only, set once hn/hv are
   * filled in on_headers_complete (0 before). Trailers never enter it. */
  int nheaders;
  char *path;                   /* decoded (for logs and osb_req_path) */
  char *rawpath;                /* as received, no query: the router splits it before decoding */
  bool asterisk;                /* request-target "*" (OPTIONS only) */
  char *query;                  /* raw, may be NULL */
  const char *route;
  int nparams;
  json_t *json;
  struct osb_principal *principal;
  void (*principal_free)(struct osb_principal *);
  osb_req_cb dispose_fn, detach_fn, drain_fn;   /* http.h seams; each runs at most once */
  void *dispose_ud, *detach_ud, *drain_ud;
  size_t stream_cap;            /* unsent-bytes cap of a stream; 0 = default */

  /* ---- kept between requests ---- */
  osb_buf_t hbuf;               /* raw head bytes, copied from the read buffer as they arrive */
  osb_buf_t body;
  osb_buf_t rhead;              /* extra response headers "Name: value\r\n" */
  osb__arena_blk_t *arena;
  char id[40];
  char ip[46];
  size_t hdr_off[OSB__MAX_HEADERS][4]; /* name off, name len, value off, value len */
  const char *hn[OSB__MAX_HEADERS];  /* lower-cased names, NUL-terminated (arena) */
  const char *hv[OSB__MAX_HEADERS];  /* values, NUL-terminated (arena) */
  const char *pnames[OSB__MAX_PARAMS];
  char *pvalues[OSB__MAX_PARAMS];
};

/* server.c */
typedef struct osb__server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  bool listening;
  bool shutting_down;
  bool no_keepalive;            /* drain window and after: every response closes its connection */
  uv_timer_t sweep;
  osb_list_t pending_flush;     /* WebSocket connections with output (fan-out) */
  osb_list_t pending_http;      /* HTTP connections: flushed first in every round */
  size_t nconns;
  size_t inflight;
  uint64_t next_conn_id;
  char readbuf[OSB__READ_BUF];
  bool readbuf_lent;
} osb__server_t;

extern osb__server_t osb__srv;

/* The one close path. A connection closed with output still unsent (part
 * of a response or frame written, or whole ones not yet) is reset (RST)
 * rather than closed with a FIN: its peer must never take a truncated
 * stream for a complete one. */
void osb__conn_close(osb__conn_t *c, const char *reason);
/* A connection with its HTTP state and an initialised tcp handle (not yet
 * accepted into); `user` bytes of user area. */
osb__conn_t *osb__conn_alloc(uv_loop_t *loop, size_t user);
/* Every connection (closing ones too), in accept order; fn may close the
 * one it is given, or any other; those accepted meanwhile are skipped. */
void osb__conn_foreach(void (*fn)(osb__conn_t *c, void *ud), void *ud);
/* An upgraded connection's HTTP state goes; bytes pipelined behind the
 * upgrade go to the WebSocket reader. */
void osb__conn_http_end(osb__conn_t *c);
/* Drop one osb_ws_hold; frees the memory if the socket is gone too. */
void osb__conn_unhold(osb__conn_t *c);
/* The peer address as text (IPv4 dotted, or IPv6). */
void osb__conn_ip(const osb__conn_t *c, char out[46]);
/* Queue a message reference (takes a new ref) and schedule a flush. */
void osb__conn_queue(osb__conn_t *c, osb_msg_t *m);
/* Drop queued entries that are not part of a write in flight or partly written. */
void osb__conn_discard_queue(osb__conn_t *c);
void osb__conn_schedule_flush(osb__conn_t *c);
/* Bytes not yet written: queued here plus libuv's write queue. */
size_t osb__conn_pending_out(osb__conn_t *c);
/* A streaming request's drain callback, if its unsent bytes are low enough. */
void osb__conn_stream_drain_check(osb__conn_t *c);
/* Write what the kernel takes now, instead of waiting for the flusher. */
void osb__conn_flush_now(osb__conn_t *c);
/* Called by response.c when a request is finished. */
void osb__req_finished(struct osb_req *req);
void osb__req_free(struct osb_req *req);

/* router.c */
typedef struct osb__match {
  osb_handler_fn fn;
  const char *pattern;
  unsigned allow;               /* methods allowed on the matched path (for 405) */
  int nparams;
  const char *pnames[OSB__MAX_PARAMS];
  char *pvalues[OSB__MAX_PARAMS];
} osb__match_t;
/* 0 found; OSB_ENOTFOUND no path; OSB_EDENIED path exists, method not (allow set). */
/* `path` is the raw (still percent-encoded) path: it is split at '/' first
 * and each segment decoded on its own, so an encoded slash (%2F) is part of
 * a segment, never a separator. Parameter values are decoded. */
int osb__router_match(osb_method_t m, const char *path, osb_req_t *req, osb__match_t *out);
void osb__router_reset(void);

/* request.c */
void *osb__arena_alloc(osb_req_t *req, size_t n);
void osb__arena_reset(osb_req_t *req);
int osb__url_decode(char *s, size_t n, bool plus_is_space); /* in place; returns new length or -1 */
/* The entry of a proxy list header (X-Forwarded-For, X-Forwarded-Proto)
 * written by the outermost of `hops` trusted proxies: the hops-th non-empty
 * entry from the right, every header line of that name taken together in
 * order. Each trusted proxy appends what it saw, so the entries left of it
 * are whatever the client sent and are never read. With fewer entries than
 * hops, the left-most one (the request came through fewer proxies than
 * configured; all it carries were added by them). False when the header is
 * absent or the entry does not fit in `out`. */
bool osb__req_forwarded(const osb_req_t *req, const char *name, int hops, char *out, size_t outlen);
/* osb__req_forwarded of X-Forwarded-For, only when that entry is a plain
 * IPv4 or IPv6 address (no port, no brackets): else false, and the caller
 * keeps the peer address. */
bool osb__req_forwarded_ip(const osb_req_t *req, int hops, char *out, size_t outlen);

/* response.c */
void osb__res_simple_error(osb__conn_t *c, int status, const char *code, const char *message, bool close);
size_t osb__date_header(char *out); /* "Date: ...\r\n", cached per second */
void osb__cors_init(const char *origins);
void osb__cors_dispose(void);
bool osb__cors_preflight(osb_req_t *req);
/* Queue just a head (the 101 of an upgrade) without finishing the request. */
void osb__res_head(osb_req_t *req, int status, const char *content_type);
/* Finish a request whose head went out with osb__res_head. */
void osb__res_finish_upgraded(osb_req_t *req);
/* Small answers are written into up to OSB__RESP_POOL reusable messages of
 * OSB__RESP_BUF bytes (response.c, "response buffers"). */
#define OSB__RESP_BUF 2048
#define OSB__RESP_POOL 64
/* Release the pool of reusable response messages (osb_http_server_dispose). */
void osb__res_pool_dispose(void);

/* edge.c: connection admission (MAX_CONNECTIONS_PER_IP, the fd budget,
 * EMFILE). Refusals are counted in http_server_connections_refused_total
 * {reason="per_ip"|"fd_limit"} and logged at most once a second each. */
void osb__edge_init(void);
void osb__edge_dispose(void);
/* At accept, after the connection is in the list: false = refuse it (the
 * caller closes it at once, nothing read or written). Counts the peer
 * address unless TRUST_PROXY is set. */
bool osb__edge_admit(osb__conn_t *c);
/* Count c under ip from now on (moving it from the address it was counted
 * under, if another). 0, or OSB_EDENIED when ip is now over its limit (c is
 * counted all the same until it closes: it still holds a descriptor). */
int osb__edge_account(osb__conn_t *c, const char *ip);
/* In the close callback: uncount c. */
void osb__edge_release(osb__conn_t *c);
/* on_connection with status < 0. */
void osb__edge_accept_failed(uv_stream_t *listener, int status);
size_t osb__edge_count(const char *ip);   /* tests */
size_t osb__edge_fd_budget(void);

/* ws.c */
void osb__ws_init(void);
void osb__ws_dispose_module(void);
/* The old name of core's validator (the fuzz drivers call it). */
static inline bool osb__utf8_valid(const uint8_t *s, size_t n) { return osb_utf8_valid(s, n); }
bool osb__ws_is_upgrade(osb_req_t *req);
void osb__ws_upgrade(osb_req_t *req);   /* finishes the request */
void osb__ws_on_data(osb__conn_t *c, const char *data, size_t len);
void osb__ws_sweep(osb__conn_t *c, uint64_t now);
void osb__ws_on_close(osb__conn_t *c);
void osb__ws_shutdown(osb__conn_t *c);  /* 1001 */
void osb__ws_dispose(osb__conn_t *c);
/* Bytes of user area the current handler wants in every connection. */
size_t osb__ws_user_size(void);

#endif
