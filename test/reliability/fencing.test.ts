/**
 * Issue 3, item 6: fencing. Two owners of the same table, in this process and across two
 * processes: exactly one can write at a time; the fenced one's puts, flushes and commits fail
 * with SLUICE_FENCED; every write it acknowledged before being fenced is readable by the
 * successor, and stays readable after the successor's own writes and a further reopen.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { kInternals, open } from 'sluice';
import type { Db } from 'sluice';
import { IngestChild, applyJournal } from './lib/child.js';
import { Oracle } from './lib/oracle.js';
import { Rng } from './lib/rng.js';
import {
  TINY,
  harnessRow,
  observe,
  openHarness,
  outcome,
  putEffects,
  removeTempDirs,
  shardOfKey,
  sleep,
  tempDir,
  within,
} from './lib/table.js';
import type { HarnessRow } from './lib/table.js';

afterAll(removeTempDirs);

const rows = (from: number, to: number, v: number): HarnessRow[] =>
  Array.from({ length: to - from }, (_, i) => harnessRow(from + i, v + i));

async function checkAll(db: Db, oracle: Oracle, when: string): Promise<void> {
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

describe('fencing, two owners in one process', () => {
  it('the fenced owner cannot put or flush; the successor has all it acknowledged', async () => {
    const dir = path.join(await tempDir('fence1'), 'table');
    const oracle = new Oracle((k) => shardOfKey(k, 2));
    const a = await openHarness(dir);
    const putA = rows(0, 100, 64);
    oracle.intent(1, putEffects(putA));
    await a.put(putA);
    oracle.ack(1);
    await a.flush();
    const putA2 = rows(80, 120, 128);
    oracle.intent(2, putEffects(putA2));
    await a.put(putA2);
    oracle.ack(2);

    const b = await openHarness(dir);
    await checkAll(b, oracle, 'successor after takeover');
    const late = rows(200, 210, 192);
    oracle.intent(3, putEffects(late));
    const latePut = await outcome(a.put(late), 20_000, 'fenced put');
    expect(latePut).toMatchObject({ ok: false, code: 'SLUICE_FENCED' });
    oracle.fail(3, 'SLUICE_FENCED');
    expect(await outcome(a.put(late), 20_000, 'fenced put 2')).toMatchObject({
      ok: false,
      code: 'SLUICE_FENCED',
    });
    expect(await outcome(a.flush(), 20_000, 'fenced flush')).toMatchObject({
      ok: false,
      code: 'SLUICE_FENCED',
    });

    const putB = rows(50, 150, 256);
    oracle.intent(4, putEffects(putB));
    await b.put(putB);
    oracle.ack(4);
    await b.flush();
    await checkAll(b, oracle, 'successor after its own writes');
    await a.close().catch(() => undefined);
    await b.close();
  });

  /**
   * Regression. Before the fix, when a commit is refused with SLUICE_FENCED, the lifecycle hands
   * the error to the broker and returns, but never rejects the db.flush() calls waiting for
   * that generation to retire: the fenced owner's flush hangs forever instead of failing.
   */
  it('regression: a commit refused with SLUICE_FENCED fails the waiting flush instead of hanging it', async () => {
    const dir = path.join(await tempDir('fence-commit'), 'table');
    const a = await openHarness(dir);
    await a.put(rows(0, 100, 64));
    // A frozen memtable of A waits at its commit while B takes over.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    for (const lc of a[kInternals].broker.lifecycles) lc.holds.beforeCommit = held;
    const flushA = a.flush();
    flushA.catch(() => undefined);
    await sleep(50);
    const b = await openHarness(dir);
    for (const lc of a[kInternals].broker.lifecycles) lc.holds.beforeCommit = null;
    release(); // A's commit now meets B's manifest version
    try {
      expect(await outcome(flushA, 20_000, 'fenced flush')).toMatchObject({
        ok: false,
        code: 'SLUICE_FENCED',
      });
      expect(a.stats().shards.reduce((n, s) => n + s.commitFailures, 0)).toBeGreaterThan(0);
    } finally {
      await Promise.allSettled([within(a.close(), 20_000, 'close'), b.close()]);
    }
  });

  /**
   * Regression. Before the fix, a writer fenced while its put is in flight appends that record to
   * its own WAL segment, with an LSN the successor has already used to start its segment (the
   * fence check runs after write + fsync). The records are never acknowledged, but at the next
   * replay the old segment now runs past the start of the successor's segment: replay sees
   * "segment starts at LSN x, expected y" and cuts the log, dropping everything the successor
   * acknowledged.
   */
  it('regression: a fenced writer appending after the takeover does not cut the successor log', async () => {
    const dir = path.join(await tempDir('fence2'), 'table');
    const oracle = new Oracle((k) => shardOfKey(k, 1));
    const a = await openHarness(dir, { shards: 1 });
    oracle.intent(1, putEffects(rows(0, 10, 64)));
    await a.put(rows(0, 10, 64));
    oracle.ack(1);
    const b = await openHarness(dir, { shards: 1 });
    // A does not know yet: its next put is written to its WAL, fsynced, then refused.
    oracle.intent(2, putEffects(rows(100, 110, 128)));
    const refused = await outcome(a.put(rows(100, 110, 128)), 20_000, 'fenced put');
    expect(refused).toMatchObject({ ok: false, code: 'SLUICE_FENCED' });
    oracle.fail(2, 'SLUICE_FENCED');
    oracle.intent(3, putEffects(rows(200, 210, 192)));
    await b.put(rows(200, 210, 192));
    oracle.ack(3);
    await a.close().catch(() => undefined);
    await b.close();
    const warnings: string[] = [];
    const c = await openHarness(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
    try {
      const seen = await observe(c, oracle.keys());
      const res = oracle.check(seen.rows);
      expect(
        res.violations.map((v) => `${v.kind} ${v.key}: ${v.detail}`),
        warnings.join(' | '),
      ).toEqual([]);
    } finally {
      await c.close();
    }
  });
});

describe('fencing, two processes', () => {
  it('a successor process takes over a writing process: one owner, nothing acknowledged lost', async () => {
    const rng = new Rng(606);
    const work = await tempDir('fence-proc');
    const dir = path.join(work, 'table');
    const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
    let nextOp = 10_000_000;
    for (let round = 0; round < 1; round++) {
      const ackJournal = path.join(work, `ack-${round}.log`);
      const child = new IngestChild({
        dir,
        ackJournal,
        seed: rng.seed(),
        opBase: round * 1_000_000,
        producers: 3,
        keys: 300,
        flushEveryMs: 40,
        hangMs: 10_000,
        options: round === 0 ? { ...TINY } : {},
      });
      expect(await child.ready).toBe(true);
      await sleep(rng.between(100, 400));
      const successor = await within(openHarness(dir), 60_000, 'successor open');
      // The fenced child notices on its own (puts, flush and close fail) and exits.
      const exit = await Promise.race([child.exited, sleep(45_000).then(() => undefined)]);
      if (exit === undefined) await child.kill9();
      const j = applyJournal(ackJournal, oracle);
      expect(j.acked).toBeGreaterThan(0);
      await checkAll(successor, oracle, `round ${round}: successor`);
      const own = rows(1000, 1100, nextOp * 64);
      oracle.intent(nextOp, putEffects(own));
      await successor.put(own);
      oracle.ack(nextOp++);
      await successor.flush();
      await successor.close();
      const third = await openHarness(dir);
      try {
        await checkAll(third, oracle, `round ${round}: reopen after the successor`);
        oracle.settle((await observe(third)).rows);
      } finally {
        await third.close();
      }
      // The fenced process stopped on its own, every refusal (puts, flushes) being SLUICE_FENCED.
      expect(exit, `fenced child did not stop by itself: ${child.stderr.slice(-1000)}`).toMatchObject({
        code: 0,
      });
      expect(j.codes.SLUICE_FENCED ?? 0, JSON.stringify(j.codes)).toBeGreaterThan(0);
      expect(
        Object.keys(j.codes).filter((c) => c !== 'SLUICE_FENCED'),
        JSON.stringify(j.codes),
      ).toEqual([]);
      expect(
        Object.keys(j.flushFailed).filter((c) => c !== 'SLUICE_FENCED'),
        JSON.stringify(j.flushFailed),
      ).toEqual([]);
    }
  }, 240_000);

  it('two processes opening at once: each shard has one owner at a time', async () => {
    const dir = path.join(await tempDir('fence-race'), 'table');
    const first = await openHarness(dir);
    await first.close();
    const [x, y] = await Promise.all([openHarness(dir), open(dir, { onWarning: () => undefined })]);
    try {
      // Whatever the interleaving, a shard's writes succeed for exactly one of them: try one key per shard.
      for (let k = 0; k < 40; k++) {
        const rx = await outcome(x.put([harnessRow(k, 1)]), 20_000, 'x put');
        const ry = await outcome(y.put([harnessRow(k, 2)]), 20_000, 'y put');
        expect(rx.ok && ry.ok, `key ${k}: both owners acknowledged a write`).toBe(false);
        for (const r of [rx, ry]) if (!r.ok) expect(r.code).toBe('SLUICE_FENCED');
      }
    } finally {
      await Promise.allSettled([x.close(), y.close()]);
    }
  });
});
