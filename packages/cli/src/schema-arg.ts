import { readFile, stat } from 'node:fs/promises';
import { ErrorCode, SluiceError } from '@sluice/protocol';

/**
 * `--schema` of `sluice init`: a JSON file, inline JSON (`{"id":"int64","tag":"utf8"}`), or the
 * compact form `id:int64,tag:utf8,emb:float32[8]`. A JSON file may also hold
 * `{ "columns": {...}, "primaryKey": "id" }` (then --key may be left out), or a list of
 * `{ "name": ..., "type": ... }`.
 */
export async function parseSchemaArg(
  text: string,
): Promise<{ columns: Record<string, string>; primaryKey?: string }> {
  let source = text.trim();
  if (!source.startsWith('{') && !source.startsWith('[') && (await isFile(source))) {
    source = (await readFile(source, 'utf8')).trim();
  }
  if (source.startsWith('{') || source.startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(source);
    } catch (err) {
      throw invalid(`--schema is not valid JSON: ${(err as Error).message}`);
    }
    return fromJson(value);
  }
  const columns: Record<string, string> = {};
  for (const part of splitCompact(source)) {
    const m = /^\s*([^:\s]+)\s*:\s*(\S+)\s*$/.exec(part);
    if (!m) throw invalid(`--schema: "${part}" is not name:type (e.g. id:int64,tag:utf8,emb:float32[8])`);
    if (m[1]! in columns) throw invalid(`--schema: column "${m[1]}" appears twice`);
    columns[m[1]!] = m[2]!;
  }
  if (Object.keys(columns).length === 0) throw invalid('--schema names no columns');
  return { columns };
}

/** Splits on commas outside brackets (float32[8] holds none today, but stay safe). */
function splitCompact(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '[') depth++;
    else if (s[i] === ']') depth--;
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(s.slice(start));
  return parts.filter((p) => p.trim() !== '');
}

function fromJson(value: unknown): { columns: Record<string, string>; primaryKey?: string } {
  if (Array.isArray(value)) {
    const columns: Record<string, string> = {};
    for (const c of value) {
      const { name, type } = (c ?? {}) as { name?: unknown; type?: unknown };
      if (typeof name !== 'string' || typeof type !== 'string') {
        throw invalid('--schema: a column list holds { "name": ..., "type": ... } objects');
      }
      columns[name] = type;
    }
    return { columns };
  }
  const o = value as Record<string, unknown>;
  if (typeof o.columns === 'object' && o.columns !== null) {
    const inner = fromJson(o.columns);
    return typeof o.primaryKey === 'string' ? { ...inner, primaryKey: o.primaryKey } : inner;
  }
  const columns: Record<string, string> = {};
  for (const [name, type] of Object.entries(o)) {
    if (typeof type !== 'string') throw invalid(`--schema: the type of column "${name}" must be a string`);
    columns[name] = type;
  }
  return { columns };
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

function invalid(message: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_SCHEMA, message);
}
