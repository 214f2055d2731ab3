/**
 * Issue 3, item 7: thread faults. A shard worker that is terminated, exits in the middle of a
 * storage call, or dies of an uncaught exception is detected; the calls it had in flight fail
 * with a typed error (never hang); it is restarted from its WAL; nothing acknowledged is lost,
 * live or after a reopen. A flush thread that dies fails only that flush, which is retried.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultControl } from '@sluice/core';
import type { FaultRule } from '@sluice/core';
import { kInternals, open } from 'sluice';
import type { Db } from 'sluice';
import { Load } from './lib/load.js';
import { Oracle } from './lib/oracle.js';
import { Rng } from './lib/rng.js';
import {
  TINY,
  observe,
  openHarness,
  outcome,
  removeTempDirs,
  shardOfKey,
  sleep,
  tempDir,
} from './lib/table.js';

afterAll(removeTempDirs);

/** What a call in flight on a dying shard may fail with. */
const THREAD_CODES = new Set(['SLUICE_SHARD_CRASHED']);

async function untilRunning(db: Db, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (db.stats().shards.some((s) => s.state !== 'running')) {
    if (Date.now() > end) {
      throw new Error(`shards not restarted: ${JSON.stringify(db.stats().shards.map((s) => s.state))}`);
    }
    await sleep(10);
  }
}

async function verify(db: Db, oracle: Oracle, when: string): Promise<void> {
  const seen = await observe(db, oracle.keys());
  const res = oracle.check(seen.rows);
  expect(
    [
      ...res.violations.map((v) => `${v.kind} ${v.key}: ${v.detail}`),
      ...seen.garbage,
      ...seen.readMismatches,
    ],
    when,
  ).toEqual([]);
}

async function reopenAndVerify(dir: string, oracle: Oracle): Promise<void> {
  const db = await open(dir, { onWarning: () => undefined });
  try {
    await verify(db, oracle, 'after reopen');
  } finally {
    await db.close();
  }
}

describe('thread faults', () => {
  it('shard threads terminated under load: typed failures, restart from the WAL, nothing lost', async () => {
    const rng = new Rng(707);
    const dir = path.join(await tempDir('thread-kill'), 'table');
    const db = await openHarness(dir);
    const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
    const load = new Load(() => db, oracle, rng, {
      producers: 4,
      keys: 300,
      maxRows: 10,
      backoffOn: THREAD_CODES,
    });
    for (let i = 0; i < 6; i++) {
      await sleep(rng.between(50, 250));
      const lc = db[kInternals].broker.lifecycles[rng.int(TINY.shards!)]!;
      await lc.client.crash();
      await untilRunning(db);
    }
    await sleep(100);
    await load.stop();
    expect(
      Object.keys(load.codes).filter((c) => !THREAD_CODES.has(c)),
      JSON.stringify(load.codes),
    ).toEqual([]);
    expect(load.acked).toBeGreaterThan(0);
    await verify(db, oracle, 'live, after the restarts');
    await db.close();
    await reopenAndVerify(dir, oracle);
  }, 180_000);

  it.each([
    ['exits in the middle of a WAL fsync', { op: 'sync', nth: 12, action: 'EXIT_THREAD', when: 'before' }],
    ['exits right after a WAL write', { op: 'write', nth: 20, action: 'EXIT_THREAD', when: 'after' }],
    ['dies of an uncaught exception', { op: 'sync', nth: 8, action: 'THROW' }],
  ] as const)(
    'a shard thread that %s is restarted and loses nothing',
    async (_what, rule) => {
      const rng = new Rng(708);
      const dir = path.join(await tempDir('thread-exit'), 'table');
      const control = FaultControl.create([rule as FaultRule]);
      const db = await openHarness(dir, { faults: { shard: { plan: control.plan } } });
      const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
      const load = new Load(() => db, oracle, rng, {
        producers: 3,
        keys: 200,
        maxRows: 8,
        backoffOn: THREAD_CODES,
      });
      const end = Date.now() + 60_000;
      while (control.hits() === 0 && Date.now() < end) await sleep(10);
      expect(control.hits()).toBe(1);
      await sleep(200);
      await untilRunning(db);
      await sleep(200);
      await load.stop();
      expect(
        Object.keys(load.codes).filter((c) => !THREAD_CODES.has(c)),
        JSON.stringify(load.codes),
      ).toEqual([]);
      await verify(db, oracle, 'live, after the restart');
      await db.close();
      await reopenAndVerify(dir, oracle);
    },
    120_000,
  );

  it('a flush thread that exits fails that flush only; the retry lands', async () => {
    const dir = path.join(await tempDir('flush-exit'), 'table');
    const control = FaultControl.create([
      { op: 'putIfAbsent', path: '/gen/', nth: 1, action: 'EXIT_THREAD' },
    ]);
    const db = await openHarness(dir, { faults: { flush: { plan: control.plan } } });
    const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
    const load = new Load(() => db, oracle, new Rng(709), { producers: 2, keys: 200, maxRows: 8 });
    await sleep(300);
    const flushed = await outcome(db.flush(), 60_000, 'flush');
    await load.stop();
    expect(flushed).toMatchObject({ ok: true });
    expect(control.hits()).toBe(1);
    expect(db.stats().shards.reduce((n, s) => n + s.flushFailures, 0)).toBeGreaterThan(0);
    expect(load.codes).toEqual({});
    await verify(db, oracle, 'live');
    await db.close();
    await reopenAndVerify(dir, oracle);
  }, 120_000);
});
