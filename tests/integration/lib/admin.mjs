// Accounts for tests that need an admin: `osbackend create-user` against the
// server's SQLITE_PATH (password on stdin), then POST /api/auth/login.
import { randomBytes, createHmac, randomUUID } from 'node:crypto';
import { runBinary } from './server.mjs';

export const password = () => `pw-${randomBytes(8).toString('hex')}-long`;
export const uniqueEmail = (tag) => `${tag}-${randomBytes(6).toString('hex')}@example.test`;

// Create an account with `role` in the database the server `env` points at.
// Run before the server starts or while it runs (SQLite WAL copes).
export async function createUser(env, role = 'admin') {
  const email = uniqueEmail(role), pw = password();
  const r = await runBinary(['create-user', '--email', email, '--role', role], { env, input: `${pw}\n` });
  if (r.code !== 0) throw new Error(`create-user failed (${r.code}): ${r.stderr}`);
  return { email, password: pw, user: JSON.parse(r.stdout.trim()) };
}

export async function login(srv, email, pw) {
  const res = await srv.fetch('/api/auth/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: pw }),
  });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${await res.text()}`);
  return res.json();
}

// An access token signed like src/auth/auth.c (HS256, iss "osbackend") with
// any `exp`, for tests that need a token about to expire. The server allows
// 60 s of clock skew on exp.
export function mintToken(secret, { sub, email, role = 'user', exp, iat }) {
  const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const h = b64u({ alg: 'HS256', typ: 'JWT' });
  const p = b64u({ sub, email, role, iat: iat ?? now, exp: exp ?? now + 900, iss: 'osbackend', jti: randomUUID() });
  const s = createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url');
  return `${h}.${p}.${s}`;
}
