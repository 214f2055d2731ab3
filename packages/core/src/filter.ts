import { ErrorCode, SluiceError } from '@sluice/protocol';
import { isValid } from './columnar.js';
import type { ColumnBuffers, ColumnarView } from './columnar.js';
import type { ColumnSpec, TableSchema } from './schema.js';

/**
 * Row filters. A filter is plain data (it crosses threads by structured clone, which cannot
 * carry functions); `compileFilter` validates it once against a schema and turns it into a
 * tree of closures, each specialised to its column kind, operator and constant, that test one
 * row of a ColumnarView without allocating.
 *
 * Semantics:
 * - Logic is two-valued. A comparison or `in` on a null cell is false, and so `not` of it is
 *   true: `{ not: { column: 'a', op: '=', value: 1 } }` matches rows where `a` is null. (SQL's
 *   three-valued logic would drop those rows; callers wanting that add `a is not null`.)
 * - `!=` is false on a null cell too: a null is neither equal nor unequal to a value.
 * - A NaN float cell compares false under every operator, `!=` and `in` included.
 * - Float cells are compared exactly as stored: a float32 cell holding 0.1 holds
 *   Math.fround(0.1), which `= 0.1` does not match; compare with Math.fround(0.1) or a range.
 * - int64 comparisons are exact over the whole int64 range; timestamps are int64 epoch ms.
 * - utf8 values are ordered bytewise on their UTF-8 bytes, which is Unicode code point order
 *   (not the UTF-16 order of JavaScript's `<` on strings).
 * - `{ and: [] }` matches every row and `{ or: [] }` none; `in` with no values matches none.
 * - Filters see tombstones like any other row (their non-key columns are null).
 */

export type Scalar = number | bigint | string | boolean | Date;
export type ComparisonOp = '=' | '!=' | '<' | '<=' | '>' | '>=';
export type Filter =
  | { column: string; op: ComparisonOp; value: Scalar }
  | { column: string; op: 'in'; values: readonly Scalar[] }
  | { column: string; op: 'is null' | 'is not null' }
  | { and: readonly Filter[] }
  | { or: readonly Filter[] }
  | { not: Filter };

export interface CompiledFilter {
  /** Indices (ColumnSpec.index) of the columns the filter reads. */
  readonly columns: ReadonlySet<number>;
  matches(view: ColumnarView, row: number): boolean;
}

/** Deepest allowed nesting of filter nodes (the root is level 1); bounds compile-time recursion. */
export const MAX_FILTER_DEPTH = 64;

type Pred = (view: ColumnarView, row: number) => boolean;

const ALWAYS: Pred = () => true;
const NEVER: Pred = () => false;

const ALL_OPS = ['=', '!=', '<', '<=', '>', '>=', 'in', 'is null', 'is not null'];
const LEAF_KEYS: ReadonlySet<string> = new Set(['column', 'op', 'value', 'values']);
const LOGICAL_KEYS = ['and', 'or', 'not'] as const;

const TWO32 = 4294967296;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Validation helpers
// ---------------------------------------------------------------------------------------------

function invalid(path: string, message: string, column?: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_FILTER, `${path}: ${message}`, {
    details: column === undefined ? { path } : { path, column },
  });
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'bigint') return `bigint ${v}`;
  if (typeof v === 'number') return `number ${v}`;
  if (typeof v === 'boolean') return `boolean ${v}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'an invalid Date' : `Date ${v.toISOString()}`;
  return typeof v === 'object' ? `object ${Object.prototype.toString.call(v)}` : typeof v;
}

function keyPath(path: string, key: string): string {
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

/** Plain-object test by tag rather than prototype, so objects from another realm still pass. */
function isRecord(v: unknown): v is Record<string, unknown> {
  return (
    typeof v === 'object' &&
    v !== null &&
    !Array.isArray(v) &&
    Object.prototype.toString.call(v) === '[object Object]'
  );
}

function typeLabel(c: ColumnSpec): string {
  return `column "${c.name}" (${c.type})`;
}

/** The exact int64 of a constant as its two 32-bit words, as stored in an i64 column. */
interface Int64Words {
  /** High word, signed. */
  readonly hi: number;
  /** Low word, unsigned. */
  readonly lo: number;
}

function wordsOfNumber(v: number): Int64Words {
  const hi = Math.floor(v / TWO32);
  return { hi: hi | 0, lo: v - hi * TWO32 };
}

function wordsOfBigint(v: bigint): Int64Words {
  return { hi: Number(BigInt.asIntN(32, v >> 32n)), lo: Number(BigInt.asUintN(32, v)) };
}

/** A constant checked against its column and converted to the form the closures compare with. */
type Constant =
  | { readonly kind: 'number'; readonly v: number }
  | { readonly kind: 'int64'; readonly v: Int64Words }
  | { readonly kind: 'bool'; readonly v: boolean }
  | { readonly kind: 'utf8'; readonly v: Uint8Array };

function checkConstant(c: ColumnSpec, path: string, v: unknown): Constant {
  if (v === null || v === undefined) {
    throw invalid(
      path,
      `${describe(v)} is not a value for ${typeLabel(c)}; use op "is null" to test for nulls`,
      c.name,
    );
  }
  if (typeof v === 'number' && Number.isNaN(v)) {
    throw invalid(
      path,
      `NaN is not a valid value (it compares false with everything) for ${typeLabel(c)}`,
      c.name,
    );
  }
  switch (c.kind) {
    case 'i32':
      if (typeof v === 'number' && Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX) {
        return { kind: 'number', v };
      }
      throw invalid(
        path,
        `expected an int32 (integer number) for ${typeLabel(c)}, got ${describe(v)}`,
        c.name,
      );
    case 'i64':
      if (c.type === 'timestamp') {
        if (v instanceof Date) {
          const ms = v.getTime();
          if (Number.isNaN(ms))
            throw invalid(path, `expected a valid Date for ${typeLabel(c)}, got an invalid Date`, c.name);
          return { kind: 'int64', v: wordsOfNumber(ms) };
        }
        if (typeof v === 'number' && Number.isSafeInteger(v)) return { kind: 'int64', v: wordsOfNumber(v) };
        throw invalid(
          path,
          `expected a Date or integer epoch milliseconds for ${typeLabel(c)}, got ${describe(v)}`,
          c.name,
        );
      }
      if (typeof v === 'number' && Number.isSafeInteger(v)) return { kind: 'int64', v: wordsOfNumber(v) };
      if (typeof v === 'bigint') {
        if (v < INT64_MIN || v > INT64_MAX)
          throw invalid(path, `${describe(v)} is outside int64 for ${typeLabel(c)}`, c.name);
        return { kind: 'int64', v: wordsOfBigint(v) };
      }
      if (typeof v === 'number' && Number.isInteger(v)) {
        throw invalid(
          path,
          `${describe(v)} is not a safe integer, so it may not be the int64 meant; pass a bigint for ${typeLabel(c)}`,
          c.name,
        );
      }
      throw invalid(
        path,
        `expected an int64 (safe integer number or bigint) for ${typeLabel(c)}, got ${describe(v)}`,
        c.name,
      );
    case 'f32':
    case 'f64':
      if (typeof v === 'number') return { kind: 'number', v };
      throw invalid(path, `expected a number for ${typeLabel(c)}, got ${describe(v)}`, c.name);
    case 'bool':
      if (typeof v === 'boolean') return { kind: 'bool', v };
      throw invalid(path, `expected a boolean for ${typeLabel(c)}, got ${describe(v)}`, c.name);
    case 'utf8':
      // Encoded like the row encoder encodes cells (lone surrogates become U+FFFD), so equal strings match.
      if (typeof v === 'string') return { kind: 'utf8', v: utf8Encoder.encode(v) };
      throw invalid(path, `expected a string for ${typeLabel(c)}, got ${describe(v)}`, c.name);
    case 'vector':
      throw invalid(path, `${typeLabel(c)} has no comparable values`, c.name);
  }
}

// ---------------------------------------------------------------------------------------------
// Row access and per-kind comparison closures
// ---------------------------------------------------------------------------------------------

function boolAt(col: ColumnBuffers, row: number): boolean {
  const bit = col.valuesOffset + row;
  return ((col.values as Uint8Array)[bit >> 3]! & (1 << (bit & 7))) !== 0;
}

/** Bytewise order of the utf8 cell at `row` against `k`: negative, zero or positive. */
function compareUtf8(col: ColumnBuffers, row: number, k: Uint8Array): number {
  const off = col.values as Int32Array;
  const data = col.data as Uint8Array;
  const s = off[row]!;
  const n = off[row + 1]! - s;
  const m = k.length;
  const len = n < m ? n : m;
  for (let i = 0; i < len; i++) {
    const d = data[s + i]! - k[i]!;
    if (d !== 0) return d;
  }
  return n - m;
}

function equalsUtf8(col: ColumnBuffers, row: number, k: Uint8Array): boolean {
  const off = col.values as Int32Array;
  const s = off[row]!;
  const n = k.length;
  if (off[row + 1]! - s !== n) return false;
  const data = col.data as Uint8Array;
  for (let i = 0; i < n; i++) if (data[s + i] !== k[i]) return false;
  return true;
}

/** i32, f32 and f64 cells are all read as numbers; NaN cells fail every test below. */
function numberCompare(idx: number, op: ComparisonOp, k: number): Pred {
  switch (op) {
    case '=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && col.values[row] === k;
      };
    case '!=':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const x = col.values[row]!;
        return x === x && x !== k;
      };
    case '<':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && col.values[row]! < k;
      };
    case '<=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && col.values[row]! <= k;
      };
    case '>':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && col.values[row]! > k;
      };
    case '>=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && col.values[row]! >= k;
      };
  }
}

/** Compares the cell's (hi signed, lo unsigned) words against the constant's, never building a BigInt. */
function int64Compare(idx: number, op: ComparisonOp, k: Int64Words): Pred {
  const kh = k.hi;
  const kl = k.lo;
  const klSigned = kl | 0;
  switch (op) {
    case '=':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        return v[2 * row + 1] === kh && v[2 * row] === klSigned;
      };
    case '!=':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        return v[2 * row + 1] !== kh || v[2 * row] !== klSigned;
      };
    case '<':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        const h = v[2 * row + 1]!;
        return h < kh || (h === kh && v[2 * row]! >>> 0 < kl);
      };
    case '<=':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        const h = v[2 * row + 1]!;
        return h < kh || (h === kh && v[2 * row]! >>> 0 <= kl);
      };
    case '>':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        const h = v[2 * row + 1]!;
        return h > kh || (h === kh && v[2 * row]! >>> 0 > kl);
      };
    case '>=':
      return (view, row) => {
        const col = view.columns[idx]!;
        if (!isValid(col, row)) return false;
        const v = col.values as Int32Array;
        const h = v[2 * row + 1]!;
        return h > kh || (h === kh && v[2 * row]! >>> 0 >= kl);
      };
  }
}

function utf8Compare(idx: number, op: ComparisonOp, k: Uint8Array): Pred {
  switch (op) {
    case '=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && equalsUtf8(col, row, k);
      };
    case '!=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && !equalsUtf8(col, row, k);
      };
    case '<':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && compareUtf8(col, row, k) < 0;
      };
    case '<=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && compareUtf8(col, row, k) <= 0;
      };
    case '>':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && compareUtf8(col, row, k) > 0;
      };
    case '>=':
      return (view, row) => {
        const col = view.columns[idx]!;
        return isValid(col, row) && compareUtf8(col, row, k) >= 0;
      };
  }
}

/** A bool test reduced to "which stored values match"; covers =, != and in. */
function boolMatch(idx: number, matchTrue: boolean, matchFalse: boolean): Pred {
  if (matchTrue && matchFalse) return nullTest(idx, false);
  if (!matchTrue && !matchFalse) return NEVER;
  if (matchTrue) {
    return (view, row) => {
      const col = view.columns[idx]!;
      return isValid(col, row) && boolAt(col, row);
    };
  }
  return (view, row) => {
    const col = view.columns[idx]!;
    return isValid(col, row) && !boolAt(col, row);
  };
}

function nullTest(idx: number, wantNull: boolean): Pred {
  return wantNull
    ? (view, row) => !isValid(view.columns[idx]!, row)
    : (view, row) => isValid(view.columns[idx]!, row);
}

// ---------------------------------------------------------------------------------------------
// `in`: constants sorted and deduplicated at compile time, binary-searched per row
// ---------------------------------------------------------------------------------------------

function numberIn(idx: number, values: readonly number[]): Pred {
  const sorted = Float64Array.from(new Set(values)).sort();
  if (sorted.length === 1) return numberCompare(idx, '=', sorted[0]!);
  // The search is inlined so the cell's double never crosses a call (which could box it).
  return (view, row) => {
    const col = view.columns[idx]!;
    if (!isValid(col, row)) return false;
    const x = col.values[row]!;
    if (x !== x) return false;
    let lo = 0;
    let hi = sorted.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const y = sorted[mid]!;
      if (y < x) lo = mid + 1;
      else if (y > x) hi = mid - 1;
      else return true;
    }
    return false;
  };
}

function int64In(idx: number, values: readonly Int64Words[]): Pred {
  const order = [...values].sort((a, b) => a.hi - b.hi || a.lo - b.lo);
  const his: number[] = [];
  const los: number[] = [];
  for (const w of order) {
    const n = his.length;
    if (n > 0 && his[n - 1] === w.hi && los[n - 1] === w.lo) continue;
    his.push(w.hi);
    los.push(w.lo);
  }
  if (his.length === 1) return int64Compare(idx, '=', { hi: his[0]!, lo: los[0]! });
  const hiWords = Int32Array.from(his);
  const loWords = Uint32Array.from(los);
  return (view, row) => {
    const col = view.columns[idx]!;
    if (!isValid(col, row)) return false;
    const v = col.values as Int32Array;
    const h = v[2 * row + 1]!;
    const l = v[2 * row]! >>> 0;
    let lo = 0;
    let hi = hiWords.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const mh = hiWords[mid]!;
      const ml = loWords[mid]!;
      if (mh < h || (mh === h && ml < l)) lo = mid + 1;
      else if (mh > h || ml > l) hi = mid - 1;
      else return true;
    }
    return false;
  };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function utf8In(idx: number, values: readonly Uint8Array[]): Pred {
  const sorted: Uint8Array[] = [];
  for (const v of [...values].sort(compareBytes)) {
    const last = sorted[sorted.length - 1];
    if (last === undefined || compareBytes(last, v) !== 0) sorted.push(v);
  }
  if (sorted.length === 1) return utf8Compare(idx, '=', sorted[0]!);
  return (view, row) => {
    const col = view.columns[idx]!;
    if (!isValid(col, row)) return false;
    let lo = 0;
    let hi = sorted.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const c = compareUtf8(col, row, sorted[mid]!);
      if (c > 0) lo = mid + 1;
      else if (c < 0) hi = mid - 1;
      else return true;
    }
    return false;
  };
}

// ---------------------------------------------------------------------------------------------
// Logic
// ---------------------------------------------------------------------------------------------

function andOf(preds: readonly Pred[]): Pred {
  if (preds.length === 0) return ALWAYS;
  if (preds.length === 1) return preds[0]!;
  if (preds.length === 2) {
    const [a, b] = preds as [Pred, Pred];
    return (view, row) => a(view, row) && b(view, row);
  }
  const all = preds.slice();
  return (view, row) => {
    for (let i = 0; i < all.length; i++) if (!all[i]!(view, row)) return false;
    return true;
  };
}

function orOf(preds: readonly Pred[]): Pred {
  if (preds.length === 0) return NEVER;
  if (preds.length === 1) return preds[0]!;
  if (preds.length === 2) {
    const [a, b] = preds as [Pred, Pred];
    return (view, row) => a(view, row) || b(view, row);
  }
  const all = preds.slice();
  return (view, row) => {
    for (let i = 0; i < all.length; i++) if (all[i]!(view, row)) return true;
    return false;
  };
}

function notOf(p: Pred): Pred {
  if (p === ALWAYS) return NEVER;
  if (p === NEVER) return ALWAYS;
  return (view, row) => !p(view, row);
}

// ---------------------------------------------------------------------------------------------
// Compiler
// ---------------------------------------------------------------------------------------------

class Compiler {
  readonly columns = new Set<number>();
  readonly #schema: TableSchema;

  constructor(schema: TableSchema) {
    this.#schema = schema;
  }

  node(node: unknown, path: string, depth: number): Pred {
    if (depth > MAX_FILTER_DEPTH)
      throw invalid(path, `filter nesting is deeper than ${MAX_FILTER_DEPTH} levels`);
    if (!isRecord(node)) {
      throw invalid(
        path,
        `expected a filter object ({column, op, value}, {column, op: 'in', values}, {column, op: 'is null'}, {and: [...]}, {or: [...]} or {not: ...}), got ${describe(node)}`,
      );
    }
    const keys = Object.keys(node);
    const logical = LOGICAL_KEYS.filter((k) => keys.includes(k));
    if (logical.length > 1) {
      throw invalid(path, `a node has exactly one of and, or, not; this one has ${logical.join(', ')}`);
    }
    if (logical.length === 1) {
      const kind = logical[0]!;
      for (const k of keys) {
        if (k !== kind)
          throw invalid(
            keyPath(path, k),
            `unknown key ${JSON.stringify(k)} on ${kind === 'not' ? 'a not' : `an ${kind}`} node`,
          );
      }
      return this.#logical(kind, node[kind], keyPath(path, kind), depth);
    }
    if (keys.length === 0) throw invalid(path, 'empty object: expected a column test or and / or / not');
    for (const k of keys) {
      if (!LEAF_KEYS.has(k)) {
        throw invalid(
          keyPath(path, k),
          `unknown key ${JSON.stringify(k)} (a node is {column, op, value}, {column, op: 'in', values}, {column, op: 'is null' | 'is not null'}, {and}, {or} or {not})`,
        );
      }
    }
    return this.#leaf(node, path);
  }

  #logical(kind: 'and' | 'or' | 'not', operand: unknown, path: string, depth: number): Pred {
    if (kind === 'not') return notOf(this.node(operand, path, depth + 1));
    if (!Array.isArray(operand))
      throw invalid(path, `expected an array of filters, got ${describe(operand)}`);
    const preds: Pred[] = [];
    for (let i = 0; i < operand.length; i++) preds.push(this.node(operand[i], `${path}[${i}]`, depth + 1));
    return kind === 'and' ? andOf(preds) : orOf(preds);
  }

  #leaf(node: Record<string, unknown>, path: string): Pred {
    const schema = this.#schema;
    const name = node.column;
    const colPath = `${path}.column`;
    if (!Object.hasOwn(node, 'column')) throw invalid(colPath, 'missing: a column test needs a column name');
    if (typeof name !== 'string') throw invalid(colPath, `expected a column name, got ${describe(name)}`);
    const c = schema.byName.get(name);
    if (c === undefined) {
      throw invalid(
        colPath,
        `unknown column ${JSON.stringify(name)} (the schema has ${schema.columns.map((x) => x.name).join(', ')})`,
        name,
      );
    }
    const op = node.op;
    const opPath = `${path}.op`;
    if (!Object.hasOwn(node, 'op'))
      throw invalid(opPath, `missing: expected one of ${ALL_OPS.join(', ')}`, name);
    if (typeof op !== 'string' || !ALL_OPS.includes(op)) {
      throw invalid(
        opPath,
        `unknown op ${typeof op === 'string' ? JSON.stringify(op) : describe(op)} (expected one of ${ALL_OPS.join(', ')})`,
        name,
      );
    }
    const hasValue = Object.hasOwn(node, 'value');
    const hasValues = Object.hasOwn(node, 'values');
    this.columns.add(c.index);

    if (op === 'is null' || op === 'is not null') {
      if (hasValue) throw invalid(`${path}.value`, `unknown key "value": op "${op}" takes no value`, name);
      if (hasValues)
        throw invalid(`${path}.values`, `unknown key "values": op "${op}" takes no values`, name);
      return nullTest(c.index, op === 'is null');
    }
    if (c.kind === 'vector') {
      throw invalid(
        opPath,
        `op "${op}" is not defined on ${typeLabel(c)}; only "is null" and "is not null" are`,
        name,
      );
    }
    if (op === 'in') {
      if (hasValue)
        throw invalid(`${path}.value`, 'unknown key "value": op "in" takes "values" (an array)', name);
      const valuesPath = `${path}.values`;
      if (!hasValues) throw invalid(valuesPath, 'missing: op "in" needs an array of values', name);
      const values = node.values;
      if (!Array.isArray(values))
        throw invalid(valuesPath, `op "in" needs an array of values, got ${describe(values)}`, name);
      const consts: Constant[] = [];
      for (let i = 0; i < values.length; i++) consts.push(checkConstant(c, `${valuesPath}[${i}]`, values[i]));
      return this.#in(c, consts);
    }
    if (hasValues)
      throw invalid(`${path}.values`, `unknown key "values": op "${op}" takes one "value"`, name);
    if (c.kind === 'bool' && op !== '=' && op !== '!=') {
      throw invalid(opPath, `op "${op}" is not defined on ${typeLabel(c)}; use =, != or in`, name);
    }
    const valuePath = `${path}.value`;
    if (!hasValue) throw invalid(valuePath, `missing: op "${op}" needs a value`, name);
    return this.#compare(c, op as ComparisonOp, checkConstant(c, valuePath, node.value));
  }

  #compare(c: ColumnSpec, op: ComparisonOp, k: Constant): Pred {
    switch (k.kind) {
      case 'number':
        return numberCompare(c.index, op, k.v);
      case 'int64':
        return int64Compare(c.index, op, k.v);
      case 'utf8':
        return utf8Compare(c.index, op, k.v);
      case 'bool':
        return boolMatch(c.index, (op === '=') === k.v, (op === '=') !== k.v);
    }
  }

  #in(c: ColumnSpec, consts: readonly Constant[]): Pred {
    if (consts.length === 0) return NEVER;
    switch (c.kind) {
      case 'i32':
      case 'f32':
      case 'f64':
        return numberIn(
          c.index,
          consts.map((k) => k.v as number),
        );
      case 'i64':
        return int64In(
          c.index,
          consts.map((k) => k.v as Int64Words),
        );
      case 'utf8':
        return utf8In(
          c.index,
          consts.map((k) => k.v as Uint8Array),
        );
      case 'bool':
        return boolMatch(
          c.index,
          consts.some((k) => k.v === true),
          consts.some((k) => k.v === false),
        );
      case 'vector':
        throw new SluiceError(ErrorCode.INTERNAL, 'vector columns have no in test');
    }
  }
}

/**
 * Validates `filter` against `schema` and compiles it. Throws SLUICE_INVALID_FILTER naming the
 * path of the first problem inside the filter (e.g. `filter.and[1].value`); `details.path`
 * holds the same path.
 */
export function compileFilter(schema: TableSchema, filter: unknown): CompiledFilter {
  const compiler = new Compiler(schema);
  const matches = compiler.node(filter, 'filter', 1);
  return Object.freeze({ columns: compiler.columns, matches });
}
