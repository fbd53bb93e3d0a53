/* health.h: the component health registry behind /health/details and /ready.
 *
 * Each component (database, cache, realtime, cluster, sso, llm, tts, ...)
 * either sets a static status with a reason (a missing key: warn,
 * "disabled: ELEVENLABS_API_KEY not set") or registers a check function
 * called at request time, which must not block (it reads state the
 * component already keeps). Loop thread only. */
#ifndef OSB_HEALTH_H
#define OSB_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { OSB_HEALTH_PASS = 0, OSB_HEALTH_WARN, OSB_HEALTH_FAIL } osb_health_status_t;

/* Writes a short reason into `reason` (may leave it empty for pass). */
typedef osb_health_status_t (*osb_health_fn)(void *ud, char *reason, size_t reasonlen);

/* `critical`: a fail makes /ready answer 503 (the database). */
void osb_health_register(const char *component, osb_health_fn fn, void *ud, bool critical);
void osb_health_set(const char *component, osb_health_status_t st, const char *reason, bool critical);

/* Shutdown flips readiness off at once. */
void osb_health_set_shutting_down(void);
bool osb_health_shutting_down(void);

/* Worst status over all components; true if every critical one passes/warns and not shutting down. */
bool osb_health_ready(char *reason, size_t reasonlen);

typedef struct json_t json_t;
/* The application/health+json document: {"status","checks":{name:[{status,output,time}]},...} */
json_t *osb_health_details(void);

const char *osb_health_status_name(osb_health_status_t st);
void osb_health_reset(void);

#endif
