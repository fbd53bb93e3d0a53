/* hub.c: publishing, fan-out, subscriptions and resume.
 *
 * A publication reaches the hub through the bus (publish.c sends it: a
 * durable one after its transaction committed, with the database's seq)
 * and becomes one frame
 *   {"type":"message","channel":C,"seq":N,"data":D,"ts":T}
 * written once into an osb_msg_t with WebSocket headroom; the history ring
 * and every live subscriber's output queue take a reference to it.
 *
 * Resume (`subscribe` with `since`): if the ring holds every message after
 * `since`, they are replayed from it synchronously. Otherwise a durable
 * channel asks the store for the rows after `since`; rows older than the
 * ring's first entry come from the store, the rest from the ring (which
 * also holds whatever was published while the store was answering), and
 * any hole in the sequence turns the answer into recovered:false. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "obs/log.h"
#include "realtime/internal.h"

osb__rt_hub_t *osb__rt;

static void sub_free(osb__rt_sub_t *sub);
static void cl_unlink(osb__rt_sub_t *sub);

void osb__rt_default_options(osb__rt_options_t *o) {
  memset(o, 0, sizeof(*o));
  o->max_subscriptions = 100;
  o->msg_rate = 50;
  o->msg_burst = 100;
  o->abuse_limit = 100;
  o->max_data_bytes = 65536;
  o->replay_max = 1000;
  o->backlog_max = 64;
  o->heartbeat_s = 25;
  o->max_connections = 0;
  o->presence_list_max = 1000;
}

/* ---- metrics ---- */

static const char *const in_types[8] = {"auth", "subscribe", "unsubscribe", "publish",
                                        "presence", "ping", "invalid", "unknown"};

static void stats_init(osb__rt_stats_t *st) {
  osb_metric_t *m;
  st->connections = osb_metric_series0(osb_metric_gauge(
      "osb_realtime_connections", "WebSocket connections attached to the realtime hub", NULL));
  st->subscriptions = osb_metric_series0(osb_metric_gauge(
      "osb_realtime_subscriptions", "Channel subscriptions", NULL));
  st->channels = osb_metric_series0(osb_metric_gauge(
      "osb_realtime_channels", "Channels with subscribers or history", NULL));
  st->published = osb_metric_series0(osb_metric_counter(
      "osb_realtime_published_total", "Messages published on channels", NULL));
  st->deliveries = osb_metric_series0(osb_metric_counter(
      "osb_realtime_deliveries_total", "Channel messages queued to subscribers (live and replayed)", NULL));
  m = osb_metric_counter("osb_realtime_drops_total",
                         "Channel messages not queued to a subscriber", "reason");
  st->drops_slow = osb_metric_series1(m, "slow_consumer");
  st->drops_closed = osb_metric_series1(m, "closing");
  st->slow_closes = osb_metric_series0(osb_metric_counter(
      "osb_realtime_slow_consumer_closes_total", "Connections closed with 1013 by the send buffer limit", NULL));
  m = osb_metric_counter("osb_realtime_resume_total", "subscribe with since, by outcome", "outcome");
  st->resume_memory = osb_metric_series1(m, "memory");
  st->resume_store = osb_metric_series1(m, "store");
  st->resume_none = osb_metric_series1(m, "up_to_date");
  st->resume_lost = osb_metric_series1(m, "not_recovered");
  st->rate_limited = osb_metric_series0(osb_metric_counter(
      "osb_realtime_rate_limited_total", "Client messages rejected by the per-connection rate limit", NULL));
  st->abuse_closes = osb_metric_series0(osb_metric_counter(
      "osb_realtime_abuse_closes_total", "Connections closed with 1008 for sustained rate abuse", NULL));
  st->bad_messages = osb_metric_series0(osb_metric_counter(
      "osb_realtime_errors_sent_total", "error replies sent to clients", NULL));
  m = osb_metric_counter("osb_realtime_messages_in_total", "Client messages by type", "type");
  for (size_t i = 0; i < OSB_ARRAY_LEN(in_types); i++) st->in[i] = osb_metric_series1(m, in_types[i]);
  st->out_replies = osb_metric_series0(osb_metric_counter(
      "osb_realtime_messages_out_total", "Frames sent to clients other than channel messages", NULL));
}

/* ---- hub lifetime ---- */

/* Static storage, like every module-level handle: main's final uv_walk may
 * close it, and nothing needs freeing in a close callback. */
static uv_timer_t sweep_timer;
static bool sweep_started;
static uv_timer_t hold_timer;   /* durable messages waiting for a gap, below */
static bool hold_started;

static void sweep_cb(uv_timer_t *t) { osb__rt_sweep(uv_now(t->loop)); }

void osb__rt_hub_init(const osb__rt_options_t *opt, const osb__rt_transport_t *tr,
                      osb__rt_verify_fn verify, osb_rt_store_t *store, osb_rt_bus_t *bus,
                      uv_loop_t *loop) {
  osb_assert(osb__rt == NULL);
  osb_assert(opt->max_subscriptions <= UINT8_MAX && opt->backlog_max <= UINT8_MAX);   /* client's counters */
  osb__rt_hub_t *hub = osb_calloc(1, sizeof(*hub));
  hub->opt = *opt;
  hub->tr = tr;
  hub->verify = verify;
  hub->store = store;
  hub->bus = bus;
  hub->nbuckets = 64;
  hub->buckets = osb_calloc(hub->nbuckets, sizeof(*hub->buckets));
  hub->loop = loop;
  stats_init(&hub->st);
  osb__rt = hub;
  if (loop && !sweep_started) {
    uv_timer_init(loop, &sweep_timer);
    uv_timer_start(&sweep_timer, sweep_cb, 5000, 5000);
    uv_unref((uv_handle_t *)&sweep_timer);
    sweep_started = true;
  }
}

static void fail_waiting(osb__rt_channel_t *ch, int err);

void osb__rt_hub_free(void) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub) return;
  if (sweep_started && !uv_is_closing((uv_handle_t *)&sweep_timer)) uv_close((uv_handle_t *)&sweep_timer, NULL);
  if (hold_started && !uv_is_closing((uv_handle_t *)&hold_timer)) uv_close((uv_handle_t *)&hold_timer, NULL);
  /* The store goes first: its pending callbacks must not fire afterwards. */
  if (hub->store) hub->store->dispose(hub->store);
  hub->store = NULL;
  for (uint32_t i = 0; i < hub->nbuckets; i++) {
    osb__rt_channel_t *c = hub->buckets[i], *next;
    for (; c; c = next) {
      next = c->hnext;
      fail_waiting(c, OSB_EUNAVAIL);
      osb_list_t *pos, *tmp;
      osb_list_foreach_safe(pos, tmp, &c->subs) {
        osb__rt_sub_t *s = osb_container_of(pos, osb__rt_sub_t, ch_link);
        cl_unlink(s);
        sub_free(s);
      }
      osb__rt_ring_free(&c->hist);
      free(c);
    }
  }
  if (hub->bus) hub->bus->dispose(hub->bus);
  free(hub->buckets);
  free(hub);
  osb__rt = NULL;
}

void osb_rt_set_store(osb_rt_store_t *st) {
  osb_assert(osb__rt);
  if (osb__rt->store) osb__rt->store->dispose(osb__rt->store);
  osb__rt->store = st;
}

void osb_rt_set_bus(osb_rt_bus_t *bus) {
  osb_assert(osb__rt);
  if (osb__rt->bus) osb__rt->bus->dispose(osb__rt->bus);
  osb__rt->bus = bus;
}

/* ---- frames ---- */

static osb_msg_t *message_frame(const osb__rt_channel_t *ch, uint64_t seq, const char *data,
                                size_t len, uint64_t ts) {
  char head[96], tail[48];
  /* The channel name was validated against [A-Za-z0-9_.@:-]: no escaping. */
  int hn = snprintf(head, sizeof(head), "{\"type\":\"message\",\"channel\":\"");
  int sn = snprintf(head + hn, sizeof(head) - (size_t)hn, "\",\"seq\":%" PRIu64 ",\"data\":", seq);
  int tn = snprintf(tail, sizeof(tail), ",\"ts\":%" PRIu64 "}", ts);
  size_t total = (size_t)hn + ch->namelen + (size_t)sn + len + (size_t)tn;
  osb_msg_t *m = osb_msg_new(osb__rt->tr->headroom, total);
  char *p = m->data;
  memcpy(p, head, (size_t)hn), p += hn;
  memcpy(p, ch->name, ch->namelen), p += ch->namelen;
  memcpy(p, head + hn, (size_t)sn), p += sn;
  memcpy(p, data, len), p += len;
  memcpy(p, tail, (size_t)tn);
  m->len = total;
  osb__rt->tr->finish(m);
  return m;
}

/* ---- channel loading (durable channels learn their last seq) ---- */

typedef struct waiting_pub {
  osb_list_t link;
  osb_rt_publish_cb cb;
  void *ud;
  uint64_t seq;
  uint64_t ts_ms;
  uint64_t at_ms;          /* loop clock when it started waiting */
  bool stored;
  size_t len;
  char data[];
} waiting_pub_t;

/* ---- durable messages ahead of their turn ----
 * Durable messages carry the database's seq and normally reach the hub in
 * seq order, but two transactions' commit answers can arrive on two pool
 * connections in either order (and a cross-instance bus reorders too). A
 * message whose seq is past ch->seq + 1 therefore waits in ch->waiting
 * (kept sorted by seq, also while the channel loads) until the missing
 * ones arrive, for at most HOLD_MS; after that it is delivered anyway and
 * the gap is left to resume (`since`), as for a message committed
 * elsewhere that never reaches this hub. */
#define HOLD_MS 500

static void deliver_ready(osb__rt_channel_t *ch, const char *data, size_t len, uint64_t seq_hint,
                          uint64_t ts, osb_rt_publish_cb cb, void *ud);


static void insert_sorted(osb__rt_channel_t *ch, waiting_pub_t *w) {
  osb_list_t *pos = ch->waiting.prev;
  while (pos != &ch->waiting && osb_container_of(pos, waiting_pub_t, link)->seq > w->seq) pos = pos->prev;
  osb_list_insert_head(pos, &w->link);   /* after pos */
}

static waiting_pub_t *waiting_new(const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  waiting_pub_t *w = osb_malloc(sizeof(*w) + pub->len + 1);
  w->cb = cb;
  w->ud = ud;
  w->seq = pub->seq;
  w->ts_ms = pub->ts_ms;
  w->at_ms = osb_now_ms();
  w->stored = pub->stored;
  w->len = pub->len;
  memcpy(w->data, pub->data, pub->len);
  w->data[pub->len] = 0;
  return w;
}

static void hold_cb(uv_timer_t *t);

static void hold_arm(void) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub->loop) return;   /* tests: osb__rt_sweep flushes */
  if (!hold_started) {
    uv_timer_init(hub->loop, &hold_timer);
    uv_unref((uv_handle_t *)&hold_timer);
    hold_started = true;
  }
  if (!uv_is_active((uv_handle_t *)&hold_timer) && !uv_is_closing((uv_handle_t *)&hold_timer))
    uv_timer_start(&hold_timer, hold_cb, HOLD_MS / 2, 0);
}

/* Deliver the waiting messages that are next in line (or, with `force`,
 * the ones that waited HOLD_MS, gap or not). The channel stays pinned. */
static void release_waiting(osb__rt_channel_t *ch, uint64_t now_ms, bool force) {
  ch->pins++;
  while (!osb_list_empty(&ch->waiting)) {
    waiting_pub_t *w = osb_container_of(ch->waiting.next, waiting_pub_t, link);
    if (w->seq > ch->seq + 1 && !(force && w->at_ms + HOLD_MS <= now_ms)) break;
    osb_list_remove(&w->link);
    deliver_ready(ch, w->data, w->len, w->seq, w->ts_ms, w->cb, w->ud);
    free(w);
  }
  bool more = !osb_list_empty(&ch->waiting);
  ch->pins--;
  if (more) hold_arm();
  osb__rt_channel_gc(ch);
}

/* Flush what waited too long, on every channel (rare: only gaps wait).
 * The channels are pinned first: a delivery may close a connection at once
 * and free other channels it was the last subscriber of. */
static void flush_held(uint64_t now_ms) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t **v = NULL;
  size_t n = 0, cap = 0;
  for (uint32_t i = 0; i < hub->nbuckets; i++)
    for (osb__rt_channel_t *c = hub->buckets[i]; c; c = c->hnext) {
      if (c->state != OSB__RT_CH_READY || osb_list_empty(&c->waiting)) continue;
      if (n == cap) v = osb_realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));
      c->pins++;
      v[n++] = c;
    }
  for (size_t i = 0; i < n; i++) {
    release_waiting(v[i], now_ms, true);
    v[i]->pins--;
    osb__rt_channel_gc(v[i]);
  }
  free(v);
}

static void hold_cb(uv_timer_t *t) {
  if (osb__rt) flush_held(uv_now(t->loop));
}

void osb__rt_flush_held(uint64_t now_ms) {
  if (osb__rt) flush_held(now_ms);
}

static void start_replay(osb__rt_sub_t *sub);
static void deliver_ready(osb__rt_channel_t *ch, const char *data, size_t len, uint64_t seq_hint,
                          uint64_t ts, osb_rt_publish_cb cb, void *ud);
static void sub_answer(osb__rt_sub_t *sub, bool recovered, osb_msg_t **frames, size_t n);

static void fail_waiting(osb__rt_channel_t *ch, int err) {
  while (!osb_list_empty(&ch->waiting)) {
    waiting_pub_t *w = osb_container_of(ch->waiting.next, waiting_pub_t, link);
    osb_list_remove(&w->link);
    if (w->cb) w->cb(w->ud, err, 0);
    free(w);
  }
}

static void channel_loaded(void *ud, int err, uint64_t seq) {
  osb__rt_channel_t *ch = ud;
  ch->pins--;
  if (err) {
    osb_log(OSB_LOG_WARN, "realtime", "cannot read the last seq of %s: %s", ch->name, osb_strerror(err));
    ch->state = OSB__RT_CH_FAILED;
    /* Detach the waiting subscriptions first and answer them after: an
     * answer lets their clients handle further messages, which must not
     * find this channel half torn down. */
    size_t n = 0;
    struct { osb__rt_client_t *cl; json_t *id; } *w = osb_malloc(sizeof(*w) * (ch->nsubs ? ch->nsubs : 1));
    ch->pins++;
    while (!osb_list_empty(&ch->subs)) {
      osb__rt_sub_t *s = osb_container_of(ch->subs.next, osb__rt_sub_t, ch_link);
      w[n].cl = osb__rt_sub_cl(s);
      w[n].id = s->setup->req_id ? json_incref(s->setup->req_id) : NULL;
      osb__rt_client_ref(w[n].cl);
      n++;
      osb__rt_sub_remove(s, false);
    }
    fail_waiting(ch, OSB_EUNAVAIL);
    char name[200];
    snprintf(name, sizeof(name), "%s", ch->name);
    ch->pins--;
    osb__rt_channel_gc(ch);
    for (size_t i = 0; i < n; i++) {
      osb__rt_send_error(w[i].cl, w[i].id, "unavailable", "history of %s is unavailable", name);
      if (w[i].cl->attached) osb__rt_client_done(w[i].cl);
      json_decref(w[i].id);
      osb__rt_client_unref(w[i].cl);
    }
    free(w);
    return;
  }
  /* A committed message whose delivery waits for this load may already be
   * counted in the seq just read: start below it so that it is delivered
   * live, in order. */
  if (!osb_list_empty(&ch->waiting)) {   /* sorted: the first has the lowest seq */
    waiting_pub_t *w = osb_container_of(ch->waiting.next, waiting_pub_t, link);
    if (w->seq && w->seq - 1 < seq) seq = w->seq - 1;
  }
  ch->seq = seq;
  ch->state = OSB__RT_CH_READY;
  ch->pins++;
  osb__rt_sub_t mark, *s;
  osb__rt_walk_start(ch, &mark);
  while ((s = osb__rt_walk_next(ch, &mark)))
    if (s->state == OSB__RT_SUB_WAIT) start_replay(s);
  release_waiting(ch, osb_now_ms(), false);
  ch->pins--;
  osb__rt_channel_gc(ch);
}

osb__rt_channel_t *osb__rt_channel_open(const char *name, size_t len, int *err) {
  osb__rt_channel_t *ch = osb__rt_channel_find(name, len);
  if (ch && ch->state == OSB__RT_CH_FAILED) {   /* a failed load still being torn down */
    *err = OSB_EUNAVAIL;
    return NULL;
  }
  if (ch) return ch;
  ch = osb__rt_channel_get(name, len);
  if (!ch) {
    *err = OSB_EINVAL;
    return NULL;
  }
  /* Non-durable channels start from the cluster's seq when the bus numbers
   * them (channel_seqs); otherwise from 0. */
  bool cluster = osb__rt->bus && osb__rt->bus->cluster_seqs;
  if ((!ch->ns->durable && !cluster) || !osb__rt->store) return ch;
  ch->state = OSB__RT_CH_LOADING;
  ch->pins += 2;   /* one for the load, one until we return */
  osb__rt->store->last_seq(osb__rt->store, ch->name, channel_loaded, ch);
  ch->pins--;
  if (ch->state == OSB__RT_CH_FAILED) {
    osb__rt_channel_gc(ch);
    *err = OSB_EUNAVAIL;
    return NULL;
  }
  return ch;
}

/* ---- publishing ---- */

static void fanout(osb__rt_channel_t *ch, osb_msg_t *frame) {
  osb__rt_hub_t *hub = osb__rt;
  uint64_t ok = 0, slow = 0, closed = 0;
  osb__rt_sub_t mark, *s;
  ch->pins++;
  osb__rt_walk_start(ch, &mark);
  while ((s = osb__rt_walk_next(ch, &mark))) {
    if (s->state != OSB__RT_SUB_LIVE) continue;   /* replaying subs read the ring later */
    int r = hub->tr->send(osb__rt_client_conn(osb__rt_sub_cl(s)), frame);
    if (r == 0) ok++;
    else if (r == OSB_ESLOW) slow++;
    else closed++;
  }
  ch->pins--;
  if (ok) osb_series_inc(hub->st.deliveries, (double)ok);
  if (slow) {
    osb_series_inc(hub->st.drops_slow, (double)slow);
    osb_series_inc(hub->st.slow_closes, (double)slow);
  }
  if (closed) osb_series_inc(hub->st.drops_closed, (double)closed);
}

/* A gap on a non-durable channel (messages the bus lost while it was
 * down, or that never arrived within HOLD_MS) cannot be replayed: tell the
 * live subscribers with {"type":"reset","channel","seq","missed",
 * "recovered":false} (docs/protocol.md): their state may be stale up to
 * `seq`, reload it; live messages continue after it. */
static void send_reset(osb__rt_channel_t *ch, uint64_t seq, uint64_t missed) {
  if (!ch->nsubs) return;
  json_t *j = json_pack("{s:s, s:s#, s:I, s:I, s:b}", "type", "reset", "channel", ch->name, (int)ch->namelen,
                        "seq", (json_int_t)seq, "missed", (json_int_t)missed, "recovered", false);
  osb_msg_t *frame = osb__rt_frame_json(j);
  json_decref(j);
  osb__rt_sub_t mark, *s;
  ch->pins++;
  osb__rt_walk_start(ch, &mark);
  while ((s = osb__rt_walk_next(ch, &mark)))
    if (s->state == OSB__RT_SUB_LIVE) osb__rt_send_frame(osb__rt_sub_cl(s), frame);
  ch->pins--;
  osb_msg_unref(frame);
  osb_log(OSB_LOG_INFO, "realtime", "%s: %" PRIu64 " message(s) up to seq %" PRIu64 " lost on the bus; reset sent",
          ch->name, missed, seq);
}

/* A durable message arrives with the seq the database gave it (committed
 * already); any other with seq_hint 0 and gets the next in-memory seq.
 * osb__rt_deliver lets a durable message through only when it is next in
 * line or waited HOLD_MS for the missing ones (then it jumps the gap, which
 * a subscriber resumes over with `since`); a seq at or below the channel's
 * was counted by the channel's load already, or is a duplicate, and is not
 * delivered live again. */
static void deliver_ready(osb__rt_channel_t *ch, const char *data, size_t len, uint64_t seq_hint,
                          uint64_t ts, osb_rt_publish_cb cb, void *ud) {
  osb__rt_hub_t *hub = osb__rt;
  uint64_t seq = ch->seq + 1;
  if (seq_hint) {
    if (seq_hint <= ch->seq) {
      /* Normal right after a load that already counted it (its row is in
       * the store for resume), so not a warning. */
      osb_log(OSB_LOG_DEBUG, "realtime", "%s: seq %" PRIu64 " is not above %" PRIu64 "; not delivered live",
              ch->name, seq_hint, ch->seq);
      osb__rt_channel_gc(ch);
      if (cb) cb(ud, OSB_ECONFLICT, 0);
      return;
    }
    if (!ch->ns->durable && seq_hint > ch->seq + 1) send_reset(ch, seq_hint - 1, seq_hint - 1 - ch->seq);
    seq = seq_hint;
  }
  ch->seq = seq;
  if (!ts) ts = osb_wallclock_ms();
  osb_msg_t *frame = message_frame(ch, seq, data, len, ts);
  osb__rt_ring_push(&ch->hist, seq, osb_now_ms(), frame);
  fanout(ch, frame);
  osb_msg_unref(frame);
  osb_series_inc(hub->st.published, 1);
  osb__rt_channel_gc(ch);
  if (cb) cb(ud, 0, seq);
}

/* {"type":"message","channel":C,"data":D,"ts":T}: no seq, no history. */
static void deliver_transient(const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  osb__rt_channel_t *ch = osb__rt_channel_find(pub->channel, strlen(pub->channel));
  if (ch && ch->state == OSB__RT_CH_READY && ch->nsubs) {
    char head[48], tail[48];
    int hn = snprintf(head, sizeof(head), "{\"type\":\"message\",\"channel\":\"");
    int tn = snprintf(tail, sizeof(tail), ",\"ts\":%" PRIu64 "}", pub->ts_ms ? pub->ts_ms : osb_wallclock_ms());
    static const char mid[] = "\",\"data\":";
    size_t total = (size_t)hn + ch->namelen + sizeof(mid) - 1 + pub->len + (size_t)tn;
    osb_msg_t *m = osb_msg_new(osb__rt->tr->headroom, total);
    char *p = m->data;
    memcpy(p, head, (size_t)hn), p += hn;
    memcpy(p, ch->name, ch->namelen), p += ch->namelen;
    memcpy(p, mid, sizeof(mid) - 1), p += sizeof(mid) - 1;
    memcpy(p, pub->data, pub->len), p += pub->len;
    memcpy(p, tail, (size_t)tn);
    m->len = total;
    osb__rt->tr->finish(m);
    fanout(ch, m);
    osb_msg_unref(m);
  }
  if (cb) cb(ud, 0, 0);
}

void osb__rt_deliver(const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub) {
    if (cb) cb(ud, OSB_EUNAVAIL, 0);
    return;
  }
  size_t nlen = strlen(pub->channel);
  if (!osb__rt_ns_lookup(pub->channel, nlen, NULL)) {
    if (cb) cb(ud, OSB_EINVAL, 0);
    return;
  }
  if (pub->len > hub->opt.max_data_bytes) {
    if (cb) cb(ud, OSB_ETOOBIG, 0);
    return;
  }
  if (pub->transient) {
    deliver_transient(pub, cb, ud);
    return;
  }
  osb__rt_channel_t *ch = osb__rt_channel_find(pub->channel, nlen);
  if (ch && ch->state == OSB__RT_CH_FAILED) {
    if (cb) cb(ud, OSB_EUNAVAIL, 0);
    return;
  }
  if ((ch ? ch->ns : osb__rt_ns_lookup(pub->channel, nlen, NULL))->durable != pub->stored) {
    /* durable messages are numbered and stored by the database only */
    if (cb) cb(ud, OSB_EINVAL, 0);
    return;
  }
  if (!ch && pub->stored) {   /* nobody listens; the row waits in the store */
    if (cb) cb(ud, 0, pub->seq);
    return;
  }
  int err = 0;
  if (!ch) ch = osb__rt_channel_open(pub->channel, nlen, &err);
  if (!ch) {
    if (cb) cb(ud, err, 0);
    return;
  }
  if (ch->state == OSB__RT_CH_LOADING || (pub->seq && pub->seq > ch->seq + 1)) {
    insert_sorted(ch, waiting_new(pub, cb, ud));
    if (ch->state == OSB__RT_CH_READY) hold_arm();
    return;
  }
  ch->pins++;
  deliver_ready(ch, pub->data, pub->len, pub->seq, pub->ts_ms, cb, ud);
  ch->pins--;
  release_waiting(ch, osb_now_ms(), false);
}

/* ---- subscriptions ---- */

static void sub_free(osb__rt_sub_t *sub) {
  if (sub->setup) json_decref(sub->setup->req_id);
  free(sub->setup);
  if (sub->inline0) osb__rt_sub_cl(sub)->sub0_used = false;
  else free(osb_container_of(sub, osb__rt_subx_t, s));
}

/* Take the subscription out of its client's list (and count). */
static void cl_unlink(osb__rt_sub_t *sub) {
  osb__rt_client_t *cl = osb__rt_sub_cl(sub);
  cl->nsubs--;
  if (sub->inline0) {
    cl->sub0_linked = false;
    return;
  }
  osb__rt_subx_t *x = osb_container_of(sub, osb__rt_subx_t, s), **pp = &cl->more;
  while (*pp != x) pp = &(*pp)->next;
  *pp = x->next;
}

/* The client's inline subscription if it is free, else a new one; linked
 * at the end of the client's list. */
static osb__rt_sub_t *sub_alloc(osb__rt_client_t *cl) {
  cl->nsubs++;
  if (!cl->sub0_used) {
    cl->sub0_used = cl->sub0_linked = true;
    memset(&cl->sub0, 0, sizeof(cl->sub0));
    cl->sub0.inline0 = true;
    return &cl->sub0;
  }
  osb__rt_subx_t *x = osb_calloc(1, sizeof(*x)), **pp = &cl->more;
  x->cl = cl;
  while (*pp) pp = &(*pp)->next;
  *pp = x;
  return &x->s;
}

void osb__rt_subscribe(osb__rt_client_t *cl, osb__rt_channel_t *ch, json_t *req_id, bool has_since,
                       uint64_t since) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_sub_t *sub = sub_alloc(cl);
  sub->ch = ch;
  sub->setup = osb_calloc(1, sizeof(*sub->setup));
  sub->setup->req_id = req_id ? json_incref(req_id) : NULL;
  sub->setup->has_since = has_since;
  sub->setup->since = since;
  osb_list_insert_tail(&ch->subs, &sub->ch_link);
  ch->nsubs++;
  hub->nsubs++;
  osb_series_set(hub->st.subscriptions, (double)hub->nsubs);
  sub->state = OSB__RT_SUB_WAIT;
  if (ch->state == OSB__RT_CH_READY) start_replay(sub);
}

static bool sub_is(const osb__rt_sub_t *s, const char *name, size_t len) {
  return s->ch->namelen == len && memcmp(s->ch->name, name, len) == 0;
}

osb__rt_sub_t *osb__rt_client_sub(osb__rt_client_t *cl, const char *name, size_t len) {
  if (cl->sub0_linked && sub_is(&cl->sub0, name, len)) return &cl->sub0;
  for (osb__rt_subx_t *x = cl->more; x; x = x->next)
    if (sub_is(&x->s, name, len)) return &x->s;
  return NULL;
}

void osb__rt_sub_remove(osb__rt_sub_t *sub, bool presence_event) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t *ch = sub->ch;
  if (presence_event && sub->state == OSB__RT_SUB_LIVE) osb__rt_presence_event(sub, "leave");
  osb_list_remove(&sub->ch_link);
  cl_unlink(sub);
  ch->nsubs--;
  hub->nsubs--;
  osb_series_set(hub->st.subscriptions, (double)hub->nsubs);
  if (sub->state == OSB__RT_SUB_REPLAY) sub->dead = true;   /* the store callback frees it */
  else sub_free(sub);
  osb__rt_channel_gc(ch);
}

/* Reply `subscribed`, then the replayed frames, then go live. */
static void sub_answer(osb__rt_sub_t *sub, bool recovered, osb_msg_t **frames, size_t n) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_client_t *cl = osb__rt_sub_cl(sub);
  osb__rt_channel_t *ch = sub->ch;
  osb__rt_sub_setup_t *s = sub->setup;
  uint64_t missed = s->has_since && s->since < ch->seq ? ch->seq - s->since : 0;
  json_t *j = json_pack("{s:s, s:s#, s:I, s:b, s:I}", "type", "subscribed", "channel", ch->name,
                        (int)ch->namelen, "seq", (json_int_t)ch->seq, "recovered", recovered,
                        "missed", (json_int_t)missed);
  if (s->req_id) json_object_set(j, "id", s->req_id);
  osb__rt_client_ref(cl);
  int r = osb__rt_send_json(cl, j);
  uint64_t sent = 0;
  for (size_t i = 0; r == 0 && i < n; i++) {
    r = osb__rt_send_frame(cl, frames[i]);
    if (r == 0) sent++;
  }
  if (sent) osb_series_inc(hub->st.deliveries, (double)sent);
  if (cl->attached) {   /* still attached: the sub is alive too */
    sub->state = OSB__RT_SUB_LIVE;
    json_decref(s->req_id);
    free(s);
    sub->setup = NULL;
    osb__rt_presence_event(sub, "join");
    osb__rt_client_done(cl);
  }
  osb__rt_client_unref(cl);
}

typedef struct frame_vec {
  osb_msg_t **v;
  size_t n, cap;
} frame_vec_t;

static void fv_push(frame_vec_t *fv, osb_msg_t *m) {
  if (fv->n == fv->cap) {
    fv->cap = fv->cap ? fv->cap * 2 : 16;
    fv->v = osb_realloc(fv->v, fv->cap * sizeof(*fv->v));
  }
  fv->v[fv->n++] = m;
}

static void fv_free(frame_vec_t *fv) {
  for (size_t i = 0; i < fv->n; i++) osb_msg_unref(fv->v[i]);
  free(fv->v);
}

/* Append ring entries after *last, requiring each to be *last + 1. */
static bool take_ring(osb__rt_channel_t *ch, uint64_t *last, frame_vec_t *fv) {
  for (uint32_t i = osb__rt_ring_after(&ch->hist, *last); i < ch->hist.len; i++) {
    osb__rt_hist_t *h = osb__rt_ring_at(&ch->hist, i);
    if (h->seq != *last + 1) return false;
    fv_push(fv, osb_msg_ref(h->frame));
    *last = h->seq;
  }
  return *last == ch->seq;
}

static void range_done(void *ud, int err, const osb_rt_row_t *rows, size_t n) {
  osb__rt_sub_t *sub = ud;
  osb__rt_client_t *cl = osb__rt_sub_cl(sub);   /* the replay's reference (start_replay) */
  if (sub->dead) {
    sub_free(sub);
    osb__rt_client_unref(cl);
    return;
  }
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t *ch = sub->ch;
  uint64_t last = sub->setup->since;
  frame_vec_t fv = {0};
  bool ok = err == 0;
  if (err)
    osb_log(OSB_LOG_WARN, "realtime", "replay of %s from the store failed: %s", ch->name, osb_strerror(err));
  osb__rt_ring_expire(&ch->hist, osb_now_ms(), ch->ns->history_age_ms);
  uint64_t ring_first = ch->hist.len ? osb__rt_ring_at(&ch->hist, 0)->seq : UINT64_MAX;
  for (size_t i = 0; ok && i < n; i++) {
    if (rows[i].seq <= last) continue;
    if (rows[i].seq >= ring_first) break;
    if (rows[i].seq != last + 1) {
      ok = false;
      break;
    }
    fv_push(&fv, message_frame(ch, rows[i].seq, rows[i].data, rows[i].len, rows[i].ts_ms));
    last = rows[i].seq;
  }
  if (ok) ok = take_ring(ch, &last, &fv);
  osb_series_inc(ok ? hub->st.resume_store : hub->st.resume_lost, 1);
  if (!ok) {
    fv_free(&fv);
    fv = (frame_vec_t){0};
  }
  sub->state = OSB__RT_SUB_WAIT;
  sub_answer(sub, ok, fv.v, fv.n);
  fv_free(&fv);
  osb__rt_client_unref(cl);
}

static void start_replay(osb__rt_sub_t *sub) {
  osb__rt_hub_t *hub = osb__rt;
  osb__rt_channel_t *ch = sub->ch;
  osb__rt_sub_setup_t *s = sub->setup;
  osb__rt_ring_expire(&ch->hist, osb_now_ms(), ch->ns->history_age_ms);
  if (!s->has_since) {
    sub_answer(sub, false, NULL, 0);
    return;
  }
  if (s->since >= ch->seq) {
    /* Up to date; a since beyond seq is from another life of the channel. */
    osb_series_inc(s->since == ch->seq ? hub->st.resume_none : hub->st.resume_lost, 1);
    sub_answer(sub, s->since == ch->seq, NULL, 0);
    return;
  }
  uint64_t missed = ch->seq - s->since;
  uint32_t i = osb__rt_ring_after(&ch->hist, s->since);
  if (ch->hist.len - i == missed) {   /* seqs increase: count == missed means contiguous */
    frame_vec_t fv = {0};
    uint64_t last = s->since;
    bool ok = take_ring(ch, &last, &fv);
    osb_assert(ok);
    osb_series_inc(hub->st.resume_memory, 1);
    sub_answer(sub, true, fv.v, fv.n);
    fv_free(&fv);
    return;
  }
  if (ch->ns->durable && hub->store && missed <= hub->opt.replay_max) {
    sub->state = OSB__RT_SUB_REPLAY;
    osb__rt_client_ref(osb__rt_sub_cl(sub));   /* the sub (maybe sub0) lives until range_done */
    hub->store->range(hub->store, ch->name, s->since, (size_t)missed, range_done, sub);
    return;
  }
  osb_series_inc(hub->st.resume_lost, 1);
  sub_answer(sub, false, NULL, 0);
}

/* ---- introspection ---- */

size_t osb_rt_subscribers(const char *channel) {
  if (!osb__rt || !channel) return 0;
  osb__rt_channel_t *c = osb__rt_channel_find(channel, strlen(channel));
  return c ? c->nsubs : 0;
}

json_t *osb_rt_channels_json(void) {
  osb__rt_hub_t *hub = osb__rt;
  json_t *arr = json_array();
  if (hub) {
    osb__rt_sweep(osb_now_ms());
    for (uint32_t i = 0; i < hub->nbuckets; i++)
      for (osb__rt_channel_t *c = hub->buckets[i]; c; c = c->hnext)
        json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:I, s:b}", "channel", c->name,
                                             "subscribers", (json_int_t)c->nsubs, "seq",
                                             (json_int_t)c->seq, "history", (json_int_t)c->hist.len,
                                             "durable", c->ns->durable));
  }
  json_t *out = json_pack("{s:o, s:I, s:I}", "channels", arr, "connections",
                           (json_int_t)(hub ? hub->nclients : 0), "subscriptions",
                           (json_int_t)(hub ? hub->nsubs : 0));
  if (hub && hub->bus && hub->bus->status) json_object_set_new(out, "cluster", hub->bus->status(hub->bus));
  return out;
}

void osb_rt_foreach_member(void (*fn)(void *ud, const char *channel, const char *user_id, uint64_t conn_id),
                           void *ud) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub) return;
  for (uint32_t i = 0; i < hub->nbuckets; i++)
    for (osb__rt_channel_t *c = hub->buckets[i]; c; c = c->hnext)
      for (osb_list_t *pos = c->subs.next; pos != &c->subs; pos = pos->next) {
        osb__rt_sub_t *s = osb_container_of(pos, osb__rt_sub_t, ch_link);
        if (s->state == OSB__RT_SUB_LIVE) fn(ud, c->name, osb__rt_client_uid(osb__rt_sub_cl(s)), osb__rt_client_id(osb__rt_sub_cl(s)));
      }
}

/* ---- catching up after a bus outage ---- */

/* The channel itself is the callback's context (pinned meanwhile): a
 * store disposed meanwhile drops the callback, and hub_free frees the
 * channel, so nothing is left to leak. */
static void resync_rows(void *ud, int err, const osb_rt_row_t *rows, size_t n);

static void resync_range(osb__rt_channel_t *ch) {
  osb__rt->store->range(osb__rt->store, ch->name, ch->seq, osb__rt->opt.replay_max, resync_rows, ch);
}

/* Durable: deliver the rows committed meanwhile (in order; what the bus
 * also brings is a duplicate the seq check drops), then ask again if the
 * page was full. */
static void resync_rows(void *ud, int err, const osb_rt_row_t *rows, size_t n) {
  osb__rt_channel_t *ch = ud;
  if (err) osb_log(OSB_LOG_WARN, "realtime", "catching up %s failed: %s", ch->name, osb_strerror(err));
  for (size_t i = 0; !err && i < n; i++) {
    osb_rt_pub_t pub = {ch->name, rows[i].data, rows[i].len, rows[i].seq, true, false, rows[i].ts_ms};
    osb__rt_deliver(&pub, NULL, NULL);
  }
  if (!err && n == osb__rt->opt.replay_max && ch->nsubs) {
    resync_range(ch);
    return;
  }
  ch->pins--;
  osb__rt_channel_gc(ch);
}

/* Non-durable: nothing to replay; a seq that moved on is a reset. */
static void resync_seq(void *ud, int err, uint64_t seq) {
  osb__rt_channel_t *ch = ud;
  if (!err && seq > ch->seq && osb_list_empty(&ch->waiting)) {
    send_reset(ch, seq, seq - ch->seq);
    ch->seq = seq;
  }
  ch->pins--;
  osb__rt_channel_gc(ch);
}

void osb_rt_bus_resync(void) {
  osb__rt_hub_t *hub = osb__rt;
  if (!hub || !hub->store) return;
  for (uint32_t i = 0; i < hub->nbuckets; i++)
    for (osb__rt_channel_t *c = hub->buckets[i]; c; c = c->hnext) {
      if (c->state != OSB__RT_CH_READY || !c->nsubs) continue;
      c->pins++;
      if (c->ns->durable) {
        resync_range(c);
      } else if (hub->bus && hub->bus->cluster_seqs) {
        hub->store->last_seq(hub->store, c->name, resync_seq, c);
      } else {
        c->pins--;
      }
    }
}

/* Whether `who` may learn which users read a channel of `ns` (see realtime.h). */
static bool members_visible(const osb__rt_ns_t *ns, const osb_rt_who_t *who) {
  if (who && who->user_id && (who->role == OSB_ROLE_ADMIN || who->role == OSB_ROLE_SERVICE)) return true;
  return ns->read != OSB__RT_ANYONE && ns->read != OSB__RT_SIGNED_IN;
}

json_t *osb_rt_presence_json(const char *channel, const osb_rt_who_t *who) {
  size_t len = strlen(channel);
  osb__rt_ns_t *ns = osb__rt_ns_lookup(channel, len, NULL);
  if (!ns) return NULL;
  osb__rt_channel_t *ch = osb__rt ? osb__rt_channel_find(channel, len) : NULL;
  size_t count = 0, anon = 0;
  bool list = members_visible(ns, who);
  json_t *members = ch ? osb__rt_presence_members(ch, list, &count, &anon) : json_array();
  osb_rt_bus_t *bus = osb__rt ? osb__rt->bus : NULL;
  if (bus && bus->presence) bus->presence(bus, channel, members, list, osb__rt->opt.presence_list_max, &count, &anon);
  return json_pack("{s:s, s:o, s:I, s:I}", "channel", channel, "members", members, "count",
                   (json_int_t)count, "anonymous", (json_int_t)anon);
}

void osb_rt_check_read(const char *channel, const osb_rt_who_t *who, osb_rt_check_cb cb, void *ctx) {
  const char *sfx;
  osb__rt_ns_t *ns = osb__rt_ns_lookup(channel, strlen(channel), &sfx);
  if (!ns) {
    cb(ctx, OSB_EINVAL, false);
    return;
  }
  switch (osb__rt_decide(ns, false, sfx, who)) {
    case OSB__RT_ALLOW: cb(ctx, 0, true); return;
    case OSB__RT_DENY: cb(ctx, 0, false); return;
    case OSB__RT_ASK: ns->check(ns->check_ud, channel, sfx, who, cb, ctx); return;
  }
}
