/* chat_reply.c: storing user messages and running agent replies.
 *
 * Per conversation with work in flight there is one conv_t (a small hash
 * table keyed by conversation id):
 *
 *   conv_t ── posts:   post_t → post_t → …   user messages waiting to be
 *          │                                 stored, one transaction at a time
 *          └─ replies: reply_t → reply_t …   the head is the running reply,
 *                                            the rest wait in seq order
 *
 * Storing a message: in one transaction, check the owner, take the next seq
 * of chat:<id> (osb_rt_tx_next_seq: conversations.last_seq), insert the row
 * with it, publish message.created at that seq (osb_rt_tx_publish_at) and
 * touch the conversation; after the commit the reply is queued. Posts of
 * one conversation are stored one at a time, so replies are queued in the
 * order of their messages' seqs.
 *
 * A reply: load the agent and the recent history, pick a source (the LLM
 * when one is configured, else the knowledge fallback; an LLM that fails
 * before any text hands over to the fallback), coalesce its text into
 * transient agent.delta frames (the first piece goes out at once, later
 * ones at most every OSB_CHAT_DELTA_MS), then store the assistant message
 * with the next seq and publish agent.done at that seq in the same
 * transaction, and tell the watchers (SSE streams, Prefer: wait).
 *
 * Ownership: a reply is referenced by its conversation's queue (one), its
 * coalescing timer until the close callback (one) and each database call
 * in flight (one each); it is freed at zero. A cancelled reply (conversation
 * deleted, shutdown) leaves the queue at once; late callbacks see
 * `cancelled` and only drop their reference. */
#include "apps/chat_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "core/json.h"
#include "obs/log.h"
#include "core/config.h"
#include "realtime/realtime.h"
#include "upstream/upstream.h"

/* ---- statements ---- */

static const osb_db_stmt_t Q_OWNED = {
  .name = "chat_post_owned",
  .pg = "SELECT id, agent_id FROM conversations WHERE id = $1 AND user_id = $2",
  .nparams = 2,
  .reads = "conversations",
};

static const osb_db_stmt_t Q_INSERT = {
  .name = "chat_message_insert",
  .pg = "INSERT INTO messages (id, conversation_id, seq, role, content, status, fallback, metadata, tokens, "
        "created_at, updated_at) VALUES ($1, $2, $3::bigint, $4, $5, $6, $7::boolean, $8::jsonb, $9::int, "
        "$10::bigint, $10::bigint) RETURNING " OSB__CHAT_M_COLS,
  .sqlite = "INSERT INTO messages (id, conversation_id, seq, role, content, status, fallback, metadata, tokens, "
            "created_at, updated_at) VALUES (?1, ?2, CAST(?3 AS INTEGER), ?4, ?5, ?6, CAST(?7 AS INTEGER), ?8, "
            "CAST(?9 AS INTEGER), CAST(?10 AS INTEGER), CAST(?10 AS INTEGER)) RETURNING " OSB__CHAT_M_COLS,
  .nparams = 10,
  .writes = "messages",
};

/* A conversation without a title takes the start of its first message. */
static const osb_db_stmt_t Q_TOUCH = {
  .name = "chat_conversation_touch",
  .pg = "UPDATE conversations SET updated_at = $2::bigint, title = CASE WHEN title = '' AND $3::text IS NOT NULL "
        "THEN $3::text ELSE title END WHERE id = $1",
  .sqlite = "UPDATE conversations SET updated_at = CAST(?2 AS INTEGER), title = CASE WHEN title = '' AND ?3 IS NOT NULL "
            "THEN ?3 ELSE title END WHERE id = ?1",
  .nparams = 3,
  .writes = "conversations",
};

static const osb_db_stmt_t Q_CONTEXT = {
  .name = "chat_reply_context",
  .pg = "SELECT a.id, a.name, a.system_prompt, a.model, a.voice_id FROM conversations c "
        "JOIN agents a ON a.id = c.agent_id WHERE c.id = $1",
  .nparams = 1,
  .reads = "conversations,agents",
};

static const osb_db_stmt_t Q_HISTORY = {
  .name = "chat_reply_history",
  .pg = "SELECT role, content, seq FROM messages WHERE conversation_id = $1 AND seq <= $2::bigint "
        "AND role IN ('user', 'assistant') ORDER BY seq DESC LIMIT $3::int",
  .sqlite = "SELECT role, content, seq FROM messages WHERE conversation_id = ?1 AND seq <= CAST(?2 AS INTEGER) "
            "AND role IN ('user', 'assistant') ORDER BY seq DESC LIMIT CAST(?3 AS INTEGER)",
  .nparams = 3,
  .reads = "messages",
};

static const osb_db_stmt_t Q_USAGE = {
  .name = "chat_usage_add",
  .pg = "INSERT INTO usage_daily (user_id, day, llm_tokens) VALUES ($1, $2, $3::bigint) "
        "ON CONFLICT (user_id, day) DO UPDATE SET llm_tokens = usage_daily.llm_tokens + excluded.llm_tokens",
  .sqlite = "INSERT INTO usage_daily (user_id, day, llm_tokens) VALUES (?1, ?2, CAST(?3 AS INTEGER)) "
            "ON CONFLICT (user_id, day) DO UPDATE SET llm_tokens = usage_daily.llm_tokens + excluded.llm_tokens",
  .nparams = 3,
  .writes = "usage_daily",
};


/* ---- state ---- */

typedef struct conv conv_t;

typedef struct post {
  osb_list_t link;          /* conv->posts */
  conv_t *conv;
  char *user_id, *text;
  bool voice;
  osb__chat_posted_cb cb;
  void *ud;
  /* the transaction */
  osb_db_tx_t *tx;
  uint64_t seq;
  json_t *message;
  int err;
} post_t;

enum { R_QUEUED, R_LOADING, R_STREAMING, R_STORING, R_DONE };

struct osb__chat_reply {
  osb_list_t link;          /* conv->replies */
  conv_t *conv;
  char id[37];
  char *conv_id, *user_id, *question;
  bool voice;
  uint64_t user_seq;
  int state;
  int refs;
  bool cancelled;
  /* context */
  json_t *agent;            /* {id, name, system_prompt, model, voice_id} */
  json_t *history;
  int loading;              /* context queries pending */
  int load_err;
  /* the source */
  const osb__chat_src_t *src;
  void *src_h;
  bool fallback;
  char *fallback_reason;
  char *error_reason;
  int64_t tokens_in, tokens_out;
  /* text and coalescing */
  osb_buf_t text;
  size_t sent;
  bool truncated;
  bool store_due;           /* the source ended: store once the last delta is out */
  int store_attempts;       /* transactions tried (retried while the database is busy) */
  uint64_t last_flush_ms;
  uv_timer_t timer;
  /* storing */
  osb_db_tx_t *tx;
  int store_err;            /* why the transaction is being rolled back */
  json_t *message;
  osb_list_t watchers;
};

struct osb__chat_watch {
  osb_list_t link;          /* reply->watchers */
  const osb__chat_watch_cbs_t *cbs;
  void *ud;
};

struct conv {
  osb_list_t link;          /* bucket */
  char *id;
  osb_list_t posts;
  bool posting;             /* the head post's transaction is open */
  bool dead;                /* deleted: nothing more starts */
  osb_list_t replies;
};

#define NBUCKETS 256
static osb_list_t buckets[NBUCKETS];
static bool inited, closing, closed;

static const osb__chat_src_t *llm_source;   /* NULL: no LLM configured */
static bool degraded;
static char degraded_reason[160];

/* ---- the table ---- */

static unsigned hash_of(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h % NBUCKETS;
}

static void table_init(void) {
  if (inited) return;
  for (int i = 0; i < NBUCKETS; i++) osb_list_init(&buckets[i]);
  inited = true;
}

static conv_t *conv_find(const char *id) {
  table_init();
  osb_list_t *b = &buckets[hash_of(id)];
  for (osb_list_t *n = b->next; n != b; n = n->next) {
    conv_t *c = osb_container_of(n, conv_t, link);
    if (!strcmp(c->id, id)) return c;
  }
  return NULL;
}

static conv_t *conv_get(const char *id) {
  conv_t *c = conv_find(id);
  if (c) return c;
  c = osb_calloc(1, sizeof(*c));
  c->id = osb_strdup(id);
  osb_list_init(&c->posts);
  osb_list_init(&c->replies);
  osb_list_insert_tail(&buckets[hash_of(id)], &c->link);
  return c;
}

/* Free the entry once nothing is in flight for it. */
static void conv_maybe_free(conv_t *c) {
  if (c->posting || !osb_list_empty(&c->posts) || !osb_list_empty(&c->replies)) return;
  osb_list_remove(&c->link);
  free(c->id);
  free(c);
}

/* ---- agents:status ---- */

json_t *osb__chat_status_json(void) {
  osb_upstream_t *u = osb_upstream_get("llm");
  return json_pack("{s:b, s:s?, s:{s:b, s:s?, s:s?}}", "degraded", degraded, "reason",
                   degraded ? degraded_reason : NULL, "llm", "configured", llm_source != NULL, "provider",
                   llm_source ? llm_source->name : NULL, "breaker",
                   u ? osb_breaker_state_name(osb_upstream_state(u)) : NULL);
}

static void set_degraded(bool on, const char *reason) {
  if (on == degraded && (!on || !strcmp(reason, degraded_reason))) return;
  degraded = on;
  snprintf(degraded_reason, sizeof(degraded_reason), "%s", on && reason ? reason : "");
  osb_log(on ? OSB_LOG_WARN : OSB_LOG_INFO, "chat", "agent replies %s%s%s", on ? "degraded" : "recovered",
          on ? ": " : "", on ? degraded_reason : "");
  json_t *ev = json_pack("{s:s, s:b, s:s?}", "type", "agents.status", "degraded", on, "reason",
                         on ? degraded_reason : NULL);
  osb_rt_publish("agents:status", ev, NULL, NULL);
  json_decref(ev);
}

/* ---- replies: lifetime ---- */

static void reply_unref(osb__chat_reply_t *r) {
  osb_assert(r->refs > 0);
  if (--r->refs > 0) return;
  json_decref(r->agent);
  json_decref(r->history);
  json_decref(r->message);
  osb_buf_free(&r->text);
  free(r->conv_id);
  free(r->user_id);
  free(r->question);
  free(r->fallback_reason);
  free(r->error_reason);
  free(r);
}

static void reply_timer_closed(uv_handle_t *h) { reply_unref(h->data); }

const char *osb__chat_reply_id(const osb__chat_reply_t *r) { return r->id; }

static void kick(conv_t *c);

/* Tell every watcher and drop them. */
static void notify_done(osb__chat_reply_t *r, int err) {
  while (!osb_list_empty(&r->watchers)) {
    osb__chat_watch_t *w = osb_container_of(r->watchers.next, osb__chat_watch_t, link);
    osb_list_remove(&w->link);
    const osb__chat_watch_cbs_t *cbs = w->cbs;
    void *ud = w->ud;
    free(w);
    cbs->done(ud, err, err ? NULL : r->message);
  }
}

/* The reply leaves its conversation (done or cancelled); the next one starts. */
static void reply_finish(osb__chat_reply_t *r, int err) {
  conv_t *c = r->conv;
  r->state = R_DONE;
  if (!uv_is_closing((uv_handle_t *)&r->timer)) uv_close((uv_handle_t *)&r->timer, reply_timer_closed);
  if (osb_list_linked(&r->link)) osb_list_remove(&r->link);
  osb_list_init(&r->link);
  r->conv = NULL;
  notify_done(r, err);
  if (c) {
    kick(c);
    conv_maybe_free(c);
  }
  reply_unref(r);   /* the queue's reference */
}

static void reply_cancel(osb__chat_reply_t *r, int err) {
  if (r->cancelled) return;
  r->cancelled = true;
  if (r->state == R_STREAMING && r->src_h) {
    r->src->cancel(r->src_h);
    r->src_h = NULL;
  }
  reply_finish(r, err);
}

/* ---- watching ---- */

osb__chat_watch_t *osb__chat_watch(osb__chat_reply_t *r, const osb__chat_watch_cbs_t *cbs, void *ud) {
  osb__chat_watch_t *w = osb_calloc(1, sizeof(*w));
  w->cbs = cbs;
  w->ud = ud;
  osb_list_insert_tail(&r->watchers, &w->link);
  return w;
}

void osb__chat_unwatch(osb__chat_watch_t *w) {
  if (!w) return;
  osb_list_remove(&w->link);
  free(w);
}

/* ---- coalescing ---- */

static void flush(osb__chat_reply_t *r) {
  uv_timer_stop(&r->timer);
  if (r->sent >= r->text.len || r->cancelled) return;
  const char *p = r->text.base + r->sent;
  size_t n = r->text.len - r->sent;
  r->sent = r->text.len;
  r->last_flush_ms = osb_now_ms();
  json_t *ev = json_pack("{s:s, s:s, s:s%}", "type", "agent.delta", "reply_id", r->id, "text", p, n);
  if (ev) {
    char channel[64];
    snprintf(channel, sizeof(channel), "chat:%s", r->conv_id);
    osb_rt_publish_transient(channel, ev);
    json_decref(ev);
  }
  /* A watcher may unwatch itself (or others) from its callback. */
  osb_list_t *n0 = r->watchers.next;
  while (n0 != &r->watchers) {
    osb__chat_watch_t *w = osb_container_of(n0, osb__chat_watch_t, link);
    n0 = n0->next;
    w->cbs->delta(w->ud, p, n);
  }
}

static void reply_store_now(osb__chat_reply_t *r);

static void on_flush_timer(uv_timer_t *t) {
  osb__chat_reply_t *r = t->data;
  flush(r);
  if (r->store_due && !r->cancelled) {
    r->store_due = false;
    reply_store_now(r);
  }
}

/* Cut at OSB_CHAT_MAX_REPLY_BYTES on a UTF-8 boundary. */
static void append_text(osb__chat_reply_t *r, const char *p, size_t n) {
  if (r->truncated) return;
  if (r->text.len + n > OSB_CHAT_MAX_REPLY_BYTES) {
    n = OSB_CHAT_MAX_REPLY_BYTES - r->text.len;
    while (n > 0 && ((unsigned char)p[n] & 0xC0) == 0x80) n--;
    r->truncated = true;
  }
  osb_buf_append(&r->text, p, n);
}

static void src_text(void *ud, const char *p, size_t n) {
  osb__chat_reply_t *r = ud;
  if (r->cancelled || n == 0) return;
  append_text(r, p, n);
  if (uv_is_active((uv_handle_t *)&r->timer)) return;   /* a flush is due already */
  uint64_t now = osb_now_ms();
  uint64_t due = r->last_flush_ms + OSB_CHAT_DELTA_MS;
  if (r->last_flush_ms == 0 || now >= due) flush(r);
  else uv_timer_start(&r->timer, on_flush_timer, due - now, 0);
}

/* ---- storing the reply ---- */

#define STORE_ATTEMPTS 6   /* 0.25 + 0.5 + 1 + 2 + 4 s of waiting at most */

static void reply_store_now(osb__chat_reply_t *r);
static void store_retry_fire(uv_timer_t *t) { reply_store_now(t->data); }

/* The database was busy or unreachable (OSB_EUNAVAIL: no connection within
 * DB_ACQUIRE_TIMEOUT_MS, or it broke): try the whole transaction again a
 * little later, so a burst of replies is not lost. A retry after a COMMIT
 * whose answer was lost cannot store the reply twice: its id is the
 * primary key (the retry then fails with a conflict). */
static bool store_retry(osb__chat_reply_t *r, int err) {
  if (err != OSB_EUNAVAIL || closed || r->cancelled || r->store_attempts >= STORE_ATTEMPTS) return false;
  uint64_t delay = 250u << (r->store_attempts - 1);
  osb_log(OSB_LOG_WARN, "chat", "reply %s: database unavailable, storing again in %llu ms", r->id,
          (unsigned long long)delay);
  uv_timer_start(&r->timer, store_retry_fire, delay, 0);
  return true;
}

static void store_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  osb__chat_reply_t *r = ud;
  if (!err && r->store_err) err = r->store_err;
  if (r->cancelled) {
    reply_unref(r);
    return;
  }
  if (err && store_retry(r, err)) {
    json_decref(r->message);
    r->message = NULL;
    reply_unref(r);   /* the transaction's reference; the retry takes a new one */
    return;
  }
  if (err) {
    osb_log(err == OSB_ENOTFOUND ? OSB_LOG_INFO : OSB_LOG_ERROR, "chat", "reply %s not stored: %s", r->id, osb_strerror(err));
    json_decref(r->message);
    r->message = NULL;
  }
  if (!err && r->voice && r->message)
    osb__chat_voice_start(r->user_id, r->conv_id, r->id, json_string_value(json_object_get(r->message, "content")),
                          json_string_value(json_object_get(r->agent, "voice_id")));
  reply_finish(r, err ? (err == OSB_ENOTFOUND ? OSB_ENOTFOUND : OSB_EUNAVAIL) : 0);
  reply_unref(r);   /* the transaction's reference */
}

static void store_end(osb__chat_reply_t *r, int err) {
  osb_db_tx_t *tx = r->tx;
  r->tx = NULL;
  r->store_err = err;
  if (err) osb_db_tx_rollback(tx, store_committed, r);
  else osb_db_tx_commit(tx, store_committed, r);
}

static void store_inserted(void *ud, int err, const osb_db_result_t *res) {
  osb__chat_reply_t *r = ud;
  if (!err && osb_db_nrows(res) != 1) err = OSB_EDB;
  if (err || r->cancelled) {
    store_end(r, err ? err : UV_ECANCELED);
    return;
  }
  r->message = osb__chat_message_json(res, 0);
  json_t *ev = json_pack("{s:s, s:O}", "type", "agent.done", "message", r->message);
  char channel[64];
  snprintf(channel, sizeof(channel), "chat:%s", r->conv_id);
  osb_rt_tx_publish_at(r->tx, channel, (uint64_t)json_integer_value(json_object_get(r->message, "seq")), ev, NULL,
                       NULL);
  json_decref(ev);
  char now[24];
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  const char *tp[3] = { r->conv_id, now, NULL };
  osb_db_tx_query(r->tx, &Q_TOUCH, tp, 3, NULL, NULL);
  int64_t tokens = r->tokens_in + r->tokens_out;
  if (tokens > 0 && r->user_id && strcmp(r->user_id, "service") != 0) {
    char day[16], tok[24];
    time_t t = (time_t)(osb_wallclock_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    snprintf(tok, sizeof(tok), "%lld", (long long)tokens);
    const char *up[3] = { r->user_id, day, tok };
    osb_db_tx_query(r->tx, &Q_USAGE, up, 3, NULL, NULL);
  }
  store_end(r, 0);
}

static void store_seq(void *ud, int err, uint64_t seq) {
  osb__chat_reply_t *r = ud;
  if (err || r->cancelled) {
    store_end(r, err ? err : UV_ECANCELED);
    return;
  }
  json_t *meta = json_object();
  if (r->fallback) {
    json_object_set_new(meta, "source", json_string("knowledge"));
    if (r->fallback_reason) json_object_set_new(meta, "fallback_reason", json_string(r->fallback_reason));
  } else if (r->src) {
    json_object_set_new(meta, "source", json_string(r->src->name));
  }
  if (r->error_reason) json_object_set_new(meta, "error", json_string(r->error_reason));
  if (r->truncated) json_object_set_new(meta, "truncated", json_true());
  if (r->tokens_in || r->tokens_out)
    json_object_set_new(meta, "tokens", json_pack("{s:I, s:I}", "input", (json_int_t)r->tokens_in, "output",
                                                  (json_int_t)r->tokens_out));
  char *mjson = osb_json_dumps(meta, NULL);
  json_decref(meta);
  bool sqlite = osb_db_backend() && !strcmp(osb_db_backend(), "sqlite");
  char seqs[24], now[24], tok[24];
  snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)seq);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  snprintf(tok, sizeof(tok), "%lld", (long long)(r->tokens_in + r->tokens_out));
  const char *p[10] = { r->id, r->conv_id, seqs, "assistant", r->text.base ? r->text.base : "",
                        r->error_reason ? "error" : "done",
                        r->fallback ? (sqlite ? "1" : "true") : (sqlite ? "0" : "false"), mjson, tok, now };
  osb_db_tx_query(r->tx, &Q_INSERT, p, 10, store_inserted, r);
  free(mjson);
}

static void store_begun(void *ud, int err, osb_db_tx_t *tx) {
  osb__chat_reply_t *r = ud;
  if (err || r->cancelled) {
    if (tx) osb_db_tx_rollback(tx, NULL, NULL);
    if (!r->cancelled && !store_retry(r, err)) {
      osb_log(OSB_LOG_ERROR, "chat", "reply %s not stored: %s", r->id, osb_strerror(err));
      reply_finish(r, OSB_EUNAVAIL);
    }
    reply_unref(r);
    return;
  }
  r->tx = tx;
  char channel[64];
  snprintf(channel, sizeof(channel), "chat:%s", r->conv_id);
  osb_rt_tx_next_seq(tx, channel, store_seq, r);
}

static void reply_store_now(osb__chat_reply_t *r) {
  r->state = R_STORING;
  r->store_attempts++;
  r->refs++;
  osb_db_tx_begin(store_begun, r);
}

/* The last piece keeps the pace too (one frame per OSB_CHAT_DELTA_MS):
 * when a flush is already scheduled, store right after it. */
static void reply_store(osb__chat_reply_t *r) {
  if (uv_is_active((uv_handle_t *)&r->timer)) {
    r->store_due = true;
    return;
  }
  flush(r);
  reply_store_now(r);
}

/* ---- running the source ---- */

static const osb__chat_src_out_t src_out;

static void start_source(osb__chat_reply_t *r, const osb__chat_src_t *src) {
  r->src = src;
  r->fallback = src->fallback;
  r->state = R_STREAMING;
  json_t *a = r->agent;
  osb__chat_src_ctx_t ctx = {
    .conversation_id = r->conv_id,
    .user_id = r->user_id,
    .agent_id = json_string_value(json_object_get(a, "id")),
    .agent_name = json_string_value(json_object_get(a, "name")),
    .system_prompt = json_string_value(json_object_get(a, "system_prompt")),
    .model = json_string_value(json_object_get(a, "model")),
    .text = r->question,
    .history = r->history,
  };
  r->src_h = src->start(&ctx, &src_out, r);
}

static void src_end(void *ud, const osb__chat_src_end_t *e) {
  osb__chat_reply_t *r = ud;
  r->src_h = NULL;
  if (r->cancelled) return;
  r->tokens_in += e->tokens_in;
  r->tokens_out += e->tokens_out;
  if (e->err && r->text.len == 0 && !r->src->fallback) {
    /* Nothing said yet: the knowledge base answers instead. */
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", r->src->name, e->reason ? e->reason : osb_strerror(e->err));
    why[osb_utf8_trim(why, strlen(why))] = 0;   /* cut short: not inside a character (JSON) */
    free(r->fallback_reason);
    r->fallback_reason = osb_strdup(why);
    osb_log(OSB_LOG_WARN, "chat", "reply %s falls back to knowledge: %s", r->id, why);
    set_degraded(true, why);
    start_source(r, &osb__chat_src_knowledge);
    return;
  }
  if (e->err) {
    /* A stream that broke after some text keeps it, with status error. */
    free(r->error_reason);
    r->error_reason = osb_strdup(e->reason ? e->reason : osb_strerror(e->err));
    osb_log(OSB_LOG_WARN, "chat", "reply %s broke after %zu bytes: %s", r->id, r->text.len, r->error_reason);
  } else if (!r->src->fallback && llm_source) {
    set_degraded(false, NULL);
  }
  reply_store(r);
}

static const osb__chat_src_out_t src_out = { src_text, src_end };

static void context_loaded(osb__chat_reply_t *r) {
  if (r->load_err) {
    /* The conversation or the database is gone: nothing to answer with. */
    osb_log(OSB_LOG_WARN, "chat", "reply %s: context not loaded: %s", r->id, osb_strerror(r->load_err));
    reply_finish(r, r->load_err == OSB_ENOTFOUND ? OSB_ENOTFOUND : OSB_EUNAVAIL);
    return;
  }
  if (llm_source) {
    start_source(r, llm_source);
  } else {
    r->fallback_reason = osb_strdup("no LLM configured (LLM_API_KEY not set)");
    start_source(r, &osb__chat_src_knowledge);
  }
}

static void ctx_agent(void *ud, int err, const osb_db_result_t *res) {
  osb__chat_reply_t *r = ud;
  if (!r->cancelled) {
    if (err) r->load_err = err;
    else if (osb_db_nrows(res) == 0) r->load_err = OSB_ENOTFOUND;
    else r->agent = osb_db_row_json(res, 0);
    if (--r->loading == 0) context_loaded(r);
  }
  reply_unref(r);
}

static void ctx_history(void *ud, int err, const osb_db_result_t *res) {
  osb__chat_reply_t *r = ud;
  if (!r->cancelled) {
    if (err) {
      r->load_err = err;
    } else {
      /* Oldest first, with the message being answered last (replies to
       * earlier queued messages may carry a higher seq than it). */
      json_t *h = json_array();
      size_t n = osb_db_nrows(res);
      for (size_t i = n; i-- > 0;) {
        if ((uint64_t)osb_db_int(res, i, 2) == r->user_seq) continue;
        json_array_append_new(h, json_pack("{s:s, s:s}", "role", osb_db_text(res, i, 0), "content",
                                           osb_db_text(res, i, 1)));
      }
      json_array_append_new(h, json_pack("{s:s, s:s}", "role", "user", "content", r->question));
      r->history = h;
    }
    if (--r->loading == 0) context_loaded(r);
  }
  reply_unref(r);
}

static void reply_start(osb__chat_reply_t *r) {
  r->state = R_LOADING;
  r->loading = 2;
  r->refs += 2;
  const char *ap[1] = { r->conv_id };
  osb_db_query(&Q_CONTEXT, ap, 1, ctx_agent, r);
  char seq[24], lim[16];
  snprintf(seq, sizeof(seq), "%llu", (unsigned long long)r->user_seq);
  /* LLM_CONTEXT_MESSAGES earlier messages plus the one being answered. */
  snprintf(lim, sizeof(lim), "%d", osb_cfg->llm_context_messages + 1);
  const char *hp[3] = { r->conv_id, seq, lim };
  osb_db_query(&Q_HISTORY, hp, 3, ctx_history, r);
}

static void kick(conv_t *c) {
  /* During the graceful shutdown queued replies still run (their messages
   * are stored; the LLM call fails over to the knowledge base once the
   * upstream module stops); only osb_chat_close cancels them. */
  if (osb_list_empty(&c->replies) || closed || c->dead) return;
  osb__chat_reply_t *r = osb_container_of(c->replies.next, osb__chat_reply_t, link);
  if (r->state == R_QUEUED) reply_start(r);
}

static osb__chat_reply_t *reply_new(conv_t *c, post_t *p) {
  osb__chat_reply_t *r = osb_calloc(1, sizeof(*r));
  osb_db_uuid(r->id);
  r->conv = c;
  r->conv_id = osb_strdup(c->id);
  r->user_id = osb_strdup(p->user_id);
  r->question = osb_strdup(p->text);
  r->voice = p->voice;
  r->user_seq = p->seq;
  r->refs = 2;   /* the queue, the timer */
  osb_list_init(&r->watchers);
  uv_timer_init(osb_loop(), &r->timer);
  r->timer.data = r;
  osb_list_insert_tail(&c->replies, &r->link);
  return r;
}

/* ---- posting ---- */

static void post_next(conv_t *c);

static void post_free(post_t *p) {
  json_decref(p->message);
  free(p->user_id);
  free(p->text);
  free(p);
}

static void post_committed(void *ud, int err, const osb_db_result_t *res) {
  OSB_UNUSED(res);
  post_t *p = ud;
  conv_t *c = p->conv;
  c->posting = false;
  osb_list_remove(&p->link);
  if (!err && p->err) err = p->err;
  if (!err && c->dead) err = OSB_ENOTFOUND;   /* deleted meanwhile: no reply */
  if (!err && closed) err = OSB_EUNAVAIL;     /* the module closed: no reply can run */
  if (err) {
    p->cb(p->ud, err, NULL, NULL);
  } else {
    osb__chat_reply_t *r = reply_new(c, p);
    p->cb(p->ud, 0, p->message, r);
    kick(c);
  }
  post_free(p);
  post_next(c);
  conv_maybe_free(c);
}

static void post_end(post_t *p, int err) {
  osb_db_tx_t *tx = p->tx;
  p->tx = NULL;
  if (err) {
    p->err = err;
    osb_db_tx_rollback(tx, post_committed, p);
  } else {
    osb_db_tx_commit(tx, post_committed, p);
  }
}

static void post_inserted(void *ud, int err, const osb_db_result_t *res) {
  post_t *p = ud;
  if (!err && osb_db_nrows(res) != 1) err = OSB_EDB;
  if (err) {
    post_end(p, err);
    return;
  }
  p->message = osb__chat_message_json(res, 0);
  json_t *ev = json_pack("{s:s, s:O}", "type", "message.created", "message", p->message);
  char channel[64];
  snprintf(channel, sizeof(channel), "chat:%s", p->conv->id);
  osb_rt_tx_publish_at(p->tx, channel, p->seq, ev, NULL, NULL);
  json_decref(ev);
  /* The first 80 characters (on a UTF-8 boundary) title an untitled conversation. */
  char title[324];
  size_t n = 0, chars = 0, len = strlen(p->text);
  while (n < len && chars < 80 && n < sizeof(title) - 4) {
    n++;
    while (n < len && ((unsigned char)p->text[n] & 0xC0) == 0x80) n++;
    chars++;
  }
  memcpy(title, p->text, n);
  title[n] = 0;
  for (char *s = title; *s; s++)
    if (*s == '\n' || *s == '\r' || *s == '\t') *s = ' ';
  char now[24];
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  const char *tp[3] = { p->conv->id, now, title };
  osb_db_tx_query(p->tx, &Q_TOUCH, tp, 3, NULL, NULL);
  post_end(p, 0);
}

static void post_seq(void *ud, int err, uint64_t seq) {
  post_t *p = ud;
  if (err) {
    post_end(p, err);
    return;
  }
  p->seq = seq;
  char id[37], seqs[24], now[24];
  osb_db_uuid(id);
  snprintf(seqs, sizeof(seqs), "%llu", (unsigned long long)seq);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  bool sqlite = osb_db_backend() && !strcmp(osb_db_backend(), "sqlite");
  const char *ip[10] = { id, p->conv->id, seqs, "user", p->text, "done", sqlite ? "0" : "false", NULL, "0", now };
  osb_db_tx_query(p->tx, &Q_INSERT, ip, 10, post_inserted, p);
}

static void post_owned(void *ud, int err, const osb_db_result_t *res) {
  post_t *p = ud;
  if (!err && osb_db_nrows(res) == 0) err = OSB_ENOTFOUND;
  if (err) {
    post_end(p, err);
    return;
  }
  char channel[64];
  snprintf(channel, sizeof(channel), "chat:%s", p->conv->id);
  osb_rt_tx_next_seq(p->tx, channel, post_seq, p);
}

static void post_begun(void *ud, int err, osb_db_tx_t *tx) {
  post_t *p = ud;
  if (err) {
    /* post_committed's bookkeeping, without a transaction */
    p->err = err;
    post_committed(p, err, NULL);
    return;
  }
  p->tx = tx;
  const char *op[2] = { p->conv->id, p->user_id };
  osb_db_tx_query(tx, &Q_OWNED, op, 2, post_owned, p);
}

static void post_next(conv_t *c) {
  if (c->posting || osb_list_empty(&c->posts)) return;
  post_t *p = osb_container_of(c->posts.next, post_t, link);
  c->posting = true;
  osb_db_tx_begin(post_begun, p);
}

/* A post refused before it started still answers from the loop, never
 * inside osb__chat_post. */
typedef struct refused { uv_timer_t t; osb__chat_posted_cb cb; void *ud; int err; } refused_t;
static void refused_closed(uv_handle_t *h) { free(h->data); }
static void refused_fire(uv_timer_t *t) {
  refused_t *x = t->data;
  x->cb(x->ud, x->err, NULL, NULL);
  uv_close((uv_handle_t *)&x->t, refused_closed);
}

void osb__chat_post(const char *conv_id, const char *user_id, const char *text, bool voice,
                    osb__chat_posted_cb cb, void *ud) {
  if (closing) {
    refused_t *x = osb_calloc(1, sizeof(*x));
    x->cb = cb;
    x->ud = ud;
    x->err = OSB_EUNAVAIL;
    uv_timer_init(osb_loop(), &x->t);
    x->t.data = x;
    uv_timer_start(&x->t, refused_fire, 0, 0);
    return;
  }
  conv_t *c = conv_get(conv_id);
  post_t *p = osb_calloc(1, sizeof(*p));
  p->conv = c;
  p->user_id = osb_strdup(user_id);
  p->text = osb_strdup(text);
  p->voice = voice;
  p->cb = cb;
  p->ud = ud;
  osb_list_insert_tail(&c->posts, &p->link);
  post_next(c);
}

/* ---- cancellation ---- */

/* Cancel every reply of c (err to their watchers). Returns false when c was
 * freed (nothing else held it). */
static bool conv_cancel_replies(conv_t *c, int err) {
  bool hold = c->posting || !osb_list_empty(&c->posts);
  while (!osb_list_empty(&c->replies)) {
    osb__chat_reply_t *r = osb_container_of(c->replies.next, osb__chat_reply_t, link);
    bool last = r->link.next == &c->replies;
    reply_cancel(r, err);
    if (last && !hold) return false;
  }
  return true;
}

void osb__chat_conversation_deleted(const char *conv_id) {
  conv_t *c = conv_find(conv_id);
  if (!c) return;
  /* Posts still waiting fail when their transaction finds no row. */
  c->dead = true;
  conv_cancel_replies(c, OSB_ENOTFOUND);
}

/* ---- module ---- */

static void shutdown_hook(void *ud) {
  OSB_UNUSED(ud);
  closing = true;
}

/* The llm breaker decides whether replies are degraded: open (or forced
 * open) → the knowledge base answers; closed again → recovered. */
static void llm_state(void *ud, osb_upstream_t *u, osb_breaker_state_t from, osb_breaker_state_t to,
                      const char *reason) {
  OSB_UNUSED(ud);
  OSB_UNUSED(from);
  if (strcmp(osb_upstream_name(u), "llm") != 0 || !llm_source) return;
  if (to == OSB_BREAKER_OPEN || to == OSB_BREAKER_FORCED_OPEN) {
    char why[160];
    snprintf(why, sizeof(why), "llm breaker %s%s%s: answers come from the agents' knowledge",
             osb_breaker_state_name(to), reason ? ": " : "", reason ? reason : "");
    set_degraded(true, why);
  } else if (to == OSB_BREAKER_CLOSED) {
    set_degraded(false, NULL);
  }
}

void osb__chat_reply_init(void) {
  table_init();
  const osb_db_stmt_t *stmts[] = { &Q_OWNED, &Q_INSERT, &Q_TOUCH, &Q_CONTEXT, &Q_HISTORY, &Q_USAGE };
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  osb_core_on_shutdown("chat", OSB_SHUTDOWN_HTTP + 10, shutdown_hook, NULL);
  closing = closed = false;
  llm_source = osb__chat_src_llm();
  degraded = false;
  if (llm_source) osb_upstream_on_state(llm_state, NULL);
  else set_degraded(true, "no LLM configured (LLM_API_KEY not set): answers come from the agents' knowledge");
}

void osb_chat_close(void) {
  closing = closed = true;
  osb__chat_voice_close();
  if (!inited) return;
  /* Posts in flight finish through their transactions (which fail once the
   * database closes, or commit without a reply); replies are cancelled. */
  for (int i = 0; i < NBUCKETS; i++) {
    osb_list_t *b = &buckets[i];
    osb_list_t *n = b->next;
    while (n != b) {
      conv_t *c = osb_container_of(n, conv_t, link);
      n = n->next;
      conv_cancel_replies(c, OSB_EUNAVAIL);
    }
  }
}

void osb_chat_dispose(void) {
  if (!inited) return;
  for (int i = 0; i < NBUCKETS; i++) {
    osb_list_t *b = &buckets[i];
    while (!osb_list_empty(b)) {
      conv_t *c = osb_container_of(b->next, conv_t, link);
      osb_list_remove(&c->link);
      while (!osb_list_empty(&c->posts)) {
        post_t *p = osb_container_of(c->posts.next, post_t, link);
        osb_list_remove(&p->link);
        post_free(p);
      }
      free(c->id);
      free(c);
    }
  }
  inited = false;
}
