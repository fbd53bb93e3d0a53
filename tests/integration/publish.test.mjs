// The publication pipeline as a black box (docs/protocol.md "Publication
// pipeline"): durable seqs come from the database in the transaction that
// stores the message, transient messages carry no seq, and every JSON body
// and frame uses one number format. SQLite always, PostgreSQL when
// OSB_TEST_PG_URL is set.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, randomKey } from './lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A WebSocket client that keeps every frame as text and as JSON.
class Client {
  static async open(srv, token) {
    const c = new Client();
    c.raw = [];
    c.msgs = [];
    c.waiters = new Set();
    c.ws = new WebSocket(srv.wsUrl('/ws' + (token ? `?token=${encodeURIComponent(token)}` : '')));
    c.ws.on('message', (d) => {
      c.raw.push(d.toString());
      c.msgs.push(JSON.parse(d.toString()));
      for (const w of c.waiters) w();
    });
    c.ws.on('error', () => {});
    await new Promise((resolve, reject) => { c.ws.once('open', resolve); c.ws.once('error', reject); });
    await c.until((m) => m.type === 'welcome');
    return c;
  }
  // Wait for a frame matching pred (any position); returns its index.
  until(pred, ms = 10000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.msgs.findIndex(pred);
        if (i < 0) return false;
        this.waiters.delete(check);
        clearTimeout(t);
        resolve(i);
        return true;
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timeout; frames: ${JSON.stringify(this.msgs).slice(-1500)}`));
      }, ms);
      if (!check()) this.waiters.add(check);
    });
  }
  async request(o) {
    this.ws.send(JSON.stringify(o));
    return this.msgs[await this.until((m) => m.id === o.id)];
  }
  messages(channel) { return this.msgs.filter((m) => m.type === 'message' && m.channel === channel); }
  async count(channel, n, ms = 10000) {
    const end = Date.now() + ms;
    while (this.messages(channel).length < n) {
      if (Date.now() > end) throw new Error(`expected ${n} messages on ${channel}, got ${this.messages(channel).length}`);
      await sleep(20);
    }
    return this.messages(channel);
  }
  close() { this.ws.terminate(); }
}

let nextId = 1;
const sub = (c, channel, extra = {}) => c.request({ type: 'subscribe', channel, id: nextId++, ...extra });

async function publish(srv, key, channel, data, extra = {}) {
  const r = await srv.fetch('/api/realtime/publish', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data, ...extra }),
  });
  return { status: r.status, body: await r.json() };
}

async function publishOk(srv, key, channel, data, extra) {
  const r = await publish(srv, key, channel, data, extra);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.seq;
}

async function register(srv, tag) {
  const r = await srv.fetch('/api/auth/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `${tag}-${randomKey(6)}@example.test`, password: 'correct horse battery staple 42' }),
  });
  const b = await r.json();
  assert.equal(r.status, 201, JSON.stringify(b));
  return { id: b.user.id, token: b.access_token };
}

const baseEnv = (key) => ({ SERVICE_API_KEY: key, RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000' });

for (const backend of ['sqlite', 'postgresql']) {
  const pg = backend === 'postgresql';
  const skip = pg && !process.env.OSB_TEST_PG_URL && 'OSB_TEST_PG_URL not set';

  describe(`publication pipeline (${backend})`, { skip }, () => {
    let srv;
    const key = randomKey();
    const env = { ...baseEnv(key), JWT_SECRET: randomKey(32) };
    before(async () => { srv = await startServer({ pg, env, keepDir: true }); });
    after(async () => {
      const r = await srv.stop();
      rmSync(srv.dir, { recursive: true, force: true });
      assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
    });

    // Two instances on one database (the second shares the SQLite file or
    // the PostgreSQL database). The old hub numbered a durable channel in
    // each process: B, whose channel was loaded before A published, gave its
    // message seq 1 again, answered 200 {seq: 1}, and the store dropped it
    // (ON CONFLICT DO NOTHING). Now both seqs come from the user's row.
    test('two instances number one durable channel once; nothing is dropped', async () => {
      const u = await register(srv, 'pub-two');
      const ch = `notify:${u.id}`;
      const b = await startServer({ pg, env: { ...env, SQLITE_PATH: srv.env.SQLITE_PATH } });
      try {
        const cb = await Client.open(b, key);
        assert.equal((await sub(cb, ch)).seq, 0);            // B has loaded the channel at 0
        assert.equal(await publishOk(srv, key, ch, { from: 'a' }), 1);
        assert.equal(await publishOk(b, key, ch, { from: 'b' }), 2);
        assert.equal(await publishOk(srv, key, ch, { from: 'a2' }), 3);
        if (pg) {
          // The postgres bus (CLUSTER_BUS defaults to it with DATABASE_URL)
          // brings A's messages to B too: all three live, with the database's seqs.
          const live = await cb.count(ch, 3);
          assert.deepEqual(live.map((x) => [x.seq, x.data.from]), [[1, 'a'], [2, 'b'], [3, 'a2']]);
        } else {
          const [m] = await cb.count(ch, 1);                 // B delivers its own live, with the database's seq
          assert.equal(m.seq, 2);
          assert.equal(m.data.from, 'b');
        }
        cb.close();
        const c = await Client.open(srv, key);
        const s = await sub(c, ch, { since: 0 });
        assert.equal(s.recovered, true, JSON.stringify(s));
        const got = await c.count(ch, 3);
        assert.deepEqual(got.map((x) => [x.seq, x.data.from]), [[1, 'a'], [2, 'b'], [3, 'a2']]);
        c.close();
      } finally {
        const r = await b.stop();
        assert.equal(r.code, 0, 'clean exit of B\n' + b.logs().slice(-3000));
      }
    });

    test('concurrent publishes on a durable channel get distinct consecutive seqs, live in order and on resume', async () => {
      const u = await register(srv, 'pub-conc');
      const ch = `notify:${u.id}`;
      const live = await Client.open(srv, u.token);
      await sub(live, ch);
      const n = 30;
      const answers = await Promise.all(Array.from({ length: n }, (_, i) => publish(srv, key, ch, { i })));
      for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body));
      const seqs = answers.map((a) => a.body.seq);
      assert.deepEqual([...seqs].sort((x, y) => x - y), Array.from({ length: n }, (_, i) => i + 1));
      const got = await live.count(ch, n);
      assert.deepEqual(got.map((m) => m.seq), Array.from({ length: n }, (_, i) => i + 1), 'live, in seq order');
      for (const m of got) assert.equal(m.seq, seqs[m.data.i], 'each message carries the seq its publisher got');
      live.close();
      const r = await Client.open(srv, u.token);
      const s = await sub(r, ch, { since: 0 });
      assert.equal(s.recovered, true);
      assert.equal(s.missed, n);
      const replay = await r.count(ch, n);
      assert.deepEqual(replay.map((m) => [m.seq, m.data.i]), got.map((m) => [m.seq, m.data.i]));
      r.close();
    });

    test('a notify channel of a user that does not exist is 404, nothing is stored', async () => {
      const r = await publish(srv, key, 'notify:no-such-user', { x: 1 });
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'not_found');
    });

    test('transient messages: no seq, live subscribers only, never replayed, the seq does not move', async () => {
      const u = await register(srv, 'pub-transient');
      const ch = `notify:${u.id}`;
      // a fresh market channel: with the postgres bus its seq lives in the database
      const mt = `market:transient-${randomKey(3)}`;
      const c = await Client.open(srv, u.token);
      await sub(c, ch);
      await sub(c, mt);
      for (const channel of [ch, mt]) {
        const r = await publish(srv, key, channel, { type: 'agent.delta', text: 'he' }, { transient: true });
        assert.equal(r.status, 200, JSON.stringify(r.body));
        assert.equal(r.body.seq, null);
        assert.equal(r.body.transient, true);
      }
      const [t1] = await c.count(ch, 1);
      const [t2] = await c.count(mt, 1);
      for (const t of [t1, t2]) {
        assert.equal('seq' in t, false, JSON.stringify(t));
        assert.equal(t.data.text, 'he');
        assert.ok(t.ts > 1600000000000);
      }
      assert.equal(await publishOk(srv, key, ch, { n: 1 }), 1);
      assert.equal(await publishOk(srv, key, mt, { n: 1 }), 1);
      const bad = await publish(srv, key, ch, { x: 1 }, { transient: 'yes' });
      assert.equal(bad.status, 400);
      c.close();
      const r = await Client.open(srv, u.token);
      for (const channel of [ch, mt]) {
        const s = await sub(r, channel, { since: 0 });
        assert.equal(s.recovered, true);
        assert.equal(s.missed, 1);
      }
      await sleep(200);
      assert.deepEqual(r.messages(ch).map((m) => [m.seq, m.data.n]), [[1, 1]]);
      assert.deepEqual(r.messages(mt).map((m) => [m.seq, m.data.n]), [[1, 1]]);
      r.close();
    });

    // One serializer: 0.1 was sent as 0.10000000000000001 over WebSocket and
    // as 0.1 over REST.
    test('numbers are written the same way in REST bodies and WebSocket frames', async () => {
      const u = await register(srv, 'pub-num');
      const ch = `notify:${u.id}`;
      const c = await Client.open(srv, u.token);
      await sub(c, ch);
      await sub(c, 'market:numbers');
      // a REST body's float, as the server writes it
      const rest = await (await srv.fetch('/api/market/procedures/1')).text();
      const m = rest.match(/"avg_price_usd":(-?[0-9.eE+-]+)/) || rest.match(/"growth_pct":(-?[0-9.eE+-]+)/);
      assert.ok(m, rest.slice(0, 300));
      const restText = m[1];
      const data = { a: 0.1, b: 0.3, c: Number(restText) };
      await publishOk(srv, key, 'market:numbers', data);
      await publishOk(srv, key, ch, data);
      await c.count('market:numbers', 1);
      await c.count(ch, 1);
      const want = `"data":{"a":0.1,"b":0.3,"c":${restText}}`;
      const frames = c.raw.filter((f) => f.includes('"type":"message"'));
      assert.equal(frames.length, 2);
      for (const f of frames) assert.ok(f.includes(want), `${f} should contain ${want}`);
      c.close();
      // replayed from the database: the same text
      const r = await Client.open(srv, u.token);
      await sub(r, ch, { since: 0 });
      await r.count(ch, 1);
      assert.ok(r.raw.find((f) => f.includes('"type":"message"')).includes(want), r.raw.join('\n'));
      r.close();
    });
  });
}
