// bench/ws_floods.mjs: soak of the WebSocket floods of issue 8 against one
// binary (OSB_BIN, default build/release/osbackend), on 127.0.0.1 only.
// For each flood it reports the server's peak RSS (MiB) above its start,
// the RSS once the flood is over, and the round trip of a well-behaved
// client on another connection (application ping → pong, every 20 ms)
// while the flood runs: p50 / p99 / max in ms. Each flood stops by itself.
//
//   OSB_BIN=build/asan/osbackend node bench/ws_floods.mjs [pings partial slow]
//
// pings:   4 clients send 48 MiB each of 125-byte pings and never read
//          (pings-unlimited: the same with WS_CONTROL_FRAMES_PER_S=0, so
//          that only WS_SEND_BUFFER_BYTES bounds it)
// partial: 400 clients start a 64 KiB frame (or a fragmented message),
//          send 60 KiB of it, then one byte every 2 s, for 30 s
// idle:    no flood, 5 s (the prober's baseline)
// slow:    20 subscribers stop reading while 16 KiB messages are published
//          to their channel for 10 s
import { readFileSync } from 'node:fs';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import WebSocket from '../node_modules/ws/wrapper.mjs';
import { startServer, randomKey } from '../tests/integration/lib/server.mjs';
import { rawWs, frame } from '../tests/integration/lib/rawws.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rss = (srv) => Number(readFileSync(`/proc/${srv.child.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) / 1024;

function pct(a, p) {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
}

// A well-behaved client measuring round trips until stop() is called. It
// runs in its own process (this file, forked with "probe <port>"), so the
// flooders' writes in this one do not delay its timers.
async function probeMain(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
  await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
  const rtts = [];
  const sent = new Map();
  ws.on('message', (d) => {
    const m = JSON.parse(d.toString());
    if (m.type === 'pong' && sent.has(m.id)) { rtts.push(performance.now() - sent.get(m.id)); sent.delete(m.id); }
  });
  let i = 0;
  const t = setInterval(() => { sent.set(i, performance.now()); ws.send(JSON.stringify({ type: 'ping', id: i++ })); }, 20);
  process.send('ready');
  process.on('message', async () => {
    clearInterval(t);
    await sleep(500);
    process.send({ n: rtts.length, lost: sent.size, p50: pct(rtts, 0.5), p99: pct(rtts, 0.99), max: pct(rtts, 1) });
    ws.terminate();
    process.exit(0);
  });
}

async function prober(srv) {
  const child = fork(fileURLToPath(import.meta.url), ['probe', String(srv.port)]);
  await new Promise((r) => child.once('message', r));
  return {
    stop() {
      return new Promise((r) => { child.once('message', r); child.send('stop'); });
    },
  };
}

async function floodPings(srv) {
  const one = frame(0x9, Buffer.alloc(125, 0x61));
  const chunk = Buffer.concat(Array.from({ length: 1000 }, () => one));
  await Promise.all(Array.from({ length: 4 }, async () => {
    const c = await rawWs(srv.port);
    c.sock.pause();
    let sent = 0;
    const until = Date.now() + 30000;
    while (sent < 48 * 1024 * 1024 && !c.sock.destroyed && Date.now() < until) {
      sent += chunk.length;
      if (!c.sock.write(chunk)) {
        await new Promise((r) => { const d = () => { c.sock.off('drain', d); c.sock.off('close', d); r(); }; c.sock.on('drain', d); c.sock.on('close', d); setTimeout(d, 2000); });
      }
    }
    c.sock.on('error', () => {});
    setTimeout(() => c.sock.destroy(), 1000);
  }));
}

async function floodPartial(srv) {
  const socks = [];
  for (let i = 0; i < 400; i++) {
    try {
      const c = await rawWs(srv.port);
      c.sock.on('error', () => {});
      const f = i % 2 === 0
        ? frame(0x1, Buffer.alloc(65000, 0x20))                   // one frame, never finished
        : frame(0x1, Buffer.alloc(61440, 0x20), { fin: false });  // a fragment, then none
      c.send(i % 2 === 0 ? f.subarray(0, 61440) : f);
      socks.push({ c, f, off: 61440 });
    } catch { /* refused: counted by the server */ }
  }
  const until = Date.now() + 30000;
  while (Date.now() < until) {
    for (const s of socks) {
      if (s.c.closed) continue;
      if (s.off < s.f.length) s.c.send(s.f.subarray(s.off, ++s.off));
      else s.c.send(frame(0x9, 'x'));
    }
    await sleep(2000);
  }
  const closed = socks.filter((s) => s.c.closed || s.c.frames.some((f) => f.opcode === 8)).length;
  for (const s of socks) s.c.end();
  return closed;
}

async function floodSlow(srv, key) {
  const subs = [];
  for (let i = 0; i < 20; i++) {
    const c = await rawWs(srv.port);
    c.sock.on('error', () => {});
    c.send(frame(0x1, JSON.stringify({ type: 'subscribe', channel: 'market:soak', id: 1 })));
    await c.until((fs) => fs.some((f) => f.opcode === 1 && f.payload.toString().includes('subscribed')));
    c.sock.pause();
    subs.push(c);
  }
  const blob = 'x'.repeat(16 * 1024);
  const until = Date.now() + 10000;
  let n = 0;
  while (Date.now() < until) {
    await Promise.all(Array.from({ length: 5 }, () => srv.fetch('/api/realtime/publish', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ channel: 'market:soak', data: { n: n++, blob } }),
    }).then((r) => r.arrayBuffer())));
  }
  await sleep(2000);
  for (const c of subs) c.end();
  return n;
}

const args = process.argv.slice(2);
if (args[0] === 'probe') {
  await probeMain(Number(args[1]));
} else {
const which = args.length ? args : ['pings', 'pings-unlimited', 'partial', 'slow'];
for (const name of which) {
  const key = randomKey();
  const srv = await startServer({
    bin: process.env.OSB_BIN,
    env: {
      SERVICE_API_KEY: key, RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000', LOG_LEVEL: 'info',
      ASAN_OPTIONS: 'detect_leaks=0:quarantine_size_mb=8',
      ...(name === 'pings-unlimited' ? { WS_CONTROL_FRAMES_PER_S: '0' } : {}),
    },
  });
  const base = rss(srv);
  let peak = base;
  const sampler = setInterval(() => { try { peak = Math.max(peak, rss(srv)); } catch {} }, 100);
  const p = await prober(srv);
  const t0 = Date.now();
  let extra = '';
  if (name.startsWith('pings')) await floodPings(srv);
  else if (name === 'idle') await sleep(5000);
  else if (name === 'partial') extra = `closed by the server: ${await floodPartial(srv)}/400`;
  else if (name === 'slow') extra = `published: ${await floodSlow(srv, key)}`;
  const lat = await p.stop();
  await sleep(3000);
  clearInterval(sampler);
  const after = rss(srv);
  console.log(`${name}: ${((Date.now() - t0) / 1000).toFixed(0)} s; RSS start ${base.toFixed(0)} MiB, peak +${(peak - base).toFixed(0)} MiB, after +${(after - base).toFixed(0)} MiB; ` +
    `well-behaved client: ${lat.n} round trips, lost ${lat.lost}, p50 ${lat.p50?.toFixed(2)} ms, p99 ${lat.p99?.toFixed(2)} ms, max ${lat.max?.toFixed(1)} ms${extra ? '; ' + extra : ''}`);
  await srv.stop('SIGKILL', { expectExit: false });
}
}
