import { receiveMessageOnPort } from 'node:worker_threads';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { GenerationCache, LocalStorage, Memtable, readControl, schemaFromJson } from '@sluice/core';
import type { Manifest, SchemaJson, TableSchema } from '@sluice/core';
import { RETAINED_PER_SHARD } from './descriptor.js';
import type { RegistryMessage, TableDescriptor } from './descriptor.js';
import { Producer } from './producer.js';
import type { RetainedMemtable, ShardSource } from './reader.js';
import { TableOps } from './table-ops.js';

const MANIFESTS_KEPT = 8;

/**
 * What a thread knows of each shard's memtables and manifests, fed by the broker's
 * announcements. The broker announces a memtable before handing it to a shard and a manifest
 * before making it current, so when a control block names one, its announcement is already
 * waiting on the port: `receiveMessageOnPort` takes it synchronously, inside the capture.
 */
class Registry {
  readonly #port: TableDescriptor['registry'];
  readonly #schema: TableSchema;
  readonly #memtables: Map<number, Memtable>[];
  readonly #manifests: Map<number, Manifest>[];
  /** Flushed memtables not yet recycled, oldest first (see the 'retained' message). */
  readonly #retained: RetainedMemtable[][];
  readonly #controls: Int32Array[];

  constructor(d: TableDescriptor, schema: TableSchema) {
    this.#port = d.registry;
    this.#schema = schema;
    this.#memtables = d.shards.map(() => new Map());
    this.#manifests = d.shards.map(() => new Map());
    this.#retained = d.shards.map(() => []);
    this.#controls = d.shards.map((s) => new Int32Array(s.control));
  }

  refresh(): void {
    for (let m = receiveMessageOnPort(this.#port); m !== undefined; m = receiveMessageOnPort(this.#port)) {
      const msg = m.message as RegistryMessage;
      if (msg.kind === 'memtable') {
        this.#memtables[msg.shard]!.set(msg.gen, new Memtable(msg.buffer, this.#schema));
      } else if (msg.kind === 'retained') {
        this.#retain(msg.shard, msg.gen, msg.rows, msg.buffer);
      } else {
        const versions = this.#manifests[msg.shard]!;
        versions.set(msg.manifest.version, msg.manifest);
        versions.delete(msg.manifest.version - MANIFESTS_KEPT);
      }
    }
    // Generations below every one a control block names now will never be named again
    // (new memtables get higher generations): let them go. Captures in progress keep their own
    // references.
    this.#controls.forEach((cb, s) => {
      const pub = readControl(cb);
      const oldest = Math.min(pub.activeGen, ...pub.frozen.map((f) => f.gen));
      for (const gen of this.#memtables[s]!.keys()) if (gen < oldest) this.#memtables[s]!.delete(gen);
    });
  }

  /**
   * Keeps a retired memtable readable here. The broker may already be recycling its buffer:
   * a header read mid-recycle may not parse, or may name another generation, and then the
   * memtable is skipped. One that parses as `gen` is still safe to list, because a reader uses
   * it only after pinning it, and the pin fails once recycling has begun (Memtable.pin).
   */
  #retain(shard: number, gen: number, rows: number, buffer: SharedArrayBuffer): void {
    let memtable = this.#memtables[shard]!.get(gen);
    if (memtable === undefined) {
      try {
        memtable = new Memtable(buffer, this.#schema);
      } catch {
        return;
      }
      if (memtable.generation !== gen) return;
    }
    const kept = this.#retained[shard]!;
    kept.push({ memtable, rows });
    if (kept.length > RETAINED_PER_SHARD) kept.shift();
  }

  source(shard: number): ShardSource {
    return {
      control: this.#controls[shard]!,
      memtable: (gen) => this.#memtables[shard]!.get(gen),
      manifest: (version) => this.#manifests[shard]!.get(version),
      retained: () => this.#retained[shard]!,
    };
  }

  close(): void {
    this.#port.close();
  }
}

/**
 * A table handle in another thread (see `attach`): the same put/delete/get/getMany/scan as
 * Db, with the same semantics. Writes are encoded here and go straight into this thread's
 * own queues to the shards; reads run here, on shared memory and the generation files.
 */
export class AttachedTable extends TableOps {
  readonly root: string;
  readonly #registry: Registry;
  #closed = false;

  constructor(d: TableDescriptor, schema: TableSchema, producer: Producer, registry: Registry) {
    super(schema, producer, {
      schema,
      storage: new LocalStorage(d.root),
      cache: new GenerationCache({ maxBytes: 128 << 20 }),
      shards: d.shards.map((_, s) => registry.source(s)),
      visibleSeq: () => producer.sequencer.visible,
      refresh: () => registry.refresh(),
    });
    this.root = d.root;
    this.#registry = registry;
  }

  protected check(): void {
    if (this.#closed || this.producer.sequencer.closed) {
      throw new SluiceError(ErrorCode.CLOSED, `table ${this.root} is closed`);
    }
  }

  /** Waits for this handle's writes in flight, then detaches (the table stays open). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.producer.close(new SluiceError(ErrorCode.CLOSED, 'this handle is closed'));
    await this.producer.drain();
    this.#registry.close();
  }
}

/**
 * Opens a table handle in this thread from a descriptor made by `db.handle()` on the thread
 * that opened the table.
 *
 * @example
 * ```ts
 * // main thread
 * const d = db.handle();
 * worker.postMessage(d, [d.registry]);
 * // in the worker
 * const table = await attach(descriptor);
 * await table.put(rows);
 * ```
 */
export async function attach(descriptor: TableDescriptor): Promise<AttachedTable> {
  const d = descriptor;
  if (typeof d !== 'object' || d === null || !Array.isArray(d.shards) || !d.registry) {
    throw new SluiceError(
      ErrorCode.INVALID_OPTIONS,
      'attach(descriptor): expected the object returned by db.handle()',
    );
  }
  const schema = schemaFromJson(d.schema as SchemaJson);
  const producer = new Producer(schema, d.shards, d.sequencer, d.limits, d.claims);
  const registry = new Registry(d, schema);
  registry.refresh();
  return new AttachedTable(d, schema, producer, registry);
}
