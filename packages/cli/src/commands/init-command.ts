import path from 'node:path';
import { LocalStorage, readTableMeta } from '@sluice/core';
import { open } from 'sluice';
import { CliCode, CliError } from '../cli-error.js';
import { ExitCode } from '../exit-codes.js';
import { print } from '../output/write-out.js';
import { parseSchemaArg } from '../schema-arg.js';
import { warnToStderr } from '../table-access.js';

export interface InitOptions {
  readonly schema: string;
  readonly key?: string;
  readonly shards?: number;
}

/** `sluice init <dir>`: creates a table (schema, primary key and shard count are fixed from then on). */
export async function initCommand(dir: string, options: InitOptions): Promise<number> {
  const root = path.resolve(dir);
  if (await readTableMeta(new LocalStorage(root))) {
    throw new CliError(CliCode.EXISTS, `${root} already holds a Sluice table`, { details: { path: root } });
  }
  const parsed = await parseSchemaArg(options.schema);
  const primaryKey = options.key ?? parsed.primaryKey;
  if (primaryKey === undefined) {
    throw new CliError(CliCode.USAGE, 'the primary key column is needed: --key <column>');
  }
  const db = await open(root, {
    schema: parsed.columns,
    primaryKey,
    ...(options.shards === undefined ? {} : { shards: options.shards }),
    onWarning: warnToStderr,
  });
  const shards = db.stats().shards.length;
  const columns = db.schema.columns.map((c) => `${c.name}:${c.type}`).join(', ');
  await db.close();
  await print(
    `created table ${root}: ${shards} shard${shards === 1 ? '' : 's'}, key ${primaryKey}, columns ${columns}\n`,
  );
  return ExitCode.OK;
}
