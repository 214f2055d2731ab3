import { readFile } from 'node:fs/promises';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { TableSchema } from '@sluice/core';

const INT_RE = /^[+-]?\d+$/;

/**
 * A filter as given on the command line: JSON text, or `@path` naming a JSON file. The
 * filter's shape is the engine's (see @sluice/core filter.ts); only constants are adapted.
 */
export async function parseFilterArg(text: string, schema: TableSchema): Promise<unknown> {
  const json = text.startsWith('@') ? await readFile(text.slice(1), 'utf8') : text;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new SluiceError(ErrorCode.INVALID_FILTER, `--filter is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return adaptFilter(value, schema);
}

/**
 * Adapts the constants of a JSON filter to what the engine compares with: int64 constants
 * given as decimal strings (beyond 2^53 JSON numbers would round) become bigints, and
 * timestamp constants given as ISO-8601 text become Dates. Everything else, including
 * malformed filters, is left for the engine to validate and report.
 */
export function adaptFilter(filter: unknown, schema: TableSchema, depth = 0): unknown {
  if (depth > 64 || typeof filter !== 'object' || filter === null || Array.isArray(filter)) return filter;
  const f = filter as Record<string, unknown>;
  if (Array.isArray(f.and)) return { ...f, and: f.and.map((x) => adaptFilter(x, schema, depth + 1)) };
  if (Array.isArray(f.or)) return { ...f, or: f.or.map((x) => adaptFilter(x, schema, depth + 1)) };
  if ('not' in f) return { ...f, not: adaptFilter(f.not, schema, depth + 1) };
  const column = typeof f.column === 'string' ? schema.byName.get(f.column) : undefined;
  if (!column) return filter;
  const adapt = (v: unknown): unknown => {
    if (typeof v !== 'string') return v;
    if (column.type === 'int64' && INT_RE.test(v.trim())) return BigInt(v.trim());
    if (column.type === 'timestamp') {
      if (INT_RE.test(v.trim())) return Number(v.trim());
      const ms = Date.parse(v);
      if (!Number.isNaN(ms)) return new Date(ms);
    }
    return v;
  };
  const out: Record<string, unknown> = { ...f };
  if ('value' in f) out.value = adapt(f.value);
  if (Array.isArray(f.values)) out.values = f.values.map(adapt);
  return out;
}
