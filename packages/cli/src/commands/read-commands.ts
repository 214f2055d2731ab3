import { arrowSchemaOf, compileFilter, schemaFromJson } from '@sluice/core';
import type { TableSchema } from '@sluice/core';
import { ErrorCode } from '@sluice/protocol';
import { CliCode, CliError } from '../cli-error.js';
import { ExitCode } from '../exit-codes.js';
import { parseFilterArg } from '../filter-arg.js';
import { parseKey, toJson } from '../json-values.js';
import { arrowStream, tableOfRows, textStream } from '../output/row-formats.js';
import type { OutputFormat } from '../output/row-formats.js';
import { print, writeOut } from '../output/write-out.js';
import type { Readable } from 'node:stream';
import { openExisting, readMeta } from '../table-access.js';

/**
 * The table's schema, read without opening the table: arguments are checked against it before
 * the (slower) open, which starts every shard thread and replays the WAL.
 */
async function schemaOf(dir: string): Promise<TableSchema> {
  return schemaFromJson((await readMeta(dir)).schema);
}

/** The --filter argument, parsed and validated against the schema (throws SLUICE_INVALID_FILTER). */
async function checkedFilter(text: string | undefined, schema: TableSchema): Promise<unknown> {
  if (text === undefined) return undefined;
  const filter = await parseFilterArg(text, schema);
  compileFilter(schema, filter);
  return filter;
}

function checkColumns(columns: readonly string[] | undefined, schema: TableSchema): void {
  for (const c of columns ?? []) {
    if (!schema.byName.has(c)) {
      throw new CliError(
        ErrorCode.INVALID_OPTIONS,
        `--columns: "${c}" is not a column (the table has ${schema.columns.map((x) => x.name).join(', ')})`,
        { details: { column: c } },
      );
    }
  }
}

export interface GetOptions {
  readonly format?: 'ndjson' | 'table';
}

/** `sluice get <dir> <key...>`: the latest row of each key, from one snapshot. */
export async function getCommand(dir: string, keys: readonly string[], options: GetOptions): Promise<number> {
  const schema = await schemaOf(dir);
  const parsed = keys.map((k) => parseKey(schema, k));
  const db = await openExisting(dir);
  let missing = 0;
  try {
    const rows = await db.getMany(parsed);
    const found: Record<string, unknown>[] = [];
    rows.forEach((row, i) => {
      if (row === undefined) {
        missing++;
        process.stderr.write(`sluice: not found: key ${keys[i]}\n`);
      } else found.push(row);
    });
    if (options.format === 'table') {
      let out = '';
      for await (const chunk of tableOfRows(asyncOf([found]), db.schema.columns)) out += chunk;
      await print(out);
    } else {
      await print(found.map((r) => `${toJson(r)}\n`).join(''));
    }
  } finally {
    await db.close();
  }
  return missing > 0 ? ExitCode.NOT_FOUND : ExitCode.OK;
}

async function* asyncOf<T>(items: readonly T[]): AsyncGenerator<T> {
  yield* items;
}

export interface ScanCommandOptions {
  readonly columns?: string[];
  readonly filter?: string;
  readonly limit?: number;
  readonly format?: OutputFormat;
  readonly output?: string;
}

/** `sluice scan <dir>`: the newest live version of every key (matching --filter), streamed out. */
export async function scanCommand(dir: string, options: ScanCommandOptions): Promise<number> {
  const format = options.format ?? (process.stdout.isTTY ? 'table' : 'ndjson');
  if (format === 'arrow' && options.output === undefined && process.stdout.isTTY) {
    throw new CliError(
      CliCode.USAGE,
      '--format arrow writes binary data: redirect stdout or give --output <file>',
    );
  }
  const schema = await schemaOf(dir);
  const filter = await checkedFilter(options.filter, schema);
  checkColumns(options.columns, schema);
  const db = await openExisting(dir);
  try {
    const scan = db.scan({
      ...(options.columns ? { columns: options.columns } : {}),
      ...(filter === undefined ? {} : { filter }),
      ...(options.limit === undefined ? {} : { limit: options.limit }),
    });
    const specs = (options.columns ?? db.schema.columns.map((c) => c.name)).map((n) =>
      db.schema.byName.get(n)!,
    );
    const stream: Readable =
      format === 'arrow'
        ? arrowStream(scan, arrowSchemaOf(db.schema, specs))
        : textStream(format, scan, specs);
    await writeOut(stream, options.output);
  } finally {
    await db.close();
  }
  return ExitCode.OK;
}

/** `sluice count <dir>`: live rows (matching --filter). */
export async function countCommand(dir: string, options: { readonly filter?: string }): Promise<number> {
  const filter = await checkedFilter(options.filter, await schemaOf(dir));
  const db = await openExisting(dir);
  try {
    let n = 0;
    for await (const batch of db.scan({
      columns: [db.schema.primaryKey],
      ...(filter === undefined ? {} : { filter }),
    })) {
      n += batch.numRows;
    }
    await print(`${n}\n`);
  } finally {
    await db.close();
  }
  return ExitCode.OK;
}

/** `sluice flush <dir>`: writes every memtable (including rows recovered from the WAL) to generation files. */
export async function flushCommand(dir: string): Promise<number> {
  const db = await openExisting(dir);
  try {
    const before = db.stats().shards;
    await db.flush();
    const after = db.stats().shards;
    const files =
      after.reduce((n, s) => n + s.generations, 0) - before.reduce((n, s) => n + s.generations, 0);
    const rows =
      after.reduce((n, s) => n + s.generationRows, 0) - before.reduce((n, s) => n + s.generationRows, 0);
    await print(
      `flushed ${after.length} shard${after.length === 1 ? '' : 's'}: ${files} new generation file${files === 1 ? '' : 's'} (${rows} rows); ` +
        `${after.reduce((n, s) => n + s.generations, 0)} generation files in all\n`,
    );
  } finally {
    await db.close();
  }
  return ExitCode.OK;
}
