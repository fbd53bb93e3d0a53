/* chat_source_kb.c: the knowledge-base fallback as a reply source.
 *
 * The answer is built from the agent's knowledge entries that best match
 * the user's message (full-text search, osb_agents_knowledge_search: FTS5
 * bm25 on SQLite, ts_rank on PostgreSQL), each entry's title and its body
 * verbatim; when nothing matches (or the message has no searchable word)
 * it is a fixed message saying the assistant is unavailable. The text is
 * then streamed like a model's: a few words every PACE_MS, so clients see
 * the same agent.delta → agent.done sequence whatever the source.
 *
 * Ownership: the state is the module's from start() until both the search
 * callback (if one is pending) and the pacing timer's close callback have
 * run; cancel() only marks it, so a late callback finds valid memory. */
#include "apps/chat_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "apps/agents.h"
#include "obs/log.h"

#define PACE_MS 12          /* between pieces */
#define WORDS_PER_PIECE 4
#define MAX_ENTRIES 2       /* entries quoted in one answer */

static const char UNAVAILABLE[] =
  "The assistant is unavailable right now, and nothing in my notes matches your question. "
  "Please try again in a few minutes, or ask about a specific procedure, product or objection.";
static const char INTRO[] = "Here is what my notes say:\n\n";

typedef struct kb {
  uv_timer_t timer;
  const osb__chat_src_out_t *out;
  void *ud;
  osb_buf_t text;
  size_t pos;
  int refs;           /* the timer (until its close callback) + a pending search */
  bool cancelled;     /* no callback may run any more */
} kb_t;

static size_t active;

size_t osb__chat_src_knowledge_active(void) { return active; }

static void kb_unref(kb_t *k) {
  if (--k->refs > 0) return;
  osb_buf_free(&k->text);
  free(k);
  active--;
}

static void kb_closed(uv_handle_t *h) { kb_unref(h->data); }

/* Stop for good: no callback runs afterwards; memory goes with the refs. */
static void kb_finish(kb_t *k) {
  k->cancelled = true;
  if (!uv_is_closing((uv_handle_t *)&k->timer)) uv_close((uv_handle_t *)&k->timer, kb_closed);
}

static void kb_tick(uv_timer_t *t) {
  kb_t *k = t->data;
  if (k->cancelled) return;
  if (k->pos >= k->text.len) {
    osb__chat_src_end_t e = {0};
    const osb__chat_src_out_t *out = k->out;
    void *ud = k->ud;
    kb_finish(k);
    out->end(ud, &e);
    return;
  }
  /* The next WORDS_PER_PIECE words with the spaces after them. */
  size_t i = k->pos, words = 0;
  while (i < k->text.len && words < WORDS_PER_PIECE) {
    while (i < k->text.len && k->text.base[i] != ' ' && k->text.base[i] != '\n') i++;
    while (i < k->text.len && (k->text.base[i] == ' ' || k->text.base[i] == '\n')) i++;
    words++;
  }
  size_t start = k->pos;
  k->pos = i;
  k->out->text(k->ud, k->text.base + start, i - start);
}

static void kb_start_stream(kb_t *k) {
  uv_timer_start(&k->timer, kb_tick, 0, PACE_MS);
}

static void kb_found(void *ud, int err, const osb_db_result_t *res) {
  kb_t *k = ud;
  if (k->cancelled) {
    kb_unref(k);
    return;
  }
  k->refs--;   /* the search's reference; the timer still holds one */
  if (err) osb_log(OSB_LOG_WARN, "chat", "knowledge search failed: %s", osb_strerror(err));
  size_t n = err ? 0 : osb_db_nrows(res);
  if (n == 0) {
    osb_buf_puts(&k->text, UNAVAILABLE);
  } else {
    osb_buf_puts(&k->text, INTRO);
    for (size_t i = 0; i < n && i < MAX_ENTRIES; i++) {
      if (i) osb_buf_puts(&k->text, "\n\n");
      osb_buf_printf(&k->text, "**%s**\n%s", osb_db_get(res, i, "title"), osb_db_get(res, i, "body"));
    }
  }
  kb_start_stream(k);
}

static void *kb_start(const osb__chat_src_ctx_t *ctx, const osb__chat_src_out_t *out, void *ud) {
  kb_t *k = osb_calloc(1, sizeof(*k));
  k->out = out;
  k->ud = ud;
  uv_timer_init(osb_loop(), &k->timer);
  k->timer.data = k;
  k->refs = 1;
  active++;
  if (osb_agents_knowledge_search(ctx->agent_id, ctx->text, MAX_ENTRIES, kb_found, k)) {
    k->refs++;
  } else {
    osb_buf_puts(&k->text, UNAVAILABLE);
    kb_start_stream(k);
  }
  return k;
}

static void kb_cancel(void *h) {
  kb_t *k = h;
  kb_finish(k);
}

const osb__chat_src_t osb__chat_src_knowledge = {
  .name = "knowledge",
  .fallback = true,
  .start = kb_start,
  .cancel = kb_cancel,
};
