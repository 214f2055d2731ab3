/** `pnpm test:crash --cycles N [--seed S]`: the kill -9 / power-loss loop, for long. */
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { runCrashLoop } from '../lib/crash-loop.js';
import { defaultSeed, longArgs, writeResult } from '../lib/report.js';
import { removeTempDirs } from '../lib/table.js';

afterAll(removeTempDirs);

it('crash loop', async () => {
  const args = longArgs();
  const cycles = args.cycles ?? 200;
  const seed = args.seed ?? defaultSeed();
  const t = await runCrashLoop({
    cycles,
    seed,
    powerLossRatio: 0.5,
    stopOnViolation: false,
    // A violating cycle leaves its table and power-loss journal here for a post-mortem.
    evidenceDir: path.join(os.tmpdir(), 'sluice-crash-evidence'),
    log: (l) => console.log(l),
  });
  await writeResult({
    mode: 'crash',
    command: `pnpm test:crash --cycles ${cycles} --seed ${seed}`,
    finishedAt: new Date().toISOString(),
    seconds: t.seconds,
    seed,
    figures: {
      cycles: t.cycles,
      'acked ops checked': t.ackedOpsChecked,
      'lost (keys)': t.lost,
      'kill -9 cycles': t.cycles - t.powerLossCycles,
      'power-loss cycles': t.powerLossCycles,
      'child runs': t.childRuns,
      'killed by timer': t.killedByTimer,
      'killed at a crash point': t.killedAtCrashPoint,
      'crash points hit (distinct sites)': Object.keys(t.crashPoints).length,
      'transient I/O faults before the kill': t.transientFaults,
      'child opens/closes failed with a typed error (injected fault)': t.typedOpenOrCloseFailures,
      'ops issued': t.opsIssued,
      'ops rejected (typed)': t.rejectedOps,
      'ops in flight at the kill': t.inFlightAtKill,
      'in-flight effects landed / dropped': `${t.uncertainLanded} / ${t.uncertainDropped}`,
      phantoms: t.phantoms,
      'holes (non-prefix logs)': t.holes,
      'garbage rows': t.garbage,
      'scan/getMany mismatches': t.readMismatches,
      'reopen ms (mean / max)': `${(t.reopenMsTotal / Math.max(1, t.reopens)).toFixed(0)} / ${t.reopenMsMax.toFixed(0)}`,
      'reopen warnings (log cuts)': t.reopenWarnings,
      'power loss: files cut / bytes dropped / torn tails': `${t.power.filesCut} / ${t.power.bytesDropped} / ${t.power.tornTails}`,
      'power loss: names dropped / restored': `${t.power.namesDropped} / ${t.power.namesRestored}`,
      'child crashes or hangs outside a crash point': t.childErrors.length,
    },
    ackedLost: t.lost,
    violations: [...t.violations, ...t.childErrors.map((e) => `child: ${e}`)],
    details: t,
  });
  expect(t.violations).toEqual([]);
  expect(t.childErrors).toEqual([]);
});
