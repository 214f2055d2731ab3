import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { TableSchema } from '@sluice/core';

/**
 * How rows become JSON, in every output of the CLI and the HTTP service:
 *
 * - int64: a JSON number when it is a safe integer (|v| <= 2^53 - 1), otherwise a decimal
 *   string ("9007199254740993"). Most keys and counters stay plain numbers; the few values a
 *   JSON number would silently round keep every digit. Inputs accept both forms.
 * - timestamp: epoch milliseconds (a number), as the engine returns them.
 * - float32[N]: an array of numbers.
 * - NaN and ±Infinity (which JSON cannot hold): the strings "NaN", "Infinity", "-Infinity".
 */
export function jsonReplacer(_key: string, value: unknown): unknown {
  switch (typeof value) {
    case 'bigint':
      return value >= -MAX_SAFE && value <= MAX_SAFE ? Number(value) : value.toString();
    case 'number':
      return Number.isFinite(value) ? value : String(value);
    case 'object':
      if (value instanceof Float32Array || value instanceof Float64Array) return Array.from(value);
      return value;
    default:
      return value;
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function toJson(value: unknown): string {
  return JSON.stringify(value, jsonReplacer);
}

const INT_RE = /^[+-]?\d+$/;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/**
 * A primary key given as text (a command-line argument, a URL segment) or as a JSON value,
 * converted to what `db.get` takes: a number or bigint for int64 keys, a string for utf8.
 */
export function parseKey(schema: TableSchema, raw: unknown): number | bigint | string {
  if (schema.keyKind === 'utf8') {
    if (typeof raw === 'string') return raw;
    throw new SluiceError(
      ErrorCode.INVALID_KEY,
      `key for utf8 column "${schema.primaryKey}" must be a string, got ${describe(raw)}`,
      { details: { column: schema.primaryKey } },
    );
  }
  if (typeof raw === 'number' && Number.isSafeInteger(raw)) return raw;
  if (typeof raw === 'bigint' && raw >= INT64_MIN && raw <= INT64_MAX) return raw;
  if (typeof raw === 'string' && INT_RE.test(raw.trim())) {
    const b = BigInt(raw.trim());
    if (b >= INT64_MIN && b <= INT64_MAX) return b >= -MAX_SAFE && b <= MAX_SAFE ? Number(b) : b;
  }
  throw new SluiceError(
    ErrorCode.INVALID_KEY,
    `key for int64 column "${schema.primaryKey}" must be an integer in the int64 range (a number, or a decimal string beyond 2^53), got ${describe(raw)}`,
    { details: { column: schema.primaryKey } },
  );
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return `${typeof v} ${v}`;
  if (Array.isArray(v)) return `array of length ${v.length}`;
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'an invalid Date' : `Date ${v.toISOString()}`;
  return typeof v === 'object' ? (Object.prototype.toString.call(v).slice(8, -1) ?? 'object') : typeof v;
}
