import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { RecordBatchFileWriter, RecordBatchReader } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { CellValue } from '../src/columnar.js';
import { OP_DELETE, OP_PUT, rowObjectAt } from '../src/columnar.js';
import { keyColumnOf, parseGenerationFileName } from '../src/generation/generation-file.js';
import { GenerationReader } from '../src/generation/generation-reader.js';
import { writeGeneration } from '../src/generation/generation-writer.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import type { LocalStorage } from '../src/storage/local-storage.js';
import type { StagedObject, Storage } from '../src/storage/storage.js';
import type { Row, Step } from './generation-fixtures.js';
import {
  allRows,
  allTypes,
  buildMemtable,
  expectedRow,
  sampleRows,
  tombstone,
  utf8Bytes,
  withTempStorage,
} from './generation-fixtures.js';

/** `storage` whose staged objects have some calls replaced (each override sees the real staged object). */
function withStaged(storage: Storage, override: (staged: StagedObject) => Partial<StagedObject>): Storage {
  return Object.create(storage, {
    stage: {
      value: async (d: string): Promise<StagedObject> => {
        const staged = await storage.stage(d);
        const o = override(staged);
        return {
          get size() {
            return staged.size;
          },
          append: o.append ?? ((c) => staged.append(c)),
          publishIfAbsent: o.publishIfAbsent ?? ((p) => staged.publishIfAbsent(p)),
          discard: o.discard ?? (() => staged.discard()),
        };
      },
    },
  }) as Storage;
}

let dir: string;
let storage: LocalStorage;
withTempStorage((d, s) => {
  dir = d;
  storage = s;
});

describe('writeGeneration + GenerationReader', () => {
  it('round-trips every type, newest version per key, tombstones kept', async () => {
    const { mt, rows } = buildMemtable(allTypes, [
      { put: sampleRows },
      { put: [{ id: 1, s: 'second version', i: 2 }] },
      { del: [-5, 999] },
      { put: [{ id: 1, s: 'third version', i: 3, v: [4, 5, 6] }] },
      { put: [{ id: 999, s: 'back after delete' }] },
    ]);
    const written = await writeGeneration(storage, 'shard-003', mt, rows, {
      gen: 12,
      epoch: 4,
      rowsPerBatch: 1000,
    });
    expect(written.gen).toBe(12);
    expect(written.file).toMatch(/^shard-003\/gen\/00000000000000000012-4-[0-9a-f]{16}\.arrow$/);
    expect(parseGenerationFileName(written.file)).toMatchObject({ gen: 12, epoch: 4 });
    expect(written.maxSeq).toBe(5);
    expect(written.rows).toBe(sampleRows.length + 1);
    expect(written.bytes).toBe(await storage.size(written.file));
    expect(written.batches).toHaveLength(1);
    expect(written.batches[0]).toMatchObject({
      rows: written.rows,
      minKey: String(-(2n ** 63n)),
      maxKey: String(2n ** 63n - 1n),
    });
    expect(written.minKey).toBe(String(-(2n ** 63n)));
    expect(written.maxKey).toBe(String(2n ** 63n - 1n));

    const reader = await GenerationReader.open(storage, written, allTypes);
    expect(reader.rows).toBe(written.rows);
    const got = allRows(reader);
    const expected = new Map<bigint, { row: Record<string, CellValue>; op: number; seq: number }>();
    sampleRows.forEach((r) =>
      expected.set(BigInt(r.id as number), { row: expectedRow(allTypes, r), op: OP_PUT, seq: 1 }),
    );
    expected.set(1n, {
      row: expectedRow(allTypes, { id: 1, s: 'third version', i: 3, v: [4, 5, 6] }),
      op: OP_PUT,
      seq: 4,
    });
    expected.set(-5n, { row: tombstone(allTypes, -5), op: OP_DELETE, seq: 3 });
    expected.set(999n, {
      row: expectedRow(allTypes, { id: 999, s: 'back after delete' }),
      op: OP_PUT,
      seq: 5,
    });
    const sorted = [...expected.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
    expect(got).toEqual(sorted);

    // File metadata describes the generation for tools.
    const file = RecordBatchReader.from((await storage.get(written.file))!);
    expect(file.isFile()).toBe(true);
    const meta = file.open().schema.metadata;
    expect(meta.get('sluice.generation')).toBe('12');
    expect(meta.get('sluice.primaryKey')).toBe('id');
    expect(JSON.parse(meta.get('sluice.schema')!)).toMatchObject({ primaryKey: 'id' });
  });

  it('keeps a tombstone for a key deleted without any earlier put', async () => {
    const schema = schemaFromUser({ k: 'utf8', n: 'int32' }, 'k');
    const { mt, rows } = buildMemtable(schema, [{ del: ['ghost'] }, { put: [{ k: 'live', n: 1 }] }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 0, epoch: 0, rowsPerBatch: 10 });
    const reader = await GenerationReader.open(storage, written, schema);
    expect(allRows(reader)).toEqual([
      { row: { k: 'ghost', n: null }, op: OP_DELETE, seq: 1 },
      { row: { k: 'live', n: 1 }, op: OP_PUT, seq: 2 },
    ]);
  });

  it('only takes the first `rows` rows of the memtable', async () => {
    const schema = schemaFromUser({ id: 'int64', n: 'int32' }, 'id');
    const { mt } = buildMemtable(schema, [
      { put: [{ id: 1, n: 1 }] },
      {
        put: [
          { id: 1, n: 2 },
          { id: 2, n: 2 },
        ],
      },
    ]);
    const written = await writeGeneration(storage, 's', mt, 1, { gen: 1, epoch: 0, rowsPerBatch: 10 });
    expect(written.maxSeq).toBe(1);
    const reader = await GenerationReader.open(storage, written, schema);
    expect(allRows(reader).map((r) => r.row)).toEqual([{ id: 1n, n: 1 }]);
  });

  it('sorts int64 keys in signed order', async () => {
    const schema = schemaFromUser({ id: 'int64' }, 'id');
    const keys = [
      0n,
      -1n,
      1n,
      -(2n ** 63n),
      2n ** 63n - 1n,
      2n ** 32n,
      -(2n ** 32n),
      2n ** 31n,
      -(2n ** 31n) - 1n,
      4294967295n,
      2n ** 53n + 1n,
      -(2n ** 53n) - 1n,
      42n,
    ];
    const { mt, rows } = buildMemtable(schema, [{ put: keys.map((id) => ({ id })) }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 4 });
    const reader = await GenerationReader.open(storage, written, schema);
    const sorted = [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(allRows(reader).map((r) => r.row.id)).toEqual(sorted);
    expect(written.batches.map((b) => [b.minKey, b.maxKey])).toEqual([
      [sorted[0]!.toString(), sorted[3]!.toString()],
      [sorted[4]!.toString(), sorted[7]!.toString()],
      [sorted[8]!.toString(), sorted[11]!.toString()],
      [sorted[12]!.toString(), sorted[12]!.toString()],
    ]);
  });

  it('sorts utf8 keys bytewise (code point order)', async () => {
    const schema = schemaFromUser({ k: 'utf8', n: 'int32' }, 'k');
    const keys = ['', 'a', 'B', 'ab', 'é', 'e\u0301', '中', '😀', '\uffff', 'Z', 'a\u0000', 'ﬀ', '𝄞'];
    const { mt, rows } = buildMemtable(schema, [{ put: keys.map((k, n) => ({ k, n })) }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 5 });
    const reader = await GenerationReader.open(storage, written, schema);
    const sorted = [...keys].sort((a, b) => Buffer.compare(utf8Bytes(a), utf8Bytes(b)));
    expect(allRows(reader).map((r) => r.row.k)).toEqual(sorted);
    expect(written.minKey).toBe('');
    expect(written.maxKey).toBe(sorted[sorted.length - 1]);
    for (const k of keys) {
      const hit = reader.find(k);
      expect(hit).not.toBeNull();
      expect(rowObjectAt(schema, reader.batches[hit!.batch]!, hit!.row).k).toBe(k);
    }
    expect(reader.find('zz')).toBeNull();
    expect(reader.find('b')).toBeNull();
    expect(reader.find('\u0000')).toBeNull();
  });

  it('splits into batches of rowsPerBatch with exact ranges; lookups hit and miss at every boundary', async () => {
    const schema = schemaFromUser({ id: 'int64', tag: 'utf8' }, 'id');
    // Even keys -100..98 (100 keys): odd keys fall between rows and between batches.
    const keys = Array.from({ length: 100 }, (_, i) => -100 + 2 * i);
    const shuffled = [...keys].sort((a, b) => ((a * 7919) % 101) - ((b * 7919) % 101));
    const { mt, rows } = buildMemtable(schema, [{ put: shuffled.map((id) => ({ id, tag: `t${id}` })) }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 3, epoch: 1, rowsPerBatch: 7 });
    expect(written.batches).toHaveLength(15);
    expect(written.batches.map((b) => b.rows)).toEqual([...new Array(14).fill(7), 2]);
    written.batches.forEach((b, i) => {
      expect(b.minKey).toBe(String(keys[7 * i]));
      expect(b.maxKey).toBe(String(keys[Math.min(7 * i + 6, 99)]));
      expect(b.offset).toBeGreaterThan(0);
    });
    const offsets = written.batches.map((b) => b.offset!);
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);

    const reader = await GenerationReader.open(storage, written, schema);
    expect(reader.batches).toHaveLength(15);
    keys.forEach((k, i) => {
      expect(reader.find(k)).toEqual({ batch: Math.floor(i / 7), row: i % 7 });
      expect(reader.find(BigInt(k))).toEqual({ batch: Math.floor(i / 7), row: i % 7 });
    });
    for (let k = -101; k <= 99; k += 2) expect(reader.find(k)).toBeNull();
    for (const k of [-(2n ** 63n), 2n ** 63n - 1n, -102n, 100n, 2n ** 32n - 100n])
      expect(reader.find(k)).toBeNull();
    // lookup() takes a key from any view: look up every key of the memtable.
    const view = mt.view(rows);
    for (let r = 0; r < rows; r++) {
      const hit = reader.lookup(view.columns[0]!, r)!;
      expect(rowObjectAt(schema, reader.batches[hit.batch]!, hit.row)).toEqual(rowObjectAt(schema, view, r));
    }
  });

  it('writes exactly rowsPerBatch-sized batches and single-row batches', async () => {
    const schema = schemaFromUser({ id: 'int64' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: Array.from({ length: 12 }, (_, id) => ({ id })) }]);
    const a = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 4 });
    expect(a.batches.map((b) => b.rows)).toEqual([4, 4, 4]);
    const b = await writeGeneration(storage, 's', mt, rows, { gen: 2, epoch: 0, rowsPerBatch: 1 });
    expect(b.batches).toHaveLength(12);
    const reader = await GenerationReader.open(storage, b, schema);
    for (let id = 0; id < 12; id++) expect(reader.find(id)).toEqual({ batch: id, row: 0 });
    expect(reader.find(12)).toBeNull();
    expect(reader.find(-1)).toBeNull();
  });

  it('views the file bytes without copying them', async () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 4 });
    const bytes = (await storage.get(written.file))!;
    const reader = GenerationReader.decode(bytes, written, allTypes);
    expect(reader.byteLength).toBe(bytes.byteLength);
    for (const b of reader.batches) {
      for (const c of b.columns) {
        expect(c.values.buffer).toBe(bytes.buffer);
        if (c.data !== null) expect(c.data.buffer).toBe(bytes.buffer);
      }
      expect(b.op!.buffer).toBe(bytes.buffer);
      expect(b.seq!.buffer).toBe(bytes.buffer);
    }
  });

  it('never overwrites: putIfAbsent on an existing generation file changes nothing', async () => {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: [{ id: 1, s: 'one' }] }]);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 10 });
    const before = await storage.get(written.file);
    expect(await storage.putIfAbsent(written.file, new Uint8Array([1, 2, 3]))).toBe(false);
    expect(await storage.get(written.file)).toEqual(before);
    expect(allRows(await GenerationReader.open(storage, written, schema))[0]!.row).toEqual({
      id: 1n,
      s: 'one',
    });
  });

  it('picks a new name when one is taken, and gives up after a few', async () => {
    const schema = schemaFromUser({ id: 'int64' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: [{ id: 1 }] }]);
    const tried: string[] = [];
    let refuse = 2;
    const crowded = withStaged(storage, (staged) => ({
      publishIfAbsent: (path: string): Promise<boolean> => {
        tried.push(path);
        return refuse-- > 0 ? Promise.resolve(false) : staged.publishIfAbsent(path);
      },
    }));
    const written = await writeGeneration(crowded, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 10 });
    expect(new Set(tried).size).toBe(3);
    expect(written.file).toBe(tried[2]);
    await GenerationReader.open(storage, written, schema);

    refuse = Infinity;
    await expect(
      writeGeneration(crowded, 's', mt, rows, { gen: 2, epoch: 0, rowsPerBatch: 10 }),
    ).rejects.toMatchObject({
      code: ErrorCode.INTERNAL,
    });
    // The abandoned file was discarded, not left staged.
    expect(await readdir(join(dir, 's', 'gen'))).toEqual([written.file.split('/').pop()]);
  });

  it('propagates storage failures as they are and leaves nothing staged', async () => {
    const schema = schemaFromUser({ id: 'int64' }, 'id');
    const { mt, rows } = buildMemtable(
      schema,
      Array.from({ length: 5 }, (_, i) => ({ put: [{ id: i }] })),
    );
    const io = (): Promise<never> => Promise.reject(new SluiceError(ErrorCode.IO, 'disk full'));
    const failures: Storage[] = [
      Object.create(storage, { stage: { value: io } }) as Storage,
      withStaged(storage, () => ({ append: io })),
      withStaged(storage, (staged) => {
        let n = 0;
        return { append: (c: readonly Uint8Array[]) => (++n === 2 ? io() : staged.append(c)) };
      }),
      withStaged(storage, () => ({ publishIfAbsent: io })),
    ];
    for (const failing of failures) {
      await expect(
        writeGeneration(failing, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 2 }),
      ).rejects.toMatchObject({ code: ErrorCode.IO });
      expect(await readdir(join(dir, 's', 'gen')).catch(() => [])).toEqual([]);
    }
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 1, epoch: 0, rowsPerBatch: 10 });
    const failingGet: Storage = Object.create(storage, {
      get: { value: () => Promise.reject(new SluiceError(ErrorCode.IO, 'EIO')) },
    }) as Storage;
    await expect(GenerationReader.open(failingGet, written, schema)).rejects.toMatchObject({
      code: ErrorCode.IO,
    });
  });

  it("streams exactly the file Arrow writes in one piece, with the footer's batch offsets", async () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }, { del: [sampleRows[1]!.id] }]);
    for (const rowsPerBatch of [1, 2, 3, 1000]) {
      const written = await writeGeneration(storage, 's', mt, rows, {
        gen: rowsPerBatch,
        epoch: 0,
        rowsPerBatch,
      });
      const bytes = (await storage.get(written.file))!;
      expect(written.bytes).toBe(bytes.byteLength);
      expect(parseGenerationFileName(written.file)!.crc32).toBe(crc32(bytes));
      const file = RecordBatchReader.from(bytes);
      expect(file.isFile()).toBe(true);
      const opened = file.open();
      const footer = opened.isFile() ? opened.footer : null;
      expect(footer?.numRecordBatches).toBe(written.batches.length);
      written.batches.forEach((b, i) => expect(b.offset).toBe(footer!.getRecordBatch(i)!.offset));
      // The same batches written in one piece by Arrow give the same bytes.
      const whole = RecordBatchFileWriter.writeAll([...RecordBatchReader.from(bytes)]).toUint8Array(true);
      expect(Buffer.compare(whole, bytes)).toBe(0);
    }
  });

  it('rejects bad arguments with RangeError naming the option', async () => {
    const schema = schemaFromUser({ id: 'int64' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: [{ id: 1 }] }], 16);
    const ok = { gen: 1, epoch: 0, rowsPerBatch: 10 };
    await expect(writeGeneration(storage, 's', mt, 0, ok)).rejects.toThrow(RangeError);
    await expect(writeGeneration(storage, 's', mt, 17, ok)).rejects.toThrow(/capacity/);
    await expect(writeGeneration(storage, 's', mt, rows, { ...ok, rowsPerBatch: 0 })).rejects.toThrow(
      /options.rowsPerBatch/,
    );
    await expect(writeGeneration(storage, 's', mt, rows, { ...ok, gen: -1 })).rejects.toThrow(/options.gen/);
    await expect(writeGeneration(storage, 's', mt, rows, { ...ok, epoch: 1.5 })).rejects.toThrow(
      /options.epoch/,
    );
  });

  it('handles a large memtable with many versions per key', async () => {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64' }, 'id');
    const steps: Step[] = [];
    const latest = new Map<number, Row | null>();
    for (let round = 0; round < 5; round++) {
      const put: Row[] = [];
      for (let i = 0; i < 3000; i++) {
        const id = (i * 2654435761) % 5000;
        const row = { id, s: `v${round}-${id}`, n: round + i / 10 };
        put.push(row);
        latest.set(id, row);
      }
      steps.push({ put });
      const del = Array.from({ length: 100 }, (_, i) => (round * 997 + i * 31) % 5000);
      steps.push({ del });
      for (const id of del) latest.set(id, null);
    }
    const { mt, rows } = buildMemtable(schema, steps, 1 << 15);
    const written = await writeGeneration(storage, 's', mt, rows, { gen: 9, epoch: 2, rowsPerBatch: 1024 });
    expect(written.rows).toBe(latest.size);
    const reader = await GenerationReader.open(storage, written, schema);
    for (const [id, row] of latest) {
      const hit = reader.find(id)!;
      const b = reader.batches[hit.batch]!;
      if (row === null) expect(b.op![hit.row]).toBe(OP_DELETE);
      else
        expect([b.op![hit.row], rowObjectAt(schema, b, hit.row)]).toEqual([OP_PUT, expectedRow(schema, row)]);
    }
  });

  it('keyColumnOf rejects keys of the wrong kind', () => {
    expect(() => keyColumnOf(allTypes, 'x')).toThrow(TypeError);
    expect(() => keyColumnOf(allTypes, 0.5)).toThrow(TypeError);
    const utf8 = schemaFromUser({ k: 'utf8' }, 'k');
    expect(() => keyColumnOf(utf8, 1n)).toThrow(TypeError);
  });
});
