/* test_cookie.c: Set-Cookie attributes, the signed CSRF token, e-mail
 * normalisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sodium.h>

#include "auth/internal.h"

static const char KEY[] = "csrf-unit-test-key-0123456789abcdef";

static void cookie_has_all_attributes(void **s) {
  osb_buf_t b = OSB_BUF_INIT;
  osb__cookie_opts_t o = { .domain = ".example.test", .secure = true };
  osb__cookie_build(&b, "osb_access", "tok", "/", 900, true, &o);
  assert_string_equal(b.base, "osb_access=tok; Path=/; Max-Age=900; Domain=.example.test; HttpOnly; Secure; SameSite=Lax");
  osb_buf_free(&b);
}

static void cookie_without_domain_or_secure(void **s) {
  osb_buf_t b = OSB_BUF_INIT;
  osb__cookie_opts_t o = { .domain = NULL, .secure = false };
  osb__cookie_build(&b, "osb_csrf", "abc", "/", 60, false, &o);
  assert_string_equal(b.base, "osb_csrf=abc; Path=/; Max-Age=60; SameSite=Lax");
  osb_buf_free(&b);
}

static void cookie_clear_expires_it(void **s) {
  osb_buf_t b = OSB_BUF_INIT;
  osb__cookie_opts_t o = { .domain = NULL, .secure = true };
  osb__cookie_build(&b, "osb_refresh", NULL, "/api/auth", 0, true, &o);
  assert_string_equal(b.base, "osb_refresh=; Path=/api/auth; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax");
  osb_buf_free(&b);
}

static void csrf_token_verifies_for_its_user(void **s) {
  char t[OSB__CSRF_LEN + 1];
  osb__csrf_make(t, KEY, strlen(KEY), "17");
  assert_int_equal(strlen(t), OSB__CSRF_LEN);
  assert_true(osb__csrf_check(KEY, strlen(KEY), "17", t, t));
}

static void csrf_tokens_are_random(void **s) {
  char a[OSB__CSRF_LEN + 1], b[OSB__CSRF_LEN + 1];
  osb__csrf_make(a, KEY, strlen(KEY), "17");
  osb__csrf_make(b, KEY, strlen(KEY), "17");
  assert_string_not_equal(a, b);
}

static void csrf_missing_header_fails(void **s) {
  char t[OSB__CSRF_LEN + 1];
  osb__csrf_make(t, KEY, strlen(KEY), "17");
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", t, NULL));
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", NULL, t));
}

static void csrf_header_mismatch_fails(void **s) {
  char a[OSB__CSRF_LEN + 1], b[OSB__CSRF_LEN + 1];
  osb__csrf_make(a, KEY, strlen(KEY), "17");
  osb__csrf_make(b, KEY, strlen(KEY), "17");
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", a, b));
}

static void csrf_token_of_other_user_fails(void **s) {
  /* A token planted by someone signed in as user 99 does not pass for 17. */
  char t[OSB__CSRF_LEN + 1];
  osb__csrf_make(t, KEY, strlen(KEY), "99");
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", t, t));
}

static void csrf_forged_equal_pair_fails(void **s) {
  /* Plain double submit would accept any equal pair; ours needs the MAC. */
  const char *f = "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA";
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", f, f));
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", "x", "x"));
}

static void csrf_other_key_fails(void **s) {
  char t[OSB__CSRF_LEN + 1];
  osb__csrf_make(t, "other-key-0123456789abcdef0123456", 32, "17");
  assert_false(osb__csrf_check(KEY, strlen(KEY), "17", t, t));
}

static void email_trimmed_and_lowercased(void **s) {
  char *e = osb__email_normalize("  Alice.Smith@Example.COM \t");
  assert_string_equal(e, "alice.smith@example.com");
  free(e);
}

static void email_without_at_rejected(void **s) {
  assert_null(osb__email_normalize("alice.example.com"));
  assert_null(osb__email_normalize("@example.com"));
  assert_null(osb__email_normalize("alice@"));
  assert_null(osb__email_normalize("a@b@c"));
}

static void email_with_inner_space_rejected(void **s) {
  assert_null(osb__email_normalize("al ice@example.com"));
  assert_null(osb__email_normalize("alice@exa\nmple.com"));
  assert_null(osb__email_normalize(""));
  assert_null(osb__email_normalize(NULL));
}

static void email_too_long_rejected(void **s) {
  char buf[400];
  memset(buf, 'a', sizeof(buf));
  memcpy(buf + 300, "@x.io", 6);
  assert_null(osb__email_normalize(buf));
}

static void sha256_hex_known_answer(void **s) {
  char h[65];
  osb__sha256_hex(h, "abc", 3);
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(cookie_has_all_attributes),
    cmocka_unit_test(cookie_without_domain_or_secure),
    cmocka_unit_test(cookie_clear_expires_it),
    cmocka_unit_test(csrf_token_verifies_for_its_user),
    cmocka_unit_test(csrf_tokens_are_random),
    cmocka_unit_test(csrf_missing_header_fails),
    cmocka_unit_test(csrf_header_mismatch_fails),
    cmocka_unit_test(csrf_token_of_other_user_fails),
    cmocka_unit_test(csrf_forged_equal_pair_fails),
    cmocka_unit_test(csrf_other_key_fails),
    cmocka_unit_test(email_trimmed_and_lowercased),
    cmocka_unit_test(email_without_at_rejected),
    cmocka_unit_test(email_with_inner_space_rejected),
    cmocka_unit_test(email_too_long_rejected),
    cmocka_unit_test(sha256_hex_known_answer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
