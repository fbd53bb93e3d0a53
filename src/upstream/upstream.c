/* upstream.c: named upstreams, their breakers and bulkheads, and the life
 * of a call (see upstream.h).
 *
 * A call moves QUEUED (bulkhead full, FIFO, at most 1 s) → STARTING
 * (admitted: counted in flight, waiting for osb_upstream_flush to hand it to
 * curl, because curl may not be re-entered from its own callbacks) →
 * RUNNING (curl has it) → on_done, or DONE (a result waiting in the done
 * list for the next flush: rejections never call back from inside
 * osb_upstream_call). The module owns every call until its on_done returned
 * or it was cancelled; exactly one of those ends it.
 *
 * Loop integration is one function, osb_upstream_flush(), run as the
 * `upstream` before-sleep step of the core loop (OSB_STEP_UPSTREAM, between
 * the HTTP output and the PostgreSQL flush; docs/architecture.md): calls that
 * handlers started this round reach curl before the loop sleeps. Work queued
 * outside a step wakes the loop (osb_core_wake). */
#include "upstream/internal.h"

#include <jansson.h>
#include <stdlib.h>

#include "core/config.h"
#include "obs/health.h"
#include "obs/log.h"

#define BULKHEAD_WAIT_MS 1000
#define DEFAULT_MAX_BYTES (16u << 20)
#define MAX_OBSERVERS 4

static uv_loop_t *loop;
static uv_timer_t wait_timer, grace_timer;
static bool inited, closed, shutting_down, kick_armed;
static size_t timers_open;
static osb_list_t ups = {&ups, &ups};
static osb_list_t start_list = {&start_list, &start_list};
static osb_list_t done_list = {&done_list, &done_list};
static struct { osb_upstream_state_fn fn; void *ud; } observers[MAX_OBSERVERS];
static size_t nobservers;
static osb_metric_t *f_state, *f_trans, *f_calls, *f_in_flight, *f_queued, *f_latency;

static void pump(osb_upstream_t *u);
static void arm_wait_timer(void);

/* ---- small helpers ---- */

/* The before-sleep step: true when it started or delivered something (a
 * delivery may queue a response for the http step). */
static bool upstream_step(void *ud) {
  OSB_UNUSED(ud);
  kick_armed = false;
  bool work = !osb_list_empty(&start_list) || !osb_list_empty(&done_list);
  if (work) osb_upstream_flush();
  return work;
}

static void kick(void) {
  if (kick_armed || !timers_open) return;
  kick_armed = true;
  osb_core_wake();
}

static double state_value(osb_breaker_state_t st) {
  switch (st) {
    case OSB_BREAKER_CLOSED: return 0;
    case OSB_BREAKER_HALF_OPEN: return 1;
    default: return 2;
  }
}

static void free_call(osb_upstream_call_t *c) {
  free(c->method);
  free(c->url);
  free(c->body);
  free(c->content_type);
  curl_slist_free_all(c->headers);
  osb_buf_free(&c->resp);
  free(c);
}
void osb__call_free(osb_upstream_call_t *c) { free_call(c); }

static void deliver(osb_upstream_call_t *c) {
  osb_upstream_result_t r = {
    .err = c->err,
    .rejected = c->rejected,
    .status = c->status,
    .content_type = c->content_type,
    .body = c->resp.base && !c->stream ? c->resp.base : "",
    .body_len = c->stream ? 0 : c->resp.len,
    .retry_after_s = c->retry_after_s,
    .reason = c->reason ? c->reason : (c->err ? osb_strerror(c->err) : "ok"),
    .latency_ms = osb_now_ms() - c->queued_ms,
    .first_byte_ms = c->first_byte_ms,
  };
  c->cbs->on_done(c->ud, &r);
  free_call(c);
}

/* Queue a finished-before-sending call for the next flush. */
static void reject(osb_upstream_call_t *c, int err, const char *reason, unsigned retry_after) {
  c->err = err;
  c->rejected = true;
  c->reason = reason;
  c->retry_after_s = retry_after ? retry_after : 1;
  c->state = OSB__CALL_DONE;
  if (c->up->m_rejected) osb_series_inc(c->up->m_rejected, 1);
  osb_list_insert_tail(&done_list, &c->deferred);
  kick();
}

static void reject_breaker(osb_upstream_call_t *c, int rc) {
  osb_upstream_t *u = c->up;
  if (rc == OSB_EDENIED) {
    reject(c, OSB_EDENIED, u->disabled_reason ? u->disabled_reason : "disabled", 60);
    return;
  }
  osb_breaker_state_t st = osb__breaker_peek(&u->br, osb_now_ms());
  reject(c, OSB_EUNAVAIL,
         st == OSB_BREAKER_HALF_OPEN ? "breaker half-open: a trial call is running"
         : st == OSB_BREAKER_FORCED_OPEN ? "breaker forced open"
                                         : "breaker open",
         osb__breaker_retry_after(&u->br, osb_now_ms()));
}

static void start(osb_upstream_call_t *c, bool trial) {
  osb_upstream_t *u = c->up;
  c->trial = trial;
  c->state = OSB__CALL_STARTING;
  u->in_flight++;
  osb_series_set(u->m_in_flight, (double)u->in_flight);
  osb_list_insert_tail(&u->running, &c->node);
  osb_list_insert_tail(&start_list, &c->deferred);
  kick();
}

/* Leave the bulkhead (a STARTING or RUNNING call). */
static void release(osb_upstream_call_t *c) {
  osb_upstream_t *u = c->up;
  osb_list_remove(&c->node);
  osb_assert(u->in_flight > 0);
  u->in_flight--;
  osb_series_set(u->m_in_flight, (double)u->in_flight);
}

void osb__upstream_account(osb_upstream_t *u, uint64_t now_ms, bool trial, osb__outcome_t out,
                           bool slow, uint64_t latency_ms) {
  osb__breaker_record(&u->br, now_ms, trial, out, slow);
  switch (out) {
    case OSB__OUT_SUCCESS: osb_series_inc(u->m_ok, 1); break;
    case OSB__OUT_FAILURE: osb_series_inc(u->m_fail, 1); break;
    case OSB__OUT_CANCELLED: osb_series_inc(u->m_cancelled, 1); return;
  }
  if (slow) osb_series_inc(u->m_slow, 1);
  osb_series_observe(u->m_latency, (double)latency_ms / 1000.0);
}

static void account(osb_upstream_call_t *c) {
  osb_upstream_t *u = c->up;
  uint64_t now = osb_now_ms();
  osb__outcome_t out;
  if (c->cancelled) out = OSB__OUT_CANCELLED;
  else if (c->err == 0 || c->err == OSB_ETOOBIG)
    out = (c->status >= 500 || c->status == 429) ? OSB__OUT_FAILURE : OSB__OUT_SUCCESS;
  else out = OSB__OUT_FAILURE;
  if (c->err == OSB_ETIMEOUT) osb_series_inc(u->m_timeout, 1);
  uint64_t fb = c->first_byte_ms ? c->first_byte_ms : (c->start_ms ? now - c->start_ms : 0);
  bool slow = fb > (uint64_t)u->br.cfg.slow_call_ms;
  osb__upstream_account(u, now, c->trial, out, slow, now - c->queued_ms);
}

/* ---- breaker transitions: log once, count, tell the observers ---- */

static void on_transition(void *ud, osb__breaker_t *b, osb_breaker_state_t from, osb_breaker_state_t to,
                          const char *reason) {
  osb_upstream_t *u = ud;
  osb_log_fields(to == OSB_BREAKER_OPEN ? OSB_LOG_WARN : OSB_LOG_INFO, "upstream", "breaker state changed",
                 json_pack("{s:s, s:s, s:s, s:s}", "upstream", u->name, "from", osb_breaker_state_name(from),
                           "to", osb_breaker_state_name(to), "reason", reason));
  if (u->m_state) osb_series_set(u->m_state, state_value(to));
  if (f_trans) osb_series_inc(osb_metric_series2(f_trans, u->name, osb_breaker_state_name(to)), 1);
  for (size_t i = 0; i < nobservers; i++) observers[i].fn(observers[i].ud, u, from, to, reason);
}

/* ---- health ---- */

static osb_health_status_t health_fn(void *ud, char *reason, size_t len) {
  osb_upstream_t *u = ud;
  uint64_t now = osb_now_ms();
  osb_breaker_state_t st = osb__breaker_peek(&u->br, now);
  switch (st) {
    case OSB_BREAKER_DISABLED:
      snprintf(reason, len, "%s", u->disabled_reason ? u->disabled_reason : "disabled");
      return OSB_HEALTH_WARN;
    case OSB_BREAKER_CLOSED:
      snprintf(reason, len, "breaker closed, %zu in flight", u->in_flight);
      return OSB_HEALTH_PASS;
    case OSB_BREAKER_HALF_OPEN:
      snprintf(reason, len, "breaker half-open: trial calls (%s)", u->br.reason);
      return OSB_HEALTH_WARN;
    case OSB_BREAKER_OPEN:
      snprintf(reason, len, "breaker open: %s", u->br.reason);
      return OSB_HEALTH_WARN;
    case OSB_BREAKER_FORCED_OPEN:
      snprintf(reason, len, "breaker forced open: %s", u->br.reason);
      return OSB_HEALTH_WARN;
  }
  return OSB_HEALTH_WARN;
}

/* ---- registry ---- */

static void families(void) {
  if (f_state) return;
  f_state = osb_metric_gauge("osb_breaker_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)", "upstream");
  f_trans = osb_metric_counter("osb_breaker_transitions_total", "Circuit breaker transitions by target state", "upstream,to");
  f_calls = osb_metric_counter("osb_upstream_calls_total", "Upstream calls by outcome", "upstream,outcome");
  f_in_flight = osb_metric_gauge("osb_upstream_in_flight", "Upstream calls in flight", "upstream");
  f_queued = osb_metric_gauge("osb_upstream_queued", "Upstream calls waiting for a bulkhead slot", "upstream");
  f_latency = osb_metric_histogram("osb_upstream_latency_seconds", "Upstream call latency", "upstream", NULL, 0);
}

osb_upstream_t *osb_upstream_register(const char *name, const char *base_url, int max_concurrency,
                                      const char *disabled_reason) {
  osb_assert(osb_upstream_get(name) == NULL);
  families();
  osb_upstream_t *u = osb_calloc(1, sizeof(*u));
  u->name = osb_strdup(name);
  if (base_url) {
    char red[512];
    osb_config_redact_url(base_url, red, sizeof(red));
    u->base_url = osb_strdup(red);
  }
  u->disabled_reason = disabled_reason ? osb_strdup(disabled_reason) : NULL;
  u->max_concurrency = max_concurrency > 0 ? max_concurrency : 1;
  osb_list_init(&u->waiters);
  osb_list_init(&u->running);
  const osb_config_t *cfg = osb_cfg;
  osb__breaker_cfg_t bc = {
    .min_calls = cfg ? cfg->breaker_min_calls : 5,
    .failure_rate = cfg ? cfg->breaker_failure_rate : 50,
    .window_s = cfg ? cfg->breaker_window_s : 30,
    .slow_call_ms = cfg ? cfg->breaker_slow_call_ms : 10000,
    .open_ms = cfg ? cfg->breaker_open_ms : 30000,
  };
  u->m_state = osb_metric_series1(f_state, name);
  u->m_in_flight = osb_metric_series1(f_in_flight, name);
  u->m_queued = osb_metric_series1(f_queued, name);
  u->m_latency = osb_metric_series1(f_latency, name);
  u->m_ok = osb_metric_series2(f_calls, name, "success");
  u->m_fail = osb_metric_series2(f_calls, name, "failure");
  u->m_timeout = osb_metric_series2(f_calls, name, "timeout");
  u->m_rejected = osb_metric_series2(f_calls, name, "rejected");
  u->m_cancelled = osb_metric_series2(f_calls, name, "cancelled");
  u->m_slow = osb_metric_series2(f_calls, name, "slow");
  osb__breaker_init(&u->br, &bc, on_transition, u);
  if (disabled_reason) {
    u->br.state = OSB_BREAKER_DISABLED;    /* from the start: not a transition */
    snprintf(u->br.reason, sizeof(u->br.reason), "%s", disabled_reason);
  }
  osb_series_set(u->m_state, state_value(u->br.state));
  osb_list_insert_tail(&ups, &u->node);
  osb_health_register(name, health_fn, u, false);
  return u;
}

osb_upstream_t *osb_upstream_get(const char *name) {
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    if (strcmp(u->name, name) == 0) return u;
  }
  return NULL;
}

const char *osb_upstream_name(const osb_upstream_t *u) { return u->name; }
bool osb_upstream_enabled(const osb_upstream_t *u) { return u->br.state != OSB_BREAKER_DISABLED; }
const char *osb_upstream_disabled_reason(const osb_upstream_t *u) {
  return u->br.state == OSB_BREAKER_DISABLED ? u->disabled_reason : NULL;
}
osb_breaker_state_t osb_upstream_state(osb_upstream_t *u) { return osb__breaker_peek(&u->br, osb_now_ms()); }
unsigned osb_upstream_retry_after(osb_upstream_t *u) { return osb__breaker_retry_after(&u->br, osb_now_ms()); }
size_t osb_upstream_in_flight(const osb_upstream_t *u) { return u->in_flight; }

void osb_upstream_force_open(osb_upstream_t *u, bool on, const char *reason) {
  if (u->br.state == OSB_BREAKER_DISABLED) return;
  osb__breaker_force(&u->br, on ? OSB_BREAKER_FORCED_OPEN : OSB_BREAKER_CLOSED,
                     reason ? reason : (on ? "forced open by an operator" : "returned to automatic"));
}

void osb_upstream_on_state(osb_upstream_state_fn fn, void *ud) {
  osb_assert(nobservers < MAX_OBSERVERS);
  observers[nobservers].fn = fn;
  observers[nobservers].ud = ud;
  nobservers++;
}

json_t *osb_upstream_json(osb_upstream_t *u) {
  uint64_t now = osb_now_ms();
  uint32_t wc, wb;
  osb__breaker_window(&u->br, now, &wc, &wb);
  osb_breaker_state_t st = osb__breaker_peek(&u->br, now);
  json_t *j = json_pack("{s:s, s:b, s:s, s:I, s:I, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:i, s:s}",
                        "name", u->name, "enabled", osb_upstream_enabled(u), "breaker", osb_breaker_state_name(st),
                        "in_flight", (json_int_t)u->in_flight, "queued", (json_int_t)u->queued,
                        "max_concurrency", u->max_concurrency, "calls", (json_int_t)u->br.calls,
                        "successes", (json_int_t)u->br.successes, "failures", (json_int_t)u->br.failures,
                        "slow", (json_int_t)u->br.slow, "rejected", (json_int_t)u->br.rejected,
                        "cancelled", (json_int_t)u->br.cancelled, "window_calls", (int)wc,
                        "window_failures", (int)wb, "state_reason", u->br.reason);
  if (u->disabled_reason && st == OSB_BREAKER_DISABLED)
    json_object_set_new(j, "reason", json_string(u->disabled_reason));
  if (st == OSB_BREAKER_OPEN)
    json_object_set_new(j, "open_ms_remaining", json_integer((json_int_t)(u->br.open_until_ms - now)));
  if (u->base_url) json_object_set_new(j, "base_url", json_string(u->base_url));
  return j;
}

json_t *osb_upstreams_json(void) {
  json_t *arr = json_array();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) json_array_append_new(arr, osb_upstream_json(osb_container_of(pos, osb_upstream_t, node)));
  return json_pack("{s:o}", "upstreams", arr);
}

/* ---- calls ---- */

static void admit(osb_upstream_call_t *c) {
  osb_upstream_t *u = c->up;
  osb_breaker_state_t st = u->br.state;
  /* Open and disabled breakers reject before the bulkhead: fast, and no
   * slot is taken. */
  if (st == OSB_BREAKER_DISABLED || st == OSB_BREAKER_FORCED_OPEN ||
      (st == OSB_BREAKER_OPEN && osb_now_ms() < u->br.open_until_ms) ||
      (st == OSB_BREAKER_HALF_OPEN && u->br.trial_busy)) {
    bool trial;
    reject_breaker(c, osb__breaker_admit(&u->br, osb_now_ms(), &trial));
    return;
  }
  if (u->in_flight < (size_t)u->max_concurrency && osb_list_empty(&u->waiters)) {
    bool trial;
    int rc = osb__breaker_admit(&u->br, osb_now_ms(), &trial);
    if (rc) reject_breaker(c, rc);
    else start(c, trial);
    return;
  }
  c->state = OSB__CALL_QUEUED;
  osb_list_insert_tail(&u->waiters, &c->node);
  u->queued++;
  osb_series_set(u->m_queued, (double)u->queued);
  arm_wait_timer();
}

static void unqueue(osb_upstream_call_t *c) {
  osb_list_remove(&c->node);
  c->up->queued--;
  osb_series_set(c->up->m_queued, (double)c->up->queued);
}

/* Slots freed: admit waiters in order while there is room. */
static void pump(osb_upstream_t *u) {
  while (u->in_flight < (size_t)u->max_concurrency && !osb_list_empty(&u->waiters)) {
    osb_upstream_call_t *c = osb_container_of(u->waiters.next, osb_upstream_call_t, node);
    unqueue(c);
    bool trial;
    int rc = osb__breaker_admit(&u->br, osb_now_ms(), &trial);
    if (rc) reject_breaker(c, rc);
    else start(c, trial);
  }
  arm_wait_timer();
}

static void on_wait_timer(uv_timer_t *t) {
  uint64_t now = osb_now_ms();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    while (!osb_list_empty(&u->waiters)) {
      osb_upstream_call_t *c = osb_container_of(u->waiters.next, osb_upstream_call_t, node);
      if (now - c->queued_ms < BULKHEAD_WAIT_MS) break;
      unqueue(c);
      reject(c, OSB_EUNAVAIL, "bulkhead full: too many calls in flight", 1);
    }
  }
  arm_wait_timer();
}

static void arm_wait_timer(void) {
  if (!timers_open) return;
  uint64_t now = osb_now_ms(), next = UINT64_MAX;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    if (osb_list_empty(&u->waiters)) continue;
    osb_upstream_call_t *c = osb_container_of(u->waiters.next, osb_upstream_call_t, node);
    uint64_t due = c->queued_ms + BULKHEAD_WAIT_MS;
    if (due < next) next = due;
  }
  if (next == UINT64_MAX) uv_timer_stop(&wait_timer);
  else uv_timer_start(&wait_timer, on_wait_timer, next > now ? next - now : 0, 0);
}

osb_upstream_call_t *osb_upstream_call(osb_upstream_t *u, const osb_upstream_req_t *req,
                                       const osb_upstream_cbs_t *cbs, void *ud) {
  osb_assert(u && req && req->url && cbs && cbs->on_done);
  osb_upstream_call_t *c = osb_calloc(1, sizeof(*c));
  osb_list_init(&c->node);
  osb_list_init(&c->deferred);
  c->up = u;
  c->cbs = cbs;
  c->ud = ud;
  c->method = osb_strdup(req->method ? req->method : req->body ? "POST" : "GET");
  c->url = osb_strdup(req->url);
  if (req->body) {
    c->body = osb_malloc(req->body_len + 1);
    memcpy(c->body, req->body, req->body_len);
    c->body[req->body_len] = 0;
    c->body_len = req->body_len;
  }
  for (const char *const *h = req->headers; h && *h; h++) c->headers = curl_slist_append(c->headers, *h);
  c->max_bytes = req->max_response_bytes ? req->max_response_bytes : DEFAULT_MAX_BYTES;
  c->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : (osb_cfg ? osb_cfg->upstream_timeout_ms : 30000);
  c->stream = req->stream;
  c->queued_ms = osb_now_ms();
  if (closed || !inited) {
    /* The module is gone (late callers during shutdown): the one case where
     * on_done runs inside the call. */
    c->err = OSB_EUNAVAIL;
    c->rejected = true;
    c->reason = "shutting down";
    c->retry_after_s = 1;
    deliver(c);
    return NULL;
  }
  if (shutting_down) reject(c, OSB_EUNAVAIL, "shutting down", 1);
  else admit(c);
  return c;
}

void osb__call_finished(osb_upstream_call_t *c) {
  osb_upstream_t *u = c->up;
  release(c);
  account(c);
  if (c->cancelled) free_call(c);
  else deliver(c);
  pump(u);
}

void osb_upstream_cancel(osb_upstream_call_t *c) {
  if (!c) return;
  osb_upstream_t *u = c->up;
  switch (c->state) {
    case OSB__CALL_QUEUED:
      unqueue(c);
      osb_series_inc(u->m_cancelled, 1);
      free_call(c);
      arm_wait_timer();
      return;
    case OSB__CALL_STARTING:
      osb_list_remove(&c->deferred);
      release(c);
      c->cancelled = true;
      account(c);
      free_call(c);
      pump(u);
      return;
    case OSB__CALL_RUNNING:
      c->cancelled = true;
      if (c->in_cb) return;   /* the write callback returns 0, finish() frees it */
      osb__client_abort(c);
      release(c);
      account(c);
      free_call(c);
      pump(u);
      return;
    case OSB__CALL_DONE:
      osb_list_remove(&c->deferred);
      free_call(c);
      return;
  }
  osb_assert(!"bad call state");
}

void osb_upstream_flush(void) {
  kick_armed = false;
  while (!osb_list_empty(&start_list)) {
    osb_upstream_call_t *c = osb_container_of(start_list.next, osb_upstream_call_t, deferred);
    osb_list_remove(&c->deferred);
    c->state = OSB__CALL_RUNNING;
    if (osb__client_start(c) != 0) {
      c->err = OSB_EUNAVAIL;
      c->reason = "the HTTP client could not start the call";
      osb__call_finished(c);
    }
  }
  while (!osb_list_empty(&done_list)) {
    osb_upstream_call_t *c = osb_container_of(done_list.next, osb_upstream_call_t, deferred);
    osb_list_remove(&c->deferred);
    deliver(c);
  }
}

/* ---- lifecycle ---- */

static void on_timer_closed(uv_handle_t *h) { timers_open--; }

/* SIGTERM (core's shutdown hooks, after http stopped accepting, i.e.
 * after the drain window): calls still running at 80 % of what is left of
 * SHUTDOWN_TIMEOUT_MS fail with 503, so their requests answer before the
 * connections are cut. */
static void upstream_shutdown_hook(void *ud) {
  OSB_UNUSED(ud);
  uint64_t left = osb_cfg ? (uint64_t)(osb_cfg->shutdown_timeout_ms - osb_cfg->shutdown_drain_delay_ms) : 0;
  osb_upstream_shutdown(left * 4 / 5);
}

int osb_upstream_init(uv_loop_t *l) {
  if (inited) return 0;
  loop = l;
  int rc = osb__client_init(l);
  if (rc) return rc;
  uv_timer_init(l, &wait_timer);
  uv_timer_init(l, &grace_timer);
  timers_open = 2;
  osb_core_step_add("upstream", OSB_STEP_UPSTREAM, upstream_step, NULL);
  osb_core_on_shutdown("upstream", OSB_SHUTDOWN_UPSTREAM, upstream_shutdown_hook, NULL);
  inited = true;
  closed = shutting_down = kick_armed = false;
  const osb_config_t *cfg = osb_cfg;
  if (cfg && !osb_upstream_get("llm"))
    osb_upstream_register("llm", cfg->llm_base_url, cfg->llm_max_concurrency,
                          cfg->llm_api_key ? NULL : "disabled: LLM_API_KEY not set");
  if (cfg && !osb_upstream_get("tts"))
    osb_upstream_register("tts", cfg->elevenlabs_base_url, cfg->tts_max_concurrency,
                          cfg->elevenlabs_api_key ? NULL : "disabled: ELEVENLABS_API_KEY not set");
  return 0;
}

static void on_grace(uv_timer_t *t) {
  size_t n = 0;
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    n += u->in_flight + u->queued;
  }
  if (n) osb_log(OSB_LOG_WARN, "upstream", "shutdown: failing %zu upstream calls still running", n);
  osb_upstream_abort_all();
}

void osb_upstream_shutdown(uint64_t grace_ms) {
  if (!inited || closed || shutting_down) return;
  shutting_down = true;
  uv_timer_start(&grace_timer, on_grace, grace_ms, 0);
}

void osb_upstream_abort_all(void) {
  if (!inited) return;
  shutting_down = true;
  osb_list_t *pos, *tmp, *cp, *ct;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    osb_list_foreach_safe(cp, ct, &u->waiters) {
      osb_upstream_call_t *c = osb_container_of(cp, osb_upstream_call_t, node);
      unqueue(c);
      reject(c, OSB_EUNAVAIL, "shutting down", 1);
    }
    osb_list_foreach_safe(cp, ct, &u->running) {
      osb_upstream_call_t *c = osb_container_of(cp, osb_upstream_call_t, node);
      if (c->state == OSB__CALL_STARTING) osb_list_remove(&c->deferred);
      else osb__client_abort(c);
      release(c);
      c->err = OSB_EUNAVAIL;
      c->reason = "shutting down";
      c->retry_after_s = 1;
      bool was = c->cancelled;
      c->cancelled = true;         /* neither success nor failure for the breaker */
      account(c);
      c->cancelled = was;
      c->state = OSB__CALL_DONE;
      if (c->cancelled) free_call(c);
      else osb_list_insert_tail(&done_list, &c->deferred);
    }
  }
  arm_wait_timer();
  /* Deliver now: callers answer their requests before the server's deadline. */
  osb_upstream_flush();
}

void osb_upstream_close(void) {
  if (!inited || closed) return;
  osb_upstream_abort_all();
  osb_upstream_flush();      /* anything the callbacks queued (rejected: shutting down) */
  closed = true;
  osb_core_step_remove("upstream");
  uv_timer_stop(&wait_timer);
  uv_timer_stop(&grace_timer);
  uv_close((uv_handle_t *)&wait_timer, on_timer_closed);
  uv_close((uv_handle_t *)&grace_timer, on_timer_closed);
  osb__client_close();
}

void osb_upstream_dispose(void) {
  if (inited && !closed) osb_upstream_close();
  osb__client_dispose();
  osb_list_t *pos, *tmp;
  osb_list_foreach_safe(pos, tmp, &ups) {
    osb_upstream_t *u = osb_container_of(pos, osb_upstream_t, node);
    osb_list_remove(&u->node);
    osb__breaker_dispose(&u->br);
    free(u->name);
    free(u->base_url);
    free(u->disabled_reason);
    free(u);
  }
  nobservers = 0;
  f_state = f_trans = f_calls = f_in_flight = f_queued = f_latency = NULL;
  inited = false;
  closed = false;
  shutting_down = false;
}
