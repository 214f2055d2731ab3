import { ErrorCode, SluiceError } from '@sluice/protocol';
import { OP_DELETE, OP_PUT, schemaToJson } from '@sluice/core';
import type { TableSchema } from '@sluice/core';
import type { MemtableHandle, MemtableSnapshot } from './memtable-view.js';
import { arrowBatches, isArrowInput, rowsOfArrow } from './arrow-input.js';
import type { Producer } from './producer.js';
import {
  NeedsFile,
  ScanResult,
  captureSnapshot,
  getInMemory,
  getInSnapshot,
  keyProbe,
  shardOfKey,
} from './reader.js';
import type { ReadContext, Row, ScanOptions, Snapshot } from './reader.js';

/**
 * The operations every table handle has, on whatever thread it lives: writes through this
 * thread's Producer, reads straight from shared memory and files through a ReadContext.
 */
export abstract class TableOps {
  readonly schema: TableSchema;
  protected readonly producer: Producer;
  protected readonly read: ReadContext;

  constructor(schema: TableSchema, producer: Producer, read: ReadContext) {
    this.schema = schema;
    this.producer = producer;
    this.read = read;
  }

  /** Throws SLUICE_CLOSED (or the reason writes stopped) when the handle may not be used. */
  protected abstract check(): void;

  /** Upserts rows (plain objects, or an Arrow RecordBatch/Table). Resolves when they are readable (and durable with 'sync'). */
  async put(rows: unknown): Promise<void> {
    this.check();
    let input: readonly unknown[];
    if (Array.isArray(rows)) input = rows;
    else if (isArrowInput(rows)) {
      const batches = arrowBatches(rows);
      if (batches.every((b) => this.producer.acceptsArrow(b))) {
        await this.producer.writeArrow(batches);
        return;
      }
      input = rowsOfArrow(this.schema, rows);
    } else {
      throw new SluiceError(
        ErrorCode.INVALID_ROW,
        'put expects an array of row objects, an Arrow RecordBatch or an Arrow Table',
      );
    }
    await this.producer.write(input, OP_PUT);
  }

  /** Deletes keys (tombstones that mask every older version). */
  async delete(keys: unknown): Promise<void> {
    this.check();
    if (!Array.isArray(keys)) throw new SluiceError(ErrorCode.INVALID_KEY, 'delete expects an array of keys');
    try {
      await this.producer.write(keys, OP_DELETE);
    } catch (err) {
      if (err instanceof SluiceError && err.code === ErrorCode.INVALID_ROW) {
        throw new SluiceError(ErrorCode.INVALID_KEY, err.message.replace(/^row/, 'key'), {
          details: err.details,
          cause: err,
        });
      }
      throw err;
    }
  }

  /** The latest live row for `key`, or undefined. */
  get(key: unknown): Promise<Row | undefined> {
    let snap: Snapshot | undefined;
    try {
      this.check();
      const probe = keyProbe(this.schema, key, 'get');
      const s = shardOfKey(this.read, probe.hash);
      snap = captureSnapshot(this.read, s);
      const sources = snap.shards[s]!;
      // Answered from memory (the common case): no await, the snapshot is released at once.
      const found = getInMemory(this.read, sources, snap.seq, probe);
      if (!(found instanceof NeedsFile)) {
        snap.release();
        return Promise.resolve(found);
      }
      const held = snap;
      snap = undefined;
      return getInSnapshot(this.read, sources, held.seq, probe).finally(() => held.release());
    } catch (err) {
      snap?.release();
      return Promise.reject(err as Error);
    }
  }

  /** Latest live rows for `keys` (undefined where absent), all from one snapshot. */
  async getMany(keys: unknown): Promise<(Row | undefined)[]> {
    this.check();
    if (!Array.isArray(keys))
      throw new SluiceError(ErrorCode.INVALID_KEY, 'getMany expects an array of keys');
    const probes = keys.map((k, i) => keyProbe(this.schema, k, `getMany key ${i}`));
    const snap = captureSnapshot(this.read);
    try {
      return await Promise.all(
        probes.map((p) => getInSnapshot(this.read, snap.shards[shardOfKey(this.read, p.hash)]!, snap.seq, p)),
      );
    } finally {
      snap.release();
    }
  }

  /**
   * The memtables every shard holds now: per shard its active memtable, then its frozen ones
   * from newest to oldest, each with the row count published at the capture. Each handle is
   * plain data (a SharedArrayBuffer, numbers, the schema) that can be posted to any thread,
   * where `memtableToArrow(handle)` wraps it as Arrow vectors without copying. The buffers
   * are pinned against reuse until `release()`.
   */
  memtables(): MemtableSnapshot {
    this.check();
    const snap = captureSnapshot(this.read);
    const schema = schemaToJson(this.schema);
    const memtables: MemtableHandle[] = [];
    snap.shards.forEach((sh, shard) => {
      sh?.memtables.forEach(({ memtable, rows }, i) => {
        memtables.push({
          shard,
          generation: memtable.generation,
          state: i === 0 ? 'active' : 'frozen',
          rows,
          buffer: memtable.buffer,
          schema,
        });
      });
    });
    return { seq: snap.seq, memtables, release: () => snap.release() };
  }

  /** Newest live version of every key (matching `filter`), from one snapshot taken now. */
  scan(options?: ScanOptions): ScanResult {
    this.check();
    const snap = captureSnapshot(this.read);
    try {
      return new ScanResult(this.read, snap, options);
    } catch (err) {
      snap.release();
      throw err;
    }
  }
}
