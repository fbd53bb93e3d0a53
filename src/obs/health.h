/* health.h: the component health registry behind /health/details and /ready.
 *
 * Each component (database, cache, realtime, cluster, sso, llm, tts, ...)
 * either sets a static status with a reason (a missing key: warn,
 * "disabled: ELEVENLABS_API_KEY not set") or registers a check function
 * called at request time, which must not block (it reads state the
 * component already keeps). Loop thread only.
 *
 * Components keep their registration order. Registering or setting a name
 * that exists replaces its entry in place (a static status replaces a check
 * function and the other way round). Names and reasons are copied. */
#ifndef OSB_HEALTH_H
#define OSB_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { OSB_HEALTH_PASS = 0, OSB_HEALTH_WARN, OSB_HEALTH_FAIL } osb_health_status_t;

/* Writes a short reason into `reason` (may leave it empty for pass). The
 * buffer is zeroed before the call and NUL-terminated after it. It must not
 * register or set components (the registry is being walked). */
typedef osb_health_status_t (*osb_health_fn)(void *ud, char *reason, size_t reasonlen);

/* `critical`: a fail makes /ready answer 503 (the database). `ud` is borrowed
 * and must stay valid until the entry is replaced or osb_health_reset(). */
void osb_health_register(const char *component, osb_health_fn fn, void *ud, bool critical);
void osb_health_set(const char *component, osb_health_status_t st, const char *reason, bool critical);

/* Shutdown flips readiness off at once (and for good, until osb_health_reset). */
void osb_health_set_shutting_down(void);
bool osb_health_shutting_down(void);

/* Readiness: false while shutting down or while any critical component
 * fails (warn is still ready). When false, a short reason such as
 * "shutting down" or "database: connection refused" is written to `reason`
 * (may be NULL). Runs the critical components' checks. */
bool osb_health_ready(char *reason, size_t reasonlen);

/* The overall status: the worst over all components, where a fail of a
 * non-critical component counts as warn (the server still serves), and a
 * shutdown counts as at least warn. Runs every check. */
osb_health_status_t osb_health_overall(void);

typedef struct json_t json_t;
/* The application/health+json document (draft RFC "Health Check Response
 * Format for HTTP APIs"); a new reference the caller owns:
 *   {"status":"pass|warn|fail","version":OSB_VERSION,
 *    "serviceId":CLUSTER_NODE_ID (or "osbackend" before configuration),
 *    "description":"osbackend", ["output":"shutting down",]
 *    "checks":{"database":[{"componentId":"database","componentType":"component",
 *              "status":"pass","critical":true,["output":"reason",]"time":"<ISO 8601 UTC>"}],...}}
 * "status" is osb_health_overall(); "output" appears when the reason is not
 * empty; "time" is when a static status was set, or now for a check function.
 * Runs every check once. */
json_t *osb_health_details(void);

const char *osb_health_status_name(osb_health_status_t st); /* "pass", "warn", "fail" */
void osb_health_reset(void); /* drop every component and clear shutting-down (tests, shutdown) */

#endif
