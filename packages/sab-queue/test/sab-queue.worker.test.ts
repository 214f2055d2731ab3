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
  return ((seq * 2654435761) >>> 0) % Math.min(4096, max + 1);
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

  it('a producer thread that dies in the middle of a record exposes only whole records and wedges nothing', async () => {
    // A small ring: the producer wraps around and waits for space while the consumer drains.
    const queue = SabQueue.create(8 * 1024);
    const count = 3_000;
    const { worker, next } = startWorker({ role: 'hanging-producer', buffer: queue.buffer, count });
    try {
      let received = 0;
      const mid = next();
      while (received < count) {
        if (!(await queue.waitForData(10_000))) throw new Error(`no record after ${received}`);
        for (let view = queue.peek(); view !== null; view = queue.peek()) {
          expect(view.length, `length of record #${received}`).toBe(
            lengthFor(received, queue.maxRecordBytes),
          );
          expect(firstMismatch(view, received), `contents of record #${received}`).toBe(-1);
          queue.release();
          received++;
        }
      }
      expect(await mid).toEqual({ kind: 'mid-record', sent: count });
      await worker.terminate();
      // The half-written record was never committed: nothing more is visible, now or later.
      expect(queue.peek()).toBeNull();
      expect(await queue.waitForData(30)).toBe(false);
      expect(queue.peek()).toBeNull();
      // The consumer side is intact: closing the dead producer's queue ends the wait at once.
      queue.close();
      expect(await queue.waitForData()).toBe(false);
    } finally {
      await worker.terminate();
    }
  });

  it('wraps around under contention: a producer and a consumer thread on a 4 KiB ring', async () => {
    const queue = SabQueue.create(4 * 1024);
    const count = 30_000;
    const consumer = startWorker({ role: 'consumer', buffer: queue.buffer });
    const producer = startWorker({ role: 'producer', buffer: queue.buffer, count });
    try {
      expect(await consumer.next()).toEqual({ kind: 'waiting' });
      const sent = await producer.next();
      expect(sent).toMatchObject({ kind: 'done', sent: count });
      expect(sent.waits as number).toBeGreaterThan(0);
      expect(await consumer.next()).toEqual({
        kind: 'done',
        received: count,
        wrong: 0,
        misaligned: 0,
        closed: true,
      });
    } finally {
      await Promise.all([consumer.worker.terminate(), producer.worker.terminate()]);
    }
  });
});
