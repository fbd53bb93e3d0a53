#!/usr/bin/env node
// bench/chat_load.mjs: the `chat` section's load (bench/run.sh, issue 12 item 8).
//
// --mode fake: an OpenAI-compatible /v1/chat/completions that streams --tokens
//   tokens at --rate tokens/s per reply (SSE, usage chunk, [DONE]), and records
//   when it wrote each reply's first token (performance.timeOrigin + now, a
//   clock shared with the other processes on this machine), keyed by the
//   "bench#<conv>#<round>" tag in the user message. On SIGTERM it writes
//   {calls, max_in_flight, first: {tag: ms}} to --stats.
// --mode health: GET /health back to back (5 ms apart) for --duration s;
//   prints HEALTH {"n","p50_ms","p99_ms"}.
// load (default): --conc conversations of one user (--token), each with its own
//   WebSocket subscribed to chat:<id>; each posts a message, waits for its
//   agent.done, posts the next, for --duration s. Samples the server's RSS
//   (--pid) meanwhile. Prints
//   CHATLOAD {"replies","deltas","frames_per_s","first_delta":{tag: ms},"rss_idle_kb","rss_peak_kb","errors","duration_s"}
//   run.sh joins first_delta with the fake's first-token times.
//
//   node bench/chat_load.mjs --mode fake --fake-port F --tokens 50 --rate 50 --stats FILE
//   node bench/chat_load.mjs --port P --token T --pid PID [--conc 200] [--duration 10]
//   node bench/chat_load.mjs --mode join --stats FILE --load FILE     (prints the joined figures)
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';
import WebSocket from 'ws';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => {
  if (v.startsWith('--')) a.push([v.slice(2), all[i + 1]]);
  return a;
}, []));
const MODE = args.mode || 'load';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (a, p) => {
  if (!a.length) return NaN;
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

if (MODE === 'fake') await fake();
else if (MODE === 'health') await health();
else if (MODE === 'join') join();
else await load();

async function fake() {
  const TOKENS = Number(args.tokens || 50), RATE = Number(args.rate || 50);
  const gap = 1000 / RATE;
  const first = {};
  let calls = 0, inFlight = 0, maxInFlight = 0;
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    let body = {};
    try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {}
    calls++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => { inFlight--; });
    const last = (body.messages || []).filter((m) => m.role === 'user').at(-1);
    const tag = ((last && last.content) || '').match(/bench#\d+#\d+/)?.[0];
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (delta, finish = null) =>
      `data: ${JSON.stringify({ id: 'b', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    for (let i = 0; i < TOKENS; i++) {
      if (res.destroyed) return;
      res.write(chunk({ content: `tok${i} ` }));
      if (i === 0 && tag) first[tag] = now();
      await sleep(gap);
    }
    res.write(chunk({}, 'stop'));
    res.write(`data: ${JSON.stringify({ id: 'b', choices: [], usage: { prompt_tokens: 10, completion_tokens: TOKENS } })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  server.keepAliveTimeout = 60000;
  await new Promise((r) => server.listen(Number(args['fake-port']), '127.0.0.1', r));
  console.log(`FAKE listening on ${args['fake-port']}`);
  process.on('SIGTERM', () => {
    writeFileSync(args.stats, JSON.stringify({ calls, max_in_flight: maxInFlight, first }));
    process.exit(0);
  });
}

async function health() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const lat = [];
  const end = Date.now() + Number(args.duration || 10) * 1000;
  while (Date.now() < end) {
    const t0 = performance.now();
    await new Promise((resolve) => {
      const rq = http.get({ host: '127.0.0.1', port: Number(args.port), path: '/health', agent }, (r) => {
        r.resume();
        r.on('end', resolve);
      });
      rq.on('error', resolve);
    });
    lat.push(performance.now() - t0);
    await sleep(5);
  }
  console.log('HEALTH ' + JSON.stringify({ n: lat.length, p50_ms: +pct(lat, 0.5).toFixed(2), p99_ms: +pct(lat, 0.99).toFixed(2) }));
}

function rssKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
    return m ? Number(m[1]) : 0;
  } catch { return 0; }
}

async function api(method, path, body) {
  const r = await fetch(`http://127.0.0.1:${args.port}${path}`, {
    method,
    headers: { authorization: `Bearer ${args.token}`, 'content-type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function load() {
  const CONC = Number(args.conc || 200), DURATION = Number(args.duration || 10);
  const agents = await api('GET', '/api/agents?app=repconnect');
  const agentId = agents.body.items[0].id;
  const convs = [];
  for (let i = 0; i < CONC; i++) {
    const c = await api('POST', '/api/conversations', { agent_id: agentId, title: `bench ${i}` });
    if (c.status !== 201) throw new Error(`conversation: ${c.status} ${JSON.stringify(c.body)}`);
    convs.push(c.body.id);
  }
  // One WebSocket per conversation, subscribed before anything is posted.
  const sockets = await Promise.all(convs.map((id) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${args.port}/ws?token=${encodeURIComponent(args.token)}`);
    ws.once('error', reject);
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === 'subscribed') resolve(ws);
      else if (m.type === 'welcome') ws.send(JSON.stringify({ type: 'subscribe', channel: `chat:${id}`, id: 's' }));
      else if (m.type === 'error') reject(new Error(JSON.stringify(m)));
    });
  })));
  await sleep(500);
  const rssIdle = rssKb(args.pid);
  let rssPeak = rssIdle;
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, rssKb(args.pid)); }, 100);
  const firstDelta = {};
  let replies = 0, deltas = 0, errors = 0;
  const t0 = Date.now();
  const end = t0 + DURATION * 1000;
  await Promise.all(convs.map(async (id, i) => {
    const ws = sockets[i];
    let round = 0;
    let waiting = null, tag = null;
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      if (m.type !== 'message') return;
      if (m.data.type === 'agent.delta') {
        deltas++;
        if (tag && !(tag in firstDelta)) firstDelta[tag] = now();
      } else if (m.data.type === 'agent.done' && waiting) {
        const w = waiting;
        waiting = null;
        w();
      }
    });
    while (Date.now() < end) {
      tag = `bench#${i}#${round++}`;
      const done = new Promise((r) => { waiting = r; });
      const p = await api('POST', `/api/conversations/${id}/messages`, { text: `${tag} how do I answer a price objection?` });
      if (p.status !== 202) { errors++; waiting = null; await sleep(100); continue; }
      const timeout = sleep(30000).then(() => 'timeout');
      if ((await Promise.race([done, timeout])) === 'timeout') { errors++; continue; }
      replies++;
    }
  }));
  const elapsed = (Date.now() - t0) / 1000;
  clearInterval(sampler);
  for (const ws of sockets) ws.terminate();
  console.log('CHATLOAD ' + JSON.stringify({ replies, deltas, frames_per_s: +(deltas / elapsed).toFixed(1), errors,
    duration_s: +elapsed.toFixed(2), rss_idle_kb: rssIdle, rss_peak_kb: rssPeak, conc: CONC, first_delta: firstDelta }));
}

// Added first-delta latency: the client's first agent.delta of a reply minus
// the time the fake wrote that reply's first token.
function join() {
  const f = JSON.parse(readFileSync(args.stats, 'utf8'));
  const line = readFileSync(args.load, 'utf8').split('\n').find((l) => l.startsWith('CHATLOAD '));
  const l = JSON.parse(line.slice(9));
  const added = [], steady = [];
  for (const [tag, t] of Object.entries(l.first_delta)) {
    if (!f.first[tag]) continue;
    added.push(t - f.first[tag]);
    // round 0 starts every stream at once (connections to the fake, first
    // queries): the steady state is every later round
    if (Number(tag.split('#')[2]) > 0) steady.push(t - f.first[tag]);
  }
  const out = {
    replies: l.replies, errors: l.errors, deltas: l.deltas, frames_per_s: l.frames_per_s, fake_calls: f.calls,
    fake_max_in_flight: f.max_in_flight, matched: added.length,
    added_first_delta_p50_ms: +pct(added, 0.5).toFixed(2), added_first_delta_p99_ms: +pct(added, 0.99).toFixed(2),
    steady_first_delta_p50_ms: +pct(steady, 0.5).toFixed(2), steady_first_delta_p99_ms: +pct(steady, 0.99).toFixed(2),
    rss_per_stream_kb: +((l.rss_peak_kb - l.rss_idle_kb) / l.conc).toFixed(1), rss_idle_kb: l.rss_idle_kb,
    rss_peak_kb: l.rss_peak_kb, duration_s: l.duration_s,
  };
  console.log('CHATJOIN ' + JSON.stringify(out));
}
