/* metrics.c: the metrics registry and its Prometheus text rendering.
 *
 * Layout. The registry is an array of families in registration order
 * (registration happens at start, so finding a family by name is a linear
 * scan). Each family owns an open-addressing hash table of its series,
 * keyed by FNV-1a over the label values, plus a singly linked list of the
 * same series in creation order for rendering:
 *
 *   families[] ──> osb_metric ──slots[cap]──> osb_series (one block each:
 *                      │                        struct | buckets[nbounds+1]
 *                      └─head──> s1 ─next─> s2   | values[nlabels] | strings)
 *
 * The per-request path (osb_metric_series2 with an existing route/status)
 * hashes two short strings, probes a table kept at most half full and
 * compares the stored values: no allocation, no locks (loop thread only). */
#include "obs/metrics.h"

#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define OSB__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OSB__ASAN 1
#endif
#endif
#ifdef OSB__ASAN
/* The sanitizer runtime's interface (sanitizer/allocator_interface.h, which
 * not every compiler package installs): user bytes allocated and not freed. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

const double OSB_METRIC_SECONDS_BUCKETS[] = {
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t OSB_METRIC_SECONDS_NBUCKETS = OSB_ARRAY_LEN(OSB_METRIC_SECONDS_BUCKETS);

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_GAUGE_FN, KIND_COUNTER_FN } kind_t;

struct osb_series {
  osb_metric_t *family;
  osb_series_t *next;   /* creation order */
  uint64_t hash;
  double value;         /* counter, gauge */
  double sum;           /* histogram */
  uint64_t count;       /* histogram */
  uint64_t *buckets;    /* histogram: nbounds + 1 per-bucket counts (last = +Inf), in this block */
  char **values;        /* nlabels label values, in this block */
};

struct osb_metric {
  char *name;
  char *help;
  kind_t kind;
  size_t nlabels;
  char **labels;
  char *labels_spec;    /* normalized "a,b" for checking re-registration */
  double *bounds;       /* histogram */
  size_t nbounds;
  osb_metric_fn fn;     /* callback families */
  void *ud;
  osb_series_t **slots; /* open addressing, cap is a power of two, at most half full */
  size_t cap;
  size_t nseries;
  osb_series_t *head, *tail;
};

static osb_metric_t **families;
static size_t nfamilies, capfamilies;

/* ---- names ---- */

static bool valid_metric_name(const char *s) {
  if (!s || !*s) return false;
  for (const char *p = s; *p; p++) {
    char c = *p;
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(p != s && c >= '0' && c <= '9')) return false;
  }
  return true;
}

static bool valid_label_name(const char *s, size_t n) {
  if (n == 0) return false;
  if (n >= 2 && s[0] == '_' && s[1] == '_') return false; /* reserved by Prometheus */
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

/* "route, status" → "route,status" (spaces dropped). Caller frees. */
static char *normalize_labels(const char *spec) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_append(&b, "", 0); /* allocated and terminated even when empty */
  for (const char *p = spec ? spec : ""; *p; p++)
    if (*p != ' ' && *p != '\t') osb_buf_append(&b, p, 1);
  return b.base;
}

static const char *kind_type(kind_t k) {
  switch (k) {
  case KIND_COUNTER:
  case KIND_COUNTER_FN: return "counter";
  case KIND_GAUGE:
  case KIND_GAUGE_FN: return "gauge";
  case KIND_HISTOGRAM: return "histogram";
  }
  osb_assert(!"bad metric kind");
}

/* ---- families ---- */

static osb_metric_t *find_family(const char *name) {
  for (size_t i = 0; i < nfamilies; i++)
    if (strcmp(families[i]->name, name) == 0) return families[i];
  return NULL;
}

osb_metric_t *osb_metric_find(const char *name) { return name ? find_family(name) : NULL; }

static osb_metric_t *family_new(const char *name, const char *help, kind_t kind, const char *labels) {
  osb_assert(valid_metric_name(name));
  char *spec = normalize_labels(labels);
  osb_metric_t *m = find_family(name);
  if (m) {
    osb_assert(m->kind == kind);
    osb_assert(strcmp(m->labels_spec, spec) == 0);
    free(spec);
    return m;
  }

  m = osb_calloc(1, sizeof(*m));
  m->name = osb_strdup(name);
  m->help = osb_strdup(help ? help : "");
  m->kind = kind;
  m->labels_spec = spec;
  if (*spec) {
    size_t n = 1;
    for (const char *p = spec; *p; p++) n += *p == ',';
    m->labels = osb_calloc(n, sizeof(char *));
    const char *p = spec;
    for (size_t i = 0; i < n; i++) {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      osb_assert(valid_label_name(p, len));
      /* "le" names the bucket bound of a histogram. */
      osb_assert(!(kind == KIND_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0));
      m->labels[i] = osb_strndup(p, len);
      for (size_t j = 0; j < i; j++) osb_assert(strcmp(m->labels[j], m->labels[i]) != 0);
      p = end ? end + 1 : p + len;
    }
    m->nlabels = n;
  }

  if (nfamilies == capfamilies) {
    capfamilies = capfamilies ? capfamilies * 2 : 16;
    families = osb_realloc(families, capfamilies * sizeof(*families));
  }
  families[nfamilies++] = m;
  return m;
}

osb_metric_t *osb_metric_counter(const char *name, const char *help, const char *labels) {
  return family_new(name, help, KIND_COUNTER, labels);
}

osb_metric_t *osb_metric_gauge(const char *name, const char *help, const char *labels) {
  return family_new(name, help, KIND_GAUGE, labels);
}

osb_metric_t *osb_metric_histogram(const char *name, const char *help, const char *labels,
                                   const double *bounds, size_t nbounds) {
  osb_metric_t *m = family_new(name, help, KIND_HISTOGRAM, labels);
  if (m->bounds) return m; /* registered before */
  if (!bounds) {
    bounds = OSB_METRIC_SECONDS_BUCKETS;
    nbounds = OSB_METRIC_SECONDS_NBUCKETS;
  }
  osb_assert(nbounds > 0);
  for (size_t i = 0; i < nbounds; i++) {
    osb_assert(isfinite(bounds[i]));
    osb_assert(i == 0 || bounds[i] > bounds[i - 1]);
  }
  m->bounds = osb_malloc(nbounds * sizeof(double));
  memcpy(m->bounds, bounds, nbounds * sizeof(double));
  m->nbounds = nbounds;
  return m;
}

static void register_fn(const char *name, const char *help, kind_t kind, osb_metric_fn fn, void *ud) {
  osb_assert(fn != NULL);
  osb_metric_t *m = family_new(name, help, kind, NULL);
  m->fn = fn;
  m->ud = ud;
}

void osb_metric_gauge_fn(const char *name, const char *help, osb_metric_fn fn, void *ud) {
  register_fn(name, help, KIND_GAUGE_FN, fn, ud);
}

void osb_metric_counter_fn(const char *name, const char *help, osb_metric_fn fn, void *ud) {
  register_fn(name, help, KIND_COUNTER_FN, fn, ud);
}

/* ---- series lookup ---- */

#define FNV_OFFSET UINT64_C(14695981039346656037)
#define FNV_PRIME UINT64_C(1099511628211)

static uint64_t hash_values(const char *const *values, size_t n) {
  uint64_t h = FNV_OFFSET;
  for (size_t i = 0; i < n; i++) {
    for (const unsigned char *p = (const unsigned char *)(values[i] ? values[i] : ""); *p; p++) {
      h ^= *p;
      h *= FNV_PRIME;
    }
    /* 0xff never occurs in UTF-8: ("a","bc") and ("ab","c") hash apart. */
    h ^= 0xff;
    h *= FNV_PRIME;
  }
  return h;
}

static bool values_eq(const osb_series_t *s, const char *const *values, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(s->values[i], values[i] ? values[i] : "") != 0) return false;
  return true;
}

/* The slot holding the series, or the empty slot where it would go. */
static size_t probe(const osb_metric_t *m, uint64_t h, const char *const *values, size_t n) {
  size_t mask = m->cap - 1;
  size_t i = (size_t)h & mask;
  for (;;) {
    const osb_series_t *s = m->slots[i];
    if (!s || (s->hash == h && values_eq(s, values, n))) return i;
    i = (i + 1) & mask;
  }
}

static void grow(osb_metric_t *m) {
  size_t ncap = m->cap ? m->cap * 2 : 8;
  osb_series_t **nslots = osb_calloc(ncap, sizeof(*nslots));
  for (size_t i = 0; i < m->cap; i++) {
    osb_series_t *s = m->slots[i];
    if (!s) continue;
    size_t j = (size_t)s->hash & (ncap - 1);
    while (nslots[j]) j = (j + 1) & (ncap - 1);
    nslots[j] = s;
  }
  free(m->slots);
  m->slots = nslots;
  m->cap = ncap;
}

static osb_series_t *series_new(osb_metric_t *m, uint64_t h, const char *const *values, size_t n) {
  size_t nb = m->kind == KIND_HISTOGRAM ? m->nbounds + 1 : 0;
  size_t strbytes = 0;
  for (size_t i = 0; i < n; i++) strbytes += strlen(values[i] ? values[i] : "") + 1;
  /* Every part is a multiple of 8 bytes up to the strings, so each stays aligned. */
  size_t off_buckets = sizeof(osb_series_t);
  size_t off_values = off_buckets + nb * sizeof(uint64_t);
  size_t off_strings = off_values + n * sizeof(char *);
  char *block = osb_calloc(1, off_strings + strbytes);

  osb_series_t *s = (osb_series_t *)block;
  s->family = m;
  s->hash = h;
  s->buckets = nb ? (uint64_t *)(block + off_buckets) : NULL;
  s->values = (char **)(block + off_values);
  char *p = block + off_strings;
  for (size_t i = 0; i < n; i++) {
    const char *v = values[i] ? values[i] : "";
    size_t len = strlen(v);
    memcpy(p, v, len + 1);
    s->values[i] = p;
    p += len + 1;
  }
  return s;
}

osb_series_t *osb_metric_series(osb_metric_t *m, const char *const *values, size_t nvalues) {
  osb_assert(m != NULL);
  osb_assert(m->kind != KIND_GAUGE_FN && m->kind != KIND_COUNTER_FN);
  osb_assert(nvalues == m->nlabels);
  uint64_t h = hash_values(values, nvalues);
  if (m->cap) {
    osb_series_t *s = m->slots[probe(m, h, values, nvalues)];
    if (s) return s;
  }
  if ((m->nseries + 1) * 2 > m->cap) grow(m);
  osb_series_t *s = series_new(m, h, values, nvalues);
  m->slots[probe(m, h, values, nvalues)] = s;
  m->nseries++;
  if (m->tail) m->tail->next = s;
  else m->head = s;
  m->tail = s;
  return s;
}

osb_series_t *osb_metric_series0(osb_metric_t *m) { return osb_metric_series(m, NULL, 0); }

osb_series_t *osb_metric_series1(osb_metric_t *m, const char *v1) {
  const char *v[1] = { v1 };
  return osb_metric_series(m, v, 1);
}

osb_series_t *osb_metric_series2(osb_metric_t *m, const char *v1, const char *v2) {
  const char *v[2] = { v1, v2 };
  return osb_metric_series(m, v, 2);
}

/* ---- recording ---- */

void osb_series_inc(osb_series_t *s, double v) {
  kind_t k = s->family->kind;
  osb_assert(k == KIND_COUNTER || k == KIND_GAUGE);
  if (k == KIND_COUNTER && !(v >= 0)) return; /* negative or NaN: a counter never goes down */
  s->value += v;
}

void osb_series_set(osb_series_t *s, double v) {
  kind_t k = s->family->kind;
  osb_assert(k == KIND_COUNTER || k == KIND_GAUGE);
  s->value = v;
}

void osb_series_observe(osb_series_t *s, double v) {
  const osb_metric_t *m = s->family;
  osb_assert(m->kind == KIND_HISTOGRAM);
  /* First bound >= v; NaN compares false everywhere and lands in +Inf. */
  size_t lo = 0, hi = m->nbounds;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (v <= m->bounds[mid]) hi = mid;
    else lo = mid + 1;
  }
  s->buckets[lo]++;
  s->count++;
  s->sum += v;
}

double osb_series_value(const osb_series_t *s) {
  return s->family->kind == KIND_HISTOGRAM ? (double)s->count : s->value;
}

double osb_series_sum(const osb_series_t *s) {
  return s->family->kind == KIND_HISTOGRAM ? s->sum : s->value;
}

const char *osb_series_label(const osb_series_t *s, size_t i) {
  return i < s->family->nlabels ? s->values[i] : NULL;
}

double osb_histogram_quantile(const double *bounds, size_t nbounds, const uint64_t *counts, double q) {
  uint64_t total = 0;
  for (size_t i = 0; i <= nbounds; i++) total += counts[i];
  if (total == 0 || nbounds == 0 || isnan(q)) return 0;
  if (q < 0) q = 0;
  if (q > 1) q = 1;

  double rank = q * (double)total;
  uint64_t below = 0; /* observations in the buckets before i */
  size_t i = 0;
  /* The first bucket whose cumulative count reaches the rank (and is not empty,
   * so q = 0 answers the lower edge of the first populated bucket). */
  while (i < nbounds && (counts[i] == 0 || (double)(below + counts[i]) < rank)) {
    below += counts[i];
    i++;
  }
  if (i == nbounds) return bounds[nbounds - 1]; /* in +Inf: the highest finite bound */

  double lower = i == 0 ? (bounds[0] > 0 ? 0 : bounds[0]) : bounds[i - 1];
  double upper = bounds[i];
  double frac = (rank - (double)below) / (double)counts[i];
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  return lower + (upper - lower) * frac;
}

double osb_series_quantile(const osb_series_t *s, double q) {
  const osb_metric_t *m = s->family;
  if (m->kind != KIND_HISTOGRAM) return 0;
  return osb_histogram_quantile(m->bounds, m->nbounds, s->buckets, q);
}

/* ---- reading families ---- */

osb_series_t *osb_metric_next_series(const osb_metric_t *m, const osb_series_t *prev) {
  return prev ? prev->next : m->head;
}

double osb_metric_total(const osb_metric_t *m) {
  if (m->kind == KIND_GAUGE_FN || m->kind == KIND_COUNTER_FN) return m->fn(m->ud);
  double t = 0;
  for (const osb_series_t *s = m->head; s; s = s->next) t += osb_series_value(s);
  return t;
}

const double *osb_metric_bounds(const osb_metric_t *m, size_t *n) {
  *n = m->nbounds;
  return m->bounds;
}

void osb_metric_bucket_counts(const osb_metric_t *m, uint64_t *out, size_t n) {
  osb_assert(m->kind == KIND_HISTOGRAM);
  osb_assert(n >= m->nbounds + 1);
  memset(out, 0, (m->nbounds + 1) * sizeof(uint64_t));
  for (const osb_series_t *s = m->head; s; s = s->next)
    for (size_t i = 0; i <= m->nbounds; i++) out[i] += s->buckets[i];
}

double osb_metric_quantile(const osb_metric_t *m, double q) {
  if (m->kind != KIND_HISTOGRAM) return 0;
  uint64_t stackbuf[32];
  uint64_t *counts = m->nbounds + 1 <= OSB_ARRAY_LEN(stackbuf)
                       ? stackbuf : osb_malloc((m->nbounds + 1) * sizeof(uint64_t));
  osb_metric_bucket_counts(m, counts, m->nbounds + 1);
  double r = osb_histogram_quantile(m->bounds, m->nbounds, counts, q);
  if (counts != stackbuf) free(counts);
  return r;
}

/* ---- rendering ---- */

/* Shortest text that reads back as the same double; whole numbers without
 * exponent or fraction; Prometheus spellings for the special values. */
static void fmt_num(char *out, size_t n, double v) {
  if (isnan(v)) { snprintf(out, n, "NaN"); return; }
  if (isinf(v)) { snprintf(out, n, v > 0 ? "+Inf" : "-Inf"); return; }
  if (v == 0) { snprintf(out, n, "0"); return; }
  if (v == trunc(v) && fabs(v) < 1e18) { snprintf(out, n, "%.0f", v); return; }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(out, n, "%.*g", prec, v);
    if (strtod(out, NULL) == v) return;
  }
}

static void put_num(osb_buf_t *b, double v) {
  char tmp[64];
  fmt_num(tmp, sizeof(tmp), v);
  osb_buf_puts(b, tmp);
}

static void put_u64(osb_buf_t *b, uint64_t v) {
  char tmp[24];
  int len = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
  osb_buf_append(b, tmp, (size_t)len);
}

/* `quotes`: label value (escape \, " and newline); otherwise HELP text (\ and newline). */
static void put_escaped(osb_buf_t *b, const char *s, bool quotes) {
  const char *run = s;
  for (const char *p = s; *p; p++) {
    const char *esc = NULL;
    if (*p == '\\') esc = "\\\\";
    else if (*p == '\n') esc = "\\n";
    else if (*p == '"' && quotes) esc = "\\\"";
    if (!esc) continue;
    osb_buf_append(b, run, (size_t)(p - run));
    osb_buf_append(b, esc, 2);
    run = p + 1;
  }
  osb_buf_puts(b, run);
}

/* name{l1="v1",...[,le="x"]} with the braces left out when there is nothing in them. */
static void put_series_name(osb_buf_t *b, const osb_metric_t *m, const char *suffix,
                            const osb_series_t *s, const char *le) {
  osb_buf_puts(b, m->name);
  if (suffix) osb_buf_puts(b, suffix);
  if (m->nlabels == 0 && !le) return;
  osb_buf_append(b, "{", 1);
  for (size_t i = 0; i < m->nlabels; i++) {
    if (i) osb_buf_append(b, ",", 1);
    osb_buf_puts(b, m->labels[i]);
    osb_buf_append(b, "=\"", 2);
    put_escaped(b, s->values[i], true);
    osb_buf_append(b, "\"", 1);
  }
  if (le) {
    if (m->nlabels) osb_buf_append(b, ",", 1);
    osb_buf_puts(b, "le=\"");
    osb_buf_puts(b, le);
    osb_buf_append(b, "\"", 1);
  }
  osb_buf_append(b, "}", 1);
}

static void render_histogram_series(osb_buf_t *b, const osb_metric_t *m, const osb_series_t *s) {
  char le[64];
  uint64_t cum = 0;
  for (size_t i = 0; i < m->nbounds; i++) {
    cum += s->buckets[i];
    fmt_num(le, sizeof(le), m->bounds[i]);
    put_series_name(b, m, "_bucket", s, le);
    osb_buf_append(b, " ", 1);
    put_u64(b, cum);
    osb_buf_append(b, "\n", 1);
  }
  put_series_name(b, m, "_bucket", s, "+Inf");
  osb_buf_append(b, " ", 1);
  put_u64(b, s->count);
  osb_buf_append(b, "\n", 1);
  put_series_name(b, m, "_sum", s, NULL);
  osb_buf_append(b, " ", 1);
  put_num(b, s->sum);
  osb_buf_append(b, "\n", 1);
  put_series_name(b, m, "_count", s, NULL);
  osb_buf_append(b, " ", 1);
  put_u64(b, s->count);
  osb_buf_append(b, "\n", 1);
}

void osb_metrics_render(osb_buf_t *out) {
  for (size_t f = 0; f < nfamilies; f++) {
    const osb_metric_t *m = families[f];
    if (*m->help) {
      osb_buf_puts(out, "# HELP ");
      osb_buf_puts(out, m->name);
      osb_buf_append(out, " ", 1);
      put_escaped(out, m->help, false);
      osb_buf_append(out, "\n", 1);
    }
    osb_buf_puts(out, "# TYPE ");
    osb_buf_puts(out, m->name);
    osb_buf_append(out, " ", 1);
    osb_buf_puts(out, kind_type(m->kind));
    osb_buf_append(out, "\n", 1);

    if (m->kind == KIND_GAUGE_FN || m->kind == KIND_COUNTER_FN) {
      osb_buf_puts(out, m->name);
      osb_buf_append(out, " ", 1);
      put_num(out, m->fn(m->ud));
      osb_buf_append(out, "\n", 1);
      continue;
    }
    for (const osb_series_t *s = m->head; s; s = s->next) {
      if (m->kind == KIND_HISTOGRAM) {
        render_histogram_series(out, m, s);
        continue;
      }
      put_series_name(out, m, NULL, s, NULL);
      osb_buf_append(out, " ", 1);
      put_num(out, s->value);
      osb_buf_append(out, "\n", 1);
    }
  }
}

/* ---- process figures ---- */

double osb_process_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, resident = 0;
  int n = fscanf(f, "%lu %lu", &size, &resident);
  fclose(f);
  long page = sysconf(_SC_PAGESIZE);
  if (n != 2 || page <= 0) return 0;
  return (double)resident * (double)page;
}

double osb_process_cpu_seconds(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  /* Sum in whole microseconds, divide once: renders as 0.058344, not 0.05834399999999999. */
  int64_t us = ((int64_t)ru.ru_utime.tv_sec + (int64_t)ru.ru_stime.tv_sec) * 1000000 +
               (int64_t)ru.ru_utime.tv_usec + (int64_t)ru.ru_stime.tv_usec;
  return (double)us / 1e6;
}

/* What RSS cannot tell apart: memory the program holds from memory the
 * allocator keeps (glibc's free chunks and arenas; under ASan the
 * quarantine, redzones and per-size-class regions, which only grow to their
 * peak). A leak of reachable memory grows this figure. */
double osb_process_heap_bytes(void) {
#ifdef OSB__ASAN
  return (double)__sanitizer_get_current_allocated_bytes();
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return (double)mi.uordblks + (double)mi.hblkhd;
#else
  return 0;
#endif
}

static double rss_fn(void *ud) { OSB_UNUSED(ud); return osb_process_rss_bytes(); }
static double heap_fn(void *ud) { OSB_UNUSED(ud); return osb_process_heap_bytes(); }
static double cpu_fn(void *ud) { OSB_UNUSED(ud); return osb_process_cpu_seconds(); }

void osb_metrics_init(void) {
  osb_metric_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", rss_fn, NULL);
  osb_metric_gauge_fn("process_heap_bytes",
                      "Bytes allocated with malloc and not freed (not the allocator's retained pages).",
                      heap_fn, NULL);
  osb_metric_counter_fn("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
                        cpu_fn, NULL);
}

/* ---- teardown ---- */

void osb_metrics_reset(void) {
  for (size_t f = 0; f < nfamilies; f++) {
    osb_metric_t *m = families[f];
    osb_series_t *s = m->head;
    while (s) {
      osb_series_t *next = s->next;
      free(s); /* one block: buckets, values and strings included */
      s = next;
    }
    for (size_t i = 0; i < m->nlabels; i++) free(m->labels[i]);
    free(m->labels);
    free(m->labels_spec);
    free(m->bounds);
    free(m->slots);
    free(m->name);
    free(m->help);
    free(m);
  }
  free(families);
  families = NULL;
  nfamilies = capfamilies = 0;
}
