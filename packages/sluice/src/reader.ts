import { RecordBatch, Schema, Struct, Table, makeData } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import {
  KeySet,
  OP_DELETE,
  arrowSchemaOf,
  compileFilter,
  gatherToArrow,
  hashInt64Parts,
  hashUtf8String,
  memtableToArrow,
  readControl,
  rowObjectAt,
  shardOfHash,
  utf8At,
} from '@sluice/core';
import type {
  CellValue,
  ColumnBuffers,
  ColumnSpec,
  ColumnarView,
  CompiledFilter,
  GenerationCache,
  GenerationEntry,
  GenerationReader,
  Manifest,
  Memtable,
  Storage,
  TableSchema,
} from '@sluice/core';

export type Row = Record<string, CellValue>;

/** A memtable and the row count a reader may see of it. */
export interface MemtableRows {
  readonly memtable: Memtable;
  readonly rows: number;
}

/**
 * A retired memtable kept readable (see ShardSnapshot.retained). It never changes, so the
 * newest row of each key is worked out by the first scan that reads it and kept here for
 * later scans, which then cost what a loaded file costs.
 */
export interface RetainedMemtable extends MemtableRows {
  latest?: Int32Array;
}

/** One shard's sources as captured: newest first. */
export interface ShardSnapshot {
  readonly memtables: readonly MemtableRows[];
  readonly generations: readonly GenerationEntry[];
  /**
   * Generations whose flushed memtable is still in memory (retired, not yet recycled), pinned
   * with the snapshot: the same rows as the file, already in memory and indexed by key, so
   * reads use it instead of loading the file.
   */
  readonly retained: ReadonlyMap<GenerationEntry, RetainedMemtable> | undefined;
}

export interface Snapshot {
  /** Rows of puts with a higher sequence are invisible in this snapshot. */
  readonly seq: number;
  readonly shards: readonly (ShardSnapshot | undefined)[];
  /** Unpins the captured memtables (they may be recycled afterwards). Idempotent. */
  release(): void;
}

/** Where a thread resolves what a shard control block names. */
export interface ShardSource {
  readonly control: Int32Array;
  memtable(gen: number): Memtable | undefined;
  manifest(version: number): Manifest | undefined;
  /** The retired memtables kept unrecycled (a few, the most recently flushed generations). */
  retained?(): readonly RetainedMemtable[];
}

export interface ReadContext {
  readonly schema: TableSchema;
  readonly storage: Storage;
  readonly cache: GenerationCache;
  readonly shards: readonly ShardSource[];
  visibleSeq(): number;
  /** Takes in announcements of new memtables and manifests (other threads); called before resolving. */
  refresh(): void;
}

const MAX_CAPTURE_ATTEMPTS = 1000;

/** A manifest's generations newest first; manifests are immutable, so once per manifest. */
const newestFirstCache = new WeakMap<Manifest, readonly GenerationEntry[]>();
function newestFirst(manifest: Manifest): readonly GenerationEntry[] {
  let gens = newestFirstCache.get(manifest);
  if (gens === undefined) {
    gens = [...manifest.generations].reverse();
    newestFirstCache.set(manifest, gens);
  }
  return gens;
}

/**
 * Captures a consistent cut of every shard, or of shard `only`.
 *
 * The visible sequence S is loaded first: every put <= S is already published on every shard
 * it touched, so the sources read afterwards hold all of its rows, and rows of later puts are
 * filtered out by their sequence. Per shard, the control block's sequence lock yields the
 * active memtable, the frozen memtables and the manifest version as one state (memtables and
 * manifest together: a retire between them cannot open a hole).
 *
 * A flushed file only holds rows of puts that were visible when it was flushed. If S moved
 * while we captured and some captured file holds rows above our S, the cut is not clean (the
 * file may have replaced older versions our S should see): capture again.
 */
export function captureSnapshot(ctx: ReadContext, only?: number): Snapshot {
  for (let attempt = 0; attempt < MAX_CAPTURE_ATTEMPTS; attempt++) {
    ctx.refresh();
    const seq = ctx.visibleSeq();
    const shards: (ShardSnapshot | undefined)[] = [];
    const retainedMaps: Map<GenerationEntry, RetainedMemtable>[] = [];
    let missing = false;
    let newest = 0;
    for (let s = 0; s < ctx.shards.length && !missing; s++) {
      if (only !== undefined && s !== only) {
        shards.push(undefined);
        continue;
      }
      const src = ctx.shards[s]!;
      const pub = readControl(src.control);
      const memtables: { memtable: Memtable; rows: number }[] = [];
      const gens = [pub.activeGen, ...pub.frozen.map((f) => f.gen).reverse()];
      const rows = [pub.activeRows, ...pub.frozen.map((f) => f.rows).reverse()];
      for (let i = 0; i < gens.length; i++) {
        const memtable = src.memtable(gens[i]!);
        if (!memtable) {
          missing = true;
          break;
        }
        memtables.push({ memtable, rows: rows[i]! });
      }
      const manifest = src.manifest(pub.manifestVersion);
      if (!manifest) missing = true;
      if (missing) break;
      newest = Math.max(newest, manifest!.maxSeq ?? 0);
      const generations = newestFirst(manifest!);
      // Matched from the few kept memtables, not per generation: a capture (every get makes
      // one) stays independent of how many files the shard has. Kept memtables belong to the
      // newest generations, so the search from the newest end stops early.
      let retained: Map<GenerationEntry, RetainedMemtable> | undefined;
      for (const kept of src.retained?.() ?? []) {
        const entry = generations.find((g) => g.gen === kept.memtable.generation);
        if (entry) (retained ??= new Map()).set(entry, kept);
      }
      if (retained) retainedMaps.push(retained);
      shards.push({ memtables, generations, retained });
    }
    if (missing) continue; // an announcement is in flight: refresh and retry
    if (newest > seq && ctx.visibleSeq() !== seq) continue;
    // Pin every captured memtable so the broker cannot recycle its buffer while we read it.
    // A memtable retired and recycled since we read the control block refuses the pin:
    // capture again (its rows are in a file by now).
    const pinned: Memtable[] = [];
    let ok = true;
    for (const sh of shards) {
      for (const m of sh?.memtables ?? []) {
        if (!m.memtable.pin()) {
          ok = false;
          break;
        }
        pinned.push(m.memtable);
      }
      if (!ok) break;
    }
    if (!ok) {
      for (const m of pinned) m.unpin();
      continue;
    }
    // A retained memtable that was recycled meanwhile refuses the pin: read its file instead.
    for (const retained of retainedMaps) {
      for (const [entry, kept] of retained) {
        if (kept.memtable.pin()) pinned.push(kept.memtable);
        else retained.delete(entry);
      }
    }
    let released = false;
    return {
      seq,
      shards,
      release: () => {
        if (released) return;
        released = true;
        for (const m of pinned) m.unpin();
      },
    };
  }
  throw new SluiceError(
    ErrorCode.INTERNAL,
    'could not capture a consistent snapshot (sources kept changing)',
  );
}

/** A primary key as a one-row key column, plus its hash. Validates the key. */
export function keyProbe(
  schema: TableSchema,
  key: unknown,
  where: string,
): { col: ColumnBuffers; hash: number } {
  const name = schema.primaryKey;
  if (schema.keyKind === 'i64') {
    let lo: number;
    let hi: number;
    if (typeof key === 'number' && Number.isSafeInteger(key)) {
      hi = Math.floor(key / 4294967296);
      lo = key - hi * 4294967296;
    } else if (typeof key === 'bigint' && key >= -(2n ** 63n) && key < 2n ** 63n) {
      lo = Number(BigInt.asIntN(32, key));
      hi = Number(BigInt.asIntN(32, key >> 32n));
    } else {
      throw new SluiceError(
        ErrorCode.INVALID_KEY,
        `${where}: key for int64 column "${name}" must be a safe integer or an int64 bigint, got ${typeof key} ${String(key)}`,
        { details: { column: name } },
      );
    }
    const values = new Int32Array([lo, hi]);
    return {
      col: { validity: null, validityOffset: 0, values, valuesOffset: 0, data: null },
      hash: hashInt64Parts(values[0]!, values[1]!),
    };
  }
  if (typeof key !== 'string') {
    throw new SluiceError(
      ErrorCode.INVALID_KEY,
      `${where}: key for utf8 column "${name}" must be a string, got ${typeof key}`,
      {
        details: { column: name },
      },
    );
  }
  const data = new TextEncoder().encode(key);
  return {
    col: {
      validity: null,
      validityOffset: 0,
      values: new Int32Array([0, data.length]),
      valuesOffset: 0,
      data,
    },
    hash: hashUtf8String(key),
  };
}

export function shardOfKey(ctx: ReadContext, hash: number): number {
  return shardOfHash(hash, ctx.shards.length);
}

/** What `getInMemory` returns when the answer may be in a generation file not loaded yet. */
export class NeedsFile {
  constructor(readonly entry: GenerationEntry) {}
}

/**
 * The newest version of a key in a snapshot from what is in memory (memtables, retained
 * memtables, generation files already loaded or in `loaded`), without awaiting anything: a
 * row object, undefined (absent or deleted), or NeedsFile naming the first file that may hold
 * the key and is not loaded. The common point get never leaves this function.
 */
export function getInMemory(
  ctx: ReadContext,
  snap: ShardSnapshot,
  seq: number,
  probe: { col: ColumnBuffers; hash: number },
  columns?: readonly ColumnSpec[],
  loaded?: ReadonlyMap<GenerationEntry, GenerationReader>,
): Row | undefined | NeedsFile {
  for (const { memtable, rows } of snap.memtables) {
    const r = memtable.lookup(probe.hash, probe.col, 0, rows, seq);
    if (r >= 0) return memtableRow(ctx, memtable, rows, r, columns);
  }
  for (const entry of snap.generations) {
    if (!keyInRange(ctx.schema, probe.col, entry)) continue;
    const kept = snap.retained?.get(entry);
    if (kept) {
      // Every row of a flushed memtable is visible (a flush waits for that): no seq bound.
      const r = kept.memtable.lookup(probe.hash, probe.col, 0, kept.rows);
      if (r >= 0) return memtableRow(ctx, kept.memtable, kept.rows, r, columns);
      continue;
    }
    const reader = loaded?.get(entry) ?? ctx.cache.peek(ctx.storage, entry);
    if (reader === undefined) return new NeedsFile(entry);
    const hit = reader.lookup(probe.col, 0);
    if (hit) {
      const view = reader.batches[hit.batch]!;
      return view.op?.[hit.row] === OP_DELETE ? undefined : rowObjectAt(ctx.schema, view, hit.row, columns);
    }
  }
  return undefined;
}

function memtableRow(
  ctx: ReadContext,
  memtable: Memtable,
  rows: number,
  r: number,
  columns: readonly ColumnSpec[] | undefined,
): Row | undefined {
  return memtable.op[r] === OP_DELETE ? undefined : rowObjectAt(ctx.schema, memtable.view(rows), r, columns);
}

/** The newest version of a key in a snapshot: a row object, or undefined (absent or deleted). */
export async function getInSnapshot(
  ctx: ReadContext,
  snap: ShardSnapshot,
  seq: number,
  probe: { col: ColumnBuffers; hash: number },
  columns?: readonly ColumnSpec[],
): Promise<Row | undefined> {
  // Readers loaded here are held for this get: the cache may evict them (or never keep a
  // file larger than its budget) before the next look.
  const loaded = new Map<GenerationEntry, GenerationReader>();
  for (;;) {
    const r = getInMemory(ctx, snap, seq, probe, columns, loaded);
    if (!(r instanceof NeedsFile)) return r;
    loaded.set(r.entry, await ctx.cache.get(ctx.storage, r.entry, ctx.schema));
  }
}

/** Per manifest entry (immutable): [minHi, minLo, maxHi, maxLo], lo halves unsigned. */
const int64Ranges = new WeakMap<GenerationEntry, Float64Array>();

function keyInRange(schema: TableSchema, col: ColumnBuffers, entry: GenerationEntry): boolean {
  if (schema.keyKind === 'i64') {
    // Parsed once per manifest entry, and compared as (hi, lo) halves: no BigInt per lookup.
    let r = int64Ranges.get(entry);
    if (!r) {
      const min = BigInt(entry.minKey);
      const max = BigInt(entry.maxKey);
      r = Float64Array.of(
        Number(BigInt.asIntN(32, min >> 32n)),
        Number(BigInt.asUintN(32, min)),
        Number(BigInt.asIntN(32, max >> 32n)),
        Number(BigInt.asUintN(32, max)),
      );
      int64Ranges.set(entry, r);
    }
    const v = col.values as Int32Array;
    const hi = v[1]!;
    const lo = v[0]! >>> 0;
    const aboveMin = hi > r[0]! || (hi === r[0]! && lo >= r[1]!);
    return aboveMin && (hi < r[2]! || (hi === r[2]! && lo <= r[3]!));
  }
  const k = utf8At(col, 0);
  // Bytewise UTF-8 order equals code point order; compare code points, not UTF-16 units.
  return cmpCodePoints(k, entry.minKey) >= 0 && cmpCodePoints(k, entry.maxKey) <= 0;
}

function cmpCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i)!;
    const y = b.codePointAt(i)!;
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

export interface ScanOptions {
  readonly columns?: readonly string[];
  readonly filter?: unknown;
  readonly limit?: number;
}

interface Selection {
  readonly view: ColumnarView;
  readonly rows: Int32Array;
  /**
   * When every row of the source is selected in order (each is its key's newest visible
   * version, none is a tombstone or filtered out), the output without copying: the
   * source's own buffers under the scan's schema.
   */
  readonly whole?: (columns: readonly ColumnSpec[]) => RecordBatch;
}

interface Source {
  readonly view: ColumnarView;
  /** Candidate rows (newest version per key within the source), or null for all rows. */
  readonly rows: Int32Array | null;
  readonly hashes: Uint32Array | null;
  /** A generation file's record batch (immutable memory, safe to hand out as is). */
  readonly batch?: RecordBatch;
  /** The memtable this source reads. */
  readonly memtable?: Memtable;
}

/**
 * Rows [0, rows) of a memtable as the scan's output, over the shared buffer. The rows are
 * published, so immutable; what could change them is the broker recycling the buffer for a
 * later generation once it is retired. The batch may live as long as the caller keeps any
 * view of it, so the memtable is pinned for good: never recycled, its memory freed by the
 * garbage collector once nothing refers to it.
 */
function memtableWhole(memtable: Memtable, rows: number, columns: readonly ColumnSpec[]): RecordBatch {
  // The scan's snapshot holds a pin already, so this one cannot fail.
  if (!memtable.pin()) throw new SluiceError(ErrorCode.INTERNAL, 'a captured memtable refused a pin');
  return memtableToArrow(memtable, rows, columns, { meta: false });
}

/** A generation file's batch re-labelled with the scan's schema: its column data, not copied. */
function fileWhole(schema: TableSchema, batch: RecordBatch, columns: readonly ColumnSpec[]): RecordBatch {
  const fields = arrowSchemaOf(schema, columns).fields;
  const children = columns.map((c) => {
    const i = batch.schema.fields.findIndex((f) => f.name === c.name);
    if (i < 0) throw new SluiceError(ErrorCode.INTERNAL, `generation batch lacks column "${c.name}"`);
    return batch.data.children[i]!;
  });
  return new RecordBatch(
    new Schema(fields),
    makeData({ type: new Struct(fields), length: batch.numRows, nullCount: 0, children }),
  );
}

/**
 * Newest-first merge of one shard's sources: a key's first appearance (newest source first)
 * decides it; older versions are skipped whatever they hold, so a filter only ever sees the
 * newest version, and tombstones hide every older version. Keys seen are kept in a KeySet
 * (typed arrays, exact comparison); the oldest source only looks keys up, and a shard with a
 * single source needs no set at all.
 */
async function* shardSelections(
  ctx: ReadContext,
  snap: ShardSnapshot,
  seq: number,
  filter: CompiledFilter | undefined,
  budget: { left: number },
  pacer: Pacer,
): AsyncGenerator<Selection> {
  const schema = ctx.schema;
  const sources: Source[] = [];
  // Index of the first source of the newest-so-far origin; at the end, of the oldest origin,
  // from where on the merge only looks keys up.
  let lastOriginStart = 0;
  const addMemtable = async (
    memtable: Memtable,
    rows: number,
    maxSeq: number,
    known?: Int32Array,
  ): Promise<Int32Array> => {
    let latest = known;
    if (latest === undefined) {
      const steps = memtable.latestRowsInSteps(rows, maxSeq, 4096);
      let step = steps.next();
      for (; !step.done; step = steps.next()) await pacer.pace();
      latest = step.value;
    }
    if (latest.length > 0) {
      lastOriginStart = sources.length;
      sources.push({ view: memtable.view(rows), rows: latest, hashes: memtable.hash, memtable });
    }
    return latest;
  };
  for (const { memtable, rows } of snap.memtables) await addMemtable(memtable, rows, seq);
  for (const entry of snap.generations) {
    const kept = snap.retained?.get(entry);
    if (kept) {
      // Every row of a flushed memtable is visible (a flush waits for that): no seq bound.
      kept.latest = await addMemtable(kept.memtable, kept.rows, Infinity, kept.latest);
      continue;
    }
    const reader = await ctx.cache.get(ctx.storage, entry, ctx.schema);
    if (reader.batches.length > 0) lastOriginStart = sources.length;
    reader.batches.forEach((view, i) =>
      sources.push({ view, rows: null, hashes: null, batch: reader.recordBatches[i] }),
    );
  }
  // Batches of one generation file hold disjoint keys: only sources of different origin need
  // dedup. Count origins: each memtable is one, each file is one.
  const origins = snap.memtables.length + snap.generations.length;
  const keyIndex = schema.keyIndex;
  // Sized for every key the newer sources may insert: growing by rehashing would cost more
  // and hold the thread for one long step.
  let inserts = 0;
  for (let si = 0; si < lastOriginStart; si++) inserts += sources[si]!.rows?.length ?? sources[si]!.view.rows;
  const seen = origins > 1 ? new KeySet(schema.keyKind, Math.max(1 << 14, inserts)) : undefined;
  for (let si = 0; si < sources.length && budget.left > 0; si++) {
    const src = sources[si]!;
    const view = src.view;
    const n = src.rows ? src.rows.length : view.rows;
    const out = new Int32Array(n);
    let k = 0;
    const id = seen?.source(view.columns[keyIndex]!) ?? -1;
    const insert = si < lastOriginStart;
    const op = view.op;
    for (let i = 0; i < n && budget.left > 0; i++) {
      if ((i & 2047) === 2047) await pacer.pace();
      const r = src.rows ? src.rows[i]! : i;
      if (seen) {
        const h = src.hashes ? src.hashes[r]! : seen.hashOf(id, r);
        if (insert ? !seen.add(id, r, h) : seen.has(id, r, h)) continue;
      }
      if (op !== null && op[r] === OP_DELETE) continue;
      if (filter && !filter.matches(view, r)) continue;
      out[k++] = r;
      budget.left--;
    }
    if (k === 0) continue;
    // k === view.rows: every row of the source, in order (candidate rows come sorted).
    let whole: Selection['whole'];
    if (k === view.rows && src.batch) {
      const batch = src.batch;
      whole = (columns) => fileWhole(schema, batch, columns);
    } else if (k === view.rows && src.memtable) {
      const memtable = src.memtable;
      whole = (columns) => memtableWhole(memtable, k, columns);
    }
    if (whole) {
      yield { view, rows: out.subarray(0, k), whole };
      await pacer.pace();
      continue;
    }
    // Gathered output goes in batches of at most SCAN_BATCH_ROWS: each gather is one
    // synchronous copy, so this bounds both the time between event-loop turns and memory.
    for (let a = 0; a < k; a += SCAN_BATCH_ROWS) {
      yield { view, rows: out.subarray(a, Math.min(k, a + SCAN_BATCH_ROWS)) };
      await pacer.pace();
    }
  }
}

/** Rows per gathered output batch of a scan. */
const SCAN_BATCH_ROWS = 8_192;

/** How long a scan may hold the event loop before it lets other work (acks, commits, puts) run. */
const SCAN_SLICE_MS = 2;

/**
 * Lets the event loop run when the scan has held it for SCAN_SLICE_MS. A scan is a chain of
 * microtasks (an async generator feeding for-await), which never yields to timers, worker
 * messages or I/O on its own: on the thread that also runs the broker and producers, one big
 * scan would stall freezes, commits and acknowledgements for its whole length.
 */
class Pacer {
  #since = performance.now();

  async pace(): Promise<void> {
    if (performance.now() - this.#since < SCAN_SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#since = performance.now();
  }
}

const scanFinalizer = new FinalizationRegistry<() => void>((release) => release());

/** The result of `db.scan()`: an async iterable of RecordBatches, plus `toArrow()` and `toArray()`. */
export class ScanResult implements AsyncIterable<RecordBatch> {
  readonly #ctx: ReadContext;
  readonly #snap: Snapshot;
  readonly #columns: readonly ColumnSpec[];
  readonly #filter: CompiledFilter | undefined;
  readonly #limit: number;
  #consumed = false;

  constructor(ctx: ReadContext, snap: Snapshot, options: ScanOptions | undefined) {
    this.#ctx = ctx;
    this.#snap = snap;
    // A scan that is never read holds its pins until it is garbage collected.
    scanFinalizer.register(this, snap.release, this);
    const o = options ?? {};
    if (typeof o !== 'object' || o === null) {
      throw new SluiceError(ErrorCode.INVALID_OPTIONS, 'scan options must be an object');
    }
    if (o.columns !== undefined && !Array.isArray(o.columns)) {
      throw new SluiceError(
        ErrorCode.INVALID_OPTIONS,
        'scan options.columns must be an array of column names',
      );
    }
    this.#columns = (o.columns ?? ctx.schema.columns.map((c) => c.name)).map((name) => {
      const c = typeof name === 'string' ? ctx.schema.byName.get(name) : undefined;
      if (!c) {
        throw new SluiceError(
          ErrorCode.INVALID_OPTIONS,
          `scan options.columns: ${JSON.stringify(name)} is not a column (the schema has ${ctx.schema.columns.map((x) => x.name).join(', ')})`,
          { details: { column: String(name) } },
        );
      }
      return c;
    });
    this.#filter = o.filter === undefined ? undefined : compileFilter(ctx.schema, o.filter);
    const limit = o.limit ?? Infinity;
    if (limit !== Infinity && (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0)) {
      throw new SluiceError(
        ErrorCode.INVALID_OPTIONS,
        `scan options.limit must be a non-negative integer, got ${String(limit)}`,
      );
    }
    this.#limit = limit;
  }

  async *#selections(): AsyncGenerator<Selection> {
    if (this.#consumed) {
      throw new SluiceError(
        ErrorCode.INVALID_OPTIONS,
        'a scan result can be read once: call db.scan() again',
      );
    }
    this.#consumed = true;
    const budget = { left: this.#limit };
    const pacer = new Pacer();
    try {
      for (const snap of this.#snap.shards) {
        if (!snap) continue;
        if (budget.left <= 0) return;
        yield* shardSelections(this.#ctx, snap, this.#snap.seq, this.#filter, budget, pacer);
      }
    } finally {
      // Batches yielded before this point were gathered into their own buffers, or wrap
      // file data or a memtable pinned for good (memtableWhole).
      this.#snap.release();
      scanFinalizer.unregister(this);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<RecordBatch> {
    // Every batch has the scan's own schema, so a Table of them is well formed: gathered
    // rows, or a whole source's buffers re-labelled (file batches carry their own fields).
    for await (const sel of this.#selections()) {
      yield sel.whole
        ? sel.whole(this.#columns)
        : gatherToArrow(this.#ctx.schema, sel.view, sel.rows, this.#columns);
    }
  }

  async toArrow(): Promise<Table> {
    const batches: RecordBatch[] = [];
    for await (const b of this) batches.push(b);
    if (batches.length === 0) return new Table(arrowSchemaOf(this.#ctx.schema, this.#columns));
    return new Table(batches);
  }

  async toArray(): Promise<Row[]> {
    const out: Row[] = [];
    for await (const sel of this.#selections()) {
      for (const r of sel.rows) out.push(rowObjectAt(this.#ctx.schema, sel.view, r, this.#columns));
    }
    return out;
  }
}
