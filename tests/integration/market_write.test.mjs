// Market Data writes as a black box, on SQLite and PostgreSQL: roles,
// per-field validation, read-your-writes through the cache, and exactly one
// event per committed write on market:all and the category channels — none
// for a write that was refused or rolled back.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, randomKey } from './lib/server.mjs';
import { api, makeAdmin, register, WsClient, BACKENDS, backendEnv, sleep, until } from './lib/apps.mjs';

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');

for (const backend of BACKENDS) {
  describe(`market writes (${backend})`, () => {
    let srv, admin, user;
    const key = randomKey();
    before(async () => {
      srv = await startServer({ env: backendEnv(backend, { SERVICE_API_KEY: key, MAX_BODY_BYTES: '4194304' }) });
      admin = await makeAdmin(srv);
      user = await register(srv, 'mkt');
    });
    after(async () => { await srv.stop(); });

    const get = async (id) => {
      const r = await api(srv, 'GET', `/api/market/procedures/${id}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };

    test('categories carry slug and channel', async () => {
      const r = await api(srv, 'GET', '/api/market/categories');
      assert.equal(r.status, 200);
      assert.ok(r.body.categories.length > 3);
      for (const c of r.body.categories) {
        assert.equal(c.slug, slug(c.category), c.category);
        assert.equal(c.channel, `market:${c.slug}`);
      }
    });

    test('PUT needs admin or the service key: 401 signed out, 403 for a user', async () => {
      assert.equal((await api(srv, 'PUT', '/api/market/procedures/1', { body: { growth_pct: 1 } })).status, 401);
      const u = await api(srv, 'PUT', '/api/market/procedures/1', { token: user.token, body: { growth_pct: 1 } });
      assert.equal(u.status, 403, JSON.stringify(u.body));
      const a = await api(srv, 'PUT', '/api/market/procedures/1', { token: admin.token, body: { growth_pct: 1.5 } });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      assert.equal(a.body.growth_pct, 1.5);
      const s = await api(srv, 'PUT', '/api/market/procedures/1', { token: key, body: { growth_pct: 2.5 } });
      assert.equal(s.status, 200, JSON.stringify(s.body));
      assert.equal(s.body.growth_pct, 2.5);
    });

    test('validation errors name each bad field; nothing is written or published', async () => {
      const before = await get(2);
      const c = await WsClient.open(srv);
      await c.subscribe('market:all');
      const r = await api(srv, 'PUT', '/api/market/procedures/2', {
        token: admin.token,
        body: { growth_pct: 'fast', market_size_usd: -5, name: '', colour: 'red', avg_price_usd: 10 },
      });
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, 'validation_failed');
      assert.ok(r.body.error.request_id);
      for (const f of ['growth_pct', 'market_size_usd', 'name', 'colour']) assert.ok(r.body.error.fields[f], `${f}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error.fields.avg_price_usd, undefined);
      const empty = await api(srv, 'PUT', '/api/market/procedures/2', { token: admin.token, body: {} });
      assert.equal(empty.status, 400);
      assert.equal(empty.body.error.code, 'validation_failed');
      const badId = await api(srv, 'PUT', '/api/market/procedures/abc', { token: admin.token, body: { growth_pct: 1 } });
      assert.equal(badId.status, 400);
      const missing = await api(srv, 'PUT', '/api/market/procedures/2000000000', { token: admin.token, body: { growth_pct: 1 } });
      assert.equal(missing.status, 404, JSON.stringify(missing.body));
      await sleep(300);
      assert.deepEqual(c.on('market:all'), [], 'no event for refused writes');
      assert.deepEqual(await get(2), before);
      c.close();
    });

    test('a write is read back at once through the cache (read-your-writes)', async () => {
      const p = await get(3);   // cached now
      const list1 = await api(srv, 'GET', `/api/market/procedures?category=${encodeURIComponent(p.category)}&limit=100`);
      assert.equal(list1.status, 200);
      for (let i = 0; i < 5; i++) {
        const v = Math.round(Math.random() * 10000) / 100;
        const w = await api(srv, 'PUT', '/api/market/procedures/3', { token: admin.token, body: { growth_pct: v, description: `d${i}` } });
        assert.equal(w.status, 200);
        const g = await get(3);
        assert.equal(g.growth_pct, v);
        assert.equal(g.description, `d${i}`);
      }
    });

    test('reads racing a write: once the write answered, no read returns the old value', async () => {
      for (let round = 0; round < 15; round++) {
        const v = 100 + round + Math.round(Math.random() * 100) / 100;
        // Reads in flight (single flight joins them) while the write commits.
        const racing = Array.from({ length: 8 }, () => api(srv, 'GET', '/api/market/procedures/6'));
        const w = await api(srv, 'PUT', '/api/market/procedures/6', { token: admin.token, body: { growth_pct: v } });
        assert.equal(w.status, 200);
        const after = await Promise.all(Array.from({ length: 8 }, () => api(srv, 'GET', '/api/market/procedures/6')));
        for (const r of after) assert.equal(r.body.growth_pct, v, `round ${round}`);
        await Promise.all(racing);
      }
    });

    test('one procedure.updated on market:all and the category channel per write; a move reaches old and new', async () => {
      const p = await get(4);
      const cats = (await api(srv, 'GET', '/api/market/categories')).body.categories;
      const other = cats.find((c) => c.category !== p.category);
      const all = await WsClient.open(srv);
      const oldc = await WsClient.open(srv);
      const newc = await WsClient.open(srv);
      await all.subscribe('market:all');
      await oldc.subscribe(`market:${slug(p.category)}`);
      await newc.subscribe(other.channel);

      const w1 = await api(srv, 'PUT', '/api/market/procedures/4', { token: admin.token, body: { avg_price_usd: 321.5 } });
      assert.equal(w1.status, 200);
      const m1 = await all.next((m) => m.type === 'message');
      assert.equal(m1.data.type, 'procedure.updated');
      assert.equal(m1.data.procedure.id, 4);
      assert.equal(m1.data.procedure.avg_price_usd, 321.5);
      const o1 = await oldc.next((m) => m.type === 'message');
      assert.deepEqual(o1.data, m1.data);

      const w2 = await api(srv, 'PUT', '/api/market/procedures/4', { token: admin.token, body: { category: other.category } });
      assert.equal(w2.status, 200);
      assert.equal(w2.body.category, other.category);
      const m2 = await all.next((m) => m.type === 'message');
      const o2 = await oldc.next((m) => m.type === 'message');
      const n2 = await newc.next((m) => m.type === 'message');
      for (const m of [m2, o2, n2]) {
        assert.equal(m.data.type, 'procedure.updated');
        assert.equal(m.data.procedure.category, other.category);
      }
      await sleep(300);
      assert.equal(all.on('market:all').length, 2, 'exactly one event per write');
      assert.equal(oldc.on(`market:${slug(p.category)}`).length, 2);
      assert.equal(newc.on(other.channel).length, 1);
      // move it back so the data set stays as seeded
      assert.equal((await api(srv, 'PUT', '/api/market/procedures/4', { token: admin.token, body: { category: p.category } })).status, 200);
      for (const c of [all, oldc, newc]) c.close();
    });

    test('bulk: more than 5,000 rows is 413; a bad row is named by index and nothing is written', async () => {
      const big = Array.from({ length: 5001 }, (_, i) => ({ id: i + 1, growth_pct: 1 }));
      const r = await api(srv, 'POST', '/api/market/procedures/bulk', { token: admin.token, body: { procedures: big } });
      assert.equal(r.status, 413, JSON.stringify(r.body).slice(0, 300));

      const before10 = await get(10);
      const c = await WsClient.open(srv);
      await c.subscribe('market:all');
      const bad = await api(srv, 'POST', '/api/market/procedures/bulk', {
        token: admin.token,
        body: { procedures: [{ id: 10, growth_pct: 42.25 }, { id: 11, growth_pct: 'x' }, { name: 'no category' }, 7] },
      });
      assert.equal(bad.status, 400, JSON.stringify(bad.body));
      assert.equal(bad.body.error.code, 'validation_failed');
      const idx = bad.body.error.rows.map((x) => x.index);
      assert.deepEqual(idx, [1, 2, 3]);
      assert.ok(bad.body.error.rows[0].fields.growth_pct);
      assert.ok(bad.body.error.rows[1].fields.category);

      // A row naming a procedure that does not exist rolls the whole bulk back.
      const missing = await api(srv, 'POST', '/api/market/procedures/bulk', {
        token: admin.token,
        body: { procedures: [{ id: 10, growth_pct: 42.25 }, { id: 2000000000, growth_pct: 1 }] },
      });
      assert.equal(missing.status, 400, JSON.stringify(missing.body));
      assert.deepEqual(missing.body.error.rows.map((x) => x.index), [1]);
      await sleep(300);
      assert.deepEqual(await get(10), before10, 'nothing written');
      assert.deepEqual(c.on('market:all'), [], 'nothing published');
      assert.equal((await api(srv, 'POST', '/api/market/procedures/bulk', { token: user.token, body: { procedures: [] } })).status, 403);
      c.close();
    });

    test('bulk of 5,000 updates arrives as ≤ 1,000-id messages and every new value reads back', async () => {
      const c = await WsClient.open(srv);
      await c.subscribe('market:all');
      const stamp = Math.round(Math.random() * 900) + 50;
      const rows = Array.from({ length: 5000 }, (_, i) => ({ id: i + 1, growth_pct: stamp + (i % 7) / 10 }));
      const r = await api(srv, 'POST', '/api/market/procedures/bulk', { token: key, body: { procedures: rows } });
      assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
      assert.equal(r.body.updated, 5000);
      assert.equal(r.body.created, 0);
      assert.equal(r.body.ids.length, 5000);
      await until(() => c.on('market:all').reduce((n, m) => n + m.data.ids.length, 0) >= 5000, 15000, 'all ids');
      const msgs = c.on('market:all');
      assert.equal(msgs.length, 5);
      const seen = new Set();
      for (const m of msgs) {
        assert.equal(m.data.type, 'procedures.updated');
        assert.ok(m.data.ids.length <= 1000);
        for (const id of m.data.ids) seen.add(id);
      }
      assert.equal(seen.size, 5000);
      // Every row reads back with its new value (32 readers at a time).
      let next = 1;
      const bad = [];
      await Promise.all(Array.from({ length: 32 }, async () => {
        while (next <= 5000) {
          const id = next++;
          const g = await get(id);
          if (g.growth_pct !== stamp + ((id - 1) % 7) / 10) bad.push(id);
        }
      }));
      assert.deepEqual(bad, [], 'rows not showing the bulk value');
      c.close();
    });

    test('bulk creates rows, returns their ids and notifies their category channel', async () => {
      const category = `Test Bulk ${randomKey(3)} & Co`;
      const ch = `market:${slug(category)}`;
      const c = await WsClient.open(srv);
      await c.subscribe(ch);
      const row = (n) => ({ name: `Proc ${n}`, category, market_size_usd: 1000 + n, growth_pct: 1.25, avg_price_usd: 99.5, region: 'EU' });
      const r = await api(srv, 'POST', '/api/market/procedures/bulk', { token: admin.token, body: { procedures: [row(1), row(2), { id: 5, region: 'North America' }] } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.created, 2);
      assert.equal(r.body.updated, 1);
      assert.equal(r.body.ids[2], 5);
      const m = await c.next((x) => x.type === 'message');
      assert.deepEqual(m.data.ids.sort(), r.body.ids.slice(0, 2).sort());
      const g = await get(r.body.ids[0]);
      assert.equal(g.name, 'Proc 1');
      assert.equal(g.category, category);
      const cats = (await api(srv, 'GET', '/api/market/categories')).body.categories;
      const mine = cats.find((x) => x.category === category);
      assert.equal(mine.procedures, 2);
      assert.equal(mine.channel, ch);
      c.close();
    });
  });
}
