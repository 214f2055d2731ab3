/**
 * Writes and reads from other threads through db.handle() / attach(): four producer threads
 * and two reader threads against one table with constant freezes and flushes.
 */
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { attach, open } from 'sluice';
import { cleanupDirs, tempDir, until } from './support.js';

const FIXTURE = new URL('./fixtures/attach-worker.mjs', import.meta.url);

afterAll(cleanupDirs);

function run(worker: Worker): Promise<{ ok: boolean; reads: number; checked: number; errors: string[] }> {
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
}

describe('handles across threads', () => {
  it('4 producer threads and 2 reader threads: every acknowledged row read back, newest wins, none ever missing', async () => {
    const dir = await tempDir('mt');
    const db = await open(dir, {
      schema: { id: 'int64', v: 'int32', who: 'utf8' },
      primaryKey: 'id',
      shards: 2,
      memtableBytes: 32 << 10,
      onWarning: () => undefined,
    });
    const producers = 4;
    const perProducer = 3000;
    const acked = new SharedArrayBuffer(4 * producers);
    const stop = new SharedArrayBuffer(4);
    const spawn = (role: string, index: number): Worker =>
      new Worker(FIXTURE, { workerData: { role, index, perProducer, batch: 100, producers } });
    const workers = [
      ...Array.from({ length: producers }, (_, i) => spawn('producer', i)),
      spawn('reader', 0),
      spawn('reader', 1),
    ];
    const results = workers.map(run);
    for (const w of workers) {
      const descriptor = db.handle();
      w.postMessage({ descriptor, acked, stop }, [descriptor.registry]);
    }
    const produced = await Promise.all(results.slice(0, producers));
    Atomics.store(new Int32Array(stop), 0, 1);
    const read = await Promise.all(results.slice(producers));
    for (const r of [...produced, ...read]) expect(r.errors).toEqual([]);
    expect(read.every((r) => r.reads > 0)).toBe(true);
    // Freezes happened all along (tiny memtables); their flushes run in the background pool.
    await until(() => db.stats().shards.reduce((n, s) => n + s.generations, 0) > 2);
    const rows = await db.scan().toArray();
    expect(rows.length).toBe(producers * perProducer);
    for (let p = 0; p < producers; p++) {
      const r = await db.get(p * 1_000_000 + 99);
      expect(r?.v).toBe(2); // overwritten after its first put: newest wins
      expect(r?.who).toBe(`p${p}`);
    }
    await Promise.all(workers.map((w) => w.terminate()));
    await db.close();
  });

  it('a producer thread that dies mid-put wedges nothing: other writers and readers go on', async () => {
    const dir = await tempDir('mt-die');
    const db = await open(dir, {
      schema: { id: 'int64', v: 'int32', who: 'utf8' },
      primaryKey: 'id',
      shards: 2,
      memtableBytes: 64 << 10,
      onWarning: () => undefined,
    });
    const w = new Worker(new URL('./fixtures/dying-producer.mjs', import.meta.url));
    const busy = new Promise((resolve) => w.once('message', resolve));
    const descriptor = db.handle();
    w.postMessage({ descriptor }, [descriptor.registry]);
    await busy;
    await w.terminate();
    // The dead thread's claimed puts are finished by the broker once its queues drain:
    // writes from this thread still complete and are read back.
    for (let i = 0; i < 20; i++) await db.put([{ id: i, v: i, who: 'main' }]);
    expect((await db.get(19))?.v).toBe(19);
    const mine = (await db.scan({ filter: { column: 'who', op: '=', value: 'main' } }).toArray()).length;
    expect(mine).toBe(20);
    await db.close();
  });

  it('an attached handle in this thread has the same semantics and fails with SLUICE_CLOSED after close', async () => {
    const dir = await tempDir('mt-local');
    const db = await open(dir, { schema: { id: 'utf8', n: 'int64' }, primaryKey: 'id', shards: 2 });
    const t = await attach(db.handle());
    await t.put([{ id: 'a', n: 1 }]);
    expect((await db.get('a'))?.n).toBe(1n); // read-your-writes across handles
    await db.put([{ id: 'a', n: 2 }]);
    expect((await t.get('a'))?.n).toBe(2n);
    await t.delete(['a']);
    expect(await db.get('a')).toBeUndefined();
    await expect(t.put([{ id: null, n: 1 }])).rejects.toMatchObject({ code: 'SLUICE_INVALID_ROW' });
    await db.close();
    await expect(t.put([{ id: 'c', n: 1 }])).rejects.toMatchObject({ code: 'SLUICE_CLOSED' });
    await expect(t.get('a')).rejects.toMatchObject({ code: 'SLUICE_CLOSED' });
  });
});
