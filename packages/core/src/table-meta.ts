import { crc32 } from 'node:zlib';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { schemaFromJson } from './schema.js';
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

/**
 * The file is `{"crc32":"<8 hex>","meta":{...}}`: the checksum covers the compact JSON of the
 * meta object, so any flipped byte in it is detected rather than read as another schema.
 */
function corruptMeta(storage: Storage, why: string, cause?: unknown): SluiceError {
  return new SluiceError(
    ErrorCode.CORRUPT_MANIFEST,
    `${storage.root}/${TABLE_META_PATH} is damaged: ${why}`,
    {
      details: { path: TABLE_META_PATH },
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

export function encodeTableMeta(meta: TableMeta): Uint8Array {
  const body = JSON.stringify(meta);
  const crc = crc32(body).toString(16).padStart(8, '0');
  return new TextEncoder().encode(`{"crc32":"${crc}","meta":${body}}\n`);
}

export async function readTableMeta(storage: Storage): Promise<TableMeta | undefined> {
  const bytes = await storage.get(TABLE_META_PATH);
  if (bytes === undefined) return undefined;
  let meta: TableMeta;
  try {
    const file = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as {
      crc32?: unknown;
      meta?: unknown;
    };
    if (
      typeof file !== 'object' ||
      file === null ||
      typeof file.crc32 !== 'string' ||
      typeof file.meta !== 'object'
    ) {
      throw corruptMeta(storage, 'not a table description');
    }
    if (crc32(JSON.stringify(file.meta)).toString(16).padStart(8, '0') !== file.crc32) {
      throw corruptMeta(storage, 'checksum mismatch');
    }
    meta = file.meta as TableMeta;
  } catch (err) {
    if (err instanceof SluiceError) throw err;
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
    !Array.isArray(meta.schema.columns) ||
    !meta.schema.columns.every((c) => typeof c?.name === 'string' && typeof c?.type === 'string')
  ) {
    throw new SluiceError(
      ErrorCode.CORRUPT_MANIFEST,
      `${storage.root}/${TABLE_META_PATH} is not a Sluice table description`,
      {
        details: { path: TABLE_META_PATH },
      },
    );
  }
  try {
    schemaFromJson(meta.schema);
  } catch (err) {
    throw corruptMeta(storage, 'its schema is invalid', err);
  }
  return meta;
}

/** Creates the table description; returns the one that won if another process created it first. */
export async function createTableMeta(storage: Storage, meta: TableMeta): Promise<TableMeta> {
  const created = await storage.putIfAbsent(TABLE_META_PATH, encodeTableMeta(meta));
  if (created) return meta;
  return (await readTableMeta(storage))!;
}
