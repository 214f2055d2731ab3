/**
 * DESIGN.md §2 semantics, each checked against the same logical history in every physical
 * placement of the rows: all in the active memtable; active + frozen; active + frozen +
 * flushed; and after a reopen (WAL replay over flushed files). Writes always go through the
 * real shard worker threads.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { Db } from 'sluice';
import {
  Model,
  cleanupDirs,
  expectedRow,
  gate,
  internals,
  openTable,
  plainRow,
  row,
  tempDir,
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

async function build(placement: Placement): Promise<{ db: Db; model: Model }> {
  const dir = await tempDir(`sem-${placement.replace(/\W/g, '')}`);
  let db = await openTable(dir, { memtableBytes: 8 << 20 });
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
    db = await openTable(dir);
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
  return { db, model };
}

afterAll(cleanupDirs);

describe.each(PLACEMENTS)('placement: %s', (placement) => {
  let db: Db;
  let model: Model;

  it('builds the placement', async () => {
    ({ db, model } = await build(placement));
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
});
