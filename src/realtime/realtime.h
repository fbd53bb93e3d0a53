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
#include "auth/auth.h"
#include "core/core.h"

struct uv_loop_s;
typedef struct json_t json_t;

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

/* True while another WebSocket may be admitted (hub clients below
 * WS_MAX_CONNECTIONS). ws.c already answers the upgrade with 503 past the
 * limit; the hub also closes a connection opened beyond it with 1013 as a
 * second line of defence. */
bool osb_rt_can_accept(void);

/* ---- publishing from the server ----
 * cb(ud, err, seq) runs exactly once, possibly before the call returns:
 * err == 0 and the assigned seq, or a negative error:
 *   OSB_EINVAL   channel name not in the namespace table, or data not JSON
 *   OSB_ETOOBIG  data larger than WS_MAX_MESSAGE_BYTES
 *   OSB_EUNAVAIL a durable channel whose last seq could not be read
 *   OSB_ECONFLICT (publish_stored) seq not above the channel's seq
 * cb may be NULL. */
typedef void (*osb_rt_publish_cb)(void *ud, int err, uint64_t seq);

/* Publish `data` (borrowed, serialized here) on `channel`; the hub assigns
 * the next seq and delivers at once. On a durable channel the message is
 * also appended to the store, and cb runs once the store has it (err
 * OSB_EUNAVAIL if it could not: the message went out live but will not be
 * recoverable), so a request answered with the seq survives a restart. */
void osb_rt_publish(const char *channel, const json_t *data, osb_rt_publish_cb cb, void *ud);
/* The same with data already serialized as compact JSON text (len bytes). */
void osb_rt_publish_text(const char *channel, const char *data, size_t len,
                         osb_rt_publish_cb cb, void *ud);

/* Deliver a message that the caller already stored in channel_messages
 * under (channel, seq) on a durable channel (notifications: stored first,
 * then delivered). The hub does not append it again. seq must be above the
 * channel's current seq, and sequences on a durable channel must be
 * contiguous (max + 1) for resume to recover them. A channel nobody
 * subscribes to and that has no history is not created: err 0, nothing to
 * deliver (the row stays available for resume). */
void osb_rt_publish_stored(const char *channel, uint64_t seq, const json_t *data,
                           osb_rt_publish_cb cb, void *ud);

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
 * `anonymous` the number of anonymous ones. New reference; NULL if the
 * name is not in the namespace table. */
json_t *osb_rt_presence_json(const char *channel);
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
  /* Keep (channel, row); cb(ud, err) exactly once when it is stored (or
   * not: the store logs the failure; the hole shows up later as
   * recovered:false, never as wrong data), possibly synchronously. A row
   * whose (channel, seq) exists already is left alone (err 0). */
  void (*append)(osb_rt_store_t *st, const char *channel, const osb_rt_row_t *row,
                 osb_rt_done_cb cb, void *ud);
  /* Rows with seq > since in ascending order, at most `limit`; cb exactly
   * once, possibly synchronously. */
  void (*range)(osb_rt_store_t *st, const char *channel, uint64_t since, size_t limit,
                osb_rt_rows_cb cb, void *ud);
  /* The highest stored seq of the channel (0 if none); cb exactly once. */
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
 * One publication on its way to every instance's hub. seq == 0 lets the
 * receiving hub assign the next seq; stored == true means the row is
 * already in the store (publish_stored). */
typedef struct osb_rt_pub {
  const char *channel;
  const char *data;
  size_t len;
  uint64_t seq;
  bool stored;
} osb_rt_pub_t;

typedef struct osb_rt_bus osb_rt_bus_t;
struct osb_rt_bus {
  const char *name;   /* "local" */
  /* Carry `pub` (borrowed) to the hubs; cb reports this instance's result. */
  void (*publish)(osb_rt_bus_t *bus, const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud);
  void (*dispose)(osb_rt_bus_t *bus);
};
/* The in-process bus: publish = deliver to the local hub. */
osb_rt_bus_t *osb_rt_bus_local_new(void);
/* Replace the bus (takes ownership; the old one is disposed). */
void osb_rt_set_bus(osb_rt_bus_t *bus);

#endif
