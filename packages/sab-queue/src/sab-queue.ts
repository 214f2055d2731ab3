/**
 * Single-producer / single-consumer queue of variable-length byte records in a SharedArrayBuffer.
 *
 * Positions. WRITE_INDEX and READ_INDEX hold positions in [0, 2 * capacity): the byte offset in the
 * data region is `position mod capacity`, and the extra factor of two is a lap bit. The number of
 * occupied bytes is `(write - read) mod (2 * capacity)`, which lies in [0, capacity] because the
 * producer never overfills, so `write === read` means empty and a difference of `capacity` means
 * full: every byte is usable and no slot is sacrificed to tell the two apart. Positions wrap
 * before 2^31, so they fit the Int32Array slots that Atomics.waitAsync requires, and they never
 * overflow however many bytes pass through.
 *
 * Records. Each record is an 8-byte header `[length, seq]` followed by the payload, padded to 8
 * bytes, and is never split across the end of the data region. When a record does not fit in the
 * rest of the current lap, the producer writes a wrap marker (length = WRAP_MARKER) there and puts
 * the record at offset 0; the consumer skips the marker. It does the same, early, when the queue is
 * empty and the write offset is past WARM_BYTES, so a queue kept drained reuses warm pages. The
 * header region and every record offset are multiples of 8, so every payload starts 8-byte aligned
 * within the SharedArrayBuffer.
 *
 * Ordering. Only the producer writes WRITE_INDEX and only the consumer writes READ_INDEX. The
 * producer writes a record's bytes with plain stores and then publishes it with Atomics.store of
 * WRITE_INDEX; the consumer's Atomics.load of WRITE_INDEX that observes that value therefore
 * happens after those stores and sees the bytes. Symmetrically the consumer finishes reading a
 * record before Atomics.store of READ_INDEX, and the producer only overwrites bytes behind a
 * READ_INDEX it obtained with Atomics.load.
 *
 * Roles. Each side caches the other side's index (a stale copy only understates free space or
 * available data, so it is reloaded only when it falls short) and keeps its own index in the
 * instance. At any time one instance may produce and one may consume (the same instance may do both
 * on one thread); a role may move to an instance created by attach() after its previous holder
 * stopped.
 */
import { SabQueueError, SabQueueErrorCode } from './errors.js';
import {
  CAPACITY_SLOT,
  CLOSED_SLOT,
  DATA_WAITERS_SLOT,
  HEADER_BYTES,
  LAYOUT_VERSION,
  MAGIC_SLOT,
  MAX_CAPACITY,
  MIN_CAPACITY,
  PUSH_SEQ_SLOT,
  QUEUE_MAGIC,
  READ_INDEX_SLOT,
  RECORD_ALIGN,
  RECORD_HEADER_BYTES,
  RECORD_LENGTH_FIELD,
  RECORD_SEQ_FIELD,
  RELEASE_SEQ_SLOT,
  SPACE_WAITERS_SLOT,
  VERSION_SLOT,
  WRAP_MARKER,
  WRITE_INDEX_SLOT,
  alignRecord,
  maxRecordBytesFor,
} from './layout.js';
import { waitForChange } from './wait.js';

const NONE = -1;
/** The producer wraps early once a drained queue's writes pass this offset (see #bytesNeeded). */
export const WARM_BYTES = 4 << 20;

/**
 * A byte-record queue between exactly one producer thread and one consumer thread.
 *
 * @example
 * ```ts
 * // main thread: the producer
 * const queue = SabQueue.create(16 << 20);
 * const worker = new Worker(shardUrl, { workerData: { queue: queue.buffer } });
 * for (const batch of batches) {
 *   while (!queue.tryPush(batch)) await queue.waitForSpace(batch.byteLength);
 * }
 * queue.close();
 *
 * // shard worker: the consumer
 * const queue = SabQueue.attach(workerData.queue);
 * while (await queue.waitForData()) {
 *   const record = queue.peek()!; // zero-copy, valid until release()
 *   apply(new Float64Array(record.buffer, record.byteOffset, record.byteLength / 8));
 *   queue.release();
 * }
 * ```
 */
export class SabQueue {
  readonly buffer: SharedArrayBuffer;
  /** Bytes in the data region (the SharedArrayBuffer is HEADER_BYTES larger). */
  readonly capacity: number;
  /**
   * Largest payload tryReserve/tryPush accept: `floor8(capacity / 2) - 8`. A record occupies
   * 8 header bytes plus its payload rounded up to 8, and must be contiguous. With at most half the
   * ring per record, an empty queue always has room for it whatever the current offset: either in
   * the rest of the lap or, after a wrap marker, at the start. So any accepted length eventually
   * fits once the consumer drains. A larger record could wait forever: drained at offset `o`, it
   * fits neither in the `capacity - o` bytes left in the lap nor in the `o` bytes before the read
   * position. Size the queue at twice the largest record.
   */
  readonly maxRecordBytes: number;

  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  /** Positions run modulo this (2 * capacity). */
  readonly #span: number;

  // Producer state.
  #write: number;
  /** Last READ_INDEX the producer loaded; behind or equal to the real one. */
  #readSeen: number;
  #pushSeq: number;
  /** WRITE_INDEX value that commit() publishes, or NONE without a reservation. */
  #pending = NONE;

  // Consumer state.
  #read: number;
  /** Last WRITE_INDEX the consumer loaded; behind or equal to the real one. */
  #writeSeen: number;
  #releaseSeq: number;
  /** READ_INDEX value after releasing the record peek() returned, or NONE. */
  #peeked = NONE;

  private constructor(buffer: SharedArrayBuffer, capacity: number) {
    this.buffer = buffer;
    this.capacity = capacity;
    this.maxRecordBytes = maxRecordBytesFor(capacity);
    this.#i32 = new Int32Array(buffer);
    this.#u8 = new Uint8Array(buffer);
    this.#span = 2 * capacity;
    // Atomics.load: the buffer may come from another thread that is already producing or
    // consuming; these loads see its latest published positions, which is all the cached copies need.
    this.#write = Atomics.load(this.#i32, WRITE_INDEX_SLOT);
    this.#readSeen = Atomics.load(this.#i32, READ_INDEX_SLOT);
    this.#pushSeq = Atomics.load(this.#i32, PUSH_SEQ_SLOT);
    this.#read = this.#readSeen;
    this.#writeSeen = this.#write;
    this.#releaseSeq = Atomics.load(this.#i32, RELEASE_SEQ_SLOT);
  }

  /**
   * Allocates a queue whose data region holds `capacityBytes`, rounded up to a multiple of 8 and to
   * at least 64; at most 1 GiB.
   */
  static create(capacityBytes: number): SabQueue {
    if (!Number.isInteger(capacityBytes) || capacityBytes < 1) {
      throw new RangeError(`capacityBytes must be a positive integer, got ${String(capacityBytes)}`);
    }
    if (capacityBytes > MAX_CAPACITY) {
      throw new RangeError(`capacityBytes must be at most ${MAX_CAPACITY}, got ${capacityBytes}`);
    }
    const capacity = alignRecord(Math.max(capacityBytes, MIN_CAPACITY));
    const buffer = new SharedArrayBuffer(HEADER_BYTES + capacity);
    const i32 = new Int32Array(buffer);
    i32[VERSION_SLOT] = LAYOUT_VERSION;
    i32[CAPACITY_SLOT] = capacity;
    // Written by the creating thread before the buffer is shared; MAGIC last and with Atomics.store
    // so a thread that attaches by polling a buffer it was handed early never sees a half header.
    Atomics.store(i32, MAGIC_SLOT, QUEUE_MAGIC);
    return new SabQueue(buffer, capacity);
  }

  /** Rebuilds a queue handle on any thread from the SharedArrayBuffer alone. */
  static attach(buffer: SharedArrayBuffer): SabQueue {
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('buffer must be a SharedArrayBuffer created by SabQueue.create()');
    }
    if (buffer.byteLength < HEADER_BYTES + MIN_CAPACITY) {
      throw new TypeError(`buffer is too small to hold a SabQueue (${buffer.byteLength} bytes)`);
    }
    const i32 = new Int32Array(buffer);
    // Pairs with the Atomics.store of MAGIC in create(): the other header slots were written before it.
    if (Atomics.load(i32, MAGIC_SLOT) !== QUEUE_MAGIC) {
      throw new TypeError('buffer does not hold a SabQueue (bad magic number)');
    }
    const version = i32[VERSION_SLOT];
    if (version !== LAYOUT_VERSION) {
      throw new TypeError(`buffer holds SabQueue layout version ${version}, expected ${LAYOUT_VERSION}`);
    }
    const capacity = i32[CAPACITY_SLOT] ?? 0;
    if (
      capacity % RECORD_ALIGN !== 0 ||
      capacity < MIN_CAPACITY ||
      HEADER_BYTES + capacity !== buffer.byteLength
    ) {
      throw new TypeError(`buffer holds a corrupt SabQueue header (capacity ${capacity})`);
    }
    return new SabQueue(buffer, capacity);
  }

  get closed(): boolean {
    // Written once by close() on any thread; a stale 0 only delays noticing by one call.
    return Atomics.load(this.#i32, CLOSED_SLOT) !== 0;
  }

  /** Bytes occupied by records, their headers and padding, and skipped lap tails. */
  usedBytes(): number {
    // Two independent loads: the result is exact from a quiescent queue and within bounds otherwise.
    return this.#distance(
      Atomics.load(this.#i32, WRITE_INDEX_SLOT),
      Atomics.load(this.#i32, READ_INDEX_SLOT),
    );
  }

  // ---- producer ------------------------------------------------------------------------------

  /**
   * Reserves room for a `length`-byte record and returns the view to write it into, or null when
   * the queue lacks the room right now. Nothing is visible to the consumer until commit(); a new
   * tryReserve() abandons an uncommitted reservation.
   */
  tryReserve(length: number): Uint8Array | null {
    const at = this.#reserve(length);
    return at === NONE ? null : this.#u8.subarray(at, at + length);
  }

  /** Publishes the record reserved by the last successful tryReserve(). */
  commit(): void {
    const next = this.#pending;
    if (next === NONE) {
      throw new SabQueueError(SabQueueErrorCode.INTERNAL, 'commit() needs a successful tryReserve() first');
    }
    this.#pending = NONE;
    this.#throwIfClosed();
    this.#pushSeq = (this.#pushSeq + 1) | 0;
    this.#write = next;
    // Plain store: only attach() reads it, through the WRITE_INDEX store below that publishes it.
    this.#i32[PUSH_SEQ_SLOT] = this.#pushSeq;
    // Producer-only slot. The record's header and payload were written with plain stores before
    // this seq-cst store; a consumer whose Atomics.load returns this value sees all of them.
    Atomics.store(this.#i32, WRITE_INDEX_SLOT, next);
    // DATA_WAITERS is raised by a consumer before it re-reads WRITE_INDEX and parks. Both are seq-cst:
    // either this load sees the consumer waiting, or the consumer's load sees the store above.
    // Skipping the notify when nobody waits keeps it off the per-record path.
    if (Atomics.load(this.#i32, DATA_WAITERS_SLOT) !== 0) Atomics.notify(this.#i32, WRITE_INDEX_SLOT);
  }

  /** Copies `bytes` into the queue as one record; false when the queue lacks the room right now. */
  tryPush(bytes: Uint8Array): boolean {
    const at = this.#reserve(bytes.byteLength);
    if (at === NONE) return false;
    this.#u8.set(bytes, at);
    this.commit();
    return true;
  }

  /**
   * Resolves true as soon as tryReserve(length) would succeed, false after `timeoutMs` or once the
   * queue is closed.
   */
  async waitForSpace(length: number, timeoutMs = Infinity): Promise<boolean> {
    this.#checkLength(length);
    checkTimeout(timeoutMs);
    return this.#waitUntil(() => this.#hasRoom(this.#bytesNeeded(length)), timeoutMs);
  }

  /**
   * Resolves true as soon as at least `bytes` of the ring are free (capacity - usedBytes()),
   * false after `timeoutMs` or once the queue is closed. For producers that reserve room for
   * several records at once; `bytes` is clamped to the capacity.
   */
  async waitForFree(bytes: number, timeoutMs = Infinity): Promise<boolean> {
    checkTimeout(timeoutMs);
    const want = Math.min(Math.max(0, bytes), this.capacity);
    return this.#waitUntil(() => {
      this.#readSeen = Atomics.load(this.#i32, READ_INDEX_SLOT);
      return this.capacity - this.#distance(this.#write, this.#readSeen) >= want;
    }, timeoutMs);
  }

  async #waitUntil(ready: () => boolean, timeoutMs: number): Promise<boolean> {
    if (this.closed) return false;
    if (ready()) return true;
    const deadline = performance.now() + timeoutMs;
    // Announce the wait before re-reading READ_INDEX; pairs with the consumer's load in #advanceRead().
    Atomics.add(this.#i32, SPACE_WAITERS_SLOT, 1);
    try {
      for (;;) {
        // Consumer-only slot; the same value is handed to waitAsync, which parks only if it is
        // still current, so a release() between this load and the wait is never slept through.
        const read = Atomics.load(this.#i32, READ_INDEX_SLOT);
        this.#readSeen = read;
        if (ready()) return true;
        if (this.closed) return false;
        const remaining = deadline - performance.now();
        if (remaining <= 0) return false;
        await waitForChange(this.#i32, READ_INDEX_SLOT, read, remaining);
      }
    } finally {
      Atomics.sub(this.#i32, SPACE_WAITERS_SLOT, 1);
    }
  }

  // ---- consumer ------------------------------------------------------------------------------

  /**
   * The oldest unreleased record's payload, viewed in place (8-byte aligned within `buffer`), or
   * null when the queue is empty. The view stays valid until release(); afterwards the producer may
   * overwrite it.
   */
  peek(): Uint8Array | null {
    for (;;) {
      const read = this.#read;
      if (read === this.#writeSeen) {
        // Producer-only slot; observing a newer value makes the records before it visible.
        this.#writeSeen = Atomics.load(this.#i32, WRITE_INDEX_SLOT);
        if (read === this.#writeSeen) return null;
      }
      const offset = read < this.capacity ? read : read - this.capacity;
      const field = (HEADER_BYTES + offset) >> 2;
      const length = this.#i32[field + RECORD_LENGTH_FIELD] ?? WRAP_MARKER;
      if (length === WRAP_MARKER) {
        this.#advanceRead((read + this.capacity - offset) % this.#span);
        continue;
      }
      if (length < 0 || offset + RECORD_HEADER_BYTES + length > this.capacity) {
        throw new SabQueueError(
          SabQueueErrorCode.INTERNAL,
          `corrupt record length ${length} at offset ${offset}`,
        );
      }
      const seq = this.#i32[field + RECORD_SEQ_FIELD];
      if (seq !== this.#releaseSeq) {
        throw new SabQueueError(
          SabQueueErrorCode.INTERNAL,
          `record out of sequence: expected #${this.#releaseSeq}, found #${String(seq)} ` +
            '(is more than one instance producing or consuming?)',
        );
      }
      this.#peeked = (read + RECORD_HEADER_BYTES + alignRecord(length)) % this.#span;
      const at = HEADER_BYTES + offset + RECORD_HEADER_BYTES;
      return this.#u8.subarray(at, at + length);
    }
  }

  /**
   * Records released so far by consumers of this queue (all instances). The n-th record ever
   * pushed is released as number n, so a consumer can number what it takes.
   */
  get releasedCount(): number {
    return this.#releaseSeq;
  }

  /**
   * Takes over the consumer role after the previous consumer thread died. release() stores
   * RELEASE_SEQ before READ_INDEX; a thread terminated between the two leaves the oldest
   * record counted as released but still queued. Finish that release, so the count and the
   * queue agree again. Call once, before the first peek() of the new consumer.
   */
  recoverConsumer(): void {
    const read = this.#read;
    if (read === Atomics.load(this.#i32, WRITE_INDEX_SLOT)) return;
    const offset = read < this.capacity ? read : read - this.capacity;
    const field = (HEADER_BYTES + offset) >> 2;
    let length = this.#i32[field + RECORD_LENGTH_FIELD] ?? WRAP_MARKER;
    let at = read;
    if (length === WRAP_MARKER) {
      at = (read + this.capacity - offset) % this.#span;
      if (at === Atomics.load(this.#i32, WRITE_INDEX_SLOT)) return;
      length = this.#i32[(HEADER_BYTES >> 2) + RECORD_LENGTH_FIELD] ?? 0;
    }
    const atOffset = at < this.capacity ? at : at - this.capacity;
    const seq = this.#i32[((HEADER_BYTES + atOffset) >> 2) + RECORD_SEQ_FIELD];
    if (seq === ((this.#releaseSeq - 1) | 0)) {
      this.#advanceRead((at + RECORD_HEADER_BYTES + alignRecord(length)) % this.#span);
    }
  }

  /** Frees the oldest record (the one peek() returns); its view must not be used afterwards. */
  release(): void {
    if (this.#peeked === NONE && this.peek() === null) {
      throw new SabQueueError(SabQueueErrorCode.INTERNAL, 'release() called on an empty queue');
    }
    const next = this.#peeked;
    this.#peeked = NONE;
    this.#releaseSeq = (this.#releaseSeq + 1) | 0;
    // Plain store: only attach() reads it, through the READ_INDEX store in #advanceRead.
    this.#i32[RELEASE_SEQ_SLOT] = this.#releaseSeq;
    this.#advanceRead(next);
  }

  /**
   * Resolves true as soon as a record is available, false after `timeoutMs` or once the queue is
   * closed and drained (check `closed` to tell the two apart).
   */
  async waitForData(timeoutMs = Infinity): Promise<boolean> {
    checkTimeout(timeoutMs);
    if (this.peek() !== null) return true;
    const deadline = performance.now() + timeoutMs;
    // Announce the wait before re-reading WRITE_INDEX; pairs with the producer's load in commit().
    Atomics.add(this.#i32, DATA_WAITERS_SLOT, 1);
    try {
      for (;;) {
        // Producer-only slot, loaded before peek() so that anything published after this load
        // changes the value waitAsync compares against and the wait returns at once.
        const write = Atomics.load(this.#i32, WRITE_INDEX_SLOT);
        if (this.peek() !== null) return true;
        if (this.closed) {
          // The producer's last commit precedes its close(); having seen CLOSED, one more peek
          // is guaranteed to see that record.
          return this.peek() !== null;
        }
        const remaining = deadline - performance.now();
        if (remaining <= 0) return false;
        await waitForChange(this.#i32, WRITE_INDEX_SLOT, write, remaining);
      }
    } finally {
      Atomics.sub(this.#i32, DATA_WAITERS_SLOT, 1);
    }
  }

  // ---- both ----------------------------------------------------------------------------------

  /**
   * Marks the queue closed for every thread and wakes all waiters. Pushes throw from then on; the
   * consumer can still drain what was committed before.
   */
  close(): void {
    // Any thread may store 1 here; it never goes back to 0. The notifies come after the store so
    // a woken waiter sees the flag (waiters that enqueue later catch it in waitForChange()).
    Atomics.store(this.#i32, CLOSED_SLOT, 1);
    Atomics.notify(this.#i32, WRITE_INDEX_SLOT);
    Atomics.notify(this.#i32, READ_INDEX_SLOT);
  }

  // ---- internals -----------------------------------------------------------------------------

  /** Byte offset in `buffer` of the reserved payload, or NONE when there is no room now. */
  #reserve(length: number): number {
    this.#checkLength(length);
    this.#pending = NONE;
    this.#throwIfClosed();
    const needed = this.#bytesNeeded(length);
    if (!this.#hasRoom(needed)) return NONE;
    const write = this.#write;
    const offset = write < this.capacity ? write : write - this.capacity;
    let start = offset;
    if (needed > RECORD_HEADER_BYTES + alignRecord(length)) {
      // Plain store into free space: published together with the record by commit().
      this.#i32[(HEADER_BYTES + offset) >> 2] = WRAP_MARKER;
      start = 0;
    }
    const field = (HEADER_BYTES + start) >> 2;
    this.#i32[field + RECORD_LENGTH_FIELD] = length;
    this.#i32[field + RECORD_SEQ_FIELD] = this.#pushSeq;
    this.#pending = (write + needed) % this.#span;
    return HEADER_BYTES + start + RECORD_HEADER_BYTES;
  }

  /**
   * Ring bytes a `length`-byte record takes at the current write position: its size, plus the rest
   * of the lap (covered by a wrap marker) when it does not fit there.
   */
  #bytesNeeded(length: number): number {
    const size = RECORD_HEADER_BYTES + alignRecord(length);
    const offset = this.#write < this.capacity ? this.#write : this.#write - this.capacity;
    const tail = this.capacity - offset;
    if (size > tail) return tail + size;
    // Early wrap: past the warm zone, an empty queue starts over at offset 0, so a consumer that
    // keeps up cycles through the same few megabytes instead of faulting in the whole ring (a
    // first touch of shared memory costs more than the copy into it). Empty means the consumer
    // released everything written: all of the next lap is free, so skipping the rest of this one
    // is safe. The marker goes into free space like any wrap marker.
    if (offset + size > WARM_BYTES && offset >= size && this.#isDrained()) return tail + size;
    return size;
  }

  /** True when the consumer has released every record written (refreshes the cached read index). */
  #isDrained(): boolean {
    this.#readSeen = Atomics.load(this.#i32, READ_INDEX_SLOT);
    return this.#readSeen === this.#write;
  }

  /** Whether `needed` bytes are free, judged by the cached READ_INDEX and reloading it only if short. */
  #hasRoom(needed: number): boolean {
    if (this.capacity - this.#distance(this.#write, this.#readSeen) >= needed) return true;
    // Consumer-only slot. It is stored after the consumer finished reading the bytes it frees, so
    // overwriting them after this load cannot race with those reads.
    this.#readSeen = Atomics.load(this.#i32, READ_INDEX_SLOT);
    return this.capacity - this.#distance(this.#write, this.#readSeen) >= needed;
  }

  #advanceRead(next: number): void {
    this.#read = next;
    // Consumer-only slot. All reads of the freed bytes happened before this seq-cst store; the
    // producer reuses them only after an Atomics.load that returns this value or a later one.
    Atomics.store(this.#i32, READ_INDEX_SLOT, next);
    // SPACE_WAITERS is raised by a producer before it re-reads READ_INDEX and parks; see commit().
    if (Atomics.load(this.#i32, SPACE_WAITERS_SLOT) !== 0) Atomics.notify(this.#i32, READ_INDEX_SLOT);
  }

  /** Occupied bytes between two positions: `(write - read) mod 2 * capacity`, always <= capacity. */
  #distance(write: number, read: number): number {
    return write >= read ? write - read : write - read + this.#span;
  }

  #checkLength(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.maxRecordBytes) {
      throw new RangeError(
        `length must be an integer between 0 and maxRecordBytes (${this.maxRecordBytes}), got ${String(length)}`,
      );
    }
  }

  #throwIfClosed(): void {
    // Read-mostly slot on its own line, so checking it on every push costs a cache hit.
    if (Atomics.load(this.#i32, CLOSED_SLOT) !== 0) {
      throw new SabQueueError(SabQueueErrorCode.CLOSED, 'the SabQueue is closed');
    }
  }
}

function checkTimeout(timeoutMs: number): void {
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) {
    throw new RangeError(`timeoutMs must be a non-negative number of milliseconds, got ${String(timeoutMs)}`);
  }
}
