/**
 * Issue 3, item 3, the "process crash" fault: the ingest child kills itself (SIGKILL) at the
 * n-th call of one storage operation in one thread role; this process then reopens the table
 * and checks it against the oracle.
 */
import path from 'node:path';
import type { FaultRule } from '@sluice/core';
import { open } from 'sluice';
import { IngestChild, applyJournal } from './child.js';
import { Oracle } from './oracle.js';
import type { Role } from './scripted.js';
import { TINY, observe, outcome, shardOfKey, sleep, tempDir } from './table.js';

export interface CrashPointResult {
  /** The child died at the crash point (false: its workload ended before reaching it). */
  readonly reached: boolean;
  readonly ackedOps: number;
  readonly inFlight: number;
  readonly violations: string[];
}

export async function runCrashPoint(role: Role, rule: FaultRule, seed: number): Promise<CrashPointResult> {
  const work = await tempDir('crashpoint');
  const dir = path.join(work, 'table');
  const ackJournal = path.join(work, 'ack.log');
  const oracle = new Oracle((k) => shardOfKey(k, TINY.shards!));
  const violations: string[] = [];
  const child = new IngestChild({
    dir,
    ackJournal,
    seed,
    opBase: 0,
    producers: 2,
    keys: 120,
    maxRows: 8,
    maxOps: 60,
    flushEveryMs: 15,
    options: { ...TINY },
    roles: { [role]: { rules: [{ ...rule, action: 'CRASH' }] } },
  });
  const exit = await Promise.race([child.exited, sleep(90_000).then(() => undefined)]);
  if (exit === undefined) {
    violations.push(`child hung (no exit in 90 s); stderr: ${child.stderr.slice(-1000)}`);
    await child.kill9();
  }
  const reached = exit?.signal === 'SIGKILL';
  const j = applyJournal(ackJournal, oracle);
  if (exit && !reached && exit.code !== 0) {
    violations.push(`child exited ${exit.code}: ${j.errors.join('; ')} ${child.stderr.slice(-1000)}`);
  }
  for (const e of j.errors) if (!/ SLUICE_[A-Z_]+ /.test(e)) violations.push(`child: ${e}`);
  const db = await outcome(open(dir, { onWarning: () => undefined }), 60_000, 'reopen');
  if (!db.ok) {
    // A crash before the table existed leaves nothing to open, which is fine.
    if (!(db.code === 'SLUICE_NOT_FOUND' && j.openMs === undefined)) {
      violations.push(`reopen: ${db.code}: ${db.message}`);
    }
    return { reached, ackedOps: j.acked, inFlight: j.pending, violations };
  }
  try {
    const seen = await observe(db.value, oracle.keys());
    const res = oracle.check(seen.rows);
    for (const v of res.violations) violations.push(`${v.kind} key ${v.key}: ${v.detail}`);
    for (const g of [...seen.garbage, ...seen.readMismatches]) violations.push(g);
  } finally {
    await db.value.close();
  }
  return { reached, ackedOps: j.acked, inFlight: j.pending, violations };
}
