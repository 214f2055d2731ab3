/**
 * Recovery with tiny memtables: a reopen whose WAL tail (everything after the manifest's
 * replay cursor) holds more rows than one memtable of the reopening table. This is what a
 * crash leaves whenever flushes were behind (frozen memtables not yet committed), and what the
 * crash loop's children meet at every cycle. The reopen runs in a process of its own so that a
 * crash or a hang is reported here instead of taking the test runner down.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FaultControl } from '@sluice/core';
import { harnessRow, openHarness, removeTempDirs, tempDir } from './lib/table.js';

afterAll(removeTempDirs);

const REOPEN = fileURLToPath(new URL('./fixtures/reopen-child.mjs', import.meta.url));

interface Reopened {
  readonly status: number | null;
  readonly signal: string | null;
  readonly line: Record<string, unknown> | undefined;
  readonly stderr: string;
}

function reopenInChild(dir: string, options: Record<string, unknown>, timeoutMs: number): Promise<Reopened> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [REOPEN, dir, JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (status, signal) => {
      clearTimeout(timer);
      const first = out.split('\n')[0];
      resolve({
        status,
        signal,
        line: first ? (JSON.parse(first) as Record<string, unknown>) : undefined,
        stderr: err.slice(-2000),
      });
    });
  });
}

/** A one-shard table whose flushes all fail, so its whole history stays in the WAL tail. */
async function tableWithLongTail(rows: number): Promise<string> {
  const dir = path.join(await tempDir('tail'), 'table');
  const plan = FaultControl.create([
    { op: 'putIfAbsent', path: '/gen/', times: Infinity, action: 'EIO' },
  ]).plan;
  const db = await openHarness(dir, { shards: 1, faults: { flush: { plan } } });
  for (let n = 0; n < rows; n += 20)
    await db.put(Array.from({ length: 20 }, (_, j) => harnessRow(n + j, n + j)));
  expect(db.stats().shards[0]!.generations).toBe(0);
  await db.close();
  return dir;
}

describe('reopen over a long WAL tail with tiny memtables', () => {
  /**
   * Regression. Before the fix, replay freezes memtables; the shard publishes them (posting
   * 'frozen') before 'ready', and ShardLifecycle.onFrozen → #schedule → ctx.visibleSeq() reads
   * the broker's sequencer, which Broker.start only creates once every shard is ready:
   * "TypeError: Cannot read properties of undefined (reading 'visible')", thrown from a worker
   * message handler, i.e. an uncaught exception that kills the process.
   */
  it('regression: a tail of about two memtables reopens (no uncaught TypeError in onFrozen)', async () => {
    const dir = await tableWithLongTail(440);
    const r = await reopenInChild(dir, { memtableBytes: 16 << 10 }, 60_000);
    expect(r.line, `exit ${r.status ?? r.signal}; stderr: ${r.stderr}`).toMatchObject({
      ok: true,
      rows: 440,
    });
  }, 120_000);

  /**
   * Regression. Before the fix, replay rotates through the two spare memtables it was started with;
   * the next rotation waits for a spare, which the broker only sends when it hears 'frozen',
   * which the shard only posts after replay: open never resolves.
   */
  it('regression: a tail of many memtables reopens (no spare-memtable deadlock during replay)', async () => {
    const dir = await tableWithLongTail(2000);
    const r = await reopenInChild(dir, { memtableBytes: 16 << 10 }, 25_000);
    expect(r.line, `exit ${r.status ?? r.signal}; stderr: ${r.stderr}`).toMatchObject({
      ok: true,
      rows: 2000,
    });
  }, 120_000);

  it('the same tails reopen with memtables large enough to hold them', async () => {
    const dir = await tableWithLongTail(2000);
    const r = await reopenInChild(dir, {}, 60_000);
    expect(r.line, `exit ${r.status ?? r.signal}; stderr: ${r.stderr}`).toMatchObject({
      ok: true,
      rows: 2000,
    });
  }, 120_000);
});
