/* sse_fuzz.c: libFuzzer driver for the incremental Server-Sent Events parser
 * (upstream/sse.c) that reads LLM streams. The first byte picks a piece
 * size and a small event limit; the rest is the stream.
 * Oracles: the events (type, data, id, retry) and the result are the same
 * whether the stream arrives whole, in pieces of the chosen size, or a byte
 * at a time (a CR at a piece's end and an LF at the next one's start are one
 * line end); every event's data is NUL-terminated at data_len and within
 * the limit; a refusal is OSB_ETOOBIG. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "upstream/upstream.h"

typedef struct {
  osb_buf_t log;   /* every event, serialized */
  size_t limit;
} rec_t;

static int on_event(void *ud, const osb_sse_event_t *ev) {
  rec_t *r = ud;
  osb_assert(ev->event && ev->data && ev->id);
  osb_assert(ev->data[ev->data_len] == '\0');
  osb_assert(ev->data_len <= r->limit);
  osb_buf_printf(&r->log, "%s|%zu|%s|%d|", ev->event, ev->data_len, ev->id, ev->retry_ms);
  osb_buf_append(&r->log, ev->data, ev->data_len);
  osb_buf_append(&r->log, "\n", 1);
  return 0;
}

static int run(const char *s, size_t n, size_t piece, size_t limit, rec_t *r) {
  osb_sse_t p;
  r->log = (osb_buf_t)OSB_BUF_INIT;
  r->limit = limit;
  osb_sse_init(&p, on_event, r, limit);
  int rc = 0;
  for (size_t off = 0; off < n && rc == 0; off += piece) {
    size_t k = n - off < piece ? n - off : piece;
    rc = osb_sse_feed(&p, s + off, k);
  }
  osb_sse_dispose(&p);
  osb_assert(rc == 0 || rc == OSB_ETOOBIG);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 65536) return 0;
  size_t piece = 1 + (data[0] & 0x1f);
  size_t limit = (data[0] & 0x80) ? 64 : 65536;
  const char *s = (const char *)data + 1;
  size_t n = size - 1;
  rec_t whole, parts, bytes;
  int a = run(s, n, n ? n : 1, limit, &whole);
  int b = run(s, n, piece, limit, &parts);
  int c = run(s, n, 1, limit, &bytes);
  /* Events before a refusal may differ only in how far parsing got; when
   * nothing is refused, all three must agree exactly. */
  if (a == 0 && b == 0 && c == 0) {
    osb_assert(whole.log.len == parts.log.len && whole.log.len == bytes.log.len);
    osb_assert(memcmp(whole.log.base ? whole.log.base : "", parts.log.base ? parts.log.base : "", whole.log.len) == 0);
    osb_assert(memcmp(whole.log.base ? whole.log.base : "", bytes.log.base ? bytes.log.base : "", whole.log.len) == 0);
  }
  osb_buf_free(&whole.log);
  osb_buf_free(&parts.log);
  osb_buf_free(&bytes.log);
  return 0;
}
