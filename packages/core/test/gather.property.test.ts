import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OP_DELETE, OP_PUT } from '../src/columnar.js';
import type { ColumnarView } from '../src/columnar.js';
import { gatherToArrow } from '../src/generation/gather.js';
import { schemaFromUser } from '../src/schema-arrow.js';

const schema = schemaFromUser({ id: 'int64', tag: 'utf8' }, 'id');
const encoder = new TextEncoder();

/** A source of `cells` (null = absent) and ops, as the columnar view memtables and batches give. */
function source(cells: (string | null)[], deleted: boolean[]): ColumnarView {
  const n = cells.length;
  const bytes = cells.map((c) => encoder.encode(c ?? ''));
  const offsets = new Int32Array(n + 1);
  bytes.forEach((b, i) => (offsets[i + 1] = offsets[i]! + b.length));
  const data = new Uint8Array(offsets[n]!);
  bytes.forEach((b, i) => data.set(b, offsets[i]!));
  const validity = new Uint8Array((n + 7) >> 3);
  cells.forEach((c, i) => c !== null && (validity[i >> 3]! |= 1 << (i & 7)));
  const ids = new Int32Array(2 * n);
  for (let i = 0; i < n; i++) ids[2 * i] = i;
  return {
    rows: n,
    op: Uint8Array.from(deleted, (d) => (d ? OP_DELETE : OP_PUT)),
    columns: [
      { validity: null, validityOffset: 0, values: ids, valuesOffset: 0, data: null },
      { validity, validityOffset: 0, values: offsets, valuesOffset: 0, data },
    ],
  };
}

describe('gatherToArrow, utf8 columns', () => {
  it('copies any selection (runs, gaps, repeats, any order) cell for cell; nulls and tombstones come out null', () => {
    const cell = fc.option(fc.string({ unit: 'grapheme', maxLength: 40 }), { nil: null, freq: 5 });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(cell, fc.nat(4)), { minLength: 1, maxLength: 200 }).chain((src) =>
          fc.tuple(
            fc.constant(src),
            fc.oneof(
              // mostly-ascending selections with runs, as scans and flushes make
              fc.array(fc.nat(src.length - 1), { maxLength: 300 }).map((a) => a.sort((x, y) => x - y)),
              fc.array(fc.nat(src.length - 1), { maxLength: 300 }),
              fc.constant(Array.from(src, (_, i) => i)),
            ),
          ),
        ),
        ([src, selection]) => {
          const cells = src.map(([c]) => c);
          const deleted = src.map(([, d]) => d === 0);
          const view = source(cells, deleted);
          const batch = gatherToArrow(schema, view, Int32Array.from(selection));
          const tag = batch.getChild('tag')!;
          expect(batch.numRows).toBe(selection.length);
          selection.forEach((r, i) => {
            expect(tag.get(i)).toBe(deleted[r] ? null : cells[r]);
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
