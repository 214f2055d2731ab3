import { FaultyStorage } from './storage/faulty-storage.js';
import type { Fault } from './storage/faulty-storage.js';
import type { Storage } from './storage/storage.js';

/**
 * Wraps `storage` in a FaultyStorage armed with `faults` when a test passed any (they travel
 * to worker threads as plain data); otherwise returns it unchanged.
 */
export function storageWithFaults(storage: Storage, faults: unknown): Storage {
  if (!Array.isArray(faults) || faults.length === 0) return storage;
  const faulty = new FaultyStorage(storage);
  for (const f of faults as Fault[]) faulty.inject(f);
  return faulty;
}
