/* internal.h: what the upstream module's files share (breaker.c,
 * client.c, upstream.c, sse.c) and the unit tests reach. */
#ifndef OSB_UPSTREAM_INTERNAL_H
#define OSB_UPSTREAM_INTERNAL_H

#include <curl/curl.h>
#include <uv.h>

#include "obs/metrics.h"
#include "upstream/upstream.h"

/* ---- the breaker: pure state, the clock passed in (unit-testable) ---- */

typedef struct osb__breaker_cfg {
  int min_calls;        /* BREAKER_MIN_CALLS */
  int failure_rate;     /* BREAKER_FAILURE_RATE, percent 1..100 */
  int window_s;         /* BREAKER_WINDOW_S */
  int slow_call_ms;     /* BREAKER_SLOW_CALL_MS */
  int open_ms;          /* BREAKER_OPEN_MS */
} osb__breaker_cfg_t;

#define OSB__BREAKER_MAX_OPEN_MS (10 * 60 * 1000)

typedef struct osb__bucket { uint32_t calls, bad; } osb__bucket_t;

typedef enum { OSB__OUT_SUCCESS = 0, OSB__OUT_FAILURE, OSB__OUT_CANCELLED } osb__outcome_t;

typedef struct osb__breaker osb__breaker_t;
/* Called once per transition, after the state changed. */
typedef void (*osb__breaker_transition_fn)(void *ud, osb__breaker_t *b, osb_breaker_state_t from,
                                           osb_breaker_state_t to, const char *reason);

struct osb__breaker {
  osb_breaker_state_t state;
  osb__breaker_cfg_t cfg;
  /* sliding window: one bucket per second, a ring of cfg.window_s buckets;
   * head_sec is the second of the newest bucket; the sums cover the ring */
  osb__bucket_t *buckets;
  uint64_t head_sec;
  uint32_t win_calls, win_bad;
  /* open / half-open */
  uint64_t open_until_ms;      /* OPEN: when the next trial may go */
  uint64_t open_wait_ms;       /* the wait that was chosen (before doubling) */
  uint32_t failed_trials;      /* consecutive; doubles the wait */
  bool trial_busy;             /* HALF_OPEN: a trial call is running */
  char reason[128];            /* why the last transition happened */
  /* totals */
  uint64_t calls, successes, failures, slow, rejected, cancelled;
  osb__breaker_transition_fn on_transition;
  void *ud;
};

void osb__breaker_init(osb__breaker_t *b, const osb__breaker_cfg_t *cfg,
                       osb__breaker_transition_fn fn, void *ud);
void osb__breaker_dispose(osb__breaker_t *b);
/* May a call go now? 0 (and *trial set when it is the half-open trial),
 * OSB_EUNAVAIL (open, or a trial already running), OSB_EDENIED (disabled).
 * An open breaker whose wait elapsed becomes half-open here. */
int osb__breaker_admit(osb__breaker_t *b, uint64_t now_ms, bool *trial);
/* The outcome of an admitted call. `slow`: its first byte came after
 * slow_call_ms (counts as bad even when the answer was fine). */
void osb__breaker_record(osb__breaker_t *b, uint64_t now_ms, bool trial, osb__outcome_t out, bool slow);
/* The state as of now (an elapsed open wait reads as half-open, without
 * changing anything). */
osb_breaker_state_t osb__breaker_peek(const osb__breaker_t *b, uint64_t now_ms);
/* Seconds a rejected caller should wait (>= 1). */
unsigned osb__breaker_retry_after(const osb__breaker_t *b, uint64_t now_ms);
/* Forced open / disabled on, or back to closed when `st` is CLOSED. */
void osb__breaker_force(osb__breaker_t *b, osb_breaker_state_t st, const char *reason);
/* The window as of now (old buckets dropped). */
void osb__breaker_window(osb__breaker_t *b, uint64_t now_ms, uint32_t *calls, uint32_t *bad);

/* ---- calls ---- */

typedef enum {
  OSB__CALL_QUEUED = 1,    /* waiting for a bulkhead slot */
  OSB__CALL_STARTING,      /* admitted, waiting for the flush to hand it to curl */
  OSB__CALL_RUNNING,       /* curl has it */
  OSB__CALL_DONE,          /* result waiting in the deferred list */
} osb__call_state_t;

struct osb_upstream_call {
  osb_list_t node;            /* in the upstream's waiters/running list, or a module list */
  osb_list_t deferred;        /* in the module's start or done list */
  osb_upstream_t *up;
  const osb_upstream_cbs_t *cbs;
  void *ud;
  osb__call_state_t state;
  bool trial;                 /* the half-open trial */
  bool in_cb;                 /* inside on_head/on_data */
  bool cancelled;             /* cancel() inside a callback: abort on return */
  bool head_seen;
  bool stream;
  /* request (copied) */
  char *method, *url;
  struct curl_slist *headers;
  char *body;
  size_t body_len;
  size_t max_bytes;
  int timeout_ms;
  /* transfer */
  CURL *easy;
  char errbuf[CURL_ERROR_SIZE];
  osb_buf_t resp;             /* collected body (not for streams) */
  char *content_type;
  unsigned retry_after_s;
  int status;
  uint64_t queued_ms, start_ms, last_io_ms, first_byte_ms;
  /* result */
  int err;
  bool rejected;
  const char *reason;         /* static text, or reason_buf */
  char reason_buf[160];
};

struct osb_upstream {
  osb_list_t node;            /* module list of upstreams */
  char *name;
  char *base_url;             /* redacted copy */
  char *disabled_reason;      /* NULL = enabled */
  int max_concurrency;
  osb__breaker_t br;
  osb_list_t waiters;         /* QUEUED calls, FIFO */
  osb_list_t running;         /* STARTING and RUNNING calls */
  size_t in_flight, queued;
  /* metrics */
  osb_series_t *m_state, *m_in_flight, *m_queued, *m_latency;
  osb_series_t *m_ok, *m_fail, *m_timeout, *m_rejected, *m_cancelled, *m_slow;
};

/* The bookkeeping of one finished call (breaker + metrics): what the
 * micro-benchmark measures on the closed path. */
void osb__upstream_account(osb_upstream_t *u, uint64_t now_ms, bool trial, osb__outcome_t out,
                           bool slow, uint64_t latency_ms);

/* ---- client.c: the curl multi on the loop ---- */
int osb__client_init(uv_loop_t *loop);
/* Hand an admitted call to curl. 0, or a negative error (the call is then
 * not running and the caller completes it). Not from inside a curl callback. */
int osb__client_start(osb_upstream_call_t *c);
/* Remove a running call's transfer (not from inside its curl callback). */
void osb__client_abort(osb_upstream_call_t *c);
void osb__client_close(void);
void osb__client_dispose(void);
size_t osb__client_handles(void);   /* open uv handles (polls + timers), for tests */

/* upstream.c: curl finished (err set on c, status etc. filled). */
void osb__call_finished(osb_upstream_call_t *c);
/* Free a call's memory (its transfer must already be gone). */
void osb__call_free(osb_upstream_call_t *c);

#endif
