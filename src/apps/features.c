/* features.c: DISABLE, see features.h. */
#include "apps/features.h"

#include "http/http.h"

#include <string.h>

#include "core/config.h"
#include "core/core.h"
#include "obs/health.h"

static const char *const known[] = {"agents", "voice", "crm", "market_writes", "dashboard"};

/* Which switched-off feature a route pattern belongs to: the disabled
 * handler has only the request, so it looks its matched pattern up here. */
#define MAX_OFF_ROUTES 64
static struct {
  const char *pattern;   /* borrowed: callers pass string literals */
  const char *feature;
} off_routes[MAX_OFF_ROUTES];
static int noff;

bool osb_feature_enabled(const char *name) {
  const char *list = osb_cfg ? osb_cfg->disable : NULL;
  if (!list) return true;
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *comma = strchr(p, ',');
    size_t len = comma ? (size_t)(comma - p) : strlen(p);
    if (len == n && strncmp(p, name, n) == 0) return false;
    if (!comma) break;
    p = comma + 1;
  }
  return true;
}

void osb_features_init(void) {
  noff = 0;
  for (size_t i = 0; i < OSB_ARRAY_LEN(known); i++)
    if (!osb_feature_enabled(known[i])) osb_health_set(known[i], OSB_HEALTH_WARN, "disabled by DISABLE", false);
}

static void disabled_handler(osb_req_t *req) {
  const char *route = osb_req_route(req), *feature = "this feature";
  for (int i = 0; i < noff; i++)
    if (strcmp(off_routes[i].pattern, route) == 0) feature = off_routes[i].feature;
  osb_res_error(req, 503, "feature_disabled", "%s is switched off by DISABLE", feature);
}

void osb_feature_route(const char *feature, unsigned methods, const char *pattern, osb_handler_fn fn) {
  bool valid = false;
  for (size_t i = 0; i < OSB_ARRAY_LEN(known); i++) valid |= strcmp(known[i], feature) == 0;
  osb_assert(valid);   /* a feature name DISABLE cannot name is a bug */
  if (osb_feature_enabled(feature)) {
    osb_route(methods, pattern, fn);
    return;
  }
  osb_assert(noff < MAX_OFF_ROUTES);
  off_routes[noff].pattern = pattern;
  off_routes[noff].feature = feature;
  noff++;
  osb_route(methods, pattern, disabled_handler);
}
