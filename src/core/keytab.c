/* keytab.c: a bounded LRU hash map for per-client state (auth's token
 * buckets, failed-login windows, the external-user cache; see keytab.h).
 *
 * Memory is bounded by construction: never more than max_entries entries.
 * Keys come from peers (IP addresses, e-mails), so buckets are chosen with
 * SipHash-2-4 under a random per-table key: chains stay short whatever the
 * peer sends. Every lookup moves its entry to the tail of the LRU list, so
 * the head is always the stalest entry and eviction is O(1).
 *
 *   table ── buckets[] ──> entry ──next──> entry      (hash chains)
 *         └─ lru: head (oldest) <-> ... <-> tail (newest)
 *   entry: header | value (valsize, 8-aligned) | key bytes | NUL          */
#include "core/keytab.h"

#include <sodium.h>
#include <stdlib.h>

typedef struct kt_entry {
  osb_list_t lru;
  struct kt_entry *next;
  uint64_t hash;
  uint64_t touched_ms;
  size_t keylen;
  _Alignas(8) unsigned char data[];
} kt_entry_t;

struct osb_kt {
  kt_entry_t **buckets;
  size_t nbuckets;       /* power of two */
  size_t count, max_entries;
  size_t valsize;        /* rounded up to 8 */
  uint64_t idle_ms;
  osb_list_t lru;
  unsigned char sipkey[crypto_shorthash_KEYBYTES];
};

#define EVICT_PER_CALL 4

osb_kt_t *osb_kt_new(size_t max_entries, size_t valsize, uint64_t idle_ms) {
  osb_kt_t *t = osb_calloc(1, sizeof(*t));
  t->max_entries = max_entries ? max_entries : 1;
  t->nbuckets = 16;
  while (t->nbuckets < t->max_entries) t->nbuckets <<= 1;
  t->buckets = osb_calloc(t->nbuckets, sizeof(*t->buckets));
  t->valsize = (valsize + 7) & ~(size_t)7;
  t->idle_ms = idle_ms;
  osb_list_init(&t->lru);
  crypto_shorthash_keygen(t->sipkey);
  return t;
}

static uint64_t kt_hash(const osb_kt_t *t, const char *key, size_t keylen) {
  unsigned char h[crypto_shorthash_BYTES];
  crypto_shorthash(h, (const unsigned char *)key, keylen, t->sipkey);
  uint64_t v;
  memcpy(&v, h, sizeof(v));
  return v;
}

static const char *entry_key(const osb_kt_t *t, const kt_entry_t *e) {
  return (const char *)e->data + t->valsize;
}

static void unlink_entry(osb_kt_t *t, kt_entry_t *e) {
  kt_entry_t **pp = &t->buckets[e->hash & (t->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->next;
  *pp = e->next;
  osb_list_remove(&e->lru);
  t->count--;
  free(e);
}

static kt_entry_t *lru_head(osb_kt_t *t) {
  return osb_list_empty(&t->lru) ? NULL : osb_container_of(t->lru.next, kt_entry_t, lru);
}

static void evict(osb_kt_t *t, uint64_t now_ms) {
  for (int i = 0; i < EVICT_PER_CALL; i++) {
    kt_entry_t *e = lru_head(t);
    if (!e || t->idle_ms == 0 || now_ms - e->touched_ms < t->idle_ms) break;
    unlink_entry(t, e);
  }
  while (t->count >= t->max_entries) unlink_entry(t, lru_head(t));
}

void *osb_kt_get(osb_kt_t *t, const char *key, size_t keylen, uint64_t now_ms, bool create,
                  bool *created) {
  if (created) *created = false;
  uint64_t h = kt_hash(t, key, keylen);
  for (kt_entry_t *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next) {
    if (e->hash == h && e->keylen == keylen && memcmp(entry_key(t, e), key, keylen) == 0) {
      e->touched_ms = now_ms;
      osb_list_remove(&e->lru);
      osb_list_insert_tail(&t->lru, &e->lru);
      return e->data;
    }
  }
  if (!create) return NULL;
  evict(t, now_ms);
  kt_entry_t *e = osb_calloc(1, sizeof(*e) + t->valsize + keylen + 1);
  e->hash = h;
  e->keylen = keylen;
  e->touched_ms = now_ms;
  memcpy(e->data + t->valsize, key, keylen);
  size_t b = h & (t->nbuckets - 1);
  e->next = t->buckets[b];
  t->buckets[b] = e;
  osb_list_insert_tail(&t->lru, &e->lru);
  t->count++;
  if (created) *created = true;
  return e->data;
}

void osb_kt_del(osb_kt_t *t, const char *key, size_t keylen) {
  uint64_t h = kt_hash(t, key, keylen);
  for (kt_entry_t *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next) {
    if (e->hash == h && e->keylen == keylen && memcmp(entry_key(t, e), key, keylen) == 0) {
      unlink_entry(t, e);
      return;
    }
  }
}

size_t osb_kt_count(const osb_kt_t *t) { return t->count; }

void osb_kt_free(osb_kt_t *t) {
  if (!t) return;
  kt_entry_t *e;
  while ((e = lru_head(t))) unlink_entry(t, e);
  free(t->buckets);
  free(t);
}
