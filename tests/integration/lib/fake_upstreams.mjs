// Fake upstreams for black-box tests: local HTTP servers on 127.0.0.1 that
// speak the real wire formats, scriptable per test, counting their calls.
//
//   const el = await startFakeElevenLabs({ apiKey });
//   el.url                       // ELEVENLABS_BASE_URL for the server
//   el.calls                     // [{path, voiceId, headers, body, at}] in arrival order
//   el.inFlight, el.maxInFlight  // concurrency the fake saw
//   el.script({ status: 500 })   // every next call; or el.queue({...}, {...}) for the next ones
//   el.down() / await el.up()    // connection refused / listening again on the same port
//   await el.close()
//
//   const llm = await startFakeLLM({ apiKey, reply: 'Hello there', usage: {input: 12, output: 3} });
//   POST /v1/chat/completions (OpenAI-compatible, SSE when stream: true) and
//   POST /v1/messages (Anthropic SSE); llm.url is LLM_BASE_URL (ends in /v1).
//
// A behaviour is an object:
//   status          HTTP status (default 200); 4xx/5xx carry the provider's error JSON
//   delayMs         wait before the head
//   stall           'head' (never answer) | 'body' (send the head and part of the body, then nothing)
//   drop            'head' (close before answering) | 'body' (close mid-body)
//   tokenDelayMs    LLM: pause between stream chunks
//   streamError     LLM: a 200 stream that is only an error event with this message
//   retryAfter      seconds, sent as Retry-After with 429/503
//   audioFrames     ElevenLabs: number of MPEG frames (default from the text length)
import http from 'node:http';

// ---- MPEG-1 Layer III audio ----
// A frame header FF FB 90 C4: sync, MPEG-1, Layer III, no CRC, 128 kbit/s,
// 44.1 kHz, no padding, mono. 144 * 128000 / 44100 = 417 bytes per frame. The
// side information and main data are zero: a valid frame of silence, which
// decoders play as 26 ms of nothing. Generated here; no recorded audio.
export const MP3_FRAME_BYTES = 417;
export function mp3Frames(n) {
  const frame = Buffer.alloc(MP3_FRAME_BYTES);
  frame[0] = 0xff; frame[1] = 0xfb; frame[2] = 0x90; frame[3] = 0xc4;
  return Buffer.concat(Array.from({ length: n }, () => frame));
}
// True if buf is a whole number of such frames, each starting with a valid header.
export function isMp3(buf) {
  if (!buf || buf.length < MP3_FRAME_BYTES || buf.length % MP3_FRAME_BYTES) return false;
  for (let o = 0; o < buf.length; o += MP3_FRAME_BYTES) {
    if (buf[o] !== 0xff || (buf[o + 1] & 0xe0) !== 0xe0) return false;
    if (((buf[o + 1] >> 3) & 3) !== 3 || ((buf[o + 1] >> 1) & 3) !== 1) return false;  // MPEG-1, Layer III
  }
  return true;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function base({ name, handler }) {
  const state = {
    calls: [], inFlight: 0, maxInFlight: 0, behaviour: {}, queued: [], sockets: new Set(), port: 0,
  };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch { body = raw; }
    const b = state.queued.length ? state.queued.shift() : state.behaviour;
    const call = { path: req.url, method: req.method, headers: req.headers, body, at: Date.now(), t0: performance.now() };
    state.calls.push(call);
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    res.on('close', () => { state.inFlight--; });
    res.on('finish', () => { call.t1 = performance.now(); });
    try {
      if (b.drop === 'head') { req.socket.destroy(); return; }
      if (b.stall === 'head') return;   // never answers; closed by the client or close()
      if (b.delayMs) await sleep(b.delayMs);
      await handler(req, res, call, b);
    } catch (e) {
      if (!res.headersSent) { res.writeHead(500); res.end(String(e)); }
    }
  });
  server.keepAliveTimeout = 30000;
  server.on('connection', (s) => { state.sockets.add(s); s.on('close', () => state.sockets.delete(s)); });
  const listen = (port) => new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); state.port = server.address().port; resolve(); });
  });
  const fake = {
    name,
    get port() { return state.port; },
    get url() { return `http://127.0.0.1:${state.port}`; },
    get calls() { return state.calls; },
    get count() { return state.calls.length; },
    get inFlight() { return state.inFlight; },
    get maxInFlight() { return state.maxInFlight; },
    script(b = {}) { state.behaviour = b; state.queued = []; return fake; },
    queue(...bs) { state.queued.push(...bs); return fake; },
    reset() { state.calls = []; state.maxInFlight = state.inFlight; return fake; },
    // Connection refused: stop listening and cut every connection.
    async down() {
      await new Promise((r) => { server.close(() => r()); for (const s of state.sockets) s.destroy(); });
    },
    async up() { await listen(state.port); },
    async close() {
      await new Promise((r) => { server.close(() => r()); for (const s of state.sockets) s.destroy(); });
    },
  };
  return { fake, listen };
}

function errorBody(kind, status) {
  if (kind === 'elevenlabs') {
    if (status === 401) return { detail: { status: 'invalid_api_key', message: 'Invalid API key' } };
    if (status === 404) return { detail: { status: 'voice_not_found', message: 'A voice with the voice_id was not found.' } };
    if (status === 429) return { detail: { status: 'too_many_concurrent_requests', message: 'Too many concurrent requests' } };
    return { detail: { status: 'internal_error', message: 'Internal server error' } };
  }
  if (kind === 'anthropic') {
    const type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : status === 529 ? 'overloaded_error' : 'api_error';
    return { type: 'error', error: { type, message: `fake ${type}` } };
  }
  const code = status === 401 ? 'invalid_api_key' : status === 429 ? 'rate_limit_exceeded' : 'server_error';
  return { error: { message: `fake ${code}`, type: code, code } };
}

function sendError(res, kind, b) {
  const headers = { 'content-type': 'application/json' };
  if (b.retryAfter) headers['retry-after'] = String(b.retryAfter);
  res.writeHead(b.status, headers);
  res.end(JSON.stringify(errorBody(kind, b.status)));
}

// ---- ElevenLabs ----
export async function startFakeElevenLabs({ apiKey, port = 0, knownVoices = null } = {}) {
  const { fake, listen } = base({
    name: 'elevenlabs',
    handler: async (req, res, call, b) => {
      const m = req.url.match(/^\/v1\/text-to-speech\/([A-Za-z0-9_-]+)(\?.*)?$/);
      call.voiceId = m ? m[1] : null;
      if (req.method !== 'POST' || !m) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"detail":"Not Found"}'); return; }
      if (apiKey && req.headers['xi-api-key'] !== apiKey) return sendError(res, 'elevenlabs', { status: 401 });
      if (knownVoices && !knownVoices.includes(call.voiceId)) return sendError(res, 'elevenlabs', { status: 404 });
      if (b.status && b.status !== 200) return sendError(res, 'elevenlabs', b);
      const text = call.body && typeof call.body.text === 'string' ? call.body.text : '';
      if (!text) return sendError(res, 'elevenlabs', { status: 422 });
      const audio = mp3Frames(b.audioFrames || Math.max(2, Math.min(200, Math.ceil(text.length / 10))));
      if (b.stall === 'body' || b.drop === 'body') {
        res.writeHead(200, { 'content-type': 'audio/mpeg', 'content-length': String(audio.length) });
        res.write(audio.subarray(0, MP3_FRAME_BYTES));
        if (b.drop === 'body') setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      res.writeHead(200, { 'content-type': 'audio/mpeg', 'content-length': String(audio.length) });
      res.end(audio);
    },
  });
  await listen(port);
  return fake;
}

// ---- LLM (OpenAI-compatible chat/completions and Anthropic messages) ----
export async function startFakeLLM({ apiKey, port = 0, reply = 'Hello from the fake model.', usage = { input: 11, output: 7 } } = {}) {
  let text = reply;
  const { fake, listen } = base({
    name: 'llm',
    handler: async (req, res, call, b) => {
      const isOpenAI = req.url.startsWith('/v1/chat/completions');
      const isAnthropic = req.url.startsWith('/v1/messages');
      const kind = isAnthropic ? 'anthropic' : 'openai';
      if (req.method !== 'POST' || (!isOpenAI && !isAnthropic)) { res.writeHead(404); res.end(); return; }
      const key = isAnthropic ? req.headers['x-api-key'] : (req.headers.authorization || '').replace(/^Bearer /, '');
      if (apiKey && key !== apiKey) return sendError(res, kind, { status: 401 });
      if (b.status && b.status !== 200) return sendError(res, kind, b);
      const pieces = (b.reply ?? text).match(/\S+\s*/g) || [];
      const stream = !!(call.body && call.body.stream);
      const model = (call.body && call.body.model) || 'fake-model';
      const id = `fake-${fake.count}`;
      if (!stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        const all = pieces.join('');
        res.end(JSON.stringify(isOpenAI
          ? { id, object: 'chat.completion', model, choices: [{ index: 0, message: { role: 'assistant', content: all }, finish_reason: 'stop' }],
            usage: { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output } }
          : { id, type: 'message', role: 'assistant', model, content: [{ type: 'text', text: all }], stop_reason: 'end_turn',
            usage: { input_tokens: usage.input, output_tokens: usage.output } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      if (b.streamError) {
        res.end(isOpenAI
          ? `data: ${JSON.stringify({ error: { message: b.streamError, type: 'server_error', param: null, code: null } })}\n\n`
          : `event: error\ndata: ${JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: b.streamError } })}\n\n`);
        return;
      }
      const events = [];
      if (isOpenAI) {
        const chunk = (delta, finish = null) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', model, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        events.push(chunk({ role: 'assistant', content: '' }));
        for (const p of pieces) events.push(chunk({ content: p }));
        events.push(chunk({}, 'stop'));
        // stream_options.include_usage: a last chunk with empty choices and the usage
        events.push(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', model, choices: [],
          usage: { prompt_tokens: usage.input, completion_tokens: usage.output, total_tokens: usage.input + usage.output } })}\n\n`);
        events.push('data: [DONE]\n\n');
      } else {
        const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
        events.push(ev('message_start', { message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null,
          usage: { input_tokens: usage.input, output_tokens: 1 } } }));
        events.push(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
        events.push(': keep-alive comment\n\n');
        for (const p of pieces) events.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } }));
        events.push(ev('content_block_stop', { index: 0 }));
        events.push(ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.output } }));
        events.push(ev('message_stop', {}));
      }
      const cut = Math.max(1, Math.floor(events.length / 2));
      for (let i = 0; i < events.length; i++) {
        if (res.destroyed) return;
        if (i === cut && b.stall === 'body') return;          // stalls mid-body, never ends
        if (i === cut && b.drop === 'body') { req.socket.destroy(); return; }
        res.write(events[i]);
        if (b.tokenDelayMs) await sleep(b.tokenDelayMs);
      }
      res.end();
    },
  });
  await listen(port);
  fake.setReply = (r) => { text = r; return fake; };
  return fake;
}
