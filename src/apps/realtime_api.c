/* realtime_api.c: REST endpoints over the realtime hub. Thin: parse,
 * check the role, call realtime.h, answer. */
#include <jansson.h>

#include "apps/realtime_api.h"
#include "auth/auth.h"
#include "http/http.h"
#include "realtime/realtime.h"

/* ---- POST /api/realtime/publish ---- */

static void published(void *ud, int err, uint64_t seq) {
  osb_req_t *req = ud;
  switch (err) {
    case 0:
      osb_res_json(req, 200, json_pack("{s:I}", "seq", (json_int_t)seq));
      return;
    case OSB_EINVAL:
      osb_res_error_code(req, err, "channel is not in the namespace table");
      return;
    case OSB_ETOOBIG:
      osb_res_error_code(req, err, "data is larger than WS_MAX_MESSAGE_BYTES");
      return;
    case OSB_ENOTFOUND:
      osb_res_error_code(req, err, "the channel's owner (user or conversation) does not exist");
      return;
    case OSB_ECONFLICT:
      osb_res_error_code(req, err, "sequence conflict");
      return;
    default:
      osb_res_error_code(req, err, "the channel's history is unavailable: %s", osb_strerror(err));
      return;
  }
}

static void h_publish(osb_req_t *req) {
  /* OSB_ROLE_SERVICE admits the service key and admins (auth.h). */
  if (!osb_auth_require(req, OSB_ROLE_SERVICE, h_publish)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;   /* answered 400 already */
  const char *channel = json_string_value(json_object_get(body, "channel"));
  json_t *data = json_object_get(body, "data");
  if (!json_is_object(body) || !channel || !*channel) {
    osb_res_error_code(req, OSB_EINVAL, "channel (a string) is required");
    return;
  }
  if (!data) {
    osb_res_error_code(req, OSB_EINVAL, "data is required");
    return;
  }
  json_t *transient = json_object_get(body, "transient");
  if (transient && !json_is_boolean(transient)) {
    osb_res_error(req, 400, "bad_request", "transient must be a boolean");
    return;
  }
  if (json_is_true(transient)) {
    /* SPEC §5: live subscribers only, no seq, never stored. */
    int err = osb_rt_publish_transient(channel, data);
    if (err) published(req, err, 0);
    else osb_res_json(req, 200, json_pack("{s:n, s:b}", "seq", "transient", 1));
    return;
  }
  osb_rt_publish(channel, data, published, req);
}

/* ---- GET /api/realtime/channels ---- */

static void h_channels(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_SERVICE, h_channels)) return;
  osb_res_json(req, 200, osb_rt_channels_json());
}

/* ---- GET /api/realtime/presence/:channel ---- */

static void presence_checked(void *ctx, int err, bool allowed) {
  osb_req_t *req = ctx;
  const char *channel = osb_req_param(req, "channel");
  if (err == OSB_EINVAL) {
    osb_res_error_code(req, OSB_ENOTFOUND, "no such channel");
  } else if (err) {
    osb_res_error_code(req, OSB_EUNAVAIL, "cannot check access now");
  } else if (!allowed) {
    osb_res_error_code(req, OSB_EDENIED, "access to this channel denied");
  } else {
    osb_principal_t *p = osb_req_principal(req);
    osb_rt_who_t who = {p->user_id, p->email, p->role};
    json_t *j = osb_rt_presence_json(channel, &who);
    if (j) osb_res_json(req, 200, j);
    else osb_res_error_code(req, OSB_ENOTFOUND, "no such channel");
  }
}

static void h_presence(osb_req_t *req) {
  /* Any signed-in principal; the channel's read policy decides. */
  if (!osb_auth_require(req, OSB_ROLE_NONE, h_presence)) return;
  osb_principal_t *p = osb_req_principal(req);
  const char *channel = osb_req_param(req, "channel");
  if (!channel || !*channel) {
    osb_res_error_code(req, OSB_EINVAL, "channel is required");
    return;
  }
  osb_rt_who_t who = {p->user_id, p->email, p->role};
  osb_rt_check_read(channel, &who, presence_checked, req);
}

void osb_realtime_api_routes(void) {
  osb_route(OSB_POST, "/api/realtime/publish", h_publish);
  osb_route(OSB_GET, "/api/realtime/channels", h_channels);
  osb_route(OSB_GET, "/api/realtime/presence/:channel", h_presence);
}
