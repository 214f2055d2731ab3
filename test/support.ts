import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
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

// ---------------------------------------------------------------------------------------------
// Helpers for the recovery, crash, fencing and flush-lifecycle tests.
// ---------------------------------------------------------------------------------------------

/** A storage fault as FaultyStorage takes it (packages/core/src/storage/faulty-storage.ts). */
export interface FaultSpec {
  readonly op:
    | 'putIfAbsent'
    | 'get'
    | 'getRange'
    | 'size'
    | 'list'
    | 'delete'
    | 'openAppend'
    | 'write'
    | 'sync'
    | 'truncate';
  readonly nth?: number;
  readonly times?: number;
  readonly errno?: string;
  readonly path?: string;
  readonly when?: 'before' | 'after';
}

/**
 * The test-only `faults` open option. `main` (faults in the main thread's storage: manifest
 * commits) is honoured by `open` but may be missing from the OpenOptions type, hence the cast.
 */
export function faults(f: {
  shard?: readonly FaultSpec[];
  flush?: readonly FaultSpec[];
  main?: readonly FaultSpec[];
}): OpenOptions['faults'] {
  return f as OpenOptions['faults'];
}

/** Rejects when `p` has not settled after `ms`: turns a hang into a failure naming what hung. */
export async function settleWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms (hang)`)), ms);
  });
  try {
    return await Promise.race([p, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every live primary key of the table (one scan). */
export async function allKeys(db: Db): Promise<(bigint | string)[]> {
  const rows = await db.scan({ columns: [db.schema.primaryKey] }).toArray();
  return rows.map((r) => r[db.schema.primaryKey] as bigint | string);
}

/** Sums one numeric field of db.stats().shards. */
export function shardSum(
  db: Db,
  field: 'frozen' | 'generations' | 'flushes' | 'flushFailures' | 'commitFailures' | 'activeRows' | 'rows',
): number {
  return db.stats().shards.reduce((n, s) => n + s[field], 0);
}

export function shardDir(dir: string, shard: number): string {
  return path.join(dir, `shard-${String(shard).padStart(3, '0')}`);
}

export interface FileInfo {
  readonly name: string;
  readonly path: string;
  readonly size: number;
}

/** Files of one shard subdirectory (`wal`, `gen`, `manifest`, `owner`), sorted by name; temp files excluded. */
export async function shardFiles(dir: string, shard: number, sub: string): Promise<FileInfo[]> {
  const d = path.join(shardDir(dir, shard), sub);
  let names: string[];
  try {
    names = await readdir(d);
  } catch {
    return [];
  }
  const out: FileInfo[] = [];
  for (const name of names.sort()) {
    if (name.startsWith('.')) continue;
    const p = path.join(d, name);
    // The shard and the broker delete old segments and manifest versions in the background:
    // a file listed a moment ago may be gone now, which is not a file to report.
    const st = await stat(p).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (st === undefined) continue;
    if (st.isFile()) out.push({ name, path: p, size: st.size });
  }
  return out;
}

/** The newest manifest of a shard as stored on disk (`{"crc32":…,"manifest":{…}}`). */
export async function diskManifest(
  dir: string,
  shard: number,
): Promise<{ version: number; replayFromLsn: number; generations: { gen: number; file: string }[] }> {
  const files = (await shardFiles(dir, shard, 'manifest')).filter((f) => f.name.endsWith('.json'));
  const newest = files.at(-1);
  if (!newest) throw new Error(`shard ${shard} has no manifest on disk`);
  const parsed = JSON.parse(await readFile(newest.path, 'utf8')) as {
    manifest: { version: number; replayFromLsn: number; generations: { gen: number; file: string }[] };
  };
  return parsed.manifest;
}

// --- the crash writer (test/fixtures/writer.mjs) ---

export const CRASH_SCHEMA = { id: 'int64', p: 'int32', b: 'int32', tag: 'utf8', value: 'float64' } as const;

/** Rows of batch `b` of producer `p`, exactly as test/fixtures/writer.mjs writes them. */
export function batchRows(p: number, b: number, rowsPerBatch: number): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (let r = 0; r < rowsPerBatch; r++) {
    const id = p * 1_000_000 + b * rowsPerBatch + r;
    rows.push({ id, p, b, tag: `p${p}-b${b}-r${r}`, value: id / 4 });
  }
  return rows;
}

/** A writer row as the table returns it. */
export function expectedBatchRow(
  p: number,
  b: number,
  r: number,
  rowsPerBatch: number,
): Record<string, unknown> {
  const id = p * 1_000_000 + b * rowsPerBatch + r;
  return { id: BigInt(id), p, b, tag: `p${p}-b${b}-r${r}`, value: id / 4 };
}

/**
 * Checks a table recovered after the writer fixture was killed: every acknowledged batch is
 * complete and exact; every other row is a row the writer really attempted (its producer's
 * batch after the last acknowledged one, with exact content) — no phantom or garbage rows.
 * `acked[p]` is the number of batches producer p had acknowledged (batches 0..acked[p]-1).
 */
export async function checkRecovered(db: Db, acked: readonly number[], rowsPerBatch: number): Promise<void> {
  const rows = await db.scan().toArray();
  const byId = new Map<bigint, Record<string, unknown>>();
  for (const r of rows) {
    const id = r.id as bigint;
    if (byId.has(id)) throw new Error(`duplicate row for key ${id}`);
    byId.set(id, r);
  }
  for (const [p, n] of acked.entries()) {
    for (let b = 0; b < n; b++) {
      for (let r = 0; r < rowsPerBatch; r++) {
        const want = expectedBatchRow(p, b, r, rowsPerBatch);
        const got = byId.get(want.id as bigint);
        if (!got) throw new Error(`acknowledged row lost: producer ${p} batch ${b} row ${r} (id ${want.id})`);
        if (JSON.stringify(plainish(got)) !== JSON.stringify(plainish(want)))
          throw new Error(`row ${want.id} differs: ${JSON.stringify(plainish(got))}`);
      }
    }
  }
  for (const [id, got] of byId) {
    const p = Number(id / 1_000_000n);
    const rest = Number(id % 1_000_000n);
    const b = Math.floor(rest / rowsPerBatch);
    const r = rest % rowsPerBatch;
    const n = acked[p];
    // A producer awaits each put before the next: at most one unacknowledged batch was attempted.
    if (n === undefined || b > n) throw new Error(`phantom row ${id}: producer ${p} never wrote batch ${b}`);
    const want = expectedBatchRow(p, b, r, rowsPerBatch);
    if (JSON.stringify(plainish(got)) !== JSON.stringify(plainish(want)))
      throw new Error(`garbage row ${id}: ${JSON.stringify(plainish(got))}`);
  }
}

function plainish(r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(r).sort()) out[k] = typeof r[k] === 'bigint' ? `${r[k]}n` : r[k];
  return out;
}

export const FIXTURES_DIR = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** One JSON message printed by a fixture process. */
export type FixtureMessage = Record<string, unknown>;

/**
 * A fixture script (test/fixtures/*.mjs) running in its own Node process. Collects the JSON
 * lines it prints; `waitFor` resolves on the first (past or future) message that matches.
 */
export class FixtureProcess {
  readonly child: ChildProcess;
  readonly messages: FixtureMessage[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #waiters: { pred: (m: FixtureMessage) => boolean; resolve: (m: FixtureMessage) => void }[] = [];
  #exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(script: string, args: readonly string[]) {
    this.child = spawn(process.execPath, [path.join(FIXTURES_DIR, script), ...args], {
      cwd: path.join(FIXTURES_DIR, '..', '..'),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => {
      this.stderr += chunk;
      if (this.stderr.length > 20_000) this.stderr = this.stderr.slice(-20_000);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let msg: FixtureMessage;
      try {
        msg = JSON.parse(line) as FixtureMessage;
      } catch {
        return;
      }
      this.messages.push(msg);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.pred(msg)) return true;
        w.resolve(msg);
        return false;
      });
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve({ code, signal });
      });
    });
  }

  /** The first message matching `pred`; fails (with the child's stderr) on exit or after `ms`. */
  async waitFor(pred: (m: FixtureMessage) => boolean, ms = 30_000): Promise<FixtureMessage> {
    const seen = this.messages.find(pred);
    if (seen) return seen;
    const found = new Promise<FixtureMessage>((resolve) => this.#waiters.push({ pred, resolve }));
    const exited = this.exited.then((e): never => {
      throw new Error(
        `fixture exited (${e.code ?? e.signal}) before the expected message; stderr:\n${this.stderr}`,
      );
    });
    try {
      return await settleWithin(Promise.race([found, exited]), ms, 'fixture message');
    } catch (err) {
      const m = this.messages.at(-1);
      throw new Error(
        `${(err as Error).message}; last message ${JSON.stringify(m)}; stderr:\n${this.stderr.slice(-4000)}`,
      );
    }
  }

  /** Writes one JSON line to the fixture's stdin. */
  send(msg: unknown): void {
    this.child.stdin!.write(`${JSON.stringify(msg)}\n`);
  }

  /** kill -9, then waits for the process to be gone. */
  async kill9(): Promise<void> {
    if (this.#exit === undefined) this.child.kill('SIGKILL');
    await this.exited;
  }
}

export interface WriterConfig {
  readonly dir: string;
  readonly options?: Record<string, unknown>;
  readonly producers?: number;
  readonly producerBase?: number;
  readonly rows?: number;
  readonly batches?: number;
  readonly holdFlush?: boolean;
  readonly holdCommit?: boolean;
  readonly close?: boolean;
}

export function spawnWriter(cfg: WriterConfig): FixtureProcess {
  return new FixtureProcess('writer.mjs', [JSON.stringify(cfg)]);
}

/**
 * Per producer number (0..producers-1, absolute), how many batches (0..n-1) the writer
 * acknowledged. Acks are printed in order per producer.
 */
export function ackedBatches(proc: FixtureProcess, producers: number): number[] {
  const acked = Array.from({ length: producers }, () => 0);
  for (const m of proc.messages) {
    const ack = m.ack as [number, number] | undefined;
    if (!ack) continue;
    if (ack[1] !== acked[ack[0]]) throw new Error(`producer ${ack[0]} acked batch ${ack[1]} out of order`);
    acked[ack[0]] = ack[1] + 1;
  }
  return acked;
}
