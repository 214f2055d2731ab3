import { GB_VISIBLE } from '@sluice/protocol';
import type { SluiceError } from '@sluice/protocol';

interface PutState {
  remaining: number;
  error: SluiceError | undefined;
  resolve: () => void;
  reject: (err: SluiceError) => void;
}

/**
 * Orders writes into one global sequence and maintains the visible sequence: the highest S
 * such that every put <= S has been acknowledged by every shard it touched. Readers take it as
 * their snapshot (rows of later puts are filtered out), so no reader ever sees part of a put.
 * A put resolves only once the visible sequence covers it, which is what makes
 * read-your-writes hold across shards. Lives on the broker's thread; the visible sequence is
 * also stored in a shared BigInt64 slot for readers on other threads.
 */
export class WriteTracker {
  #next: number;
  #visible: number;
  readonly #inflight = new Map<number, PutState>();
  readonly #shared: BigInt64Array;
  #waiters: { seq: number; fn: () => void }[] = [];

  constructor(startAfter: number, shared: BigInt64Array) {
    this.#next = startAfter + 1;
    this.#visible = startAfter;
    this.#shared = shared;
    Atomics.store(shared, GB_VISIBLE, BigInt(startAfter));
  }

  get visible(): number {
    return this.#visible;
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  /** Reserves the next sequence for a put of `records` queue records; returns it and its completion. */
  begin(records: number): {
    seq: number;
    done: Promise<void>;
    ack: () => void;
    fail: (e: SluiceError) => void;
  } {
    const seq = this.#next++;
    let resolve!: () => void;
    let reject!: (e: SluiceError) => void;
    const done = new Promise<void>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const state: PutState = { remaining: records, error: undefined, resolve, reject };
    this.#inflight.set(seq, state);
    const ack = (): void => {
      state.remaining--;
      if (state.remaining === 0) this.#advance();
    };
    const fail = (e: SluiceError): void => {
      state.error ??= e;
      state.remaining--;
      if (state.remaining === 0) this.#advance();
    };
    if (records === 0) queueMicrotask(() => this.#advance());
    return { seq, done, ack, fail };
  }

  /** A put that could not be enqueued at all: it counts as finished (nothing of it exists). */
  abandon(seq: number, err: SluiceError): void {
    const s = this.#inflight.get(seq);
    if (!s) return;
    s.error ??= err;
    s.remaining = 0;
    this.#advance();
  }

  #advance(): void {
    let moved = false;
    for (;;) {
      const s = this.#inflight.get(this.#visible + 1);
      if (!s || s.remaining > 0) break;
      this.#inflight.delete(this.#visible + 1);
      this.#visible++;
      moved = true;
      if (s.error) s.reject(s.error);
      else s.resolve();
    }
    if (!moved) return;
    // Only this thread writes the slot; readers elsewhere load it before capturing sources.
    Atomics.store(this.#shared, GB_VISIBLE, BigInt(this.#visible));
    if (this.#waiters.length > 0) {
      const ready = this.#waiters.filter((w) => w.seq <= this.#visible);
      this.#waiters = this.#waiters.filter((w) => w.seq > this.#visible);
      for (const w of ready) w.fn();
    }
  }

  whenVisible(seq: number, fn: () => void): void {
    if (seq <= this.#visible) fn();
    else this.#waiters.push({ seq, fn });
  }
}
