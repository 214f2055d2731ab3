import type { RecordBatch } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { batchLayout, writeBatchHeader } from './batch-format.js';
import type { EncodedWrite } from './batch-format.js';
import { OP_PUT, isValid } from './columnar.js';
import type { ColumnBuffers, ColumnarView } from './columnar.js';
import { viewOfRecordBatch } from './generation/gather.js';
import { hashInt64Parts, hashUtf8Bytes, shardOfHash } from './hash.js';
import type { TableSchema } from './schema.js';

/**
 * Arrow input, column by column: a RecordBatch whose columns are the table's is validated and
 * routed on its typed arrays and copied straight into the encoded batches (a bulk copy per
 * column when everything goes to one shard), without ever materialising rows.
 */
export class ArrowEncoder {
  readonly #schema: TableSchema;
  readonly #shards: number;
  readonly #maxValueBytes: number;

  constructor(schema: TableSchema, shards: number, limits: { readonly maxValueBytes: number }) {
    this.#schema = schema;
    this.#shards = shards;
    this.#maxValueBytes = limits.maxValueBytes;
  }

  /** True when the batch has exactly the table's columns (any order), so the columnar path applies. */
  accepts(batch: RecordBatch): boolean {
    const names = batch.schema.fields.map((f) => f.name);
    return names.length === this.#schema.columns.length && names.every((n) => this.#schema.byName.has(n));
  }

  plan(batch: RecordBatch): EncodedWrite {
    const schema = this.#schema;
    let view: ColumnarView;
    try {
      view = viewOfRecordBatch(schema, batch);
    } catch (err) {
      if (err instanceof SluiceError) {
        throw new SluiceError(ErrorCode.INVALID_ROW, `Arrow input: ${err.message}`, {
          details: err.details,
          cause: err,
        });
      }
      throw err;
    }
    const n = view.rows;
    const nShards = this.#shards;
    const key = view.columns[schema.keyIndex]!;
    const keyName = schema.primaryKey;
    const hashes = new Uint32Array(n);
    const shardOf = new Uint16Array(n);
    const counts = new Int32Array(nShards);
    if (key.validity !== null) {
      for (let i = 0; i < n; i++) {
        if (!isValid(key, i)) {
          throw new SluiceError(
            ErrorCode.INVALID_ROW,
            `row ${i}, column "${keyName}": the primary key is null`,
            {
              details: { row: i, column: keyName },
            },
          );
        }
      }
    }
    if (schema.keyKind === 'i64') {
      const v = key.values as Int32Array;
      for (let i = 0; i < n; i++) hashes[i] = hashInt64Parts(v[2 * i]!, v[2 * i + 1]!);
    } else {
      const off = key.values as Int32Array;
      const data = key.data!;
      for (let i = 0; i < n; i++) hashes[i] = hashUtf8Bytes(data, off[i]!, off[i + 1]!);
    }
    if (nShards > 1) {
      for (let i = 0; i < n; i++) {
        const s = shardOfHash(hashes[i]!, nShards);
        shardOf[i] = s;
        counts[s]!++;
      }
    } else counts[0] = n;
    const utf8 = Array.from({ length: nShards }, () => new Int32Array(schema.columns.length));
    const hasNull = Array.from({ length: nShards }, () => new Uint8Array(schema.columns.length));
    for (const c of schema.columns) {
      const col = view.columns[c.index]!;
      if (c.kind === 'utf8') {
        const off = col.values as Int32Array;
        for (let i = 0; i < n; i++) {
          const len = off[i + 1]! - off[i]!;
          if (len > this.#maxValueBytes) {
            throw new SluiceError(
              ErrorCode.INVALID_ROW,
              `row ${i}, column "${c.name}": value is ${len} bytes, the limit is ${this.#maxValueBytes}`,
              { details: { row: i, column: c.name } },
            );
          }
          utf8[shardOf[i]!]![c.index]! += len;
        }
      }
      if (col.validity !== null && c.index !== schema.keyIndex) {
        for (let i = 0; i < n; i++) if (!isValid(col, i)) hasNull[shardOf[i]!]![c.index] = 1;
      }
    }
    const shardRows = Array.from({ length: nShards }, (_, s) => new Int32Array(counts[s]!));
    if (nShards === 1) for (let i = 0; i < n; i++) shardRows[0]![i] = i;
    else {
      const fill = new Int32Array(nShards);
      for (let i = 0; i < n; i++) shardRows[shardOf[i]!]![fill[shardOf[i]!]!++] = i;
    }
    const layouts = shardRows.map((rows, s) =>
      rows.length === 0 ? undefined : batchLayout(schema, rows.length, utf8[s]!, hasNull[s]!, false),
    );
    return {
      shardBytes: layouts.map((l) => l?.total ?? 0),
      write: (s, target, seq) => {
        const layout = layouts[s]!;
        const rows = shardRows[s]!;
        writeBatchHeader(target, schema.columns.length, rows.length, layout, false, seq);
        const buf = target.buffer;
        const base = target.byteOffset;
        new Uint8Array(buf, base + layout.opOff, rows.length).fill(OP_PUT);
        const h = new Uint32Array(buf, base + layout.hashOff, rows.length);
        for (let i = 0; i < rows.length; i++) h[i] = hashes[rows[i]!]!;
        for (const c of schema.columns) {
          writeColumn(
            c.kind,
            c.dim,
            view.columns[c.index]!,
            rows,
            nShards === 1,
            buf,
            base,
            layout.cols,
            c.index,
          );
        }
      },
    };
  }
}

function writeColumn(
  kind: string,
  dim: number,
  src: ColumnBuffers,
  rows: Int32Array,
  identity: boolean,
  buf: ArrayBufferLike,
  base: number,
  cols: Int32Array,
  c: number,
): void {
  const m = rows.length;
  const vOff = cols[4 * c]!;
  const valOff = cols[4 * c + 1]!;
  if (vOff !== 0) {
    const dst = new Uint8Array(buf, base + vOff, (m + 7) >> 3);
    dst.fill(0);
    for (let i = 0; i < m; i++) if (isValid(src, rows[i]!)) dst[i >> 3]! |= 1 << (i & 7);
  }
  switch (kind) {
    case 'i32':
    case 'f32': {
      const s = src.values as Int32Array;
      const d = new Int32Array(buf, base + valOff, m);
      const sv = new Int32Array(s.buffer, s.byteOffset, s.length);
      if (identity) d.set(sv.subarray(0, m));
      else for (let i = 0; i < m; i++) d[i] = sv[rows[i]!]!;
      return;
    }
    case 'i64':
    case 'f64': {
      // Both are 8-byte values: copy as int32 pairs (no float canonicalisation of NaN payloads).
      const s = src.values;
      const sv = new Int32Array(s.buffer, s.byteOffset, (s.byteLength >> 2) & ~1);
      const d = new Int32Array(buf, base + valOff, 2 * m);
      if (identity) d.set(sv.subarray(0, 2 * m));
      else {
        for (let i = 0; i < m; i++) {
          const r = rows[i]!;
          d[2 * i] = sv[2 * r]!;
          d[2 * i + 1] = sv[2 * r + 1]!;
        }
      }
      return;
    }
    case 'bool': {
      const s = src.values as Uint8Array;
      const d = new Uint8Array(buf, base + valOff, (m + 7) >> 3);
      d.fill(0);
      for (let i = 0; i < m; i++) {
        const bit = src.valuesOffset + rows[i]!;
        if ((s[bit >> 3]! & (1 << (bit & 7))) !== 0) d[i >> 3]! |= 1 << (i & 7);
      }
      return;
    }
    case 'vector': {
      const s = src.values as Float32Array;
      const d = new Float32Array(buf, base + valOff, m * dim);
      if (identity) d.set(s.subarray(0, m * dim));
      else for (let i = 0; i < m; i++) d.set(s.subarray(rows[i]! * dim, (rows[i]! + 1) * dim), i * dim);
      return;
    }
    case 'utf8': {
      const so = src.values as Int32Array;
      const sd = src.data!;
      const dOffsets = new Int32Array(buf, base + valOff, m + 1);
      const dData = new Uint8Array(buf, base + cols[4 * c + 2]!, cols[4 * c + 3]!);
      if (identity) {
        const start = so[0]!;
        for (let i = 0; i <= m; i++) dOffsets[i] = so[i]! - start;
        dData.set(sd.subarray(start, so[m]!));
        return;
      }
      let pos = 0;
      dOffsets[0] = 0;
      for (let i = 0; i < m; i++) {
        const r = rows[i]!;
        const a = so[r]!;
        const b = so[r + 1]!;
        if (b - a <= 16) for (let k = a; k < b; k++) dData[pos++] = sd[k]!;
        else {
          dData.set(sd.subarray(a, b), pos);
          pos += b - a;
        }
        dOffsets[i + 1] = pos;
      }
      return;
    }
  }
}
