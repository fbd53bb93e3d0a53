/* b64url.c: base64url (RFC 4648 §5) without padding, as JWTs use it.
 * The decoder is strict on purpose: a token has exactly one spelling, so
 * two different strings never carry the same signature bytes. */
#include "auth/internal.h"

static const char enc_tab[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void osb__b64url_encode(char *out, const void *in, size_t n) {
  const unsigned char *s = in;
  size_t i = 0, o = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    out[o++] = enc_tab[(v >> 18) & 63];
    out[o++] = enc_tab[(v >> 12) & 63];
    out[o++] = enc_tab[(v >> 6) & 63];
    out[o++] = enc_tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    out[o++] = enc_tab[(v >> 18) & 63];
    out[o++] = enc_tab[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    out[o++] = enc_tab[(v >> 18) & 63];
    out[o++] = enc_tab[(v >> 12) & 63];
    out[o++] = enc_tab[(v >> 6) & 63];
  }
  out[o] = 0;
}

static int dec_char(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int osb__b64url_decode(void *out, size_t *outlen, const char *in, size_t len) {
  unsigned char *d = out;
  size_t o = 0;
  uint32_t acc = 0;
  unsigned bits = 0;
  if (len % 4 == 1) return OSB_EINVAL;   /* 6 bits cannot make a byte */
  for (size_t i = 0; i < len; i++) {
    int v = dec_char((unsigned char)in[i]);
    if (v < 0) return OSB_EINVAL;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      d[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc != 0) return OSB_EINVAL;       /* non-canonical trailing bits */
  *outlen = o;
  return 0;
}
