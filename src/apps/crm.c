/* crm.c: CRM contacts (SPEC §4 CRM).
 *
 *   POST   /api/crm/contacts                    → 201 contact
 *   GET    /api/crm/contacts?q=&owner_id=&cursor=&limit=  → {items, next_cursor}
 *   GET    /api/crm/contacts/:id
 *   PATCH  /api/crm/contacts/:id                → 200 contact
 *   DELETE /api/crm/contacts/:id                → 204
 *   POST   /api/crm/contacts/:id/assign {user_id} → 200 contact
 *
 * Signed-in users (user or admin) only: the service key owns no contacts.
 * A user sees and changes only their own contacts: another user's is 404.
 * An admin sees all (owner_id= filters the list). Assigning changes the
 * owner and stores the new owner's contact.assigned notification in one
 * transaction; the notification is delivered once it committed. */
#include "apps/crm.h"
#include "apps/features.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apputil.h"
#include "apps/notify.h"
#include "auth/auth.h"
#include "db/db.h"
#include "http/http.h"

#define C_COLS "id, owner_id, name, email, phone, company, notes, created_at, updated_at"

static const osb_db_stmt_t Q_INSERT = {
  .name = "crm_contact_insert",
  .pg = "INSERT INTO crm_contacts (id, owner_id, name, email, phone, company, notes, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, COALESCE($7, ''), $8::bigint, $8::bigint) RETURNING " C_COLS,
  .sqlite = "INSERT INTO crm_contacts (id, owner_id, name, email, phone, company, notes, created_at, updated_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE(?7, ''), CAST(?8 AS INTEGER), CAST(?8 AS INTEGER)) RETURNING " C_COLS,
  .nparams = 8,
  .writes = "crm_contacts",
};

/* $2: the owner to scope to, NULL for an admin. */
static const osb_db_stmt_t Q_GET = {
  .name = "crm_contact_get",
  .pg = "SELECT " C_COLS " FROM crm_contacts WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
  .sqlite = "SELECT " C_COLS " FROM crm_contacts WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
  .nparams = 2,
  .reads = "crm_contacts",
};

/* Newest first, keyset on (updated_at, id). $1 owner or NULL, $2 LIKE
 * pattern or NULL, $3/$4 the cursor or NULL, $5 the row limit. */
static const osb_db_stmt_t Q_LIST = {
  .name = "crm_contact_list",
  .pg = "SELECT " C_COLS " FROM crm_contacts WHERE ($1::text IS NULL OR owner_id = $1) "
        "AND ($2::text IS NULL OR name ILIKE $2 OR company ILIKE $2 OR email ILIKE $2) "
        "AND ($3::bigint IS NULL OR (updated_at, id) < ($3::bigint, $4::text)) "
        "ORDER BY updated_at DESC, id DESC LIMIT $5::int",
  .sqlite = "SELECT " C_COLS " FROM crm_contacts WHERE (?1 IS NULL OR owner_id = ?1) "
            "AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\' OR company LIKE ?2 ESCAPE '\\' OR email LIKE ?2 ESCAPE '\\') "
            "AND (?3 IS NULL OR (updated_at, id) < (CAST(?3 AS INTEGER), ?4)) "
            "ORDER BY updated_at DESC, id DESC LIMIT CAST(?5 AS INTEGER)",
  .nparams = 5,
  .reads = "crm_contacts",
};

enum { F_NAME, F_EMAIL, F_PHONE, F_COMPANY, F_NOTES, F_COUNT };
#define SET_PG(col, bit, p) col " = CASE WHEN ($3::int & " #bit ") <> 0 THEN $" #p "::text ELSE " col " END, "
#define SET_SQ(col, bit, p) col " = CASE WHEN (CAST(?3 AS INTEGER) & " #bit ") <> 0 THEN ?" #p " ELSE " col " END, "
static const osb_db_stmt_t Q_PATCH = {
  .name = "crm_contact_patch",
  .pg = "UPDATE crm_contacts SET " SET_PG("name", 1, 4) SET_PG("email", 2, 5) SET_PG("phone", 4, 6)
        SET_PG("company", 8, 7) "notes = CASE WHEN ($3::int & 16) <> 0 THEN COALESCE($8::text, '') ELSE notes END, "
        "updated_at = $9::bigint WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2) RETURNING " C_COLS,
  .sqlite = "UPDATE crm_contacts SET " SET_SQ("name", 1, 4) SET_SQ("email", 2, 5) SET_SQ("phone", 4, 6)
            SET_SQ("company", 8, 7) "notes = CASE WHEN (CAST(?3 AS INTEGER) & 16) <> 0 THEN COALESCE(?8, '') ELSE notes END, "
            "updated_at = CAST(?9 AS INTEGER) WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2) RETURNING " C_COLS,
  .nparams = 9,
  .writes = "crm_contacts",
};

static const osb_db_stmt_t Q_DELETE = {
  .name = "crm_contact_delete",
  .pg = "DELETE FROM crm_contacts WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2)",
  .sqlite = "DELETE FROM crm_contacts WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
  .nparams = 2,
  .writes = "crm_contacts",
};

static const osb_db_stmt_t Q_LOCK = {
  .name = "crm_contact_lock",
  .pg = "SELECT owner_id FROM crm_contacts WHERE id = $1 AND ($2::text IS NULL OR owner_id = $2) FOR UPDATE",
  .sqlite = "SELECT owner_id FROM crm_contacts WHERE id = ?1 AND (?2 IS NULL OR owner_id = ?2)",
  .nparams = 2,
  .reads = "crm_contacts",
};

static const osb_db_stmt_t Q_USER_EXISTS = {
  .name = "crm_user_exists",
  .pg = "SELECT id FROM users WHERE id = $1",
  .nparams = 1,
  .reads = "users",
};

static const osb_db_stmt_t Q_ASSIGN = {
  .name = "crm_contact_assign",
  .pg = "UPDATE crm_contacts SET owner_id = $2, updated_at = $3::bigint WHERE id = $1 RETURNING " C_COLS,
  .sqlite = "UPDATE crm_contacts SET owner_id = ?2, updated_at = CAST(?3 AS INTEGER) WHERE id = ?1 RETURNING " C_COLS,
  .nparams = 3,
  .writes = "crm_contacts",
};

/* ---- shared ---- */

/* The owner a request is scoped to: NULL for an admin (sees all). */
static const char *scope_of(osb_req_t *req) {
  osb_principal_t *p = osb_req_principal(req);
  return p->role == OSB_ROLE_ADMIN ? NULL : p->user_id;
}

typedef struct fields {
  unsigned mask;
  const char *v[F_COUNT];
} fields_t;

static bool email_ok(const char *s) {
  const char *at = strchr(s, '@');
  return at && at != s && at[1] && !strchr(at + 1, '@') && !strpbrk(s, " \t\r\n<>");
}

static void read_fields(osb_app_fields_t *f, json_t *body, fields_t *out) {
  memset(out, 0, sizeof(*out));
  static const struct { const char *name; size_t min, max; bool nullable; } spec[F_COUNT] = {
    {"name", 1, 200, false}, {"email", 0, 254, true}, {"phone", 0, 50, true},
    {"company", 0, 200, true}, {"notes", 0, 10000, true},
  };
  for (int k = 0; k < F_COUNT; k++) {
    const char *s = NULL;
    bool has;
    if (osb_app_get_string(f, body, spec[k].name, spec[k].min, spec[k].max, spec[k].nullable, &s, &has) && has) {
      if (k == F_EMAIL && s && *s && !email_ok(s)) {
        osb_app_field_error(f, "email", "must be an e-mail address");
        continue;
      }
      if (k != F_NAME && k != F_NOTES && s && !*s) s = NULL;   /* "" clears an optional field */
      out->mask |= 1u << k;
      out->v[k] = s;
    }
  }
}

static const char *const contact_fields[] = { "name", "email", "phone", "company", "notes", NULL };

/* The body of a create (`name` required) or a patch (at least one field):
 * true with the fields in out (strings borrowed from body; NULL clears),
 * or false with the errors in f. Pure: no request, no database
 * (tests/fuzz/crm_fuzz.c calls it). */
static bool contact_validate(osb_app_fields_t *f, json_t *body, bool create, fields_t *out) {
  osb_app_reject_unknown(f, body, contact_fields);
  read_fields(f, body, out);
  if (create && !json_object_get(body, "name")) osb_app_field_error(f, "name", "is required");
  if (!create && osb_app_fields_ok(f) && out->mask == 0)
    osb_app_field_error(f, "contact", "give at least one of name, email, phone, company, notes");
  return osb_app_fields_ok(f);
}

/* The body of an assign: {user_id}. Pure, like contact_validate. */
static bool assign_validate(osb_app_fields_t *f, json_t *body, const char **user_id) {
  static const char *const allowed[] = { "user_id", NULL };
  osb_app_reject_unknown(f, body, allowed);
  bool has;
  osb_app_get_string(f, body, "user_id", 1, 64, false, user_id, &has);
  if (!has) osb_app_field_error(f, "user_id", "is required");
  return osb_app_fields_ok(f);
}

static void contact_done(void *ud, int err, const osb_db_result_t *res, int status) {
  osb_req_t *req = ud;
  if (err) osb_app_db_error(req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error(req, 404, "not_found", "no such contact");
  else osb_res_json(req, status, osb_db_row_json(res, 0));
}

static void answer_200(void *ud, int err, const osb_db_result_t *res) { contact_done(ud, err, res, 200); }
static void answer_201(void *ud, int err, const osb_db_result_t *res) { contact_done(ud, err, res, 201); }

/* ---- create ---- */

static void h_create(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_create)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  fields_t v;
  if (!contact_validate(&f, body, true, &v)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  char *id = osb_req_alloc(req, 37);
  osb_db_uuid(id);
  const char *p[8] = { id, osb_req_principal(req)->user_id, v.v[F_NAME], v.v[F_EMAIL], v.v[F_PHONE],
                       v.v[F_COMPANY], v.v[F_NOTES], osb_app_itoa(req, (int64_t)osb_wallclock_ms()) };
  osb_db_query(&Q_INSERT, p, 8, answer_201, req);
}

/* ---- list ---- */

typedef struct list_ctx { osb_req_t *req; int limit; } list_ctx_t;

static void listed(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  osb_app_send_newest_page(c->req, res, c->limit);
}

static void h_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_list)) return;
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  const char *owner = scope_of(req);
  const char *owner_q = osb_req_query(req, "owner_id");
  if (owner_q && *owner_q) {
    if (owner && strcmp(owner, owner_q) != 0) {
      osb_app_fields_t f = {0};
      osb_app_field_error(&f, "owner_id", "only admins may list another user's contacts");
      osb_app_send_invalid(req, &f, "invalid query parameter");
      return;
    }
    owner = owner_q;
  }
  const char *q = osb_req_query(req, "q");
  char *pattern = NULL;
  if (q && *q) {
    size_t n = strlen(q);
    if (n > 100) {
      osb_app_fields_t f = {0};
      osb_app_field_error(&f, "q", "must be at most 100 bytes");
      osb_app_send_invalid(req, &f, "invalid query parameter");
      return;
    }
    pattern = osb_app_like_pattern(req, q);
  }
  const char *cu = NULL, *ci = NULL;
  const char *cursor = osb_req_query(req, "cursor");
  if (cursor && *cursor) {
    if (!osb_app_newest_cursor(req, cursor, &cu, &ci)) return;
  }
  list_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  c->req = req;
  c->limit = limit;
  const char *p[5] = { owner, pattern, cu, ci, osb_app_itoa(req, limit + 1) };
  osb_db_query(&Q_LIST, p, 5, listed, c);
}

/* ---- get, patch, delete ---- */

static void h_get(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_get)) return;
  const char *p[2] = { osb_req_param(req, "id"), scope_of(req) };
  osb_db_query(&Q_GET, p, 2, answer_200, req);
}

static void h_patch(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_patch)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  fields_t v;
  if (!contact_validate(&f, body, false, &v)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  const char *p[9] = { osb_req_param(req, "id"), scope_of(req), osb_app_itoa(req, v.mask), v.v[F_NAME],
                       v.v[F_EMAIL], v.v[F_PHONE], v.v[F_COMPANY], v.v[F_NOTES],
                       osb_app_itoa(req, (int64_t)osb_wallclock_ms()) };
  osb_db_query(&Q_PATCH, p, 9, answer_200, req);
}

static void deleted(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err) osb_app_db_error(req, err);
  else if (osb_db_affected(res) == 0) osb_res_error(req, 404, "not_found", "no such contact");
  else osb_res_send(req, 204, NULL, NULL, 0);
}

static void h_delete(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_delete)) return;
  const char *p[2] = { osb_req_param(req, "id"), scope_of(req) };
  osb_db_query(&Q_DELETE, p, 2, deleted, req);
}

/* ---- assign ----
 * One transaction: lock the contact (scoped to the caller), check the new
 * owner exists, change the owner, store the notification; commit; deliver. */

typedef struct assign_ctx {
  osb_req_t *req;
  osb_db_tx_t *tx;
  const char *contact_id, *new_owner;
  char *old_owner;
  bool user_found;
  json_t *contact;
  json_t *notification;
  int status;           /* 404 reason when nonzero before the commit */
  const char *why;
} assign_ctx_t;

static void assign_free(assign_ctx_t *c) {
  free(c->old_owner);
  c->old_owner = NULL;
  if (c->contact) json_decref(c->contact);
  if (c->notification) json_decref(c->notification);
  c->contact = c->notification = NULL;
}

static void assign_rolled_back(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(err);
  OSB_UNUSED(res);
  assign_ctx_t *c = ud;
  osb_req_t *req = c->req;
  int status = c->status;
  const char *why = c->why;
  assign_free(c);
  if (status == 404) osb_res_error(req, 404, "not_found", "%s", why);
  else osb_app_db_error(req, status);
}

static void assign_abort(assign_ctx_t *c, int status, const char *why) {
  c->status = status;
  c->why = why;
  osb_db_tx_t *tx = c->tx;
  c->tx = NULL;
  osb_db_tx_rollback(tx, assign_rolled_back, c);
}

static void assign_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  assign_ctx_t *c = ud;
  osb_req_t *req = c->req;
  if (err) {
    assign_free(c);
    osb_app_db_error(req, err);
  } else {
    json_t *contact = json_incref(c->contact);
    assign_free(c);
    osb_res_json(req, 200, contact);
  }
}

static void assign_notified(void *ud, int err, json_t *n) {
  assign_ctx_t *c = ud;
  if (err) {
    assign_abort(c, err == OSB_ENOTFOUND ? 404 : err, "no such user");
    return;
  }
  c->notification = json_incref(n);
  osb_db_tx_t *tx = c->tx;
  c->tx = NULL;
  osb_db_tx_commit(tx, assign_committed, c);
}

static void assign_updated(void *ud, int err, const osb_db_result_t *res) {
  assign_ctx_t *c = ud;
  if (err) {
    assign_abort(c, err, NULL);
    return;
  }
  if (osb_db_nrows(res) != 1) {
    assign_abort(c, 404, "no such contact");
    return;
  }
  c->contact = osb_db_row_json(res, 0);
  if (strcmp(c->old_owner, c->new_owner) == 0) {   /* no change: nothing to announce */
    osb_db_tx_t *tx = c->tx;
    c->tx = NULL;
    osb_db_tx_commit(tx, assign_committed, c);
    return;
  }
  const char *name = json_string_value(json_object_get(c->contact, "name"));
  char *title = osb_asprintf("Contact assigned: %s", name ? name : "");
  json_t *data = json_pack("{s:s, s:s}", "contact_id", c->contact_id, "from_user_id", c->old_owner);
  osb_notify_store(c->tx, c->new_owner, "contact.assigned", title, "", data, assign_notified, c);
  json_decref(data);
  free(title);
}

static void assign_user_checked(void *ud, int err, const osb_db_result_t *res) {
  assign_ctx_t *c = ud;
  if (err) {
    assign_abort(c, err, NULL);
    return;
  }
  if (!c->old_owner) {
    assign_abort(c, 404, "no such contact");
    return;
  }
  if (osb_db_nrows(res) == 0) {
    assign_abort(c, 404, "no such user");
    return;
  }
  const char *p[3] = { c->contact_id, c->new_owner, osb_app_itoa(c->req, (int64_t)osb_wallclock_ms()) };
  osb_db_tx_query(c->tx, &Q_ASSIGN, p, 3, assign_updated, c);
}

static void assign_locked(void *ud, int err, const osb_db_result_t *res) {
  assign_ctx_t *c = ud;
  if (!err && osb_db_nrows(res) == 1) c->old_owner = osb_strdup(osb_db_text(res, 0, 0));
}

static void assign_begun(void *ud, int err, osb_db_tx_t *tx) {
  assign_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  c->tx = tx;
  const char *lp[2] = { c->contact_id, scope_of(c->req) };
  osb_db_tx_query(tx, &Q_LOCK, lp, 2, assign_locked, c);
  const char *up[1] = { c->new_owner };
  osb_db_tx_query(tx, &Q_USER_EXISTS, up, 1, assign_user_checked, c);
}

static void h_assign(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_assign)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  assign_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->contact_id = osb_req_param(req, "id");
  osb_app_fields_t f = {0};
  if (!assign_validate(&f, body, &c->new_owner)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  osb_db_tx_begin(assign_begun, c);
}

void osb_crm_routes(void) {
  const osb_db_stmt_t *stmts[] = { &Q_INSERT, &Q_GET, &Q_LIST, &Q_PATCH, &Q_DELETE, &Q_LOCK, &Q_USER_EXISTS, &Q_ASSIGN };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_feature_route("crm", OSB_POST, "/api/crm/contacts", h_create);
  osb_feature_route("crm", OSB_GET, "/api/crm/contacts", h_list);
  osb_feature_route("crm", OSB_GET, "/api/crm/contacts/:id", h_get);
  osb_feature_route("crm", OSB_PATCH, "/api/crm/contacts/:id", h_patch);
  osb_feature_route("crm", OSB_DELETE, "/api/crm/contacts/:id", h_delete);
  osb_feature_route("crm", OSB_POST, "/api/crm/contacts/:id/assign", h_assign);
  osb_notify_routes();
}
