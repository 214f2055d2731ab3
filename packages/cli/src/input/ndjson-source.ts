import type { ReadStream } from 'node:fs';
import { readLines } from './line-reader.js';
import type { RecordSource, SourceRecord } from './record-source.js';

/**
 * Newline-delimited JSON: one JSON object per line; blank lines are skipped. A line that is
 * not a JSON object is a bad record (reported with its line), not the end of the input.
 */
export class NdjsonSource implements RecordSource {
  readonly name: string;
  readonly unit = 'line' as const;
  readonly #input: AsyncIterable<Uint8Array | string>;
  readonly #bytes: () => number;
  readonly #maxLineBytes: number | undefined;

  constructor(
    name: string,
    input: AsyncIterable<Uint8Array | string>,
    options: { readonly bytesRead?: () => number; readonly maxLineBytes?: number } = {},
  ) {
    this.name = name;
    this.#input = input;
    this.#bytes = options.bytesRead ?? (() => (input as Partial<ReadStream>).bytesRead ?? 0);
    this.#maxLineBytes = options.maxLineBytes;
  }

  get bytesRead(): number {
    return this.#bytes();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<SourceRecord> {
    const lines = readLines(this.#input, {
      name: this.name,
      ...(this.#maxLineBytes === undefined ? {} : { maxLineBytes: this.#maxLineBytes }),
    });
    for await (const { number, text } of lines) {
      if (text.trim() === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        yield { line: number, raw: text, error: { message: `invalid JSON: ${(err as Error).message}` } };
        continue;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        yield {
          line: number,
          raw: text,
          error: {
            message: `expected a JSON object, got ${Array.isArray(value) ? 'an array' : typeof value}`,
          },
        };
        continue;
      }
      yield { line: number, raw: text, values: value as Record<string, unknown> };
    }
  }
}
