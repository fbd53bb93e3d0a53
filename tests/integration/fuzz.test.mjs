// Mutation smoke-fuzz of the two parsers on the wire: HTTP/1.1 request heads
// and bodies, and WebSocket frames after a valid handshake. A fixed seed
// keeps every run identical. The server (ASan/UBSan build) must answer or
// close each case, keep serving, and exit 0 at the end (no sanitizer report,
// no leak).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { frame } from './lib/rawws.mjs';

// OSB_FUZZ_SEED and OSB_FUZZ_SCALE allow longer runs by hand; CI uses the defaults.
let seed = Number(process.env.OSB_FUZZ_SEED || 0x9e3779b9) >>> 0 || 1;
const SCALE = Number(process.env.OSB_FUZZ_SCALE || 1);
function rnd(n) {             // xorshift32, deterministic
  seed ^= seed << 13; seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5; seed >>>= 0;
  return n ? seed % n : seed;
}

const corpus = [
  'GET /health HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /api/market/procedures?category=Veneers&limit=5&sort=growth_desc HTTP/1.1\r\nHost: x\r\n\r\n',
  'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{"email":"a@b.test","password":"0123456789"}',
  'POST /api/realtime/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{"a":\r\n3\r\n1}\n\r\n0\r\n\r\n',
  'OPTIONS /api/auth/me HTTP/1.1\r\nHost: x\r\nOrigin: https://a.test\r\nAccess-Control-Request-Method: PATCH\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
  // issue 8 shapes: trailers, whitespace before the colon, request-target forms,
  // Host and version rules, encoded slashes, invalid UTF-8 in the path
  'GET /api/market/categories HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nCookie: a=1\r\n\r\n0\r\nX-Trailer: 1\r\nCookie: b=2\r\n\r\n',
  'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n',
  'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length : 27\r\nX A: b\r\n\r\n0\r\n\r\n',
  'GET http://127.0.0.1:1/health?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n',
  'GET /health HTTP/2.0\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
  'GET /api%2Fmarket%2Fcategories HTTP/1.1\r\nHost: x\r\n\r\nGET /%ff%C3%28%E2%82 HTTP/1.1\r\nHost: x\r\n\r\n',
];
const tokens = ['\r\n', '\r\n\r\n', ':', '%', '%zz', '?', '&', '=', ' ', '\0', '\xff', 'Content-Length: 99999999999999999999\r\n',
  'Transfer-Encoding: chunked\r\n', 'ffffffffffffffff\r\n', 'HTTP/1.0', 'Connection: close\r\n', '/..', '\t', 'a'.repeat(300),
  ' :', 'Host: y\r\n', 'http://h', '*', '%2F', 'HTTP/2.0', '0\r\nX-T: 1\r\n\r\n', '\xc3', '\xe2\x82', 'Trailer: X-T\r\n'];

function mutate(s) {
  let b = Buffer.from(s, 'latin1');
  const ops = 1 + rnd(4);
  for (let i = 0; i < ops; i++) {
    const at = rnd(b.length + 1);
    switch (rnd(5)) {
      case 0: if (b.length) b[rnd(b.length)] = rnd(256); break;                       // flip a byte
      case 1: b = b.subarray(0, at); break;                                            // truncate
      case 2: b = Buffer.concat([b.subarray(0, at), Buffer.from(tokens[rnd(tokens.length)], 'latin1'), b.subarray(at)]); break;
      case 3: { const n = rnd(20); b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]); break; }
      default: b = Buffer.concat([b, b.subarray(0, rnd(b.length + 1))]); break;       // pipeline a fragment again
    }
  }
  return b;
}

function wsFrames() {
  const out = [];
  const n = 1 + rnd(4);
  for (let i = 0; i < n; i++) {
    const op = [0, 1, 2, 8, 9, 10, 3, 11][rnd(8)];
    const len = [0, 1, 2, 125, 126, 200, 65535, 70000][rnd(8)];
    const payload = rnd(2) ? randomBytes(len) : Buffer.from(JSON.stringify({ type: ['ping', 'subscribe', 'publish', 'auth', 'x'][rnd(5)], channel: 'market:all', id: rnd(9), data: 1 }).slice(0, len || undefined));
    let f = frame(op, payload, { mask: rnd(10) !== 0, fin: rnd(4) !== 0, rsv: rnd(10) === 0 ? 1 + rnd(7) : 0 });
    if (rnd(6) === 0 && f.length > 2) f = f.subarray(0, rnd(f.length));   // cut mid-frame
    if (rnd(8) === 0 && f.length > 2) f[1 + rnd(f.length - 1)] ^= 1 << rnd(8);
    out.push(f);
  }
  return Buffer.concat(out);
}

function oneCase(port, bytes, ms = 2000) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = 0;
    const t = setTimeout(() => { sock.destroy(); resolve({ got, timedOut: true }); }, ms);
    sock.on('connect', () => { sock.write(bytes); setTimeout(() => sock.end(), 20); });
    sock.on('data', (d) => { got += d.length; });
    sock.on('close', () => { clearTimeout(t); resolve({ got, timedOut: false }); });
    sock.on('error', () => {});
  });
}

let srv;
before(async () => {
  srv = await startServer({ env: { CORS_ORIGINS: 'https://a.test', MAX_BODY_BYTES: '65536', WS_MAX_MESSAGE_BYTES: '65536', RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000' } });
});
after(async () => {
  const r = await srv.stop();
  assert.equal(r.code, 0, 'the server exits cleanly after the fuzz run\n' + srv.logs().slice(-3000));
  assert.doesNotMatch(srv.logs(), /AddressSanitizer|runtime error|LeakSanitizer/);
});

test('mutated HTTP requests are answered or closed, never crash or hang the server', async () => {
  let hung = 0;
  for (let i = 0; i < 600 * SCALE; i++) {
    const base = corpus[rnd(corpus.length)];
    const r = await oneCase(srv.port, mutate(base));
    if (r.timedOut) hung++;
  }
  assert.equal(hung, 0, 'every case ended once the client half-closed');
  const h = await srv.fetch('/health');
  assert.equal(h.status, 200);
});

// Pipelined floods: several connections pipeline mutated requests (many
// copies each) without reading, then read: every connection ends (answered
// or closed), and the server keeps serving.
function flood(port, bytes, holdMs) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = 0;
    const t = setTimeout(() => { sock.destroy(); resolve({ got, timedOut: true }); }, holdMs + 20000);
    sock.on('connect', () => {
      sock.pause();
      sock.write(bytes);
      setTimeout(() => { sock.resume(); sock.end(); }, holdMs);
    });
    sock.on('data', (d) => { got += d.length; });
    sock.on('close', () => { clearTimeout(t); resolve({ got, timedOut: false }); });
    sock.on('error', () => {});
  });
}

test('pipelined floods of mutated requests from clients that read late', async () => {
  let hung = 0;
  for (let round = 0; round < 4 * SCALE; round++) {
    const jobs = [];
    for (let k = 0; k < 4; k++) {
      const parts = [];
      const one = rnd(3) === 0 ? mutate(corpus[rnd(corpus.length)]) : Buffer.from(corpus[rnd(2)], 'latin1');
      for (let i = 0; i < 2000 + rnd(4000); i++) parts.push(i % 97 === 96 ? mutate(corpus[rnd(corpus.length)]) : one);
      jobs.push(flood(srv.port, Buffer.concat(parts), 300 + rnd(700)));
    }
    for (const r of await Promise.all(jobs)) if (r.timedOut) hung++;
    const h = await srv.fetch('/health');
    assert.equal(h.status, 200);
  }
  assert.equal(hung, 0, 'every flood ended once its client read and half-closed');
});

test('random WebSocket frames after a valid handshake never crash the server', async () => {
  const hs = Buffer.from(corpus[5], 'latin1');  // the WebSocket handshake
  let hung = 0;
  for (let i = 0; i < 400 * SCALE; i++) {
    const r = await oneCase(srv.port, Buffer.concat([hs, wsFrames()]));
    if (r.timedOut) hung++;
  }
  assert.equal(hung, 0);
  const h = await srv.fetch('/health');
  assert.equal(h.status, 200);
});
