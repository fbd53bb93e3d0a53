/* sse.c: an incremental text/event-stream parser (the WHATWG "event stream
 * interpretation" rules), fed the body of a streamed upstream reply piece by
 * piece. A partial line waits in `line` until its end arrives; complete
 * lines are handled in place without copying when the piece holds them. */
#include "upstream/upstream.h"

#include <stdlib.h>

void osb_sse_init(osb_sse_t *p, osb_sse_fn fn, void *ud, size_t max_event_bytes) {
  memset(p, 0, sizeof(*p));
  p->fn = fn;
  p->ud = ud;
  p->max_event_bytes = max_event_bytes ? max_event_bytes : (1u << 20);
  p->retry_ms = -1;
}

void osb_sse_dispose(osb_sse_t *p) {
  osb_buf_free(&p->line);
  osb_buf_free(&p->data);
  osb_buf_free(&p->event);
  osb_buf_free(&p->id);
}

static int dispatch(osb_sse_t *p) {
  int rc = 0;
  if (p->has_data) {
    size_t n = p->data.len;
    if (n && p->data.base[n - 1] == '\n') n--;   /* the last data line's '\n' */
    p->data.base[n] = 0;
    osb_sse_event_t ev = {
      .event = p->event.len ? p->event.base : "message",
      .data = p->data.base,
      .data_len = n,
      .id = p->id.len ? p->id.base : "",
      .retry_ms = p->retry_ms,
    };
    rc = p->fn(p->ud, &ev);
  }
  osb_buf_reset(&p->data);
  osb_buf_reset(&p->event);
  p->has_data = false;
  return rc;
}

static int field(osb_sse_t *p, const char *s, size_t n) {
  if (n == 0) return dispatch(p);
  if (s[0] == ':') return 0;   /* comment */
  const char *colon = memchr(s, ':', n);
  size_t nlen = colon ? (size_t)(colon - s) : n;
  const char *v = colon ? colon + 1 : s + n;
  size_t vlen = (size_t)(s + n - v);
  if (vlen && *v == ' ') v++, vlen--;
  if (nlen == 4 && memcmp(s, "data", 4) == 0) {
    if (p->data.len + vlen + 1 > p->max_event_bytes) return OSB_ETOOBIG;
    osb_buf_append(&p->data, v, vlen);
    osb_buf_append(&p->data, "\n", 1);
    p->has_data = true;
  } else if (nlen == 5 && memcmp(s, "event", 5) == 0) {
    osb_buf_reset(&p->event);
    osb_buf_append(&p->event, v, vlen);
    if (!p->event.base) osb_buf_reserve(&p->event, 1);
  } else if (nlen == 2 && memcmp(s, "id", 2) == 0) {
    if (!memchr(v, 0, vlen)) {
      osb_buf_reset(&p->id);
      osb_buf_append(&p->id, v, vlen);
    }
  } else if (nlen == 5 && memcmp(s, "retry", 5) == 0) {
    int ms = 0;
    size_t i = 0;
    for (; i < vlen && v[i] >= '0' && v[i] <= '9' && ms < 100000000; i++) ms = ms * 10 + (v[i] - '0');
    if (i == vlen && vlen) p->retry_ms = ms;
  }
  return 0;   /* unknown fields are ignored */
}

int osb_sse_feed(osb_sse_t *p, const char *buf, size_t n) {
  size_t i = 0;
  if (p->skip_lf && n) {
    p->skip_lf = false;
    if (buf[0] == '\n') i = 1;
  }
  if (!p->started) {
    /* A UTF-8 BOM may open the stream; it may itself arrive split. */
    static const char bom[] = "\xEF\xBB\xBF";
    size_t have = p->line.len;
    while (i < n && have < 3 && (unsigned char)buf[i] == (unsigned char)bom[have]) {
      osb_buf_append(&p->line, buf + i, 1);
      i++, have++;
    }
    if (have == 3) {
      osb_buf_reset(&p->line);
      p->started = true;
    } else if (i < n) {
      p->started = true;   /* not a BOM: the bytes held are line content */
    } else {
      return 0;            /* all of it could still be a BOM */
    }
  }
  while (i < n) {
    size_t j = i;
    while (j < n && buf[j] != '\n' && buf[j] != '\r') j++;
    if (j == n) {
      if (p->line.len + (n - i) > p->max_event_bytes) return OSB_ETOOBIG;
      osb_buf_append(&p->line, buf + i, n - i);
      return 0;
    }
    int rc;
    if (p->line.len) {
      if (p->line.len + (j - i) > p->max_event_bytes) return OSB_ETOOBIG;
      osb_buf_append(&p->line, buf + i, j - i);
      rc = field(p, p->line.base, p->line.len);
      osb_buf_reset(&p->line);
    } else {
      rc = field(p, buf + i, j - i);
    }
    if (rc) return rc;
    if (buf[j] == '\r') {
      if (j + 1 < n) {
        if (buf[j + 1] == '\n') j++;
      } else {
        p->skip_lf = true;
      }
    }
    i = j + 1;
  }
  return 0;
}
