/* health.c: component health registry.
 *
 * A handful of components, registered at start: an array in registration
 * order is all the structure needed. Check functions run at request time
 * and only read state their component keeps, so /ready and
 * /health/details do no I/O of their own. */
#include "obs/health.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/config.h"
#include "core/core.h"

#define REASON_MAX 256

typedef struct {
  char *name;
  osb_health_fn fn;               /* NULL: static status below */
  void *ud;
  osb_health_status_t status;     /* static */
  char reason[REASON_MAX];        /* static */
  uint64_t set_ms;                /* wall clock when the static status was set */
  bool critical;
} component_t;

static component_t *components;
static size_t ncomponents, capcomponents;
static bool shutting_down;

const char *osb_health_status_name(osb_health_status_t st) {
  switch (st) {
  case OSB_HEALTH_PASS: return "pass";
  case OSB_HEALTH_WARN: return "warn";
  case OSB_HEALTH_FAIL: return "fail";
  }
  return "fail"; /* an out-of-range value is not healthy */
}

/* The entry for `name`, created at the end if new. */
static component_t *entry(const char *name) {
  osb_assert(name != NULL && *name);
  for (size_t i = 0; i < ncomponents; i++)
    if (strcmp(components[i].name, name) == 0) return &components[i];
  if (ncomponents == capcomponents) {
    capcomponents = capcomponents ? capcomponents * 2 : 8;
    components = osb_realloc(components, capcomponents * sizeof(*components));
  }
  component_t *c = &components[ncomponents++];
  memset(c, 0, sizeof(*c));
  c->name = osb_strdup(name);
  return c;
}

void osb_health_register(const char *component, osb_health_fn fn, void *ud, bool critical) {
  osb_assert(fn != NULL);
  component_t *c = entry(component);
  c->fn = fn;
  c->ud = ud;
  c->critical = critical;
  c->status = OSB_HEALTH_PASS;
  c->reason[0] = 0;
}

void osb_health_set(const char *component, osb_health_status_t st, const char *reason, bool critical) {
  component_t *c = entry(component);
  c->fn = NULL;
  c->ud = NULL;
  c->status = st;
  c->critical = critical;
  snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "");
  c->set_ms = osb_wallclock_ms();
}

void osb_health_set_shutting_down(void) { shutting_down = true; }
bool osb_health_shutting_down(void) { return shutting_down; }

/* Current status of one component; its reason goes to `reason` (REASON_MAX bytes). */
static osb_health_status_t evaluate(const component_t *c, char *reason) {
  if (!c->fn) {
    memcpy(reason, c->reason, REASON_MAX);
    return c->status;
  }
  memset(reason, 0, REASON_MAX);
  osb_health_status_t st = c->fn(c->ud, reason, REASON_MAX);
  reason[REASON_MAX - 1] = 0;
  if (st != OSB_HEALTH_PASS && st != OSB_HEALTH_WARN) st = OSB_HEALTH_FAIL;
  return st;
}

/* A component's weight in the overall status. */
static osb_health_status_t contribution(const component_t *c, osb_health_status_t st) {
  return st == OSB_HEALTH_FAIL && !c->critical ? OSB_HEALTH_WARN : st;
}

static osb_health_status_t worse(osb_health_status_t a, osb_health_status_t b) {
  return a > b ? a : b;
}

bool osb_health_ready(char *reason, size_t reasonlen) {
  if (reason && reasonlen) reason[0] = 0;
  if (shutting_down) {
    if (reason && reasonlen) snprintf(reason, reasonlen, "shutting down");
    return false;
  }
  char why[REASON_MAX];
  for (size_t i = 0; i < ncomponents; i++) {
    const component_t *c = &components[i];
    if (!c->critical) continue;
    if (evaluate(c, why) != OSB_HEALTH_FAIL) continue;
    if (reason && reasonlen)
      snprintf(reason, reasonlen, "%s%s%s", c->name, why[0] ? ": " : "", why);
    return false;
  }
  return true;
}

osb_health_status_t osb_health_overall(void) {
  osb_health_status_t overall = shutting_down ? OSB_HEALTH_WARN : OSB_HEALTH_PASS;
  char why[REASON_MAX];
  for (size_t i = 0; i < ncomponents; i++)
    overall = worse(overall, contribution(&components[i], evaluate(&components[i], why)));
  return overall;
}

/* 2026-01-31T12:34:56.789Z */
static void iso8601(uint64_t ms, char *out, size_t n) {
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t len = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + len, n - len, ".%03uZ", (unsigned)(ms % 1000));
}

json_t *osb_health_details(void) {
  const char *service_id = "osbackend";
  if (osb_cfg != NULL && osb_cfg->cluster_node_id != NULL && *osb_cfg->cluster_node_id)
    service_id = osb_cfg->cluster_node_id;

  json_t *checks = json_object();
  osb_health_status_t overall = shutting_down ? OSB_HEALTH_WARN : OSB_HEALTH_PASS;
  uint64_t now = osb_wallclock_ms();
  char why[REASON_MAX];
  char when[40];
  for (size_t i = 0; i < ncomponents; i++) {
    const component_t *c = &components[i];
    osb_health_status_t st = evaluate(c, why);
    overall = worse(overall, contribution(c, st));
    iso8601(c->fn ? now : c->set_ms, when, sizeof(when));

    json_t *check = json_object();
    json_object_set_new(check, "componentId", json_string(c->name));
    json_object_set_new(check, "componentType", json_string("component"));
    json_object_set_new(check, "status", json_string(osb_health_status_name(st)));
    json_object_set_new(check, "critical", json_boolean(c->critical));
    /* A reason from a check function is not trusted to be UTF-8. */
    if (why[0]) {
      json_t *out = json_string(why);
      json_object_set_new(check, "output", out ? out : json_string("(reason not UTF-8)"));
    }
    json_object_set_new(check, "time", json_string(when));
    json_t *arr = json_array();
    json_array_append_new(arr, check);
    json_object_set_new(checks, c->name, arr);
  }

  json_t *doc = json_object();
  json_object_set_new(doc, "status", json_string(osb_health_status_name(overall)));
  json_object_set_new(doc, "version", json_string(OSB_VERSION));
  json_t *sid = json_string(service_id);
  json_object_set_new(doc, "serviceId", sid ? sid : json_string("osbackend"));
  json_object_set_new(doc, "description", json_string("osbackend"));
  if (shutting_down) json_object_set_new(doc, "output", json_string("shutting down"));
  json_object_set_new(doc, "checks", checks);
  return doc;
}

void osb_health_reset(void) {
  for (size_t i = 0; i < ncomponents; i++) free(components[i].name);
  free(components);
  components = NULL;
  ncomponents = capcomponents = 0;
  shutting_down = false;
}
