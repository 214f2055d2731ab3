import type { Storage } from '../storage/storage.js';
import { formatSequence, parseSequence } from '../storage/storage.js';

/** One WAL segment file: `<shard>/wal/<start LSN, 20 digits>.wal`. */
export interface WalSegment {
  /** LSN of the segment's first record (also the LSN the file is named after). */
  readonly start: number;
  readonly path: string;
}

const SUFFIX = '.wal';

export function walDir(shardPrefix: string): string {
  return `${shardPrefix}/wal`;
}

export function segmentPath(shardPrefix: string, start: number): string {
  return `${walDir(shardPrefix)}/${formatSequence(start)}${SUFFIX}`;
}

/** The shard's WAL segments in LSN order; names that are not segments are ignored. */
export async function listSegments(storage: Storage, shardPrefix: string): Promise<WalSegment[]> {
  const segments: WalSegment[] = [];
  for (const name of await storage.list(walDir(shardPrefix))) {
    const start = parseSequence(name, SUFFIX);
    if (start !== undefined && start > 0) segments.push({ start, path: segmentPath(shardPrefix, start) });
  }
  // Zero-padded names make list order LSN order, but sorting numerically does not rely on it.
  return segments.sort((a, b) => a.start - b.start);
}
