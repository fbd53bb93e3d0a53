/* auth.c: principals, the one verification hook, the REST guard and the
 * per-client rate-limit hook.
 *
 * Verification order for a token string:
 *   1. SERVICE_API_KEY (constant-time)            → role service
 *   2. HS256 under JWT_SECRET, iss "osbackend"     → the claims' user and role
 *   3. HS256 under SUPABASE_JWT_SECRET, aud "authenticated"
 *                                                 → the mapped local user:
 *      from a short-lived cache, else looked up / created in the database.
 * Local tokens are trusted for their 15 minutes without I/O; that is what
 * lets every route family and /ws share one cheap check. */
#include "auth/auth.h"
#include "auth/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <uv.h>

#include "core/config.h"
#include "http/http.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"

#define RL_MAX_CLIENTS 65536
#define THROTTLE_MAX_KEYS 65536
#define EXT_CACHE_MAX 16384
#define EXT_CACHE_TTL_MS 60000
#define ID_MAX 64
#define PURGE_FIRST_MS 60000
#define PURGE_EVERY_MS 3600000
#define PURGE_GRACE_MS (24 * 3600 * 1000LL)   /* keep spent tokens a day: reuse stays detectable */

typedef struct ext_entry {
  char user_id[ID_MAX];
  char email[OSB__EMAIL_MAX + 1];
  uint8_t role;
  uint64_t until_ms;
} ext_entry_t;

static struct {
  bool ready;
  char *key;              /* JWT signing key */
  size_t keylen;
  unsigned char csrf_key[32];   /* derived from key: HMAC(key, "osb csrf key") */
  char *ext_key;          /* SUPABASE_JWT_SECRET or NULL */
  size_t ext_keylen;
  char *service_key;      /* SERVICE_API_KEY or NULL */
  size_t service_keylen;
  osb__rl_t *rl;          /* NULL: rate limiting off */
  osb__throttle_t *fail_ip, *fail_email;
  osb__rl_t *reg_ip, *reg_all;  /* registration buckets; NULL = that limit off */
  osb_series_t *s_reg_ip, *s_reg_all;
  osb__kt_t *ext_cache;   /* external sub → local user */
  uv_timer_t purge;       /* static storage: closed by main's uv_walk */
  bool purge_started;
} A;

/* ---- principals ---- */

osb_principal_t *osb_principal_new(const char *user_id, const char *email, osb_role_t role) {
  osb_principal_t *p = osb_calloc(1, sizeof(*p));
  p->user_id = osb_strdup(user_id ? user_id : "");
  p->email = email ? osb_strdup(email) : NULL;
  p->role = role;
  return p;
}

void osb_principal_free(osb_principal_t *p) {
  if (!p) return;
  free(p->user_id);
  free(p->email);
  free(p);
}

static bool role_satisfies(osb_role_t have, osb_role_t need) {
  switch (need) {
    case OSB_ROLE_NONE: return true;
    case OSB_ROLE_USER: return have == OSB_ROLE_USER || have == OSB_ROLE_ADMIN;
    case OSB_ROLE_ADMIN: return have == OSB_ROLE_ADMIN;
    case OSB_ROLE_SERVICE: return have == OSB_ROLE_SERVICE || have == OSB_ROLE_ADMIN;
  }
  return false;
}

/* ---- start-up ---- */

static osb_health_status_t sso_health(void *ud, char *reason, size_t len) {
  snprintf(reason, len, "%s%s%s", A.ext_key ? "local and external issuer" : "local issuer",
           osb_cfg->sso_cookie_domain ? ", cookie domain " : "",
           osb_cfg->sso_cookie_domain ? osb_cfg->sso_cookie_domain : "");
  return OSB_HEALTH_PASS;
}

static bool rate_limit_hook(osb_req_t *req);

static void on_purged(void *ud, int err) {
  if (err < 0) osb_log(OSB_LOG_WARN, "auth", "purging expired refresh tokens failed: %s", osb_strerror(err));
}

static void on_purge_timer(uv_timer_t *t) {
  osb__store_refresh_purge((int64_t)osb_wallclock_ms() - PURGE_GRACE_MS, on_purged, NULL);
}

static double hash_refused(void *ud) { return (double)(osb__pw_refused(true) + osb__pw_refused(false)); }

int osb_auth_init(void) {
  char err[512] = "";
  bool generated = false;
  if (A.ready) return 0;
  int rc = osb__secret_load(osb_cfg->jwt_secret, osb_cfg->sqlite_path, &A.key, &A.keylen, &generated,
                            err, sizeof(err));
  if (rc < 0) {
    osb_log(OSB_LOG_ERROR, "auth", "JWT secret unavailable: %s", err);
    osb_health_set("sso", OSB_HEALTH_FAIL, "JWT secret unavailable", false);
    return rc;
  }
  if (generated) osb_log(OSB_LOG_INFO, "auth", "generated a new JWT secret in the data directory (mode 0600)");
  if (A.keylen < 32) osb_log(OSB_LOG_WARN, "auth", "JWT_SECRET is shorter than 32 characters");
  osb__hmac_sha256(A.csrf_key, A.key, A.keylen, "osb csrf key", 12);
  if (osb_cfg->supabase_jwt_secret && osb_cfg->supabase_jwt_secret[0]) {
    A.ext_key = osb_strdup(osb_cfg->supabase_jwt_secret);
    A.ext_keylen = strlen(A.ext_key);
  }
  if (osb_cfg->service_api_key && osb_cfg->service_api_key[0]) {
    A.service_key = osb_strdup(osb_cfg->service_api_key);
    A.service_keylen = strlen(A.service_key);
  }
  if (osb_cfg->rate_limit_rps > 0)
    A.rl = osb__rl_new(osb_cfg->rate_limit_rps,
                       osb_cfg->rate_limit_burst > 0 ? osb_cfg->rate_limit_burst : osb_cfg->rate_limit_rps,
                       RL_MAX_CLIENTS);
  /* Registration: each costs an Argon2 hash and a row, so it is throttled
   * per address and globally before any of that work. */
  if (osb_cfg->register_ip_per_hour > 0)
    A.reg_ip = osb__rl_new(osb_cfg->register_ip_per_hour / 3600.0, osb_cfg->register_ip_burst, RL_MAX_CLIENTS);
  if (osb_cfg->register_global_per_min > 0) {
    double burst = osb_cfg->register_global_per_min / 6.0;   /* ten seconds' worth */
    A.reg_all = osb__rl_new(osb_cfg->register_global_per_min / 60.0, burst >= 1 ? burst : 1, 1);
  }
  osb_metric_t *m = osb_metric_counter("auth_registrations_refused_total",
                                       "Registrations refused by the registration throttle", "reason");
  const char *per_ip[] = {"per_ip"}, *global[] = {"global"};
  A.s_reg_ip = osb_metric_series(m, per_ip, 1);
  A.s_reg_all = osb_metric_series(m, global, 1);
  osb_metric_counter_fn("auth_password_hash_refused_total",
                        "Password hashes refused: the client's share (AUTH_HASH_MAX_PER_IP) or the queue was full",
                        hash_refused, NULL);
  osb__pw_set_per_key((unsigned)osb_cfg->auth_hash_max_per_ip);
  A.fail_ip = osb__throttle_new(OSB__LOGIN_FAIL_LIMIT, OSB__LOGIN_FAIL_WINDOW_MS, THROTTLE_MAX_KEYS);
  A.fail_email = osb__throttle_new(OSB__LOGIN_FAIL_LIMIT, OSB__LOGIN_FAIL_WINDOW_MS, THROTTLE_MAX_KEYS);
  A.ext_cache = osb__kt_new(EXT_CACHE_MAX, sizeof(ext_entry_t), EXT_CACHE_TTL_MS);
  osb_http_add_hook(rate_limit_hook);
  osb_health_register("sso", sso_health, NULL, false);
  if (osb_loop() && uv_timer_init(osb_loop(), &A.purge) == 0) {
    uv_timer_start(&A.purge, on_purge_timer, PURGE_FIRST_MS, PURGE_EVERY_MS);
    uv_unref((uv_handle_t *)&A.purge);   /* never keeps the loop alive */
    A.purge_started = true;
  }
  A.ready = true;
  return 0;
}

static void purge_closed(uv_handle_t *h) { OSB_UNUSED(h); }

void osb_auth_close(void) {
  if (!A.purge_started) return;
  A.purge_started = false;
  uv_close((uv_handle_t *)&A.purge, purge_closed);
}

void osb_auth_dispose(void) {
  /* The purge timer was closed by osb_auth_close (or its loop is gone). */
  if (A.key) sodium_memzero(A.key, A.keylen);
  free(A.key);
  if (A.ext_key) sodium_memzero(A.ext_key, A.ext_keylen);
  free(A.ext_key);
  if (A.service_key) sodium_memzero(A.service_key, A.service_keylen);
  free(A.service_key);
  osb__rl_free(A.rl);
  osb__rl_free(A.reg_ip);
  osb__rl_free(A.reg_all);
  osb__pw_set_per_key(0);
  osb__throttle_free(A.fail_ip);
  osb__throttle_free(A.fail_email);
  osb__kt_free(A.ext_cache);
  osb__hmac_cache_clear();
  sodium_memzero(&A, sizeof(A));
}

/* ---- internals shared with session.c ---- */

const void *osb__auth_csrf_key(size_t *len) {
  *len = sizeof(A.csrf_key);
  return A.csrf_key;
}

char *osb__auth_issue_access(const char *user_id, const char *email, int role, int64_t *exp) {
  int64_t now = (int64_t)(osb_wallclock_ms() / 1000);
  unsigned char jti[16];
  char jtis[32];
  osb_random_bytes(jti, sizeof(jti));
  osb__b64url_encode(jtis, jti, sizeof(jti));
  *exp = now + OSB__ACCESS_TTL_S;
  json_t *c = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s}", "sub", user_id, "email", email ? email : "",
                        "role", osb_role_name((osb_role_t)role), "iat", (json_int_t)now, "exp", (json_int_t)*exp,
                        "iss", OSB__ISSUER, "jti", jtis);
  osb_assert(c != NULL);
  char *t = osb__jwt_sign(A.key, A.keylen, c);
  json_decref(c);
  return t;
}

unsigned osb__auth_register_blocked(const char *ip) {
  uint64_t now = osb_now_ms();
  osb__rl_result_t r;
  if (A.reg_ip) {
    const char *k = ip ? ip : "?";
    osb__rl_take(A.reg_ip, k, strlen(k), now, &r);
    if (!r.allowed) {
      osb_series_inc(A.s_reg_ip, 1);
      return r.retry_after_s;
    }
  }
  if (A.reg_all) {
    osb__rl_take(A.reg_all, "*", 1, now, &r);
    if (!r.allowed) {
      osb_series_inc(A.s_reg_all, 1);
      return r.retry_after_s;
    }
  }
  return 0;
}

unsigned osb__auth_login_blocked(const char *ip, const char *email) {
  uint64_t now = osb_now_ms();
  unsigned a = ip ? osb__throttle_check(A.fail_ip, ip, strlen(ip), now) : 0;
  unsigned b = email ? osb__throttle_check(A.fail_email, email, strlen(email), now) : 0;
  return a > b ? a : b;
}

bool osb__auth_login_busy(const char *ip, const char *email) {
  uint64_t now = osb_now_ms();
  return (ip && osb__throttle_busy(A.fail_ip, ip, strlen(ip), now)) ||
         (email && osb__throttle_busy(A.fail_email, email, strlen(email), now));
}

void osb__auth_login_begin(const char *ip, const char *email) {
  uint64_t now = osb_now_ms();
  if (ip) osb__throttle_begin(A.fail_ip, ip, strlen(ip), now);
  if (email) osb__throttle_begin(A.fail_email, email, strlen(email), now);
}

void osb__auth_login_end(const char *ip, const char *email, bool failed) {
  uint64_t now = osb_now_ms();
  if (ip) osb__throttle_end(A.fail_ip, ip, strlen(ip), now, failed);
  if (email) osb__throttle_end(A.fail_email, email, strlen(email), now, failed);
}

void osb__auth_login_succeeded(const char *email) {
  /* The account's counter restarts; the IP's does not (one IP guessing
   * many accounts keeps its record). */
  if (email) osb__throttle_reset(A.fail_email, email, strlen(email), osb_now_ms());
}

void osb__auth_ext_forget(void) {
  osb__kt_free(A.ext_cache);
  A.ext_cache = osb__kt_new(EXT_CACHE_MAX, sizeof(ext_entry_t), EXT_CACHE_TTL_MS);
}

/* ---- token verification ---- */

static int jwt_err_to_osb(int e) { return e == OSB__JWT_EEXPIRED ? OSB_ETIMEOUT : OSB_EDENIED; }

/* Verify a token without I/O. Returns 0 with *out set, a negative error, or
 * 1 when the token is a valid external-issuer token whose user is not in
 * the cache (then *ext_claims holds the claims, owned by the caller). */
static int verify_local(const char *token, osb_principal_t **out, json_t **ext_claims) {
  *out = NULL;
  if (ext_claims) *ext_claims = NULL;
  if (!A.ready || !token) return OSB_EDENIED;
  size_t len = strlen(token);
  if (A.service_key && osb_consttime_eq(token, len, A.service_key, A.service_keylen)) {
    *out = osb_principal_new("service", NULL, OSB_ROLE_SERVICE);
    return 0;
  }
  int64_t now = (int64_t)(osb_wallclock_ms() / 1000);
  json_t *c = NULL;
  int rc = osb__jwt_verify(token, len, A.key, A.keylen, now, OSB__CLOCK_SKEW_S, &c);
  if (rc == 0) {
    const char *iss = json_string_value(json_object_get(c, "iss"));
    const char *sub = json_string_value(json_object_get(c, "sub"));
    const char *email = json_string_value(json_object_get(c, "email"));
    osb_role_t role = osb_role_parse(json_string_value(json_object_get(c, "role")));
    json_int_t exp = json_integer_value(json_object_get(c, "exp"));
    if (!iss || strcmp(iss, OSB__ISSUER) != 0 || !sub || !sub[0] || strlen(sub) >= ID_MAX ||
        role == OSB_ROLE_NONE) {
      json_decref(c);
      return OSB_EDENIED;
    }
    *out = osb_principal_new(sub, email && email[0] ? email : NULL, role);
    (*out)->expires_at = exp;
    json_decref(c);
    return 0;
  }
  if (rc != OSB__JWT_ESIG || !A.ext_key) return jwt_err_to_osb(rc);

  rc = osb__jwt_verify(token, len, A.ext_key, A.ext_keylen, now, OSB__CLOCK_SKEW_S, &c);
  if (rc != 0) return jwt_err_to_osb(rc);
  const json_t *aud = json_object_get(c, "aud");
  bool aud_ok = json_is_string(aud) && strcmp(json_string_value(aud), OSB__EXT_AUDIENCE) == 0;
  if (json_is_array(aud)) {
    size_t i;
    const json_t *v;
    json_array_foreach(aud, i, v) if (json_is_string(v) && strcmp(json_string_value(v), OSB__EXT_AUDIENCE) == 0) aud_ok = true;
  }
  const char *sub = json_string_value(json_object_get(c, "sub"));
  const char *email = json_string_value(json_object_get(c, "email"));
  char *norm = email ? osb__email_normalize(email) : NULL;
  if (!aud_ok || !sub || !sub[0] || strlen(sub) > 128 || !norm) {
    free(norm);
    json_decref(c);
    return OSB_EDENIED;
  }
  free(norm);
  ext_entry_t *e = osb__kt_get(A.ext_cache, sub, strlen(sub), osb_now_ms(), false, NULL);
  if (e && e->until_ms > osb_now_ms()) {
    *out = osb_principal_new(e->user_id, e->email, (osb_role_t)e->role);
    (*out)->external = true;
    (*out)->expires_at = json_integer_value(json_object_get(c, "exp"));
    json_decref(c);
    return 0;
  }
  if (ext_claims) {
    *ext_claims = c;
  } else {
    json_decref(c);
  }
  return 1;
}

typedef struct ext_ctx {
  osb_auth_cb cb;
  void *ud;
  char *sub;
  long long exp;
} ext_ctx_t;

static void on_ext_user(void *ud, int err, osb__user_t *u) {
  ext_ctx_t *x = ud;
  if (err < 0 || !u) {
    if (err != OSB_EUNAVAIL && err != OSB_EDB) err = err < 0 ? OSB_EDENIED : OSB_EDB;
    osb_log(OSB_LOG_WARN, "auth", "external user mapping failed: %s", osb_strerror(err));
    x->cb(x->ud, err, NULL);
  } else {
    if (strlen(u->id) < ID_MAX && strlen(u->email) <= OSB__EMAIL_MAX && A.ext_cache) {
      ext_entry_t *e = osb__kt_get(A.ext_cache, x->sub, strlen(x->sub), osb_now_ms(), true, NULL);
      snprintf(e->user_id, sizeof(e->user_id), "%s", u->id);
      snprintf(e->email, sizeof(e->email), "%s", u->email);
      e->role = (uint8_t)u->role;
      e->until_ms = osb_now_ms() + EXT_CACHE_TTL_MS;
    }
    osb_principal_t *p = osb_principal_new(u->id, u->email, u->role);
    p->external = true;
    p->expires_at = x->exp;
    x->cb(x->ud, 0, p);
  }
  osb__user_free(u);
  free(x->sub);
  free(x);
}

void osb_auth_verify_token(const char *token, osb_auth_cb cb, void *ud) {
  osb_principal_t *p = NULL;
  json_t *claims = NULL;
  int rc = verify_local(token, &p, &claims);
  if (rc <= 0) {
    cb(ud, rc, p);
    return;
  }
  ext_ctx_t *x = osb_calloc(1, sizeof(*x));
  x->cb = cb;
  x->ud = ud;
  x->sub = osb_strdup(json_string_value(json_object_get(claims, "sub")));
  x->exp = json_integer_value(json_object_get(claims, "exp"));
  char *email = osb__email_normalize(json_string_value(json_object_get(claims, "email")));
  json_decref(claims);
  osb__store_user_external(x->sub, email, on_ext_user, x);
  free(email);
}

/* ---- requests ---- */

static bool is_space(char c) { return c == ' ' || c == '\t'; }

const char *osb_auth_request_token(osb_req_t *req, bool allow_query, bool *via_cookie) {
  if (via_cookie) *via_cookie = false;
  const char *h = osb_req_header(req, "authorization");
  if (h) {
    while (is_space(*h)) h++;
    if (strncasecmp(h, "bearer", 6) == 0 && is_space(h[6])) {
      h += 7;
      while (is_space(*h)) h++;
      size_t n = strlen(h);
      while (n > 0 && is_space(h[n - 1])) n--;
      if (n == 0) return NULL;
      if (h[n] == 0) return h;
      char *t = osb_req_alloc(req, n + 1);
      memcpy(t, h, n);
      t[n] = 0;
      return t;
    }
    /* Some other scheme: not ours; fall through to the cookie. */
  }
  const char *c = osb_req_cookie(req, "osb_access");
  if (c && c[0]) {
    if (via_cookie) *via_cookie = true;
    return c;
  }
  if (allow_query) {
    const char *q = osb_req_query(req, "token");
    if (q && q[0]) return q;
  }
  return NULL;
}

static bool unsafe_method(const osb_req_t *req) {
  osb_method_t m = osb_req_method(req);
  return m == OSB_POST || m == OSB_PUT || m == OSB_PATCH || m == OSB_DELETE;
}

static void answer_401(osb_req_t *req, int err, bool had_token) {
  if (!had_token) {
    osb_res_header(req, "WWW-Authenticate", "Bearer realm=\"osbackend\"");
    osb_res_error(req, 401, "unauthorized", "sign in required");
  } else if (err == OSB_ETIMEOUT) {
    osb_res_header(req, "WWW-Authenticate",
                   "Bearer realm=\"osbackend\", error=\"invalid_token\", error_description=\"token expired\"");
    osb_res_error(req, 401, "token_expired", "access token expired; refresh it");
  } else {
    osb_res_header(req, "WWW-Authenticate", "Bearer realm=\"osbackend\", error=\"invalid_token\"");
    osb_res_error(req, 401, "invalid_token", "invalid access token");
  }
}

static void free_principal(struct osb_principal *p) { osb_principal_free(p); }

static void set_principal(osb_req_t *req, osb_principal_t *p) {
  osb_req_set_principal(req, p, free_principal);
}

/* The CSRF and role checks once a principal is known. */
static bool check_principal(osb_req_t *req, osb_principal_t *p, osb_role_t min_role) {
  if (p->via_cookie && unsafe_method(req)) {
    size_t kl;
    const void *k = osb__auth_csrf_key(&kl);
    if (!osb__csrf_check(k, kl, p->user_id, osb_req_cookie(req, "osb_csrf"),
                         osb_req_header(req, "x-csrf-token"))) {
      osb_res_error(req, 403, "csrf_failed", "missing or invalid X-CSRF-Token");
      return false;
    }
  }
  if (!role_satisfies(p->role, min_role)) {
    osb_res_error(req, 403, "forbidden", "this needs role %s", osb_role_name(min_role));
    return false;
  }
  return true;
}

typedef struct require_ctx {
  osb_req_t *req;
  osb_handler_fn again;
  bool via_cookie;
  bool sync;          /* still inside osb_auth_require */
  bool done;          /* callback already ran */
  int err;
  osb_principal_t *p;
} require_ctx_t;

static void on_require_verified(void *ud, int err, osb_principal_t *p) {
  require_ctx_t *c = ud;
  c->done = true;
  c->err = err;
  c->p = p;
  if (c->sync) return;
  /* Asynchronous completion: settle the request here. */
  if (err < 0) {
    if (err == OSB_EUNAVAIL || err == OSB_EDB) {
      /* a database error here is a 503 (retry), not a 500 */
      osb_res_error_code(c->req, OSB_EUNAVAIL, "cannot verify the token right now");
    } else {
      answer_401(c->req, err, true);
    }
    return;
  }
  p->via_cookie = c->via_cookie;
  set_principal(c->req, p);
  c->again(c->req);
}

bool osb_auth_require(osb_req_t *req, osb_role_t min_role, osb_handler_fn again) {
  osb_principal_t *p = osb_req_principal(req);
  if (p) return check_principal(req, p, min_role);
  bool via_cookie;
  const char *tok = osb_auth_request_token(req, false, &via_cookie);
  if (!tok) {
    answer_401(req, 0, false);
    return false;
  }
  require_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->again = again;
  c->via_cookie = via_cookie;
  c->sync = true;
  osb_auth_verify_token(tok, on_require_verified, c);
  c->sync = false;
  if (!c->done) return false;   /* again(req) follows */
  if (c->err < 0) {
    answer_401(req, c->err, true);
    return false;
  }
  c->p->via_cookie = via_cookie;
  set_principal(req, c->p);
  return check_principal(req, c->p, min_role);
}

osb_principal_t *osb_auth_peek(osb_req_t *req) {
  osb_principal_t *p = osb_req_principal(req);
  if (p) return p;
  bool via_cookie;
  const char *tok = osb_auth_request_token(req, false, &via_cookie);
  if (!tok) return NULL;
  if (verify_local(tok, &p, NULL) != 0) return NULL;
  p->via_cookie = via_cookie;
  set_principal(req, p);
  return p;
}

/* ---- the rate-limit hook ---- */

static bool rate_limit_exempt(const char *path) {
  /* Probes must never be throttled into reporting an outage. */
  return strcmp(path, "/health") == 0 || strcmp(path, "/ready") == 0;
}

static bool rate_limit_hook(osb_req_t *req) {
  if (!A.rl || rate_limit_exempt(osb_req_path(req))) return true;
  /* Key by user when the request carries a token we can verify for free
   * (which also preloads the principal for the handler), else by IP. */
  osb_principal_t *p = osb_auth_peek(req);
  char key[ID_MAX + 64];
  /* The service key is our own servers talking (publish, notifications):
   * holding the secret is the limit. */
  if (p && p->role == OSB_ROLE_SERVICE && strcmp(p->user_id, "service") == 0) return true;
  if (p) {
    snprintf(key, sizeof(key), "u:%s", p->user_id);
  } else {
    const char *ip = osb_req_ip(req);
    snprintf(key, sizeof(key), "ip:%s", ip ? ip : "?");
  }
  osb__rl_result_t r;
  osb__rl_take(A.rl, key, strlen(key), osb_now_ms(), &r);
  char v[24];
  snprintf(v, sizeof(v), "%u", r.limit);
  osb_res_header(req, "RateLimit-Limit", v);
  snprintf(v, sizeof(v), "%u", r.remaining);
  osb_res_header(req, "RateLimit-Remaining", v);
  snprintf(v, sizeof(v), "%u", r.reset_s);
  osb_res_header(req, "RateLimit-Reset", v);
  if (r.allowed) return true;
  snprintf(v, sizeof(v), "%u", r.retry_after_s);
  osb_res_header(req, "Retry-After", v);
  osb_res_error(req, 429, "rate_limited", "too many requests; retry in %u s", r.retry_after_s);
  return false;
}
