import {
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { AppendFile, StagedObject, Storage, SyncStorage } from './storage.js';

/**
 * POWER-LOSS SIMULATION FOR TESTS. A Storage wrapper that records, in a side journal, every
 * point at which the Storage contract makes something durable, so that after the process is
 * killed a test can rebuild what a disk would hold after a power cut at that instant
 * (`simulatePowerLoss`) and reopen the table on it.
 *
 * The model is the Storage interface's own durability contract (storage.ts), which is what
 * the engine may rely on:
 *  - bytes appended to an AppendFile are durable up to the size the file had when a `sync()`
 *    that later resolved was called; anything after it is unsynced and may be lost, torn or
 *    zero-filled;
 *  - a name created by `openAppend` or `putIfAbsent` is durable once the call resolves (with
 *    the whole object, for `putIfAbsent`); before that it may or may not survive;
 *  - a name removed by `delete`, or bytes cut by `truncate`, are gone for good once the call
 *    resolves; before that they may come back.
 *
 * Unsynced bytes and directory entries are not kept in memory: they are on the real disk
 * (a SIGKILL keeps the page cache), and the journal says which of them were durable. Files
 * that are deleted or truncated are first hard-linked or copied beside the journal, so that a
 * simulated power cut can bring them back. The journal is written synchronously (one small
 * O_APPEND write per event, from any thread), so it is complete up to the kill.
 *
 * Every thread (shard, flush, main) wraps its storage with the same journal path, handed over
 * as plain data through the `faults` test option: `{ powerLoss: { journal } }`.
 */
export class PowerLossStorage implements Storage {
  readonly #inner: Storage;
  readonly #journal: string;
  readonly #backups: string;

  constructor(inner: Storage, config: PowerLossConfig) {
    if (typeof config?.journal !== 'string' || config.journal === '') {
      throw new TypeError('powerLoss.journal must be a non-empty path');
    }
    this.#inner = inner;
    this.#journal = config.journal;
    this.#backups = `${config.journal}.d`;
  }

  get root(): string {
    return this.#inner.root;
  }

  get sync(): SyncStorage {
    return this.#inner.sync;
  }

  async putIfAbsent(path: string, data: Uint8Array): Promise<boolean> {
    this.#log({ e: 'put-begin', p: path });
    const created = await this.#inner.putIfAbsent(path, data);
    // Either way the name now exists durably with its whole content (the contract of putIfAbsent).
    this.#log({ e: created ? 'put' : 'exists', p: path });
    return created;
  }

  get(path: string): Promise<Uint8Array | undefined> {
    return this.#inner.get(path);
  }

  getRange(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.#inner.getRange(path, offset, length, into);
  }

  size(path: string): Promise<number | undefined> {
    return this.#inner.size(path);
  }

  list(prefix: string): Promise<string[]> {
    return this.#inner.list(prefix);
  }

  async delete(path: string): Promise<void> {
    const backup = this.#backup(path, 'link');
    this.#log({ e: 'delete-begin', p: path, b: backup });
    await this.#inner.delete(path);
    this.#log({ e: 'delete', p: path });
  }

  async openAppend(path: string): Promise<AppendFile> {
    this.#log({ e: 'open-begin', p: path, x: existsSync(this.#abs(path)) });
    const file = await this.#inner.openAppend(path);
    this.#log({ e: 'open', p: path });
    return {
      path: file.path,
      get size() {
        return file.size;
      },
      write: (chunks) => file.write(chunks),
      sync: async () => {
        // Bytes written before the fsync started are covered by it; later ones may not be.
        const covered = file.size;
        await file.sync();
        this.#log({ e: 'sync', p: path, n: covered });
      },
      truncate: async (length) => {
        const backup = this.#backup(path, 'copy');
        this.#log({ e: 'truncate-begin', p: path, n: length, b: backup });
        await file.truncate(length);
        this.#log({ e: 'truncate', p: path, n: length });
      },
      close: () => file.close(),
    };
  }

  /**
   * Staged bytes are not journaled: until published they have no name anyone reads, and a
   * staged file a power cut leaves behind is removed by the next owner (clearStaged).
   * Publishing is journaled exactly like putIfAbsent.
   */
  async stage(dir: string): Promise<StagedObject> {
    const staged = await this.#inner.stage(dir);
    return {
      get size() {
        return staged.size;
      },
      append: (chunks) => staged.append(chunks),
      publishIfAbsent: async (path) => {
        this.#log({ e: 'put-begin', p: path });
        const created = await staged.publishIfAbsent(path);
        this.#log({ e: created ? 'put' : 'exists', p: path });
        return created;
      },
      discard: () => staged.discard(),
    };
  }

  clearStaged(dir: string): Promise<number> {
    return this.#inner.clearStaged(dir);
  }

  #abs(path: string): string {
    return join(this.#inner.root, path);
  }

  /** Keeps the current file (hard link, or copy when it is about to be cut) for a later undo. */
  #backup(path: string, how: 'link' | 'copy'): string | null {
    const name = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const to = join(this.#backups, name);
    try {
      mkdirSync(this.#backups, { recursive: true });
      if (how === 'link') linkSync(this.#abs(path), to);
      else copyFileSync(this.#abs(path), to);
      return name;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  #log(event: JournalEvent): void {
    writeSync(journalFd(this.#journal), `${JSON.stringify(event)}\n`);
  }
}

export interface PowerLossConfig {
  /** Absolute path of the journal file; backups go to the directory `<journal>.d`. */
  readonly journal: string;
}

/** One journal line. `p` is a storage path (relative to the storage root). */
export type JournalEvent =
  | { readonly e: 'put-begin' | 'put' | 'exists' | 'open' | 'delete'; readonly p: string }
  | { readonly e: 'open-begin'; readonly p: string; readonly x: boolean }
  | { readonly e: 'sync' | 'truncate'; readonly p: string; readonly n: number }
  | { readonly e: 'truncate-begin'; readonly p: string; readonly n: number; readonly b: string | null }
  | { readonly e: 'delete-begin'; readonly p: string; readonly b: string | null };

/**
 * One O_APPEND descriptor per journal per thread, kept open for the thread's life: flush
 * tasks build a new storage per task, and the process is killed rather than closed anyway.
 */
const fds = new Map<string, number>();

function journalFd(journal: string): number {
  let fd = fds.get(journal);
  if (fd === undefined) {
    fd = openSync(journal, 'a');
    fds.set(journal, fd);
  }
  return fd;
}

/** Closes this thread's descriptor of `journal` (for tests that simulate in the same process). */
export function closePowerLossJournal(journal: string): void {
  const fd = fds.get(journal);
  if (fd !== undefined) {
    fds.delete(journal);
    closeSync(fd);
  }
}

export interface PowerLossOptions {
  /** Random numbers in [0, 1) for every choice the simulation makes (seed it to replay a case). */
  readonly random: () => number;
  /**
   * Also keep a random part of each file's unsynced tail (as a disk that wrote back some dirty
   * pages would), sometimes zero-filled or scrambled. Default true. False drops every
   * unsynced byte.
   */
  readonly tornTails?: boolean;
}

export interface PowerLossReport {
  /** Journal events read. */
  readonly events: number;
  /** Files whose unsynced tail was cut. */
  readonly filesCut: number;
  readonly bytesDropped: number;
  /** Unsynced tails partly kept (torn), and of those, zeroed or scrambled. */
  readonly tornTails: number;
  readonly scrambledTails: number;
  /** Names whose creation was not yet durable and that the simulation removed. */
  readonly namesDropped: number;
  /** Names deleted, or bytes truncated, without durability, that the simulation brought back. */
  readonly namesRestored: number;
  readonly truncationsUndone: number;
}

interface FileState {
  /** 'durable': the name survives; 'creating'/'deleting': a call was in flight; 'deleted': gone. */
  status: 'durable' | 'creating' | 'deleting' | 'deleted';
  /** Bytes known durable (Infinity: the whole file). */
  durable: number;
  backup: string | null;
  truncation: { backup: string | null; durable: number } | null;
}

/**
 * Turns the directory `root`, as a killed process left it, into what the disk would hold had
 * the power failed at the kill instead, using the journal written by PowerLossStorage (see
 * there for the model). Files the journal never mentions predate it and are left alone. Call
 * it after the process is dead; afterwards remove or replace the journal before the next run.
 */
export function simulatePowerLoss(root: string, journal: string, options: PowerLossOptions): PowerLossReport {
  const random = options.random;
  const torn = options.tornTails ?? true;
  const backups = `${journal}.d`;
  const files = new Map<string, FileState>();
  let events = 0;
  const text = existsSync(journal) ? readFileSync(journal, 'utf8') : '';
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let ev: JournalEvent;
    try {
      ev = JSON.parse(line) as JournalEvent;
    } catch {
      continue; // a line torn by the kill: its call had not returned
    }
    events++;
    const s = files.get(ev.p);
    switch (ev.e) {
      case 'put-begin':
        if (s === undefined || s.status === 'deleted') files.set(ev.p, fresh('creating', Infinity));
        break;
      case 'put':
      case 'exists':
        files.set(ev.p, fresh('durable', Infinity));
        break;
      case 'open-begin':
        // An untracked file that exists predates the journal: all of it is durable.
        if (s === undefined) files.set(ev.p, fresh(ev.x ? 'durable' : 'creating', ev.x ? Infinity : 0));
        else if (s.status === 'deleted' && !ev.x) files.set(ev.p, fresh('creating', 0));
        break;
      case 'open':
        if (s?.status === 'creating') s.status = 'durable';
        break;
      case 'sync':
        if (s) s.durable = Math.max(s.durable, ev.n);
        break;
      case 'truncate-begin':
        if (s) s.truncation = { backup: ev.b, durable: s.durable };
        break;
      case 'truncate':
        if (s) {
          s.durable = Math.min(s.durable, ev.n);
          s.truncation = null;
        }
        break;
      case 'delete-begin':
        if (s) {
          s.status = 'deleting';
          s.backup = ev.b;
        } else {
          files.set(ev.p, { ...fresh('deleting', Infinity), backup: ev.b });
        }
        break;
      case 'delete':
        files.set(ev.p, fresh('deleted', 0));
        break;
    }
  }

  const report = {
    events,
    filesCut: 0,
    bytesDropped: 0,
    tornTails: 0,
    scrambledTails: 0,
    namesDropped: 0,
    namesRestored: 0,
    truncationsUndone: 0,
  };
  for (const [p, s] of [...files.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const abs = join(root, p);
    if (s.status === 'deleted') continue;
    if (s.status === 'creating') {
      // The creating call never returned: the name may or may not have reached the disk.
      if (existsSync(abs) && random() < 0.5) {
        unlinkSync(abs);
        report.namesDropped++;
        continue;
      }
    }
    if (s.status === 'deleting' && !existsSync(abs) && s.backup !== null && random() < 0.5) {
      linkSync(join(backups, s.backup), abs);
      report.namesRestored++;
    }
    if (s.truncation !== null && existsSync(abs) && s.truncation.backup !== null && random() < 0.5) {
      copyFileSync(join(backups, s.truncation.backup), abs);
      s.durable = s.truncation.durable;
      report.truncationsUndone++;
    }
    if (!existsSync(abs) || s.durable === Infinity) continue;
    const size = statSync(abs).size;
    if (size <= s.durable) continue;
    const unsynced = size - s.durable;
    const kept = torn ? Math.floor(random() * (unsynced + 1)) : 0;
    truncateSync(abs, s.durable + kept);
    report.filesCut++;
    report.bytesDropped += unsynced - kept;
    if (kept > 0) {
      report.tornTails++;
      // Pages written back out of order: part of the kept tail holds zeros or other bytes.
      if (random() < 0.5) {
        const from = s.durable + Math.floor(random() * kept);
        const length = 1 + Math.floor(random() * (s.durable + kept - from));
        const junk = random() < 0.5 ? Buffer.alloc(length) : randomBytes(length);
        const fd = openSync(abs, 'r+');
        try {
          writeSync(fd, junk, 0, length, from);
        } finally {
          closeSync(fd);
        }
        report.scrambledTails++;
      }
    }
  }
  return report;
}

function fresh(status: FileState['status'], durable: number): FileState {
  return { status, durable, backup: null, truncation: null };
}
