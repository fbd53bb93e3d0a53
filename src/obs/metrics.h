/* metrics.h: the metrics registry, rendered as Prometheus text at /metrics.
 *
 * Families are registered once at start (counter, gauge, histogram) with a
 * fixed list of label names; a series is one combination of label values,
 * created on first use and kept for the life of the process. Hot paths look
 * a series up once and keep the pointer. Loop thread only: worker threads
 * hand results back to the loop before recording them. */
#ifndef OSB_METRICS_H
#define OSB_METRICS_H

#include <stddef.h>
#include "core/core.h"

typedef struct osb_metric osb_metric_t;   /* a family */
typedef struct osb_series osb_series_t;   /* one label combination */

/* `labels` is a comma list of label names ("route,status") or NULL/"" for none.
 * Registering a name twice returns the existing family. */
osb_metric_t *osb_metric_counter(const char *name, const char *help, const char *labels);
osb_metric_t *osb_metric_gauge(const char *name, const char *help, const char *labels);
/* `bounds` are the upper bounds (le) in increasing order; copied. NULL = default seconds buckets. */
osb_metric_t *osb_metric_histogram(const char *name, const char *help, const char *labels,
                                   const double *bounds, size_t nbounds);

/* A gauge computed at render time (pool size, RSS...). No labels. */
typedef double (*osb_metric_fn)(void *ud);
void osb_metric_gauge_fn(const char *name, const char *help, osb_metric_fn fn, void *ud);

/* The series for label values, in the family's label order; `nvalues` must match. */
osb_series_t *osb_metric_series(osb_metric_t *m, const char *const *values, size_t nvalues);
/* Shorthands for families with zero, one or two labels. */
osb_series_t *osb_metric_series0(osb_metric_t *m);
osb_series_t *osb_metric_series1(osb_metric_t *m, const char *v1);
osb_series_t *osb_metric_series2(osb_metric_t *m, const char *v1, const char *v2);

void osb_series_inc(osb_series_t *s, double v);     /* counter or gauge */
void osb_series_set(osb_series_t *s, double v);     /* gauge */
void osb_series_observe(osb_series_t *s, double v); /* histogram */
double osb_series_value(const osb_series_t *s);     /* counter/gauge value; histogram count */
/* Quantile estimated from a histogram series' buckets (linear within a bucket). */
double osb_series_quantile(const osb_series_t *s, double q);

/* Append the whole registry in Prometheus text exposition format 0.0.4. */
void osb_metrics_render(osb_buf_t *out);

/* Process figures used by /metrics and the dashboard. */
double osb_process_rss_bytes(void);
double osb_process_cpu_seconds(void);

/* Drop every family (tests, shutdown). */
void osb_metrics_reset(void);

#endif
