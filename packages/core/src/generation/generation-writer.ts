import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { RecordBatch, RecordBatchFileWriter, RecordBatchReader, Schema } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { GenerationBatch, GenerationEntry } from '../manifest/manifest.js';
import type { Memtable } from '../memtable/memtable.js';
import { schemaToJson } from '../schema.js';
import type { Storage } from '../storage/storage.js';
import { gatherToArrow } from './gather.js';
import {
  GENERATION_FORMAT,
  META_EPOCH,
  META_FORMAT,
  META_GENERATION,
  META_PRIMARY_KEY,
  META_SCHEMA,
  generationFileName,
  keyString,
} from './generation-file.js';

/** What a flush reports: the manifest entry of the new generation, plus the newest sequence it holds. */
export type GenerationWritten = GenerationEntry & { readonly maxSeq: number };

export interface WriteGenerationOptions {
  /** Generation number (from the manifest's nextGeneration). */
  readonly gen: number;
  /** Writer epoch of the shard owner; part of the file name so fenced writers never collide. */
  readonly epoch: number;
  /** Largest record batch; a point lookup reads one batch. */
  readonly rowsPerBatch: number;
}

/** Name attempts before giving up: the random suffix makes even a second attempt near impossible. */
const NAME_ATTEMPTS = 4;

function checkCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be an integer >= ${min}, got ${String(value)}`);
  }
}

/**
 * Writes the first `rows` rows of a (frozen) memtable as a generation file: the newest version
 * of every key, tombstones included, sorted by primary key, in record batches of at most
 * `rowsPerBatch` rows. The file is created with put-if-absent, so it is durable when this
 * resolves and never replaces another file. The caller commits the returned entry.
 *
 * @example
 * ```ts
 * const written = await writeGeneration(storage, 'shard-000', frozen, rows, { gen: 7, epoch: 3, rowsPerBatch: 8192 });
 * // commit `written` to the shard manifest, then retire the frozen memtable
 * ```
 */
export async function writeGeneration(
  storage: Storage,
  shardPrefix: string,
  mt: Memtable,
  rows: number,
  opts: WriteGenerationOptions,
): Promise<GenerationWritten> {
  checkCount('rows', rows, 1);
  if (rows > mt.capacity)
    throw new RangeError(`rows must be at most the memtable capacity ${mt.capacity}, got ${rows}`);
  checkCount('options.gen', opts.gen, 0);
  checkCount('options.epoch', opts.epoch, 0);
  checkCount('options.rowsPerBatch', opts.rowsPerBatch, 1);
  const schema = mt.schema;
  const selected = mt.latestRowsByKey(rows);
  let maxSeq = -Infinity;
  const seq = mt.seq;
  for (let r = 0; r < rows; r++) if (seq[r]! > maxSeq) maxSeq = seq[r]!;

  const view = mt.view(rows);
  const key = view.columns[schema.keyIndex]!;
  const metadata = new Map<string, string>([
    [META_FORMAT, GENERATION_FORMAT],
    [META_GENERATION, String(opts.gen)],
    [META_EPOCH, String(opts.epoch)],
    [META_PRIMARY_KEY, schema.primaryKey],
    [META_SCHEMA, JSON.stringify(schemaToJson(schema))],
  ]);
  let fileSchema: Schema | undefined;
  const batches: RecordBatch[] = [];
  const ranges: { rows: number; minKey: string; maxKey: string }[] = [];
  for (let a = 0; a < selected.length; a += opts.rowsPerBatch) {
    const part = selected.subarray(a, Math.min(a + opts.rowsPerBatch, selected.length));
    const gathered = gatherToArrow(schema, view, part, schema.columns, { op: true, seq });
    // Every batch shares one Schema object carrying the file metadata: the IPC writer starts
    // a new stream when a batch's schema differs from the one it began with.
    fileSchema ??= new Schema(gathered.schema.fields, metadata);
    batches.push(new RecordBatch(fileSchema, gathered.data));
    ranges.push({
      rows: part.length,
      minKey: keyString(schema, key, part[0]!),
      maxKey: keyString(schema, key, part[part.length - 1]!),
    });
  }
  const bytes = RecordBatchFileWriter.writeAll(batches).toUint8Array(true);
  const offsets = batchOffsets(bytes, batches.length);
  const crc = crc32(bytes);

  for (let attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
    const file = generationFileName(shardPrefix, opts.gen, opts.epoch, crc, randomBytes(4).toString('hex'));
    if (!(await storage.putIfAbsent(file, bytes))) continue;
    const out: GenerationBatch[] = ranges.map((r, i) => ({ offset: offsets[i]!, ...r }));
    return {
      gen: opts.gen,
      file,
      rows: selected.length,
      bytes: bytes.byteLength,
      minKey: out[0]!.minKey,
      maxKey: out[out.length - 1]!.maxKey,
      batches: out,
      maxSeq,
    };
  }
  throw new SluiceError(
    ErrorCode.INTERNAL,
    `could not find a free name for generation ${opts.gen} under ${shardPrefix} after ${NAME_ATTEMPTS} attempts`,
  );
}

/** File offsets of the record batch blocks, from the footer just written. */
function batchOffsets(bytes: Uint8Array, count: number): number[] {
  const reader = RecordBatchReader.from(bytes);
  const footer = reader.isFile() ? reader.open().footer : null;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const block = footer?.getRecordBatch(i);
    if (!block) throw new SluiceError(ErrorCode.INTERNAL, `generation file footer lacks record batch ${i}`);
    out.push(block.offset);
  }
  return out;
}
