/* test_secret.c: the JWT signing key: configured, generated once with mode
 * 0600 in the data directory, and reused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ftw.h>

#include "auth/internal.h"

static char dir[256];
static char dbpath[300];
static char keypath[300];

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *f) { return remove(p); }

static int setup(void **s) {
  snprintf(dir, sizeof(dir), "/tmp/osb-secret-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(dbpath, sizeof(dbpath), "%s/sub/osb.db", dir);
  snprintf(keypath, sizeof(keypath), "%s/sub/jwt_secret", dir);
  return 0;
}

static int teardown(void **s) {
  nftw(dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static void configured_secret_wins(void **s) {
  char *k; size_t kl; bool gen; char err[256];
  assert_int_equal(osb__secret_load("configured-secret-value", dbpath, &k, &kl, &gen, err, sizeof(err)), 0);
  assert_string_equal(k, "configured-secret-value");
  assert_false(gen);
  assert_int_not_equal(access(keypath, F_OK), 0);
  free(k);
}

static void generated_with_mode_0600(void **s) {
  char *k; size_t kl; bool gen; char err[256];
  assert_int_equal(osb__secret_load(NULL, dbpath, &k, &kl, &gen, err, sizeof(err)), 0);
  assert_true(gen);
  assert_int_equal(kl, 64);
  struct stat st;
  assert_int_equal(stat(keypath, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  free(k);
}

static void generated_once_then_reused(void **s) {
  char *a, *b; size_t al, bl; bool gen; char err[256];
  assert_int_equal(osb__secret_load(NULL, dbpath, &a, &al, &gen, err, sizeof(err)), 0);
  assert_true(gen);
  assert_int_equal(osb__secret_load("", dbpath, &b, &bl, &gen, err, sizeof(err)), 0);
  assert_false(gen);
  assert_string_equal(a, b);
  free(a);
  free(b);
}

static void loose_permissions_tightened(void **s) {
  char *k; size_t kl; bool gen; char err[256];
  assert_int_equal(osb__secret_load(NULL, dbpath, &k, &kl, &gen, err, sizeof(err)), 0);
  free(k);
  chmod(keypath, 0644);
  assert_int_equal(osb__secret_load(NULL, dbpath, &k, &kl, &gen, err, sizeof(err)), 0);
  struct stat st;
  assert_int_equal(stat(keypath, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  free(k);
}

static void short_file_refused(void **s) {
  char *k; size_t kl; bool gen; char err[256];
  char sub[300];
  snprintf(sub, sizeof(sub), "%s/sub", dir);
  mkdir(sub, 0700);
  FILE *f = fopen(keypath, "w");
  fputs("short\n", f);
  fclose(f);
  chmod(keypath, 0600);
  assert_int_equal(osb__secret_load(NULL, dbpath, &k, &kl, &gen, err, sizeof(err)), OSB_ECONFIG);
  assert_non_null(strstr(err, "jwt_secret"));
  assert_null(k);
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(configured_secret_wins, setup, teardown),
    cmocka_unit_test_setup_teardown(generated_with_mode_0600, setup, teardown),
    cmocka_unit_test_setup_teardown(generated_once_then_reused, setup, teardown),
    cmocka_unit_test_setup_teardown(loose_permissions_tightened, setup, teardown),
    cmocka_unit_test_setup_teardown(short_file_refused, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
