// Multi-host DATABASE_URL with target_session_attrs=read-write: the first
// host is a read-only server (a fake that speaks the PostgreSQL startup
// protocol and reports in_hot_standby=on), the second the real PostgreSQL.
// libpq finishes a whole session with the first host, drops it and opens a
// new socket to the second — usually under the same descriptor number — in
// the middle of the non-blocking connect. The pool and the cluster bus must
// follow it (their uv_poll watchers are re-registered on every step), so the
// server is ready at once, and again after PostgreSQL restarts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { startServer, randomKey } from './lib/server.mjs';
import { until } from './lib/apps.mjs';

const PG_URL = process.env.OSB_TEST_PG_URL;
const needsPg = PG_URL ? false : 'needs PostgreSQL: OSB_TEST_PG_URL is not set';
const cleanup = [];
after(async () => { for (const f of cleanup.reverse()) await f().catch(() => {}); });

const psql = (sql) => execFileSync('psql', [PG_URL, '-XAtq', '-c', sql], { encoding: 'utf8' }).trim();

// A "standby": answers SSL/GSS requests with N, then AuthenticationOk, the
// parameters a PostgreSQL 15 standby reports, and ReadyForQuery. Counts the
// sessions it served.
function fakeStandby() {
  const m = (type, body) => {
    const h = Buffer.alloc(5);
    h.write(type, 0);
    h.writeInt32BE(body.length + 4, 1);
    return Buffer.concat([h, body]);
  };
  const param = (k, v) => m('S', Buffer.from(`${k}\0${v}\0`));
  const st = { sessions: 0, server: null, port: 0 };
  st.server = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    let started = false;
    s.on('error', () => {});
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (!started && buf.length >= 8) {
        const len = buf.readInt32BE(0);
        if (buf.length < len) return;
        const code = buf.readInt32BE(4);
        buf = buf.subarray(len);
        if (code === 80877103 || code === 80877104) { s.write('N'); continue; }  // SSLRequest, GSSENCRequest
        started = true;
        st.sessions++;
        const ok = Buffer.alloc(4);
        s.write(Buffer.concat([m('R', ok), param('server_version', '15.0'), param('in_hot_standby', 'on'),
          param('default_transaction_read_only', 'on'), param('server_encoding', 'UTF8'),
          param('client_encoding', 'UTF8'), param('integer_datetimes', 'on'),
          param('standard_conforming_strings', 'on'), m('K', Buffer.alloc(8)), m('Z', Buffer.from('I'))]));
      }
    });
  });
  return new Promise((resolve) => st.server.listen(0, '127.0.0.1', () => { st.port = st.server.address().port; resolve(st); }));
}


async function details(srv) {
  const r = await srv.fetch('/health/details');
  return r.json();
}

test('a read-only first host is skipped: the pool and the bus connect to the second one at once',
  { skip: needsPg }, async () => {
    const fake = await fakeStandby();
    cleanup.push(() => new Promise((r) => fake.server.close(r)));
    const u = new URL(PG_URL);
    const app = `osbfo_${randomKey(4)}`;
    const url = `postgres://${u.username}@127.0.0.1:${fake.port},${u.hostname}:${u.port}${u.pathname}` +
      `?target_session_attrs=read-write&application_name=${app}`;
    const t0 = Date.now();
    const srv = await startServer({
      env: { DATABASE_URL: url, JWT_SECRET: randomKey(32), QUERY_CACHE_MB: '0', DB_POOL_MIN: '2', DB_POOL_MAX: '4',
             CLUSTER_BUS: 'postgres', DB_HEALTH_INTERVAL_MS: '600000' },
    });
    cleanup.push(() => srv.stop());
    await srv.waitForLog(/bus connected/, 5000);
    // well under libpq's/our connect timeouts: nothing waited for a watcher that never fired
    assert.ok(Date.now() - t0 < 5000, `bus connected after ${Date.now() - t0} ms`);
    assert.equal((await srv.fetch('/ready')).status, 200);
    const r = await srv.fetch('/api/market/procedures/3');
    assert.equal(r.status, 200);
    assert.equal((await r.json()).id, 3);
    const d = await details(srv);
    assert.match(d.checks.cluster[0].output, /postgres bus connected/);
    assert.equal(d.checks.database[0].status, 'pass');
    // the pool's connections and the bus are on the real server, and each went through the standby first
    const onReal = await until(() => {
      const n = Number(psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('${app}', 'osbackend-bus')`));
      return n >= 3 && n;
    }, 3000, 'two pool connections and the bus on the real server');
    assert.ok(onReal >= 3);
    assert.ok(fake.sessions >= 3, `the standby served ${fake.sessions} sessions (pool ×2 + bus expected)`);

    // PostgreSQL restarts: the pool reconnects through the standby again and serves
    const before = fake.sessions;
    execFileSync(process.env.OSB_PG_SCRIPT, ['stop'], { env: process.env, stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    execFileSync(process.env.OSB_PG_SCRIPT, ['restart'], { env: process.env, stdio: 'ignore' });   // pg.sh: start again
    const back = await until(async () => {
      const x = await srv.fetch('/api/market/procedures/4');
      await x.arrayBuffer();
      return x.status === 200;
    }, 8000, 'a query after the restart');
    assert.ok(back);
    await until(async () => /postgres bus connected/.test((await details(srv)).checks.cluster[0].output), 8000,
      'the bus reconnected');
    assert.ok(fake.sessions > before, 'the reconnects went through the standby first');
    const { code } = await srv.stop();
    assert.equal(code, 0);
  });
