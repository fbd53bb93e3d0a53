/* chat_source_llm.c: replies streamed from the LLM through the `llm`
 * upstream (breaker, bulkhead: upstream.h), in either wire format:
 *
 *   openai     POST ${LLM_BASE_URL}/chat/completions, Authorization: Bearer,
 *              {"model","messages":[system, …history],"stream":true,
 *               "stream_options":{"include_usage":true},"max_tokens"}
 *              → SSE chunks: choices[0].delta.content; the last chunk (empty
 *              choices) carries usage {prompt_tokens, completion_tokens};
 *              the stream ends with `data: [DONE]`.
 *   anthropic  POST ${LLM_BASE_URL}/messages, x-api-key, anthropic-version,
 *              {"model","system","messages","max_tokens","stream":true}
 *              → SSE events: message_start (usage.input_tokens),
 *              content_block_delta {delta:{type:"text_delta",text}},
 *              message_delta (usage.output_tokens, cumulative), message_stop;
 *              `error` events carry {error:{type,message}}.
 *
 * The terminator ends the reply: whatever follows it in the body (more
 * chunks, an error event, broken framing) is not read. Token counts outside
 * 0..OSB_CHAT_MAX_TOKENS are taken as unknown (0).
 *
 * A call that ends without its terminator ([DONE] / message_stop), a non-200
 * answer, a rejection (breaker open, bulkhead full, shutting down) or a
 * transport error ends with err < 0 and a short reason (valid UTF-8: a cut
 * provider message loses the character cut in two); the reply engine
 * falls back to the knowledge base when no text came, or keeps the text
 * with status error otherwise. The key travels only as a request header. */
#include "apps/chat_internal.h"

#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/json.h"
#include "obs/log.h"
#include "upstream/upstream.h"

#define ERR_BODY_MAX 2048
#define ANTHROPIC_VERSION "2023-06-01"
#define TERMINATED 1   /* on_event: the terminator, stop parsing (not an error) */

typedef struct llm {
  osb_upstream_call_t *call;
  const osb__chat_src_out_t *out;
  void *ud;
  bool anthropic;
  int status;
  osb_sse_t sse;
  bool finished;         /* saw the terminator */
  bool failed;           /* an error event, or a parse error */
  char reason[200];
  osb_buf_t errbody;     /* a non-200 body, for the reason */
  int64_t tokens_in, tokens_out;
  bool any_text;
} llm_t;

static size_t active;

static void llm_free(llm_t *l) {
  osb_sse_dispose(&l->sse);
  osb_buf_free(&l->errbody);
  free(l);
  active--;
}

/* l->reason as printf, never ending in a UTF-8 character cut in two (it
 * goes into JSON: the message's metadata, agents.status). */
static void set_reason(llm_t *l, const char *fmt, ...) OSB_PRINTF(2, 3);
static void set_reason(llm_t *l, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->reason, sizeof(l->reason), fmt, ap);
  va_end(ap);
  l->reason[osb_utf8_trim(l->reason, strlen(l->reason))] = 0;
}

/* A token count as reported, 0 unless an integer in 0..OSB_CHAT_MAX_TOKENS. */
static int64_t token_count(const json_t *v) {
  json_int_t n = json_integer_value(v);
  return json_is_integer(v) && n >= 0 && n <= OSB_CHAT_MAX_TOKENS ? (int64_t)n : 0;
}

static void emit(llm_t *l, const char *s, size_t n) {
  if (n == 0) return;
  l->any_text = true;
  l->out->text(l->ud, s, n);
}

static int on_event(void *ud, const osb_sse_event_t *ev) {
  llm_t *l = ud;
  if (!l->anthropic) {
    if (ev->data_len == 6 && !memcmp(ev->data, "[DONE]", 6)) {
      l->finished = true;
      return TERMINATED;
    }
    json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!j) return 0;   /* not JSON: ignore (keep-alives of some servers) */
    json_t *err = json_object_get(j, "error");
    if (err) {
      const char *m = json_string_value(json_object_get(err, "message"));
      set_reason(l, "provider error: %.150s", m ? m : "unknown");
      l->failed = true;
    }
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    json_t *content = json_object_get(json_object_get(ch, "delta"), "content");
    if (json_is_string(content)) emit(l, json_string_value(content), json_string_length(content));
    json_t *usage = json_object_get(j, "usage");
    if (json_is_object(usage)) {
      l->tokens_in = token_count(json_object_get(usage, "prompt_tokens"));
      l->tokens_out = token_count(json_object_get(usage, "completion_tokens"));
    }
    json_decref(j);
    return 0;
  }
  json_t *j = json_loadb(ev->data, ev->data_len, 0, NULL);
  if (!j) return 0;
  const char *type = json_string_value(json_object_get(j, "type"));
  if (!type) type = ev->event;
  if (!strcmp(type, "message_start")) {
    json_t *u = json_object_get(json_object_get(j, "message"), "usage");
    l->tokens_in = token_count(json_object_get(u, "input_tokens"));
    l->tokens_out = token_count(json_object_get(u, "output_tokens"));
  } else if (!strcmp(type, "content_block_delta")) {
    json_t *d = json_object_get(j, "delta");
    json_t *t = json_object_get(d, "text");
    const char *dt = json_string_value(json_object_get(d, "type"));
    if (json_is_string(t) && (!dt || !strcmp(dt, "text_delta"))) emit(l, json_string_value(t), json_string_length(t));
  } else if (!strcmp(type, "message_delta")) {
    json_t *u = json_object_get(j, "usage");
    if (json_is_integer(json_object_get(u, "output_tokens")))
      l->tokens_out = token_count(json_object_get(u, "output_tokens"));
  } else if (!strcmp(type, "message_stop")) {
    l->finished = true;
    json_decref(j);
    return TERMINATED;
  } else if (!strcmp(type, "error")) {
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    set_reason(l, "provider error: %.150s", m ? m : "unknown");
    l->failed = true;
  }
  json_decref(j);
  return 0;
}

static int on_head(void *ud, int status, const char *content_type) {
  OSB_UNUSED(content_type);
  llm_t *l = ud;
  l->status = status;
  return 0;
}

static int on_data(void *ud, const char *p, size_t n) {
  llm_t *l = ud;
  if (l->status != 200) {
    size_t room = l->errbody.len < ERR_BODY_MAX ? ERR_BODY_MAX - l->errbody.len : 0;
    osb_buf_append(&l->errbody, p, n < room ? n : room);   /* the first ERR_BODY_MAX bytes, however they arrive */
    return 0;
  }
  if (l->finished) return 0;   /* past the terminator: not the reply */
  int rc = osb_sse_feed(&l->sse, p, n);
  if (rc != 0 && rc != TERMINATED) {
    set_reason(l, "bad event stream: %s", osb_strerror(rc));
    l->failed = true;
    return 1;   /* abort the call */
  }
  return 0;
}

/* The provider's error message from a JSON error body (both formats put it
 * at error.message), cut short; never the request. */
static void error_reason(llm_t *l) {
  json_t *j = json_loadb(l->errbody.base ? l->errbody.base : "", l->errbody.len, 0, NULL);
  const char *m = j ? json_string_value(json_object_get(json_object_get(j, "error"), "message")) : NULL;
  set_reason(l, "HTTP %d%s%.120s", l->status, m ? ": " : "", m ? m : "");
  if (j) json_decref(j);
}

static void on_done(void *ud, const osb_upstream_result_t *r) {
  llm_t *l = ud;
  l->call = NULL;
  osb__chat_src_end_t e = { .tokens_in = l->tokens_in, .tokens_out = l->tokens_out };
  if (r->err) {
    e.err = r->err;
    if (!l->failed) set_reason(l, "%s", r->reason ? r->reason : osb_strerror(r->err));
  } else if (l->status != 200) {
    e.err = OSB_EPROTO;
    error_reason(l);
  } else if (l->failed) {
    e.err = OSB_EPROTO;
  } else if (!l->finished) {
    e.err = OSB_EPROTO;
    set_reason(l, "the stream ended before the end of the reply");
  }
  char reason[sizeof(l->reason)];
  snprintf(reason, sizeof(reason), "%s", l->reason);
  e.reason = e.err ? reason : NULL;
  const osb__chat_src_out_t *out = l->out;
  void *oud = l->ud;
  llm_free(l);
  out->end(oud, &e);
}

static const osb_upstream_cbs_t cbs = { on_head, on_data, on_done };

/* Anthropic wants user/assistant turns alternating, starting with user:
 * merge runs of one role, drop leading assistant turns. */
static json_t *anthropic_messages(json_t *history) {
  json_t *out = json_array();
  size_t i;
  json_t *m;
  json_array_foreach(history, i, m) {
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *content = json_string_value(json_object_get(m, "content"));
    if (!role || !content || !*content) continue;
    if (json_array_size(out) == 0 && strcmp(role, "user")) continue;
    json_t *last = json_array_get(out, json_array_size(out) - 1);
    if (last && !strcmp(json_string_value(json_object_get(last, "role")), role)) {
      char *joined = osb_asprintf("%s\n\n%s", json_string_value(json_object_get(last, "content")), content);
      json_object_set_new(last, "content", json_string(joined));
      free(joined);
      continue;
    }
    json_array_append_new(out, json_pack("{s:s, s:s}", "role", role, "content", content));
  }
  return out;
}

/* The decoder state of one call, before any byte arrives; `max_event` is
 * the SSE event limit (0: the parser's default). llm_start uses it, and so
 * do the unit test and the fuzz driver, which feed it without a network. */
static llm_t *llm_new(const osb__chat_src_out_t *out, void *ud, bool anthropic, size_t max_event) {
  llm_t *l = osb_calloc(1, sizeof(*l));
  active++;
  l->out = out;
  l->ud = ud;
  l->anthropic = anthropic;
  osb_sse_init(&l->sse, on_event, l, max_event);
  return l;
}

static void *llm_start(const osb__chat_src_ctx_t *ctx, const osb__chat_src_out_t *out, void *ud) {
  llm_t *l = llm_new(out, ud, osb_cfg->llm_provider == OSB_LLM_ANTHROPIC, 0);
  const char *model = ctx->model && *ctx->model ? ctx->model : osb_cfg->llm_model;
  const char *system = ctx->system_prompt ? ctx->system_prompt : "";
  json_t *body;
  if (l->anthropic) {
    body = json_pack("{s:s, s:i, s:b, s:o}", "model", model, "max_tokens", osb_cfg->llm_max_tokens, "stream", 1,
                     "messages", anthropic_messages(ctx->history));
    if (*system) json_object_set_new(body, "system", json_string(system));
  } else {
    json_t *msgs = json_array();
    if (*system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    size_t i;
    json_t *m;
    json_array_foreach(ctx->history, i, m) json_array_append(msgs, m);
    body = json_pack("{s:s, s:o, s:b, s:{s:b}, s:i}", "model", model, "messages", msgs, "stream", 1,
                     "stream_options", "include_usage", 1, "max_tokens", osb_cfg->llm_max_tokens);
  }
  size_t blen = 0;
  char *b = osb_json_dumps(body, &blen);
  json_decref(body);
  char *url = osb_asprintf("%s/%s", osb_cfg->llm_base_url, l->anthropic ? "messages" : "chat/completions");
  char *auth = l->anthropic ? osb_asprintf("x-api-key: %s", osb_cfg->llm_api_key)
                            : osb_asprintf("Authorization: Bearer %s", osb_cfg->llm_api_key);
  const char *headers[] = { auth, "Content-Type: application/json", "Accept: text/event-stream",
                            l->anthropic ? "anthropic-version: " ANTHROPIC_VERSION : NULL, NULL };
  osb_upstream_req_t req = {
    .method = "POST",
    .url = url,
    .headers = headers,
    .body = b,
    .body_len = blen,
    .max_response_bytes = 4u * 1024u * 1024u,
    .stream = true,
  };
  l->call = osb_upstream_call(osb_upstream_get("llm"), &req, &cbs, l);
  /* The key is in `auth`: wipe it before freeing. */
  sodium_memzero(auth, strlen(auth));
  free(auth);
  free(url);
  free(b);
  return l;
}

static void llm_cancel(void *h) {
  llm_t *l = h;
  if (l->call) osb_upstream_cancel(l->call);
  l->call = NULL;
  llm_free(l);
}

static osb__chat_src_t src_openai = { .name = "openai", .fallback = false, .start = llm_start, .cancel = llm_cancel };
static osb__chat_src_t src_anthropic = { .name = "anthropic", .fallback = false, .start = llm_start, .cancel = llm_cancel };

const osb__chat_src_t *osb__chat_src_llm(void) {
  osb_upstream_t *u = osb_upstream_get("llm");
  if (!u || !osb_upstream_enabled(u)) return NULL;
  return osb_cfg->llm_provider == OSB_LLM_ANTHROPIC ? &src_anthropic : &src_openai;
}

size_t osb__chat_src_llm_active(void) { return active; }
