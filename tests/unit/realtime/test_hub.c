/* test_hub.c: the realtime hub without a network. Fake connections record
 * the frames queued to them (the fake transport leaves payloads unframed,
 * so a frame's bytes are its JSON); a fake verifier maps tokens to users; a
 * deferred store lets a test hold a replay in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "obs/metrics.h"
#include "realtime/internal.h"

/* ---- fake connections ---- */

#define MAXF 4096
typedef struct fconn {
  osb_msg_t *f[MAXF];
  size_t n, next;      /* frames queued; next one a test reads */
  size_t bytes;        /* "unsent" bytes */
  size_t limit;        /* 0 = unlimited; past it → OSB_ESLOW and closed 1013 */
  uint16_t closed;     /* close code, 0 = open */
  bool sync_close;     /* past limit: the socket errors, on_close runs inside send (ws.c can) */
  osb__rt_client_t *cl;
  uint64_t id;         /* the connection's (transport conn_id) */
} fconn_t;

static int f_send(void *conn, osb_msg_t *m) {
  fconn_t *c = conn;
  if (c->closed) return OSB_ECLOSED;
  assert_true(c->n < MAXF);
  c->f[c->n++] = osb_msg_ref(m);
  c->bytes += m->len;
  if (c->limit && c->bytes > c->limit && c->sync_close) {
    /* osb_ws_send → flush_now → uv_try_write error → osb__conn_close → on_close */
    osb__rt_client_t *cl = c->cl;
    c->closed = 1006;
    c->cl = NULL;
    osb__rt_client_closed(cl);
    return OSB_ECLOSED;
  }
  if (c->limit && c->bytes > c->limit) {
    c->closed = 1013;
    return OSB_ESLOW;
  }
  return 0;
}
static void f_close(void *conn, uint16_t code, const char *reason) {
  fconn_t *c = conn;
  if (!c->closed) c->closed = code;
}
static void f_finish(osb_msg_t *m) {}
static uint64_t f_conn_id(void *conn) { return ((fconn_t *)conn)->id; }
static const osb__rt_transport_t ftr = {.send = f_send, .close = f_close, .finish = f_finish, .conn_id = f_conn_id};

/* A transport that keeps each client inside its connection, as the
 * WebSocket user area does (ws_glue.c): client_mem holds the connection's
 * memory, client_release lets it go. */
typedef struct mconn {
  fconn_t f;            /* first: the f_* functions see an fconn_t */
  int holds, releases;
  _Alignas(8) unsigned char mem[sizeof(osb__rt_client_t)];
} mconn_t;
static void *m_client_mem(void *conn) {
  mconn_t *m = conn;
  m->holds++;
  memset(m->mem, 0xa5, sizeof(m->mem));   /* the hub must not rely on zeroed memory */
  return m->mem;
}
static void m_client_release(void *mem) {
  mconn_t *m = (mconn_t *)((char *)mem - offsetof(mconn_t, mem));
  assert_true(m->holds > 0);
  m->holds--;
  m->releases++;
}
static void *m_conn_of(void *mem) { return (char *)mem - offsetof(mconn_t, mem); }
static const osb__rt_transport_t mtr = {.send = f_send,
                                        .close = f_close,
                                        .finish = f_finish,
                                        .client_mem = m_client_mem,
                                        .client_release = m_client_release,
                                        .conn_of = m_conn_of,
                                        .conn_id = f_conn_id};
static const osb__rt_transport_t *hub_tr = &ftr;

/* tokens "tok-<role>-<user>" → that user with that role */
static void f_verify(const char *token, osb__rt_verified_cb cb, void *ud) {
  char role[16], user[64];
  if (sscanf(token, "tok-%15[a-z]-%63s", role, user) != 2) {
    cb(ud, OSB_EDENIED, NULL);
    return;
  }
  osb_role_t r = strcmp(role, "admin") == 0     ? OSB_ROLE_ADMIN
                 : strcmp(role, "service") == 0 ? OSB_ROLE_SERVICE
                                                : OSB_ROLE_USER;
  osb_rt_who_t who = {user, NULL, r};
  cb(ud, 0, &who);
}

static fconn_t *conn_open(const char *token) {
  static uint64_t next_id = 1;
  fconn_t *c = calloc(1, sizeof(*c));
  c->id = next_id++;
  c->cl = osb__rt_client_open(c);
  osb__rt_client_start(c->cl, token);
  return c;
}

static void conn_free(fconn_t *c) {
  if (c->cl) osb__rt_client_closed(c->cl);
  for (size_t i = 0; i < c->n; i++) osb_msg_unref(c->f[i]);
  free(c);
}

static void say(fconn_t *c, const char *fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  osb__rt_client_message(c->cl, false, buf, strlen(buf));
}

static size_t pending(fconn_t *c) { return c->n - c->next; }

/* The next frame as JSON (the test owns it), or NULL. */
static json_t *next(fconn_t *c) {
  if (c->next == c->n) return NULL;
  osb_msg_t *m = c->f[c->next++];
  json_t *j = json_loadb(m->data, m->len, 0, NULL);
  assert_non_null(j);
  return j;
}

static const char *jstr(json_t *j, const char *k) { return json_string_value(json_object_get(j, k)); }
static json_int_t jint(json_t *j, const char *k) { return json_integer_value(json_object_get(j, k)); }
static bool jbool(json_t *j, const char *k) { return json_is_true(json_object_get(j, k)); }

/* Expect the next frame to have this type; returns it (caller decrefs). */
static json_t *expect(fconn_t *c, const char *type) {
  json_t *j = next(c);
  if (!j) fail_msg("expected %s, got nothing", type);
  if (strcmp(jstr(j, "type"), type) != 0) {
    char *s = json_dumps(j, JSON_COMPACT);
    fail_msg("expected %s, got %s", type, s);
  }
  return j;
}

static void expect_drop(fconn_t *c, const char *type) { json_decref(expect(c, type)); }

static void expect_error(fconn_t *c, const char *code) {
  json_t *j = expect(c, "error");
  assert_string_equal(jstr(j, "code"), code);
  json_decref(j);
}

/* ---- publishing helpers ---- */

static uint64_t pub_seq;
static int pub_err;
static void pub_cb(void *ud, int err, uint64_t seq) {
  pub_err = err;
  pub_seq = seq;
}

static uint64_t publish(const char *channel, const char *data) {
  pub_err = 1;
  osb_rt_publish_text(channel, data, strlen(data), pub_cb, NULL);
  assert_int_equal(pub_err, 0);
  return pub_seq;
}

/* ---- a store whose answers the test releases ---- */

typedef struct dstore {
  osb_rt_store_t base;
  osb_rt_store_t *mem;
  bool hold;
  int fail_last;            /* last_seq error to report */
  bool hold_last;           /* keep the last_seq callback for the test */
  bool hold_append;         /* keep the append callback (not stored) */
  osb_rt_seq_cb acb;
  void *aud;
  char *adata;              /* the held append's row */
  size_t alen;
  char achannel[64];
  osb_rt_seq_cb lcb;
  void *lud;
  osb_rt_rows_cb rcb;
  void *rud;
  uint64_t since;
  size_t limit;
  char channel[64];
  size_t appends;
} dstore_t;

static dstore_t *dstore;

static void d_append(osb_rt_store_t *st, const char *ch, const osb_rt_row_t *row, osb_rt_seq_cb cb,
                     void *ud) {
  dstore_t *d = (dstore_t *)st;
  d->appends++;
  if (d->hold_append) {   /* "the transaction has not committed yet" */
    d->acb = cb;
    d->aud = ud;
    free(d->adata);
    d->adata = strndup(row->data, row->len);
    d->alen = row->len;
    snprintf(d->achannel, sizeof(d->achannel), "%s", ch);
    return;
  }
  d->mem->append(d->mem, ch, row, cb, ud);
}
/* Let the held append commit (store it and report its seq) or fail. */
static void d_commit_append(int err) {
  osb_rt_seq_cb cb = dstore->acb;
  dstore->acb = NULL;
  if (err) {
    cb(dstore->aud, err, 0);
    return;
  }
  osb_rt_row_t row = {0, dstore->adata, dstore->alen, 1};
  dstore->mem->append(dstore->mem, dstore->achannel, &row, cb, dstore->aud);
}
static void d_range(osb_rt_store_t *st, const char *ch, uint64_t since, size_t limit, osb_rt_rows_cb cb,
                    void *ud) {
  dstore_t *d = (dstore_t *)st;
  if (!d->hold) {
    d->mem->range(d->mem, ch, since, limit, cb, ud);
    return;
  }
  d->rcb = cb;
  d->rud = ud;
  d->since = since;
  d->limit = limit;
  snprintf(d->channel, sizeof(d->channel), "%s", ch);
}
static void d_last(osb_rt_store_t *st, const char *ch, osb_rt_seq_cb cb, void *ud) {
  dstore_t *d = (dstore_t *)st;
  if (d->hold_last) {
    d->lcb = cb;
    d->lud = ud;
    return;
  }
  if (d->fail_last) {
    cb(ud, d->fail_last, 0);
    return;
  }
  d->mem->last_seq(d->mem, ch, cb, ud);
}
static void d_dispose(osb_rt_store_t *st) {
  dstore_t *d = (dstore_t *)st;
  d->mem->dispose(d->mem);
  free(d->adata);
  free(d);
  dstore = NULL;
}
static void d_release(void) {
  osb_rt_rows_cb cb = dstore->rcb;
  dstore->rcb = NULL;
  dstore->hold = false;
  dstore->mem->range(dstore->mem, dstore->channel, dstore->since, dstore->limit, cb, dstore->rud);
}

/* ---- a bus that counts what passes through it ---- */

static size_t bus_count;
static void cbus_publish(osb_rt_bus_t *b, const osb_rt_pub_t *p, osb_rt_publish_cb cb, void *ud) {
  bus_count++;
  osb__rt_deliver(p, cb, ud);
}
static void cbus_dispose(osb_rt_bus_t *b) { free(b); }

/* ---- fixture ---- */

static osb__rt_options_t opts;

static int setup(void **state) {
  osb__rt_ns_reset();
  osb__rt_default_options(&opts);
  opts.max_connections = 0;
  hub_tr = &ftr;
  return 0;
}

/* Build the hub after the test tuned opts / the namespace table. */
static void hub(size_t store_rows) {
  dstore = calloc(1, sizeof(*dstore));
  dstore->mem = osb_rt_store_memory_new(store_rows);
  dstore->base.name = "test";
  dstore->base.append = d_append;
  dstore->base.range = d_range;
  dstore->base.last_seq = d_last;
  dstore->base.dispose = d_dispose;
  osb_rt_bus_t *b = calloc(1, sizeof(*b));
  b->name = "counting";
  b->publish = cbus_publish;
  b->dispose = cbus_dispose;
  bus_count = 0;
  osb__rt_hub_init(&opts, hub_tr, f_verify, &dstore->base, b, NULL);
}

static int teardown(void **state) {
  osb__rt_hub_free();
  osb_metrics_reset();
  return 0;
}

/* ---- namespace table ---- */

static const osb_rt_who_t ANON = {NULL, NULL, OSB_ROLE_NONE};
static const osb_rt_who_t U1 = {"u1", "u1@x", OSB_ROLE_USER};
static const osb_rt_who_t U2 = {"u2", "u2@x", OSB_ROLE_USER};
static const osb_rt_who_t ADMIN = {"a1", "a@x", OSB_ROLE_ADMIN};
static const osb_rt_who_t SERVICE = {"service", NULL, OSB_ROLE_SERVICE};

static osb__rt_decision_t decide(const char *channel, bool write, const osb_rt_who_t *who) {
  const char *sfx;
  osb__rt_ns_t *ns = osb__rt_ns_lookup(channel, strlen(channel), &sfx);
  assert_non_null(ns);
  return osb__rt_decide(ns, write, sfx, who);
}

static void test_ns_market_read_by_anyone(void **state) {
  assert_int_equal(decide("market:all", false, &ANON), OSB__RT_ALLOW);
  assert_int_equal(decide("market:dental-implants", false, &U1), OSB__RT_ALLOW);
}

static void test_ns_market_written_by_server_only(void **state) {
  assert_int_equal(decide("market:all", true, &ANON), OSB__RT_DENY);
  assert_int_equal(decide("market:all", true, &U1), OSB__RT_DENY);
  assert_int_equal(decide("market:all", true, &ADMIN), OSB__RT_ALLOW);
  assert_int_equal(decide("market:all", true, &SERVICE), OSB__RT_ALLOW);
}

static void test_ns_notify_read_by_that_user_only(void **state) {
  assert_int_equal(decide("notify:u1", false, &U1), OSB__RT_ALLOW);
  assert_int_equal(decide("notify:u1", false, &U2), OSB__RT_DENY);
  assert_int_equal(decide("notify:u1", false, &ANON), OSB__RT_DENY);
  assert_int_equal(decide("notify:u1", false, &ADMIN), OSB__RT_DENY);
  assert_int_equal(decide("notify:u1", true, &U1), OSB__RT_DENY);
}

static void check_never(void *ud, const char *ch, const char *sfx, const osb_rt_who_t *who,
                        osb_rt_check_cb cb, void *ctx) {
  cb(ctx, 0, false);
}

static void test_ns_chat_asks_the_owner_check(void **state) {
  assert_int_equal(decide("chat:c1", false, &U1), OSB__RT_DENY);   /* no check registered */
  assert_int_equal(osb_rt_set_access_check("chat", check_never, NULL), 0);
  assert_int_equal(decide("chat:c1", false, &U1), OSB__RT_ASK);
  assert_int_equal(decide("chat:c1", true, &U1), OSB__RT_ASK);
  assert_int_equal(decide("chat:c1", false, &ANON), OSB__RT_DENY);
  assert_int_equal(decide("chat:c1", false, &SERVICE), OSB__RT_ALLOW);
}

static void test_ns_agents_and_dashboard(void **state) {
  assert_int_equal(decide("agents:status", false, &ANON), OSB__RT_DENY);
  assert_int_equal(decide("agents:status", false, &U1), OSB__RT_ALLOW);
  assert_int_equal(decide("dashboard:metrics", false, &U1), OSB__RT_DENY);
  assert_int_equal(decide("dashboard:metrics", false, &ADMIN), OSB__RT_ALLOW);
}

static void test_ns_rejects_unknown_names(void **state) {
  const char *bad[] = {"foo:bar", "market:", "market", ":all", "market:a b", "market:a/b",
                       "agents:other", "dashboard:x", "notify:\"x\"", ""};
  for (size_t i = 0; i < OSB_ARRAY_LEN(bad); i++)
    assert_null(osb__rt_ns_lookup(bad[i], strlen(bad[i]), NULL));
  char longname[300] = "market:";
  memset(longname + 7, 'a', 200);
  assert_null(osb__rt_ns_lookup(longname, strlen(longname), NULL));
}

/* ---- history ring ---- */

static void test_ring_keeps_the_newest_max_entries(void **state) {
  osb__rt_ring_t r = {.max = 5};
  for (uint64_t s = 1; s <= 12; s++) {
    osb_msg_t *m = osb_msg_new(0, 1);
    osb__rt_ring_push(&r, s, 0, m);
    osb_msg_unref(m);
  }
  assert_int_equal(r.len, 5);
  for (uint32_t i = 0; i < r.len; i++) assert_int_equal(osb__rt_ring_at(&r, i)->seq, 8 + i);
  assert_int_equal(osb__rt_ring_after(&r, 0), 0);
  assert_int_equal(osb__rt_ring_after(&r, 9), 2);
  assert_int_equal(osb__rt_ring_after(&r, 12), 5);
  osb__rt_ring_free(&r);
}

static void test_ring_expires_by_age(void **state) {
  osb__rt_ring_t r = {.max = 10};
  for (uint64_t s = 1; s <= 4; s++) {
    osb_msg_t *m = osb_msg_new(0, 1);
    osb__rt_ring_push(&r, s, s * 1000, m);
    osb_msg_unref(m);
  }
  osb__rt_ring_expire(&r, 4500, 2000);   /* keeps entries at 3000 and 4000 */
  assert_int_equal(r.len, 2);
  assert_int_equal(osb__rt_ring_at(&r, 0)->seq, 3);
  osb__rt_ring_free(&r);
}

/* ---- connect, subscribe, publish ---- */

static void test_welcome_on_connect(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  json_t *w = expect(c, "welcome");
  assert_true(json_is_integer(json_object_get(w, "conn_id")));
  assert_true(json_is_null(json_object_get(w, "user")));
  assert_int_equal(jint(w, "heartbeat_s"), 25);
  json_decref(w);
  conn_free(c);
}

static void test_welcome_carries_the_handshake_user(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  json_t *w = expect(c, "welcome");
  assert_string_equal(jstr(json_object_get(w, "user"), "id"), "u1");
  assert_string_equal(jstr(json_object_get(w, "user"), "role"), "user");
  json_decref(w);
  conn_free(c);
}

static void test_bad_handshake_token_connects_anonymously(void **state) {
  hub(100);
  fconn_t *c = conn_open("garbage");
  json_t *w = expect(c, "welcome");
  assert_true(json_is_null(json_object_get(w, "user")));
  json_decref(w);
  expect_error(c, "unauthorized");
  assert_int_equal(c->closed, 0);
  conn_free(c);
}

static void test_subscribe_replies_with_id_and_seq(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\",\"id\":7,\"extra\":{\"ignored\":1}}");
  json_t *j = expect(c, "subscribed");
  assert_string_equal(jstr(j, "channel"), "market:all");
  assert_int_equal(jint(j, "id"), 7);
  assert_int_equal(jint(j, "seq"), 0);
  assert_false(jbool(j, "recovered"));
  assert_int_equal(jint(j, "missed"), 0);
  json_decref(j);
  conn_free(c);
}

static void test_publish_delivers_with_increasing_seq(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  for (int i = 1; i <= 3; i++) {
    char d[32];
    snprintf(d, sizeof(d), "{\"n\":%d}", i);
    assert_int_equal(publish("market:all", d), (uint64_t)i);
  }
  for (int i = 1; i <= 3; i++) {
    json_t *m = expect(c, "message");
    assert_string_equal(jstr(m, "channel"), "market:all");
    assert_int_equal(jint(m, "seq"), i);
    assert_int_equal(jint(json_object_get(m, "data"), "n"), i);
    assert_true(jint(m, "ts") > 1600000000000LL);
    json_decref(m);
  }
  assert_int_equal(pending(c), 0);
  assert_int_equal(bus_count, 3);   /* every publication went through the bus */
  conn_free(c);
}

static void test_fanout_shares_one_frame(void **state) {
  hub(100);
  fconn_t *a = conn_open(NULL), *b = conn_open(NULL);
  say(a, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  publish("market:all", "\"tick\"");
  assert_int_equal(a->n, 3);
  assert_int_equal(b->n, 3);
  assert_ptr_equal(a->f[2], b->f[2]);   /* the very same buffer */
  /* a's and b's queues, and the history ring */
  assert_int_equal(a->f[2]->refcnt, 3);
  conn_free(a);
  conn_free(b);
}

static void test_other_channels_do_not_receive(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:implants\"}");
  publish("market:all", "1");
  assert_int_equal(c->n, 2);   /* welcome, subscribed */
  conn_free(c);
}

static void test_unsubscribe_stops_delivery(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"unsubscribe\",\"channel\":\"market:all\",\"id\":\"u\"}");
  json_t *j = expect(c, "unsubscribed");
  assert_string_equal(jstr(j, "id"), "u");
  json_decref(j);
  publish("market:all", "1");
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

/* ---- resume ---- */

static fconn_t *subscribed_since(const char *token, const char *channel, uint64_t since, json_t **reply) {
  fconn_t *c = conn_open(token);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"%s\",\"since\":%llu,\"id\":1}", channel,
      (unsigned long long)since);
  *reply = expect(c, "subscribed");
  return c;
}

static void expect_seqs(fconn_t *c, uint64_t from, uint64_t to) {
  for (uint64_t s = from; s <= to; s++) {
    json_t *m = expect(c, "message");
    assert_int_equal(jint(m, "seq"), s);
    assert_int_equal(jint(m, "data"), s);   /* the data is the seq it was published with */
    json_decref(m);
  }
}

static void publish_n(const char *channel, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    char d[32];
    snprintf(d, sizeof(d), "%llu", (unsigned long long)(pub_seq + 1));
    pub_err = 1;
    osb_rt_publish_text(channel, d, strlen(d), pub_cb, NULL);
    assert_int_equal(pub_err, 0);
  }
}

static void test_resume_from_memory_replays_exactly_the_missed(void **state) {
  hub(100);
  pub_seq = 0;
  publish_n("market:all", 5);
  json_t *r;
  fconn_t *c = subscribed_since(NULL, "market:all", 2, &r);
  assert_true(jbool(r, "recovered"));
  assert_int_equal(jint(r, "missed"), 3);
  assert_int_equal(jint(r, "seq"), 5);
  json_decref(r);
  expect_seqs(c, 3, 5);
  assert_int_equal(pending(c), 0);
  publish_n("market:all", 1);
  expect_seqs(c, 6, 6);
  conn_free(c);
}

static void test_resume_beyond_history_is_not_recovered(void **state) {
  osb__rt_ns_by_name("market")->history_max = 4;
  hub(100);
  pub_seq = 0;
  publish_n("market:all", 10);
  json_t *r;
  fconn_t *c = subscribed_since(NULL, "market:all", 3, &r);
  assert_false(jbool(r, "recovered"));
  assert_int_equal(jint(r, "missed"), 7);
  json_decref(r);
  assert_int_equal(pending(c), 0);   /* nothing replayed: the client refetches */
  publish_n("market:all", 1);
  expect_seqs(c, 11, 11);
  conn_free(c);
}

static void test_resume_at_current_seq_is_recovered_with_nothing(void **state) {
  hub(100);
  pub_seq = 0;
  publish_n("market:all", 3);
  json_t *r;
  fconn_t *c = subscribed_since(NULL, "market:all", 3, &r);
  assert_true(jbool(r, "recovered"));
  assert_int_equal(jint(r, "missed"), 0);
  json_decref(r);
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

static void test_resume_from_the_future_is_not_recovered(void **state) {
  hub(100);
  pub_seq = 0;
  publish_n("market:all", 2);
  json_t *r;
  fconn_t *c = subscribed_since(NULL, "market:all", 50, &r);
  assert_false(jbool(r, "recovered"));
  assert_int_equal(jint(r, "seq"), 2);
  json_decref(r);
  conn_free(c);
}

static void test_resume_after_age_expiry_is_not_recovered(void **state) {
  hub(100);
  fconn_t *keep = conn_open(NULL);   /* keeps the channel (and its seq) alive */
  say(keep, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  pub_seq = 0;
  publish_n("market:all", 3);
  osb__rt_sweep(osb_now_ms() + 24u * 3600 * 1000);   /* the history ages out */
  json_t *r;
  fconn_t *c = subscribed_since(NULL, "market:all", 1, &r);
  assert_false(jbool(r, "recovered"));
  assert_int_equal(jint(r, "seq"), 3);
  json_decref(r);
  assert_int_equal(pending(c), 0);
  conn_free(c);
  conn_free(keep);
}

static void test_idle_channel_is_dropped_after_its_history(void **state) {
  hub(100);
  pub_seq = 0;
  publish_n("market:all", 3);
  assert_non_null(osb__rt_channel_find("market:all", 10));
  osb__rt_sweep(osb_now_ms() + 24u * 3600 * 1000);
  assert_null(osb__rt_channel_find("market:all", 10));
}

static void test_durable_resume_from_store(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 3;
  hub(100);
  pub_seq = 0;
  publish_n("notify:u1", 10);
  assert_int_equal(dstore->appends, 10);
  json_t *r;
  fconn_t *c = subscribed_since("tok-user-u1", "notify:u1", 2, &r);
  assert_true(jbool(r, "recovered"));
  assert_int_equal(jint(r, "missed"), 8);
  json_decref(r);
  expect_seqs(c, 3, 10);   /* 3..7 from the store, 8..10 from memory */
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

static void test_durable_resume_with_a_gap_is_not_recovered(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 2;
  hub(4);   /* the store keeps only 4 rows per channel: 7..10 */
  pub_seq = 0;
  publish_n("notify:u1", 10);
  json_t *r;
  fconn_t *c = subscribed_since("tok-user-u1", "notify:u1", 2, &r);
  assert_false(jbool(r, "recovered"));
  json_decref(r);
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

static void test_durable_seq_continues_from_the_store(void **state) {
  hub(100);
  pub_seq = 0;
  publish_n("notify:u1", 4);
  osb__rt_sweep(osb_now_ms() + 24u * 3600 * 1000);
  assert_null(osb__rt_channel_find("notify:u1", 9));
  assert_int_equal(publish("notify:u1", "5"), 5);
}

static void test_replay_includes_messages_published_while_the_store_answers(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 2;
  hub(100);
  pub_seq = 0;
  publish_n("notify:u1", 6);
  dstore->hold = true;
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"since\":1}");
  say(c, "{\"type\":\"ping\",\"id\":\"after\"}");
  assert_int_equal(pending(c), 0);        /* waiting for the store; the ping waits too */
  publish_n("notify:u1", 2);               /* 7, 8 arrive meanwhile */
  assert_int_equal(pending(c), 0);
  d_release();
  json_t *r = expect(c, "subscribed");
  assert_true(jbool(r, "recovered"));
  assert_int_equal(jint(r, "seq"), 8);
  json_decref(r);
  expect_seqs(c, 2, 8);
  json_t *p = expect(c, "pong");
  assert_string_equal(jstr(p, "id"), "after");
  json_decref(p);
  publish_n("notify:u1", 1);
  expect_seqs(c, 9, 9);
  conn_free(c);
}

static void test_close_during_replay_is_safe(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 2;
  hub(100);
  pub_seq = 0;
  publish_n("notify:u1", 6);
  dstore->hold = true;
  fconn_t *c = conn_open("tok-user-u1");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"since\":1}");
  osb__rt_client_closed(c->cl);
  c->cl = NULL;
  d_release();   /* finds the subscription dead and frees it */
  conn_free(c);
}

/* The seq of a durable message is the store's (the database counter), not
 * the hub's: rows committed by another writer after the channel was loaded
 * move the counter, and the next publication continues after them. The old
 * hub numbered the channel itself (1 here) and the store kept the other
 * writer's row under that seq, dropping this one silently. */
static void test_durable_seq_comes_from_the_store(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 0;
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\"}");
  expect_drop(c, "subscribed");   /* loaded at seq 0 */
  osb_rt_row_t other = {0, "\"elsewhere\"", 11, 1};
  dstore->mem->append(dstore->mem, "notify:u1", &other, NULL, NULL);   /* seqs 1, 2 */
  dstore->mem->append(dstore->mem, "notify:u1", &other, NULL, NULL);
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "\"mine\"", 6, pub_cb, NULL);
  assert_int_equal(pending(c), 0);   /* 3 waits a moment for 1 and 2, which never come here */
  osb__rt_sweep(osb_now_ms() + 1000);
  assert_int_equal(pub_err, 0);
  assert_int_equal(pub_seq, 3);
  json_t *m = expect(c, "message");
  assert_int_equal(jint(m, "seq"), 3);
  assert_string_equal(json_string_value(json_object_get(m, "data")), "mine");
  json_decref(m);
  json_t *r;
  fconn_t *d = subscribed_since("tok-user-u1", "notify:u1", 0, &r);
  assert_true(jbool(r, "recovered"));
  json_decref(r);
  for (int i = 1; i <= 3; i++) {   /* every committed row, each under its own seq */
    json_t *x = expect(d, "message");
    assert_int_equal(jint(x, "seq"), i);
    assert_string_equal(json_string_value(json_object_get(x, "data")), i < 3 ? "elsewhere" : "mine");
    json_decref(x);
  }
  conn_free(d);
  conn_free(c);
}

/* Two transactions' commit answers may arrive in either order (two pool
 * connections): the hub delivers durable messages in seq order anyway. */
static void test_durable_messages_arriving_out_of_order_are_delivered_in_order(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\"}");
  expect_drop(c, "subscribed");
  osb_rt_pub_t p3 = {"notify:u1", "3", 1, 3, true, false, 0}, p2 = {"notify:u1", "2", 1, 2, true, false, 0},
               p1 = {"notify:u1", "1", 1, 1, true, false, 0};
  osb__rt_deliver(&p3, NULL, NULL);
  osb__rt_deliver(&p2, NULL, NULL);
  assert_int_equal(pending(c), 0);
  osb__rt_deliver(&p1, NULL, NULL);
  expect_seqs(c, 1, 3);
  osb__rt_deliver(&p2, NULL, NULL);   /* a duplicate is not delivered twice */
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

/* A cluster bus (bus_pg.c) numbers non-durable channels in the database:
 * a channel opened here starts from the store's seq, messages carry their
 * seq and are put back in order, a seq already delivered is dropped, and a
 * gap that stays open for 500 ms is reported with a reset frame before the
 * next message. */
static void test_cluster_seqs_for_non_durable_channels(void **state) {
  hub(100);
  osb__rt->bus->cluster_seqs = true;
  /* the channel's counter is at 10 cluster-wide (memory store: an append) */
  osb_rt_row_t row = {0, "0", 1, 1};
  for (int i = 0; i < 10; i++) dstore->mem->append(dstore->mem, "market:c", &row, NULL, NULL);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:c\"}");
  json_t *s = expect(c, "subscribed");
  assert_int_equal(jint(s, "seq"), 10);
  json_decref(s);
  osb_rt_pub_t p12 = {"market:c", "12", 2, 12, false, false, 0}, p11 = {"market:c", "11", 2, 11, false, false, 0};
  osb__rt_deliver(&p12, NULL, NULL);
  assert_int_equal(pending(c), 0);   /* waits for 11 */
  osb__rt_deliver(&p11, NULL, NULL);
  expect_seqs(c, 11, 12);
  osb__rt_deliver(&p11, NULL, NULL);   /* a duplicate */
  assert_int_equal(pending(c), 0);
  osb_rt_pub_t p15 = {"market:c", "15", 2, 15, false, false, 0};
  osb__rt_deliver(&p15, NULL, NULL);
  assert_int_equal(pending(c), 0);
  osb__rt_flush_held(osb_now_ms() + 1000);
  json_t *r = expect(c, "reset");
  assert_string_equal(jstr(r, "channel"), "market:c");
  assert_int_equal(jint(r, "seq"), 14);
  assert_int_equal(jint(r, "missed"), 2);
  assert_false(jbool(r, "recovered"));
  json_decref(r);
  expect_seqs(c, 15, 15);
  /* resume from memory over what the bus delivered */
  fconn_t *d = conn_open(NULL);
  expect_drop(d, "welcome");
  say(d, "{\"type\":\"subscribe\",\"channel\":\"market:c\",\"since\":11}");
  json_t *x = expect(d, "subscribed");
  assert_false(jbool(x, "recovered"));   /* 13 and 14 never arrived */
  json_decref(x);
  conn_free(d);
  conn_free(c);
}

/* After a bus outage the hub catches up: durable channels with subscribers
 * get what the store committed meanwhile, non-durable ones whose seq moved
 * on get a reset. */
static void test_bus_resync_catches_up(void **state) {
  hub(100);
  osb__rt->bus->cluster_seqs = true;
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:r\"}");
  expect_drop(c, "subscribed");
  /* committed elsewhere while the bus was down */
  for (int i = 1; i <= 3; i++) {
    char d[8];
    snprintf(d, sizeof(d), "%d", i);
    osb_rt_row_t row = {0, d, strlen(d), 1};
    dstore->mem->append(dstore->mem, "notify:u1", &row, NULL, NULL);
    dstore->mem->append(dstore->mem, "market:r", &row, NULL, NULL);
  }
  osb_rt_bus_resync();
  /* the channels are visited in hash order: collect, then check */
  uint64_t next_seq = 1;
  int resets = 0;
  for (int i = 0; i < 4; i++) {
    json_t *f = next(c);
    assert_non_null(f);
    if (strcmp(jstr(f, "type"), "reset") == 0) {
      assert_string_equal(jstr(f, "channel"), "market:r");
      assert_int_equal(jint(f, "seq"), 3);
      assert_int_equal(jint(f, "missed"), 3);
      resets++;
    } else {
      assert_string_equal(jstr(f, "type"), "message");
      assert_string_equal(jstr(f, "channel"), "notify:u1");
      assert_int_equal(jint(f, "seq"), next_seq++);
    }
    json_decref(f);
  }
  assert_int_equal(resets, 1);
  assert_int_equal(next_seq, 4);
  osb_rt_bus_resync();   /* nothing new: nothing sent */
  assert_int_equal(pending(c), 0);
  conn_free(c);
}

/* Delivery waits for the commit; a failed commit delivers nothing. The old
 * hub delivered live first and stored afterwards. */
static void test_durable_publish_is_delivered_only_after_commit(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\"}");
  expect_drop(c, "subscribed");
  dstore->hold_append = true;
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "1", 1, pub_cb, NULL);
  assert_int_equal(pending(c), 0);   /* not committed: nothing live */
  assert_int_equal(pub_err, 1);
  d_commit_append(0);
  assert_int_equal(pub_err, 0);
  assert_int_equal(pub_seq, 1);
  expect_seqs(c, 1, 1);
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "2", 1, pub_cb, NULL);
  d_commit_append(OSB_EDB);           /* rolled back */
  assert_int_equal(pub_err, OSB_EDB);
  assert_int_equal(pending(c), 0);
  dstore->hold_append = false;
  assert_int_equal(publish("notify:u1", "2"), 2);   /* the failed one took no seq */
  expect_seqs(c, 2, 2);
  conn_free(c);
}

/* Known limit 2 of the old hub: a message committed while the channel
 * loads its seq and a client publish in the same window competed for one
 * seq. Both now carry the database's seq and wait for the load. */
static void test_publishes_during_a_load_keep_their_seqs(void **state) {
  hub(100);
  dstore->hold_last = true;
  fconn_t *c = conn_open("tok-user-u1"), *svc = conn_open("tok-service-svc");
  expect_drop(c, "welcome");
  expect_drop(svc, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"since\":0}");   /* loading */
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "\"server\"", 8, pub_cb, NULL);   /* committed as 1, waits */
  say(svc, "{\"type\":\"publish\",\"channel\":\"notify:u1\",\"data\":\"client\",\"id\":1}");
  assert_int_equal(pending(c), 0);
  dstore->hold_last = false;
  osb_rt_seq_cb cb = dstore->lcb;
  cb(dstore->lud, 0, 2);   /* the load reads the counter: both are counted */
  assert_int_equal(pub_err, 0);
  assert_int_equal(pub_seq, 1);
  json_t *a = expect(svc, "ack");
  assert_int_equal(jint(a, "seq"), 2);
  json_decref(a);
  json_t *r = expect(c, "subscribed");
  assert_true(jbool(r, "recovered"));
  json_decref(r);
  json_t *m1 = expect(c, "message"), *m2 = expect(c, "message");
  assert_int_equal(jint(m1, "seq"), 1);
  assert_string_equal(json_string_value(json_object_get(m1, "data")), "server");
  assert_int_equal(jint(m2, "seq"), 2);
  assert_string_equal(json_string_value(json_object_get(m2, "data")), "client");
  json_decref(m1);
  json_decref(m2);
  assert_int_equal(pending(c), 0);
  conn_free(c);
  conn_free(svc);
}

/* SPEC §5: a transient message has no seq, reaches only live subscribers,
 * is not kept in history or the store and does not move the channel seq. */
static void test_transient_messages_have_no_seq_and_are_not_kept(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  json_t *d = json_pack("{s:s, s:f}", "type", "agent.delta", "x", 0.1);
  assert_int_equal(osb_rt_publish_transient("market:all", d), 0);
  assert_int_equal(osb_rt_publish_transient("notify:u1", d), 0);
  assert_int_equal(osb_rt_publish_transient("nope:x", d), OSB_EINVAL);
  assert_int_equal(osb_rt_publish_transient("market:nobody-listens", d), 0);
  assert_null(osb__rt_channel_find("market:nobody-listens", 21));
  json_decref(d);
  for (int i = 0; i < 2; i++) {
    osb_msg_t *f = c->f[c->next];
    json_t *m = expect(c, "message");
    assert_null(json_object_get(m, "seq"));
    assert_true(jint(m, "ts") > 1600000000000LL);
    assert_string_equal(jstr(json_object_get(m, "data"), "type"), "agent.delta");
    assert_non_null(memmem(f->data, f->len, "\"x\":0.1}", 8));   /* the REST number format */
    json_decref(m);
  }
  assert_int_equal(dstore->appends, 0);
  assert_int_equal(publish("market:all", "1"), 1);   /* the seq did not move */
  assert_int_equal(publish("notify:u1", "1"), 1);
  expect_seqs(c, 1, 1);
  expect_seqs(c, 1, 1);
  json_t *r;
  fconn_t *e = subscribed_since(NULL, "market:all", 0, &r);
  json_decref(r);
  expect_seqs(e, 1, 1);   /* replay: the seq'd message only */
  assert_int_equal(pending(e), 0);
  conn_free(e);
  conn_free(c);
}

/* Published data is serialized with the REST number format. */
static void test_published_numbers_use_the_rest_format(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  json_t *d = json_pack("{s:f}", "v", 0.1);
  pub_err = 1;
  osb_rt_publish("market:all", d, pub_cb, NULL);
  json_decref(d);
  assert_int_equal(pub_err, 0);
  osb_msg_t *f = c->f[c->next];
  assert_non_null(memmem(f->data, f->len, "\"data\":{\"v\":0.1}", 16));
  expect_drop(c, "message");
  conn_free(c);
}

static void test_store_failure_answers_unavailable(void **state) {
  hub(100);
  dstore->fail_last = OSB_EUNAVAIL;
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":3}");
  expect_error(c, "unavailable");
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "1", 1, pub_cb, NULL);
  assert_int_equal(pub_err, 0);   /* committed (stored): it is replayable, only not live here */
  assert_int_equal(pub_seq, 1);
  say(c, "{\"type\":\"ping\"}");
  expect_drop(c, "pong");
  conn_free(c);
}

static void test_async_load_failure_answers_the_waiting_subscribers(void **state) {
  hub(100);
  dstore->hold_last = true;
  fconn_t *a = conn_open("tok-user-u1"), *b = conn_open("tok-service-svc");
  expect_drop(a, "welcome");
  expect_drop(b, "welcome");
  say(a, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":1}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":2}");
  say(a, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":3}");   /* waits behind 1 */
  pub_err = 1;
  osb_rt_publish_text("notify:u1", "1", 1, pub_cb, NULL);
  assert_int_equal(pub_err, 1);   /* waiting for the load too */
  assert_int_equal(pending(a) + pending(b), 0);
  dstore->hold_last = false;
  dstore->fail_last = OSB_EUNAVAIL;
  osb_rt_seq_cb cb = dstore->lcb;
  cb(dstore->lud, OSB_EUNAVAIL, 0);
  assert_int_equal(pub_err, 0);   /* committed before the load: stored, not delivered live */
  expect_error(a, "unavailable");
  expect_error(a, "unavailable");   /* id 3 ran after the answer to 1: the store still fails */
  expect_error(b, "unavailable");
  assert_null(osb__rt_channel_find("notify:u1", 9));
  dstore->fail_last = 0;
  say(b, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":4}");
  expect_drop(b, "subscribed");
  conn_free(a);
  conn_free(b);
}

/* ---- permissions on the wire ---- */

static void test_forbidden_channel_keeps_the_connection(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u2\",\"id\":5}");
  json_t *e = expect(c, "error");
  assert_string_equal(jstr(e, "code"), "forbidden");
  assert_int_equal(jint(e, "id"), 5);
  json_decref(e);
  assert_int_equal(c->closed, 0);
  say(c, "{\"type\":\"ping\"}");
  expect_drop(c, "pong");
  conn_free(c);
}

static void test_unknown_namespace_is_forbidden(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"secret:stuff\"}");
  expect_error(c, "forbidden");
  conn_free(c);
}

static void test_anonymous_cannot_publish_on_market(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"publish\",\"channel\":\"market:all\",\"data\":1}");
  expect_error(c, "forbidden");
  conn_free(c);
}

static void test_admin_publish_is_acked_with_seq(void **state) {
  hub(100);
  fconn_t *c = conn_open("tok-admin-a1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"publish\",\"channel\":\"market:all\",\"data\":{\"p\":1},\"id\":9}");
  json_t *m = expect(c, "message");   /* delivered before the ack: fan-out is synchronous */
  json_decref(m);
  json_t *a = expect(c, "ack");
  assert_int_equal(jint(a, "seq"), 1);
  assert_int_equal(jint(a, "id"), 9);
  json_decref(a);
  conn_free(c);
}

static void test_auth_message_signs_in(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"auth\",\"token\":\"tok-user-u1\",\"id\":1}");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"id\":2}");
  json_t *a = expect(c, "authenticated");
  assert_string_equal(jstr(json_object_get(a, "user"), "id"), "u1");
  json_decref(a);
  expect_drop(c, "subscribed");
  conn_free(c);
}

static void test_auth_with_a_bad_token_is_unauthorized(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"auth\",\"token\":\"nope\",\"id\":1}");
  expect_error(c, "unauthorized");
  assert_int_equal(c->closed, 0);
  conn_free(c);
}

/* chat ownership through a deferred check */
static osb_rt_check_cb held_cb;
static void *held_ctx;
static char held_user[32];
static void check_hold(void *ud, const char *ch, const char *sfx, const osb_rt_who_t *who,
                       osb_rt_check_cb cb, void *ctx) {
  held_cb = cb;
  held_ctx = ctx;
  snprintf(held_user, sizeof(held_user), "%s", who->user_id);
}
static void release_check(bool allowed) {
  osb_rt_check_cb cb = held_cb;
  held_cb = NULL;
  cb(held_ctx, 0, allowed);
}

static void test_chat_owner_check_allows_in_order(void **state) {
  osb_rt_set_access_check("chat", check_hold, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\",\"id\":1}");
  say(c, "{\"type\":\"ping\",\"id\":2}");
  assert_non_null(held_cb);
  assert_string_equal(held_user, "u1");
  assert_int_equal(pending(c), 0);
  release_check(true);
  json_t *s = expect(c, "subscribed");
  assert_int_equal(jint(s, "id"), 1);
  json_decref(s);
  json_t *p = expect(c, "pong");
  assert_int_equal(jint(p, "id"), 2);
  json_decref(p);
  conn_free(c);
}

static void test_chat_non_owner_is_forbidden(void **state) {
  osb_rt_set_access_check("chat", check_hold, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u2");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\",\"id\":1}");
  release_check(false);
  expect_error(c, "forbidden");
  assert_int_equal(c->cl->nsubs, 0);
  conn_free(c);
}

static void test_close_during_owner_check_is_safe(void **state) {
  osb_rt_set_access_check("chat", check_hold, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  osb__rt_client_closed(c->cl);
  c->cl = NULL;
  release_check(true);
  assert_null(osb__rt_channel_find("chat:c1", 7));
  conn_free(c);
}

static void check_yes(void *ud, const char *ch, const char *sfx, const osb_rt_who_t *who,
                      osb_rt_check_cb cb, void *ctx) {
  cb(ctx, 0, true);
}

static void test_chat_publish_without_hook_is_delivered(void **state) {
  osb_rt_set_access_check("chat", check_yes, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"publish\",\"channel\":\"chat:c1\",\"data\":{\"text\":\"hi\"},\"id\":4}");
  json_t *m = expect(c, "message");
  assert_string_equal(jstr(json_object_get(m, "data"), "text"), "hi");
  json_decref(m);
  expect_drop(c, "ack");
  assert_int_equal(dstore->appends, 1);   /* chat is durable */
  conn_free(c);
}

static const char *hook_channel;
static void hook(void *ud, const char *channel, const osb_rt_who_t *who, const json_t *data,
                 osb_rt_publish_cb cb, void *ctx) {
  hook_channel = channel;
  assert_string_equal(who->user_id, "u1");
  cb(ctx, json_object_get(data, "text") ? 0 : OSB_EINVAL, 42);
}

static void test_chat_publish_goes_to_the_hook(void **state) {
  osb_rt_set_access_check("chat", check_yes, NULL);
  osb_rt_set_publish_hook("chat", hook, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"publish\",\"channel\":\"chat:c9\",\"data\":{\"text\":\"hi\"},\"id\":4}");
  json_t *a = expect(c, "ack");
  assert_int_equal(jint(a, "seq"), 42);
  json_decref(a);
  say(c, "{\"type\":\"publish\",\"channel\":\"chat:c9\",\"data\":{},\"id\":5}");
  expect_error(c, "bad_request");
  conn_free(c);
}

/* ---- presence ---- */

static void test_presence_lists_signed_in_members(void **state) {
  osb_rt_set_access_check("chat", check_yes, NULL);
  hub(100);
  fconn_t *a = conn_open("tok-user-u1"), *b = conn_open("tok-user-u1");
  expect_drop(a, "welcome");
  expect_drop(b, "welcome");
  say(a, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  expect_drop(a, "subscribed");
  expect_drop(b, "subscribed");
  json_t *ev = expect(a, "presence");   /* a learns that b joined */
  assert_string_equal(jstr(ev, "event"), "join");
  assert_int_equal(jint(json_array_get(json_object_get(ev, "members"), 0), "conn_id"), (json_int_t)b->id);
  json_decref(ev);
  say(a, "{\"type\":\"presence\",\"channel\":\"chat:c1\",\"id\":3}");
  json_t *p = expect(a, "presence");
  assert_int_equal(jint(p, "id"), 3);
  assert_int_equal(json_array_size(json_object_get(p, "members")), 2);
  assert_int_equal(jint(p, "count"), 2);
  json_decref(p);
  say(b, "{\"type\":\"unsubscribe\",\"channel\":\"chat:c1\"}");
  ev = expect(a, "presence");
  assert_string_equal(jstr(ev, "event"), "leave");
  json_decref(ev);
  conn_free(a);
  conn_free(b);
}

static void test_presence_counts_anonymous_market_readers(void **state) {
  hub(100);
  fconn_t *a = conn_open(NULL), *b = conn_open("tok-user-u2");
  say(a, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  /* the service key and admins see who reads a public channel */
  osb_rt_who_t svc = {"service", NULL, OSB_ROLE_SERVICE};
  json_t *p = osb_rt_presence_json("market:all", &svc);
  assert_int_equal(jint(p, "count"), 1);
  assert_int_equal(jint(p, "anonymous"), 1);
  assert_string_equal(jstr(json_array_get(json_object_get(p, "members"), 0), "user_id"), "u2");
  json_decref(p);
  /* anonymous and ordinary readers get the counts only */
  osb_rt_who_t user = {"u9", NULL, OSB_ROLE_USER};
  const osb_rt_who_t *readers[] = {NULL, &user};
  for (size_t i = 0; i < 2; i++) {
    p = osb_rt_presence_json("market:all", readers[i]);
    assert_int_equal(jint(p, "count"), 1);
    assert_int_equal(jint(p, "anonymous"), 1);
    assert_int_equal(json_array_size(json_object_get(p, "members")), 0);
    json_decref(p);
  }
  assert_null(osb_rt_presence_json("nope:x", NULL));
  conn_free(a);
  conn_free(b);
}

/* ---- bad input and limits ---- */

static void test_bad_json_is_an_error_and_the_connection_stays(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{not json");
  expect_error(c, "bad_json");
  say(c, "[1,2]");
  expect_error(c, "bad_json");
  /* where and what, never the text: it may hold a token or a password */
  say(c, "{\"type\":\"auth\",\"token\":\"s3cret-t0ken");
  json_t *e = expect(c, "error");
  assert_string_equal(jstr(e, "code"), "bad_json");
  assert_null(strstr(jstr(e, "message"), "s3cret"));
  assert_non_null(strstr(jstr(e, "message"), "line 1, column"));
  json_decref(e);
  assert_int_equal(c->closed, 0);
  say(c, "{\"type\":\"ping\",\"id\":\"x\"}");
  json_t *p = expect(c, "pong");
  assert_string_equal(jstr(p, "id"), "x");
  json_decref(p);
  conn_free(c);
}

static void test_unknown_type_echoes_the_id(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"dance\",\"id\":11}");
  json_t *e = expect(c, "error");
  assert_string_equal(jstr(e, "code"), "unknown_type");
  assert_int_equal(jint(e, "id"), 11);
  json_decref(e);
  conn_free(c);
}

static void test_bad_since_is_a_bad_request(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\",\"since\":-1}");
  expect_error(c, "bad_request");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\",\"since\":\"3\"}");
  expect_error(c, "bad_request");
  conn_free(c);
}

static void test_binary_frames_are_refused(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  osb__rt_client_message(c->cl, true, "\x01\x02", 2);
  expect_error(c, "bad_request");
  conn_free(c);
}

static void test_double_subscribe_is_an_error(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_drop(c, "subscribed");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  expect_error(c, "already_subscribed");
  conn_free(c);
}

static void test_subscription_cap(void **state) {
  opts.max_subscriptions = 2;
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:a\"}");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:b\"}");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:c\"}");
  expect_drop(c, "subscribed");
  expect_drop(c, "subscribed");
  expect_error(c, "too_many_subscriptions");
  conn_free(c);
}

static void test_rate_limit_errors_then_closes_1008(void **state) {
  opts.msg_rate = 0.001;
  opts.msg_burst = 3;
  opts.abuse_limit = 5;
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  for (int i = 0; i < 3; i++) say(c, "{\"type\":\"ping\"}");
  for (int i = 0; i < 3; i++) expect_drop(c, "pong");
  say(c, "{\"type\":\"ping\"}");
  expect_error(c, "rate_limited");
  assert_int_equal(c->closed, 0);
  for (int i = 0; i < 10 && !c->closed; i++) say(c, "{\"type\":\"ping\"}");
  assert_int_equal(c->closed, 1008);
  conn_free(c);
}

/* SPEC §5: a reply to a message that carried `id` echoes it, errors included. */
static void test_rate_limited_error_echoes_the_id(void **state) {
  opts.msg_rate = 0.001;
  opts.msg_burst = 1;
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"ping\",\"id\":1}");
  expect_drop(c, "pong");
  say(c, "{\"type\":\"ping\",\"id\":\"over\"}");
  json_t *e = expect(c, "error");
  assert_string_equal(jstr(e, "code"), "rate_limited");
  assert_string_equal(jstr(e, "id"), "over");
  json_decref(e);
  conn_free(c);
}

static void test_backlog_overflow_error_echoes_the_id(void **state) {
  opts.backlog_max = 1;
  osb_rt_set_access_check("chat", check_hold, NULL);
  hub(100);
  fconn_t *c = conn_open("tok-user-u1");
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\",\"id\":1}");   /* waits */
  say(c, "{\"type\":\"ping\",\"id\":2}");                                    /* queued */
  say(c, "{\"type\":\"ping\",\"id\":3}");                                    /* too many */
  json_t *e = expect(c, "error");
  assert_string_equal(jstr(e, "code"), "rate_limited");
  assert_int_equal(jint(e, "id"), 3);
  json_decref(e);
  release_check(false);
  expect_error(c, "forbidden");
  expect_drop(c, "pong");
  conn_free(c);
}

static void test_slow_consumer_is_closed_and_others_get_everything(void **state) {
  hub(100);
  fconn_t *slow = conn_open(NULL), *ok = conn_open(NULL);
  say(slow, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  say(ok, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  slow->limit = slow->bytes + 400;   /* it stops reading: a few messages fit */
  expect_drop(ok, "welcome");
  expect_drop(ok, "subscribed");
  pub_seq = 0;
  publish_n("market:all", 50);
  assert_int_equal(slow->closed, 1013);
  expect_seqs(ok, 1, 50);
  assert_int_equal(pending(ok), 0);
  osb_series_t *s = osb_metric_series0(osb_metric_counter("osb_realtime_slow_consumer_closes_total", "", NULL));
  assert_true(osb_series_value(s) >= 1);
  conn_free(slow);
  conn_free(ok);
}

/* A send can close its connection at once (ws.c: a write error inside the
 * flush); that removes the client's subscriptions, and on chat the leave
 * event is sent to the others, which can close the next subscriber too. */
static void test_connections_closing_inside_fanout_are_safe(void **state) {
  osb_rt_set_access_check("chat", check_yes, NULL);
  hub(100);
  fconn_t *c[3];
  for (int i = 0; i < 3; i++) {
    c[i] = conn_open("tok-user-u1");
    say(c[i], "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  }
  for (int i = 0; i < 2; i++) {
    c[i]->sync_close = true;
    c[i]->limit = c[i]->bytes;   /* the next frame fails */
  }
  pub_seq = 0;
  publish_n("chat:c1", 2);
  assert_int_equal(c[0]->closed, 1006);
  assert_int_equal(c[1]->closed, 1006);
  assert_int_equal(c[2]->closed, 0);
  assert_int_equal(osb__rt->nsubs, 1);
  for (int i = 0; i < 3; i++) conn_free(c[i]);
}

/* The same while a durable channel's load answers its waiting subscribers:
 * an answer lets that client run its queued messages, whose sends can close
 * another waiting subscriber's connection. */
static void test_connection_closing_while_a_load_answers_is_safe(void **state) {
  osb_rt_set_access_check("chat", check_yes, NULL);
  hub(100);
  dstore->hold_last = true;
  fconn_t *a = conn_open("tok-admin-a1"), *b = conn_open("tok-user-u1");
  say(a, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\",\"id\":1}");   /* loading */
  say(a, "{\"type\":\"publish\",\"channel\":\"market:all\",\"data\":1,\"id\":2}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  say(b, "{\"type\":\"subscribe\",\"channel\":\"chat:c1\"}");
  b->sync_close = true;
  b->limit = b->bytes;
  dstore->hold_last = false;
  dstore->lcb(dstore->lud, 0, 0);
  assert_int_equal(b->closed, 1006);
  expect_drop(a, "welcome");
  expect_drop(a, "subscribed");
  expect_drop(a, "ack");
  assert_int_equal(osb__rt->nsubs, 1);
  conn_free(a);
  conn_free(b);
}

static void test_connection_limit_closes_1013(void **state) {
  opts.max_connections = 1;
  hub(100);
  fconn_t *a = conn_open(NULL), *b = conn_open(NULL);
  assert_int_equal(a->closed, 0);
  assert_int_equal(b->closed, 1013);
  conn_free(a);
  conn_free(b);
}

static void test_publish_rejects_invalid_input(void **state) {
  opts.max_data_bytes = 16;
  hub(100);
  pub_err = 0;
  osb_rt_publish_text("nope:x", "1", 1, pub_cb, NULL);
  assert_int_equal(pub_err, OSB_EINVAL);
  osb_rt_publish_text("market:all", "{bad", 4, pub_cb, NULL);
  assert_int_equal(pub_err, OSB_EINVAL);
  const char *big = "\"0123456789abcdefghij\"";
  osb_rt_publish_text("market:all", big, strlen(big), pub_cb, NULL);
  assert_int_equal(pub_err, OSB_ETOOBIG);
}

static void test_channels_json_reports_the_table(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  pub_seq = 0;
  publish_n("market:all", 3);
  json_t *j = osb_rt_channels_json();
  json_t *arr = json_object_get(j, "channels");
  assert_int_equal(json_array_size(arr), 1);
  json_t *ch = json_array_get(arr, 0);
  assert_string_equal(jstr(ch, "channel"), "market:all");
  assert_int_equal(jint(ch, "subscribers"), 1);
  assert_int_equal(jint(ch, "seq"), 3);
  assert_int_equal(jint(ch, "history"), 3);
  assert_int_equal(jint(j, "connections"), 1);
  json_decref(j);
  conn_free(c);
}

static void test_closing_removes_subscriptions(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:x\"}");
  assert_non_null(osb__rt_channel_find("market:x", 8));
  conn_free(c);
  assert_null(osb__rt_channel_find("market:x", 8));   /* no subscribers, no history */
  assert_int_equal(osb__rt->nsubs, 0);
  assert_int_equal(osb__rt->nclients, 0);
}

/* ---- memory layout (docs/benchmarks.md, RSS per idle WebSocket) ---- */

/* The client and its first subscription live in the connection's user
 * area, and a connection that sends a replay to the store keeps that
 * memory until the store answers, after the socket closed. */
static void test_client_in_connection_memory_outlives_a_pending_replay(void **state) {
  osb__rt_ns_by_name("notify")->history_max = 2;
  hub_tr = &mtr;
  hub(100);
  pub_seq = 0;
  publish_n("notify:u1", 6);
  mconn_t *m = calloc(1, sizeof(*m));
  m->f.id = 77;
  osb__rt_client_t *cl = osb__rt_client_open(m);
  assert_ptr_equal(osb__rt_client_conn(cl), m);
  assert_ptr_equal(cl, (void *)m->mem);   /* no allocation of its own */
  assert_int_equal(m->holds, 1);
  m->f.cl = cl;
  osb__rt_client_start(cl, "tok-user-u1");
  json_t *w = expect(&m->f, "welcome");
  assert_int_equal(jint(w, "conn_id"), 77);   /* the connection's id, through the transport */
  json_decref(w);
  dstore->hold = true;
  say(&m->f, "{\"type\":\"subscribe\",\"channel\":\"notify:u1\",\"since\":1}");
  assert_ptr_equal(osb__rt_client_sub(cl, "notify:u1", 9), &cl->sub0);   /* the first one is inline */
  osb__rt_client_closed(cl);
  m->f.cl = NULL;
  assert_int_equal(m->releases, 0);   /* the replay in flight still refers to sub0 */
  d_release();                        /* finds it dead, frees it, drops the last reference */
  assert_int_equal(m->releases, 1);
  assert_int_equal(m->holds, 0);
  assert_int_equal(osb__rt->nsubs, 0);
  for (size_t i = 0; i < m->f.n; i++) osb_msg_unref(m->f.f[i]);
  free(m);
}

/* Without a pending operation the memory goes back as the socket closes. */
static void test_client_in_connection_memory_is_released_on_close(void **state) {
  hub_tr = &mtr;
  hub(100);
  mconn_t *m = calloc(1, sizeof(*m));
  m->f.id = 78;
  m->f.cl = osb__rt_client_open(m);
  osb__rt_client_start(m->f.cl, NULL);
  say(&m->f, "{\"type\":\"subscribe\",\"channel\":\"market:all\"}");
  assert_int_equal(osb_rt_subscribers("market:all"), 1);
  osb__rt_client_closed(m->f.cl);
  m->f.cl = NULL;
  assert_int_equal(m->releases, 1);
  assert_int_equal(m->holds, 0);
  assert_int_equal(osb_rt_subscribers("market:all"), 0);
  for (size_t i = 0; i < m->f.n; i++) osb_msg_unref(m->f.f[i]);
  free(m);
}

/* sub0 serves the first subscription, later ones are allocated, and an
 * unsubscribe gives sub0 back for the next one; delivery is the same. */
static void test_first_subscription_is_inline_and_reused(void **state) {
  hub(100);
  fconn_t *c = conn_open(NULL);
  expect_drop(c, "welcome");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:a\"}");
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:b\"}");
  expect_drop(c, "subscribed");
  expect_drop(c, "subscribed");
  osb__rt_client_t *cl = c->cl;
  assert_ptr_equal(osb__rt_client_sub(cl, "market:a", 8), &cl->sub0);
  assert_ptr_not_equal(osb__rt_client_sub(cl, "market:b", 8), &cl->sub0);
  say(c, "{\"type\":\"unsubscribe\",\"channel\":\"market:a\"}");
  expect_drop(c, "unsubscribed");
  assert_false(cl->sub0_used);
  say(c, "{\"type\":\"subscribe\",\"channel\":\"market:c\"}");
  expect_drop(c, "subscribed");
  assert_ptr_equal(osb__rt_client_sub(cl, "market:c", 8), &cl->sub0);
  publish("market:b", "1");
  publish("market:c", "2");
  expect_drop(c, "message");
  expect_drop(c, "message");
  assert_int_equal(pending(c), 0);
  conn_free(c);
  assert_int_equal(osb__rt->nsubs, 0);
}

/* A guard on the per-socket budget: the client and its first subscription
 * are in every WebSocket's memory (ws_glue.c's user_size). */
static void test_client_size_budget(void **state) {
  printf("osb__rt_client_t %zu bytes (sub0 %zu)\n", sizeof(osb__rt_client_t), sizeof(osb__rt_sub_t));
  assert_true(sizeof(osb__rt_client_t) <= 88);
  assert_true(sizeof(osb__rt_sub_t) <= 40);
  /* a later subscription: one 64-byte chunk (glibc: usable = chunk - 8) */
  void *x = calloc(1, sizeof(osb__rt_subx_t));
  printf("later subscription %zu bytes, usable %zu\n", sizeof(osb__rt_subx_t), malloc_usable_size(x));
  assert_true(malloc_usable_size(x) <= 56);
  free(x);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_ns_market_read_by_anyone, setup),
    cmocka_unit_test_setup(test_ns_market_written_by_server_only, setup),
    cmocka_unit_test_setup(test_ns_notify_read_by_that_user_only, setup),
    cmocka_unit_test_setup(test_ns_chat_asks_the_owner_check, setup),
    cmocka_unit_test_setup(test_ns_agents_and_dashboard, setup),
    cmocka_unit_test_setup(test_ns_rejects_unknown_names, setup),
    cmocka_unit_test(test_ring_keeps_the_newest_max_entries),
    cmocka_unit_test(test_ring_expires_by_age),
    T(test_welcome_on_connect),
    T(test_welcome_carries_the_handshake_user),
    T(test_bad_handshake_token_connects_anonymously),
    T(test_subscribe_replies_with_id_and_seq),
    T(test_publish_delivers_with_increasing_seq),
    T(test_fanout_shares_one_frame),
    T(test_other_channels_do_not_receive),
    T(test_unsubscribe_stops_delivery),
    T(test_resume_from_memory_replays_exactly_the_missed),
    T(test_resume_beyond_history_is_not_recovered),
    T(test_resume_at_current_seq_is_recovered_with_nothing),
    T(test_resume_from_the_future_is_not_recovered),
    T(test_resume_after_age_expiry_is_not_recovered),
    T(test_idle_channel_is_dropped_after_its_history),
    T(test_durable_resume_from_store),
    T(test_durable_resume_with_a_gap_is_not_recovered),
    T(test_durable_seq_continues_from_the_store),
    T(test_replay_includes_messages_published_while_the_store_answers),
    T(test_close_during_replay_is_safe),
    T(test_durable_seq_comes_from_the_store),
    T(test_durable_publish_is_delivered_only_after_commit),
    T(test_durable_messages_arriving_out_of_order_are_delivered_in_order),
    T(test_cluster_seqs_for_non_durable_channels),
    T(test_bus_resync_catches_up),
    T(test_publishes_during_a_load_keep_their_seqs),
    T(test_transient_messages_have_no_seq_and_are_not_kept),
    T(test_published_numbers_use_the_rest_format),
    T(test_store_failure_answers_unavailable),
    T(test_async_load_failure_answers_the_waiting_subscribers),
    T(test_forbidden_channel_keeps_the_connection),
    T(test_unknown_namespace_is_forbidden),
    T(test_anonymous_cannot_publish_on_market),
    T(test_admin_publish_is_acked_with_seq),
    T(test_auth_message_signs_in),
    T(test_auth_with_a_bad_token_is_unauthorized),
    T(test_chat_owner_check_allows_in_order),
    T(test_chat_non_owner_is_forbidden),
    T(test_close_during_owner_check_is_safe),
    T(test_chat_publish_without_hook_is_delivered),
    T(test_chat_publish_goes_to_the_hook),
    T(test_presence_lists_signed_in_members),
    T(test_presence_counts_anonymous_market_readers),
    T(test_bad_json_is_an_error_and_the_connection_stays),
    T(test_unknown_type_echoes_the_id),
    T(test_bad_since_is_a_bad_request),
    T(test_binary_frames_are_refused),
    T(test_double_subscribe_is_an_error),
    T(test_subscription_cap),
    T(test_rate_limit_errors_then_closes_1008),
    T(test_rate_limited_error_echoes_the_id),
    T(test_backlog_overflow_error_echoes_the_id),
    T(test_slow_consumer_is_closed_and_others_get_everything),
    T(test_connections_closing_inside_fanout_are_safe),
    T(test_connection_closing_while_a_load_answers_is_safe),
    T(test_connection_limit_closes_1013),
    T(test_publish_rejects_invalid_input),
    T(test_channels_json_reports_the_table),
    T(test_closing_removes_subscriptions),
    T(test_client_in_connection_memory_outlives_a_pending_replay),
    T(test_client_in_connection_memory_is_released_on_close),
    T(test_first_subscription_is_inline_and_reused),
    cmocka_unit_test(test_client_size_budget),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
