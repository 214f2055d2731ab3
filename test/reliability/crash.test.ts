/**
 * Issue 3, items 1 and 2 (short mode, fixed seeds): the kill -9 crash loop and simulated power
 * loss. `pnpm test:crash --cycles N` runs the same loop for long.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runCrashLoop } from './lib/crash-loop.js';
import { removeTempDirs } from './lib/table.js';

afterAll(removeTempDirs);

describe('crash loop (short, fixed seeds)', () => {
  it('kill -9 at random moments and crash points loses no acknowledged write', async () => {
    const t = await runCrashLoop({ cycles: 10, seed: 101, powerLossRatio: 0 });
    expect(t.violations).toEqual([]);
    expect(t.childErrors).toEqual([]);
    expect(t.cycles).toBe(10);
    expect(t.ackedOpsChecked).toBeGreaterThan(0);
  }, 240_000);

  it('simulated power loss after kills leaves a prefix of the acknowledged history', async () => {
    const t = await runCrashLoop({ cycles: 8, seed: 202, powerLossRatio: 1 });
    expect(t.violations).toEqual([]);
    expect(t.childErrors).toEqual([]);
    expect(t.cycles).toBe(8);
    expect(t.powerLossCycles).toBe(8);
  }, 240_000);
});
