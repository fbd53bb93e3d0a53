/* store.c: the auth module's SQL over db.h, one text for both dialects
 * where the SQL is portable.
 *
 * Refresh tokens are stored only as SHA-256 hex of the token. Rotation
 * claims the presented token with one conditional UPDATE (used_at IS NULL
 * AND revoked_at IS NULL AND not expired AND no token of its family
 * revoked: under READ COMMITTED a family revocation cannot see the token a
 * concurrent rotation inserts, so the family's revocation mark decides). Two concurrent refreshes with the
 * same token serialize on that row: the second finds it used and is treated
 * as reuse, which revokes the family. No read-then-write race, no FOR
 * UPDATE (SQLite has none; its writes are serialized anyway). */
#include "auth/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "auth/auth.h"
#include "db/db.h"
#include "obs/log.h"

#define USER_COLS "id, email, display_name, role, password_hash, created_at"

static const osb_db_stmt_t Q_USER_BY_EMAIL = {
  .name = "auth_user_by_email",
  .pg = "SELECT " USER_COLS " FROM users WHERE email = $1",
  .nparams = 1,
  .reads = "users",
};

static const osb_db_stmt_t Q_USER_BY_ID = {
  .name = "auth_user_by_id",
  .pg = "SELECT " USER_COLS " FROM users WHERE id = $1",
  .nparams = 1,
  .reads = "users",
};

static const osb_db_stmt_t Q_USER_BY_EXT = {
  .name = "auth_user_by_external",
  .pg = "SELECT " USER_COLS " FROM users WHERE external_sub = $1",
  .nparams = 1,
  .reads = "users",
};

static const osb_db_stmt_t Q_USER_INSERT = {
  .name = "auth_user_insert",
  .pg = "INSERT INTO users (id, email, display_name, role, password_hash, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING " USER_COLS,
  .nparams = 6,
  .writes = "users",
};

/* Any unique conflict (the external subject raced us, or the e-mail
 * belongs to another account) inserts nothing and returns no row. */
static const osb_db_stmt_t Q_USER_EXT_INSERT = {
  .name = "auth_user_insert_external",
  .pg = "INSERT INTO users (id, email, display_name, role, external_sub, created_at, updated_at) "
        "VALUES ($1, $2, '', 'user', $3, $4, $4) ON CONFLICT DO NOTHING RETURNING " USER_COLS,
  .nparams = 4,
  .writes = "users",
};

static const osb_db_stmt_t Q_RT_INSERT = {
  .name = "auth_refresh_insert",
  .pg = "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
  .nparams = 6,
  .writes = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_CLAIM = {
  .name = "auth_refresh_claim",
  .pg = "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL "
        "AND revoked_at IS NULL AND expires_at > $2 AND NOT EXISTS (SELECT 1 FROM refresh_tokens f "
        "WHERE f.family_id = refresh_tokens.family_id AND f.revoked_at IS NOT NULL) "
        "RETURNING user_id, family_id",
  .nparams = 2,
  .writes = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_STATE = {
  .name = "auth_refresh_state",
  .pg = "SELECT t.family_id, t.used_at, t.revoked_at, (SELECT MIN(f.revoked_at) FROM refresh_tokens f "
        "WHERE f.family_id = t.family_id) AS family_revoked_at FROM refresh_tokens t WHERE t.token_hash = $1",
  .nparams = 1,
  .reads = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_REVOKE_FAMILY = {
  .name = "auth_refresh_revoke_family",
  .pg = "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
  .nparams = 2,
  .writes = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_REVOKE_BY_TOKEN = {
  .name = "auth_refresh_revoke_by_token",
  .pg = "UPDATE refresh_tokens SET revoked_at = $2 WHERE revoked_at IS NULL AND family_id IN "
        "(SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
  .nparams = 2,
  .writes = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_OWNER = {
  .name = "auth_refresh_owner",
  .pg = "SELECT user_id FROM refresh_tokens WHERE token_hash = $1",
  .nparams = 1,
  .reads = "refresh_tokens",
};

static const osb_db_stmt_t Q_RT_PURGE = {
  .name = "auth_refresh_purge",
  .pg = "DELETE FROM refresh_tokens WHERE expires_at < $1",
  .nparams = 1,
  .writes = "refresh_tokens",
};

/* ---- users ---- */

void osb__user_free(osb__user_t *u) {
  if (!u) return;
  free(u->id);
  free(u->email);
  free(u->display_name);
  if (u->password_hash) free(u->password_hash);
  free(u);
}

json_t *osb__user_json(const osb__user_t *u) {
  return json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", u->id, "email", u->email, "display_name",
                   u->display_name ? u->display_name : "", "role", osb_role_name((osb_role_t)u->role),
                   "created_at", (json_int_t)u->created_at);
}

static osb__user_t *user_from_row(const osb_db_result_t *res, size_t row) {
  osb__user_t *u = osb_calloc(1, sizeof(*u));
  const char *v;
  u->id = osb_strdup((v = osb_db_get(res, row, "id")) ? v : "");
  u->email = osb_strdup((v = osb_db_get(res, row, "email")) ? v : "");
  u->display_name = osb_strdup((v = osb_db_get(res, row, "display_name")) ? v : "");
  u->role = osb_role_parse(osb_db_get(res, row, "role"));
  v = osb_db_get(res, row, "password_hash");
  u->password_hash = v && v[0] ? osb_strdup(v) : NULL;
  u->created_at = osb_db_get_int(res, row, "created_at");
  return u;
}

typedef struct user_q {
  osb__user_cb cb;
  void *ud;
  /* external mapping only */
  char *sub, *email;
  int step;
} user_q_t;

static void user_q_free(user_q_t *q) {
  free(q->sub);
  free(q->email);
  free(q);
}

static void on_user_row(void *ud, int err, const osb_db_result_t *res) {
  user_q_t *q = ud;
  if (err < 0) {
    q->cb(q->ud, err, NULL);
  } else if (osb_db_nrows(res) == 0) {
    q->cb(q->ud, OSB_ENOTFOUND, NULL);
  } else {
    q->cb(q->ud, 0, user_from_row(res, 0));
  }
  user_q_free(q);
}

static user_q_t *user_q_new(osb__user_cb cb, void *ud) {
  user_q_t *q = osb_calloc(1, sizeof(*q));
  q->cb = cb;
  q->ud = ud;
  return q;
}

void osb__store_user_by_email(const char *email, osb__user_cb cb, void *ud) {
  const char *p[] = {email};
  osb_db_query(&Q_USER_BY_EMAIL, p, 1, on_user_row, user_q_new(cb, ud));
}

void osb__store_user_by_id(const char *id, osb__user_cb cb, void *ud) {
  const char *p[] = {id};
  osb_db_query(&Q_USER_BY_ID, p, 1, on_user_row, user_q_new(cb, ud));
}

void osb__store_user_insert(const char *email, const char *display_name, const char *hash, int role,
                            osb__user_cb cb, void *ud) {
  char id[37], now[24];
  osb_db_uuid(id);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  const char *p[] = {id, email, display_name ? display_name : "", osb_role_name((osb_role_t)role), hash, now};
  osb_db_query(&Q_USER_INSERT, p, 6, on_user_row, user_q_new(cb, ud));
}

/* External mapping: look up by subject; else insert; else (a racing insert
 * won, or the e-mail is taken) look up once more. */
enum { EXT_LOOKUP, EXT_INSERT, EXT_RECHECK };

static void ext_step(user_q_t *q);

static void on_ext(void *ud, int err, const osb_db_result_t *res) {
  user_q_t *q = ud;
  if (err < 0) {
    q->cb(q->ud, err, NULL);
    user_q_free(q);
    return;
  }
  if (osb_db_nrows(res) > 0) {
    osb__user_t *u = user_from_row(res, 0);
    if (q->step == EXT_INSERT)
      osb_log_fields(OSB_LOG_INFO, "auth", "external user created", json_pack("{s:s}", "user_id", u->id));
    q->cb(q->ud, 0, u);
    user_q_free(q);
    return;
  }
  if (q->step == EXT_RECHECK) {
    /* Not ours and not insertable: the e-mail belongs to another account. */
    q->cb(q->ud, OSB_ECONFLICT, NULL);
    user_q_free(q);
    return;
  }
  q->step++;
  ext_step(q);
}

static void ext_step(user_q_t *q) {
  if (q->step == EXT_INSERT) {
    char id[37], now[24];
    osb_db_uuid(id);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
    const char *p[] = {id, q->email, q->sub, now};
    osb_db_query(&Q_USER_EXT_INSERT, p, 4, on_ext, q);
  } else {
    const char *p[] = {q->sub};
    osb_db_query(&Q_USER_BY_EXT, p, 1, on_ext, q);
  }
}

void osb__store_user_external(const char *ext_sub, const char *email, osb__user_cb cb, void *ud) {
  user_q_t *q = user_q_new(cb, ud);
  q->sub = osb_strdup(ext_sub);
  q->email = osb_strdup(email ? email : "");
  q->step = EXT_LOOKUP;
  ext_step(q);
}

/* ---- refresh tokens ---- */

typedef struct done_q {
  osb__done_cb cb;
  void *ud;
} done_q_t;

static void on_done(void *ud, int err, const osb_db_result_t *res) {
  done_q_t *q = ud;
  if (q->cb) q->cb(q->ud, err);
  free(q);
}

static done_q_t *done_q_new(osb__done_cb cb, void *ud) {
  done_q_t *q = osb_calloc(1, sizeof(*q));
  q->cb = cb;
  q->ud = ud;
  return q;
}

void osb__store_refresh_insert(const char *user_id, const char *family, const char *token_hash,
                               int64_t expires_ms, osb__done_cb cb, void *ud) {
  char id[37], fam[37], now[24], exp[24];
  osb_db_uuid(id);
  if (family) {
    snprintf(fam, sizeof(fam), "%s", family);
  } else {
    osb_db_uuid(fam);
  }
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  snprintf(exp, sizeof(exp), "%lld", (long long)expires_ms);
  const char *p[] = {id, user_id, fam, token_hash, now, exp};
  osb_db_query(&Q_RT_INSERT, p, 6, on_done, done_q_new(cb, ud));
}

typedef struct rotate_q {
  osb__user_cb cb;
  void *ud;
  osb_db_tx_t *tx;
  char old_hash[65], new_hash[65];
  char now[24], exp[24];
  int err;              /* the outcome to report after commit/rollback */
  osb__user_t *user;
} rotate_q_t;

static void rotate_finish(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  int e = q->err;
  if (err < 0 && e == 0) e = err;     /* commit failed: nothing happened */
  if (err < 0 && e == OSB_EDENIED) e = err;  /* the revocation did not commit */
  if (e < 0) {
    osb__user_free(q->user);
    q->user = NULL;
  }
  q->cb(q->ud, e, q->user);
  free(q);
}

static void on_rotate_user(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  if (err < 0) {
    q->err = err;
  } else if (osb_db_nrows(res) == 0) {
    q->err = OSB_ENOTFOUND;
  } else {
    q->user = user_from_row(res, 0);
  }
  if (q->err < 0) {
    osb_db_tx_rollback(q->tx, rotate_finish, q);
  } else {
    osb_db_tx_commit(q->tx, rotate_finish, q);
  }
}

static void on_rotate_insert(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  if (err < 0 && q->err == 0) q->err = err;
  /* The user query issued behind this one settles the transaction. */
}

static void on_rotate_revoked(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  if (err < 0) {
    q->err = err;
    osb_db_tx_rollback(q->tx, rotate_finish, q);
    return;
  }
  q->err = OSB_EDENIED;
  osb_db_tx_commit(q->tx, rotate_finish, q);
}

static void on_rotate_state(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  if (err < 0 || osb_db_nrows(res) == 0) {
    q->err = err < 0 ? err : OSB_ENOTFOUND;
    osb_db_tx_rollback(q->tx, rotate_finish, q);
    return;
  }
  if (osb_db_get(res, 0, "used_at") || osb_db_get(res, 0, "revoked_at") ||
      osb_db_get(res, 0, "family_revoked_at")) {
    /* Reuse of a spent token: somebody holds a copy. Revoke the family.
     * A token of a family revoked already is refused the same way (and
     * revoked too): a rotation that ran alongside the revocation may have
     * inserted it where the revoking UPDATE could not see it yet. */
    osb_log(OSB_LOG_WARN, "auth", "refresh token reuse detected: revoking its family");
    const char *p[] = {osb_db_get(res, 0, "family_id"), q->now};
    osb_db_tx_query(q->tx, &Q_RT_REVOKE_FAMILY, p, 2, on_rotate_revoked, q);
    return;
  }
  q->err = OSB_ENOTFOUND;   /* present, unused, unrevoked: so it expired */
  osb_db_tx_rollback(q->tx, rotate_finish, q);
}

static void on_rotate_claim(void *ud, int err, const osb_db_result_t *res) {
  rotate_q_t *q = ud;
  if (err < 0) {
    q->err = err;
    osb_db_tx_rollback(q->tx, rotate_finish, q);
    return;
  }
  if (osb_db_nrows(res) == 0) {
    const char *p[] = {q->old_hash};
    osb_db_tx_query(q->tx, &Q_RT_STATE, p, 1, on_rotate_state, q);
    return;
  }
  char id[37];
  osb_db_uuid(id);
  const char *user_id = osb_db_get(res, 0, "user_id");
  const char *ins[] = {id, user_id, osb_db_get(res, 0, "family_id"), q->new_hash, q->now, q->exp};
  osb_db_tx_query(q->tx, &Q_RT_INSERT, ins, 6, on_rotate_insert, q);
  const char *sel[] = {user_id};
  osb_db_tx_query(q->tx, &Q_USER_BY_ID, sel, 1, on_rotate_user, q);
}

static void on_rotate_begin(void *ud, int err, osb_db_tx_t *tx) {
  rotate_q_t *q = ud;
  if (err < 0) {
    q->cb(q->ud, err, NULL);
    free(q);
    return;
  }
  q->tx = tx;
  const char *p[] = {q->old_hash, q->now};
  osb_db_tx_query(tx, &Q_RT_CLAIM, p, 2, on_rotate_claim, q);
}

void osb__store_refresh_rotate(const char *old_hash, const char *new_hash, int64_t now_ms,
                               int64_t new_expires_ms, osb__user_cb cb, void *ud) {
  rotate_q_t *q = osb_calloc(1, sizeof(*q));
  q->cb = cb;
  q->ud = ud;
  snprintf(q->old_hash, sizeof(q->old_hash), "%s", old_hash);
  snprintf(q->new_hash, sizeof(q->new_hash), "%s", new_hash);
  snprintf(q->now, sizeof(q->now), "%lld", (long long)now_ms);
  snprintf(q->exp, sizeof(q->exp), "%lld", (long long)new_expires_ms);
  osb_db_tx_begin(on_rotate_begin, q);
}

typedef struct owner_q {
  osb__owner_cb cb;
  void *ud;
} owner_q_t;

static void on_owner(void *ud, int err, const osb_db_result_t *res) {
  owner_q_t *q = ud;
  if (err < 0) q->cb(q->ud, err, NULL);
  else if (osb_db_nrows(res) == 0) q->cb(q->ud, OSB_ENOTFOUND, NULL);
  else q->cb(q->ud, 0, osb_db_get(res, 0, "user_id"));
  free(q);
}

void osb__store_refresh_owner(const char *token_hash, osb__owner_cb cb, void *ud) {
  owner_q_t *q = osb_calloc(1, sizeof(*q));
  q->cb = cb;
  q->ud = ud;
  const char *p[] = {token_hash};
  osb_db_query(&Q_RT_OWNER, p, 1, on_owner, q);
}

void osb__store_refresh_revoke(const char *token_hash, int64_t now_ms, osb__done_cb cb, void *ud) {
  char now[24];
  snprintf(now, sizeof(now), "%lld", (long long)now_ms);
  const char *p[] = {token_hash, now};
  osb_db_query(&Q_RT_REVOKE_BY_TOKEN, p, 2, on_done, done_q_new(cb, ud));
}

void osb__store_refresh_purge(int64_t cutoff_ms, osb__done_cb cb, void *ud) {
  char c[24];
  snprintf(c, sizeof(c), "%lld", (long long)cutoff_ms);
  const char *p[] = {c};
  osb_db_query(&Q_RT_PURGE, p, 1, on_done, done_q_new(cb, ud));
}

/* ---- cluster-wide login throttle ---- */

static const osb_db_stmt_t Q_LF_CHECK = {
  .name = "auth_login_fail_check",
  .pg = "SELECT max(at_ms) AS at_ms FROM (SELECT at_ms, row_number() OVER (PARTITION BY key ORDER BY at_ms DESC) AS rn "
        "FROM login_failures WHERE key IN ($1, $2) AND at_ms > $3::bigint) t WHERE rn = $4::bigint",
  .nparams = 4,
  .reads = "login_failures",
};
static const osb_db_stmt_t Q_LF_RECORD = {
  .name = "auth_login_fail_record",
  .pg = "WITH d AS (DELETE FROM login_failures WHERE key IN ($1, $2) AND at_ms < $4::bigint) "
        "INSERT INTO login_failures (key, at_ms) SELECT k, $3::bigint FROM unnest(ARRAY[$1, $2]::text[]) AS k "
        "WHERE k IS NOT NULL",
  .nparams = 4,
  .writes = "login_failures",
};
static const osb_db_stmt_t Q_LF_RESET = {
  .name = "auth_login_fail_reset",
  .pg = "DELETE FROM login_failures WHERE key = $1",
  .nparams = 1,
  .writes = "login_failures",
};

typedef struct wait_q {
  osb__wait_cb cb;
  void *ud;
  int64_t now_ms, window_ms;
} wait_q_t;

static void on_lf_checked(void *ud, int err, const osb_db_result_t *res) {
  wait_q_t *q = ud;
  unsigned wait = 0;
  if (!err && osb_db_nrows(res) && !osb_db_isnull(res, 0, 0)) {
    int64_t left = osb_db_int(res, 0, 0) + q->window_ms - q->now_ms;
    if (left > 0) wait = (unsigned)((left + 999) / 1000);
  }
  q->cb(q->ud, err, wait);
  free(q);
}

void osb__store_login_blocked(const char *ip_key, const char *email_key, int64_t now_ms, int64_t window_ms,
                              unsigned limit, osb__wait_cb cb, void *ud) {
  wait_q_t *q = osb_calloc(1, sizeof(*q));
  q->cb = cb;
  q->ud = ud;
  q->now_ms = now_ms;
  q->window_ms = window_ms;
  char since[24], lim[16];
  snprintf(since, sizeof(since), "%lld", (long long)(now_ms - window_ms));
  snprintf(lim, sizeof(lim), "%u", limit);
  const char *p[] = {ip_key, email_key, since, lim};
  osb_db_query(&Q_LF_CHECK, p, 4, on_lf_checked, q);
}

void osb__store_login_failed(const char *ip_key, const char *email_key, int64_t now_ms, int64_t window_ms,
                             osb__done_cb cb, void *ud) {
  char now[24], old[24];
  snprintf(now, sizeof(now), "%lld", (long long)now_ms);
  snprintf(old, sizeof(old), "%lld", (long long)(now_ms - window_ms));
  const char *p[] = {ip_key, email_key, now, old};
  osb_db_query(&Q_LF_RECORD, p, 4, on_done, done_q_new(cb, ud));
}

void osb__store_login_reset(const char *email_key) {
  const char *p[] = {email_key};
  osb_db_query(&Q_LF_RESET, p, 1, on_done, done_q_new(NULL, NULL));
}
