/* channel.c: the namespace table, policy decisions, the history ring and
 * the channel hash table. */
#include <stdlib.h>

#include "realtime/internal.h"

/* ---- the namespace table (SPEC §5) ----
 * Durable namespaces take their seqs from the owner row's counter
 * (notify: users.notify_seq, so a notification's seq is its channel seq;
 * chat: conversations.last_seq, a message's seq); channel_seqs serves a
 * durable namespace without an owner table.
 * History sizes: market channels carry price ticks (a few seconds of a busy
 * feed), notify and chat are durable (the database holds the rest, memory
 * only serves fast resumes), the dashboard publishes once a second. */
#define MIN_MS (60u * 1000u)
static const osb__rt_ns_t builtin[] = {
  {"market", NULL, OSB__RT_ANYONE, OSB__RT_SERVER, false, false, 1024, 5 * MIN_MS, NULL, NULL, NULL, NULL, 0},
  {"notify", NULL, OSB__RT_SELF, OSB__RT_SERVER, true, false, 64, 10 * MIN_MS, NULL, NULL, NULL, NULL,
   OSB__RT_SEQ_USER},
  {"chat", NULL, OSB__RT_OWNER, OSB__RT_OWNER, true, true, 256, 10 * MIN_MS, NULL, NULL, NULL, NULL,
   OSB__RT_SEQ_CONVERSATION},
  {"agents", "status", OSB__RT_SIGNED_IN, OSB__RT_SERVER, false, false, 128, 5 * MIN_MS, NULL, NULL, NULL, NULL, 0},
  {"dashboard", "metrics", OSB__RT_ADMIN, OSB__RT_SERVER, false, false, 120, 2 * MIN_MS, NULL, NULL, NULL, NULL, 0},
};
static osb__rt_ns_t table[OSB_ARRAY_LEN(builtin)];
static bool table_ready;

void osb__rt_ns_reset(void) {
  memcpy(table, builtin, sizeof(table));
  table_ready = true;
}

static void ensure_table(void) {
  if (!table_ready) osb__rt_ns_reset();
}

osb__rt_ns_t *osb__rt_ns_by_name(const char *ns) {
  ensure_table();
  for (size_t i = 0; i < OSB_ARRAY_LEN(table); i++)
    if (strcmp(table[i].name, ns) == 0) return &table[i];
  return NULL;
}

#define MAX_SUFFIX 128
#define MAX_NAME 160

static bool suffix_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == '.' || c == '@';
}

osb__rt_ns_t *osb__rt_ns_lookup(const char *name, size_t len, const char **suffix) {
  ensure_table();
  if (len == 0 || len > MAX_NAME) return NULL;
  const char *colon = memchr(name, ':', len);
  if (!colon) return NULL;
  size_t nslen = (size_t)(colon - name);
  const char *sfx = colon + 1;
  size_t slen = len - nslen - 1;
  if (slen == 0 || slen > MAX_SUFFIX) return NULL;
  for (size_t i = 0; i < slen; i++)
    if (!suffix_char(sfx[i])) return NULL;
  for (size_t i = 0; i < OSB_ARRAY_LEN(table); i++) {
    osb__rt_ns_t *ns = &table[i];
    if (strlen(ns->name) != nslen || memcmp(ns->name, name, nslen) != 0) continue;
    if (ns->only_suffix && (strlen(ns->only_suffix) != slen || memcmp(ns->only_suffix, sfx, slen) != 0))
      return NULL;
    if (suffix) *suffix = sfx;
    return ns;
  }
  return NULL;
}

int osb_rt_set_access_check(const char *ns, osb_rt_check_fn fn, void *ud) {
  osb__rt_ns_t *n = osb__rt_ns_by_name(ns);
  if (!n) return OSB_ENOTFOUND;
  n->check = fn;
  n->check_ud = ud;
  return 0;
}

int osb_rt_set_publish_hook(const char *ns, osb_rt_publish_hook_fn fn, void *ud) {
  osb__rt_ns_t *n = osb__rt_ns_by_name(ns);
  if (!n) return OSB_ENOTFOUND;
  n->on_publish = fn;
  n->publish_ud = ud;
  return 0;
}

/* The service key is the server itself: it reads and writes everything.
 * Admins may write server-written channels and read admin ones, but read
 * another user's notifications or conversations only as their owner. */
osb__rt_decision_t osb__rt_decide(const osb__rt_ns_t *ns, bool write, const char *suffix,
                                  const osb_rt_who_t *who) {
  osb_role_t role = who ? who->role : OSB_ROLE_NONE;
  const char *uid = who ? who->user_id : NULL;
  if (role == OSB_ROLE_SERVICE) return OSB__RT_ALLOW;
  switch ((osb__rt_policy_t)(write ? ns->write : ns->read)) {
    case OSB__RT_ANYONE:
      return OSB__RT_ALLOW;
    case OSB__RT_SIGNED_IN:
      return uid ? OSB__RT_ALLOW : OSB__RT_DENY;
    case OSB__RT_SELF:
      return uid && strcmp(uid, suffix) == 0 ? OSB__RT_ALLOW : OSB__RT_DENY;
    case OSB__RT_OWNER:
      return uid && ns->check ? OSB__RT_ASK : OSB__RT_DENY;
    case OSB__RT_ADMIN:
    case OSB__RT_SERVER:
      return uid && role == OSB_ROLE_ADMIN ? OSB__RT_ALLOW : OSB__RT_DENY;
  }
  osb_assert(!"bad policy");
}

/* ---- history ring ---- */

osb__rt_hist_t *osb__rt_ring_at(osb__rt_ring_t *r, uint32_t i) {
  osb_assert(i < r->len);
  return &r->e[(r->head + i) % r->cap];
}

static void ring_grow(osb__rt_ring_t *r) {
  uint32_t cap = r->cap ? r->cap * 2 : 8;
  if (cap > r->max) cap = r->max;
  osb__rt_hist_t *e = osb_malloc(sizeof(*e) * cap);
  for (uint32_t i = 0; i < r->len; i++) e[i] = *osb__rt_ring_at(r, i);
  free(r->e);
  r->e = e;
  r->cap = cap;
  r->head = 0;
}

static void ring_pop(osb__rt_ring_t *r) {
  osb__rt_hist_t *h = &r->e[r->head];
  osb_msg_unref(h->frame);
  h->frame = NULL;
  r->head = (r->head + 1) % r->cap;
  r->len--;
}

void osb__rt_ring_push(osb__rt_ring_t *r, uint64_t seq, uint64_t at_ms, osb_msg_t *frame) {
  if (r->max == 0) return;
  if (r->len == r->cap && r->cap < r->max) ring_grow(r);
  if (r->len == r->cap) ring_pop(r);
  osb__rt_hist_t *h = &r->e[(r->head + r->len) % r->cap];
  h->seq = seq;
  h->at_ms = at_ms;
  h->frame = osb_msg_ref(frame);
  r->len++;
}

void osb__rt_ring_expire(osb__rt_ring_t *r, uint64_t now_ms, uint32_t age_ms) {
  while (r->len && r->e[r->head].at_ms + age_ms < now_ms) ring_pop(r);
  if (r->len == 0 && r->e) {   /* idle channels give their array back */
    free(r->e);
    r->e = NULL;
    r->cap = r->head = 0;
  }
}

uint32_t osb__rt_ring_after(osb__rt_ring_t *r, uint64_t since) {
  uint32_t lo = 0, hi = r->len;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (osb__rt_ring_at(r, mid)->seq <= since) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

void osb__rt_ring_free(osb__rt_ring_t *r) {
  while (r->len) ring_pop(r);
  free(r->e);
  r->e = NULL;
  r->cap = r->head = 0;
}

/* ---- channel table ---- */

static uint32_t hash_name(const char *s, size_t n) {
  uint32_t h = 2166136261u;   /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

osb__rt_channel_t *osb__rt_channel_find(const char *name, size_t len) {
  osb__rt_hub_t *hub = osb__rt;
  uint32_t h = hash_name(name, len);
  for (osb__rt_channel_t *c = hub->buckets[h & (hub->nbuckets - 1)]; c; c = c->hnext)
    if (c->hash == h && c->namelen == len && memcmp(c->name, name, len) == 0) return c;
  return NULL;
}

static void rehash(osb__rt_hub_t *hub) {
  uint32_t n = hub->nbuckets * 2;
  osb__rt_channel_t **b = osb_calloc(n, sizeof(*b));
  for (uint32_t i = 0; i < hub->nbuckets; i++) {
    osb__rt_channel_t *c = hub->buckets[i], *next;
    for (; c; c = next) {
      next = c->hnext;
      c->hnext = b[c->hash & (n - 1)];
      b[c->hash & (n - 1)] = c;
    }
  }
  free(hub->buckets);
  hub->buckets = b;
  hub->nbuckets = n;
}

osb__rt_channel_t *osb__rt_channel_get(const char *name, size_t len) {
  const char *suffix;
  osb__rt_ns_t *ns = osb__rt_ns_lookup(name, len, &suffix);
  if (!ns) return NULL;
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t *c = osb_calloc(1, sizeof(*c) + len + 1);
  c->ns = ns;
  c->hash = hash_name(name, len);
  c->namelen = (uint16_t)len;
  c->suffix_off = (uint16_t)(suffix - name);
  memcpy(c->name, name, len);
  osb_list_init(&c->subs);
  osb_list_init(&c->waiting);
  c->hist.max = ns->history_max;
  c->state = OSB__RT_CH_READY;
  if (hub->nchannels >= hub->nbuckets) rehash(hub);
  uint32_t b = c->hash & (hub->nbuckets - 1);
  c->hnext = hub->buckets[b];
  hub->buckets[b] = c;
  hub->nchannels++;
  osb_series_set(hub->st.channels, (double)hub->nchannels);
  return c;
}

static void channel_unlink(osb__rt_channel_t *ch) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t **pp = &hub->buckets[ch->hash & (hub->nbuckets - 1)];
  while (*pp != ch) pp = &(*pp)->hnext;
  *pp = ch->hnext;
  hub->nchannels--;
  osb_series_set(hub->st.channels, (double)hub->nchannels);
}

void osb__rt_channel_gc(osb__rt_channel_t *ch) {
  if (ch->nsubs || ch->hist.len || ch->pins || !osb_list_empty(&ch->waiting)) return;
  channel_unlink(ch);
  osb__rt_ring_free(&ch->hist);
  free(ch);
}

void osb__rt_sweep(uint64_t now_ms) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub) return;
  osb__rt_flush_held(now_ms);
  for (uint32_t i = 0; i < hub->nbuckets; i++) {
    osb__rt_channel_t *c = hub->buckets[i], *next;
    for (; c; c = next) {
      next = c->hnext;
      osb__rt_ring_expire(&c->hist, now_ms, c->ns->history_age_ms);
      osb__rt_channel_gc(c);
    }
  }
}
