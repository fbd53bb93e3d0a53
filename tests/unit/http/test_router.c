/* Router: literal and :param segments, backtracking, 404 vs 405. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/internal.h"

static void h_a(osb_req_t *r) {}
static void h_b(osb_req_t *r) {}
static void h_c(osb_req_t *r) {}
static void h_d(osb_req_t *r) {}

static int setup(void **state) {
  osb_route(OSB_GET, "/health", h_a);
  osb_route(OSB_GET | OSB_POST, "/api/conversations", h_b);
  osb_route(OSB_GET, "/api/conversations/:id", h_c);
  osb_route(OSB_DELETE, "/api/conversations/:id", h_d);
  osb_route(OSB_GET, "/api/conversations/:id/messages", h_a);
  osb_route(OSB_GET, "/api/agents/new", h_b);
  osb_route(OSB_GET, "/api/agents/:id", h_c);
  osb_route(OSB_GET, "/api/x/:a/y", h_a);
  osb_route(OSB_GET, "/api/x/lit/z", h_b);
  return 0;
}

static int teardown(void **state) {
  osb__router_reset();
  return 0;
}

static void free_params(osb__match_t *m) {
  for (int i = 0; i < m->nparams; i++) free(m->pvalues[i]);
}

static void exact_literal_match(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_GET, "/health", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_a);
  assert_string_equal(m.pattern, "/health");
  assert_int_equal(m.nparams, 0);
}

static void param_captured(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations/abc-123/messages", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_a);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(m.pnames[0], "id");
  assert_string_equal(m.pvalues[0], "abc-123");
  assert_string_equal(m.pattern, "/api/conversations/:id/messages");
  free_params(&m);
}

static void method_selects_handler(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_DELETE, "/api/conversations/7", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_d);
  free_params(&m);
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations/7", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_c);
  free_params(&m);
}

static void literal_wins_over_param(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_GET, "/api/agents/new", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_b);
  assert_int_equal(m.nparams, 0);
  assert_int_equal(osb__router_match(OSB_GET, "/api/agents/42", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_c);
  free_params(&m);
}

static void backtracks_from_literal_to_param(void **state) {
  osb__match_t m;
  /* "lit" matches the literal branch, which has no "y" child: the param branch must be tried */
  assert_int_equal(osb__router_match(OSB_GET, "/api/x/lit/y", NULL, &m), 0);
  assert_ptr_equal(m.fn, h_a);
  assert_int_equal(m.nparams, 1);
  assert_string_equal(m.pvalues[0], "lit");
  free_params(&m);
}

static void unknown_path_is_not_found(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_GET, "/nope", NULL, &m), OSB_ENOTFOUND);
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations/1/2/3", NULL, &m), OSB_ENOTFOUND);
  assert_int_equal(osb__router_match(OSB_GET, "/health/", NULL, &m), OSB_ENOTFOUND);
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations//messages", NULL, &m), OSB_ENOTFOUND);
}

/* The path is split before it is decoded: %2F is inside a segment (issue 8:
 * /api%2Fmarket%2Fcategories used to route as /api/market/categories). */
static void encoded_slash_is_not_a_separator(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_GET, "/%2Fhealth", NULL, &m), OSB_ENOTFOUND);
  assert_int_equal(osb__router_match(OSB_GET, "/api%2Fconversations", NULL, &m), OSB_ENOTFOUND);
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations%2F7", NULL, &m), OSB_ENOTFOUND);
  /* other escapes are decoded per segment; a parameter keeps a decoded slash */
  assert_int_equal(osb__router_match(OSB_GET, "/he%61lth", NULL, &m), 0);
  assert_string_equal(m.pattern, "/health");
  assert_int_equal(osb__router_match(OSB_GET, "/api/conversations/a%2Fb%20c/messages", NULL, &m), 0);
  assert_string_equal(m.pvalues[0], "a/b c");
  free_params(&m);
}

static void wrong_method_reports_allowed(void **state) {
  osb__match_t m;
  assert_int_equal(osb__router_match(OSB_PUT, "/api/conversations", NULL, &m), OSB_EDENIED);
  assert_int_equal(m.allow, OSB_GET | OSB_POST);
  assert_string_equal(m.pattern, "/api/conversations");
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(exact_literal_match),
    cmocka_unit_test(param_captured),
    cmocka_unit_test(method_selects_handler),
    cmocka_unit_test(literal_wins_over_param),
    cmocka_unit_test(backtracks_from_literal_to_param),
    cmocka_unit_test(unknown_path_is_not_found),
    cmocka_unit_test(wrong_method_reports_allowed),
    cmocka_unit_test(encoded_slash_is_not_a_separator),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
