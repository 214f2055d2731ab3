import { createWriteStream } from 'node:fs';
import type { WriteStream } from 'node:fs';
import { formatLocation } from '../cli-error.js';
import { ExitCode } from '../exit-codes.js';
import type { BadRow } from '../ingest/row-ingestor.js';
import { RowIngestor } from '../ingest/row-ingestor.js';
import { ProgressReporter, formatBytes } from '../ingest/progress-reporter.js';
import type { ProgressMode } from '../ingest/progress-reporter.js';
import { inspectInputs, openSource } from '../input/open-source.js';
import type { InputFormat, RecordSource } from '../input/record-source.js';
import { toJson } from '../json-values.js';
import { print } from '../output/write-out.js';
import { openExisting, readMeta } from '../table-access.js';
import type { TuningOptions } from '../table-access.js';
import { RowCoercer } from '../value-coercion.js';
import { schemaFromJson } from '@sluice/core';

export interface IngestOptions {
  readonly format?: InputFormat;
  readonly skipBad?: boolean;
  readonly badRows?: string;
  readonly batchRows?: number;
  readonly delimiter?: string;
  readonly header?: boolean;
  readonly emptyStrings?: boolean;
  readonly progress?: ProgressMode;
  readonly progressInterval?: number;
  readonly dryRun?: boolean;
  readonly durability?: 'sync' | 'async';
  readonly memtableBytes?: number;
}

/** Bad rows printed to stderr one by one; the rest are only counted (all go to --bad-rows). */
const SHOWN_BAD_ROWS = 20;

/**
 * `sluice ingest <dir> <file...>`: streams CSV, NDJSON, Arrow IPC and Parquet files into the
 * table in batches (memory stays bounded whatever the inputs' size). Bad rows abort the ingest,
 * or with --skip-bad are skipped, reported and counted.
 */
export async function ingestCommand(
  dir: string,
  files: readonly string[],
  options: IngestOptions,
): Promise<number> {
  const meta = await readMeta(dir);
  const schema = schemaFromJson(meta.schema);
  const inputs = await inspectInputs(files);
  const totalBytes = inputs.every((i) => i.size !== undefined)
    ? inputs.reduce((n, i) => n + (i.size ?? 0), 0)
    : undefined;
  const tuning: TuningOptions = {
    ...(options.durability ? { durability: options.durability } : {}),
    ...(options.memtableBytes ? { memtableBytes: options.memtableBytes } : {}),
  };
  const db = options.dryRun ? undefined : await openExisting(dir, tuning);
  const abort = new AbortController();
  const onSigint = (): void => abort.abort();
  process.once('SIGINT', onSigint);
  let badFile: WriteStream | undefined;
  let shown = 0;
  const onBadRow = (bad: BadRow): void => {
    if (shown++ < SHOWN_BAD_ROWS)
      process.stderr.write(`sluice: skipped ${formatLocation(bad)}: ${bad.message}\n`);
    badFile?.write(`${toJson(bad)}\n`);
  };
  if (options.badRows !== undefined) badFile = createWriteStream(options.badRows);
  const ingestor = new RowIngestor((rows) => db!.put(rows), new RowCoercer(schema), {
    skipBad: options.skipBad ?? false,
    ...(options.batchRows === undefined ? {} : { batchRows: options.batchRows }),
    dryRun: options.dryRun ?? false,
    onBadRow,
    signal: abort.signal,
  });
  let done = 0;
  let current: RecordSource | undefined;
  const progress = new ProgressReporter(
    () => ({ rows: ingestor.rows, badRows: ingestor.badRows, bytes: done + (current?.bytesRead ?? 0) }),
    {
      mode: options.progress ?? 'auto',
      totalBytes,
      ...(options.progressInterval === undefined ? {} : { intervalSeconds: options.progressInterval }),
    },
  );
  const started = performance.now();
  progress.start();
  try {
    for (const input of inputs) {
      current = await openSource(input, schema, {
        ...(options.format ? { format: options.format } : {}),
        ...(options.delimiter ? { delimiter: options.delimiter } : {}),
        ...(options.header === undefined ? {} : { header: options.header }),
        ...(options.emptyStrings ? { emptyStrings: true } : {}),
      });
      await ingestor.ingest(current);
      done += input.size ?? current.bytesRead;
      current = undefined;
      if (abort.signal.aborted) break;
    }
  } finally {
    progress.stop();
    process.off('SIGINT', onSigint);
    if (badFile) await new Promise<void>((resolve) => badFile!.end(resolve));
    // Close drains and syncs every WAL: once it resolves, every row counted above is durable.
    await db?.close();
  }
  const secs = (performance.now() - started) / 1000;
  const rate = secs > 0 ? Math.round(ingestor.rows / secs) : 0;
  const verb = options.dryRun ? 'validated' : 'ingested';
  const from = `${inputs.length} file${inputs.length === 1 ? '' : 's'}${totalBytes === undefined ? '' : ` (${formatBytes(totalBytes)})`}`;
  const bad =
    ingestor.badRows > 0 ? `; ${ingestor.badRows} bad row${ingestor.badRows === 1 ? '' : 's'} skipped` : '';
  const more =
    shown > SHOWN_BAD_ROWS
      ? ` (${shown - SHOWN_BAD_ROWS} not shown${options.badRows ? `, all in ${options.badRows}` : ''})`
      : '';
  if (abort.signal.aborted) {
    process.stderr.write(
      `sluice: interrupted: ${ingestor.rows} rows ${verb} before the interrupt are durable\n`,
    );
    return ExitCode.INTERRUPTED;
  }
  await print(
    `${verb} ${ingestor.rows} rows from ${from} in ${secs.toFixed(2)} s (${rate} rows/s)${bad}${more}\n`,
  );
  return ExitCode.OK;
}
