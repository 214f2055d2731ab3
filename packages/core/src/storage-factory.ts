import { FaultPlanStorage } from './storage/fault-plan-storage.js';
import type { FaultPlan } from './storage/fault-plan-storage.js';
import { FaultyStorage } from './storage/faulty-storage.js';
import type { Fault } from './storage/faulty-storage.js';
import { PowerLossStorage } from './storage/power-loss-storage.js';
import type { PowerLossConfig } from './storage/power-loss-storage.js';
import type { Storage } from './storage/storage.js';

export { FaultControl, FaultPlanStorage, PLAN_OPS } from './storage/fault-plan-storage.js';
export type { FaultAction, FaultPlan, FaultRule, PlanOp } from './storage/fault-plan-storage.js';
export { PowerLossStorage, closePowerLossJournal, simulatePowerLoss } from './storage/power-loss-storage.js';
export type {
  JournalEvent,
  PowerLossConfig,
  PowerLossOptions,
  PowerLossReport,
} from './storage/power-loss-storage.js';

/**
 * A test storage configuration, as plain data that travels to worker threads (the `faults`
 * open option hands one to the shard threads, one to the flush threads and one to the main
 * thread). Wrappers compose from the disk up: power-loss journal, then the cross-thread fault
 * plan, then per-instance faults.
 */
export interface StorageTestConfig {
  /** Per-instance scripted faults (FaultyStorage): counted separately by every storage built. */
  readonly faults?: readonly Fault[];
  /** Cross-thread faults and call counting (FaultPlanStorage). */
  readonly plan?: FaultPlan;
  /** Durability journal for simulated power loss (PowerLossStorage). */
  readonly powerLoss?: PowerLossConfig;
}

const CONFIG_KEYS: ReadonlySet<string> = new Set(['faults', 'plan', 'powerLoss']);

/**
 * Wraps `storage` as a test asked for, or returns it unchanged when `config` is undefined, null
 * or empty. `config` is either an array of Fault (FaultyStorage armed with them) or a
 * StorageTestConfig. A malformed configuration throws a TypeError: a test that thinks it
 * injects faults must not silently run without them.
 */
export function storageWithFaults(storage: Storage, config: unknown): Storage {
  if (config === undefined || config === null) return storage;
  if (Array.isArray(config)) return withFaults(storage, config as readonly Fault[]);
  if (typeof config !== 'object') {
    throw new TypeError('a storage fault configuration is an array of faults or { faults, plan, powerLoss }');
  }
  for (const key of Object.keys(config)) {
    if (!CONFIG_KEYS.has(key)) throw new TypeError(`unknown storage fault configuration key "${key}"`);
  }
  const c = config as StorageTestConfig;
  let s = storage;
  // Innermost, so that the journal records what really reached the disk, including calls a
  // fault plan lets through before killing the process ('after').
  if (c.powerLoss !== undefined) s = new PowerLossStorage(s, c.powerLoss);
  if (c.plan !== undefined) s = new FaultPlanStorage(s, c.plan);
  if (c.faults !== undefined) s = withFaults(s, c.faults);
  return s;
}

function withFaults(storage: Storage, faults: readonly Fault[]): Storage {
  if (faults.length === 0) return storage;
  const faulty = new FaultyStorage(storage);
  for (const f of faults) faulty.inject(f);
  return faulty;
}
