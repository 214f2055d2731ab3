import type { WireError } from './errors.js';

/** Column list in JSON form (the protocol package does not depend on core). */
export interface SchemaWire {
  readonly columns: readonly { readonly name: string; readonly type: string }[];
  readonly primaryKey: string;
}

export interface MemtableHandle {
  readonly gen: number;
  readonly buffer: SharedArrayBuffer;
}

export type Durability = 'sync' | 'async';

/** A producer's queue into one shard, with its ack block (see AK_* slots). */
export interface QueueHandle {
  readonly id: number;
  readonly queue: SharedArrayBuffer;
  readonly ack: SharedArrayBuffer;
}

/** Broker → shard. */
export type ShardRequest =
  | {
      readonly kind: 'init';
      readonly shard: number;
      readonly root: string;
      readonly schema: SchemaWire;
      readonly queues: readonly QueueHandle[];
      readonly control: SharedArrayBuffer;
      readonly active: MemtableHandle;
      readonly spares: readonly MemtableHandle[];
      readonly durability: Durability;
      readonly syncIntervalMs: number;
      readonly epoch: number;
      readonly replayFromLsn: number;
      /** Fault injection for tests: storage calls to fail (see FaultyStorage). */
      readonly faults?: unknown;
    }
  | { readonly kind: 'spare'; readonly memtable: MemtableHandle }
  | { readonly kind: 'addQueue'; readonly queue: QueueHandle }
  | { readonly kind: 'removeQueue'; readonly id: number }
  | { readonly kind: 'freeze'; readonly id: number }
  | { readonly kind: 'committed'; readonly replayFromLsn: number }
  | { readonly kind: 'stats'; readonly id: number }
  | { readonly kind: 'close'; readonly id: number };

export interface ShardStats {
  readonly walBytes: number;
  readonly walLastLsn: number;
  readonly activeRows: number;
  readonly activeBytes: number;
  readonly records: number;
  readonly syncs: number;
  readonly stalls: number;
}

export interface ReplayReport {
  readonly records: number;
  readonly rows: number;
  readonly lastLsn: number;
  readonly maxSeq: number;
  readonly truncated: { readonly path: string; readonly at: number } | null;
}

export interface FrozenInfo {
  readonly gen: number;
  readonly rows: number;
  /** WAL position from which replay must restart once this memtable (and all older) are committed. */
  readonly replayFromLsn: number;
  readonly maxSeq: number;
  /** utf8 bytes used per column, for sizing later memtables. */
  readonly utf8Used: readonly number[];
}

/** Shard → broker. */
export type ShardEvent =
  | { readonly kind: 'ready'; readonly replay: ReplayReport }
  | { readonly kind: 'frozen'; readonly info: FrozenInfo }
  /** The active memtable filled in the middle of a record and no spare is left: send one. */
  | { readonly kind: 'needSpare' }
  | { readonly kind: 'reply'; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly kind: 'reply'; readonly id: number; readonly ok: false; readonly error: WireError }
  | { readonly kind: 'fatal'; readonly error: WireError }
  | { readonly kind: 'warn'; readonly message: string };

/** Broker → flush worker (piscina task). */
export interface FlushTask {
  readonly root: string;
  readonly shard: number;
  readonly schema: SchemaWire;
  readonly memtable: SharedArrayBuffer;
  readonly gen: number;
  readonly rows: number;
  readonly epoch: number;
  readonly rowsPerBatch: number;
  readonly faults?: unknown;
}
