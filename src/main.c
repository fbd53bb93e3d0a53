/* main.c: wiring only. Sub-commands, configuration, start-up order of the
 * modules, signals and the graceful shutdown sequence. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>
#include <uv.h>

#include "apps/agents.h"
#include "apps/auth_routes.h"
#include "apps/chat.h"
#include "apps/crm.h"
#include "apps/market.h"
#include "auth/auth.h"
#include "core/config.h"
#include "core/core.h"
#include "db/db.h"
#include "http/http.h"
#include "obs/endpoints.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "apps/realtime_api.h"
#include "realtime/realtime.h"
#include "upstream/upstream.h"
#include "apps/voice_routes.h"
#include "voice/voice.h"

static uv_loop_t loop;
static uv_signal_t sig_term, sig_int;
static uv_timer_t shutdown_timer, shutdown_poll;
static bool stopping;
static int exit_code;

static void usage(FILE *out) {
  fprintf(out,
          "usage: osbackend [serve]              start the server\n"
          "       osbackend check-config         validate and print the configuration (secrets redacted)\n"
          "       osbackend migrate              apply pending database migrations\n"
          "       osbackend create-user --email E --role admin|user|service   (password on stdin)\n"
          "       osbackend version              print the version\n");
}

/* A handle still open when the loop ended is a bug in its owner (every
 * module closes its handles through its own close path): report it, close
 * it so uv_loop_close can succeed, and fail the exit status. */
static void close_walk(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  osb_log(OSB_LOG_ERROR, "main", "handle left open at exit: %s", uv_handle_type_name(uv_handle_get_type(h)));
  *(bool *)arg = true;
  uv_close(h, NULL);
}

static void close_main_handles(void) {
  osb_handle_close((uv_handle_t *)&shutdown_timer);
  osb_handle_close((uv_handle_t *)&shutdown_poll);
  osb_handle_close((uv_handle_t *)&sig_term);
  osb_handle_close((uv_handle_t *)&sig_int);
}

/* Everything that could finish has finished (or the timeout hit): every
 * owner closes its handles and uv_run returns. */
static void finish_shutdown(void) {
  uv_timer_stop(&shutdown_timer);
  uv_timer_stop(&shutdown_poll);
  osb_http_server_stop();
  osb_chat_close();
  osb_upstream_close();
  osb_rt_stop();
  osb_db_close();
  osb_auth_close();
  osb_core_close();
  close_main_handles();
}

/* Upstream calls still running at 80 % of the deadline fail (503), so
 * their requests answer before the connections are cut. */
static void upstream_shutdown_hook(void *ud) {
  osb_upstream_shutdown((uint64_t)osb_cfg->shutdown_timeout_ms * 4 / 5);
}

static void on_shutdown_poll(uv_timer_t *t) {
  if (osb_http_open_connections() == 0 && osb_http_inflight() == 0) {
    osb_log(OSB_LOG_INFO, "main", "all connections closed");
    finish_shutdown();
  }
}

static void on_shutdown_timeout(uv_timer_t *t) {
  osb_log(OSB_LOG_WARN, "main", "shutdown timeout (%d ms): closing %zu connections, %zu requests in flight",
          osb_cfg->shutdown_timeout_ms, osb_http_open_connections(), osb_http_inflight());
  osb_upstream_abort_all();
  osb_http_server_force_close();
  /* closes complete on the next loop turn; the poll sees zero connections then */
  uv_timer_start(&shutdown_poll, on_shutdown_poll, 10, 10);
}

static void on_signal(uv_signal_t *s, int signum) {
  if (stopping) {
    osb_log(OSB_LOG_WARN, "main", "second %s: exiting now", signum == SIGINT ? "SIGINT" : "SIGTERM");
    _exit(1);
  }
  stopping = true;
  osb_log(OSB_LOG_INFO, "main", "%s: shutting down (up to %d ms)", signum == SIGINT ? "SIGINT" : "SIGTERM",
          osb_cfg->shutdown_timeout_ms);
  osb_core_shutdown();   /* the modules' hooks, in their documented order */
  uv_timer_start(&shutdown_timer, on_shutdown_timeout, (uint64_t)osb_cfg->shutdown_timeout_ms, 0);
  uv_timer_start(&shutdown_poll, on_shutdown_poll, 0, 20);
}

static int serve(void) {
  signal(SIGPIPE, SIG_IGN);
  setenv("UV_THREADPOOL_SIZE", "8", 0);   /* SQLite readers + writer and Argon2 share the pool */
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_metrics_init();
  osb_log_batch_start();
  osb_health_set("http", OSB_HEALTH_PASS, "listening", false);

  osb_obs_routes();
  int rc = osb_db_init(osb_cfg);
  if (rc != 0) {
    exit_code = 1;
    goto out;
  }
  if (osb_auth_init() != 0) {
    exit_code = 1;
    goto out;
  }
  osb_auth_routes();
  osb_rt_start(&loop);
  osb_rt_set_store(osb_rt_store_db_new(&loop));
  osb_realtime_api_routes();
  osb_market_routes();
  osb_crm_routes();
  if (osb_upstream_init(&loop) != 0) {
    exit_code = 1;
    goto out;
  }
  osb_core_on_shutdown("upstream", OSB_SHUTDOWN_UPSTREAM, upstream_shutdown_hook, NULL);
  osb_voice_init();
  osb_upstream_routes();
  osb_voice_routes();
  osb_agents_routes();
  osb_chat_routes();
  rc = osb_http_server_start(&loop);
  if (rc != 0) {
    exit_code = 1;
    goto out;
  }

  uv_signal_init(&loop, &sig_term);
  uv_signal_init(&loop, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_timer_init(&loop, &shutdown_timer);
  uv_timer_init(&loop, &shutdown_poll);

  osb_log_fields(OSB_LOG_INFO, "main", "started",
                 json_pack("{s:s, s:s, s:s}", "version", OSB_VERSION, "node_id", osb_cfg->cluster_node_id,
                           "storage", osb_cfg->database_url ? "postgresql" : "sqlite"));
  uv_run(&loop, UV_RUN_DEFAULT);
  osb_log(OSB_LOG_INFO, "main", "stopped");

out:
  /* A failed start-up closes what was opened (all idempotent). */
  osb_http_server_stop();
  osb_chat_close();
  osb_upstream_close();
  osb_rt_stop();
  osb_db_close();
  osb_auth_close();
  osb_core_close();
  close_main_handles();
  uv_run(&loop, UV_RUN_DEFAULT);   /* the close callbacks */
  bool left = false;
  uv_walk(&loop, close_walk, &left);
  if (left) {
    uv_run(&loop, UV_RUN_DEFAULT);
    exit_code = 1;
  }
  rc = uv_loop_close(&loop);
  if (rc != 0) {
    osb_log(OSB_LOG_ERROR, "main", "event loop did not close cleanly: %s", uv_strerror(rc));
    exit_code = 1;
  }
  osb_core_shutdown_reset();
  osb_log_batch_stop();
  osb_rt_stop();
  osb_chat_dispose();
  osb_voice_dispose();
  osb_upstream_dispose();
  osb_http_server_dispose();
  osb_auth_dispose();
  osb_obs_dispose();
  osb_health_reset();
  osb_metrics_reset();
  return exit_code;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "serve";
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("osbackend %s\n", OSB_VERSION);
    return 0;
  }
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "migrate") == 0) return osb_db_migrate_cli();
  if (strcmp(cmd, "check-config") == 0) return osb_config_check_main(stdout, stderr);
  bool create_user = strcmp(cmd, "create-user") == 0;
  if (!create_user && strcmp(cmd, "serve") != 0) {
    fprintf(stderr, "osbackend: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
  }

  static osb_config_t cfg;
  char err[512] = "", warn[4096] = "";
  int rc = osb_config_load(&cfg, err, sizeof(err), warn, sizeof(warn));
  if (rc != 0) {
    fprintf(stderr, "%s\n", err);
    osb_config_dispose(&cfg);
    return 2;
  }
  osb_log_init(cfg.log_level, cfg.log_format);
  for (char *line = warn, *nl; *line; line = nl + 1) {
    nl = strchr(line, '\n');
    if (nl) *nl = 0;
    if (*line) osb_log(OSB_LOG_WARN, "config", "%s", line);
    if (!nl) break;
  }
  if (create_user) {
    rc = osb_auth_create_user_main(argc - 1, argv + 1);
    osb_config_dispose(&cfg);
    return rc;
  }
  rc = serve();
  osb_config_dispose(&cfg);
  return rc;
}
