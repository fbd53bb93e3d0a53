// Start the real osbackend binary on an ephemeral port and talk to it.
//
//   const srv = await startServer({ env: { LOG_LEVEL: 'debug' } });
//   const r = await srv.fetch('/health');      // global fetch against the server
//   srv.logs()                                 // everything it wrote to stderr so far
//   await srv.waitForLog(/listening/)          // wait for a log line (regex or string)
//   await srv.stop()                           // SIGTERM, resolves {code, signal}
//
// The binary is OSB_BIN (set by scripts/test.sh) or build/asan/osbackend.
// Each server gets a fresh temp directory for SQLite unless env says otherwise.
// With PostgreSQL: pass { pg: true } to use OSB_TEST_PG_URL (a fresh database
// is created per server when pgFresh is true).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { checkResponse } from './contract.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.OSB_BIN || join(root, 'build', 'asan', 'osbackend');

export function randomKey(n = 24) {
  return randomBytes(n).toString('hex');
}

export async function startServer(opts = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'osb-test-'));
  const env = {
    PATH: process.env.PATH,
    PORT: '0',
    HOST: '127.0.0.1',
    SQLITE_PATH: join(dir, 'osb.db'),
    LOG_LEVEL: 'info',
    LOG_FORMAT: 'json',
    OSB_ENV_FILE: join(dir, 'none.env'),
    ASAN_OPTIONS: process.env.ASAN_OPTIONS || 'detect_leaks=1:abort_on_error=0',
    UBSAN_OPTIONS: process.env.UBSAN_OPTIONS || 'print_stacktrace=1:halt_on_error=1',
    LSAN_OPTIONS: process.env.LSAN_OPTIONS || '',
    ...(opts.pg ? { DATABASE_URL: process.env.OSB_TEST_PG_URL } : {}),
    ...opts.env,
  };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  const child = spawn(opts.bin || BIN, opts.args || [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i];
      const hit = typeof w.re === 'string' ? err.includes(w.re) || out.includes(w.re) : w.re.test(err) || w.re.test(out);
      if (hit) { waiters.splice(i, 1); clearTimeout(w.t); w.resolve(); }
    }
  };
  child.stdout.on('data', (d) => { out += d; check(); });
  child.stderr.on('data', (d) => { err += d; check(); });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let done = null;
  exited.then((r) => { done = r; for (const w of waiters.splice(0)) { clearTimeout(w.t); w.reject(new Error(`server exited (${r.code ?? r.signal}) before log ${w.re}\n${err}`)); } });

  const srv = {
    child, dir, env,
    port: 0,
    logs: () => err,
    stdout: () => out,
    exited,
    waitForLog(re, ms = 10000) {
      return new Promise((resolve, reject) => {
        if (done) return reject(new Error(`server already exited (${done.code ?? done.signal})\n${err}`));
        const w = { re, resolve, reject, t: setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error(`timeout waiting for log ${re}\n${err}`)); }, ms) };
        waiters.push(w);
        check();
      });
    },
    url(path = '/') { return `http://127.0.0.1:${srv.port}${path}`; },
    wsUrl(path = '/ws') { return `ws://127.0.0.1:${srv.port}${path}`; },
    // Every answer whose path the OpenAPI document knows is checked against it
    // (lib/contract.mjs); a mismatch rejects. rawFetch skips the check.
    async fetch(path, init = {}) {
      const r = await fetch(srv.url(path), init);
      const ct = r.headers.get('content-type') || '';
      if (!/event-stream/.test(ct)) checkResponse(init.method || 'GET', path, r.status, ct, await r.clone().text());
      return r;
    },
    rawFetch(path, init) { return fetch(srv.url(path), init); },
    // Stops the server and requires a clean exit: status 0 and no sanitizer
    // report (LeakSanitizer turns a leak into a non-zero status), so every
    // test that starts a server also checks it for leaks. A test that expects
    // another ending passes { expectExit: false }.
    async stop(signal = 'SIGTERM', { expectExit = true } = {}) {
      if (!done) child.kill(signal);
      const r = await exited;
      if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
      if (expectExit && (r.code !== 0 || /AddressSanitizer|LeakSanitizer|runtime error:/.test(err))) {
        throw new Error(`server did not exit cleanly (${r.code ?? r.signal})\n${err.slice(-3000)}`);
      }
      return r;
    },
  };
  if (opts.noWait) return srv;
  await srv.waitForLog(/"msg":"listening"|listening on/, opts.startTimeout || 30000);
  const m = err.match(/"port":(\d+)/) || err.match(/listening on [^ ]*:(\d+)/);
  if (!m) throw new Error('could not find the port in the log:\n' + err);
  srv.port = Number(m[1]);
  return srv;
}

// Run the binary to completion (sub-commands, bad configuration).
export function runBinary(args, { env = {}, input = '' } = {}) {
  return new Promise((resolve) => {
    const child = spawn(BIN, args, {
      env: { PATH: process.env.PATH, OSB_ENV_FILE: '/nonexistent/.env', ASAN_OPTIONS: 'detect_leaks=1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
    child.stdin.end(input);
  });
}

// Raw TCP: send bytes, collect the reply until the socket closes or `until` matches.
import net from 'node:net';
export function rawRequest(port, data, { until, timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => { sock.destroy(); resolve({ data: buf.toString('latin1'), closed: false, timedOut: true }); }, timeout);
    sock.on('connect', () => { if (data) sock.write(data); });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (until && until(buf.toString('latin1'))) { clearTimeout(t); sock.destroy(); resolve({ data: buf.toString('latin1'), closed: false }); }
    });
    sock.on('close', () => { clearTimeout(t); resolve({ data: buf.toString('latin1'), closed: true }); });
    sock.on('error', (e) => { clearTimeout(t); if (buf.length) resolve({ data: buf.toString('latin1'), closed: true }); else reject(e); });
  });
}
