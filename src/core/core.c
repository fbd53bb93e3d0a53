/* core.c: allocation, buffers, shared messages and small helpers. */
#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <uv.h>

static uv_loop_t *core_loop;

void osb__core_loop_init(uv_loop_t *loop);   /* loop.c */

void osb_core_init(uv_loop_t *loop) {
  core_loop = loop;
  osb__core_loop_init(loop);
  if (sodium_init() < 0) {
    fprintf(stderr, "fatal: libsodium failed to initialise\n");
    abort();
  }
}

uv_loop_t *osb_loop(void) { return core_loop; }

_Noreturn void osb__assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "fatal: assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}

static const char *const osb_errstr[] = {
  "protocol error", "too large", "timed out", "closed", "slow consumer",
  "invalid configuration", "database error", "unavailable", "not found",
  "invalid argument", "denied", "conflict",
};

const char *osb_strerror(int err) {
  if (err == 0) return "ok";
  if (err > OSB_EBASE && err < OSB_ELAST) return osb_errstr[err - OSB_EBASE - 1];
  return uv_strerror(err);
}

/* ---- allocation ---- */

static _Noreturn void oom(size_t n) {
  fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
  abort();
}

void *osb_malloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom(n);
  return p;
}

void *osb_calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) oom(n * size);
  return p;
}

void *osb_realloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom(n);
  return q;
}

char *osb_strdup(const char *s) { return osb_strndup(s, strlen(s)); }

char *osb_strndup(const char *s, size_t n) {
  char *p = osb_malloc(n + 1);
  memcpy(p, s, n);
  p[n] = 0;
  return p;
}

char *osb_asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  osb_assert(n >= 0);
  char *p = osb_malloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

/* ---- osb_buf_t ---- */

static void buf_grow(osb_buf_t *b, size_t need) {
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  b->base = osb_realloc(b->base, cap);
  b->cap = cap;
}

void osb_buf_reserve(osb_buf_t *b, size_t extra) {
  size_t need = b->len + extra + 1;   /* +1 keeps room for the NUL */
  if (need > b->cap) buf_grow(b, need);
}

int osb_buf_try_reserve(osb_buf_t *b, size_t extra, size_t limit) {
  if (extra > limit || b->len + extra > limit) return OSB_ETOOBIG;
  osb_buf_reserve(b, extra);
  return 0;
}

void osb_buf_append(osb_buf_t *b, const void *p, size_t n) {
  osb_buf_reserve(b, n);
  if (n) memcpy(b->base + b->len, p, n);
  b->len += n;
  b->base[b->len] = 0;
}

void osb_buf_vprintf(osb_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  osb_buf_reserve(b, 64);
  int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
  osb_assert(n >= 0);
  if ((size_t)n >= b->cap - b->len) {
    osb_buf_reserve(b, (size_t)n);
    vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap2);
  }
  va_end(ap2);
  b->len += (size_t)n;
}

void osb_buf_printf(osb_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  osb_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

/* ---- UTF-8 ---- */

size_t osb_utf8_seq_len(const void *p, size_t n) {
  const unsigned char *s = p;
  if (n == 0) return 0;
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;   /* bounds of the second byte */
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) len = 2;
  else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
  else return 0;
  if (n < len || s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  return len;
}

bool osb_utf8_valid(const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) { i++; continue; }
    size_t len = osb_utf8_seq_len(s + i, n - i);
    if (!len) return false;
    i += len;
  }
  return true;
}

void osb_buf_json_str(osb_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  osb_buf_reserve(b, n + 2);
  b->base[b->len++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc = 0;
    switch (c) {
      case '"': esc = '"'; break;
      case '\\': esc = '\\'; break;
      case '\n': esc = 'n'; break;
      case '\r': esc = 'r'; break;
      case '\t': esc = 't'; break;
      case '\b': esc = 'b'; break;
      case '\f': esc = 'f'; break;
      default: break;
    }
    if (esc) {
      char e[2] = {'\\', esc};
      osb_buf_append(b, e, 2);
    } else if (c < 0x20 || c == 0x7f) {   /* DEL too: log lines stay printable */
      char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      osb_buf_append(b, e, 6);
    } else if (c < 0x80) {
      osb_buf_reserve(b, 1);
      b->base[b->len++] = (char)c;
    } else {
      /* JSON text is UTF-8: a byte that does not start a well-formed
       * sequence becomes U+FFFD, so the result always parses. */
      size_t len = osb_utf8_seq_len(s + i, n - i);
      if (len) {
        osb_buf_append(b, s + i, len);
        i += len - 1;
      } else {
        osb_buf_append(b, "\\ufffd", 6);
      }
    }
  }
  osb_buf_reserve(b, 1);
  b->base[b->len++] = '"';
  b->base[b->len] = 0;
}

size_t osb_utf8_trim(const char *s, size_t n) {
  /* back up over at most three continuation bytes to the lead byte */
  size_t i = n;
  while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--;
  if (i == 0 || ((unsigned char)s[i - 1] & 0xc0) != 0xc0) return n;   /* ASCII or no lead: nothing cut */
  unsigned char lead = (unsigned char)s[i - 1];
  size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
  return n - (i - 1) < want ? i - 1 : n;
}

void osb_buf_consume(osb_buf_t *b, size_t n) {
  osb_assert(n <= b->len);
  if (n == 0) return;   /* also a buffer never allocated (memmove of NULL) */
  memmove(b->base, b->base + n, b->len - n);
  b->len -= n;
  if (b->base) b->base[b->len] = 0;
}

void osb_buf_free(osb_buf_t *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}

/* ---- osb_msg_t ---- */

osb_msg_t *osb_msg_new(size_t headroom, size_t cap) {
  osb_msg_t *m = osb_malloc(sizeof(*m) + headroom + cap);
  m->refcnt = 1;
  m->headroom = (uint32_t)headroom;
  m->len = 0;
  m->cap = cap;
  m->data = m->buf + headroom;
  return m;
}

osb_msg_t *osb_msg_from(const void *p, size_t n) {
  osb_msg_t *m = osb_msg_new(0, n);
  memcpy(m->data, p, n);
  m->len = n;
  return m;
}

void osb_msg_append(osb_msg_t **mp, const void *p, size_t n) {
  osb_msg_t *m = *mp;
  osb_assert(m->refcnt == 1);
  if (m->len + n > m->cap) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap < m->len + n) cap *= 2;
    size_t front = (size_t)(m->data - m->buf);
    m = osb_realloc(m, sizeof(*m) + front + cap);
    m->data = m->buf + front;
    m->cap = cap;
    *mp = m;
  }
  memcpy(m->data + m->len, p, n);
  m->len += n;
}

void osb_msg_prepend(osb_msg_t *m, const void *p, size_t n) {
  osb_assert(n <= m->headroom);
  m->data -= n;
  m->headroom -= (uint32_t)n;
  m->len += n;
  m->cap += n;
  memcpy(m->data, p, n);
}

void osb_msg_unref(osb_msg_t *m) {
  if (!m) return;
  osb_assert(m->refcnt > 0);
  if (--m->refcnt == 0) free(m);
}

/* ---- roles ---- */

const char *osb_role_name(osb_role_t r) {
  switch (r) {
    case OSB_ROLE_USER: return "user";
    case OSB_ROLE_ADMIN: return "admin";
    case OSB_ROLE_SERVICE: return "service";
    default: return "none";
  }
}

osb_role_t osb_role_parse(const char *s) {
  if (!s) return OSB_ROLE_NONE;
  if (strcmp(s, "user") == 0) return OSB_ROLE_USER;
  if (strcmp(s, "admin") == 0) return OSB_ROLE_ADMIN;
  if (strcmp(s, "service") == 0) return OSB_ROLE_SERVICE;
  return OSB_ROLE_NONE;
}

/* ---- helpers ---- */

uint64_t osb_now_ms(void) { return core_loop ? uv_now(core_loop) : uv_hrtime() / 1000000; }

uint64_t osb_wallclock_ms(void) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

void osb_random_bytes(void *p, size_t n) { randombytes_buf(p, n); }

void osb_hex(char *out, const void *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[s[i] >> 4];
    out[2 * i + 1] = hex[s[i] & 15];
  }
  out[2 * n] = 0;
}

bool osb_consttime_eq(const void *a, size_t alen, const void *b, size_t blen) {
  if (alen != blen) return false;
  if (alen == 0) return true;
  return sodium_memcmp(a, b, alen) == 0;
}

bool osb_strcaseeq_n(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  return alen == blen && strncasecmp(a, b, alen) == 0;
}
