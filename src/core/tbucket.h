/* tbucket.h: the token bucket, for every rate limit in the server.
 *
 * `burst` tokens at most, refilled continuously at `rate` per second; an
 * admitted event takes one. The bucket is two fields and takes its limits
 * at each call, so it embeds anywhere (a WebSocket's control-frame budget,
 * a realtime client's message budget, auth's per-client buckets kept in an
 * osb_kt_t) and a limit changed at run time applies at once. Time is the
 * caller's millisecond clock (osb_now_ms(), the loop's cached one); a clock
 * that goes backwards refills nothing. Loop thread, or any thread that owns
 * the bucket. */
#ifndef OSB_CORE_TBUCKET_H
#define OSB_CORE_TBUCKET_H

#include <stdbool.h>
#include <stdint.h>

typedef struct osb_tbucket {
  double tokens;
  uint64_t last_ms;
} osb_tbucket_t;

/* A full bucket at now_ms. */
void osb_tbucket_init(osb_tbucket_t *b, double burst, uint64_t now_ms);
/* Add what accrued since the last call (capped at burst); returns tokens. */
double osb_tbucket_refill(osb_tbucket_t *b, double rate, double burst, uint64_t now_ms);
/* Refill, then take one token if there is one: true when admitted. */
bool osb_tbucket_take(osb_tbucket_t *b, double rate, double burst, uint64_t now_ms);
/* Seconds (rounded up, at least 1) until one token is available. */
unsigned osb_tbucket_wait_s(const osb_tbucket_t *b, double rate);

/* The same bucket in 8 bytes instead of 16, for objects there are tens of
 * thousands of (every WebSocket's control-frame budget, every realtime
 * client's message budget): tokens as a float, the time as the low 32 bits
 * of the ms clock. An age is taken modulo 2^32 ms, so a bucket untouched
 * for 49 days or more refills as if touched more recently (never past
 * burst); an age over 2^31 ms is a clock that went backwards and refills
 * nothing. */
typedef struct osb_tbucket32 {
  float tokens;
  uint32_t last_ms;
} osb_tbucket32_t;

void osb_tbucket32_init(osb_tbucket32_t *b, double burst, uint64_t now_ms);
bool osb_tbucket32_take(osb_tbucket32_t *b, double rate, double burst, uint64_t now_ms);

#endif
