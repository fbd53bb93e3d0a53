/* core's containers: osb_buf_t (growable, NUL-terminated bytes), osb_msg_t
 * (refcounted bytes with headroom) and the intrusive osb_list_t. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/core.h"

/* ---- osb_buf_t ---- */

static void buf_append_keeps_nul_and_grows(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_puts(&b, "ab");
  assert_int_equal(b.len, 2);
  assert_int_equal(b.base[2], 0);
  char big[1000];
  memset(big, 'x', sizeof(big));
  osb_buf_append(&b, big, sizeof(big));
  assert_int_equal(b.len, 1002);
  assert_true(b.cap > b.len);
  assert_int_equal(b.base[b.len], 0);
  assert_memory_equal(b.base, "abxxx", 5);
  osb_buf_append(&b, NULL, 0);   /* nothing to copy: harmless */
  assert_int_equal(b.len, 1002);
  osb_buf_free(&b);
  assert_null(b.base);
  assert_int_equal(b.len + b.cap, 0);
}

static void buf_printf_long_output(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_printf(&b, "%d-", 42);
  char s[300];
  memset(s, 'y', sizeof(s) - 1);
  s[sizeof(s) - 1] = 0;
  osb_buf_printf(&b, "%s", s);   /* longer than the first reservation */
  assert_int_equal(b.len, 3 + 299);
  assert_memory_equal(b.base, "42-yyy", 6);
  assert_int_equal(strlen(b.base), b.len);
  osb_buf_free(&b);
}

static void buf_try_reserve_limit(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  assert_int_equal(osb_buf_try_reserve(&b, 10, 16), 0);
  osb_buf_append(&b, "0123456789", 10);
  assert_int_equal(osb_buf_try_reserve(&b, 6, 16), 0);
  assert_int_equal(osb_buf_try_reserve(&b, 7, 16), OSB_ETOOBIG);
  assert_int_equal(osb_buf_try_reserve(&b, SIZE_MAX, 16), OSB_ETOOBIG);
  assert_int_equal(b.len, 10);
  osb_buf_free(&b);
}

static void buf_consume_and_reset(void **state) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_puts(&b, "hello world");
  osb_buf_consume(&b, 6);
  assert_string_equal(b.base, "world");
  osb_buf_consume(&b, 5);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.base, "");
  osb_buf_puts(&b, "again");
  osb_buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.base, "");
  osb_buf_reset(&b);
  osb_buf_free(&b);
  osb_buf_t e = OSB_BUF_INIT;
  osb_buf_reset(&e);   /* never allocated: no write */
  osb_buf_consume(&e, 0);
  osb_buf_free(&e);
}

/* ---- osb_msg_t ---- */

static void msg_headroom_and_prepend(void **state) {
  osb_msg_t *m = osb_msg_new(10, 4);
  assert_int_equal(m->refcnt, 1);
  assert_int_equal(m->headroom, 10);
  osb_msg_append(&m, "body", 4);
  osb_msg_prepend(m, "HDR", 3);   /* right-aligned against the payload */
  assert_int_equal(m->len, 7);
  assert_int_equal(m->headroom, 7);
  assert_memory_equal(m->data, "HDRbody", 7);
  osb_msg_unref(m);
}

static void msg_append_grows_and_keeps_headroom(void **state) {
  osb_msg_t *m = osb_msg_new(10, 2);
  char big[500];
  for (size_t i = 0; i < sizeof(big); i++) big[i] = (char)('a' + i % 26);
  osb_msg_append(&m, big, 100);
  osb_msg_append(&m, big + 100, 400);   /* reallocates: data moves with the block */
  assert_int_equal(m->len, 500);
  assert_true(m->cap >= 500);
  assert_memory_equal(m->data, big, 500);
  assert_ptr_equal(m->data, m->buf + 10);
  osb_msg_prepend(m, "0123456789", 10);
  assert_int_equal(m->len, 510);
  assert_memory_equal(m->data + 10, big, 500);
  osb_msg_unref(m);
}

static void msg_refcount_frees_at_zero(void **state) {
  osb_msg_t *m = osb_msg_from("abc", 3);
  assert_int_equal(m->headroom, 0);
  assert_memory_equal(m->data, "abc", 3);
  assert_ptr_equal(osb_msg_ref(m), m);   /* a subscriber's queue */
  assert_ptr_equal(osb_msg_ref(m), m);   /* another one */
  assert_int_equal(m->refcnt, 3);
  osb_msg_unref(m);                      /* the publisher lets go */
  osb_msg_unref(m);
  assert_int_equal(m->refcnt, 1);
  assert_memory_equal(m->data, "abc", 3);
  osb_msg_unref(m);                      /* the last: freed (ASan checks) */
  osb_msg_unref(NULL);                   /* harmless */
}

/* ---- osb_list_t ---- */

typedef struct item {
  int v;
  osb_list_t link;
} item_t;

static int list_values(osb_list_t *h, int *out, int max) {
  int n = 0;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, h) {
    if (n < max) out[n] = osb_container_of(pos, item_t, link)->v;
    n++;
  }
  return n;
}

static void list_order_and_remove(void **state) {
  osb_list_t h;
  osb_list_init(&h);
  assert_true(osb_list_empty(&h));
  item_t a = {1, {NULL, NULL}}, b = {2, {NULL, NULL}}, c = {3, {NULL, NULL}};
  assert_false(osb_list_linked(&a.link));   /* never inserted */
  osb_list_insert_tail(&h, &b.link);
  osb_list_insert_tail(&h, &c.link);
  osb_list_insert_head(&h, &a.link);
  int v[4];
  assert_int_equal(list_values(&h, v, 4), 3);
  assert_int_equal(v[0], 1);
  assert_int_equal(v[1], 2);
  assert_int_equal(v[2], 3);
  assert_true(osb_list_linked(&b.link));
  osb_list_remove(&b.link);
  assert_false(osb_list_linked(&b.link));
  osb_list_remove(&b.link);   /* twice: harmless */
  assert_int_equal(list_values(&h, v, 4), 2);
  assert_int_equal(v[0], 1);
  assert_int_equal(v[1], 3);
}

static void list_foreach_safe_removes_while_walking(void **state) {
  osb_list_t h;
  osb_list_init(&h);
  item_t it[5];
  for (int i = 0; i < 5; i++) {
    it[i].v = i;
    osb_list_insert_tail(&h, &it[i].link);
  }
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &h) {
    if (osb_container_of(pos, item_t, link)->v % 2 == 0) osb_list_remove(pos);
  }
  int v[5];
  assert_int_equal(list_values(&h, v, 5), 2);
  assert_int_equal(v[0], 1);
  assert_int_equal(v[1], 3);
}

static void list_move_takes_everything(void **state) {
  osb_list_t src, dst;
  osb_list_init(&src);
  osb_list_init(&dst);
  item_t a = {1, {NULL, NULL}}, b = {2, {NULL, NULL}};
  osb_list_move(&dst, &src);   /* empty source: dst ends empty */
  assert_true(osb_list_empty(&dst));
  osb_list_insert_tail(&src, &a.link);
  osb_list_insert_tail(&src, &b.link);
  osb_list_move(&dst, &src);
  assert_true(osb_list_empty(&src));
  int v[3];
  assert_int_equal(list_values(&dst, v, 3), 2);
  assert_int_equal(v[0], 1);
  assert_int_equal(v[1], 2);
  assert_ptr_equal(a.link.prev, &dst);
  assert_ptr_equal(b.link.next, &dst);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(buf_append_keeps_nul_and_grows),
    cmocka_unit_test(buf_printf_long_output),
    cmocka_unit_test(buf_try_reserve_limit),
    cmocka_unit_test(buf_consume_and_reset),
    cmocka_unit_test(msg_headroom_and_prepend),
    cmocka_unit_test(msg_append_grows_and_keeps_headroom),
    cmocka_unit_test(msg_refcount_frees_at_zero),
    cmocka_unit_test(list_order_and_remove),
    cmocka_unit_test(list_foreach_safe_removes_while_walking),
    cmocka_unit_test(list_move_takes_everything),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
