import { describe, expect, it } from 'vitest';
import {
  HEADER_BYTES,
  MAX_CAPACITY,
  SabQueue,
  SabQueueError,
  SabQueueErrorCode,
  WARM_BYTES,
} from '../src/index.js';
import { firstMismatch, makeRecord } from './pattern.js';

/** Pops the oldest record, checks it is record `seq` of `length` bytes, and releases it. */
function expectRecord(queue: SabQueue, seq: number, length: number): void {
  const view = queue.peek();
  expect(view, `record #${seq}`).not.toBeNull();
  expect(view!.length, `length of record #${seq}`).toBe(length);
  expect(firstMismatch(view!, seq), `contents of record #${seq}`).toBe(-1);
  queue.release();
}

/** Varied sizes: empty records, odd lengths (padding), and lengths near maxRecordBytes. */
function lengthOf(seq: number, max: number): number {
  const pick = (seq * 2654435761) >>> 0;
  switch (seq % 5) {
    case 0:
      return 0;
    case 1:
      return pick % 9;
    case 2:
      return max - (pick % 3);
    default:
      return pick % (max + 1);
  }
}

describe('SabQueue.create', () => {
  it('rounds the capacity up to a multiple of 8 and sizes the buffer as header + data', () => {
    const queue = SabQueue.create(1001);
    expect(queue.capacity).toBe(1008);
    expect(queue.buffer.byteLength).toBe(HEADER_BYTES + 1008);
    expect(queue.maxRecordBytes).toBe(504 - 8);
    expect(queue.usedBytes()).toBe(0);
    expect(queue.closed).toBe(false);
  });

  it('raises small capacities to the minimum', () => {
    const queue = SabQueue.create(1);
    expect(queue.capacity).toBe(64);
    expect(queue.maxRecordBytes).toBe(24);
  });

  it.each([0, -8, 1.5, Number.NaN, Infinity, MAX_CAPACITY + 1, '64' as unknown as number])(
    'rejects capacityBytes %s with a RangeError naming the option',
    (bad) => {
      expect(() => SabQueue.create(bad)).toThrow(RangeError);
      expect(() => SabQueue.create(bad)).toThrow(/capacityBytes/);
    },
  );
});

describe('SabQueue single-threaded', () => {
  it('wraps around over many laps with records of varied sizes, in order and intact', () => {
    const queue = SabQueue.create(256);
    const max = queue.maxRecordBytes;
    let pushed = 0;
    let popped = 0;
    let bytes = 0;
    // Fill until full, then drain a varying part, so the wrap point moves around every lap.
    for (let round = 0; round < 400; round++) {
      while (queue.tryPush(makeRecord(pushed, lengthOf(pushed, max)))) {
        bytes += lengthOf(pushed, max);
        pushed++;
      }
      expect(queue.usedBytes()).toBeGreaterThan(0);
      expect(queue.usedBytes()).toBeLessThanOrEqual(queue.capacity);
      const drain = 1 + (round % 4);
      for (let k = 0; k < drain && popped < pushed; k++) {
        expectRecord(queue, popped, lengthOf(popped, max));
        popped++;
      }
    }
    while (popped < pushed) {
      expectRecord(queue, popped, lengthOf(popped, max));
      popped++;
    }
    expect(queue.peek()).toBeNull();
    expect(queue.usedBytes()).toBe(0);
    expect(bytes / queue.capacity).toBeGreaterThan(50); // many laps
  });

  it('wraps early when drained past the warm zone, so a kept-up queue reuses the same pages', () => {
    const q = SabQueue.create(8 * WARM_BYTES);
    const record = 1 << 20;
    const offsets: number[] = [];
    for (let i = 0; i < 40; i++) {
      const view = q.tryReserve(record)!;
      view.fill(i);
      offsets.push(view.byteOffset - HEADER_BYTES);
      q.commit();
      const got = q.peek()!;
      expect(got.byteLength).toBe(record);
      expect(got[0]).toBe(i);
      expect(got[record - 1]).toBe(i);
      q.release();
    }
    expect(Math.max(...offsets)).toBeLessThan(WARM_BYTES);
    // Back at the start every few records, and every record stays inside the warm zone.
    expect(offsets.filter((o) => o === 8).length).toBeGreaterThanOrEqual(10);
    expect(q.usedBytes()).toBe(0);
  });

  it('does not wrap early while records are queued: a backlog uses the whole ring', () => {
    const q = SabQueue.create(8 * WARM_BYTES);
    const record = 1 << 20;
    const offsets: number[] = [];
    for (let i = 0; i < 20; i++) {
      const view = q.tryReserve(record)!;
      view.fill(i);
      offsets.push(view.byteOffset - HEADER_BYTES);
      q.commit();
    }
    expect(Math.max(...offsets)).toBeGreaterThan(2 * WARM_BYTES);
    for (let i = 0; i < 20; i++) {
      const got = q.peek()!;
      expect(got[0]).toBe(i);
      q.release();
    }
    expect(q.peek()).toBeNull();
  });

  it('returns null when full and succeeds again after a release', () => {
    const queue = SabQueue.create(64);
    // 24-byte payloads take 32 bytes each: exactly two fill the 64-byte ring.
    expect(queue.tryPush(makeRecord(0, 24))).toBe(true);
    expect(queue.tryPush(makeRecord(1, 24))).toBe(true);
    expect(queue.usedBytes()).toBe(64);
    expect(queue.tryReserve(0)).toBeNull();
    expect(queue.tryPush(makeRecord(2, 24))).toBe(false);
    expectRecord(queue, 0, 24);
    const view = queue.tryReserve(24);
    expect(view).not.toBeNull();
    view!.set(makeRecord(2, 24));
    queue.commit();
    expectRecord(queue, 1, 24);
    expectRecord(queue, 2, 24);
    expect(queue.peek()).toBeNull();
  });

  it('waits for the consumer to drain rather than splitting a record that needs a wrap', () => {
    const queue = SabQueue.create(128); // maxRecordBytes 56 -> 64-byte records
    expect(queue.tryPush(makeRecord(0, 40))).toBe(true); // 48 bytes at offset 0
    expect(queue.tryPush(makeRecord(1, 56))).toBe(true); // 64 bytes at offset 48, 16 left in the lap
    expectRecord(queue, 0, 40);
    // 64 bytes do not fit in the 16-byte tail and only 48 are free at the start.
    expect(queue.tryPush(makeRecord(2, 56))).toBe(false);
    expectRecord(queue, 1, 56);
    expect(queue.tryPush(makeRecord(2, 56))).toBe(true); // wrap marker at 112, record at 0
    expect(queue.usedBytes()).toBe(16 + 64);
    expectRecord(queue, 2, 56);
    expect(queue.usedBytes()).toBe(0);
  });

  it('moves 150k records through the queue', () => {
    const queue = SabQueue.create(64 * 1024);
    const total = 150_000;
    let pushed = 0;
    let popped = 0;
    let wrong = 0;
    while (popped < total) {
      while (pushed < total) {
        const length = (pushed * 13) % 300;
        const view = queue.tryReserve(length);
        if (view === null) break;
        for (let j = 0; j < length; j++) view[j] = (pushed + j) & 0xff;
        queue.commit();
        pushed++;
      }
      for (let view = queue.peek(); view !== null; view = queue.peek()) {
        // Counted rather than asserted per record: 150k expect() calls would dominate the run time.
        if (view.length !== (popped * 13) % 300) wrong++;
        for (let j = 0; j < view.length; j++) if (view[j] !== ((popped + j) & 0xff)) wrong++;
        queue.release();
        popped++;
        if (popped % 1000 === 0) break; // keep the two sides interleaved at varying fill levels
      }
    }
    expect(popped).toBe(total);
    expect(wrong).toBe(0);
    expect(queue.usedBytes()).toBe(0);
  });

  it('publishes nothing for a reservation without commit', () => {
    const queue = SabQueue.create(128);
    const view = queue.tryReserve(16);
    view!.fill(0xaa);
    expect(queue.peek()).toBeNull();
    expect(queue.usedBytes()).toBe(0);
    expect(SabQueue.attach(queue.buffer).peek()).toBeNull();

    // A later reservation replaces the abandoned one: only committed records are seen.
    queue.tryReserve(8)!.set(makeRecord(0, 8));
    queue.commit();
    expect(() => queue.commit()).toThrow(SabQueueError);
    expectRecord(queue, 0, 8);
    expect(queue.peek()).toBeNull();
  });

  it('publishes no wrap marker for an uncommitted reservation that wraps', () => {
    const queue = SabQueue.create(128);
    queue.tryPush(makeRecord(0, 56)); // 64 bytes at 0
    queue.tryPush(makeRecord(1, 40)); // 48 bytes at 64, 16 left in the lap
    expectRecord(queue, 0, 56);
    expect(queue.tryReserve(48)).not.toBeNull(); // would wrap: marker at 112, record at 0
    expect(queue.usedBytes()).toBe(48);
    expectRecord(queue, 1, 40);
    expect(queue.peek()).toBeNull();
    expect(queue.usedBytes()).toBe(0);
    // The abandoned marker bytes are overwritten by a record that fits the tail.
    expect(queue.tryPush(makeRecord(2, 8))).toBe(true);
    expectRecord(queue, 2, 8);
  });

  it('starts every payload 8-byte aligned in the SharedArrayBuffer', () => {
    const queue = SabQueue.create(1000);
    let seq = 0;
    for (let i = 0; i < 5000; i++) {
      const length = (i * 7) % (queue.maxRecordBytes + 1);
      const view = queue.tryReserve(length);
      if (view === null) {
        queue.peek();
        queue.release();
        i--;
        continue;
      }
      expect(view.byteOffset % 8).toBe(0);
      expect(view.buffer).toBe(queue.buffer);
      view.set(makeRecord(seq++, length));
      queue.commit();
    }
    for (let view = queue.peek(); view !== null; view = queue.peek()) {
      expect(view.byteOffset % 8).toBe(0);
      queue.release();
    }
  });

  it('lets the consumer view a payload as Float64Array and BigInt64Array without copying', () => {
    const queue = SabQueue.create(1024);
    queue.tryPush(new Uint8Array(new Float64Array([1.5, -2.25, Math.PI]).buffer));
    queue.tryPush(new Uint8Array(new BigInt64Array([1n, -(2n ** 62n)]).buffer));
    const doubles = queue.peek()!;
    expect([...new Float64Array(doubles.buffer, doubles.byteOffset, doubles.byteLength / 8)]).toEqual([
      1.5,
      -2.25,
      Math.PI,
    ]);
    queue.release();
    const ints = queue.peek()!;
    expect([...new BigInt64Array(ints.buffer, ints.byteOffset, ints.byteLength / 8)]).toEqual([
      1n,
      -(2n ** 62n),
    ]);
    queue.release();
  });

  it('peek returns the same record until release', () => {
    const queue = SabQueue.create(256);
    queue.tryPush(makeRecord(0, 10));
    queue.tryPush(makeRecord(1, 20));
    expect(queue.peek()!.byteOffset).toBe(queue.peek()!.byteOffset);
    expect(queue.peek()!.length).toBe(10);
    queue.release();
    expect(queue.peek()!.length).toBe(20);
  });

  it('throws on bad arguments and misuse', () => {
    const queue = SabQueue.create(128);
    for (const bad of [-1, 1.5, Number.NaN, queue.maxRecordBytes + 1]) {
      expect(() => queue.tryReserve(bad)).toThrow(RangeError);
      expect(() => queue.tryReserve(bad)).toThrow(/length/);
    }
    expect(() => queue.tryPush(new Uint8Array(queue.maxRecordBytes + 1))).toThrow(RangeError);
    expect(() => queue.commit()).toThrow(expect.objectContaining({ code: SabQueueErrorCode.INTERNAL }));
    expect(() => queue.release()).toThrow(expect.objectContaining({ code: SabQueueErrorCode.INTERNAL }));
    expect(queue.usedBytes()).toBe(0);
  });

  it('rejects bad arguments to the waits', async () => {
    const queue = SabQueue.create(128);
    await expect(queue.waitForSpace(queue.maxRecordBytes + 1)).rejects.toThrow(RangeError);
    await expect(queue.waitForSpace(-1)).rejects.toThrow(/length/);
    await expect(queue.waitForSpace(8, -1)).rejects.toThrow(/timeoutMs/);
    await expect(queue.waitForData(Number.NaN)).rejects.toThrow(RangeError);
  });
});

describe('SabQueue.attach', () => {
  it('rebuilds the queue from the SharedArrayBuffer alone, with its records and positions', () => {
    const producer = SabQueue.create(512);
    for (let seq = 0; seq < 6; seq++) producer.tryPush(makeRecord(seq, seq * 9));
    expectRecord(producer, 0, 0);

    const consumer = SabQueue.attach(producer.buffer);
    expect(consumer.capacity).toBe(512);
    expect(consumer.maxRecordBytes).toBe(producer.maxRecordBytes);
    expect(consumer.buffer).toBe(producer.buffer);
    expect(consumer.usedBytes()).toBe(producer.usedBytes());
    for (let seq = 1; seq < 6; seq++) expectRecord(consumer, seq, seq * 9);
    expect(consumer.peek()).toBeNull();

    // The producer's cached read index was stale; it reloads it and finds the space freed.
    for (let seq = 6; seq < 200; seq++) {
      expect(producer.tryPush(makeRecord(seq, 30))).toBe(true);
      expectRecord(consumer, seq, 30);
    }
  });

  it('hands both roles to an instance attached after the first one stopped', () => {
    const first = SabQueue.create(256);
    first.tryPush(makeRecord(0, 5));
    first.tryPush(makeRecord(1, 6));
    expectRecord(first, 0, 5);
    const second = SabQueue.attach(first.buffer);
    second.tryPush(makeRecord(2, 7));
    expectRecord(second, 1, 6);
    expectRecord(second, 2, 7);
  });

  it('throws a TypeError for anything but a queue buffer', () => {
    const valid = SabQueue.create(64).buffer;
    const wrongVersion = new SharedArrayBuffer(valid.byteLength);
    new Uint8Array(wrongVersion).set(new Uint8Array(valid));
    new Int32Array(wrongVersion)[1] = 99;
    const wrongSize = new SharedArrayBuffer(valid.byteLength + 8);
    new Uint8Array(wrongSize).set(new Uint8Array(valid));

    const bad: unknown[] = [
      new ArrayBuffer(valid.byteLength),
      new SharedArrayBuffer(8),
      new SharedArrayBuffer(valid.byteLength), // zeroed: no magic number
      wrongVersion,
      wrongSize,
      undefined,
    ];
    for (const buffer of bad) {
      expect(() => SabQueue.attach(buffer as SharedArrayBuffer)).toThrow(TypeError);
    }
    expect(() => SabQueue.attach(wrongVersion)).toThrow(/version 99/);
  });

  it('reports records out of sequence when two instances produce at once', () => {
    const a = SabQueue.create(256);
    const b = SabQueue.attach(a.buffer); // a second producer: forbidden, but detectable
    a.tryPush(new Uint8Array(8)); // seq 0 at offset 0
    a.tryPush(new Uint8Array(24)); // seq 1 at offset 16
    b.tryPush(new Uint8Array(24)); // seq 0 again, over both, ending inside a's second payload
    a.tryPush(new Uint8Array(8));
    const consumer = SabQueue.attach(a.buffer);
    consumer.peek();
    consumer.release();
    expect(() => consumer.peek()).toThrow(expect.objectContaining({ code: SabQueueErrorCode.INTERNAL }));
  });
});

describe('SabQueue waits and close', () => {
  it('waitForData resolves true when a record arrives and false on timeout', async () => {
    const queue = SabQueue.create(256);
    expect(await queue.waitForData(0)).toBe(false);
    expect(await queue.waitForData(20)).toBe(false);
    const waiting = queue.waitForData(5_000);
    setTimeout(() => queue.tryPush(makeRecord(0, 3)), 10);
    expect(await waiting).toBe(true);
    expectRecord(queue, 0, 3);
  });

  it('waitForSpace resolves true after a release and false on timeout', async () => {
    const queue = SabQueue.create(64);
    queue.tryPush(makeRecord(0, 24));
    queue.tryPush(makeRecord(1, 24));
    expect(await queue.waitForSpace(24, 20)).toBe(false);
    const waiting = queue.waitForSpace(24);
    setTimeout(() => expectRecord(queue, 0, 24), 10);
    expect(await waiting).toBe(true);
    expect(queue.tryPush(makeRecord(2, 24))).toBe(true);
  });

  it('waitForFree waits for a number of free bytes (room for several records at once), not for one record', async () => {
    const queue = SabQueue.create(128);
    for (let i = 0; i < 4; i++) expect(queue.tryPush(makeRecord(i, 24))).toBe(true);
    expect(queue.capacity - queue.usedBytes()).toBe(0);
    expect(await queue.waitForFree(64, 20)).toBe(false);
    const waiting = queue.waitForFree(64);
    let settled = false;
    void waiting.then(() => (settled = true));
    expectRecord(queue, 0, 24); // frees 32 bytes: not enough
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    expectRecord(queue, 1, 24);
    expect(await waiting).toBe(true);
    expect(queue.capacity - queue.usedBytes()).toBeGreaterThanOrEqual(64);
    expect(await queue.waitForFree(10 * queue.capacity, 0)).toBe(false);
    expectRecord(queue, 2, 24);
    expectRecord(queue, 3, 24);
    expect(await queue.waitForFree(10 * queue.capacity, 0)).toBe(true); // clamped: an empty ring is enough
    queue.close();
    expect(await queue.waitForFree(1)).toBe(false);
  });

  it('close on one instance wakes a producer parked on a full queue and a consumer parked on an empty one', async () => {
    const full = SabQueue.create(64);
    full.tryPush(makeRecord(0, 24));
    full.tryPush(makeRecord(1, 24));
    const empty = SabQueue.create(64);
    const space = full.waitForSpace(24);
    const data = SabQueue.attach(empty.buffer).waitForData();
    setTimeout(() => {
      SabQueue.attach(full.buffer).close();
      empty.close();
    }, 10);
    expect(await Promise.all([space, data])).toEqual([false, false]);
    expect(full.closed).toBe(true);
  });

  it('after close pushes throw, waits resolve at once, and the consumer drains what was committed', async () => {
    const queue = SabQueue.create(256);
    queue.tryPush(makeRecord(0, 12));
    const reserved = queue.tryReserve(4);
    expect(reserved).not.toBeNull();
    queue.close();
    const closedError = expect.objectContaining({ code: SabQueueErrorCode.CLOSED });
    expect(() => queue.commit()).toThrow(closedError);
    expect(() => queue.tryReserve(4)).toThrow(closedError);
    expect(() => queue.tryPush(makeRecord(1, 4))).toThrow(closedError);
    expect(await queue.waitForSpace(4)).toBe(false);
    expect(await queue.waitForData()).toBe(true);
    expectRecord(queue, 0, 12);
    expect(await queue.waitForData()).toBe(false);
    expect(queue.peek()).toBeNull();
  });

  it('close wakes a consumer parked on an empty queue', async () => {
    const queue = SabQueue.create(256);
    const waits = [queue.waitForData(), queue.waitForData(60_000)];
    setTimeout(() => queue.close(), 10);
    expect(await Promise.all(waits)).toEqual([false, false]);
  });
});
