// The PostgreSQL pool against a real server (OSB_TEST_PG_URL, started by
// scripts/test.sh; $OSB_PG_SCRIPT stop/restart stops and starts it):
// concurrency through a small pool, acquire timeouts, the server going away
// and coming back, leaked connections, the cache, literal parameters.
// Every server gets its own application_name so pg_stat_activity counts
// exactly its connections.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { startServer, runBinary, randomKey } from './lib/server.mjs';
import { until } from './lib/apps.mjs';

const PG_URL = process.env.OSB_TEST_PG_URL;
const PG_SCRIPT = process.env.OSB_PG_SCRIPT;
const needsPg = PG_URL ? false : 'needs PostgreSQL: OSB_TEST_PG_URL is not set';
const needsScript = needsPg || (PG_SCRIPT ? false : 'needs OSB_PG_SCRIPT to stop and start PostgreSQL');

const servers = [];
after(async () => { for (const s of servers) await s.stop(); });

function appName() { return `osbtest_${randomKey(4)}`; }
function urlFor(name) { return `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}application_name=${name}`; }

function psql(sql) {
  return execFileSync('psql', [PG_URL, '-XAtq', '-c', sql], { encoding: 'utf8' }).trim();
}
function conns(name) {
  return Number(psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = '${name}'`));
}

async function pgServer(name, env = {}) {
  const srv = await startServer({
    env: { DATABASE_URL: urlFor(name), JWT_SECRET: randomKey(32), ...env },
  });
  servers.push(srv);
  return srv;
}

async function stopServer(srv) {
  const i = servers.indexOf(srv);
  if (i >= 0) servers.splice(i, 1);
  return srv.stop();
}

async function timed(srv, path) {
  const t0 = performance.now();
  const r = await srv.fetch(path);
  const body = await r.json().catch(() => null);
  return { status: r.status, body, ms: performance.now() - t0, retryAfter: r.headers.get('retry-after') };
}


test('the market routes work on PostgreSQL', { skip: needsPg }, async () => {
  const srv = await pgServer(appName());
  const cats = await timed(srv, '/api/market/categories');
  assert.equal(cats.status, 200);
  assert.ok(cats.body.categories.reduce((n, c) => n + c.procedures, 0) >= 10000);
  const one = await timed(srv, '/api/market/procedures/1');
  assert.equal(one.status, 200);
  assert.equal(one.body.id, 1);
  const list = await timed(srv, '/api/market/procedures?sort=-growth&limit=5');
  assert.equal(list.status, 200);
  assert.equal(list.body.items.length, 5);
  const next = await timed(srv, `/api/market/procedures?sort=-growth&limit=5&cursor=${list.body.next_cursor}`);
  assert.equal(next.status, 200);
  assert.ok(next.body.items[0].growth_pct <= list.body.items[4].growth_pct);
  assert.equal((await timed(srv, '/api/market/procedures/abc')).status, 400);
  assert.equal((await timed(srv, '/api/market/procedures/2000000000')).status, 404);
  await stopServer(srv);
});

test('50 concurrent requests through a pool of 5 all succeed', { skip: needsPg }, async () => {
  const name = appName();
  const srv = await pgServer(name, { DB_POOL_MIN: '1', DB_POOL_MAX: '5', QUERY_CACHE_MB: '0' });
  const ids = Array.from({ length: 50 }, (_, i) => 100 + i * 37);
  const res = await Promise.all(ids.map((id) => timed(srv, `/api/market/procedures/${id}`)));
  res.forEach((r, i) => {
    assert.equal(r.status, 200, `request ${i}`);
    assert.equal(r.body.id, ids[i]);
  });
  const open = conns(name);
  assert.ok(open >= 1 && open <= 5, `${open} connections`);
  await stopServer(srv);
  await until(() => conns(name) === 0, 5000, 'connections to close after shutdown');
});

test('a query that finds no connection in time answers 503 unavailable', { skip: needsPg }, async () => {
  const srv = await pgServer(appName(), {
    DB_POOL_MIN: '1', DB_POOL_MAX: '1', DB_ACQUIRE_TIMEOUT_MS: '300', QUERY_CACHE_MB: '0',
  });
  assert.equal((await timed(srv, '/api/market/procedures/3')).status, 200);
  // Hold an exclusive lock so the one connection blocks on its first query.
  const locker = spawn('psql', [PG_URL, '-Xq'], { stdio: ['pipe', 'pipe', 'pipe'] });
  locker.stdin.write('BEGIN;\nLOCK TABLE market_procedures IN ACCESS EXCLUSIVE MODE;\nSELECT \'locked\';\n');
  await new Promise((resolve) => locker.stdout.on('data', (d) => { if (String(d).includes('locked')) resolve(); }));
  try {
    const pending = Array.from({ length: 40 }, (_, i) => timed(srv, `/api/market/procedures/${500 + i}`));
    const early = await Promise.race([
      Promise.any(pending.map((p) => p.then((r) => (r.status === 503 ? r : Promise.reject(r))))),
      new Promise((_, rej) => setTimeout(() => rej(new Error('no 503 within 3 s')), 3000)),
    ]);
    assert.equal(early.body.error.code, 'unavailable');
    assert.equal(early.retryAfter, '1');
    assert.ok(early.ms >= 250 && early.ms < 3000, `503 after ${early.ms} ms`);
    locker.stdin.end('ROLLBACK;\n');
    const all = await Promise.all(pending);
    const by = all.reduce((m, r) => ((m[r.status] = (m[r.status] || 0) + 1), m), {});
    assert.deepEqual(Object.keys(by).sort(), ['200', '503'], JSON.stringify(by));
  } finally {
    locker.stdin.end();
    locker.kill();
  }
  assert.equal((await timed(srv, '/api/market/procedures/3')).status, 200);
  const metrics = await (await srv.fetch('/metrics')).text();
  assert.match(metrics, /^osb_db_acquire_timeouts_total [1-9]/m);
  await stopServer(srv);
});

test('a repeated read is a cache hit; an outside write shows once the TTL passed', { skip: needsPg }, async () => {
  const srv = await pgServer(appName(), { QUERY_CACHE_TTL_MS: '300' });
  const id = 777;
  const before = (await timed(srv, `/api/market/procedures/${id}`)).body;
  const again = await timed(srv, `/api/market/procedures/${id}`);
  assert.deepEqual(again.body, before);
  const metrics = await (await srv.fetch('/metrics')).text();
  assert.match(metrics, /^osb_db_cache_hits_total [1-9]/m);
  const renamed = `${before.name} (renamed ${randomKey(3)})`;
  psql(`UPDATE market_procedures SET name = '${renamed.replaceAll("'", "''")}' WHERE id = ${id}`);
  try {
    await new Promise((r) => setTimeout(r, 400));
    const after = await timed(srv, `/api/market/procedures/${id}`);
    assert.equal(after.body.name, renamed);
  } finally {
    psql(`UPDATE market_procedures SET name = '${before.name.replaceAll("'", "''")}' WHERE id = ${id}`);
  }
  await stopServer(srv);
});

test('parameters full of SQL syntax are taken literally', { skip: needsPg }, async () => {
  const srv = await pgServer(appName());
  const count0 = Number(psql('SELECT count(*) FROM market_procedures'));
  for (const q of ["'; DROP TABLE market_procedures; --", "%' OR '1'='1", '$1', '\\', '_%']) {
    const r = await timed(srv, `/api/market/procedures?q=${encodeURIComponent(q)}`);
    assert.equal(r.status, 200, q);
    assert.deepEqual(r.body.items, [], q);
  }
  const r = await timed(srv, `/api/market/procedures?category=${encodeURIComponent("Veneers' OR 'x'='x")}`);
  assert.deepEqual(r.body.items, []);
  assert.equal(Number(psql('SELECT count(*) FROM market_procedures')), count0);
  await stopServer(srv);
});

test('PostgreSQL stopped mid-test: fast 503s, /ready 503, recovery within seconds, no leaked connections',
  { skip: needsScript }, async () => {
    const name = appName();
    const srv = await pgServer(name, { DB_POOL_MIN: '2', DB_POOL_MAX: '5', QUERY_CACHE_MB: '0' });
    assert.equal((await timed(srv, '/api/market/procedures/10')).status, 200);
    execFileSync(PG_SCRIPT, ['stop']);
    try {
      // The pool notices the closed connections; from then on every request fails fast.
      await until(async () => (await timed(srv, '/ready')).status === 503, 3000, '/ready to turn 503');
      const ready = await timed(srv, '/ready');
      assert.equal(ready.body.error.code, 'not_ready');
      assert.match(ready.body.error.message, /database/);
      for (let i = 0; i < 10; i++) {
        const r = await timed(srv, `/api/market/procedures/${20 + i}`);
        assert.equal(r.status, 503);
        assert.equal(r.body.error.code, 'unavailable');
        assert.ok(r.ms < 500, `503 took ${r.ms} ms`);
      }
      const burst = await Promise.all(Array.from({ length: 20 }, (_, i) => timed(srv, `/api/market/procedures/${40 + i}`)));
      assert.ok(burst.every((r) => r.status === 503));
    } finally {
      execFileSync(PG_SCRIPT, ['restart']);
    }
    const t0 = Date.now();
    await until(async () => (await timed(srv, '/api/market/procedures/11')).status === 200, 5000, 'a 200 after restart');
    const recovery = Date.now() - t0;
    assert.ok(recovery < 5000, `recovered after ${recovery} ms`);
    assert.equal((await timed(srv, '/ready')).status, 200);
    const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => timed(srv, `/api/market/procedures/${60 + i}`)));
    assert.ok(burst.every((r) => r.status === 200));
    assert.ok(conns(name) <= 5, `${conns(name)} connections`);
    const metrics = await (await srv.fetch('/metrics')).text();
    assert.match(metrics, /^osb_db_reconnects_total [1-9]/m);
    const { code } = await stopServer(srv);
    assert.equal(code, 0);
    assert.doesNotMatch(srv.logs(), /AddressSanitizer|LeakSanitizer|runtime error/);
    await until(() => conns(name) === 0, 5000, 'connections to close after shutdown');
  });

test('osbackend migrate applies nothing twice', { skip: needsPg }, async () => {
  const env = { DATABASE_URL: PG_URL, JWT_SECRET: randomKey(32) };
  const r = await runBinary(['migrate'], { env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /0 migration\(s\) applied, schema at version [1-9]/);
  assert.equal(Number(psql('SELECT count(*) FROM schema_migrations')), Number(psql('SELECT max(version) FROM schema_migrations')));
});
