import {
  CB_ACTIVE_GEN,
  CB_ACTIVE_ROWS,
  CB_FROZEN_BASE,
  CB_FROZEN_COUNT,
  CB_LOCK,
  CB_MANIFEST_VERSION,
  CB_MAX_FROZEN,
  CB_SEQ,
  CB_WORDS,
  ErrorCode,
  SluiceError,
} from '@sluice/protocol';

/**
 * Operations on a shard control block (slot meanings in @sluice/protocol control-block.ts).
 * Writers (the shard thread and the broker) serialise on CB_LOCK and bracket every change of
 * the published source set with two increments of CB_SEQ, so a reader that sees the same even
 * CB_SEQ before and after reading the slots has read one consistent state.
 */
export function allocateControlBlock(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * CB_WORDS));
}

export interface PublishedSources {
  readonly activeGen: number;
  readonly activeRows: number;
  readonly frozen: readonly { readonly gen: number; readonly rows: number }[];
  readonly manifestVersion: number;
}

/**
 * Runs `update` as one sequence-lock write. Critical sections are a handful of stores, so the
 * lock spins briefly and then sleeps on the slot (Atomics.wait is allowed on Node's main thread
 * too) rather than burning a core if the holder was descheduled.
 *
 * An `update` checks everything it needs before its first store, so one that throws has
 * changed nothing; the sequence is made even again in `finally` all the same, because an odd
 * sequence left behind would make every reader retry until it gives up.
 */
export function writeControl(cb: Int32Array, update: (cb: Int32Array) => void): void {
  while (!tryWriteControl(cb, update, 200)) Atomics.wait(cb, CB_LOCK, 1, 1);
}

/**
 * writeControl without ever sleeping: false, with nothing done, if the lock stays taken for
 * `spins` attempts. The broker writes this way. Its thread is the one whose event loop runs
 * a dead shard thread's exit handler, which releases a lock that thread died holding: a
 * broker sleeping on that lock would wait forever, so it yields and tries again instead.
 */
export function tryWriteControl(cb: Int32Array, update: (cb: Int32Array) => void, spins = 1000): boolean {
  for (let i = 0; Atomics.compareExchange(cb, CB_LOCK, 0, 1) !== 0; i++) if (i >= spins) return false;
  Atomics.add(cb, CB_SEQ, 1); // odd: readers retry until the matching increment below
  try {
    update(cb);
  } finally {
    Atomics.add(cb, CB_SEQ, 1);
    Atomics.store(cb, CB_LOCK, 0);
    Atomics.notify(cb, CB_LOCK, 1);
  }
  return true;
}

/**
 * How long a reader retries a control block that stays mid-update before it gives up. A
 * writer's critical section is a handful of stores; one that does not finish in this time
 * died inside it (a terminated shard thread), and the broker repairs the block only once its
 * own thread gets to run, which a reader spinning on that thread would prevent forever.
 */
const STUCK_WRITER_MS = 1000;

/**
 * Reads the published sources as one consistent cut (sequence-lock read side, never blocks
 * writers). Fails with SLUICE_SHARD_CRASHED if a writer stays mid-update for STUCK_WRITER_MS.
 */
export function readControl(cb: Int32Array): PublishedSources {
  let spins = 0;
  let since = 0;
  for (;;) {
    const s1 = Atomics.load(cb, CB_SEQ);
    if ((s1 & 1) === 0) {
      const n = Atomics.load(cb, CB_FROZEN_COUNT);
      const frozen: { gen: number; rows: number }[] = [];
      for (let i = 0; i < n && i < CB_MAX_FROZEN; i++) {
        frozen.push({
          gen: Atomics.load(cb, CB_FROZEN_BASE + 2 * i),
          rows: Atomics.load(cb, CB_FROZEN_BASE + 2 * i + 1),
        });
      }
      const out = {
        activeGen: Atomics.load(cb, CB_ACTIVE_GEN),
        activeRows: Atomics.load(cb, CB_ACTIVE_ROWS),
        frozen,
        manifestVersion: Atomics.load(cb, CB_MANIFEST_VERSION),
      };
      if (Atomics.load(cb, CB_SEQ) === s1) return out;
    }
    // A writer is mid-update (a few stores): retry. The clock is read only now and then, so a
    // normal retry costs nothing extra.
    if (++spins >= 4096) {
      spins = 0;
      const now = performance.now();
      if (since === 0) since = now;
      else if (now - since > STUCK_WRITER_MS) {
        throw new SluiceError(
          ErrorCode.SHARD_CRASHED,
          `a shard's control block stayed mid-update for over ${STUCK_WRITER_MS} ms: its thread died while publishing; the shard is restarted, retry`,
        );
      }
    }
  }
}

/** Shard side: appends newly frozen memtables and sets the active memtable's visible rows. */
export function publishShardState(
  cb: Int32Array,
  frozen: readonly { gen: number; rows: number }[],
  activeGen: number,
  activeRows: number,
): void {
  writeControl(cb, (c) => {
    let n = Atomics.load(c, CB_FROZEN_COUNT);
    if (n + frozen.length > CB_MAX_FROZEN) {
      throw new SluiceError(ErrorCode.INTERNAL, 'control block frozen list overflow');
    }
    for (const f of frozen) {
      Atomics.store(c, CB_FROZEN_BASE + 2 * n, f.gen);
      Atomics.store(c, CB_FROZEN_BASE + 2 * n + 1, f.rows);
      n++;
    }
    Atomics.store(c, CB_FROZEN_COUNT, n);
    Atomics.store(c, CB_ACTIVE_GEN, activeGen);
    Atomics.store(c, CB_ACTIVE_ROWS, activeRows);
  });
}

/**
 * Broker side: in ONE sequence-lock write, makes `manifestVersion` current and removes the
 * frozen memtable `gen` whose rows that manifest now holds. A reader therefore sees either
 * (frozen gen, old manifest) or (no frozen gen, new manifest): never neither (the read hole).
 * False, with nothing done, while the lock is taken (see tryWriteControl): retry after yielding.
 */
export function retireFrozen(cb: Int32Array, gen: number, manifestVersion: number): boolean {
  return tryWriteControl(cb, (c) => {
    const n = Atomics.load(c, CB_FROZEN_COUNT);
    if (n === 0 || Atomics.load(c, CB_FROZEN_BASE) !== gen) {
      throw new SluiceError(
        ErrorCode.INTERNAL,
        `retire of generation ${gen}: it is not the oldest frozen memtable`,
      );
    }
    for (let i = 1; i < n; i++) {
      Atomics.store(c, CB_FROZEN_BASE + 2 * (i - 1), Atomics.load(c, CB_FROZEN_BASE + 2 * i));
      Atomics.store(c, CB_FROZEN_BASE + 2 * (i - 1) + 1, Atomics.load(c, CB_FROZEN_BASE + 2 * i + 1));
    }
    Atomics.store(c, CB_FROZEN_COUNT, n - 1);
    Atomics.store(c, CB_MANIFEST_VERSION, manifestVersion);
  });
}

export function setManifestVersion(cb: Int32Array, manifestVersion: number): void {
  writeControl(cb, (c) => Atomics.store(c, CB_MANIFEST_VERSION, manifestVersion));
}

/**
 * Broker side, and only while the shard's thread is gone (terminated or exited, and not yet
 * restarted): a thread killed inside writeControl leaves CB_LOCK taken and CB_SEQ odd, and
 * every reader would spin on it forever. The dead thread was the only other writer and the
 * broker is not inside a write when it calls this, so the lock is released and the sequence
 * made even. The state the thread was writing may be half stored: the frozen list only grows
 * by entries whose count was stored (entries past the count are ignored), and the new
 * incarnation publishes its own active memtable; pruneFrozen then drops anything unknown.
 */
export function releaseDeadWriter(cb: Int32Array): void {
  if ((Atomics.load(cb, CB_SEQ) & 1) === 1) Atomics.add(cb, CB_SEQ, 1);
  if (Atomics.exchange(cb, CB_LOCK, 0) !== 0) Atomics.notify(cb, CB_LOCK);
}

/**
 * Broker side: keeps in the frozen list only the generations in `keep` (order unchanged), in
 * one write, and returns the generations it dropped. After a shard restart it removes
 * memtables the dead thread published but never reported, once the new incarnation's replay
 * has published their rows again. Null, with nothing done, while the lock is taken (see
 * tryWriteControl): retry after yielding.
 */
export function pruneFrozen(cb: Int32Array, keep: ReadonlySet<number>): number[] | null {
  const dropped: number[] = [];
  const done = tryWriteControl(cb, (c) => {
    const n = Atomics.load(c, CB_FROZEN_COUNT);
    let w = 0;
    for (let i = 0; i < n; i++) {
      const gen = Atomics.load(c, CB_FROZEN_BASE + 2 * i);
      const rows = Atomics.load(c, CB_FROZEN_BASE + 2 * i + 1);
      if (!keep.has(gen)) {
        dropped.push(gen);
        continue;
      }
      Atomics.store(c, CB_FROZEN_BASE + 2 * w, gen);
      Atomics.store(c, CB_FROZEN_BASE + 2 * w + 1, rows);
      w++;
    }
    Atomics.store(c, CB_FROZEN_COUNT, w);
  });
  return done ? dropped : null;
}
