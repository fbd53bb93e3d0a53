// DB_QUERY_TIMEOUT_MS on PostgreSQL (issue 17 item 5): a query on a
// connection whose server stops answering (its backend SIGSTOPped, the
// socket open) fails with 503 after the timeout and the connection is
// retired, so requests behind it do not wait for TCP keepalives; a
// statement that is merely slow is cancelled by the server's own
// statement_timeout (set at connect) and the connection stays.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { startServer, randomKey } from './lib/server.mjs';
import { until } from './lib/apps.mjs';

const PG_URL = process.env.OSB_TEST_PG_URL;
const needsPg = PG_URL ? false : 'needs PostgreSQL: OSB_TEST_PG_URL is not set';
const servers = [];
after(async () => { for (const s of servers) await s.stop().catch(() => {}); });

const psql = (sql) => execFileSync('psql', [PG_URL, '-XAtq', '-c', sql], { encoding: 'utf8' }).trim();
const appName = () => `osbto_${randomKey(4)}`;
const urlFor = (name) => `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}application_name=${name}`;
const pids = (name) => psql(`SELECT pid FROM pg_stat_activity WHERE application_name = '${name}' ORDER BY pid`)
  .split('\n').filter(Boolean).map(Number);

async function timed(srv, path) {
  const t0 = performance.now();
  const r = await srv.fetch(path);
  const body = await r.json().catch(() => null);
  return { status: r.status, body, ms: performance.now() - t0 };
}


async function pgServer(name, env) {
  const srv = await startServer({
    env: { DATABASE_URL: urlFor(name), JWT_SECRET: randomKey(32), QUERY_CACHE_MB: '0', DB_POOL_MIN: '1',
           CLUSTER_BUS: 'local',   // the pool's connections only (the bus's LISTEN connection would count too)
           DB_POOL_MAX: '1', DB_ACQUIRE_TIMEOUT_MS: '10000', DB_HEALTH_INTERVAL_MS: '600000', ...env },
  });
  servers.push(srv);
  return srv;
}

test('a stopped backend: the query fails with 503 after DB_QUERY_TIMEOUT_MS, the connection is retired, the next request succeeds',
  { skip: needsPg }, async () => {
    const name = appName();
    const srv = await pgServer(name, { DB_QUERY_TIMEOUT_MS: '1000' });
    assert.equal((await timed(srv, '/api/market/procedures/3')).status, 200);
    const [pid] = await until(() => { const p = pids(name); return p.length === 1 && p; }, 3000, 'one pool connection');
    process.kill(pid, 'SIGSTOP');
    let all;
    try {
      // one in flight on the stopped backend, four waiting behind it for the only connection
      all = await Promise.all(Array.from({ length: 5 }, (_, i) => timed(srv, `/api/market/procedures/${100 + i}`)));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const failed = all.filter((r) => r.status === 503);
    assert.ok(failed.length >= 1, JSON.stringify(all.map((r) => r.status)));
    for (const r of failed) {
      assert.equal(r.body.error.code, 'unavailable');
      assert.ok(r.ms >= 900 && r.ms < 3000, `503 after ${r.ms} ms`);
    }
    // nobody waited for keepalives (10 s + 3 × 5 s): every request ended within 2 timeouts and a reconnect
    for (const r of all) assert.ok(r.ms < 4000, `a request took ${r.ms} ms`);
    assert.ok(all.every((r) => r.status === 200 || r.status === 503), JSON.stringify(all.map((r) => r.status)));
    assert.equal((await timed(srv, '/api/market/procedures/4')).status, 200);
    // the old backend was cancelled/abandoned: the pool uses a new one
    const now = await until(() => { const p = pids(name).filter((x) => x !== pid); return p.length >= 1 && p; }, 3000, 'a new connection');
    assert.ok(!now.includes(pid));
    await until(() => !pids(name).includes(pid), 5000, 'the stopped backend to go away once resumed');
    const metrics = await (await srv.fetch('/metrics')).text();
    assert.match(metrics, /^osb_db_query_timeouts_total [1-9]/m);
    assert.match(srv.logs(), /no answer from PostgreSQL within DB_QUERY_TIMEOUT_MS=1000/);
    const { code } = await srv.stop();
    servers.splice(servers.indexOf(srv), 1);
    assert.equal(code, 0);
  });

test('a slow statement is cancelled by the server-side statement_timeout: 503, the connection is kept',
  { skip: needsPg }, async () => {
    const name = appName();
    const srv = await pgServer(name, { DB_QUERY_TIMEOUT_MS: '800' });
    assert.equal((await timed(srv, '/api/market/procedures/3')).status, 200);
    const before = await until(() => { const p = pids(name); return p.length === 1 && p; }, 3000, 'one pool connection');
    const locker = spawn('psql', [PG_URL, '-Xq'], { stdio: ['pipe', 'pipe', 'pipe'] });
    locker.stdin.write('BEGIN;\nLOCK TABLE market_procedures IN ACCESS EXCLUSIVE MODE;\nSELECT \'locked\';\n');
    await new Promise((resolve) => locker.stdout.on('data', (d) => { if (String(d).includes('locked')) resolve(); }));
    let r;
    try {
      r = await timed(srv, '/api/market/procedures/200');
    } finally {
      locker.stdin.end('ROLLBACK;\n');
    }
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'unavailable');
    assert.ok(r.ms >= 700 && r.ms < 2500, `503 after ${r.ms} ms`);
    assert.equal((await timed(srv, '/api/market/procedures/5')).status, 200);
    assert.deepEqual(pids(name), before, 'the same backend serves on: the session survived its statement timeout');
    const metrics = await (await srv.fetch('/metrics')).text();
    assert.match(metrics, /^osb_db_query_timeouts_total 0/m);
    const { code } = await srv.stop();
    servers.splice(servers.indexOf(srv), 1);
    assert.equal(code, 0);
  });
