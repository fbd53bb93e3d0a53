/* endpoints.h: the operations routes: /health (liveness, no I/O), /ready
 * (readiness: 503 while a critical component fails or during shutdown),
 * /health/details (application/health+json) and /metrics (Prometheus). */
#ifndef OSB_OBS_ENDPOINTS_H
#define OSB_OBS_ENDPOINTS_H

void osb_obs_routes(void);
void osb_obs_dispose(void);

#endif
