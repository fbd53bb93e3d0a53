/* test_pg_resolve.c: which DATABASE_URL hosts the pool resolves itself
 * (uv_getaddrinfo, off the loop) and the host/hostaddr lists it hands to
 * libpq. No server needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "db/internal.h"

static void expect_host(const char *url, const char *want) {
  char *h = osb__pg_resolvable_host(url);
  if (!want) {
    assert_null(h);
  } else {
    assert_non_null(h);
    assert_string_equal(h, want);
  }
  free(h);
}

static void test_names_are_resolved_literals_and_sockets_are_not(void **state) {
  expect_host("postgres://u@db.example.com:5432/osb", "db.example.com");
  expect_host("postgresql://u:pw@localhost/osb?sslmode=require", "localhost");
  expect_host("host=pg.internal dbname=osb", "pg.internal");
  expect_host("postgres://u@127.0.0.1:5432/osb", NULL);
  expect_host("postgres://u@[::1]:5432/osb", NULL);
  expect_host("postgres://u@/osb?host=/var/run/postgresql", NULL);
  expect_host("host=/tmp dbname=osb", NULL);
  expect_host("postgres://u@db.example.com/osb?hostaddr=10.0.0.5", NULL);   /* the user chose */
  expect_host("postgres://u@a.example.com,b.example.com/osb", NULL);        /* multi-host: libpq's */
  expect_host("postgres:///osb", NULL);
  expect_host("not a url ===", NULL);
}

static void test_lists_pair_each_address_with_the_host_name(void **state) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_flags = AI_NUMERICHOST;
  /* build a list 127.0.0.1, ::1, 127.0.0.1 (a duplicate) by hand */
  struct addrinfo *a = NULL, *b = NULL, *c = NULL;
  assert_int_equal(getaddrinfo("127.0.0.1", NULL, &hints, &a), 0);
  assert_int_equal(getaddrinfo("::1", NULL, &hints, &b), 0);
  assert_int_equal(getaddrinfo("127.0.0.1", NULL, &hints, &c), 0);
  struct addrinfo *lastb = b;
  while (lastb->ai_next) lastb = lastb->ai_next;
  struct addrinfo *lasta = a;
  while (lasta->ai_next) lasta = lasta->ai_next;
  lasta->ai_next = b;
  lastb->ai_next = c;
  res = a;
  osb_buf_t hosts = OSB_BUF_INIT, addrs = OSB_BUF_INIT;
  int n = osb__pg_hostaddr_lists("db.example.com", res, &hosts, &addrs);
  assert_int_equal(n, 2);
  assert_string_equal(hosts.base, "db.example.com,db.example.com");
  assert_string_equal(addrs.base, "127.0.0.1,::1");
  lasta->ai_next = NULL;
  lastb->ai_next = NULL;
  freeaddrinfo(a);
  freeaddrinfo(b);
  freeaddrinfo(c);
  osb_buf_free(&hosts);
  osb_buf_free(&addrs);
  osb_buf_t h2 = OSB_BUF_INIT, a2 = OSB_BUF_INIT;
  assert_int_equal(osb__pg_hostaddr_lists("x", NULL, &h2, &a2), 0);
  osb_buf_free(&h2);
  osb_buf_free(&a2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names_are_resolved_literals_and_sockets_are_not),
    cmocka_unit_test(test_lists_pair_each_address_with_the_host_name),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
