import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { int64At, utf8At } from '../src/columnar.js';
import type { ColumnBuffers } from '../src/columnar.js';

const encoder = new TextEncoder();
const strict = new TextDecoder('utf-8', { fatal: false });

/**
 * A utf8 column of raw byte strings, stored in the middle of a larger shared buffer (as a
 * memtable's column is) so that a decoder ignoring the view's offset reads the wrong bytes.
 */
function utf8Column(values: Uint8Array[]): ColumnBuffers {
  const offsets = new Int32Array(values.length + 1);
  values.forEach((v, i) => (offsets[i + 1] = offsets[i]! + v.length));
  const pad = 13;
  const whole = new Uint8Array(new SharedArrayBuffer(pad + offsets[values.length]! + pad)).fill(0x41);
  const data = whole.subarray(pad, pad + offsets[values.length]!);
  values.forEach((v, i) => data.set(v, offsets[i]!));
  return { validity: null, validityOffset: 0, values: offsets, valuesOffset: 0, data };
}

describe('column cells', () => {
  it('utf8At decodes ASCII, any Unicode and invalid bytes exactly as TextDecoder does', () => {
    const bytes = fc.oneof(
      fc.string({ unit: 'binary-ascii' }).map((s) => encoder.encode(s)),
      fc.string({ unit: 'grapheme' }).map((s) => encoder.encode(s)),
      // Arbitrary bytes: invalid UTF-8 must decode to the same replacement characters.
      fc.uint8Array({ maxLength: 40 }),
    );
    fc.assert(
      fc.property(fc.array(bytes, { maxLength: 20 }), (values) => {
        const col = utf8Column(values);
        values.forEach((v, i) => expect(utf8At(col, i)).toBe(strict.decode(v)));
      }),
      { numRuns: 500 },
    );
  });

  it('int64At returns every int64 exactly, on both sides of 2^53', () => {
    const int64 = fc.oneof(
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
      fc.bigInt({ min: -(2n ** 53n) - 3n, max: 2n ** 53n + 3n }),
      fc.constantFrom(0n, -1n, 2n ** 32n, -(2n ** 32n), 2n ** 53n - 1n, -(2n ** 53n), 2n ** 63n - 1n),
    );
    fc.assert(
      fc.property(fc.array(int64, { minLength: 1, maxLength: 20 }), (values) => {
        const big = BigInt64Array.from(values);
        const col: ColumnBuffers = {
          validity: null,
          validityOffset: 0,
          values: new Int32Array(big.buffer),
          valuesOffset: 0,
          data: null,
        };
        values.forEach((v, i) => expect(int64At(col, i)).toBe(v));
      }),
      { numRuns: 500 },
    );
  });
});
