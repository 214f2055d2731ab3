import { Field, Float64, RecordBatch, Schema, Struct, Uint8, makeData } from 'apache-arrow';
import type { Data, FixedSizeList, Float32 } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { OP_COLUMN, SEQ_COLUMN } from '../generation/gather.js';
import type { ColumnSpec, TableSchema } from '../schema.js';
import { arrowSchemaOf } from '../schema-arrow.js';
import { Memtable } from './memtable.js';

/**
 * The first `rows` rows of a memtable as an Arrow RecordBatch whose buffers are views of the
 * memtable's SharedArrayBuffer: no value is copied, so this costs the same for ten rows or a
 * million, on any thread that holds the buffer.
 *
 * It is the memtable as written, not a query result: every version of a key in write order
 * (the later row is the newer), and tombstones. Two extra columns say which is which:
 * `__op` (Uint8: 1 put, 2 delete; a delete row carries only its key, its other columns are
 * null) and `__seq` (Float64: the put sequence of the row); `meta: false` leaves them out.
 * `Db.scan()` is the deduplicated, filtered view.
 *
 * `rows` must be a published row count (from the shard's control block, or a frozen
 * memtable's final count): rows below it are immutable, so the views never change under the
 * reader. The caller keeps the memtable from being recycled while it uses the batch (a pin,
 * or a frozen memtable it knows is not yet retired).
 *
 * @example
 * ```ts
 * // in any worker, from a handle posted by the table's thread
 * const batch = memtableToArrow(new Memtable(handle.buffer, schema), handle.rows);
 * batch.getChild('value')!.toArray(); // a Float64Array over the SharedArrayBuffer
 * ```
 */
export function memtableToArrow(
  memtable: Memtable,
  rows: number,
  columns: readonly ColumnSpec[] = memtable.schema.columns,
  options: { readonly meta?: boolean } = {},
): RecordBatch {
  if (!Number.isInteger(rows) || rows < 0 || rows > memtable.capacity) {
    throw new SluiceError(
      ErrorCode.INVALID_OPTIONS,
      `rows must be an integer between 0 and the memtable's capacity (${memtable.capacity}), got ${String(rows)}`,
    );
  }
  const schema = memtable.schema;
  const fields: Field[] = [...arrowSchemaOf(schema, columns).fields];
  const children: Data[] = columns.map((c, i) => columnData(memtable, c, fields[i]!, rows));
  const buffer = memtable.buffer;
  if (options.meta === false) {
    return new RecordBatch(
      new Schema(fields),
      makeData({ type: new Struct(fields), length: rows, nullCount: 0, children }),
    );
  }
  fields.push(new Field(OP_COLUMN, new Uint8(), false), new Field(SEQ_COLUMN, new Float64(), false));
  children.push(
    makeData({
      type: new Uint8(),
      length: rows,
      nullCount: 0,
      data: new Uint8Array(buffer, memtable.layout.op, rows),
    }),
    makeData({
      type: new Float64(),
      length: rows,
      nullCount: 0,
      data: new Float64Array(buffer, memtable.layout.seq, rows),
    }),
  );
  return new RecordBatch(
    new Schema(fields),
    makeData({ type: new Struct(fields), length: rows, nullCount: 0, children }),
  );
}

/** Rebuilds a memtable from its buffer alone, checking the header against `schema`. */
export function wrapMemtable(buffer: SharedArrayBuffer, schema: TableSchema): Memtable {
  return new Memtable(buffer, schema);
}

function columnData(mt: Memtable, c: ColumnSpec, field: Field, rows: number): Data {
  const buffer = mt.buffer;
  const region = mt.layout.columns[c.index]!;
  const bitmap = new Uint8Array(buffer, region.validity, (rows + 7) >> 3);
  const nulls = rows - countBits(bitmap, rows);
  const nullBitmap = nulls === 0 ? undefined : bitmap;
  const common = { length: rows, nullCount: nulls, nullBitmap };
  const type = field.type;
  switch (c.kind) {
    case 'i32':
      return makeData({ ...common, type, data: new Int32Array(buffer, region.values, rows) });
    case 'i64':
      // The memtable keeps int64 as little-endian lo/hi int32 pairs: the bytes of an int64.
      return makeData({ ...common, type, data: new BigInt64Array(buffer, region.values, rows) });
    case 'f32':
      return makeData({ ...common, type, data: new Float32Array(buffer, region.values, rows) });
    case 'f64':
      return makeData({ ...common, type, data: new Float64Array(buffer, region.values, rows) });
    case 'bool':
      return makeData({ ...common, type, data: new Uint8Array(buffer, region.values, (rows + 7) >> 3) });
    case 'utf8': {
      const valueOffsets = new Int32Array(buffer, region.values, rows + 1);
      const data = new Uint8Array(buffer, region.data, valueOffsets[rows]!);
      return makeData({ ...common, type, valueOffsets, data });
    }
    case 'vector': {
      const list = type as FixedSizeList<Float32>;
      const child = makeData({
        type: list.children[0]!.type,
        length: rows * c.dim,
        nullCount: 0,
        data: new Float32Array(buffer, region.values, rows * c.dim),
      });
      return makeData({ ...common, type: list, child });
    }
  }
}

/** Set bits among the first `n` of an LSB bitmap. */
function countBits(bits: Uint8Array, n: number): number {
  let count = 0;
  const whole = n >> 3;
  for (let i = 0; i < whole; i++) count += POPCOUNT[bits[i]!]!;
  const rest = n & 7;
  if (rest) count += POPCOUNT[bits[whole]! & ((1 << rest) - 1)]!;
  return count;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let v = b; v; v >>= 1) n += v & 1;
  return n;
});
