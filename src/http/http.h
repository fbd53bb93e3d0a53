/* http.h: the HTTP/1.1 server, router, requests and responses.
 *
 * One listening socket serves REST, WebSocket upgrades (/ws, see ws.h) and
 * the operations endpoints. A connection handles one request at a time: pipelined
 * requests wait in the read buffer and are answered in order.
 *
 * Request lifetime (the one rule handlers must keep): a handler receives an
 * osb_req_t and must finish it exactly once, with one of osb_res_send /
 * osb_res_json / osb_res_error / osb_res_msg / osb_res_stream_end, either
 * before returning or later from a callback on the loop thread. The request
 * and everything allocated with osb_req_alloc() stay valid until then, even
 * if the client disconnects meanwhile (the request is then "detached": the
 * response is discarded, osb_req_detached() says so). After finishing, the
 * pointer is dead. Loop thread only.
 *
 * Work that outlives the handler (an upstream transfer, a wait on a
 * channel) ties its resources to the request with two callbacks instead of
 * polling osb_req_detached():
 *   - osb_req_on_dispose: runs exactly once, when the request is freed —
 *     after it was finished, whether or not the client was still there.
 *     Release what the handler holds for the request here.
 *   - osb_req_on_detach: runs at most once, when the connection closes while
 *     a dispatched handler still holds the unfinished request. The handler
 *     decides: cancel the work and finish the request now (the answer is
 *     discarded), or keep the work (a write that must complete) and finish
 *     later. Runs inside the connection's close path: it may finish the
 *     request, must not block.
 * One callback of each kind per request; registering again replaces it. */
#ifndef OSB_HTTP_H
#define OSB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

typedef struct osb_req osb_req_t;
typedef struct json_t json_t;
struct uv_loop_s;
struct osb_principal;   /* defined by auth/auth.h */

typedef enum {
  OSB_GET = 1 << 0,
  OSB_HEAD = 1 << 1,
  OSB_POST = 1 << 2,
  OSB_PUT = 1 << 3,
  OSB_PATCH = 1 << 4,
  OSB_DELETE = 1 << 5,
  OSB_OPTIONS = 1 << 6,
} osb_method_t;

typedef void (*osb_handler_fn)(osb_req_t *req);

/* ---- server ---- */
/* Bind and listen on cfg host:port. Returns 0 or a negative error (logged). */
int osb_http_server_start(struct uv_loop_s *loop);
/* The drain window before the stop (SHUTDOWN_DRAIN_DELAY_MS): the listener
 * stays open and every request is served as usual, but each response ends
 * its connection (Connection: close), so keep-alive clients reconnect and a
 * load balancer that saw /ready 503 sends them elsewhere. Idempotent. */
void osb_http_server_drain(void);
/* Stop accepting; idle keep-alive connections are closed, busy ones close
 * after their current response; WebSockets get 1001. Idempotent. */
void osb_http_server_shutdown(void);
/* After the shutdown timeout: close every connection now. */
void osb_http_server_force_close(void);
/* Close the server's own handles (listener, timers) so the loop can end. */
void osb_http_server_stop(void);
/* Free what the module keeps (freelists, routes). After the loop ended. */
void osb_http_server_dispose(void);
/* Connections (HTTP and WebSocket) still open. */
size_t osb_http_open_connections(void);
/* Requests currently being handled. */
size_t osb_http_inflight(void);

/* ---- routing ----
 * Patterns are literal segments and ":name" parameters, e.g.
 * "/api/conversations/:id/messages". Methods are an OR of osb_method_t.
 * HEAD is answered by GET routes. Unknown path → 404; known path, other
 * method → 405 with Allow. Register at start-up only. */
void osb_route(unsigned methods, const char *pattern, osb_handler_fn fn);

/* A hook run before every routed handler (rate limits, auth preload).
 * Return true to continue; false means the hook finished the request. */
typedef bool (*osb_http_hook_fn)(osb_req_t *req);
void osb_http_add_hook(osb_http_hook_fn fn);

/* ---- request ---- */
osb_method_t osb_req_method(const osb_req_t *req);
const char *osb_req_method_name(const osb_req_t *req);
const char *osb_req_path(const osb_req_t *req);      /* decoded path, no query */
const char *osb_req_route(const osb_req_t *req);     /* matched pattern, or "unmatched" */
const char *osb_req_param(const osb_req_t *req, const char *name);   /* path :param */
const char *osb_req_query(const osb_req_t *req, const char *name);   /* decoded, NULL if absent */
const char *osb_req_header(const osb_req_t *req, const char *name);  /* case-insensitive */
const char *osb_req_cookie(const osb_req_t *req, const char *name);
const char *osb_req_body(const osb_req_t *req, size_t *len);         /* NUL-terminated */
/* The body parsed as JSON. NULL if empty or invalid: then the request has
 * already been answered 400 and must not be finished again. The result is
 * owned by the request. */
json_t *osb_req_json(osb_req_t *req);
const char *osb_req_id(const osb_req_t *req);        /* X-Request-ID (accepted or generated) */
const char *osb_req_ip(const osb_req_t *req);        /* peer, or the trusted X-Forwarded-For hop (TRUST_PROXY=N) */
bool osb_req_is_https(const osb_req_t *req);         /* X-Forwarded-Proto: https at the trusted hop (TRUST_PROXY=N) */
bool osb_req_detached(const osb_req_t *req);
typedef void (*osb_req_cb)(osb_req_t *req, void *ud);
void osb_req_on_dispose(osb_req_t *req, osb_req_cb fn, void *ud);
void osb_req_on_detach(osb_req_t *req, osb_req_cb fn, void *ud);
/* True unless the request carries an Origin that is neither listed in
 * CORS_ORIGINS nor the server's own (scheme://Host). Used where a browser
 * sends cookies without a preflight: the WebSocket handshake. */
bool osb_http_origin_allowed(const osb_req_t *req);
uint64_t osb_req_start_ms(const osb_req_t *req);

/* Memory that lives exactly as long as the request. */
void *osb_req_alloc(osb_req_t *req, size_t n);
char *osb_req_strdup(osb_req_t *req, const char *s);

/* The signed-in principal, set by the auth module's hook/helpers; owned by the request. */
struct osb_principal *osb_req_principal(const osb_req_t *req);
void osb_req_set_principal(osb_req_t *req, struct osb_principal *p, void (*free_fn)(struct osb_principal *));

/* ---- response ----
 * Headers set with osb_res_header() are sent with whichever finishing call
 * follows. Content-Length, Date, Connection, X-Request-ID, CORS and the
 * security headers are added by the server. */
void osb_res_header(osb_req_t *req, const char *name, const char *value);
void osb_res_send(osb_req_t *req, int status, const char *content_type, const void *body, size_t len);
void osb_res_json(osb_req_t *req, int status, json_t *body);   /* steals body */
/* {"error":{"code","message","request_id"}} */
void osb_res_error(osb_req_t *req, int status, const char *code, const char *fmt, ...) OSB_PRINTF(4, 5);
/* A shared, prebuilt body (a cached read): the queue takes a reference. */
void osb_res_msg(osb_req_t *req, int status, const char *content_type, osb_msg_t *body);

/* The one mapping from an error code (OSB_E*, UV_E*) to an HTTP answer, so
 * every route speaks the same vocabulary (docs/http.md, "Error codes"):
 *   OSB_EINVAL, OSB_EPROTO, UV_EINVAL        400 bad_request
 *   OSB_EDENIED, UV_EACCES, UV_EPERM         403 forbidden
 *   OSB_ENOTFOUND, UV_ENOENT                 404 not_found
 *   OSB_ECONFLICT, UV_EEXIST                 409 conflict
 *   OSB_ETOOBIG, UV_E2BIG, UV_EMSGSIZE       413 too_large
 *   OSB_EUNAVAIL, OSB_ETIMEOUT, OSB_ESLOW,
 *   OSB_ECLOSED, UV_ETIMEDOUT, UV_ECANCELED,
 *   UV_ECONNREFUSED, UV_ECONNRESET, UV_EAI_* 503 unavailable (+ Retry-After: 1)
 *   OSB_EDB, OSB_ECONFIG, anything else      500 internal
 * Returns the status; *code (if not NULL) gets the code string. */
int osb_http_error_status(int err, const char **code);
/* Finish req with osb_http_error_status(err)'s answer; fmt is the message
 * (for 500 keep it generic: it is shown to the client). */
void osb_res_error_code(osb_req_t *req, int err, const char *fmt, ...) OSB_PRINTF(3, 4);

/* Streaming (Server-Sent Events and other chunked replies): start sends the
 * head with Transfer-Encoding: chunked; write queues one chunk; end sends
 * the last chunk and finishes the request.
 *
 * Back-pressure: each stream has a cap on the connection's unsent bytes
 * (queued here plus libuv's write queue), OSB_STREAM_CAP_DEFAULT unless set
 * with osb_res_stream_set_cap. osb_res_stream_write returns
 *   0            the chunk is queued;
 *   OSB_ESLOW    not queued: the unsent bytes are past the cap (a slow
 *                reader). A chunk is always accepted while nothing is
 *                unsent, so any chunk size makes progress. Wait for the
 *                drain callback and write again, or end the stream;
 *   OSB_ECLOSED  the reader is gone (detached): nothing is sent, ever; the
 *                caller should stop and end the stream (osb_req_on_detach
 *                says so without writing).
 * osb_res_stream_on_drain(req, fn, ud) registers a one-shot callback run
 * when the unsent bytes fall to half the cap or less (at once, from the
 * next flush, if they already are). */
#define OSB_STREAM_CAP_DEFAULT (256u * 1024u)
void osb_res_stream_start(osb_req_t *req, int status, const char *content_type);
int osb_res_stream_write(osb_req_t *req, const void *data, size_t len);
void osb_res_stream_set_cap(osb_req_t *req, size_t cap_bytes);   /* 0: the default */
void osb_res_stream_on_drain(osb_req_t *req, osb_req_cb fn, void *ud);
void osb_res_stream_end(osb_req_t *req);

const char *osb_http_status_text(int status);

#endif
