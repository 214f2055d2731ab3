// Throughput of SabQueue vs postMessage with a transferred ArrayBuffer, main thread -> one worker.
// Needs the built package: `npx tsc -p packages/sab-queue && node packages/sab-queue/bench/queue.bench.mjs`.
// Add `--json` to print the results as JSON after the table.
//
// Both paths do the same producer work per record (copy a prepared source into the transport) and
// the same consumer work (read the first and last byte, so the bytes are really reached), and the
// clock stops when the worker reports that it has seen the last record.
import { performance } from 'node:perf_hooks';
import { URL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SabQueue } from '../dist/index.js';

const QUEUE_BYTES = 8 << 20;

if (isMainThread) {
  await main();
} else {
  await (workerData.mode === 'sab' ? consumeQueue(workerData.buffer) : consumeMessages());
}

async function main() {
  const cases = [
    { recordBytes: 1024, records: 200_000 },
    { recordBytes: 64 * 1024, records: 8_000 },
  ];
  const results = [];
  for (const { recordBytes, records } of cases) {
    for (const mode of ['sab', 'postMessage']) {
      await run(mode, recordBytes, Math.ceil(records / 10)); // warm-up: JIT and thread start
      results.push(await run(mode, recordBytes, records));
    }
  }
  const rows = results.map((r) => [
    r.mode,
    r.recordBytes >= 1024 ? `${r.recordBytes / 1024} KiB` : `${r.recordBytes} B`,
    r.records.toLocaleString('en-US'),
    Math.round(r.records / r.seconds).toLocaleString('en-US'),
    Math.round((r.records * r.recordBytes) / r.seconds / 1e6).toLocaleString('en-US'),
  ]);
  printTable(['transport', 'record', 'records', 'records/s', 'MB/s'], rows);
  if (process.argv.includes('--json')) console.log(JSON.stringify(results, null, 2));
}

function printTable(header, rows) {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i].length)));
  const line = (cells) =>
    cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
}

async function run(mode, recordBytes, records) {
  const source = new Uint8Array(recordBytes).map((_, i) => i & 0xff);
  const queue = mode === 'sab' ? SabQueue.create(QUEUE_BYTES) : undefined;
  const worker = new Worker(new URL(import.meta.url), { workerData: { mode, buffer: queue?.buffer } });
  const messages = [];
  let wake = () => {};
  worker.on('message', (message) => {
    messages.push(message);
    wake();
  });
  worker.on('error', (error) => {
    messages.push({ error });
    wake();
  });
  const next = async () => {
    while (messages.length === 0) await new Promise((resolve) => (wake = resolve));
    const message = messages.shift();
    if (message.error) throw message.error;
    return message;
  };

  await next(); // ready
  const start = performance.now();
  if (queue) {
    for (let i = 0; i < records; i++) {
      let view = queue.tryReserve(recordBytes);
      while (view === null) {
        await queue.waitForSpace(recordBytes);
        view = queue.tryReserve(recordBytes);
      }
      view.set(source);
      queue.commit();
    }
    queue.close();
  } else {
    for (let i = 0; i < records; i++) {
      const bytes = new Uint8Array(recordBytes);
      bytes.set(source);
      worker.postMessage(bytes.buffer, [bytes.buffer]);
    }
    worker.postMessage('end');
  }
  const done = await next();
  const seconds = (performance.now() - start) / 1000;
  await worker.terminate();
  if (done.received !== records)
    throw new Error(`${mode}: worker saw ${done.received} of ${records} records`);
  return { mode, recordBytes, records, seconds };
}

async function consumeQueue(buffer) {
  const queue = SabQueue.attach(buffer);
  let received = 0;
  let checksum = 0;
  parentPort.postMessage('ready');
  while (await queue.waitForData()) {
    for (let view = queue.peek(); view !== null; view = queue.peek()) {
      checksum += view[0] + view[view.length - 1];
      queue.release();
      received++;
    }
  }
  parentPort.postMessage({ received, checksum });
}

function consumeMessages() {
  let received = 0;
  let checksum = 0;
  parentPort.on('message', (message) => {
    if (message === 'end') {
      parentPort.postMessage({ received, checksum });
      return;
    }
    const view = new Uint8Array(message);
    checksum += view[0] + view[view.length - 1];
    received++;
  });
  parentPort.postMessage('ready');
}
