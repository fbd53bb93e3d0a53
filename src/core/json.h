/* json.h: the one JSON serializer for every body and frame.
 *
 * REST bodies (osb_res_json), WebSocket frames (osb_ws_frame_json and the
 * realtime hub's replies) and the published data of channel messages are
 * all written here, with one number format: compact, reals with at most 15
 * significant digits (jansson's JSON_REAL_PRECISION(15)), so 0.1 is "0.1"
 * on every path instead of "0.10000000000000001" on some. Any JSON value
 * may be dumped (JSON_ENCODE_ANY), not only objects and arrays.
 *
 * Core may use jansson (a dependency of every module, like libuv and
 * libsodium here); the prototypes only need the opaque json_t. */
#ifndef OSB_CORE_JSON_H
#define OSB_CORE_JSON_H

#include "core/core.h"

typedef struct json_t json_t;
typedef struct json_error_t json_error_t;

/* Append the serialization of j (borrowed) to *m (refcnt 1; may be
 * reallocated). Returns 0, or OSB_EINVAL if j cannot be serialized
 * (NULL, or a NaN/infinite real); *m then holds what was written. */
int osb_json_dump_append(const json_t *j, osb_msg_t **m);

/* A new message with `headroom` bytes in front (for a protocol header)
 * holding the serialization of j; NULL if j cannot be serialized. */
osb_msg_t *osb_json_dump_msg(const json_t *j, size_t headroom);

/* Append the serialization of j (borrowed) to b (log fields). Returns 0,
 * or OSB_EINVAL (b then holds what was written). */
int osb_json_dump_buf(const json_t *j, osb_buf_t *b);

/* The serialization as NUL-terminated text (free() it), *len its length
 * (len may be NULL); NULL if j cannot be serialized. */
char *osb_json_dumps(const json_t *j, size_t *len);

/* What went wrong in a JSON text jansson rejected, in words of our own
 * ("unexpected end of input", "invalid syntax", "invalid UTF-8", ...):
 * jansson's e->text quotes the input ("... near '<token>'"), and a body or
 * a WebSocket message may hold a password or a token, so it is never echoed
 * (issue 8). Callers add e->line, e->column and e->position. */
const char *osb_json_error_kind(const json_error_t *e);

#endif
