/* test_health.c: the component health registry and its health+json document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/core.h"
#include "obs/health.h"

static int teardown(void **state) {
  OSB_UNUSED(state);
  osb_health_reset();
  osb_cfg = NULL;
  return 0;
}

/* A check function reporting whatever the test puts in its struct. */
typedef struct {
  osb_health_status_t st;
  const char *reason;
  int calls;
} probe_t;

static osb_health_status_t probe_fn(void *ud, char *reason, size_t reasonlen) {
  probe_t *p = ud;
  p->calls++;
  if (p->reason) snprintf(reason, reasonlen, "%s", p->reason);
  return p->st;
}

static void no_components_is_pass_and_ready(void **state) {
  assert_int_equal(osb_health_overall(), OSB_HEALTH_PASS);
  assert_true(osb_health_ready(NULL, 0));
}

static void all_pass_is_pass(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set("cache", OSB_HEALTH_PASS, "", false);
  assert_int_equal(osb_health_overall(), OSB_HEALTH_PASS);
}

static void a_warn_makes_overall_warn(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set("tts", OSB_HEALTH_WARN, "disabled: ELEVENLABS_API_KEY not set", false);
  assert_int_equal(osb_health_overall(), OSB_HEALTH_WARN);
  assert_true(osb_health_ready(NULL, 0));
}

static void non_critical_fail_is_warn_and_ready(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set("llm", OSB_HEALTH_FAIL, "breaker open", false);
  assert_int_equal(osb_health_overall(), OSB_HEALTH_WARN);
  assert_true(osb_health_ready(NULL, 0));
}

static void critical_fail_is_fail_and_not_ready(void **state) {
  osb_health_set("database", OSB_HEALTH_FAIL, "connection refused", true);
  osb_health_set("cache", OSB_HEALTH_PASS, "", false);
  char why[128];
  assert_int_equal(osb_health_overall(), OSB_HEALTH_FAIL);
  assert_false(osb_health_ready(why, sizeof(why)));
  assert_string_equal(why, "database: connection refused");
}

static void critical_warn_is_still_ready(void **state) {
  osb_health_set("database", OSB_HEALTH_WARN, "pool exhausted", true);
  assert_true(osb_health_ready(NULL, 0));
}

static void check_function_is_asked_each_time(void **state) {
  probe_t db = { OSB_HEALTH_PASS, NULL, 0 };
  osb_health_register("database", probe_fn, &db, true);
  assert_true(osb_health_ready(NULL, 0));
  db.st = OSB_HEALTH_FAIL;
  db.reason = "unreachable";
  assert_false(osb_health_ready(NULL, 0));
  assert_int_equal(db.calls, 2);
}

static void shutdown_makes_not_ready(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  assert_true(osb_health_ready(NULL, 0));
  osb_health_set_shutting_down();
  char why[64];
  assert_true(osb_health_shutting_down());
  assert_false(osb_health_ready(why, sizeof(why)));
  assert_string_equal(why, "shutting down");
}

static void reregistering_replaces_in_place(void **state) {
  probe_t p = { OSB_HEALTH_FAIL, "down", 0 };
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set("cache", OSB_HEALTH_PASS, "", false);
  osb_health_register("database", probe_fn, &p, true);
  assert_false(osb_health_ready(NULL, 0));
  osb_health_set("database", OSB_HEALTH_PASS, "recovered", true);
  assert_true(osb_health_ready(NULL, 0));

  json_t *doc = osb_health_details();
  json_t *checks = json_object_get(doc, "checks");
  assert_int_equal(json_object_size(checks), 2);
  const char *first = json_object_iter_key(json_object_iter(checks));
  assert_string_equal(first, "database");
  json_decref(doc);
}

/* The first check object of component `name` in a details document. */
static json_t *check_of(json_t *doc, const char *name) {
  json_t *arr = json_object_get(json_object_get(doc, "checks"), name);
  assert_true(json_is_array(arr));
  assert_int_equal(json_array_size(arr), 1);
  return json_array_get(arr, 0);
}

static void details_document_has_rfc_shape(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "sqlite", true);
  osb_health_set("tts", OSB_HEALTH_WARN, "disabled: ELEVENLABS_API_KEY not set", false);
  json_t *doc = osb_health_details();
  /* It serializes and parses back as JSON. */
  char *text = json_dumps(doc, JSON_COMPACT);
  json_error_t err;
  json_t *back = json_loads(text, 0, &err);
  assert_non_null(back);

  assert_string_equal(json_string_value(json_object_get(back, "status")), "warn");
  assert_string_equal(json_string_value(json_object_get(back, "version")), OSB_VERSION);
  assert_string_equal(json_string_value(json_object_get(back, "serviceId")), "osbackend");

  json_t *db = check_of(back, "database");
  assert_string_equal(json_string_value(json_object_get(db, "componentId")), "database");
  assert_string_equal(json_string_value(json_object_get(db, "status")), "pass");
  assert_string_equal(json_string_value(json_object_get(db, "output")), "sqlite");
  const char *t = json_string_value(json_object_get(db, "time"));
  assert_non_null(t);
  int y, mo, d, h, mi, s, ms;
  char z = 0;
  assert_int_equal(sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8);
  assert_int_equal(z, 'Z');
  assert_true(y >= 2024);

  json_t *tts = check_of(back, "tts");
  assert_string_equal(json_string_value(json_object_get(tts, "status")), "warn");
  assert_string_equal(json_string_value(json_object_get(tts, "output")),
                      "disabled: ELEVENLABS_API_KEY not set");
  json_decref(back);
  free(text);
  json_decref(doc);
}

static void details_omit_empty_output(void **state) {
  osb_health_set("cache", OSB_HEALTH_PASS, "", false);
  json_t *doc = osb_health_details();
  assert_null(json_object_get(check_of(doc, "cache"), "output"));
  json_decref(doc);
}

static void details_status_is_fail_on_critical_fail(void **state) {
  probe_t db = { OSB_HEALTH_FAIL, "connection refused", 0 };
  osb_health_register("database", probe_fn, &db, true);
  json_t *doc = osb_health_details();
  assert_string_equal(json_string_value(json_object_get(doc, "status")), "fail");
  assert_string_equal(json_string_value(json_object_get(check_of(doc, "database"), "output")),
                      "connection refused");
  json_decref(doc);
}

static void details_list_components_in_registration_order(void **state) {
  static const char *const names[] = { "database", "cache", "realtime", "cluster", "sso", "llm", "tts" };
  for (size_t i = 0; i < OSB_ARRAY_LEN(names); i++)
    osb_health_set(names[i], OSB_HEALTH_PASS, "", false);
  json_t *doc = osb_health_details();
  json_t *checks = json_object_get(doc, "checks");
  size_t i = 0;
  for (void *it = json_object_iter(checks); it; it = json_object_iter_next(checks, it), i++)
    assert_string_equal(json_object_iter_key(it), names[i]);
  assert_int_equal(i, OSB_ARRAY_LEN(names));
  json_decref(doc);
}

static void details_service_id_is_cluster_node_id(void **state) {
  osb_config_t cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.cluster_node_id = "node-7";
  osb_cfg = &cfg;
  json_t *doc = osb_health_details();
  assert_string_equal(json_string_value(json_object_get(doc, "serviceId")), "node-7");
  json_decref(doc);
}

static void details_during_shutdown_say_so(void **state) {
  osb_health_set("database", OSB_HEALTH_PASS, "", true);
  osb_health_set_shutting_down();
  json_t *doc = osb_health_details();
  assert_string_equal(json_string_value(json_object_get(doc, "status")), "warn");
  assert_string_equal(json_string_value(json_object_get(doc, "output")), "shutting down");
  json_decref(doc);
}

static void status_names(void **state) {
  assert_string_equal(osb_health_status_name(OSB_HEALTH_PASS), "pass");
  assert_string_equal(osb_health_status_name(OSB_HEALTH_WARN), "warn");
  assert_string_equal(osb_health_status_name(OSB_HEALTH_FAIL), "fail");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(no_components_is_pass_and_ready, teardown),
    cmocka_unit_test_teardown(all_pass_is_pass, teardown),
    cmocka_unit_test_teardown(a_warn_makes_overall_warn, teardown),
    cmocka_unit_test_teardown(non_critical_fail_is_warn_and_ready, teardown),
    cmocka_unit_test_teardown(critical_fail_is_fail_and_not_ready, teardown),
    cmocka_unit_test_teardown(critical_warn_is_still_ready, teardown),
    cmocka_unit_test_teardown(check_function_is_asked_each_time, teardown),
    cmocka_unit_test_teardown(shutdown_makes_not_ready, teardown),
    cmocka_unit_test_teardown(reregistering_replaces_in_place, teardown),
    cmocka_unit_test_teardown(details_document_has_rfc_shape, teardown),
    cmocka_unit_test_teardown(details_omit_empty_output, teardown),
    cmocka_unit_test_teardown(details_status_is_fail_on_critical_fail, teardown),
    cmocka_unit_test_teardown(details_list_components_in_registration_order, teardown),
    cmocka_unit_test_teardown(details_service_id_is_cluster_node_id, teardown),
    cmocka_unit_test_teardown(details_during_shutdown_say_so, teardown),
    cmocka_unit_test(status_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
