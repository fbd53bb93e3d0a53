// The well-behaved client in a worker thread (its own event loop), so what
// it measures is the server, not the load, fake upstreams or floods that
// the main thread of the test runs. One kept connection across calls
// (tests/chaos/scenarios.mjs probeWorker).
import { parentPort, workerData } from 'node:worker_threads';
import { rawProbe } from './scenarios.mjs';

const keep = { c: null };
parentPort.on('message', async (m) => {
  if (m.cmd === 'probe') {
    const r = await rawProbe(workerData.port, m.ms, { keep, gapMs: m.gapMs ?? 5 });
    parentPort.postMessage({ lat: r.lat, failed: r.failed, p50: r.p50, p99: r.p99, n: r.n });
  } else if (m.cmd === 'close') {
    keep.c?.destroy();
    keep.c = null;
    parentPort.postMessage({});
  }
});
