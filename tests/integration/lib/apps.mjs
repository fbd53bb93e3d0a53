// Helpers for the app black-box tests: accounts (users and admins made
// through the real API and the real create-user sub-command), a JSON API
// caller, and a WebSocket client that keeps every frame.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { randomKey, runBinary } from './server.mjs';
import { checkWsFrame } from './contract.mjs';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const PASSWORD = 'correct horse battery staple 42';

// Backends to run an app suite on: SQLite always, PostgreSQL when the test
// script started one.
export const BACKENDS = ['sqlite', ...(process.env.OSB_TEST_PG_URL ? ['postgresql'] : [])];

export function backendEnv(backend, extra = {}) {
  // Suites sign up many users from 127.0.0.1: lift the registration throttle.
  const env = { RATE_LIMIT_RPS: '100000', RATE_LIMIT_BURST: '100000', REGISTER_IP_BURST: '1000',
    REGISTER_IP_PER_HOUR: '100000', REGISTER_GLOBAL_PER_MIN: '100000', ...extra };
  if (backend === 'postgresql') {
    env.DATABASE_URL = process.env.OSB_TEST_PG_URL;
    env.JWT_SECRET = randomKey(32);
  }
  return env;
}

// A JSON call: {status, body, headers}.
export async function api(srv, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const r = await srv.fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
  return { status: r.status, body: parsed, headers: r.headers };
}

export async function register(srv, tag = 'user') {
  const email = `${tag}-${randomKey(4)}@example.test`;
  const r = await api(srv, 'POST', '/api/auth/register', { body: { email, password: PASSWORD, display_name: tag } });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return { id: r.body.user.id, email, token: r.body.access_token };
}

// An admin made with `osbackend create-user` against the server's database,
// then signed in through the API.
export async function makeAdmin(srv) {
  const email = `admin-${randomKey(4)}@example.test`;
  const env = {};
  for (const k of ['SQLITE_PATH', 'DATABASE_URL', 'JWT_SECRET']) if (srv.env[k]) env[k] = srv.env[k];
  const r = await runBinary(['create-user', '--email', email, '--role', 'admin'], { env, input: `${PASSWORD}\n` });
  assert.equal(r.code, 0, r.stderr);
  const l = await api(srv, 'POST', '/api/auth/login', { body: { email, password: PASSWORD } });
  assert.equal(l.status, 200, JSON.stringify(l.body));
  return { id: l.body.user.id, email, token: l.body.access_token };
}

// A client that keeps every frame; next(pred) consumes frames in order.
export class WsClient {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.msgs = [];
    this.pos = 0;
    this.waiters = new Set();
    this.ws.on('message', (d) => {
      const m = JSON.parse(d.toString());
      // Every frame must match openapi/ws-protocol.schema.json; the first
      // mismatch fails the next wait.
      try { checkWsFrame(m); } catch (e) { this.contractError ??= e; }
      this.msgs.push(m);
      for (const w of this.waiters) w();
    });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
    this.nextId = 1;
  }
  static async open(srv, token) {
    const c = new WsClient(srv.wsUrl('/ws' + (token ? `?token=${encodeURIComponent(token)}` : '')));
    await c.opened;
    c.welcome = await c.next((m) => m.type === 'welcome');
    return c;
  }
  send(o) { this.ws.send(JSON.stringify(o)); }
  next(pred = () => true, ms = 10000) {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.contractError) {
          this.waiters.delete(check);
          clearTimeout(t);
          reject(this.contractError);
          return true;
        }
        for (let i = this.pos; i < this.msgs.length; i++) {
          if (pred(this.msgs[i])) {
            this.pos = i + 1;
            this.waiters.delete(check);
            clearTimeout(t);
            resolve(this.msgs[i]);
            return true;
          }
        }
        return false;
      };
      const t = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`timeout; frames: ${JSON.stringify(this.msgs.slice(this.pos)).slice(0, 1500)}`));
      }, ms);
      if (!check()) this.waiters.add(check);
    });
  }
  async request(o, ms) {
    const id = o.id ?? `r${this.nextId++}`;
    this.send({ ...o, id });
    return this.next((m) => m.id === id, ms);
  }
  async subscribe(channel, extra = {}) {
    const s = await this.request({ type: 'subscribe', channel, ...extra });
    assert.equal(s.type, 'subscribed', JSON.stringify(s));
    return s;
  }
  // Every channel message received so far on `channel` (not consuming).
  on(channel) { return this.msgs.filter((m) => m.type === 'message' && m.channel === channel); }
  close() { this.ws.terminate(); }
}

// Wait until fn() is truthy (polling), or fail after ms.
export async function until(fn, ms = 5000, what = 'condition') {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
