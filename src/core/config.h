/* config.h: the whole configuration, loaded once at start from the
 * environment and an optional .env file, validated from one table
 * (core/config.c, redis's standardConfig shape), read-only afterwards.
 *
 * A bad value is one line naming the variable and the accepted range; the
 * caller prints it and exits 2 (check-config exits 1). Secrets (*_KEY,
 * *_SECRET, passwords in URLs) are never printed: osb_config_print() shows
 * them as ***, and error messages never echo a secret's value.
 *
 * Precedence, per variable: a non-empty value in the process environment,
 * else a non-empty value in the .env file, else the default. An empty value
 * counts as unset at every layer. */
#ifndef OSB_CONFIG_H
#define OSB_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum { OSB_LOGFMT_JSON, OSB_LOGFMT_TEXT } osb_logfmt_t;
typedef enum { OSB_LLM_OPENAI, OSB_LLM_ANTHROPIC } osb_llm_provider_t;

typedef enum { OSB_BUS_AUTO = 0, OSB_BUS_LOCAL, OSB_BUS_POSTGRES } osb_cluster_bus_t;

typedef struct osb_config {
  /* listener */
  int port;               /* 0 = ephemeral (tests read it from the "listening" log line) */
  char *host;
  int ws_port;            /* legacy; 0 = unset. Never bound: a warning if != port */
  int metrics_ws_port;    /* legacy; 0 = unset. Never bound: a warning if != port */
  int trust_proxy;        /* trusted proxy hops in front of us; 0 = none: the peer is the
                           * client. N: X-Forwarded-For/-Proto are read N entries from the
                           * right (http/request.c osb__req_forwarded) */
  int max_body_bytes;
  int http_header_timeout_ms;
  int http_idle_timeout_ms;
  int http_send_buffer_bytes;  /* unsent response bytes before a connection stops reading */
  int shutdown_timeout_ms;
  int shutdown_drain_delay_ms;  /* < shutdown_timeout_ms (or 0): the readiness window before the stop */
  /* database */
  char *database_url;     /* NULL = embedded SQLite; else postgres:// or postgresql:// */
  char *sqlite_path;
  int db_pool_min, db_pool_max;   /* min <= max is guaranteed */
  int db_acquire_timeout_ms;
  int db_query_timeout_ms;    /* PostgreSQL: per query, server- and client-side */
  int db_health_interval_ms;
  int db_max_lifetime_ms, db_idle_timeout_ms;
  int query_cache_mb;     /* 0 = cache disabled */
  int query_cache_ttl_ms;
  int slow_query_ms;      /* 0 = log every query */
  /* auth */
  char *jwt_secret;       /* >= 32 chars; always set with DATABASE_URL, NULL otherwise
                           * when not configured (auth generates one in the data dir) */
  char *supabase_jwt_secret;
  char *sso_cookie_domain;
  bool cookie_secure;
  char *cors_origins;     /* normalised comma list "https://a.example,https://b.example"
                           * (no spaces, no trailing slash); NULL = same-origin only */
  char *service_api_key;
  char *metrics_token;    /* NULL = /metrics and /health/details are open */
  /* upstreams */
  int llm_provider;       /* osb_llm_provider_t */
  char *llm_api_key, *llm_base_url, *llm_model;   /* base URL without trailing slash; the
                           * defaults follow LLM_PROVIDER (OpenAI's or Anthropic's) */
  int llm_max_tokens, llm_context_messages;
  char *elevenlabs_api_key, *elevenlabs_base_url, *elevenlabs_voice_id, *elevenlabs_model_id;
  int tts_cache_mb;
  int upstream_timeout_ms;
  int llm_max_concurrency, tts_max_concurrency;   /* bulkheads */
  int breaker_min_calls, breaker_failure_rate, breaker_window_s;
  int breaker_slow_call_ms, breaker_open_ms;
  /* websocket */
  int ws_max_connections;
  int ws_max_message_bytes;
  int ws_send_buffer_bytes;
  int ws_ping_interval_ms;
  int ws_idle_timeout_ms;
  int ws_message_timeout_ms;      /* a started frame or fragmented message must end by then */
  int ws_control_frames_per_s;    /* inbound pings/pongs per second (burst twice); 0 = no limit */
  /* limits */
  int rate_limit_rps, rate_limit_burst;
  int register_ip_burst, register_ip_per_hour;   /* per_hour 0 = no per-address throttle */
  int register_global_per_min;  /* 0 = no global throttle */
  int auth_hash_max_per_ip;     /* Argon2 jobs waiting or running per client address; 0 = no cap */
  int max_connections_per_ip;   /* HTTP and WebSocket together, per client address
                                 * (an IPv6 /64); 0 = no limit */
  /* logging, identity */
  int log_level;          /* osb_log_level_t */
  osb_logfmt_t log_format;
  char *cluster_node_id;  /* default "<hostname>-<pid>" */
  /* deployment */
  char *disable;          /* normalised comma list of switched-off features (apps/features.h), or NULL */
  int migrations_upto;    /* rehearsal: act as the release whose newest migration is this (0 = all) */
  bool render;            /* RENDER=true: running on Render (behind its proxy) */
  int cluster_bus;        /* osb_cluster_bus_t; never AUTO after osb_config_load */
  int workers;            /* event-loop processes (fork + SO_REUSEPORT), default 1 */
  /* informational: the .env file that was read, or NULL if there was none */
  char *env_file;
} osb_config_t;

/* The loaded configuration. Valid after osb_config_load() succeeded; NULL
 * before, and again after osb_config_dispose() of that same struct. */
extern const osb_config_t *osb_cfg;

/* Load defaults, then `.env` (path from OSB_ENV_FILE or ./.env; a missing
 * file is fine), then the environment, as described at the top.
 * `cfg` is overwritten (dispose a previously loaded one first).
 * On error writes one line (no trailing newline, starting "config: ") to
 * `err`, frees everything, leaves osb_cfg unchanged and returns OSB_ECONFIG
 * (negative, like every OSB_E* code).
 * Warnings (legacy port variables, unknown .env keys, suspicious
 * combinations) are written to `warn`, each line ending in '\n' and without a
 * prefix: log each with osb_log(OSB_LOG_WARN, "config", "%s", line).
 * `warn` may be NULL. On success sets osb_cfg = cfg.
 * Reads the environment: call before starting threads. */
int osb_config_load(osb_config_t *cfg, char *err, size_t errlen, char *warn, size_t warnlen);

/* Print "NAME=value\n" for every variable in table order to `out`: secrets
 * as *** when set, URLs with their password redacted, unset as empty. */
void osb_config_print(const osb_config_t *cfg, FILE *out);

/* Free the strings owned by cfg and zero it. Safe on a zeroed struct. */
void osb_config_dispose(osb_config_t *cfg);

/* Redact the password of a URL like postgres://user:pw@host/db into `out`
 * (postgres://user:***@host/db), and any password=... query parameter.
 * Always NUL-terminates; truncation never exposes the password. */
void osb_config_redact_url(const char *url, char *out, size_t outlen);

/* `osbackend check-config`: load, print the error (stderr) or the warnings
 * ("config: warning: ..." on `errout`) and the effective configuration
 * (osb_config_print on `out`). Returns the process exit status: 0, or 1 on
 * an invalid configuration. */
int osb_config_check_main(FILE *out, FILE *errout);

/* ---- the table, for docs, check-config and tests ---- */

typedef enum {
  OSB_CFG_INT,     /* int field, decimal, min..max */
  OSB_CFG_PORT,    /* int field, 0..65535 */
  OSB_CFG_STRING,  /* char * field; min..max = length bounds when set */
  OSB_CFG_BOOL,    /* bool field: 1/0/true/false/yes/no/on/off */
  OSB_CFG_ENUM,    /* int-sized field: index into `choices` */
  OSB_CFG_URL,     /* char * field: must start with one of `choices` */
} osb_config_type_t;

enum {
  OSB_CFG_SECRET = 1 << 0,    /* never printed: *** */
  OSB_CFG_COMPUTED = 1 << 1,  /* default computed at load time; `def` describes it */
};

/* Extra validation of a STRING value. Returns NULL if `value` is fine, else
 * the rule it broke ("must be ..."). May store a normalised copy (malloc'd)
 * in *norm, which the config then owns. */
typedef const char *(*osb_config_check_fn)(const char *value, char **norm);

typedef struct osb_config_var {
  const char *name;
  osb_config_type_t type;
  size_t offset;               /* into osb_config_t */
  const char *def;             /* default as text; NULL = unset */
  long long min, max;          /* INT/PORT: value bounds; STRING: length bounds */
  const char *const *choices;  /* ENUM: words (index = value); URL: accepted prefixes */
  osb_config_check_fn check;   /* STRING only; may be NULL */
  unsigned flags;              /* OSB_CFG_SECRET, OSB_CFG_COMPUTED */
  const char *desc;            /* one line */
} osb_config_var_t;

extern const osb_config_var_t osb_config_vars[];
extern const size_t osb_config_nvars;

/* The row named `name`, or NULL. */
const osb_config_var_t *osb_config_find(const char *name);

/* The value of `v` in `cfg` as printed by osb_config_print (redacted). */
void osb_config_format(const osb_config_t *cfg, const osb_config_var_t *v, char *out, size_t outlen);

/* The accepted values of `v` in words ("integer 1..1000", "debug|info|warn|error"). */
void osb_config_describe(const osb_config_var_t *v, char *out, size_t outlen);

#endif
