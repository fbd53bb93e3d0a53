/* test_dashboard.c: the dashboard sampler's figures (per-second deltas of
 * the histogram buckets, never lifetime totals) and the breaker lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "apps/dashboard.c"   /* statics: the previous snapshot */

static int teardown(void **state) {
  OSB_UNUSED(state);
  osb_dashboard_stop();
  osb_health_reset();
  osb_metrics_reset();
  return 0;
}

static double fig(json_t *j, const char *group, const char *key) {
  json_t *v = json_object_get(json_object_get(j, group), key);
  if (!json_is_number(v)) fail_msg("%s.%s is not a number", group, key);
  return json_number_value(v);
}

/* Pretend the previous tick was exactly one second ago. */
static void one_second_passes(void) { D.prev.at_ns = uv_hrtime() - 1000000000ull; }

static void observe(osb_metric_t *m, const char *status, double secs, int n) {
  const char *labels[3] = {"GET", "/health", status};
  osb_series_t *s = osb_metric_series(m, labels, 3);
  for (int i = 0; i < n; i++) osb_series_observe(s, secs);
}

static void per_second_figures_from_bucket_deltas(void **state) {
  OSB_UNUSED(state);
  osb_metric_t *m = osb_metric_histogram("http_server_request_duration_seconds", "t",
                                         "http_request_method,http_route,http_response_status_code", NULL, 0);
  observe(m, "200", 5.0, 1000);   /* lifetime: slow requests long ago */
  json_decref(osb_dashboard_sample());   /* baseline */

  observe(m, "200", 0.002, 90);
  observe(m, "500", 0.2, 10);
  one_second_passes();
  json_t *j = osb_dashboard_sample();
  assert_true(fabs(fig(j, "http", "rps") - 100.0) < 1.0);
  assert_true(fabs(fig(j, "http", "error_rate") - 0.1) < 1e-9);
  double p50 = fig(j, "http", "p50_ms"), p99 = fig(j, "http", "p99_ms");
  if (!(p50 > 1.0 && p50 <= 2.5)) fail_msg("p50 %g ms: the 2 ms bucket, not the lifetime 5 s", p50);
  if (!(p99 > 100.0 && p99 <= 250.0)) fail_msg("p99 %g ms: the 200 ms bucket", p99);
  assert_string_equal(json_string_value(json_object_get(j, "type")), "metrics");
  assert_true(json_is_null(json_object_get(json_object_get(j, "cache"), "hit_ratio")));
  json_decref(j);

  one_second_passes();   /* a quiet second */
  j = osb_dashboard_sample();
  assert_true(fig(j, "http", "rps") == 0);
  assert_true(fig(j, "http", "p95_ms") == 0);
  assert_true(fig(j, "http", "error_rate") == 0);
  json_decref(j);
}

static void components_from_health(void **state) {
  OSB_UNUSED(state);
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set("cache", OSB_HEALTH_WARN, "cold", false);
  json_t *j = osb_dashboard_sample();
  json_t *c = json_object_get(j, "components");
  assert_string_equal(json_string_value(json_object_get(c, "database")), "pass");
  assert_string_equal(json_string_value(json_object_get(c, "cache")), "warn");
  json_decref(j);
}

static void breakers_one_lookup(void **state) {
  OSB_UNUSED(state);
  assert_string_equal(osb_dashboard_breaker("llm", NULL), "disabled");
  osb_health_set("llm", OSB_HEALTH_PASS, "", false);
  osb_health_set("tts", OSB_HEALTH_WARN, "disabled: ELEVENLABS_API_KEY not set", false);
  json_t *d = osb_health_details();
  json_t *checks = json_object_get(d, "checks");
  assert_string_equal(osb_dashboard_breaker("llm", checks), "closed");
  assert_string_equal(osb_dashboard_breaker("tts", checks), "disabled");
  json_decref(d);
  osb_health_set("llm", OSB_HEALTH_FAIL, "breaker open", false);
  d = osb_health_details();
  assert_string_equal(osb_dashboard_breaker("llm", json_object_get(d, "checks")), "open");

  /* A breaker registry's gauge wins over the health component. */
  osb_metric_t *g = osb_metric_gauge("osb_breaker_state", "t", "upstream");
  osb_series_set(osb_metric_series1(g, "llm"), 0);
  osb_series_set(osb_metric_series1(g, "tts"), 1);
  assert_string_equal(osb_dashboard_breaker("llm", json_object_get(d, "checks")), "closed");
  assert_string_equal(osb_dashboard_breaker("tts", json_object_get(d, "checks")), "half_open");
  osb_series_set(osb_metric_series1(g, "llm"), 2);
  assert_string_equal(osb_dashboard_breaker("llm", NULL), "open");
  json_decref(d);
  json_t *j = osb_dashboard_sample();
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "breakers"), "llm")), "open");
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(per_second_figures_from_bucket_deltas, teardown),
      cmocka_unit_test_teardown(components_from_health, teardown),
      cmocka_unit_test_teardown(breakers_one_lookup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
