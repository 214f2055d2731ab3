import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { SchemaJson } from './schema.js';
import type { Storage } from './storage/storage.js';

/** `sluice.json`: what a table is. Written once, with put-if-absent, when the table is created. */
export interface TableMeta {
  readonly format: 1;
  readonly schema: SchemaJson;
  readonly shards: number;
  readonly createdAt: string;
}

export const TABLE_META_PATH = 'sluice.json';

export async function readTableMeta(storage: Storage): Promise<TableMeta | undefined> {
  const bytes = await storage.get(TABLE_META_PATH);
  if (bytes === undefined) return undefined;
  let meta: TableMeta;
  try {
    meta = JSON.parse(new TextDecoder().decode(bytes)) as TableMeta;
  } catch (err) {
    throw new SluiceError(
      ErrorCode.CORRUPT_MANIFEST,
      `${storage.root}/${TABLE_META_PATH} is not valid JSON`,
      {
        cause: err,
        details: { path: TABLE_META_PATH },
      },
    );
  }
  if (
    meta.format !== 1 ||
    !Number.isInteger(meta.shards) ||
    meta.shards < 1 ||
    typeof meta.schema?.primaryKey !== 'string' ||
    !Array.isArray(meta.schema.columns)
  ) {
    throw new SluiceError(
      ErrorCode.CORRUPT_MANIFEST,
      `${storage.root}/${TABLE_META_PATH} is not a Sluice table description`,
      {
        details: { path: TABLE_META_PATH },
      },
    );
  }
  return meta;
}

/** Creates the table description; returns the one that won if another process created it first. */
export async function createTableMeta(storage: Storage, meta: TableMeta): Promise<TableMeta> {
  const created = await storage.putIfAbsent(
    TABLE_META_PATH,
    new TextEncoder().encode(JSON.stringify(meta, null, 2)),
  );
  if (created) return meta;
  return (await readTableMeta(storage))!;
}
