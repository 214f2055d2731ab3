/** `pnpm test:model --runs N [--seed S]`: model-based runs (default 10 000). */
import { afterAll, expect, it } from 'vitest';
import { runModel } from '../lib/model.js';
import { defaultSeed, longArgs, writeResult } from '../lib/report.js';
import { removeTempDirs } from '../lib/table.js';

afterAll(removeTempDirs);

it('model-based runs', async () => {
  const args = longArgs();
  const runs = args.runs ?? 10_000;
  const seed = args.seed ?? defaultSeed();
  const t = await runModel({ numRuns: runs, seed, maxCommands: 20, log: (l) => console.log(l) });
  const commands = Object.values(t.commands).reduce((a, b) => a + b, 0);
  await writeResult({
    mode: 'model',
    command: `pnpm test:model --runs ${runs} --seed ${seed}`,
    finishedAt: new Date().toISOString(),
    seconds: t.seconds,
    seed,
    figures: {
      'model runs': t.runs,
      commands,
      failures: t.failed ? 1 : 0,
      'commands by kind': JSON.stringify(t.commands),
      'concurrent readers': 'async readers on the main thread and a reader thread (attach())',
    },
    ackedLost: 0,
    violations: t.failed ? [`${t.error}; counterexample: ${t.counterexample}`] : [],
    details: t,
  });
  expect(t.failed ? `${t.error}\n${t.counterexample}` : 'ok').toBe('ok');
});
