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

#endif
