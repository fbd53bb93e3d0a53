/* dashboard.h: the operations dashboard (SPEC §4 "Operations").
 *
 *   GET /dashboard, /dashboard/app.js, /dashboard/app.css   the page (anyone; holds no data)
 *   GET /client.js                                         the JavaScript client (SPEC §5)
 *   GET /api/dashboard/history                             admin → the last 2 minutes of samples
 *
 * The sampler: a 1 s timer that, while `dashboard:metrics` has at least one
 * subscriber, reads the metrics and health registries and publishes one
 * {"type":"metrics",...} message (seq'd, so it lands in the channel's
 * in-memory history as well). HTTP figures are computed from the difference
 * between this second's and the previous second's histogram buckets, never
 * from lifetime totals. When nobody is subscribed the tick costs one hash
 * lookup and the previous snapshot is dropped, so the first sample after an
 * idle period comes one tick after the first subscriber (a whole second of
 * data, not the idle gap). The wire format is in docs/dashboard.md. */
#ifndef OSB_APPS_DASHBOARD_H
#define OSB_APPS_DASHBOARD_H

#include <stdint.h>

struct uv_loop_s;
typedef struct json_t json_t;

/* Register the routes; after osb_rt_start(), before the server listens. */
void osb_dashboard_routes(void);
/* Start the sampler's timer on `loop` (unreferenced: it never keeps the
 * loop alive). After osb_rt_start() and osb_db_init(). */
void osb_dashboard_start(struct uv_loop_s *loop);
/* Close the timer (shutdown) and free the history; idempotent. */
void osb_dashboard_stop(void);

/* One sample now, as published: a new reference. Uses and advances the
 * sampler's previous snapshot exactly like a tick (tests call it twice to
 * get the figures of the interval between the calls). */
json_t *osb_dashboard_sample(void);

/* The breaker state shown for an upstream ("llm", "tts"): "closed",
 * "half_open", "open" or "disabled". The single place that decides it:
 * the osb_breaker_state{upstream} gauge when a breaker registry feeds it
 * (0 closed, 1 half-open, 2 open), else the health component of that name
 * (a reason starting with "disabled" → disabled, pass → closed, warn →
 * half_open, fail → open), else "disabled". `checks` is the "checks" object
 * of osb_health_details() (borrowed; NULL to skip the health fallback). */
const char *osb_dashboard_breaker(const char *upstream, const json_t *checks);

#endif
