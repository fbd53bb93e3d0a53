/* auth_routes.c: the /api/auth routes and /api/usage.
 *
 * Sign-in answers carry the tokens both ways: in the JSON body (for apps
 * that keep a bearer token) and as the SSO cookies (for apps on the shared
 * cookie domain). Refresh and logout take the refresh token from the body
 * or, failing that, from the osb_refresh cookie; in the cookie case they
 * need X-CSRF-Token equal to the osb_csrf cookie and bound to the token's
 * user, like any other cookie-authenticated unsafe request (checked by the
 * auth module, osb_auth_refresh/osb_auth_logout). */
#include "apps/auth_routes.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "core/core.h"
#include "db/db.h"
#include "http/http.h"

#define DISPLAY_NAME_MAX 100
#define USAGE_DAYS_DEFAULT 30
#define USAGE_DAYS_MAX 366

/* ---- helpers ---- */

/* The body's string field, or NULL. A non-string value is a 400 (*bad). */
static const char *body_str(json_t *body, const char *key, bool *bad) {
  json_t *v = json_object_get(body, key);
  if (!v || json_is_null(v)) return NULL;
  if (!json_is_string(v)) {
    *bad = true;
    return NULL;
  }
  return json_string_value(v);
}

/* The body as a JSON object, only when sent as application/json. Sign-in,
 * refresh and logout answer with Set-Cookie, and a cross-site page can POST
 * text/plain or a form without a CORS preflight (login CSRF: the victim
 * signed in to the attacker's account on every app); application/json
 * needs the preflight, which only CORS_ORIGINS pass. NULL: answered 400. */
static json_t *json_body(osb_req_t *req) {
  const char *ct = osb_req_header(req, "content-type");
  size_t n = 0;
  while (ct && (ct[n] == ' ' || ct[n] == '\t')) n++;
  if (!ct || strncasecmp(ct + n, "application/json", 16) != 0 ||
      (ct[n + 16] && ct[n + 16] != ';' && ct[n + 16] != ' ' && ct[n + 16] != '\t')) {
    osb_res_error_code(req, OSB_EINVAL, "the body must be sent as Content-Type: application/json");
    return NULL;
  }
  return osb_req_json(req);
}

static bool has_body(osb_req_t *req) {
  size_t n = 0;
  osb_req_body(req, &n);
  return n > 0;
}

static void answer_failure(osb_req_t *req, const osb_auth_result_t *r) {
  if (r->retry_after_s) {
    char v[16];
    snprintf(v, sizeof(v), "%u", r->retry_after_s);
    osb_res_header(req, "Retry-After", v);
  }
  if (r->status == 401) osb_res_header(req, "WWW-Authenticate", "Bearer realm=\"osbackend\"");
  osb_res_error(req, r->status, r->code ? r->code : "error", "%s", r->message ? r->message : "failed");
}

static void answer_session(void *ud, osb_auth_result_t *r) {
  osb_req_t *req = ud;
  if (r->status >= 400 || !r->session) {
    /* A refused refresh leaves the browser nothing worth keeping. */
    if (r->status == 401 && strstr(osb_req_path(req), "/refresh")) osb_auth_clear_cookies(req);
    answer_failure(req, r);
    return;
  }
  const osb_session_t *s = r->session;
  osb_auth_set_cookies(req, s);
  long long now = (long long)(osb_wallclock_ms() / 1000);
  json_t *body = json_pack("{s:O,s:s,s:s,s:s,s:I,s:I,s:s}", "user", s->user, "access_token",
                           s->access_token, "refresh_token", s->refresh_token, "token_type", "Bearer",
                           "expires_in", (json_int_t)(s->expires_at - now), "expires_at",
                           (json_int_t)s->expires_at, "csrf_token", s->csrf_token);
  osb_res_json(req, r->status, body);
}

/* ---- POST /api/auth/register {email, password, display_name?} ---- */

static void post_register(osb_req_t *req) {
  json_t *body = json_body(req);
  if (!body) return;
  bool bad = false;
  const char *email = body_str(body, "email", &bad);
  const char *password = body_str(body, "password", &bad);
  const char *name = body_str(body, "display_name", &bad);
  if (!name) name = body_str(body, "name", &bad);
  if (bad) {
    osb_res_error_code(req, OSB_EINVAL, "email, password and display_name must be strings");
    return;
  }
  const char *why = osb_auth_check_credentials(email, password);
  if (why) {
    osb_res_error_code(req, OSB_EINVAL, "%s", why);
    return;
  }
  if (name && strlen(name) > DISPLAY_NAME_MAX) {
    osb_res_error_code(req, OSB_EINVAL, "display_name is longer than %d bytes", DISPLAY_NAME_MAX);
    return;
  }
  osb_auth_register(osb_req_ip(req), email, password, name, answer_session, req);
}

/* ---- POST /api/auth/login {email, password} ---- */

static void post_login(osb_req_t *req) {
  json_t *body = json_body(req);
  if (!body) return;
  bool bad = false;
  const char *email = body_str(body, "email", &bad);
  const char *password = body_str(body, "password", &bad);
  if (bad || !email || !password) {
    osb_res_error_code(req, OSB_EINVAL, "email and password are required strings");
    return;
  }
  osb_auth_login(osb_req_ip(req), email, password, answer_session, req);
}

/* The refresh token of a refresh/logout request: the body's refresh_token,
 * else the cookie, and then the CSRF pair the auth module must check
 * (*csrf set). Returns false when the request has been answered (400).
 * *token may be NULL (none given). */
static bool refresh_token_of(osb_req_t *req, const char **token, osb_auth_csrf_t *csrf, bool *via_cookie) {
  *token = NULL;
  *via_cookie = false;
  if (has_body(req)) {
    json_t *body = json_body(req);
    if (!body) return false;
    bool bad = false;
    *token = body_str(body, "refresh_token", &bad);
    if (bad) {
      osb_res_error_code(req, OSB_EINVAL, "refresh_token must be a string");
      return false;
    }
    if (*token) return true;
  }
  const char *c = osb_req_cookie(req, "osb_refresh");
  if (!c || !c[0]) return true;
  csrf->cookie = osb_req_cookie(req, "osb_csrf");
  csrf->header = osb_req_header(req, "x-csrf-token");
  *via_cookie = true;
  *token = c;
  return true;
}

/* ---- POST /api/auth/refresh ---- */

static void post_refresh(osb_req_t *req) {
  const char *token;
  osb_auth_csrf_t csrf;
  bool via_cookie;
  if (!refresh_token_of(req, &token, &csrf, &via_cookie)) return;
  if (!token) {
    osb_res_header(req, "WWW-Authenticate", "Bearer realm=\"osbackend\"");
    osb_res_error(req, 401, "invalid_refresh_token", "no refresh token (body refresh_token or the osb_refresh cookie)");
    return;
  }
  osb_auth_refresh(token, via_cookie ? &csrf : NULL, answer_session, req);
}

/* ---- POST /api/auth/logout ---- */

static void answer_logout(void *ud, osb_auth_result_t *r) {
  osb_req_t *req = ud;
  if (r->status >= 400) {
    answer_failure(req, r);
    return;
  }
  osb_auth_clear_cookies(req);
  osb_res_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static void post_logout(osb_req_t *req) {
  const char *token;
  osb_auth_csrf_t csrf;
  bool via_cookie;
  if (!refresh_token_of(req, &token, &csrf, &via_cookie)) return;
  osb_auth_logout(token, via_cookie ? &csrf : NULL, answer_logout, req);
}

/* ---- GET /api/auth/me ---- */

static const osb_db_stmt_t Q_ME = {
  .name = "auth_routes_me",
  .pg = "SELECT id, email, display_name, role, created_at, "
        "CASE WHEN external_sub IS NULL THEN 0 ELSE 1 END AS external "
        "FROM users WHERE id = $1",
  .nparams = 1,
  .reads = "users",
};

static void on_me(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err < 0) {
    osb_res_error_code(req, err, "%s", err == OSB_EUNAVAIL ? "the database is unavailable" : "database error");
    return;
  }
  if (osb_db_nrows(res) == 0) {
    osb_res_header(req, "WWW-Authenticate", "Bearer realm=\"osbackend\", error=\"invalid_token\"");
    osb_res_error(req, 401, "unknown_user", "this account no longer exists");
    return;
  }
  json_t *u = json_pack("{s:s,s:s,s:s,s:s,s:I,s:b}", "id", osb_db_get(res, 0, "id"), "email",
                        osb_db_get(res, 0, "email"), "display_name", osb_db_get(res, 0, "display_name"),
                        "role", osb_db_get(res, 0, "role"), "created_at",
                        (json_int_t)osb_db_get_int(res, 0, "created_at"), "external",
                        osb_db_get_int(res, 0, "external") != 0);
  osb_res_json(req, 200, json_pack("{s:o}", "user", u));
}

static void get_me(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_NONE, get_me)) return;
  osb_principal_t *p = osb_req_principal(req);
  if (p->role == OSB_ROLE_SERVICE && strcmp(p->user_id, "service") == 0) {
    osb_res_json(req, 200, json_pack("{s:{s:s,s:s}}", "user", "id", "service", "role", "service"));
    return;
  }
  const char *params[] = {p->user_id};
  osb_db_query(&Q_ME, params, 1, on_me, req);
}

/* ---- PATCH /api/auth/me {display_name} ---- */

static const osb_db_stmt_t Q_ME_UPDATE = {
  .name = "auth_routes_me_update",
  .pg = "UPDATE users SET display_name = $2, updated_at = $3 WHERE id = $1",
  .nparams = 3,
  .writes = "users",
};

static void on_me_updated(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err < 0) {
    on_me(ud, err, res);
    return;
  }
  const char *params[] = {osb_req_principal(req)->user_id};
  osb_db_query(&Q_ME, params, 1, on_me, req);
}

static void patch_me(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, patch_me)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  bool bad = false;
  const char *name = body_str(body, "display_name", &bad);
  if (bad || !name || strlen(name) > DISPLAY_NAME_MAX) {
    osb_res_error_code(req, OSB_EINVAL, "display_name must be a string of at most %d bytes",
                  DISPLAY_NAME_MAX);
    return;
  }
  char now[24];
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  const char *params[] = {osb_req_principal(req)->user_id, name, now};
  osb_db_query(&Q_ME_UPDATE, params, 3, on_me_updated, req);
}

/* ---- GET /api/auth/session ---- */

typedef struct session_ctx {
  osb_req_t *req;
  bool via_cookie;
} session_ctx_t;

static void answer_signed_in(osb_req_t *req, const osb_principal_t *p, bool via_cookie) {
  long long now = (long long)(osb_wallclock_ms() / 1000);
  json_t *user = json_pack("{s:s,s:s}", "id", p->user_id, "role", osb_role_name(p->role));
  if (p->email) json_object_set_new(user, "email", json_string(p->email));
  json_t *body = json_pack("{s:b,s:o,s:s,s:s}", "authenticated", 1, "user", user, "via",
                           via_cookie ? "cookie" : "bearer", "issuer", p->external ? "external" : "local");
  if (p->expires_at) {
    json_object_set_new(body, "expires_at", json_integer(p->expires_at));
    json_object_set_new(body, "expires_in", json_integer(p->expires_at > now ? p->expires_at - now : 0));
  }
  osb_res_header(req, "Cache-Control", "no-store");
  osb_res_json(req, 200, body);
}

static void on_session(void *ud, int err, osb_principal_t *p) {
  session_ctx_t *c = ud;
  osb_req_t *req = c->req;
  if (err == OSB_EUNAVAIL || err == OSB_EDB) {
    osb_res_error_code(req, OSB_EUNAVAIL, "cannot check the session right now");
    return;
  }
  if (err < 0) {
    osb_res_header(req, "Cache-Control", "no-store");
    osb_res_json(req, 200, json_pack("{s:b,s:s}", "authenticated", 0, "reason",
                                     err == OSB_ETIMEOUT ? "expired" : "invalid"));
    return;
  }
  answer_signed_in(req, p, c->via_cookie);
  osb_principal_free(p);
}

static void get_session(osb_req_t *req) {
  /* The rate-limit hook has usually resolved the principal already. */
  osb_principal_t *pre = osb_req_principal(req);
  if (pre) {
    answer_signed_in(req, pre, pre->via_cookie);
    return;
  }
  session_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  c->req = req;
  const char *tok = osb_auth_request_token(req, false, &c->via_cookie);
  if (!tok) {
    osb_res_header(req, "Cache-Control", "no-store");
    osb_res_json(req, 200, json_pack("{s:b}", "authenticated", 0));
    return;
  }
  osb_auth_verify_token(tok, on_session, c);
}

/* ---- GET /api/usage?days=&user_id= ---- */

static const osb_db_stmt_t Q_USAGE = {
  .name = "auth_routes_usage",
  .pg = "SELECT day, llm_tokens, tts_chars FROM usage_daily "
        "WHERE user_id = $1 AND day >= $2 ORDER BY day",
  .nparams = 2,
  .reads = "usage_daily",
};

typedef struct usage_ctx {
  osb_req_t *req;
  const char *user_id;
  const char *from;
} usage_ctx_t;

static void on_usage(void *ud, int err, const osb_db_result_t *res) {
  usage_ctx_t *c = ud;
  if (err < 0) {
    osb_res_error_code(c->req, err, "%s", err == OSB_EUNAVAIL ? "the database is unavailable" : "database error");
    return;
  }
  json_t *days = json_array();
  json_int_t llm = 0, tts = 0;
  for (size_t i = 0; i < osb_db_nrows(res); i++) {
    json_int_t l = osb_db_get_int(res, i, "llm_tokens"), t = osb_db_get_int(res, i, "tts_chars");
    llm += l;
    tts += t;
    json_array_append_new(days, json_pack("{s:s,s:I,s:I}", "day", osb_db_get(res, i, "day"),
                                          "llm_tokens", l, "tts_chars", t));
  }
  osb_res_json(c->req, 200, json_pack("{s:s,s:s,s:o,s:{s:I,s:I}}", "user_id", c->user_id, "from", c->from,
                                      "days", days, "totals", "llm_tokens", llm, "tts_chars", tts));
}

static void get_usage(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, get_usage)) return;
  osb_principal_t *p = osb_req_principal(req);
  const char *uid = p->user_id;
  const char *want = osb_req_query(req, "user_id");
  if (want && want[0] && strcmp(want, uid) != 0) {
    if (p->role != OSB_ROLE_ADMIN) {
      osb_res_error_code(req, OSB_EDENIED, "only admins may read another user's usage");
      return;
    }
    uid = want;
  }
  long days = USAGE_DAYS_DEFAULT;
  const char *d = osb_req_query(req, "days");
  if (d) {
    char *end;
    days = strtol(d, &end, 10);
    if (*d == 0 || *end || days < 1 || days > USAGE_DAYS_MAX) {
      osb_res_error_code(req, OSB_EINVAL, "days must be an integer from 1 to %d", USAGE_DAYS_MAX);
      return;
    }
  }
  time_t from = (time_t)(osb_wallclock_ms() / 1000) - (time_t)(days - 1) * 86400;
  struct tm tm;
  gmtime_r(&from, &tm);
  usage_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  char *fromday = osb_req_alloc(req, 16);
  strftime(fromday, 16, "%Y-%m-%d", &tm);
  c->req = req;
  c->user_id = osb_req_strdup(req, uid);
  c->from = fromday;
  const char *params[] = {c->user_id, fromday};
  osb_db_query(&Q_USAGE, params, 2, on_usage, c);
}

void osb_auth_routes(void) {
  osb_route(OSB_POST, "/api/auth/register", post_register);
  osb_route(OSB_POST, "/api/auth/login", post_login);
  osb_route(OSB_POST, "/api/auth/refresh", post_refresh);
  osb_route(OSB_POST, "/api/auth/logout", post_logout);
  osb_route(OSB_GET, "/api/auth/me", get_me);
  osb_route(OSB_PATCH, "/api/auth/me", patch_me);
  osb_route(OSB_GET, "/api/auth/session", get_session);
  osb_route(OSB_GET, "/api/usage", get_usage);
}
