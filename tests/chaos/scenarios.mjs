// Chaos and flood scenarios against the real binary (issue 17 items 2, 3).
// Each scenario starts its own server, injects one fault under load, and
// returns { name, ok, checks: [{what, ok, detail}], figures: {...} }, so
// the same code backs `make chaos` (tests/chaos/run.mjs, longer phases) and
// the short run in `make test` (tests/integration/chaos.test.mjs).
//
// Load goes to 127.0.0.1 only; every loop is bounded in count and time.
// The scenarios written against the issue-8 fixes (pipelined flood without
// reading, 1013 seen by a paused client) run by default now that those fixes
// are in; OSB_CHAOS_ISSUE8=0 leaves them out.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import WebSocket from 'ws';
import { Worker } from 'node:worker_threads';
import { startServer, randomKey, BIN } from '../integration/lib/server.mjs';
import { startFakeElevenLabs } from '../integration/lib/fake_upstreams.mjs';
import { mintToken } from '../integration/lib/admin.mjs';

export const ISSUE8 = process.env.OSB_CHAOS_ISSUE8 !== '0';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PG_URL = process.env.OSB_TEST_PG_URL;
const PG_SCRIPT = process.env.OSB_PG_SCRIPT;

function report(name) {
  const checks = [];
  const figures = {};
  return {
    name, checks, figures,
    check(what, ok, detail = '') { checks.push({ what, ok: !!ok, detail: String(detail) }); return ok; },
    done() { return { name, ok: checks.every((c) => c.ok), checks, figures }; },
  };
}

// ASan keeps freed memory in a quarantine (256 MB by default), which RSS
// would show as growth: RSS bounds are measured with a small one.
export const ASAN_SMALL = 'detect_leaks=1:abort_on_error=0:quarantine_size_mb=4:thread_local_quarantine_size_kb=64';

export function rssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

export function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function timedFetch(srv, path, init) {
  const t0 = performance.now();
  try {
    const r = await srv.fetch(path, init);
    const text = await r.text();
    return { status: r.status, text, t0, t1: performance.now(), retryAfter: r.headers.get('retry-after') };
  } catch (e) {
    return { status: 0, error: e.cause?.code || e.message, t0, t1: performance.now() };
  }
}

function openWs(url, opts = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, opts);
    const c = { ws, msgs: [], closeCode: null, error: null, opened: false, status: null };
    ws.on('open', () => { c.opened = true; resolve(c); });
    ws.on('message', (d) => { try { c.msgs.push(JSON.parse(d)); } catch { c.msgs.push({ raw: String(d) }); } });
    ws.on('close', (code) => { c.closeCode = code; resolve(c); });
    ws.on('unexpected-response', (req, res) => { c.status = res.statusCode; res.resume(); resolve(c); });
    ws.on('error', (e) => { c.error = e.code || e.message; resolve(c); });
  });
}

async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  for (let i = 0; i < 100000; i++) {
    if (fn()) return true;
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return false;
}

async function subscribe(c, channel) {
  c.ws.send(JSON.stringify({ type: 'subscribe', channel, id: 's1' }));
  return waitFor(() => c.msgs.some((m) => m.id === 's1'), 5000);
}

async function stopClean(r, srv) {
  const { code, signal } = await srv.exited.then(() => srv.exited).catch(() => ({}));
  return { code, signal };
}

async function publish(srv, key, channel, data) {
  return timedFetch(srv, '/api/realtime/publish', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ channel, data }),
  });
}

function psql(sql) {
  return execFileSync('psql', [PG_URL, '-XAtq', '-c', sql], { encoding: 'utf8' }).trim();
}

// ---- 1. PostgreSQL restarted under load ----
// Readers (a DB route) and writers (durable publishes, each stored as a row)
// run while PostgreSQL is stopped for `downMs` and started again.
export async function pgRestart({ loadMs = 3000, downMs = 1500, workers = 6 } = {}) {
  const r = report('pg-restart');
  if (!PG_URL || !PG_SCRIPT) { r.check('PostgreSQL available (OSB_TEST_PG_URL, OSB_PG_SCRIPT)', false); return r.done(); }
  const key = randomKey(16);
  const srv = await startServer({
    pg: true,
    env: { JWT_SECRET: randomKey(32), SERVICE_API_KEY: key, DB_POOL_MIN: '2', DB_POOL_MAX: '6', QUERY_CACHE_MB: '0',
           RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' },
  });
  // A durable channel's seq comes from its owner row (docs/protocol.md): the
  // notify: channel of a real user.
  const reg = await timedFetch(srv, '/api/auth/register', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `chaos-${randomKey(4)}@example.test`, password: `chaos ${randomKey(8)} pw` }),
  });
  const channel = `notify:${JSON.parse(reg.text || '{}').user?.id ?? 'missing'}`;
  const results = [];
  const acked = new Set();
  let stopAt = 0, downAt = 0, upAt = 0;
  const end = Date.now() + loadMs + downMs + 2000;
  const loops = [];
  for (let w = 0; w < workers; w++) {
    loops.push((async () => {
      for (let i = 0; i < 1000000 && Date.now() < end; i++) {
        const x = w % 2 === 0
          ? await timedFetch(srv, `/api/market/procedures/${1 + (i % 50)}`)
          : await publish(srv, key, channel, { w, i });
        x.kind = w % 2 === 0 ? 'read' : 'write';
        results.push(x);
        if (x.kind === 'write' && x.status === 200) acked.add(JSON.parse(x.text).seq);
        if (x.status === 503) await sleep(20);
      }
    })());
  }
  await sleep(Math.min(1000, loadMs / 3));
  stopAt = performance.now();
  execFileSync(PG_SCRIPT, ['stop']);
  downAt = performance.now();
  await sleep(downMs);
  execFileSync(PG_SCRIPT, ['restart']);   // pg_ctl -w: returns once it accepts connections
  upAt = performance.now();
  await Promise.all(loops);
  const bad = results.filter((x) => x.status !== 200 && x.status !== 503);
  r.check('every answer is 200 or 503 (no crash, no 500)', bad.length === 0,
    JSON.stringify(bad.slice(0, 3).map((x) => [x.status, x.error, (x.text || '').slice(0, 100)])));
  const early503 = results.filter((x) => x.status === 503 && x.t1 < stopAt);
  r.check('no 503 before PostgreSQL stopped', early503.length === 0, `${early503.length}`);
  const late503 = results.filter((x) => x.status === 503 && x.t0 > upAt + 1000);
  r.check('no 503 sent more than 1 s after PostgreSQL accepts again', late503.length === 0, `${late503.length}`);
  const firstOk = results.filter((x) => x.status === 200 && x.t0 >= upAt).map((x) => x.t1).sort((a, b) => a - b)[0];
  const recovery = firstOk ? firstOk - upAt : Infinity;
  r.figures.first_success_after_up_ms = Math.round(recovery);
  r.check('first success ≤ 1 s after PostgreSQL accepts again', recovery <= 1000, `${Math.round(recovery)} ms`);
  r.figures.requests = results.length;
  r.figures.status_503 = results.filter((x) => x.status === 503).length;
  r.figures.down_ms = Math.round(upAt - downAt);
  // nothing acknowledged lost: every acked seq is a row
  const rows = new Set(psql(`SELECT seq FROM channel_messages WHERE channel = '${channel}'`).split('\n').filter(Boolean).map(Number));
  const lost = [...acked].filter((s) => !rows.has(s));
  r.figures.acknowledged_writes = acked.size;
  r.figures.rows = rows.size;
  r.check('every acknowledged publish is a row (nothing acknowledged lost)', lost.length === 0 && acked.size > 0,
    `${acked.size} acked, ${lost.length} lost`);
  const { code } = await srv.stop();
  r.check('server exits 0, no sanitizer report', code === 0 && !/AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs()), `exit ${code}`);
  return r.done();
}

// ---- 1b. PostgreSQL restarted during WebSocket publishing ----
// Publishers send the WebSocket `publish` message on a durable channel
// (notify:<user>: stored and numbered in PostgreSQL; the answer is `ack
// {seq}` once committed, `error unavailable` if the database failed) while
// subscribers of the channel count what they receive. PostgreSQL is stopped
// for `downMs`, then started.
export async function pgRestartWs({ loadMs = 3000, downMs = 1500, publishers = 4, subscribers = 4 } = {}) {
  const r = report('pg-restart-ws');
  if (!PG_URL || !PG_SCRIPT) { r.check('PostgreSQL available (OSB_TEST_PG_URL, OSB_PG_SCRIPT)', false); return r.done(); }
  const key = randomKey(16);
  const srv = await startServer({
    pg: true,
    env: { JWT_SECRET: randomKey(32), SERVICE_API_KEY: key, DB_POOL_MIN: '2', DB_POOL_MAX: '6',
           RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' },
  });
  const reg = await timedFetch(srv, '/api/auth/register', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `chaos-ws-${randomKey(4)}@example.test`, password: `chaos ${randomKey(8)} pw` }),
  });
  const channel = `notify:${JSON.parse(reg.text || '{}').user?.id ?? 'missing'}`;
  // A service-key WebSocket: `auth`, then optionally subscribe.
  async function client(sub, since) {
    const c = await openWs(srv.wsUrl(), { perMessageDeflate: false });
    if (!c.opened) return c;
    c.seqs = new Set();
    c.waiting = new Map();
    c.ws.on('message', (d) => {
      const m = JSON.parse(d);
      if (m.type === 'message' && m.channel === channel && Number.isInteger(m.seq)) c.seqs.add(m.seq);
      const w = m.id !== undefined && c.waiting.get(m.id);
      if (w) { c.waiting.delete(m.id); w(m); }
    });
    c.call = (msg, ms = 5000) => new Promise((resolve) => {
      const t = setTimeout(() => { c.waiting.delete(msg.id); resolve({ type: 'timeout' }); }, ms);
      c.waiting.set(msg.id, (m) => { clearTimeout(t); resolve(m); });
      c.ws.send(JSON.stringify(msg));
    });
    const a = await c.call({ type: 'auth', token: key, id: 'auth' });
    c.authed = a.type === 'authenticated';
    if (sub) c.subscribed = await c.call({ type: 'subscribe', channel, id: 'sub', ...(since !== undefined ? { since } : {}) });
    return c;
  }
  const subs = [];
  for (let i = 0; i < subscribers; i++) subs.push(await client(true));
  const pubs = [];
  for (let i = 0; i < publishers; i++) pubs.push(await client(false));
  r.check('clients connected and signed in with the service key', [...subs, ...pubs].every((c) => c.opened && c.authed) &&
    subs.every((c) => c.subscribed?.type === 'subscribed'), JSON.stringify(subs[0]?.subscribed).slice(0, 120));
  const results = [];
  const acked = new Set();
  let stopAt = 0, upAt = 0;
  const end = Date.now() + loadMs + downMs + 2000;
  const loops = pubs.map((c, w) => (async () => {
    for (let i = 0; i < 1000000 && Date.now() < end && c.closeCode === null; i++) {
      const t0 = performance.now();
      const m = await c.call({ type: 'publish', channel, data: { w, i }, id: `p${i}` });
      const x = { t0, t1: performance.now(), type: m.type, code: m.code, seq: m.seq };
      results.push(x);
      if (m.type === 'ack') acked.add(m.seq);
      else await sleep(20);
    }
  })());
  await sleep(Math.min(1000, loadMs / 3));
  stopAt = performance.now();
  execFileSync(PG_SCRIPT, ['stop']);
  const downAt = performance.now();
  await sleep(downMs);
  execFileSync(PG_SCRIPT, ['restart']);
  upAt = performance.now();
  await Promise.all(loops);
  await sleep(500);   // the last deliveries

  const bad = results.filter((x) => x.type !== 'ack' && !(x.type === 'error' && x.code === 'unavailable'));
  r.check('every publish answered: ack, or error unavailable (no other error, no timeout)', bad.length === 0,
    JSON.stringify(bad.slice(0, 3)));
  r.check('no WebSocket closed (publishers and subscribers)', [...subs, ...pubs].every((c) => c.closeCode === null),
    JSON.stringify([...new Set([...subs, ...pubs].map((c) => c.closeCode))]));
  const errs = results.filter((x) => x.type === 'error');
  const early = errs.filter((x) => x.t1 < stopAt);
  r.check('no error before PostgreSQL stopped', early.length === 0, `${early.length}`);
  const late = errs.filter((x) => x.t0 > upAt + 1000);
  r.check('no error for a publish sent more than 1 s after PostgreSQL accepts again', late.length === 0, `${late.length}`);
  const firstOk = results.filter((x) => x.type === 'ack' && x.t0 >= upAt).map((x) => x.t1).sort((a, b) => a - b)[0];
  const recovery = firstOk ? firstOk - upAt : Infinity;
  r.figures.first_ack_after_up_ms = Math.round(recovery);
  r.check('first ack ≤ 1 s after PostgreSQL accepts again', recovery <= 1000, `${Math.round(recovery)} ms`);
  r.check('errors while it was down (the fault was seen)', errs.length > 0, `${errs.length}`);
  r.figures.publishes = results.length;
  r.figures.errors_unavailable = errs.length;
  r.figures.down_ms = Math.round(upAt - downAt);
  const rows = new Set(psql(`SELECT seq FROM channel_messages WHERE channel = '${channel}'`).split('\n').filter(Boolean).map(Number));
  const lost = [...acked].filter((x) => !rows.has(x));
  r.figures.acknowledged = acked.size;
  r.figures.rows = rows.size;
  r.check('every acknowledged publish is a row', acked.size > 0 && lost.length === 0, `${acked.size} acked, ${lost.length} lost`);
  // Subscribers: every acknowledged seq live, or after a resume with `since`.
  let missedLive = 0, unrecovered = 0;
  for (const c of subs) {
    const missing = [...acked].filter((x) => !c.seqs.has(x)).sort((a, b) => a - b);
    missedLive += missing.length;
    if (!missing.length) continue;
    const again = await client(true, missing[0] - 1);
    await sleep(500);
    unrecovered += missing.filter((x) => !again.seqs.has(x)).length;
    again.ws.terminate();
  }
  r.figures.missed_live = missedLive;
  r.check('subscribers received every acknowledged message (live, or replayed after subscribe since)', unrecovered === 0,
    `${missedLive} missed live, ${unrecovered} not recovered, over ${subs.length} subscribers`);
  for (const c of [...subs, ...pubs]) c.ws.terminate();
  const { code } = await srv.stop();
  r.check('server exits 0, no sanitizer report', code === 0 && !/AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs()), `exit ${code}`);
  return r.done();
}

// ---- 2. SIGTERM under load: the readiness window, then the drain ----
// SHUTDOWN_DRAIN_DELAY_MS = drainMs. A load balancer's probe (a new
// connection per GET /ready every 50 ms) must see 503 first while
// connections still succeed, then refused connects; keep-alive clients on
// raw sockets (so "a request on an already-open connection" is exact) get
// Connection: close inside the window and move to new connections; requests
// in flight (head sent before SIGTERM, body in the window or after it)
// finish; WebSockets get 1001 after the window; exit 0.
export async function sigtermDrain({ subscribers = 20, inflight = 10, loaders = 4, drainMs = 1000 } = {}) {
  const r = report('sigterm-drain');
  const key = randomKey(16);
  const timeoutMs = drainMs + 5000;
  const srv = await startServer({ env: { SERVICE_API_KEY: key, SHUTDOWN_TIMEOUT_MS: String(timeoutMs),
                                          SHUTDOWN_DRAIN_DELAY_MS: String(drainMs),
                                          RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' } });
  const subs = [];
  for (let i = 0; i < subscribers; i++) {
    const c = await openWs(srv.wsUrl());
    if (c.opened) await subscribe(c, 'market:drain');
    c.ws.on('close', () => { c.closedAt = performance.now(); });
    subs.push(c);
  }
  r.check('subscribers connected', subs.every((c) => c.opened), subs.filter((c) => !c.opened).length);
  // In-flight requests: heads sent, bodies not yet. Group A sends its body
  // inside the window, group B once connects are refused (after the stop).
  const body = JSON.stringify({ channel: 'market:drain', data: { last: true } });
  const raws = [];
  for (let i = 0; i < inflight; i++) {
    raws.push(await new Promise((resolve) => {
      const s = net.connect(srv.port, '127.0.0.1', () => {
        s.write(`POST /api/realtime/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
                `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
        resolve(x);
      });
      const x = { s, data: '', closed: false, group: i % 2 ? 'B' : 'A' };
      s.on('data', (d) => { x.data += d; });
      s.on('close', () => { x.closed = true; });
      s.on('error', () => {});
    }));
  }
  let stop = false;
  const loads = Array.from({ length: loaders }, () => keepAliveLoader(srv.port, () => stop));
  const prober = readinessProber(srv.port, () => stop);
  await sleep(300);
  const tTerm = performance.now();
  srv.child.kill('SIGTERM');
  await sleep(drainMs / 2);
  for (const x of raws) if (x.group === 'A') x.s.write(body);
  await waitFor(() => prober.recs.some((x) => x.refused && x.t0 > tTerm), drainMs + 3000);
  const firstRefused = prober.recs.find((x) => x.refused && x.t0 > tTerm);
  for (const x of raws) if (x.group === 'B') x.s.write(body);
  await waitFor(() => raws.every((x) => x.closed), 5000);
  await waitFor(() => subs.every((c) => c.closeCode !== null), 5000);
  await sleep(200);
  stop = true;
  await Promise.all([...loads.map((l) => l.done), prober.done]);
  const { code } = await srv.exited;
  const tExit = performance.now();
  const windowEnd = tTerm + drainMs;

  // readiness: 200 before, 503 first after SIGTERM (on new connections), then refused
  const after = prober.recs.filter((x) => x.t0 > tTerm);
  const first503 = after.find((x) => x.status === 503);
  const okAfter503 = first503 ? after.filter((x) => x.t0 > first503.t0 && x.status === 200).length : 0;
  const n503 = after.filter((x) => x.status === 503).length;
  r.figures.ready_probes_503 = n503;
  r.check('readiness probe: 200 before SIGTERM', prober.recs.some((x) => x.t1 < tTerm && x.status === 200));
  r.check('readiness probe sees 503 first (new connections still accepted), never 200 again',
    first503 && okAfter503 === 0 && (!firstRefused || first503.t0 < firstRefused.t0) && n503 >= Math.max(1, Math.floor(drainMs / 200)),
    `${n503} × 503, ${okAfter503} × 200 after the first 503`);
  const windowMs = firstRefused ? firstRefused.t0 - tTerm : Infinity;
  r.figures.window_ms = Math.round(windowMs);
  r.check(`then connections are refused, not before the window (${drainMs} ms) ends`,
    firstRefused && windowMs >= drainMs - 50 && windowMs < drainMs + 1500, `first refused ${Math.round(windowMs)} ms after SIGTERM`);
  const otherErr = after.filter((x) => !x.refused && x.status !== 503);
  r.check('every readiness probe after SIGTERM: 503 or a refused connect', otherErr.length === 0,
    JSON.stringify(otherErr.slice(0, 3).map((x) => x.status || x.error)));

  // keep-alive loaders
  const recs = loads.flatMap((l) => l.recs);
  const inWindow = recs.filter((x) => first503 && x.t0 > first503.t1 && x.t1 < windowEnd - 20 && !x.refused);
  const newInWindow = inWindow.filter((x) => !x.reused);
  r.figures.requests_in_window = inWindow.length;
  r.figures.new_connections_in_window = newInWindow.length;
  r.check('inside the window new connections are accepted and served (200)',
    newInWindow.length > 0 && newInWindow.every((x) => x.status === 200), `${newInWindow.filter((x) => x.status === 200).length}/${newInWindow.length}`);
  r.check('inside the window every response carries Connection: close',
    inWindow.length > 0 && inWindow.every((x) => x.close), `${inWindow.filter((x) => x.close).length}/${inWindow.length}`);
  const failedReused = recs.filter((x) => x.reused && x.status !== 200);
  // The server takes its whole accept queue before it closes the listener
  // (those connections are served); a handshake that completes between that
  // last accept() and the close(), or is still in progress at the close, is
  // reset by the kernel, and no server can answer it. Such a reset is
  // allowed only at the stop itself: within 20 ms before the first refused
  // connect of any client, and at most one per loader (each has one connect
  // in flight). A drain that regressed would reset the whole queue: many.
  const tStop = Math.min(...[...recs, ...prober.recs].filter((x) => x.refused && x.t0 > tTerm).map((x) => x.t0));
  const atClose = (x) => x.error === 'ECONNRESET' && !x.reused && x.t0 <= tStop && x.t0 >= tStop - 20;
  const resetByLoader = loads.map((l) => l.recs.filter((x) => !x.refused && x.status !== 200 && atClose(x)).length);
  const tolerated = resetByLoader.every((n) => n <= 1);
  r.figures.reset_at_close = resetByLoader.reduce((a, b) => a + b, 0);
  const failedNew = recs.filter((x) => !x.reused && !x.refused && x.status !== 200 && !(atClose(x) && tolerated));
  r.figures.loader_requests = recs.filter((x) => !x.refused).length;
  r.figures.refused_connects = recs.filter((x) => x.refused).length;
  r.check('zero failed requests on already-open connections', failedReused.length === 0,
    JSON.stringify(failedReused.slice(0, 3).map((x) => x.error || x.status)));
  r.check('zero failed requests on accepted new connections (only refused connects after the window)', failedNew.length === 0,
    JSON.stringify(failedNew.slice(0, 3).map((x) => [x.error || x.status, Math.round(x.t0 - tTerm)])));
  const earlyRefused = recs.filter((x) => x.refused && x.t0 < windowEnd - 50);
  r.check('no loader connect refused inside the window', earlyRefused.length === 0, `${earlyRefused.length}`);

  // in flight, WebSockets, exit
  const ok = raws.filter((x) => /^HTTP\/1\.1 200 /.test(x.data) && /Connection: close/i.test(x.data));
  r.check('in-flight requests finish (200, Connection: close), bodies sent in the window and after the stop',
    ok.length === raws.length, `${ok.length}/${raws.length}`);
  const codes = subs.map((c) => c.closeCode);
  r.check('every WebSocket closed with 1001', codes.every((c) => c === 1001), JSON.stringify([...new Set(codes)]));
  const earlyWs = subs.filter((c) => c.closedAt && c.closedAt < windowEnd - 50);
  r.check('WebSockets stay open through the window', earlyWs.length === 0, `${earlyWs.length} closed early`);
  r.figures.drain_ms = Math.round(tExit - tTerm);
  r.check(`exit status 0 within SHUTDOWN_TIMEOUT_MS (${timeoutMs} ms), no sanitizer report`,
    code === 0 && tExit - tTerm < timeoutMs && !/AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs()), `exit ${code}`);
  await srv.stop().catch(() => {});
  return r.done();
}

// One raw TCP connection for GET requests with Content-Length answers.
// Resolves with null if the connect is refused.
function rawConn(port, localAddress) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    const c = { s, buf: '', closed: false, wake: null, connected: false };
    s.setNoDelay(true);
    s.on('data', (d) => { c.buf += d.toString('latin1'); c.wake?.(); });
    s.on('close', () => { c.closed = true; c.wake?.(); if (!c.connected) resolve(null); });
    s.once('connect', () => { c.connected = true; resolve(c); });
    s.on('error', (e) => { c.error = e.code || e.message; });
    c.request = (path, ms = 5000) => new Promise((res) => {
      c.buf = '';
      s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const t = setTimeout(() => { c.wake = null; res({ error: 'timeout' }); }, ms);
      c.wake = () => {
        const end = c.buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          const head = c.buf.slice(0, end);
          const len = Number((head.match(/\r\ncontent-length: *(\d+)/i) || [])[1] || 0);
          if (c.buf.length >= end + 4 + len) {
            clearTimeout(t); c.wake = null;
            res({ status: Number(head.slice(9, 12)), close: /\r\nconnection: *close/i.test(head) });
            return;
          }
        }
        if (c.closed) { clearTimeout(t); c.wake = null; res({ error: c.error || 'closed before the answer' }); }
      };
      c.wake();
    });
    c.destroy = () => s.destroy();
  });
}

// A keep-alive client: one GET /health at a time on one connection; an
// answer with Connection: close (or an error) makes the next request open a
// new one. Records {t0, t1, reused, status, close, error, refused}.
function keepAliveLoader(port, stopped) {
  const recs = [];
  const done = (async () => {
    let c = null;
    for (let i = 0; i < 1000000 && !stopped(); i++) {
      const t0 = performance.now();
      const reused = !!c;
      if (!c) c = await rawConn(port);
      if (!c) { recs.push({ t0, t1: performance.now(), refused: true }); await sleep(20); continue; }
      const x = await c.request('/health');
      recs.push({ t0, t1: performance.now(), reused, ...x });
      if (x.error || x.close) { c.destroy(); c = null; }
    }
    c?.destroy();
  })();
  return { recs, done };
}

// A load balancer's readiness probe: GET /ready on a new connection every
// `gapMs`. Records {t0, t1, status, refused, error}.
function readinessProber(port, stopped, gapMs = 50) {
  const recs = [];
  const done = (async () => {
    for (let i = 0; i < 100000 && !stopped(); i++) {
      const t0 = performance.now();
      const c = await rawConn(port);
      if (!c) recs.push({ t0, t1: performance.now(), refused: true });
      else {
        const x = await c.request('/ready');
        c.destroy();
        recs.push({ t0, t1: performance.now(), ...x });
      }
      await sleep(gapMs);
    }
  })();
  return { recs, done };
}

// A well-behaved client on its own raw keep-alive connection (not the
// fetch pool the load uses): GET /health every `gapMs` for `ms`.
export async function rawProbe(port, ms, { gapMs = 5, keep = null } = {}) {
  const lat = [];
  let failed = 0, c = keep?.c ?? null;
  const end = Date.now() + ms;
  for (let i = 0; i < 100000 && Date.now() < end; i++) {
    if (!c || c.closed) c = await rawConn(port);
    if (!c) { failed++; await sleep(gapMs); continue; }
    const t0 = performance.now();
    const x = await c.request('/health');
    if (x.status === 200) lat.push(performance.now() - t0); else failed++;
    if (x.error || x.close) { c.destroy(); c = null; }
    await sleep(gapMs);
  }
  if (keep) keep.c = c; else c?.destroy();
  return { lat, failed, p50: pct(lat, 50), p99: pct(lat, 99), n: lat.length };
}

// rawProbe in a worker thread, on one connection kept across calls:
// `await w.probe(ms)`, then `await w.close()`.
export function probeWorker(port) {
  const w = new Worker(new URL('./probe_worker.mjs', import.meta.url), { workerData: { port } });
  const q = [];
  w.on('message', (m) => q.shift()?.(m));
  const call = (msg) => new Promise((resolve) => { q.push(resolve); w.postMessage(msg); });
  return {
    probe: (ms, gapMs = 5) => call({ cmd: 'probe', ms, gapMs }),
    async close() { await call({ cmd: 'close' }); await w.terminate(); },
  };
}

export function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);   // utime + stime, 1/100 s
}

// ---- 3. 10 % of subscribers stop reading during fan-out ----
// Messages are large (48 KB) so the paused sockets' kernel buffers (several
// MB on loopback) fill within seconds and the server's own queue passes
// WS_SEND_BUFFER_BYTES.
export async function slowSubscribers({ conns = 20, publishMs = 5000, rate = 50, payload = 48000, sendBuf = 65536, slackMs = 5 } = {}) {
  const r = report('slow-subscribers');
  const key = randomKey(16);
  const srv = await startServer({ env: { SERVICE_API_KEY: key, WS_SEND_BUFFER_BYTES: String(sendBuf), ASAN_OPTIONS: ASAN_SMALL,
                                          RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' } });
  const channel = 'market:fanout';
  const subs = [];
  for (let i = 0; i < conns; i++) {
    const c = await openWs(srv.wsUrl(), { perMessageDeflate: false });
    await subscribe(c, channel);
    c.lat = [];
    c.ws.on('message', (d) => {
      const m = JSON.parse(d);
      if (m.type === 'message' && m.data?.t) c.lat.push(performance.now() - m.data.t);
    });
    subs.push(c);
  }
  const pad = 'x'.repeat(payload);
  // Publish at `rate` for `ms`; with `until`, go on (at most `extraMs` more)
  // until it holds, so a loaded machine that publishes slowly still fills
  // the stopped subscribers' buffers.
  async function phase(ms, { until, extraMs = 0 } = {}) {
    let acked = 0;
    const end = Date.now() + ms, hardEnd = end + extraMs;
    for (let i = 0; i < 1000000; i++) {
      if (Date.now() >= end && (!until || Date.now() >= hardEnd || (i % 5 === 0 && await until()))) break;
      const x = await publish(srv, key, channel, { t: performance.now(), pad });
      if (x.status === 200) acked++;
      await sleep(1000 / rate);
    }
    await sleep(500);
    return acked;
  }
  const slowClosesNow = async () => {
    const m = (await (await srv.fetch('/metrics')).text()).match(/^websocket_slow_consumer_closes_total (\d+)/m);
    return m ? Number(m[1]) : 0;
  };
  const rss0 = rssKb(srv.child.pid);
  // clean phase: everyone reads
  const cleanAcked = await phase(publishMs / 2);
  const cleanLat = subs.flatMap((c) => c.lat);
  const cleanP99 = pct(cleanLat, 99);
  for (const c of subs) c.lat = [];
  // slow phase: 10 % pause their sockets (kernel buffers fill, then the server's queue)
  const slow = subs.slice(0, Math.max(1, Math.floor(conns / 10)));
  const fast = subs.slice(slow.length);
  for (const c of slow) c.ws._socket.pause();
  const before = fast.map((c) => c.msgs.length);
  const slowAcked = await phase(publishMs, { extraMs: 3 * publishMs, until: async () => (await slowClosesNow()) >= slow.length });
  const rssPeak = rssKb(srv.child.pid);
  const slowP99 = pct(fast.flatMap((c) => c.lat), 99);
  r.figures.clean_p99_ms = +cleanP99.toFixed(2);
  r.figures.slow_phase_p99_ms = +slowP99.toFixed(2);
  r.figures.rss_kb_before = rss0;
  r.figures.rss_kb_peak = rssPeak;
  r.figures.published = cleanAcked + slowAcked;
  const got = fast.map((c, i) => c.msgs.length - before[i]);
  r.check('every reading subscriber got every message', got.every((n) => n >= slowAcked), `min ${Math.min(...got)} of ${slowAcked}`);
  r.check(`reading subscribers p99 within 2× the clean run (+${slackMs} ms slack)`, slowP99 <= 2 * cleanP99 + slackMs,
    `${slowP99.toFixed(1)} vs ${cleanP99.toFixed(1)} ms`);
  // bounded: slow consumers hold at most WS_SEND_BUFFER_BYTES each, plus slack
  r.check('RSS bounded (< +64 MiB)', rssPeak - rss0 < 65536, `${rss0} → ${rssPeak} kB`);
  const slowCloses = await slowClosesNow();
  r.figures.slow_consumer_closes = slowCloses;
  r.check('every stopped subscriber was closed by the server for being slow (1013)', slowCloses >= slow.length,
    `${slowCloses} of ${slow.length}`);
  for (const c of slow) c.ws._socket.resume();
  await waitFor(() => slow.every((c) => c.closeCode !== null), 3000);
  if (ISSUE8) {
    r.check('paused clients see close 1013 at a frame boundary (issue 8 #7)', slow.every((c) => c.closeCode === 1013),
      JSON.stringify(slow.map((c) => c.closeCode)));
  } else {
    r.figures.paused_client_close_codes = [...new Set(slow.map((c) => c.closeCode))].join(',');
  }
  r.check('reading subscribers still open', fast.every((c) => c.closeCode === null));
  for (const c of subs) c.ws.terminate();
  const { code } = await srv.stop();
  r.check('server exits 0, no sanitizer report', code === 0, `exit ${code}`);
  return r.done();
}

// ---- 3b. an upstream that stalls never raises /health p99 ----
// A fake ElevenLabs that accepts each call and then says nothing (head
// stall, then body stall: the head and part of the audio, then nothing).
// `clients` loops keep TTS calls in flight against it, more than
// TTS_MAX_CONCURRENCY so the bulkhead queue is full too, with the breaker
// kept closed (BREAKER_MIN_CALLS high: the worst case, every call waits out
// UPSTREAM_TIMEOUT_MS). A probe on its own connection measures /health
// before (clean) and during the stall. Then the other documented answers:
// a dropped connection 502, the breaker open 503 with Retry-After (no call
// goes out), and 200 audio once the upstream answers again.
export async function upstreamStall({ clients = 24, concurrency = 16, timeoutMs = 1500, phaseMs = 3000, slackMs = 5,
  p99Ms = Number(process.env.CHAOS_P99_MS || 10) } = {}) {
  const r = report('upstream-stall');
  const apiKey = `xi-${randomKey(16)}`;
  const jwtSecret = randomKey(32);
  const fake = await startFakeElevenLabs({ apiKey });
  const srv = await startServer({ env: {
    ELEVENLABS_API_KEY: apiKey, ELEVENLABS_BASE_URL: fake.url, JWT_SECRET: jwtSecret,
    UPSTREAM_TIMEOUT_MS: String(timeoutMs), TTS_MAX_CONCURRENCY: String(concurrency), BREAKER_MIN_CALLS: '100000',
    RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' } });
  const reg = await timedFetch(srv, '/api/auth/register', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: `chaos-tts-${randomKey(4)}@example.test`, password: `chaos ${randomKey(8)} pw` }),
  });
  const user = JSON.parse(reg.text || '{}').user || {};
  // an admin token for the same account (PATCH /api/upstreams needs admin; TTS takes any user)
  const token = mintToken(jwtSecret, { sub: user.id, email: user.email, role: 'admin' });
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  let n = 0;
  const tts = async () => {
    const x = await timedFetch(srv, '/api/voice/tts', { method: 'POST', headers: auth, body: JSON.stringify({ text: `stalled call ${n++} ${randomKey(4)}` }) });
    let code = null;
    try { code = JSON.parse(x.text).error?.code ?? null; } catch { /* audio */ }
    return { ...x, code, ms: x.t1 - x.t0 };
  };
  const first = await tts();
  r.check('the upstream answers before the stall (200 audio)', first.status === 200, `${first.status} ${first.code}`);

  await sleep(300);   // the sign-up's hashing is done
  const pw = probeWorker(srv.port);
  const cpu0 = cpuTicks(srv.child.pid);
  const clean = await pw.probe(phaseMs);
  const cleanCpu = cpuTicks(srv.child.pid) - cpu0;
  fake.reset();
  fake.script({ stall: 'head' });
  let stop = false;
  const res = [];
  // Each client starts at a random moment within one timeout, so the
  // timeouts (and their answers) spread out as real traffic would, instead
  // of landing as one synchronized burst every UPSTREAM_TIMEOUT_MS.
  const loops = Array.from({ length: clients }, () => (async () => {
    await sleep(Math.random() * timeoutMs);
    for (let i = 0; i < 100000 && !stop; i++) res.push(await tts());
  })());
  await waitFor(() => fake.inFlight >= concurrency, 5000);
  const inFlightAtStart = fake.inFlight;
  const cpu1 = cpuTicks(srv.child.pid);
  const half = pw.probe(phaseMs / 2);
  await sleep(phaseMs / 2 - 100);
  fake.script({ stall: 'body' });
  const h1 = await half;
  const half2 = await pw.probe(phaseMs / 2);
  r.figures.server_cpu_ticks = `${cleanCpu} clean, ${cpuTicks(srv.child.pid) - cpu1} stalled (per ${phaseMs} ms)`;
  await pw.close();
  stop = true;
  await Promise.all(loops);
  fake.script({});
  const stallLat = [...h1.lat, ...half2.lat];
  const stallP99 = pct(stallLat, 99);
  r.figures.clean_p99_ms = +clean.p99.toFixed(2);
  r.figures.stall_p99_ms = +stallP99.toFixed(2);
  r.figures.stall_probes = stallLat.length;
  r.figures.tts_calls = res.length;
  r.figures.upstream_in_flight = `${inFlightAtStart} at start, ${fake.maxInFlight} max`;
  r.check(`/health p99 during the stall within 2× the clean phase (+${slackMs} ms) and under ${p99Ms} ms`,
    clean.failed === 0 && h1.failed + half2.failed === 0 && stallP99 <= 2 * clean.p99 + slackMs && stallP99 < p99Ms,
    `${stallP99.toFixed(2)} vs clean ${clean.p99.toFixed(2)} ms, ${h1.failed + half2.failed} failed`);
  r.check(`the stall held TTS_MAX_CONCURRENCY (${concurrency}) calls at the upstream, never more`,
    inFlightAtStart >= concurrency && fake.maxInFlight <= concurrency, `${inFlightAtStart} / max ${fake.maxInFlight}`);
  const t504 = res.filter((x) => x.status === 504 && x.code === 'upstream_timeout');
  const t503 = res.filter((x) => x.status === 503 && x.code === 'upstream_unavailable' && Number(x.retryAfter) > 0);
  const other = res.filter((x) => !t504.includes(x) && !t503.includes(x));
  r.figures.status_504 = t504.length;
  r.figures.status_503 = t503.length;
  r.check('every stalled call answered 504 upstream_timeout, or 503 upstream_unavailable (bulkhead full)',
    other.length === 0 && t504.length > 0, JSON.stringify(other.slice(0, 3).map((x) => [x.status, x.code, x.error])));
  const slow = t504.filter((x) => x.ms < timeoutMs * 0.9 || x.ms > timeoutMs * 3);
  r.check(`504 after UPSTREAM_TIMEOUT_MS (${timeoutMs} ms), not before or much later`, slow.length === 0,
    `${slow.length} outside; median ${pct(t504.map((x) => x.ms), 50)?.toFixed(0)} ms`);
  const early503 = t503.filter((x) => x.ms < 900);
  r.check('bulkhead 503s after the 1 s queue wait', early503.length === 0, `${early503.length} early`);

  fake.script({ drop: 'head' });
  const dropped = await tts();
  r.check('a dropped upstream connection → 502 upstream_error', dropped.status === 502 && dropped.code === 'upstream_error', `${dropped.status} ${dropped.code}`);
  fake.script({});
  const patch = (breaker) => timedFetch(srv, '/api/upstreams/tts', { method: 'PATCH', headers: auth, body: JSON.stringify({ breaker }) });
  const opened = await patch('forced_open');
  const callsBefore = fake.count;
  const refused = await tts();
  r.check('breaker open → 503 upstream_unavailable with Retry-After, nothing reaches the upstream',
    opened.status === 200 && refused.status === 503 && refused.code === 'upstream_unavailable' &&
    Number(refused.retryAfter) > 0 && fake.count === callsBefore,
    `${opened.status}; ${refused.status} ${refused.code}, Retry-After ${refused.retryAfter}`);
  await patch('auto');
  const back = await tts();
  r.check('served again once the upstream answers (200 audio)', back.status === 200, `${back.status} ${back.code}`);
  const { code } = await srv.stop();
  await fake.close();
  r.check('server exits 0, no sanitizer report (nothing leaked)', code === 0 && !/AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs()), `exit ${code}`);
  return r.done();
}

// ---- 4b. connection floods: the fd limit, EMFILE, per-address limits, pings ----
// One server under `prlimit --nofile=N`. A probe keeps one connection (opened
// first, so it needs no descriptor while they are exhausted) and measures
// /health p99 and the server's CPU time in each phase against a clean one:
//  1. idle connections (nothing sent) past the fd budget (N minus the
//     reserve, src/http/edge.c), from several addresses under the
//     per-address limit: the ones past it are accepted and closed at once;
//  2. real EMFILE: the soft limit of the running server is lowered below
//     its open descriptors (prlimit --pid), then a connect flood: accept
//     fails, libuv's reserve descriptor (or edge.c's) takes the pending
//     connections and closes them, and the loop must not spin on the
//     listener; the limit restored, new connections are served again;
//  3. MAX_CONNECTIONS_PER_IP + 20 idle connections from one address: 20
//     refused at accept, the probe (another address) unaffected;
//  4. a ping flood: WebSockets sending pings past WS_CONTROL_FRAMES_PER_S,
//     closed 1008.
export async function connFloods({ nofile = 512, perIp = 100, pingClients = 20, holdMs = 2000, slackMs = 5,
  p99Ms = Number(process.env.CHAOS_P99_MS || 10) } = {}) {
  const r = report('conn-floods');
  const srv = await startServer({ bin: 'prlimit', args: [`--nofile=${nofile}:${nofile}`, BIN], env: {
    MAX_CONNECTIONS_PER_IP: String(perIp), HTTP_HEADER_TIMEOUT_MS: '60000', HTTP_IDLE_TIMEOUT_MS: '60000',
    RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' } });
  const pid = srv.child.pid;
  const budget = nofile - Math.max(64, Math.floor(nofile / 20));
  const pw = probeWorker(srv.port);   // its connection is opened by the clean phase, before any flood
  const measure = async () => {
    const c0 = cpuTicks(pid);
    const p = await pw.probe(holdMs);
    return { ...p, cpu: cpuTicks(pid) - c0 };
  };
  const metric = async (re) => {
    const m = (await (await srv.fetch('/metrics')).text()).match(re);
    return m ? Number(m[1]) : 0;
  };
  const FD = /^http_server_connections_refused_total\{reason="fd_limit"\} (\d+)/m;
  const PER_IP = /^http_server_connections_refused_total\{reason="per_ip"\} (\d+)/m;
  // n idle connections, `per` from each address 127.0.0.<host>, <host+1>, ...
  const openMany = async (n, per, host) => {
    const out = [];
    for (let i = 0; i < n; i += 50) {
      out.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, k) =>
        rawConn(srv.port, `127.0.0.${host + Math.floor((i + k) / per)}`))));
    }
    await sleep(300);
    return out;
  };
  const closedBare = (cs) => cs.filter((c) => !c || (c.closed && c.buf === '')).length;
  const held = (cs) => cs.filter((c) => c && !c.closed).length;
  const served = async () => {
    const c = await rawConn(srv.port);
    const x = c ? await c.request('/health') : { error: 'refused' };
    c?.destroy();
    return x.status === 200;
  };
  const cpuOk = (m, clean) => m.cpu <= 2 * clean.cpu + holdMs / 20;   // + 5 % of a core
  const p99Ok = (m, clean) => m.failed === 0 && m.p99 <= 2 * clean.p99 + slackMs && m.p99 < p99Ms;
  const show = (m, clean) => `p99 ${m.p99.toFixed(2)} ms (clean ${clean.p99.toFixed(2)}), ${m.failed} failed; CPU ${m.cpu} ticks in ${holdMs} ms (clean ${clean.cpu})`;

  const clean = await measure();
  r.figures.clean = `p99 ${clean.p99.toFixed(2)} ms, CPU ${clean.cpu}/${holdMs / 10} ticks`;

  // 1. idle connections past the fd budget
  const fd0 = await metric(FD);
  const flood = await openMany(budget + 100, perIp - 10, 10);
  const m1 = await measure();
  const held1 = held(flood);
  for (const c of flood) c?.destroy();
  await sleep(500);
  const fdRefused = (await metric(FD)) - fd0;
  r.figures.fd_budget = `${budget} of nofile ${nofile}: ${held1} held, ${fdRefused} refused; ${show(m1, clean)}`;
  r.check(`idle flood to the fd limit: at most the budget (${budget}) held, the rest accepted and closed (fd_limit)`,
    held1 <= budget && held1 >= budget - 10 && fdRefused >= 90, `${held1} held, ${fdRefused} refused`);
  r.check('fd limit reached: the loop does not spin (CPU ≤ 2× clean + 5 %) and the probe keeps its p99',
    cpuOk(m1, clean) && p99Ok(m1, clean), show(m1, clean));
  r.check('served again once the idle flood left', await served());

  // 2. real EMFILE: the soft limit lowered under the open descriptors
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${fds + 8}:${nofile}`]);
  const flood2 = await openMany(150, perIp - 10, 40);
  const m2 = await measure();
  const bare2 = closedBare(flood2), held2 = held(flood2);
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${nofile}:${nofile}`]);
  for (const c of flood2) c?.destroy();
  await sleep(300);
  r.figures.emfile = `${fds} fds open, soft limit ${fds + 8}: ${held2} held, ${bare2} closed unanswered; ${show(m2, clean)}`;
  r.check('EMFILE: pending connections are taken and closed (the reserve-fd trick), not left in the backlog',
    bare2 >= 100 && held2 <= 16, `${held2} held, ${bare2} closed`);
  r.check('EMFILE: the loop does not spin and the probe keeps its p99', cpuOk(m2, clean) && p99Ok(m2, clean), show(m2, clean));
  r.check('served again once the limit is back', await served());

  // 3. per-address limit
  const ip0 = await metric(PER_IP);
  const flood3 = await openMany(perIp + 20, perIp + 20, 99);
  const m3 = await measure();
  const held3 = held(flood3);
  for (const c of flood3) c?.destroy();
  await sleep(300);
  const ipRefused = (await metric(PER_IP)) - ip0;
  r.figures.per_ip = `${held3} held, ${ipRefused} refused; ${show(m3, clean)}`;
  r.check(`MAX_CONNECTIONS_PER_IP (${perIp}) from one address: the 20 past it refused at accept`,
    held3 === perIp && ipRefused === 20, `${held3} held, ${ipRefused} refused`);
  r.check('per-address flood: the probe (another address) keeps its p99', p99Ok(m3, clean), show(m3, clean));

  // 4. ping flood
  const pingers = await Promise.all(Array.from({ length: pingClients }, () => openWs(srv.wsUrl())));
  const pm = measure();
  for (const c of pingers) if (c.opened) for (let i = 0; i < 100; i++) c.ws.ping('p');
  const m4 = await pm;
  await waitFor(() => pingers.every((c) => c.closeCode !== null), 3000);
  const codes = [...new Set(pingers.map((c) => c.closeCode))];
  r.figures.ping_flood = `${pingClients} clients × 100 pings: close ${codes.join(',')}; ${show(m4, clean)}`;
  r.check('ping flood past WS_CONTROL_FRAMES_PER_S → close 1008', pingers.every((c) => c.opened && c.closeCode === 1008), JSON.stringify(codes));
  r.check('ping flood: the probe keeps its p99', p99Ok(m4, clean), show(m4, clean));
  for (const c of pingers) c.ws.terminate();
  await pw.close();
  const { code } = await srv.stop();
  r.check('server exits 0, no sanitizer report', code === 0 && !/AddressSanitizer|LeakSanitizer|runtime error/.test(srv.logs()), `exit ${code}`);
  return r.done();
}

// ---- 4. floods, each refused with the documented status while a good client is served ----
export async function floods({ slowloris = 300, wsMax = 30, wsExtra = 20, p99Ms = Number(process.env.CHAOS_P99_MS || 10) } = {}) {
  const r = report('floods');
  const key = randomKey(16);
  const srv = await startServer({ env: { SERVICE_API_KEY: key, HTTP_HEADER_TIMEOUT_MS: '1500', WS_MAX_CONNECTIONS: String(wsMax),
                                          WS_MAX_MESSAGE_BYTES: '65536',
                                          RATE_LIMIT_RPS: '1000000', RATE_LIMIT_BURST: '1000000' } });
  // slowloris: connections trickling a head, one byte every 300 ms, from a
  // worker thread (its own event loop: the probe below measures the server,
  // not this process's timers)
  const lorDone = new Promise((resolve, reject) => {
    const w = new Worker(SLOWLORIS_WORKER, { eval: true, workerData: { port: srv.port, n: slowloris, ms: 2500 + 1500 + 1500 } });
    w.on('message', resolve);
    w.on('error', reject);
  });
  const pw = probeWorker(srv.port);   // in a worker thread: it measures the server, not this thread's floods
  await sleep(300);
  const good = await pw.probe(2500);
  const lor = await lorDone;
  r.figures.slowloris_conns = slowloris;
  r.figures.slowloris_probe_p99_ms = +good.p99.toFixed(2);
  r.check('slowloris connections answered 408 and closed after HTTP_HEADER_TIMEOUT_MS', lor.got408 === slowloris,
    `${lor.got408}/${slowloris}, ${lor.closed} closed`);
  r.check(`well-behaved client p99 < ${p99Ms} ms during slowloris`, good.failed === 0 && good.p99 < p99Ms,
    `p99 ${good.p99.toFixed(2)} ms, ${good.failed} failed`);

  // header floods
  const many = 'GET /health HTTP/1.1\r\nHost: x\r\n' + Array.from({ length: 150 }, (_, i) => `X-H${i}: v\r\n`).join('') + '\r\n';
  const big = 'GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ' + 'b'.repeat(20000) + '\r\n\r\n';
  for (const [what, req] of [['150 headers', many], ['a 20 KB header', big]]) {
    const resp = await rawRequest(srv.port, req);
    r.check(`${what} → 431`, /^HTTP\/1\.1 431 /.test(resp), resp.slice(0, 40));
  }
  // oversized and deeply nested JSON
  const huge = await publish(srv, key, 'market:x', { pad: 'y'.repeat(2 * 1024 * 1024) });
  r.check('a 2 MiB body → 413', huge.status === 413, huge.status);
  const nested = await timedFetch(srv, '/api/realtime/publish', {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: '{"channel":"market:x","data":' + '['.repeat(200000) + ']'.repeat(200000) + '}',
  });
  r.check('deeply nested JSON body (200k levels) → 4xx, server alive', nested.status >= 400 && nested.status < 500, nested.status);
  const ws = await openWs(srv.wsUrl());
  ws.ws.send('['.repeat(30000) + ']'.repeat(30000));   // 60 KB: under WS_MAX_MESSAGE_BYTES
  ws.ws.send(JSON.stringify({ type: 'ping', id: 'after' }));
  await waitFor(() => ws.msgs.some((m) => m.id === 'after'), 3000);
  r.check('deeply nested WebSocket message → error frame, connection usable',
    ws.msgs.some((m) => m.type === 'error') && ws.msgs.some((m) => m.type === 'pong'), JSON.stringify(ws.msgs.slice(0, 3)).slice(0, 200));
  ws.ws.send('x'.repeat(70000));
  await waitFor(() => ws.closeCode !== null, 3000);
  r.check('a WebSocket message over WS_MAX_MESSAGE_BYTES → close 1009', ws.closeCode === 1009, ws.closeCode);

  // WebSocket connect flood past WS_MAX_CONNECTIONS
  const flood = await Promise.all(Array.from({ length: wsMax + wsExtra }, () => openWs(srv.wsUrl())));
  const opened = flood.filter((c) => c.opened).length;
  const refused503 = flood.filter((c) => c.status === 503).length;
  r.figures.ws_flood = `${opened} opened, ${refused503} refused 503`;
  r.check('WebSocket connect flood: WS_MAX_CONNECTIONS open, the rest 503', opened === wsMax && refused503 === wsExtra,
    `${opened} opened, ${refused503} × 503`);
  const good2 = await pw.probe(1000);
  r.check(`well-behaved client p99 < ${p99Ms} ms with the WebSocket limit reached`, good2.failed === 0 && good2.p99 < p99Ms,
    `p99 ${good2.p99.toFixed(2)} ms`);
  for (const c of flood) c.ws.terminate();

  if (ISSUE8) {
    // pipelined GET /health from a client that never reads (issue 8 #2)
    const rss0 = rssKb(srv.child.pid);
    const s = net.connect(srv.port, '127.0.0.1');
    s.pause();
    const chunk = 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2000);
    const end = Date.now() + 5000;
    let sent = 0;
    await new Promise((resolve) => s.on('connect', resolve));
    for (let i = 0; i < 2000 && Date.now() < end && sent < 50 * 1024 * 1024; i++) {
      if (!s.write(chunk)) await Promise.race([new Promise((res) => s.once('drain', res)), sleep(200)]);
      sent += chunk.length;
    }
    const rss1 = rssKb(srv.child.pid);
    const good3 = await pw.probe(1000);
    s.destroy();
    r.figures.pipelined_flood = `${(sent / 1048576).toFixed(0)} MiB sent, RSS ${rss0} → ${rss1} kB`;
    r.check('pipelined flood without reading: RSS bounded (< +64 MiB)', rss1 - rss0 < 65536, `${rss0} → ${rss1} kB`);
    r.check(`well-behaved client p99 < ${p99Ms} ms during the pipelined flood`, good3.p99 < p99Ms, `p99 ${good3.p99.toFixed(2)}`);
  }
  await pw.close();
  const alive = await timedFetch(srv, '/health');
  r.check('server alive after the floods', alive.status === 200);
  const { code } = await srv.stop();
  r.check('server exits 0, no sanitizer report', code === 0, `exit ${code}`);
  return r.done();
}

const SLOWLORIS_WORKER = `
const net = require('node:net');
const { parentPort, workerData: { port, n, ms } } = require('node:worker_threads');
const head = 'GET /health HTTP/1.1\\r\\nHost: x\\r\\nX-Slow: ' + 'a'.repeat(64);
const lor = [];
for (let i = 0; i < n; i++) {
  const s = net.connect(port, '127.0.0.1');
  const x = { s, data: '', closed: false, pos: 0 };
  s.on('data', (d) => { x.data += d; });
  s.on('close', () => { x.closed = true; });
  s.on('error', () => {});
  lor.push(x);
}
const t = setInterval(() => { for (const x of lor) if (!x.closed && x.pos < head.length) x.s.write(head[x.pos++]); }, 300);
const end = Date.now() + ms;
const poll = setInterval(() => {
  if (lor.every((x) => x.closed) || Date.now() > end) {
    clearInterval(t); clearInterval(poll);
    const got408 = lor.filter((x) => /^HTTP\\/1\\.1 408 /.test(x.data)).length;
    const closed = lor.filter((x) => x.closed).length;
    for (const x of lor) x.s.destroy();
    parentPort.postMessage({ got408, closed });
  }
}, 50);
`;

function rawRequest(port, req, ms = 3000) {
  return new Promise((resolve) => {
    let data = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(req));
    s.on('data', (d) => { data += d; if (data.includes('\r\n\r\n')) { s.destroy(); resolve(data); } });
    s.on('error', () => resolve(data));
    s.on('close', () => resolve(data));
    setTimeout(() => { s.destroy(); resolve(data); }, ms);
  });
}

export function printReport(res) {
  const lines = [`${res.ok ? 'PASS' : 'FAIL'} ${res.name}`];
  for (const c of res.checks) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.what}${c.detail ? ` (${c.detail})` : ''}`);
  const f = Object.entries(res.figures).map(([k, v]) => `${k}=${v}`).join(' ');
  if (f) lines.push(`  figures: ${f}`);
  return lines.join('\n');
}
