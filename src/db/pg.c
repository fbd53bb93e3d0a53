/* pg.c: the PostgreSQL pool, on the event loop.
 *
 * Each connection is a non-blocking libpq connection in pipeline mode,
 * watched by one uv_poll_t (always readable, writable while libpq has
 * unsent bytes). The poll handle is stopped and closed before PQfinish
 * closes the socket. Statements are prepared on a connection before their
 * first use there (all registered ones right after connect), in the same
 * pipeline as the query, so preparing costs no round trip.
 *
 * Pipelining. A connection carries up to PIPE_DEPTH queries in flight.
 * The ops issued in one loop iteration go to one connection (the one
 * already written to since its last Sync, until it holds PIPE_DEPTH): they
 * leave in one write and one backend answers them in one wake-up, with
 * one write back. A new iteration's batch takes the least busy connection
 * that is not stalled (its oldest item unanswered for STALL_MS: a slow
 * statement at the head would hold up whatever queues behind it). The
 * pool grows only when no usable connection has room, i.e. fewer than
 * GROW_DEPTH in flight and not stalled: when PostgreSQL shares the cores,
 * a few backends each answering a batch per wake-up do the same work at
 * half the CPU of twenty backends answering one or two queries each
 * (docs/benchmarks.md, "Uncached procedure by id").
 * Reads are sent without a Sync and the dirty connections get one Sync per
 * loop iteration (the "pg" step of core's before-sleep phase, right after
 * the HTTP step whose handlers queued them, in the same round), so the
 * reads queued in one iteration leave in one write. Everything between
 * two Syncs is one implicit transaction on the server, so writes and
 * transaction statements get a Sync of their own: a failed write never
 * takes another request's write down with it. A failed read aborts the
 * reads behind it up to the Sync; those come back PGRES_PIPELINE_ABORTED
 * and are resubmitted once, each in a segment of its own. A PREPARE also
 * gets a segment of its own, so no neighbour's failure can abort it.
 *
 * Waiting. Ops that find no usable connection wait FIFO in P.waiters until
 * DB_ACQUIRE_TIMEOUT_MS, then fail with OSB_EUNAVAIL. A transaction's BEGIN
 * waits in the same queue and then owns its connection (c->tx) until COMMIT
 * or ROLLBACK completed: nothing else is sent on it meanwhile.
 *
 * Names. A DATABASE_URL whose host is a name (every managed PostgreSQL gives
 * one) is resolved with uv_getaddrinfo (the threadpool) for each new
 * connection, and libpq gets the addresses as hostaddr with host kept (TLS
 * server name, .pgpass), so PQconnectStart never resolves on the loop. The
 * OS resolver's cache makes repeated look-ups cheap; a changed record is
 * seen by the next connection. The start-up migration connection (before
 * the loop runs) lets libpq resolve.
 *
 * Failure. A connection that breaks fails its in-flight ops (reads are
 * resubmitted once) and is replaced. When an attempt to connect fails and
 * no connection is ready, the pool is down: every waiting op and every new
 * one fails at once, /ready reports 503, and one connection attempt is made
 * every 50 ms doubling to 500 ms, so the pool is back within about half a
 * second of the server accepting connections again.
 *
 * Housekeeping (every DB_HEALTH_INTERVAL_MS): idle connections past their
 * lifetime (DB_MAX_LIFETIME_MS ± 10 %) are closed and replaced (busy ones
 * retire: no new queries, closed once drained), idle ones
 * beyond DB_POOL_MIN unused for DB_IDLE_TIMEOUT_MS are closed, and the
 * others, if unused for an interval, answer SELECT 1 or are replaced.
 *
 * Hung queries (DB_QUERY_TIMEOUT_MS, 0 = off). Every session gets it as its
 * statement_timeout, so a slow statement is cancelled by the server
 * (SQLSTATE 57014, answered 503, the connection stays). A server that stops
 * answering altogether (a stopped backend, a dead path without RST) is
 * caught by the client-side deadline: each item sent carries one, and the
 * tick timer (every 250 ms while the pool is open) retires a connection
 * whose oldest unanswered item is past it, OSB__QUERY_GRACE_MS after the
 * server's own timeout would have fired. The expired ops fail with
 * OSB_EUNAVAIL (503) without a retry, reads behind them are resubmitted
 * once elsewhere, and a PQcancel() goes out on the threadpool (it blocks)
 * so the backend stops working for nobody once it runs again. */
#include "db/internal.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <jansson.h>
#include "obs/log.h"

#define PIPE_DEPTH 16
#define GROW_DEPTH (PIPE_DEPTH / 2)
#define STALL_MS 20
#define CONNECT_TIMEOUT_MS 5000
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 500
#define READ_RETRIES 1
#define MAX_CONNECTING 2
#define TICK_MS 250
#define OSB__QUERY_GRACE_MS 100

typedef enum { I_OP, I_PREPARE, I_HEALTH, I_SYNC } item_kind_t;

typedef struct item {
  osb_list_t link;
  item_kind_t kind;
  osb__op_t *op;           /* I_OP */
  uint32_t stmt_id;        /* I_PREPARE */
  PGresult *res;           /* the first result, if any */
  uint64_t deadline;       /* no answer by then (loop ms): the server is not answering */
  uint64_t sent;           /* loop ms when it was sent */
} item_t;

typedef enum { C_CONNECTING, C_READY } cstate_t;

typedef struct conn {
  osb_list_t link;         /* P.conns */
  uv_getaddrinfo_t *gai;   /* resolving the host; freed by its callback */
  uv_poll_t *poll;         /* freed in its close callback */
  int fd;
  int events;
  PGconn *pg;
  cstate_t state;
  osb_list_t items;        /* pipeline, oldest first */
  int depth;               /* I_OP items in flight */
  bool dirty;              /* reads sent since the last Sync */
  bool want_write;
  uint8_t *prep;           /* per statement id: prepared (or sent) here */
  size_t nprep;
  osb_db_tx_t *tx;         /* owner while a transaction holds it */
  uint64_t born, expires, connect_deadline;
  uint64_t last_used;        /* last query sent or completed (idle trimming) */
  uint64_t last_checked;     /* last health check answered (or connect) */
  bool health_pending;
  bool retiring;             /* past its lifetime while busy: no new work, closed once drained */
  uint64_t progress;         /* last result received: the server is answering */
} conn_t;

static struct {
  const osb_config_t *cfg;
  bool open, closing;
  osb_list_t conns;
  int nconns, nready, nconnecting;
  osb_list_t waiters;
  int nwaiting;
  bool down;
  bool ever_up;
  char reason[200];
  uint64_t backoff_ms;
  uv_timer_t acquire_timer, retry_timer, health_timer, tick_timer;
  char *resolve_host;        /* DATABASE_URL's host name, resolved per connection */
  bool dirty;                /* some connection has reads waiting for a Sync */
} P;

static void pump(void);
static void conn_close(conn_t *c, int err);
static void conn_broken(conn_t *c, const char *what);
static void update_poll(conn_t *c);
static void on_poll(uv_poll_t *h, int status, int events);
static void on_acquire_expired(uv_timer_t *t);
static void on_retry(uv_timer_t *t);
static void on_tick(uv_timer_t *t);

/* ---- small helpers ---- */

static item_t *item_new(item_kind_t kind) {
  item_t *it = osb_calloc(1, sizeof(*it));
  it->kind = kind;
  return it;
}

static void item_push(conn_t *c, item_t *it) {
  it->sent = osb_now_ms();
  if (P.cfg->db_query_timeout_ms <= 0) it->deadline = UINT64_MAX;   /* DB_QUERY_TIMEOUT_MS=0: off */
  else if (!it->deadline) it->deadline = osb_now_ms() + (uint64_t)P.cfg->db_query_timeout_ms + OSB__QUERY_GRACE_MS;
  osb_list_insert_tail(&c->items, &it->link);
}

/* libpq's messages span lines ("...failed: X\n\tIs the server running...");
 * make them one log-friendly line. */
static void trim_newline(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    char ch = *r == '\n' || *r == '\r' || *r == '\t' ? ' ' : *r;
    if (ch == ' ' && (w == s || w[-1] == ' ')) continue;
    *w++ = ch;
  }
  while (w > s && w[-1] == ' ') w--;
  *w = 0;
}

static void notice_log(void *arg, const char *message) {
  OSB_UNUSED(arg);
  if (!osb_log_enabled(OSB_LOG_DEBUG)) return;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", message);
  trim_newline(buf);
  osb_log(OSB_LOG_DEBUG, "db", "postgresql notice: %s", buf);
}

static uint64_t jitter_lifetime(void) {
  uint32_t r;
  osb_random_bytes(&r, sizeof(r));
  double f = 0.9 + 0.2 * ((double)r / 4294967295.0);
  return (uint64_t)((double)P.cfg->db_max_lifetime_ms * f);
}

static bool conn_idle(const conn_t *c) {
  return c->state == C_READY && !c->tx && osb_list_empty(&c->items);
}

/* ---- waiters ---- */

static void arm_acquire_timer(void) {
  if (!P.open) return;
  if (osb_list_empty(&P.waiters)) {
    uv_timer_stop(&P.acquire_timer);
    return;
  }
  uint64_t min = UINT64_MAX;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.waiters) {
    osb__op_t *op = osb_container_of(pos, osb__op_t, link);
    if (op->deadline < min) min = op->deadline;
  }
  uint64_t now = osb_now_ms();
  uv_timer_start(&P.acquire_timer, on_acquire_expired, min > now ? min - now : 0, 0);
}

/* head: a resubmission, which goes ahead of every newer waiter but after
 * older ones (ops of one connection are resubmitted one by one, oldest
 * first: inserting each at the head would reverse them). */
static void enqueue(osb__op_t *op, bool head) {
  osb_list_t *before = &P.waiters;
  if (head) {
    for (before = P.waiters.next; before != &P.waiters; before = before->next)
      if (osb_container_of(before, osb__op_t, link)->t_submit > op->t_submit) break;
  }
  osb_list_insert_tail(before, &op->link);
  P.nwaiting++;
  arm_acquire_timer();
}

static void dequeue(osb__op_t *op) {
  osb_list_remove(&op->link);
  P.nwaiting--;
}

static void fail_waiters(int err) {
  while (!osb_list_empty(&P.waiters)) {
    osb__op_t *op = osb_container_of(P.waiters.next, osb__op_t, link);
    dequeue(op);
    osb__op_complete(op, err, NULL);
  }
  if (P.open) uv_timer_stop(&P.acquire_timer);
}

static void on_acquire_expired(uv_timer_t *t) {
  OSB_UNUSED(t);
  uint64_t now = osb_now_ms();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.waiters) {
    osb__op_t *op = osb_container_of(pos, osb__op_t, link);
    if (op->deadline <= now) {
      dequeue(op);
      osb__count_timeout();
      osb__op_complete(op, OSB_EUNAVAIL, NULL);
    }
  }
  if (!osb_list_empty(&P.waiters)) arm_acquire_timer();
  osb__drain();
}

/* ---- results ---- */

static osb_db_type_t pg_type(Oid oid) {
  switch (oid) {
    case 16: return OSB_DB_BOOL;
    case 20: case 21: case 23: case 26: return OSB_DB_INT;
    case 700: case 701: case 1700: return OSB_DB_FLOAT;
    case 114: case 3802: return OSB_DB_JSON;
    case 17: return OSB_DB_BLOB;
    default: return OSB_DB_TEXT;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static osb_db_result_t *convert(PGresult *r) {
  int nf = PQnfields(r), nt = PQntuples(r);
  osb__rb_t b;
  osb__rb_init(&b, (size_t)nf);
  bool blob = false;
  for (int i = 0; i < nf; i++) {
    osb_db_type_t t = pg_type(PQftype(r, i));
    blob |= t == OSB_DB_BLOB;
    osb__rb_col(&b, (size_t)i, PQfname(r, i), t);
  }
  /* sized once: every value plus its NUL (bytea shrinks from hex) */
  size_t bytes = 0;
  for (int row = 0; row < nt; row++)
    for (int col = 0; col < nf; col++) bytes += (size_t)PQgetlength(r, row, col) + 1;
  osb__rb_reserve(&b, (size_t)nt * (size_t)nf, bytes);
  osb_buf_t tmp = OSB_BUF_INIT;
  for (int row = 0; row < nt; row++) {
    for (int col = 0; col < nf; col++) {
      if (PQgetisnull(r, row, col)) {
        osb__rb_cell(&b, NULL, 0);
        continue;
      }
      const char *v = PQgetvalue(r, row, col);
      size_t n = (size_t)PQgetlength(r, row, col);
      if (blob && PQftype(r, col) == 17 && n >= 2 && v[0] == '\\' && v[1] == 'x') {
        osb_buf_reset(&tmp);
        for (size_t i = 2; i + 1 < n; i += 2) {
          int hi = hexval(v[i]), lo = hexval(v[i + 1]);
          char byte = (char)((hi < 0 ? 0 : hi) << 4 | (lo < 0 ? 0 : lo));
          osb_buf_append(&tmp, &byte, 1);
        }
        osb__rb_cell(&b, tmp.base ? tmp.base : "", tmp.len);
        continue;
      }
      osb__rb_cell(&b, v, n);
    }
  }
  osb_buf_free(&tmp);
  const char *status = PQcmdStatus(r);
  int64_t affected = 0;
  if (status && strncmp(status, "SELECT", 6) != 0) affected = atoll(PQcmdTuples(r));
  return osb__rb_finish(&b, affected);
}

/* Connection exceptions, server shutdown / termination, too many
 * connections: the session is gone or going, whatever the statement. */
static bool conn_fatal_state(const char *state) {
  return state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0 || strcmp(state, "53300") == 0);
}

static int map_error(const osb__op_t *op, PGresult *r) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  int err = OSB_EDB;
  if (state) {
    if (strcmp(state, "23505") == 0) err = OSB_ECONFLICT;
    else if (strcmp(state, "23503") == 0) err = OSB_ENOTFOUND;
    else if (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0) err = OSB_EINVAL;   /* db.h */
    else if (conn_fatal_state(state)) err = OSB_EUNAVAIL;
    else if (strcmp(state, "57014") == 0) err = OSB_EUNAVAIL;   /* statement_timeout (or a cancel) */
  }
  /* The constraint/table/column names help; the message text may quote a
   * value, so only the primary message of non-data errors is logged. */
  char detail[200] = "";
  if (r) {
    const char *cons = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    if (cons) snprintf(detail, sizeof(detail), "constraint %s", cons);
    else if (prim && err == OSB_EDB) snprintf(detail, sizeof(detail), "%s", prim);
  }
  osb__log_query_error(op, err, state, detail[0] ? detail : NULL);
  return err;
}

/* ---- sending ---- */

static bool flush_out(conn_t *c) {
  int r = PQflush(c->pg);
  if (r < 0) return false;
  c->want_write = r == 1;
  return true;
}

static bool send_sync(conn_t *c) {
  if (!PQpipelineSync(c->pg)) return false;
  item_push(c, item_new(I_SYNC));
  c->dirty = false;
  return true;
}

static void mark_dirty(conn_t *c) {
  c->dirty = true;
  P.dirty = true;
  osb_core_wake();
}

static bool ensure_prepared(conn_t *c, osb__stmt_info_t *si) {
  if (si->id >= c->nprep) {
    size_t n = osb__stmt_count() > si->id + 1 ? osb__stmt_count() : si->id + 1;
    c->prep = osb_realloc(c->prep, n);
    memset(c->prep + c->nprep, 0, n - c->nprep);
    c->nprep = n;
  }
  if (c->prep[si->id]) return true;
  /* A PREPARE travels in a segment of its own: a failing read ahead of it
   * would abort it, while later segments already count on it (prep is set
   * now) and would find the statement missing on the server. */
  if (c->dirty && !send_sync(c)) return false;
  if (!PQsendPrepare(c->pg, si->name, si->stmt->pg, si->stmt->nparams, NULL)) return false;
  item_t *it = item_new(I_PREPARE);
  it->stmt_id = si->id;
  item_push(c, it);
  c->prep[si->id] = 1;
  return send_sync(c);
}

/* Send op on c. On a broken connection returns false; the caller closes c
 * (which fails or resubmits the op, now in c's items). */
static bool send_op(conn_t *c, osb__op_t *op) {
  item_t *it = item_new(I_OP);
  it->op = op;
  item_push(c, it);
  c->depth++;
  c->last_used = osb_now_ms();
  osb__op_started(op);
  /* A resubmitted read travels alone: no failing neighbour can abort it twice. */
  bool own_segment = op->kind != OSB__OP_QUERY || op->tx || osb__op_is_write(op) || op->retries > 0;
  if (own_segment && c->dirty && !send_sync(c)) return false;
  /* Items follow the wire order: the Sync just sent, then the prepare, then
   * the op (for BEGIN/COMMIT/ROLLBACK too). */
  osb_list_remove(&it->link);
  if (op->kind == OSB__OP_QUERY && !ensure_prepared(c, op->si)) {
    item_push(c, it);
    return false;
  }
  item_push(c, it);
  if (op->kind == OSB__OP_QUERY) {
    osb__stmt_info_t *si = op->si;
    const char *vals[OSB__DB_MAX_PARAMS];
    int lens[OSB__DB_MAX_PARAMS], fmts[OSB__DB_MAX_PARAMS];
    for (int i = 0; i < op->nparams; i++) {
      vals[i] = op->params[i].kind == OSB_DB_P_NULL ? NULL : op->params[i].data;
      lens[i] = (int)op->params[i].len;
      fmts[i] = op->params[i].kind == OSB_DB_P_BLOB ? 1 : 0;
    }
    if (!PQsendQueryPrepared(c->pg, si->name, op->nparams, vals, lens, fmts, 0)) return false;
  } else {
    const char *sql = op->kind == OSB__OP_BEGIN ? "BEGIN" : op->kind == OSB__OP_COMMIT ? "COMMIT" : "ROLLBACK";
    if (!PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0)) return false;
  }
  if (!own_segment) {
    mark_dirty(c);   /* pg_step sends the Sync and the bytes, once per loop iteration */
    return true;
  }
  if (!send_sync(c) || !flush_out(c)) return false;
  update_poll(c);
  return true;
}

/* The "pg" step (OSB_STEP_PG): one Sync and one flush per dirty
 * connection. Completions it causes (a broken connection fails its ops) are
 * run by the "db" step that follows in the same round. Asks for another
 * round only if the pump sent new reads that need a Sync of their own. */
static bool pg_step(void *ud) {
  OSB_UNUSED(ud);
  if (!P.dirty || !P.open) return false;
  P.dirty = false;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (!c->dirty || c->state != C_READY) continue;
    if (!send_sync(c) || !flush_out(c)) {
      conn_broken(c, "write failed");
      continue;
    }
    update_poll(c);
  }
  pump();
  return P.dirty;
}

/* ---- connection selection and the pump ---- */

/* A connection whose oldest item has waited STALL_MS for an answer (a
 * slow statement at the head of its pipeline) takes no new reads: they
 * would queue behind it. */
static bool stalled(const conn_t *c, uint64_t now) {
  if (osb_list_empty(&c->items)) return false;
  const item_t *head = osb_container_of(c->items.next, item_t, link);
  uint64_t since = head->sent > c->progress ? head->sent : c->progress;
  return now - since >= STALL_MS;
}

static bool usable(const conn_t *c) { return c->state == C_READY && !c->tx && !c->retiring; }

/* The connection for the next op. The ops queued in one loop iteration
 * share one connection (the one already written to since the last Sync),
 * so they leave in one write and the backend answers them in one wake-up
 * with one Sync; otherwise the least busy connection that is not stalled. */
static conn_t *pick(void) {
  conn_t *best = NULL;
  uint64_t now = osb_now_ms();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (!usable(c) || c->depth >= PIPE_DEPTH) continue;
    if (c->dirty) return c;
    if (stalled(c, now)) continue;
    if (!best || c->depth < best->depth) best = c;
  }
  return best;
}

/* Some connection can take more without a new one: usable, not stalled,
 * with fewer than GROW_DEPTH ops in flight. */
static bool has_room(void) {
  uint64_t now = osb_now_ms();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (usable(c) && c->depth < GROW_DEPTH && !stalled(c, now)) return true;
  }
  return false;
}

static bool conn_start(void);

/* Open connections up to the minimum, and one more (two with a queue)
 * while no connection has room (has_room). Not while down: then only the retry
 * timer connects. conn_start may fail at once (a refused Unix socket; it
 * sets P.down only when no connection is ready): stop there, the retry
 * timer tries again. */
static void grow(void) {
  while (P.open && !P.closing && !P.down && P.nconns < P.cfg->db_pool_min && P.nconnecting < MAX_CONNECTING)
    if (!conn_start()) return;
  if (!P.open || P.closing || P.down) return;
  bool demand = !osb_list_empty(&P.waiters) || !has_room();
  if (demand && P.nconns < P.cfg->db_pool_max && P.nconnecting < (P.nwaiting > 1 ? MAX_CONNECTING : 1))
    conn_start();
}

/* Send op on c (chosen by pick); a BEGIN makes c the transaction's. */
static void dispatch(conn_t *c, osb__op_t *op) {
  if (op->kind == OSB__OP_BEGIN) {
    c->tx = op->tx;
    osb__tx_set_conn(op->tx, c);
  }
  if (!send_op(c, op)) conn_broken(c, "send failed");
}

static void pump(void) {
  if (!P.open) return;
  while (!osb_list_empty(&P.waiters)) {
    osb__op_t *op = osb_container_of(P.waiters.next, osb__op_t, link);
    conn_t *c = pick();
    if (!c) break;
    dequeue(op);
    dispatch(c, op);
  }
  if (osb_list_empty(&P.waiters)) uv_timer_stop(&P.acquire_timer);
  grow();
  if (P.down && P.nready == 0) fail_waiters(OSB_EUNAVAIL);
}

/* ---- receiving ---- */

static void requeue_or_fail(osb__op_t *op, int err) {
  if (!op->tx && op->kind == OSB__OP_QUERY && !osb__op_is_write(op) && op->retries < READ_RETRIES && !P.closing) {
    op->retries++;
    op->t_start = 0;
    enqueue(op, true);
    return;
  }
  osb__op_complete(op, err, NULL);
}

static void release_tx(conn_t *c) {
  if (!c->tx) return;
  osb__tx_set_conn(c->tx, NULL);
  c->tx = NULL;
}

/* Returns false if c must be closed. */
static bool item_done(conn_t *c, item_t *it) {
  bool keep = true;
  PGresult *r = it->res;
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  switch (it->kind) {
    case I_PREPARE:
      if (st != PGRES_COMMAND_OK) {
        if (it->stmt_id < c->nprep) c->prep[it->stmt_id] = 0;
        if (st == PGRES_FATAL_ERROR) {
          osb__stmt_info_t *si = osb__stmt_at(it->stmt_id);
          const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
          const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
          /* The session is going away (the error lands on whatever command
           * is first in the pipeline): close now, so the ops behind are
           * resubmitted or fail as unavailable, not as statement errors. */
          if (!r || conn_fatal_state(state)) {
            keep = false;
            break;
          }
          osb_log(OSB_LOG_ERROR, "db", "prepare %s failed: %s %s", si ? si->name : "?",
                  state ? state : "", prim ? prim : "");
        }
      }
      break;
    case I_HEALTH:
      c->health_pending = false;
      c->last_checked = osb_now_ms();
      if (st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED) keep = false;
      break;
    case I_OP: {
      osb__op_t *op = it->op;
      c->depth--;
      c->last_used = osb_now_ms();
      if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        if (op->kind == OSB__OP_COMMIT || op->kind == OSB__OP_ROLLBACK) release_tx(c);
        osb__op_complete(op, 0, convert(r));
      } else if (st == PGRES_PIPELINE_ABORTED) {
        if (op->kind == OSB__OP_BEGIN || op->kind == OSB__OP_COMMIT || op->kind == OSB__OP_ROLLBACK) release_tx(c);
        requeue_or_fail(op, OSB_EDB);
      } else {
        int err = map_error(op, r);
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (err == OSB_EUNAVAIL && !(state && strcmp(state, "57014") == 0))
          keep = false;   /* the session is going away (a timed-out statement leaves it usable) */
        if (op->kind == OSB__OP_BEGIN || op->kind == OSB__OP_COMMIT) release_tx(c);
        if (op->kind == OSB__OP_ROLLBACK) {
          release_tx(c);
          keep = false;   /* state unknown: do not reuse */
        }
        osb__op_complete(op, err, NULL);
      }
      break;
    }
    case I_SYNC:
      break;
  }
  if (r) PQclear(r);
  free(it);
  return keep;
}

/* Consume what libpq has parsed. Returns false if c was closed. */
static bool process(conn_t *c) {
  while (!osb_list_empty(&c->items)) {
    if (PQisBusy(c->pg)) break;
    item_t *it = osb_container_of(c->items.next, item_t, link);
    PGresult *r = PQgetResult(c->pg);
    c->progress = osb_now_ms();
    if (!r) {
      if (it->kind == I_SYNC) break;   /* not reached: a Sync result comes without a NULL */
      osb_list_remove(&it->link);
      if (!item_done(c, it)) {
        conn_close(c, OSB_EUNAVAIL);
        return false;
      }
      continue;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      /* Items without a NULL before the Sync do not exist; be strict. */
      osb_assert(it->kind == I_SYNC);
      osb_list_remove(&it->link);
      free(it);
      continue;
    }
    if (it->kind == I_SYNC) {
      PQclear(r);
      osb_log(OSB_LOG_ERROR, "db", "pipeline out of step, closing the connection");
      conn_close(c, OSB_EUNAVAIL);
      return false;
    }
    if (!it->res) it->res = r;
    else PQclear(r);
  }
  return true;
}

static void update_poll(conn_t *c) {
  int ev = UV_READABLE | (c->want_write ? UV_WRITABLE : 0);
  if (ev == c->events) return;
  uv_poll_start(c->poll, ev, on_poll);
  c->events = ev;
}

static void set_down(const char *why) {
  if (!P.down) {
    osb_log(OSB_LOG_ERROR, "db", "database unreachable: %s", why);
    P.down = true;
  }
  snprintf(P.reason, sizeof(P.reason), "unreachable: %.180s", why);
}

static void schedule_retry(void) {
  if (!P.open || P.closing || uv_is_active((uv_handle_t *)&P.retry_timer)) return;
  P.backoff_ms = P.backoff_ms ? P.backoff_ms * 2 : RETRY_MIN_MS;
  if (P.backoff_ms > RETRY_MAX_MS) P.backoff_ms = RETRY_MAX_MS;
  uv_timer_start(&P.retry_timer, on_retry, P.backoff_ms, 0);
}

static void conn_broken(conn_t *c, const char *what) {
  char why[200];
  snprintf(why, sizeof(why), "%s", c->pg ? PQerrorMessage(c->pg) : what);
  trim_newline(why);
  if (!why[0]) snprintf(why, sizeof(why), "%s", what);
  osb_log(OSB_LOG_WARN, "db", "connection lost: %s", why);
  osb__count_reconnect();
  conn_close(c, OSB_EUNAVAIL);
  if (P.nready == 0 && P.nconnecting == 0) {
    /* Find out at once whether the server is gone (the attempt fails fast
     * on a refused connection) rather than at the next query. */
    grow();
    if (P.nconns == 0) conn_start();
  } else {
    grow();
  }
}

static void connect_failed(conn_t *c, const char *msg) {
  char why[200];
  snprintf(why, sizeof(why), "%s", msg && *msg ? msg : "connection failed");
  trim_newline(why);
  conn_close(c, OSB_EUNAVAIL);
  if (P.nready == 0) {
    set_down(why);
    fail_waiters(OSB_EUNAVAIL);
  } else {
    osb_log(OSB_LOG_WARN, "db", "could not open a connection: %s", why);
  }
  schedule_retry();
}

static void connected(conn_t *c) {
  if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
    connect_failed(c, "could not enter pipeline mode");
    return;
  }
  PQsetNoticeProcessor(c->pg, notice_log, NULL);
  c->state = C_READY;
  P.nconnecting--;
  P.nready++;
  uint64_t now = osb_now_ms();
  c->born = c->last_used = c->last_checked = now;
  c->expires = now + jitter_lifetime();
  if (P.down) osb_log(OSB_LOG_INFO, "db", "database reachable again");
  P.down = false;
  P.ever_up = true;
  P.backoff_ms = 0;
  P.reason[0] = 0;
  /* Prepare everything registered so far, in one write. */
  size_t n = osb__stmt_count();
  bool ok = true;
  for (size_t i = 0; i < n && ok; i++) ok = ensure_prepared(c, osb__stmt_at(i));
  if (ok) ok = flush_out(c);
  if (!ok) {
    conn_broken(c, "prepare failed");
    return;
  }
  update_poll(c);
}

static void connect_step(conn_t *c) {
  uv_poll_stop(c->poll);
  c->events = 0;
  PostgresPollingStatusType st = PQconnectPoll(c->pg);
  int fd = PQsocket(c->pg);
  if (st != PGRES_POLLING_FAILED && fd >= 0 && fd != c->fd) {
    /* libpq moved to another socket (next address): the old one is closed
     * already; drop its watcher before anything can reuse the number. */
    uv_close((uv_handle_t *)c->poll, (uv_close_cb)free);
    c->poll = osb_malloc(sizeof(*c->poll));
    c->fd = fd;
    if (uv_poll_init(osb_loop(), c->poll, fd) != 0) {
      free(c->poll);
      c->poll = NULL;
      connect_failed(c, "poll init failed");
      return;
    }
    c->poll->data = c;
  }
  switch (st) {
    case PGRES_POLLING_READING:
      uv_poll_start(c->poll, UV_READABLE, on_poll);
      c->events = UV_READABLE;
      break;
    case PGRES_POLLING_WRITING:
      uv_poll_start(c->poll, UV_WRITABLE, on_poll);
      c->events = UV_WRITABLE;
      break;
    case PGRES_POLLING_OK:
      connected(c);
      pump();
      break;
    case PGRES_POLLING_FAILED:
    default:
      connect_failed(c, PQerrorMessage(c->pg));
      break;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  conn_t *c = h->data;
  if (c->state == C_CONNECTING) {
    connect_step(c);
    osb__drain();
    return;
  }
  if (status < 0) {
    conn_broken(c, uv_strerror(status));
    goto out;
  }
  if ((events & UV_WRITABLE) && !flush_out(c)) {
    conn_broken(c, "write failed");
    goto out;
  }
  if (events & UV_READABLE) {
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
      conn_broken(c, "read failed");
      goto out;
    }
  }
  if (!process(c)) goto out;
  if (PQstatus(c->pg) == CONNECTION_BAD) {
    conn_broken(c, "connection bad");
    goto out;
  }
  if (c->retiring && conn_idle(c)) {
    conn_close(c, OSB_EUNAVAIL);
    goto out;
  }
  update_poll(c);
out:
  pump();
  osb__drain();
}

/* ---- host names ---- */

static bool ip_literal(const char *h) {
  unsigned char buf[16];
  return uv_inet_pton(AF_INET, h, buf) == 0 || uv_inet_pton(AF_INET6, h, buf) == 0;
}

char *osb__pg_resolvable_host(const char *url) {
  if (!url) return NULL;
  PQconninfoOption *opts = PQconninfoParse(url, NULL);
  if (!opts) return NULL;
  const char *host = NULL, *hostaddr = NULL;
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val) continue;
    if (strcmp(o->keyword, "host") == 0) host = o->val;
    else if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
  }
  char *out = NULL;
  if (host && !hostaddr && host[0] != '/' && host[0] != '@' && !strchr(host, ',') && !ip_literal(host))
    out = osb_strdup(host);
  PQconninfoFree(opts);
  return out;
}

int osb__pg_hostaddr_lists(const char *host, const void *addrinfo, osb_buf_t *hosts, osb_buf_t *addrs) {
  int n = 0;
  for (const struct addrinfo *ai = addrinfo; ai && n < 8; ai = ai->ai_next) {
    char ip[64];
    if (ai->ai_family == AF_INET) uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
    else if (ai->ai_family == AF_INET6) uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
    else continue;
    /* getaddrinfo lists an address once per socket type unless hinted; dedupe anyway */
    bool seen = false;
    for (const char *p = addrs->base; p && *p && !seen;) {
      size_t k = strcspn(p, ",");
      seen = k == strlen(ip) && memcmp(p, ip, k) == 0;
      p += k + (p[k] == ',');
    }
    if (seen) continue;
    if (n) {
      osb_buf_puts(hosts, ",");
      osb_buf_puts(addrs, ",");
    }
    osb_buf_puts(hosts, host);
    osb_buf_puts(addrs, ip);
    n++;
  }
  return n;
}

char *osb_db_pg_resolvable_host(const char *url) { return osb__pg_resolvable_host(url); }
int osb_db_pg_hostaddr_lists(const char *host, const void *addrinfo, osb_buf_t *hosts, osb_buf_t *addrs) {
  return osb__pg_hostaddr_lists(host, addrinfo, hosts, addrs);
}

/* Start libpq's non-blocking connect on c; hostaddr (with the matching host
 * list) when the name was resolved. Returns false if it failed at once (c
 * is closed already). */
static bool conn_connect(conn_t *c, const char *hosts, const char *hostaddrs) {
  /* Defaults before dbname, so the URL can override them; host/hostaddr
   * after it, overriding the URL's host with the resolved addresses.
   * Keepalives let a dead peer (no RST) fail the connection instead of
   * hanging its queries.
   * statement_timeout is DB_QUERY_TIMEOUT_MS, enforced by the server as well
   * as by the pool's own deadline (on_tick). */
  char options[64];
  snprintf(options, sizeof(options), "-c statement_timeout=%d", P.cfg->db_query_timeout_ms);
  const char *kw[] = { "application_name", "keepalives_idle", "keepalives_interval", "keepalives_count",
                       "options", "dbname", hostaddrs ? "host" : NULL, "hostaddr", NULL };
  const char *vals[] = { "osbackend", "10", "5", "3", options, P.cfg->database_url, hosts, hostaddrs, NULL };
  c->pg = PQconnectStartParams(kw, vals, 1);
  if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
    connect_failed(c, c->pg ? PQerrorMessage(c->pg) : "out of memory");
    return false;
  }
  c->fd = PQsocket(c->pg);
  c->poll = osb_malloc(sizeof(*c->poll));
  if (c->fd < 0 || uv_poll_init(osb_loop(), c->poll, c->fd) != 0) {
    free(c->poll);
    c->poll = NULL;
    connect_failed(c, "no socket");
    return false;
  }
  c->poll->data = c;
  uv_poll_start(c->poll, UV_WRITABLE, on_poll);
  c->events = UV_WRITABLE;
  return true;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  conn_t *c = req->data;
  free(req);
  if (!c) {               /* the connection was closed meanwhile */
    uv_freeaddrinfo(res);
    return;
  }
  c->gai = NULL;
  osb_buf_t hosts = OSB_BUF_INIT, addrs = OSB_BUF_INIT;
  int n = status == 0 ? osb__pg_hostaddr_lists(P.resolve_host, res, &hosts, &addrs) : 0;
  uv_freeaddrinfo(res);
  if (n == 0) {
    char why[200];
    snprintf(why, sizeof(why), "could not resolve host \"%s\": %s", P.resolve_host,
             status < 0 ? uv_strerror(status) : "no address");
    connect_failed(c, why);
  } else {
    if (osb_log_enabled(OSB_LOG_DEBUG)) {
      const osb_log_kv_t kv[] = { OSB_KV_S("host", P.resolve_host), OSB_KV_S("addresses", addrs.base) };
      osb_log_kv(OSB_LOG_DEBUG, "db", "resolved", kv, OSB_ARRAY_LEN(kv));
    }
    conn_connect(c, hosts.base, addrs.base);
  }
  osb_buf_free(&hosts);
  osb_buf_free(&addrs);
  osb__drain();
}

/* Returns false if the attempt failed at once (c is closed already). */
static bool conn_start(void) {
  conn_t *c = osb_calloc(1, sizeof(*c));
  osb_list_init(&c->items);
  c->state = C_CONNECTING;
  c->fd = -1;
  osb_list_insert_tail(&P.conns, &c->link);
  P.nconns++;
  P.nconnecting++;
  c->connect_deadline = osb_now_ms() + CONNECT_TIMEOUT_MS;
  if (!uv_is_active((uv_handle_t *)&P.tick_timer)) uv_timer_start(&P.tick_timer, on_tick, TICK_MS, TICK_MS);
  if (!P.resolve_host) return conn_connect(c, NULL, NULL);
  /* A name: resolve on the threadpool; libpq starts in on_resolved. The
   * connect deadline (on_tick) covers a resolver that does not answer. */
  c->gai = osb_malloc(sizeof(*c->gai));
  c->gai->data = c;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(osb_loop(), c->gai, on_resolved, P.resolve_host, NULL, &hints);
  if (rc != 0) {
    free(c->gai);
    c->gai = NULL;
    char why[200];
    snprintf(why, sizeof(why), "could not resolve host \"%s\": %s", P.resolve_host, uv_strerror(rc));
    connect_failed(c, why);
    return false;
  }
  return true;
}

/* Close c now: stop and close the watcher before PQfinish closes the fd;
 * fail or resubmit what was in flight. */
static void conn_close(conn_t *c, int err) {
  osb_list_remove(&c->link);
  if (c->gai) {
    /* its callback still runs (UV_ECANCELED, or the answer): it only frees */
    c->gai->data = NULL;
    uv_cancel((uv_req_t *)c->gai);
    c->gai = NULL;
  }
  P.nconns--;
  if (c->state == C_READY) P.nready--;
  else P.nconnecting--;
  if (c->poll) {
    uv_poll_stop(c->poll);
    uv_close((uv_handle_t *)c->poll, (uv_close_cb)free);
    c->poll = NULL;
  }
  if (c->pg) PQfinish(c->pg);
  c->pg = NULL;
  osb_db_tx_t *tx = c->tx;
  if (tx) release_tx(c);
  while (!osb_list_empty(&c->items)) {
    item_t *it = osb_container_of(c->items.next, item_t, link);
    osb_list_remove(&it->link);
    if (it->kind == I_OP) {
      if (it->op->tx) osb__op_complete(it->op, err, NULL);
      else requeue_or_fail(it->op, err);
    }
    if (it->res) PQclear(it->res);
    free(it);
  }
  free(c->prep);
  free(c);
}

/* ---- timers ---- */

static void on_retry(uv_timer_t *t) {
  OSB_UNUSED(t);
  if (P.closing) return;
  bool wanted = P.down || P.nready < P.cfg->db_pool_min || !osb_list_empty(&P.waiters);
  if (P.nconnecting == 0 && wanted) {
    osb__count_reconnect();
    conn_start();
  }
  osb__drain();
}

/* PQcancel() connects to the server and waits for it to hang up: it blocks,
 * so it runs on the threadpool. One at a time: the connection is retired
 * either way, the cancel only spares the server the work. (A server that
 * is unreachable holds that thread until TCP gives up.) */
typedef struct cancel_req { uv_work_t w; PGcancel *cancel; } cancel_req_t;
static bool cancel_pending;

static void cancel_work(uv_work_t *w) {
  cancel_req_t *r = osb_container_of(w, cancel_req_t, w);
  char err[256];
  (void)PQcancel(r->cancel, err, sizeof(err));
}

static void cancel_done(uv_work_t *w, int status) {
  cancel_req_t *r = osb_container_of(w, cancel_req_t, w);
  PQfreeCancel(r->cancel);
  free(r);
  cancel_pending = false;
}

static void send_cancel(conn_t *c) {
  if (cancel_pending || P.closing) return;
  PGcancel *pc = PQgetCancel(c->pg);
  if (!pc) return;
  cancel_req_t *r = osb_calloc(1, sizeof(*r));
  r->cancel = pc;
  if (uv_queue_work(osb_loop(), &r->w, cancel_work, cancel_done) != 0) {
    PQfreeCancel(pc);
    free(r);
    return;
  }
  cancel_pending = true;
}

/* The oldest unanswered item is past its deadline: the server stopped
 * answering on this connection. Fail what expired (no retry: it would only
 * wait again), cancel it on the server, retire the connection. */
static void conn_timed_out(conn_t *c, uint64_t now) {
  int expired = 0;
  osb_list_t *pos;
  for (pos = c->items.next; pos != &c->items; pos = pos->next) {
    item_t *it = osb_container_of(pos, item_t, link);
    if (it->deadline > now || c->progress + (uint64_t)P.cfg->db_query_timeout_ms + OSB__QUERY_GRACE_MS > now) break;
    if (it->kind == I_OP) {
      it->op->retries = READ_RETRIES;
      expired++;
    }
  }
  osb_log(OSB_LOG_WARN, "db", "no answer from PostgreSQL within DB_QUERY_TIMEOUT_MS=%d: %d quer%s failed, "
          "connection retired", P.cfg->db_query_timeout_ms, expired, expired == 1 ? "y" : "ies");
  osb__count_query_timeout();
  send_cancel(c);
  conn_close(c, OSB_EUNAVAIL);
}

static void on_tick(uv_timer_t *t) {
  uint64_t now = osb_now_ms();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (c->state == C_CONNECTING && now >= c->connect_deadline) {
      connect_failed(c, "timeout expired");
    } else if (c->state == C_READY && !osb_list_empty(&c->items)) {
      /* the head waits on the server; measured from its send or from the
       * last answer, whichever is later (a pipeline behind a slow query) */
      item_t *head = osb_container_of(c->items.next, item_t, link);
      uint64_t limit = (uint64_t)P.cfg->db_query_timeout_ms + OSB__QUERY_GRACE_MS;
      if (P.cfg->db_query_timeout_ms > 0 && head->deadline <= now && c->progress + limit <= now) conn_timed_out(c, now);
    }
  }
  pump();
  osb__drain();
}

static void health_tick(uv_timer_t *t) {
  OSB_UNUSED(t);
  if (P.closing) return;
  uint64_t now = osb_now_ms();
  uint64_t interval = (uint64_t)P.cfg->db_health_interval_ms;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (c->state == C_READY && now >= c->expires && !conn_idle(c)) c->retiring = true;
    if (!conn_idle(c)) continue;
    if (now >= c->expires) {
      conn_close(c, OSB_EUNAVAIL);
    } else if (P.nready > P.cfg->db_pool_min && now - c->last_used >= (uint64_t)P.cfg->db_idle_timeout_ms) {
      conn_close(c, OSB_EUNAVAIL);
    } else if (now - (c->last_used > c->last_checked ? c->last_used : c->last_checked) >= interval &&
               !c->health_pending) {
      item_push(c, item_new(I_HEALTH));
      c->health_pending = true;
      if (!PQsendQueryParams(c->pg, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0) || !send_sync(c) ||
          !flush_out(c)) {
        conn_broken(c, "health check failed");
        continue;
      }
      update_poll(c);
    }
  }
  grow();
  osb__drain();
}

/* ---- backend interface ---- */

static void pg_submit(osb__op_t *op) {
  if (P.closing) {
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
    return;
  }
  if (P.down && P.nready == 0) {
    osb__op_complete(op, OSB_EUNAVAIL, NULL);   /* fail fast while down */
    return;
  }
  /* Nobody waiting ahead and a connection with room: straight to it,
   * without the waiters queue and its timer. */
  conn_t *c = osb_list_empty(&P.waiters) ? pick() : NULL;
  if (c) {
    dispatch(c, op);
    grow();
    return;
  }
  enqueue(op, false);
  pump();
}

static void pg_tx_op(osb__op_t *op) {
  conn_t *c = osb__tx_conn(op->tx);
  if (!c) {
    osb__op_complete(op, OSB_EUNAVAIL, NULL);
    return;
  }
  if (!send_op(c, op)) conn_broken(c, "send failed");
}

static void pg_close(void) {
  if (!P.open) return;
  P.closing = true;
  fail_waiters(OSB_EUNAVAIL);
  while (!osb_list_empty(&P.conns)) conn_close(osb_container_of(P.conns.next, conn_t, link), OSB_EUNAVAIL);
  /* Resubmitted reads landed in the waiters: fail them too. */
  fail_waiters(OSB_EUNAVAIL);
  osb_handle_close((uv_handle_t *)&P.acquire_timer);
  osb_handle_close((uv_handle_t *)&P.retry_timer);
  osb_handle_close((uv_handle_t *)&P.health_timer);
  osb_handle_close((uv_handle_t *)&P.tick_timer);
  osb_core_step_remove("pg");
  P.open = false;
  free(P.resolve_host);
  P.resolve_host = NULL;
}

static bool pg_idle(void) { return true; }

static void pg_stats(osb_db_stats_t *out) {
  out->backend = "postgresql";
  out->up = !(P.down && P.nready == 0) && P.open;
  out->size = P.nready;
  out->connecting = P.nconnecting;
  out->waiting = P.nwaiting;
  out->max = P.cfg ? P.cfg->db_pool_max : 0;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &P.conns) {
    conn_t *c = osb_container_of(pos, conn_t, link);
    if (c->state != C_READY) continue;
    if (conn_idle(c)) out->idle++;
    else out->active++;
  }
}

static bool pg_up(char *reason, size_t len) {
  if (P.down && P.nready == 0) {
    snprintf(reason, len, "%s", P.reason[0] ? P.reason : "unreachable");
    return false;
  }
  snprintf(reason, len, "postgresql: %d/%d connections, %d waiting", P.nready, P.cfg->db_pool_max, P.nwaiting);
  return true;
}

static const osb__backend_t pg_backend = {
  .name = "postgresql",
  .submit = pg_submit,
  .tx_begin = pg_submit,
  .tx_op = pg_tx_op,
  .tx_end = pg_tx_op,
  .close = pg_close,
  .idle = pg_idle,
  .stats = pg_stats,
  .up = pg_up,
};

/* ---- start-up ---- */

int osb__pg_start(const osb_config_t *cfg, const osb__backend_t **out) {
  memset(&P, 0, sizeof(P));
  P.cfg = cfg;
  osb_list_init(&P.conns);
  osb_list_init(&P.waiters);
  char redacted[256];
  osb_config_redact_url(cfg->database_url, redacted, sizeof(redacted));

  /* Migrations and seed: one blocking connection, start-up only. A server
   * that is still starting gets a few seconds. */
  const char *kw[] = { "application_name", "connect_timeout", "dbname", NULL };
  const char *vals[] = { "osbackend-migrate", "5", cfg->database_url, NULL };
  PGconn *mc = NULL;
  uint64_t give_up = uv_hrtime() + 5ULL * 1000000000ULL;
  for (;;) {
    mc = PQconnectdbParams(kw, vals, 1);
    if (mc && PQstatus(mc) == CONNECTION_OK) break;
    char why[200];
    snprintf(why, sizeof(why), "%s", mc ? PQerrorMessage(mc) : "out of memory");
    trim_newline(why);
    if (mc) PQfinish(mc);
    mc = NULL;
    if (uv_hrtime() >= give_up) {
      osb_log(OSB_LOG_ERROR, "db", "cannot connect to %s: %s", redacted, why);
      return OSB_EUNAVAIL;
    }
    osb_log(OSB_LOG_WARN, "db", "waiting for PostgreSQL at %s: %s", redacted, why);
    uv_sleep(250);
  }
  PQsetNoticeProcessor(mc, notice_log, NULL);
  int rc = osb__pg_migrate(mc, true, NULL);
  PQfinish(mc);
  if (rc < 0) return rc;

  uv_loop_t *loop = osb_loop();
  uv_timer_init(loop, &P.acquire_timer);
  uv_timer_init(loop, &P.retry_timer);
  uv_timer_init(loop, &P.health_timer);
  uv_timer_init(loop, &P.tick_timer);
  uv_unref((uv_handle_t *)&P.health_timer);
  uv_unref((uv_handle_t *)&P.tick_timer);
  P.resolve_host = osb__pg_resolvable_host(cfg->database_url);
  P.open = true;
  osb_core_step_add("pg", OSB_STEP_PG, pg_step, NULL);
  uv_timer_start(&P.health_timer, health_tick, (uint64_t)cfg->db_health_interval_ms,
                 (uint64_t)cfg->db_health_interval_ms);
  /* connect deadlines and query deadlines; unref'd, it never keeps the loop alive */
  uv_timer_start(&P.tick_timer, on_tick, TICK_MS, TICK_MS);
  grow();
  osb_log(OSB_LOG_INFO, "db", "postgresql pool %d..%d at %s", cfg->db_pool_min, cfg->db_pool_max, redacted);
  *out = &pg_backend;
  return 0;
}
