/* internal.h: what the realtime files share (not for other modules).
 *
 * Object graph (all owned by the hub, loop thread only):
 *
 *   hub ── channels (hash by name) ── channel ── subs (list) ─┐
 *                                        └─ history ring        │ sub links a
 *   client (one per WebSocket) ── subs (list) ──────────────────┘ channel and a client
 *
 * A client is refcounted: the connection holds one reference until
 * on_close, every asynchronous operation started for it (token check,
 * access check, store replay, publish) holds one more, so a callback that
 * arrives after the socket closed finds a detached client (attached false)
 * and only drops its reference. Over WebSocket the client is not an
 * allocation of its own: it lives in the connection's user area (the
 * transport's client_mem), with its first subscription inline (sub0), and
 * the connection's memory is held until the last reference goes.
 *
 * A client's messages are handled strictly in order: while one operation
 * is pending (`busy`), later messages wait in a small backlog. Replies
 * therefore come back in request order, and subscribe/unsubscribe races
 * cannot happen.
 *
 * The hub reaches connections only through osb_rt_transport_t, so it can be
 * unit-tested with fake sinks; ws_glue.c binds it to osb_ws_*. */
#ifndef OSB_REALTIME_INTERNAL_H
#define OSB_REALTIME_INTERNAL_H

#include <jansson.h>
#include "core/tbucket.h"
#include "obs/metrics.h"
#include "realtime/realtime.h"

/* ---- transport (the WebSocket layer, or a fake in tests) ---- */
typedef struct osb__rt_transport {
  /* Queue a finished frame on `conn` (takes a reference): 0, OSB_ECLOSED,
   * or OSB_ESLOW (the connection is now being closed with 1013). */
  int (*send)(void *conn, osb_msg_t *frame);
  /* Start closing `conn` with a WebSocket close code; idempotent. */
  void (*close)(void *conn, uint16_t code, const char *reason);
  /* Write the frame header for a text payload built in
   * osb_msg_new(headroom, n) (osb_ws_frame_finish). */
  void (*finish)(osb_msg_t *m);
  /* Bytes every frame keeps in front of its payload for finish()
   * (OSB_WS_HEADROOM; 0 for a fake that leaves payloads unframed). */
  size_t headroom;
  /* Where a connection's client lives: client_mem(conn) returns
   * sizeof(osb__rt_client_t) zeroed bytes in the connection's own memory
   * (the WebSocket user area) and holds that memory until
   * client_release(mem), which the hub calls when the client's last
   * reference goes, possibly after the connection closed. NULL (fakes):
   * the hub allocates clients itself. */
  void *(*client_mem)(void *conn);
  void (*client_release)(void *mem);
  /* The connection whose client_mem `mem` is (NULL when client_mem is). */
  void *(*conn_of)(void *mem);
  /* The connection's id (conn_id in welcome and presence; log lines). */
  uint64_t (*conn_id)(void *conn);
} osb__rt_transport_t;

/* Token verification (osb_auth_verify_token, wrapped so the hub never owns
 * an osb_principal_t). cb exactly once; who valid during the call. */
typedef void (*osb__rt_verified_cb)(void *ud, int err, const osb_rt_who_t *who);
typedef void (*osb__rt_verify_fn)(const char *token, osb__rt_verified_cb cb, void *ud);

typedef struct osb__rt_options {
  uint32_t max_subscriptions;   /* per connection */
  double msg_rate;              /* client messages per second, sustained */
  double msg_burst;             /* bucket size */
  uint32_t abuse_limit;         /* rejected messages within 10 s → close 1008 */
  size_t max_data_bytes;        /* published data */
  uint32_t replay_max;          /* most messages replayed from the store */
  uint32_t backlog_max;         /* messages waiting while one is pending */
  uint32_t heartbeat_s;         /* in welcome */
  uint32_t max_connections;     /* 0 = unlimited */
  uint32_t presence_list_max;   /* members listed in a presence reply */
} osb__rt_options_t;

void osb__rt_default_options(osb__rt_options_t *o);

/* ---- namespaces ---- */
typedef enum {
  OSB__RT_ANYONE = 0,  /* also anonymous */
  OSB__RT_SIGNED_IN,   /* any principal */
  OSB__RT_SELF,        /* suffix == user id */
  OSB__RT_OWNER,       /* asked through the namespace's access check */
  OSB__RT_ADMIN,       /* admin (and service) */
  OSB__RT_SERVER,      /* service or admin principals, server code */
} osb__rt_policy_t;

/* Where a durable namespace's seqs come from (store_db.c): the counter
 * next to the owner row, or channel_seqs for channels without one. */
typedef enum {
  OSB__RT_SEQ_CHANNEL = 0,   /* channel_seqs.last_seq */
  OSB__RT_SEQ_USER,          /* users.notify_seq, suffix = user id */
  OSB__RT_SEQ_CONVERSATION,  /* conversations.last_seq, suffix = conversation id */
} osb__rt_seq_src_t;

typedef struct osb__rt_ns {
  const char *name;          /* before the ':' */
  const char *only_suffix;   /* "status" for agents:status; NULL = any valid suffix */
  uint8_t read, write;       /* osb__rt_policy_t */
  bool durable;
  bool presence_events;
  uint32_t history_max;      /* entries kept in memory */
  uint32_t history_age_ms;   /* and for at most this long */
  osb_rt_check_fn check;
  void *check_ud;
  osb_rt_publish_hook_fn on_publish;
  void *publish_ud;
  uint8_t seq_src;           /* osb__rt_seq_src_t, durable namespaces */
} osb__rt_ns_t;

/* The namespace of a full channel name, or NULL (unknown namespace, bad
 * suffix characters, too long). *suffix points into `name`. */
osb__rt_ns_t *osb__rt_ns_lookup(const char *name, size_t len, const char **suffix);
osb__rt_ns_t *osb__rt_ns_by_name(const char *ns);
/* Restore the built-in table (tests). */
void osb__rt_ns_reset(void);

typedef enum { OSB__RT_DENY = 0, OSB__RT_ALLOW, OSB__RT_ASK } osb__rt_decision_t;
/* Pure policy decision; ASK means "call ns->check". */
osb__rt_decision_t osb__rt_decide(const osb__rt_ns_t *ns, bool write, const char *suffix,
                                  const osb_rt_who_t *who);

/* ---- history ring ----
 * Entries in increasing seq order (a gap only where a committed durable
 * message was not delivered here). Capacity grows on demand up to `max`. */
typedef struct osb__rt_hist {
  uint64_t seq;
  uint64_t at_ms;       /* loop clock, for age */
  osb_msg_t *frame;     /* the message frame, one reference */
} osb__rt_hist_t;

typedef struct osb__rt_ring {
  osb__rt_hist_t *e;
  uint32_t cap, head, len, max;
} osb__rt_ring_t;

void osb__rt_ring_push(osb__rt_ring_t *r, uint64_t seq, uint64_t at_ms, osb_msg_t *frame);
void osb__rt_ring_expire(osb__rt_ring_t *r, uint64_t now_ms, uint32_t age_ms);
osb__rt_hist_t *osb__rt_ring_at(osb__rt_ring_t *r, uint32_t i);   /* 0 = oldest */
/* Index of the first entry with seq > since (== len if none). */
uint32_t osb__rt_ring_after(osb__rt_ring_t *r, uint64_t since);
void osb__rt_ring_free(osb__rt_ring_t *r);

/* ---- channels, subscriptions, clients ---- */
typedef struct osb__rt_channel osb__rt_channel_t;
typedef struct osb__rt_sub osb__rt_sub_t;
typedef struct osb__rt_client osb__rt_client_t;

enum { OSB__RT_CH_LOADING = 0, OSB__RT_CH_READY, OSB__RT_CH_FAILED };

struct osb__rt_channel {
  osb__rt_channel_t *hnext;     /* hash chain */
  osb__rt_ns_t *ns;
  uint64_t seq;                 /* last seq published (or loaded) */
  osb_list_t subs;              /* osb__rt_sub_t.ch_link */
  uint32_t nsubs;
  uint32_t pins;                /* > 0: do not free (fan-out, load in flight) */
  uint8_t state;
  osb_list_t waiting;           /* publications waiting for the load */
  osb__rt_ring_t hist;
  uint32_t hash;
  uint16_t suffix_off;
  uint16_t namelen;
  char name[];
};

enum {
  OSB__RT_SUB_WAIT = 0,   /* channel loading its seq */
  OSB__RT_SUB_REPLAY,     /* store range in flight */
  OSB__RT_SUB_LIVE,
  OSB__RT_SUB_MARK,       /* not a subscription: a walk's place holder (below) */
};

/* Per-subscription state needed only until it is live. */
typedef struct osb__rt_sub_setup {
  json_t *req_id;
  uint64_t since;
  bool has_since;
} osb__rt_sub_setup_t;

/* A client's first subscription lives inside the client (sub0), the
 * others are allocated with their client link (osb__rt_subx_t): sub0 needs
 * no pointer to its client (it is the client's) nor a list node (the
 * client's list is sub0, then the allocated ones, singly linked; a removal
 * walks at most max_subscriptions). An idle socket subscribed to one
 * channel costs no allocation of its own for it. A subscription replaying
 * from the store holds a reference to its client, so a dead one can still
 * be freed (and sub0 given back) when the store answers. */
struct osb__rt_sub {
  osb_list_t ch_link;
  osb__rt_channel_t *ch;
  osb__rt_sub_setup_t *setup;   /* NULL once live */
  uint8_t state;
  bool dead : 1;                /* unlinked while a store call was in flight */
  bool inline0 : 1;             /* it is its client's sub0 */
};

/* A subscription after the client's first: allocated, linked from the client. */
typedef struct osb__rt_subx {
  osb__rt_sub_t s;              /* first */
  struct osb__rt_subx *next;    /* the client's list (client.more) */
  osb__rt_client_t *cl;
} osb__rt_subx_t;

/* Walking ch->subs while calling out: a send may close its connection at
 * once (ws.c runs on_close inside osb_ws_send when the socket errors), which
 * removes that client's subscriptions, and a presence event it triggers can
 * close others, so no saved `next` pointer is safe. A walk keeps its place
 * with a marker node (state OSB__RT_SUB_MARK, skipped by every walk) moved
 * past each subscription it returns:
 *   osb__rt_sub_t mark; osb__rt_walk_start(ch, &mark);
 *   while ((s = osb__rt_walk_next(ch, &mark))) ...   (run to the end: no break) */
static inline void osb__rt_walk_start(osb__rt_channel_t *ch, osb__rt_sub_t *mark) {
  memset(mark, 0, sizeof(*mark));
  mark->state = OSB__RT_SUB_MARK;
  osb_list_insert_head(&ch->subs, &mark->ch_link);
}
static inline osb__rt_sub_t *osb__rt_walk_next(osb__rt_channel_t *ch, osb__rt_sub_t *mark) {
  osb_list_t *n = mark->ch_link.next;
  osb_list_remove(&mark->ch_link);
  for (; n != &ch->subs; n = n->next) {
    osb__rt_sub_t *s = osb_container_of(n, osb__rt_sub_t, ch_link);
    if (s->state == OSB__RT_SUB_MARK) continue;
    osb_list_insert_head(n, &mark->ch_link);
    return s;
  }
  return NULL;
}

/* Who a client is signed in as: one allocation (email points into it);
 * an anonymous client has none. */
typedef struct osb__rt_principal {
  const char *email;            /* NULL: none */
  osb_role_t role;
  char user_id[];
} osb__rt_principal_t;

/* The connection is not a field: a client in the connection's memory
 * (in_conn) finds it through the transport's conn_of, one the hub
 * allocated (fake transports) is the `cl` of an osb__rt_client_box_t;
 * osb__rt_client_conn() answers NULL once the connection closed. The id is
 * the connection's (transport conn_id). */
struct osb__rt_client {
  osb__rt_subx_t *more;         /* subscriptions after sub0, singly linked */
  osb__rt_principal_t *who;     /* NULL: anonymous */
  osb_buf_t *backlog;           /* [u32 len][bytes]..., allocated on demand */
  /* rate limit: token bucket, and rejected messages in the current window */
  osb_tbucket32_t bucket;       /* messages (msg_rate, msg_burst) */
  uint32_t refs;
  uint32_t abuse;
  uint32_t abuse_window_ms;     /* loop ms, low 32 bits (ages modulo 2^32) */
  uint8_t nsubs;                /* <= max_subscriptions (<= 255, osb__rt_hub_init) */
  uint8_t backlog_n;            /* <= backlog_max (<= 255) */
  bool busy : 1;
  bool pumping : 1;             /* pump/dispatch runs (never nested: both check it) */
  bool in_conn : 1;             /* the memory is the connection's (transport client_mem) */
  bool sub0_used : 1;           /* sub0 is a subscription (maybe dead, its replay in flight) */
  bool sub0_linked : 1;         /* ... and in the client's list */
  bool attached : 1;            /* the connection is open (until osb__rt_client_closed) */
  osb__rt_sub_t sub0;           /* the first subscription (see osb__rt_sub) */
};

typedef struct osb__rt_client_box {
  void *conn;
  osb__rt_client_t cl;
} osb__rt_client_box_t;

static inline osb__rt_client_t *osb__rt_sub_cl(osb__rt_sub_t *s) {
  return s->inline0 ? osb_container_of(s, osb__rt_client_t, sub0) : osb_container_of(s, osb__rt_subx_t, s)->cl;
}
static inline const char *osb__rt_client_uid(const osb__rt_client_t *cl) {
  return cl->who ? cl->who->user_id : NULL;
}
/* The client's first subscription in its list, NULL when none. */
static inline osb__rt_sub_t *osb__rt_client_first(osb__rt_client_t *cl) {
  if (cl->sub0_linked) return &cl->sub0;
  return cl->more ? &cl->more->s : NULL;
}

/* ---- the hub ---- */
typedef struct osb__rt_stats {
  osb_series_t *connections, *subscriptions, *channels;
  osb_series_t *published, *deliveries, *drops_slow, *drops_closed, *slow_closes;
  osb_series_t *resume_memory, *resume_store, *resume_none, *resume_lost;
  osb_series_t *rate_limited, *abuse_closes, *bad_messages;
  osb_series_t *in[8];     /* by message type, see protocol.c */
  osb_series_t *out_replies;
} osb__rt_stats_t;

typedef struct osb__rt_hub {
  osb__rt_options_t opt;
  const osb__rt_transport_t *tr;
  osb__rt_verify_fn verify;
  osb_rt_store_t *store;
  osb_rt_bus_t *bus;
  osb__rt_channel_t **buckets;
  uint32_t nbuckets, nchannels;
  uint64_t nclients, nsubs;
  osb__rt_stats_t st;
  struct uv_loop_s *loop;
} osb__rt_hub_t;

extern osb__rt_hub_t *osb__rt;

/* Build the hub (replaces any previous one, which must have been freed).
 * store and bus are taken over; loop may be NULL (no sweep timer: tests
 * call osb__rt_sweep). */
void osb__rt_hub_init(const osb__rt_options_t *opt, const osb__rt_transport_t *tr,
                      osb__rt_verify_fn verify, osb_rt_store_t *store, osb_rt_bus_t *bus,
                      struct uv_loop_s *loop);
void osb__rt_hub_free(void);
/* Drop expired history and channels left with neither subscribers nor
 * history; deliver durable messages that waited too long for a gap. */
void osb__rt_sweep(uint64_t now_ms);
/* Deliver durable messages that waited HOLD_MS for a missing seq (hub.c). */
void osb__rt_flush_held(uint64_t now_ms);

osb__rt_channel_t *osb__rt_channel_find(const char *name, size_t len);
/* Create (channel.c; the name must not exist yet); NULL if the name is not
 * in the namespace table. */
osb__rt_channel_t *osb__rt_channel_get(const char *name, size_t len);
/* Find or create, and for a new durable channel start reading its last seq
 * from the store (state LOADING until then; the read may complete before
 * this returns). The caller must attach something or call
 * osb__rt_channel_gc(). NULL with *err = OSB_EINVAL if the name is not in
 * the table, OSB_EUNAVAIL if the store failed at once. */
osb__rt_channel_t *osb__rt_channel_open(const char *name, size_t len, int *err);
/* Free the channel if nothing keeps it (no subs, history, pins). */
void osb__rt_channel_gc(osb__rt_channel_t *ch);

/* The bus delivers here: accept the stored seq (durable) or assign the
 * next one, record history, fan out; transient: fan out to live
 * subscribers only. cb exactly once. */
void osb__rt_deliver(const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud);

/* ---- the database side of durable publications (store_db.c) ----
 * Queue on tx the statements that take the channel's next seq (seq == 0)
 * or use the given one, and insert the channel_messages row; cb(ud, err,
 * seq) once they completed (OSB_ENOTFOUND: no owner row). ns is the
 * channel's namespace, sfx its suffix. data/channel are copied. */
void osb__rt_tx_store(osb_db_tx_t *tx, const osb__rt_ns_t *ns, const char *channel, const char *sfx,
                      uint64_t seq, const char *data, size_t len, uint64_t ts_ms, osb_rt_seq_cb cb,
                      void *ud);
/* Only take the next seq (osb_rt_tx_next_seq). */
void osb__rt_tx_next_seq(osb_db_tx_t *tx, const osb__rt_ns_t *ns, const char *sfx, osb_rt_seq_cb cb,
                         void *ud);

/* ---- clients (protocol.c) ---- */
osb__rt_client_t *osb__rt_client_open(void *conn);
/* The client's connection, NULL once it closed. */
void *osb__rt_client_conn(const osb__rt_client_t *cl);
/* The connection's id (the client must be attached). */
uint64_t osb__rt_client_id(const osb__rt_client_t *cl);
/* Handshake token (NULL: anonymous). Sends welcome when resolved. */
void osb__rt_client_start(osb__rt_client_t *cl, const char *token);
void osb__rt_client_message(osb__rt_client_t *cl, bool binary, const char *data, size_t len);
/* The connection is gone: unsubscribe everything, drop the connection's ref. */
void osb__rt_client_closed(osb__rt_client_t *cl);
void osb__rt_client_ref(osb__rt_client_t *cl);
void osb__rt_client_unref(osb__rt_client_t *cl);

/* Subscriptions (hub.c). subscribe: the client is busy until it answered. */
void osb__rt_subscribe(osb__rt_client_t *cl, osb__rt_channel_t *ch, json_t *req_id,
                       bool has_since, uint64_t since);
void osb__rt_sub_remove(osb__rt_sub_t *sub, bool presence_event);
osb__rt_sub_t *osb__rt_client_sub(osb__rt_client_t *cl, const char *name, size_t len);

/* Sending to one client (protocol.c): serialize once; steals j. Returns
 * what transport->send returned, or OSB_ECLOSED on a detached client. */
int osb__rt_send_json(osb__rt_client_t *cl, json_t *j);
int osb__rt_send_frame(osb__rt_client_t *cl, osb_msg_t *frame);
/* {"type":"error","code","message"[,"id"]}; id borrowed, may be NULL. */
void osb__rt_send_error(osb__rt_client_t *cl, json_t *id, const char *code, const char *fmt, ...)
    OSB_PRINTF(4, 5);
/* An operation for `cl` finished: not busy any more, handle the backlog. */
void osb__rt_client_done(osb__rt_client_t *cl);
/* Serialize a JSON value into a finished text frame. */
osb_msg_t *osb__rt_frame_json(const json_t *j);

/* Presence (presence.c). */
/* The live members of ch: their list (at most presence_list_max; empty
 * unless `list`), how many are signed in and how many anonymous. */
json_t *osb__rt_presence_members(osb__rt_channel_t *ch, bool list, size_t *count, size_t *anonymous);
void osb__rt_presence_event(osb__rt_sub_t *sub, const char *event);

#endif
