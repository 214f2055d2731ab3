/**
 * DESIGN.md §2.2 (no read hole), §2.3 (newest wins across sources) and §2.9 (two-phase flush):
 * freeze → flush (generation file) → commit (manifest) → retire, held or failed at each step.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import type { Db, Row } from 'sluice';
import {
  CRASH_SCHEMA,
  Model,
  ackedBatches,
  checkRecovered,
  cleanupDirs,
  diskManifest,
  expectedRow,
  faults,
  gate,
  internals,
  openTable,
  plainRow,
  row,
  settleWithin,
  shardDir,
  shardFiles,
  shardSum,
  spawnWriter,
  tempDir,
  until,
} from './support.js';

afterAll(cleanupDirs);

function lifecycles(db: Db): ReturnType<typeof internals>['broker']['lifecycles'] {
  return internals(db).broker.lifecycles;
}

function sortById(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return [...rows].sort((a, b) => ((a.id as bigint) < (b.id as bigint) ? -1 : a.id === b.id ? 0 : 1));
}

async function checkModel(db: Db, model: Model): Promise<void> {
  const want = sortById([...model.rows.values()].map(expectedRow));
  expect(sortById((await db.scan().toArray()).map((r) => plainRow(r)!))).toEqual(want);
  const keys = [...model.rows.keys()];
  expect((await db.getMany(keys)).map((r) => plainRow(r))).toEqual(
    keys.map((k) => expectedRow(model.rows.get(k)!)),
  );
}

describe('seed (a): newest wins across a frozen memtable', () => {
  it('a key re-written (and one deleted) in the new active memtable beats the held frozen one', async () => {
    const dir = await tempDir('fl-a');
    let db = await openTable(dir, { memtableBytes: 8 << 20 });
    const model = new Model();
    const first = Array.from({ length: 100 }, (_, i) => row(i, 1));
    await db.put(first);
    model.put(first);
    const hold = gate();
    for (const lc of lifecycles(db)) lc.holds.beforeFlush = hold.promise;
    await internals(db).broker.freeze();
    expect(shardSum(db, 'frozen')).toBe(2);
    expect(shardSum(db, 'activeRows')).toBe(0);

    await db.put([row(1, 2)]);
    await db.delete([2]);
    model.put([row(1, 2)]);
    model.delete([2]);
    const check = async (): Promise<void> => {
      expect(plainRow(await db.get(1))).toEqual(expectedRow(row(1, 2)));
      expect(await db.get(2)).toBeUndefined();
      // The frozen version of key 1 (value 1001.5) matches this filter; the newest does not.
      const low = await db.scan({ filter: { column: 'value', op: '<', value: 2000 } }).toArray();
      expect(low.some((r) => r.id === 1n || r.id === 2n)).toBe(false);
      expect(low.length).toBe(98);
      await checkModel(db, model);
    };
    await check();

    // Release: the frozen memtable flushes and commits while key 1's new version stays active.
    for (const lc of lifecycles(db)) lc.holds.beforeFlush = null;
    hold.open();
    await until(() => shardSum(db, 'frozen') === 0 && shardSum(db, 'generations') === 2);
    expect(shardSum(db, 'activeRows')).toBe(2);
    await check();

    await db.flush(); // both versions now in files: the newer generation wins
    expect(shardSum(db, 'generations')).toBeGreaterThanOrEqual(3);
    await check();

    await db.close();
    db = await open(dir, { onWarning: () => undefined });
    await check();
    await db.close();
  });
});

describe('seed (b): between generation file and manifest commit', () => {
  it('every acknowledged row stays readable; the file exists but is not listed until the commit', async () => {
    const dir = await tempDir('fl-b');
    const db = await openTable(dir, { memtableBytes: 8 << 20 });
    const model = new Model();
    const rows = Array.from({ length: 500 }, (_, i) => row(i, 1));
    await db.put(rows);
    model.put(rows);
    const hold = gate();
    for (const lc of lifecycles(db)) lc.holds.beforeCommit = hold.promise;
    const flushed = db.flush();
    flushed.catch(() => undefined);

    await until(() => shardSum(db, 'flushes') === 2); // both generation files written
    for (const s of [0, 1]) {
      const files = await shardFiles(dir, s, 'gen');
      expect(files.length).toBe(1);
      expect((await diskManifest(dir, s)).generations).toEqual([]);
      expect(lifecycles(db)[s]!.manifest.generations).toEqual([]);
    }
    expect([shardSum(db, 'frozen'), shardSum(db, 'generations')]).toEqual([2, 0]);
    await checkModel(db, model);
    // Writes keep working in the window, and are readable with the held rows.
    const more = [row(10, 2), row(600, 2)];
    await db.put(more);
    model.put(more);
    await checkModel(db, model);

    for (const lc of lifecycles(db)) lc.holds.beforeCommit = null;
    hold.open();
    await settleWithin(flushed, 20_000, 'db.flush() after the commit hold is released');
    expect(shardSum(db, 'frozen')).toBe(0);
    for (const s of [0, 1]) {
      const files = (await shardFiles(dir, s, 'gen')).map((f) => `shard-00${s}/gen/${f.name}`);
      const listed = (await diskManifest(dir, s)).generations.map((g) => g.file);
      expect(listed.length).toBeGreaterThan(0);
      for (const f of listed) expect(files).toContain(f);
    }
    await checkModel(db, model);
    await db.close();
  });
});

describe('seed (c): failed commits and failed generation writes', () => {
  interface Observation {
    frozen: number;
    generations: number;
    rows: Promise<Row[]>;
    gets: Promise<(Row | undefined)[]>;
  }

  /**
   * Watches warnings: at the very instant a failure is reported (synchronously, before any
   * retry), records the shard state and captures reads (get/scan take their snapshot when
   * called), so the "frozen memtable stays readable" check cannot be dodged by a fast retry.
   */
  function observer(pattern: RegExp, keys: () => number[]) {
    const seen: Observation[] = [];
    let db: Db | undefined;
    return {
      seen,
      attach: (d: Db) => (db = d),
      onWarning: (m: string) => {
        if (!db || !pattern.test(m)) return;
        const s0 = db.stats().shards[0]!;
        seen.push({
          frozen: s0.frozen,
          generations: s0.generations,
          rows: db.scan().toArray(),
          gets: db.getMany(keys()),
        });
      },
    };
  }

  it('a manifest commit that fails 3 times keeps the frozen memtable readable; the retry commits it', async () => {
    const dir = await tempDir('fl-c-commit');
    const model = new Model();
    const keys = Array.from({ length: 400 }, (_, i) => i);
    const obs = observer(/commit of generation \d+ failed/, () => keys);
    // Fault only shard 0's manifest; skip its first put-if-absent (the ownership fence at open).
    const db = await openTable(dir, {
      memtableBytes: 8 << 20,
      onWarning: obs.onWarning,
      faults: faults({ main: [{ op: 'putIfAbsent', path: 'shard-000/manifest', nth: 2, times: 3 }] }),
    });
    obs.attach(db);
    const rows = keys.map((k) => row(k, 1));
    await db.put(rows);
    model.put(rows);
    await settleWithin(db.flush(), 30_000, 'db.flush() through failing commits');

    expect(lifecycles(db)[0]!.commitFailures).toBe(3);
    expect(lifecycles(db)[1]!.commitFailures).toBe(0);
    expect(obs.seen.length).toBe(3);
    const want = sortById([...model.rows.values()].map(expectedRow));
    for (const o of obs.seen) {
      expect([o.frozen, o.generations]).toEqual([1, 0]);
      expect(sortById((await o.rows).map((r) => plainRow(r)!))).toEqual(want);
      expect((await o.gets).every((r) => r !== undefined)).toBe(true);
    }
    const s0 = db.stats().shards[0]!;
    expect([s0.frozen, s0.generations, s0.commitFailures]).toEqual([0, 1, 3]);
    const listed = (await diskManifest(dir, 0)).generations.map((g) => path.basename(g.file));
    expect(listed.length).toBe(1);
    expect((await shardFiles(dir, 0, 'gen')).map((f) => f.name)).toContain(listed[0]);
    await checkModel(db, model);
    await db.close();

    const again = await open(dir, { onWarning: () => undefined });
    await checkModel(again, model);
    expect(again.stats().shards[0]!.generations).toBe(1);
    await again.close();
  });

  it('a generation-file write that fails twice (faults.flush) keeps the memtable readable; a retry commits it', async () => {
    const dir = await tempDir('fl-c-gen');
    const model = new Model();
    const keys = Array.from({ length: 300 }, (_, i) => i);
    const obs = observer(/flush of generation \d+ failed/, () => keys);
    const db = await openTable(dir, {
      shards: 1,
      memtableBytes: 8 << 20,
      flushThreads: 1, // one pool thread: the fault script counts across its flush tasks
      onWarning: obs.onWarning,
      faults: faults({ flush: [{ op: 'putIfAbsent', path: 'gen', times: 2 }] }),
    });
    obs.attach(db);
    try {
      const rows = keys.map((k) => row(k, 1));
      await db.put(rows);
      model.put(rows);
      await internals(db).broker.freeze();
      await until(() => obs.seen.length > 0);
      const o = obs.seen[0]!;
      expect([o.frozen, o.generations]).toEqual([1, 0]);
      expect((await o.rows).length).toBe(300);
      expect((await o.gets).every((r) => r !== undefined)).toBe(true);

      // Two injected failures, then the write must go through: the flush is retried.
      await until(() => shardSum(db, 'generations') === 1, 6_000).catch(() => undefined);
      const s0 = db.stats().shards[0]!;
      expect({ generations: s0.generations, frozen: s0.frozen, flushFailures: s0.flushFailures }).toEqual({
        generations: 1,
        frozen: 0,
        flushFailures: 2,
      });
      await checkModel(db, model);
    } finally {
      await db.close();
    }
  });

  it('a generation-file write that fails on the file system keeps the memtable readable; a retry commits it', async () => {
    const dir = await tempDir('fl-c-fs');
    const model = new Model();
    const keys = Array.from({ length: 300 }, (_, i) => i);
    const obs = observer(/flush of generation \d+ failed/, () => keys);
    const db = await openTable(dir, { shards: 1, memtableBytes: 8 << 20, onWarning: obs.onWarning });
    obs.attach(db);
    // A plain file where the generation directory belongs: every generation write fails (ENOTDIR/EEXIST).
    await mkdir(shardDir(dir, 0), { recursive: true });
    const blocker = path.join(shardDir(dir, 0), 'gen');
    await writeFile(blocker, 'not a directory');
    const rows = keys.map((k) => row(k, 1));
    await db.put(rows);
    model.put(rows);
    const flushed = db.flush();
    flushed.catch(() => undefined);
    await until(() => obs.seen.length >= 2);
    for (const o of obs.seen.slice(0, 2)) {
      expect([o.frozen, o.generations]).toEqual([1, 0]);
      expect((await o.rows).length).toBe(300);
      expect((await o.gets).every((r) => r !== undefined)).toBe(true);
    }
    await rm(blocker);
    await settleWithin(flushed, 20_000, 'db.flush() after the file system recovers');
    const s0 = db.stats().shards[0]!;
    expect(s0.flushFailures).toBeGreaterThanOrEqual(2);
    expect([s0.frozen, s0.generations]).toEqual([0, 1]);
    await checkModel(db, model);
    await db.close();
  });

  it('a generation file streamed in pieces: a failed piece leaves nothing staged, and open clears what a crash left', async () => {
    const dir = await tempDir('fl-c-staged');
    const model = new Model();
    const keys = Array.from({ length: 3000 }, (_, i) => i);
    const obs = observer(/flush of generation \d+ failed/, () => keys);
    const db = await openTable(dir, {
      shards: 1,
      memtableBytes: 8 << 20,
      rowsPerBatch: 256, // many pieces per file
      flushThreads: 1,
      onWarning: obs.onWarning,
      // The third piece of the file fails: two pieces are already on disk, staged.
      faults: faults({ flush: [{ op: 'write', path: '/gen/', nth: 3 }] }),
    });
    obs.attach(db);
    try {
      const rows = keys.map((k) => row(k, 1));
      await db.put(rows);
      model.put(rows);
      await settleWithin(db.flush(), 20_000, 'db.flush() with a failing piece');
      expect(obs.seen.length).toBeGreaterThanOrEqual(1);
      const s0 = db.stats().shards[0]!;
      expect([s0.flushFailures, s0.frozen, s0.generations]).toEqual([1, 0, 1]);
      // Only the published file: the failed attempt's staged bytes were discarded.
      expect(await readdir(path.join(shardDir(dir, 0), 'gen'))).toHaveLength(1);
      await checkModel(db, model);
    } finally {
      await db.close();
    }
    // What a writer killed mid-flush leaves behind: a staged (unnamed) file. Opening removes it.
    const genDir = path.join(shardDir(dir, 0), 'gen');
    await writeFile(path.join(genDir, '.tmp-0123456789abcdef'), 'half a generation file');
    const again = await openTable(dir, { shards: 1 });
    try {
      expect(await readdir(genDir)).toHaveLength(1);
      await checkModel(again, model);
    } finally {
      await again.close();
    }
  });

  it('the replay cursor only advances over committed generations: kill -9 with uncommitted files loses nothing', async () => {
    const dir = await tempDir('fl-c-crash');
    const rowsPerBatch = 40;
    // Shard 0 commits its first flush, then every later commit fails: its later generation
    // files are written but never listed, and its frozen memtables pile up.
    const proc = spawnWriter({
      dir,
      rows: rowsPerBatch,
      options: {
        schema: CRASH_SCHEMA,
        primaryKey: 'id',
        shards: 2,
        memtableBytes: 16 << 10,
        faults: faults({ main: [{ op: 'putIfAbsent', path: 'shard-000/manifest', nth: 3, times: 1e9 }] }),
      },
    });
    let last: Record<string, unknown>;
    try {
      last = await proc.waitFor(
        (m) =>
          Array.isArray(m.ack) &&
          (m.shardGens as number[])[0]! >= 1 &&
          (m.shardGens as number[])[1]! >= 1 &&
          (m.commitFailures as number) >= 2 &&
          (m.frozen as number) >= 2,
      );
    } finally {
      await proc.kill9();
    }
    expect(last.frozen as number).toBeGreaterThanOrEqual(2);
    const acked = ackedBatches(proc, 1);
    const manifest0 = await diskManifest(dir, 0);
    const files0 = await shardFiles(dir, 0, 'gen');
    // The scenario really holds written-but-uncommitted generation files.
    expect(files0.length).toBeGreaterThan(manifest0.generations.length);

    const db = await settleWithin(open(dir, { onWarning: () => undefined }), 30_000, 'reopen');
    try {
      await checkRecovered(db, acked, rowsPerBatch);
      await db.flush();
      await checkRecovered(db, acked, rowsPerBatch);
    } finally {
      await db.close();
    }
  });
});

describe('seed (d): no read hole under a stream of freezes and flushes', () => {
  it('concurrent readers never lose an acknowledged key while memtables freeze, flush, commit and retire', async () => {
    const dir = await tempDir('fl-d');
    const db = await openTable(dir, { memtableBytes: 16 << 10 });
    const perBatch = 40;
    const batches = 120;
    let acked = 0; // keys 0..acked-1 are acknowledged
    let writing = true;
    let reads = 0;
    let sawFrozen = 0;

    const writer = (async () => {
      try {
        for (let b = 0; b < batches; b++) {
          await db.put(Array.from({ length: perBatch }, (_, i) => row(b * perBatch + i, 1)));
          acked = (b + 1) * perBatch;
        }
      } finally {
        writing = false;
      }
    })();

    const reader = async (seed: number): Promise<void> => {
      let lastCount = 0;
      let x = seed;
      while (writing) {
        const before = acked;
        if (shardSum(db, 'frozen') > 0) sawFrozen++;
        const scan = db.scan({ columns: ['id'] }).toArray();
        const sample: number[] = [0, Math.max(0, before - 1)];
        for (let i = 0; i < 30 && before > 0; i++) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          sample.push(x % before);
        }
        const got = await db.getMany(sample);
        const ids = new Set((await scan).map((r) => r.id as bigint));
        expect(ids.size).toBeGreaterThanOrEqual(lastCount);
        expect(ids.size).toBeGreaterThanOrEqual(before);
        for (let k = 0; k < before; k++)
          if (!ids.has(BigInt(k))) expect.fail(`scan lost acknowledged key ${k}`);
        if (before > 0) {
          got.forEach((r, i) => {
            if (r === undefined) expect.fail(`get lost acknowledged key ${sample[i]}`);
          });
        }
        lastCount = ids.size;
        reads++;
        // A scan of in-memory sources completes in microtasks: yield so the writer's acks run.
        await new Promise((r) => setImmediate(r));
      }
    };

    await Promise.all([writer, reader(1), reader(2)]);
    expect(acked).toBe(perBatch * batches);
    expect(reads).toBeGreaterThan(10);
    expect(shardSum(db, 'flushes')).toBeGreaterThanOrEqual(6);
    expect(sawFrozen + shardSum(db, 'generations')).toBeGreaterThan(0);
    await db.flush();
    expect(new Set((await db.scan({ columns: ['id'] }).toArray()).map((r) => r.id)).size).toBe(acked);
    await db.close();
  });

  it('the WAL and the manifest directory stay bounded while memtables keep flushing', async () => {
    const dir = await tempDir('bounded-log');
    let db = await openTable(dir, { shards: 1, memtableBytes: 32 << 10 });
    const model = new Model();
    for (let round = 0; round < 60; round++) {
      const rows = Array.from({ length: 100 }, (_, i) => row(round * 100 + i, round));
      await db.put(rows);
      model.put(rows);
    }
    await db.flush();
    const gens = shardSum(db, 'generations');
    expect(gens).toBeGreaterThan(10);
    // A new segment per memtable, deleted once its memtable is committed (the shard deletes
    // it when it hears of the commit, just after flush() resolves: wait for that).
    const walDir = path.join(shardDir(dir, 0), 'wal');
    for (let i = 0; i < 400 && (await readdir(walDir)).length > 3; i++)
      await new Promise((r) => setTimeout(r, 50));
    const wal = await shardFiles(dir, 0, 'wal');
    expect(wal.length).toBeLessThanOrEqual(3);
    const walBytes = wal.reduce((n, f) => n + f.size, 0);
    expect(walBytes).toBeLessThan(3 * (32 << 10));
    // Old manifest versions are pruned: a handful stay, the newest among them.
    const manifests = await shardFiles(dir, 0, 'manifest');
    expect(manifests.length).toBeLessThanOrEqual(4 + 8);
    expect(manifests.at(-1)!.name).toBe(
      `${String(lifecycles(db)[0]!.manifest.version).padStart(20, '0')}.json`,
    );
    await db.close();
    db = await open(dir, { onWarning: () => undefined });
    expect(db.stats().recovery.records).toBeLessThan(100);
    const got = await db.getMany([...model.rows.keys()]);
    expect(got.map((r) => plainRow(r))).toEqual([...model.rows.values()].map((r) => expectedRow(r)));
    await db.close();
  });
});
