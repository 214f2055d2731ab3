import { Piscina } from 'piscina';
import { ErrorCode, GB_WORDS, SluiceError } from '@sluice/protocol';
import type { FlushTask } from '@sluice/protocol';
import { RowEncoder, allocateControlBlock } from '@sluice/core';
import type { EncodePlan, ManifestStore, Manifest, TableSchema } from '@sluice/core';
import type { FlushResult } from '@sluice/workers/flush';
import type { ResolvedOptions } from './options.js';
import { ShardClient } from './shard-client.js';
import { ShardLifecycle } from './shard-lifecycle.js';
import { WriteTracker } from './write-tracker.js';

const FLUSH_WORKER_URL = new URL(import.meta.resolve('@sluice/workers/flush'));
const MAX_RESTARTS = 5;

export interface BrokerInit {
  readonly root: string;
  readonly schema: TableSchema;
  readonly shards: number;
  readonly options: ResolvedOptions;
  readonly stores: readonly ManifestStore[];
  readonly manifests: readonly Manifest[];
  readonly epochs: readonly number[];
  readonly faults: { readonly shard?: readonly unknown[]; readonly flush?: readonly unknown[] } | undefined;
}

export interface RecoveryReport {
  readonly records: number;
  readonly rows: number;
  readonly ms: number;
}

/**
 * The main thread's broker: encodes writes into the shards' SAB queues in one global order,
 * turns shard acknowledgements into completed puts, and runs each shard's lifecycle
 * (freeze → flush → commit → retire) on a piscina pool.
 */
export class Broker {
  readonly schema: TableSchema;
  readonly options: ResolvedOptions;
  readonly lifecycles: ShardLifecycle[] = [];
  readonly globalControl = new BigInt64Array(new SharedArrayBuffer(8 * GB_WORDS));
  readonly #encoder: RowEncoder;
  readonly #pool: Piscina;
  #tracker!: WriteTracker;
  /** Puts waiting for queue space or memory, in call order: a later put never overtakes one. */
  #waiting: Promise<void> = Promise.resolve();
  #waitingCount = 0;
  #memoryWaiters: (() => void)[] = [];
  #failure: SluiceError | undefined;
  #restarts = 0;
  stalls = 0;
  recovery: RecoveryReport = { records: 0, rows: 0, ms: 0 };

  private constructor(init: BrokerInit) {
    this.schema = init.schema;
    this.options = init.options;
    this.#encoder = new RowEncoder(init.schema, init.shards, { maxValueBytes: init.options.maxValueBytes });
    this.#pool = new Piscina({
      filename: FLUSH_WORKER_URL.href,
      minThreads: 1,
      maxThreads: init.options.flushThreads,
      idleTimeout: 30_000,
    });
    const queueBytes = Math.min(64 << 20, Math.max(4 << 20, init.options.memtableBytes));
    for (let s = 0; s < init.shards; s++) {
      const client = new ShardClient(s, allocateControlBlock(), queueBytes, {
        frozen: (info) => this.lifecycles[s]!.onFrozen(info),
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
                init.faults?.flush ? { ...task, faults: init.faults.flush } : task,
              ) as Promise<FlushResult>,
            visibleSeq: () => this.#tracker.visible,
            whenVisible: (seq, fn) => this.#tracker.whenVisible(seq, fn),
            unflushedBytes: () => this.unflushedBytes(),
            memoryReleased: () => this.#memoryReleased(),
            fenced: (err) => this.#fail(err),
            warn: (m) => init.options.onWarning(m),
          },
          init.stores[s]!,
          init.manifests[s]!,
          init.epochs[s]!,
        ),
      );
    }
  }

  /** Starts every shard (each replays its WAL in parallel) and resumes the write sequence after the largest replayed. */
  static async start(init: BrokerInit): Promise<Broker> {
    const broker = new Broker(init);
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
    broker.#tracker = new WriteTracker(maxSeq, broker.globalControl);
    broker.recovery = { records, rows, ms: performance.now() - t0 };
    return broker;
  }

  get visibleSeq(): number {
    return this.#tracker.visible;
  }

  get failure(): SluiceError | undefined {
    return this.#failure;
  }

  unflushedBytes(): number {
    let n = 0;
    for (const lc of this.lifecycles) n += lc.frozenBytes;
    return n + this.lifecycles.length * this.options.memtableBytes;
  }

  #checkWritable(): void {
    if (this.#failure) throw this.#failure;
  }

  /** Validates, encodes and enqueues a write; resolves when every row is visible (and durable for 'sync'). */
  async write(input: readonly unknown[], op: number): Promise<void> {
    this.#checkWritable();
    const plans = this.#plan(input, op); // throws on bad input before anything is enqueued
    const records = plans.reduce((n, p) => n + p.shardBytes.filter((b) => b > 0).length, 0);
    const put = this.#tracker.begin(records);
    if (this.#waitingCount === 0 && this.#tryEnqueueAll(plans, put)) return put.done;
    this.#waitingCount++;
    const turn = this.#waiting.then(() => this.#enqueueWhenRoom(plans, put));
    this.#waiting = turn.catch(() => undefined).finally(() => this.#waitingCount--);
    await turn;
    return put.done;
  }

  /** Splits input so every shard's record fits its queue, then plans each part (all validation happens here). */
  #plan(input: readonly unknown[], op: number): EncodePlan[] {
    const whole = this.#encoder.plan(input, op);
    const limit = Math.min(...this.lifecycles.map((lc) => lc.client.maxRecordBytes));
    const biggest = Math.max(0, ...whole.shardBytes);
    if (biggest <= limit) return [whole];
    const parts = Math.ceil(biggest / (limit * 0.5));
    const size = Math.ceil(input.length / parts);
    const plans: EncodePlan[] = [];
    for (let i = 0; i < input.length; i += size) plans.push(...this.#plan(input.slice(i, i + size), op));
    return plans;
  }

  /**
   * Enqueues every record of a put synchronously, or nothing: all queues are checked for room
   * first, so a put is never half enqueued when a queue is full.
   */
  #tryEnqueueAll(plans: readonly EncodePlan[], put: ReturnType<WriteTracker['begin']>): boolean {
    if (this.unflushedBytes() > this.options.maxUnflushedBytes) return false;
    const need = new Map<number, number>();
    for (const p of plans) p.shardBytes.forEach((b, s) => b > 0 && need.set(s, (need.get(s) ?? 0) + b + 64));
    for (const [s, bytes] of need) {
      const c = this.lifecycles[s]!.client;
      if (!c.running) {
        if (c.state === 'failed' || c.state === 'closed') throw this.#failure ?? this.#shardDown(s);
        return false;
      }
      if (bytes > c.maxRecordBytes) continue; // several records: checked one by one below
      if (!c.hasRoom(bytes)) return false;
    }
    for (const p of plans) {
      for (let s = 0; s < p.shardBytes.length; s++) {
        const bytes = p.shardBytes[s]!;
        if (bytes === 0) continue;
        const ok = this.lifecycles[s]!.client.tryEnqueue(
          bytes,
          (target) => this.#encoder.write(p, s, target, put.seq),
          put.ack,
          put.fail,
        );
        if (!ok) {
          // Only possible for multi-record puts over a nearly full queue: the enqueued part
          // is acknowledged normally; the rest is reported as failed and retryable.
          put.fail(
            new SluiceError(
              ErrorCode.BACKPRESSURE,
              `shard ${s}: queue full in the middle of a large put; retry it`,
            ),
          );
        }
      }
    }
    return true;
  }

  #shardDown(s: number): SluiceError {
    return new SluiceError(ErrorCode.SHARD_CRASHED, `shard ${s} is not running`, { details: { shard: s } });
  }

  async #enqueueWhenRoom(
    plans: readonly EncodePlan[],
    put: ReturnType<WriteTracker['begin']>,
  ): Promise<void> {
    const deadline = performance.now() + this.options.backpressureTimeoutMs;
    let stalled = false;
    for (;;) {
      try {
        this.#checkWritable();
        if (this.#tryEnqueueAll(plans, put)) return;
      } catch (err) {
        this.#tracker.abandon(put.seq, err as SluiceError);
        throw err;
      }
      if (!stalled) {
        stalled = true;
        this.stalls++;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        const err = new SluiceError(
          ErrorCode.BACKPRESSURE,
          `put waited ${this.options.backpressureTimeoutMs} ms for flushes to catch up (unflushed ${this.unflushedBytes()} bytes, limit ${this.options.maxUnflushedBytes}); retry later`,
        );
        this.#tracker.abandon(put.seq, err);
        throw err;
      }
      await this.#waitForRoom(plans, Math.min(left, 50));
    }
  }

  #waitForRoom(plans: readonly EncodePlan[], ms: number): Promise<unknown> {
    const waits: Promise<unknown>[] = [new Promise<void>((resolve) => this.#memoryWaiters.push(resolve))];
    for (const p of plans) {
      p.shardBytes.forEach((b, s) => {
        const c = this.lifecycles[s]!.client;
        if (b > 0 && c.running) waits.push(c.waitForSpace(Math.min(b + 64, c.maxRecordBytes), ms));
      });
    }
    waits.push(new Promise((resolve) => setTimeout(resolve, ms)));
    return Promise.race(waits);
  }

  #memoryReleased(): void {
    const w = this.#memoryWaiters;
    this.#memoryWaiters = [];
    for (const fn of w) fn();
  }

  #fail(err: SluiceError): void {
    this.#failure ??= err;
    this.#memoryReleased();
  }

  /** A shard thread died: its in-flight calls already failed; restart it from its WAL. */
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
    this.#checkWritable();
    return Promise.all(this.lifecycles.map((lc) => lc.client.request<number | null>('freeze')));
  }

  async flush(): Promise<void> {
    this.#checkWritable();
    await Promise.all(
      this.lifecycles.map(async (lc) => {
        const gen = await lc.client.request<number | null>('freeze');
        const target = Math.max(gen ?? -1, lc.newestFrozenGen ?? -1);
        await lc.waitRetired(target);
      }),
    );
  }

  async close(): Promise<void> {
    this.#fail(new SluiceError(ErrorCode.CLOSED, 'the table is closed'));
    await this.#waiting.catch(() => undefined);
    await Promise.allSettled(this.lifecycles.map((lc) => lc.client.close()));
    await Promise.allSettled(this.lifecycles.map((lc) => lc.close()));
    await this.#pool.destroy();
  }
}
