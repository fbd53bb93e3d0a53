/* Connection admission (edge.c): counting per client address, IPv6 by its
 * /64, moving a connection to the address its head names, releasing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <uv.h>

#include "core/config.h"
#include "http/internal.h"
#include "obs/log.h"
#include "obs/metrics.h"

static uv_loop_t loop;
static osb_config_t cfg;

static int setup(void **state) {
  setenv("OSB_ENV_FILE", "/nonexistent/.env", 1);
  setenv("LOG_LEVEL", "error", 1);
  setenv("MAX_CONNECTIONS_PER_IP", "2", 1);
  char err[256], warn[256];
  assert_int_equal(osb_config_load(&cfg, err, sizeof(err), warn, sizeof(warn)), 0);
  osb_log_init(cfg.log_level, cfg.log_format);
  uv_loop_init(&loop);
  osb__srv.loop = &loop;
  osb__edge_init();
  return 0;
}

static int teardown(void **state) {
  osb__edge_dispose();
  osb__srv.loop = NULL;
  assert_int_equal(uv_loop_close(&loop), 0);
  osb_metrics_reset();
  osb_config_dispose(&cfg);
  unsetenv("MAX_CONNECTIONS_PER_IP");
  return 0;
}

static void counts_per_address_and_refuses_past_the_limit(void **state) {
  osb__conn_t a = {0}, b = {0}, c = {0}, d = {0};
  assert_int_equal(osb__edge_account(&a, "192.0.2.1"), 0);
  assert_int_equal(osb__edge_account(&b, "192.0.2.1"), 0);
  assert_int_equal(osb__edge_account(&c, "192.0.2.1"), OSB_EDENIED);   /* the third of 2 */
  assert_int_equal(osb__edge_count("192.0.2.1"), 3);                  /* counted until closed */
  assert_int_equal(osb__edge_account(&d, "192.0.2.2"), 0);            /* another address */
  osb__edge_release(&c);
  osb__edge_release(&c);                                              /* idempotent */
  assert_int_equal(osb__edge_count("192.0.2.1"), 2);
  osb__edge_release(&a);
  osb__edge_release(&b);
  osb__edge_release(&d);
  assert_int_equal(osb__edge_count("192.0.2.1"), 0);
  assert_int_equal(osb__edge_count("192.0.2.2"), 0);
}

static void ipv6_counts_by_its_64_and_mapped_v4_as_v4(void **state) {
  osb__conn_t a = {0}, b = {0}, c = {0}, m = {0};
  assert_int_equal(osb__edge_account(&a, "2001:db8:1:2::1"), 0);
  assert_int_equal(osb__edge_account(&b, "2001:db8:1:2:ffff::9"), 0);
  /* same /64, another interface id: the same subscriber */
  assert_int_equal(osb__edge_account(&c, "2001:db8:1:2:dead:beef:0:1"), OSB_EDENIED);
  assert_int_equal(osb__edge_count("2001:db8:1:2::77"), 3);
  assert_int_equal(osb__edge_count("2001:db8:1:3::1"), 0);
  assert_int_equal(osb__edge_account(&m, "::ffff:192.0.2.9"), 0);
  assert_int_equal(osb__edge_count("192.0.2.9"), 1);
  osb__edge_release(&a);
  osb__edge_release(&b);
  osb__edge_release(&c);
  osb__edge_release(&m);
}

static void a_connection_moves_to_the_address_its_head_names(void **state) {
  osb__conn_t a = {0};
  assert_int_equal(osb__edge_account(&a, "198.51.100.1"), 0);
  assert_int_equal(osb__edge_account(&a, "198.51.100.1"), 0);         /* same: no double count */
  assert_int_equal(osb__edge_count("198.51.100.1"), 1);
  assert_int_equal(osb__edge_account(&a, "198.51.100.2"), 0);
  assert_int_equal(osb__edge_count("198.51.100.1"), 0);
  assert_int_equal(osb__edge_count("198.51.100.2"), 1);
  /* not an address: nothing to count, nothing refused */
  assert_int_equal(osb__edge_account(&a, "not-an-ip"), 0);
  assert_int_equal(osb__edge_count("198.51.100.2"), 1);
  osb__edge_release(&a);
  assert_int_equal(osb__edge_count("198.51.100.2"), 0);
}

static void table_grows_and_shrinks(void **state) {
  enum { N = 2000 };
  osb__conn_t *c = calloc(N, sizeof(*c));
  char ip[46];
  for (int i = 0; i < N; i++) {
    snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
    assert_int_equal(osb__edge_account(&c[i], ip), 0);
  }
  for (int i = 0; i < N; i++) {
    snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
    assert_int_equal(osb__edge_count(ip), 1);
    osb__edge_release(&c[i]);
    assert_int_equal(osb__edge_count(ip), 0);
  }
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(counts_per_address_and_refuses_past_the_limit, setup, teardown),
    cmocka_unit_test_setup_teardown(ipv6_counts_by_its_64_and_mapped_v4_as_v4, setup, teardown),
    cmocka_unit_test_setup_teardown(a_connection_moves_to_the_address_its_head_names, setup, teardown),
    cmocka_unit_test_setup_teardown(table_grows_and_shrinks, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
