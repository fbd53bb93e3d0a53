// The embedded SQLite default: created, migrated and seeded on first start
// (the directory too), kept across restarts without seeding twice, served
// concurrently from the threadpool, and `osbackend migrate`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startServer, runBinary } from './lib/server.mjs';

test('first start creates, migrates and seeds the file; a restart keeps it and does not seed again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'osb-sqlite-'));
  const path = join(dir, 'deep', 'er', 'osb.db');
  try {
    let srv = await startServer({ env: { SQLITE_PATH: path } });
    assert.ok(existsSync(path));
    assert.match(srv.logs(), /applied migration 1/);
    assert.match(srv.logs(), /seeded \d+ market procedures/);
    const before = await (await srv.fetch('/api/market/procedures/1234')).json();
    assert.equal((await srv.stop()).code, 0);

    srv = await startServer({ env: { SQLITE_PATH: path } });
    assert.doesNotMatch(srv.logs(), /applied migration|seeded/);
    const after = await (await srv.fetch('/api/market/procedures/1234')).json();
    assert.deepEqual(after, before);
    const details = await (await srv.fetch('/health/details')).json();
    assert.equal(details.checks.database[0].status, 'pass');
    assert.match(details.checks.database[0].output, /sqlite/);
    assert.equal((await srv.stop()).code, 0);
    assert.doesNotMatch(srv.logs(), /AddressSanitizer|LeakSanitizer|runtime error/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('50 concurrent reads on SQLite all succeed, cached or not', async () => {
  for (const cache of ['64', '0']) {
    const srv = await startServer({ env: { QUERY_CACHE_MB: cache } });
    try {
      const ids = Array.from({ length: 50 }, (_, i) => 1 + ((i * 97) % 20) * 13);
      const res = await Promise.all(ids.map((id) => srv.fetch(`/api/market/procedures/${id}`)));
      const bodies = await Promise.all(res.map((r) => r.json()));
      res.forEach((r, i) => assert.equal(r.status, 200, `request ${i} (cache ${cache})`));
      bodies.forEach((b, i) => assert.equal(b.id, ids[i]));
      const lists = await Promise.all(['name', '-growth', 'market_size'].map((s) =>
        srv.fetch(`/api/market/procedures?sort=${s}&limit=100`).then((r) => r.json())));
      for (const l of lists) assert.equal(l.items.length, 100);
    } finally {
      await srv.stop();
    }
  }
});

test('an unusable SQLITE_PATH stops the start with a clear error', async () => {
  const srv = await startServer({ env: { SQLITE_PATH: '/proc/osb-cannot-exist/x.db' }, noWait: true });
  const { code } = await srv.exited;
  assert.notEqual(code, 0);
  assert.match(srv.logs(), /cannot (create directory|open)/);
});

test('osbackend migrate creates the schema once', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'osb-migrate-'));
  const env = { SQLITE_PATH: join(dir, 'a', 'b.db') };
  try {
    const first = await runBinary(['migrate'], { env });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied migration 1: initial schema/);
    assert.match(first.stdout, /applied migration 2: durable channel seq counters/);
    const n = (first.stdout.match(/^applied migration \d+:/gm) || []).length;   // every migration, once
    assert.ok(n >= 3, first.stdout);
    assert.match(first.stdout, new RegExp(`${n} migration\\(s\\) applied, schema at version ${n}`));
    const second = await runBinary(['migrate'], { env });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, new RegExp(`0 migration\\(s\\) applied, schema at version ${n}`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('slow queries are logged by statement name, never with parameter values', async () => {
  const srv = await startServer({ env: { SLOW_QUERY_MS: '0' } });
  try {
    const secret = `needle${Date.now()}`;
    const r = await srv.fetch(`/api/market/procedures?q=${secret}&category=${secret}`);
    assert.equal(r.status, 200);
    await srv.fetch('/api/market/procedures/77');
    await srv.waitForLog(/"msg":"slow query".*market_procedure_get|market_procedure_get.*"msg":"slow query"/);
    const dbLines = srv.logs().split('\n').filter((l) => l.includes('"module":"db"'));
    const slow = dbLines.filter((l) => l.includes('slow query'));
    assert.ok(slow.some((l) => l.includes('"statement":"market_list_name_asc"')), slow.join('\n'));
    for (const l of slow) {
      const j = JSON.parse(l);
      assert.equal(typeof j.duration_ms, 'number');
    }
    for (const l of dbLines) assert.ok(!l.includes(secret), `a parameter value reached the log: ${l}`);
  } finally {
    await srv.stop();
  }
});

// Migration 2: a database whose durable channels were numbered in memory
// (counters left at 0, rows in channel_messages) gets its counters lifted to
// the highest stored seq, so the next message cannot collide with an old row.
const haveSqliteCli = spawnSync('sqlite3', ['-version']).status === 0;
test('migration 2 lifts the durable seq counters above the stored messages', { skip: !haveSqliteCli && 'sqlite3 CLI not installed' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'osb-migrate2-'));
  const db = join(dir, 'm.db');
  const sql = (q) => {
    const r = spawnSync('sqlite3', [db, q], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  try {
    assert.equal((await runBinary(['migrate'], { env: { SQLITE_PATH: db } })).code, 0);
    // back to the state before v2, with rows the old hub numbered
    sql("DELETE FROM schema_migrations WHERE version >= 2; DROP TABLE login_failures; ALTER TABLE messages DROP COLUMN metadata; INSERT INTO users (id, email) VALUES ('u1', 'u1@example.test');" +
        "INSERT INTO channel_messages (channel, seq, data) VALUES ('notify:u1', 1, '1'), ('notify:u1', 7, '7'), ('other:x', 3, '3');");
    const r = await runBinary(['migrate'], { env: { SQLITE_PATH: db } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /applied migration 2/);
    assert.equal(sql("SELECT notify_seq FROM users WHERE id = 'u1'"), '7');
    assert.equal(sql("SELECT last_seq FROM channel_seqs WHERE channel = 'other:x'"), '3');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
