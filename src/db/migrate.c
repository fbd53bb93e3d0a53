/* migrate.c: applying the schema and the seed, and `osbackend migrate`.
 *
 * Start-up only, blocking. PostgreSQL: the whole run holds a session
 * advisory lock, so instances starting together migrate one at a time; each
 * migration runs in its own transaction with its schema_migrations row.
 * SQLite: BEGIN IMMEDIATE takes the one write lock for the same purpose.
 * The seed runs once per database (osb_meta 'seeded'), in one transaction:
 * COPY on PostgreSQL, one prepared INSERT on SQLite. */
#include "db/internal.h"

#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include "core/config.h"
#include "obs/log.h"

#define PG_LOCK_KEY "7305231885"     /* pg_advisory_lock key of osbackend migrations */
#define SEED_UPDATED_AT "1735689600000"  /* 2025-01-01T00:00:00Z: the seed is deterministic */
/* The knowledge step: seed knowledge entries missing from a database seeded
 * before they were added (by id, only for seeded agents that still exist),
 * once per version (osb_meta 'seeded_knowledge'). An entry an admin deleted
 * afterwards is not brought back. Bump when osb__seed_knowledge grows. */
#define KNOWLEDGE_VERSION "2"
#define KNOWLEDGE_INSERT(P1, P2, P3, P4, P5) \
  "INSERT INTO agent_knowledge (id, agent_id, title, body, created_at) SELECT " P1 ", a.id, " P3 ", " P4 ", " P5 \
  " FROM agents a WHERE a.id = " P2 " ON CONFLICT (id) DO NOTHING"

/* ---- rollback safety (internal.h, docs/deploy.md) ---- */

/* The newest migration this binary applies: all compiled in, or fewer with
 * MIGRATIONS_UPTO (a rollback rehearsal acting as an older release). */
static int known_version(void) {
  int v = 0;
  int upto = osb_cfg ? osb_cfg->migrations_upto : 0;
  for (size_t i = 0; i < osb__nmigrations; i++)
    if (!upto || osb__migrations[i].version <= upto) v = osb__migrations[i].version;
  return v;
}

static int needs_of(int version) {
  for (size_t i = 0; i < osb__nmigration_compat; i++)
    if (osb__migration_compat[i].version == version) return osb__migration_compat[i].needs;
  return version > 1 ? version - 1 : 1;
}

/* The oldest schema version a binary must know to run on a database whose
 * newest applied migration is `current` (all of them known to this binary). */
static int needs_upto(int current) {
  int need = current > 0 ? 1 : 0;
  for (size_t i = 0; i < osb__nmigrations; i++)
    if (osb__migrations[i].version <= current && needs_of(osb__migrations[i].version) > need)
      need = needs_of(osb__migrations[i].version);
  return need;
}

/* May this binary run on a schema at `current`? `stored` is the database's
 * schema_min_version (0 if it has none). Returns 0, setting *newer when the
 * database is ahead of this binary (then nothing is migrated), or
 * OSB_ECONFIG with a one-line reason. */
static int schema_gate(int current, int stored, bool *newer, char *why, size_t whylen) {
  int known = known_version();
  *newer = current > known;
  if (!*newer) return 0;
  if (stored <= 0) {
    snprintf(why, whylen, "database schema is at version %d, newer than this release (%d), and records no "
             "compatibility (schema_min_version): deploy the release that migrated it", current, known);
    return OSB_ECONFIG;
  }
  if (stored > known) {
    snprintf(why, whylen, "database schema is at version %d and needs a release that knows schema version %d or "
             "later; this release knows up to %d: deploy a newer release (or restore the pre-upgrade backup)",
             current, stored, known);
    return OSB_ECONFIG;
  }
  return 0;
}

static void gate_log(int current, int stored, bool newer, int rc, const char *why) {
  if (rc < 0) osb_log(OSB_LOG_ERROR, "db", "refusing to start: %s", why);
  else if (newer)
    osb_log(OSB_LOG_WARN, "db", "database schema is at version %d, newer than this release (%d); it supports "
            "releases back to schema version %d, so this one runs on it without migrating", current,
            known_version(), stored);
}

/* ---- PostgreSQL ---- */

static int pg_ok(PGconn *c, PGresult *r, const char *what) {
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return 0;
  char msg[300];
  snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
  osb_log(OSB_LOG_ERROR, "db", "%s failed: %s", what, msg[0] ? msg : PQerrorMessage(c));
  return OSB_EDB;
}

static int pg_exec(PGconn *c, const char *sql, const char *what) {
  PGresult *r = PQexec(c, sql);
  int rc = pg_ok(c, r, what);
  PQclear(r);
  return rc;
}

static int pg_params(PGconn *c, const char *sql, int n, const char *const *vals, const char *what) {
  PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
  int rc = pg_ok(c, r, what);
  PQclear(r);
  return rc;
}

static void copy_field(osb_buf_t *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
      case '\\': osb_buf_puts(b, "\\\\"); break;
      case '\t': osb_buf_puts(b, "\\t"); break;
      case '\n': osb_buf_puts(b, "\\n"); break;
      case '\r': osb_buf_puts(b, "\\r"); break;
      default: osb_buf_append(b, s, 1);
    }
  }
}

static int pg_seed(PGconn *c) {
  int rc = pg_exec(c, "BEGIN", "seed");
  if (rc < 0) return rc;
  PGresult *r = PQexec(c, "SELECT (SELECT count(*) FROM osb_meta WHERE key = 'seeded'), "
                          "(SELECT count(*) FROM market_procedures), (SELECT count(*) FROM agents)");
  if ((rc = pg_ok(c, r, "seed check")) < 0) {
    PQclear(r);
    goto fail;
  }
  bool seeded = atoi(PQgetvalue(r, 0, 0)) > 0;
  bool market_empty = atoi(PQgetvalue(r, 0, 1)) == 0;
  bool agents_empty = atoi(PQgetvalue(r, 0, 2)) == 0;
  PQclear(r);
  if (seeded) return pg_exec(c, "COMMIT", "seed");

  uint64_t t0 = uv_hrtime();
  size_t n = osb__seed_proc_count();
  if (market_empty) {
    r = PQexec(c, "COPY market_procedures (id, name, category, subcategory, market_size_usd, growth_pct, "
                  "avg_price_usd, region, description, updated_at) FROM STDIN");
    if (PQresultStatus(r) != PGRES_COPY_IN) {
      pg_ok(c, r, "seed copy");
      PQclear(r);
      rc = OSB_EDB;
      goto fail;
    }
    PQclear(r);
    osb_buf_t b = OSB_BUF_INIT;
    osb__seed_proc_t p;
    char num[64];
    for (size_t i = 0; i < n; i++) {
      osb__seed_proc(i, &p);
      osb_buf_printf(&b, "%d\t", p.id);
      copy_field(&b, p.name);
      osb_buf_puts(&b, "\t");
      copy_field(&b, p.category);
      osb_buf_puts(&b, "\t");
      copy_field(&b, p.subcategory);
      osb_buf_printf(&b, "\t%lld\t", (long long)p.market_size_usd);
      osb__fmt_double(num, sizeof(num), p.growth_pct);
      osb_buf_printf(&b, "%s\t", num);
      osb__fmt_double(num, sizeof(num), p.avg_price_usd);
      osb_buf_printf(&b, "%s\t", num);
      copy_field(&b, p.region);
      osb_buf_puts(&b, "\t");
      copy_field(&b, p.description);
      osb_buf_puts(&b, "\t" SEED_UPDATED_AT "\n");
      if (b.len > 256 * 1024 || i + 1 == n) {
        if (PQputCopyData(c, b.base, (int)b.len) != 1) break;
        osb_buf_reset(&b);
      }
    }
    osb_buf_free(&b);
    if (PQputCopyEnd(c, NULL) != 1) {
      rc = OSB_EDB;
      goto fail;
    }
    r = PQgetResult(c);
    rc = pg_ok(c, r, "seed copy");
    PQclear(r);
    while ((r = PQgetResult(c))) PQclear(r);
    if (rc < 0) goto fail;
    rc = pg_exec(c, "SELECT setval(pg_get_serial_sequence('market_procedures', 'id'), "
                    "(SELECT max(id) FROM market_procedures))", "seed sequence");
    if (rc < 0) goto fail;
  }
  if (agents_empty) {
    for (size_t i = 0; i < osb__seed_nagents; i++) {
      const osb__seed_agent_t *a = &osb__seed_agents[i];
      const char *v[] = { a->id, a->app, a->name, a->description, a->system_prompt, a->voice_id, SEED_UPDATED_AT };
      rc = pg_params(c, "INSERT INTO agents (id, app, name, description, system_prompt, voice_id, created_at, updated_at) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $7)", 7, v, "seed agents");
      if (rc < 0) goto fail;
    }
    for (size_t i = 0; i < osb__seed_nknowledge; i++) {
      const osb__seed_knowledge_t *k = &osb__seed_knowledge[i];
      const char *v[] = { k->id, k->agent_id, k->title, k->body, SEED_UPDATED_AT };
      rc = pg_params(c, "INSERT INTO agent_knowledge (id, agent_id, title, body, created_at) VALUES ($1, $2, $3, $4, $5)",
                     5, v, "seed knowledge");
      if (rc < 0) goto fail;
    }
  }
  rc = pg_exec(c, "INSERT INTO osb_meta (key, value) VALUES ('seeded', '" SEED_UPDATED_AT "')", "seed marker");
  if (rc < 0) goto fail;
  rc = pg_exec(c, "COMMIT", "seed");
  if (rc == 0)
    osb_log(OSB_LOG_INFO, "db", "seeded %zu market procedures and %zu agents in %.0f ms", market_empty ? n : 0,
            agents_empty ? osb__seed_nagents : 0, (double)(uv_hrtime() - t0) / 1e6);
  return rc;
fail:
  pg_exec(c, "ROLLBACK", "seed rollback");
  return rc < 0 ? rc : OSB_EDB;
}

static int pg_seed_knowledge(PGconn *c) {
  int rc = pg_exec(c, "BEGIN", "knowledge seed");
  if (rc < 0) return rc;
  PGresult *r = PQexec(c, "SELECT count(*) FROM osb_meta WHERE key = 'seeded_knowledge' AND value = '" KNOWLEDGE_VERSION "'");
  if ((rc = pg_ok(c, r, "knowledge seed check")) < 0) {
    PQclear(r);
    goto fail;
  }
  bool done = atoi(PQgetvalue(r, 0, 0)) > 0;
  PQclear(r);
  if (done) return pg_exec(c, "COMMIT", "knowledge seed");
  for (size_t i = 0; i < osb__seed_nknowledge; i++) {
    const osb__seed_knowledge_t *k = &osb__seed_knowledge[i];
    const char *v[] = { k->id, k->agent_id, k->title, k->body, SEED_UPDATED_AT };
    rc = pg_params(c, KNOWLEDGE_INSERT("$1", "$2", "$3", "$4", "$5::bigint"), 5, v, "knowledge seed");
    if (rc < 0) goto fail;
  }
  rc = pg_exec(c, "INSERT INTO osb_meta (key, value) VALUES ('seeded_knowledge', '" KNOWLEDGE_VERSION "') "
                  "ON CONFLICT (key) DO UPDATE SET value = excluded.value", "knowledge seed marker");
  if (rc < 0) goto fail;
  return pg_exec(c, "COMMIT", "knowledge seed");
fail:
  pg_exec(c, "ROLLBACK", "knowledge seed rollback");
  return rc < 0 ? rc : OSB_EDB;
}

int osb__pg_migrate(void *pgconn, bool seed, FILE *report) {
  PGconn *c = pgconn;
  int rc = pg_exec(c, "SELECT pg_advisory_lock(" PG_LOCK_KEY ")", "migration lock");
  if (rc < 0) return rc;
  rc = pg_exec(c, "SET client_min_messages = warning", "migration settings");
  if (rc == 0)
    rc = pg_exec(c, "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                    "name text NOT NULL, applied_at bigint NOT NULL)", "schema_migrations");
  int applied = 0, current = 0;
  if (rc == 0) {
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
    rc = pg_ok(c, r, "schema version");
    if (rc == 0) current = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  bool newer = false;
  if (rc == 0) {
    int stored = 0;
    if (current > known_version()) {
      PGresult *r = PQexec(c, "SELECT value FROM osb_meta WHERE key = 'schema_min_version'");
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) stored = atoi(PQgetvalue(r, 0, 0));
      PQclear(r);
    }
    char why[400] = "";
    rc = schema_gate(current, stored, &newer, why, sizeof(why));
    gate_log(current, stored, newer, rc, why);
    if (rc < 0 && report) fprintf(stderr, "%s\n", why);
  }
  for (size_t i = 0; rc == 0 && !newer && i < osb__nmigrations; i++) {
    const osb__migration_t *m = &osb__migrations[i];
    if (m->version <= current || m->version > known_version()) continue;
    char what[96], ver[16], now[24];
    snprintf(what, sizeof(what), "migration %d (%s)", m->version, m->name);
    snprintf(ver, sizeof(ver), "%d", m->version);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
    const char *v[] = { ver, m->name, now };
    if ((rc = pg_exec(c, "BEGIN", what)) < 0) break;
    if ((rc = pg_exec(c, m->pg, what)) == 0)
      rc = pg_params(c, "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", 3, v, what);
    if (rc == 0) rc = pg_exec(c, "COMMIT", what);
    if (rc < 0) {
      pg_exec(c, "ROLLBACK", what);
      break;
    }
    applied++;
    current = m->version;
    osb_log(OSB_LOG_INFO, "db", "applied migration %d: %s", m->version, m->name);
    if (report) fprintf(report, "applied migration %d: %s\n", m->version, m->name);
  }
  if (rc == 0 && !newer && current > 0) {
    char need[16];
    snprintf(need, sizeof(need), "%d", needs_upto(current));
    const char *v[] = { need };
    rc = pg_params(c, "INSERT INTO osb_meta (key, value) VALUES ('schema_min_version', $1) "
                      "ON CONFLICT (key) DO UPDATE SET value = excluded.value", 1, v, "schema_min_version");
  }
  if (rc == 0 && seed) rc = pg_seed(c);
  if (rc == 0 && seed) rc = pg_seed_knowledge(c);
  pg_exec(c, "SELECT pg_advisory_unlock(" PG_LOCK_KEY ")", "migration unlock");
  if (rc == 0 && report) fprintf(report, "%d migration(s) applied, schema at version %d\n", applied, current);
  return rc;
}

/* ---- SQLite ---- */

static int sq_exec(sqlite3 *db, const char *sql, const char *what) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc == SQLITE_OK) return 0;
  osb_log(OSB_LOG_ERROR, "db", "%s failed: %s", what, msg ? msg : sqlite3_errstr(rc));
  sqlite3_free(msg);
  return OSB_EDB;
}

static int64_t sq_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

static int sq_insert(sqlite3 *db, sqlite3_stmt *st, const char *const *vals, int n, const char *what) {
  for (int i = 0; i < n; i++) {
    if (vals[i]) sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, i + 1);
  }
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc == SQLITE_DONE) return 0;
  osb_log(OSB_LOG_ERROR, "db", "%s failed: %s", what, sqlite3_errmsg(db));
  return OSB_EDB;
}

static int sq_seed(sqlite3 *db) {
  int rc = sq_exec(db, "BEGIN IMMEDIATE", "seed");
  if (rc < 0) return rc;
  if (sq_int(db, "SELECT count(*) FROM osb_meta WHERE key = 'seeded'") != 0) return sq_exec(db, "COMMIT", "seed");
  bool market_empty = sq_int(db, "SELECT count(*) FROM market_procedures") == 0;
  bool agents_empty = sq_int(db, "SELECT count(*) FROM agents") == 0;
  uint64_t t0 = uv_hrtime();
  size_t n = osb__seed_proc_count();
  sqlite3_stmt *st = NULL;
  if (market_empty) {
    if (sqlite3_prepare_v2(db, "INSERT INTO market_procedures (id, name, category, subcategory, market_size_usd, "
                               "growth_pct, avg_price_usd, region, description, updated_at) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, " SEED_UPDATED_AT ")",
                           -1, &st, NULL) != SQLITE_OK) {
      osb_log(OSB_LOG_ERROR, "db", "seed: %s", sqlite3_errmsg(db));
      rc = OSB_EDB;
      goto fail;
    }
    osb__seed_proc_t p;
    for (size_t i = 0; i < n; i++) {
      osb__seed_proc(i, &p);
      sqlite3_bind_int(st, 1, p.id);
      sqlite3_bind_text(st, 2, p.name, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, p.category, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 4, p.subcategory, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 5, p.market_size_usd);
      sqlite3_bind_double(st, 6, p.growth_pct);
      sqlite3_bind_double(st, 7, p.avg_price_usd);
      sqlite3_bind_text(st, 8, p.region, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 9, p.description, -1, SQLITE_STATIC);
      int src = sqlite3_step(st);
      sqlite3_reset(st);
      if (src != SQLITE_DONE) {
        osb_log(OSB_LOG_ERROR, "db", "seed market: %s", sqlite3_errmsg(db));
        rc = OSB_EDB;
        goto fail;
      }
    }
    sqlite3_finalize(st);
    st = NULL;
  }
  if (agents_empty) {
    if (sqlite3_prepare_v2(db, "INSERT INTO agents (id, app, name, description, system_prompt, voice_id, created_at, "
                               "updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)", -1, &st, NULL) != SQLITE_OK) {
      rc = OSB_EDB;
      goto fail;
    }
    for (size_t i = 0; i < osb__seed_nagents && rc == 0; i++) {
      const osb__seed_agent_t *a = &osb__seed_agents[i];
      const char *v[] = { a->id, a->app, a->name, a->description, a->system_prompt, a->voice_id, SEED_UPDATED_AT };
      rc = sq_insert(db, st, v, 7, "seed agents");
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0) goto fail;
    if (sqlite3_prepare_v2(db, "INSERT INTO agent_knowledge (id, agent_id, title, body, created_at) "
                               "VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK) {
      rc = OSB_EDB;
      goto fail;
    }
    for (size_t i = 0; i < osb__seed_nknowledge && rc == 0; i++) {
      const osb__seed_knowledge_t *k = &osb__seed_knowledge[i];
      const char *v[] = { k->id, k->agent_id, k->title, k->body, SEED_UPDATED_AT };
      rc = sq_insert(db, st, v, 5, "seed knowledge");
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc < 0) goto fail;
  }
  rc = sq_exec(db, "INSERT INTO osb_meta (key, value) VALUES ('seeded', '" SEED_UPDATED_AT "')", "seed marker");
  if (rc < 0) goto fail;
  rc = sq_exec(db, "COMMIT", "seed");
  if (rc == 0)
    osb_log(OSB_LOG_INFO, "db", "seeded %zu market procedures and %zu agents in %.0f ms", market_empty ? n : 0,
            agents_empty ? osb__seed_nagents : 0, (double)(uv_hrtime() - t0) / 1e6);
  return rc;
fail:
  sqlite3_finalize(st);
  sq_exec(db, "ROLLBACK", "seed rollback");
  return rc < 0 ? rc : OSB_EDB;
}

static int sq_seed_knowledge(sqlite3 *db) {
  int rc = sq_exec(db, "BEGIN IMMEDIATE", "knowledge seed");
  if (rc < 0) return rc;
  if (sq_int(db, "SELECT count(*) FROM osb_meta WHERE key = 'seeded_knowledge' AND value = '" KNOWLEDGE_VERSION "'") != 0)
    return sq_exec(db, "COMMIT", "knowledge seed");
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, KNOWLEDGE_INSERT("?1", "?2", "?3", "?4", "CAST(?5 AS INTEGER)"), -1, &st, NULL) != SQLITE_OK) {
    osb_log(OSB_LOG_ERROR, "db", "knowledge seed: %s", sqlite3_errmsg(db));
    rc = OSB_EDB;
    goto fail;
  }
  for (size_t i = 0; i < osb__seed_nknowledge && rc == 0; i++) {
    const osb__seed_knowledge_t *k = &osb__seed_knowledge[i];
    const char *v[] = { k->id, k->agent_id, k->title, k->body, SEED_UPDATED_AT };
    rc = sq_insert(db, st, v, 5, "knowledge seed");
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc < 0) goto fail;
  rc = sq_exec(db, "INSERT INTO osb_meta (key, value) VALUES ('seeded_knowledge', '" KNOWLEDGE_VERSION "') "
                   "ON CONFLICT (key) DO UPDATE SET value = excluded.value", "knowledge seed marker");
  if (rc < 0) goto fail;
  return sq_exec(db, "COMMIT", "knowledge seed");
fail:
  sqlite3_finalize(st);
  sq_exec(db, "ROLLBACK", "knowledge seed rollback");
  return rc < 0 ? rc : OSB_EDB;
}

int osb__sqlite_migrate(sqlite3 *db, bool seed, FILE *report) {
  int rc = sq_exec(db, "BEGIN IMMEDIATE", "migration lock");
  if (rc < 0) return rc;
  rc = sq_exec(db, "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                   "name TEXT NOT NULL, applied_at INTEGER NOT NULL)", "schema_migrations");
  int64_t current = rc == 0 ? sq_int(db, "SELECT coalesce(max(version), 0) FROM schema_migrations") : 0;
  int applied = 0;
  bool newer = false;
  if (rc == 0) {
    int stored = 0;
    if (current > known_version())
      stored = (int)sq_int(db, "SELECT CAST(value AS INTEGER) FROM osb_meta WHERE key = 'schema_min_version'");
    char why[400] = "";
    rc = schema_gate((int)current, stored, &newer, why, sizeof(why));
    gate_log((int)current, stored, newer, rc, why);
    if (rc < 0 && report) fprintf(stderr, "%s\n", why);
  }
  sqlite3_stmt *ins = NULL;
  if (rc == 0 && sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                                    -1, &ins, NULL) != SQLITE_OK)
    rc = OSB_EDB;
  for (size_t i = 0; rc == 0 && !newer && i < osb__nmigrations; i++) {
    const osb__migration_t *m = &osb__migrations[i];
    if (m->version <= current || m->version > known_version()) continue;
    char what[96], ver[16], now[24];
    snprintf(what, sizeof(what), "migration %d (%s)", m->version, m->name);
    snprintf(ver, sizeof(ver), "%d", m->version);
    snprintf(now, sizeof(now), "%llu", (unsigned long long)osb_wallclock_ms());
    const char *v[] = { ver, m->name, now };
    if ((rc = sq_exec(db, m->sqlite, what)) == 0) rc = sq_insert(db, ins, v, 3, what);
    if (rc < 0) break;
    applied++;
    current = m->version;
    osb_log(OSB_LOG_INFO, "db", "applied migration %d: %s", m->version, m->name);
    if (report) fprintf(report, "applied migration %d: %s\n", m->version, m->name);
  }
  sqlite3_finalize(ins);
  if (rc == 0 && !newer && current > 0) {
    char sql[160];
    snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO osb_meta (key, value) VALUES ('schema_min_version', '%d')",
             needs_upto((int)current));
    rc = sq_exec(db, sql, "schema_min_version");
  }
  /* All pending migrations commit together: SQLite DDL is transactional. */
  if (rc == 0) rc = sq_exec(db, "COMMIT", "migrations");
  else sq_exec(db, "ROLLBACK", "migrations");
  if (rc == 0 && seed) rc = sq_seed(db);
  if (rc == 0 && seed) rc = sq_seed_knowledge(db);
  if (rc == 0 && report) fprintf(report, "%d migration(s) applied, schema at version %lld\n", applied, (long long)current);
  return rc;
}

/* ---- the sub-command ---- */

static osb_config_t cli_cfg;

int osb_db_migrate_cli(void) {
  char err[512] = "", warn[512] = "";
  if (osb_config_load(&cli_cfg, err, sizeof(err), warn, sizeof(warn)) < 0) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  osb_log_init(cli_cfg.log_level, (int)cli_cfg.log_format);
  int rc;
  if (cli_cfg.database_url && *cli_cfg.database_url) {
    const char *kw[] = { "application_name", "connect_timeout", "dbname", NULL };
    const char *vals[] = { "osbackend-migrate", "10", cli_cfg.database_url, NULL };
    PGconn *c = PQconnectdbParams(kw, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
      char redacted[256];
      osb_config_redact_url(cli_cfg.database_url, redacted, sizeof(redacted));
      fprintf(stderr, "cannot connect to %s: %s", redacted, c ? PQerrorMessage(c) : "out of memory\n");
      if (c) PQfinish(c);
      osb_config_dispose(&cli_cfg);
      return 1;
    }
    rc = osb__pg_migrate(c, false, stdout);
    PQfinish(c);
  } else {
    rc = osb__sqlite_migrate_path(cli_cfg.sqlite_path, stdout);
  }
  osb_config_dispose(&cli_cfg);
  return rc == 0 ? 0 : 1;
}

/* ---- migrate --status ---- */

typedef struct {
  int version;
  char name[128];
  long long applied_at;
} status_row_t;

#define STATUS_MAX_ROWS 512

static void iso_utc(long long ms, char *out, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Prints the report from what the database holds; returns the exit status. */
static int status_print(const char *where, const status_row_t *rows, int nrows, int stored) {
  int current = 0;
  for (int i = 0; i < nrows; i++)
    if (rows[i].version > current) current = rows[i].version;
  int known = known_version();
  printf("database: %s\n", where);
  printf("schema version: %d (this release knows up to %d)\n", current, known);
  printf("applied:%s\n", nrows ? "" : " none");
  for (int i = 0; i < nrows; i++) {
    char when[32];
    iso_utc(rows[i].applied_at, when, sizeof(when));
    printf("  %d  %s  (%s)\n", rows[i].version, rows[i].name, when);
  }
  int npending = 0;
  for (size_t i = 0; i < osb__nmigrations; i++) {
    const osb__migration_t *m = &osb__migrations[i];
    if (m->version <= current || m->version > known) continue;
    if (!npending++) printf("pending:\n");
    printf("  %d  %s\n", m->version, m->name);
  }
  if (!npending) printf("pending: none\n");
  int need = current > known ? stored : needs_upto(current);
  if (current == 0) printf("oldest release supported: any (no schema yet)\n");
  else if (need > 0) printf("oldest release supported: one that knows schema version %d or later\n", need);
  else printf("oldest release supported: unknown (no schema_min_version recorded)\n");
  bool newer = false;
  char why[400] = "";
  int rc = schema_gate(current, stored, &newer, why, sizeof(why));
  if (rc < 0) {
    printf("this release: cannot run on this schema: %s\n", why);
    return 1;
  }
  printf("this release: %s\n", newer ? "runs on this newer schema without migrating"
                                      : npending ? "runs after applying the pending migrations (it applies them at start)"
                                                 : "up to date");
  return 0;
}

static int status_pg(const char *url) {
  const char *kw[] = { "application_name", "connect_timeout", "dbname", NULL };
  const char *vals[] = { "osbackend-migrate-status", "10", url, NULL };
  char redacted[256];
  osb_config_redact_url(url, redacted, sizeof(redacted));
  PGconn *c = PQconnectdbParams(kw, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "cannot connect to %s: %s", redacted, c ? PQerrorMessage(c) : "out of memory\n");
    if (c) PQfinish(c);
    return 1;
  }
  static status_row_t rows[STATUS_MAX_ROWS];
  int nrows = 0, stored = 0, rc = 0;
  PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('osb_meta') IS NOT NULL");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    fprintf(stderr, "cannot read the schema: %s", PQerrorMessage(c));
    rc = 1;
  }
  bool has_mig = rc == 0 && PQgetvalue(r, 0, 0)[0] == 't';
  bool has_meta = rc == 0 && PQgetvalue(r, 0, 1)[0] == 't';
  PQclear(r);
  if (rc == 0 && has_mig) {
    r = PQexec(c, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r) && nrows < STATUS_MAX_ROWS; i++, nrows++) {
        rows[nrows].version = atoi(PQgetvalue(r, i, 0));
        snprintf(rows[nrows].name, sizeof(rows[nrows].name), "%s", PQgetvalue(r, i, 1));
        rows[nrows].applied_at = atoll(PQgetvalue(r, i, 2));
      }
    } else {
      fprintf(stderr, "cannot read schema_migrations: %s", PQerrorMessage(c));
      rc = 1;
    }
    PQclear(r);
  }
  if (rc == 0 && has_meta) {
    r = PQexec(c, "SELECT value FROM osb_meta WHERE key = 'schema_min_version'");
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) stored = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  PQfinish(c);
  return rc ? rc : status_print(redacted, rows, nrows, stored);
}

static int status_sqlite(const char *path) {
  char where[4200];
  snprintf(where, sizeof(where), "sqlite %s", path);
  static status_row_t rows[STATUS_MAX_ROWS];
  struct stat st;
  if (stat(path, &st) != 0) return status_print(where, rows, 0, 0);   /* nothing created: read-only */
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return 1;
  }
  sqlite3_busy_timeout(db, 5000);
  int nrows = 0, stored = 0;
  sqlite3_stmt *q = NULL;
  if (sq_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'") > 0 &&
      sqlite3_prepare_v2(db, "SELECT version, name, applied_at FROM schema_migrations ORDER BY version", -1, &q,
                         NULL) == SQLITE_OK) {
    while (sqlite3_step(q) == SQLITE_ROW && nrows < STATUS_MAX_ROWS) {
      rows[nrows].version = sqlite3_column_int(q, 0);
      snprintf(rows[nrows].name, sizeof(rows[nrows].name), "%s", (const char *)sqlite3_column_text(q, 1));
      rows[nrows].applied_at = sqlite3_column_int64(q, 2);
      nrows++;
    }
  }
  sqlite3_finalize(q);
  if (sq_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'osb_meta'") > 0)
    stored = (int)sq_int(db, "SELECT CAST(value AS INTEGER) FROM osb_meta WHERE key = 'schema_min_version'");
  sqlite3_close(db);
  return status_print(where, rows, nrows, stored);
}

int osb_db_migrate_status_cli(void) {
  char err[512] = "", warn[512] = "";
  if (osb_config_load(&cli_cfg, err, sizeof(err), warn, sizeof(warn)) < 0) {
    fprintf(stderr, "%s\n", err);
    return 2;
  }
  osb_log_init(cli_cfg.log_level, (int)cli_cfg.log_format);
  int rc;
  if (cli_cfg.database_url && *cli_cfg.database_url) rc = status_pg(cli_cfg.database_url);
  else rc = status_sqlite(cli_cfg.sqlite_path && *cli_cfg.sqlite_path ? cli_cfg.sqlite_path : "./data/osbackend.db");
  osb_config_dispose(&cli_cfg);
  return rc;
}
