// Connection limits at the edge (issue 8, defect 4), black-box against the
// real binary: the head timeout counts from accept, MAX_CONNECTIONS_PER_IP
// (HTTP and WebSocket together; the forwarded address behind TRUST_PROXY),
// and the fd limit (accept-and-close with a log line, no spinning, served
// again once the flood ends).
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, BIN } from './lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A raw client socket that remembers what it received and when it closed.
function openSocket(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.data = '';
    s.closedAt = 0;
    s.gone = new Promise((r) => s.on('close', () => { s.closedAt = Date.now(); r(); }));
    s.on('data', (d) => { s.data += d.toString('latin1'); });
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

// One request on a kept-alive raw socket: resolves with the status line's code.
function request(s, extra = '') {
  const from = s.data.length;
  s.write(`GET /health HTTP/1.1\r\nHost: x\r\n${extra}\r\n`);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no answer: ' + s.data.slice(from))), 5000);
    const check = () => {
      const m = s.data.slice(from).match(/^HTTP\/1\.1 (\d{3})[^]*?\r\n\r\n/);
      if (m) {
        const len = Number((m[0].match(/content-length: (\d+)/i) || [])[1] || 0);
        if (s.data.length - from >= m[0].length + len) { clearTimeout(t); s.off('data', check); resolve(Number(m[1])); }
      }
    };
    s.on('data', check);
    s.gone.then(() => { clearTimeout(t); check(); reject(new Error('closed: ' + s.data.slice(from))); });
    check();
  });
}

const within = (p, ms) => Promise.race([p.then(() => true), sleep(ms).then(() => false)]);

function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);   // utime + stime (fields 14, 15)
}

async function metric(srv, re) {
  const text = await (await srv.fetch('/metrics')).text();
  const m = text.match(re);
  return m ? Number(m[1]) : NaN;
}

describe('head timeout', () => {
  test('a connection that never sends a byte is closed after HTTP_HEADER_TIMEOUT_MS, not the idle timeout', async () => {
    const srv = await startServer({ env: { HTTP_HEADER_TIMEOUT_MS: '600', HTTP_IDLE_TIMEOUT_MS: '60000' } });
    try {
      const s = await openSocket(srv.port);
      const t0 = Date.now();
      assert.ok(await within(s.gone, 8000), 'still open after 8 s: the idle timeout (60 s) applied');
      const took = Date.now() - t0;
      assert.ok(took >= 400, `closed after ${took} ms`);
      assert.equal(s.data, '', 'nothing was asked: closed without an answer');
      // A keep-alive connection between requests keeps the idle timeout.
      const k = await openSocket(srv.port);
      assert.equal(await request(k), 200);
      assert.equal(await within(k.gone, 2000), false, 'keep-alive connection closed by the head timeout');
      k.destroy();
      // Trickling bytes does not restart the head timeout.
      const slow = await openSocket(srv.port);
      const t1 = Date.now();
      slow.write('GET /health HTTP/1.1\r\nX-Slow: ');
      const drip = setInterval(() => { if (!slow.closedAt) slow.write('a'); }, 200);
      const closed = await within(slow.gone, 8000);
      clearInterval(drip);
      assert.ok(closed, 'a head trickled byte by byte outlived the head timeout');
      assert.ok(Date.now() - t1 < 5000);
      assert.match(slow.data, /^HTTP\/1\.1 408 /);
    } finally {
      await srv.stop();
    }
  });
});

describe('MAX_CONNECTIONS_PER_IP', () => {
  test('the N+1th connection from one address is refused at accept, the others keep being served', async () => {
    const srv = await startServer({ env: { MAX_CONNECTIONS_PER_IP: '5', HTTP_HEADER_TIMEOUT_MS: '30000' } });
    const held = [];
    try {
      // HTTP and WebSocket connections count together: 3 raw + 2 WebSockets.
      for (let i = 0; i < 3; i++) held.push(await openSocket(srv.port));
      const wss = [];
      for (let i = 0; i < 2; i++) {
        const ws = new WebSocket(srv.wsUrl());
        await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
        wss.push(ws);
      }
      const extra = await openSocket(srv.port);
      assert.ok(await within(extra.gone, 3000), 'the sixth connection was not refused');
      assert.equal(extra.data, '', 'refused at accept: nothing is read or written');
      // The five keep being served.
      for (const s of held) assert.equal(await request(s), 200);
      await srv.waitForLog(/connection refused: too many connections from this address/);
      assert.match(srv.logs(), /"ip":"127\.0\.0\.1"/);
      // A slot freed is a slot usable again.
      wss[0].close();
      await new Promise((r) => wss[0].on('close', r));
      await sleep(200);
      const again = await openSocket(srv.port);
      assert.equal(await request(again, 'Connection: close\r\n'), 200);
      await again.gone;
      for (const s of held) s.destroy();
      wss[1].close();
      await sleep(300);
      const refused = await metric(srv, /http_server_connections_refused_total\{reason="per_ip"\} (\d+)/);
      assert.equal(refused, 1);
    } finally {
      for (const s of held) s.destroy();
      await srv.stop();
    }
  });

  test('behind TRUST_PROXY the forwarded address is counted: distinct clients are not capped as one', async () => {
    const srv = await startServer({ env: { MAX_CONNECTIONS_PER_IP: '3', TRUST_PROXY: '1', HTTP_HEADER_TIMEOUT_MS: '30000' } });
    const socks = [];
    try {
      // Ten clients behind one proxy (all from 127.0.0.1): all served and kept.
      for (let i = 0; i < 10; i++) {
        const s = await openSocket(srv.port);
        socks.push(s);
        assert.equal(await request(s, `X-Forwarded-For: 6.6.6.6, 198.51.100.${i + 1}\r\n`), 200, `client ${i}`);
      }
      // One forwarded client on a fourth connection: 429 and closed.
      const same = [];
      for (let i = 0; i < 3; i++) {
        const s = await openSocket(srv.port);
        same.push(s);
        assert.equal(await request(s, `X-Forwarded-For: 203.0.113.50\r\n`), 200);
      }
      const fourth = await openSocket(srv.port);
      const code = await request(fourth, `X-Forwarded-For: 10.1.1.1, 203.0.113.50\r\n`);
      assert.equal(code, 429);
      assert.ok(await within(fourth.gone, 3000), 'refused connection not closed');
      for (const s of [...socks, ...same]) assert.ok(!s.closedAt, 'a served client was closed');
      for (const s of [...socks, ...same]) s.destroy();
      await sleep(300);
      assert.equal(await metric(srv, /http_server_connections_refused_total\{reason="per_ip"\} (\d+)/), 1);
    } finally {
      for (const s of socks) s.destroy();
      await srv.stop();
    }
  });
});

describe('fd limit', () => {
  test('flooded past a low fd limit: refusals logged, no spinning, /health served after the flood', async (t) => {
    // prlimit execs the server: the child's pid is the server's.
    const srv = await startServer({
      bin: 'prlimit', args: ['--nofile=256:256', BIN],
      env: { MAX_CONNECTIONS_PER_IP: '0', HTTP_HEADER_TIMEOUT_MS: '60000', HTTP_IDLE_TIMEOUT_MS: '60000' },
    });
    const flood = [];
    try {
      for (let i = 0; i < 400; i++) {
        try { flood.push(await openSocket(srv.port)); } catch { /* refused by the kernel: fine */ }
      }
      await srv.waitForLog(/connection refused: out of file descriptors/, 10000);
      // Hold the flood; the server must sleep, not spin on accept.
      await sleep(500);
      const c0 = cpuTicks(srv.child.pid);
      await sleep(3000);
      const used = cpuTicks(srv.child.pid) - c0;
      assert.ok(used < 100, `server used ${used} ticks of CPU in 3 s while the flood held its fds`);
      const lines = srv.logs().split('\n').filter((l) => l.includes('out of file descriptors')).length;
      t.diagnostic(`400 connections against nofile=256: ${flood.filter((s) => s.closedAt).length} closed by the server, ${used} CPU ticks (1/100 s) in 3 s, ${lines} log lines`);
      assert.ok(lines <= 5, `${lines} log lines: not rate-limited`);
      for (const s of flood) s.destroy();
      await sleep(1000);
      const r = await srv.fetch('/health');
      assert.equal(r.status, 200);
      assert.ok(await metric(srv, /http_server_connections_refused_total\{reason="fd_limit"\} (\d+)/) > 0);
    } finally {
      for (const s of flood) s.destroy();
      await srv.stop();
    }
  });
});
