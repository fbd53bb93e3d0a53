/* auth.h: who is calling, and may they. The one verification hook for
 * every REST route family, the /ws handshake and the WebSocket `auth`
 * message.
 *
 * Tokens come from `Authorization: Bearer`, the `osb_access` SSO cookie, or
 * (WebSocket only) `?token=`. Accepted: this server's HS256 access JWTs
 * (JWT_SECRET), HS256 tokens of the external Supabase-style issuer
 * (SUPABASE_JWT_SECRET, mapped to a local user created on first sight), and
 * SERVICE_API_KEY (role service). Loop thread only. */
#ifndef OSB_AUTH_H
#define OSB_AUTH_H

#include <stdbool.h>
#include "core/core.h"   /* osb_role_t */

typedef struct json_t json_t;
/* http/http.h's, declared again (identical typedefs) so this header does
 * not pull in the HTTP module's (docs/architecture.md). */
typedef struct osb_req osb_req_t;
typedef void (*osb_handler_fn)(osb_req_t *req);

typedef struct osb_principal {
  char *user_id;      /* local user id (text); "service" for the service key */
  char *email;        /* may be NULL for the service key */
  osb_role_t role;
  bool via_cookie;    /* authenticated by the SSO cookie (CSRF applies) */
  bool external;      /* from the external issuer (SUPABASE_JWT_SECRET) */
  long long expires_at; /* token exp, seconds since the epoch; 0 for the service key */
} osb_principal_t;

osb_principal_t *osb_principal_new(const char *user_id, const char *email, osb_role_t role);
void osb_principal_free(osb_principal_t *p);
/* osb_role_name / osb_role_parse: core.h, next to osb_role_t. */

/* Verify a token string. Calls cb exactly once, possibly before returning
 * (locally verifiable tokens) or later (a first-seen external user is
 * created in the database). On success err == 0 and the callee owns *p
 * (free with osb_principal_free); otherwise err < 0 and p == NULL:
 * OSB_ETIMEOUT the token expired (the client should refresh),
 * OSB_EDENIED any other invalid token, OSB_EUNAVAIL/OSB_EDB the database
 * needed for an external user could not answer (503, not 401).
 * The principal's via_cookie is false; callers that took the token from the
 * cookie set it. */
typedef void (*osb_auth_cb)(void *ud, int err, osb_principal_t *p);
void osb_auth_verify_token(const char *token, osb_auth_cb cb, void *ud);

/* REST guard, called first thing in a handler:
 *   static void h(osb_req_t *req) { if (!osb_auth_require(req, OSB_ROLE_USER, h)) return; ... }
 * Role order: OSB_ROLE_NONE accepts any principal (service key included);
 * OSB_ROLE_USER accepts user and admin; OSB_ROLE_ADMIN accepts
 * admin; OSB_ROLE_SERVICE accepts service and admin (the "admin/service"
 * routes). The service key never passes a USER or ADMIN route: it has no
 * user to own data.
 * Returns true when the request carries (or could be given without I/O) a
 * principal of a sufficient role. Otherwise it either answers 401 (no or
 * invalid token; with WWW-Authenticate: Bearer), 403 (role too low, or
 * CSRF failure), 503 (database needed and unavailable) and returns false,
 * or starts an asynchronous verification and returns false, calling
 * `again(req)` later with the principal set. Also enforces CSRF for
 * cookie-authenticated unsafe methods (POST/PUT/PATCH/DELETE): header
 * X-CSRF-Token must equal the osb_csrf cookie and be bound to the user. */
bool osb_auth_require(osb_req_t *req, osb_role_t min_role, osb_handler_fn again);

/* The principal if one could be resolved without I/O, else NULL (optional auth). */
osb_principal_t *osb_auth_peek(osb_req_t *req);

/* ---- extensions to the contract ---- */

/* The token a request carries: `Authorization: Bearer`, else the osb_access
 * cookie, else, when allow_query (the /ws handshake only), `?token=`.
 * NULL if none. *via_cookie (may be NULL) tells whether it was the cookie.
 * The string is owned by the request. */
const char *osb_auth_request_token(osb_req_t *req, bool allow_query, bool *via_cookie);

/* ---- accounts and sessions (policy here, HTTP in apps/auth_routes.c) ----
 * Each call answers through cb exactly once on the loop thread: later for
 * anything that needs the database or Argon2, at once (before returning)
 * for a refusal that needs neither (400, 429). The result says what to answer: status (200, 201, 400, 401,
 * 409, 429 or 503), an error code and message for osb_res_error, and
 * Retry-After seconds for 429/503. On success `session` is set; the callback
 * may take it (set r->session = NULL), otherwise it is freed afterwards. */
typedef struct osb_session {
  json_t *user;           /* {id,email,display_name,role,created_at}, owned */
  char *access_token;     /* JWT, owned */
  long long expires_at;   /* access token exp, seconds since the epoch */
  char *refresh_token;    /* owned */
  char *csrf_token;       /* owned; also what the osb_csrf cookie carries */
} osb_session_t;
void osb_session_free(osb_session_t *s);

typedef struct osb_auth_result {
  int status;
  const char *code;       /* static string, NULL on success */
  const char *message;    /* static string, NULL on success */
  unsigned retry_after_s;
  osb_session_t *session;
} osb_auth_result_t;
typedef void (*osb_auth_result_cb)(void *ud, osb_auth_result_t *r);

/* Validation without I/O: NULL if acceptable, else a message for a 400.
 * E-mails are trimmed and lowercased; passwords need >= 10 characters. */
const char *osb_auth_check_credentials(const char *email, const char *password);
/* Create a user with role user (409 if the e-mail exists) and sign them in.
 * Throttled per client address `ip` and globally (REGISTER_IP_BURST,
 * REGISTER_IP_PER_HOUR, REGISTER_GLOBAL_PER_MIN): 429 too_many_registrations
 * with retry_after_s, before any database or Argon2 work. */
void osb_auth_register(const char *ip, const char *email, const char *password, const char *display_name,
                       osb_auth_result_cb cb, void *ud);
/* Check a password; failures count per IP and per e-mail (5 a minute, then 429). */
void osb_auth_login(const char *ip, const char *email, const char *password,
                    osb_auth_result_cb cb, void *ud);
/* The double-submit pair of a refresh token that came from the osb_refresh
 * cookie: the osb_csrf cookie and the X-CSRF-Token header (either may be
 * NULL). Checked as on every cookie-authenticated unsafe request: equal,
 * and the token's MAC bound to the user the refresh token belongs to;
 * otherwise 403 csrf_failed and the refresh token is left untouched. A
 * token from the request body needs none (pass NULL): a cross-site page
 * cannot read it. */
typedef struct osb_auth_csrf {
  const char *cookie;
  const char *header;
} osb_auth_csrf_t;
/* Rotate a refresh token: the old one is spent and a new one of the same
 * family issued, in one transaction. A spent token revokes its family (401). */
void osb_auth_refresh(const char *refresh_token, const osb_auth_csrf_t *csrf, osb_auth_result_cb cb,
                      void *ud);
/* Revoke the family of refresh_token (may be NULL: nothing to revoke). 200. */
void osb_auth_logout(const char *refresh_token, const osb_auth_csrf_t *csrf, osb_auth_result_cb cb,
                     void *ud);

/* Set-Cookie for osb_access (HttpOnly, Path=/), osb_refresh (HttpOnly,
 * Path=/api/auth) and osb_csrf (readable by scripts, Path=/), each with
 * Domain=SSO_COOKIE_DOMAIN when set, SameSite=Lax, Secure unless
 * COOKIE_SECURE=0. clear: the same three, expired. */
void osb_auth_set_cookies(osb_req_t *req, const osb_session_t *s);
void osb_auth_clear_cookies(osb_req_t *req);

/* Start-up, once, after osb_config_load, osb_log_init and the database
 * init, before osb_http_server_start: loads the signing key (JWT_SECRET or
 * the generated <data dir>/jwt_secret), builds the login throttles, installs
 * the rate-limit hook (osb_http_add_hook) and reports the "sso" health
 * component. Returns 0 or a negative error, already logged. */
int osb_auth_init(void);
/* Free what osb_auth_init built (after the loop has stopped). */
/* Close the module's loop handles (the purge timer), through their close
 * callbacks; before the loop ends. Idempotent. */
void osb_auth_close(void);
void osb_auth_dispose(void);

/* `osbackend create-user --email E --role admin|user|service [--name N]`,
 * password from stdin (first line). Runs its own loop over the database;
 * main() calls it after loading the configuration and logging and returns
 * its result as the exit code (0 ok, 1 failure, 2 usage). */
int osb_auth_create_user_main(int argc, char **argv);

#endif
