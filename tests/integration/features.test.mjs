// Feature switches and proxy awareness (issue 16, docs/deploy.md):
// DISABLE=crm,market_writes answers 503 feature_disabled on those routes only,
// shows each as warn "disabled by DISABLE" in /health/details, and the rest
// keeps working; X-Forwarded-For with TRUST_PROXY=0 warns once, names
// TRUST_PROXY and shows as warn; check-config says the same on Render.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, runBinary } from './lib/server.mjs';
import { api, register, makeAdmin, backendEnv } from './lib/apps.mjs';

const checks = async (srv) => (await (await srv.fetch('/health/details')).json()).checks;

describe('DISABLE=crm,market_writes', () => {
  let srv, user, admin;
  before(async () => {
    srv = await startServer({ env: backendEnv('sqlite', { DISABLE: 'crm, market_writes' }) });
    user = await register(srv, 'feat');
    admin = await makeAdmin(srv);
  });
  after(async () => { await srv.stop(); });

  test('the switched-off routes answer 503 feature_disabled, naming the feature', async () => {
    for (const [m, p, b] of [['GET', '/api/crm/contacts'], ['POST', '/api/crm/contacts', { name: 'A' }], ['GET', '/api/crm/contacts/x'],
      ['PATCH', '/api/crm/contacts/x', { name: 'B' }], ['DELETE', '/api/crm/contacts/x'], ['POST', '/api/crm/contacts/x/assign', { user_id: 'u' }]]) {
      const r = await api(srv, m, p, { token: user.token, body: b });
      assert.equal(r.status, 503, `${m} ${p}`);
      assert.equal(r.body.error.code, 'feature_disabled');
      assert.match(r.body.error.message, /crm is switched off by DISABLE/);
    }
    const put = await api(srv, 'PUT', '/api/market/procedures/1', { token: admin.token, body: { growth_pct: 1 } });
    assert.equal(put.status, 503);
    assert.equal(put.body.error.code, 'feature_disabled');
    assert.match(put.body.error.message, /market_writes/);
    const bulk = await api(srv, 'POST', '/api/market/procedures/bulk', { token: admin.token, body: { procedures: [] } });
    assert.equal(bulk.status, 503);
  });

  test('everything else keeps working: market reads, auth, notifications, readiness', async () => {
    assert.equal((await api(srv, 'GET', '/api/market/procedures/1')).status, 200);
    assert.equal((await api(srv, 'GET', '/api/market/categories')).status, 200);
    assert.equal((await api(srv, 'GET', '/api/auth/me', { token: user.token })).status, 200);
    const n = await api(srv, 'POST', '/api/notifications', { token: admin.token, body: { user_id: user.id, kind: 'k', title: 't' } });
    assert.equal(n.status, 201, JSON.stringify(n.body));
    assert.equal((await api(srv, 'GET', '/api/notifications', { token: user.token })).body.items.length, 1);
    assert.equal((await srv.fetch('/ready')).status, 200);
  });

  test('/health/details shows each disabled feature as warn "disabled by DISABLE"', async () => {
    const c = await checks(srv);
    for (const f of ['crm', 'market_writes']) {
      assert.equal(c[f][0].status, 'warn', f);
      assert.equal(c[f][0].output, 'disabled by DISABLE');
    }
    for (const f of ['agents', 'voice', 'dashboard']) assert.equal(c[f], undefined, f);
  });

  test('an unknown feature name is a configuration error naming DISABLE', async () => {
    const r = await runBinary(['check-config'], { env: { DISABLE: 'crm,teleport' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^config: DISABLE must be a comma list of agents, voice, crm, market_writes, dashboard/m);
  });
});

describe('proxy awareness', () => {
  test('TRUST_PROXY=0 and X-Forwarded-For: one warning naming TRUST_PROXY, and warn in /health/details', async () => {
    const srv = await startServer();
    try {
      assert.equal((await checks(srv)).proxy, undefined);
      for (let i = 0; i < 3; i++) {
        const r = await srv.fetch('/health', { headers: { 'x-forwarded-for': `203.0.113.${i + 1}` } });
        assert.equal(r.status, 200);
      }
      await srv.waitForLog(/TRUST_PROXY/);
      const lines = srv.logs().split('\n').filter((l) => /X-Forwarded-For/.test(l));
      assert.equal(lines.length, 1, srv.logs());
      assert.match(lines[0], /"level":"warn".*TRUST_PROXY=0: set TRUST_PROXY=1/);
      const p = (await checks(srv)).proxy[0];
      assert.equal(p.status, 'warn');
      assert.match(p.output, /X-Forwarded-For but TRUST_PROXY=0/);
      assert.equal((await srv.fetch('/ready')).status, 200, 'a warning does not make the instance unready');
    } finally { await srv.stop(); }
  });

  test('with TRUST_PROXY=1 forwarded requests raise no warning', async () => {
    const srv = await startServer({ env: { TRUST_PROXY: '1' } });
    try {
      await srv.fetch('/health', { headers: { 'x-forwarded-for': '203.0.113.9' } });
      assert.equal((await checks(srv)).proxy, undefined);
      assert.doesNotMatch(srv.logs(), /X-Forwarded-For/);
    } finally { await srv.stop(); }
  });

  test('check-config with RENDER=true warns about TRUST_PROXY=0, and not when it is set', async () => {
    let r = await runBinary(['check-config'], { env: { RENDER: 'true' } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /config: warning: RENDER=true but TRUST_PROXY=0: .*set TRUST_PROXY=1/);
    r = await runBinary(['check-config'], { env: { RENDER: 'true', TRUST_PROXY: '1' } });
    assert.equal(r.code, 0);
    assert.doesNotMatch(r.stderr, /TRUST_PROXY/);
    r = await runBinary(['check-config'], {});
    assert.doesNotMatch(r.stderr, /TRUST_PROXY/);
  });
});
