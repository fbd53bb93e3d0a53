/* sqlite.c: the embedded SQLite backend, on the libuv threadpool.
 *
 * One file (SQLITE_PATH, WAL, synchronous=NORMAL, busy_timeout) opened by
 * NREADERS read-only connections and one writer. Every statement runs in
 * uv_queue_work: the work callback touches only its connection, its op's
 * copied parameters and a result builder (plain malloc), never a loop
 * object; the after-work callback, on the loop thread, hands the result to
 * the front and returns the connection. A connection is used by one work
 * item at a time, so connections (and their prepared-statement caches) need
 * no locks.
 *
 * Reads (statements that declare no `writes`) go to any idle reader; the
 * readers open the file read-only, so an undeclared write fails loudly.
 * Writes and transactions queue FIFO for the single writer (a queue on the
 * loop thread, not a lock): a transaction holds it from BEGIN IMMEDIATE to
 * COMMIT/ROLLBACK, and its reads run there too, seeing its own writes.
 * Waiting ops fail with OSB_EUNAVAIL after DB_ACQUIRE_TIMEOUT_MS.
 *
 * Parameter binding: text that is a canonical integer is bound as INTEGER
 * (so LIMIT ?2 and integer comparisons work as on PostgreSQL); column
 * affinity turns it back into text where the column is TEXT. */
#include "db/internal.h"

#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <jansson.h>
#include "obs/log.h"

#define NREADERS 3
#define BUSY_TIMEOUT_MS 5000

typedef struct sq_conn {
  osb_list_t link;           /* S.idle_readers while idle */
  sqlite3 *db;
  sqlite3_stmt **stmts;      /* by statement id; worker side only */
  size_t nstmts;
  bool writer;
  bool busy;
} sq_conn_t;

typedef struct sq_work {
  uv_work_t req;
  osb_list_t link;           /* S.works */
  sq_conn_t *conn;
  osb__op_t *op;
  int err;
  osb_db_result_t *res;
  char code[24];
  char msg[200];
} sq_work_t;

static struct {
  const osb_config_t *cfg;
  bool open, closing;
  sq_conn_t *writer;
  sq_conn_t *readers[NREADERS];
  int nreaders;
  osb_list_t idle_readers;
  int nidle;
  osb_list_t works;          /* queued or running */
  int busy;
  osb_list_t read_waiters, write_waiters;
  int nwaiting;
  bool writer_busy;
  osb_db_tx_t *writer_tx;    /* the transaction holding the writer */
  uv_timer_t acquire_timer;
} S;

static void pump(void);
static void on_acquire_expired(uv_timer_t *t);

/* ---- connections ---- */

static void conn_free(sq_conn_t *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nstmts; i++)
    if (c->stmts[i]) sqlite3_finalize(c->stmts[i]);
  free(c->stmts);
  sqlite3_close_v2(c->db);
  free(c);
}

static int exec_simple(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    osb_log(OSB_LOG_ERROR, "db", "sqlite: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
  }
  return rc;
}

static sq_conn_t *conn_open(const char *path, bool writer) {
  sq_conn_t *c = osb_calloc(1, sizeof(*c));
  c->writer = writer;
  int flags = SQLITE_OPEN_NOMUTEX | (writer ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READONLY);
  int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
  if (rc != SQLITE_OK) {
    osb_log(OSB_LOG_ERROR, "db", "cannot open %s: %s", path, c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    conn_free(c);
    return NULL;
  }
  sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
  sqlite3_extended_result_codes(c->db, 1);
  if (writer) {
    if (exec_simple(c->db, "PRAGMA journal_mode=WAL") != SQLITE_OK ||
        exec_simple(c->db, "PRAGMA synchronous=NORMAL") != SQLITE_OK ||
        exec_simple(c->db, "PRAGMA foreign_keys=ON") != SQLITE_OK) {
      conn_free(c);
      return NULL;
    }
  }
  return c;
}

/* mkdir -p of the directory part of path. */
static int make_parent(const char *path) {
  char *dir = osb_strdup(path);
  char *slash = strrchr(dir, '/');
  int rc = 0;
  if (slash && slash != dir) {
    *slash = 0;
    for (char *p = dir + 1; ; p++) {
      if (*p == '/' || *p == 0) {
        char c = *p;
        *p = 0;
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
          rc = -errno;
          osb_log(OSB_LOG_ERROR, "db", "cannot create directory %s: %s", dir, strerror(errno));
          break;
        }
        *p = c;
        if (!c) break;
      }
    }
  }
  free(dir);
  return rc;
}

/* ---- the work (worker thread) ---- */

static osb_db_type_t decl_type(const char *decl) {
  if (!decl) return OSB_DB_NULL;
  char up[64];
  size_t n = 0;
  for (; decl[n] && n < sizeof(up) - 1; n++) up[n] = (char)toupper((unsigned char)decl[n]);
  up[n] = 0;
  if (strstr(up, "BOOL")) return OSB_DB_BOOL;
  if (strstr(up, "JSON")) return OSB_DB_JSON;
  if (strstr(up, "INT")) return OSB_DB_INT;
  if (strstr(up, "CHAR") || strstr(up, "CLOB") || strstr(up, "TEXT")) return OSB_DB_TEXT;
  if (strstr(up, "BLOB")) return OSB_DB_BLOB;
  if (strstr(up, "REAL") || strstr(up, "FLOA") || strstr(up, "DOUB")) return OSB_DB_FLOAT;
  return OSB_DB_NULL;
}

static bool canonical_int(const char *s, size_t n, int64_t *out) {
  if (n == 0 || n > 19) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == n || (s[i] == '0' && n > i + 1) || (s[0] == '-' && s[1] == '0')) return false;
  for (size_t k = i; k < n; k++)
    if (s[k] < '0' || s[k] > '9') return false;
  errno = 0;
  long long v = strtoll(s, NULL, 10);
  if (errno) return false;
  *out = v;
  return true;
}

static void set_error(sq_work_t *w, sqlite3 *db, int rc) {
  int prim = rc & 0xff;
  switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
      w->err = OSB_ECONFLICT;
      break;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
      w->err = OSB_ENOTFOUND;
      break;
    default:
      if (prim == SQLITE_CONSTRAINT || prim == SQLITE_TOOBIG || prim == SQLITE_MISMATCH) w->err = OSB_EINVAL;
      else if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) w->err = OSB_EUNAVAIL;
      else w->err = OSB_EDB;
  }
  snprintf(w->code, sizeof(w->code), "sqlite %d", rc);
  snprintf(w->msg, sizeof(w->msg), "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

static void run_query(sq_work_t *w) {
  sq_conn_t *c = w->conn;
  osb__op_t *op = w->op;
  osb__stmt_info_t *si = op->si;
  if (si->id >= c->nstmts) {
    size_t n = si->id + 16;
    c->stmts = osb_realloc(c->stmts, n * sizeof(*c->stmts));
    memset(c->stmts + c->nstmts, 0, (n - c->nstmts) * sizeof(*c->stmts));
    c->nstmts = n;
  }
  sqlite3_stmt *st = c->stmts[si->id];
  if (!st) {
    int rc = sqlite3_prepare_v3(c->db, si->sqlite_sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (rc != SQLITE_OK) {
      set_error(w, c->db, rc);
      w->err = OSB_EDB;
      return;
    }
    c->stmts[si->id] = st;
  }
  int nbind = sqlite3_bind_parameter_count(st);
  for (int i = 0; i < op->nparams && i < nbind; i++) {
    const osb_db_param_t *p = &op->params[i];
    int64_t iv;
    if (p->kind == OSB_DB_P_NULL) sqlite3_bind_null(st, i + 1);
    else if (p->kind == OSB_DB_P_BLOB) sqlite3_bind_blob64(st, i + 1, p->data ? p->data : "", p->len, SQLITE_STATIC);
    else if (canonical_int(p->data, p->len, &iv)) sqlite3_bind_int64(st, i + 1, iv);
    else sqlite3_bind_text64(st, i + 1, p->data, p->len, SQLITE_STATIC, SQLITE_UTF8);
  }
  int ncols = sqlite3_column_count(st);
  osb__rb_t b;
  osb__rb_init(&b, (size_t)ncols);
  for (int i = 0; i < ncols; i++) osb__rb_col(&b, (size_t)i, sqlite3_column_name(st, i), decl_type(sqlite3_column_decltype(st, i)));
  int rc;
  char num[40];
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    for (int i = 0; i < ncols; i++) {
      int t = sqlite3_column_type(st, i);
      if (t != SQLITE_NULL && osb__rb_type(&b, (size_t)i) == OSB_DB_NULL)
        osb__rb_set_type(&b, (size_t)i, t == SQLITE_INTEGER ? OSB_DB_INT : t == SQLITE_FLOAT ? OSB_DB_FLOAT
                                        : t == SQLITE_BLOB ? OSB_DB_BLOB : OSB_DB_TEXT);
      switch (t) {
        case SQLITE_NULL:
          osb__rb_cell(&b, NULL, 0);
          break;
        case SQLITE_INTEGER: {
          int n = snprintf(num, sizeof(num), "%lld", (long long)sqlite3_column_int64(st, i));
          osb__rb_cell(&b, num, (size_t)n);
          break;
        }
        case SQLITE_FLOAT:
          osb__fmt_double(num, sizeof(num), sqlite3_column_double(st, i));
          osb__rb_cell(&b, num, strlen(num));
          break;
        case SQLITE_BLOB: {
          const void *p = sqlite3_column_blob(st, i);
          osb__rb_cell(&b, p ? p : "", (size_t)sqlite3_column_bytes(st, i));
          break;
        }
        default: {
          const unsigned char *p = sqlite3_column_text(st, i);
          osb__rb_cell(&b, p ? (const char *)p : "", (size_t)sqlite3_column_bytes(st, i));
          break;
        }
      }
    }
  }
  if (rc != SQLITE_DONE) {
    set_error(w, c->db, sqlite3_extended_errcode(c->db));
    osb__rb_discard(&b);
  } else {
    w->res = osb__rb_finish(&b, sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes64(c->db));
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static void work_cb(uv_work_t *req) {
  sq_work_t *w = osb_container_of(req, sq_work_t, req);
  sqlite3 *db = w->conn->db;
  int rc = SQLITE_OK;
  switch (w->op->kind) {
    case OSB__OP_QUERY:
      run_query(w);
      return;
    case OSB__OP_BEGIN:
      rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
      break;
    case OSB__OP_COMMIT:
      rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
      break;
    case OSB__OP_ROLLBACK:
      rc = sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
      break;
    case OSB__OP_HIT:
      break;
  }
  if (rc != SQLITE_OK) {
    set_error(w, db, sqlite3_extended_errcode(db));
    /* A failed COMMIT may leave the transaction open: end it here. */
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  } else {
    w->res = osb__result_empty(0);
  }
}

/* ---- dispatch (loop thread) ---- */

static void after_work_cb(uv_work_t *req, int status);

static void run(sq_conn_t *c, osb__op_t *op) {
  sq_work_t *w = osb_calloc(1, sizeof(*w));
  w->conn = c;
  w->op = op;
  c->busy = true;
  if (c->writer) S.writer_busy = true;
  S.busy++;
  osb_list_insert_tail(&S.works, &w->link);
  osb__op_started(op);
  int rc = uv_queue_work(osb_loop(), &w->req, work_cb, after_work_cb);
  osb_assert(rc == 0);
}

static void after_work_cb(uv_work_t *req, int status) {
  sq_work_t *w = osb_container_of(req, sq_work_t, req);
  sq_conn_t *c = w->conn;
  osb__op_t *op = w->op;
  osb_list_remove(&w->link);
  S.busy--;
  c->busy = false;
  if (status == UV_ECANCELED) {   /* cancelled at shutdown before it ran */
    osb__result_free(w->res);
    w->res = NULL;
    w->err = OSB_EUNAVAIL;
  }
  if (w->err && status != UV_ECANCELED) osb__log_query_error(op, w->err, w->code, w->msg);
  if (c->writer) {
    S.writer_busy = false;
    bool release = op->kind == OSB__OP_COMMIT || op->kind == OSB__OP_ROLLBACK ||
                   (op->kind == OSB__OP_BEGIN && w->err);
    if (release && S.writer_tx) {
      osb__tx_set_conn(S.writer_tx, NULL);
      S.writer_tx = NULL;
    }
    if (S.closing) {   /* closing the connection rolls back an open transaction */
      if (S.writer_tx) osb__tx_set_conn(S.writer_tx, NULL);
      S.writer_tx = NULL;
      conn_free(c);
      S.writer = NULL;
    }
  } else if (S.closing) {
    for (int i = 0; i < S.nreaders; i++)
      if (S.readers[i] == c) S.readers[i] = NULL;
    conn_free(c);
  } else {
    osb_list_insert_tail(&S.idle_readers, &c->link);
    S.nidle++;
  }
  osb__op_complete(op, w->err, w->err ? NULL : w->res);
  if (w->err) osb__result_free(w->res);
  free(w);
  pump();
  osb__drain();
}

static void arm_acquire_timer(void) {
  if (!S.open) return;
  uint64_t min = UINT64_MAX;
  osb_list_t *lists[2] = { &S.read_waiters, &S.write_waiters };
  for (int l = 0; l < 2; l++) {
    osb_list_t *pos, *tmp;
    osb_list_foreach_safe(pos, tmp, lists[l]) {
      osb__op_t *op = osb_container_of(pos, osb__op_t, link);
      if (op->deadline < min) min = op->deadline;
    }
  }
  if (min == UINT64_MAX) {
    uv_timer_stop(&S.acquire_timer);
    return;
  }
  uint64_t now = osb_now_ms();
  uv_timer_start(&S.acquire_timer, on_acquire_expired, min > now ? min - now : 0, 0);
}

static void on_acquire_expired(uv_timer_t *t) {
  OSB_UNUSED(t);
  uint64_t now = osb_now_ms();
  osb_list_t *lists[2] = { &S.read_waiters, &S.write_waiters };
  for (int l = 0; l < 2; l++) {
    osb_list_t *pos, *tmp;
    osb_list_foreach_safe(pos, tmp, lists[l]) {
      osb__op_t *op = osb_container_of(pos, osb__op_t, link);
      if (op->deadline > now) continue;
      osb_list_remove(&op->link);
      S.nwaiting--;
      osb__count_timeout();
      osb__op_complete(op, OSB_EUNAVAIL, NULL);
    }
  }
  arm_acquire_timer();
  osb__drain();
}

static void pump(void) {
  if (!S.open || S.closing) return;
  while (!osb_list_empty(&S.read_waiters) && !osb_list_empty(&S.idle_readers)) {
    osb__op_t *op = osb_container_of(S.read_waiters.next, osb__op_t, link);
    osb_list_remove(&op->link);
    S.nwaiting--;
    sq_conn_t *c = osb_container_of(S.idle_readers.next, sq_conn_t, link);
    osb_list_remove(&c->link);
    S.nidle--;
    run(c, op);
  }
  if (!S.writer_busy && !S.writer_tx && !osb_list_empty(&S.write_waiters)) {
    osb__op_t *op = osb_container_of(S.write_waiters.next, osb__op_t, link);
    osb_list_remove(&op->link);
    S.nwaiting--;
    if (op->kind == OSB__OP_BEGIN) {
      S.writer_tx = op->tx;
      osb__tx_set_conn(op->tx, S.writer);
    }
    run(S.writer, op);
  }
  if (S.nwaiting == 0) uv_timer_stop(&S.acquire_timer);
}

static void sq_submit(osb__op_t *op) {
  if (!S.open || S.closing) {
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
    return;
  }
  bool write = op->kind == OSB__OP_BEGIN || osb__op_is_write(op);
  osb_list_insert_tail(write ? &S.write_waiters : &S.read_waiters, &op->link);
  S.nwaiting++;
  pump();
  if (S.nwaiting) arm_acquire_timer();
}

static void sq_tx_op(osb__op_t *op) {
  sq_conn_t *c = osb__tx_conn(op->tx);
  if (!c || S.closing) {
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
    return;
  }
  osb_assert(c == S.writer && !S.writer_busy && S.writer_tx == op->tx);
  run(c, op);
}

static void fail_list(osb_list_t *l) {
  while (!osb_list_empty(l)) {
    osb__op_t *op = osb_container_of(l->next, osb__op_t, link);
    osb_list_remove(&op->link);
    S.nwaiting--;
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
  }
}

static void sq_close(void) {
  if (!S.open || S.closing) return;
  S.closing = true;
  fail_list(&S.read_waiters);
  fail_list(&S.write_waiters);
  /* Work not yet started is cancelled (its after-work sees UV_ECANCELED);
   * running work finishes and its connection is closed after it. */
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &S.works) {
    sq_work_t *w = osb_container_of(pos, sq_work_t, link);
    uv_cancel((uv_req_t *)&w->req);
  }
  while (!osb_list_empty(&S.idle_readers)) {
    sq_conn_t *c = osb_container_of(S.idle_readers.next, sq_conn_t, link);
    osb_list_remove(&c->link);
    S.nidle--;
    for (int i = 0; i < S.nreaders; i++)
      if (S.readers[i] == c) S.readers[i] = NULL;
    conn_free(c);
  }
  if (S.writer && !S.writer_busy) {
    if (S.writer_tx) osb__tx_set_conn(S.writer_tx, NULL);   /* closing rolls it back */
    S.writer_tx = NULL;
    conn_free(S.writer);
    S.writer = NULL;
  }
  osb_handle_close((uv_handle_t *)&S.acquire_timer);
}

static bool sq_idle(void) { return S.busy == 0; }

static void sq_stats(osb_db_stats_t *out) {
  out->backend = "sqlite";
  out->up = S.open && !S.closing;
  out->size = S.nreaders + 1;
  out->max = S.nreaders + 1;
  out->idle = S.nidle + (S.writer && !S.writer_busy && !S.writer_tx ? 1 : 0);
  out->active = out->size - out->idle;
  out->waiting = S.nwaiting;
}

static bool sq_up(char *reason, size_t len) {
  if (!S.open || S.closing) {
    snprintf(reason, len, "closed");
    return false;
  }
  snprintf(reason, len, "sqlite: %d readers + 1 writer, %d waiting", S.nreaders, S.nwaiting);
  return true;
}

static const osb__backend_t sq_backend = {
  .name = "sqlite",
  .submit = sq_submit,
  .tx_begin = sq_submit,
  .tx_op = sq_tx_op,
  .tx_end = sq_tx_op,
  .close = sq_close,
  .idle = sq_idle,
  .stats = sq_stats,
  .up = sq_up,
};

int osb__sqlite_migrate_path(const char *path, FILE *report) {
  if (!path || !*path) path = "./data/osbackend.db";
  if (make_parent(path) < 0) return OSB_EDB;
  sq_conn_t *c = conn_open(path, true);
  if (!c) return OSB_EDB;
  int rc = osb__sqlite_migrate(c->db, false, report);
  conn_free(c);
  return rc;
}

int osb__sqlite_start(const osb_config_t *cfg, const osb__backend_t **out) {
  memset(&S, 0, sizeof(S));
  S.cfg = cfg;
  osb_list_init(&S.idle_readers);
  osb_list_init(&S.works);
  osb_list_init(&S.read_waiters);
  osb_list_init(&S.write_waiters);
  const char *path = cfg->sqlite_path && *cfg->sqlite_path ? cfg->sqlite_path : "./data/osbackend.db";
  if (!sqlite3_threadsafe()) {
    osb_log(OSB_LOG_ERROR, "db", "sqlite was built without thread support");
    return OSB_EDB;
  }
  if (make_parent(path) < 0) return OSB_EDB;
  S.writer = conn_open(path, true);
  if (!S.writer) return OSB_EDB;
  /* Start-up only: migrate and seed on the loop thread before serving. */
  int rc = osb__sqlite_migrate(S.writer->db, true, NULL);
  if (rc < 0) goto fail;
  for (int i = 0; i < NREADERS; i++) {
    sq_conn_t *c = conn_open(path, false);
    if (!c) {
      rc = OSB_EDB;
      goto fail;
    }
    S.readers[S.nreaders++] = c;
    osb_list_insert_tail(&S.idle_readers, &c->link);
    S.nidle++;
  }
  uv_timer_init(osb_loop(), &S.acquire_timer);
  S.open = true;
  osb_log(OSB_LOG_INFO, "db", "sqlite %s (WAL, %d readers + 1 writer)", path, S.nreaders);
  *out = &sq_backend;
  return 0;
fail:
  for (int i = 0; i < S.nreaders; i++) conn_free(S.readers[i]);
  conn_free(S.writer);
  memset(&S, 0, sizeof(S));
  return rc;
}
