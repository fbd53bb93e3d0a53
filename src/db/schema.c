/* schema.c: the versioned schema, one SQL text per dialect, compiled in.
 *
 * Applied in order by migrate.c, each in its own transaction, recorded in
 * schema_migrations. Never edit a shipped migration: add the next version.
 *
 * Conventions (db.h): text UUID ids, except market_procedures.id (integer
 * 1..N); BIGINT epoch-millisecond timestamps; BOOLEAN on PostgreSQL,
 * INTEGER 0/1 declared BOOLEAN on SQLite; JSONB on PostgreSQL, TEXT declared
 * JSON on SQLite. Per-owner sequence counters live next to the owner
 * (users.notify_seq, conversations.last_seq, channel_seqs.last_seq) and are
 * taken with UPDATE ... RETURNING inside the inserting transaction.
 * Every index below names the query path it serves. */
#include "db/internal.h"

/* Default for created_at/updated_at when a statement leaves them out. */
#define PG_NOW "(floor(extract(epoch FROM clock_timestamp()) * 1000))::bigint"
#define SQ_NOW "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))"

static const char pg_v1[] =
  "CREATE TABLE osb_meta (\n"
  "  key text PRIMARY KEY,\n"
  "  value text NOT NULL\n"
  ");\n"
  "CREATE TABLE users (\n"
  "  id text PRIMARY KEY,\n"
  "  email text NOT NULL,\n"                 /* normalised: trimmed, lowercase */
  "  display_name text NOT NULL DEFAULT '',\n"
  "  role text NOT NULL DEFAULT 'user' CHECK (role IN ('user','admin','service')),\n"
  "  password_hash text,\n"                  /* NULL: external-issuer user, no local password */
  "  external_sub text,\n"                   /* subject at the external (Supabase-style) issuer */
  "  notify_seq bigint NOT NULL DEFAULT 0,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* login, register (uniqueness), lookup by e-mail */
  "CREATE UNIQUE INDEX users_email_key ON users (email);\n"
  /* external token → local user */
  "CREATE UNIQUE INDEX users_external_sub_key ON users (external_sub) WHERE external_sub IS NOT NULL;\n"
  "CREATE TABLE refresh_tokens (\n"
  "  id text PRIMARY KEY,\n"
  "  user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  family_id text NOT NULL,\n"
  "  token_hash text NOT NULL,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  expires_at bigint NOT NULL,\n"
  "  used_at bigint,\n"
  "  revoked_at bigint\n"
  ");\n"
  "CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);\n"  /* refresh */
  "CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);\n"        /* reuse → revoke family */
  "CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);\n"            /* logout everywhere */
  "CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);\n"      /* purge expired */
  "CREATE TABLE agents (\n"
  "  id text PRIMARY KEY,\n"
  "  app text NOT NULL CHECK (app IN ('repconnect','canvas')),\n"
  "  name text NOT NULL,\n"
  "  description text NOT NULL DEFAULT '',\n"
  "  system_prompt text NOT NULL DEFAULT '',\n"
  "  voice_id text,\n"
  "  model text,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  "CREATE INDEX agents_app_name_idx ON agents (app, name, id);\n"   /* GET /api/agents?app= */
  "CREATE TABLE agent_knowledge (\n"
  "  id text PRIMARY KEY,\n"
  "  agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,\n"
  "  title text NOT NULL,\n"
  "  body text NOT NULL,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || body)) STORED\n"
  ");\n"
  "CREATE INDEX agent_knowledge_agent_idx ON agent_knowledge (agent_id, title);\n" /* list an agent's entries */
  "CREATE INDEX agent_knowledge_tsv_idx ON agent_knowledge USING gin (tsv);\n"    /* fallback answers (FTS) */
  "CREATE TABLE conversations (\n"
  "  id text PRIMARY KEY,\n"
  "  user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  agent_id text NOT NULL REFERENCES agents(id) ON DELETE CASCADE,\n"
  "  app text NOT NULL CHECK (app IN ('repconnect','canvas')),\n"
  "  title text NOT NULL DEFAULT '',\n"
  "  last_seq bigint NOT NULL DEFAULT 0,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* GET /api/conversations?app=&cursor= (newest first, keyset on updated_at, id) */
  "CREATE INDEX conversations_user_app_idx ON conversations (user_id, app, updated_at DESC, id DESC);\n"
  "CREATE INDEX conversations_user_idx ON conversations (user_id, updated_at DESC, id DESC);\n"
  "CREATE INDEX conversations_agent_idx ON conversations (agent_id);\n"  /* FK cascade from agents */
  "CREATE TABLE messages (\n"
  "  id text PRIMARY KEY,\n"
  "  conversation_id text NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,\n"
  "  seq bigint NOT NULL,\n"
  "  role text NOT NULL CHECK (role IN ('user','assistant','system')),\n"
  "  content text NOT NULL DEFAULT '',\n"
  "  status text NOT NULL DEFAULT 'done' CHECK (status IN ('pending','streaming','done','error')),\n"
  "  fallback boolean NOT NULL DEFAULT false,\n"
  "  audio_url text,\n"
  "  tokens integer NOT NULL DEFAULT 0,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* messages?after_seq=&limit=, export, chat history for the LLM */
  "CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);\n"
  "CREATE TABLE market_procedures (\n"
  "  id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,\n"
  "  name text NOT NULL,\n"
  "  category text NOT NULL,\n"
  "  subcategory text,\n"
  "  market_size_usd bigint NOT NULL,\n"
  "  growth_pct double precision NOT NULL,\n"
  "  avg_price_usd double precision NOT NULL,\n"
  "  region text NOT NULL,\n"
  "  description text NOT NULL DEFAULT '',\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* GET /api/market/procedures?sort=name|market_size|growth (keyset on (key, id)),
   * with and without ?category=; GET /api/market/categories (index-only scan) */
  "CREATE INDEX market_procedures_name_idx ON market_procedures (name, id);\n"
  "CREATE INDEX market_procedures_size_idx ON market_procedures (market_size_usd, id);\n"
  "CREATE INDEX market_procedures_growth_idx ON market_procedures (growth_pct, id);\n"
  "CREATE INDEX market_procedures_cat_name_idx ON market_procedures (category, name, id);\n"
  "CREATE INDEX market_procedures_cat_size_idx ON market_procedures (category, market_size_usd, id);\n"
  "CREATE INDEX market_procedures_cat_growth_idx ON market_procedures (category, growth_pct, id);\n"
  "CREATE TABLE crm_contacts (\n"
  "  id text PRIMARY KEY,\n"
  "  owner_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  name text NOT NULL,\n"
  "  email text,\n"
  "  phone text,\n"
  "  company text,\n"
  "  notes text NOT NULL DEFAULT '',\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  updated_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* GET /api/crm/contacts (owner-scoped, newest first, keyset) */
  "CREATE INDEX crm_contacts_owner_idx ON crm_contacts (owner_id, updated_at DESC, id DESC);\n"
  "CREATE TABLE notifications (\n"
  "  id text PRIMARY KEY,\n"
  "  user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  seq bigint NOT NULL,\n"
  "  kind text NOT NULL,\n"
  "  title text NOT NULL DEFAULT '',\n"
  "  body text NOT NULL DEFAULT '',\n"
  "  data jsonb,\n"
  "  read_at bigint,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  /* GET /api/notifications?after_seq=&limit=, notify:<user> recovery */
  "CREATE UNIQUE INDEX notifications_user_seq_key ON notifications (user_id, seq);\n"
  /* ?unread=true, read-all */
  "CREATE INDEX notifications_unread_idx ON notifications (user_id, seq) WHERE read_at IS NULL;\n"
  "CREATE TABLE channel_seqs (\n"
  "  channel text PRIMARY KEY,\n"
  "  last_seq bigint NOT NULL\n"
  ");\n"
  "CREATE TABLE channel_messages (\n"
  "  channel text NOT NULL,\n"
  "  seq bigint NOT NULL,\n"
  "  data jsonb NOT NULL,\n"
  "  origin text,\n"                          /* CLUSTER_NODE_ID of the publisher */
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  PRIMARY KEY (channel, seq)\n"            /* subscribe {since} replay */
  ");\n"
  "CREATE INDEX channel_messages_created_idx ON channel_messages (created_at);\n" /* retention purge */
  "CREATE TABLE tts_cache (\n"
  "  hash text PRIMARY KEY,\n"                /* hash of voice id and text */
  "  voice_id text NOT NULL,\n"
  "  content_type text NOT NULL DEFAULT 'audio/mpeg',\n"
  "  audio bytea NOT NULL,\n"
  "  bytes integer NOT NULL,\n"
  "  created_at bigint NOT NULL DEFAULT " PG_NOW ",\n"
  "  last_used_at bigint NOT NULL DEFAULT " PG_NOW "\n"
  ");\n"
  "CREATE INDEX tts_cache_last_used_idx ON tts_cache (last_used_at);\n"  /* eviction */
  "CREATE TABLE usage_daily (\n"
  "  user_id text NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  day text NOT NULL,\n"                    /* YYYY-MM-DD, UTC */
  "  llm_tokens bigint NOT NULL DEFAULT 0,\n"
  "  tts_chars bigint NOT NULL DEFAULT 0,\n"
  "  PRIMARY KEY (user_id, day)\n"            /* GET /api/usage, upsert per call */
  ");\n"
  /* Substring search on procedure names (?q=) with a trigram index where
   * the extension is available; without it the search scans (10^4 rows). */
  "DO $$ BEGIN\n"
  "  CREATE EXTENSION IF NOT EXISTS pg_trgm;\n"
  "  CREATE INDEX market_procedures_name_trgm_idx ON market_procedures USING gin (name gin_trgm_ops);\n"
  "EXCEPTION WHEN OTHERS THEN\n"
  "  RAISE NOTICE 'pg_trgm unavailable, name search will scan';\n"
  "END $$;\n";

static const char sq_v1[] =
  "CREATE TABLE osb_meta (\n"
  "  key TEXT PRIMARY KEY,\n"
  "  value TEXT NOT NULL\n"
  ");\n"
  "CREATE TABLE users (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  email TEXT NOT NULL,\n"
  "  display_name TEXT NOT NULL DEFAULT '',\n"
  "  role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user','admin','service')),\n"
  "  password_hash TEXT,\n"
  "  external_sub TEXT,\n"
  "  notify_seq INTEGER NOT NULL DEFAULT 0,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE UNIQUE INDEX users_email_key ON users (email);\n"
  "CREATE UNIQUE INDEX users_external_sub_key ON users (external_sub) WHERE external_sub IS NOT NULL;\n"
  "CREATE TABLE refresh_tokens (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  family_id TEXT NOT NULL,\n"
  "  token_hash TEXT NOT NULL,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  expires_at INTEGER NOT NULL,\n"
  "  used_at INTEGER,\n"
  "  revoked_at INTEGER\n"
  ");\n"
  "CREATE UNIQUE INDEX refresh_tokens_hash_key ON refresh_tokens (token_hash);\n"
  "CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);\n"
  "CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);\n"
  "CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);\n"
  "CREATE TABLE agents (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  app TEXT NOT NULL CHECK (app IN ('repconnect','canvas')),\n"
  "  name TEXT NOT NULL,\n"
  "  description TEXT NOT NULL DEFAULT '',\n"
  "  system_prompt TEXT NOT NULL DEFAULT '',\n"
  "  voice_id TEXT,\n"
  "  model TEXT,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX agents_app_name_idx ON agents (app, name, id);\n"
  "CREATE TABLE agent_knowledge (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,\n"
  "  title TEXT NOT NULL,\n"
  "  body TEXT NOT NULL,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX agent_knowledge_agent_idx ON agent_knowledge (agent_id, title);\n"
  /* Full-text search: an external-content FTS5 index kept in step by triggers;
   * join on rowid (agent_knowledge_fts.rowid = agent_knowledge.rowid). */
  "CREATE VIRTUAL TABLE agent_knowledge_fts USING fts5(title, body, content='agent_knowledge', content_rowid='rowid', tokenize='porter unicode61');\n"
  "CREATE TRIGGER agent_knowledge_ai AFTER INSERT ON agent_knowledge BEGIN\n"
  "  INSERT INTO agent_knowledge_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);\n"
  "END;\n"
  "CREATE TRIGGER agent_knowledge_ad AFTER DELETE ON agent_knowledge BEGIN\n"
  "  INSERT INTO agent_knowledge_fts(agent_knowledge_fts, rowid, title, body) VALUES ('delete', old.rowid, old.title, old.body);\n"
  "END;\n"
  "CREATE TRIGGER agent_knowledge_au AFTER UPDATE ON agent_knowledge BEGIN\n"
  "  INSERT INTO agent_knowledge_fts(agent_knowledge_fts, rowid, title, body) VALUES ('delete', old.rowid, old.title, old.body);\n"
  "  INSERT INTO agent_knowledge_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);\n"
  "END;\n"
  "CREATE TABLE conversations (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,\n"
  "  app TEXT NOT NULL CHECK (app IN ('repconnect','canvas')),\n"
  "  title TEXT NOT NULL DEFAULT '',\n"
  "  last_seq INTEGER NOT NULL DEFAULT 0,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX conversations_user_app_idx ON conversations (user_id, app, updated_at DESC, id DESC);\n"
  "CREATE INDEX conversations_user_idx ON conversations (user_id, updated_at DESC, id DESC);\n"
  "CREATE INDEX conversations_agent_idx ON conversations (agent_id);\n"
  "CREATE TABLE messages (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,\n"
  "  seq INTEGER NOT NULL,\n"
  "  role TEXT NOT NULL CHECK (role IN ('user','assistant','system')),\n"
  "  content TEXT NOT NULL DEFAULT '',\n"
  "  status TEXT NOT NULL DEFAULT 'done' CHECK (status IN ('pending','streaming','done','error')),\n"
  "  fallback BOOLEAN NOT NULL DEFAULT 0,\n"
  "  audio_url TEXT,\n"
  "  tokens INTEGER NOT NULL DEFAULT 0,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE UNIQUE INDEX messages_conversation_seq_key ON messages (conversation_id, seq);\n"
  "CREATE TABLE market_procedures (\n"
  "  id INTEGER PRIMARY KEY,\n"
  "  name TEXT NOT NULL,\n"
  "  category TEXT NOT NULL,\n"
  "  subcategory TEXT,\n"
  "  market_size_usd INTEGER NOT NULL,\n"
  "  growth_pct REAL NOT NULL,\n"
  "  avg_price_usd REAL NOT NULL,\n"
  "  region TEXT NOT NULL,\n"
  "  description TEXT NOT NULL DEFAULT '',\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX market_procedures_name_idx ON market_procedures (name, id);\n"
  "CREATE INDEX market_procedures_size_idx ON market_procedures (market_size_usd, id);\n"
  "CREATE INDEX market_procedures_growth_idx ON market_procedures (growth_pct, id);\n"
  "CREATE INDEX market_procedures_cat_name_idx ON market_procedures (category, name, id);\n"
  "CREATE INDEX market_procedures_cat_size_idx ON market_procedures (category, market_size_usd, id);\n"
  "CREATE INDEX market_procedures_cat_growth_idx ON market_procedures (category, growth_pct, id);\n"
  "CREATE TABLE crm_contacts (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  owner_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  name TEXT NOT NULL,\n"
  "  email TEXT,\n"
  "  phone TEXT,\n"
  "  company TEXT,\n"
  "  notes TEXT NOT NULL DEFAULT '',\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  updated_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX crm_contacts_owner_idx ON crm_contacts (owner_id, updated_at DESC, id DESC);\n"
  "CREATE TABLE notifications (\n"
  "  id TEXT PRIMARY KEY,\n"
  "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  seq INTEGER NOT NULL,\n"
  "  kind TEXT NOT NULL,\n"
  "  title TEXT NOT NULL DEFAULT '',\n"
  "  body TEXT NOT NULL DEFAULT '',\n"
  "  data JSON,\n"
  "  read_at INTEGER,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE UNIQUE INDEX notifications_user_seq_key ON notifications (user_id, seq);\n"
  "CREATE INDEX notifications_unread_idx ON notifications (user_id, seq) WHERE read_at IS NULL;\n"
  "CREATE TABLE channel_seqs (\n"
  "  channel TEXT PRIMARY KEY,\n"
  "  last_seq INTEGER NOT NULL\n"
  ");\n"
  "CREATE TABLE channel_messages (\n"
  "  channel TEXT NOT NULL,\n"
  "  seq INTEGER NOT NULL,\n"
  "  data JSON NOT NULL,\n"
  "  origin TEXT,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  PRIMARY KEY (channel, seq)\n"
  ");\n"
  "CREATE INDEX channel_messages_created_idx ON channel_messages (created_at);\n"
  "CREATE TABLE tts_cache (\n"
  "  hash TEXT PRIMARY KEY,\n"
  "  voice_id TEXT NOT NULL,\n"
  "  content_type TEXT NOT NULL DEFAULT 'audio/mpeg',\n"
  "  audio BLOB NOT NULL,\n"
  "  bytes INTEGER NOT NULL,\n"
  "  created_at INTEGER NOT NULL DEFAULT " SQ_NOW ",\n"
  "  last_used_at INTEGER NOT NULL DEFAULT " SQ_NOW "\n"
  ");\n"
  "CREATE INDEX tts_cache_last_used_idx ON tts_cache (last_used_at);\n"
  "CREATE TABLE usage_daily (\n"
  "  user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
  "  day TEXT NOT NULL,\n"
  "  llm_tokens INTEGER NOT NULL DEFAULT 0,\n"
  "  tts_chars INTEGER NOT NULL DEFAULT 0,\n"
  "  PRIMARY KEY (user_id, day)\n"
  ");\n";

/* v2: the seqs of durable channels now come from the counters (users.
 * notify_seq, conversations.last_seq, channel_seqs) in the transaction that
 * stores the channel_messages row; before, the realtime hub numbered them in
 * memory and left the counters at 0. Move every counter up to the highest
 * seq already stored, so the next message does not collide with an old row. */
static const char pg_v2[] =
  "UPDATE users u SET notify_seq = m.s FROM (SELECT channel, max(seq) AS s FROM channel_messages "
  "WHERE channel LIKE 'notify:%' GROUP BY channel) m WHERE m.channel = 'notify:' || u.id AND u.notify_seq < m.s;\n"
  "UPDATE conversations c SET last_seq = m.s FROM (SELECT channel, max(seq) AS s FROM channel_messages "
  "WHERE channel LIKE 'chat:%' GROUP BY channel) m WHERE m.channel = 'chat:' || c.id AND c.last_seq < m.s;\n"
  "INSERT INTO channel_seqs (channel, last_seq) SELECT channel, max(seq) FROM channel_messages "
  "WHERE channel NOT LIKE 'notify:%' AND channel NOT LIKE 'chat:%' GROUP BY channel "
  "ON CONFLICT (channel) DO UPDATE SET last_seq = GREATEST(channel_seqs.last_seq, excluded.last_seq);\n";

static const char sq_v2[] =
  "UPDATE users SET notify_seq = (SELECT max(seq) FROM channel_messages WHERE channel = 'notify:' || users.id) "
  "WHERE notify_seq < COALESCE((SELECT max(seq) FROM channel_messages WHERE channel = 'notify:' || users.id), 0);\n"
  "UPDATE conversations SET last_seq = (SELECT max(seq) FROM channel_messages WHERE channel = 'chat:' || conversations.id) "
  "WHERE last_seq < COALESCE((SELECT max(seq) FROM channel_messages WHERE channel = 'chat:' || conversations.id), 0);\n"
  "INSERT INTO channel_seqs (channel, last_seq) SELECT channel, max(seq) FROM channel_messages "
  "WHERE channel NOT LIKE 'notify:%' AND channel NOT LIKE 'chat:%' GROUP BY channel "
  "ON CONFLICT (channel) DO UPDATE SET last_seq = max(channel_seqs.last_seq, excluded.last_seq);\n";

/* v3: failed sign-ins, so the login throttle holds across instances
 * (SPEC §6, docs/scale-out.md): one row per failure and key ("ip:<addr>",
 * "email:<address>"), read back over the throttle window, purged as keys
 * fail again. */
static const char pg_v3[] =
  "CREATE TABLE login_failures (\n"
  "  key TEXT NOT NULL,\n"
  "  at_ms BIGINT NOT NULL\n"
  ");\n"
  "CREATE INDEX login_failures_key_idx ON login_failures (key, at_ms);\n";
static const char sq_v3[] =
  "CREATE TABLE login_failures (\n"
  "  key TEXT NOT NULL,\n"
  "  at_ms INTEGER NOT NULL\n"
  ");\n"
  "CREATE INDEX login_failures_key_idx ON login_failures (key, at_ms);\n";
/* v4: chat replies say why they are what they are (fallback reason, a
 * stream that broke, voice failures) in a metadata document. */
static const char pg_v4[] = "ALTER TABLE messages ADD COLUMN metadata jsonb;\n";
static const char sq_v4[] = "ALTER TABLE messages ADD COLUMN metadata JSON;\n";

const osb__migration_t osb__migrations[] = {
  { 1, "initial schema", pg_v1, sq_v1 },
  { 2, "durable channel seq counters from stored messages", pg_v2, sq_v2 },
  { 3, "failed sign-ins in the database (cluster-wide login throttle)", pg_v3, sq_v3 },
  { 4, "messages.metadata for chat replies", pg_v4, sq_v4 },
};
const size_t osb__nmigrations = OSB_ARRAY_LEN(osb__migrations);

/* Contract migrations (internal.h). v2 moves the durable channel counters
 * that the v1 binary never advanced: a v1 binary running on it again would
 * leave them behind and the next v2 start would reuse stored seqs, so a
 * rollback across v2 is refused. */
const osb__migration_compat_t osb__migration_compat[] = {
  { 2, 2 },
};
const size_t osb__nmigration_compat = OSB_ARRAY_LEN(osb__migration_compat);
