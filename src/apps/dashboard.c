/* dashboard.c: the dashboard page, /client.js, and the once-a-second
 * sampler behind `dashboard:metrics`. */
#include "apps/dashboard.h"
#include "apps/features.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "apps/assets.h"
#include "auth/auth.h"
#include "db/db.h"
#include "http/http.h"
#include "http/ws.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "realtime/realtime.h"

#define CHANNEL "dashboard:metrics"
#define HISTORY_MAX 120          /* as many as the channel's in-memory history */
#define HISTORY_AGE_MS 120000u
#define MAX_BUCKETS 64

/* What the previous tick read, to turn totals into per-second figures. */
typedef struct snap {
  bool valid;
  uint64_t at_ns;                /* uv_hrtime */
  size_t nbuckets;
  uint64_t buckets[MAX_BUCKETS]; /* per-bucket request counts over all series */
  double errors;                 /* 5xx responses */
  double cache_hits, cache_misses;
  double cpu_s;
} snap_t;

/* One published sample, kept for GET /api/dashboard/history. */
typedef struct hist {
  uint64_t seq;
  uint64_t ts_ms;
  char *text;                    /* the message's compact JSON */
} hist_t;

static struct {
  uv_timer_t timer;
  bool timer_on;
  snap_t prev;
  hist_t ring[HISTORY_MAX];
  size_t head, len;
} D;

/* ---- reading the registries ---- */

static void take_snap(snap_t *s) {
  memset(s, 0, sizeof(*s));
  s->valid = true;
  s->at_ns = uv_hrtime();
  osb_metric_t *http = osb_metric_find("http_server_request_duration_seconds");
  if (http) {
    size_t nb = 0;
    osb_metric_bounds(http, &nb);
    if (nb + 1 <= MAX_BUCKETS) {
      s->nbuckets = nb + 1;
      osb_metric_bucket_counts(http, s->buckets, s->nbuckets);
    }
    for (osb_series_t *se = osb_metric_next_series(http, NULL); se; se = osb_metric_next_series(http, se)) {
      const char *status = osb_series_label(se, 2);
      if (status && status[0] == '5') s->errors += osb_series_value(se);
    }
  }
  osb_db_stats_t st;
  memset(&st, 0, sizeof(st));
  osb_db_stats(&st);
  s->cache_hits = (double)st.cache_hits;
  s->cache_misses = (double)st.cache_misses;
  s->cpu_s = osb_process_cpu_seconds();
}

/* Three decimals are plenty on a dashboard and keep the frames short. */
static json_t *num(double v) {
  if (!isfinite(v)) v = 0;
  return json_real(round(v * 1000.0) / 1000.0);
}

const char *osb_dashboard_breaker(const char *upstream, const json_t *checks) {
  osb_metric_t *m = osb_metric_find("osb_breaker_state");
  if (m) {
    for (osb_series_t *s = osb_metric_next_series(m, NULL); s; s = osb_metric_next_series(m, s)) {
      const char *u = osb_series_label(s, 0);
      if (!u || strcmp(u, upstream) != 0) continue;
      double v = osb_series_value(s);
      return v >= 2 ? "open" : v >= 1 ? "half_open" : "closed";
    }
  }
  const json_t *c = checks ? json_array_get(json_object_get(checks, upstream), 0) : NULL;
  if (c) {
    const char *status = json_string_value(json_object_get(c, "status"));
    const char *output = json_string_value(json_object_get(c, "output"));
    if (output && strncmp(output, "disabled", 8) == 0) return "disabled";
    if (status && strcmp(status, "pass") == 0) return "closed";
    if (status && strcmp(status, "warn") == 0) return "half_open";
    if (status && strcmp(status, "fail") == 0) return "open";
  }
  return "disabled";
}

json_t *osb_dashboard_sample(void) {
  snap_t cur;
  take_snap(&cur);
  snap_t *p = &D.prev;
  bool have = p->valid && p->nbuckets == cur.nbuckets && cur.at_ns > p->at_ns;
  double secs = have ? (double)(cur.at_ns - p->at_ns) / 1e9 : 0;

  double rps = 0, p50 = 0, p95 = 0, p99 = 0, err_rate = 0;
  json_t *hit_ratio = json_null();
  double cpu_pct = 0;
  if (have && secs > 0) {
    uint64_t delta[MAX_BUCKETS];
    uint64_t total = 0;
    for (size_t i = 0; i < cur.nbuckets; i++) {
      delta[i] = cur.buckets[i] >= p->buckets[i] ? cur.buckets[i] - p->buckets[i] : 0;
      total += delta[i];
    }
    osb_metric_t *http = osb_metric_find("http_server_request_duration_seconds");
    size_t nb = 0;
    const double *bounds = http ? osb_metric_bounds(http, &nb) : NULL;
    if (total && bounds && nb + 1 == cur.nbuckets) {
      p50 = osb_histogram_quantile(bounds, nb, delta, 0.50) * 1000.0;
      p95 = osb_histogram_quantile(bounds, nb, delta, 0.95) * 1000.0;
      p99 = osb_histogram_quantile(bounds, nb, delta, 0.99) * 1000.0;
      double e = cur.errors - p->errors;
      err_rate = e > 0 ? e / (double)total : 0;
    }
    rps = (double)total / secs;
    double h = cur.cache_hits - p->cache_hits, m = cur.cache_misses - p->cache_misses;
    if (h + m > 0) {
      json_decref(hit_ratio);
      hit_ratio = num(h / (h + m));
    }
    cpu_pct = (cur.cpu_s - p->cpu_s) / secs * 100.0;
  }
  D.prev = cur;

  osb_db_stats_t st;
  memset(&st, 0, sizeof(st));
  osb_db_stats(&st);
  json_t *details = osb_health_details();
  json_t *checks = json_object_get(details, "checks");
  json_t *components = json_object();
  const char *name;
  json_t *v;
  json_object_foreach(checks, name, v) {
    const char *status = json_string_value(json_object_get(json_array_get(v, 0), "status"));
    json_object_set_new(components, name, json_string(status ? status : "fail"));
  }
  json_t *j = json_pack(
      "{s:s, s:I, s:{s:o, s:o, s:o, s:o, s:o}, s:{s:i, s:i, s:i, s:i}, s:{s:I}, s:{s:o},"
      " s:{s:o, s:o}, s:{s:s, s:s}, s:o}",
      "type", "metrics", "ts", (json_int_t)osb_wallclock_ms(),
      "http", "rps", num(rps), "p50_ms", num(p50), "p95_ms", num(p95), "p99_ms", num(p99),
      "error_rate", num(err_rate),
      "db", "active", st.active, "idle", st.idle, "max", st.max, "waiting", st.waiting,
      "ws", "connections", (json_int_t)osb_ws_count(),
      "cache", "hit_ratio", hit_ratio,
      "process", "rss_bytes", num(osb_process_rss_bytes()), "cpu_pct", num(cpu_pct),
      "breakers", "llm", osb_dashboard_breaker("llm", checks), "tts", osb_dashboard_breaker("tts", checks),
      "components", components);
  json_decref(details);
  osb_assert(j);
  return j;
}

/* ---- history (GET /api/dashboard/history) ---- */

static void hist_clear(void) {
  for (size_t i = 0; i < D.len; i++) free(D.ring[(D.head + i) % HISTORY_MAX].text);
  D.head = D.len = 0;
}

static void hist_push(uint64_t seq, uint64_t ts_ms, char *text) {
  /* The channel restarts its seq at 0 after an idle spell longer than its
   * history: older samples would then carry seqs from another life. */
  if (D.len && D.ring[(D.head + D.len - 1) % HISTORY_MAX].seq >= seq) hist_clear();
  if (D.len == HISTORY_MAX) {
    free(D.ring[D.head].text);
    D.head = (D.head + 1) % HISTORY_MAX;
    D.len--;
  }
  D.ring[(D.head + D.len) % HISTORY_MAX] = (hist_t){seq, ts_ms, text};
  D.len++;
}

typedef struct pending {
  uint64_t ts_ms;
  char *text;
} pending_t;

static void published(void *ud, int err, uint64_t seq) {
  pending_t *pd = ud;
  if (err == 0) {
    hist_push(seq, pd->ts_ms, pd->text);
  } else {
    osb_log(OSB_LOG_WARN, "dashboard", "publishing a sample failed: %s", osb_strerror(err));
    free(pd->text);
  }
  free(pd);
}

static void publish_sample(void) {
  json_t *j = osb_dashboard_sample();
  uint64_t ts = (uint64_t)json_integer_value(json_object_get(j, "ts"));
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  pending_t *pd = osb_malloc(sizeof(*pd));
  pd->ts_ms = ts;
  pd->text = text;
  osb_rt_publish_text(CHANNEL, text, strlen(text), published, pd);
}

static void on_tick(uv_timer_t *t) {
  if (osb_rt_subscribers(CHANNEL) == 0) {
    D.prev.valid = false;
    return;
  }
  if (!D.prev.valid) {
    take_snap(&D.prev);   /* the first figures cover the next whole second */
    return;
  }
  publish_sample();
}

static void get_history(osb_req_t *req) {
  if (!osb_auth_require(req, OSB_ROLE_ADMIN, get_history)) return;
  uint64_t now = osb_wallclock_ms();
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_append(&b, "{\"channel\":\"" CHANNEL "\",\"items\":[", strlen("{\"channel\":\"" CHANNEL "\",\"items\":["));
  bool first = true;
  for (size_t i = 0; i < D.len; i++) {
    const hist_t *h = &D.ring[(D.head + i) % HISTORY_MAX];
    if (h->ts_ms + HISTORY_AGE_MS < now) continue;
    char head[64];
    int n = snprintf(head, sizeof(head), "%s{\"seq\":%llu,\"data\":", first ? "" : ",",
                     (unsigned long long)h->seq);
    osb_buf_append(&b, head, (size_t)n);
    osb_buf_append(&b, h->text, strlen(h->text));
    osb_buf_append(&b, "}", 1);
    first = false;
  }
  osb_buf_append(&b, "]}", 2);
  osb_res_header(req, "Cache-Control", "no-store");
  osb_res_send(req, 200, "application/json", b.base, b.len);
  osb_buf_free(&b);
}

/* ---- the page and the client ---- */

/* No inline script or style, no eval: everything the page runs comes from
 * this origin's embedded files. connect-src 'self' covers ws:/wss: to the
 * same host (CSP Level 3). */
static const char CSP[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

static const osb_asset_t *asset_for(const char *path) {
  for (const osb_asset_t *a = osb_assets; a->url; a++)
    if (strcmp(a->url, path) == 0) return a;
  return NULL;
}

static void get_asset(osb_req_t *req) {
  const osb_asset_t *a = asset_for(osb_req_route(req));
  osb_assert(a);
  osb_res_header(req, "Content-Security-Policy", CSP);
  osb_res_header(req, "Cache-Control", "no-cache");
  osb_res_send(req, 200, a->content_type, a->data, a->len);
}

void osb_dashboard_routes(void) {
  /* The embedded files (apps/assets.h), by literal pattern so the route
   * table can be read from the sources (the OpenAPI test): the page is the
   * `dashboard` feature (DISABLE); /client.js serves every app. */
  static const char *const page[] = { "/dashboard", "/dashboard/app.js", "/dashboard/app.css" };
  size_t n = 0;
  for (const osb_asset_t *a = osb_assets; a->url; a++) n++;
  osb_assert(n == OSB_ARRAY_LEN(page) + 1 && asset_for("/client.js"));
  for (size_t i = 0; i < OSB_ARRAY_LEN(page); i++) osb_assert(asset_for(page[i]));
  osb_feature_route("dashboard", OSB_GET, "/dashboard", get_asset);
  osb_feature_route("dashboard", OSB_GET, "/dashboard/app.js", get_asset);
  osb_feature_route("dashboard", OSB_GET, "/dashboard/app.css", get_asset);
  osb_route(OSB_GET, "/client.js", get_asset);
  osb_feature_route("dashboard", OSB_GET, "/api/dashboard/history", get_history);
}

void osb_dashboard_start(struct uv_loop_s *loop) {
  if (D.timer_on) return;
  uv_timer_init(loop, &D.timer);
  uv_timer_start(&D.timer, on_tick, 1000, 1000);
  uv_unref((uv_handle_t *)&D.timer);
  D.timer_on = true;
}

void osb_dashboard_stop(void) {
  if (D.timer_on) {
    uv_timer_stop(&D.timer);
    if (!uv_is_closing((uv_handle_t *)&D.timer)) uv_close((uv_handle_t *)&D.timer, NULL);
    D.timer_on = false;
  }
  hist_clear();
  D.prev.valid = false;
}
