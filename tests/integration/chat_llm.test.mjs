// Chat replies from an LLM, against the fake of tests/integration/lib/
// fake_upstreams.mjs, on SQLite and PostgreSQL: both wire formats (OpenAI
// chat/completions and Anthropic messages, streamed), the request the
// provider sees (system prompt, context, max_tokens, key header), deltas
// that concatenate to the stored reply, usage from the provider's counts,
// a 500 that opens the breaker (then the fake sees no call and the
// knowledge base answers, agents:status says so), a provider error message
// cut short without splitting a character, a stream dropped mid-way
// (the text so far kept with status error), coalescing of fast tokens, and
// voice on replies through the fake ElevenLabs (audio_url, message.audio; a
// failing voice leaves the text intact and says why).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, randomKey } from './lib/server.mjs';
import { api, register, WsClient, BACKENDS, backendEnv, sleep, until } from './lib/apps.mjs';
import { startFakeLLM, startFakeElevenLabs, isMp3 } from './lib/fake_upstreams.mjs';

const OBJECTION_COACH = 'a0000000-0000-4000-8000-000000000003';
const REPLY = 'Acknowledge the concern, then show what the system pays back each month in extra cases and saved chair time.';

async function setup(backend, provider, extra = {}) {
  const key = `sk-test-${randomKey(8)}`;
  const llm = await startFakeLLM({ apiKey: key, reply: REPLY, usage: { input: 11, output: 7 } });
  const srv = await startServer({ env: backendEnv(backend, {
    LLM_PROVIDER: provider, LLM_API_KEY: key, LLM_BASE_URL: `${llm.url}/v1`, LLM_MODEL: 'fake-model-1',
    LLM_MAX_TOKENS: '321', LLM_CONTEXT_MESSAGES: '2', ...extra,
  }) });
  const user = await register(srv, 'rep');
  const conv = async () => {
    const r = await api(srv, 'POST', '/api/conversations', { token: user.token, body: { agent_id: OBJECTION_COACH } });
    assert.equal(r.status, 201);
    return r.body;
  };
  return { key, llm, srv, user, conv };
}

const waitReply = async (srv, user, convId, text) => {
  const r = await api(srv, 'POST', `/api/conversations/${convId}/messages`, { token: user.token, body: { text }, headers: { prefer: 'wait=30' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};

for (const backend of BACKENDS) {
  for (const provider of ['openai', 'anthropic']) {
    describe(`chat with an LLM: ${provider} (${backend})`, () => {
      let t;
      before(async () => { t = await setup(backend, provider); });
      after(async () => { await t.srv.stop(); await t.llm.close(); });

      test('the reply streams over WebSocket and SSE; deltas concatenate to the stored agent.done', async () => {
        const { srv, user, llm, key } = t;
        const c = await t.conv();
        const ws = await WsClient.open(srv, user.token);
        await ws.subscribe(`chat:${c.id}`);
        llm.reset();
        const post = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: user.token, body: { text: 'The owner says it is too expensive.' } });
        assert.equal(post.status, 202);
        const done = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
        const deltas = ws.on(`chat:${c.id}`).filter((m) => m.data.type === 'agent.delta');
        assert.ok(deltas.length >= 1);
        assert.equal(deltas.map((d) => d.data.text).join(''), done.data.message.content);
        assert.equal(done.data.message.content, REPLY);
        assert.equal(done.data.message.fallback, false);
        assert.equal(done.data.message.status, 'done');
        assert.equal(done.data.message.metadata.source, provider);
        ws.close();
        // what the provider saw
        assert.equal(llm.count, 1);
        const call = llm.calls[0];
        assert.equal(call.path, provider === 'openai' ? '/v1/chat/completions' : '/v1/messages');
        assert.equal(call.body.stream, true);
        assert.equal(call.body.model, 'fake-model-1');
        assert.equal(call.body.max_tokens, 321);
        if (provider === 'openai') {
          assert.equal(call.headers.authorization, `Bearer ${key}`);
          assert.deepEqual(call.body.stream_options, { include_usage: true });
          assert.equal(call.body.messages[0].role, 'system');
          assert.match(call.body.messages[0].content, /objections/);
          assert.deepEqual(call.body.messages.at(-1), { role: 'user', content: 'The owner says it is too expensive.' });
        } else {
          assert.equal(call.headers['x-api-key'], key);
          assert.ok(call.headers['anthropic-version']);
          assert.match(call.body.system, /objections/);
          assert.deepEqual(call.body.messages, [{ role: 'user', content: 'The owner says it is too expensive.' }]);
        }
        // SSE
        const r = await srv.fetch(`/api/conversations/${c.id}/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${user.token}`, 'content-type': 'application/json', accept: 'text/event-stream' },
          body: JSON.stringify({ text: 'And if they want a discount?' }),
        });
        assert.equal(r.status, 200);
        const events = (await r.text()).split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
        assert.equal(events.at(-1), '[DONE]');
        const evs = events.slice(0, -1).map((e) => JSON.parse(e));
        assert.equal(evs.at(-1).type, 'agent.done');
        assert.equal(evs.slice(0, -1).map((e) => e.text).join(''), evs.at(-1).message.content);
        assert.equal(evs.at(-1).message.content, REPLY);
        // context: LLM_CONTEXT_MESSAGES=2 earlier messages, then the new one
        const second = llm.calls.at(-1).body.messages.filter((m) => m.role !== 'system');
        if (provider === 'openai') {
          assert.deepEqual(second, [
            { role: 'user', content: 'The owner says it is too expensive.' },
            { role: 'assistant', content: REPLY },
            { role: 'user', content: 'And if they want a discount?' },
          ]);
        } else {
          assert.equal(second.length, 3);
          assert.equal(second.at(-1).content, 'And if they want a discount?');
        }
      });

      test('Prefer: wait answers with the finished reply; usage counts the provider\'s tokens', async () => {
        const { srv, user } = t;
        const before = (await api(srv, 'GET', '/api/usage', { token: user.token })).body.totals.llm_tokens;
        const c = await t.conv();
        const r = await waitReply(srv, user, c.id, 'How do I open the call?');
        assert.equal(r.reply.content, REPLY);
        assert.equal(r.reply.fallback, false);
        assert.deepEqual(r.reply.metadata.tokens, { input: 11, output: 7 });
        const u = await until(async () => {
          const x = await api(srv, 'GET', '/api/usage', { token: user.token });
          return x.body.totals.llm_tokens >= before + 18 && x;
        }, 5000, 'usage');
        assert.equal(u.body.totals.llm_tokens, before + 18);
      });

      test('a stream dropped mid-way keeps the text so far, with status error', async () => {
        const { srv, user, llm } = t;
        const c = await t.conv();
        llm.queue({ drop: 'body', tokenDelayMs: 5 });   // paced, so the first half reaches us before the cut
        const r = await waitReply(srv, user, c.id, 'Tell me everything.');
        assert.equal(r.reply.status, 'error');
        assert.equal(r.reply.fallback, false);
        assert.ok(r.reply.content.length > 0);
        assert.ok(REPLY.startsWith(r.reply.content), r.reply.content);
        assert.ok(r.reply.content.length < REPLY.length);
        assert.ok(r.reply.metadata.error);
      });
    });
  }

  describe(`chat with a failing LLM (${backend})`, () => {
    let t;
    before(async () => {
      t = await setup(backend, 'openai', { BREAKER_MIN_CALLS: '3', BREAKER_FAILURE_RATE: '50', BREAKER_OPEN_MS: '600000' });
    });
    after(async () => { await t.srv.stop(); await t.llm.close(); });

    test('500s fall back to knowledge, open the breaker, and then the fake sees no call', async () => {
      const { srv, user, llm } = t;
      const ws = await WsClient.open(srv, user.token);
      await ws.subscribe('agents:status');
      llm.script({ status: 500 });
      llm.reset();
      const c = await t.conv();
      for (let i = 0; i < 3; i++) {
        const r = await waitReply(srv, user, c.id, 'The owner wants a discount on the price.');
        assert.equal(r.reply.fallback, true);
        assert.match(r.reply.content, /discount/i);
        assert.match(r.reply.metadata.fallback_reason, /openai/);
      }
      assert.equal(llm.count, 3);
      await ws.next((m) => m.type === 'message' && m.data.type === 'upstream.state' && m.data.upstream === 'llm' && m.data.state === 'open');
      const st = await ws.next((m) => m.type === 'message' && m.data.type === 'agents.status' && m.data.degraded === true);
      assert.ok(st.data.reason);
      const status = await api(srv, 'GET', '/api/agents/status', { token: user.token });
      assert.equal(status.body.degraded, true);
      assert.equal(status.body.llm.breaker, 'open');
      llm.script({});   // healthy again, but the breaker is open: no call
      const r = await waitReply(srv, user, c.id, 'What if they say not now?');
      assert.equal(r.reply.fallback, true);
      assert.match(r.reply.metadata.fallback_reason, /open|unavailable/i);
      assert.equal(llm.count, 3, 'no call reached the fake while the breaker is open');
      ws.close();
    });
  });

  describe(`a provider error message cut short (${backend})`, () => {
    let t;
    before(async () => { t = await setup(backend, 'openai', { BREAKER_MIN_CALLS: '1000' }); });
    after(async () => { await t.srv.stop(); await t.llm.close(); });

    test('the fallback reason keeps whole characters: stored metadata, agents.status, GET /api/agents/status', async () => {
      const { srv, user, llm } = t;
      const ws = await WsClient.open(srv, user.token);
      await ws.subscribe('agents:status');
      // "openai: provider error: " + 200 bytes of é, cut to the reason's 159
      // bytes: inside an é, which goes with the cut
      llm.queue({ streamError: '\u00e9'.repeat(100) });
      const c = await t.conv();
      const r = await waitReply(srv, user, c.id, 'The owner wants a discount on the price.');
      assert.equal(r.reply.fallback, true);
      const why = `openai: provider error: ${'\u00e9'.repeat(67)}`;
      assert.equal(r.reply.metadata.fallback_reason, why);
      const st = await ws.next((m) => m.type === 'message' && m.data.type === 'agents.status' && m.data.degraded === true);
      assert.equal(st.data.reason, why);
      const status = await api(srv, 'GET', '/api/agents/status', { token: user.token });
      assert.equal(status.status, 200);
      assert.equal(status.body.degraded, true);
      assert.equal(status.body.reason, why);
      ws.close();
    });
  });

  describe(`chat LLM deltas are coalesced (${backend})`, () => {
    let t;
    const long = Array.from({ length: 60 }, (_, i) => `tok${i}`).join(' ');
    before(async () => { t = await setup(backend, 'openai'); t.llm.setReply(long); });
    after(async () => { await t.srv.stop(); await t.llm.close(); });

    test('a fast model is not one frame per token; frames at most one per ~30 ms', async () => {
      const { srv, user, llm } = t;
      llm.script({ tokenDelayMs: 3 });
      const c = await t.conv();
      const ws = await WsClient.open(srv, user.token);
      await ws.subscribe(`chat:${c.id}`);
      await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: user.token, body: { text: 'go' } });
      const done = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      const deltas = ws.on(`chat:${c.id}`).filter((m) => m.data.type === 'agent.delta');
      assert.equal(deltas.map((d) => d.data.text).join(''), done.data.message.content);
      assert.equal(done.data.message.content, long);
      assert.ok(deltas.length < 40, `${deltas.length} frames for 60 tokens`);
      for (let i = 1; i < deltas.length; i++) assert.ok(deltas[i].ts - deltas[i - 1].ts >= 20);
      ws.close();
    });
  });
}

for (const backend of BACKENDS) {
  describe(`voice on replies (${backend})`, () => {
    let t, el;
    before(async () => {
      const elKey = `el-${randomKey(8)}`;
      el = await startFakeElevenLabs({ apiKey: elKey });
      t = await setup(backend, 'openai', { ELEVENLABS_API_KEY: elKey, ELEVENLABS_BASE_URL: el.url, BREAKER_MIN_CALLS: '1000' });
    });
    after(async () => { await t.srv.stop(); await t.llm.close(); await el.close(); });

    test('voice: true → after agent.done the message gains a playable audio_url and message.audio follows', async () => {
      const { srv, user } = t;
      const c = await t.conv();
      const ws = await WsClient.open(srv, user.token);
      await ws.subscribe(`chat:${c.id}`);
      const spoken = `Spoken answer ${randomKey(4)}, fresh for the cache.`;
      t.llm.queue({ reply: spoken });
      const post = await api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: user.token, body: { text: 'Say it out loud', voice: true } });
      assert.equal(post.status, 202);
      const done = await ws.next((m) => m.type === 'message' && m.data.type === 'agent.done', 20000);
      const audio = await ws.next((m) => m.type === 'message' && m.data.type === 'message.audio', 20000);
      assert.equal(audio.seq, undefined);
      assert.equal(audio.data.message_id, done.data.message.id);
      assert.match(audio.data.audio_url, /^\/api\/voice\/audio\/[0-9a-f]{64}$/);
      const a = await srv.fetch(audio.data.audio_url, { headers: { authorization: `Bearer ${user.token}` } });
      assert.equal(a.status, 200);
      assert.equal(a.headers.get('content-type'), 'audio/mpeg');
      assert.ok(isMp3(Buffer.from(await a.arrayBuffer())));
      assert.equal(el.calls.at(-1).body.text, spoken);
      const msgs = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: user.token });
      const stored = msgs.body.items.at(-1);
      assert.equal(stored.audio_url, audio.data.audio_url);
      assert.equal(stored.metadata.voice.status, 'ok');
      assert.equal(stored.content, spoken);
      ws.close();
    });

    test('a failing voice keeps the text reply and says why', async () => {
      const { srv, user } = t;
      el.script({ status: 500 });
      const spoken = `Unspeakable answer ${randomKey(4)}.`;
      t.llm.queue({ reply: spoken });
      const c = await t.conv();
      const r = (await api(srv, 'POST', `/api/conversations/${c.id}/messages`, {
        token: user.token, body: { text: 'Say it again', voice: true }, headers: { prefer: 'wait=30' },
      })).body;
      const stored = await until(async () => {
        const m = await api(srv, 'GET', `/api/conversations/${c.id}/messages`, { token: user.token });
        const last = m.body.items.at(-1);
        return last.metadata && last.metadata.voice && last;
      }, 10000, 'voice metadata');
      assert.equal(stored.id, r.reply.id);
      assert.equal(stored.content, spoken);
      assert.equal(stored.audio_url, null);
      assert.equal(stored.metadata.voice.status, 'failed');
      assert.ok(stored.metadata.voice.reason);
      el.script({});
    });
  });
}

// 200 replies streaming at once (a fake at ~50 tokens/s) while /health is
// probed: the probes stay fast and every reply arrives whole and unmixed.
// SQLite only: the streaming path is the same on both backends.
describe('chat: /health while 200 replies stream', () => {
  let t;
  const reply = Array.from({ length: 25 }, (_, i) => `w${i}`).join(' ');
  before(async () => {
    t = await setup('sqlite', 'openai', { MAX_CONNECTIONS_PER_IP: '0', LLM_MAX_CONCURRENCY: '256', BREAKER_SLOW_CALL_MS: '60000', UPSTREAM_TIMEOUT_MS: '30000' });
    t.llm.setReply(reply);
    t.llm.script({ tokenDelayMs: 20 });
  });
  after(async () => { await t.srv.stop(); await t.llm.close(); });

  test('/health p99 stays low; 200 replies complete, each with its own deltas', async () => {
    const { srv, user } = t;
    const convs = await Promise.all(Array.from({ length: 200 }, () => t.conv()));
    // four connections (at most 100 subscriptions each)
    const wss = await Promise.all([0, 1, 2, 3].map(() => WsClient.open(srv, user.token)));
    const wsOf = (i) => wss[i % 4];
    for (let i = 0; i < convs.length; i++) await wsOf(i).subscribe(`chat:${convs[i].id}`);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const probe = () => new Promise((resolve) => {
      const t0 = performance.now();
      http.get({ host: '127.0.0.1', port: srv.port, path: '/health', agent }, (r) => { r.resume(); r.on('end', () => resolve(performance.now() - t0)); })
        .on('error', () => resolve(Infinity));
    });
    const idle = [];
    for (let i = 0; i < 50; i++) idle.push(await probe());
    // posted 25 at a time (200 writes at once on the one SQLite writer can
    // outwait DB_ACQUIRE_TIMEOUT_MS under a sanitizer: a 503 the client retries)
    const posts = [];
    for (let k = 0; k < convs.length; k += 25) {
      posts.push(...await Promise.all(convs.slice(k, k + 25).map((c, j) =>
        api(srv, 'POST', `/api/conversations/${c.id}/messages`, { token: user.token, body: { text: `stream ${k + j}` } }))));
    }
    assert.deepEqual(posts.filter((p) => p.status !== 202).map((p) => p.status), []);
    const busy = [];
    let done = false;
    const doneAll = until(() => convs.every((c, i) => wsOf(i).on(`chat:${c.id}`).some((m) => m.data.type === 'agent.done')), 60000, 'all replies')
      .finally(() => { done = true; });
    while (!done) { busy.push(await probe()); await sleep(5); }
    await doneAll;
    const p99 = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length * 0.99)];
    assert.ok(busy.length >= 20, `${busy.length} probes`);
    // generous: a sanitizer build on shared cores; the benchmark has the real figure
    assert.ok(p99(busy) < 250, `/health p99 ${p99(busy).toFixed(1)} ms while streaming (idle ${p99(idle).toFixed(1)} ms)`);
    convs.forEach((c, i) => {
      const frames = wsOf(i).on(`chat:${c.id}`);
      const d = frames.find((m) => m.data.type === 'agent.done');
      assert.equal(d.data.message.content, reply);
      assert.equal(frames.filter((m) => m.data.type === 'agent.delta' && m.data.reply_id === posts[i].body.reply_id)
        .map((m) => m.data.text).join(''), reply);
      assert.ok(frames.every((m) => m.data.type !== 'agent.delta' || m.data.reply_id === posts[i].body.reply_id));
    });
    for (const w of wss) w.close();
  });
});
