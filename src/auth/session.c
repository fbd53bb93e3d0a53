/* session.c: register, login, refresh, logout, and the SSO cookies.
 *
 * A session is one access JWT (15 min) plus one refresh token (30 days,
 * stored as its SHA-256 only) in a family: every refresh spends the token
 * and issues the next one of the same family; presenting a spent token
 * revokes the family (store.c). Each operation is a small state machine of
 * callbacks owned by a heap `op`, freed exactly once in op_done().
 *
 * Log lines name user ids only: never e-mails, passwords, hashes or tokens. */
#include "auth/auth.h"
#include "auth/internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/config.h"
#include "http/http.h"
#include "obs/log.h"

#define REFRESH_BYTES 32

typedef struct op {
  osb_auth_result_cb cb;
  void *ud;
  osb_auth_result_t r;
  char *email;            /* normalised */
  char *password;         /* wiped on free */
  size_t pwlen;
  char *display_name;
  char *ip;
  char old_hash[65];
  char new_refresh[64];   /* the token handed to the client */
  char new_hash[65];
  osb__user_t *user;
  char *csrf_cookie, *csrf_header;  /* refresh/logout by cookie: checked before the token is touched */
  void (*csrf_next)(struct op *o);  /* what follows a passed CSRF check */
  osb_list_t parked;      /* login waiting for an attempt in flight (see login_admit) */
  bool attempting;        /* login counted in the throttles' attempts in flight */
} op_t;

static void login_end(op_t *o, bool failed);

static op_t *op_new(osb_auth_result_cb cb, void *ud) {
  op_t *o = osb_calloc(1, sizeof(*o));
  o->cb = cb;
  o->ud = ud;
  osb_list_init(&o->parked);
  return o;
}

static void op_done(op_t *o) {
  login_end(o, false);
  o->cb(o->ud, &o->r);
  osb_session_free(o->r.session);
  if (o->password) {
    sodium_memzero(o->password, o->pwlen);
    free(o->password);
  }
  sodium_memzero(o->new_refresh, sizeof(o->new_refresh));
  free(o->email);
  free(o->display_name);
  free(o->ip);
  free(o->csrf_cookie);
  free(o->csrf_header);
  osb__user_free(o->user);
  free(o);
}

static void op_fail(op_t *o, int status, const char *code, const char *message) {
  o->r.status = status;
  o->r.code = code;
  o->r.message = message;
  if (status == 503 && !o->r.retry_after_s) o->r.retry_after_s = 1;
  op_done(o);
}

static void op_fail_db(op_t *o, int err) {
  const char *code;
  int status = osb_http_error_status(err == OSB_EUNAVAIL ? err : OSB_EDB, &code);
  op_fail(o, status, code, err == OSB_EUNAVAIL ? "the database is unavailable" : "database error");
}

void osb_session_free(osb_session_t *s) {
  if (!s) return;
  json_decref(s->user);
  if (s->access_token) {
    sodium_memzero(s->access_token, strlen(s->access_token));
    free(s->access_token);
  }
  if (s->refresh_token) {
    sodium_memzero(s->refresh_token, strlen(s->refresh_token));
    free(s->refresh_token);
  }
  free(s->csrf_token);
  free(s);
}

/* A new refresh token: the string for the client and its hash for the store. */
static void refresh_new(char token[64], char hash[65]) {
  unsigned char raw[REFRESH_BYTES];
  osb_random_bytes(raw, sizeof(raw));
  osb__b64url_encode(token, raw, sizeof(raw));
  osb__sha256_hex(hash, token, strlen(token));
  sodium_memzero(raw, sizeof(raw));
}

/* Build the session for o->user with the refresh token already stored. */
static void op_succeed(op_t *o, int status) {
  osb_session_t *s = osb_calloc(1, sizeof(*s));
  int64_t exp;
  s->user = osb__user_json(o->user);
  s->access_token = osb__auth_issue_access(o->user->id, o->user->email, o->user->role, &exp);
  s->expires_at = exp;
  s->refresh_token = osb_strdup(o->new_refresh);
  size_t kl;
  const void *k = osb__auth_csrf_key(&kl);
  s->csrf_token = osb_malloc(OSB__CSRF_LEN + 1);
  osb__csrf_make(s->csrf_token, k, kl, o->user->id);
  o->r.status = status;
  o->r.session = s;
  op_done(o);
}

/* ---- validation ---- */

const char *osb_auth_check_credentials(const char *email, const char *password) {
  char *e = osb__email_normalize(email);
  if (!e) return "a valid e-mail address is required";
  free(e);
  if (!password) return "a password is required";
  size_t n = strlen(password);
  /* Characters, not bytes: count UTF-8 lead bytes. */
  size_t chars = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)password[i] & 0xC0) != 0x80) chars++;
  if (chars < OSB__PASSWORD_MIN) return "the password needs at least 10 characters";
  if (n > OSB__PASSWORD_MAX) return "the password is too long";
  return NULL;
}

/* ---- issuing: store a new family's first token, then answer ---- */

static void on_family_stored(void *ud, int err) {
  op_t *o = ud;
  if (err < 0) {
    op_fail_db(o, err);
    return;
  }
  op_succeed(o, o->r.status);
}

static void issue_session(op_t *o, int status) {
  refresh_new(o->new_refresh, o->new_hash);
  o->r.status = status;
  osb__store_refresh_insert(o->user->id, NULL, o->new_hash,
                            (int64_t)osb_wallclock_ms() + (int64_t)OSB__REFRESH_TTL_S * 1000,
                            on_family_stored, o);
}

/* ---- register ---- */

static void on_registered(void *ud, int err, osb__user_t *u) {
  op_t *o = ud;
  if (err == OSB_ECONFLICT) {
    op_fail(o, 409, "email_taken", "an account with this e-mail already exists");
    return;
  }
  if (err < 0) {
    op_fail_db(o, err);
    return;
  }
  o->user = u;
  osb_log_fields(OSB_LOG_INFO, "auth", "user registered", json_pack("{s:s}", "user_id", u->id));
  issue_session(o, 201);
}

static void on_register_hashed(void *ud, int err, char *hash) {
  op_t *o = ud;
  if (err < 0 || !hash) {
    op_fail(o, 503, "busy", "cannot hash the password right now");
    return;
  }
  osb__store_user_insert(o->email, o->display_name, hash, OSB_ROLE_USER, on_registered, o);
  sodium_memzero(hash, strlen(hash));
  free(hash);
}

static void on_register_lookup(void *ud, int err, osb__user_t *u) {
  op_t *o = ud;
  if (err == 0) {
    osb__user_free(u);
    op_fail(o, 409, "email_taken", "an account with this e-mail already exists");
    return;
  }
  if (err != OSB_ENOTFOUND) {
    op_fail_db(o, err);
    return;
  }
  /* The unique index still decides a race between two registrations. */
  if (osb__pw_hash(o->ip, o->password, o->pwlen, on_register_hashed, o) < 0) {
    o->r.retry_after_s = 2;
    op_fail(o, 503, "busy", "too many sign-ins in progress; retry shortly");
  }
}

void osb_auth_register(const char *ip, const char *email, const char *password, const char *display_name,
                       osb_auth_result_cb cb, void *ud) {
  op_t *o = op_new(cb, ud);
  o->ip = osb_strdup(ip ? ip : "?");
  o->email = osb__email_normalize(email);
  o->password = osb_strdup(password ? password : "");
  o->pwlen = strlen(o->password);
  o->display_name = osb_strdup(display_name ? display_name : "");
  const char *bad = osb_auth_check_credentials(email, password);
  if (bad) {
    op_fail(o, 400, "bad_request", bad);
    return;
  }
  /* Throttled before any database or Argon2 work. */
  unsigned wait = osb__auth_register_blocked(o->ip);
  if (wait) {
    o->r.retry_after_s = wait;
    osb_log_fields(OSB_LOG_WARN, "auth", "registration throttled", json_pack("{s:s}", "ip", o->ip));
    op_fail(o, 429, "too_many_registrations", "too many registrations from here; retry later");
    return;
  }
  /* Look first so a duplicate costs no Argon2 work. */
  osb__store_user_by_email(o->email, on_register_lookup, o);
}

/* ---- login ---- */

/* ---- the cluster-wide part of the login throttle ----
 * With several instances on one PostgreSQL (CLUSTER_BUS=postgres) the
 * in-process throttle alone would let a client spread its guesses over the
 * instances, so failures are also rows of login_failures (store.c): an
 * attempt is checked against them before any Argon2 work, and a failure
 * is answered only once its row is written, so the next attempt, on any
 * instance, sees it. The in-process throttle still runs first (attempts in
 * flight, no database round trip for a key it already blocks). */
static bool cluster_throttle(void) { return osb_cfg && osb_cfg->cluster_bus == OSB_BUS_POSTGRES; }

static char *throttle_key(const char *kind, const char *v) {
  return v && *v ? osb_asprintf("%s:%s", kind, v) : NULL;
}

static void on_failure_recorded(void *ud, int err) {
  op_t *o = ud;
  if (err) osb_log(OSB_LOG_WARN, "auth", "recording a failed sign-in failed: %s", osb_strerror(err));
  op_fail(o, 401, "invalid_credentials", "wrong e-mail or password");
}

static void on_login_verified(void *ud, int err, bool match) {
  op_t *o = ud;
  if (err < 0) {
    op_fail(o, 503, "busy", "cannot verify the password right now");
    return;
  }
  if (!match || !o->user) {
    login_end(o, true);
    if (o->user)
      osb_log_fields(OSB_LOG_INFO, "auth", "login failed", json_pack("{s:s}", "user_id", o->user->id));
    if (cluster_throttle()) {
      char *ik = throttle_key("ip", o->ip), *ek = throttle_key("email", o->email);
      osb__store_login_failed(ik, ek, (int64_t)osb_wallclock_ms(), OSB__LOGIN_FAIL_WINDOW_MS, on_failure_recorded, o);
      free(ik);
      free(ek);
      return;
    }
    op_fail(o, 401, "invalid_credentials", "wrong e-mail or password");
    return;
  }
  osb__auth_login_succeeded(o->email);
  if (cluster_throttle()) {
    char *ek = throttle_key("email", o->email);
    if (ek) osb__store_login_reset(ek);
    free(ek);
  }
  login_end(o, false);
  osb_log_fields(OSB_LOG_INFO, "auth", "login", json_pack("{s:s}", "user_id", o->user->id));
  issue_session(o, 200);
}

static void on_login_user(void *ud, int err, osb__user_t *u) {
  op_t *o = ud;
  if (err < 0 && err != OSB_ENOTFOUND) {
    op_fail_db(o, err);
    return;
  }
  o->user = u;
  /* Unknown user or password-less account: same cost, same answer. */
  const char *hash = u ? u->password_hash : NULL;
  if (osb__pw_verify(o->ip, hash, o->password, o->pwlen, on_login_verified, o) < 0) {
    o->r.retry_after_s = 2;
    op_fail(o, 503, "busy", "too many sign-ins in progress; retry shortly");
  }
}

/* Logins waiting because the attempts in flight for their IP or e-mail
 * could already fill the failure window: if every attempt started at once,
 * a burst of concurrent guesses would all pass the throttle before the
 * first failure is counted. They wait (FIFO, bounded) for an attempt to
 * end and are checked again; legitimate concurrent sign-ins only queue,
 * as they would for the Argon2 slots anyway. */
#define LOGIN_PARKED_MAX 256
static osb_list_t login_parked = { &login_parked, &login_parked };
static unsigned n_login_parked;

static void on_cluster_checked(void *ud, int err, unsigned wait) {
  op_t *o = ud;
  if (err) osb_log(OSB_LOG_DEBUG, "auth", "cluster login throttle unavailable: %s", osb_strerror(err));
  if (wait) {
    login_end(o, false);
    o->r.retry_after_s = wait;
    osb_log_fields(OSB_LOG_WARN, "auth", "login throttled (cluster)", json_pack("{s:s}", "ip", o->ip));
    op_fail(o, 429, "too_many_attempts", "too many failed sign-ins; retry later");
    return;
  }
  osb__store_user_by_email(o->email, on_login_user, o);
}

static void login_admit(op_t *o) {
  unsigned wait = osb__auth_login_blocked(o->ip, o->email);
  if (wait) {
    /* Refused before any Argon2 work: a guessing loop costs us nothing. */
    o->r.retry_after_s = wait;
    osb_log_fields(OSB_LOG_WARN, "auth", "login throttled", json_pack("{s:s}", "ip", o->ip));
    op_fail(o, 429, "too_many_attempts", "too many failed sign-ins; retry later");
    return;
  }
  if (osb__auth_login_busy(o->ip, o->email)) {
    if (n_login_parked >= LOGIN_PARKED_MAX) {
      o->r.retry_after_s = 2;
      op_fail(o, 503, "busy", "too many sign-ins in progress; retry shortly");
      return;
    }
    osb_list_insert_tail(&login_parked, &o->parked);
    n_login_parked++;
    return;
  }
  osb__auth_login_begin(o->ip, o->email);
  o->attempting = true;
  if (cluster_throttle()) {   /* counted in flight meanwhile, so a burst still parks */
    char *ik = throttle_key("ip", o->ip), *ek = throttle_key("email", o->email);
    osb__store_login_blocked(ik, ek, (int64_t)osb_wallclock_ms(), OSB__LOGIN_FAIL_WINDOW_MS, OSB__LOGIN_FAIL_LIMIT,
                             on_cluster_checked, o);
    free(ik);
    free(ek);
    return;
  }
  osb__store_user_by_email(o->email, on_login_user, o);
}

/* The attempt is over: count it, then give the waiting logins another look. */
static void login_end(op_t *o, bool failed) {
  if (!o->attempting) return;
  o->attempting = false;
  osb__auth_login_end(o->ip, o->email, failed);
  /* Take the list first: admitting may answer requests, and an answer may
   * start the next pipelined login, which must not see a half-walked list. */
  osb_list_t l;
  osb_list_move(&l, &login_parked);
  n_login_parked = 0;
  while (!osb_list_empty(&l)) {
    op_t *w = osb_container_of(l.next, op_t, parked);
    osb_list_remove(&w->parked);
    osb_list_init(&w->parked);
    login_admit(w);
  }
}

void osb_auth_login(const char *ip, const char *email, const char *password, osb_auth_result_cb cb,
                    void *ud) {
  op_t *o = op_new(cb, ud);
  o->ip = osb_strdup(ip ? ip : "?");
  o->email = osb__email_normalize(email);
  if (!o->email) o->email = osb_strdup("");
  o->password = osb_strdup(password ? password : "");
  o->pwlen = strlen(o->password);
  const char *bad = osb_auth_check_credentials(email, "0123456789");
  if (bad) {
    op_fail(o, 400, "bad_request", bad);
    return;
  }
  login_admit(o);
}

/* ---- refresh ---- */

static void on_rotated(void *ud, int err, osb__user_t *u) {
  op_t *o = ud;
  if (err == OSB_ENOTFOUND || err == OSB_EDENIED) {
    op_fail(o, 401, err == OSB_EDENIED ? "refresh_reused" : "invalid_refresh_token",
            err == OSB_EDENIED ? "this refresh token was already used; the session has been revoked"
                                : "invalid or expired refresh token");
    return;
  }
  if (err < 0) {
    op_fail_db(o, err);
    return;
  }
  o->user = u;
  op_succeed(o, 200);
}

static void refresh_rotate(op_t *o) {
  refresh_new(o->new_refresh, o->new_hash);
  int64_t now = (int64_t)osb_wallclock_ms();
  osb__store_refresh_rotate(o->old_hash, o->new_hash, now, now + (int64_t)OSB__REFRESH_TTL_S * 1000,
                            on_rotated, o);
}

static void token_hash(char out[65], const char *refresh_token) {
  size_t n = refresh_token ? strlen(refresh_token) : 0;
  if (n == 0 || n > 128) osb__sha256_hex(out, "", 0);   /* matches nothing stored */
  else osb__sha256_hex(out, refresh_token, n);
}

/* ---- CSRF of a cookie-carried refresh token ----
 * The osb_csrf token is bound to a user, and the only user known here is
 * the refresh token's owner: look it up (read-only), check, then go on. An
 * unknown token cannot be bound to anyone, but nothing can be done with it
 * either (refresh answers 401, logout revokes nothing), so it goes on after
 * the equality check alone and fails or does nothing as before. */

static void on_csrf_owner(void *ud, int err, const char *user_id) {
  op_t *o = ud;
  if (err < 0 && err != OSB_ENOTFOUND) {
    op_fail_db(o, err);
    return;
  }
  if (err == 0) {
    size_t kl;
    const void *k = osb__auth_csrf_key(&kl);
    if (!osb__csrf_check(k, kl, user_id, o->csrf_cookie, o->csrf_header)) {
      op_fail(o, 403, "csrf_failed", "missing or invalid X-CSRF-Token");
      return;
    }
  }
  o->csrf_next(o);
}

static void csrf_then(op_t *o, const osb_auth_csrf_t *csrf, void (*next)(op_t *)) {
  if (!csrf) {
    next(o);
    return;
  }
  const char *c = csrf->cookie, *h = csrf->header;
  if (!c || !h || !osb_consttime_eq(c, strlen(c), h, strlen(h))) {
    op_fail(o, 403, "csrf_failed", "missing or invalid X-CSRF-Token");
    return;
  }
  o->csrf_cookie = osb_strdup(c);
  o->csrf_header = osb_strdup(h);
  o->csrf_next = next;
  osb__store_refresh_owner(o->old_hash, on_csrf_owner, o);
}

void osb_auth_refresh(const char *refresh_token, const osb_auth_csrf_t *csrf, osb_auth_result_cb cb,
                      void *ud) {
  op_t *o = op_new(cb, ud);
  token_hash(o->old_hash, refresh_token);
  csrf_then(o, csrf, refresh_rotate);
}

/* ---- logout ---- */

static void on_revoked(void *ud, int err) {
  op_t *o = ud;
  if (err < 0) {
    op_fail_db(o, err);
    return;
  }
  o->r.status = 200;
  op_done(o);
}

static void logout_revoke(op_t *o) {
  osb__store_refresh_revoke(o->old_hash, (int64_t)osb_wallclock_ms(), on_revoked, o);
}

void osb_auth_logout(const char *refresh_token, const osb_auth_csrf_t *csrf, osb_auth_result_cb cb,
                     void *ud) {
  op_t *o = op_new(cb, ud);
  token_hash(o->old_hash, refresh_token);
  csrf_then(o, csrf, logout_revoke);
}

/* ---- cookies ---- */

static osb__cookie_opts_t cookie_opts(void) {
  osb__cookie_opts_t o = { .domain = osb_cfg->sso_cookie_domain, .secure = osb_cfg->cookie_secure };
  return o;
}

void osb_auth_set_cookies(osb_req_t *req, const osb_session_t *s) {
  osb__cookie_opts_t o = cookie_opts();
  osb_buf_t b = OSB_BUF_INIT;
  osb__cookie_build(&b, "osb_access", s->access_token, "/", OSB__ACCESS_TTL_S, true, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  osb_buf_reset(&b);
  osb__cookie_build(&b, "osb_refresh", s->refresh_token, "/api/auth", OSB__REFRESH_TTL_S, true, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  osb_buf_reset(&b);
  osb__cookie_build(&b, "osb_csrf", s->csrf_token, "/", OSB__REFRESH_TTL_S, false, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  sodium_memzero(b.base, b.cap);
  osb_buf_free(&b);
  osb_res_header(req, "Cache-Control", "no-store");
}

void osb_auth_clear_cookies(osb_req_t *req) {
  osb__cookie_opts_t o = cookie_opts();
  osb_buf_t b = OSB_BUF_INIT;
  osb__cookie_build(&b, "osb_access", NULL, "/", 0, true, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  osb_buf_reset(&b);
  osb__cookie_build(&b, "osb_refresh", NULL, "/api/auth", 0, true, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  osb_buf_reset(&b);
  osb__cookie_build(&b, "osb_csrf", NULL, "/", 0, false, &o);
  osb_res_header(req, "Set-Cookie", b.base);
  osb_buf_free(&b);
}
