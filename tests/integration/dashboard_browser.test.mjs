// /dashboard in a real Chromium (Debian's chromium package, driven through
// playwright-core): loads without console errors or CSP violations, an admin
// signs in through the form and sees ws.connections rise with 50 more
// WebSockets and http.rps rise under load, the SSO cookie signs a reload in,
// a phone-width screen has no horizontal scrolling, a server restart shows
// "disconnected — reconnecting" and then live figures again, and a
// non-admin sees "admins only". Screenshots go to the build directory.
//
// Chromium is installed by `scripts/deps.sh test` (make build-test / make
// test). Where it cannot be, this file skips with a loud message.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import net from 'node:net';
import WebSocket from 'ws';
import { startServer, randomKey, BIN } from './lib/server.mjs';
import { createUser, login } from './lib/admin.mjs';

const CHROMIUM = process.env.OSB_CHROMIUM || ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const OUT_DIR = process.env.OSB_TOOLS_DIR || dirname(BIN);
let chromium = null;
try { ({ chromium } = await import('playwright-core')); } catch { /* reported below */ }
const skip = !CHROMIUM || !chromium;
if (skip) {
  const why = !CHROMIUM ? 'no Chromium binary (apt-get install -y chromium)' : 'playwright-core is not installed (npm ci)';
  console.error(`\n${'!'.repeat(78)}\n!!! BROWSER TESTS SKIPPED: ${why}\n!!! /dashboard was NOT tested in a browser.\n${'!'.repeat(78)}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

// The raw number a data-metric element shows.
const metric = (page, path) => page.$eval(`[data-metric="${path}"]`, (el) => Number(el.dataset.value));
async function waitMetric(page, path, pred, ms, what) {
  const end = Date.now() + ms;
  let v;
  while (Date.now() < end) {
    v = await metric(page, path).catch(() => NaN);
    if (pred(v)) return v;
    await sleep(250);
  }
  assert.fail(`${what}: ${path} stayed at ${v}`);
}

describe('dashboard in Chromium', { skip }, () => {
  let srv, browser, dir, env, admin, user;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'osb-dash-'));
    // An LLM upstream that is configured (so its breaker is live, not
    // "disabled") but never called: the forced-open test flips it.
    env = { PORT: String(await freePort()), SQLITE_PATH: join(dir, 'osb.db'), COOKIE_SECURE: '0', JWT_SECRET: randomKey(32),
            LLM_API_KEY: randomKey(16), LLM_BASE_URL: 'http://127.0.0.1:9/v1' };
    srv = await startServer({ env, keepDir: true });
    admin = await createUser(srv.env, 'admin');
    user = await createUser(srv.env, 'user');
    browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-extensions'],
    });
  });
  after(async () => {
    await browser?.close();
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('admin: form sign-in, live figures, 50 WebSockets, load, cookie reload, phone width, restart', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error' || /Content Security Policy/i.test(m.text())) problems.push(m.text()); });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));

    const r = await page.goto(srv.url('/dashboard'));
    assert.equal(r.status(), 200);
    await page.waitForSelector('#signin:not([hidden])', { timeout: 20000 });
    assert.equal(await page.isVisible('#panel'), false, 'no figures before signing in');
    await page.fill('#email', admin.email);
    await page.fill('#password', admin.password);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#panel:not([hidden])', { timeout: 20000 });
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    const base = await waitMetric(page, 'ws.connections', (v) => v >= 1, 20000, 'first sample');
    assert.match(await page.textContent('#overall'), /all green|degraded|failing/);
    const dbState = await page.$eval('[data-metric="components.database"]', (el) => el.className);
    assert.match(dbState, /st-pass/, 'the database component shows green');

    // 50 more WebSockets from this process.
    const socks = await Promise.all(Array.from({ length: 50 }, () => new Promise((res, rej) => {
      const ws = new WebSocket(srv.wsUrl('/ws'));
      ws.on('open', () => res(ws));
      ws.on('error', rej);
    })));
    await waitMetric(page, 'ws.connections', (v) => v >= base + 50, 15000, '50 more WebSockets');
    for (const ws of socks) ws.close();
    await waitMetric(page, 'ws.connections', (v) => v <= base + 5, 15000, 'they closed again');

    // Load: a few seconds of /health from 8 loops on 127.0.0.1, then it stops.
    const quiet = await metric(page, 'http.rps');
    let stopLoad = false;
    const load = Promise.all(Array.from({ length: 8 }, async () => {
      while (!stopLoad) { const x = await srv.fetch('/health'); await x.arrayBuffer(); }
    }));
    try {
      await waitMetric(page, 'http.rps', (v) => v >= Math.max(50, quiet * 5), 15000, 'rps under load');
    } finally {
      stopLoad = true;
      await load;
    }
    const spark = await page.$eval('svg[data-spark="http.rps"] polyline', (el) => el.getAttribute('points'));
    assert.ok(spark.split(' ').length >= 3, 'the rps sparkline has points');
    await page.screenshot({ path: join(OUT_DIR, 'dashboard.png'), fullPage: true });
    assert.deepEqual(problems, [], 'no console error and no CSP violation');

    // The SSO cookie set by the form sign-in signs a reload in, no form, and
    // the history is drawn at once: the first figures the new page shows come
    // with all the earlier samples, not one live sample.
    const points = () => page.$eval('svg[data-spark="ws.connections"] polyline',
      (el) => (el.getAttribute('points') || '').split(' ').filter(Boolean).length);
    const endHist = Date.now() + 20000;
    while ((await points()) < 6 && Date.now() < endHist) await sleep(250);
    assert.ok((await points()) >= 6, 'six samples before the reload');
    await page.reload();
    await page.waitForSelector('#panel:not([hidden])', { timeout: 20000 });
    assert.equal(await page.isVisible('#signin'), false);
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-metric="ws.connections"]');
      return el && el.dataset.value !== undefined && el.dataset.value !== '';
    }, null, { timeout: 20000, polling: 50 });
    const first = await points();
    assert.ok(first >= 6, `2 minutes of history shown at once (${first} points in the first drawing)`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });
    assert.deepEqual(problems, [], 'no console error and no CSP violation after the reload');

    // Phone width: everything fits without horizontal scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `no horizontal overflow at 390 px (${overflow})`);
    await page.screenshot({ path: join(OUT_DIR, 'dashboard-phone.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });

    // Restart: the page says so, then goes live again on its own.
    await srv.stop();
    await page.waitForSelector('#conn[data-state="disconnected"]', { timeout: 20000 });
    assert.match(await page.textContent('#conn'), /disconnected — reconnecting/);
    await page.screenshot({ path: join(OUT_DIR, 'dashboard-disconnected.png') });
    await sleep(1500);
    srv = await startServer({ env, keepDir: true });
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 30000 });
    await sleep(2500);
    const lastTs = async () => page.$eval('#last-ts', (el) => el.textContent);
    const t1 = await lastTs();
    await sleep(2500);
    assert.notEqual(await lastTs(), t1, 'new samples arrive after the restart');
    await ctx.close();
  });

  test('a breaker forced open on the server (PATCH /api/upstreams/llm) turns red on the page, then green again', async () => {
    const { access_token: token } = await login(srv, admin.email, admin.password);
    const flip = (breaker) => srv.fetch('/api/upstreams/llm', {
      method: 'PATCH', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ breaker }),
    });
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.goto(srv.url('/dashboard'));
    await page.waitForSelector('#signin:not([hidden])', { timeout: 20000 });
    await page.fill('#email', admin.email);
    await page.fill('#password', admin.password);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('[data-metric="breakers.llm"].br-closed', { timeout: 20000, state: 'attached' });
    const colour = (sel) => page.$eval(sel, (el) => getComputedStyle(el).backgroundColor);
    assert.equal(await colour('[data-metric="breakers.llm"]'), 'rgb(46, 160, 67)', 'closed: green');
    assert.equal((await flip('forced_open')).status, 200);
    await page.waitForSelector('[data-metric="breakers.llm"].br-open', { timeout: 20000, state: 'attached' });
    assert.equal(await colour('[data-metric="breakers.llm"]'), 'rgb(248, 81, 73)', 'forced open: red');
    await page.screenshot({ path: join(OUT_DIR, 'dashboard-breaker-forced-open.png') });
    assert.equal((await flip('auto')).status, 200);
    await page.waitForSelector('[data-metric="breakers.llm"].br-closed', { timeout: 20000, state: 'attached' });
    await ctx.close();
  });

  // Colours of the states a live server rarely shows at once (half-open, a
  // warn component): the page is fed a history whose newest sample has them.
  test('a breaker reported open shows red, a warn component amber, the summary "failing"', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    await page.route('**/api/dashboard/history', async (route) => {
      const res = await route.fetch();
      const h = await res.json();
      const base = h.items.length ? h.items[h.items.length - 1] : { seq: 0, data: null };
      const data = base.data ?? {
        type: 'metrics', http: { rps: 1, p50_ms: 1, p95_ms: 1, p99_ms: 1, error_rate: 0 },
        db: { active: 0, idle: 1, max: 4, waiting: 0 }, ws: { connections: 1 }, cache: { hit_ratio: null },
        process: { rss_bytes: 1e8, cpu_pct: 1 }, components: { database: 'pass' },
      };
      const fake = { ...data, ts: Date.now() + 60000, breakers: { llm: 'open', tts: 'half_open' },
        components: { ...data.components, cache: 'warn' } };
      await route.fulfill({ response: res, json: { ...h, items: [...h.items, { seq: base.seq, data: fake }] } });
    });
    await page.goto(srv.url('/dashboard'));
    await page.waitForSelector('#signin:not([hidden])', { timeout: 20000 });
    await page.fill('#email', admin.email);
    await page.fill('#password', admin.password);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('[data-metric="breakers.llm"].br-open', { timeout: 20000, state: 'attached' });
    const colour = (sel) => page.$eval(sel, (el) => getComputedStyle(el).backgroundColor);
    assert.equal(await colour('[data-metric="breakers.llm"]'), 'rgb(248, 81, 73)', 'open: red');
    assert.equal(await colour('[data-metric="breakers.tts"]'), 'rgb(210, 153, 34)', 'half-open: amber');
    assert.equal(await colour('[data-metric="components.cache"]'), 'rgb(210, 153, 34)', 'warn: amber');
    assert.equal(await colour('[data-metric="components.database"]'), 'rgb(46, 160, 67)', 'pass: green');
    assert.equal(await page.textContent('#overall'), 'failing');
    await page.screenshot({ path: join(OUT_DIR, 'dashboard-breaker-open.png') });
    await ctx.close();
  });

  test('a signed-in non-admin sees "admins only" and no figures', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(e.message));
    await page.goto(srv.url('/dashboard'));
    await page.waitForSelector('#signin:not([hidden])', { timeout: 20000 });
    await page.fill('#email', user.email);
    await page.fill('#password', user.password);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#denied:not([hidden])', { timeout: 20000 });
    assert.match(await page.textContent('#denied'), /admins only/i);
    assert.equal(await page.isVisible('#panel'), false);
    assert.equal(await page.$eval('[data-metric="ws.connections"]', (el) => el.dataset.value ?? ''), '', 'no figure was filled in');
    assert.deepEqual(problems, []);
    await ctx.close();
  });
});
