/* openapi.h: the API description, compiled in from openapi/ (cmake/embed.cmake).
 *   GET /api/openapi.json              the OpenAPI 3.1 document (REST)
 *   GET /api/ws-protocol.schema.json   the JSON Schema of every WebSocket frame
 * Both public: they describe the API, not the deployment. */
#ifndef OSB_APPS_OPENAPI_H
#define OSB_APPS_OPENAPI_H

void osb_openapi_routes(void);
/* Drop the prebuilt bodies (after the loop ended). */
void osb_openapi_dispose(void);

#endif
