/* llm_fuzz.c: libFuzzer driver for the LLM stream decoders
 * (apps/chat_source_llm.c, #included so its static callbacks are
 * reachable): the OpenAI chat-completions chunks and the Anthropic
 * messages events, each behind the real SSE parser, exactly as the
 * upstream client hands a streamed answer over (on_head, on_data pieces,
 * on_done).
 *
 * Input: byte 0 picks the provider (bit 0), a non-200 answer (bit 1: the
 * body is then an error body, 429/500/503/401 by bits 2-3) and a piece
 * size (bits 4-7, 1..16); byte 1 picks a transport error at the end
 * (bit 0) and seeds the piece sizes of a fourth run (bits 1-7); the rest
 * is the response body.
 *
 * Oracles:
 *  - every piece of text handed to the reply engine is non-empty, valid
 *    UTF-8 and holds no NUL (the engine stores and frames it as is), and
 *    none comes once the terminator was seen or after the end;
 *  - the text, the token counts and the outcome (err and reason) are the
 *    same whether the body arrives whole, in pieces of the chosen size, in
 *    pieces of varying sizes, or a byte at a time;
 *  - the terminator ([DONE] / message_stop) ends the reply: the body cut
 *    right after it gives the same text, tokens and outcome as the whole
 *    body (what follows, events, error events or broken framing, counts
 *    for nothing);
 *  - the outcome follows the documented rule: err == 0 exactly when the
 *    answer was 200, no transport error, no error event, the terminator
 *    was seen and the SSE stream was well formed (so a success needs the
 *    terminator in the body); err < 0 is OSB_EPROTO or the transport's
 *    error and always comes with a short non-empty reason in valid UTF-8
 *    (it is stored in the message's JSON metadata and announced in
 *    agents.status) that is one of the documented ones: "HTTP <status>"
 *    for a non-200 (whose body never becomes text), "provider error: ",
 *    "bad event stream: ", "the stream ended before the end of the reply"
 *    or the transport's reason; NULL with err == 0;
 *  - token counts lie in 0..OSB_CHAT_MAX_TOKENS (the engine adds them up);
 *  - the end callback runs exactly once and the call is freed. */
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

static llm_t *cur;   /* the call in progress (NULL once it ended) */

static void sink_text(void *ud, const char *p, size_t n) {
  sink_t *s = ud;
  osb_assert(s->ends == 0 && cur);   /* nothing after the end */
  osb_assert(!cur->finished);        /* nor after the terminator */
  osb_assert(n > 0);
  osb_assert(osb_utf8_valid(p, n));
  osb_assert(memchr(p, 0, n) == NULL);
  osb_buf_append(&s->text, p, n);
}

static void sink_end(void *ud, const osb__chat_src_end_t *e) {
  sink_t *s = ud;
  s->ends++;
  cur = NULL;
  s->err = e->err;
  s->reason_null = e->reason == NULL;
  if (e->reason) {
    osb_assert(strlen(e->reason) < sizeof(((llm_t *)0)->reason));
    osb_assert(osb_utf8_valid(e->reason, strlen(e->reason)));
  }
  snprintf(s->reason, sizeof(s->reason), "%s", e->reason ? e->reason : "");
  s->tin = e->tokens_in;
  s->tout = e->tokens_out;
}

static const osb__chat_src_out_t sink_out = { sink_text, sink_end };

static const char TRANSPORT_REASON[] = "no chunk within the timeout";

/* The next piece size: fixed, or from a small PRNG when *seed != 0. */
static size_t next_piece(size_t piece, uint32_t *seed) {
  if (!*seed) return piece;
  *seed ^= *seed << 13, *seed ^= *seed >> 17, *seed ^= *seed << 5;
  uint32_t r = *seed % 64;
  return r < 40 ? 1 + r % 8 : r < 60 ? 9 + r * 7 : 1 + r * 97;
}

/* One call: the decoder state from llm_new() (as llm_start() makes it), without the
 * network: head, body in pieces (stopping when the decoder aborts, as the
 * upstream client would), then done. Returns whether on_data aborted;
 * *finished_at (if not NULL) gets the number of body bytes fed when the
 * terminator was first seen (SIZE_MAX if never). */
static bool run(bool anthropic, int status, bool transport_err, const char *body, size_t n, size_t piece,
                uint32_t seed, sink_t *s, size_t *finished_at) {
  memset(s, 0, sizeof(*s));
  llm_t *l = llm_new(&sink_out, s, anthropic, 0);
  cur = l;
  if (finished_at) *finished_at = SIZE_MAX;
  osb_assert(on_head(l, status, "text/event-stream") == 0);
  bool aborted = false;
  size_t off = 0;
  while (off < n && !aborted) {
    size_t k = next_piece(piece, &seed);
    if (k > n - off) k = n - off;
    aborted = on_data(l, body + off, k) != 0;
    off += k;
    if (finished_at && *finished_at == SIZE_MAX && l->finished) *finished_at = off;
  }
  osb_upstream_result_t r = { 0 };
  r.status = status;
  if (transport_err) {
    r.err = OSB_ETIMEOUT;
    r.reason = TRANSPORT_REASON;
  } else if (aborted) {
    r.err = OSB_EPROTO;   /* what the upstream client reports for an abort */
    r.reason = "aborted";
  }
  on_done(l, &r);
  osb_assert(active == 0);
  osb_assert(s->ends == 1 && cur == NULL);
  osb_assert(s->tin >= 0 && s->tin <= OSB_CHAT_MAX_TOKENS);
  osb_assert(s->tout >= 0 && s->tout <= OSB_CHAT_MAX_TOKENS);
  return aborted;
}

static bool same(const sink_t *a, const sink_t *b) {
  return a->text.len == b->text.len && (a->text.len == 0 || memcmp(a->text.base, b->text.base, a->text.len) == 0) &&
         a->err == b->err && a->reason_null == b->reason_null && strcmp(a->reason, b->reason) == 0 &&
         a->tin == b->tin && a->tout == b->tout;
}

static bool starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2 || size > 65536) return 0;
  bool anthropic = data[0] & 1;
  static const int statuses[] = { 429, 500, 503, 401 };
  int status = (data[0] & 2) ? statuses[(data[0] >> 2) & 3] : 200;
  size_t piece = 1 + (data[0] >> 4);
  bool transport_err = data[1] & 1;
  uint32_t seed = 0x9e3779b9u ^ (uint32_t)(data[1] >> 1);
  const char *body = (const char *)data + 2;
  size_t n = size - 2;

  sink_t whole, parts, varied, bytes;
  size_t fin = SIZE_MAX;
  bool aw = run(anthropic, status, transport_err, body, n, n ? n : 1, 0, &whole, NULL);
  bool ap = run(anthropic, status, transport_err, body, n, piece, 0, &parts, NULL);
  bool av = run(anthropic, status, transport_err, body, n, 1, seed, &varied, NULL);
  bool ab = run(anthropic, status, transport_err, body, n, 1, 0, &bytes, &fin);
  osb_assert(aw == ap && aw == av && aw == ab);
  osb_assert(same(&whole, &parts));
  osb_assert(same(&whole, &varied));
  osb_assert(same(&whole, &bytes));

  /* the terminator ends it: the body cut right after it answers the same */
  if (fin != SIZE_MAX) {
    osb_assert(status == 200 && !aw);
    sink_t cut;
    bool ac = run(anthropic, status, transport_err, body, fin, fin ? fin : 1, 0, &cut, NULL);
    osb_assert(!ac && same(&whole, &cut));
    osb_buf_free(&cut.text);
  }

  /* the outcome rule, on the whole-body run */
  if (whole.err == 0) {
    osb_assert(status == 200 && !transport_err && !aw && fin != SIZE_MAX);
    osb_assert(whole.reason_null);
    /* the terminator was there to be seen: OpenAI's [DONE] is raw event
     * data; Anthropic's type is JSON, which may spell it with \u escapes */
    const char *term = anthropic ? "message_stop" : "[DONE]";
    osb_assert(memmem(body, n, term, strlen(term)) != NULL || (anthropic && memmem(body, n, "\\u", 2) != NULL));
  } else {
    osb_assert(whole.err < 0);
    osb_assert(!whole.reason_null && whole.reason[0] != '\0');
    if (status != 200 && !transport_err) {
      char want[16];
      snprintf(want, sizeof(want), "HTTP %d", status);
      osb_assert(whole.err == OSB_EPROTO && starts(whole.reason, want));
      osb_assert(whole.text.len == 0);   /* an error body is never text */
    } else if (status != 200) {
      osb_assert(whole.err == OSB_ETIMEOUT && !strcmp(whole.reason, TRANSPORT_REASON));
      osb_assert(whole.text.len == 0);
    } else {
      bool provider = starts(whole.reason, "provider error: "), framing = starts(whole.reason, "bad event stream: ");
      osb_assert(framing == aw);   /* a framing error aborts the call */
      if (transport_err) {
        osb_assert(whole.err == OSB_ETIMEOUT);
        osb_assert(provider || framing || !strcmp(whole.reason, TRANSPORT_REASON));
      } else {
        osb_assert(whole.err == OSB_EPROTO);
        osb_assert(provider || framing || !strcmp(whole.reason, "the stream ended before the end of the reply"));
        if (!provider && !framing) osb_assert(fin == SIZE_MAX);
      }
    }
  }
  osb_buf_free(&whole.text);
  osb_buf_free(&parts.text);
  osb_buf_free(&varied.text);
  osb_buf_free(&bytes.text);
  return 0;
}
