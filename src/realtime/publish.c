/* publish.c: the front of the publication pipeline (realtime.h).
 *
 *   caller ── osb_rt_publish ───────────── store->append (own tx) ──┐
 *        └─── osb_rt_tx_publish(tx) ─ osb__rt_tx_store(tx) ─ COMMIT ─┤ after commit
 *                                                                    ▼
 *                                     bus->publish {seq, stored} ─→ hub(s)
 *
 * Durable channels: the database gives the seq inside the transaction
 * that stores the row (store_db.c), and the message travels over the bus
 * only once that transaction committed, carrying that seq, so every hub
 * (a future cross-instance bus included) delivers it with the same seq.
 * Non-durable channels go to the bus at once (osb_rt_publish) or at
 * commit (osb_rt_tx_publish) and the hub numbers them. Transient messages
 * go to the bus at once and are never numbered or stored.
 *
 * A publication waiting for its commit owns a copy of its data; nothing
 * here refers to the hub, so a transaction that ends after osb_rt_stop
 * only finds the bus gone (osb__rt == NULL) and drops the message. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/json.h"
#include "db/db.h"
#include "obs/log.h"
#include "realtime/internal.h"

typedef struct pubop {
  osb_rt_publish_cb cb;
  void *ud;
  const osb__rt_ns_t *ns;
  const char *sfx;          /* into channel */
  int err;                  /* from the store statements */
  uint64_t seq;
  uint64_t ts_ms;
  size_t len;
  char *data;
  char channel[];
} pubop_t;

static bool valid_json_text(const char *data, size_t len) {
  json_t *j = json_loadb(data, len, JSON_DECODE_ANY, NULL);
  json_decref(j);
  return j != NULL;
}

/* Common checks; 0 with *ns and *sfx set, or the error for cb. */
static int check(const char *channel, size_t len, osb__rt_ns_t **ns, const char **sfx) {
  if (!osb__rt || !osb__rt->bus) return OSB_EUNAVAIL;
  if (!channel || !(*ns = osb__rt_ns_lookup(channel, strlen(channel), sfx))) return OSB_EINVAL;
  if (len > osb__rt->opt.max_data_bytes) return OSB_ETOOBIG;
  return 0;
}

static pubop_t *op_new(const char *channel, const osb__rt_ns_t *ns, const char *sfx, char *data,
                       size_t len, osb_rt_publish_cb cb, void *ud) {
  size_t n = strlen(channel);
  pubop_t *op = osb_calloc(1, sizeof(*op) + n + 1);
  memcpy(op->channel, channel, n);
  op->ns = ns;
  op->sfx = op->channel + (sfx - channel);
  op->data = data;   /* taken */
  op->len = len;
  op->ts_ms = osb_wallclock_ms();
  op->cb = cb;
  op->ud = ud;
  return op;
}

static void op_free(pubop_t *op) {
  free(op->data);
  free(op);
}

static void bus_send(const pubop_t *op, osb_rt_publish_cb cb, void *ud) {
  if (!osb__rt || !osb__rt->bus) {
    if (cb) cb(ud, OSB_EUNAVAIL, 0);
    return;
  }
  osb_rt_pub_t pub = {op->channel, op->data, op->len, op->ns->durable ? op->seq : 0,
                      op->ns->durable, false, op->ns->durable ? op->ts_ms : 0};
  osb__rt->bus->publish(osb__rt->bus, &pub, cb, ud);
}

/* ---- osb_rt_publish: its own transaction (the store's append) ---- */

/* The committed message was handed to the hub; the publisher hears of
 * the seq the database gave it, whatever the live delivery found (a
 * message already counted by a concurrent load is only replayed). */
static void durable_delivered(void *ud, int err, uint64_t seq) {
  pubop_t *op = ud;
  if (err && err != OSB_ECONFLICT)
    osb_log(OSB_LOG_DEBUG, "realtime", "%s seq %" PRIu64 " stored, not delivered live: %s", op->channel,
            op->seq, osb_strerror(err));
  if (op->cb) op->cb(op->ud, 0, op->seq);
  op_free(op);
}

static void appended(void *ud, int err, uint64_t seq) {
  pubop_t *op = ud;
  if (err) {
    if (op->cb) op->cb(op->ud, err, 0);
    op_free(op);
    return;
  }
  op->seq = seq;
  bus_send(op, durable_delivered, op);
}

static void publish_owned(const char *channel, char *text, size_t len, osb_rt_publish_cb cb, void *ud) {
  osb__rt_ns_t *ns;
  const char *sfx;
  int err = check(channel, len, &ns, &sfx);
  if (err) {
    free(text);
    if (cb) cb(ud, err, 0);
    return;
  }
  pubop_t *op = op_new(channel, ns, sfx, text, len, cb, ud);
  if (!ns->durable) {
    osb_rt_pub_t pub = {op->channel, op->data, op->len, 0, false, false, 0};
    osb__rt->bus->publish(osb__rt->bus, &pub, cb, ud);
    op_free(op);
    return;
  }
  osb_rt_store_t *st = osb__rt->store;
  if (!st) {
    op_free(op);
    if (cb) cb(ud, OSB_EUNAVAIL, 0);
    return;
  }
  osb_rt_row_t row = {0, op->data, op->len, op->ts_ms};
  st->append(st, op->channel, &row, appended, op);
}

void osb_rt_publish_text(const char *channel, const char *data, size_t len, osb_rt_publish_cb cb,
                         void *ud) {
  if (!data || !valid_json_text(data, len)) {
    if (cb) cb(ud, OSB_EINVAL, 0);
    return;
  }
  publish_owned(channel, osb_strndup(data, len), len, cb, ud);
}

void osb_rt_publish(const char *channel, const json_t *data, osb_rt_publish_cb cb, void *ud) {
  size_t len;
  char *text = osb_json_dumps(data, &len);
  if (!text) {
    if (cb) cb(ud, OSB_EINVAL, 0);
    return;
  }
  publish_owned(channel, text, len, cb, ud);
}

/* ---- inside the caller's transaction ---- */

static void tx_stored(void *ud, int err, uint64_t seq) {
  pubop_t *op = ud;
  op->err = err;
  op->seq = err ? 0 : seq;
  if (op->cb) op->cb(op->ud, err, op->seq);
}

static void tx_delivered(void *ud, int err, uint64_t seq) {
  pubop_t *op = ud;
  if (err && err != OSB_ECONFLICT)
    osb_log(OSB_LOG_DEBUG, "realtime", "%s: committed publication not delivered live: %s", op->channel,
            osb_strerror(err));
  op_free(op);
}

/* osb_db_tx_on_end: deliver what committed, drop the rest. */
static void tx_ended(void *ud, int err) {
  pubop_t *op = ud;
  if (err || op->err || (op->ns->durable && !op->seq)) {
    op_free(op);
    return;
  }
  bus_send(op, tx_delivered, op);
}

static void tx_publish(osb_db_tx_t *tx, const char *channel, uint64_t seq, bool at, const json_t *data,
                       osb_rt_publish_cb cb, void *ud) {
  osb_assert(tx);
  osb__rt_ns_t *ns;
  const char *sfx;
  size_t len = 0;
  char *text = osb_json_dumps(data, &len);
  int err = text ? check(channel, len, &ns, &sfx) : OSB_EINVAL;
  if (!err && at && (!ns->durable || seq == 0)) err = OSB_EINVAL;
  if (err) {
    free(text);
    if (cb) cb(ud, err, 0);
    return;
  }
  pubop_t *op = op_new(channel, ns, sfx, text, len, cb, ud);
  osb_db_tx_on_end(tx, tx_ended, op);
  if (!ns->durable) {
    if (cb) cb(ud, 0, 0);
    return;
  }
  osb__rt_tx_store(tx, ns, op->channel, op->sfx, at ? seq : 0, op->data, op->len, op->ts_ms, tx_stored, op);
}

void osb_rt_tx_publish(osb_db_tx_t *tx, const char *channel, const json_t *data, osb_rt_publish_cb cb,
                       void *ud) {
  tx_publish(tx, channel, 0, false, data, cb, ud);
}

void osb_rt_tx_publish_at(osb_db_tx_t *tx, const char *channel, uint64_t seq, const json_t *data,
                          osb_rt_publish_cb cb, void *ud) {
  tx_publish(tx, channel, seq, true, data, cb, ud);
}

void osb_rt_tx_next_seq(osb_db_tx_t *tx, const char *channel, osb_rt_publish_cb cb, void *ud) {
  const char *sfx;
  osb__rt_ns_t *ns = channel ? osb__rt_ns_lookup(channel, strlen(channel), &sfx) : NULL;
  if (!ns || !ns->durable) {
    if (cb) cb(ud, OSB_EINVAL, 0);
    return;
  }
  osb__rt_tx_next_seq(tx, ns, sfx, cb, ud);
}

/* ---- transient ---- */

int osb_rt_publish_transient(const char *channel, const json_t *data) {
  osb__rt_ns_t *ns;
  const char *sfx;
  size_t len = 0;
  char *text = osb_json_dumps(data, &len);
  int err = text ? check(channel, len, &ns, &sfx) : OSB_EINVAL;
  if (!err) {
    osb_rt_pub_t pub = {channel, text, len, 0, false, true, osb_wallclock_ms()};
    osb__rt->bus->publish(osb__rt->bus, &pub, NULL, NULL);
  }
  free(text);
  return err;
}
