/**
 * Round trip of every column type (DESIGN.md §1: int64 as number or bigint, timestamps as Date
 * or epoch ms, vectors as arrays or Float32Array) through get, scan().toArray() and
 * scan().toArrow(), in every placement of the rows: active memtable, frozen memtable,
 * generation files, and after a reopen (from the WAL and from files). Keys are compared
 * exactly (§2.3): utf8 keys differing in one byte, and keys whose 32-bit hashes collide.
 */
import { DataType, Precision, TimeUnit } from 'apache-arrow';
import type { Table } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { hashInt64Parts, hashUtf8String } from '@sluice/core';
import { open } from 'sluice';
import type { Db, Row } from 'sluice';
import { cleanupDirs, gate, internals, shardSum, tempDir } from './support.js';

afterAll(cleanupDirs);

const TYPES = {
  k: 'utf8',
  i32: 'int32',
  i64: 'int64',
  f32: 'float32',
  f64: 'float64',
  ok: 'bool',
  s: 'utf8',
  ts: 'timestamp',
  vec: 'float32[3]',
} as const;
type Col = keyof typeof TYPES;
const NULLABLE = Object.keys(TYPES).filter((c) => c !== 'k') as Col[];

/** Two distinct strings with the same 32-bit key hash (found by a birthday search). */
function collidingStrings(): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const s = `collide-${i}`;
    const h = hashUtf8String(s);
    const other = seen.get(h);
    if (other !== undefined) return [other, s];
    seen.set(h, s);
  }
}

function collidingInt64(): [bigint, bigint] {
  const seen = new Map<number, bigint>();
  for (let i = 1; ; i++) {
    const k = BigInt(i) * 7919n + (1n << 40n);
    const h = hashInt64Parts(Number(BigInt.asIntN(32, k)), Number(BigInt.asIntN(32, k >> 32n)));
    const other = seen.get(h);
    if (other !== undefined) return [other, k];
    seen.set(h, k);
  }
}

const [COLLIDE_A, COLLIDE_B] = collidingStrings();

/** Input rows: every type, given every way the contract allows, with every edge we know. */
const INPUT: Record<string, unknown>[] = [
  {
    k: 'plain',
    i32: 7,
    i64: 42, // a number for int64
    f32: 1.1,
    f64: 3.141592653589793,
    ok: true,
    s: 'hello',
    ts: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)), // a Date
    vec: [1.5, -2.25, 0.1], // an array
  },
  {
    k: 'extremes',
    i32: -2147483648,
    i64: 2n ** 63n - 1n,
    f32: -3.4028234663852886e38,
    f64: -0,
    ok: false,
    s: '',
    ts: 1_700_000_000_123, // epoch milliseconds
    vec: Float32Array.from([3e38, -1e-30, Number.NaN]), // a Float32Array
  },
  {
    k: 'extremes-2',
    i32: 2147483647,
    i64: -(2n ** 63n),
    f32: 0,
    f64: Number.POSITIVE_INFINITY,
    ok: true,
    s: 'x'.repeat(3000),
    ts: new Date(-86_400_000 * 365 * 20), // before 1970
    vec: new Float32Array(3),
  },
  {
    k: 'beyond-2^53',
    i32: 0,
    i64: 2n ** 53n + 1n,
    f32: Number.NaN,
    f64: Number.NaN,
    ok: false,
    s: 'tab\tnew\nline "quote" \\ back',
    ts: 0,
    vec: [0, -0, 1],
  },
  {
    k: 'negative-beyond-2^53',
    i32: -1,
    i64: -(2n ** 53n) - 3n,
    f32: Number.NEGATIVE_INFINITY,
    f64: 5e-324,
    ok: true,
    s: 'nul\u0000inside',
    ts: -1,
    vec: [-1, -2, -3],
  },
  { k: 'all-null', i32: null, i64: null, f32: null, f64: null, ok: null, s: null, ts: null, vec: null },
  { k: 'emoji 🚀👩‍👩‍👧‍👦', i32: 1, i64: -1, f32: 2, f64: 2, ok: true, s: '🦀🚀 👩‍👩‍👧‍👦 🇯🇵', ts: 1, vec: [1, 2, 3] },
  {
    k: '日本語キー',
    i32: 2,
    i64: 2,
    f32: 3,
    f64: 3,
    ok: false,
    s: '漢字かなカナ 中文 한국어',
    ts: 2,
    vec: [4, 5, 6],
  },
  // Same rendering, different bytes: precomposed é versus e + combining acute.
  {
    k: 'caf\u00e9',
    i32: 3,
    i64: 3,
    f32: 4,
    f64: 4,
    ok: true,
    s: 'e\u0301\u0323 Z\u0351\u0360',
    ts: 3,
    vec: [7, 8, 9],
  },
  { k: 'cafe\u0301', i32: 4, i64: 4, f32: 5, f64: 5, ok: false, s: 'precomposed é', ts: 4, vec: null },
  // Keys differing only in one byte, and a prefix of them.
  { k: 'key-a', i32: 5, i64: 5, f32: null, f64: 6, ok: null, s: 'a', ts: null, vec: [1, 1, 1] },
  { k: 'key-b', i32: 6, i64: 6, f32: 6, f64: null, ok: true, s: null, ts: 6, vec: [2, 2, 2] },
  { k: 'key-', i32: 7, i64: 7, f32: 7, f64: 7, ok: false, s: 'prefix', ts: 7, vec: [3, 3, 3] },
  { k: '', i32: 8, i64: 8, f32: 8, f64: 8, ok: true, s: 'empty key', ts: 8, vec: [4, 4, 4] },
  // Keys whose 32-bit hashes are equal: only an exact comparison tells them apart.
  { k: COLLIDE_A, i32: 100, i64: 100, f32: 1, f64: 1, ok: true, s: 'collide A', ts: 100, vec: [1, 0, 0] },
  { k: COLLIDE_B, i32: 200, i64: 200, f32: 2, f64: 2, ok: false, s: 'collide B', ts: 200, vec: [0, 1, 0] },
];

/** What the table returns for an input row: int64 as bigint, timestamps as epoch ms, vectors as arrays. */
function expected(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of Object.keys(TYPES) as Col[]) {
    const v = r[c];
    if (v === null || v === undefined) out[c] = null;
    else if (c === 'i64') out[c] = BigInt(v as number | bigint);
    else if (c === 'ts') out[c] = v instanceof Date ? v.getTime() : v;
    else if (c === 'f32') out[c] = Math.fround(v as number);
    else if (c === 'vec') out[c] = Array.from(Float32Array.from(v as ArrayLike<number>));
    else out[c] = v;
  }
  return out;
}

function plain(r: Row | Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    out[k] = v instanceof Float32Array ? Array.from(v) : v;
  }
  return out;
}

const WANT = new Map(INPUT.map((r) => [r.k as string, expected(r)]));

function sortByKey(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return [...rows].sort((a, b) => ((a.k as string) < (b.k as string) ? -1 : a.k === b.k ? 0 : 1));
}

/** Rows of an Arrow table, column by column through the Arrow vectors (not through Sluice). */
function arrowRows(t: Table): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = Array.from({ length: t.numRows }, () => ({}));
  for (const f of t.schema.fields) {
    const col = t.getChild(f.name)!;
    for (let i = 0; i < t.numRows; i++) {
      const v: unknown = col.get(i);
      out[i]![f.name] =
        v === null || v === undefined
          ? null
          : DataType.isFixedSizeList(f.type)
            ? Array.from((v as { toArray(): Float32Array }).toArray())
            : DataType.isTimestamp(f.type) && v instanceof Date
              ? v.getTime()
              : v;
    }
  }
  return out;
}

function checkArrowTypes(t: Table): void {
  const type = (name: string): DataType => t.schema.fields.find((f) => f.name === name)!.type as DataType;
  const int = (name: string, bits: number): void => {
    const ty = type(name);
    expect(DataType.isInt(ty) && ty.bitWidth === bits && ty.isSigned, `${name} is a signed int${bits}`).toBe(
      true,
    );
  };
  int('i32', 32);
  int('i64', 64);
  const f32 = type('f32');
  expect(DataType.isFloat(f32) && f32.precision === Precision.SINGLE, 'f32 is Float32').toBe(true);
  const f64 = type('f64');
  expect(DataType.isFloat(f64) && f64.precision === Precision.DOUBLE, 'f64 is Float64').toBe(true);
  expect(DataType.isBool(type('ok'))).toBe(true);
  expect(DataType.isUtf8(type('k'))).toBe(true);
  expect(DataType.isUtf8(type('s'))).toBe(true);
  const ts = type('ts');
  expect(DataType.isTimestamp(ts) && ts.unit === TimeUnit.MILLISECOND, 'ts is Timestamp(ms)').toBe(true);
  const vec = type('vec');
  expect(DataType.isFixedSizeList(vec) && vec.listSize === 3, 'vec is FixedSizeList[3]').toBe(true);
  const child = (vec as unknown as { children: { type: DataType }[] }).children[0]!.type;
  expect(DataType.isFloat(child) && child.precision === Precision.SINGLE, 'vec items are Float32').toBe(true);
  for (const name of NULLABLE) {
    expect(t.schema.fields.find((f) => f.name === name)!.nullable, `${name} is nullable`).toBe(true);
  }
}

async function checkAll(db: Db): Promise<void> {
  for (const [k, want] of WANT) expect(plain(await db.get(k)), `get(${JSON.stringify(k)})`).toEqual(want);
  const keys = [...WANT.keys()];
  expect((await db.getMany(keys)).map(plain)).toEqual(keys.map((k) => WANT.get(k)));
  for (const absent of ['key-c', 'key', 'cafe', 'caf', 'plain ', 'Plain', 'collide-x']) {
    expect(await db.get(absent), `get(${JSON.stringify(absent)})`).toBeUndefined();
  }
  const want = sortByKey([...WANT.values()]);
  expect(sortByKey((await db.scan().toArray()).map((r) => plain(r)!))).toEqual(want);
  const table = await db.scan().toArrow();
  expect(table.numRows).toBe(WANT.size);
  checkArrowTypes(table);
  expect(sortByKey(arrowRows(table))).toEqual(want);
  // Filters on the new types see the exact values.
  const big = await db.scan({ filter: { column: 'i64', op: '>', value: 2n ** 53n } }).toArray();
  expect(big.map((r) => r.k).sort()).toEqual(['beyond-2^53', 'extremes']);
  const nulls = await db.scan({ filter: { column: 'vec', op: 'is null' } }).toArray();
  expect(nulls.map((r) => r.k).sort()).toEqual(['all-null', 'cafe\u0301']);
}

type Placement = 'active' | 'frozen' | 'flushed' | 'reopen (WAL)' | 'reopen (files)';

async function place(dir: string, placement: Placement): Promise<Db> {
  const options = { schema: TYPES, primaryKey: 'k', shards: 2, onWarning: () => undefined };
  let db = await open(dir, options);
  // Half the rows first, then all of them again: every key is an update of itself.
  await db.put(INPUT.slice(0, 8));
  await db.put(INPUT);
  if (placement === 'frozen') {
    const hold = gate();
    for (const lc of internals(db).broker.lifecycles) lc.holds.beforeFlush = hold.promise;
    await internals(db).broker.freeze();
    expect(shardSum(db, 'frozen')).toBeGreaterThan(0);
  }
  if (placement === 'flushed' || placement === 'reopen (files)') {
    await db.flush();
    expect([shardSum(db, 'activeRows'), shardSum(db, 'generations') > 0]).toEqual([0, true]);
  }
  if (placement.startsWith('reopen')) {
    await db.close();
    db = await open(dir, { onWarning: () => undefined });
    if (placement === 'reopen (WAL)') expect(shardSum(db, 'generations')).toBe(0);
  }
  return db;
}

describe.each(['active', 'frozen', 'flushed', 'reopen (WAL)', 'reopen (files)'] as Placement[])(
  'types, placement: %s',
  (placement) => {
    it('every type round-trips through get, toArray and toArrow, nulls and edge values included', async () => {
      const db = await place(await tempDir('types'), placement);
      try {
        await checkAll(db);
      } finally {
        await db.close();
      }
    });
  },
);

describe('types: Arrow in, Arrow out', () => {
  it('a table scanned to Arrow and put into a new table gives back the same rows', async () => {
    const src = await place(await tempDir('types-src'), 'flushed');
    const table = await src.scan().toArrow();
    await src.close();
    const db = await open(await tempDir('types-dst'), {
      schema: TYPES,
      primaryKey: 'k',
      shards: 3,
      onWarning: () => undefined,
    });
    await db.put(table);
    await checkAll(db);
    await db.flush();
    await checkAll(db);
    await db.close();
  });
});

describe('types: int64 primary keys', () => {
  const [HA, HB] = collidingInt64();
  const KEYS: (number | bigint)[] = [
    0,
    1,
    -1,
    2 ** 31,
    -(2 ** 31) - 1,
    2 ** 32,
    2 ** 32 + 1,
    Number.MAX_SAFE_INTEGER,
    2n ** 53n + 1n,
    -(2n ** 53n) - 1n,
    2n ** 63n - 1n,
    -(2n ** 63n),
    HA,
    HB,
  ];

  it.each(['active', 'flushed', 'reopen'] as const)(
    'extreme and hash-colliding keys stay distinct and exact (%s)',
    async (placement) => {
      const dir = await tempDir('types-i64');
      let db = await open(dir, {
        schema: { id: 'int64', note: 'utf8' },
        primaryKey: 'id',
        shards: 2,
        onWarning: () => undefined,
      });
      await db.put(KEYS.map((id, i) => ({ id, note: `n${i}` })));
      if (placement !== 'active') await db.flush();
      if (placement === 'reopen') {
        await db.close();
        db = await open(dir, { onWarning: () => undefined });
      }
      for (const [i, id] of KEYS.entries()) {
        expect(await db.get(id), `get(${id})`).toEqual({ id: BigInt(id), note: `n${i}` });
        if (typeof id === 'number')
          expect(await db.get(BigInt(id))).toEqual({ id: BigInt(id), note: `n${i}` });
      }
      expect(await db.get(2n ** 53n)).toBeUndefined();
      expect(await db.get(HA + 1n)).toBeUndefined();
      const rows = await db.scan().toArray();
      expect(rows.map((r) => r.id as bigint).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))).toEqual(
        KEYS.map((k) => BigInt(k)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      );
      const arrow = await db.scan().toArrow();
      const idType = arrow.schema.fields[0]!.type as DataType;
      expect(DataType.isInt(idType) && idType.bitWidth === 64).toBe(true);
      await db.close();
    },
  );
});
