/**
 * Issue 3, item 5 (short mode): model-based randomized testing, a fixed-seed subset.
 * `pnpm test:model --runs N` (default 10 000) runs the same property for long.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runModel } from './lib/model.js';
import { removeTempDirs } from './lib/table.js';

afterAll(removeTempDirs);

describe('model-based testing (short, fixed seed)', () => {
  it('random put/delete/get/scan/freeze/flush/failed flush/crash/reopen/concurrent readers match a Map', async () => {
    const t = await runModel({ numRuns: 30, seed: 5005, maxCommands: 15 });
    expect(t.failed ? `${t.error}\ncounterexample: ${t.counterexample}` : 'ok').toBe('ok');
    expect(t.runs).toBeGreaterThanOrEqual(30);
  }, 300_000);
});
