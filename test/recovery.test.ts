/**
 * DESIGN.md §2.8 (recovery) and §2.7 (durable ack): reopen after close, after kill -9 of the
 * whole process, over a torn or corrupt WAL tail, twice in a row (idempotent replay), and over
 * a WAL that spans many memtables.
 */
import { cp, open as openFile, readFile, truncate, writeFile } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import type { Db } from 'sluice';
import {
  CRASH_SCHEMA,
  Model,
  ackedBatches,
  allKeys,
  checkRecovered,
  cleanupDirs,
  expectedRow,
  internals,
  openTable,
  plainRow,
  row,
  settleWithin,
  shardFiles,
  shardSum,
  spawnWriter,
  tempDir,
} from './support.js';

afterAll(cleanupDirs);

/** One WAL record as laid out on disk (packages/core/src/wal/wal-record.ts). */
interface WalRecordAt {
  readonly offset: number;
  readonly total: number;
  readonly lsn: number;
}

const WAL_HEADER = 24;

function walRecords(bytes: Buffer): WalRecordAt[] {
  const out: WalRecordAt[] = [];
  for (let at = 0; at + WAL_HEADER <= bytes.length;) {
    const total = WAL_HEADER + bytes.readUInt32LE(at + 4);
    out.push({ offset: at, total, lsn: Number(bytes.readBigUInt64LE(at + 8)) });
    at += total;
  }
  return out;
}

/** The newest non-empty WAL segment of shard 0 (a reopen leaves a fresh, empty segment behind). */
async function newestSegment(dir: string): Promise<{ path: string; bytes: Buffer; records: WalRecordAt[] }> {
  const segs = (await shardFiles(dir, 0, 'wal')).filter((f) => f.name.endsWith('.wal') && f.size > 0);
  const seg = segs.at(-1);
  if (!seg) throw new Error('no non-empty WAL segment');
  const bytes = await readFile(seg.path);
  return { path: seg.path, bytes, records: walRecords(bytes) };
}

async function sortedRows(db: Db): Promise<Record<string, unknown>[]> {
  const rows = (await db.scan().toArray()).map((r) => plainRow(r)!);
  return rows.sort((a, b) => ((a.id as bigint) < (b.id as bigint) ? -1 : a.id === b.id ? 0 : 1));
}

function modelRows(model: Model): Record<string, unknown>[] {
  return [...model.rows.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, r]) => expectedRow(r));
}

/** Ten puts of ten rows on one shard: one WAL record each (LSN 1..10). */
const TEN_PUTS = Array.from({ length: 10 }, (_, p) =>
  Array.from({ length: 10 }, (_, i) => row(p * 10 + i, p)),
);
let template: Promise<string> | undefined;

/** A fresh copy of a closed one-shard table holding TEN_PUTS (built once, copied per test). */
async function tenRecords(): Promise<string> {
  template ??= (async () => {
    const dir = await tempDir('rec-template');
    const db = await openTable(dir, { shards: 1 });
    for (const p of TEN_PUTS) await db.put(p);
    await db.close();
    return dir;
  })();
  const dir = await tempDir('rec-copy');
  await cp(await template, dir, { recursive: true });
  const { records } = await newestSegment(dir);
  expect(records.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  return dir;
}

describe('reopen after close', () => {
  it('holds every acknowledged row at its newest version, deletes included, flushed or not', async () => {
    const dir = await tempDir('rec-close');
    const model = new Model();
    let db = await openTable(dir, { memtableBytes: 64 << 10 });
    for (let b = 0; b < 8; b++) {
      const rows = Array.from({ length: 150 }, (_, i) => row(b * 100 + i, b)); // overlapping keys: updates
      await db.put(rows);
      model.put(rows);
      if (b === 3) await db.flush();
    }
    const dels = [5, 105, 250, 777];
    await db.delete(dels);
    model.delete(dels);
    expect(shardSum(db, 'generations')).toBeGreaterThan(0);
    await db.close();

    db = await open(dir, { onWarning: () => undefined }); // reopening needs no options
    expect(await sortedRows(db)).toEqual(modelRows(model));
    for (const k of dels) expect(await db.get(k)).toBeUndefined();
    expect(db.stats().recovery.records).toBeGreaterThan(0);
    await db.close();
  });
});

describe('whole-process crash', () => {
  it('kill -9 mid-stream: every acknowledged batch is back after reopen, no phantom rows', async () => {
    const dir = await tempDir('rec-kill');
    const rows = 20;
    const proc = spawnWriter({
      dir,
      rows,
      options: {
        schema: CRASH_SCHEMA,
        primaryKey: 'id',
        shards: 2,
        durability: 'sync',
        memtableBytes: 32 << 10,
      },
    });
    try {
      // Let at least one generation commit, so recovery combines files and WAL replay.
      await proc.waitFor((m) => Array.isArray(m.ack) && (m.gens as number) > 0 && (m.ack[1] as number) >= 60);
    } finally {
      await proc.kill9();
    }
    const acked = ackedBatches(proc, 1);
    expect(acked[0]).toBeGreaterThan(60);
    const warnings: string[] = [];
    const db = await settleWithin(open(dir, { onWarning: (m) => warnings.push(m) }), 30_000, 'reopen');
    await checkRecovered(db, acked, rows);
    // The process was killed between puts or inside one: at most one batch beyond the acked ones.
    expect((await allKeys(db)).length).toBeLessThanOrEqual((acked[0]! + 1) * rows);
    await db.close();
  });
});

describe('torn WAL tail', () => {
  it.each([
    ['mid-payload', (r: WalRecordAt) => r.offset + WAL_HEADER + Math.floor((r.total - WAL_HEADER) / 2)],
    ['mid-header', (r: WalRecordAt) => r.offset + 10],
  ] as const)(
    'a last record cut %s is dropped with a warning; later puts survive another reopen',
    async (_label, cutAt) => {
      const dir = await tenRecords();
      const puts = TEN_PUTS;
      const seg = await newestSegment(dir);
      await truncate(seg.path, cutAt(seg.records.at(-1)!));

      const warnings: string[] = [];
      let db = await openTable(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
      expect(warnings.some((w) => /WAL/.test(w))).toBe(true);
      const model = new Model();
      for (const p of puts.slice(0, 9)) model.put(p);
      expect(await sortedRows(db)).toEqual(modelRows(model)); // the torn put is gone whole

      const later = Array.from({ length: 20 }, (_, i) => row(1000 + i, 20));
      await db.put(later);
      model.put(later);
      await db.put([row(3, 21)]); // an update of a recovered key
      model.put([row(3, 21)]);
      await db.close();

      warnings.length = 0;
      db = await openTable(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
      expect(await sortedRows(db)).toEqual(modelRows(model));
      expect(warnings).toEqual([]); // the cut was made durable: the log is clean now
      await db.close();
    },
  );

  it('a zero-filled tail after the last record is cut; every record survives', async () => {
    const dir = await tenRecords();
    const puts = TEN_PUTS;
    const seg = await newestSegment(dir);
    await writeFile(seg.path, Buffer.concat([seg.bytes, Buffer.alloc(4096)]));
    const warnings: string[] = [];
    const db = await openTable(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
    expect(warnings.some((w) => /WAL/.test(w))).toBe(true);
    const model = new Model();
    for (const p of puts) model.put(p);
    expect(await sortedRows(db)).toEqual(modelRows(model));
    await db.close();
  });
});

describe('corrupt WAL record', () => {
  // Byte offsets inside a record: magic 0..3, length 4..7, LSN 8..15, crc 16..19, payload 24..
  it.each([
    ['a payload byte', (r: WalRecordAt) => r.offset + WAL_HEADER + Math.floor((r.total - WAL_HEADER) / 3)],
    ['a crc byte', (r: WalRecordAt) => r.offset + 17],
    ['an LSN byte', (r: WalRecordAt) => r.offset + 8],
    ['a high length byte', (r: WalRecordAt) => r.offset + 6],
  ] as const)(
    '%s flipped in record 5 of 10: recovery stops at record 4 with a warning, no garbage',
    async (_label, byteAt) => {
      const dir = await tenRecords();
      const seg = await newestSegment(dir);
      const at = byteAt(seg.records[4]!);
      const fh = await openFile(seg.path, 'r+');
      try {
        await fh.write(Buffer.from([seg.bytes[at]! ^ 0x5a]), 0, 1, at);
      } finally {
        await fh.close();
      }

      const warnings: string[] = [];
      // Recovery must not throw (least of all an untyped error): it cuts the log and opens.
      const db = await openTable(dir, { shards: 1, onWarning: (m) => warnings.push(m) });
      try {
        expect(warnings.some((w) => /WAL/.test(w))).toBe(true);
        const model = new Model();
        for (const p of TEN_PUTS.slice(0, 4)) model.put(p);
        expect(await sortedRows(db)).toEqual(modelRows(model));
        for (const k of [40, 45, 99]) expect(await db.get(k)).toBeUndefined();
        // The log continues at the cut: a new put lands after record 4 and is readable.
        await db.put([row(45, 30)]);
        expect(plainRow(await db.get(45))).toEqual(expectedRow(row(45, 30)));
      } finally {
        await db.close();
      }
    },
  );
});

describe('idempotent replay', () => {
  async function walBytes(dir: string): Promise<number[]> {
    const out: number[] = [];
    for (const s of [0, 1]) {
      const files = await shardFiles(dir, s, 'wal');
      out.push(files.reduce((n, f) => n + f.size, 0));
    }
    return out;
  }

  it.each([false, true])(
    'reopening twice without writes gives the same rows, replays the same records, re-appends nothing (flushed part: %s)',
    async (withFlush) => {
      const dir = await tempDir('rec-idem');
      const model = new Model();
      let db = await openTable(dir, { memtableBytes: 1 << 20 });
      for (let b = 0; b < 6; b++) {
        const rows = Array.from({ length: 200 }, (_, i) => row(b * 120 + i, b));
        await db.put(rows);
        model.put(rows);
        if (withFlush && b === 2) await db.flush();
      }
      await db.delete([1, 2, 3]);
      model.delete([1, 2, 3]);
      const written = 6 * 200 + 3;
      await db.close();

      const runs: {
        rows: Record<string, unknown>[];
        recovery: { records: number; rows: number };
        activeRows: number;
        wal: number[];
      }[] = [];
      for (let i = 0; i < 2; i++) {
        db = await open(dir, { onWarning: () => undefined });
        const { records, rows } = db.stats().recovery;
        runs.push({
          rows: await sortedRows(db),
          recovery: { records, rows },
          activeRows: shardSum(db, 'activeRows'),
          wal: await walBytes(dir),
        });
        await db.close();
      }
      expect(runs[0]!.rows).toEqual(modelRows(model));
      for (const r of runs.slice(1)) {
        expect(r.rows).toEqual(runs[0]!.rows);
        expect(r.recovery).toEqual(runs[0]!.recovery);
        expect(r.activeRows).toBe(runs[0]!.activeRows);
        expect(r.wal).toEqual(runs[0]!.wal);
      }
      // Replay starts at the manifest's cursor: what was flushed is not replayed again.
      if (withFlush) expect(runs[0]!.recovery.rows).toBeLessThan(written);
      else expect(runs[0]!.recovery.rows).toBe(written);
      expect(runs[0]!.activeRows).toBe(runs[0]!.recovery.rows);
    },
  );
});

describe('replay across many memtables', () => {
  it('a crash with thousands of unflushed rows in 16 KiB memtables recovers every acked row', async () => {
    const dir = await tempDir('rec-many');
    const rows = 50;
    const proc = spawnWriter({
      dir,
      rows,
      holdFlush: true, // nothing reaches a generation file: the whole history is in the WAL
      options: { schema: CRASH_SCHEMA, primaryKey: 'id', shards: 2, memtableBytes: 16 << 10 },
    });
    try {
      await proc.waitFor((m) => Array.isArray(m.ack) && (m.ack[1] as number) >= 80);
    } finally {
      await proc.kill9();
    }
    const acked = ackedBatches(proc, 1);
    const last = proc.messages.filter((m) => m.ack).at(-1)!;
    expect(last.gens).toBe(0);
    expect(last.frozen as number).toBeGreaterThan(6); // many memtables' worth per shard

    const db = await settleWithin(
      open(dir, { memtableBytes: 16 << 10, onWarning: () => undefined }),
      15_000,
      'reopen replaying many memtables',
    );
    try {
      await checkRecovered(db, acked, rows);
      expect(db.stats().recovery.rows).toBeGreaterThanOrEqual(acked[0]! * rows);
      expect(internals(db).broker.lifecycles.length).toBe(2);
      // Every memtable the replay filled gets flushed after recovery.
      await db.flush();
      expect(shardSum(db, 'frozen')).toBe(0);
      await checkRecovered(db, acked, rows);
    } finally {
      await db.close();
    }
  });
});
