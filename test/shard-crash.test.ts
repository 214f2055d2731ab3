/**
 * DESIGN.md §2.13 (a crashed shard thread): the crash is reported, the shard is restarted
 * from its WAL, nothing acknowledged is lost, and calls in flight fail with a typed error
 * (SLUICE_SHARD_CRASHED) or succeed — they never hang.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { CB_FROZEN_BASE, CB_FROZEN_COUNT, CB_LOCK, CB_SEQ } from '@sluice/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultControl } from '@sluice/core';
import { SluiceError, open } from 'sluice';
import type { Db } from 'sluice';
import {
  Model,
  cleanupDirs,
  expectedRow,
  gate,
  internals,
  openTable,
  plainRow,
  row,
  settleWithin,
  shardSum,
  tempDir,
  until,
} from './support.js';

afterAll(cleanupDirs);

function lifecycle(db: Db, shard: number) {
  return internals(db).broker.lifecycles[shard]!;
}

/** A one-shard table holding rows 0..199 at version 1, with its model and the warnings it gives. */
async function oneShardWith200Rows(name: string, memtableBytes: number) {
  const dir = await tempDir(name);
  const warnings: string[] = [];
  const db = await openTable(dir, { shards: 1, memtableBytes, onWarning: (m) => warnings.push(m) });
  const model = new Model();
  const rows = Array.from({ length: 200 }, (_, i) => row(i, 1));
  await db.put(rows);
  model.put(rows);
  return { dir, warnings, db, lc: lifecycle(db, 0), model };
}

/** Kills a shard thread and waits until the broker reports it and has it running again. */
async function crashAndRestart(db: Db, shard: number, warnings: string[]): Promise<void> {
  const reported = warnings.filter((w) => w.startsWith(`shard ${shard} failed`)).length;
  await lifecycle(db, shard).client.crash();
  await until(() => warnings.filter((w) => w.startsWith(`shard ${shard} failed`)).length > reported);
  await until(() => db.stats().shards[shard]!.state === 'running');
}

async function checkModel(db: Db, model: Model): Promise<void> {
  const rows = (await db.scan().toArray()).map((r) => plainRow(r)!);
  const ids = rows.map((r) => r.id as bigint);
  expect(new Set(ids).size).toBe(ids.length); // no key twice (replayed rows merge with the rest)
  const byId = new Map(rows.map((r) => [r.id as bigint, r]));
  for (const [k, r] of model.rows) expect(byId.get(k)).toEqual(expectedRow(r));
  expect(rows.length).toBe(model.rows.size);
}

/** Checks the live table against the model, closes it, and checks the reopened table too. */
async function checkThenReopen(db: Db, dir: string, model: Model): Promise<void> {
  await checkModel(db, model);
  await db.close();
  const again = await open(dir, { onWarning: () => undefined });
  try {
    await checkModel(again, model);
  } finally {
    await again.close();
  }
}

interface PutLog {
  resolved: Record<string, unknown>[][];
  rejected: { rows: Record<string, unknown>[]; err: unknown }[];
}

/** `producers` loops putting fresh keys until `stop()` is true; every put is logged by outcome. */
function produce(db: Db, producers: number, stop: () => boolean): { log: PutLog; done: Promise<void> } {
  const log: PutLog = { resolved: [], rejected: [] };
  let next = 0;
  const loops = Array.from({ length: producers }, async () => {
    while (!stop()) {
      const base = next;
      next += 25;
      const rows = Array.from({ length: 25 }, (_, i) => row(base + i, 1));
      try {
        await db.put(rows);
        log.resolved.push(rows);
      } catch (err) {
        log.rejected.push({ rows, err });
      }
    }
  });
  return { log, done: Promise.all(loops).then(() => undefined) };
}

describe('a crashed shard thread', () => {
  it('in-flight puts fail with SLUICE_SHARD_CRASHED or succeed; the shard restarts from its WAL and loses nothing', async () => {
    const dir = await tempDir('crash-inflight');
    const warnings: string[] = [];
    const db = await openTable(dir, { memtableBytes: 64 << 10, onWarning: (m) => warnings.push(m) });
    let stop = false;
    const { log, done } = produce(db, 8, () => stop);
    await until(() => log.resolved.length >= 40);
    await crashAndRestart(db, 0, warnings);
    const resolvedAtRestart = log.resolved.length;
    await until(() => log.resolved.length >= resolvedAtRestart + 40); // new puts work
    stop = true;
    await settleWithin(done, 20_000, 'puts in flight across the crash');

    for (const { err } of log.rejected) {
      expect(err).toBeInstanceOf(SluiceError);
      expect((err as SluiceError).code).toBe('SLUICE_SHARD_CRASHED');
    }
    const model = new Model();
    for (const rows of log.resolved) model.put(rows);
    // A put that failed may or may not have reached the WAL: if its rows are there, they are exact.
    const rows = (await db.scan().toArray()).map((r) => plainRow(r)!);
    const byId = new Map(rows.map((r) => [r.id as bigint, r]));
    for (const { rows: failed } of log.rejected) {
      for (const r of failed) {
        const got = byId.get(BigInt(r.id as number));
        if (got) expect(got).toEqual(expectedRow(r));
      }
    }
    for (const { rows: failed } of log.rejected) for (const r of failed) byId.delete(BigInt(r.id as number));
    expect(byId.size).toBe(model.rows.size);
    for (const [k, r] of model.rows) expect(byId.get(k)).toEqual(expectedRow(r));
    const keys = [...model.rows.keys()];
    const got = await db.getMany(keys);
    expect(got.filter((r) => r === undefined).length).toBe(0);

    await db.close();
    const again = await open(dir, { onWarning: () => undefined });
    const after = new Set((await again.scan({ columns: ['id'] }).toArray()).map((r) => r.id as bigint));
    for (const k of keys) if (!after.has(k)) expect.fail(`acknowledged key ${k} lost after reopen`);
    await again.close();
  });

  it('a crash while a frozen memtable waits to flush: replay merges with it, the flush completes, no duplicates', async () => {
    const dir = await tempDir('crash-frozen');
    const warnings: string[] = [];
    const db = await openTable(dir, { memtableBytes: 8 << 20, onWarning: (m) => warnings.push(m) });
    const model = new Model();
    const first = Array.from({ length: 300 }, (_, i) => row(i, 1));
    await db.put(first);
    model.put(first);
    const hold = gate();
    for (const lc of internals(db).broker.lifecycles) lc.holds.beforeFlush = hold.promise;
    await internals(db).broker.freeze();
    const second = Array.from({ length: 100 }, (_, i) => row(i * 3, 2)); // updates of frozen keys
    await db.put(second);
    model.put(second);
    await db.delete([1, 4]);
    model.delete([1, 4]);

    await crashAndRestart(db, 0, warnings);
    await checkModel(db, model);
    const third = [row(1, 3), row(5000, 3)];
    await db.put(third);
    model.put(third);
    await checkModel(db, model);

    for (const lc of internals(db).broker.lifecycles) lc.holds.beforeFlush = null;
    hold.open();
    await settleWithin(db.flush(), 20_000, 'db.flush() after the restart');
    expect(shardSum(db, 'frozen')).toBe(0);
    expect(shardSum(db, 'generations')).toBeGreaterThanOrEqual(2);
    await checkThenReopen(db, dir, model);
  });

  /**
   * Regression. A restarted shard used to replay from the manifest's cursor although frozen
   * memtables of its previous incarnation were still waiting to commit: it froze the same
   * records again, cut at other boundaries, and those memtables committed after the waiting
   * ones. A file holding older versions was listed as newer than the file holding the latest,
   * and once the cursor had passed both, a reopen served the older versions (acknowledged
   * writes lost). Files must be listed oldest to newest for every key.
   */
  it('a crash while frozen memtables wait to commit: files stay ordered oldest to newest, reopen finds the latest', async () => {
    const dir = await tempDir('crash-pending-commits');
    const warnings: string[] = [];
    const db = await openTable(dir, {
      shards: 1,
      memtableBytes: 16 << 10,
      onWarning: (m) => warnings.push(m),
    });
    const lc = lifecycle(db, 0);
    const model = new Model();
    const hold = gate();
    lc.holds.beforeCommit = hold.promise;
    const keys = 40;
    let version = 0;
    const round = async (): Promise<void> => {
      version++;
      const rows = Array.from({ length: keys }, (_, i) => row(i, version));
      await db.put(rows);
      model.put(rows);
    };
    while (lc.frozenCount < 3) await round();
    const versionsBeforeCrash = version;
    await crashAndRestart(db, 0, warnings);
    for (let i = 0; i < 20; i++) await round();
    lc.holds.beforeCommit = null;
    hold.open();
    await settleWithin(db.flush(), 20_000, 'db.flush() after the restart');
    expect(versionsBeforeCrash).toBeGreaterThan(2);

    // Read every file in manifest order: a key's sequence never goes down from one file to the next.
    const newest = new Map<bigint, number>();
    const inversions: string[] = [];
    for (const g of lc.manifest.generations) {
      const table = tableFromIPC(await readFile(path.join(dir, g.file)));
      const ids = table.getChild('id')!;
      const seqs = table.getChild('__seq')!;
      for (let r = 0; r < table.numRows; r++) {
        const id = BigInt(ids.get(r) as bigint);
        const seq = Number(seqs.get(r));
        const before = newest.get(id);
        if (before !== undefined && seq < before) {
          inversions.push(`key ${id}: generation ${g.gen} holds seq ${seq}, an earlier file seq ${before}`);
        }
        newest.set(id, Math.max(seq, before ?? 0));
      }
    }
    expect(inversions.slice(0, 5)).toEqual([]);
    await checkThenReopen(db, dir, model);
  });

  /**
   * Regression. A shard thread terminated inside a control-block write left the sequence lock
   * taken and the sequence odd: every reader (and the broker's retire) then spun forever. And
   * a frozen memtable the thread published but died before reporting stayed in the control
   * block, unknown to the broker, so no later memtable could retire. The dead thread is
   * simulated here by holding its lock and appending such an entry, then killing it.
   */
  it('a thread killed inside a control-block write, with a frozen memtable it never reported, wedges nothing', async () => {
    const { dir, warnings, db, lc, model } = await oneShardWith200Rows('crash-seqlock', 32 << 10);
    const cb = lc.client.control;
    // What the dying thread leaves: its lock, an odd sequence, and one more frozen entry.
    while (Atomics.compareExchange(cb, CB_LOCK, 0, 1) !== 0);
    Atomics.add(cb, CB_SEQ, 1);
    const n = Atomics.load(cb, CB_FROZEN_COUNT);
    Atomics.store(cb, CB_FROZEN_BASE + 2 * n, 999_999);
    Atomics.store(cb, CB_FROZEN_BASE + 2 * n + 1, 1);
    Atomics.store(cb, CB_FROZEN_COUNT, n + 1);
    await lc.client.crash();
    // No db.stats() here: before the repair it would spin on the sequence lock.
    await until(() => warnings.some((w) => w.startsWith('shard 0 failed')));
    await until(() => lc.client.state === 'running');
    expect(Atomics.load(cb, CB_SEQ) % 2).toBe(0);
    expect(Atomics.load(cb, CB_LOCK)).toBe(0);
    expect(warnings.some((w) => w.includes('dropped frozen memtable(s) 999999'))).toBe(true);
    await checkModel(db, model);
    const second = Array.from({ length: 300 }, (_, i) => row(i * 2, 2));
    await db.put(second);
    model.put(second);
    await settleWithin(db.flush(), 20_000, 'db.flush() after the repair');
    expect(db.stats().shards[0]!.frozen).toBe(0);
    await checkThenReopen(db, dir, model);
  });

  /**
   * Regression. A thread that dies between publishing a frozen memtable and reporting it
   * leaves an orphan in the control block, and its restart replays the orphan's records into
   * new memtables that freeze during the replay. One of those used to commit before the replay
   * was over, while the orphan still sat in front of it: the retire was refused, its throw left
   * the sequence odd, and every reader then failed. The report is dropped here (the broker's
   * view of such a death) and the replay's last WAL sync held, so its flush surely commits first.
   */
  it('a frozen memtable the dead thread never reported: memtables frozen during the replay commit only after it is gone', async () => {
    const dir = await tempDir('crash-orphan-replay');
    const warnings: string[] = [];
    const control = FaultControl.create([{ op: 'sync', path: '/wal/', action: 'DELAY', delayMs: 1500 }]);
    control.disarm();
    const db = await openTable(dir, {
      shards: 1,
      memtableBytes: 32 << 10,
      onWarning: (m) => warnings.push(m),
      faults: { shard: { plan: control.plan } },
    });
    const lc = lifecycle(db, 0);
    const model = new Model();
    let orphan: number | undefined;
    const report = lc.onFrozen.bind(lc);
    lc.onFrozen = (info) => {
      if (orphan === undefined) orphan = info.gen;
      else report(info);
    };
    let version = 0;
    const round = async (): Promise<void> => {
      version++;
      const rows = Array.from({ length: 50 }, (_, i) => row(i + 50 * (version % 7), version));
      await db.put(rows);
      model.put(rows);
    };
    while (orphan === undefined) await round();
    for (let i = 0; i < 3; i++) await round();
    const flushesBefore = lc.flushes;
    control.arm();
    await crashAndRestart(db, 0, warnings);
    expect(control.hits()).toBe(1);
    // The replay froze (and flushed) at least one memtable before it was ready.
    expect(lc.flushes).toBeGreaterThan(flushesBefore);
    expect(warnings.some((w) => w.includes(`dropped frozen memtable(s) ${orphan}`))).toBe(true);
    expect(warnings.filter((w) => w.includes('SLUICE_INTERNAL'))).toEqual([]);
    await checkModel(db, model);
    for (let i = 0; i < 10; i++) await round();
    await settleWithin(db.flush(), 20_000, 'db.flush() after the restart');
    expect(db.stats().shards[0]!.frozen).toBe(0);
    await checkThenReopen(db, dir, model);
  });

  /**
   * Regression. The broker's retire used to sleep on the control-block lock. Had a shard
   * thread died holding it, the main thread would sleep forever: the exit handler that
   * releases such a lock runs on that same thread. The dying thread's lock is simulated here
   * while a commit waits at its hold; the commit must leave the event loop free, and retire
   * once the thread is gone.
   */
  it("a retire that finds a dead thread's lock yields to the event loop and lands once the thread is gone", async () => {
    const { dir, db, lc, model } = await oneShardWith200Rows('crash-retire-lock', 64 << 10);
    const hold = gate();
    lc.holds.beforeCommit = hold.promise;
    const flushed = db.flush();
    await until(() => lc.flushes > 0);
    const cb = lc.client.control;
    while (Atomics.compareExchange(cb, CB_LOCK, 0, 1) !== 0);
    lc.holds.beforeCommit = null;
    hold.open();
    // The commit writes its manifest, then finds the lock taken. Timers still fire: the event
    // loop is free (a main thread asleep on the lock would never get here).
    const before = lc.manifest.version;
    await until(() => lc.manifest.version > before);
    let ticks = 0;
    for (let i = 0; i < 5; i++) await new Promise<void>((r) => setTimeout(() => r(void ticks++), 5));
    expect(ticks).toBe(5);
    expect(lc.frozenCount).toBe(1); // not retired while the lock is held
    await lc.client.crash(); // its exit handler releases the lock
    await settleWithin(flushed, 20_000, 'db.flush() once the lock is released');
    expect(lc.frozenCount).toBe(0);
    await until(() => lc.client.state === 'running');
    await checkThenReopen(db, dir, model);
  });

  it('repeated crashes of both shards, with writes and flushes in between, lose nothing acknowledged', async () => {
    const dir = await tempDir('crash-repeat');
    const warnings: string[] = [];
    const db = await openTable(dir, { memtableBytes: 32 << 10, onWarning: (m) => warnings.push(m) });
    const model = new Model();
    for (let round = 0; round < 4; round++) {
      for (let b = 0; b < 5; b++) {
        const rows = Array.from({ length: 60 }, (_, i) => row(round * 200 + b * 40 + i, round));
        await db.put(rows);
        model.put(rows);
      }
      if (round === 1) await db.flush();
      await crashAndRestart(db, round % 2, warnings);
      if (round < 3) await checkModel(db, model);
    }
    await checkThenReopen(db, dir, model);
  });

  it("'async' durability: acknowledged puts survive a shard crash", async () => {
    const dir = await tempDir('crash-async');
    const warnings: string[] = [];
    const db = await openTable(dir, {
      durability: 'async',
      syncIntervalMs: 60_000, // no timed fsync lands between the puts and the crash
      onWarning: (m) => warnings.push(m),
    });
    const model = new Model();
    for (let b = 0; b < 5; b++) {
      const rows = Array.from({ length: 50 }, (_, i) => row(b * 50 + i, 1));
      await db.put(rows);
      model.put(rows);
    }
    await crashAndRestart(db, 0, warnings);
    try {
      await checkModel(db, model);
    } finally {
      await db.close();
    }
  });
});
