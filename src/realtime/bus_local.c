/* bus_local.c: the in-process bus. A publication goes straight to this
 * instance's hub, which assigns the seq (unless the publication carries
 * one) and fans out. A cross-instance bus implements the same two
 * functions: carry the publication to every instance's osb__rt_deliver. */
#include <stdlib.h>

#include "realtime/internal.h"

static void local_publish(osb_rt_bus_t *bus, const osb_rt_pub_t *pub, osb_rt_publish_cb cb, void *ud) {
  osb__rt_deliver(pub, cb, ud);
}

static void local_dispose(osb_rt_bus_t *bus) { free(bus); }

osb_rt_bus_t *osb_rt_bus_local_new(void) {
  osb_rt_bus_t *b = osb_calloc(1, sizeof(*b));
  b->name = "local";
  b->publish = local_publish;
  b->dispose = local_dispose;
  return b;
}
