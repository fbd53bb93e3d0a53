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

/* X-Forwarded-For behind N trusted proxies: the Nth entry from the right,
 * never a left-most entry the client wrote itself (issue 8, defect 8). */
static void forwarded_for_counts_hops_from_the_right(void **state) {
  const char *h1[] = {"x-forwarded-for", "6.6.6.6, 203.0.113.9", NULL};
  osb_req_t *r = fake_req(NULL, h1);
  char ip[46];
  assert_true(osb__req_forwarded_ip(r, 1, ip, sizeof(ip)));
  assert_string_equal(ip, "203.0.113.9");
  assert_true(osb__req_forwarded_ip(r, 2, ip, sizeof(ip)));
  assert_string_equal(ip, "6.6.6.6");
  /* fewer entries than hops: the left-most present */
  assert_true(osb__req_forwarded_ip(r, 5, ip, sizeof(ip)));
  assert_string_equal(ip, "6.6.6.6");
  assert_false(osb__req_forwarded_ip(r, 0, ip, sizeof(ip)));
  free_req(r);

  /* several header lines are one list, in order; empty entries skipped */
  const char *h2[] = {"x-forwarded-for", "1.1.1.1, 2.2.2.2", "accept", "*/*",
                      "x-forwarded-for", " 2001:db8::7 ,, ", NULL};
  r = fake_req(NULL, h2);
  assert_true(osb__req_forwarded_ip(r, 1, ip, sizeof(ip)));
  assert_string_equal(ip, "2001:db8::7");
  assert_true(osb__req_forwarded_ip(r, 2, ip, sizeof(ip)));
  assert_string_equal(ip, "2.2.2.2");
  free_req(r);
}

static void forwarded_for_needs_a_plain_address(void **state) {
  char ip[46] = "127.0.0.1";
  static const char *const bad[] = {"evil", "1.2.3.4:80", "[::1]", "1.2.3", "", " , ", NULL};
  for (int i = 0; bad[i]; i++) {
    const char *h[] = {"x-forwarded-for", bad[i], NULL};
    osb_req_t *r = fake_req(NULL, h);
    assert_false(osb__req_forwarded_ip(r, 1, ip, sizeof(ip)));
    assert_string_equal(ip, "127.0.0.1");
    free_req(r);
  }
  osb_req_t *r = fake_req(NULL, NULL);
  assert_false(osb__req_forwarded_ip(r, 1, ip, sizeof(ip)));
  free_req(r);
}

static void forwarded_proto_reads_the_same_hop(void **state) {
  const char *h[] = {"x-forwarded-proto", "https, http", NULL};
  osb_req_t *r = fake_req(NULL, h);
  char v[8];
  assert_true(osb__req_forwarded(r, "x-forwarded-proto", 1, v, sizeof(v)));
  assert_string_equal(v, "http");
  assert_true(osb__req_forwarded(r, "x-forwarded-proto", 2, v, sizeof(v)));
  assert_string_equal(v, "https");
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
    cmocka_unit_test(forwarded_for_counts_hops_from_the_right),
    cmocka_unit_test(forwarded_for_needs_a_plain_address),
    cmocka_unit_test(forwarded_proto_reads_the_same_hop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
