/* log.c: one line per call, JSON or text, one write per line.
 *
 * A line is built completely in a private buffer and handed to stdio in a
 * single fwrite under the stream lock (stderr is unbuffered, so that is one
 * write(2) in practice): lines from worker threads cannot interleave, and a
 * crash right after a call still leaves the whole line on the terminal. */
#include "obs/log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <time.h>

#include "core/config.h"
#include "core/json.h"

int osb__log_level = OSB_LOG_INFO;
static int log_format = OSB_LOGFMT_JSON;
static FILE *log_out;

/* Batching: debug/info lines produced on the loop thread are collected and
 * written once per loop iteration (the "log" step of core's before-sleep
 * phase, after every other step), so
 * the access log costs no syscall per request. warn and error lines, and
 * lines from other threads, are written at once (after the batch, to keep
 * the loop thread's order). */
static bool batching;
static pthread_t batch_thread;
static osb_buf_t batch;
#define BATCH_MAX (64 * 1024)

static void write_out(const char *p, size_t n) {
  FILE *f = log_out ? log_out : stderr;
  flockfile(f);
  fwrite(p, 1, n, f);
  fflush(f);
  funlockfile(f);
}

/* Writing the log gives no other step work: never asks for another round. */
static bool log_step(void *ud) {
  OSB_UNUSED(ud);
  osb_log_flush();
  return false;
}

void osb_log_batch_start(void) {
  batch_thread = pthread_self();
  batching = true;
  osb_core_step_add("log", OSB_STEP_LOG, log_step, NULL);
}

void osb_log_flush(void) {
  if (batch.len == 0) return;
  write_out(batch.base, batch.len);
  osb_buf_reset(&batch);
}

void osb_log_batch_stop(void) {
  osb_core_step_remove("log");
  osb_log_flush();
  osb_buf_free(&batch);
  batching = false;
}

static const char *const level_json[] = {"debug", "info", "warn", "error"};
static const char *const level_text[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static int clamp_level(int level) {
  return level < OSB_LOG_DEBUG ? OSB_LOG_DEBUG : level > OSB_LOG_ERROR ? OSB_LOG_ERROR : level;
}

void osb_log_init(int level, int format) {
  osb__log_level = clamp_level(level);
  log_format = format == OSB_LOGFMT_TEXT ? OSB_LOGFMT_TEXT : OSB_LOGFMT_JSON;
}

void osb_log_set_output(FILE *f) { log_out = f; }

int osb_log_level_parse(const char *s) {
  if (!s) return -1;
  for (int i = 0; i < (int)OSB_ARRAY_LEN(level_json); i++)
    if (strcasecmp(s, level_json[i]) == 0) return i;
  return -1;
}

/* Append s as a JSON string (with quotes: core's one escaper), or for text
 * output (quoted = false) as the same escapes without quotes, so a value
 * never spans lines. */
static void put_escaped(osb_buf_t *b, const char *s, size_t n, bool quoted) {
  static const char hex[] = "0123456789abcdef";
  if (quoted) {
    osb_buf_json_str(b, s, n);
    return;
  }
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    const char *esc = NULL;
    switch (c) {
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      default: break;
    }
    if (esc) {
      osb_buf_puts(b, esc);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      osb_buf_append(b, e, 6);
      i++;
    } else {
      size_t len = osb_utf8_seq_len(p + i, n - i);
      if (len) {
        osb_buf_append(b, p + i, len);
        i += len;
      } else {
        osb_buf_puts(b, "\xef\xbf\xbd");
        i++;
      }
    }
  }
}

static void put_json_value(osb_buf_t *b, json_t *v) {
  size_t at = b->len;
  if (osb_json_dump_buf(v, b) != 0) {   /* the one serializer (core/json.h) */
    b->len = at;
    osb_buf_puts(b, "null");
  }
}

/* Text values stay bare when that is unambiguous, else JSON-quoted. */
static void put_text_value(osb_buf_t *b, json_t *v) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bool bare = n > 0;
    for (size_t i = 0; i < n && bare; i++) {
      unsigned char c = (unsigned char)s[i];
      if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) bare = false;
    }
    if (bare) put_escaped(b, s, n, false);
    else put_escaped(b, s, n, true);
  } else {
    put_json_value(b, v);
  }
}

static bool reserved_key(const char *k) {
  return strcmp(k, "ts") == 0 || strcmp(k, "level") == 0 || strcmp(k, "module") == 0 ||
         strcmp(k, "msg") == 0;
}

/* The date part changes once a second: keep it per thread. */
static void put_timestamp(osb_buf_t *b) {
  static __thread time_t cached_sec = -1;
  static __thread char cached[64];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    cached_sec = ts.tv_sec;
  }
  int ms = (int)(ts.tv_nsec / 1000000);
  char tail[5] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', 0};
  osb_buf_append(b, cached, 20);
  osb_buf_append(b, tail, 4);
}

static void put_int(osb_buf_t *b, int64_t v) {
  char tmp[24];
  char *e = tmp + sizeof(tmp), *p = e;
  uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1 : (uint64_t)v;
  do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *--p = '-';
  osb_buf_append(b, p, (size_t)(e - p));
}

static void put_head(osb_buf_t *b, int level, const char *module, const char *msg, size_t msglen) {
  if (log_format == OSB_LOGFMT_TEXT) {
    put_timestamp(b);
    osb_buf_puts(b, " ");
    osb_buf_puts(b, level_text[level]);
    osb_buf_puts(b, " ");
    put_escaped(b, module, strlen(module), false);
    osb_buf_puts(b, ": ");
    put_escaped(b, msg, msglen, false);
  } else {
    osb_buf_puts(b, "{\"ts\":\"");
    put_timestamp(b);
    osb_buf_puts(b, "\",\"level\":\"");
    osb_buf_puts(b, level_json[level]);
    osb_buf_puts(b, "\",\"module\":");
    put_escaped(b, module, strlen(module), true);
    osb_buf_puts(b, ",\"msg\":");
    put_escaped(b, msg, msglen, true);
  }
}

static void put_key(osb_buf_t *b, const char *key) {
  if (log_format == OSB_LOGFMT_TEXT) {
    osb_buf_puts(b, " ");
    put_escaped(b, key, strlen(key), false);
    osb_buf_puts(b, "=");
  } else {
    osb_buf_puts(b, ",");
    if (reserved_key(key)) {
      osb_buf_puts(b, "\"_");
      put_escaped(b, key, strlen(key), false);
      osb_buf_puts(b, "\"");
    } else {
      put_escaped(b, key, strlen(key), true);
    }
    osb_buf_puts(b, ":");
  }
}

static void finish_line(osb_buf_t *b, int level);

void osb_log_kv(int level, const char *module, const char *msg, const osb_log_kv_t *kv, size_t n) {
  if (!osb_log_enabled(level)) return;
  level = clamp_level(level);
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_reserve(&b, 256);
  put_head(&b, level, module ? module : "main", msg, strlen(msg));
  for (size_t i = 0; i < n; i++) {
    put_key(&b, kv[i].key);
    switch (kv[i].type) {
      case OSB_KV_STR: {
        const char *v = kv[i].s ? kv[i].s : "";
        size_t vl = strlen(v);
        bool bare = log_format == OSB_LOGFMT_TEXT && vl > 0;
        for (size_t k = 0; k < vl && bare; k++) {
          unsigned char c = (unsigned char)v[k];
          if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) bare = false;
        }
        put_escaped(&b, v, vl, !bare);
        break;
      }
      case OSB_KV_INT:
        put_int(&b, kv[i].i);
        break;
      case OSB_KV_MICROS: { /* microseconds shown as milliseconds with 3 decimals */
        int64_t us = kv[i].i < 0 ? 0 : kv[i].i;
        put_int(&b, us / 1000);
        char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
        osb_buf_append(&b, frac, 4);
        break;
      }
    }
  }
  finish_line(&b, level);
}

static void emit(int level, const char *module, const char *msg, size_t msglen, json_t *fields) {
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_reserve(&b, 128 + msglen);
  level = clamp_level(level);
  put_head(&b, level, module ? module : "main", msg, msglen);
  const char *key;
  json_t *val;
  if (json_is_object(fields)) {
    json_object_foreach(fields, key, val) {
      put_key(&b, key);
      if (log_format == OSB_LOGFMT_TEXT) put_text_value(&b, val);
      else put_json_value(&b, val);
    }
  } else if (fields) {
    put_key(&b, "fields");
    put_json_value(&b, fields);
  }
  finish_line(&b, level);
}

static void finish_line(osb_buf_t *b_, int level) {
  osb_buf_t b = *b_;
  if (log_format != OSB_LOGFMT_TEXT) osb_buf_puts(&b, "}");
  osb_buf_puts(&b, "\n");

  if (batching && pthread_equal(pthread_self(), batch_thread)) {
    if (level <= OSB_LOG_INFO) {
      osb_buf_append(&batch, b.base, b.len);
      if (batch.len >= BATCH_MAX) osb_log_flush();
      osb_buf_free(&b);
      return;
    }
    osb_log_flush();
  }
  write_out(b.base, b.len);
  osb_buf_free(&b);
}

void osb_log(int level, const char *module, const char *fmt, ...) {
  if (!osb_log_enabled(level)) return;
  char small[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof(small), fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof(small)) {
    emit(level, module, small, (size_t)n, NULL);
    return;
  }
  char *big = osb_malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  emit(level, module, big, (size_t)n, NULL);
  free(big);
}

void osb_log_fields(int level, const char *module, const char *msg, json_t *fields) {
  if (osb_log_enabled(level)) {
    if (!msg) msg = "";
    emit(level, module, msg, strlen(msg), fields);
  }
  json_decref(fields);
}
