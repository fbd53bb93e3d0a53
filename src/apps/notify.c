/* notify.c: notifications, stored first, then delivered (see notify.h). */
#include "apps/notify.h"
#include "db/db.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apputil.h"
#include "core/json.h"
#include "auth/auth.h"
#include "http/http.h"
#include "obs/log.h"
#include "realtime/realtime.h"

#define N_COLS "id, user_id, seq, kind, title, body, data, read_at, created_at"

/* The user's next seq. The UPDATE takes the user row's lock (PostgreSQL) or
 * runs on the one writer (SQLite), so concurrent inserts for one user get
 * consecutive seqs in commit order. */
static const osb_db_stmt_t Q_SEQ = {
  .name = "notify_seq_next",
  .pg = "UPDATE users SET notify_seq = notify_seq + 1 WHERE id = $1",
  .nparams = 1,
  .writes = "users",
};

static const osb_db_stmt_t Q_INSERT = {
  .name = "notify_insert",
  .pg = "INSERT INTO notifications (id, user_id, seq, kind, title, body, data, created_at) "
        "SELECT $1, id, notify_seq, $3, $4, $5, $6::jsonb, $7::bigint FROM users WHERE id = $2 RETURNING " N_COLS,
  .sqlite = "INSERT INTO notifications (id, user_id, seq, kind, title, body, data, created_at) "
            "SELECT ?1, id, notify_seq, ?3, ?4, ?5, ?6, CAST(?7 AS INTEGER) FROM users WHERE id = ?2 RETURNING " N_COLS,
  .nparams = 7,
  .writes = "notifications",
};

/* Lists: newest first without after_seq (keyset on seq), ascending with it. */
static const osb_db_stmt_t Q_LIST_DESC = {
  .name = "notify_list_desc",
  .pg = "SELECT " N_COLS " FROM notifications WHERE user_id = $1 AND ($2::boolean = false OR read_at IS NULL) "
        "AND ($3::bigint IS NULL OR seq < $3::bigint) ORDER BY seq DESC LIMIT $4::int",
  .sqlite = "SELECT " N_COLS " FROM notifications WHERE user_id = ?1 AND (CAST(?2 AS INTEGER) = 0 OR read_at IS NULL) "
            "AND (?3 IS NULL OR seq < CAST(?3 AS INTEGER)) ORDER BY seq DESC LIMIT CAST(?4 AS INTEGER)",
  .nparams = 4,
  .reads = "notifications",
};

static const osb_db_stmt_t Q_LIST_ASC = {
  .name = "notify_list_asc",
  .pg = "SELECT " N_COLS " FROM notifications WHERE user_id = $1 AND ($2::boolean = false OR read_at IS NULL) "
        "AND seq > $3::bigint ORDER BY seq ASC LIMIT $4::int",
  .sqlite = "SELECT " N_COLS " FROM notifications WHERE user_id = ?1 AND (CAST(?2 AS INTEGER) = 0 OR read_at IS NULL) "
            "AND seq > CAST(?3 AS INTEGER) ORDER BY seq ASC LIMIT CAST(?4 AS INTEGER)",
  .nparams = 4,
  .reads = "notifications",
};

static const osb_db_stmt_t Q_UNREAD = {
  .name = "notify_unread_count",
  .pg = "SELECT count(*) AS n FROM notifications WHERE user_id = $1 AND read_at IS NULL",
  .nparams = 1,
  .reads = "notifications",
};

static const osb_db_stmt_t Q_READ_ONE = {
  .name = "notify_read_one",
  .pg = "UPDATE notifications SET read_at = $3::bigint WHERE id = $1 AND user_id = $2 AND read_at IS NULL RETURNING id",
  .sqlite = "UPDATE notifications SET read_at = CAST(?3 AS INTEGER) WHERE id = ?1 AND user_id = ?2 AND read_at IS NULL RETURNING id",
  .nparams = 3,
  .writes = "notifications",
};

static const osb_db_stmt_t Q_EXISTS = {
  .name = "notify_exists",
  .pg = "SELECT id FROM notifications WHERE id = $1 AND user_id = $2",
  .nparams = 2,
  .reads = "notifications",
};

static const osb_db_stmt_t Q_READ_ALL = {
  .name = "notify_read_all",
  .pg = "UPDATE notifications SET read_at = $2::bigint WHERE user_id = $1 AND read_at IS NULL RETURNING id",
  .sqlite = "UPDATE notifications SET read_at = CAST(?2 AS INTEGER) WHERE user_id = ?1 AND read_at IS NULL RETURNING id",
  .nparams = 2,
  .writes = "notifications",
};

/* ---- the row as JSON ---- */

static json_t *row_json(const osb_db_result_t *res, size_t i) {
  json_t *o = osb_db_row_json(res, i);
  json_t *read_at = json_object_get(o, "read_at");
  json_object_set_new(o, "read", json_boolean(read_at && !json_is_null(read_at)));
  if (!json_object_get(o, "data")) json_object_set_new(o, "data", json_null());
  return o;
}

/* ---- storing ---- */

typedef struct store_op {
  osb_db_tx_t *tx;
  osb_notify_stored_cb cb;
  void *ud;
  bool user_found;
} store_op_t;

static void seq_taken(void *ud, int err, const osb_db_result_t *res) {
  store_op_t *op = ud;
  if (!err) op->user_found = osb_db_affected(res) == 1;
}

static json_t *event_of(const json_t *n) {
  return json_pack("{s:s, s:O}", "type", "notification", "notification", (json_t *)n);
}

static void inserted(void *ud, int err, const osb_db_result_t *res) {
  store_op_t *op = ud;
  if (!err && (!op->user_found || osb_db_nrows(res) != 1)) err = OSB_ENOTFOUND;
  if (err) {
    op->cb(op->ud, err, NULL);
    free(op);
    return;
  }
  /* The event carries the notification's seq, which is the channel seq:
   * it is stored on notify:<user> in this transaction and delivered after
   * the commit (an error here aborts the transaction; the commit says so). */
  json_t *n = row_json(res, 0);
  const char *uid = json_string_value(json_object_get(n, "user_id"));
  char *channel = osb_asprintf("notify:%s", uid ? uid : "");
  json_t *ev = event_of(n);
  osb_rt_tx_publish_at(op->tx, channel, (uint64_t)json_integer_value(json_object_get(n, "seq")), ev, NULL, NULL);
  json_decref(ev);
  free(channel);
  op->cb(op->ud, 0, n);
  json_decref(n);
  free(op);
}

void osb_notify_store(osb_db_tx_t *tx, const char *user_id, const char *kind, const char *title,
                      const char *body, const json_t *data, osb_notify_stored_cb cb, void *ud) {
  store_op_t *op = osb_calloc(1, sizeof(*op));
  op->tx = tx;
  op->cb = cb;
  op->ud = ud;
  char id[37], now[24];
  osb_db_uuid(id);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  char *djson = data ? osb_json_dumps(data, NULL) : NULL;
  const char *sp[1] = { user_id };
  osb_db_tx_query(tx, &Q_SEQ, sp, 1, seq_taken, op);
  const char *ip[7] = { id, user_id, kind, title ? title : "", body ? body : "", djson, now };
  osb_db_tx_query(tx, &Q_INSERT, ip, 7, inserted, op);
  free(djson);
}

/* ---- POST /api/notifications ---- */

/* What a POST stores (strings and data borrowed from the body). */
typedef struct notify_in {
  const char *user_id, *kind, *title, *body;   /* body may be NULL */
  json_t *data;                                /* an object or NULL */
} notify_in_t;

/* The body {user_id, kind, title, body?, data?}: true with the fields in
 * in, or false with the errors in f. Pure: no request, no database
 * (tests/fuzz/crm_fuzz.c calls it). */
static bool create_validate(osb_app_fields_t *f, json_t *body, notify_in_t *in) {
  memset(in, 0, sizeof(*in));
  static const char *const allowed[] = { "user_id", "kind", "title", "body", "data", NULL };
  osb_app_reject_unknown(f, body, allowed);
  bool has;
  osb_app_get_string(f, body, "user_id", 1, 64, false, &in->user_id, &has);
  if (!has) osb_app_field_error(f, "user_id", "is required");
  osb_app_get_string(f, body, "kind", 1, 64, false, &in->kind, &has);
  if (!has) osb_app_field_error(f, "kind", "is required");
  osb_app_get_string(f, body, "title", 1, 200, false, &in->title, &has);
  if (!has) osb_app_field_error(f, "title", "is required");
  osb_app_get_string(f, body, "body", 0, 4000, true, &in->body, &has);
  json_t *data = json_object_get(body, "data");
  if (data && !json_is_object(data) && !json_is_null(data)) osb_app_field_error(f, "data", "must be an object");
  else if (data && json_is_object(data)) in->data = data;
  return osb_app_fields_ok(f);
}

typedef struct create_ctx {
  osb_req_t *req;
  osb_db_tx_t *tx;
  notify_in_t in;
  json_t *n;
} create_ctx_t;

static void created_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  create_ctx_t *c = ud;
  json_t *n = c->n;
  c->n = NULL;
  if (err) {
    json_decref(n);
    osb_app_db_error(c->req, err);
  } else {
    osb_res_json(c->req, 201, n);
  }
}

static void created_rolled_back(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(err);
  OSB_UNUSED(res);
  create_ctx_t *c = ud;
  osb_res_error(c->req, 404, "not_found", "no such user");
}

static void create_stored(void *ud, int err, json_t *n) {
  create_ctx_t *c = ud;
  osb_db_tx_t *tx = c->tx;
  c->tx = NULL;
  if (err == OSB_ENOTFOUND) {
    osb_db_tx_rollback(tx, created_rolled_back, c);
  } else if (err) {
    osb_db_tx_rollback(tx, NULL, NULL);
    osb_app_db_error(c->req, err);
  } else {
    c->n = json_incref(n);
    osb_db_tx_commit(tx, created_committed, c);
  }
}

static void create_begun(void *ud, int err, osb_db_tx_t *tx) {
  create_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  c->tx = tx;
  osb_notify_store(tx, c->in.user_id, c->in.kind, c->in.title, c->in.body, c->in.data, create_stored, c);
}

static void h_create(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_SERVICE, h_create)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  create_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  osb_app_fields_t f = {0};
  if (!create_validate(&f, body, &c->in)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  osb_db_tx_begin(create_begun, c);
}

/* ---- GET /api/notifications ---- */

typedef struct list_ctx {
  osb_req_t *req;
  int limit;
  bool asc;
  json_t *items;
  json_t *next;
  int err;
  int pending;
  int64_t unread;
} list_ctx_t;

static void list_finish(list_ctx_t *c) {
  json_t *items = c->items, *next = c->next;
  c->items = c->next = NULL;
  if (c->err) {
    if (items) json_decref(items);
    if (next) json_decref(next);
    osb_app_db_error(c->req, c->err);
  } else {
    osb_res_json(c->req, 200, json_pack("{s:o, s:o, s:I}", "items", items ? items : json_array(), "next_cursor",
                                        next ? next : json_null(), "unread_count", (json_int_t)c->unread));
  }
}

static void list_counted(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *c = ud;
  if (err && !c->err) c->err = err;
  c->unread = err ? 0 : osb_db_int(res, 0, 0);
  if (--c->pending == 0) list_finish(c);
}

static void list_rows(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *c = ud;
  if (err) {
    if (!c->err) c->err = err;
  } else {
    size_t n = osb_db_nrows(res);
    size_t shown = n > (size_t)c->limit ? (size_t)c->limit : n;
    c->items = json_array();
    for (size_t i = 0; i < shown; i++) json_array_append_new(c->items, row_json(res, i));
    if (n > (size_t)c->limit && shown > 0) {
      json_t *pos = json_pack("{s:I, s:b}", "s", (json_int_t)osb_db_get_int(res, shown - 1, "seq"), "a", c->asc);
      char *cur = osb_app_cursor_encode(pos);
      json_decref(pos);
      c->next = json_string(cur);
      free(cur);
    }
  }
  if (--c->pending == 0) list_finish(c);
}

static void h_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_list)) return;
  osb_principal_t *p = osb_req_principal(req);
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  int unread = osb_app_query_bool(req, "unread");
  if (unread < 0) return;
  list_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->limit = limit;
  const char *after = osb_req_query(req, "after_seq");
  const char *cursor = osb_req_query(req, "cursor");
  const char *pos = NULL;
  if (after && *after) {
    char *end;
    long long v = strtoll(after, &end, 10);
    if (*end || v < 0) {
      osb_app_fields_t f = {0};
      osb_app_field_error(&f, "after_seq", "must be a non-negative integer");
      osb_app_send_invalid(req, &f, "invalid query parameter");
      return;
    }
    c->asc = true;
    pos = osb_app_itoa(req, v);
  }
  if (cursor && *cursor) {
    json_t *j = osb_app_cursor_decode(cursor);
    json_t *s = j ? json_object_get(j, "s") : NULL;
    json_t *a = j ? json_object_get(j, "a") : NULL;
    if (!json_is_integer(s) || !json_is_boolean(a) || (after && *after && !json_is_true(a))) {
      if (j) json_decref(j);
      osb_res_error(req, 400, "bad_request", "cursor is malformed or belongs to another listing");
      return;
    }
    c->asc = json_is_true(a);
    pos = osb_app_itoa(req, json_integer_value(s));
    json_decref(j);
  }
  if (c->asc && !pos) pos = "0";
  const char *lim = osb_app_itoa(req, limit + 1);
  const char *params[4] = { p->user_id, unread ? "true" : "false", pos, lim };
  if (osb_db_backend() && strcmp(osb_db_backend(), "sqlite") == 0) params[1] = unread ? "1" : "0";
  c->pending = 2;
  osb_db_query(c->asc ? &Q_LIST_ASC : &Q_LIST_DESC, params, 4, list_rows, c);
  const char *up[1] = { p->user_id };
  osb_db_query(&Q_UNREAD, up, 1, list_counted, c);
}

/* ---- reads ---- */

typedef struct read_ctx {
  osb_req_t *req;
  char *user_id;
  json_t *ids;
  bool exists;
} read_ctx_t;

static void read_counted(void *ud, int err, const osb_db_result_t *res) {
  read_ctx_t *c = ud;
  int64_t unread = err ? -1 : osb_db_int(res, 0, 0);
  if (json_array_size(c->ids) > 0 && unread >= 0) {
    char *channel = osb_asprintf("notify:%s", c->user_id);
    json_t *ev = json_pack("{s:s, s:O, s:I}", "type", "notification.read", "ids", c->ids, "unread_count",
                           (json_int_t)unread);
    osb_rt_publish_transient(channel, ev);
    json_decref(ev);
    free(channel);
  }
  json_int_t updated = (json_int_t)json_array_size(c->ids);
  json_decref(c->ids);
  free(c->user_id);
  osb_res_json(c->req, 200, json_pack("{s:I}", "updated", updated));
}

static void read_done(void *ud, int err, const osb_db_result_t *res) {
  read_ctx_t *c = ud;
  if (err) {
    free(c->user_id);
    osb_app_db_error(c->req, err);
    return;
  }
  c->ids = json_array();
  for (size_t i = 0; i < osb_db_nrows(res); i++) json_array_append_new(c->ids, json_string(osb_db_text(res, i, 0)));
  const char *up[1] = { c->user_id };
  osb_db_query(&Q_UNREAD, up, 1, read_counted, c);
}

static void read_checked(void *ud, int err, const osb_db_result_t *res) {
  read_ctx_t *c = ud;
  if (err) {
    free(c->user_id);
    osb_app_db_error(c->req, err);
    return;
  }
  if (osb_db_nrows(res) == 0) {
    free(c->user_id);
    osb_res_error(c->req, 404, "not_found", "no such notification");
    return;
  }
  const char *p[3] = { osb_req_param(c->req, "id"), c->user_id, osb_app_itoa(c->req, (int64_t)osb_wallclock_ms()) };
  osb_db_query(&Q_READ_ONE, p, 3, read_done, c);
}

static read_ctx_t *read_ctx(osb_req_t *req) {
  read_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->user_id = osb_strdup(osb_req_principal(req)->user_id);
  return c;
}

static void h_read(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_read)) return;
  read_ctx_t *c = read_ctx(req);
  const char *p[2] = { osb_req_param(req, "id"), c->user_id };
  osb_db_query(&Q_EXISTS, p, 2, read_checked, c);
}

static void h_read_all(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_read_all)) return;
  read_ctx_t *c = read_ctx(req);
  const char *p[2] = { c->user_id, osb_app_itoa(req, (int64_t)osb_wallclock_ms()) };
  osb_db_query(&Q_READ_ALL, p, 2, read_done, c);
}

void osb_notify_routes(void) {
  const osb_db_stmt_t *stmts[] = { &Q_SEQ, &Q_INSERT, &Q_LIST_DESC, &Q_LIST_ASC,
                                   &Q_UNREAD, &Q_READ_ONE, &Q_EXISTS, &Q_READ_ALL };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_route(OSB_POST, "/api/notifications", h_create);
  osb_route(OSB_GET, "/api/notifications", h_list);
  osb_route(OSB_POST, "/api/notifications/read-all", h_read_all);
  osb_route(OSB_POST, "/api/notifications/:id/read", h_read);
}
