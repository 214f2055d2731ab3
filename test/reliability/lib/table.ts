/**
 * The reliability harness's table: `{ id: int64, v: int64, p: utf8 }`, where `v` names the
 * write (op * 64 + position in the put) and `p` repeats key and value (`k<id>-v<v>`), so
 * every row read back is either exactly a row some operation wrote, or garbage.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hashInt64Parts, shardOfHash } from '@sluice/core';
import { isSluiceError } from '@sluice/protocol';
import { open } from 'sluice';
import type { Db, OpenOptions } from 'sluice';
import type { Effect } from './oracle.js';

export const SCHEMA = { id: 'int64', v: 'int64', p: 'utf8' } as const;

/** Tiny memtables so freezes, flushes and commits happen all the time. */
export const TINY: OpenOptions = {
  schema: SCHEMA,
  primaryKey: 'id',
  shards: 2,
  durability: 'sync',
  memtableBytes: 16 << 10,
  maxUnflushedBytes: 1 << 20,
  flushThreads: 1,
};

export interface HarnessRow {
  readonly id: number;
  readonly v: number;
  readonly p: string;
}

export function harnessRow(id: number, v: number): HarnessRow {
  return { id, v, p: `k${id}-v${v}` };
}

/** Key → value of one put, the last row of a key winning (as in the engine). */
export function putEffects(rows: readonly HarnessRow[]): Map<bigint, Effect> {
  const m = new Map<bigint, Effect>();
  for (const r of rows) m.set(BigInt(r.id), BigInt(r.v));
  return m;
}

export function deleteEffects(keys: readonly number[]): Map<bigint, Effect> {
  return new Map(keys.map((k) => [BigInt(k), null]));
}

/** The shard the engine routes an int64 key to (core's hash, high bits). */
export function shardOfKey(key: bigint, shards: number): number {
  const lo = Number(BigInt.asIntN(32, key));
  const hi = Number(BigInt.asIntN(32, key >> 32n));
  return shardOfHash(hashInt64Parts(lo, hi), shards);
}

export interface Observed {
  /** Live key → value column. */
  readonly rows: Map<bigint, bigint>;
  /** Rows that are not exactly a row some write produced (bad `p`, duplicates, nulls). */
  readonly garbage: string[];
  /** Keys where get/getMany disagree with the scan. */
  readonly readMismatches: string[];
}

/**
 * Reads the whole table twice, by scan and by getMany over `extraKeys` plus every scanned key,
 * and checks that both paths agree and that every row is well-formed.
 */
export async function observe(db: Db, extraKeys: Iterable<bigint> = []): Promise<Observed> {
  const rows = new Map<bigint, bigint>();
  const garbage: string[] = [];
  for (const r of await db.scan().toArray()) {
    const id = r.id as bigint;
    const v = r.v as bigint | null;
    if (typeof id !== 'bigint' || typeof v !== 'bigint') {
      garbage.push(`row with id ${String(id)} v ${String(v)}`);
      continue;
    }
    if (rows.has(id)) garbage.push(`key ${id} returned twice by one scan`);
    if (r.p !== `k${id}-v${v}`) garbage.push(`key ${id}: p=${JSON.stringify(r.p)} does not match v=${v}`);
    rows.set(id, v);
  }
  const keys = [...new Set([...rows.keys(), ...extraKeys])];
  const readMismatches: string[] = [];
  for (let i = 0; i < keys.length; i += 500) {
    const chunk = keys.slice(i, i + 500);
    const got = await db.getMany(chunk);
    chunk.forEach((k, j) => {
      const g = (got[j]?.v as bigint | undefined) ?? null;
      const s = rows.get(k) ?? null;
      if (g !== s) readMismatches.push(`key ${k}: scan says ${s}, getMany says ${g}`);
    });
  }
  return { rows, garbage, readMismatches };
}

/** Opens the harness table (creating it with TINY options when new). */
export function openHarness(dir: string, options: OpenOptions = {}): Promise<Db> {
  return open(dir, { ...TINY, onWarning: () => undefined, ...options });
}

const dirs: string[] = [];

export async function tempDir(label: string): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), `sluice-rel-${label}-`));
  dirs.push(d);
  return d;
}

export async function removeTempDirs(): Promise<void> {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Rejects when `p` has not settled after `ms`: a hang becomes a failure naming what hung. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`HANG: ${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** The outcome of a call: its value, or its error's code ('UNTYPED: …' when it has none). */
export type Outcome<T> =
  { ok: true; value: T } | { ok: false; code: string; message: string; error: unknown };

export async function outcome<T>(p: Promise<T>, ms: number, what: string): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await within(p, ms, what) };
  } catch (err) {
    if (isSluiceError(err)) return { ok: false, code: err.code, message: err.message, error: err };
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, code: message.startsWith('HANG') ? 'HANG' : 'UNTYPED', message, error: err };
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
