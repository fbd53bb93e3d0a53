// dashboard.js: the /dashboard page (docs/dashboard.md). Holds no data of
// its own: signs in (the SSO cookie, or the form), reads the last 2 minutes
// from GET /api/dashboard/history, then follows `dashboard:metrics` through
// /client.js. Every figure sits in an element whose data-metric attribute is
// its path in the message; data-value holds the raw number.
import { connect } from '/client.js';

const HISTORY_MS = 120000;
const $ = (id) => document.getElementById(id);

const session = { access: null, refresh: null, user: null, viaCookie: false };
let rt = null;
let sub = null;
let samples = [];        // [{seq, data}] ascending, at most 2 minutes
let everOpen = false;

// ---- auth ----

function csrfCookie() {
  const m = /(?:^|;\s*)osb_csrf=([^;]+)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : null;
}

async function postJson(path, body, headers = {}) {
  const r = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body),
  });
  let j = null;
  try { j = await r.json(); } catch { /* empty */ }
  return { status: r.status, body: j };
}

function takeSession(s) {
  session.access = s.access_token;
  session.refresh = s.refresh_token || null;
  session.user = s.user;
}

// A fresh access token: the refresh token from the form sign-in, else the
// SSO cookie (osb_refresh + the double-submit X-CSRF-Token).
async function getToken() {
  const headers = {};
  const body = {};
  if (session.refresh) body.refresh_token = session.refresh;
  else { const c = csrfCookie(); if (c) headers['X-CSRF-Token'] = c; }
  const r = await postJson('/api/auth/refresh', body, headers);
  if (r.status !== 200) {
    showSignIn('Your session ended; sign in again.');
    throw new Error(`refresh failed (${r.status})`);
  }
  takeSession(r.body);
  return session.access;
}

async function boot() {
  $('signin-form').addEventListener('submit', onSignIn);
  $('signout').addEventListener('click', signOut);
  let s = null;
  try {
    const r = await fetch('/api/auth/session', { credentials: 'same-origin' });
    s = await r.json();
  } catch { /* the server is down: show the form */ }
  if (s && s.authenticated) {
    session.user = s.user;
    session.viaCookie = s.via === 'cookie';
    signedIn();
  } else {
    showSignIn('');
  }
}

async function onSignIn(ev) {
  ev.preventDefault();
  const err = $('signin-error');
  err.textContent = '';
  let r;
  try {
    r = await postJson('/api/auth/login', { email: $('email').value, password: $('password').value });
  } catch {
    err.textContent = 'The server cannot be reached.';
    return;
  }
  if (r.status === 200) {
    takeSession(r.body);
    $('password').value = '';
    signedIn();
  } else if (r.status === 429) {
    err.textContent = 'Too many attempts; wait a little and try again.';
  } else if (r.status === 401) {
    err.textContent = 'Wrong e-mail or password.';
  } else {
    err.textContent = (r.body && r.body.error && r.body.error.message) || `Sign-in failed (${r.status}).`;
  }
}

async function signOut() {
  stop();
  const headers = {};
  const c = csrfCookie();
  if (c) headers['X-CSRF-Token'] = c;
  try { await postJson('/api/auth/logout', session.refresh ? { refresh_token: session.refresh } : {}, headers); } catch { /* offline */ }
  session.access = session.refresh = session.user = null;
  showSignIn('');
}

function show(which) {
  for (const id of ['signin', 'denied', 'panel']) $(id).hidden = id !== which;
  $('signout').hidden = which === 'signin';
}

function showSignIn(msg) {
  stop();
  show('signin');
  $('who').textContent = '';
  $('signin-error').textContent = msg;
  setConn('idle', 'not connected');
}

function showDenied() {
  stop();
  show('denied');
  $('denied-who').textContent = session.user ? session.user.email : 'this account';
  setConn('idle', 'not connected');
}

function signedIn() {
  $('who').textContent = session.user.email;
  if (session.user.role !== 'admin') return showDenied();
  show('panel');
  start();
}

// ---- the stream ----

function authHeaders() {
  return session.access ? { Authorization: `Bearer ${session.access}` } : {};
}

async function loadHistory() {
  const r = await fetch('/api/dashboard/history', { credentials: 'same-origin', headers: authHeaders() });
  if (r.status === 403) { showDenied(); return null; }
  if (r.status === 401) { await getToken(); return loadHistory(); }
  if (r.status !== 200) return null;
  const h = await r.json();
  samples = h.items.slice();
  trim();
  render();
  return samples.length ? samples[samples.length - 1].seq : null;
}

async function start() {
  stop();
  setConn('connecting', 'connecting…');
  let since = null;
  try { since = await loadHistory(); } catch { /* the stream will still come */ }
  if (!session.user || session.user.role !== 'admin') return;
  rt = connect('/ws', { token: session.access, getToken });
  rt.on('state', (s) => {
    if (s === 'open') { everOpen = true; setConn('live', 'live'); }
    else if (everOpen) setConn('disconnected', 'disconnected — reconnecting');
    else setConn('connecting', 'connecting…');
  });
  const opts = {
    onReset: () => { loadHistory().catch(() => {}); },
    onError: (e) => { if (e.code === 'forbidden') showDenied(); },
  };
  if (since !== null) opts.since = since;
  sub = rt.subscribe('dashboard:metrics', onSample, opts);
}

function stop() {
  if (sub) sub.unsubscribe();
  if (rt) rt.close();
  sub = rt = null;
  everOpen = false;
}

function onSample(data, meta) {
  const last = samples[samples.length - 1];
  if (last && data.ts <= last.data.ts) return;
  samples.push({ seq: meta.seq, data });
  trim();
  render();
}

function trim() {
  if (!samples.length) return;
  const newest = samples[samples.length - 1].data.ts;
  while (samples.length && samples[0].data.ts < newest - HISTORY_MS) samples.shift();
}

// ---- rendering ----

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
  document.body.classList.toggle('stale', state === 'disconnected');
}

function get(obj, path) {
  let v = obj;
  for (const k of path.split('.')) v = v == null ? undefined : v[k];
  return v;
}

function fmt(v, kind) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v).replace('_', '-');
  switch (kind) {
    case 'pct': return `${(v * 100).toFixed(1)} %`;
    case 'bytes': return v >= 1 << 30 ? `${(v / (1 << 30)).toFixed(2)} GiB` : `${(v / (1 << 20)).toFixed(1)} MiB`;
    case 'fixed1': return v.toFixed(1);
    default: return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
  }
}

const worst = (a, b) => (a === 'fail' || b === 'fail' ? 'fail' : a === 'warn' || b === 'warn' ? 'warn' : 'pass');

function renderComponents(comps) {
  const ul = $('components');
  for (const [name, st] of Object.entries(comps || {})) {
    let el = ul.querySelector(`[data-metric="components.${CSS.escape(name)}"]`);
    if (!el) {
      const li = document.createElement('li');
      li.textContent = name + ' ';
      el = document.createElement('span');
      el.className = 'state';
      el.dataset.metric = `components.${name}`;
      el.dataset.kind = 'status';
      li.appendChild(el);
      ul.appendChild(li);
    }
  }
}

function render() {
  const cur = samples.length ? samples[samples.length - 1].data : null;
  if (!cur) return;
  renderComponents(cur.components);
  for (const el of document.querySelectorAll('[data-metric]')) {
    const path = el.dataset.metric;
    const v = get(cur, path);
    el.textContent = fmt(v, el.dataset.format);
    if (typeof v === 'number') el.dataset.value = String(v);
    else el.dataset.value = v == null ? '' : String(v);
    if (el.dataset.kind === 'breaker') el.className = `state br-${v}`;
    if (el.dataset.kind === 'status') el.className = `state st-${v}`;
  }
  for (const el of document.querySelectorAll('[data-bar]')) {
    const path = el.dataset.bar;
    let v = get(cur, path) || 0;
    let frac;
    if (path === 'db.active') frac = cur.db.max ? v / cur.db.max : 0;
    else if (path === 'process.cpu_pct') frac = v / 100;
    else frac = v;
    frac = Math.max(0, Math.min(1, frac));
    el.style.width = `${(frac * 100).toFixed(1)}%`;
    const bad = path === 'cache.hit_ratio' ? (v < 0.5 ? 'warn' : '') : frac > 0.9 ? 'fail' : frac > 0.7 ? 'warn' : '';
    el.className = `fill ${bad}`;
  }
  for (const svg of document.querySelectorAll('svg[data-spark]')) drawSpark(svg, svg.dataset.spark);
  let overall = 'pass';
  for (const st of Object.values(cur.components || {})) overall = worst(overall, st);
  for (const b of Object.values(cur.breakers || {})) overall = worst(overall, b === 'open' ? 'fail' : b === 'half_open' ? 'warn' : 'pass');
  const o = $('overall');
  o.dataset.state = overall;
  o.textContent = overall === 'pass' ? 'all green' : overall === 'warn' ? 'degraded' : 'failing';
  $('last-ts').textContent = new Date(cur.ts).toLocaleTimeString();
}

function drawSpark(svg, path) {
  const pts = samples.map((s) => [s.data.ts, Number(get(s.data, path)) || 0]);
  const line = svg.querySelector('polyline');
  if (pts.length < 2) { line.setAttribute('points', ''); return; }
  // The x axis spans what is there (at least 10 s, at most the 2 minutes
  // kept), so a freshly opened page does not squeeze its line to the edge.
  const t1 = pts[pts.length - 1][0];
  const span = Math.min(HISTORY_MS, Math.max(10000, t1 - pts[0][0]));
  const t0 = t1 - span;
  const max = Math.max(...pts.map((p) => p[1])) || 1;
  line.setAttribute('points', pts.map(([t, v]) =>
    `${(((t - t0) / span) * 120).toFixed(1)},${(29 - (v / max) * 28).toFixed(1)}`).join(' '));
}

boot();
