/* result.c: query results: building (loop or worker thread), accessors,
 * JSON rendering, reference counting and the memo slot. */
#include "db/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>
#include <jansson.h>

/* ---- building ---- */

void osb__rb_init(osb__rb_t *b, size_t ncols) {
  memset(b, 0, sizeof(*b));
  osb_db_result_t *r = osb_calloc(1, sizeof(*r));
  r->refcnt = 1;
  r->ncols = (uint32_t)ncols;
  r->colnames = osb_calloc(ncols ? ncols : 1, sizeof(char *));
  r->coltypes = osb_calloc(ncols ? ncols : 1, 1);
  b->res = r;
}

void osb__rb_col(osb__rb_t *b, size_t col, const char *name, osb_db_type_t type) {
  osb_assert(col < b->res->ncols);
  b->res->colnames[col] = osb_strdup(name ? name : "");
  b->res->coltypes[col] = (uint8_t)type;
}

void osb__rb_set_type(osb__rb_t *b, size_t col, osb_db_type_t type) {
  osb_assert(col < b->res->ncols);
  b->res->coltypes[col] = (uint8_t)type;
}

osb_db_type_t osb__rb_type(const osb__rb_t *b, size_t col) {
  osb_assert(col < b->res->ncols);
  return (osb_db_type_t)b->res->coltypes[col];
}

void osb__rb_cell(osb__rb_t *b, const void *p, size_t n) {
  if (b->ncells == b->capcells) {
    b->capcells = b->capcells ? b->capcells * 2 : 16;
    b->res->cells = osb_realloc(b->res->cells, b->capcells * sizeof(osb__cell_t));
  }
  osb__cell_t *c = &b->res->cells[b->ncells++];
  if (!p) {
    c->off = OSB__CELL_NULL;
    c->len = 0;
    return;
  }
  osb_assert(b->data.len + n < OSB__CELL_NULL);
  c->off = (uint32_t)b->data.len;
  c->len = (uint32_t)n;
  osb_buf_append(&b->data, p, n);
  osb_buf_append(&b->data, "", 1);   /* keep every cell NUL-terminated */
}

osb_db_result_t *osb__rb_finish(osb__rb_t *b, int64_t affected) {
  osb_db_result_t *r = b->res;
  osb_assert(r->ncols == 0 || b->ncells % r->ncols == 0);
  r->nrows = r->ncols ? (uint32_t)(b->ncells / r->ncols) : 0;
  r->affected = affected;
  if (!b->data.base) osb_buf_append(&b->data, "", 1);
  r->data = b->data.base;
  r->bytes = sizeof(*r) + b->data.cap + b->capcells * sizeof(osb__cell_t) + r->ncols * (sizeof(char *) + 1);
  for (size_t i = 0; i < r->ncols; i++) r->bytes += strlen(r->colnames[i]) + 1;
  b->res = NULL;
  b->data = (osb_buf_t)OSB_BUF_INIT;
  return r;
}

void osb__rb_discard(osb__rb_t *b) {
  if (b->res) {
    b->res->data = b->data.base;
    b->data = (osb_buf_t)OSB_BUF_INIT;
    osb__result_free(b->res);
    b->res = NULL;
  }
  osb_buf_free(&b->data);
}

osb_db_result_t *osb__result_empty(int64_t affected) {
  osb__rb_t b;
  osb__rb_init(&b, 0);
  return osb__rb_finish(&b, affected);
}

void osb__result_free(osb_db_result_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->ncols; i++) free(r->colnames[i]);
  free(r->colnames);
  free(r->coltypes);
  free(r->cells);
  free(r->data);
  if (r->memo) osb_msg_unref(r->memo);
  free(r);
}

void osb__fmt_double(char *out, size_t outlen, double d) {
  if (!isfinite(d)) {
    snprintf(out, outlen, "%s", isnan(d) ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(out, outlen, "%.*g", prec, d);
    if (strtod(out, NULL) == d) return;
  }
}

/* ---- refcounting and memo ---- */

const osb_db_result_t *osb_db_result_ref(const osb_db_result_t *res) {
  osb_db_result_t *r = (osb_db_result_t *)res;
  r->refcnt++;
  return res;
}

void osb_db_result_unref(const osb_db_result_t *res) {
  osb_db_result_t *r = (osb_db_result_t *)res;
  if (!r) return;
  osb_assert(r->refcnt > 0);
  if (--r->refcnt == 0) osb__result_free(r);
}

osb_msg_t *osb_db_result_memo(const osb_db_result_t *res) { return res->memo; }

void osb_db_result_set_memo(const osb_db_result_t *res, osb_msg_t *body) {
  osb_db_result_t *r = (osb_db_result_t *)res;
  if (r->memo || !body) return;
  r->memo = osb_msg_ref(body);
  size_t extra = sizeof(*body) + body->cap + body->headroom;
  r->bytes += extra;
  osb__cache_charge(r, extra);
}

/* ---- accessors ---- */

size_t osb_db_nrows(const osb_db_result_t *res) { return res->nrows; }
size_t osb_db_ncols(const osb_db_result_t *res) { return res->ncols; }
int64_t osb_db_affected(const osb_db_result_t *res) { return res->affected; }

const char *osb_db_colname(const osb_db_result_t *res, size_t col) {
  osb_assert(col < res->ncols);
  return res->colnames[col];
}

osb_db_type_t osb_db_coltype(const osb_db_result_t *res, size_t col) {
  osb_assert(col < res->ncols);
  return (osb_db_type_t)res->coltypes[col];
}

int osb_db_col(const osb_db_result_t *res, const char *name) {
  for (size_t i = 0; i < res->ncols; i++)
    if (strcmp(res->colnames[i], name) == 0) return (int)i;
  return -1;
}

static const osb__cell_t *cell(const osb_db_result_t *res, size_t row, size_t col) {
  osb_assert(row < res->nrows && col < res->ncols);
  return &res->cells[row * res->ncols + col];
}

bool osb_db_isnull(const osb_db_result_t *res, size_t row, size_t col) {
  return cell(res, row, col)->off == OSB__CELL_NULL;
}

const char *osb_db_text(const osb_db_result_t *res, size_t row, size_t col) {
  const osb__cell_t *c = cell(res, row, col);
  return c->off == OSB__CELL_NULL ? NULL : res->data + c->off;
}

size_t osb_db_len(const osb_db_result_t *res, size_t row, size_t col) {
  return cell(res, row, col)->len;
}

static bool parse_int(const char *s, int64_t *out) {
  if (!s || !*s) return false;
  errno = 0;
  char *end;
  long long v = strtoll(s, &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

int64_t osb_db_int(const osb_db_result_t *res, size_t row, size_t col) {
  const char *s = osb_db_text(res, row, col);
  int64_t v = 0;
  if (parse_int(s, &v)) return v;
  if (s && *s) return (int64_t)strtod(s, NULL);   /* "1.0", numeric aggregates */
  return 0;
}

double osb_db_float(const osb_db_result_t *res, size_t row, size_t col) {
  const char *s = osb_db_text(res, row, col);
  return s ? strtod(s, NULL) : 0.0;
}

static bool text_true(const char *s) {
  return s && (strcmp(s, "t") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0);
}

bool osb_db_bool(const osb_db_result_t *res, size_t row, size_t col) {
  return text_true(osb_db_text(res, row, col));
}

const char *osb_db_get(const osb_db_result_t *res, size_t row, const char *colname) {
  int c = osb_db_col(res, colname);
  return c < 0 ? NULL : osb_db_text(res, row, (size_t)c);
}

int64_t osb_db_get_int(const osb_db_result_t *res, size_t row, const char *colname) {
  int c = osb_db_col(res, colname);
  return c < 0 ? 0 : osb_db_int(res, row, (size_t)c);
}

/* ---- JSON ---- */

static json_t *cell_json(const osb_db_result_t *res, size_t row, size_t col) {
  const osb__cell_t *c = cell(res, row, col);
  if (c->off == OSB__CELL_NULL) return json_null();
  const char *s = res->data + c->off;
  switch ((osb_db_type_t)res->coltypes[col]) {
    case OSB_DB_INT: {
      int64_t v;
      if (parse_int(s, &v)) return json_integer(v);
      char *end;
      double d = strtod(s, &end);
      return *s && !*end && isfinite(d) ? json_real(d) : json_stringn(s, c->len);
    }
    case OSB_DB_FLOAT: {
      char *end;
      double d = strtod(s, &end);
      if (*s && !*end && isfinite(d)) return json_real(d);
      return json_stringn(s, c->len);
    }
    case OSB_DB_BOOL:
      return json_boolean(text_true(s));
    case OSB_DB_JSON: {
      json_t *j = json_loadb(s, c->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
      return j ? j : json_stringn(s, c->len);
    }
    case OSB_DB_BLOB: {
      char *hex = osb_malloc(2 * (size_t)c->len + 1);
      osb_hex(hex, s, c->len);
      json_t *j = json_stringn(hex, 2 * (size_t)c->len);
      free(hex);
      return j;
    }
    case OSB_DB_NULL:
    case OSB_DB_TEXT:
    default: {
      json_t *j = json_stringn(s, c->len);
      return j ? j : json_null();   /* invalid UTF-8 from a BLOB-ish column */
    }
  }
}

json_t *osb_db_row_json(const osb_db_result_t *res, size_t row) {
  json_t *o = json_object();
  for (size_t i = 0; i < res->ncols; i++) json_object_set_new(o, res->colnames[i], cell_json(res, row, i));
  return o;
}

json_t *osb_db_rows_json(const osb_db_result_t *res) {
  json_t *a = json_array();
  for (size_t r = 0; r < res->nrows; r++) json_array_append_new(a, osb_db_row_json(res, r));
  return a;
}
