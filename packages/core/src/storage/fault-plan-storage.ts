import { constants as osConstants } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, SluiceError, ioError } from '@sluice/protocol';
import { stageThrough, stagedLabel } from './faulty-storage.js';
import type { FaultOp } from './faulty-storage.js';
import type { AppendFile, StagedObject, Storage, SyncStorage } from './storage.js';

/**
 * FAULT INJECTION FOR TESTS, ACROSS THREADS. A Storage wrapper driven by a FaultPlan: plain
 * data plus one SharedArrayBuffer of counters, so that the same plan handed to every shard
 * thread, every flush thread and the main thread counts calls in one place. "Fail the 7th
 * WAL fsync of the process" or "kill the process at the 3rd manifest write" then means the
 * same thing however the engine spreads its calls over threads, and a test can disarm every
 * copy of the plan at once (the fault "clears") from the thread that armed it.
 *
 * Besides system errors (any errno: EIO, ENOSPC, ...), which surface as SLUICE_IO exactly like
 * FaultyStorage's, a rule can:
 *  - 'CRASH': SIGKILL the whole process at that call (crash-point testing; child processes only);
 *  - 'EXIT_THREAD': end the calling worker thread with process.exit(1) (worker threads only);
 *  - 'THROW': raise an uncaught exception in the calling thread's event loop (worker threads only);
 *  - 'DELAY': hold the call for `delayMs` (slow storage, for backpressure tests).
 *
 * With no rules it only counts calls per operation (scripted workloads measure themselves
 * this way before a test fails each call in turn).
 *
 * @example
 * ```ts
 * const control = FaultControl.create([{ op: 'sync', nth: 7, action: 'EIO' }]);
 * const db = await open(dir, { ...options, faults: { shard: { plan: control.plan } } });
 * // ... the 7th fsync in any shard thread fails with SLUICE_IO (EIO)
 * control.disarm(); // every copy of the plan stops failing
 * ```
 */
export class FaultPlanStorage implements Storage {
  readonly #inner: Storage;
  readonly #rules: readonly FaultRule[];
  readonly #counters: Int32Array;
  readonly sync: SyncStorage;

  constructor(inner: Storage, plan: FaultPlan) {
    checkPlan(plan);
    this.#inner = inner;
    this.#rules = plan.rules;
    this.#counters = new Int32Array(plan.control);
    this.sync = Object.freeze({
      exists: (path: string): boolean => {
        const rule = this.#trip('exists', path);
        if (rule === undefined) return inner.sync.exists(path);
        // A synchronous call cannot be delayed; every other action applies before or after.
        if (rule.when === 'after') {
          const result = inner.sync.exists(path);
          actSync(rule, 'exists', path);
          return result;
        }
        actSync(rule, 'exists', path);
        return inner.sync.exists(path);
      },
    });
  }

  get root(): string {
    return this.#inner.root;
  }

  putIfAbsent(path: string, data: Uint8Array): Promise<boolean> {
    return this.#call('putIfAbsent', path, () => this.#inner.putIfAbsent(path, data));
  }

  get(path: string): Promise<Uint8Array | undefined> {
    return this.#call('get', path, () => this.#inner.get(path));
  }

  getRange(path: string, offset: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    return this.#call('getRange', path, () => this.#inner.getRange(path, offset, length, into));
  }

  size(path: string): Promise<number | undefined> {
    return this.#call('size', path, () => this.#inner.size(path));
  }

  list(prefix: string): Promise<string[]> {
    return this.#call('list', prefix, () => this.#inner.list(prefix));
  }

  delete(path: string): Promise<void> {
    return this.#call('delete', path, () => this.#inner.delete(path));
  }

  async openAppend(path: string): Promise<AppendFile> {
    const file = await this.#call('openAppend', path, () => this.#inner.openAppend(path));
    const call = <T>(op: PlanOp, fn: () => Promise<T>): Promise<T> => this.#call(op, path, fn);
    return {
      path: file.path,
      get size() {
        return file.size;
      },
      write: (chunks) => call('write', () => file.write(chunks)),
      sync: () => call('sync', () => file.sync()),
      truncate: (length) => call('truncate', () => file.truncate(length)),
      close: () => file.close(),
    };
  }

  /**
   * A staged object's calls count as the calls they replace (see stageThrough), so a rule on
   * generation-file creation keeps meaning what it meant.
   */
  async stage(dir: string): Promise<StagedObject> {
    return stageThrough(this.#inner, dir, (op, path, fn) => this.#call(op, path, fn));
  }

  /** Counts as a 'delete' of the directory's staged names. */
  clearStaged(dir: string): Promise<number> {
    return this.#call('delete', stagedLabel(dir), () => this.#inner.clearStaged(dir));
  }

  async #call<T>(op: PlanOp, path: string, fn: () => Promise<T>): Promise<T> {
    const rule = this.#trip(op, path);
    if (rule === undefined) return fn();
    if (rule.when !== 'after') await act(rule, op, path);
    const result = await fn();
    if (rule.when === 'after') await act(rule, op, path);
    return result;
  }

  /**
   * Counts the call and returns the rule it triggers, if any. Rules match while the plan is
   * armed; each keeps one shared count of its matching calls, so "the n-th" is the n-th across
   * every thread. Atomics.add hands out each count exactly once, whichever thread asks.
   */
  #trip(op: PlanOp, path: string): FaultRule | undefined {
    const c = this.#counters;
    Atomics.add(c, K_CALLS + PLAN_OPS.indexOf(op), 1);
    if (Atomics.load(c, K_ARMED) !== 1) return undefined;
    let hit: FaultRule | undefined;
    for (let i = 0; i < this.#rules.length; i++) {
      const rule = this.#rules[i]!;
      if (rule.op !== '*' && rule.op !== op) continue;
      if (rule.path !== undefined && !path.includes(rule.path)) continue;
      const n = Atomics.add(c, ruleSlot(i, K_RULE_MATCHED), 1) + 1;
      const nth = rule.nth ?? 1;
      const times = rule.times ?? 1;
      if (n < nth || n - nth >= times) continue;
      Atomics.add(c, ruleSlot(i, K_RULE_HITS), 1);
      hit ??= rule;
    }
    return hit;
  }
}

/** Storage calls a rule can target: FaultyStorage's plus the synchronous fencing check. */
export type PlanOp = FaultOp | 'exists';

export const PLAN_OPS: readonly PlanOp[] = [
  'putIfAbsent',
  'get',
  'getRange',
  'size',
  'list',
  'delete',
  'openAppend',
  'write',
  'sync',
  'truncate',
  'exists',
];

/** An errno ('EIO', 'ENOSPC', ...) or one of the special actions described on FaultPlanStorage. */
export type FaultAction = 'CRASH' | 'EXIT_THREAD' | 'THROW' | 'DELAY' | (string & {});

export interface FaultRule {
  /** The operation to match; '*' matches every operation. */
  readonly op: PlanOp | '*';
  /** Trigger on the n-th matching call counted while armed, across all threads (default 1). */
  readonly nth?: number;
  /** How many consecutive matching calls trigger, from `nth` (default 1; Infinity = all). */
  readonly times?: number;
  /** Default 'EIO'. */
  readonly action?: FaultAction;
  /** 'before' (default): act before the call reaches storage; 'after': perform it, then act. */
  readonly when?: 'before' | 'after';
  /** Only calls whose path contains this string match. */
  readonly path?: string;
  /** For 'DELAY': how long each triggered call is held. */
  readonly delayMs?: number;
}

/** Plain data (structured-clonable): the SharedArrayBuffer stays shared across threads. */
export interface FaultPlan {
  readonly control: SharedArrayBuffer;
  readonly rules: readonly FaultRule[];
}

// Layout of the control SharedArrayBuffer (Int32 slots). Written with Atomics by every thread
// holding the plan; the armed flag is written only by the test that owns the FaultControl.
const K_ARMED = 0;
const K_CALLS = 1;
const K_RULES = K_CALLS + PLAN_OPS.length;
const K_RULE_MATCHED = 0;
const K_RULE_HITS = 1;
const RULE_SLOTS = 2;

function ruleSlot(rule: number, field: number): number {
  return K_RULES + rule * RULE_SLOTS + field;
}

/**
 * The test's handle on a FaultPlan: creates it armed, and reads or changes its shared state
 * from any thread.
 */
export class FaultControl {
  readonly plan: FaultPlan;
  readonly #c: Int32Array;

  private constructor(plan: FaultPlan) {
    checkPlan(plan);
    this.plan = plan;
    this.#c = new Int32Array(plan.control);
  }

  /** A new plan with `rules`, armed. */
  static create(rules: readonly FaultRule[] = []): FaultControl {
    const control = new SharedArrayBuffer(4 * (K_RULES + rules.length * RULE_SLOTS));
    const fc = new FaultControl({ control, rules: rules.map((r) => ({ ...r })) });
    fc.arm();
    return fc;
  }

  /** Attaches to a plan created elsewhere (for instance in another thread). */
  static of(plan: FaultPlan): FaultControl {
    return new FaultControl(plan);
  }

  arm(): void {
    Atomics.store(this.#c, K_ARMED, 1);
  }

  /** The fault "clears": no rule triggers any more, in any thread. Calls are still counted. */
  disarm(): void {
    Atomics.store(this.#c, K_ARMED, 0);
  }

  get armed(): boolean {
    return Atomics.load(this.#c, K_ARMED) === 1;
  }

  /** Calls of `op` seen by every storage holding this plan, armed or not. */
  calls(op: PlanOp): number {
    return Atomics.load(this.#c, K_CALLS + PLAN_OPS.indexOf(op));
  }

  /** Calls of every operation, by name. */
  allCalls(): Record<PlanOp, number> {
    const out = {} as Record<PlanOp, number>;
    for (const op of PLAN_OPS) out[op] = this.calls(op);
    return out;
  }

  /** How many calls rule `i` (or all rules) triggered. */
  hits(rule?: number): number {
    if (rule !== undefined) return Atomics.load(this.#c, ruleSlot(rule, K_RULE_HITS));
    let n = 0;
    for (let i = 0; i < this.plan.rules.length; i++) n += this.hits(i);
    return n;
  }
}

function checkPlan(plan: FaultPlan): void {
  if (
    typeof plan !== 'object' ||
    plan === null ||
    !(plan.control instanceof SharedArrayBuffer) ||
    !Array.isArray(plan.rules)
  ) {
    throw new TypeError('a fault plan is { control: SharedArrayBuffer, rules: FaultRule[] }');
  }
  if (plan.control.byteLength < 4 * (K_RULES + plan.rules.length * RULE_SLOTS)) {
    throw new RangeError('fault plan control buffer is too small for its rules');
  }
  for (const r of plan.rules) {
    if (r.op !== '*' && !PLAN_OPS.includes(r.op))
      throw new TypeError(`fault rule op "${String(r.op)}" is unknown`);
    if (r.nth !== undefined && !(Number.isInteger(r.nth) && r.nth >= 1)) {
      throw new RangeError('fault rule nth must be a positive integer');
    }
    if (r.times !== undefined && !(r.times >= 1)) throw new RangeError('fault rule times must be at least 1');
    if (r.action === 'DELAY' && !(typeof r.delayMs === 'number' && r.delayMs >= 0)) {
      throw new RangeError("a 'DELAY' fault rule needs delayMs >= 0");
    }
  }
}

async function act(rule: FaultRule, op: PlanOp, path: string): Promise<void> {
  if (rule.action === 'DELAY') {
    await sleep(rule.delayMs ?? 0);
    return;
  }
  actSync(rule, op, path);
}

function actSync(rule: FaultRule, op: PlanOp, path: string): void {
  const action = rule.action ?? 'EIO';
  switch (action) {
    case 'DELAY':
      return;
    case 'CRASH':
      // The whole process, from any thread: what a power cut or kill -9 leaves behind.
      process.kill(process.pid, 'SIGKILL');
      return;
    case 'EXIT_THREAD':
      // In a worker thread, process.exit() ends that thread only (its 'exit' event fires).
      process.exit(1);
      return;
    case 'THROW':
      setImmediate(() => {
        throw new Error(`injected uncaught exception at ${op} '${path}'`);
      });
      return;
    default:
      if (!/^E[A-Z0-9]+$/.test(action)) {
        throw new SluiceError(ErrorCode.INTERNAL, `unknown fault action ${JSON.stringify(action)}`);
      }
      throw injected(action, op, path);
  }
}

function injected(errno: string, op: PlanOp, path: string): SluiceError {
  const errnoNumbers = osConstants.errno as Readonly<Record<string, number>>;
  const sys: NodeJS.ErrnoException = new Error(`${errno}: injected fault, ${op} '${path}'`);
  sys.code = errno;
  sys.errno = -(errnoNumbers[errno] ?? 0);
  sys.syscall = op;
  sys.path = path;
  return ioError(op, path, sys);
}
