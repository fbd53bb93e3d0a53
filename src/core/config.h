/* config.h: the whole configuration, loaded once at start from the
 * environment and an optional .env file, validated from one table
 * (core/config.c), read-only afterwards.
 *
 * A bad value is one line on stderr naming the variable and the accepted
 * range; the caller exits 2. Secrets (*_KEY, *_SECRET, passwords in URLs)
 * are never printed: osb_config_print() shows them as ***. */
#ifndef OSB_CONFIG_H
#define OSB_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum { OSB_LOGFMT_JSON, OSB_LOGFMT_TEXT } osb_logfmt_t;

typedef struct osb_config {
  /* listener */
  int port;
  char *host;
  int ws_port;            /* legacy; 0 = unset */
  int metrics_ws_port;    /* legacy; 0 = unset */
  bool trust_proxy;
  int max_body_bytes;
  int http_header_timeout_ms;
  int http_idle_timeout_ms;
  int shutdown_timeout_ms;
  /* database */
  char *database_url;     /* NULL = embedded SQLite */
  char *sqlite_path;
  int db_pool_min, db_pool_max;
  int db_acquire_timeout_ms;
  int db_health_interval_ms;
  int db_max_lifetime_ms, db_idle_timeout_ms;
  int query_cache_mb, query_cache_ttl_ms;
  int slow_query_ms;
  /* auth */
  char *jwt_secret;
  char *supabase_jwt_secret;
  char *sso_cookie_domain;
  bool cookie_secure;
  char *cors_origins;     /* comma list, NULL = same-origin only */
  char *service_api_key;
  /* upstreams */
  char *llm_api_key, *llm_base_url, *llm_model;
  char *elevenlabs_api_key, *elevenlabs_base_url, *elevenlabs_voice_id;
  int upstream_timeout_ms;
  /* websocket */
  int ws_max_connections;
  int ws_max_message_bytes;
  int ws_send_buffer_bytes;
  int ws_ping_interval_ms;
  int ws_idle_timeout_ms;
  /* limits */
  int rate_limit_rps, rate_limit_burst;
  /* logging, identity */
  int log_level;          /* osb_log_level_t */
  osb_logfmt_t log_format;
  char *cluster_node_id;
  /* informational: the .env file that was read, or NULL */
  char *env_file;
} osb_config_t;

/* The loaded configuration. Valid after osb_config_load() succeeded. */
extern const osb_config_t *osb_cfg;

/* Load defaults, then `.env` (path from OSB_ENV_FILE or ./.env; variables
 * already in the environment win), then the environment. On error writes one
 * line to `err` and returns -OSB_ECONFIG. Warnings (legacy port variables)
 * are appended to `warn`, one per line. On success sets osb_cfg. */
int osb_config_load(osb_config_t *cfg, char *err, size_t errlen, char *warn, size_t warnlen);

/* Print "NAME=value" for every variable, secrets as ***, to `out`. */
void osb_config_print(const osb_config_t *cfg, FILE *out);

/* Free the strings owned by cfg. */
void osb_config_dispose(osb_config_t *cfg);

/* Redact the password of a URL like postgres://user:pw@host/db into `out`. */
void osb_config_redact_url(const char *url, char *out, size_t outlen);

#endif
