import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RECORD_HEADER_BYTES, SabQueue } from '../src/index.js';

type Op =
  | { kind: 'push'; length: number; seed: number }
  | { kind: 'abandon'; length: number } // tryReserve, write, never commit
  | { kind: 'peek' }
  | { kind: 'release' };

/** Lengths as fractions of maxRecordBytes, so one generator fits every capacity. */
const fraction = fc.double({ min: 0, max: 1, noNaN: true });

const op: fc.Arbitrary<(max: number) => Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({ f: fraction, seed: fc.nat(255) })
      .map(({ f, seed }) => (max: number): Op => ({ kind: 'push', length: Math.floor(f * max), seed })),
  },
  {
    weight: 1,
    arbitrary: fraction.map((f) => (max: number): Op => ({ kind: 'abandon', length: Math.floor(f * max) })),
  },
  { weight: 2, arbitrary: fc.constant((): Op => ({ kind: 'peek' })) },
  { weight: 3, arbitrary: fc.constant((): Op => ({ kind: 'release' })) },
);

function bytesOf(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let j = 0; j < length; j++) bytes[j] = (seed + j * 13) & 0xff;
  return bytes;
}

describe('SabQueue against an array model', () => {
  it('behaves like a FIFO of byte strings under random push/peek/release sequences', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 64, max: 2048 }),
        fc.array(op, { maxLength: 400, size: 'max' }),
        (capacityBytes, ops) => {
          const producer = SabQueue.create(capacityBytes);
          // Separate instances, as on two threads: each side works from cached copies of the other's index.
          const consumer = SabQueue.attach(producer.buffer);
          const max = producer.maxRecordBytes;
          const model: Uint8Array[] = [];

          for (const makeOp of ops) {
            const step = makeOp(max);
            switch (step.kind) {
              case 'push': {
                const bytes = bytesOf(step.length, step.seed);
                const free = producer.capacity - producer.usedBytes();
                if (producer.tryPush(bytes)) {
                  model.push(bytes);
                } else {
                  // Refusal is only allowed while records are queued, and only when the record (plus,
                  // at worst, a skipped lap tail shorter than the record) does not fit.
                  expect(model.length).toBeGreaterThan(0);
                  expect(free).toBeLessThan(2 * (RECORD_HEADER_BYTES + step.length + 7));
                }
                break;
              }
              case 'abandon':
                producer.tryReserve(step.length)?.fill(0xee);
                break;
              case 'peek': {
                const view = consumer.peek();
                if (model.length === 0) expect(view).toBeNull();
                else expect(view).toEqual(model[0]);
                break;
              }
              case 'release':
                if (model.length === 0) {
                  expect(() => consumer.release()).toThrow();
                } else {
                  expect(consumer.peek()).toEqual(model[0]);
                  consumer.release();
                  model.shift();
                }
                break;
            }
            // Wrap markers always precede a record, so an empty model means an empty ring.
            expect(consumer.usedBytes() === 0).toBe(model.length === 0);
            expect(consumer.usedBytes()).toBeLessThanOrEqual(consumer.capacity);
          }

          for (const expected of model) {
            expect(consumer.peek()).toEqual(expected);
            consumer.release();
          }
          expect(consumer.peek()).toBeNull();
        },
      ),
      { numRuns: 300 },
    );
  });
});
