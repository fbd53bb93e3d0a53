/* realtime.h: channels, fan-out, resume and presence over /ws.
 *
 * The hub keeps a table of channels named "<namespace>:<suffix>". Each
 * namespace (market, notify, chat, agents, dashboard) says who may read,
 * who may write, whether its channels are durable (kept in the database,
 * table channel_messages) and how much history stays in memory. Every
 * channel has a monotonically increasing `seq`; a client that subscribes
 * with `since` gets exactly the messages it missed, in order, before live
 * ones, or `recovered: false` when they are no longer available. The wire
 * protocol is documented in docs/protocol.md.
 *
 * A publication is serialized once and framed once; every subscriber's
 * output queue takes a reference to the same frame (STYLE §5). Publishing
 * never waits for a subscriber: a connection past WS_SEND_BUFFER_BYTES is
 * closed with 1013 by the WebSocket layer and counted here.
 *
 * All publications go through a bus (osb_rt_bus_t). The in-process bus
 * delivers straight to the local hub; a cross-instance bus (PostgreSQL
 * LISTEN/NOTIFY) can replace it without touching callers.
 *
 * Loop thread only. */
#ifndef OSB_REALTIME_H
#define OSB_REALTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"   /* osb_role_t */

struct uv_loop_s;
typedef struct json_t json_t;
typedef struct osb_db_tx osb_db_tx_t;   /* db/db.h */

/* ---- who is asking ----
 * A resolved principal, borrowed: the strings stay owned by the caller and
 * are valid only for the duration of the call that receives them.
 * user_id == NULL means anonymous. */
typedef struct osb_rt_who {
  const char *user_id;
  const char *email;
  osb_role_t role;
} osb_rt_who_t;

/* ---- start and stop ----
 * osb_rt_start: after osb_config_load, osb_metrics_init, osb_db_init and
 * the auth module, before the HTTP server listens. Builds the hub with the
 * limits of osb_cfg, the in-process bus and an in-memory message store
 * (main then installs the database one: osb_rt_set_store(
 * osb_rt_store_db_new(loop))), installs the /ws handler with
 * osb_ws_set_handler() and registers the "realtime" health component.
 * Returns 0. */
int osb_rt_start(struct uv_loop_s *loop);
/* Free every channel, history entry and the store/bus. Call once the loop
 * is done (every WebSocket's on_close ran), before osb_metrics_reset. */
void osb_rt_stop(void);

/* ---- publishing from the server: one pipeline ----
 * (docs/protocol.md "Publication pipeline", docs/database.md)
 * - Durable channels (notify:, chat:): the seq is taken from the database
 *   inside the transaction that stores the message (channel_messages):
 *   notify:<user_id> from users.notify_seq, chat:<conversation_id> from
 *   conversations.last_seq, any other durable channel from channel_seqs.
 *   The message is delivered only after that transaction committed, through
 *   the bus, carrying that seq; a rollback delivers nothing. The hub never
 *   numbers a durable channel itself.
 * - Other channels (market:*, agents:status, dashboard:metrics): the hub
 *   assigns the next seq in memory when it delivers.
 * - Transient messages (osb_rt_publish_transient): no seq, never stored.
 *
 * cb(ud, err, seq) runs exactly once, possibly before the call returns:
 * err == 0 and the seq, or a negative error:
 *   OSB_EINVAL    channel name not in the namespace table, data not JSON,
 *                 or (publish_at) a non-durable channel / seq 0
 *   OSB_ETOOBIG   data larger than WS_MAX_MESSAGE_BYTES
 *   OSB_ENOTFOUND notify:<user_id> / chat:<conversation_id> whose user or
 *                 conversation row does not exist (nothing stored)
 *   OSB_ECONFLICT (publish_at) that seq is already stored on the channel
 *   OSB_EUNAVAIL, OSB_EDB  the database failed: nothing stored, nothing
 *                 delivered
 * cb may be NULL. */
typedef void (*osb_rt_publish_cb)(void *ud, int err, uint64_t seq);

/* Publish `data` (borrowed, serialized before the call returns) on
 * `channel`. Durable channel: in a transaction of its own (take the seq,
 * store the row, commit), then delivered; cb runs after the commit and the
 * local delivery, with the stored seq. Other channels: delivered at once
 * with the next in-memory seq. */
void osb_rt_publish(const char *channel, const json_t *data, osb_rt_publish_cb cb, void *ud);
/* The same with data already serialized as JSON text (len bytes). */
void osb_rt_publish_text(const char *channel, const char *data, size_t len,
                         osb_rt_publish_cb cb, void *ud);

/* ---- publishing inside the caller's transaction ----
 * `tx` is an open transaction of the caller (osb_db_tx_begin); the caller
 * still commits or rolls it back. The publication is delivered when tx
 * commits (osb_db_tx_on_end), after every earlier publication of the same
 * tx, and never if it rolls back or the commit fails. So a write and its
 * event commit together: a market write publishes procedure.updated on
 * market:all and market:<slug> in the write's tx; a CRM assign changes the
 * owner and publishes the notification in one tx.
 *
 * osb_rt_tx_publish: any channel. Durable: the statements that take the
 * next seq and store the row are queued on tx before this returns, so the
 * caller may issue more queries or commit right away; cb(ud, err, seq)
 * runs once they completed (before the commit) with the seq the message
 * will carry. A database error aborts tx (db.h); OSB_ENOTFOUND leaves tx
 * usable but the publication is dropped; either way roll back unless you
 * mean to commit without the event. Non-durable: cb(ud, 0, 0) at once; the
 * in-memory seq is assigned at delivery, after the commit. */
void osb_rt_tx_publish(osb_db_tx_t *tx, const char *channel, const json_t *data,
                       osb_rt_publish_cb cb, void *ud);

/* For code whose own row carries the channel seq (a notification's seq, a
 * chat message's seq): take the next seq of a durable channel's counter in
 * tx (users.notify_seq, conversations.last_seq or channel_seqs, the same
 * counter osb_rt_tx_publish uses); cb(ud, err, seq), OSB_ENOTFOUND without
 * the owner row. Insert your row with that seq, build the event (it may
 * contain the seq), then osb_rt_tx_publish_at(tx, channel, seq, ...). Taking
 * the counter yourself (UPDATE users SET notify_seq = notify_seq + 1 WHERE
 * id = $1 RETURNING notify_seq) is equivalent. Every seq taken must be
 * published in the same tx, or resume reports recovered:false for it. */
void osb_rt_tx_next_seq(osb_db_tx_t *tx, const char *channel, osb_rt_publish_cb cb, void *ud);
/* Store (channel, seq, data) in channel_messages in tx and deliver it with
 * that seq after the commit. Durable channels only. A seq already stored
 * fails with OSB_ECONFLICT (and aborts tx): no row is ever dropped
 * silently. cb(ud, err, seq) once the row is in tx. */
void osb_rt_tx_publish_at(osb_db_tx_t *tx, const char *channel, uint64_t seq, const json_t *data,
                          osb_rt_publish_cb cb, void *ud);

/* ---- transient messages (SPEC §5) ----
 * Deliver `data` (borrowed) through the bus to the subscribers live on
 * `channel` at this moment, as {"type":"message","channel","data","ts"}
 * with no seq: never stored, never replayed, the channel's seq does not
 * move, and subscriptions still replaying do not get it. Any channel
 * (agent.delta on chat:, notification.read on notify:). Returns 0,
 * OSB_EINVAL (unknown channel, data not serializable) or OSB_ETOOBIG. A
 * channel nobody subscribes to is not created. */
int osb_rt_publish_transient(const char *channel, const json_t *data);

/* ---- hooks the apps layer provides ----
 * Access check for namespaces whose read/write policy is "owner" (chat:
 * "is `who` the owner of conversation `suffix`"). Must call cb exactly
 * once, possibly synchronously; `who` and the strings are valid only
 * during the call. err < 0 (database down) denies with `unavailable`.
 * Without a registered check, only the service role passes. */
typedef void (*osb_rt_check_cb)(void *ctx, int err, bool allowed);
typedef void (*osb_rt_check_fn)(void *ud, const char *channel, const char *suffix,
                                const osb_rt_who_t *who, osb_rt_check_cb cb, void *ctx);
/* `ns` is the namespace name ("chat"). Returns OSB_ENOTFOUND if unknown. */
int osb_rt_set_access_check(const char *ns, osb_rt_check_fn fn, void *ud);

/* What a client `publish` on a namespace means (chat: "{text} is a user
 * message to the agent"). Called after the write check passed; `data` is
 * borrowed. The hook answers through cb(ctx, err, seq) exactly once; the
 * client then gets `ack {seq}` or an error (OSB_EINVAL → bad_request,
 * OSB_EDENIED → forbidden, OSB_ETOOBIG → too_large, others →
 * unavailable). Without a hook the data is published on the channel as is. */
typedef void (*osb_rt_publish_hook_fn)(void *ud, const char *channel, const osb_rt_who_t *who,
                                       const json_t *data, osb_rt_publish_cb cb, void *ctx);
int osb_rt_set_publish_hook(const char *ns, osb_rt_publish_hook_fn fn, void *ud);

/* Read permission for REST callers (presence): cb(ctx, err, allowed) as
 * above. err OSB_EINVAL: not a channel of the table. */
void osb_rt_check_read(const char *channel, const osb_rt_who_t *who, osb_rt_check_cb cb, void *ctx);

/* ---- introspection (REST) ----
 * Channels: {"channels":[{"channel","subscribers","seq","history",
 * "durable"}...],"connections","subscriptions"}. New reference. */
json_t *osb_rt_channels_json(void);
/* {"channel","members":[{"user_id","conn_id"}...],"count","anonymous"}:
 * signed-in subscribers (at most 1000 listed, `count` is the total),
 * `anonymous` the number of anonymous ones, as `who` (the reader, whose
 * read permission the caller checked; NULL = anonymous) may see them: on
 * namespaces any reader may read (market: anyone; agents: any signed-in
 * user) only admins and the service key get the members' user ids, anyone
 * else gets "members": [] and the counts, so a public channel does not tell
 * strangers who is watching. New reference; NULL if the name is not in the
 * namespace table. */
json_t *osb_rt_presence_json(const char *channel, const osb_rt_who_t *who);
/* Subscribers of `channel` on this instance right now; 0 for a channel
 * nobody subscribes to, a name outside the table, or before osb_rt_start.
 * No allocation (the dashboard sampler asks once a second). */
size_t osb_rt_subscribers(const char *channel);

/* ---- the message store seam (durable channels) ----
 * A row as stored: data is compact JSON text, ts_ms the publish time (ms
 * since the epoch). Pointers valid only during the call that passes them. */
typedef struct osb_rt_row {
  uint64_t seq;
  const char *data;
  size_t len;
  uint64_t ts_ms;
} osb_rt_row_t;
typedef void (*osb_rt_rows_cb)(void *ud, int err, const osb_rt_row_t *rows, size_t n);
typedef void (*osb_rt_done_cb)(void *ud, int err);
typedef void (*osb_rt_seq_cb)(void *ud, int err, uint64_t seq);

typedef struct osb_rt_store osb_rt_store_t;
struct osb_rt_store {
  const char *name;   /* "memory", "database": shown in health */
  /* Take the channel's next seq and keep (channel, row) with it as one
   * atomic step (row->seq is ignored); cb(ud, err, seq) exactly once when
   * it is durable (the database store: committed), possibly synchronously.
   * On error nothing is kept. The hub delivers only after cb reported 0. */
  void (*append)(osb_rt_store_t *st, const char *channel, const osb_rt_row_t *row,
                 osb_rt_seq_cb cb, void *ud);
  /* Rows with seq > since in ascending order, at most `limit`; cb exactly
   * once, possibly synchronously. */
  void (*range)(osb_rt_store_t *st, const char *channel, uint64_t since, size_t limit,
                osb_rt_rows_cb cb, void *ud);
  /* The channel's last committed seq (its counter; 0 if none); cb exactly
   * once. */
  void (*last_seq)(osb_rt_store_t *st, const char *channel, osb_rt_seq_cb cb, void *ud);
  /* Free the store. Callbacks still pending must not fire afterwards. */
  void (*dispose)(osb_rt_store_t *st);
};

/* An in-memory store: at most `per_channel` rows per channel (oldest
 * dropped). Used by tests and until a database store is installed. */
osb_rt_store_t *osb_rt_store_memory_new(size_t per_channel);
/* The database store (channel_messages through db.h; PostgreSQL or SQLite),
 * purging rows older than 7 days every 10 minutes on `loop` (may be
 * NULL). Needs osb_db_init() to have succeeded. */
osb_rt_store_t *osb_rt_store_db_new(struct uv_loop_s *loop);
/* Replace the hub's store (the old one is disposed); takes ownership. Do it
 * before the loop runs: channels already loaded keep their seq. */
void osb_rt_set_store(osb_rt_store_t *st);

/* ---- the bus seam ----
 * One publication on its way to every instance's hub:
 * - durable: stored == true with the seq the database gave it (committed
 *   already); every hub delivers it with that seq;
 * - non-durable: seq == 0, the receiving hub assigns its next seq;
 * - transient: transient == true, seq 0: live subscribers only.
 * ts_ms is the publish time (0: now); a stored message carries the
 * created_at of its row, so live and replayed frames agree. */
typedef struct osb_rt_pub {
  const char *channel;
  const char *data;
  size_t len;
  uint64_t seq;
  bool stored;
  bool transient;
  uint64_t ts_ms;
} osb_rt_pub_t;

typedef struct osb_rt_bus osb_rt_bus_t;
struct osb_rt_bus {
  const char *name;   /* "local", "postgres" */
  /* Carry `pub` (borrowed) to the hubs; cb reports this instance's result.
   * A non-durable publication (seq 0) may get its seq from the bus (the
   * postgres bus: channel_seqs); cb then carries it. */
  void (*publish)(osb_rt_bus_t *bus, const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud);
  void (*dispose)(osb_rt_bus_t *bus);
  /* ---- optional (NULL on the local bus) ----
   * A durable row was just queued on tx (store_db.c; pub->seq 0: the seq
   * the counter gave it in tx): queue whatever carries it to the other
   * instances on tx, so that it leaves only if tx commits. */
  void (*tx_stored)(osb_rt_bus_t *bus, osb_db_tx_t *tx, const osb_rt_pub_t *pub);
  /* A subscription became live (join) or ended on this instance. */
  void (*member)(osb_rt_bus_t *bus, const char *channel, const char *user_id, uint64_t conn_id, bool join);
  /* Add the other instances' members of `channel` to a presence answer:
   * append to `members` (when `list`, up to `max` entries in all), add to
   * *count (signed in) and *anonymous. */
  void (*presence)(osb_rt_bus_t *bus, const char *channel, json_t *members, bool list, size_t max,
                   size_t *count, size_t *anonymous);
  /* {"node_id","bus","connected","instances":[...],...}: new reference. */
  json_t *(*status)(osb_rt_bus_t *bus);
  /* Non-durable channels are numbered cluster-wide (channel_seqs): a
   * channel this hub opens reads its current seq from the store first. */
  bool cluster_seqs;
};
/* The in-process bus: publish = deliver to the local hub. */
osb_rt_bus_t *osb_rt_bus_local_new(void);
/* The PostgreSQL bus (docs/scale-out.md): one dedicated LISTEN connection
 * to DATABASE_URL on `loop`, pg_notify for every publication (durable ones
 * inside their storing transaction), seqs of non-durable channels from
 * channel_seqs, presence of every live instance, catch-up from the
 * database after a reconnect. Needs osb_db_init (PostgreSQL) and the
 * database store. Registers the "cluster" health component. */
osb_rt_bus_t *osb_rt_bus_pg_new(struct uv_loop_s *loop);
/* Called by a bus once it is connected again after an outage: durable
 * channels with subscribers replay from the store what was committed
 * meanwhile; non-durable ones whose cluster seq moved on send their live
 * subscribers a {"type":"reset",...,"recovered":false} frame
 * (docs/protocol.md). */
void osb_rt_bus_resync(void);
/* Every live subscription of this hub: fn(ud, channel, user_id or NULL,
 * conn_id) (the bus's presence snapshot). */
void osb_rt_foreach_member(void (*fn)(void *ud, const char *channel, const char *user_id, uint64_t conn_id),
                           void *ud);
/* Replace the bus (takes ownership; the old one is disposed). */
void osb_rt_set_bus(osb_rt_bus_t *bus);

#endif
