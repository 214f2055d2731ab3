import { CB_MAX_FROZEN, ErrorCode, SluiceError, fromWire } from '@sluice/protocol';
import type { FlushTask, FrozenInfo, QueueHandle } from '@sluice/protocol';
import {
  Memtable,
  memtableLayout,
  planMemtable,
  pruneFrozen,
  readControl,
  releaseDeadWriter,
  retireFrozen,
  schemaToJson,
  setManifestVersion,
} from '@sluice/core';
import type { GenerationWritten, Manifest, ManifestStore, TableSchema } from '@sluice/core';
import type { FlushResult } from '@sluice/workers/flush';
import { FLUSH_LATENCY_BOUNDS_S, LatencyHistogram } from './latency.js';
import type { ShardClient } from './shard-client.js';
import type { RetainedMemtable } from './reader.js';
import { RETAINED_PER_SHARD } from './descriptor.js';
import type { ResolvedOptions } from './options.js';

/** What a shard lifecycle needs from the broker. */
export interface LifecycleContext {
  readonly root: string;
  readonly schema: TableSchema;
  readonly options: ResolvedOptions;
  readonly faults: unknown;
  runFlush(task: FlushTask): Promise<FlushResult>;
  /** Highest put sequence visible to readers (every put at or below it is complete). */
  visibleSeq(): number;
  /** Calls `fn` once the visible sequence reaches `seq`. */
  whenVisible(seq: number, fn: () => void): void;
  /** Unflushed bytes across all shards (for withholding spares). */
  unflushedBytes(): number;
  /** Unflushed bytes changed (a freeze or a retire): republish them for producers' backpressure. */
  memoryChanged(): void;
  /** Every producer queue into this shard (handed to each shard incarnation). */
  queues(): QueueHandle[];
  /** Tell readers on other threads about a memtable before any control block can name it. */
  announceMemtable(mt: Memtable): void;
  /** Tell readers on other threads about a manifest before the control block makes it current. */
  announceManifest(m: Manifest): void;
  /** A memtable about to be retired whose buffer stays readable until recycled (see retained). */
  announceRetained(mt: Memtable, rows: number): void;
  /** Writes cannot go on (fenced, or an invariant broke): fail the table with `err`. */
  fatal(err: SluiceError): void;
  warn(message: string): void;
}

type FrozenState = 'waiting' | 'flushing' | 'written' | 'committing';

interface FrozenEntry {
  readonly info: FrozenInfo;
  readonly memtable: Memtable;
  state: FrozenState;
  written: GenerationWritten | undefined;
  attempts: number;
}

/**
 * Spare memtables the broker keeps ready in each shard, so that a freeze need not wait for a
 * round trip to the main thread. Every buffer that has been active stays faulted in when it
 * comes back as a spare (recycling), so each spare is a memtable's worth of resident memory.
 * A shard starts with one: it then cycles through three buffers (active, flushing, spare).
 * Once it has had to ask for a spare (needSpare: its memtables fill faster than the broker
 * answers a freeze, or one record filled more than one), it gets a second one from then on.
 */
const SPARES_AT_FIRST = 1;
const SPARES_AFTER_A_STALL = 2;
/** Manifest versions kept on disk: the newest, and a few before it for a damaged newest to fall back on. */
const MANIFESTS_ON_DISK = 4;
/** Old manifest versions are deleted once every this many commits. */
const PRUNE_EVERY = 8;
const MAX_BACKOFF_MS = 5_000;

/**
 * Lets the event loop run before a control-block write is tried again. The lock is taken for
 * a handful of stores; one that stays taken belongs to a shard thread that died inside its
 * write, and the worker's exit handler, which releases it, runs on this event loop.
 */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 1));
}

/**
 * The broker's lifecycle for one shard: freeze → flush → commit → retire.
 *
 *  - freeze: the shard froze a memtable and published it (readable as frozen);
 *  - flush: a pool thread writes it to a generation file, once every put with rows in it is
 *    visible (so a file never holds half of a put that readers cannot see yet);
 *  - commit: a new manifest version listing the file, strictly in generation order, so the
 *    replay cursor only advances over a contiguous prefix of committed generations;
 *  - retire: in ONE control-block write, the manifest version becomes current and the frozen
 *    memtable leaves the published set. Before it, readers find the rows in the frozen
 *    memtable; after it, in the file. There is no instant where they are in neither.
 * A failed flush or commit keeps the memtable frozen and readable and is retried with backoff.
 */
export class ShardLifecycle {
  readonly shard: number;
  readonly client: ShardClient;
  readonly #ctx: LifecycleContext;
  readonly #store: ManifestStore;
  readonly #epoch: number;
  #manifest: Manifest;
  /** Recent manifests by version: readers resolve the version they captured (main thread: always the current one). */
  readonly #manifests = new Map<number, Manifest>();
  /** Every memtable a reader may meet in the control block: active, spares, frozen. */
  readonly memtables = new Map<number, Memtable>();
  readonly #frozen: FrozenEntry[] = [];
  /**
   * Retired memtables (with their row counts) whose buffers may be recycled once no reader
   * pins them. Until then, readers on this thread read a retired memtable's generation from
   * it rather than from the file (see retained).
   */
  readonly #retired: RetainedMemtable[] = [];
  #sparesOut = 0;
  /** How many spares this shard is kept supplied with (see SPARES_AT_FIRST). */
  #spares = SPARES_AT_FIRST;
  /** The shard waits for a spare in the middle of a record: send one even over the target. */
  #needSpare = false;
  #nextGen: number;
  #committing = false;
  /**
   * Set while a restarted shard replays, if its dead thread left orphans (frozen memtables it
   * published but never reported): the generations known before the restart, the only ones
   * that may commit until the orphans are pruned. In the control block the orphans sit after
   * those and before everything the new thread freezes, and a retire removes the oldest
   * entry only; the new thread's memtables commit once the orphans are gone. Kept across a
   * failed restart attempt: the first dead thread's orphans are still in front.
   */
  #commitOnly: ReadonlySet<number> | null = null;
  #closing = false;
  #retireWaiters: { gen: number; resolve: () => void; reject: (e: SluiceError) => void }[] = [];
  #avgUtf8: number[];
  #inFlight = new Set<Promise<unknown>>();
  #timers = new Set<NodeJS.Timeout>();
  #signalClosed!: () => void;
  readonly #closed = new Promise<void>((resolve) => (this.#signalClosed = resolve));
  /**
   * Test holds: while set, a flush waits before it starts, a commit waits before it writes the
   * manifest (the window between a generation file existing and the manifest listing it).
   */
  readonly holds: { beforeFlush: Promise<void> | null; beforeCommit: Promise<void> | null } = {
    beforeFlush: null,
    beforeCommit: null,
  };
  flushes = 0;
  /** Memtables made from a retired memtable's buffer instead of fresh memory. */
  recycled = 0;
  /** Memtables given fresh shared memory (every other one reuses a retired buffer). */
  allocated = 0;
  flushFailures = 0;
  commitFailures = 0;
  /** Every successful flush's duration (file written, before the commit). */
  readonly flushLatency = new LatencyHistogram(FLUSH_LATENCY_BOUNDS_S);

  constructor(
    shard: number,
    client: ShardClient,
    ctx: LifecycleContext,
    store: ManifestStore,
    manifest: Manifest,
    epoch: number,
  ) {
    this.shard = shard;
    this.client = client;
    this.#ctx = ctx;
    this.#store = store;
    this.#manifest = manifest;
    this.#manifests.set(manifest.version, manifest);
    this.#epoch = epoch;
    this.#nextGen = manifest.nextGeneration;
    this.#avgUtf8 = ctx.schema.columns.map(() => 24);
    setManifestVersion(client.control, manifest.version);
  }

  get manifest(): Manifest {
    return this.#manifest;
  }

  manifestAt(version: number): Manifest | undefined {
    return this.#manifests.get(version);
  }

  get frozenCount(): number {
    return this.#frozen.length;
  }

  get frozenBytes(): number {
    let n = 0;
    for (const f of this.#frozen) n += f.memtable.byteLength;
    return n;
  }

  get generationCount(): number {
    return this.#manifest.generations.length;
  }

  /** Allocates the next memtable, sized from the utf8 bytes per row seen so far. */
  allocate(): Memtable {
    const { capacity, utf8Capacity } = planMemtable(
      this.#ctx.schema,
      this.#ctx.options.memtableBytes,
      this.#avgUtf8,
    );
    // Every memtable must hold at least one row of the largest allowed value.
    const minUtf8 = this.#ctx.options.maxValueBytes + 8;
    const caps = utf8Capacity.map((c, i) =>
      this.#ctx.schema.columns[i]!.kind === 'utf8' ? Math.max(c, minUtf8) : 0,
    );
    const gen = this.#nextGen++;
    let mt: Memtable | undefined;
    const want = memtableLayout(this.#ctx.schema, capacity, caps).totalBytes;
    for (let i = 0; i < this.#retired.length && !mt; i++) {
      const old = this.#retired[i]!.memtable;
      if (old.byteLength < want * 0.75) continue;
      // Fit the plan to the old buffer (within a quarter of the size we wanted): a few rows
      // fewer is far cheaper than faulting in fresh shared memory.
      let cap = capacity;
      let utf8 = caps;
      for (
        let k = 0;
        k < 32 && memtableLayout(this.#ctx.schema, cap, utf8).totalBytes > old.byteLength;
        k++
      ) {
        const f = (old.byteLength / memtableLayout(this.#ctx.schema, cap, utf8).totalBytes) * 0.99;
        cap = Math.max(64, Math.floor(cap * f));
        utf8 = utf8.map((u) => (u === 0 ? 0 : Math.max(minUtf8, Math.floor(u * f))));
      }
      mt = Memtable.recycle(old, cap, utf8, gen, this.shard);
      if (mt) {
        this.#retired.splice(i, 1);
        this.recycled++;
      }
    }
    if (!mt) {
      mt = Memtable.allocate(this.#ctx.schema, capacity, caps, gen, this.shard);
      this.allocated++;
    }
    this.memtables.set(mt.generation, mt);
    this.#ctx.announceMemtable(mt);
    return mt;
  }

  /** Starts (or restarts) the shard thread; resolves with its replay report. */
  async startShard(): Promise<{ maxSeq: number; rows: number; records: number }> {
    // The previous thread (if any) is gone: release a control-block write it died inside.
    releaseDeadWriter(this.client.control);
    const before = new Set(this.memtables.keys());
    const frozenGens = new Set(this.#frozen.map((f) => f.memtable.generation));
    if (readControl(this.client.control).frozen.some((f) => !frozenGens.has(f.gen))) {
      this.#commitOnly ??= frozenGens;
    }
    this.#needSpare = false; // a request of the previous thread
    const active = this.allocate();
    const spares = Array.from({ length: this.#spares }, () => this.allocate());
    this.#sparesOut = this.#spares;
    // A restarted shard replays only what follows the newest frozen memtable still waiting to
    // commit. Those memtables hold every record below their cursor, they are durable in the
    // WAL, and they commit first. Replaying from the manifest's cursor instead would freeze the
    // same records again into memtables cut at other boundaries, which commit AFTER them: a
    // file holding older versions would then be listed as newer than one holding the latest,
    // and after a crash the manifest's cursor (past both) would never replay the difference.
    // Files must be listed oldest to newest: this keeps every new memtable strictly newer.
    const replayFromLsn = this.#frozen.reduce(
      (lsn, f) => Math.max(lsn, f.info.replayFromLsn),
      this.#manifest.replayFromLsn,
    );
    const report = await this.client.start(
      {
        shard: this.shard,
        root: this.#ctx.root,
        schema: schemaToJson(this.#ctx.schema),
        durability: this.#ctx.options.durability,
        syncIntervalMs: this.#ctx.options.syncIntervalMs,
        epoch: this.#epoch,
        replayFromLsn,
        ...(this.#ctx.faults !== undefined ? { faults: this.#ctx.faults } : {}),
      },
      active,
      spares,
      this.#ctx.queues(),
    );
    // The new thread published its own active memtable and its replay before 'ready'. A
    // memtable the previous thread published as frozen but died before reporting is unknown
    // here (never flushed, never retired): the replay holds its rows again, so it leaves the
    // control block now, before the registry forgets it. The known set is taken at each
    // attempt: the new thread may report freezes while a taken lock makes us wait.
    let orphans: number[] | null;
    while (
      (orphans = pruneFrozen(
        this.client.control,
        new Set(this.#frozen.map((f) => f.memtable.generation)),
      )) === null
    ) {
      await yieldToEventLoop();
    }
    if (orphans.length > 0) {
      this.#ctx.warn(
        `shard ${this.shard}: dropped frozen memtable(s) ${orphans.join(', ')} of the dead thread (replayed)`,
      );
    }
    // The new thread's memtables are now right behind the ones known before: they may commit.
    this.#commitOnly = null;
    this.#commitReady();
    // The previous incarnation's active and spare memtables are unreachable now (frozen ones stay).
    for (const gen of before) if (!frozenGens.has(gen)) this.memtables.delete(gen);
    return report;
  }

  /** The shard waits for a spare in the middle of a record (see replenish). */
  onNeedSpare(): void {
    this.#spares = SPARES_AFTER_A_STALL;
    this.#needSpare = true;
    this.replenish();
  }

  /** The shard published a frozen memtable: hand out a spare, then flush it. */
  onFrozen(info: FrozenInfo): void {
    const memtable = this.memtables.get(info.gen);
    if (!memtable) {
      this.#ctx.warn(`shard ${this.shard}: frozen generation ${info.gen} is unknown`);
      return;
    }
    this.#sparesOut--;
    if (info.rows > 0) {
      this.#ctx.schema.columns.forEach((c, i) => {
        if (c.kind === 'utf8') this.#avgUtf8[i] = Math.max(1, (info.utf8Used[i] ?? 0) / info.rows);
      });
    }
    this.#frozen.push({ info, memtable, state: 'waiting', written: undefined, attempts: 0 });
    this.#ctx.memoryChanged();
    this.replenish();
    this.#schedule();
  }

  /**
   * Keeps the shard supplied with spare memtables, unless the unflushed bytes are over the
   * limit or the control block's frozen list could overflow: then the shard stalls when its
   * active memtable fills, its queue fills, and puts wait (backpressure, not collapse).
   */
  replenish(): void {
    if (this.#closing || !(this.client.running || this.client.state === 'starting')) return;
    while (this.#frozen.length + this.#sparesOut < CB_MAX_FROZEN - 2) {
      // A shard that asked (needSpare) gets one whatever the memory: the record it is applying
      // cannot finish without it, and the memtables that record filled are not published (so
      // cannot flush and free memory) before it finishes. Producers still wait above the limit.
      const wanted =
        this.#needSpare ||
        (this.#sparesOut < this.#spares && this.#ctx.unflushedBytes() < this.#ctx.options.maxUnflushedBytes);
      if (!wanted) break;
      this.#needSpare = false;
      const mt = this.allocate();
      this.#sparesOut++;
      this.client.send({ kind: 'spare', memtable: { gen: mt.generation, buffer: mt.buffer } });
    }
  }

  #schedule(): void {
    for (const entry of this.#frozen) {
      if (entry.state !== 'waiting') continue;
      const seq = entry.info.maxSeq;
      if (this.#ctx.visibleSeq() < seq) {
        this.#ctx.whenVisible(seq, () => this.#schedule());
        continue;
      }
      entry.state = 'flushing';
      this.#track(this.#flush(entry));
    }
  }

  #track<T>(p: Promise<T>): void {
    this.#inFlight.add(p);
    void p.finally(() => this.#inFlight.delete(p));
  }

  async #flush(entry: FrozenEntry): Promise<void> {
    await this.#waitHold('beforeFlush');
    if (this.#closing) return;
    const started = performance.now();
    const result = await this.#ctx
      .runFlush({
        root: this.#ctx.root,
        shard: this.shard,
        schema: schemaToJson(this.#ctx.schema),
        memtable: entry.memtable.buffer,
        gen: entry.memtable.generation,
        rows: entry.info.rows,
        epoch: this.#epoch,
        rowsPerBatch: this.#ctx.options.rowsPerBatch,
      })
      .catch((err: unknown): FlushResult => ({
        ok: false,
        error: { code: ErrorCode.INTERNAL, message: err instanceof Error ? err.message : String(err) },
      }));
    if (result.ok) {
      this.flushes++;
      this.flushLatency.record((performance.now() - started) / 1000);
      entry.written = result.entry;
      entry.state = 'written';
      this.#commitReady();
      return;
    }
    this.flushFailures++;
    const err = fromWire(result.error);
    this.#retryLater(
      entry,
      `flush of generation ${entry.memtable.generation} failed (${err.code}: ${err.message})`,
      () => {
        entry.state = 'waiting';
        this.#schedule();
      },
    );
  }

  #retryLater(entry: FrozenEntry, what: string, retry: () => void): void {
    entry.attempts++;
    if (this.#closing) return;
    const delay = Math.min(MAX_BACKOFF_MS, 10 * 2 ** Math.min(entry.attempts, 12));
    this.#ctx.warn(`shard ${this.shard}: ${what}; the memtable stays readable, retrying in ${delay} ms`);
    const t = setTimeout(() => {
      this.#timers.delete(t);
      retry();
    }, delay);
    this.#timers.add(t);
  }

  /** Commits written generations in generation order, one manifest version each. */
  #commitReady(): void {
    if (this.#committing) return;
    const head = this.#frozen[0];
    if (!head || head.state !== 'written') return;
    if (this.#commitOnly && !this.#commitOnly.has(head.memtable.generation)) return;
    this.#committing = true;
    head.state = 'committing';
    this.#track(
      this.#commit(head).finally(() => {
        this.#committing = false;
        this.#commitReady();
      }),
    );
  }

  async #commit(entry: FrozenEntry): Promise<void> {
    await this.#waitHold('beforeCommit');
    if (this.#closing) return;
    const written = entry.written!;
    const cur = this.#manifest;
    const next: Manifest = {
      ...cur,
      version: cur.version + 1,
      writerEpoch: this.#epoch,
      // Only the oldest frozen memtable commits, so everything below its cursor is in files.
      replayFromLsn: Math.max(cur.replayFromLsn, entry.info.replayFromLsn),
      nextGeneration: Math.max(cur.nextGeneration, this.#nextGen),
      generations: [...cur.generations, written],
      maxSeq: Math.max(cur.maxSeq ?? 0, written.maxSeq),
    };
    try {
      await this.#store.commit(next);
    } catch (err) {
      this.commitFailures++;
      const e =
        err instanceof SluiceError ? err : fromWire({ code: ErrorCode.INTERNAL, message: String(err) });
      if (e.code === ErrorCode.FENCED) {
        this.#ctx.fatal(e);
        this.fail(e);
        return;
      }
      this.#retryLater(entry, `commit of generation ${written.gen} failed (${e.code}: ${e.message})`, () => {
        entry.state = 'written';
        this.#commitReady();
      });
      return;
    }
    this.#manifest = next;
    this.#manifests.set(next.version, next);
    this.#manifests.delete(next.version - 8);
    this.#ctx.announceManifest(next);
    // Told before the retire, so a thread that sees the retire in the control block has the
    // message already. Either order is safe: a reader uses a retained memtable only for a
    // generation its captured manifest lists, and only once its pin finds the buffer unrecycled.
    this.#ctx.announceRetained(entry.memtable, entry.info.rows);
    try {
      // Until the retire, readers keep finding the rows in the frozen memtable under the
      // previous manifest version, so waiting here for the lock opens no hole.
      while (!retireFrozen(this.client.control, written.gen, next.version)) {
        if (this.#closing) return;
        await yieldToEventLoop();
      }
    } catch (err) {
      // Refused before any store (the block is unchanged and readable): the memtable stays
      // published and the file is listed too, so nothing is unreadable, but the broker's
      // view no longer matches the block. Stop writes rather than guess.
      const e = err instanceof SluiceError ? err : new SluiceError(ErrorCode.INTERNAL, String(err));
      this.#ctx.fatal(e);
      this.fail(e);
      return;
    }
    this.#frozen.shift();
    this.memtables.delete(written.gen);
    // Keep the buffer for a later generation: its pages are already faulted in.
    this.#retired.push({ memtable: entry.memtable, rows: entry.info.rows });
    if (this.#retired.length > RETAINED_PER_SHARD) this.#retired.shift();
    this.client.send({ kind: 'committed', replayFromLsn: next.replayFromLsn });
    if (next.version % PRUNE_EVERY === 0) {
      // Readers get manifests from announcements, never from old files: only the newest few
      // stay. Deleting is oldest first, so a crash midway leaves the newest in place.
      this.#track(
        this.#store
          .prune(MANIFESTS_ON_DISK)
          .catch((err: unknown) =>
            this.#ctx.warn(`shard ${this.shard}: pruning old manifests failed: ${String(err)}`),
          ),
      );
    }
    this.#ctx.memoryChanged();
    this.replenish();
    this.#retireWaiters = this.#retireWaiters.filter((w) => {
      if (w.gen > written.gen) return true;
      w.resolve();
      return false;
    });
  }

  async #waitHold(which: 'beforeFlush' | 'beforeCommit'): Promise<void> {
    for (let h = this.holds[which]; h && !this.#closing; h = this.holds[which]) {
      await Promise.race([h, this.#closed]);
      // An opened hold that is still set stays open: waiting on it again would spin.
      if (this.holds[which] === h) return;
    }
  }

  /** Resolves when every frozen memtable up to `gen` is committed and retired. */
  waitRetired(gen: number): Promise<void> {
    if (!this.#frozen.some((f) => f.memtable.generation <= gen)) return Promise.resolve();
    return new Promise((resolve, reject) => this.#retireWaiters.push({ gen, resolve, reject }));
  }

  /**
   * The retired memtable flushed to generation `gen`, while it is kept and not recycled: it
   * holds exactly the file's rows (the flush wrote its first `rows`), in memory already. A
   * reader must pin it (which fails once recycling has begun) before reading.
   */
  retained(gen: number): RetainedMemtable | undefined {
    return this.#retired.find((r) => r.memtable.generation === gen);
  }

  /** Spare memtables the shard is kept supplied with: 1, or 2 once it has waited for one. */
  get spareTarget(): number {
    return this.#spares;
  }

  /** Bytes of every memtable buffer this shard holds: active, spares, frozen and retained. */
  get heldBytes(): number {
    let n = 0;
    for (const mt of this.memtables.values()) n += mt.byteLength;
    for (const r of this.#retired) n += r.memtable.byteLength;
    return n;
  }

  /** Every retired memtable still kept (see retained). */
  get retainedMemtables(): readonly RetainedMemtable[] {
    return this.#retired;
  }

  get newestFrozenGen(): number | undefined {
    return this.#frozen.at(-1)?.memtable.generation;
  }

  /** Writes stopped for good (fenced, or the shard gave up): nothing more is flushed or committed. */
  fail(err: SluiceError): void {
    this.#closing = true;
    this.#signalClosed();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const w of this.#retireWaiters) w.reject(err);
    this.#retireWaiters = [];
  }

  /** Stops scheduling; waits for flushes and commits already running. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#signalClosed();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await Promise.allSettled([...this.#inFlight]);
    const err = new SluiceError(ErrorCode.CLOSED, 'the table was closed before the flush finished');
    for (const w of this.#retireWaiters) w.reject(err);
    this.#retireWaiters = [];
  }
}
