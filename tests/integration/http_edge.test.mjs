// The HTTP edge as a hostile client sees it (issue 8): request trailers,
// whitespace before the colon, error bodies on odd paths, parse errors that
// must not echo the body, request-target forms, Host and version rules,
// encoded slashes, the METRICS_TOKEN and pipelining from a client that never
// reads. Every test here failed (or crashed the server) before its fix.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { startServer, runBinary, rawRequest, randomKey } from './lib/server.mjs';

const until = (s) => (buf) => buf.includes(s);
const statusOf = (data) => Number((data.match(/^HTTP\/1\.1 (\d{3})/) || [])[1]);
// The body of the first response in `data` (Content-Length framed).
function firstBody(data) {
  const end = data.indexOf('\r\n\r\n');
  const len = Number((data.slice(0, end).match(/\r\nContent-Length: (\d+)/i) || [])[1]);
  return { len, body: Buffer.from(data.slice(end + 4), 'latin1').subarray(0, len).toString('utf8') };
}
// Wait until the response in `buf` is complete (head plus Content-Length bytes).
const oneResponse = (buf) => {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const m = buf.slice(0, end).match(/\r\nContent-Length: (\d+)/i);
  return !m || buf.length - end - 4 >= Number(m[1]);
};

describe('HTTP edge', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000' } });
  });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit\n' + srv.logs().slice(-3000));
  });

  test('a chunked request with a trailer is answered, the trailer ignored, the server stays up', async () => {
    const req = 'GET /api/market/categories HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '0\r\nX-Trailer: 1\r\nCookie: osb_access=forged\r\n\r\n' +
      'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = await rawRequest(srv.port, req, { until: until('"status":"pass"') });
    assert.equal(statusOf(r.data), 200, r.data.slice(0, 300));
    assert.match(r.data, /"status":"pass"/, 'the pipelined request behind it is answered on the same connection');
    const h = await srv.fetch('/health');
    assert.equal(h.status, 200);
  });

  for (const [name, head] of [
    ['Transfer-Encoding : chunked', 'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'],
    ['Content-Length : 27', 'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length : 27\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['X A: b', 'GET /health HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n'],
  ]) {
    test(`whitespace in a header name (${name}) → 400 and close`, async () => {
      const r = await rawRequest(srv.port, head);
      assert.equal(statusOf(r.data), 400, r.data.slice(0, 300));
      assert.equal(r.closed, true);
      assert.equal((r.data.match(/HTTP\/1\.1 /g) || []).length, 1, 'nothing smuggled behind it is answered');
      const { body } = firstBody(r.data);
      assert.equal(JSON.parse(body).error.code, 'bad_request');
      assert.match(JSON.parse(body).error.message, /header name/);
    });
  }

  for (const [name, target] of [
    ['an invalid UTF-8 escape', '/%ff'],
    ['a 600-byte UTF-8 path (escaped)', '/' + '%C3%A9'.repeat(300)],
    ['a 600-byte UTF-8 path (raw)', '/' + Buffer.from('é'.repeat(300)).toString('latin1')],
    ['invalid UTF-8 mixed in', '/a%C3%28b%E2%82'],
  ]) {
    test(`error bodies are valid JSON: ${name}`, async () => {
      const r = await rawRequest(srv.port, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`, { until: oneResponse });
      assert.equal(statusOf(r.data), 404, r.data.slice(0, 300));
      const { len, body } = firstBody(r.data);
      assert.ok(len > 0, 'the error body is not empty');
      const doc = JSON.parse(body);
      assert.equal(doc.error.code, 'not_found');
      assert.match(doc.error.request_id, /^[0-9a-f]{8}-/);
      assert.ok(!doc.error.message.includes('\ufffd\ufffd\ufffd\ufffd'.repeat(10)), 'text is kept, not blanked');
    });
  }

  test('a JSON parse error reports line, column and kind, never the body', async () => {
    const secret = 'bobPassw0rd' + randomKey(4);
    const body = `{"email":"bob@example.test","password":"${secret}`;
    const r = await srv.fetch('/api/auth/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(r.status, 400);
    const text = await r.text();
    assert.ok(!text.includes(secret.slice(0, 6)), 'the password is not echoed: ' + text);
    const doc = JSON.parse(text);
    assert.equal(doc.error.code, 'invalid_json');
    assert.match(doc.error.message, /line 1 column \d+/);
    assert.match(doc.error.message, /end of input|unterminated|syntax/);
    const bad = await srv.fetch('/api/auth/login', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: `{"password":"${secret}" x}` });
    const t2 = await bad.text();
    assert.equal(bad.status, 400);
    assert.ok(!t2.includes(secret.slice(0, 6)), t2);
    assert.ok(!srv.logs().includes(secret), 'nor logged');
  });

  test('absolute-form target is routed on its path', async () => {
    const r = await rawRequest(srv.port, `GET http://127.0.0.1:${srv.port}/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, { until: until('}') });
    assert.equal(statusOf(r.data), 200, r.data.slice(0, 300));
    assert.match(r.data, /"status":"pass"/);
    const q = await rawRequest(srv.port, 'GET HTTP://example.test/api/market/procedures?limit=1 HTTP/1.1\r\nHost: example.test\r\n\r\n', { until: oneResponse });
    assert.equal(statusOf(q.data), 200, q.data.slice(0, 300));
    const bare = await rawRequest(srv.port, 'GET http://example.test HTTP/1.1\r\nHost: example.test\r\n\r\n', { until: oneResponse });
    assert.equal(statusOf(bare.data), 404, 'an empty path is "/"');
  });

  test('OPTIONS * → 204 with the server-wide Allow; another method with * → 400', async () => {
    const r = await rawRequest(srv.port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', { until: until('\r\n\r\n') });
    assert.equal(statusOf(r.data), 204, r.data.slice(0, 300));
    assert.match(r.data, /\r\nAllow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n/);
    const g = await rawRequest(srv.port, 'GET * HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(statusOf(g.data), 400);
  });

  test('HTTP/1.1 without Host, or with two, → 400; HTTP/1.0 without Host is fine', async () => {
    const none = await rawRequest(srv.port, 'GET /health HTTP/1.1\r\n\r\n');
    assert.equal(statusOf(none.data), 400, none.data.slice(0, 300));
    assert.match(firstBody(none.data).body, /Host/);
    const two = await rawRequest(srv.port, 'GET /health HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n');
    assert.equal(statusOf(two.data), 400, two.data.slice(0, 300));
    const old = await rawRequest(srv.port, 'GET /health HTTP/1.0\r\n\r\n');
    assert.match(old.data, /"status":"pass"/);
  });

  test('a major version other than 1 → 505', async () => {
    for (const v of ['HTTP/2.0', 'HTTP/3.0', 'HTTP/0.9']) {
      const r = await rawRequest(srv.port, `GET /health ${v}\r\nHost: x\r\n\r\n`);
      assert.equal(statusOf(r.data), 505, v + ': ' + r.data.slice(0, 200));
      assert.match(r.data, /^HTTP\/1\.1 505 HTTP Version Not Supported\r\n/);
      assert.equal(r.closed, true);
    }
  });

  test('an encoded slash is not a path separator', async () => {
    const r = await srv.fetch('/api%2Fmarket%2Fcategories');
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.code, 'not_found');
    const ok = await srv.fetch('/api/m%61rket/categories');
    assert.equal(ok.status, 200, 'other escapes are decoded before matching');
  });
});

describe('METRICS_TOKEN', () => {
  let srv;
  const token = randomKey(20);
  before(async () => { srv = await startServer({ env: { METRICS_TOKEN: token } }); });
  after(async () => { assert.equal((await srv.stop()).code, 0, srv.logs().slice(-2000)); });

  test('/metrics and /health/details need the bearer token; /health and /ready stay open', async () => {
    for (const p of ['/metrics', '/health/details']) {
      const no = await srv.fetch(p);
      assert.equal(no.status, 401, p);
      assert.equal((await no.json()).error.code, 'unauthorized');
      const wrong = await srv.fetch(p, { headers: { Authorization: 'Bearer ' + randomKey(20) } });
      assert.equal(wrong.status, 401, p);
      await wrong.text();
      const ok = await srv.fetch(p, { headers: { Authorization: 'Bearer ' + token } });
      assert.equal(ok.status, 200, p);
      await ok.text();
    }
    assert.equal((await srv.fetch('/health')).status, 200);
    assert.equal((await srv.fetch('/ready')).status, 200);
    assert.ok(!srv.logs().includes(token), 'the token is never logged');
  });

  test('check-config shows METRICS_TOKEN as ***', async () => {
    const r = await runBinary(['check-config'], { env: { METRICS_TOKEN: token } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^METRICS_TOKEN=\*\*\*$/m);
    assert.ok(!r.stdout.includes(token));
  });
});

// /proc/<pid>/status VmRSS in bytes.
const rss = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)[1]) * 1024;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('pipelining from a client that never reads', () => {
  let srv;
  // ASan keeps freed memory in a 256 MB quarantine by default, which would
  // show up as RSS growth while the answers are written: keep it small so RSS
  // measures what is live (release builds ignore ASAN_OPTIONS).
  before(async () => {
    srv = await startServer({ env: { HTTP_SEND_BUFFER_BYTES: '262144', ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=4:thread_local_quarantine_size_kb=64' } });
  });
  after(async () => { assert.equal((await srv.stop()).code, 0, srv.logs().slice(-2000)); });

  test('output is bounded, others are served, and every answer arrives in order once it reads', async (t) => {
    const pid = srv.child.pid;
    // warm up (allocator, caches), then take the baseline
    for (let i = 0; i < 20; i++) await (await srv.fetch('/health')).text();
    const base = rss(pid);
    const N = 120000;                // ~6.6 MB of requests, ~35 MB of answers
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((res) => sock.on('connect', res));
    sock.pause();                    // never read (until the end)
    let sent = 0, peak = base, stalled = false;
    const started = Date.now();
    // write until the kernel refuses (the server stopped reading) or all is sent
    while (sent < N && Date.now() - started < 60000) {
      let chunk = '';
      for (let k = 0; k < 500 && sent < N; k++, sent++) chunk += `GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: r${sent}\r\n\r\n`;
      if (!sock.write(chunk)) {
        const drained = await Promise.race([new Promise((r) => sock.once('drain', () => r(true))), sleep(1500).then(() => false)]);
        peak = Math.max(peak, rss(pid));
        if (!drained) { stalled = true; break; }
      }
    }
    await sleep(1000);
    peak = Math.max(peak, rss(pid));
    t.diagnostic(`not reading: sent ${sent} requests, RSS ${(base / 1048576).toFixed(1)} → ${(peak / 1048576).toFixed(1)} MB`);
    assert.ok(stalled, `the server stopped reading (sent ${sent} of ${N} requests)`);
    assert.ok(peak - base < 24 * 1024 * 1024, `RSS grew by ${((peak - base) / 1048576).toFixed(1)} MB`);

    // another client is served promptly meanwhile
    const t0 = Date.now();
    const h = await srv.fetch('/health');
    assert.equal(h.status, 200);
    await h.text();
    assert.ok(Date.now() - t0 < 2000, `another client waited ${Date.now() - t0} ms`);
    const m = await (await srv.fetch('/metrics')).text();
    assert.match(m, /http_server_output_paused_total [1-9]/);

    // now read: every answer arrives, in order, while the rest is sent
    let got = '', next = 0, bad = null;
    sock.on('data', (d) => {
      got += d.toString('latin1');
      let i;
      while ((i = got.indexOf('"status":"pass"}')) >= 0) {
        const id = (got.slice(0, i).match(/X-Request-ID: r(\d+)\r\n/) || [])[1];
        if (Number(id) !== next && !bad) bad = `expected r${next}, got r${id}`;
        next++;
        got = got.slice(i + 16);
      }
    });
    sock.resume();
    while (sent < N) {
      let chunk = '';
      for (let k = 0; k < 500 && sent < N; k++, sent++) chunk += `GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: r${sent}\r\n\r\n`;
      if (!sock.write(chunk)) await new Promise((r) => sock.once('drain', r));
      peak = Math.max(peak, rss(pid));
    }
    const deadline = Date.now() + 120000;
    while (next < N && Date.now() < deadline && !bad) await sleep(100);
    sock.destroy();
    t.diagnostic(`reading: ${next} answers, peak RSS ${(peak / 1048576).toFixed(1)} MB`);
    assert.equal(bad, null);
    assert.equal(next, N, 'every pipelined request was answered');
    assert.ok(peak - base < 24 * 1024 * 1024, `RSS grew by ${((peak - base) / 1048576).toFixed(1)} MB while it read`);
  });
});
