import { SabQueue } from '@sluice/sab-queue';
import {
  AK_CONSUMED,
  AK_DONE,
  AK_LOST,
  CB_DOORBELL,
  CB_SLEEPING,
  CB_STALLS,
  CB_STATE,
  CB_SYNCS,
  CB_SYNC_HIST,
  CB_SYNC_US_HI,
  CB_SYNC_US_LO,
  CB_WAL_KIB,
  SYNC_LATENCY_BOUNDS_US,
  bucketOf,
  ErrorCode,
  ShardState,
  SluiceError,
  toWire,
} from '@sluice/protocol';
import type {
  FrozenInfo,
  MemtableHandle,
  QueueHandle,
  ShardEvent,
  ShardRequest,
  ShardStats,
} from '@sluice/protocol';
import { viewBatch } from '../batch-format.js';
import type { BatchView } from '../batch-format.js';
import { publishShardState } from '../control.js';
import { ManifestStore } from '../manifest/manifest-store.js';
import { Memtable, MemtableWriter } from '../memtable/memtable.js';
import { schemaFromJson } from '../schema.js';
import type { SchemaJson, TableSchema } from '../schema.js';
import type { Storage } from '../storage/storage.js';
import { replayWal } from '../wal/wal-reader.js';
import { listSegments } from '../wal/wal-segments.js';
import { WalWriter } from '../wal/wal-writer.js';

/** Bytes of memtable pages an idle shard faults in per step (about 0.2 ms here; see prefault). */
const PREFAULT_STEP_BYTES = 64 << 10;

export type InitRequest = Extract<ShardRequest, { kind: 'init' }>;

export interface ShardHost {
  post(event: ShardEvent): void;
}

/**
 * FAILED (restartable) unless the broker already declared the shard DEAD: a late failure
 * report must not turn a final state back into one producers keep waiting on.
 */
export function markFailed(cb: Int32Array): void {
  for (;;) {
    const cur = Atomics.load(cb, CB_STATE);
    if (cur === ShardState.DEAD) return;
    if (Atomics.compareExchange(cb, CB_STATE, cur, ShardState.FAILED) === cur) return;
  }
}

export function shardPrefix(shard: number): string {
  return `shard-${String(shard).padStart(3, '0')}`;
}

/** One producer's queue into this shard, with the shard's view of its ack block. */
interface InQueue {
  readonly id: number;
  readonly queue: SabQueue;
  readonly ack: Int32Array;
  /** Records released from the queue (applied to a memtable), all incarnations included. */
  consumed: number;
  removing: boolean;
}

/** What a publication makes visible: the memtable state and, per queue, records applied up to then. */
interface PublishPoint {
  readonly records: number;
  readonly consumed: ReadonlyMap<InQueue, number>;
  readonly activeGen: number;
  readonly activeRows: number;
  readonly frozen: number; // how many entries of #unpublished this point covers
}

/**
 * One shard: owns the WAL and the active memtable of its slice of the key space, on its own
 * thread. Records arrive on SAB queues (one per producer thread), are appended to the WAL,
 * applied to the active memtable (invisible until published) and published in the control
 * block; then each queue's ack block says how many of its records are done:
 *  - 'sync': after the fsync that covers them (group commit: one fsync in flight at a time,
 *    covering every record appended before it started; records arriving during it wait for
 *    the next one, which starts as soon as it ends). Visible therefore means durable.
 *  - 'async': right after apply; the WAL is written and fsynced within syncIntervalMs.
 * This class holds no worker_threads code: the worker entry feeds it messages.
 */
export class ShardEngine {
  readonly #init: InitRequest;
  readonly #host: ShardHost;
  readonly #schema: TableSchema;
  readonly #storage: Storage;
  readonly #prefix: string;
  readonly #queues: InQueue[] = [];
  readonly #cb: Int32Array;
  readonly #manifests: ManifestStore;
  #wal: WalWriter | undefined;
  #active: MemtableWriter;
  #activeMaxSeq = 0;
  readonly #spares: Memtable[] = [];
  #spareWaiter: (() => void) | undefined;
  /** Frozen memtables not yet published (oldest first). */
  readonly #unpublished: FrozenInfo[] = [];
  #records = 0;
  #lastSynced: PublishPoint | undefined;
  #syncing = false;
  #syncAgain = false;
  /** 'async': the next WAL write also fsyncs (set by the interval timer). */
  #syncDue = false;
  #syncTimer: NodeJS.Timeout | undefined;
  #applying = false;
  #freezeRequests: number[] = [];
  #freezeReplies: { id: number; gen: number }[] = [];
  #state: 'starting' | 'running' | 'closing' | 'closed' | 'failed' = 'starting';
  #closeId: number | undefined;
  #syncs = 0;
  #syncMicros = 0;
  #stalls = 0;
  #maxSeq = 0;
  #next = 0; // round-robin position over queues

  constructor(init: InitRequest, storage: Storage, host: ShardHost) {
    this.#init = init;
    this.#host = host;
    this.#schema = schemaFromJson(init.schema as SchemaJson);
    this.#storage = storage;
    this.#prefix = shardPrefix(init.shard);
    this.#cb = new Int32Array(init.control);
    // A restarted shard thread continues the counts of the thread before it (metrics stay monotonic).
    this.#syncs = Atomics.load(this.#cb, CB_SYNCS);
    this.#syncMicros =
      Atomics.load(this.#cb, CB_SYNC_US_HI) * 2 ** 31 + Atomics.load(this.#cb, CB_SYNC_US_LO);
    this.#manifests = new ManifestStore(storage, this.#prefix);
    this.#active = new MemtableWriter(this.#memtable(init.active));
    for (const s of init.spares) this.#spares.push(this.#memtable(s));
    for (const q of init.queues) this.#addQueue(q);
  }

  #memtable(h: MemtableHandle): Memtable {
    return new Memtable(h.buffer, this.#schema);
  }

  #addQueue(h: QueueHandle): void {
    const ack = new Int32Array(h.ack);
    const queue = SabQueue.attach(h.queue);
    queue.recoverConsumer();
    // The queue's own release count numbers records across shard incarnations. Records a
    // previous incarnation took but may not have made durable have an unknown outcome: LOST
    // tells their producer so. Stored before this incarnation publishes any DONE.
    const consumed = queue.releasedCount;
    Atomics.store(ack, AK_CONSUMED, consumed);
    Atomics.store(ack, AK_LOST, consumed);
    Atomics.notify(ack, AK_DONE);
    this.#queues.push({ id: h.id, queue, ack, consumed, removing: false });
  }

  /** Replays the WAL after the manifest's cursor, opens a new WAL segment, then serves the queues. */
  async start(): Promise<void> {
    try {
      let rows = 0;
      let scratch = new Uint8Array(0);
      const report = await replayWal(
        this.#storage,
        this.#prefix,
        this.#init.replayFromLsn,
        async (lsn, payload) => {
          // The payload view is only valid during the callback and may be unaligned: copy it
          // (applying may wait for a spare memtable, and typed views need 8-byte alignment).
          // One scratch buffer serves every record: the batch is dead once #apply settles,
          // and replay hands over the next record only after that.
          if (scratch.byteLength < payload.byteLength)
            scratch = new Uint8Array(Math.max(payload.byteLength, 2 * scratch.byteLength));
          scratch.set(payload);
          const batch = viewBatch(this.#schema, scratch.subarray(0, payload.byteLength));
          rows += batch.rows;
          await this.#apply(batch, lsn);
          // Replayed rows are durable already: publish each freeze at once, so the broker
          // flushes it and hands out the spares a long replay needs.
          if (this.#unpublished.length > 0) this.#publish(this.#point());
        },
        { warn: (message) => this.#host.post({ kind: 'warn', message }) },
      );
      // A crashed writer may have left WAL bytes that reached the page cache but no fsync. We
      // just replayed (and will publish) them, and our new segment will start after them:
      // make them durable first, or a power cut could drop them and leave a gap in front of
      // everything acknowledged from now on.
      for (const seg of await listSegments(this.#storage, this.#prefix)) {
        const file = await this.#storage.openAppend(seg.path);
        try {
          await file.sync();
        } finally {
          await file.close();
        }
      }
      // Replayed rows were durable before this thread started: publish them at once.
      this.#publish(this.#point());
      this.#wal = await WalWriter.open(
        this.#storage,
        this.#prefix,
        Math.max(report.lastLsn + 1, this.#init.replayFromLsn),
      );
      this.#state = 'running';
      Atomics.store(this.#cb, CB_STATE, ShardState.RUNNING);
      this.#host.post({
        kind: 'ready',
        replay: {
          records: report.records,
          rows,
          lastLsn: report.lastLsn,
          maxSeq: this.#maxSeq,
          truncated: report.truncated,
        },
      });
      if (this.#init.durability === 'async') this.#armSyncTimer();
      await this.#pump();
    } catch (err) {
      this.#fail(err);
    }
  }

  handle(msg: ShardRequest): void {
    switch (msg.kind) {
      case 'init':
        return this.#fail(new SluiceError(ErrorCode.INTERNAL, 'shard initialised twice'));
      case 'spare':
        this.#spares.push(this.#memtable(msg.memtable));
        this.#spareWaiter?.();
        return;
      case 'addQueue':
        this.#addQueue(msg.queue);
        this.#ring();
        return;
      case 'removeQueue':
        for (const q of this.#queues) if (q.id === msg.id) q.removing = true;
        this.#ring();
        return;
      case 'freeze':
        this.#freezeRequests.push(msg.id);
        if (!this.#applying) this.#serveFreezes();
        return;
      case 'committed':
        if (this.#wal) {
          this.#wal.deleteSegmentsBefore(msg.replayFromLsn).catch((err: unknown) => this.#fail(err));
        }
        return;
      case 'stats':
        this.#host.post({ kind: 'reply', id: msg.id, ok: true, value: this.#stats() });
        return;
      case 'close':
        this.#closeId = msg.id;
        if (this.#state === 'running') this.#state = 'closing';
        this.#ring(); // wakes the pump; it drains what is queued, then finishes
        return;
    }
  }

  /**
   * Wakes this shard's pump, as producers do after committing a record: the doorbell moves,
   * so a pump about to wait returns at once, and one already waiting (CB_SLEEPING) is
   * notified. The order argument is at the pump's wait.
   */
  #ring(): void {
    Atomics.add(this.#cb, CB_DOORBELL, 1);
    if (Atomics.load(this.#cb, CB_SLEEPING) !== 0) Atomics.notify(this.#cb, CB_DOORBELL);
  }

  #stats(): ShardStats {
    return {
      walBytes: this.#wal?.bytes ?? 0,
      walLastLsn: this.#wal?.lastLsn ?? 0,
      activeRows: this.#active.rows,
      activeBytes: this.#active.usedBytes,
      records: this.#records,
      syncs: this.#syncs,
      stalls: this.#stalls,
    };
  }

  /** Next queue with a record, round-robin so no producer starves another. */
  #nextRecord(): { q: InQueue; rec: Uint8Array } | null {
    const n = this.#queues.length;
    for (let i = 0; i < n; i++) {
      const q = this.#queues[(this.#next + i) % n]!;
      const rec = q.queue.peek();
      if (rec !== null) {
        this.#next = (this.#next + i + 1) % n;
        return { q, rec };
      }
    }
    return null;
  }

  /** The consumer loop: one record at a time; each queue in its producer's order. */
  async #pump(): Promise<void> {
    let sinceYield = 0;
    for (;;) {
      if (this.#state === 'failed') return;
      // Read the doorbell before looking at the queues: a record committed after this load
      // rings a new value, so the wait below returns at once instead of sleeping through it.
      const bell = Atomics.load(this.#cb, CB_DOORBELL);
      const next = this.#nextRecord();
      if (next === null) {
        this.#dropRemovedQueues();
        if (this.#state === 'closing') break;
        // Idle: warm the pages the next rows go to, a small step at a time, looking at the
        // queues again between steps so an arriving record waits at most one step. Not while
        // a WAL write or fsync is in flight: its completion, and the publication producers
        // wait for, runs on this thread and would wait behind the step. The sync loop rings
        // the doorbell when it finishes, which brings the pump back here to warm pages.
        if (!this.#syncing && this.#active.prefault(PREFAULT_STEP_BYTES)) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          sinceYield = 0;
          continue;
        }
        // Say we are about to sleep, then sleep unless the doorbell moved since `bell`. A
        // producer rings (Atomics.add) and then notifies only if it sees CB_SLEEPING: all
        // seq-cst, so either its ring lands before the wait compares (the wait returns at
        // once) or its load of CB_SLEEPING comes after our store and it notifies.
        Atomics.store(this.#cb, CB_SLEEPING, 1);
        const w = Atomics.waitAsync(this.#cb, CB_DOORBELL, bell, 1000);
        if (w.async) await w.value;
        Atomics.store(this.#cb, CB_SLEEPING, 0);
        sinceYield = 0;
        continue;
      }
      const { q, rec } = next;
      const batch = viewBatch(this.#schema, rec);
      const lsn = this.#wal!.append(rec.subarray(0, batch.byteLength)); // copies: the slot is released below
      this.#applying = true;
      await this.#apply(batch, lsn);
      this.#applying = false;
      q.queue.release();
      q.consumed = q.queue.releasedCount;
      // Only this thread writes CONSUMED; a successor incarnation reads it to set LOST.
      Atomics.store(q.ack, AK_CONSUMED, q.consumed);
      this.#records++;
      this.#serveFreezes();
      this.#kickSync();
      // Yield to the event loop now and then so control messages (spares, freeze, close) are
      // handled even while producers keep the queues full.
      if (++sinceYield >= 32) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    await this.#finish();
  }

  #dropRemovedQueues(): void {
    for (let i = this.#queues.length - 1; i >= 0; i--) {
      const q = this.#queues[i]!;
      if (q.removing && q.queue.peek() === null && Atomics.load(q.ack, AK_DONE) === q.consumed) {
        this.#queues.splice(i, 1);
      }
    }
  }

  /** Copies a batch into memtables, freezing the active one each time it fills. */
  async #apply(batch: BatchView, lsn: number): Promise<void> {
    if (batch.seq > this.#maxSeq) this.#maxSeq = batch.seq;
    let from = 0;
    for (;;) {
      const before = from;
      from = this.#active.append(batch, from);
      if (from > before && batch.seq > this.#activeMaxSeq) this.#activeMaxSeq = batch.seq;
      if (from === batch.rows) return;
      if (from === before && this.#active.rows === 0) {
        throw new SluiceError(ErrorCode.INTERNAL, `a row of record ${lsn} does not fit an empty memtable`);
      }
      // Full: the rest of this record goes to the next memtable, so replay after this memtable
      // is committed must restart at this record (its rows here are re-applied, newest-wins).
      await this.#rotate(lsn);
    }
  }

  /** Freezes the active memtable and activates a spare (waiting for one: backpressure). */
  async #rotate(replayFromLsn: number): Promise<void> {
    // The broker bounds frozen + spare memtables so the control block's frozen list cannot
    // overflow, and withholds spares above maxUnflushedBytes: waiting here is backpressure.
    while (this.#spares.length === 0) {
      this.#stalls++;
      Atomics.store(this.#cb, CB_STALLS, this.#stalls);
      // The memtables this record filled are published only after its WAL write, and the
      // broker hands out spares as it learns of freezes: without this request a record that
      // spans more memtables than there are spares would wait for itself.
      this.#host.post({ kind: 'needSpare' });
      await new Promise<void>((resolve) => (this.#spareWaiter = resolve));
      this.#spareWaiter = undefined;
      if (this.#state === 'failed') throw new SluiceError(ErrorCode.INTERNAL, 'shard failed while waiting');
    }
    const a = this.#active;
    this.#unpublished.push({
      gen: a.memtable.generation,
      rows: a.rows,
      replayFromLsn,
      maxSeq: this.#activeMaxSeq,
      utf8Used: this.#schema.columns.map((c) => a.utf8Used(c.index)),
    });
    this.#active = new MemtableWriter(this.#spares.shift()!);
    this.#activeMaxSeq = 0;
    this.#rotateWal();
  }

  /**
   * Starts a new WAL segment with the new memtable. Once the frozen memtable commits, the
   * manifest's cursor passes the old segment and 'committed' deletes it: the log on disk
   * stays about as large as the unflushed memtables, and a reopen replays only that.
   * Not during replay (no writer yet) nor while closing (close syncs the segment it has).
   */
  #rotateWal(): void {
    const wal = this.#wal;
    if (!wal || this.#state !== 'running') return;
    wal.rotate().catch((err: unknown) => this.#fail(err));
  }

  /** Explicit freezes (db.flush()) happen between records. */
  #serveFreezes(): void {
    if (this.#freezeRequests.length === 0 || this.#state === 'starting') return;
    const ids = this.#freezeRequests;
    this.#freezeRequests = [];
    const doFreeze = async (): Promise<void> => {
      if (this.#active.rows > 0) await this.#rotate(this.#wal!.nextLsn);
      const last = this.#unpublished.at(-1);
      for (const id of ids) {
        if (last) this.#freezeReplies.push({ id, gen: last.gen });
        else this.#host.post({ kind: 'reply', id, ok: true, value: null });
      }
      this.#kickSync();
    };
    this.#applying = true;
    doFreeze()
      .catch((err: unknown) => this.#fail(err))
      .finally(() => (this.#applying = false));
  }

  #point(): PublishPoint {
    const consumed = new Map<InQueue, number>();
    for (const q of this.#queues) consumed.set(q, q.consumed);
    return {
      records: this.#records,
      consumed,
      activeGen: this.#active.memtable.generation,
      activeRows: this.#active.rows,
      frozen: this.#unpublished.length,
    };
  }

  /** Makes a point visible: frozen memtables and active row count, then each queue's DONE. */
  #publish(p: PublishPoint): void {
    const frozen = this.#unpublished.splice(0, p.frozen);
    publishShardState(this.#cb, frozen, p.activeGen, p.activeRows);
    // DONE after the sources: a producer that sees its record done finds its rows published.
    for (const [q, n] of p.consumed) {
      if (Atomics.load(q.ack, AK_DONE) !== n) {
        Atomics.store(q.ack, AK_DONE, n);
        Atomics.notify(q.ack, AK_DONE);
      }
    }
    for (const f of frozen) {
      this.#host.post({ kind: 'frozen', info: f });
      this.#freezeReplies = this.#freezeReplies.filter((r) => {
        if (r.gen !== f.gen) return true;
        this.#host.post({ kind: 'reply', id: r.id, ok: true, value: f.gen });
        return false;
      });
    }
  }

  /**
   * Group commit: one WAL write (and, for 'sync', fsync) in flight; whatever arrives meanwhile
   * rides the next one. Both modes write the WAL bytes before acknowledging, so a crash of this
   * thread or of the process loses nothing acknowledged; 'async' only defers the fsync (to at
   * most syncIntervalMs), so only a power loss can take the last interval.
   */
  #kickSync(): void {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = true;
    void this.#syncLoop();
  }

  async #syncLoop(): Promise<void> {
    try {
      do {
        this.#syncAgain = false;
        const point = this.#point();
        const durable = this.#init.durability === 'sync' || this.#syncDue;
        this.#syncDue = false;
        await this.#writeWal(durable);
        if (this.#state === 'failed') return;
        this.#publish(point);
        if (durable) this.#lastSynced = point;
      } while (this.#syncAgain);
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#syncing = false;
      // An idle pump skipped warming pages while this ran: bring it back to look again.
      this.#ring();
    }
  }

  /** Writes (and with `durable`, fsyncs) the WAL, then checks that no successor has fenced this writer. */
  async #writeWal(durable: boolean): Promise<void> {
    const wal = this.#wal!;
    await wal.writePending();
    if (durable) {
      const t0 = performance.now();
      await wal.sync();
      const micros = Math.round((performance.now() - t0) * 1000);
      this.#syncMicros += micros;
      this.#syncs++;
      // Only this thread adds; Atomics makes the count visible to the broker's stats() reads.
      Atomics.add(this.#cb, CB_SYNC_HIST + bucketOf(SYNC_LATENCY_BOUNDS_US, micros), 1);
      // Metrics only: a reader may see the halves of two different totals, once in a while.
      Atomics.store(this.#cb, CB_SYNC_US_LO, this.#syncMicros % 2 ** 31);
      Atomics.store(this.#cb, CB_SYNC_US_HI, Math.floor(this.#syncMicros / 2 ** 31));
      Atomics.store(this.#cb, CB_SYNCS, this.#syncs);
    }
    Atomics.store(this.#cb, CB_WAL_KIB, Math.ceil(wal.bytes / 1024));
    // Fencing: a successor creates its epoch marker before replaying the WAL. If the marker is
    // absent now, our written bytes precede its replay and it will see them; if present, it may
    // not (and it starts its own segment past them, so a later replay ignores them too), so
    // nothing may be acknowledged any more.
    if (this.#manifests.isFenced(this.#init.epoch)) {
      throw new SluiceError(
        ErrorCode.FENCED,
        `shard ${this.#init.shard}: another writer took ownership of ${this.#storage.root} (epoch > ${this.#init.epoch})`,
        { details: { shard: this.#init.shard } },
      );
    }
  }

  #armSyncTimer(): void {
    // 'async' durability: whatever was acknowledged is fsynced within one interval.
    this.#syncTimer = setInterval(() => {
      if (this.#records !== (this.#lastSynced?.records ?? 0)) {
        this.#syncDue = true;
        this.#kickSync();
      }
    }, this.#init.syncIntervalMs);
  }

  async #finish(): Promise<void> {
    if (this.#state === 'failed') return;
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    while (this.#syncing) await new Promise<void>((resolve) => setImmediate(resolve));
    const point = this.#point();
    if (this.#wal) {
      await this.#writeWal(true);
      await this.#wal.close();
    }
    this.#publish(point);
    this.#state = 'closed';
    Atomics.store(this.#cb, CB_STATE, ShardState.CLOSED);
    if (this.#closeId !== undefined) {
      this.#host.post({ kind: 'reply', id: this.#closeId, ok: true, value: this.#stats() });
    }
  }

  #fail(err: unknown): void {
    if (this.#state === 'failed') return;
    this.#state = 'failed';
    if (this.#syncTimer) clearInterval(this.#syncTimer);
    markFailed(this.#cb);
    for (const q of this.#queues) Atomics.notify(q.ack, AK_DONE);
    this.#spareWaiter?.();
    this.#host.post({ kind: 'fatal', error: toWire(err) });
    void this.#wal?.close().catch(() => undefined);
  }
}
