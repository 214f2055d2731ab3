import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { BatchView } from '../batch-format.js';
import type { ColumnBuffers, ColumnarView } from '../columnar.js';
import { compareKeys, keysEqual } from '../columnar.js';
import { hashInt64Parts } from '../hash.js';
import type { TableSchema } from '../schema.js';
import {
  MH_CAPACITY,
  MH_COLUMNS,
  MH_GENERATION,
  MH_INDEX_SLOTS,
  MH_MAGIC,
  MH_PINS,
  MH_SHARD,
  MH_UTF8_CAP,
  MH_VERSION,
  MT_MAGIC,
  MT_VERSION,
  PINS_RECLAIMED,
  memtableLayout,
} from './layout.js';
import type { MemtableLayout } from './layout.js';

/**
 * A memtable seen through typed arrays over its SharedArrayBuffer. Constructing one is cheap
 * and works on any thread from (buffer, schema) alone. Readers always pass the row count they
 * captured from the shard control block: rows at or past it may be half written and are never
 * read (except their key and `prev`, which are written before the index slot that reaches them).
 */
export class Memtable {
  readonly buffer: SharedArrayBuffer;
  readonly schema: TableSchema;
  readonly layout: MemtableLayout;
  readonly generation: number;
  readonly shard: number;
  readonly seq: Float64Array;
  readonly op: Uint8Array;
  readonly hash: Uint32Array;
  readonly prev: Int32Array;
  readonly index: Int32Array;
  readonly columns: readonly ColumnBuffers[];
  readonly #header: Int32Array;

  constructor(buffer: SharedArrayBuffer, schema: TableSchema) {
    const h = new Int32Array(buffer, 0, MH_UTF8_CAP + schema.columns.length);
    if (h[MH_MAGIC] !== MT_MAGIC || h[MH_VERSION] !== MT_VERSION || h[MH_COLUMNS] !== schema.columns.length) {
      throw new SluiceError(ErrorCode.INTERNAL, 'buffer is not a memtable of this schema');
    }
    const utf8 = schema.columns.map((c) => h[MH_UTF8_CAP + c.index]!);
    const layout = memtableLayout(schema, h[MH_CAPACITY]!, utf8);
    if (layout.indexSlots !== h[MH_INDEX_SLOTS] || layout.totalBytes > buffer.byteLength) {
      throw new SluiceError(ErrorCode.INTERNAL, 'memtable header does not match its buffer');
    }
    this.buffer = buffer;
    this.#header = h;
    this.schema = schema;
    this.layout = layout;
    this.generation = h[MH_GENERATION]!;
    this.shard = h[MH_SHARD]!;
    const cap = layout.capacity;
    this.seq = new Float64Array(buffer, layout.seq, cap);
    this.op = new Uint8Array(buffer, layout.op, cap);
    this.hash = new Uint32Array(buffer, layout.hash, cap);
    this.prev = new Int32Array(buffer, layout.prev, cap);
    this.index = new Int32Array(buffer, layout.index, layout.indexSlots);
    this.columns = schema.columns.map((c, i) => {
      const r = layout.columns[i]!;
      const validity = new Uint8Array(buffer, r.validity, (cap + 7) >> 3);
      let values: ColumnBuffers['values'];
      let data: Uint8Array | null = null;
      switch (c.kind) {
        case 'i32':
          values = new Int32Array(buffer, r.values, cap);
          break;
        case 'i64':
          values = new Int32Array(buffer, r.values, 2 * cap);
          break;
        case 'f32':
          values = new Float32Array(buffer, r.values, cap);
          break;
        case 'f64':
          values = new Float64Array(buffer, r.values, cap);
          break;
        case 'bool':
          values = new Uint8Array(buffer, r.values, (cap + 7) >> 3);
          break;
        case 'vector':
          values = new Float32Array(buffer, r.values, cap * c.dim);
          break;
        case 'utf8':
          values = new Int32Array(buffer, r.values, cap + 1);
          data = new Uint8Array(buffer, r.data, r.dataCapacity);
          break;
      }
      return { validity, validityOffset: 0, values, valuesOffset: 0, data };
    });
  }

  /** Allocates a zeroed memtable (the main thread does this and hands it to a shard). */
  static allocate(
    schema: TableSchema,
    capacity: number,
    utf8Capacity: readonly number[],
    generation: number,
    shard: number,
  ): Memtable {
    const layout = memtableLayout(schema, capacity, utf8Capacity);
    return Memtable.#init(
      new SharedArrayBuffer(layout.totalBytes),
      schema,
      layout,
      capacity,
      generation,
      shard,
    );
  }

  /**
   * Re-arms the buffer of a retired memtable for a new generation, if it is big enough and no
   * reader holds it; returns undefined otherwise. Page faults on fresh shared memory cost more
   * than the rows written into it, so the broker recycles buffers instead of allocating.
   */
  static recycle(
    old: Memtable,
    capacity: number,
    utf8Capacity: readonly number[],
    generation: number,
    shard: number,
  ): Memtable | undefined {
    const layout = memtableLayout(old.schema, capacity, utf8Capacity);
    if (layout.totalBytes > old.buffer.byteLength) return undefined;
    // One CAS decides between the broker and every reader: pins 0 -> RECLAIMED. A reader that
    // pins afterwards sees a negative count and backs off.
    if (Atomics.compareExchange(old.#header, MH_PINS, 0, PINS_RECLAIMED) !== 0) return undefined;
    new Int32Array(old.buffer, layout.index, layout.indexSlots).fill(0);
    const mt = Memtable.#init(old.buffer, old.schema, layout, capacity, generation, shard);
    // Give back the reclaim without erasing the +1/-1 of readers that tried to pin meanwhile:
    // they see the new generation in the header and retry.
    Atomics.sub(mt.#header, MH_PINS, PINS_RECLAIMED);
    return mt;
  }

  static #init(
    buffer: SharedArrayBuffer,
    schema: TableSchema,
    layout: MemtableLayout,
    capacity: number,
    generation: number,
    shard: number,
  ): Memtable {
    const h = new Int32Array(buffer, 0, MH_UTF8_CAP + schema.columns.length);
    h[MH_MAGIC] = MT_MAGIC;
    h[MH_VERSION] = MT_VERSION;
    h[MH_CAPACITY] = capacity;
    h[MH_INDEX_SLOTS] = layout.indexSlots;
    h[MH_COLUMNS] = schema.columns.length;
    h[MH_GENERATION] = generation;
    h[MH_SHARD] = shard;
    for (const c of schema.columns) h[MH_UTF8_CAP + c.index] = layout.columns[c.index]!.dataCapacity;
    // The header stores above are published to other threads by the postMessage that hands
    // the memtable on, and to readers by the control block that names it.
    Atomics.store(h, MH_GENERATION, generation);
    const mt = new Memtable(buffer, schema);
    for (const c of schema.columns) if (c.kind === 'utf8') (mt.columns[c.index]!.values as Int32Array)[0] = 0;
    return mt;
  }

  /**
   * Holds this memtable against recycling while a reader uses it. False when it was recycled
   * (or is being recycled) into another generation: the reader must capture again.
   */
  pin(): boolean {
    const before = Atomics.add(this.#header, MH_PINS, 1);
    if (before < 0 || Atomics.load(this.#header, MH_GENERATION) !== this.generation) {
      Atomics.sub(this.#header, MH_PINS, 1);
      return false;
    }
    return true;
  }

  unpin(): void {
    Atomics.sub(this.#header, MH_PINS, 1);
  }

  get capacity(): number {
    return this.layout.capacity;
  }

  /**
   * Bytes the first `rows` rows occupy, for reporting memory in use (the buffer's byteLength is
   * what was reserved): the fixed per-row regions (sequence, op, hash, chain, index slots,
   * values, validity), amortised over the capacity, plus the utf8 bytes written. Any thread may
   * ask for a published row count: utf8 offsets up to it were written before it was published.
   */
  usedBytes(rows: number): number {
    const n = Math.max(0, Math.min(rows, this.capacity));
    let utf8 = 0;
    let utf8Capacity = 0;
    for (const c of this.schema.columns) {
      if (c.kind !== 'utf8') continue;
      utf8 += (this.columns[c.index]!.values as Int32Array)[n]!;
      utf8Capacity += this.layout.columns[c.index]!.dataCapacity;
    }
    const fixedPerRow = (this.layout.totalBytes - utf8Capacity) / Math.max(1, this.capacity);
    return Math.round(n * fixedPerRow) + utf8;
  }

  get byteLength(): number {
    return this.buffer.byteLength;
  }

  /** The first `rows` rows as a columnar view (zero copy). */
  view(rows: number): ColumnarView {
    return { rows, op: this.op, columns: this.columns };
  }

  /**
   * The newest row holding the key at `keyRow` of `keyCol` among the first `rows` rows whose
   * put sequence is <= `maxSeq`, or -1. Reads the index slot with Atomics.load: the shard
   * stores a slot only after the row it names (key bytes, hash, prev) is written, so the load
   * makes those writes visible here. A row at or past `rows` is never read beyond its `prev`.
   */
  lookup(hash: number, keyCol: ColumnBuffers, keyRow: number, rows: number, maxSeq = Infinity): number {
    const kind = this.schema.keyKind;
    const mine = this.columns[this.schema.keyIndex]!;
    const mask = this.layout.indexSlots - 1;
    for (let slot = hash & mask; ; slot = (slot + 1) & mask) {
      const v = Atomics.load(this.index, slot);
      if (v === 0) return -1;
      const r = v - 1;
      if (this.hash[r] === hash >>> 0 && keysEqual(kind, mine, r, keyCol, keyRow))
        return this.#newest(r, rows, maxSeq);
    }
  }

  /**
   * Follows a key's version chain from row `r` to the newest row visible at (rows, maxSeq).
   * Rows of a memtable are in apply order, not sequence order (producers on several threads
   * take sequence numbers concurrently), so visibility is checked per row.
   */
  #newest(r: number, rows: number, maxSeq: number): number {
    const prev = this.prev;
    const seq = this.seq;
    while (r >= 0 && (r >= rows || seq[r]! > maxSeq)) r = prev[r]!;
    return r;
  }

  /** Row indexes of the newest visible version of every key (see `lookup`), in ascending row order. */
  latestRows(rows: number, maxSeq = Infinity): Int32Array {
    const steps = this.latestRowsInSteps(rows, maxSeq);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * latestRows, yielding every `step` rows or index slots so that a caller on a busy thread
   * (a scan beside producers and the broker) can let other work run between steps.
   */
  *latestRowsInSteps(rows: number, maxSeq = Infinity, step = 16_384): Generator<void, Int32Array, void> {
    const out = new Int32Array(rows);
    let n = 0;
    const index = this.index;
    if (rows * 4 < index.length) {
      // Few rows in a big index (a young active memtable): probe per row instead of walking
      // every slot. Row r is the newest visible version of its key iff the probe returns r.
      const key = this.columns[this.schema.keyIndex]!;
      const seq = this.seq;
      for (let from = 0; from < rows; from += step) {
        if (from > 0) yield;
        const to = Math.min(rows, from + step);
        for (let r = from; r < to; r++) {
          if (seq[r]! <= maxSeq && this.lookup(this.hash[r]!, key, r, rows, maxSeq) === r) out[n++] = r;
        }
      }
      return out.subarray(0, n);
    }
    for (let from = 0; from < index.length; from += step) {
      if (from > 0) yield;
      const to = Math.min(index.length, from + step);
      for (let slot = from; slot < to; slot++) {
        const v = Atomics.load(index, slot);
        if (v === 0) continue;
        const r = this.#newest(v - 1, rows, maxSeq);
        if (r >= 0) out[n++] = r;
      }
    }
    return out.subarray(0, n).sort();
  }

  /** Newest rows sorted by key (for flushing into a generation file). */
  latestRowsByKey(rows: number): Int32Array {
    const sel = this.latestRows(rows);
    const key = this.columns[this.schema.keyIndex]!;
    const kind = this.schema.keyKind;
    if (kind === 'i64') {
      // Keys are unique here, so sort the keys themselves with the native typed-array sort and
      // find each key's row again through the index: far cheaper than a comparator sort.
      const v = key.values as Int32Array;
      const keys = new BigInt64Array(sel.length);
      const pair = new Int32Array(keys.buffer);
      for (let i = 0; i < sel.length; i++) {
        pair[2 * i] = v[2 * sel[i]!]!;
        pair[2 * i + 1] = v[2 * sel[i]! + 1]!;
      }
      keys.sort();
      const probe: ColumnBuffers = {
        validity: null,
        validityOffset: 0,
        values: pair,
        valuesOffset: 0,
        data: null,
      };
      const out = new Int32Array(sel.length);
      for (let i = 0; i < sel.length; i++) {
        out[i] = this.lookup(hashInt64Parts(pair[2 * i]!, pair[2 * i + 1]!), probe, i, rows);
      }
      return out;
    }
    return Int32Array.from(Array.from(sel).sort((a, b) => compareKeys(kind, key, a, key, b)));
  }
}

/**
 * The shard thread's writing side of a memtable. Holds writer-local state (rows written,
 * utf8 bytes used); only one writer ever exists for a memtable, on its shard's thread.
 */
export class MemtableWriter {
  readonly memtable: Memtable;
  #rows = 0;
  #distinct = 0;
  readonly #utf8Used: Int32Array;
  /** Prefault progress (see prefault): index bytes, rows of the row regions, utf8 bytes per column. */
  #warmIndex = 0;
  #warmRows = 0;
  readonly #warmData: Float64Array;
  #bytes: Uint8Array | undefined;

  constructor(memtable: Memtable) {
    this.memtable = memtable;
    this.#utf8Used = new Int32Array(memtable.schema.columns.length);
    this.#warmData = new Float64Array(memtable.schema.columns.length);
  }

  get rows(): number {
    return this.#rows;
  }

  get distinctKeys(): number {
    return this.#distinct;
  }

  /** Bytes of row data held (fixed part of written rows plus utf8 bytes), for accounting. */
  get usedBytes(): number {
    let n = 0;
    for (let i = 0; i < this.#utf8Used.length; i++) n += this.#utf8Used[i]!;
    return n + this.#rows * (this.memtable.byteLength / Math.max(1, this.memtable.capacity));
  }

  utf8Used(column: number): number {
    return this.#utf8Used[column]!;
  }

  /**
   * Faults in the pages the next rows will be written to, at most `budget` bytes of them, and
   * returns false once the pages ahead are warm (PREFAULT_AHEAD_BYTES of row data past the
   * write cursor, or the end of the memtable). The shard calls it while idle: the first touch
   * of fresh shared memory costs far more than the copy into it, and paying it between records
   * takes it off the path of the next put. Safe because this thread is the only writer and a
   * touch writes back the byte it reads: readers (which read only published rows and any index
   * slot) never see a value change.
   */
  prefault(budget: number): boolean {
    const mt = this.memtable;
    const layout = mt.layout;
    const cap = mt.capacity;
    const u8 = (this.#bytes ??= new Uint8Array(mt.buffer));
    let left = budget;
    // The index is hit at random slots: warm all of it first.
    if (this.#warmIndex < 4 * layout.indexSlots) {
      const end = Math.min(4 * layout.indexSlots, this.#warmIndex + left);
      touch(u8, layout.index + this.#warmIndex, layout.index + end);
      left -= end - this.#warmIndex;
      this.#warmIndex = end;
      if (left <= 0) return true;
    }
    const rowBytes = mt.byteLength / Math.max(1, cap);
    const rows = Math.min(cap, this.#rows + Math.ceil(PREFAULT_AHEAD_BYTES / rowBytes));
    if (rows <= this.#warmRows) return false;
    // Row-proportional regions (seq, op, hash, prev, validity, values, utf8 offsets) up to
    // `to` rows, and each utf8 column's bytes in proportion to its average row so far.
    const to = Math.min(rows, this.#warmRows + Math.max(1, Math.floor(left / rowBytes)));
    const from = this.#warmRows;
    touch(u8, layout.seq + 8 * from, layout.seq + 8 * to);
    touch(u8, layout.op + from, layout.op + to);
    touch(u8, layout.hash + 4 * from, layout.hash + 4 * to);
    touch(u8, layout.prev + 4 * from, layout.prev + 4 * to);
    for (const c of mt.schema.columns) {
      const r = layout.columns[c.index]!;
      touch(u8, r.validity + (from >> 3), r.validity + ((to + 7) >> 3));
      if (c.kind === 'bool') touch(u8, r.values + (from >> 3), r.values + ((to + 7) >> 3));
      else if (c.kind === 'utf8') {
        touch(u8, r.values + 4 * from, r.values + 4 * (to + 1));
        const perRow = this.#rows > 0 ? this.#utf8Used[c.index]! / this.#rows : 64;
        const end = Math.min(r.dataCapacity, Math.ceil(perRow * to));
        const start = this.#warmData[c.index]!;
        if (end > start) {
          touch(u8, r.data + start, r.data + end);
          this.#warmData[c.index] = end;
        }
      } else touch(u8, r.values + c.width * from, r.values + c.width * to);
    }
    this.#warmRows = to;
    return true;
  }

  /**
   * Copies rows [from, ...) of `batch` until the batch ends or this memtable is full; returns
   * the batch row where it stopped. The rows are written but not visible: the shard publishes
   * the new row count in its control block when (and only when) the whole batch is durable.
   */
  append(batch: BatchView, from: number): number {
    const mt = this.memtable;
    const schema = mt.schema;
    const start = this.#rows;
    let k = Math.min(batch.rows - from, mt.capacity - start);
    for (const c of schema.columns) {
      if (c.kind !== 'utf8' || k === 0) continue;
      const offs = batch.columns[c.index]!.values as Int32Array;
      const room = mt.layout.columns[c.index]!.dataCapacity - this.#utf8Used[c.index]!;
      const base = offs[from]!;
      if (offs[from + k]! - base > room) {
        let lo = 0;
        let hi = k;
        while (lo < hi) {
          const mid = (lo + hi + 1) >>> 1;
          if (offs[from + mid]! - base <= room) lo = mid;
          else hi = mid - 1;
        }
        k = lo;
      }
    }
    if (k === 0) return from;
    const end = from + k;
    mt.op.set(batch.op.subarray(from, end), start);
    mt.hash.set(batch.hashes.subarray(from, end), start);
    mt.seq.fill(batch.seq, start, start + k);
    for (const c of schema.columns) {
      const src = batch.columns[c.index]!;
      const dst = mt.columns[c.index]!;
      copyBits(src.validity, from, dst.validity!, start, k);
      switch (c.kind) {
        case 'i32':
        case 'f32':
        case 'f64':
          (dst.values as Float64Array).set((src.values as Float64Array).subarray(from, end), start);
          break;
        case 'i64':
          (dst.values as Int32Array).set((src.values as Int32Array).subarray(2 * from, 2 * end), 2 * start);
          break;
        case 'vector':
          (dst.values as Float32Array).set(
            (src.values as Float32Array).subarray(from * c.dim, end * c.dim),
            start * c.dim,
          );
          break;
        case 'bool':
          copyBits(src.values as Uint8Array, from, dst.values as Uint8Array, start, k);
          break;
        case 'utf8': {
          const so = src.values as Int32Array;
          const dOff = dst.values as Int32Array;
          const used = this.#utf8Used[c.index]!;
          const delta = used - so[from]!;
          for (let i = 1; i <= k; i++) dOff[start + i] = so[from + i]! + delta;
          const len = so[end]! - so[from]!;
          (dst.data as Uint8Array).set((src.data as Uint8Array).subarray(so[from]!, so[end]!), used);
          this.#utf8Used[c.index] = used + len;
          break;
        }
      }
    }
    this.#rows = start + k;
    this.#index(start, start + k);
    return end;
  }

  /** Links rows [a, b) into the hash index; each slot store publishes a fully written row. */
  #index(a: number, b: number): void {
    const mt = this.memtable;
    const kind = mt.schema.keyKind;
    const key = mt.columns[mt.schema.keyIndex]!;
    const index = mt.index;
    const mask = mt.layout.indexSlots - 1;
    const hashes = mt.hash;
    const prev = mt.prev;
    for (let row = a; row < b; row++) {
      const h = hashes[row]!;
      for (let slot = h & mask; ; slot = (slot + 1) & mask) {
        const v = index[slot]!; // only this thread writes the index: a plain read is current
        if (v === 0) {
          prev[row] = -1;
          this.#distinct++;
          Atomics.store(index, slot, row + 1);
          break;
        }
        const r = v - 1;
        if (hashes[r] === h && keysEqual(kind, key, r, key, row)) {
          prev[row] = r;
          // prev[row] is written before the slot names `row`: a reader that loads the slot and
          // finds `row` not yet visible follows prev to the older version it may see.
          Atomics.store(index, slot, row + 1);
          break;
        }
      }
    }
  }
}

/** Copies `n` bits from src (starting at bit `sFrom`; null = all set) to dst at bit `dFrom`. */
/** Row data the shard keeps faulted in ahead of its write cursor while idle. */
export const PREFAULT_AHEAD_BYTES = 4 << 20;
const PAGE = 4096;

/** Writes back one byte of every page in [from, to): the first write faults the page in. */
function touch(u8: Uint8Array, from: number, to: number): void {
  for (let p = from; p < to; p += PAGE) u8[p] = u8[p]!;
  if (to > from) u8[to - 1] = u8[to - 1]!;
}

function copyBits(src: Uint8Array | null, sFrom: number, dst: Uint8Array, dFrom: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = sFrom + i;
    const d = dFrom + i;
    const bit = src === null || (src[s >> 3]! & (1 << (s & 7))) !== 0;
    if (bit) dst[d >> 3]! |= 1 << (d & 7);
    else dst[d >> 3]! &= ~(1 << (d & 7));
  }
}
