/* test_metrics.c: the metrics registry and its Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"

static int teardown(void **state) {
  OSB_UNUSED(state);
  osb_metrics_reset();
  return 0;
}

/* The rendered registry; the caller frees. */
static char *render(void) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_append(&b, "", 0);
  osb_metrics_render(&b);
  return b.base;
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) fail_msg("expected to find <%s> in:\n%s", needle, hay);
}

static void assert_near(double got, double want, double eps) {
  if (!(fabs(got - want) <= eps)) fail_msg("expected %.17g, got %.17g", want, got);
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

static void counter_accumulates(void **state) {
  osb_metric_t *m = osb_metric_counter("t_requests_total", "Requests.", "route");
  osb_series_t *s = osb_metric_series1(m, "/a");
  osb_series_inc(s, 1);
  osb_series_inc(s, 2.5);
  assert_true(osb_series_value(s) == 3.5);
}

static void counter_ignores_negative_increments(void **state) {
  osb_series_t *s = osb_metric_series0(osb_metric_counter("t_c_total", "C.", NULL));
  osb_series_inc(s, 4);
  osb_series_inc(s, -1);
  osb_series_inc(s, NAN);
  assert_true(osb_series_value(s) == 4);
}

static void gauge_sets_and_moves(void **state) {
  osb_series_t *s = osb_metric_series0(osb_metric_gauge("t_gauge", "G.", NULL));
  osb_series_set(s, 10);
  osb_series_inc(s, -3);
  assert_true(osb_series_value(s) == 7);
}

static void histogram_counts_and_sums(void **state) {
  static const double b[] = { 1, 2, 5 };
  osb_series_t *s = osb_metric_series0(osb_metric_histogram("t_h", "H.", NULL, b, 3));
  osb_series_observe(s, 0.5);
  osb_series_observe(s, 2);
  osb_series_observe(s, 100);
  assert_true(osb_series_value(s) == 3);
  assert_true(osb_series_sum(s) == 102.5);
}

static void counter_renders_help_type_and_value(void **state) {
  osb_metric_t *m = osb_metric_counter("t_requests_total", "Requests served.", "route,status");
  osb_series_inc(osb_metric_series2(m, "/api/x/:id", "200"), 3);
  char *txt = render();
  assert_string_equal(txt,
    "# HELP t_requests_total Requests served.\n"
    "# TYPE t_requests_total counter\n"
    "t_requests_total{route=\"/api/x/:id\",status=\"200\"} 3\n");
  free(txt);
}

static void label_values_are_escaped(void **state) {
  osb_metric_t *m = osb_metric_gauge("t_esc", "E.", "v");
  osb_series_set(osb_metric_series1(m, "a\\b\"c\nd"), 1);
  char *txt = render();
  assert_contains(txt, "t_esc{v=\"a\\\\b\\\"c\\nd\"} 1\n");
  free(txt);
}

static void help_text_is_escaped(void **state) {
  osb_metric_gauge("t_help", "line\\one\nline two \"quoted\"", NULL);
  char *txt = render();
  assert_contains(txt, "# HELP t_help line\\\\one\\nline two \"quoted\"\n");
  free(txt);
}

static void histogram_buckets_are_cumulative_with_inf_equal_count(void **state) {
  static const double b[] = { 0.25, 1, 2.5 };
  osb_metric_t *m = osb_metric_histogram("t_lat_seconds", "Latency.", "route", b, 3);
  osb_series_t *s = osb_metric_series1(m, "/r");
  osb_series_observe(s, 0.125);
  osb_series_observe(s, 0.25);  /* le is inclusive */
  osb_series_observe(s, 0.75);
  osb_series_observe(s, 3);
  osb_series_observe(s, 30);
  char *txt = render();
  assert_string_equal(txt,
    "# HELP t_lat_seconds Latency.\n"
    "# TYPE t_lat_seconds histogram\n"
    "t_lat_seconds_bucket{route=\"/r\",le=\"0.25\"} 2\n"
    "t_lat_seconds_bucket{route=\"/r\",le=\"1\"} 3\n"
    "t_lat_seconds_bucket{route=\"/r\",le=\"2.5\"} 3\n"
    "t_lat_seconds_bucket{route=\"/r\",le=\"+Inf\"} 5\n"
    "t_lat_seconds_sum{route=\"/r\"} 34.125\n"
    "t_lat_seconds_count{route=\"/r\"} 5\n");
  free(txt);
}

static void histogram_default_buckets_are_the_seconds_scale(void **state) {
  osb_metric_t *m = osb_metric_histogram("t_d_seconds", "D.", NULL, NULL, 0);
  size_t n = 0;
  const double *b = osb_metric_bounds(m, &n);
  assert_int_equal(n, 14);
  assert_true(b[0] == 0.0005);
  assert_true(b[13] == 10);
  osb_series_observe(osb_metric_series0(m), 0.003);
  char *txt = render();
  assert_contains(txt, "t_d_seconds_bucket{le=\"0.0005\"} 0\n");
  assert_contains(txt, "t_d_seconds_bucket{le=\"0.005\"} 1\n");
  assert_contains(txt, "t_d_seconds_bucket{le=\"10\"} 1\n");
  assert_contains(txt, "t_d_seconds_bucket{le=\"+Inf\"} 1\n");
  free(txt);
}

static void same_labels_give_same_series(void **state) {
  osb_metric_t *m = osb_metric_counter("t_same_total", "S.", "route,status");
  char route[] = "/api/x/:id";  /* a different buffer with equal contents */
  osb_series_t *a = osb_metric_series2(m, "/api/x/:id", "200");
  osb_series_t *b = osb_metric_series2(m, route, "200");
  osb_series_t *c = osb_metric_series2(m, "/api/x/:id", "404");
  assert_ptr_equal(a, b);
  assert_ptr_not_equal(a, c);
}

static void label_boundaries_do_not_collide(void **state) {
  osb_metric_t *m = osb_metric_counter("t_split_total", "S.", "a,b");
  assert_ptr_not_equal(osb_metric_series2(m, "ab", "c"), osb_metric_series2(m, "a", "bc"));
}

static void many_series_are_all_found(void **state) {
  osb_metric_t *m = osb_metric_counter("t_many_total", "M.", "route,status");
  enum { N = 10000 };
  osb_series_t **made = malloc(N * sizeof(*made));
  char route[32], status[8];
  for (int i = 0; i < N; i++) {
    snprintf(route, sizeof(route), "/r/%d", i / 10);
    snprintf(status, sizeof(status), "%d", 200 + i % 10);
    made[i] = osb_metric_series2(m, route, status);
    osb_series_inc(made[i], i);
  }
  for (int i = 0; i < N; i++) {
    snprintf(route, sizeof(route), "/r/%d", i / 10);
    snprintf(status, sizeof(status), "%d", 200 + i % 10);
    osb_series_t *s = osb_metric_series2(m, route, status);
    assert_ptr_equal(s, made[i]);
    assert_true(osb_series_value(s) == i);
  }
  size_t n = 0;
  for (osb_series_t *s = osb_metric_next_series(m, NULL); s; s = osb_metric_next_series(m, s)) n++;
  assert_int_equal(n, N);
  free(made);
}

static void quantile_interpolates_in_bucket(void **state) {
  static const double b[] = { 10, 20, 30, 40 };
  osb_series_t *s = osb_metric_series0(osb_metric_histogram("t_q", "Q.", NULL, b, 4));
  /* 100 observations spread evenly: 25 per bucket. */
  for (int i = 0; i < 100; i++) osb_series_observe(s, 0.2 + 0.4 * i);
  /* rank 95 lies 20 of 25 into (30,40]. */
  assert_near(osb_series_quantile(s, 0.95), 38.0, 1e-9);
  assert_near(osb_series_quantile(s, 0.5), 20.0, 1e-9);
  /* rank 10 lies 10 of 25 into the first bucket, which starts at 0. */
  assert_near(osb_series_quantile(s, 0.1), 4.0, 1e-9);
}

static void quantile_of_empty_series_is_zero(void **state) {
  osb_series_t *s = osb_metric_series0(osb_metric_histogram("t_qe", "Q.", NULL, NULL, 0));
  assert_true(osb_series_quantile(s, 0.95) == 0);
}

static void quantile_in_inf_bucket_is_highest_bound(void **state) {
  static const double b[] = { 1, 2 };
  osb_series_t *s = osb_metric_series0(osb_metric_histogram("t_qi", "Q.", NULL, b, 2));
  osb_series_observe(s, 50);
  osb_series_observe(s, 60);
  assert_true(osb_series_quantile(s, 0.95) == 2);
}

static void family_quantile_merges_series(void **state) {
  static const double b[] = { 1, 2 };
  osb_metric_t *m = osb_metric_histogram("t_qm", "Q.", "route", b, 2);
  for (int i = 0; i < 50; i++) osb_series_observe(osb_metric_series1(m, "/fast"), 0.5);
  for (int i = 0; i < 50; i++) osb_series_observe(osb_metric_series1(m, "/slow"), 1.5);
  /* rank 95: 45 of 50 into (1,2]. */
  assert_near(osb_metric_quantile(m, 0.95), 1.9, 1e-9);
  assert_true(osb_metric_total(m) == 100);
}

static void family_without_series_renders_help_and_type_only(void **state) {
  osb_metric_counter("t_empty_total", "Nothing yet.", "route");
  char *txt = render();
  assert_string_equal(txt,
    "# HELP t_empty_total Nothing yet.\n"
    "# TYPE t_empty_total counter\n");
  free(txt);
}

static void families_render_once_in_registration_order(void **state) {
  osb_metric_t *z = osb_metric_gauge("t_z", "Z.", "k");
  osb_metric_t *a = osb_metric_counter("t_a_total", "A.", NULL);
  osb_series_set(osb_metric_series1(z, "1"), 1);
  osb_series_set(osb_metric_series1(z, "2"), 2);
  osb_series_inc(osb_metric_series0(a), 1);
  assert_ptr_equal(osb_metric_gauge("t_z", "Z.", "k"), z); /* second registration: same family */
  char *txt = render();
  assert_int_equal(count_of(txt, "# TYPE t_z gauge\n"), 1);
  assert_int_equal(count_of(txt, "# HELP t_z "), 1);
  assert_true(strstr(txt, "# TYPE t_z") < strstr(txt, "# TYPE t_a_total"));
  free(txt);
}

static void numbers_render_short_and_exact(void **state) {
  osb_metric_t *m = osb_metric_gauge("t_num", "N.", "k");
  osb_series_set(osb_metric_series1(m, "big"), 12345678901234.0);
  osb_series_set(osb_metric_series1(m, "frac"), 0.1);
  osb_series_set(osb_metric_series1(m, "third"), 1.0 / 3.0);
  osb_series_set(osb_metric_series1(m, "inf"), INFINITY);
  osb_series_set(osb_metric_series1(m, "nan"), NAN);
  char *txt = render();
  assert_contains(txt, "t_num{k=\"big\"} 12345678901234\n");
  assert_contains(txt, "t_num{k=\"frac\"} 0.1\n");
  const char *third = strstr(txt, "t_num{k=\"third\"} ");
  assert_non_null(third);
  assert_true(strtod(third + strlen("t_num{k=\"third\"} "), NULL) == 1.0 / 3.0);
  assert_contains(txt, "t_num{k=\"inf\"} +Inf\n");
  assert_contains(txt, "t_num{k=\"nan\"} NaN\n");
  free(txt);
}

static double fixed_fn(void *ud) { return *(const double *)ud; }

static void callback_gauge_is_read_at_render(void **state) {
  double v = 1;
  osb_metric_gauge_fn("t_fn", "F.", fixed_fn, &v);
  v = 42;
  char *txt = render();
  assert_contains(txt, "# TYPE t_fn gauge\nt_fn 42\n");
  free(txt);
}

static void process_families_render_with_their_types(void **state) {
  osb_metrics_init();
  osb_metrics_init(); /* harmless twice */
  char *txt = render();
  assert_int_equal(count_of(txt, "# TYPE process_resident_memory_bytes gauge\n"), 1);
  assert_int_equal(count_of(txt, "# TYPE process_cpu_seconds_total counter\n"), 1);
  assert_int_equal(count_of(txt, "# TYPE process_heap_bytes gauge\n"), 1);
  assert_contains(txt, "\nprocess_resident_memory_bytes ");
  assert_contains(txt, "\nprocess_cpu_seconds_total ");
  free(txt);
}

static void process_rss_is_plausible(void **state) {
  double rss = osb_process_rss_bytes();
  assert_true(rss > 1024 * 1024);
  assert_true(rss < 64.0 * 1024 * 1024 * 1024);
}

/* The heap figure follows what is allocated, and drops when it is freed. */
static void process_heap_follows_allocations(void **state) {
  double before = osb_process_heap_bytes();
  assert_true(before > 0);
  char *volatile p = osb_malloc(8u << 20);
  memset(p, 1, 8u << 20);
  double during = osb_process_heap_bytes();
  free(p);
  double after = osb_process_heap_bytes();
  assert_true(during - before >= 8.0 * 1024 * 1024);
  assert_true(during - after >= 8.0 * 1024 * 1024);
}

static void process_cpu_advances(void **state) {
  double before = osb_process_cpu_seconds();
  volatile double x = 0;
  for (int i = 0; i < 20000000; i++) x += i * 0.5;
  assert_true(osb_process_cpu_seconds() > before);
}

static void series_labels_read_back(void **state) {
  osb_metric_t *m = osb_metric_counter("t_lbl_total", "L.", "route, status");
  osb_series_t *s = osb_metric_series2(m, "/x", "503");
  assert_string_equal(osb_series_label(s, 0), "/x");
  assert_string_equal(osb_series_label(s, 1), "503");
  assert_null(osb_series_label(s, 2));
  assert_ptr_equal(osb_metric_find("t_lbl_total"), m);
  assert_null(osb_metric_find("t_missing"));
}

static void reset_drops_everything(void **state) {
  osb_series_inc(osb_metric_series1(osb_metric_counter("t_r_total", "R.", "a"), "x"), 1);
  osb_metrics_reset();
  assert_null(osb_metric_find("t_r_total"));
  char *txt = render();
  assert_string_equal(txt, "");
  free(txt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(counter_accumulates, teardown),
    cmocka_unit_test_teardown(counter_ignores_negative_increments, teardown),
    cmocka_unit_test_teardown(gauge_sets_and_moves, teardown),
    cmocka_unit_test_teardown(histogram_counts_and_sums, teardown),
    cmocka_unit_test_teardown(counter_renders_help_type_and_value, teardown),
    cmocka_unit_test_teardown(label_values_are_escaped, teardown),
    cmocka_unit_test_teardown(help_text_is_escaped, teardown),
    cmocka_unit_test_teardown(histogram_buckets_are_cumulative_with_inf_equal_count, teardown),
    cmocka_unit_test_teardown(histogram_default_buckets_are_the_seconds_scale, teardown),
    cmocka_unit_test_teardown(same_labels_give_same_series, teardown),
    cmocka_unit_test_teardown(label_boundaries_do_not_collide, teardown),
    cmocka_unit_test_teardown(many_series_are_all_found, teardown),
    cmocka_unit_test_teardown(quantile_interpolates_in_bucket, teardown),
    cmocka_unit_test_teardown(quantile_of_empty_series_is_zero, teardown),
    cmocka_unit_test_teardown(quantile_in_inf_bucket_is_highest_bound, teardown),
    cmocka_unit_test_teardown(family_quantile_merges_series, teardown),
    cmocka_unit_test_teardown(family_without_series_renders_help_and_type_only, teardown),
    cmocka_unit_test_teardown(families_render_once_in_registration_order, teardown),
    cmocka_unit_test_teardown(numbers_render_short_and_exact, teardown),
    cmocka_unit_test_teardown(callback_gauge_is_read_at_render, teardown),
    cmocka_unit_test_teardown(process_families_render_with_their_types, teardown),
    cmocka_unit_test(process_rss_is_plausible),
    cmocka_unit_test(process_heap_follows_allocations),
    cmocka_unit_test(process_cpu_advances),
    cmocka_unit_test_teardown(series_labels_read_back, teardown),
    cmocka_unit_test_teardown(reset_drops_everything, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
