import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { AsyncBuffer, FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import type { TableSchema } from '@sluice/core';
import { CliCode, CliError } from '../cli-error.js';
import { checkInputColumns } from './columns-check.js';
import type { RecordSource, SourceRecord } from './record-source.js';

/**
 * Apache Parquet input through hyparquet (pure JavaScript, with hyparquet-compressors for
 * snappy, gzip, zstd, brotli and lz4). Read one row group at a time with range reads, so
 * memory holds one row group, whatever the file's size.
 */
export class ParquetSource implements RecordSource {
  readonly name: string;
  readonly unit = 'row' as const;
  readonly #path: string;
  readonly #schema: TableSchema;
  #bytes = 0;

  constructor(name: string, path: string, schema: TableSchema) {
    this.name = name;
    this.#path = path;
    this.#schema = schema;
  }

  get bytesRead(): number {
    return this.#bytes;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceRecord> {
    let file: AsyncBuffer;
    let metadata: FileMetaData;
    let columns: string[];
    try {
      file = await asyncBufferFromFile(this.#path);
      metadata = await parquetMetadataAsync(file);
      columns = parquetSchema(metadata).children.map((c) => c.element.name);
    } catch (err) {
      throw this.#malformed(err);
    }
    checkInputColumns(this.name, this.#schema, columns);
    let rowStart = 0;
    let line = 0;
    for (const [i, group] of metadata.row_groups.entries()) {
      const rowEnd = rowStart + Number(group.num_rows);
      let rows: Record<string, unknown>[];
      try {
        rows = await parquetReadObjects({ file, metadata, rowStart, rowEnd, compressors });
      } catch (err) {
        throw this.#malformed(err, `row group ${i}`);
      }
      for (const values of rows) {
        for (const k in values) if (values[k] === null || values[k] === undefined) delete values[k];
        yield { line: ++line, values };
      }
      this.#bytes += Number(group.total_compressed_size ?? group.total_byte_size);
      rowStart = rowEnd;
    }
    this.#bytes = file.byteLength;
  }

  #malformed(err: unknown, where?: string): CliError {
    return new CliError(
      CliCode.INVALID_INPUT,
      `${this.name}: not a readable Parquet file${where ? ` (${where})` : ''}: ${(err as Error)?.message ?? String(err)}`,
      { cause: err, details: { file: this.name } },
    );
  }
}
