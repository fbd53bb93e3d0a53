/* Request helpers: URL decoding, query parameters, headers and cookies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "http/internal.h"

static osb_req_t *fake_req(const char *query, const char *const *hdrs) {
  osb_req_t *r = calloc(1, sizeof(*r));
  if (query) r->query = osb_req_strdup(r, query);
  for (int i = 0; hdrs && hdrs[i]; i += 2) {
    r->hn[r->nheaders] = hdrs[i];
    r->hv[r->nheaders] = hdrs[i + 1];
    r->nheaders++;
  }
  return r;
}

static void free_req(osb_req_t *r) {
  osb__arena_blk_t *b = r->arena;
  while (b) { osb__arena_blk_t *n = b->next; free(b); b = n; }
  free(r);
}

static void url_decode_percent_and_plus(void **state) {
  char s1[] = "a%20b%2Fc";
  assert_int_equal(osb__url_decode(s1, strlen(s1), false), 5);
  assert_string_equal(s1, "a b/c");
  char s2[] = "x+y";
  osb__url_decode(s2, strlen(s2), true);
  assert_string_equal(s2, "x y");
  char s3[] = "x+y";
  osb__url_decode(s3, strlen(s3), false);
  assert_string_equal(s3, "x+y");
}

static void url_decode_rejects_bad_escapes(void **state) {
  char s1[] = "abc%";
  assert_int_equal(osb__url_decode(s1, strlen(s1), false), -1);
  char s2[] = "abc%4";
  assert_int_equal(osb__url_decode(s2, strlen(s2), false), -1);
  char s3[] = "%zz";
  assert_int_equal(osb__url_decode(s3, strlen(s3), false), -1);
}

static void query_params_decoded(void **state) {
  osb_req_t *r = fake_req("category=dermal%20fillers&q=a+b&limit=10&empty=&flag", NULL);
  assert_string_equal(osb_req_query(r, "category"), "dermal fillers");
  assert_string_equal(osb_req_query(r, "q"), "a b");
  assert_string_equal(osb_req_query(r, "limit"), "10");
  assert_string_equal(osb_req_query(r, "empty"), "");
  assert_string_equal(osb_req_query(r, "flag"), "");
  assert_null(osb_req_query(r, "missing"));
  assert_null(osb_req_query(r, "cat"));
  free_req(r);
}

static void headers_case_insensitive(void **state) {
  const char *h[] = {"content-type", "application/json", "x-request-id", "abc", NULL};
  osb_req_t *r = fake_req(NULL, h);
  assert_string_equal(osb_req_header(r, "Content-Type"), "application/json");
  assert_string_equal(osb_req_header(r, "X-REQUEST-ID"), "abc");
  assert_null(osb_req_header(r, "content"));
  free_req(r);
}

static void cookies_parsed(void **state) {
  const char *h[] = {"cookie", "a=1; osb_access=tok.en.sig; osb_csrf=\"q\"; broken; last=z", NULL};
  osb_req_t *r = fake_req(NULL, h);
  assert_string_equal(osb_req_cookie(r, "osb_access"), "tok.en.sig");
  assert_string_equal(osb_req_cookie(r, "a"), "1");
  assert_string_equal(osb_req_cookie(r, "osb_csrf"), "q");
  assert_string_equal(osb_req_cookie(r, "last"), "z");
  assert_null(osb_req_cookie(r, "osb"));
  free_req(r);
}

static void arena_grows_and_resets(void **state) {
  osb_req_t *r = calloc(1, sizeof(*r));
  char *a = osb_req_alloc(r, 100);
  memset(a, 1, 100);
  char *big = osb_req_alloc(r, 10000);
  memset(big, 2, 10000);
  assert_non_null(r->arena->next);
  osb__arena_reset(r);
  assert_true(r->arena == NULL || r->arena->next == NULL);
  free_req(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(url_decode_percent_and_plus),
    cmocka_unit_test(url_decode_rejects_bad_escapes),
    cmocka_unit_test(query_params_decoded),
    cmocka_unit_test(headers_case_insensitive),
    cmocka_unit_test(cookies_parsed),
    cmocka_unit_test(arena_grows_and_resets),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
