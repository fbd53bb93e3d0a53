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

char *osb_json_dumps(const json_t *j, size_t *len) {
  char *s = j ? json_dumps(j, OSB_JSON_FLAGS) : NULL;
  if (len) *len = s ? strlen(s) : 0;
  return s;
}
