/**
 * Issue 3, item 5: model-based randomized testing with fast-check. Random sequences of put,
 * delete, get, getMany, scan (filters, limits, column subsets), freeze, flush, a flush that
 * fails until its fault clears, a shard thread crash, reopen, and concurrent readers, checked
 * against a Map.
 *
 * Concurrent readers race a put: async readers on the main thread, and a reader thread
 * attached to the table (db.handle()/attach()) reading from its own snapshots.
 *
 * Runs share a table, each in its own key namespace (`run` column, keys run * 1000 + k), so a
 * run costs its commands and not an open; the table is replaced every `runsPerTable` runs.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TransferListItem } from 'node:worker_threads';
import fc from 'fast-check';
import { FaultControl } from '@sluice/core';
import { kInternals, open } from 'sluice';
import type { Db, OpenOptions } from 'sluice';
import { sleep, tempDir, within } from './table.js';

export const MODEL_SCHEMA = {
  id: 'int64',
  run: 'int32',
  n: 'int32',
  f: 'float64',
  tag: 'utf8',
  ok: 'bool',
} as const;

interface ModelRow {
  readonly k: number;
  readonly n: number | null;
  readonly f: number | null;
  readonly tag: string | null;
  readonly ok: boolean | null;
}

type Model = { rows: Map<number, ModelRow> };

/** The shared table and the fault plan its flush threads hold. */
export class ModelTable {
  db!: Db;
  dir!: string;
  runId = 0;
  runsOnTable = 0;
  readonly control = FaultControl.create([
    { op: 'putIfAbsent', path: '/gen/', times: Infinity, action: 'ENOSPC' },
  ]);
  readonly counts: Record<string, number> = {};
  /** The reader thread, attached to `readerDb` (re-attached after every open). */
  #reader: Worker | undefined;
  #readerDb: Db | undefined;
  #requests = new Map<number, (reply: ReaderReply) => void>();
  #nextRequest = 0;

  constructor() {
    this.control.disarm();
  }

  /** getMany(keys) and a scan of run `run`, both from the reader thread's snapshots. */
  async readInThread(keys: bigint[], run: number): Promise<ReaderReply> {
    if (!this.#reader) {
      this.#reader = new Worker(new URL('../fixtures/model-reader.mjs', import.meta.url));
      this.#reader.on('message', (reply: ReaderReply) => {
        this.#requests.get(reply.id)?.(reply);
        this.#requests.delete(reply.id);
      });
      this.#reader.on('error', (err) => {
        for (const done of this.#requests.values()) done({ id: -1, ok: false, error: String(err) });
        this.#requests.clear();
      });
    }
    if (this.#readerDb !== this.db) {
      const descriptor = this.db.handle();
      const attached = await this.#ask({ kind: 'attach', descriptor }, [descriptor.registry]);
      if (!attached.ok) throw new Error(`reader thread could not attach: ${attached.error}`);
      this.#readerDb = this.db;
    }
    return this.#ask({ kind: 'read', keys, run });
  }

  #ask(msg: Record<string, unknown>, transfer: TransferListItem[] = []): Promise<ReaderReply> {
    const id = this.#nextRequest++;
    return new Promise((resolve) => {
      this.#requests.set(id, resolve);
      this.#reader!.postMessage({ ...msg, id }, transfer);
    });
  }

  options(): OpenOptions {
    return {
      schema: MODEL_SCHEMA,
      primaryKey: 'id',
      shards: 2,
      memtableBytes: 32 << 10,
      flushThreads: 1,
      faults: { flush: { plan: this.control.plan } },
      onWarning: () => undefined,
    };
  }

  async fresh(): Promise<void> {
    if (this.db) await this.db.close();
    this.dir = path.join(await tempDir('model'), 'table');
    this.db = await open(this.dir, this.options());
    this.runsOnTable = 0;
  }

  async reopen(): Promise<void> {
    await this.db.close();
    this.db = await open(this.dir, this.options());
  }

  async close(): Promise<void> {
    await this.#reader?.terminate();
    this.#reader = undefined;
    await this.db?.close();
  }

  count(what: string): void {
    this.counts[what] = (this.counts[what] ?? 0) + 1;
  }
}

type Real = { t: ModelTable; run: number };

interface ReaderReply {
  readonly id: number;
  readonly ok: boolean;
  readonly error?: string;
  readonly many?: (Record<string, unknown> | undefined)[];
  readonly scan?: Record<string, unknown>[];
}

const id = (run: number, k: number): bigint => BigInt(run * 1000 + k);

function toDb(run: number, r: ModelRow): Record<string, unknown> {
  return { id: id(run, r.k), run, n: r.n, f: r.f, tag: r.tag, ok: r.ok };
}

/** The row the table must return for a model row (all columns, or a subset). */
function expectRow(run: number, r: ModelRow, columns?: readonly string[]): Record<string, unknown> {
  const full: Record<string, unknown> = { id: id(run, r.k), run, n: r.n, f: r.f, tag: r.tag, ok: r.ok };
  if (!columns) return full;
  return Object.fromEntries(columns.map((c) => [c, full[c]]));
}

function same(a: unknown, b: unknown): boolean {
  const ka = Object.keys(a as object).sort();
  const kb = Object.keys(b as object).sort();
  if (ka.join() !== kb.join()) return false;
  return ka.every((k) => Object.is((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

const show = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : Number.isNaN(x) ? 'NaN' : x));

function fail(what: string, got: unknown, want: unknown): never {
  throw new Error(`${what}: got ${show(got)}, want ${show(want)}`);
}

// ---- filters: generated, and evaluated on the model with the engine's documented semantics ----

type Cmp = '=' | '!=' | '<' | '<=' | '>' | '>=';
type Filter =
  | { column: string; op: Cmp; value: number | string | boolean }
  | { column: string; op: 'in'; values: (number | string)[] }
  | { column: string; op: 'is null' | 'is not null' }
  | { and: Filter[] }
  | { or: Filter[] }
  | { not: Filter };

const TAGS = ['', 'a', 'ab', 'b', 'z', 'é', '\uffee', '😀'];
const FLOATS = [-1.5, 0, 0.1, 2.25, 1e10, Number.NaN];

const nArb = fc.option(fc.integer({ min: -5, max: 5 }), { nil: null, freq: 6 });
const fArb = fc.option(fc.constantFrom(...FLOATS), { nil: null, freq: 6 });
const tagArb = fc.option(fc.constantFrom(...TAGS), { nil: null, freq: 6 });
const okArb = fc.option(fc.boolean(), { nil: null, freq: 6 });
const cmpArb = fc.constantFrom<Cmp>('=', '!=', '<', '<=', '>', '>=');

const leafArb: fc.Arbitrary<Filter> = fc.oneof(
  fc.record({ column: fc.constant('n'), op: cmpArb, value: fc.integer({ min: -5, max: 5 }) }),
  fc.record({ column: fc.constant('f'), op: cmpArb, value: fc.constantFrom(-1.5, 0, 0.1, 2.25) }),
  fc.record({ column: fc.constant('tag'), op: cmpArb, value: fc.constantFrom(...TAGS) }),
  fc.record({ column: fc.constant('ok'), op: fc.constantFrom<Cmp>('=', '!='), value: fc.boolean() }),
  fc.record({
    column: fc.constant('n'),
    op: fc.constant('in' as const),
    values: fc.array(fc.integer({ min: -5, max: 5 }), { maxLength: 3 }),
  }),
  fc.record({
    column: fc.constant('tag'),
    op: fc.constant('in' as const),
    values: fc.array(fc.constantFrom(...TAGS), { maxLength: 3 }),
  }),
  fc.record({
    column: fc.constantFrom('n', 'f', 'tag', 'ok'),
    op: fc.constantFrom<'is null' | 'is not null'>('is null', 'is not null'),
  }),
);

const filterArb: fc.Arbitrary<Filter> = fc.letrec<{ f: Filter }>((tie) => ({
  f: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leafArb,
    fc.record({ and: fc.array(tie('f'), { maxLength: 3 }) }),
    fc.record({ or: fc.array(tie('f'), { maxLength: 3 }) }),
    fc.record({ not: tie('f') }),
  ),
})).f;

/** Unicode code point order (the engine orders utf8 bytewise), not UTF-16 order. */
function cmpStr(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  return x.length - y.length;
}

function matches(f: Filter, r: ModelRow): boolean {
  if ('and' in f) return f.and.every((g) => matches(g, r));
  if ('or' in f) return f.or.some((g) => matches(g, r));
  if ('not' in f) return !matches(f.not, r);
  const cell = r[f.column as 'n' | 'f' | 'tag' | 'ok'];
  if (f.op === 'is null') return cell === null;
  if (f.op === 'is not null') return cell !== null;
  if (cell === null || (typeof cell === 'number' && Number.isNaN(cell))) return false;
  if (f.op === 'in') return f.values.some((v) => v === cell);
  const value = (f as { value: number | string | boolean }).value;
  const c =
    typeof cell === 'string' ? cmpStr(cell, value as string) : cell === value ? 0 : cell < value ? -1 : 1;
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

// ---- commands ----

const K = 24; // keys per run: small, so commands keep hitting the same keys

const rowArb: fc.Arbitrary<ModelRow> = fc.record({
  k: fc.integer({ min: 0, max: K - 1 }),
  n: nArb,
  f: fArb,
  tag: tagArb,
  ok: okArb,
});

abstract class Cmd implements fc.AsyncCommand<Model, Real> {
  check(): boolean {
    return true;
  }
  abstract run(m: Model, r: Real): Promise<void>;
  abstract toString(): string;
}

class Put extends Cmd {
  constructor(readonly rows: ModelRow[]) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('put');
    await r.t.db.put(this.rows.map((x) => toDb(r.run, x)));
    for (const x of this.rows) m.rows.set(x.k, x);
  }
  toString(): string {
    return `put(${show(this.rows)})`;
  }
}

class Delete extends Cmd {
  constructor(readonly keys: number[]) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('delete');
    await r.t.db.delete(this.keys.map((k) => id(r.run, k)));
    for (const k of this.keys) m.rows.delete(k);
  }
  toString(): string {
    return `delete(${show(this.keys)})`;
  }
}

async function checkGet(m: Model, r: Real, k: number, what: string): Promise<void> {
  const got = await r.t.db.get(id(r.run, k));
  const want = m.rows.get(k);
  if (want === undefined ? got !== undefined : !got || !same(got, expectRow(r.run, want))) {
    fail(`${what} ${k}`, got, want && expectRow(r.run, want));
  }
}

class Get extends Cmd {
  constructor(readonly k: number) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('get');
    await checkGet(m, r, this.k, 'get');
  }
  toString(): string {
    return `get(${this.k})`;
  }
}

class GetMany extends Cmd {
  constructor(readonly keys: number[]) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('getMany');
    const got = await r.t.db.getMany(this.keys.map((k) => id(r.run, k)));
    this.keys.forEach((k, i) => {
      const want = m.rows.get(k);
      const g = got[i];
      if (want === undefined ? g !== undefined : !g || !same(g, expectRow(r.run, want))) {
        fail(`getMany[${i}] key ${k}`, g, want && expectRow(r.run, want));
      }
    });
  }
  toString(): string {
    return `getMany(${show(this.keys)})`;
  }
}

class Scan extends Cmd {
  constructor(
    readonly filter: Filter | undefined,
    readonly limit: number | undefined,
    readonly columns: string[] | undefined,
  ) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('scan');
    const own = { column: 'run', op: '=', value: r.run } as const;
    const got = await r.t.db
      .scan({
        filter: this.filter ? { and: [own, this.filter] } : own,
        ...(this.limit !== undefined ? { limit: this.limit } : {}),
        ...(this.columns ? { columns: this.columns } : {}),
      })
      .toArray();
    const want = new Map<bigint, Record<string, unknown>>();
    for (const x of m.rows.values()) {
      if (!this.filter || matches(this.filter, x))
        want.set(id(r.run, x.k), expectRow(r.run, x, this.columns));
    }
    const n = Math.min(this.limit ?? Infinity, want.size);
    if (got.length !== n) fail(`scan ${this} returned ${got.length} rows`, got, [...want.values()]);
    const seen = new Set<bigint>();
    for (const g of got) {
      const key = g.id as bigint;
      const w = want.get(key);
      if (seen.has(key) || !w || !same(g, w)) fail(`scan ${this} row`, g, w ?? 'no such row');
      seen.add(key);
    }
  }
  toString(): string {
    return `scan(${show({ filter: this.filter, limit: this.limit, columns: this.columns })})`;
  }
}

class Freeze extends Cmd {
  async run(_m: Model, r: Real): Promise<void> {
    r.t.count('freeze');
    await r.t.db[kInternals].broker.freeze();
  }
  toString(): string {
    return 'freeze()';
  }
}

class Flush extends Cmd {
  async run(_m: Model, r: Real): Promise<void> {
    r.t.count('flush');
    await r.t.db.flush();
  }
  toString(): string {
    return 'flush()';
  }
}

/** Every generation write fails (ENOSPC) until the fault clears: the rows stay readable, then the retry lands. */
class FailedFlush extends Cmd {
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('failedFlush');
    const sum = (f: 'frozen' | 'flushFailures'): number =>
      r.t.db.stats().shards.reduce((n, s) => n + s[f], 0);
    const before = sum('flushFailures');
    r.t.control.arm();
    try {
      await r.t.db[kInternals].broker.freeze();
      const end = Date.now() + 10_000;
      while (sum('frozen') > 0 && sum('flushFailures') === before && Date.now() < end) await sleep(5);
      if (sum('frozen') > 0 && sum('flushFailures') === before)
        throw new Error('the failing flush was never attempted');
      for (const k of m.rows.keys()) await checkGet(m, r, k, 'get while flushes fail');
    } finally {
      r.t.control.disarm();
    }
    await within(r.t.db.flush(), 30_000, 'flush after the fault cleared');
    if (sum('frozen') !== 0)
      throw new Error(`frozen memtables left after the retried flush: ${sum('frozen')}`);
  }
  toString(): string {
    return 'failedFlush()';
  }
}

class CrashShard extends Cmd {
  constructor(readonly shard: number) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('crashShard');
    await r.t.db[kInternals].broker.lifecycles[this.shard]!.client.crash();
    const end = Date.now() + 30_000;
    while (r.t.db.stats().shards.some((s) => s.state !== 'running')) {
      if (Date.now() > end) throw new Error('shard not restarted');
      await sleep(5);
    }
    for (const k of m.rows.keys()) await checkGet(m, r, k, 'get after the restart');
  }
  toString(): string {
    return `crashShard(${this.shard})`;
  }
}

class Reopen extends Cmd {
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('reopen');
    await r.t.reopen();
    for (const k of m.rows.keys()) await checkGet(m, r, k, 'get after reopen');
  }
  toString(): string {
    return 'reopen()';
  }
}

/** Each key's model row before or after a racing put (undefined: absent). */
type State = Map<number, ModelRow | undefined>;

/** Whether `g`, read for key `k`, is what `state` says the table holds. */
function holdsAsOf(run: number, k: number, g: Record<string, unknown> | undefined, state: State): boolean {
  const w = state.get(k);
  return w === undefined ? g === undefined : g !== undefined && same(g, expectRow(run, w));
}

/** Readers started while a put is in flight see, per snapshot, all of it or none of it. */
class ConcurrentReaders extends Cmd {
  constructor(readonly rows: ModelRow[]) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('concurrentReaders');
    const keys = [...new Set(this.rows.map((x) => x.k))];
    const before = new Map(keys.map((k) => [k, m.rows.get(k)]));
    const after = new Map(before);
    for (const x of this.rows) after.set(x.k, x);
    const pending = r.t.db.put(this.rows.map((x) => toDb(r.run, x)));
    const many = r.t.db.getMany(keys.map((k) => id(r.run, k)));
    const scan = r.t.db.scan({ filter: { column: 'run', op: '=', value: r.run } }).toArray();
    await pending;
    const asOf = (k: number, g: Record<string, unknown> | undefined, state: State): boolean =>
      holdsAsOf(r.run, k, g, state);
    const got = await many;
    const allBefore = keys.every((k, i) => asOf(k, got[i], before));
    const allAfter = keys.every((k, i) => asOf(k, got[i], after));
    if (!allBefore && !allAfter)
      fail('getMany racing a put saw part of it', got, { before: [...before], after: [...after] });
    const rows = new Map((await scan).map((g) => [Number((g.id as bigint) - BigInt(r.run * 1000)), g]));
    const sBefore = keys.every((k) => asOf(k, rows.get(k), before));
    const sAfter = keys.every((k) => asOf(k, rows.get(k), after));
    if (!sBefore && !sAfter)
      fail('scan racing a put saw part of it', [...rows.values()], {
        before: [...before],
        after: [...after],
      });
    for (const x of this.rows) m.rows.set(x.k, x);
    for (const k of keys) await checkGet(m, r, k, 'read-your-writes');
  }
  toString(): string {
    return `concurrentReaders(${show(this.rows)})`;
  }
}

/**
 * A reader on another thread races a put: each of its reads sees all of the put or none of
 * it; once the put resolves, a new read there sees it (read-your-writes across threads).
 */
class ThreadReaders extends Cmd {
  constructor(readonly rows: ModelRow[]) {
    super();
  }
  async run(m: Model, r: Real): Promise<void> {
    r.t.count('threadReaders');
    const keys = [...new Set(this.rows.map((x) => x.k))];
    const before = new Map(keys.map((k) => [k, m.rows.get(k)]));
    const after = new Map(before);
    for (const x of this.rows) after.set(x.k, x);
    const ids = keys.map((k) => id(r.run, k));
    const pending = r.t.db.put(this.rows.map((x) => toDb(r.run, x)));
    const racing = r.t.readInThread(ids, r.run);
    await pending;
    const check = (reply: ReaderReply, states: State[], what: string): void => {
      if (!reply.ok) fail(`${what}: reader thread failed`, reply.error, undefined);
      const asOf = (k: number, g: Record<string, unknown> | undefined, state: State): boolean =>
        holdsAsOf(r.run, k, g, state);
      const many = reply.many!;
      if (!states.some((st) => keys.every((k, i) => asOf(k, many[i] ?? undefined, st)))) {
        fail(
          `${what}: getMany in another thread`,
          many,
          states.map((st) => [...st]),
        );
      }
      const rows = new Map(reply.scan!.map((g) => [Number((g.id as bigint) - BigInt(r.run * 1000)), g]));
      if (!states.some((st) => keys.every((k) => asOf(k, rows.get(k), st)))) {
        fail(
          `${what}: scan in another thread`,
          [...rows.values()],
          states.map((st) => [...st]),
        );
      }
    };
    check(await racing, [before, after], 'racing a put');
    check(await r.t.readInThread(ids, r.run), [after], 'after the put resolved');
    for (const x of this.rows) m.rows.set(x.k, x);
  }
  toString(): string {
    return `threadReaders(${show(this.rows)})`;
  }
}

const keyArb = fc.integer({ min: 0, max: K - 1 });
const putArb = fc.array(rowArb, { minLength: 1, maxLength: 8 }).map((rows) => new Put(rows));
const columnsArb = fc.option(
  fc.subarray(['run', 'n', 'f', 'tag', 'ok']).map((cs) => ['id', ...cs]),
  { nil: undefined },
);

const scanArb = fc
  .tuple(fc.option(filterArb, { nil: undefined }), fc.option(fc.nat(12), { nil: undefined }), columnsArb)
  .map(([f, l, c]): Cmd => new Scan(f, l, c));

/**
 * One weighted choice per step. Restarting threads (reopen, shard crash) costs a thread start,
 * two orders of magnitude more than a put: those steps are rare so that 10 000 runs stay affordable.
 */
export const COMMANDS: fc.Arbitrary<fc.AsyncCommand<Model, Real>>[] = [
  fc.oneof(
    { weight: 30, arbitrary: putArb as fc.Arbitrary<Cmd> },
    {
      weight: 10,
      arbitrary: fc.array(keyArb, { minLength: 1, maxLength: 4 }).map((ks): Cmd => new Delete(ks)),
    },
    { weight: 10, arbitrary: keyArb.map((k): Cmd => new Get(k)) },
    { weight: 8, arbitrary: fc.array(keyArb, { maxLength: 6 }).map((ks): Cmd => new GetMany(ks)) },
    { weight: 16, arbitrary: scanArb },
    {
      weight: 8,
      arbitrary: fc
        .array(rowArb, { minLength: 1, maxLength: 6 })
        .map((rows): Cmd => new ConcurrentReaders(rows)),
    },
    {
      weight: 4,
      arbitrary: fc.array(rowArb, { minLength: 1, maxLength: 6 }).map((rows): Cmd => new ThreadReaders(rows)),
    },
    { weight: 6, arbitrary: fc.constant<Cmd>(new Freeze()) },
    { weight: 6, arbitrary: fc.constant<Cmd>(new Flush()) },
    { weight: 2, arbitrary: fc.constant<Cmd>(new FailedFlush()) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 1 }).map((s): Cmd => new CrashShard(s)) },
    { weight: 2, arbitrary: fc.constant<Cmd>(new Reopen()) },
  ),
];

export interface ModelRunOptions {
  readonly numRuns: number;
  readonly seed: number;
  readonly maxCommands?: number;
  readonly runsPerTable?: number;
  readonly log?: (line: string) => void;
}

export interface ModelTotals {
  runs: number;
  commands: Record<string, number>;
  failed: boolean;
  counterexample?: string;
  error?: string;
  seed: number;
  seconds: number;
}

/** Runs the property; reports instead of throwing, so the long mode can write its figures. */
export async function runModel(o: ModelRunOptions): Promise<ModelTotals> {
  const started = performance.now();
  const t = new ModelTable();
  await t.fresh();
  let runs = 0;
  try {
    const details = await fc.check(
      fc.asyncProperty(fc.commands(COMMANDS, { maxCommands: o.maxCommands ?? 20 }), async (cmds) => {
        if (t.runsOnTable >= (o.runsPerTable ?? 150)) await t.fresh();
        t.runsOnTable++;
        runs++;
        if (runs % 500 === 0)
          o.log?.(`model: ${runs} runs, ${((performance.now() - started) / 1000).toFixed(0)} s`);
        const run = ++t.runId;
        await fc.asyncModelRun(() => ({ model: { rows: new Map() }, real: { t, run } }), cmds);
      }),
      { numRuns: o.numRuns, seed: o.seed, endOnFailure: true },
    );
    return {
      runs,
      commands: t.counts,
      failed: details.failed,
      ...(details.failed
        ? {
            counterexample: show(details.counterexample?.map(String)),
            error: String((details.errorInstance as Error | undefined)?.message ?? details.errorInstance),
          }
        : {}),
      seed: o.seed,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await t.close().catch(() => undefined);
  }
}
