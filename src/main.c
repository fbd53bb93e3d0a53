/* main.c: wiring only. Sub-commands, configuration, start-up order of the
 * modules, signals and the graceful shutdown sequence. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
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
#include "apps/features.h"
#include "apps/market.h"
#include "apps/ops.h"
#include "apps/openapi.h"
#include "auth/auth.h"
#include "core/config.h"
#include "core/core.h"
#include "db/db.h"
#include "http/http.h"
#include "obs/health.h"
#include "obs/log.h"
#include "obs/metrics.h"
#include "apps/realtime_api.h"
#include "apps/dashboard.h"
#include "apps/top.h"
#include "realtime/realtime.h"
#include "upstream/upstream.h"
#include "apps/voice_routes.h"
#include "voice/voice.h"

static uv_loop_t loop;
static uv_signal_t sig_term, sig_int;
static uv_timer_t shutdown_timer, shutdown_poll, drain_timer;
/* RUNNING → (signal) DRAINING → (SHUTDOWN_DRAIN_DELAY_MS, or a second
 * signal) STOPPING; with no delay the signal goes straight to STOPPING. */
static enum { RUNNING, DRAINING, STOPPING } phase;
static int exit_code;

static void usage(FILE *out) {
  fprintf(out,
          "usage: osbackend [serve]              start the server\n"
          "       osbackend check-config         validate and print the configuration (secrets redacted)\n"
          "       osbackend migrate              apply pending database migrations\n"
          "       osbackend migrate --status     applied and pending migrations, the oldest release the schema supports\n"
          "       osbackend create-user --email E --role admin|user|service   (password on stdin)\n"
          "       osbackend top [--url ws://host:port/ws]   live figures in the terminal (token: OSB_TOKEN)\n"
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
  osb_handle_close((uv_handle_t *)&drain_timer);
  osb_handle_close((uv_handle_t *)&sig_term);
  osb_handle_close((uv_handle_t *)&sig_int);
}

/* Everything that could finish has finished (or the timeout hit): every
 * owner closes its handles and uv_run returns. */
static void finish_shutdown(void) {
  uv_timer_stop(&shutdown_timer);
  uv_timer_stop(&shutdown_poll);
  uv_timer_stop(&drain_timer);
  osb_http_server_stop();
  osb_dashboard_stop();
  osb_chat_close();
  osb_upstream_close();
  osb_rt_stop();
  osb_db_close();
  osb_auth_close();
  osb_core_close();
  close_main_handles();
}

/* After the timeout, connections gone is enough: a request still held by a
 * handler (detached: its client is gone) is answered by closing the modules
 * under it (its database or upstream callback fails with OSB_EUNAVAIL). */
static bool shutdown_timed_out;

static void on_shutdown_poll(uv_timer_t *t) {
  if (osb_http_open_connections() == 0 && (osb_http_inflight() == 0 || shutdown_timed_out)) {
    osb_log(OSB_LOG_INFO, "main", "all connections closed");
    finish_shutdown();
  }
}

/* The stop phase: the rest of the modules' hooks (listener closes, idle
 * connections close, WebSockets 1001, upstream deadline), then wait for
 * the connections to go. */
static void stop_phase(void) {
  phase = STOPPING;
  uv_timer_stop(&drain_timer);
  osb_core_shutdown();
  uv_timer_start(&shutdown_poll, on_shutdown_poll, 0, 20);
}

static void on_drain_end(uv_timer_t *t) {
  osb_log(OSB_LOG_INFO, "main", "drain window over (%d ms): closing the listener", osb_cfg->shutdown_drain_delay_ms);
  stop_phase();
}

static void on_shutdown_timeout(uv_timer_t *t) {
  if (phase == DRAINING) stop_phase();   /* config keeps the window below the timeout; be safe anyway */
  osb_log(OSB_LOG_WARN, "main", "shutdown timeout (%d ms): closing %zu connections, %zu requests in flight",
          osb_cfg->shutdown_timeout_ms, osb_http_open_connections(), osb_http_inflight());
  shutdown_timed_out = true;
  osb_upstream_abort_all();
  osb_http_server_force_close();
  /* closes complete on the next loop turn; the poll sees zero connections then */
  uv_timer_start(&shutdown_poll, on_shutdown_poll, 10, 10);
}

/* The first SIGTERM/SIGINT starts the drain phase (the hooks below
 * OSB_SHUTDOWN_STOP: /ready 503, Connection: close) and the one deadline,
 * SHUTDOWN_TIMEOUT_MS, which the window counts against; the stop phase
 * follows after SHUTDOWN_DRAIN_DELAY_MS. A second signal during the window
 * ends the window (the stop phase starts now); a signal during the stop
 * phase exits at once with status 1. */
static void on_signal(uv_signal_t *s, int signum) {
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (phase == STOPPING) {
    osb_log(OSB_LOG_WARN, "main", "second %s: exiting now", name);
    _exit(1);
  }
  if (phase == DRAINING) {
    osb_log(OSB_LOG_WARN, "main", "second %s: ending the drain window early", name);
    stop_phase();
    return;
  }
  osb_log(OSB_LOG_INFO, "main", "%s: shutting down (up to %d ms; readiness 503 for %d ms before the listener closes)",
          name, osb_cfg->shutdown_timeout_ms, osb_cfg->shutdown_drain_delay_ms);
  osb_core_shutdown_until(OSB_SHUTDOWN_STOP);   /* the drain phase's hooks */
  uv_timer_start(&shutdown_timer, on_shutdown_timeout, (uint64_t)osb_cfg->shutdown_timeout_ms, 0);
  if (osb_cfg->shutdown_drain_delay_ms > 0) {
    phase = DRAINING;
    uv_timer_start(&drain_timer, on_drain_end, (uint64_t)osb_cfg->shutdown_drain_delay_ms, 0);
  } else {
    stop_phase();
  }
}

static int serve(void) {
  signal(SIGPIPE, SIG_IGN);
  setenv("UV_THREADPOOL_SIZE", "8", 0);   /* SQLite readers + writer and Argon2 share the pool */
  uv_loop_init(&loop);
  osb_core_init(&loop);
  osb_metrics_init();
  osb_log_batch_start();
  osb_health_set("http", OSB_HEALTH_PASS, "listening", false);
  osb_features_init();

  osb_ops_routes();
  osb_openapi_routes();
  osb_dashboard_routes();
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
  if (osb_cfg->cluster_bus == OSB_BUS_POSTGRES) osb_rt_set_bus(osb_rt_bus_pg_new(&loop));
  else osb_health_set("cluster", OSB_HEALTH_PASS, "single instance (CLUSTER_BUS=local)", false);
  osb_realtime_api_routes();
  osb_market_routes();
  osb_crm_routes();
  if (osb_upstream_init(&loop) != 0) {
    exit_code = 1;
    goto out;
  }
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
  osb_dashboard_start(&loop);

  uv_signal_init(&loop, &sig_term);
  uv_signal_init(&loop, &sig_int);
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  uv_timer_init(&loop, &shutdown_timer);
  uv_timer_init(&loop, &shutdown_poll);
  uv_timer_init(&loop, &drain_timer);

  osb_log_fields(OSB_LOG_INFO, "main", "started",
                 json_pack("{s:s, s:s, s:s}", "version", OSB_VERSION, "node_id", osb_cfg->cluster_node_id,
                           "storage", osb_cfg->database_url ? "postgresql" : "sqlite"));
  uv_run(&loop, UV_RUN_DEFAULT);
  osb_log(OSB_LOG_INFO, "main", "stopped");

out:
  /* A failed start-up closes what was opened (all idempotent). */
  osb_http_server_stop();
  osb_dashboard_stop();
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
  osb_dashboard_stop();
  osb_rt_stop();
  osb_chat_dispose();
  osb_voice_dispose();
  osb_upstream_dispose();
  osb_http_server_dispose();
  osb_auth_dispose();
  osb_ops_dispose();
  osb_openapi_dispose();
  osb_health_reset();
  osb_metrics_reset();
  return exit_code;
}

/* ---- WORKERS > 1: a supervisor and N event-loop processes ----
 * The supervisor runs no loop: it forks the workers before anything else
 * is opened, each a complete instance (its own loop, pool, bus connection
 * and CLUSTER_NODE_ID "<id>-w<i>") listening on the same port with
 * SO_REUSEPORT (http/server.c). SIGTERM/SIGINT are passed on to every
 * worker (each one: a second ends the drain window), which drains as a
 * single process would; the supervisor exits
 * once all of them did (status 1 if any did not exit cleanly). A worker
 * that dies on its own is started again after a second, unless it failed
 * within START_GRACE_S of starting (a start-up failure: everything stops,
 * as a single process would). See docs/scale-out.md. */
#define START_GRACE_S 5

static volatile sig_atomic_t sup_signal, sup_signals;
static void sup_on_signal(int sig) {
  sup_signal = sig;
  sup_signals++;
}

/* PORT=0: the workers must share one port, so take one here, bound with
 * SO_REUSEPORT (and never listening, so it gets no connections) for the
 * supervisor's lifetime. Returns the fd or -1. */
static int reserve_port(osb_config_t *cfg) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  socklen_t len;
  if (strchr(cfg->host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, cfg->host, &a->sin6_addr) != 1) return -1;
    len = sizeof(*a);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    if (inet_pton(AF_INET, cfg->host, &a->sin_addr) != 1) return -1;
    len = sizeof(*a);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int on = 1;
  if (fd < 0) return -1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    close(fd);
    return -1;
  }
  cfg->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  return fd;
}

typedef struct sup {
  osb_config_t *cfg;
  int n, resv;
  pid_t *pids;
  time_t *born;
  char *base_id;
} sup_t;

static void sup_free(sup_t *S) {
  free(S->base_id);
  free(S->pids);
  free(S->born);
}

/* fork worker i: > 0 in the supervisor (the pid), 0 in the worker (which
 * is ready to serve: its own node id, default signal handling), < 0 on
 * failure. */
static pid_t spawn_worker(sup_t *S, int i) {
  pid_t parent = getpid();
  pid_t p = fork();
  if (p == 0) {
    /* a supervisor killed outright (kill -9) takes its workers along */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);   /* it died before the line above */
    if (S->resv >= 0) close(S->resv);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    free(S->cfg->cluster_node_id);
    S->cfg->cluster_node_id = osb_asprintf("%s-w%d", S->base_id, i + 1);
    sup_free(S);
    return 0;
  }
  if (p < 0) {
    osb_log(OSB_LOG_ERROR, "main", "fork failed: %s", strerror(errno));
    return -1;
  }
  S->pids[i] = p;
  S->born[i] = time(NULL);
  return p;
}

/* Returns the process's exit code (the supervisor's, or a worker's). */
static int run_workers(osb_config_t *cfg) {
  sup_t S = {cfg, cfg->workers, -1, NULL, NULL, NULL};
  if (cfg->port == 0 && (S.resv = reserve_port(cfg)) < 0) {
    osb_log(OSB_LOG_ERROR, "main", "WORKERS=%d: cannot reserve a port for PORT=0", S.n);
    return 1;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sup_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  S.pids = osb_calloc((size_t)S.n, sizeof(*S.pids));
  S.born = osb_calloc((size_t)S.n, sizeof(*S.born));
  S.base_id = osb_strdup(cfg->cluster_node_id);
  int alive = 0, code = 0;
  sig_atomic_t forwarded = 0;   /* signals passed on: each one is (a second ends the drain window) */
  bool told = false, failing = false;
  osb_log(OSB_LOG_INFO, "main", "starting %d workers on port %d (SO_REUSEPORT)", S.n, cfg->port);
  for (int i = 0; i < S.n && !failing; i++) {
    pid_t p = spawn_worker(&S, i);
    if (p == 0) return serve();
    if (p < 0) failing = true, code = 1;
    else alive++;
  }
  while (alive > 0) {
    if (sup_signals > forwarded || (failing && !told)) {
      forwarded = sup_signals;
      told = true;
      for (int i = 0; i < S.n; i++)
        if (S.pids[i] > 0) kill(S.pids[i], sup_signal ? sup_signal : SIGTERM);
    }
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p == 0) {
      usleep(50 * 1000);
      continue;
    }
    if (p < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int i = 0;
    while (i < S.n && S.pids[i] != p) i++;
    if (i == S.n) continue;
    S.pids[i] = 0;
    alive--;
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!clean) code = 1;
    if (sup_signal || failing) continue;
    int how = WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
    if (!clean && time(NULL) - S.born[i] < START_GRACE_S) {
      osb_log(OSB_LOG_ERROR, "main", "worker %d failed at start-up (%s %d): stopping", i + 1,
              WIFEXITED(st) ? "status" : "signal", how);
      failing = true;
      continue;
    }
    osb_log(OSB_LOG_WARN, "main", "worker %d (pid %ld) exited (%s %d): starting it again", i + 1, (long)p,
            WIFEXITED(st) ? "status" : "signal", how);
    sleep(1);
    if (sup_signal) continue;
    pid_t q = spawn_worker(&S, i);
    if (q == 0) return serve();
    if (q > 0) alive++;
  }
  if (S.resv >= 0) close(S.resv);
  sup_free(&S);
  osb_log(OSB_LOG_INFO, "main", "all workers stopped");
  return code;
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
  if (strcmp(cmd, "migrate") == 0) {
    if (argc > 2 && strcmp(argv[2], "--status") == 0) return osb_db_migrate_status_cli();
    if (argc > 2) {
      fprintf(stderr, "osbackend: unknown option '%s' for migrate\n", argv[2]);
      usage(stderr);
      return 2;
    }
    return osb_db_migrate_cli();
  }
  if (strcmp(cmd, "top") == 0) return osb_top_main(argc - 1, argv + 1);
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
  if (cfg.workers > 1) {
    rc = run_workers(&cfg);
  } else {
    rc = serve();
  }
  osb_config_dispose(&cfg);
  return rc;
}
