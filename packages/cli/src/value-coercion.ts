import type { ColumnSpec, TableSchema } from '@sluice/core';
import { describe } from './json-values.js';

/** A value that cannot be stored in its column; `column` names it. */
export class ValueError extends Error {
  override readonly name = 'ValueError';
  readonly column: string | undefined;

  constructor(column: string | undefined, message: string) {
    super(message);
    this.column = column;
  }
}

type Convert = (v: unknown) => unknown;

const INT_RE = /^[+-]?\d+$/;
const SPECIAL_FLOATS: Readonly<Record<string, number>> = {
  nan: Number.NaN,
  '+nan': Number.NaN,
  '-nan': Number.NaN,
  inf: Infinity,
  '+inf': Infinity,
  infinity: Infinity,
  '+infinity': Infinity,
  '-inf': -Infinity,
  '-infinity': -Infinity,
};
const TRUE = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE = new Set(['false', 'f', 'no', 'n', '0']);
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Converts input values of any source format into what the engine's `put` takes, column by
 * column, and names the column when a value does not fit. One converter per table schema;
 * the rules are lenient about representation and strict about meaning:
 *
 * - every type accepts its natural JS value, and also its text form (CSV fields are text);
 * - int64: safe integer numbers, bigints, or decimal text; a JSON number beyond 2^53 is
 *   refused (it was already rounded by JSON parsing), give such values as strings;
 * - timestamp: Date, epoch milliseconds (number, bigint or integer text) or ISO-8601 text;
 *   sub-millisecond precision (Arrow/Parquet microseconds) is dropped;
 * - bool: true/false, t/f, yes/no, y/n, 1/0 (any case);
 * - float32[N]: an array, typed array or Arrow vector of N numbers, or text "[1,2,3]" / "1 2 3";
 * - floats: numbers, or text including NaN and ±Infinity;
 * - null/undefined: null (the primary key may not be null).
 */
export class RowCoercer {
  readonly schema: TableSchema;
  readonly #columns: readonly { readonly spec: ColumnSpec; readonly convert: Convert }[];
  readonly #byName: ReadonlyMap<string, Convert>;

  constructor(schema: TableSchema) {
    this.schema = schema;
    this.#columns = schema.columns.map((spec) => ({ spec, convert: converterFor(spec) }));
    this.#byName = new Map(this.#columns.map((c) => [c.spec.name, c.convert]));
  }

  /** A row for `put`, or a ValueError naming the column at fault. */
  coerce(input: Record<string, unknown>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name in input) {
      const convert = this.#byName.get(name);
      if (convert === undefined) {
        throw new ValueError(
          name,
          `not a column of the table (columns: ${this.schema.columns.map((c) => c.name).join(', ')})`,
        );
      }
      const v = input[name];
      if (v === null || v === undefined) continue;
      try {
        out[name] = convert(v);
      } catch (err) {
        throw err instanceof ValueError ? new ValueError(name, err.message) : err;
      }
    }
    const key = this.schema.primaryKey;
    if (out[key] === undefined) {
      throw new ValueError(key, `the primary key is ${key in input ? 'null' : 'missing'}`);
    }
    return out;
  }

  /** Converts one value for `column` (used for filter constants and keys). */
  value(column: string, v: unknown): unknown {
    const convert = this.#byName.get(column);
    if (convert === undefined) throw new ValueError(column, 'not a column of the table');
    return v === null || v === undefined ? null : convert(v);
  }
}

function fail(expected: string, v: unknown): never {
  throw new ValueError(undefined, `expected ${expected}, got ${describe(v)}`);
}

function converterFor(c: ColumnSpec): Convert {
  switch (c.type) {
    case 'int32':
      return (v) => {
        let n: number | undefined;
        if (typeof v === 'number') n = v;
        else if (typeof v === 'bigint') n = Number(v);
        else if (typeof v === 'string' && INT_RE.test(v.trim())) n = Number(v.trim());
        if (n === undefined || !Number.isInteger(n) || n < -2147483648 || n > 2147483647) {
          fail('an int32', v);
        }
        return n;
      };
    case 'int64':
      return int64;
    case 'float32':
    case 'float64':
      return float;
    case 'bool':
      return (v) => {
        if (typeof v === 'boolean') return v;
        if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
        if (typeof v === 'string') {
          const s = v.trim().toLowerCase();
          if (TRUE.has(s)) return true;
          if (FALSE.has(s)) return false;
        }
        return fail('a boolean (true/false, 1/0, yes/no)', v);
      };
    case 'utf8':
      return (v) => (typeof v === 'string' ? v : fail('a string', v));
    case 'timestamp':
      return timestamp;
    default:
      return vector(c.dim);
  }
}

function int64(v: unknown): number | bigint {
  if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) return v;
    if (Number.isInteger(v)) {
      throw new ValueError(
        undefined,
        `number ${v} is beyond 2^53 and may already be rounded: give int64 values that large as decimal strings`,
      );
    }
    return fail('an int64', v);
  }
  let b: bigint | undefined;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'string' && INT_RE.test(v.trim())) b = BigInt(v.trim());
  if (b === undefined || b < INT64_MIN || b > INT64_MAX) return fail('an int64', v);
  return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b;
}

function float(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') {
    const s = v.trim();
    const special = SPECIAL_FLOATS[s.toLowerCase()];
    if (special !== undefined) return special;
    const n = Number(s);
    if (s !== '' && !Number.isNaN(n)) return n;
  }
  return fail('a number', v);
}

function timestamp(v: unknown): number {
  let ms: number | undefined;
  if (v instanceof Date) ms = v.getTime();
  else if (typeof v === 'number') ms = Math.floor(v);
  else if (typeof v === 'bigint') ms = Number(v);
  else if (typeof v === 'string') {
    const s = v.trim();
    ms = INT_RE.test(s) ? Number(s) : /^\d{4}-\d{2}-\d{2}/.test(s) ? Date.parse(s) : Number.NaN;
  }
  if (ms === undefined || !Number.isSafeInteger(ms)) {
    return fail('a timestamp (ISO-8601 text, a Date or integer epoch milliseconds)', v);
  }
  return ms;
}

function vector(dim: number): Convert {
  const expected = `a vector of ${dim} numbers`;
  return (v) => {
    let values: ArrayLike<unknown> | undefined;
    if (v instanceof Float32Array) values = v;
    else if (Array.isArray(v) || ArrayBuffer.isView(v)) values = v as unknown as ArrayLike<unknown>;
    else if (
      typeof v === 'object' &&
      v !== null &&
      typeof (v as { toArray?: unknown }).toArray === 'function'
    ) {
      values = (v as { toArray(): ArrayLike<unknown> }).toArray(); // an Arrow vector
    } else if (typeof v === 'string') {
      const s = v.trim();
      try {
        values = s.startsWith('[')
          ? (JSON.parse(s) as unknown[])
          : s === ''
            ? []
            : s.split(/[\s,;]+/).map(float);
      } catch {
        return fail(expected, v);
      }
      if (!Array.isArray(values)) return fail(expected, v);
    }
    if (values === undefined) return fail(expected, v);
    if (values.length !== dim) {
      throw new ValueError(undefined, `expected ${expected}, got ${values.length}`);
    }
    if (values instanceof Float32Array) return values;
    const out = new Float32Array(dim);
    for (let i = 0; i < dim; i++) {
      const x = values[i];
      if (typeof x === 'number') out[i] = x;
      else if (typeof x === 'string' || typeof x === 'bigint') out[i] = float(x);
      else throw new ValueError(undefined, `vector element ${i} is ${describe(x)}, not a number`);
    }
    return out;
  };
}
