import type { ColumnBuffers, ColumnarView } from './columnar.js';
import type { TableSchema } from './schema.js';
import { ErrorCode, SluiceError } from '@sluice/protocol';

/**
 * The encoded batch: the one binary form of a write, used unchanged as the payload of a
 * SAB queue record and of a WAL record. Columnar, little-endian, every buffer 8-byte aligned
 * so the shard can view it in place with typed arrays (no decode step).
 *
 * Header (Int32 words):
 *   0 MAGIC  1 rows  2 byteLength  3 columns  4 flags  5 reserved
 *   6 opOffset  7 hashOffset  8..9 put sequence (float64, the global write sequence)
 *   10 + 4c: validityOffset, valuesOffset, dataOffset, dataLength   (per column c; 0 = absent)
 * Regions: op Uint8[rows], hash Uint32[rows], then per column: validity bitmap (only when the
 * column has a null), values (i64 as lo/hi int32 pairs, bool bit-packed, utf8 offsets Int32[rows+1]),
 * utf8 bytes.
 */
export const BATCH_MAGIC = 0x41424c53; // 'SLBA'
export const H_MAGIC = 0;
export const H_ROWS = 1;
export const H_BYTES = 2;
export const H_COLUMNS = 3;
export const H_FLAGS = 4;
export const H_OP = 6;
export const H_HASH = 7;
export const H_SEQ_WORD = 8;
export const H_COLDIR = 10;
export const FLAG_HAS_DELETES = 1;

export function headerBytes(columns: number): number {
  return align8(4 * (H_COLDIR + 4 * columns));
}

export function align8(n: number): number {
  return (n + 7) & ~7;
}

export interface BatchView extends ColumnarView {
  readonly hashes: Uint32Array;
  readonly op: Uint8Array;
  readonly seq: number;
  readonly byteLength: number;
  readonly hasDeletes: boolean;
}

function corrupt(msg: string): SluiceError {
  return new SluiceError(ErrorCode.CORRUPT_WAL, `encoded batch is malformed: ${msg}`);
}

/** Views an encoded batch in place. `bytes` must start at an 8-byte aligned offset of its buffer. */
export function viewBatch(schema: TableSchema, bytes: Uint8Array): BatchView {
  if (bytes.byteOffset % 8 !== 0) throw corrupt('not 8-byte aligned');
  if (bytes.byteLength < headerBytes(0)) throw corrupt('shorter than its header');
  const buf = bytes.buffer;
  const base = bytes.byteOffset;
  const h = new Int32Array(buf, base, H_COLDIR);
  if (h[H_MAGIC] !== BATCH_MAGIC) throw corrupt('bad magic');
  const rows = h[H_ROWS]!;
  const byteLength = h[H_BYTES]!;
  const ncol = h[H_COLUMNS]!;
  if (ncol !== schema.columns.length)
    throw corrupt(`has ${ncol} columns, schema has ${schema.columns.length}`);
  if (byteLength > bytes.byteLength || rows < 0 || byteLength < headerBytes(ncol))
    throw corrupt('bad length');
  const dir = new Int32Array(buf, base, H_COLDIR + 4 * ncol);
  const seq = new Float64Array(buf, base + 4 * H_SEQ_WORD, 1)[0]!;
  const inRange = (off: number, len: number): number => {
    if (off < 0 || off + len > byteLength) throw corrupt(`region ${off}+${len} past end ${byteLength}`);
    return base + off;
  };
  const op = new Uint8Array(buf, inRange(h[H_OP]!, rows), rows);
  const hashes = new Uint32Array(buf, inRange(h[H_HASH]!, 4 * rows), rows);
  const columns: ColumnBuffers[] = schema.columns.map((c, i) => {
    const vOff = dir[H_COLDIR + 4 * i]!;
    const valOff = dir[H_COLDIR + 4 * i + 1]!;
    const dOff = dir[H_COLDIR + 4 * i + 2]!;
    const dLen = dir[H_COLDIR + 4 * i + 3]!;
    const validity = vOff === 0 ? null : new Uint8Array(buf, inRange(vOff, (rows + 7) >> 3), (rows + 7) >> 3);
    let values: ColumnBuffers['values'];
    let data: Uint8Array | null = null;
    switch (c.kind) {
      case 'i32':
        values = new Int32Array(buf, inRange(valOff, 4 * rows), rows);
        break;
      case 'i64':
        values = new Int32Array(buf, inRange(valOff, 8 * rows), 2 * rows);
        break;
      case 'f32':
        values = new Float32Array(buf, inRange(valOff, 4 * rows), rows);
        break;
      case 'f64':
        values = new Float64Array(buf, inRange(valOff, 8 * rows), rows);
        break;
      case 'bool':
        values = new Uint8Array(buf, inRange(valOff, (rows + 7) >> 3), (rows + 7) >> 3);
        break;
      case 'vector':
        values = new Float32Array(buf, inRange(valOff, 4 * rows * c.dim), rows * c.dim);
        break;
      case 'utf8': {
        const offs = new Int32Array(buf, inRange(valOff, 4 * (rows + 1)), rows + 1);
        if (offs[0] !== 0 || offs[rows] !== dLen)
          throw corrupt(`column ${c.name}: offsets do not match data`);
        values = offs;
        data = new Uint8Array(buf, inRange(dOff, dLen), dLen);
        break;
      }
    }
    return { validity, validityOffset: 0, values, valuesOffset: 0, data };
  });
  return {
    rows,
    op,
    hashes,
    columns,
    seq,
    byteLength,
    hasDeletes: (h[H_FLAGS]! & FLAG_HAS_DELETES) !== 0,
  };
}

export interface BatchLayout {
  readonly total: number;
  readonly opOff: number;
  readonly hashOff: number;
  /** Per column: validityOffset, valuesOffset, dataOffset, dataLength (as in the header). */
  readonly cols: Int32Array;
}

/**
 * Offsets of every region of an encoded batch of `rows` rows. A validity bitmap exists for a
 * column only when some row is null there (or for every non-key column of a delete batch).
 */
export function batchLayout(
  schema: TableSchema,
  rows: number,
  utf8Bytes: ArrayLike<number>,
  hasNull: ArrayLike<number>,
  isDelete: boolean,
): BatchLayout {
  let off = headerBytes(schema.columns.length);
  const opOff = off;
  off = align8(off + rows);
  const hashOff = off;
  off = align8(off + 4 * rows);
  const cols = new Int32Array(4 * schema.columns.length);
  const bitmap = align8((rows + 7) >> 3);
  for (const c of schema.columns) {
    const nullable = c.index !== schema.keyIndex && (isDelete || hasNull[c.index] === 1);
    if (nullable) {
      cols[4 * c.index] = off;
      off += bitmap;
    }
    cols[4 * c.index + 1] = off;
    switch (c.kind) {
      case 'i32':
      case 'f32':
        off += align8(4 * rows);
        break;
      case 'i64':
      case 'f64':
        off += 8 * rows;
        break;
      case 'bool':
        off += bitmap;
        break;
      case 'vector':
        off += align8(4 * rows * c.dim);
        break;
      case 'utf8':
        off += align8(4 * (rows + 1));
        cols[4 * c.index + 2] = off;
        cols[4 * c.index + 3] = utf8Bytes[c.index]!;
        off += align8(utf8Bytes[c.index]!);
        break;
    }
  }
  return { total: off, opOff, hashOff, cols };
}

export function writeBatchHeader(
  target: Uint8Array,
  columns: number,
  rows: number,
  layout: BatchLayout,
  isDelete: boolean,
  seq: number,
): void {
  const h = new Int32Array(target.buffer, target.byteOffset, H_COLDIR + 4 * columns);
  h[H_MAGIC] = BATCH_MAGIC;
  h[H_ROWS] = rows;
  h[H_BYTES] = layout.total;
  h[H_COLUMNS] = columns;
  h[H_FLAGS] = isDelete ? FLAG_HAS_DELETES : 0;
  h[5] = 0;
  h[H_OP] = layout.opOff;
  h[H_HASH] = layout.hashOff;
  new Float64Array(target.buffer, target.byteOffset + 4 * H_SEQ_WORD, 1)[0] = seq;
  h.set(layout.cols, H_COLDIR);
}

/** A write encoded for the shards: its size per shard and how to write it into a queue slot. */
export interface EncodedWrite {
  readonly shardBytes: readonly number[];
  write(shard: number, target: Uint8Array, seq: number): void;
}
