/* ws_fuzz.c: libFuzzer driver for WebSocket frame decoding (ws.c with
 * wslay's frame layer) and UTF-8 validation. Each input runs a real
 * upgrade handshake on a fake connection (conn_harness.h), then its bytes
 * arrive as client frames in up to three reads: masking, fragmentation,
 * control frames, close codes, reassembly limits and the text-frame UTF-8
 * check all run as in production; the default WebSocket handler parses each
 * message as JSON and answers.
 *
 * Also a differential oracle: osb__utf8_valid() must agree with an
 * independent validator written from Unicode's Table 3-7 (well-formed UTF-8
 * byte sequences) on every input. */
#include "conn_harness.h"

static const char handshake[] =
    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/* Table 3-7, row by row. */
static bool utf8_reference(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) { i++; continue; }
    else if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return false;
    if (n - i <= need) return false;
    if (s[i + 1] < lo || s[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
    i += need + 1;
  }
  return true;
}

static void routes(void) {}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fz_init_server(routes);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (osb__utf8_valid(data, size) != utf8_reference(data, size)) {
    fprintf(stderr, "osb__utf8_valid disagrees with Table 3-7 (ours: %d)\n", osb__utf8_valid(data, size));
    abort();
  }
  size_t cut[2];
  size_t off = fz_splits(data, size, cut);
  osb__conn_t *c = fz_conn_new();
  fz_deliver(c, (const uint8_t *)handshake, sizeof(handshake) - 1);
  osb_assert(c->mode == OSB__CONN_WS && !c->closing);
  fz_feed_split(c, data + off, size - off, cut);
  fz_conn_end(c);
  osb_assert(osb__srv.nconns == 0 && osb_ws_count() == 0);
  return 0;
}
