import { MessageChannel } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import {
  AK_DONE,
  CB_ERROR,
  CB_STATE,
  ErrorCode,
  ShardState,
  SluiceError,
  TERMINAL_ERRORS,
} from '@sluice/protocol';
import type { FlushTask, QueueHandle } from '@sluice/protocol';
import { Sequencer, allocateControlBlock, schemaToJson } from '@sluice/core';
import type { Manifest, ManifestStore, Memtable, TableSchema } from '@sluice/core';
import type { FlushResult } from '@sluice/workers/flush';
import type { ResolvedOptions, StorageFaults } from './options.js';
import { CLAIM_SLOTS, Producer, allocateQueue, maxPutShardBytes, maxRecordBytes } from './producer.js';
import { SabQueue } from '@sluice/sab-queue';
import type { RegistryMessage, TableDescriptor } from './descriptor.js';
import { ShardClient } from './shard-client.js';
import type { RetainedMemtable } from './reader.js';
import { ShardLifecycle } from './shard-lifecycle.js';

const FLUSH_WORKER_URL = new URL(import.meta.resolve('@sluice/workers/flush-entry'));
const MAX_RESTARTS = 5;

function retainedMessage(shard: number, kept: RetainedMemtable): RegistryMessage {
  const { memtable, rows } = kept;
  return { kind: 'retained', shard, gen: memtable.generation, rows, buffer: memtable.buffer };
}

export interface BrokerInit {
  readonly root: string;
  readonly schema: TableSchema;
  readonly shards: number;
  readonly options: ResolvedOptions;
  readonly stores: readonly ManifestStore[];
  readonly manifests: readonly Manifest[];
  readonly epochs: readonly number[];
  readonly faults: StorageFaults | undefined;
}

export interface RecoveryReport {
  readonly records: number;
  readonly rows: number;
  readonly ms: number;
}

/**
 * The main thread's broker. It starts and restarts the shard threads, hands each producer
 * thread (this one included) its own SAB queue into every shard, keeps readers on other
 * threads told about memtables and manifests, and runs each shard's lifecycle (freeze → flush
 * → commit → retire) on a piscina pool. It is not on the data path: producers enqueue rows
 * straight into the shards and read their acknowledgements from shared memory.
 */
export class Broker {
  readonly schema: TableSchema;
  readonly options: ResolvedOptions;
  readonly root: string;
  readonly lifecycles: ShardLifecycle[] = [];
  readonly #pool: Piscina;
  readonly #queueBytes: number;
  /** Every producer's queues, by producer id: one queue per shard. */
  readonly #queues = new Map<number, QueueHandle[]>();
  readonly #claims = new Map<number, SharedArrayBuffer>();
  #nextProducer = 0;
  /** Ports of attached handles, told about every memtable and manifest. */
  readonly #ports = new Set<MessagePort>();
  #sequencer: Sequencer | undefined;
  #producer!: Producer;
  #failure: SluiceError | undefined;
  #restarts = 0;
  recovery: RecoveryReport = { records: 0, rows: 0, ms: 0 };

  private constructor(init: BrokerInit) {
    this.schema = init.schema;
    this.options = init.options;
    this.root = init.root;
    this.#queueBytes = Math.min(64 << 20, Math.max(4 << 20, init.options.memtableBytes));
    this.#pool = new Piscina({
      filename: FLUSH_WORKER_URL.href,
      // No flush thread until the first flush: at open it would compete with the shard threads
      // booting and replaying their WALs (a flush thread loads apache-arrow) for the cores.
      minThreads: 0,
      maxThreads: init.options.flushThreads,
      idleTimeout: 30_000,
    });
    for (let s = 0; s < init.shards; s++) {
      const client = new ShardClient(s, allocateControlBlock(), {
        frozen: (info) => this.lifecycles[s]!.onFrozen(info),
        needSpare: () => this.lifecycles[s]!.onNeedSpare(),
        failed: (err) => this.#onShardFailed(s, err),
        warn: (m) => init.options.onWarning(m),
      });
      this.lifecycles.push(
        new ShardLifecycle(
          s,
          client,
          {
            root: init.root,
            schema: init.schema,
            options: init.options,
            faults: init.faults?.shard,
            runFlush: (task: FlushTask) =>
              this.#pool.run(
                init.faults?.flush !== undefined ? { ...task, faults: init.faults.flush } : task,
              ) as Promise<FlushResult>,
            // While the shards replay (before the sequence exists), every row in a memtable
            // was written before this open: all of it is visible.
            visibleSeq: () => this.#sequencer?.visible ?? Number.MAX_SAFE_INTEGER,
            whenVisible: (seq, fn) => (this.#sequencer ? this.#sequencer.whenVisible(seq, fn) : fn()),
            unflushedBytes: () => this.unflushedBytes(),
            memoryChanged: () => this.#publishMemory(),
            queues: () => this.#queuesOf(s),
            announceMemtable: (mt) =>
              this.#announce({ kind: 'memtable', shard: s, gen: mt.generation, buffer: mt.buffer }),
            announceManifest: (m) => this.#announce({ kind: 'manifest', shard: s, manifest: m }),
            announceRetained: (mt, rows) => this.#announce(retainedMessage(s, { memtable: mt, rows })),
            fatal: (err) => this.#fail(err),
            warn: (m) => init.options.onWarning(m),
          },
          init.stores[s]!,
          init.manifests[s]!,
          init.epochs[s]!,
        ),
      );
    }
  }

  /** Starts every shard (each replays its WAL in parallel), then the write sequence after the largest replayed. */
  static async start(init: BrokerInit): Promise<Broker> {
    const broker = new Broker(init);
    broker.#newQueues(); // the main thread's own producer queues (id 0)
    const t0 = performance.now();
    const reports = await Promise.allSettled(broker.lifecycles.map((lc) => lc.startShard()));
    const failed = reports.find((r) => r.status === 'rejected');
    if (failed) {
      await broker.close().catch(() => undefined);
      throw (failed as PromiseRejectedResult).reason;
    }
    let maxSeq = 0;
    let records = 0;
    let rows = 0;
    for (const r of reports) {
      const v = (r as PromiseFulfilledResult<{ maxSeq: number; rows: number; records: number }>).value;
      maxSeq = Math.max(maxSeq, v.maxSeq);
      records += v.records;
      rows += v.rows;
    }
    for (const m of init.manifests) maxSeq = Math.max(maxSeq, m.maxSeq ?? 0);
    broker.#sequencer = Sequencer.create(maxSeq);
    broker.#publishMemory();
    broker.#producer = broker.#producerFor(0);
    broker.recovery = { records, rows, ms: performance.now() - t0 };
    return broker;
  }

  get producer(): Producer {
    return this.#producer;
  }

  /** The write sequence (exists once every shard has replayed its WAL, i.e. after start()). */
  get sequencer(): Sequencer {
    return this.#sequencer!;
  }

  get visibleSeq(): number {
    return this.sequencer.visible;
  }

  get failure(): SluiceError | undefined {
    return this.#failure;
  }

  get stalls(): number {
    return this.#producer.stalls;
  }

  #newQueues(): number {
    const id = this.#nextProducer++;
    this.#queues.set(
      id,
      this.lifecycles.map(() => allocateQueue(id, this.#queueBytes)),
    );
    this.#claims.set(id, new SharedArrayBuffer(8 * CLAIM_SLOTS));
    return id;
  }

  #queuesOf(shard: number): QueueHandle[] {
    return [...this.#queues.values()].map((qs) => qs[shard]!);
  }

  #producerFor(id: number): Producer {
    return new Producer(
      this.schema,
      this.#shardBuffers(id),
      this.sequencer.buffers,
      this.#limits(),
      this.#claims.get(id)!,
    );
  }

  #shardBuffers(id: number): TableDescriptor['shards'] {
    const qs = this.#queues.get(id)!;
    return this.lifecycles.map((lc, s) => ({
      control: lc.client.control.buffer as SharedArrayBuffer,
      queue: qs[s]!,
    }));
  }

  #limits(): TableDescriptor['limits'] {
    return {
      maxValueBytes: this.options.maxValueBytes,
      maxRecordBytes: maxRecordBytes(this.options.memtableBytes),
      maxPutShardBytes: maxPutShardBytes(this.options.memtableBytes),
      maxUnflushedBytes: this.options.maxUnflushedBytes,
      backpressureTimeoutMs: this.options.backpressureTimeoutMs,
    };
  }

  /**
   * A descriptor another thread passes to `attach()`: its own queue into every shard, the
   * shared control blocks and sequence, and a port that brings it every memtable and
   * manifest (announced before any control block can name them).
   */
  handle(): TableDescriptor {
    if (this.#failure) throw this.#failure;
    const id = this.#newQueues();
    const qs = this.#queues.get(id)!;
    this.lifecycles.forEach((lc, s) => lc.client.send({ kind: 'addQueue', queue: qs[s]! }));
    const { port1, port2 } = new MessageChannel();
    for (const lc of this.lifecycles) {
      for (const mt of lc.memtables.values()) {
        port1.postMessage({
          kind: 'memtable',
          shard: lc.shard,
          gen: mt.generation,
          buffer: mt.buffer,
        } satisfies RegistryMessage);
      }
      port1.postMessage({
        kind: 'manifest',
        shard: lc.shard,
        manifest: lc.manifest,
      } satisfies RegistryMessage);
      for (const kept of lc.retainedMemtables) port1.postMessage(retainedMessage(lc.shard, kept));
    }
    this.#ports.add(port1);
    // When the attached thread goes away (closed its handle or died), its queues are drained
    // by the shards and dropped; records it never committed simply never existed.
    port1.on('close', () => {
      this.#ports.delete(port1);
      void this.#reap(id);
    });
    port1.unref();
    return {
      root: this.root,
      schema: schemaToJson(this.schema),
      shards: this.#shardBuffers(id),
      sequencer: this.sequencer.buffers,
      limits: this.#limits(),
      claims: this.#claims.get(id)!,
      registry: port2,
    };
  }

  /**
   * A producer thread is gone. Once the shards have drained its queues, the puts it still
   * claimed are finished (their outcome was never reported to anyone), so the visible
   * sequence does not wait forever for a thread that died mid-put; then its queues go.
   */
  async #reap(id: number): Promise<void> {
    const queues = this.#queues.get(id);
    const claims = this.#claims.get(id);
    if (!queues || !claims) return;
    const views = queues.map((q) => SabQueue.attach(q.queue));
    while (!this.#failure && views.some((v) => v.usedBytes() > 0))
      await new Promise((r) => setTimeout(r, 10));
    const c = new BigInt64Array(claims);
    for (let i = 0; i < c.length; i++) {
      const seq = Number(Atomics.load(c, i));
      if (seq !== 0) this.sequencer.finish(seq);
    }
    this.#queues.delete(id);
    this.#claims.delete(id);
    for (const lc of this.lifecycles) lc.client.send({ kind: 'removeQueue', id });
  }

  #announce(msg: RegistryMessage): void {
    for (const p of this.#ports) p.postMessage(msg);
  }

  /** Bytes of frozen memtables not yet flushed: what backpressure bounds (active memtables are bounded by size). */
  unflushedBytes(): number {
    let n = 0;
    for (const lc of this.lifecycles) n += lc.frozenBytes;
    return n;
  }

  #publishMemory(): void {
    if (this.#sequencer) this.#sequencer.unflushedBytes = this.unflushedBytes();
  }

  /** Stops every write for good: shards are marked DEAD with the error's code, producers fail. */
  #fail(err: SluiceError): void {
    if (this.#failure) return;
    this.#failure = err;
    const code = Math.max(0, TERMINAL_ERRORS.indexOf(err.code as (typeof TERMINAL_ERRORS)[number]));
    for (const lc of this.lifecycles) {
      if (err.code !== ErrorCode.CLOSED) {
        Atomics.store(lc.client.control, CB_ERROR, code);
        Atomics.store(lc.client.control, CB_STATE, ShardState.DEAD);
      }
      for (const q of this.#queuesOf(lc.shard)) Atomics.notify(new Int32Array(q.ack), AK_DONE);
    }
    this.#producer?.close(err);
    if (err.code !== ErrorCode.CLOSED) for (const lc of this.lifecycles) lc.fail(err);
  }

  /** A shard thread died: producers fail its in-flight records; restart it from its WAL. */
  #onShardFailed(s: number, err: SluiceError): void {
    this.options.onWarning(`shard ${s} failed: ${err.code}: ${err.message}`);
    if (err.code === ErrorCode.FENCED) {
      this.#fail(err);
      return;
    }
    if (this.#failure) return;
    if (++this.#restarts > MAX_RESTARTS * this.lifecycles.length) {
      this.#fail(
        new SluiceError(err.code, `shard ${s} keeps failing, giving up: ${err.message}`, { cause: err }),
      );
      return;
    }
    const lc = this.lifecycles[s]!;
    void (async () => {
      try {
        await lc.client.stop();
        await lc.startShard();
        lc.replenish();
      } catch (e) {
        this.#onShardFailed(s, e instanceof SluiceError ? e : new SluiceError(ErrorCode.INTERNAL, String(e)));
      }
    })();
  }

  /** Freezes every shard's non-empty active memtable; resolves when the freezes are published (not flushed). */
  freeze(): Promise<(number | null)[]> {
    if (this.#failure) return Promise.reject(this.#failure);
    return Promise.all(this.lifecycles.map((lc) => lc.client.request<number | null>('freeze')));
  }

  async flush(): Promise<void> {
    if (this.#failure) throw this.#failure;
    await Promise.all(
      this.lifecycles.map(async (lc) => {
        const gen = await lc.client.request<number | null>('freeze');
        const target = Math.max(gen ?? -1, lc.newestFrozenGen ?? -1);
        await lc.waitRetired(target);
      }),
    );
  }

  async close(): Promise<void> {
    if (this.#producer) await this.#producer.drain();
    this.#fail(new SluiceError(ErrorCode.CLOSED, 'the table is closed'));
    this.#sequencer?.markClosed();
    await Promise.allSettled(this.lifecycles.map((lc) => lc.client.close()));
    await Promise.allSettled(this.lifecycles.map((lc) => lc.close()));
    for (const p of this.#ports) p.close();
    await this.#pool.destroy();
  }

  /** Test hook: the memtable registry of a shard (what readers on this thread resolve generations with). */
  memtable(shard: number, gen: number): Memtable | undefined {
    return this.lifecycles[shard]?.memtables.get(gen);
  }
}
