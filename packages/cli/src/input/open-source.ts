import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import type { TableSchema } from '@sluice/core';
import { CliCode, CliError } from '../cli-error.js';
import { ArrowSource } from './arrow-source.js';
import { CsvSource } from './csv-source.js';
import { NdjsonSource } from './ndjson-source.js';
import { ParquetSource } from './parquet-source.js';
import type { InputFormat, RecordSource } from './record-source.js';

const BY_EXTENSION: Readonly<Record<string, InputFormat>> = {
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
  '.ldjson': 'ndjson',
  '.json': 'ndjson',
  '.arrow': 'arrow',
  '.arrows': 'arrow',
  '.ipc': 'arrow',
  '.feather': 'arrow',
  '.parquet': 'parquet',
  '.pq': 'parquet',
};

export interface InputSpec {
  /** A path, or '-' for stdin. */
  readonly file: string;
  /** Size in bytes when known (regular files). */
  readonly size: number | undefined;
}

export interface OpenSourceOptions {
  readonly format?: InputFormat;
  readonly delimiter?: string;
  readonly header?: boolean;
  readonly emptyStrings?: boolean;
}

/** Stats every input up front: a missing file fails the ingest before any row is written. */
export async function inspectInputs(files: readonly string[]): Promise<InputSpec[]> {
  const specs: InputSpec[] = [];
  for (const file of files) {
    if (file === '-') {
      specs.push({ file, size: undefined });
      continue;
    }
    let size: number;
    try {
      const s = await stat(file);
      if (!s.isFile()) throw new Error('not a regular file');
      size = s.size;
    } catch (err) {
      throw new CliError(CliCode.INVALID_INPUT, `${file}: cannot read input: ${(err as Error).message}`, {
        cause: err,
        details: { file },
      });
    }
    specs.push({ file, size });
  }
  return specs;
}

/**
 * The format of an input: `--format` if given, else the file extension, else the first bytes
 * (PAR1 → Parquet, ARROW1 or an IPC continuation marker → Arrow, '{' → NDJSON, else CSV).
 */
export async function detectFormat(spec: InputSpec, given?: InputFormat): Promise<InputFormat> {
  if (given) return given;
  const byExt = BY_EXTENSION[path.extname(spec.file).toLowerCase()];
  if (byExt) return byExt;
  if (spec.file === '-') {
    throw new CliError(CliCode.USAGE, 'reading stdin ("-") needs --format csv|tsv|ndjson|arrow');
  }
  const head = await firstBytes(spec.file, 8);
  if (head.subarray(0, 4).toString('latin1') === 'PAR1') return 'parquet';
  if (head.subarray(0, 6).toString('latin1') === 'ARROW1' || head.readUInt32LE(0) === 0xffffffff)
    return 'arrow';
  if (head.toString('utf8').trimStart().startsWith('{')) return 'ndjson';
  return 'csv';
}

async function firstBytes(file: string, n: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return bytesRead < n ? Buffer.concat([buf.subarray(0, bytesRead), Buffer.alloc(n - bytesRead)]) : buf;
  } finally {
    await fh.close();
  }
}

/** Opens one input as a record source of its format. */
export async function openSource(
  spec: InputSpec,
  schema: TableSchema,
  options: OpenSourceOptions = {},
): Promise<RecordSource> {
  const format = await detectFormat(spec, options.format);
  const name = spec.file === '-' ? 'stdin' : spec.file;
  const stream = () =>
    spec.file === '-' ? process.stdin : createReadStream(spec.file, { highWaterMark: 1 << 20 });
  switch (format) {
    case 'csv':
    case 'tsv':
      return new CsvSource(name, stream(), schema, {
        delimiter: options.delimiter ?? (format === 'tsv' ? '\t' : ','),
        ...(options.header === undefined ? {} : { header: options.header }),
        ...(options.emptyStrings === undefined ? {} : { emptyStrings: options.emptyStrings }),
      });
    case 'ndjson':
      return new NdjsonSource(name, stream());
    case 'arrow': {
      if (spec.file === '-') return ArrowSource.stream(name, process.stdin, schema);
      const head = await firstBytes(spec.file, 6);
      return head.toString('latin1') === 'ARROW1'
        ? ArrowSource.file(name, spec.file, spec.size ?? 0, schema)
        : ArrowSource.stream(name, stream(), schema);
    }
    case 'parquet':
      if (spec.file === '-')
        throw new CliError(CliCode.USAGE, 'Parquet cannot be read from stdin (it needs random access)');
      return new ParquetSource(name, spec.file, schema);
  }
}
