import { ErrorCode, SluiceError, isSluiceError } from '@sluice/protocol';
import { formatLocation } from '../cli-error.js';
import type { RecordSource } from '../input/record-source.js';
import { toJson } from '../json-values.js';
import { ValueError } from '../value-coercion.js';
import type { RowCoercer } from '../value-coercion.js';

/** A rejected input record, with where it is. */
export interface BadRow {
  readonly file: string;
  readonly line: number;
  readonly unit: 'line' | 'row';
  readonly column?: string;
  readonly message: string;
  /** The record's text when the format has one (NDJSON), truncated. */
  readonly raw?: string;
}

export interface IngestorOptions {
  /** Skip bad rows (reported through onBadRow) instead of aborting on the first one. */
  readonly skipBad: boolean;
  /** Rows per put. Default 8192. */
  readonly batchRows?: number;
  /** Validate and count only; put nothing. */
  readonly dryRun?: boolean;
  readonly onBadRow?: (bad: BadRow) => void;
  /** Stops reading at the next record; rows already put stay put. */
  readonly signal?: AbortSignal;
  /** What an abort message calls the aborted work: 'ingest' (default) or, for the service, 'request'. */
  readonly work?: string;
}

interface Batch {
  readonly file: string;
  readonly unit: 'line' | 'row';
  rows: Record<string, unknown>[];
  lines: number[];
  raws: (string | undefined)[];
}

/** Where the engine's own row errors put the row index: "row 5, column "x": ...". */
const ENGINE_ROW_PREFIX = /^row \d+(?:, column "[^"]*")?: /;
const MAX_RAW = 1024;

/**
 * Streams records from sources into `put`, in batches, in input order. One put is in flight
 * while the next batch is parsed, and a batch is only submitted once the previous one was
 * acknowledged, so the input order is the write order (newest wins within and across batches)
 * and a rejected batch can be retried without a later batch overtaking it.
 *
 * Bad records (unreadable, or a value that does not fit its column, whether found here or by
 * the engine) are either skipped and reported, or abort the ingest. An abort applies nothing
 * of the batch that holds the bad record: earlier batches are acknowledged, and the error
 * says up to where.
 */
export class RowIngestor {
  readonly #put: (rows: Record<string, unknown>[]) => Promise<void>;
  readonly #coercer: RowCoercer;
  readonly #options: IngestorOptions;
  readonly #batchRows: number;
  #inflight: Promise<void> | undefined;
  /** Rows acknowledged by put (or, in a dry run, accepted by validation). */
  rows = 0;
  /** Records read, good or bad. */
  records = 0;
  badRows = 0;

  constructor(
    put: (rows: Record<string, unknown>[]) => Promise<void>,
    coercer: RowCoercer,
    options: IngestorOptions,
  ) {
    this.#put = put;
    this.#coercer = coercer;
    this.#options = options;
    this.#batchRows = options.batchRows ?? 8192;
    if (!Number.isInteger(this.#batchRows) || this.#batchRows < 1) {
      throw new RangeError('batchRows must be a positive integer');
    }
  }

  /** Reads one source to its end (or to the abort signal) and waits until its rows are acknowledged. */
  async ingest(source: RecordSource): Promise<void> {
    let batch = this.#newBatch(source);
    let failed = false;
    try {
      for await (const rec of source) {
        if (this.#options.signal?.aborted) break;
        this.records++;
        let row: Record<string, unknown> | undefined;
        let bad: BadRow | undefined;
        if (rec.error !== undefined) {
          bad = this.#bad(source, rec.line, rec.error.message, rec.error.column, rec.raw);
        } else {
          try {
            row = this.#coercer.coerce(rec.values ?? {});
          } catch (err) {
            if (!(err instanceof ValueError)) throw err;
            bad = this.#bad(source, rec.line, err.message, err.column, rec.raw ?? quote(rec.values));
          }
        }
        if (bad !== undefined) {
          await this.#reject(bad, batch);
          continue;
        }
        batch.rows.push(row!);
        batch.lines.push(rec.line);
        batch.raws.push(rec.raw);
        if (batch.rows.length >= this.#batchRows) {
          await this.#submit(batch);
          batch = this.#newBatch(source);
        }
      }
      if (batch.rows.length > 0) await this.#submit(batch);
    } catch (err) {
      failed = true;
      throw err;
    } finally {
      // Whatever happened, never leave a put running unobserved; when an error is already on
      // its way out, the put's own outcome must not replace it.
      const last = this.#inflight;
      this.#inflight = undefined;
      if (last !== undefined) {
        if (failed) await last.catch(() => undefined);
        else await last;
      }
    }
  }

  #newBatch(source: RecordSource): Batch {
    return { file: source.name, unit: source.unit, rows: [], lines: [], raws: [] };
  }

  #bad(source: RecordSource, line: number, message: string, column?: string, raw?: string): BadRow {
    return {
      file: source.name,
      line,
      unit: source.unit,
      message,
      ...(column === undefined ? {} : { column }),
      ...(raw === undefined ? {} : { raw: truncate(raw) }),
    };
  }

  async #reject(bad: BadRow, batch: Batch): Promise<void> {
    if (this.#options.skipBad) {
      this.badRows++;
      this.#options.onBadRow?.(bad);
      return;
    }
    // The batch holding the bad record is dropped whole; wait for the one before it so the
    // report says exactly what was applied.
    const previous = this.#inflight;
    this.#inflight = undefined;
    if (previous !== undefined) await previous;
    throw this.#abortError(bad, batch.lines[0] ?? bad.line);
  }

  async #submit(batch: Batch): Promise<void> {
    const previous = this.#inflight;
    if (previous !== undefined) await previous;
    const put = this.#putBatch(batch);
    // Observed now so a rejection while the next batch is parsed is not "unhandled"; the
    // promise itself is awaited (and its error thrown) before the next submit.
    put.catch(() => undefined);
    this.#inflight = put;
  }

  async #putBatch(batch: Batch): Promise<void> {
    for (;;) {
      if (batch.rows.length === 0) return;
      if (this.#options.dryRun) {
        this.rows += batch.rows.length;
        return;
      }
      try {
        await this.#put(batch.rows);
        this.rows += batch.rows.length;
        return;
      } catch (err) {
        const rejected = isSluiceError(err, ErrorCode.INVALID_ROW) ? err : undefined;
        const i = rejected?.details.row;
        if (rejected === undefined || typeof i !== 'number' || i < 0 || i >= batch.rows.length) throw err;
        // The engine found what the converter let through (e.g. a value over maxValueBytes):
        // report it at its input line, like any other bad record.
        const column = typeof rejected.details.column === 'string' ? rejected.details.column : undefined;
        const raw = batch.raws[i] ?? quote(batch.rows[i]);
        const bad: BadRow = {
          file: batch.file,
          line: batch.lines[i]!,
          unit: batch.unit,
          message: rejected.message.replace(ENGINE_ROW_PREFIX, ''),
          ...(column === undefined ? {} : { column }),
          ...(raw === undefined ? {} : { raw: truncate(raw) }),
        };
        if (!this.#options.skipBad) throw this.#abortError(bad, batch.lines[0]!, err);
        this.badRows++;
        this.#options.onBadRow?.(bad);
        batch.rows.splice(i, 1);
        batch.lines.splice(i, 1);
        batch.raws.splice(i, 1);
      }
    }
  }

  #abortError(bad: BadRow, batchStart: number, cause?: unknown): SluiceError {
    const unit = bad.unit === 'row' ? 'row' : 'line';
    const applied =
      this.rows === 0
        ? 'nothing was applied'
        : `${this.rows} row${this.rows === 1 ? '' : 's'} before ${unit} ${batchStart} of ${bad.file} ${this.rows === 1 ? 'was' : 'were'} applied, nothing from there on`;
    return new SluiceError(
      ErrorCode.INVALID_ROW,
      `${formatLocation(bad)}: ${bad.message} (${this.#options.work ?? 'ingest'} aborted: ${applied})`,
      {
        details: {
          file: bad.file,
          line: bad.line,
          unit: bad.unit,
          ...(bad.column === undefined ? {} : { column: bad.column }),
          ...(bad.raw === undefined ? {} : { raw: bad.raw }),
          applied: this.rows,
        },
        ...(cause === undefined ? {} : { cause }),
      },
    );
  }
}

function truncate(raw: string): string {
  return raw.length > MAX_RAW ? `${raw.slice(0, MAX_RAW)}…` : raw;
}

/** A record's values as JSON text, for reports about records that have no text of their own. */
function quote(values: Record<string, unknown> | undefined): string | undefined {
  if (values === undefined) return undefined;
  try {
    return toJson(values);
  } catch {
    return undefined;
  }
}
