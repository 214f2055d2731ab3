/**
 * Issue 3, item 3: fault injection at every storage call site (SQLite I/O-error test style).
 *
 * `runScripted` runs one fixed workload (open, puts, deletes, flushes, point and range reads,
 * close) with a FaultPlan in each thread role. Without a rule it only counts the calls each
 * role makes; with one, the n-th call of that operation in that role fails (EIO, ENOSPC, ...).
 * Each run must end with:
 *  - every rejected call rejected with a typed error (SLUICE_IO naming the errno, or
 *    SLUICE_SHARD_CRASHED while the shard it needed restarts), never a hang;
 *  - no acknowledged row lost, in the live table and after a clean reopen;
 *  - once the fault clears, a successful retry: a new put and a flush in the same table.
 * Frozen memtables kept through failed flushes and commits are checked by `runRetention`.
 */
import { FaultControl } from '@sluice/core';
import type { FaultRule, PlanOp } from '@sluice/core';
import { open } from 'sluice';
import type { Db } from 'sluice';
import { Oracle } from './oracle.js';
import {
  TINY,
  deleteEffects,
  harnessRow,
  observe,
  outcome,
  putEffects,
  shardOfKey,
  sleep,
  within,
} from './table.js';
import type { HarnessRow, Outcome } from './table.js';

export type Role = 'shard' | 'flush' | 'main';
export const ROLES: readonly Role[] = ['shard', 'flush', 'main'];

export interface FaultCase {
  readonly role: Role;
  readonly rule: FaultRule;
}

export interface StepOutcome {
  readonly step: string;
  readonly code: string;
  readonly message: string;
}

export interface ScriptedResult {
  readonly calls: Record<Role, Record<PlanOp, number>>;
  /** How many calls the rule made fail. */
  readonly hits: number;
  readonly rejected: StepOutcome[];
  /** Contract breaches: untyped or unexpected errors, hangs, lost rows, failed retries. */
  readonly violations: string[];
  readonly ackedOps: number;
}

/** Codes a call may fail with while a storage fault is armed. */
export const ALLOWED_CODES: ReadonlySet<string> = new Set([
  'SLUICE_IO',
  'SLUICE_SHARD_CRASHED',
  'SLUICE_BACKPRESSURE',
]);

const STEP_MS = 30_000;

/** Runs the scripted workload on a new table in `dir` (see the module comment). */
export async function runScripted(dir: string, fault?: FaultCase): Promise<ScriptedResult> {
  const controls = {} as Record<Role, FaultControl>;
  for (const role of ROLES) controls[role] = FaultControl.create(fault?.role === role ? [fault.rule] : []);
  const faults = Object.fromEntries(ROLES.map((r) => [r, { plan: controls[r].plan }]));
  const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
  const rejected: StepOutcome[] = [];
  const violations: string[] = [];
  const warnings: string[] = [];
  let nextOp = 1;
  let ackedOps = 0;

  const record = <T>(step: string, o: Outcome<T>): Outcome<T> => {
    if (!o.ok) {
      rejected.push({ step, code: o.code, message: o.message });
      if (!ALLOWED_CODES.has(o.code)) violations.push(`${step}: ${o.code}: ${o.message}`);
    }
    return o;
  };
  const put = async (db: Db, step: string, rows: HarnessRow[]): Promise<void> => {
    const id = nextOp++;
    oracle.intent(id, putEffects(rows));
    const o = record(step, await outcome(db.put(rows), STEP_MS, step));
    if (o.ok) {
      oracle.ack(id);
      ackedOps++;
    } else oracle.fail(id, o.code);
  };
  const del = async (db: Db, step: string, keys: number[]): Promise<void> => {
    const id = nextOp++;
    oracle.intent(id, deleteEffects(keys));
    const o = record(step, await outcome(db.delete(keys), STEP_MS, step));
    if (o.ok) {
      oracle.ack(id);
      ackedOps++;
    } else oracle.fail(id, o.code);
  };
  const rows = (from: number, to: number): HarnessRow[] => {
    const v = nextOp * 64;
    return Array.from({ length: to - from }, (_, i) => harnessRow(from + i, v + i));
  };
  const openOptions = { ...TINY, faults, onWarning: (m: string) => warnings.push(m) };

  let db: Db | undefined;
  const first = record('open', await outcome(open(dir, openOptions), STEP_MS, 'open'));
  if (first.ok) db = first.value;
  else {
    // The fault clears; opening again must work.
    for (const c of Object.values(controls)) c.disarm();
    const again = await outcome(open(dir, openOptions), STEP_MS, 'open (retry)');
    if (!again.ok) {
      violations.push(`open retry after the fault cleared: ${again.code}: ${again.message}`);
      return result();
    }
    db = again.value;
  }

  await put(db, 'put 1', rows(0, 30));
  await put(db, 'put 2', rows(20, 50));
  await del(db, 'delete 1', [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  record('flush 1', await outcome(db.flush(), STEP_MS, 'flush 1'));
  record('get', await outcome(db.get(25), STEP_MS, 'get'));
  record('getMany', await outcome(db.getMany(Array.from({ length: 50 }, (_, i) => i)), STEP_MS, 'getMany'));
  record(
    'scan filter+limit',
    await outcome(
      db.scan({ filter: { column: 'id', op: '>=', value: 15 }, limit: 7 }).toArray(),
      STEP_MS,
      'scan',
    ),
  );
  await put(db, 'put 3', rows(50, 80));
  record('flush 2', await outcome(db.flush(), STEP_MS, 'flush 2'));
  await put(db, 'put 4', rows(5, 16));
  record('scan', await outcome(db.scan().toArray(), STEP_MS, 'scan all'));

  // The fault clears: the same table must take writes and flush again.
  for (const c of Object.values(controls)) c.disarm();
  const retryRows = rows(100, 110);
  const retryId = nextOp++;
  oracle.intent(retryId, putEffects(retryRows));
  let retried: Outcome<void> | undefined;
  for (let attempt = 0; attempt < 100; attempt++) {
    retried = await outcome(db.put(retryRows), STEP_MS, 'retry put');
    if (retried.ok || (retried.code !== 'SLUICE_SHARD_CRASHED' && retried.code !== 'SLUICE_BACKPRESSURE'))
      break;
    await sleep(50);
  }
  if (retried?.ok) oracle.ack(retryId);
  else {
    oracle.fail(retryId, retried?.code ?? '?');
    violations.push(
      `put after the fault cleared: ${retried?.ok === false ? `${retried.code}: ${retried.message}` : '?'}`,
    );
  }
  const flushed = await outcome(db.flush(), STEP_MS, 'retry flush');
  if (!flushed.ok) violations.push(`flush after the fault cleared: ${flushed.code}: ${flushed.message}`);

  const live = await outcome(observe(db, oracle.keys()), STEP_MS, 'live read');
  if (live.ok) checkAgainst('live', live.value);
  else violations.push(`live read after the fault cleared: ${live.code}: ${live.message}`);
  const closed = await outcome(db.close(), STEP_MS, 'close');
  if (!closed.ok) violations.push(`close after the fault cleared: ${closed.code}: ${closed.message}`);

  const reopened = await outcome(open(dir, { onWarning: (m) => warnings.push(m) }), STEP_MS, 'reopen');
  if (!reopened.ok) {
    violations.push(`clean reopen: ${reopened.code}: ${reopened.message}`);
    return result();
  }
  const after = await outcome(observe(reopened.value, oracle.keys()), STEP_MS, 'read after reopen');
  if (after.ok) checkAgainst('reopen', after.value);
  else violations.push(`read after reopen: ${after.code}: ${after.message}`);
  await reopened.value.close();
  return result();

  function checkAgainst(when: string, seen: Awaited<ReturnType<typeof observe>>): void {
    const res = oracle.check(seen.rows);
    for (const v of res.violations) violations.push(`${when}: ${v.kind} key ${v.key}: ${v.detail}`);
    for (const g of [...seen.garbage, ...seen.readMismatches]) violations.push(`${when}: ${g}`);
  }

  function result(): ScriptedResult {
    const calls = {} as Record<Role, Record<PlanOp, number>>;
    for (const role of ROLES) calls[role] = controls[role].allCalls();
    const hits = fault ? controls[fault.role].hits() : 0;
    if (warnings.some((w) => /SLUICE_INTERNAL/.test(w))) {
      violations.push(`internal error reported: ${warnings.find((w) => /SLUICE_INTERNAL/.test(w))}`);
    }
    return { calls, hits, rejected, violations, ackedOps };
  }
}

export interface RetentionResult {
  readonly failuresSeen: number;
  readonly frozenWhileFailing: number;
  readonly violations: string[];
}

/**
 * A flush (generation file write, flush role) or a commit (manifest write, main role) that
 * keeps failing: the frozen memtable must stay frozen and readable, nothing may be lost, and
 * once the fault clears the retried flush must complete.
 */
export async function runRetention(
  dir: string,
  target: 'flush' | 'commit',
  action: string,
): Promise<RetentionResult> {
  const rule: FaultRule =
    target === 'flush'
      ? { op: 'putIfAbsent', path: '/gen/', times: Infinity, action }
      : { op: 'putIfAbsent', path: '/manifest/', times: Infinity, action };
  const control = FaultControl.create([rule]);
  const role = target === 'flush' ? 'flush' : 'main';
  const violations: string[] = [];
  // The plan is armed only after open: open itself commits a manifest (the ownership fence).
  control.disarm();
  const db = await open(dir, {
    ...TINY,
    faults: { [role]: { plan: control.plan } },
    onWarning: () => undefined,
  });
  const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
  const sum = (f: 'frozen' | 'generations' | 'flushFailures' | 'commitFailures'): number =>
    db.stats().shards.reduce((n, s) => n + s[f], 0);
  try {
    const rows = Array.from({ length: 200 }, (_, i) => harnessRow(i, 64 + i));
    oracle.intent(1, putEffects(rows));
    await within(db.put(rows), STEP_MS, 'put');
    oracle.ack(1);
    const gens = sum('generations');
    control.arm();
    const flushing = db.flush(); // freezes, then waits for the (failing) flush and commit
    flushing.catch(() => undefined);
    const counter = target === 'flush' ? 'flushFailures' : 'commitFailures';
    const end = Date.now() + STEP_MS;
    while (sum(counter) < 2 && Date.now() < end) await sleep(10);
    const failuresSeen = sum(counter);
    const frozen = sum('frozen');
    if (failuresSeen < 2) violations.push(`${target} failures not retried (${failuresSeen} seen)`);
    if (frozen < 1) violations.push(`no frozen memtable retained while the ${target} fails`);
    if (sum('generations') !== gens)
      violations.push(`a generation was published although every ${target} failed`);
    const during = await observe(db, oracle.keys());
    for (const v of oracle.check(during.rows).violations)
      violations.push(`while failing: ${v.kind} ${v.key}`);
    control.disarm();
    const done = await outcome(flushing, STEP_MS, 'flush after the fault cleared');
    if (!done.ok) violations.push(`flush after the fault cleared: ${done.code}: ${done.message}`);
    if (sum('frozen') !== 0)
      violations.push(`frozen memtables left after the retried flush: ${sum('frozen')}`);
    if (!(sum('generations') > gens)) violations.push('the retried flush published no generation');
    const after = await observe(db, oracle.keys());
    for (const v of oracle.check(after.rows).violations) violations.push(`after retry: ${v.kind} ${v.key}`);
    return { failuresSeen, frozenWhileFailing: frozen, violations };
  } finally {
    await db.close().catch(() => undefined);
  }
}

/** The call sites the sweep fails, per thread role (ops a role never calls are skipped by the count). */
export const SWEEP_TARGETS: readonly { role: Role; op: PlanOp }[] = [
  { role: 'shard', op: 'write' },
  { role: 'shard', op: 'sync' },
  { role: 'shard', op: 'openAppend' },
  { role: 'shard', op: 'list' },
  { role: 'shard', op: 'size' },
  { role: 'shard', op: 'getRange' },
  { role: 'shard', op: 'delete' },
  { role: 'shard', op: 'truncate' },
  { role: 'shard', op: 'exists' },
  { role: 'flush', op: 'openAppend' },
  { role: 'flush', op: 'write' },
  { role: 'flush', op: 'putIfAbsent' },
  { role: 'main', op: 'putIfAbsent' },
  { role: 'main', op: 'get' },
  { role: 'main', op: 'getRange' },
  { role: 'main', op: 'size' },
  { role: 'main', op: 'list' },
  { role: 'main', op: 'delete' },
];

export interface SweepTotals {
  cases: number;
  faultsInjected: number;
  rejectedCalls: number;
  codes: Record<string, number>;
  perSite: Record<string, { cases: number; hits: number }>;
  violations: string[];
}

export function emptySweep(): SweepTotals {
  return { cases: 0, faultsInjected: 0, rejectedCalls: 0, codes: {}, perSite: {}, violations: [] };
}

export function addCase(t: SweepTotals, site: string, r: ScriptedResult): void {
  t.cases++;
  t.faultsInjected += r.hits;
  t.rejectedCalls += r.rejected.length;
  for (const x of r.rejected) t.codes[x.code] = (t.codes[x.code] ?? 0) + 1;
  const s = (t.perSite[site] ??= { cases: 0, hits: 0 });
  s.cases++;
  s.hits += r.hits;
  for (const v of r.violations) t.violations.push(`${site}: ${v}`);
}
