/* password.c: Argon2id hashing and verification on the libuv threadpool.
 *
 * Parameters: libsodium's INTERACTIVE limits (opslimit 2, memlimit 64 MiB).
 * That is above OWASP's Argon2id floor (19 MiB, t=2) and costs roughly
 * 50-100 ms of one core, which a login can afford; MODERATE (256 MiB, t=3)
 * costs ~4x more time and memory per login, and with several logins in
 * flight it would pin gigabytes and every threadpool slot. Hashes are PHC
 * strings ($argon2id$v=19$m=...,t=...,p=1$...), so stronger parameters can
 * be adopted later without breaking old hashes.
 *
 * Concurrency cap: the threadpool (UV_THREADPOOL_SIZE, default 4) is shared
 * with SQLite. At most half of it, and at most one less than the CPUs,
 * runs Argon2 at once (so the loop keeps a core and SQLite keeps threads);
 * other jobs wait here, in order, on the loop thread. A bounded queue turns a login flood into
 * quick 503s instead of unbounded memory and latency.
 *
 * Fairness: a job names the client it is for (its address). At most
 * `per_key` jobs of one client wait or run at once, further ones fail at
 * once (503), so one client cannot fill the queue. And the queue is served
 * round-robin by client, not first come first served: a job's `round` is
 * how many jobs of its client were already present when it arrived, and a
 * free slot goes to the waiting job with the lowest round (the oldest among
 * equals). So another client's sign-in waits for the hashes already running,
 * not behind a busy client's backlog. The scans cover the jobs present (at
 * most max_queued + max_active), cheap beside one hash.
 *
 * Ownership: a job owns a wiped-on-free copy of the password and, for
 * verification, of the stored hash. work_cb touches only the job. */
#include "auth/internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#define OPS crypto_pwhash_OPSLIMIT_INTERACTIVE
#define MEM crypto_pwhash_MEMLIMIT_INTERACTIVE

typedef struct pw_job {
  uv_work_t work;
  osb_list_t node;            /* in the waiting FIFO, then in `running` */
  char key[48];               /* the client (address); "" = not counted per client */
  unsigned round;             /* jobs of this client present on arrival (fair order) */
  bool verify;
  char *password;             /* wiped and freed after the work */
  size_t pwlen;
  char hash[crypto_pwhash_STRBYTES];
  int result;                 /* libsodium's return */
  union { osb__pw_hash_cb hash; osb__pw_verify_cb verify; } cb;
  void *ud;
} pw_job_t;

static osb_list_t waiting = { &waiting, &waiting };
static osb_list_t running = { &running, &running };
static unsigned n_active, n_waiting, max_active, max_queued = OSB__PW_MAX_QUEUED;
static unsigned per_key;      /* 0 = no per-client cap */
static uint64_t n_refused_full, n_refused_key;

unsigned osb__pw_max_active(void) {
  if (!max_active) {
    const char *s = getenv("UV_THREADPOOL_SIZE");
    long n = s ? strtol(s, NULL, 10) : 4;
    if (n < 1) n = 4;
    unsigned pool = n >= 2 ? (unsigned)(n / 2) : 1;
    /* Leave a core to the event loop: on a 2-core machine one hash at a
     * time, so a burst of sign-ins cannot starve the loop of CPU. */
    unsigned cpus = uv_available_parallelism();
    unsigned cpu_cap = cpus > 1 ? cpus - 1 : 1;
    max_active = pool < cpu_cap ? pool : cpu_cap;
  }
  return max_active;
}
void osb__pw_set_limits(unsigned active, unsigned queued) {
  max_active = active;
  max_queued = queued ? queued : OSB__PW_MAX_QUEUED;
}

void osb__pw_set_per_key(unsigned n) { per_key = n; }
uint64_t osb__pw_refused(bool per_client) { return per_client ? n_refused_key : n_refused_full; }

unsigned osb__pw_active(void) { return n_active; }
unsigned osb__pw_queued(void) { return n_waiting; }

static void job_free(pw_job_t *j) {
  sodium_memzero(j->password, j->pwlen);
  free(j->password);
  sodium_memzero(j->hash, sizeof(j->hash));
  free(j);
}

static void work_cb(uv_work_t *w) {
  pw_job_t *j = osb_container_of(w, pw_job_t, work);
  if (j->verify && j->hash[0]) {
    j->result = crypto_pwhash_str_verify(j->hash, j->password, j->pwlen);
  } else if (j->verify) {
    /* Unknown user: spend what a verification costs, then say no. */
    char scratch[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(scratch, j->password, j->pwlen, OPS, MEM) == 0)
      sodium_memzero(scratch, sizeof(scratch));
    j->result = -1;
  } else {
    j->result = crypto_pwhash_str(j->hash, j->password, j->pwlen, OPS, MEM);
  }
}

static void start_next(void);

static void after_cb(uv_work_t *w, int status) {
  pw_job_t *j = osb_container_of(w, pw_job_t, work);
  n_active--;
  osb_list_remove(&j->node);
  if (j->verify) {
    j->cb.verify(j->ud, status, status == 0 && j->result == 0);
  } else if (status != 0 || j->result != 0) {
    j->cb.hash(j->ud, status ? status : OSB_EUNAVAIL, NULL);
  } else {
    j->cb.hash(j->ud, 0, osb_strdup(j->hash));
  }
  job_free(j);
  start_next();
}

/* The waiting job with the lowest round, the oldest among equals. */
static pw_job_t *next_fair(void) {
  pw_job_t *best = NULL;
  for (osb_list_t *pos = waiting.next; pos != &waiting; pos = pos->next) {
    pw_job_t *j = osb_container_of(pos, pw_job_t, node);
    if (!best || j->round < best->round) best = j;
  }
  return best;
}

static void start_next(void) {
  while (n_active < osb__pw_max_active() && !osb_list_empty(&waiting)) {
    pw_job_t *j = next_fair();
    osb_list_remove(&j->node);
    n_waiting--;
    n_active++;
    osb_list_insert_tail(&running, &j->node);
    int rc = uv_queue_work(osb_loop(), &j->work, work_cb, after_cb);
    osb_assert(rc == 0);
  }
}

static unsigned jobs_of(const char *key) {
  unsigned n = 0;
  osb_list_t *pos;
  for (pos = waiting.next; pos != &waiting; pos = pos->next)
    if (strcmp(osb_container_of(pos, pw_job_t, node)->key, key) == 0) n++;
  for (pos = running.next; pos != &running; pos = pos->next)
    if (strcmp(osb_container_of(pos, pw_job_t, node)->key, key) == 0) n++;
  return n;
}

static int submit(pw_job_t *j) {
  if (n_waiting >= max_queued) {
    n_refused_full++;
    job_free(j);
    return OSB_EUNAVAIL;
  }
  unsigned present = j->key[0] ? jobs_of(j->key) : 0;
  if (per_key && j->key[0] && present >= per_key) {
    n_refused_key++;
    job_free(j);
    return OSB_EUNAVAIL;
  }
  j->round = present;
  osb_list_insert_tail(&waiting, &j->node);
  n_waiting++;
  start_next();
  return 0;
}

static pw_job_t *job_new(const char *client, const char *password, size_t len, void *ud) {
  pw_job_t *j = osb_calloc(1, sizeof(*j));
  snprintf(j->key, sizeof(j->key), "%s", client ? client : "");
  j->password = osb_malloc(len + 1);
  memcpy(j->password, password, len);
  j->password[len] = 0;
  j->pwlen = len;
  j->ud = ud;
  osb_list_init(&j->node);
  return j;
}

int osb__pw_hash(const char *client, const char *password, size_t len, osb__pw_hash_cb cb, void *ud) {
  pw_job_t *j = job_new(client, password, len, ud);
  j->cb.hash = cb;
  return submit(j);
}

int osb__pw_verify(const char *client, const char *hash, const char *password, size_t len,
                   osb__pw_verify_cb cb, void *ud) {
  pw_job_t *j = job_new(client, password, len, ud);
  j->verify = true;
  j->cb.verify = cb;
  size_t hl = hash ? strlen(hash) : 0;
  if (hl >= sizeof(j->hash)) hl = 0;   /* unusable stored value: never matches */
  memcpy(j->hash, hash ? hash : "", hl);
  j->hash[hl] = 0;
  return submit(j);
}

char *osb__pw_hash_now(const char *password, size_t len) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(out, password, len, OPS, MEM) != 0) return NULL;
  return osb_strdup(out);
}
