/* auth/internal.h: what only the auth module's own files (and its unit
 * tests) share. Nothing here is part of the contract in auth.h.
 *
 * Pieces, each in its own file and free of HTTP and database dependencies
 * unless stated otherwise:
 *   b64url.c    base64url without padding, strict decoder
 *   jwt.c       HS256 sign/verify with an algorithm allowlist
 *   limit.c     token bucket per client (core/tbucket.h) in a keytab
 *               (core/keytab.h), failed-login throttle
 *   password.c  Argon2id on the libuv threadpool with a concurrency cap
 *   cookie.c    Set-Cookie lines and the signed double-submit CSRF token
 *   secret.c    JWT secret: configured, or generated once into the data dir
 *   store.c     the module's SQL (users, refresh tokens, usage), both dialects
 *   auth.c      principals, the verification hook, the rate-limit hook
 *   cli.c       `osbackend create-user` */
#ifndef OSB_AUTH_INTERNAL_H
#define OSB_AUTH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "core/crypto.h"
#include "core/keytab.h"

typedef struct json_t json_t;

/* ---- policy constants ---- */
#define OSB__ACCESS_TTL_S 900                 /* access JWT lifetime: 15 min */
#define OSB__REFRESH_TTL_S (30 * 24 * 3600)   /* refresh token lifetime: 30 days */
#define OSB__CLOCK_SKEW_S 60
#define OSB__ISSUER "osbackend"
#define OSB__EXT_AUDIENCE "authenticated"
#define OSB__PASSWORD_MIN 10
#define OSB__PASSWORD_MAX 1024                /* bound the work a peer can ask for */
#define OSB__EMAIL_MAX 254
#define OSB__LOGIN_FAIL_LIMIT 5
#define OSB__LOGIN_FAIL_WINDOW_MS 60000
#define OSB__TOKEN_MAX 8192                   /* longest JWT we look at */

/* ---- base64url (RFC 4648 §5), no padding ---- */
/* Encoded length of n bytes (without NUL). */
static inline size_t osb__b64url_len(size_t n) { return (n / 3) * 4 + ((n % 3) ? (n % 3) + 1 : 0); }
/* Writes osb__b64url_len(n) characters and a NUL into out. */
void osb__b64url_encode(char *out, const void *in, size_t n);
/* Strict decoding: only [A-Za-z0-9_-], no padding, no whitespace, unused
 * trailing bits must be zero (one canonical spelling per byte string).
 * out needs room for len*3/4 bytes. Returns 0 and sets *outlen, or
 * OSB_EINVAL. */
int osb__b64url_decode(void *out, size_t *outlen, const char *in, size_t len);

/* ---- JWT (HS256 only) ---- */
enum {
  OSB__JWT_EMALFORMED = -1,  /* not three base64url parts of JSON objects */
  OSB__JWT_EALG = -2,        /* alg missing or anything but HS256, or crit present */
  OSB__JWT_ESIG = -3,        /* signature does not verify with this key */
  OSB__JWT_EEXPIRED = -4,    /* exp + skew <= now, or exp missing */
  OSB__JWT_ENOTYET = -5,     /* nbf or iat later than now + skew */
};
/* Sign `claims` (not stolen) with HMAC-SHA256 under key. Returns a malloc'd
 * compact JWS "h.p.s" the caller frees. */
char *osb__jwt_sign(const void *key, size_t keylen, const json_t *claims);
/* Check structure, algorithm and signature (constant-time), then exp/nbf/iat
 * against now_s with skew_s of tolerance. On 0, *claims (if non-NULL) gets
 * the payload object, owned by the caller. Otherwise an OSB__JWT_E* code. */
int osb__jwt_verify(const char *token, size_t len, const void *key, size_t keylen,
                    int64_t now_s, int64_t skew_s, json_t **claims);
const char *osb__jwt_strerror(int err);

/* ---- keytab: core's (core/keytab.h), under the names auth's files and
 * tests have always used ---- */
typedef osb_kt_t osb__kt_t;
static inline osb__kt_t *osb__kt_new(size_t max_entries, size_t valsize, uint64_t idle_ms) {
  return osb_kt_new(max_entries, valsize, idle_ms);
}
static inline void *osb__kt_get(osb__kt_t *t, const char *key, size_t keylen, uint64_t now_ms,
                                bool create, bool *created) {
  return osb_kt_get(t, key, keylen, now_ms, create, created);
}
static inline void osb__kt_del(osb__kt_t *t, const char *key, size_t keylen) { osb_kt_del(t, key, keylen); }
static inline size_t osb__kt_count(const osb__kt_t *t) { return osb_kt_count(t); }
static inline void osb__kt_free(osb__kt_t *t) { osb_kt_free(t); }

/* ---- token bucket per client ---- */
typedef struct osb__rl osb__rl_t;
typedef struct osb__rl_result {
  bool allowed;
  unsigned limit;        /* RateLimit-Limit: the burst */
  unsigned remaining;    /* RateLimit-Remaining: whole tokens left */
  unsigned reset_s;      /* RateLimit-Reset: seconds until the bucket is full */
  unsigned retry_after_s;/* when refused: seconds until one token */
} osb__rl_result_t;
osb__rl_t *osb__rl_new(double rps, double burst, size_t max_clients);
void osb__rl_take(osb__rl_t *rl, const char *key, size_t keylen, uint64_t now_ms, osb__rl_result_t *out);
size_t osb__rl_clients(const osb__rl_t *rl);
void osb__rl_free(osb__rl_t *rl);

/* ---- failed-login throttle: `limit` failures per key in a sliding window ---- */
typedef struct osb__throttle osb__throttle_t;
osb__throttle_t *osb__throttle_new(unsigned limit, uint64_t window_ms, size_t max_keys);
/* 0 if the key may try again, else the seconds (>= 1) until it may. */
unsigned osb__throttle_check(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms);
void osb__throttle_fail(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms);
/* Attempts in flight: begin before the password check, end (failed or not)
 * when it is known. busy: the key's recent failures plus its attempts in
 * flight reach the limit, so a further attempt must wait for one to end
 * (else a burst of concurrent guesses would all pass check). */
void osb__throttle_begin(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms);
void osb__throttle_end(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms, bool failed);
bool osb__throttle_busy(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms);
/* Forget the key's failures (attempts in flight still count). */
void osb__throttle_reset(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms);
size_t osb__throttle_keys(const osb__throttle_t *t);
void osb__throttle_free(osb__throttle_t *t);

/* ---- passwords: Argon2id (libsodium crypto_pwhash_str) off the loop ----
 * At most osb__pw_max_active() hashes run in the threadpool at once (half
 * of UV_THREADPOOL_SIZE and one less than the CPUs, at least 1) so the
 * SQLite queries that share the pool keep moving and the loop keeps a core; further jobs wait in a FIFO on the loop, at most
 * OSB__PW_MAX_QUEUED of them, past which a call fails with OSB_EUNAVAIL
 * (the caller answers 503). The password is copied and wiped after use.
 * Callbacks run on the loop thread, never before the call returns; err is
 * 0, UV_ECANCELED, or OSB_EUNAVAIL (libsodium out of memory). */
#define OSB__PW_MAX_QUEUED 256
typedef void (*osb__pw_hash_cb)(void *ud, int err, char *hash /* malloc'd, callee frees */);
typedef void (*osb__pw_verify_cb)(void *ud, int err, bool match);
/* `client` names who the job is for (the client address; NULL or "" = not
 * counted per client): with a per-client cap set (osb__pw_set_per_key), a
 * client already holding that many jobs (waiting or running) is refused
 * with OSB_EUNAVAIL, so it cannot fill the queue ahead of the others. */
int osb__pw_hash(const char *client, const char *password, size_t len, osb__pw_hash_cb cb, void *ud) OSB_MUSTCHECK;
/* hash NULL (unknown user) or unusable: spends one Argon2id computation with
 * our parameters and reports no match, so an unknown e-mail takes as long
 * as a wrong password. */
int osb__pw_verify(const char *client, const char *hash, const char *password, size_t len,
                   osb__pw_verify_cb cb, void *ud) OSB_MUSTCHECK;
/* Synchronous, for the create-user command (no loop). Returns malloc'd hash or NULL. */
char *osb__pw_hash_now(const char *password, size_t len);
unsigned osb__pw_max_active(void);
/* Tests only: override the concurrency cap and queue bound (0 = default). */
void osb__pw_set_limits(unsigned max_active, unsigned max_queued);
/* Jobs one client may have waiting or running (AUTH_HASH_MAX_PER_IP; 0 = no cap). */
void osb__pw_set_per_key(unsigned n);
/* Jobs refused since start: per_client true = over the per-client cap, false = queue full. */
uint64_t osb__pw_refused(bool per_client);
unsigned osb__pw_active(void);
unsigned osb__pw_queued(void);

/* ---- cookies and CSRF ---- */
typedef struct osb__cookie_opts {
  const char *domain;   /* NULL: host-only */
  bool secure;
} osb__cookie_opts_t;
/* Appends one Set-Cookie value: name=value; Path=..; Max-Age=..; [Domain=..;]
 * [HttpOnly;] [Secure;] SameSite=Lax. max_age_s 0 clears the cookie. */
void osb__cookie_build(osb_buf_t *out, const char *name, const char *value, const char *path,
                       long max_age_s, bool http_only, const osb__cookie_opts_t *o);
/* Signed double-submit token: "<nonce>.<mac>", the MAC binding it to user_id
 * under key, so a cookie planted by a sibling subdomain does not pass. */
#define OSB__CSRF_LEN 45
void osb__csrf_make(char out[OSB__CSRF_LEN + 1], const void *key, size_t keylen, const char *user_id);
/* True when header equals cookie (constant time) and the token's MAC is
 * valid for user_id. Either string may be NULL (false). */
bool osb__csrf_check(const void *key, size_t keylen, const char *user_id, const char *cookie,
                     const char *header);

/* ---- small helpers ---- */
/* Trim ASCII whitespace and lowercase into out (malloc'd). NULL if the result
 * is not a plausible address (empty, too long, no single '@' with text on
 * both sides, control characters or spaces inside). */
char *osb__email_normalize(const char *in);
/* SHA-256 and HMAC-SHA256 are core's (core/crypto.h); these are the names
 * auth's files and tests have always used. */
static inline void osb__sha256_hex(char out[65], const void *p, size_t n) { osb_sha256_hex(out, p, n); }
static inline void osb__hmac_sha256(unsigned char out[32], const void *key, size_t keylen, const void *p,
                                    size_t n) {
  osb_hmac_sha256(out, key, keylen, p, n);
}
static inline void osb__hmac_cache_clear(void) { osb_hmac_cache_clear(); }

/* ---- secret.c: the JWT signing key ---- */
/* The key: JWT_SECRET if set; else (embedded default) the contents of
 * <dirname(SQLITE_PATH)>/jwt_secret, created once with 32 random bytes (as
 * 64 hex characters) and mode 0600. Returns 0 and a malloc'd key, or a
 * negative error with a one-line reason in err. */
int osb__secret_load(const char *configured, const char *sqlite_path, char **key, size_t *keylen,
                     bool *generated, char *err, size_t errlen);

/* ---- auth.c internals shared with session.c ---- */
/* Registration throttle (REGISTER_IP_*, REGISTER_GLOBAL_PER_MIN): takes a
 * token of ip's bucket, then of the global one. 0 if the registration may
 * go on, else the seconds (>= 1) to wait. Refusals are counted in
 * auth_registrations_refused_total{reason="per_ip"|"global"}. */
unsigned osb__auth_register_blocked(const char *ip);
const void *osb__auth_csrf_key(size_t *len);
/* A signed access JWT for the user (malloc'd); *exp gets its expiry. */
char *osb__auth_issue_access(const char *user_id, const char *email, int role, int64_t *exp);
unsigned osb__auth_login_blocked(const char *ip, const char *email);
/* True when attempts in flight for the IP or e-mail could fill the window:
 * the caller waits for one of them to end before checking again. */
bool osb__auth_login_busy(const char *ip, const char *email);
void osb__auth_login_begin(const char *ip, const char *email);
void osb__auth_login_end(const char *ip, const char *email, bool failed);
void osb__auth_login_succeeded(const char *email);

/* ---- store.c: the module's SQL, both dialects ----
 * Every call answers through cb exactly once on the loop thread, never
 * before returning. Errors: OSB_ENOTFOUND, OSB_ECONFLICT (unique e-mail),
 * OSB_EDENIED (refresh reuse: the family has been revoked), OSB_EUNAVAIL
 * or OSB_EDB (database down or failing). */
typedef struct osb__user {
  char *id;
  char *email;
  char *display_name;    /* may be NULL */
  int role;              /* osb_role_t */
  char *password_hash;   /* NULL for external and password-less users */
  int64_t created_at;    /* ms since the epoch */
} osb__user_t;
void osb__user_free(osb__user_t *u);
/* {id,email,display_name,role,created_at}: never the hash. */
json_t *osb__user_json(const osb__user_t *u);

typedef void (*osb__user_cb)(void *ud, int err, osb__user_t *u /* callee frees */);
typedef void (*osb__done_cb)(void *ud, int err);

void osb__store_user_by_email(const char *email, osb__user_cb cb, void *ud);
void osb__store_user_by_id(const char *id, osb__user_cb cb, void *ud);
void osb__store_user_insert(const char *email, const char *display_name, const char *hash, int role,
                            osb__user_cb cb, void *ud);
/* The local user for an external subject, created (role user) on first
 * sight. An e-mail already held by a different local account is not taken
 * over: OSB_ECONFLICT. */
void osb__store_user_external(const char *ext_sub, const char *email, osb__user_cb cb, void *ud);
/* A new refresh token (hash only) for user_id; family NULL starts a family. */
void osb__store_refresh_insert(const char *user_id, const char *family, const char *token_hash,
                               int64_t expires_ms, osb__done_cb cb, void *ud);
/* In one transaction: find old_hash; unknown or expired → OSB_ENOTFOUND;
 * already used or revoked → revoke the family, OSB_EDENIED; else mark it
 * used and insert new_hash in the same family. cb gets the token's user. */
void osb__store_refresh_rotate(const char *old_hash, const char *new_hash, int64_t now_ms,
                               int64_t new_expires_ms, osb__user_cb cb, void *ud);
/* The user a refresh token (by hash) was issued to, whatever its state:
 * cb gets 0 and the id (valid during the call only), OSB_ENOTFOUND, or a
 * database error. */
typedef void (*osb__owner_cb)(void *ud, int err, const char *user_id);
void osb__store_refresh_owner(const char *token_hash, osb__owner_cb cb, void *ud);
/* Revoke the family that token_hash belongs to (unknown: ok). */
void osb__store_refresh_revoke(const char *token_hash, int64_t now_ms, osb__done_cb cb, void *ud);
/* Delete refresh tokens that expired before cutoff_ms. */
void osb__store_refresh_purge(int64_t cutoff_ms, osb__done_cb cb, void *ud);

/* ---- the cluster-wide login throttle (PostgreSQL; docs/scale-out.md) ----
 * Failures of every instance are rows of login_failures, keyed "ip:<addr>"
 * and "email:<address>" (either key may be NULL). blocked: cb(ud, err,
 * wait_s) with the seconds until the `limit`-th most recent failure of
 * either key within `window_ms` leaves the window, 0 if not blocked.
 * failed: record one failure for each key (and drop their rows older than
 * the window). reset: forget a key's failures. */
typedef void (*osb__wait_cb)(void *ud, int err, unsigned wait_s);
void osb__store_login_blocked(const char *ip_key, const char *email_key, int64_t now_ms, int64_t window_ms,
                              unsigned limit, osb__wait_cb cb, void *ud);
void osb__store_login_failed(const char *ip_key, const char *email_key, int64_t now_ms, int64_t window_ms,
                             osb__done_cb cb, void *ud);
void osb__store_login_reset(const char *email_key);

#endif
