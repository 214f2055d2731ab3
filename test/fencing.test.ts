/**
 * DESIGN.md §2.10 (one writer per shard): a second `open` of the same directory, from another
 * process, takes ownership with a higher writer epoch. The first (in-process) writer is fenced:
 * its later puts, flushes and commits fail with SLUICE_FENCED, it acknowledges nothing its
 * successor will not replay, and nothing it does afterwards damages the successor's table.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { SluiceError, open } from 'sluice';
import type { Db } from 'sluice';
import {
  FixtureProcess,
  allKeys,
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
import type { FixtureMessage } from './support.js';

afterAll(cleanupDirs);

/** The successor: test/fixtures/successor.mjs owning `dir` in a child process. */
class Successor {
  readonly proc: FixtureProcess;

  constructor(dir: string) {
    this.proc = new FixtureProcess('successor.mjs', [dir]);
  }

  async opened(): Promise<void> {
    const m = await this.proc.waitFor((x) => x.open === true || x.error !== undefined);
    if (m.error) throw new Error(`successor failed to open: ${JSON.stringify(m.error)}`);
  }

  async #ask(msg: unknown, pred: (m: FixtureMessage) => boolean): Promise<FixtureMessage> {
    const from = this.proc.messages.length;
    this.proc.send(msg);
    const m = await this.proc.waitFor(
      (x) => this.proc.messages.indexOf(x) >= from && (pred(x) || x.error !== undefined),
    );
    if (m.error) throw new Error(`successor: ${JSON.stringify(m.error)}`);
    return m;
  }

  async ids(): Promise<bigint[]> {
    const m = await this.#ask({ cmd: 'ids' }, (x) => Array.isArray(x.ids));
    return (m.ids as string[]).map((s) => BigInt(s)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async put(rows: Record<string, unknown>[]): Promise<void> {
    await this.#ask({ cmd: 'put', rows }, (x) => x.put === true);
  }

  async close(): Promise<void> {
    await this.#ask({ cmd: 'close' }, (x) => x.closed === true);
    await this.proc.exited;
  }
}

function range(from: number, to: number): bigint[] {
  return Array.from({ length: to - from }, (_, i) => BigInt(from + i));
}

function sorted(ids: readonly (bigint | string)[]): bigint[] {
  return ids.map((x) => BigInt(x)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** 'resolved' or the rejection of `p`; a call of the fenced writer must not hang either way. */
async function outcome(p: Promise<unknown>, what = 'a call of the fenced writer'): Promise<unknown> {
  return settleWithin(
    p.then(
      () => 'resolved',
      (e: unknown) => e,
    ),
    10_000,
    what,
  );
}

function expectFenced(err: unknown): void {
  expect(err).toBeInstanceOf(SluiceError);
  expect((err as SluiceError).code).toBe('SLUICE_FENCED');
}

async function closeQuietly(db: Db, ms = 20_000): Promise<void> {
  await settleWithin(
    db.close().catch(() => undefined),
    ms,
    'close of the fenced writer',
  );
}

describe('fencing by a successor in another process', () => {
  it.each([
    ['put', 1],
    ['flush', 2],
  ] as const)(
    "the fenced writer's later %s fails with SLUICE_FENCED; the successor has every acknowledged write, and keeps its own (%i shards)",
    async (firstOp, shards) => {
      const dir = await tempDir(`fence-${firstOp}`);
      const a = await openTable(dir, { shards });
      await a.put(Array.from({ length: 200 }, (_, i) => row(i, 1)));
      await a.flush(); // some rows in generation files, some only in the WAL
      await a.put(Array.from({ length: 100 }, (_, i) => row(200 + i, 1)));

      const succ = new Successor(dir);
      try {
        await succ.opened();
        if (firstOp === 'put') {
          expectFenced(await outcome(a.put([row(1000, 2), row(1001, 2)])));
          expectFenced(await outcome(a.flush()));
        } else {
          expectFenced(await outcome(a.flush()));
          expectFenced(await outcome(a.put([row(1000, 2), row(1001, 2)])));
        }
        expectFenced(await outcome(a.put([row(1002, 2)])));
        expectFenced(await outcome(a.delete([5])));

        expect(await succ.ids()).toEqual(range(0, 300));
        // (Keys whose row has no -0: rows reach the successor as JSON.)
        await succ.put([row(2001, 3), row(2002, 3)]);
        expect(await succ.ids()).toEqual([...range(0, 300), 2001n, 2002n]);
        await succ.close();
      } finally {
        await succ.proc.kill9();
      }
      await closeQuietly(a);

      // A third owner sees the successor's table: A's rejected writes never come back, and
      // nothing A did after being fenced cost the successor a write.
      const c = await open(dir, { onWarning: () => undefined });
      expect(sorted(await allKeys(c))).toEqual([...range(0, 300), 2001n, 2002n]);
      expect(plainRow(await c.get(2001))).toEqual(expectedRow(row(2001, 3)));
      expect(plainRow(await c.get(5))).toEqual(expectedRow(row(5, 1)));
      await c.close();
    },
  );

  it('the first put after a takeover settles (SLUICE_FENCED) when it spans shards that both detect the fence', async () => {
    // In-process successor, repeated: the outcome depends on which shard reports the fence first.
    for (let round = 0; round < 8; round++) {
      const dir = await tempDir('fence-span');
      const a = await openTable(dir);
      await a.put(Array.from({ length: 100 }, (_, i) => row(i, 1)));
      const b = await open(dir, { onWarning: () => undefined });
      const spanning = Array.from({ length: 200 }, (_, i) => row(1000 + i, 2));
      const put = await outcome(
        a.put(spanning),
        `round ${round}: the fenced writer's put over both shards`,
      ).then(
        (r) => ({ r, hung: undefined }),
        (e: unknown) => ({ r: undefined, hung: e }),
      );
      expect(sorted(await allKeys(b))).toEqual(range(0, 100));
      await b.close();
      const closed = await closeQuietly(a, 10_000).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (put.hung) throw put.hung; // reported first: the close hang follows from it
      expectFenced(put.r);
      if (closed) throw closed;
    }
  });

  it('a commit held across the takeover fails with SLUICE_FENCED: flush rejects instead of committing or hanging', async () => {
    const dir = await tempDir('fence-commit');
    const a = await openTable(dir);
    await a.put(Array.from({ length: 300 }, (_, i) => row(i, 1)));
    const hold = gate();
    const lcs = internals(a).broker.lifecycles;
    for (const lc of lcs) lc.holds.beforeCommit = hold.promise;
    const flushed = a.flush();
    flushed.catch(() => undefined);
    await until(() => shardSum(a, 'flushes') === 2); // generation files written, not committed

    const succ = new Successor(dir);
    try {
      await succ.opened();
      for (const lc of lcs) lc.holds.beforeCommit = null;
      hold.open();
      expectFenced(await outcome(flushed, "the fenced writer's db.flush() (its commit was fenced)"));
      expect(lcs.every((lc) => lc.manifest.generations.length === 0)).toBe(true);
      expectFenced(await outcome(a.put([row(1000, 2)])));
      // The successor replays everything from the WAL; A's unlisted files are not in its manifest.
      expect(await succ.ids()).toEqual(range(0, 300));
      await succ.close();
    } finally {
      await succ.proc.kill9();
    }
    await closeQuietly(a);
    const c = await open(dir, { onWarning: () => undefined });
    expect(sorted(await allKeys(c))).toEqual(range(0, 300));
    await c.close();
  });

  it("'async' durability: a fenced writer acknowledges no write its successor does not have", async () => {
    const dir = await tempDir('fence-async');
    const a = await openTable(dir, { durability: 'async' });
    await a.put(Array.from({ length: 100 }, (_, i) => row(i, 1)));
    const succ = new Successor(dir);
    const ackedAfter: number[] = [];
    try {
      await succ.opened();
      // Sequential puts after the takeover: each must fail, or be in the successor's table.
      let fenced: unknown;
      for (let i = 0; i < 20 && fenced === undefined; i++) {
        const r = await outcome(a.put([row(1000 + i, 2)]));
        if (r === 'resolved') ackedAfter.push(1000 + i);
        else fenced = r;
      }
      expectFenced(fenced);
      const theirs = new Set(await succ.ids());
      const lost = ackedAfter.filter((k) => !theirs.has(BigInt(k)));
      expect(lost, 'puts acknowledged by the fenced writer that its successor never sees').toEqual([]);
      await succ.close();
    } finally {
      await succ.proc.kill9();
    }
    await closeQuietly(a);
  });
});
