/* store_db.c: durable channel history in the database (channel_messages,
 * PRIMARY KEY (channel, seq)), through db.h, so PostgreSQL and SQLite both
 * work. Rows older than the retention are purged every few minutes.
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

static const osb_db_stmt_t Q_APPEND = {
  .name = "rt_msg_append",
  .pg = "INSERT INTO channel_messages (channel, seq, data, origin, created_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
  .nparams = 5,
  .writes = "channel_messages",
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

static const osb_db_stmt_t Q_LAST = {
  .name = "rt_msg_last",
  .pg = "SELECT COALESCE(max(seq), 0) AS seq FROM channel_messages WHERE channel = $1",
  .nparams = 1,
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
  osb_rt_done_cb done_cb;
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

static void appended(void *ud, int err, const osb_db_result_t *res) {
  pending_t *p = ud;
  if (err) osb_log(OSB_LOG_WARN, "realtime", "storing a channel message failed: %s", osb_strerror(err));
  if (p->live && p->done_cb) p->done_cb(p->ud, err);
  pending_free(p);
}

static void db_append(osb_rt_store_t *st, const char *channel, const osb_rt_row_t *row,
                      osb_rt_done_cb cb, void *ud) {
  pending_t *pd = pending_new((dbstore_t *)st, ud);
  pd->done_cb = cb;
  char seq[24], ts[24];
  snprintf(seq, sizeof(seq), "%" PRIu64, row->seq);
  snprintf(ts, sizeof(ts), "%" PRIu64, row->ts_ms);
  osb_db_param_t p[5] = {
    {OSB_DB_P_TEXT, channel, strlen(channel)},
    {OSB_DB_P_TEXT, seq, strlen(seq)},
    {OSB_DB_P_TEXT, row->data, row->len},
    {osb_cfg && osb_cfg->cluster_node_id ? OSB_DB_P_TEXT : OSB_DB_P_NULL,
     osb_cfg ? osb_cfg->cluster_node_id : NULL,
     osb_cfg && osb_cfg->cluster_node_id ? strlen(osb_cfg->cluster_node_id) : 0},
    {OSB_DB_P_TEXT, ts, strlen(ts)},
  };
  osb_db_queryv(&Q_APPEND, p, 5, appended, pd);
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
  pending_t *p = pending_new((dbstore_t *)st, ud);
  p->seq_cb = cb;
  const char *params[1] = {channel};
  osb_db_query(&Q_LAST, params, 1, lasted, p);
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
