/* limit.c: the general token bucket per client and the failed-login throttle.
 *
 * Token bucket: `burst` tokens, refilled at `rps` per second, one per
 * request. A bucket left alone for burst/rps seconds is full again, which is
 * exactly a new bucket, so the keytab may forget it: memory is bounded by
 * the number of clients active within that time (and by max_clients).
 *
 * Throttle: a sliding window log of the last `limit` failure times per key
 * (IP or e-mail). `limit` failures inside `window_ms` block the key until
 * the oldest of them leaves the window. Attempts still being checked
 * (begin .. end) count as possible failures for osb__throttle_busy, so a
 * burst of concurrent guesses cannot all start before the first fails. */
#include "auth/internal.h"

#include <math.h>
#include <stdlib.h>

#include "core/tbucket.h"

typedef osb_tbucket_t bucket_t;   /* core/tbucket.h */

struct osb__rl {
  osb__kt_t *kt;
  double rps, burst;
};

osb__rl_t *osb__rl_new(double rps, double burst, size_t max_clients) {
  osb__rl_t *rl = osb_calloc(1, sizeof(*rl));
  rl->rps = rps > 0 ? rps : 1;
  rl->burst = burst >= 1 ? burst : 1;
  uint64_t full_ms = (uint64_t)ceil(rl->burst / rl->rps * 1000.0);
  rl->kt = osb__kt_new(max_clients, sizeof(bucket_t), full_ms);
  return rl;
}

void osb__rl_take(osb__rl_t *rl, const char *key, size_t keylen, uint64_t now_ms, osb__rl_result_t *out) {
  bool created;
  bucket_t *b = osb__kt_get(rl->kt, key, keylen, now_ms, true, &created);
  if (created) osb_tbucket_init(b, rl->burst, now_ms);
  out->limit = (unsigned)rl->burst;
  out->allowed = osb_tbucket_take(b, rl->rps, rl->burst, now_ms);
  out->retry_after_s = out->allowed ? 0 : osb_tbucket_wait_s(b, rl->rps);
  out->remaining = (unsigned)floor(b->tokens);
  out->reset_s = (unsigned)ceil((rl->burst - b->tokens) / rl->rps);
}

size_t osb__rl_clients(const osb__rl_t *rl) { return osb__kt_count(rl->kt); }

void osb__rl_free(osb__rl_t *rl) {
  if (!rl) return;
  osb__kt_free(rl->kt);
  free(rl);
}

/* ---- failed-login throttle ---- */

#define THROTTLE_MAX_LIMIT 16

typedef struct fails {
  uint64_t at[THROTTLE_MAX_LIMIT];  /* ring of failure times */
  unsigned next;                    /* where the next failure goes */
  unsigned n;                       /* failures recorded, <= limit */
  unsigned pending;                 /* attempts begun and not yet ended */
} fails_t;

struct osb__throttle {
  osb__kt_t *kt;
  unsigned limit;
  uint64_t window_ms;
};

osb__throttle_t *osb__throttle_new(unsigned limit, uint64_t window_ms, size_t max_keys) {
  osb_assert(limit >= 1 && limit <= THROTTLE_MAX_LIMIT);
  osb__throttle_t *t = osb_calloc(1, sizeof(*t));
  t->limit = limit;
  t->window_ms = window_ms;
  t->kt = osb__kt_new(max_keys, sizeof(fails_t), window_ms);
  return t;
}

unsigned osb__throttle_check(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms) {
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, false, NULL);
  if (!f || f->n < t->limit) return 0;
  /* Full ring: `next` points at the oldest of the last `limit` failures. */
  uint64_t oldest = f->at[f->next];
  if (now_ms - oldest >= t->window_ms) return 0;
  uint64_t wait = oldest + t->window_ms - now_ms;
  unsigned s = (unsigned)((wait + 999) / 1000);
  return s ? s : 1;
}

void osb__throttle_fail(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms) {
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, true, NULL);
  f->at[f->next] = now_ms;
  f->next = (f->next + 1) % t->limit;
  if (f->n < t->limit) f->n++;
}

bool osb__throttle_busy(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms) {
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, false, NULL);
  if (!f || !f->pending) return false;
  unsigned recent = 0;
  for (unsigned i = 0; i < f->n; i++)
    if (now_ms - f->at[i] < t->window_ms) recent++;
  return recent + f->pending >= t->limit;
}

void osb__throttle_begin(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms) {
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, true, NULL);
  f->pending++;
}

void osb__throttle_end(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms, bool failed) {
  /* The entry may have been evicted meanwhile: then there is no count to undo. */
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, false, NULL);
  if (f && f->pending) f->pending--;
  if (failed) osb__throttle_fail(t, key, keylen, now_ms);
}

void osb__throttle_reset(osb__throttle_t *t, const char *key, size_t keylen, uint64_t now_ms) {
  fails_t *f = osb__kt_get(t->kt, key, keylen, now_ms, false, NULL);
  if (f && f->pending) {
    /* Attempts still running keep their count; the failures go. */
    unsigned pending = f->pending;
    memset(f, 0, sizeof(*f));
    f->pending = pending;
    return;
  }
  osb__kt_del(t->kt, key, keylen);
}

size_t osb__throttle_keys(const osb__throttle_t *t) { return osb__kt_count(t->kt); }

void osb__throttle_free(osb__throttle_t *t) {
  if (!t) return;
  osb__kt_free(t->kt);
  free(t);
}
