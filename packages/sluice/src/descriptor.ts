import type { MessagePort } from 'node:worker_threads';
import type { Manifest, SequencerBuffers } from '@sluice/core';
import type { SchemaWire } from '@sluice/protocol';
import type { ProducerLimits, ProducerShardBuffers } from './producer.js';

/**
 * What `db.handle()` returns: everything another thread needs to write and read the table,
 * as structured-cloneable data (shared buffers and one port; no functions). Transfer the
 * port: `worker.postMessage(d, [d.registry])`.
 */
export interface TableDescriptor {
  readonly root: string;
  readonly schema: SchemaWire;
  readonly shards: readonly ProducerShardBuffers[];
  readonly sequencer: SequencerBuffers;
  readonly limits: ProducerLimits;
  /** This producer's in-flight put sequences (see CLAIM_SLOTS). */
  readonly claims: SharedArrayBuffer;
  /** Brings every memtable buffer and manifest, each before any control block names it. */
  readonly registry: MessagePort;
}

/**
 * Flushed memtables kept per shard for reuse and for reads of their generation (RetainedMemtable):
 * the broker keeps this many, and an attached thread lists as many of the last announced.
 */
export const RETAINED_PER_SHARD = 4;

export type RegistryMessage =
  | {
      readonly kind: 'memtable';
      readonly shard: number;
      readonly gen: number;
      readonly buffer: SharedArrayBuffer;
    }
  | { readonly kind: 'manifest'; readonly shard: number; readonly manifest: Manifest }
  /**
   * A memtable flushed to generation `gen` and retired, its buffer kept for reuse: until the
   * broker recycles it, it holds that generation's rows (its first `rows`), so readers may read
   * the generation from it instead of loading the file, once they pin it (see Memtable.pin).
   */
  | {
      readonly kind: 'retained';
      readonly shard: number;
      readonly gen: number;
      readonly rows: number;
      readonly buffer: SharedArrayBuffer;
    };
