// `make soak` (issue 17 item 4): mixed traffic for SOAK_SECONDS (default
// 600) against one server (OSB_BIN) on PostgreSQL; scripts/soak.sh runs it
// against the ASan/LSan build and the release build side by side:
//   - REST reads (market routes) and durable writes (publishes to the
//     signed-up user's notify channel, each stored as a row: acknowledged
//     seqs are counted against rows at the end);
//   - sign-ins (POST /api/auth/login, about 2 a second: Argon2id is slow by design);
//   - WebSocket: steady subscribers that must see every acknowledged
//     publish on a market channel, and a reconnect storm every 15 s
//     (a quarter of them drop and resubscribe with `since`, so the replay
//     must fill the gap: no seq may be missing).
// SOAK_OFF=reads,writes,fanout,logins,storms switches kinds off (bisecting).
// Every 10 s: RSS (see `sample`), the heap figure (/metrics
// process_heap_bytes: malloc'ed and not freed) and open fds. After a warm-up
// (the first third, at least 20 s) their Theil–Sen slopes must be flat:
// heap ≤ SOAK_HEAP_SLOPE_KB (64) kB/min, fds ≤ 1/min, and RSS ≤
// SOAK_RSS_SLOPE_KB (64) kB/min except under ASan, whose allocator keeps
// growing its size-class regions towards a plateau (RSS reported there, not
// checked; docs/reliability.md §5 has the curve). ASan runs with a small
// quarantine. The server must exit 0 with no sanitizer report
// (LeakSanitizer checks at exit). SOAK_LOG=file keeps the server's stderr.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startServer, randomKey } from '../integration/lib/server.mjs';
import { pct, ASAN_SMALL } from './scenarios.mjs';

const SECS = Number(process.env.SOAK_SECONDS || 600);
const RSS_SLOPE = Number(process.env.SOAK_RSS_SLOPE_KB || 64);
const HEAP_SLOPE = Number(process.env.SOAK_HEAP_SLOPE_KB || 64);
const PG_URL = process.env.OSB_TEST_PG_URL;
// SOAK_OFF=logins,storms,... switches traffic kinds off (to find which one grows)
const KINDS = ['reads', 'writes', 'fanout', 'logins', 'storms'];
const OFF = new Set((process.env.SOAK_OFF || '').split(',').map((x) => x.trim()).filter(Boolean));
for (const k of OFF) if (!KINDS.includes(k)) throw new Error(`SOAK_OFF: unknown kind ${k} (${KINDS.join(', ')})`);
const on = (k) => !OFF.has(k);
// VmRSS and its anonymous / file-backed parts, and the thread count
function memKb(pid) {
  const st = readFileSync(`/proc/${pid}/status`, 'utf8');
  const f = (k) => Number((st.match(new RegExp(`${k}:\\s+(\\d+)`)) || [])[1] || 0);
  return { rss: f('VmRSS'), anon: f('RssAnon'), file: f('RssFile'), threads: f('Threads') };
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const psql = (sql) => execFileSync('psql', [PG_URL, '-XAtq', '-c', sql], { encoding: 'utf8' }).trim();

// Theil–Sen: the median of the pairwise slopes, per minute. Robust to the
// odd spike (a burst of hashing or replays caught by a sample), which a
// least-squares fit over a short run is not.
function slope(samples, key) {
  const v = [];
  for (let i = 0; i < samples.length; i++)
    for (let j = i + 1; j < samples.length; j++) {
      const dt = (samples[j].t - samples[i].t) / 60000;
      if (dt > 0) v.push((samples[j][key] - samples[i][key]) / dt);
    }
  return v.length ? pct(v, 50) : 0;
}

const key = randomKey(16);
const srv = await startServer({
  pg: true,
  env: { JWT_SECRET: randomKey(32), SERVICE_API_KEY: key, DB_POOL_MIN: '2', DB_POOL_MAX: '8', ASAN_OPTIONS: ASAN_SMALL,
         RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' },
});
const pid = srv.child.pid;
// Under ASan, RSS also holds the sanitizer allocator's size-class regions,
// which grow (ever slower) to their peaks under the quarantine: measured in
// docs/reliability.md §5. There RSS is reported, the heap figure is checked;
// the release run (scripts/soak.sh runs both) checks RSS.
const asan = /libasan|libclang_rt\.asan/.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));
const t0 = Date.now();
const end = t0 + SECS * 1000;
const stats = { reads: 0, writes: 0, logins: 0, errors: {}, reconnects: 0, delivered: 0 };
const err = (what) => { stats.errors[what] = (stats.errors[what] || 0) + 1; };

async function call(path, init) {
  try {
    const r = await srv.fetch(path, init);
    const text = await r.text();
    return { status: r.status, text };
  } catch (e) { return { status: 0, text: e.cause?.code || e.message }; }
}
const pub = (channel, data) => call('/api/realtime/publish', {
  method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ channel, data }),
});

// ---- a user for sign-ins ----
const email = `soak-${randomKey(4)}@example.test`, password = `pw-${randomKey(8)}-long`;
const reg = await call('/api/auth/register', { method: 'POST', headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ email, password }) });
if (reg.status !== 201) throw new Error(`register: ${reg.status} ${reg.text}`);
// durable writes go to the user's notify channel (its seqs are users.notify_seq)
const durable = `notify:${JSON.parse(reg.text).user.id}`;

// ---- WebSocket subscribers ----
const MARKET = 'market:soak';
const ackedMarket = new Set();
function subscriber(i) {
  const s = { i, seen: new Set(), last: 0, ws: null, open: false, gaps: 0 };
  s.connect = () => new Promise((resolve) => {
    const ws = new WebSocket(srv.wsUrl(), { perMessageDeflate: false });
    s.ws = ws;
    ws.on('open', () => {
      s.open = true;
      ws.send(JSON.stringify({ type: 'subscribe', channel: MARKET, id: 'sub', ...(s.last ? { since: s.last } : {}) }));
    });
    ws.on('message', (d) => {
      const m = JSON.parse(d);
      if (m.id === 'sub') resolve();
      if (m.type === 'message') { s.seen.add(m.seq); if (m.seq > s.last) s.last = m.seq; stats.delivered++; }
    });
    ws.on('close', () => { s.open = false; resolve(); });
    ws.on('error', () => { err('ws'); resolve(); });
  });
  return s;
}
const subs = Array.from({ length: 40 }, (_, i) => subscriber(i));
for (const s of subs) await s.connect();
let firstSeq = 0;

// ---- load loops ----
const ackedDurable = new Set();
const loops = [];
const until = () => Date.now() < end;
if (on('reads')) loops.push((async () => {   // readers
  for (let i = 0; i < 1e7 && until(); i++) {
    const r = await call(`/api/market/procedures/${1 + (i % 50)}`);
    if (r.status === 200) stats.reads++; else err(`read ${r.status}`);
    if (i % 5 === 0) await call('/health');
    await sleep(5);
  }
})());
if (on('writes')) loops.push((async () => {   // durable writes
  for (let i = 0; i < 1e7 && until(); i++) {
    const r = await pub(durable, { i });
    if (r.status === 200) { stats.writes++; ackedDurable.add(JSON.parse(r.text).seq); } else err(`write ${r.status}`);
    await sleep(20);
  }
})());
if (on('fanout')) loops.push((async () => {   // market fan-out publishes
  for (let i = 0; i < 1e7 && until(); i++) {
    const r = await pub(MARKET, { i, pad: 'p'.repeat(200) });
    if (r.status === 200) { const seq = JSON.parse(r.text).seq; ackedMarket.add(seq); if (!firstSeq) firstSeq = seq; }
    else err(`publish ${r.status}`);
    await sleep(25);
  }
})());
if (on('logins')) loops.push((async () => {   // sign-ins
  for (let i = 0; i < 1e6 && until(); i++) {
    const r = await call('/api/auth/login', { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email, password }) });
    if (r.status === 200) stats.logins++; else err(`login ${r.status}`);
    await sleep(500);
  }
})());
if (on('storms')) loops.push((async () => {   // reconnect storms
  for (let k = 0; k < 1e5 && until(); k++) {
    await sleep(15000);
    if (!until()) break;
    const storm = subs.filter((s) => (s.i + k) % 4 === 0);
    for (const s of storm) s.ws.terminate();
    await sleep(200);
    await Promise.all(storm.map((s) => s.connect()));
    stats.reconnects += storm.length;
  }
})());

loops.push((async () => { while (until()) await sleep(Math.min(1000, Math.max(0, end - Date.now()))); })());

// ---- sampling ----
// The heap figure (/metrics process_heap_bytes: bytes malloc'ed and not
// freed, under ASan its own count) is what a reachable leak grows; RSS also
// holds what the allocator keeps.
async function heapKb() {
  const r = await call('/metrics');
  const m = r.status === 200 && r.text.match(/^process_heap_bytes (\S+)$/m);
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}
// A sign-in's Argon2id hash maps tens of MB for ~0.1 s on a threadpool
// thread: an RSS sample is the lowest of 6 reads 60 ms apart, so it shows
// retained memory, not a hash in progress.
const samples = [];
const sample = async () => {
  let fds = 0, best = { rss: Infinity, anon: 0, file: 0, threads: 0 };
  for (let i = 0; i < 6; i++) {
    try { const m = memKb(pid); if (m.rss < best.rss) best = m; } catch { /* exited */ }
    if (i < 5) await sleep(60);
  }
  try { fds = readdirSync(`/proc/${pid}/fd`).length; } catch { /* exited */ }
  samples.push({ t: Date.now() - t0, fds, heap: await heapKb(), ...best });
};
await sample();
const sampler = setInterval(sample, 10000);
await Promise.all(loops);
await sleep(1500);   // deliveries in flight
await sample();
clearInterval(sampler);

// ---- verdict ----
const checks = [];
const check = (what, ok, detail = '') => checks.push({ what, ok: !!ok, detail });
const warm = Math.max(20000, (SECS * 1000) / 3);
const steady = samples.filter((s) => s.t >= warm);
const rssSlope = slope(steady, 'rss'), fdSlope = slope(steady, 'fds'), heapSlope = slope(steady, 'heap');
check(`heap flat after warm-up (process_heap_bytes slope ≤ ${HEAP_SLOPE} kB/min)`,
  steady.length >= 2 && steady.every((x) => Number.isFinite(x.heap)) && heapSlope <= HEAP_SLOPE,
  `${heapSlope.toFixed(0)} kB/min over ${steady.length} samples`);
if (!asan) check(`RSS flat after warm-up (slope ≤ ${RSS_SLOPE} kB/min)`, steady.length >= 2 && rssSlope <= RSS_SLOPE,
  `${rssSlope.toFixed(0)} kB/min over ${steady.length} samples`);
const fdGrowth = steady.length ? steady[steady.length - 1].fds - Math.min(...steady.map((x) => x.fds)) : 0;
check('open fds flat after warm-up (slope ≤ 1/min, or at most 2 more than the steady minimum)',
  steady.length >= 2 && (fdSlope <= 1 || fdGrowth <= 2), `${fdSlope.toFixed(2)} fds/min, +${fdGrowth}`);
const rows = new Set(psql(`SELECT seq FROM channel_messages WHERE channel = '${durable}'`).split('\n').filter(Boolean).map(Number));
const lostDurable = [...ackedDurable].filter((s) => !rows.has(s)).length;
if (on('writes'))
  check('every acknowledged durable publish is a row', ackedDurable.size > 0 && lostDurable === 0, `${ackedDurable.size} acked, ${lostDurable} lost`);
// every subscriber must have every acked market seq from the time it first subscribed
let lostLive = 0;
for (const s of subs) for (const seq of ackedMarket) if (seq >= firstSeq && !s.seen.has(seq)) lostLive++;
if (on('fanout'))
  check('no acknowledged market message lost by any subscriber (live + resume)', ackedMarket.size > 0 && lostLive === 0,
  `${ackedMarket.size} acked × ${subs.length} subscribers, ${lostLive} missing`);
const errTotal = Object.values(stats.errors).reduce((a, b) => a + b, 0);
check('no failed requests', errTotal === 0, JSON.stringify(stats.errors));
for (const s of subs) s.ws.terminate();
const { code } = await srv.stop().catch((e) => ({ code: -1, e }));
const sanitizer = /AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs());
if (process.env.SOAK_LOG) writeFileSync(process.env.SOAK_LOG, srv.logs());   // the server's stderr, to look into
check('exit 0 and zero sanitizer reports (LeakSanitizer at exit)', code === 0 && !sanitizer, `exit ${code}`);

console.log(`== soak (SOAK_SECONDS=${SECS}) ${srv.child.spawnfile}${asan ? ' (ASan/LSan)' : ''}; ` +
  `traffic kinds off: ${[...OFF].join(', ') || 'none'}`);
console.log('samples (s, RSS kB, heap kB, anon kB, file kB, threads, fds): ' +
  samples.map((s) => `${Math.round(s.t / 1000)}:${s.rss}:${s.heap}:${s.anon}:${s.file}:${s.threads}:${s.fds}`).join(' '));
console.log(`traffic: ${stats.reads} reads, ${stats.writes} durable writes, ${ackedMarket.size} fan-out publishes, ` +
  `${stats.delivered} deliveries, ${stats.logins} sign-ins, ${stats.reconnects} reconnects`);
const at = (t) => samples.find((x) => x.t >= t) || samples[samples.length - 1];
const half = steady.filter((x) => x.t >= warm + (SECS * 1000 - warm) / 2);
console.log(`slopes after ${Math.round(warm / 1000)} s warm-up: heap ${heapSlope.toFixed(0)} kB/min, ` +
  `RSS ${rssSlope.toFixed(0)} kB/min${asan ? ' (reported, not checked under ASan)' : ''} ` +
  `(${half.length >= 3 ? `last half ${slope(half, 'rss').toFixed(0)}; ` : ''}anon ${slope(steady, 'anon').toFixed(0)}, file ${slope(steady, 'file').toFixed(0)}), ` +
  `fds ${fdSlope.toFixed(2)}/min`);
console.log(`RSS ${samples[0].rss} kB at start, ${at(warm).rss} after warm-up, ${samples[samples.length - 1].rss} at the end, ` +
  `peak ${Math.max(...samples.map((s) => s.rss))}; heap ${samples[0].heap} → ${at(warm).heap} → ${samples[samples.length - 1].heap} kB`);
for (const c of checks) console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.what}${c.detail ? ` (${c.detail})` : ''}`);
const failed = checks.filter((c) => !c.ok).length;
console.log(`soak: ${checks.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
