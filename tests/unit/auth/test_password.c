/* test_password.c: Argon2id on the threadpool: results, the cost
 * parameters, the concurrency cap, and that the loop keeps turning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sodium.h>
#include <uv.h>

#include "auth/internal.h"

static const char PW[] = "correct horse battery";

static int hash_calls, verify_calls, matches;
static char *last_hash;

static void on_hash(void *ud, int err, char *hash) {
  hash_calls++;
  assert_int_equal(err, 0);
  free(last_hash);
  last_hash = hash;
}

static void on_verify(void *ud, int err, bool match) {
  verify_calls++;
  assert_int_equal(err, 0);
  if (match) matches++;
}

static int setup(void **s) {
  hash_calls = verify_calls = matches = 0;
  osb__pw_set_limits(0, 0);
  return 0;
}

static int teardown(void **s) {
  free(last_hash);
  last_hash = NULL;
  return 0;
}

static char *hash_sync(const char *pw) {
  assert_int_equal(osb__pw_hash(NULL, pw, strlen(pw), on_hash, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(hash_calls, 1);
  char *h = last_hash;
  last_hash = NULL;
  return h;
}

static void hash_is_argon2id_interactive(void **s) {
  char *h = hash_sync(PW);
  assert_non_null(h);
  assert_true(strncmp(h, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
  assert_null(strstr(h, PW));
  free(h);
}

static void hash_is_salted(void **s) {
  char *a = hash_sync(PW);
  hash_calls = 0;
  char *b = hash_sync(PW);
  assert_string_not_equal(a, b);
  free(a);
  free(b);
}

static void verify_correct_password_matches(void **s) {
  char *h = hash_sync(PW);
  assert_int_equal(osb__pw_verify(NULL, h, PW, strlen(PW), on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
  assert_int_equal(matches, 1);
  free(h);
}

static void verify_wrong_password_fails(void **s) {
  char *h = hash_sync(PW);
  assert_int_equal(osb__pw_verify(NULL, h, "correct horse battery!", 22, on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
  assert_int_equal(matches, 0);
  free(h);
}

static void verify_unknown_user_never_matches(void **s) {
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
  assert_int_equal(matches, 0);
}

static void verify_garbage_hash_never_matches(void **s) {
  assert_int_equal(osb__pw_verify(NULL, "$argon2id$garbage", PW, strlen(PW), on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
  assert_int_equal(matches, 0);
}

static void callback_never_runs_before_return(void **s) {
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);
  assert_int_equal(verify_calls, 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
}

static unsigned peak_active;
static void on_verify_peak(void *ud, int err, bool match) {
  verify_calls++;
  if (osb__pw_active() + 1 > peak_active) peak_active = osb__pw_active() + 1;
}

static void concurrency_is_capped(void **s) {
  osb__pw_set_limits(2, 0);
  peak_active = 0;
  for (int i = 0; i < 5; i++)
    assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify_peak, NULL), 0);
  assert_int_equal(osb__pw_active(), 2);
  assert_int_equal(osb__pw_queued(), 3);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 5);
  assert_true(peak_active <= 2);
  assert_int_equal(osb__pw_active(), 0);
  assert_int_equal(osb__pw_queued(), 0);
}

static void full_queue_refuses(void **s) {
  osb__pw_set_limits(1, 2);
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);  /* running */
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);  /* queued */
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);  /* queued */
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), OSB_EUNAVAIL);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 3);
}

/* One client cannot fill the queue: past its share it is refused while
 * another client still gets in (issue 8, defect 5). */
static void per_client_share_refuses_only_that_client(void **s) {
  osb__pw_set_limits(1, 16);
  osb__pw_set_per_key(2);
  uint64_t before = osb__pw_refused(true);
  assert_int_equal(osb__pw_verify("198.51.100.1", NULL, PW, strlen(PW), on_verify, NULL), 0);  /* running */
  assert_int_equal(osb__pw_verify("198.51.100.1", NULL, PW, strlen(PW), on_verify, NULL), 0);  /* queued */
  assert_int_equal(osb__pw_verify("198.51.100.1", NULL, PW, strlen(PW), on_verify, NULL), OSB_EUNAVAIL);
  assert_int_equal(osb__pw_refused(true), before + 1);
  assert_int_equal(osb__pw_verify("198.51.100.2", NULL, PW, strlen(PW), on_verify, NULL), 0);
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);   /* uncounted */
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 6);
  /* the share frees up as jobs finish */
  assert_int_equal(osb__pw_verify("198.51.100.1", NULL, PW, strlen(PW), on_verify, NULL), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 7);
  osb__pw_set_per_key(0);
}

/* Completion order of fair_order's jobs, by the tag each carries. */
static char order[16];
static size_t norder;
static void on_verify_tag(void *ud, int err, bool match) {
  verify_calls++;
  if (norder < sizeof(order) - 1) order[norder++] = *(const char *)ud;
}

static void queue_is_served_round_robin_by_client(void **s) {
  osb__pw_set_limits(1, 16);
  osb__pw_set_per_key(8);
  norder = 0;
  memset(order, 0, sizeof(order));
  static const char a = 'a', b = 'b', c = 'c';
  /* A busy client queues five jobs, then two others arrive. */
  for (int i = 0; i < 5; i++)
    assert_int_equal(osb__pw_verify("198.51.100.1", NULL, PW, strlen(PW), on_verify_tag, (void *)&a), 0);
  assert_int_equal(osb__pw_verify("198.51.100.2", NULL, PW, strlen(PW), on_verify_tag, (void *)&b), 0);
  assert_int_equal(osb__pw_verify("198.51.100.3", NULL, PW, strlen(PW), on_verify_tag, (void *)&c), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  /* The first a was already running; b and c go next, not after every a. */
  assert_string_equal(order, "abcaaaa");
  osb__pw_set_per_key(0);
}

static int ticks;
static void on_tick(uv_timer_t *t) { ticks++; }
static void on_verify_stop_timer(void *ud, int err, bool match) {
  verify_calls++;
  uv_timer_stop(ud);
  uv_close(ud, NULL);
}

static void loop_keeps_running_while_hashing(void **s) {
  uv_timer_t timer;
  ticks = 0;
  uv_timer_init(osb_loop(), &timer);
  uv_timer_start(&timer, on_tick, 1, 1);
  assert_int_equal(osb__pw_verify(NULL, NULL, PW, strlen(PW), on_verify_stop_timer, &timer), 0);
  uv_run(osb_loop(), UV_RUN_DEFAULT);
  assert_int_equal(verify_calls, 1);
  assert_true(ticks >= 3);
}

static void sync_hash_verifies(void **s) {
  char *h = osb__pw_hash_now(PW, strlen(PW));
  assert_non_null(h);
  assert_int_equal(crypto_pwhash_str_verify(h, PW, strlen(PW)), 0);
  free(h);
}

int main(void) {
  osb_core_init(uv_default_loop());
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(hash_is_argon2id_interactive, setup, teardown),
    cmocka_unit_test_setup_teardown(hash_is_salted, setup, teardown),
    cmocka_unit_test_setup_teardown(verify_correct_password_matches, setup, teardown),
    cmocka_unit_test_setup_teardown(verify_wrong_password_fails, setup, teardown),
    cmocka_unit_test_setup_teardown(verify_unknown_user_never_matches, setup, teardown),
    cmocka_unit_test_setup_teardown(verify_garbage_hash_never_matches, setup, teardown),
    cmocka_unit_test_setup_teardown(callback_never_runs_before_return, setup, teardown),
    cmocka_unit_test_setup_teardown(concurrency_is_capped, setup, teardown),
    cmocka_unit_test_setup_teardown(per_client_share_refuses_only_that_client, setup, teardown),
    cmocka_unit_test_setup_teardown(queue_is_served_round_robin_by_client, setup, teardown),
    cmocka_unit_test_setup_teardown(full_queue_refuses, setup, teardown),
    cmocka_unit_test_setup_teardown(loop_keeps_running_while_hashing, setup, teardown),
    cmocka_unit_test_setup_teardown(sync_hash_verifies, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  uv_loop_close(uv_default_loop());
  return rc;
}
