import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { RecordBatchFileWriter, RecordBatchReader, tableFromIPC, tableToIPC, Table } from 'apache-arrow';
import type * as Arrow from 'apache-arrow';
import type { RecordBatch } from 'apache-arrow';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { viewBatch } from '../src/batch-format.js';
import type { CellValue, ColumnarView } from '../src/columnar.js';
import { OP_DELETE, OP_PUT, rowObjectAt } from '../src/columnar.js';
import { Memtable, MemtableWriter } from '../src/memtable/memtable.js';
import { RowEncoder } from '../src/row-encoder.js';
import type { TableSchema } from '../src/schema.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import { LocalStorage } from '../src/storage/local-storage.js';
import type { StagedObject, Storage } from '../src/storage/storage.js';
import { gatherToArrow, viewOfRecordBatch } from '../src/generation/gather.js';
import { GenerationCache } from '../src/generation/generation-cache.js';
import { keyColumnOf, parseGenerationFileName } from '../src/generation/generation-file.js';
import { GenerationReader } from '../src/generation/generation-reader.js';
import { writeGeneration } from '../src/generation/generation-writer.js';

type Row = Record<string, unknown>;
type Step = { put: Row[] } | { del: unknown[] };

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

/** A memtable filled through the real write path (RowEncoder → encoded batch → MemtableWriter). */
function buildMemtable(schema: TableSchema, steps: Step[], capacity = 4096): { mt: Memtable; rows: number } {
  const encoder = new RowEncoder(schema, 1, { maxValueBytes: 1 << 20 });
  const utf8 = schema.columns.map((c) => (c.kind === 'utf8' ? 1 << 20 : 0));
  const mt = Memtable.allocate(schema, capacity, utf8, 1, 0);
  const writer = new MemtableWriter(mt);
  let seq = 0;
  for (const step of steps) {
    const isPut = 'put' in step;
    const plan = encoder.plan(isPut ? step.put : step.del, isPut ? OP_PUT : OP_DELETE);
    const bytes = plan.shardBytes[0]!;
    if (bytes === 0) continue;
    const target = new Uint8Array(new ArrayBuffer(bytes));
    encoder.write(plan, 0, target, ++seq);
    const batch = viewBatch(schema, target);
    expect(writer.append(batch, 0)).toBe(batch.rows);
  }
  return { mt, rows: writer.rows };
}

/** A plain-object row as rowObjectAt returns it. */
function expectedRow(schema: TableSchema, row: Row): Record<string, CellValue> {
  const out: Record<string, CellValue> = {};
  for (const c of schema.columns) {
    const v = row[c.name];
    if (v === undefined || v === null) out[c.name] = null;
    else if (c.type === 'int64') out[c.name] = BigInt(v as number | bigint);
    else if (c.type === 'timestamp') out[c.name] = v instanceof Date ? v.getTime() : (v as number);
    else if (c.kind === 'vector') out[c.name] = Float32Array.from(v as ArrayLike<number>);
    else out[c.name] = v as CellValue;
  }
  return out;
}

function tombstone(schema: TableSchema, key: unknown): Record<string, CellValue> {
  return expectedRow(schema, { [schema.primaryKey]: key });
}

function allRows(reader: GenerationReader): { row: Record<string, CellValue>; op: number; seq: number }[] {
  const out: { row: Record<string, CellValue>; op: number; seq: number }[] = [];
  for (const b of reader.batches) {
    for (let r = 0; r < b.rows; r++) {
      out.push({ row: rowObjectAt(reader.schema, b, r), op: b.op![r]!, seq: b.seq![r]! });
    }
  }
  return out;
}

function viewRows(schema: TableSchema, view: ColumnarView): Record<string, CellValue>[] {
  return Array.from({ length: view.rows }, (_, r) => rowObjectAt(schema, view, r));
}

const utf8Bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

const allTypes = schemaFromUser(
  {
    id: 'int64',
    i: 'int32',
    big: 'int64',
    f: 'float32',
    d: 'float64',
    b: 'bool',
    s: 'utf8',
    ts: 'timestamp',
    v: 'float32[3]',
  },
  'id',
);

const sampleRows: Row[] = [
  {
    id: 1,
    i: 7,
    big: 2n ** 60n + 3n,
    f: 0.5,
    d: Math.PI,
    b: true,
    s: 'hello',
    ts: 1_700_000_000_123,
    v: [1, 2, 3],
  },
  {
    id: -5,
    i: -2147483648,
    big: -(2n ** 63n),
    f: -1.25,
    d: -0,
    b: false,
    s: '',
    ts: new Date(0),
    v: [0.5, -0.5, 0],
  },
  { id: 2n ** 53n + 1n, i: null, big: null, f: null, d: null, b: null, s: null, ts: null, v: null },
  {
    id: 3,
    i: 2147483647,
    big: 2n ** 63n - 1n,
    d: 1e300,
    b: true,
    s: '😀 emoji',
    v: [Infinity, -Infinity, 1e-30],
  },
  { id: -(2n ** 63n), s: '中文字符 テスト 한국어', b: false, ts: -86_400_000 },
  { id: 2n ** 63n - 1n, s: 'x'.repeat(100), f: 3.5, v: [9, 8, 7] },
  { id: 0, s: 'é', i: 0, b: null, d: Number.MAX_VALUE },
  { id: 10, s: 'ascii', i: 1, b: true },
  { id: 11, s: 'a\u0000b', b: false },
];

let dir: string;
let storage: LocalStorage;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-gen-'));
  storage = new LocalStorage(dir);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('gatherToArrow / viewOfRecordBatch', () => {
  it('copies rows in the given order into Arrow buffers that Arrow itself reads back', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const order = Int32Array.from([8, 3, 0, 2, 5, 1, 4, 7, 6]);
    const batch = gatherToArrow(allTypes, mt.view(rows), order, allTypes.columns, { op: true, seq: mt.seq });
    expect(batch.numRows).toBe(order.length);
    expect(batch.schema.fields.map((f) => f.name)).toEqual([
      ...allTypes.columns.map((c) => c.name),
      '__op',
      '__seq',
    ]);
    expect(batch.schema.fields.map((f) => f.nullable)).toEqual([
      false,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
    // Arrow's own accessors (slow, fine in a test) agree with the source rows.
    const s = batch.getChild('s')!;
    const big = batch.getChild('big')!;
    const b = batch.getChild('b')!;
    const v = batch.getChild('v')!;
    for (let i = 0; i < order.length; i++) {
      const src = expectedRow(allTypes, sampleRows[order[i]!]!);
      expect(s.get(i)).toBe(src.s);
      expect(big.get(i)).toBe(src.big);
      expect(b.get(i)).toBe(src.b);
      const vec = v.get(i) as { toArray(): Float32Array } | null;
      expect(vec === null ? null : Float32Array.from(vec.toArray())).toEqual(src.v);
    }
    expect(s.nullCount).toBe(1);
    expect(b.nullCount).toBe(3);
    expect(batch.getChild('id')!.nullCount).toBe(0);
    expect(Array.from(batch.getChild('__op')!.toArray() as Uint8Array)).toEqual(new Array(9).fill(OP_PUT));
    // And the zero-copy view reads exactly the gathered rows.
    const back = viewOfRecordBatch(allTypes, batch);
    expect(viewRows(allTypes, back)).toEqual(Array.from(order, (r) => expectedRow(allTypes, sampleRows[r]!)));
    expect(Array.from(back.seq!)).toEqual(new Array(9).fill(1));
  });

  it('survives an Arrow IPC round trip and a column subset', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const cols = [allTypes.byName.get('s')!, allTypes.byName.get('id')!, allTypes.byName.get('v')!];
    const batch = gatherToArrow(allTypes, mt.view(rows), Int32Array.from([0, 1, 2, 3]), cols);
    expect(batch.schema.fields.map((f) => f.name)).toEqual(['s', 'id', 'v']);
    const table = tableFromIPC(tableToIPC(new Table(batch), 'file'));
    expect(table.getChild('s')!.toArray()).toEqual(['hello', '', null, '😀 emoji']);
    expect(table.getChild('id')!.toArray()).toEqual(BigInt64Array.from([1n, -5n, 2n ** 53n + 1n, 3n]));
  });

  it('nulls every non-key column of a tombstone', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows.slice(0, 2) }, { del: [1] }]);
    const batch = gatherToArrow(allTypes, mt.view(rows), Int32Array.from([2, 1]), allTypes.columns, {
      op: true,
    });
    const view = viewOfRecordBatch(allTypes, batch);
    expect(Array.from(view.op!)).toEqual([OP_DELETE, OP_PUT]);
    expect(view.seq).toBeNull();
    expect(viewRows(allTypes, view)).toEqual([tombstone(allTypes, 1), expectedRow(allTypes, sampleRows[1]!)]);
  });

  it('gathers zero rows', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const batch = gatherToArrow(allTypes, mt.view(rows), new Int32Array(0), allTypes.columns, {
      op: true,
      seq: mt.seq,
    });
    expect(batch.numRows).toBe(0);
    expect(viewOfRecordBatch(allTypes, batch).rows).toBe(0);
  });

  it('views sliced record batches (bit offsets that are not byte aligned)', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const order = Int32Array.from({ length: rows }, (_, i) => i);
    const batch = gatherToArrow(allTypes, mt.view(rows), order, allTypes.columns, { op: true });
    for (const [start, end] of [
      [3, 9],
      [1, 4],
      [5, 6],
      [0, 9],
    ] as const) {
      const sliced = batch.slice(start, end);
      expect(viewRows(allTypes, viewOfRecordBatch(allTypes, sliced))).toEqual(
        sampleRows.slice(start, end).map((r) => expectedRow(allTypes, r)),
      );
    }
  });

  it('accepts record batches built by another apache-arrow copy', () => {
    // The CommonJS build is a separate module instance: its classes are not ours.
    const other = createRequire(import.meta.url)('apache-arrow') as typeof Arrow;
    const schema = schemaFromUser({ id: 'int64', s: 'utf8', x: 'float64', b: 'bool', v: 'float32[2]' }, 'id');
    const fsl = new other.FixedSizeList(2, new other.Field('item', new other.Float32(), false));
    const table = new other.Table({
      id: other.vectorFromArray([5n, -7n, 2n ** 62n], new other.Int64()),
      s: other.vectorFromArray(['a', null, 'ü'], new other.Utf8()),
      x: other.vectorFromArray([1.5, 2.5, null], new other.Float64()),
      b: other.vectorFromArray([null, true, false], new other.Bool()),
      v: other.vectorFromArray([[1, 2], null, [3, 4]], fsl),
    });
    expect(other.Table).not.toBe(Table);
    const batch = table.batches[0]! as unknown as RecordBatch;
    const view = viewOfRecordBatch(schema, batch);
    expect(view.op).toBeNull();
    expect(viewRows(schema, view)).toEqual([
      { id: 5n, s: 'a', x: 1.5, b: null, v: Float32Array.from([1, 2]) },
      { id: -7n, s: null, x: 2.5, b: true, v: null },
      { id: 2n ** 62n, s: 'ü', x: null, b: false, v: Float32Array.from([3, 4]) },
    ]);
  });

  it('rejects a batch that lacks a column or stores another type', () => {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: [{ id: 1, s: 'a' }] }]);
    const only = gatherToArrow(schema, mt.view(rows), Int32Array.from([0]), [schema.byName.get('id')!]);
    expect(() => viewOfRecordBatch(schema, only)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_SCHEMA }),
    );
    const asInt32 = schemaFromUser({ id: 'int64', s: 'int32' }, 'id');
    const full = gatherToArrow(schema, mt.view(rows), Int32Array.from([0]));
    expect(() => viewOfRecordBatch(asInt32, full)).toThrow(/has Arrow type Utf8, the table stores int32/);
  });
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

describe('GenerationCache', () => {
  async function writeSome(
    count: number,
  ): Promise<{ schema: TableSchema; entries: Awaited<ReturnType<typeof writeGeneration>>[] }> {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8' }, 'id');
    const entries = [];
    for (let g = 0; g < count; g++) {
      const { mt, rows } = buildMemtable(schema, [
        { put: Array.from({ length: 50 }, (_, id) => ({ id, s: `g${g}` })) },
      ]);
      entries.push(await writeGeneration(storage, 's', mt, rows, { gen: g, epoch: 0, rowsPerBatch: 16 }));
    }
    return { schema, entries };
  }

  function countingStorage(): { storage: Storage; gets: string[] } {
    const gets: string[] = [];
    const s: Storage = Object.create(storage, {
      get: {
        value: async (path: string): Promise<Uint8Array | undefined> => {
          gets.push(path);
          await new Promise((r) => setTimeout(r, 5));
          return storage.get(path);
        },
      },
    }) as Storage;
    return { storage: s, gets };
  }

  it('shares one load between concurrent gets of a file', async () => {
    const { schema, entries } = await writeSome(2);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 1 << 20 });
    const readers = await Promise.all([
      cache.get(s, entries[0]!, schema),
      cache.get(s, entries[0]!, schema),
      cache.get(s, entries[1]!, schema),
      cache.get(s, entries[0]!, schema),
    ]);
    expect(readers[0]).toBe(readers[1]);
    expect(readers[0]).toBe(readers[3]);
    expect(readers[2]).not.toBe(readers[0]);
    expect(gets).toEqual([entries[0]!.file, entries[1]!.file]);
    expect(await cache.get(s, entries[0]!, schema)).toBe(readers[0]);
    expect(cache.stats).toMatchObject({ entries: 2, hits: 3, misses: 2, evictions: 0 });
    expect(cache.stats.bytes).toBe(entries[0]!.bytes + entries[1]!.bytes);
  });

  it('evicts least recently used files by bytes', async () => {
    const { schema, entries } = await writeSome(4);
    const size = entries[0]!.bytes;
    expect(entries.every((e) => e.bytes === size)).toBe(true);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 2 * size + size / 2 });
    const [e0, e1, e2, e3] = entries as [
      (typeof entries)[0],
      (typeof entries)[0],
      (typeof entries)[0],
      (typeof entries)[0],
    ];
    const r0 = await cache.get(s, e0, schema);
    await cache.get(s, e1, schema);
    expect(await cache.get(s, e0, schema)).toBe(r0); // e0 is now the most recent
    await cache.get(s, e2, schema); // evicts e1
    expect(cache.stats).toMatchObject({ entries: 2, bytes: 2 * size, evictions: 1 });
    expect(await cache.get(s, e0, schema)).toBe(r0);
    gets.length = 0;
    await cache.get(s, e1, schema); // reloaded; evicts e2
    expect(gets).toEqual([e1.file]);
    await cache.get(s, e0, schema);
    await cache.get(s, e3, schema); // evicts e1
    gets.length = 0;
    await cache.get(s, e0, schema);
    await cache.get(s, e3, schema);
    expect(gets).toEqual([]);
    expect(cache.stats.evictions).toBe(3);

    cache.delete(s, e0.file);
    expect(cache.stats).toMatchObject({ entries: 1, bytes: size });
    expect(await cache.get(s, e0, schema)).not.toBe(r0);
    cache.clear();
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('returns but does not keep a file larger than the budget', async () => {
    const { schema, entries } = await writeSome(1);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 10 });
    const a = await cache.get(s, entries[0]!, schema);
    expect(a.rows).toBe(50);
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
    await cache.get(s, entries[0]!, schema);
    expect(gets).toHaveLength(2);
  });

  it('does not keep failed loads', async () => {
    const { schema, entries } = await writeSome(1);
    const cache = new GenerationCache({ maxBytes: 1 << 20 });
    const missing = { ...entries[0]!, file: entries[0]!.file.replace('/gen/', '/elsewhere/') };
    await expect(cache.get(storage, missing, schema)).rejects.toMatchObject({
      code: ErrorCode.CORRUPT_GENERATION,
    });
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
    await expect(cache.get(storage, entries[0]!, schema)).resolves.toBeInstanceOf(GenerationReader);
  });

  it('rejects a bad budget', () => {
    expect(() => new GenerationCache({ maxBytes: -1 })).toThrow(/options.maxBytes/);
  });
});
