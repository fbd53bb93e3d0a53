// The core server as a black box: HTTP/1.1 behaviour, limits, CORS, the
// WebSocket endpoint, configuration errors and graceful shutdown.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, runBinary, rawRequest, randomKey } from './lib/server.mjs';
import { rawWs, frame, closeCode } from './lib/rawws.mjs';

const until = (s) => (buf) => buf.includes(s);
const countResponses = (n) => (buf) => (buf.match(/HTTP\/1\.1 \d{3}/g) || []).length >= n && buf.endsWith('}');

describe('HTTP/1.1', () => {
  let srv;
  before(async () => {
    srv = await startServer({
      env: {
        CORS_ORIGINS: 'https://app.example.test,https://crm.example.test',
        MAX_BODY_BYTES: '4096',
        HTTP_HEADER_TIMEOUT_MS: '1000',
        HTTP_IDLE_TIMEOUT_MS: '1500',
      },
    });
  });
  after(async () => {
    const r = await srv.stop();
    assert.equal(r.code, 0, 'clean exit (LeakSanitizer would make it non-zero)\n' + srv.logs().slice(-2000));
  });

  test('GET /health answers 200 with the standard headers', async () => {
    const r = await srv.fetch('/health');
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'pass' });
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.equal(r.headers.get('content-length'), '17');
    assert.match(r.headers.get('date'), /GMT$/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(r.headers.get('x-frame-options'), 'DENY');
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
    assert.match(r.headers.get('x-request-id'), /^[0-9a-f]{8}-[0-9a-f]{12}$/);
    assert.equal(r.headers.get('strict-transport-security'), null);
  });

  test('X-Request-ID is accepted, echoed and logged', async () => {
    const id = 'test-' + randomKey(6);
    const r = await srv.fetch('/health', { headers: { 'X-Request-ID': id } });
    assert.equal(r.headers.get('x-request-id'), id);
    await srv.waitForLog(`"request_id":"${id}"`);
    const line = srv.logs().split('\n').find((l) => l.includes(id));
    const rec = JSON.parse(line);
    assert.equal(rec.method, 'GET');
    assert.equal(rec.route, '/health');
    assert.equal(rec.status, 200);
    assert.equal(typeof rec.duration_ms, 'number');
    assert.equal(rec.level, 'info');
  });

  test('an invalid X-Request-ID is replaced', async () => {
    const r = await srv.fetch('/health', { headers: { 'X-Request-ID': 'bad id with spaces' } });
    assert.notEqual(r.headers.get('x-request-id'), 'bad id with spaces');
  });

  test('keep-alive: two requests on one connection', async () => {
    const req = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = await rawRequest(srv.port, req, { until: until('pass') });
    // HTTP/1.1 persists by default: no Connection header on a kept connection
    assert.doesNotMatch(r.data, /^Connection:/im);
    // the same socket serves a second request
    const net = await import('node:net');
    const sock = net.connect(srv.port, '127.0.0.1');
    let got = '';
    await new Promise((res) => sock.on('connect', res));
    sock.write(req);
    await new Promise((res) => sock.on('data', function h(d) { got += d; if ((got.match(/pass/g) || []).length >= 1) { sock.off('data', h); res(); } }));
    sock.write(req);
    await new Promise((res) => sock.on('data', function h(d) { got += d; if ((got.match(/pass/g) || []).length >= 2) { sock.off('data', h); res(); } }));
    assert.equal((got.match(/HTTP\/1\.1 200 OK/g) || []).length, 2);
    assert.equal(sock.destroyed, false);
    sock.destroy();
  });

  test('pipelined requests are answered in order', async () => {
    const reqs = 'GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: p1\r\n\r\n' +
      'GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-ID: p2\r\n\r\n' +
      'GET /ready HTTP/1.1\r\nHost: x\r\nX-Request-ID: p3\r\n\r\n';
    const r = await rawRequest(srv.port, reqs, { until: (b) => (b.match(/X-Request-ID: p\d/g) || []).length === 3 && b.endsWith('}') });
    const ids = [...r.data.matchAll(/X-Request-ID: (p\d)/g)].map((m) => m[1]);
    const statuses = [...r.data.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(ids, ['p1', 'p2', 'p3']);
    assert.deepEqual(statuses, [200, 404, 200]);
  });

  test('HTTP/1.0 with Connection: keep-alive is told keep-alive and kept open', async () => {
    const net = await import('node:net');
    const sock = net.connect(srv.port, '127.0.0.1');
    let got = '';
    sock.on('data', (d) => { got += d; });
    await new Promise((res) => sock.on('connect', res));
    const req = 'GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n';
    sock.write(req);
    for (let i = 0; i < 100 && (got.match(/pass/g) || []).length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(got, /^HTTP\/1\.1 200 [^]*\r\nConnection: keep-alive\r\n/);
    sock.write(req);
    for (let i = 0; i < 100 && (got.match(/pass/g) || []).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal((got.match(/HTTP\/1\.1 200 OK/g) || []).length, 2);
    assert.equal(sock.destroyed, false);
    sock.destroy();
  });

  test('HTTP/1.0 without keep-alive closes after the response', async () => {
    const r = await rawRequest(srv.port, 'GET /health HTTP/1.0\r\n\r\n');
    assert.equal(r.closed, true);
    assert.match(r.data, /Connection: close/);
    assert.match(r.data, /"status":"pass"/);
  });

  test('unknown route → 404 with the JSON error body', async () => {
    const r = await srv.fetch('/no/such/route');
    assert.equal(r.status, 404);
    const body = await r.json();
    assert.equal(body.error.code, 'not_found');
    assert.equal(typeof body.error.message, 'string');
    assert.equal(body.error.request_id, r.headers.get('x-request-id'));
  });

  test('known path, wrong method → 405 with Allow', async () => {
    const r = await srv.fetch('/health', { method: 'DELETE' });
    assert.equal(r.status, 405);
    assert.match(r.headers.get('allow'), /GET/);
    assert.match(r.headers.get('allow'), /HEAD/);
    assert.equal((await r.json()).error.code, 'method_not_allowed');
  });

  test('HEAD answers the headers of GET without a body', async () => {
    const r = await rawRequest(srv.port, 'HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.match(r.data, /^HTTP\/1\.1 200/);
    assert.match(r.data, /Content-Length: 17/);
    assert.ok(r.data.endsWith('\r\n\r\n'), 'no body after the head');
  });

  test('header block over 16 KiB → 431', async () => {
    const big = 'X-Big: ' + 'a'.repeat(17 * 1024) + '\r\n';
    const r = await rawRequest(srv.port, `GET /health HTTP/1.1\r\nHost: x\r\n${big}\r\n`, { until: until('}') });
    assert.match(r.data, /^HTTP\/1\.1 431/);
    assert.match(r.data, /"code":"headers_too_large"/);
  });

  test('more than 100 headers → 431', async () => {
    let h = '';
    for (let i = 0; i < 101; i++) h += `X-H${i}: v\r\n`;
    const r = await rawRequest(srv.port, `GET /health HTTP/1.1\r\nHost: x\r\n${h}\r\n`, { until: until('}') });
    assert.match(r.data, /^HTTP\/1\.1 431/);
  });

  test('Content-Length over MAX_BODY_BYTES → 413 before the body is read', async () => {
    const r = await rawRequest(srv.port, 'POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n', { until: until('}') });
    assert.match(r.data, /^HTTP\/1\.1 413/);
    assert.match(r.data, /"code":"body_too_large"/);
  });

  test('chunked body over MAX_BODY_BYTES → 413', async () => {
    const chunk = 'a'.repeat(3000);
    const body = `bb8\r\n${chunk}\r\nbb8\r\n${chunk}\r\n0\r\n\r\n`;
    const r = await rawRequest(srv.port, `POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${body}`, { until: until('}') });
    assert.match(r.data, /^HTTP\/1\.1 413/);
  });

  test('a small chunked body is consumed and the connection stays usable', async () => {
    const req1 = 'POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    const req2 = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n';
    const r = await rawRequest(srv.port, req1 + req2, { until: (b) => /"status":"pass"/.test(b) });
    const statuses = [...r.data.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [405, 200]);
  });

  test('malformed request line → 400 and close', async () => {
    const r = await rawRequest(srv.port, 'GARBAGE\r\n\r\n');
    assert.match(r.data, /^HTTP\/1\.1 400/);
    assert.equal(r.closed, true);
  });

  test('request head not complete in time → 408', async () => {
    const t0 = Date.now();
    const r = await rawRequest(srv.port, 'GET /health HTTP/1.1\r\nHost: x\r\n', { timeout: 5000 });
    assert.match(r.data, /^HTTP\/1\.1 408/);
    assert.match(r.data, /"code":"request_timeout"/);
    assert.equal(r.closed, true);
    assert.ok(Date.now() - t0 >= 900, 'not before the timeout');
  });

  test('idle keep-alive connection is closed', async () => {
    const t0 = Date.now();
    const r = await rawRequest(srv.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n', { timeout: 6000 });
    assert.equal(r.closed, true);
    assert.equal((r.data.match(/HTTP\/1\.1 /g) || []).length, 1);
    assert.match(r.data, /^HTTP\/1\.1 200 /);
    assert.ok(Date.now() - t0 >= 1400, 'not before the idle timeout');
  });

  test('a connection that sends nothing is closed silently at the head timeout', async () => {
    const t0 = Date.now();
    const r = await rawRequest(srv.port, null, { timeout: 6000 });
    assert.equal(r.closed, true);
    assert.equal(r.data, '');
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 1400 + 1000, `closed after ${took} ms (head timeout 1000, idle 1500)`);
  });

  test('CORS preflight from an allowed origin', async () => {
    const r = await srv.fetch('/health', {
      method: 'OPTIONS',
      headers: { Origin: 'https://crm.example.test', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, x-csrf-token' },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://crm.example.test');
    assert.equal(r.headers.get('access-control-allow-credentials'), 'true');
    assert.match(r.headers.get('access-control-allow-methods'), /POST/);
    assert.match(r.headers.get('access-control-allow-headers'), /x-csrf-token/);
    assert.match(r.headers.get('vary'), /Origin/);
  });

  test('CORS preflight from another origin is refused', async () => {
    const r = await srv.fetch('/health', {
      method: 'OPTIONS',
      headers: { Origin: 'https://evil.example.test', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(r.status, 403);
    assert.equal(r.headers.get('access-control-allow-origin'), null);
  });

  test('simple CORS request gets the origin echoed only when allowed', async () => {
    const ok = await srv.fetch('/health', { headers: { Origin: 'https://app.example.test' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://app.example.test');
    const no = await srv.fetch('/health', { headers: { Origin: 'https://evil.example.test' } });
    assert.equal(no.headers.get('access-control-allow-origin'), null);
  });

  test('X-Forwarded-* are ignored without TRUST_PROXY', async () => {
    const id = 'xff-' + randomKey(4);
    const r = await srv.fetch('/health', { headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '203.0.113.9', 'X-Request-ID': id } });
    assert.equal(r.headers.get('strict-transport-security'), null);
    await srv.waitForLog(id);
    const rec = JSON.parse(srv.logs().split('\n').find((l) => l.includes(id)));
    assert.equal(rec.ip, '127.0.0.1');
  });

  test('/ready, /health/details and /metrics', async () => {
    const ready = await srv.fetch('/ready');
    assert.equal(ready.status, 200);
    const d = await srv.fetch('/health/details');
    assert.equal(d.headers.get('content-type'), 'application/health+json');
    const doc = await d.json();
    assert.ok(['pass', 'warn'].includes(doc.status));
    assert.equal(typeof doc.checks, 'object');
    const m = await srv.fetch('/metrics');
    assert.match(m.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const text = await m.text();
    assert.match(text, /# TYPE http_server_request_duration_seconds histogram/);
    assert.match(text, /http_server_request_duration_seconds_count\{[^}]*http_route="\/health"[^}]*http_response_status_code="200"[^}]*\} \d+/);
    assert.match(text, /process_resident_memory_bytes \d+/);
    assert.match(text, /websocket_connections \d+/);
  });
});

describe('TRUST_PROXY=1', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { TRUST_PROXY: '1' } }); });
  after(async () => { assert.equal((await srv.stop()).code, 0); });

  test('HSTS over https and the client IP from the right-most X-Forwarded-For entry', async () => {
    const id = 'tp-' + randomKey(4);
    // The left-most entry is whatever the client sent; the proxy appended the right-most.
    const r = await srv.fetch('/health', { headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '10.6.6.6, 203.0.113.9', 'X-Request-ID': id } });
    assert.match(r.headers.get('strict-transport-security'), /max-age=\d+/);
    await srv.waitForLog(id);
    const rec = JSON.parse(srv.logs().split('\n').find((l) => l.includes(id)));
    assert.equal(rec.ip, '203.0.113.9');
  });
});

describe('WebSocket on the same port', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { WS_MAX_MESSAGE_BYTES: '1024' } }); });
  after(async () => { assert.equal((await srv.stop()).code, 0, srv.logs().slice(-2000)); });

  const open = () => new Promise((resolve, reject) => {
    const ws = new WebSocket(srv.wsUrl());
    const msgs = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
    ws.on('open', () => resolve({ ws, msgs }));
    ws.on('error', reject);
  });
  const waitFor = async (msgs, pred, ms = 3000) => {
    const t = Date.now() + ms;
    while (Date.now() < t) { const m = msgs.find(pred); if (m) return m; await new Promise((r) => setTimeout(r, 10)); }
    throw new Error('timeout; got ' + JSON.stringify(msgs));
  };

  test('handshake, welcome, ping → pong with the id echoed', async () => {
    const { ws, msgs } = await open();
    const welcome = await waitFor(msgs, (m) => m.type === 'welcome');
    assert.equal(typeof welcome.conn_id, 'number');
    assert.equal(welcome.heartbeat_s, 25);
    ws.send(JSON.stringify({ type: 'ping', id: 'abc' }));
    const pong = await waitFor(msgs, (m) => m.type === 'pong');
    assert.equal(pong.id, 'abc');
    ws.close(1000);
    const code = await new Promise((r) => ws.on('close', (c) => r(c)));
    assert.equal(code, 1000);
  });

  test('unknown type and bad JSON → error, the connection stays', async () => {
    const { ws, msgs } = await open();
    ws.send(JSON.stringify({ type: 'dance', id: 7, extra: true }));
    const e1 = await waitFor(msgs, (m) => m.type === 'error' && m.id === 7);
    assert.equal(e1.code, 'unknown_type');
    ws.send('{not json');
    const e2 = await waitFor(msgs, (m) => m.type === 'error' && m.code === 'bad_json');
    assert.ok(e2);
    ws.send(JSON.stringify({ type: 'ping', id: 8 }));
    await waitFor(msgs, (m) => m.type === 'pong' && m.id === 8);
    assert.equal(ws.readyState, WebSocket.OPEN);
    ws.terminate();
  });

  test('server answers a protocol ping with a pong carrying the payload', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x9, 'hi'));
    const pong = await c.until((fs) => fs.find((f) => f.opcode === 0xA));
    assert.equal(pong.payload.toString(), 'hi');
    c.end();
  });

  test('fragmented text message is reassembled', async () => {
    const c = await rawWs(srv.port);
    const msg = JSON.stringify({ type: 'ping', id: 'frag' });
    c.send(frame(0x1, msg.slice(0, 5), { fin: false }));
    c.send(frame(0x0, msg.slice(5, 12), { fin: false }));
    c.send(frame(0x9, 'x'));  // control frames may come between fragments
    c.send(frame(0x0, msg.slice(12), { fin: true }));
    const pong = await c.until((fs) => fs.map((f) => f.opcode === 1 && JSON.parse(f.payload)).find((m) => m && m.type === 'pong'));
    assert.equal(pong.id, 'frag');
    c.end();
  });

  test('oversized frame → close 1009', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x1, 'a'.repeat(2000)));
    const f = await c.closeFrame();
    assert.equal(closeCode(f), 1009);
    c.end();
  });

  test('oversized fragmented message → close 1009', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x1, 'a'.repeat(800), { fin: false }));
    c.send(frame(0x0, 'a'.repeat(800), { fin: true }));
    assert.equal(closeCode(await c.closeFrame()), 1009);
    c.end();
  });

  test('invalid UTF-8 in a text message → close 1007', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x1, Buffer.from([0x7b, 0xc3, 0x28, 0x7d])));
    assert.equal(closeCode(await c.closeFrame()), 1007);
    c.end();
  });

  test('unmasked client frame → close 1002', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x1, '{"type":"ping"}', { mask: false }));
    assert.equal(closeCode(await c.closeFrame()), 1002);
    c.end();
  });

  test('reserved opcode → close 1002', async () => {
    const c = await rawWs(srv.port);
    c.send(frame(0x3, 'x'));
    assert.equal(closeCode(await c.closeFrame()), 1002);
    c.end();
  });

  test('client close is echoed and the server closes the socket', async () => {
    const c = await rawWs(srv.port);
    const p = Buffer.alloc(2); p.writeUInt16BE(4001);
    c.send(frame(0x8, p));
    assert.equal(closeCode(await c.closeFrame()), 4001);
    await c.until(() => c.closed, 3000);
    assert.equal(c.closed, true);
  });

  test('frames sent together with the handshake are not lost', async () => {
    const { randomBytes } = await import('node:crypto');
    const key = randomBytes(16).toString('base64');
    const hs = `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const early = frame(0x1, JSON.stringify({ type: 'ping', id: 'early' }));
    const r = await rawRequest(srv.port, Buffer.concat([Buffer.from(hs), early]), { until: (b) => b.includes('"early"') });
    assert.match(r.data, /^HTTP\/1\.1 101/);
    assert.match(r.data, /"type":"pong","id":"early"/);
  });

  test('an upgrade pipelined behind an asynchronous request', async () => {
    const { randomBytes } = await import('node:crypto');
    const key = randomBytes(16).toString('base64');
    const first = 'GET /api/market/categories HTTP/1.1\r\nHost: x\r\n\r\n';
    const hs = `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const early = frame(0x1, JSON.stringify({ type: 'ping', id: 'behind' }));
    const r = await rawRequest(srv.port, Buffer.concat([Buffer.from(first + hs), early]), { until: (b) => b.includes('"behind"') });
    const i200 = r.data.indexOf('HTTP/1.1 200'), i101 = r.data.indexOf('HTTP/1.1 101');
    assert.ok(i200 >= 0 && i101 > i200, 'the 200 comes first, then the 101');
    assert.match(r.data, /"type":"pong","id":"behind"/);
  });

  test('GET /ws without an upgrade → 426', async () => {
    const r = await srv.fetch('/ws');
    assert.equal(r.status, 426);
    assert.equal((await r.json()).error.code, 'upgrade_required');
  });

  test('metrics count WebSocket connections and messages', async () => {
    const { ws, msgs } = await open();
    await waitFor(msgs, (m) => m.type === 'welcome');
    const text = await (await srv.fetch('/metrics')).text();
    assert.match(text, /websocket_connections [1-9]/);
    assert.match(text, /websocket_messages_received_total [1-9]/);
    ws.terminate();
  });
});

describe('WebSocket server ping and silence', () => {
  test('pings every interval and drops a silent client', async () => {
    const srv = await startServer({ env: { WS_PING_INTERVAL_MS: '300', WS_IDLE_TIMEOUT_MS: '1200' } });
    try {
      const c = await rawWs(srv.port);
      // the raw client never answers pings: the server must ping, then give up on it
      await c.until((fs) => fs.filter((f) => f.opcode === 0x9).length >= 2, 3000);
      const f = await c.closeFrame(4000);
      assert.equal(closeCode(f), 1001);
      c.end();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });
});

describe('configuration', () => {
  test('WS_PORT other than PORT starts with a warning and serves /ws on PORT', async () => {
    const srv = await startServer({ env: { WS_PORT: '8082' } });
    try {
      assert.match(srv.logs(), /WS_PORT/);
      const warn = srv.logs().split('\n').filter((l) => l.includes('WS_PORT')).map((l) => JSON.parse(l));
      assert.equal(warn[0].level, 'warn');
      const c = await rawWs(srv.port);
      await c.until((fs) => fs.length >= 1);
      assert.equal(JSON.parse(c.frames[0].payload).type, 'welcome');
      c.end();
    } finally {
      assert.equal((await srv.stop()).code, 0);
    }
  });

  test('a bad value exits 2 with one line naming the variable', async () => {
    const r = await runBinary([], { env: { DB_POOL_MAX: 'lots' } });
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /DB_POOL_MAX/);
    assert.match(lines[0], /1 to/);
  });

  test('check-config prints the effective configuration with secrets as ***', async () => {
    const key = randomKey(16);
    const r = await runBinary(['check-config'], { env: { SERVICE_API_KEY: key, PORT: '12345' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^PORT=12345$/m);
    assert.match(r.stdout, /^SERVICE_API_KEY=\*\*\*$/m);
    assert.ok(!r.stdout.includes(key));
  });

  test('check-config exits 1 on an invalid configuration', async () => {
    const r = await runBinary(['check-config'], { env: { LOG_LEVEL: 'chatty' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /LOG_LEVEL/);
  });

  test('a port in use aborts the start', async () => {
    const a = await startServer();
    try {
      const r = await runBinary([], { env: { PORT: String(a.port), HOST: '127.0.0.1', SQLITE_PATH: a.dir + '/other.db' } });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /cannot listen/);
    } finally {
      await a.stop();
    }
  });

  test('version', async () => {
    const r = await runBinary(['version']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^osbackend \d+\.\d+\.\d+/);
  });
});

describe('graceful shutdown', () => {
  // A raw connection: what the server sent so far (text()) and its close.
  async function rawConn(port) {
    const net = await import('node:net');
    const sock = net.connect(port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    let got = '';
    sock.on('data', (d) => (got += d));
    const closed = new Promise((r) => sock.on('close', r));
    return { sock, text: () => got, closed };
  }

  test('SIGTERM: in-flight request still answered, /ready 503, WebSockets get 1001, exit 0', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '5000' } });
    const ws = await rawWs(srv.port);
    // a request whose head is still arriving when the signal comes
    const conn = await rawConn(srv.port);
    const sock = conn.sock;
    sock.write('GET /ready HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 100));
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    const f = await ws.closeFrame();
    assert.equal(closeCode(f), 1001);
    ws.end();
    sock.write('\r\n');
    await conn.closed;
    assert.match(conn.text(), /^HTTP\/1\.1 503/);
    assert.match(conn.text(), /Connection: close/);
    const r = await srv.exited;
    assert.equal(r.code, 0, srv.logs().slice(-2000));
    await srv.stop();
  });

  // The readiness window (SHUTDOWN_DRAIN_DELAY_MS): the listener keeps
  // serving while /ready says 503, every response ends its connection, and
  // only after the window do connects get refused and WebSockets 1001.
  test('SHUTDOWN_DRAIN_DELAY_MS: /ready 503 while new connections are still served (Connection: close), then the stop', async () => {
    const DELAY = 1500;
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '6000', SHUTDOWN_DRAIN_DELAY_MS: String(DELAY) } });
    const net = await import('node:net');
    const ws = await rawWs(srv.port);
    // a keep-alive connection opened before the signal
    const kaConn = await rawConn(srv.port);
    const ka = kaConn.sock;
    ka.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    for (let i = 0; i < 100 && !/\r\n\r\n[^]*pass/.test(kaConn.text()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.match(kaConn.text(), /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(kaConn.text(), /Connection: close/);
    assert.equal((await rawRequest(srv.port, 'GET /ready HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => /\}$/.test(d) })).data.slice(0, 12), 'HTTP/1.1 200');

    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    const untilBody = (d) => /\r\n\r\n[^]*\}\s*$/.test(d);
    // new connections: accepted and served, each answer closing its connection
    const ready = await rawRequest(srv.port, 'GET /ready HTTP/1.1\r\nHost: x\r\n\r\n', { until: untilBody });
    assert.match(ready.data, /^HTTP\/1\.1 503 /);
    assert.match(ready.data, /Connection: close/i);
    assert.match(ready.data, /shutting down/);
    const health = await rawRequest(srv.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(health.data, /^HTTP\/1\.1 200 /);
    assert.match(health.data, /Connection: close/i);
    assert.ok(health.closed, 'the server closed the connection after its answer');
    const details = await srv.fetch('/health/details');
    assert.equal((await details.json()).output, 'shutting down');
    // the connection opened before: served, then closed by the server
    const before = kaConn.text().length;
    ka.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await kaConn.closed;
    assert.match(kaConn.text().slice(before), /^HTTP\/1\.1 200 [^]*Connection: close/);
    // the WebSocket is still open inside the window
    assert.ok(!ws.frames.some((f) => f.opcode === 8) && !ws.closed, 'WebSocket closed inside the drain window');
    assert.ok(Date.now() - t0 < DELAY, `the checks above took ${Date.now() - t0} ms, past the window: the test proves nothing`);
    // after the window: 1001, then connects are refused
    const f = await ws.closeFrame(DELAY + 3000);
    assert.equal(closeCode(f), 1001);
    assert.ok(Date.now() - t0 >= DELAY - 50, `1001 after ${Date.now() - t0} ms, before the ${DELAY} ms window ended`);
    ws.end();
    const refused = await new Promise((resolve) => {
      const sk = net.connect(srv.port, '127.0.0.1');
      sk.on('connect', () => { sk.destroy(); resolve(false); });
      sk.on('error', () => resolve(true));
    });
    assert.ok(refused, 'a connect after the window was accepted');
    const r = await srv.exited;
    assert.equal(r.code, 0, srv.logs().slice(-2000));
    assert.ok(Date.now() - t0 < 6000, 'exit within SHUTDOWN_TIMEOUT_MS from the signal');
    assert.match(srv.logs(), /drain window over/);
    await srv.stop();
  });

  test('a second signal during the drain window ends it: the stop starts at once, exit 0', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '60000', SHUTDOWN_DRAIN_DELAY_MS: '30000' } });
    const ws = await rawWs(srv.port);
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    const ready = await rawRequest(srv.port, 'GET /ready HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => /\}\s*$/.test(d) });
    assert.match(ready.data, /^HTTP\/1\.1 503 /);
    const t0 = Date.now();
    srv.child.kill('SIGINT');
    assert.equal(closeCode(await ws.closeFrame(3000)), 1001);
    ws.end();
    const r = await srv.exited;
    assert.equal(r.code, 0, srv.logs().slice(-2000));
    assert.ok(Date.now() - t0 < 3000, `exit took ${Date.now() - t0} ms after the second signal`);
    assert.match(srv.logs(), /second SIGINT: ending the drain window early/);
    await srv.stop();
  });

  test('SHUTDOWN_DRAIN_DELAY_MS not below SHUTDOWN_TIMEOUT_MS is refused at start', async () => {
    const r = await runBinary([], { env: { SHUTDOWN_TIMEOUT_MS: '3000', SHUTDOWN_DRAIN_DELAY_MS: '3000', PORT: '0', HOST: '127.0.0.1' } });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /SHUTDOWN_DRAIN_DELAY_MS \(3000\) must be below SHUTDOWN_TIMEOUT_MS \(3000\)/);
  });

  test('a connection accepted but silent at the stop may still send its first request for a moment', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '5000' } });
    const net = await import('node:net');
    const conn = await rawConn(srv.port);
    const sock = conn.sock;
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    // the request a client sent right after its handshake, arriving just after the stop
    await new Promise((r) => setTimeout(r, 50));
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await conn.closed;
    assert.match(conn.text(), /^HTTP\/1\.1 200 [^]*Connection: close/);
    const r = await srv.exited;
    assert.equal(r.code, 0);
    assert.ok(Date.now() - t0 < 2000, `exit ${Date.now() - t0} ms after SIGTERM`);
    // and one that stays silent is closed after the grace, not at the timeout
    const srv2 = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '20000' } });
    const quiet = net.connect(srv2.port, '127.0.0.1');
    await new Promise((r) => quiet.on('connect', r));
    quiet.on('error', () => {});
    const t1 = Date.now();
    srv2.child.kill('SIGTERM');
    const r2 = await srv2.exited;
    assert.equal(r2.code, 0);
    assert.ok(Date.now() - t1 < 2000, `a silent connection held the exit for ${Date.now() - t1} ms`);
    quiet.destroy();
    await srv.stop();
    await srv2.stop();
  });

  test('a first request that begins within the stop grace gets the head timeout, not the grace', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '8000', HTTP_HEADER_TIMEOUT_MS: '5000' } });
    const conn = await rawConn(srv.port);
    const sock = conn.sock;
    await new Promise((r) => setTimeout(r, 100));
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    sock.write('GET /he');                       // begins inside the grace (no URL yet)…
    await new Promise((r) => setTimeout(r, 1300)); // …and ends after the grace and two sweeps
    sock.write('alth HTTP/1.1\r\nHost: x\r\n\r\n');
    await conn.closed;
    assert.match(conn.text(), /^HTTP\/1\.1 200 [^]*Connection: close/, `answer: ${JSON.stringify(conn.text().slice(0, 80))}`);
    assert.equal((await srv.exited).code, 0);
  });

  test('a second signal exits at once', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '20000' } });
    const net = await import('node:net');
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n');  // keeps the shutdown waiting
    await new Promise((r) => setTimeout(r, 100));
    srv.child.kill('SIGTERM');
    await srv.waitForLog('shutting down');
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    const r = await srv.exited;
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(r.code, 1);
    sock.destroy();
    await srv.stop('SIGTERM', { expectExit: false });   // it exited 1 on purpose
  });

  test('shutdown timeout closes what is left and still exits 0', async () => {
    const srv = await startServer({ env: { SHUTDOWN_TIMEOUT_MS: '500' } });
    const net = await import('node:net');
    const sock = net.connect(srv.port, '127.0.0.1');
    await new Promise((r) => sock.on('connect', r));
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    srv.child.kill('SIGTERM');
    const r = await srv.exited;
    assert.equal(r.code, 0, srv.logs().slice(-1500));
    assert.ok(Date.now() - t0 < 3000);
    assert.match(srv.logs(), /shutdown timeout/);
    sock.destroy();
    await srv.stop();
  });
});
