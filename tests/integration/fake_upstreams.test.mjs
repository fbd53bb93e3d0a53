// The fake upstreams themselves (tests/integration/lib/fake_upstreams.mjs):
// they must speak the real wire formats, or tests built on them prove
// nothing. The LLM fake is for the chat agents; checked here over plain HTTP.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakeLLM, startFakeElevenLabs, isMp3, mp3Frames } from './lib/fake_upstreams.mjs';

// Minimal SSE reader: [{event, data}].
function parseSSE(text) {
  const out = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    let event = 'message', data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const k = i < 0 ? line : line.slice(0, i), v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (k === 'event') event = v;
      else if (k === 'data') data.push(v);
    }
    if (data.length) out.push({ event, data: data.join('\n') });
  }
  return out;
}

test('the LLM fake streams OpenAI chat/completions: deltas, finish, usage chunk, [DONE]', async () => {
  const llm = await startFakeLLM({ apiKey: 'k1', reply: 'Implants last decades.', usage: { input: 12, output: 4 } });
  try {
    const r = await fetch(`${llm.url}/v1/chat/completions`, {
      method: 'POST', headers: { authorization: 'Bearer k1', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const ev = parseSSE(await r.text());
    assert.equal(ev.at(-1).data, '[DONE]');
    const chunks = ev.slice(0, -1).map((e) => JSON.parse(e.data));
    const text = chunks.flatMap((c) => c.choices.map((x) => x.delta.content || '')).join('');
    assert.equal(text, 'Implants last decades.');
    assert.deepEqual(chunks.at(-1).choices, []);
    assert.equal(chunks.at(-1).usage.prompt_tokens, 12);
    assert.equal(chunks.at(-1).usage.completion_tokens, 4);
    assert.equal((await fetch(`${llm.url}/v1/chat/completions`, { method: 'POST', body: '{}' })).status, 401);
    assert.equal(llm.count, 2);
  } finally {
    await llm.close();
  }
});

test('the LLM fake streams Anthropic messages: message_start, content_block_delta, message_delta, message_stop', async () => {
  const llm = await startFakeLLM({ apiKey: 'k2', reply: 'Veneers cost more.', usage: { input: 9, output: 3 } });
  try {
    const r = await fetch(`${llm.url}/v1/messages`, {
      method: 'POST', headers: { 'x-api-key': 'k2', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const ev = parseSSE(await r.text());
    const types = [...new Set(ev.map((e) => e.event))];
    assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    for (const e of ev) assert.equal(JSON.parse(e.data).type, e.event);
    const text = ev.filter((e) => e.event === 'content_block_delta').map((e) => JSON.parse(e.data).delta.text).join('');
    assert.equal(text, 'Veneers cost more.');
    assert.equal(JSON.parse(ev[0].data).message.usage.input_tokens, 9);
    assert.equal(JSON.parse(ev.find((e) => e.event === 'message_delta').data).usage.output_tokens, 3);
  } finally {
    await llm.close();
  }
});

test('the fakes are scriptable: errors with Retry-After, drops, down', async () => {
  const llm = await startFakeLLM({});
  const el = await startFakeElevenLabs({});
  try {
    llm.script({ status: 429, retryAfter: 3 });
    const r = await fetch(`${llm.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '3');
    assert.equal((await r.json()).error.code, 'rate_limit_exceeded');
    llm.script({ drop: 'body' });
    await assert.rejects(async () => {
      const d = await fetch(`${llm.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
      await d.text();
    });
    const a = await fetch(`${el.url}/v1/text-to-speech/v1`, { method: 'POST', body: '{"text":"hello there"}' });
    assert.ok(isMp3(Buffer.from(await a.arrayBuffer())));
    assert.ok(!isMp3(Buffer.concat([mp3Frames(2), Buffer.from('x')])));
    await el.down();
    await assert.rejects(fetch(`${el.url}/v1/text-to-speech/v1`, { method: 'POST', body: '{"text":"x"}' }));
    await el.up();
    assert.equal((await fetch(`${el.url}/v1/text-to-speech/v1`, { method: 'POST', body: '{"text":"x"}' })).status, 200);
  } finally {
    await llm.close();
    await el.close();
  }
});
