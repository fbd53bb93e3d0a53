/* metrics.h: the metrics registry, rendered as Prometheus text at /metrics.
 *
 * Families are registered once at start (counter, gauge, histogram) with a
 * fixed list of label names; a series is one combination of label values,
 * created on first use and kept for the life of the process. Hot paths look
 * a series up once and keep the pointer. Loop thread only: worker threads
 * hand results back to the loop before recording them.
 *
 * Ownership: the registry owns every family and series. Pointers returned by
 * the functions below stay valid until osb_metrics_reset(). Names, help
 * texts, label names and label values are copied.
 *
 * Programming errors (an invalid metric or label name, a kind mismatch such
 * as observing a counter, a wrong number of label values) fail loudly with
 * osb_assert. */
#ifndef OSB_METRICS_H
#define OSB_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

typedef struct osb_metric osb_metric_t;   /* a family */
typedef struct osb_series osb_series_t;   /* one label combination */

/* `labels` is a comma list of label names ("route,status") or NULL/"" for none.
 * Registering a name twice returns the existing family (it must be of the
 * same kind). A family has no series until one is asked for, so a family
 * nobody recorded into renders as its HELP and TYPE lines only. */
osb_metric_t *osb_metric_counter(const char *name, const char *help, const char *labels);
osb_metric_t *osb_metric_gauge(const char *name, const char *help, const char *labels);
/* `bounds` are the upper bounds (le) in increasing order; copied. NULL = default seconds buckets
 * (OSB_METRIC_SECONDS_BUCKETS). The +Inf bucket is implicit. */
osb_metric_t *osb_metric_histogram(const char *name, const char *help, const char *labels,
                                   const double *bounds, size_t nbounds);

/* 0.0005 … 10 seconds, 14 bounds. */
extern const double OSB_METRIC_SECONDS_BUCKETS[];
extern const size_t OSB_METRIC_SECONDS_NBUCKETS;

/* A gauge computed at render time (pool size, RSS...). No labels. `fn` is
 * called from osb_metrics_render() on the loop thread; `ud` is borrowed and
 * must outlive the registry (or the next registration of the same name,
 * which replaces fn and ud). */
typedef double (*osb_metric_fn)(void *ud);
void osb_metric_gauge_fn(const char *name, const char *help, osb_metric_fn fn, void *ud);
/* Same, rendered with TYPE counter (a monotonic total kept elsewhere, e.g. CPU seconds). */
void osb_metric_counter_fn(const char *name, const char *help, osb_metric_fn fn, void *ud);

/* The series for label values, in the family's label order; `nvalues` must match.
 * A NULL value counts as "". Finding an existing series allocates nothing
 * (FNV-1a over the values, open addressing); a new one is created. */
osb_series_t *osb_metric_series(osb_metric_t *m, const char *const *values, size_t nvalues);
/* Shorthands for families with zero, one or two labels. */
osb_series_t *osb_metric_series0(osb_metric_t *m);
osb_series_t *osb_metric_series1(osb_metric_t *m, const char *v1);
osb_series_t *osb_metric_series2(osb_metric_t *m, const char *v1, const char *v2);

/* Counter or gauge. A counter ignores negative and NaN increments. */
void osb_series_inc(osb_series_t *s, double v);
/* Gauge; also a counter that mirrors a total kept elsewhere (the caller keeps it monotonic). */
void osb_series_set(osb_series_t *s, double v);
void osb_series_observe(osb_series_t *s, double v); /* histogram */
double osb_series_value(const osb_series_t *s);     /* counter/gauge value; histogram count */
double osb_series_sum(const osb_series_t *s);       /* histogram sum of observations; else the value */
/* Quantile (q in [0,1], clamped) estimated from a histogram series' buckets
 * (Prometheus histogram_quantile rules: linear within a bucket, the first
 * bucket starts at 0, a rank in the +Inf bucket answers the highest finite
 * bound). 0 for an empty series or a series that is not a histogram. */
double osb_series_quantile(const osb_series_t *s, double q);
/* Label value i (family label order) of a series; NULL past the last label. */
const char *osb_series_label(const osb_series_t *s, size_t i);

/* ---- reading a family as a whole (for an operations dashboard in apps,
 * which reads figures here and serves them itself) ---- */

/* The registered family called `name`, or NULL. */
osb_metric_t *osb_metric_find(const char *name);
/* Series in creation order: pass NULL for the first; NULL after the last. */
osb_series_t *osb_metric_next_series(const osb_metric_t *m, const osb_series_t *prev);
/* Sum of osb_series_value over all series (counters, gauges: values; histograms: counts). */
double osb_metric_total(const osb_metric_t *m);
/* A histogram family's bounds; *n receives their number (the +Inf bucket excluded). */
const double *osb_metric_bounds(const osb_metric_t *m, size_t *n);
/* Per-bucket (not cumulative) counts summed over every series of a histogram
 * family into out[0..nbounds] (nbounds + 1 entries, the last is +Inf). `n`
 * must be at least nbounds + 1. A dashboard keeps the previous snapshot and
 * feeds the difference to osb_histogram_quantile() for a recent-window p95. */
void osb_metric_bucket_counts(const osb_metric_t *m, uint64_t *out, size_t n);
/* The quantile over all series of a histogram family since start. */
double osb_metric_quantile(const osb_metric_t *m, double q);
/* The estimator itself, over per-bucket counts[0..nbounds] (last = +Inf). */
double osb_histogram_quantile(const double *bounds, size_t nbounds, const uint64_t *counts, double q);

/* Append the whole registry in Prometheus text exposition format 0.0.4
 * (Content-Type: text/plain; version=0.0.4; charset=utf-8). Families appear
 * in registration order, series in creation order. */
void osb_metrics_render(osb_buf_t *out);

/* Process figures used by /metrics and the dashboard. */
double osb_process_rss_bytes(void);   /* resident set, from /proc/self/statm; 0 if unreadable */
double osb_process_cpu_seconds(void); /* user + system CPU time of the process */
/* Heap bytes allocated and not freed: glibc's mallinfo2 (in-use arena bytes
 * plus mmapped chunks), under AddressSanitizer its allocated-bytes count; 0
 * where neither is available. Flat when nothing reachable accumulates,
 * whatever the allocator keeps (RSS counts that too). */
double osb_process_heap_bytes(void);

/* Register the standard process families: process_resident_memory_bytes
 * and process_heap_bytes (gauges) and process_cpu_seconds_total (counter),
 * all read at render time.
 * Call once from main after startup; calling again is harmless. */
void osb_metrics_init(void);

/* Drop every family (tests, shutdown). Invalidates every pointer handed out. */
void osb_metrics_reset(void);

#endif
