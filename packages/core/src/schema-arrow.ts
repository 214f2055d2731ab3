import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  Bool,
  Utf8,
  TimestampMillisecond,
  Schema,
} from 'apache-arrow';
import type { DataType } from 'apache-arrow';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { ColumnSpec, ColumnTypeName, TableSchema } from './schema.js';
import { invalidSchema, schemaFromJson } from './schema.js';

/*
 * The Arrow side of schemas, apart from schema.ts so that threads that never touch Arrow
 * (shard workers) do not load apache-arrow at start.
 */

function typeNameOfArrow(name: string, t: DataType): ColumnTypeName {
  if (t instanceof Int32) return 'int32';
  if (t instanceof Int64) return 'int64';
  if (t instanceof Float32) return 'float32';
  if (t instanceof Float64) return 'float64';
  if (t instanceof Bool) return 'bool';
  if (t instanceof Utf8) return 'utf8';
  if (t instanceof TimestampMillisecond) return 'timestamp';
  if (t instanceof FixedSizeList && t.children[0]?.type instanceof Float32) return `float32[${t.listSize}]`;
  // Arrow's type classes are matched structurally too, because a second apache-arrow copy
  // (e.g. a caller's own version) produces instances of different classes.
  const s = String(t);
  const simple: Record<string, ColumnTypeName> = {
    Int32: 'int32',
    Int64: 'int64',
    Float32: 'float32',
    Float64: 'float64',
    Bool: 'bool',
    Utf8: 'utf8',
    'Timestamp<MILLISECOND>': 'timestamp',
  };
  const hit = simple[s];
  if (hit) return hit;
  const m = /^FixedSizeList\[(\d+)\]<Float32>$/.exec(s);
  if (m) return `float32[${m[1]}]` as ColumnTypeName;
  throw invalidSchema(`column "${name}" has Arrow type ${s}, which Sluice does not store`);
}

/** Accepts `{ col: 'type' }` or an apache-arrow Schema. */
export function schemaFromUser(input: unknown, primaryKey: unknown): TableSchema {
  if (typeof primaryKey !== 'string' || primaryKey.length === 0) {
    throw new SluiceError(
      ErrorCode.INVALID_OPTIONS,
      'options.primaryKey must name a column (a non-empty string)',
    );
  }
  if (input instanceof Schema || (typeof input === 'object' && input !== null && 'fields' in input)) {
    const fields = (input as Schema).fields;
    return schemaFromJson({
      columns: fields.map((f: Field) => ({ name: f.name, type: typeNameOfArrow(f.name, f.type) })),
      primaryKey,
    });
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new SluiceError(
      ErrorCode.INVALID_OPTIONS,
      "options.schema must be an object mapping column names to types (e.g. { id: 'int64' }) or an apache-arrow Schema",
    );
  }
  const columns = Object.entries(input as Record<string, unknown>).map(([name, type]) => {
    if (typeof type !== 'string') throw invalidSchema(`column "${name}" has a non-string type`);
    return { name, type: type as ColumnTypeName };
  });
  return schemaFromJson({ columns, primaryKey });
}

export function arrowTypeOf(c: ColumnSpec): DataType {
  switch (c.type) {
    case 'int32':
      return new Int32();
    case 'int64':
      return new Int64();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'bool':
      return new Bool();
    case 'utf8':
      return new Utf8();
    case 'timestamp':
      return new TimestampMillisecond();
    default:
      return new FixedSizeList(c.dim, new Field('item', new Float32(), false));
  }
}

/** The Arrow schema of scans and generation files (generation files add a `__op` column). */
export function arrowSchemaOf(schema: TableSchema, columns?: readonly ColumnSpec[]): Schema {
  const cols = columns ?? schema.columns;
  return new Schema(cols.map((c) => new Field(c.name, arrowTypeOf(c), c.index !== schema.keyIndex)));
}
