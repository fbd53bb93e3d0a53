// The API description (issue 16): openapi/openapi.json documents every route
// the server registers and every route SPEC §4 names, the binary serves the
// same bytes, and the contract checks in lib/contract.mjs really fail on a
// mismatch (the app, auth, market and realtime suites run through them).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { startServer } from './lib/server.mjs';
import { openapi, wsSchema, checkResponse, checkWsFrame, matchPath, OPENAPI_PATH, WS_SCHEMA_PATH } from './lib/contract.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const METHODS = { OSB_GET: 'get', OSB_HEAD: 'head', OSB_POST: 'post', OSB_PUT: 'put', OSB_PATCH: 'patch', OSB_DELETE: 'delete', OSB_OPTIONS: 'options' };

function cFiles(dir) {
  const out = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...cFiles(p));
    else if (n.endsWith('.c')) out.push(p);
  }
  return out;
}

// The router's table, read from the sources: every osb_route(METHODS,
// "/pattern", fn) and osb_feature_route("feature", METHODS, "/pattern", fn).
// A registration whose pattern is not a string literal cannot be checked and
// fails the test (features.c forwards its arguments and is the one exception).
export function registeredRoutes() {
  const routes = [];
  const unreadable = [];
  for (const f of cFiles(join(root, 'src'))) {
    const rel = relative(root, f);
    if (rel === join('src', 'apps', 'features.c')) continue;
    const src = readFileSync(f, 'utf8');
    const re = /\bosb_(?:feature_)?route\s*\(([^;]*?)\);/gs;
    let m;
    while ((m = re.exec(src))) {
      const args = m[1];
      if (/^\s*(unsigned|const char \*)/.test(args)) continue;   // the definition (router.c) or a prototype
      const hit = args.match(/^\s*(?:"([a-z_]+)"\s*,\s*)?([A-Z_|\s]+?)\s*,\s*"([^"]+)"\s*,/s);
      if (!hit) { unreadable.push(`${rel}: ${m[0].slice(0, 80)}`); continue; }
      const methods = hit[2].split('|').map((s) => s.trim());
      for (const mm of methods) {
        assert.ok(METHODS[mm], `${rel}: unknown method ${mm}`);
        routes.push({ method: METHODS[mm], pattern: hit[3], feature: hit[1] || null, file: rel });
      }
    }
  }
  return { routes, unreadable };
}

// "/api/agents/:id" and "/api/agents/{id}" → "/api/agents/{}": parameter
// names may differ between the router and the document.
const shape = (p) => p.replace(/:[A-Za-z_]\w*/g, '{}').replace(/\{[^}]+\}/g, '{}');
const documented = new Map();
for (const [p, ops] of Object.entries(openapi.paths)) {
  for (const m of Object.keys(ops)) if (METHODS[`OSB_${m.toUpperCase()}`]) documented.set(`${m} ${shape(p)}`, ops[m]);
}

// SPEC §4 (and §5's /ws), including the routes other modules register later.
const SPEC_ROUTES = `
POST /api/auth/register|POST /api/auth/login|POST /api/auth/refresh|POST /api/auth/logout|GET /api/auth/me|GET /api/auth/session|GET /api/usage
GET /api/agents|GET /api/agents/:id|POST /api/agents|PATCH /api/agents/:id|GET /api/agents/:id/knowledge|POST /api/agents/:id/knowledge|DELETE /api/agents/:id/knowledge/:kid
POST /api/conversations|GET /api/conversations|GET /api/conversations/:id|DELETE /api/conversations/:id|GET /api/conversations/:id/messages|POST /api/conversations/:id/messages|GET /api/conversations/:id/export
POST /api/voice/tts|GET /api/voice/audio/:hash|GET /api/voice/status|GET /api/upstreams
GET /api/market/categories|GET /api/market/procedures|GET /api/market/procedures/:id|PUT /api/market/procedures/:id|POST /api/market/procedures/bulk
POST /api/crm/contacts|GET /api/crm/contacts|GET /api/crm/contacts/:id|PATCH /api/crm/contacts/:id|DELETE /api/crm/contacts/:id|POST /api/crm/contacts/:id/assign
POST /api/notifications|GET /api/notifications|POST /api/notifications/:id/read|POST /api/notifications/read-all
POST /api/realtime/publish|GET /api/realtime/channels|GET /api/realtime/presence/:channel
GET /health|GET /ready|GET /health/details|GET /metrics|GET /dashboard|GET /client.js|GET /ws|GET /api/openapi.json`
  .split(/[|\n]/).map((s) => s.trim()).filter(Boolean);

describe('OpenAPI document', () => {
  test('every route the server registers is documented (method and path)', () => {
    const { routes, unreadable } = registeredRoutes();
    assert.deepEqual(unreadable, [], 'route registrations the test cannot read: use a string literal pattern');
    assert.ok(routes.length >= 30, `only ${routes.length} registrations found: is the parser still right?`);
    const missing = routes.filter((r) => r.method !== 'head' && !documented.has(`${r.method} ${shape(r.pattern)}`))
      .map((r) => `${r.method.toUpperCase()} ${r.pattern} (${r.file})`);
    assert.deepEqual(missing, [], 'add these routes to openapi/openapi.json');
  });

  test('every route SPEC §4 names is documented, including those registered later', () => {
    const missing = SPEC_ROUTES.filter((r) => { const [m, p] = r.split(' '); return !documented.has(`${m.toLowerCase()} ${shape(p)}`); });
    assert.deepEqual(missing, []);
  });

  test('switchable routes are marked with the feature DISABLE names', () => {
    const { routes } = registeredRoutes();
    for (const r of routes.filter((x) => x.feature)) {
      const op = documented.get(`${r.method} ${shape(r.pattern)}`);
      assert.equal(op['x-osb-feature'], r.feature, `${r.method} ${r.pattern}`);
    }
  });

  test('the document is well formed: OpenAPI 3.1, refs resolve, path parameters declared, schemas compile', () => {
    assert.equal(openapi.openapi, '3.1.0');
    for (const s of ['bearerAuth', 'ssoCookie', 'csrfHeader', 'serviceKey']) assert.ok(openapi.components.securitySchemes[s], s);
    assert.equal(openapi.components.securitySchemes.csrfHeader.name, 'X-CSRF-Token');
    assert.equal(openapi.components.securitySchemes.ssoCookie.in, 'cookie');
    const err = openapi.components.schemas.Error;
    assert.deepEqual(err.properties.error.required, ['code', 'message', 'request_id']);
    const refs = JSON.stringify(openapi).match(/"\$ref":"[^"]+"/g) || [];
    for (const r of refs) {
      const ptr = r.slice(8, -1);
      assert.ok(ptr.startsWith('#/'), ptr);
      const v = ptr.slice(2).split('/').reduce((o, k) => (o ? o[k.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined), openapi);
      assert.ok(v !== undefined, `unresolved ${ptr}`);
    }
    const ids = new Set();
    for (const [p, ops] of Object.entries(openapi.paths)) {
      const want = [...p.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
      for (const [m, op] of Object.entries(ops)) {
        assert.ok(op.responses && op.responses.default, `${m} ${p}: responses.default (the Error body)`);
        assert.ok(!ids.has(op.operationId), `duplicate operationId ${op.operationId}`);
        ids.add(op.operationId);
        const got = (op.parameters || []).filter((x) => x.in === 'path').map((x) => x.name).sort();
        assert.deepEqual(got, want, `${m} ${p}: path parameters`);
        assert.ok(Array.isArray(op.security), `${m} ${p}: security`);
      }
    }
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema({ ...openapi, $id: 'doc' });
    for (const name of Object.keys(openapi.components.schemas)) ajv.compile({ $ref: `doc#/components/schemas/${name}` });
    ajv.compile(wsSchema);
  });

  test('paths resolve like the router: literal segments before parameters', () => {
    assert.equal(matchPath('/api/market/procedures/bulk'), '/api/market/procedures/bulk');
    assert.equal(matchPath('/api/market/procedures/12?x=1'), '/api/market/procedures/{id}');
    assert.equal(matchPath('/api/notifications/read-all'), '/api/notifications/read-all');
    assert.equal(matchPath('/nope'), null);
  });

  test('the contract check fails on a mismatch (so the suites using it would notice)', () => {
    assert.throws(() => checkResponse('GET', '/api/market/procedures/1', 200, 'application/json', '{"id":"one"}'), /contract/);
    assert.throws(() => checkResponse('GET', '/api/crm/contacts', 201, 'application/json', '{}'), /not documented/);
    assert.throws(() => checkResponse('GET', '/api/crm/contacts/x', 404, 'application/json', '{"message":"no"}'), /contract/);
    assert.throws(() => checkResponse('GET', '/health', 200, 'text/html', 'hi'), /media type/);
    assert.throws(() => checkResponse('DELETE', '/api/crm/contacts/x', 204, '', 'body'), /without a body/);
    checkResponse('GET', '/api/crm/contacts/x', 404, 'application/json', '{"error":{"code":"not_found","message":"m","request_id":"r"}}');
    assert.throws(() => checkWsFrame({ type: 'subscribed', channel: 'market:all' }), /seq/);
    assert.throws(() => checkWsFrame({ type: 'surprise' }), /unknown type/);
    checkWsFrame({ type: 'message', channel: 'market:all', seq: 3, data: { a: 1 }, ts: 1 });
    checkWsFrame({ type: 'message', channel: 'chat:1', data: { type: 'agent.delta' }, ts: 1 });
  });
});

describe('served from the binary', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  test('GET /api/openapi.json is the repository document, byte for byte', async () => {
    const r = await srv.fetch('/api/openapi.json');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^application\/json/);
    assert.equal(await r.text(), readFileSync(OPENAPI_PATH, 'utf8'));
  });

  test('GET /api/ws-protocol.schema.json is the repository schema', async () => {
    const r = await srv.fetch('/api/ws-protocol.schema.json');
    assert.equal(r.status, 200);
    assert.equal(await r.text(), readFileSync(WS_SCHEMA_PATH, 'utf8'));
  });

  test('a route that answers 404 with the error body passes the check; the error body is documented', async () => {
    const r = await srv.fetch('/api/market/procedures/999999999');
    assert.equal(r.status, 404);
    const b = await r.json();
    assert.equal(b.error.code, 'not_found');
  });
});
