/**
 * Issue 3, item 8: backpressure under overload (test/reliability/fixtures/overload-child.mjs,
 * in a process of its own so that the memory measured is the engine's). Producers much faster
 * than flushes (every generation file write delayed by 400 ms): puts stall, then reject with
 * SLUICE_BACKPRESSURE past the hard limit; resident memory stays bounded while the overload
 * lasts; once producers slow down and flushes catch up, every put succeeds; nothing
 * acknowledged is lost.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TINY, removeTempDirs, tempDir } from './lib/table.js';

afterAll(removeTempDirs);

const FIXTURE = fileURLToPath(new URL('./fixtures/overload-child.mjs', import.meta.url));
const MiB = 1 << 20;

interface Report {
  overload: { acked: number; codes: Record<string, number> };
  calm: { acked: number; codes: Record<string, number> };
  stalls: number;
  diag: unknown;
  baseline: number;
  firstHalfPeak: number;
  peak: number;
  lost: number;
  phantoms: number;
  unhandled: number;
  unhandledSample: string;
}

function runOverload(
  dir: string,
): Promise<{ report: Report | undefined; stderr: string; code: number | null }> {
  const cfg = {
    dir,
    producers: 16,
    overloadMs: 3000,
    calmMs: 1000,
    flushDelayMs: 400,
    options: { ...TINY, maxUnflushedBytes: 64 << 10, backpressureTimeoutMs: 200 },
  };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--expose-gc', FIXTURE, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.split('\n')[0];
      resolve({ report: line ? (JSON.parse(line) as Report) : undefined, stderr: err.slice(-2000), code });
    });
  });
}

describe('backpressure under overload', () => {
  let r: Report;

  beforeAll(async () => {
    const run = await runOverload(path.join(await tempDir('overload'), 'table'));
    if (!run.report) throw new Error(`overload child failed (exit ${run.code}): ${run.stderr}`);
    r = run.report;
  }, 150_000);

  it('put stalls, then rejects with SLUICE_BACKPRESSURE past the hard limit', () => {
    const msg = JSON.stringify(r.overload);
    expect(r.stalls, msg).toBeGreaterThan(0);
    expect(r.overload.codes.SLUICE_BACKPRESSURE ?? 0, msg).toBeGreaterThan(0);
    expect(
      Object.keys(r.overload.codes).filter((c) => c !== 'SLUICE_BACKPRESSURE'),
      msg,
    ).toEqual([]);
    expect(r.overload.acked, msg).toBeGreaterThan(0);
  });

  /**
   * Regression: a put waiting on the unflushed-bytes limit used to find room in its queues,
   * so its retry loop spun on microtasks (a timer and a few promises per turn, never
   * cleared) for the whole backpressureTimeoutMs, the heap grew by hundreds of MiB and the
   * commits that would free memory could not run. It now parks on the unflushed counter.
   */
  it('regression: resident memory stays bounded while the overload lasts (no busy wait at the memory limit)', () => {
    const msg = `rss baseline ${(r.baseline / MiB).toFixed(0)} MiB, first-half peak ${(r.firstHalfPeak / MiB).toFixed(0)} MiB, peak ${(r.peak / MiB).toFixed(0)} MiB; ${JSON.stringify(r.diag)}`;
    // The unflushed limit is 64 KiB; the budget covers threads, queues and the driver itself.
    expect((r.peak - r.baseline) / MiB, msg).toBeLessThan(192);
    // No growth trend: the second half of the overload adds (almost) nothing.
    expect((r.peak - r.firstHalfPeak) / MiB, msg).toBeLessThan(48);
  });

  it('throughput recovers when producers slow down', () => {
    expect(r.calm.codes).toEqual({});
    expect(r.calm.acked).toBeGreaterThan(10);
  });

  it('nothing acknowledged is lost, nothing unwritten appears', () => {
    expect({ lost: r.lost, phantoms: r.phantoms }).toEqual({ lost: 0, phantoms: 0 });
  });

  /**
   * Regression: a put that gave up under backpressure both threw to its caller and left its
   * own promise rejected with nobody listening: an unhandled rejection, which by Node's
   * default kills the process although the caller caught the error.
   */
  it('regression: a put rejected under backpressure leaves no unhandled promise rejection', () => {
    expect(r.unhandled, r.unhandledSample).toBe(0);
  });
});
