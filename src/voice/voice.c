/* voice.c: text-to-speech flights, the tts_cache and usage (see voice.h).
 *
 * A flight is one (voice, model, text) key in progress: LOOKUP (the cache
 * row is being read) → CALLING (ElevenLabs) → STORING (audio at hand, the
 * row and the usage being written). Jobs (one per caller) wait on the
 * flight; the flight owns itself and frees itself when its last database
 * write returned, or at once on a miss that failed. Jobs that join a
 * STORING flight are answered at once with its audio. */
#include "voice/voice.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <time.h>

#include "core/config.h"
#include "db/db.h"
#include "obs/log.h"
#include "upstream/upstream.h"

static const osb_db_stmt_t Q_HIT = {
  .name = "voice_cache_hit",
  .pg = "UPDATE tts_cache SET last_used_at = $2 WHERE hash = $1 RETURNING audio, content_type",
  .nparams = 2,
  .writes = "tts_cache",
};
static const osb_db_stmt_t Q_STORE = {
  .name = "voice_cache_store",
  .pg = "INSERT INTO tts_cache (hash, voice_id, content_type, audio, bytes, created_at, last_used_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (hash) DO NOTHING",
  .nparams = 6,
  .writes = "tts_cache",
};
static const osb_db_stmt_t Q_SIZE = {
  .name = "voice_cache_size",
  .pg = "SELECT coalesce(sum(bytes), 0) AS bytes FROM tts_cache",
  .reads = "tts_cache",
};
static const osb_db_stmt_t Q_EVICT = {
  .name = "voice_cache_evict",
  .pg = "DELETE FROM tts_cache WHERE hash IN "
        "(SELECT hash FROM tts_cache ORDER BY last_used_at, hash LIMIT 1) RETURNING bytes",
  .writes = "tts_cache",
};
static const osb_db_stmt_t Q_USAGE = {
  .name = "voice_usage_add",
  .pg = "INSERT INTO usage_daily (user_id, day, tts_chars) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_id, day) DO UPDATE SET tts_chars = usage_daily.tts_chars + excluded.tts_chars",
  .nparams = 3,
  .writes = "usage_daily",
};

typedef enum { F_LOOKUP = 1, F_CALLING, F_STORING } fstage_t;

typedef struct flight {
  osb_list_t node;          /* in flights */
  osb_list_t jobs;
  fstage_t stage;
  char hash[65];
  char url[96];
  char *voice_id, *text, *user_id;
  size_t chars;
  osb_upstream_call_t *call;
  osb_msg_t *audio;
  char *content_type;
  int pending_db;           /* STORING: writes not yet answered */
} flight_t;

struct osb_voice_job {
  osb_list_t node;          /* in its flight's jobs */
  flight_t *f;
  osb_voice_cb cb;
  void *ud;
};

static osb_list_t flights = {&flights, &flights};
static int64_t cache_bytes = -1;     /* -1 until the size query answered */
static bool evicting;

/* ---- small helpers ---- */

static size_t utf8_chars(const char *s, bool *valid) {
  size_t n = 0;
  *valid = true;
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
    if (!len) { *valid = false; return n; }
    for (int i = 1; i < len; i++)
      if ((p[i] & 0xC0) != 0x80) { *valid = false; return n; }
    p += len;
    n++;
  }
  return n;
}

const char *osb_voice_default_voice(void) {
  return osb_cfg && osb_cfg->elevenlabs_voice_id ? osb_cfg->elevenlabs_voice_id : "21m00Tcm4TlvDq8ikWAM";
}

static const char *model_id(void) {
  return osb_cfg && osb_cfg->elevenlabs_model_id ? osb_cfg->elevenlabs_model_id : "eleven_multilingual_v2";
}

const char *osb_voice_validate(const char *text, const char *voice_id, const char **why) {
  bool valid;
  size_t n = text ? utf8_chars(text, &valid) : 0;
  if (!text || !valid || n < 1 || n > OSB_VOICE_MAX_CHARS) {
    *why = "must be a string of 1 to 5000 characters";
    return "text";
  }
  if (voice_id) {
    size_t l = strlen(voice_id);
    bool ok = l >= 1 && l <= 64;
    for (size_t i = 0; ok && i < l; i++) {
      char c = voice_id[i];
      ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    }
    if (!ok) {
      *why = "must be 1 to 64 characters of A-Z a-z 0-9 _ -";
      return "voice_id";
    }
  }
  return NULL;
}

bool osb_voice_enabled(void) {
  osb_upstream_t *u = osb_upstream_get("tts");
  return u && osb_upstream_enabled(u);
}

const char *osb_voice_disabled_reason(void) {
  osb_upstream_t *u = osb_upstream_get("tts");
  if (!u) return "disabled: text-to-speech is not initialised";
  return osb_upstream_disabled_reason(u);
}

static void hash_key(const char *voice, const char *model, const char *text, char out[65]) {
  crypto_hash_sha256_state st;
  unsigned char h[32];
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const unsigned char *)voice, strlen(voice) + 1);
  crypto_hash_sha256_update(&st, (const unsigned char *)model, strlen(model) + 1);
  crypto_hash_sha256_update(&st, (const unsigned char *)text, strlen(text));
  crypto_hash_sha256_final(&st, h);
  osb_hex(out, h, sizeof(h));
}

static flight_t *find(const char *hash) {
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &flights) {
    flight_t *f = osb_container_of(pos, flight_t, node);
    if (strcmp(f->hash, hash) == 0) return f;
  }
  return NULL;
}

static void flight_free(flight_t *f) {
  osb_assert(osb_list_empty(&f->jobs));
  osb_list_remove(&f->node);
  if (f->audio) osb_msg_unref(f->audio);
  free(f->content_type);
  free(f->voice_id);
  free(f->text);
  free(f->user_id);
  free(f);
}

static void answer_job(osb_voice_job_t *j, const osb_voice_result_t *r) {
  osb_list_remove(&j->node);
  osb_voice_cb cb = j->cb;
  void *ud = j->ud;
  free(j);
  cb(ud, r);
}

/* Answer every job of the flight with `r` (jobs may cancel others meanwhile:
 * always take the head). */
static void answer_all(flight_t *f, osb_voice_result_t *r) {
  while (!osb_list_empty(&f->jobs)) answer_job(osb_container_of(f->jobs.next, osb_voice_job_t, node), r);
}

static void success_result(flight_t *f, osb_voice_result_t *r, bool cached) {
  memset(r, 0, sizeof(*r));
  r->http_status = 200;
  r->hash = f->hash;
  r->audio_url = f->url;
  r->audio = f->audio;
  r->content_type = f->content_type ? f->content_type : "audio/mpeg";
  r->cached = cached;
}

/* ---- cache size and eviction ---- */

static void evict_more(void);

static void on_evicted(void *ud, int err, const osb_db_result_t *res) {
  evicting = false;
  if (err) {
    osb_log(OSB_LOG_WARN, "voice", "cache eviction failed: %s", osb_strerror(err));
    return;
  }
  size_t n = osb_db_nrows(res);
  for (size_t i = 0; i < n; i++) cache_bytes -= osb_db_int(res, i, 0);
  if (cache_bytes < 0) cache_bytes = 0;
  if (n) {
    osb_log(OSB_LOG_DEBUG, "voice", "evicted %zu cached clips, %lld bytes kept", n, (long long)cache_bytes);
    evict_more();
  }
}

static void evict_more(void) {
  if (evicting || cache_bytes < 0 || !osb_cfg) return;
  if (cache_bytes <= (int64_t)osb_cfg->tts_cache_mb * 1024 * 1024) return;
  evicting = true;
  osb_db_query(&Q_EVICT, NULL, 0, on_evicted, NULL);
}

static void on_size(void *ud, int err, const osb_db_result_t *res) {
  if (err || osb_db_nrows(res) != 1) {
    osb_log(OSB_LOG_WARN, "voice", "could not read the audio cache size: %s", osb_strerror(err));
    return;
  }
  cache_bytes += osb_db_int(res, 0, 0) + 1;   /* from -1 */
  evict_more();
}

/* ---- storing ---- */

static void store_done(flight_t *f) {
  if (--f->pending_db == 0) flight_free(f);
}

static void on_stored(void *ud, int err, const osb_db_result_t *res) {
  flight_t *f = ud;
  if (err) {
    osb_log(OSB_LOG_WARN, "voice", "could not cache audio %.12s: %s", f->hash, osb_strerror(err));
  } else if (osb_db_affected(res) > 0 && cache_bytes >= 0) {
    cache_bytes += (int64_t)f->audio->len;
    evict_more();
  }
  store_done(f);
}

static void on_usage(void *ud, int err, const osb_db_result_t *res) {
  flight_t *f = ud;
  if (err) osb_log(OSB_LOG_WARN, "voice", "could not count usage: %s", osb_strerror(err));
  store_done(f);
}

static void store(flight_t *f) {
  f->stage = F_STORING;
  f->pending_db = 1;   /* held until both writes are issued */
  char day[16], chars[24], bytes[24], now[24];
  time_t t = (time_t)(osb_wallclock_ms() / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(day, sizeof(day), "%Y-%m-%d", &tm);
  snprintf(chars, sizeof(chars), "%zu", f->chars);
  snprintf(bytes, sizeof(bytes), "%zu", f->audio->len);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
  if (osb_cfg && osb_cfg->tts_cache_mb > 0) {
    const char *ct = f->content_type ? f->content_type : "audio/mpeg";
    osb_db_param_t p[6] = {
      {OSB_DB_P_TEXT, f->hash, strlen(f->hash)},
      {OSB_DB_P_TEXT, f->voice_id, strlen(f->voice_id)},
      {OSB_DB_P_TEXT, ct, strlen(ct)},
      {OSB_DB_P_BLOB, f->audio->data, f->audio->len},
      {OSB_DB_P_TEXT, bytes, strlen(bytes)},
      {OSB_DB_P_TEXT, now, strlen(now)},
    };
    f->pending_db++;
    osb_db_queryv(&Q_STORE, p, 6, on_stored, f);
  }
  if (f->user_id && strcmp(f->user_id, "service") != 0) {
    const char *params[] = {f->user_id, day, chars};
    f->pending_db++;
    osb_db_query(&Q_USAGE, params, 3, on_usage, f);
  }
  store_done(f);
}

/* ---- the upstream call ---- */

/* The upstream's reason from an ElevenLabs error body, made safe to show:
 * at most 200 characters, no control characters, never the key. */
static void upstream_reason(const char *body, size_t len, int status, char *out, size_t outlen) {
  const char *msg = NULL;
  json_t *j = json_loadb(body, len, 0, NULL);
  if (j) {
    json_t *d = json_object_get(j, "detail");
    if (json_is_string(d)) msg = json_string_value(d);
    else if (json_is_object(d)) {
      msg = json_string_value(json_object_get(d, "message"));
      if (!msg) msg = json_string_value(json_object_get(d, "status"));
    }
    if (!msg) msg = json_string_value(json_object_get(j, "message"));
    if (!msg) msg = json_string_value(json_object_get(j, "error"));
  }
  char tmp[256];
  snprintf(tmp, sizeof(tmp), "%s", msg ? msg : "");
  json_decref(j);
  for (char *p = tmp; *p; p++)
    if ((unsigned char)*p < 0x20) *p = ' ';
  const char *key = osb_cfg ? osb_cfg->elevenlabs_api_key : NULL;
  if (key && *key) {
    size_t kl = strlen(key);
    for (char *p = strstr(tmp, key); p; p = strstr(p, key)) {
      memset(p, '*', kl < 3 ? kl : 3);
      memmove(p + 3, p + kl, strlen(p + kl) + 1);
    }
  }
  if (tmp[0]) snprintf(out, outlen, "text-to-speech refused the request (%d): %.200s", status, tmp);
  else snprintf(out, outlen, "text-to-speech refused the request (%d)", status);
}

static void on_tts_done(void *ud, const osb_upstream_result_t *r) {
  flight_t *f = ud;
  f->call = NULL;
  osb_voice_result_t vr = {0};
  char msg[320];
  if (r->err == 0 && r->status >= 200 && r->status < 300 && r->body_len > 0) {
    f->audio = osb_msg_from(r->body, r->body_len);
    f->content_type = osb_strdup(r->content_type && strncmp(r->content_type, "audio/", 6) == 0 ? r->content_type
                                                                                              : "audio/mpeg");
    success_result(f, &vr, false);
    answer_all(f, &vr);
    store(f);
    return;
  }
  if (r->rejected && r->err == OSB_EDENIED) {
    vr = (osb_voice_result_t){.err = OSB_EDENIED, .http_status = 503, .code = "voice_disabled"};
    snprintf(msg, sizeof(msg), "voice is %s", r->reason ? r->reason : "disabled");
  } else if (r->rejected || r->err == OSB_EUNAVAIL || (r->err == 0 && r->status == 429)) {
    vr = (osb_voice_result_t){.err = OSB_EUNAVAIL, .http_status = 503, .code = "upstream_unavailable"};
    vr.retry_after_s = r->retry_after_s ? r->retry_after_s : 1;
    snprintf(msg, sizeof(msg), "text-to-speech is unavailable (%s), retry later",
             r->err ? r->reason : "rate limited");
  } else if (r->err == OSB_ETIMEOUT) {
    vr = (osb_voice_result_t){.err = OSB_ETIMEOUT, .http_status = 504, .code = "upstream_timeout"};
    snprintf(msg, sizeof(msg), "text-to-speech did not answer in time");
  } else if (r->err == 0 && r->status >= 400 && r->status < 500) {
    vr = (osb_voice_result_t){.err = OSB_EPROTO, .http_status = 502, .code = "upstream_error"};
    upstream_reason(r->body, r->body_len, r->status, msg, sizeof(msg));
  } else if (r->err == 0) {
    vr = (osb_voice_result_t){.err = OSB_EPROTO, .http_status = 502, .code = "upstream_error"};
    snprintf(msg, sizeof(msg), "text-to-speech failed (status %d)", r->status);
  } else {
    vr = (osb_voice_result_t){.err = OSB_EPROTO, .http_status = 502, .code = "upstream_error"};
    snprintf(msg, sizeof(msg), "text-to-speech could not be reached");
  }
  vr.message = msg;
  if (!r->rejected)
    osb_log_fields(OSB_LOG_WARN, "voice", "text-to-speech call failed",
                   json_pack("{s:i, s:s, s:s}", "status", r->status, "error", r->err ? osb_strerror(r->err) : "none",
                             "reason", r->reason ? r->reason : ""));
  answer_all(f, &vr);
  flight_free(f);
}

static const osb_upstream_cbs_t TTS_CBS = {.on_done = on_tts_done};

static void call_upstream(flight_t *f) {
  f->stage = F_CALLING;
  const osb_config_t *cfg = osb_cfg;
  char *url = osb_asprintf("%s/v1/text-to-speech/%s", cfg ? cfg->elevenlabs_base_url : "", f->voice_id);
  char *key = osb_asprintf("xi-api-key: %s", cfg && cfg->elevenlabs_api_key ? cfg->elevenlabs_api_key : "");
  const char *headers[] = {key, "Content-Type: application/json", "Accept: audio/mpeg", NULL};
  json_t *body = json_pack("{s:s, s:s, s:{s:f, s:f}}", "text", f->text, "model_id", model_id(), "voice_settings",
                           "stability", 0.5, "similarity_boost", 0.75);
  char *b = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  osb_upstream_req_t req = {
    .method = "POST", .url = url, .headers = headers, .body = b, .body_len = strlen(b),
    .max_response_bytes = 32u << 20,
  };
  f->call = osb_upstream_call(osb_upstream_get("tts"), &req, &TTS_CBS, f);
  sodium_memzero(key, strlen(key));
  free(key);
  free(url);
  free(b);
}

/* ---- the cache lookup ---- */

static void on_hit(void *ud, int err, const osb_db_result_t *res) {
  flight_t *f = ud;
  if (err || osb_db_nrows(res) == 0) {
    if (err) osb_log(OSB_LOG_WARN, "voice", "audio cache lookup failed: %s", osb_strerror(err));
    if (osb_list_empty(&f->jobs)) {   /* everybody left: nothing to do */
      flight_free(f);
      return;
    }
    call_upstream(f);
    return;
  }
  f->audio = osb_msg_from(osb_db_text(res, 0, 0), osb_db_len(res, 0, 0));
  const char *ct = osb_db_text(res, 0, 1);
  f->content_type = osb_strdup(ct ? ct : "audio/mpeg");
  osb_voice_result_t vr;
  success_result(f, &vr, true);
  answer_all(f, &vr);
  flight_free(f);
}

osb_voice_job_t *osb_voice_synthesize(const char *user_id, const char *text, const char *voice_id,
                                      osb_voice_cb cb, void *ud) {
  const char *why;
  osb_assert(osb_voice_validate(text, voice_id, &why) == NULL);
  if (!voice_id) voice_id = osb_voice_default_voice();
  char hash[65];
  hash_key(voice_id, model_id(), text, hash);
  flight_t *f = find(hash);
  if (f && f->stage == F_STORING) {
    osb_voice_result_t vr;
    success_result(f, &vr, true);
    cb(ud, &vr);
    return NULL;
  }
  osb_voice_job_t *j = osb_calloc(1, sizeof(*j));
  j->cb = cb;
  j->ud = ud;
  if (f) {
    j->f = f;
    osb_list_insert_tail(&f->jobs, &j->node);
    return j;
  }
  f = osb_calloc(1, sizeof(*f));
  osb_list_init(&f->jobs);
  memcpy(f->hash, hash, sizeof(hash));
  snprintf(f->url, sizeof(f->url), "/api/voice/audio/%s", hash);
  f->voice_id = osb_strdup(voice_id);
  f->text = osb_strdup(text);
  f->user_id = user_id ? osb_strdup(user_id) : NULL;
  bool valid;
  f->chars = utf8_chars(text, &valid);
  osb_list_insert_tail(&flights, &f->node);
  j->f = f;
  osb_list_insert_tail(&f->jobs, &j->node);
  if (!osb_voice_enabled() || !osb_cfg || osb_cfg->tts_cache_mb == 0) {
    call_upstream(f);   /* disabled: rejected by the upstream, asynchronously */
  } else {
    f->stage = F_LOOKUP;
    char now[24];
    snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
    const char *params[] = {hash, now};
    osb_db_query(&Q_HIT, params, 2, on_hit, f);
  }
  return j;
}

void osb_voice_cancel(osb_voice_job_t *j) {
  if (!j) return;
  /* The flight goes on: a call nobody waits for still fills the cache; a
   * lookup nobody waits for ends in on_hit. */
  osb_list_remove(&j->node);
  free(j);
}

void osb_voice_init(void) {
  static const osb_db_stmt_t *const stmts[] = {&Q_HIT, &Q_STORE, &Q_SIZE, &Q_EVICT, &Q_USAGE};
  osb_db_register(stmts, OSB_ARRAY_LEN(stmts));
  cache_bytes = -1;
  evicting = false;
  if (osb_cfg && osb_cfg->tts_cache_mb > 0) osb_db_query(&Q_SIZE, NULL, 0, on_size, NULL);
}

void osb_voice_dispose(void) {
  /* Every flight ended with the database and upstream callbacks (both fail
   * their work at close); anything left has no callback to come. */
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &flights) {
    flight_t *f = osb_container_of(pos, flight_t, node);
    while (!osb_list_empty(&f->jobs)) {
      osb_voice_job_t *j = osb_container_of(f->jobs.next, osb_voice_job_t, node);
      osb_list_remove(&j->node);
      free(j);
    }
    flight_free(f);
  }
}
