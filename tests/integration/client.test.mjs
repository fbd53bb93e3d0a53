// The JavaScript client (clients/js/client.js, served as /client.js) in Node
// against the real server: resume across a server kill and restart with every
// stored notification delivered exactly once and in order; a token that
// expires while connected refreshed through getToken without losing a
// message; publish/presence promises; onReset; capped jittered backoff.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startServer, randomKey } from './lib/server.mjs';
import { createUser, login, mintToken } from './lib/admin.mjs';
import { connect } from '../../clients/js/client.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function until(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (pred()) return; await sleep(50); }
  assert.fail(`timed out: ${what}`);
}

async function register(srv) {
  const email = `c-${randomKey(6)}@example.test`;
  const r = await srv.fetch('/api/auth/register', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: `pw-${randomKey(8)}-long` }),
  });
  assert.equal(r.status, 201);
  return (await r.json()).user;
}

// POST /api/realtime/publish with the service key; null when the server is down.
async function publish(srv, key, channel, data) {
  try {
    const r = await fetch(`http://127.0.0.1:${srv.port}/api/realtime/publish`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
      body: JSON.stringify({ channel, data }),
    });
    if (r.status !== 200) return null;
    return (await r.json()).seq;
  } catch {
    return null;
  }
}

describe('client.js against the real server', () => {
  test('kill -9 and restart mid-stream: every stored notification exactly once, in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'osb-client-'));
    const port = await freePort();
    const env = { PORT: String(port), SQLITE_PATH: join(dir, 'osb.db'), JWT_SECRET: randomKey(32), SERVICE_API_KEY: randomKey(24) };
    let srv = await startServer({ env, keepDir: true });
    let rt;
    try {
      const user = await register(srv);
      const getToken = async () => mintToken(env.JWT_SECRET, { sub: user.id, email: user.email });
      rt = connect(`ws://127.0.0.1:${port}/ws`, { getToken, WebSocket, minDelayMs: 100, maxDelayMs: 800 });
      const states = [];
      rt.on('state', (s) => states.push(s));
      const got = [];
      rt.subscribe(`notify:${user.id}`, (data, meta) => got.push({ n: data.n, seq: meta.seq }), { since: 0 });
      await until(() => rt.state === 'open', 10000, 'first open');

      const acked = [];
      let n = 0;
      for (; n < 25; n++) { const seq = await publish(srv, env.SERVICE_API_KEY, `notify:${user.id}`, { n }); assert.ok(seq); acked.push(seq); }
      await until(() => got.length >= 10, 10000, 'some delivered live');
      await srv.stop('SIGKILL', { expectExit: false });
      // While it is down: nothing can be published. Restart on the same port and database.
      srv = await startServer({ env, keepDir: true });
      for (; n < 50; n++) { const seq = await publish(srv, env.SERVICE_API_KEY, `notify:${user.id}`, { n }); assert.ok(seq, `publish ${n} after the restart`); acked.push(seq); }
      const last = acked[acked.length - 1];
      await until(() => got.length && got[got.length - 1].seq >= last, 20000, 'all delivered after the reconnect');
      await sleep(300);   // anything extra (a duplicate) would arrive now

      const seqs = got.map((g) => g.seq);
      assert.deepEqual(seqs, Array.from({ length: last }, (_, i) => i + 1), 'every seq 1..last exactly once, in order');
      for (const s of acked) assert.ok(seqs.includes(s));
      assert.deepEqual(got.slice(-25).map((g) => g.n), Array.from({ length: 25 }, (_, i) => 25 + i));
      assert.ok(states.filter((s) => s === 'open').length >= 2, `reconnected (${states.join(',')})`);
      assert.ok(states.includes('closed'));
    } finally {
      rt?.close();
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a token that expires while connected: getToken on unauthorized, no message lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'osb-client-'));
    const port = await freePort();
    const env = { PORT: String(port), SQLITE_PATH: join(dir, 'osb.db'), JWT_SECRET: randomKey(32), SERVICE_API_KEY: randomKey(24) };
    let srv = await startServer({ env, keepDir: true });
    let rt;
    try {
      const user = await register(srv);
      // The server allows 60 s of clock skew: this token is accepted now and
      // refused from about 5 s on.
      const now = Math.floor(Date.now() / 1000);
      const expiring = mintToken(env.JWT_SECRET, { sub: user.id, email: user.email, iat: now - 900, exp: now - 55 });
      let calls = 0;
      const getToken = async () => { calls++; return mintToken(env.JWT_SECRET, { sub: user.id, email: user.email }); };
      rt = connect(`ws://127.0.0.1:${port}/ws`, { token: expiring, getToken, WebSocket, minDelayMs: 200, maxDelayMs: 1000 });
      const got = [];
      rt.subscribe(`notify:${user.id}`, (data, meta) => got.push(meta.seq));
      await until(() => rt.state === 'open', 10000, 'open with the short-lived token');
      assert.equal(calls, 0, 'the given token was good enough at first');
      const ch = `notify:${user.id}`;
      for (let i = 0; i < 5; i++) assert.ok(await publish(srv, env.SERVICE_API_KEY, ch, { i }));
      await until(() => got.length === 5, 5000, 'live messages');
      await sleep(6500);   // now the token is expired beyond the skew, the socket still up
      for (let i = 5; i < 10; i++) assert.ok(await publish(srv, env.SERVICE_API_KEY, ch, { i }));
      await until(() => got.length === 10, 5000, 'still delivered on the open socket');

      // The socket goes away (restart): the reconnect presents the expired token,
      // the server answers unauthorized, the client fetches a fresh one.
      await srv.stop();
      srv = await startServer({ env, keepDir: true });
      for (let i = 10; i < 15; i++) assert.ok(await publish(srv, env.SERVICE_API_KEY, ch, { i }));
      await until(() => got.length >= 15, 20000, 'the messages sent while it was away');
      await sleep(300);
      assert.deepEqual(got, Array.from({ length: 15 }, (_, i) => i + 1));
      assert.equal(calls, 1, 'one fresh token');
      assert.equal(rt.state, 'open');
    } finally {
      rt?.close();
      await srv.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('publish and presence resolve by id, errors reject with the server code, onReset on recovered:false', async () => {
    const srv = await startServer({ env: { COOKIE_SECURE: '0' } });
    let rt, other;
    try {
      const admin = await createUser(srv.env, 'admin');
      const token = (await login(srv, admin.email, admin.password)).access_token;
      rt = connect(srv.wsUrl('/ws'), { token, WebSocket });
      // Requests made before the socket is open wait for it.
      const p1 = rt.publish('market:all', { hello: 1 });
      const p2 = rt.publish('market:all', { hello: 2 });
      const [a, b] = await Promise.all([p1, p2]);
      assert.equal(b.seq, a.seq + 1);
      const seen = [];
      let reset = null;
      rt.subscribe('market:all', (d, meta) => seen.push(meta.seq), { since: 1000, onReset: (info) => { reset = info; } });
      await until(() => reset, 5000, 'onReset');
      assert.equal(reset.seq, b.seq, 'the channel seq the server reported');
      const c = await rt.publish('market:all', { hello: 3 });
      await until(() => seen.includes(c.seq), 5000, 'live after the reset');
      const pres = await rt.presence('market:all');
      assert.equal(pres.channel, 'market:all');
      assert.ok(Array.isArray(pres.members));
      assert.ok(pres.members.some((m) => m.user_id === admin.user.id));

      other = connect(srv.wsUrl('/ws'), { WebSocket });   // anonymous
      await assert.rejects(other.publish('market:all', { x: 1 }), (e) => e.code === 'forbidden');
    } finally {
      rt?.close();
      other?.close();
      await srv.stop();
    }
  });

  test('reconnect waits grow exponentially with jitter and stay under the cap', async () => {
    const port = await freePort();   // nothing listens there
    const rt = connect(`ws://127.0.0.1:${port}/ws`, { WebSocket, minDelayMs: 50, maxDelayMs: 400 });
    const at = [];
    rt.on('state', (s) => { if (s === 'connecting') at.push(Date.now()); });
    await sleep(3500);
    rt.close();
    const gaps = at.slice(1).map((t, i) => t - at[i]);
    assert.ok(gaps.length >= 6, `kept retrying (${gaps.length})`);
    assert.ok(gaps[0] < 200, `the first wait is short (${gaps[0]})`);
    const late = gaps.slice(4);
    for (const g of late) assert.ok(g >= 190 && g <= 480, `capped at 400 ms with 50–100 % jitter (${gaps.join(',')})`);
    assert.ok(new Set(late).size > 1 || late.length < 2, 'jittered, not fixed');
    assert.equal(rt.state, 'closed');
  });
});
