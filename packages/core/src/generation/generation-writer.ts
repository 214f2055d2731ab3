import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { AsyncByteQueue, RecordBatch, RecordBatchFileWriter, Schema } from 'apache-arrow';
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
  generationDir,
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
 * `rowsPerBatch` rows. The file is streamed to a staged object and published under its
 * final name with put-if-absent semantics, so it is durable when this resolves and never
 * replaces another file. The caller commits the returned entry.
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
  // Streamed: each record batch is gathered, handed to Arrow's file writer, appended to a
  // staged object and dropped before the next, so a flush holds one batch (not the whole
  // file, twice) in memory. The name carries the crc32 of every byte, known only at the end,
  // hence the staged object, named once complete.
  const staged = await storage.stage(generationDir(shardPrefix));
  try {
    const sink = new ChunkSink();
    const writer = new RecordBatchFileWriter();
    let fileSchema: Schema | undefined;
    let crc = 0;
    const emit = async (): Promise<void> => {
      const chunks = sink.take();
      for (const c of chunks) crc = crc32(c, crc);
      await staged.append(chunks);
    };
    const out: GenerationBatch[] = [];
    for (let a = 0; a < selected.length; a += opts.rowsPerBatch) {
      const part = selected.subarray(a, Math.min(a + opts.rowsPerBatch, selected.length));
      const gathered = gatherToArrow(schema, view, part, schema.columns, { op: true, seq });
      if (fileSchema === undefined) {
        // Every batch shares one Schema object carrying the file metadata: the IPC writer
        // starts a new stream when a batch's schema differs from the one it began with.
        fileSchema = new Schema(gathered.schema.fields, metadata);
        writer.reset(sink, fileSchema);
      }
      // The writer records a batch's block at its current position, which is every byte it
      // has handed the sink so far (there are no dictionary batches).
      out.push({
        offset: sink.position,
        rows: part.length,
        minKey: keyString(schema, key, part[0]!),
        maxKey: keyString(schema, key, part[part.length - 1]!),
      });
      writer.write(new RecordBatch(fileSchema, gathered.data));
      await emit();
    }
    writer.finish(); // the footer, then the trailing magic
    await emit();
    const bytes = staged.size;

    for (let attempt = 0; attempt < NAME_ATTEMPTS; attempt++) {
      const file = generationFileName(shardPrefix, opts.gen, opts.epoch, crc, randomBytes(4).toString('hex'));
      if (!(await staged.publishIfAbsent(file))) continue;
      return {
        gen: opts.gen,
        file,
        rows: selected.length,
        bytes,
        minKey: out[0]!.minKey,
        maxKey: out[out.length - 1]!.maxKey,
        batches: out,
        maxSeq,
      };
    }
  } finally {
    // Removes the staged bytes after a failure; a no-op once published.
    await staged.discard().catch(() => undefined);
  }
  throw new SluiceError(
    ErrorCode.INTERNAL,
    `could not find a free name for generation ${opts.gen} under ${shardPrefix} after ${NAME_ATTEMPTS} attempts`,
  );
}

/**
 * The sink of Arrow's IPC writer: collects the chunks it writes (views of the gathered
 * column buffers, no copies) until `take`, and counts every byte, which is the writer's
 * file position.
 */
class ChunkSink extends AsyncByteQueue {
  #chunks: Uint8Array[] = [];
  position = 0;

  override write(value: Uint8Array): void {
    if (value.byteLength === 0) return;
    this.#chunks.push(value);
    this.position += value.byteLength;
  }

  take(): Uint8Array[] {
    const chunks = this.#chunks;
    this.#chunks = [];
    return chunks;
  }
}
