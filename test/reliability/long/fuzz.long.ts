/** `pnpm test:fuzz --cases N [--seed S]`: corruption fuzzing, component cases plus every 100th end to end. */
import { afterAll, expect, it } from 'vitest';
import { addFuzz, buildBase, emptyFuzz, randomCase, runComponentCase, runEndToEndCase } from '../lib/fuzz.js';
import { defaultSeed, longArgs, writeResult } from '../lib/report.js';
import { Rng } from '../lib/rng.js';
import { removeTempDirs } from '../lib/table.js';

afterAll(removeTempDirs);

it('corruption fuzzing', async () => {
  const args = longArgs();
  const cases = args.cases ?? 5000;
  const seed = args.seed ?? defaultSeed();
  const started = performance.now();
  const base = await buildBase();
  const rng = new Rng(seed);
  const t = emptyFuzz();
  for (let i = 0; i < cases; i++) {
    const e2e = i % 100 === 99;
    const c = randomCase(rng, base);
    addFuzz(t, c, e2e ? await runEndToEndCase(base, c) : await runComponentCase(base, c), e2e, seed, i);
    if ((i + 1) % 1000 === 0) console.log(`fuzz: ${i + 1}/${cases} cases, ${t.violations.length} violations`);
  }
  const seconds = (performance.now() - started) / 1000;
  await writeResult({
    mode: 'fuzz',
    command: `pnpm test:fuzz --cases ${cases} --seed ${seed}`,
    finishedAt: new Date().toISOString(),
    seconds,
    seed,
    figures: {
      'corruptions tried': t.cases,
      'end-to-end opens': t.endToEnd,
      violations: t.violations.length,
      'by file kind': JSON.stringify(t.byKind),
      'by outcome': JSON.stringify(t.byVerdict),
      'typed errors': JSON.stringify(t.codes),
    },
    ackedLost: 0,
    violations: t.violations,
    details: t,
  });
  expect(t.violations.slice(0, 20)).toEqual([]);
});
