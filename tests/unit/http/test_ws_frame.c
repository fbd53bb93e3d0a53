/* WebSocket server frames and UTF-8 validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/internal.h"

static void small_frame_header(void **state) {
  osb_msg_t *m = osb_ws_frame_new(OSB_WS_TEXT, "hello", 5);
  assert_int_equal(m->len, 7);
  assert_int_equal((uint8_t)m->data[0], 0x81);
  assert_int_equal((uint8_t)m->data[1], 5);
  assert_memory_equal(m->data + 2, "hello", 5);
  osb_msg_unref(m);
}

static void medium_frame_uses_16_bit_length(void **state) {
  char *p = calloc(1, 300);
  osb_msg_t *m = osb_ws_frame_new(OSB_WS_BINARY, p, 300);
  assert_int_equal(m->len, 304);
  assert_int_equal((uint8_t)m->data[0], 0x82);
  assert_int_equal((uint8_t)m->data[1], 126);
  assert_int_equal(((uint8_t)m->data[2] << 8) | (uint8_t)m->data[3], 300);
  osb_msg_unref(m);
  free(p);
}

static void large_frame_uses_64_bit_length(void **state) {
  size_t n = 70000;
  char *p = calloc(1, n);
  osb_msg_t *m = osb_ws_frame_new(OSB_WS_BINARY, p, n);
  assert_int_equal(m->len, n + 10);
  assert_int_equal((uint8_t)m->data[1], 127);
  uint64_t len = 0;
  for (int i = 0; i < 8; i++) len = (len << 8) | (uint8_t)m->data[2 + i];
  assert_int_equal(len, n);
  osb_msg_unref(m);
  free(p);
}

static void json_frame_is_compact_text(void **state) {
  json_t *j = json_pack("{s:s, s:i}", "type", "pong", "id", 7);
  osb_msg_t *m = osb_ws_frame_json(j);
  json_decref(j);
  assert_int_equal((uint8_t)m->data[0], 0x81);
  size_t plen = (uint8_t)m->data[1];
  assert_int_equal(plen, m->len - 2);
  json_t *back = json_loadb(m->data + 2, plen, 0, NULL);
  assert_non_null(back);
  assert_string_equal(json_string_value(json_object_get(back, "type")), "pong");
  assert_null(memchr(m->data + 2, ' ', plen));
  json_decref(back);
  osb_msg_unref(m);
}

static void shared_frame_refcount(void **state) {
  osb_msg_t *m = osb_ws_frame_new(OSB_WS_TEXT, "x", 1);
  osb_msg_ref(m);
  osb_msg_ref(m);
  assert_int_equal(m->refcnt, 3);
  osb_msg_unref(m);
  osb_msg_unref(m);
  assert_int_equal(m->refcnt, 1);
  osb_msg_unref(m);
}

static void utf8_accepts_valid(void **state) {
  const char *ok[] = {"", "plain ascii", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xf4\x8f\xbf\xbf"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(ok); i++)
    assert_true(osb__utf8_valid((const uint8_t *)ok[i], strlen(ok[i])));
}

static void utf8_rejects_invalid(void **state) {
  const char *bad[] = {
    "\xc3",             /* truncated */
    "\xc0\xaf",         /* overlong */
    "\xe0\x80\xaf",     /* overlong 3-byte */
    "\xed\xa0\x80",     /* surrogate */
    "\xf4\x90\x80\x80", /* above U+10FFFF */
    "\xff",             /* never valid */
    "a\x80z",           /* stray continuation */
    "\xe2\x82",         /* truncated at the end */
  };
  for (size_t i = 0; i < OSB_ARRAY_LEN(bad); i++)
    assert_false(osb__utf8_valid((const uint8_t *)bad[i], strlen(bad[i])));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(small_frame_header),
    cmocka_unit_test(medium_frame_uses_16_bit_length),
    cmocka_unit_test(large_frame_uses_64_bit_length),
    cmocka_unit_test(json_frame_is_compact_text),
    cmocka_unit_test(shared_frame_refcount),
    cmocka_unit_test(utf8_accepts_valid),
    cmocka_unit_test(utf8_rejects_invalid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
