/* keytab.h: a bounded LRU map from byte-string keys to fixed-size values,
 * for per-peer state (rate-limit buckets, failure windows, caches).
 *
 * Buckets are indexed by SipHash-2-4 under a per-table random key, so keys a
 * peer chooses (e-mails, IPs) cannot be crafted to collide. At most
 * `max_entries` live entries: inserting evicts entries idle for `idle_ms`
 * (a few per call), and past the cap the least recently used one, so memory
 * is bounded whatever peers send. The table owns its entries; one thread
 * (the loop) uses a table. */
#ifndef OSB_CORE_KEYTAB_H
#define OSB_CORE_KEYTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

typedef struct osb_kt osb_kt_t;
/* valsize bytes per value (8-aligned, zero-filled on insert); idle_ms 0:
 * entries never expire by age, only by the cap. */
osb_kt_t *osb_kt_new(size_t max_entries, size_t valsize, uint64_t idle_ms);
/* The value for key, moved to most-recently-used and stamped `now_ms`.
 * With create, a missing key is inserted zero-filled (*created = true;
 * created may be NULL). NULL if missing and !create. The pointer is valid
 * until the next call that may insert or delete. */
void *osb_kt_get(osb_kt_t *t, const char *key, size_t keylen, uint64_t now_ms,
                 bool create, bool *created);
void osb_kt_del(osb_kt_t *t, const char *key, size_t keylen);
size_t osb_kt_count(const osb_kt_t *t);
void osb_kt_free(osb_kt_t *t);

#endif
