/* market.c: the Market Data read routes (see market.h).
 *
 * Thin handlers: validate input, run one declared statement through the
 * cache, render. Rendering happens once per cached result: the body is kept
 * in the result's memo slot and later hits send that same buffer. */
#include "apps/market.h"

#include "apps/apputil.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <strings.h>

#include "core/json.h"
#include "db/db.h"
#include "http/http.h"

#define PROC_COLS "id, name, category, subcategory, market_size_usd, growth_pct, avg_price_usd, region"

static const osb_db_stmt_t Q_CATEGORIES = {
  .name = "market_categories",
  .pg = "SELECT category, count(*) AS procedures, sum(market_size_usd)::bigint AS market_size_usd, "
        "round(avg(growth_pct)::numeric, 2)::float8 AS avg_growth_pct "
        "FROM market_procedures GROUP BY category ORDER BY category",
  .sqlite = "SELECT category, count(*) AS procedures, sum(market_size_usd) AS market_size_usd, "
            "round(avg(growth_pct), 2) AS avg_growth_pct "
            "FROM market_procedures GROUP BY category ORDER BY category",
  .reads = "market_procedures",
  .cacheable = true,
};

static const osb_db_stmt_t Q_PROCEDURE = {
  .name = "market_procedure_get",
  .pg = "SELECT " PROC_COLS ", description, updated_at FROM market_procedures WHERE id = $1",
  .nparams = 1,
  .reads = "market_procedures",
  .cacheable = true,
};

/* The list: one statement per sort key and direction, so each can walk its
 * index. $1 category or NULL, $2 LIKE pattern or NULL, $3/$4 the keyset
 * cursor (sort value, id) or NULL, $5 the row limit (page size + 1). */
#define LIST_PG(key, cast, cmp, dir)                                                          \
  "SELECT " PROC_COLS ", updated_at FROM market_procedures "                                  \
  "WHERE ($1::text IS NULL OR category = $1) AND ($2::text IS NULL OR name ILIKE $2) "        \
  "AND ($3::" cast " IS NULL OR (" key ", id) " cmp " ($3::" cast ", $4::int)) "              \
  "ORDER BY " key " " dir ", id " dir " LIMIT $5"
#define LIST_SQ(key, cmp, dir)                                                                \
  "SELECT " PROC_COLS ", updated_at FROM market_procedures "                                  \
  "WHERE (?1 IS NULL OR category = ?1) AND (?2 IS NULL OR name LIKE ?2 ESCAPE '\\') "          \
  "AND (?3 IS NULL OR (" key ", id) " cmp " (?3, ?4)) "                                       \
  "ORDER BY " key " " dir ", id " dir " LIMIT ?5"
#define LIST(nm, key, cast, cmp, dir)                                                        \
  { .name = nm, .pg = LIST_PG(key, cast, cmp, dir), .sqlite = LIST_SQ(key, cmp, dir),        \
    .nparams = 5, .reads = "market_procedures", .cacheable = true }

enum { SORT_NAME, SORT_SIZE, SORT_GROWTH };
static const char *const sort_names[] = { "name", "market_size", "growth" };
static const char *const sort_cols[] = { "name", "market_size_usd", "growth_pct" };
static const osb_db_stmt_t Q_LIST[3][2] = {
  { LIST("market_list_name_asc", "name", "text", ">", "ASC"),
    LIST("market_list_name_desc", "name", "text", "<", "DESC") },
  { LIST("market_list_size_asc", "market_size_usd", "bigint", ">", "ASC"),
    LIST("market_list_size_desc", "market_size_usd", "bigint", "<", "DESC") },
  { LIST("market_list_growth_asc", "growth_pct", "float8", ">", "ASC"),
    LIST("market_list_growth_desc", "growth_pct", "float8", "<", "DESC") },
};

#define MAX_LIMIT 100
#define DEFAULT_LIMIT 20
#define MAX_Q 100
#define MAX_CATEGORY 100

/* ---- shared ---- */

static void db_error(osb_req_t *req, int err) {
  osb_res_error_code(req, err, "%s", err == OSB_EUNAVAIL ? "the database is unavailable, retry shortly"
                                     : err == OSB_EINVAL ? "a parameter has an invalid value" : "database error");
}

/* Appends the body for res to out: a pure function of the result. */
typedef void (*render_fn)(const osb_db_result_t *res, void *arg, osb_buf_t *out);

/* Send the memoized body of res, rendering it first if this is its first
 * reader (with the cache off, every reader is the first). */
static void send_memo(osb_req_t *req, const osb_db_result_t *res, render_fn render, void *arg) {
  osb_msg_t *body = osb_db_result_memo(res);
  if (!body) {
    osb_buf_t b = OSB_BUF_INIT;
    osb_buf_reserve(&b, 512);
    render(res, arg, &b);
    osb_msg_t *m = osb_msg_from(b.base, b.len);
    osb_buf_free(&b);
    osb_db_result_set_memo(res, m);
    osb_msg_unref(m);
    body = osb_db_result_memo(res);
  }
  osb_res_msg(req, 200, "application/json", body);
}

/* ---- GET /api/market/categories ---- */

static void render_categories(const osb_db_result_t *res, void *arg, osb_buf_t *out) {
  OSB_UNUSED(arg);
  json_t *rows = json_array();
  for (size_t i = 0; i < osb_db_nrows(res); i++) {
    json_t *row = osb_db_row_json(res, i);
    const char *cat = json_string_value(json_object_get(row, "category"));
    char slug[256];
    osb_market_slug(cat ? cat : "", slug, sizeof(slug));
    char *ch = osb_asprintf("market:%s", slug);
    json_object_set_new(row, "slug", json_string(slug));
    json_object_set_new(row, "channel", json_string(ch));
    free(ch);
    json_array_append_new(rows, row);
  }
  json_t *body = json_pack("{s:o}", "categories", rows);
  osb_json_dump_buf(body, out);
  json_decref(body);
}

static void categories_done(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err) db_error(req, err);
  else send_memo(req, res, render_categories, NULL);
}

static void get_categories(osb_req_t *req) {
  osb_db_query(&Q_CATEGORIES, NULL, 0, categories_done, req);
}

/* ---- GET /api/market/procedures/:id ---- */

/* Canonical decimal text of a positive int32, or false. */
static bool parse_id(const char *s, char out[12]) {
  if (!s || !*s || strlen(s) > 10) return false;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
  }
  if (v < 1 || v > 2147483647L) return false;
  while (*s == '0') s++;   /* the canonical text: no leading zeros */
  memcpy(out, s, strlen(s) + 1);
  return true;
}

static void render_procedure(const osb_db_result_t *res, void *arg, osb_buf_t *out) {
  OSB_UNUSED(arg);
  osb_db_row_dump(res, 0, out);
}

static void procedure_done(void *ud, int err, const osb_db_result_t *res) {
  osb_req_t *req = ud;
  if (err) db_error(req, err);
  else if (osb_db_nrows(res) == 0) osb_res_error_code(req, OSB_ENOTFOUND, "no such procedure");
  else send_memo(req, res, render_procedure, NULL);
}

static void get_procedure(osb_req_t *req) {
  char *id = osb_req_alloc(req, 12);
  if (!parse_id(osb_req_param(req, "id"), id)) {
    osb_res_error_code(req, OSB_EINVAL, "id must be an integer between 1 and 2147483647");
    return;
  }
  const char *p[] = { id };
  osb_db_query(&Q_PROCEDURE, p, 1, procedure_done, req);
}

/* ---- GET /api/market/procedures ---- */

typedef struct list_ctx {
  osb_req_t *req;
  int sort;
  bool desc;
  int limit;
} list_ctx_t;

typedef struct list_render {
  int sort;
  bool desc;
  int limit;
} list_render_t;

/* Cursor: base64url (no padding) of {"s":sort,"d":0|1,"v":"last sort value","i":last id}. */
static char *cursor_encode(int sort, bool desc, const char *value, int64_t id) {
  json_t *j = json_pack("{s:s, s:b, s:s, s:I}", "s", sort_names[sort], "d", desc, "v", value, "i", (json_int_t)id);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  size_t n = strlen(s);
  size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  char *out = osb_malloc(cap);
  sodium_bin2base64(out, cap, (const unsigned char *)s, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  free(s);
  return out;
}

/* Returns false on anything malformed or made for another sort. */
static bool cursor_decode(osb_req_t *req, const char *cur, int sort, bool desc, const char **value, const char **id) {
  size_t n = strlen(cur);
  if (n == 0 || n > 1024) return false;
  unsigned char *bin = osb_req_alloc(req, n + 1);
  size_t len = 0;
  if (sodium_base642bin(bin, n, cur, n, NULL, &len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) return false;
  json_t *j = json_loadb((const char *)bin, len, 0, NULL);
  if (!j) return false;
  const char *s = json_string_value(json_object_get(j, "s"));
  json_t *d = json_object_get(j, "d");
  const char *v = json_string_value(json_object_get(j, "v"));
  json_t *i = json_object_get(j, "i");
  bool ok = s && strcmp(s, sort_names[sort]) == 0 && json_is_boolean(d) && json_is_true(d) == desc && v &&
            strlen(v) <= 512 && json_is_integer(i) && json_integer_value(i) >= 1 &&
            json_integer_value(i) <= 2147483647;
  if (ok && sort != SORT_NAME) {
    /* Numeric sorts: the value must parse fully as a number. */
    char *end;
    errno = 0;
    if (sort == SORT_SIZE) (void)strtoll(v, &end, 10);
    else (void)strtod(v, &end);
    ok = *v && !*end && errno == 0;
  }
  if (ok) {
    *value = osb_req_strdup(req, v);
    char buf[16];
    snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(i));
    *id = osb_req_strdup(req, buf);
  }
  json_decref(j);
  return ok;
}

/* {"items":[...],"next_cursor":"..."|null,"limit":N} */
static void render_list(const osb_db_result_t *res, void *arg, osb_buf_t *out) {
  const list_render_t *r = arg;
  size_t n = osb_db_nrows(res);
  size_t shown = n > (size_t)r->limit ? (size_t)r->limit : n;
  osb_buf_puts(out, "{\"items\":");
  osb_db_rows_dump(res, shown, out);
  osb_buf_puts(out, ",\"next_cursor\":");
  if (n > (size_t)r->limit && shown > 0) {
    int col = osb_db_col(res, sort_cols[r->sort]);
    const char *v = col >= 0 ? osb_db_text(res, shown - 1, (size_t)col) : NULL;
    char *c = cursor_encode(r->sort, r->desc, v ? v : "", osb_db_get_int(res, shown - 1, "id"));
    osb_buf_json_str(out, c, strlen(c));
    free(c);
  } else {
    osb_buf_puts(out, "null");
  }
  osb_buf_printf(out, ",\"limit\":%d}", r->limit);
}

static void list_done(void *ud, int err, const osb_db_result_t *res) {
  list_ctx_t *ctx = ud;
  if (err) {
    db_error(ctx->req, err);
    return;
  }
  list_render_t r = { ctx->sort, ctx->desc, ctx->limit };
  send_memo(ctx->req, res, render_list, &r);
}

static void list_procedures(osb_req_t *req) {
  const char *category = osb_req_query(req, "category");
  const char *q = osb_req_query(req, "q");
  const char *sort = osb_req_query(req, "sort");
  const char *order = osb_req_query(req, "order");
  const char *limit_s = osb_req_query(req, "limit");
  const char *cursor = osb_req_query(req, "cursor");

  list_ctx_t *ctx = osb_req_alloc(req, sizeof(*ctx));
  ctx->req = req;
  ctx->sort = SORT_NAME;
  ctx->desc = false;
  ctx->limit = DEFAULT_LIMIT;

  if (sort && *sort) {
    const char *key = sort;
    if (*key == '-') {
      ctx->desc = true;
      key++;
    } else if (*key == '+') {
      key++;
    }
    int found = -1;
    for (int i = 0; i < 3; i++)
      if (strcmp(key, sort_names[i]) == 0) found = i;
    if (found < 0) {
      osb_res_error_code(req, OSB_EINVAL, "sort must be name, market_size or growth (prefix - for descending)");
      return;
    }
    ctx->sort = found;
  }
  if (order && *order) {
    if (strcasecmp(order, "desc") == 0) ctx->desc = true;
    else if (strcasecmp(order, "asc") == 0) ctx->desc = false;
    else {
      osb_res_error_code(req, OSB_EINVAL, "order must be asc or desc");
      return;
    }
  }
  if (limit_s) {
    char *end;
    errno = 0;
    long v = strtol(limit_s, &end, 10);
    if (!*limit_s || *end || errno || v < 1 || v > MAX_LIMIT) {
      osb_res_error_code(req, OSB_EINVAL, "limit must be an integer between 1 and %d", MAX_LIMIT);
      return;
    }
    ctx->limit = (int)v;
  }
  if (category && (!*category || strlen(category) > MAX_CATEGORY)) {
    if (!*category) category = NULL;
    else {
      osb_res_error_code(req, OSB_EINVAL, "category is too long");
      return;
    }
  }
  char *pattern = NULL;
  if (q && *q) {
    size_t n = strlen(q);
    if (n > MAX_Q) {
      osb_res_error_code(req, OSB_EINVAL, "q must be at most %d bytes", MAX_Q);
      return;
    }
    pattern = osb_app_like_pattern(req, q);
  }
  const char *cval = NULL, *cid = NULL;
  if (cursor && *cursor && !cursor_decode(req, cursor, ctx->sort, ctx->desc, &cval, &cid)) {
    osb_res_error_code(req, OSB_EINVAL, "cursor is malformed or belongs to another sort order");
    return;
  }
  char *lim = osb_req_alloc(req, 16);
  snprintf(lim, 16, "%d", ctx->limit + 1);
  const char *p[] = { category, pattern, cval, cid, lim };
  osb_db_query(&Q_LIST[ctx->sort][ctx->desc ? 1 : 0], p, 5, list_done, ctx);
}

void osb_market_routes(void) {
  const osb_db_stmt_t *stmts[] = {
    &Q_CATEGORIES, &Q_PROCEDURE,
    &Q_LIST[0][0], &Q_LIST[0][1], &Q_LIST[1][0], &Q_LIST[1][1], &Q_LIST[2][0], &Q_LIST[2][1],
  };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_route(OSB_GET, "/api/market/categories", get_categories);
  osb_route(OSB_GET, "/api/market/procedures", list_procedures);
  osb_route(OSB_GET, "/api/market/procedures/:id", get_procedure);
  osb__market_write_routes();
}
