/* test_result.c: results built with the internal builder, and their JSON
 * text (osb_db_row_dump / osb_db_rows_dump) against the jansson tree
 * (osb_db_row_json dumped by core/json.h): the same bytes wherever the two
 * string escapers agree, the same JSON value everywhere else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "db/internal.h"

/* A one-row result of the given columns and cells (NULL cell: SQL NULL). */
static osb_db_result_t *row_of(size_t n, const char *const *names, const osb_db_type_t *types,
                               const char *const *cells) {
  osb__rb_t b;
  osb__rb_init(&b, n);
  for (size_t i = 0; i < n; i++) osb__rb_col(&b, i, names[i], types[i]);
  for (size_t i = 0; i < n; i++) osb__rb_cell(&b, cells[i], cells[i] ? strlen(cells[i]) : 0);
  return osb__rb_finish(&b, 0);
}

static osb_db_result_t *cell_of(osb_db_type_t type, const char *text) {
  const char *names[] = { "v" };
  osb_db_type_t types[] = { type };
  const char *cells[] = { text };
  return row_of(1, names, types, cells);
}

static char *tree_text(const osb_db_result_t *res, size_t row) {
  json_t *j = osb_db_row_json(res, row);
  char *s = osb_json_dumps(j, NULL);
  json_decref(j);
  assert_non_null(s);
  return s;
}

static char *dump_text(const osb_db_result_t *res, size_t row) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_db_row_dump(res, row, &b);
  assert_non_null(b.base);
  assert_int_equal(strlen(b.base), b.len);
  return b.base;
}

/* exact: byte for byte; otherwise the same JSON value. */
static void check(const osb_db_result_t *res, bool exact) {
  char *want = tree_text(res, 0), *got = dump_text(res, 0);
  if (exact && strcmp(want, got) != 0) fail_msg("dump %s, tree %s", got, want);
  json_error_t e;
  if (exact) {
    /* 15 digits can round past DBL_MAX ("1.79769313486232e308"): the
     * tree's text does not parse back either; the bytes matched. */
    free(want);
    free(got);
    return;
  }
  json_t *a = json_loads(got, 0, &e), *t = json_loads(want, 0, &e);
  if (!a) fail_msg("dump is not JSON: %s", got);
  assert_non_null(t);
  if (!json_equal(a, t)) fail_msg("dump %s, tree %s", got, want);
  json_decref(a);
  json_decref(t);
  free(want);
  free(got);
}

static void check_cell(osb_db_type_t type, const char *text, bool exact) {
  osb_db_result_t *r = cell_of(type, text);
  check(r, exact);
  osb_db_result_unref(r);
}

static void integers_as_the_tree_prints_them(void **state) {
  (void)state;
  const char *v[] = { "0", "-5", "42", "9223372036854775807", "-9223372036854775808", "123456789012345678",
                      "007", "-0", "+3", "1.5", "1.0", "1e3", "99999999999999999999", "", "abc", "12abc",
                      "-", "00", "-12.250", "0.00001" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(v); i++) check_cell(OSB_DB_INT, v[i], true);
}

static void reals_as_the_tree_prints_them(void **state) {
  (void)state;
  const char *v[] = { "0", "-0", "7", "7.0", "7.00", "6640.41", "0.1", "0.0001", "0.00012", "0.00001",
                      "1e+20", "1e-05", "1E5", "123456789012345", "1234567890123456", "1234567890.12345",
                      "0.30000000000000004", "NaN", "Infinity", "-Infinity", "1.7976931348623157e+308",
                      "2.2250738585072014e-308", "5e-324", "1e400", "abc", "", "100", "-12.5",
                      "3.14159265358979", "3.141592653589793", "1.", ".5", "+1", " 1", "0.0", "-0.5",
                      "100000000000000", "1000000000000000", "999999999999999.9", "0.000999999999999999" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(v); i++) check_cell(OSB_DB_FLOAT, v[i], true);
}

/* Random doubles in the texts PostgreSQL, SQLite and people write. */
static void random_reals_and_integers(void **state) {
  (void)state;
  srand(14);
  const char *fmts[] = { "%.17g", "%.15g", "%.6g", "%.3f", "%.2f", "%.0f", "%.1f", "%g", "%.12e" };
  char text[64];
  for (int i = 0; i < 20000; i++) {
    double mant = (double)rand() / RAND_MAX * (rand() % 2 ? 1 : -1);
    double d = ldexp(mant, rand() % 120 - 60);
    if (i % 7 == 0) d = (double)(rand() % 100000) / 100.0;   /* prices */
    snprintf(text, sizeof(text), fmts[i % OSB_ARRAY_LEN(fmts)], d);
    check_cell(OSB_DB_FLOAT, text, true);
    long long n = ((long long)rand() << 31 | rand()) * (rand() % 2 ? 1 : -1) >> (rand() % 40);
    snprintf(text, sizeof(text), "%lld", n);
    check_cell(OSB_DB_INT, text, true);
  }
}

static void booleans_nulls_json_and_blobs(void **state) {
  (void)state;
  const char *b[] = { "t", "f", "true", "TRUE", "1", "0", "false", "" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(b); i++) check_cell(OSB_DB_BOOL, b[i], true);
  check_cell(OSB_DB_JSON, "{\"a\": [1, 2.5, \"x\"], \"b\": null}", true);
  check_cell(OSB_DB_JSON, "[0.1, 1e-7, {}]", true);
  check_cell(OSB_DB_JSON, "not json", true);
  check_cell(OSB_DB_BLOB, "\x01\xff" "ab", true);
  osb_db_type_t all[] = { OSB_DB_NULL, OSB_DB_INT, OSB_DB_FLOAT, OSB_DB_BOOL, OSB_DB_TEXT, OSB_DB_JSON, OSB_DB_BLOB };
  for (size_t i = 0; i < OSB_ARRAY_LEN(all); i++) check_cell(all[i], NULL, true);
}

static void strings(void **state) {
  (void)state;
  /* the two escapers agree on these */
  const char *same[] = { "", "plain", "a\"b", "back\\slash", "tab\tnew\nline\r", "\b\f", "é", "日本語",
                         "emoji \xF0\x9F\x98\x80", "/slash/", "exactly8", "12345678\"", "1234567\"",
                         "0123456789abcdef\\", "long ascii text that is longer than eight bytes by far",
                         "mixed ascii and ü after sixteen bytes" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(same); i++) {
    check_cell(OSB_DB_TEXT, same[i], true);
    check_cell(OSB_DB_NULL, same[i], true);
  }
  /* hex case and DEL: the same value, spelled differently (core's escaper) */
  const char *value[] = { "\x01\x1f", "del\x7f", "ctl \x02 in a longer string" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(value); i++) check_cell(OSB_DB_TEXT, value[i], false);
  /* not UTF-8: the tree gives null, the text gives core's U+FFFD */
  osb_db_result_t *r = cell_of(OSB_DB_TEXT, "bad \xff\xfe utf8");
  char *got = dump_text(r, 0);
  osb_buf_t want = OSB_BUF_INIT;
  osb_buf_puts(&want, "{\"v\":");
  osb_buf_json_str(&want, "bad \xff\xfe utf8", 11);
  osb_buf_puts(&want, "}");
  assert_string_equal(got, want.base);
  osb_buf_free(&want);
  free(got);
  osb_db_result_unref(r);
}

static void a_whole_row_keeps_column_order(void **state) {
  (void)state;
  const char *names[] = { "id", "name", "growth_pct", "ok", "note", "doc", "quote\"key" };
  osb_db_type_t types[] = { OSB_DB_INT, OSB_DB_TEXT, OSB_DB_FLOAT, OSB_DB_BOOL, OSB_DB_TEXT, OSB_DB_JSON, OSB_DB_TEXT };
  const char *cells[] = { "7", "Implant \"premium\"", "7", "t", NULL, "{\"k\":1}", "v" };
  osb_db_result_t *r = row_of(7, names, types, cells);
  char *got = dump_text(r, 0);
  assert_string_equal(got, "{\"id\":7,\"name\":\"Implant \\\"premium\\\"\",\"growth_pct\":7.0,\"ok\":true,"
                           "\"note\":null,\"doc\":{\"k\":1},\"quote\\\"key\":\"v\"}");
  free(got);
  check(r, true);
  osb_db_result_unref(r);
  /* two columns with one name: one key, as in the tree */
  const char *dn[] = { "a", "b", "a" };
  osb_db_type_t dt[] = { OSB_DB_INT, OSB_DB_INT, OSB_DB_INT };
  const char *dc[] = { "1", "2", "3" };
  r = row_of(3, dn, dt, dc);
  check(r, true);
  osb_db_result_unref(r);
}

static void rows_dump_writes_the_first_n(void **state) {
  (void)state;
  osb__rb_t b;
  osb__rb_init(&b, 2);
  osb__rb_col(&b, 0, "id", OSB_DB_INT);
  osb__rb_col(&b, 1, "x", OSB_DB_FLOAT);
  osb__rb_reserve(&b, 6, 32);
  const char *v[] = { "1", "0.5", "2", "1e-05", "3", "-0" };
  for (size_t i = 0; i < 6; i++) osb__rb_cell(&b, v[i], strlen(v[i]));
  osb_db_result_t *r = osb__rb_finish(&b, 0);
  assert_string_equal(osb_db_colname(r, 1), "x");
  osb_buf_t out = OSB_BUF_INIT;
  osb_db_rows_dump(r, 2, &out);
  assert_string_equal(out.base, "[{\"id\":1,\"x\":0.5},{\"id\":2,\"x\":1e-5}]");
  osb_buf_reset(&out);
  osb_db_rows_dump(r, 99, &out);
  json_t *all = osb_db_rows_json(r);
  char *want = osb_json_dumps(all, NULL);
  assert_string_equal(out.base, want);
  free(want);
  json_decref(all);
  osb_buf_reset(&out);
  osb_db_rows_dump(r, 0, &out);
  assert_string_equal(out.base, "[]");
  osb_buf_free(&out);
  osb_db_result_unref(r);
  /* no columns, no rows */
  r = osb__result_empty(3);
  assert_int_equal(osb_db_affected(r), 3);
  osb_buf_t e = OSB_BUF_INIT;
  osb_db_rows_dump(r, 10, &e);
  assert_string_equal(e.base, "[]");
  osb_buf_free(&e);
  osb_db_result_unref(r);
}

static void builder_discard_frees_everything(void **state) {
  (void)state;
  osb__rb_t b;
  osb__rb_init(&b, 3);
  osb__rb_col(&b, 0, "a", OSB_DB_TEXT);
  osb__rb_col(&b, 1, "b", OSB_DB_TEXT);
  osb__rb_col(&b, 2, "c", OSB_DB_TEXT);
  osb__rb_cell(&b, "x", 1);
  osb__rb_discard(&b);   /* the sanitizer build checks for leaks */
  assert_null(b.res);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(integers_as_the_tree_prints_them),
    cmocka_unit_test(reals_as_the_tree_prints_them),
    cmocka_unit_test(random_reals_and_integers),
    cmocka_unit_test(booleans_nulls_json_and_blobs),
    cmocka_unit_test(strings),
    cmocka_unit_test(a_whole_row_keeps_column_order),
    cmocka_unit_test(rows_dump_writes_the_first_n),
    cmocka_unit_test(builder_discard_frees_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
