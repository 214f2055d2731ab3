import { ErrorCode, SluiceError, ioError } from '@sluice/protocol';
import type { AppendFile, Storage } from '../storage/storage.js';
import { WAL_HEADER_BYTES, WAL_MAX_PAYLOAD, encodeRecordInto } from './wal-record.js';
import type { WalSegment } from './wal-segments.js';
import { listSegments, segmentPath } from './wal-segments.js';

interface ClosedSegment extends WalSegment {
  readonly bytes: number;
}

/** Bytes of one slab of record memory; larger records get a buffer of their own. */
const SLAB_BYTES = 1 << 20;
/** Slabs kept for reuse: a few group commits' worth of records. */
const SPARE_SLABS = 4;

/**
 * The write-ahead log of one shard. `append` is synchronous and only queues bytes;
 * `writePending` hands them to the OS in one write; `sync` makes them durable. A
 * group-commit loop calls `sync` one at a time and acknowledges every LSN up to
 * `syncedLsn` when it resolves.
 *
 * Failure is final: after any failed write, fsync or segment switch, every later call
 * throws the same SLUICE_IO error. After a failed fsync the kernel may already have
 * dropped the dirty pages and cleared the error, so a retry could report durability that
 * does not exist; and a failed write can leave a partial record. The shard must be
 * reopened: replay cuts the log at the last valid record and a new writer starts there.
 *
 * @example
 * ```ts
 * const { lastLsn } = await replayWal(storage, 'shard-000', manifest.replayFromLsn, apply);
 * const wal = await WalWriter.open(storage, 'shard-000', lastLsn + 1);
 * const lsn = wal.append(encodedBatch);
 * await wal.sync(); // lsn is durable
 * ```
 */
export class WalWriter {
  readonly #storage: Storage;
  readonly #shardPrefix: string;
  #file: AppendFile;
  #segmentStart: number;
  #segmentPath: string;
  /** Closed segments still on storage, oldest first; all start before #segmentStart. */
  readonly #closed: ClosedSegment[];
  #queue: Buffer[] = [];
  /**
   * Record memory (see #recordBuffer): slabs holding queued records, the last one being filled
   * (#slabUsed bytes of it taken), and spares.
   */
  #slabsQueued: Buffer[] = [];
  #slabUsed = 0;
  readonly #spareSlabs: Buffer[] = [];
  #nextLsn: number;
  /** Last LSN handed to the OS (written to a segment file). */
  #writtenLsn: number;
  /** Last LSN known durable. */
  #syncedLsn: number;
  #bytes: number;
  #failure: SluiceError | undefined;
  #closing = false;
  readonly #writes = new SerialQueue();
  readonly #syncs = new SerialQueue();
  readonly #deletes = new SerialQueue();

  private constructor(
    storage: Storage,
    shardPrefix: string,
    file: AppendFile,
    nextLsn: number,
    closed: ClosedSegment[],
  ) {
    this.#storage = storage;
    this.#shardPrefix = shardPrefix;
    this.#file = file;
    this.#segmentStart = nextLsn;
    this.#segmentPath = segmentPath(shardPrefix, nextLsn);
    this.#closed = closed;
    this.#nextLsn = nextLsn;
    this.#writtenLsn = nextLsn - 1;
    this.#syncedLsn = nextLsn - 1;
    this.#bytes = closed.reduce((sum, s) => sum + s.bytes, 0);
  }

  /**
   * Opens the shard's WAL for writing at `nextLsn`, which must be `replayWal(...).lastLsn + 1`.
   * Always starts a new segment: a crashed writer's segments are never appended to, since
   * their tails may be torn. Only an empty segment of that exact name is reused (a writer
   * that crashed right after creating it).
   */
  static async open(storage: Storage, shardPrefix: string, nextLsn: number): Promise<WalWriter> {
    if (!Number.isSafeInteger(nextLsn) || nextLsn < 1) {
      throw new RangeError(`nextLsn must be a positive safe integer, got ${nextLsn}`);
    }
    const closed: ClosedSegment[] = [];
    for (const segment of await listSegments(storage, shardPrefix)) {
      const bytes = (await storage.size(segment.path)) ?? 0;
      if (segment.start < nextLsn) {
        closed.push({ ...segment, bytes });
      } else if (segment.start > nextLsn || bytes > 0) {
        // Records at or after nextLsn already exist: appending would fork the log. This means
        // replay did not run, or ran with repair disabled, before opening the writer.
        throw new SluiceError(
          ErrorCode.INTERNAL,
          `cannot open WAL at LSN ${nextLsn}: segment ${segment.path} (${bytes} bytes) is in the way; ` +
            'replayWal with repair must run first',
          { details: { path: segment.path } },
        );
      }
    }
    const path = segmentPath(shardPrefix, nextLsn);
    const file = await storage.openAppend(path);
    if (file.size !== 0) {
      await file.close();
      throw new SluiceError(ErrorCode.INTERNAL, `new WAL segment ${path} is not empty`, {
        details: { path },
      });
    }
    return new WalWriter(storage, shardPrefix, file, nextLsn, closed);
  }

  /** Last LSN assigned by `append` (not necessarily durable). */
  get lastLsn(): number {
    return this.#nextLsn - 1;
  }

  /** The LSN the next `append` will return. */
  get nextLsn(): number {
    return this.#nextLsn;
  }

  /** Last LSN known durable: everything up to it survives power loss. */
  get syncedLsn(): number {
    return this.#syncedLsn;
  }

  /** Bytes of all live segments, counting appended records that are still queued. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Assigns the next LSN to `payload` and queues its record. The payload is copied before
   * this returns, so the caller may reuse or release its memory at once.
   */
  append(payload: Uint8Array | readonly Uint8Array[]): number {
    this.#check();
    const parts: readonly Uint8Array[] = payload instanceof Uint8Array ? [payload] : payload;
    let length = 0;
    for (const part of parts) length += part.byteLength;
    if (length > WAL_MAX_PAYLOAD) {
      throw new RangeError(`WAL payload must be at most ${WAL_MAX_PAYLOAD} bytes, got ${length}`);
    }
    const lsn = this.#nextLsn;
    const record = encodeRecordInto(this.#recordBuffer(WAL_HEADER_BYTES + length), lsn, parts, length);
    this.#queue.push(record);
    this.#nextLsn = lsn + 1;
    this.#bytes += record.byteLength;
    return lsn;
  }

  /** Writes every queued record with one write call. Concurrent calls run one after another. */
  writePending(): Promise<void> {
    return this.#writes.run(() => this.#writeQueued());
  }

  /**
   * Resolves when every record appended before the call is durable. Records appended while
   * a sync runs are coalesced into the next one.
   */
  async sync(): Promise<void> {
    this.#check();
    const target = this.#nextLsn - 1;
    if (target <= this.#syncedLsn) return;
    await this.#syncs.run(async () => {
      // An earlier sync (or a rotation) may already have covered this call's records.
      if (target <= this.#syncedLsn) return;
      await this.#writes.run(() => this.#writeQueued());
      // Everything written so far went to this file: rotation cannot run while the sync
      // lock is held, and writes that land during the fdatasync only make it cover more.
      const covered = this.#writtenLsn;
      await this.#guard(() => this.#file.sync());
      this.#syncedLsn = Math.max(this.#syncedLsn, covered);
    });
  }

  /**
   * Closes the current segment after making it durable, and starts a new one at the next
   * unwritten LSN. Does nothing while the current segment is empty.
   */
  async rotate(): Promise<void> {
    this.#check();
    // Sync lock first, then write lock (the order `sync` uses): no fdatasync or write may
    // run against the file being closed.
    await this.#syncs.run(() =>
      this.#writes.run(async () => {
        await this.#writeQueued();
        if (this.#file.size === 0) return;
        const old = this.#file;
        // The old segment must be durable before it is closed: later syncs only reach the new file.
        await this.#guard(() => old.sync());
        this.#syncedLsn = this.#writtenLsn;
        await this.#guard(() => old.close());
        const start = this.#writtenLsn + 1;
        const path = segmentPath(this.#shardPrefix, start);
        // openAppend fsyncs the directory when it creates the file, so the new segment's
        // name is durable before any record in it can be acknowledged.
        const file = await this.#guard(() => this.#storage.openAppend(path));
        if (file.size !== 0) {
          await file.close().catch(() => undefined);
          this.#fail(new SluiceError(ErrorCode.INTERNAL, `new WAL segment ${path} is not empty`));
        }
        // Published in one synchronous step so deleteSegmentsBefore never sees the old
        // segment in #closed while #segmentStart still names it.
        this.#closed.push({ start: this.#segmentStart, path: this.#segmentPath, bytes: old.size });
        this.#segmentStart = start;
        this.#segmentPath = path;
        this.#file = file;
      }),
    );
  }

  /**
   * Deletes closed segments all of whose records have LSN < `lsn` (the manifest's replay
   * cursor), oldest first, so a crash in between leaves a contiguous suffix of the log.
   * Never deletes the current segment. Returns how many segments were deleted.
   */
  deleteSegmentsBefore(lsn: number): Promise<number> {
    return this.#deletes.run(async () => {
      let deleted = 0;
      for (;;) {
        const oldest = this.#closed[0];
        if (oldest === undefined) break;
        // A segment's last LSN is one below the next segment's start.
        const nextStart = this.#closed[1]?.start ?? this.#segmentStart;
        if (nextStart > lsn) break;
        await this.#storage.delete(oldest.path);
        this.#closed.shift();
        this.#bytes -= oldest.bytes;
        deleted++;
      }
      return deleted;
    });
  }

  /**
   * Writes and syncs everything appended, then releases the segment. Appends after close
   * has been called fail with SLUICE_CLOSED. Throws the writer's failure if it had one, as
   * records appended since the last successful sync may not be durable.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#syncs.run(() => this.#throwIfFailed());
    this.#closing = true;
    return this.#syncs.run(() =>
      this.#writes.run(async () => {
        let error = this.#failure;
        if (error === undefined) {
          try {
            await this.#writeQueued();
            // close() promises durability of everything appended; closing an fd does not flush.
            await this.#file.sync();
            this.#syncedLsn = this.#writtenLsn;
          } catch (err) {
            error = ioError('close', this.#segmentPath, err);
            this.#failure = error;
          }
        }
        await this.#file.close().catch((err: unknown) => {
          error ??= ioError('close', this.#segmentPath, err);
        });
        if (error !== undefined) throw error;
      }),
    );
  }

  /**
   * Memory for one record. Records are carved from reused slabs rather than allocated one
   * by one: a fresh buffer per record is fresh memory (the thread allocates little else, so
   * garbage collection rarely hands memory back for reuse), and first-touching its pages
   * can cost more than copying the record in. A slab goes back to the spares once the write
   * that carries its records has returned (storage keeps no reference to written chunks).
   */
  #recordBuffer(bytes: number): Buffer {
    if (bytes > SLAB_BYTES) return Buffer.allocUnsafe(bytes);
    let slab = this.#slabsQueued.at(-1);
    if (slab === undefined || this.#slabUsed + bytes > SLAB_BYTES) {
      slab = this.#spareSlabs.pop() ?? Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.#slabsQueued.push(slab);
      this.#slabUsed = 0;
    }
    const at = this.#slabUsed;
    this.#slabUsed += bytes;
    return slab.subarray(at, at + bytes);
  }

  /** Runs under the write lock. */
  async #writeQueued(): Promise<void> {
    this.#throwIfFailed();
    if (this.#queue.length === 0) return;
    const chunks = this.#queue;
    // `append` is synchronous, so no record can arrive between taking the queue and
    // reading nextLsn: `last` is exactly the LSN of the last record in `chunks`.
    const last = this.#nextLsn - 1;
    this.#queue = [];
    // The slabs behind these records are sealed (a new list, so later records go to another
    // slab): once the write returns nothing in them is still needed.
    const slabs = this.#slabsQueued;
    this.#slabsQueued = [];
    try {
      await this.#guard(() => this.#file.write(chunks));
    } finally {
      for (const s of slabs) if (this.#spareSlabs.length < SPARE_SLABS) this.#spareSlabs.push(s);
    }
    this.#writtenLsn = last;
  }

  /** Runs a storage step; on failure the writer becomes permanently failed. */
  async #guard<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (err) {
      this.#fail(ioError('wal', this.#segmentPath, err));
    }
  }

  #fail(error: SluiceError): never {
    this.#failure ??= error;
    throw this.#failure;
  }

  #throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #check(): void {
    this.#throwIfFailed();
    if (this.#closing) {
      throw new SluiceError(ErrorCode.CLOSED, `WAL of ${this.#shardPrefix} is closed`, {
        details: { path: this.#shardPrefix },
      });
    }
  }
}

/** Runs async steps one at a time, in call order; a failed step does not block later ones. */
class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(step: () => Promise<T> | T): Promise<T> {
    const result = this.#tail.then(step);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}
