/* chat.c: the conversation routes, message delivery over REST (202,
 * Prefer: wait, SSE), export, and the chat: channel hooks (see chat.h). */
#include "apps/chat_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "apps/apputil.h"
#include "apps/features.h"
#include "auth/auth.h"
#include "core/json.h"
#include "http/http.h"
#include "obs/log.h"
#include "realtime/realtime.h"

#define C_COLS "id, agent_id, app, title, last_seq, created_at, updated_at"
#define EXPORT_MAX_MESSAGES 10000

static const osb_db_stmt_t Q_CONV_INSERT = {
  .name = "chat_conversation_insert",
  .pg = "INSERT INTO conversations (id, user_id, agent_id, app, title, last_seq, created_at, updated_at) "
        "SELECT $1, $2, a.id, a.app, COALESCE($4, ''), 0, $5::bigint, $5::bigint FROM agents a WHERE a.id = $3 "
        "RETURNING " C_COLS,
  .sqlite = "INSERT INTO conversations (id, user_id, agent_id, app, title, last_seq, created_at, updated_at) "
            "SELECT ?1, ?2, a.id, a.app, COALESCE(?4, ''), 0, CAST(?5 AS INTEGER), CAST(?5 AS INTEGER) FROM agents a "
            "WHERE a.id = ?3 RETURNING " C_COLS,
  .nparams = 5,
  .writes = "conversations",
};

static const osb_db_stmt_t Q_CONV_GET = {
  .name = "chat_conversation_get",
  .pg = "SELECT " C_COLS " FROM conversations WHERE id = $1 AND user_id = $2",
  .nparams = 2,
  .reads = "conversations",
};

/* Newest first, keyset on (updated_at, id). */
static const osb_db_stmt_t Q_CONV_LIST = {
  .name = "chat_conversation_list",
  .pg = "SELECT " C_COLS " FROM conversations WHERE user_id = $1 AND ($2::text IS NULL OR app = $2) "
        "AND ($3::bigint IS NULL OR (updated_at, id) < ($3::bigint, $4::text)) "
        "ORDER BY updated_at DESC, id DESC LIMIT $5::int",
  .sqlite = "SELECT " C_COLS " FROM conversations WHERE user_id = ?1 AND (?2 IS NULL OR app = ?2) "
            "AND (?3 IS NULL OR (updated_at, id) < (CAST(?3 AS INTEGER), ?4)) "
            "ORDER BY updated_at DESC, id DESC LIMIT CAST(?5 AS INTEGER)",
  .nparams = 5,
  .reads = "conversations",
};

static const osb_db_stmt_t Q_CONV_DELETE = {
  .name = "chat_conversation_delete",
  .pg = "DELETE FROM conversations WHERE id = $1 AND user_id = $2",
  .nparams = 2,
  .writes = "conversations,messages",
};

/* The channel's stored frames go with the conversation: run after the
 * DELETE in its transaction, it purges only when the row is gone (so a
 * stranger's DELETE, which matched nothing, purges nothing). */
static const osb_db_stmt_t Q_CHANNEL_PURGE = {
  .name = "chat_channel_purge",
  .pg = "DELETE FROM channel_messages WHERE channel = 'chat:' || $1::text "
        "AND NOT EXISTS (SELECT 1 FROM conversations WHERE id = $1::text)",
  .sqlite = "DELETE FROM channel_messages WHERE channel = 'chat:' || ?1 "
            "AND NOT EXISTS (SELECT 1 FROM conversations WHERE id = ?1)",
  .nparams = 1,
  .writes = "channel_messages",
};

static const osb_db_stmt_t Q_MSG_LIST = {
  .name = "chat_message_list",
  .pg = "SELECT " OSB__CHAT_M_COLS " FROM messages WHERE conversation_id = $1 AND seq > $2::bigint "
        "ORDER BY seq LIMIT $3::int",
  .sqlite = "SELECT " OSB__CHAT_M_COLS " FROM messages WHERE conversation_id = ?1 AND seq > CAST(?2 AS INTEGER) "
            "ORDER BY seq LIMIT CAST(?3 AS INTEGER)",
  .nparams = 3,
  .reads = "messages",
};

static const osb_db_stmt_t Q_AGENT_NAME = {
  .name = "chat_agent_name",
  .pg = "SELECT id, name FROM agents WHERE id = $1",
  .nparams = 1,
  .reads = "agents",
};

static const osb_db_stmt_t Q_OWNER = {
  .name = "chat_channel_owner",
  .pg = "SELECT 1 FROM conversations WHERE id = $1 AND user_id = $2",
  .nparams = 2,
  .reads = "conversations",
};

/* ---- shared ---- */

json_t *osb__chat_message_json(const osb_db_result_t *res, size_t row) {
  json_t *o = osb_db_row_json(res, row);
  int fc = osb_db_col(res, "fallback");
  json_object_set_new(o, "fallback", json_boolean(fc >= 0 && osb_db_bool(res, row, (size_t)fc)));
  json_t *meta = json_object_get(o, "metadata");
  if (meta && json_is_string(meta)) {   /* a backend that gave the document back as text */
    json_t *j = json_loads(json_string_value(meta), 0, NULL);
    json_object_set_new(o, "metadata", j ? j : json_null());
  }
  if (!json_object_get(o, "metadata")) json_object_set_new(o, "metadata", json_null());
  return o;
}

static const char *user_of(osb_req_t *req) { return osb_req_principal(req)->user_id; }

static void bad_query(osb_req_t *req, const char *field, const char *why) {
  osb_app_fields_t f = {0};
  osb_app_field_error(&f, field, why);
  osb_app_send_invalid(req, &f, "invalid query parameter");
}

/* ---- conversations ---- */

static void conv_answer(osb_req_t *req, int err, const osb_db_result_t *res, int status) {
  if (err) osb_app_db_error(req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error(req, 404, "not_found", "no such conversation");
  else osb_res_json(req, status, osb_db_row_json(res, 0));
}
static void conv_200(void *ud, int err, const osb_db_result_t *res) { conv_answer(ud, err, res, 200); }

static void conv_created(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (!err && osb_db_nrows(res) == 0) {
    osb_app_fields_t f = {0};
    osb_app_field_error(&f, "agent_id", "no such agent");
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  conv_answer(req, err, res, 201);
}

static void h_conv_create(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_conv_create)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  static const char *const allowed[] = { "agent_id", "title", NULL };
  osb_app_reject_unknown(&f, body, allowed);
  const char *agent = NULL, *title = NULL;
  bool has;
  osb_app_get_string(&f, body, "agent_id", 1, 64, false, &agent, &has);
  if (!has) osb_app_field_error(&f, "agent_id", "is required");
  osb_app_get_string(&f, body, "title", 0, 200, true, &title, &has);
  if (!osb_app_fields_ok(&f)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  char *id = osb_req_alloc(req, 37);
  osb_db_uuid(id);
  const char *p[5] = { id, user_of(req), agent, title, osb_app_itoa(req, (int64_t)osb_wallclock_ms()) };
  osb_db_query(&Q_CONV_INSERT, p, 5, conv_created, req);
}

typedef struct list_ctx { osb_req_t *req; int limit; } list_ctx_t;

static void conv_listed(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  osb_app_send_newest_page(c->req, res, c->limit);
}

static void h_conv_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_conv_list)) return;
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  const char *app = osb_req_query(req, "app");
  if (app && !*app) app = NULL;
  if (app && strcmp(app, "repconnect") && strcmp(app, "canvas")) {
    bad_query(req, "app", "must be repconnect or canvas");
    return;
  }
  const char *cu = NULL, *ci = NULL;
  const char *cursor = osb_req_query(req, "cursor");
  if (cursor && *cursor) {
    if (!osb_app_newest_cursor(req, cursor, &cu, &ci)) return;
  }
  list_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  c->req = req;
  c->limit = limit;
  const char *p[5] = { user_of(req), app, cu, ci, osb_app_itoa(req, limit + 1) };
  osb_db_query(&Q_CONV_LIST, p, 5, conv_listed, c);
}

static void h_conv_get(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_conv_get)) return;
  const char *p[2] = { osb_req_param(req, "id"), user_of(req) };
  osb_db_query(&Q_CONV_GET, p, 2, conv_200, req);
}

typedef struct del_ctx { osb_req_t *req; osb_db_tx_t *tx; bool found; } del_ctx_t;

static void del_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  del_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  if (!c->found) {
    osb_res_error(c->req, 404, "not_found", "no such conversation");
    return;
  }
  osb__chat_conversation_deleted(osb_req_param(c->req, "id"));
  osb_res_send(c->req, 204, NULL, NULL, 0);
}

static void del_deleted(void *ud, int err, const osb_db_result_t *res) {
  del_ctx_t *c = ud;
  if (!err) c->found = osb_db_affected(res) > 0;
}

static void del_begun(void *ud, int err, osb_db_tx_t *tx) {
  del_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  const char *id = osb_req_param(c->req, "id");
  const char *p[2] = { id, user_of(c->req) };
  osb_db_tx_query(tx, &Q_CONV_DELETE, p, 2, del_deleted, c);
  const char *cp[1] = { id };
  osb_db_tx_query(tx, &Q_CHANNEL_PURGE, cp, 1, NULL, NULL);
  c->tx = tx;
  osb_db_tx_commit(tx, del_committed, c);
}

static void h_conv_delete(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_conv_delete)) return;
  del_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  osb_db_tx_begin(del_begun, c);
}

/* ---- messages ---- */

typedef struct msgs_ctx {
  osb_req_t *req;
  int limit;
  int pending;
  int err;
  bool found;
  json_t *items, *next;
} msgs_ctx_t;

static void msgs_finish(msgs_ctx_t *c) {
  json_t *items = c->items, *next = c->next;
  if (c->err) {
    json_decref(items);
    json_decref(next);
    osb_app_db_error(c->req, c->err);
  } else if (!c->found) {
    json_decref(items);
    json_decref(next);
    osb_res_error(c->req, 404, "not_found", "no such conversation");
  } else {
    osb_res_json(c->req, 200, json_pack("{s:o, s:o}", "items", items ? items : json_array(), "next_cursor",
                                        next ? next : json_null()));
  }
}

static void msgs_owner(void *ud, int err, const osb_db_result_t *res) {
  msgs_ctx_t *c = ud;
  if (err && !c->err) c->err = err;
  if (!err) c->found = osb_db_nrows(res) > 0;
  if (--c->pending == 0) msgs_finish(c);
}

static void msgs_rows(void *ud, int err, const osb_db_result_t *res) {
  msgs_ctx_t *c = ud;
  if (err) {
    if (!c->err) c->err = err;
  } else {
    size_t n = osb_db_nrows(res);
    size_t shown = n > (size_t)c->limit ? (size_t)c->limit : n;
    c->items = json_array();
    for (size_t i = 0; i < shown; i++) json_array_append_new(c->items, osb__chat_message_json(res, i));
    if (n > (size_t)c->limit && shown > 0) {
      json_t *pos = json_pack("{s:I}", "s", (json_int_t)osb_db_get_int(res, shown - 1, "seq"));
      char *cur = osb_app_cursor_encode(pos);
      json_decref(pos);
      c->next = json_string(cur);
      free(cur);
    }
  }
  if (--c->pending == 0) msgs_finish(c);
}

static void h_msgs_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_msgs_list)) return;
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  long long after = 0;
  const char *a = osb_req_query(req, "after_seq");
  if (a && *a) {
    char *end;
    after = strtoll(a, &end, 10);
    if (*end || after < 0) {
      bad_query(req, "after_seq", "must be a non-negative integer");
      return;
    }
  }
  const char *cursor = osb_req_query(req, "cursor");
  if (cursor && *cursor) {
    json_t *j = osb_app_cursor_decode(cursor);
    json_t *s = j ? json_object_get(j, "s") : NULL;
    if (!json_is_integer(s) || json_integer_value(s) < 0) {
      if (j) json_decref(j);
      osb_res_error(req, 400, "bad_request", "cursor is malformed");
      return;
    }
    after = json_integer_value(s);
    json_decref(j);
  }
  msgs_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->limit = limit;
  c->pending = 2;
  const char *id = osb_req_param(req, "id");
  const char *op[2] = { id, user_of(req) };
  osb_db_query(&Q_OWNER, op, 2, msgs_owner, c);
  const char *p[3] = { id, osb_app_itoa(req, after), osb_app_itoa(req, limit + 1) };
  osb_db_query(&Q_MSG_LIST, p, 3, msgs_rows, c);
}

/* ---- POST /api/conversations/:id/messages ---- */

typedef enum { MODE_ACCEPTED, MODE_WAIT, MODE_SSE } post_mode_t;

/* What a posting request keeps. In request memory except the wait timer,
 * which lives on the heap until its close callback. */
typedef struct post_req {
  osb_req_t *req;           /* NULL once finished */
  post_mode_t mode;
  int wait_s;
  json_t *message;          /* the stored user message */
  char reply_id[37];
  osb__chat_watch_t *watch;
  struct wait_timer *timer;
} post_req_t;

typedef struct wait_timer { uv_timer_t t; post_req_t *pr; } wait_timer_t;

static void wait_timer_closed(uv_handle_t *h) { free(h->data); }

static void post_req_release(post_req_t *pr) {
  if (pr->watch) {
    osb__chat_unwatch(pr->watch);
    pr->watch = NULL;
  }
  if (pr->timer) {
    pr->timer->pr = NULL;
    uv_close((uv_handle_t *)&pr->timer->t, wait_timer_closed);
    pr->timer = NULL;
  }
  json_decref(pr->message);
  pr->message = NULL;
}

static void answer_accepted(post_req_t *pr) {
  osb_req_t *req = pr->req;
  json_t *body = json_pack("{s:O, s:s}", "message", pr->message, "reply_id", pr->reply_id);
  post_req_release(pr);
  pr->req = NULL;
  osb_res_json(req, 202, body);
}

static void on_req_dispose(osb_req_t *req, void *ud) {
  OSB_UNUSED(req);
  post_req_t *pr = ud;
  post_req_release(pr);
  pr->req = NULL;
}

/* Prefer: wait=N */

static void wait_timeout(uv_timer_t *t) {
  wait_timer_t *wt = t->data;
  if (wt->pr && wt->pr->req) answer_accepted(wt->pr);
}

static void wait_delta(void *ud, const char *text, size_t n) {
  OSB_UNUSED(ud);
  OSB_UNUSED(text);
  OSB_UNUSED(n);
}

static void wait_done(void *ud, int err, json_t *message) {
  post_req_t *pr = ud;
  pr->watch = NULL;
  if (!pr->req) return;
  if (err) {
    /* No reply will come (deleted, shutting down): the 202 says what was stored. */
    answer_accepted(pr);
    return;
  }
  osb_req_t *req = pr->req;
  json_t *body = json_pack("{s:O, s:O}", "message", pr->message, "reply", message);
  post_req_release(pr);
  pr->req = NULL;
  osb_res_json(req, 200, body);
}

static const osb__chat_watch_cbs_t wait_cbs = { wait_delta, wait_done };

static void wait_detached(osb_req_t *req, void *ud) {
  post_req_t *pr = ud;
  /* The client left: the reply goes on without it; finish (discarded). */
  if (pr->req) answer_accepted(pr);
  OSB_UNUSED(req);
}

/* Accept: text/event-stream */

static void sse_end(post_req_t *pr) {
  osb_req_t *req = pr->req;
  post_req_release(pr);
  pr->req = NULL;
  osb_res_stream_end(req);
}

static void sse_event(post_req_t *pr, json_t *ev) {
  if (!pr->req) return;
  size_t n = 0;
  char *s = osb_json_dumps(ev, &n);
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_puts(&b, "data: ");
  osb_buf_append(&b, s, n);
  osb_buf_puts(&b, "\n\n");
  free(s);
  int rc = osb_res_stream_write(pr->req, b.base, b.len);
  osb_buf_free(&b);
  if (rc == OSB_ESLOW || rc == OSB_ECLOSED) {
    /* A reader that stopped reading is cut off; the reply is not affected. */
    if (rc == OSB_ESLOW)
      osb_log(OSB_LOG_INFO, "chat", "SSE reader of reply %s is too slow: stream ended", pr->reply_id);
    sse_end(pr);
  }
}

static void sse_delta(void *ud, const char *text, size_t n) {
  post_req_t *pr = ud;
  json_t *ev = json_pack("{s:s, s:s, s:s%}", "type", "agent.delta", "reply_id", pr->reply_id, "text", text, n);
  if (ev) sse_event(pr, ev);
  json_decref(ev);
}

static void sse_done(void *ud, int err, json_t *message) {
  post_req_t *pr = ud;
  pr->watch = NULL;
  if (!pr->req) return;
  json_t *ev = err ? json_pack("{s:s, s:s, s:s}", "type", "agent.error", "reply_id", pr->reply_id, "code",
                               err == OSB_ENOTFOUND ? "not_found" : "unavailable")
                   : json_pack("{s:s, s:O}", "type", "agent.done", "message", message);
  sse_event(pr, ev);
  json_decref(ev);
  if (!pr->req) return;
  if (osb_res_stream_write(pr->req, "data: [DONE]\n\n", 14) == OSB_ECLOSED) {}
  sse_end(pr);
}

static const osb__chat_watch_cbs_t sse_cbs = { sse_delta, sse_done };

static void sse_detached(osb_req_t *req, void *ud) {
  OSB_UNUSED(req);
  post_req_t *pr = ud;
  if (pr->req) sse_end(pr);
}

static void posted(void *ud, int err, json_t *message, osb__chat_reply_t *reply) {
  post_req_t *pr = ud;
  osb_req_t *req = pr->req;
  if (err) {
    pr->req = NULL;
    if (err == OSB_ENOTFOUND) osb_res_error(req, 404, "not_found", "no such conversation");
    else if (err == OSB_EUNAVAIL) osb_res_error_code(req, err, "messages cannot be stored now (shutting down or the database is unavailable), retry shortly");
    else osb_app_db_error(req, err);
    return;
  }
  pr->message = json_incref(message);
  snprintf(pr->reply_id, sizeof(pr->reply_id), "%s", osb__chat_reply_id(reply));
  osb_req_on_dispose(req, on_req_dispose, pr);
  if (osb_req_detached(req) || pr->mode == MODE_ACCEPTED) {
    answer_accepted(pr);
    return;
  }
  if (pr->mode == MODE_SSE) {
    osb_res_header(req, "Cache-Control", "no-cache");
    osb_res_header(req, "X-Accel-Buffering", "no");
    osb_res_stream_set_cap(req, OSB_CHAT_SSE_CAP);
    osb_res_stream_start(req, 200, "text/event-stream");
    pr->watch = osb__chat_watch(reply, &sse_cbs, pr);
    osb_req_on_detach(req, sse_detached, pr);
    return;
  }
  pr->watch = osb__chat_watch(reply, &wait_cbs, pr);
  wait_timer_t *wt = osb_calloc(1, sizeof(*wt));
  wt->pr = pr;
  uv_timer_init(osb_loop(), &wt->t);
  wt->t.data = wt;
  pr->timer = wt;
  uv_timer_start(&wt->t, wait_timeout, (uint64_t)pr->wait_s * 1000, 0);
  osb_req_on_detach(req, wait_detached, pr);
}

/* Prefer: wait=N (RFC 7240), possibly among other preferences. -1 if absent. */
static int prefer_wait(osb_req_t *req) {
  const char *h = osb_req_header(req, "prefer");
  if (!h) return -1;
  for (const char *s = h; (s = strstr(s, "wait")); s += 4) {
    if (s != h && s[-1] != ' ' && s[-1] != ',' && s[-1] != ';' && s[-1] != '\t') continue;
    const char *v = s + 4;
    while (*v == ' ') v++;
    if (*v != '=') continue;
    v++;
    while (*v == ' ' || *v == '"') v++;
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || n < 0) return -1;
    return n > 60 ? 60 : (int)n;
  }
  return -1;
}

static bool wants_sse(osb_req_t *req) {
  const char *a = osb_req_header(req, "accept");
  return a && strstr(a, "text/event-stream");
}

/* Validate {text, voice?}; NULL text on error (recorded in f). */
static const char *read_post(osb_app_fields_t *f, json_t *body, bool strict, bool *voice) {
  static const char *const allowed[] = { "text", "voice", NULL };
  if (strict) osb_app_reject_unknown(f, body, allowed);
  const char *text = NULL;
  bool has;
  osb_app_get_string(f, body, "text", 1, OSB_CHAT_MAX_TEXT, false, &text, &has);
  if (!has) osb_app_field_error(f, "text", "is required");
  json_t *v = json_object_get(body, "voice");
  *voice = false;
  if (v && !json_is_boolean(v) && !json_is_null(v)) osb_app_field_error(f, "voice", "must be true or false");
  else if (v) *voice = json_is_true(v);
  return osb_app_fields_ok(f) ? text : NULL;
}

static void h_post(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_post)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  bool voice;
  const char *text = read_post(&f, body, true, &voice);
  if (!text) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  post_req_t *pr = osb_req_alloc(req, sizeof(*pr));
  memset(pr, 0, sizeof(*pr));
  pr->req = req;
  int w = prefer_wait(req);
  if (wants_sse(req)) pr->mode = MODE_SSE;
  else if (w > 0) pr->mode = MODE_WAIT;
  pr->wait_s = w;
  osb__chat_post(osb_req_param(req, "id"), user_of(req), text, voice, posted, pr);
}

/* ---- export ---- */

typedef struct export_ctx {
  osb_req_t *req;
  bool md;
  int pending, err;
  json_t *conv, *agent, *messages;
} export_ctx_t;

static void iso_time(char *out, size_t n, int64_t ms) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void export_send(export_ctx_t *c) {
  osb_req_t *req = c->req;
  const char *id = json_string_value(json_object_get(c->conv, "id"));
  char disp[128];
  snprintf(disp, sizeof(disp), "attachment; filename=\"conversation-%s.%s\"", id, c->md ? "md" : "json");
  osb_res_header(req, "Content-Disposition", disp);
  char now[40];
  iso_time(now, sizeof(now), (int64_t)osb_wallclock_ms());
  if (!c->md) {
    json_t *body = json_pack("{s:O, s:O, s:O, s:s}", "conversation", c->conv, "agent", c->agent, "messages",
                             c->messages, "exported_at", now);
    size_t n = 0;
    char *s = osb_json_dumps(body, &n);
    json_decref(body);
    osb_res_send(req, 200, "application/json", s, n);
    free(s);
    return;
  }
  const char *agent_name = json_string_value(json_object_get(c->agent, "name"));
  const char *title = json_string_value(json_object_get(c->conv, "title"));
  osb_buf_t b = OSB_BUF_INIT;
  if (title && *title) osb_buf_printf(&b, "# %s\n\n", title);
  else osb_buf_printf(&b, "# Conversation with %s\n\n", agent_name ? agent_name : "an agent");
  osb_buf_printf(&b, "- Agent: %s\n- Conversation: %s\n- Exported: %s\n", agent_name ? agent_name : "(deleted)", id,
                 now);
  size_t i;
  json_t *m;
  json_array_foreach(c->messages, i, m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    char when[40];
    iso_time(when, sizeof(when), json_integer_value(json_object_get(m, "created_at")));
    bool user = role && !strcmp(role, "user");
    osb_buf_printf(&b, "\n## %s (#%lld, %s)", user ? "You" : (agent_name ? agent_name : "Assistant"),
                   (long long)json_integer_value(json_object_get(m, "seq")), when);
    if (json_is_true(json_object_get(m, "fallback"))) osb_buf_puts(&b, " (from the knowledge base)");
    const char *st = json_string_value(json_object_get(m, "status"));
    if (st && !strcmp(st, "error")) osb_buf_puts(&b, " (incomplete)");
    osb_buf_printf(&b, "\n\n%s\n", json_string_value(json_object_get(m, "content")));
    const char *audio = json_string_value(json_object_get(m, "audio_url"));
    if (audio) osb_buf_printf(&b, "\n[audio](%s)\n", audio);
  }
  osb_res_send(req, 200, "text/markdown; charset=utf-8", b.base, b.len);
  osb_buf_free(&b);
}

static void export_finish(export_ctx_t *c) {
  if (c->err) osb_app_db_error(c->req, c->err);
  else export_send(c);
  json_decref(c->conv);
  json_decref(c->agent);
  json_decref(c->messages);
}

static void export_agent(void *ud, int err, const osb_db_result_t *res) {
  export_ctx_t *c = ud;
  if (err) c->err = err;
  else c->agent = osb_db_nrows(res) ? osb_db_row_json(res, 0) : json_pack("{s:n, s:n}", "id", "name");
  if (--c->pending == 0) export_finish(c);
}

static void export_msgs(void *ud, int err, const osb_db_result_t *res) {
  export_ctx_t *c = ud;
  if (err) {
    c->err = err;
  } else {
    c->messages = json_array();
    for (size_t i = 0; i < osb_db_nrows(res); i++) json_array_append_new(c->messages, osb__chat_message_json(res, i));
  }
  if (--c->pending == 0) export_finish(c);
}

static void export_conv(void *ud, int err, const osb_db_result_t *res) {
  export_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  if (osb_db_nrows(res) == 0) {
    osb_res_error(c->req, 404, "not_found", "no such conversation");
    return;
  }
  c->conv = osb_db_row_json(res, 0);
  c->pending = 2;
  const char *ap[1] = { json_string_value(json_object_get(c->conv, "agent_id")) };
  osb_db_query(&Q_AGENT_NAME, ap, 1, export_agent, c);
  char lim[16];
  snprintf(lim, sizeof(lim), "%d", EXPORT_MAX_MESSAGES);
  const char *mp[3] = { osb_req_param(c->req, "id"), "0", lim };
  osb_db_query(&Q_MSG_LIST, mp, 3, export_msgs, c);
}

static void h_export(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_USER, h_export)) return;
  const char *fmt = osb_req_query(req, "format");
  if (fmt && *fmt && strcmp(fmt, "json") && strcmp(fmt, "md")) {
    bad_query(req, "format", "must be json or md");
    return;
  }
  export_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  c->md = fmt && !strcmp(fmt, "md");
  const char *p[2] = { osb_req_param(req, "id"), user_of(req) };
  osb_db_query(&Q_CONV_GET, p, 2, export_conv, c);
}

/* ---- agents status ---- */

static void h_status(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_NONE, h_status)) return;
  osb_res_json(req, 200, osb__chat_status_json());
}

/* ---- the chat: channel ---- */

typedef struct check_ctx { osb_rt_check_cb cb; void *ctx; } check_ctx_t;

static void owner_checked(void *ud, int err, const osb_db_result_t *res) {
  check_ctx_t *c = ud;
  c->cb(c->ctx, err, !err && osb_db_nrows(res) > 0);
  free(c);
}

static void chat_access(void *ud, const char *channel, const char *suffix, const osb_rt_who_t *who,
                        osb_rt_check_cb cb, void *ctx) {
  OSB_UNUSED(ud);
  OSB_UNUSED(channel);
  if (who->role == OSB_ROLE_SERVICE) {
    cb(ctx, 0, true);
    return;
  }
  if (!who->user_id || !suffix || !*suffix || strlen(suffix) > 64) {
    cb(ctx, 0, false);
    return;
  }
  check_ctx_t *c = osb_calloc(1, sizeof(*c));
  c->cb = cb;
  c->ctx = ctx;
  const char *p[2] = { suffix, who->user_id };
  osb_db_query(&Q_OWNER, p, 2, owner_checked, c);
}

typedef struct hook_ctx { osb_rt_publish_cb cb; void *ctx; } hook_ctx_t;

static void hook_posted(void *ud, int err, json_t *message, osb__chat_reply_t *reply) {
  OSB_UNUSED(reply);
  hook_ctx_t *h = ud;
  if (err == OSB_ENOTFOUND) err = OSB_EDENIED;
  h->cb(h->ctx, err, err ? 0 : (uint64_t)json_integer_value(json_object_get(message, "seq")));
  free(h);
}

static void chat_publish(void *ud, const char *channel, const osb_rt_who_t *who, const json_t *data,
                         osb_rt_publish_cb cb, void *ctx) {
  OSB_UNUSED(ud);
  osb_app_fields_t f = {0};
  bool voice = false;
  /* Unknown members of a client message are ignored (SPEC §5). */
  const char *text = json_is_object(data) ? read_post(&f, (json_t *)data, false, &voice) : NULL;
  if (f.fields) json_decref(f.fields);
  if (!text || !who->user_id || who->role == OSB_ROLE_SERVICE) {
    cb(ctx, !text ? OSB_EINVAL : OSB_EDENIED, 0);
    return;
  }
  hook_ctx_t *h = osb_calloc(1, sizeof(*h));
  h->cb = cb;
  h->ctx = ctx;
  osb__chat_post(channel + 5, who->user_id, text, voice, hook_posted, h);
}

void osb_chat_routes(void) {
  const osb_db_stmt_t *stmts[] = { &Q_CONV_INSERT, &Q_CONV_GET, &Q_CONV_LIST, &Q_CONV_DELETE, &Q_CHANNEL_PURGE,
                                   &Q_MSG_LIST, &Q_AGENT_NAME, &Q_OWNER };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb__chat_reply_init();
  osb_rt_set_access_check("chat", chat_access, NULL);
  osb_rt_set_publish_hook("chat", chat_publish, NULL);
  osb_feature_route("agents", OSB_GET, "/api/agents/status", h_status);
  osb_feature_route("agents", OSB_POST, "/api/conversations", h_conv_create);
  osb_feature_route("agents", OSB_GET, "/api/conversations", h_conv_list);
  osb_feature_route("agents", OSB_GET, "/api/conversations/:id", h_conv_get);
  osb_feature_route("agents", OSB_DELETE, "/api/conversations/:id", h_conv_delete);
  osb_feature_route("agents", OSB_GET, "/api/conversations/:id/messages", h_msgs_list);
  osb_feature_route("agents", OSB_POST, "/api/conversations/:id/messages", h_post);
  osb_feature_route("agents", OSB_GET, "/api/conversations/:id/export", h_export);
}
