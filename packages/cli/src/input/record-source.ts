/** One input record: its values, or why it could not be read. */
export interface SourceRecord {
  /** 1-based: the text line a CSV/NDJSON record starts on, or the record number in Arrow/Parquet. */
  readonly line: number;
  readonly values?: Record<string, unknown>;
  /** Set when the record itself is malformed (bad JSON, wrong CSV field count ...). */
  readonly error?: { readonly message: string; readonly column?: string };
  /** The record's text (NDJSON), quoted back in error reports. */
  readonly raw?: string;
}

/**
 * A streamed input: records in file order, read incrementally so that memory stays bounded
 * whatever the input's size (a CSV/NDJSON chunk, an Arrow record batch, a Parquet row group).
 * Problems with the whole input (unreadable header, not the announced format, a column the
 * table lacks) throw a CliError with code SLUICE_INVALID_INPUT instead.
 */
export interface RecordSource extends AsyncIterable<SourceRecord> {
  /** How the input is named in reports (the path given, or "stdin"). */
  readonly name: string;
  /** What `SourceRecord.line` counts. */
  readonly unit: 'line' | 'row';
  /** Bytes consumed so far (exact for text formats, by batch or row group for binary ones). */
  readonly bytesRead: number;
}

export type InputFormat = 'csv' | 'tsv' | 'ndjson' | 'arrow' | 'parquet';

export const INPUT_FORMATS: readonly InputFormat[] = ['csv', 'tsv', 'ndjson', 'arrow', 'parquet'];
