import { ErrorCode, SluiceError } from '@sluice/protocol';
import { Memtable, memtableToArrow as wrapAsArrow, schemaFromJson } from '@sluice/core';
import type { SchemaJson } from '@sluice/core';
import type { RecordBatch } from 'apache-arrow';

/** One memtable of a shard as captured by `memtables()`: plain data, structured-cloneable. */
export interface MemtableHandle {
  readonly shard: number;
  readonly generation: number;
  /** 'active' takes writes; 'frozen' waits for its flush. */
  readonly state: 'active' | 'frozen';
  /** Rows published at the capture; later rows of the buffer are not part of the handle. */
  readonly rows: number;
  readonly buffer: SharedArrayBuffer;
  readonly schema: SchemaJson;
}

export interface MemtableSnapshot {
  /** The visible put sequence at the capture: rows whose `__seq` is above it were not yet acknowledged. */
  readonly seq: number;
  readonly memtables: readonly MemtableHandle[];
  /** Unpins the buffers; the handles (and Arrow batches made from them) must not be read afterwards. */
  release(): void;
}

/**
 * A memtable's rows as an Arrow RecordBatch over its SharedArrayBuffer, without copying, on
 * any thread: every version of every key in write order, tombstones included, plus `__op`
 * (1 put, 2 delete) and `__seq` (put sequence) columns. See `Db.memtables()`.
 *
 * @example
 * ```ts
 * const snap = db.memtables();
 * worker.postMessage(snap.memtables); // the worker calls memtableToArrow(handle)
 * ```
 */
export function memtableToArrow(handle: MemtableHandle): RecordBatch {
  if (typeof handle !== 'object' || handle === null || !(handle.buffer instanceof SharedArrayBuffer)) {
    throw new SluiceError(
      ErrorCode.INVALID_OPTIONS,
      'memtableToArrow(handle): handle must come from memtables() (it holds a SharedArrayBuffer)',
    );
  }
  return wrapAsArrow(new Memtable(handle.buffer, schemaFromJson(handle.schema)), handle.rows);
}
