/* features.h: feature switches (DISABLE=agents,voice,crm,market_writes,dashboard).
 *
 * A route file registers the routes of a feature through osb_feature_route()
 * instead of osb_route(). With the feature switched off the route is still
 * registered (so its path answers and shows in the route table) but its
 * handler is replaced by one answering
 *   503 {"error":{"code":"feature_disabled","message":"<feature> is switched off by DISABLE",...}}
 * and the feature shows as `warn` "disabled by DISABLE" in /health/details
 * (component name: the feature name). Everything else keeps working.
 *
 * Feature names (the only ones DISABLE accepts, core/config.c):
 *   agents         /api/agents…, /api/conversations… (and chat:* publishes)
 *   voice          /api/voice/…
 *   crm            /api/crm/contacts…
 *   market_writes  PUT /api/market/procedures/:id, POST /api/market/procedures/bulk
 *   dashboard      /dashboard, /api/dashboard/…
 * Start-up only, loop thread. */
#ifndef OSB_APPS_FEATURES_H
#define OSB_APPS_FEATURES_H

#include <stdbool.h>

/* http/http.h's, declared again (identical typedefs) so this public header
 * includes no other module's header (docs/architecture.md). */
typedef struct osb_req osb_req_t;
typedef void (*osb_handler_fn)(osb_req_t *req);

/* Reads DISABLE from the loaded configuration and sets the health entries.
 * Call once after osb_config_load, before any route registration. */
void osb_features_init(void);
/* False when DISABLE names the feature. `name` must be one of the names above. */
bool osb_feature_enabled(const char *name);
/* osb_route() when the feature is on; the 503 feature_disabled handler when off. */
void osb_feature_route(const char *feature, unsigned methods, const char *pattern, osb_handler_fn fn);

#endif
