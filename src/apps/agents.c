/* agents.c: agents and knowledge entries (see agents.h). */
#include "apps/agents.h"

#include "db/db.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apputil.h"
#include "apps/features.h"
#include "auth/auth.h"
#include "http/http.h"

#define A_COLS "id, app, name, description, system_prompt, voice_id, model, created_at, updated_at"
#define K_COLS "id, agent_id, title, body, created_at"

static const osb_db_stmt_t Q_AGENT_LIST = {
  .name = "agents_list",
  .pg = "SELECT " A_COLS " FROM agents WHERE ($1::text IS NULL OR app = $1) "
        "AND ($2::text IS NULL OR (app, name, id) > ($2::text, $3::text, $4::text)) "
        "ORDER BY app, name, id LIMIT $5::int",
  .sqlite = "SELECT " A_COLS " FROM agents WHERE (?1 IS NULL OR app = ?1) "
            "AND (?2 IS NULL OR (app, name, id) > (?2, ?3, ?4)) "
            "ORDER BY app, name, id LIMIT CAST(?5 AS INTEGER)",
  .nparams = 5,
  .reads = "agents",
  .cacheable = true,
};

static const osb_db_stmt_t Q_AGENT_GET = {
  .name = "agents_get",
  .pg = "SELECT " A_COLS " FROM agents WHERE id = $1",
  .nparams = 1,
  .reads = "agents",
  .cacheable = true,
};

static const osb_db_stmt_t Q_AGENT_INSERT = {
  .name = "agents_insert",
  .pg = "INSERT INTO agents (id, app, name, description, system_prompt, voice_id, model, created_at, updated_at) "
        "VALUES ($1, $2, $3, COALESCE($4, ''), COALESCE($5, ''), $6, $7, $8::bigint, $8::bigint) RETURNING " A_COLS,
  .sqlite = "INSERT INTO agents (id, app, name, description, system_prompt, voice_id, model, created_at, updated_at) "
            "VALUES (?1, ?2, ?3, COALESCE(?4, ''), COALESCE(?5, ''), ?6, ?7, CAST(?8 AS INTEGER), CAST(?8 AS INTEGER)) "
            "RETURNING " A_COLS,
  .nparams = 8,
  .writes = "agents",
};

enum { AF_APP, AF_NAME, AF_DESCRIPTION, AF_SYSTEM_PROMPT, AF_VOICE_ID, AF_MODEL, AF_COUNT };
#define SET_PG(col, bit, p) col " = CASE WHEN ($2::int & " #bit ") <> 0 THEN $" #p "::text ELSE " col " END, "
#define SET_SQ(col, bit, p) col " = CASE WHEN (CAST(?2 AS INTEGER) & " #bit ") <> 0 THEN ?" #p " ELSE " col " END, "
static const osb_db_stmt_t Q_AGENT_PATCH = {
  .name = "agents_patch",
  .pg = "UPDATE agents SET " SET_PG("app", 1, 3) SET_PG("name", 2, 4)
        "description = CASE WHEN ($2::int & 4) <> 0 THEN COALESCE($5::text, '') ELSE description END, "
        "system_prompt = CASE WHEN ($2::int & 8) <> 0 THEN COALESCE($6::text, '') ELSE system_prompt END, "
        SET_PG("voice_id", 16, 7) SET_PG("model", 32, 8) "updated_at = $9::bigint WHERE id = $1 RETURNING " A_COLS,
  .sqlite = "UPDATE agents SET " SET_SQ("app", 1, 3) SET_SQ("name", 2, 4)
            "description = CASE WHEN (CAST(?2 AS INTEGER) & 4) <> 0 THEN COALESCE(?5, '') ELSE description END, "
            "system_prompt = CASE WHEN (CAST(?2 AS INTEGER) & 8) <> 0 THEN COALESCE(?6, '') ELSE system_prompt END, "
            SET_SQ("voice_id", 16, 7) SET_SQ("model", 32, 8) "updated_at = CAST(?9 AS INTEGER) WHERE id = ?1 RETURNING " A_COLS,
  .nparams = 9,
  .writes = "agents",
};

static const osb_db_stmt_t Q_K_LIST = {
  .name = "agents_knowledge_list",
  .pg = "SELECT " K_COLS " FROM agent_knowledge WHERE agent_id = $1 "
        "AND ($2::text IS NULL OR (title, id) > ($2::text, $3::text)) ORDER BY title, id LIMIT $4::int",
  .sqlite = "SELECT " K_COLS " FROM agent_knowledge WHERE agent_id = ?1 "
            "AND (?2 IS NULL OR (title, id) > (?2, ?3)) ORDER BY title, id LIMIT CAST(?4 AS INTEGER)",
  .nparams = 4,
  .reads = "agent_knowledge",
};

/* db.h's example: the best matches first (ts_rank / bm25), then by id. */
static const osb_db_stmt_t Q_K_SEARCH = {
  .name = "agents_knowledge_search",
  .pg = "SELECT k.id, k.agent_id, k.title, k.body, k.created_at FROM agent_knowledge k, to_tsquery('english', $2) q "
        "WHERE k.agent_id = $1 AND k.tsv @@ q ORDER BY ts_rank(k.tsv, q) DESC, k.id LIMIT $3::int",
  .sqlite = "SELECT k.id, k.agent_id, k.title, k.body, k.created_at FROM agent_knowledge_fts f "
            "JOIN agent_knowledge k ON k.rowid = f.rowid WHERE agent_knowledge_fts MATCH ?2 AND k.agent_id = ?1 "
            "ORDER BY bm25(agent_knowledge_fts), k.id LIMIT CAST(?3 AS INTEGER)",
  .nparams = 3,
  .reads = "agent_knowledge",
};

static const osb_db_stmt_t Q_K_GET = {
  .name = "agents_knowledge_get",
  .pg = "SELECT " K_COLS " FROM agent_knowledge WHERE id = $1 AND agent_id = $2",
  .nparams = 2,
  .reads = "agent_knowledge",
};

static const osb_db_stmt_t Q_K_INSERT = {
  .name = "agents_knowledge_insert",
  .pg = "INSERT INTO agent_knowledge (id, agent_id, title, body, created_at) "
        "SELECT $1, id, $3, $4, $5::bigint FROM agents WHERE id = $2 RETURNING " K_COLS,
  .sqlite = "INSERT INTO agent_knowledge (id, agent_id, title, body, created_at) "
            "SELECT ?1, id, ?3, ?4, CAST(?5 AS INTEGER) FROM agents WHERE id = ?2 RETURNING " K_COLS,
  .nparams = 5,
  .writes = "agent_knowledge",
};

static const osb_db_stmt_t Q_K_PATCH = {
  .name = "agents_knowledge_patch",
  .pg = "UPDATE agent_knowledge SET title = COALESCE($3::text, title), body = COALESCE($4::text, body) "
        "WHERE id = $1 AND agent_id = $2 RETURNING " K_COLS,
  .sqlite = "UPDATE agent_knowledge SET title = COALESCE(?3, title), body = COALESCE(?4, body) "
            "WHERE id = ?1 AND agent_id = ?2 RETURNING " K_COLS,
  .nparams = 4,
  .writes = "agent_knowledge",
};

static const osb_db_stmt_t Q_K_DELETE = {
  .name = "agents_knowledge_delete",
  .pg = "DELETE FROM agent_knowledge WHERE id = $1 AND agent_id = $2",
  .nparams = 2,
  .writes = "agent_knowledge",
};

/* ---- shared ---- */

static bool is_admin(osb_req_t *req) {
  osb_principal_t *p = osb_req_principal(req);
  return p && p->role == OSB_ROLE_ADMIN;
}

static json_t *agent_json(const osb_db_result_t *res, size_t i, bool admin) {
  json_t *o = osb_db_row_json(res, i);
  if (!admin) json_object_del(o, "system_prompt");
  return o;
}

static bool app_ok(const char *s) { return s && (!strcmp(s, "repconnect") || !strcmp(s, "canvas")); }

static const char *itoa_now(osb_req_t *req) { return osb_app_itoa(req, (int64_t)osb_wallclock_ms()); }

/* A list page: `shown` rows of `res`, next_cursor from the last one. */
static void send_page(osb_req_t *req, const osb_db_result_t *res, int limit, bool admin, bool agents) {
  size_t n = osb_db_nrows(res);
  size_t shown = n > (size_t)limit ? (size_t)limit : n;
  json_t *items = json_array();
  for (size_t i = 0; i < shown; i++)
    json_array_append_new(items, agents ? agent_json(res, i, admin) : osb_db_row_json(res, i));
  json_t *next = json_null();
  if (n > (size_t)limit && shown > 0) {
    json_t *pos = agents ? json_pack("{s:s, s:s, s:s}", "a", osb_db_get(res, shown - 1, "app"), "n",
                                     osb_db_get(res, shown - 1, "name"), "i", osb_db_get(res, shown - 1, "id"))
                         : json_pack("{s:s, s:s}", "t", osb_db_get(res, shown - 1, "title"), "i",
                                     osb_db_get(res, shown - 1, "id"));
    char *cur = osb_app_cursor_encode(pos);
    json_decref(pos);
    next = json_string(cur);
    free(cur);
  }
  osb_res_json(req, 200, json_pack("{s:o, s:o}", "items", items, "next_cursor", next));
}

/* ---- agents ---- */

typedef struct list_ctx { osb_req_t *req; int limit; bool admin; bool agents; } list_ctx_t;

static void listed(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *c = ud;
  if (err) osb_app_db_error(c->req, err);
  else send_page(c->req, res, c->limit, c->admin, c->agents);
}

static void h_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_NONE, h_list)) return;
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  const char *app = osb_req_query(req, "app");
  if (app && !*app) app = NULL;
  if (app && !app_ok(app)) {
    osb_app_fields_t f = {0};
    osb_app_field_error(&f, "app", "must be repconnect or canvas");
    osb_app_send_invalid(req, &f, "invalid query parameter");
    return;
  }
  const char *ca = NULL, *cn = NULL, *ci = NULL;
  const char *cursor = osb_req_query(req, "cursor");
  if (cursor && *cursor) {
    json_t *j = osb_app_cursor_decode(cursor);
    const char *a = j ? json_string_value(json_object_get(j, "a")) : NULL;
    const char *n = j ? json_string_value(json_object_get(j, "n")) : NULL;
    const char *i = j ? json_string_value(json_object_get(j, "i")) : NULL;
    if (!a || !n || !i) {
      if (j) json_decref(j);
      osb_res_error(req, 400, "bad_request", "cursor is malformed");
      return;
    }
    ca = osb_req_strdup(req, a);
    cn = osb_req_strdup(req, n);
    ci = osb_req_strdup(req, i);
    json_decref(j);
  }
  list_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  *c = (list_ctx_t){ req, limit, is_admin(req), true };
  const char *p[5] = { app, ca, cn, ci, osb_app_itoa(req, limit + 1) };
  osb_db_query(&Q_AGENT_LIST, p, 5, listed, c);
}

static void agent_answer(osb_req_t *req, int err, const osb_db_result_t *res, int status) {
  if (err) osb_app_db_error(req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error(req, 404, "not_found", "no such agent");
  else osb_res_json(req, status, agent_json(res, 0, is_admin(req)));
}
static void agent_200(void *ud, int err, const osb_db_result_t *res) { agent_answer(ud, err, res, 200); }
static void agent_201(void *ud, int err, const osb_db_result_t *res) { agent_answer(ud, err, res, 201); }

static void h_get(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_NONE, h_get)) return;
  const char *p[1] = { osb_req_param(req, "id") };
  osb_db_query(&Q_AGENT_GET, p, 1, agent_200, req);
}

static const char *const agent_fields[] = { "app", "name", "description", "system_prompt", "voice_id", "model", NULL };

/* Reads every agent field present; mask bit k set when field k was given. */
static unsigned read_agent(osb_app_fields_t *f, json_t *body, const char *v[AF_COUNT]) {
  static const struct { size_t min, max; bool nullable; } spec[AF_COUNT] = {
    {1, 32, false}, {1, 200, false}, {0, 2000, true}, {0, 20000, true}, {0, 64, true}, {0, 200, true},
  };
  unsigned mask = 0;
  osb_app_reject_unknown(f, body, agent_fields);
  for (int k = 0; k < AF_COUNT; k++) {
    const char *s = NULL;
    bool has;
    v[k] = NULL;
    if (!osb_app_get_string(f, body, agent_fields[k], spec[k].min, spec[k].max, spec[k].nullable, &s, &has) || !has)
      continue;
    if (k == AF_APP && !app_ok(s)) {
      osb_app_field_error(f, "app", "must be repconnect or canvas");
      continue;
    }
    if ((k == AF_VOICE_ID || k == AF_MODEL) && s && !*s) s = NULL;   /* "" clears */
    mask |= 1u << k;
    v[k] = s;
  }
  return mask;
}

static void h_create(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_create)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  const char *v[AF_COUNT];
  unsigned mask = read_agent(&f, body, v);
  if (!json_object_get(body, "app")) osb_app_field_error(&f, "app", "is required");
  if (!json_object_get(body, "name")) osb_app_field_error(&f, "name", "is required");
  (void)mask;
  if (!osb_app_fields_ok(&f)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  char *id = osb_req_alloc(req, 37);
  osb_db_uuid(id);
  const char *p[8] = { id, v[AF_APP], v[AF_NAME], v[AF_DESCRIPTION], v[AF_SYSTEM_PROMPT], v[AF_VOICE_ID],
                       v[AF_MODEL], itoa_now(req) };
  osb_db_query(&Q_AGENT_INSERT, p, 8, agent_201, req);
}

static void h_patch(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_patch)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  const char *v[AF_COUNT];
  unsigned mask = read_agent(&f, body, v);
  if (osb_app_fields_ok(&f) && mask == 0)
    osb_app_field_error(&f, "agent", "give at least one of app, name, description, system_prompt, voice_id, model");
  if (!osb_app_fields_ok(&f)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  const char *p[9] = { osb_req_param(req, "id"), osb_app_itoa(req, mask), v[AF_APP], v[AF_NAME],
                       v[AF_DESCRIPTION], v[AF_SYSTEM_PROMPT], v[AF_VOICE_ID], v[AF_MODEL], itoa_now(req) };
  osb_db_query(&Q_AGENT_PATCH, p, 9, agent_200, req);
}

/* ---- knowledge ---- */

bool osb_agents_knowledge_search(const char *agent_id, const char *text, int limit, osb_db_cb cb, void *ud) {
  char *terms = osb_db_fts_terms(text);
  if (!terms) return false;
  char lim[16];
  snprintf(lim, sizeof(lim), "%d", limit);
  const char *p[3] = { agent_id, terms, lim };
  osb_db_query(&Q_K_SEARCH, p, 3, cb, ud);
  free(terms);
  return true;
}

/* The knowledge routes answer 404 for an unknown agent: check it, then go
 * on with `next`. */
typedef struct k_ctx k_ctx_t;
struct k_ctx {
  osb_req_t *req;
  void (*next)(k_ctx_t *c);
  int limit;
  const char *q, *ct, *ci;
  const char *title, *body;
};

static void k_agent_checked(void *ud, int err, const osb_db_result_t *res) {
  k_ctx_t *c = ud;
  if (err) osb_app_db_error(c->req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error(c->req, 404, "not_found", "no such agent");
  else c->next(c);
}

static k_ctx_t *k_ctx(osb_req_t *req) {
  k_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  return c;
}

static void k_with_agent(k_ctx_t *c, void (*next)(k_ctx_t *c)) {
  c->next = next;
  const char *p[1] = { osb_req_param(c->req, "id") };
  osb_db_query(&Q_AGENT_GET, p, 1, k_agent_checked, c);
}

static void k_listed(void *ud, int err, const osb_db_result_t *res) {
  k_ctx_t *c = ud;
  if (err) osb_app_db_error(c->req, err);
  else send_page(c->req, res, c->limit, true, false);
}

static void k_searched(void *ud, int err, const osb_db_result_t *res) {
  k_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  /* Search results are ranked, one page: no cursor. */
  json_t *items = json_array();
  for (size_t i = 0; i < osb_db_nrows(res) && i < (size_t)c->limit; i++)
    json_array_append_new(items, osb_db_row_json(res, i));
  osb_res_json(c->req, 200, json_pack("{s:o, s:n}", "items", items, "next_cursor"));
}

static void k_list_go(k_ctx_t *c) {
  const char *agent = osb_req_param(c->req, "id");
  if (c->q) {
    if (!osb_agents_knowledge_search(agent, c->q, c->limit, k_searched, c))
      osb_res_json(c->req, 200, json_pack("{s:[], s:n}", "items", "next_cursor"));
    return;
  }
  const char *p[4] = { agent, c->ct, c->ci, osb_app_itoa(c->req, c->limit + 1) };
  osb_db_query(&Q_K_LIST, p, 4, k_listed, c);
}

static void h_k_list(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_k_list)) return;
  int limit = osb_app_limit(req);
  if (limit < 0) return;
  k_ctx_t *c = k_ctx(req);
  c->limit = limit;
  const char *q = osb_req_query(req, "q");
  if (q && *q) {
    if (strlen(q) > 500) {
      osb_app_fields_t f = {0};
      osb_app_field_error(&f, "q", "must be at most 500 bytes");
      osb_app_send_invalid(req, &f, "invalid query parameter");
      return;
    }
    c->q = q;
  }
  const char *cursor = osb_req_query(req, "cursor");
  if (cursor && *cursor && !c->q) {
    json_t *j = osb_app_cursor_decode(cursor);
    const char *t = j ? json_string_value(json_object_get(j, "t")) : NULL;
    const char *i = j ? json_string_value(json_object_get(j, "i")) : NULL;
    if (!t || !i) {
      if (j) json_decref(j);
      osb_res_error(req, 400, "bad_request", "cursor is malformed");
      return;
    }
    c->ct = osb_req_strdup(req, t);
    c->ci = osb_req_strdup(req, i);
    json_decref(j);
  }
  k_with_agent(c, k_list_go);
}

static void k_answer(osb_req_t *req, int err, const osb_db_result_t *res, int status) {
  if (err) osb_app_db_error(req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error(req, 404, "not_found", "no such knowledge entry");
  else osb_res_json(req, status, osb_db_row_json(res, 0));
}
static void k_200(void *ud, int err, const osb_db_result_t *res) { k_answer(ud, err, res, 200); }
static void k_201(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (!err && osb_db_nrows(res) == 0) osb_res_error(req, 404, "not_found", "no such agent");
  else k_answer(req, err, res, 201);
}

static void h_k_get(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_k_get)) return;
  const char *p[2] = { osb_req_param(req, "kid"), osb_req_param(req, "id") };
  osb_db_query(&Q_K_GET, p, 2, k_200, req);
}

static const char *const k_fields[] = { "title", "body", NULL };

static void read_k(osb_app_fields_t *f, json_t *body, const char **title, const char **text) {
  osb_app_reject_unknown(f, body, k_fields);
  *title = *text = NULL;
  osb_app_get_string(f, body, "title", 1, 200, false, title, NULL);
  osb_app_get_string(f, body, "body", 1, 20000, false, text, NULL);
}

static void h_k_create(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_k_create)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  const char *title, *text;
  read_k(&f, body, &title, &text);
  if (!json_object_get(body, "title")) osb_app_field_error(&f, "title", "is required");
  if (!json_object_get(body, "body")) osb_app_field_error(&f, "body", "is required");
  if (!osb_app_fields_ok(&f)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  char *id = osb_req_alloc(req, 37);
  osb_db_uuid(id);
  const char *p[5] = { id, osb_req_param(req, "id"), title, text, itoa_now(req) };
  osb_db_query(&Q_K_INSERT, p, 5, k_201, req);
}

static void h_k_patch(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_k_patch)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  const char *title, *text;
  read_k(&f, body, &title, &text);
  if (osb_app_fields_ok(&f) && !title && !text) osb_app_field_error(&f, "knowledge", "give title or body");
  if (!osb_app_fields_ok(&f)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  const char *p[4] = { osb_req_param(req, "kid"), osb_req_param(req, "id"), title, text };
  osb_db_query(&Q_K_PATCH, p, 4, k_200, req);
}

static void k_deleted(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err) osb_app_db_error(req, err);
  else if (osb_db_affected(res) == 0) osb_res_error(req, 404, "not_found", "no such knowledge entry");
  else osb_res_send(req, 204, NULL, NULL, 0);
}

static void h_k_delete(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, h_k_delete)) return;
  const char *p[2] = { osb_req_param(req, "kid"), osb_req_param(req, "id") };
  osb_db_query(&Q_K_DELETE, p, 2, k_deleted, req);
}

void osb_agents_routes(void) {
  const osb_db_stmt_t *stmts[] = { &Q_AGENT_LIST, &Q_AGENT_GET, &Q_AGENT_INSERT, &Q_AGENT_PATCH, &Q_K_LIST,
                                   &Q_K_SEARCH, &Q_K_GET, &Q_K_INSERT, &Q_K_PATCH, &Q_K_DELETE };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_feature_route("agents", OSB_GET, "/api/agents", h_list);
  osb_feature_route("agents", OSB_POST, "/api/agents", h_create);
  osb_feature_route("agents", OSB_GET, "/api/agents/:id", h_get);
  osb_feature_route("agents", OSB_PATCH, "/api/agents/:id", h_patch);
  osb_feature_route("agents", OSB_GET, "/api/agents/:id/knowledge", h_k_list);
  osb_feature_route("agents", OSB_POST, "/api/agents/:id/knowledge", h_k_create);
  osb_feature_route("agents", OSB_GET, "/api/agents/:id/knowledge/:kid", h_k_get);
  osb_feature_route("agents", OSB_PATCH, "/api/agents/:id/knowledge/:kid", h_k_patch);
  osb_feature_route("agents", OSB_DELETE, "/api/agents/:id/knowledge/:kid", h_k_delete);
}
