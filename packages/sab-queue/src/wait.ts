import { CLOSED_SLOT } from './layout.js';

type WaitAsyncResult =
  { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };

type WaitAsync = (array: Int32Array, index: number, value: number, timeoutMs: number) => WaitAsyncResult;

// Atomics.waitAsync ships with Node 20 (V8 8.7+) but is typed only in lib.es2024, and the workspace
// compiles against lib.es2023; declare the one signature used here instead of widening the lib.
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Longest delay a Node timer accepts; the keep-alive timer below re-arms at this period. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Parks until `array[index]` is notified or `timeoutMs` passes, provided it still equals `value`.
 * Resolves 'not-equal' at once if the slot already moved on. Never spins.
 *
 * A pending Atomics.waitAsync does not keep Node's event loop alive (a worker whose only work is
 * waiting for data would exit in the middle of the wait), so a referenced timer is held for as long
 * as the wait is parked.
 */
export async function waitForChange(
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
): Promise<'ok' | 'not-equal' | 'timed-out'> {
  const result = waitAsync(array, index, value, timeoutMs);
  if (!result.async) return result.value;
  // close() stores CLOSED_SLOT and then notifies; a notify that ran before this waiter was enqueued
  // is lost, and close() does not change `array[index]`, so the value check cannot catch it. Loading
  // CLOSED_SLOT after enqueueing closes the gap: either this load sees 1, or close()'s notify comes
  // after the enqueue and wakes the waiter. Notifying here wakes this waiter (and, harmlessly,
  // any other waiter on the slot, which re-checks its condition).
  if (Atomics.load(array, CLOSED_SLOT) !== 0) Atomics.notify(array, index);
  const keepAlive = setInterval(() => {}, MAX_TIMER_MS);
  try {
    return await result.value;
  } finally {
    clearInterval(keepAlive);
  }
}
