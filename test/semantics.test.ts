/**
 * DESIGN.md §2 semantics, each checked against the same logical history in every physical
 * placement of the rows: all in the active memtable; active + frozen; active + frozen +
 * flushed; and after a reopen (WAL replay over flushed files). Writes always go through the
 * real shard worker threads.
 */
import { appendFile, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultControl } from '@sluice/core';
import { ErrorCode, SluiceError, open } from 'sluice';
import type { Db, OpenOptions, Row } from 'sluice';
import {
  Model,
  SCHEMA,
  cleanupDirs,
  diskManifest,
  expectedRow,
  gate,
  internals,
  openTable,
  plainRow,
  row,
  settleWithin,
  shardFiles,
  tempDir,
  until,
} from './support.js';

type Placement = 'active' | 'active+frozen' | 'active+frozen+flushed' | 'reopen';
const PLACEMENTS: Placement[] = ['active', 'active+frozen', 'active+frozen+flushed', 'reopen'];

const BIG = 2n ** 60n + 7n;

/** The logical history: five steps of puts and deletes. */
const STEPS: { put?: Record<string, unknown>[]; del?: (number | bigint)[] }[] = [
  { put: Array.from({ length: 300 }, (_, i) => row(i, 1)) },
  { put: Array.from({ length: 200 }, (_, i) => row(i + 150, 2)) },
  {
    del: [
      ...Array.from({ length: 10 }, (_, i) => i + 20),
      ...Array.from({ length: 10 }, (_, i) => i + 160),
      9999,
    ],
  },
  {
    put: [
      row(7, 3, { tag: 'first' }),
      row(7, 4, { tag: 'last' }),
      row(BIG, 5, { tag: 'naïve — 日本語 🚀', emb: [1.5, -2.5, 3.25, 0] }),
      row(-BIG, 5, { tag: '' }),
      { id: 500, ts: null, value: null, tag: null, emb: null, n: null, ok: null, f: null },
      row(25, 6, { tag: 'resurrected' }),
    ],
  },
  { put: Array.from({ length: 50 }, (_, i) => row(i + 400, 7)) },
];

interface Built {
  db: Db;
  model: Model;
  dir: string;
  /** Lets the frozen memtable the placement holds back (if any) flush. */
  release: () => void;
}

/** Builds the placement; `options` go to every open of the table (faults, onWarning, ...). */
async function build(placement: Placement, options: OpenOptions = {}): Promise<Built> {
  const dir = await tempDir(`sem-${placement.replace(/\W/g, '')}`);
  let db = await openTable(dir, { memtableBytes: 8 << 20, ...options });
  const model = new Model();
  const lcs = () => internals(db).broker.lifecycles;
  const hold = gate();
  for (const [i, step] of STEPS.entries()) {
    if (step.put) {
      await db.put(step.put);
      model.put(step.put);
    }
    if (step.del) {
      await db.delete(step.del);
      model.delete(step.del);
    }
    if (placement === 'active+frozen' && i === 1) {
      for (const lc of lcs()) lc.holds.beforeFlush = hold.promise;
      await internals(db).broker.freeze();
    }
    if ((placement === 'active+frozen+flushed' || placement === 'reopen') && i === 1) await db.flush();
    if (placement === 'active+frozen+flushed' && i === 3) {
      for (const lc of lcs()) lc.holds.beforeFlush = hold.promise;
      await internals(db).broker.freeze();
    }
  }
  if (placement === 'reopen') {
    await db.close();
    db = await openTable(dir, options);
  }
  // Prove the placement really is what it claims before checking semantics on it.
  const st = db.stats();
  const frozen = st.shards.reduce((n, s) => n + s.frozen, 0);
  const gens = st.shards.reduce((n, s) => n + s.generations, 0);
  const active = st.shards.reduce((n, s) => n + s.activeRows, 0);
  expect(active).toBeGreaterThan(0);
  if (placement === 'active') expect([frozen, gens]).toEqual([0, 0]);
  if (placement === 'active+frozen') expect([frozen > 0, gens]).toEqual([true, 0]);
  if (placement === 'active+frozen+flushed') expect([frozen > 0, gens > 0]).toEqual([true, true]);
  if (placement === 'reopen') expect(gens).toBeGreaterThan(0);
  const release = (): void => {
    for (const lc of lcs()) lc.holds.beforeFlush = null;
    hold.open();
  };
  return { db, model, dir, release };
}

type Lifecycles = ReturnType<typeof internals>['broker']['lifecycles'];

function lifecycles(db: Db): Lifecycles {
  return internals(db).broker.lifecycles;
}

function sortById(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return [...rows].sort((a, b) => ((a.id as bigint) < (b.id as bigint) ? -1 : a.id === b.id ? 0 : 1));
}

function modelRows(model: Model): Record<string, unknown>[] {
  return sortById([...model.rows.values()].map(expectedRow));
}

async function sortedRows(db: Db): Promise<Record<string, unknown>[]> {
  return sortById((await db.scan().toArray()).map((r) => plainRow(r)!));
}

/** The table holds exactly the model: by scan (no missing, extra or duplicate row) and by getMany. */
async function checkModel(db: Db, model: Model): Promise<void> {
  expect(await sortedRows(db)).toEqual(modelRows(model));
  const keys = [...model.rows.keys()];
  expect((await db.getMany(keys)).map((r) => plainRow(r))).toEqual(
    keys.map((k) => expectedRow(model.rows.get(k)!)),
  );
}

async function untilAsync(cond: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Per shard: names of the generation files on disk that the newest on-disk manifest does not list. */
async function unlistedGenerations(dir: string, shards: number): Promise<string[][]> {
  const out: string[][] = [];
  for (let s = 0; s < shards; s++) {
    const listed = new Set((await diskManifest(dir, s)).generations.map((g) => path.basename(g.file)));
    out.push((await shardFiles(dir, s, 'gen')).map((f) => f.name).filter((n) => !listed.has(n)));
  }
  return out;
}

/** Bytes of every WAL segment of each shard. */
async function walBytes(dir: string, shards: number): Promise<number[]> {
  const out: number[] = [];
  for (let s = 0; s < shards; s++) {
    const segs = (await shardFiles(dir, s, 'wal')).filter((f) => f.name.endsWith('.wal'));
    out.push(segs.reduce((n, f) => n + f.size, 0));
  }
  return out;
}

/** Records of a WAL segment (24-byte header: magic, payload length at 4, LSN at 8, crc at 16). */
function walRecords(bytes: Buffer): { offset: number; total: number; lsn: number }[] {
  const out: { offset: number; total: number; lsn: number }[] = [];
  for (let at = 0; at + 24 <= bytes.length;) {
    const total = 24 + bytes.readUInt32LE(at + 4);
    out.push({ offset: at, total, lsn: Number(bytes.readBigUInt64LE(at + 8)) });
    at += total;
  }
  return out;
}

/** A row list as one string, column by column in schema order, for cheap exact comparison. */
function signature(rows: readonly (Record<string, unknown> | undefined)[]): string {
  const columns = Object.keys(SCHEMA);
  const value = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);
  return rows
    .map((r) =>
      r === undefined
        ? '-'
        : JSON.stringify(
            columns.map((c) => (c in r ? r[c] : '<missing>')),
            value,
          ),
    )
    .join('\n');
}

/** Every file under `dir` with its size and modification time, sorted. */
async function fileSnapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const rel of await readdir(dir, { recursive: true })) {
    const st = await stat(path.join(dir, rel));
    if (st.isFile()) out.push(`${rel} ${st.size} ${st.mtimeMs}`);
  }
  return out.sort();
}

afterAll(cleanupDirs);

describe.each(PLACEMENTS)('placement: %s', (placement) => {
  let db: Db;
  let model: Model;
  let dir: string;

  it('builds the placement', async () => {
    ({ db, model, dir } = await build(placement));
  });

  it('read-your-writes and newest wins: get returns the latest version of every key', async () => {
    for (const [k, r] of model.rows) expect(plainRow(await db.get(k))).toEqual(expectedRow(r));
    expect(plainRow(await db.get(7))?.tag).toBe('last'); // duplicates in one put: the last wins
    expect(plainRow(await db.get(BIG))?.tag).toBe('naïve — 日本語 🚀');
    expect((await db.get(BIG))?.id).toBe(BIG); // exact beyond 2^53
  });

  it('deletes are tombstones: deleted keys are absent everywhere, a later put resurrects', async () => {
    for (const k of [20, 29, 160, 169, 9999]) expect(await db.get(k)).toBeUndefined();
    expect(plainRow(await db.get(25))?.tag).toBe('resurrected');
    const all = await db.scan().toArray();
    expect(all.some((r) => r.id === 20n || r.id === 165n)).toBe(false);
  });

  it('getMany answers from one snapshot, aligned with the keys', async () => {
    const keys = [0, 20, 7, 9999, BIG, 449];
    const got = await db.getMany(keys);
    expect(got.map((r) => plainRow(r))).toEqual(
      keys.map((k) => (model.rows.has(BigInt(k)) ? expectedRow(model.rows.get(BigInt(k))!) : undefined)),
    );
  });

  it('scan returns exactly the newest live version of every key', async () => {
    const all = (await db.scan().toArray()).map((r) => plainRow(r)!);
    all.sort((a, b) => ((a.id as bigint) < (b.id as bigint) ? -1 : 1));
    const want = [...model.rows.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([, r]) => expectedRow(r));
    expect(all).toEqual(want);
    const table = await db.scan({ columns: ['id', 'tag'] }).toArrow();
    expect(table.numRows).toBe(model.rows.size);
    expect(table.schema.fields.map((f) => f.name)).toEqual(['id', 'tag']);
  });

  it('filters see only the newest version; limit returns min(limit, matches)', async () => {
    // Keys 150..299 were rewritten with value >= 2000: their old version (value < 2000) must not match.
    const filter = { column: 'value', op: '<', value: 2000 } as const;
    const got = await db.scan({ filter }).toArray();
    const want = [...model.rows.values()].filter((r) => r.value !== null && (r.value as number) < 2000);
    expect(got.length).toBe(want.length);
    expect(got.every((r) => (r.id as bigint) < 150n || (r.id as bigint) >= 350n)).toBe(true);
    const nulls = await db.scan({ filter: { column: 'tag', op: 'is null' } }).toArray();
    expect(nulls.map((r) => r.id)).toEqual([500n]);
    for (const limit of [0, 1, 17, want.length, want.length + 5]) {
      expect((await db.scan({ filter, limit }).toArray()).length).toBe(Math.min(limit, want.length));
    }
  });

  it('snapshot reads: a scan sees the table as of its start, not later puts', async () => {
    const before = model.rows.size;
    const scan = db.scan({ columns: ['id'] });
    await db.put([row(100_000, 9), row(100_001, 9)]);
    await db.delete([0]);
    const ids = (await scan.toArray()).map((r) => r.id);
    expect(ids.length).toBe(before);
    expect(ids).toContain(0n);
    expect(ids).not.toContain(100_000n);
    model.put([row(100_000, 9), row(100_001, 9)]);
    model.delete([0]);
    expect(await db.get(0)).toBeUndefined();
  });

  it('bad input changes nothing', async () => {
    const bad = [row(200_000, 1), row(200_001, 1, { value: 'not a number' }), row(200_002, 1)];
    await expect(db.put(bad)).rejects.toMatchObject({
      code: 'SLUICE_INVALID_ROW',
      details: { row: 1, column: 'value' },
    });
    await expect(db.put([row(200_003, 1), { ...row(0, 1), id: null }])).rejects.toMatchObject({
      code: 'SLUICE_INVALID_ROW',
    });
    await expect(db.put([{ id: 200_004, bogus: 1 }])).rejects.toMatchObject({
      code: 'SLUICE_INVALID_ROW',
      details: { column: 'bogus' },
    });
    for (const id of [200_000, 200_001, 200_002, 200_003, 200_004]) expect(await db.get(id)).toBeUndefined();
    expect((await db.scan({ columns: ['id'] }).toArray()).length).toBe(model.rows.size);
  });

  it('closes', async () => {
    await db.close();
    await expect(db.get(1)).rejects.toMatchObject({ code: 'SLUICE_CLOSED' });
  });

  it('no read hole: every acknowledged row stays readable across freeze, flush, commit and retire (§2.2)', async () => {
    const b = await build(placement);
    const lcs = lifecycles(b.db);
    const want = modelRows(b.model);
    const keys = [...b.model.rows.keys()];
    const wantGets = keys.map((k) => expectedRow(b.model.rows.get(k)!));
    const wantSig = signature(want);
    const wantGetsSig = signature(wantGets);
    type Phase = 'built' | 'frozen' | 'written' | 'committing' | 'retired';
    let phase: Phase = 'built';
    const reads: Record<Phase, number> = { built: 0, frozen: 0, written: 0, committing: 0, retired: 0 };
    let stop = false;
    let failure: unknown;
    // A reader loops over the whole cycle; each read is counted in the phase it started in.
    const reader = async (): Promise<void> => {
      while (!stop && failure === undefined) {
        const at = phase;
        try {
          const [rows, got] = await Promise.all([b.db.scan().toArray(), b.db.getMany(keys)]);
          const scanned = sortById(rows.map((r) => plainRow(r)!));
          const gotten = got.map((r) => plainRow(r));
          // Compared as strings (cheap); on a mismatch, expect() reports the difference.
          if (signature(scanned) !== wantSig) expect(scanned, `scan in phase ${at}`).toEqual(want);
          if (signature(gotten) !== wantGetsSig) expect(gotten, `getMany in phase ${at}`).toEqual(wantGets);
        } catch (err) {
          failure ??= err;
          return;
        }
        reads[at]++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const readsIn = async (p: Phase, n: number): Promise<void> => {
      await until(() => failure !== undefined || reads[p] >= n);
      if (failure !== undefined) throw failure;
    };
    const commitHold = gate();
    for (const lc of lcs) lc.holds.beforeCommit = commitHold.promise;
    const readers = reader();
    try {
      await readsIn('built', 1);
      phase = 'frozen';
      b.release();
      await internals(b.db).broker.freeze();
      const frozen = lcs.map((lc) => lc.frozenCount);
      const gensBefore = lcs.map((lc) => lc.generationCount);
      expect(frozen.every((n) => n >= 1)).toBe(true);
      const flushed = b.db.flush();
      flushed.catch(() => undefined);
      await readsIn('frozen', 1);
      // Every frozen memtable is in a generation file; the manifest commit is held.
      await untilAsync(async () =>
        (await unlistedGenerations(b.dir, lcs.length)).every((u, s) => u.length === frozen[s]),
      );
      phase = 'written';
      await readsIn('written', 2);
      expect(lcs.map((lc) => lc.frozenCount)).toEqual(frozen);
      phase = 'committing';
      for (const lc of lcs) lc.holds.beforeCommit = null;
      commitHold.open();
      await settleWithin(flushed, 20_000, 'db.flush() after the commit hold is released');
      phase = 'retired';
      expect(lcs.map((lc) => lc.frozenCount)).toEqual(lcs.map(() => 0));
      expect(lcs.map((lc) => lc.generationCount)).toEqual(gensBefore.map((g, s) => g + frozen[s]!));
      await readsIn('retired', 2);
    } finally {
      stop = true;
      for (const lc of lcs) lc.holds.beforeCommit = null;
      commitHold.open();
      await readers;
      await b.db.close();
    }
    if (failure !== undefined) throw failure;
  });

  it('durable ack: every acknowledged row survives a crash without close (§2.7)', async () => {
    const b = await build(placement);
    const old = b.db;
    const more = Array.from({ length: 40 }, (_, i) => row(700 + i, 8));
    await old.put(more);
    b.model.put(more);
    await old.put([row(3, 9, { tag: 'after the build' })]);
    b.model.put([row(3, 9, { tag: 'after the build' })]);
    await old.delete([4, 701]);
    b.model.delete([4, 701]);

    // The process dies: its lifecycles flush and commit nothing more, no shard thread is
    // restarted, and every shard thread stops where it is. Files stay as the threads left them.
    const lcs = lifecycles(old);
    const died = new SluiceError(ErrorCode.SHARD_CRASHED, 'the process died');
    for (const lc of lcs) {
      lc.fail(died);
      lc.startShard = () => new Promise<never>(() => undefined);
    }
    await Promise.all(lcs.map((lc) => lc.client.crash()));
    await until(() => lcs.every((lc) => lc.client.state === 'failed'));

    const next = await open(b.dir, { onWarning: () => undefined });
    try {
      await checkModel(next, b.model);
      expect(next.stats().recovery.records).toBeGreaterThan(0);
    } finally {
      await next.close();
    }
    // Closing the dead instance after its successor changes no file.
    const before = await fileSnapshot(b.dir);
    await settleWithin(old.close(), 10_000, 'close of the crashed instance');
    await expect(old.get(1)).rejects.toMatchObject({ code: 'SLUICE_CLOSED' });
    expect(await fileSnapshot(b.dir)).toEqual(before);
  });

  it('recovery: replay is idempotent, and a torn or corrupt WAL tail is cut at the last valid record (§2.8)', async () => {
    // The placement's own table (built by the first test), as 'closes' left it.
    const warnings: string[] = [];
    const reopen = (): Promise<Db> => open(dir, { onWarning: (m) => warnings.push(m) });
    const first = await reopen();
    const rows = await sortedRows(first);
    const replayed = first.stats().recovery.records;
    expect(rows).toEqual(modelRows(model));
    await first.close();
    const wal = await walBytes(dir, 2);

    const second = await reopen();
    try {
      expect(await sortedRows(second)).toEqual(rows);
      // Replay appended nothing: the second replay reads no more than the first, the WAL did not grow.
      expect(second.stats().recovery.records).toBeLessThanOrEqual(replayed);
      const grown = (await walBytes(dir, 2)).map((n, s) => n > wal[s]!);
      expect(grown).toEqual([false, false]);
      expect(warnings.filter((w) => /WAL/.test(w))).toEqual([]);
      const tail = Array.from({ length: 60 }, (_, i) => row(900 + i, 11));
      await second.put(tail);
      model.put(tail);
    } finally {
      await second.close();
    }

    const damaged: { path: string; size: number }[] = [];
    for (const s of [0, 1]) {
      const seg = (await shardFiles(dir, s, 'wal')).filter((f) => f.name.endsWith('.wal')).at(-1)!;
      expect(seg.size).toBeGreaterThan(0);
      damaged.push({ path: seg.path, size: seg.size });
    }
    // Shard 0: garbage after its last record.
    await appendFile(damaged[0]!.path, Buffer.alloc(100, 0xee));
    // Shard 1: a whole record under the next LSN whose checksum does not match: its last
    // record's bytes with the LSN bumped and one payload byte changed.
    const bytes = await readFile(damaged[1]!.path);
    const last = walRecords(bytes).at(-1)!;
    expect(last.offset + last.total).toBe(bytes.length);
    const forged = Buffer.from(bytes.subarray(last.offset, last.offset + last.total));
    forged.writeBigUInt64LE(BigInt(last.lsn + 1), 8);
    forged[forged.length - 1]! ^= 0xff;
    await appendFile(damaged[1]!.path, forged);

    warnings.length = 0;
    const third = await reopen();
    try {
      for (const s of [0, 1]) {
        const cut = new RegExp(`WAL of shard-00${s}: .*cutting the log there`);
        expect(warnings.filter((w) => cut.test(w)).length, warnings.join('\n')).toBe(1);
      }
      expect(await sortedRows(third)).toEqual(modelRows(model));
      // Cut exactly after the last valid record.
      for (const d of damaged) expect((await stat(d.path)).size).toBe(d.size);
    } finally {
      await third.close();
    }
  });

  it('flush is two-phase: file, then manifest commit, then retire; a failed commit keeps the memtable readable and is retried (§2.9)', async () => {
    // Disarmed until the test arms it: then the next three manifest writes of shard 0 fail.
    const control = FaultControl.create([
      { op: 'putIfAbsent', path: 'shard-000/manifest/', times: 3, action: 'EIO' },
    ]);
    control.disarm();
    interface Observation {
      frozen: number;
      generations: number;
      rows: Promise<Row[]>;
      gets: Promise<(Row | undefined)[]>;
    }
    const seen: Observation[] = [];
    const watched: { db?: Db; keys: bigint[] } = { keys: [] };
    // At the instant a commit failure is reported (before any retry), record shard 0's state
    // and start reads (a read takes its snapshot when called).
    const onWarning = (m: string): void => {
      const db = watched.db;
      if (!db || !/^shard 0: commit of generation \d+ failed/.test(m)) return;
      const s0 = db.stats().shards[0]!;
      seen.push({
        frozen: s0.frozen,
        generations: s0.generations,
        rows: db.scan().toArray(),
        gets: db.getMany(watched.keys),
      });
    };
    const b = await build(placement, { faults: { main: { plan: control.plan } }, onWarning });
    const keys = [...b.model.rows.keys()];
    watched.db = b.db;
    watched.keys = keys;
    const lcs = lifecycles(b.db);
    const commitHold = gate();
    try {
      for (const lc of lcs) lc.holds.beforeCommit = commitHold.promise;
      b.release();
      await internals(b.db).broker.freeze();
      const frozen = lcs.map((lc) => lc.frozenCount);
      const gens = lcs.map((lc) => lc.generationCount);
      expect(frozen.every((n) => n >= 1)).toBe(true);
      const flushed = b.db.flush();
      flushed.catch(() => undefined);

      // Phase one done, commit held: the files exist, no manifest lists them, the frozen
      // memtables are still counted and readable.
      await untilAsync(async () =>
        (await unlistedGenerations(b.dir, lcs.length)).every((u, s) => u.length === frozen[s]),
      );
      for (const [s, lc] of lcs.entries()) {
        const onDisk = await diskManifest(b.dir, s);
        expect(onDisk.generations.length).toBe(gens[s]);
        expect(lc.manifest.generations.length).toBe(gens[s]);
        expect(b.db.stats().shards[s]!.frozen).toBe(frozen[s]);
      }
      await checkModel(b.db, b.model);

      // Phase two, with shard 0's first three commit attempts failing.
      control.arm();
      for (const lc of lcs) lc.holds.beforeCommit = null;
      commitHold.open();
      await settleWithin(flushed, 20_000, 'db.flush() through failing commits');
      expect(control.hits()).toBe(3);
      expect([lcs[0]!.commitFailures, lcs[1]!.commitFailures]).toEqual([3, 0]);
      expect(seen.length).toBe(3);
      const want = modelRows(b.model);
      const wantGets = keys.map((k) => expectedRow(b.model.rows.get(k)!));
      for (const o of seen) {
        expect([o.frozen, o.generations]).toEqual([frozen[0], gens[0]]);
        expect(sortById((await o.rows).map((r) => plainRow(r)!))).toEqual(want);
        expect((await o.gets).map((r) => plainRow(r))).toEqual(wantGets);
      }
      // Committed and retired: the manifest lists exactly the files, no frozen memtable is left.
      for (const [s] of lcs.entries()) {
        const listed = (await diskManifest(b.dir, s)).generations.map((g) => path.basename(g.file)).sort();
        expect(listed).toEqual((await shardFiles(b.dir, s, 'gen')).map((f) => f.name));
        expect(listed.length).toBe(gens[s]! + frozen[s]!);
        expect(b.db.stats().shards[s]!.frozen).toBe(0);
      }
      await checkModel(b.db, b.model);
    } finally {
      control.disarm();
      for (const lc of lcs) lc.holds.beforeCommit = null;
      commitHold.open();
      await b.db.close();
    }
  });
});

describe('stats', () => {
  it('memtableUsedBytes follows the rows held in memtables, within what is reserved', async () => {
    const dir = await tempDir('stats-used');
    const db = await openTable(dir, { shards: 1, memtableBytes: 8 << 20 });
    try {
      const used = (): { used: number; reserved: number } => {
        const s = db.stats().shards[0]!;
        return { used: s.memtableUsedBytes, reserved: s.memtableBytes };
      };
      const empty = used();
      expect(empty.used).toBe(0);
      expect(empty.reserved).toBeGreaterThanOrEqual(8 << 20);
      await db.put(Array.from({ length: 1000 }, (_, i) => row(i, 1)));
      const some = used();
      // At least the key and the other fixed-width values of every row; far below the reservation.
      expect(some.used).toBeGreaterThan(1000 * 16);
      expect(some.used).toBeLessThan(some.reserved / 10);
      await db.put(Array.from({ length: 3000 }, (_, i) => row(1000 + i, 1, { tag: 'x'.repeat(200) })));
      const more = used();
      // The 600 kB of utf8 values written count too.
      expect(more.used - some.used).toBeGreaterThan(3000 * 200);
      expect(more.used).toBeLessThanOrEqual(more.reserved);
      await db.flush();
      expect(used().used).toBe(0);
    } finally {
      await db.close();
    }
  });
});
