import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { SabQueue } from '../src/index.js';
import { DATA_WAITERS_SLOT, SPACE_WAITERS_SLOT } from '../src/layout.js';
import { fillRecord, firstMismatch } from './pattern.js';

// The fixture imports ../../dist: build the package first (`npx tsc -p packages/sab-queue`).
const fixture = new URL('./fixtures/queue-worker.mjs', import.meta.url);

/** Must match lengthFor() in the fixture: mostly up to 4 KiB, every 97th record at maxRecordBytes. */
function lengthFor(seq: number, max: number): number {
  if (seq % 97 === 0) return max;
  return ((seq * 2654435761) >>> 0) % 4096;
}

interface WorkerReport {
  kind: string;
  [key: string]: unknown;
}

function startWorker(workerData: Record<string, unknown>): {
  worker: Worker;
  next: () => Promise<WorkerReport>;
} {
  const worker = new Worker(fixture, { workerData });
  const reports: WorkerReport[] = [];
  let wake: (() => void) | undefined;
  let failure: unknown;
  worker.on('message', (report: WorkerReport) => {
    reports.push(report);
    wake?.();
  });
  worker.on('error', (error) => {
    failure = error;
    wake?.();
  });
  const next = async (): Promise<WorkerReport> => {
    while (reports.length === 0) {
      if (failure !== undefined) throw failure;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    return reports.shift()!;
  };
  return { worker, next };
}

describe('SabQueue across threads', () => {
  it('feeds a worker consumer parked in Atomics.waitAsync', async () => {
    const queue = SabQueue.create(64 * 1024);
    const count = 20_000;
    const { worker, next } = startWorker({ role: 'consumer', buffer: queue.buffer });
    try {
      expect(await next()).toEqual({ kind: 'waiting' });
      // The worker is parked on WRITE_INDEX before anything is produced.
      const header = new Int32Array(queue.buffer);
      await vi.waitFor(() => expect(Atomics.load(header, DATA_WAITERS_SLOT)).toBe(1), { interval: 5 });

      let waits = 0;
      for (let seq = 0; seq < count; seq++) {
        const length = lengthFor(seq, queue.maxRecordBytes);
        let view = queue.tryReserve(length);
        while (view === null) {
          waits++;
          expect(await queue.waitForSpace(length, 10_000)).toBe(true);
          view = queue.tryReserve(length);
        }
        fillRecord(view, seq);
        queue.commit();
      }
      queue.close();

      expect(await next()).toEqual({ kind: 'done', received: count, wrong: 0, misaligned: 0, closed: true });
      expect(waits).toBeGreaterThan(0); // the ring (64 KiB) is far smaller than the ~40 MB sent
      expect(queue.usedBytes()).toBe(0);
    } finally {
      await worker.terminate();
    }
  });

  it('drains a worker producer that waits for space', async () => {
    const queue = SabQueue.create(16 * 1024);
    const count = 5_000;
    const { worker, next } = startWorker({ role: 'producer', buffer: queue.buffer, count });
    try {
      // Let the producer fill the ring and park on READ_INDEX before consuming anything.
      const header = new Int32Array(queue.buffer);
      await vi.waitFor(() => expect(Atomics.load(header, SPACE_WAITERS_SLOT)).toBe(1), { interval: 5 });

      let received = 0;
      let wrong = 0;
      while (await queue.waitForData(10_000)) {
        for (let view = queue.peek(); view !== null; view = queue.peek()) {
          if (view.length !== lengthFor(received, queue.maxRecordBytes)) wrong++;
          if (firstMismatch(view, received) !== -1) wrong++;
          queue.release();
          received++;
        }
      }
      expect(queue.closed).toBe(true);
      expect({ received, wrong }).toEqual({ received: count, wrong: 0 });
      const report = await next();
      expect(report).toMatchObject({ kind: 'done', sent: count });
      expect(report['waits']).toBeGreaterThan(0);
    } finally {
      await worker.terminate();
    }
  });
});
