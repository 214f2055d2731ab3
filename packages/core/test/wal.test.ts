import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isSluiceError } from '@sluice/protocol';
import type { SluiceError } from '@sluice/protocol';
import { LocalStorage } from '../src/storage/local-storage.js';
import type { AppendFile } from '../src/storage/storage.js';
import type { ReplayOptions } from '../src/wal/wal-reader.js';
import { replayWal } from '../src/wal/wal-reader.js';
import { WAL_HEADER_BYTES } from '../src/wal/wal-record.js';
import { WalWriter } from '../src/wal/wal-writer.js';

const SHARD = 'shard-000';

interface Replayed {
  lsn: number;
  payload: Buffer;
}

let dir: string;
let storage: LocalStorage;
let warnings: string[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-wal-'));
  storage = new LocalStorage(dir);
  warnings = [];
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const walPath = (...parts: string[]): string => join(dir, SHARD, 'wal', ...parts);
const segName = (start: number): string => `${String(start).padStart(20, '0')}.wal`;
const segmentFiles = async (): Promise<string[]> => (await readdir(walPath()).catch(() => [])).sort();
const payloadOf = (lsn: number, size = 20): Buffer => Buffer.alloc(size, `record-${lsn};`);

async function replay(fromLsn = 1, options: ReplayOptions = {}) {
  const got: Replayed[] = [];
  const result = await replayWal(
    storage,
    SHARD,
    fromLsn,
    (lsn, payload) => {
      got.push({ lsn, payload: Buffer.from(payload) });
    },
    { warn: (m) => warnings.push(m), ...options },
  );
  return { ...result, got, lsns: got.map((r) => r.lsn) };
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function rejection(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** Writes records 1..n, rotating after every `perSegment` records; returns the segment start LSNs. */
async function writeLog(n: number, perSegment = n, size = 20): Promise<number[]> {
  const wal = await WalWriter.open(storage, SHARD, 1);
  const starts = [1];
  for (let lsn = 1; lsn <= n; lsn++) {
    expect(wal.append(payloadOf(lsn, size))).toBe(lsn);
    if (lsn % perSegment === 0 && lsn < n) {
      await wal.rotate();
      starts.push(lsn + 1);
    }
  }
  await wal.close();
  return starts;
}

describe('WalWriter + replayWal round trip', () => {
  it('replays exactly what was appended, then a reopened writer continues the log', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    expect(wal.nextLsn).toBe(1);
    expect(wal.lastLsn).toBe(0);
    for (let i = 1; i <= 100; i++) wal.append(payloadOf(i, i));
    expect(wal.lastLsn).toBe(100);
    await wal.writePending();
    await wal.sync();
    expect(wal.syncedLsn).toBe(100);
    expect(wal.bytes).toBe((await stat(walPath(segName(1)))).size);
    await wal.close();

    const first = await replay();
    expect(first.lsns).toEqual(range(1, 100));
    expect(first.got.every((r) => r.payload.equals(payloadOf(r.lsn, r.lsn)))).toBe(true);
    expect(first).toMatchObject({ lastLsn: 100, records: 100, truncated: null });
    expect(first.bytes).toBe(100 * WAL_HEADER_BYTES + (100 * 101) / 2);
    expect(warnings).toEqual([]);

    const next = await WalWriter.open(storage, SHARD, first.lastLsn + 1);
    expect(next.append(payloadOf(101))).toBe(101);
    await next.close();
    expect(await segmentFiles()).toEqual([segName(1), segName(101)]);
    expect((await replay()).lsns).toEqual(range(1, 101));
  });

  it('copies payloads at append: the caller may reuse its buffer at once', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    const scratch = Buffer.from('aaaa');
    wal.append(scratch);
    scratch.fill('b');
    wal.append([Buffer.from('xy'), new Uint8Array(0), scratch]);
    scratch.fill('c');
    await wal.close();
    const { got } = await replay();
    expect(got.map((r) => r.payload.toString())).toEqual(['aaaa', 'xybbbb']);
  });

  it('round-trips 10 MB payloads, read in small chunks and in default ones', async () => {
    const big = [randomBytes(10 << 20), randomBytes(10 << 20), randomBytes(3)];
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(big[0] as Buffer);
    await wal.sync();
    await wal.rotate();
    wal.append(big[1] as Buffer);
    wal.append(big[2] as Buffer);
    await wal.close();
    for (const readChunkBytes of [64 << 10, undefined]) {
      const { got, lastLsn } = await replay(1, readChunkBytes === undefined ? {} : { readChunkBytes });
      expect(lastLsn).toBe(3);
      expect(got.map((r) => r.lsn)).toEqual([1, 2, 3]);
      got.forEach((r, i) => expect(r.payload.equals(big[i] as Buffer)).toBe(true));
    }
  });

  it('round-trips many small records across rotations, with odd read chunk sizes', async () => {
    const starts = await writeLog(5000, 700, 13);
    expect(await segmentFiles()).toEqual(starts.map(segName));
    for (const readChunkBytes of [7, 50, 4096, undefined]) {
      const r = await replay(1, readChunkBytes === undefined ? {} : { readChunkBytes });
      expect(r.lsns).toEqual(range(1, 5000));
      expect(r.got.every((x) => x.payload.equals(payloadOf(x.lsn, 13)))).toBe(true);
      expect(r.truncated).toBeNull();
    }
    expect(warnings).toEqual([]);
  });

  it('appends made while a write is in flight never touch the bytes being written', async () => {
    // A storage whose writes wait at a gate, then copy what the chunks hold at that moment:
    // a writer that reused the memory of queued records too early would be caught here.
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let entered!: () => void;
    const inFlight = new Promise<void>((resolve) => (entered = resolve));
    const openGated = async (path: string): Promise<AppendFile> => {
      const file = await storage.openAppend(path);
      return {
        path: file.path,
        get size() {
          return file.size;
        },
        write: async (chunks) => {
          entered();
          await gate;
          await file.write(chunks.map((c) => Buffer.from(c)));
        },
        sync: () => file.sync(),
        truncate: (n) => file.truncate(n),
        close: () => file.close(),
      };
    };
    const gated = new Proxy(storage, {
      get(target, key) {
        if (key === 'openAppend') return openGated;
        const value: unknown = Reflect.get(target, key, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const wal = await WalWriter.open(gated, SHARD, 1);
    // Sizes from a few bytes to past a whole slab of record memory (1 MiB).
    const sizes = [5, 300_000, 700_000, 64, 1_200_000, 90_000, 400_000, 7];
    const first = sizes.slice(0, 4).map((n, i) => wal.append(payloadOf(i + 1, n)));
    const writing = wal.writePending();
    await inFlight;
    for (let i = 4; i < sizes.length; i++) wal.append(payloadOf(i + 1, sizes[i]));
    open();
    await writing;
    await wal.close();
    expect(first).toEqual([1, 2, 3, 4]);
    const { got } = await replay(1);
    expect(got.map((r) => r.lsn)).toEqual(range(1, sizes.length));
    got.forEach((r, i) => expect(r.payload.equals(payloadOf(i + 1, sizes[i]))).toBe(true));
  });

  it('coalesces appends made during a sync into the next sync', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payloadOf(1));
    const first = wal.sync();
    wal.append(payloadOf(2));
    const second = wal.sync();
    wal.append(payloadOf(3));
    await Promise.all([first, second]);
    expect(wal.syncedLsn).toBeGreaterThanOrEqual(2);
    await wal.sync();
    expect(wal.syncedLsn).toBe(3);
    await wal.close();
    expect((await replay()).lsns).toEqual([1, 2, 3]);
  });

  it('rotate of an empty segment does nothing; append after close is SLUICE_CLOSED', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    await wal.rotate();
    expect(await segmentFiles()).toEqual([segName(1)]);
    await wal.close();
    await wal.close();
    let err: unknown;
    try {
      wal.append(payloadOf(1));
    } catch (e) {
      err = e;
    }
    expect(isSluiceError(err, ErrorCode.CLOSED)).toBe(true);
  });

  it('replays from a middle LSN, across segments', async () => {
    await writeLog(100, 30);
    for (const from of [1, 29, 30, 31, 61, 100]) {
      const r = await replay(from);
      expect(r.lsns).toEqual(range(from, 100));
      expect(r.lastLsn).toBe(100);
    }
    // Past the end: nothing replayed, and the writer must continue at fromLsn.
    const beyond = await replay(150);
    expect(beyond.lsns).toEqual([]);
    expect(beyond.lastLsn).toBe(149);
  });

  it('an empty log replays nothing', async () => {
    expect(await replay(1)).toMatchObject({ lastLsn: 0, records: 0, truncated: null });
    expect(await replay(7)).toMatchObject({ lastLsn: 6, records: 0, truncated: null });
  });

  it('a reopened writer after a crash writes a new segment and replay returns both', async () => {
    const crashed = await WalWriter.open(storage, SHARD, 1);
    for (let i = 1; i <= 10; i++) crashed.append(payloadOf(i));
    await crashed.sync();
    crashed.append(payloadOf(11)); // queued, never written: lost with the crash
    // No close(): the process "dies" here.

    const afterCrash = await replay();
    expect(afterCrash.lastLsn).toBe(10);
    const wal = await WalWriter.open(storage, SHARD, afterCrash.lastLsn + 1);
    expect(wal.append(payloadOf(11, 5))).toBe(11);
    expect(wal.append(payloadOf(12, 5))).toBe(12);
    await wal.close();
    expect(await segmentFiles()).toEqual([segName(1), segName(11)]);
    const r = await replay();
    expect(r.lsns).toEqual(range(1, 12));
    expect(r.got[10]?.payload.equals(payloadOf(11, 5))).toBe(true);
  });

  it('reuses an empty segment of the same name, refuses to open where records exist', async () => {
    const empty = await WalWriter.open(storage, SHARD, 1);
    // Crashed before appending anything: the empty segment 1 stays behind.
    void empty;
    const wal = await WalWriter.open(storage, SHARD, 1);
    wal.append(payloadOf(1));
    await wal.close();
    expect((await rejection(WalWriter.open(storage, SHARD, 1))).code).toBe(ErrorCode.INTERNAL);
    await writeFile(walPath(segName(50)), '');
    expect((await rejection(WalWriter.open(storage, SHARD, 2))).code).toBe(ErrorCode.INTERNAL);
  });
});

describe('replayWal recovery', () => {
  it('cuts a torn tail at every byte offset inside the last record, and repairs it', async () => {
    await writeLog(5, 5, 30);
    const file = walPath(segName(1));
    const pristine = await readFile(file);
    const record = WAL_HEADER_BYTES + 30;
    const lastStart = pristine.byteLength - record;
    for (let cut = lastStart + 1; cut < pristine.byteLength; cut++) {
      await writeFile(file, pristine.subarray(0, cut));
      warnings = [];
      const r = await replay();
      expect(r.lsns, `cut at ${cut}`).toEqual([1, 2, 3, 4]);
      expect(r.lastLsn).toBe(4);
      expect(r.truncated).toMatchObject({ path: `${SHARD}/wal/${segName(1)}`, at: lastStart });
      expect(r.truncated?.reason).toMatch(/torn/);
      expect(warnings).toHaveLength(1);
      expect((await stat(file)).size).toBe(lastStart);
      // The repaired log is clean: a second replay neither warns nor cuts.
      warnings = [];
      const again = await replay();
      expect(again.lsns).toEqual([1, 2, 3, 4]);
      expect(again.truncated).toBeNull();
      expect(warnings).toEqual([]);
    }
    // And the writer continues the repaired log.
    const wal = await WalWriter.open(storage, SHARD, 5);
    wal.append(payloadOf(5, 3));
    await wal.close();
    expect((await replay()).lsns).toEqual([1, 2, 3, 4, 5]);
  });

  it('treats a zero-filled tail (power loss after a size update) as torn', async () => {
    await writeLog(3);
    const file = walPath(segName(1));
    const size = (await stat(file)).size;
    await truncate(file, size + 4096);
    const r = await replay();
    expect(r.lsns).toEqual([1, 2, 3]);
    expect(r.truncated).toMatchObject({ at: size });
    expect(r.truncated?.reason).toMatch(/zero-filled/);
    expect((await stat(file)).size).toBe(size);
  });

  it('stops at a flipped byte in a middle record: later records and segments are cut', async () => {
    await writeLog(30, 10); // segments 1, 11, 21
    const middle = walPath(segName(11));
    const bytes = await readFile(middle);
    const record = WAL_HEADER_BYTES + 20;
    const at = 4 * record; // LSN 15
    const flip = at + WAL_HEADER_BYTES + 3;
    bytes.writeUInt8(bytes.readUInt8(flip) ^ 0x01, flip);
    await writeFile(middle, bytes);

    const dry = await replay(1, { repair: false });
    expect(dry.lsns).toEqual(range(1, 14));
    expect(dry.truncated).toMatchObject({ path: `${SHARD}/wal/${segName(11)}`, at });
    expect(dry.truncated?.reason).toMatch(/crc mismatch in LSN 15/);
    expect(warnings.join('\n')).toMatch(/repair disabled/);
    expect(await segmentFiles()).toEqual([segName(1), segName(11), segName(21)]);
    expect((await stat(middle)).size).toBe(bytes.byteLength);

    warnings = [];
    const r = await replay();
    expect(r.lsns).toEqual(range(1, 14));
    expect(r.lastLsn).toBe(14);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/1 later segment/);
    expect(await segmentFiles()).toEqual([segName(1), segName(11)]);
    expect((await stat(middle)).size).toBe(at);

    const wal = await WalWriter.open(storage, SHARD, 15);
    wal.append(payloadOf(15));
    await wal.close();
    expect((await replay()).lsns).toEqual(range(1, 15));
  });

  it('cuts at a damaged header in the first record of a segment by deleting that segment', async () => {
    await writeLog(20, 10);
    const second = walPath(segName(11));
    const bytes = await readFile(second);
    bytes.writeUInt8(bytes.readUInt8(0) ^ 0xff, 0); // magic
    await writeFile(second, bytes);
    const r = await replay();
    expect(r.lsns).toEqual(range(1, 10));
    expect(r.truncated).toMatchObject({ at: 0 });
    expect(r.truncated?.reason).toMatch(/magic/);
    expect(await segmentFiles()).toEqual([segName(1)]);
    const wal = await WalWriter.open(storage, SHARD, 11);
    await wal.close();
  });

  it('cuts at a gap between segments', async () => {
    await writeLog(30, 10);
    await unlink(walPath(segName(11)));
    const r = await replay();
    expect(r.lsns).toEqual(range(1, 10));
    expect(r.truncated).toMatchObject({ path: `${SHARD}/wal/${segName(21)}`, at: 0 });
    expect(r.truncated?.reason).toMatch(/expected 11/);
    expect(await segmentFiles()).toEqual([segName(1)]);
  });

  it('never reads segments wholly before fromLsn, so leftovers there cannot cut the log', async () => {
    await writeLog(30, 10);
    await unlink(walPath(segName(11)));
    const r = await replay(21);
    expect(r.lsns).toEqual(range(21, 30));
    expect(r.truncated).toBeNull();
  });

  it('a missing first segment is SLUICE_CORRUPT_WAL naming the file and the LSN range', async () => {
    await writeLog(30, 10);
    await unlink(walPath(segName(1)));
    const err = await rejection(replay(5));
    expect(err.code).toBe(ErrorCode.CORRUPT_WAL);
    expect(err.message).toContain(segName(11));
    expect(err.message).toContain('5..10');
    expect(err.details).toMatchObject({ missingFrom: 5, missingTo: 10 });
    // Nothing was modified.
    expect(await segmentFiles()).toEqual([segName(11), segName(21)]);
  });

  it('keeps lastLsn at or above fromLsn - 1 when the log ends before the cursor', async () => {
    await writeLog(10);
    const r = await replay(20);
    expect(r.lastLsn).toBe(19);
    const wal = await WalWriter.open(storage, SHARD, 20);
    wal.append(payloadOf(20));
    await wal.close();
    expect((await replay(20)).lsns).toEqual([20]);
  });

  it('hands records to an async callback one at a time, in order', async () => {
    await writeLog(50, 7);
    const seen: number[] = [];
    let inFlight = 0;
    await replayWal(storage, SHARD, 1, async (lsn) => {
      inFlight++;
      expect(inFlight).toBe(1);
      await new Promise((resolve) => setImmediate(resolve));
      seen.push(lsn);
      inFlight--;
    });
    expect(seen).toEqual(range(1, 50));
  });
});

describe('WalWriter.deleteSegmentsBefore', () => {
  it('deletes only whole segments below the LSN, never the current one', async () => {
    const wal = await WalWriter.open(storage, SHARD, 1);
    for (let lsn = 1; lsn <= 30; lsn++) {
      wal.append(payloadOf(lsn));
      if (lsn % 10 === 0) await wal.rotate();
    }
    // Segments 1..10, 11..20, 21..30 and the empty current one at 31.
    expect(await segmentFiles()).toEqual([segName(1), segName(11), segName(21), segName(31)]);
    const perSegment = 10 * (WAL_HEADER_BYTES + 20);
    expect(wal.bytes).toBe(3 * perSegment);
    expect(await wal.deleteSegmentsBefore(10)).toBe(0);
    expect(await wal.deleteSegmentsBefore(11)).toBe(1);
    expect(await wal.deleteSegmentsBefore(25)).toBe(1);
    expect(wal.bytes).toBe(perSegment);
    expect(await segmentFiles()).toEqual([segName(21), segName(31)]);
    wal.append(payloadOf(31));
    expect(await wal.deleteSegmentsBefore(1000)).toBe(1);
    expect(await segmentFiles()).toEqual([segName(31)]);
    await wal.close();
    expect((await replay(31)).lsns).toEqual([31]);
  });

  it('also deletes segments left by an earlier writer', async () => {
    await writeLog(20, 10);
    const r = await replay(1);
    const wal = await WalWriter.open(storage, SHARD, r.lastLsn + 1);
    expect(await wal.deleteSegmentsBefore(11)).toBe(1);
    expect(await wal.deleteSegmentsBefore(21)).toBe(1);
    expect(await segmentFiles()).toEqual([segName(21)]);
    await wal.close();
  });
});
