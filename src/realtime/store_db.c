/* store_db.c: durable channel history in the database (channel_messages,
 * PRIMARY KEY (channel, seq)), through db.h, so PostgreSQL and SQLite both
 * work, and the seqs of durable channels, taken from the database in the
 * transaction that stores the row. Rows older than the retention are
 * purged every few minutes.
 *
 * db.h callbacks always run later on the loop thread. A query still in
 * flight when the store is disposed finds its context cancelled and frees
 * it without calling back (the realtime.h store contract). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "core/config.h"
#include "db/db.h"
#include "obs/log.h"
#include "realtime/internal.h"

#define RETENTION_MS (7ull * 24 * 3600 * 1000)
#define PURGE_EVERY_MS (10 * 60 * 1000)

/* ---- seqs from the database ----
 * A durable channel's seq is taken inside the transaction that stores the
 * message, from the counter of its namespace (internal.h,
 * osb__rt_seq_src_t). On PostgreSQL the UPDATE / upsert holds the counter
 * row's lock until COMMIT, so concurrent publishers of one channel are
 * serialized and get consecutive seqs in commit order; on SQLite the one
 * writer runs transactions one at a time. A rolled-back transaction gives
 * its seq back. The row is then inserted by reading the counter again in
 * the same transaction (INSERT ... SELECT), so both statements can be
 * queued at once and the caller may commit without waiting for them. */
static const osb_db_stmt_t Q_NEXT_CHANNEL = {
  .name = "rt_seq_next_channel",
  .pg = "INSERT INTO channel_seqs (channel, last_seq) VALUES ($1, 1) "
        "ON CONFLICT (channel) DO UPDATE SET last_seq = channel_seqs.last_seq + 1 RETURNING last_seq",
  .nparams = 1,
  .writes = "channel_seqs",
};
static const osb_db_stmt_t Q_NEXT_USER = {
  .name = "rt_seq_next_user",
  .pg = "UPDATE users SET notify_seq = notify_seq + 1 WHERE id = $1 RETURNING notify_seq AS last_seq",
  .nparams = 1,
  .writes = "users",
};
static const osb_db_stmt_t Q_NEXT_CONV = {
  .name = "rt_seq_next_conversation",
  .pg = "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
  .nparams = 1,
  .writes = "conversations",
};

/* $1 channel, $2 data, $3 origin, $4 created_at, $5 owner id. */
static const osb_db_stmt_t Q_INS_CHANNEL = {
  .name = "rt_msg_insert_channel",
  .pg = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "SELECT $1::text, last_seq, $2::jsonb, $3::text, $4::bigint FROM channel_seqs "
        "WHERE channel = $1::text AND $5::text IS NULL RETURNING seq",
  .sqlite = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
            "SELECT ?1, last_seq, ?2, ?3, CAST(?4 AS INTEGER) FROM channel_seqs "
            "WHERE channel = ?1 AND ?5 IS NULL RETURNING seq",
  .nparams = 5,
  .writes = "channel_messages",
};
static const osb_db_stmt_t Q_INS_USER = {
  .name = "rt_msg_insert_user",
  .pg = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "SELECT $1::text, notify_seq, $2::jsonb, $3::text, $4::bigint FROM users "
        "WHERE id = $5::text RETURNING seq",
  .sqlite = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
            "SELECT ?1, notify_seq, ?2, ?3, CAST(?4 AS INTEGER) FROM users "
            "WHERE id = ?5 RETURNING seq",
  .nparams = 5,
  .writes = "channel_messages",
};
static const osb_db_stmt_t Q_INS_CONV = {
  .name = "rt_msg_insert_conversation",
  .pg = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "SELECT $1::text, last_seq, $2::jsonb, $3::text, $4::bigint FROM conversations "
        "WHERE id = $5::text RETURNING seq",
  .sqlite = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
            "SELECT ?1, last_seq, ?2, ?3, CAST(?4 AS INTEGER) FROM conversations "
            "WHERE id = ?5 RETURNING seq",
  .nparams = 5,
  .writes = "channel_messages",
};
/* A seq the caller took: a plain INSERT, so a duplicate is a unique
 * violation (OSB_ECONFLICT), never silently dropped. */
static const osb_db_stmt_t Q_INS_AT = {
  .name = "rt_msg_insert_at",
  .pg = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "VALUES ($1, $2::bigint, $3::jsonb, $4, $5::bigint) RETURNING seq",
  .sqlite = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
            "VALUES (?1, CAST(?2 AS INTEGER), ?3, ?4, CAST(?5 AS INTEGER)) RETURNING seq",
  .nparams = 5,
  .writes = "channel_messages",
};

/* The last committed seq: the counter itself. */
static const osb_db_stmt_t Q_LAST_CHANNEL = {
  .name = "rt_seq_last_channel",
  .pg = "SELECT last_seq FROM channel_seqs WHERE channel = $1",
  .nparams = 1,
  .reads = "channel_seqs",
};
static const osb_db_stmt_t Q_LAST_USER = {
  .name = "rt_seq_last_user",
  .pg = "SELECT notify_seq AS last_seq FROM users WHERE id = $1",
  .nparams = 1,
  .reads = "users",
};
static const osb_db_stmt_t Q_LAST_CONV = {
  .name = "rt_seq_last_conversation",
  .pg = "SELECT last_seq FROM conversations WHERE id = $1",
  .nparams = 1,
  .reads = "conversations",
};

static const osb_db_stmt_t Q_RANGE = {
  .name = "rt_msg_range",
  .pg = "SELECT seq, data::text AS data, created_at FROM channel_messages "
        "WHERE channel = $1 AND seq > $2::bigint ORDER BY seq LIMIT $3::bigint",
  .sqlite = "SELECT seq, data, created_at FROM channel_messages "
            "WHERE channel = ?1 AND seq > CAST(?2 AS INTEGER) ORDER BY seq LIMIT CAST(?3 AS INTEGER)",
  .nparams = 3,
  .reads = "channel_messages",
};

static const osb_db_stmt_t Q_PURGE = {
  .name = "rt_msg_purge",
  .pg = "DELETE FROM channel_messages WHERE created_at < $1::bigint",
  .sqlite = "DELETE FROM channel_messages WHERE created_at < CAST(?1 AS INTEGER)",
  .nparams = 1,
  .writes = "channel_messages",
};

typedef struct dbstore dbstore_t;

/* One query in flight. `live` is cleared by dispose. */
typedef struct pending {
  osb_list_t link;
  bool live;
  osb_rt_rows_cb rows_cb;
  osb_rt_seq_cb seq_cb;
  void *ud;
} pending_t;

struct dbstore {
  osb_rt_store_t base;
  osb_list_t pending;
};

/* Static storage (main's final uv_walk may close it); one database store
 * per process. */
static uv_timer_t purge_timer;
static bool purge_started;

static pending_t *pending_new(dbstore_t *s, void *ud) {
  pending_t *p = osb_calloc(1, sizeof(*p));
  p->live = true;
  p->ud = ud;
  osb_list_insert_tail(&s->pending, &p->link);
  return p;
}

static void pending_free(pending_t *p) {
  osb_list_remove(&p->link);
  free(p);
}

/* ---- storing inside a transaction ---- */

static const osb_db_stmt_t *const NEXT[] = {&Q_NEXT_CHANNEL, &Q_NEXT_USER, &Q_NEXT_CONV};
static const osb_db_stmt_t *const INS[] = {&Q_INS_CHANNEL, &Q_INS_USER, &Q_INS_CONV};
static const osb_db_stmt_t *const LAST[] = {&Q_LAST_CHANNEL, &Q_LAST_USER, &Q_LAST_CONV};

typedef struct txstore {
  osb_rt_seq_cb cb;
  void *ud;
} txstore_t;

static void next_taken(void *ud, int err, const osb_db_result_t *res) {
  txstore_t *t = ud;
  if (err == 0 && osb_db_nrows(res) == 0) err = OSB_ENOTFOUND;   /* no owner row */
  uint64_t seq = err ? 0 : (uint64_t)osb_db_int(res, 0, 0);
  if (t->cb) t->cb(t->ud, err, seq);
  free(t);
}

static void row_stored(void *ud, int err, const osb_db_result_t *res) {
  txstore_t *t = ud;
  if (err == 0 && osb_db_nrows(res) == 0) err = OSB_ENOTFOUND;   /* no owner row */
  if (err && err != OSB_ENOTFOUND)
    osb_log(OSB_LOG_WARN, "realtime", "storing a channel message failed: %s", osb_strerror(err));
  uint64_t seq = err ? 0 : (uint64_t)osb_db_int(res, 0, 0);
  if (t->cb) t->cb(t->ud, err, seq);
  free(t);
}

static osb_db_param_t origin_param(void) {
  const char *node = osb_cfg ? osb_cfg->cluster_node_id : NULL;
  return (osb_db_param_t){node ? OSB_DB_P_TEXT : OSB_DB_P_NULL, node, node ? strlen(node) : 0};
}

void osb__rt_tx_next_seq(osb_db_tx_t *tx, const osb__rt_ns_t *ns, const char *sfx, osb_rt_seq_cb cb,
                         void *ud) {
  osb_assert(ns->durable && ns->seq_src < OSB_ARRAY_LEN(NEXT));
  txstore_t *t = osb_calloc(1, sizeof(*t));
  t->cb = cb;
  t->ud = ud;
  /* channel_seqs is keyed by the full name: ns + ":" + suffix */
  char name[200];
  const char *key = sfx;
  if (ns->seq_src == OSB__RT_SEQ_CHANNEL) {
    snprintf(name, sizeof(name), "%s:%s", ns->name, sfx);
    key = name;
  }
  const char *p[1] = {key};
  osb_db_tx_query(tx, NEXT[ns->seq_src], p, 1, next_taken, t);
}

/* The bus carries the row to the other instances from inside tx (the
 * postgres bus queues its pg_notify here), so it leaves only on commit. */
static void bus_tx_stored(osb_db_tx_t *tx, const char *channel, uint64_t seq, const char *data, size_t len,
                          uint64_t ts_ms) {
  osb_rt_bus_t *bus = osb__rt ? osb__rt->bus : NULL;
  if (!bus || !bus->tx_stored) return;
  osb_rt_pub_t pub = {channel, data, len, seq, true, false, ts_ms};
  bus->tx_stored(bus, tx, &pub);
}

void osb__rt_tx_store(osb_db_tx_t *tx, const osb__rt_ns_t *ns, const char *channel, const char *sfx,
                      uint64_t seq, const char *data, size_t len, uint64_t ts_ms, osb_rt_seq_cb cb,
                      void *ud) {
  osb_assert(ns->durable && ns->seq_src < OSB_ARRAY_LEN(INS));
  txstore_t *t = osb_calloc(1, sizeof(*t));
  t->cb = cb;
  t->ud = ud;
  char ts[24], sq[24];
  snprintf(ts, sizeof(ts), "%" PRIu64, ts_ms);
  if (seq) {
    snprintf(sq, sizeof(sq), "%" PRIu64, seq);
    osb_db_param_t p[5] = {
      {OSB_DB_P_TEXT, channel, strlen(channel)},
      {OSB_DB_P_TEXT, sq, strlen(sq)},
      {OSB_DB_P_TEXT, data, len},
      origin_param(),
      {OSB_DB_P_TEXT, ts, strlen(ts)},
    };
    osb_db_tx_queryv(tx, &Q_INS_AT, p, 5, row_stored, t);
    bus_tx_stored(tx, channel, seq, data, len, ts_ms);
    return;
  }
  const char *key = ns->seq_src == OSB__RT_SEQ_CHANNEL ? channel : sfx;
  const char *np[1] = {key};
  osb_db_tx_query(tx, NEXT[ns->seq_src], np, 1, NULL, NULL);
  osb_db_param_t p[5] = {
    {OSB_DB_P_TEXT, channel, strlen(channel)},
    {OSB_DB_P_TEXT, data, len},
    origin_param(),
    {OSB_DB_P_TEXT, ts, strlen(ts)},
    ns->seq_src == OSB__RT_SEQ_CHANNEL ? (osb_db_param_t){OSB_DB_P_NULL, NULL, 0}
                                       : (osb_db_param_t){OSB_DB_P_TEXT, sfx, strlen(sfx)},
  };
  osb_db_tx_queryv(tx, INS[ns->seq_src], p, 5, row_stored, t);
  bus_tx_stored(tx, channel, 0, data, len, ts_ms);
}

/* ---- append: a transaction of its own ---- */

typedef struct appendop {
  pending_t *p;
  char *channel;
  char *data;
  size_t len;
  uint64_t ts_ms;
  osb_db_tx_t *tx;
  int err;
  uint64_t seq;
} appendop_t;

static void append_finish(appendop_t *a, int err, uint64_t seq) {
  pending_t *p = a->p;
  if (p->live && p->seq_cb) p->seq_cb(p->ud, err, err ? 0 : seq);
  pending_free(p);
  free(a->channel);
  free(a->data);
  free(a);
}

static void append_committed(void *ud, int err, const osb_db_result_t *res) {
  appendop_t *a = ud;
  if (err == 0 && a->err) err = a->err;
  append_finish(a, err, a->seq);
}

static void append_stored(void *ud, int err, uint64_t seq) {
  appendop_t *a = ud;
  a->err = err;
  a->seq = seq;
}

static void append_begun(void *ud, int err, osb_db_tx_t *tx) {
  appendop_t *a = ud;
  if (err) {
    append_finish(a, err, 0);
    return;
  }
  const char *sfx;
  osb__rt_ns_t *ns = osb__rt_ns_lookup(a->channel, strlen(a->channel), &sfx);
  osb__rt_tx_store(tx, ns, a->channel, sfx, 0, a->data, a->len, a->ts_ms, append_stored, a);
  /* Queued behind the store statements; an OSB_ENOTFOUND there changes
   * nothing, so committing is harmless and reports it (append_committed). */
  osb_db_tx_commit(tx, append_committed, a);
}

static void db_append(osb_rt_store_t *st, const char *channel, const osb_rt_row_t *row,
                      osb_rt_seq_cb cb, void *ud) {
  const osb__rt_ns_t *ns = osb__rt_ns_lookup(channel, strlen(channel), NULL);
  if (!ns || !ns->durable) {
    cb(ud, OSB_EINVAL, 0);
    return;
  }
  pending_t *pd = pending_new((dbstore_t *)st, ud);
  pd->seq_cb = cb;
  appendop_t *a = osb_calloc(1, sizeof(*a));
  a->p = pd;
  a->channel = osb_strdup(channel);
  a->data = osb_strndup(row->data, row->len);
  a->len = row->len;
  a->ts_ms = row->ts_ms;
  osb_db_tx_begin(append_begun, a);
}

static void ranged(void *ud, int err, const osb_db_result_t *res) {
  pending_t *p = ud;
  if (p->live) {
    if (err) {
      p->rows_cb(p->ud, err, NULL, 0);
    } else {
      size_t n = osb_db_nrows(res);
      osb_rt_row_t *rows = osb_malloc(sizeof(*rows) * (n ? n : 1));
      for (size_t i = 0; i < n; i++) {
        rows[i].seq = (uint64_t)osb_db_int(res, i, 0);
        rows[i].data = osb_db_text(res, i, 1);
        rows[i].len = osb_db_len(res, i, 1);
        rows[i].ts_ms = (uint64_t)osb_db_int(res, i, 2);
        if (!rows[i].data) {   /* NOT NULL in the schema; treat as a hole */
          n = i;
          break;
        }
      }
      p->rows_cb(p->ud, 0, rows, n);
      free(rows);
    }
  }
  pending_free(p);
}

static void db_range(osb_rt_store_t *st, const char *channel, uint64_t since, size_t limit,
                     osb_rt_rows_cb cb, void *ud) {
  pending_t *p = pending_new((dbstore_t *)st, ud);
  p->rows_cb = cb;
  char s[24], l[24];
  snprintf(s, sizeof(s), "%" PRIu64, since);
  snprintf(l, sizeof(l), "%zu", limit);
  const char *params[3] = {channel, s, l};
  osb_db_query(&Q_RANGE, params, 3, ranged, p);
}

static void lasted(void *ud, int err, const osb_db_result_t *res) {
  pending_t *p = ud;
  if (p->live) {
    if (err) p->seq_cb(p->ud, err, 0);
    else p->seq_cb(p->ud, 0, osb_db_nrows(res) ? (uint64_t)osb_db_int(res, 0, 0) : 0);
  }
  pending_free(p);
}

static void db_last_seq(osb_rt_store_t *st, const char *channel, osb_rt_seq_cb cb, void *ud) {
  const char *sfx;
  const osb__rt_ns_t *ns = osb__rt_ns_lookup(channel, strlen(channel), &sfx);
  if (!ns) {
    cb(ud, OSB_EINVAL, 0);
    return;
  }
  /* A non-durable channel has a counter only when the bus numbers it
   * cluster-wide (channel_seqs, bus_pg.c). */
  uint8_t src = ns->durable ? ns->seq_src : OSB__RT_SEQ_CHANNEL;
  pending_t *p = pending_new((dbstore_t *)st, ud);
  p->seq_cb = cb;
  const char *params[1] = {src == OSB__RT_SEQ_CHANNEL ? channel : sfx};
  osb_db_query(LAST[src], params, 1, lasted, p);
}

static void purged(void *ud, int err, const osb_db_result_t *res) {
  if (err) osb_log(OSB_LOG_WARN, "realtime", "purging old channel messages failed: %s", osb_strerror(err));
}

static void purge_cb(uv_timer_t *t) {
  char before[24];
  snprintf(before, sizeof(before), "%" PRIu64, (uint64_t)(osb_wallclock_ms() - RETENTION_MS));
  const char *params[1] = {before};
  osb_db_query(&Q_PURGE, params, 1, purged, NULL);
}

static void db_dispose(osb_rt_store_t *st) {
  dbstore_t *s = (dbstore_t *)st;
  /* Queries in flight keep their context; it no longer calls back. */
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &s->pending) {
    pending_t *p = osb_container_of(pos, pending_t, link);
    p->live = false;
    osb_list_remove(&p->link);
  }
  if (purge_started && !uv_is_closing((uv_handle_t *)&purge_timer)) uv_close((uv_handle_t *)&purge_timer, NULL);
  free(s);
}

osb_rt_store_t *osb_rt_store_db_new(uv_loop_t *loop) {
  dbstore_t *s = osb_calloc(1, sizeof(*s));
  s->base.name = "database";
  s->base.append = db_append;
  s->base.range = db_range;
  s->base.last_seq = db_last_seq;
  s->base.dispose = db_dispose;
  osb_list_init(&s->pending);
  if (loop && !purge_started) {
    uv_timer_init(loop, &purge_timer);
    uv_timer_start(&purge_timer, purge_cb, PURGE_EVERY_MS, PURGE_EVERY_MS);
    uv_unref((uv_handle_t *)&purge_timer);
    purge_started = true;
  }
  return &s->base;
}
