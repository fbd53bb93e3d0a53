/* ops.c: the operations routes (/health, /ready, /health/details,
 * /metrics). They live in apps, not obs, because they are HTTP handlers:
 * obs sits below http and cannot answer a request; it only provides the
 * figures (obs/health.h, obs/metrics.h). */
#include "apps/ops.h"

#include <jansson.h>
#include <stdlib.h>
#include <strings.h>

#include "core/config.h"
#include "core/json.h"

#include "http/http.h"
#include "obs/health.h"
#include "obs/metrics.h"

/* /health is hit by load balancers many times a second: one prebuilt body,
 * shared by reference (redis's shared.ok). */
static osb_msg_t *health_body;

static void get_health(osb_req_t *req) {
  osb_res_msg(req, 200, "application/json", health_body);
}

static void get_ready(osb_req_t *req) {
  char reason[256] = "";
  if (osb_health_ready(reason, sizeof(reason))) {
    osb_res_json(req, 200, json_pack("{s:s}", "status", "pass"));
  } else {
    osb_res_header(req, "Retry-After", "1");
    osb_res_error(req, 503, "not_ready", "%s", reason[0] ? reason : "not ready");
  }
}

/* /metrics and /health/details describe the deployment (versions, pool
 * sizes, upstream state, traffic): with METRICS_TOKEN set they need
 * "Authorization: Bearer <METRICS_TOKEN>", compared in constant time.
 * /health and /ready stay open for load balancers. Returns false after
 * answering 401. */
static bool metrics_authorized(osb_req_t *req) {
  const char *want = osb_cfg->metrics_token;
  if (!want || !*want) return true;
  const char *h = osb_req_header(req, "authorization");
  if (h && strncasecmp(h, "Bearer ", 7) == 0) {
    const char *tok = h + 7;
    while (*tok == ' ') tok++;
    if (osb_consttime_eq(tok, strlen(tok), want, strlen(want))) return true;
  }
  osb_res_error(req, 401, "unauthorized", "this endpoint needs Authorization: Bearer <METRICS_TOKEN>");
  return false;
}

static void get_details(osb_req_t *req) {
  if (!metrics_authorized(req)) return;
  json_t *doc = osb_health_details();
  const char *st = json_string_value(json_object_get(doc, "status"));
  int status = st && strcmp(st, "fail") == 0 ? 503 : 200;
  size_t len = 0;
  char *s = osb_json_dumps(doc, &len);   /* the one serializer (core/json.h) */
  json_decref(doc);
  osb_res_header(req, "Cache-Control", "no-store");
  osb_res_send(req, status, "application/health+json", s ? s : "{}", s ? len : 2);
  free(s);
}

static void get_metrics(osb_req_t *req) {
  if (!metrics_authorized(req)) return;
  osb_buf_t b = OSB_BUF_INIT;
  osb_metrics_render(&b);
  osb_res_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.base ? b.base : "", b.len);
  osb_buf_free(&b);
}

static void health_shutdown_hook(void *ud) {
  OSB_UNUSED(ud);
  osb_health_set_shutting_down();
}

void osb_ops_routes(void) {
  osb_core_on_shutdown("health", OSB_SHUTDOWN_HEALTH, health_shutdown_hook, NULL);
  static const char ok[] = "{\"status\":\"pass\"}";
  if (!health_body) health_body = osb_msg_from(ok, sizeof(ok) - 1);
  osb_route(OSB_GET, "/health", get_health);
  osb_route(OSB_GET, "/ready", get_ready);
  osb_route(OSB_GET, "/health/details", get_details);
  osb_route(OSB_GET, "/metrics", get_metrics);
}

void osb_ops_dispose(void) {
  osb_msg_unref(health_body);
  health_body = NULL;
}
