import { CliCode, CliError } from '../cli-error.js';

export interface Line {
  /** 1-based line number. */
  readonly number: number;
  /** The line without its terminator (\n or \r\n). */
  readonly text: string;
}

/**
 * Splits a byte stream into text lines as it arrives: memory holds one chunk plus the
 * current partial line, never the whole input. Splitting on the byte 0x0A is safe in UTF-8
 * (no multi-byte sequence contains it). A line longer than `maxLineBytes` is an error, so a
 * newline-free input cannot grow the buffer without bound.
 */
export async function* readLines(
  chunks: AsyncIterable<Uint8Array | string>,
  options: { readonly maxLineBytes?: number; readonly name?: string } = {},
): AsyncGenerator<Line> {
  const max = options.maxLineBytes ?? 64 << 20;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let number = 0;
  const take = (tail: Buffer): string => {
    const whole = pending.length === 0 ? tail : Buffer.concat([...pending, tail]);
    pending = [];
    pendingBytes = 0;
    const end = whole.length > 0 && whole[whole.length - 1] === 0x0d ? whole.length - 1 : whole.length;
    return whole.toString('utf8', 0, end);
  };
  for await (const chunk of chunks) {
    const buf =
      typeof chunk === 'string'
        ? Buffer.from(chunk)
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      number++;
      yield { number, text: take(buf.subarray(start, nl)) };
      start = nl + 1;
    }
    if (start < buf.length) {
      pendingBytes += buf.length - start;
      if (pendingBytes > max) {
        throw new CliError(
          CliCode.INVALID_INPUT,
          `${options.name ?? 'input'}:${number + 1}: line longer than ${max} bytes`,
          { details: { line: number + 1 } },
        );
      }
      // Copy: the chunk's memory may be reused by the stream after we yield.
      pending.push(Buffer.from(buf.subarray(start)));
    }
  }
  if (pendingBytes > 0) {
    number++;
    yield { number, text: take(Buffer.alloc(0)) };
  }
}
