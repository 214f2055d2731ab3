import {
  Bool,
  Field,
  Float32,
  Float64,
  Int32,
  Int64,
  Precision,
  RecordBatch,
  Schema,
  Struct,
  TimeUnit,
  TimestampMillisecond,
  Type,
  Uint8,
  Utf8,
  makeData,
} from 'apache-arrow';
import type { Data, FixedSizeList } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { ColumnBuffers, ColumnarView } from '../columnar.js';
import { OP_DELETE, OP_PUT } from '../columnar.js';
import type { ColumnSpec, TableSchema } from '../schema.js';
import { arrowSchemaOf } from '../schema-arrow.js';

/** Name of the per-row operation column (Uint8: OP_PUT or OP_DELETE) in generation files. */
export const OP_COLUMN = '__op';
/** Name of the per-row write sequence column (Float64) in generation files. */
export const SEQ_COLUMN = '__seq';

export interface GatherExtra {
  /** Adds the `__op` column (1 put, 2 delete). */
  readonly op?: boolean;
  /** Adds the `__seq` column, taking `seq[row]` for each gathered row. */
  readonly seq?: Float64Array;
}

/** A ColumnarView over a RecordBatch, plus its `__seq` column when it has one. */
export interface RecordBatchView extends ColumnarView {
  readonly seq: Float64Array | null;
}

const MAX_UTF8_BYTES = 0x7fffffff;

/**
 * Copies `rows` of `view` (in that order) into fresh Arrow buffers and wraps them in a
 * RecordBatch, without Arrow's builders: each column is one typed-array loop.
 *
 * A tombstone row (op = OP_DELETE) carries only its key: its other columns come out null
 * whatever the source holds, so no stale value can leak out of a deleted row. Null slots are
 * zeroed, which keeps the output (and so a generation file) a pure function of its rows.
 */
export function gatherToArrow(
  schema: TableSchema,
  view: ColumnarView,
  rows: Int32Array,
  columns: readonly ColumnSpec[] = schema.columns,
  extra: GatherExtra = {},
): RecordBatch {
  const n = rows.length;
  const fields: Field[] = [...arrowSchemaOf(schema, columns).fields];
  const children: Data[] = columns.map((c, i) =>
    gatherColumn(c, fields[i]!, view.columns[c.index]!, rows, c.index === schema.keyIndex ? null : view.op),
  );
  if (extra.op) {
    const op = view.op;
    const out = new Uint8Array(n);
    if (op === null) out.fill(OP_PUT);
    else for (let i = 0; i < n; i++) out[i] = op[rows[i]!]!;
    const type = new Uint8();
    fields.push(new Field(OP_COLUMN, type, false));
    children.push(makeData({ type, length: n, nullCount: 0, data: out }));
  }
  if (extra.seq) {
    const seq = extra.seq;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = seq[rows[i]!]!;
    const type = new Float64();
    fields.push(new Field(SEQ_COLUMN, type, false));
    children.push(makeData({ type, length: n, nullCount: 0, data: out }));
  }
  return new RecordBatch(
    new Schema(fields),
    makeData({ type: new Struct(fields), length: n, nullCount: 0, children }),
  );
}

/** Bytes of a bitmap for `n` bits, padded to 64 bits so Arrow's IPC writer need not copy it. */
function bitmapBytes(n: number): number {
  return ((n + 63) & ~63) >> 3;
}

function bitAt(bits: Uint8Array, bit: number): boolean {
  return (bits[bit >> 3]! & (1 << (bit & 7))) !== 0;
}

function gatherColumn(
  c: ColumnSpec,
  field: Field,
  src: ColumnBuffers,
  rows: Int32Array,
  op: Uint8Array | null,
): Data {
  const n = rows.length;
  // Validity first: every value loop below consults it to zero the null slots.
  const valid = new Uint8Array(bitmapBytes(n));
  let nulls = 0;
  const sv = src.validity;
  const so = src.validityOffset;
  for (let i = 0; i < n; i++) {
    const r = rows[i]!;
    if ((sv === null || bitAt(sv, so + r)) && (op === null || op[r] !== OP_DELETE))
      valid[i >> 3]! |= 1 << (i & 7);
    else nulls++;
  }
  const isValid = (i: number): boolean => nulls === 0 || (valid[i >> 3]! & (1 << (i & 7))) !== 0;
  const nullBitmap = nulls === 0 ? undefined : valid;
  switch (c.kind) {
    case 'i32':
    case 'f32':
    case 'f64': {
      const s = src.values as Int32Array | Float32Array | Float64Array;
      const out =
        c.kind === 'i32' ? new Int32Array(n) : c.kind === 'f32' ? new Float32Array(n) : new Float64Array(n);
      for (let i = 0; i < n; i++) if (isValid(i)) out[i] = s[rows[i]!]!;
      if (c.kind === 'i32')
        return makeData({ type: new Int32(), length: n, nullCount: nulls, nullBitmap, data: out });
      if (c.kind === 'f32')
        return makeData({ type: new Float32(), length: n, nullCount: nulls, nullBitmap, data: out });
      return makeData({ type: new Float64(), length: n, nullCount: nulls, nullBitmap, data: out });
    }
    case 'i64': {
      const s = src.values as Int32Array;
      const out = new Int32Array(2 * n);
      for (let i = 0; i < n; i++) {
        if (!isValid(i)) continue;
        const r = rows[i]!;
        out[2 * i] = s[2 * r]!;
        out[2 * i + 1] = s[2 * r + 1]!;
      }
      // lo/hi int32 pairs and a little-endian int64 are the same bytes.
      const data = new BigInt64Array(out.buffer);
      if (c.type === 'timestamp') {
        return makeData({ type: new TimestampMillisecond(), length: n, nullCount: nulls, nullBitmap, data });
      }
      return makeData({ type: new Int64(), length: n, nullCount: nulls, nullBitmap, data });
    }
    case 'bool': {
      const s = src.values as Uint8Array;
      const base = src.valuesOffset;
      const out = new Uint8Array(bitmapBytes(n));
      for (let i = 0; i < n; i++) if (isValid(i) && bitAt(s, base + rows[i]!)) out[i >> 3]! |= 1 << (i & 7);
      return makeData({ type: new Bool(), length: n, nullCount: nulls, nullBitmap, data: out });
    }
    case 'utf8': {
      const so2 = src.values as Int32Array;
      const sd = src.data as Uint8Array;
      let total = 0;
      for (let i = 0; i < n; i++) {
        if (!isValid(i)) continue;
        const r = rows[i]!;
        total += so2[r + 1]! - so2[r]!;
      }
      if (total > MAX_UTF8_BYTES) {
        throw new SluiceError(
          ErrorCode.INTERNAL,
          `column "${c.name}": ${total} utf8 bytes do not fit one Arrow batch`,
        );
      }
      const offsets = new Int32Array(n + 1);
      const data = new Uint8Array(total);
      let pos = 0;
      let i = 0;
      while (i < n) {
        if (!isValid(i)) {
          offsets[++i] = pos;
          continue;
        }
        // A run of valid rows that are consecutive in the source (scans and flushes mostly keep
        // long runs: rows come in write order, and keys mostly ascend) is one contiguous byte
        // range: one copy for the run instead of one per row.
        let j = i + 1;
        while (j < n && rows[j] === rows[j - 1]! + 1 && isValid(j)) j++;
        const start = so2[rows[i]!]!;
        const end = so2[rows[j - 1]! + 1]!;
        const shift = pos - start;
        for (let k = i; k < j; k++) offsets[k + 1] = so2[rows[k]! + 1]! + shift;
        const len = end - start;
        // Short values: a byte loop beats creating a subarray.
        if (len <= 16) for (let b = 0; b < len; b++) data[pos + b] = sd[start + b]!;
        else data.set(sd.subarray(start, end), pos);
        pos += len;
        i = j;
      }
      return makeData({
        type: new Utf8(),
        length: n,
        nullCount: nulls,
        nullBitmap,
        valueOffsets: offsets,
        data,
      });
    }
    case 'vector': {
      const d = c.dim;
      const s = src.values as Float32Array;
      const out = new Float32Array(n * d);
      for (let i = 0; i < n; i++) {
        if (!isValid(i)) continue;
        const from = rows[i]! * d;
        const to = i * d;
        // Embedding-sized vectors copy faster element by element than through a subarray per row.
        if (d <= 32) for (let j = 0; j < d; j++) out[to + j] = s[from + j]!;
        else out.set(s.subarray(from, from + d), to);
      }
      const type = field.type as FixedSizeList<Float32>;
      const child = makeData({ type: type.children[0]!.type, length: n * d, nullCount: 0, data: out });
      return makeData({ type, length: n, nullCount: nulls, nullBitmap, child });
    }
  }
}

/** The structural shape of Arrow objects read here: it holds for any apache-arrow copy. */
interface DataLike {
  readonly type: unknown;
  readonly offset: number;
  readonly length: number;
  readonly nullCount: number;
  readonly nullBitmap?: unknown;
  readonly values?: unknown;
  readonly valueOffsets?: unknown;
  readonly children?: readonly DataLike[];
}

interface TypeLike {
  readonly typeId?: number;
  readonly bitWidth?: number;
  readonly isSigned?: boolean;
  readonly precision?: number;
  readonly unit?: number;
  readonly listSize?: number;
  readonly children?: readonly { readonly type: unknown }[];
}

/**
 * Whether an Arrow type stores column `c`. Compares type ids and parameters (stable values of
 * the Arrow format) rather than classes, so types from another apache-arrow copy match too.
 */
export function arrowTypeMatches(c: ColumnSpec, type: unknown): boolean {
  const t = type as TypeLike | null | undefined;
  if (t === null || t === undefined) return false;
  switch (c.type) {
    case 'int32':
      return t.typeId === Type.Int && t.bitWidth === 32 && t.isSigned === true;
    case 'int64':
      return t.typeId === Type.Int && t.bitWidth === 64 && t.isSigned === true;
    case 'float32':
      return isFloat32(t);
    case 'float64':
      return t.typeId === Type.Float && t.precision === Precision.DOUBLE;
    case 'bool':
      return t.typeId === Type.Bool;
    case 'utf8':
      return t.typeId === Type.Utf8;
    case 'timestamp':
      return t.typeId === Type.Timestamp && t.unit === TimeUnit.MILLISECOND;
    default:
      return (
        t.typeId === Type.FixedSizeList &&
        t.listSize === c.dim &&
        isFloat32((t.children?.[0]?.type ?? null) as TypeLike | null)
      );
  }
}

function isFloat32(t: TypeLike | null): boolean {
  return t !== null && t.typeId === Type.Float && t.precision === Precision.SINGLE;
}

function isUint8(t: TypeLike | null | undefined): boolean {
  return t?.typeId === Type.Int && t.bitWidth === 8 && t.isSigned === false;
}

function isFloat64(t: TypeLike | null | undefined): boolean {
  return t?.typeId === Type.Float && t.precision === Precision.DOUBLE;
}

type TypedCtor<T> = {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): T;
  new (length: number): T;
  readonly BYTES_PER_ELEMENT: number;
};

function malformed(column: string, why: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_ROW, `record batch column "${column}": ${why}`, {
    details: { column },
  });
}

/**
 * `count` elements of `Ctor` over the bytes of `buf` (any typed array): zero copy unless the
 * bytes are misaligned for `Ctor`. Checks the length, since a damaged IPC buffer descriptor
 * makes Arrow hand out a silently shortened buffer.
 */
function reinterpret<T extends ArrayBufferView>(
  Ctor: TypedCtor<T>,
  buf: unknown,
  count: number,
  column: string,
): T {
  if (!ArrayBuffer.isView(buf)) throw malformed(column, 'a buffer is missing');
  const bytes = count * Ctor.BYTES_PER_ELEMENT;
  if (buf.byteLength < bytes)
    throw malformed(column, `a buffer holds ${buf.byteLength} bytes, ${bytes} needed`);
  if (buf.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return new Ctor(buf.buffer, buf.byteOffset, count);
  const out = new Ctor(count);
  new Uint8Array(out.buffer).set(new Uint8Array(buf.buffer, buf.byteOffset, bytes));
  return out;
}

function bitsOf(buf: unknown, bitOffset: number, rows: number, column: string): Uint8Array {
  if (!(buf instanceof Uint8Array)) throw malformed(column, 'a bitmap is missing');
  if (buf.byteLength < (bitOffset + rows + 7) >> 3) throw malformed(column, 'a bitmap is too short');
  return buf;
}

function viewOfData(c: ColumnSpec, d: DataLike, rows: number): ColumnBuffers {
  const name = c.name;
  if (d.length !== rows) throw malformed(name, `has ${d.length} values, the batch has ${rows} rows`);
  const bitmap = d.nullBitmap;
  // Arrow stores "no nulls" as an absent or empty bitmap; either way every value is present.
  const hasBitmap = d.nullCount !== 0 && bitmap instanceof Uint8Array && bitmap.byteLength > 0;
  const validity = hasBitmap ? bitsOf(bitmap, d.offset, rows, name) : null;
  // Arrow's convention for sliced data: fixed-width values and offsets are already sliced to
  // row 0; only bitmaps (validity, bool values) keep the slice in `offset`, as a bit offset.
  const base = { validity, validityOffset: hasBitmap ? d.offset : 0, valuesOffset: 0, data: null };
  switch (c.kind) {
    case 'i32':
      return { ...base, values: reinterpret(Int32Array, d.values, rows, name) };
    case 'i64':
      return { ...base, values: reinterpret(Int32Array, d.values, 2 * rows, name) };
    case 'f32':
      return { ...base, values: reinterpret(Float32Array, d.values, rows, name) };
    case 'f64':
      return { ...base, values: reinterpret(Float64Array, d.values, rows, name) };
    case 'bool':
      return { ...base, values: bitsOf(d.values, d.offset, rows, name), valuesOffset: d.offset };
    case 'vector': {
      const child = d.children?.[0];
      if (child === undefined) throw malformed(name, 'the vector values are missing');
      return { ...base, values: reinterpret(Float32Array, child.values, rows * c.dim, name) };
    }
    case 'utf8': {
      const offsets = reinterpret(Int32Array, d.valueOffsets, rows + 1, name);
      const data = d.values;
      if (!(data instanceof Uint8Array)) throw malformed(name, 'the utf8 bytes are missing');
      // Offsets index straight into the bytes: out-of-range or decreasing offsets would read
      // outside a value (or outside the buffer) instead of failing.
      let prev = offsets[0]!;
      if (prev < 0) throw malformed(name, 'negative utf8 offset');
      for (let i = 1; i <= rows; i++) {
        const o = offsets[i]!;
        if (o < prev) throw malformed(name, `utf8 offsets decrease at row ${i - 1}`);
        prev = o;
      }
      if (prev > data.byteLength)
        throw malformed(name, `utf8 offsets reach ${prev}, past ${data.byteLength} bytes`);
      return { ...base, values: offsets, data };
    }
  }
}

/**
 * The reverse of gatherToArrow, zero copy: a ColumnarView over a RecordBatch's own buffers.
 * Columns are found by name and their types checked structurally, so a batch built by any
 * apache-arrow copy works. Reads the `__op` and `__seq` columns when present.
 *
 * Throws SLUICE_INVALID_SCHEMA when a column is missing or has another type, and
 * SLUICE_INVALID_ROW when a buffer is missing, too short or inconsistent.
 */
export function viewOfRecordBatch(schema: TableSchema, batch: RecordBatch): RecordBatchView {
  const rows = batch.numRows;
  const fields = batch.schema.fields;
  const children = batch.data.children as readonly DataLike[];
  const byName = new Map<string, number>();
  fields.forEach((f, i) => byName.set(f.name, i));
  const columns = schema.columns.map((c) => {
    const i = byName.get(c.name);
    const d = i === undefined ? undefined : children[i];
    if (d === undefined) {
      throw new SluiceError(ErrorCode.INVALID_SCHEMA, `record batch has no column "${c.name}"`, {
        details: { column: c.name },
      });
    }
    if (!arrowTypeMatches(c, d.type)) {
      throw new SluiceError(
        ErrorCode.INVALID_SCHEMA,
        `record batch column "${c.name}" has Arrow type ${String(d.type)}, the table stores ${c.type}`,
        { details: { column: c.name } },
      );
    }
    return viewOfData(c, d, rows);
  });
  const extra = (name: string, check: (t: TypeLike) => boolean): DataLike | null => {
    const i = byName.get(name);
    if (i === undefined) return null;
    const d = children[i];
    if (d === undefined || !check(d.type as TypeLike)) {
      throw new SluiceError(
        ErrorCode.INVALID_SCHEMA,
        `record batch column "${name}" has Arrow type ${String(d?.type)}`,
        {
          details: { column: name },
        },
      );
    }
    if (d.length !== rows) throw malformed(name, `has ${d.length} values, the batch has ${rows} rows`);
    return d;
  };
  const opData = extra(OP_COLUMN, isUint8);
  const seqData = extra(SEQ_COLUMN, isFloat64);
  return {
    rows,
    op: opData === null ? null : reinterpret(Uint8Array, opData.values, rows, OP_COLUMN),
    seq: seqData === null ? null : reinterpret(Float64Array, seqData.values, rows, SEQ_COLUMN),
    columns,
  };
}
