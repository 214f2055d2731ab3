import { GB_CLOSED, GB_NEXT, GB_UNFLUSHED, GB_VISIBLE, GB_WORDS, RING_SIZE } from '@sluice/protocol';

/**
 * The table-wide write sequence, shared by every producer thread through SharedArrayBuffers.
 *
 * A put takes the next sequence number (Atomics.add on GB_NEXT), tags its rows with it, and
 * once every shard it touched has acknowledged it, marks it finished in the completion ring.
 * GB_VISIBLE then advances over the contiguous prefix of finished puts; any thread may move
 * it, with a compare-and-swap per step, so no thread is in charge. A put resolves only when
 * GB_VISIBLE covers it (read-your-writes on every thread); a reader snapshots GB_VISIBLE and
 * ignores rows of later puts (no half-applied put is ever visible).
 */
export interface SequencerBuffers {
  readonly global: SharedArrayBuffer;
  readonly ring: SharedArrayBuffer;
}

const MASK = RING_SIZE - 1;

export class Sequencer {
  readonly buffers: SequencerBuffers;
  readonly #g: BigInt64Array;
  readonly #ring: Int32Array;
  #waiters: { seq: number; fn: () => void }[] = [];
  #waiting = false;

  constructor(buffers: SequencerBuffers) {
    this.buffers = buffers;
    this.#g = new BigInt64Array(buffers.global);
    this.#ring = new Int32Array(buffers.ring);
  }

  /** Fresh buffers whose sequence continues after `last` (the largest sequence recovered). */
  static create(last: number): Sequencer {
    const s = new Sequencer({
      global: new SharedArrayBuffer(8 * GB_WORDS),
      ring: new SharedArrayBuffer(4 * RING_SIZE),
    });
    Atomics.store(s.#g, GB_NEXT, BigInt(last));
    Atomics.store(s.#g, GB_VISIBLE, BigInt(last));
    return s;
  }

  get visible(): number {
    return Number(Atomics.load(this.#g, GB_VISIBLE));
  }

  /** Takes the next put sequence. */
  next(): number {
    return Number(Atomics.add(this.#g, GB_NEXT, 1n)) + 1;
  }

  /**
   * Records put `seq` as finished (acknowledged or failed) and advances the visible sequence
   * as far as the finished prefix reaches. The caller must not finish `seq` while a put
   * RING_SIZE older is unfinished (see `mayFinish`), so ring slots are never clobbered.
   */
  finish(seq: number): void {
    // Store first: a thread advancing concurrently either sees this slot, or advanced past
    // seq - 1 before our load below, which then sees its new GB_VISIBLE and continues.
    Atomics.store(this.#ring, seq & MASK, seq | 0);
    this.#advance();
  }

  mayFinish(seq: number): boolean {
    return seq - this.visible < RING_SIZE;
  }

  #advance(): void {
    let moved = false;
    for (;;) {
      const v = Atomics.load(this.#g, GB_VISIBLE);
      const next = Number(v) + 1;
      if (Atomics.load(this.#ring, next & MASK) !== (next | 0)) break;
      if (Atomics.compareExchange(this.#g, GB_VISIBLE, v, v + 1n) === v) moved = true;
    }
    if (moved) Atomics.notify(this.#g, GB_VISIBLE);
  }

  /** Calls `fn` once the visible sequence reaches `seq` (one Atomics.waitAsync loop per thread). */
  whenVisible(seq: number, fn: () => void): void {
    if (this.visible >= seq) {
      fn();
      return;
    }
    this.#waiters.push({ seq, fn });
    if (!this.#waiting) void this.#waitLoop();
  }

  waitVisible(seq: number): Promise<void> {
    return new Promise((resolve) => this.whenVisible(seq, resolve));
  }

  async #waitLoop(): Promise<void> {
    this.#waiting = true;
    // A pending Atomics.waitAsync does not keep a Node thread alive; this timer does while
    // somebody waits for the visible sequence.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    try {
      while (this.#waiters.length > 0) {
        const v = Atomics.load(this.#g, GB_VISIBLE);
        const vis = Number(v);
        const ready = this.#waiters.filter((w) => w.seq <= vis);
        if (ready.length > 0) {
          this.#waiters = this.#waiters.filter((w) => w.seq > vis);
          for (const w of ready) w.fn();
          continue;
        }
        // Bounded wait: a notify can only be missed if it lands between the load above and
        // this wait, and then the value already differs and the wait returns at once.
        const r = Atomics.waitAsync(this.#g, GB_VISIBLE, v, 1000);
        if (r.async) await r.value;
      }
    } finally {
      clearInterval(keepAlive);
      this.#waiting = false;
    }
  }

  get unflushedBytes(): number {
    return Number(Atomics.load(this.#g, GB_UNFLUSHED));
  }

  set unflushedBytes(n: number) {
    const v = BigInt(Math.max(0, Math.floor(n)));
    // Only the broker (main thread) writes this slot. Producers stalled on the memory limit
    // park in Atomics.waitAsync on it (waitUnflushedChange): wake them when it changes.
    if (Atomics.exchange(this.#g, GB_UNFLUSHED, v) !== v) Atomics.notify(this.#g, GB_UNFLUSHED);
  }

  /**
   * Resolves when the unflushed byte count differs from `seen`, the table closes, or
   * `timeoutMs` passes. Parks in Atomics.waitAsync: no timer or promise per retry, so a
   * producer stalled by backpressure costs nothing while it waits.
   */
  async waitUnflushedChange(seen: number, timeoutMs: number): Promise<void> {
    const v = BigInt(seen);
    if (Atomics.load(this.#g, GB_UNFLUSHED) !== v || this.closed) return;
    const r = Atomics.waitAsync(this.#g, GB_UNFLUSHED, v, Math.max(0, timeoutMs));
    if (!r.async) return;
    // A pending Atomics.waitAsync does not keep a Node thread alive; this timer does.
    const keepAlive = setTimeout(() => undefined, Math.max(0, timeoutMs) + 10);
    try {
      await r.value;
    } finally {
      clearTimeout(keepAlive);
    }
  }

  get closed(): boolean {
    return Atomics.load(this.#g, GB_CLOSED) !== 0n;
  }

  markClosed(): void {
    Atomics.store(this.#g, GB_CLOSED, 1n);
    Atomics.notify(this.#g, GB_VISIBLE);
    Atomics.notify(this.#g, GB_UNFLUSHED);
  }
}
