/**
 * Memtable buffers are recycled after retirement, guarded by reader pins in shared memory:
 * a scan that captured memtables keeps reading its own rows, however many freezes, flushes
 * and recycles happen before it is consumed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { readControl } from '@sluice/core';
import { open } from 'sluice';
import { cleanupDirs, internals, tempDir } from './support.js';

afterAll(cleanupDirs);

describe('memtable recycling', () => {
  it('a pinned snapshot survives later freezes, flushes and buffer recycling', async () => {
    const db = await open(await tempDir('recycle'), {
      schema: { id: 'int64', v: 'int32', s: 'utf8' },
      primaryKey: 'id',
      shards: 2,
      memtableBytes: 32 << 10,
      onWarning: () => undefined,
    });
    const rowsOf = (from: number, n: number, v: number) =>
      Array.from({ length: n }, (_, i) => ({ id: from + i, v, s: `v${v}-${from + i}` }));
    await db.put(rowsOf(0, 300, 1));
    const lcs = internals(db).broker.lifecycles;
    // The scan below captures each shard's active memtable (nothing is frozen yet).
    const pinned = new Set(
      lcs.map((lc) => lc.memtables.get(readControl(lc.client.control).activeGen)!.buffer),
    );
    const early = db.scan({ columns: ['id', 'v', 's'] }); // captures (and pins) the active memtables now
    const earlyGet = db.getMany([0, 150, 299]);
    // Overwrite the same keys many times, flushing so retired buffers get recycled.
    for (let round = 2; round < 12; round++) {
      await db.put(rowsOf(0, 300, round));
      await db.put(rowsOf(10_000 * round, 500, round));
      await db.flush();
    }
    const inUse = () => lcs.flatMap((lc) => [...lc.memtables.values()]);
    // While the scan holds its pins, no newer generation lives in one of its buffers...
    expect(inUse().filter((m) => pinned.has(m.buffer) && m.generation > 6)).toEqual([]);
    const rows = await early.toArray();
    expect(rows.length).toBe(300);
    expect(rows.every((r) => r.v === 1 && r.s === `v1-${String(r.id)}`)).toBe(true);
    expect((await earlyGet).map((r) => r?.v)).toEqual([1, 1, 1]);
    // The live table has the newest versions, from recycled buffers and files alike.
    const now = await db.scan({ filter: { column: 'id', op: '<', value: 300 } }).toArray();
    expect(now.length).toBe(300);
    expect(now.every((r) => r.v === 11)).toBe(true);
    expect(await db.scan().toArray()).toHaveLength(300 + 10 * 500);

    // ...and once it is read (pins released), they are recycled like any other.
    for (let round = 12; round < 20; round++) {
      await db.put(rowsOf(20_000 * round, 500, round));
      await db.flush();
    }
    expect(inUse().some((m) => pinned.has(m.buffer))).toBe(true);
    expect(lcs[0]!.recycled).toBeGreaterThan(0);
    await db.close();
  });

  it('a scan result is read once', async () => {
    const db = await open(await tempDir('once'), { schema: { id: 'int64' }, primaryKey: 'id', shards: 1 });
    await db.put([{ id: 1 }]);
    const scan = db.scan();
    expect(await scan.toArray()).toEqual([{ id: 1n }]);
    await expect(scan.toArray()).rejects.toMatchObject({ code: 'SLUICE_INVALID_OPTIONS' });
    await db.close();
  });
});
