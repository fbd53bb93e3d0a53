/* apputil.c: validation, list parameters and answers shared by the app
 * route files (see apputil.h). */
#include "apps/apputil.h"

#include "http/http.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"

/* ---- validation ---- */

void osb_app_field_error(osb_app_fields_t *v, const char *field, const char *reason) {
  if (!v->fields) v->fields = json_object();
  if (!json_object_get(v->fields, field)) json_object_set_new(v->fields, field, json_string(reason));
}

static void send_invalid(osb_req_t *req, const char *message, json_t *fields, json_t *rows) {
  json_t *e = json_pack("{s:s, s:s, s:s}", "code", "validation_failed", "message",
                        message ? message : "some fields are invalid", "request_id", osb_req_id(req));
  json_object_set_new(e, "fields", fields ? fields : json_object());
  if (rows) json_object_set_new(e, "rows", rows);
  osb_res_json(req, 400, json_pack("{s:o}", "error", e));
}

void osb_app_send_invalid(osb_req_t *req, osb_app_fields_t *v, const char *message) {
  json_t *f = v->fields;
  v->fields = NULL;
  send_invalid(req, message, f, NULL);
}

void osb_app_send_invalid_rows(osb_req_t *req, json_t *rows, const char *message) {
  send_invalid(req, message, NULL, rows);
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) n++;
  return n;
}

bool osb_app_get_string(osb_app_fields_t *v, json_t *obj, const char *name, size_t min_chars,
                        size_t max_chars, bool nullable, const char **out, bool *present) {
  json_t *j = json_object_get(obj, name);
  if (present) *present = j != NULL;
  if (!j) return true;
  if (json_is_null(j) && nullable) {
    *out = NULL;
    return true;
  }
  if (!json_is_string(j)) {
    osb_app_field_error(v, name, nullable ? "must be a string or null" : "must be a string");
    return false;
  }
  const char *s = json_string_value(j);
  if (strlen(s) != json_string_length(j)) {
    osb_app_field_error(v, name, "must not contain NUL characters");
    return false;
  }
  size_t n = utf8_chars(s);
  if (n < min_chars || n > max_chars) {
    char why[96];
    if (min_chars > 0 && n < min_chars)
      snprintf(why, sizeof(why), min_chars == 1 ? "must not be empty" : "must be at least %zu characters", min_chars);
    else snprintf(why, sizeof(why), "must be at most %zu characters", max_chars);
    osb_app_field_error(v, name, why);
    return false;
  }
  *out = s;
  return true;
}

bool osb_app_get_int(osb_app_fields_t *v, json_t *obj, const char *name, int64_t min, int64_t max,
                     int64_t *out, bool *present) {
  json_t *j = json_object_get(obj, name);
  if (present) *present = j != NULL;
  if (!j) return true;
  int64_t x;
  if (json_is_integer(j)) x = json_integer_value(j);
  else if (json_is_real(j) && floor(json_real_value(j)) == json_real_value(j) && fabs(json_real_value(j)) < 9e15)
    x = (int64_t)json_real_value(j);
  else {
    osb_app_field_error(v, name, "must be an integer");
    return false;
  }
  if (x < min || x > max) {
    char why[96];
    snprintf(why, sizeof(why), "must be between %lld and %lld", (long long)min, (long long)max);
    osb_app_field_error(v, name, why);
    return false;
  }
  *out = x;
  return true;
}

bool osb_app_get_number(osb_app_fields_t *v, json_t *obj, const char *name, double min, double max,
                        double *out, bool *present) {
  json_t *j = json_object_get(obj, name);
  if (present) *present = j != NULL;
  if (!j) return true;
  if (!json_is_number(j)) {
    osb_app_field_error(v, name, "must be a number");
    return false;
  }
  double x = json_number_value(j);
  if (!isfinite(x) || x < min || x > max) {
    char why[96];
    snprintf(why, sizeof(why), "must be between %g and %g", min, max);
    osb_app_field_error(v, name, why);
    return false;
  }
  *out = x;
  return true;
}

void osb_app_reject_unknown(osb_app_fields_t *v, json_t *obj, const char *const *allowed) {
  const char *key;
  json_t *val;
  json_object_foreach(obj, key, val) {
    bool ok = false;
    for (const char *const *a = allowed; *a; a++)
      if (strcmp(*a, key) == 0) ok = true;
    if (!ok) osb_app_field_error(v, key, "is not a known field");
  }
}

/* ---- lists ---- */

int osb_app_limit(osb_req_t *req) {
  const char *s = osb_req_query(req, "limit");
  if (!s) return 20;
  char *end;
  errno = 0;
  long n = strtol(s, &end, 10);
  if (!*s || *end || errno || n < 1 || n > 100) {
    osb_app_fields_t v = {0};
    osb_app_field_error(&v, "limit", "must be an integer between 1 and 100");
    osb_app_send_invalid(req, &v, "invalid query parameter");
    return -1;
  }
  return (int)n;
}

char *osb_app_cursor_encode(json_t *pos) {
  char *s = json_dumps(pos, JSON_COMPACT);
  size_t n = strlen(s);
  size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *out = osb_malloc(cap);
  sodium_bin2base64(out, cap, (const unsigned char *)s, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  free(s);
  return out;
}

json_t *osb_app_cursor_decode(const char *cursor) {
  size_t n = strlen(cursor);
  if (n == 0 || n > 1024) return NULL;
  unsigned char *bin = osb_malloc(n + 1);
  size_t len = 0;
  json_t *j = NULL;
  if (sodium_base642bin(bin, n, cursor, n, NULL, &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0)
    j = json_loadb((const char *)bin, len, 0, NULL);
  free(bin);
  if (j && !json_is_object(j)) {
    json_decref(j);
    j = NULL;
  }
  return j;
}

char *osb_app_like_pattern(osb_req_t *req, const char *q) {
  size_t n = strlen(q);
  char *pattern = osb_req_alloc(req, 2 * n + 3);
  char *w = pattern;
  *w++ = '%';
  for (const char *s = q; *s; s++) {
    if (*s == '%' || *s == '_' || *s == '\\') *w++ = '\\';
    *w++ = *s;
  }
  *w++ = '%';
  *w = 0;
  return pattern;
}

void osb_app_send_newest_page(osb_req_t *req, const osb_db_result_t *res, int limit) {
  size_t n = osb_db_nrows(res);
  size_t shown = n > (size_t)limit ? (size_t)limit : n;
  json_t *items = json_array();
  for (size_t i = 0; i < shown; i++) json_array_append_new(items, osb_db_row_json(res, i));
  json_t *next = json_null();
  if (n > (size_t)limit && shown > 0) {
    json_t *pos = json_pack("{s:I, s:s}", "u", (json_int_t)osb_db_get_int(res, shown - 1, "updated_at"), "i",
                            osb_db_get(res, shown - 1, "id"));
    char *cur = osb_app_cursor_encode(pos);
    json_decref(pos);
    next = json_string(cur);
    free(cur);
  }
  osb_res_json(req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

bool osb_app_newest_cursor(osb_req_t *req, const char *cursor, const char **updated_at, const char **id) {
  json_t *j = osb_app_cursor_decode(cursor);
  json_t *u = j ? json_object_get(j, "u") : NULL;
  const char *i = j ? json_string_value(json_object_get(j, "i")) : NULL;
  if (!json_is_integer(u) || !i || strlen(i) > 64) {
    if (j) json_decref(j);
    osb_res_error(req, 400, "bad_request", "cursor is malformed");
    return false;
  }
  *updated_at = osb_app_itoa(req, json_integer_value(u));
  *id = osb_req_strdup(req, i);
  json_decref(j);
  return true;
}

/* ---- answers ---- */

void osb_app_db_error(osb_req_t *req, int err) {
  switch (err) {
    case OSB_ENOTFOUND: osb_res_error_code(req, err, "a referenced object does not exist"); return;
    case OSB_ECONFLICT: osb_res_error_code(req, err, "the write conflicts with existing data"); return;
    case OSB_EINVAL: osb_res_error_code(req, err, "a value does not fit its column"); return;
    case OSB_EUNAVAIL: osb_res_error_code(req, err, "the database is unavailable, retry shortly"); return;
    default: osb_res_error_code(req, err, "database error"); return;
  }
}

const char *osb_app_itoa(osb_req_t *req, int64_t v) {
  char *s = osb_req_alloc(req, 24);
  snprintf(s, 24, "%lld", (long long)v);
  return s;
}

int osb_app_query_bool(osb_req_t *req, const char *name) {
  const char *s = osb_req_query(req, name);
  if (!s) return 0;
  if (!strcmp(s, "true") || !strcmp(s, "1")) return 1;
  if (!strcmp(s, "false") || !strcmp(s, "0") || !*s) return 0;
  osb_app_fields_t v = {0};
  osb_app_field_error(&v, name, "must be true or false");
  osb_app_send_invalid(req, &v, "invalid query parameter");
  return -1;
}
