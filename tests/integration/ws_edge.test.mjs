// WebSocket edge hardening (issue 8): what a hostile client can make the
// server hold. Ping floods from a client that never reads, partial frames
// and fragmented messages kept open for ever, and a slow consumer's close:
// each bounded, with the close code the peer sees.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, randomKey } from './lib/server.mjs';
import { rawWs, frame, closeCode } from './lib/rawws.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resident memory of the server process, in MiB.
function rssMiB(srv) {
  const m = readFileSync(`/proc/${srv.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) / 1024;
}

async function metric(srv, re) {
  const text = await (await srv.fetch('/metrics')).text();
  const m = text.match(re);
  return m ? Number(m[1]) : 0;
}

async function waitFor(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timeout waiting for ${what}`);
    await sleep(100);
  }
}

// ASan keeps freed memory in a quarantine (256 MiB by default), which would
// hide what the server really holds; a small one makes RSS meaningful.
const asan = { ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=8' };

// Write `total` bytes of 125-byte pings as fast as the socket takes them,
// never reading; stops early if the server resets the connection.
async function floodPings(sock, total) {
  const one = frame(0x9, Buffer.alloc(125, 0x61));
  const chunk = Buffer.concat(Array.from({ length: 1000 }, () => one));
  let sent = 0;
  while (sent < total && !sock.destroyed) {
    const ok = sock.write(chunk);
    sent += chunk.length;
    if (!ok) {
      await new Promise((r) => {
        const done = () => { sock.off('drain', done); sock.off('close', done); r(); };
        sock.on('drain', done);
        sock.on('close', done);
      });
    }
  }
  return sent;
}

describe('websocket edge: ping floods', () => {
  test('pongs count against WS_SEND_BUFFER_BYTES: a ping flood that never reads is closed 1013, RSS bounded', async () => {
    const srv = await startServer({
      // the control-frame limit off, to reach the send bound; a short stall
      // limit (WS_IDLE_TIMEOUT_MS) so that the reset comes soon
      env: { ...asan, WS_SEND_BUFFER_BYTES: '65536', WS_CONTROL_FRAMES_PER_S: '0',
             WS_PING_INTERVAL_MS: '1000', WS_IDLE_TIMEOUT_MS: '3000' },
    });
    try {
      const c = await rawWs(srv.port);
      await c.until((fs) => fs.length >= 1);   // welcome
      c.sock.pause();
      const before = rssMiB(srv);
      // 40 MB of pings: ~320,000 pongs the old code queued without a bound
      const sent = await floodPings(c.sock, 40 * 1024 * 1024);
      await waitFor(() => metric(srv, /^websocket_slow_consumer_closes_total (\d+)/m), 20000, 'a 1013 close');
      const grown = rssMiB(srv) - before;
      assert.ok(grown < 32, `RSS grew by ${grown.toFixed(1)} MiB after ${sent} bytes of pings`);
      // It takes nothing: the connection ends once everything up to the close
      // frame is in the kernel (closed), or once it took nothing for
      // WS_IDLE_TIMEOUT_MS with the close frame still in user space (reset).
      await waitFor(async () => (await metric(srv, /^websocket_connections (\d+)/m)) === 0 || null, 20000,
        'the connection to close');
      const reset = (await metric(srv, /^http_server_connection_resets_total (\d+)/m)) >= 1;
      c.sock.resume();
      await waitFor(() => c.closed, 20000, 'the socket to end');
      if (!reset && !c.error) {
        // closed normally: whole pongs, then the close frame 1013
        const last = c.frames[c.frames.length - 1];
        assert.equal(last.opcode, 0x8, 'the stream ends with a close frame');
        assert.equal(closeCode(last), 1013);
        assert.equal(c.rest, 0, 'no truncated frame');
      }
      c.end();
      // A well-behaved client is served normally.
      const ws = new WebSocket(srv.wsUrl());
      await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
      ws.ping('hi');
      await new Promise((r) => ws.once('pong', r));
      ws.terminate();
    } finally {
      await srv.stop();
    }
  });

  test('inbound control frames are rate-limited: a ping burst past WS_CONTROL_FRAMES_PER_S closes 1008', async () => {
    const srv = await startServer({ env: { WS_CONTROL_FRAMES_PER_S: '5' } });
    try {
      // within the limit: every ping is answered
      const ok = new WebSocket(srv.wsUrl());
      await new Promise((r, j) => { ok.once('open', r); ok.once('error', j); });
      let pongs = 0;
      ok.on('pong', () => pongs++);
      for (let i = 0; i < 5; i++) ok.ping(String(i));
      await waitFor(() => pongs === 5, 5000, '5 pongs');
      // past it (burst = 2 × rate): closed with 1008
      const bad = new WebSocket(srv.wsUrl());
      await new Promise((r, j) => { bad.once('open', r); bad.once('error', j); });
      const closed = new Promise((r) => bad.once('close', (code) => r(code)));
      for (let i = 0; i < 100; i++) bad.ping(String(i));
      assert.equal(await Promise.race([closed, sleep(10000).then(() => 'not closed')]), 1008);
      assert.ok((await metric(srv, /^websocket_control_flood_closes_total (\d+)/m)) >= 1);
      assert.equal(ok.readyState, WebSocket.OPEN, 'the other connection is unaffected');
      ok.terminate();
    } finally {
      await srv.stop();
    }
  });
});

describe('websocket edge: partial frames and messages have a deadline', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { WS_MESSAGE_TIMEOUT_MS: '1000' } }); });
  after(async () => { await srv.stop(); });

  test('a frame trickled in a byte at a time is closed 1008 after WS_MESSAGE_TIMEOUT_MS', async () => {
    const c = await rawWs(srv.port);
    await c.until((fs) => fs.length >= 1);
    const f = frame(0x1, JSON.stringify({ type: 'ping', pad: 'x'.repeat(200) }));
    const t0 = Date.now();
    for (let i = 0; i < 40 && !c.closed && !c.frames.some((x) => x.opcode === 8); i++) {
      c.send(f.subarray(i, i + 1));
      await sleep(100);
    }
    const cf = await c.closeFrame(5000);
    assert.equal(closeCode(cf), 1008);
    assert.ok(Date.now() - t0 < 3500, `closed after ${Date.now() - t0} ms`);
    assert.ok((await metric(srv, /^websocket_message_timeout_closes_total (\d+)/m)) >= 1);
    c.end();
  });

  test('a fragmented message kept open with pings is closed 1008', async () => {
    const c = await rawWs(srv.port);
    await c.until((fs) => fs.length >= 1);
    c.send(frame(0x1, '{"type":', { fin: false }));
    for (let i = 0; i < 30 && !c.frames.some((x) => x.opcode === 8); i++) {
      c.send(frame(0x9, 'alive'));
      await sleep(100);
    }
    const cf = await c.closeFrame(5000);
    assert.equal(closeCode(cf), 1008);
    c.end();
  });

  test('a message completed within the deadline, in pieces and fragments, is answered', async () => {
    const c = await rawWs(srv.port);
    await c.until((fs) => fs.length >= 1);
    const f = frame(0x1, JSON.stringify({ type: 'ping', id: 'pieces' }));
    for (let i = 0; i < f.length; i += 5) {
      c.send(f.subarray(i, i + 5));
      await sleep(30);
    }
    await c.until(() => c.json().some((m) => m.id === 'pieces' && m.type === 'pong'));
    // two fragmented messages one after the other, each well within the deadline
    for (const id of ['frag1', 'frag2']) {
      c.send(frame(0x1, '{"type":"ping",', { fin: false }));
      await sleep(400);
      c.send(frame(0x0, `"id":"${id}"}`));
      await c.until(() => c.json().some((m) => m.id === id && m.type === 'pong'));
    }
    await sleep(1200);
    assert.ok(!c.frames.some((x) => x.opcode === 8), 'not closed');
    c.end();
  });
});

describe('websocket edge: a slow consumer is closed at a frame boundary', () => {
  let srv;
  const key = randomKey();
  before(async () => {
    srv = await startServer({
      env: { SERVICE_API_KEY: key, RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000', WS_SEND_BUFFER_BYTES: '262144' },
    });
  });
  after(async () => { await srv.stop(); });

  async function publishOk(channel, data) {
    const r = await srv.fetch('/api/realtime/publish', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel, data }),
    });
    assert.equal(r.status, 200);
    return (await r.json()).seq;
  }

  test('reading only after the drain deadline: whole frames then close 1013, or a reset; never a truncated frame and a clean EOF', async () => {
    const healthy = new WebSocket(srv.wsUrl());
    const got = [];
    healthy.on('message', (d) => { const m = JSON.parse(d.toString()); if (m.type === 'message') got.push(m.seq); });
    await new Promise((r, j) => { healthy.once('open', r); healthy.once('error', j); });
    healthy.send(JSON.stringify({ type: 'subscribe', channel: 'market:late', id: 1 }));
    const slow = await rawWs(srv.port);
    slow.send(frame(0x1, JSON.stringify({ type: 'subscribe', channel: 'market:late', id: 1 })));
    await slow.until((fs) => fs.some((f) => f.opcode === 0x1 && f.payload.toString().includes('subscribed')));
    await sleep(100);
    slow.sock.pause();
    const blob = 'x'.repeat(16 * 1024);
    const N = 600;
    for (let i = 0; i < N; i += 5) {
      const batch = [];
      for (let k = i; k < i + 5; k++) batch.push(publishOk('market:late', { k, blob }));
      await Promise.all(batch);
    }
    await waitFor(() => got.length === N || null, 30000, 'the healthy subscriber to get every message');
    assert.equal(new Set(got).size, N, 'the healthy subscriber lost nothing');
    await waitFor(() => metric(srv, /^websocket_slow_consumer_closes_total (\d+)/m), 10000, 'the 1013 close');
    // past the drain deadline (5 s, and 5 s more while output is pending),
    // within WS_IDLE_TIMEOUT_MS (60 s) of taking nothing
    await sleep(12000);
    slow.sock.resume();
    await waitFor(() => slow.closed, 20000, 'the slow socket to end');
    // A reset could only show as ECONNRESET (when the peer is reading as it
    // comes); an end of stream must come after a close frame, at a frame boundary.
    if (slow.error) {
      assert.equal(slow.error.code, 'ECONNRESET');
    } else {
      assert.equal(slow.rest, 0, `a truncated frame (${slow.rest} bytes) before a clean EOF`);
      const last = slow.frames[slow.frames.length - 1];
      assert.equal(last.opcode, 0x8, 'a clean EOF must follow a close frame');
      assert.equal(closeCode(last), 1013);
      assert.ok(slow.frames.slice(0, -1).every((f) => f.opcode === 0x1), 'whole text frames before it');
    }
    slow.end();
    healthy.terminate();
  });

  test('a slow consumer that never reads again is reset once it took nothing for WS_IDLE_TIMEOUT_MS', async () => {
    const k2 = randomKey();
    const s2 = await startServer({
      env: { SERVICE_API_KEY: k2, RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000', WS_SEND_BUFFER_BYTES: '262144',
             WS_PING_INTERVAL_MS: '1000', WS_IDLE_TIMEOUT_MS: '3000' },
    });
    try {
      const slow = await rawWs(s2.port);
      slow.sock.on('error', () => {});
      slow.send(frame(0x1, JSON.stringify({ type: 'subscribe', channel: 'market:gone', id: 1 })));
      await slow.until((fs) => fs.some((f) => f.opcode === 0x1 && f.payload.toString().includes('subscribed')));
      slow.sock.pause();
      // it still sends (pings), so the idle timeout does not close it first
      const alive = setInterval(() => slow.send(frame(0x9, 'alive')), 500);
      const blob = 'x'.repeat(16 * 1024);
      for (let i = 0; i < 600 && !(await metric(s2, /^websocket_slow_consumer_closes_total (\d+)/m)); i += 5) {
        await Promise.all(Array.from({ length: 5 }, (_, k) => s2.fetch('/api/realtime/publish', {
          method: 'POST',
          headers: { authorization: `Bearer ${k2}`, 'content-type': 'application/json' },
          body: JSON.stringify({ channel: 'market:gone', data: { k: i + k, blob } }),
        }).then((r) => r.arrayBuffer())));
      }
      clearInterval(alive);
      assert.ok(await metric(s2, /^websocket_slow_consumer_closes_total (\d+)/m), 'closed with 1013');
      // the frame being written cannot be finished: reset, not a FIN after it
      await waitFor(async () => (await metric(s2, /^websocket_connections (\d+)/m)) === 0 || null, 30000,
        'the connection to go');
      assert.ok((await metric(s2, /^http_server_connection_resets_total (\d+)/m)) >= 1, 'reset');
      slow.end();
    } finally {
      await s2.stop();
    }
  });
});
