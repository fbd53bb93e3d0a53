/* db.h: the one asynchronous query interface, over PostgreSQL or SQLite.
 *
 * Backends. With DATABASE_URL a pool of non-blocking libpq connections runs
 * on the event loop (one uv_poll_t per connection, pipeline mode, every
 * statement prepared once per connection). Without it an embedded SQLite
 * file (SQLITE_PATH, WAL) runs on the libuv threadpool: N reader
 * connections plus one writer; writes are serialized through the writer.
 * The loop thread never blocks on either, except at start-up (migrations and
 * seed run synchronously in osb_db_init, before the server listens).
 *
 * Statements. Every query is a statement declared once, as a static const
 * osb_db_stmt_t, with a SQL text per dialect and placeholders for every
 * value; parameters travel separately, so no code ever builds SQL from
 * input. Declare them next to the code that uses them:
 *
 *   static const osb_db_stmt_t Q_PROC_GET = {
 *     .name = "market_proc_get",
 *     .pg = "SELECT id, name FROM market_procedures WHERE id = $1",
 *     .sqlite = NULL,               // NULL: same text, $N rewritten to ?N
 *     .nparams = 1,
 *     .reads = "market_procedures",
 *     .cacheable = true,
 *   };
 *
 * `name` must be unique in the program (it is the PostgreSQL prepared
 * statement name): prefix it with your module. `reads` / `writes` are comma
 * lists of table names: a cacheable read is invalidated as soon as a
 * statement that writes one of its tables completes (at COMMIT inside a
 * transaction), so a client never reads its own write stale. Give `writes`
 * for every INSERT/UPDATE/DELETE, even when it is not cached anywhere.
 * At most 64 distinct table names program-wide.
 *
 * Schema conventions (see src/db/schema.c and docs/database.md):
 * - ids are text UUIDs (v4, lowercase, 36 chars; make one with osb_db_uuid())
 *   for users, refresh_tokens, agents, conversations, messages, crm_contacts
 *   and notifications; market_procedures.id is an integer 1..N;
 * - timestamps are BIGINT milliseconds since the Unix epoch (UTC) in both
 *   dialects: pass osb_wallclock_ms() as a parameter;
 * - booleans are BOOLEAN on PostgreSQL and INTEGER 0/1 on SQLite; read them
 *   with osb_db_bool(), which accepts both;
 * - JSON documents are JSONB on PostgreSQL and TEXT on SQLite (declared
 *   JSON, so they come back typed OSB_DB_JSON on both).
 *
 * Placeholders. PostgreSQL uses $1..$n. SQLite text may be omitted when the
 * SQL is portable (every $N outside quotes is rewritten to ?N). Write the
 * SQLite text when the dialects differ (ILIKE vs LIKE, casts, jsonb).
 *
 * Results. A query's callback receives rows × columns, each cell text or
 * NULL, with a portable column type. Integers and floats are kept as their
 * exact text (PostgreSQL's text output, SQLite's shortest round-trip form)
 * and parsed by the accessors. A result is refcounted: valid during the
 * callback, keep it with osb_db_result_ref(). The query cache shares one
 * result between many readers, so results are immutable, except for the
 * single memo slot (a rendered body) described below.
 *
 * Errors (the `err` of every callback; the OSB_E* codes are negative):
 *   0                success (res non-NULL)
 *   OSB_EUNAVAIL     no connection within DB_ACQUIRE_TIMEOUT_MS, or the
 *                    database is down (failing fast), or the connection
 *                    broke mid-query: answer 503 `unavailable`
 *                    (osb_res_error_code maps every code to its answer)
 *   OSB_ECONFLICT    unique violation (23505 / SQLITE_CONSTRAINT_UNIQUE): 409
 *   OSB_ENOTFOUND    foreign-key violation: the referenced row is missing
 *   OSB_EINVAL       the value does not fit (PostgreSQL classes 22 and 23
 *                    other than the two above: bad number text, too long,
 *                    NOT NULL, CHECK; SQLite CONSTRAINT/MISMATCH/TOOBIG; a
 *                    TEXT parameter containing a NUL byte): 400
 *   OSB_EDB          any other database error (logged with the statement
 *                    name and SQLSTATE, never the parameter values): 500
 * On error res is NULL.
 *
 * Threading: loop thread only. Callbacks always run later on the loop thread,
 * never from inside the call that started them (cache hits and fail-fast
 * errors are deferred to the same loop iteration), and exactly once. */
#ifndef OSB_DB_H
#define OSB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

typedef struct json_t json_t;
struct osb_config;

/* ---- statements ---- */
typedef struct osb_db_stmt {
  const char *name;     /* unique, [a-z0-9_], the prepared statement name */
  const char *pg;       /* PostgreSQL text, $1..$n */
  const char *sqlite;   /* SQLite text, ?1..?n; NULL = derived from pg */
  int nparams;
  const char *reads;    /* comma list of tables read (cache dependencies), or NULL */
  const char *writes;   /* comma list of tables written (invalidation), or NULL */
  bool cacheable;       /* serve through the query cache (reads only) */
} osb_db_stmt_t;

/* ---- parameters ----
 * The simple form takes NUL-terminated text, NULL meaning SQL NULL.
 * PostgreSQL infers each parameter's type from the statement, so "42" binds
 * to an integer column; put a cast in the SQL ($1::bigint) where it cannot.
 * The vector form also carries binary values (bytea / BLOB). Parameters are
 * copied before the call returns: the caller's buffers may die at once. */
typedef enum { OSB_DB_P_TEXT = 0, OSB_DB_P_NULL, OSB_DB_P_BLOB } osb_db_pkind_t;
typedef struct osb_db_param {
  osb_db_pkind_t kind;
  const void *data;     /* TEXT: may be NULL with len 0 for ""; BLOB: bytes */
  size_t len;
} osb_db_param_t;

/* ---- results ---- */
typedef enum {
  OSB_DB_NULL = 0,   /* type unknown (an all-NULL expression column) */
  OSB_DB_INT,
  OSB_DB_FLOAT,
  OSB_DB_BOOL,
  OSB_DB_TEXT,
  OSB_DB_JSON,
  OSB_DB_BLOB,
} osb_db_type_t;

typedef struct osb_db_result osb_db_result_t;

typedef void (*osb_db_cb)(void *ud, int err, const osb_db_result_t *res);

size_t osb_db_nrows(const osb_db_result_t *res);
size_t osb_db_ncols(const osb_db_result_t *res);
/* Rows changed by INSERT/UPDATE/DELETE (without RETURNING too). */
int64_t osb_db_affected(const osb_db_result_t *res);
const char *osb_db_colname(const osb_db_result_t *res, size_t col);
osb_db_type_t osb_db_coltype(const osb_db_result_t *res, size_t col);
/* Column index by name, or -1. */
int osb_db_col(const osb_db_result_t *res, const char *name);

/* Cell accessors; row/col out of range is an assertion failure. */
bool osb_db_isnull(const osb_db_result_t *res, size_t row, size_t col);
/* The cell's text (NUL-terminated; blobs: the raw bytes, NUL-terminated), or
 * NULL for SQL NULL. Valid as long as the result. */
const char *osb_db_text(const osb_db_result_t *res, size_t row, size_t col);
size_t osb_db_len(const osb_db_result_t *res, size_t row, size_t col);
int64_t osb_db_int(const osb_db_result_t *res, size_t row, size_t col);    /* NULL/invalid → 0 */
double osb_db_float(const osb_db_result_t *res, size_t row, size_t col);   /* NULL/invalid → 0 */
bool osb_db_bool(const osb_db_result_t *res, size_t row, size_t col);      /* t/true/1 → true */
/* By column name: NULL / 0 / false when the column does not exist. */
const char *osb_db_get(const osb_db_result_t *res, size_t row, const char *colname);
int64_t osb_db_get_int(const osb_db_result_t *res, size_t row, const char *colname);

/* One row as a JSON object {column: value}, typed by column type (INT →
 * integer, FLOAT → real, BOOL → true/false, JSON → parsed document, BLOB →
 * lowercase hex string, NULL → null). New reference, owned by the caller. */
json_t *osb_db_row_json(const osb_db_result_t *res, size_t row);
/* All rows as a JSON array of such objects. */
json_t *osb_db_rows_json(const osb_db_result_t *res);
/* The same as JSON text, appended to b without building a jansson tree
 * (the hot read path): the object osb_json_dump_buf() writes for
 * osb_db_row_json(res, row), key for key and value for value, in the one
 * number format of core/json.h. Strings go through core's escaper
 * (osb_buf_json_str), so text that is not UTF-8 (possible on SQLite) comes
 * out with U+FFFD where the tree gives null. rows_dump writes the first
 * nrows rows (at most all of them) as an array. */
void osb_db_row_dump(const osb_db_result_t *res, size_t row, osb_buf_t *b);
void osb_db_rows_dump(const osb_db_result_t *res, size_t nrows, osb_buf_t *b);

const osb_db_result_t *osb_db_result_ref(const osb_db_result_t *res);
void osb_db_result_unref(const osb_db_result_t *res);

/* The memo slot: one rendered body attached to a (cached) result, so that a
 * cache hit is answered with osb_res_msg() without serializing again. Only
 * the code that owns the statement should set it; it must be a pure function
 * of the result. set takes its own reference and keeps the first memo if one
 * is already set. get returns a borrowed pointer or NULL. */
osb_msg_t *osb_db_result_memo(const osb_db_result_t *res);
void osb_db_result_set_memo(const osb_db_result_t *res, osb_msg_t *body);

/* Declare statements up front (optional): every PostgreSQL connection
 * opened afterwards prepares them right after connecting, in one round
 * trip. Statements are otherwise registered on first use and prepared on
 * each connection just before their first query there (same pipeline, no
 * extra round trip). After osb_db_init. */
void osb_db_register(const osb_db_stmt_t *const *stmts, size_t n);

/* ---- queries ----
 * `ud` must stay valid until cb runs. A statement must declare nparams equal
 * to the count passed (asserted). */
void osb_db_query(const osb_db_stmt_t *stmt, const char *const *params, int nparams,
                  osb_db_cb cb, void *ud);
void osb_db_queryv(const osb_db_stmt_t *stmt, const osb_db_param_t *params, int nparams,
                   osb_db_cb cb, void *ud);

/* ---- transactions ----
 * A transaction holds one connection (on SQLite: the writer) from begin to
 * commit/rollback. tx_begin's cb gets the tx, or err < 0 and tx == NULL
 * (OSB_EUNAVAIL as for queries). Queries in a transaction bypass the cache
 * and run in the order they are issued (they may be issued without waiting
 * for the previous one). After any query error the transaction is aborted:
 * queued and later tx queries fail with the first error, and commit rolls
 * back and reports that error. The owner must end every transaction exactly
 * once, with commit or rollback; the tx pointer is dead once that call
 * returns (its cb runs later). Writes done inside invalidate the cache when
 * the COMMIT succeeds. */
typedef struct osb_db_tx osb_db_tx_t;
typedef void (*osb_db_tx_cb)(void *ud, int err, osb_db_tx_t *tx);

void osb_db_tx_begin(osb_db_tx_cb cb, void *ud);
void osb_db_tx_query(osb_db_tx_t *tx, const osb_db_stmt_t *stmt, const char *const *params,
                     int nparams, osb_db_cb cb, void *ud);
void osb_db_tx_queryv(osb_db_tx_t *tx, const osb_db_stmt_t *stmt, const osb_db_param_t *params,
                      int nparams, osb_db_cb cb, void *ud);
/* Run fn(ud, err) exactly once when the transaction ends: err 0 once its
 * COMMIT succeeded, otherwise the reason it did not commit (the first
 * query error, the COMMIT's error, or UV_ECANCELED for an explicit
 * rollback). Hooks run in the order they were added, after the cache was
 * invalidated and before the commit/rollback callback, so work queued for
 * "after commit" (realtime deliveries) is done when the owner hears of the
 * commit. fn must not use tx. Only while the transaction is open. */
typedef void (*osb_db_tx_hook_fn)(void *ud, int err);
void osb_db_tx_on_end(osb_db_tx_t *tx, osb_db_tx_hook_fn fn, void *ud);
/* cb may be NULL. err 0 = committed; res is an empty result. */
void osb_db_tx_commit(osb_db_tx_t *tx, osb_db_cb cb, void *ud);
void osb_db_tx_rollback(osb_db_tx_t *tx, osb_db_cb cb, void *ud);

/* ---- lifecycle ----
 * osb_db_init: after osb_core_init, osb_log_init and the metrics registry,
 * before the HTTP server starts. Opens the backend chosen by cfg, applies
 * pending migrations, seeds an empty database, starts the pool, registers
 * the metrics and the critical `database` health check. Blocks (start-up
 * only). PostgreSQL unreachable at start is retried for a few seconds, then
 * fails. Returns 0 or a negative error (already logged). cfg must outlive
 * the module.
 * osb_db_close: fails every waiting query with OSB_EUNAVAIL, closes the
 * connections (handles are freed in their close callbacks: run the loop
 * afterwards), stops the timers. Queries already running on SQLite worker
 * threads complete first. Idempotent. Queries issued after close fail with
 * OSB_EUNAVAIL; once the module is fully released (after the loop ran)
 * that callback runs immediately, inside the call: the one exception to
 * "never from inside the call", for late callers during shutdown. */
int osb_db_init(const struct osb_config *cfg);
void osb_db_close(void);

/* `osbackend migrate`: load the configuration, apply the migrations (no
 * seed), print what was applied to stdout; returns the process exit code
 * (0 ok, 1 database error, 2 bad configuration). */
int osb_db_migrate_cli(void);
/* `osbackend migrate --status`: read-only. Prints the schema version, the
 * applied and pending migrations and the oldest release the schema still
 * supports; exit 0, or 1 when this binary cannot run on the schema (or the
 * database cannot be read). */
int osb_db_migrate_status_cli(void);

/* ---- introspection (dashboard, tests) ---- */
typedef struct osb_db_stats {
  const char *backend;   /* "postgresql" or "sqlite" */
  bool up;               /* false while the database is unreachable */
  int size;              /* open connections (PG: ready + busy; SQLite: readers + writer) */
  int idle, active, connecting, waiting, max;
  uint64_t queries, errors, timeouts, reconnects;
  uint64_t cache_hits, cache_misses, cache_evictions;
  size_t cache_bytes, cache_entries;
} osb_db_stats_t;
void osb_db_stats(osb_db_stats_t *out);

/* A fresh v4 UUID, lowercase text, NUL-terminated. */
void osb_db_uuid(char out[37]);

/* For a dedicated PostgreSQL connection outside the pool (the cluster bus's
 * LISTEN connection), resolved off the loop like the pool's own: the host
 * name in `url` that needs uv_getaddrinfo (malloc'd; NULL for an IP
 * literal, a socket directory, an explicit hostaddr or several hosts), and
 * the libpq host/hostaddr lists built from its addrinfo result (returns the
 * number of addresses, at most 8). */
char *osb_db_pg_resolvable_host(const char *url);
int osb_db_pg_hostaddr_lists(const char *host, const void *addrinfo, osb_buf_t *hosts, osb_buf_t *addrs);

/* "postgresql" or "sqlite" (after osb_db_init), else NULL. */
const char *osb_db_backend(void);

/* Full-text search terms for the active backend, built from free user text
 * as a safe parameter value: the words (letters and digits only, at most
 * 16) joined as alternatives. PostgreSQL: "implant | veneer" for
 * to_tsquery('english', $n); SQLite: "\"implant\" OR \"veneer\"" for
 * agent_knowledge_fts MATCH ?n. Returns NULL when the text has no word.
 * Caller frees with free(). Example statements (agent_knowledge search):
 *   pg:     SELECT k.id, k.title, k.body FROM agent_knowledge k,
 *           to_tsquery('english', $2) q WHERE k.agent_id = $1 AND k.tsv @@ q
 *           ORDER BY ts_rank(k.tsv, q) DESC, k.id LIMIT $3
 *   sqlite: SELECT k.id, k.title, k.body FROM agent_knowledge_fts f
 *           JOIN agent_knowledge k ON k.rowid = f.rowid
 *           WHERE agent_knowledge_fts MATCH ?2 AND k.agent_id = ?1
 *           ORDER BY bm25(agent_knowledge_fts), k.id LIMIT ?3 */
char *osb_db_fts_terms(const char *text);

#endif
