/**
 * A Storage held in a Map, for corruption fuzzing of the recovery components at thousands of
 * cases a second (no disk, no threads). Follows the Storage contract closely enough for
 * replayWal (with repair), ManifestStore and readTableMeta; it is not a conformance-tested
 * backend.
 */
import { checkPath } from '@sluice/core';
import type { AppendFile, StagedObject, Storage, SyncStorage } from '@sluice/core';
import { ioError } from '@sluice/protocol';

/** A copy that owns its bytes (Buffer#slice would return a view). */
const copy = (b: Uint8Array): Uint8Array => new Uint8Array(b);

export class MemoryStorage implements Storage {
  readonly root: string;
  readonly files: Map<string, Uint8Array>;
  readonly sync: SyncStorage;

  constructor(files: ReadonlyMap<string, Uint8Array> = new Map(), root = '/memory') {
    this.root = root;
    this.files = new Map([...files].map(([k, v]) => [k, copy(v)]));
    this.sync = { exists: (path) => this.files.has(checkPath(path)) };
  }

  async putIfAbsent(path: string, data: Uint8Array): Promise<boolean> {
    const p = checkPath(path);
    if (this.files.has(p)) return false;
    this.files.set(p, copy(data));
    return true;
  }

  async get(path: string): Promise<Uint8Array | undefined> {
    const f = this.files.get(checkPath(path));
    return f === undefined ? undefined : copy(f);
  }

  async getRange(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const f = this.files.get(checkPath(path));
    if (f === undefined)
      throw ioError('getRange', path, Object.assign(new Error('missing'), { code: 'ENOENT' }));
    const bytes = f.subarray(offset, offset + length);
    if (into === undefined || into.byteLength < bytes.byteLength) return copy(bytes);
    into.set(bytes);
    return into.subarray(0, bytes.byteLength);
  }

  async size(path: string): Promise<number | undefined> {
    return this.files.get(checkPath(path))?.byteLength;
  }

  async list(prefix: string): Promise<string[]> {
    const base = checkPath(prefix, true);
    const start = base === '' ? '' : `${base}/`;
    return [...this.files.keys()]
      .filter((k) => k.startsWith(start))
      .map((k) => k.slice(start.length))
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async delete(path: string): Promise<void> {
    this.files.delete(checkPath(path));
  }

  async openAppend(path: string): Promise<AppendFile> {
    const p = checkPath(path);
    if (!this.files.has(p)) this.files.set(p, new Uint8Array(0));
    const files = this.files;
    return {
      path: p,
      get size() {
        return files.get(p)?.byteLength ?? 0;
      },
      async write(chunks) {
        const old = files.get(p) ?? new Uint8Array(0);
        const total = chunks.reduce((n, c) => n + c.byteLength, old.byteLength);
        const next = new Uint8Array(total);
        next.set(old, 0);
        let at = old.byteLength;
        for (const c of chunks) {
          next.set(c, at);
          at += c.byteLength;
        }
        files.set(p, next);
      },
      async sync() {},
      async truncate(length) {
        files.set(p, copy((files.get(p) ?? new Uint8Array(0)).subarray(0, length)));
      },
      async close() {},
    };
  }

  /** Staged bytes are held aside and enter `files` only when published. */
  async stage(dir: string): Promise<StagedObject> {
    const d = checkPath(dir);
    const files = this.files;
    let parts: Uint8Array[] = [];
    let size = 0;
    return {
      get size() {
        return size;
      },
      async append(chunks) {
        for (const c of chunks) {
          parts.push(copy(c));
          size += c.byteLength;
        }
      },
      async publishIfAbsent(path) {
        const p = checkPath(path);
        if (!p.startsWith(`${d}/`)) throw new Error(`${p} is not in ${d}`);
        if (files.has(p)) return false;
        const whole = new Uint8Array(size);
        let at = 0;
        for (const c of parts) {
          whole.set(c, at);
          at += c.byteLength;
        }
        files.set(p, whole);
        parts = [];
        return true;
      },
      async discard() {
        parts = [];
      },
    };
  }

  async clearStaged(): Promise<number> {
    return 0;
  }
}
