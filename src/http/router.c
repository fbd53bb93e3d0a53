/* router.c: method + path patterns with :params, as a segment trie.
 *
 * Each node is one path segment: literal children are tried first, then the
 * one parameter child, with backtracking, so "/api/agents/new" and
 * "/api/agents/:id" can coexist. A node that ends a pattern holds one
 * handler per method. Built at start-up, read-only afterwards. */
#include "http/internal.h"

#include <stdlib.h>

typedef struct rnode {
  char *seg;                 /* literal segment; NULL for the root */
  size_t seglen;
  char *pname;               /* parameter name, for a parameter node */
  struct rnode **kids;
  int nkids;
  struct rnode *param;
  osb_handler_fn fns[7];     /* by method bit index */
  unsigned methods;
  char *pattern;
} rnode_t;

static rnode_t *root;

static int method_index(osb_method_t m) {
  for (int i = 0; i < 7; i++)
    if ((unsigned)m == (1u << i)) return i;
  return -1;
}

static rnode_t *node_new(void) { return osb_calloc(1, sizeof(rnode_t)); }

static void node_free(rnode_t *n) {
  if (!n) return;
  for (int i = 0; i < n->nkids; i++) node_free(n->kids[i]);
  free(n->kids);
  node_free(n->param);
  free(n->seg);
  free(n->pname);
  free(n->pattern);
  free(n);
}

void osb__router_reset(void) {
  node_free(root);
  root = NULL;
}

void osb_route(unsigned methods, const char *pattern, osb_handler_fn fn) {
  osb_assert(pattern[0] == '/');
  if (!root) root = node_new();
  rnode_t *n = root;
  const char *p = pattern + 1;
  int nparams = 0;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (p[0] == ':') {
      osb_assert(len > 1 && ++nparams <= OSB__MAX_PARAMS);
      if (!n->param) {
        n->param = node_new();
        n->param->pname = osb_strndup(p + 1, len - 1);
      } else {
        /* one parameter name per position keeps matches unambiguous */
        osb_assert(strlen(n->param->pname) == len - 1 && strncmp(n->param->pname, p + 1, len - 1) == 0);
      }
      n = n->param;
    } else {
      rnode_t *next = NULL;
      for (int i = 0; i < n->nkids; i++)
        if (n->kids[i]->seglen == len && memcmp(n->kids[i]->seg, p, len) == 0) next = n->kids[i];
      if (!next) {
        next = node_new();
        next->seg = osb_strndup(p, len);
        next->seglen = len;
        n->kids = osb_realloc(n->kids, sizeof(*n->kids) * (size_t)(n->nkids + 1));
        n->kids[n->nkids++] = next;
      }
      n = next;
    }
    p += len;
    if (*p == '/') p++;
  }
  for (int i = 0; i < 7; i++) {
    if (!(methods & (1u << i))) continue;
    osb_assert(n->fns[i] == NULL);  /* a route registered twice is a bug */
    n->fns[i] = fn;
  }
  n->methods |= methods;
  if (!n->pattern) n->pattern = osb_strdup(pattern);
}

typedef struct {
  const char *pnames[OSB__MAX_PARAMS];
  const char *pstart[OSB__MAX_PARAMS];
  size_t plen[OSB__MAX_PARAMS];
  int nparams;
} capture_t;

/* A decoded path segment. */
typedef struct { const char *p; size_t len; } seg_t;

/* More segments than any pattern has: such a path matches nothing. */
#define MAX_SEGS 32

static rnode_t *walk(rnode_t *n, const seg_t *segs, int i, int nsegs, capture_t *cap) {
  if (i == nsegs) return n->methods ? n : NULL;
  const char *p = segs[i].p;
  size_t len = segs[i].len;
  for (int k = 0; k < n->nkids; k++) {
    rnode_t *kid = n->kids[k];
    if (kid->seglen == len && memcmp(kid->seg, p, len) == 0) {
      rnode_t *hit = walk(kid, segs, i + 1, nsegs, cap);
      if (hit) return hit;
    }
  }
  /* An empty segment ("//", a trailing slash) matches neither a literal nor
   * a parameter. */
  if (n->param && len > 0 && cap->nparams < OSB__MAX_PARAMS) {
    int idx = cap->nparams++;
    cap->pnames[idx] = n->param->pname;
    cap->pstart[idx] = p;
    cap->plen[idx] = len;
    rnode_t *hit = walk(n->param, segs, i + 1, nsegs, cap);
    if (hit) return hit;
    cap->nparams--;
  }
  return NULL;
}

int osb__router_match(osb_method_t m, const char *path, osb_req_t *req, osb__match_t *out) {
  memset(out, 0, sizeof(*out));
  if (!root || path[0] != '/') return OSB_ENOTFOUND;
  /* Split the raw path at '/', then decode each segment on its own (into
   * one copy), so "%2F" stays inside its segment. A path without '%'
   * needs no copy: its segments are read in place. */
  size_t plen = strlen(path);
  bool encoded = memchr(path, '%', plen) != NULL;
  char *buf = !encoded ? NULL : req ? osb__arena_alloc(req, plen + 1) : osb_malloc(plen + 1);
  seg_t segs[MAX_SEGS];
  int nsegs = 0, rc = OSB_ENOTFOUND;
  size_t o = 0;
  const char *p = path + 1, *end = path + plen;
  if (p < end) {
    for (;;) {
      const char *slash = memchr(p, '/', (size_t)(end - p));
      size_t len = slash ? (size_t)(slash - p) : (size_t)(end - p);
      if (nsegs == MAX_SEGS) goto done;
      if (encoded) {
        memcpy(buf + o, p, len);
        int dl = osb__url_decode(buf + o, len, false);
        if (dl < 0) goto done;
        segs[nsegs++] = (seg_t){buf + o, (size_t)dl};
        o += (size_t)dl + 1;
      } else {
        segs[nsegs++] = (seg_t){p, len};
      }
      if (!slash) break;
      p = slash + 1;
    }
  }
  capture_t cap;
  cap.nparams = 0;
  rnode_t *n = walk(root, segs, 0, nsegs, &cap);
  if (!n) goto done;
  out->pattern = n->pattern;
  out->allow = n->methods;
  out->nparams = cap.nparams;
  for (int i = 0; i < cap.nparams; i++) {
    out->pnames[i] = cap.pnames[i];
    char *v = req ? osb__arena_alloc(req, cap.plen[i] + 1) : osb_malloc(cap.plen[i] + 1);
    memcpy(v, cap.pstart[i], cap.plen[i]);
    v[cap.plen[i]] = 0;
    out->pvalues[i] = v;
  }
  int idx = method_index(m);
  if (idx < 0 || !n->fns[idx]) {
    rc = OSB_EDENIED;
    goto done;
  }
  out->fn = n->fns[idx];
  rc = 0;
done:
  if (!req) free(buf);
  return rc;
}
