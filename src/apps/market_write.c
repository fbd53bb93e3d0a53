/* market_write.c: the Market Data write routes (see market.h).
 *
 *   PUT  /api/market/procedures/:id   one procedure, any subset of the fields
 *   POST /api/market/procedures/bulk  up to 5,000 rows, all or nothing
 *
 * Both run in one database transaction, and their events are publications
 * inside that transaction (osb_rt_tx_publish): the hub delivers them only
 * once it committed, so a write that fails validation, conflicts, meets a
 * missing row or rolls back publishes nothing (SPEC §4). The query cache drops every cached read
 * of market_procedures when the COMMIT completes, before the answer leaves,
 * so a read after a write that answered sees the write (db.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/apputil.h"
#include "apps/features.h"
#include "apps/market.h"
#include "auth/auth.h"
#include "db/db.h"
#include "http/http.h"
#include "obs/log.h"
#include "realtime/realtime.h"

#define BULK_MAX_ROWS 5000
#define IDS_PER_MESSAGE 1000

#define RET_COLS "id, name, category, subcategory, market_size_usd, growth_pct, avg_price_usd, region, " \
                 "description, updated_at"

/* The writable fields, in the order of the UPDATE's parameters ($3..$10)
 * and of the mask bits. */
enum { F_NAME, F_CATEGORY, F_SUBCATEGORY, F_SIZE, F_GROWTH, F_PRICE, F_REGION, F_DESCRIPTION, F_COUNT };
static const char *const field_names[F_COUNT + 2] = {
  "name", "category", "subcategory", "market_size_usd", "growth_pct", "avg_price_usd", "region", "description",
  NULL, NULL,
};
static const char *const bulk_allowed[] = {
  "id", "name", "category", "subcategory", "market_size_usd", "growth_pct", "avg_price_usd", "region",
  "description", NULL,
};
/* Fields a created row must have. */
#define REQUIRED_FOR_CREATE ((1u << F_NAME) | (1u << F_CATEGORY) | (1u << F_SIZE) | (1u << F_GROWTH) | \
                             (1u << F_PRICE) | (1u << F_REGION))

static const osb_db_stmt_t Q_LOCK = {
  .name = "market_proc_lock",
  .pg = "SELECT category FROM market_procedures WHERE id = $1::int FOR UPDATE",
  .sqlite = "SELECT category FROM market_procedures WHERE id = CAST(?1 AS INTEGER)",
  .nparams = 1,
  .reads = "market_procedures",
};

#define SET_PG(col, bit, p, cast) col " = CASE WHEN ($2::int & " #bit ") <> 0 THEN $" #p cast " ELSE " col " END, "
#define SET_SQ(col, bit, p) col " = CASE WHEN (CAST(?2 AS INTEGER) & " #bit ") <> 0 THEN ?" #p " ELSE " col " END, "
static const osb_db_stmt_t Q_UPDATE = {
  .name = "market_proc_update",
  .pg = "UPDATE market_procedures SET "
        SET_PG("name", 1, 3, "") SET_PG("category", 2, 4, "") SET_PG("subcategory", 4, 5, "::text")
        SET_PG("market_size_usd", 8, 6, "::bigint") SET_PG("growth_pct", 16, 7, "::float8")
        SET_PG("avg_price_usd", 32, 8, "::float8") SET_PG("region", 64, 9, "") SET_PG("description", 128, 10, "")
        "updated_at = $11::bigint WHERE id = $1::int RETURNING " RET_COLS,
  .sqlite = "UPDATE market_procedures SET "
            SET_SQ("name", 1, 3) SET_SQ("category", 2, 4) SET_SQ("subcategory", 4, 5)
            SET_SQ("market_size_usd", 8, 6) SET_SQ("growth_pct", 16, 7) SET_SQ("avg_price_usd", 32, 8)
            SET_SQ("region", 64, 9) SET_SQ("description", 128, 10)
            "updated_at = CAST(?11 AS INTEGER) WHERE id = CAST(?1 AS INTEGER) RETURNING " RET_COLS,
  .nparams = 11,
  .writes = "market_procedures",
};

static const osb_db_stmt_t Q_INSERT = {
  .name = "market_proc_insert",
  .pg = "INSERT INTO market_procedures (name, category, subcategory, market_size_usd, growth_pct, "
        "avg_price_usd, region, description, updated_at) "
        "VALUES ($1, $2, $3, $4::bigint, $5::float8, $6::float8, $7, COALESCE($8, ''), $9::bigint) RETURNING id, category",
  .sqlite = "INSERT INTO market_procedures (name, category, subcategory, market_size_usd, growth_pct, "
            "avg_price_usd, region, description, updated_at) "
            "VALUES (?1, ?2, ?3, CAST(?4 AS INTEGER), CAST(?5 AS REAL), CAST(?6 AS REAL), ?7, COALESCE(?8, ''), "
            "CAST(?9 AS INTEGER)) RETURNING id, category",
  .nparams = 9,
  .writes = "market_procedures",
};

/* ---- slugs and channels ---- */

size_t osb_market_slug(const char *category, char *out, size_t cap) {
  size_t n = 0;
  bool dash = false;
  for (const unsigned char *p = (const unsigned char *)category; *p; p++) {
    char c = (char)*p;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!keep) {
      dash = n > 0;
      continue;
    }
    if (dash && n + 1 < cap) out[n++] = '-';
    dash = false;
    if (n + 1 < cap) out[n++] = c;
  }
  if (cap) out[n] = 0;
  return n;
}

static char *channel_of(const char *category) {
  char slug[256];
  osb_market_slug(category, slug, sizeof(slug));
  return osb_asprintf("market:%s", slug);
}

/* ---- validation of one row ----
 * Reads the writable fields of `obj` into rv (strings borrowed from obj,
 * numbers as parsed) and sets the mask of fields present; errors go to f.
 * Pure: no request, no database (tests/fuzz/market_fuzz.c calls it). */
typedef struct row_vals {
  unsigned mask;
  const char *s[F_COUNT];   /* the string fields (subcategory may be NULL) */
  int64_t size;             /* market_size_usd */
  double growth, price;     /* growth_pct, avg_price_usd */
} row_vals_t;

static void read_fields(osb_app_fields_t *f, json_t *obj, row_vals_t *rv) {
  memset(rv, 0, sizeof(*rv));
  bool has;
  const char *s;
  int64_t i;
  double d;

  s = NULL;
  if (osb_app_get_string(f, obj, "name", 1, 200, false, &s, &has) && has) rv->mask |= 1u << F_NAME, rv->s[F_NAME] = s;
  s = NULL;
  if (osb_app_get_string(f, obj, "category", 1, 100, false, &s, &has) && has) {
    char slug[256];
    if (osb_market_slug(s, slug, sizeof(slug)) == 0)
      osb_app_field_error(f, "category", "must contain a letter or a digit");
    else rv->mask |= 1u << F_CATEGORY, rv->s[F_CATEGORY] = s;
  }
  s = NULL;
  if (osb_app_get_string(f, obj, "subcategory", 0, 100, true, &s, &has) && has)
    rv->mask |= 1u << F_SUBCATEGORY, rv->s[F_SUBCATEGORY] = s;
  if (osb_app_get_int(f, obj, "market_size_usd", 0, 1000000000000000LL, &i, &has) && has)
    rv->mask |= 1u << F_SIZE, rv->size = i;
  if (osb_app_get_number(f, obj, "growth_pct", -100.0, 1000.0, &d, &has) && has)
    rv->mask |= 1u << F_GROWTH, rv->growth = d;
  if (osb_app_get_number(f, obj, "avg_price_usd", 0.0, 1e9, &d, &has) && has)
    rv->mask |= 1u << F_PRICE, rv->price = d;
  s = NULL;
  if (osb_app_get_string(f, obj, "region", 1, 100, false, &s, &has) && has) rv->mask |= 1u << F_REGION, rv->s[F_REGION] = s;
  s = NULL;
  if (osb_app_get_string(f, obj, "description", 0, 10000, false, &s, &has) && has)
    rv->mask |= 1u << F_DESCRIPTION, rv->s[F_DESCRIPTION] = s;
}

/* The row's values as statement parameters (text, in request memory; NULL
 * for a field not present): numbers as decimal, reals with %.17g. */
static void row_text(osb_req_t *req, const row_vals_t *rv, const char *out[F_COUNT]) {
  char buf[64];
  for (int k = 0; k < F_COUNT; k++) out[k] = rv->s[k];
  if (rv->mask & (1u << F_SIZE)) out[F_SIZE] = osb_app_itoa(req, rv->size);
  if (rv->mask & (1u << F_GROWTH)) {
    snprintf(buf, sizeof(buf), "%.17g", rv->growth);
    out[F_GROWTH] = osb_req_strdup(req, buf);
  }
  if (rv->mask & (1u << F_PRICE)) {
    snprintf(buf, sizeof(buf), "%.17g", rv->price);
    out[F_PRICE] = osb_req_strdup(req, buf);
  }
}

static void update_params(osb_req_t *req, const char *id, const row_vals_t *rv, const char *p[11]) {
  p[0] = id;
  p[1] = osb_app_itoa(req, rv->mask);
  row_text(req, rv, p + 2);
  p[10] = osb_app_itoa(req, (int64_t)osb_wallclock_ms());
}

/* ---- publishing: inside the write's transaction, delivered after commit ---- */

static void publish_on(osb_db_tx_t *tx, const char *channel, json_t *event) {
  osb_rt_tx_publish(tx, channel, event, NULL, NULL);
}

/* ---- PUT /api/market/procedures/:id ---- */

typedef struct put_ctx {
  osb_req_t *req;
  osb_db_tx_t *tx;
  char id[12];
  row_vals_t rv;
  int qerr;             /* the UPDATE's error */
  char *old_category;   /* from the locked row; NULL when there is none */
  json_t *proc;         /* the updated row */
} put_ctx_t;

static bool parse_id(const char *s, char out[12]) {
  if (!s || !*s || strlen(s) > 10) return false;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (*p - '0');
  }
  if (v < 1 || v > 2147483647L) return false;
  snprintf(out, 12, "%ld", v);
  return true;
}

static void put_free(put_ctx_t *c) {
  free(c->old_category);
  c->old_category = NULL;
  if (c->proc) json_decref(c->proc);
  c->proc = NULL;
}

static void put_locked(void *ud, int err, const osb_db_result_t *res) {
  put_ctx_t *c = ud;
  if (!err && osb_db_nrows(res) == 1) c->old_category = osb_strdup(osb_db_text(res, 0, 0));
}

static void put_committed(void *ud, int err, const osb_db_result_t *res);

/* The row is updated (or missing): queue its events in the transaction,
 * then commit. A missing row commits nothing and publishes nothing. */
static void put_updated(void *ud, int err, const osb_db_result_t *res) {
  put_ctx_t *c = ud;
  osb_db_tx_t *tx = c->tx;
  c->tx = NULL;
  c->qerr = err;
  if (!err && osb_db_nrows(res) == 1 && c->old_category) {
    c->proc = osb_db_row_json(res, 0);
    json_t *event = json_pack("{s:s, s:O}", "type", "procedure.updated", "procedure", c->proc);
    const char *newcat = json_string_value(json_object_get(c->proc, "category"));
    char *ch_new = channel_of(newcat ? newcat : "");
    char *ch_old = channel_of(c->old_category);
    publish_on(tx, "market:all", event);
    publish_on(tx, ch_new, event);
    if (strcmp(ch_old, ch_new) != 0) publish_on(tx, ch_old, event);
    free(ch_new);
    free(ch_old);
    json_decref(event);
    osb_db_tx_commit(tx, put_committed, c);
  } else {
    osb_db_tx_rollback(tx, put_committed, c);
  }
}

static void put_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  put_ctx_t *c = ud;
  osb_req_t *req = c->req;
  if (c->qerr) err = c->qerr;
  /* Finishing the request frees c (request memory): release first. */
  if (err) {
    put_free(c);
    osb_app_db_error(req, err);
  } else if (!c->proc || !c->old_category) {
    put_free(c);
    osb_res_error(req, 404, "not_found", "no such procedure");
  } else {
    json_t *proc = json_incref(c->proc);
    put_free(c);
    osb_res_json(req, 200, proc);
  }
}

static void put_begun(void *ud, int err, osb_db_tx_t *tx) {
  put_ctx_t *c = ud;
  if (err) {
    osb_app_db_error(c->req, err);
    return;
  }
  c->tx = tx;
  const char *lock[] = { c->id };
  osb_db_tx_query(tx, &Q_LOCK, lock, 1, put_locked, c);
  const char *p[11];
  update_params(c->req, c->id, &c->rv, p);
  osb_db_tx_query(tx, &Q_UPDATE, p, 11, put_updated, c);
}

/* The body of a PUT to procedure `id` (as parse_id wrote it): true with
 * the fields to write in rv, or false with the errors in f. Pure, like
 * read_fields. */
static bool put_validate(osb_app_fields_t *f, json_t *body, const char *id, row_vals_t *rv) {
  static const char *const put_allowed[] = {
    "id", "name", "category", "subcategory", "market_size_usd", "growth_pct", "avg_price_usd", "region",
    "description", NULL,
  };
  osb_app_reject_unknown(f, body, put_allowed);
  json_t *jid = json_object_get(body, "id");
  if (jid && !(json_is_integer(jid) && json_integer_value(jid) == atoll(id)))
    osb_app_field_error(f, "id", "must match the id in the path (or be left out)");
  read_fields(f, body, rv);
  if (osb_app_fields_ok(f) && rv->mask == 0) {
    osb_app_field_error(f, "procedure", "give at least one of name, category, subcategory, market_size_usd, "
                                        "growth_pct, avg_price_usd, region, description");
  }
  return osb_app_fields_ok(f);
}

static void h_put(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_SERVICE, h_put)) return;
  put_ctx_t *c = osb_req_alloc(req, sizeof(*c));
  memset(c, 0, sizeof(*c));
  c->req = req;
  if (!parse_id(osb_req_param(req, "id"), c->id)) {
    osb_res_error(req, 400, "bad_request", "id must be an integer between 1 and 2147483647");
    return;
  }
  json_t *body = osb_req_json(req);
  if (!body) return;
  osb_app_fields_t f = {0};
  if (!put_validate(&f, body, c->id, &c->rv)) {
    osb_app_send_invalid(req, &f, "some fields are invalid");
    return;
  }
  osb_db_tx_begin(put_begun, c);
}

/* ---- POST /api/market/procedures/bulk ---- */

typedef struct bulk_ctx bulk_ctx_t;
typedef struct bulk_row {
  bulk_ctx_t *b;
  row_vals_t rv;
  char id[12];          /* "" for a created row until the INSERT returns */
  bool update;
  bool found;
  char *old_category;
  char *new_category;
} bulk_row_t;

struct bulk_ctx {
  osb_req_t *req;
  osb_db_tx_t *tx;
  size_t n;
  bulk_row_t *rows;
  size_t pending;       /* row queries still to answer */
  int err;              /* first query error */
};

static void bulk_free(bulk_ctx_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    free(b->rows[i].old_category);
    free(b->rows[i].new_category);
  }
  free(b->rows);
  b->rows = NULL;
}

/* ids by channel, chunked at IDS_PER_MESSAGE, queued in the transaction. */
static void bulk_publish(bulk_ctx_t *b, osb_db_tx_t *tx) {
  json_t *by_channel = json_object();
  json_t *all = json_array();
  for (size_t i = 0; i < b->n; i++) {
    bulk_row_t *r = &b->rows[i];
    json_t *id = json_integer(atoll(r->id));
    json_array_append(all, id);
    const char *cats[2] = { r->new_category, r->old_category };
    char *seen = NULL;
    for (int k = 0; k < 2; k++) {
      if (!cats[k]) continue;
      char *ch = channel_of(cats[k]);
      if (seen && strcmp(seen, ch) == 0) {
        free(ch);
        continue;
      }
      json_t *arr = json_object_get(by_channel, ch);
      if (!arr) {
        arr = json_array();
        json_object_set_new(by_channel, ch, arr);
      }
      json_array_append(arr, id);
      free(seen);
      seen = ch;
    }
    free(seen);
    json_decref(id);
  }
  json_object_set_new(by_channel, "market:all", all);
  const char *ch;
  json_t *ids;
  json_object_foreach(by_channel, ch, ids) {
    size_t n = json_array_size(ids);
    for (size_t off = 0; off < n; off += IDS_PER_MESSAGE) {
      json_t *chunk = json_array();
      for (size_t k = off; k < n && k < off + IDS_PER_MESSAGE; k++) json_array_append(chunk, json_array_get(ids, k));
      json_t *event = json_pack("{s:s, s:o}", "type", "procedures.updated", "ids", chunk);
      publish_on(tx, ch, event);
      json_decref(event);
    }
  }
  json_decref(by_channel);
}

static void bulk_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  bulk_ctx_t *b = ud;
  osb_req_t *req = b->req;
  if (err) {
    bulk_free(b);
    osb_app_db_error(req, err);
  } else {
    size_t updated = 0, created = 0;
    json_t *ids = json_array();
    for (size_t i = 0; i < b->n; i++) {
      if (b->rows[i].update) updated++;
      else created++;
      json_array_append_new(ids, json_integer(atoll(b->rows[i].id)));
    }
    bulk_free(b);
    osb_res_json(req, 200, json_pack("{s:I, s:I, s:o}", "updated", (json_int_t)updated, "created",
                                     (json_int_t)created, "ids", ids));
  }
}

static void bulk_rolled_back(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(err);
  OSB_UNUSED(res);
  bulk_ctx_t *b = ud;
  osb_req_t *req = b->req;
  int qerr = b->err;
  json_t *rows = json_array();
  for (size_t i = 0; i < b->n; i++)
    if (b->rows[i].update && !b->rows[i].found)
      json_array_append_new(rows, json_pack("{s:I, s:{s:s}}", "index", (json_int_t)i, "fields", "id",
                                            "no such procedure"));
  bulk_free(b);
  if (qerr) {
    json_decref(rows);
    osb_app_db_error(req, qerr);
  } else {
    osb_app_send_invalid_rows(req, rows, "some rows refer to procedures that do not exist; nothing was written");
  }
}

/* Called after each row's last query; the last one ends the transaction. */
static void bulk_row_done(bulk_ctx_t *b, int err) {
  if (err && !b->err) b->err = err;
  if (--b->pending > 0) return;
  bool missing = false;
  for (size_t i = 0; i < b->n; i++)
    if (b->rows[i].update && !b->rows[i].found) missing = true;
  osb_db_tx_t *tx = b->tx;
  b->tx = NULL;
  if (b->err || missing) {
    osb_db_tx_rollback(tx, bulk_rolled_back, b);
  } else {
    bulk_publish(b, tx);
    osb_db_tx_commit(tx, bulk_committed, b);
  }
}

static void bulk_locked(void *ud, int err, const osb_db_result_t *res) {
  bulk_row_t *r = ud;
  if (!err && osb_db_nrows(res) == 1) r->old_category = osb_strdup(osb_db_text(res, 0, 0));
}

static void bulk_updated(void *ud, int err, const osb_db_result_t *res) {
  bulk_row_t *r = ud;
  if (!err && osb_db_nrows(res) == 1) {
    r->found = true;
    r->new_category = osb_strdup(osb_db_get(res, 0, "category"));
  }
  bulk_row_done(r->b, err);
}

static void bulk_inserted(void *ud, int err, const osb_db_result_t *res) {
  bulk_row_t *r = ud;
  if (!err && osb_db_nrows(res) == 1) {
    snprintf(r->id, sizeof(r->id), "%lld", (long long)osb_db_get_int(res, 0, "id"));
    r->new_category = osb_strdup(osb_db_get(res, 0, "category"));
  }
  bulk_row_done(r->b, err);
}

static void bulk_begun(void *ud, int err, osb_db_tx_t *tx) {
  bulk_ctx_t *b = ud;
  if (err) {
    bulk_free(b);
    osb_app_db_error(b->req, err);
    return;
  }
  if (b->n == 0) {
    osb_db_tx_commit(tx, bulk_committed, b);
    return;
  }
  b->tx = tx;
  b->pending = b->n;
  const char *now = osb_app_itoa(b->req, (int64_t)osb_wallclock_ms());
  for (size_t i = 0; i < b->n; i++) {
    bulk_row_t *r = &b->rows[i];
    if (r->update) {
      const char *lock[] = { r->id };
      osb_db_tx_query(tx, &Q_LOCK, lock, 1, bulk_locked, r);
      const char *p[11];
      update_params(b->req, r->id, &r->rv, p);
      p[10] = now;
      osb_db_tx_query(tx, &Q_UPDATE, p, 11, bulk_updated, r);
    } else {
      const char *p[9];
      row_text(b->req, &r->rv, p);   /* $1..$8 in field order */
      p[8] = now;
      osb_db_tx_query(tx, &Q_INSERT, p, 9, bulk_inserted, r);
    }
  }
}

/* What the bulk body holds. bulk_validate returns 0 with the n rows
 * (malloc'd, NULL when n is 0; their b is left NULL), 413 when there are
 * more than BULK_MAX_ROWS (n says how many), or 400 with either f (the body
 * is not {"procedures": [...]}) or bad ([{index, fields}], owned) set.
 * Every row is checked before anything is answered. Pure, like read_fields. */
typedef struct bulk_check {
  size_t n;
  bulk_row_t *rows;
  osb_app_fields_t f;
  json_t *bad;
} bulk_check_t;

static int bulk_validate(json_t *body, bulk_check_t *k) {
  memset(k, 0, sizeof(*k));
  json_t *list = json_object_get(body, "procedures");
  if (!json_is_array(list)) {
    osb_app_field_error(&k->f, "procedures", "must be an array of procedures");
    return 400;
  }
  size_t n = json_array_size(list);
  k->n = n;
  if (n > BULK_MAX_ROWS) return 413;
  bulk_row_t *rows = n ? osb_calloc(n, sizeof(bulk_row_t)) : NULL;
  json_t *bad = json_array();
  for (size_t i = 0; i < n; i++) {
    bulk_row_t *r = &rows[i];
    json_t *row = json_array_get(list, i);
    osb_app_fields_t f = {0};
    if (!json_is_object(row)) {
      osb_app_field_error(&f, "row", "must be an object");
    } else {
      osb_app_reject_unknown(&f, row, bulk_allowed);
      json_t *jid = json_object_get(row, "id");
      if (jid) {
        if (!json_is_integer(jid) || json_integer_value(jid) < 1 || json_integer_value(jid) > 2147483647)
          osb_app_field_error(&f, "id", "must be an integer between 1 and 2147483647");
        else {
          r->update = true;
          snprintf(r->id, sizeof(r->id), "%lld", (long long)json_integer_value(jid));
        }
      }
      read_fields(&f, row, &r->rv);
      if (osb_app_fields_ok(&f)) {
        if (r->update && r->rv.mask == 0) osb_app_field_error(&f, "row", "an update needs at least one field");
        if (!jid) {
          unsigned missing = REQUIRED_FOR_CREATE & ~r->rv.mask;
          for (int m = 0; m < F_COUNT; m++)
            if (missing & (1u << m)) osb_app_field_error(&f, field_names[m], "is required to create a procedure");
        }
      }
    }
    if (!osb_app_fields_ok(&f)) {
      json_array_append_new(bad, json_pack("{s:I, s:o}", "index", (json_int_t)i, "fields", f.fields));
      f.fields = NULL;
    }
  }
  if (json_array_size(bad) > 0) {
    free(rows);
    k->bad = bad;
    return 400;
  }
  json_decref(bad);
  k->rows = rows;
  return 0;
}

static void h_bulk(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_SERVICE, h_bulk)) return;
  json_t *body = osb_req_json(req);
  if (!body) return;
  bulk_check_t k;
  int status = bulk_validate(body, &k);
  if (status == 413) {
    osb_res_error(req, 413, "too_large", "at most %d rows per bulk request (got %zu)", BULK_MAX_ROWS, k.n);
    return;
  }
  if (status != 0 && k.bad) {
    osb_app_send_invalid_rows(req, k.bad, "some rows are invalid; nothing was written");
    return;
  }
  if (status != 0) {
    osb_app_send_invalid(req, &k.f, "the body must be {\"procedures\": [...]}");
    return;
  }
  bulk_ctx_t *b = osb_req_alloc(req, sizeof(*b));
  memset(b, 0, sizeof(*b));
  b->req = req;
  b->n = k.n;
  b->rows = k.rows;
  for (size_t i = 0; i < b->n; i++) b->rows[i].b = b;
  osb_db_tx_begin(bulk_begun, b);
}

void osb__market_write_routes(void) {
  const osb_db_stmt_t *stmts[] = { &Q_LOCK, &Q_UPDATE, &Q_INSERT };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_feature_route("market_writes", OSB_PUT, "/api/market/procedures/:id", h_put);
  osb_feature_route("market_writes", OSB_POST, "/api/market/procedures/bulk", h_bulk);
}
