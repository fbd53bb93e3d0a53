/* test_sse.c: the incremental Server-Sent Events parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "upstream/upstream.h"

typedef struct {
  int n;
  char ev[8][32];
  char data[8][256];
  char id[8][32];
  int retry[8];
  int stop_after;   /* return 1 after this many events (0 = never) */
} got_t;

static int on_ev(void *ud, const osb_sse_event_t *e) {
  got_t *g = ud;
  if (g->n < 8) {
    snprintf(g->ev[g->n], 32, "%s", e->event);
    assert_int_equal(strlen(e->data), e->data_len);
    snprintf(g->data[g->n], 256, "%s", e->data);
    snprintf(g->id[g->n], 32, "%s", e->id);
    g->retry[g->n] = e->retry_ms;
  }
  g->n++;
  return g->stop_after && g->n >= g->stop_after ? 1 : 0;
}

/* Feed `s` in pieces of `step` bytes. */
static void feed(osb_sse_t *p, const char *s, size_t step) {
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i += step) {
    size_t k = n - i < step ? n - i : step;
    assert_int_equal(osb_sse_feed(p, s + i, k), 0);
  }
}

static const char STREAM[] =
  "\xEF\xBB\xBF: a comment\r\n"
  "event: message_start\r\n"
  "data: {\"a\":1}\r\n"
  "\r\n"
  "data: line one\n"
  "data: line two\n"
  "data:no-space\n"
  "id: 7\n"
  "\n"
  "data\n"
  "\n"
  "retry: 1500\r"
  "data: cr only\r"
  "\r"
  "event: ignored-no-data\n"
  "\n"
  "data: [DONE]\n\n";

static void check_stream(got_t *g) {
  assert_int_equal(g->n, 5);
  assert_string_equal(g->ev[0], "message_start");
  assert_string_equal(g->data[0], "{\"a\":1}");
  assert_string_equal(g->ev[1], "message");
  assert_string_equal(g->data[1], "line one\nline two\nno-space");
  assert_string_equal(g->id[1], "7");
  assert_string_equal(g->data[2], "");           /* "data" alone: an empty data line */
  assert_string_equal(g->id[2], "7");            /* the id persists */
  assert_string_equal(g->data[3], "cr only");
  assert_int_equal(g->retry[3], 1500);
  assert_string_equal(g->data[4], "[DONE]");
  assert_string_equal(g->ev[4], "message");      /* event type resets after dispatch */
}

static void whole_stream_at_once(void **state) {
  got_t g = {0};
  osb_sse_t p;
  osb_sse_init(&p, on_ev, &g, 0);
  feed(&p, STREAM, sizeof(STREAM));
  check_stream(&g);
  osb_sse_dispose(&p);
}

/* Every split point, every piece size: fields split across reads, CRLF
 * split between two reads, the BOM split too. */
static void any_split_gives_the_same_events(void **state) {
  for (size_t step = 1; step <= 9; step++) {
    got_t g = {0};
    osb_sse_t p;
    osb_sse_init(&p, on_ev, &g, 0);
    feed(&p, STREAM, step);
    check_stream(&g);
    osb_sse_dispose(&p);
  }
  size_t n = strlen(STREAM);
  for (size_t cut = 1; cut < n; cut++) {
    got_t g = {0};
    osb_sse_t p;
    osb_sse_init(&p, on_ev, &g, 0);
    assert_int_equal(osb_sse_feed(&p, STREAM, cut), 0);
    assert_int_equal(osb_sse_feed(&p, STREAM + cut, n - cut), 0);
    check_stream(&g);
    osb_sse_dispose(&p);
  }
}

static void openai_and_anthropic_shapes(void **state) {
  got_t g = {0};
  osb_sse_t p;
  osb_sse_init(&p, on_ev, &g, 0);
  feed(&p,
       "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n"
       "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
       "data: [DONE]\n\n"
       "event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n",
       7);
  assert_int_equal(g.n, 4);
  assert_string_equal(g.data[2], "[DONE]");
  assert_string_equal(g.ev[3], "content_block_delta");
  osb_sse_dispose(&p);
}

static void limits_and_stop(void **state) {
  got_t g = {0};
  osb_sse_t p;
  osb_sse_init(&p, on_ev, &g, 16);
  assert_int_equal(osb_sse_feed(&p, "data: 0123456789abcdefXYZ", 25), OSB_ETOOBIG);
  osb_sse_dispose(&p);

  got_t h = {.stop_after = 1};
  osb_sse_init(&p, on_ev, &h, 0);
  assert_int_equal(osb_sse_feed(&p, "data: a\n\ndata: b\n\n", 18), 1);
  assert_int_equal(h.n, 1);
  osb_sse_dispose(&p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(whole_stream_at_once),
    cmocka_unit_test(any_split_gives_the_same_events),
    cmocka_unit_test(openai_and_anthropic_shapes),
    cmocka_unit_test(limits_and_stop),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
