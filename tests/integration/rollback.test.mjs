// Rollback-safe releases (issue 16, docs/deploy.md "Migrations"): the current
// binary and the previous release (the same binary with MIGRATIONS_UPTO=1,
// i.e. knowing only migration 1) on each other's schema, in both directions,
// on SQLite and PostgreSQL; `migrate --status`; and the next release's
// schema, expand (this binary runs on it) and contract (it refuses, in one line).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, runBinary, randomKey } from './lib/server.mjs';

const PG = process.env.OSB_TEST_PG_URL;
// The previous release is one from before migration 2, the first contract
// migration: MIGRATIONS_UPTO=1.
const PREVIOUS = { MIGRATIONS_UPTO: '1' };
// How many migrations this binary knows (N): the current release.
const N = await (async () => {
  const dir = mkdtempSync(join(tmpdir(), 'osb-rollback-n-'));
  try {
    const r = await runBinary(['migrate', '--status'], { env: { SQLITE_PATH: join(dir, 'osb.db') } });
    const m = r.stdout.match(/this release knows up to (\d+)/);
    if (!m) throw new Error(`migrate --status: ${r.stdout}${r.stderr}`);
    return Number(m[1]);
  } finally { rmSync(dir, { recursive: true, force: true }); }
})();
// The oldest release the current schema supports: migration 2 is a contract
// (needs 2), every later one an expand (needs the release before it).
const MIN = Math.max(2, N - 1);

function sql(backend, target, text) {
  if (backend === 'sqlite') return execFileSync('sqlite3', [target, text], { encoding: 'utf8' });
  return execFileSync('psql', [target, '-v', 'ON_ERROR_STOP=1', '-Atc', text], { encoding: 'utf8' });
}

// A fresh, empty database per case: {env, target, done()}.
function freshDb(backend) {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'osb-rollback-'));
    const path = join(dir, 'osb.db');
    return { env: { SQLITE_PATH: path }, target: path, done: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const name = `osb_rollback_${randomKey(4)}`;
  sql('postgresql', PG, `CREATE DATABASE ${name}`);
  const url = PG.replace(/\/[^/?]+(\?|$)/, `/${name}$1`);
  return {
    env: { DATABASE_URL: url, JWT_SECRET: randomKey(32) }, target: url,
    done: () => sql('postgresql', PG, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

async function status(db, extra = {}) {
  return runBinary(['migrate', '--status'], { env: { ...db.env, ...extra } });
}

async function serves(db, extra = {}) {
  const srv = await startServer({ env: { ...db.env, ...extra } });
  const r = await srv.fetch('/api/market/categories');
  assert.equal(r.status, 200);
  const logs = srv.logs();
  await srv.stop();
  return logs;
}

// Starting must fail with exit 1 and one error line that says why.
async function refuses(db, extra, re) {
  const srv = await startServer({ env: { ...db.env, ...extra }, noWait: true });
  const r = await srv.exited;
  assert.equal(r.code, 1, srv.logs());
  const lines = srv.logs().split('\n').filter((l) => /refusing to start/.test(l));
  assert.equal(lines.length, 1, srv.logs());
  assert.match(lines[0], re);
  await srv.stop('SIGTERM', { expectExit: false });
}

const backends = ['sqlite', ...(PG ? ['postgresql'] : [])];
for (const backend of backends) {
  describe(`rollback (${backend})`, { skip: backend === 'sqlite' && !existsSync('/usr/bin/sqlite3') && 'needs sqlite3 (scripts/deps.sh test)' }, () => {
    test('migrate --status on an empty database lists every migration as pending and creates nothing', async () => {
      const db = freshDb(backend);
      try {
        const r = await status(db);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`schema version: 0 \\(this release knows up to ${N}\\)`));
        assert.match(r.stdout, /applied: none/);
        assert.match(r.stdout, /pending:\n {2}1 {2}initial schema\n {2}2 {2}/);
        if (backend === 'sqlite') assert.equal(existsSync(db.target), false, 'status must not create the database');
      } finally { db.done(); }
    });

    test('previous release → current: the current binary applies the pending migration and serves', async () => {
      const db = freshDb(backend);
      try {
        const m = await runBinary(['migrate'], { env: { ...db.env, ...PREVIOUS } });
        assert.equal(m.code, 0, m.stderr);
        assert.match(m.stdout, /schema at version 1/);
        let s = await status(db, PREVIOUS);
        assert.equal(s.code, 0, s.stdout + s.stderr);
        assert.match(s.stdout, /schema version: 1 \(this release knows up to 1\)/);
        assert.match(s.stdout, /pending: none/);
        assert.match(s.stdout, /this release: up to date/);
        s = await status(db);
        assert.match(s.stdout, /pending:\n {2}2 {2}durable channel seq counters/);
        assert.match(s.stdout, /this release: runs after applying the pending migrations/);
        await serves(db, PREVIOUS);              // the previous release runs on its own schema
        const logs = await serves(db);           // the current one migrates at start
        assert.match(logs, /applied migration 2/);
        s = await status(db);
        assert.match(s.stdout, new RegExp(`schema version: ${N} \\(this release knows up to ${N}\\)`));
        assert.match(s.stdout, new RegExp(`oldest release supported: one that knows schema version ${MIN} or later`));
      } finally { db.done(); }
    });

    test('current → previous release: migration 2 is a contract, so the previous binary refuses in one line', async () => {
      const db = freshDb(backend);
      try {
        await serves(db);
        await refuses(db, PREVIOUS, new RegExp(`schema is at version ${N} and needs a release that knows schema version ${MIN} or later; this release knows up to 1`));
        const s = await status(db, PREVIOUS);
        assert.equal(s.code, 1);
        assert.match(s.stdout, /this release: cannot run on this schema/);
        await serves(db);                        // rolling forward again works
      } finally { db.done(); }
    });

    test('next release, expand: this binary runs on a newer schema that supports it, without migrating', async () => {
      const db = freshDb(backend);
      try {
        await serves(db);
        const now = Date.now();
        sql(backend, db.target, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${N + 1}, 'next release: add a column', ${now})`);
        sql(backend, db.target, `UPDATE osb_meta SET value = '2' WHERE key = 'schema_min_version'`);
        const logs = await serves(db);
        assert.match(logs, new RegExp(`newer than this release \\(${N}\\); it supports releases back to schema version 2`));
        const s = await status(db);
        assert.equal(s.code, 0, s.stdout);
        assert.match(s.stdout, /this release: runs on this newer schema without migrating/);
        assert.match(s.stdout, new RegExp(`${N + 1} {2}next release: add a column`));
        // The next release contracts the schema: now this binary must refuse.
        sql(backend, db.target, `UPDATE osb_meta SET value = '${N + 1}' WHERE key = 'schema_min_version'`);
        await refuses(db, {}, new RegExp(`needs a release that knows schema version ${N + 1} or later; this release knows up to ${N}`));
        assert.equal((await status(db)).code, 1);
      } finally { db.done(); }
    });
  });
}
