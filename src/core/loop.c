/* loop.c: core's part of the event loop: the one before-sleep phase (named
 * steps run from one uv_prepare_t, redis's beforeSleep) and the module
 * shutdown hooks. See core.h for the contract, docs/architecture.md for the
 * order of the steps. */
#include "core/core.h"

#include <limits.h>
#include <stdlib.h>
#include <uv.h>

typedef struct {
  const char *name;
  int order;
  osb_step_fn fn;      /* NULL: removed while a round was running */
  void *ud;
} step_t;

/* The handles live on the heap: closing them (a close callback frees the
 * pair) never races with opening a new pair for the next loop or test. */
typedef struct {
  uv_prepare_t prepare;
  uv_idle_t idle;
  int open;            /* handles not yet through their close callback */
} handles_t;

static struct {
  uv_loop_t *loop;
  step_t steps[OSB_CORE_MAX_STEPS];
  int nsteps;
  bool running;        /* inside a round: removals only mark, additions append */
  bool unsorted;       /* a step was appended while running */
  bool closed;         /* osb_core_close: no handles until the next osb_core_init */
  bool pending;        /* the last run ended with work left: the idle runs */
  handles_t *h;
} L;

static void handle_closed(uv_handle_t *hd) {
  handles_t *h = hd->data;
  if (--h->open == 0) free(h);
}

static void close_handles(void) {
  handles_t *h = L.h;
  if (!h) return;
  L.h = NULL;
  L.pending = false;
  uv_close((uv_handle_t *)&h->prepare, handle_closed);
  uv_close((uv_handle_t *)&h->idle, handle_closed);
}

/* Nothing to do in the idle callback: its being active keeps poll from
 * blocking, and the prepare runs the steps again right after it. */
static void on_idle(uv_idle_t *h) { OSB_UNUSED(h); }

static void on_prepare(uv_prepare_t *p) {
  OSB_UNUSED(p);
  osb_core_run_steps();
}

static void open_handles(void) {
  if (L.h || L.closed || !L.loop || L.nsteps == 0) return;
  handles_t *h = osb_calloc(1, sizeof(*h));
  uv_prepare_init(L.loop, &h->prepare);
  uv_idle_init(L.loop, &h->idle);
  h->prepare.data = h->idle.data = h;
  h->open = 2;
  uv_prepare_start(&h->prepare, on_prepare);
  uv_unref((uv_handle_t *)&h->prepare);
  L.h = h;
}

void osb__core_loop_init(uv_loop_t *loop) {
  if (L.h && L.loop != loop) L.h = NULL;   /* belonged to a loop that is gone */
  L.loop = loop;
  L.closed = false;
  L.pending = false;
  open_handles();
}

static void sort_steps(void) {
  /* insertion sort: stable, so equal orders keep registration order */
  for (int i = 1; i < L.nsteps; i++) {
    step_t s = L.steps[i];
    int j = i;
    while (j > 0 && L.steps[j - 1].order > s.order) {
      L.steps[j] = L.steps[j - 1];
      j--;
    }
    L.steps[j] = s;
  }
  L.unsorted = false;
}

static void compact(void) {
  int n = 0;
  for (int i = 0; i < L.nsteps; i++)
    if (L.steps[i].fn) L.steps[n++] = L.steps[i];
  L.nsteps = n;
}

void osb_core_step_add(const char *name, int order, osb_step_fn fn, void *ud) {
  osb_assert(name && fn);
  for (int i = 0; i < L.nsteps; i++) {
    if (L.steps[i].fn && strcmp(L.steps[i].name, name) == 0) {
      L.steps[i].fn = fn;
      L.steps[i].ud = ud;
      if (L.steps[i].order != order) {
        L.steps[i].order = order;
        if (L.running) L.unsorted = true;
        else sort_steps();
      }
      return;
    }
  }
  osb_assert(L.nsteps < OSB_CORE_MAX_STEPS);
  L.steps[L.nsteps++] = (step_t){name, order, fn, ud};
  if (L.running) L.unsorted = true;
  else sort_steps();
  open_handles();
}

void osb_core_step_remove(const char *name) {
  int live = 0;
  for (int i = 0; i < L.nsteps; i++) {
    if (L.steps[i].fn && strcmp(L.steps[i].name, name) == 0) L.steps[i].fn = NULL;
    if (L.steps[i].fn) live++;
  }
  if (!L.running) compact();
  if (live == 0) close_handles();
}

/* One round: every step once, in order. True if any did work. */
static bool run_round(void) {
  bool did = false;
  /* L.nsteps is read every time: a step appended during the round runs last */
  for (int i = 0; i < L.nsteps; i++) {
    step_t *s = &L.steps[i];
    if (s->fn && s->fn(s->ud)) did = true;
  }
  return did;
}

int osb_core_run_steps(void) {
  if (L.running) return 0;   /* a step ran the steps: the outer run goes on */
  L.running = true;
  int rounds = 0;
  bool did = true;
  while (did && rounds < OSB_CORE_STEP_ROUNDS) {
    did = run_round();
    rounds++;
  }
  L.running = false;
  compact();
  if (L.unsorted) sort_steps();
  L.pending = did;
  if (L.h) {
    if (did) uv_idle_start(&L.h->idle, on_idle);
    else uv_idle_stop(&L.h->idle);
  }
  return rounds;
}

bool osb_core_steps_pending(void) { return L.pending; }

void osb_core_wake(void) {
  if (L.h && !L.running) uv_idle_start(&L.h->idle, on_idle);
}

void osb_core_close(void) {
  L.closed = true;
  close_handles();
}

static void static_closed(uv_handle_t *h) { OSB_UNUSED(h); }

void osb_handle_close(uv_handle_t *h) {
  if (h->loop && !uv_is_closing(h)) uv_close(h, static_closed);
}

/* ---- shutdown hooks ---- */

typedef struct {
  const char *name;
  int order;
  osb_shutdown_fn fn;
  void *ud;
  bool ran;
} hook_t;

static struct {
  hook_t hooks[OSB_CORE_MAX_STEPS];
  int n;
} H;

void osb_core_on_shutdown(const char *name, int order, osb_shutdown_fn fn, void *ud) {
  osb_assert(name && fn);
  for (int i = 0; i < H.n; i++) {
    if (strcmp(H.hooks[i].name, name) == 0) {
      H.hooks[i] = (hook_t){name, order, fn, ud, H.hooks[i].ran};   /* a hook that ran stays run */
      goto sort;
    }
  }
  osb_assert(H.n < OSB_CORE_MAX_STEPS);
  H.hooks[H.n++] = (hook_t){name, order, fn, ud, false};
sort:
  for (int i = 1; i < H.n; i++) {
    hook_t k = H.hooks[i];
    int j = i;
    while (j > 0 && H.hooks[j - 1].order > k.order) {
      H.hooks[j] = H.hooks[j - 1];
      j--;
    }
    H.hooks[j] = k;
  }
}

void osb_core_shutdown_until(int below) {
  /* The first hook not yet run, from the start each time: a hook may
   * register another (it runs too if it sorts below `below`), which
   * re-sorts the array under the loop. */
  for (int i = 0; i < H.n; i++) {
    hook_t *h = &H.hooks[i];
    if (h->ran || h->order >= below) continue;
    h->ran = true;
    h->fn(h->ud);
    i = -1;
  }
}

void osb_core_shutdown(void) { osb_core_shutdown_until(INT_MAX); }

void osb_core_shutdown_reset(void) { H.n = 0; }
