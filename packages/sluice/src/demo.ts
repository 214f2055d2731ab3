/**
 * The demo ingest: writes synthetic events into a fresh local table with several concurrent
 * producers, shows progress, then reads everything back and prints a summary.
 *
 *   node packages/sluice/dist/demo.js [--rows N] [--dir PATH] [--shards N] [--durability sync|async] [--producers N]
 */
import { rm } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { open } from './db.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    dir: { type: 'string', default: '.sluice-demo' },
    shards: { type: 'string', default: String(os.availableParallelism()) },
    durability: { type: 'string', default: 'sync' },
    producers: { type: 'string', default: '8' },
    batch: { type: 'string', default: '1000' },
  },
});

const total = Number(args.rows);
const batchSize = Number(args.batch);
const producers = Number(args.producers);
const shards = Number(args.shards);
const durability = args.durability === 'async' ? 'async' : 'sync';

/** Deterministic PRNG (mulberry32) so every run writes the same rows. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHA = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function text(rand: () => number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i++) s += ALPHA[Math.floor(rand() * ALPHA.length)];
  return s;
}

async function main(): Promise<void> {
  await rm(args.dir, { recursive: true, force: true });
  const db = await open(args.dir, {
    schema: { id: 'int64', ts: 'timestamp', value: 'float64', tag: 'utf8', payload: 'utf8' },
    primaryKey: 'id',
    shards,
    durability,
    memtableBytes: 16 << 20,
  });
  const tty = process.stdout.isTTY === true;
  const bar = tty
    ? new cliProgress.SingleBar(
        {
          format: ' ingest [{bar}] {percentage}% | {value}/{total} rows | {rate} rows/s | ETA {eta}s',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  bar?.start(total, 0, { rate: 0 });
  const started = performance.now();
  let written = 0;
  let nextId = 0;
  let lastLine = started;
  const expected = new Map<number, number>(); // sample of ids → value, checked after ingest
  const producer = async (p: number): Promise<void> => {
    const rand = rng(1234 + p);
    for (;;) {
      const n = Math.min(batchSize, total - written);
      if (n <= 0) return;
      written += n;
      const rows = new Array(n);
      for (let i = 0; i < n; i++) {
        const upsert = nextId > 0 && rand() < 0.1;
        const id = upsert ? Math.floor(rand() * nextId) : nextId++;
        const value = rand() * 1000;
        rows[i] = {
          id,
          ts: 1_700_000_000_000 + id,
          value,
          tag: text(rand, 8 + Math.floor(rand() * 17)),
          payload: text(rand, 64),
        };
        if ((id & 1023) === 0) expected.set(id, value);
      }
      await db.put(rows);
      const now = performance.now();
      const done = Math.min(total, written);
      const rate = Math.round(done / ((now - started) / 1000));
      if (bar) bar.update(done, { rate });
      else if (now - lastLine > 1000) {
        lastLine = now;
        console.log(`ingest: ${done}/${total} rows, ${rate} rows/s`);
      }
    }
  };
  await Promise.all(Array.from({ length: producers }, (_, p) => producer(p)));
  const ingestMs = performance.now() - started;
  bar?.stop();
  const flushStart = performance.now();
  await db.flush();
  const flushMs = performance.now() - flushStart;
  const scanStart = performance.now();
  const table = await db.scan().toArrow();
  const scanMs = performance.now() - scanStart;
  let mismatches = 0;
  // Last writer wins per id among producers running concurrently, so the sample only checks presence.
  const sample = [...expected.keys()].slice(0, 1000);
  const got = await db.getMany(sample);
  for (const row of got) if (!row) mismatches++;
  const stats = db.stats();
  const files = stats.shards.reduce((n, s) => n + s.generations, 0);
  await db.close();
  const rate = total / (ingestMs / 1000);
  console.log('');
  console.log(`Sluice demo: ${total} row writes (${nextId} distinct ids, ~10% upserts) into ${args.dir}`);
  console.log(`  shards ${shards}, producers ${producers}, batch ${batchSize}, durability ${durability}`);
  console.log(
    `  ingest        ${Math.round(rate).toLocaleString('en-US')} rows/s (${(ingestMs / 1000).toFixed(2)} s)`,
  );
  console.log(`  flush         ${(flushMs / 1000).toFixed(2)} s`);
  console.log(
    `  rows read back ${table.numRows.toLocaleString('en-US')} live rows by scan in ${(scanMs / 1000).toFixed(2)} s (expected ${nextId.toLocaleString('en-US')})`,
  );
  console.log(`  point gets    ${sample.length - mismatches}/${sample.length} sampled ids found`);
  console.log(`  files written ${files} generation files (Arrow IPC), ${stats.shards.length} WALs`);
  if (table.numRows !== nextId || mismatches > 0) {
    console.error('demo: read-back check FAILED');
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? `${(err as { code?: string }).code ?? 'Error'}: ${err.message}` : err);
  process.exitCode = 1;
});
