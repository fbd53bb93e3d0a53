/* test_store_db.c: the database message store (channel_messages) driven
 * through a real loop and db.h: SQLite in a temporary directory, and
 * PostgreSQL when OSB_TEST_PG_URL is set (skipped otherwise). The database
 * is initialised once per backend; each test uses its own channel. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "db/db.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "realtime/internal.h"

static uv_loop_t loop;
static uv_timer_t guard;
static osb_config_t cfg;
static char dir[256];
static osb_rt_store_t *st;
static char chan_prefix[32];

static void guard_cb(uv_timer_t *t) {}

static void run_until(const int *counter, int target) {
  uint64_t end = uv_hrtime() + 20ULL * 1000000000ULL;
  uv_timer_start(&guard, guard_cb, 20, 20);
  while (*counter < target) {
    uv_run(&loop, UV_RUN_ONCE);
    if (uv_hrtime() > end) fail_msg("timed out waiting for callbacks (%d of %d)", *counter, target);
  }
  uv_timer_stop(&guard);
}

static int group_setup(bool pg) {
  memset(&cfg, 0, sizeof(cfg));
  snprintf(dir, sizeof(dir), "/tmp/osb-rtstore-XXXXXX");
  if (!mkdtemp(dir)) return -1;
  static char path[300];
  snprintf(path, sizeof(path), "%s/osb.db", dir);
  cfg.sqlite_path = path;
  cfg.database_url = pg ? getenv("OSB_TEST_PG_URL") : NULL;
  cfg.db_pool_min = 1;
  cfg.db_pool_max = 4;
  cfg.db_acquire_timeout_ms = 2000;
  cfg.db_health_interval_ms = 10000;
  cfg.db_max_lifetime_ms = 1800000;
  cfg.db_idle_timeout_ms = 600000;
  cfg.query_cache_mb = 8;
  cfg.query_cache_ttl_ms = 5000;
  cfg.slow_query_ms = 1000;
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_log_init(OSB_LOG_ERROR, OSB_LOGFMT_TEXT);
  osb_metrics_init();
  uv_timer_init(&loop, &guard);
  if (osb_db_init(&cfg) != 0) return -1;
  st = osb_rt_store_db_new(&loop);
  unsigned char r[4];
  osb_random_bytes(r, sizeof(r));
  snprintf(chan_prefix, sizeof(chan_prefix), "t%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
  return 0;
}

static int sqlite_setup(void **state) { return group_setup(false); }
static int pg_setup(void **state) {
  const char *url = getenv("OSB_TEST_PG_URL");
  if (!url || !*url) return 0;   /* the tests skip */
  return group_setup(true);
}

static int group_teardown(void **state) {
  if (!st) return 0;
  st->dispose(st);
  st = NULL;
  osb_db_close();
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  osb_health_reset();
  osb_metrics_reset();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0) return -1;
  return rc == 0 ? 0 : -1;
}

static void need_store(void) {
  if (!st) {
    print_message("skipped: OSB_TEST_PG_URL is not set\n");
    skip();
  }
}

/* ---- callbacks ---- */

static int done;
static int last_err;
static uint64_t got_seq;
static json_t *rows;   /* [[seq, data(parsed), ts], ...] */

static void on_done(void *ud, int err) {
  last_err = err;
  done++;
}
static void on_seq(void *ud, int err, uint64_t seq) {
  last_err = err;
  got_seq = seq;
  done++;
}
static void on_rows(void *ud, int err, const osb_rt_row_t *r, size_t n) {
  last_err = err;
  json_decref(rows);
  rows = json_array();
  for (size_t i = 0; i < n; i++) {
    json_t *d = json_loadb(r[i].data, r[i].len, JSON_DECODE_ANY, NULL);
    assert_non_null(d);
    json_array_append_new(rows, json_pack("[I, o, I]", (json_int_t)r[i].seq, d, (json_int_t)r[i].ts_ms));
  }
  done++;
}

static const char *chan(const char *name) {
  static char buf[64];
  snprintf(buf, sizeof(buf), "notify:%s-%s", chan_prefix, name);
  return buf;
}

static void append(const char *channel, uint64_t seq, const char *data) {
  osb_rt_row_t row = {seq, data, strlen(data), 1700000000000ULL + seq};
  done = 0;
  st->append(st, channel, &row, on_done, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
}

static void range(const char *channel, uint64_t since, size_t limit) {
  done = 0;
  st->range(st, channel, since, limit, on_rows, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
}

/* ---- tests ---- */

static void test_append_then_range_returns_rows_in_order(void **state) {
  need_store();
  const char *c = chan("order");
  append(c, 1, "{\"a\":1}");
  append(c, 2, "[1,\"two\",{\"x\":null}]");
  append(c, 3, "\"three\"");
  range(c, 0, 100);
  assert_int_equal(json_array_size(rows), 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, i), 0)), (json_int_t)i + 1);
  json_t *want = json_loads("[1,\"two\",{\"x\":null}]", 0, NULL);
  assert_true(json_equal(json_array_get(json_array_get(rows, 1), 1), want));
  json_decref(want);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 2), 2)), 1700000000003LL);
}

static void test_range_honours_since_and_limit(void **state) {
  need_store();
  const char *c = chan("window");
  for (uint64_t s = 1; s <= 10; s++) append(c, s, "0");
  range(c, 4, 3);
  assert_int_equal(json_array_size(rows), 3);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 0), 0)), 5);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 2), 0)), 7);
  range(c, 10, 5);
  assert_int_equal(json_array_size(rows), 0);
}

static void test_last_seq_is_the_highest_stored(void **state) {
  need_store();
  const char *c = chan("last");
  done = 0;
  st->last_seq(st, c, on_seq, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
  assert_int_equal(got_seq, 0);
  append(c, 1, "1");
  append(c, 2, "2");
  append(c, 7, "7");
  done = 0;
  st->last_seq(st, c, on_seq, NULL);
  run_until(&done, 1);
  assert_int_equal(got_seq, 7);
}

static void test_a_duplicate_seq_keeps_the_first_row(void **state) {
  need_store();
  const char *c = chan("dup");
  append(c, 1, "\"first\"");
  append(c, 1, "\"second\"");   /* err 0: already there */
  range(c, 0, 10);
  assert_int_equal(json_array_size(rows), 1);
  assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 1)), "first");
}

static void test_channels_do_not_mix(void **state) {
  need_store();
  append(chan("mix-a"), 1, "\"a\"");
  append(chan("mix-b"), 1, "\"b\"");
  range(chan("mix-a"), 0, 10);
  assert_int_equal(json_array_size(rows), 1);
  assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 1)), "a");
}

#define SQ(f) cmocka_unit_test(f)

int main(void) {
  const struct CMUnitTest tests[] = {
    SQ(test_append_then_range_returns_rows_in_order),
    SQ(test_range_honours_since_and_limit),
    SQ(test_last_seq_is_the_highest_stored),
    SQ(test_a_duplicate_seq_keeps_the_first_row),
    SQ(test_channels_do_not_mix),
  };
  int rc = cmocka_run_group_tests_name("sqlite", tests, sqlite_setup, group_teardown);
  rc += cmocka_run_group_tests_name("postgresql", tests, pg_setup, group_teardown);
  json_decref(rows);
  return rc;
}
