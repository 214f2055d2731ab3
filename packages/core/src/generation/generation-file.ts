import type { ColumnBuffers } from '../columnar.js';
import { int64At, utf8At } from '../columnar.js';
import type { TableSchema } from '../schema.js';
import { formatSequence } from '../storage/storage.js';

/**
 * Generation file format, version 1: an Arrow IPC file whose columns are the table's columns
 * (in schema order) followed by `__op` (Uint8) and `__seq` (Float64). Rows are sorted by
 * primary key, ascending and unique; record batches are non-empty. Schema metadata carries
 * the keys below.
 *
 * The file's name is `<gen, 20 digits>-<epoch>-<crc32, 8 hex><random, 8 hex>.arrow`. The
 * crc32 of the whole file lives in its name because an Arrow IPC file has no room for a
 * checksum of itself, and the manifest keeps the name: a reader verifies every byte before
 * Arrow parses anything, so a damaged footer or buffer descriptor never reaches the parser.
 */
export const GENERATION_FORMAT = '1';
export const META_FORMAT = 'sluice.format';
export const META_GENERATION = 'sluice.generation';
export const META_EPOCH = 'sluice.epoch';
export const META_PRIMARY_KEY = 'sluice.primaryKey';
export const META_SCHEMA = 'sluice.schema';

/** The directory of a shard's generation files. */
export function generationDir(shardPrefix: string): string {
  return shardPrefix === '' ? 'gen' : `${shardPrefix}/gen`;
}

export function generationFileName(
  shardPrefix: string,
  gen: number,
  epoch: number,
  crc: number,
  random: string,
): string {
  return `${generationDir(shardPrefix)}/${formatSequence(gen)}-${epoch}-${hex8(crc)}${random}.arrow`;
}

export interface GenerationFileName {
  readonly gen: number;
  readonly epoch: number;
  readonly crc32: number;
}

const NAME_RE = /(?:^|\/)([0-9]{20})-([0-9]{1,16})-([0-9a-f]{8})[0-9a-f]{8}\.arrow$/;

/** Parses the last segment of a generation file path, or undefined when it is not one. */
export function parseGenerationFileName(path: string): GenerationFileName | undefined {
  const m = NAME_RE.exec(path);
  if (!m) return undefined;
  const gen = Number(m[1]);
  const epoch = Number(m[2]);
  if (!Number.isSafeInteger(gen) || !Number.isSafeInteger(epoch)) return undefined;
  return { gen, epoch, crc32: Number.parseInt(m[3]!, 16) };
}

export function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/** A key in the manifest's text form: int64 as decimal text, utf8 as the string itself. */
export function keyString(schema: TableSchema, keyCol: ColumnBuffers, row: number): string {
  return schema.keyKind === 'i64' ? int64At(keyCol, row).toString() : utf8At(keyCol, row);
}

const utf8Encoder = new TextEncoder();

/** A one-row key column holding `key` (bigint or safe integer for int64, string for utf8), for lookups. */
export function keyColumnOf(schema: TableSchema, key: bigint | number | string): ColumnBuffers {
  if (schema.keyKind === 'i64') {
    if (typeof key === 'string' || (typeof key === 'number' && !Number.isSafeInteger(key))) {
      throw new TypeError(`key must be a bigint or a safe integer for int64 column "${schema.primaryKey}"`);
    }
    const b = BigInt.asIntN(64, BigInt(key));
    const values = new Int32Array([Number(BigInt.asIntN(32, b)), Number(BigInt.asIntN(32, b >> 32n))]);
    return { validity: null, validityOffset: 0, values, valuesOffset: 0, data: null };
  }
  if (typeof key !== 'string')
    throw new TypeError(`key must be a string for utf8 column "${schema.primaryKey}"`);
  const data = utf8Encoder.encode(key);
  return {
    validity: null,
    validityOffset: 0,
    values: new Int32Array([0, data.byteLength]),
    valuesOffset: 0,
    data,
  };
}
