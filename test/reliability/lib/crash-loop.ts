/**
 * Issue 3, items 1 and 2: the kill -9 crash loop and the simulated power loss.
 *
 * Each cycle runs the ingest child (4 producers, puts and deletes, durability 'sync', 16 KiB
 * memtables so freezes, flushes and commits never stop) and kills it: with SIGKILL from here
 * after a random delay, or from inside at a random storage call (a crash point: the n-th WAL
 * write or fsync, generation file write, manifest commit, owner marker...), sometimes after a
 * transient I/O error has already made a shard restart. In power-loss cycles, every thread of
 * the child journals what the Storage contract made durable (PowerLossStorage), one to three
 * children run one after the other on the table (each recovering from the previous kill), and
 * then the directory is rewound to what a power cut would have left (simulatePowerLoss: unsynced
 * bytes cut or torn, undurable names dropped, undurable deletes undone).
 *
 * Then this process reopens the table and checks it against the oracle: every acknowledged
 * write present with its latest value, every acknowledged delete absent, in-flight keys old or
 * new, no phantom and no garbage row, no hole in any shard's log, scan and getMany agreeing.
 */
import { cp, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { simulatePowerLoss } from '@sluice/core';
import type { FaultRule } from '@sluice/core';
import { open } from 'sluice';
import { IngestChild, applyJournal } from './child.js';
import type { RoleConfig } from './child.js';
import { Oracle } from './oracle.js';
import { Rng } from './rng.js';
import type { Role } from './scripted.js';
import { TINY, observe, shardOfKey, sleep, tempDir, within } from './table.js';

export interface CrashLoopOptions {
  readonly cycles: number;
  readonly seed: number;
  /** Share of cycles that simulate a power cut on top of the kill. Default 0.5. */
  readonly powerLossRatio?: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Share of child runs in which a WAL fsync fails first (the shard restarts). Default 0.2. */
  readonly transientRatio?: number;
  /** Stop at the first cycle with a violation (default true). */
  readonly stopOnViolation?: boolean;
  /**
   * Directory where a cycle with a violation leaves its evidence: the table and the power-loss
   * journal as the killed children left them (before the simulated power cut), and the table
   * as reopened. Default: none kept.
   */
  readonly evidenceDir?: string;
}

export interface CrashLoopTotals {
  cycles: number;
  powerLossCycles: number;
  childRuns: number;
  killedByTimer: number;
  killedAtCrashPoint: number;
  crashPoints: Record<string, number>;
  diedBeforeReady: number;
  exitedCleanly: number;
  transientFaults: number;
  /** Child open or close failing with a typed error (an injected fault hit it). */
  typedOpenOrCloseFailures: number;
  opsIssued: number;
  ackedOpsChecked: number;
  rejectedOps: number;
  inFlightAtKill: number;
  uncertainLanded: number;
  uncertainDropped: number;
  lost: number;
  phantoms: number;
  holes: number;
  garbage: number;
  readMismatches: number;
  reopens: number;
  reopenMsTotal: number;
  reopenMsMax: number;
  reopenWarnings: number;
  power: {
    filesCut: number;
    bytesDropped: number;
    tornTails: number;
    namesDropped: number;
    namesRestored: number;
  };
  rejectionCodes: Record<string, number>;
  childErrors: string[];
  violations: string[];
  seconds: number;
}

export function emptyTotals(): CrashLoopTotals {
  return {
    cycles: 0,
    powerLossCycles: 0,
    childRuns: 0,
    killedByTimer: 0,
    killedAtCrashPoint: 0,
    crashPoints: {},
    diedBeforeReady: 0,
    exitedCleanly: 0,
    transientFaults: 0,
    typedOpenOrCloseFailures: 0,
    opsIssued: 0,
    ackedOpsChecked: 0,
    rejectedOps: 0,
    inFlightAtKill: 0,
    uncertainLanded: 0,
    uncertainDropped: 0,
    lost: 0,
    phantoms: 0,
    holes: 0,
    garbage: 0,
    readMismatches: 0,
    reopens: 0,
    reopenMsTotal: 0,
    reopenMsMax: 0,
    reopenWarnings: 0,
    power: { filesCut: 0, bytesDropped: 0, tornTails: 0, namesDropped: 0, namesRestored: 0 },
    rejectionCodes: {},
    childErrors: [],
    violations: [],
    seconds: 0,
  };
}

/** Where a child can be made to kill itself: (role, rule) pairs covering every write path. */
export function randomCrashPoint(rng: Rng): { role: Role; rule: FaultRule; name: string } {
  const when = rng.chance(0.5) ? 'before' : 'after';
  const menu: { role: Role; op: FaultRule['op']; path?: string; max: number }[] = [
    { role: 'shard', op: 'write', max: 60 },
    { role: 'shard', op: 'sync', max: 60 },
    { role: 'shard', op: 'exists', max: 60 },
    { role: 'shard', op: 'openAppend', max: 2 },
    { role: 'shard', op: 'delete', max: 4 },
    { role: 'shard', op: 'getRange', max: 3 },
    { role: 'flush', op: 'write', path: '/gen/', max: 20 },
    { role: 'flush', op: 'putIfAbsent', path: '/gen/', max: 8 },
    { role: 'main', op: 'putIfAbsent', path: '/manifest/', max: 14 },
    { role: 'main', op: 'putIfAbsent', path: '/owner/', max: 2 },
    { role: 'main', op: 'list', max: 6 },
    { role: 'main', op: 'get', max: 8 },
  ];
  const m = rng.pick(menu);
  const nth = rng.between(1, m.max);
  const rule: FaultRule = { op: m.op, nth, action: 'CRASH', when, ...(m.path ? { path: m.path } : {}) };
  return { role: m.role, rule, name: `${m.role}:${m.op}${m.path ? `(${m.path})` : ''}:${when}` };
}

/** Runs the loop on a fresh table; resolves with the totals (violations included, not thrown). */
export async function runCrashLoop(opts: CrashLoopOptions): Promise<CrashLoopTotals> {
  const started = performance.now();
  const rng = new Rng(opts.seed);
  const log = opts.log ?? (() => undefined);
  const powerLossRatio = opts.powerLossRatio ?? 0.5;
  const stopOnViolation = opts.stopOnViolation ?? true;
  const work = await tempDir('crash');
  const dir = path.join(work, 'table');
  const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
  const totals = emptyTotals();
  let opBase = 0;

  for (let cycle = 0; cycle < opts.cycles; cycle++) {
    const power = rng.chance(powerLossRatio);
    const plJournal = path.join(work, `power-${cycle}.journal`);
    const runs = power ? rng.between(1, 3) : 1;
    /** What each child run of this cycle did, for the violation report. */
    const story: string[] = [];
    for (let run = 0; run < runs; run++) {
      const ackJournal = path.join(work, `ack-${cycle}-${run}.log`);
      const roles: Partial<Record<Role, { rules: FaultRule[]; powerLoss?: { journal: string } }>> = {};
      const role = (r: Role): { rules: FaultRule[]; powerLoss?: { journal: string } } =>
        (roles[r] ??= { rules: [], ...(power ? { powerLoss: { journal: plJournal } } : {}) });
      if (power) for (const r of ['shard', 'flush', 'main'] as const) role(r);
      const crashPoint = rng.chance(0.6) ? randomCrashPoint(rng) : undefined;
      if (crashPoint) role(crashPoint.role).rules.push(crashPoint.rule);
      let transient: number | undefined;
      if (rng.chance(opts.transientRatio ?? 0.2)) {
        // A WAL fsync fails first: the shard restarts from its WAL inside the child, before the kill.
        transient = rng.between(2, 30);
        role('shard').rules.push({ op: 'sync', nth: transient, action: 'EIO' });
        totals.transientFaults++;
      }
      const child = new IngestChild({
        dir,
        ackJournal,
        seed: rng.seed(),
        opBase,
        producers: 4,
        keys: 400,
        maxOps: 1_000_000,
        flushEveryMs: rng.pick([0, 50, 200]),
        // Tuning options are not stored with the table: every child opens with tiny memtables.
        options: { ...TINY },
        roles: roles as Record<string, RoleConfig>,
      });
      opBase += 1_000_000;
      totals.childRuns++;
      const ready = await Promise.race([child.ready, sleep(60_000).then(() => 'hang' as const)]);
      if (ready === 'hang') {
        totals.childErrors.push(`cycle ${cycle}: open did not complete in 60 s (hang); killed`);
        await child.kill9();
      } else if (!ready) totals.diedBeforeReady++;
      if (crashPoint === undefined) {
        await sleep(rng.between(30, 700));
        if (!child.hasExited) totals.killedByTimer++;
        await child.kill9();
      } else {
        const fallback = rng.between(300, 2500);
        const exit = await Promise.race([child.exited, sleep(fallback).then(() => undefined)]);
        if (exit?.signal === 'SIGKILL') {
          totals.killedAtCrashPoint++;
          totals.crashPoints[crashPoint.name] = (totals.crashPoints[crashPoint.name] ?? 0) + 1;
        } else if (exit === undefined) {
          totals.killedByTimer++;
          await child.kill9();
        }
      }
      const exit = await child.exited;
      if (exit.code === 0) totals.exitedCleanly++;
      const j = applyJournal(ackJournal, oracle);
      story.push(
        `run ${run} (writer ${opBase / 1_000_000 - 1}): ${crashPoint ? `crash point ${crashPoint.name}#${crashPoint.rule.nth}` : 'timer kill'}` +
          `${transient ? `, EIO at shard fsync #${transient}` : ''}, exit ${exit.code ?? exit.signal}, ` +
          `acked ${j.acked}, rejected ${JSON.stringify(j.codes)}, in flight ${j.pending}, flushes ok ${j.flushOk}`,
      );
      totals.opsIssued += j.intents;
      totals.rejectedOps += j.failed;
      totals.inFlightAtKill += j.pending;
      for (const [code, n] of Object.entries(j.codes)) {
        totals.rejectionCodes[code] = (totals.rejectionCodes[code] ?? 0) + n;
      }
      // An injected I/O error may make the child's open (replay, fence) fail: with a typed
      // error that is the contract; anything untyped is not.
      for (const e of j.errors) {
        if (/^E \w+ SLUICE_[A-Z_]+ /.test(e)) totals.typedOpenOrCloseFailures++;
        else totals.childErrors.push(`cycle ${cycle}: ${e}`);
      }
      for (const v of j.snapshotViolations) totals.violations.push(`cycle ${cycle} run ${run}: ${v}`);
      if (exit.code !== null && exit.code !== 0 && exit.code !== 3) {
        totals.childErrors.push(`cycle ${cycle}: child exited ${exit.code}: ${child.stderr.slice(-2000)}`);
      }
      await rm(ackJournal, { force: true });
    }
    const evidence = opts.evidenceDir
      ? path.join(opts.evidenceDir, `seed-${opts.seed}-cycle-${cycle}`)
      : undefined;
    if (evidence) {
      await rm(evidence, { recursive: true, force: true });
      await mkdir(evidence, { recursive: true });
      await cp(dir, path.join(evidence, 'before-power-cut'), { recursive: true });
      if (power) await cp(plJournal, path.join(evidence, 'power.journal')).catch(() => undefined);
    }
    if (power) {
      totals.powerLossCycles++;
      const r = simulatePowerLoss(dir, plJournal, { random: rng.fn() });
      totals.power.filesCut += r.filesCut;
      totals.power.bytesDropped += r.bytesDropped;
      totals.power.tornTails += r.tornTails;
      totals.power.namesDropped += r.namesDropped;
      totals.power.namesRestored += r.namesRestored + r.truncationsUndone;
      await rm(plJournal, { force: true });
      await rm(`${plJournal}.d`, { recursive: true, force: true });
    }

    const warnings: string[] = [];
    const t0 = performance.now();
    let db;
    try {
      db = await within(open(dir, { onWarning: (m) => warnings.push(m) }), 60_000, 'reopen');
    } catch (err) {
      const e = err as { code?: string; message?: string };
      totals.violations.push(`cycle ${cycle}: reopen failed: ${e.code ?? 'UNTYPED'}: ${e.message}`);
      totals.cycles++;
      break;
    }
    const ms = performance.now() - t0;
    totals.reopens++;
    totals.reopenMsTotal += ms;
    totals.reopenMsMax = Math.max(totals.reopenMsMax, ms);
    totals.reopenWarnings += warnings.length;
    const seen = await observe(db, oracle.keys());
    await db.close();
    const res = oracle.check(seen.rows);
    totals.cycles++;
    totals.ackedOpsChecked += res.ackedOps;
    totals.lost += res.lost;
    totals.phantoms += res.phantoms;
    totals.holes += res.holes;
    totals.uncertainLanded += res.uncertainLanded;
    totals.uncertainDropped += res.uncertainDropped;
    totals.garbage += seen.garbage.length;
    totals.readMismatches += seen.readMismatches.length;
    const bad = [
      ...res.violations.map((v) => `${v.kind} key ${v.key}: ${v.detail}`),
      ...seen.garbage.map((g) => `garbage: ${g}`),
      ...seen.readMismatches.map((g) => `read mismatch: ${g}`),
    ];
    log(
      `cycle ${cycle + 1}/${opts.cycles} ${power ? 'power-loss' : 'kill-9'}: acked ${res.ackedOps}, ` +
        `in flight landed ${res.uncertainLanded}/dropped ${res.uncertainDropped}, reopen ${ms.toFixed(0)} ms` +
        (bad.length ? `, ${bad.length} VIOLATIONS` : ''),
    );
    if (evidence && bad.length === 0) await rm(evidence, { recursive: true, force: true });
    else if (evidence) await cp(dir, path.join(evidence, 'after'), { recursive: true });
    if (bad.length > 0) {
      totals.violations.push(
        `cycle ${cycle} (${power ? 'power-loss' : 'kill-9'}, seed ${opts.seed}): ${bad.slice(0, 10).join('; ')}` +
          ` [${story.join('; ')}]` +
          (warnings.length ? ` [reopen warnings: ${warnings.slice(0, 3).join(' | ')}]` : '') +
          (evidence ? ` [evidence: ${evidence}]` : ''),
      );
      if (stopOnViolation) break;
    }
    oracle.settle(seen.rows);
  }
  totals.seconds = (performance.now() - started) / 1000;
  return totals;
}
