/**
 * Issue 3, item 2: the power-loss simulation itself (PowerLossStorage + simulatePowerLoss),
 * and the engine's durability under it. The randomized loop lives in crash.test.ts.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  FaultControl,
  LocalStorage,
  closePowerLossJournal,
  simulatePowerLoss,
  storageWithFaults,
} from '@sluice/core';
import type { Db } from 'sluice';
import { Rng } from './lib/rng.js';
import { harnessRow, openHarness, outcome, removeTempDirs, sleep, tempDir, within } from './lib/table.js';

afterAll(removeTempDirs);

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

async function store(label: string): Promise<{ root: string; journal: string; storage: LocalStorage }> {
  const work = await tempDir(label);
  const root = path.join(work, 'root');
  return { root, journal: path.join(work, 'power.journal'), storage: new LocalStorage(root) };
}

describe('PowerLossStorage + simulatePowerLoss', () => {
  it('keeps synced bytes, drops unsynced ones, keeps names made durable', async () => {
    const { root, journal, storage } = await store('pl-unit');
    const s = storageWithFaults(storage, { powerLoss: { journal } });
    const f = await s.openAppend('a/wal');
    await f.write([bytes('synced|')]);
    await f.sync();
    await f.write([bytes('unsynced')]);
    await s.putIfAbsent('a/obj', bytes('whole object'));
    const r = simulatePowerLoss(root, journal, { random: () => 0.9, tornTails: false });
    closePowerLossJournal(journal);
    expect(readFileSync(path.join(root, 'a/wal'), 'utf8')).toBe('synced|');
    expect(readFileSync(path.join(root, 'a/obj'), 'utf8')).toBe('whole object');
    expect(r).toMatchObject({ filesCut: 1, bytesDropped: 8 });
  });

  it('a torn tail keeps a prefix of the unsynced bytes, possibly scrambled', async () => {
    const { root, journal, storage } = await store('pl-torn');
    const s = storageWithFaults(storage, { powerLoss: { journal } });
    const f = await s.openAppend('wal');
    await f.write([bytes('0123456789')]);
    await f.sync();
    await f.write([bytes('abcdefghij')]);
    const r = simulatePowerLoss(root, journal, { random: new Rng(7).fn() });
    closePowerLossJournal(journal);
    const after = readFileSync(path.join(root, 'wal'), 'utf8');
    expect(after.startsWith('0123456789')).toBe(true);
    expect(after.length).toBeLessThanOrEqual(20);
    expect(r.filesCut).toBe(1);
  });

  it('brings back a name whose delete was in flight, and drops one whose creation was', async () => {
    const { root, journal, storage } = await store('pl-names');
    await storage.putIfAbsent('old', bytes('old object')); // before the journal: durable
    // The journal as a process killed inside delete('old') and inside putIfAbsent('half') leaves it.
    mkdirSync(`${journal}.d`);
    linkSync(path.join(root, 'old'), path.join(`${journal}.d`, 'b1'));
    unlinkSync(path.join(root, 'old'));
    writeFileSync(path.join(root, 'half'), 'created, never acknowledged');
    writeFileSync(
      journal,
      '{"e":"delete-begin","p":"old","b":"b1"}\n{"e":"put-begin","p":"half"}\n{"e":"put","p":"torn',
    );
    const r = simulatePowerLoss(root, journal, { random: () => 0.1 });
    expect(readFileSync(path.join(root, 'old'), 'utf8')).toBe('old object');
    expect(existsSync(path.join(root, 'half'))).toBe(false);
    expect(r).toMatchObject({ events: 2, namesRestored: 1, namesDropped: 1 });
  });
});

async function waitRunning(db: Db): Promise<void> {
  const end = Date.now() + 30_000;
  while (db.stats().shards.some((s) => s.state !== 'running')) {
    if (Date.now() > end)
      throw new Error(`shards not running: ${JSON.stringify(db.stats().shards.map((s) => s.state))}`);
    await sleep(10);
  }
}

describe('engine under power loss', () => {
  /**
   * Regression. Before the fix, a shard that restarts replays the WAL bytes it finds, including a
   * tail that was written but never fsynced (here: the fsync failed), publishes them as durable
   * and continues the log in a NEW segment. Nothing ever fsyncs the replayed tail, so a power
   * cut drops it, the new segment no longer continues the old one, and the next replay cuts
   * the log there: every write acknowledged after the restart is lost. The same happens after
   * kill -9 followed by a reopen (the page cache still holds the unsynced tail) and a power cut.
   */
  it('regression: writes acknowledged after a WAL replay survive a power cut (replayed tail must be fsynced)', async () => {
    const work = await tempDir('pl-replay');
    const dir = path.join(work, 'table');
    const journal = path.join(work, 'power.journal');
    const pl = { powerLoss: { journal } };
    const plan = FaultControl.create([{ op: 'sync', nth: 2, action: 'EIO' }]);
    const db = await openHarness(dir, {
      shards: 1,
      faults: { shard: { ...pl, plan: plan.plan }, flush: pl, main: pl },
    });
    await within(db.put([harnessRow(1, 1)]), 20_000, 'put 1'); // fsync 1: durable
    const second = await outcome(db.put([harnessRow(2, 2)]), 20_000, 'put 2'); // fsync 2 fails
    expect(second.ok).toBe(false);
    expect(['SLUICE_IO', 'SLUICE_SHARD_CRASHED']).toContain(!second.ok && second.code);
    await waitRunning(db); // the shard restarted and replayed record 2 from the page cache
    await within(db.put([harnessRow(3, 3)]), 20_000, 'put 3'); // acknowledged after the restart
    await db.close();
    closePowerLossJournal(journal);
    simulatePowerLoss(dir, journal, { random: () => 0.99, tornTails: false });
    const warnings: string[] = [];
    const again = await openHarness(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
    try {
      expect((await again.get(1))?.v).toBe(1n);
      expect((await again.get(3))?.v, `acknowledged put 3 lost; warnings: ${warnings.join(' | ')}`).toBe(3n);
    } finally {
      await again.close();
    }
  });
});
