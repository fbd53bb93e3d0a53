// Scale-out as a black box (docs/scale-out.md, SPEC §6): three instances of
// the real binary on one PostgreSQL, CLUSTER_BUS=postgres (LISTEN/NOTIFY).
// Needs OSB_TEST_PG_URL (scripts/test.sh starts a cluster); skipped without.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, randomKey, runBinary } from './lib/server.mjs';
import { api, register, WsClient, until, sleep, PASSWORD } from './lib/apps.mjs';

const PG = process.env.OSB_TEST_PG_URL;
const PG_SCRIPT = process.env.OSB_PG_SCRIPT;

const key = randomKey();
const secret = randomKey(32);
const clusterEnv = (node, extra = {}) => ({
  DATABASE_URL: PG,
  JWT_SECRET: secret,
  SERVICE_API_KEY: key,
  CLUSTER_NODE_ID: node,
  TRUST_PROXY: '1',   // the throttle test signs in from its own forwarded address
  RATE_LIMIT_RPS: '100000',
  RATE_LIMIT_BURST: '100000',
  REGISTER_IP_BURST: '1000',
  REGISTER_IP_PER_HOUR: '100000',
  REGISTER_GLOBAL_PER_MIN: '100000',
  ...extra,
});

async function details(srv) {
  const r = await srv.fetch('/health/details');
  return r.json();
}
// /health/details: {checks: {cluster: [{status, output, ...}]}}
const clusterOf = (d) => { const c = d.checks?.cluster; return Array.isArray(c) ? c[0] : c; };

async function channels(srv) {
  return (await api(srv, 'GET', '/api/realtime/channels', { token: key })).body;
}

// Wait until `srv` sees `n` live instances on a connected bus.
async function waitInstances(srv, n, ms = 20000) {
  await until(async () => {
    const c = (await channels(srv)).cluster;
    return c && c.connected && c.instances.length === n;
  }, ms, `${n} instances seen on port ${srv.port}`);
}

const publish = (srv, channel, data) => api(srv, 'POST', '/api/realtime/publish', { token: key, body: { channel, data } });

async function startNode(name, extra) {
  return startServer({ env: clusterEnv(name, extra) });
}

describe('cluster: three instances on one PostgreSQL', { skip: !PG && 'OSB_TEST_PG_URL not set' }, () => {
  let A, B, C;
  const tag = randomKey(3);
  before(async () => {
    [A, B, C] = await Promise.all([startNode(`a-${tag}`), startNode(`b-${tag}`), startNode(`c-${tag}`)]);
    await Promise.all([waitInstances(A, 3), waitInstances(B, 3), waitInstances(C, 3)]);
  });
  after(async () => {
    for (const s of [A, B, C]) if (s) await s.stop();
  });

  test('health and channels show the cluster component and the bus', async () => {
    const d = await details(A);
    const c = clusterOf(d);
    assert.ok(c, JSON.stringify(d));
    assert.equal(c.status, 'pass', JSON.stringify(c));
    assert.match(c.output, /instances seen: 3/);
    const ch = (await channels(B)).cluster;
    assert.equal(ch.bus, 'postgres');
    assert.equal(ch.node_id, `b-${tag}`);
    assert.deepEqual(ch.instances.map((i) => i.node_id).sort(), [`a-${tag}`, `b-${tag}`, `c-${tag}`]);
    const m = await (await A.fetch('/metrics')).text();
    assert.match(m, /osb_bus_messages_total\{direction="received"\} [1-9]/);
    assert.match(m, /osb_cluster_instances 3/);
  });

  test('a publication on A reaches B and C with the same seq', async () => {
    const ch = `market:x-${tag}`;
    const subs = await Promise.all([A, B, C].map((s) => WsClient.open(s)));
    await Promise.all(subs.map((c) => c.subscribe(ch)));
    const r = await publish(A, ch, { n: 1 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const got = await Promise.all(subs.map((c) => c.next((m) => m.type === 'message' && m.channel === ch)));
    for (const m of got) {
      assert.equal(m.seq, r.body.seq);
      assert.deepEqual(m.data, { n: 1 });
    }
    // and from B, the next seq, everywhere
    const r2 = await publish(B, ch, { n: 2 });
    assert.equal(r2.body.seq, r.body.seq + 1);
    const got2 = await Promise.all(subs.map((c) => c.next((m) => m.type === 'message' && m.channel === ch)));
    for (const m of got2) assert.equal(m.seq, r2.body.seq);
    // a large payload (over what a NOTIFY carries) travels by reference
    const big = { blob: 'x'.repeat(20000) };
    const r3 = await publish(C, ch, big);
    assert.equal(r3.status, 200, JSON.stringify(r3.body));
    const got3 = await Promise.all(subs.map((c) => c.next((m) => m.type === 'message' && m.channel === ch)));
    for (const m of got3) {
      assert.equal(m.seq, r3.body.seq);
      assert.equal(m.data.blob.length, 20000);
    }
    subs.forEach((c) => c.close());
  });

  test('a durable message published on A reaches its owner on B and C with its stored seq', async () => {
    const u = await register(A, 'dur');
    const ch = `notify:${u.id}`;
    const subs = await Promise.all([B, C].map((s) => WsClient.open(s, u.token)));
    await Promise.all(subs.map((c) => c.subscribe(ch)));
    const r = await publish(A, ch, { hello: 'world' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    for (const c of subs) {
      const m = await c.next((f) => f.type === 'message' && f.channel === ch);
      assert.equal(m.seq, r.body.seq);
      assert.deepEqual(m.data, { hello: 'world' });
    }
    subs.forEach((c) => c.close());
  });

  test('1,000 messages published round-robin on all three arrive everywhere in one order', async () => {
    const ch = `market:rr-${tag}`;
    const subs = await Promise.all([A, B, C].map((s) => WsClient.open(s)));
    await Promise.all(subs.map((c) => c.subscribe(ch)));
    const N = 1000;
    const nodes = [A, B, C];
    const acked = [];
    let next = 0;
    async function worker() {
      while (next < N) {
        const i = next++;
        const r = await publish(nodes[i % 3], ch, { i });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        acked.push(r.body.seq);
      }
    }
    await Promise.all(Array.from({ length: 12 }, worker));
    assert.equal(new Set(acked).size, N, 'every publication got its own seq');
    await until(() => subs.every((c) => c.on(ch).length >= N), 60000, 'all 1000 messages on every instance');
    const seqs = subs.map((c) => c.on(ch).map((m) => m.seq));
    const datas = subs.map((c) => c.on(ch).map((m) => m.data.i));
    for (let k = 1; k < 3; k++) {
      assert.deepEqual(seqs[k], seqs[0], 'same seqs in the same order');
      assert.deepEqual(datas[k], datas[0], 'same messages in the same order');
    }
    for (let i = 1; i < N; i++) assert.equal(seqs[0][i], seqs[0][i - 1] + 1, 'consecutive seqs');
    assert.deepEqual([...acked].sort((a, b) => a - b), seqs[0]);
    assert.ok(subs.every((c) => c.msgs.every((m) => m.type !== 'reset')), 'no reset on a healthy bus');
    subs.forEach((c) => c.close());
  });

  test('five wrong passwords spread over A, B and C hit the login throttle', async () => {
    const u = await register(A, 'throttle');
    // Failures are rows in the shared database: sign in from an address of
    // this test only, so 127.0.0.1 stays unthrottled for the other suites.
    const b = 1 + Math.floor(Math.random() * 250), c = 1 + Math.floor(Math.random() * 250);
    const headers = { 'x-forwarded-for': `198.18.${b}.${c}` };
    const order = [A, B, C, A, B];
    for (const s of order) {
      const r = await api(s, 'POST', '/api/auth/login', { headers, body: { email: u.email, password: 'wrong password 123' } });
      assert.equal(r.status, 401, JSON.stringify(r.body));
    }
    // no instance saw more than two of them, yet every one refuses now, the right password too
    for (const s of [C, A, B]) {
      const r = await api(s, 'POST', '/api/auth/login', { headers, body: { email: u.email, password: PASSWORD } });
      assert.equal(r.status, 429, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'too_many_attempts');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    // the address is throttled everywhere too (five failures from it), another one is not
    const v = await register(B, 'throttle-other');
    const blocked = await api(C, 'POST', '/api/auth/login', { headers, body: { email: v.email, password: PASSWORD } });
    assert.equal(blocked.status, 429, JSON.stringify(blocked.body));
    const ok = await api(C, 'POST', '/api/auth/login', {
      headers: { 'x-forwarded-for': `198.19.${b}.${c}` }, body: { email: v.email, password: PASSWORD } });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  test('presence counts members on every instance', async () => {
    const ch = `market:p-${tag}`;
    const users = await Promise.all([A, B, C].map((s) => register(s, 'pres')));
    const subs = await Promise.all([A, B, C].map((s, i) => WsClient.open(s, users[i].token)));
    await Promise.all(subs.map((c) => c.subscribe(ch)));
    for (const s of [A, B, C]) {
      await until(async () => {
        const p = (await api(s, 'GET', `/api/realtime/presence/${ch}`, { token: key })).body;
        return p.count === 3 && p.members.length === 3;
      }, 10000, `presence of 3 on port ${s.port}`);
    }
    const p = (await api(A, 'GET', `/api/realtime/presence/${ch}`, { token: key })).body;
    assert.deepEqual(p.members.map((m) => m.user_id).sort(), users.map((u) => u.id).sort());
    // the WebSocket presence request agrees
    const pr = await subs[2].request({ type: 'presence', channel: ch });
    assert.equal(pr.count, 3);
    // a member who leaves is gone everywhere
    subs[1].close();
    await until(async () => (await api(C, 'GET', `/api/realtime/presence/${ch}`, { token: key })).body.count === 2,
      10000, 'leave seen on C');
    subs.forEach((c) => c.close());
  });
});

describe('cluster: failures', { skip: !PG && 'OSB_TEST_PG_URL not set' }, () => {
  test('kill -9 B mid-stream: its clients resume on C with since and lose nothing durable; B\'s members drop out', async () => {
    const tag = randomKey(3);
    const [A, B, C] = await Promise.all([startNode(`ka-${tag}`), startNode(`kb-${tag}`), startNode(`kc-${tag}`)]);
    try {
      await Promise.all([waitInstances(A, 3), waitInstances(C, 3)]);
      const u = await register(A, 'kill');
      const ch = `notify:${u.id}`;
      const onB = await WsClient.open(B, u.token);
      await onB.subscribe(ch);
      const pch = `market:k-${tag}`;
      await onB.subscribe(pch);
      await until(async () => (await api(C, 'GET', `/api/realtime/presence/${pch}`, { token: key })).body.count === 1,
        10000, 'B member seen on C');
      const acked = [];
      let stop = false;
      const pub = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await publish(A, ch, { i });
          assert.equal(r.status, 200, JSON.stringify(r.body));
          acked.push(r.body.seq);
          await sleep(5);
        }
      })();
      await until(() => onB.on(ch).length >= 50, 20000, '50 messages on B');
      await B.stop('SIGKILL', { expectExit: false });
      const last = onB.on(ch).at(-1).seq;
      await sleep(300);
      const onC = await WsClient.open(C, u.token);
      const s = await onC.subscribe(ch, { since: last });
      assert.equal(s.recovered, true, JSON.stringify(s));
      await sleep(500);
      stop = true;
      await pub;
      await until(() => onC.on(ch).length && onC.on(ch).at(-1).seq >= acked.at(-1), 20000, 'C caught up');
      const got = [...onB.on(ch).map((m) => m.seq), ...onC.on(ch).map((m) => m.seq)];
      for (const q of acked) assert.ok(got.includes(q), `acknowledged seq ${q} delivered`);
      const cs = onC.on(ch).map((m) => m.seq);
      for (let i = 1; i < cs.length; i++) assert.equal(cs[i], cs[i - 1] + 1, 'no gap on C');
      assert.equal(cs[0], last + 1);
      // B's member disappears from C's presence within 30 s
      const t0 = Date.now();
      await until(async () => (await api(C, 'GET', `/api/realtime/presence/${pch}`, { token: key })).body.count === 0,
        30000, 'B member dropped');
      assert.ok(Date.now() - t0 < 30000);
      await until(async () => (await channels(C)).cluster.instances.length === 2, 30000, 'B dropped from instances');
      onB.close();
      onC.close();
    } finally {
      await A.stop();
      await C.stop();
    }
  });

  test('PostgreSQL restarts during publishing: the bus recovers and nothing acknowledged is lost', { skip: !PG_SCRIPT && 'OSB_PG_SCRIPT not set' }, async () => {
    const tag = randomKey(3);
    const [A, C] = await Promise.all([startNode(`ra-${tag}`), startNode(`rc-${tag}`)]);
    try {
      await Promise.all([waitInstances(A, 2), waitInstances(C, 2)]);
      const u = await register(A, 'restart');
      const ch = `notify:${u.id}`;
      const onC = await WsClient.open(C, u.token);
      await onC.subscribe(ch);
      const mch = `market:r-${tag}`;
      await onC.subscribe(mch);
      const acked = [];
      let stop = false, failures = 0;
      const pub = (async () => {
        for (let i = 0; !stop; i++) {
          const r = await publish(A, ch, { i }).catch(() => ({ status: 0 }));
          if (r.status === 200) acked.push(r.body.seq);
          else failures++;
          await sleep(10);
        }
      })();
      await until(() => acked.length >= 20, 20000, 'publishing');
      const { execFileSync } = await import('node:child_process');
      execFileSync(PG_SCRIPT, ['stop'], { env: process.env });
      await sleep(1500);
      execFileSync(PG_SCRIPT, ['restart'], { env: process.env });
      const n0 = acked.length;
      await until(() => acked.length >= n0 + 20, 30000, 'publishing again after the restart');
      stop = true;
      await pub;
      // C's bus reconnected and caught up: every acknowledged seq arrived
      await until(async () => (await channels(C)).cluster.connected, 20000, 'C bus reconnected');
      await until(() => {
        const got = new Set(onC.on(ch).map((m) => m.seq));
        return acked.every((q) => got.has(q));
      }, 20000, 'every acknowledged message on C');
      const cs = onC.on(ch).map((m) => m.seq);
      for (let i = 1; i < cs.length; i++) assert.equal(cs[i], cs[i - 1] + 1, 'in order, no gap, no duplicate');
      assert.ok(failures >= 0);
      // non-durable traffic flows again, with the cluster seq
      const r = await publish(A, mch, { after: true });
      assert.equal(r.status, 200);
      const m = await onC.next((f) => f.type === 'message' && f.channel === mch, 10000);
      assert.equal(m.seq, r.body.seq);
      const mt = await (await C.fetch('/metrics')).text();
      assert.match(mt, /osb_bus_reconnects_total [1-9]/);
      onC.close();
    } finally {
      await A.stop();
      await C.stop();
    }
  });
});

describe('cluster: CLUSTER_BUS=local', { skip: !PG && 'OSB_TEST_PG_URL not set' }, () => {
  test('keeps single-instance behaviour: nothing crosses instances, seqs are per process', async () => {
    const tag = randomKey(3);
    const [A, B] = await Promise.all([startNode(`la-${tag}`, { CLUSTER_BUS: 'local' }),
      startNode(`lb-${tag}`, { CLUSTER_BUS: 'local' })]);
    try {
      const d = clusterOf(await details(A));
      assert.equal(d.status, 'pass');
      assert.match(d.output, /single instance/);
      assert.equal((await channels(A)).cluster, undefined);
      const ch = `market:l-${tag}`;
      const a = await WsClient.open(A);
      const b = await WsClient.open(B);
      const sa = await a.subscribe(ch);
      await b.subscribe(ch);
      assert.equal(sa.seq, 0);
      const r = await publish(A, ch, { only: 'a' });
      assert.equal(r.body.seq, 1);
      const m = await a.next((f) => f.type === 'message' && f.channel === ch);
      assert.equal(m.seq, 1);
      await sleep(500);
      assert.equal(b.on(ch).length, 0);
      a.close();
      b.close();
    } finally {
      await A.stop();
      await B.stop();
    }
  });
});

describe('cluster: WORKERS', { skip: !PG && 'OSB_TEST_PG_URL not set' }, () => {
  test('WORKERS=2 forks two instances on one port; they share channels; SIGTERM drains both', async () => {
    const tag = randomKey(3);
    const srv = await startNode(`w-${tag}`, { WORKERS: '2' });
    try {
      // new connections are spread over both workers (SO_REUSEPORT)
      const seen = new Set();
      await until(async () => {
        const r = await srv.fetch('/api/realtime/channels', { headers: { authorization: `Bearer ${key}`, connection: 'close' } });
        seen.add((await r.json()).cluster.node_id);
        return seen.size === 2;
      }, 20000, 'both workers answering');
      assert.deepEqual([...seen].sort(), [`w-${tag}-w1`, `w-${tag}-w2`]);
      await waitInstances(srv, 2);
      const ch = `market:w-${tag}`;
      const subs = await Promise.all(Array.from({ length: 8 }, () => WsClient.open(srv)));
      await Promise.all(subs.map((c) => c.subscribe(ch)));
      const r = await publish(srv, ch, { w: 1 });
      for (const c of subs) {
        const m = await c.next((f) => f.type === 'message' && f.channel === ch);
        assert.equal(m.seq, r.body.seq);
      }
      subs.forEach((c) => c.close());
    } finally {
      const r = await srv.stop();
      assert.equal(r.code, 0);
      assert.equal((srv.logs().match(/"msg":"stopped"/g) || []).length, 2, 'both workers drained and stopped');
      assert.match(srv.logs(), /all workers stopped/);
    }
  });

  test('WORKERS > 1 without the postgres bus is a configuration error', async () => {
    const r = await runBinary(['check-config'], { env: { WORKERS: '2' } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /WORKERS=2 needs CLUSTER_BUS=postgres/);
  });
});
