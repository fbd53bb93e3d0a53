// Chat agents as a black box, on SQLite and PostgreSQL, with no LLM
// configured (the knowledge-base fallback answers): agents and knowledge
// (admin-only writes, system_prompt for admins, FTS search as entries
// change), owner-scoped conversations (404 for another user, forbidden on
// chat:<id>), messages with consecutive seqs that are their seqs on the
// channel, replies streamed as coalesced agent.delta frames whose
// concatenation is the stored agent.done content over WebSocket, SSE and
// Prefer: wait, replies in order, resume with since, export, deletion.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, randomKey } from './lib/server.mjs';
import { api, makeAdmin, register, WsClient, BACKENDS, backendEnv, sleep, until } from './lib/apps.mjs';

const OBJECTION_COACH = 'a0000000-0000-4000-8000-000000000003';

// POST a message and read the SSE answer: {status, headers, events, raw}.
async function sse(srv, token, convId, text) {
  const r = await srv.fetch(`/api/conversations/${convId}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify({ text }),
  });
  const raw = await r.text();
  const events = raw.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  return { status: r.status, headers: r.headers, raw, events };
}

for (const backend of BACKENDS) {
  describe(`chat agents (${backend})`, () => {
    let srv, admin, alice, bob, agent;
    const unique = `zq${randomKey(3)}`;   // a word no seeded entry contains
    before(async () => {
      srv = await startServer({ env: backendEnv(backend) });
      admin = await makeAdmin(srv);
      alice = await register(srv, 'alice');
      bob = await register(srv, 'bob');
      const a = await api(srv, 'POST', '/api/agents', {
        token: admin.token,
        body: { app: 'canvas', name: `Test agent ${unique}`, description: 'for tests', system_prompt: 'secret prompt' },
      });
      assert.equal(a.status, 201, JSON.stringify(a.body));
      agent = a.body;
    });
    after(async () => { await srv.stop(); });

    const conversation = async (who = alice, agentId = agent.id) => {
      const r = await api(srv, 'POST', '/api/conversations', { token: who.token, body: { agent_id: agentId } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body;
    };
    const waitReply = async (who, convId, text) => {
      const r = await api(srv, 'POST', `/api/conversations/${convId}/messages`, {
        token: who.token, body: { text }, headers: { prefer: 'wait=30' },
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body;
    };

    test('agents: signed-in list and get, system_prompt for admins only, admin writes', async () => {
      assert.equal((await api(srv, 'GET', '/api/agents')).status, 401);
      const list = await api(srv, 'GET', '/api/agents?app=repconnect&limit=100', { token: alice.token });
      assert.equal(list.status, 200);
      assert.ok(list.body.items.length >= 3);
      assert.ok(list.body.items.every((a) => a.app === 'repconnect' && !('system_prompt' in a)));
      assert.ok('next_cursor' in list.body);
      const all = [];
      for (let cursor = null; ;) {
        const p = await api(srv, 'GET', `/api/agents?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: alice.token });
        assert.equal(p.status, 200);
        all.push(...p.body.items);
        if (!p.body.next_cursor) break;
        cursor = p.body.next_cursor;
      }
      assert.ok(all.length >= 6);
      assert.equal(new Set(all.map((a) => a.id)).size, all.length);
      assert.equal((await api(srv, 'GET', '/api/agents?app=nope', { token: alice.token })).body.error.code, 'validation_failed');
      const g = await api(srv, 'GET', `/api/agents/${agent.id}`, { token: alice.token });
      assert.equal(g.status, 200);
      assert.equal(g.body.name, agent.name);
      assert.ok(!('system_prompt' in g.body));
      const ga = await api(srv, 'GET', `/api/agents/${agent.id}`, { token: admin.token });
      assert.equal(ga.body.system_prompt, 'secret prompt');
      assert.equal((await api(srv, 'GET', `/api/agents/${randomKey(8)}`, { token: alice.token })).status, 404);
      assert.equal((await api(srv, 'POST', '/api/agents', { token: alice.token, body: { app: 'canvas', name: 'x' } })).status, 403);
      assert.equal((await api(srv, 'PATCH', `/api/agents/${agent.id}`, { token: alice.token, body: { name: 'x' } })).status, 403);
      const bad = await api(srv, 'POST', '/api/agents', { token: admin.token, body: { app: 'other', name: '' } });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, 'validation_failed');
      assert.ok(bad.body.error.fields.app && bad.body.error.fields.name);
      const p = await api(srv, 'PATCH', `/api/agents/${agent.id}`, { token: admin.token, body: { description: 'patched', model: 'm-1' } });
      assert.equal(p.status, 200, JSON.stringify(p.body));
      assert.equal(p.body.description, 'patched');
      assert.equal(p.body.model, 'm-1');
      assert.equal(p.body.name, agent.name);
    });

    test('knowledge: admin CRUD, searchable as entries change', async () => {
      const path = `/api/agents/${agent.id}/knowledge`;
      assert.equal((await api(srv, 'GET', path, { token: alice.token })).status, 403);
      assert.equal((await api(srv, 'POST', path, { token: alice.token, body: { title: 't', body: 'b' } })).status, 403);
      const bad = await api(srv, 'POST', path, { token: admin.token, body: { title: '' } });
      assert.equal(bad.body.error.code, 'validation_failed');
      assert.ok(bad.body.error.fields.title && bad.body.error.fields.body);
      assert.equal((await api(srv, 'POST', `/api/agents/${randomKey(8)}/knowledge`, { token: admin.token, body: { title: 't', body: 'b' } })).status, 404);
      const k = await api(srv, 'POST', path, { token: admin.token, body: { title: 'Gingival sculpting', body: `The ${unique}alpha technique reshapes the gum line.` } });
      assert.equal(k.status, 201, JSON.stringify(k.body));
      assert.equal(k.body.agent_id, agent.id);
      const found = await api(srv, 'GET', `${path}?q=${unique}alpha`, { token: admin.token });
      assert.deepEqual(found.body.items.map((x) => x.id), [k.body.id]);
      const p = await api(srv, 'PATCH', `${path}/${k.body.id}`, { token: admin.token, body: { body: `Now the ${unique}beta method.` } });
      assert.equal(p.status, 200);
      assert.equal(p.body.title, 'Gingival sculpting');
      assert.equal((await api(srv, 'GET', `${path}?q=${unique}alpha`, { token: admin.token })).body.items.length, 0);
      assert.equal((await api(srv, 'GET', `${path}?q=${unique}beta`, { token: admin.token })).body.items.length, 1);
      assert.equal((await api(srv, 'GET', `${path}/${k.body.id}`, { token: admin.token })).body.body, `Now the ${unique}beta method.`);
      assert.equal((await api(srv, 'DELETE', `${path}/${k.body.id}`, { token: admin.token })).status, 204);
      assert.equal((await api(srv, 'GET', `${path}?q=${unique}beta`, { token: admin.token })).body.items.length, 0);
      assert.equal((await api(srv, 'DELETE', `${path}/${k.body.id}`, { token: admin.token })).status, 404);
      // the seeded agents have useful knowledge about the demo domain
      const seeded = await api(srv, 'GET', `/api/agents/${OBJECTION_COACH}/knowledge?limit=100`, { token: admin.token });
      assert.ok(seeded.body.items.length >= 4);
      assert.ok(seeded.body.items.some((x) => /discount/i.test(x.title)));
    });

    test('conversations: owner-scoped CRUD, newest first, another user gets 404 and forbidden', async () => {
      const bad = await api(srv, 'POST', '/api/conversations', { token: alice.token, body: { agent_id: randomKey(8) } });
      assert.equal(bad.status, 400);
      assert.ok(bad.body.error.fields.agent_id);
      const c1 = await conversation();
      const c2 = await conversation(alice, OBJECTION_COACH);
      assert.equal(c1.app, 'canvas');
      assert.equal(c2.app, 'repconnect');
      assert.equal(c1.last_seq, 0);
      const g = await api(srv, 'GET', `/api/conversations/${c1.id}`, { token: alice.token });
      assert.deepEqual(g.body, c1);
      const mine = await api(srv, 'GET', '/api/conversations?limit=100', { token: alice.token });
      const ids = mine.body.items.map((x) => x.id);
      assert.ok(ids.indexOf(c2.id) < ids.indexOf(c1.id), 'newest first');
      const canvas = await api(srv, 'GET', '/api/conversations?app=canvas&limit=100', { token: alice.token });
      assert.ok(canvas.body.items.every((x) => x.app === 'canvas'));
      const page1 = await api(srv, 'GET', '/api/conversations?limit=1', { token: alice.token });
      assert.equal(page1.body.items.length, 1);
      const page2 = await api(srv, 'GET', `/api/conversations?limit=1&cursor=${page1.body.next_cursor}`, { token: alice.token });
      assert.notEqual(page2.body.items[0].id, page1.body.items[0].id);
      // bob sees none of it
      for (const [m, p, body] of [
        ['GET', `/api/conversations/${c1.id}`],
        ['GET', `/api/conversations/${c1.id}/messages`],
        ['POST', `/api/conversations/${c1.id}/messages`, { text: 'hello' }],
        ['GET', `/api/conversations/${c1.id}/export?format=json`],
        ['DELETE', `/api/conversations/${c1.id}`],
      ]) {
        const r = await api(srv, m, p, { token: bob.token, body });
        assert.equal(r.status, 404, `${m} ${p}: ${JSON.stringify(r.body)}`);
      }
      assert.ok(!(await api(srv, 'GET', '/api/conversations?limit=100', { token: bob.token })).body.items.some((x) => x.id === c1.id));
      const ws = await WsClient.open(srv, bob.token);
      const s = await ws.request({ type: 'subscribe', channel: `chat:${c1.id}` });
      assert.equal(s.type, 'error');
      assert.equal(s.code, 'forbidden');
      const pub = await ws.request({ type: 'publish', channel: `chat:${c1.id}`, data: { text: 'sneaky' } });
      assert.equal(pub.type, 'error');
      ws.close();
      // still intact for alice, and nothing was posted by bob
      assert.equal((await api(srv, 'GET', `/api/conversations/${c1.id}/messages`, { token: alice.token })).body.items.length, 0);
      assert.equal((await api(srv, 'DELETE', `/api/conversations/${c2.id}`, { token: alice.token })).status, 204);
      assert.equal((await api(srv, 'GET', `/api/conversations/${c2.id}`, { token: alice.token })).status, 404);
    });

    test('message validation: text 1..8000 characters, voice boolean', async () => {
      const c = await conversation();
      for (const body of [{}, { text: '' }, { text: 'x'.repeat(8001) }, { text: 5 }, { text: 'ok', voice: 'yes' }]) {
        const r = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body });
        assert.equal(r.status, 400, JSON.stringify(body));
        assert.equal(r.body.error.code, 'validation_failed');
      }
      const ok = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: 'é'.repeat(8000) } });
      assert.equal(ok.status, 202, JSON.stringify(ok.body));
    });

    test('fallback: the best-matching knowledge entry, or "unavailable" when nothing matches', async () => {
      const body = `Tell patients the ${unique}gamma protocol takes two visits and costs about 900 dollars.`;
      const k = await api(srv, 'POST', `/api/agents/${agent.id}/knowledge`, { token: admin.token, body: { title: 'Protocol pricing', body } });
      assert.equal(k.status, 201);
      const c = await conversation();
      const r = await waitReply(alice, c.id, `How much does the ${unique}gamma protocol cost?`);
      assert.equal(r.message.role, 'user');
      assert.equal(r.message.seq, 1);
      assert.equal(r.reply.role, 'assistant');
      assert.equal(r.reply.seq, 2);
      assert.equal(r.reply.fallback, true);
      assert.equal(r.reply.status, 'done');
      assert.ok(r.reply.content.includes(body), r.reply.content);
      const none = await waitReply(alice, c.id, 'qwxv plorbt zzyzx');
      assert.equal(none.reply.fallback, true);
      assert.match(none.reply.content, /unavailable/i);
      // seeded knowledge answers on a fresh database
      const c2 = await conversation(alice, OBJECTION_COACH);
      const seeded = await waitReply(alice, c2.id, 'The practice owner asks me for a discount');
      assert.match(seeded.reply.content, /discount/i);
      assert.equal(seeded.reply.fallback, true);
      const st = await api(srv, 'GET', '/api/agents/status', { token: alice.token });
      assert.equal(st.status, 200);
      assert.equal(st.body.degraded, true);
      assert.ok(st.body.reason);
    });

    test('WebSocket: message.created, agent.delta frames without seq concatenating to agent.done, seqs agree with REST', async () => {
      const c = await conversation();
      const ws = await WsClient.open(srv, alice.token);
      const sub = await ws.subscribe(`chat:${c.id}`);
      assert.equal(sub.seq, 0);
      const post = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: `the ${unique}gamma protocol please` } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      assert.ok(post.body.reply_id);
      const created = await ws.next((m) => m.type === 'message' && m.data.type === 'message.created');
      assert.equal(created.seq, post.body.message.seq);
      assert.deepEqual(created.data.message, post.body.message);
      const done = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      const deltas = ws.on(`chat:${c.id}`).filter((m) => m.data.type === 'agent.delta');
      assert.ok(deltas.length >= 2, `deltas: ${deltas.length}`);
      for (const d of deltas) {
        assert.equal(d.seq, undefined);
        assert.equal(d.data.reply_id, post.body.reply_id);
      }
      assert.equal(deltas.map((d) => d.data.text).join(''), done.data.message.content);
      assert.equal(done.data.message.id, post.body.reply_id);
      assert.equal(done.seq, created.seq + 1);
      assert.equal(done.seq, done.data.message.seq);
      // coalescing: at most one frame per ~30 ms window (generous for timer slack)
      for (let i = 1; i < deltas.length; i++) assert.ok(deltas[i].ts - deltas[i - 1].ts >= 20, `frames ${deltas.map((d) => d.ts)}`);
      const msgs = await api(srv, 'GET', `/api/conversations/${c.id}/messages?after_seq=0`, { token: alice.token });
      assert.deepEqual(msgs.body.items.map((m) => m.seq), [1, 2]);
      assert.deepEqual(msgs.body.items[1], done.data.message);
      const after1 = await api(srv, 'GET', `/api/conversations/${c.id}/messages?after_seq=1`, { token: alice.token });
      assert.deepEqual(after1.body.items.map((m) => m.seq), [2]);
      assert.equal((await api(srv, 'GET', `/api/conversations/${c.id}`, { token: alice.token })).body.last_seq, 2);
      ws.close();
    });

    test('SSE: agent.delta events, then agent.done, then [DONE]; deltas concatenate to the stored reply', async () => {
      const c = await conversation();
      const r = await sse(srv, alice.token, c.id, `what about the ${unique}gamma protocol`);
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type'), /^text\/event-stream/);
      assert.equal(r.events.at(-1), '[DONE]');
      const evs = r.events.slice(0, -1).map((e) => JSON.parse(e));
      const done = evs.at(-1);
      assert.equal(done.type, 'agent.done');
      const deltas = evs.slice(0, -1);
      assert.ok(deltas.length >= 2);
      assert.ok(deltas.every((d) => d.type === 'agent.delta' && d.reply_id === done.message.id));
      assert.equal(deltas.map((d) => d.text).join(''), done.message.content);
      const stored = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: alice.token });
      assert.deepEqual(stored.body.items.at(-1), done.message);
    });

    test('Prefer: wait: 200 with the finished reply, or the 202 when it is not done in time', async () => {
      const c = await conversation();
      const r = await waitReply(alice, c.id, `the ${unique}gamma protocol`);
      const msgs = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: alice.token });
      assert.deepEqual(msgs.body.items, [r.message, r.reply]);
      // wait=0 is the plain 202
      const z = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: 'again' }, headers: { prefer: 'wait=0' } });
      assert.equal(z.status, 202);
      assert.ok(z.body.reply_id);
    });

    test('a client publish {text} on chat:<id> is a user message, acked with its seq', async () => {
      const c = await conversation();
      const ws = await WsClient.open(srv, alice.token);
      await ws.subscribe(`chat:${c.id}`);
      const ack = await ws.request({ type: 'publish', channel: `chat:${c.id}`, data: { text: `${unique}gamma over the socket` } });
      assert.equal(ack.type, 'ack', JSON.stringify(ack));
      assert.equal(ack.seq, 1);
      // delivered when the message committed, which may be before the ack
      const created = await until(() => ws.on(`chat:${c.id}`).find((m) => m.data.type === 'message.created'), 10000, 'message.created');
      assert.equal(created.seq, 1);
      assert.equal(created.data.message.content, `${unique}gamma over the socket`);
      const done = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      assert.equal(done.seq, 2);
      const bad = await ws.request({ type: 'publish', channel: `chat:${c.id}`, data: { text: '' } });
      assert.equal(bad.type, 'error');
      ws.close();
    });

    test('two messages at once: replies in order, consecutive seqs', async () => {
      const c = await conversation();
      const ws = await WsClient.open(srv, alice.token);
      await ws.subscribe(`chat:${c.id}`);
      const [a, b] = await Promise.all([
        api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: `first ${unique}gamma` } }),
        api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: 'second, nothing matches qqxv' } }),
      ]);
      assert.equal(a.status, 202);
      assert.equal(b.status, 202);
      const seqs = [a.body.message.seq, b.body.message.seq].sort();
      assert.deepEqual(seqs, [1, 2]);
      const first = a.body.message.seq === 1 ? a.body : b.body;
      const second = first === a.body ? b.body : a.body;
      const d1 = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      const d2 = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      assert.equal(d1.data.message.id, first.reply_id);
      assert.equal(d2.data.message.id, second.reply_id);
      assert.deepEqual([d1.seq, d2.seq], [3, 4]);
      // one reply at a time: every delta of the second reply comes after the first's done
      const frames = ws.on(`chat:${c.id}`);
      const firstDone = frames.findIndex((m) => m.data.type === 'agent.done');
      assert.ok(frames.slice(0, firstDone).every((m) => m.data.type !== 'agent.delta' || m.data.reply_id === first.reply_id));
      const msgs = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: alice.token });
      assert.deepEqual(msgs.body.items.map((m) => [m.seq, m.role]), [[1, 'user'], [2, 'user'], [3, 'assistant'], [4, 'assistant']]);
      ws.close();
    });

    test('20 concurrent conversations never mix deltas', async () => {
      const convs = await Promise.all(Array.from({ length: 20 }, () => conversation()));
      const ws = await WsClient.open(srv, alice.token);
      for (const c of convs) await ws.subscribe(`chat:${c.id}`);
      const posts = await Promise.all(convs.map((c, i) => api(srv, 'POST', `/api/conversations/${c.id}/messages`, {
        token: alice.token, body: { text: i % 2 ? `${unique}gamma ${i}` : `nothing matches ${i} qqxv` },
      })));
      assert.ok(posts.every((p) => p.status === 202));
      await until(() => convs.every((c) => ws.on(`chat:${c.id}`).some((m) => m.data.type === 'agent.done')), 30000, 'every reply');
      convs.forEach((c, i) => {
        const frames = ws.on(`chat:${c.id}`);
        const done = frames.find((m) => m.data.type === 'agent.done');
        const deltas = frames.filter((m) => m.data.type === 'agent.delta');
        assert.ok(deltas.every((d) => d.data.reply_id === posts[i].body.reply_id));
        assert.equal(deltas.map((d) => d.data.text).join(''), done.data.message.content);
        assert.equal(done.data.message.conversation_id, c.id);
      });
      ws.close();
    });

    test('reconnect mid-reply with since: the missed agent.done once, no duplicates', async () => {
      const c = await conversation();
      const ws = await WsClient.open(srv, alice.token);
      await ws.subscribe(`chat:${c.id}`);
      const post = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: `${unique}gamma and the protocol visits` } });
      const created = await ws.next((m) => m.type === 'message' && m.data.type === 'message.created');
      await ws.next((m) => m.type === 'message' && m.data.type === 'agent.delta');
      ws.close();
      await sleep(50);
      const ws2 = await WsClient.open(srv, alice.token);
      const sub = await ws2.subscribe(`chat:${c.id}`, { since: created.seq });
      assert.equal(sub.recovered, true);
      const done = await ws2.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      assert.equal(done.data.message.id, post.body.reply_id);
      await sleep(300);
      const seqd = ws2.on(`chat:${c.id}`).filter((m) => m.seq !== undefined);
      assert.deepEqual(seqd.map((m) => m.seq), [created.seq + 1], 'each seq once, nothing already seen');
      ws2.close();
    });

    test('the asking client leaving does not cancel the reply; deleting the conversation does', async () => {
      const c = await conversation();
      const ctl = new AbortController();
      const r = await srv.fetch(`/api/conversations/${c.id}/messages`, {
        method: 'POST', signal: ctl.signal,
        headers: { authorization: `Bearer ${alice.token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
        body: JSON.stringify({ text: `${unique}gamma, then I hang up` }),
      });
      assert.equal(r.status, 200);
      const reader = r.body.getReader();
      await reader.read();
      ctl.abort();
      const stored = await until(async () => {
        const m = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: alice.token });
        return m.body.items.length === 2 && m.body.items[1];
      }, 20000, 'the reply stored');
      assert.equal(stored.role, 'assistant');
      assert.ok(stored.content.length > 20);
      // deleting mid-reply: no agent.done, the wait answers, nothing left
      const c2 = await conversation();
      const ws = await WsClient.open(srv, alice.token);
      await ws.subscribe(`chat:${c2.id}`);
      const waiting = api(srv, 'POST', `/api/conversations/${c2.id}/messages`, { token: alice.token, body: { text: `${unique}gamma long answer` }, headers: { prefer: 'wait=30' } });
      await ws.next((m) => m.type === 'message' && m.data.type === 'agent.delta');
      assert.equal((await api(srv, 'DELETE', `/api/conversations/${c2.id}`, { token: alice.token })).status, 204);
      const w = await waiting;
      assert.equal(w.status, 202, JSON.stringify(w.body));
      await sleep(500);
      assert.ok(!ws.on(`chat:${c2.id}`).some((m) => m.data.type === 'agent.done'));
      assert.equal((await api(srv, 'GET', `/api/conversations/${c2.id}/messages`, { token: alice.token })).status, 404);
      ws.close();
    });

    test('voice: true with voice disabled leaves the text reply and says why', async () => {
      const c = await conversation();
      const post = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: alice.token, body: { text: `${unique}gamma aloud`, voice: true } });
      assert.equal(post.status, 202);
      const stored = await until(async () => {
        const m = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: alice.token });
        const last = m.body.items.at(-1);
        return last && last.role === 'assistant' && last.metadata && last.metadata.voice && last;
      }, 10000, 'voice metadata');
      assert.equal(stored.metadata.voice.status, 'disabled');
      assert.match(stored.metadata.voice.reason, /ELEVENLABS_API_KEY/);
      assert.equal(stored.audio_url, null);
      assert.ok(stored.content.length > 0);
    });

    test('export as JSON and Markdown attachments', async () => {
      const c = await conversation();
      const r = await waitReply(alice, c.id, `Export the ${unique}gamma notes`);
      const j = await srv.fetch(`/api/conversations/${c.id}/export?format=json`, { headers: { authorization: `Bearer ${alice.token}` } });
      assert.equal(j.status, 200);
      assert.match(j.headers.get('content-type'), /^application\/json/);
      assert.match(j.headers.get('content-disposition'), /^attachment; filename="conversation-[0-9a-f-]+\.json"$/);
      const doc = await j.json();
      assert.equal(doc.conversation.id, c.id);
      assert.equal(doc.agent.name, agent.name);
      assert.deepEqual(doc.messages, [r.message, r.reply]);
      const md = await srv.fetch(`/api/conversations/${c.id}/export?format=md`, { headers: { authorization: `Bearer ${alice.token}` } });
      assert.equal(md.status, 200);
      assert.match(md.headers.get('content-type'), /^text\/markdown/);
      assert.match(md.headers.get('content-disposition'), /^attachment; filename="conversation-[0-9a-f-]+\.md"$/);
      const text = await md.text();
      assert.ok(text.startsWith('# '));
      assert.ok(text.includes(`Export the ${unique}gamma notes`));
      assert.ok(text.includes(r.reply.content));
      assert.equal((await api(srv, 'GET', `/api/conversations/${c.id}/export?format=pdf`, { token: alice.token })).status, 400);
    });
  });
}
