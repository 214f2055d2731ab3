import { createRequire } from 'node:module';
import { tableFromIPC, tableToIPC, Table } from 'apache-arrow';
import type * as Arrow from 'apache-arrow';
import type { RecordBatch } from 'apache-arrow';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@sluice/protocol';
import { OP_DELETE, OP_PUT } from '../src/columnar.js';
import { gatherToArrow, viewOfRecordBatch } from '../src/generation/gather.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import {
  allTypes,
  buildMemtable,
  expectedRow,
  sampleRows,
  tombstone,
  viewRows,
} from './generation-fixtures.js';

describe('gatherToArrow / viewOfRecordBatch', () => {
  it('copies rows in the given order into Arrow buffers that Arrow itself reads back', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const order = Int32Array.from([8, 3, 0, 2, 5, 1, 4, 7, 6]);
    const batch = gatherToArrow(allTypes, mt.view(rows), order, allTypes.columns, { op: true, seq: mt.seq });
    expect(batch.numRows).toBe(order.length);
    expect(batch.schema.fields.map((f) => f.name)).toEqual([
      ...allTypes.columns.map((c) => c.name),
      '__op',
      '__seq',
    ]);
    expect(batch.schema.fields.map((f) => f.nullable)).toEqual([
      false,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
    // Arrow's own accessors (slow, fine in a test) agree with the source rows.
    const s = batch.getChild('s')!;
    const big = batch.getChild('big')!;
    const b = batch.getChild('b')!;
    const v = batch.getChild('v')!;
    for (let i = 0; i < order.length; i++) {
      const src = expectedRow(allTypes, sampleRows[order[i]!]!);
      expect(s.get(i)).toBe(src.s);
      expect(big.get(i)).toBe(src.big);
      expect(b.get(i)).toBe(src.b);
      const vec = v.get(i) as { toArray(): Float32Array } | null;
      expect(vec === null ? null : Float32Array.from(vec.toArray())).toEqual(src.v);
    }
    expect(s.nullCount).toBe(1);
    expect(b.nullCount).toBe(3);
    expect(batch.getChild('id')!.nullCount).toBe(0);
    expect(Array.from(batch.getChild('__op')!.toArray() as Uint8Array)).toEqual(new Array(9).fill(OP_PUT));
    // And the zero-copy view reads exactly the gathered rows.
    const back = viewOfRecordBatch(allTypes, batch);
    expect(viewRows(allTypes, back)).toEqual(Array.from(order, (r) => expectedRow(allTypes, sampleRows[r]!)));
    expect(Array.from(back.seq!)).toEqual(new Array(9).fill(1));
  });

  it('survives an Arrow IPC round trip and a column subset', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const cols = [allTypes.byName.get('s')!, allTypes.byName.get('id')!, allTypes.byName.get('v')!];
    const batch = gatherToArrow(allTypes, mt.view(rows), Int32Array.from([0, 1, 2, 3]), cols);
    expect(batch.schema.fields.map((f) => f.name)).toEqual(['s', 'id', 'v']);
    const table = tableFromIPC(tableToIPC(new Table(batch), 'file'));
    expect(table.getChild('s')!.toArray()).toEqual(['hello', '', null, '😀 emoji']);
    expect(table.getChild('id')!.toArray()).toEqual(BigInt64Array.from([1n, -5n, 2n ** 53n + 1n, 3n]));
  });

  it('nulls every non-key column of a tombstone', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows.slice(0, 2) }, { del: [1] }]);
    const batch = gatherToArrow(allTypes, mt.view(rows), Int32Array.from([2, 1]), allTypes.columns, {
      op: true,
    });
    const view = viewOfRecordBatch(allTypes, batch);
    expect(Array.from(view.op!)).toEqual([OP_DELETE, OP_PUT]);
    expect(view.seq).toBeNull();
    expect(viewRows(allTypes, view)).toEqual([tombstone(allTypes, 1), expectedRow(allTypes, sampleRows[1]!)]);
  });

  it('gathers zero rows', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const batch = gatherToArrow(allTypes, mt.view(rows), new Int32Array(0), allTypes.columns, {
      op: true,
      seq: mt.seq,
    });
    expect(batch.numRows).toBe(0);
    expect(viewOfRecordBatch(allTypes, batch).rows).toBe(0);
  });

  it('views sliced record batches (bit offsets that are not byte aligned)', () => {
    const { mt, rows } = buildMemtable(allTypes, [{ put: sampleRows }]);
    const order = Int32Array.from({ length: rows }, (_, i) => i);
    const batch = gatherToArrow(allTypes, mt.view(rows), order, allTypes.columns, { op: true });
    for (const [start, end] of [
      [3, 9],
      [1, 4],
      [5, 6],
      [0, 9],
    ] as const) {
      const sliced = batch.slice(start, end);
      expect(viewRows(allTypes, viewOfRecordBatch(allTypes, sliced))).toEqual(
        sampleRows.slice(start, end).map((r) => expectedRow(allTypes, r)),
      );
    }
  });

  it('accepts record batches built by another apache-arrow copy', () => {
    // The CommonJS build is a separate module instance: its classes are not ours.
    const other = createRequire(import.meta.url)('apache-arrow') as typeof Arrow;
    const schema = schemaFromUser({ id: 'int64', s: 'utf8', x: 'float64', b: 'bool', v: 'float32[2]' }, 'id');
    const fsl = new other.FixedSizeList(2, new other.Field('item', new other.Float32(), false));
    const table = new other.Table({
      id: other.vectorFromArray([5n, -7n, 2n ** 62n], new other.Int64()),
      s: other.vectorFromArray(['a', null, 'ü'], new other.Utf8()),
      x: other.vectorFromArray([1.5, 2.5, null], new other.Float64()),
      b: other.vectorFromArray([null, true, false], new other.Bool()),
      v: other.vectorFromArray([[1, 2], null, [3, 4]], fsl),
    });
    expect(other.Table).not.toBe(Table);
    const batch = table.batches[0]! as unknown as RecordBatch;
    const view = viewOfRecordBatch(schema, batch);
    expect(view.op).toBeNull();
    expect(viewRows(schema, view)).toEqual([
      { id: 5n, s: 'a', x: 1.5, b: null, v: Float32Array.from([1, 2]) },
      { id: -7n, s: null, x: 2.5, b: true, v: null },
      { id: 2n ** 62n, s: 'ü', x: null, b: false, v: Float32Array.from([3, 4]) },
    ]);
  });

  it('rejects a batch that lacks a column or stores another type', () => {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8' }, 'id');
    const { mt, rows } = buildMemtable(schema, [{ put: [{ id: 1, s: 'a' }] }]);
    const only = gatherToArrow(schema, mt.view(rows), Int32Array.from([0]), [schema.byName.get('id')!]);
    expect(() => viewOfRecordBatch(schema, only)).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_SCHEMA }),
    );
    const asInt32 = schemaFromUser({ id: 'int64', s: 'int32' }, 'id');
    const full = gatherToArrow(schema, mt.view(rows), Int32Array.from([0]));
    expect(() => viewOfRecordBatch(asInt32, full)).toThrow(/has Arrow type Utf8, the table stores int32/);
  });
});
