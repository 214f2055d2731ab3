import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { viewBatch } from '../src/batch-format.js';
import type { ColumnBuffers, ColumnarView } from '../src/columnar.js';
import { OP_PUT } from '../src/columnar.js';
import { MAX_FILTER_DEPTH, compileFilter } from '../src/filter.js';
import type { Filter, Scalar } from '../src/filter.js';
import { RowEncoder } from '../src/row-encoder.js';
import { schemaFromJson } from '../src/schema.js';
import type { ColumnSpec, TableSchema } from '../src/schema.js';

const schema = schemaFromJson({
  columns: [
    { name: 'id', type: 'int64' },
    { name: 'i', type: 'int32' },
    { name: 'big', type: 'int64' },
    { name: 'ts', type: 'timestamp' },
    { name: 'f', type: 'float32' },
    { name: 'd', type: 'float64' },
    { name: 'b', type: 'bool' },
    { name: 's', type: 'utf8' },
    { name: 'v', type: 'float32[2]' },
  ],
  primaryKey: 'id',
});

type Row = Record<string, unknown>;

function viewOf(s: TableSchema, rows: readonly Row[]): ColumnarView {
  const enc = new RowEncoder(s, 1, { maxValueBytes: 1 << 20 });
  const plan = enc.plan(rows, OP_PUT);
  const bytes = new Uint8Array(new ArrayBuffer(plan.shardBytes[0]!));
  enc.write(plan, 0, bytes, 1);
  return viewBatch(s, bytes);
}

/**
 * The same rows with every validity bitmap (made non-null) and every bool bitmap moved `k`
 * bits in, as sliced Arrow data is; the `k` skipped bits are set to the wrong values on purpose.
 */
function shiftedView(s: TableSchema, view: ColumnarView, k: number): ColumnarView {
  const shiftBits = (src: Uint8Array | null, srcOffset: number, fillPrefix: boolean): Uint8Array => {
    const out = new Uint8Array((view.rows + k + 7) >> 3);
    for (let i = 0; i < k; i++) if (fillPrefix) out[i >> 3]! |= 1 << (i & 7);
    for (let r = 0; r < view.rows; r++) {
      const b = srcOffset + r;
      const set = src === null || (src[b >> 3]! & (1 << (b & 7))) !== 0;
      if (set) out[(k + r) >> 3]! |= 1 << ((k + r) & 7);
    }
    return out;
  };
  const columns: ColumnBuffers[] = view.columns.map((col, i) => ({
    validity: shiftBits(col.validity, col.validityOffset, false),
    validityOffset: k,
    values:
      s.columns[i]!.kind === 'bool'
        ? shiftBits(col.values as Uint8Array, col.valuesOffset, true)
        : col.values,
    valuesOffset: s.columns[i]!.kind === 'bool' ? k : 0,
    data: col.data,
  }));
  return { rows: view.rows, op: view.op, columns };
}

function matching(view: ColumnarView, filter: unknown): number[] {
  const f = compileFilter(schema, filter);
  const out: number[] = [];
  for (let r = 0; r < view.rows; r++) if (f.matches(view, r)) out.push(r);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Fixture: 12 rows, id = row index; each column mixes nulls with edge values.
// ---------------------------------------------------------------------------------------------

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const P53 = 2n ** 53n;

const cols = {
  i: [null, -5, 0, 7, 2147483647, -2147483648, 7, 3, null, -1, 100, 0],
  big: [
    null,
    0n,
    -1n,
    1n,
    P53,
    P53 + 1n,
    -P53 - 1n,
    I64_MAX,
    I64_MIN,
    2n ** 32n,
    2n ** 32n - 1n,
    -(2n ** 32n),
  ],
  ts: [
    null,
    new Date(0),
    -1,
    new Date('2024-01-01T00:00:00Z'),
    8.64e15,
    -8.64e15,
    1_700_000_000_000,
    1_700_000_000_001,
    null,
    Date.UTC(2024, 0, 1),
    0,
    2 ** 40,
  ],
  f: [null, 0.1, -0, 1.5, NaN, Infinity, -Infinity, -2.5, 3.4e38, 0, Math.fround(0.1), null],
  d: [null, 0.1, 0, NaN, -1e300, 1e300, Infinity, 0.1 + 0.2, -0, 2.5, null, 5e-324],
  b: [null, true, false, true, false, null, true, true, false, null, false, true],
  s: [null, '', 'a', 'ab', 'b', 'é', '\uFFFF', '😀', '\uE000', 'A', 'e\u0301', 'zz'],
  v: [null, [1, 2], [0, 0], null, [NaN, 1], [3, 4], null, [5, 6], [7, 8], [9, 10], null, [0, -1]],
} as const;

const fixtureRows: Row[] = Array.from({ length: 12 }, (_, r) => {
  const row: Row = { id: r };
  for (const [name, values] of Object.entries(cols)) row[name] = values[r];
  return row;
});
const fixture = viewOf(schema, fixtureRows);
const fixtureShifted = shiftedView(schema, fixture, 5);

/** Rows matching `filter`, checked to agree between the plain and the shifted (sliced) view. */
function rowsOf(filter: unknown): number[] {
  const plain = matching(fixture, filter);
  expect(matching(fixtureShifted, filter)).toEqual(plain);
  return plain;
}

function cmp(column: string, op: '=' | '!=' | '<' | '<=' | '>' | '>=', value: Scalar): number[] {
  return rowsOf({ column, op, value });
}

describe('compileFilter: int32', () => {
  it('compares every op, nulls never match a comparison', () => {
    expect(cmp('i', '=', 7)).toEqual([3, 6]);
    expect(cmp('i', '!=', 7)).toEqual([1, 2, 4, 5, 7, 9, 10, 11]);
    expect(cmp('i', '<', 0)).toEqual([1, 5, 9]);
    expect(cmp('i', '<=', 0)).toEqual([1, 2, 5, 9, 11]);
    expect(cmp('i', '>', 7)).toEqual([4, 10]);
    expect(cmp('i', '>=', 7)).toEqual([3, 4, 6, 10]);
    expect(cmp('i', '=', -2147483648)).toEqual([5]);
    expect(rowsOf({ column: 'i', op: 'in', values: [7, 0, 7, -1] })).toEqual([2, 3, 6, 9, 11]);
    expect(rowsOf({ column: 'i', op: 'in', values: [100] })).toEqual([10]);
    expect(rowsOf({ column: 'i', op: 'in', values: [] })).toEqual([]);
    expect(rowsOf({ column: 'i', op: 'is null' })).toEqual([0, 8]);
    expect(rowsOf({ column: 'i', op: 'is not null' })).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10, 11]);
  });
});

describe('compileFilter: int64', () => {
  it('is exact beyond 2^53 and across the sign and word boundaries', () => {
    expect(cmp('big', '=', P53 + 1n)).toEqual([5]);
    expect(cmp('big', '=', P53)).toEqual([4]);
    expect(cmp('big', '=', 2 ** 53 - 1)).toEqual([]);
    expect(cmp('big', '>', P53)).toEqual([5, 7]);
    expect(cmp('big', '>=', P53)).toEqual([4, 5, 7]);
    expect(cmp('big', '<', 0)).toEqual([2, 6, 8, 11]);
    expect(cmp('big', '<', -1n)).toEqual([6, 8, 11]);
    expect(cmp('big', '<=', -(2 ** 32))).toEqual([6, 8, 11]);
    expect(cmp('big', '<', -(2 ** 32))).toEqual([6, 8]);
    expect(cmp('big', '>', 2 ** 32 - 1)).toEqual([4, 5, 7, 9]);
    expect(cmp('big', '>=', 2 ** 32 - 1)).toEqual([4, 5, 7, 9, 10]);
    expect(cmp('big', '<', 2 ** 32)).toEqual([1, 2, 3, 6, 8, 10, 11]);
    expect(cmp('big', '=', I64_MIN)).toEqual([8]);
    expect(cmp('big', '>', I64_MIN)).toEqual([1, 2, 3, 4, 5, 6, 7, 9, 10, 11]);
    expect(cmp('big', '<', I64_MAX)).toEqual([1, 2, 3, 4, 5, 6, 8, 9, 10, 11]);
    expect(cmp('big', '>=', I64_MAX)).toEqual([7]);
    expect(cmp('big', '!=', 0)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // A number constant and a bigint constant denote the same int64.
    expect(cmp('big', '=', 1)).toEqual(cmp('big', '=', 1n));
  });

  it('in uses exact words, dedupes and mixes number and bigint constants', () => {
    expect(
      rowsOf({ column: 'big', op: 'in', values: [P53 + 1n, -1, I64_MIN, 2 ** 32, -1n, 12345n] }),
    ).toEqual([2, 5, 8, 9]);
    expect(rowsOf({ column: 'big', op: 'in', values: [P53 - 1n, P53 + 2n] })).toEqual([]);
    expect(rowsOf({ column: 'big', op: 'in', values: [I64_MAX] })).toEqual([7]);
    expect(rowsOf({ column: 'big', op: 'is null' })).toEqual([0]);
  });

  it('works on the primary key column', () => {
    expect(cmp('id', '>=', 10)).toEqual([10, 11]);
    expect(rowsOf({ column: 'id', op: 'is null' })).toEqual([]);
  });
});

describe('compileFilter: timestamp', () => {
  it('accepts Date and epoch milliseconds interchangeably', () => {
    expect(cmp('ts', '=', new Date('2024-01-01T00:00:00Z'))).toEqual([3, 9]);
    expect(cmp('ts', '=', Date.UTC(2024, 0, 1))).toEqual([3, 9]);
    expect(cmp('ts', '<', 0)).toEqual([2, 5]);
    expect(cmp('ts', '<=', new Date(0))).toEqual([1, 2, 5, 10]);
    expect(cmp('ts', '>', 1_700_000_000_000)).toEqual([3, 4, 7, 9]);
    expect(cmp('ts', '>=', new Date(8.64e15))).toEqual([4]);
    expect(cmp('ts', '!=', 0)).toEqual([2, 3, 4, 5, 6, 7, 9, 11]);
    expect(rowsOf({ column: 'ts', op: 'in', values: [new Date(2 ** 40), -1, 5] })).toEqual([2, 11]);
    expect(rowsOf({ column: 'ts', op: 'is null' })).toEqual([0, 8]);
  });
});

describe('compileFilter: floats', () => {
  it('float32 compares the stored value exactly; NaN cells compare false under every op', () => {
    expect(cmp('f', '=', 0.1)).toEqual([]);
    expect(cmp('f', '=', Math.fround(0.1))).toEqual([1, 10]);
    expect(cmp('f', '>', 0.1)).toEqual([1, 3, 5, 8, 10]);
    expect(cmp('f', '=', 0)).toEqual([2, 9]);
    expect(cmp('f', '=', -0)).toEqual([2, 9]);
    expect(cmp('f', '!=', 0)).toEqual([1, 3, 5, 6, 7, 8, 10]);
    expect(cmp('f', '<', 0)).toEqual([6, 7]);
    expect(cmp('f', '<=', -Infinity)).toEqual([6]);
    expect(cmp('f', '>=', Infinity)).toEqual([5]);
    expect(cmp('f', '>', 1e38)).toEqual([5, 8]);
    expect(rowsOf({ column: 'f', op: 'in', values: [1.5, -2.5, Math.fround(0.1), 0.1] })).toEqual([
      1, 3, 7, 10,
    ]);
    expect(rowsOf({ column: 'f', op: 'is null' })).toEqual([0, 11]);
    expect(rowsOf({ not: { column: 'f', op: '=', value: 1.5 } })).toEqual([
      0, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11,
    ]);
  });

  it('float64 compares exactly, including subnormals, infinities and -0', () => {
    expect(cmp('d', '=', 0.1)).toEqual([1]);
    expect(cmp('d', '=', 0.3)).toEqual([]);
    expect(cmp('d', '>', 0.3)).toEqual([5, 6, 7, 9]);
    expect(cmp('d', '=', 0)).toEqual([2, 8]);
    expect(cmp('d', '>', 0)).toEqual([1, 5, 6, 7, 9, 11]);
    expect(cmp('d', '<', 0)).toEqual([4]);
    expect(cmp('d', '<=', 5e-324)).toEqual([2, 4, 8, 11]);
    expect(cmp('d', '!=', 2.5)).toEqual([1, 2, 4, 5, 6, 7, 8, 11]);
    expect(cmp('d', '>=', Infinity)).toEqual([6]);
    expect(rowsOf({ column: 'd', op: 'in', values: [-0, Infinity, 0.1 + 0.2] })).toEqual([2, 6, 7, 8]);
    expect(rowsOf({ column: 'd', op: 'is not null' })).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 11]);
  });
});

describe('compileFilter: bool', () => {
  it('supports =, != and in; nulls match none of them', () => {
    expect(cmp('b', '=', true)).toEqual([1, 3, 6, 7, 11]);
    expect(cmp('b', '=', false)).toEqual([2, 4, 8, 10]);
    expect(cmp('b', '!=', true)).toEqual([2, 4, 8, 10]);
    expect(cmp('b', '!=', false)).toEqual([1, 3, 6, 7, 11]);
    expect(rowsOf({ column: 'b', op: 'in', values: [true, false] })).toEqual([1, 2, 3, 4, 6, 7, 8, 10, 11]);
    expect(rowsOf({ column: 'b', op: 'in', values: [false, false] })).toEqual([2, 4, 8, 10]);
    expect(rowsOf({ column: 'b', op: 'in', values: [] })).toEqual([]);
    expect(rowsOf({ column: 'b', op: 'is null' })).toEqual([0, 5, 9]);
  });
});

describe('compileFilter: utf8', () => {
  it('orders bytewise on UTF-8 (code point order, not UTF-16 order)', () => {
    // UTF-16 puts '😀' (a surrogate pair) before U+E000 and U+FFFF; UTF-8 bytes put it after both.
    expect(cmp('s', '>', '\uFFFF')).toEqual([7]);
    expect(cmp('s', '>', '\uE000')).toEqual([6, 7]);
    expect(cmp('s', '<', '\uE000')).toEqual([1, 2, 3, 4, 5, 9, 10, 11]);
    expect(cmp('s', '>=', '😀')).toEqual([7]);
    expect(cmp('s', '<=', 'é')).toEqual([1, 2, 3, 4, 5, 9, 10, 11]);
    expect(cmp('s', '>', 'é')).toEqual([6, 7, 8]);
  });

  it('compares prefixes, the empty string and decomposed forms exactly', () => {
    expect(cmp('s', '=', '')).toEqual([1]);
    expect(cmp('s', '<', 'a')).toEqual([1, 9]);
    expect(cmp('s', '>', 'a')).toEqual([3, 4, 5, 6, 7, 8, 10, 11]);
    expect(cmp('s', '<', 'ab')).toEqual([1, 2, 9]);
    expect(cmp('s', '=', 'é')).toEqual([5]);
    expect(cmp('s', '=', 'e\u0301')).toEqual([10]);
    expect(cmp('s', '!=', 'a')).toEqual([1, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(rowsOf({ column: 's', op: 'in', values: ['😀', 'a', 'zz', 'nope', 'a', ''] })).toEqual([
      1, 2, 7, 11,
    ]);
    expect(rowsOf({ column: 's', op: 'in', values: ['\uE000'] })).toEqual([8]);
    expect(rowsOf({ column: 's', op: 'is null' })).toEqual([0]);
  });
});

describe('compileFilter: vectors and logic', () => {
  it('vectors support only null tests', () => {
    expect(rowsOf({ column: 'v', op: 'is null' })).toEqual([0, 3, 6, 10]);
    expect(rowsOf({ column: 'v', op: 'is not null' })).toEqual([1, 2, 4, 5, 7, 8, 9, 11]);
  });

  it('and / or / not nest; empty and is true, empty or is false', () => {
    const all = Array.from({ length: 12 }, (_, i) => i);
    expect(rowsOf({ and: [] })).toEqual(all);
    expect(rowsOf({ or: [] })).toEqual([]);
    expect(rowsOf({ not: { and: [] } })).toEqual([]);
    expect(rowsOf({ not: { or: [] } })).toEqual(all);
    expect(
      rowsOf({
        and: [
          { column: 'b', op: '=', value: true },
          {
            or: [
              { column: 'i', op: '>', value: 5 },
              { column: 's', op: 'in', values: ['', 'ab'] },
            ],
          },
        ],
      }),
    ).toEqual([1, 3, 6]);
    expect(
      rowsOf({
        or: [
          { column: 'big', op: '<', value: I64_MIN + 1n },
          { not: { column: 'v', op: 'is not null' } },
          {
            and: [
              { column: 'd', op: '>', value: 1 },
              { column: 'f', op: '<', value: 10 },
              { column: 'id', op: '>', value: 6 },
            ],
          },
        ],
      }),
    ).toEqual([0, 3, 6, 8, 9, 10]);
  });

  it('keeps logic two-valued: not of a comparison on a null cell is true', () => {
    expect(rowsOf({ not: { column: 'i', op: '=', value: 7 } })).toEqual([0, 1, 2, 4, 5, 7, 8, 9, 10, 11]);
    expect(rowsOf({ not: { column: 'i', op: '!=', value: 7 } })).toEqual([0, 3, 6, 8]);
    expect(rowsOf({ not: { not: { column: 'i', op: '=', value: 7 } } })).toEqual([3, 6]);
    expect(rowsOf({ not: { column: 's', op: 'in', values: ['a'] } })).toEqual([
      0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11,
    ]);
  });

  it('reports the columns it reads and survives structured clone', () => {
    const filter: Filter = {
      and: [
        { column: 's', op: '>', value: 'a' },
        { not: { column: 'big', op: 'in', values: [P53 + 1n, 3] } },
        {
          or: [
            { column: 'ts', op: '<', value: new Date(1) },
            { column: 'ts', op: 'is null' },
          ],
        },
      ],
    };
    const compiled = compileFilter(schema, structuredClone(filter));
    expect([...compiled.columns].sort((a, b) => a - b)).toEqual([2, 3, 7]);
    expect(matching(fixture, structuredClone(filter))).toEqual(matching(fixture, filter));
    expect(matching(fixture, filter)).toEqual([8, 10]);
    expect(compileFilter(schema, { and: [] }).columns.size).toBe(0);
  });

  it(`accepts nesting up to ${MAX_FILTER_DEPTH} levels`, () => {
    let f: Filter = { column: 'i', op: '=', value: 7 };
    for (let i = 1; i < MAX_FILTER_DEPTH; i++) f = { not: f };
    // 63 nots around the leaf: an odd count negates it.
    expect(rowsOf(f)).toEqual([0, 1, 2, 4, 5, 7, 8, 9, 10, 11]);
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed filters
// ---------------------------------------------------------------------------------------------

const ok = { column: 'i', op: '=', value: 1 };
const cyclic: Record<string, unknown> = {};
cyclic.not = cyclic;
let tooDeep: unknown = ok;
for (let i = 0; i < MAX_FILTER_DEPTH; i++) tooDeep = { not: tooDeep };

/** An array with a hole at index 1 (as a sparse literal would make). */
const holey: unknown[] = [1];
holey[2] = 2;

const malformed: readonly [string, unknown, string, RegExp][] = [
  ['a number as the filter', 42, 'filter', /expected a filter object.*got number 42/],
  ['null as the filter', null, 'filter', /got null/],
  ['an array as the filter', [ok], 'filter', /got array of length 1/],
  ['a Date as a node', { not: new Date(0) }, 'filter.not', /expected a filter object.*Date/],
  ['an empty object', {}, 'filter', /empty object/],
  [
    'an unknown column',
    { column: 'nope', op: '=', value: 1 },
    'filter.column',
    /unknown column "nope" \(the schema has id, i, big, ts, f, d, b, s, v\)/,
  ],
  [
    'a non-string column',
    { column: 3, op: 'is null' },
    'filter.column',
    /expected a column name, got number 3/,
  ],
  ['a missing column', { op: 'is null' }, 'filter.column', /missing/],
  [
    'an unknown op',
    { column: 'i', op: 'like', value: 1 },
    'filter.op',
    /unknown op "like" \(expected one of =, !=, <, <=, >, >=, in, is null, is not null\)/,
  ],
  ['a non-string op', { column: 'i', op: 5, value: 1 }, 'filter.op', /unknown op number 5/],
  ['a missing op', { column: 'i', value: 1 }, 'filter.op', /missing/],
  [
    'a string for int32',
    { and: [ok, { column: 'i', op: '=', value: '5' }] },
    'filter.and[1].value',
    /expected an int32.*column "i".*got string "5"/,
  ],
  ['a fraction for int32', { column: 'i', op: '<', value: 1.5 }, 'filter.value', /expected an int32/],
  ['an out-of-range int32', { column: 'i', op: '<', value: 2 ** 31 }, 'filter.value', /expected an int32/],
  [
    'an unsafe number for int64',
    { column: 'big', op: '=', value: 2 ** 60 },
    'filter.value',
    /not a safe integer.*bigint/,
  ],
  [
    'a bigint outside int64',
    { column: 'big', op: '=', value: 2n ** 63n },
    'filter.value',
    /bigint 9223372036854775808 is outside int64/,
  ],
  [
    'a fraction for int64',
    { column: 'big', op: '>', value: 0.5 },
    'filter.value',
    /expected an int64 \(safe integer number or bigint\)/,
  ],
  [
    'a Date for int64',
    { column: 'big', op: '>', value: new Date(0) },
    'filter.value',
    /expected an int64.*got Date/,
  ],
  [
    'a string for timestamp',
    { column: 'ts', op: '<', value: '2024-01-01' },
    'filter.value',
    /expected a Date or integer epoch milliseconds/,
  ],
  ['an invalid Date', { column: 'ts', op: '<', value: new Date('nope') }, 'filter.value', /invalid Date/],
  [
    'a bigint for timestamp',
    { column: 'ts', op: '<', value: 5n },
    'filter.value',
    /expected a Date or integer epoch milliseconds/,
  ],
  [
    'a number for utf8',
    { column: 's', op: '=', value: 1 },
    'filter.value',
    /expected a string.*column "s" \(utf8\)/,
  ],
  ['a number for bool', { column: 'b', op: '=', value: 1 }, 'filter.value', /expected a boolean/],
  [
    'an ordering op on bool',
    { column: 'b', op: '<', value: true },
    'filter.op',
    /op "<" is not defined on column "b" \(bool\)/,
  ],
  ['a string for float', { column: 'f', op: '<', value: '1.5' }, 'filter.value', /expected a number/],
  ['NaN for float64', { column: 'd', op: '=', value: NaN }, 'filter.value', /NaN/],
  [
    'a comparison on a vector',
    { column: 'v', op: '=', value: 1 },
    'filter.op',
    /only "is null" and "is not null"/,
  ],
  ['in on a vector', { column: 'v', op: 'in', values: [] }, 'filter.op', /only "is null" and "is not null"/],
  ['null instead of is null', { column: 'i', op: '=', value: null }, 'filter.value', /use op "is null"/],
  ['a missing value', { column: 'i', op: '>=' }, 'filter.value', /missing/],
  [
    'values on a comparison',
    { column: 'i', op: '=', value: 1, values: [1] },
    'filter.values',
    /unknown key "values"/,
  ],
  [
    'in with a non-array',
    { column: 'i', op: 'in', values: 5 },
    'filter.values',
    /needs an array of values, got number 5/,
  ],
  [
    'in with value instead of values',
    { column: 'i', op: 'in', value: [1] },
    'filter.value',
    /takes "values"/,
  ],
  ['in with a missing values', { column: 'i', op: 'in' }, 'filter.values', /missing/],
  [
    'in with a bad element',
    { column: 's', op: 'in', values: ['a', 2] },
    'filter.values[1]',
    /expected a string/,
  ],
  ['in with a NaN element', { column: 'f', op: 'in', values: [1, NaN] }, 'filter.values[1]', /NaN/],
  ['in with a hole', { column: 'i', op: 'in', values: holey }, 'filter.values[1]', /undefined/],
  ['is null with a value', { column: 'i', op: 'is null', value: 1 }, 'filter.value', /takes no value/],
  [
    'an unknown key on a leaf',
    { column: 'i', op: '=', value: 1, extra: true },
    'filter.extra',
    /unknown key "extra"/,
  ],
  [
    'an oddly named unknown key',
    { column: 'i', op: 'is null', 'a-b': 1 },
    'filter["a-b"]',
    /unknown key "a-b"/,
  ],
  ['an unknown key on and', { and: [], column: 'i' }, 'filter.column', /unknown key "column" on an and node/],
  ['both and and or', { and: [], or: [] }, 'filter', /exactly one of and, or, not/],
  ['and with a non-array', { and: ok }, 'filter.and', /expected an array of filters, got object/],
  ['or with a null member', { or: [ok, null] }, 'filter.or[1]', /got null/],
  ['not with an array', { not: [ok] }, 'filter.not', /got array/],
  [
    'a deep bad value',
    { or: [ok, { and: [{ not: { column: 's', op: '>', value: 1 } }] }] },
    'filter.or[1].and[0].not.value',
    /expected a string/,
  ],
  ['nesting deeper than 64', tooDeep, `filter${'.not'.repeat(MAX_FILTER_DEPTH)}`, /deeper than 64/],
  ['a cyclic filter', cyclic, `filter${'.not'.repeat(MAX_FILTER_DEPTH)}`, /deeper than 64/],
];

describe('compileFilter: malformed filters', () => {
  it('has a catalogue of at least 15 cases', () => {
    expect(malformed.length).toBeGreaterThanOrEqual(15);
  });

  it.each(malformed)('rejects %s', (_name, filter, path, message) => {
    let err: unknown;
    try {
      compileFilter(schema, filter);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SluiceError);
    const e = err as SluiceError;
    expect(e.code).toBe(ErrorCode.INVALID_FILTER);
    expect(e.code).toBe('SLUICE_INVALID_FILTER');
    expect(e.message.startsWith(`${path}: `)).toBe(true);
    expect(e.message).toMatch(message);
    expect(e.details.path).toBe(path);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: compiled filters agree with a direct evaluator over the plain rows
// ---------------------------------------------------------------------------------------------

const utf8Bytes = (s: string): Buffer => Buffer.from(s, 'utf8');

/** A cell or constant in a totally comparable form; undefined for NaN (which compares false). */
function normalise(spec: ColumnSpec, v: unknown, isCell: boolean): number | bigint | string | undefined {
  switch (spec.kind) {
    case 'i32':
    case 'f64':
      return Number.isNaN(v) ? undefined : (v as number);
    case 'f32': {
      const x = isCell ? Math.fround(v as number) : (v as number);
      return Number.isNaN(x) ? undefined : x;
    }
    case 'i64':
      return BigInt(v instanceof Date ? v.getTime() : (v as number | bigint));
    case 'bool':
      return v ? 1 : 0;
    case 'utf8':
      return v as string;
    case 'vector':
      throw new Error('vectors are not comparable');
  }
}

function compareNormal(spec: ColumnSpec, a: number | bigint | string, b: number | bigint | string): number {
  if (spec.kind === 'utf8') return Buffer.compare(utf8Bytes(a as string), utf8Bytes(b as string));
  return a < b ? -1 : a > b ? 1 : 0;
}

function reference(f: Filter, row: Row): boolean {
  if ('and' in f) return f.and.every((g) => reference(g, row));
  if ('or' in f) return f.or.some((g) => reference(g, row));
  if ('not' in f) return !reference(f.not, row);
  const spec = schema.byName.get(f.column)!;
  const cell = row[f.column] ?? null;
  if (f.op === 'is null') return cell === null;
  if (f.op === 'is not null') return cell !== null;
  if (cell === null) return false;
  const x = normalise(spec, cell, true);
  if (x === undefined) return false;
  if (f.op === 'in') return f.values.some((v) => compareNormal(spec, x, normalise(spec, v, false)!) === 0);
  if (!('value' in f)) throw new Error('unreachable: a null test was handled above');
  const c = compareNormal(spec, x, normalise(spec, f.value, false)!);
  switch (f.op) {
    case '=':
      return c === 0;
    case '!=':
      return c !== 0;
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    case '>=':
      return c >= 0;
  }
}

const int64Pool = [
  0n,
  1n,
  -1n,
  P53,
  P53 + 1n,
  -P53 - 1n,
  I64_MAX,
  I64_MIN,
  I64_MAX - 1n,
  I64_MIN + 1n,
  2n ** 32n,
  2n ** 32n - 1n,
  2n ** 31n,
  -(2n ** 31n) - 1n,
  -(2n ** 32n),
];
const int64Arb = fc.oneof(fc.constantFrom(...int64Pool), fc.bigInt({ min: I64_MIN, max: I64_MAX }));
/** int64 constants: bigints, and the same values as numbers when they are safe integers. */
const int64ConstArb = int64Arb.chain((v) =>
  v >= -(2n ** 53n) + 1n && v <= 2n ** 53n - 1n
    ? fc.constantFrom<Scalar>(v, Number(v))
    : fc.constant<Scalar>(v),
);
const int32Arb = fc.oneof(fc.constantFrom(0, 1, -1, 7, 2147483647, -2147483648), fc.integer());
const tsArb = fc.oneof(
  fc.constantFrom(0, -1, 1, 8.64e15, -8.64e15, 2 ** 32, -(2 ** 32), 1_700_000_000_000),
  fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
);
const tsConstArb = tsArb.chain((ms) => fc.constantFrom<Scalar>(ms, new Date(ms)));
const floatPool = [
  0,
  -0,
  1.5,
  -2.5,
  0.1,
  Math.fround(0.1),
  Infinity,
  -Infinity,
  1e30,
  -1e-30,
  3.4028234663852886e38,
];
const float32Arb = fc.oneof(fc.constantFrom(...floatPool), fc.float({ noNaN: true }));
const float64Arb = fc.oneof(fc.constantFrom(...floatPool), fc.double({ noNaN: true }));
const stringArb = fc
  .array(fc.constantFrom('a', 'b', 'é', 'e\u0301', '\uE000', '\uFFFF', '😀', '\u0000', 'Z', '\u07FF'), {
    maxLength: 3,
  })
  .map((parts) => parts.join(''));

/** Cell values per column (NaN allowed in float cells, not in constants). */
const cellArbs: Record<string, fc.Arbitrary<unknown>> = {
  i: int32Arb,
  big: int64Arb,
  ts: tsConstArb,
  f: fc.oneof(float32Arb, fc.constant(NaN)),
  d: fc.oneof(float64Arb, fc.constant(NaN)),
  b: fc.boolean(),
  s: stringArb,
  v: fc.constant([1, 2]),
};
const constArbs: Record<string, fc.Arbitrary<Scalar>> = {
  id: int64ConstArb,
  i: int32Arb,
  big: int64ConstArb,
  ts: tsConstArb,
  f: float32Arb,
  d: float64Arb,
  b: fc.boolean(),
  s: stringArb,
};

const rowArb: fc.Arbitrary<Row> = fc.record(
  Object.fromEntries(Object.entries(cellArbs).map(([k, a]) => [k, fc.option(a, { nil: null, freq: 4 })])),
);
const rowsArb = fc
  .array(rowArb, { minLength: 1, maxLength: 40 })
  .map((rows) => rows.map((r, i): Row => ({ ...r, id: i * 1_000_003 - 20_000_000 })));

function leafArb(spec: ColumnSpec): fc.Arbitrary<Filter> {
  const column = spec.name;
  const nullTest = fc
    .constantFrom<'is null' | 'is not null'>('is null', 'is not null')
    .map((op): Filter => ({ column, op }));
  const k = constArbs[column];
  if (k === undefined) return nullTest;
  const ops = spec.kind === 'bool' ? (['=', '!='] as const) : (['=', '!=', '<', '<=', '>', '>='] as const);
  return fc.oneof(
    {
      arbitrary: fc.record({
        column: fc.constant(column),
        op: fc.constantFrom(...ops),
        value: k,
      }) as fc.Arbitrary<Filter>,
      weight: 4,
    },
    {
      arbitrary: fc.record({
        column: fc.constant(column),
        op: fc.constant('in' as const),
        values: fc.array(k, { maxLength: 5 }),
      }),
      weight: 2,
    },
    { arbitrary: nullTest, weight: 1 },
  );
}

const anyLeaf = fc.oneof(...schema.columns.map(leafArb));
const filterArb: fc.Memo<Filter> = fc.memo((n) =>
  n <= 1
    ? anyLeaf
    : fc.oneof(
        { arbitrary: anyLeaf, weight: 3 },
        { arbitrary: fc.record({ and: fc.array(filterArb(n - 1), { maxLength: 3 }) }), weight: 1 },
        { arbitrary: fc.record({ or: fc.array(filterArb(n - 1), { maxLength: 3 }) }), weight: 1 },
        { arbitrary: fc.record({ not: filterArb(n - 1) }), weight: 1 },
      ),
);

describe('compileFilter: property', () => {
  it('matches a direct evaluator over random rows and random filters', () => {
    fc.assert(
      fc.property(
        rowsArb,
        fc.array(filterArb(4), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 13 }),
        (rows, filters, shift) => {
          const view = viewOf(schema, rows);
          const sliced = shiftedView(schema, view, shift);
          for (const filter of filters) {
            const compiled = compileFilter(schema, structuredClone(filter));
            for (let r = 0; r < rows.length; r++) {
              const want = reference(filter, rows[r]!);
              expect(compiled.matches(view, r)).toBe(want);
              expect(compiled.matches(sliced, r)).toBe(want);
            }
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
