/* chat_internal.h: what the chat files share (chat.c routes, chat_reply.c
 * the reply engine, chat_source_*.c where reply text comes from). */
#ifndef OSB_APPS_CHAT_INTERNAL_H
#define OSB_APPS_CHAT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "apps/chat.h"
#include "db/db.h"

typedef struct json_t json_t;

#define OSB_CHAT_MAX_TEXT 8000                 /* characters in a user message */
#define OSB_CHAT_DELTA_MS 30                   /* at most one agent.delta per reply per this */
#define OSB_CHAT_MAX_REPLY_BYTES (32u * 1024u) /* a reply's text is cut here (agent.done fits a frame) */
#define OSB_CHAT_SSE_CAP (64u * 1024u)         /* unsent SSE bytes before a reader is cut off */

#define OSB__CHAT_M_COLS "id, conversation_id, seq, role, content, status, fallback, audio_url, metadata, created_at"

/* A messages row (OSB__CHAT_M_COLS) as the SPEC's message object. New reference. */
json_t *osb__chat_message_json(const osb_db_result_t *res, size_t row);

/* ---- posting a user message (chat_reply.c) ----
 * Store `text` as the next message of conversation `conv_id` if `user_id`
 * owns it, publish message.created with its seq after the commit, and
 * queue its reply. Messages of one conversation are stored one at a time,
 * in the order they were posted. cb exactly once, never inside the call:
 * err 0 with the stored message (borrowed) and its reply (valid during cb;
 * watch it there), or OSB_ENOTFOUND (no such conversation for this user),
 * OSB_EUNAVAIL (shutting down, database down) or another database error.
 * Strings are copied. */
typedef struct osb__chat_reply osb__chat_reply_t;
typedef void (*osb__chat_posted_cb)(void *ud, int err, json_t *message, osb__chat_reply_t *reply);
void osb__chat_post(const char *conv_id, const char *user_id, const char *text, bool voice,
                    osb__chat_posted_cb cb, void *ud);
const char *osb__chat_reply_id(const osb__chat_reply_t *r);

/* Follow one reply: delta(ud, text, n) for each coalesced piece (the same
 * text as the agent.delta frames), then done(ud, err, message) exactly
 * once: err 0 with the stored assistant message (borrowed), or the reason
 * there is none (OSB_ENOTFOUND: the conversation was deleted; OSB_EUNAVAIL:
 * shutting down or the database failed). The watch is dead after done, or
 * after osb__chat_unwatch (then no callback runs). Callbacks never run
 * inside osb__chat_watch. They may call osb__chat_unwatch on any watch. */
typedef struct osb__chat_watch osb__chat_watch_t;
typedef struct osb__chat_watch_cbs {
  void (*delta)(void *ud, const char *text, size_t n);
  void (*done)(void *ud, int err, json_t *message);
} osb__chat_watch_cbs_t;
osb__chat_watch_t *osb__chat_watch(osb__chat_reply_t *r, const osb__chat_watch_cbs_t *cbs, void *ud);
void osb__chat_unwatch(osb__chat_watch_t *w);

/* The conversation was deleted (committed): cancel its reply and queue. */
void osb__chat_conversation_deleted(const char *conv_id);

/* Text-to-speech for a stored reply (chat_voice.c): audio_url and
 * metadata.voice on the message, then a transient message.audio. Strings
 * are copied; voice_id NULL = ELEVENLABS_VOICE_ID. */
void osb__chat_voice_start(const char *user_id, const char *conv_id, const char *msg_id, const char *text,
                           const char *voice_id);
/* Cancel the syntheses still running (their replies keep their text). */
void osb__chat_voice_close(void);

/* GET /api/agents/status and the agents:status announcements. */
json_t *osb__chat_status_json(void);
void osb__chat_reply_init(void);

/* ---- reply sources ----
 * Where the text of a reply comes from. start() begins producing text for
 * `ctx` (borrowed: copy what you keep) and returns a handle; the source
 * then calls out->text zero or more times and out->end exactly once, never
 * inside start(), unless cancel(handle) was called first (after which no
 * callback runs). */
typedef struct osb__chat_src_ctx {
  const char *conversation_id, *user_id, *agent_id, *agent_name, *system_prompt, *model;
  const char *text;     /* the user message being answered */
  json_t *history;      /* [{role, content}] oldest first, ending with `text`; borrowed */
} osb__chat_src_ctx_t;

typedef struct osb__chat_src_end {
  int err;              /* 0: the reply is complete; < 0: it broke (`reason` says why) */
  const char *reason;   /* short valid UTF-8, never a secret; NULL when err == 0 */
  int64_t tokens_in, tokens_out;   /* as the provider reported them; 0 if unknown
                                    * or out of 0..OSB_CHAT_MAX_TOKENS */
} osb__chat_src_end_t;
/* A token count above this is not believed (each count, so that the two
 * add up within messages.tokens, a 32-bit integer). */
#define OSB_CHAT_MAX_TOKENS 1000000000

typedef struct osb__chat_src_out {
  void (*text)(void *ud, const char *p, size_t n);
  void (*end)(void *ud, const osb__chat_src_end_t *e);
} osb__chat_src_out_t;

typedef struct osb__chat_src {
  const char *name;     /* "knowledge", "openai", "anthropic" */
  bool fallback;        /* its replies are stored with fallback: true */
  void *(*start)(const osb__chat_src_ctx_t *ctx, const osb__chat_src_out_t *out, void *ud);
  void (*cancel)(void *handle);
} osb__chat_src_t;

/* The knowledge-base fallback: the agent's best-matching entries, or a
 * fixed "assistant unavailable" answer, streamed in small pieces. */
extern const osb__chat_src_t osb__chat_src_knowledge;
/* Live sources still running (for shutdown accounting). */
size_t osb__chat_src_knowledge_active(void);
/* The LLM source for the configured provider (LLM_PROVIDER) through the
 * `llm` upstream, or NULL when no LLM is configured (no LLM_API_KEY). */
const osb__chat_src_t *osb__chat_src_llm(void);
size_t osb__chat_src_llm_active(void);

#endif
