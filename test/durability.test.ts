/**
 * DESIGN.md §2.7 (durable ack) and §2.1 (read-your-writes) for both durability modes:
 * 'sync' acknowledgements survive kill -9 of the writing process (several producers, twice
 * in a row); 'async' puts are readable the moment they resolve and all survive close + reopen.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import {
  CRASH_SCHEMA,
  ackedBatches,
  allKeys,
  batchRows,
  checkRecovered,
  cleanupDirs,
  expectedBatchRow,
  settleWithin,
  spawnWriter,
  tempDir,
} from './support.js';

afterAll(cleanupDirs);

const ROWS = 10;

describe("durability: 'sync'", () => {
  it('one put at a time costs one fsync each, and each put is readable when it resolves', async () => {
    const db = await open(await tempDir('dur-one-sync'), {
      schema: { id: 'int64', v: 'int32' },
      primaryKey: 'id',
      shards: 1,
    });
    for (let i = 0; i < 20; i++) {
      await db.put([{ id: i, v: i }]);
      expect(await db.get(i)).toEqual({ id: BigInt(i), v: i });
    }
    expect(db.stats().shards[0]!.walSyncs).toBe(20);
    await db.delete([3, 4]);
    expect(db.stats().shards[0]!.walSyncs).toBe(21);
    expect(await db.getMany([3, 4, 5])).toEqual([undefined, undefined, { id: 5n, v: 5 }]);
    await db.close();
  });

  it('acknowledged batches of concurrent producers survive kill -9, twice in a row', async () => {
    const dir = await tempDir('dur-sync');
    const producers = 4;
    const countAcks = (msgs: Record<string, unknown>[]) => msgs.filter((m) => m.ack).length;

    // Round 1: creates the table; killed mid-stream.
    const first = spawnWriter({
      dir,
      rows: ROWS,
      producers,
      options: {
        schema: CRASH_SCHEMA,
        primaryKey: 'id',
        shards: 2,
        durability: 'sync',
        memtableBytes: 64 << 10,
      },
    });
    try {
      await first.waitFor(() => countAcks(first.messages) >= 100);
    } finally {
      await first.kill9();
    }
    const acked1 = ackedBatches(first, producers);
    expect(acked1.every((n) => n > 0)).toBe(true);

    // Round 2: reopens the crashed table (recovery + new WAL segment), writes new keys, killed again.
    const second = spawnWriter({ dir, rows: ROWS, producers, producerBase: producers, options: {} });
    try {
      await second.waitFor(() => countAcks(second.messages) >= 100);
    } finally {
      await second.kill9();
    }
    const acked2 = ackedBatches(second, 2 * producers);
    const acked = acked1.map((n, p) => Math.max(n, acked2[p]!)).concat(acked2.slice(producers));
    expect(acked.slice(producers).every((n) => n > 0)).toBe(true);

    const db = await settleWithin(open(dir, { onWarning: () => undefined }), 30_000, 'reopen');
    try {
      await checkRecovered(db, acked, ROWS);
      const bound = acked.reduce((n, a) => n + (a + 1) * ROWS, 0);
      expect((await allKeys(db)).length).toBeLessThanOrEqual(bound);
      // The recovered table takes writes and keeps them.
      await db.put(batchRows(9, 0, ROWS));
      expect(await db.get(9_000_000)).toEqual(expectedBatchRow(9, 0, 0, ROWS));
    } finally {
      await db.close();
    }
    const again = await open(dir, { onWarning: () => undefined });
    await checkRecovered(again, [...acked, 0, 1], ROWS); // producer 9 wrote batch 0
    await again.close();
  });
});

describe("durability: 'async'", () => {
  it('every put is readable when it resolves; after close + reopen all rows are there', async () => {
    const dir = await tempDir('dur-async');
    const db = await open(dir, {
      schema: CRASH_SCHEMA,
      primaryKey: 'id',
      shards: 2,
      durability: 'async',
      memtableBytes: 64 << 10,
      onWarning: () => undefined,
    });
    const producers = 4;
    const batches = 60;
    const misses: string[] = [];
    await Promise.all(
      Array.from({ length: producers }, async (_, p) => {
        for (let b = 0; b < batches; b++) {
          await db.put(batchRows(p, b, ROWS));
          // Read-your-writes the moment the put resolves, from the same and from the other shard.
          const got = await db.getMany([0, ROWS - 1].map((r) => p * 1_000_000 + b * ROWS + r));
          if (got.some((r) => r === undefined)) misses.push(`p${p} b${b}`);
        }
      }),
    );
    expect(misses).toEqual([]);
    const acked = Array.from({ length: producers }, () => batches);
    await checkRecovered(db, acked, ROWS);
    expect((await allKeys(db)).length).toBe(producers * batches * ROWS);
    await db.close();

    const again = await open(dir, { onWarning: () => undefined });
    await checkRecovered(again, acked, ROWS);
    expect((await allKeys(again)).length).toBe(producers * batches * ROWS);
    expect(again.stats().recovery.records).toBeGreaterThan(0);
    await again.close();
  });
});
