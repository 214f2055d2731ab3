/**
 * Shared-memory layout of a SabQueue. Every index into the header and every record field is named
 * here; no other module uses a raw slot number.
 *
 * ```
 * byte 0     line 0  MAGIC VERSION CAPACITY CLOSED        read-mostly, written once (CLOSED: once more)
 * byte 128   line 1  WRITE_INDEX PUSH_SEQ                 written by the producer only
 * byte 256   line 2  READ_INDEX RELEASE_SEQ               written by the consumer only
 * byte 384   line 3  DATA_WAITERS                         written by a waiting consumer, read by the producer
 * byte 512   line 4  SPACE_WAITERS                        written by a waiting producer, read by the consumer
 * byte 640   data region: `capacity` bytes of records
 * ```
 *
 * Slots written by different threads sit on different 128-byte lines: 64-byte cache lines are fetched
 * in adjacent pairs by common x86 prefetchers, so 128 bytes is the distance that avoids false sharing
 * between the producer's and the consumer's hot slots.
 */

/** `'SLQ1'` in ASCII: tells attach() that a SharedArrayBuffer really holds a queue. */
export const QUEUE_MAGIC = 0x53_4c_51_31;
/** Bumped whenever the layout below changes incompatibly. */
export const LAYOUT_VERSION = 1;

const SLOTS_PER_LINE = 32; // 128 bytes of Int32

export const MAGIC_SLOT = 0;
export const VERSION_SLOT = 1;
/** Data-region size in bytes, so attach() needs nothing but the buffer. */
export const CAPACITY_SLOT = 2;
/** 0 while open, 1 once close() ran on any thread. */
export const CLOSED_SLOT = 3;

/** Position (see sab-queue.ts) just past the last committed record. */
export const WRITE_INDEX_SLOT = SLOTS_PER_LINE;
/** Sequence number the next committed record will carry; lets a later attach() resume producing. */
export const PUSH_SEQ_SLOT = SLOTS_PER_LINE + 1;

/** Position of the oldest unreleased record (or wrap marker). */
export const READ_INDEX_SLOT = 2 * SLOTS_PER_LINE;
/** Sequence number the consumer expects in the next record it peeks. */
export const RELEASE_SEQ_SLOT = 2 * SLOTS_PER_LINE + 1;

/** Number of consumer waits parked on WRITE_INDEX; the producer only notifies when non-zero. */
export const DATA_WAITERS_SLOT = 3 * SLOTS_PER_LINE;
/** Number of producer waits parked on READ_INDEX; the consumer only notifies when non-zero. */
export const SPACE_WAITERS_SLOT = 4 * SLOTS_PER_LINE;

/** Bytes before the data region; a multiple of 8 so record offsets stay 8-byte aligned in the SAB. */
export const HEADER_BYTES = 5 * SLOTS_PER_LINE * Int32Array.BYTES_PER_ELEMENT;

/** Every record, marker and payload starts at a multiple of this many bytes. */
export const RECORD_ALIGN = 8;
/** A record is `[length: int32, seq: int32]` followed by the payload padded to RECORD_ALIGN. */
export const RECORD_HEADER_BYTES = 8;
/** Int32 offset of the payload length inside a record header. */
export const RECORD_LENGTH_FIELD = 0;
/** Int32 offset of the record sequence number inside a record header. */
export const RECORD_SEQ_FIELD = 1;
/** A length field holding this value means "nothing more on this lap, continue at offset 0". */
export const WRAP_MARKER = -1;

/** Smallest data region create() accepts (leaves room for a 24-byte payload). */
export const MIN_CAPACITY = 64;
/**
 * Largest data region: positions run over [0, 2 * capacity) and must fit a non-negative Int32,
 * because Atomics.wait/waitAsync only work on Int32Array (and BigInt64Array, which is slower).
 */
export const MAX_CAPACITY = 2 ** 30;

/** Rounds `n` up to the next multiple of RECORD_ALIGN. */
export function alignRecord(n: number): number {
  return (n + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1);
}

/** Largest payload that always fits once the consumer has drained the queue (see SabQueue.maxRecordBytes). */
export function maxRecordBytesFor(capacity: number): number {
  return Math.floor(capacity / 2 / RECORD_ALIGN) * RECORD_ALIGN - RECORD_HEADER_BYTES;
}
