// The realtime hub as a black box: real `ws` clients against the real
// binary. Subscribe/publish/receive, permissions, resume from memory and from
// the database, slow consumers, frame limits, bad input, 1,000 connections.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, randomKey } from './lib/server.mjs';
import { rawWs, frame, closeCode } from './lib/rawws.mjs';
import { checkWsFrame } from './lib/contract.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A client that keeps every frame and lets a test wait for the next one
// matching a predicate (messages are consumed in order).
class Client {
  constructor(url, opts) {
    this.ws = new WebSocket(url, opts);
    this.msgs = [];
    this.pos = 0;
    this.waiters = new Set();
    this.ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      // Every frame must match openapi/ws-protocol.schema.json; the first
      // mismatch fails the next wait.
      try { checkWsFrame(m); } catch (e) { this.contractError ??= e; }
      this.msgs.push(m);
      for (const w of this.waiters) w();
    });
    this.closed = new Promise((resolve) => this.ws.on('close', (code, reason) => {
      resolve({ code, reason: reason.toString() });
      for (const w of this.waiters) w();
    }));
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
  }
  static async open(srv, { token, headers, query = '' } = {}) {
    const url = srv.wsUrl('/ws' + (query || (token && !headers ? `?token=${encodeURIComponent(token)}` : '')));
    const c = new Client(url, headers ? { headers } : undefined);
    await c.opened;
    c.welcome = await c.next((m) => m.type === 'welcome');
    return c;
  }
  send(o) { this.ws.send(typeof o === 'string' ? o : JSON.stringify(o)); }
  // The next frame after the cursor that matches pred (frames before it are skipped).
  next(pred = () => true, ms = 5000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.contractError) {
          this.waiters.delete(check);
          clearTimeout(t);
          reject(this.contractError);
          return true;
        }
        for (let i = this.pos; i < this.msgs.length; i++) {
          if (pred(this.msgs[i])) {
            this.pos = i + 1;
            this.waiters.delete(check);
            clearTimeout(t);
            resolve(this.msgs[i]);
            return true;
          }
        }
        return false;
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timeout; frames: ${JSON.stringify(this.msgs.slice(this.pos)).slice(0, 1500)}`));
      }, ms);
      if (!check()) this.waiters.add(check);
    });
  }
  // The reply to a request: the next frame carrying that id.
  async request(o, ms) {
    this.send(o);
    return this.next((m) => m.id === o.id, ms);
  }
  // Exactly n channel messages from the cursor on (any other frame fails).
  async messages(n, ms = 10000) {
    const out = [];
    while (out.length < n) {
      const m = await this.next(() => true, ms);
      assert.equal(m.type, 'message', `expected a message, got ${JSON.stringify(m)}`);
      out.push(m);
    }
    return out;
  }
  // Nothing more arrives within ms.
  async quiet(ms = 200) {
    await sleep(ms);
    assert.deepEqual(this.msgs.slice(this.pos), [], 'no further frames expected');
  }
  close() { this.ws.terminate(); }
}

let nextId = 1;
const sub = (c, channel, extra = {}) => c.request({ type: 'subscribe', channel, id: nextId++, ...extra });

async function publish(srv, key, channel, data) {
  const r = await srv.fetch('/api/realtime/publish', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
  return { status: r.status, body: await r.json() };
}

async function publishOk(srv, key, channel, data) {
  const r = await publish(srv, key, channel, data);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.seq;
}

// A signed-in user (the accounts API), or null when it is not available.
async function register(srv, tag) {
  const email = `${tag}-${randomKey(4)}@example.test`;
  const r = await srv.fetch('/api/auth/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password: 'correct horse battery staple 42', display_name: tag }),
  });
  if (r.status === 404) return null;
  const b = await r.json();
  assert.equal(r.status, 201, JSON.stringify(b));
  return { id: b.user.id, token: b.access_token };
}

const baseEnv = (key) => ({
  SERVICE_API_KEY: key,
  RATE_LIMIT_RPS: '100000',
  RATE_LIMIT_BURST: '100000',
});

describe('realtime: publish and receive', () => {
  let srv;
  const key = randomKey();
  before(async () => { srv = await startServer({ env: baseEnv(key) }); });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('subscribe, REST publish, every subscriber receives it with seq and ts', async () => {
    const a = await Client.open(srv);
    const b = await Client.open(srv);
    assert.equal(a.welcome.user, null);
    assert.equal(typeof a.welcome.conn_id, 'number');
    const s = await a.request({ type: 'subscribe', channel: 'market:all', id: 1 });
    assert.equal(s.type, 'subscribed');
    assert.equal(s.channel, 'market:all');
    assert.equal(s.recovered, false);
    await sub(b, 'market:all');
    const base = s.seq;
    const t0 = Date.now();
    const seq = await publishOk(srv, key, 'market:all', { procedure: 'implant', price: 1234.5, t: 1 });
    assert.equal(seq, base + 1);
    for (const c of [a, b]) {
      const [m] = await c.messages(1);
      assert.deepEqual(m.data, { procedure: 'implant', price: 1234.5, t: 1 });
      assert.equal(m.channel, 'market:all');
      assert.equal(m.seq, seq);
      assert.ok(m.ts >= t0 - 1000 && m.ts <= Date.now() + 1000, `ts ${m.ts}`);
    }
    a.close();
    b.close();
  });

  test('seq increases by one per message, in order, on each channel', async () => {
    const c = await Client.open(srv);
    const s = await sub(c, 'market:ortho');
    const seqs = [];
    for (let i = 0; i < 20; i++) seqs.push(await publishOk(srv, key, 'market:ortho', i));
    assert.deepEqual(seqs, Array.from({ length: 20 }, (_, i) => s.seq + 1 + i));
    const got = await c.messages(20);
    assert.deepEqual(got.map((m) => m.seq), seqs);
    assert.deepEqual(got.map((m) => m.data), Array.from({ length: 20 }, (_, i) => i));
    c.close();
  });

  test('unsubscribe stops delivery', async () => {
    const c = await Client.open(srv);
    await sub(c, 'market:perio');
    const u = await c.request({ type: 'unsubscribe', channel: 'market:perio', id: 'u1' });
    assert.equal(u.type, 'unsubscribed');
    await publishOk(srv, key, 'market:perio', 1);
    await c.quiet();
    c.close();
  });

  test('REST publish needs the service key or an admin, a known channel and data', async () => {
    let r = await publish(srv, 'wrong-key-0123456789', 'market:all', 1);
    assert.equal(r.status, 401);
    r = await srv.fetch('/api/realtime/publish', { method: 'POST', body: '{"channel":"market:all","data":1}' });
    assert.equal(r.status, 401);
    r = await publish(srv, key, 'nope:x', 1);
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'bad_request');
    r = await srv.fetch('/api/realtime/publish', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'market:all' }),
    });
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.code, 'bad_request');
  });

  test('a client publish on market is forbidden for anonymous, acked for the service key', async () => {
    const anon = await Client.open(srv);
    const e = await anon.request({ type: 'publish', channel: 'market:all', data: 1, id: 'p' });
    assert.equal(e.type, 'error');
    assert.equal(e.code, 'forbidden');
    const svc = await Client.open(srv, { token: key });
    assert.equal(svc.welcome.user.role, 'service');
    const s = await sub(svc, 'market:svc');
    const a = await svc.request({ type: 'publish', channel: 'market:svc', data: { x: 1 }, id: 'q' });
    const [m] = svc.msgs.filter((f) => f.type === 'message');
    assert.equal(a.type, 'ack');
    assert.equal(a.seq, s.seq + 1);
    assert.equal(m.seq, a.seq);
    anon.close();
    svc.close();
  });

  test('GET /api/realtime/channels and presence', async () => {
    const a = await Client.open(srv);
    await sub(a, 'market:presence-test');
    await publishOk(srv, key, 'market:presence-test', 'x');
    let r = await srv.fetch('/api/realtime/channels', { headers: { authorization: `Bearer ${key}` } });
    assert.equal(r.status, 200);
    const body = await r.json();
    const ch = body.channels.find((c) => c.channel === 'market:presence-test');
    assert.ok(ch, JSON.stringify(body));
    assert.equal(ch.subscribers, 1);
    assert.equal(ch.history, 1);
    assert.ok(ch.seq >= 1);
    assert.ok(body.connections >= 1);
    r = await srv.fetch('/api/realtime/channels');
    assert.equal(r.status, 401);
    r = await srv.fetch('/api/realtime/presence/market:presence-test', { headers: { authorization: `Bearer ${key}` } });
    assert.equal(r.status, 200);
    const p = await r.json();
    assert.equal(p.anonymous, 1);
    assert.equal(p.count, 0);
    r = await srv.fetch('/api/realtime/presence/nope:x', { headers: { authorization: `Bearer ${key}` } });
    assert.equal(r.status, 404);
    a.close();
  });
});

describe('realtime: permissions and bad input', () => {
  let srv;
  const key = randomKey();
  before(async () => { srv = await startServer({ env: baseEnv(key) }); });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('forbidden and unknown channels answer error forbidden; the connection stays', async () => {
    const c = await Client.open(srv);
    for (const channel of ['dashboard:metrics', 'agents:status', 'notify:someone', 'chat:abc', 'secret:x', 'market:bad name']) {
      const e = await c.request({ type: 'subscribe', channel, id: `s-${channel}` });
      assert.equal(e.type, 'error', channel);
      assert.equal(e.code, 'forbidden', channel);
    }
    const p = await c.request({ type: 'ping', id: 'still' });
    assert.equal(p.type, 'pong');
    assert.equal(c.ws.readyState, WebSocket.OPEN);
    c.close();
  });

  test('bad JSON and unknown types answer error; the connection stays', async () => {
    const c = await Client.open(srv);
    c.send('{not json');
    const e1 = await c.next((m) => m.type === 'error');
    assert.equal(e1.code, 'bad_json');
    const e2 = await c.request({ type: 'dance', id: 7 });
    assert.equal(e2.code, 'unknown_type');
    const e3 = await c.request({ type: 'subscribe', id: 8 });
    assert.equal(e3.code, 'bad_request');
    const p = await c.request({ type: 'ping', id: 9 });
    assert.equal(p.type, 'pong');
    c.close();
  });

  test('bad_json reports where and what went wrong, never the text that was sent', async () => {
    const c = await Client.open(srv);
    c.send('{"type":"auth","token":"hunter2-SecretToken');
    const e1 = await c.next((m) => m.type === 'error');
    assert.equal(e1.code, 'bad_json');
    assert.ok(!/hunter2|Secret|near/.test(e1.message), e1.message);
    assert.match(e1.message, /line 1, column \d+/);
    assert.match(e1.message, /end of input/);
    c.send('{"type":"ping","password":correct-horse}');
    const e2 = await c.next((m) => m.type === 'error');
    assert.equal(e2.code, 'bad_json');
    assert.ok(!/correct|horse|near/.test(e2.message), e2.message);
    assert.match(e2.message, /syntax/);
    c.close();
  });

  test('an oversized frame closes the connection with 1009', async () => {
    const c = await Client.open(srv);
    c.send('x'.repeat(70000));   // WS_MAX_MESSAGE_BYTES is 65536
    const { code } = await c.closed;
    assert.equal(code, 1009);
  });

  test('signed-in users: own notify channel allowed, another user\'s denied, chat denied without ownership', async (t) => {
    const u1 = await register(srv, 'rt1');
    if (!u1) return t.skip('accounts API not available');
    const u2 = await register(srv, 'rt2');
    const c = await Client.open(srv, { token: u1.token });
    assert.equal(c.welcome.user.id, u1.id);
    const ok = await sub(c, `notify:${u1.id}`);
    assert.equal(ok.type, 'subscribed');
    const denied = await sub(c, `notify:${u2.id}`);
    assert.equal(denied.type, 'error');
    assert.equal(denied.code, 'forbidden');
    const st = await sub(c, 'agents:status');
    assert.equal(st.type, 'subscribed');
    const dash = await sub(c, 'dashboard:metrics');
    assert.equal(dash.code, 'forbidden');
    const chat = await sub(c, 'chat:00000000-0000-4000-8000-000000000000');
    assert.equal(chat.code, 'forbidden');
    // the notification reaches its user
    const seq = await publishOk(srv, key, `notify:${u1.id}`, { title: 'hello' });
    const [m] = await c.messages(1);
    assert.equal(m.seq, seq);
    assert.deepEqual(m.data, { title: 'hello' });
    c.close();
  });

  test('the auth message signs a connection in; a bad token is unauthorized', async (t) => {
    const u = await register(srv, 'rt3');
    if (!u) return t.skip('accounts API not available');
    const c = await Client.open(srv);
    const bad = await c.request({ type: 'auth', token: 'not-a-token', id: 1 });
    assert.equal(bad.code, 'unauthorized');
    const a = await c.request({ type: 'auth', token: u.token, id: 2 });
    assert.equal(a.type, 'authenticated');
    assert.equal(a.user.id, u.id);
    const s = await sub(c, `notify:${u.id}`);
    assert.equal(s.type, 'subscribed');
    c.close();
  });

  test('handshake token by Authorization header and by cookie', async (t) => {
    const u = await register(srv, 'rt4');
    if (!u) return t.skip('accounts API not available');
    const h = await Client.open(srv, { headers: { authorization: `Bearer ${u.token}` } });
    assert.equal(h.welcome.user.id, u.id);
    const k = await Client.open(srv, { headers: { cookie: `osb_access=${u.token}` } });
    assert.equal(k.welcome.user.id, u.id);
    const bad = await Client.open(srv, { query: '?token=garbage' });
    assert.equal(bad.welcome.user, null);
    const e = await bad.next((m) => m.type === 'error');
    assert.equal(e.code, 'unauthorized');
    h.close();
    k.close();
    bad.close();
  });
});

describe('realtime: presence privacy', () => {
  let srv;
  const key = randomKey();
  before(async () => { srv = await startServer({ env: baseEnv(key) }); });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('on a public channel, anonymous and ordinary readers get counts, not user ids; admins and the service key get members', async (t) => {
    const u1 = await register(srv, 'pres1');
    if (!u1) return t.skip('accounts API not available');
    const u2 = await register(srv, 'pres2');
    const member = await Client.open(srv, { token: u1.token });
    await sub(member, 'market:who');
    const anon = await Client.open(srv);
    await sub(anon, 'market:who');
    const pa = await anon.request({ type: 'presence', channel: 'market:who', id: 'pa' });
    assert.equal(pa.type, 'presence');
    assert.deepEqual(pa.members, []);
    assert.equal(pa.count, 1);
    assert.equal(pa.anonymous, 1);
    assert.ok(!JSON.stringify(pa).includes(u1.id), JSON.stringify(pa));
    const other = await Client.open(srv, { token: u2.token });
    const po = await other.request({ type: 'presence', channel: 'market:who', id: 'po' });
    assert.deepEqual(po.members, []);
    assert.equal(po.count, 1);
    let r = await srv.fetch('/api/realtime/presence/market:who', { headers: { authorization: `Bearer ${u2.token}` } });
    assert.equal(r.status, 200);
    const pr = await r.json();
    assert.deepEqual(pr.members, []);
    assert.equal(pr.count, 1);
    assert.ok(!JSON.stringify(pr).includes(u1.id));
    // the service key sees who is there
    const svc = await Client.open(srv, { token: key });
    const ps = await svc.request({ type: 'presence', channel: 'market:who', id: 'ps' });
    assert.ok(ps.members.some((m) => m.user_id === u1.id), JSON.stringify(ps));
    r = await srv.fetch('/api/realtime/presence/market:who', { headers: { authorization: `Bearer ${key}` } });
    assert.ok((await r.json()).members.some((m) => m.user_id === u1.id));
    for (const c of [member, anon, other, svc]) c.close();
  });
});

describe('realtime: cross-origin handshakes', () => {
  let srv;
  const key = randomKey();
  before(async () => { srv = await startServer({ env: { ...baseEnv(key), CORS_ORIGINS: 'https://crm.example.test' } }); });
  after(async () => { assert.equal((await srv.stop()).code, 0, srv.logs().slice(-2000)); });

  test('the SSO cookie signs a socket in only from an allowed or the same origin', async (t) => {
    const u = await register(srv, 'rt-origin');
    if (!u) return t.skip('accounts API not available');
    const cookie = `osb_access=${u.token}`;
    const evil = await Client.open(srv, { headers: { cookie, origin: 'https://evil.example.test' } });
    assert.equal(evil.welcome.user, null, 'a foreign page must not ride on the cookie');
    const listed = await Client.open(srv, { headers: { cookie, origin: 'https://crm.example.test' } });
    assert.equal(listed.welcome.user.id, u.id);
    const same = await Client.open(srv, { headers: { cookie, origin: `http://127.0.0.1:${srv.port}` } });
    assert.equal(same.welcome.user.id, u.id);
    // an explicit bearer token is no ambient credential: any origin may present it
    const bearer = await Client.open(srv, { headers: { authorization: `Bearer ${u.token}`, origin: 'https://evil.example.test' } });
    assert.equal(bearer.welcome.user.id, u.id);
    for (const c of [evil, listed, same, bearer]) c.close();
  });
});

describe('realtime: resume', () => {
  let srv;
  const key = randomKey();
  const dirs = [];
  before(async () => {
    srv = await startServer({ env: baseEnv(key), keepDir: true });
    dirs.push(srv.dir);
  });
  after(async () => {
    const r = await srv.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('since from memory replays exactly the missed messages, then live ones', async () => {
    const first = [];
    for (let i = 0; i < 5; i++) first.push(await publishOk(srv, key, 'market:resume', { i }));
    const since = first[1];
    const c = await Client.open(srv);
    const s = await sub(c, 'market:resume', { since });
    assert.equal(s.recovered, true);
    assert.equal(s.missed, 3);
    assert.equal(s.seq, first[4]);
    const got = await c.messages(3);
    assert.deepEqual(got.map((m) => m.seq), first.slice(2));
    assert.deepEqual(got.map((m) => m.data.i), [2, 3, 4]);
    const live = await publishOk(srv, key, 'market:resume', { i: 5 });
    const [m] = await c.messages(1);
    assert.equal(m.seq, live);
    await c.quiet();
    c.close();
  });

  test('recovered:false beyond the in-memory history, and for a since from the future', async () => {
    // agents:status keeps 128 messages in memory; the service key may read it
    for (let i = 0; i < 140; i++) await publishOk(srv, key, 'agents:status', { i });
    const c = await Client.open(srv, { token: key });
    const s = await sub(c, 'agents:status', { since: 2 });
    assert.equal(s.recovered, false);
    assert.equal(s.missed, s.seq - 2);
    const f = await sub(c, 'market:future', { since: 1000 });
    assert.equal(f.recovered, false);
    await c.quiet();
    c.close();
  });

  test('a durable channel replays from the database what memory no longer holds', async (t) => {
    // notify:* keeps 64 messages in memory; the rest come from channel_messages.
    // A notify: channel takes its seqs from its user's row, so the user must exist.
    const u = await register(srv, 'rt-durable');
    if (!u) return t.skip('accounts API not available');
    const ch = `notify:${u.id}`;
    const seqs = [];
    for (let i = 0; i < 100; i++) seqs.push(await publishOk(srv, key, ch, { n: i }));
    const c = await Client.open(srv, { token: key });
    const s = await sub(c, ch, { since: seqs[9] });
    assert.equal(s.recovered, true, JSON.stringify(s));
    assert.equal(s.missed, 90);
    const got = await c.messages(90);
    assert.deepEqual(got.map((m) => m.seq), seqs.slice(10));
    assert.deepEqual(got.map((m) => m.data.n), Array.from({ length: 90 }, (_, i) => i + 10));
    await c.quiet();
    c.close();
  });

  test('after a restart a durable channel continues its seq and resumes from the database', async (t) => {
    const u = await register(srv, 'rt-restart');
    if (!u) return t.skip('accounts API not available');
    const ch = `notify:${u.id}`;
    const before = [];
    for (let i = 0; i < 5; i++) before.push(await publishOk(srv, key, ch, { n: i }));
    await srv.stop();
    srv = await startServer({ env: { ...baseEnv(key), SQLITE_PATH: srv.env.SQLITE_PATH }, keepDir: true });
    dirs.push(srv.dir);
    const next = await publishOk(srv, key, ch, { n: 5 });
    assert.equal(next, before[4] + 1);
    const c = await Client.open(srv, { token: key });
    const s = await sub(c, ch, { since: before[1] });
    assert.equal(s.recovered, true, JSON.stringify(s));
    const got = await c.messages(4);
    assert.deepEqual(got.map((m) => m.data.n), [2, 3, 4, 5]);
    // an ephemeral channel starts over: its old seq is from the future now
    const e = await sub(c, 'market:resume', { since: 3 });
    assert.equal(e.recovered, false);
    c.close();
  });
});

describe('realtime: durable channels on PostgreSQL', { skip: !process.env.OSB_TEST_PG_URL && 'OSB_TEST_PG_URL not set' }, () => {
  let srv;
  const key = randomKey();
  const env = { ...baseEnv(key), JWT_SECRET: randomKey(32) };
  before(async () => { srv = await startServer({ pg: true, env }); });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('resume from the database, also after a restart', async (t) => {
    const u = await register(srv, 'rt-pg');
    if (!u) return t.skip('accounts API not available');
    const ch = `notify:${u.id}`;
    const seqs = [];
    for (let i = 0; i < 80; i++) seqs.push(await publishOk(srv, key, ch, { n: i, nested: { a: [1, 2, 'x'] } }));
    assert.deepEqual(seqs, Array.from({ length: 80 }, (_, i) => i + 1));
    let c = await Client.open(srv, { token: key });
    let s = await sub(c, ch, { since: 3 });
    assert.equal(s.recovered, true, JSON.stringify(s));
    let got = await c.messages(77);
    assert.deepEqual(got.map((m) => m.seq), seqs.slice(3));
    assert.deepEqual(got[0].data, { n: 3, nested: { a: [1, 2, 'x'] } });
    c.close();
    await srv.stop();
    srv = await startServer({ pg: true, env });
    assert.equal(await publishOk(srv, key, ch, { n: 80, nested: { a: [] } }), 81);
    c = await Client.open(srv, { token: key });
    s = await sub(c, ch, { since: 70 });
    assert.equal(s.recovered, true, JSON.stringify(s));
    assert.equal(s.missed, 11);
    got = await c.messages(11);
    assert.deepEqual(got.map((m) => m.data.n), Array.from({ length: 11 }, (_, i) => 70 + i));
    await c.quiet();
    c.close();
  });
});

describe('realtime: slow consumers', () => {
  let srv;
  const key = randomKey();
  before(async () => {
    srv = await startServer({ env: { ...baseEnv(key), WS_SEND_BUFFER_BYTES: '262144' } });
  });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('a client that stops reading is closed with 1013; a healthy one gets every message', async () => {
    const healthy = await Client.open(srv);
    const s = await sub(healthy, 'market:firehose');
    // the slow client: a raw socket that subscribes, then stops reading
    const slow = await rawWs(srv.port);
    slow.send(frame(0x1, JSON.stringify({ type: 'subscribe', channel: 'market:firehose', id: 1 })));
    await slow.until((fs) => fs.some((f) => f.opcode === 0x1 && f.payload.toString().includes('subscribed')));
    slow.sock.pause();
    // ~10 MB: more than the kernel's socket buffers (a few MB on loopback)
    // plus the 256 KiB send buffer; bursts of 80 KB fit a reading client's buffer
    const blob = 'x'.repeat(16 * 1024);
    const N = 600;
    const seqs = [];
    for (let i = 0; i < N; i += 5) {
      const batch = [];
      for (let k = i; k < i + 5; k++) batch.push(publishOk(srv, key, 'market:firehose', { k, blob }));
      seqs.push(...(await Promise.all(batch)));
    }
    const got = await healthy.messages(N, 30000);
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: N }, (_, i) => s.seq + 1 + i));
    assert.deepEqual([...new Set(got.map((m) => m.data.k))].length, N);
    const metrics = await (await srv.fetch('/metrics')).text();
    assert.match(metrics, /osb_realtime_slow_consumer_closes_total [1-9]/);
    // reading again, the slow client finds the close frame after what it had received
    slow.sock.resume();
    const f = await slow.closeFrame(10000);
    assert.equal(closeCode(f), 1013);
    slow.end();
    healthy.close();
  });
});

describe('realtime: limits', () => {
  test('sustained message-rate abuse: rate_limited errors, then close 1008', async () => {
    const srv = await startServer({ env: { RATE_LIMIT_RPS: '5', RATE_LIMIT_BURST: '10' } });
    try {
      const c = await Client.open(srv);
      for (let i = 0; i < 40; i++) c.send({ type: 'ping', id: i });
      const { code } = await c.closed;
      assert.equal(code, 1008);
      const pongs = c.msgs.filter((m) => m.type === 'pong').length;
      const limited = c.msgs.filter((m) => m.type === 'error' && m.code === 'rate_limited').length;
      assert.ok(pongs >= 10 && pongs < 40, `pongs ${pongs}`);
      assert.ok(limited >= 1, `rate_limited ${limited}`);
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

  test('WS_MAX_CONNECTIONS: the upgrade beyond it is refused with 503', async () => {
    const srv = await startServer({ env: { WS_MAX_CONNECTIONS: '2' } });
    try {
      const a = await Client.open(srv);
      const b = await Client.open(srv);
      await assert.rejects(Client.open(srv), /503/);
      a.close();
      b.close();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

  test('at most 100 subscriptions per connection', async () => {
    const srv = await startServer({ env: baseEnv(randomKey()) });   // no message-rate limit in the way
    try {
      const c = await Client.open(srv);
      for (let i = 0; i < 100; i++) c.send({ type: 'subscribe', channel: `market:c${i}`, id: i });
      await c.next((m) => m.id === 99 && m.type === 'subscribed');
      const e = await c.request({ type: 'subscribe', channel: 'market:one-too-many', id: 'x' });
      assert.equal(e.code, 'too_many_subscriptions');
      c.close();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

  test('1,000 concurrent connections all receive every message', async () => {
    const key = randomKey();
    const srv = await startServer({ env: baseEnv(key) });
    try {
      const clients = [];
      for (let i = 0; i < 1000; i += 100) {
        const batch = [];
        for (let k = 0; k < 100; k++) batch.push(Client.open(srv));
        clients.push(...(await Promise.all(batch)));
      }
      await Promise.all(clients.map((c, i) => c.request({ type: 'subscribe', channel: 'market:all', id: i }, 20000)));
      const seqs = [];
      for (let i = 0; i < 5; i++) seqs.push(await publishOk(srv, key, 'market:all', { i }));
      await Promise.all(clients.map(async (c) => {
        const got = await c.messages(5, 20000);
        assert.deepEqual(got.map((m) => m.seq), seqs);
      }));
      const r = await srv.fetch('/api/realtime/channels', { headers: { authorization: `Bearer ${key}` } });
      const all = (await r.json()).channels.find((c) => c.channel === 'market:all');
      assert.equal(all.subscribers, 1000);
      for (const c of clients) c.close();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});
