/* chat_voice.c: text-to-speech on finished replies (`voice: true`).
 *
 * After agent.done, the reply's text (the first OSB_VOICE_MAX_CHARS
 * characters) goes through the voice module (ElevenLabs behind the `tts`
 * breaker, cached by hash). Success: the stored message gains audio_url and
 * metadata.voice = {status: "ok"}, then a transient
 * {"type":"message.audio","message_id","audio_url"} goes out on the
 * channel. Voice disabled or failing: the text reply stays as it is and
 * metadata.voice = {status: "disabled"|"failed", reason} says why.
 *
 * A job is owned by this file from start until its database update came
 * back; at close the pending syntheses are cancelled. */
#include "apps/chat_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/json.h"
#include "obs/log.h"
#include "realtime/realtime.h"
#include "voice/voice.h"

static const osb_db_stmt_t Q_AUDIO = {
  .name = "chat_message_audio",
  .pg = "UPDATE messages SET audio_url = COALESCE($2, audio_url), "
        "metadata = COALESCE(metadata, '{}'::jsonb) || $3::jsonb, updated_at = $4::bigint WHERE id = $1",
  .sqlite = "UPDATE messages SET audio_url = COALESCE(?2, audio_url), "
            "metadata = json_patch(COALESCE(metadata, '{}'), ?3), updated_at = CAST(?4 AS INTEGER) WHERE id = ?1",
  .nparams = 4,
  .writes = "messages",
};

/* The voice module answers before its cache row is written; audio_url is
 * given out only once GET /api/voice/audio/:hash can serve it. */
static const osb_db_stmt_t Q_STORED = {
  .name = "chat_voice_stored",
  .pg = "SELECT 1 FROM tts_cache WHERE hash = $1",
  .nparams = 1,
  .reads = "tts_cache",
};
#define STORED_POLL_MS 25
#define STORED_POLLS 80     /* 2 s */

typedef struct vjob {
  osb_list_t link;
  char *conv_id, *msg_id, *user_id;
  osb_voice_job_t *job;     /* while synthesizing */
  char *audio_url, *hash;
  bool updating;            /* a database call is pending */
  bool cancelled;
  int polls;
  uv_timer_t timer;         /* initialised once audio came; closed before the job is freed */
  bool has_timer;
} vjob_t;

static osb_list_t jobs = { &jobs, &jobs };
static bool registered;

static void vjob_release(vjob_t *j) {
  free(j->conv_id);
  free(j->msg_id);
  free(j->user_id);
  free(j->audio_url);
  free(j->hash);
  free(j);
}

static void vjob_closed(uv_handle_t *h) { vjob_release(h->data); }

static void vjob_free(vjob_t *j) {
  osb_list_remove(&j->link);
  osb_list_init(&j->link);
  if (j->has_timer) uv_close((uv_handle_t *)&j->timer, vjob_closed);
  else vjob_release(j);
}

static void updated(void *ud, int err, const osb_db_result_t *res) {
  vjob_t *j = ud;
  if (err) {
    osb_log(OSB_LOG_WARN, "chat", "voice for message %s not recorded: %s", j->msg_id, osb_strerror(err));
  } else if (j->audio_url && osb_db_affected(res) > 0) {
    char channel[64];
    snprintf(channel, sizeof(channel), "chat:%s", j->conv_id);
    json_t *ev = json_pack("{s:s, s:s, s:s}", "type", "message.audio", "message_id", j->msg_id, "audio_url", j->audio_url);
    osb_rt_publish_transient(channel, ev);
    json_decref(ev);
  }
  vjob_free(j);
}

static void record(vjob_t *j, const char *status, const char *reason) {
  json_t *meta = json_pack("{s:{s:s, s:s?}}", "voice", "status", status, "reason", reason);
  char *m = osb_json_dumps(meta, NULL);
  json_decref(meta);
  char now[24];
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  const char *p[4] = { j->msg_id, j->audio_url, m, now };
  j->updating = true;
  osb_db_query(&Q_AUDIO, p, 4, updated, j);
  free(m);
}

static void poll_stored(vjob_t *j);

static void on_poll_timer(uv_timer_t *t) { poll_stored(t->data); }

static void stored_checked(void *ud, int err, const osb_db_result_t *res) {
  vjob_t *j = ud;
  j->updating = false;
  if (j->cancelled) {
    vjob_free(j);
    return;
  }
  if (!err && osb_db_nrows(res) > 0) {
    record(j, "ok", NULL);
  } else if (++j->polls >= STORED_POLLS) {
    free(j->audio_url);
    j->audio_url = NULL;
    record(j, "failed", "the audio was not stored (TTS_CACHE_MB=0 or the database failed)");
  } else {
    uv_timer_start(&j->timer, on_poll_timer, STORED_POLL_MS, 0);
  }
}

static void poll_stored(vjob_t *j) {
  const char *p[1] = { j->hash };
  j->updating = true;
  osb_db_query(&Q_STORED, p, 1, stored_checked, j);
}

static void synthesized(void *ud, const osb_voice_result_t *r) {
  vjob_t *j = ud;
  j->job = NULL;
  if (r->err == 0 && r->audio_url && r->hash) {
    j->audio_url = osb_strdup(r->audio_url);
    j->hash = osb_strdup(r->hash);
    uv_timer_init(osb_loop(), &j->timer);
    j->timer.data = j;
    j->has_timer = true;
    poll_stored(j);
    return;
  }
  char why[240];
  snprintf(why, sizeof(why), "%s%s%s", r->code ? r->code : osb_strerror(r->err), r->message ? ": " : "",
           r->message ? r->message : "");
  osb_log(OSB_LOG_WARN, "chat", "voice for message %s failed: %s", j->msg_id, why);
  record(j, r->err == OSB_EDENIED ? "disabled" : "failed", why);
}

void osb__chat_voice_start(const char *user_id, const char *conv_id, const char *msg_id, const char *text,
                           const char *voice_id) {
  if (!registered) {
    const osb_db_stmt_t *stmts[] = { &Q_AUDIO, &Q_STORED };
    osb_db_register(stmts, 2);
    registered = true;
  }
  vjob_t *j = osb_calloc(1, sizeof(*j));
  j->conv_id = osb_strdup(conv_id);
  j->msg_id = osb_strdup(msg_id);
  j->user_id = osb_strdup(user_id);
  osb_list_insert_tail(&jobs, &j->link);
  if (!osb_voice_enabled()) {
    record(j, "disabled", osb_voice_disabled_reason());
    return;
  }
  /* At most OSB_VOICE_MAX_CHARS characters, cut on a UTF-8 boundary. */
  size_t n = 0, chars = 0, len = strlen(text);
  while (n < len && chars < OSB_VOICE_MAX_CHARS) {
    n++;
    while (n < len && ((unsigned char)text[n] & 0xC0) == 0x80) n++;
    chars++;
  }
  char *t = osb_malloc(n + 1);
  memcpy(t, text, n);
  t[n] = 0;
  const char *why = NULL;
  if (voice_id && osb_voice_validate("x", voice_id, &why)) voice_id = NULL;   /* the agent's voice is unusable: default */
  if (osb_voice_validate(t, voice_id, &why)) {
    record(j, "failed", why ? why : "text not speakable");
    free(t);
    return;
  }
  j->job = osb_voice_synthesize(user_id, t, voice_id, synthesized, j);
  free(t);
}

void osb__chat_voice_close(void) {
  osb_list_t *n = jobs.next;
  while (n != &jobs) {
    vjob_t *j = osb_container_of(n, vjob_t, link);
    n = n->next;
    j->cancelled = true;
    if (j->job) {
      osb_voice_cancel(j->job);
      j->job = NULL;
    }
    /* A pending database call frees the job when it comes back. */
    if (!j->updating) vjob_free(j);
  }
}
