/* presence.c: who is subscribed to a channel.
 *
 * Members are the signed-in subscribers (user id and connection id; one user
 * with two tabs is two members). Anonymous subscribers are only counted, and
 * so are the members of a channel whose readers may not learn who else
 * reads it (osb_rt_presence_json).
 * Namespaces with presence_events (chat) tell the other members when a
 * signed-in member joins (its subscription became live) or leaves. */
#include "realtime/internal.h"

static json_t *member(const osb__rt_client_t *cl) {
  return json_pack("{s:s, s:I}", "user_id", cl->who->user_id, "conn_id", (json_int_t)osb__rt_client_id(cl));
}

json_t *osb__rt_presence_members(osb__rt_channel_t *ch, bool list, size_t *count, size_t *anonymous) {
  json_t *arr = json_array();
  size_t n = 0, anon = 0, max = osb__rt->opt.presence_list_max;
  osb_list_t *pos;
  for (pos = ch->subs.next; pos != &ch->subs; pos = pos->next) {
    osb__rt_sub_t *s = osb_container_of(pos, osb__rt_sub_t, ch_link);
    if (s->state != OSB__RT_SUB_LIVE) continue;
    if (!osb__rt_sub_cl(s)->who) {
      anon++;
      continue;
    }
    if (n++ < max && list) json_array_append_new(arr, member(osb__rt_sub_cl(s)));
  }
  *count = n;
  *anonymous = anon;
  return arr;
}

void osb__rt_presence_event(osb__rt_sub_t *sub, const char *event) {
  osb__rt_channel_t *ch = sub->ch;
  osb__rt_client_t *cl = osb__rt_sub_cl(sub);
  osb_rt_bus_t *bus = osb__rt->bus;
  if (bus && bus->member) bus->member(bus, ch->name, osb__rt_client_uid(cl), osb__rt_client_id(cl), event[0] == 'j');
  if (!ch->ns->presence_events || !cl->who) return;
  json_t *j = json_pack("{s:s, s:s, s:s, s:[o]}", "type", "presence", "channel", ch->name, "event",
                        event, "members", member(cl));
  osb_msg_t *frame = osb__rt_frame_json(j);
  json_decref(j);
  osb__rt_sub_t mark, *s;
  ch->pins++;
  osb__rt_walk_start(ch, &mark);
  while ((s = osb__rt_walk_next(ch, &mark))) {
    if (s == sub || s->state != OSB__RT_SUB_LIVE) continue;
    osb__rt_send_frame(osb__rt_sub_cl(s), frame);
  }
  ch->pins--;
  osb_msg_unref(frame);
}
