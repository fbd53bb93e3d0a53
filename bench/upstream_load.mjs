#!/usr/bin/env node
// bench/upstream_load.mjs: the `upstream` section's load (bench/run.sh).
//
// Starts a fake ElevenLabs on --fake-port that answers every call after
// --delay ms (tests/integration/lib/fake_upstreams.mjs, real MPEG frames),
// then waits for osbackend (already started by run.sh with
// ELEVENLABS_BASE_URL pointing at the fake) and runs --conc concurrent
// POST /api/voice/tts loops with distinct texts for --duration s, while one
// more client probes GET /health back to back. Prints one line:
//   UPLOAD {"calls","calls_per_s","ok","errors","p50_ms","p99_ms","fake_p50_ms","fake_p99_ms",
//           "added_p50_ms","added_p99_ms","health_p50_ms","health_p99_ms","health_n","fake_max_in_flight"}
// The fake's own latency is measured inside the fake (request body received
// to response finished); the fake and the load share this Node process, so
// both figures include its event-loop delays and "added" is what osbackend,
// its client and the extra hop add.
//
//   node bench/upstream_load.mjs --port P --fake-port F --token T [--conc 500] [--delay 50] [--duration 10]
//   node bench/upstream_load.mjs --mode fake --fake-port F --delay 50 --stats FILE   (run.sh: the fake alone)
//   node bench/upstream_load.mjs --mode health --port P --duration 10                (run.sh: the /health probe alone)
//   node bench/upstream_load.mjs ... --external-fake 1                                (run.sh: the load alone)
import http from 'node:http';
import { startFakeElevenLabs } from '../tests/integration/lib/fake_upstreams.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => {
  if (v.startsWith('--')) a.push([v.slice(2), all[i + 1]]);
  return a;
}, []));
const PORT = Number(args.port), FAKE_PORT = Number(args['fake-port']);
const CONC = Number(args.conc || 500), DELAY = Number(args.delay || 50), DURATION = Number(args.duration || 10);
const TOKEN = args.token || process.env.BENCH_TOKEN;
const MODE = args.mode || 'load';
if (MODE === 'fake') await fakeOnly();
else if (MODE === 'health') await healthOnly();
else await run();

// --mode fake: only the fake, in its own process (so its timings are not
// skewed by the load generator's event loop); on SIGTERM it writes its own
// per-call latencies to --stats and exits.
async function fakeOnly() {
  const fake = await startFakeElevenLabs({ port: FAKE_PORT });
  fake.script({ delayMs: DELAY, audioFrames: 4 });
  console.log(`FAKE listening on ${FAKE_PORT}`);
  process.on('SIGTERM', async () => {
    const lat = fake.calls.filter((c) => c.t1).map((c) => c.t1 - c.t0);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(args.stats, JSON.stringify({ calls: fake.count, max_in_flight: fake.maxInFlight,
      p50_ms: +pct(lat, 0.5).toFixed(2), p99_ms: +pct(lat, 0.99).toFixed(2) }));
    await fake.close();
    process.exit(0);
  });
}

// --mode health: GET /health back to back (5 ms apart) for --duration s, in
// its own idle process; prints HEALTH {"n","p50_ms","p99_ms"}.
async function healthOnly() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const lat = [];
  const end = Date.now() + DURATION * 1000;
  while (Date.now() < end) {
    const t0 = performance.now();
    await new Promise((resolve) => {
      http.get({ host: '127.0.0.1', port: PORT, path: '/health', agent }, (res) => {
        res.on('data', () => {});
        res.on('end', () => { lat.push(performance.now() - t0); resolve(); });
      }).on('error', resolve);
    });
    await new Promise((r) => setTimeout(r, 5));
  }
  agent.destroy();
  console.log('HEALTH ' + JSON.stringify({ n: lat.length, p50_ms: +pct(lat, 0.5).toFixed(2), p99_ms: +pct(lat, 0.99).toFixed(2) }));
}

function pct(xs, q) {
  if (!xs.length) return 0;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(s.length * q) - 1))];
}

async function run() {
  // Without --external-fake 1 the fake runs in this process (a quick check);
  // run.sh starts it separately (--mode fake) and reads its stats file.
  const fake = args['external-fake'] ? null : await startFakeElevenLabs({ port: FAKE_PORT });
  if (fake) fake.script({ delayMs: DELAY, audioFrames: 4 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONC + 4 });
  const lat = [];
  let ok = 0, errors = 0, seq = 0;
  const end = Date.now() + DURATION * 1000;
  const one = () => new Promise((resolve) => {
    const body = JSON.stringify({ text: `bench call ${process.pid} ${seq++} ${Math.random()}` });
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port: PORT, path: '/api/voice/tts', method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), authorization: `Bearer ${TOKEN}` } },
    (res) => {
      res.on('data', () => {});
      res.on('end', () => {
        if (res.statusCode === 200) { ok++; lat.push(performance.now() - t0); } else errors++;
        resolve();
      });
    });
    req.on('error', () => { errors++; resolve(); });
    req.end(body);
  });
  const worker = async () => { while (Date.now() < end) await one(); };
  const health = [];
  const probe = async () => {
    const hagent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    while (Date.now() < end) {
      const t0 = performance.now();
      await new Promise((resolve) => {
        http.get({ host: '127.0.0.1', port: PORT, path: '/health', agent: hagent }, (res) => {
          res.on('data', () => {});
          res.on('end', () => { health.push(performance.now() - t0); resolve(); });
        }).on('error', resolve);
      });
      await new Promise((r) => setTimeout(r, 5));
    }
    hagent.destroy();
  };
  const fakeLat = [];
  const t0 = Date.now();
  const before = fake ? fake.count : 0;
  await Promise.all([...Array.from({ length: CONC }, worker), ...(args['external-fake'] ? [] : [probe()])]);
  const secs = (Date.now() - t0) / 1000;
  if (fake) for (const c of fake.calls) if (c.t1) fakeLat.push(c.t1 - c.t0);
  const fp50 = pct(fakeLat, 0.5), fp99 = pct(fakeLat, 0.99), p50 = pct(lat, 0.5), p99 = pct(lat, 0.99);
  const out = {
    calls: ok + errors, calls_per_s: +(ok / secs).toFixed(1), ok, errors,
    p50_ms: +p50.toFixed(2), p99_ms: +p99.toFixed(2), fake_p50_ms: +fp50.toFixed(2), fake_p99_ms: +fp99.toFixed(2),
    added_p50_ms: +(p50 - fp50).toFixed(2), added_p99_ms: +(p99 - fp99).toFixed(2),
    health_p50_ms: +pct(health, 0.5).toFixed(2), health_p99_ms: +pct(health, 0.99).toFixed(2), health_n: health.length,
    fake_calls: fake ? fake.count - before : null, fake_max_in_flight: fake ? fake.maxInFlight : null,
  };
  console.log('UPLOAD ' + JSON.stringify(out));
  agent.destroy();
  if (fake) await fake.close();
}
