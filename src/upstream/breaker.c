/* breaker.c: the circuit breaker shared by every upstream (SPEC §2).
 *
 * Pure state with the clock passed in: no handles, no allocation on the
 * call path. The sliding window is a ring of one-second buckets; the sums of
 * the ring are kept up to date as buckets fall out, so admitting and
 * recording a call on the closed path is a few compares and additions
 * (measured by tests/unit/upstream/test_breaker.c, goal <= 100 ns).
 *
 * States: CLOSED → OPEN when the window holds >= min_calls calls and the
 * bad ones (failed or slow) reach failure_rate percent. OPEN → HALF_OPEN
 * once open_until_ms passed (lazily, at the next admission). HALF_OPEN lets
 * one trial through at a time: success → CLOSED (window and backoff reset),
 * failure → OPEN with the wait doubled (jittered, capped at 10 min).
 * FORCED_OPEN and DISABLED reject everything until forced back. */
#include "upstream/internal.h"

#include <stdio.h>
#include <stdlib.h>

const char *osb_breaker_state_name(osb_breaker_state_t st) {
  switch (st) {
    case OSB_BREAKER_CLOSED: return "closed";
    case OSB_BREAKER_HALF_OPEN: return "half_open";
    case OSB_BREAKER_OPEN: return "open";
    case OSB_BREAKER_FORCED_OPEN: return "forced_open";
    case OSB_BREAKER_DISABLED: return "disabled";
  }
  return "unknown";
}

static void transition(osb__breaker_t *b, osb_breaker_state_t to, const char *fmt, ...) OSB_PRINTF(3, 4);
static void transition(osb__breaker_t *b, osb_breaker_state_t to, const char *fmt, ...) {
  osb_breaker_state_t from = b->state;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->reason, sizeof(b->reason), fmt, ap);
  va_end(ap);
  b->state = to;
  if (from != to && b->on_transition) b->on_transition(b->ud, b, from, to, b->reason);
}

static void window_reset(osb__breaker_t *b) {
  memset(b->buckets, 0, sizeof(*b->buckets) * (size_t)b->cfg.window_s);
  b->win_calls = b->win_bad = 0;
}

void osb__breaker_init(osb__breaker_t *b, const osb__breaker_cfg_t *cfg,
                       osb__breaker_transition_fn fn, void *ud) {
  memset(b, 0, sizeof(*b));
  b->cfg = *cfg;
  if (b->cfg.window_s < 1) b->cfg.window_s = 1;
  if (b->cfg.min_calls < 1) b->cfg.min_calls = 1;
  b->buckets = osb_calloc((size_t)b->cfg.window_s, sizeof(*b->buckets));
  b->state = OSB_BREAKER_CLOSED;
  b->on_transition = fn;
  b->ud = ud;
  snprintf(b->reason, sizeof(b->reason), "initial");
}

void osb__breaker_dispose(osb__breaker_t *b) {
  free(b->buckets);
  b->buckets = NULL;
}

/* Bring the ring to `now`: buckets older than the window fall out. */
static inline osb__bucket_t *advance(osb__breaker_t *b, uint64_t now_ms) {
  uint64_t sec = now_ms / 1000;
  uint32_t n = (uint32_t)b->cfg.window_s;
  if (sec > b->head_sec) {
    uint64_t steps = sec - b->head_sec;
    if (steps >= n) {
      window_reset(b);
    } else {
      for (uint64_t i = 1; i <= steps; i++) {
        osb__bucket_t *old = &b->buckets[(b->head_sec + i) % n];
        b->win_calls -= old->calls;
        b->win_bad -= old->bad;
        old->calls = old->bad = 0;
      }
    }
    b->head_sec = sec;
  }
  return &b->buckets[b->head_sec % n];
}

void osb__breaker_window(osb__breaker_t *b, uint64_t now_ms, uint32_t *calls, uint32_t *bad) {
  advance(b, now_ms);
  *calls = b->win_calls;
  *bad = b->win_bad;
}

static void open_now(osb__breaker_t *b, uint64_t now_ms, const char *why) {
  uint64_t wait = (uint64_t)b->cfg.open_ms;
  for (uint32_t i = 0; i < b->failed_trials && wait < OSB__BREAKER_MAX_OPEN_MS; i++) wait *= 2;
  /* Jitter, -10 %..+10 %, so many instances do not retry in lockstep. */
  uint32_t r;
  osb_random_bytes(&r, sizeof(r));
  wait = wait * (900 + r % 201) / 1000;
  if (wait > OSB__BREAKER_MAX_OPEN_MS) wait = OSB__BREAKER_MAX_OPEN_MS;
  if (wait < 1) wait = 1;
  b->open_wait_ms = wait;
  b->open_until_ms = now_ms + wait;
  b->trial_busy = false;
  transition(b, OSB_BREAKER_OPEN, "%s; next trial in %llu ms", why, (unsigned long long)wait);
}

osb_breaker_state_t osb__breaker_peek(const osb__breaker_t *b, uint64_t now_ms) {
  if (b->state == OSB_BREAKER_OPEN && now_ms >= b->open_until_ms) return OSB_BREAKER_HALF_OPEN;
  return b->state;
}

int osb__breaker_admit(osb__breaker_t *b, uint64_t now_ms, bool *trial) {
  *trial = false;
  switch (b->state) {
    case OSB_BREAKER_CLOSED:
      return 0;
    case OSB_BREAKER_OPEN:
      if (now_ms < b->open_until_ms) break;
      transition(b, OSB_BREAKER_HALF_OPEN, "open wait of %llu ms elapsed: trial call",
                 (unsigned long long)b->open_wait_ms);
      /* fall through */
    case OSB_BREAKER_HALF_OPEN:
      if (b->trial_busy) break;
      b->trial_busy = true;
      *trial = true;
      return 0;
    case OSB_BREAKER_FORCED_OPEN:
      break;
    case OSB_BREAKER_DISABLED:
      b->rejected++;
      return OSB_EDENIED;
  }
  b->rejected++;
  return OSB_EUNAVAIL;
}

void osb__breaker_record(osb__breaker_t *b, uint64_t now_ms, bool trial, osb__outcome_t out, bool slow) {
  if (out == OSB__OUT_CANCELLED) {
    b->cancelled++;
    if (trial) b->trial_busy = false;   /* the next call becomes the trial */
    return;
  }
  bool bad = out == OSB__OUT_FAILURE || slow;
  b->calls++;
  if (out == OSB__OUT_FAILURE) b->failures++;
  else b->successes++;
  if (slow) b->slow++;

  if (trial) {
    b->trial_busy = false;
    if (b->state != OSB_BREAKER_HALF_OPEN) return;   /* forced meanwhile */
    if (bad) {
      b->failed_trials++;
      open_now(b, now_ms, out == OSB__OUT_FAILURE ? "trial call failed" : "trial call was slow");
    } else {
      b->failed_trials = 0;
      window_reset(b);
      transition(b, OSB_BREAKER_CLOSED, "trial call succeeded");
    }
    return;
  }
  /* Late results of calls admitted before the breaker opened do not count
   * again: the window restarts when it closes. */
  if (b->state != OSB_BREAKER_CLOSED) return;
  osb__bucket_t *cur = advance(b, now_ms);
  cur->calls++;
  b->win_calls++;
  if (!bad) return;
  cur->bad++;
  b->win_bad++;
  if (b->win_calls >= (uint32_t)b->cfg.min_calls &&
      (uint64_t)b->win_bad * 100 >= (uint64_t)b->cfg.failure_rate * b->win_calls) {
    char why[96];
    snprintf(why, sizeof(why), "%u of %u calls in %d s failed or were slow (threshold %d%%)",
             b->win_bad, b->win_calls, b->cfg.window_s, b->cfg.failure_rate);
    open_now(b, now_ms, why);
  }
}

unsigned osb__breaker_retry_after(const osb__breaker_t *b, uint64_t now_ms) {
  if (b->state == OSB_BREAKER_OPEN && b->open_until_ms > now_ms)
    return (unsigned)((b->open_until_ms - now_ms + 999) / 1000);
  if (b->state == OSB_BREAKER_FORCED_OPEN || b->state == OSB_BREAKER_DISABLED) return 60;
  return 1;
}

void osb__breaker_force(osb__breaker_t *b, osb_breaker_state_t st, const char *reason) {
  if (st == OSB_BREAKER_CLOSED) {
    b->failed_trials = 0;
    b->trial_busy = false;
    window_reset(b);
  }
  if (st == b->state) return;
  transition(b, st, "%s", reason ? reason : "forced");
}
