import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isSluiceError } from '@sluice/protocol';
import type { SluiceError } from '@sluice/protocol';
import { FaultyStorage } from '../src/storage/faulty-storage.js';
import { LocalStorage } from '../src/storage/local-storage.js';
import type { Storage } from '../src/storage/storage.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array | undefined): string | undefined =>
  b === undefined ? undefined : new TextDecoder().decode(b);

async function rejection(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

function thrown(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a throw');
}

/**
 * The storage conformance suite: every Storage implementation runs it. `make` builds a
 * fresh, empty store in the given directory.
 */
function storageConformance(name: string, make: (dir: string) => Storage): void {
  describe(`Storage conformance: ${name}`, () => {
    let dir: string;
    let storage: Storage;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'sluice-storage-'));
      storage = make(join(dir, 'root'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('putIfAbsent creates once and never overwrites', async () => {
      expect(await storage.putIfAbsent('a/b/c.json', bytes('first'))).toBe(true);
      expect(await storage.putIfAbsent('a/b/c.json', bytes('second'))).toBe(false);
      expect(text(await storage.get('a/b/c.json'))).toBe('first');
      expect(await storage.putIfAbsent('empty', new Uint8Array(0))).toBe(true);
      expect((await storage.get('empty'))?.byteLength).toBe(0);
    });

    it('concurrent putIfAbsent of one path has exactly one winner', async () => {
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => storage.putIfAbsent('race/x', bytes(`writer-${i}`))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = results.indexOf(true);
      expect(text(await storage.get('race/x'))).toBe(`writer-${winner}`);
      expect(await storage.list('race')).toEqual(['x']);
    });

    it('get, getRange and size', async () => {
      expect(await storage.get('missing')).toBeUndefined();
      expect(await storage.size('missing')).toBeUndefined();
      await storage.putIfAbsent('obj', bytes('0123456789'));
      expect(await storage.size('obj')).toBe(10);
      expect(text(await storage.getRange('obj', 2, 3))).toBe('234');
      expect(text(await storage.getRange('obj', 0, 10))).toBe('0123456789');
      expect(text(await storage.getRange('obj', 8, 5))).toBe('89');
      expect((await storage.getRange('obj', 10, 5)).byteLength).toBe(0);
      expect((await storage.getRange('obj', 3, 0)).byteLength).toBe(0);
      const err = await rejection(storage.getRange('missing', 0, 1));
      expect(err.code).toBe(ErrorCode.IO);
      expect(err.details.errno).toBe('ENOENT');
    });

    it('getRange into a reused buffer returns the same bytes as a fresh read', async () => {
      await storage.putIfAbsent('obj', bytes('0123456789'));
      const into = new Uint8Array(6).fill(0x2e);
      expect(text(await storage.getRange('obj', 2, 4, into))).toBe('2345');
      // Reused for the next read: the earlier view's contents are the caller's to drop.
      expect(text(await storage.getRange('obj', 6, 6, into))).toBe('6789');
      // Too small a buffer is not an error: the read is served from a buffer of its own.
      expect(text(await storage.getRange('obj', 0, 10, new Uint8Array(3)))).toBe('0123456789');
      expect((await storage.getRange('obj', 10, 5, into)).byteLength).toBe(0);
      const err = await rejection(storage.getRange('missing', 0, 1, into));
      expect(err.code).toBe(ErrorCode.IO);
    });

    it('list returns sorted paths relative to the prefix', async () => {
      expect(await storage.list('')).toEqual([]);
      expect(await storage.list('nothing/here')).toEqual([]);
      for (const p of ['s/wal/2.wal', 's/wal/10.wal', 's/manifest/1.json', 's/wal/sub/x', 't/y']) {
        await storage.putIfAbsent(p, bytes(p));
      }
      expect(await storage.list('s/wal')).toEqual(['10.wal', '2.wal', 'sub/x']);
      expect(await storage.list('s/wal/')).toEqual(['10.wal', '2.wal', 'sub/x']);
      expect(await storage.list('s')).toEqual(['manifest/1.json', 'wal/10.wal', 'wal/2.wal', 'wal/sub/x']);
      expect(await storage.list('')).toEqual([
        's/manifest/1.json',
        's/wal/10.wal',
        's/wal/2.wal',
        's/wal/sub/x',
        't/y',
      ]);
      expect(await storage.list('t/y')).toEqual([]);
    });

    it('delete is idempotent', async () => {
      await storage.putIfAbsent('d/x', bytes('x'));
      await storage.delete('d/x');
      await storage.delete('d/x');
      await storage.delete('never/existed');
      expect(await storage.get('d/x')).toBeUndefined();
      expect(await storage.list('d')).toEqual([]);
      expect(await storage.putIfAbsent('d/x', bytes('again'))).toBe(true);
      expect(text(await storage.get('d/x'))).toBe('again');
    });

    it('sync.exists', async () => {
      expect(storage.sync.exists('o/1')).toBe(false);
      await storage.putIfAbsent('o/1', bytes(''));
      expect(storage.sync.exists('o/1')).toBe(true);
      await storage.delete('o/1');
      expect(storage.sync.exists('o/1')).toBe(false);
    });

    it('openAppend appends, truncates and reopens at the end', async () => {
      const file = await storage.openAppend('w/seg');
      expect(file.size).toBe(0);
      expect(await storage.list('w')).toEqual(['seg']);
      await file.write([bytes('abc'), bytes(''), bytes('def')]);
      await file.write([bytes('gh')]);
      expect(file.size).toBe(8);
      await file.sync();
      expect(text(await storage.get('w/seg'))).toBe('abcdefgh');
      await file.truncate(5);
      expect(file.size).toBe(5);
      await file.write([bytes('XY')]);
      await file.close();
      await file.close();
      expect(text(await storage.get('w/seg'))).toBe('abcdeXY');

      const again = await storage.openAppend('w/seg');
      expect(again.size).toBe(7);
      await again.write([bytes('!')]);
      await again.close();
      expect(text(await storage.get('w/seg'))).toBe('abcdeXY!');
    });

    it('a large object round-trips', async () => {
      const big = new Uint8Array(3 << 20).map((_, i) => (i * 31) & 0xff);
      await storage.putIfAbsent('big', big);
      expect(Buffer.compare((await storage.get('big')) ?? new Uint8Array(0), big)).toBe(0);
      expect(
        Buffer.from(await storage.getRange('big', 1 << 20, 16)).equals(big.subarray(1 << 20, (1 << 20) + 16)),
      ).toBe(true);
    });

    it('a staged object is invisible until published, then durable under its name', async () => {
      const staged = await storage.stage('g');
      await staged.append([bytes('ab'), bytes(''), bytes('cd')]);
      await staged.append([bytes('e')]);
      expect(staged.size).toBe(5);
      expect(await storage.list('g')).toEqual([]);
      expect(await storage.get('g/final')).toBeUndefined();
      expect(await staged.publishIfAbsent('g/final')).toBe(true);
      expect(text(await storage.get('g/final'))).toBe('abcde');
      expect(await storage.list('g')).toEqual(['final']);
      // Spent: no more appends or publishes; discard leaves the published object alone.
      expect((await rejection(staged.append([bytes('x')]))).code).toBe(ErrorCode.INTERNAL);
      await staged.discard();
      expect(text(await storage.get('g/final'))).toBe('abcde');
    });

    it('publishIfAbsent never replaces: false, and the object stays staged for another name', async () => {
      await storage.putIfAbsent('g/taken', bytes('old'));
      const staged = await storage.stage('g');
      await staged.append([bytes('new')]);
      expect(await staged.publishIfAbsent('g/taken')).toBe(false);
      expect(text(await storage.get('g/taken'))).toBe('old');
      expect(await staged.publishIfAbsent('g/free')).toBe(true);
      expect(text(await storage.get('g/free'))).toBe('new');
      expect(await storage.list('g')).toEqual(['free', 'taken']);
    });

    it('a staged object publishes only into its own directory', async () => {
      const staged = await storage.stage('g');
      expect((await rejection(staged.publishIfAbsent('h/x'))).code).toBe(ErrorCode.INTERNAL);
      expect((await rejection(staged.publishIfAbsent('g/sub/x'))).code).toBe(ErrorCode.INTERNAL);
      await staged.discard();
      expect(await storage.list('')).toEqual([]);
    });

    it('discard and clearStaged remove staged bytes; published objects stay', async () => {
      const dropped = await storage.stage('g');
      await dropped.append([bytes('x')]);
      await dropped.discard();
      await dropped.discard();
      const left = await storage.stage('g');
      await left.append([bytes('left behind')]);
      const kept = await storage.stage('g');
      await kept.append([bytes('kept')]);
      await kept.publishIfAbsent('g/kept');
      expect(await storage.clearStaged('g')).toBe(1);
      expect(await storage.clearStaged('g')).toBe(0);
      expect(await storage.clearStaged('missing/dir')).toBe(0);
      expect(await storage.list('g')).toEqual(['kept']);
      expect(text(await storage.get('g/kept'))).toBe('kept');
      await left.discard(); // its writer learns nothing is left (and closes its handle)
      expect(await storage.list('g')).toEqual(['kept']);
    });

    it('rejects absolute paths, "..", "." and empty segments with SLUICE_INTERNAL', async () => {
      for (const bad of ['/etc/passwd', '../x', 'a/../b', 'a//b', './a', 'a/.', '', 'a\\b', 'a/.tmp-x']) {
        const errors = [
          await rejection(storage.putIfAbsent(bad, bytes('x'))),
          await rejection(storage.get(bad)),
          await rejection(storage.getRange(bad, 0, 1)),
          await rejection(storage.size(bad)),
          await rejection(storage.delete(bad)),
          await rejection(storage.openAppend(bad)),
          thrown(() => storage.sync.exists(bad)),
        ];
        for (const err of errors) expect(err.code, bad).toBe(ErrorCode.INTERNAL);
      }
      expect((await rejection(storage.list('../up'))).code).toBe(ErrorCode.INTERNAL);
      expect((await rejection(storage.list('/abs'))).code).toBe(ErrorCode.INTERNAL);
    });
  });
}

storageConformance('LocalStorage', (dir) => new LocalStorage(dir));
storageConformance('FaultyStorage without faults', (dir) => new FaultyStorage(new LocalStorage(dir)));

describe('LocalStorage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-local-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves root to an absolute directory and leaves no temporary files', async () => {
    const storage = new LocalStorage(join(dir, 'a', '..', 'r'));
    expect(storage.root).toBe(join(dir, 'r'));
    await storage.putIfAbsent('x/y', bytes('1'));
    await storage.putIfAbsent('x/y', bytes('2'));
    expect(await readdir(join(dir, 'r', 'x'))).toEqual(['y']);
  });

  it('list skips leftover temporary files of a crashed put', async () => {
    const storage = new LocalStorage(dir);
    await storage.putIfAbsent('m/1.json', bytes('{}'));
    await writeFile(join(dir, 'm', '.tmp-deadbeef'), 'partial');
    expect(await storage.list('m')).toEqual(['1.json']);
  });

  it('wraps system errors as SLUICE_IO with path and errno', async () => {
    const storage = new LocalStorage(dir);
    await storage.putIfAbsent('file', bytes('x'));
    // A path below a regular file cannot exist: ENOTDIR from the OS.
    const err = await rejection(storage.putIfAbsent('file/child', bytes('y')));
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('ENOTDIR');
    expect(String(err.details.path)).toContain(dir);
  });
});

describe('FaultyStorage', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-faulty-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('fails the n-th matching call with the scripted errno, then recovers', async () => {
    const storage = new FaultyStorage(new LocalStorage(dir));
    storage.inject({ op: 'putIfAbsent', nth: 2, errno: 'ENOSPC' });
    expect(await storage.putIfAbsent('a', bytes('a'))).toBe(true);
    const err = await rejection(storage.putIfAbsent('b', bytes('b')));
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('ENOSPC');
    expect(await storage.get('b')).toBeUndefined(); // 'before' faults do not touch storage
    expect(await storage.putIfAbsent('c', bytes('c'))).toBe(true);
    expect(storage.calls('putIfAbsent')).toBe(3);
  });

  it('filters by path, repeats `times` and can fail after the call took effect', async () => {
    const storage = new FaultyStorage(new LocalStorage(dir));
    storage.inject({ op: 'get', path: 'bad', times: 2 });
    await storage.putIfAbsent('good', bytes('g'));
    await storage.putIfAbsent('bad', bytes('b'));
    expect(text(await storage.get('good'))).toBe('g');
    expect((await rejection(storage.get('bad'))).details.errno).toBe('EIO');
    expect((await rejection(storage.get('bad'))).details.errno).toBe('EIO');
    expect(text(await storage.get('bad'))).toBe('b');

    storage.inject({ op: 'delete', when: 'after' });
    expect((await rejection(storage.delete('good'))).code).toBe(ErrorCode.IO);
    expect(await storage.get('good')).toBeUndefined();
  });

  it('injects into append files: write, sync, truncate', async () => {
    const storage = new FaultyStorage(new LocalStorage(dir));
    storage.inject({ op: 'write', errno: 'ENOSPC' });
    storage.inject({ op: 'sync', errno: 'EIO' });
    storage.inject({ op: 'truncate', errno: 'EIO' });
    const file = await storage.openAppend('f');
    expect((await rejection(file.write([bytes('x')]))).details.errno).toBe('ENOSPC');
    expect(file.size).toBe(0);
    await file.write([bytes('y')]);
    expect((await rejection(file.sync())).details.errno).toBe('EIO');
    await file.sync();
    expect((await rejection(file.truncate(0))).details.errno).toBe('EIO');
    await file.close();
    expect(text(await storage.get('f'))).toBe('y');
  });

  it('counts a staged object as the calls it replaces: openAppend, write, putIfAbsent', async () => {
    const storage = new FaultyStorage(new LocalStorage(dir));
    storage.inject({ op: 'write', path: 'g/', errno: 'ENOSPC' });
    storage.inject({ op: 'putIfAbsent', path: 'g/final', errno: 'EIO' });
    const staged = await storage.stage('g');
    expect(storage.calls('openAppend')).toBe(1);
    const err = await rejection(staged.append([bytes('x')]));
    expect(err.details.errno).toBe('ENOSPC');
    expect(staged.size).toBe(0);
    await staged.append([bytes('y')]);
    expect((await rejection(staged.publishIfAbsent('g/final'))).details.errno).toBe('EIO');
    expect(await staged.publishIfAbsent('g/final')).toBe(true);
    expect(text(await storage.get('g/final'))).toBe('y');
    expect(storage.calls('write')).toBe(2);
    expect(storage.calls('putIfAbsent')).toBe(2);
  });

  it('clear disarms every fault', async () => {
    const storage = new FaultyStorage(new LocalStorage(dir));
    storage.inject({ op: 'list', times: Infinity });
    expect((await rejection(storage.list(''))).code).toBe(ErrorCode.IO);
    storage.clear();
    expect(await storage.list('')).toEqual([]);
  });
});
