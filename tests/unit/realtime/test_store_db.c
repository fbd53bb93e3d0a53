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

/* ---- a transport without connections, a bus that records ---- */
static int f_send(void *conn, osb_msg_t *m) { return OSB_ECLOSED; }
static void f_close(void *conn, uint16_t code, const char *reason) {}
static void f_finish(osb_msg_t *m) {}
static const osb__rt_transport_t ftr = {.send = f_send, .close = f_close, .finish = f_finish};

static json_t *bus_log;   /* [[channel, seq, data text, stored], ...] in bus order */
static void rbus_publish(osb_rt_bus_t *b, const osb_rt_pub_t *p, osb_rt_publish_cb cb, void *ud) {
  if (!bus_log) bus_log = json_array();
  json_array_append_new(bus_log, json_pack("[s, I, s%, b]", p->channel, (json_int_t)p->seq, p->data,
                                           p->len, p->stored));
  osb__rt_deliver(p, cb, ud);
}
static void rbus_dispose(osb_rt_bus_t *b) { free(b); }

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
  /* A hub around the store (it takes the store over), with a bus that
   * records what reaches it: the publication pipeline end to end. */
  osb__rt_ns_reset();
  osb__rt_ns_by_name("notify")->seq_src = OSB__RT_SEQ_CHANNEL;   /* channel_seqs; users tested apart */
  osb__rt_options_t o;
  osb__rt_default_options(&o);
  osb_rt_bus_t *b = calloc(1, sizeof(*b));
  b->name = "recording";
  b->publish = rbus_publish;
  b->dispose = rbus_dispose;
  osb__rt_hub_init(&o, &ftr, NULL, st, b, NULL);
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
  osb__rt_hub_free();   /* disposes the store */
  st = NULL;
  json_decref(bus_log);
  bus_log = NULL;
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

/* Append through the store (its own transaction): returns the seq. */
static uint64_t append(const char *channel, const char *data) {
  osb_rt_row_t row = {0, data, strlen(data), 1700000000000ULL};
  done = 0;
  st->append(st, channel, &row, on_seq, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
  return got_seq;
}

static void range(const char *channel, uint64_t since, size_t limit) {
  done = 0;
  st->range(st, channel, since, limit, on_rows, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
}

/* ---- tests ---- */

static void test_append_assigns_consecutive_seqs_and_range_returns_them(void **state) {
  need_store();
  const char *c = chan("order");
  assert_int_equal(append(c, "{\"a\":1}"), 1);
  assert_int_equal(append(c, "[1,\"two\",{\"x\":null}]"), 2);
  assert_int_equal(append(c, "\"three\""), 3);
  range(c, 0, 100);
  assert_int_equal(json_array_size(rows), 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, i), 0)), (json_int_t)i + 1);
  json_t *want = json_loads("[1,\"two\",{\"x\":null}]", 0, NULL);
  assert_true(json_equal(json_array_get(json_array_get(rows, 1), 1), want));
  json_decref(want);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 2), 2)), 1700000000000LL);
}

static void test_range_honours_since_and_limit(void **state) {
  need_store();
  const char *c = chan("window");
  for (uint64_t s = 1; s <= 10; s++) assert_int_equal(append(c, "0"), s);
  range(c, 4, 3);
  assert_int_equal(json_array_size(rows), 3);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 0), 0)), 5);
  assert_int_equal(json_integer_value(json_array_get(json_array_get(rows, 2), 0)), 7);
  range(c, 10, 5);
  assert_int_equal(json_array_size(rows), 0);
}

static uint64_t last_seq(const char *c) {
  done = 0;
  st->last_seq(st, c, on_seq, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
  return got_seq;
}

static void test_last_seq_is_the_channel_counter(void **state) {
  need_store();
  const char *c = chan("last");
  assert_int_equal(last_seq(c), 0);
  append(c, "1");
  append(c, "2");
  assert_int_equal(last_seq(c), 2);
}

/* Many publishers at once (on PostgreSQL over several pooled connections)
 * get distinct consecutive seqs, and every row is kept. The old store
 * inserted with ON CONFLICT DO NOTHING under a seq chosen in memory. */
static int cdone;
static uint64_t cseqs[20];
static void on_cseq(void *ud, int err, uint64_t seq) {
  assert_int_equal(err, 0);
  cseqs[cdone++] = seq;
}

static void test_concurrent_appends_get_distinct_consecutive_seqs(void **state) {
  need_store();
  const char *c = chan("concurrent");
  cdone = 0;
  osb_rt_row_t row = {0, "\"x\"", 3, 1700000000000ULL};
  for (int i = 0; i < 20; i++) st->append(st, c, &row, on_cseq, NULL);
  run_until(&cdone, 20);
  bool seen[21] = {0};
  for (int i = 0; i < 20; i++) {
    assert_true(cseqs[i] >= 1 && cseqs[i] <= 20);
    assert_false(seen[cseqs[i]]);
    seen[cseqs[i]] = true;
  }
  range(c, 0, 100);
  assert_int_equal(json_array_size(rows), 20);
}

static void test_channels_do_not_mix(void **state) {
  need_store();
  assert_int_equal(append(chan("mix-a"), "\"a\""), 1);
  assert_int_equal(append(chan("mix-b"), "\"b\""), 1);
  range(chan("mix-a"), 0, 10);
  assert_int_equal(json_array_size(rows), 1);
  assert_string_equal(json_string_value(json_array_get(json_array_get(rows, 0), 1)), "a");
}

/* ---- publishing inside a caller's transaction ---- */

static osb_db_tx_t *the_tx;
static void on_tx(void *ud, int err, osb_db_tx_t *tx) {
  assert_int_equal(err, 0);
  the_tx = tx;
  done++;
}
static void begin(void) {
  done = 0;
  the_tx = NULL;
  osb_db_tx_begin(on_tx, NULL);
  run_until(&done, 1);
}
static void on_end(void *ud, int err, const osb_db_result_t *res) {
  last_err = err;
  done++;
}
static int pdone, perr;
static uint64_t pseq;
static void on_pub(void *ud, int err, uint64_t seq) {
  perr = err;
  pseq = seq;
  pdone++;
}
static void end_tx(bool commit) {
  done = 0;
  if (commit) osb_db_tx_commit(the_tx, on_end, NULL);
  else osb_db_tx_rollback(the_tx, on_end, NULL);
  run_until(&done, 1);
}
static size_t bus_n(void) { return bus_log ? json_array_size(bus_log) : 0; }

static void test_tx_publish_rollback_publishes_nothing(void **state) {
  need_store();
  const char *c = chan("rollback");
  size_t before = bus_n();
  begin();
  json_t *d = json_pack("{s:s}", "k", "v");
  pdone = 0;
  osb_rt_tx_publish(the_tx, c, d, on_pub, NULL);
  osb_rt_tx_publish(the_tx, "market:all", d, on_pub, NULL);
  run_until(&pdone, 2);
  assert_int_equal(perr, 0);
  end_tx(false);
  assert_int_equal(bus_n(), before);   /* nothing reached the bus */
  range(c, 0, 10);
  assert_int_equal(json_array_size(rows), 0);
  assert_int_equal(last_seq(c), 0);     /* the seq was given back */
  json_decref(d);
}

static void test_tx_publish_delivers_after_commit_in_order(void **state) {
  need_store();
  const char *c = chan("commit");
  size_t before = bus_n();
  begin();
  json_t *d = json_pack("{s:f}", "v", 0.1);
  pdone = 0;
  osb_rt_tx_publish(the_tx, c, d, on_pub, NULL);
  osb_rt_tx_publish(the_tx, "market:all", d, on_pub, NULL);
  osb_rt_tx_publish(the_tx, c, d, on_pub, NULL);
  /* committed right away: the store statements were queued before */
  done = 0;
  osb_db_tx_commit(the_tx, on_end, NULL);
  assert_int_equal(bus_n(), before);   /* not before the commit */
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
  assert_int_equal(pdone, 3);
  assert_int_equal(bus_n(), before + 3);   /* delivered by the time the commit answers */
  json_t *p0 = json_array_get(bus_log, before), *p1 = json_array_get(bus_log, before + 1),
         *p2 = json_array_get(bus_log, before + 2);
  assert_string_equal(json_string_value(json_array_get(p0, 0)), c);
  assert_int_equal(json_integer_value(json_array_get(p0, 1)), 1);
  assert_true(json_is_true(json_array_get(p0, 3)));
  assert_string_equal(json_string_value(json_array_get(p1, 0)), "market:all");
  assert_int_equal(json_integer_value(json_array_get(p1, 1)), 0);   /* the hub numbers it */
  assert_int_equal(json_integer_value(json_array_get(p2, 1)), 2);
  assert_string_equal(json_string_value(json_array_get(p0, 2)), "{\"v\":0.1}");
  range(c, 0, 10);
  assert_int_equal(json_array_size(rows), 2);
  json_decref(d);
}

static void test_tx_publish_at_refuses_a_stored_seq(void **state) {
  need_store();
  const char *c = chan("at");
  begin();
  json_t *d = json_string("n");
  pdone = 0;
  osb_rt_tx_next_seq(the_tx, c, on_pub, NULL);
  run_until(&pdone, 1);
  assert_int_equal(perr, 0);
  assert_int_equal(pseq, 1);
  osb_rt_tx_publish_at(the_tx, c, 1, d, on_pub, NULL);
  run_until(&pdone, 2);
  assert_int_equal(perr, 0);
  end_tx(true);
  assert_int_equal(last_err, 0);
  begin();
  osb_rt_tx_publish_at(the_tx, c, 1, d, on_pub, NULL);   /* again: a duplicate, never dropped silently */
  run_until(&pdone, 3);
  assert_int_equal(perr, OSB_ECONFLICT);
  end_tx(true);
  assert_int_equal(last_err, OSB_ECONFLICT);   /* the tx was aborted */
  json_decref(d);
}

static const osb_db_stmt_t Q_USER_NEW = {
  .name = "test_rt_user_new",
  .pg = "INSERT INTO users (id, email) VALUES ($1, $2)",
  .nparams = 2,
  .writes = "users",
};
static const osb_db_stmt_t Q_USER_SEQ = {
  .name = "test_rt_user_seq",
  .pg = "SELECT notify_seq FROM users WHERE id = $1",
  .nparams = 1,
  .reads = "users",
};
static int64_t user_seq;
static void on_q(void *ud, int err, const osb_db_result_t *res) {
  last_err = err;
  if (!err && osb_db_nrows(res)) user_seq = osb_db_int(res, 0, 0);
  done++;
}

/* notify:<user>: the seq is users.notify_seq, so a notification's seq is
 * its channel seq; a user that does not exist gets OSB_ENOTFOUND. */
static void test_notify_seqs_come_from_the_user_row(void **state) {
  need_store();
  char uid[37], email[80], chn[64], nochn[64];
  osb_db_uuid(uid);
  snprintf(email, sizeof(email), "%s@example.test", uid);
  const char *p[2] = {uid, email};
  done = 0;
  osb_db_query(&Q_USER_NEW, p, 2, on_q, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, 0);
  osb__rt_ns_by_name("notify")->seq_src = OSB__RT_SEQ_USER;
  snprintf(chn, sizeof(chn), "notify:%s", uid);
  snprintf(nochn, sizeof(nochn), "notify:%s-none", chan_prefix);
  assert_int_equal(append(chn, "1"), 1);
  assert_int_equal(append(chn, "2"), 2);
  assert_int_equal(last_seq(chn), 2);
  done = 0;
  const char *q[1] = {uid};
  osb_db_query(&Q_USER_SEQ, q, 1, on_q, NULL);
  run_until(&done, 1);
  assert_int_equal(user_seq, 2);
  osb_rt_row_t row = {0, "1", 1, 1};
  done = 0;
  st->append(st, nochn, &row, on_seq, NULL);
  run_until(&done, 1);
  assert_int_equal(last_err, OSB_ENOTFOUND);
  osb__rt_ns_by_name("notify")->seq_src = OSB__RT_SEQ_CHANNEL;
}

#define SQ(f) cmocka_unit_test(f)

int main(void) {
  const struct CMUnitTest tests[] = {
    SQ(test_append_assigns_consecutive_seqs_and_range_returns_them),
    SQ(test_range_honours_since_and_limit),
    SQ(test_last_seq_is_the_channel_counter),
    SQ(test_concurrent_appends_get_distinct_consecutive_seqs),
    SQ(test_channels_do_not_mix),
    SQ(test_tx_publish_rollback_publishes_nothing),
    SQ(test_tx_publish_delivers_after_commit_in_order),
    SQ(test_tx_publish_at_refuses_a_stored_seq),
    SQ(test_notify_seqs_come_from_the_user_row),
  };
  int rc = cmocka_run_group_tests_name("sqlite", tests, sqlite_setup, group_teardown);
  rc += cmocka_run_group_tests_name("postgresql", tests, pg_setup, group_teardown);
  json_decref(rows);
  return rc;
}
