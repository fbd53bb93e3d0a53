// `make chaos`: every scenario with longer phases (CHAOS_SECONDS, default
// 10, bounds each load phase), then a summary. Exit 1 on any failed check.
import { pgRestart, pgRestartWs, sigtermDrain, slowSubscribers, upstreamStall, connFloods, floods, printReport, ISSUE8 } from './scenarios.mjs';

const secs = Number(process.env.CHAOS_SECONDS || 10);
const only = process.env.CHAOS_ONLY;
const all = [
  ['pg-restart', () => pgRestart({ loadMs: secs * 1000, downMs: 2000, workers: 8 })],
  ['pg-restart-ws', () => pgRestartWs({ loadMs: secs * 1000, downMs: 2000, publishers: 8, subscribers: 20 })],
  ['sigterm-drain', () => sigtermDrain({ subscribers: 100, inflight: 20, loaders: 8, drainMs: 2000 })],
  ['slow-subscribers', () => slowSubscribers({ conns: 50, publishMs: secs * 1000, rate: 50 })],
  ['upstream-stall', () => upstreamStall({ clients: 48, concurrency: 32, timeoutMs: 1500, phaseMs: secs * 1000 / 2 })],
  ['conn-floods', () => connFloods({ nofile: 1024, perIp: 200, pingClients: 50, holdMs: 2000 })],
  ['floods', () => floods({ slowloris: 1000, wsMax: 100, wsExtra: 50 })],
];
const results = [];
for (const [name, fn] of all) {
  if (only && only !== name) continue;
  const t0 = Date.now();
  let res;
  try { res = await fn(); } catch (e) { res = { name, ok: false, checks: [{ what: 'ran', ok: false, detail: e.stack }], figures: {} }; }
  res.figures.seconds = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(printReport(res));
  results.push(res);
}
console.log(`== chaos summary (CHAOS_SECONDS=${secs}${ISSUE8 ? '' : ', OSB_CHAOS_ISSUE8=0: issue-8 checks left out'})`);
for (const r of results) console.log(`${r.ok ? 'pass' : 'FAIL'}  ${r.name.padEnd(18)} ${r.checks.filter((c) => c.ok).length}/${r.checks.length} checks  ${r.figures.seconds} s`);
const failed = results.filter((r) => !r.ok).length;
console.log(`chaos: ${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
