import type { RecordBatch } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { TableSchema } from '@sluice/core';

interface VectorLike {
  readonly length: number;
  get(i: number): unknown;
  isValid(i: number): boolean;
}

interface ArrowLike {
  readonly numRows: number;
  readonly schema: { readonly fields: readonly { readonly name: string }[] };
  getChild(name: string): VectorLike | null;
}

export function isArrowInput(input: unknown): input is ArrowLike {
  return (
    typeof input === 'object' &&
    input !== null &&
    typeof (input as ArrowLike).numRows === 'number' &&
    typeof (input as ArrowLike).getChild === 'function' &&
    typeof (input as ArrowLike).schema === 'object'
  );
}

/**
 * Rows of an Arrow RecordBatch or Table as plain objects, validated afterwards by the row
 * encoder like any other input. Column-by-column reads; unknown columns are rejected here.
 */
export function rowsOfArrow(schema: TableSchema, input: ArrowLike): Record<string, unknown>[] {
  for (const f of input.schema.fields) {
    if (!schema.byName.has(f.name)) {
      throw new SluiceError(
        ErrorCode.INVALID_ROW,
        `Arrow input column "${f.name}" is not in the table schema`,
        {
          details: { column: f.name },
        },
      );
    }
  }
  const n = input.numRows;
  const rows: Record<string, unknown>[] = Array.from({ length: n }, () => ({}));
  for (const f of input.schema.fields) {
    const c = schema.byName.get(f.name)!;
    const vec = input.getChild(f.name);
    if (!vec) continue;
    for (let i = 0; i < n; i++) {
      if (!vec.isValid(i)) continue;
      let v = vec.get(i);
      if (c.kind === 'vector' && v !== null && typeof v === 'object' && 'toArray' in v) {
        v = Float32Array.from((v as { toArray(): ArrayLike<number> }).toArray());
      } else if (c.type === 'timestamp' && typeof v === 'bigint') {
        v = Number(v);
      }
      rows[i]![f.name] = v;
    }
  }
  return rows;
}

/** The record batches of an Arrow Table, or the RecordBatch itself. */
export function arrowBatches(input: object): RecordBatch[] {
  const batches = (input as { batches?: RecordBatch[] }).batches;
  return Array.isArray(batches) ? batches : [input as RecordBatch];
}
