/* core's generic pieces, each with one owner: UTF-8 validation, the token
 * bucket, the key table, SHA-256/HMAC-SHA256, the role names and the JSON
 * dump into a buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/core.h"
#include "core/crypto.h"
#include "core/json.h"
#include "core/keytab.h"
#include "core/tbucket.h"

/* ---- UTF-8 ---- */

static void utf8_accepts_well_formed(void **state) {
  const char *ok[] = {"", "ascii", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                      "\xed\x9f\xbf" /* U+D7FF */, "\xee\x80\x80" /* U+E000 */,
                      "\xf4\x8f\xbf\xbf" /* U+10FFFF */};
  for (size_t i = 0; i < OSB_ARRAY_LEN(ok); i++)
    assert_true(osb_utf8_valid(ok[i], strlen(ok[i])));
  assert_int_equal(osb_utf8_seq_len("a", 1), 1);
  assert_int_equal(osb_utf8_seq_len("\xc3\xa9", 2), 2);
  assert_int_equal(osb_utf8_seq_len("\xe2\x82\xac", 3), 3);
  assert_int_equal(osb_utf8_seq_len("\xf0\x9f\x98\x80", 4), 4);
  assert_true(osb_utf8_valid("a\0b", 3));   /* NUL is a character */
}

static void utf8_rejects_malformed(void **state) {
  const char *bad[] = {
    "\x80",                 /* lone continuation */
    "\xc0\xaf",             /* overlong '/' */
    "\xc1\xbf",             /* overlong */
    "\xe0\x80\xaf",         /* overlong, 3 bytes */
    "\xf0\x80\x80\xaf",     /* overlong, 4 bytes */
    "\xed\xa0\x80",         /* surrogate U+D800 */
    "\xed\xbf\xbf",         /* surrogate U+DFFF */
    "\xf4\x90\x80\x80",     /* above U+10FFFF */
    "\xf5\x80\x80\x80",     /* invalid lead */
    "\xff",
    "\xc3",                 /* truncated */
    "\xe2\x82",             /* truncated */
    "\xf0\x9f\x98",         /* truncated */
    "\xc3\x28",             /* bad continuation */
    "ok \xe2\x28\xa1 ok",
  };
  for (size_t i = 0; i < OSB_ARRAY_LEN(bad); i++) {
    if (osb_utf8_valid(bad[i], strlen(bad[i]))) fail_msg("accepted case %zu", i);
  }
  assert_int_equal(osb_utf8_seq_len("\xed\xa0\x80", 3), 0);
  assert_int_equal(osb_utf8_seq_len("\xe2\x82\xac", 2), 0);   /* cut by n */
  assert_int_equal(osb_utf8_seq_len("", 0), 0);
}

/* ---- token bucket ---- */

static void tbucket_burst_then_rate(void **state) {
  osb_tbucket_t b;
  osb_tbucket_init(&b, 3, 1000);
  for (int i = 0; i < 3; i++) assert_true(osb_tbucket_take(&b, 2, 3, 1000));
  assert_false(osb_tbucket_take(&b, 2, 3, 1000));
  assert_int_equal(osb_tbucket_wait_s(&b, 2), 1);
  assert_false(osb_tbucket_take(&b, 2, 3, 1400));   /* 0.8 token */
  assert_true(osb_tbucket_take(&b, 2, 3, 1500));    /* 1.0 */
  assert_false(osb_tbucket_take(&b, 2, 3, 1500));
  /* long idle refills to the burst, not beyond */
  assert_true(osb_tbucket_refill(&b, 2, 3, 100000) == 3.0);
  for (int i = 0; i < 3; i++) assert_true(osb_tbucket_take(&b, 2, 3, 100000));
  assert_false(osb_tbucket_take(&b, 2, 3, 100000));
}

static void tbucket_clock_backwards_refills_nothing(void **state) {
  osb_tbucket_t b;
  osb_tbucket_init(&b, 1, 5000);
  assert_true(osb_tbucket_take(&b, 1, 1, 5000));
  assert_false(osb_tbucket_take(&b, 1, 1, 4000));   /* earlier: no credit */
  assert_false(osb_tbucket_take(&b, 1, 1, 5500));
  assert_true(osb_tbucket_take(&b, 1, 1, 6000));
}

/* The 8-byte bucket behaves as the 16-byte one, across the 32-bit wrap of
 * its clock too. */
static void tbucket32_matches_and_wraps(void **state) {
  osb_tbucket32_t b;
  osb_tbucket32_init(&b, 3, 1000);
  for (int i = 0; i < 3; i++) assert_true(osb_tbucket32_take(&b, 2, 3, 1000));
  assert_false(osb_tbucket32_take(&b, 2, 3, 1000));
  assert_false(osb_tbucket32_take(&b, 2, 3, 1400));   /* 0.8 token */
  assert_true(osb_tbucket32_take(&b, 2, 3, 1500));    /* 1.0 */
  assert_false(osb_tbucket32_take(&b, 2, 3, 1500));
  /* clock backwards: no credit, and later credit counts from the old time */
  osb_tbucket32_init(&b, 1, 5000);
  assert_true(osb_tbucket32_take(&b, 1, 1, 5000));
  assert_false(osb_tbucket32_take(&b, 1, 1, 4000));
  assert_false(osb_tbucket32_take(&b, 1, 1, 5500));
  assert_true(osb_tbucket32_take(&b, 1, 1, 6000));
  /* the low 32 bits wrap between two calls: 1,000 ms later is 1,000 ms */
  uint64_t t0 = 0xFFFFFE00ull;
  osb_tbucket32_init(&b, 1, t0);
  assert_true(osb_tbucket32_take(&b, 1, 1, t0));
  assert_false(osb_tbucket32_take(&b, 1, 1, t0 + 600));   /* past 2^32 already */
  assert_true(osb_tbucket32_take(&b, 1, 1, t0 + 1000));
  assert_false(osb_tbucket32_take(&b, 1, 1, t0 + 1000));
  /* long idle refills to the burst, not beyond */
  assert_true(osb_tbucket32_take(&b, 2, 3, t0 + 100000));
  assert_true(osb_tbucket32_take(&b, 2, 3, t0 + 100000));
  assert_true(osb_tbucket32_take(&b, 2, 3, t0 + 100000));
  assert_false(osb_tbucket32_take(&b, 2, 3, t0 + 100000));
}

static void tbucket_slow_rate_wait(void **state) {
  osb_tbucket_t b;
  osb_tbucket_init(&b, 1, 0);
  assert_true(osb_tbucket_take(&b, 0.1, 1, 0));
  assert_int_equal(osb_tbucket_wait_s(&b, 0.1), 10);   /* one token per 10 s */
  assert_int_equal(osb_tbucket_wait_s(&(osb_tbucket_t){1.5, 0}, 0.1), 0);
}

/* ---- key table ---- */

static void keytab_get_create_del(void **state) {
  osb_kt_t *t = osb_kt_new(8, sizeof(int), 0);
  bool created = false;
  int *v = osb_kt_get(t, "a", 1, 1, true, &created);
  assert_non_null(v);
  assert_true(created);
  assert_int_equal(*v, 0);   /* zero-filled */
  *v = 7;
  assert_null(osb_kt_get(t, "b", 1, 1, false, NULL));
  v = osb_kt_get(t, "a", 1, 2, true, &created);
  assert_false(created);
  assert_int_equal(*v, 7);
  /* keys are bytes, not C strings */
  int *w = osb_kt_get(t, "a\0x", 3, 2, true, &created);
  assert_true(created);
  assert_ptr_not_equal(w, v);
  assert_int_equal(osb_kt_count(t), 2);
  osb_kt_del(t, "a", 1);
  osb_kt_del(t, "missing", 7);
  assert_int_equal(osb_kt_count(t), 1);
  assert_null(osb_kt_get(t, "a", 1, 3, false, NULL));
  osb_kt_free(t);
}

static void keytab_bounded_lru(void **state) {
  osb_kt_t *t = osb_kt_new(4, 8, 0);
  char k[16];
  for (int i = 0; i < 4; i++) {
    snprintf(k, sizeof(k), "k%d", i);
    osb_kt_get(t, k, strlen(k), (uint64_t)i, true, NULL);
  }
  osb_kt_get(t, "k0", 2, 10, false, NULL);          /* k0 is now the newest */
  osb_kt_get(t, "k4", 2, 11, true, NULL);           /* evicts the stalest: k1 */
  assert_int_equal(osb_kt_count(t), 4);
  assert_non_null(osb_kt_get(t, "k0", 2, 12, false, NULL));
  assert_null(osb_kt_get(t, "k1", 2, 12, false, NULL));
  for (int i = 0; i < 1000; i++) {                  /* never more than the cap */
    snprintf(k, sizeof(k), "x%d", i);
    osb_kt_get(t, k, strlen(k), (uint64_t)(20 + i), true, NULL);
    assert_true(osb_kt_count(t) <= 4);
  }
  osb_kt_free(t);
}

static void keytab_idle_entries_expire(void **state) {
  osb_kt_t *t = osb_kt_new(100, 8, 1000);
  osb_kt_get(t, "old", 3, 0, true, NULL);
  osb_kt_get(t, "new", 3, 5000, true, NULL);   /* inserting evicts what idled 1 s */
  assert_null(osb_kt_get(t, "old", 3, 5000, false, NULL));
  assert_non_null(osb_kt_get(t, "new", 3, 5000, false, NULL));
  osb_kt_free(t);
}

/* ---- SHA-256 / HMAC-SHA256 (FIPS 180-2 and RFC 4231 vectors) ---- */

static void sha256_vectors(void **state) {
  char hex[65];
  osb_sha256_hex(hex, "", 0);
  assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  osb_sha256_hex(hex, "abc", 3);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  unsigned char md[OSB_SHA256_LEN];
  osb_sha256(md, "abc", 3);
  assert_int_equal(md[0], 0xba);
  assert_int_equal(md[31], 0xad);
}

static void hmac_vectors(void **state) {
  unsigned char mac[32];
  char hex[65];
  unsigned char key1[20];
  memset(key1, 0x0b, sizeof(key1));
  osb_hmac_sha256(mac, key1, sizeof(key1), "Hi There", 8);   /* RFC 4231 case 1 */
  osb_hex(hex, mac, 32);
  assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  for (int round = 0; round < 2; round++) {   /* case 2, twice: the cached context */
    osb_hmac_sha256(mac, "Jefe", 4, "what do ya want for nothing?", 28);
    osb_hex(hex, mac, 32);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  }
  unsigned char key6[131];   /* case 6: a key longer than the block */
  memset(key6, 0xaa, sizeof(key6));
  const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  osb_hmac_sha256(mac, key6, sizeof(key6), m6, strlen(m6));
  osb_hex(hex, mac, 32);
  assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  /* more keys than cached contexts, and a key past the cache's copy size */
  unsigned char big[300];
  memset(big, 1, sizeof(big));
  unsigned char a[32], b[32];
  osb_hmac_sha256(a, big, sizeof(big), "x", 1);
  for (int k = 0; k < 6; k++) osb_hmac_sha256(mac, &k, sizeof(k), "x", 1);
  osb_hmac_sha256(b, big, sizeof(big), "x", 1);
  assert_memory_equal(a, b, 32);
  osb_hmac_sha256(mac, "", 0, "", 0);   /* an empty key is allowed */
  osb_hmac_cache_clear();
  osb_hmac_sha256(mac, "Jefe", 4, "what do ya want for nothing?", 28);
  assert_int_equal(mac[0], 0x5b);
  osb_hmac_cache_clear();
}

/* ---- roles ---- */

static void role_names_round_trip(void **state) {
  osb_role_t r[] = {OSB_ROLE_USER, OSB_ROLE_ADMIN, OSB_ROLE_SERVICE};
  for (size_t i = 0; i < OSB_ARRAY_LEN(r); i++) assert_int_equal(osb_role_parse(osb_role_name(r[i])), r[i]);
  assert_string_equal(osb_role_name(OSB_ROLE_NONE), "none");
  assert_int_equal(osb_role_parse("root"), OSB_ROLE_NONE);
  assert_int_equal(osb_role_parse(NULL), OSB_ROLE_NONE);
}

/* ---- JSON into a buffer: the same format as every body and frame ---- */

static void json_dump_buf_format(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_puts(&b, "x=");
  json_t *j = json_pack("{s:f, s:[i, s]}", "a", 0.1, "b", 1, "t\"");
  assert_int_equal(osb_json_dump_buf(j, &b), 0);
  assert_string_equal(b.base, "x={\"a\":0.1,\"b\":[1,\"t\\\"\"]}");
  json_decref(j);
  j = json_string("bare");   /* any value, not only objects */
  osb_buf_reset(&b);
  assert_int_equal(osb_json_dump_buf(j, &b), 0);
  assert_string_equal(b.base, "\"bare\"");
  json_decref(j);
  assert_int_equal(osb_json_dump_buf(NULL, &b), OSB_EINVAL);
  osb_buf_free(&b);
}

static void json_escaper_escapes_del(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_json_str(&b, "a\x7f" "b\x01", 4);
  assert_string_equal(b.base, "\"a\\u007fb\\u0001\"");
  osb_buf_free(&b);
}

static void json_error_kind_never_quotes_input(void **state) {
  struct { const char *text; const char *kind; } cases[] = {
    {"{\"password\":\"hunter2", "unexpected end of input"},
    {"{\"a\":1} trailing-secret", "text after the JSON value"},
    {"{\"a\": secret-token}", "invalid syntax"},
    {"[\"\xff\"]", "invalid UTF-8"},
  };
  for (size_t i = 0; i < OSB_ARRAY_LEN(cases); i++) {
    json_error_t e;
    json_t *j = json_loads(cases[i].text, 0, &e);
    assert_null(j);
    const char *k = osb_json_error_kind(&e);
    assert_string_equal(k, cases[i].kind);
    assert_null(strstr(k, "secret"));
    assert_null(strstr(k, "hunter2"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(utf8_accepts_well_formed),
    cmocka_unit_test(utf8_rejects_malformed),
    cmocka_unit_test(tbucket_burst_then_rate),
    cmocka_unit_test(tbucket32_matches_and_wraps),
    cmocka_unit_test(tbucket_clock_backwards_refills_nothing),
    cmocka_unit_test(tbucket_slow_rate_wait),
    cmocka_unit_test(keytab_get_create_del),
    cmocka_unit_test(keytab_bounded_lru),
    cmocka_unit_test(keytab_idle_entries_expire),
    cmocka_unit_test(sha256_vectors),
    cmocka_unit_test(hmac_vectors),
    cmocka_unit_test(role_names_round_trip),
    cmocka_unit_test(json_dump_buf_format),
    cmocka_unit_test(json_escaper_escapes_del),
    cmocka_unit_test(json_error_kind_never_quotes_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
