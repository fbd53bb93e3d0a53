/* log.h: structured logging to stderr.
 *
 * JSON lines by default ({"ts","level","module","msg",...fields}),
 * LOG_FORMAT=text for people. Never pass a secret, a password or a token:
 * callers log identifiers (user id, request id, statement name), not values.
 * Safe to call from worker threads (one fputs per line under stdio's lock). */
#ifndef OSB_LOG_H
#define OSB_LOG_H

#include <stdbool.h>
#include "core/core.h"

typedef enum { OSB_LOG_DEBUG = 0, OSB_LOG_INFO, OSB_LOG_WARN, OSB_LOG_ERROR } osb_log_level_t;

typedef struct json_t json_t;

void osb_log_init(int level, int format /* osb_logfmt_t */);
extern int osb__log_level;
static inline bool osb_log_enabled(int level) { return level >= osb__log_level; }

/* A message with no fields. */
void osb_log(int level, const char *module, const char *fmt, ...) OSB_PRINTF(3, 4);
/* A message with structured fields; `fields` (a JSON object) is stolen, may be NULL. */
void osb_log_fields(int level, const char *module, const char *msg, json_t *fields);

/* Parse "debug|info|warn|error" → level, or -1. */
int osb_log_level_parse(const char *s);

#endif
