/* apputil.h: what the app route files share — per-field validation with the
 * SPEC §4 error body, list parameters (limit, opaque keyset cursors), JSON
 * field readers, and the database-error answer.
 *
 * Validation (SPEC §4): a write route collects every bad field before it
 * answers, then sends 400
 *   {"error":{"code":"validation_failed","message","request_id","fields":{name: why}}}
 * and a bulk route adds "rows":[{"index","fields"}]. Loop thread only. */
#ifndef OSB_APPS_APPUTIL_H
#define OSB_APPS_APPUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

typedef struct json_t json_t;
typedef struct osb_req osb_req_t;   /* http/http.h */

/* ---- validation ----
 * A collector of field errors; `fields` is created on the first error. */
typedef struct osb_app_fields {
  json_t *fields;   /* {name: reason} or NULL */
} osb_app_fields_t;

void osb_app_field_error(osb_app_fields_t *v, const char *field, const char *reason);
static inline bool osb_app_fields_ok(const osb_app_fields_t *v) { return v->fields == NULL; }
/* Answer 400 validation_failed with the collected fields (steals them). */
void osb_app_send_invalid(osb_req_t *req, osb_app_fields_t *v, const char *message);
/* The same with bulk rows: `rows` is [{index, fields}] (stolen). */
void osb_app_send_invalid_rows(osb_req_t *req, json_t *rows, const char *message);

/* Readers of one optional member of a JSON object. Each returns false and
 * records an error when the member is present with the wrong type or out
 * of bounds; true otherwise (with *present telling whether it was there).
 * Strings are checked for length in characters (UTF-8 code points), are
 * borrowed from obj, and may be JSON null when `nullable` (then *out = NULL). */
bool osb_app_get_string(osb_app_fields_t *v, json_t *obj, const char *name, size_t min_chars,
                        size_t max_chars, bool nullable, const char **out, bool *present);
bool osb_app_get_int(osb_app_fields_t *v, json_t *obj, const char *name, int64_t min, int64_t max,
                     int64_t *out, bool *present);
bool osb_app_get_number(osb_app_fields_t *v, json_t *obj, const char *name, double min, double max,
                        double *out, bool *present);
/* Record an error for every member of obj not in `allowed` (NULL-terminated). */
void osb_app_reject_unknown(osb_app_fields_t *v, json_t *obj, const char *const *allowed);

/* ---- lists (SPEC §4: {items, next_cursor}, limit 1..100, default 20) ----
 * Parse ?limit=; on a bad value answers 400 validation_failed and returns -1. */
int osb_app_limit(osb_req_t *req);
/* Opaque cursors: base64url of a small JSON object of the caller's choice
 * (the keyset position). encode returns a malloc'd string; decode returns a
 * new reference or NULL when malformed (the caller answers 400). */
char *osb_app_cursor_encode(json_t *pos);
json_t *osb_app_cursor_decode(const char *cursor);

/* "%q%" with LIKE's metacharacters (% _ \) escaped, so free text is matched
 * literally as a substring (statements use ESCAPE '\' on SQLite; it is
 * PostgreSQL's default). In request memory. */
char *osb_app_like_pattern(osb_req_t *req, const char *q);

/* Newest-first lists keyed by (updated_at, id) — contacts, conversations:
 * answer {items, next_cursor} from rows fetched with LIMIT limit + 1 (rows
 * as osb_db_row_json), and read such a cursor back as the two statement
 * parameters (request memory). read returns false after answering 400. */
typedef struct osb_db_result osb_db_result_t;
void osb_app_send_newest_page(osb_req_t *req, const osb_db_result_t *res, int limit);
bool osb_app_newest_cursor(osb_req_t *req, const char *cursor, const char **updated_at, const char **id);

/* ---- answers ---- */
/* The answer for a database error, through osb_res_error_code (the one
 * vocabulary, docs/http.md) with a message that says what went wrong. */
void osb_app_db_error(osb_req_t *req, int err);

/* Decimal text of an integer, in request memory. */
const char *osb_app_itoa(osb_req_t *req, int64_t v);
/* "true"/"false" of a parsed ?name= flag: false when absent; -1 (answered
 * 400) when neither true/false/1/0. */
int osb_app_query_bool(osb_req_t *req, const char *name);

#endif
