/* voice_routes.c: thin handlers over voice/ and upstream/ (see voice_routes.h). */
#include "apps/voice_routes.h"

#include <jansson.h>
#include <stdio.h>

#include "auth/auth.h"
#include "db/db.h"
#include "http/http.h"
#include "realtime/realtime.h"
#include "upstream/upstream.h"
#include "voice/voice.h"

static const osb_db_stmt_t Q_AUDIO = {
  .name = "voice_routes_audio",
  .pg = "SELECT audio, content_type FROM tts_cache WHERE hash = $1",
  .nparams = 1,
  .reads = "tts_cache",
};

static void validation_failed(osb_req_t *req, const char *field, const char *why) {
  osb_res_json(req, 400, json_pack("{s:{s:s, s:s, s:s, s:{s:s}}}", "error", "code", "validation_failed",
                                   "message", "the request has invalid fields", "request_id", osb_req_id(req),
                                   "fields", field, why));
}

static void send_voice_error(osb_req_t *req, const osb_voice_result_t *r) {
  if (r->retry_after_s) {
    char ra[16];
    snprintf(ra, sizeof(ra), "%u", r->retry_after_s);
    osb_res_header(req, "Retry-After", ra);
  }
  osb_res_error(req, r->http_status, r->code, "%s", r->message ? r->message : r->code);
}

/* ---- POST /api/voice/tts ---- */

static void on_tts(void *ud, const osb_voice_result_t *r) {
  osb_req_t *req = ud;
  if (r->err) {
    send_voice_error(req, r);
    return;
  }
  osb_res_header(req, "X-Audio-Hash", r->hash);
  osb_res_header(req, "X-Audio-URL", r->audio_url);
  osb_res_header(req, "X-Cache", r->cached ? "hit" : "miss");
  osb_res_header(req, "Cache-Control", "private, max-age=86400");
  osb_res_msg(req, 200, r->content_type, r->audio);
}

static void post_tts(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, post_tts)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  if (!json_is_object(body)) {
    validation_failed(req, "text", "the body must be a JSON object with text");
    return;
  }
  json_t *jt = json_object_get(body, "text"), *jv = json_object_get(body, "voice_id");
  if (!json_is_string(jt)) {
    validation_failed(req, "text", "must be a string of 1 to 5000 characters");
    return;
  }
  if (jv && !json_is_null(jv) && !json_is_string(jv)) {
    validation_failed(req, "voice_id", "must be a string");
    return;
  }
  const char *text = json_string_value(jt), *voice = jv ? json_string_value(jv) : NULL;
  if (voice && !*voice) voice = NULL;
  const char *why, *field = osb_voice_validate(text, voice, &why);
  if (field) {
    validation_failed(req, field, why);
    return;
  }
  if (!osb_voice_enabled()) {
    osb_res_error(req, 503, "voice_disabled", "voice is %s", osb_voice_disabled_reason());
    return;
  }
  osb_principal_t *p = osb_req_principal(req);
  /* The request lives until it is answered (a client that left detaches
   * it), so the job needs no cancellation here. */
  osb_voice_synthesize(p ? p->user_id : NULL, text, voice, on_tts, req);
}

/* ---- GET /api/voice/audio/:hash ---- */

static void on_audio(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err == OSB_EUNAVAIL) {
    osb_res_header(req, "Retry-After", "1");
    osb_res_error(req, 503, "db_unavailable", "the database is unavailable");
    return;
  }
  if (err) {
    osb_res_error(req, 500, "db_error", "database error");
    return;
  }
  if (osb_db_nrows(res) == 0) {
    osb_res_error(req, 404, "not_found", "no such audio");
    return;
  }
  const char *ct = osb_db_text(res, 0, 1);
  osb_res_header(req, "Cache-Control", "private, max-age=86400");
  osb_res_send(req, 200, ct ? ct : "audio/mpeg", osb_db_text(res, 0, 0), osb_db_len(res, 0, 0));
}

static void get_audio(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, get_audio)) return;
  const char *h = osb_req_param(req, "hash");
  size_t n = h ? strlen(h) : 0;
  bool ok = n == 64;
  for (size_t i = 0; ok && i < n; i++) ok = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f');
  if (!ok) {
    osb_res_error(req, 404, "not_found", "no such audio");
    return;
  }
  const char *params[] = {h};
  osb_db_query(&Q_AUDIO, params, 1, on_audio, req);
}

/* ---- GET /api/voice/status ---- */

static void get_status(osb_req_t *req) {
  osb_upstream_t *u = osb_upstream_get("tts");
  json_t *j = json_pack("{s:b, s:s, s:s}", "enabled", osb_voice_enabled(), "voice_id", osb_voice_default_voice(),
                        "breaker", u ? osb_breaker_state_name(osb_upstream_state(u)) : "disabled");
  const char *reason = osb_voice_disabled_reason();
  if (reason) json_object_set_new(j, "reason", json_string(reason));
  osb_res_header(req, "Cache-Control", "no-store");
  osb_res_json(req, 200, j);
}

void osb_voice_routes(void) {
  static const osb_db_stmt_t *const stmts[] = {&Q_AUDIO};
  osb_db_register(stmts, 1);
  osb_route(OSB_POST, "/api/voice/tts", post_tts);
  osb_route(OSB_GET, "/api/voice/audio/:hash", get_audio);
  osb_route(OSB_GET, "/api/voice/status", get_status);
}

/* ---- GET /api/upstreams, agents:status ---- */

static void get_upstreams(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, get_upstreams)) return;
  osb_res_header(req, "Cache-Control", "no-store");
  osb_res_json(req, 200, osb_upstreams_json());
}

/* PATCH /api/upstreams/:name {"breaker":"forced_open"|"auto"}: the operator switch. */
static void patch_upstream(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, patch_upstream)) return;
  osb_upstream_t *u = osb_upstream_get(osb_req_param(req, "name"));
  if (!u) {
    osb_res_error(req, 404, "not_found", "no such upstream");
    return;
  }
  json_t *body = osb_req_json(req);
  if (!body) return;
  const char *b = json_string_value(json_object_get(body, "breaker"));
  if (!b || (strcmp(b, "forced_open") != 0 && strcmp(b, "auto") != 0)) {
    validation_failed(req, "breaker", "must be \"forced_open\" or \"auto\"");
    return;
  }
  if (!osb_upstream_enabled(u)) {
    osb_res_error(req, 409, "upstream_disabled", "%s", osb_upstream_disabled_reason(u));
    return;
  }
  osb_upstream_force_open(u, strcmp(b, "forced_open") == 0, NULL);
  osb_res_json(req, 200, osb_upstream_json(u));
}

static void publish_state(void *ud, osb_upstream_t *u, osb_breaker_state_t from, osb_breaker_state_t to,
                          const char *reason) {
  json_t *ev = json_pack("{s:s, s:s, s:s, s:s}", "type", "upstream.state", "upstream", osb_upstream_name(u),
                         "state", osb_breaker_state_name(to), "reason", reason);
  osb_rt_publish("agents:status", ev, NULL, NULL);
  json_decref(ev);
}

void osb_upstream_routes(void) {
  osb_route(OSB_GET, "/api/upstreams", get_upstreams);
  osb_route(OSB_PATCH, "/api/upstreams/:name", patch_upstream);
  osb_upstream_on_state(publish_state, NULL);
}
