// A deliberately minimal WebSocket client over a raw TCP socket, for tests
// that must send what a correct client library refuses to: unmasked frames,
// invalid UTF-8, oversized frames, reserved opcodes.
import net from 'node:net';
import { randomBytes } from 'node:crypto';

export function frame(opcode, payload, { mask = true, fin = true, rsv = 0 } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload ?? '');
  const len = data.length;
  let head;
  if (len < 126) head = Buffer.from([0, len]);
  else if (len < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(len, 2); }
  else { head = Buffer.alloc(10); head[1] = 127; head.writeBigUInt64BE(BigInt(len), 2); }
  head[0] = (fin ? 0x80 : 0) | (rsv << 4) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = randomBytes(4);
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = data[i] ^ key[i % 4];
  return Buffer.concat([head, key, masked]);
}

// Parse server frames out of a buffer: [{opcode, payload}], rest
export function parseFrames(buf) {
  const out = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const b0 = buf[off], b1 = buf[off + 1];
    let len = b1 & 0x7f, hl = 2;
    if (len === 126) { if (buf.length - off < 4) break; len = buf.readUInt16BE(off + 2); hl = 4; }
    else if (len === 127) { if (buf.length - off < 10) break; len = Number(buf.readBigUInt64BE(off + 2)); hl = 10; }
    if (b1 & 0x80) throw new Error('server frames must not be masked');
    if (buf.length - off < hl + len) break;
    out.push({ opcode: b0 & 0x0f, fin: !!(b0 & 0x80), payload: buf.subarray(off + hl, off + hl + len) });
    off += hl + len;
  }
  return { frames: out, rest: buf.subarray(off) };
}

export function closeCode(f) {
  return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
}

// Connect, do the handshake, collect frames. Resolves once the 101 arrived.
export function rawWs(port, path = '/ws', extraHeaders = '') {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const frames = [];
    const waiters = [];
    let closed = false;
    let error = null;
    const notify = () => { for (const w of waiters.splice(0)) w(); };
    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 101')) { sock.destroy(); reject(new Error('handshake failed: ' + head)); return; }
        upgraded = true;
        resolve(client);
      }
      const { frames: fs, rest } = parseFrames(buf);
      buf = Buffer.from(rest);
      frames.push(...fs);
      notify();
    });
    sock.on('close', () => { closed = true; notify(); });
    sock.on('error', (e) => { error = e; if (!upgraded) reject(e); });
    const client = {
      sock, frames,
      get closed() { return closed; },
      // the socket error that ended it (ECONNRESET...), or null
      get error() { return error; },
      // bytes received after the last whole frame (a truncated frame if the stream ended here)
      get rest() { return buf.length; },
      send(b) { sock.write(b); },
      // wait until pred(frames) is truthy or the socket closed
      async until(pred, ms = 5000) {
        const deadline = Date.now() + ms;
        for (;;) {
          const v = pred(frames);
          if (v) return v;
          if (closed) return pred(frames);
          if (Date.now() > deadline) throw new Error('timeout; frames: ' + JSON.stringify(frames.map((f) => [f.opcode, f.payload.toString()])));
          await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
        }
      },
      async closeFrame(ms = 5000) { return client.until((fs) => fs.find((f) => f.opcode === 8), ms); },
      json() { return frames.filter((f) => f.opcode === 1).map((f) => JSON.parse(f.payload.toString())); },
      end() { sock.destroy(); },
    };
  });
}
