import { Worker } from 'node:worker_threads';
import { SabQueue } from '@sluice/sab-queue';
import { CB_DONE, CB_STATE, ErrorCode, ShardState, SluiceError, fromWire } from '@sluice/protocol';
import type { FrozenInfo, MemtableHandle, ReplayReport, ShardEvent, ShardRequest } from '@sluice/protocol';
import type { Memtable } from '@sluice/core';

const SHARD_WORKER_URL = new URL(import.meta.resolve('@sluice/workers/shard'));

export interface ShardClientHooks {
  frozen(info: FrozenInfo): void;
  /** The shard thread failed (fatal error, crash or unexpected exit). Pending records are already rejected. */
  failed(err: SluiceError): void;
  warn(message: string): void;
}

export type ShardInit = Omit<
  Extract<ShardRequest, { kind: 'init' }>,
  'kind' | 'queue' | 'control' | 'active' | 'spares'
>;

interface PendingRecord {
  readonly record: number;
  readonly done: () => void;
  readonly fail: (err: SluiceError) => void;
}

/**
 * The broker's end of one shard thread: spawns it, feeds its SAB queue, turns the shard's
 * CB_DONE counter into acknowledgements, and carries control requests. Row data never goes
 * through postMessage; acks come back through Atomics (one waitAsync per wake-up, not one
 * message per put).
 */
export class ShardClient {
  readonly shard: number;
  readonly control: Int32Array;
  readonly #queueBytes: number;
  readonly #hooks: ShardClientHooks;
  #queue!: SabQueue;
  #worker: Worker | undefined;
  /** Records produced into the current incarnation's queue (the shard counts the same way). */
  #sent = 0;
  #pending: PendingRecord[] = [];
  #ackLoopRunning = false;
  #requests = new Map<number, { resolve: (v: unknown) => void; reject: (e: SluiceError) => void }>();
  #nextId = 1;
  #state: 'idle' | 'starting' | 'running' | 'failed' | 'closed' = 'idle';
  #incarnation = 0;

  constructor(shard: number, control: Int32Array, queueBytes: number, hooks: ShardClientHooks) {
    this.shard = shard;
    this.control = control;
    this.#queueBytes = queueBytes;
    this.#hooks = hooks;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  get state(): string {
    return this.#state;
  }

  get maxRecordBytes(): number {
    return this.#queue.maxRecordBytes;
  }

  /** Starts (or restarts) the shard thread with a fresh queue; resolves when its WAL replay is done. */
  start(init: ShardInit, active: Memtable, spares: readonly Memtable[]): Promise<ReplayReport> {
    this.#queue = SabQueue.create(this.#queueBytes);
    this.#sent = 0;
    // A restarted shard counts records from zero again; reset before it can publish.
    Atomics.store(this.control, CB_DONE, 0);
    Atomics.store(this.control, CB_STATE, ShardState.STARTING);
    this.#state = 'starting';
    const incarnation = ++this.#incarnation;
    const worker = new Worker(SHARD_WORKER_URL, { name: `sluice-shard-${this.shard}` });
    this.#worker = worker;
    const handle = (m: Memtable): MemtableHandle => ({ gen: m.generation, buffer: m.buffer });
    return new Promise<ReplayReport>((resolve, reject) => {
      let ready = false;
      const fail = (err: SluiceError): void => {
        if (incarnation !== this.#incarnation || this.#state === 'closed' || this.#state === 'failed') return;
        this.#state = 'failed';
        this.#sweep(); // records the shard acknowledged before failing stay acknowledged
        this.#failAll(err);
        if (!ready) reject(err);
        else this.#hooks.failed(err);
      };
      worker.on('message', (event: ShardEvent) => {
        if (incarnation !== this.#incarnation) return;
        switch (event.kind) {
          case 'ready':
            ready = true;
            this.#state = 'running';
            resolve(event.replay);
            return;
          case 'frozen':
            this.#hooks.frozen(event.info);
            return;
          case 'reply': {
            const req = this.#requests.get(event.id);
            this.#requests.delete(event.id);
            if (event.ok) req?.resolve(event.value);
            else req?.reject(fromWire(event.error));
            return;
          }
          case 'fatal':
            fail(fromWire(event.error));
            return;
          case 'warn':
            this.#hooks.warn(`shard ${this.shard}: ${event.message}`);
            return;
        }
      });
      worker.on('error', (err) => {
        fail(
          new SluiceError(ErrorCode.SHARD_CRASHED, `shard ${this.shard} thread crashed: ${err.message}`, {
            cause: err,
            details: { shard: this.shard },
          }),
        );
      });
      worker.on('exit', (code) => {
        fail(
          new SluiceError(
            ErrorCode.SHARD_CRASHED,
            `shard ${this.shard} thread exited unexpectedly (code ${code})`,
            {
              details: { shard: this.shard },
            },
          ),
        );
      });
      const message: ShardRequest = {
        kind: 'init',
        ...init,
        queue: this.#queue.buffer,
        control: this.control.buffer as SharedArrayBuffer,
        active: handle(active),
        spares: spares.map(handle),
      };
      worker.postMessage(message);
    });
  }

  /**
   * Produces one record of `size` bytes written by `write`, or returns false when the queue
   * has no room now. Synchronous, so records of concurrent puts never interleave.
   */
  tryEnqueue(
    size: number,
    write: (target: Uint8Array) => void,
    done: () => void,
    fail: (e: SluiceError) => void,
  ): boolean {
    if (this.#state !== 'running') throw this.#notRunning();
    const view = this.#queue.tryReserve(size);
    if (view === null) return false;
    write(view);
    this.#queue.commit();
    this.#sent++;
    this.#pending.push({ record: this.#sent | 0, done, fail });
    if (!this.#ackLoopRunning) void this.#ackLoop(this.#incarnation);
    return true;
  }

  /**
   * Conservative room check: a record may also waste the rest of the ring before a wrap, so
   * twice its size must be free. Lets a multi-shard put check every queue before writing any.
   */
  hasRoom(size: number): boolean {
    return this.#state === 'running' && this.#queue.capacity - this.#queue.usedBytes() >= 2 * (size + 16);
  }

  waitForSpace(size: number, timeoutMs: number): Promise<boolean> {
    return this.#queue.waitForSpace(size, timeoutMs);
  }

  #notRunning(): SluiceError {
    if (this.#state === 'closed') return new SluiceError(ErrorCode.CLOSED, 'the table is closed');
    return new SluiceError(ErrorCode.SHARD_CRASHED, `shard ${this.shard} is not running (${this.#state})`, {
      details: { shard: this.shard },
    });
  }

  /** Resolves pending records as CB_DONE passes them (wrap-safe comparison of Int32 counters). */
  async #ackLoop(incarnation: number): Promise<void> {
    this.#ackLoopRunning = true;
    try {
      while (this.#pending.length > 0 && incarnation === this.#incarnation && this.#state === 'running') {
        // The shard stores CB_DONE after publishing the rows of those records, so every record
        // at or below it is readable (and durable in 'sync' mode) when we resolve it here.
        const done = Atomics.load(this.control, CB_DONE);
        let i = 0;
        while (i < this.#pending.length && ((done - this.#pending[i]!.record) | 0) >= 0) {
          this.#pending[i]!.done();
          i++;
        }
        if (i > 0) this.#pending.splice(0, i);
        if (this.#pending.length === 0) break;
        const w = Atomics.waitAsync(this.control, CB_DONE, done);
        if (w.async) await w.value;
      }
    } finally {
      this.#ackLoopRunning = false;
    }
  }

  #sweep(): void {
    const done = Atomics.load(this.control, CB_DONE);
    let i = 0;
    while (i < this.#pending.length && ((done - this.#pending[i]!.record) | 0) >= 0)
      this.#pending[i++]!.done();
    this.#pending.splice(0, i);
  }

  #failAll(err: SluiceError): void {
    const pending = this.#pending;
    this.#pending = [];
    for (const p of pending) p.fail(err);
    const reqs = this.#requests;
    this.#requests = new Map();
    for (const r of reqs.values()) r.reject(err);
  }

  send(msg: ShardRequest): void {
    this.#worker?.postMessage(msg);
  }

  request<T>(kind: 'freeze' | 'stats' | 'close'): Promise<T> {
    if (this.#state !== 'running') return Promise.reject(this.#notRunning());
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#requests.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ kind, id });
    });
  }

  /** Drains the queue, syncs the WAL and stops the thread. */
  async close(): Promise<void> {
    if (this.#state === 'running') {
      try {
        await this.request('close');
      } catch {
        // A shard that fails while closing has reported its error already; stop it anyway.
      }
    }
    this.#state = 'closed';
    // The shard published its last records before replying: acknowledge them, fail the rest.
    this.#sweep();
    this.#failAll(new SluiceError(ErrorCode.CLOSED, 'the table is closed'));
    await this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** Test hook: kills the shard thread as a crash would. */
  async crash(): Promise<void> {
    await this.#worker?.terminate();
  }

  /** Stops a failed shard's thread before a restart. */
  async stop(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    this.#incarnation++;
    await w?.terminate();
  }
}
