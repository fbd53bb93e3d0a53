/* test_verify.c: osb_auth_verify_token over a real configuration: this
 * server's tokens, the service key, and every way a token is refused
 * without touching the database. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "auth/auth.h"
#include "auth/internal.h"
#include "core/config.h"
#include "obs/log.h"

static const char JWT_KEY[] = "unit-verify-jwt-secret-0123456789abcdef";
static const char EXT_KEY[] = "unit-verify-ext-secret-0123456789abcdef";
static const char SVC_KEY[] = "unit-verify-service-key-0123456789";

static osb_config_t cfg;

static int calls, last_err;
static osb_principal_t *last_p;

static void on_verified(void *ud, int err, osb_principal_t *p) {
  calls++;
  last_err = err;
  osb_principal_free(last_p);
  last_p = p;
}

static int setup(void **s) {
  calls = 0;
  last_err = 1;
  osb_principal_free(last_p);
  last_p = NULL;
  return 0;
}

static char *sign_with(const char *key, json_t *claims) {
  char *t = osb__jwt_sign(key, strlen(key), claims);
  json_decref(claims);
  return t;
}

static long long now_s(void) { return (long long)(osb_wallclock_ms() / 1000); }

static void issued_token_verifies_to_its_user(void **s) {
  int64_t exp;
  char *t = osb__auth_issue_access("11111111-2222-3333-4444-555555555555", "a@b.io", OSB_ROLE_ADMIN, &exp);
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(calls, 1);   /* local tokens answer at once */
  assert_int_equal(last_err, 0);
  assert_string_equal(last_p->user_id, "11111111-2222-3333-4444-555555555555");
  assert_string_equal(last_p->email, "a@b.io");
  assert_int_equal(last_p->role, OSB_ROLE_ADMIN);
  assert_int_equal(last_p->expires_at, exp);
  assert_false(last_p->via_cookie);
  assert_false(last_p->external);
  free(t);
}

static void issued_token_lives_fifteen_minutes(void **s) {
  int64_t exp;
  char *t = osb__auth_issue_access("u1", "a@b.io", OSB_ROLE_USER, &exp);
  assert_true(exp - now_s() >= 899 && exp - now_s() <= 900);
  json_t *c = NULL;
  assert_int_equal(osb__jwt_verify(t, strlen(t), JWT_KEY, strlen(JWT_KEY), now_s(), 0, &c), 0);
  assert_string_equal(json_string_value(json_object_get(c, "iss")), "osbackend");
  assert_string_equal(json_string_value(json_object_get(c, "role")), "user");
  assert_non_null(json_string_value(json_object_get(c, "jti")));
  assert_int_equal(json_integer_value(json_object_get(c, "exp")) - json_integer_value(json_object_get(c, "iat")), 900);
  json_decref(c);
  free(t);
}

static void service_key_is_role_service(void **s) {
  osb_auth_verify_token(SVC_KEY, on_verified, NULL);
  assert_int_equal(last_err, 0);
  assert_int_equal(last_p->role, OSB_ROLE_SERVICE);
  assert_string_equal(last_p->user_id, "service");
}

static void service_key_prefix_is_refused(void **s) {
  char k[sizeof(SVC_KEY)];
  memcpy(k, SVC_KEY, sizeof(SVC_KEY));
  k[sizeof(SVC_KEY) - 2] = 0;
  osb_auth_verify_token(k, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  assert_null(last_p);
}

static void expired_token_says_expired(void **s) {
  char *t = sign_with(JWT_KEY, json_pack("{s:s,s:s,s:s,s:I,s:I}", "sub", "u1", "role", "user", "iss", "osbackend",
                                         "iat", (json_int_t)(now_s() - 2000), "exp", (json_int_t)(now_s() - 61)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_ETIMEOUT);
  assert_null(last_p);
  free(t);
}

static void foreign_issuer_refused(void **s) {
  char *t = sign_with(JWT_KEY, json_pack("{s:s,s:s,s:s,s:I}", "sub", "u1", "role", "user", "iss", "elsewhere",
                                         "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void unknown_role_refused(void **s) {
  char *t = sign_with(JWT_KEY, json_pack("{s:s,s:s,s:s,s:I}", "sub", "u1", "role", "root", "iss", "osbackend",
                                         "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void missing_sub_refused(void **s) {
  char *t = sign_with(JWT_KEY, json_pack("{s:s,s:s,s:I}", "role", "user", "iss", "osbackend",
                                         "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void wrong_key_refused(void **s) {
  char *t = sign_with("some-other-key-0123456789abcdef0123", json_pack("{s:s,s:s,s:s,s:I}", "sub", "u1", "role", "user",
                                                                     "iss", "osbackend", "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void external_token_with_local_claims_does_not_pass_as_local(void **s) {
  /* Signed with the external key but dressed as ours: role admin is not
   * taken from it, and its audience is missing, so it is refused. */
  char *t = sign_with(EXT_KEY, json_pack("{s:s,s:s,s:s,s:s,s:I}", "sub", "u1", "email", "x@y.io", "role", "admin",
                                         "iss", "osbackend", "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void external_token_needs_email(void **s) {
  char *t = sign_with(EXT_KEY, json_pack("{s:s,s:s,s:I}", "sub", "ext-1", "aud", "authenticated",
                                         "exp", (json_int_t)(now_s() + 600)));
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  free(t);
}

static void alg_none_refused(void **s) {
  char h[64], p[256], t[400];
  const char *hj = "{\"alg\":\"none\"}";
  char pj[200];
  snprintf(pj, sizeof(pj), "{\"sub\":\"u1\",\"role\":\"admin\",\"iss\":\"osbackend\",\"exp\":%lld}", now_s() + 600);
  osb__b64url_encode(h, hj, strlen(hj));
  osb__b64url_encode(p, pj, strlen(pj));
  snprintf(t, sizeof(t), "%s.%s.", h, p);
  osb_auth_verify_token(t, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  assert_null(last_p);
}

static void null_and_empty_refused(void **s) {
  osb_auth_verify_token(NULL, on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  osb_auth_verify_token("", on_verified, NULL);
  assert_int_equal(last_err, OSB_EDENIED);
  assert_int_equal(calls, 2);
}

static void role_names_round_trip(void **s) {
  for (int r = OSB_ROLE_USER; r <= OSB_ROLE_SERVICE; r++)
    assert_int_equal(osb_role_parse(osb_role_name((osb_role_t)r)), r);
  assert_int_equal(osb_role_parse("Admin"), OSB_ROLE_NONE);
  assert_int_equal(osb_role_parse(NULL), OSB_ROLE_NONE);
}

static void credentials_policy(void **s) {
  assert_null(osb_auth_check_credentials(" A@B.io ", "0123456789"));
  assert_non_null(osb_auth_check_credentials("a@b.io", "012345678"));
  /* ten characters, more bytes: accepted */
  assert_null(osb_auth_check_credentials("a@b.io", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
  /* nine characters in eighteen bytes: refused */
  assert_non_null(osb_auth_check_credentials("a@b.io", "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
  assert_non_null(osb_auth_check_credentials("nope", "0123456789"));
  assert_non_null(osb_auth_check_credentials("a@b.io", NULL));
}

static void close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int main(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_log_init(OSB_LOG_ERROR, 0);
  cfg.jwt_secret = (char *)JWT_KEY;
  cfg.supabase_jwt_secret = (char *)EXT_KEY;
  cfg.service_api_key = (char *)SVC_KEY;
  cfg.sqlite_path = (char *)"/nonexistent/osb.db";
  cfg.cookie_secure = true;
  cfg.rate_limit_rps = 50;
  cfg.rate_limit_burst = 100;
  osb_cfg = &cfg;
  if (osb_auth_init() != 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(issued_token_verifies_to_its_user, setup),
    cmocka_unit_test_setup(issued_token_lives_fifteen_minutes, setup),
    cmocka_unit_test_setup(service_key_is_role_service, setup),
    cmocka_unit_test_setup(service_key_prefix_is_refused, setup),
    cmocka_unit_test_setup(expired_token_says_expired, setup),
    cmocka_unit_test_setup(foreign_issuer_refused, setup),
    cmocka_unit_test_setup(unknown_role_refused, setup),
    cmocka_unit_test_setup(missing_sub_refused, setup),
    cmocka_unit_test_setup(wrong_key_refused, setup),
    cmocka_unit_test_setup(external_token_with_local_claims_does_not_pass_as_local, setup),
    cmocka_unit_test_setup(external_token_needs_email, setup),
    cmocka_unit_test_setup(alg_none_refused, setup),
    cmocka_unit_test_setup(null_and_empty_refused, setup),
    cmocka_unit_test_setup(role_names_round_trip, setup),
    cmocka_unit_test_setup(credentials_policy, setup),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  osb_principal_free(last_p);
  last_p = NULL;
  uv_walk(&loop, close_walk, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  osb_auth_dispose();
  return rc;
}
