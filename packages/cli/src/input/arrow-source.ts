import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { RecordBatchReader } from 'apache-arrow';
import type { RecordBatch } from 'apache-arrow';
import type { TableSchema } from '@sluice/core';
import { CliCode, CliError } from '../cli-error.js';
import { checkInputColumns } from './columns-check.js';
import type { RecordSource, SourceRecord } from './record-source.js';

/** Rows of one record batch as plain objects (nulls left out), read column by column. */
export function* rowsOfBatch(batch: RecordBatch): Generator<Record<string, unknown>> {
  const n = batch.numRows;
  const columns = batch.schema.fields.map((f, i) => ({ name: f.name, vector: batch.getChildAt(i) }));
  for (let r = 0; r < n; r++) {
    const row: Record<string, unknown> = {};
    for (const { name, vector } of columns) {
      if (vector === null || !vector.isValid(r)) continue;
      row[name] = vector.get(r);
    }
    yield row;
  }
}

/**
 * Apache Arrow IPC input, the file format (random access: read batch by batch through a file
 * handle, so only one batch is in memory) or the stream format (read as bytes arrive).
 */
export class ArrowSource implements RecordSource {
  readonly name: string;
  readonly unit = 'row' as const;
  readonly #schema: TableSchema;
  readonly #input: { readonly path: string; readonly size: number } | { readonly stream: Readable };
  #bytes = 0;

  private constructor(
    name: string,
    schema: TableSchema,
    input: { readonly path: string; readonly size: number } | { readonly stream: Readable },
  ) {
    this.name = name;
    this.#schema = schema;
    this.#input = input;
  }

  /** An Arrow IPC file on disk (random access). */
  static file(name: string, path: string, size: number, schema: TableSchema): ArrowSource {
    return new ArrowSource(name, schema, { path, size });
  }

  /** An Arrow IPC stream (a file in the stream format, stdin, an HTTP body). */
  static stream(name: string, stream: Readable, schema: TableSchema): ArrowSource {
    return new ArrowSource(name, schema, { stream });
  }

  get bytesRead(): number {
    if ('stream' in this.#input) {
      return (this.#input.stream as Partial<{ bytesRead: number }>).bytesRead ?? this.#bytes;
    }
    return this.#bytes;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceRecord> {
    let handle: FileHandle | undefined;
    try {
      let reader: AsyncIterable<RecordBatch> & {
        readonly schema: { readonly fields: readonly { name: string }[] };
      };
      let batches = 0;
      try {
        if ('stream' in this.#input) {
          const r = await RecordBatchReader.from(this.#input.stream);
          await r.open();
          reader = r;
        } else {
          handle = await open(this.#input.path, 'r');
          const r = await RecordBatchReader.from(handle);
          await r.open();
          if (r.isFile()) batches = r.numRecordBatches;
          reader = r;
        }
      } catch (err) {
        throw this.#malformed(err);
      }
      if (!reader.schema) throw this.#malformed(new Error('no schema message'));
      checkInputColumns(
        this.name,
        this.#schema,
        reader.schema.fields.map((f) => f.name),
      );
      let line = 0;
      let index = 0;
      const iterator = reader[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<RecordBatch>;
        try {
          next = await iterator.next();
        } catch (err) {
          throw this.#malformed(err, line);
        }
        if (next.done) break;
        index++;
        for (const values of rowsOfBatch(next.value)) yield { line: ++line, values };
        if ('path' in this.#input && batches > 0)
          this.#bytes = Math.round((this.#input.size * index) / batches);
      }
      if ('path' in this.#input) this.#bytes = this.#input.size;
    } finally {
      await handle?.close();
    }
  }

  #malformed(err: unknown, after?: number): CliError {
    if (err instanceof CliError) return err;
    const where = after === undefined ? '' : ` after row ${after}`;
    return new CliError(
      CliCode.INVALID_INPUT,
      `${this.name}: not a readable Arrow IPC ${'stream' in this.#input ? 'stream' : 'file'}${where}: ${(err as Error)?.message ?? String(err)}`,
      { cause: err, details: { file: this.name } },
    );
  }
}
