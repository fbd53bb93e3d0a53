// Deployment artefacts (issue 16, docs/deploy.md): the release binary runs as
// an unprivileged user on a read-only root with only its data directory
// writable; the container image builds and becomes healthy where a container
// engine answers (a loud skip otherwise); the Dockerfile's runtime stage
// carries the libraries the binary needs; render.yaml and the systemd unit
// say what the docs say.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync, chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, BIN } from './lib/server.mjs';
import { api, register } from './lib/apps.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NOBODY = 65534;

// The release build when there is one (make build), else the test build.
const RELEASE = process.env.OSB_RELEASE_BIN || (existsSync(join(root, 'build/release/osbackend')) ? join(root, 'build/release/osbackend') : BIN);
const isRoot = process.getuid && process.getuid() === 0;
const hasUnshare = spawnSync('unshare', ['--mount', 'true']).status === 0;

function loud(msg) {
  const bar = '!'.repeat(78);
  process.stderr.write(`\n${bar}\n!! SKIPPED: ${msg}\n${bar}\n\n`);
}

// A private mount namespace: the data directory stays writable, every other
// mount (/, /tmp, /dev/shm, ...) becomes read-only; then drop to nobody.
const SANDBOX = `set -e
data="$1"; shift
mount --bind "$data" "$data"
for m in $(awk '{print $2}' /proc/self/mounts | sort -u); do
  case "$m" in "$data"|/proc|/proc/*|/sys|/sys/*) ;; *) mount -o remount,bind,ro "$m" 2>/dev/null || true ;; esac
done
exec setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --inh-caps=-all -- "$@"`;
const sandboxArgs = (data, ...cmd) => ['--mount', '--propagation', 'private', 'sh', '-c', SANDBOX, 'sandbox', data, ...cmd];

describe('unprivileged, read-only root', { skip: (!isRoot && 'needs root to build the sandbox') || (!hasUnshare && 'needs unshare --mount') }, () => {
  test('the sandbox really is read-only outside the data directory', () => {
    const data = mkdtempSync(join(tmpdir(), 'osb-ro-'));
    try {
      chownSync(data, NOBODY, NOBODY);
      const outside = join(tmpdir(), `osb-ro-probe-${process.pid}`);
      const w = spawnSync('unshare', sandboxArgs(data, 'sh', '-c', `touch "${outside}"; echo x > "${data}/ok"`), { encoding: 'utf8' });
      assert.equal(existsSync(outside), false, 'a write outside the data directory went through');
      assert.match(w.stderr, /Read-only file system/);
      assert.equal(readFileSync(join(data, 'ok'), 'utf8'), 'x\n');
      assert.equal(statSync(join(data, 'ok')).uid, NOBODY);
    } finally { rmSync(data, { recursive: true, force: true }); }
  });

  test(`the binary (${RELEASE === BIN ? 'test build: no build/release' : 'release build'}) serves as nobody and writes only its data directory`, async () => {
    const data = mkdtempSync(join(tmpdir(), 'osb-ro-'));
    const marker = join(tmpdir(), `osb-ro-marker-${process.pid}`);
    writeFileSync(marker, '');
    const past = new Date(Date.now() - 2000);
    utimesSync(marker, past, past);
    let srv;
    try {
      chownSync(data, NOBODY, NOBODY);
      chmodSync(data, 0o700);
      srv = await startServer({
        bin: 'unshare', args: sandboxArgs(data, RELEASE, 'serve'),
        env: {
          SQLITE_PATH: join(data, 'osbackend.db'), OSB_ENV_FILE: join(data, '.env'),
          // LeakSanitizer needs ptrace, which the sandboxed user has not; leaks are checked elsewhere.
          ASAN_OPTIONS: 'detect_leaks=0', RATE_LIMIT_RPS: '1000',
        },
      });
      assert.equal((await srv.fetch('/ready')).status, 200);
      const u = await register(srv, 'sandboxed');     // a write: users, sessions
      const me = await api(srv, 'GET', '/api/auth/me', { token: u.token });
      assert.equal(me.status, 200);
      const details = await (await srv.fetch('/health/details')).json();
      assert.equal(details.checks.database[0].status, 'pass');
      assert.doesNotMatch(srv.logs(), /"level":"error"|Read-only file system|Permission denied/);
      await srv.stop();
      srv = null;
      const files = readdirSync(data);
      assert.ok(files.includes('osbackend.db'), files.join(' '));
      for (const f of files) assert.equal(statSync(join(data, f)).uid, NOBODY, `${f} owned by nobody`);
      // Nothing owned by nobody appeared in the usual writable places.
      const stray = spawnSync('find', ['/tmp', '/var/tmp', '/dev/shm', '-xdev', '-user', 'nobody', '-newer', marker, '-not', '-path', `${data}*`], { encoding: 'utf8' });
      assert.equal(stray.stdout.trim(), '', `files written outside the data directory:\n${stray.stdout}`);
    } finally {
      if (srv) await srv.stop('SIGKILL', { expectExit: false });
      rmSync(data, { recursive: true, force: true });
      rmSync(marker, { force: true });
    }
  });
});

describe('container image', () => {
  const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
  const stages = dockerfile.split(/^FROM /m).slice(1);

  test('multi-stage on debian:12-slim; the runtime stage is non-root, has a HEALTHCHECK on /ready and a data volume', () => {
    assert.equal(stages.length, 2);
    for (const s of stages) assert.match(s, /^debian:12-slim\b/);
    const run = stages[1];
    assert.match(run, /^USER (?!root|0\b)\S+/m);
    assert.match(run, /^HEALTHCHECK .*\/ready/ms);
    assert.match(run, /^VOLUME \["\/data"\]/m);
    assert.match(run, /SQLITE_PATH=\/data\//);
    assert.match(run, /COPY --from=build /);
    const code = run.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
    assert.doesNotMatch(code, /-dev\b|build-essential|cmake/, 'the runtime stage carries build tools');
  });

  test('the runtime stage installs the package of every library the binary links', () => {
    const needed = execFileSync('readelf', ['-d', RELEASE], { encoding: 'utf8' }).match(/\[lib[^\]]+\]/g).map((s) => s.slice(1, -1));
    const ldcache = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
    const run = stages[1];
    const missing = [];
    for (const so of needed) {
      if (/^lib(c|m|asan|ubsan|gcc_s|pthread|dl|rt)\.so/.test(so)) continue;   // libc6 / the sanitizers of the test build
      const m = ldcache.match(new RegExp(`^\\s+${so.replace(/[.+]/g, '\\$&')} \\(.*x86-64.*\\) => (\\S+)`, 'm')) || ldcache.match(new RegExp(`^\\s+${so.replace(/[.+]/g, '\\$&')} .*=> (\\S+)`, 'm'));
      assert.ok(m, `cannot find ${so}`);
      const pkg = execFileSync('dpkg', ['-S', m[1].replace(/^\/usr\/lib/, '/lib').replace(/^\/lib/, '*lib')], { encoding: 'utf8' }).split(':')[0];
      if (!new RegExp(`\\b${pkg.replace(/[.+]/g, '\\$&')}\\b`).test(run)) missing.push(`${so} (${pkg})`);
    }
    assert.deepEqual(missing, []);
  });

  const docker = spawnSync('docker', ['info'], { encoding: 'utf8', timeout: 20000 });
  const noEngine = docker.status !== 0 ? 'no container engine answers (docker info failed): the image build was NOT tested on this machine' : false;
  if (noEngine) loud(noEngine);
  test('the image builds, runs as non-root and becomes healthy', { skip: noEngine, timeout: 1800000 }, () => {
    const tag = `osbackend-test:${process.pid}`;
    const name = `osbackend-test-${process.pid}`;
    try {
      execFileSync('docker', ['build', '-q', '-t', tag, root], { stdio: ['ignore', 'pipe', 'inherit'], timeout: 1500000 });
      execFileSync('docker', ['run', '-d', '--name', name, tag]);
      let health = '';
      for (let i = 0; i < 60 && health !== 'healthy'; i++) {
        health = execFileSync('docker', ['inspect', '-f', '{{.State.Health.Status}}', name], { encoding: 'utf8' }).trim();
        if (health !== 'healthy') execFileSync('sleep', ['1']);
      }
      assert.equal(health, 'healthy', execFileSync('docker', ['logs', name], { encoding: 'utf8' }));
      assert.notEqual(execFileSync('docker', ['exec', name, 'id', '-u'], { encoding: 'utf8' }).trim(), '0');
      execFileSync('docker', ['stop', '-t', '15', name]);
      assert.equal(execFileSync('docker', ['inspect', '-f', '{{.State.ExitCode}}', name], { encoding: 'utf8' }).trim(), '0');
    } finally {
      spawnSync('docker', ['rm', '-f', name]);
      spawnSync('docker', ['rmi', '-f', tag]);
    }
  });
});

describe('render.yaml and the systemd unit', () => {
  const hasYaml = spawnSync('python3', ['-c', 'import yaml']).status === 0;
  test('render.yaml: a web service from the Dockerfile, two instances, /ready, TRUST_PROXY=1, PostgreSQL, secrets not in the file', { skip: !hasYaml && 'needs python3-yaml (scripts/deps.sh test)' }, () => {
    const doc = JSON.parse(execFileSync('python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', join(root, 'render.yaml')], { encoding: 'utf8' }));
    assert.equal(doc.services.length, 1);
    const s = doc.services[0];
    assert.equal(s.type, 'web');
    assert.equal(s.runtime, 'docker');
    assert.ok(existsSync(join(root, s.dockerfilePath)));
    assert.equal(s.numInstances, 2);
    assert.equal(s.healthCheckPath, '/ready');
    const env = Object.fromEntries(s.envVars.map((v) => [v.key, v]));
    assert.equal(env.PORT.value, '10000');
    assert.equal(env.TRUST_PROXY.value, '1');
    assert.equal(env.CLUSTER_BUS.value, 'postgres');
    assert.equal(env.DATABASE_URL.fromDatabase.property, 'connectionString');
    assert.ok(doc.databases.some((d) => d.name === env.DATABASE_URL.fromDatabase.name));
    for (const [k, v] of Object.entries(env)) {
      if (/(_KEY|_SECRET|TOKEN)$/.test(k)) {
        assert.ok(v.sync === false || v.generateValue === true, `${k} must be sync: false or generated`);
        assert.equal(v.value, undefined, `${k} has a value in the file`);
      }
    }
    // Every variable it sets is one the binary knows (or CLUSTER_BUS, SPEC §2, which the binary may not read yet).
    const known = execFileSync(BIN, ['check-config'], { encoding: 'utf8', env: { PATH: process.env.PATH, OSB_ENV_FILE: '/nonexistent' } });
    for (const k of Object.keys(env)) if (k !== 'CLUSTER_BUS') assert.match(known, new RegExp(`^${k}=`, 'm'), `${k} is not a configuration variable`);
    assert.ok(Number(env.SHUTDOWN_TIMEOUT_MS.value) < s.maxShutdownDelaySeconds * 1000, 'drain must end before Render kills');
    // The readiness window comes first and is part of the deadline (the binary refuses it otherwise).
    const delay = Number(env.SHUTDOWN_DRAIN_DELAY_MS.value);
    assert.ok(delay > 0 && delay < Number(env.SHUTDOWN_TIMEOUT_MS.value), 'SHUTDOWN_DRAIN_DELAY_MS must be below SHUTDOWN_TIMEOUT_MS');
  });

  test('deploy/osbackend.service: unprivileged, read-only system, state directory, graceful stop; systemd-analyze accepts it', () => {
    const unit = readFileSync(join(root, 'deploy/osbackend.service'), 'utf8');
    for (const re of [/^DynamicUser=yes$/m, /^ProtectSystem=strict$/m, /^StateDirectory=osbackend$/m, /^NoNewPrivileges=yes$/m,
      /^KillSignal=SIGTERM$/m, /^ExecStart=\/usr\/local\/bin\/osbackend serve$/m, /^Environment=SQLITE_PATH=\/var\/lib\/osbackend\//m]) assert.match(unit, re);
    const stop = Number(unit.match(/^TimeoutStopSec=(\d+)/m)[1]);
    assert.ok(stop * 1000 > 10000, 'TimeoutStopSec must exceed the default SHUTDOWN_TIMEOUT_MS');
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) return;
    const dir = mkdtempSync(join(tmpdir(), 'osb-unit-'));
    try {
      const p = join(dir, 'osbackend.service');
      writeFileSync(p, unit.replaceAll('/usr/local/bin/osbackend', BIN));
      const v = spawnSync('systemd-analyze', ['verify', p], { encoding: 'utf8' });
      assert.equal(v.status, 0, v.stderr);
      assert.equal(v.stderr.split('\n').filter((l) => l.includes('osbackend.service')).join('\n'), '');
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
