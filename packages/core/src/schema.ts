import { ErrorCode, SluiceError } from '@sluice/protocol';

/** Column types a table can hold. `float32[N]` is a fixed-size vector of N float32 values. */
export type ScalarType = 'int32' | 'int64' | 'float32' | 'float64' | 'bool' | 'utf8' | 'timestamp';
export type ColumnTypeName = ScalarType | `float32[${number}]`;

/** Physical storage class of a column; decides its buffers (see memtable layout and batch format). */
export type ColumnKind = 'i32' | 'i64' | 'f32' | 'f64' | 'bool' | 'utf8' | 'vector';

export interface ColumnSpec {
  readonly name: string;
  readonly type: ColumnTypeName;
  readonly kind: ColumnKind;
  /** Bytes per value for fixed-width kinds (vector: 4 * dim); 0 for bool (bit-packed) and utf8. */
  readonly width: number;
  /** Vector dimension (float32 values per row); 0 for scalars. */
  readonly dim: number;
  readonly index: number;
}

export interface TableSchema {
  readonly columns: readonly ColumnSpec[];
  readonly primaryKey: string;
  readonly keyIndex: number;
  readonly keyKind: 'i64' | 'utf8';
  readonly byName: ReadonlyMap<string, ColumnSpec>;
}

/** The JSON form stored in sluice.json and sent to worker threads. */
export interface SchemaJson {
  readonly columns: readonly { readonly name: string; readonly type: ColumnTypeName }[];
  readonly primaryKey: string;
}

export const MAX_VECTOR_DIM = 65_536;
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export function invalidSchema(message: string): SluiceError {
  return new SluiceError(ErrorCode.INVALID_SCHEMA, message);
}

function specFor(name: string, type: string, index: number): ColumnSpec {
  if (!NAME_RE.test(name) || name.startsWith('__')) {
    throw invalidSchema(
      `column name ${JSON.stringify(name)} is invalid: use letters, digits and _ (not starting with a digit or __), at most 128 chars`,
    );
  }
  const base = { name, index } as const;
  switch (type) {
    case 'int32':
      return { ...base, type, kind: 'i32', width: 4, dim: 0 };
    case 'int64':
      return { ...base, type, kind: 'i64', width: 8, dim: 0 };
    case 'timestamp':
      return { ...base, type, kind: 'i64', width: 8, dim: 0 };
    case 'float32':
      return { ...base, type, kind: 'f32', width: 4, dim: 0 };
    case 'float64':
      return { ...base, type, kind: 'f64', width: 8, dim: 0 };
    case 'bool':
      return { ...base, type, kind: 'bool', width: 0, dim: 0 };
    case 'utf8':
      return { ...base, type, kind: 'utf8', width: 0, dim: 0 };
  }
  const m = /^float32\[(\d+)\]$/.exec(type);
  if (m) {
    const dim = Number(m[1]);
    if (dim >= 1 && dim <= MAX_VECTOR_DIM) {
      return { ...base, type: `float32[${dim}]`, kind: 'vector', width: 4 * dim, dim };
    }
  }
  throw invalidSchema(
    `column "${name}" has unsupported type ${JSON.stringify(type)}: expected int32, int64, float32, float64, bool, utf8, timestamp or float32[N] (1 <= N <= ${MAX_VECTOR_DIM})`,
  );
}

/** Builds a TableSchema from the JSON form; validates names, types and the primary key. */
export function schemaFromJson(json: SchemaJson): TableSchema {
  if (json.columns.length === 0) throw invalidSchema('schema has no columns');
  const columns = json.columns.map((c, i) => specFor(c.name, c.type, i));
  const byName = new Map<string, ColumnSpec>();
  for (const c of columns) {
    if (byName.has(c.name)) throw invalidSchema(`column "${c.name}" appears twice in the schema`);
    byName.set(c.name, c);
  }
  const key = byName.get(json.primaryKey);
  if (!key) {
    throw invalidSchema(`primaryKey ${JSON.stringify(json.primaryKey)} is not a column of the schema`);
  }
  if (key.type !== 'int64' && key.type !== 'utf8') {
    throw invalidSchema(`primaryKey "${key.name}" has type ${key.type}: a primary key must be int64 or utf8`);
  }
  return { columns, primaryKey: key.name, keyIndex: key.index, keyKind: key.kind as 'i64' | 'utf8', byName };
}

export function schemaToJson(schema: TableSchema): SchemaJson {
  return {
    columns: schema.columns.map((c) => ({ name: c.name, type: c.type })),
    primaryKey: schema.primaryKey,
  };
}

export function sameSchema(a: TableSchema, b: TableSchema): boolean {
  return JSON.stringify(schemaToJson(a)) === JSON.stringify(schemaToJson(b));
}
