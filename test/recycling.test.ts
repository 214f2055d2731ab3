/**
 * Memtable buffers are recycled after retirement, guarded by reader pins in shared memory:
 * a scan that captured memtables keeps reading its own rows, however many freezes, flushes
 * and recycles happen before it is consumed.
 */
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import type { TransferListItem } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultControl, readControl } from '@sluice/core';
import { open } from 'sluice';
import { cleanupDirs, internals, tempDir } from './support.js';

afterAll(cleanupDirs);

const TABLE = { schema: { id: 'int64', v: 'int32', s: 'utf8' }, primaryKey: 'id' } as const;

/** Rows `from`, ..., `from + n - 1`, all at version `v`. */
function rowsOf(from: number, n: number, v: number): { id: number; v: number; s: string }[] {
  return Array.from({ length: n }, (_, i) => ({ id: from + i, v, s: `v${v}-${from + i}` }));
}

describe('memtable recycling', () => {
  it('a pinned snapshot survives later freezes, flushes and buffer recycling', async () => {
    const db = await open(await tempDir('recycle'), {
      ...TABLE,
      shards: 2,
      memtableBytes: 32 << 10,
      onWarning: () => undefined,
    });
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
    const newestBefore = Math.max(...inUse().map((m) => m.generation));
    for (let round = 12; round < 20; round++) {
      await db.put(rowsOf(20_000 * round, 500, round));
      await db.flush();
    }
    const held = lcs.flatMap((lc) => [...inUse(), ...lc.retainedMemtables.map((r) => r.memtable)]);
    expect(held.some((m) => pinned.has(m.buffer) && m.generation > newestBefore)).toBe(true);
    expect(lcs[0]!.recycled).toBeGreaterThan(0);
    await db.close();
  });

  it('a flushed generation is read from its retired memtable until the buffer is recycled, then from its file', async () => {
    // No fault rules: the plan only counts the main thread's storage calls (file loads are `get`s).
    const storage = FaultControl.create([]);
    const db = await open(await tempDir('retained'), {
      ...TABLE,
      shards: 1,
      memtableBytes: 32 << 10,
      onWarning: () => undefined,
      faults: { main: { plan: storage.plan } },
    });
    const lc = internals(db).broker.lifecycles[0]!;
    await db.put(rowsOf(0, 300, 1));
    await db.put(rowsOf(0, 10, 2)); // newer versions in the same memtable
    await db.delete([5, 250]); // tombstones in it too
    await db.flush();
    const gen = lc.manifest.generations.at(-1)!.gen;
    const kept = lc.retained(gen);
    expect(kept?.rows).toBe(312);
    const expectRow = (id: number, r: Record<string, unknown> | undefined): void => {
      const v = id === 5 || id === 250 || id >= 300 ? undefined : id < 10 ? 2 : 1;
      expect(r === undefined ? undefined : [r.id, r.v, r.s], `id ${id}`).toEqual(
        v === undefined ? undefined : [BigInt(id), v, `v${v}-${id}`],
      );
    };
    const ids = [0, 5, 9, 10, 250, 299, 300];
    const loads = storage.calls('get');
    for (const id of ids) expectRow(id, await db.get(id));
    (await db.getMany(ids)).forEach((r, i) => expectRow(ids[i]!, r));
    const t = await db.scan({ columns: ['id', 'v', 's'] }).toArray();
    expect(t).toHaveLength(298);
    for (const r of t) expectRow(Number(r.id), r);
    // All of it from the memtable: the file was never read.
    expect(storage.calls('get')).toBe(loads);
    // The newest row per key is worked out once; a second scan reuses it and reads the same.
    expect(kept!.latest).toHaveLength(298 + 2); // tombstones are newest rows too
    const again = await db.scan({ columns: ['id', 'v', 's'] }).toArray();
    expect(again).toEqual(t);
    // A scan captured now pins the retained memtable: later flushes cannot recycle it.
    const early = db.scan({ columns: ['id', 'v', 's'] });
    for (let round = 3; round < 12; round++) {
      await db.put(rowsOf(1000 * round, 400, round));
      await db.flush();
    }
    expect(
      lc.memtables.size > 0 && [...lc.memtables.values()].some((m) => m.buffer === kept!.memtable.buffer),
    ).toBe(false);
    const earlyRows = await early.toArray();
    expect(earlyRows).toHaveLength(298);
    for (const r of earlyRows) expectRow(Number(r.id), r);
    // Released, it is recycled like any retired memtable; the generation is then read from its file.
    for (let round = 12; round < 20; round++) {
      await db.put(rowsOf(1000 * round, 400, round));
      await db.flush();
    }
    expect(lc.retained(gen)).toBeUndefined();
    const before = storage.calls('get');
    for (const id of ids) expectRow(id, await db.get(id));
    expect(storage.calls('get')).toBeGreaterThan(before);
    const all = await db.scan({ filter: { column: 'id', op: '<', value: 1000 } }).toArray();
    expect(all).toHaveLength(298);
    for (const r of all) expectRow(Number(r.id), r);
    await db.close();
  });

  it('an attached thread reads a flushed generation from its retained memtable, and from the file once the buffer is recycled', async () => {
    const dir = await tempDir('retained-attach');
    const db = await open(dir, { ...TABLE, shards: 1, memtableBytes: 32 << 10, onWarning: () => undefined });
    const lc = internals(db).broker.lifecycles[0]!;
    await db.put(rowsOf(0, 300, 1));
    await db.put(rowsOf(0, 10, 2));
    await db.delete([5, 250]);
    await db.flush();
    const entry = lc.manifest.generations.at(-1)!;
    expect(lc.retained(entry.gen)).toBeDefined();

    const worker = new Worker(new URL('./fixtures/attach-reader.mjs', import.meta.url));
    const ask = async (msg: object, transfer: TransferListItem[] = []): Promise<Record<string, unknown>> => {
      worker.postMessage(msg, transfer);
      const [reply] = (await once(worker, 'message')) as [Record<string, unknown>];
      return reply;
    };
    try {
      const descriptor = db.handle();
      expect(await ask({ descriptor }, [descriptor.registry])).toEqual({ attached: true });
      const ids = [0, 5, 9, 10, 250, 299, 300];
      const columns = ['id', 'v', 's'];
      const expected = (id: number): unknown => {
        const v = id === 5 || id === 250 || id >= 300 ? undefined : id < 10 ? 2 : 1;
        return v === undefined ? undefined : { id: BigInt(id), v, s: `v${v}-${id}` };
      };
      const check = (reply: Record<string, unknown>): void => {
        expect(reply.error).toBeUndefined();
        expect(reply.gets).toEqual(ids.map(expected));
        expect(reply.many).toEqual(ids.map(expected));
        const scan = reply.scan as { id: bigint }[];
        expect(scan).toHaveLength(298);
        for (const r of scan) expect(r).toEqual(expected(Number(r.id)));
      };
      const file = path.join(dir, entry.file);
      const hide = (): Promise<void> => rename(file, `${file}.hidden`);
      const restore = (): Promise<void> => rename(`${file}.hidden`, file);

      // With the file out of the way, only memory can answer.
      await hide();
      check(await ask({ ids, columns }));
      await restore();

      // Recycled into a later generation, the buffer no longer holds this one. The thread still
      // lists it (it keeps the last four announced), so its pin must fail: reads go to the
      // file, and fail while it is hidden, rather than read the reused memory.
      for (let round = 3; round < 5; round++) {
        await db.put(rowsOf(1000 * round, 400, round));
        await db.flush();
      }
      expect(lc.retained(entry.gen)).toBeUndefined();
      const filter = { column: 'id', op: '<', value: 1000 };
      await hide();
      expect((await ask({ ids, columns, filter })).error).toMatch(/^SLUICE_CORRUPT_GENERATION: /);
      await restore();
      check(await ask({ ids, columns, filter }));
      expect(await ask({ close: true })).toEqual({ closed: true });
    } finally {
      await worker.terminate();
      await db.close();
    }
  });

  it('a scan result is read once', async () => {
    const db = await open(await tempDir('once'), { schema: { id: 'int64' }, primaryKey: 'id', shards: 1 });
    await db.put([{ id: 1 }]);
    const scan = db.scan();
    expect(await scan.toArray()).toEqual([{ id: 1n }]);
    await expect(scan.toArray()).rejects.toMatchObject({ code: 'SLUICE_INVALID_OPTIONS' });
    await db.close();
  });

  it.each([8 << 20, 32 << 10])(
    'a shard with %i-byte memtables cycles through three buffers however often it flushes',
    async (memtableBytes) => {
      const db = await open(await tempDir('held'), { ...TABLE, shards: 1, memtableBytes });
      for (let round = 1; round <= 8; round++) {
        await db.put(rowsOf(round * 1000, 200, round));
        await db.flush();
      }
      const [s] = db.stats().shards;
      expect(s!.flushes).toBe(8);
      expect(s!.stalls).toBe(0);
      // Active, the one being flushed, one spare; every later memtable reuses a flushed one's buffer.
      expect(s!.memtablesAllocated).toBe(3);
      // A buffer is sized from memtableBytes plus room for one largest value: within a quarter more.
      expect(s!.memtableHeldBytes).toBeGreaterThan(2 * memtableBytes);
      expect(s!.memtableHeldBytes).toBeLessThanOrEqual(3 * 1.25 * memtableBytes);
      expect(await db.scan().toArray()).toHaveLength(8 * 200);
      await db.close();
    },
  );

  it('a shard whose memtables fill faster than the broker hands out spares asks for them, and keeps two from then on', async () => {
    const db = await open(await tempDir('stall'), { ...TABLE, shards: 1, memtableBytes: 32 << 10 });
    const lc = internals(db).broker.lifecycles[0]!;
    expect(lc.spareTarget).toBe(1);
    // About 90 KB of rows: records of at most a quarter memtable, several memtables in all.
    const put = db.put(rowsOf(0, 3000, 1)); // enqueued before put returns
    // Keep the main thread (the broker) busy: it cannot hand out spares, so the shard uses
    // its one spare and then has to wait for another.
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const deadline = Date.now() + 20_000;
    while (db.stats().shards[0]!.stalls === 0 && Date.now() < deadline) Atomics.wait(flag, 0, 0, 5);
    expect(db.stats().shards[0]!.stalls).toBeGreaterThan(0);
    await put; // the shard's request is served once the broker runs again
    expect(lc.spareTarget).toBe(2);
    await db.put(rowsOf(10_000, 3000, 2));
    await db.flush();
    expect(await db.scan().toArray()).toHaveLength(6000);
    await db.close();
  });

  it('a put that fills memtables past maxUnflushedBytes still gets the spares it needs to finish', async () => {
    const db = await open(await tempDir('over-limit'), {
      ...TABLE,
      shards: 1,
      memtableBytes: 32 << 10,
      maxUnflushedBytes: 64 << 10,
    });
    // About 90 KB in one put: the memtables it fills cannot flush before all of it is applied,
    // so they pass the limit midway, and the shard must still get spares for the rest.
    await db.put(rowsOf(0, 3000, 1));
    await db.flush();
    expect(await db.scan().toArray()).toHaveLength(3000);
    expect(db.stats().shards[0]!.flushes).toBeGreaterThan(1);
    await db.close();
  });

  it('a put larger than four memtables for one shard is refused whole: it could never be flushed', async () => {
    const db = await open(await tempDir('huge-put'), { ...TABLE, shards: 1, memtableBytes: 32 << 10 });
    await db.put(rowsOf(0, 10, 1));
    const err = await db.put(rowsOf(100, 6000, 2)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SLUICE_INVALID_ROW', details: { shard: 0, limit: 4 * (32 << 10) } });
    expect((err as Error).message).toMatch(/one put may hold at most 131072 bytes per shard/);
    expect(await db.scan().toArray()).toHaveLength(10);
    await db.put(rowsOf(100, 3000, 2)); // the same rows in smaller puts go in
    await db.put(rowsOf(3100, 3000, 2));
    expect(await db.scan().toArray()).toHaveLength(6010);
    await db.close();
  });
});
