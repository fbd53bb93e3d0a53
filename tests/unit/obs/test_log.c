/* test_log.c: log lines are single lines of valid JSON (or text), carry
 * level, module, msg and fields, and respect the level. Output goes to a
 * temporary file that each test reads back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "obs/log.h"

static FILE *out;

static int setup(void **state) {
  out = tmpfile();
  assert_non_null(out);
  osb_log_set_output(out);
  osb_log_init(OSB_LOG_DEBUG, OSB_LOGFMT_JSON);
  return 0;
}

static int teardown(void **state) {
  osb_log_set_output(NULL);
  osb_log_init(OSB_LOG_INFO, OSB_LOGFMT_JSON);
  fclose(out);
  return 0;
}

/* Everything logged so far (caller frees). */
static char *captured(void) {
  long n = ftell(out);
  assert_true(n >= 0);
  char *s = malloc((size_t)n + 1);
  rewind(out);
  assert_int_equal(fread(s, 1, (size_t)n, out), (size_t)n);
  s[n] = 0;
  fseek(out, 0, SEEK_END);
  return s;
}

static size_t count_lines(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

/* The only line logged, parsed. */
static json_t *only_line_json(void) {
  char *s = captured();
  assert_int_equal(count_lines(s), 1);
  json_error_t e;
  json_t *j = json_loads(s, 0, &e);
  if (!j) fail_msg("not JSON (%s): %s", e.text, s);
  free(s);
  assert_true(json_is_object(j));
  return j;
}

static const char *str_member(json_t *j, const char *k) {
  json_t *v = json_object_get(j, k);
  if (!json_is_string(v)) fail_msg("member %s missing or not a string", k);
  return json_string_value(v);
}

static void test_json_line_has_ts_level_module_msg(void **state) {
  osb_log(OSB_LOG_INFO, "http", "listening on %s:%d", "127.0.0.1", 8080);
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "level"), "info");
  assert_string_equal(str_member(j, "module"), "http");
  assert_string_equal(str_member(j, "msg"), "listening on 127.0.0.1:8080");
  const char *ts = str_member(j, "ts");
  /* 2026-11-26T05:40:00.123Z */
  assert_int_equal(strlen(ts), 24);
  assert_int_equal(ts[4], '-');
  assert_int_equal(ts[10], 'T');
  assert_int_equal(ts[19], '.');
  assert_int_equal(ts[23], 'Z');
  json_decref(j);
}

static void test_json_line_starts_with_ts_and_ends_with_newline(void **state) {
  osb_log(OSB_LOG_WARN, "db", "slow");
  char *s = captured();
  assert_true(strncmp(s, "{\"ts\":\"", 7) == 0);
  assert_string_equal(s + strlen(s) - 2, "}\n");
  free(s);
}

static void test_json_fields_merged_after_msg(void **state) {
  osb_log_fields(OSB_LOG_INFO, "http", "listening",
                 json_pack("{s:i, s:s, s:b}", "port", 43211, "host", "127.0.0.1", "tls", 0));
  char *s = captured();
  assert_non_null(strstr(s, "\"msg\":\"listening\",\"port\":43211,\"host\":\"127.0.0.1\",\"tls\":false}"));
  free(s);
  osb_log_fields(OSB_LOG_INFO, "http", "x", json_pack("{s:i}", "n", 1));
  /* the second line parses too */
  s = captured();
  assert_int_equal(count_lines(s), 2);
  json_t *j = json_loads(strchr(s, '\n') + 1, 0, NULL);
  assert_non_null(j);
  assert_int_equal(json_integer_value(json_object_get(j, "n")), 1);
  json_decref(j);
  free(s);
}

static void test_json_field_cannot_shadow_level(void **state) {
  osb_log_fields(OSB_LOG_ERROR, "auth", "m", json_pack("{s:s, s:s}", "level", "debug", "msg", "fake"));
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "level"), "error");
  assert_string_equal(str_member(j, "msg"), "m");
  assert_string_equal(str_member(j, "_level"), "debug");
  assert_string_equal(str_member(j, "_msg"), "fake");
  json_decref(j);
}

static void test_json_non_object_fields_kept(void **state) {
  osb_log_fields(OSB_LOG_INFO, "x", "m", json_pack("[i,i]", 1, 2));
  json_t *j = only_line_json();
  assert_true(json_is_array(json_object_get(j, "fields")));
  json_decref(j);
}

static void test_json_escapes_quotes_newlines_and_controls(void **state) {
  const char *msg = "he said \"hi\"\nthen\ttabbed\\ \x01\x1f\x7f end";
  osb_log(OSB_LOG_ERROR, "mod\"ule", "%s", msg);
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "msg"), msg);
  assert_string_equal(str_member(j, "module"), "mod\"ule");
  json_decref(j);
}

static void test_json_field_values_escaped(void **state) {
  osb_log_fields(OSB_LOG_INFO, "x", "m", json_pack("{s:s}", "path", "/a\"b\n\\c"));
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "path"), "/a\"b\n\\c");
  json_decref(j);
}

static void test_json_invalid_utf8_replaced(void **state) {
  osb_log(OSB_LOG_INFO, "x", "bad \xff\xc3 ok \xc3\xa9 \xed\xa0\x80");
  json_t *j = only_line_json();  /* jansson rejects invalid UTF-8, so parsing proves it */
  const char *m = str_member(j, "msg");
  assert_non_null(strstr(m, "\xc3\xa9"));          /* valid é kept */
  assert_non_null(strstr(m, "\xef\xbf\xbd"));      /* U+FFFD for the bad bytes */
  json_decref(j);
}

static void test_long_message_intact(void **state) {
  char big[5000];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  osb_log(OSB_LOG_INFO, "x", "%s", big);
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "msg"), big);
  json_decref(j);
}

static void test_level_filtering(void **state) {
  osb_log_init(OSB_LOG_WARN, OSB_LOGFMT_JSON);
  assert_false(osb_log_enabled(OSB_LOG_INFO));
  assert_true(osb_log_enabled(OSB_LOG_ERROR));
  osb_log(OSB_LOG_DEBUG, "x", "dropped debug");
  osb_log(OSB_LOG_INFO, "x", "dropped info");
  osb_log_fields(OSB_LOG_INFO, "x", "dropped fields", json_pack("{s:i}", "n", 1)); /* freed, not leaked */
  osb_log(OSB_LOG_WARN, "x", "kept warn");
  json_t *j = only_line_json();
  assert_string_equal(str_member(j, "msg"), "kept warn");
  assert_string_equal(str_member(j, "level"), "warn");
  json_decref(j);
}

static void test_text_format(void **state) {
  osb_log_init(OSB_LOG_INFO, OSB_LOGFMT_TEXT);
  osb_log_fields(OSB_LOG_INFO, "http", "listening",
                 json_pack("{s:s, s:i, s:s}", "host", "127.0.0.1", "port", 8080, "note", "two words"));
  char *s = captured();
  /* 2026-11-26T05:40:00.123Z INFO  http: listening host=127.0.0.1 port=8080 note="two words" */
  assert_int_equal(s[23], 'Z');
  assert_string_equal(s + 24, " INFO  http: listening host=127.0.0.1 port=8080 note=\"two words\"\n");
  free(s);
}

static void test_text_format_stays_one_line(void **state) {
  osb_log_init(OSB_LOG_INFO, OSB_LOGFMT_TEXT);
  osb_log(OSB_LOG_ERROR, "db", "line one\nline two\r\n");
  char *s = captured();
  assert_int_equal(count_lines(s), 1);
  assert_non_null(strstr(s, " ERROR db: line one\\nline two\\r\\n\n"));
  free(s);
}

static void test_level_parse(void **state) {
  assert_int_equal(osb_log_level_parse("debug"), OSB_LOG_DEBUG);
  assert_int_equal(osb_log_level_parse("INFO"), OSB_LOG_INFO);
  assert_int_equal(osb_log_level_parse("warn"), OSB_LOG_WARN);
  assert_int_equal(osb_log_level_parse("error"), OSB_LOG_ERROR);
  assert_int_equal(osb_log_level_parse("trace"), -1);
  assert_int_equal(osb_log_level_parse(NULL), -1);
}

static void test_init_clamps_level(void **state) {
  osb_log_init(99, OSB_LOGFMT_JSON);
  assert_false(osb_log_enabled(OSB_LOG_WARN));
  assert_true(osb_log_enabled(OSB_LOG_ERROR));
}

/* Lines written concurrently by several threads never interleave. */
#define THREADS 4
#define LINES 200
static void *writer(void *arg) {
  char msg[3000];
  memset(msg, 'a' + (int)(intptr_t)arg, sizeof(msg) - 1);
  msg[sizeof(msg) - 1] = 0;
  for (int i = 0; i < LINES; i++)
    osb_log_fields(OSB_LOG_INFO, "worker", msg, json_pack("{s:i, s:i}", "thread", (int)(intptr_t)arg, "i", i));
  return NULL;
}

static void test_threads_do_not_interleave(void **state) {
  pthread_t t[THREADS];
  for (intptr_t i = 0; i < THREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)i), 0);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  char *s = captured();
  assert_int_equal(count_lines(s), THREADS * LINES);
  size_t parsed = 0;
  for (char *line = s, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
    *nl = 0;
    json_t *j = json_loads(line, 0, NULL);
    if (!j) fail_msg("line %zu is not JSON", parsed);
    int th = (int)json_integer_value(json_object_get(j, "thread"));
    const char *m = json_string_value(json_object_get(j, "msg"));
    assert_int_equal(strlen(m), 2999);
    assert_int_equal(m[0], 'a' + th);
    assert_int_equal(m[2998], 'a' + th);
    json_decref(j);
    parsed++;
  }
  assert_int_equal(parsed, THREADS * LINES);
  free(s);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
    T(test_json_line_has_ts_level_module_msg),
    T(test_json_line_starts_with_ts_and_ends_with_newline),
    T(test_json_fields_merged_after_msg),
    T(test_json_field_cannot_shadow_level),
    T(test_json_non_object_fields_kept),
    T(test_json_escapes_quotes_newlines_and_controls),
    T(test_json_field_values_escaped),
    T(test_json_invalid_utf8_replaced),
    T(test_long_message_intact),
    T(test_level_filtering),
    T(test_text_format),
    T(test_text_format_stays_one_line),
    T(test_level_parse),
    T(test_init_clamps_level),
    T(test_threads_do_not_interleave),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
