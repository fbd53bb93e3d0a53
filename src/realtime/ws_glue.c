/* ws_glue.c: binds the hub to the real WebSocket layer (ws.h), the auth
 * module's verification hook and the configuration. Everything the hub
 * needs from outside comes through here, so the rest of src/realtime runs
 * in unit tests with fake connections. */
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <uv.h>

#include "auth/auth.h"
#include "core/config.h"
#include "http/ws.h"
#include "obs/health.h"
#include "obs/log.h"
#include "realtime/internal.h"

/* ---- transport ---- */

static int tr_send(void *conn, osb_msg_t *frame) { return osb_ws_send(conn, frame); }
static void tr_close(void *conn, uint16_t code, const char *reason) { osb_ws_close(conn, code, reason); }
static void tr_finish(osb_msg_t *m) { osb_ws_frame_finish(m, OSB_WS_TEXT); }
/* The client lives in the WebSocket's user area (rt_handler.user_size),
 * held past the socket's close while references to it remain. */
static void *tr_client_mem(void *conn) {
  osb_ws_hold(conn);
  return osb_ws_user(conn);
}
static void tr_client_release(void *mem) { osb_ws_unhold(osb_ws_of_user(mem)); }
static void *tr_conn_of(void *mem) { return osb_ws_of_user(mem); }
static uint64_t tr_conn_id(void *conn) { return osb_ws_id(conn); }
static const osb__rt_transport_t ws_transport = {
    .send = tr_send,
    .close = tr_close,
    .finish = tr_finish,
    .headroom = OSB_WS_HEADROOM,
    .client_mem = tr_client_mem,
    .client_release = tr_client_release,
    .conn_of = tr_conn_of,
    .conn_id = tr_conn_id,
};

/* ---- token verification: the hub never owns an osb_principal_t ---- */

typedef struct verify_ctx {
  osb__rt_verified_cb cb;
  void *ud;
  char token[];   /* osb_auth_verify_token may finish later; keep the token alive */
} verify_ctx_t;

static void verified(void *ud, int err, osb_principal_t *p) {
  verify_ctx_t *v = ud;
  if (err == 0 && p) {
    osb_rt_who_t who = {p->user_id, p->email, p->role};
    v->cb(v->ud, 0, &who);
  } else {
    v->cb(v->ud, err ? err : OSB_EDENIED, NULL);
  }
  if (p) osb_principal_free(p);
  free(v);
}

static void verify(const char *token, osb__rt_verified_cb cb, void *ud) {
  size_t n = strlen(token);
  verify_ctx_t *v = osb_malloc(sizeof(*v) + n + 1);
  v->cb = cb;
  v->ud = ud;
  memcpy(v->token, token, n + 1);
  osb_auth_verify_token(v->token, verified, v);
}

/* Authorization: Bearer, then the SSO cookie, then ?token= (SPEC §4), as
 * the auth module reads them. A cookie is only taken from a page of an
 * allowed origin: browsers attach cookies to a cross-origin WebSocket
 * handshake without any preflight (cross-site WebSocket hijacking), and
 * with SSO_COOKIE_DOMAIN even a sibling subdomain counts as same-site. The
 * connection then simply starts signed out. */
static const char *handshake_token(osb_req_t *req) {
  bool via_cookie = false;
  const char *t = osb_auth_request_token(req, true, &via_cookie);
  if (t && via_cookie && !osb_http_origin_allowed(req)) return NULL;
  return t;
}

/* ---- the /ws handler ---- */

/* The client is the user area itself; `attached` is set while the socket
 * is open (zeroed at the upgrade, cleared by osb__rt_client_closed). */
static void on_open(osb_ws_t *ws, osb_req_t *req) {
  osb__rt_client_t *cl = osb__rt_client_open(ws);
  osb_assert(cl == osb_ws_user(ws));
  osb__rt_client_start(cl, handshake_token(req));
}

static void on_message(osb_ws_t *ws, bool binary, const char *data, size_t len) {
  osb__rt_client_t *cl = osb_ws_user(ws);
  if (cl->attached) osb__rt_client_message(cl, binary, data, len);
}

static void on_close(osb_ws_t *ws, uint16_t code) {
  osb__rt_client_t *cl = osb_ws_user(ws);
  if (cl->attached) osb__rt_client_closed(cl);   /* may release the memory: last use of cl */
}

static const osb_ws_handler_t rt_handler = {on_open, on_message, on_close, sizeof(osb__rt_client_t)};

/* ---- health ---- */

static osb_health_status_t health(void *ud, char *reason, size_t len) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub) {
    snprintf(reason, len, "stopped");
    return OSB_HEALTH_FAIL;
  }
  snprintf(reason, len, "%llu connections, %u channels, store %s, bus %s",
           (unsigned long long)hub->nclients, hub->nchannels, hub->store ? hub->store->name : "none",
           hub->bus ? hub->bus->name : "none");
  return OSB_HEALTH_PASS;
}

/* ---- start / stop ---- */

int osb_rt_start(uv_loop_t *loop) {
  osb__rt_options_t opt;
  osb__rt_default_options(&opt);
  const osb_config_t *cfg = osb_cfg;
  if (cfg->rate_limit_rps > 0) opt.msg_rate = cfg->rate_limit_rps;
  if (cfg->rate_limit_burst > 0) opt.msg_burst = opt.abuse_limit = (uint32_t)cfg->rate_limit_burst;
  if (cfg->ws_max_message_bytes > 0) opt.max_data_bytes = (size_t)cfg->ws_max_message_bytes;
  if (cfg->ws_ping_interval_ms > 0) opt.heartbeat_s = (uint32_t)((cfg->ws_ping_interval_ms + 999) / 1000);
  if (cfg->ws_max_connections > 0) opt.max_connections = (uint32_t)cfg->ws_max_connections;
  osb__rt_hub_init(&opt, &ws_transport, verify, osb_rt_store_memory_new(1000), osb_rt_bus_local_new(), loop);
  osb_ws_set_handler(&rt_handler);
  osb_health_register("realtime", health, NULL, false);
  return 0;
}

void osb_rt_stop(void) {
  osb_ws_set_handler(NULL);
  osb__rt_hub_free();
}
