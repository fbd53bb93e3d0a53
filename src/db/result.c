/* result.c: query results: building (loop or worker thread), accessors,
 * JSON rendering, reference counting and the memo slot. */
#include "db/internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>
#include <jansson.h>
#include "core/json.h"

/* ---- building ---- */

/* One allocation holds the result, its column name pointers and its
 * column types; the names share one buffer (b->names; until finish, each
 * colnames slot holds its name's offset there). */
void osb__rb_init(osb__rb_t *b, size_t ncols) {
  memset(b, 0, sizeof(*b));
  size_t n = ncols ? ncols : 1;
  osb_db_result_t *r = osb_calloc(1, sizeof(*r) + n * sizeof(char *) + n);
  r->refcnt = 1;
  r->ncols = (uint32_t)ncols;
  r->colnames = (char **)(r + 1);
  r->coltypes = (uint8_t *)(r->colnames + n);
  b->res = r;
}

void osb__rb_reserve(osb__rb_t *b, size_t ncells, size_t nbytes) {
  if (ncells > b->capcells - b->ncells) {
    b->capcells = b->ncells + ncells;
    b->res->cells = osb_realloc(b->res->cells, b->capcells * sizeof(osb__cell_t));
  }
  osb_buf_reserve(&b->data, nbytes);
}

void osb__rb_col(osb__rb_t *b, size_t col, const char *name, osb_db_type_t type) {
  osb_assert(col < b->res->ncols);
  /* the offset waits in the pointer slot until the buffer stops moving */
  b->res->colnames[col] = (char *)(uintptr_t)b->names.len;
  size_t n = name ? strlen(name) : 0;
  osb_buf_reserve(&b->names, n + 1);
  if (n) memcpy(b->names.base + b->names.len, name, n);
  b->names.len += n + 1;
  b->names.base[b->names.len - 1] = 0;
  b->names.base[b->names.len] = 0;
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
  osb_buf_reserve(&b->data, n + 1);
  if (n) memcpy(b->data.base + b->data.len, p, n);
  b->data.len += n + 1;               /* every cell NUL-terminated */
  b->data.base[b->data.len - 1] = 0;
  b->data.base[b->data.len] = 0;
}

/* Point colnames into the names buffer, which now belongs to the result. */
static void fix_names(osb__rb_t *b) {
  osb_db_result_t *r = b->res;
  if (!b->names.base) osb_buf_append(&b->names, "", 0);
  r->names = b->names.base;
  for (size_t i = 0; i < r->ncols; i++) r->colnames[i] = r->names + (uintptr_t)r->colnames[i];
  b->names = (osb_buf_t)OSB_BUF_INIT;
}

osb_db_result_t *osb__rb_finish(osb__rb_t *b, int64_t affected) {
  osb_db_result_t *r = b->res;
  osb_assert(r->ncols == 0 || b->ncells % r->ncols == 0);
  r->nrows = r->ncols ? (uint32_t)(b->ncells / r->ncols) : 0;
  r->affected = affected;
  if (!b->data.base) osb_buf_append(&b->data, "", 1);
  r->data = b->data.base;
  size_t names_cap = b->names.cap;
  fix_names(b);
  r->bytes = sizeof(*r) + b->data.cap + b->capcells * sizeof(osb__cell_t) + r->ncols * (sizeof(char *) + 1) +
             names_cap;
  b->res = NULL;
  b->data = (osb_buf_t)OSB_BUF_INIT;
  return r;
}

void osb__rb_discard(osb__rb_t *b) {
  if (b->res) {
    b->res->data = b->data.base;
    b->data = (osb_buf_t)OSB_BUF_INIT;
    fix_names(b);
    osb__result_free(b->res);
    b->res = NULL;
  }
  osb_buf_free(&b->data);
  osb_buf_free(&b->names);
}

osb_db_result_t *osb__result_empty(int64_t affected) {
  osb__rb_t b;
  osb__rb_init(&b, 0);
  return osb__rb_finish(&b, affected);
}

void osb__result_free(osb_db_result_t *r) {
  if (!r) return;
  free(r->names);
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

/* ---- JSON text, written directly ----
 * The same JSON value osb_json_dump_buf() writes for osb_db_row_json()
 * (not always the same bytes: core's escaper writes DEL as \u007f and
 * control characters in lower-case hex, and non-UTF-8 text as U+FFFD where
 * the tree gives null; tests/unit/db/test_result.c), without the jansson
 * tree: building it and dumping it (a hash table per row, a string
 * copy per cell, snprintf for every number and for jansson's cycle check)
 * cost about 55,000 instructions per ten-column row, the largest single
 * item of an uncached GET /api/market/procedures/:id (docs/benchmarks.md,
 * "Uncached procedure by id"). Integer and real cells go out as the text
 * the database sent when that text already is what jansson would print. */

/* Append the JSON of real d as core/json.h's format prints it (jansson's
 * JSON_REAL_PRECISION(15): "%.15g", ".0" added when it looks like an
 * integer, no '+' and no leading zeros in the exponent). d is finite. */
static void dump_real(osb_buf_t *b, double d) {
  char buf[40];
  int n = snprintf(buf, sizeof(buf), "%.15g", d);
  if (n < 0 || (size_t)n >= sizeof(buf) - 3) n = (int)strlen(buf);
  if (!strchr(buf, '.') && !strchr(buf, 'e')) {
    buf[n++] = '.';
    buf[n++] = '0';
    buf[n] = 0;
  }
  char *e = strchr(buf, 'e');
  if (e) {
    char *start = e + 1, *end = e + 2;
    if (*start == '-') start++;
    while (*end == '0') end++;
    if (end != start) {
      memmove(start, end, (size_t)(buf + n - end) + 1);
      n -= (int)(end - start);
    }
  }
  osb_buf_append(b, buf, (size_t)n);
}

/* s[0..n) is a decimal that "%.15g" of its double prints unchanged:
 * -?(0|[1-9][0-9]*)(.[0-9]*[1-9])?, at most 15 significant digits, decimal
 * exponent in [-4, 15) (so %g keeps fixed notation). Any decimal of at most
 * 15 significant digits survives the trip through a double (DBL_DIG). */
static bool plain_decimal(const char *s, size_t n, bool *has_point) {
  size_t i = 0;
  if (i < n && s[i] == '-') i++;
  size_t int_start = i;
  while (i < n && s[i] >= '0' && s[i] <= '9') i++;
  size_t int_len = i - int_start;
  if (int_len == 0 || (int_len > 1 && s[int_start] == '0')) return false;
  bool zero_int = int_len == 1 && s[int_start] == '0';
  size_t sig = zero_int ? 0 : int_len;
  int exp10 = zero_int ? 0 : (int)int_len - 1;
  *has_point = false;
  if (i < n && s[i] == '.') {
    *has_point = true;
    size_t f = ++i, lead = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    size_t flen = i - f;
    if (flen == 0 || s[i - 1] == '0') return false;   /* "1." or a trailing zero ("7.00") */
    if (zero_int) {
      while (lead < flen && s[f + lead] == '0') lead++;
      exp10 = -(int)lead - 1;
      sig = flen - lead;
    } else {
      sig += flen;
    }
  }
  if (i != n) return false;
  if (sig == 0) return !*has_point;                   /* "0" or "-0"; "0.0" has a trailing zero */
  return sig <= 15 && exp10 >= -4 && exp10 < 15;
}

/* Canonical int64 text: -?(0|[1-9][0-9]{0,17}), so it fits without parsing. */
static bool plain_integer(const char *s, size_t n) {
  size_t i = s[0] == '-' ? 1 : 0;
  if (n <= i || n - i > 18) return false;
  if (s[i] == '0') return n - i == 1 && i == 0;
  for (; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

/* True if no byte of s[0..n) needs care in a JSON string: none is below
 * 0x20, '"', '\\', DEL or above it. Eight bytes at a time (the classic
 * "has a byte less than" / "has a zero byte" word tests, exact for
 * whether any such byte exists). */
static bool plain_ascii(const char *s, size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x, q, bs, del;
    memcpy(&x, s + i, 8);
    q = x ^ (ones * '"');
    bs = x ^ (ones * '\\');
    del = x ^ (ones * 0x7f);
    uint64_t t = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | ((del - ones) & ~del) | x;
    if (t & highs) return false;
  }
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == '"' || ch == '\\' || ch >= 0x7f) return false;
  }
  return true;
}

/* True if s[0..n) is well-formed UTF-8 with nothing to escape. */
static bool plain_utf8(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == '"' || ch == '\\' || ch == 0x7f) return false;
  }
  return osb_utf8_valid(s, n);
}

/* A JSON string: what osb_buf_json_str writes, in one copy when nothing
 * needs escaping (the common case; the escaper goes byte by byte). */
static void dump_str(osb_buf_t *b, const char *s, size_t n) {
  if (!plain_ascii(s, n) && !plain_utf8(s, n)) {
    osb_buf_json_str(b, s, n);
    return;
  }
  osb_buf_reserve(b, n + 2);
  char *w = b->base + b->len;
  w[0] = '"';
  memcpy(w + 1, s, n);
  w[n + 1] = '"';
  b->len += n + 2;
  b->base[b->len] = 0;
}

/* An INT or FLOAT cell, as cell_json types it. */
static void dump_number(osb_buf_t *b, const osb__cell_t *c, const char *s, bool is_float) {
  if (!is_float) {
    int64_t v;
    if (plain_integer(s, c->len)) {
      osb_buf_append(b, s, c->len);
      return;
    }
    if (parse_int(s, &v)) {
      osb_buf_printf(b, "%lld", (long long)v);
      return;
    }
  }
  bool point;
  if (c->len && plain_decimal(s, c->len, &point)) {
    osb_buf_append(b, s, c->len);
    if (!point) osb_buf_append(b, ".0", 2);
    return;
  }
  char *end;
  double d = strtod(s, &end);
  if (*s && !*end && isfinite(d)) dump_real(b, d);
  else dump_str(b, s, c->len);
}

static void dump_cell(osb_buf_t *b, const osb_db_result_t *res, size_t row, size_t col) {
  const osb__cell_t *c = cell(res, row, col);
  if (c->off == OSB__CELL_NULL) {
    osb_buf_append(b, "null", 4);
    return;
  }
  const char *s = res->data + c->off;
  switch ((osb_db_type_t)res->coltypes[col]) {
    case OSB_DB_INT:
      dump_number(b, c, s, false);
      return;
    case OSB_DB_FLOAT:
      dump_number(b, c, s, true);
      return;
    case OSB_DB_BOOL:
      if (text_true(s)) osb_buf_append(b, "true", 4);
      else osb_buf_append(b, "false", 5);
      return;
    case OSB_DB_JSON:
    case OSB_DB_BLOB: {
      /* rare in hot reads: the tree path, one cell */
      json_t *j = cell_json(res, row, col);
      if (osb_json_dump_buf(j, b) != 0) osb_buf_append(b, "null", 4);
      json_decref(j);
      return;
    }
    case OSB_DB_NULL:
    case OSB_DB_TEXT:
    default:
      dump_str(b, s, c->len);
      return;
  }
}

/* Two columns with one name: a jansson object keeps the name once (the
 * last value, at the first one's place). Rare; such a row takes the tree. */
static bool dup_colnames(const osb_db_result_t *res) {
  for (size_t i = 1; i < res->ncols; i++)
    for (size_t j = 0; j < i; j++)
      if (res->colnames[i][0] == res->colnames[j][0] && strcmp(res->colnames[i], res->colnames[j]) == 0) return true;
  return false;
}

void osb_db_row_dump(const osb_db_result_t *res, size_t row, osb_buf_t *b) {
  osb_assert(row < res->nrows);
  if (res->ncols > 1 && dup_colnames(res)) {
    json_t *j = osb_db_row_json(res, row);
    osb_json_dump_buf(j, b);
    json_decref(j);
    return;
  }
  osb_buf_append(b, "{", 1);
  for (size_t i = 0; i < res->ncols; i++) {
    if (i) osb_buf_append(b, ",", 1);
    dump_str(b, res->colnames[i], strlen(res->colnames[i]));
    osb_buf_append(b, ":", 1);
    dump_cell(b, res, row, i);
  }
  osb_buf_append(b, "}", 1);
}

void osb_db_rows_dump(const osb_db_result_t *res, size_t nrows, osb_buf_t *b) {
  if (nrows > res->nrows) nrows = res->nrows;
  osb_buf_append(b, "[", 1);
  for (size_t r = 0; r < nrows; r++) {
    if (r) osb_buf_append(b, ",", 1);
    osb_db_row_dump(res, r, b);
  }
  osb_buf_append(b, "]", 1);
}
