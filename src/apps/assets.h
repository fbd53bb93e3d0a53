/* assets.h: files embedded in the binary at build time (cmake/embed.cmake
 * turns web/ and clients/js/ into build/<dir>/generated/assets.c).
 *
 * The table is static data: served as is, never freed. Each data array has
 * one NUL byte after its `len` bytes (not counted), so a text asset can be
 * handed to string functions. */
#ifndef OSB_APPS_ASSETS_H
#define OSB_APPS_ASSETS_H

#include <stddef.h>

typedef struct osb_asset {
  const char *url;            /* "/dashboard", "/client.js" */
  const char *content_type;   /* "text/html; charset=utf-8" */
  const unsigned char *data;
  size_t len;
} osb_asset_t;

/* Ends with a row whose url is NULL. */
extern const osb_asset_t osb_assets[];

#endif
