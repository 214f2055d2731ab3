import { constants as osConstants } from 'node:os';
import { ioError } from '@sluice/protocol';
import type { AppendFile, StagedObject, Storage, SyncStorage } from './storage.js';
import { TEMP_PREFIX } from './storage.js';

/**
 * FAULT INJECTION FOR TESTS. A Storage wrapper that makes scripted calls fail with a
 * system error (EIO, ENOSPC, ...), surfacing exactly as a real failure would: a
 * SLUICE_IO SluiceError whose `details.errno` is the injected errno. It lives with the
 * code (not under test/) so that worker threads started by tests can construct it.
 *
 * With no faults injected it is a transparent pass-through.
 *
 * @example
 * ```ts
 * const storage = new FaultyStorage(new LocalStorage(dir));
 * storage.inject({ op: 'sync', nth: 2, errno: 'EIO' }); // the second sync from now fails
 * ```
 */
export class FaultyStorage implements Storage {
  readonly #inner: Storage;
  readonly #faults: ArmedFault[] = [];
  readonly #calls = new Map<FaultOp, number>();

  constructor(inner: Storage) {
    this.#inner = inner;
  }

  get root(): string {
    return this.#inner.root;
  }

  get sync(): SyncStorage {
    return this.#inner.sync;
  }

  /** Arms a fault. Faults are counted from the moment they are injected. */
  inject(fault: Fault): void {
    const nth = fault.nth ?? 1;
    const times = fault.times ?? 1;
    if (!Number.isInteger(nth) || nth < 1) throw new RangeError('fault.nth must be a positive integer');
    if (!(times >= 1)) throw new RangeError('fault.times must be at least 1');
    this.#faults.push({
      op: fault.op,
      errno: fault.errno ?? 'EIO',
      path: fault.path,
      when: fault.when ?? 'before',
      skip: nth - 1,
      remaining: times,
    });
  }

  /** Disarms every fault. */
  clear(): void {
    this.#faults.length = 0;
  }

  /** How many calls of `op` this wrapper has seen (failed ones included). */
  calls(op: FaultOp): number {
    return this.#calls.get(op) ?? 0;
  }

  putIfAbsent(path: string, data: Uint8Array): Promise<boolean> {
    return this.#call('putIfAbsent', path, () => this.#inner.putIfAbsent(path, data));
  }

  get(path: string): Promise<Uint8Array | undefined> {
    return this.#call('get', path, () => this.#inner.get(path));
  }

  getRange(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.#call('getRange', path, () => this.#inner.getRange(path, offset, length, into));
  }

  size(path: string): Promise<number | undefined> {
    return this.#call('size', path, () => this.#inner.size(path));
  }

  list(prefix: string): Promise<string[]> {
    return this.#call('list', prefix, () => this.#inner.list(prefix));
  }

  delete(path: string): Promise<void> {
    return this.#call('delete', path, () => this.#inner.delete(path));
  }

  async openAppend(path: string): Promise<AppendFile> {
    const file = await this.#call('openAppend', path, () => this.#inner.openAppend(path));
    const call = <T>(op: FaultOp, fn: () => Promise<T>): Promise<T> => this.#call(op, path, fn);
    return {
      path: file.path,
      get size() {
        return file.size;
      },
      write: (chunks) => call('write', () => file.write(chunks)),
      sync: () => call('sync', () => file.sync()),
      truncate: (length) => call('truncate', () => file.truncate(length)),
      close: () => file.close(),
    };
  }

  /**
   * A staged object's calls count as the calls they replace (see stageThrough), so a rule on
   * generation-file creation keeps meaning what it meant.
   */
  async stage(dir: string): Promise<StagedObject> {
    return stageThrough(this.#inner, dir, (op, path, fn) => this.#call(op, path, fn));
  }

  /** Counts as a 'delete' of the directory's staged names. */
  clearStaged(dir: string): Promise<number> {
    return this.#call('delete', stagedLabel(dir), () => this.#inner.clearStaged(dir));
  }

  async #call<T>(op: FaultOp, path: string, fn: () => Promise<T>): Promise<T> {
    this.#calls.set(op, this.calls(op) + 1);
    const fault = this.#trip(op, path);
    if (fault?.when === 'before') throw injected(fault, op, path);
    const result = await fn();
    if (fault?.when === 'after') throw injected(fault, op, path);
    return result;
  }

  /** The fault this call triggers, if any; consumes one count of every matching fault. */
  #trip(op: FaultOp, path: string): ArmedFault | undefined {
    let hit: ArmedFault | undefined;
    for (const fault of this.#faults) {
      if (fault.op !== op || fault.remaining <= 0) continue;
      if (fault.path !== undefined && !path.includes(fault.path)) continue;
      if (fault.skip > 0) {
        fault.skip--;
        continue;
      }
      fault.remaining--;
      hit ??= fault;
    }
    return hit;
  }
}

/** Storage calls a fault can target. `write`, `sync` and `truncate` are AppendFile calls. */
export type FaultOp =
  | 'putIfAbsent'
  | 'get'
  | 'getRange'
  | 'size'
  | 'list'
  | 'delete'
  | 'openAppend'
  | 'write'
  | 'sync'
  | 'truncate';

export interface Fault {
  readonly op: FaultOp;
  /** Fail the n-th matching call from now (1 = the next one). Default 1. */
  readonly nth?: number;
  /** How many consecutive matching calls fail, starting at `nth`. Default 1; Infinity = all. */
  readonly times?: number;
  /** The system error code to simulate. Default 'EIO'. */
  readonly errno?: string;
  /** Only calls whose path contains this string match. */
  readonly path?: string;
  /**
   * 'before' (default): fail without touching the wrapped storage. 'after': perform the
   * call, then report failure — e.g. a put that landed but whose fsync "failed".
   */
  readonly when?: 'before' | 'after';
}

interface ArmedFault {
  readonly op: FaultOp;
  readonly errno: string;
  readonly path: string | undefined;
  readonly when: 'before' | 'after';
  skip: number;
  remaining: number;
}

function injected(fault: ArmedFault, op: FaultOp, path: string): Error {
  const errnoNumbers = osConstants.errno as Readonly<Record<string, number>>;
  const sys: NodeJS.ErrnoException = new Error(`${fault.errno}: injected fault, ${op} '${path}'`);
  sys.code = fault.errno;
  sys.errno = -(errnoNumbers[fault.errno] ?? 0);
  sys.syscall = op;
  sys.path = path;
  return ioError(op, path, sys);
}

/** The path fault rules see for a directory's staged objects (they have no name of their own yet). */
export function stagedLabel(dir: string): string {
  return `${dir}/${TEMP_PREFIX}staged`;
}

/**
 * `inner.stage(dir)`, each call passed through `call` under the operation it stands for:
 * opening as 'openAppend' and each append as 'write' (both on stagedLabel(dir)),
 * publishing as 'putIfAbsent' on the final name. Shared by the fault-injecting wrappers.
 */
export async function stageThrough(
  inner: Storage,
  dir: string,
  call: <T>(op: 'openAppend' | 'write' | 'putIfAbsent', path: string, fn: () => Promise<T>) => Promise<T>,
): Promise<StagedObject> {
  const label = stagedLabel(dir);
  const staged = await call('openAppend', label, () => inner.stage(dir));
  return {
    get size() {
      return staged.size;
    },
    append: (chunks) => call('write', label, () => staged.append(chunks)),
    publishIfAbsent: (path) => call('putIfAbsent', path, () => staged.publishIfAbsent(path)),
    discard: () => staged.discard(),
  };
}
