/* voice_routes.h: the voice and upstream-state routes.
 *
 *   POST /api/voice/tts {text, voice_id?}   signed in → 200 audio/mpeg
 *        (X-Audio-Hash, X-Audio-URL, X-Cache: hit|miss); 400 validation_failed
 *        {fields}; 503 voice_disabled; 503 upstream_unavailable + Retry-After;
 *        502 upstream_error (the upstream's reason); 504 upstream_timeout.
 *   GET  /api/voice/audio/:hash             signed in → 200 stored audio, 404 not_found
 *   GET  /api/voice/status                  → {enabled, reason?, voice_id, model_id, breaker}
 *   GET  /api/upstreams                     admin → {upstreams:[osb_upstream_json...]}
 *   PATCH /api/upstreams/:name {breaker: "forced_open"|"auto"}   admin → the upstream;
 *        409 upstream_disabled without its key, 404 unknown name
 *
 * osb_upstream_routes also publishes every breaker transition on
 * agents:status as {"type":"upstream.state","upstream","state","reason"}. */
#ifndef OSB_APPS_VOICE_ROUTES_H
#define OSB_APPS_VOICE_ROUTES_H

/* After osb_voice_init / osb_upstream_init and osb_rt_start, before the server starts. */
void osb_voice_routes(void);
void osb_upstream_routes(void);

#endif
