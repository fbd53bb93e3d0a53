/* protocol.c: one WebSocket client of the hub (SPEC §5, docs/protocol.md).
 *
 * Client messages are JSON objects with a `type`; unknown fields are
 * ignored and a reply to a message with `id` echoes it, errors included.
 * A client's messages are handled in order: while one waits for something
 * asynchronous (token check, ownership check, store replay, publish), later
 * ones wait in a bounded backlog (see internal.h). */
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "core/tbucket.h"
#include "obs/log.h"
#include "realtime/internal.h"

enum { IN_AUTH, IN_SUBSCRIBE, IN_UNSUBSCRIBE, IN_PUBLISH, IN_PRESENCE, IN_PING, IN_INVALID, IN_UNKNOWN };

#define ABUSE_WINDOW_MS 10000

/* ---- sending ---- */

osb_msg_t *osb__rt_frame_json(const json_t *j) {
  osb_msg_t *m = osb_msg_new(osb__rt->tr->headroom, 128);
  osb_json_dump_append(j, &m);   /* the one serializer: REST's number format */
  osb__rt->tr->finish(m);
  return m;
}

int osb__rt_send_frame(osb__rt_client_t *cl, osb_msg_t *frame) {
  if (!cl->attached) return OSB_ECLOSED;
  int r = osb__rt->tr->send(osb__rt_client_conn(cl), frame);
  if (r == OSB_ESLOW) osb_series_inc(osb__rt->st.slow_closes, 1);
  return r;
}

int osb__rt_send_json(osb__rt_client_t *cl, json_t *j) {
  if (!cl->attached) {
    json_decref(j);
    return OSB_ECLOSED;
  }
  osb_msg_t *m = osb__rt_frame_json(j);
  json_decref(j);
  int r = osb__rt_send_frame(cl, m);
  osb_msg_unref(m);
  osb_series_inc(osb__rt->st.out_replies, 1);
  return r;
}

void osb__rt_send_error(osb__rt_client_t *cl, json_t *id, const char *code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  json_t *j = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", msg);
  if (id) json_object_set(j, "id", id);
  osb_series_inc(osb__rt->st.bad_messages, 1);
  osb__rt_send_json(cl, j);
}

static json_t *with_id(json_t *j, json_t *id) {
  if (id) json_object_set(j, "id", id);
  return j;
}


static json_t *user_json(const osb__rt_client_t *cl) {
  if (!cl->who) return json_null();
  return json_pack("{s:s, s:s?, s:s}", "id", cl->who->user_id, "email", cl->who->email, "role",
                   osb_role_name(cl->who->role));
}

static osb_rt_who_t who_of(const osb__rt_client_t *cl) {
  if (!cl->who) return (osb_rt_who_t){NULL, NULL, OSB_ROLE_NONE};
  return (osb_rt_who_t){cl->who->user_id, cl->who->email, cl->who->role};
}

/* ---- lifetime ---- */

void osb__rt_client_ref(osb__rt_client_t *cl) { cl->refs++; }

void osb__rt_client_unref(osb__rt_client_t *cl) {
  osb_assert(cl->refs > 0);
  if (--cl->refs) return;
  osb_assert(!cl->sub0_used);
  free(cl->who);
  if (cl->backlog) osb_buf_free(cl->backlog);
  free(cl->backlog);
  if (cl->in_conn) osb__rt->tr->client_release(cl);
  else free(osb_container_of(cl, osb__rt_client_box_t, cl));
}

osb__rt_client_t *osb__rt_client_open(void *conn) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_client_t *cl;
  if (hub->tr->client_mem) {
    cl = hub->tr->client_mem(conn);
    memset(cl, 0, sizeof(*cl));
    cl->in_conn = true;
  } else {
    osb__rt_client_box_t *box = osb_calloc(1, sizeof(*box));
    box->conn = conn;
    cl = &box->cl;
  }
  cl->attached = true;
  cl->refs = 1;
  osb_tbucket32_init(&cl->bucket, hub->opt.msg_burst, osb_now_ms());
  hub->nclients++;
  osb_series_set(hub->st.connections, (double)hub->nclients);
  return cl;
}

void *osb__rt_client_conn(const osb__rt_client_t *cl) {
  if (!cl->attached) return NULL;
  if (cl->in_conn) return osb__rt->tr->conn_of((void *)cl);
  return osb_container_of(cl, osb__rt_client_box_t, cl)->conn;
}

uint64_t osb__rt_client_id(const osb__rt_client_t *cl) {
  osb_assert(cl->attached);
  return osb__rt->tr->conn_id(osb__rt_client_conn(cl));
}

static void set_principal(osb__rt_client_t *cl, const osb_rt_who_t *who) {
  free(cl->who);
  cl->who = NULL;
  if (!who->user_id) return;
  size_t ulen = strlen(who->user_id) + 1, elen = who->email ? strlen(who->email) + 1 : 0;
  osb__rt_principal_t *p = osb_malloc(sizeof(*p) + ulen + elen);
  memcpy(p->user_id, who->user_id, ulen);
  p->email = NULL;
  if (who->email) p->email = memcpy(p->user_id + ulen, who->email, elen);
  p->role = who->role;
  cl->who = p;
}

static void send_welcome(osb__rt_client_t *cl) {
  osb__rt_send_json(cl, json_pack("{s:s, s:I, s:o, s:i}", "type", "welcome", "conn_id",
                                  (json_int_t)osb__rt_client_id(cl), "user", user_json(cl), "heartbeat_s",
                                  (int)osb__rt->opt.heartbeat_s));
}

static void handshake_verified(void *ud, int err, const osb_rt_who_t *who) {
  osb__rt_client_t *cl = ud;
  if (cl->attached) {
    if (err == 0 && who && who->user_id) set_principal(cl, who);
    send_welcome(cl);
    if (err || !who || !who->user_id)
      osb__rt_send_error(cl, NULL, "unauthorized", "the handshake token was rejected; connected anonymously");
    osb__rt_client_done(cl);
  }
  osb__rt_client_unref(cl);
}

void osb__rt_client_start(osb__rt_client_t *cl, const char *token) {
  osb__rt_hub_t *hub = osb__rt;
  if (hub->opt.max_connections && hub->nclients > hub->opt.max_connections) {
    hub->tr->close(osb__rt_client_conn(cl), 1013, "too many connections");
    return;
  }
  if (!token || !*token || !hub->verify) {
    send_welcome(cl);
    return;
  }
  cl->busy = true;
  osb__rt_client_ref(cl);
  hub->verify(token, handshake_verified, cl);
}

void osb__rt_client_closed(osb__rt_client_t *cl) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_sub_t *s;
  while ((s = osb__rt_client_first(cl))) osb__rt_sub_remove(s, true);
  cl->attached = false;
  if (cl->backlog) osb_buf_free(cl->backlog);
  cl->backlog_n = 0;
  hub->nclients--;
  osb_series_set(hub->st.connections, (double)hub->nclients);
  osb__rt_client_unref(cl);
}

/* ---- operations that wait for a callback ---- */

typedef enum { OP_AUTH, OP_SUBSCRIBE, OP_PUBLISH, OP_PRESENCE } op_kind_t;

typedef struct op {
  osb__rt_client_t *cl;   /* one reference */
  op_kind_t kind;
  json_t *id;
  json_t *data;           /* publish */
  bool has_since;
  uint64_t since;
  char channel[];
} op_t;

static op_t *op_new(osb__rt_client_t *cl, op_kind_t kind, json_t *id, const char *channel) {
  size_t n = channel ? strlen(channel) : 0;
  op_t *op = osb_calloc(1, sizeof(*op) + n + 1);
  op->cl = cl;
  op->kind = kind;
  op->id = id ? json_incref(id) : NULL;
  if (n) memcpy(op->channel, channel, n);
  cl->busy = true;
  osb__rt_client_ref(cl);
  return op;
}

static void op_free(op_t *op) {
  osb__rt_client_t *cl = op->cl;
  json_decref(op->id);
  json_decref(op->data);
  free(op);
  osb__rt_client_unref(cl);
}

/* Finish: the client may take its next message. The op's reference keeps
 * the client alive through client_done and is dropped last. */
static void op_end(op_t *op) {
  osb__rt_client_t *cl = op->cl;
  json_decref(op->id);
  json_decref(op->data);
  free(op);
  if (cl->attached) osb__rt_client_done(cl);
  osb__rt_client_unref(cl);
}

static void auth_verified(void *ud, int err, const osb_rt_who_t *who) {
  op_t *op = ud;
  osb__rt_client_t *cl = op->cl;
  if (!cl->attached) {
  } else if (err || !who || !who->user_id) {
    osb__rt_send_error(cl, op->id, "unauthorized", "invalid or expired token");
  } else if (cl->who && strcmp(cl->who->user_id, who->user_id) != 0) {
    osb__rt_send_error(cl, op->id, "forbidden", "this connection is signed in as another user");
  } else {
    set_principal(cl, who);
    osb__rt_send_json(cl, with_id(json_pack("{s:s, s:o}", "type", "authenticated", "user", user_json(cl)), op->id));
  }
  op_end(op);
}

static void do_auth(osb__rt_client_t *cl, json_t *id, json_t *msg) {
  const char *token = json_string_value(json_object_get(msg, "token"));
  if (!token || !*token) {
    osb__rt_send_error(cl, id, "bad_request", "auth needs a token");
    return;
  }
  if (!osb__rt->verify) {
    osb__rt_send_error(cl, id, "unauthorized", "token verification is unavailable");
    return;
  }
  op_t *op = op_new(cl, OP_AUTH, id, NULL);
  osb__rt->verify(token, auth_verified, op);
}

/* channel name → namespace, or an error reply (false). */
static const char *get_channel(osb__rt_client_t *cl, json_t *id, json_t *msg, osb__rt_ns_t **ns,
                               const char **suffix) {
  const char *name = json_string_value(json_object_get(msg, "channel"));
  if (!name || !*name) {
    osb__rt_send_error(cl, id, "bad_request", "channel is required");
    return NULL;
  }
  *ns = osb__rt_ns_lookup(name, strlen(name), suffix);
  if (!*ns) {
    osb__rt_send_error(cl, id, "forbidden", "no such channel");
    return NULL;
  }
  return name;
}

/* Start a permitted subscription: true if it will answer by itself (and
 * call osb__rt_client_done), false if an error was sent here. */
static bool subscribe_now(osb__rt_client_t *cl, json_t *id, const char *name, bool has_since,
                          uint64_t since) {
  int err = 0;
  osb__rt_channel_t *ch = osb__rt_channel_open(name, strlen(name), &err);
  if (!ch) {
    osb__rt_send_error(cl, id, "unavailable", "history of %s is unavailable", name);
    return false;
  }
  cl->busy = true;   /* until the `subscribed` reply (sub_answer → client_done) */
  osb__rt_subscribe(cl, ch, id, has_since, since);
  return true;
}

static void presence_now(osb__rt_client_t *cl, json_t *id, const char *name) {
  osb_rt_who_t who = who_of(cl);
  json_t *p = osb_rt_presence_json(name, &who);
  json_object_set_new(p, "type", json_string("presence"));
  osb__rt_send_json(cl, with_id(p, id));
}

static void publish_done(void *ud, int err, uint64_t seq) {
  op_t *op = ud;
  osb__rt_client_t *cl = op->cl;
  if (!cl->attached) {
  } else if (err == 0) {
    osb__rt_send_json(cl, with_id(json_pack("{s:s, s:s, s:I}", "type", "ack", "channel", op->channel,
                                            "seq", (json_int_t)seq), op->id));
  } else if (err == OSB_EINVAL) {
    osb__rt_send_error(cl, op->id, "bad_request", "invalid data for %s", op->channel);
  } else if (err == OSB_EDENIED) {
    osb__rt_send_error(cl, op->id, "forbidden", "publishing on %s is not allowed", op->channel);
  } else if (err == OSB_ENOTFOUND) {
    osb__rt_send_error(cl, op->id, "not_found", "%s has no owner row (user or conversation)", op->channel);
  } else if (err == OSB_ETOOBIG) {
    osb__rt_send_error(cl, op->id, "too_large", "data is larger than %zu bytes", osb__rt->opt.max_data_bytes);
  } else {
    osb__rt_send_error(cl, op->id, "unavailable", "publish on %s failed: %s", op->channel, osb_strerror(err));
  }
  op_end(op);
}

/* Publish for a client whose write permission is established. Takes op. */
static void publish_now(op_t *op) {
  osb__rt_client_t *cl = op->cl;
  const char *sfx;
  osb__rt_ns_t *ns = osb__rt_ns_lookup(op->channel, strlen(op->channel), &sfx);
  if (ns->on_publish) {
    osb_rt_who_t who = who_of(cl);
    ns->on_publish(ns->publish_ud, op->channel, &who, op->data, publish_done, op);
    return;
  }
  osb_rt_publish(op->channel, op->data, publish_done, op);
}

static void access_checked(void *ud, int err, bool allowed) {
  op_t *op = ud;
  osb__rt_client_t *cl = op->cl;
  if (!cl->attached) {
    op_end(op);
    return;
  }
  if (err) {
    osb__rt_send_error(cl, op->id, "unavailable", "cannot check access to %s now", op->channel);
  } else if (!allowed) {
    osb__rt_send_error(cl, op->id, "forbidden", "access to %s denied", op->channel);
  } else {
    switch (op->kind) {
      case OP_SUBSCRIBE:
        /* Stay busy: the subscription answers (and frees the client) itself. */
        if (subscribe_now(cl, op->id, op->channel, op->has_since, op->since)) {
          op_free(op);
          return;
        }
        break;
      case OP_PUBLISH:
        publish_now(op);
        return;
      case OP_PRESENCE:
        presence_now(cl, op->id, op->channel);
        break;
      case OP_AUTH:
        osb_assert(!"auth is not access-checked");
    }
  }
  op_end(op);
}

static bool parse_since(osb__rt_client_t *cl, json_t *id, json_t *msg, bool *has, uint64_t *since) {
  json_t *s = json_object_get(msg, "since");
  *has = false;
  *since = 0;
  if (!s || json_is_null(s)) return true;
  if (!json_is_integer(s) || json_integer_value(s) < 0) {
    osb__rt_send_error(cl, id, "bad_request", "since must be a non-negative integer");
    return false;
  }
  *has = true;
  *since = (uint64_t)json_integer_value(s);
  return true;
}

static void do_subscribe(osb__rt_client_t *cl, json_t *id, json_t *msg) {
  osb__rt_ns_t *ns;
  const char *sfx;
  const char *name = get_channel(cl, id, msg, &ns, &sfx);
  bool has_since;
  uint64_t since;
  if (!name || !parse_since(cl, id, msg, &has_since, &since)) return;
  if (osb__rt_client_sub(cl, name, strlen(name))) {
    osb__rt_send_error(cl, id, "already_subscribed", "already subscribed to %s", name);
    return;
  }
  if (cl->nsubs >= osb__rt->opt.max_subscriptions) {
    osb__rt_send_error(cl, id, "too_many_subscriptions", "at most %u subscriptions per connection",
                       osb__rt->opt.max_subscriptions);
    return;
  }
  osb_rt_who_t who = who_of(cl);
  switch (osb__rt_decide(ns, false, sfx, &who)) {
    case OSB__RT_DENY:
      osb__rt_send_error(cl, id, "forbidden", "access to %s denied", name);
      return;
    case OSB__RT_ALLOW:
      subscribe_now(cl, id, name, has_since, since);
      return;
    case OSB__RT_ASK: {
      op_t *op = op_new(cl, OP_SUBSCRIBE, id, name);
      op->has_since = has_since;
      op->since = since;
      ns->check(ns->check_ud, op->channel, op->channel + (sfx - name), &who, access_checked, op);
      return;
    }
  }
}

static void do_unsubscribe(osb__rt_client_t *cl, json_t *id, json_t *msg) {
  const char *name = json_string_value(json_object_get(msg, "channel"));
  if (!name || !*name) {
    osb__rt_send_error(cl, id, "bad_request", "channel is required");
    return;
  }
  osb__rt_sub_t *sub = osb__rt_client_sub(cl, name, strlen(name));
  char *copy = osb_strdup(name);   /* `name` may live in the message only */
  if (sub) osb__rt_sub_remove(sub, true);
  osb__rt_send_json(cl, with_id(json_pack("{s:s, s:s}", "type", "unsubscribed", "channel", copy), id));
  free(copy);
}

static void do_publish(osb__rt_client_t *cl, json_t *id, json_t *msg) {
  osb__rt_ns_t *ns;
  const char *sfx;
  const char *name = get_channel(cl, id, msg, &ns, &sfx);
  if (!name) return;
  json_t *data = json_object_get(msg, "data");
  if (!data) {
    osb__rt_send_error(cl, id, "bad_request", "publish needs data");
    return;
  }
  osb_rt_who_t who = who_of(cl);
  osb__rt_decision_t d = osb__rt_decide(ns, true, sfx, &who);
  if (d == OSB__RT_DENY) {
    osb__rt_send_error(cl, id, "forbidden", "publishing on %s is not allowed", name);
    return;
  }
  op_t *op = op_new(cl, OP_PUBLISH, id, name);
  op->data = json_incref(data);
  if (d == OSB__RT_ALLOW) publish_now(op);
  else ns->check(ns->check_ud, op->channel, op->channel + (sfx - name), &who, access_checked, op);
}

static void do_presence(osb__rt_client_t *cl, json_t *id, json_t *msg) {
  osb__rt_ns_t *ns;
  const char *sfx;
  const char *name = get_channel(cl, id, msg, &ns, &sfx);
  if (!name) return;
  osb_rt_who_t who = who_of(cl);
  switch (osb__rt_decide(ns, false, sfx, &who)) {
    case OSB__RT_DENY:
      osb__rt_send_error(cl, id, "forbidden", "access to %s denied", name);
      return;
    case OSB__RT_ALLOW:
      presence_now(cl, id, name);
      return;
    case OSB__RT_ASK: {
      op_t *op = op_new(cl, OP_PRESENCE, id, name);
      ns->check(ns->check_ud, op->channel, op->channel + (sfx - name), &who, access_checked, op);
      return;
    }
  }
}

/* ---- dispatch ---- */

static void dispatch(osb__rt_client_t *cl, bool binary, const char *data, size_t len) {
  osb__rt_stats_t *st = &osb__rt->st;
  if (binary) {
    osb_series_inc(st->in[IN_INVALID], 1);
    osb__rt_send_error(cl, NULL, "bad_request", "binary frames are not supported");
    return;
  }
  json_error_t e;
  json_t *msg = json_loadb(data, len, 0, &e);
  if (!msg || !json_is_object(msg)) {
    osb_series_inc(st->in[IN_INVALID], 1);
    if (msg) osb__rt_send_error(cl, NULL, "bad_json", "a message is a JSON object");
    else osb__rt_send_error(cl, NULL, "bad_json", "invalid JSON at line %d, column %d (byte %d): %s", e.line,
                            e.column, e.position, osb_json_error_kind(&e));
    json_decref(msg);
    return;
  }
  json_t *id = json_object_get(msg, "id");
  const char *type = json_string_value(json_object_get(msg, "type"));
  if (!type) {
    osb_series_inc(st->in[IN_INVALID], 1);
    osb__rt_send_error(cl, id, "bad_request", "type is required");
  } else if (strcmp(type, "subscribe") == 0) {
    osb_series_inc(st->in[IN_SUBSCRIBE], 1);
    do_subscribe(cl, id, msg);
  } else if (strcmp(type, "unsubscribe") == 0) {
    osb_series_inc(st->in[IN_UNSUBSCRIBE], 1);
    do_unsubscribe(cl, id, msg);
  } else if (strcmp(type, "publish") == 0) {
    osb_series_inc(st->in[IN_PUBLISH], 1);
    do_publish(cl, id, msg);
  } else if (strcmp(type, "ping") == 0) {
    osb_series_inc(st->in[IN_PING], 1);
    osb__rt_send_json(cl, with_id(json_pack("{s:s}", "type", "pong"), id));
  } else if (strcmp(type, "presence") == 0) {
    osb_series_inc(st->in[IN_PRESENCE], 1);
    do_presence(cl, id, msg);
  } else if (strcmp(type, "auth") == 0) {
    osb_series_inc(st->in[IN_AUTH], 1);
    do_auth(cl, id, msg);
  } else {
    osb_series_inc(st->in[IN_UNKNOWN], 1);
    osb__rt_send_error(cl, id, "unknown_type", "unknown message type");
  }
  json_decref(msg);
}

/* Handle queued messages until one has to wait. Re-entrant calls (an
 * operation completing synchronously inside dispatch) return at once: the
 * outer loop continues. */
static void pump(osb__rt_client_t *cl) {
  if (cl->pumping) return;
  cl->pumping = true;
  osb__rt_client_ref(cl);
  while (!cl->busy && cl->attached && cl->backlog_n) {
    osb_buf_t *b = cl->backlog;
    uint32_t n;
    memcpy(&n, b->base, 4);
    bool binary = b->base[4] != 0;
    char *copy = osb_strndup(b->base + 5, n);
    osb_buf_consume(b, 5 + (size_t)n);
    cl->backlog_n--;
    dispatch(cl, binary, copy, n);
    free(copy);
  }
  cl->pumping = false;
  osb__rt_client_unref(cl);
}

void osb__rt_client_done(osb__rt_client_t *cl) {
  cl->busy = false;
  pump(cl);
}

/* The `id` of a message that is refused unread (new reference, or NULL):
 * its error reply still echoes it (SPEC §5). */
static json_t *peek_id(bool binary, const char *data, size_t len) {
  if (binary) return NULL;
  json_t *msg = json_loadb(data, len, 0, NULL);
  json_t *id = json_is_object(msg) ? json_object_get(msg, "id") : NULL;
  if (id) json_incref(id);
  json_decref(msg);
  return id;
}

/* Token bucket; false (and maybe a 1008 close) when over the limit. */
static bool admit(osb__rt_client_t *cl, bool binary, const char *data, size_t len) {
  osb__rt_hub_t *hub = osb__rt;
  uint64_t now = osb_now_ms();
  if (osb_tbucket32_take(&cl->bucket, hub->opt.msg_rate, hub->opt.msg_burst, now)) return true;
  osb_series_inc(hub->st.rate_limited, 1);
  if ((uint32_t)now - cl->abuse_window_ms > ABUSE_WINDOW_MS) {
    cl->abuse_window_ms = (uint32_t)now;
    cl->abuse = 0;
  }
  if (++cl->abuse > hub->opt.abuse_limit) {
    osb_series_inc(hub->st.abuse_closes, 1);
    osb_log(OSB_LOG_WARN, "realtime", "connection %llu closed: sustained message rate abuse",
            (unsigned long long)osb__rt_client_id(cl));
    hub->tr->close(osb__rt_client_conn(cl), 1008, "message rate limit exceeded");
    return false;
  }
  json_t *id = peek_id(binary, data, len);
  osb__rt_send_error(cl, id, "rate_limited", "too many messages; slow down");
  json_decref(id);
  return false;
}

void osb__rt_client_message(osb__rt_client_t *cl, bool binary, const char *data, size_t len) {
  if (!cl->attached || !admit(cl, binary, data, len)) return;
  if (cl->busy || cl->pumping || cl->backlog_n) {
    if (cl->backlog_n >= osb__rt->opt.backlog_max) {
      json_t *id = peek_id(binary, data, len);
      osb__rt_send_error(cl, id, "rate_limited", "too many messages waiting for an answer");
      json_decref(id);
      return;
    }
    if (!cl->backlog) cl->backlog = osb_calloc(1, sizeof(osb_buf_t));
    uint32_t n = (uint32_t)len;
    char flag = binary ? 1 : 0;
    osb_buf_append(cl->backlog, &n, 4);
    osb_buf_append(cl->backlog, &flag, 1);
    osb_buf_append(cl->backlog, data, len);
    cl->backlog_n++;
    if (!cl->busy) pump(cl);
    return;
  }
  cl->pumping = true;
  osb__rt_client_ref(cl);
  dispatch(cl, binary, data, len);
  cl->pumping = false;
  pump(cl);
  osb__rt_client_unref(cl);
}
