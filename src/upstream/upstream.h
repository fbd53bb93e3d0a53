/* upstream.h: outbound HTTP calls on the event loop, behind a circuit
 * breaker and a bulkhead per upstream, plus an incremental Server-Sent
 * Events parser for streamed bodies.
 *
 * The client is libcurl's multi-socket API driven by one uv_poll_t per
 * socket and one uv_timer_t (curl's documented libuv integration): no thread
 * per call, no blocking call on the loop (names resolve through curl's
 * threaded resolver). Connections are reused across calls, HTTP/2 is used
 * (and multiplexed) where the server offers it over TLS, certificates are
 * checked against the system CA store.
 *
 * Upstreams. Each paid API is one named upstream ("llm", "tts") with
 *   - a breaker (SPEC §2): closed → open when, among at least
 *     BREAKER_MIN_CALLS calls in the last BREAKER_WINDOW_S seconds, the
 *     percentage that failed (transport error, timeout, 5xx, 429) or were
 *     slow (first byte after BREAKER_SLOW_CALL_MS) reaches
 *     BREAKER_FAILURE_RATE; open → half-open after BREAKER_OPEN_MS (doubled
 *     per failed trial, jittered, at most 10 min); half-open lets one trial
 *     call through at a time: its success closes, its failure re-opens.
 *     A 4xx other than 429 is a success for the breaker (the upstream is up).
 *     "disabled" (no key) and "forced_open" reject every call.
 *   - a bulkhead: at most max_concurrency calls in flight; more wait (FIFO)
 *     up to 1 s for a slot, then fail with OSB_EUNAVAIL.
 * No call reaches an upstream whose breaker is open. Every transition is
 * logged once with its reason, counted in metrics, shown in /health/details
 * (component = upstream name) and reported to state observers (the apps
 * layer publishes it on agents:status).
 *
 * Loop thread only. */
#ifndef OSB_UPSTREAM_H
#define OSB_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

struct uv_loop_s;
typedef struct json_t json_t;

typedef struct osb_upstream osb_upstream_t;        /* a named upstream (module-owned) */
typedef struct osb_upstream_call osb_upstream_call_t;

typedef enum {
  OSB_BREAKER_CLOSED = 0,
  OSB_BREAKER_HALF_OPEN = 1,
  OSB_BREAKER_OPEN = 2,
  OSB_BREAKER_FORCED_OPEN = 3,   /* an operator's choice; rejects like open */
  OSB_BREAKER_DISABLED = 4,      /* not configured (no key); rejects every call */
} osb_breaker_state_t;

/* "closed", "half_open", "open", "forced_open", "disabled" */
const char *osb_breaker_state_name(osb_breaker_state_t st);

/* ---- one call ----
 * Everything in the request is copied before osb_upstream_call() returns. */
typedef struct osb_upstream_req {
  const char *method;            /* "GET", "POST", ...; NULL = POST with a body, else GET */
  const char *url;               /* absolute http:// or https:// URL */
  const char *const *headers;    /* "Name: value" strings, NULL-terminated; may be NULL.
                                  * Secrets (API keys) go here: they are never logged. */
  const void *body;              /* request body, may be NULL */
  size_t body_len;
  size_t max_response_bytes;     /* 0 = 16 MiB. Past it the call fails with OSB_ETOOBIG */
  int timeout_ms;                /* 0 = UPSTREAM_TIMEOUT_MS. Whole call; a stream: per gap
                                  * between chunks (and until the head) */
  bool stream;                   /* deliver the body through on_data as it arrives
                                  * instead of collecting it */
} osb_upstream_req_t;

/* What a finished call reports. Valid during on_done only. */
typedef struct osb_upstream_result {
  int err;              /* 0: the upstream answered (any status, see `status`);
                         * OSB_EUNAVAIL: not sent: breaker open, half-open trial busy,
                         *   bulkhead full for 1 s, or shutting down (`rejected` true);
                         * OSB_EDENIED: the upstream is disabled (`rejected` true);
                         * OSB_ETIMEOUT: no answer / no chunk within the timeout;
                         * OSB_ETOOBIG: the response passed max_response_bytes;
                         * OSB_EPROTO: connection refused/reset, TLS, bad HTTP */
  bool rejected;        /* the call never reached the upstream */
  int status;           /* HTTP status, 0 if none arrived */
  const char *content_type;     /* response Content-Type or NULL */
  const char *body;             /* collected body (not for streams), NUL-terminated; "" if none */
  size_t body_len;
  unsigned retry_after_s;       /* rejections: when to retry (>= 1); upstream 429/503:
                                 * its Retry-After in seconds if it sent one, else 0 */
  const char *reason;           /* short text for logs and errors; never holds a secret */
  uint64_t latency_ms;          /* admission to completion */
  uint64_t first_byte_ms;       /* transfer start to first byte; 0 if none */
} osb_upstream_result_t;

typedef struct osb_upstream_cbs {
  /* Optional. Streams: the status line and headers arrived (before any on_data).
   * Return 0 to go on, non-zero to abort the call (then on_done gets OSB_EPROTO, reason "aborted"). */
  int (*on_head)(void *ud, int status, const char *content_type);
  /* Streams only: the next body bytes, as they arrive (n > 0). Same return rule. */
  int (*on_data)(void *ud, const char *p, size_t n);
  /* Required. Exactly once per call unless the call was cancelled; never
   * from inside osb_upstream_call(). The call pointer is dead afterwards. */
  void (*on_done)(void *ud, const osb_upstream_result_t *r);
} osb_upstream_cbs_t;

/* Start a call through upstream `u` (breaker, bulkhead, metrics). Returns the
 * call, owned by the module until on_done returns or osb_upstream_cancel().
 * `cbs` is borrowed and must outlive the call (use a static const);
 * `ud` must stay valid until on_done or cancel. */
osb_upstream_call_t *osb_upstream_call(osb_upstream_t *u, const osb_upstream_req_t *req,
                                       const osb_upstream_cbs_t *cbs, void *ud);

/* Drop a call: no callback runs afterwards, its bulkhead slot is released,
 * the transfer is aborted. Counted as "cancelled", neither a success nor a
 * failure for the breaker (a cancelled half-open trial lets the next call
 * be the trial). Safe from inside this call's on_head/on_data (the abort then
 * happens when the callback returns); not after on_done. This is what a
 * request's dispose hook calls when the client went away. */
void osb_upstream_cancel(osb_upstream_call_t *call);

/* ---- upstreams ---- */

/* The upstream called `name` ("llm", "tts"), or NULL. Valid until osb_upstream_dispose. */
osb_upstream_t *osb_upstream_get(const char *name);
const char *osb_upstream_name(const osb_upstream_t *u);
/* Whether calls may be attempted (configured and not disabled). */
bool osb_upstream_enabled(const osb_upstream_t *u);
/* The reason it is disabled ("disabled: ELEVENLABS_API_KEY not set"), or NULL. */
const char *osb_upstream_disabled_reason(const osb_upstream_t *u);
/* The breaker's current state (an elapsed open wait reads as half_open). */
osb_breaker_state_t osb_upstream_state(osb_upstream_t *u);
/* Seconds until a rejected caller should retry (>= 1). */
unsigned osb_upstream_retry_after(osb_upstream_t *u);
size_t osb_upstream_in_flight(const osb_upstream_t *u);

/* Force a breaker open (an operator switch), or back to automatic (closed).
 * No effect on a disabled upstream. */
void osb_upstream_force_open(osb_upstream_t *u, bool on, const char *reason);

/* {"name","enabled",["reason",]"breaker","in_flight","queued","max_concurrency",
 *  "calls","successes","failures","slow","rejected","cancelled","window_calls",
 *  "window_failures","open_ms_remaining","base_url"} — never the key. New reference. */
json_t *osb_upstream_json(osb_upstream_t *u);
/* {"upstreams":[...]} for every registered upstream, in registration order. */
json_t *osb_upstreams_json(void);

/* State observers: called after each breaker transition (after it was
 * logged and counted). `reason` is a short text. At most 4 observers. */
typedef void (*osb_upstream_state_fn)(void *ud, osb_upstream_t *u, osb_breaker_state_t from,
                                      osb_breaker_state_t to, const char *reason);
void osb_upstream_on_state(osb_upstream_state_fn fn, void *ud);

/* ---- lifecycle ----
 * init: after osb_config_load, osb_log_init and osb_metrics_init; creates
 * the curl multi handle, its timer, and registers the "llm" and "tts"
 * upstreams from the configuration (disabled without their key), their
 * metrics and health components. Returns 0 or a negative error (logged).
 * shutdown: new calls are rejected at once; calls still running after
 * `grace_ms` fail with OSB_EUNAVAIL ("shutting down"), so their requests can
 * answer before the server's own shutdown deadline.
 * abort_all: fail every waiting and running call now (OSB_EUNAVAIL).
 * close: abort_all, then close the module's handles (freed in their close
 * callbacks: run the loop afterwards). Idempotent.
 * dispose: free the rest (curl), after the loop ended. */
int osb_upstream_init(struct uv_loop_s *loop);
void osb_upstream_shutdown(uint64_t grace_ms);
void osb_upstream_abort_all(void);
void osb_upstream_close(void);
void osb_upstream_dispose(void);

/* Register one more upstream (tests, future APIs). `disabled_reason` NULL =
 * enabled. `base_url` is shown (redacted) in osb_upstream_json. Before or
 * after init; names are unique (asserted). */
osb_upstream_t *osb_upstream_register(const char *name, const char *base_url, int max_concurrency,
                                      const char *disabled_reason);

/* The integration step: deliver deferred completions (rejections, results
 * found inside curl callbacks). Idempotent and cheap when idle; runs from the
 * module's own zero-delay timer today and is meant to become a before-sleep
 * step of the core loop. */
void osb_upstream_flush(void);

/* ---- Server-Sent Events (text/event-stream), incremental ----
 * Feed bytes as they arrive, in pieces of any size: lines may end in LF,
 * CRLF or CR (a CR at the end of one piece and an LF at the start of the
 * next are one line end), a leading BOM is skipped, ':' lines are comments,
 * "data:" lines accumulate joined by '\n', an empty line dispatches the event
 * (when it has data), "field" alone is a field with an empty value, one
 * space after the colon is dropped. `event` is "message" when none was given. */
typedef struct osb_sse_event {
  const char *event;     /* NUL-terminated */
  const char *data;      /* NUL-terminated, data_len bytes */
  size_t data_len;
  const char *id;        /* last event id seen (persists across events), "" if none */
  int retry_ms;          /* last retry: field, -1 if none */
} osb_sse_event_t;
/* Return 0 to go on, non-zero to stop: osb_sse_feed returns that value. */
typedef int (*osb_sse_fn)(void *ud, const osb_sse_event_t *ev);

typedef struct osb_sse {
  osb_sse_fn fn;
  void *ud;
  size_t max_event_bytes;   /* one line or one event's data above this: OSB_ETOOBIG */
  osb_buf_t line, data, event, id;
  int retry_ms;
  bool skip_lf;             /* the previous piece ended in CR */
  bool started;             /* past the optional BOM */
  bool has_data;
} osb_sse_t;

/* max_event_bytes 0 = 1 MiB. */
void osb_sse_init(osb_sse_t *p, osb_sse_fn fn, void *ud, size_t max_event_bytes);
/* 0, OSB_ETOOBIG, or the callback's non-zero return (parsing stops there;
 * feeding again after a non-zero return is not allowed). */
int osb_sse_feed(osb_sse_t *p, const char *buf, size_t n) OSB_MUSTCHECK;
void osb_sse_dispose(osb_sse_t *p);

#endif
