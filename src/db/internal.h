/* internal.h: what only the files of src/db/ share.
 *
 * Shape of the module:
 *   db.c       the front: statement registry, operations, the completion
 *              queue (callbacks always run later, on the loop thread),
 *              transactions, cache integration, metrics, health, lifecycle
 *   cache.c    the query cache (LRU, TTL, table generations, single flight)
 *   result.c   result building (also on worker threads), accessors, JSON
 *   pg.c       the PostgreSQL pool (libpq, uv_poll_t, pipeline mode)
 *   sqlite.c   the SQLite backend (threadpool, N readers + 1 writer)
 *   migrate.c  migrations and seed runners for both dialects, the CLI
 *   schema.c   the versioned schema text
 *   seed.c     the deterministic demo data generator
 *
 * Ownership of an operation (osb__op_t): the front allocates it and hands it
 * to a backend, which owns it until it calls osb__op_complete(); from then
 * on the front owns it again and frees it after the callbacks ran. A result
 * passed to osb__op_complete() is owned by the op (one reference). */
#ifndef OSB_DB_INTERNAL_H
#define OSB_DB_INTERNAL_H

#include <stdio.h>
#include <uv.h>
#include "db/db.h"
#include "core/config.h"
#include "obs/metrics.h"

#define OSB__DB_MAX_TABLES 64
#define OSB__DB_MAX_PARAMS 64

/* ---- statements ---- */
typedef struct osb__stmt_info {
  const osb_db_stmt_t *stmt;
  uint32_t id;               /* dense, 0..n-1: index of per-connection arrays */
  const char *name;
  char *sqlite_sql;          /* derived from pg when stmt->sqlite is NULL */
  uint64_t read_mask, write_mask;
  osb_series_t *duration;    /* osb_db_query_seconds{statement} */
} osb__stmt_info_t;

/* The registered statements, for PostgreSQL's prepare-at-connect. */
size_t osb__stmt_count(void);
osb__stmt_info_t *osb__stmt_at(size_t i);

/* ---- results ---- */
typedef struct osb__cell { uint32_t off, len; } osb__cell_t;   /* off == UINT32_MAX: NULL */
#define OSB__CELL_NULL UINT32_MAX

struct osb_db_result {
  uint32_t refcnt;           /* loop thread only once handed over */
  uint32_t nrows, ncols;
  int64_t affected;
  size_t bytes;              /* approximate memory, for the cache budget */
  osb_msg_t *memo;
  struct osb__centry *centry;/* the cache entry holding it, or NULL */
  char **colnames;           /* into names; allocated with the struct */
  uint8_t *coltypes;         /* osb_db_type_t; allocated with the struct */
  char *names;               /* the column names, NUL-terminated, one after another */
  osb__cell_t *cells;        /* nrows * ncols */
  char *data;
};

/* A result builder; plain malloc, usable on worker threads. */
typedef struct osb__rb {
  osb_db_result_t *res;
  osb_buf_t data;
  osb_buf_t names;
  size_t ncells, capcells;
} osb__rb_t;

void osb__rb_init(osb__rb_t *b, size_t ncols);
void osb__rb_col(osb__rb_t *b, size_t col, const char *name, osb_db_type_t type);
/* Room for ncells more cells holding nbytes of text (NULs included), when
 * the size is known up front (a PGresult): no growing on the way. */
void osb__rb_reserve(osb__rb_t *b, size_t ncells, size_t nbytes);
void osb__rb_set_type(osb__rb_t *b, size_t col, osb_db_type_t type);
osb_db_type_t osb__rb_type(const osb__rb_t *b, size_t col);
void osb__rb_cell(osb__rb_t *b, const void *p, size_t n);     /* p NULL: SQL NULL */
osb_db_result_t *osb__rb_finish(osb__rb_t *b, int64_t affected);
void osb__rb_discard(osb__rb_t *b);
osb_db_result_t *osb__result_empty(int64_t affected);
void osb__result_free(osb_db_result_t *res);
/* Shortest text that parses back to exactly d. */
void osb__fmt_double(char *out, size_t outlen, double d);

/* ---- operations ---- */
typedef enum { OSB__OP_QUERY = 0, OSB__OP_BEGIN, OSB__OP_COMMIT, OSB__OP_ROLLBACK, OSB__OP_HIT } osb__op_kind_t;

typedef struct osb__op {
  osb_list_t link;           /* backend queues, then the completion queue */
  osb__op_kind_t kind;
  osb__stmt_info_t *si;      /* NULL for BEGIN/COMMIT/ROLLBACK */
  int nparams;
  osb_db_param_t *params;    /* copies; TEXT values NUL-terminated */
  osb_db_tx_t *tx;           /* NULL outside transactions */
  struct osb__flight *flight;/* single-flight leader, or NULL */
  uint64_t t_submit;         /* uv_hrtime at submission */
  uint64_t t_start;          /* uv_hrtime when sent to a connection */
  uint64_t deadline;         /* osb_now_ms() deadline for acquiring a connection */
  int retries;               /* PostgreSQL: resubmissions after a pipeline abort */
  int err;
  osb_db_result_t *res;
  osb_db_cb cb;
  void *ud;
  void *bk;                  /* backend scratch (the SQLite work item) */
} osb__op_t;

/* Backend → front: the op is done (err 0 and res, or err < 0). Queues the
 * op; its callbacks run when the completion queue drains, never from inside
 * an API call. Loop thread only. */
void osb__op_complete(osb__op_t *op, int err, osb_db_result_t *res);
/* Run queued completions now (backends call it at the end of each uv
 * callback). Not re-entrant: nested calls return at once. */
void osb__drain(void);
/* Recording around a query: acquire wait (call when the op is sent). */
void osb__op_started(osb__op_t *op);
/* Failure bookkeeping shared by the backends. */
void osb__count_timeout(void);
void osb__count_reconnect(void);
/* A connection retired for a query past DB_QUERY_TIMEOUT_MS (pg.c). */
void osb__count_query_timeout(void);
/* Log a failed statement: name and SQLSTATE / SQLite code, never values.
 * Conflicts and bad input are expected (debug); the rest is a warning. */
void osb__log_query_error(const osb__op_t *op, int err, const char *code, const char *msg);
bool osb__op_is_write(const osb__op_t *op);

typedef struct osb__backend {
  const char *name;
  void (*submit)(osb__op_t *op);     /* a query outside transactions */
  void (*tx_begin)(osb__op_t *op);   /* acquire a connection for op->tx, run BEGIN; on failure releases it */
  void (*tx_op)(osb__op_t *op);      /* a query on the transaction's connection */
  void (*tx_end)(osb__op_t *op);     /* COMMIT or ROLLBACK, then release the connection */
  void (*close)(void);
  bool (*idle)(void);                /* after close: nothing of the backend runs any more */
  void (*stats)(osb_db_stats_t *out);
  bool (*up)(char *reason, size_t len);
} osb__backend_t;

/* Backends call this once nothing of theirs refers to a statement any more
 * (after close; SQLite: when the last worker returned). Frees the registry
 * and the cache. */
void osb__db_release(void);

/* The transaction's backend connection (set by tx_begin). */
void *osb__tx_conn(osb_db_tx_t *tx);
void osb__tx_set_conn(osb_db_tx_t *tx, void *conn);

/* Backends. Each start function runs migrations (and the seed when asked),
 * then opens the pool; returns 0 or a negative error, already logged. */
int osb__pg_start(const osb_config_t *cfg, const osb__backend_t **out);
/* Host-name resolution for the pool (pg.c), pure helpers. The host of a
 * PostgreSQL URL or conninfo that must be resolved before connecting: one
 * name, not an IP literal, not a socket directory, no hostaddr given. NULL
 * otherwise; the caller frees. */
char *osb__pg_resolvable_host(const char *url);
/* From getaddrinfo's answer (a struct addrinfo list), libpq's host and
 * hostaddr lists: "h,h,..." and "a1,a2,..." (deduplicated, at most 8), so
 * libpq tries each address in turn while host stays for TLS and .pgpass.
 * Returns the number of addresses (0: none usable). */
int osb__pg_hostaddr_lists(const char *host, const void *addrinfo, osb_buf_t *hosts, osb_buf_t *addrs);
int osb__sqlite_start(const osb_config_t *cfg, const osb__backend_t **out);

/* ---- cache (cache.c) ---- */
typedef struct osb__flight osb__flight_t;
void osb__cache_init(size_t max_bytes, uint64_t ttl_ms);
void osb__cache_dispose(void);
bool osb__cache_enabled(void);
/* Table generations: a committed write bumps each table it wrote. */
void osb__cache_bump(uint64_t table_mask);
uint64_t osb__cache_gen(uint64_t table_mask);
/* Key of a cached statement call, written into `key` (reset first). */
void osb__cache_key(osb_buf_t *key, const osb__stmt_info_t *si, const osb_db_param_t *p, int n);
/* A fresh result for the key (new reference) or NULL. */
osb_db_result_t *osb__cache_get(const osb_buf_t *key, uint64_t gen);
void osb__cache_put(const osb_buf_t *key, uint64_t gen, osb_db_result_t *res);
/* Single flight: the flight in progress for key at gen, or NULL. */
osb__flight_t *osb__flight_find(const osb_buf_t *key, uint64_t gen);
osb__flight_t *osb__flight_new(const osb_buf_t *key, uint64_t gen);
void osb__flight_join(osb__flight_t *f, osb_db_cb cb, void *ud);
/* Leader done: store (if res and still current), run the waiters' callbacks,
 * free the flight. */
void osb__flight_finish(osb__flight_t *f, int err, const osb_db_result_t *res);
/* Charge a memo's bytes to the cache entry of res, if any. */
void osb__cache_charge(osb_db_result_t *res, size_t extra);
void osb__cache_stats(osb_db_stats_t *out);

/* ---- migrations and seed ---- */
typedef struct osb__migration {
  int version;
  const char *name;
  const char *pg;
  const char *sqlite;
} osb__migration_t;
extern const osb__migration_t osb__migrations[];
extern const size_t osb__nmigrations;
/* Rollback safety (docs/deploy.md, "Migrations: expand, then contract").
 * A migration is "expand" unless listed here: the previous release (one that
 * knows only the migrations before it) still runs with it applied. A
 * "contract" migration lists the oldest schema version a binary must know to
 * run with it applied. The database keeps the highest such number of its
 * applied migrations in osb_meta 'schema_min_version', so an older binary,
 * which does not know the newer migrations, can tell whether it may start. */
typedef struct osb__migration_compat {
  int version;
  int needs;
} osb__migration_compat_t;
extern const osb__migration_compat_t osb__migration_compat[];
extern const size_t osb__nmigration_compat;

struct sqlite3;
/* Blocking, start-up only. `report` (may be NULL) gets one line per
 * applied migration. Return 0 or OSB_EDB (logged). */
int osb__pg_migrate(void *pgconn /* PGconn* */, bool seed, FILE *report);
int osb__sqlite_migrate(struct sqlite3 *db, bool seed, FILE *report);
/* Open the file at path (directory created), migrate without seeding. */
int osb__sqlite_migrate_path(const char *path, FILE *report);

/* The seed's market rows, generated deterministically. */
typedef struct osb__seed_proc {
  int id;
  char name[160];
  const char *category;
  const char *subcategory;
  int64_t market_size_usd;
  double growth_pct;
  double avg_price_usd;
  const char *region;
  char description[400];
} osb__seed_proc_t;
size_t osb__seed_proc_count(void);
void osb__seed_proc(size_t i, osb__seed_proc_t *out);   /* row i (0-based), id = i + 1 */

typedef struct osb__seed_agent {
  const char *id, *app, *name, *description, *system_prompt, *voice_id;
} osb__seed_agent_t;
typedef struct osb__seed_knowledge {
  const char *id, *agent_id, *title, *body;
} osb__seed_knowledge_t;
extern const osb__seed_agent_t osb__seed_agents[];
extern const size_t osb__seed_nagents;
extern const osb__seed_knowledge_t osb__seed_knowledge[];
extern const size_t osb__seed_nknowledge;

/* $N → ?N outside quoted text. Caller frees. */
char *osb__pg_to_sqlite(const char *sql);

#endif
