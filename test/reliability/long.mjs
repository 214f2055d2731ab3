/**
 * Long modes of the reliability harness:
 *   node test/reliability/long.mjs crash  [--cycles N] [--seed S]   (pnpm test:crash)
 *   node test/reliability/long.mjs faults [--cycles N] [--seed S]   (pnpm test:faults)
 *   node test/reliability/long.mjs fuzz   [--cases N]  [--seed S]   (pnpm test:fuzz)
 *   node test/reliability/long.mjs model  [--runs N]   [--seed S]   (pnpm test:model)
 * Runs test/reliability/long/<mode>.long.ts under vitest (vitest.long.config.ts), which
 * writes test/reliability/results/<mode>.json and regenerates test/RELIABILITY.md; then
 * prints the figures. Exits non-zero when the run found a violation.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const [mode, ...rest] = process.argv.slice(2);
const MODES = ['crash', 'faults', 'fuzz', 'model'];
if (!MODES.includes(mode)) {
  process.stderr.write(
    `usage: node test/reliability/long.mjs <${MODES.join('|')}> [--cycles N] [--runs N] [--cases N] [--seed S]\n`,
  );
  process.exit(2);
}
const args = {};
for (let i = 0; i < rest.length; i++) {
  const m = /^--(cycles|runs|cases|seed)(?:=(.*))?$/.exec(rest[i]);
  if (!m) {
    process.stderr.write(`unknown argument ${rest[i]}\n`);
    process.exit(2);
  }
  const value = Number(m[2] ?? rest[++i]);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`--${m[1]} needs a positive integer\n`);
    process.exit(2);
  }
  args[m[1]] = value;
}
const vitest = path.join(root, 'node_modules', '.bin', 'vitest');
const file = path.join('test', 'reliability', 'long', `${mode}.long.ts`);
const started = Date.now();
const run = spawnSync(
  vitest,
  ['run', '--config', path.join('test', 'reliability', 'vitest.long.config.ts'), file],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, SLUICE_LONG: JSON.stringify(args) },
  },
);
const results = path.join(here, 'results', `${mode}.json`);
if (existsSync(results) && statSync(results).mtimeMs >= started) {
  const r = JSON.parse(readFileSync(results, 'utf8'));
  process.stdout.write(`\n${mode}: ${r.command} (${r.seconds.toFixed(0)} s)\n`);
  for (const [k, v] of Object.entries(r.figures)) process.stdout.write(`  ${k}: ${v}\n`);
  process.stdout.write(`  acked writes lost: ${r.ackedLost}\n  violations: ${r.violations.length}\n`);
  for (const v of r.violations.slice(0, 10)) process.stdout.write(`    - ${v.slice(0, 300)}\n`);
  process.stdout.write('  figures written to test/RELIABILITY.md\n');
}
process.exit(run.status ?? 1);
