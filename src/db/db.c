/* db.c: the front of the database module.
 *
 * Every query becomes an osb__op_t handed to the active backend. Backends
 * finish ops with osb__op_complete(), which only queues them; the queue is
 * drained at the end of every backend callback and by the "db" step of
 * core's before-sleep phase (OSB_STEP_DB, after the HTTP and PostgreSQL
 * steps), so a callback never runs inside the API call that started it (a
 * cache hit or a fail-fast error is answered in the same loop iteration,
 * after the caller returned, before the loop blocks). The drain records metrics, logs slow queries,
 * invalidates the cache for writes, stores cacheable results, wakes the
 * single-flight waiters and finally calls the owner's callback. */
#include "db/internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <jansson.h>
#include "obs/health.h"
#include "obs/log.h"

struct osb_db_tx {
  enum { TX_ACQUIRING, TX_OPEN, TX_ENDING } state;
  int err;                   /* first error; the transaction is aborted */
  uint64_t write_mask;       /* tables written by successful queries */
  osb_list_t pending;        /* ops not yet sent, in issue order */
  osb__op_t *running;        /* the op on the connection, or NULL */
  void *conn;                /* backend connection */
  osb_db_tx_cb begin_cb;
  void *begin_ud;
  struct tx_hook *hooks;     /* osb_db_tx_on_end, in order */
  struct tx_hook **hooks_tail;
};

typedef struct tx_hook {
  struct tx_hook *next;
  osb_db_tx_hook_fn fn;
  void *ud;
} tx_hook_t;

static void tx_run_hooks(osb_db_tx_t *tx, int err) {
  tx_hook_t *h = tx->hooks, *next;
  tx->hooks = NULL;
  for (; h; h = next) {
    next = h->next;
    h->fn(h->ud, err);
    free(h);
  }
}

void osb_db_tx_on_end(osb_db_tx_t *tx, osb_db_tx_hook_fn fn, void *ud) {
  osb_assert(tx && tx->state == TX_OPEN && fn);
  tx_hook_t *h = osb_calloc(1, sizeof(*h));
  h->fn = fn;
  h->ud = ud;
  if (!tx->hooks) tx->hooks_tail = &tx->hooks;
  *tx->hooks_tail = h;
  tx->hooks_tail = &h->next;
}

static struct {
  const osb_config_t *cfg;
  const osb__backend_t *be;
  bool closed;               /* osb_db_close was called */
  bool released;             /* ...and everything was freed */
  /* statements */
  osb__stmt_info_t **stmts;
  size_t nstmts, capstmts;
  char *tables[OSB__DB_MAX_TABLES];
  size_t ntables;
  /* completion queue */
  osb_list_t done;
  bool step, draining;       /* step: the "db" step is registered */
  int api_depth;
  osb_buf_t key;             /* scratch cache key */
  /* counters and metrics */
  uint64_t queries, errors, timeouts, reconnects;
  osb_metric_t *m_duration;
  osb_series_t *m_acquire, *m_timeouts, *m_reconnects, *m_query_timeouts;
  osb_series_t *m_err_unavail, *m_err_conflict, *m_err_other;
} D;

static const double query_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };

/* ---- statement registry ---- */

static int table_index(const char *name, size_t len) {
  for (size_t i = 0; i < D.ntables; i++)
    if (strlen(D.tables[i]) == len && memcmp(D.tables[i], name, len) == 0) return (int)i;
  osb_assert(D.ntables < OSB__DB_MAX_TABLES);
  D.tables[D.ntables] = osb_strndup(name, len);
  return (int)D.ntables++;
}

static uint64_t table_mask(const char *list) {
  uint64_t mask = 0;
  if (!list) return 0;
  const char *p = list;
  while (*p) {
    while (*p == ',' || *p == ' ') p++;
    const char *s = p;
    while (*p && *p != ',' && *p != ' ') p++;
    if (p > s) mask |= 1ULL << table_index(s, (size_t)(p - s));
  }
  return mask;
}

char *osb__pg_to_sqlite(const char *sql) {
  osb_buf_t b = OSB_BUF_INIT;
  char quote = 0;
  for (const char *p = sql; *p; p++) {
    if (quote) {
      if (*p == quote) quote = 0;
    } else if (*p == '\'' || *p == '"') {
      quote = *p;
    } else if (*p == '$' && isdigit((unsigned char)p[1])) {
      osb_buf_append(&b, "?", 1);
      continue;
    }
    osb_buf_append(&b, p, 1);
  }
  if (!b.base) osb_buf_append(&b, "", 0);
  return b.base;
}

/* Linear probing would be faster, but a statement is looked up by pointer
 * from a short list (tens of entries) with the most recent first. */
static osb__stmt_info_t *stmt_info(const osb_db_stmt_t *st) {
  for (size_t i = 0; i < D.nstmts; i++)
    if (D.stmts[i]->stmt == st) return D.stmts[i];
  osb_assert(st->name && st->pg);
  /* The same declaration compiled into two files is two pointers with one
   * name: share the entry if the text matches, refuse a real clash. */
  for (size_t i = 0; i < D.nstmts; i++) {
    if (strcmp(D.stmts[i]->name, st->name) == 0) {
      osb_assert(strcmp(D.stmts[i]->stmt->pg, st->pg) == 0);
      return D.stmts[i];
    }
  }
  osb__stmt_info_t *si = osb_calloc(1, sizeof(*si));
  si->stmt = st;
  si->id = (uint32_t)D.nstmts;
  si->name = st->name;
  si->sqlite_sql = st->sqlite ? osb_strdup(st->sqlite) : osb__pg_to_sqlite(st->pg);
  si->read_mask = table_mask(st->reads);
  si->write_mask = table_mask(st->writes);
  si->duration = osb_metric_series1(D.m_duration, st->name);
  if (D.nstmts == D.capstmts) {
    D.capstmts = D.capstmts ? D.capstmts * 2 : 32;
    D.stmts = osb_realloc(D.stmts, D.capstmts * sizeof(*D.stmts));
  }
  D.stmts[D.nstmts++] = si;
  return si;
}

void osb_db_register(const osb_db_stmt_t *const *stmts, size_t n) {
  if (D.released || !D.step) return;
  for (size_t i = 0; i < n; i++) stmt_info(stmts[i]);
}

size_t osb__stmt_count(void) { return D.nstmts; }
osb__stmt_info_t *osb__stmt_at(size_t i) { return i < D.nstmts ? D.stmts[i] : NULL; }

/* ---- operations ---- */

static osb__op_t *op_new(osb__op_kind_t kind, osb__stmt_info_t *si, const osb_db_param_t *p, int n,
                         osb_db_cb cb, void *ud) {
  size_t extra = (size_t)n * sizeof(osb_db_param_t);
  for (int i = 0; i < n; i++)
    if (p[i].kind != OSB_DB_P_NULL) extra += p[i].len + 1;
  osb__op_t *op = osb_calloc(1, sizeof(*op) + extra);
  op->kind = kind;
  op->si = si;
  op->nparams = n;
  op->cb = cb;
  op->ud = ud;
  op->t_submit = uv_hrtime();
  op->deadline = osb_now_ms() + (uint64_t)(D.cfg ? D.cfg->db_acquire_timeout_ms : 2000);
  if (n) {
    op->params = (osb_db_param_t *)(op + 1);
    char *data = (char *)(op->params + n);
    for (int i = 0; i < n; i++) {
      op->params[i].kind = p[i].kind;
      op->params[i].len = p[i].kind == OSB_DB_P_NULL ? 0 : p[i].len;
      op->params[i].data = NULL;
      if (p[i].kind == OSB_DB_P_NULL) continue;
      if (p[i].len) memcpy(data, p[i].data, p[i].len);
      data[p[i].len] = 0;
      op->params[i].data = data;
      data += p[i].len + 1;
    }
  }
  osb_list_init(&op->link);
  return op;
}

/* The "db" step: the completion queue, before the loop blocks. Callbacks
 * may queue responses or new queries, so a drain that ran some asks core
 * for another round. */
static bool db_step(void *ud) {
  OSB_UNUSED(ud);
  if (osb_list_empty(&D.done) || D.draining || D.api_depth > 0) return false;
  osb__drain();
  return true;
}

static void finish(osb__op_t *op);

void osb__op_complete(osb__op_t *op, int err, osb_db_result_t *res) {
  op->err = err;
  op->res = res;
  osb_assert(err != 0 || res != NULL);
  if (D.released) {
    /* After shutdown there is no loop machinery left: answer at once. */
    finish(op);
    return;
  }
  osb_list_insert_tail(&D.done, &op->link);
  osb_core_wake();
}

void osb__op_started(osb__op_t *op) {
  op->t_start = uv_hrtime();
  if (D.m_acquire) osb_series_observe(D.m_acquire, (double)(op->t_start - op->t_submit) / 1e9);
}

bool osb__op_is_write(const osb__op_t *op) { return op->si && op->si->write_mask != 0; }

void osb__count_timeout(void) {
  D.timeouts++;
  if (D.m_timeouts) osb_series_inc(D.m_timeouts, 1);
}

void osb__count_query_timeout(void) {
  if (D.m_query_timeouts) osb_series_inc(D.m_query_timeouts, 1);
}

void osb__count_reconnect(void) {
  D.reconnects++;
  if (D.m_reconnects) osb_series_inc(D.m_reconnects, 1);
}

void osb__log_query_error(const osb__op_t *op, int err, const char *code, const char *msg) {
  int level = err == OSB_ECONFLICT || err == OSB_ENOTFOUND || err == OSB_EINVAL ? OSB_LOG_DEBUG : OSB_LOG_WARN;
  if (!osb_log_enabled(level)) return;
  json_t *f = json_object();
  json_object_set_new(f, "statement", json_string(op->si ? op->si->name :
                       op->kind == OSB__OP_BEGIN ? "BEGIN" : op->kind == OSB__OP_COMMIT ? "COMMIT" : "ROLLBACK"));
  if (code) json_object_set_new(f, "code", json_string(code));
  if (msg) json_object_set_new(f, "error", json_string(msg));
  osb_log_fields(level, "db", "query failed", f);
}

static void record(osb__op_t *op) {
  if (op->kind == OSB__OP_HIT) return;
  D.queries++;
  if (op->err) {
    D.errors++;
    osb_series_t *s = op->err == OSB_EUNAVAIL ? D.m_err_unavail
                    : op->err == OSB_ECONFLICT ? D.m_err_conflict : D.m_err_other;
    if (s) osb_series_inc(s, 1);
  }
  if (!op->t_start) return;   /* never reached a connection */
  double secs = (double)(uv_hrtime() - op->t_start) / 1e9;
  if (op->si && op->si->duration) osb_series_observe(op->si->duration, secs);
  if (D.cfg && secs * 1000.0 >= (double)D.cfg->slow_query_ms && osb_log_enabled(OSB_LOG_WARN)) {
    json_t *f = json_object();
    json_object_set_new(f, "statement", json_string(op->si ? op->si->name : "transaction control"));
    json_object_set_new(f, "duration_ms", json_real(secs * 1000.0));
    json_object_set_new(f, "wait_ms", json_real((double)(op->t_start - op->t_submit) / 1e6));
    osb_log_fields(OSB_LOG_WARN, "db", "slow query", f);
  }
}

static void tx_after_op(osb__op_t *op);
static void maybe_release(void);

static void finish(osb__op_t *op) {
  record(op);
  if (op->tx) {
    tx_after_op(op);
    return;
  }
  if (op->err == 0 && op->kind == OSB__OP_QUERY && op->si->write_mask) osb__cache_bump(op->si->write_mask);
  else if (op->err == OSB_EUNAVAIL && osb__op_is_write(op)) osb__cache_bump(op->si->write_mask); /* outcome unknown */
  osb__flight_t *f = op->flight;
  if (op->cb) op->cb(op->ud, op->err, op->err == 0 ? op->res : NULL);
  if (f) osb__flight_finish(f, op->err, op->res);
  if (op->res) osb_db_result_unref(op->res);
  free(op);
}

void osb__drain(void) {
  if (D.draining || D.api_depth > 0) return;
  D.draining = true;
  while (!osb_list_empty(&D.done)) {
    osb__op_t *op = osb_container_of(D.done.next, osb__op_t, link);
    osb_list_remove(&op->link);
    finish(op);
  }
  D.draining = false;
  maybe_release();
}

/* ---- queries ---- */

static void submit(osb__op_t *op) {
  if (D.closed || !D.be) osb__op_complete(op, OSB_EUNAVAIL, NULL);
  else D.be->submit(op);
}

void osb_db_queryv(const osb_db_stmt_t *stmt, const osb_db_param_t *params, int nparams,
                   osb_db_cb cb, void *ud) {
  osb_assert(nparams == stmt->nparams && nparams <= OSB__DB_MAX_PARAMS);
  if (D.released || !D.step) {
    cb(ud, OSB_EUNAVAIL, NULL);   /* after shutdown (see db.h) */
    return;
  }
  D.api_depth++;
  osb__stmt_info_t *si = stmt_info(stmt);
  for (int i = 0; i < nparams; i++) {
    if (params[i].kind == OSB_DB_P_TEXT && params[i].len && memchr(params[i].data, 0, params[i].len)) {
      osb__op_t *bad = op_new(OSB__OP_QUERY, si, NULL, 0, cb, ud);
      osb__op_complete(bad, OSB_EINVAL, NULL);
      goto out;
    }
  }
  if (stmt->cacheable && osb__cache_enabled() && !D.closed) {
    uint64_t gen = osb__cache_gen(si->read_mask);
    osb__cache_key(&D.key, si, params, nparams);
    osb_db_result_t *hit = osb__cache_get(&D.key, gen);
    if (hit) {
      osb__op_t *op = op_new(OSB__OP_HIT, si, NULL, 0, cb, ud);
      osb__op_complete(op, 0, hit);
      goto out;
    }
    osb__flight_t *f = osb__flight_find(&D.key, gen);
    if (f) {
      osb__flight_join(f, cb, ud);
      goto out;
    }
    osb__op_t *op = op_new(OSB__OP_QUERY, si, params, nparams, cb, ud);
    op->flight = osb__flight_new(&D.key, gen);
    submit(op);
    goto out;
  }
  submit(op_new(OSB__OP_QUERY, si, params, nparams, cb, ud));
out:
  D.api_depth--;
}

static int text_params(const char *const *params, int n, osb_db_param_t *out) {
  for (int i = 0; i < n; i++) {
    if (params[i]) {
      out[i].kind = OSB_DB_P_TEXT;
      out[i].data = params[i];
      out[i].len = strlen(params[i]);
    } else {
      out[i].kind = OSB_DB_P_NULL;
      out[i].data = NULL;
      out[i].len = 0;
    }
  }
  return n;
}

void osb_db_query(const osb_db_stmt_t *stmt, const char *const *params, int nparams,
                  osb_db_cb cb, void *ud) {
  osb_assert(nparams >= 0 && nparams <= OSB__DB_MAX_PARAMS);
  osb_db_param_t p[OSB__DB_MAX_PARAMS];
  text_params(params, nparams, p);
  osb_db_queryv(stmt, p, nparams, cb, ud);
}

/* ---- transactions ---- */

void *osb__tx_conn(osb_db_tx_t *tx) { return tx->conn; }
void osb__tx_set_conn(osb_db_tx_t *tx, void *conn) { tx->conn = conn; }

static void tx_kick(osb_db_tx_t *tx) {
  if (tx->running || osb_list_empty(&tx->pending)) return;
  osb__op_t *op = osb_container_of(tx->pending.next, osb__op_t, link);
  osb_list_remove(&op->link);
  if (op->kind == OSB__OP_QUERY && tx->err) {
    osb__op_complete(op, tx->err, NULL);
    return;
  }
  tx->running = op;
  if (D.closed) {   /* the backend already dropped the connection */
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
    return;
  }
  if (op->kind == OSB__OP_QUERY) {
    D.be->tx_op(op);
  } else {
    if (tx->err && op->kind == OSB__OP_COMMIT) op->kind = OSB__OP_ROLLBACK;
    D.be->tx_end(op);
  }
}

static void tx_after_op(osb__op_t *op) {
  osb_db_tx_t *tx = op->tx;
  switch (op->kind) {
    case OSB__OP_BEGIN:
      if (op->err) {
        tx->begin_cb(tx->begin_ud, op->err, NULL);
        free(tx);
      } else {
        tx->state = TX_OPEN;
        tx->begin_cb(tx->begin_ud, 0, tx);
      }
      break;
    case OSB__OP_QUERY:
      if (tx->running == op) tx->running = NULL;
      if (op->err && !tx->err) tx->err = op->err;
      if (op->err == 0) tx->write_mask |= op->si->write_mask;
      if (op->cb) op->cb(op->ud, op->err, op->err == 0 ? op->res : NULL);
      tx_kick(tx);
      break;
    case OSB__OP_COMMIT:
    case OSB__OP_ROLLBACK: {
      int err = tx->err ? tx->err : op->err;
      if (op->kind == OSB__OP_COMMIT && op->err == 0) osb__cache_bump(tx->write_mask);
      else if (op->kind == OSB__OP_COMMIT && op->err == OSB_EUNAVAIL) osb__cache_bump(tx->write_mask);
      bool committed = op->kind == OSB__OP_COMMIT && err == 0;
      tx_run_hooks(tx, committed ? 0 : err ? err : UV_ECANCELED);
      if (op->cb) op->cb(op->ud, err, err ? NULL : op->res);
      free(tx);
      break;
    }
    case OSB__OP_HIT:
      osb_assert(!"cache hit inside a transaction");
  }
  if (op->res) osb_db_result_unref(op->res);
  free(op);
}

void osb_db_tx_begin(osb_db_tx_cb cb, void *ud) {
  if (D.released || !D.step) {
    cb(ud, OSB_EUNAVAIL, NULL);
    return;
  }
  D.api_depth++;
  osb_db_tx_t *tx = osb_calloc(1, sizeof(*tx));
  tx->state = TX_ACQUIRING;
  osb_list_init(&tx->pending);
  tx->begin_cb = cb;
  tx->begin_ud = ud;
  osb__op_t *op = op_new(OSB__OP_BEGIN, NULL, NULL, 0, NULL, NULL);
  op->tx = tx;
  if (D.closed || !D.be) osb__op_complete(op, OSB_EUNAVAIL, NULL);
  else D.be->tx_begin(op);
  D.api_depth--;
}

void osb_db_tx_queryv(osb_db_tx_t *tx, const osb_db_stmt_t *stmt, const osb_db_param_t *params,
                      int nparams, osb_db_cb cb, void *ud) {
  osb_assert(tx && tx->state == TX_OPEN);
  osb_assert(nparams == stmt->nparams && nparams <= OSB__DB_MAX_PARAMS);
  D.api_depth++;
  osb__stmt_info_t *si = stmt_info(stmt);
  osb__op_t *op = op_new(OSB__OP_QUERY, si, params, nparams, cb, ud);
  op->tx = tx;
  for (int i = 0; i < nparams; i++)
    if (params[i].kind == OSB_DB_P_TEXT && params[i].len && memchr(params[i].data, 0, params[i].len) && !tx->err)
      tx->err = OSB_EINVAL;
  osb_list_insert_tail(&tx->pending, &op->link);
  tx_kick(tx);
  D.api_depth--;
}

void osb_db_tx_query(osb_db_tx_t *tx, const osb_db_stmt_t *stmt, const char *const *params,
                     int nparams, osb_db_cb cb, void *ud) {
  osb_assert(nparams >= 0 && nparams <= OSB__DB_MAX_PARAMS);
  osb_db_param_t p[OSB__DB_MAX_PARAMS];
  text_params(params, nparams, p);
  osb_db_tx_queryv(tx, stmt, p, nparams, cb, ud);
}

static void tx_end(osb_db_tx_t *tx, osb__op_kind_t kind, osb_db_cb cb, void *ud) {
  osb_assert(tx && tx->state == TX_OPEN);
  D.api_depth++;
  tx->state = TX_ENDING;
  osb__op_t *op = op_new(kind, NULL, NULL, 0, cb, ud);
  op->tx = tx;
  osb_list_insert_tail(&tx->pending, &op->link);
  tx_kick(tx);
  D.api_depth--;
}

void osb_db_tx_commit(osb_db_tx_t *tx, osb_db_cb cb, void *ud) { tx_end(tx, OSB__OP_COMMIT, cb, ud); }
void osb_db_tx_rollback(osb_db_tx_t *tx, osb_db_cb cb, void *ud) { tx_end(tx, OSB__OP_ROLLBACK, cb, ud); }

/* ---- health, metrics, stats ---- */

static osb_health_status_t health(void *ud, char *reason, size_t len) {
  OSB_UNUSED(ud);
  if (!D.be || D.closed) {
    snprintf(reason, len, "closed");
    return OSB_HEALTH_FAIL;
  }
  return D.be->up(reason, len) ? OSB_HEALTH_PASS : OSB_HEALTH_FAIL;
}

/* The query cache is optional: off is a warning with its reason, not a failure. */
static osb_health_status_t cache_health(void *ud, char *reason, size_t len) {
  OSB_UNUSED(ud);
  if (!osb__cache_enabled()) {
    snprintf(reason, len, "disabled: QUERY_CACHE_MB=0");
    return OSB_HEALTH_WARN;
  }
  osb_db_stats_t s;
  osb_db_stats(&s);
  snprintf(reason, len, "%zu entries, %zu of %d MiB, ttl %d ms", s.cache_entries, s.cache_bytes,
           D.cfg->query_cache_mb, D.cfg->query_cache_ttl_ms);
  return OSB_HEALTH_PASS;
}

void osb_db_stats(osb_db_stats_t *out) {
  memset(out, 0, sizeof(*out));
  if (D.be) D.be->stats(out);
  out->queries = D.queries;
  out->errors = D.errors;
  out->timeouts = D.timeouts;
  out->reconnects = D.reconnects;
  osb__cache_stats(out);
}

#define STAT_FN(field)                                   \
  static double m_##field(void *ud) {                    \
    OSB_UNUSED(ud);                                      \
    osb_db_stats_t s;                                    \
    osb_db_stats(&s);                                    \
    return (double)s.field;                              \
  }
STAT_FN(size)
STAT_FN(idle)
STAT_FN(active)
STAT_FN(waiting)
STAT_FN(max)
STAT_FN(connecting)

static void metrics_init(void) {
  D.m_duration = osb_metric_histogram("osb_db_query_seconds", "Query execution time by statement",
                                      "statement", query_bounds, OSB_ARRAY_LEN(query_bounds));
  D.m_acquire = osb_metric_series0(osb_metric_histogram("osb_db_acquire_seconds",
                                   "Wait for a database connection", NULL, query_bounds, OSB_ARRAY_LEN(query_bounds)));
  D.m_timeouts = osb_metric_series0(osb_metric_counter("osb_db_acquire_timeouts_total",
                                    "Queries that found no connection within DB_ACQUIRE_TIMEOUT_MS", NULL));
  D.m_query_timeouts = osb_metric_series0(osb_metric_counter("osb_db_query_timeouts_total",
                                          "Connections retired because PostgreSQL did not answer within DB_QUERY_TIMEOUT_MS", NULL));
  D.m_reconnects = osb_metric_series0(osb_metric_counter("osb_db_reconnects_total",
                                      "Connections replaced after a failure", NULL));
  osb_metric_t *errs = osb_metric_counter("osb_db_errors_total", "Failed queries by kind", "kind");
  D.m_err_unavail = osb_metric_series1(errs, "unavailable");
  D.m_err_conflict = osb_metric_series1(errs, "conflict");
  D.m_err_other = osb_metric_series1(errs, "error");
  osb_metric_gauge_fn("osb_db_pool_size", "Open database connections", m_size, NULL);
  osb_metric_gauge_fn("osb_db_pool_idle", "Idle database connections", m_idle, NULL);
  osb_metric_gauge_fn("osb_db_pool_active", "Database connections with queries in flight", m_active, NULL);
  osb_metric_gauge_fn("osb_db_pool_waiting", "Queries waiting for a connection", m_waiting, NULL);
  osb_metric_gauge_fn("osb_db_pool_max", "Pool bound DB_POOL_MAX", m_max, NULL);
  osb_metric_gauge_fn("osb_db_pool_connecting", "Connections being opened", m_connecting, NULL);
}

/* ---- lifecycle ---- */

int osb_db_init(const osb_config_t *cfg) {
  osb_assert(!D.be && !D.step);
  memset(&D, 0, sizeof(D));
  D.cfg = cfg;
  osb_list_init(&D.done);
  metrics_init();
  osb__cache_init((size_t)cfg->query_cache_mb * 1024 * 1024, (uint64_t)cfg->query_cache_ttl_ms);
  osb_core_step_add("db", OSB_STEP_DB, db_step, NULL);
  D.step = true;
  int rc = cfg->database_url && *cfg->database_url ? osb__pg_start(cfg, &D.be)
                                                   : osb__sqlite_start(cfg, &D.be);
  if (rc < 0) {
    D.be = NULL;
    D.closed = true;
    osb__db_release();
    return rc;
  }
  /* The blocking start-up (migrations, seed) left the loop's cached clock
   * behind; deadlines computed from it would already have passed. */
  uv_update_time(osb_loop());
  osb_health_register("database", health, NULL, true);
  osb_health_register("cache", cache_health, NULL, false);
  return 0;
}

void osb_db_close(void) {
  if (D.closed) return;
  D.closed = true;
  if (D.be) D.be->close();
  osb__drain();
  maybe_release();
  /* Ops still running on worker threads (SQLite) complete later, from the
   * backend's after-work callbacks; the release follows the last one. */
}

static void maybe_release(void) {
  if (!D.closed || D.released || D.draining || D.api_depth || !osb_list_empty(&D.done)) return;
  if (D.be && !D.be->idle()) return;
  osb__db_release();
}

void osb__db_release(void) {
  D.released = true;
  if (D.step) {
    D.step = false;
    osb_core_step_remove("db");
  }
  for (size_t i = 0; i < D.nstmts; i++) {
    free(D.stmts[i]->sqlite_sql);
    free(D.stmts[i]);
  }
  free(D.stmts);
  D.stmts = NULL;
  D.nstmts = D.capstmts = 0;
  for (size_t i = 0; i < D.ntables; i++) free(D.tables[i]);
  D.ntables = 0;
  osb_buf_free(&D.key);
  osb__cache_dispose();
  D.be = NULL;
}

const char *osb_db_backend(void) { return D.be ? D.be->name : NULL; }

void osb_db_uuid(char out[37]) {
  unsigned char b[16];
  osb_random_bytes(b, sizeof(b));
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  char hex[33];
  osb_hex(hex, b, 16);
  snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

char *osb_db_fts_terms(const char *text) {
  bool pg = D.be && strcmp(D.be->name, "postgresql") == 0;
  osb_buf_t b = OSB_BUF_INIT;
  int words = 0;
  const unsigned char *p = (const unsigned char *)(text ? text : "");
  while (*p && words < 16) {
    while (*p && !isalnum(*p) && *p < 0x80) p++;
    const unsigned char *s = p;
    while (*p && (isalnum(*p) || *p >= 0x80)) p++;
    if (p == s) continue;
    /* Non-ASCII letters are kept only for SQLite's unicode61 tokenizer;
     * PostgreSQL gets ASCII words (to_tsquery syntax stays trivially safe). */
    osb_buf_t w = OSB_BUF_INIT;
    for (const unsigned char *q = s; q < p; q++)
      if (isalnum(*q) || (!pg && *q >= 0x80)) osb_buf_append(&w, q, 1);
    if (w.len) {
      if (words) osb_buf_puts(&b, pg ? " | " : " OR ");
      if (!pg) osb_buf_puts(&b, "\"");
      for (size_t i = 0; i < w.len; i++) w.base[i] = (char)tolower((unsigned char)w.base[i]);
      osb_buf_append(&b, w.base, w.len);
      if (!pg) osb_buf_puts(&b, "\"");
      words++;
    }
    osb_buf_free(&w);
  }
  if (!words) {
    osb_buf_free(&b);
    return NULL;
  }
  return b.base;
}
