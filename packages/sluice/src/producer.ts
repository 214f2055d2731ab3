import { SabQueue } from '@sluice/sab-queue';
import {
  AK_DONE,
  AK_LOST,
  AK_WORDS,
  CB_DOORBELL,
  CB_SLEEPING,
  CB_ERROR,
  CB_STATE,
  ErrorCode,
  RING_SIZE,
  ShardState,
  SluiceError,
  TERMINAL_ERRORS,
} from '@sluice/protocol';
import type { QueueHandle } from '@sluice/protocol';
import type { RecordBatch } from 'apache-arrow';
import { ArrowEncoder, RowEncoder, Sequencer } from '@sluice/core';
import type { EncodedWrite, SequencerBuffers, TableSchema } from '@sluice/core';

/** The shared buffers a producer thread needs for one shard. */
export interface ProducerShardBuffers {
  readonly control: SharedArrayBuffer;
  readonly queue: QueueHandle;
}

/**
 * Claims of one producer thread: slot i holds the sequence of a put in flight (0 = free).
 * If the thread dies, the broker finishes the claimed sequences once the thread's queues are
 * drained, so the visible sequence moves on instead of waiting forever for a dead thread.
 */
export const CLAIM_SLOTS = 1024;

export interface ProducerLimits {
  readonly maxValueBytes: number;
  /** Largest record a put sends one shard (larger puts are split; see maxRecordBytes). */
  readonly maxRecordBytes: number;
  /** Largest put, in encoded bytes for one shard (see maxPutShardBytes). */
  readonly maxPutShardBytes: number;
  readonly maxUnflushedBytes: number;
  readonly backpressureTimeoutMs: number;
}

/** Why a put could not be enqueued now: the memory limit (with the count seen) or one queue's room. */
type Blocked = { readonly memory: number } | { readonly queue: SabQueue; readonly bytes: number };

interface PendingRecord {
  readonly record: number;
  readonly done: () => void;
  readonly fail: (err: SluiceError) => void;
}

interface ShardLane {
  readonly shard: number;
  readonly control: Int32Array;
  readonly queue: SabQueue;
  readonly ack: Int32Array;
  /** Records this producer committed to the queue (the queue numbers them 1, 2, ...). */
  produced: number;
  pending: PendingRecord[];
  ackLoop: boolean;
}

interface PutState {
  readonly seq: number;
  readonly slot: number;
  remaining: number;
  error: SluiceError | undefined;
  readonly resolve: () => void;
  readonly reject: (e: SluiceError) => void;
}

interface PutHandle extends PutState {
  readonly promise: Promise<void>;
  readonly ack: () => void;
  readonly fail: (e: SluiceError) => void;
}

/**
 * A quarter of a memtable: a record is applied whole before the memtables it fills are
 * published (after its WAL write), so it should span at most the active memtable and the
 * next. A single row is never split, so a row of large values may still span more; the shard
 * then asks the broker for further spares (needSpare).
 */
export function maxRecordBytes(memtableBytes: number): number {
  return Math.max(1024, Math.floor(memtableBytes / 4));
}

/**
 * Four memtables' worth of encoded rows per shard. A put is one write sequence: none of the
 * memtables its rows fill can be flushed before all of it is applied, so they must fit in
 * memory together (and in the control block's frozen list, CB_MAX_FROZEN) beside the
 * memtables already frozen. A larger put could never finish; it is refused instead.
 */
export function maxPutShardBytes(memtableBytes: number): number {
  return 4 * memtableBytes;
}

export function allocateQueue(id: number, bytes: number): QueueHandle {
  return {
    id,
    queue: SabQueue.create(bytes).buffer,
    ack: new SharedArrayBuffer(4 * AK_WORDS),
  };
}

/**
 * The write path of one thread: validates and encodes rows (on the calling thread), puts one
 * record per touched shard into this thread's own SAB queue for that shard, and learns about
 * acknowledgements from the queues' ack blocks through Atomics: no message per put, and the
 * main thread is not on the data path. Every put takes a global sequence number; it resolves
 * once the visible sequence covers it, so a later read on any thread sees it.
 */
export class Producer {
  readonly #encoder: RowEncoder;
  readonly #arrow: ArrowEncoder;
  readonly #lanes: ShardLane[];
  readonly #seq: Sequencer;
  readonly #limits: ProducerLimits;
  /** Puts waiting for queue room or memory, in call order: a later put never overtakes one. */
  #waiting: Promise<void> = Promise.resolve();
  #waitingCount = 0;
  #closedError: SluiceError | undefined;
  readonly #claims: BigInt64Array;
  readonly #freeSlots: number[] = [];
  #slotWaiters: (() => void)[] = [];
  stalls = 0;

  constructor(
    schema: TableSchema,
    shards: readonly ProducerShardBuffers[],
    sequencer: SequencerBuffers,
    limits: ProducerLimits,
    claims: SharedArrayBuffer,
  ) {
    this.#claims = new BigInt64Array(claims);
    for (let i = CLAIM_SLOTS - 1; i >= 0; i--) this.#freeSlots.push(i);
    this.#encoder = new RowEncoder(schema, shards.length, { maxValueBytes: limits.maxValueBytes });
    this.#arrow = new ArrowEncoder(schema, shards.length, { maxValueBytes: limits.maxValueBytes });
    this.#seq = new Sequencer(sequencer);
    this.#limits = limits;
    this.#lanes = shards.map((b, shard) => {
      const queue = SabQueue.attach(b.queue.queue);
      return {
        shard,
        control: new Int32Array(b.control),
        queue,
        ack: new Int32Array(b.queue.ack),
        // A producer owns a fresh queue: its records are numbered from the queue's count.
        produced: queue.releasedCount,
        pending: [],
        ackLoop: false,
      };
    });
  }

  get sequencer(): Sequencer {
    return this.#seq;
  }

  /** Fails every later write with `err` (the table closed or this handle was closed). */
  close(err: SluiceError): void {
    this.#closedError ??= err;
  }

  #checkOpen(): void {
    if (this.#closedError) throw this.#closedError;
    if (this.#seq.closed) throw new SluiceError(ErrorCode.CLOSED, 'the table is closed');
  }

  /** Validates (whole, before anything is enqueued), encodes and enqueues one put or delete of plain rows/keys. */
  write(input: readonly unknown[], op: number): Promise<void> {
    this.#checkOpen();
    return this.#submit(this.#plan(input, op));
  }

  /** The same for Arrow record batches with exactly the table's columns (columnar, no rows materialised). */
  writeArrow(batches: readonly RecordBatch[]): Promise<void> {
    this.#checkOpen();
    return this.#submit(batches.flatMap((b) => this.#planArrow(b)));
  }

  acceptsArrow(batch: RecordBatch): boolean {
    return this.#arrow.accepts(batch);
  }

  async #submit(plans: readonly EncodedWrite[]): Promise<void> {
    const perShard = new Array<number>(this.#lanes.length).fill(0);
    for (const p of plans) p.shardBytes.forEach((b, s) => (perShard[s]! += b));
    const biggest = Math.max(...perShard);
    if (biggest > this.#limits.maxPutShardBytes) {
      const s = perShard.indexOf(biggest);
      throw new SluiceError(
        ErrorCode.INVALID_ROW,
        `the put encodes to ${biggest} bytes for shard ${s}; one put may hold at most ${this.#limits.maxPutShardBytes} bytes per shard (4 × memtableBytes): split it into smaller puts`,
        { details: { shard: s, bytes: biggest, limit: this.#limits.maxPutShardBytes } },
      );
    }
    const records = plans.reduce((n, p) => n + p.shardBytes.filter((b) => b > 0).length, 0);
    while (this.#freeSlots.length === 0) await new Promise<void>((r) => this.#slotWaiters.push(r));
    const put = this.#begin(records);
    try {
      if (!(this.#waitingCount === 0 && this.#tryEnqueueAll(plans, put) === null)) {
        this.#waitingCount++;
        const turn = this.#waiting.then(() => this.#enqueueWhenRoom(plans, put));
        this.#waiting = turn.catch(() => undefined).finally(() => this.#waitingCount--);
        await turn;
      }
    } catch (err) {
      // Nothing of this put was enqueued: it still ends its sequence number, so the visible
      // sequence can move past it. The caller gets the error from this throw; the put's own
      // promise settles too and must not surface as an unhandled rejection.
      put.promise.catch(() => undefined);
      this.#abandon(put, err instanceof SluiceError ? err : new SluiceError(ErrorCode.INTERNAL, String(err)));
      throw err;
    }
    return put.promise;
  }

  #begin(records: number): PutHandle {
    const slot = this.#freeSlots.pop()!;
    const seq = this.#seq.next();
    // Claimed right after it is taken: the broker reads claims only after this thread is gone.
    Atomics.store(this.#claims, slot, BigInt(seq));
    let resolve!: () => void;
    let reject!: (e: SluiceError) => void;
    const promise = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const state: PutState = { seq, slot, remaining: records, error: undefined, resolve, reject };
    const ack = (): void => {
      if (--state.remaining === 0) this.#finish(state);
    };
    const fail = (e: SluiceError): void => {
      state.error ??= e;
      if (--state.remaining === 0) this.#finish(state);
    };
    if (records === 0) queueMicrotask(() => this.#finish(state));
    return Object.assign(state, { promise, ack, fail });
  }

  #abandon(put: PutState, err: SluiceError): void {
    put.error ??= err;
    put.remaining = 0;
    this.#finish(put);
  }

  /** Every record of the put is acknowledged (or failed): end its sequence, then resolve once visible. */
  #finish(put: PutState): void {
    const end = (): void => {
      this.#seq.finish(put.seq);
      Atomics.store(this.#claims, put.slot, 0n);
      this.#freeSlots.push(put.slot);
      this.#slotWaiters.shift()?.();
      this.#seq.whenVisible(put.seq, () => (put.error ? put.reject(put.error) : put.resolve()));
    };
    // The completion ring holds RING_SIZE puts: wait (rarely) until the oldest slot is free.
    if (this.#seq.mayFinish(put.seq)) end();
    else this.#seq.whenVisible(put.seq - RING_SIZE + 1, end);
  }

  /** Splits input so every shard's record fits its queue, then plans each part (all validation happens here). */
  #plan(input: readonly unknown[], op: number): EncodedWrite[] {
    const whole = this.#encoder.plan(input, op);
    const parts = this.#parts(whole.shardBytes, input.length);
    if (parts === 1)
      return [{ shardBytes: whole.shardBytes, write: (s, t, seq) => this.#encoder.write(whole, s, t, seq) }];
    const size = Math.ceil(input.length / parts);
    const plans: EncodedWrite[] = [];
    for (let i = 0; i < input.length; i += size) plans.push(...this.#plan(input.slice(i, i + size), op));
    return plans;
  }

  #planArrow(batch: RecordBatch): EncodedWrite[] {
    const whole = this.#arrow.plan(batch);
    const parts = this.#parts(whole.shardBytes, batch.numRows);
    if (parts === 1) return [whole];
    const size = Math.ceil(batch.numRows / parts);
    const plans: EncodedWrite[] = [];
    for (let i = 0; i < batch.numRows; i += size) plans.push(...this.#planArrow(batch.slice(i, i + size)));
    return plans;
  }

  /** How many parts a write must be split into so each shard's record fits its queue. */
  #parts(shardBytes: readonly number[], rows: number): number {
    const limit = Math.min(this.#limits.maxRecordBytes, ...this.#lanes.map((l) => l.queue.maxRecordBytes));
    const biggest = Math.max(0, ...shardBytes);
    if (biggest <= limit || rows <= 1) return 1;
    return Math.ceil(biggest / (limit * 0.5));
  }

  #shardError(lane: ShardLane): SluiceError | undefined {
    const state = Atomics.load(lane.control, CB_STATE);
    if (state !== ShardState.DEAD && state !== ShardState.CLOSED) return undefined;
    if (state === ShardState.CLOSED) return new SluiceError(ErrorCode.CLOSED, 'the table is closed');
    const code = TERMINAL_ERRORS[Atomics.load(lane.control, CB_ERROR)] ?? ErrorCode.INTERNAL;
    return new SluiceError(code as ErrorCode, `shard ${lane.shard} has stopped (${code})`, {
      details: { shard: lane.shard },
    });
  }

  /**
   * Enqueues every record of a put synchronously, or nothing: all queues are checked for room
   * first, so a put is never half enqueued when a queue is full. Returns what blocked it when
   * it enqueued nothing.
   */
  #tryEnqueueAll(plans: readonly EncodedWrite[], put: PutHandle): Blocked | null {
    const unflushed = this.#seq.unflushedBytes;
    if (unflushed > this.#limits.maxUnflushedBytes) return { memory: unflushed };
    const need = new Map<number, number>();
    for (const p of plans) p.shardBytes.forEach((b, s) => b > 0 && need.set(s, (need.get(s) ?? 0) + b + 64));
    for (const [s, bytes] of need) {
      const lane = this.#lanes[s]!;
      const err = this.#shardError(lane);
      if (err) throw err;
      if (
        bytes <= lane.queue.maxRecordBytes &&
        lane.queue.capacity - lane.queue.usedBytes() < 2 * (bytes + 16)
      ) {
        return { queue: lane.queue, bytes: 2 * (bytes + 16) };
      }
    }
    for (const p of plans) {
      for (let s = 0; s < p.shardBytes.length; s++) {
        const bytes = p.shardBytes[s]!;
        if (bytes === 0) continue;
        const lane = this.#lanes[s]!;
        const view = lane.queue.tryReserve(bytes);
        if (view === null) {
          // Only possible for a put split over several records per shard on a nearly full
          // queue: the enqueued part is acknowledged normally; the rest fails, retryable.
          put.fail(
            new SluiceError(
              ErrorCode.BACKPRESSURE,
              `shard ${s}: queue full in the middle of a large put; retry it`,
            ),
          );
          continue;
        }
        p.write(s, view, put.seq);
        lane.queue.commit();
        lane.produced = (lane.produced + 1) | 0;
        lane.pending.push({ record: lane.produced, done: put.ack, fail: put.fail });
        // Ring the shard's doorbell (one counter for all its queues) and wake it only if it
        // says it sleeps: a notify is a cross-thread wakeup, costly when nobody waits (the
        // order argument is at the shard's wait, in ShardEngine's pump).
        Atomics.add(lane.control, CB_DOORBELL, 1);
        if (Atomics.load(lane.control, CB_SLEEPING) !== 0) Atomics.notify(lane.control, CB_DOORBELL);
        if (!lane.ackLoop) void this.#ackLoop(lane);
      }
    }
    return null;
  }

  /**
   * Waits until the put fits, then enqueues it. Each turn parks on the one thing that blocked
   * it: the unflushed byte count (the broker notifies when a commit lowers it) or the space in
   * one queue (its consumer notifies on release). Nothing polls, so stalled producers neither
   * burn the event loop that commits run on nor pile up timers.
   */
  async #enqueueWhenRoom(plans: readonly EncodedWrite[], put: PutHandle): Promise<void> {
    const deadline = performance.now() + this.#limits.backpressureTimeoutMs;
    this.stalls++;
    for (;;) {
      this.#checkOpen();
      const blocked = this.#tryEnqueueAll(plans, put);
      if (blocked === null) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new SluiceError(
          ErrorCode.BACKPRESSURE,
          `put waited ${this.#limits.backpressureTimeoutMs} ms for flushes to catch up (unflushed ${this.#seq.unflushedBytes} bytes, limit ${this.#limits.maxUnflushedBytes}); retry later`,
        );
      }
      // Bounded waits: a shard that dies while we sleep must still be noticed (#shardError).
      if ('memory' in blocked) await this.#seq.waitUnflushedChange(blocked.memory, Math.min(left, 250));
      else await blocked.queue.waitForFree(blocked.bytes, Math.min(left, 250));
    }
  }

  /**
   * Turns a lane's ack block into resolved records. Loads DONE before LOST (the shard stores
   * them in the opposite order): a record at or below LOST was taken by a shard thread that
   * died, so its outcome is unknown and it fails with SLUICE_SHARD_CRASHED; a record at or
   * below DONE is published. Comparisons are wrap-safe on Int32 counters.
   */
  async #ackLoop(lane: ShardLane): Promise<void> {
    lane.ackLoop = true;
    // A pending Atomics.waitAsync does not keep a Node thread alive; this timer does while
    // acknowledgements are outstanding.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      while (lane.pending.length > 0) {
        const done = Atomics.load(lane.ack, AK_DONE);
        const lost = Atomics.load(lane.ack, AK_LOST);
        let i = 0;
        for (; i < lane.pending.length; i++) {
          const p = lane.pending[i]!;
          if (((lost - p.record) | 0) >= 0) {
            p.fail(
              new SluiceError(
                ErrorCode.SHARD_CRASHED,
                `shard ${lane.shard} thread died while applying this write; it may or may not have been applied`,
                { details: { shard: lane.shard } },
              ),
            );
          } else if (((done - p.record) | 0) >= 0) p.done();
          else break;
        }
        if (i > 0) lane.pending.splice(0, i);
        if (lane.pending.length === 0) break;
        const err = this.#shardError(lane);
        if (err) {
          const failed = lane.pending;
          lane.pending = [];
          for (const p of failed) p.fail(err);
          break;
        }
        const w = Atomics.waitAsync(lane.ack, AK_DONE, done, 1000);
        if (w.async) await w.value;
      }
    } finally {
      clearInterval(keepAlive);
      lane.ackLoop = false;
    }
  }

  /** Resolves when every record this producer enqueued is acknowledged or failed. */
  async drain(): Promise<void> {
    await this.#waiting.catch(() => undefined);
    while (this.#lanes.some((l) => l.pending.length > 0)) await new Promise((r) => setTimeout(r, 2));
  }
}
