/* llm_fuzz.c: libFuzzer driver for the LLM stream decoders
 * (apps/chat_source_llm.c, #included so its static callbacks are
 * reachable): the OpenAI chat-completions chunks and the Anthropic
 * messages events, each behind the real SSE parser, exactly as the
 * upstream client hands a streamed answer over (on_head, on_data pieces,
 * on_done).
 *
 * Input: byte 0 picks the provider (bit 0), a non-200 answer (bit 1: the
 * body is then an error body, 429/500/503 by bits 2-3) and a piece size
 * (bits 4-7, 1..16); byte 1 picks a transport error at the end (bit 0);
 * the rest is the response body.
 *
 * Oracles:
 *  - every piece of text handed to the reply engine is non-empty, valid
 *    UTF-8 and holds no NUL (the engine stores and frames it as is);
 *  - the text, the token counts and the outcome (err and reason) are the
 *    same whether the body arrives whole, in pieces of the chosen size, or
 *    a byte at a time;
 *  - the outcome follows the documented rule: err == 0 exactly when the
 *    answer was 200, no transport error, no error event, the terminator
 *    ([DONE] / message_stop) was seen and the SSE stream was well formed;
 *    (so a success needs the terminator in the body);
 *    err < 0 always comes with a short non-empty reason (NULL otherwise);
 *    a non-200 answer's reason starts with "HTTP <status>";
 *  - the end callback runs exactly once, and no text comes after it. */
#include "../../src/apps/chat_source_llm.c"

#include <stdint.h>

typedef struct {
  osb_buf_t text;
  int ends;
  int err;
  char reason[256];
  bool reason_null;
  int64_t tin, tout;
} sink_t;

static void sink_text(void *ud, const char *p, size_t n) {
  sink_t *s = ud;
  osb_assert(s->ends == 0);   /* nothing after the end */
  osb_assert(n > 0);
  osb_assert(osb_utf8_valid(p, n));
  osb_assert(memchr(p, 0, n) == NULL);
  osb_buf_append(&s->text, p, n);
}

static void sink_end(void *ud, const osb__chat_src_end_t *e) {
  sink_t *s = ud;
  s->ends++;
  s->err = e->err;
  s->reason_null = e->reason == NULL;
  snprintf(s->reason, sizeof(s->reason), "%s", e->reason ? e->reason : "");
  s->tin = e->tokens_in;
  s->tout = e->tokens_out;
}

static const osb__chat_src_out_t sink_out = { sink_text, sink_end };

/* One call: the decoder state as llm_start() sets it up, without the
 * network: head, body in pieces (stopping when the decoder aborts, as the
 * upstream client would), then done. Returns whether on_data aborted. */
static bool run(bool anthropic, int status, bool transport_err, const char *body, size_t n, size_t piece,
                sink_t *s) {
  memset(s, 0, sizeof(*s));
  llm_t *l = osb_calloc(1, sizeof(*l));
  active++;
  l->out = &sink_out;
  l->ud = s;
  l->anthropic = anthropic;
  osb_sse_init(&l->sse, on_event, l, 0);
  osb_assert(on_head(l, status, "text/event-stream") == 0);
  bool aborted = false;
  for (size_t off = 0; off < n && !aborted; off += piece) {
    size_t k = n - off < piece ? n - off : piece;
    aborted = on_data(l, body + off, k) != 0;
  }
  osb_upstream_result_t r = { 0 };
  r.status = status;
  if (transport_err) {
    r.err = OSB_ETIMEOUT;
    r.reason = "no chunk within the timeout";
  } else if (aborted) {
    r.err = OSB_EPROTO;   /* what the upstream client reports for an abort */
    r.reason = "aborted";
  }
  on_done(l, &r);
  osb_assert(active == 0);
  osb_assert(s->ends == 1);
  return aborted;
}

static bool same(const sink_t *a, const sink_t *b) {
  return a->text.len == b->text.len && (a->text.len == 0 || memcmp(a->text.base, b->text.base, a->text.len) == 0) &&
         a->err == b->err && strcmp(a->reason, b->reason) == 0 && a->tin == b->tin && a->tout == b->tout;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > 65536) return 0;
  bool anthropic = data[0] & 1;
  static const int statuses[] = { 429, 500, 503, 401 };
  int status = (data[0] & 2) ? statuses[(data[0] >> 2) & 3] : 200;
  size_t piece = 1 + (data[0] >> 4);
  bool transport_err = data[1] & 1;
  const char *body = (const char *)data + 2;
  size_t n = size - 2;

  sink_t whole, parts, bytes;
  bool aw = run(anthropic, status, transport_err, body, n, n ? n : 1, &whole);
  bool ap = run(anthropic, status, transport_err, body, n, piece, &parts);
  bool ab = run(anthropic, status, transport_err, body, n, 1, &bytes);
  osb_assert(aw == ap && aw == ab);
  osb_assert(same(&whole, &parts));
  osb_assert(same(&whole, &bytes));

  /* the outcome rule, on the whole-body run */
  if (whole.err == 0) {
    osb_assert(status == 200 && !transport_err && !aw);
    osb_assert(whole.reason_null);
    /* the terminator was there to be seen */
    const char *term = anthropic ? "message_stop" : "[DONE]";
    osb_assert(memmem(body, n, term, strlen(term)) != NULL);
  } else {
    osb_assert(whole.err < 0);
    osb_assert(!whole.reason_null && whole.reason[0] != '\0' && strlen(whole.reason) < sizeof(((llm_t *)0)->reason));
    if (transport_err) osb_assert(whole.err == OSB_ETIMEOUT);
    else if (status != 200) {
      char want[16];
      snprintf(want, sizeof(want), "HTTP %d", status);
      osb_assert(whole.err == OSB_EPROTO && strncmp(whole.reason, want, strlen(want)) == 0);
      osb_assert(whole.text.len == 0);   /* an error body is never text */
    } else {
      osb_assert(whole.err == OSB_EPROTO);
    }
  }
  osb_buf_free(&whole.text);
  osb_buf_free(&parts.text);
  osb_buf_free(&bytes.text);
  return 0;
}
