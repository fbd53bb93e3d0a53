/* ops.h: the operations routes: /health (liveness, no I/O), /ready
 * (readiness: 503 while a critical component fails or during shutdown),
 * /health/details (application/health+json) and /metrics (Prometheus). */
#ifndef OSB_APPS_OPS_H
#define OSB_APPS_OPS_H

/* Register the four routes and the health shutdown hook (/ready answers 503
 * from OSB_SHUTDOWN_HEALTH on). With METRICS_TOKEN set, /metrics and
 * /health/details need "Authorization: Bearer <METRICS_TOKEN>". */
void osb_ops_routes(void);
/* Free the prebuilt /health body (after the HTTP server stopped). */
void osb_ops_dispose(void);

#endif
