/* osb_buf_json_str always produces valid JSON, whatever the bytes (issue 8:
 * error bodies were empty for a path with %ff), and osb_utf8_trim never
 * splits a character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/core.h"

static char *esc(const char *s, size_t n) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_json_str(&b, s, n);
  return b.base;
}

/* The escaped string parses as JSON and decodes to `want`. */
static void assert_round_trip(const char *in, size_t n, const char *want) {
  char *s = esc(in, n);
  json_error_t e;
  json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
  if (!j) fail_msg("not JSON: %s (%s)", s, e.text);
  assert_string_equal(json_string_value(j), want);
  json_decref(j);
  free(s);
}

static void valid_utf8_is_kept(void **state) {
  assert_round_trip("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  assert_round_trip("a\"b\\c\n\x01", 7, "a\"b\\c\n\x01");
}

static void invalid_bytes_become_replacement_characters(void **state) {
  assert_round_trip("/\xff", 2, "/\xef\xbf\xbd");
  assert_round_trip("a\xc3(b", 4, "a\xef\xbf\xbd(b");               /* lead without continuation */
  assert_round_trip("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");     /* overlong '/' */
  assert_round_trip("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
  assert_round_trip("\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
  assert_round_trip("x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd");   /* cut at the end */
}

static void trim_never_splits_a_character(void **state) {
  const char s[] = "ab\xc3\xa9\xe2\x82\xac";   /* a b é € : 7 bytes */
  assert_int_equal(osb_utf8_trim(s, 7), 7);
  assert_int_equal(osb_utf8_trim(s, 6), 4);     /* € cut after 2 of 3 bytes */
  assert_int_equal(osb_utf8_trim(s, 5), 4);
  assert_int_equal(osb_utf8_trim(s, 4), 4);
  assert_int_equal(osb_utf8_trim(s, 3), 2);     /* é cut after its lead byte */
  assert_int_equal(osb_utf8_trim(s, 2), 2);
  assert_int_equal(osb_utf8_trim(s, 0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(valid_utf8_is_kept),
    cmocka_unit_test(invalid_bytes_become_replacement_characters),
    cmocka_unit_test(trim_never_splits_a_character),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
