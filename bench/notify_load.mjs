// bench/notify_load.mjs: POST /api/notifications → delivery latency on
// notify:<user>, for N users each subscribed to their own channel.
//
//   node bench/notify_load.mjs --port P --users FILE --rate R --duration S
//   (JWT_SECRET and SERVICE_API_KEY from the environment)
//
// FILE holds one user id per line (users the bench created directly in the
// database). Each user gets a token signed here with JWT_SECRET (the
// server's own claim set), one WebSocket and a subscription to
// notify:<id>. The publisher sends R notifications per second round-robin
// over the users with data {t} (a monotonic send time in ms); the receiver
// takes arrival − t. Prints one line `NOTIFY {json}` with sends, deliveries,
// lost, p50/p99 and errors. Exit 0 when every 201 was delivered exactly once.
import { readFileSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import WebSocket from 'ws';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const port = Number(args.port);
const rate = Number(args.rate || 200);
const duration = Number(args.duration || 10);
const ids = readFileSync(args.users, 'utf8').split('\n').map((s) => s.trim()).filter(Boolean);
const secret = process.env.JWT_SECRET;
const key = process.env.SERVICE_API_KEY;
if (!port || !ids.length || !secret || !key) {
  console.error('usage: JWT_SECRET=… SERVICE_API_KEY=… node bench/notify_load.mjs --port P --users FILE [--rate R] [--duration S]');
  process.exit(2);
}

const b64u = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');
function token(sub) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64u({ alg: 'HS256', typ: 'JWT' });
  const p = b64u({ sub, email: `${sub}@bench.invalid`, role: 'user', iat: now, exp: now + 3600, iss: 'osbackend', jti: randomBytes(8).toString('hex') });
  const s = createHmac('sha256', Buffer.from(secret, 'utf8')).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}

const mono = () => Number(process.hrtime.bigint() / 1000n) / 1000;   // ms
const lat = [];
const seen = new Map();   // notification id → deliveries
let wsErrors = 0;

async function openAll() {
  let i = 0;
  const socks = [];
  async function one(id) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token(id)}`);
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    await new Promise((res, rej) => {
      ws.on('message', (d) => {
        const m = JSON.parse(d);
        if (m.type === 'subscribed') res();
        else if (m.type === 'error') rej(new Error(JSON.stringify(m)));
        else if (m.type === 'message' && m.data && m.data.type === 'notification') {
          const n = m.data.notification;
          lat.push(mono() - n.data.t);
          seen.set(n.id, (seen.get(n.id) || 0) + 1);
        }
      });
      ws.send(JSON.stringify({ type: 'subscribe', channel: `notify:${id}`, id: 1 }));
    });
    ws.on('error', () => { wsErrors++; });
    socks.push(ws);
  }
  const workers = Array.from({ length: 32 }, async () => { while (i < ids.length) await one(ids[i++]); });
  await Promise.all(workers);
  return socks;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
let sent = 0, created = 0, failed = 0;
const createdIds = new Set();
function post(uid) {
  const body = JSON.stringify({ user_id: uid, kind: 'bench', title: 'bench', data: { t: mono() } });
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/api/notifications', method: 'POST', agent,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let t = '';
      res.on('data', (d) => (t += d));
      res.on('end', () => {
        if (res.statusCode === 201) { created++; createdIds.add(JSON.parse(t).id); } else failed++;
        resolve();
      });
    });
    req.on('error', () => { failed++; resolve(); });
    req.end(body);
  });
}

const socks = await openAll();
const t0 = Date.now();
const pending = [];
await new Promise((resolve) => {
  const tick = setInterval(() => {
    const due = Math.min(rate * duration, Math.floor(((Date.now() - t0) / 1000) * rate));
    while (sent < due) pending.push(post(ids[sent++ % ids.length]));
    if (sent >= rate * duration) { clearInterval(tick); resolve(); }
  }, 2);
});
await Promise.all(pending);
const deadline = Date.now() + 5000;
while (Date.now() < deadline && [...createdIds].some((id) => !seen.has(id))) await new Promise((r) => setTimeout(r, 20));
for (const s of socks) s.terminate();
agent.destroy();

lat.sort((a, b) => a - b);
const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null);
const lost = [...createdIds].filter((id) => !seen.has(id)).length;
const dups = [...seen.values()].filter((v) => v > 1).length;
const out = { users: ids.length, rate, duration_s: duration, sent, created, failed, delivered: lat.length, lost, duplicates: dups,
  p50_ms: q(0.5), p99_ms: q(0.99), max_ms: lat.length ? lat[lat.length - 1] : null, ws_errors: wsErrors };
console.log('NOTIFY ' + JSON.stringify(out));
process.exit(lost === 0 && dups === 0 && failed === 0 ? 0 : 1);
