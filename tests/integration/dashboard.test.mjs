// dashboard:metrics (SPEC §4 Operations): the once-a-second sampler, who may
// read it, per-second figures from histogram deltas, the REST history, and
// the embedded page and client served to anyone with a strict CSP.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, randomKey } from './lib/server.mjs';
import { createUser, login } from './lib/admin.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A WebSocket that collects JSON frames; next(pred) waits for a matching one.
function openWs(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const got = [];
    const waiters = [];
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      got.push(m);
      for (const w of [...waiters]) if (w.pred(m)) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.t); w.resolve(m); }
    });
    ws.on('error', reject);
    ws.on('open', () => resolve({
      ws, got,
      send: (m) => ws.send(JSON.stringify(m)),
      next(pred, ms = 8000) {
        const hit = got.find(pred);
        if (hit) { got.splice(got.indexOf(hit), 1); return Promise.resolve(hit); }
        return new Promise((res, rej) => {
          const w = { pred: (m) => { if (!pred(m)) return false; got.splice(got.indexOf(m), 1); return true; }, resolve: res,
            t: setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); rej(new Error('timeout waiting for a frame')); }, ms) };
          waiters.push(w);
        });
      },
      close: () => new Promise((r) => { ws.once('close', r); ws.close(); }),
    }));
  });
}

const isSample = (m) => m.type === 'message' && m.channel === 'dashboard:metrics';

describe('dashboard:metrics sampler', () => {
  let srv, admin, token, userToken;
  before(async () => {
    srv = await startServer({ env: { COOKIE_SECURE: '0', JWT_SECRET: randomKey(32) } });
    admin = await createUser(srv.env, 'admin');
    token = (await login(srv, admin.email, admin.password)).access_token;
    const u = await createUser(srv.env, 'user');
    userToken = (await login(srv, u.email, u.password)).access_token;
  });
  after(async () => { await srv.stop(); });

  test('an admin gets one sample a second with every SPEC §4 field; anonymous and plain users are refused', async () => {
    const c = await openWs(srv.wsUrl(`/ws?token=${token}`));
    await c.next((m) => m.type === 'welcome');
    c.send({ type: 'subscribe', id: 1, channel: 'dashboard:metrics' });
    await c.next((m) => m.type === 'subscribed' && m.id === 1);
    const a = await c.next(isSample, 5000);
    const b = await c.next(isSample, 3000);
    assert.equal(b.seq, a.seq + 1);
    const gap = b.data.ts - a.data.ts;
    assert.ok(gap >= 700 && gap <= 1600, `samples ~1 s apart (${gap} ms)`);
    const d = b.data;
    assert.equal(d.type, 'metrics');
    for (const k of ['rps', 'p50_ms', 'p95_ms', 'p99_ms', 'error_rate']) assert.equal(typeof d.http[k], 'number', `http.${k}`);
    for (const k of ['active', 'idle', 'max', 'waiting']) assert.equal(typeof d.db[k], 'number', `db.${k}`);
    assert.ok(d.db.max >= 1);
    assert.equal(d.ws.connections, 1, 'this very socket');
    assert.ok(d.cache.hit_ratio === null || (d.cache.hit_ratio >= 0 && d.cache.hit_ratio <= 1));
    assert.ok(d.process.rss_bytes > 1e6, 'RSS in bytes');
    assert.ok(d.process.cpu_pct >= 0);
    assert.ok(['closed', 'half_open', 'open', 'disabled'].includes(d.breakers.llm));
    assert.ok(['closed', 'half_open', 'open', 'disabled'].includes(d.breakers.tts));
    assert.equal(d.components.database, 'pass');
    for (const v of Object.values(d.components)) assert.ok(['pass', 'warn', 'fail'].includes(v));
    await c.close();

    for (const url of [srv.wsUrl('/ws'), srv.wsUrl(`/ws?token=${userToken}`)]) {
      const x = await openWs(url);
      await x.next((m) => m.type === 'welcome');
      x.send({ type: 'subscribe', id: 2, channel: 'dashboard:metrics' });
      const e = await x.next((m) => m.id === 2);
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'forbidden');
      await x.close();
    }
  });

  test('http figures cover the last second only: a burst shows in one sample and is gone from the next quiet one', async () => {
    const c = await openWs(srv.wsUrl(`/ws?token=${token}`));
    await c.next((m) => m.type === 'welcome');
    c.send({ type: 'subscribe', id: 1, channel: 'dashboard:metrics' });
    await c.next((m) => m.type === 'subscribed');
    await c.next(isSample, 5000);
    // 400 requests as fast as 8 parallel loops go, 40 of them 404s (not errors) and 0 5xx.
    let sent = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      for (let k = 0; k < 50; k++) { const r = await srv.fetch(k % 10 === 0 ? '/nope' : '/health'); await r.arrayBuffer(); sent++; }
    }));
    const burstMs = Date.now() - t0;
    // The largest rps among the samples taken while (and just after) the burst ran.
    let peak = 0;
    const deadline = Date.now() + 4000;
    let quiet = null;
    while (Date.now() < deadline) {
      const s = await c.next(isSample, 3000);
      peak = Math.max(peak, s.data.http.rps);
      assert.equal(s.data.http.error_rate, 0, '404s are not server errors');
      if (s.data.http.rps === 0 && peak > 0) { quiet = s; break; }
    }
    assert.ok(peak >= Math.min(50, sent / (burstMs / 1000) / 4), `peak rps ${peak} reflects the burst (${sent} in ${burstMs} ms)`);
    assert.ok(quiet, 'a sample after the burst shows rps 0: not a lifetime average');
    assert.equal(quiet.data.http.p95_ms, 0, 'no requests, no latency');
    await c.close();
  });

  test('nobody subscribed: no samples are published', async () => {
    const channels = async () => {
      const r = await srv.fetch('/api/realtime/channels', { headers: { Authorization: `Bearer ${token}` } });
      const j = await r.json();
      return j.channels.find((ch) => ch.channel === 'dashboard:metrics');
    };
    const before = await channels();
    await sleep(3200);
    const later = await channels();
    assert.ok(before, 'the channel exists (history from the earlier tests)');
    assert.equal(later.seq, before.seq, 'the seq did not move while nobody listened');
    assert.equal(later.subscribers, 0);
  });

  test('GET /api/dashboard/history: the last 2 minutes at once, then subscribe since its last seq without overlap', async () => {
    const c = await openWs(srv.wsUrl(`/ws?token=${token}`));
    await c.next((m) => m.type === 'welcome');
    c.send({ type: 'subscribe', id: 1, channel: 'dashboard:metrics' });
    await c.next((m) => m.type === 'subscribed');
    await c.next(isSample, 5000);
    await c.next(isSample, 3000);
    await c.close();

    const anon = await srv.fetch('/api/dashboard/history');
    assert.equal(anon.status, 401);
    const asUser = await srv.fetch('/api/dashboard/history', { headers: { Authorization: `Bearer ${userToken}` } });
    assert.equal(asUser.status, 403);
    const r = await srv.fetch('/api/dashboard/history', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(r.status, 200);
    const h = await r.json();
    assert.equal(h.channel, 'dashboard:metrics');
    assert.ok(h.items.length >= 2, `at least the two samples above (${h.items.length})`);
    for (let i = 1; i < h.items.length; i++) {
      assert.ok(h.items[i].seq > h.items[i - 1].seq, 'ascending seq');
      assert.ok(h.items[i].data.ts >= h.items[i - 1].data.ts);
    }
    assert.ok(Date.now() - h.items[0].data.ts <= 125000, 'no older than 2 minutes');
    const last = h.items[h.items.length - 1].seq;

    const d = await openWs(srv.wsUrl(`/ws?token=${token}`));
    await d.next((m) => m.type === 'welcome');
    d.send({ type: 'subscribe', id: 1, channel: 'dashboard:metrics', since: last });
    const sub = await d.next((m) => m.type === 'subscribed');
    assert.equal(sub.recovered, true);
    const next = await d.next(isSample, 5000);
    assert.equal(next.seq, last + 1, 'the first live sample follows the history exactly');
    await d.close();
  });
});

describe('the page and the client are embedded and served to anyone', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('GET /dashboard: HTML with a strict CSP (no inline script, no eval), no data in it', async () => {
    const r = await srv.fetch('/dashboard');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/html/);
    const csp = r.headers.get('content-security-policy');
    assert.ok(csp, 'a Content-Security-Policy header');
    const script = / script-src ([^;]*)/.exec(' ' + csp.replace(/;\s*/g, '; '))?.[1] ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.equal(script.trim(), "'self'", 'scripts only from this origin');
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    const html = await r.text();
    assert.match(html, /<script type="module" src="\/dashboard\/app\.js"><\/script>/);
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
    assert.doesNotMatch(html, /\sstyle=|<style/, 'no inline style');
    assert.doesNotMatch(html, /https?:\/\//, 'nothing from another origin');
    assert.match(html, /data-metric="ws\.connections"/);
  });

  test('GET /client.js and the page assets are JavaScript/CSS from the binary', async () => {
    for (const [path, type] of [['/client.js', /^text\/javascript/], ['/dashboard/app.js', /^text\/javascript/], ['/dashboard/app.css', /^text\/css/]]) {
      const r = await srv.fetch(path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type'), type, path);
      const body = await r.text();
      assert.ok(body.length > 200, `${path} has content`);
      assert.doesNotMatch(body, /\beval\(|new Function\(/, `${path} uses no eval`);
    }
    const js = await (await srv.fetch('/client.js')).text();
    assert.match(js, /export function connect\(/);
  });
});
