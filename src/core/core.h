/* core.h: the small things every module uses.
 *
 * - allocation that aborts on out-of-memory (h2o/redis policy); sizes chosen
 *   by a peer use osb_buf_try_reserve() and fail the request instead;
 * - error codes: 0 or a negative code, libuv's UV_E* plus OSB_E* below;
 * - intrusive doubly linked lists (libuv's uv__queue shape);
 * - osb_buf_t, a growable byte buffer;
 * - osb_msg_t, a refcounted immutable buffer shared by many writers.
 *
 * Everything here is loop-thread only unless stated otherwise. */
#ifndef OSB_CORE_H
#define OSB_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define OSB_MUSTCHECK __attribute__((warn_unused_result))
#define OSB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define OSB_UNUSED(x) ((void)(x))
#define OSB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define osb_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

/* Fail loudly on impossible states, in release builds too (redis's serverAssert). */
#define osb_assert(cond) \
  do { if (!(cond)) osb__assert_fail(#cond, __FILE__, __LINE__); } while (0)
_Noreturn void osb__assert_fail(const char *expr, const char *file, int line);

/* ---- errors: 0 or negative. libuv's codes pass through unchanged. ---- */
enum {
  OSB_EBASE = -20000,
  OSB_EPROTO,      /* peer broke the protocol */
  OSB_ETOOBIG,     /* size limit exceeded */
  OSB_ETIMEOUT,    /* deadline passed */
  OSB_ECLOSED,     /* object already closing */
  OSB_ESLOW,       /* slow consumer: send buffer limit exceeded */
  OSB_ECONFIG,     /* invalid configuration */
  OSB_EDB,         /* database error */
  OSB_EUNAVAIL,    /* dependency unavailable */
  OSB_ENOTFOUND,
  OSB_EINVAL,
  OSB_EDENIED,
  OSB_ECONFLICT,
  OSB_ELAST
};
const char *osb_strerror(int err);

/* ---- roles: who a principal is. auth decides a request's or a WebSocket's
 * role (auth/auth.h); realtime and apps only read it, so the type lives
 * here and their headers need not include auth's. ---- */
typedef enum {
  OSB_ROLE_NONE = 0,
  OSB_ROLE_USER = 1,
  OSB_ROLE_ADMIN = 2,
  OSB_ROLE_SERVICE = 3,
} osb_role_t;
const char *osb_role_name(osb_role_t r);    /* "user", "admin", "service"; "none" */
osb_role_t osb_role_parse(const char *s);   /* OSB_ROLE_NONE if unknown or NULL */

/* ---- allocation: abort on OOM ---- */
void *osb_malloc(size_t n);
void *osb_calloc(size_t n, size_t size);
void *osb_realloc(void *p, size_t n);
char *osb_strdup(const char *s);
char *osb_strndup(const char *s, size_t n);
char *osb_asprintf(const char *fmt, ...) OSB_PRINTF(1, 2);

/* ---- intrusive circular list ---- */
typedef struct osb_list { struct osb_list *next, *prev; } osb_list_t;

static inline void osb_list_init(osb_list_t *h) { h->next = h->prev = h; }
static inline bool osb_list_empty(const osb_list_t *h) { return h->next == h; }
static inline bool osb_list_linked(const osb_list_t *n) { return n->next != NULL && n->next != n; }
static inline void osb_list_insert_tail(osb_list_t *h, osb_list_t *n) {
  n->prev = h->prev; n->next = h; h->prev->next = n; h->prev = n;
}
static inline void osb_list_insert_head(osb_list_t *h, osb_list_t *n) {
  n->next = h->next; n->prev = h; h->next->prev = n; h->next = n;
}
/* Removing leaves the node self-linked, so removing twice is harmless. */
static inline void osb_list_remove(osb_list_t *n) {
  n->prev->next = n->next; n->next->prev = n->prev; n->next = n->prev = n;
}
/* Move every node of src to dst (whose old contents are dropped); src ends empty. */
static inline void osb_list_move(osb_list_t *dst, osb_list_t *src) {
  if (osb_list_empty(src)) {
    osb_list_init(dst);
    return;
  }
  dst->next = src->next;
  dst->prev = src->prev;
  dst->next->prev = dst;
  dst->prev->next = dst;
  osb_list_init(src);
}
#define osb_list_foreach_safe(pos, tmp, head) \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); (pos) = (tmp), (tmp) = (pos)->next)

/* ---- osb_buf_t: growable bytes, always NUL-terminated past len ---- */
typedef struct osb_buf { char *base; size_t len, cap; } osb_buf_t;
#define OSB_BUF_INIT { NULL, 0, 0 }

void osb_buf_reserve(osb_buf_t *b, size_t extra);             /* aborts on OOM */
int osb_buf_try_reserve(osb_buf_t *b, size_t extra, size_t limit) OSB_MUSTCHECK; /* OSB_ETOOBIG past limit */
void osb_buf_append(osb_buf_t *b, const void *p, size_t n);
static inline void osb_buf_puts(osb_buf_t *b, const char *s) { osb_buf_append(b, s, strlen(s)); }
void osb_buf_printf(osb_buf_t *b, const char *fmt, ...) OSB_PRINTF(2, 3);
void osb_buf_vprintf(osb_buf_t *b, const char *fmt, va_list ap);
/* Appends "s" JSON-escaped, with quotes: the one JSON string escaper.
 * Always valid JSON: bytes that are not well-formed UTF-8 become \ufffd;
 * control characters and DEL are escaped, so a log line stays one line. */
void osb_buf_json_str(osb_buf_t *b, const char *s, size_t n);
/* The length of s[0..n) without a UTF-8 sequence cut off at its end (for
 * text truncated to a buffer): never splits a character. */
size_t osb_utf8_trim(const char *s, size_t n);
void osb_buf_consume(osb_buf_t *b, size_t n);                  /* drop n bytes from the front */
static inline void osb_buf_reset(osb_buf_t *b) { b->len = 0; if (b->base) b->base[0] = 0; }
void osb_buf_free(osb_buf_t *b);

/* ---- UTF-8: the one validator (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF) ---- */
/* Length (1-4) of the well-formed sequence at s[0..n), n > 0; 0 if the bytes
 * there are not one (invalid lead, bad continuation, truncated). */
size_t osb_utf8_seq_len(const void *s, size_t n);
/* True if s[0..n) is entirely well-formed UTF-8 (WebSocket text, 1007). */
bool osb_utf8_valid(const void *s, size_t n);

/* ---- osb_msg_t: refcounted immutable bytes ----
 * One serialized reply or WebSocket frame written to any number of
 * connections without copying (lwan's pubsub refcounting): the creator
 * holds one reference, each output queue takes one, the creator drops its
 * own when done. `data` has `headroom` spare bytes in front so a frame
 * header can be written right-aligned against the payload afterwards. */
typedef struct osb_msg {
  uint32_t refcnt;
  uint32_t headroom;  /* bytes still free before data */
  size_t len;         /* payload bytes at data */
  size_t cap;         /* allocated payload capacity */
  char *data;         /* points into buf */
  char buf[];
} osb_msg_t;

osb_msg_t *osb_msg_new(size_t headroom, size_t cap);
osb_msg_t *osb_msg_from(const void *p, size_t n);   /* copy, no headroom */
void osb_msg_append(osb_msg_t **m, const void *p, size_t n); /* only while refcnt == 1 */
void osb_msg_prepend(osb_msg_t *m, const void *p, size_t n); /* uses headroom; asserts it fits */
static inline osb_msg_t *osb_msg_ref(osb_msg_t *m) { m->refcnt++; return m; }
void osb_msg_unref(osb_msg_t *m);

/* ---- the loop ---- */
struct uv_loop_s;
void osb_core_init(struct uv_loop_s *loop); /* once, from main, before any module */
struct uv_loop_s *osb_loop(void);

/* ---- the before-sleep phase (redis's beforeSleep) ----
 * Modules register named steps; core owns the one uv_prepare_t that runs
 * them, in ascending `order`, every loop iteration just before the loop
 * would block in poll. A step returns true when it did something that may
 * have given another step (or itself) work: then core runs another round of
 * every step, up to OSB_CORE_STEP_ROUNDS rounds. If the last round still
 * did work, core starts a uv_idle_t so this iteration polls without
 * blocking and the steps run again on the next one; the idle stops as soon
 * as a full round is quiet. So work queued anywhere on the loop thread
 * (a callback in any phase, or a step) is handled before the loop sleeps.
 *
 * A step must be cheap when it has nothing to do (it runs every iteration)
 * and must not block. The prepare handle is unreferenced (it never keeps
 * the loop alive by itself); the idle handle is referenced while it runs.
 * Core opens its handles with the first registered step on a loop and
 * closes them (with a close callback) when the last step is removed or at
 * osb_core_close(). Loop thread only. See docs/architecture.md. */
enum {
  OSB_STEP_HTTP = 100,      /* http: parse pipelined requests, write queued output */
  OSB_STEP_UPSTREAM = 200,  /* upstream (libcurl multi): reserved for its module */
  OSB_STEP_PG = 300,        /* db/pg: Sync and flush the pipelines written this round */
  OSB_STEP_DB = 400,        /* db: run completed queries' callbacks */
  OSB_STEP_LOG = 900,       /* obs/log: write the batched log lines */
};
#define OSB_CORE_STEP_ROUNDS 8
#define OSB_CORE_MAX_STEPS 16
typedef bool (*osb_step_fn)(void *ud);
/* Register (or, for a name already registered, replace) a step. Steps with
 * the same order run in registration order. `name` must outlive the step
 * (a literal). Aborts past OSB_CORE_MAX_STEPS. */
void osb_core_step_add(const char *name, int order, osb_step_fn fn, void *ud);
/* Remove a step by name; harmless if absent. Removing the last one closes
 * core's handles. */
void osb_core_step_remove(const char *name);
/* Run the steps now, as the prepare handle would (tests, and main once after
 * the loop ended so nothing queued is lost). Returns the rounds run. */
int osb_core_run_steps(void);
/* True while the last run ended with work left (core's idle is running). */
bool osb_core_steps_pending(void);
/* A module queued work for its step outside a step (in a poll, timer or
 * after-work callback): keep the loop from blocking in poll, or ending,
 * before the steps ran. Cheap and idempotent; call it on every enqueue.
 * (The prepare runs every iteration anyway; this is what keeps a loop with
 * nothing else referenced alive until the queued work is done.) */
void osb_core_wake(void);
/* Close core's loop handles (prepare, idle) through their close callbacks;
 * steps stay registered but no longer run from the loop. Idempotent; main
 * calls it in its shutdown sequence, before uv_loop_close. */
void osb_core_close(void);

/* Close a handle whose memory is static (or owned elsewhere) through a
 * no-op close callback; idempotent, and harmless on a never-initialised
 * (zeroed) handle. Heap handles use their own callback to free. */
struct uv_handle_s;
void osb_handle_close(struct uv_handle_s *h);

/* ---- module shutdown hooks ----
 * A module registers what it must do on SIGTERM/SIGINT; main runs every
 * hook once, in ascending `order` (registration order for equal orders).
 * Hooks start the module's shutdown (stop accepting, tell clients, cancel
 * or finish work) and must not block; closing handles comes later, from the
 * module's own close function.
 *
 * The shutdown has two phases, split at OSB_SHUTDOWN_STOP. The drain phase
 * (orders below it) runs at the signal: the instance announces that it is
 * going (/ready 503, responses carry Connection: close) but keeps serving,
 * so a load balancer polling /ready sees the 503 and moves traffic away.
 * The stop phase (OSB_SHUTDOWN_STOP and above) runs when main ends the
 * window (SHUTDOWN_DRAIN_DELAY_MS, or at once when it is 0). Documented
 * orders: */
enum {
  OSB_SHUTDOWN_HEALTH = 100,      /* drain: /ready answers 503 */
  OSB_SHUTDOWN_HTTP_DRAIN = 150,  /* drain: every response closes its connection; the listener stays open */
  OSB_SHUTDOWN_STOP = 200,        /* first order of the stop phase */
  OSB_SHUTDOWN_HTTP = 200,        /* stop: listener closes, idle connections close, WebSockets 1001 */
  OSB_SHUTDOWN_UPSTREAM = 300,    /* stop: outbound calls get the rest of the deadline */
  OSB_SHUTDOWN_REALTIME = 400,
  OSB_SHUTDOWN_DB = 900,          /* reserved: the database closes last, from main's finish */
};
typedef void (*osb_shutdown_fn)(void *ud);
void osb_core_on_shutdown(const char *name, int order, osb_shutdown_fn fn, void *ud);
/* Run every hook whose order is below `below` and that has not run yet,
 * in order (main: osb_core_shutdown_until(OSB_SHUTDOWN_STOP) at the signal). */
void osb_core_shutdown_until(int below);
/* Run every hook that has not run yet, in order: the rest of the shutdown
 * (each hook runs once however often this is called). */
void osb_core_shutdown(void);
/* Forget every hook (tests, and main after the loop closed). */
void osb_core_shutdown_reset(void);

/* ---- small helpers ---- */
uint64_t osb_now_ms(void);                /* uv_now of the main loop (cached clock) */
uint64_t osb_wallclock_ms(void);          /* real time since epoch */
void osb_random_bytes(void *p, size_t n); /* CSPRNG (libsodium) */
void osb_hex(char *out, const void *p, size_t n); /* out: 2n+1 bytes */
bool osb_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);
bool osb_strcaseeq_n(const char *a, size_t alen, const char *b);

#endif
