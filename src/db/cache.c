/* cache.c: the query cache.
 *
 * Entries are keyed by statement name and parameter bytes and hold a shared
 * result (one reference). Freshness has two sides:
 * - time: an entry older than QUERY_CACHE_TTL_MS is a miss (this bounds how
 *   stale a read can be after a write made by another instance);
 * - writes: every table has a generation counter; a write that completes
 *   (commits) bumps the counters of the tables it declared. An entry records
 *   the sum of the generations of the tables its statement reads, taken
 *   when the query was *sent*, so a result that raced with a write is
 *   never served after the write completed. Generations only grow, so equal
 *   sums mean no table changed.
 * Memory is bounded by QUERY_CACHE_MB (entry, key, result and memo bytes),
 * least recently used first out. Stale entries are dropped when met.
 *
 * Single flight: concurrent misses on the same key and generation share the
 * first one's query; the others wait on the flight and get the same result.
 * Loop thread only. */
#include "db/internal.h"

#include <stdlib.h>

typedef struct osb__centry {
  osb_list_t lru;              /* head: most recently used */
  struct osb__centry *hnext;
  uint64_t hash;
  uint64_t gen;
  uint64_t expires;            /* osb_now_ms() */
  size_t charge;
  osb_db_result_t *res;
  size_t klen;
  char key[];
} centry_t;

struct osb__flight {
  struct osb__flight *hnext;
  uint64_t hash, gen;
  bool linked;
  osb_list_t waiters;
  size_t klen;
  char key[];
};

typedef struct waiter {
  osb_list_t link;
  osb_db_cb cb;
  void *ud;
} waiter_t;

#define FLIGHT_BUCKETS 256

static struct {
  bool on;
  size_t max_bytes, bytes, count;
  uint64_t ttl_ms;
  centry_t **buckets;
  size_t nbuckets;
  osb_list_t lru;
  osb__flight_t *flights[FLIGHT_BUCKETS];
  uint64_t gens[OSB__DB_MAX_TABLES];
  uint64_t hits, misses, evictions, coalesced;
  osb_series_t *m_hits, *m_misses, *m_evictions, *m_coalesced;
} C;

static double m_bytes(void *ud) { OSB_UNUSED(ud); return (double)C.bytes; }
static double m_entries(void *ud) { OSB_UNUSED(ud); return (double)C.count; }

void osb__cache_init(size_t max_bytes, uint64_t ttl_ms) {
  osb__cache_dispose();
  C.on = max_bytes > 0;
  C.max_bytes = max_bytes;
  C.ttl_ms = ttl_ms;
  osb_list_init(&C.lru);
  C.nbuckets = 1024;
  C.buckets = osb_calloc(C.nbuckets, sizeof(centry_t *));
  C.m_hits = osb_metric_series0(osb_metric_counter("osb_db_cache_hits_total", "Query cache hits", NULL));
  C.m_misses = osb_metric_series0(osb_metric_counter("osb_db_cache_misses_total", "Query cache misses (queries sent)", NULL));
  C.m_evictions = osb_metric_series0(osb_metric_counter("osb_db_cache_evictions_total", "Query cache entries evicted for space", NULL));
  C.m_coalesced = osb_metric_series0(osb_metric_counter("osb_db_cache_coalesced_total", "Concurrent identical misses served by one query", NULL));
  osb_metric_gauge_fn("osb_db_cache_bytes", "Query cache memory in use", m_bytes, NULL);
  osb_metric_gauge_fn("osb_db_cache_entries", "Query cache entries", m_entries, NULL);
}

bool osb__cache_enabled(void) { return C.on; }

/* ---- generations ---- */

void osb__cache_bump(uint64_t mask) {
  for (int i = 0; mask; i++, mask >>= 1)
    if (mask & 1) C.gens[i]++;
}

uint64_t osb__cache_gen(uint64_t mask) {
  uint64_t sum = 0;
  for (int i = 0; mask; i++, mask >>= 1)
    if (mask & 1) sum += C.gens[i];
  return sum;
}

/* ---- keys ---- */

static uint64_t fnv1a(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

void osb__cache_key(osb_buf_t *key, const osb__stmt_info_t *si, const osb_db_param_t *p, int n) {
  osb_buf_reset(key);
  osb_buf_append(key, si->name, strlen(si->name) + 1);
  for (int i = 0; i < n; i++) {
    uint32_t hdr[2] = { (uint32_t)p[i].kind, (uint32_t)p[i].len };
    osb_buf_append(key, hdr, sizeof(hdr));
    if (p[i].kind != OSB_DB_P_NULL && p[i].len) osb_buf_append(key, p[i].data, p[i].len);
  }
}

/* ---- entries ---- */

static centry_t **slot(uint64_t hash, const char *key, size_t klen) {
  centry_t **pp = &C.buckets[hash & (C.nbuckets - 1)];
  for (; *pp; pp = &(*pp)->hnext)
    if ((*pp)->hash == hash && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) break;
  return pp;
}

static void entry_remove(centry_t *e) {
  centry_t **pp = slot(e->hash, e->key, e->klen);
  osb_assert(*pp == e);
  *pp = e->hnext;
  osb_list_remove(&e->lru);
  C.bytes -= e->charge;
  C.count--;
  e->res->centry = NULL;
  osb_db_result_unref(e->res);
  free(e);
}

static void evict(void) {
  while (C.bytes > C.max_bytes && !osb_list_empty(&C.lru)) {
    centry_t *e = osb_container_of(C.lru.prev, centry_t, lru);
    entry_remove(e);
    C.evictions++;
    osb_series_inc(C.m_evictions, 1);
  }
}

static void grow(void) {
  size_t nb = C.nbuckets * 2;
  centry_t **b = osb_calloc(nb, sizeof(centry_t *));
  for (size_t i = 0; i < C.nbuckets; i++) {
    centry_t *e = C.buckets[i];
    while (e) {
      centry_t *next = e->hnext;
      e->hnext = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  free(C.buckets);
  C.buckets = b;
  C.nbuckets = nb;
}

osb_db_result_t *osb__cache_get(const osb_buf_t *key, uint64_t gen) {
  if (!C.on) return NULL;
  uint64_t h = fnv1a(key->base, key->len);
  centry_t *e = *slot(h, key->base, key->len);
  if (e && (e->gen != gen || osb_now_ms() >= e->expires)) {
    entry_remove(e);
    e = NULL;
  }
  if (!e) {
    C.misses++;
    osb_series_inc(C.m_misses, 1);
    return NULL;
  }
  osb_list_remove(&e->lru);
  osb_list_insert_head(&C.lru, &e->lru);
  C.hits++;
  osb_series_inc(C.m_hits, 1);
  return (osb_db_result_t *)osb_db_result_ref(e->res);
}

void osb__cache_put(const osb_buf_t *key, uint64_t gen, osb_db_result_t *res) {
  if (!C.on || res->centry) return;
  size_t charge = sizeof(centry_t) + key->len + res->bytes;
  if (charge > C.max_bytes / 4) return;   /* one huge result must not flush everything */
  uint64_t h = fnv1a(key->base, key->len);
  centry_t **pp = slot(h, key->base, key->len);
  if (*pp) entry_remove(*pp);
  centry_t *e = osb_malloc(sizeof(*e) + key->len);
  e->hash = h;
  e->gen = gen;
  e->expires = osb_now_ms() + C.ttl_ms;
  e->charge = charge;
  e->res = (osb_db_result_t *)osb_db_result_ref(res);
  e->klen = key->len;
  memcpy(e->key, key->base, key->len);
  res->centry = e;
  e->hnext = C.buckets[h & (C.nbuckets - 1)];
  C.buckets[h & (C.nbuckets - 1)] = e;
  osb_list_insert_head(&C.lru, &e->lru);
  C.bytes += charge;
  C.count++;
  if (C.count > C.nbuckets) grow();
  evict();
}

void osb__cache_charge(osb_db_result_t *res, size_t extra) {
  centry_t *e = res->centry;
  if (!e) return;
  e->charge += extra;
  C.bytes += extra;
  evict();
}

/* ---- single flight ---- */

static osb__flight_t **fslot(uint64_t hash, const char *key, size_t klen) {
  osb__flight_t **pp = &C.flights[hash & (FLIGHT_BUCKETS - 1)];
  for (; *pp; pp = &(*pp)->hnext)
    if ((*pp)->hash == hash && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0) break;
  return pp;
}

static void flight_unlink(osb__flight_t *f) {
  if (!f->linked) return;
  osb__flight_t **pp = fslot(f->hash, f->key, f->klen);
  osb_assert(*pp == f);
  *pp = f->hnext;
  f->linked = false;
}

osb__flight_t *osb__flight_find(const osb_buf_t *key, uint64_t gen) {
  uint64_t h = fnv1a(key->base, key->len);
  osb__flight_t *f = *fslot(h, key->base, key->len);
  if (!f) return NULL;
  if (f->gen != gen) {
    /* A write completed since this flight was sent: its result may predate
     * the write, so later readers must not share it. */
    flight_unlink(f);
    return NULL;
  }
  return f;
}

osb__flight_t *osb__flight_new(const osb_buf_t *key, uint64_t gen) {
  osb__flight_t *f = osb_malloc(sizeof(*f) + key->len);
  f->hash = fnv1a(key->base, key->len);
  f->gen = gen;
  f->klen = key->len;
  memcpy(f->key, key->base, key->len);
  osb_list_init(&f->waiters);
  osb__flight_t **pp = fslot(f->hash, f->key, f->klen);
  osb_assert(*pp == NULL);
  f->hnext = NULL;
  *pp = f;
  f->linked = true;
  return f;
}

void osb__flight_join(osb__flight_t *f, osb_db_cb cb, void *ud) {
  waiter_t *w = osb_malloc(sizeof(*w));
  w->cb = cb;
  w->ud = ud;
  osb_list_insert_tail(&f->waiters, &w->link);
  C.coalesced++;
  osb_series_inc(C.m_coalesced, 1);
}

void osb__flight_finish(osb__flight_t *f, int err, const osb_db_result_t *res) {
  bool current = f->linked;
  flight_unlink(f);
  if (current && err == 0 && res) {
    osb_buf_t key = { f->key, f->klen, f->klen };
    osb__cache_put(&key, f->gen, (osb_db_result_t *)res);
  }
  while (!osb_list_empty(&f->waiters)) {
    waiter_t *w = osb_container_of(f->waiters.next, waiter_t, link);
    osb_list_remove(&w->link);
    w->cb(w->ud, err, err == 0 ? res : NULL);
    free(w);
  }
  free(f);
}

void osb__cache_stats(osb_db_stats_t *out) {
  out->cache_hits = C.hits;
  out->cache_misses = C.misses;
  out->cache_evictions = C.evictions;
  out->cache_bytes = C.bytes;
  out->cache_entries = C.count;
}

void osb__cache_dispose(void) {
  if (C.buckets) {
    while (!osb_list_empty(&C.lru)) entry_remove(osb_container_of(C.lru.next, centry_t, lru));
    free(C.buckets);
  }
  memset(&C, 0, sizeof(C));
}
