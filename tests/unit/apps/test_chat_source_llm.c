/* test_chat_source_llm.c: the LLM stream decoders (their statics, without
 * the network): the terminator ends the reply, a cut provider message
 * never leaves half a character in the reason, token counts out of range
 * are unknown. The llm_fuzz driver checks the same rules on fuzzed input;
 * these are its findings, fixed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "apps/chat_source_llm.c"   /* statics: on_head, on_data, on_done */

typedef struct {
  osb_buf_t text;
  int ends, err;
  char reason[256];
  int64_t tin, tout;
} sink_t;

static void s_text(void *ud, const char *p, size_t n) { osb_buf_append(&((sink_t *)ud)->text, p, n); }

static void s_end(void *ud, const osb__chat_src_end_t *e) {
  sink_t *s = ud;
  s->ends++;
  s->err = e->err;
  snprintf(s->reason, sizeof(s->reason), "%s", e->reason ? e->reason : "");
  s->tin = e->tokens_in;
  s->tout = e->tokens_out;
}

static const osb__chat_src_out_t s_out = { s_text, s_end };

/* A call as llm_start() makes it (llm_new); the body in pieces of `step` bytes. */
static void run(bool anthropic, int status, const char *body, size_t step, size_t max_event, sink_t *s) {
  memset(s, 0, sizeof(*s));
  llm_t *l = llm_new(&s_out, s, anthropic, max_event);
  assert_int_equal(on_head(l, status, "text/event-stream"), 0);
  size_t n = strlen(body);
  bool aborted = false;
  for (size_t i = 0; i < n && !aborted; i += step) aborted = on_data(l, body + i, n - i < step ? n - i : step) != 0;
  osb_upstream_result_t r = { .status = status, .err = aborted ? OSB_EPROTO : 0, .reason = aborted ? "aborted" : NULL };
  on_done(l, &r);
  assert_int_equal(s->ends, 1);
  assert_int_equal(active, 0);
}

static void done(sink_t *s) { osb_buf_free(&s->text); }

static void text_is(const sink_t *s, const char *want) {
  assert_int_equal(s->text.len, strlen(want));
  if (s->text.len) assert_memory_equal(s->text.base, want, s->text.len);
}

#define OA(content) "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" content "\"}}]}\n\n"
#define AN_TEXT(t)                                                                     \
  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"      \
  "\"delta\":{\"type\":\"text_delta\",\"text\":\"" t "\"}}\n\n"

static void nothing_after_the_terminator(void **state) {
  OSB_UNUSED(state);
  /* more text, an error event and a line over the event limit after [DONE] */
  char long_line[200];
  memset(long_line, 'x', sizeof(long_line) - 1);
  long_line[sizeof(long_line) - 1] = 0;
  char *oa = osb_asprintf("%s%sdata: [DONE]\n\n%sdata: {\"error\":{\"message\":\"late\"}}\n\ndata: %s\n\n", OA("Hel"),
                          OA("lo"), OA(" late"), long_line);
  char *an = osb_asprintf("%s%sevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n%s"
                          "event: error\ndata: {\"type\":\"error\","
                          "\"error\":{\"type\":\"overloaded_error\",\"message\":\"late\"}}\n\n"
                          "data: %s\n\n",
                          AN_TEXT("Hel"), AN_TEXT("lo"), AN_TEXT(" late"), long_line);
  const char *bodies[2] = { oa, an };
  for (int a = 0; a < 2; a++) {
    for (size_t step = 1; step <= strlen(bodies[a]); step = step * 3 + 1) {
      sink_t s;
      run(a == 1, 200, bodies[a], step, 128, &s);
      text_is(&s, "Hello");
      if (s.err) fail_msg("%s, step %zu: err %d (%s)", a ? "anthropic" : "openai", step, s.err, s.reason);
      done(&s);
    }
  }
  free(oa);
  free(an);
}

static void a_cut_reason_keeps_whole_characters(void **state) {
  OSB_UNUSED(state);
  /* "a" + "é…": cut at 150 (event) / 120 (error body) bytes of the message,
   * which falls inside an é */
  osb_buf_t m = { 0 };
  osb_buf_puts(&m, "a");
  for (int i = 0; i < 100; i++) osb_buf_puts(&m, "\xc3\xa9");
  char *oa = osb_asprintf("%sdata: {\"error\":{\"message\":\"%s\",\"type\":\"server_error\"}}\n\n", OA("Hi"), m.base);
  char *an = osb_asprintf("event: error\ndata: {\"type\":\"error\","
                          "\"error\":{\"type\":\"overloaded_error\",\"message\":\"%s\"}}\n\n",
                          m.base);
  char *eb = osb_asprintf("{\"error\":{\"message\":\"%s\"}}", m.base);
  struct { bool anthropic; int status; const char *body, *prefix; size_t keep; } cases[] = {
    { false, 200, oa, "provider error: ", 149 },   /* "a" + 74 é of the 150 bytes */
    { true, 200, an, "provider error: ", 149 },
    { false, 500, eb, "HTTP 500: ", 119 },         /* "a" + 59 é of the 120 */
    { true, 529, eb, "HTTP 529: ", 119 },
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sink_t s;
    run(cases[i].anthropic, cases[i].status, cases[i].body, 7, 0, &s);
    assert_int_equal(s.err, OSB_EPROTO);
    if (!osb_utf8_valid(s.reason, strlen(s.reason))) fail_msg("case %zu: reason is not UTF-8: %s", i, s.reason);
    char *want = osb_asprintf("%s%.*s", cases[i].prefix, (int)cases[i].keep, m.base);
    assert_string_equal(s.reason, want);
    free(want);
    done(&s);
  }
  free(oa);
  free(an);
  free(eb);
  osb_buf_free(&m);
}

static void token_counts_out_of_range_are_unknown(void **state) {
  OSB_UNUSED(state);
  sink_t s;
  run(false, 200,
      OA("Hi") "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":-3}}\n\n"
               "data: [DONE]\n\n",
      5, 0, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.tin, 0);
  assert_int_equal(s.tout, 0);
  done(&s);
  run(false, 200, OA("Hi") "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000000000,\"completion_tokens\":7.5}}\n\n"
                           "data: [DONE]\n\n",
      5, 0, &s);
  assert_int_equal(s.tin, OSB_CHAT_MAX_TOKENS);   /* the bound itself is believed */
  assert_int_equal(s.tout, 0);
  done(&s);
  run(true, 200,
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
      AN_TEXT("Hi")
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":1000000001}}\n\n"
      "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
      3, 0, &s);
  assert_int_equal(s.err, 0);
  assert_int_equal(s.tin, 25);
  assert_int_equal(s.tout, 0);
  text_is(&s, "Hi");
  done(&s);
  run(true, 200,
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":-1,\"output_tokens\":1}}}\n\n"
      "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":42}}\n\n"
      "event: message_stop\ndata: {}\n\n",
      64, 0, &s);
  assert_int_equal(s.tin, 0);
  assert_int_equal(s.tout, 42);
  done(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(nothing_after_the_terminator),
    cmocka_unit_test(a_cut_reason_keeps_whole_characters),
    cmocka_unit_test(token_counts_out_of_range_are_unknown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
