/* test_cache.c: the query cache on its own (db/internal.h): LRU eviction
 * under the byte budget, TTL, table generations, oversized results, memo
 * accounting and single flight. No loop: osb_now_ms() falls back to the
 * monotonic clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db/internal.h"
#include "obs/metrics.h"

static osb__stmt_info_t SI = { .name = "t_stmt" };

static int teardown(void **state) {
  OSB_UNUSED(state);
  osb__cache_dispose();
  osb_metrics_reset();
  return 0;
}

/* A result with one text cell of n bytes. */
static osb_db_result_t *result_of(size_t n, char fill) {
  osb__rb_t b;
  osb__rb_init(&b, 1);
  osb__rb_col(&b, 0, "v", OSB_DB_TEXT);
  char buf[4096];
  memset(buf, fill, n);
  osb__rb_cell(&b, buf, n);
  return osb__rb_finish(&b, 0);
}

static void key_for(osb_buf_t *key, const char *param) {
  osb_db_param_t p = { OSB_DB_P_TEXT, param, strlen(param) };
  osb__cache_key(key, &SI, &p, 1);
}

static void put(const char *param, size_t n, uint64_t gen) {
  osb_buf_t key = OSB_BUF_INIT;
  key_for(&key, param);
  osb_db_result_t *r = result_of(n, param[0]);
  osb__cache_put(&key, gen, r);
  osb_db_result_unref(r);
  osb_buf_free(&key);
}

static bool has(const char *param, uint64_t gen) {
  osb_buf_t key = OSB_BUF_INIT;
  key_for(&key, param);
  osb_db_result_t *r = osb__cache_get(&key, gen);
  osb_buf_free(&key);
  if (r) osb_db_result_unref(r);
  return r != NULL;
}

static void least_recently_used_goes_first(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(20 * 1024, 60000);   /* about four 3000-byte results */
  put("a", 3000, 0);
  put("b", 3000, 0);
  put("c", 3000, 0);
  assert_true(has("a", 0));   /* a is now the most recent */
  put("d", 3000, 0);
  put("e", 3000, 0);          /* over 20 KiB: b, the least recent, goes */
  assert_true(has("a", 0));
  assert_false(has("b", 0));
  assert_true(has("e", 0));
  osb_db_stats_t s = { 0 };
  osb__cache_stats(&s);
  assert_true(s.cache_bytes <= 20 * 1024);
  assert_true(s.cache_evictions >= 1);
}

static void entries_expire_after_the_ttl(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(1024 * 1024, 30);
  put("x", 10, 0);
  assert_true(has("x", 0));
  uv_sleep(50);
  assert_false(has("x", 0));
}

static void a_newer_generation_is_a_miss(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(1024 * 1024, 60000);
  put("g", 10, 7);
  assert_false(has("g", 8));
  assert_false(has("g", 7));  /* the stale entry was dropped when met */
  osb_db_stats_t s = { 0 };
  osb__cache_stats(&s);
  assert_int_equal(s.cache_entries, 0);
}

static void generations_move_only_for_written_tables(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(1024 * 1024, 60000);
  uint64_t a = osb__cache_gen(1u << 0), b = osb__cache_gen(1u << 1), ab = osb__cache_gen(3);
  osb__cache_bump(1u << 1);
  assert_int_equal(osb__cache_gen(1u << 0), a);
  assert_int_equal(osb__cache_gen(1u << 1), b + 1);
  assert_int_equal(osb__cache_gen(3), ab + 1);
}

static void a_result_too_big_for_a_quarter_of_the_budget_is_not_kept(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(8 * 1024, 60000);
  put("small", 100, 0);
  put("huge", 4000, 0);
  assert_false(has("huge", 0));
  assert_true(has("small", 0));
}

static void a_memo_is_charged_to_its_entry(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(1024 * 1024, 60000);
  osb_buf_t key = OSB_BUF_INIT;
  key_for(&key, "m");
  osb_db_result_t *r = result_of(10, 'm');
  osb__cache_put(&key, 0, r);
  osb_db_stats_t s0 = { 0 }, s1 = { 0 };
  osb__cache_stats(&s0);
  osb_msg_t *body = osb_msg_from("{\"v\":\"mmmmmmmmmm\"}", 18);
  osb_db_result_set_memo(r, body);
  osb_msg_unref(body);
  osb__cache_stats(&s1);
  assert_true(s1.cache_bytes >= s0.cache_bytes + 18);
  assert_non_null(osb_db_result_memo(r));
  assert_memory_equal(osb_db_result_memo(r)->data, "{\"v\"", 4);
  osb_db_result_unref(r);
  osb_buf_free(&key);
}

static int waiter_calls;
static const osb_db_result_t *waiter_res;
static void waiter(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(ud);
  assert_int_equal(err, 0);
  waiter_calls++;
  waiter_res = res;
}

static void a_flight_feeds_its_waiters_and_the_cache(void **state) {
  OSB_UNUSED(state);
  osb__cache_init(1024 * 1024, 60000);
  osb_buf_t key = OSB_BUF_INIT;
  key_for(&key, "f");
  assert_null(osb__flight_find(&key, 0));
  osb__flight_t *f = osb__flight_new(&key, 0);
  assert_ptr_equal(osb__flight_find(&key, 0), f);
  assert_null(osb__flight_find(&key, 1));   /* a write happened: do not share */
  assert_null(osb__flight_find(&key, 0));   /* and the old flight is no longer found */
  osb__flight_t *g = osb__flight_new(&key, 1);
  osb__flight_join(g, waiter, NULL);
  osb__flight_join(g, waiter, NULL);
  osb_db_result_t *r = result_of(5, 'f');
  waiter_calls = 0;
  osb__flight_finish(g, 0, r);
  assert_int_equal(waiter_calls, 2);
  assert_ptr_equal(waiter_res, r);
  assert_true(has("f", 1));
  osb__flight_finish(f, 0, r);              /* the detached one does not store */
  osb_db_result_unref(r);
  osb_buf_free(&key);
}

static void keys_separate_null_from_empty_and_text(void **state) {
  OSB_UNUSED(state);
  osb_buf_t k1 = OSB_BUF_INIT, k2 = OSB_BUF_INIT, k3 = OSB_BUF_INIT;
  osb_db_param_t pnull = { OSB_DB_P_NULL, NULL, 0 }, pempty = { OSB_DB_P_TEXT, "", 0 };
  osb_db_param_t pab[2] = { { OSB_DB_P_TEXT, "a", 1 }, { OSB_DB_P_TEXT, "b", 1 } };
  osb_db_param_t pa_b[2] = { { OSB_DB_P_TEXT, "ab", 2 }, { OSB_DB_P_TEXT, "", 0 } };
  osb__cache_key(&k1, &SI, &pnull, 1);
  osb__cache_key(&k2, &SI, &pempty, 1);
  assert_false(k1.len == k2.len && memcmp(k1.base, k2.base, k1.len) == 0);
  osb__cache_key(&k1, &SI, pab, 2);
  osb__cache_key(&k3, &SI, pa_b, 2);
  assert_false(k1.len == k3.len && memcmp(k1.base, k3.base, k1.len) == 0);
  osb_buf_free(&k1);
  osb_buf_free(&k2);
  osb_buf_free(&k3);
}

static void pg_placeholders_become_sqlite_ones_outside_quotes(void **state) {
  OSB_UNUSED(state);
  char *s = osb__pg_to_sqlite("SELECT '$1', \"$2\" FROM t WHERE a = $1 AND b = $12 AND c = '$'");
  assert_string_equal(s, "SELECT '$1', \"$2\" FROM t WHERE a = ?1 AND b = ?12 AND c = '$'");
  free(s);
}

static void doubles_print_shortest_round_trip(void **state) {
  OSB_UNUSED(state);
  char b[40];
  osb__fmt_double(b, sizeof(b), 12.3);
  assert_string_equal(b, "12.3");
  osb__fmt_double(b, sizeof(b), 0.1 + 0.2);
  assert_string_equal(b, "0.30000000000000004");
  osb__fmt_double(b, sizeof(b), 6640.41);
  assert_string_equal(b, "6640.41");
}

#define T(fn) cmocka_unit_test_teardown(fn, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
    T(least_recently_used_goes_first),
    T(entries_expire_after_the_ttl),
    T(a_newer_generation_is_a_miss),
    T(generations_move_only_for_written_tables),
    T(a_result_too_big_for_a_quarter_of_the_budget_is_not_kept),
    T(a_memo_is_charged_to_its_entry),
    T(a_flight_feeds_its_waiters_and_the_cache),
    T(keys_separate_null_from_empty_and_text),
    T(pg_placeholders_become_sqlite_ones_outside_quotes),
    T(doubles_print_shortest_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
