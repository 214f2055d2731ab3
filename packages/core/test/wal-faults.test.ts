import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isSluiceError } from '@sluice/protocol';
import type { SluiceError } from '@sluice/protocol';
import { FaultyStorage } from '../src/storage/faulty-storage.js';
import { LocalStorage } from '../src/storage/local-storage.js';
import { replayWal } from '../src/wal/wal-reader.js';
import { WalWriter } from '../src/wal/wal-writer.js';

const SHARD = 'shard-001';

let dir: string;
let storage: FaultyStorage;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-wal-faults-'));
  storage = new FaultyStorage(new LocalStorage(dir));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const payload = (n: number): Uint8Array => new TextEncoder().encode(`payload ${n}`);

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

async function replayLsns(from = 1): Promise<number[]> {
  const lsns: number[] = [];
  await replayWal(new LocalStorage(dir), SHARD, from, (lsn) => void lsns.push(lsn), {
    warn: () => undefined,
  });
  return lsns;
}

describe('WAL under storage faults', () => {
  it('a failed fsync surfaces as SLUICE_IO with its errno and fails the writer for good', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payload(1));
    await wal.sync();
    storage.inject({ op: 'sync', errno: 'EIO' });
    wal.append(payload(2));
    const err = await rejection(wal.sync());
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('EIO');
    expect(wal.syncedLsn).toBe(1);
    // No retry may pretend durability after a failed fsync.
    expect(thrown(() => wal.append(payload(3)))).toBe(err);
    expect(await rejection(wal.sync())).toBe(err);
    expect(await rejection(wal.writePending())).toBe(err);
    expect(await rejection(wal.rotate())).toBe(err);
    expect(await rejection(wal.close())).toBe(err);
    // What reached the file is still a valid log prefix.
    expect(await replayLsns()).toEqual([1, 2]);
  });

  it('a failed write (ENOSPC) rejects writePending and every later sync', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payload(1));
    await wal.sync();
    storage.inject({ op: 'write', errno: 'ENOSPC' });
    wal.append(payload(2));
    const err = await rejection(wal.writePending());
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('ENOSPC');
    expect(await rejection(wal.sync())).toBe(err);
    expect(await rejection(wal.close())).toBe(err);
    expect(await replayLsns()).toEqual([1]);
  });

  it('a failed segment switch fails the writer; the log stays replayable', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payload(1));
    storage.inject({ op: 'openAppend', errno: 'EIO' });
    expect((await rejection(wal.rotate())).details.errno).toBe('EIO');
    expect(thrown(() => wal.append(payload(2))).code).toBe(ErrorCode.IO);
    await rejection(wal.close());
    expect(await replayLsns()).toEqual([1]);
  });

  it('a read error during replay is SLUICE_IO, never mistaken for a torn tail', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    for (let i = 1; i <= 5; i++) wal.append(payload(i));
    await wal.close();
    storage.inject({ op: 'getRange', errno: 'EIO' });
    const warnings: string[] = [];
    const err = await rejection(
      replayWal(storage, SHARD, 1, () => undefined, { warn: (m) => warnings.push(m) }),
    );
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('EIO');
    expect(warnings).toEqual([]);
    expect(await replayLsns()).toEqual([1, 2, 3, 4, 5]);
  });

  it('a failed repair reports SLUICE_IO and leaves the log to be cut again', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    for (let i = 1; i <= 5; i++) wal.append(payload(i));
    await wal.close();
    const file = await storage.openAppend(`${SHARD}/wal/${'1'.padStart(20, '0')}.wal`);
    await file.write([new Uint8Array([1, 2, 3])]); // torn tail
    await file.close();
    storage.inject({ op: 'truncate', errno: 'EIO' });
    const err = await rejection(replayWal(storage, SHARD, 1, () => undefined, { warn: () => undefined }));
    expect(err.details.errno).toBe('EIO');
    const lsns: number[] = [];
    const r = await replayWal(storage, SHARD, 1, (lsn) => void lsns.push(lsn), { warn: () => undefined });
    expect(lsns).toEqual([1, 2, 3, 4, 5]);
    expect(r.truncated).not.toBeNull();
  });

  it('deleteSegmentsBefore reports a failed delete and can be retried', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payload(1));
    await wal.rotate();
    storage.inject({ op: 'delete', errno: 'EIO' });
    expect((await rejection(wal.deleteSegmentsBefore(2))).details.errno).toBe('EIO');
    expect(await wal.deleteSegmentsBefore(2)).toBe(1);
    // A failed delete does not affect the log: the writer keeps working.
    wal.append(payload(2));
    await wal.close();
    expect(await replayLsns(2)).toEqual([2]);
  });
});
