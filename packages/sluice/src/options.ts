import os from 'node:os';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { Durability } from '@sluice/protocol';
import type { Schema } from 'apache-arrow';

export interface OpenOptions {
  /** Column types (`{ id: 'int64', tag: 'utf8', emb: 'float32[8]' }`) or an apache-arrow Schema. Required at creation. */
  readonly schema?: Record<string, string> | Schema;
  /** int64 or utf8 column. Required at creation. */
  readonly primaryKey?: string;
  /** Shard threads; fixed at creation. Default: os.availableParallelism(). */
  readonly shards?: number;
  /** 'sync' (default): put resolves after its WAL bytes are fsynced. 'async': when readable; fsync within syncIntervalMs. */
  readonly durability?: Durability;
  /** A shard freezes its active memtable at about this size. Default 64 MiB. */
  readonly memtableBytes?: number;
  /** Backpressure: above this many unflushed bytes put waits, then rejects with SLUICE_BACKPRESSURE. Default 1 GiB. */
  readonly maxUnflushedBytes?: number;
  /** How long a put may wait under backpressure before it rejects. Default 30 s. */
  readonly backpressureTimeoutMs?: number;
  /** 'async' durability: the WAL is fsynced at least this often. Default 100 ms. */
  readonly syncIntervalMs?: number;
  /** Largest utf8 value in bytes. Default min(16 MiB, memtableBytes / 4). */
  readonly maxValueBytes?: number;
  /** Rows per record batch in generation files. Default 65 536. */
  readonly rowsPerBatch?: number;
  /** Flush worker threads. Default max(1, cores / 2). */
  readonly flushThreads?: number;
  /** Called with recovery and retry warnings. Default: process.emitWarning. */
  readonly onWarning?: (message: string) => void;
  /**
   * Test hook, not for production use: storage fault configurations for the shard threads,
   * the flush threads and the main thread, passed as plain data to `storageWithFaults`.
   */
  readonly faults?: StorageFaults;
}

export interface StorageFaults {
  readonly shard?: unknown;
  readonly flush?: unknown;
  readonly main?: unknown;
}

export interface ResolvedOptions {
  readonly durability: Durability;
  readonly memtableBytes: number;
  readonly maxUnflushedBytes: number;
  readonly backpressureTimeoutMs: number;
  readonly syncIntervalMs: number;
  readonly maxValueBytes: number;
  readonly rowsPerBatch: number;
  readonly flushThreads: number;
  readonly onWarning: (message: string) => void;
}

const KNOWN = new Set([
  'schema',
  'primaryKey',
  'shards',
  'durability',
  'memtableBytes',
  'maxUnflushedBytes',
  'backpressureTimeoutMs',
  'syncIntervalMs',
  'maxValueBytes',
  'rowsPerBatch',
  'flushThreads',
  'onWarning',
  'faults',
]);

function invalid(message: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_OPTIONS, message);
}

function int(o: Record<string, unknown>, name: string, min: number, max: number, dflt: number): number {
  const v = o[name];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw invalid(`options.${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

export function resolveOptions(input: unknown): ResolvedOptions {
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
    throw invalid('options must be an object');
  }
  const o = (input ?? {}) as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!KNOWN.has(k)) throw invalid(`options.${k} is not an option (known: ${[...KNOWN].join(', ')})`);
  }
  const durability = o.durability ?? 'sync';
  if (durability !== 'sync' && durability !== 'async') {
    throw invalid(`options.durability must be 'sync' or 'async', got ${JSON.stringify(durability)}`);
  }
  const memtableBytes = int(o, 'memtableBytes', 16 << 10, 2 ** 31 - 1, 64 << 20);
  const maxUnflushedBytes = int(
    o,
    'maxUnflushedBytes',
    2 * memtableBytes,
    Number.MAX_SAFE_INTEGER,
    Math.max(1 << 30, 4 * memtableBytes),
  );
  const maxValueBytes = int(
    o,
    'maxValueBytes',
    1,
    256 << 20,
    Math.min(16 << 20, Math.floor(memtableBytes / 4)),
  );
  if (o.onWarning !== undefined && typeof o.onWarning !== 'function')
    throw invalid('options.onWarning must be a function');
  return {
    durability,
    memtableBytes,
    maxUnflushedBytes,
    backpressureTimeoutMs: int(o, 'backpressureTimeoutMs', 0, 3_600_000, 30_000),
    syncIntervalMs: int(o, 'syncIntervalMs', 1, 60_000, 100),
    maxValueBytes,
    rowsPerBatch: int(o, 'rowsPerBatch', 1, 1 << 24, 65_536),
    flushThreads: int(o, 'flushThreads', 1, 256, Math.max(1, Math.floor(os.availableParallelism() / 2))),
    onWarning:
      (o.onWarning as ((m: string) => void) | undefined) ??
      ((m: string) => process.emitWarning(m, { code: 'SLUICE_WARNING' })),
  };
}

export function resolveShards(input: unknown): number {
  if (input === undefined) return os.availableParallelism();
  if (typeof input !== 'number' || !Number.isInteger(input) || input < 1 || input > 256) {
    throw invalid(`options.shards must be an integer from 1 to 256, got ${String(input)}`);
  }
  return input;
}
