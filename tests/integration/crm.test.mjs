// CRM contacts and durable notifications as a black box, on SQLite and
// PostgreSQL: owner scoping (another user's contact is 404), search, keyset
// pages, assignment with its notification in one transaction, per-user
// consecutive seqs under concurrency, delivery on notify:<user> with the
// notification's seq, resume after being offline, and read receipts.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, randomKey } from './lib/server.mjs';
import { api, makeAdmin, register, WsClient, BACKENDS, backendEnv, sleep, until } from './lib/apps.mjs';

for (const backend of BACKENDS) {
  describe(`crm contacts (${backend})`, () => {
    let srv, admin, alice, bob;
    const key = randomKey();
    before(async () => {
      srv = await startServer({ env: backendEnv(backend, { SERVICE_API_KEY: key }) });
      admin = await makeAdmin(srv);
      alice = await register(srv, 'alice');
      bob = await register(srv, 'bob');
    });
    after(async () => { await srv.stop(); });

    const create = async (who, body) => {
      const r = await api(srv, 'POST', '/api/crm/contacts', { token: who.token, body });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    };

    test('create, get, patch, delete; validation names the field', async () => {
      assert.equal((await api(srv, 'POST', '/api/crm/contacts', { body: { name: 'x' } })).status, 401);
      assert.equal((await api(srv, 'POST', '/api/crm/contacts', { token: key, body: { name: 'x' } })).status, 403);
      const bad = await api(srv, 'POST', '/api/crm/contacts', { token: alice.token, body: { email: 'not-an-email', phone: 12 } });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'validation_failed');
      assert.ok(bad.body.error.fields.name);
      assert.ok(bad.body.error.fields.email);
      assert.ok(bad.body.error.fields.phone);
      const c = await create(alice, { name: 'Dr. Ada Molar', email: 'ada@clinic.example', company: 'Molar & Co', notes: 'likes implants' });
      assert.equal(c.owner_id, alice.id);
      assert.equal(c.name, 'Dr. Ada Molar');
      assert.match(c.id, /^[0-9a-f-]{36}$/);
      const g = await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: alice.token });
      assert.deepEqual(g.body, c);
      const p = await api(srv, 'PATCH', `/api/crm/contacts/${c.id}`, { token: alice.token, body: { phone: '+1 555 0100', company: null } });
      assert.equal(p.status, 200, JSON.stringify(p.body));
      assert.equal(p.body.phone, '+1 555 0100');
      assert.equal(p.body.company, null);
      assert.equal(p.body.name, 'Dr. Ada Molar');
      assert.ok(p.body.updated_at >= c.updated_at);
      const pb = await api(srv, 'PATCH', `/api/crm/contacts/${c.id}`, { token: alice.token, body: { name: '' } });
      assert.equal(pb.status, 400);
      assert.ok(pb.body.error.fields.name);
      const d = await api(srv, 'DELETE', `/api/crm/contacts/${c.id}`, { token: alice.token });
      assert.equal(d.status, 204);
      assert.equal((await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: alice.token })).status, 404);
      assert.equal((await api(srv, 'DELETE', `/api/crm/contacts/${c.id}`, { token: alice.token })).status, 404);
    });

    test("another user's contact is 404 for every verb; an admin sees it", async () => {
      const c = await create(alice, { name: 'Private Patient Lead' });
      for (const [m, path, body] of [
        ['GET', `/api/crm/contacts/${c.id}`],
        ['PATCH', `/api/crm/contacts/${c.id}`, { name: 'stolen' }],
        ['DELETE', `/api/crm/contacts/${c.id}`],
        ['POST', `/api/crm/contacts/${c.id}/assign`, { user_id: bob.id }],
      ]) {
        const r = await api(srv, m, path, { token: bob.token, body });
        assert.equal(r.status, 404, `${m} ${path}: ${JSON.stringify(r.body)}`);
      }
      const list = await api(srv, 'GET', '/api/crm/contacts?limit=100', { token: bob.token });
      assert.ok(!list.body.items.some((x) => x.id === c.id));
      assert.equal((await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: admin.token })).status, 200);
      const forAlice = await api(srv, 'GET', `/api/crm/contacts?owner_id=${alice.id}&limit=100`, { token: admin.token });
      assert.ok(forAlice.body.items.some((x) => x.id === c.id));
      assert.ok(forAlice.body.items.every((x) => x.owner_id === alice.id));
      const nosy = await api(srv, 'GET', `/api/crm/contacts?owner_id=${alice.id}`, { token: bob.token });
      assert.equal(nosy.status, 400);
    });

    test('search q over name, company and e-mail; keyset pages cover everything once', async () => {
      const u = await register(srv, 'pager');
      const made = [];
      for (let i = 0; i < 25; i++) {
        made.push(await create(u, { name: `Lead ${i}`, company: i % 5 === 0 ? 'Smile 100% Dental' : 'Other', email: i === 7 ? 'zed@ortho.example' : null }));
      }
      const q1 = await api(srv, 'GET', `/api/crm/contacts?q=${encodeURIComponent('100%')}&limit=100`, { token: u.token });
      assert.equal(q1.body.items.length, 5);
      const q2 = await api(srv, 'GET', '/api/crm/contacts?q=ORTHO', { token: u.token });
      assert.deepEqual(q2.body.items.map((x) => x.name), ['Lead 7']);
      const q3 = await api(srv, 'GET', '/api/crm/contacts?q=lead%2012', { token: u.token });
      assert.deepEqual(q3.body.items.map((x) => x.name), ['Lead 12']);
      const seen = [];
      let cursor = null;
      for (let page = 0; page < 10; page++) {
        const r = await api(srv, 'GET', `/api/crm/contacts?limit=10${cursor ? `&cursor=${cursor}` : ''}`, { token: u.token });
        assert.equal(r.status, 200);
        seen.push(...r.body.items.map((x) => x.id));
        cursor = r.body.next_cursor;
        if (!cursor) break;
      }
      assert.equal(seen.length, 25);
      assert.equal(new Set(seen).size, 25);
      assert.deepEqual(new Set(seen), new Set(made.map((x) => x.id)));
      assert.equal((await api(srv, 'GET', '/api/crm/contacts?limit=0', { token: u.token })).status, 400);
      assert.equal((await api(srv, 'GET', '/api/crm/contacts?cursor=garbage', { token: u.token })).status, 400);
    });

    test('assign moves the contact and notifies the new owner live, in one transaction', async () => {
      const c = await create(alice, { name: 'Hand-over Lead' });
      const ws = await WsClient.open(srv, bob.token);
      const s = await ws.subscribe(`notify:${bob.id}`);
      const unknown = await api(srv, 'POST', `/api/crm/contacts/${c.id}/assign`, { token: alice.token, body: { user_id: '00000000-0000-4000-8000-000000000000' } });
      assert.equal(unknown.status, 404);
      assert.equal((await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: alice.token })).body.owner_id, alice.id, 'unchanged');
      const r = await api(srv, 'POST', `/api/crm/contacts/${c.id}/assign`, { token: alice.token, body: { user_id: bob.id } });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.owner_id, bob.id);
      const m = await ws.next((x) => x.type === 'message');
      assert.equal(m.channel, `notify:${bob.id}`);
      assert.equal(m.seq, s.seq + 1);
      assert.equal(m.data.type, 'notification');
      const n = m.data.notification;
      assert.equal(n.kind, 'contact.assigned');
      assert.equal(n.user_id, bob.id);
      assert.equal(n.seq, m.seq);
      assert.deepEqual(n.data, { contact_id: c.id, from_user_id: alice.id });
      assert.equal(n.read, false);
      assert.equal((await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: alice.token })).status, 404);
      assert.equal((await api(srv, 'GET', `/api/crm/contacts/${c.id}`, { token: bob.token })).status, 200);
      const list = await api(srv, 'GET', `/api/notifications?after_seq=${s.seq}`, { token: bob.token });
      assert.deepEqual(list.body.items.map((x) => x.id), [n.id]);
      ws.close();
    });
  });

  describe(`notifications (${backend})`, () => {
    let srv, admin, carol, dave;
    const key = randomKey();
    before(async () => {
      srv = await startServer({ env: backendEnv(backend, { SERVICE_API_KEY: key }) });
      admin = await makeAdmin(srv);
      carol = await register(srv, 'carol');
      dave = await register(srv, 'dave');
    });
    after(async () => { await srv.stop(); });

    const send = (user, i, token = key) =>
      api(srv, 'POST', '/api/notifications', { token, body: { user_id: user.id, kind: 'test', title: `hello ${i}`, body: 'b', data: { i } } });

    test('POST needs the service key or an admin and validates its fields', async () => {
      assert.equal((await send(carol, 0, carol.token)).status, 403);
      assert.equal((await api(srv, 'POST', '/api/notifications', { body: {} })).status, 401);
      const bad = await api(srv, 'POST', '/api/notifications', { token: key, body: { user_id: carol.id, data: 5 } });
      assert.equal(bad.status, 400);
      assert.ok(bad.body.error.fields.kind && bad.body.error.fields.title && bad.body.error.fields.data);
      const nouser = await api(srv, 'POST', '/api/notifications', { token: key, body: { user_id: 'nobody', kind: 'k', title: 't' } });
      assert.equal(nouser.status, 404);
      const ok = await send(carol, 1, admin.token);
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.equal(ok.body.user_id, carol.id);
      assert.deepEqual(ok.body.data, { i: 1 });
    });

    test('50 concurrent notifications to one user get 50 distinct consecutive seqs', async () => {
      const u = await register(srv, 'burst');
      const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => send(u, i)));
      for (const r of rs) assert.equal(r.status, 201, JSON.stringify(r.body));
      const seqs = rs.map((r) => r.body.seq).sort((a, b) => a - b);
      assert.deepEqual(seqs, Array.from({ length: 50 }, (_, i) => i + 1));
      const l = await api(srv, 'GET', '/api/notifications?after_seq=0&limit=100', { token: u.token });
      assert.deepEqual(l.body.items.map((x) => x.seq), seqs);
      assert.equal(l.body.unread_count, 50);
    });

    test('sent while offline: resume with since delivers each exactly once, with the REST seqs', async () => {
      const u = await register(srv, 'offline');
      const ws1 = await WsClient.open(srv, u.token);
      const s = await ws1.subscribe(`notify:${u.id}`);
      assert.equal((await send(u, 'live')).status, 201);
      const live = await ws1.next((m) => m.type === 'message');
      ws1.close();
      const sent = [];
      for (let i = 0; i < 5; i++) sent.push((await send(u, i)).body);
      const ws2 = await WsClient.open(srv, u.token);
      const s2 = await ws2.subscribe(`notify:${u.id}`, { since: live.seq });
      assert.equal(s2.recovered, true, JSON.stringify(s2));
      await until(() => ws2.on(`notify:${u.id}`).length >= 5, 5000, 'replay');
      await sleep(200);
      const got = ws2.on(`notify:${u.id}`);
      assert.equal(got.length, 5);
      assert.deepEqual(got.map((m) => m.seq), sent.map((n) => n.seq));
      assert.deepEqual(got.map((m) => m.data.notification.id), sent.map((n) => n.id));
      const rest = await api(srv, 'GET', `/api/notifications?after_seq=${live.seq}`, { token: u.token });
      assert.deepEqual(rest.body.items.map((n) => n.seq), got.map((m) => m.seq));
      assert.equal(s.seq + 1, live.seq);
      ws2.close();
    });

    test('read and read-all: both tabs see notification.read (no seq); counts agree', async () => {
      const a = await register(srv, 'tabs');
      const n1 = (await send(a, 1)).body;
      const n2 = (await send(a, 2)).body;
      await send(a, 3);
      const t1 = await WsClient.open(srv, a.token);
      const t2 = await WsClient.open(srv, a.token);
      const s1 = await t1.subscribe(`notify:${a.id}`);
      await t2.subscribe(`notify:${a.id}`);
      assert.equal((await api(srv, 'POST', `/api/notifications/${n1.id}/read`, { token: dave.token })).status, 404, "another user's notification");
      const r = await api(srv, 'POST', `/api/notifications/${n1.id}/read`, { token: a.token });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.updated, 1);
      for (const t of [t1, t2]) {
        const m = await t.next((x) => x.type === 'message');
        assert.equal(m.data.type, 'notification.read');
        assert.deepEqual(m.data.ids, [n1.id]);
        assert.equal(m.data.unread_count, 2);
        assert.equal(m.seq, undefined, 'transient: no seq');
      }
      const again = await api(srv, 'POST', `/api/notifications/${n1.id}/read`, { token: a.token });
      assert.equal(again.body.updated, 0);
      const unread = await api(srv, 'GET', '/api/notifications?unread=true', { token: a.token });
      assert.equal(unread.body.unread_count, 2);
      assert.deepEqual(unread.body.items.map((x) => x.id).sort(), [n2.id, unread.body.items.find((x) => x.id !== n2.id).id].sort());
      const all = await api(srv, 'POST', '/api/notifications/read-all', { token: a.token });
      assert.equal(all.body.updated, 2);
      const m = await t2.next((x) => x.type === 'message');
      assert.equal(m.data.unread_count, 0);
      assert.equal(m.data.ids.length, 2);
      const l = await api(srv, 'GET', '/api/notifications', { token: a.token });
      assert.equal(l.body.unread_count, 0);
      assert.ok(l.body.items.every((x) => x.read === true));
      // a transient message did not advance the channel's seq
      const n4 = (await send(a, 4)).body;
      const m4 = await t1.next((x) => x.type === 'message' && x.data.type === 'notification');
      assert.equal(m4.seq, n4.seq);
      assert.equal(n4.seq, s1.seq + 1);
      t1.close();
      t2.close();
    });

    test('a newest-first list pages with next_cursor', async () => {
      const u = await register(srv, 'newest');
      for (let i = 0; i < 7; i++) await send(u, i);
      const p1 = await api(srv, 'GET', '/api/notifications?limit=3', { token: u.token });
      assert.deepEqual(p1.body.items.map((x) => x.seq), [7, 6, 5]);
      const p2 = await api(srv, 'GET', `/api/notifications?limit=3&cursor=${p1.body.next_cursor}`, { token: u.token });
      assert.deepEqual(p2.body.items.map((x) => x.seq), [4, 3, 2]);
      const p3 = await api(srv, 'GET', `/api/notifications?limit=3&cursor=${p2.body.next_cursor}`, { token: u.token });
      assert.deepEqual(p3.body.items.map((x) => x.seq), [1]);
      assert.equal(p3.body.next_cursor, null);
    });
  });
}
