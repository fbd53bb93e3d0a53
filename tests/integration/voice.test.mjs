// Voice and the upstream machinery against a fake ElevenLabs (a local server
// speaking the real API, started here): disabled without a key, audio
// served and cached, single flight, validation, upstream errors, the
// breaker opening and closing again, timeouts that never block /health, the
// bulkhead, SIGTERM with calls in flight, the LRU cache budget, and the key
// never appearing in logs, errors or /api/upstreams.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startServer, runBinary, randomKey } from './lib/server.mjs';
import { startFakeElevenLabs, isMp3, MP3_FRAME_BYTES } from './lib/fake_upstreams.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PASSWORD = 'correct horse battery staple 42';

async function register(srv, tag) {
  const r = await srv.fetch('/api/auth/register', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `${tag}-${randomKey(4)}@example.test`, password: PASSWORD }),
  });
  const b = await r.json();
  assert.equal(r.status, 201, JSON.stringify(b));
  return { id: b.user.id, token: b.access_token };
}

async function tts(srv, token, body) {
  const t0 = performance.now();
  const r = await srv.fetch('/api/voice/tts', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const buf = Buffer.from(await r.arrayBuffer());
  const ms = performance.now() - t0;
  let json = null;
  if ((r.headers.get('content-type') || '').includes('json')) json = JSON.parse(buf.toString('utf8'));
  return { status: r.status, headers: r.headers, buf, json, ms, text: buf.toString('latin1') };
}

async function getJson(srv, path, token) {
  const r = await srv.fetch(path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, body, text };
}

function p99(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(s.length * 0.99) - 1)];
}

// /health latencies measured while `busy` is pending.
async function healthWhile(srv, busy) {
  const lat = [];
  let done = false;
  busy.finally(() => { done = true; });
  while (!done) {
    const t0 = performance.now();
    const r = await srv.fetch('/health');
    await r.text();
    lat.push(performance.now() - t0);
    assert.equal(r.status, 200);
  }
  return lat;
}

function noSecret(srv, key, extra = '') {
  assert.ok(!srv.logs().includes(key), 'the API key appears in the server log');
  assert.ok(!srv.stdout().includes(key), 'the API key appears on stdout');
  assert.ok(!extra.includes(key), 'the API key appears in a response');
}

function envFor(fake, key, more = {}) {
  return {
    ELEVENLABS_API_KEY: key,
    ELEVENLABS_BASE_URL: fake.url,
    RATE_LIMIT_RPS: '100000',
    RATE_LIMIT_BURST: '100000',
    ...more,
  };
}

describe('voice without ELEVENLABS_API_KEY', () => {
  test('the server starts, tts warns with the reason, /api/voice/tts is 503 voice_disabled, the rest works', async () => {
    const srv = await startServer();
    try {
      const d = await getJson(srv, '/health/details');
      assert.equal(d.status, 200);
      assert.equal(d.body.checks.tts[0].status, 'warn');
      assert.equal(d.body.checks.tts[0].output, 'disabled: ELEVENLABS_API_KEY not set');
      assert.equal(d.body.checks.llm[0].status, 'warn');
      assert.equal(d.body.checks.llm[0].output, 'disabled: LLM_API_KEY not set');
      assert.equal(d.body.checks.database[0].status, 'pass');
      const st = await getJson(srv, '/api/voice/status');
      assert.equal(st.status, 200);
      assert.equal(st.body.enabled, false);
      assert.equal(st.body.reason, 'disabled: ELEVENLABS_API_KEY not set');
      assert.equal(st.body.breaker, 'disabled');
      assert.equal(typeof st.body.voice_id, 'string');
      const u = await register(srv, 'nokey');
      const r = await tts(srv, u.token, { text: 'hello' });
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'voice_disabled');
      assert.match(r.json.error.message, /ELEVENLABS_API_KEY not set/);
      // everything else works
      assert.equal((await srv.fetch('/health')).status, 200);
      assert.equal((await getJson(srv, '/api/market/categories')).status, 200);
      assert.equal((await getJson(srv, '/ready')).status, 200);
      assert.equal((await getJson(srv, '/api/auth/me', u.token)).status, 200);
    } finally {
      await srv.stop();
    }
  });
});

describe('voice through a fake ElevenLabs', () => {
  const KEY = `xi-${randomKey(16)}`;
  let fake, srv, user, admin, dir;
  const seen = [];   // every response body, checked for the key at the end

  before(async () => {
    fake = await startFakeElevenLabs({ apiKey: KEY });
    dir = mkdtempSync(join(tmpdir(), 'osb-voice-'));
    const env = envFor(fake, KEY, { SQLITE_PATH: join(dir, 'osb.db'), JWT_SECRET: randomKey(32), COOKIE_SECURE: '0' });
    const email = `admin-${randomKey(4)}@example.test`;
    const cu = await runBinary(['create-user', '--email', email, '--role', 'admin'], { env, input: `${PASSWORD}\n` });
    assert.equal(cu.code, 0, cu.stderr);
    srv = await startServer({ env, keepDir: true });
    user = await register(srv, 'voice');
    const login = await srv.fetch('/api/auth/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }),
    });
    admin = (await login.json()).access_token;
  });
  after(async () => {
    noSecret(srv, KEY, seen.join('\n'));
    await srv.stop();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('POST /api/voice/tts speaks the ElevenLabs API and answers real MPEG audio; a repeat comes from the cache', async () => {
    const text = `Welcome to RepConnect ${randomKey(4)}`;
    const before = fake.count;
    const a = await tts(srv, user.token, { text });
    assert.equal(a.status, 200, a.text.slice(0, 300));
    assert.equal(a.headers.get('content-type'), 'audio/mpeg');
    assert.ok(isMp3(a.buf), 'a whole number of MPEG-1 Layer III frames');
    assert.equal(a.headers.get('x-cache'), 'miss');
    assert.equal(fake.count, before + 1);
    const call = fake.calls.at(-1);
    assert.equal(call.method, 'POST');
    assert.equal(call.path, `/v1/text-to-speech/${(await getJson(srv, '/api/voice/status')).body.voice_id}`);
    assert.equal(call.headers['xi-api-key'], KEY);
    assert.equal(call.headers.accept, 'audio/mpeg');
    assert.equal(call.body.text, text);
    assert.equal(call.body.model_id, 'eleven_multilingual_v2');
    assert.equal(typeof call.body.voice_settings.stability, 'number');
    assert.equal(typeof call.body.voice_settings.similarity_boost, 'number');

    const b = await tts(srv, user.token, { text });
    assert.equal(b.status, 200);
    assert.equal(b.headers.get('x-cache'), 'hit');
    assert.ok(b.buf.equals(a.buf));
    assert.equal(fake.count, before + 1, 'the repeat did not call ElevenLabs');

    const hash = a.headers.get('x-audio-hash');
    assert.match(hash, /^[0-9a-f]{64}$/);
    assert.equal(a.headers.get('x-audio-url'), `/api/voice/audio/${hash}`);
    const got = await srv.fetch(`/api/voice/audio/${hash}`, { headers: { authorization: `Bearer ${user.token}` } });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), 'audio/mpeg');
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(a.buf));
    assert.equal((await srv.fetch(`/api/voice/audio/${hash}`)).status, 401, 'signed in only');
    assert.equal((await getJson(srv, `/api/voice/audio/${'0'.repeat(64)}`, user.token)).status, 404);
    assert.equal((await getJson(srv, '/api/voice/audio/nothex', user.token)).status, 404);

    // Characters counted once: only the call that reached ElevenLabs.
    let usage;
    for (let i = 0; i < 50; i++) {
      usage = await getJson(srv, '/api/usage', user.token);
      if (usage.body.totals.tts_chars === [...text].length) break;
      await sleep(40);   // written after the audio went out
    }
    assert.equal(usage.status, 200);
    assert.equal(usage.body.totals.tts_chars, [...text].length);
  });

  test('concurrent identical requests make one upstream call (single flight)', async () => {
    fake.script({ delayMs: 300 });
    try {
      const text = `single flight ${randomKey(4)}`;
      const before = fake.count;
      const rs = await Promise.all(Array.from({ length: 6 }, () => tts(srv, user.token, { text })));
      for (const r of rs) assert.equal(r.status, 200);
      for (const r of rs) assert.ok(r.buf.equals(rs[0].buf));
      assert.equal(fake.count, before + 1);
    } finally {
      fake.script({});
    }
  });

  test('validation: text 1..5000 characters, a well-formed voice_id, a JSON object; nothing reaches ElevenLabs', async () => {
    const before = fake.count;
    for (const body of [{ text: '' }, { text: 'x'.repeat(5001) }, {}, { text: 42 }, { text: 'ok', voice_id: '../etc' }]) {
      const r = await tts(srv, user.token, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.json.error.code, 'validation_failed');
      assert.ok(r.json.error.fields.text || r.json.error.fields.voice_id, JSON.stringify(r.json));
      assert.ok(r.json.error.request_id);
    }
    const ok = await tts(srv, user.token, { text: 'é'.repeat(5000) });   // characters, not bytes
    assert.equal(ok.status, 200);
    assert.equal((await tts(srv, null, { text: 'hi' })).status, 401);
    assert.equal(fake.count, before + 1);
  });

  test('an unknown voice (the upstream\'s 4xx) is 502 upstream_error with its reason; 4xx never opens the breaker', async () => {
    fake.script({ status: 404 });
    try {
      for (let i = 0; i < 7; i++) {
        const r = await tts(srv, user.token, { text: `unknown voice ${i} ${randomKey(3)}`, voice_id: 'nosuchvoice' });
        seen.push(r.text);
        assert.equal(r.status, 502);
        assert.equal(r.json.error.code, 'upstream_error');
        assert.match(r.json.error.message, /voice_id was not found/);
      }
      const ups = await getJson(srv, '/api/upstreams', admin);
      const t = ups.body.upstreams.find((u) => u.name === 'tts');
      assert.equal(t.breaker, 'closed');
    } finally {
      fake.script({});
    }
  });

  test('GET /api/upstreams (admin) shows both upstreams without the key', async () => {
    assert.equal((await getJson(srv, '/api/upstreams', user.token)).status, 403);
    assert.equal((await getJson(srv, '/api/upstreams')).status, 401);
    const r = await getJson(srv, '/api/upstreams', admin);
    seen.push(r.text);
    assert.equal(r.status, 200);
    const names = r.body.upstreams.map((u) => u.name);
    assert.deepEqual(names, ['llm', 'tts']);
    const t = r.body.upstreams.find((u) => u.name === 'tts');
    assert.equal(t.enabled, true);
    assert.equal(t.breaker, 'closed');
    assert.equal(t.max_concurrency, 8);
    assert.ok(t.calls >= 1 && typeof t.failures === 'number' && t.in_flight === 0);
    const l = r.body.upstreams.find((u) => u.name === 'llm');
    assert.equal(l.enabled, false);
    assert.equal(l.breaker, 'disabled');
    assert.equal(l.reason, 'disabled: LLM_API_KEY not set');
    assert.ok(!r.text.includes(KEY));
    const d = await getJson(srv, '/health/details');
    seen.push(d.text);
    assert.equal(d.body.checks.tts[0].status, 'pass');
  });

  test('PATCH /api/upstreams/:name forces a breaker open (no call goes out) and back to automatic', async () => {
    const patch = (name, body, token = admin) => srv.fetch(`/api/upstreams/${name}`, {
      method: 'PATCH', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body),
    });
    assert.equal((await patch('tts', { breaker: 'forced_open' }, user.token)).status, 403);
    assert.equal((await patch('nope', { breaker: 'forced_open' })).status, 404);
    assert.equal((await patch('tts', { breaker: 'sideways' })).status, 400);
    assert.equal((await patch('llm', { breaker: 'forced_open' })).status, 409, 'llm has no key');
    const r = await patch('tts', { breaker: 'forced_open' });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).breaker, 'forced_open');
    const before = fake.count;
    const t = await tts(srv, user.token, { text: `forced ${randomKey(3)}` });
    assert.equal(t.status, 503);
    assert.equal(t.json.error.code, 'upstream_unavailable');
    assert.ok(Number(t.headers.get('retry-after')) >= 1);
    assert.equal(fake.count, before);
    const d = await getJson(srv, '/health/details');
    assert.equal(d.body.checks.tts[0].status, 'warn');
    assert.match(d.body.checks.tts[0].output, /forced open/);
    assert.equal((await patch('tts', { breaker: 'auto' })).status, 200);
    assert.equal((await tts(srv, user.token, { text: `auto again ${randomKey(3)}` })).status, 200);
    assert.equal(fake.count, before + 1);
  });
});

describe('the tts breaker', () => {
  const KEY = `xi-${randomKey(16)}`;
  let fake, srv, user, ws;
  const events = [];

  before(async () => {
    fake = await startFakeElevenLabs({ apiKey: KEY });
    srv = await startServer({ env: envFor(fake, KEY, { BREAKER_OPEN_MS: '1500', BREAKER_MIN_CALLS: '5', BREAKER_FAILURE_RATE: '50' }) });
    user = await register(srv, 'breaker');
    ws = new WebSocket(srv.wsUrl(`/ws?token=${encodeURIComponent(user.token)}`));
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'message' && m.channel === 'agents:status') events.push(m.data);
    });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    ws.send(JSON.stringify({ type: 'subscribe', channel: 'agents:status', id: 1 }));
    await sleep(200);
  });
  after(async () => {
    ws.terminate();
    noSecret(srv, KEY);
    await srv.stop();
    await fake.close();
  });

  test('500 five times opens it; calls then fail fast with Retry-After and reach nobody; one half-open trial closes it', async () => {
    fake.script({ status: 500 });
    for (let i = 0; i < 5; i++) {
      const r = await tts(srv, user.token, { text: `fail ${i}` });
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_error');
    }
    assert.equal(fake.count, 5);
    const fast = [];
    for (let i = 0; i < 9; i++) {
      const r = await tts(srv, user.token, { text: `while open ${i}` });
      assert.equal(r.status, 503);
      assert.equal(r.json.error.code, 'upstream_unavailable');
      const ra = Number(r.headers.get('retry-after'));
      assert.ok(ra >= 1 && ra <= 2, `Retry-After ${r.headers.get('retry-after')}`);
      fast.push(r.ms);
    }
    fast.sort((a, b) => a - b);
    assert.ok(fast[4] < 10, `rejections take ${fast.map((x) => x.toFixed(1)).join(', ')} ms`);
    assert.equal(fake.count, 5, 'no call reached ElevenLabs while open');

    const st = await getJson(srv, '/api/voice/status');
    assert.equal(st.body.breaker, 'open');
    const d = await getJson(srv, '/health/details');
    assert.equal(d.body.checks.tts[0].status, 'warn');
    assert.match(d.body.checks.tts[0].output, /breaker open/);
    const metrics = await (await srv.fetch('/metrics')).text();
    assert.match(metrics, /^osb_breaker_state\{upstream="tts"\} 2$/m);
    assert.match(metrics, /^osb_breaker_transitions_total\{upstream="tts",to="open"\} 1$/m);
    assert.match(metrics, /^osb_upstream_calls_total\{upstream="tts",outcome="rejected"\} 9$/m);
    assert.match(metrics, /^osb_upstream_latency_seconds_count\{upstream="tts"\} 5$/m);
    assert.equal((srv.logs().match(/"msg":"breaker state changed"[^\n]*"to":"open"/g) || []).length, 1, 'logged once');
    assert.match(srv.logs(), /"to":"open","reason":"5 of 5 calls in 30 s failed or were slow/);

    // The fake recovers; after the open wait (1.5 s ± 10 %) one trial goes through and closes it.
    fake.script({});
    await sleep(1800);
    const trial = await tts(srv, user.token, { text: 'trial call' });
    assert.equal(trial.status, 200);
    assert.equal(fake.count, 6);
    assert.equal((await getJson(srv, '/api/voice/status')).body.breaker, 'closed');
    const after = await tts(srv, user.token, { text: 'after recovery' });
    assert.equal(after.status, 200);
    await sleep(200);
    assert.deepEqual(events.map((e) => [e.type, e.upstream, e.state]), [
      ['upstream.state', 'tts', 'open'],
      ['upstream.state', 'tts', 'half_open'],
      ['upstream.state', 'tts', 'closed'],
    ]);
    assert.match(srv.logs(), /"to":"closed","reason":"trial call succeeded"/);
  });
});

describe('slow, stalled and broken upstreams', () => {
  const KEY = `xi-${randomKey(16)}`;
  let fake, srv, user;

  before(async () => {
    fake = await startFakeElevenLabs({ apiKey: KEY });
    srv = await startServer({ env: envFor(fake, KEY, { UPSTREAM_TIMEOUT_MS: '1000', TTS_MAX_CONCURRENCY: '3', BREAKER_MIN_CALLS: '1000' }) });
    user = await register(srv, 'slow');
  });
  after(async () => {
    noSecret(srv, KEY);
    await srv.stop();
    await fake.close();
  });

  test('a stalled upstream times out at UPSTREAM_TIMEOUT_MS and /health stays fast meanwhile', async () => {
    // The goal is p99 < 5 ms. On a shared machine the idle p99 alone can be
    // above that, so the bound is relative to an idle baseline measured
    // here, unless OSB_STRICT_TIMING=1 (a quiet CI machine) asks for 5 ms.
    // Either way no /health request may wait for the stalled call.
    const base = await healthWhile(srv, sleep(1000));
    const limit = process.env.OSB_STRICT_TIMING === '1' ? 5 : Math.max(5, 3 * p99(base));
    for (const stall of ['head', 'body']) {
      fake.script({ stall });
      const call = tts(srv, user.token, { text: `stalled ${stall} ${randomKey(3)}` });
      const lat = await healthWhile(srv, call);
      const r = await call;
      assert.equal(r.status, 504, `${stall}: ${r.text.slice(0, 200)}`);
      assert.equal(r.json.error.code, 'upstream_timeout');
      assert.ok(r.ms >= 950 && r.ms < 3000, `${stall}: took ${r.ms} ms`);
      assert.ok(lat.length > 20, `only ${lat.length} health checks`);
      assert.ok(p99(lat) < limit, `${stall}: /health p99 ${p99(lat).toFixed(2)} ms over ${lat.length} (idle p99 ${p99(base).toFixed(2)})`);
      assert.ok(Math.max(...lat) < 500, `${stall}: a /health request took ${Math.max(...lat).toFixed(0)} ms`);
    }
    fake.script({});
  });

  test('a dropped connection and a down upstream are 502 upstream_error', async () => {
    fake.script({ drop: 'body' });
    let r = await tts(srv, user.token, { text: `dropped ${randomKey(3)}` });
    assert.equal(r.status, 502);
    assert.equal(r.json.error.code, 'upstream_error');
    fake.script({ drop: 'head' });
    r = await tts(srv, user.token, { text: `dropped head ${randomKey(3)}` });
    assert.equal(r.status, 502);
    fake.script({});
    await fake.down();
    try {
      r = await tts(srv, user.token, { text: `down ${randomKey(3)}` });
      assert.equal(r.status, 502);
      assert.equal(r.json.error.code, 'upstream_error');
      assert.match(r.json.error.message, /could not be reached/);
    } finally {
      await fake.up();
    }
    r = await tts(srv, user.token, { text: `up again ${randomKey(3)}` });
    assert.equal(r.status, 200);
  });

  test('429 is 503 upstream_unavailable with the upstream\'s Retry-After', async () => {
    fake.script({ status: 429, retryAfter: 7 });
    const r = await tts(srv, user.token, { text: `limited ${randomKey(3)}` });
    fake.script({});
    assert.equal(r.status, 503);
    assert.equal(r.json.error.code, 'upstream_unavailable');
    assert.equal(r.headers.get('retry-after'), '7');
  });

  test('TTS_MAX_CONCURRENCY+5 concurrent calls: at most TTS_MAX_CONCURRENCY reach the upstream, the rest wait up to 1 s then 503', async () => {
    fake.reset();
    fake.script({ delayMs: 700 });
    try {
      const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => tts(srv, user.token, { text: `bulkhead ${i} ${randomKey(3)}` })));
      assert.ok(fake.maxInFlight <= 3, `the fake saw ${fake.maxInFlight} at once`);
      assert.equal(fake.maxInFlight, 3);
      const ok = rs.filter((r) => r.status === 200), busy = rs.filter((r) => r.status === 503);
      assert.equal(ok.length + busy.length, 8, rs.map((r) => r.status).join(','));
      assert.ok(ok.length >= 3 && busy.length >= 1, rs.map((r) => r.status).join(','));
      for (const r of busy) {
        assert.equal(r.json.error.code, 'upstream_unavailable');
        assert.equal(r.headers.get('retry-after'), '1');
        assert.ok(r.ms >= 950, `rejected after ${r.ms} ms, before the 1 s wait`);
      }
      assert.equal(fake.count, ok.length);
    } finally {
      fake.script({});
    }
  });
});

describe('shutdown and the cache budget', () => {
  const KEY = `xi-${randomKey(16)}`;

  test('SIGTERM with calls in flight still exits 0 within SHUTDOWN_TIMEOUT_MS', async () => {
    const fake = await startFakeElevenLabs({ apiKey: KEY });
    fake.script({ stall: 'head' });
    const srv = await startServer({ env: envFor(fake, KEY, { SHUTDOWN_TIMEOUT_MS: '2000' }) });
    try {
      const u = await register(srv, 'term');
      const calls = Array.from({ length: 3 }, (_, i) => tts(srv, u.token, { text: `in flight ${i}` }).catch((e) => ({ error: e })));
      for (let i = 0; i < 100 && fake.inFlight < 3; i++) await sleep(20);
      assert.equal(fake.inFlight, 3);
      const t0 = Date.now();
      const r = await srv.stop();
      const took = Date.now() - t0;
      assert.equal(r.code, 0);
      assert.ok(took < 2000 + 300, `exit took ${took} ms`);
      const rs = await Promise.all(calls);
      for (const x of rs) if (!x.error) assert.equal(x.status, 503);
      noSecret(srv, KEY);
    } finally {
      await fake.close();
    }
  });

  test('TTS_CACHE_MB is a budget: the least recently used audio is evicted', async () => {
    const fake = await startFakeElevenLabs({ apiKey: KEY });
    // ~0.4 MiB per clip, budget 1 MiB: the third clip evicts the least recently used one.
    fake.script({ audioFrames: 1000 });
    const srv = await startServer({ env: envFor(fake, KEY, { TTS_CACHE_MB: '1' }) });
    try {
      const u = await register(srv, 'lru');
      const a = await tts(srv, u.token, { text: 'clip A' });
      await sleep(20);
      const b = await tts(srv, u.token, { text: 'clip B' });
      await sleep(20);
      assert.equal(a.buf.length, 1000 * MP3_FRAME_BYTES);
      assert.equal((await tts(srv, u.token, { text: 'clip A' })).headers.get('x-cache'), 'hit');   // A is now newer than B
      await sleep(20);
      const c = await tts(srv, u.token, { text: 'clip C' });
      assert.equal(c.status, 200);
      const url = (r) => `/api/voice/audio/${r.headers.get('x-audio-hash')}`;
      let bStatus = 200;
      for (let i = 0; i < 50 && bStatus === 200; i++) {
        await sleep(20);
        bStatus = (await getJson(srv, url(b), u.token)).status;
      }
      assert.equal(bStatus, 404, 'B (least recently used) was evicted');
      assert.equal((await getJson(srv, url(a), u.token)).status, 200);
      assert.equal((await getJson(srv, url(c), u.token)).status, 200);
      assert.equal(fake.count, 3);
      noSecret(srv, KEY);
    } finally {
      await srv.stop();
      await fake.close();
    }
  });
});

describe('voice on PostgreSQL', () => {
  const needsPg = process.env.OSB_TEST_PG_URL ? false : 'needs PostgreSQL: OSB_TEST_PG_URL is not set';
  test('audio is stored as bytea, served from the cache, and usage is counted', { skip: needsPg }, async () => {
    const KEY = `xi-${randomKey(16)}`;
    const fake = await startFakeElevenLabs({ apiKey: KEY });
    const srv = await startServer({ pg: true, env: envFor(fake, KEY, { JWT_SECRET: randomKey(32) }) });
    try {
      const u = await register(srv, 'pgvoice');
      const text = `PostgreSQL voice ${randomKey(6)}`;
      const a = await tts(srv, u.token, { text });
      assert.equal(a.status, 200, a.text.slice(0, 200));
      assert.ok(isMp3(a.buf));
      const b = await tts(srv, u.token, { text });
      assert.equal(b.headers.get('x-cache'), 'hit');
      assert.ok(b.buf.equals(a.buf), 'the bytes survive bytea both ways');
      assert.equal(fake.count, 1);
      const got = await srv.fetch(`/api/voice/audio/${a.headers.get('x-audio-hash')}`, { headers: { authorization: `Bearer ${u.token}` } });
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(a.buf));
      await tts(srv, u.token, { text: `${text} again` });
      // Usage is written after the audio went out: poll briefly.
      let chars = 0;
      for (let i = 0; i < 50 && chars !== text.length + `${text} again`.length; i++) {
        chars = (await getJson(srv, '/api/usage', u.token)).body.totals.tts_chars;
        if (chars !== text.length + `${text} again`.length) await sleep(40);
      }
      assert.equal(chars, text.length + `${text} again`.length);
      noSecret(srv, KEY);
    } finally {
      await srv.stop();
      await fake.close();
    }
  });
});
