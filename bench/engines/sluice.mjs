// Sluice, imported from the built workspace (packages/sluice/dist, built by `pnpm build`).
import { readFileSync, realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SCHEMA } from '../data.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SLUICE_DIR = path.join(ROOT, 'packages/sluice');

let sluice;
let arrow;

export default {
  name: 'sluice',
  modes: {
    durable: "durability 'sync': put resolves after its WAL bytes are fsynced (group commit)",
    buffered: "durability 'async': put resolves when readable; WAL fsync within syncIntervalMs (100 ms)",
  },
  arrowInput: true,
  shardable: true,
  async load() {
    sluice = await import(pathToFileURL(path.join(SLUICE_DIR, 'dist/index.js')).href);
    // Sluice's own apache-arrow (21), as resolved from packages/sluice: the Arrow input is built with it.
    const arrowDir = realpathSync(path.join(SLUICE_DIR, 'node_modules/apache-arrow'));
    arrow = await import(pathToFileURL(path.join(arrowDir, 'Arrow.node.mjs')).href);
    const { version } = JSON.parse(readFileSync(path.join(SLUICE_DIR, 'package.json'), 'utf8'));
    return { version: `${version} (workspace)`, arrow };
  },
  async open(dir, { mode, shards, create }) {
    const tuning = { durability: mode === 'durable' ? 'sync' : 'async' };
    const db = create
      ? await sluice.open(dir, {
          schema: SCHEMA,
          primaryKey: 'id',
          shards: shards ?? os.availableParallelism(),
          ...tuning,
        })
      : await sluice.open(dir, tuning);
    return {
      putRows: (rows) => db.put(rows),
      putArrow: (batch) => db.put(batch),
      handle: () => db.handle(),
      async get(id) {
        return db.get(id);
      },
      async scanSum() {
        const table = await db.scan().toArrow();
        let sum = 0;
        const value = table.getChild('value');
        for (const data of value.data) {
          const v = data.values;
          for (let i = 0, n = data.length; i < n; i++) sum += v[i];
        }
        return { rows: table.numRows, sum };
      },
      recovery() {
        return db.stats().recovery;
      },
      info() {
        const s = db.stats();
        return {
          shards: s.shards.length,
          generations: s.shards.reduce((n, x) => n + x.generations, 0),
          walSyncs: s.shards.reduce((n, x) => n + x.walSyncs, 0),
          stalls: s.putStalls,
        };
      },
      close: () => db.close(),
    };
  },
  /**
   * A table handle in another thread (w1a-threads), after `load()` there: `descriptor` comes from
   * `handle()` on the thread that opened the table, its port transferred along with it.
   */
  async attach(descriptor) {
    const t = await sluice.attach(descriptor);
    return { putArrow: (batch) => t.put(batch), close: () => t.close() };
  },
};
