import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { link, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ErrorCode, SluiceError, ioError } from '@sluice/protocol';
import type { AppendFile, StagedObject, Storage, SyncStorage } from './storage.js';
import { TEMP_PREFIX, checkPath } from './storage.js';

/**
 * Storage on a local directory. Durability follows the POSIX rules: file contents are
 * durable after fsync of the file, a new or removed name only after fsync of its directory.
 *
 * @example
 * ```ts
 * const storage = new LocalStorage(dir);
 * await storage.putIfAbsent('shard-000/owner/00000000000000000001', new Uint8Array());
 * ```
 */
export class LocalStorage implements Storage {
  readonly root: string;
  readonly sync: SyncStorage;
  /** Directories known to exist durably, so each is created and fsynced at most once per instance. */
  readonly #durableDirs = new Set<string>();

  constructor(root: string) {
    this.root = resolve(root);
    this.sync = Object.freeze({
      exists: (path: string): boolean => {
        const abs = this.#abs(path);
        try {
          // throwIfNoEntry:false reports "missing" without an exception, while any other
          // error (EIO, EACCES) still throws: a fencing check must not read an I/O error as
          // "no successor".
          return statSync(abs, { throwIfNoEntry: false }) !== undefined;
        } catch (err) {
          throw ioError('stat', abs, err);
        }
      },
    });
  }

  async putIfAbsent(path: string, data: Uint8Array): Promise<boolean> {
    const abs = this.#abs(path);
    const dir = dirname(abs);
    await this.#ensureDir(dir);
    // The temporary file lives in the target directory because link() cannot cross file
    // systems; the random part keeps concurrent writers (threads share a pid) apart.
    const tmp = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let created: boolean;
    try {
      const fh = await open(tmp, 'wx').catch((err: unknown) => {
        throw ioError('putIfAbsent', tmp, err);
      });
      try {
        await fh.writeFile(data);
        // The contents must be durable before the final name can be: otherwise a power
        // loss after the directory entry reaches disk could leave an empty or partial object.
        await fh.sync();
      } catch (err) {
        throw ioError('putIfAbsent', tmp, err);
      } finally {
        await fh.close();
      }
      try {
        // link() fails with EEXIST instead of replacing, which makes create-only atomic
        // (rename() would silently overwrite).
        await link(tmp, abs);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('putIfAbsent', abs, err);
        created = false;
      }
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    // Makes the new name durable. Also done when the name already existed: it may come
    // from a concurrent or earlier call whose own directory fsync has not happened or
    // failed, and "it exists" must mean "it exists durably" to the caller.
    await fsyncDir(dir, 'putIfAbsent');
    return created;
  }

  async stage(dir: string): Promise<StagedObject> {
    const rel = checkPath(dir);
    const absDir = this.#abs(rel);
    await this.#ensureDir(absDir);
    // In the target directory, like putIfAbsent's temporary file: link() cannot cross file systems.
    const tmp = join(absDir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    const fh = await open(tmp, 'wx').catch((err: unknown) => {
      throw ioError('stage', tmp, err);
    });
    return new LocalStagedObject(fh, rel, tmp, (path) => this.#abs(path));
  }

  async clearStaged(dir: string): Promise<number> {
    const absDir = this.#abs(checkPath(dir));
    let names: string[];
    try {
      names = await readdir(absDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw ioError('clearStaged', absDir, err);
    }
    let removed = 0;
    for (const name of names) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      try {
        await unlink(join(absDir, name));
        removed++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          throw ioError('clearStaged', join(absDir, name), err);
      }
    }
    // No directory fsync: a temporary name that comes back after a power cut is removed by
    // the next owner's call, and nothing reads it in between.
    return removed;
  }

  async get(path: string): Promise<Uint8Array | undefined> {
    const abs = this.#abs(path);
    try {
      return await readFile(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError('get', abs, err);
    }
  }

  async getRange(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const abs = this.#abs(path);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new SluiceError(
        ErrorCode.INTERNAL,
        `getRange ${abs}: bad range offset=${offset} length=${length}`,
      );
    }
    let fh: FileHandle | undefined;
    try {
      fh = await open(abs, 'r');
      // Clamp to the file so a generous `length` never allocates more than exists.
      const available = Math.max(0, Math.min(length, (await fh.stat()).size - offset));
      const buf =
        into !== undefined && into.byteLength >= available
          ? into.subarray(0, available)
          : Buffer.allocUnsafe(available);
      let filled = 0;
      while (filled < available) {
        const { bytesRead } = await fh.read(buf, filled, available - filled, offset + filled);
        if (bytesRead === 0) break; // the file shrank since fstat: return what is there
        filled += bytesRead;
      }
      return filled === available ? buf : buf.subarray(0, filled);
    } catch (err) {
      throw ioError('getRange', abs, err);
    } finally {
      await fh?.close();
    }
  }

  async size(path: string): Promise<number | undefined> {
    const abs = this.#abs(path);
    try {
      return (await stat(abs)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw ioError('size', abs, err);
    }
  }

  async list(prefix: string): Promise<string[]> {
    const base = checkPath(prefix, true);
    const absBase = base === '' ? this.root : join(this.root, base);
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // A missing prefix (or one naming a file) simply holds no objects.
        if (rel === '' && (code === 'ENOENT' || code === 'ENOTDIR')) return;
        throw ioError('list', dir, err);
      }
      for (const entry of entries) {
        if (entry.name.startsWith(TEMP_PREFIX)) continue;
        const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) await walk(join(dir, entry.name), childRel);
        else if (entry.isFile()) out.push(childRel);
      }
    };
    await walk(absBase, '');
    // Code-unit order, like an object store's key order for ASCII names; no locale rules.
    return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async delete(path: string): Promise<void> {
    const abs = this.#abs(path);
    try {
      await unlink(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('delete', abs, err);
    }
    // The removal is durable only once the directory is fsynced. This runs even when the
    // file was already gone: an earlier call may have unlinked it and then failed to fsync.
    await fsyncDir(dirname(abs), 'delete', true);
  }

  async openAppend(path: string): Promise<AppendFile> {
    const abs = this.#abs(path);
    const dir = dirname(abs);
    await this.#ensureDir(dir);
    let fh: FileHandle;
    try {
      fh = await open(abs, 'wx');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('openAppend', abs, err);
      try {
        fh = await open(abs, 'r+');
      } catch (err2) {
        throw ioError('openAppend', abs, err2);
      }
    }
    try {
      // The file's name must survive power loss before anything written into it is
      // acknowledged: fsync of the file alone does not persist its directory entry. This
      // runs for an existing name too: a writer that crashed right after creating it may
      // never have fsynced the directory, and its successor reuses the (empty) segment.
      await fsyncDir(dir, 'openAppend');
      const { size } = await fh.stat();
      return new LocalAppendFile(fh, checkPath(path), abs, size);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw ioError('openAppend', abs, err);
    }
  }

  #abs(path: string): string {
    return join(this.root, checkPath(path));
  }

  /**
   * mkdir -p with durability: each directory it creates is followed by an fsync of its
   * parent, since a new directory's entry is otherwise lost on power loss together with
   * everything below it.
   */
  async #ensureDir(dir: string): Promise<void> {
    if (this.#durableDirs.has(dir)) return;
    try {
      await mkdir(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        const parent = dirname(dir);
        if (parent === dir) throw ioError('mkdir', dir, err);
        await this.#ensureDir(parent);
        await mkdir(dir).catch((err2: unknown) => {
          if ((err2 as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('mkdir', dir, err2);
        });
      } else if (code !== 'EEXIST') {
        throw ioError('mkdir', dir, err);
      } else if (!(await stat(dir).catch(() => undefined))?.isDirectory()) {
        // Something else holds the name: fail now, and do not remember it as a directory.
        throw ioError(
          'mkdir',
          dir,
          Object.assign(new Error(`${dir} exists and is not a directory`), { code: 'ENOTDIR' }),
        );
      }
    }
    // Also fsync on EEXIST: another thread may have created the directory and not yet
    // fsynced its parent. It costs one fsync per directory per instance.
    await fsyncDir(dirname(dir), 'mkdir');
    this.#durableDirs.add(dir);
  }
}

/** fsync of a directory: the only way to make creation or removal of a name in it durable. */
async function fsyncDir(dir: string, op: string, missingOk = false): Promise<void> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw ioError(`${op} (fsync directory)`, dir, err);
  } finally {
    await fh?.close();
  }
}

class LocalAppendFile implements AppendFile {
  readonly path: string;
  /** The file system path, for error messages. */
  readonly #abs: string;
  readonly #fh: FileHandle;
  #size: number;
  #closed = false;
  /** Serialises write/truncate/close: each write goes at the offset the previous one left. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(fh: FileHandle, path: string, abs: string, size: number) {
    this.#fh = fh;
    this.path = path;
    this.#abs = abs;
    this.#size = size;
  }

  get size(): number {
    return this.#size;
  }

  write(chunks: readonly Uint8Array[]): Promise<void> {
    return this.#serial(async () => {
      this.#checkOpen('write');
      // Positional writes rather than O_APPEND: after a failed (possibly partial) write
      // `size` has not moved, so the next write overwrites the partial bytes instead of
      // leaving garbage in the middle of the file.
      try {
        this.#size = await writeAllAt(this.#fh, chunks, this.#size);
      } catch (err) {
        throw ioError('write', this.#abs, err);
      }
    });
  }

  async sync(): Promise<void> {
    this.#checkOpen('sync');
    try {
      // fdatasync: the data plus the metadata needed to read it back (the file size), and
      // not the timestamps, which recovery never needs.
      await this.#fh.datasync();
    } catch (err) {
      throw ioError('sync', this.#abs, err);
    }
  }

  truncate(length: number): Promise<void> {
    return this.#serial(async () => {
      this.#checkOpen('truncate');
      try {
        await this.#fh.truncate(length);
        // The new length is metadata: fsync so that cut bytes cannot come back after a crash.
        await this.#fh.sync();
      } catch (err) {
        throw ioError('truncate', this.#abs, err);
      }
      this.#size = length;
    });
  }

  close(): Promise<void> {
    return this.#serial(async () => {
      if (this.#closed) return;
      this.#closed = true;
      try {
        await this.#fh.close();
      } catch (err) {
        throw ioError('close', this.#abs, err);
      }
    });
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #checkOpen(op: string): void {
    if (this.#closed) throw new SluiceError(ErrorCode.INTERNAL, `${op} ${this.#abs}: file is closed`);
  }
}

/** A staged object on local disk: a temporary file in the target directory, linked on publish. */
class LocalStagedObject implements StagedObject {
  readonly #fh: FileHandle;
  /** The storage-relative directory; a published name must be in it (link cannot move it). */
  readonly #dir: string;
  readonly #tmp: string;
  readonly #abs: (path: string) => string;
  #size = 0;
  #state: 'open' | 'published' | 'discarded' = 'open';
  #tail: Promise<unknown> = Promise.resolve();

  constructor(fh: FileHandle, dir: string, tmp: string, abs: (path: string) => string) {
    this.#fh = fh;
    this.#dir = dir;
    this.#tmp = tmp;
    this.#abs = abs;
  }

  get size(): number {
    return this.#size;
  }

  append(chunks: readonly Uint8Array[]): Promise<void> {
    return this.#serial(async () => {
      this.#checkOpen('append');
      // Positional, as in LocalAppendFile: a failed partial write is overwritten by the next.
      try {
        this.#size = await writeAllAt(this.#fh, chunks, this.#size);
      } catch (err) {
        throw ioError('append', this.#tmp, err);
      }
    });
  }

  publishIfAbsent(path: string): Promise<boolean> {
    return this.#serial(async () => {
      this.#checkOpen('publishIfAbsent');
      const rel = checkPath(path);
      if (dirname(rel) !== this.#dir) {
        throw new SluiceError(
          ErrorCode.INTERNAL,
          `cannot publish ${JSON.stringify(rel)}: the object was staged in ${JSON.stringify(this.#dir)}`,
        );
      }
      const abs = this.#abs(rel);
      try {
        // The contents must be durable before the final name can be: otherwise a power loss
        // after the directory entry reaches disk could leave an empty or partial object.
        // (Once synced, a retry under another name syncs nothing new.)
        await this.#fh.sync();
      } catch (err) {
        throw ioError('publishIfAbsent', this.#tmp, err);
      }
      let created: boolean;
      try {
        // link() fails with EEXIST instead of replacing: create-only, atomically.
        await link(this.#tmp, abs);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError('publishIfAbsent', abs, err);
        created = false;
      }
      if (created) {
        this.#state = 'published';
        await this.#fh.close().catch(() => undefined);
        // The object now has two names; drop the temporary one. If this is lost to a crash,
        // the next owner's clearStaged removes it (the published name keeps the data).
        await unlink(this.#tmp).catch(() => undefined);
      }
      // Makes the new name durable; also when it existed, since "it exists" must mean "it
      // exists durably" to the caller (see LocalStorage.putIfAbsent).
      await fsyncDir(dirname(abs), 'publishIfAbsent');
      return created;
    });
  }

  discard(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state !== 'open') return;
      this.#state = 'discarded';
      await this.#fh.close().catch(() => undefined);
      try {
        await unlink(this.#tmp);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError('discard', this.#tmp, err);
      }
    });
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #checkOpen(op: string): void {
    if (this.#state !== 'open') {
      throw new SluiceError(ErrorCode.INTERNAL, `${op} ${this.#tmp}: the staged object is ${this.#state}`);
    }
  }
}

/**
 * Writes every chunk at `position` onward (writev, repeated after a short write) and returns
 * the position after them. On failure the caller keeps its old size: the next write lands
 * on the partial bytes instead of leaving garbage in the middle of the file.
 */
async function writeAllAt(fh: FileHandle, chunks: readonly Uint8Array[], position: number): Promise<number> {
  let at = position;
  let pending: Uint8Array[] = chunks.filter((c) => c.byteLength > 0);
  while (pending.length > 0) {
    const { bytesWritten } = await fh.writev(pending, at);
    at += bytesWritten;
    pending = dropBytes(pending, bytesWritten);
  }
  return at;
}

/** The chunks left after the first `n` bytes were written (a short writev). */
function dropBytes(chunks: Uint8Array[], n: number): Uint8Array[] {
  let skip = n;
  let i = 0;
  while (i < chunks.length && skip >= (chunks[i]?.byteLength ?? 0)) {
    skip -= chunks[i]?.byteLength ?? 0;
    i++;
  }
  const rest = chunks.slice(i);
  const first = rest[0];
  if (first !== undefined && skip > 0) rest[0] = first.subarray(skip);
  return rest;
}
