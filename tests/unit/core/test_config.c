/* test_config.c: the configuration table, its parsers, .env and printing.
 *
 * Every test starts from an environment with none of the table's variables
 * set and OSB_ENV_FILE pointing at a file that does not exist, so the
 * machine running the tests cannot leak into them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/core.h"

#define NO_ENV_FILE "/nonexistent/osb-test.env"

static char env_path[64];

static void clear_env(void) {
  for (size_t i = 0; i < osb_config_nvars; i++) unsetenv(osb_config_vars[i].name);
}

static int setup(void **state) {
  clear_env();
  setenv("OSB_ENV_FILE", NO_ENV_FILE, 1);
  env_path[0] = 0;
  return 0;
}

static int teardown(void **state) {
  clear_env();
  unsetenv("OSB_ENV_FILE");
  if (env_path[0]) unlink(env_path);
  return 0;
}

/* Write a .env file and point OSB_ENV_FILE at it (removed in teardown). */
static void write_env_file(const char *text) {
  snprintf(env_path, sizeof(env_path), "/tmp/osb-test-env-XXXXXX");
  int fd = mkstemp(env_path);
  assert_true(fd >= 0);
  FILE *f = fdopen(fd, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  setenv("OSB_ENV_FILE", env_path, 1);
}

static char err[512], warn[2048];

static void load_ok(osb_config_t *cfg) {
  int rc = osb_config_load(cfg, err, sizeof(err), warn, sizeof(warn));
  if (rc != 0) fail_msg("load failed: %s", err);
}

static void load_fails(void) {
  osb_config_t cfg;
  assert_int_equal(osb_config_load(&cfg, err, sizeof(err), warn, sizeof(warn)), OSB_ECONFIG);
  assert_true(strncmp(err, "config: ", 8) == 0);
  assert_null(strchr(err, '\n'));
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle)) fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

static void assert_not_contains(const char *hay, const char *needle) {
  if (strstr(hay, needle)) fail_msg("\"%s\" contains \"%s\"", hay, needle);
}

/* ---- defaults ---- */

static void test_defaults_load(void **state) {
  osb_config_t cfg;
  load_ok(&cfg);
  assert_ptr_equal(osb_cfg, &cfg);
  assert_int_equal(cfg.port, 10000);
  assert_string_equal(cfg.host, "0.0.0.0");
  assert_int_equal(cfg.ws_port, 0);
  assert_int_equal(cfg.metrics_ws_port, 0);
  assert_int_equal(cfg.trust_proxy, 0);
  assert_int_equal(cfg.max_body_bytes, 1048576);
  assert_int_equal(cfg.http_header_timeout_ms, 10000);
  assert_int_equal(cfg.http_idle_timeout_ms, 60000);
  assert_int_equal(cfg.shutdown_timeout_ms, 10000);
  assert_int_equal(cfg.shutdown_drain_delay_ms, 0);
  assert_null(cfg.database_url);
  assert_string_equal(cfg.sqlite_path, "./data/osbackend.db");
  assert_int_equal(cfg.db_pool_min, 2);
  assert_int_equal(cfg.db_pool_max, 20);
  assert_int_equal(cfg.db_acquire_timeout_ms, 2000);
  assert_int_equal(cfg.db_health_interval_ms, 10000);
  assert_int_equal(cfg.db_max_lifetime_ms, 1800000);
  assert_int_equal(cfg.db_idle_timeout_ms, 600000);
  assert_int_equal(cfg.query_cache_mb, 64);
  assert_int_equal(cfg.query_cache_ttl_ms, 5000);
  assert_int_equal(cfg.slow_query_ms, 100);
  assert_null(cfg.jwt_secret);
  assert_null(cfg.supabase_jwt_secret);
  assert_null(cfg.sso_cookie_domain);
  assert_true(cfg.cookie_secure);
  assert_null(cfg.cors_origins);
  assert_null(cfg.service_api_key);
  assert_null(cfg.llm_api_key);
  assert_string_equal(cfg.llm_base_url, "https://api.openai.com/v1");
  assert_string_equal(cfg.llm_model, "gpt-4o-mini");
  assert_null(cfg.elevenlabs_api_key);
  assert_string_equal(cfg.elevenlabs_base_url, "https://api.elevenlabs.io");
  assert_string_equal(cfg.elevenlabs_voice_id, "21m00Tcm4TlvDq8ikWAM");   /* SPEC: a stock voice */
  assert_string_equal(cfg.elevenlabs_model_id, "eleven_multilingual_v2");
  assert_int_equal(cfg.llm_provider, OSB_LLM_OPENAI);
  assert_int_equal(cfg.llm_max_tokens, 1024);
  assert_int_equal(cfg.llm_context_messages, 20);
  assert_int_equal(cfg.tts_cache_mb, 256);
  assert_int_equal(cfg.llm_max_concurrency, 32);
  assert_int_equal(cfg.tts_max_concurrency, 8);
  assert_int_equal(cfg.breaker_min_calls, 5);
  assert_int_equal(cfg.breaker_failure_rate, 50);
  assert_int_equal(cfg.breaker_window_s, 30);
  assert_int_equal(cfg.breaker_slow_call_ms, 10000);
  assert_int_equal(cfg.breaker_open_ms, 30000);
  assert_int_equal(cfg.upstream_timeout_ms, 30000);
  assert_int_equal(cfg.ws_max_connections, 100000);
  assert_int_equal(cfg.ws_max_message_bytes, 65536);
  assert_int_equal(cfg.ws_send_buffer_bytes, 1048576);
  assert_int_equal(cfg.ws_ping_interval_ms, 25000);
  assert_int_equal(cfg.ws_idle_timeout_ms, 60000);
  assert_int_equal(cfg.rate_limit_rps, 50);
  assert_int_equal(cfg.rate_limit_burst, 100);
  assert_int_equal(cfg.log_level, 1 /* OSB_LOG_INFO */);
  assert_int_equal(cfg.log_format, OSB_LOGFMT_JSON);
  assert_null(cfg.env_file);
  assert_string_equal(warn, "");
  osb_config_dispose(&cfg);
  assert_null(osb_cfg);
}

static void test_default_node_id_is_host_and_pid(void **state) {
  osb_config_t cfg;
  load_ok(&cfg);
  char suffix[32];
  snprintf(suffix, sizeof(suffix), "-%ld", (long)getpid());
  size_t n = strlen(cfg.cluster_node_id), s = strlen(suffix);
  assert_true(n > s);
  assert_string_equal(cfg.cluster_node_id + n - s, suffix);
  osb_config_dispose(&cfg);
}

static void test_environment_overrides_default(void **state) {
  setenv("PORT", "8080", 1);
  setenv("LOG_LEVEL", "debug", 1);
  setenv("LOG_FORMAT", "TEXT", 1);
  setenv("CLUSTER_NODE_ID", "node-a", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.port, 8080);
  assert_int_equal(cfg.log_level, 0);
  assert_int_equal(cfg.log_format, OSB_LOGFMT_TEXT);
  assert_string_equal(cfg.cluster_node_id, "node-a");
  osb_config_dispose(&cfg);
}

/* The LLM defaults follow LLM_PROVIDER; explicit values win. */
static void test_llm_defaults_follow_the_provider(void **state) {
  setenv("LLM_PROVIDER", "anthropic", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.llm_provider, OSB_LLM_ANTHROPIC);
  assert_string_equal(cfg.llm_base_url, "https://api.anthropic.com/v1");
  assert_string_equal(cfg.llm_model, "claude-3-5-haiku-latest");
  osb_config_dispose(&cfg);
  setenv("LLM_BASE_URL", "http://127.0.0.1:8000/v1/", 1);
  setenv("LLM_MODEL", "local", 1);
  load_ok(&cfg);
  assert_string_equal(cfg.llm_base_url, "http://127.0.0.1:8000/v1");
  assert_string_equal(cfg.llm_model, "local");
  osb_config_dispose(&cfg);
  setenv("LLM_PROVIDER", "gemini", 1);
  char msg[256];
  assert_int_equal(osb_config_load(&cfg, msg, sizeof(msg), NULL, 0), OSB_ECONFIG);
  assert_non_null(strstr(msg, "LLM_PROVIDER"));
  setenv("LLM_PROVIDER", "openai", 1);
  setenv("BREAKER_FAILURE_RATE", "101", 1);
  assert_int_equal(osb_config_load(&cfg, msg, sizeof(msg), NULL, 0), OSB_ECONFIG);
  assert_non_null(strstr(msg, "BREAKER_FAILURE_RATE must be an integer from 1 to 100"));
}

static void test_empty_value_means_default(void **state) {
  setenv("PORT", "", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.port, 10000);
  osb_config_dispose(&cfg);
}

/* ---- integers ---- */

static void test_int_rejects_text(void **state) {
  setenv("DB_POOL_MAX", "abc", 1);
  load_fails();
  assert_string_equal(err, "config: DB_POOL_MAX must be an integer from 1 to 1000 (got \"abc\")");
}

static void test_int_rejects_trailing_junk(void **state) {
  setenv("DB_POOL_MAX", "20x", 1);
  load_fails();
  assert_contains(err, "DB_POOL_MAX must be an integer");
  assert_contains(err, "(got \"20x\")");
}

static void test_int_rejects_surrounding_space(void **state) {
  setenv("PORT", " 80", 1);
  load_fails();
  assert_contains(err, "config: PORT must be a port number from 0 to 65535");
}

static void test_int_rejects_above_max(void **state) {
  setenv("DB_POOL_MAX", "1001", 1);
  load_fails();
  assert_string_equal(err, "config: DB_POOL_MAX must be an integer from 1 to 1000 (got \"1001\")");
}

static void test_int_rejects_below_min(void **state) {
  setenv("DB_POOL_MAX", "0", 1);
  load_fails();
  assert_contains(err, "DB_POOL_MAX must be an integer from 1 to 1000 (got \"0\")");
}

static void test_int_rejects_negative(void **state) {
  setenv("MAX_BODY_BYTES", "-1", 1);
  load_fails();
  assert_contains(err, "MAX_BODY_BYTES must be an integer from 64 to");
}

static void test_int_rejects_overflow(void **state) {
  setenv("RATE_LIMIT_RPS", "99999999999999999999999", 1);
  load_fails();
  assert_contains(err, "RATE_LIMIT_RPS must be an integer");
}

static void test_int_rejects_value_above_int_range(void **state) {
  setenv("WS_MAX_MESSAGE_BYTES", "4294967297", 1);
  load_fails();
  assert_contains(err, "WS_MAX_MESSAGE_BYTES must be an integer");
}

/* ---- ports ---- */

static void test_port_zero_accepted(void **state) {
  setenv("PORT", "0", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.port, 0);
  osb_config_dispose(&cfg);
}

static void test_port_rejects_65536(void **state) {
  setenv("PORT", "65536", 1);
  load_fails();
  assert_string_equal(err, "config: PORT must be a port number from 0 to 65535 (got \"65536\")");
}

/* ---- booleans ---- */

static void test_bool_accepts_every_spelling(void **state) {
  static const char *const yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "ON"};
  static const char *const no[] = {"0", "false", "no", "off", "False", "NO", "Off"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(yes); i++) {
    osb_config_t cfg;
    setenv("COOKIE_SECURE", yes[i], 1);
    load_ok(&cfg);
    assert_true(cfg.cookie_secure);
    osb_config_dispose(&cfg);
    setenv("COOKIE_SECURE", no[i], 1);
    load_ok(&cfg);
    assert_false(cfg.cookie_secure);
    osb_config_dispose(&cfg);
  }
}

static void test_bool_rejects_other_words(void **state) {
  setenv("COOKIE_SECURE", "maybe", 1);
  load_fails();
  assert_string_equal(err, "config: COOKIE_SECURE must be one of 1/0/true/false/yes/no/on/off (got \"maybe\")");
}

/* TRUST_PROXY counts hops now; 1 and 0 keep their old meaning. */
static void test_trust_proxy_is_a_hop_count(void **state) {
  static const char *const ok[] = {"0", "1", "2", "16"};
  static const int want[] = {0, 1, 2, 16};
  for (size_t i = 0; i < OSB_ARRAY_LEN(ok); i++) {
    osb_config_t cfg;
    setenv("TRUST_PROXY", ok[i], 1);
    load_ok(&cfg);
    assert_int_equal(cfg.trust_proxy, want[i]);
    osb_config_dispose(&cfg);
  }
  setenv("TRUST_PROXY", "17", 1);
  load_fails();
  assert_string_equal(err, "config: TRUST_PROXY must be an integer from 0 to 16 (got \"17\")");
}

/* ---- enums ---- */

static void test_enum_rejects_unknown_level(void **state) {
  setenv("LOG_LEVEL", "verbose", 1);
  load_fails();
  assert_string_equal(err, "config: LOG_LEVEL must be one of debug|info|warn|error (got \"verbose\")");
}

static void test_enum_rejects_unknown_format(void **state) {
  setenv("LOG_FORMAT", "xml", 1);
  load_fails();
  assert_string_equal(err, "config: LOG_FORMAT must be one of json|text (got \"xml\")");
}

/* ---- URLs ---- */

static void test_url_rejects_other_scheme_without_echoing_password(void **state) {
  setenv("DATABASE_URL", "mysql://app:hunter2pw@db/app", 1);
  load_fails();
  assert_contains(err, "config: DATABASE_URL must start with postgres:// or postgresql://");
  assert_not_contains(err, "hunter2pw");
}

static void test_url_accepts_both_postgres_schemes(void **state) {
  static const char *const urls[] = {"postgres://u@h/db", "postgresql://u@h:5433/db", "postgres:///db"};
  setenv("JWT_SECRET", "0123456789abcdef0123456789abcdef", 1);
  for (size_t i = 0; i < OSB_ARRAY_LEN(urls); i++) {
    osb_config_t cfg;
    setenv("DATABASE_URL", urls[i], 1);
    load_ok(&cfg);
    assert_string_equal(cfg.database_url, urls[i]);
    osb_config_dispose(&cfg);
  }
}

static void test_http_url_rejects_missing_host(void **state) {
  setenv("LLM_BASE_URL", "https://", 1);
  load_fails();
  assert_contains(err, "config: LLM_BASE_URL must start with https:// or http:// followed by a host");
}

static void test_http_url_rejects_other_scheme(void **state) {
  setenv("ELEVENLABS_BASE_URL", "ftp://example.com", 1);
  load_fails();
  assert_contains(err, "config: ELEVENLABS_BASE_URL must start with https:// or http://");
}

static void test_http_url_trailing_slash_dropped(void **state) {
  setenv("LLM_BASE_URL", "http://127.0.0.1:9999/v1/", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_string_equal(cfg.llm_base_url, "http://127.0.0.1:9999/v1");
  osb_config_dispose(&cfg);
}

/* ---- strings ---- */

static void test_string_rejects_control_characters(void **state) {
  setenv("LLM_MODEL", "gpt\r\nX-Injected: 1", 1);
  load_fails();
  assert_contains(err, "config: LLM_MODEL must not contain control characters");
  assert_null(strchr(err, '\r'));
}

static void test_host_rejects_spaces(void **state) {
  setenv("HOST", "0.0.0.0 ", 1);
  load_fails();
  assert_contains(err, "config: HOST must be an IP address or host name");
}

static void test_secret_too_short_not_echoed(void **state) {
  setenv("JWT_SECRET", "tooshortsecretvalue", 1);
  load_fails();
  assert_contains(err, "config: JWT_SECRET must be 32 to 4096 characters (got 19 characters)");
  assert_not_contains(err, "tooshortsecretvalue");
}

static void test_cors_origins_normalised(void **state) {
  setenv("CORS_ORIGINS", " https://a.example.com , http://localhost:5173,,", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_string_equal(cfg.cors_origins, "https://a.example.com,http://localhost:5173");
  osb_config_dispose(&cfg);
}

static void test_cors_origins_reject_path(void **state) {
  setenv("CORS_ORIGINS", "https://a.example.com/", 1);
  load_fails();
  assert_contains(err, "config: CORS_ORIGINS must be a comma list of origins");
}

static void test_cookie_domain_rejects_bad_characters(void **state) {
  setenv("SSO_COOKIE_DOMAIN", ".example.com;evil", 1);
  load_fails();
  assert_contains(err, "config: SSO_COOKIE_DOMAIN must be a cookie domain");
}

/* ---- rules across variables ---- */

static void test_jwt_secret_required_with_database_url(void **state) {
  setenv("DATABASE_URL", "postgres://osb@127.0.0.1:5432/osb", 1);
  load_fails();
  assert_contains(err, "config: JWT_SECRET is required when DATABASE_URL is set");
}

static void test_pool_min_above_max_rejected(void **state) {
  setenv("DB_POOL_MIN", "30", 1);
  setenv("DB_POOL_MAX", "20", 1);
  load_fails();
  assert_string_equal(err, "config: DB_POOL_MIN (30) must not exceed DB_POOL_MAX (20)");
}

static void test_pool_min_equal_max_accepted(void **state) {
  setenv("DB_POOL_MIN", "5", 1);
  setenv("DB_POOL_MAX", "5", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.db_pool_min, 5);
  assert_int_equal(cfg.db_pool_max, 5);
  osb_config_dispose(&cfg);
}

static void test_drain_delay_must_be_below_shutdown_timeout(void **state) {
  setenv("SHUTDOWN_TIMEOUT_MS", "5000", 1);
  setenv("SHUTDOWN_DRAIN_DELAY_MS", "5000", 1);
  load_fails();
  assert_contains(err, "config: SHUTDOWN_DRAIN_DELAY_MS (5000) must be below SHUTDOWN_TIMEOUT_MS (5000)");
  setenv("SHUTDOWN_DRAIN_DELAY_MS", "4999", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.shutdown_drain_delay_ms, 4999);
  osb_config_dispose(&cfg);
  /* 0 is always fine, even with SHUTDOWN_TIMEOUT_MS=0 */
  setenv("SHUTDOWN_TIMEOUT_MS", "0", 1);
  setenv("SHUTDOWN_DRAIN_DELAY_MS", "0", 1);
  load_ok(&cfg);
  osb_config_dispose(&cfg);
}

static void test_failed_load_keeps_previous_config(void **state) {
  osb_config_t good, bad;
  load_ok(&good);
  setenv("PORT", "nope", 1);
  assert_int_equal(osb_config_load(&bad, err, sizeof(err), warn, sizeof(warn)), OSB_ECONFIG);
  assert_ptr_equal(osb_cfg, &good);
  assert_null(bad.host);
  osb_config_dispose(&good);
}

/* ---- legacy ports ---- */

static void test_ws_port_equal_to_port_is_silent(void **state) {
  setenv("PORT", "8080", 1);
  setenv("WS_PORT", "8080", 1);
  setenv("METRICS_WS_PORT", "8080", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_string_equal(warn, "");
  osb_config_dispose(&cfg);
}

static void test_ws_port_different_warns_and_loads(void **state) {
  setenv("WS_PORT", "8082", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_string_equal(warn, "WS_PORT=8082 is ignored: WebSockets are served on PORT=10000 at /ws\n");
  osb_config_dispose(&cfg);
}

static void test_metrics_ws_port_different_warns(void **state) {
  setenv("METRICS_WS_PORT", "8083", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_true(strncmp(warn, "METRICS_WS_PORT=8083 is ignored:", 32) == 0);
  assert_contains(warn, "PORT=10000");
  osb_config_dispose(&cfg);
}

static void test_warnings_may_be_discarded(void **state) {
  setenv("WS_PORT", "8082", 1);
  osb_config_t cfg;
  assert_int_equal(osb_config_load(&cfg, err, sizeof(err), NULL, 0), 0);
  osb_config_dispose(&cfg);
}

/* ---- .env ---- */

static void test_dotenv_syntax(void **state) {
  write_env_file(
      "# a comment\n"
      "\n"
      "PORT=8088\n"
      "export HOST=127.0.0.1\n"
      "  LLM_MODEL = \"my model \\\"x\\\"\"  # trailing comment\n"
      "ELEVENLABS_VOICE_ID='single # not a comment'\n"
      "SQLITE_PATH=/tmp/x.db # comment\r\n"
      "SSO_COOKIE_DOMAIN=.example.com\n"
      "SSO_COOKIE_DOMAIN=.later.example.com\n"
      "LOG_FORMAT=text");
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.port, 8088);
  assert_string_equal(cfg.host, "127.0.0.1");
  assert_string_equal(cfg.llm_model, "my model \"x\"");
  assert_string_equal(cfg.elevenlabs_voice_id, "single # not a comment");
  assert_string_equal(cfg.sqlite_path, "/tmp/x.db");
  assert_string_equal(cfg.sso_cookie_domain, ".later.example.com");
  assert_int_equal(cfg.log_format, OSB_LOGFMT_TEXT);
  assert_string_equal(cfg.env_file, env_path);
  osb_config_dispose(&cfg);
}

static void test_dotenv_environment_wins(void **state) {
  write_env_file("PORT=8088\nLLM_MODEL=from-file\n");
  setenv("PORT", "9099", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_int_equal(cfg.port, 9099);
  assert_string_equal(cfg.llm_model, "from-file");
  osb_config_dispose(&cfg);
}

static void test_dotenv_missing_file_is_fine(void **state) {
  setenv("OSB_ENV_FILE", NO_ENV_FILE, 1);
  osb_config_t cfg;
  load_ok(&cfg);
  assert_null(cfg.env_file);
  osb_config_dispose(&cfg);
}

static void test_dotenv_bad_line_names_file_and_line(void **state) {
  write_env_file("PORT=1\nthis is not an assignment\n");
  load_fails();
  char want[128];
  snprintf(want, sizeof(want), "config: %s:2: expected KEY=VALUE", env_path);
  assert_string_equal(err, want);
}

static void test_dotenv_unterminated_quote_rejected(void **state) {
  write_env_file("LLM_MODEL=\"open\n");
  load_fails();
  assert_contains(err, ":1: unterminated quoted value");
}

static void test_dotenv_bad_value_names_variable(void **state) {
  write_env_file("DB_POOL_MAX=lots\n");
  load_fails();
  assert_contains(err, "config: DB_POOL_MAX in .env must be an integer from 1 to 1000 (got \"lots\")");
}

static void test_dotenv_unknown_variable_warns(void **state) {
  write_env_file("DB_POOL_MAXX=5\n");
  osb_config_t cfg;
  load_ok(&cfg);
  assert_contains(warn, ":1: unknown variable DB_POOL_MAXX ignored\n");
  osb_config_dispose(&cfg);
}

/* ---- printing ---- */

static char *print_config(const osb_config_t *cfg) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  assert_non_null(f);
  osb_config_print(cfg, f);
  fclose(f);
  return text;
}

static void test_print_redacts_secrets_and_url_password(void **state) {
  setenv("DATABASE_URL", "postgres://app:pgPassw0rdXYZ@db.internal:5432/osb?sslmode=require", 1);
  setenv("JWT_SECRET", "jwtsecret-0123456789-0123456789-abcdef", 1);
  setenv("LLM_API_KEY", "sk-llmkey-abcdef", 1);
  setenv("SERVICE_API_KEY", "service-key-0123456789", 1);
  setenv("ELEVENLABS_API_KEY", "eleven-key-abc", 1);
  setenv("SUPABASE_JWT_SECRET", "supabase-secret-xyz", 1);
  osb_config_t cfg;
  load_ok(&cfg);
  char *text = print_config(&cfg);
  assert_not_contains(text, "pgPassw0rdXYZ");
  assert_not_contains(text, "jwtsecret-0123456789");
  assert_not_contains(text, "sk-llmkey-abcdef");
  assert_not_contains(text, "service-key-0123456789");
  assert_not_contains(text, "eleven-key-abc");
  assert_not_contains(text, "supabase-secret-xyz");
  assert_contains(text, "\nDATABASE_URL=postgres://app:***@db.internal:5432/osb?sslmode=require\n");
  assert_contains(text, "\nJWT_SECRET=***\n");
  assert_contains(text, "\nLLM_API_KEY=***\n");
  free(text);
  osb_config_dispose(&cfg);
}

static void test_print_shows_unset_as_empty(void **state) {
  osb_config_t cfg;
  load_ok(&cfg);
  char *text = print_config(&cfg);
  assert_contains(text, "\nJWT_SECRET=\n");
  assert_contains(text, "\nDATABASE_URL=\n");
  assert_contains(text, "\nWS_PORT=\n");
  assert_contains(text, "PORT=10000\n");
  assert_contains(text, "\nCOOKIE_SECURE=1\n");
  assert_contains(text, "\nLOG_LEVEL=info\n");
  free(text);
  osb_config_dispose(&cfg);
}

static void test_print_follows_table_order(void **state) {
  osb_config_t cfg;
  load_ok(&cfg);
  char *text = print_config(&cfg);
  const char *p = text;
  for (size_t i = 0; i < osb_config_nvars; i++) {
    size_t n = strlen(osb_config_vars[i].name);
    assert_true(strncmp(p, osb_config_vars[i].name, n) == 0 && p[n] == '=');
    p = strchr(p, '\n');
    assert_non_null(p);
    p++;
  }
  assert_string_equal(p, "");
  free(text);
  osb_config_dispose(&cfg);
}

static void test_redact_url_forms(void **state) {
  char out[256];
  osb_config_redact_url("postgres://user:pw@host/db", out, sizeof(out));
  assert_string_equal(out, "postgres://user:***@host/db");
  osb_config_redact_url("postgres://user@host/db", out, sizeof(out));
  assert_string_equal(out, "postgres://user@host/db");
  osb_config_redact_url("postgres://host:5432/db", out, sizeof(out));
  assert_string_equal(out, "postgres://host:5432/db");
  osb_config_redact_url("postgres://u:p@ss/w@rd@host/db", out, sizeof(out));
  assert_string_equal(out, "postgres://u:***@host/db");
  osb_config_redact_url("postgresql://host/db?user=u&password=secretpw&sslmode=off", out, sizeof(out));
  assert_string_equal(out, "postgresql://host/db?user=u&password=***&sslmode=off");
}

static void test_redact_url_truncation_never_leaks(void **state) {
  char out[20];
  osb_config_redact_url("postgres://u:abcdefghijklmnop@host/db", out, sizeof(out));
  assert_not_contains(out, "abc");
  assert_true(strlen(out) < sizeof(out));
}

/* ---- the table itself ---- */

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void test_key_and_secret_names_are_secret(void **state) {
  for (size_t i = 0; i < osb_config_nvars; i++) {
    const osb_config_var_t *v = &osb_config_vars[i];
    if (ends_with(v->name, "_KEY") || ends_with(v->name, "_SECRET"))
      if (!(v->flags & OSB_CFG_SECRET)) fail_msg("%s is not marked secret", v->name);
  }
}

static void test_find_and_describe(void **state) {
  const osb_config_var_t *v = osb_config_find("DB_POOL_MAX");
  assert_non_null(v);
  char d[128];
  osb_config_describe(v, d, sizeof(d));
  assert_string_equal(d, "integer 1..1000");
  osb_config_describe(osb_config_find("LOG_LEVEL"), d, sizeof(d));
  assert_string_equal(d, "debug|info|warn|error");
  assert_null(osb_config_find("NOPE"));
}

/* docs/configuration.md must list every variable of the table. */
static void test_docs_list_every_variable(void **state) {
  const char *src = getenv("OSB_TEST_SOURCE_DIR");
  if (!src) skip();
  char path[1024];
  snprintf(path, sizeof(path), "%s/docs/configuration.md", src);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s", path);
  static char doc[65536];
  size_t n = fread(doc, 1, sizeof(doc) - 1, f);
  fclose(f);
  doc[n] = 0;
  for (size_t i = 0; i < osb_config_nvars; i++) {
    char row[128];
    snprintf(row, sizeof(row), "| `%s` |", osb_config_vars[i].name);
    if (!strstr(doc, row)) fail_msg("docs/configuration.md has no row for %s", osb_config_vars[i].name);
  }
}

/* ---- check-config ---- */

static void test_check_main_fails_with_one_line(void **state) {
  setenv("PORT", "http", 1);
  char *o = NULL, *e = NULL;
  size_t ol = 0, el = 0;
  FILE *out = open_memstream(&o, &ol), *errf = open_memstream(&e, &el);
  assert_int_equal(osb_config_check_main(out, errf), 1);
  fclose(out);
  fclose(errf);
  assert_string_equal(o, "");
  assert_string_equal(e, "config: PORT must be a port number from 0 to 65535 (got \"http\")\n");
  free(o);
  free(e);
}

static void test_check_main_prints_config_and_warnings(void **state) {
  setenv("WS_PORT", "8082", 1);
  setenv("LLM_API_KEY", "sk-check-config-secret", 1);
  char *o = NULL, *e = NULL;
  size_t ol = 0, el = 0;
  FILE *out = open_memstream(&o, &ol), *errf = open_memstream(&e, &el);
  assert_int_equal(osb_config_check_main(out, errf), 0);
  fclose(out);
  fclose(errf);
  assert_true(strncmp(o, "PORT=10000\n", 11) == 0);
  assert_contains(o, "\nLLM_API_KEY=***\n");
  assert_not_contains(o, "sk-check-config-secret");
  assert_contains(e, "config: warning: WS_PORT=8082 is ignored");
  assert_null(osb_cfg);
  free(o);
  free(e);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
    T(test_defaults_load),
    T(test_default_node_id_is_host_and_pid),
    T(test_environment_overrides_default),
    T(test_empty_value_means_default),
    T(test_llm_defaults_follow_the_provider),
    T(test_int_rejects_text),
    T(test_int_rejects_trailing_junk),
    T(test_int_rejects_surrounding_space),
    T(test_int_rejects_above_max),
    T(test_int_rejects_below_min),
    T(test_int_rejects_negative),
    T(test_int_rejects_overflow),
    T(test_int_rejects_value_above_int_range),
    T(test_port_zero_accepted),
    T(test_port_rejects_65536),
    T(test_bool_accepts_every_spelling),
    T(test_bool_rejects_other_words),
    T(test_trust_proxy_is_a_hop_count),
    T(test_enum_rejects_unknown_level),
    T(test_enum_rejects_unknown_format),
    T(test_url_rejects_other_scheme_without_echoing_password),
    T(test_url_accepts_both_postgres_schemes),
    T(test_http_url_rejects_missing_host),
    T(test_http_url_rejects_other_scheme),
    T(test_http_url_trailing_slash_dropped),
    T(test_string_rejects_control_characters),
    T(test_host_rejects_spaces),
    T(test_secret_too_short_not_echoed),
    T(test_cors_origins_normalised),
    T(test_cors_origins_reject_path),
    T(test_cookie_domain_rejects_bad_characters),
    T(test_jwt_secret_required_with_database_url),
    T(test_pool_min_above_max_rejected),
    T(test_pool_min_equal_max_accepted),
    T(test_drain_delay_must_be_below_shutdown_timeout),
    T(test_failed_load_keeps_previous_config),
    T(test_ws_port_equal_to_port_is_silent),
    T(test_ws_port_different_warns_and_loads),
    T(test_metrics_ws_port_different_warns),
    T(test_warnings_may_be_discarded),
    T(test_dotenv_syntax),
    T(test_dotenv_environment_wins),
    T(test_dotenv_missing_file_is_fine),
    T(test_dotenv_bad_line_names_file_and_line),
    T(test_dotenv_unterminated_quote_rejected),
    T(test_dotenv_bad_value_names_variable),
    T(test_dotenv_unknown_variable_warns),
    T(test_print_redacts_secrets_and_url_password),
    T(test_print_shows_unset_as_empty),
    T(test_print_follows_table_order),
    T(test_redact_url_forms),
    T(test_redact_url_truncation_never_leaks),
    T(test_key_and_secret_names_are_secret),
    T(test_find_and_describe),
    T(test_docs_list_every_variable),
    T(test_check_main_fails_with_one_line),
    T(test_check_main_prints_config_and_warnings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
