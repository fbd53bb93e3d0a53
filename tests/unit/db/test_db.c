/* test_db.c: the query interface driven through a real event loop, against
 * SQLite in a temporary directory and, when OSB_TEST_PG_URL is set, against
 * PostgreSQL (those tests skip with a message otherwise). Each test makes
 * its own loop, initialises the module, counts callbacks, closes the module
 * and requires uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/config.h"
#include "core/core.h"
#include "db/db.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"

typedef struct { bool pg; } backend_t;
static backend_t SQLITE = { false }, PG = { true };

static uv_loop_t loop;
static osb_config_t cfg;
static char dir[256];
static bool started;

/* ---- statements used by the tests ---- */
static const osb_db_stmt_t Q_COUNT = {
  .name = "t_count", .pg = "SELECT count(*) AS n FROM market_procedures", .reads = "market_procedures" };
static const osb_db_stmt_t Q_VERSION = {
  .name = "t_version", .pg = "SELECT max(version) AS v FROM schema_migrations" };
static const osb_db_stmt_t Q_USER_INS = {
  .name = "t_user_ins", .nparams = 4, .writes = "users",
  .pg = "INSERT INTO users (id, email, display_name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)" };
static const osb_db_stmt_t Q_USER_GET = {
  .name = "t_user_get", .nparams = 1, .reads = "users", .cacheable = true,
  .pg = "SELECT id, email, display_name, notify_seq FROM users WHERE id = $1" };
static const osb_db_stmt_t Q_USER_GET_NC = {
  .name = "t_user_get_nc", .nparams = 1, .reads = "users",
  .pg = "SELECT id, email, display_name FROM users WHERE id = $1" };
static const osb_db_stmt_t Q_USER_RENAME = {
  .name = "t_user_rename", .nparams = 2, .writes = "users",
  .pg = "UPDATE users SET display_name = $2 WHERE id = $1" };
static const osb_db_stmt_t Q_PROC_GET = {
  .name = "t_proc_get", .nparams = 1, .reads = "market_procedures",
  .pg = "SELECT id, name, category, growth_pct, market_size_usd FROM market_procedures WHERE id = $1" };
static const osb_db_stmt_t Q_CONV_INS = {
  .name = "t_conv_ins", .nparams = 4, .writes = "conversations",
  .pg = "INSERT INTO conversations (id, user_id, agent_id, app, title, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'repconnect', '', $4, $4)" };
static const osb_db_stmt_t Q_MSG_INS = {
  .name = "t_msg_ins", .nparams = 5, .writes = "messages",
  .pg = "INSERT INTO messages (id, conversation_id, seq, role, content, fallback, created_at, updated_at) "
        "VALUES ($1, $2, 1, 'assistant', $3, $4, $5, $5)" };
static const osb_db_stmt_t Q_MSG_GET = {
  .name = "t_msg_get", .nparams = 1, .reads = "messages",
  .pg = "SELECT seq, content, fallback, audio_url FROM messages WHERE id = $1" };
static const osb_db_stmt_t Q_NOTE_INS = {
  .name = "t_note_ins", .nparams = 4, .writes = "notifications",
  .pg = "INSERT INTO notifications (id, user_id, seq, kind, data, created_at) VALUES ($1, $2, 1, 'test', $3, $4)" };
static const osb_db_stmt_t Q_NOTE_GET = {
  .name = "t_note_get", .nparams = 1, .reads = "notifications",
  .pg = "SELECT kind, data, read_at FROM notifications WHERE id = $1" };
static const osb_db_stmt_t Q_TTS_INS = {
  .name = "t_tts_ins", .nparams = 4, .writes = "tts_cache",
  .pg = "INSERT INTO tts_cache (hash, voice_id, audio, bytes) VALUES ($1, 'v', $2, $3) "
        "ON CONFLICT (hash) DO UPDATE SET audio = excluded.audio, last_used_at = $4" };
static const osb_db_stmt_t Q_TTS_GET = {
  .name = "t_tts_get", .nparams = 1, .reads = "tts_cache",
  .pg = "SELECT audio FROM tts_cache WHERE hash = $1" };
static const osb_db_stmt_t Q_FTS = {
  .name = "t_fts", .nparams = 2, .reads = "agent_knowledge",
  .pg = "SELECT k.title FROM agent_knowledge k, to_tsquery('english', $2) q "
        "WHERE k.agent_id = $1 AND k.tsv @@ q ORDER BY ts_rank(k.tsv, q) DESC, k.id LIMIT 3",
  .sqlite = "SELECT k.title FROM agent_knowledge_fts f JOIN agent_knowledge k ON k.rowid = f.rowid "
            "WHERE agent_knowledge_fts MATCH ?2 AND k.agent_id = ?1 ORDER BY bm25(agent_knowledge_fts), k.id LIMIT 3" };
static const osb_db_stmt_t Q_LIMIT = {
  .name = "t_limit", .nparams = 2, .reads = "market_procedures",
  .pg = "SELECT id FROM market_procedures WHERE id > $1 ORDER BY id LIMIT $2" };

/* ---- harness ---- */

typedef struct {
  int calls;
  int err;
  const osb_db_result_t *res;
} q_t;

static void q_cb(void *ud, int err, const osb_db_result_t *res) {
  q_t *q = ud;
  q->calls++;
  q->err = err;
  if (q->res) osb_db_result_unref(q->res);
  q->res = res ? osb_db_result_ref(res) : NULL;
}

static void q_clear(q_t *q) {
  if (q->res) osb_db_result_unref(q->res);
  memset(q, 0, sizeof(*q));
}

static uv_timer_t guard;
static void guard_cb(uv_timer_t *t) { OSB_UNUSED(t); }

/* Run the loop until *counter reaches target (a 20 s guard fails the test). */
static void run_until(const int *counter, int target) {
  uint64_t end = uv_hrtime() + 20ULL * 1000000000ULL;
  uv_timer_start(&guard, guard_cb, 50, 50);
  while (*counter < target) {
    uv_run(&loop, UV_RUN_ONCE);
    if (uv_hrtime() > end) fail_msg("timed out waiting for callbacks (%d of %d)", *counter, target);
  }
  uv_timer_stop(&guard);
}

static void run_for_ms(uint64_t ms) {
  uint64_t end = uv_hrtime() + ms * 1000000ULL;
  uv_timer_start(&guard, guard_cb, 5, 5);
  while (uv_hrtime() < end) uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
}

static bool want_pg(void **state) {
  backend_t *b = *state;
  if (!b->pg) return false;
  if (!getenv("OSB_TEST_PG_URL") || !*getenv("OSB_TEST_PG_URL")) {
    print_message("skipped: OSB_TEST_PG_URL is not set (PostgreSQL tests need a server)\n");
    skip();
  }
  return true;
}

static void (*tweak)(osb_config_t *c);

static void start_with(void **state, int pool_max, int cache_mb, int acquire_ms) {
  bool pg = want_pg(state);
  memset(&cfg, 0, sizeof(cfg));
  snprintf(dir, sizeof(dir), "/tmp/osb-dbtest-XXXXXX");
  assert_non_null(mkdtemp(dir));
  static char path[300];
  snprintf(path, sizeof(path), "%s/nested/dir/osb.db", dir);
  cfg.sqlite_path = path;
  cfg.database_url = pg ? getenv("OSB_TEST_PG_URL") : NULL;
  cfg.db_pool_min = 1;
  cfg.db_pool_max = pool_max;
  cfg.db_acquire_timeout_ms = acquire_ms;
  cfg.db_health_interval_ms = 10000;
  cfg.db_max_lifetime_ms = 1800000;
  cfg.db_idle_timeout_ms = 600000;
  cfg.query_cache_mb = cache_mb;
  cfg.query_cache_ttl_ms = 5000;
  cfg.slow_query_ms = 1000;
  if (tweak) tweak(&cfg);
  tweak = NULL;
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_log_init(OSB_LOG_ERROR, OSB_LOGFMT_TEXT);
  uv_timer_init(&loop, &guard);
  started = true;
  assert_int_equal(osb_db_init(&cfg), 0);
}

static void start(void **state) { start_with(state, 5, 8, 2000); }

static void stop(void) {
  started = false;
  osb_db_close();
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_health_reset();
  osb_metrics_reset();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

static void uuid(char out[37]) { osb_db_uuid(out); }

static void now_text(char out[24]) { snprintf(out, 24, "%llu", (unsigned long long)osb_wallclock_ms()); }

static void insert_user(const char *id, const char *email, const char *name) {
  char now[24];
  now_text(now);
  q_t q = { 0 };
  const char *p[] = { id, email, name, now };
  osb_db_query(&Q_USER_INS, p, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_affected(q.res), 1);
  q_clear(&q);
}

/* ---- tests ---- */

static void init_migrates_and_seeds(void **state) {
  start(state);
  q_t a = { 0 }, b = { 0 };
  osb_db_query(&Q_COUNT, NULL, 0, q_cb, &a);
  osb_db_query(&Q_VERSION, NULL, 0, q_cb, &b);
  run_until(&b.calls, 1);
  run_until(&a.calls, 1);
  assert_int_equal(a.err, 0);
  assert_true(osb_db_int(a.res, 0, 0) >= 10000);
  assert_int_equal(osb_db_coltype(a.res, 0), OSB_DB_INT);
  assert_int_equal(b.err, 0);
  assert_true(osb_db_int(b.res, 0, 0) >= 1);
  q_clear(&a);
  q_clear(&b);
  stop();
}

static void callback_runs_after_the_call_returns(void **state) {
  start(state);
  q_t q = { 0 };
  const char *p[] = { "1" };
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  assert_int_equal(q.calls, 0);
  run_until(&q.calls, 1);
  assert_int_equal(q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_nrows(q.res), 1);
  assert_string_equal(osb_db_get(q.res, 0, "id"), "1");
  q_clear(&q);
  /* A cache hit is deferred too. */
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  q_clear(&q);
  stop();
}

static void sql_in_parameters_is_stored_literally(void **state) {
  start(state);
  char id[37];
  uuid(id);
  char email[160];
  snprintf(email, sizeof(email), "o'hara\"; DROP TABLE users; --$1 ?1 %%_\\%s@example.com", id);
  const char *name = "Robert'); DELETE FROM market_procedures WHERE ('1'='1 \xc3\xa9\xe2\x9c\x93";
  insert_user(id, email, name);
  q_t q = { 0 };
  const char *p[] = { id };
  osb_db_query(&Q_USER_GET_NC, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_string_equal(osb_db_get(q.res, 0, "email"), email);
  assert_string_equal(osb_db_get(q.res, 0, "display_name"), name);
  q_clear(&q);
  osb_db_query(&Q_COUNT, NULL, 0, q_cb, &q);
  run_until(&q.calls, 1);
  assert_true(osb_db_int(q.res, 0, 0) >= 10000);
  q_clear(&q);
  stop();
}

static void unique_violation_is_conflict(void **state) {
  start(state);
  char id1[37], id2[37], email[80];
  uuid(id1);
  uuid(id2);
  snprintf(email, sizeof(email), "dup-%s@example.com", id1);
  insert_user(id1, email, "first");
  char now[24];
  now_text(now);
  q_t q = { 0 };
  const char *p[] = { id2, email, "second", now };
  osb_db_query(&Q_USER_INS, p, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, OSB_ECONFLICT);
  assert_null(q.res);
  q_clear(&q);
  stop();
}

/* NOT NULL (and CHECK) violations are bad input on both backends (db.h:
 * OSB_EINVAL → 400), not a database error. */
static void not_null_violation_is_invalid(void **state) {
  start(state);
  char id[37], now[24];
  uuid(id);
  now_text(now);
  q_t q = { 0 };
  const char *p[] = { id, NULL, "no email", now };
  osb_db_query(&Q_USER_INS, p, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, OSB_EINVAL);
  assert_null(q.res);
  q_clear(&q);
  stop();
}

static void repeated_read_is_a_cache_hit(void **state) {
  start(state);
  char id[37], email[80];
  uuid(id);
  snprintf(email, sizeof(email), "cache-%s@example.com", id);
  insert_user(id, email, "v1");
  osb_db_stats_t s0, s1;
  osb_db_stats(&s0);
  q_t a = { 0 }, b = { 0 };
  const char *p[] = { id };
  osb_db_query(&Q_USER_GET, p, 1, q_cb, &a);
  run_until(&a.calls, 1);
  osb_db_query(&Q_USER_GET, p, 1, q_cb, &b);
  run_until(&b.calls, 1);
  osb_db_stats(&s1);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.err, 0);
  assert_ptr_equal(a.res, b.res);   /* the very same shared result */
  assert_int_equal(s1.cache_hits - s0.cache_hits, 1);
  assert_int_equal(s1.cache_misses - s0.cache_misses, 1);
  assert_true(s1.cache_entries >= 1);
  q_clear(&a);
  q_clear(&b);
  stop();
}

static void write_invalidates_cached_read(void **state) {
  start(state);
  char id[37], email[80];
  uuid(id);
  snprintf(email, sizeof(email), "inval-%s@example.com", id);
  insert_user(id, email, "before");
  q_t q = { 0 };
  const char *p[] = { id };
  osb_db_query(&Q_USER_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_string_equal(osb_db_get(q.res, 0, "display_name"), "before");
  q_clear(&q);
  const char *up[] = { id, "after" };
  osb_db_query(&Q_USER_RENAME, up, 2, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_affected(q.res), 1);
  q_clear(&q);
  osb_db_query(&Q_USER_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_string_equal(osb_db_get(q.res, 0, "display_name"), "after");
  q_clear(&q);
  stop();
}

static void concurrent_identical_misses_share_one_query(void **state) {
  start(state);
  char id[37], email[80];
  uuid(id);
  snprintf(email, sizeof(email), "flight-%s@example.com", id);
  insert_user(id, email, "shared");
  osb_db_stats_t s0, s1;
  osb_db_stats(&s0);
  q_t q[3] = { { 0 } };
  const char *p[] = { id };
  for (int i = 0; i < 3; i++) osb_db_query(&Q_USER_GET, p, 1, q_cb, &q[i]);
  run_until(&q[0].calls, 1);
  run_until(&q[2].calls, 1);
  osb_db_stats(&s1);
  assert_int_equal(s1.queries - s0.queries, 1);
  const osb_db_result_t *shared = q[0].res;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(q[i].err, 0);
    assert_ptr_equal(q[i].res, shared);
  }
  for (int i = 0; i < 3; i++) q_clear(&q[i]);
  stop();
}

static void zero_megabytes_disables_the_cache(void **state) {
  start_with(state, 5, 0, 2000);
  q_t a = { 0 }, b = { 0 };
  const char *p[] = { "2" };
  static const osb_db_stmt_t Q = {
    .name = "t_proc_cached", .nparams = 1, .reads = "market_procedures", .cacheable = true,
    .pg = "SELECT id, name FROM market_procedures WHERE id = $1" };
  osb_db_query(&Q, p, 1, q_cb, &a);
  run_until(&a.calls, 1);
  osb_db_query(&Q, p, 1, q_cb, &b);
  run_until(&b.calls, 1);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_int_equal(s.cache_hits, 0);
  assert_int_equal(s.cache_entries, 0);
  assert_ptr_not_equal(a.res, b.res);
  assert_string_equal(osb_db_text(a.res, 0, 1), osb_db_text(b.res, 0, 1));
  q_clear(&a);
  q_clear(&b);
  stop();
}

/* ---- transactions ---- */

typedef struct {
  osb_db_tx_t *tx;
  int calls, err;
} txw_t;

static void tx_cb(void *ud, int err, osb_db_tx_t *tx) {
  txw_t *w = ud;
  w->calls++;
  w->err = err;
  w->tx = tx;
}

static void transaction_commits(void **state) {
  start(state);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);
  assert_int_equal(w.calls, 0);
  run_until(&w.calls, 1);
  assert_int_equal(w.err, 0);
  char id[37], email[80], now[24];
  uuid(id);
  snprintf(email, sizeof(email), "tx-%s@example.com", id);
  now_text(now);
  q_t ins = { 0 }, get = { 0 }, commit = { 0 };
  const char *p[] = { id, email, "in tx", now };
  const char *pid[] = { id };
  osb_db_tx_query(w.tx, &Q_USER_INS, p, 4, q_cb, &ins);
  osb_db_tx_query(w.tx, &Q_USER_GET_NC, pid, 1, q_cb, &get);   /* sees its own write */
  osb_db_tx_commit(w.tx, q_cb, &commit);
  run_until(&commit.calls, 1);
  assert_int_equal(ins.err, 0);
  assert_int_equal(get.err, 0);
  assert_int_equal(osb_db_nrows(get.res), 1);
  assert_int_equal(commit.err, 0);
  q_clear(&ins);
  q_clear(&get);
  q_clear(&commit);
  osb_db_query(&Q_USER_GET_NC, pid, 1, q_cb, &get);
  run_until(&get.calls, 1);
  assert_int_equal(osb_db_nrows(get.res), 1);
  q_clear(&get);
  stop();
}

static void failed_query_rolls_the_transaction_back(void **state) {
  start(state);
  char id1[37], id2[37], taken[37], email1[80], taken_email[80], now[24];
  uuid(id1);
  uuid(id2);
  uuid(taken);
  snprintf(email1, sizeof(email1), "rb-%s@example.com", id1);
  snprintf(taken_email, sizeof(taken_email), "taken-%s@example.com", taken);
  insert_user(taken, taken_email, "taken");
  now_text(now);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);
  run_until(&w.calls, 1);
  assert_int_equal(w.err, 0);
  q_t a = { 0 }, b = { 0 }, c = { 0 }, commit = { 0 };
  const char *p1[] = { id1, email1, "one", now };
  const char *p2[] = { id2, taken_email, "dup", now };
  const char *pid[] = { id1 };
  osb_db_tx_query(w.tx, &Q_USER_INS, p1, 4, q_cb, &a);
  osb_db_tx_query(w.tx, &Q_USER_INS, p2, 4, q_cb, &b);
  osb_db_tx_query(w.tx, &Q_USER_GET_NC, pid, 1, q_cb, &c);
  osb_db_tx_commit(w.tx, q_cb, &commit);
  run_until(&commit.calls, 1);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.err, OSB_ECONFLICT);
  assert_int_equal(c.err, OSB_ECONFLICT);   /* aborted: the first error */
  assert_int_equal(commit.err, OSB_ECONFLICT);
  q_clear(&a);
  q_clear(&b);
  q_clear(&c);
  q_clear(&commit);
  osb_db_query(&Q_USER_GET_NC, pid, 1, q_cb, &c);
  run_until(&c.calls, 1);
  assert_int_equal(c.err, 0);
  assert_int_equal(osb_db_nrows(c.res), 0);   /* rolled back */
  q_clear(&c);
  stop();
}

/* ---- types ---- */

static void columns_are_typed_and_render_as_json(void **state) {
  start(state);
  char uid[37], cid[37], mid[37], nid[37], email[80], now[24];
  uuid(uid);
  uuid(cid);
  uuid(mid);
  uuid(nid);
  snprintf(email, sizeof(email), "types-%s@example.com", uid);
  now_text(now);
  insert_user(uid, email, "types");
  q_t q = { 0 };
  const char *pc[] = { cid, uid, "a0000000-0000-4000-8000-000000000001", now };
  osb_db_query(&Q_CONV_INS, pc, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  const char *pm[] = { mid, cid, "hello", "1", now };
  osb_db_query(&Q_MSG_INS, pm, 5, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  const char *pn[] = { nid, uid, "{\"a\":[1,2],\"b\":\"x\"}", now };
  osb_db_query(&Q_NOTE_INS, pn, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);

  const char *gm[] = { mid };
  osb_db_query(&Q_MSG_GET, gm, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_coltype(q.res, 0), OSB_DB_INT);
  assert_int_equal(osb_db_coltype(q.res, 1), OSB_DB_TEXT);
  assert_int_equal(osb_db_coltype(q.res, 2), OSB_DB_BOOL);
  assert_true(osb_db_bool(q.res, 0, 2));
  assert_true(osb_db_isnull(q.res, 0, 3));
  json_t *j = osb_db_row_json(q.res, 0);
  assert_true(json_is_integer(json_object_get(j, "seq")));
  assert_true(json_is_true(json_object_get(j, "fallback")));
  assert_true(json_is_null(json_object_get(j, "audio_url")));
  assert_string_equal(json_string_value(json_object_get(j, "content")), "hello");
  json_decref(j);
  q_clear(&q);

  const char *gn[] = { nid };
  osb_db_query(&Q_NOTE_GET, gn, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_coltype(q.res, 1), OSB_DB_JSON);
  j = osb_db_row_json(q.res, 0);
  json_t *data = json_object_get(j, "data");
  assert_true(json_is_object(data));
  assert_int_equal(json_array_size(json_object_get(data, "a")), 2);
  json_decref(j);
  q_clear(&q);

  const char *pp[] = { "3" };
  osb_db_query(&Q_PROC_GET, pp, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(osb_db_coltype(q.res, 3), OSB_DB_FLOAT);
  j = osb_db_row_json(q.res, 0);
  assert_true(json_is_integer(json_object_get(j, "id")));
  assert_true(json_is_real(json_object_get(j, "growth_pct")));
  assert_true(json_is_integer(json_object_get(j, "market_size_usd")));
  assert_true(json_is_string(json_object_get(j, "name")));
  json_decref(j);
  q_clear(&q);
  stop();
}

static void binary_parameters_round_trip(void **state) {
  start(state);
  unsigned char audio[300];
  for (size_t i = 0; i < sizeof(audio); i++) audio[i] = (unsigned char)(i * 7);
  char hash[37], len[16];
  uuid(hash);
  snprintf(len, sizeof(len), "%zu", sizeof(audio));
  char now[24];
  now_text(now);
  osb_db_param_t p[4] = {
    { OSB_DB_P_TEXT, hash, strlen(hash) }, { OSB_DB_P_BLOB, audio, sizeof(audio) },
    { OSB_DB_P_TEXT, len, strlen(len) }, { OSB_DB_P_TEXT, now, strlen(now) } };
  q_t q = { 0 };
  osb_db_queryv(&Q_TTS_INS, p, 4, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  const char *g[] = { hash };
  osb_db_query(&Q_TTS_GET, g, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_coltype(q.res, 0), OSB_DB_BLOB);
  assert_int_equal(osb_db_len(q.res, 0, 0), sizeof(audio));
  assert_memory_equal(osb_db_text(q.res, 0, 0), audio, sizeof(audio));
  q_clear(&q);
  stop();
}

static void integer_text_binds_as_integer(void **state) {
  start(state);
  q_t q = { 0 };
  const char *p[] = { "10", "5" };
  osb_db_query(&Q_LIMIT, p, 2, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_int_equal(osb_db_nrows(q.res), 5);
  assert_int_equal(osb_db_int(q.res, 0, 0), 11);
  q_clear(&q);
  stop();
}

static void full_text_search_finds_seeded_knowledge(void **state) {
  start(state);
  char *terms = osb_db_fts_terms("How long does botox last, in weeks?");
  assert_non_null(terms);
  q_t q = { 0 };
  const char *p[] = { "a0000000-0000-4000-8000-000000000002", terms };
  osb_db_query(&Q_FTS, p, 2, q_cb, &q);
  free(terms);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_true(osb_db_nrows(q.res) >= 1);
  q_clear(&q);
  assert_null(osb_db_fts_terms(" ?! -- "));
  stop();
}

/* ---- load and shutdown ---- */

static void many_concurrent_reads_through_a_small_pool(void **state) {
  start_with(state, 3, 0, 5000);
  enum { N = 200 };
  static q_t q[N];
  static char ids[N][16];
  int done = 0;
  memset(q, 0, sizeof(q));
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "%d", i + 1);
    const char *p[] = { ids[i] };
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q[i]);
  }
  for (int i = 0; i < N; i++) {
    run_until(&q[i].calls, 1);
    done++;
    assert_int_equal(q[i].err, 0);
    assert_int_equal(osb_db_int(q[i].res, 0, 0), i + 1);
    q_clear(&q[i]);
  }
  assert_int_equal(done, N);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_true(s.size <= 4);
  stop();
}

static void close_answers_every_pending_query(void **state) {
  start(state);
  enum { N = 40 };
  static q_t q[N];
  memset(q, 0, sizeof(q));
  for (int i = 0; i < N; i++) {
    const char *p[] = { "4" };
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q[i]);
  }
  osb_db_close();
  for (int i = 0; i < N; i++) {
    run_until(&q[i].calls, 1);
    assert_int_equal(q[i].calls, 1);
    assert_true(q[i].err == 0 || q[i].err == OSB_EUNAVAIL);
    q_clear(&q[i]);
  }
  stop();
}

/* ---- PostgreSQL only ---- */

static void pg_acquire_timeout_is_unavailable(void **state) {
  start_with(state, 1, 0, 150);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);   /* holds the only connection */
  run_until(&w.calls, 1);
  assert_int_equal(w.err, 0);
  q_t q = { 0 };
  const char *p[] = { "5" };
  uint64_t t0 = uv_hrtime();
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  assert_int_equal(q.err, OSB_EUNAVAIL);
  assert_true(ms >= 100 && ms < 2000);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_int_equal(s.timeouts, 1);
  q_clear(&q);
  q_t rb = { 0 };
  osb_db_tx_rollback(w.tx, q_cb, &rb);
  run_until(&rb.calls, 1);
  assert_int_equal(rb.err, 0);
  q_clear(&rb);
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  stop();
}

static void pg_failed_read_does_not_fail_its_pipeline_neighbours(void **state) {
  start_with(state, 1, 0, 5000);
  q_t q[5] = { { 0 } };
  const char *ids[] = { "6", "7", "not-a-number", "8", "9" };
  for (int i = 0; i < 5; i++) {
    const char *p[] = { ids[i] };
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q[i]);
  }
  for (int i = 0; i < 5; i++) run_until(&q[i].calls, 1);
  for (int i = 0; i < 5; i++) {
    if (i == 2) {
      assert_int_equal(q[i].err, OSB_EINVAL);
    } else {
      assert_int_equal(q[i].err, 0);
      assert_string_equal(osb_db_text(q[i].res, 0, 0), ids[i]);
    }
    q_clear(&q[i]);
  }
  stop();
}

static void pg_pool_grows_to_max_and_no_further(void **state) {
  start_with(state, 3, 0, 5000);
  enum { N = 60 };
  static q_t q[N];
  memset(q, 0, sizeof(q));
  static const osb_db_stmt_t Q_SLOW = {
    .name = "t_slow", .nparams = 1, .pg = "SELECT pg_sleep(0.02), $1::int AS i" };
  static char ids[N][8];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "%d", i);
    const char *p[] = { ids[i] };
    osb_db_query(&Q_SLOW, p, 1, q_cb, &q[i]);
  }
  int maxsize = 0;
  for (int i = 0; i < N; i++) {
    run_until(&q[i].calls, 1);
    osb_db_stats_t s;
    osb_db_stats(&s);
    if (s.size > maxsize) maxsize = s.size;
    assert_int_equal(q[i].err, 0);
    assert_int_equal(osb_db_int(q[i].res, 0, 1), i);
    q_clear(&q[i]);
  }
  assert_true(maxsize >= 2 && maxsize <= 3);
  run_for_ms(20);
  stop();
}

static void two_ready(osb_config_t *c) { c->db_pool_min = 2; }

static void wait_for_ready(int n) {
  for (int i = 0; i < 400; i++) {
    osb_db_stats_t s;
    osb_db_stats(&s);
    if (s.size >= n && s.connecting == 0) return;
    run_for_ms(5);
  }
  fail_msg("the pool did not open %d connections", n);
}

/* The reads issued in one loop iteration go out together on one
 * connection (one write, one Sync, one wake-up of one backend), not one
 * per idle connection; PIPE_DEPTH (16) of them fill it, the next one
 * takes another. */
static void pg_reads_of_one_iteration_share_a_connection(void **state) {
  tweak = two_ready;
  start_with(state, 4, 0, 5000);
  wait_for_ready(2);
  enum { N = 17 };
  static q_t q[N];
  memset(q, 0, sizeof(q));
  static char ids[N][8];
  osb_db_stats_t s;
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "%d", i + 1);
    const char *p[] = { ids[i] };
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q[i]);
    osb_db_stats(&s);
    assert_int_equal(s.active, i < 16 ? 1 : 2);
    assert_int_equal(s.waiting, 0);
  }
  for (int i = 0; i < N; i++) {
    run_until(&q[i].calls, 1);
    assert_int_equal(q[i].err, 0);
    assert_string_equal(osb_db_get(q[i].res, 0, "id"), ids[i]);
    q_clear(&q[i]);
  }
  /* the next iteration's reads: one connection again */
  for (int i = 0; i < 3; i++) {
    const char *p[] = { ids[i] };
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q[i]);
  }
  osb_db_stats(&s);
  assert_int_equal(s.active, 1);
  for (int i = 0; i < 3; i++) {
    run_until(&q[i].calls, 1);
    assert_int_equal(q[i].err, 0);
    q_clear(&q[i]);
  }
  stop();
}

/* A connection whose oldest query has waited 20 ms (STALL_MS) takes no new
 * reads: with both connections stuck behind slow statements, a quick read
 * gets a third connection instead of queueing behind one of them. */
static void pg_reads_avoid_stalled_connections(void **state) {
  tweak = two_ready;
  start_with(state, 3, 0, 5000);
  wait_for_ready(2);
  static const osb_db_stmt_t Q_SLOW = {
    .name = "t_stall", .nparams = 1, .pg = "SELECT pg_sleep(0.6), $1::int AS i" };
  q_t slow[2] = { { 0 } }, fast = { 0 };
  const char *p0[] = { "0" }, *p1[] = { "1" };
  osb_db_query(&Q_SLOW, p0, 1, q_cb, &slow[0]);
  run_for_ms(5);   /* its Sync went out: the next read starts another batch */
  osb_db_query(&Q_SLOW, p1, 1, q_cb, &slow[1]);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_int_equal(s.active, 2);
  run_for_ms(60);
  const char *p[] = { "5" };
  uint64_t t0 = uv_hrtime();
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &fast);
  run_until(&fast.calls, 1);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_int_equal(fast.err, 0);
  assert_string_equal(osb_db_get(fast.res, 0, "id"), "5");
  assert_int_equal(slow[0].calls + slow[1].calls, 0);   /* it did not wait for either */
  assert_true(ms < 400);
  osb_db_stats(&s);
  assert_int_equal(s.size, 3);
  q_clear(&fast);
  for (int i = 0; i < 2; i++) {
    run_until(&slow[i].calls, 1);
    assert_int_equal(slow[i].err, 0);
    q_clear(&slow[i]);
  }
  stop();
}

static const osb_db_stmt_t Q_PID = { .name = "t_pid", .pg = "SELECT pg_backend_pid() AS pid" };
static const osb_db_stmt_t Q_KILL = {
  .name = "t_kill", .nparams = 1, .pg = "SELECT pg_terminate_backend($1::int) AS killed" };

static int64_t backend_pid(void) {
  q_t q = { 0 };
  osb_db_query(&Q_PID, NULL, 0, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  int64_t pid = osb_db_int(q.res, 0, 0);
  q_clear(&q);
  return pid;
}

static void short_lifetime(osb_config_t *c) {
  c->db_max_lifetime_ms = 200;
  c->db_health_interval_ms = 50;
}

static void short_idle(osb_config_t *c) {
  c->db_idle_timeout_ms = 100;
  c->db_health_interval_ms = 50;
}

static void pg_connections_are_recycled_after_their_lifetime(void **state) {
  tweak = short_lifetime;
  start_with(state, 1, 0, 2000);
  int64_t first = backend_pid();
  run_for_ms(500);
  int64_t later = backend_pid();
  assert_true(first != later);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_true(s.size <= 1);
  stop();
}

static void pg_busy_connections_retire_after_their_lifetime(void **state) {
  tweak = short_lifetime;
  start_with(state, 1, 0, 5000);
  static const osb_db_stmt_t Q_SLOW_PID = {
    .name = "t_slow_pid", .pg = "SELECT pg_backend_pid() AS pid, pg_sleep(0.02)" };
  /* Keep two queries in flight at all times for ~800 ms: the connection is
   * never idle, yet it must be replaced once past its 200 ms lifetime. */
  int64_t first = 0, last = 0;
  q_t q[2] = { { 0 } };
  uint64_t end = uv_hrtime() + 800ULL * 1000000ULL;
  osb_db_query(&Q_SLOW_PID, NULL, 0, q_cb, &q[0]);
  osb_db_query(&Q_SLOW_PID, NULL, 0, q_cb, &q[1]);
  for (int i = 0; uv_hrtime() < end; i ^= 1) {
    run_until(&q[i].calls, 1);
    assert_int_equal(q[i].err, 0);
    last = osb_db_int(q[i].res, 0, 0);
    if (!first) first = last;
    q_clear(&q[i]);
    osb_db_query(&Q_SLOW_PID, NULL, 0, q_cb, &q[i]);
  }
  run_until(&q[0].calls, 1);
  run_until(&q[1].calls, 1);
  q_clear(&q[0]);
  q_clear(&q[1]);
  assert_true(first != last);
  stop();
}

static void pg_idle_connections_are_trimmed_to_the_minimum(void **state) {
  tweak = short_idle;
  start_with(state, 3, 0, 5000);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);   /* holds one connection, so the next query needs another */
  run_until(&w.calls, 1);
  assert_int_equal(w.err, 0);
  q_t q = { 0 };
  const char *p[] = { "12" };
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  osb_db_stats_t s0;
  osb_db_stats(&s0);
  /* At least the two in use; on a loaded machine the pool may have opened
   * a third while the query waited. Trimming to the minimum is the point. */
  assert_true(s0.size >= 2);
  osb_db_tx_commit(w.tx, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  run_for_ms(600);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_int_equal(s.size, 1);
  stop();
}

static void pg_connection_killed_mid_transaction(void **state) {
  start_with(state, 3, 0, 2000);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);
  run_until(&w.calls, 1);
  assert_int_equal(w.err, 0);
  q_t q = { 0 };
  osb_db_tx_query(w.tx, &Q_PID, NULL, 0, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  char pid[24];
  snprintf(pid, sizeof(pid), "%s", osb_db_text(q.res, 0, 0));
  q_clear(&q);
  const char *p[] = { pid };
  osb_db_query(&Q_KILL, p, 1, q_cb, &q);   /* runs on another connection */
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  assert_true(osb_db_bool(q.res, 0, 0));
  q_clear(&q);
  run_for_ms(100);
  osb_db_tx_query(w.tx, &Q_PID, NULL, 0, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, OSB_EUNAVAIL);
  q_clear(&q);
  osb_db_tx_rollback(w.tx, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, OSB_EUNAVAIL);
  q_clear(&q);
  assert_true(backend_pid() > 0);
  osb_db_stats_t s;
  osb_db_stats(&s);
  assert_true(s.reconnects >= 1);
  stop();
}

/* A BEGIN that lands on a connection with reads not yet synced (pool of
 * one, read and begin issued in the same loop iteration): the pipeline
 * bookkeeping must follow the wire order (Sync, then BEGIN). */
static void pg_begin_behind_unsynced_reads(void **state) {
  start_with(state, 1, 0, 5000);
  assert_true(backend_pid() > 0);   /* the one connection is ready */
  q_t q = { 0 };
  const char *p[] = { "13" };
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  txw_t w = { 0 };
  osb_db_tx_begin(tx_cb, &w);
  run_until(&q.calls, 1);
  run_until(&w.calls, 1);
  assert_int_equal(q.err, 0);
  assert_string_equal(osb_db_text(q.res, 0, 0), "13");
  q_clear(&q);
  assert_int_equal(w.err, 0);
  osb_db_tx_query(w.tx, &Q_PID, NULL, 0, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  osb_db_tx_commit(w.tx, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, 0);
  q_clear(&q);
  stop();
}

/* A statement's first use on a connection rides in the same pipeline
 * segment as a read that fails before it: the failure aborts the PREPARE
 * too. A second use sent before those results came back must not find the
 * statement missing on the server (26000 → 500). */
static void pg_prepare_not_lost_to_a_failing_neighbour(void **state) {
  start_with(state, 1, 0, 5000);
  assert_true(backend_pid() > 0);   /* the one connection is ready */
  static const osb_db_stmt_t Q_FRESH = {
    .name = "t_fresh", .nparams = 1, .reads = "market_procedures",
    .pg = "SELECT id, name FROM market_procedures WHERE id = $1 + 0" };
  q_t bad = { 0 }, a = { 0 }, b = { 0 };
  const char *pbad[] = { "not-a-number" };
  const char *p[] = { "15" };
  osb_db_query(&Q_PROC_GET, pbad, 1, q_cb, &bad);
  osb_db_query(&Q_FRESH, p, 1, q_cb, &a);
  uv_run(&loop, UV_RUN_NOWAIT);   /* the segment leaves; its answers are not read yet */
  osb_db_query(&Q_FRESH, p, 1, q_cb, &b);
  run_until(&bad.calls, 1);
  run_until(&a.calls, 1);
  run_until(&b.calls, 1);
  assert_int_equal(bad.err, OSB_EINVAL);
  assert_int_equal(a.err, 0);
  assert_int_equal(b.err, 0);
  assert_string_equal(osb_db_text(b.res, 0, 0), "15");
  q_clear(&bad);
  q_clear(&a);
  q_clear(&b);
  stop();
}

typedef struct { q_t q; int order; } oq_t;
static int completions;
static void oq_cb(void *ud, int err, const osb_db_result_t *res) {
  oq_t *o = ud;
  o->order = ++completions;
  q_cb(&o->q, err, res);
}

/* Reads aborted by a failing neighbour are resubmitted ahead of newer
 * waiters and in their original order (FIFO), not reversed. */
static void pg_resubmitted_reads_keep_their_order(void **state) {
  start_with(state, 1, 0, 5000);
  assert_true(backend_pid() > 0);
  enum { N = 4 };
  oq_t bad = { 0 }, r[N];
  memset(r, 0, sizeof(r));
  completions = 0;
  const char *pbad[] = { "not-a-number" };
  static const char *ids[N] = { "21", "22", "23", "24" };
  osb_db_query(&Q_PROC_GET, pbad, 1, oq_cb, &bad);
  for (int i = 0; i < N; i++) {
    const char *p[] = { ids[i] };
    osb_db_query(&Q_PROC_GET, p, 1, oq_cb, &r[i]);
  }
  for (int i = 0; i < N; i++) run_until(&r[i].q.calls, 1);
  assert_int_equal(bad.q.err, OSB_EINVAL);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].q.err, 0);
    assert_string_equal(osb_db_text(r[i].q.res, 0, 0), ids[i]);
    if (i) assert_true(r[i].order > r[i - 1].order);
    q_clear(&r[i].q);
  }
  q_clear(&bad.q);
  stop();
}

static char unix_url[400];
static bool pg_stopped;   /* cleanup restarts it after a failed assertion */
static void pool_min_two(osb_config_t *c) { c->db_pool_min = 2; }
static void pool_min_two_unix(osb_config_t *c) {
  c->db_pool_min = 2;
  c->database_url = unix_url;
}

/* PostgreSQL goes away while the pool holds two ready connections: the
 * first one to notice tries to replace itself, the attempt is refused at
 * once while the other still counts as ready. That must not spin: queries
 * fail fast, and after a restart they succeed again. An alarm turns a hang
 * into a failure. Needs OSB_PG_SCRIPT (and its PGDIR/PGPORT). */
static void server_gone_with_two_ready_connections(void **state, bool unix_socket) {
  want_pg(state);
  const char *script = getenv("OSB_PG_SCRIPT");
  if (!script || !*script) {
    print_message("skipped: OSB_PG_SCRIPT is not set\n");
    skip();
  }
  if (unix_socket) {
    /* A refused Unix socket fails inside PQconnectStart, not later. */
    const char *pgdir = getenv("PGDIR"), *pgport = getenv("PGPORT");
    if (!pgdir || !pgport) {
      print_message("skipped: PGDIR and PGPORT (of scripts/pg.sh) are not set\n");
      skip();
    }
    snprintf(unix_url, sizeof(unix_url), "postgresql://osb@/osb?host=%s&port=%s", pgdir, pgport);
  }
  tweak = unix_socket ? pool_min_two_unix : pool_min_two;
  start_with(state, 3, 0, 2000);
  osb_db_stats_t s;
  for (int i = 0; i < 400; i++) {
    run_for_ms(5);
    osb_db_stats(&s);
    if (s.size == 2 && s.connecting == 0) break;
  }
  assert_int_equal(s.size, 2);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "%s stop", script);
  pg_stopped = true;
  assert_int_equal(system(cmd), 0);   /* the loop does not run meanwhile */
  alarm(20);
  q_t q = { 0 };
  const char *p[] = { "14" };
  osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
  run_until(&q.calls, 1);
  assert_int_equal(q.err, OSB_EUNAVAIL);
  q_clear(&q);
  snprintf(cmd, sizeof(cmd), "%s restart", script);
  assert_int_equal(system(cmd), 0);
  pg_stopped = false;
  bool ok = false;
  for (int i = 0; i < 100 && !ok; i++) {
    run_for_ms(50);
    osb_db_query(&Q_PROC_GET, p, 1, q_cb, &q);
    run_until(&q.calls, 1);
    ok = q.err == 0;
    q_clear(&q);
  }
  alarm(0);
  assert_true(ok);
  stop();
}

static void pg_server_gone_with_two_ready_connections(void **state) {
  server_gone_with_two_ready_connections(state, false);
}

static void pg_server_gone_unix_socket_does_not_spin(void **state) {
  server_gone_with_two_ready_connections(state, true);
}

/* ---- pure helpers ---- */

static void uuid_is_v4_text(void **state) {
  OSB_UNUSED(state);
  char a[37], b[37];
  osb_db_uuid(a);
  osb_db_uuid(b);
  assert_int_equal(strlen(a), 36);
  assert_int_equal(a[14], '4');
  assert_true(strchr("89ab", a[19]) != NULL);
  assert_int_equal(a[8], '-');
  assert_string_not_equal(a, b);
}

/* After a failed assertion the test is abandoned mid-way: close what it left. */
static void close_any(uv_handle_t *h, void *arg) {
  OSB_UNUSED(arg);
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static int cleanup(void **state) {
  OSB_UNUSED(state);
  alarm(0);
  if (pg_stopped) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s restart", getenv("OSB_PG_SCRIPT"));
    if (system(cmd) == 0) pg_stopped = false;
  }
  if (!started) return 0;
  started = false;
  osb_db_close();
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_walk(&loop, close_any, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  osb_health_reset();
  osb_metrics_reset();
  return 0;
}

#define T(fn, b) cmocka_unit_test_prestate_setup_teardown(fn, NULL, cleanup, b)
#define BOTH(fn) T(fn, &SQLITE), T(fn, &PG)

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(uuid_is_v4_text),
    BOTH(init_migrates_and_seeds),
    BOTH(callback_runs_after_the_call_returns),
    BOTH(sql_in_parameters_is_stored_literally),
    BOTH(unique_violation_is_conflict),
    BOTH(not_null_violation_is_invalid),
    BOTH(repeated_read_is_a_cache_hit),
    BOTH(write_invalidates_cached_read),
    BOTH(concurrent_identical_misses_share_one_query),
    BOTH(zero_megabytes_disables_the_cache),
    BOTH(transaction_commits),
    BOTH(failed_query_rolls_the_transaction_back),
    BOTH(columns_are_typed_and_render_as_json),
    BOTH(binary_parameters_round_trip),
    BOTH(integer_text_binds_as_integer),
    BOTH(full_text_search_finds_seeded_knowledge),
    BOTH(many_concurrent_reads_through_a_small_pool),
    BOTH(close_answers_every_pending_query),
    T(pg_acquire_timeout_is_unavailable, &PG),
    T(pg_failed_read_does_not_fail_its_pipeline_neighbours, &PG),
    T(pg_pool_grows_to_max_and_no_further, &PG),
    T(pg_reads_of_one_iteration_share_a_connection, &PG),
    T(pg_reads_avoid_stalled_connections, &PG),
    T(pg_connections_are_recycled_after_their_lifetime, &PG),
    T(pg_busy_connections_retire_after_their_lifetime, &PG),
    T(pg_idle_connections_are_trimmed_to_the_minimum, &PG),
    T(pg_connection_killed_mid_transaction, &PG),
    T(pg_begin_behind_unsynced_reads, &PG),
    T(pg_prepare_not_lost_to_a_failing_neighbour, &PG),
    T(pg_resubmitted_reads_keep_their_order, &PG),
    T(pg_server_gone_with_two_ready_connections, &PG),
    T(pg_server_gone_unix_socket_does_not_spin, &PG),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
