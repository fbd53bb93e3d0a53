/* protocol_fuzz.c: libFuzzer driver for client JSON messages through the
 * realtime protocol dispatcher (protocol.c, channel.c, hub.c, presence.c,
 * the memory store and the local bus), with a fake transport as in
 * tests/unit/realtime/test_hub.c. One input = one connection's messages,
 * separated by newlines; the first line picks the handshake token
 * ("tok-<role>-<user>" maps to that principal, anything else is anonymous).
 * A second, subscribed connection receives whatever the first publishes, so
 * fan-out and replay run too. Every frame the hub queues must be a JSON
 * object with a string "type". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"
#include "realtime/internal.h"

typedef struct fconn {
  osb__rt_client_t *cl;
  uint16_t closed;
  size_t frames;
  uint64_t id;
} fconn_t;

static void check_frame(const osb_msg_t *m) {
  json_t *j = json_loadb(m->data, m->len, 0, NULL);
  if (!j || !json_is_object(j) || !json_is_string(json_object_get(j, "type"))) {
    fprintf(stderr, "hub queued a frame that is not a typed JSON object: %.*s\n", (int)m->len, m->data);
    abort();
  }
  json_decref(j);
}

static int f_send(void *conn, osb_msg_t *m) {
  fconn_t *c = conn;
  if (c->closed) return OSB_ECLOSED;
  check_frame(m);
  c->frames++;
  return 0;
}
static void f_close(void *conn, uint16_t code, const char *reason) {
  fconn_t *c = conn;
  if (!c->closed) c->closed = code;
}
static void f_finish(osb_msg_t *m) {}
static uint64_t f_conn_id(void *conn) { return ((fconn_t *)conn)->id; }
static const osb__rt_transport_t ftr = {.send = f_send, .close = f_close, .finish = f_finish, .conn_id = f_conn_id};

static void f_verify(const char *token, osb__rt_verified_cb cb, void *ud) {
  char role[16], user[64];
  /* Real user ids come from verified JWT claims: valid UTF-8, so keep
   * them plain here (an invalid one would be the fake's fault). */
  if (!token || sscanf(token, "tok-%15[a-z]-%63[a-z0-9]", role, user) != 2) {
    cb(ud, token ? OSB_EDENIED : 0, NULL);
    return;
  }
  osb_role_t r = strcmp(role, "admin") == 0 ? OSB_ROLE_ADMIN : strcmp(role, "service") == 0 ? OSB_ROLE_SERVICE
                                                                                           : OSB_ROLE_USER;
  osb_rt_who_t who = {user, NULL, r};
  cb(ud, 0, &who);
}

/* chat:* ownership: the owner is the part before '-' in the suffix */
static void f_check(void *ud, const char *channel, const char *suffix, const osb_rt_who_t *who,
                    osb_rt_check_cb cb, void *cbud) {
  size_t n = strcspn(suffix, "-");
  cb(cbud, 0, who->user_id && strlen(who->user_id) == n && strncmp(who->user_id, suffix, n) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  osb__rt_ns_reset();
  osb__rt_options_t opts;
  osb__rt_default_options(&opts);
  opts.max_connections = 0;
  opts.msg_rate = 1e9;    /* the token bucket is not what is being fuzzed */
  opts.msg_burst = 1e9;
  osb__rt_hub_init(&opts, &ftr, f_verify, osb_rt_store_memory_new(16), osb_rt_bus_local_new(), NULL);
  osb_rt_set_access_check("chat", f_check, NULL);
  return 0;
}

static fconn_t *open_conn(const char *token) {
  static uint64_t next_id = 1;
  fconn_t *c = calloc(1, sizeof(*c));
  c->id = next_id++;
  c->cl = osb__rt_client_open(c);
  osb__rt_client_start(c->cl, token);
  return c;
}

static void close_conn(fconn_t *c) {
  if (c->cl) osb__rt_client_closed(c->cl);
  free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  const char *nl = memchr(p, '\n', size);
  size_t tl = nl ? (size_t)(nl - p) : size;
  char *token = tl ? strndup(p, tl < 128 ? tl : 128) : NULL;
  fconn_t *watcher = open_conn("tok-user-w");
  osb__rt_client_message(watcher->cl, false, "{\"type\":\"subscribe\",\"channel\":\"room:fz\"}", 39);
  fconn_t *c = open_conn(token);
  free(token);
  p = nl ? nl + 1 : end;
  for (int i = 0; p < end && i < 64 && !c->closed; i++) {
    nl = memchr(p, '\n', (size_t)(end - p));
    const char *e = nl ? nl : end;
    bool binary = e > p && *p == '\x01';
    osb__rt_client_message(c->cl, binary, p, (size_t)(e - p));
    p = nl ? nl + 1 : end;
  }
  close_conn(c);
  close_conn(watcher);
  osb__rt_sweep(UINT64_MAX / 2);  /* drop channels and history between inputs */
  osb_assert(osb__rt->nclients == 0 && osb__rt->nsubs == 0);
  return 0;
}
