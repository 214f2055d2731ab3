/**
 * Issue 3, item 3 (short mode): storage faults at the call sites of a scripted workload.
 * The short mode fails one fixed-seed call of every operation every thread role makes, plus
 * the flush/commit retention cases and a few process-crash points; `pnpm test:faults` fails
 * every call, with EIO, ENOSPC and a process crash.
 */
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { PlanOp } from '@sluice/core';
import { runCrashPoint } from './lib/crash-point.js';
import { Rng } from './lib/rng.js';
import { SWEEP_TARGETS, addCase, emptySweep, runRetention, runScripted } from './lib/scripted.js';
import type { Role } from './lib/scripted.js';
import { removeTempDirs, tempDir } from './lib/table.js';

afterAll(removeTempDirs);

const fresh = async (label: string): Promise<string> => path.join(await tempDir(label), 'table');

describe('storage faults at every call site (short: one seeded call per site)', () => {
  let calls: Record<Role, Record<PlanOp, number>>;

  it('the scripted workload runs clean and counts its calls', async () => {
    const r = await runScripted(await fresh('count'));
    expect(r.violations).toEqual([]);
    expect(r.rejected).toEqual([]);
    calls = r.calls;
    expect(calls.shard.sync).toBeGreaterThan(0);
    expect(calls.flush.putIfAbsent).toBeGreaterThan(0);
    expect(calls.main.putIfAbsent).toBeGreaterThan(0);
  });

  it('a failing write, fsync, put-if-absent, read or list: typed errors, nothing lost, retry works', async () => {
    const rng = new Rng(303);
    const totals = emptySweep();
    let i = 0;
    for (const { role, op } of SWEEP_TARGETS) {
      const n = calls[role][op];
      if (n === 0) continue;
      const nth = rng.between(1, n);
      const errno = i++ % 2 === 0 ? 'EIO' : 'ENOSPC';
      const r = await runScripted(await fresh('fault'), { role, rule: { op, nth, action: errno } });
      addCase(totals, `${role}:${op}#${nth}:${errno}`, r);
    }
    expect(totals.violations).toEqual([]);
    expect(totals.faultsInjected).toBeGreaterThan(totals.cases / 2);
  }, 300_000);

  it.each([
    ['flush', 'EIO'],
    ['flush', 'ENOSPC'],
    ['commit', 'EIO'],
    ['commit', 'ENOSPC'],
  ] as const)(
    'a %s failing with %s keeps the frozen memtable readable, then the retry lands',
    async (target, errno) => {
      const r = await runRetention(await fresh('retain'), target, errno);
      expect(r.violations).toEqual([]);
      expect(r.frozenWhileFailing).toBeGreaterThan(0);
    },
  );

  it.each([
    ['flush', { op: 'putIfAbsent', path: '/gen/', nth: 2, when: 'after' }],
    ['main', { op: 'putIfAbsent', path: '/manifest/', nth: 4, when: 'before' }],
    ['shard', { op: 'sync', nth: 9, when: 'after' }],
  ] as const)(
    'a process crash at a %s call %j loses nothing acknowledged',
    async (role, rule) => {
      const r = await runCrashPoint(role, rule, 404);
      expect(r.violations).toEqual([]);
      expect(r.reached).toBe(true);
    },
    120_000,
  );
});
