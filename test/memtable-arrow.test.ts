/**
 * DESIGN.md §3: any thread can wrap a memtable as Arrow vectors without copying, from its
 * SharedArrayBuffer and the schema alone (`db.memtables()` + `memtableToArrow`).
 */
import { Worker } from 'node:worker_threads';
import type { Table } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { SluiceError, memtableToArrow } from 'sluice';
import type { MemtableHandle } from 'sluice';
import { cleanupDirs, gate, internals, openTable, tempDir } from './support.js';

afterAll(cleanupDirs);

const BIG = 2n ** 60n + 7n;

function rows(from: number, n: number, version: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => {
    const id = from + i;
    return {
      id: id === 0 ? BIG : id,
      ts: 1_700_000_000_000 + id,
      value: version * 1000 + id + 0.25,
      tag: id % 5 === 0 ? null : id % 7 === 0 ? '' : `ü-${version}-${id}`,
      emb: [id, -id, 0.5, version],
      n: id % 3 === 0 ? null : id * version,
      ok: id % 2 === 0,
      f: id / 4,
    };
  });
}

describe('memtables as Arrow vectors, zero copy', () => {
  it('every column is a view of the shared buffer and holds the rows in write order, tombstones included', async () => {
    const db = await openTable(await tempDir('mt-arrow'), { shards: 1 });
    await db.put(rows(0, 50, 1));
    await db.put(rows(10, 5, 2)); // upserts: later rows of the same keys
    await db.delete([20, 21]);
    const snap = db.memtables();
    try {
      expect(snap.memtables.map((h) => [h.shard, h.state, h.rows])).toEqual([[0, 'active', 57]]);
      const batch = memtableToArrow(snap.memtables[0]!);
      const buffer = snap.memtables[0]!.buffer;
      for (const name of ['id', 'ts', 'value', 'tag', 'n', 'ok', 'f', '__op', '__seq']) {
        expect(batch.getChild(name)!.data[0]!.values.buffer, name).toBe(buffer);
      }
      expect(batch.getChild('emb')!.data[0]!.children[0]!.values.buffer).toBe(buffer);
      expect(batch.numRows).toBe(57);
      const ids = [...batch.getChild('id')!].map(String);
      expect(ids.slice(0, 3)).toEqual([String(BIG), '1', '2']);
      expect(ids.slice(50)).toEqual(['10', '11', '12', '13', '14', '20', '21']);
      const ops = [...batch.getChild('__op')!];
      expect(ops.slice(0, 55).every((o) => o === 1)).toBe(true);
      expect(ops.slice(55)).toEqual([2, 2]);
      const seq = [...batch.getChild('__seq')!] as number[];
      expect(seq[49]! < seq[50]! && seq[54]! < seq[55]!).toBe(true);
      const row = batch.get(51)!.toJSON() as Record<string, unknown>;
      expect(row.tag).toBe('ü-2-11');
      expect(row.value).toBe(2011.25);
      expect(row.n).toBe(22);
      expect(row.ok).toBe(false);
      expect([...(row.emb as Iterable<number>)]).toEqual([11, -11, 0.5, 2]);
      expect(batch.get(5)!.toJSON().tag).toBeNull();
      expect(batch.get(7)!.toJSON().tag).toBe('');
      expect(batch.get(3)!.toJSON().n).toBeNull();
      expect(batch.get(0)!.toJSON().ts).toBe(1_700_000_000_000);
      // A tombstone carries only its key.
      const tomb = batch.get(56)!.toJSON() as Record<string, unknown>;
      expect([String(tomb.id), tomb.value, tomb.tag, tomb.emb]).toEqual(['21', null, null, null]);
    } finally {
      snap.release();
      await db.close();
    }
  });

  it('another thread wraps the same buffers, active and frozen, and sees the same rows', async () => {
    const db = await openTable(await tempDir('mt-arrow-thread'), { shards: 2 });
    const hold = gate();
    for (const lc of internals(db).broker.lifecycles) lc.holds.beforeFlush = hold.promise;
    await db.put(rows(0, 40, 1));
    await internals(db).broker.freeze();
    await db.put(rows(100, 30, 1));
    const snap = db.memtables();
    const worker = new Worker(new URL('./fixtures/memtable-reader.mjs', import.meta.url));
    try {
      const states = snap.memtables.map((h) => h.state);
      expect(states.filter((s) => s === 'frozen').length).toBe(2);
      expect(states.filter((s) => s === 'active').length).toBe(2);
      const got = await new Promise<Record<string, unknown>[]>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        worker.postMessage(snap.memtables);
      });
      const here = snap.memtables.map((h: MemtableHandle) => {
        const b = memtableToArrow(h);
        return { rows: b.numRows, ids: [...b.getChild('id')!].map(String), tags: [...b.getChild('tag')!] };
      });
      expect(got.map((g) => g.sameBuffer)).toEqual(snap.memtables.map(() => true));
      expect(got.map((g) => ({ rows: g.rows, ids: g.ids, tags: g.tags }))).toEqual(here);
      expect(here.reduce((n, h) => n + h.rows, 0)).toBe(70);
    } finally {
      snap.release();
      await worker.terminate();
      hold.open();
      for (const lc of internals(db).broker.lifecycles) lc.holds.beforeFlush = null;
      await db.close();
    }
  });

  it('a held snapshot keeps its buffers from being reused by later flushes', async () => {
    const db = await openTable(await tempDir('mt-arrow-pin'), { shards: 1, memtableBytes: 16 << 10 });
    await db.put(rows(0, 60, 1));
    const snap = db.memtables();
    const before = [...memtableToArrow(snap.memtables[0]!).getChild('value')!];
    for (let v = 2; v < 12; v++) {
      await db.put(rows(0, 60, v));
      await db.flush();
    }
    expect(internals(db).broker.lifecycles[0]!.recycled).toBeGreaterThan(0);
    expect([...memtableToArrow(snap.memtables[0]!).getChild('value')!]).toEqual(before);
    snap.release();
    await db.close();
  });

  it('a handle that is not one fails with a typed error', () => {
    expect(() => memtableToArrow({} as MemtableHandle)).toThrow(SluiceError);
  });
});

describe('scan().toArrow() without copying where rows are already deduplicated', () => {
  const valueBuffer = (t: Table): unknown[] => t.getChild('value')!.data.map((d) => d.values.buffer);

  it('wraps a memtable whose every row is live and newest, and keeps it from reuse for good', async () => {
    const db = await openTable(await tempDir('scan-zero-copy'), { shards: 1, memtableBytes: 16 << 10 });
    await db.put(rows(0, 40, 1));
    const snap = db.memtables();
    const buffer = snap.memtables[0]!.buffer;
    snap.release();
    const table = await db.scan({ columns: ['id', 'value', 'tag', 'emb'] }).toArrow();
    expect(table.numRows).toBe(40);
    expect(valueBuffer(table)).toEqual([buffer]);
    expect(table.schema.fields.map((f) => f.name)).toEqual(['id', 'value', 'tag', 'emb']);
    const before = [...table.getChild('value')!];
    // Later rounds freeze, flush and retire that memtable; its buffer must not be reused.
    for (let v = 2; v < 12; v++) {
      await db.put(rows(0, 60, v));
      await db.flush();
    }
    expect(internals(db).broker.lifecycles[0]!.recycled).toBeGreaterThan(0);
    expect([...table.getChild('value')!]).toEqual(before);
    await db.close();
  });

  it('mixes zero-copy memtable and file batches with gathered ones into one well-formed table', async () => {
    const dir = await tempDir('scan-mixed');
    let db = await openTable(dir, { shards: 1 });
    await db.put(rows(0, 100, 1));
    await db.flush(); // file: ids 0..99
    // Reopened, so the file is read from disk (not from its flushed memtable, kept in memory).
    await db.close();
    db = await openTable(dir, { shards: 1 });
    await db.put(rows(1000, 50, 1)); // active memtable: new keys only
    let t = await db.scan().toArrow();
    expect(t.numRows).toBe(150);
    const buffers = valueBuffer(t);
    expect(buffers.length).toBe(2);
    expect(buffers.filter((b) => b instanceof SharedArrayBuffer).length).toBe(1); // the memtable
    // The file's batch is not copied either: its buffer is larger than the column alone.
    const fileData = t.getChild('value')!.data.find((d) => !(d.values.buffer instanceof SharedArrayBuffer))!;
    expect(fileData.values.buffer.byteLength).toBeGreaterThan(fileData.values.byteLength);
    // Upserts of flushed keys and a delete: the memtable is no longer all-newest-and-live,
    // the file loses rows to newer versions: both are gathered, the result stays exact.
    await db.put(rows(10, 5, 2));
    await db.delete([1000, 20]);
    t = await db.scan().toArrow();
    expect(t.numRows).toBe(148);
    const byId = new Map(t.toArray().map((r) => [String(r.id), r.toJSON() as Record<string, unknown>]));
    expect(byId.get('12')!.value).toBe(2012.25);
    expect(byId.get('50')!.value).toBe(1050.25);
    expect(byId.has('20') || byId.has('1000')).toBe(false);
    expect(byId.get('1002')!.tag).toBe('ü-1-1002');
    await db.close();
  });
});
