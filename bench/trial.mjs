// One trial, in a fresh process: `node --expose-gc bench/trial.mjs --engine X --workload Y --mode Z`.
// Prints exactly one line `BENCH_RESULT {json}` on stdout (everything else is diagnostics).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { clearInterval, setInterval } from 'node:timers';
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MessageChannel, Worker } from 'node:worker_threads';
import { getIds, makeDataset, prng, toArrowBatches } from './data.mjs';
import { ENGINES, loadAdapter } from './engines/index.mjs';
import { percentile } from './stats.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    engine: { type: 'string' },
    workload: { type: 'string', default: 'w1' },
    mode: { type: 'string', default: 'durable' },
    rows: { type: 'string', default: '1000000' },
    gets: { type: 'string', default: '100000' },
    producers: { type: 'string', default: '16' },
    shards: { type: 'string' },
    // w1a-threads: <path>-<n>, e.g. main-1, attach-2, post-4 (see threadedIngest).
    variant: { type: 'string' },
    dir: { type: 'string' },
    'max-seconds': { type: 'string', default: '300' },
    'no-verify': { type: 'boolean', default: false },
    probe: { type: 'boolean', default: false },
    // Internal: the loader child of the recovery workload.
    'recovery-load': { type: 'boolean', default: false },
  },
});

const MB = 1e6;
const rowsTotal = Number(args.rows);
const maxMs = Number(args['max-seconds']) * 1000;
const shards = args.shards === undefined ? undefined : Number(args.shards);
const [via, threadCount] = (args.variant ?? 'main-1').split('-');
const threads = Number(threadCount);

function emit(result) {
  process.stdout.write(`BENCH_RESULT ${JSON.stringify(result)}\n`);
}

function rssNow() {
  return process.memoryUsage.rss();
}

/** Tracks the process RSS during a measured phase: sampled every 10 ms and on demand. */
class RssSampler {
  constructor() {
    this.max = rssNow();
    this.timer = setInterval(() => this.sample(), 10);
    this.timer.unref();
  }
  sample() {
    const r = rssNow();
    if (r > this.max) this.max = r;
  }
  stop() {
    clearInterval(this.timer);
    this.sample();
    return this.max;
  }
}

async function probe() {
  const out = {};
  for (const name of ENGINES) {
    try {
      const adapter = await loadAdapter(name);
      const { version } = await adapter.load();
      out[name] = {
        ok: true,
        version,
        modes: adapter.modes,
        unavailableModes: adapter.unavailableModes ?? {},
        arrowInput: adapter.arrowInput,
        threads: typeof adapter.attach === 'function',
        gets: name !== 'arrow-ipc',
        shardable: adapter.shardable === true,
      };
    } catch (err) {
      out[name] = { ok: false, reason: String(err?.message ?? err).split('\n')[0] };
    }
  }
  emit({ probe: out });
}

/**
 * Ingests the dataset with `producers` concurrent producers, each sending its next batch after the
 * previous one is acknowledged. Returns throughput, ack latencies and memory figures.
 */
async function ingest(db, dataset, { producers = 1, arrowBatches, onAck, background } = {}) {
  const n = dataset.batches.length;
  const lat = new Float64Array(n);
  let next = 0;
  let done = 0;
  let rowsDone = 0;
  let bytesDone = 0;
  let partial = false;
  const batchBytes = dataset.batchBytes;
  const rss = new RssSampler();
  const t0 = performance.now();
  const deadline = t0 + maxMs;
  const producer = async () => {
    for (;;) {
      if (next >= n) return;
      if (performance.now() > deadline) {
        partial = true;
        return;
      }
      const i = next++;
      const rows = dataset.batches[i];
      const s = performance.now();
      if (arrowBatches) await db.putArrow(arrowBatches[i], rows);
      else await db.putRows(rows);
      lat[done++] = performance.now() - s;
      rowsDone += rows.length;
      bytesDone += batchBytes[i];
      onAck?.(i);
    }
  };
  const bg = background?.();
  await Promise.all(Array.from({ length: producers }, producer));
  const ms = performance.now() - t0;
  const peak = rss.stop();
  const bgResult = await bg?.stop();
  const lats = lat.subarray(0, done).sort();
  return {
    ...ingestFigures({ rows: rowsDone, bytes: bytesDone, batches: done, partial, ms, lats, peak }),
    background: bgResult,
  };
}

/** The figures every ingest trial reports; `lats` are the sorted ack latencies (ms). */
function ingestFigures({ rows, bytes, batches, partial, ms, lats, peak }) {
  return {
    rows,
    batches,
    partial,
    seconds: ms / 1000,
    rowsPerSec: rows / (ms / 1000),
    mbPerSec: bytes / MB / (ms / 1000),
    inputMB: bytes / MB,
    ackP50Ms: percentile(lats, 0.5),
    ackP99Ms: percentile(lats, 0.99),
    ackMaxMs: lats[lats.length - 1],
    sampledPeakRss: peak,
  };
}

/**
 * W1a from `threads` producer threads (workload w1a-threads, `via` 'attach' or 'post'; see
 * producer-thread.mjs). Thread k takes batches k, k + threads, k + 2 × threads, ... of the dataset:
 * the shares differ by at most one batch and each spans the whole id range, upserts included, as
 * the 16 producers of W1c share one batch sequence. Each thread builds its Arrow batches and (for
 * 'attach') attaches before the clock starts; the clock runs from "go" to the last thread's last
 * ack. With 'post', this thread decodes every batch a thread posts, puts it, and replies once
 * the put resolved: what a user without attach would do.
 */
async function threadedIngest(db, dataset, arrow, batchMaxId) {
  const n = dataset.batches.length;
  const batchBytes = dataset.batchBytes;
  const workers = [];
  try {
    for (let k = 0; k < threads; k++) {
      const worker = new Worker(path.join(HERE, 'producer-thread.mjs'), {
        workerData: { engine: args.engine, via },
      });
      const inbox = messages(worker);
      workers.push({ worker, inbox });
      const rows = dataset.batches.filter((_, i) => i % threads === k);
      if (via === 'attach') {
        const descriptor = db.handle();
        worker.postMessage({ rows, descriptor }, [descriptor.registry]);
      } else {
        const { port1, port2 } = new MessageChannel();
        port1.on('message', (bytes) => {
          const batch = arrow.tableFromIPC(bytes).batches[0];
          db.putArrow(batch).then(
            () => port1.postMessage(null),
            (err) => port1.postMessage({ error: String(err?.message ?? err) }),
          );
        });
        workers[k].port = port1;
        worker.postMessage({ rows, port: port2 }, [port2]);
      }
    }
    await Promise.all(workers.map((w) => w.inbox.next('ready')));
    globalThis.gc?.();
    const rss = new RssSampler();
    const t0 = performance.now();
    for (const w of workers) w.worker.postMessage({ maxMs });
    const done = await Promise.all(workers.map((w) => w.inbox.next('done')));
    const ms = performance.now() - t0;
    const peak = rss.stop();
    await Promise.all(workers.map((w) => w.inbox.next('closed')));

    // Thread k did the first done[k].batches of its share. Every batch before the first one
    // that no thread did was acknowledged: the ids of that prefix are the ones checked after.
    let firstMissing = n;
    let rowsDone = 0;
    let bytesDone = 0;
    done.forEach((d, k) => {
      firstMissing = Math.min(firstMissing, k + d.batches * threads);
      for (let j = 0; j < d.batches; j++) {
        const i = k + j * threads;
        rowsDone += dataset.batches[i].length;
        bytesDone += batchBytes[i];
      }
    });
    const batches = done.reduce((s, d) => s + d.batches, 0);
    const lats = new Float64Array(batches);
    let o = 0;
    for (const d of done) {
      lats.set(d.lat.subarray(0, d.batches), o);
      o += d.batches;
    }
    lats.sort();
    return {
      ...ingestFigures({ rows: rowsDone, bytes: bytesDone, batches, partial: batches < n, ms, lats, peak }),
      ackedMaxId: firstMissing > 0 ? batchMaxId[firstMissing - 1] : 0,
    };
  } finally {
    for (const w of workers) w.port?.close();
    await Promise.all(workers.map((w) => w.worker.terminate()));
  }
}

/** The messages of a worker as `next(type)` promises; an error or exit rejects them. */
function messages(worker) {
  const queue = [];
  const waiters = [];
  let failure;
  const fail = (err) => {
    failure ??= err;
    for (const w of waiters.splice(0)) w.reject(failure);
  };
  worker.on('message', (m) => {
    const w = waiters.shift();
    if (w) w.resolve(m);
    else queue.push(m);
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`producer thread exited (${code})`)));
  return {
    async next(type) {
      const m =
        queue.shift() ??
        (await new Promise((resolve, reject) =>
          failure ? reject(failure) : waiters.push({ resolve, reject }),
        ));
      if (m.type !== type) throw new Error(`producer thread: expected "${type}", got "${m.type}"`);
      return m;
    },
  };
}

/** A reader loop that runs until stopped, yielding to the event loop after every call. */
function loop(fn) {
  let stopped = false;
  let error;
  const run = (async () => {
    while (!stopped) {
      try {
        await fn();
      } catch (err) {
        error = String(err?.message ?? err);
        return;
      }
      await immediate();
    }
  })();
  return {
    async stop() {
      stopped = true;
      await run;
      if (error) throw new Error(`concurrent reader failed: ${error}`);
    },
  };
}

/** Checks gets against the dataset: `exact` also compares the value (single-producer order). */
async function verifyGets(db, dataset, count, exact) {
  if (!db.get || args['no-verify']) return undefined;
  const rand = prng(77);
  let errors = 0;
  let firstError;
  for (let k = 0; k < count; k++) {
    const id = rand.int(1, dataset.ackedMaxId ?? dataset.maxId);
    const row = await db.get(id);
    const ok = row !== undefined && (!exact || row.value === dataset.latestValue[id]);
    if (!ok) {
      errors++;
      firstError ??= { id, got: row?.value ?? null, expected: dataset.latestValue[id] };
    }
  }
  return { checked: count, errors, firstError };
}

function checkScan(res, dataset) {
  const rowsOk = res.rows === dataset.distinctIds;
  const sumOk = Math.abs(res.sum - dataset.expectedSum) <= 1e-9 * Math.abs(dataset.expectedSum);
  return { rows: res.rows, expectedRows: dataset.distinctIds, rowsOk, sumOk };
}

async function main() {
  if (args.probe) return probe();
  const engine = args.engine;
  const workload = args.workload;
  const mode = args.mode;
  const base = { engine, workload, mode, shards: shards ?? null, rowsRequested: rowsTotal };
  if (workload === 'w1a-threads') Object.assign(base, { variant: args.variant, via, threads });

  let adapter;
  let loaded;
  try {
    adapter = await loadAdapter(engine);
    loaded = await adapter.load();
  } catch (err) {
    emit({ ...base, status: 'unavailable', reason: String(err?.message ?? err).split('\n')[0] });
    return;
  }
  base.version = loaded.version;
  if (!adapter.modes[mode]) {
    emit({ ...base, status: 'n/a', reason: adapter.unavailableModes?.[mode] ?? `no ${mode} mode` });
    return;
  }
  const wantsArrow = workload === 'w1a' || workload === 'scale' || workload === 'w1a-threads';
  if (wantsArrow && !adapter.arrowInput) {
    emit({ ...base, status: 'n/a', reason: 'takes no Arrow input' });
    return;
  }
  const fromThreads = workload === 'w1a-threads' && via !== 'main';
  if (fromThreads && typeof adapter.attach !== 'function') {
    emit({ ...base, status: 'n/a', reason: 'no table handles for other threads' });
    return;
  }

  const ownDir = args.dir === undefined;
  const dir = args.dir ?? mkdtempSync(path.join(os.tmpdir(), `sluice-bench-${engine}-`));
  mkdirSync(dir, { recursive: true });
  const dataset = makeDataset({ rows: rowsTotal });
  dataset.batchBytes = dataset.batches.map((b) => {
    let s = 0;
    for (const r of b) s += 24 + r.tag.length + r.payload.length;
    return s;
  });
  // Producer threads build their own share of the batches (threadedIngest).
  const arrowBatches = wantsArrow && !fromThreads ? toArrowBatches(loaded.arrow, dataset) : undefined;
  globalThis.gc?.();
  await sleep(50);
  const baselineRss = rssNow();
  const mem = (peak) => ({
    baselineRssMB: baselineRss / MB,
    peakRssMB: (process.resourceUsage().maxRSS * 1024) / MB,
    engineRssMB: (peak - baselineRss) / MB,
  });

  try {
    if (args['recovery-load']) {
      // Loader child: ingest, report, then wait to be killed (no flush, no close).
      const db = await adapter.open(dir, { mode, shards, create: true });
      const r = await ingest(db, dataset);
      emit({ ...base, status: 'loaded', rows: r.rows, seconds: r.seconds });
      await new Promise(() => setInterval(() => undefined, 1 << 30));
    }

    if (workload === 'recovery') {
      const result = await recovery(adapter, dir, mem);
      const failed = result.verify?.rowsOk === false || result.verify?.sumOk === false;
      emit({ ...base, status: failed ? 'wrong' : 'ok', ...result });
      return;
    }
    const db = await adapter.open(dir, { mode, shards, create: true });
    let result;
    if (['w1', 'w1c', 'w1a', 'scale', 'w1s', 'w2i', 'w1a-threads'].includes(workload)) {
      const producers =
        workload === 'w1c' ? Number(args.producers) : workload === 'w1a-threads' ? threads : 1;
      let background;
      // Ids known to be acknowledged: fresh ids ascend with the batch index.
      const batchMaxId = new Float64Array(dataset.batches.length);
      let m = 0;
      dataset.batches.forEach((b, i) => {
        for (const r of b) if (r.id > m) m = r.id;
        batchMaxId[i] = m;
      });
      let ackedMaxId = 0;
      const onAck = (i) => {
        if (batchMaxId[i] > ackedMaxId) ackedMaxId = batchMaxId[i];
      };
      if (workload === 'w1s') {
        let scans = 0;
        let scannedRows = 0;
        background = () => {
          const l = loop(async () => {
            const s = await db.scanSum();
            scans++;
            scannedRows += s.rows;
          });
          return { stop: async () => (await l.stop(), { scans, scannedRows }) };
        };
      } else if (workload === 'w2i') {
        if (!db.get) throw new NaError('no point gets');
        const lat = [];
        let misses = 0;
        const rand = prng(99);
        background = () => {
          const l = loop(async () => {
            if (ackedMaxId === 0) return;
            const id = rand.int(1, ackedMaxId);
            const s = performance.now();
            const row = await db.get(id);
            lat.push(performance.now() - s);
            if (row === undefined) misses++;
          });
          return {
            stop: async () => {
              await l.stop();
              const a = Float64Array.from(lat).sort();
              // No get at all: the ingest never yielded the event loop to the reader.
              return {
                gets: a.length,
                misses,
                getP50Us: a.length ? percentile(a, 0.5) * 1000 : null,
                getP99Us: a.length ? percentile(a, 0.99) * 1000 : null,
              };
            },
          };
        };
      }
      const r = fromThreads
        ? await threadedIngest(db, dataset, loaded.arrow, batchMaxId)
        : await ingest(db, dataset, { producers, arrowBatches, onAck, background });
      dataset.ackedMaxId = fromThreads ? r.ackedMaxId : ackedMaxId;
      const verify = await verifyGets(db, dataset, 200, producers === 1 && !r.partial);
      result = {
        ...r,
        ...mem(r.sampledPeakRss),
        producers,
        verify,
        rssOverData: (r.sampledPeakRss - baselineRss) / (r.inputMB * MB),
        metric: 'rowsPerSec',
        value: r.rowsPerSec,
      };
      if (workload === 'w2i') {
        Object.assign(result, r.background);
      }
    } else if (workload === 'w2') {
      if (!db.get) throw new NaError('no point gets (no index)');
      const load = await ingest(db, dataset);
      const loaded = loadedData(load, dataset);
      const ids = getIds(Number(args.gets), loaded.maxId);
      const lat = new Float64Array(ids.length);
      let errors = 0;
      let done = 0;
      let partial = false;
      const rss = new RssSampler();
      const t0 = performance.now();
      for (; done < ids.length; done++) {
        if ((done & 255) === 0 && performance.now() - t0 > maxMs) {
          partial = true;
          break;
        }
        const id = ids[done];
        const s = performance.now();
        const row = await db.get(id);
        lat[done] = performance.now() - s;
        if (row === undefined || row.value !== loaded.latestValue[id]) errors++;
      }
      const ms = performance.now() - t0;
      // The same gets again: the first round includes opening (loading) the files they touch,
      // the second shows the steady-state get path. Reported beside, never instead.
      let again = 0;
      const t1 = performance.now();
      for (; again < done; again++) {
        if ((again & 255) === 0 && performance.now() - t1 > maxMs) break;
        const row = await db.get(ids[again]);
        if (row === undefined || row.value !== loaded.latestValue[ids[again]]) errors++;
      }
      const ms2 = performance.now() - t1;
      const peak = rss.stop();
      const a = lat.subarray(0, done).sort();
      result = {
        loadRowsPerSec: load.rowsPerSec,
        loadedRows: load.rows,
        gets: done,
        secondGetsPerSec: again / (ms2 / 1000),
        partial: partial || load.partial,
        seconds: ms / 1000,
        getsPerSec: done / (ms / 1000),
        getP50Us: percentile(a, 0.5) * 1000,
        getP99Us: percentile(a, 0.99) * 1000,
        verify: { checked: done, errors },
        ...mem(peak),
        metric: 'getsPerSec',
        value: done / (ms / 1000),
      };
    } else if (workload === 'w3') {
      const load = await ingest(db, dataset);
      const loaded = loadedData(load, dataset);
      const rss = new RssSampler();
      let t0 = performance.now();
      const first = await db.scanSum();
      const ms = performance.now() - t0;
      t0 = performance.now();
      const second = await db.scanSum();
      const ms2 = performance.now() - t0;
      const peak = rss.stop();
      result = {
        loadRowsPerSec: load.rowsPerSec,
        loadedRows: load.rows,
        partial: load.partial,
        rows: first.rows,
        seconds: ms / 1000,
        scanRowsPerSec: first.rows / (ms / 1000),
        secondScanRowsPerSec: second.rows / (ms2 / 1000),
        verify: checkScan(first, loaded),
        ...mem(peak),
        metric: 'scanRowsPerSec',
        value: first.rows / (ms / 1000),
      };
    } else {
      throw new Error(`unknown workload ${workload}`);
    }
    const info = db.info?.();
    const c0 = performance.now();
    await db.close();
    result.closeMs = performance.now() - c0;
    if (info) result.info = info;
    const failed =
      (result.verify?.errors ?? 0) > 0 || result.verify?.rowsOk === false || result.verify?.sumOk === false;
    emit({ ...base, status: failed ? 'wrong' : result.partial ? 'partial' : 'ok', ...result });
  } catch (err) {
    if (err instanceof NaError) emit({ ...base, status: 'n/a', reason: err.message });
    else emit({ ...base, status: 'error', error: String(err?.stack ?? err) });
    process.exitCode = 0;
  } finally {
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  }
}

class NaError extends Error {}

/**
 * What the reads are checked against: the whole dataset, or, when the load stopped at the time
 * cap (a slow engine), the prefix it acknowledged (the generator is deterministic, so the prefix
 * is regenerated). Reads then run on that smaller table and the result is marked partial.
 */
function loadedData(load, dataset) {
  if (!load.partial) return dataset;
  console.error(`load stopped at the time cap after ${load.rows} rows: reads run on those`);
  return makeDataset({ rows: load.rows });
}

/**
 * Recovery: a child process ingests W1 (durable mode where the engine has one) and is killed with
 * SIGKILL right after the last ack: no flush, no close. This process then times the reopen.
 */
async function recovery(adapter, dir, mem) {
  const child = spawn(
    process.execPath,
    [
      '--expose-gc',
      path.join(HERE, 'trial.mjs'),
      '--recovery-load',
      '--engine',
      args.engine,
      '--mode',
      args.mode,
      '--rows',
      String(rowsTotal),
      '--dir',
      dir,
      '--max-seconds',
      args['max-seconds'],
      ...(shards ? ['--shards', String(shards)] : []),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const loaded = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const line = buf.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      if (line) resolve(JSON.parse(line.slice('BENCH_RESULT '.length)));
    });
    child.on('exit', (code) => reject(new Error(`recovery loader exited (${code}) before loading`)));
  });
  if (loaded.status !== 'loaded') throw new Error(`recovery loader: ${JSON.stringify(loaded)}`);
  child.kill('SIGKILL');
  await new Promise((r) =>
    child.exitCode !== null || child.signalCode !== null ? r() : child.on('exit', r),
  );
  const rss = new RssSampler();
  const t0 = performance.now();
  const db = await adapter.open(dir, { mode: args.mode, shards, create: false });
  const reopenMs = performance.now() - t0;
  const peak = rss.stop();
  const rec = db.recovery?.();
  const rowsAcked = loaded.rows;
  const dataset = makeDataset({ rows: rowsAcked });
  const check = args['no-verify'] ? undefined : checkScan(await db.scanSum(), dataset);
  await db.close();
  return {
    rows: rowsAcked,
    loadSeconds: loaded.seconds,
    reopenMs,
    rowsPerSec: rowsAcked / (reopenMs / 1000),
    replayedRows: rec?.rows,
    replayMs: rec?.ms,
    replayRowsPerSec: rec ? rec.rows / (rec.ms / 1000) : undefined,
    verify: check,
    ...mem(peak),
    metric: 'rowsPerSec',
    value: rowsAcked / (reopenMs / 1000),
  };
}

// Some engines keep native threads alive after close: the trial is over once main settles.
main().then(
  () => process.exit(0),
  (err) => {
    emit({
      engine: args.engine,
      workload: args.workload,
      mode: args.mode,
      status: 'error',
      error: String(err),
    });
    process.exit(0);
  },
);
