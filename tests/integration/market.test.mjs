// Market Data read routes on the embedded SQLite default (the same routes on
// PostgreSQL are covered in db_pg.test.mjs): categories, detail, list with
// filters, sorting and keyset pagination, input validation, and the cache.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { assert.equal((await srv.stop()).code, 0, srv.logs().slice(-2000)); });

async function get(path) {
  const r = await srv.fetch(path);
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, body, headers: r.headers };
}

async function metric(name) {
  const text = await (await srv.fetch('/metrics')).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

test('categories list the seeded dental and aesthetic categories', async () => {
  const { status, body } = await get('/api/market/categories');
  assert.equal(status, 200);
  const names = body.categories.map((c) => c.category);
  for (const want of ['Dental Implants', 'Clear Aligners', 'Veneers', 'Botulinum Toxin', 'Dermal Fillers',
    'Laser Resurfacing', 'Body Contouring']) assert.ok(names.includes(want), `missing ${want}`);
  assert.deepEqual([...names].sort(), names, 'ordered by name');
  const total = body.categories.reduce((n, c) => n + c.procedures, 0);
  assert.ok(total >= 10000, `only ${total} procedures`);
  for (const c of body.categories) {
    assert.equal(typeof c.market_size_usd, 'number');
    assert.equal(typeof c.avg_growth_pct, 'number');
  }
});

test('a procedure by id is its row; bad ids are 400, missing ones 404', async () => {
  const { status, body } = await get('/api/market/procedures/1');
  assert.equal(status, 200);
  assert.equal(body.id, 1);
  for (const k of ['name', 'category', 'subcategory', 'region', 'description']) assert.equal(typeof body[k], 'string', k);
  for (const k of ['market_size_usd', 'growth_pct', 'avg_price_usd', 'updated_at']) assert.equal(typeof body[k], 'number', k);
  for (const bad of ['0', 'abc', '1.5', '-1', '1e3', '99999999999', '%27%20OR%201=1']) {
    const r = await get(`/api/market/procedures/${bad}`);
    assert.equal(r.status, 400, bad);
    assert.equal(r.body.error.code, 'bad_request');
    assert.ok(r.body.error.request_id);
  }
  const missing = await get('/api/market/procedures/2000000000');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'not_found');
  const last = await get('/api/market/procedures/10000');
  assert.equal(last.status, 200, 'ids run 1..N with N >= 10000');
});

test('the list defaults to 20 by name and pages without gaps or repeats', async () => {
  const first = await get('/api/market/procedures');
  assert.equal(first.status, 200);
  assert.equal(first.body.items.length, 20);
  assert.equal(first.body.limit, 20);
  assert.equal(typeof first.body.next_cursor, 'string');
  const names = first.body.items.map((i) => i.name);
  assert.deepEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), names);

  const whole = await get('/api/market/procedures?sort=-market_size&limit=90');
  const seen = [];
  let cursor = null;
  for (let page = 0; page < 3; page++) {
    const r = await get(`/api/market/procedures?sort=-market_size&limit=30${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.items.length, 30);
    seen.push(...r.body.items);
    cursor = r.body.next_cursor;
  }
  assert.deepEqual(seen.map((i) => i.id), whole.body.items.map((i) => i.id));
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i - 1].market_size_usd >= seen[i].market_size_usd);
  assert.equal(new Set(seen.map((i) => i.id)).size, seen.length);
});

test('growth sort ascending pages through a category to its end', async () => {
  const cat = 'Hair Restoration';
  let cursor = null, pages = 0, count = 0, prev = -Infinity;
  do {
    const r = await get(`/api/market/procedures?category=${encodeURIComponent(cat)}&sort=growth&order=asc&limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(r.status, 200);
    for (const it of r.body.items) {
      assert.equal(it.category, cat);
      assert.ok(it.growth_pct >= prev);
      prev = it.growth_pct;
    }
    count += r.body.items.length;
    cursor = r.body.next_cursor;
    pages++;
  } while (cursor && pages < 20);
  assert.equal(cursor, null, 'the last page has no cursor');
  const cats = (await get('/api/market/categories')).body.categories;
  assert.equal(count, cats.find((c) => c.category === cat).procedures);
});

test('q matches names case-insensitively and literally', async () => {
  const r = await get('/api/market/procedures?q=ALIGNER&limit=100');
  assert.equal(r.status, 200);
  assert.ok(r.body.items.length > 0);
  for (const it of r.body.items) assert.match(it.name, /aligner/i);
  for (const q of ['%', '_', '\\', "'; DROP TABLE market_procedures; --", '" OR 1=1 --']) {
    const x = await get(`/api/market/procedures?q=${encodeURIComponent(q)}`);
    assert.equal(x.status, 200, q);
    assert.deepEqual(x.body.items, [], `q=${q} must match literally`);
  }
  const bycat = await get(`/api/market/procedures?category=${encodeURIComponent("x' OR '1'='1")}`);
  assert.equal(bycat.status, 200);
  assert.deepEqual(bycat.body.items, []);
  const still = await get('/api/market/categories');
  assert.ok(still.body.categories.length > 10, 'the table is still there');
});

test('invalid list parameters are 400 with a reason', async () => {
  const cases = [
    ['limit=0', 'bad_request'], ['limit=101', 'bad_request'], ['limit=abc', 'bad_request'],
    ['sort=price', 'bad_request'], ['order=up', 'bad_request'],
    [`q=${'x'.repeat(101)}`, 'bad_request'],
    ['cursor=not-a-cursor', 'bad_request'], ['cursor=eyJ4IjoxfQ', 'bad_request'],
  ];
  for (const [qs, code] of cases) {
    const r = await get(`/api/market/procedures?${qs}`);
    assert.equal(r.status, 400, qs);
    assert.equal(r.body.error.code, code, qs);
  }
  const page = await get('/api/market/procedures?sort=name&limit=2');
  const other = await get(`/api/market/procedures?sort=-growth&cursor=${page.body.next_cursor}`);
  assert.equal(other.status, 400, 'a cursor is bound to its sort order');
  assert.equal(other.body.error.code, 'bad_request');
});

test('a repeated read is served from the cache with the same body', async () => {
  const hits0 = await metric('osb_db_cache_hits_total');
  const a = await get('/api/market/procedures/4242');
  const b = await get('/api/market/procedures/4242');
  assert.equal(a.status, 200);
  assert.deepEqual(a.body, b.body);
  const hits1 = await metric('osb_db_cache_hits_total');
  assert.ok(hits1 >= hits0 + 1, `cache hits ${hits0} -> ${hits1}`);
});

test('database metrics and the health check are exposed', async () => {
  const text = await (await srv.fetch('/metrics')).text();
  for (const name of ['osb_db_pool_size', 'osb_db_pool_idle', 'osb_db_pool_active', 'osb_db_pool_waiting',
    'osb_db_acquire_seconds_bucket', 'osb_db_query_seconds_bucket', 'osb_db_cache_misses_total', 'osb_db_cache_bytes'])
    assert.match(text, new RegExp(`^${name}`, 'm'), name);
  assert.match(text, /osb_db_query_seconds_count\{statement="market_procedure_get"\} [1-9]/);
  const details = await (await srv.fetch('/health/details')).json();
  assert.equal(details.checks.database[0].status, 'pass');
  assert.equal(details.checks.database[0].critical, true);
  assert.equal((await srv.fetch('/ready')).status, 200);
});

test('health details report the database and the query cache', async () => {
  const r = await srv.fetch('/health/details');
  const doc = await r.json();
  assert.equal(doc.checks.database[0].status, 'pass');
  assert.equal(doc.checks.cache[0].status, 'pass');
  assert.match(doc.checks.cache[0].output, /entries, \d+ of 64 MiB, ttl 5000 ms/);
});

test('a disabled cache is reported as a warning, not a failure', async () => {
  const off = await startServer({ env: { QUERY_CACHE_MB: '0' } });
  try {
    const doc = await (await off.fetch('/health/details')).json();
    assert.equal(doc.checks.cache[0].status, 'warn');
    assert.match(doc.checks.cache[0].output, /QUERY_CACHE_MB=0/);
    assert.equal((await off.fetch('/ready')).status, 200);
  } finally {
    assert.equal((await off.stop()).code, 0);
  }
});
