import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { kInternals, open } from 'sluice';
import type { Db, OpenOptions, Row } from 'sluice';

export const SCHEMA = {
  id: 'int64',
  ts: 'timestamp',
  value: 'float64',
  tag: 'utf8',
  emb: 'float32[4]',
  n: 'int32',
  ok: 'bool',
  f: 'float32',
} as const;

const dirs: string[] = [];

export async function tempDir(label = 'sluice'): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), `${label}-`));
  dirs.push(d);
  return d;
}

export async function cleanupDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export async function openTable(dir: string, options: OpenOptions = {}): Promise<Db> {
  return open(dir, {
    schema: SCHEMA,
    primaryKey: 'id',
    shards: 2,
    memtableBytes: 256 << 10,
    onWarning: () => undefined,
    ...options,
  });
}

export function internals(db: Db): (typeof db)[typeof kInternals] {
  return db[kInternals];
}

/** A Map-backed reference model of the table: key → latest row, deletes remove. */
export class Model {
  readonly rows = new Map<bigint, Record<string, unknown>>();

  put(rows: readonly Record<string, unknown>[]): void {
    for (const r of rows) this.rows.set(BigInt(r.id as number | bigint), r);
  }

  delete(keys: readonly (number | bigint)[]): void {
    for (const k of keys) this.rows.delete(BigInt(k));
  }
}

/** Normalises a row as Sluice returns it (int64 → bigint, vectors → plain arrays) for comparison. */
export function expectedRow(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, type] of Object.entries(SCHEMA)) {
    const v = r[name];
    if (v === undefined || v === null) out[name] = null;
    else if (type === 'int64') out[name] = BigInt(v as number);
    else if (type === 'timestamp') out[name] = v instanceof Date ? v.getTime() : v;
    else if (type === 'float32[4]') out[name] = Array.from(Float32Array.from(v as number[]));
    else if (type === 'float32') out[name] = Math.fround(v as number);
    else out[name] = v;
  }
  return out;
}

export function plainRow(r: Row | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) out[k] = v instanceof Float32Array ? Array.from(v) : v;
  return out;
}

export function row(
  id: number | bigint,
  version: number,
  extra: Partial<Record<string, unknown>> = {},
): Record<string, unknown> {
  const n = Number(BigInt(id) % 1000n);
  return {
    id,
    ts: 1_700_000_000_000 + n,
    value: version * 1000 + n + 0.5,
    tag: `v${version}-${n}`,
    emb: [n, version, -n, 0.25],
    n: version,
    ok: n % 2 === 0,
    f: n / 4,
    ...extra,
  };
}

/** A deferred promise, for test holds. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

export async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
