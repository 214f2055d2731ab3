/** Shared fixtures of the generation tests: memtables filled through the real write path, and the rows they should give back. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';
import { viewBatch } from '../src/batch-format.js';
import type { CellValue, ColumnarView } from '../src/columnar.js';
import { OP_DELETE, OP_PUT, rowObjectAt } from '../src/columnar.js';
import type { GenerationReader } from '../src/generation/generation-reader.js';
import { Memtable, MemtableWriter } from '../src/memtable/memtable.js';
import { RowEncoder } from '../src/row-encoder.js';
import type { TableSchema } from '../src/schema.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import { LocalStorage } from '../src/storage/local-storage.js';

export type Row = Record<string, unknown>;
export type Step = { put: Row[] } | { del: unknown[] };

/** A memtable filled through the real write path (RowEncoder → encoded batch → MemtableWriter). */
export function buildMemtable(
  schema: TableSchema,
  steps: Step[],
  capacity = 4096,
): { mt: Memtable; rows: number } {
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
export function expectedRow(schema: TableSchema, row: Row): Record<string, CellValue> {
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

export function tombstone(schema: TableSchema, key: unknown): Record<string, CellValue> {
  return expectedRow(schema, { [schema.primaryKey]: key });
}

export function allRows(
  reader: GenerationReader,
): { row: Record<string, CellValue>; op: number; seq: number }[] {
  const out: { row: Record<string, CellValue>; op: number; seq: number }[] = [];
  for (const b of reader.batches) {
    for (let r = 0; r < b.rows; r++) {
      out.push({ row: rowObjectAt(reader.schema, b, r), op: b.op![r]!, seq: b.seq![r]! });
    }
  }
  return out;
}

export function viewRows(schema: TableSchema, view: ColumnarView): Record<string, CellValue>[] {
  return Array.from({ length: view.rows }, (_, r) => rowObjectAt(schema, view, r));
}

export const utf8Bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

export const allTypes = schemaFromUser(
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

export const sampleRows: Row[] = [
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

/** A fresh directory and LocalStorage for each test of the calling file, handed to `use`; removed after. */
export function withTempStorage(use: (dir: string, storage: LocalStorage) => void): void {
  let dir = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-gen-'));
    use(dir, new LocalStorage(dir));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });
}
