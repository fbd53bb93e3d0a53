// `osbackend top` under a pseudo-terminal (tmux, 80×24): it draws the
// dashboard:metrics figures, updates them (5 more WebSockets show), shows the
// disconnected state across a server restart and goes live again by itself,
// and quits on `q` with status 0 (no leak under ASan) and the terminal back
// in canonical mode with echo.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import WebSocket from 'ws';
import { startServer, randomKey, BIN, runBinary } from './lib/server.mjs';
import { createUser, login } from './lib/admin.mjs';

let haveTmux = true;
try { execFileSync('tmux', ['-V'], { stdio: 'ignore' }); } catch { haveTmux = false; }
if (!haveTmux) console.error(`\n${'!'.repeat(78)}\n!!! TOP TESTS SKIPPED: no tmux (apt-get install -y tmux)\n${'!'.repeat(78)}\n`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

describe('osbackend top', { skip: !haveTmux }, () => {
  const sock = `osb-top-${randomKey(4)}`;
  const tmux = (...args) => execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
  let srv, dir, env, token;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'osb-top-'));
    env = { PORT: String(await freePort()), SQLITE_PATH: join(dir, 'osb.db'), JWT_SECRET: randomKey(32) };
    srv = await startServer({ env, keepDir: true });
    const admin = await createUser(srv.env, 'admin');
    token = (await login(srv, admin.email, admin.password)).access_token;
  });
  after(async () => {
    try { execFileSync('tmux', ['-L', sock, 'kill-server'], { stdio: 'ignore' }); } catch { /* already gone */ }
    // kill-server leaves the socket file behind.
    rmSync(join(process.env.TMUX_TMPDIR || '/tmp', `tmux-${process.getuid()}`, sock), { force: true });
    await srv?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const screen = () => { try { return tmux('capture-pane', '-p', '-t', 'top'); } catch { return ''; } };
  async function waitScreen(pred, ms, what) {
    const end = Date.now() + ms;
    let s = '';
    while (Date.now() < end) { s = screen(); if (pred(s)) return s; await sleep(250); }
    assert.fail(`${what}; the screen:\n${s}`);
  }
  const clients = (s) => Number((/websocket\s+(\d+) clients/.exec(s) || [])[1] ?? NaN);

  test('draws, updates, survives a restart, quits on q restoring the terminal', async () => {
    const exitFile = join(dir, 'exit'), sttyFile = join(dir, 'stty');
    const cmd = `'${BIN}' top --url ws://127.0.0.1:${env.PORT}/ws; echo "EXIT=$?" > '${exitFile}'; stty -a > '${sttyFile}'`;
    tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24',
      '-e', `OSB_TOKEN=${token}`, '-e', `ASAN_OPTIONS=${process.env.ASAN_OPTIONS || 'detect_leaks=1'}`, 'sh', '-c', cmd);

    let s = await waitScreen((x) => /\blive\b/.test(x) && clients(x) >= 1, 20000, 'live figures');
    assert.match(s, /osbackend top/);
    assert.match(s, /HTTP\s+[\d.]+ req\/s\s+p50/);
    assert.match(s, /database\s+\[[#.]{40}\]/, 'a bar for the pool');
    assert.match(s, /breakers\s+llm \S+\s+tts \S+/);
    assert.match(s, /components .*database pass/);
    const lines = s.replace(/\n$/, '').split('\n');
    assert.ok(lines.length <= 24, `fits 24 rows (${lines.length})`);
    for (const l of lines) assert.ok([...l].length <= 80, `fits 80 columns: ${l}`);
    const base = clients(s);

    const socks = await Promise.all(Array.from({ length: 5 }, () => new Promise((res, rej) => {
      const ws = new WebSocket(srv.wsUrl('/ws'));
      ws.on('open', () => res(ws)); ws.on('error', rej);
    })));
    await waitScreen((x) => clients(x) >= base + 5, 15000, 'the count rises with 5 more WebSockets');
    for (const ws of socks) ws.close();

    await srv.stop();
    await waitScreen((x) => /disconnected - reconnecting/.test(x), 15000, 'the disconnected state');
    srv = await startServer({ env, keepDir: true });
    await waitScreen((x) => /\blive\b/.test(x) && !/disconnected/.test(x), 30000, 'live again after the restart');
    await waitScreen((x) => /last sample [01]\.\d s ago/.test(x) && clients(x) >= 1, 10000, 'fresh samples from the new process');

    tmux('send-keys', '-t', 'top', 'q');
    const end = Date.now() + 15000;
    while (!existsSync(sttyFile) && Date.now() < end) await sleep(200);
    assert.ok(existsSync(exitFile), 'top exited on q');
    assert.equal(readFileSync(exitFile, 'utf8').trim(), 'EXIT=0', 'status 0 (and no sanitizer report)');
    const stty = readFileSync(sttyFile, 'utf8');
    assert.match(stty, /(^|\s)icanon(\s|$)/, 'canonical mode restored');
    assert.match(stty, /(^|\s)echo(\s|$)/, 'echo restored');
  });
});

test('osbackend top refuses what it cannot do with status 2 and says why', async () => {
  const tls = await runBinary(['top', '--url', 'wss://example.test/ws']);
  assert.equal(tls.code, 2);
  assert.match(tls.stderr, /TLS .* not supported/);
  const bad = await runBinary(['top', '--frobnicate']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown argument '--frobnicate'/);
  const help = await runBinary(['top', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /OSB_TOKEN/);
});
