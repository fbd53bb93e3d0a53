/* store_memory.c: the in-memory message store (tests, and durable channels
 * before a database store is installed). Synchronous: every callback runs
 * before the call returns. Rows live until the store is disposed, at most
 * `per_channel` per channel. */
#include <stdlib.h>

#include "realtime/internal.h"

typedef struct mrow {
  uint64_t seq, ts_ms;
  size_t len;
  char *data;
} mrow_t;

typedef struct mchan {
  struct mchan *next;
  char *name;
  mrow_t *rows;          /* ring: rows[(head + i) % cap], ascending seq */
  size_t head, len, cap;
  uint64_t last;         /* the channel's seq counter */
} mchan_t;

typedef struct mstore {
  osb_rt_store_t base;
  size_t per_channel;
  mchan_t *chans;        /* a list: tests and fallbacks hold few channels */
} mstore_t;

static mchan_t *find(mstore_t *s, const char *channel, bool create) {
  for (mchan_t *c = s->chans; c; c = c->next)
    if (strcmp(c->name, channel) == 0) return c;
  if (!create) return NULL;
  mchan_t *c = osb_calloc(1, sizeof(*c));
  c->name = osb_strdup(channel);
  c->cap = s->per_channel;
  c->rows = osb_calloc(c->cap, sizeof(*c->rows));
  c->next = s->chans;
  s->chans = c;
  return c;
}

static mrow_t *row_at(mchan_t *c, size_t i) { return &c->rows[(c->head + i) % c->cap]; }

/* The next seq is one above the channel's counter (which survives rows
 * dropped by the per-channel cap). */
static void mem_append(osb_rt_store_t *st, const char *channel, const osb_rt_row_t *row,
                       osb_rt_seq_cb cb, void *ud) {
  mstore_t *s = (mstore_t *)st;
  mchan_t *c = find(s, channel, true);
  uint64_t seq = ++c->last;
  if (c->len == c->cap) {
    free(row_at(c, 0)->data);
    c->head = (c->head + 1) % c->cap;
    c->len--;
  }
  mrow_t *r = row_at(c, c->len++);
  r->seq = seq;
  r->ts_ms = row->ts_ms;
  r->len = row->len;
  r->data = osb_strndup(row->data, row->len);
  if (cb) cb(ud, 0, seq);
}

static void mem_range(osb_rt_store_t *st, const char *channel, uint64_t since, size_t limit,
                      osb_rt_rows_cb cb, void *ud) {
  mstore_t *s = (mstore_t *)st;
  mchan_t *c = find(s, channel, false);
  size_t n = 0;
  osb_rt_row_t *out = NULL;
  if (c) {
    out = osb_malloc(sizeof(*out) * (c->len ? c->len : 1));
    for (size_t i = 0; i < c->len && n < limit; i++) {
      mrow_t *r = row_at(c, i);
      if (r->seq <= since) continue;
      out[n++] = (osb_rt_row_t){r->seq, r->data, r->len, r->ts_ms};
    }
  }
  cb(ud, 0, out, n);
  free(out);
}

static void mem_last_seq(osb_rt_store_t *st, const char *channel, osb_rt_seq_cb cb, void *ud) {
  mchan_t *c = find((mstore_t *)st, channel, false);
  cb(ud, 0, c ? c->last : 0);
}

static void mem_dispose(osb_rt_store_t *st) {
  mstore_t *s = (mstore_t *)st;
  mchan_t *c = s->chans, *next;
  for (; c; c = next) {
    next = c->next;
    for (size_t i = 0; i < c->len; i++) free(row_at(c, i)->data);
    free(c->rows);
    free(c->name);
    free(c);
  }
  free(s);
}

osb_rt_store_t *osb_rt_store_memory_new(size_t per_channel) {
  mstore_t *s = osb_calloc(1, sizeof(*s));
  s->base.name = "memory";
  s->base.append = mem_append;
  s->base.range = mem_range;
  s->base.last_seq = mem_last_seq;
  s->base.dispose = mem_dispose;
  s->per_channel = per_channel ? per_channel : 1;
  return &s->base;
}
