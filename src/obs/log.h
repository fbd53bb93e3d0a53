/* log.h: structured logging to stderr.
 *
 * JSON lines by default, one object per line:
 *   {"ts":"2026-11-26T05:40:00.123Z","level":"info","module":"http","msg":"...",<fields>}
 * LOG_FORMAT=text for people:
 *   2026-11-26T05:40:00.123Z INFO  http: msg key=value ...
 * The output is always one line per call and always valid JSON in json
 * format: quotes, newlines, control characters and invalid UTF-8 in the
 * message are escaped (invalid bytes become U+FFFD).
 *
 * Never pass a secret, a password or a token: callers log identifiers (user
 * id, request id, statement name), not values.
 *
 * Safe to call from worker threads: each line is built in memory and written
 * with one fwrite under stdio's stream lock, so lines never interleave.
 * osb_log_init() and osb_log_set_output() are for start-up (and tests),
 * before threads exist. */
#ifndef OSB_LOG_H
#define OSB_LOG_H

#include <stdbool.h>
#include <stdio.h>
#include "core/core.h"

typedef enum { OSB_LOG_DEBUG = 0, OSB_LOG_INFO, OSB_LOG_WARN, OSB_LOG_ERROR } osb_log_level_t;

typedef struct json_t json_t;

/* Until called: level info, format json. Out-of-range values are clamped. */
void osb_log_init(int level, int format /* osb_logfmt_t */);
extern int osb__log_level;
static inline bool osb_log_enabled(int level) { return level >= osb__log_level; }

/* Where lines go: NULL = stderr (the default). The stream is not closed by
 * the logger; each line is flushed. */
void osb_log_set_output(FILE *f);

/* A message with no fields. `module` may be NULL ("main"). */
void osb_log(int level, const char *module, const char *fmt, ...) OSB_PRINTF(3, 4);
/* A message with structured fields; `fields` (a JSON object) is stolen, may
 * be NULL. Its members follow "msg" in order; a member named ts, level,
 * module or msg is written as _ts, _level, ... so it cannot shadow them.
 * A non-object `fields` is written as "fields":<value>. */
void osb_log_fields(int level, const char *module, const char *msg, json_t *fields);

/* A message with typed fields, formatted without building JSON objects
 * (the access log's fast path). */
typedef enum { OSB_KV_STR, OSB_KV_INT, OSB_KV_MICROS } osb_log_kv_type_t;
typedef struct osb_log_kv {
  const char *key;
  osb_log_kv_type_t type;  /* OSB_KV_MICROS: i microseconds, shown as milliseconds */
  const char *s;
  int64_t i;
} osb_log_kv_t;
#define OSB_KV_S(k, v) {(k), OSB_KV_STR, (v), 0}
#define OSB_KV_I(k, v) {(k), OSB_KV_INT, NULL, (int64_t)(v)}
#define OSB_KV_US(k, v) {(k), OSB_KV_MICROS, NULL, (int64_t)(v)}
void osb_log_kv(int level, const char *module, const char *msg, const osb_log_kv_t *kv, size_t n);

/* Batch debug/info lines of the calling (loop) thread until osb_log_flush(),
 * which the "log" step of core's before-sleep phase (OSB_STEP_LOG, last)
 * calls once per loop iteration. stop removes the step and flushes. */
void osb_log_batch_start(void);
void osb_log_flush(void);
void osb_log_batch_stop(void);

/* Parse "debug|info|warn|error" (any case) → level, or -1. */
int osb_log_level_parse(const char *s);

#endif
