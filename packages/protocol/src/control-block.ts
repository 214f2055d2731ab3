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
/** Count of queue records applied and acknowledged-ready (durable in 'sync' mode); the shard writes it, the broker waits on it. */
export const CB_DONE = 6;
/** Shard lifecycle, see ShardState; the shard writes it. */
export const CB_STATE = 7;
/** Count of queue records whose WAL bytes are fsynced (equals CB_DONE in 'sync' mode). */
export const CB_SYNCED = 8;
/** Stall counter: times the shard waited for a spare memtable. */
export const CB_STALLS = 9;
/** WAL bytes of live segments, in KiB (an Int32 slot holds up to 2 TiB this way); the shard writes it. */
export const CB_WAL_KIB = 10;
/** Count of WAL fsyncs; the shard writes it. */
export const CB_SYNCS = 11;
export const CB_FROZEN_BASE = 16;
export const CB_MAX_FROZEN = 32;
/** Frozen entry i: gen at CB_FROZEN_BASE + 2i, row count at CB_FROZEN_BASE + 2i + 1 (oldest first). */
export const CB_WORDS = CB_FROZEN_BASE + 2 * CB_MAX_FROZEN;

export const ShardState = {
  STARTING: 0,
  RUNNING: 1,
  FAILED: 2,
  CLOSED: 3,
} as const;

/**
 * Slots of the table-wide control block (BigInt64Array): the global write sequence.
 * GB_VISIBLE is the highest put sequence S such that every put <= S is applied (and durable in
 * 'sync' mode) on every shard it touches; only the broker writes it. Readers take it as their
 * snapshot: rows of puts above it are not yet visible, so no reader sees half of a put.
 */
export const GB_VISIBLE = 0;
export const GB_WORDS = 4;
