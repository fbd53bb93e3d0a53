/* bus_pg.c: the PostgreSQL bus (CLUSTER_BUS=postgres, docs/scale-out.md).
 *
 * Every instance keeps one dedicated, non-pooled libpq connection on the
 * loop (non-blocking connect, uv_poll, PQconsumeInput + PQnotifies) that
 * LISTENs on "osb_bus". Publications travel as NOTIFY payloads:
 *
 *   <kind> <node> <channel> <seq> <ts>[\n<data>]
 *
 *   d  durable, inline       r  durable, by reference (the channel_messages row)
 *   n  non-durable, inline   R  non-durable, by reference (row kept 7 days)
 *   t  transient (no seq)    h  heartbeat      c  "forget my members"
 *   j / l  members joined / left: data = lines "<conn_id> <user_id or ->"
 *
 * Durable: store_db.c calls tx_stored while it queues the row's INSERT, and
 * the pg_notify is queued in the same transaction, right behind it, so it
 * is sent by PostgreSQL only if that transaction commits, in commit order.
 * After the commit publish.c hands the message to this bus, which delivers
 * it to the local hub directly; the echo of our own NOTIFY is ignored.
 *
 * Non-durable: the seq comes from channel_seqs in the same autocommit
 * statement that sends the NOTIFY (one upsert + pg_notify, through the
 * pool), so every instance numbers a channel alike; the local hub gets it
 * when the statement returns. A payload over INLINE_MAX (a NOTIFY carries
 * under 8,000 bytes) is stored in channel_messages and travels by
 * reference; a receiver fetches it by (channel, seq). Transient messages
 * larger than that stay local.
 *
 * Heartbeats and membership go over the dedicated connection, in order
 * (one statement at a time). Every HEARTBEAT_MS an instance sends `h`; the
 * echo proves the connection alive (none within DEAD_MS: reconnect). A
 * node not heard of for NODE_TTL_MS is forgotten with its members. On
 * (re)connect, and when a new node shows up, an instance sends `c` and its
 * full member list, so every instance converges on everyone's members.
 *
 * Failure: a broken connection is closed (poll first, then PQfinish) and
 * retried with backoff (100 ms doubling to 5 s). Once LISTEN is active
 * again the hub catches up (osb_rt_bus_resync): durable channels with
 * subscribers replay from channel_messages, non-durable ones whose seq
 * moved on send a reset frame.
 *
 * State is static (one bus per process) so the health check and metric
 * callbacks never see freed memory; pool queries in flight when the bus is
 * disposed find their context dead and only free it. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "core/config.h"
#include "core/json.h"
#include "db/db.h"
#include "obs/health.h"
#include "obs/log.h"
#include "realtime/internal.h"

#define BUS_CHANNEL "osb_bus"
#define INLINE_MAX 7900
#define HEARTBEAT_MS 5000
#define DEAD_MS 15000
#define NODE_TTL_MS 15000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 5000
#define SEND_QUEUE_MAX 100000

/* ---- statements ---- */

/* Inside the storing transaction, right behind the INSERT: the row just
 * stored (created_at = the publication's ts; $5 the seq when the caller
 * chose it). $1 head ("d node channel "), $2 tail (" ts\n" data, or " ts"). */
static const osb_db_stmt_t Q_TX_NOTIFY = {
  .name = "bus_tx_notify",
  .pg = "SELECT pg_notify('" BUS_CHANNEL "', $1::text || m.seq::text || $2::text) FROM channel_messages m "
        "WHERE m.channel = $3::text AND m.created_at = $4::bigint AND ($5::bigint IS NULL OR m.seq = $5::bigint) "
        "ORDER BY m.seq DESC LIMIT 1",
  .nparams = 5,
  .reads = "channel_messages",
};
/* Non-durable: next seq and the NOTIFY in one statement. */
static const osb_db_stmt_t Q_ND_NOTIFY = {
  .name = "bus_nd_notify",
  .pg = "WITH s AS (INSERT INTO channel_seqs (channel, last_seq) VALUES ($1::text, 1) "
        "ON CONFLICT (channel) DO UPDATE SET last_seq = channel_seqs.last_seq + 1 RETURNING last_seq) "
        "SELECT last_seq, pg_notify('" BUS_CHANNEL "', $2::text || last_seq::text || $3::text) FROM s",
  .nparams = 3,
  .writes = "channel_seqs",
};
/* The same with the data stored for receivers to fetch. */
static const osb_db_stmt_t Q_ND_NOTIFY_REF = {
  .name = "bus_nd_notify_ref",
  .pg = "WITH s AS (INSERT INTO channel_seqs (channel, last_seq) VALUES ($1::text, 1) "
        "ON CONFLICT (channel) DO UPDATE SET last_seq = channel_seqs.last_seq + 1 RETURNING last_seq), "
        "m AS (INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "SELECT $1::text, last_seq, $4::jsonb, $5::text, $6::bigint FROM s) "
        "SELECT last_seq, pg_notify('" BUS_CHANNEL "', $2::text || last_seq::text || $3::text) FROM s",
  .nparams = 6,
  .writes = "channel_seqs,channel_messages",
};
/* Transient. `writes` gives it a pipeline segment of its own (pg.c), so a
 * neighbour's failure cannot abort it. */
static const osb_db_stmt_t Q_NOTIFY = {
  .name = "bus_notify",
  .pg = "SELECT pg_notify('" BUS_CHANNEL "', $1::text)",
  .nparams = 1,
  .writes = "osb_bus",
};
static const osb_db_stmt_t Q_FETCH = {
  .name = "bus_fetch",
  .pg = "SELECT data::text AS data, created_at FROM channel_messages WHERE channel = $1 AND seq = $2::bigint",
  .nparams = 2,
  .reads = "channel_messages",
};

/* ---- state ---- */

typedef struct member {
  char *channel;
  char *user_id;   /* NULL: anonymous */
  uint64_t conn_id;
} member_t;

typedef struct node {
  char *id;
  uint64_t last_ms;      /* loop clock, last heard of */
  member_t *m;
  size_t n, cap;
} node_t;

typedef struct outmsg {
  osb_list_t link;
  size_t len;
  char text[];
} outmsg_t;

typedef enum { S_IDLE = 0, S_RESOLVING, S_CONNECTING, S_LISTENING, S_READY } bstate_t;

/* A pool query in flight: the bus may be gone when it answers. */
typedef struct pq {
  osb_list_t link;
  bool live;
  osb_rt_publish_cb cb;
  void *ud;
  char *channel;
  char *data;
  size_t len;
  uint64_t seq, ts_ms;
  bool stored;
} pq_t;

typedef struct gai_ctx {
  uv_getaddrinfo_t req;
  bool live;
} gai_ctx_t;

static struct {
  osb_rt_bus_t base;
  bool open;             /* between new and dispose */
  uv_loop_t *loop;
  const char *node;
  size_t nodelen;
  char *resolve_host;
  gai_ctx_t *gai;
  PGconn *pg;
  uv_poll_t *poll;
  int fd;
  bstate_t state;
  bool in_flight;        /* a statement on the dedicated connection */
  bool ever_ready;
  uint64_t connect_deadline;
  uint64_t backoff_ms;
  uint64_t last_echo_ms;   /* our own heartbeat came back */
  uint64_t ready_since_ms;
  uv_timer_t *timer;     /* reconnect + heartbeat, 1 per 250 ms */
  uint64_t next_connect_ms, next_beat_ms;
  osb_list_t out;        /* outmsg_t, waiting for the dedicated connection */
  size_t nout;
  osb_list_t pqs;        /* pq_t */
  node_t *nodes;
  size_t nnodes, capnodes;
  int64_t lag_ms;        /* the last publication's publish → receive time (another node's) */
  char reason[200];
  struct {
    osb_series_t *sent, *received, *by_ref, *fetched, *dropped, *reconnects, *echo;
    osb_series_t *lag;
  } st;
} B;

static void bus_connect(void);
static void bus_broken(const char *why);
static void pump_out(void);
static void send_snapshot(void);

/* ---- small helpers ---- */

static void trim(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    char ch = *r == '\n' || *r == '\r' || *r == '\t' ? ' ' : *r;
    if (ch == ' ' && (w == s || w[-1] == ' ')) continue;
    *w++ = ch;
  }
  while (w > s && w[-1] == ' ') w--;
  *w = 0;
}

/* "<kind> <node> <channel> " into buf. */
static int head(char *buf, size_t n, char kind, const char *channel) {
  return snprintf(buf, n, "%c %s %s ", kind, B.node, channel);
}

static pq_t *pq_new(const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  pq_t *q = osb_calloc(1, sizeof(*q));
  q->live = true;
  q->cb = cb;
  q->ud = ud;
  q->channel = osb_strdup(pub->channel);
  if (pub->data) q->data = osb_strndup(pub->data, pub->len);
  q->len = pub->len;
  q->seq = pub->seq;
  q->ts_ms = pub->ts_ms;
  q->stored = pub->stored;
  osb_list_insert_tail(&B.pqs, &q->link);
  return q;
}

static void pq_free(pq_t *q) {
  if (q->live) osb_list_remove(&q->link);
  free(q->channel);
  free(q->data);
  free(q);
}

/* ---- the dedicated connection's queue (heartbeats, members) ---- */

static void enqueue_out(const char *text, size_t len) {
  if (!B.open || B.nout >= SEND_QUEUE_MAX) {
    if (B.open) osb_series_inc(B.st.dropped, 1);
    return;
  }
  outmsg_t *m = osb_malloc(sizeof(*m) + len + 1);
  m->len = len;
  memcpy(m->text, text, len);
  m->text[len] = 0;
  osb_list_insert_tail(&B.out, &m->link);
  B.nout++;
  pump_out();
}

static void drop_out(void) {
  while (!osb_list_empty(&B.out)) {
    outmsg_t *m = osb_container_of(B.out.next, outmsg_t, link);
    osb_list_remove(&m->link);
    free(m);
  }
  B.nout = 0;
}

static void on_poll(uv_poll_t *h, int status, int events);

static void watch(int events) {
  if (B.poll) uv_poll_start(B.poll, events, on_poll);
}

static void pump_out(void) {
  if (B.state != S_READY || B.in_flight || osb_list_empty(&B.out)) return;
  outmsg_t *m = osb_container_of(B.out.next, outmsg_t, link);
  osb_list_remove(&m->link);
  B.nout--;
  const char *vals[1] = {m->text};
  int lens[1] = {(int)m->len};
  int fmts[1] = {0};
  int ok = PQsendQueryParams(B.pg, "SELECT pg_notify('" BUS_CHANNEL "', $1)", 1, NULL, vals, lens, fmts, 0);
  free(m);
  if (!ok) {
    bus_broken("send failed");
    return;
  }
  B.in_flight = true;
  osb_series_inc(B.st.sent, 1);
  int r = PQflush(B.pg);
  if (r < 0) {
    bus_broken("write failed");
    return;
  }
  watch(UV_READABLE | (r == 1 ? UV_WRITABLE : 0));
}

/* ---- nodes and members ---- */

static node_t *node_find(const char *id, size_t len, bool *created) {
  if (created) *created = false;
  for (size_t i = 0; i < B.nnodes; i++)
    if (strlen(B.nodes[i].id) == len && memcmp(B.nodes[i].id, id, len) == 0) return &B.nodes[i];
  if (!created) return NULL;
  *created = true;
  if (B.nnodes == B.capnodes) {
    B.capnodes = B.capnodes ? B.capnodes * 2 : 8;
    B.nodes = osb_realloc(B.nodes, B.capnodes * sizeof(*B.nodes));
  }
  node_t *n = &B.nodes[B.nnodes++];
  memset(n, 0, sizeof(*n));
  n->id = osb_strndup(id, len);
  n->last_ms = osb_now_ms();
  osb_log(OSB_LOG_INFO, "cluster", "instance %s joined the bus", n->id);
  return n;
}

static void member_free(member_t *m) {
  free(m->channel);
  free(m->user_id);
}

static void node_clear(node_t *n) {
  for (size_t i = 0; i < n->n; i++) member_free(&n->m[i]);
  n->n = 0;
}

static void node_remove(size_t i) {
  node_t *n = &B.nodes[i];
  node_clear(n);
  free(n->m);
  free(n->id);
  B.nodes[i] = B.nodes[--B.nnodes];
}

static void nodes_expire(void) {
  uint64_t now = osb_now_ms();
  for (size_t i = 0; i < B.nnodes;) {
    if (B.nodes[i].last_ms + NODE_TTL_MS <= now) {
      osb_log(OSB_LOG_WARN, "cluster", "instance %s silent for %d s: its %zu member(s) dropped", B.nodes[i].id,
              NODE_TTL_MS / 1000, B.nodes[i].n);
      node_remove(i);
    } else {
      i++;
    }
  }
}

static void member_join(node_t *n, const char *channel, const char *user, size_t ulen, uint64_t conn) {
  for (size_t i = 0; i < n->n; i++)
    if (n->m[i].conn_id == conn && strcmp(n->m[i].channel, channel) == 0) return;
  if (n->n == n->cap) {
    n->cap = n->cap ? n->cap * 2 : 16;
    n->m = osb_realloc(n->m, n->cap * sizeof(*n->m));
  }
  member_t *m = &n->m[n->n++];
  m->channel = osb_strdup(channel);
  m->user_id = ulen == 1 && user[0] == '-' ? NULL : osb_strndup(user, ulen);
  m->conn_id = conn;
}

static void member_leave(node_t *n, const char *channel, uint64_t conn) {
  for (size_t i = 0; i < n->n; i++)
    if (n->m[i].conn_id == conn && strcmp(n->m[i].channel, channel) == 0) {
      member_free(&n->m[i]);
      n->m[i] = n->m[--n->n];
      return;
    }
}

/* Lines "<conn_id> <user>" of a j / l payload. */
static void members_apply(node_t *n, const char *channel, bool join, const char *p, const char *end) {
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    const char *sp = memchr(p, ' ', (size_t)(le - p));
    if (sp) {
      uint64_t conn = strtoull(p, NULL, 10);
      if (join) member_join(n, channel, sp + 1, (size_t)(le - sp - 1), conn);
      else member_leave(n, channel, conn);
    }
    p = le + 1;
  }
}

/* ---- receiving ---- */

static void deliver_fetched(void *ud, int err, const osb_db_result_t *res) {
  pq_t *q = ud;
  if (q->live) {
    if (err || osb_db_nrows(res) == 0) {
      osb_log(OSB_LOG_WARN, "cluster", "%s seq %" PRIu64 ": stored message not found (%s)", q->channel, q->seq,
              err ? osb_strerror(err) : "purged");
      osb_series_inc(B.st.dropped, 1);
    } else {
      osb_series_inc(B.st.fetched, 1);
      osb_rt_pub_t pub = {q->channel, osb_db_text(res, 0, 0), osb_db_len(res, 0, 0), q->seq, q->stored, false,
                          (uint64_t)osb_db_int(res, 0, 1)};
      osb__rt_deliver(&pub, NULL, NULL);
    }
  }
  pq_free(q);
}

static void handle_notify(const char *p, size_t len) {
  /* <kind> <node> <channel> <seq> <ts>[\n<data>] */
  const char *end = p + len;
  const char *nl = memchr(p, '\n', len);
  const char *hend = nl ? nl : end;
  const char *f[5];
  size_t fl[5];
  const char *q = p;
  int nf = 0;
  while (nf < 5 && q < hend) {
    const char *sp = memchr(q, ' ', (size_t)(hend - q));
    const char *fe = sp ? sp : hend;
    f[nf] = q;
    fl[nf] = (size_t)(fe - q);
    nf++;
    q = fe + 1;
  }
  if (nf < 5 || fl[0] != 1 || fl[2] == 0 || fl[2] > 190) {
    osb_series_inc(B.st.dropped, 1);
    return;
  }
  char kind = f[0][0];
  osb_series_inc(B.st.received, 1);
  bool self = fl[1] == B.nodelen && memcmp(f[1], B.node, B.nodelen) == 0;
  uint64_t seq = strtoull(f[3], NULL, 10), ts = strtoull(f[4], NULL, 10);
  char channel[200];
  memcpy(channel, f[2], fl[2]);
  channel[fl[2]] = 0;
  const char *data = nl ? nl + 1 : end;
  size_t dlen = (size_t)(end - data);
  if (self) {
    if (kind == 'h') {
      B.last_echo_ms = osb_now_ms();
      osb_series_inc(B.st.echo, 1);
    }
    return;   /* delivered here directly */
  }
  bool fresh;
  node_t *n = node_find(f[1], fl[1], &fresh);
  n->last_ms = osb_now_ms();
  if (ts && (kind == 'd' || kind == 'n' || kind == 't' || kind == 'r' || kind == 'R')) {
    B.lag_ms = (int64_t)osb_wallclock_ms() - (int64_t)ts;
    osb_series_observe(B.st.lag, B.lag_ms > 0 ? (double)B.lag_ms / 1000.0 : 0);
  }
  switch (kind) {
    case 'd':
    case 'n': {
      osb_rt_pub_t pub = {channel, data, dlen, seq, kind == 'd', false, ts};
      osb__rt_deliver(&pub, NULL, NULL);
      break;
    }
    case 't': {
      osb_rt_pub_t pub = {channel, data, dlen, 0, false, true, ts};
      osb__rt_deliver(&pub, NULL, NULL);
      break;
    }
    case 'r':
    case 'R': {
      osb_rt_pub_t pub = {channel, NULL, 0, seq, kind == 'r', false, ts};
      pq_t *pq = pq_new(&pub, NULL, NULL);
      char sq[24];
      snprintf(sq, sizeof(sq), "%" PRIu64, seq);
      const char *params[2] = {channel, sq};
      osb_db_query(&Q_FETCH, params, 2, deliver_fetched, pq);
      break;
    }
    case 'j':
    case 'l':
      members_apply(n, channel, kind == 'j', data, end);
      break;
    case 'c':
      node_clear(n);
      break;
    case 'h':
      break;
    default:
      osb_series_inc(B.st.dropped, 1);
      break;
  }
  if (fresh) send_snapshot();   /* a new instance: tell it who is here */
}

static void became_ready(void) {
  B.state = S_READY;
  B.backoff_ms = 0;
  B.ready_since_ms = B.last_echo_ms = osb_now_ms();
  B.reason[0] = 0;
  bool again = B.ever_ready;
  B.ever_ready = true;
  osb_log(OSB_LOG_INFO, "cluster", "bus %s: listening on %s as %s", again ? "reconnected" : "connected",
          BUS_CHANNEL, B.node);
  B.next_beat_ms = 0;   /* a heartbeat at once, then our members */
  send_snapshot();
  if (again) osb_rt_bus_resync();
}

/* Results of LISTEN / our pg_notify statements; then the notifications. */
static bool read_results(void) {
  while (!PQisBusy(B.pg)) {
    PGresult *r = PQgetResult(B.pg);
    if (!r) {
      if (B.state == S_LISTENING) became_ready();
      else B.in_flight = false;
      break;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      char why[200];
      snprintf(why, sizeof(why), "%s", PQresultErrorMessage(r));
      trim(why);
      PQclear(r);
      bus_broken(why);
      return false;
    }
    PQclear(r);
  }
  PGnotify *nt;
  while (B.pg && (nt = PQnotifies(B.pg))) {
    if (strcmp(nt->relname, BUS_CHANNEL) == 0) handle_notify(nt->extra, strlen(nt->extra));
    PQfreemem(nt);
  }
  return true;
}

/* ---- connecting ---- */

static void close_conn(void) {
  if (B.gai) {
    B.gai->live = false;   /* its callback frees it */
    uv_cancel((uv_req_t *)&B.gai->req);
    B.gai = NULL;
  }
  if (B.poll) {
    uv_poll_stop(B.poll);
    uv_close((uv_handle_t *)B.poll, (uv_close_cb)free);
    B.poll = NULL;
  }
  if (B.pg) PQfinish(B.pg);
  B.pg = NULL;
  B.fd = -1;
  B.in_flight = false;
  B.state = S_IDLE;
}

static void schedule_retry(void) {
  B.backoff_ms = B.backoff_ms ? B.backoff_ms * 2 : BACKOFF_MIN_MS;
  if (B.backoff_ms > BACKOFF_MAX_MS) B.backoff_ms = BACKOFF_MAX_MS;
  B.next_connect_ms = osb_now_ms() + B.backoff_ms;
}

static void bus_broken(const char *why) {
  bool was_ready = B.state == S_READY;
  snprintf(B.reason, sizeof(B.reason), "%s", why && *why ? why : "connection lost");
  trim(B.reason);
  if (was_ready || B.backoff_ms == 0)
    osb_log(OSB_LOG_WARN, "cluster", "bus connection lost: %s; reconnecting", B.reason);
  close_conn();
  /* membership told while down is re-sent as a snapshot on reconnect */
  drop_out();
  schedule_retry();
}

static void connect_poll(void) {
  PostgresPollingStatusType st = PQconnectPoll(B.pg);
  int fd = PQsocket(B.pg);
  if (st != PGRES_POLLING_FAILED && fd >= 0 && fd != B.fd) {
    uv_poll_stop(B.poll);
    uv_close((uv_handle_t *)B.poll, (uv_close_cb)free);
    B.poll = osb_malloc(sizeof(*B.poll));
    B.fd = fd;
    if (uv_poll_init(B.loop, B.poll, fd) != 0) {
      free(B.poll);
      B.poll = NULL;
      bus_broken("poll init failed");
      return;
    }
  }
  switch (st) {
    case PGRES_POLLING_READING: watch(UV_READABLE); break;
    case PGRES_POLLING_WRITING: watch(UV_WRITABLE); break;
    case PGRES_POLLING_OK:
      if (PQsetnonblocking(B.pg, 1) != 0 || !PQsendQuery(B.pg, "LISTEN " BUS_CHANNEL)) {
        bus_broken("LISTEN failed");
        return;
      }
      B.state = S_LISTENING;
      watch(UV_READABLE | (PQflush(B.pg) == 1 ? UV_WRITABLE : 0));
      break;
    case PGRES_POLLING_FAILED:
    default: bus_broken(PQerrorMessage(B.pg)); break;
  }
}

static void on_poll(uv_poll_t *h, int status, int events) {
  OSB_UNUSED(h);
  if (B.state == S_CONNECTING) {
    connect_poll();
    osb_core_wake();   /* the db step runs the completions before the loop sleeps */
    return;
  }
  if (status < 0) {
    bus_broken(uv_strerror(status));
    return;
  }
  if (events & UV_WRITABLE) {
    if (PQflush(B.pg) < 0) {
      bus_broken("write failed");
      return;
    }
  }
  if ((events & UV_READABLE) && (!PQconsumeInput(B.pg) || PQstatus(B.pg) == CONNECTION_BAD)) {
    bus_broken(PQerrorMessage(B.pg));
    osb_core_wake();   /* the db step runs the completions before the loop sleeps */
    return;
  }
  if (!read_results()) {
    osb_core_wake();   /* the db step runs the completions before the loop sleeps */
    return;
  }
  if (B.state == S_READY) pump_out();
  if (B.pg && B.poll) watch(UV_READABLE | (PQflush(B.pg) == 1 ? UV_WRITABLE : 0));
  osb_core_wake();   /* the db step runs the completions before the loop sleeps */
}

static void start_libpq(const char *hosts, const char *addrs) {
  const char *kw[] = {"application_name", "keepalives_idle", "keepalives_interval", "keepalives_count",
                      "dbname", addrs ? "host" : NULL, "hostaddr", NULL};
  const char *vals[] = {"osbackend-bus", "10", "5", "3", osb_cfg->database_url, hosts, addrs, NULL};
  B.pg = PQconnectStartParams(kw, vals, 1);
  if (!B.pg || PQstatus(B.pg) == CONNECTION_BAD) {
    bus_broken(B.pg ? PQerrorMessage(B.pg) : "out of memory");
    return;
  }
  B.fd = PQsocket(B.pg);
  B.poll = osb_malloc(sizeof(*B.poll));
  if (B.fd < 0 || uv_poll_init(B.loop, B.poll, B.fd) != 0) {
    free(B.poll);
    B.poll = NULL;
    bus_broken("no socket");
    return;
  }
  B.state = S_CONNECTING;
  B.connect_deadline = osb_now_ms() + CONNECT_TIMEOUT_MS;
  watch(UV_WRITABLE);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gai_ctx_t *g = osb_container_of(req, gai_ctx_t, req);
  bool live = g->live;
  free(g);
  if (!live) {
    uv_freeaddrinfo(res);
    return;
  }
  B.gai = NULL;
  osb_buf_t hosts = OSB_BUF_INIT, addrs = OSB_BUF_INIT;
  int n = status == 0 ? osb_db_pg_hostaddr_lists(B.resolve_host, res, &hosts, &addrs) : 0;
  uv_freeaddrinfo(res);
  if (n == 0) {
    char why[200];
    snprintf(why, sizeof(why), "could not resolve host \"%s\": %s", B.resolve_host,
             status < 0 ? uv_strerror(status) : "no address");
    B.state = S_IDLE;
    bus_broken(why);
  } else {
    start_libpq(hosts.base, addrs.base);
  }
  osb_buf_free(&hosts);
  osb_buf_free(&addrs);
}

static void bus_connect(void) {
  if (!B.open || B.state != S_IDLE) return;
  if (B.ever_ready) osb_series_inc(B.st.reconnects, 1);
  if (!B.resolve_host) {
    start_libpq(NULL, NULL);
    return;
  }
  gai_ctx_t *g = osb_calloc(1, sizeof(*g));
  g->live = true;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  B.state = S_RESOLVING;
  B.connect_deadline = osb_now_ms() + CONNECT_TIMEOUT_MS;
  B.gai = g;
  int rc = uv_getaddrinfo(B.loop, &g->req, on_resolved, B.resolve_host, NULL, &hints);
  if (rc != 0) {
    free(g);
    B.gai = NULL;
    B.state = S_IDLE;
    bus_broken(uv_strerror(rc));
  }
}

/* ---- the timer: reconnects, heartbeats, node expiry ---- */

static void heartbeat(void) {
  char buf[256];
  int n = snprintf(buf, sizeof(buf), "h %s - 0 %" PRIu64, B.node, osb_wallclock_ms());
  enqueue_out(buf, (size_t)n);
}

static void on_timer(uv_timer_t *t) {
  OSB_UNUSED(t);
  uint64_t now = osb_now_ms();
  if (B.state == S_IDLE && now >= B.next_connect_ms) bus_connect();
  else if ((B.state == S_CONNECTING || B.state == S_RESOLVING || B.state == S_LISTENING) &&
           now >= B.connect_deadline)
    bus_broken("connect timeout");
  if (B.state == S_READY) {
    if (now >= B.next_beat_ms) {
      heartbeat();
      B.next_beat_ms = now + HEARTBEAT_MS;
    }
    if (now - B.last_echo_ms >= DEAD_MS) bus_broken("no heartbeat echo");
  }
  nodes_expire();
  osb_core_wake();   /* the db step runs the completions before the loop sleeps */
}

/* ---- membership out ---- */

typedef struct snap {
  osb_buf_t buf;
  char channel[200];
  bool any;
} snap_t;

static void snap_flush(snap_t *s) {
  if (s->any) enqueue_out(s->buf.base, s->buf.len);
  osb_buf_reset(&s->buf);
  s->any = false;
}

static void snap_member(void *ud, const char *channel, const char *user, uint64_t conn) {
  snap_t *s = ud;
  char line[200];
  int n = snprintf(line, sizeof(line), "%" PRIu64 " %s", conn, user ? user : "-");
  if (s->any && (strcmp(s->channel, channel) != 0 || s->buf.len + (size_t)n + 1 > INLINE_MAX)) snap_flush(s);
  if (!s->any) {
    char h[256];
    int hn = snprintf(h, sizeof(h), "j %s %s 0 %" PRIu64 "\n", B.node, channel, osb_wallclock_ms());
    osb_buf_append(&s->buf, h, (size_t)hn);
    snprintf(s->channel, sizeof(s->channel), "%s", channel);
    s->any = true;
  } else {
    osb_buf_append(&s->buf, "\n", 1);
  }
  osb_buf_append(&s->buf, line, (size_t)n);
}

/* Forget what the others know of us, then tell them everything. */
static void send_snapshot(void) {
  char buf[256];
  int n = snprintf(buf, sizeof(buf), "c %s - 0 %" PRIu64, B.node, osb_wallclock_ms());
  enqueue_out(buf, (size_t)n);
  snap_t s = {OSB_BUF_INIT, "", false};
  osb_rt_foreach_member(snap_member, &s);
  snap_flush(&s);
  osb_buf_free(&s.buf);
}

static void pg_member(osb_rt_bus_t *bus, const char *channel, const char *user_id, uint64_t conn_id, bool join) {
  OSB_UNUSED(bus);
  if (B.state != S_READY) return;   /* the snapshot on reconnect covers it */
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "%c %s %s 0 %" PRIu64 "\n%" PRIu64 " %s", join ? 'j' : 'l', B.node, channel,
                   osb_wallclock_ms(), conn_id, user_id ? user_id : "-");
  if (n > 0 && (size_t)n < sizeof(buf)) enqueue_out(buf, (size_t)n);
}

static void pg_presence(osb_rt_bus_t *bus, const char *channel, json_t *members, bool list, size_t max,
                        size_t *count, size_t *anonymous) {
  OSB_UNUSED(bus);
  nodes_expire();
  for (size_t i = 0; i < B.nnodes; i++) {
    node_t *n = &B.nodes[i];
    for (size_t k = 0; k < n->n; k++) {
      member_t *m = &n->m[k];
      if (strcmp(m->channel, channel) != 0) continue;
      if (!m->user_id) {
        (*anonymous)++;
        continue;
      }
      if (list && json_array_size(members) < max)
        json_array_append_new(members, json_pack("{s:s, s:I, s:s}", "user_id", m->user_id, "conn_id",
                                                 (json_int_t)m->conn_id, "node_id", n->id));
      (*count)++;
    }
  }
}

/* ---- publishing ---- */

static void nd_published(void *ud, int err, const osb_db_result_t *res) {
  pq_t *q = ud;
  if (q->live) {
    if (!err && osb_db_nrows(res) == 0) err = OSB_EDB;
    if (err) {
      osb_log(OSB_LOG_WARN, "cluster", "publishing on %s failed: %s", q->channel, osb_strerror(err));
      if (q->cb) q->cb(q->ud, err, 0);
    } else {
      osb_series_inc(B.st.sent, 1);
      osb_rt_pub_t pub = {q->channel, q->data, q->len, (uint64_t)osb_db_int(res, 0, 0), false, false, q->ts_ms};
      osb__rt_deliver(&pub, q->cb, q->ud);
    }
  } else if (q->cb) {
    q->cb(q->ud, OSB_EUNAVAIL, 0);
  }
  pq_free(q);
}

static void notified(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  OSB_UNUSED(ud);
  if (err && B.open) osb_series_inc(B.st.dropped, 1);
}

static void pg_publish(osb_rt_bus_t *bus, const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  OSB_UNUSED(bus);
  char h[256];
  int hn;
  if (pub->stored) {   /* its NOTIFY left with the commit (pg_tx_stored) */
    osb__rt_deliver(pub, cb, ud);
    return;
  }
  if (pub->transient) {
    uint64_t ts = pub->ts_ms ? pub->ts_ms : osb_wallclock_ms();
    hn = snprintf(h, sizeof(h), "t %s %s 0 %" PRIu64 "\n", B.node, pub->channel, ts);
    if ((size_t)hn + pub->len <= INLINE_MAX) {
      osb_buf_t b = OSB_BUF_INIT;
      osb_buf_append(&b, h, (size_t)hn);
      osb_buf_append(&b, pub->data, pub->len);
      osb_db_param_t p[1] = {{OSB_DB_P_TEXT, b.base, b.len}};
      osb_db_queryv(&Q_NOTIFY, p, 1, notified, NULL);
      osb_series_inc(B.st.sent, 1);
      osb_buf_free(&b);
    } else {
      osb_series_inc(B.st.dropped, 1);   /* too large for a NOTIFY: this instance only */
    }
    osb__rt_deliver(pub, cb, ud);
    return;
  }
  /* Non-durable: the cluster seq and the NOTIFY in one statement. */
  uint64_t ts = osb_wallclock_ms();
  osb_rt_pub_t copy = *pub;
  copy.ts_ms = ts;
  pq_t *q = pq_new(&copy, cb, ud);
  hn = snprintf(h, sizeof(h), "%c %s %s ", 'n', B.node, pub->channel);
  char tail[40];
  int tn = snprintf(tail, sizeof(tail), " %" PRIu64, ts);
  if ((size_t)hn + 24 + (size_t)tn + 1 + pub->len <= INLINE_MAX) {
    osb_buf_t t = OSB_BUF_INIT;
    osb_buf_append(&t, tail, (size_t)tn);
    osb_buf_append(&t, "\n", 1);
    osb_buf_append(&t, pub->data, pub->len);
    osb_db_param_t p[3] = {{OSB_DB_P_TEXT, pub->channel, strlen(pub->channel)},
                           {OSB_DB_P_TEXT, h, (size_t)hn},
                           {OSB_DB_P_TEXT, t.base, t.len}};
    osb_db_queryv(&Q_ND_NOTIFY, p, 3, nd_published, q);
    osb_buf_free(&t);
  } else {
    h[0] = 'R';
    char ts_s[24];
    snprintf(ts_s, sizeof(ts_s), "%" PRIu64, ts);
    osb_db_param_t p[6] = {{OSB_DB_P_TEXT, pub->channel, strlen(pub->channel)},
                           {OSB_DB_P_TEXT, h, (size_t)hn},
                           {OSB_DB_P_TEXT, tail, (size_t)tn},
                           {OSB_DB_P_TEXT, pub->data, pub->len},
                           {OSB_DB_P_TEXT, B.node, B.nodelen},
                           {OSB_DB_P_TEXT, ts_s, strlen(ts_s)}};
    osb_db_queryv(&Q_ND_NOTIFY_REF, p, 6, nd_published, q);
    osb_series_inc(B.st.by_ref, 1);
  }
}

static void pg_tx_stored(osb_rt_bus_t *bus, osb_db_tx_t *tx, const osb_rt_pub_t *pub) {
  OSB_UNUSED(bus);
  char h[256], ts[24], sq[24];
  bool inline_ok = 256 + pub->len <= INLINE_MAX;
  int hn = head(h, sizeof(h), inline_ok ? 'd' : 'r', pub->channel);
  snprintf(ts, sizeof(ts), "%" PRIu64, pub->ts_ms);
  snprintf(sq, sizeof(sq), "%" PRIu64, pub->seq);
  osb_buf_t t = OSB_BUF_INIT;
  osb_buf_puts(&t, " ");
  osb_buf_puts(&t, ts);
  if (inline_ok) {
    osb_buf_append(&t, "\n", 1);
    osb_buf_append(&t, pub->data, pub->len);
  } else {
    osb_series_inc(B.st.by_ref, 1);
  }
  osb_db_param_t p[5] = {{OSB_DB_P_TEXT, h, (size_t)hn},
                         {OSB_DB_P_TEXT, t.base, t.len},
                         {OSB_DB_P_TEXT, pub->channel, strlen(pub->channel)},
                         {OSB_DB_P_TEXT, ts, strlen(ts)},
                         pub->seq ? (osb_db_param_t){OSB_DB_P_TEXT, sq, strlen(sq)}
                                  : (osb_db_param_t){OSB_DB_P_NULL, NULL, 0}};
  osb_db_tx_queryv(tx, &Q_TX_NOTIFY, p, 5, NULL, NULL);
  osb_series_inc(B.st.sent, 1);
  osb_buf_free(&t);
}

/* ---- status, health ---- */

static json_t *pg_status(osb_rt_bus_t *bus) {
  OSB_UNUSED(bus);
  nodes_expire();
  json_t *inst = json_array();
  json_array_append_new(inst, json_pack("{s:s, s:b, s:I}", "node_id", B.node, "self", true, "last_seen_ms", (json_int_t)0));
  uint64_t now = osb_now_ms();
  for (size_t i = 0; i < B.nnodes; i++)
    json_array_append_new(inst, json_pack("{s:s, s:b, s:I, s:I}", "node_id", B.nodes[i].id, "self", false,
                                          "last_seen_ms", (json_int_t)(now - B.nodes[i].last_ms), "members",
                                          (json_int_t)B.nodes[i].n));
  return json_pack("{s:s, s:s, s:b, s:I, s:o, s:I}", "node_id", B.node, "bus", "postgres", "connected",
                   B.state == S_READY, "lag_ms", (json_int_t)B.lag_ms, "instances", inst, "queued",
                   (json_int_t)B.nout);
}

static osb_health_status_t health(void *ud, char *reason, size_t len) {
  OSB_UNUSED(ud);
  if (!B.open) {
    snprintf(reason, len, "bus closed");
    return OSB_HEALTH_WARN;
  }
  nodes_expire();
  if (B.state != S_READY) {
    snprintf(reason, len, "postgres bus %s: %s", B.ever_ready ? "reconnecting" : "connecting",
             B.reason[0] ? B.reason : "in progress");
    return OSB_HEALTH_WARN;
  }
  snprintf(reason, len, "postgres bus connected as %s; instances seen: %zu; lag %" PRId64 " ms", B.node,
           B.nnodes + 1, B.lag_ms);
  return OSB_HEALTH_PASS;
}

static double m_instances(void *ud) {
  OSB_UNUSED(ud);
  return B.open ? (double)(B.nnodes + 1) : 0;
}
static double m_connected(void *ud) {
  OSB_UNUSED(ud);
  return B.open && B.state == S_READY ? 1 : 0;
}

/* ---- lifetime ---- */

static void pg_dispose(osb_rt_bus_t *bus) {
  OSB_UNUSED(bus);
  if (!B.open) return;
  B.open = false;
  close_conn();
  drop_out();
  if (B.timer) {
    uv_timer_stop(B.timer);
    uv_close((uv_handle_t *)B.timer, (uv_close_cb)free);
    B.timer = NULL;
  }
  while (!osb_list_empty(&B.pqs)) {   /* they answer later and only free */
    pq_t *q = osb_container_of(B.pqs.next, pq_t, link);
    osb_list_remove(&q->link);
    q->live = false;
  }
  while (B.nnodes) node_remove(B.nnodes - 1);
  free(B.nodes);
  B.nodes = NULL;
  B.capnodes = 0;
  free(B.resolve_host);
  B.resolve_host = NULL;
  osb_health_set("cluster", OSB_HEALTH_WARN, "bus closed", false);
}

osb_rt_bus_t *osb_rt_bus_pg_new(uv_loop_t *loop) {
  osb_assert(!B.open && osb_cfg && osb_cfg->database_url);
  memset(&B, 0, sizeof(B));
  B.base.name = "postgres";
  B.base.publish = pg_publish;
  B.base.dispose = pg_dispose;
  B.base.tx_stored = pg_tx_stored;
  B.base.member = pg_member;
  B.base.presence = pg_presence;
  B.base.status = pg_status;
  B.base.cluster_seqs = true;
  B.open = true;
  B.loop = loop;
  B.node = osb_cfg->cluster_node_id;
  B.nodelen = strlen(B.node);
  B.fd = -1;
  B.resolve_host = osb_db_pg_resolvable_host(osb_cfg->database_url);
  osb_list_init(&B.out);
  osb_list_init(&B.pqs);
  osb_metric_t *m = osb_metric_counter("osb_bus_messages_total", "PostgreSQL bus notifications by direction",
                                       "direction");
  B.st.sent = osb_metric_series1(m, "sent");
  B.st.received = osb_metric_series1(m, "received");
  B.st.echo = osb_metric_series1(m, "echo");
  B.st.by_ref = osb_metric_series0(osb_metric_counter(
      "osb_bus_by_reference_total", "Publications too large for a NOTIFY, sent by reference to a stored row", NULL));
  B.st.fetched = osb_metric_series0(osb_metric_counter(
      "osb_bus_fetched_total", "Stored rows fetched for publications received by reference", NULL));
  B.st.dropped = osb_metric_series0(osb_metric_counter(
      "osb_bus_dropped_total", "Bus messages not sent or not usable (too large, malformed, failed)", NULL));
  B.st.reconnects = osb_metric_series0(osb_metric_counter(
      "osb_bus_reconnects_total", "Reconnections of the bus's LISTEN connection", NULL));
  static const double lag_bounds[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
  B.st.lag = osb_metric_series0(osb_metric_histogram("osb_bus_lag_seconds",
                                                     "Publish to receive time of other instances' publications",
                                                     NULL, lag_bounds, OSB_ARRAY_LEN(lag_bounds)));
  osb_metric_gauge_fn("osb_cluster_instances", "Live instances seen on the bus, this one included", m_instances,
                      NULL);
  osb_metric_gauge_fn("osb_bus_connected", "1 while the bus's LISTEN connection is up", m_connected, NULL);
  osb_health_register("cluster", health, NULL, false);
  B.timer = osb_malloc(sizeof(*B.timer));
  uv_timer_init(loop, B.timer);
  uv_timer_start(B.timer, on_timer, 250, 250);
  uv_unref((uv_handle_t *)B.timer);
  bus_connect();
  return &B.base;
}
