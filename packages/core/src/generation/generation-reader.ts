import { crc32 } from 'node:zlib';
import { RecordBatchReader } from 'apache-arrow';
import type { RecordBatch, RecordBatchFileReader } from 'apache-arrow';
import { ErrorCode, SluiceError, isSluiceError } from '@sluice/protocol';
import type { ColumnBuffers } from '../columnar.js';
import { OP_DELETE, OP_PUT, compareKeys } from '../columnar.js';
import type { GenerationEntry } from '../manifest/manifest.js';
import type { TableSchema } from '../schema.js';
import type { Storage } from '../storage/storage.js';
import type { RecordBatchView } from './gather.js';
import { OP_COLUMN, SEQ_COLUMN, arrowTypeMatches, viewOfRecordBatch } from './gather.js';
import {
  GENERATION_FORMAT,
  META_FORMAT,
  META_GENERATION,
  META_PRIMARY_KEY,
  hex8,
  keyColumnOf,
  keyString,
  parseGenerationFileName,
} from './generation-file.js';

/** Bytes checksummed per slice when a generation file is opened (about 2 ms each). */
const CRC_SLICE_BYTES = 1 << 20;

/** Where a key sits in a generation: record batch index and row inside that batch. */
export interface GenerationHit {
  readonly batch: number;
  readonly row: number;
}

const MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // 'ARROW1'

function hasMagicAt(bytes: Uint8Array, at: number): boolean {
  if (at < 0 || at + MAGIC.length > bytes.byteLength) return false;
  for (let i = 0; i < MAGIC.length; i++) if (bytes[at + i] !== MAGIC[i]) return false;
  return true;
}

/**
 * One generation file, loaded, verified and viewed in place: `batches[i]` are zero-copy
 * columnar views over the file's bytes (rows sorted by key, `op` per row, `seq` per row).
 * Immutable once opened, so one instance serves any number of concurrent readers.
 *
 * @example
 * ```ts
 * const gen = await GenerationReader.open(storage, entry, schema);
 * const hit = gen.find(42n); // { batch, row } or null
 * if (hit && gen.batches[hit.batch]!.op![hit.row] === OP_PUT) { ... }
 * ```
 */
export class GenerationReader {
  readonly entry: GenerationEntry;
  readonly schema: TableSchema;
  /** The Arrow record batches, for callers that hand Arrow data on without a copy. */
  readonly recordBatches: readonly RecordBatch[];
  readonly batches: readonly RecordBatchView[];
  readonly rows: number;
  /** Bytes held in memory (the whole file: the views point into it). */
  readonly byteLength: number;
  readonly #keys: readonly ColumnBuffers[];

  private constructor(
    entry: GenerationEntry,
    schema: TableSchema,
    recordBatches: RecordBatch[],
    batches: RecordBatchView[],
    byteLength: number,
  ) {
    this.entry = entry;
    this.schema = schema;
    this.recordBatches = recordBatches;
    this.batches = batches;
    this.byteLength = byteLength;
    this.rows = batches.reduce((n, b) => n + b.rows, 0);
    this.#keys = batches.map((b) => b.columns[schema.keyIndex]!);
  }

  /**
   * Loads `entry.file` and verifies it against the entry and the table schema. Damage of any
   * kind (missing file, wrong size or checksum, not an Arrow IPC file, other columns, other
   * batches, unsorted keys) is SLUICE_CORRUPT_GENERATION naming the file; a failing storage
   * call is SLUICE_IO.
   */
  static async open(
    storage: Storage,
    entry: GenerationEntry,
    schema: TableSchema,
  ): Promise<GenerationReader> {
    const bytes = await storage.get(entry.file);
    if (bytes === undefined) throw corruptError(entry, 'the file does not exist');
    // The checksum of a big file takes a while: compute it a slice at a time, letting the
    // thread's other work (acknowledgements, commits, puts) run between slices.
    let crc = 0;
    for (let at = 0; at < bytes.byteLength; at += CRC_SLICE_BYTES) {
      if (at > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      crc = crc32(bytes.subarray(at, Math.min(bytes.byteLength, at + CRC_SLICE_BYTES)), crc);
    }
    return GenerationReader.decode(bytes, entry, schema, crc);
  }

  /**
   * Verifies and views the bytes of a generation file (see `open`). `crc`, when given, is the
   * crc32 of `bytes` already computed by the caller.
   */
  static decode(
    bytes: Uint8Array,
    entry: GenerationEntry,
    schema: TableSchema,
    crc?: number,
  ): GenerationReader {
    const corrupt = (why: string, cause?: unknown): SluiceError => corruptError(entry, why, cause);
    if (bytes.byteLength !== entry.bytes) {
      throw corrupt(`the file has ${bytes.byteLength} bytes, the manifest says ${entry.bytes}`);
    }
    const name = parseGenerationFileName(entry.file);
    if (name === undefined) throw corrupt('the file name does not carry a generation checksum');
    if (name.gen !== entry.gen) throw corrupt(`the file name says generation ${name.gen}`);
    const actual = crc ?? crc32(bytes);
    if (actual !== name.crc32)
      throw corrupt(`crc32 mismatch (named ${hex8(name.crc32)}, computed ${hex8(actual)})`);
    if (!hasMagicAt(bytes, 0) || !hasMagicAt(bytes, bytes.byteLength - MAGIC.length)) {
      throw corrupt('not an Arrow IPC file (no ARROW1 magic at both ends)');
    }

    let reader: RecordBatchFileReader;
    try {
      const r = RecordBatchReader.from(bytes);
      if (!r.isFile()) throw corrupt('not an Arrow IPC file');
      reader = r.open();
    } catch (err) {
      throw isSluiceError(err) ? err : corrupt('Arrow cannot read its footer or schema', err);
    }
    checkFileSchema(reader, entry, schema, corrupt);

    const count = reader.numRecordBatches;
    if (count !== entry.batches.length) {
      throw corrupt(`the file has ${count} record batches, the manifest says ${entry.batches.length}`);
    }
    const kind = schema.keyKind;
    const recordBatches: RecordBatch[] = [];
    const views: RecordBatchView[] = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const expected = entry.batches[i]!;
      let batch: RecordBatch | null;
      let view: RecordBatchView;
      try {
        batch = reader.readRecordBatch(i);
        if (batch === null) throw corrupt(`record batch ${i} cannot be read`);
        view = viewOfRecordBatch(schema, batch);
      } catch (err) {
        throw isSluiceError(err, ErrorCode.CORRUPT_GENERATION)
          ? err
          : corrupt(`record batch ${i} is malformed`, err);
      }
      const rows = view.rows;
      if (rows !== expected.rows)
        throw corrupt(`record batch ${i} has ${rows} rows, the manifest says ${expected.rows}`);
      if (rows === 0) throw corrupt(`record batch ${i} is empty`);
      const op = view.op;
      if (op === null || view.seq === null)
        throw corrupt(`record batch ${i} lacks ${OP_COLUMN} or ${SEQ_COLUMN}`);
      for (let r = 0; r < rows; r++) {
        if (op[r] !== OP_PUT && op[r] !== OP_DELETE)
          throw corrupt(`record batch ${i} row ${r} has op ${op[r]}`);
      }
      // Lookups binary-search on key order, so order is a property of the file worth proving
      // once here rather than trusting on every lookup.
      const key = view.columns[schema.keyIndex]!;
      if (key.validity !== null) throw corrupt(`record batch ${i} has null primary keys`);
      for (let r = 1; r < rows; r++) {
        if (compareKeys(kind, key, r - 1, key, r) >= 0)
          throw corrupt(`record batch ${i}: keys not ascending at row ${r}`);
      }
      const prev = views[i - 1];
      if (
        prev !== undefined &&
        compareKeys(kind, prev.columns[schema.keyIndex]!, prev.rows - 1, key, 0) >= 0
      ) {
        throw corrupt(`record batch ${i} starts at or below the end of batch ${i - 1}`);
      }
      const minKey = keyString(schema, key, 0);
      const maxKey = keyString(schema, key, rows - 1);
      if (minKey !== expected.minKey || maxKey !== expected.maxKey) {
        throw corrupt(
          `record batch ${i} holds keys ${minKey}..${maxKey}, the manifest says ${expected.minKey}..${expected.maxKey}`,
        );
      }
      total += rows;
      recordBatches.push(batch);
      views.push(view);
    }
    if (total !== entry.rows) throw corrupt(`the file has ${total} rows, the manifest says ${entry.rows}`);
    const first = entry.batches[0];
    const last = entry.batches[count - 1];
    if (
      first !== undefined &&
      last !== undefined &&
      (entry.minKey !== first.minKey || entry.maxKey !== last.maxKey)
    ) {
      throw corrupt(`the manifest key range ${entry.minKey}..${entry.maxKey} disagrees with its batches`);
    }
    return new GenerationReader(entry, schema, recordBatches, views, bytes.byteLength);
  }

  /**
   * Where the key at `keyRow` of `keyCol` is, or null. Binary search on the batches' key
   * ranges, then inside the one batch that can hold it.
   */
  lookup(keyCol: ColumnBuffers, keyRow: number): GenerationHit | null {
    const kind = this.schema.keyKind;
    const keys = this.#keys;
    const batches = this.batches;
    // First batch whose last key is >= the key: the only one that can hold it.
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compareKeys(kind, keys[mid]!, batches[mid]!.rows - 1, keyCol, keyRow) < 0) lo = mid + 1;
      else hi = mid;
    }
    const key = keys[lo];
    if (key === undefined) return null;
    let a = 0;
    let b = batches[lo]!.rows - 1;
    while (a <= b) {
      const mid = (a + b) >>> 1;
      const c = compareKeys(kind, key, mid, keyCol, keyRow);
      if (c === 0) return { batch: lo, row: mid };
      if (c < 0) a = mid + 1;
      else b = mid - 1;
    }
    return null;
  }

  /** `lookup` for a key given as a JS value (bigint or safe integer for int64, string for utf8). */
  find(key: bigint | number | string): GenerationHit | null {
    return this.lookup(keyColumnOf(this.schema, key), 0);
  }
}

function corruptError(entry: GenerationEntry, why: string, cause?: unknown): SluiceError {
  return new SluiceError(
    ErrorCode.CORRUPT_GENERATION,
    `generation ${entry.gen} file ${entry.file} is damaged: ${why}`,
    { details: { path: entry.file, gen: entry.gen }, ...(cause === undefined ? {} : { cause }) },
  );
}

/** The file must hold exactly the table's columns, in order and with their types, then `__op` and `__seq`. */
function checkFileSchema(
  reader: RecordBatchFileReader,
  entry: GenerationEntry,
  schema: TableSchema,
  corrupt: (why: string) => SluiceError,
): void {
  const meta = reader.schema.metadata;
  if (meta.get(META_FORMAT) !== GENERATION_FORMAT) {
    throw corrupt(`unknown generation format ${JSON.stringify(meta.get(META_FORMAT) ?? null)}`);
  }
  if (meta.get(META_GENERATION) !== String(entry.gen)) {
    throw corrupt(`the file says generation ${JSON.stringify(meta.get(META_GENERATION) ?? null)}`);
  }
  if (meta.get(META_PRIMARY_KEY) !== schema.primaryKey) {
    throw corrupt(`the file's primary key is ${JSON.stringify(meta.get(META_PRIMARY_KEY) ?? null)}`);
  }
  const fields = reader.schema.fields;
  const names = [...schema.columns.map((c) => c.name), OP_COLUMN, SEQ_COLUMN];
  if (fields.length !== names.length || fields.some((f, i) => f.name !== names[i])) {
    throw corrupt(
      `the file has columns ${fields.map((f) => f.name).join(', ')}, expected ${names.join(', ')}`,
    );
  }
  for (const c of schema.columns) {
    const f = fields[c.index]!;
    if (!arrowTypeMatches(c, f.type))
      throw corrupt(`column "${c.name}" has type ${String(f.type)}, expected ${c.type}`);
  }
}
