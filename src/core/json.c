/* json.c: the one JSON serializer (see json.h). */
#include "core/json.h"

#include <jansson.h>
#include <stdlib.h>

#define OSB_JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15))

static int to_msg(const char *buf, size_t size, void *data) {
  osb_msg_append((osb_msg_t **)data, buf, size);
  return 0;
}

int osb_json_dump_append(const json_t *j, osb_msg_t **m) {
  if (!j || json_dump_callback(j, to_msg, m, OSB_JSON_FLAGS) != 0) return OSB_EINVAL;
  return 0;
}

static int to_buf(const char *buf, size_t size, void *data) {
  osb_buf_append(data, buf, size);
  return 0;
}

int osb_json_dump_buf(const json_t *j, osb_buf_t *b) {
  if (!j || json_dump_callback(j, to_buf, b, OSB_JSON_FLAGS) != 0) return OSB_EINVAL;
  return 0;
}

osb_msg_t *osb_json_dump_msg(const json_t *j, size_t headroom) {
  osb_msg_t *m = osb_msg_new(headroom, 128);
  if (osb_json_dump_append(j, &m) != 0) {
    osb_msg_unref(m);
    return NULL;
  }
  return m;
}

const char *osb_json_error_kind(const json_error_t *e) {
  switch (json_error_code(e)) {
    case json_error_premature_end_of_input: return "unexpected end of input";
    case json_error_end_of_input_expected: return "text after the JSON value";
    case json_error_invalid_utf8: return "invalid UTF-8";
    case json_error_null_character: return "NUL character";
    case json_error_null_byte_in_key: return "NUL byte in an object key";
    case json_error_duplicate_key: return "duplicate object key";
    case json_error_numeric_overflow: return "number out of range";
    case json_error_stack_overflow: return "nested too deeply";
    case json_error_out_of_memory: return "too large";
    case json_error_invalid_syntax:
    default: return "invalid syntax";
  }
}

char *osb_json_dumps(const json_t *j, size_t *len) {
  char *s = j ? json_dumps(j, OSB_JSON_FLAGS) : NULL;
  if (len) *len = s ? strlen(s) : 0;
  return s;
}
