/* test_limit.c: the bounded LRU table, the token bucket and the
 * failed-login throttle, driven with an explicit clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <sodium.h>

#include "auth/internal.h"

#define K(s) (s), strlen(s)

/* ---- keytab ---- */

static void kt_get_creates_zeroed_once(void **st) {
  osb__kt_t *t = osb__kt_new(8, sizeof(uint64_t), 1000);
  bool created;
  uint64_t *v = osb__kt_get(t, K("a"), 0, true, &created);
  assert_true(created);
  assert_int_equal(*v, 0);
  *v = 42;
  v = osb__kt_get(t, K("a"), 1, true, &created);
  assert_false(created);
  assert_int_equal(*v, 42);
  assert_int_equal(osb__kt_count(t), 1);
  osb__kt_free(t);
}

static void kt_lookup_without_create_misses(void **st) {
  osb__kt_t *t = osb__kt_new(8, 8, 1000);
  assert_null(osb__kt_get(t, K("nobody"), 0, false, NULL));
  assert_int_equal(osb__kt_count(t), 0);
  osb__kt_free(t);
}

static void kt_never_exceeds_capacity(void **st) {
  osb__kt_t *t = osb__kt_new(100, 8, 1000000);
  char key[32];
  for (int i = 0; i < 10000; i++) {
    snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
    assert_non_null(osb__kt_get(t, K(key), (uint64_t)i, true, NULL));
    assert_true(osb__kt_count(t) <= 100);
  }
  assert_int_equal(osb__kt_count(t), 100);
  osb__kt_free(t);
}

static void kt_evicts_least_recently_used(void **st) {
  osb__kt_t *t = osb__kt_new(2, 8, 1000000);
  osb__kt_get(t, K("a"), 0, true, NULL);
  osb__kt_get(t, K("b"), 1, true, NULL);
  osb__kt_get(t, K("a"), 2, true, NULL);   /* a is now newer than b */
  osb__kt_get(t, K("c"), 3, true, NULL);   /* evicts b */
  assert_non_null(osb__kt_get(t, K("a"), 4, false, NULL));
  assert_null(osb__kt_get(t, K("b"), 4, false, NULL));
  assert_non_null(osb__kt_get(t, K("c"), 4, false, NULL));
  osb__kt_free(t);
}

static void kt_drops_idle_entries_on_insert(void **st) {
  osb__kt_t *t = osb__kt_new(1000, 8, 100);
  osb__kt_get(t, K("old1"), 0, true, NULL);
  osb__kt_get(t, K("old2"), 0, true, NULL);
  osb__kt_get(t, K("new"), 500, true, NULL);
  assert_int_equal(osb__kt_count(t), 1);
  osb__kt_free(t);
}

static void kt_delete_removes(void **st) {
  osb__kt_t *t = osb__kt_new(8, 8, 1000);
  osb__kt_get(t, K("x"), 0, true, NULL);
  osb__kt_del(t, K("x"));
  osb__kt_del(t, K("x"));
  assert_null(osb__kt_get(t, K("x"), 0, false, NULL));
  assert_int_equal(osb__kt_count(t), 0);
  osb__kt_free(t);
}

static void kt_keys_are_binary_exact(void **st) {
  osb__kt_t *t = osb__kt_new(8, 8, 1000);
  osb__kt_get(t, "ab", 2, 0, true, NULL);
  assert_null(osb__kt_get(t, "abc", 3, 0, false, NULL));
  assert_null(osb__kt_get(t, "a", 1, 0, false, NULL));
  osb__kt_free(t);
}

/* ---- token bucket ---- */

static void rl_allows_burst_then_refuses(void **st) {
  osb__rl_t *rl = osb__rl_new(1, 5, 100);
  osb__rl_result_t r;
  for (int i = 0; i < 5; i++) {
    osb__rl_take(rl, K("ip:1"), 1000, &r);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 4 - i);
    assert_int_equal(r.limit, 5);
  }
  osb__rl_take(rl, K("ip:1"), 1000, &r);
  assert_false(r.allowed);
  assert_int_equal(r.remaining, 0);
  assert_int_equal(r.retry_after_s, 1);
  osb__rl_free(rl);
}

static void rl_refills_at_rate(void **st) {
  osb__rl_t *rl = osb__rl_new(2, 2, 100);
  osb__rl_result_t r;
  osb__rl_take(rl, K("c"), 0, &r);
  osb__rl_take(rl, K("c"), 0, &r);
  osb__rl_take(rl, K("c"), 0, &r);
  assert_false(r.allowed);
  osb__rl_take(rl, K("c"), 499, &r);   /* 0.998 tokens */
  assert_false(r.allowed);
  osb__rl_take(rl, K("c"), 1000, &r);  /* 2 s * ... capped at burst */
  assert_true(r.allowed);
  osb__rl_free(rl);
}

static void rl_reset_counts_seconds_to_full(void **st) {
  osb__rl_t *rl = osb__rl_new(1, 10, 100);
  osb__rl_result_t r;
  for (int i = 0; i < 4; i++) osb__rl_take(rl, K("c"), 0, &r);
  assert_int_equal(r.remaining, 6);
  assert_int_equal(r.reset_s, 4);
  osb__rl_free(rl);
}

static void rl_clients_are_independent(void **st) {
  osb__rl_t *rl = osb__rl_new(1, 1, 100);
  osb__rl_result_t r;
  osb__rl_take(rl, K("a"), 0, &r);
  assert_true(r.allowed);
  osb__rl_take(rl, K("a"), 0, &r);
  assert_false(r.allowed);
  osb__rl_take(rl, K("b"), 0, &r);
  assert_true(r.allowed);
  osb__rl_free(rl);
}

static void rl_memory_bounded_under_many_clients(void **st) {
  osb__rl_t *rl = osb__rl_new(50, 100, 1000);
  osb__rl_result_t r;
  char key[32];
  for (int i = 0; i < 50000; i++) {
    snprintf(key, sizeof(key), "ip:%d", i);
    osb__rl_take(rl, K(key), (uint64_t)i / 10, &r);
  }
  assert_true(osb__rl_clients(rl) <= 1000);
  osb__rl_free(rl);
}

static void rl_idle_clients_forgotten(void **st) {
  osb__rl_t *rl = osb__rl_new(10, 10, 1000);   /* full again after 1 s */
  osb__rl_result_t r;
  osb__rl_take(rl, K("a"), 0, &r);
  osb__rl_take(rl, K("b"), 0, &r);
  osb__rl_take(rl, K("c"), 5000, &r);
  assert_int_equal(osb__rl_clients(rl), 1);
  osb__rl_free(rl);
}

/* ---- login throttle ---- */

static void throttle_five_failures_block_sixth(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(osb__throttle_check(t, K("e:a@b.c"), 1000 + (uint64_t)i), 0);
    osb__throttle_fail(t, K("e:a@b.c"), 1000 + (uint64_t)i);
  }
  unsigned ra = osb__throttle_check(t, K("e:a@b.c"), 1010);
  assert_true(ra >= 59 && ra <= 60);
  osb__throttle_free(t);
}

static void throttle_four_failures_still_allowed(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 4; i++) osb__throttle_fail(t, K("k"), 0);
  assert_int_equal(osb__throttle_check(t, K("k"), 1), 0);
  osb__throttle_free(t);
}

static void throttle_window_slides(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 5; i++) osb__throttle_fail(t, K("k"), (uint64_t)i * 10000);
  /* oldest at 0: blocked until 60000 */
  assert_int_equal(osb__throttle_check(t, K("k"), 59000), 1);
  assert_int_equal(osb__throttle_check(t, K("k"), 60000), 0);
  osb__throttle_fail(t, K("k"), 60000);   /* window now 10000..60000 */
  assert_int_equal(osb__throttle_check(t, K("k"), 60001), 10);
  osb__throttle_free(t);
}

static void throttle_reset_clears(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 5; i++) osb__throttle_fail(t, K("k"), 0);
  osb__throttle_reset(t, K("k"), 1);
  assert_int_equal(osb__throttle_check(t, K("k"), 1), 0);
  osb__throttle_free(t);
}

static void throttle_attempts_in_flight_make_it_busy(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 4; i++) {
    assert_false(osb__throttle_busy(t, K("k"), 0));
    osb__throttle_begin(t, K("k"), 0);
  }
  assert_false(osb__throttle_busy(t, K("k"), 0));
  osb__throttle_begin(t, K("k"), 0);        /* five in flight: could be five failures */
  assert_true(osb__throttle_busy(t, K("k"), 1));
  assert_int_equal(osb__throttle_check(t, K("k"), 1), 0);   /* not refused yet */
  osb__throttle_end(t, K("k"), 2, false);   /* one succeeded: room again */
  assert_false(osb__throttle_busy(t, K("k"), 2));
  osb__throttle_free(t);
}

static void throttle_failed_attempts_count_once_ended(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 5; i++) osb__throttle_begin(t, K("k"), 0);
  for (int i = 0; i < 5; i++) osb__throttle_end(t, K("k"), 100, true);
  assert_false(osb__throttle_busy(t, K("k"), 101));
  assert_int_equal(osb__throttle_check(t, K("k"), 101), 60);
  osb__throttle_free(t);
}

static void throttle_old_failures_do_not_make_it_busy(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 4; i++) osb__throttle_fail(t, K("k"), 0);
  osb__throttle_begin(t, K("k"), 120000);   /* the four failures left the window */
  assert_false(osb__throttle_busy(t, K("k"), 120000));
  osb__throttle_free(t);
}

static void throttle_reset_keeps_attempts_in_flight(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 100);
  for (int i = 0; i < 5; i++) osb__throttle_begin(t, K("k"), 0);
  osb__throttle_reset(t, K("k"), 1);
  assert_true(osb__throttle_busy(t, K("k"), 1));
  osb__throttle_free(t);
}

static void throttle_keys_bounded(void **st) {
  osb__throttle_t *t = osb__throttle_new(5, 60000, 64);
  char key[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "e:%d@x.y", i);
    osb__throttle_fail(t, K(key), 0);
  }
  assert_true(osb__throttle_keys(t) <= 64);
  osb__throttle_free(t);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(kt_get_creates_zeroed_once),
    cmocka_unit_test(kt_lookup_without_create_misses),
    cmocka_unit_test(kt_never_exceeds_capacity),
    cmocka_unit_test(kt_evicts_least_recently_used),
    cmocka_unit_test(kt_drops_idle_entries_on_insert),
    cmocka_unit_test(kt_delete_removes),
    cmocka_unit_test(kt_keys_are_binary_exact),
    cmocka_unit_test(rl_allows_burst_then_refuses),
    cmocka_unit_test(rl_refills_at_rate),
    cmocka_unit_test(rl_reset_counts_seconds_to_full),
    cmocka_unit_test(rl_clients_are_independent),
    cmocka_unit_test(rl_memory_bounded_under_many_clients),
    cmocka_unit_test(rl_idle_clients_forgotten),
    cmocka_unit_test(throttle_five_failures_block_sixth),
    cmocka_unit_test(throttle_four_failures_still_allowed),
    cmocka_unit_test(throttle_window_slides),
    cmocka_unit_test(throttle_reset_clears),
    cmocka_unit_test(throttle_attempts_in_flight_make_it_busy),
    cmocka_unit_test(throttle_failed_attempts_count_once_ended),
    cmocka_unit_test(throttle_old_failures_do_not_make_it_busy),
    cmocka_unit_test(throttle_reset_keeps_attempts_in_flight),
    cmocka_unit_test(throttle_keys_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
