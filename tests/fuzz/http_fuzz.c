/* http_fuzz.c: libFuzzer driver for HTTP/1.1 request parsing and head
 * handling through the real connection code (server.c, request.c,
 * response.c, router.c; see conn_harness.h). One input = the bytes one
 * client sends on one keep-alive connection, cut into up to three reads.
 * Handlers read every accessor a real handler uses (headers, cookies, query,
 * path params, JSON body), so the parsed request is checked end to end.
 *
 * Issue 8 #1 (found here too): trailer fields of a chunked body used to be
 * counted as headers with NULL names, and osb_req_cookie() passed NULL to
 * strcmp. Fixed (trailers never enter the header table); the reproducer is
 * in the corpus (corpus/http_fuzz/issue8-trailer-cookie), so it stays fixed. */
#include "conn_harness.h"

static void touch_request(osb_req_t *r) {
  const char *path = osb_req_path(r);
  osb_assert(path[0] == '/');
  static const char *const hdrs[] = {"host", "content-type", "x-request-id", "origin", "authorization",
                                     "x-csrf-token", "upgrade", "connection", "x-forwarded-for"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(hdrs); i++) {
    const char *v = osb_req_header(r, hdrs[i]);
    if (v) osb_assert(strlen(v) < OSB__MAX_HEADER_BYTES);
  }
  for (int i = 0; i < r->nheaders; i++) osb_assert(r->hn[i] && r->hv[i]);
  static const char *const cookies[] = {"osb_session", "osb_csrf", "osb_refresh", "a"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(cookies); i++) (void)osb_req_cookie(r, cookies[i]);
  static const char *const qs[] = {"q", "limit", "since", "a b", "x"};
  for (size_t i = 0; i < OSB_ARRAY_LEN(qs); i++) (void)osb_req_query(r, qs[i]);
  (void)osb_req_param(r, "id");
  (void)osb_req_is_https(r);
  (void)osb_http_origin_allowed(r);
  size_t bl;
  const char *body = osb_req_body(r, &bl);
  osb_assert(body[bl] == 0);
}

static void h_echo(osb_req_t *r) {
  touch_request(r);
  const char *q = osb_req_query(r, "q");
  json_t *j = json_pack("{s:s, s:s?, s:s?}", "path", osb_req_path(r), "q", q, "id", osb_req_param(r, "id"));
  if (!j) j = json_object();  /* invalid UTF-8 in a value: json_pack refuses it */
  osb_res_json(r, 200, j);
}

static void h_json(osb_req_t *r) {
  touch_request(r);
  json_t *j = osb_req_json(r);
  if (!j) return;  /* osb_req_json answered 400 */
  osb_res_json(r, 201, json_incref(j));
}

static void h_stream(osb_req_t *r) {
  touch_request(r);
  osb_res_header(r, "Cache-Control", "no-store");
  osb_res_stream_start(r, 200, "text/plain");
  osb_res_stream_write(r, "a", 1);
  osb_res_stream_write(r, "bc", 2);
  osb_res_stream_end(r);
}

static bool hook_touch(osb_req_t *r) {
  /* as the auth/rate-limit hooks do: read headers and cookies before routing */
  touch_request(r);
  return true;
}

static void routes(void) {
  osb_route(OSB_GET | OSB_HEAD, "/echo", h_echo);
  osb_route(OSB_GET | OSB_DELETE, "/items/:id", h_echo);
  osb_route(OSB_POST | OSB_PUT | OSB_PATCH, "/json", h_json);
  osb_route(OSB_GET, "/stream", h_stream);
  osb_http_add_hook(hook_touch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_init_server(routes);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t cut[2];
  size_t off = fz_splits(data, size, cut);
  osb__conn_t *c = fz_conn_new();
  fz_feed_split(c, data + off, size - off, cut);
  fz_conn_end(c);
  osb_assert(osb__srv.nconns == 0);
  return 0;
}
