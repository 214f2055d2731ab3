// One producer thread of the w1a-threads workload, started by trial.mjs. It builds the Arrow
// batches of its share of the rows (before the clock), then, on "go", writes them one after
// another, each once the previous one was acknowledged:
//   via 'attach': through its own table handle (`attach(db.handle())`), straight to the shards;
//   via 'post':   as Arrow IPC posted (transferred, not copied) to the trial's main thread, which
//                 decodes and puts it, then replies: the baseline without attach.
// Messages to the main thread: ready, done { batches, lat }, closed.
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { arrowBatch, arrowSchema } from './data.mjs';
import { loadAdapter } from './engines/index.mjs';

const { engine, via } = workerData;
const adapter = await loadAdapter(engine);
const { arrow } = await adapter.load();

// The port buffers what the main thread sent while the module loaded.
const [init] = await once(parentPort, 'message');
const schema = arrowSchema(arrow);
const batches = init.rows.map((rows) => arrowBatch(arrow, schema, rows));
init.rows = undefined; // the plain objects are not needed any more

let put;
let close;
if (via === 'attach') {
  const table = await adapter.attach(init.descriptor);
  put = (batch) => table.putArrow(batch);
  close = () => table.close();
} else {
  const port = init.port;
  let pending;
  port.on('message', (reply) => {
    const p = pending;
    pending = undefined;
    if (reply?.error) p.reject(new Error(reply.error));
    else p.resolve();
  });
  put = (batch) =>
    new Promise((resolve, reject) => {
      // Serialising is part of this path's cost, as it would be for a user: inside the clock.
      const bytes = arrow.tableToIPC(new arrow.Table(batch), 'stream');
      pending = { resolve, reject };
      port.postMessage(bytes, [bytes.buffer]);
    });
  close = () => port.close();
}

parentPort.postMessage({ type: 'ready' });
const [{ maxMs }] = await once(parentPort, 'message');
const lat = new Float64Array(batches.length);
const t0 = performance.now();
let done = 0;
for (; done < batches.length; done++) {
  if (performance.now() - t0 > maxMs) break;
  const s = performance.now();
  await put(batches[done]);
  lat[done] = performance.now() - s;
}
parentPort.postMessage({ type: 'done', batches: done, lat }, [lat.buffer]);
await close();
parentPort.postMessage({ type: 'closed' });
