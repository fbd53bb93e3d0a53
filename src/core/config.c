/* config.c: every setting in one table, validated once at start.
 *
 * Each row (redis's standardConfig, pgbouncer's CF_ABS) names the variable,
 * its type and bounds, where it lives in osb_config_t, its default as text
 * and whether it is a secret. Defaults go through the same parser as user
 * values, so a row cannot carry a default its own rules would reject.
 *
 * Loading never touches the process environment: the .env file is parsed
 * into a private list and consulted only for variables the environment
 * leaves unset, so nothing leaks into child processes or other modules. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

const osb_config_t *osb_cfg;

_Static_assert(sizeof(osb_logfmt_t) == sizeof(int), "ENUM rows store an int");

/* ---- string checks (STRING rows) ---- */

static bool only_chars(const char *s, const char *extra) {
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr(extra, *s)) return false;
  return true;
}

static const char *check_host(const char *v, char **norm) {
  return only_chars(v, ".:-_%") ? NULL : "must be an IP address or host name";
}

static const char *check_domain(const char *v, char **norm) {
  if (!only_chars(v, ".-") || v[strlen(v) - 1] == '.')
    return "must be a cookie domain like .example.com";
  return NULL;
}

static const char *check_node_id(const char *v, char **norm) {
  return only_chars(v, "._:-") ? NULL : "must use only A-Z a-z 0-9 . _ : -";
}

/* One origin: http(s)://host[:port], nothing after. Browsers send exactly
 * this in Origin, so a trailing slash or path would never match. */
static bool origin_ok(const char *s, size_t n) {
  size_t skip;
  if (n > 7 && strncmp(s, "http://", 7) == 0) skip = 7;
  else if (n > 8 && strncmp(s, "https://", 8) == 0) skip = 8;
  else return false;
  for (size_t i = skip; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr(".-:[]", s[i])) return false;
  return true;
}

static const char *check_origins(const char *v, char **norm) {
  osb_buf_t out = OSB_BUF_INIT;
  const char *p = v;
  while (*p) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (a < b) {
      if (!origin_ok(a, (size_t)(b - a))) {
        osb_buf_free(&out);
        return "must be a comma list of origins like https://app.example.com (scheme://host[:port], no path)";
      }
      if (out.len) osb_buf_puts(&out, ",");
      osb_buf_append(&out, a, (size_t)(b - a));
    }
    p = comma ? comma + 1 : end;
  }
  if (out.len == 0) {
    osb_buf_free(&out);
    return "must list at least one origin";
  }
  *norm = out.base;
  return NULL;
}

/* DISABLE: a comma list of the feature names apps/features.c knows. */
static const char *const feature_names[] = {"agents", "voice", "crm", "market_writes", "dashboard", NULL};

static const char *check_features(const char *v, char **norm) {
  osb_buf_t out = OSB_BUF_INIT;
  const char *p = v;
  while (*p) {
    const char *comma = strchr(p, ',');
    const char *end = comma ? comma : p + strlen(p);
    const char *a = p, *b = end;
    while (a < b && isspace((unsigned char)*a)) a++;
    while (b > a && isspace((unsigned char)b[-1])) b--;
    if (a < b) {
      bool known = false;
      for (int i = 0; feature_names[i]; i++)
        if (strlen(feature_names[i]) == (size_t)(b - a) && strncmp(feature_names[i], a, (size_t)(b - a)) == 0)
          known = true;
      if (!known) {
        osb_buf_free(&out);
        return "must be a comma list of agents, voice, crm, market_writes, dashboard";
      }
      if (out.len) osb_buf_puts(&out, ",");
      osb_buf_append(&out, a, (size_t)(b - a));
    }
    p = comma ? comma + 1 : end;
  }
  if (out.len == 0) {
    osb_buf_free(&out);
    return "must name at least one feature (agents, voice, crm, market_writes, dashboard)";
  }
  *norm = out.base;
  return NULL;
}

/* ---- the table ---- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"json", "text", NULL};
static const char *const cluster_buses[] = {"auto", "local", "postgres", NULL};
static const char *const pg_schemes[] = {"postgres://", "postgresql://", NULL};
static const char *const http_schemes[] = {"https://", "http://", NULL};
static const char *const llm_providers[] = {"openai", "anthropic", NULL};
#define LLM_OPENAI_URL "https://api.openai.com/v1"
#define LLM_OPENAI_MODEL "gpt-4o-mini"
#define LLM_ANTHROPIC_URL "https://api.anthropic.com/v1"
#define LLM_ANTHROPIC_MODEL "claude-3-5-haiku-latest"

#define OFF(f) offsetof(osb_config_t, f)
#define INT(n, f, d, lo, hi, desc) {n, OSB_CFG_INT, OFF(f), d, lo, hi, NULL, NULL, 0, desc}
#define PORT(n, f, d, desc) {n, OSB_CFG_PORT, OFF(f), d, 0, 65535, NULL, NULL, 0, desc}
#define BOOL(n, f, d, desc) {n, OSB_CFG_BOOL, OFF(f), d, 0, 0, NULL, NULL, 0, desc}
#define ENUM(n, f, d, ch, desc) {n, OSB_CFG_ENUM, OFF(f), d, 0, 0, ch, NULL, 0, desc}
#define URL(n, f, d, sch, desc) {n, OSB_CFG_URL, OFF(f), d, 1, 4096, sch, NULL, 0, desc}
#define STR(n, f, d, lo, hi, chk, fl, desc) {n, OSB_CFG_STRING, OFF(f), d, lo, hi, NULL, chk, fl, desc}
#define SECRET(n, f, lo, desc) STR(n, f, NULL, lo, 4096, NULL, OSB_CFG_SECRET, desc)

#define H (3600 * 1000)
const osb_config_var_t osb_config_vars[] = {
  /* listener */
  PORT("PORT", port, "10000", "the one listening port (0 = ephemeral)"),
  STR("HOST", host, "0.0.0.0", 1, 255, check_host, 0, "listening address"),
  PORT("WS_PORT", ws_port, NULL, "legacy; WebSockets are served on PORT at /ws"),
  PORT("METRICS_WS_PORT", metrics_ws_port, NULL, "legacy; the dashboard is served on PORT"),
  INT("TRUST_PROXY", trust_proxy, "0", 0, 16,
      "trusted proxy hops: the client IP is the Nth X-Forwarded-For entry from the right (0 = peer address)"),
  INT("MAX_BODY_BYTES", max_body_bytes, "1048576", 64, 1 << 30, "largest request body (413 above)"),
  INT("HTTP_HEADER_TIMEOUT_MS", http_header_timeout_ms, "10000", 10, H, "time to receive a request head"),
  INT("HTTP_IDLE_TIMEOUT_MS", http_idle_timeout_ms, "60000", 10, H, "keep-alive connection idle limit"),
  INT("HTTP_SEND_BUFFER_BYTES", http_send_buffer_bytes, "1048576", 1024, 1 << 30,
      "unsent response bytes per connection before it stops reading requests"),
  INT("SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms, "10000", 0, H, "graceful shutdown deadline"),
  INT("SHUTDOWN_DRAIN_DELAY_MS", shutdown_drain_delay_ms, "0", 0, H,
      "after SIGTERM, keep serving (with /ready 503 and Connection: close) this long before the listener "
      "closes; part of SHUTDOWN_TIMEOUT_MS, so it must be below it (0 = close at once)"),
  /* database */
  URL("DATABASE_URL", database_url, NULL, pg_schemes, "PostgreSQL connection string; unset = embedded SQLite"),
  STR("SQLITE_PATH", sqlite_path, "./data/osbackend.db", 1, 4096, NULL, 0, "embedded database file"),
  INT("DB_POOL_MIN", db_pool_min, "2", 0, 1000, "connections kept open"),
  INT("DB_POOL_MAX", db_pool_max, "20", 1, 1000, "most connections open at once"),
  INT("DB_ACQUIRE_TIMEOUT_MS", db_acquire_timeout_ms, "2000", 1, H, "wait for a free connection, then 503"),
  INT("DB_QUERY_TIMEOUT_MS", db_query_timeout_ms, "5000", 0, H, "a query with no answer by then fails (503) and its connection is retired (0 = off)"),
  INT("DB_HEALTH_INTERVAL_MS", db_health_interval_ms, "10000", 10, H, "health check of idle connections"),
  INT("DB_MAX_LIFETIME_MS", db_max_lifetime_ms, "1800000", 10, 24 * H, "recycle connections older than this"),
  INT("DB_IDLE_TIMEOUT_MS", db_idle_timeout_ms, "600000", 10, 24 * H, "close connections idle longer (above the minimum)"),
  INT("QUERY_CACHE_MB", query_cache_mb, "64", 0, 65536, "read cache size (0 = off)"),
  INT("QUERY_CACHE_TTL_MS", query_cache_ttl_ms, "5000", 1, H, "read cache freshness"),
  INT("SLOW_QUERY_MS", slow_query_ms, "100", 0, H, "log queries slower than this (0 = all)"),
  /* auth */
  SECRET("JWT_SECRET", jwt_secret, 32, "signs this server's tokens; required with DATABASE_URL"),
  SECRET("SUPABASE_JWT_SECRET", supabase_jwt_secret, 1, "also accept HS256 tokens from this external issuer"),
  STR("SSO_COOKIE_DOMAIN", sso_cookie_domain, NULL, 1, 253, check_domain, 0, "cookie domain shared by all apps"),
  BOOL("COOKIE_SECURE", cookie_secure, "1", "mark cookies Secure (HTTPS only)"),
  STR("CORS_ORIGINS", cors_origins, NULL, 1, 8192, check_origins, 0, "comma list of allowed origins"),
  SECRET("SERVICE_API_KEY", service_api_key, 16, "server-to-server key for publish/notification APIs"),
  SECRET("METRICS_TOKEN", metrics_token, 16, "bearer token for /metrics and /health/details; unset = open"),
  /* upstreams */
  ENUM("LLM_PROVIDER", llm_provider, "openai", llm_providers, "LLM wire format: openai (any compatible server) or anthropic"),
  SECRET("LLM_API_KEY", llm_api_key, 1, "LLM provider key; unset = knowledge-base fallback"),
  URL("LLM_BASE_URL", llm_base_url, LLM_OPENAI_URL, http_schemes,
      "LLM API base (default: " LLM_ANTHROPIC_URL " with LLM_PROVIDER=anthropic)"),
  STR("LLM_MODEL", llm_model, LLM_OPENAI_MODEL, 1, 256, NULL, 0,
      "model name (default: " LLM_ANTHROPIC_MODEL " with LLM_PROVIDER=anthropic)"),
  INT("LLM_MAX_TOKENS", llm_max_tokens, "1024", 1, 1000000, "reply length cap"),
  INT("LLM_CONTEXT_MESSAGES", llm_context_messages, "20", 0, 1000, "earlier messages sent with each request"),
  SECRET("ELEVENLABS_API_KEY", elevenlabs_api_key, 1, "text-to-speech key; unset = voice disabled"),
  URL("ELEVENLABS_BASE_URL", elevenlabs_base_url, "https://api.elevenlabs.io", http_schemes, "text-to-speech API base"),
  STR("ELEVENLABS_VOICE_ID", elevenlabs_voice_id, "21m00Tcm4TlvDq8ikWAM", 1, 256, NULL, 0, "default voice (a stock voice)"),
  STR("ELEVENLABS_MODEL_ID", elevenlabs_model_id, "eleven_multilingual_v2", 1, 256, NULL, 0, "text-to-speech model"),
  INT("TTS_CACHE_MB", tts_cache_mb, "256", 0, 1048576, "stored audio budget, least recently used evicted (0 = no cache)"),
  INT("UPSTREAM_TIMEOUT_MS", upstream_timeout_ms, "30000", 10, H, "deadline of each external call (streams: per gap between chunks)"),
  INT("LLM_MAX_CONCURRENCY", llm_max_concurrency, "32", 1, 100000, "LLM calls in flight; more wait up to 1 s, then 503"),
  INT("TTS_MAX_CONCURRENCY", tts_max_concurrency, "8", 1, 100000, "text-to-speech calls in flight; more wait up to 1 s, then 503"),
  INT("BREAKER_MIN_CALLS", breaker_min_calls, "5", 1, 1000000, "calls in the window before a breaker may open"),
  INT("BREAKER_FAILURE_RATE", breaker_failure_rate, "50", 1, 100, "percent of failed or slow calls that opens a breaker"),
  INT("BREAKER_WINDOW_S", breaker_window_s, "30", 1, 3600, "sliding window of the failure rate"),
  INT("BREAKER_SLOW_CALL_MS", breaker_slow_call_ms, "10000", 1, H, "a call whose first byte takes longer is slow"),
  INT("BREAKER_OPEN_MS", breaker_open_ms, "30000", 1, 600000, "open time before a half-open trial (doubles per failed trial, up to 10 min)"),
  /* websocket */
  INT("WS_MAX_CONNECTIONS", ws_max_connections, "100000", 1, 10000000, "concurrent WebSocket clients"),
  INT("WS_MAX_MESSAGE_BYTES", ws_max_message_bytes, "65536", 64, 1 << 30, "largest client message (1009 above)"),
  INT("WS_SEND_BUFFER_BYTES", ws_send_buffer_bytes, "1048576", 1024, 1 << 30, "unsent bytes per client before 1013"),
  INT("WS_PING_INTERVAL_MS", ws_ping_interval_ms, "25000", 10, H, "server ping interval"),
  INT("WS_IDLE_TIMEOUT_MS", ws_idle_timeout_ms, "60000", 10, H,
      "drop a client silent this long; reset a closing one that took no data this long"),
  INT("WS_MESSAGE_TIMEOUT_MS", ws_message_timeout_ms, "20000", 100, H,
      "a frame or fragmented message must be complete this long after it began (1008 otherwise)"),
  INT("WS_CONTROL_FRAMES_PER_S", ws_control_frames_per_s, "10", 0, 100000,
      "pings and pongs a client may send per second, bursts of twice that (1008 above); 0 = no limit"),
  /* limits */
  INT("RATE_LIMIT_RPS", rate_limit_rps, "50", 1, 10000000, "requests per second per client IP / user"),
  INT("RATE_LIMIT_BURST", rate_limit_burst, "100", 1, 10000000, "burst above the rate"),
  INT("REGISTER_IP_BURST", register_ip_burst, "5", 1, 10000000,
      "registrations one client address may make at once"),
  INT("REGISTER_IP_PER_HOUR", register_ip_per_hour, "20", 0, 10000000,
      "registrations per hour per client address, refilling the burst (0 = no per-address limit)"),
  INT("REGISTER_GLOBAL_PER_MIN", register_global_per_min, "300", 0, 10000000,
      "registrations per minute from all addresses together, ten seconds' worth at once (0 = no limit)"),
  INT("AUTH_HASH_MAX_PER_IP", auth_hash_max_per_ip, "8", 0, 256,
      "password hashes (sign-ins, registrations) one client address may have waiting or running; more get 503 (0 = no cap)"),
  INT("MAX_CONNECTIONS_PER_IP", max_connections_per_ip, "2000", 0, 10000000,
      "connections (HTTP and WebSocket) from one client address; 0 = no limit"),
  /* logging, identity */
  ENUM("LOG_LEVEL", log_level, "info", log_levels, "least severe level logged"),
  ENUM("LOG_FORMAT", log_format, "json", log_formats, "JSON lines or text for people"),
  STR("CLUSTER_NODE_ID", cluster_node_id, "<hostname>-<pid>", 1, 128, check_node_id, OSB_CFG_COMPUTED,
      "identity of this instance in a cluster"),
  /* deployment (docs/deploy.md) */
  STR("DISABLE", disable, NULL, 1, 1024, check_features, 0,
      "comma list of features to switch off: agents, voice, crm, market_writes, dashboard (503 feature_disabled)"),
  INT("MIGRATIONS_UPTO", migrations_upto, "0", 0, 1000000,
      "rollback rehearsal: behave like the release whose newest migration is this version (0 = all compiled in)"),
  BOOL("RENDER", render, "0", "set by Render on its instances; check-config then checks TRUST_PROXY"),
  ENUM("CLUSTER_BUS", cluster_bus, "auto", cluster_buses,
       "how channel messages reach the other instances: postgres (LISTEN/NOTIFY) or local; auto = postgres with DATABASE_URL"),
  INT("WORKERS", workers, "1", 1, 256, "event-loop processes sharing the port (SO_REUSEPORT)"),
};
#undef H
const size_t osb_config_nvars = OSB_ARRAY_LEN(osb_config_vars);

const osb_config_var_t *osb_config_find(const char *name) {
  for (size_t i = 0; i < osb_config_nvars; i++)
    if (strcmp(osb_config_vars[i].name, name) == 0) return &osb_config_vars[i];
  return NULL;
}

#define FIELD(cfg, v, T) ((T *)((char *)(cfg) + (v)->offset))
#define CFIELD(cfg, v, T) ((const T *)((const char *)(cfg) + (v)->offset))

/* ---- formatting helpers ---- */

static void put_line(char *out, size_t outlen, const char *fmt, ...) OSB_PRINTF(3, 4);
static void put_line(char *out, size_t outlen, const char *fmt, ...) {
  if (!out || !outlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(out, outlen, fmt, ap);
  va_end(ap);
}

/* Append one line to the warning buffer (never truncates mid-line silently:
 * a line that does not fit is dropped whole). */
static void add_warning(char *warn, size_t warnlen, const char *fmt, ...) OSB_PRINTF(3, 4);
static void add_warning(char *warn, size_t warnlen, const char *fmt, ...) {
  if (!warn || !warnlen) return;
  size_t used = strnlen(warn, warnlen);
  if (used >= warnlen - 1) return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = strlen(line);
  if (used + len + 2 > warnlen) return;
  memcpy(warn + used, line, len);
  warn[used + len] = '\n';
  warn[used + len + 1] = 0;
}

/* How a rejected value is echoed: secrets never, URLs redacted, the rest
 * shortened and with control characters replaced. */
static void echo_value(const osb_config_var_t *v, const char *val, char *out, size_t outlen) {
  if (v->flags & OSB_CFG_SECRET) {
    snprintf(out, outlen, "%zu characters", strlen(val));
    return;
  }
  char tmp[128];
  if (v->type == OSB_CFG_URL) {
    osb_config_redact_url(val, tmp, sizeof(tmp));
    val = tmp;
  }
  size_t o = 0, max = outlen < 64 ? outlen : 64;
  out[o++] = '"';
  for (; *val && o + 5 < max; val++) out[o++] = iscntrl((unsigned char)*val) ? '?' : *val;
  if (*val) { memcpy(out + o, "...", 3); o += 3; }
  out[o++] = '"';
  out[o] = 0;
}

void osb_config_describe(const osb_config_var_t *v, char *out, size_t outlen) {
  osb_buf_t b = OSB_BUF_INIT;
  switch (v->type) {
    case OSB_CFG_INT: osb_buf_printf(&b, "integer %lld..%lld", v->min, v->max); break;
    case OSB_CFG_PORT: osb_buf_printf(&b, "port %lld..%lld", v->min, v->max); break;
    case OSB_CFG_BOOL: osb_buf_puts(&b, "boolean (1/0/true/false/yes/no/on/off)"); break;
    case OSB_CFG_ENUM:
    case OSB_CFG_URL:
      if (v->type == OSB_CFG_URL) osb_buf_puts(&b, "URL starting ");
      for (size_t i = 0; v->choices[i]; i++) {
        if (i) osb_buf_puts(&b, v->type == OSB_CFG_URL ? " or " : "|");
        osb_buf_puts(&b, v->choices[i]);
      }
      break;
    case OSB_CFG_STRING:
      if (v->min > 1) osb_buf_printf(&b, "string, at least %lld characters", v->min);
      else osb_buf_puts(&b, "string");
      break;
  }
  snprintf(out, outlen, "%s", b.base ? b.base : "");
  osb_buf_free(&b);
}

/* The rule a bad value broke, in the words of the error line. */
static void describe_rule(const osb_config_var_t *v, char *out, size_t outlen) {
  switch (v->type) {
    case OSB_CFG_INT: snprintf(out, outlen, "must be an integer from %lld to %lld", v->min, v->max); break;
    case OSB_CFG_PORT: snprintf(out, outlen, "must be a port number from %lld to %lld", v->min, v->max); break;
    case OSB_CFG_BOOL: snprintf(out, outlen, "must be one of 1/0/true/false/yes/no/on/off"); break;
    case OSB_CFG_ENUM: {
      char d[128];
      osb_config_describe(v, d, sizeof(d));
      snprintf(out, outlen, "must be one of %s", d);
      break;
    }
    case OSB_CFG_URL: {
      char d[128];
      osb_config_describe(v, d, sizeof(d));
      /* "must start with postgres:// or postgresql://" */
      snprintf(out, outlen, "must start with %s%s", d + strlen("URL starting "),
               v->choices[0][0] == 'h' ? " followed by a host" : "");
      break;
    }
    case OSB_CFG_STRING:
      if (v->min > 1) snprintf(out, outlen, "must be %lld to %lld characters", v->min, v->max);
      else snprintf(out, outlen, "must be at most %lld characters", v->max);
      break;
  }
}

/* ---- parsing one value ---- */

/* Fully numeric: an optional '-', digits, nothing else; no overflow. */
static bool parse_ll(const char *s, long long *out) {
  const char *p = s + (*s == '-');
  if (!*p) return false;
  for (const char *q = p; *q; q++)
    if (*q < '0' || *q > '9') return false;
  errno = 0;
  char *end;
  long long n = strtoll(s, &end, 10);
  if (errno == ERANGE || *end) return false;
  *out = n;
  return true;
}

static int parse_bool(const char *s) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(yes); i++) {
    if (strcasecmp(s, yes[i]) == 0) return 1;
    if (strcasecmp(s, no[i]) == 0) return 0;
  }
  return -1;
}

static bool has_cntrl(const char *s) {
  for (; *s; s++)
    if (iscntrl((unsigned char)*s)) return true;
  return false;
}

/* Parse `val` into cfg's field for `v`. Returns NULL or the broken rule (in
 * `why`, or a static string). Strings are copied (the config owns them). */
static const char *set_value(osb_config_t *cfg, const osb_config_var_t *v, const char *val,
                             char *why, size_t whylen) {
  switch (v->type) {
    case OSB_CFG_INT:
    case OSB_CFG_PORT: {
      long long n;
      if (!parse_ll(val, &n) || n < v->min || n > v->max) break;
      *FIELD(cfg, v, int) = (int)n;
      return NULL;
    }
    case OSB_CFG_BOOL: {
      int b = parse_bool(val);
      if (b < 0) break;
      *FIELD(cfg, v, bool) = b;
      return NULL;
    }
    case OSB_CFG_ENUM:
      for (int i = 0; v->choices[i]; i++) {
        if (strcasecmp(val, v->choices[i]) == 0) {
          *FIELD(cfg, v, int) = i;
          return NULL;
        }
      }
      break;
    case OSB_CFG_URL: {
      size_t len = strlen(val);
      if (has_cntrl(val) || strchr(val, ' ') || len > (size_t)v->max) break;
      const char *scheme = NULL;
      for (size_t i = 0; v->choices[i]; i++)
        if (strncasecmp(val, v->choices[i], strlen(v->choices[i])) == 0) scheme = v->choices[i];
      if (!scheme) break;
      /* libpq accepts "postgres:///db" (local socket); HTTP needs a host. */
      const char *host = val + strlen(scheme);
      if (scheme[0] == 'h' && (!*host || *host == '/' || *host == '?')) break;
      /* An http base URL is joined with "/path": drop trailing slashes. */
      if (scheme[0] == 'h')
        while (len > strlen(scheme) + 1 && val[len - 1] == '/') len--;
      *FIELD(cfg, v, char *) = osb_strndup(val, len);
      return NULL;
    }
    case OSB_CFG_STRING: {
      size_t len = strlen(val);
      if ((long long)len < v->min || (long long)len > v->max) break;
      if (has_cntrl(val)) return "must not contain control characters";
      char *norm = NULL;
      if (v->check) {
        const char *rule = v->check(val, &norm);
        if (rule) return rule;
      }
      *FIELD(cfg, v, char *) = norm ? norm : osb_strdup(val);
      return NULL;
    }
  }
  describe_rule(v, why, whylen);
  return why;
}

/* ---- .env ---- */

typedef struct dotenv_entry { char *key, *value; int line; } dotenv_entry_t;
typedef struct dotenv { dotenv_entry_t *v; size_t n, cap; } dotenv_t;

static void dotenv_free(dotenv_t *d) {
  for (size_t i = 0; i < d->n; i++) {
    free(d->v[i].key);
    free(d->v[i].value);
  }
  free(d->v);
  d->v = NULL;
  d->n = d->cap = 0;
}

/* Later lines win, as in a shell. */
static void dotenv_put(dotenv_t *d, char *key, char *value, int line) {
  for (size_t i = 0; i < d->n; i++) {
    if (strcmp(d->v[i].key, key) == 0) {
      free(key);
      free(d->v[i].value);
      d->v[i].value = value;
      d->v[i].line = line;
      return;
    }
  }
  if (d->n == d->cap) {
    d->cap = d->cap ? d->cap * 2 : 16;
    d->v = osb_realloc(d->v, d->cap * sizeof(*d->v));
  }
  d->v[d->n++] = (dotenv_entry_t){key, value, line};
}

static const char *dotenv_get(const dotenv_t *d, const char *key) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->v[i].key, key) == 0) return d->v[i].value;
  return NULL;
}

/* One logical line (no newline) → key/value, or a reason. The format is the
 * common subset of docker compose, python-dotenv and systemd:
 *   [export ]KEY=VALUE   # comment
 *   KEY="double quoted \"escapes\" \n"   KEY='single quoted, literal'
 * Unquoted values end at " #" and are trimmed. */
static const char *dotenv_line(const char *p, const char *end, char **key, char **value) {
  while (p < end && isspace((unsigned char)*p)) p++;
  if (p == end || *p == '#') return "";   /* blank or comment: nothing, no error */
  if ((size_t)(end - p) > 7 && strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
    p += 7;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
  }
  const char *k = p;
  if (p == end || !(isalpha((unsigned char)*p) || *p == '_')) return "expected KEY=VALUE";
  while (p < end && (isalnum((unsigned char)*p) || *p == '_')) p++;
  const char *kend = p;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  if (p == end || *p != '=') return "expected KEY=VALUE";
  p++;
  while (p < end && (*p == ' ' || *p == '\t')) p++;

  osb_buf_t val = OSB_BUF_INIT;
  osb_buf_reserve(&val, 0);
  if (p < end && (*p == '"' || *p == '\'')) {
    char q = *p++;
    bool closed = false;
    while (p < end) {
      char c = *p++;
      if (c == q) { closed = true; break; }
      if (q == '"' && c == '\\' && p < end) {
        char e = *p++;
        switch (e) {
          case 'n': c = '\n'; break;
          case 't': c = '\t'; break;
          case 'r': c = '\r'; break;
          case '"': case '\\': case '$': c = e; break;
          default: osb_buf_append(&val, "\\", 1); c = e; break;
        }
      }
      osb_buf_append(&val, &c, 1);
    }
    if (!closed) { osb_buf_free(&val); return "unterminated quoted value"; }
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if (p < end && *p != '#') { osb_buf_free(&val); return "unexpected text after the closing quote"; }
  } else {
    const char *v = p, *vend = p;
    for (; p < end; p++) {
      if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) break;
      vend = p + 1;
    }
    while (vend > v && isspace((unsigned char)vend[-1])) vend--;
    osb_buf_append(&val, v, (size_t)(vend - v));
  }
  *key = osb_strndup(k, (size_t)(kend - k));
  *value = val.base;
  return NULL;
}

#define DOTENV_MAX_BYTES (1 << 20)

/* Read `path` into `d`. A missing file is fine (returns 0, *found = false). */
static int dotenv_read(const char *path, dotenv_t *d, bool *found, char *err, size_t errlen) {
  *found = false;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    put_line(err, errlen, "config: cannot read %s: %s", path, strerror(errno));
    return OSB_ECONFIG;
  }
  int rc = 0;
  char *data = NULL;
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    put_line(err, errlen, "config: %s is not a regular file", path);
    rc = OSB_ECONFIG;
    goto out;
  }
  if (st.st_size > DOTENV_MAX_BYTES) {
    put_line(err, errlen, "config: %s is larger than %d bytes", path, DOTENV_MAX_BYTES);
    rc = OSB_ECONFIG;
    goto out;
  }
  size_t size = (size_t)st.st_size;
  data = osb_malloc(size + 1);
  size_t got = fread(data, 1, size, f);
  if (got != size || ferror(f)) {
    put_line(err, errlen, "config: cannot read %s", path);
    rc = OSB_ECONFIG;
    goto out;
  }
  data[size] = 0;
  if (memchr(data, 0, size)) {
    put_line(err, errlen, "config: %s contains a NUL byte", path);
    rc = OSB_ECONFIG;
    goto out;
  }
  *found = true;
  int lineno = 0;
  for (const char *p = data; p < data + size;) {
    const char *nl = memchr(p, '\n', (size_t)(data + size - p));
    const char *end = nl ? nl : data + size;
    const char *trim = end;
    if (trim > p && trim[-1] == '\r') trim--;
    lineno++;
    char *key = NULL, *value = NULL;
    const char *why = dotenv_line(p, trim, &key, &value);
    if (why && *why) {
      put_line(err, errlen, "config: %s:%d: %s", path, lineno, why);
      rc = OSB_ECONFIG;
      goto out;
    }
    if (!why) dotenv_put(d, key, value, lineno);
    p = nl ? nl + 1 : end;
  }
out:
  free(data);
  fclose(f);
  if (rc < 0) dotenv_free(d);
  return rc;
}

/* ---- load ---- */

static char *default_node_id(void) {
  char host[256];
  if (gethostname(host, sizeof(host)) != 0) snprintf(host, sizeof(host), "osb");
  host[sizeof(host) - 1] = 0;
  host[64] = 0;  /* room for "-<pid>" within the 128-character limit */
  for (char *c = host; *c; c++)
    if (!isalnum((unsigned char)*c) && !strchr("._:-", *c)) *c = '-';
  if (!host[0]) snprintf(host, sizeof(host), "osb");
  return osb_asprintf("%s-%ld", host, (long)getpid());
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

int osb_config_load(osb_config_t *cfg, char *err, size_t errlen, char *warn, size_t warnlen) {
  int rc = 0;
  dotenv_t env_file = {0};
  bool found = false;
  char why[256];

  memset(cfg, 0, sizeof(*cfg));
  if (err && errlen) err[0] = 0;
  if (warn && warnlen) warn[0] = 0;

  const char *path = nonempty(getenv("OSB_ENV_FILE"));
  if (!path) path = "./.env";
  if ((rc = dotenv_read(path, &env_file, &found, err, errlen)) < 0) goto fail;
  if (found) cfg->env_file = osb_strdup(path);

  for (size_t i = 0; i < osb_config_nvars; i++) {
    const osb_config_var_t *v = &osb_config_vars[i];
    const char *val = nonempty(getenv(v->name));
    const char *from = "";
    if (!val && (val = nonempty(dotenv_get(&env_file, v->name)))) from = " in .env";
    if (!val) {
      if (v->flags & OSB_CFG_COMPUTED) {
        *FIELD(cfg, v, char *) = default_node_id();
        continue;
      }
      val = v->def;
      from = " as default";
    }
    if (!val) continue;
    const char *rule = set_value(cfg, v, val, why, sizeof(why));
    if (rule) {
      char shown[80];
      echo_value(v, val, shown, sizeof(shown));
      put_line(err, errlen, "config: %s%s %s (got %s)", v->name, from, rule, shown);
      rc = OSB_ECONFIG;
      goto fail;
    }
  }

  for (size_t i = 0; i < env_file.n; i++)
    if (!osb_config_find(env_file.v[i].key) && strcmp(env_file.v[i].key, "OSB_ENV_FILE") != 0)
      add_warning(warn, warnlen, "%s:%d: unknown variable %s ignored", path, env_file.v[i].line,
                  env_file.v[i].key);

  /* Rules across variables. The LLM defaults follow the provider. */
  if (cfg->llm_provider == OSB_LLM_ANTHROPIC) {
    if (!nonempty(getenv("LLM_BASE_URL")) && !nonempty(dotenv_get(&env_file, "LLM_BASE_URL"))) {
      free(cfg->llm_base_url);
      cfg->llm_base_url = osb_strdup(LLM_ANTHROPIC_URL);
    }
    if (!nonempty(getenv("LLM_MODEL")) && !nonempty(dotenv_get(&env_file, "LLM_MODEL"))) {
      free(cfg->llm_model);
      cfg->llm_model = osb_strdup(LLM_ANTHROPIC_MODEL);
    }
  }
  /* Rules across variables. */
  if (cfg->database_url && !cfg->jwt_secret) {
    put_line(err, errlen, "config: JWT_SECRET is required when DATABASE_URL is set "
             "(at least 32 characters; every instance must share it)");
    rc = OSB_ECONFIG;
    goto fail;
  }
  if (cfg->cluster_bus == OSB_BUS_AUTO) cfg->cluster_bus = cfg->database_url ? OSB_BUS_POSTGRES : OSB_BUS_LOCAL;
  if (cfg->cluster_bus == OSB_BUS_POSTGRES && !cfg->database_url) {
    put_line(err, errlen, "config: CLUSTER_BUS=postgres needs DATABASE_URL (the bus is PostgreSQL LISTEN/NOTIFY)");
    rc = OSB_ECONFIG;
    goto fail;
  }
  if (cfg->workers > 1 && cfg->cluster_bus != OSB_BUS_POSTGRES) {
    put_line(err, errlen, "config: WORKERS=%d needs CLUSTER_BUS=postgres (DATABASE_URL): the workers are "
             "instances of one cluster and share channels through the bus", cfg->workers);
    rc = OSB_ECONFIG;
    goto fail;
  }
  if (cfg->db_pool_min > cfg->db_pool_max) {
    put_line(err, errlen, "config: DB_POOL_MIN (%d) must not exceed DB_POOL_MAX (%d)",
             cfg->db_pool_min, cfg->db_pool_max);
    rc = OSB_ECONFIG;
    goto fail;
  }
  if (cfg->shutdown_drain_delay_ms > 0 && cfg->shutdown_drain_delay_ms >= cfg->shutdown_timeout_ms) {
    put_line(err, errlen, "config: SHUTDOWN_DRAIN_DELAY_MS (%d) must be below SHUTDOWN_TIMEOUT_MS (%d): "
             "the drain window is part of the shutdown deadline", cfg->shutdown_drain_delay_ms,
             cfg->shutdown_timeout_ms);
    rc = OSB_ECONFIG;
    goto fail;
  }
  if (cfg->ws_port && cfg->ws_port != cfg->port)
    add_warning(warn, warnlen, "WS_PORT=%d is ignored: WebSockets are served on PORT=%d at /ws",
                cfg->ws_port, cfg->port);
  if (cfg->metrics_ws_port && cfg->metrics_ws_port != cfg->port)
    add_warning(warn, warnlen, "METRICS_WS_PORT=%d is ignored: the live dashboard is served on "
                "PORT=%d at /dashboard (channel dashboard:metrics on /ws)",
                cfg->metrics_ws_port, cfg->port);
  if (cfg->ws_idle_timeout_ms <= cfg->ws_ping_interval_ms)
    add_warning(warn, warnlen, "WS_IDLE_TIMEOUT_MS=%d is not above WS_PING_INTERVAL_MS=%d: "
                "clients that answer every ping may still be dropped",
                cfg->ws_idle_timeout_ms, cfg->ws_ping_interval_ms);
  if (cfg->render && cfg->trust_proxy == 0)
    add_warning(warn, warnlen, "RENDER=true but TRUST_PROXY=0: behind Render's proxy every client shares the "
                "proxy's address (one rate-limit bucket and login throttle for everyone); set TRUST_PROXY=1");
  if (!cfg->cookie_secure)
    add_warning(warn, warnlen, "COOKIE_SECURE=0: session cookies will also be sent over plain HTTP");

  dotenv_free(&env_file);
  osb_cfg = cfg;
  return 0;

fail:
  dotenv_free(&env_file);
  {
    /* osb_config_dispose() would clear osb_cfg if it pointed here; it must
     * stay as it was on failure. */
    const osb_config_t *keep = osb_cfg;
    osb_config_dispose(cfg);
    osb_cfg = keep == cfg ? NULL : keep;
  }
  return rc;
}

void osb_config_dispose(osb_config_t *cfg) {
  for (size_t i = 0; i < osb_config_nvars; i++) {
    const osb_config_var_t *v = &osb_config_vars[i];
    if (v->type == OSB_CFG_STRING || v->type == OSB_CFG_URL) {
      char **s = FIELD(cfg, v, char *);
      if (*s && (v->flags & OSB_CFG_SECRET)) memset(*s, 0, strlen(*s));
      free(*s);
      *s = NULL;
    }
  }
  free(cfg->env_file);
  memset(cfg, 0, sizeof(*cfg));
  if (osb_cfg == cfg) osb_cfg = NULL;
}

/* ---- printing ---- */

void osb_config_redact_url(const char *url, char *out, size_t outlen) {
  if (!out || !outlen) return;
  osb_buf_t b = OSB_BUF_INIT;
  osb_buf_reserve(&b, strlen(url));
  const char *auth = strstr(url, "://");
  auth = auth ? auth + 3 : url;
  size_t qlen = strcspn(auth, "?#");
  const char *query = auth + qlen;
  /* userinfo ends at the last '@' before the query: a password containing an
   * unencoded '@' or '/' is then still redacted whole (over-redaction at
   * worst, never a leak). */
  const char *at = NULL;
  for (const char *p = auth; p < query; p++)
    if (*p == '@') at = p;
  const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
  if (colon) {
    osb_buf_append(&b, url, (size_t)(colon + 1 - url));
    osb_buf_puts(&b, "***");
    osb_buf_append(&b, at, (size_t)(query - at));
  } else {
    osb_buf_append(&b, url, (size_t)(query - url));
  }
  /* Query parameters: any key ending in "password" (password, sslpassword). */
  const char *p = query;
  while (*p) {
    const char *end = p + 1 + strcspn(p + 1, "&#");
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (*p != '#' && eq && eq - p >= 8 && strncasecmp(eq - 8, "password", 8) == 0) {
      osb_buf_append(&b, p, (size_t)(eq + 1 - p));
      osb_buf_puts(&b, "***");
    } else {
      osb_buf_append(&b, p, (size_t)(end - p));
    }
    p = end;
  }
  snprintf(out, outlen, "%s", b.base);
  osb_buf_free(&b);
}

void osb_config_format(const osb_config_t *cfg, const osb_config_var_t *v, char *out, size_t outlen) {
  if (!out || !outlen) return;
  out[0] = 0;
  switch (v->type) {
    case OSB_CFG_INT:
      snprintf(out, outlen, "%d", *CFIELD(cfg, v, int));
      break;
    case OSB_CFG_PORT: {
      int n = *CFIELD(cfg, v, int);
      if (n || v->def) snprintf(out, outlen, "%d", n);   /* legacy ports: 0 = unset */
      break;
    }
    case OSB_CFG_BOOL:
      snprintf(out, outlen, "%d", *CFIELD(cfg, v, bool) ? 1 : 0);
      break;
    case OSB_CFG_ENUM: {
      int n = *CFIELD(cfg, v, int);
      snprintf(out, outlen, "%s", v->choices[n]);
      break;
    }
    case OSB_CFG_URL:
    case OSB_CFG_STRING: {
      const char *s = *CFIELD(cfg, v, char *);
      if (!s) break;
      if (v->flags & OSB_CFG_SECRET) snprintf(out, outlen, "***");
      else if (v->type == OSB_CFG_URL) osb_config_redact_url(s, out, outlen);
      else snprintf(out, outlen, "%s", s);
      break;
    }
  }
}

void osb_config_print(const osb_config_t *cfg, FILE *out) {
  char val[8192 + 1];
  for (size_t i = 0; i < osb_config_nvars; i++) {
    osb_config_format(cfg, &osb_config_vars[i], val, sizeof(val));
    fprintf(out, "%s=%s\n", osb_config_vars[i].name, val);
  }
}

int osb_config_check_main(FILE *out, FILE *errout) {
  osb_config_t cfg;
  char err[512], warn[4096];
  if (osb_config_load(&cfg, err, sizeof(err), warn, sizeof(warn)) < 0) {
    fprintf(errout, "%s\n", err);
    return 1;
  }
  for (char *line = warn, *nl; *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (!nl) break;
    fprintf(errout, "config: warning: %.*s\n", (int)(nl - line), line);
  }
  if (cfg.env_file) fprintf(errout, "config: read %s\n", cfg.env_file);
  osb_config_print(&cfg, out);
  osb_config_dispose(&cfg);
  return 0;
}
