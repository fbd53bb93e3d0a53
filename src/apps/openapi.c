/* openapi.c: serves the embedded API description, see openapi.h. */
#include "apps/openapi.h"

#include <stddef.h>

#include "core/core.h"
#include "http/http.h"

extern const unsigned char osb_openapi_json[];
extern const size_t osb_openapi_json_len;
extern const unsigned char osb_ws_schema_json[];
extern const size_t osb_ws_schema_json_len;

/* Built once and shared by reference, like /health's body. */
static osb_msg_t *openapi_body, *ws_body;

static void get_openapi(osb_req_t *req) {
  osb_res_header(req, "Cache-Control", "public, max-age=300");
  osb_res_msg(req, 200, "application/json", openapi_body);
}

static void get_ws_schema(osb_req_t *req) {
  osb_res_header(req, "Cache-Control", "public, max-age=300");
  osb_res_msg(req, 200, "application/schema+json", ws_body);
}

void osb_openapi_routes(void) {
  if (!openapi_body) openapi_body = osb_msg_from((const char *)osb_openapi_json, osb_openapi_json_len);
  if (!ws_body) ws_body = osb_msg_from((const char *)osb_ws_schema_json, osb_ws_schema_json_len);
  osb_route(OSB_GET, "/api/openapi.json", get_openapi);
  osb_route(OSB_GET, "/api/ws-protocol.schema.json", get_ws_schema);
}

void osb_openapi_dispose(void) {
  if (openapi_body) osb_msg_unref(openapi_body);
  if (ws_body) osb_msg_unref(ws_body);
  openapi_body = ws_body = NULL;
}
