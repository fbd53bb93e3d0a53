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
#include "http/http.h"

typedef enum {
  OSB_ROLE_NONE = 0,
  OSB_ROLE_USER = 1,
  OSB_ROLE_ADMIN = 2,
  OSB_ROLE_SERVICE = 3,
} osb_role_t;

typedef struct osb_principal {
  char *user_id;      /* local user id (text); "service" for the service key */
  char *email;        /* may be NULL for the service key */
  osb_role_t role;
  bool via_cookie;    /* authenticated by the SSO cookie (CSRF applies) */
} osb_principal_t;

osb_principal_t *osb_principal_new(const char *user_id, const char *email, osb_role_t role);
void osb_principal_free(osb_principal_t *p);
const char *osb_role_name(osb_role_t r);
osb_role_t osb_role_parse(const char *s);   /* OSB_ROLE_NONE if unknown */

/* Verify a token string. Calls cb exactly once, possibly before returning
 * (locally verifiable tokens) or later (a first-seen external user is
 * created in the database). On success err == 0 and the callee owns *p
 * (free with osb_principal_free); otherwise err < 0 and p == NULL. */
typedef void (*osb_auth_cb)(void *ud, int err, osb_principal_t *p);
void osb_auth_verify_token(const char *token, osb_auth_cb cb, void *ud);

/* REST guard, called first thing in a handler:
 *   static void h(osb_req_t *req) { if (!osb_auth_require(req, OSB_ROLE_USER, h)) return; ... }
 * Returns true when the request already carries a principal with at least
 * `min_role` (admin satisfies user; service satisfies user and admin only if
 * `min_role` is service or the route says so via OSB_ROLE_SERVICE). Otherwise
 * it either answers 401 (with WWW-Authenticate: Bearer) / 403 and returns
 * false, or starts an asynchronous verification and returns false, calling
 * `again(req)` later with the principal set. Also enforces CSRF for
 * cookie-authenticated unsafe methods (403). */
bool osb_auth_require(osb_req_t *req, osb_role_t min_role, osb_handler_fn again);

/* The principal if one could be resolved without I/O, else NULL (optional auth). */
osb_principal_t *osb_auth_peek(osb_req_t *req);

#endif
