// bench/flood_pipeline.mjs: soak of the pipelining flood of issue 8.
//
//   node bench/flood_pipeline.mjs [binary] [MiB] [path]
//
// Starts the binary (default build/release/osbackend) on 127.0.0.1, then one
// client pipelines MiB (default 100) of `GET <path>` (default /health)
// without ever reading, while a well-behaved client sends one GET /health
// at a time on its own keep-alive connection. Prints the server's RSS
// (/proc/<pid>/status) before, at peak and at the end, how much of the flood
// the server took, and the well-behaved client's latency (p50/p99/max).
// Stops by itself after the flood is written or 5 s without progress.
// FLOOD_PORT (55468) is the port, on 127.0.0.1 only.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../tests/integration/lib/server.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = process.argv[2] || join(root, 'build', 'release', 'osbackend');
const mib = Number(process.argv[3] || 100);
const path = process.argv[4] || '/health';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rss = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)[1]) / 1024;

// LOG_LEVEL=warn keeps the access log out (the "listening" line too, so the
// port is fixed and polled for).
const port = Number(process.env.FLOOD_PORT || 55468);
const srv = await startServer({ bin, noWait: true, env: { PORT: String(port), LOG_LEVEL: 'warn', ASAN_OPTIONS: 'detect_leaks=0:quarantine_size_mb=4' } });
srv.port = port;
for (let i = 0; ; i++) {
  try { await (await srv.fetch('/health')).text(); break; } catch (e) { if (i > 300) throw e; await sleep(100); }
}
const pid = srv.child.pid;
for (let i = 0; i < 50; i++) await (await srv.fetch('/health')).text();
const base = rss(pid);
let peak = base;
const sampler = setInterval(() => { try { peak = Math.max(peak, rss(pid)); } catch {} }, 50);

// the well-behaved client: one request at a time on one connection
const lat = [];
let stop = false;
const good = (async () => {
  const sock = net.connect(srv.port, '127.0.0.1');
  await new Promise((r) => sock.on('connect', r));
  let buf = '';
  let wake = null;
  sock.on('data', (d) => { buf += d; if (wake && buf.includes('"status":"pass"}')) wake(); });
  while (!stop) {
    const t0 = process.hrtime.bigint();
    buf = '';
    const done = new Promise((r) => { wake = r; });
    sock.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await done;
    lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    await sleep(5);
  }
  sock.destroy();
})();

// the flood: never reads
const one = `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`;
const chunk = Buffer.from(one.repeat(Math.floor(65536 / one.length)));
const total = mib * 1048576;
const flood = net.connect(srv.port, '127.0.0.1');
await new Promise((r) => flood.on('connect', r));
flood.pause();
flood.on('error', () => {});
let written = 0;
const t0 = Date.now();
let stalled = false;
while (written < total) {
  written += chunk.length;
  if (!flood.write(chunk)) {
    const ok = await Promise.race([new Promise((r) => flood.once('drain', () => r(true))), sleep(5000).then(() => false)]);
    if (!ok) { stalled = true; break; }
  }
}
const accepted = written - flood.writableLength;
await sleep(2000);
stop = true;
await good;
clearInterval(sampler);
const end = rss(pid);
flood.destroy();
lat.sort((a, b) => a - b);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
console.log(JSON.stringify({
  bin, path, flood_mib: mib, stalled, accepted_mib: +(accepted / 1048576).toFixed(1), seconds: (Date.now() - t0) / 1000,
  rss_mb: { base: +base.toFixed(1), peak: +peak.toFixed(1), end: +end.toFixed(1) },
  other_client_ms: { n: lat.length, p50: q(0.5), p99: q(0.99), max: lat[lat.length - 1].toFixed(2) },
}));
await srv.stop('SIGTERM', { expectExit: false });
