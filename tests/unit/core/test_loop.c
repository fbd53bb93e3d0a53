/* test_loop.c: core's before-sleep phase and the shutdown hooks.
 *
 * The steps run in ascending order, once per loop iteration before the loop
 * would block; a round repeats while a step did work (work an earlier step
 * gets from a later one is done before the loop sleeps), bounded by
 * OSB_CORE_STEP_ROUNDS, after which the loop polls without blocking.
 * Work queued outside a step (osb_core_wake) keeps the loop from blocking
 * or ending. Every test ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "core/core.h"

static uv_loop_t loop;
static char trace[256];
static int work[4];          /* pending units per step */
static int runs[4];

static void note(const char *s) { strncat(trace, s, sizeof(trace) - strlen(trace) - 1); }

/* step i does one unit of its own work per call; step 2's unit gives step 0 one */
static bool step(void *ud) {
  int i = (int)(intptr_t)ud;
  runs[i]++;
  char s[3] = {(char)('A' + i), 0};
  note(s);
  if (work[i] == 0) return false;
  work[i]--;
  if (i == 2) work[0]++;
  return true;
}

static int setup(void **state) {
  uv_loop_init(&loop);
  osb_core_init(&loop);
  trace[0] = 0;
  memset(work, 0, sizeof(work));
  memset(runs, 0, sizeof(runs));
  return 0;
}

static int teardown(void **state) {
  osb_core_step_remove("a");
  osb_core_step_remove("b");
  osb_core_step_remove("c");
  osb_core_step_remove("d");
  osb_core_close();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_core_shutdown_reset();
  return 0;
}

static void test_steps_run_in_order_not_registration_order(void **state) {
  osb_core_step_add("c", 300, step, (void *)2);
  osb_core_step_add("a", 100, step, (void *)0);
  osb_core_step_add("d", 900, step, (void *)3);
  osb_core_step_add("b", 200, step, (void *)1);
  assert_int_equal(osb_core_run_steps(), 1);   /* nothing to do: one quiet round */
  assert_string_equal(trace, "ABCD");
}

static void test_equal_orders_keep_registration_order_and_readding_replaces(void **state) {
  osb_core_step_add("b", 100, step, (void *)1);
  osb_core_step_add("a", 100, step, (void *)0);
  osb_core_step_add("b", 100, step, (void *)1);   /* same name: replaced, not added */
  osb_core_run_steps();
  assert_string_equal(trace, "BA");
  trace[0] = 0;
  osb_core_step_add("b", 200, step, (void *)1);   /* new order: moves */
  osb_core_run_steps();
  assert_string_equal(trace, "AB");
}

static void test_a_round_repeats_while_a_step_did_work(void **state) {
  osb_core_step_add("a", 100, step, (void *)0);
  osb_core_step_add("b", 200, step, (void *)1);
  osb_core_step_add("c", 300, step, (void *)2);
  work[2] = 1;   /* c's work gives a (an earlier step) work: a second round does it */
  int rounds = osb_core_run_steps();
  assert_int_equal(work[0], 0);
  assert_int_equal(work[2], 0);
  assert_int_equal(rounds, 3);   /* c works, a works, then a quiet round */
  assert_string_equal(trace, "ABCABCABC");
  assert_false(osb_core_steps_pending());
}

static void test_rounds_are_bounded_and_the_rest_waits_for_the_next_iteration(void **state) {
  osb_core_step_add("a", 100, step, (void *)0);
  work[0] = OSB_CORE_STEP_ROUNDS + 3;
  assert_int_equal(osb_core_run_steps(), OSB_CORE_STEP_ROUNDS);
  assert_int_equal(work[0], 3);
  assert_true(osb_core_steps_pending());
}

static uint64_t t_fired;
static void on_late(uv_timer_t *t) { t_fired = uv_hrtime(); }

/* The loop runs the steps before it would block, and does not block while
 * work is left: 20 units of work are done long before a 2 s timer fires. */
static void test_the_loop_runs_the_steps_and_never_blocks_with_work_left(void **state) {
  osb_core_step_add("a", 100, step, (void *)0);
  uv_timer_t late;
  uv_timer_init(&loop, &late);
  uv_timer_start(&late, on_late, 2000, 0);
  work[0] = 20;
  osb_core_wake();
  uint64_t t0 = uv_hrtime();
  while (work[0] > 0) uv_run(&loop, UV_RUN_ONCE);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(ms < 1000);
  assert_int_equal(t_fired, 0);
  uv_close((uv_handle_t *)&late, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

/* Work queued with osb_core_wake on a loop with nothing else referenced:
 * the loop stays alive until the steps ran, then ends. */
static void test_wake_keeps_an_otherwise_idle_loop_alive_until_the_steps_ran(void **state) {
  osb_core_step_add("b", 200, step, (void *)1);
  work[1] = 1;
  osb_core_wake();
  uv_run(&loop, UV_RUN_DEFAULT);   /* returns: the prepare is unreferenced */
  assert_int_equal(work[1], 0);
  assert_true(runs[1] >= 1);
}

/* The first step opens core's handles, the last removed closes them
 * through their close callbacks: the loop closes cleanly without a walk. */
static void test_removing_the_last_step_closes_the_handles(void **state) {
  osb_core_step_add("a", 100, step, (void *)0);
  osb_core_step_add("b", 200, step, (void *)1);
  osb_core_step_remove("a");
  osb_core_step_remove("b");
  osb_core_step_remove("b");   /* twice: harmless */
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_alive(&loop), 0);
  osb_core_step_add("a", 100, step, (void *)0);   /* reopens */
  work[0] = 1;
  osb_core_wake();
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(work[0], 0);
}

/* A step may remove itself (the database releasing itself from its drain). */
static bool self_removing(void *ud) {
  note("S");
  osb_core_step_remove("a");
  return false;
}

static void test_a_step_may_remove_itself_mid_round(void **state) {
  osb_core_step_add("a", 100, self_removing, NULL);
  osb_core_step_add("b", 200, step, (void *)1);
  osb_core_run_steps();
  osb_core_run_steps();
  assert_string_equal(trace, "SBB");
}

static void hook(void *ud) { note((const char *)ud); }

static void test_shutdown_hooks_run_once_in_order(void **state) {
  osb_core_on_shutdown("db", OSB_SHUTDOWN_DB, hook, "d");
  osb_core_on_shutdown("http", OSB_SHUTDOWN_HTTP, hook, "h");
  osb_core_on_shutdown("health", OSB_SHUTDOWN_HEALTH, hook, "r");
  osb_core_on_shutdown("rt", OSB_SHUTDOWN_REALTIME, hook, "t");
  osb_core_on_shutdown("http", OSB_SHUTDOWN_HTTP, hook, "H");   /* replaces */
  osb_core_shutdown();
  osb_core_shutdown();
  assert_string_equal(trace, "rHtd");
}

/* A hook that registers another below the boundary: it runs in the same phase. */
static void registering(void *ud) {
  note("D");
  osb_core_on_shutdown("late", OSB_SHUTDOWN_HTTP_DRAIN + 1, hook, "l");
}

static void test_shutdown_runs_in_two_phases_split_at_stop(void **state) {
  osb_core_on_shutdown("http", OSB_SHUTDOWN_HTTP, hook, "h");
  osb_core_on_shutdown("health", OSB_SHUTDOWN_HEALTH, hook, "r");
  osb_core_on_shutdown("drain", OSB_SHUTDOWN_HTTP_DRAIN, registering, NULL);
  osb_core_on_shutdown("db", OSB_SHUTDOWN_DB, hook, "d");
  osb_core_shutdown_until(OSB_SHUTDOWN_STOP);   /* the drain phase */
  assert_string_equal(trace, "rDl");
  osb_core_shutdown_until(OSB_SHUTDOWN_STOP);   /* nothing runs twice */
  assert_string_equal(trace, "rDl");
  osb_core_on_shutdown("health", OSB_SHUTDOWN_HEALTH, hook, "R");   /* replacing a hook that ran: it stays run */
  osb_core_shutdown();                          /* the stop phase */
  osb_core_shutdown();
  assert_string_equal(trace, "rDlhd");
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
    T(test_steps_run_in_order_not_registration_order),
    T(test_equal_orders_keep_registration_order_and_readding_replaces),
    T(test_a_round_repeats_while_a_step_did_work),
    T(test_rounds_are_bounded_and_the_rest_waits_for_the_next_iteration),
    T(test_the_loop_runs_the_steps_and_never_blocks_with_work_left),
    T(test_wake_keeps_an_otherwise_idle_loop_alive_until_the_steps_ran),
    T(test_removing_the_last_step_closes_the_handles),
    T(test_a_step_may_remove_itself_mid_round),
    T(test_shutdown_hooks_run_once_in_order),
    T(test_shutdown_runs_in_two_phases_split_at_stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
