import type { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import type { CsvError } from 'csv-parse';
import type { TableSchema } from '@sluice/core';
import { CliCode, CliError } from '../cli-error.js';
import type { RecordSource, SourceRecord } from './record-source.js';

export interface CsvOptions {
  /** Field delimiter. Default ','. */
  readonly delimiter?: string;
  /** Whether the first line names the columns. Default true; without it, columns are in schema order. */
  readonly header?: boolean;
  /** Empty fields of utf8 columns are empty strings instead of nulls. Default false. */
  readonly emptyStrings?: boolean;
}

interface Skipped {
  /** Records parsed before this one: it goes right before record number `before`. */
  readonly before: number;
  readonly line: number;
  readonly message: string;
}

/**
 * CSV (RFC 4180, via csv-parse): quoted fields may hold delimiters, quotes ("") and newlines.
 * An empty field is null (or, with `emptyStrings`, the empty string in utf8 columns). Records
 * with the wrong number of fields or broken quoting are bad records reported with their line;
 * the header is checked against the table once, before any row.
 *
 * Records are parsed as arrays and line numbers are kept here (a record starts one line after
 * the previous one ends, and ends as many lines later as its fields hold newlines): csv-parse's
 * per-record and per-field context objects would cost more than the parsing itself.
 */
export class CsvSource implements RecordSource {
  readonly name: string;
  readonly unit = 'line' as const;
  readonly #input: Readable;
  readonly #schema: TableSchema;
  readonly #options: CsvOptions;

  constructor(name: string, input: Readable, schema: TableSchema, options: CsvOptions = {}) {
    this.name = name;
    this.#input = input;
    this.#schema = schema;
    this.#options = options;
  }

  get bytesRead(): number {
    return (this.#input as Partial<{ bytesRead: number }>).bytesRead ?? 0;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceRecord> {
    const schema = this.#schema;
    const skipped: Skipped[] = [];
    const parser = parse({
      delimiter: this.#options.delimiter ?? ',',
      bom: true,
      // Field counts are checked below, against the header, so that a wrong count is a bad
      // record with its line rather than a parser error.
      relax_column_count: true,
      skip_records_with_error: true,
      on_skip: (err: CsvError | undefined) => {
        if (!err) return;
        skipped.push({
          before: parser.info.records,
          line: typeof err.lines === 'number' ? err.lines : 0,
          message: `malformed CSV record: ${err.message.replace(/\s*(?:on|at) line \d+/, '')}`,
        });
      },
    });
    this.#input.on('error', (err) => parser.destroy(err));
    this.#input.pipe(parser);

    let names: readonly string[] | undefined =
      this.#options.header === false ? schema.columns.map((c) => c.name) : undefined;
    let empties = names?.map((n) => this.#emptyIsString(n));
    let index = 0;
    let end = 0; // last line of the previous record
    for await (const fields of parser as AsyncIterable<string[]>) {
      while (skipped.length > 0 && skipped[0]!.before <= index) {
        const s = skipped.shift()!;
        if (s.line > 0) end = s.line;
        yield { line: s.line > 0 ? s.line : end + 1, error: { message: s.message } };
      }
      index++;
      const line = end + 1;
      let newlines = 0;
      for (const f of fields) if (f.length > 0 && f.indexOf('\n') >= 0) newlines += countNewlines(f);
      end = line + newlines;
      // A blank line parses as one empty field.
      if (fields.length === 1 && fields[0] === '') continue;
      if (names === undefined) {
        names = checkHeader(this.name, schema, fields);
        empties = names.map((n) => this.#emptyIsString(n));
        continue;
      }
      if (fields.length !== names.length) {
        yield {
          line,
          error: { message: `malformed CSV record: ${names.length} fields expected, got ${fields.length}` },
        };
        continue;
      }
      const values: Record<string, unknown> = {};
      for (let i = 0; i < names.length; i++) {
        const f = fields[i]!;
        if (f !== '') values[names[i]!] = f;
        else if (empties![i]) values[names[i]!] = '';
      }
      yield { line, values };
    }
    for (const s of skipped.splice(0))
      yield { line: s.line > 0 ? s.line : end + 1, error: { message: s.message } };
  }

  #emptyIsString(name: string): boolean {
    const c = this.#schema.byName.get(name);
    return this.#options.emptyStrings === true && c?.type === 'utf8' && c.index !== this.#schema.keyIndex;
  }
}

function countNewlines(s: string): number {
  let n = 0;
  for (let i = s.indexOf('\n'); i >= 0; i = s.indexOf('\n', i + 1)) n++;
  return n;
}

function checkHeader(name: string, schema: TableSchema, names: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const n of names) {
    if (!schema.byName.has(n)) {
      throw new CliError(
        CliCode.INVALID_INPUT,
        `${name}:1: column "${n}" is not in the table (columns: ${schema.columns.map((c) => c.name).join(', ')})`,
        { details: { file: name, line: 1, column: n } },
      );
    }
    if (seen.has(n)) {
      throw new CliError(CliCode.INVALID_INPUT, `${name}:1: column "${n}" appears twice in the header`, {
        details: { file: name, line: 1, column: n },
      });
    }
    seen.add(n);
  }
  if (!seen.has(schema.primaryKey)) {
    throw new CliError(
      CliCode.INVALID_INPUT,
      `${name}:1: the header lacks the primary key column "${schema.primaryKey}"`,
      { details: { file: name, line: 1, column: schema.primaryKey } },
    );
  }
  return [...names];
}
