/** put(RecordBatch | Table): the columnar path (no rows materialised) and its validation. */
import { Float64, Int64, Table, Utf8, makeData, makeVector, vectorFromArray } from 'apache-arrow';
import { afterAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import { cleanupDirs, tempDir } from './support.js';

afterAll(cleanupDirs);

const SCHEMA = { id: 'int64', tag: 'utf8', value: 'float64' } as const;

function batch(ids: bigint[], tags: (string | null)[], values: (number | null)[]): Table {
  return new Table({
    id: makeVector(BigInt64Array.from(ids)),
    tag: vectorFromArray(tags, new Utf8()),
    value: vectorFromArray(values, new Float64()),
  });
}

describe('Arrow input', () => {
  it.each([1, 3])(
    'round-trips a Table through the columnar path with %i shards, nulls and upserts included',
    async (shards) => {
      const db = await open(await tempDir('arrow'), { schema: SCHEMA, primaryKey: 'id', shards });
      const n = 5000;
      const ids = Array.from({ length: n }, (_, i) => BigInt(i) * 7919n - 2n ** 40n);
      await db.put(
        batch(
          ids,
          ids.map((id, i) => (i % 10 === 0 ? null : `t${id}`)),
          ids.map((_, i) => (i % 7 === 0 ? null : i / 2)),
        ),
      );
      await db.put(batch([ids[3]!], ['rewritten'], [-1]));
      const rows = await db.scan().toArray();
      expect(rows.length).toBe(n);
      expect(await db.get(ids[0]!)).toEqual({ id: ids[0], tag: null, value: null });
      expect(await db.get(ids[3]!)).toEqual({ id: ids[3], tag: 'rewritten', value: -1 });
      expect(await db.get(ids[11]!)).toEqual({ id: ids[11], tag: `t${ids[11]}`, value: 5.5 });
      await db.flush();
      expect((await db.get(ids[4999]!))?.value).toBe(4999 / 2);
      await db.close();
    },
  );

  it('accepts a RecordBatch whose columns come in another order, and a sliced batch', async () => {
    const db = await open(await tempDir('arrow2'), { schema: SCHEMA, primaryKey: 'id', shards: 2 });
    const t = new Table({
      value: vectorFromArray([1.5, 2.5, 3.5], new Float64()),
      tag: vectorFromArray(['a', 'b', 'c'], new Utf8()),
      id: makeVector(BigInt64Array.from([10n, 20n, 30n])),
    });
    const rb = t.batches[0]!;
    await db.put(rb.slice(1, 3));
    expect((await db.scan().toArray()).map((r) => r.id).sort()).toEqual([20n, 30n]);
    expect(await db.get(30)).toEqual({ id: 30n, tag: 'c', value: 3.5 });
    await db.close();
  });

  it('rejects a null key, a wrong type and an unknown column, changing nothing', async () => {
    const db = await open(await tempDir('arrow3'), { schema: SCHEMA, primaryKey: 'id', shards: 2 });
    const ids = makeData({
      type: new Int64(),
      length: 2,
      nullCount: 1,
      nullBitmap: Uint8Array.of(0b01),
      data: BigInt64Array.from([1n, 2n]),
    });
    const withNullKey = new Table({
      id: makeVector(ids),
      tag: vectorFromArray(['x', 'y'], new Utf8()),
      value: vectorFromArray([1, 2], new Float64()),
    });
    await expect(db.put(withNullKey)).rejects.toMatchObject({
      code: 'SLUICE_INVALID_ROW',
      details: { row: 1, column: 'id' },
    });
    const wrongType = new Table({
      id: vectorFromArray(['1', '2'], new Utf8()),
      tag: vectorFromArray(['x', 'y'], new Utf8()),
      value: vectorFromArray([1, 2], new Float64()),
    });
    await expect(db.put(wrongType)).rejects.toMatchObject({ code: 'SLUICE_INVALID_ROW' });
    const unknown = new Table({
      id: makeVector(BigInt64Array.from([5n])),
      other: vectorFromArray(['x'], new Utf8()),
    });
    await expect(db.put(unknown)).rejects.toMatchObject({
      code: 'SLUICE_INVALID_ROW',
      details: { column: 'other' },
    });
    expect(await db.scan().toArray()).toEqual([]);
    await db.close();
  });
});
