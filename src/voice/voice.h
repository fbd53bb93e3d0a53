/* voice.h: text-to-speech through ElevenLabs, behind the "tts" upstream
 * (breaker, bulkhead), with the audio cached in tts_cache.
 *
 * The wire format is the real ElevenLabs API:
 *   POST ${ELEVENLABS_BASE_URL}/v1/text-to-speech/{voice_id}
 *   xi-api-key: <key>, Content-Type: application/json, Accept: audio/mpeg
 *   {"text", "model_id": ELEVENLABS_MODEL_ID, "voice_settings": {"stability", "similarity_boost"}}
 *   → 200 audio/mpeg bytes; 4xx {"detail": {"status", "message"}} or {"detail": "..."}.
 *
 * Cache: the key is the hex SHA-256 of voice id, model id and text. A hit
 * refreshes last_used_at; above TTS_CACHE_MB the least recently used rows
 * are evicted (0 = no cache). Concurrent requests for one key share one
 * flight: one lookup, at most one upstream call; the result stays joinable
 * until it is stored, so a request arriving meanwhile neither misses the
 * cache nor calls again. Characters are added to usage_daily (the user who
 * started the flight, UTC day) only for calls that reached ElevenLabs and
 * returned audio.
 *
 * Loop thread only. */
#ifndef OSB_VOICE_H
#define OSB_VOICE_H

#include <stdbool.h>
#include <stddef.h>
#include "core/core.h"

#define OSB_VOICE_MAX_CHARS 5000

typedef struct osb_voice_result {
  int err;                  /* 0, or: OSB_EDENIED voice disabled; OSB_EUNAVAIL breaker open,
                             * bulkhead full or upstream rate limit; OSB_ETIMEOUT; OSB_EPROTO
                             * the upstream refused (4xx) or failed (5xx, transport) */
  int http_status;          /* what a REST route answers: 200, 502, 503 or 504 */
  const char *code;         /* NULL, voice_disabled, upstream_unavailable, upstream_timeout, upstream_error */
  const char *message;      /* for the client; the upstream's reason for a 4xx; never a secret */
  unsigned retry_after_s;   /* 503: seconds */
  const char *hash;         /* 64 hex characters (success) */
  const char *audio_url;    /* "/api/voice/audio/<hash>" (success) */
  osb_msg_t *audio;         /* borrowed: osb_msg_ref() to keep it */
  const char *content_type; /* "audio/mpeg" */
  bool cached;              /* no ElevenLabs call was made for this result */
} osb_voice_result_t;

typedef void (*osb_voice_cb)(void *ud, const osb_voice_result_t *r);
typedef struct osb_voice_job osb_voice_job_t;

/* NULL when text (1..5,000 characters of valid UTF-8) and voice_id (NULL =
 * ELEVENLABS_VOICE_ID; else 1..64 of A-Z a-z 0-9 _ -) are acceptable, else
 * the field name ("text" or "voice_id") with *why set to the rule. */
const char *osb_voice_validate(const char *text, const char *voice_id, const char **why);

/* Synthesize `text` (validated as above: asserted) for `user_id` (may be
 * NULL or "service": no usage row). `cb` runs exactly once on the loop
 * thread, possibly before this returns (audio already at hand): then the
 * result is NULL. Otherwise the job is returned; it is dead after cb. */
osb_voice_job_t *osb_voice_synthesize(const char *user_id, const char *text, const char *voice_id,
                                      osb_voice_cb cb, void *ud);
/* Drop interest in a job: cb will not run. The flight goes on for the others
 * (and for the cache). */
void osb_voice_cancel(osb_voice_job_t *job);

/* Voice status: enabled, the reason when not, the default voice, the breaker. */
bool osb_voice_enabled(void);
const char *osb_voice_disabled_reason(void);
const char *osb_voice_default_voice(void);

/* After osb_db_init and osb_upstream_init: reads the cache size. */
void osb_voice_init(void);
/* After the loop ended: free what is left. */
void osb_voice_dispose(void);

#endif
