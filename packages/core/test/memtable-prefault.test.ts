import { describe, expect, it } from 'vitest';
import { viewBatch } from '../src/batch-format.js';
import { OP_PUT } from '../src/columnar.js';
import { Memtable, MemtableWriter, PREFAULT_AHEAD_BYTES } from '../src/memtable/memtable.js';
import { RowEncoder } from '../src/row-encoder.js';
import { schemaFromUser } from '../src/schema-arrow.js';

const schema = schemaFromUser(
  { id: 'int64', ts: 'timestamp', value: 'float64', ok: 'bool', tag: 'utf8', emb: 'float32[3]' },
  'id',
);

function rowsFrom(from: number, n: number): Record<string, unknown>[] {
  return Array.from({ length: n }, (_, i) => {
    const k = from + i;
    return {
      id: k % 7 === 0 ? k - 3 : k, // some upserts
      ts: 1_700_000_000_000 + k,
      value: k % 11 === 0 ? null : k / 3,
      ok: k % 2 === 0,
      tag: 'x'.repeat(k % 40),
      emb: [k, -k, 0.5],
    };
  });
}

/** Fills a fresh memtable in batches, calling `between` after each batch. */
function fill(between: (w: MemtableWriter) => void): { mt: Memtable; writer: MemtableWriter } {
  const encoder = new RowEncoder(schema, 1, { maxValueBytes: 1 << 20 });
  const mt = Memtable.allocate(
    schema,
    40_000,
    schema.columns.map((c) => (c.kind === 'utf8' ? 1 << 20 : 0)),
    1,
    0,
  );
  const writer = new MemtableWriter(mt);
  let seq = 0;
  for (let from = 0; from < 30_000; from += 1000) {
    const plan = encoder.plan(rowsFrom(from, 1000), OP_PUT);
    const target = new Uint8Array(plan.shardBytes[0]!);
    encoder.write(plan, 0, target, ++seq);
    const batch = viewBatch(schema, target);
    expect(writer.append(batch, 0)).toBe(batch.rows);
    between(writer);
  }
  return { mt, writer };
}

describe('MemtableWriter.prefault', () => {
  it('warms pages ahead in bounded steps and changes no byte of the memtable', () => {
    const steps: number[] = [];
    const warmed = fill((w) => {
      let n = 0;
      while (w.prefault(64 << 10)) n++;
      steps.push(n);
    });
    const plain = fill(() => undefined);
    // Work was done (the index and the rows ahead), and it ran out: prefault stops once warm.
    expect(steps[0]).toBeGreaterThan(0);
    expect(warmed.writer.prefault(64 << 10)).toBe(false);
    // Later batches only top up what the previous rows consumed: a bounded amount each time.
    const rowBytes = warmed.mt.byteLength / warmed.mt.capacity;
    for (const n of steps.slice(1))
      expect(n).toBeLessThanOrEqual(Math.ceil((1000 * rowBytes) / (64 << 10)) + 2);
    expect(PREFAULT_AHEAD_BYTES).toBeGreaterThan(0);
    // Every byte (header, index, rows, utf8 data, the unused tail) is what plain appends wrote.
    expect(Buffer.from(warmed.mt.buffer).equals(Buffer.from(plain.mt.buffer))).toBe(true);
    expect(warmed.writer.rows).toBe(30_000);
  });
});
