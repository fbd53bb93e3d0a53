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
