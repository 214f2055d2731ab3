import { Readable } from 'node:stream';
import { RecordBatchStreamWriter, Table, tableToIPC } from 'apache-arrow';
import type { RecordBatch, Schema } from 'apache-arrow';
import type { ColumnSpec } from '@sluice/core';
import { toJson } from '../json-values.js';

export type OutputFormat = 'table' | 'ndjson' | 'csv' | 'arrow';
export const OUTPUT_FORMATS: readonly OutputFormat[] = ['table', 'ndjson', 'csv', 'arrow'];

/**
 * Rows of a record batch as plain objects: int64 as bigint, timestamps as epoch ms, vectors
 * as Float32Array, nulls as null (the shape `db.get` returns). Column by column.
 */
export function plainRows(batch: RecordBatch): Record<string, unknown>[] {
  const n = batch.numRows;
  const rows: Record<string, unknown>[] = Array.from({ length: n }, () => ({}));
  batch.schema.fields.forEach((f, i) => {
    const vector = batch.getChildAt(i);
    for (let r = 0; r < n; r++) {
      let v: unknown = vector === null || !vector.isValid(r) ? null : vector.get(r);
      if (v !== null && typeof v === 'object' && typeof (v as { toArray?: unknown }).toArray === 'function') {
        v = Float32Array.from((v as { toArray(): ArrayLike<number> }).toArray());
      }
      rows[r]![f.name] = v;
    }
  });
  return rows;
}

/** NDJSON: one JSON object per line (int64 policy: see json-values.ts). */
export async function* ndjsonChunks(batches: AsyncIterable<RecordBatch>): AsyncGenerator<string> {
  for await (const batch of batches) {
    let out = '';
    for (const row of plainRows(batch)) out += `${toJson(row)}\n`;
    if (out !== '') yield out;
  }
}

/** RFC 4180 quoting: only fields holding the delimiter, a quote, CR or LF are quoted. */
export function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  let s: string;
  if (typeof value === 'string') s = value;
  else if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
    s = toJson(value).replace(/^"|"$/g, '');
  else s = toJson(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** CSV with a header line; `sluice ingest` reads it back unchanged (null = empty unquoted field). */
export async function* csvChunks(
  batches: AsyncIterable<RecordBatch>,
  columns: readonly ColumnSpec[],
): AsyncGenerator<string> {
  yield `${columns.map((c) => csvField(c.name)).join(',')}\n`;
  for await (const batch of batches) {
    let out = '';
    for (const row of plainRows(batch)) out += `${columns.map((c) => csvField(row[c.name])).join(',')}\n`;
    if (out !== '') yield out;
  }
}

const MAX_CELL = 40;
const WIDTH_SAMPLE = 200;

function tableCell(c: ColumnSpec, v: unknown): string {
  let s: string;
  if (v === null || v === undefined) s = 'null';
  else if (c.type === 'timestamp' && typeof v === 'number') s = new Date(v).toISOString();
  else if (v instanceof Float32Array) {
    const shown = Array.from(v.subarray(0, 4), (x) => String(Number(x.toPrecision(6))));
    s = `[${shown.join(', ')}${v.length > 4 ? ', …' : ''}]`;
  } else s = String(v);
  s = s.replace(/[\r\n\t]/g, ' ');
  return s.length > MAX_CELL ? `${s.slice(0, MAX_CELL - 1)}…` : s;
}

/**
 * An aligned text table for people. Column widths come from the first rows (it streams: later
 * rows do not move the columns), numbers are right-aligned, timestamps shown in ISO-8601.
 */
export async function* tableChunks(
  batches: AsyncIterable<RecordBatch>,
  columns: readonly ColumnSpec[],
): AsyncGenerator<string> {
  async function* groups(): AsyncGenerator<Record<string, unknown>[]> {
    for await (const batch of batches) yield plainRows(batch);
  }
  yield* tableOfRows(groups(), columns);
}

/** `tableChunks` over groups of row objects (as `db.get` returns them). */
export async function* tableOfRows(
  groups: AsyncIterable<readonly Record<string, unknown>[]>,
  columns: readonly ColumnSpec[],
): AsyncGenerator<string> {
  const numeric = columns.map(
    (c) => c.kind === 'i32' || c.kind === 'i64' || c.kind === 'f32' || c.kind === 'f64',
  );
  const alignRight = columns.map((c, i) => numeric[i]! && c.type !== 'timestamp');
  let widths: number[] | undefined;
  let sample: string[][] = [];
  let total = 0;
  const render = (cells: readonly string[]): string =>
    cells
      .map((s, i) => (alignRight[i] ? s.padStart(widths![i]!) : s.padEnd(widths![i]!)))
      .join('  ')
      .trimEnd();
  const head = (): string => {
    widths = columns.map((c, i) => Math.max(c.name.length, ...sample.map((r) => r[i]!.length)));
    const names = render(columns.map((c) => c.name));
    const rule = widths.map((w) => '-'.repeat(w)).join('  ');
    const body = sample.map((r) => render(r)).join('\n');
    sample = [];
    return `${names}\n${rule}\n${body === '' ? '' : `${body}\n`}`;
  };
  for await (const rows of groups) {
    const cells = rows.map((row) => columns.map((c) => tableCell(c, row[c.name])));
    total += cells.length;
    if (widths === undefined) {
      sample.push(...cells);
      if (sample.length >= WIDTH_SAMPLE) yield head();
    } else {
      yield cells.map((r) => `${render(r)}\n`).join('');
    }
  }
  if (widths === undefined) yield head();
  yield `(${total} row${total === 1 ? '' : 's'})\n`;
}

/**
 * An Arrow IPC stream. Batches go through apache-arrow's Node stream writer, so the output is
 * produced as the scan runs with stream backpressure; an empty result is still a valid stream
 * holding the schema.
 */
export function arrowStream(batches: AsyncIterable<RecordBatch>, schema: Schema): Readable {
  const iterator = batches[Symbol.asyncIterator]();
  async function* bytes(): AsyncGenerator<Uint8Array> {
    const first = await iterator.next();
    if (first.done) {
      yield tableToIPC(new Table(schema), 'stream');
      return;
    }
    async function* all(): AsyncGenerator<RecordBatch> {
      yield first.value as RecordBatch;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    }
    const source = Readable.from(all(), { objectMode: true });
    const encoded = RecordBatchStreamWriter.throughNode();
    // pipe() does not forward errors: a scan failing midway must end the output with its
    // error, not leave the reader waiting.
    source.on('error', (err) => encoded.destroy(err));
    source.pipe(encoded);
    for await (const chunk of encoded as AsyncIterable<Uint8Array>) yield chunk;
  }
  return Readable.from(bytes(), { objectMode: false });
}

/** Text formats as a byte stream (NDJSON, CSV or table). */
export function textStream(
  format: Exclude<OutputFormat, 'arrow'>,
  batches: AsyncIterable<RecordBatch>,
  columns: readonly ColumnSpec[],
): Readable {
  const chunks =
    format === 'ndjson'
      ? ndjsonChunks(batches)
      : format === 'csv'
        ? csvChunks(batches, columns)
        : tableChunks(batches, columns);
  return Readable.from(chunks, { objectMode: false });
}
