import path from 'node:path';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { LocalStorage, readTableMeta } from '@sluice/core';
import type { TableMeta } from '@sluice/core';
import { open } from 'sluice';
import type { Db, OpenOptions } from 'sluice';
import { assertNotServed } from './serve-lock.js';

/** Tuning a command may pass when it opens a table; schema and shards are the table's own. */
export type TuningOptions = Pick<
  OpenOptions,
  'durability' | 'memtableBytes' | 'maxUnflushedBytes' | 'backpressureTimeoutMs' | 'syncIntervalMs'
>;

/** Where engine warnings (WAL cuts on recovery, retried flushes) go: one stderr line each. */
export function warnToStderr(message: string): void {
  process.stderr.write(`sluice: warning: ${message.replace(/\s*\n\s*/g, ' ')}\n`);
}

/**
 * The table description of `dir`, read without opening the table (no ownership taken, nothing
 * created). SLUICE_NOT_FOUND when the directory holds no table.
 */
export async function readMeta(dir: string): Promise<TableMeta> {
  const root = path.resolve(dir);
  const meta = await readTableMeta(new LocalStorage(root));
  if (!meta) {
    throw new SluiceError(
      ErrorCode.NOT_FOUND,
      `${root} holds no Sluice table (create one with \`sluice init\`)`,
      {
        details: { path: root },
      },
    );
  }
  return meta;
}

/**
 * Opens an existing table for a command. Checks first that it exists (so a mistyped path does
 * not create a directory) and that no `sluice serve` owns it (opening would fence the server).
 */
export async function openExisting(
  dir: string,
  tuning: TuningOptions = {},
  options: { readonly allowServed?: boolean } = {},
): Promise<Db> {
  await readMeta(dir);
  if (!options.allowServed) await assertNotServed(path.resolve(dir));
  return open(dir, { ...tuning, onWarning: warnToStderr });
}
