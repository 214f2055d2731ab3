/**
 * `pnpm test:faults [--cycles N] [--seed S]`: the full storage-fault sweep. Every call of
 * every operation every thread role makes in the scripted workload fails in turn: with EIO,
 * with ENOSPC, with EIO reported after the call landed, and as a process crash (SIGKILL at
 * that call, in a child process, before and after it). Plus the flush/commit retention cases.
 * `--cycles N` caps the number of cases (default: all of them).
 */
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import type { FaultRule } from '@sluice/core';
import { runCrashPoint } from '../lib/crash-point.js';
import { defaultSeed, longArgs, writeResult } from '../lib/report.js';
import { SWEEP_TARGETS, addCase, emptySweep, runRetention, runScripted } from '../lib/scripted.js';
import type { Role } from '../lib/scripted.js';
import { removeTempDirs, tempDir } from '../lib/table.js';

afterAll(removeTempDirs);

const CRASH_TARGETS: { role: Role; op: FaultRule['op']; path?: string }[] = [
  { role: 'shard', op: 'write' },
  { role: 'shard', op: 'sync' },
  { role: 'shard', op: 'openAppend' },
  { role: 'shard', op: 'exists' },
  { role: 'shard', op: 'delete' },
  { role: 'shard', op: 'list' },
  { role: 'flush', op: 'write', path: '/gen/' },
  { role: 'flush', op: 'putIfAbsent', path: '/gen/' },
  { role: 'main', op: 'putIfAbsent', path: 'sluice.json' },
  { role: 'main', op: 'putIfAbsent', path: '/owner/' },
  { role: 'main', op: 'putIfAbsent', path: '/manifest/' },
  { role: 'main', op: 'get' },
  { role: 'main', op: 'list' },
];

it('storage fault sweep', async () => {
  const args = longArgs();
  const cap = args.cycles ?? Infinity;
  const seed = args.seed ?? defaultSeed();
  const started = performance.now();
  const fresh = async (): Promise<string> => path.join(await tempDir('sweep'), 'table');
  const t = emptySweep();
  const crash = { cases: 0, reached: 0, ackedOps: 0, violations: [] as string[] };
  let retention = 0;
  const budget = (): boolean => t.cases + crash.cases + retention < cap;

  const count = await runScripted(await fresh());
  expect(count.violations).toEqual([]);

  /** One call site under one kind of fault: its next case, or undefined when it is exhausted. */
  type Site = { name: string; next: () => Promise<boolean> };
  const sites: Site[] = [];
  for (const { role, op } of SWEEP_TARGETS) {
    const calls = count.calls[role][op];
    if (calls === 0) continue;
    const variants: { action: string; when: 'before' | 'after' }[] = [
      { action: 'EIO', when: 'before' },
      { action: 'ENOSPC', when: 'before' },
      ...(op === 'write' || op === 'sync' || op === 'putIfAbsent'
        ? [{ action: 'EIO', when: 'after' as const }]
        : []),
    ];
    for (const v of variants) {
      let nth = 0;
      const name = `${role}:${op}:${v.action}${v.when === 'after' ? '(after)' : ''}`;
      sites.push({
        name,
        next: async () => {
          nth++;
          const r = await runScripted(await fresh(), {
            role,
            rule: { op, nth, action: v.action, when: v.when },
          });
          addCase(t, `${name}#${nth}`, r);
          console.log(
            `faults: ${name}#${nth} hits ${r.hits}, rejected ${r.rejected.length}, violations ${r.violations.length}`,
          );
          // Call counts vary a little between runs (group commit): go on until a fault no longer hits.
          return nth <= calls + 1 && !(r.hits === 0 && nth > calls);
        },
      });
    }
  }
  for (const target of CRASH_TARGETS) {
    for (const when of ['before', 'after'] as const) {
      let nth = 0;
      const name = `crash ${target.role}:${target.op}${target.path ?? ''}:${when}`;
      sites.push({
        name,
        next: async () => {
          nth++;
          const rule: FaultRule = {
            op: target.op,
            nth,
            when,
            action: 'CRASH',
            ...(target.path ? { path: target.path } : {}),
          };
          const r = await runCrashPoint(target.role, rule, seed);
          crash.cases++;
          if (r.reached) crash.reached++;
          crash.ackedOps += r.ackedOps;
          for (const v of r.violations) crash.violations.push(`${name}#${nth}: ${v}`);
          console.log(
            `faults: ${name}#${nth} reached ${r.reached}, acked ${r.ackedOps}, violations ${r.violations.length}`,
          );
          return r.reached && nth < 60;
        },
      });
    }
  }
  for (const target of ['flush', 'commit'] as const) {
    for (const errno of ['EIO', 'ENOSPC']) {
      sites.push({
        name: `retention ${target} ${errno}`,
        next: async () => {
          retention++;
          const r = await runRetention(await fresh(), target, errno);
          for (const v of r.violations) t.violations.push(`retention ${target} ${errno}: ${v}`);
          return false;
        },
      });
    }
  }
  // Round robin over the sites, so that a capped run still covers every one of them.
  let active = sites;
  while (active.length > 0 && budget()) {
    const still: Site[] = [];
    for (const site of active) {
      if (!budget()) break;
      if (await site.next()) still.push(site);
    }
    active = still;
  }
  const lost = [...t.violations, ...crash.violations].filter((v) => / lost /.test(v)).length;
  await writeResult({
    mode: 'faults',
    command: `pnpm test:faults${cap === Infinity ? '' : ` --cycles ${cap}`} --seed ${seed}`,
    finishedAt: new Date().toISOString(),
    seconds: (performance.now() - started) / 1000,
    seed,
    figures: {
      'faults injected': t.faultsInjected + crash.reached,
      'error cases (EIO / ENOSPC / EIO after the call)': t.cases,
      'crash-point cases (SIGKILL at the n-th call)': `${crash.cases} (${crash.reached} reached)`,
      'retention cases (failing flush / commit)': retention,
      'calls rejected, all typed': t.rejectedCalls,
      'rejection codes': JSON.stringify(t.codes),
      'acked ops checked after crash points': crash.ackedOps,
      'sites covered': Object.keys(t.perSite).length,
      'calls per role (scripted workload)': JSON.stringify(
        Object.fromEntries(
          Object.entries(count.calls).map(([role, ops]) => [
            role,
            Object.fromEntries(Object.entries(ops).filter(([, n]) => n > 0)),
          ]),
        ),
      ),
    },
    ackedLost: lost,
    violations: [...t.violations, ...crash.violations],
    details: { sweep: t, crash },
  });
  expect([...t.violations, ...crash.violations]).toEqual([]);
});
