import type { TableSchema } from '../schema.js';
import { align8 } from '../batch-format.js';

/**
 * Memtable shared-memory layout: one SharedArrayBuffer per memtable, rebuilt on any thread
 * from (buffer, schema) alone. The header (Int32 words) records everything else:
 */
export const MT_MAGIC = 0x544d4c53; // 'SLMT'
export const MT_VERSION = 1;
export const MH_MAGIC = 0;
export const MH_VERSION = 1;
export const MH_CAPACITY = 2;
export const MH_INDEX_SLOTS = 3;
export const MH_COLUMNS = 4;
export const MH_GENERATION = 5;
export const MH_SHARD = 6;
/**
 * Reader pins: readers on any thread add 1 while they hold a captured memtable; the broker
 * recycles a retired memtable's buffer only after swapping 0 for PINS_RECLAIMED (see Memtable).
 */
export const MH_PINS = 7;
export const PINS_RECLAIMED = -(1 << 30);
/** Words 16 + c: utf8 byte capacity of column c (0 for other kinds). */
export const MH_UTF8_CAP = 16;

/**
 * Regions, in order, each 8-byte aligned:
 *   seq    Float64[cap]  global write sequence of each row's put (rows are in sequence order)
 *   op     Uint8[cap]    OP_PUT | OP_DELETE
 *   hash   Uint32[cap]   key hash
 *   prev   Int32[cap]    previous row with the same key in this memtable, -1 if none
 *   index  Int32[slots]  open-addressing hash index: 0 = empty, else (newest row of a key) + 1
 *   per column: validity bitmap[cap bits], values (Arrow layout), utf8: offsets Int32[cap+1] + bytes
 * Rows are written by the shard thread only, and each row is fully written before it becomes
 * reachable (index slot store) or visible (row count published in the shard control block).
 */
export interface ColumnRegion {
  readonly validity: number;
  readonly values: number;
  readonly data: number;
  readonly dataCapacity: number;
}

export interface MemtableLayout {
  readonly capacity: number;
  readonly indexSlots: number;
  readonly header: number;
  readonly seq: number;
  readonly op: number;
  readonly hash: number;
  readonly prev: number;
  readonly index: number;
  readonly columns: readonly ColumnRegion[];
  readonly totalBytes: number;
}

export function indexSlotsFor(capacity: number): number {
  let slots = 16;
  while (slots < capacity * 2) slots *= 2;
  return slots;
}

export function memtableLayout(
  schema: TableSchema,
  capacity: number,
  utf8Capacity: readonly number[],
): MemtableLayout {
  const indexSlots = indexSlotsFor(capacity);
  let off = align8(4 * (MH_UTF8_CAP + schema.columns.length));
  const header = off;
  const seq = off;
  off += 8 * capacity;
  const op = off;
  off = align8(off + capacity);
  const hash = off;
  off = align8(off + 4 * capacity);
  const prev = off;
  off = align8(off + 4 * capacity);
  const index = off;
  off = align8(off + 4 * indexSlots);
  const bitmap = align8((capacity + 7) >> 3);
  const columns = schema.columns.map((c): ColumnRegion => {
    const validity = off;
    off += bitmap;
    const values = off;
    let data = 0;
    let dataCapacity = 0;
    switch (c.kind) {
      case 'bool':
        off += bitmap;
        break;
      case 'utf8':
        off += align8(4 * (capacity + 1));
        data = off;
        dataCapacity = align8(utf8Capacity[c.index] ?? 0);
        off += dataCapacity;
        break;
      default:
        off += align8(c.width * capacity);
    }
    return { validity, values, data, dataCapacity };
  });
  return { capacity, indexSlots, header, seq, op, hash, prev, index, columns, totalBytes: off };
}

/** Fixed bytes one row costs in a memtable, besides its utf8 bytes. */
export function fixedRowBytes(schema: TableSchema): number {
  let n = 8 + 1 + 4 + 4 + 8; // seq, op, hash, prev, two index slots
  for (const c of schema.columns) {
    n += 0.125;
    if (c.kind === 'bool') n += 0.125;
    else if (c.kind === 'utf8') n += 4;
    else n += c.width;
  }
  return n;
}

/**
 * Chooses a row capacity and per-column utf8 capacities so the memtable takes about
 * `targetBytes`, given the average utf8 bytes per row seen so far for each column.
 */
export function planMemtable(
  schema: TableSchema,
  targetBytes: number,
  avgUtf8: readonly number[],
): { capacity: number; utf8Capacity: number[] } {
  let perRow = fixedRowBytes(schema);
  for (const c of schema.columns) if (c.kind === 'utf8') perRow += Math.max(1, avgUtf8[c.index] ?? 16);
  const capacity = Math.max(64, Math.floor(targetBytes / perRow));
  const utf8Capacity = schema.columns.map((c) =>
    c.kind === 'utf8' ? Math.max(1024, Math.ceil(capacity * Math.max(1, avgUtf8[c.index] ?? 16) * 1.25)) : 0,
  );
  return { capacity, utf8Capacity };
}
