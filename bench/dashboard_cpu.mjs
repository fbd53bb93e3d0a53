// bench/dashboard_cpu.mjs: what the dashboard sampler costs the server.
//
//   node bench/dashboard_cpu.mjs [seconds=30] [dashboards=10]
//
// Starts the release binary (BENCH_BUILD, default build/release) on a
// temporary SQLite database, then measures the server's CPU time (utime +
// stime from /proc/<pid>/stat) over `seconds` with nobody subscribed to
// dashboard:metrics, and again with `dashboards` WebSockets subscribed
// (each one what a /dashboard tab holds open, after fetching the history
// once). Prints both as a percentage of one core and the difference, which
// is the sampler plus the fan-out to the dashboards. Nothing else loads the
// server during the run; on a shared machine repeat it and take the lowest.
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startServer } from '../tests/integration/lib/server.mjs';
import { createUser, login } from '../tests/integration/lib/admin.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(process.env.BENCH_BUILD || join(root, 'build', 'release'), 'osbackend');
const secs = Number(process.argv[2] || 30);
const n = Number(process.argv[3] || 10);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HZ = 100;   // USER_HZ on Linux

function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);   // utime, stime (fields 14 and 15)
}

async function measure(pid) {
  const t0 = process.hrtime.bigint(), c0 = cpuTicks(pid);
  await sleep(secs * 1000);
  const t1 = process.hrtime.bigint(), c1 = cpuTicks(pid);
  return ((c1 - c0) / HZ) / (Number(t1 - t0) / 1e9) * 100;
}

const srv = await startServer({ bin, startTimeout: 60000 });
try {
  const admin = await createUser(srv.env, 'admin');
  const token = (await login(srv, admin.email, admin.password)).access_token;
  await sleep(2000);   // start-up work (seeding, first checks) settles
  const idle = await measure(srv.child.pid);
  const socks = [];
  let samples = 0;
  for (let i = 0; i < n; i++) {
    await (await srv.fetch('/api/dashboard/history', { headers: { Authorization: `Bearer ${token}` } })).arrayBuffer();
    const ws = new WebSocket(srv.wsUrl(`/ws?token=${token}`));
    ws.on('message', (d) => {
      const m = JSON.parse(d);
      if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'subscribe', channel: 'dashboard:metrics' }));
      if (m.type === 'message') samples++;
    });
    await new Promise((r) => ws.on('open', r));
    socks.push(ws);
  }
  await sleep(2500);
  samples = 0;
  const busy = await measure(srv.child.pid);
  for (const ws of socks) ws.close();
  console.log(`server CPU, nobody subscribed: ${idle.toFixed(3)} % of a core over ${secs} s`);
  console.log(`server CPU, ${n} dashboards subscribed: ${busy.toFixed(3)} % of a core (${samples} samples delivered, ${(samples / n / secs).toFixed(2)}/s each)`);
  console.log(`sampler + fan-out: ${(busy - idle).toFixed(3)} % of a core`);
} finally {
  await srv.stop();
}
