/* realtime_api.h: the realtime server API (SPEC §4 "Realtime server API").
 *
 *   POST /api/realtime/publish {channel, data}   service key or admin → 200 {"seq"}
 *   GET  /api/realtime/channels                  admin (or service) → the channel table
 *   GET  /api/realtime/presence/:channel         signed in, with read access → members
 *
 * Errors (osb_res_error_code): 400 bad_request (also a name outside the
 * namespace table), 401, 403 forbidden, 404 not_found (presence of a name
 * outside the namespace table), 409 conflict, 413 too_large, 503
 * unavailable. */
#ifndef OSB_APPS_REALTIME_API_H
#define OSB_APPS_REALTIME_API_H

/* Register the routes; after osb_rt_start(), before the server listens. */
void osb_realtime_api_routes(void);

#endif
