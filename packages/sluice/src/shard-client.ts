import { Worker } from 'node:worker_threads';
import { CB_STATE, ErrorCode, ShardState, SluiceError, fromWire } from '@sluice/protocol';
import type {
  FrozenInfo,
  MemtableHandle,
  QueueHandle,
  ReplayReport,
  ShardEvent,
  ShardRequest,
} from '@sluice/protocol';
import { markFailed, releaseDeadWriter } from '@sluice/core';
import type { Memtable } from '@sluice/core';

const SHARD_WORKER_URL = new URL(import.meta.resolve('@sluice/workers/shard'));

export interface ShardClientHooks {
  frozen(info: FrozenInfo): void;
  /** The shard waits for a spare memtable in the middle of a record. */
  needSpare(): void;
  /** The shard thread failed (fatal error, crash or unexpected exit). */
  failed(err: SluiceError): void;
  warn(message: string): void;
}

export type ShardInit = Omit<
  Extract<ShardRequest, { kind: 'init' }>,
  'kind' | 'queues' | 'control' | 'active' | 'spares'
>;

/**
 * The broker's end of one shard thread: spawns (and respawns) it and carries control
 * requests. Rows never pass here: producers write them into SAB queues and read their
 * acknowledgements from the queues' ack blocks.
 */
export class ShardClient {
  readonly shard: number;
  readonly control: Int32Array;
  readonly #hooks: ShardClientHooks;
  #worker: Worker | undefined;
  #requests = new Map<number, { resolve: (v: unknown) => void; reject: (e: SluiceError) => void }>();
  #nextId = 1;
  #state: 'idle' | 'starting' | 'running' | 'failed' | 'closed' = 'idle';
  #incarnation = 0;

  constructor(shard: number, control: Int32Array, hooks: ShardClientHooks) {
    this.shard = shard;
    this.control = control;
    this.#hooks = hooks;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  get state(): string {
    return this.#state;
  }

  /** Starts (or restarts) the shard thread; resolves when its WAL replay is done. */
  start(
    init: ShardInit,
    active: Memtable,
    spares: readonly Memtable[],
    queues: readonly QueueHandle[],
  ): Promise<ReplayReport> {
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
        // Producers learn of it from CB_STATE; the shard's own #fail stores it too, but a
        // thread that crashed outright could not.
        markFailed(this.control);
        this.#failRequests(err);
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
          case 'needSpare':
            this.#hooks.needSpare();
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
        // The thread is gone: if it died inside a control-block write, release that write now,
        // before anything on this thread reads the block (a reader would otherwise retry until
        // it gives up, and the restart that also repairs it may come later).
        if (incarnation === this.#incarnation) releaseDeadWriter(this.control);
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
        queues,
        control: this.control.buffer as SharedArrayBuffer,
        active: handle(active),
        spares: spares.map(handle),
      };
      worker.postMessage(message);
    });
  }

  #failRequests(err: SluiceError): void {
    const reqs = this.#requests;
    this.#requests = new Map();
    for (const r of reqs.values()) r.reject(err);
  }

  send(msg: ShardRequest): void {
    this.#worker?.postMessage(msg);
  }

  request<T>(kind: 'freeze' | 'stats' | 'close'): Promise<T> {
    if (this.#state !== 'running') {
      const code = this.#state === 'closed' ? ErrorCode.CLOSED : ErrorCode.SHARD_CRASHED;
      return Promise.reject(new SluiceError(code, `shard ${this.shard} is not running (${this.#state})`));
    }
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#requests.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.send({ kind, id });
    });
  }

  /** Drains the queues, syncs the WAL and stops the thread. */
  async close(): Promise<void> {
    if (this.#state === 'running') {
      try {
        await this.request('close');
      } catch {
        // A shard that fails while closing has reported its error already; stop it anyway.
      }
    }
    this.#state = 'closed';
    this.#failRequests(new SluiceError(ErrorCode.CLOSED, 'the table is closed'));
    await this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** Test hook: kills the shard thread as a crash would. */
  async crash(): Promise<void> {
    // terminate() resolves from an 'exit' listener added after ours, so the dead thread's
    // control-block write is released (see start) before this returns.
    await this.#worker?.terminate();
  }

  /** Stops a failed shard's thread before a restart. */
  async stop(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    this.#incarnation++;
    // Nothing answers requests from here on: they fail now rather than wait for a thread
    // that is gone (a later start() makes the shard 'starting' again).
    if (this.#state === 'running' || this.#state === 'starting') this.#state = 'failed';
    this.#failRequests(
      new SluiceError(ErrorCode.SHARD_CRASHED, `shard ${this.shard} was stopped`, {
        details: { shard: this.shard },
      }),
    );
    await w?.terminate();
  }
}
