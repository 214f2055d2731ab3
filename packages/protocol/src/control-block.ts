/**
 * Slots of the per-shard control block: an Int32Array over a SharedArrayBuffer that the main
 * thread allocates, the shard thread and the broker write, and every reader reads. Every
 * access outside this file names a slot constant, never a raw index.
 *
 * The published source set (active memtable + row count, frozen memtables + row counts,
 * manifest version) changes only under the writer mutex CB_LOCK and inside a sequence-lock
 * write (CB_SEQ odd while writing). Two threads write it: the shard (publishing rows and
 * freezes) and the broker (retiring a frozen memtable together with the manifest version
 * that now holds its rows). Readers never lock: they retry while CB_SEQ is odd or changed.
 */
export const CB_LOCK = 0;
export const CB_SEQ = 1;
export const CB_ACTIVE_GEN = 2;
export const CB_ACTIVE_ROWS = 3;
export const CB_MANIFEST_VERSION = 4;
export const CB_FROZEN_COUNT = 5;
/** Producers add 1 and notify after committing a record to any of this shard's queues; the idle shard waits on it. */
export const CB_DOORBELL = 6;
/**
 * 1 while the shard's pump is parked (or about to park) on CB_DOORBELL, else 0; only the shard
 * writes it. Producers notify the doorbell only when they see 1.
 */
export const CB_SLEEPING = 14;
/** Shard lifecycle, see ShardState; the shard writes it. */
export const CB_STATE = 7;
/** Error code (index into TERMINAL_ERRORS) once the shard is DEAD; the broker writes it before CB_STATE. */
export const CB_ERROR = 8;
/** Stall counter: times the shard waited for a spare memtable. */
export const CB_STALLS = 9;
/** WAL bytes of live segments, in KiB (an Int32 slot holds up to 2 TiB this way); the shard writes it. */
export const CB_WAL_KIB = 10;
/** Count of WAL fsyncs; the shard writes it (a restarted shard thread goes on from the count it finds). */
export const CB_SYNCS = 11;
/** Total time spent in WAL fsyncs, in microseconds, as two 32-bit halves (lo, hi); the shard writes them. */
export const CB_SYNC_US_LO = 12;
export const CB_SYNC_US_HI = 13;
/** Frozen entry i: gen at CB_FROZEN_BASE + 2i, row count at CB_FROZEN_BASE + 2i + 1 (oldest first). */
export const CB_FROZEN_BASE = 16;
export const CB_MAX_FROZEN = 32;
/**
 * Upper bounds, in microseconds, of the WAL fsync latency histogram; one more bucket counts the
 * syncs slower than the last bound.
 */
export const SYNC_LATENCY_BOUNDS_US: readonly number[] = [
  50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/** The histogram bucket of `value` for ascending upper `bounds`: bounds.length for the overflow bucket. */
export function bucketOf(bounds: readonly number[], value: number): number {
  let b = 0;
  while (b < bounds.length && value > bounds[b]!) b++;
  return b;
}
/**
 * WAL fsync latency histogram: bucket b (per SYNC_LATENCY_BOUNDS_US, then the overflow bucket)
 * at CB_SYNC_HIST + b. Only the shard thread adds to it; the words outlive a shard restart, so
 * they count every sync the shard's threads ever made.
 */
export const CB_SYNC_HIST = CB_FROZEN_BASE + 2 * CB_MAX_FROZEN;
export const CB_WORDS = CB_SYNC_HIST + SYNC_LATENCY_BOUNDS_US.length + 1;

export const ShardState = {
  STARTING: 0,
  RUNNING: 1,
  FAILED: 2,
  CLOSED: 3,
  /** Failed for good (fenced, or restarts exhausted): producers fail every pending record. */
  DEAD: 4,
} as const;

/** Codes a DEAD shard can report through CB_ERROR (an index into this list). */
export const TERMINAL_ERRORS = [
  'SLUICE_INTERNAL',
  'SLUICE_FENCED',
  'SLUICE_SHARD_CRASHED',
  'SLUICE_IO',
  'SLUICE_CLOSED',
] as const;

/**
 * Ack block of one producer queue (Int32Array over its own SharedArrayBuffer). Records of a
 * queue are numbered 1, 2, ... in production order; the shard (any incarnation) writes:
 *  - AK_CONSUMED: records taken off the queue (applied to a memtable, maybe not yet durable);
 *  - AK_DONE: records published (readable, and durable in 'sync' mode): acknowledged;
 *  - AK_LOST: set by a restarted shard to the CONSUMED count it inherits. Records in
 *    (DONE, LOST] were taken by a thread that died: their outcome is unknown. The shard stores
 *    LOST before any later DONE, and producers load DONE before LOST, so a producer that sees
 *    a DONE from the new incarnation also sees its LOST.
 * Producers wait on AK_DONE (the shard notifies it on every publication and on failure).
 */
export const AK_DONE = 0;
export const AK_LOST = 1;
export const AK_CONSUMED = 2;
export const AK_WORDS = 4;

/**
 * Slots of the table-wide control block (BigInt64Array), shared by every thread:
 *  - GB_NEXT: last put sequence handed out (Atomics.add by any producer thread);
 *  - GB_VISIBLE: highest S such that every put <= S is finished on every shard it touches
 *    (advanced by whichever producer completes the put that closes the gap). Readers take it
 *    as their snapshot: rows of later puts are invisible, so no reader sees half of a put;
 *  - GB_UNFLUSHED: unflushed memtable bytes (the broker writes it; producers apply backpressure);
 *  - GB_CLOSED: 1 once the table is closed (the broker writes it; handles fail with SLUICE_CLOSED).
 */
export const GB_NEXT = 0;
export const GB_VISIBLE = 1;
export const GB_UNFLUSHED = 2;
export const GB_CLOSED = 3;
export const GB_WORDS = 8;
/** Completion ring: slot (seq & (RING_SIZE - 1)) holds seq | 0 once put `seq` has finished. */
export const RING_SIZE = 1 << 16;
