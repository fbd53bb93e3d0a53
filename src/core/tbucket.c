/* tbucket.c: the token bucket (see tbucket.h). */
#include "core/tbucket.h"

#include <math.h>

void osb_tbucket_init(osb_tbucket_t *b, double burst, uint64_t now_ms) {
  b->tokens = burst;
  b->last_ms = now_ms;
}

double osb_tbucket_refill(osb_tbucket_t *b, double rate, double burst, uint64_t now_ms) {
  if (now_ms > b->last_ms) {
    b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
    b->last_ms = now_ms;
  }
  if (b->tokens > burst) b->tokens = burst;
  return b->tokens;
}

bool osb_tbucket_take(osb_tbucket_t *b, double rate, double burst, uint64_t now_ms) {
  if (osb_tbucket_refill(b, rate, burst, now_ms) < 1.0) return false;
  b->tokens -= 1.0;
  return true;
}

unsigned osb_tbucket_wait_s(const osb_tbucket_t *b, double rate) {
  if (b->tokens >= 1.0) return 0;
  unsigned s = (unsigned)ceil((1.0 - b->tokens) / rate);
  return s ? s : 1;
}

void osb_tbucket32_init(osb_tbucket32_t *b, double burst, uint64_t now_ms) {
  b->tokens = (float)burst;
  b->last_ms = (uint32_t)now_ms;
}

bool osb_tbucket32_take(osb_tbucket32_t *b, double rate, double burst, uint64_t now_ms) {
  uint32_t age = (uint32_t)now_ms - b->last_ms;
  bool backwards = age > UINT32_MAX / 2;   /* no credit, and the bucket keeps its time */
  osb_tbucket_t t = {b->tokens, backwards ? now_ms : now_ms - age};
  bool ok = osb_tbucket_take(&t, rate, burst, now_ms);
  b->tokens = (float)t.tokens;
  if (!backwards) b->last_ms = (uint32_t)t.last_ms;
  return ok;
}
