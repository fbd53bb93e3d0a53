/* validate_harness.h: what market_fuzz.c and crm_fuzz.c share — the body
 * parsed as the route parses it, and the pieces of the oracle: a reference
 * model of one field's rule (docs/apps.md's limits, counted with a UTF-8
 * decoder of its own), the set of fields a refusal must name, and checks of
 * the refusal's shape. Each driver #includes its route file(s) first. */
#ifndef OSB_FUZZ_VALIDATE_HARNESS_H
#define OSB_FUZZ_VALIDATE_HARNESS_H

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* The body as osb_req_json() (http/request.c) makes it: a body is
 * required, parsed with JSON_REJECT_DUPLICATES, and must be an object;
 * anything else is 400 invalid_json before a validator runs. The inputs
 * stay below MAX_BODY_BYTES' default (1 MiB, 413 in the HTTP layer). */
static json_t *vf_parse_body(const uint8_t *p, size_t n) {
  if (n == 0) return NULL;
  json_error_t e;
  json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &e);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* Code points of a NUL-free UTF-8 string (jansson only hands out valid
 * UTF-8), by decoding each sequence from its lead byte. */
static size_t vf_code_points(const char *s) {
  size_t n = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t len = *p < 0x80 ? 1 : (*p >> 5) == 0x6 ? 2 : (*p >> 4) == 0xE ? 3 : 4;
    osb_assert((*p >> 3) != 0x1F && (*p >> 6) != 0x2);   /* a lead byte */
    for (size_t k = 1; k < len; k++) osb_assert((p[k] >> 6) == 0x2);
    p += len;
    n++;
  }
  return n;
}

/* One field's rule. A string: JSON null only when nullable, no NUL, min..max
 * code points (and, for alnum, an ASCII letter or digit somewhere). An
 * integer: an integral JSON number in min..max. A number: finite, in
 * min..max. */
typedef enum { VF_STR, VF_INT, VF_NUM } vf_type_t;
typedef struct vf_rule {
  const char *name;
  vf_type_t type;
  double min, max;
  bool nullable, alnum;
} vf_rule_t;

static bool vf_string_ok(const vf_rule_t *r, const char *s, size_t bytes) {
  if (strlen(s) != bytes) return false;
  size_t n = vf_code_points(s);
  if ((double)n < r->min || (double)n > r->max) return false;
  if (r->alnum) {
    bool any = false;
    for (const char *c = s; *c; c++)
      if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')) any = true;
    if (!any) return false;
  }
  return true;
}

static bool vf_value_ok(const vf_rule_t *r, const json_t *v) {
  switch (r->type) {
    case VF_STR:
      if (json_is_null(v)) return r->nullable;
      return json_is_string(v) && vf_string_ok(r, json_string_value(v), json_string_length(v));
    case VF_INT: {
      if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        return (double)x >= r->min && (double)x <= r->max;
      }
      if (!json_is_real(v)) return false;
      double x = json_real_value(v);
      return isfinite(x) && x == trunc(x) && x >= r->min && x <= r->max;
    }
    case VF_NUM: {
      if (!json_is_number(v)) return false;
      double x = json_number_value(v);
      return isfinite(x) && x >= r->min && x <= r->max;
    }
  }
  return false;
}

static bool vf_in(const char *const *names, const char *key) {
  for (; *names; names++)
    if (strcmp(*names, key) == 0) return true;
  return false;
}

/* The expected set of bad fields, as an object {name: true}. */
static void vf_bad(json_t *set, const char *name) { json_object_set_new(set, name, json_true()); }

/* A refusal's `fields`: an object naming exactly the expected fields, each
 * with a non-empty reason. */
static void vf_check_fields(const json_t *fields, const json_t *expected) {
  osb_assert(json_is_object(fields));
  osb_assert(json_object_size(fields) > 0);
  osb_assert(json_object_size(fields) == json_object_size(expected));
  const char *key;
  json_t *why;
  json_object_foreach((json_t *)fields, key, why) {
    osb_assert(json_object_get(expected, key) != NULL);
    osb_assert(json_is_string(why) && json_string_length(why) > 0);
  }
}

/* The validator's verdict against the model's: a refusal must name exactly
 * the expected fields (checked, then its `fields` freed), an acceptance
 * expects none. Returns whether the body was accepted. */
static bool vf_verdict(bool ok, osb_app_fields_t *f, const json_t *expected) {
  osb_assert(ok == osb_app_fields_ok(f));
  if (ok) {
    osb_assert(json_object_size(expected) == 0);
    return true;
  }
  vf_check_fields(f->fields, expected);
  json_decref(f->fields);
  f->fields = NULL;
  return false;
}

/* The record serialized and parsed again as a body (JSON text, as a client
 * would send it back). `ascii` picks \u escapes for non-ASCII text. */
static json_t *vf_reparse(json_t *record, bool ascii) {
  char *text = json_dumps(record, JSON_COMPACT | (ascii ? JSON_ENSURE_ASCII : 0));
  osb_assert(text != NULL);
  json_t *j = vf_parse_body((const uint8_t *)text, strlen(text));
  osb_assert(j != NULL);
  free(text);
  return j;
}

static bool vf_same_str(const char *a, const char *b) {
  if (!a || !b) return a == b;
  return strcmp(a, b) == 0;
}

#endif
