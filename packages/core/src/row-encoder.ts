import { ErrorCode, SluiceError } from '@sluice/protocol';
import { batchLayout, writeBatchHeader } from './batch-format.js';
import { OP_DELETE, OP_PUT } from './columnar.js';
import { hashInt64Parts, hashUtf8String, shardOfHash } from './hash.js';
import type { ColumnSpec, TableSchema } from './schema.js';

const TWO32 = 4294967296;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * Pass 1 of a write: every row validated, routed and measured; nothing written anywhere.
 * A plan either exists whole or the write is rejected whole (bad input changes nothing).
 */
export interface EncodePlan {
  readonly rows: number;
  readonly op: number;
  readonly source: readonly unknown[];
  /** Shard of each input row. */
  readonly rowShard: Uint16Array;
  readonly hashes: Uint32Array;
  /** Per shard: input row indices routed there, in input order. */
  readonly shardRows: readonly Int32Array[];
  /** Per shard: encoded batch size in bytes (0 when no row goes there). */
  readonly shardBytes: readonly number[];
  /** Per shard, per column: utf8 bytes. */
  readonly utf8Bytes: readonly Int32Array[];
  /** Per shard: true when some row has a null in column c (bit per column index in a Uint8Array). */
  readonly hasNull: readonly Uint8Array[];
}

export interface EncoderLimits {
  /** Largest utf8 value in bytes. */
  readonly maxValueBytes: number;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'bigint') return `bigint ${v}`;
  if (typeof v === 'number') return `number ${v}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (v instanceof Date) return `Date ${String(v)}`;
  return typeof v === 'object' ? `object ${Object.prototype.toString.call(v)}` : typeof v;
}

function bad(row: number, column: string | undefined, message: string): SluiceError {
  const where = column === undefined ? `row ${row}` : `row ${row}, column "${column}"`;
  return new SluiceError(ErrorCode.INVALID_ROW, `${where}: ${message}`, {
    details: column === undefined ? { row } : { row, column },
  });
}

/** Converts plain JS rows into encoded batches (see batch-format.ts), one per shard. */
export class RowEncoder {
  readonly #schema: TableSchema;
  readonly #shards: number;
  readonly #limits: EncoderLimits;
  readonly #parts = new Int32Array(2);
  #scratch = new Uint8Array(0);

  constructor(schema: TableSchema, shards: number, limits: EncoderLimits) {
    this.#schema = schema;
    this.#shards = shards;
    this.#limits = limits;
  }

  /** Validates and routes rows for a put (op = OP_PUT) or keys for a delete (op = OP_DELETE). */
  plan(input: readonly unknown[], op: number): EncodePlan {
    const schema = this.#schema;
    const n = input.length;
    const nShards = this.#shards;
    const rowShard = new Uint16Array(n);
    const hashes = new Uint32Array(n);
    const counts = new Int32Array(nShards);
    const utf8Bytes = Array.from({ length: nShards }, () => new Int32Array(schema.columns.length));
    const hasNull = Array.from({ length: nShards }, () => new Uint8Array(schema.columns.length));
    const keyCol = schema.columns[schema.keyIndex]!;
    const maxValue = this.#limits.maxValueBytes;
    for (let r = 0; r < n; r++) {
      const row = input[r];
      let key: unknown;
      if (op === OP_DELETE) {
        key = row;
      } else {
        if (typeof row !== 'object' || row === null || Array.isArray(row)) {
          throw bad(r, undefined, `expected a plain object, got ${describe(row)}`);
        }
        for (const k in row) {
          if (!schema.byName.has(k)) {
            throw bad(
              r,
              k,
              `unknown column (the schema has ${schema.columns.map((c) => c.name).join(', ')})`,
            );
          }
        }
        key = (row as Record<string, unknown>)[keyCol.name];
      }
      const h = this.#keyHash(r, keyCol, key);
      const s = nShards === 1 ? 0 : shardOfHash(h, nShards);
      rowShard[r] = s;
      hashes[r] = h;
      counts[s]!++;
      if (op === OP_DELETE) {
        if (keyCol.kind === 'utf8') utf8Bytes[s]![keyCol.index]! += Buffer.byteLength(key as string, 'utf8');
        continue;
      }
      const obj = row as Record<string, unknown>;
      for (const c of schema.columns) {
        if (c.index === schema.keyIndex) {
          if (c.kind === 'utf8') {
            const len = Buffer.byteLength(key as string, 'utf8');
            if (len > maxValue) throw bad(r, c.name, `value is ${len} bytes, the limit is ${maxValue}`);
            utf8Bytes[s]![c.index]! += len;
          }
          continue;
        }
        const v = obj[c.name];
        if (v === null || v === undefined) {
          hasNull[s]![c.index] = 1;
          continue;
        }
        const len = this.#check(r, c, v);
        if (len > 0) {
          if (len > maxValue) throw bad(r, c.name, `value is ${len} bytes, the limit is ${maxValue}`);
          utf8Bytes[s]![c.index]! += len;
        }
      }
    }
    const shardRows = Array.from({ length: nShards }, (_, s) => new Int32Array(counts[s]!));
    const fill = new Int32Array(nShards);
    for (let r = 0; r < n; r++) {
      const s = rowShard[r]!;
      shardRows[s]![fill[s]!++] = r;
    }
    const shardBytes = shardRows.map((rows, s) =>
      rows.length === 0
        ? 0
        : batchLayout(schema, rows.length, utf8Bytes[s]!, hasNull[s]!, op === OP_DELETE).total,
    );
    return { rows: n, op, source: input, rowShard, hashes, shardRows, shardBytes, utf8Bytes, hasNull };
  }

  /** Hash of a key, validating it; throws INVALID_ROW (put) naming the row. */
  #keyHash(r: number, keyCol: ColumnSpec, key: unknown): number {
    if (key === null || key === undefined) {
      throw bad(r, keyCol.name, `the primary key is ${key === null ? 'null' : 'missing'}`);
    }
    if (keyCol.kind === 'i64') {
      const parts = this.#parts;
      if (typeof key === 'number') {
        if (!Number.isSafeInteger(key)) {
          throw bad(
            r,
            keyCol.name,
            `expected an int64 (safe integer number or bigint), got ${describe(key)}`,
          );
        }
        const hi = Math.floor(key / TWO32);
        parts[0] = key - hi * TWO32;
        parts[1] = hi;
      } else if (typeof key === 'bigint') {
        if (key < INT64_MIN || key > INT64_MAX)
          throw bad(r, keyCol.name, `${describe(key)} is outside int64`);
        parts[0] = Number(BigInt.asIntN(32, key));
        parts[1] = Number(BigInt.asIntN(32, key >> 32n));
      } else {
        throw bad(r, keyCol.name, `expected an int64 (safe integer number or bigint), got ${describe(key)}`);
      }
      return hashInt64Parts(parts[0]!, parts[1]!);
    }
    if (typeof key !== 'string')
      throw bad(r, keyCol.name, `expected a utf8 string key, got ${describe(key)}`);
    return hashUtf8String(key);
  }

  /** Validates one non-null value; returns its utf8 byte length (0 for other kinds). */
  #check(r: number, c: ColumnSpec, v: unknown): number {
    switch (c.kind) {
      case 'i32':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
          throw bad(r, c.name, `expected an int32, got ${describe(v)}`);
        }
        return 0;
      case 'i64':
        if (c.type === 'timestamp') {
          if (v instanceof Date) {
            if (Number.isNaN(v.getTime())) throw bad(r, c.name, 'expected a valid Date, got an invalid Date');
            return 0;
          }
          if (typeof v === 'number' && Number.isSafeInteger(v)) return 0;
          throw bad(r, c.name, `expected a Date or integer epoch milliseconds, got ${describe(v)}`);
        }
        if (
          typeof v === 'number'
            ? Number.isSafeInteger(v)
            : typeof v === 'bigint' && v >= INT64_MIN && v <= INT64_MAX
        ) {
          return 0;
        }
        throw bad(r, c.name, `expected an int64 (safe integer number or bigint), got ${describe(v)}`);
      case 'f32':
      case 'f64':
        if (typeof v !== 'number') throw bad(r, c.name, `expected a number, got ${describe(v)}`);
        return 0;
      case 'bool':
        if (typeof v !== 'boolean') throw bad(r, c.name, `expected a boolean, got ${describe(v)}`);
        return 0;
      case 'utf8':
        if (typeof v !== 'string') throw bad(r, c.name, `expected a string, got ${describe(v)}`);
        return v.length === 0 ? 0 : Buffer.byteLength(v, 'utf8');
      case 'vector': {
        const arr = v as ArrayLike<unknown>;
        if (!(v instanceof Float32Array || v instanceof Float64Array || Array.isArray(v))) {
          throw bad(r, c.name, `expected an array or Float32Array of ${c.dim} numbers, got ${describe(v)}`);
        }
        if (arr.length !== c.dim) {
          throw bad(r, c.name, `expected a vector of ${c.dim} numbers, got length ${arr.length}`);
        }
        if (Array.isArray(v)) {
          for (let i = 0; i < c.dim; i++) {
            if (typeof arr[i] !== 'number')
              throw bad(r, c.name, `element ${i} is ${describe(arr[i])}, not a number`);
          }
        }
        return 0;
      }
    }
  }

  /**
   * Pass 2: writes shard `s`'s rows of a plan into `target` (exactly plan.shardBytes[s] long,
   * 8-byte aligned, e.g. a SAB queue reservation). Cannot fail: pass 1 checked everything.
   */
  write(plan: EncodePlan, s: number, target: Uint8Array, seq: number): void {
    const schema = this.#schema;
    const rows = plan.shardRows[s]!;
    const n = rows.length;
    const { total, opOff, hashOff, cols } = batchLayout(
      this.#schema,
      n,
      plan.utf8Bytes[s]!,
      plan.hasNull[s]!,
      plan.op === OP_DELETE,
    );
    if (target.byteLength < total || target.byteOffset % 8 !== 0) {
      throw new SluiceError(
        ErrorCode.INTERNAL,
        `encode target of ${target.byteLength} bytes cannot hold ${total}`,
      );
    }
    const buf = target.buffer;
    const base = target.byteOffset;
    writeBatchHeader(
      target,
      schema.columns.length,
      n,
      { total, opOff, hashOff, cols },
      plan.op === OP_DELETE,
      seq,
    );
    new Uint8Array(buf, base + opOff, n).fill(plan.op === OP_DELETE ? OP_DELETE : OP_PUT);
    const hashes = new Uint32Array(buf, base + hashOff, n);
    for (let i = 0; i < n; i++) hashes[i] = plan.hashes[rows[i]!]!;
    const src = plan.source;
    for (const c of schema.columns) {
      const vOff = cols[4 * c.index]!;
      const valOff = cols[4 * c.index + 1]!;
      const isKey = c.index === schema.keyIndex;
      const validity = vOff === 0 ? null : new Uint8Array(buf, base + vOff, (n + 7) >> 3);
      if (validity) validity.fill(0);
      if (plan.op === OP_DELETE && !isKey) {
        // A tombstone carries only its key: every other column is null (zeroed so WAL bytes are deterministic).
        const end = c.index + 1 < schema.columns.length ? nextRegion(cols, c.index + 1, total) : total;
        new Uint8Array(buf, base + valOff, end - valOff).fill(0);
        continue;
      }
      const get =
        plan.op === OP_DELETE
          ? (i: number): unknown => src[rows[i]!]
          : (i: number): unknown => (src[rows[i]!] as Record<string, unknown>)[c.name];
      this.#writeColumn(c, buf, base, valOff, cols[4 * c.index + 2]!, validity, n, get);
    }
  }

  #writeColumn(
    c: ColumnSpec,
    buf: ArrayBufferLike,
    base: number,
    valOff: number,
    dataOff: number,
    validity: Uint8Array | null,
    n: number,
    get: (i: number) => unknown,
  ): void {
    const setValid = (i: number): void => {
      if (validity) validity[i >> 3]! |= 1 << (i & 7);
    };
    switch (c.kind) {
      case 'i32':
      case 'f32':
      case 'f64': {
        const out =
          c.kind === 'i32'
            ? new Int32Array(buf, base + valOff, n)
            : c.kind === 'f32'
              ? new Float32Array(buf, base + valOff, n)
              : new Float64Array(buf, base + valOff, n);
        for (let i = 0; i < n; i++) {
          const v = get(i);
          if (v === null || v === undefined) out[i] = 0;
          else {
            out[i] = v as number;
            setValid(i);
          }
        }
        return;
      }
      case 'i64': {
        const out = new Int32Array(buf, base + valOff, 2 * n);
        for (let i = 0; i < n; i++) {
          let v = get(i);
          if (v === null || v === undefined) {
            out[2 * i] = 0;
            out[2 * i + 1] = 0;
            continue;
          }
          setValid(i);
          if (v instanceof Date) v = v.getTime();
          if (typeof v === 'number') {
            const hi = Math.floor(v / TWO32);
            out[2 * i] = v - hi * TWO32;
            out[2 * i + 1] = hi;
          } else {
            const b = v as bigint;
            out[2 * i] = Number(BigInt.asIntN(32, b));
            out[2 * i + 1] = Number(BigInt.asIntN(32, b >> 32n));
          }
        }
        return;
      }
      case 'bool': {
        const out = new Uint8Array(buf, base + valOff, (n + 7) >> 3);
        out.fill(0);
        for (let i = 0; i < n; i++) {
          const v = get(i);
          if (v === null || v === undefined) continue;
          setValid(i);
          if (v === true) out[i >> 3]! |= 1 << (i & 7);
        }
        return;
      }
      case 'vector': {
        const d = c.dim;
        const out = new Float32Array(buf, base + valOff, n * d);
        for (let i = 0; i < n; i++) {
          const v = get(i) as ArrayLike<number> | null | undefined;
          if (v === null || v === undefined) {
            out.fill(0, i * d, (i + 1) * d);
            continue;
          }
          setValid(i);
          if (v instanceof Float32Array) out.set(v, i * d);
          else for (let j = 0; j < d; j++) out[i * d + j] = v[j]!;
        }
        return;
      }
      case 'utf8': {
        const offsets = new Int32Array(buf, base + valOff, n + 1);
        const bytes = new Uint8Array(buf, base + dataOff);
        let pos = 0;
        offsets[0] = 0;
        for (let i = 0; i < n; i++) {
          const v = get(i);
          if (typeof v === 'string') {
            setValid(i);
            pos += this.#writeUtf8(v, bytes, pos);
          }
          offsets[i + 1] = pos;
        }
        return;
      }
    }
  }

  /** Writes `s` as UTF-8 at `bytes[pos]`; ASCII inline (short strings dominate), else the native encoder. */
  #writeUtf8(s: string, bytes: Uint8Array, pos: number): number {
    const len = s.length;
    if (len <= 64) {
      let i = 0;
      for (; i < len; i++) {
        const ch = s.charCodeAt(i);
        if (ch >= 0x80) break;
        bytes[pos + i] = ch;
      }
      if (i === len) return len;
    }
    if (this.#scratch.byteLength < len * 3) this.#scratch = new Uint8Array(Math.max(len * 3, 4096));
    // encodeInto cannot target a SharedArrayBuffer view, so encode to scratch and copy.
    const { written } = utf8Encoder.encodeInto(s, this.#scratch);
    bytes.set(this.#scratch.subarray(0, written), pos);
    return written;
  }
}

const utf8Encoder = new TextEncoder();

function nextRegion(cols: Int32Array, fromCol: number, total: number): number {
  for (let c = fromCol; 4 * c < cols.length; c++) {
    const v = cols[4 * c]! || cols[4 * c + 1]!;
    if (v) return v;
  }
  return total;
}
