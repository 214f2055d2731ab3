import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { CB_STALLS, CB_SYNCS, CB_WAL_KIB, ErrorCode, SluiceError } from '@sluice/protocol';
import {
  GenerationCache,
  LocalStorage,
  ManifestStore,
  createTableMeta,
  generationDir,
  readControl,
  readTableMeta,
  sameSchema,
  schemaFromJson,
  schemaFromUser,
  schemaToJson,
  shardPrefix,
  storageWithFaults,
} from '@sluice/core';
import type { Manifest, Storage, TableSchema } from '@sluice/core';
import { Broker } from './broker.js';
import { walSyncLatency } from './latency.js';
import type { LatencyView } from './latency.js';
import { resolveOptions, resolveShards } from './options.js';
import type { OpenOptions } from './options.js';
import type { TableDescriptor } from './descriptor.js';
import { TableOps } from './table-ops.js';

export interface ShardStatsView {
  readonly shard: number;
  /** Rows held, counting every version in memtables and files (not distinct keys). */
  readonly rows: number;
  readonly activeRows: number;
  /** Bytes reserved for the active and frozen memtables (their shared buffers). */
  readonly memtableBytes: number;
  /** Bytes the rows of the active and frozen memtables occupy (memory in use, within memtableBytes). */
  readonly memtableUsedBytes: number;
  /**
   * Bytes of every memtable buffer the shard holds: active, frozen, the spare it switches to at
   * the next freeze, and flushed memtables kept for reuse. The shard's shared memory for rows.
   */
  readonly memtableHeldBytes: number;
  /** Memtables given fresh shared memory since open; every other one reused a flushed memtable's buffer. */
  readonly memtablesAllocated: number;
  readonly frozen: number;
  readonly generations: number;
  readonly generationRows: number;
  readonly walBytes: number;
  readonly walSyncs: number;
  /** Total seconds spent in WAL fsyncs (with walSyncs: the mean group-commit latency). */
  readonly walSyncSeconds: number;
  /** WAL fsync latency: per-bucket counts (the shard's threads since the table was opened). */
  readonly walSyncLatency: LatencyView;
  /** Total seconds spent writing generation files. */
  readonly flushSeconds: number;
  /** Flush duration (generation file written) of every successful flush since open. */
  readonly flushLatency: LatencyView;
  readonly stalls: number;
  readonly flushes: number;
  readonly flushFailures: number;
  readonly commitFailures: number;
  readonly manifestVersion: number;
  readonly state: string;
}

export interface DbStats {
  readonly shards: readonly ShardStatsView[];
  readonly visibleSeq: number;
  readonly putStalls: number;
  readonly unflushedBytes: number;
  readonly recovery: { readonly records: number; readonly rows: number; readonly ms: number };
}

/** Internals for tests and tools in this repository; not part of the public contract. */
export const kInternals = Symbol.for('sluice.internals');

/**
 * An open Sluice table. See DESIGN.md §1 for the contract.
 *
 * @example
 * ```ts
 * const db = await open('./events', { schema: { id: 'int64', tag: 'utf8' }, primaryKey: 'id' });
 * await db.put([{ id: 1, tag: 'a' }]);
 * await db.get(1); // { id: 1n, tag: 'a' }
 * await db.close();
 * ```
 */
export class Db extends TableOps {
  readonly dir: string;
  readonly #broker: Broker;
  #closed = false;
  #closing: Promise<void> | undefined;

  constructor(dir: string, schema: TableSchema, broker: Broker, storage: Storage) {
    super(schema, broker.producer, {
      schema,
      storage,
      cache: new GenerationCache({ maxBytes: 256 << 20 }),
      shards: broker.lifecycles.map((lc) => ({
        control: lc.client.control,
        memtable: (gen: number) => lc.memtables.get(gen),
        manifest: (version: number) => lc.manifestAt(version),
        retained: () => lc.retainedMemtables,
      })),
      visibleSeq: () => broker.visibleSeq,
      refresh: () => undefined,
    });
    this.dir = dir;
    this.#broker = broker;
  }

  get [kInternals](): { broker: Broker } {
    return { broker: this.#broker };
  }

  protected check(): void {
    if (this.#closed) throw new SluiceError(ErrorCode.CLOSED, `table ${this.dir} is closed`);
  }

  /**
   * A structured-cloneable descriptor for another thread: `await attach(descriptor)` there
   * gives a handle with put/delete/get/getMany/scan of its own (writes go straight to the
   * shards from that thread). Transfer its port: `worker.postMessage(d, [d.registry])`.
   */
  handle(): TableDescriptor {
    this.check();
    return this.#broker.handle();
  }

  /** Freezes every non-empty memtable; resolves when all are flushed and committed. */
  async flush(): Promise<void> {
    this.check();
    await this.#broker.flush();
  }

  stats(): DbStats {
    const b = this.#broker;
    return {
      shards: b.lifecycles.map((lc) => {
        const cb = lc.client.control;
        const pub = readControl(cb);
        const generationRows = lc.manifest.generations.reduce((n, g) => n + g.rows, 0);
        const frozenRows = pub.frozen.reduce((n, f) => n + f.rows, 0);
        let memtableBytes = 0;
        let memtableUsedBytes = 0;
        for (const { gen, rows } of [{ gen: pub.activeGen, rows: pub.activeRows }, ...pub.frozen]) {
          const mt = lc.memtables.get(gen);
          memtableBytes += mt?.byteLength ?? 0;
          memtableUsedBytes += mt?.usedBytes(rows) ?? 0;
        }
        const syncLatency = walSyncLatency(cb);
        const flushLatency = lc.flushLatency.view();
        return {
          shard: lc.shard,
          rows: pub.activeRows + frozenRows + generationRows,
          activeRows: pub.activeRows,
          memtableBytes,
          memtableUsedBytes,
          memtableHeldBytes: lc.heldBytes,
          memtablesAllocated: lc.allocated,
          frozen: pub.frozen.length,
          generations: lc.generationCount,
          generationRows,
          walBytes: Atomics.load(cb, CB_WAL_KIB) * 1024,
          walSyncs: Atomics.load(cb, CB_SYNCS),
          walSyncSeconds: syncLatency.sumSeconds,
          walSyncLatency: syncLatency,
          flushSeconds: flushLatency.sumSeconds,
          flushLatency,
          stalls: Atomics.load(cb, CB_STALLS),
          flushes: lc.flushes,
          flushFailures: lc.flushFailures,
          commitFailures: lc.commitFailures,
          manifestVersion: pub.manifestVersion,
          state: lc.client.state,
        };
      }),
      visibleSeq: b.visibleSeq,
      putStalls: b.stalls,
      unflushedBytes: b.unflushedBytes(),
      recovery: b.recovery,
    };
  }

  /** Drains in-flight writes, syncs every WAL and stops every thread. Reopen recovers everything acknowledged. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#broker.close();
    return this.#closing;
  }
}

/**
 * Opens (or creates) the table in `dir`. Creating needs `schema` and `primaryKey`; reopening
 * needs no options. Opening takes ownership: a higher writer epoch per shard, committed with a
 * manifest compare-and-swap, so an earlier owner (in any process) is fenced.
 */
export async function open(dir: string, options?: OpenOptions): Promise<Db> {
  if (typeof dir !== 'string' || dir.length === 0) {
    throw new SluiceError(ErrorCode.INVALID_OPTIONS, 'open(dir): dir must be a non-empty path string');
  }
  const resolved = resolveOptions(options);
  const o = (options ?? {}) as OpenOptions;
  const root = path.resolve(dir);
  await mkdir(root, { recursive: true });
  const storage = storageWithFaults(new LocalStorage(root), o.faults?.main);
  let meta = await readTableMeta(storage);
  let schema: TableSchema;
  if (!meta) {
    if (o.schema === undefined || o.primaryKey === undefined) {
      throw new SluiceError(
        ErrorCode.NOT_FOUND,
        `${root} holds no Sluice table: give options.schema and options.primaryKey to create one`,
      );
    }
    schema = schemaFromUser(o.schema, o.primaryKey);
    meta = await createTableMeta(storage, {
      format: 1,
      schema: schemaToJson(schema),
      shards: resolveShards(o.shards),
      createdAt: new Date().toISOString(),
    });
  }
  schema = schemaFromJson(meta.schema);
  if (
    o.schema !== undefined &&
    !sameSchema(schema, schemaFromUser(o.schema, o.primaryKey ?? schema.primaryKey))
  ) {
    throw new SluiceError(ErrorCode.INCOMPATIBLE, `${root}: options.schema differs from the table's schema`);
  }
  if (o.primaryKey !== undefined && o.primaryKey !== schema.primaryKey) {
    throw new SluiceError(
      ErrorCode.INCOMPATIBLE,
      `${root}: options.primaryKey is "${o.primaryKey}" but the table's primary key is "${schema.primaryKey}"`,
    );
  }
  if (o.shards !== undefined && resolveShards(o.shards) !== meta.shards) {
    throw new SluiceError(
      ErrorCode.INCOMPATIBLE,
      `${root}: the table has ${meta.shards} shards (fixed at creation), options.shards is ${o.shards}`,
    );
  }
  const stores: ManifestStore[] = [];
  const manifests: Manifest[] = [];
  const epochs: number[] = [];
  for (let s = 0; s < meta.shards; s++) {
    const store = new ManifestStore(storage, shardPrefix(s), { warn: resolved.onWarning });
    const epoch = await store.claimEpoch();
    // Ownership: a manifest compare-and-swap one version up under the new epoch. From then on
    // any earlier owner's commit (and, through the epoch marker, its acks) fails with SLUICE_FENCED.
    const manifest = await store.fence(epoch, {
      format: 1,
      shard: s,
      version: 1,
      writerEpoch: epoch,
      replayFromLsn: 1,
      nextGeneration: 1,
      generations: [],
    });
    // Now that this open owns the shard, no flush of its own is staging yet: a staged
    // generation file there is a crashed (or fenced) writer's and will never be published.
    // Best effort: a leftover costs disk space, never correctness.
    await storage.clearStaged(generationDir(shardPrefix(s))).catch((err: unknown) => {
      resolved.onWarning(
        `${root}: could not remove unfinished generation files of shard ${s} (${(err as Error).message})`,
      );
    });
    stores.push(store);
    manifests.push(manifest);
    epochs.push(epoch);
  }
  const broker = await Broker.start({
    root,
    schema,
    shards: meta.shards,
    options: resolved,
    stores,
    manifests,
    epochs,
    faults: o.faults,
  });
  return new Db(root, schema, broker, storage);
}
