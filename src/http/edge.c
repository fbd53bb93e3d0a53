/* edge.c: connection admission. Who may hold a connection, counted where
 * the connections are made and released (server.c's accept and close path):
 *
 *  - per client address (MAX_CONNECTIONS_PER_IP, HTTP and WebSocket
 *    together): a table of counts keyed by the address (an IPv6 address by
 *    its /64, which is what one subscriber is given). Without TRUST_PROXY the
 *    peer is counted at accept and refused there; with it the peer is the
 *    proxy, so a connection is counted under the forwarded address once a
 *    head names it (and moved when a later head on the same connection names
 *    another), and refused with 429;
 *  - the fd budget: connections stop at the soft RLIMIT_NOFILE minus a
 *    reserve kept for the database, SQLite, logs and upstream calls, so a
 *    flood cannot starve those of descriptors. Past it a connection is
 *    accepted and closed at once;
 *  - EMFILE anyway (something else used the reserve up): libuv's own reserve
 *    descriptor normally absorbs it silently; should libuv report it, the
 *    listener's backlog is drained with our reserve fd (the libuv/EMFILE
 *    trick), so the loop never spins on a pending connection it cannot take.
 *
 * Every refusal increments http_server_connections_refused_total{reason}
 * and is logged at most once a second per reason, with the number of
 * refusals the quiet second swallowed. */
#include "http/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/config.h"
#include "obs/log.h"
#include "obs/metrics.h"

/* One address's count. Owned by the table; freed when its count drops to 0. */
struct osb__addr {
  struct osb__addr *next;      /* hash chain */
  uint32_t n;                  /* connections counted under this address */
  uint8_t key[17];             /* family byte + 16 address bytes (v6: the /64) */
};

static struct {
  osb__addr_t **b;
  size_t nb, n;
  unsigned char sipkey[crypto_shorthash_KEYBYTES];
  size_t fd_budget;            /* most connections at once; 0 = no limit known */
  int reserve_fd;              /* for the EMFILE trick; -1 while spent */
  osb_series_t *s_per_ip, *s_fd;
  struct { uint64_t last_ms; uint64_t quiet; } lg[2];
} E = {.reserve_fd = -1};

enum { LOG_PER_IP, LOG_FD };

/* Reserve descriptors kept out of the connections' reach: the DB pool, the
 * SQLite files, the log, libuv's own, curl's sockets. */
static size_t fd_reserve(size_t limit) {
  size_t r = limit / 20;
  return r < 64 ? 64 : r;
}

void osb__edge_init(void) {
  crypto_shorthash_keygen(E.sipkey);
  E.nb = 256;
  E.b = osb_calloc(E.nb, sizeof(*E.b));
  E.n = 0;
  struct rlimit rl;
  E.fd_budget = 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    size_t lim = (size_t)rl.rlim_cur, res = fd_reserve(lim);
    E.fd_budget = lim > res * 2 ? lim - res : lim / 2;
  }
  if (E.reserve_fd < 0) E.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  osb_metric_t *m = osb_metric_counter("http_server_connections_refused_total",
                                       "Connections refused at the edge, by reason", "reason");
  const char *per_ip[] = {"per_ip"}, *fd[] = {"fd_limit"};
  E.s_per_ip = osb_metric_series(m, per_ip, 1);
  E.s_fd = osb_metric_series(m, fd, 1);
  memset(E.lg, 0, sizeof(E.lg));
}

void osb__edge_dispose(void) {
  for (size_t i = 0; i < E.nb; i++) {
    osb__addr_t *a = E.b[i];
    while (a) {
      osb__addr_t *next = a->next;
      free(a);
      a = next;
    }
  }
  free(E.b);
  E.b = NULL;
  E.nb = E.n = 0;
  if (E.reserve_fd >= 0) close(E.reserve_fd);
  E.reserve_fd = -1;
}

size_t osb__edge_fd_budget(void) { return E.fd_budget; }

/* ---- the table ---- */

/* The counting key of a textual address; false if it is not one. */
static bool addr_key(const char *ip, uint8_t key[17]) {
  memset(key, 0, 17);
  if (strchr(ip, ':')) {
    if (uv_inet_pton(AF_INET6, ip, key + 1) != 0) return false;
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(key + 1, v4mapped, 12) == 0) {
      memmove(key + 1, key + 13, 4);
      memset(key + 5, 0, 12);
      key[0] = 4;
    } else {
      key[0] = 6;
      memset(key + 9, 0, 8);   /* one /64: what one subscriber gets */
    }
    return true;
  }
  if (uv_inet_pton(AF_INET, ip, key + 1) != 0) return false;
  key[0] = 4;
  return true;
}

static size_t bucket_of(const uint8_t key[17], size_t nb) {
  uint64_t h;
  crypto_shorthash((unsigned char *)&h, key, 17, E.sipkey);
  return (size_t)(h & (nb - 1));
}

static void grow(void) {
  size_t nb = E.nb * 2;
  osb__addr_t **b = osb_calloc(nb, sizeof(*b));
  for (size_t i = 0; i < E.nb; i++) {
    osb__addr_t *a = E.b[i];
    while (a) {
      osb__addr_t *next = a->next;
      size_t k = bucket_of(a->key, nb);
      a->next = b[k];
      b[k] = a;
      a = next;
    }
  }
  free(E.b);
  E.b = b;
  E.nb = nb;
}

static osb__addr_t *addr_get(const uint8_t key[17], bool create) {
  size_t k = bucket_of(key, E.nb);
  for (osb__addr_t *a = E.b[k]; a; a = a->next)
    if (memcmp(a->key, key, 17) == 0) return a;
  if (!create) return NULL;
  if (E.n >= E.nb) {
    grow();
    k = bucket_of(key, E.nb);
  }
  osb__addr_t *a = osb_calloc(1, sizeof(*a));
  memcpy(a->key, key, 17);
  a->next = E.b[k];
  E.b[k] = a;
  E.n++;
  return a;
}

static void addr_put(osb__addr_t *a) {
  osb_assert(a->n > 0);
  if (--a->n) return;
  size_t k = bucket_of(a->key, E.nb);
  for (osb__addr_t **pp = &E.b[k]; *pp; pp = &(*pp)->next) {
    if (*pp == a) {
      *pp = a->next;
      free(a);
      E.n--;
      return;
    }
  }
  osb_assert(!"address entry not in its bucket");
}

size_t osb__edge_count(const char *ip) {
  uint8_t key[17];
  if (!addr_key(ip, key)) return 0;
  osb__addr_t *a = addr_get(key, false);
  return a ? a->n : 0;
}

/* ---- refusals ---- */

static void refused(int which, const char *ip) {
  osb_series_inc(which == LOG_PER_IP ? E.s_per_ip : E.s_fd, 1);
  uint64_t now = uv_now(osb__srv.loop);
  if (E.lg[which].last_ms && now - E.lg[which].last_ms < 1000) {
    E.lg[which].quiet++;
    return;
  }
  const osb_log_kv_t kv[] = {
    OSB_KV_S("ip", ip ? ip : ""),
    OSB_KV_I("limit", which == LOG_PER_IP ? (int64_t)osb_cfg->max_connections_per_ip : (int64_t)E.fd_budget),
    OSB_KV_I("open_connections", (int64_t)osb__srv.nconns),
    OSB_KV_I("suppressed", (int64_t)E.lg[which].quiet),
  };
  osb_log_kv(OSB_LOG_WARN, "http",
             which == LOG_PER_IP ? "connection refused: too many connections from this address"
                                 : "connection refused: out of file descriptors",
             kv, OSB_ARRAY_LEN(kv));
  E.lg[which].last_ms = now;
  E.lg[which].quiet = 0;
}

/* ---- admission ---- */

static bool over_limit(const osb__addr_t *a) {
  return osb_cfg->max_connections_per_ip > 0 && a->n > (uint32_t)osb_cfg->max_connections_per_ip;
}

bool osb__edge_admit(osb__conn_t *c) {
  if (E.fd_budget && osb__srv.nconns > E.fd_budget) {
    refused(LOG_FD, c->http->ip);
    return false;
  }
  if (osb_cfg->trust_proxy > 0) return true;   /* counted once a head names the client */
  return osb__edge_account(c, c->http->ip) == 0;
}

int osb__edge_account(osb__conn_t *c, const char *ip) {
  uint8_t key[17];
  if (!addr_key(ip, key)) return 0;            /* no address (a unix socket): nothing to count */
  if (c->acct && memcmp(c->acct->key, key, 17) == 0) return 0;
  osb__addr_t *a = addr_get(key, true);
  a->n++;
  if (c->acct) addr_put(c->acct);
  c->acct = a;
  if (!over_limit(a)) return 0;
  refused(LOG_PER_IP, ip);
  return OSB_EDENIED;
}

void osb__edge_release(osb__conn_t *c) {
  if (!c->acct) return;
  addr_put(c->acct);
  c->acct = NULL;
}

/* libuv reported EMFILE/ENFILE on accept (its own reserve fd is spent):
 * give ours back to the kernel, take the pending connections and close
 * them, then reserve again. Without this the listener stays readable and
 * the loop wakes for it forever. */
void osb__edge_accept_failed(uv_stream_t *listener, int status) {
  if (status != UV_EMFILE && status != UV_ENFILE) {
    osb_log(OSB_LOG_WARN, "http", "accept failed: %s", uv_strerror(status));
    return;
  }
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)listener, &lfd) == 0) {
    if (E.reserve_fd >= 0) close(E.reserve_fd);
    E.reserve_fd = -1;
    for (;;) {
      int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0 && errno == EINTR) continue;
      if (fd < 0) break;
      close(fd);
      refused(LOG_FD, NULL);
    }
    E.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return;
  }
  refused(LOG_FD, NULL);
}
