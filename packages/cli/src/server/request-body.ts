import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { CliCode, CliError } from '../cli-error.js';

/**
 * After an early answer (a bad row, a body over the limit), reads and discards the rest of the
 * body for a while before giving up on the connection ("lingering close"). A client that sends
 * its whole body before reading the answer would otherwise see its upload fail with a broken
 * pipe and never read the 4xx that explains why. Past `maxBytes` or `maxMs` the socket is closed.
 */
export function discardRest(req: IncomingMessage, maxBytes: number, maxMs: number): void {
  if (req.complete || req.destroyed) return;
  let bytes = 0;
  const finish = (): void => {
    clearTimeout(timer);
    req.off('data', onData);
  };
  const giveUp = (): void => {
    finish();
    if (!req.complete) req.socket?.destroy();
  };
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    if (bytes > maxBytes) giveUp();
  };
  const timer = setTimeout(giveUp, maxMs);
  timer.unref();
  req.on('data', onData);
  req.once('end', finish);
  req.once('close', finish);
  req.resume();
}

/**
 * A request body as a byte stream that fails with SLUICE_BODY_TOO_LARGE past `limit` bytes and
 * with SLUICE_INVALID_BODY when the client aborts the upload.
 *
 * The request itself is piped, never iterated: ending an async iteration early destroys the
 * stream, and destroying an unfinished request destroys its socket, which would leave no way to
 * answer a bad row or an oversized body with a 4xx. Unpiped instead, the rest of the body is
 * discarded by Node once the response is sent.
 */
export class LimitedBody extends Transform {
  readonly limit: number;
  bytes = 0;

  constructor(req: IncomingMessage, limit: number) {
    super();
    this.limit = limit;
    req.on('error', (err) => this.destroy(aborted(err)));
    req.on('close', () => {
      if (!req.complete) this.destroy(aborted());
    });
    this.on('error', () => req.unpipe(this));
    this.on('close', () => req.unpipe(this));
    req.pipe(this);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      callback(tooLarge(this.limit));
      return;
    }
    callback(null, chunk);
  }

  /** Bytes read so far (the name progress reporting reads on file streams). */
  get bytesRead(): number {
    return this.bytes;
  }
}

export function tooLarge(limit: number): CliError {
  return new CliError(CliCode.BODY_TOO_LARGE, `the request body is larger than the limit of ${limit} bytes`, {
    details: { limit },
  });
}

function aborted(cause?: unknown): CliError {
  return new CliError(CliCode.INVALID_BODY, 'the client aborted the upload before the body ended', {
    ...(cause === undefined ? {} : { cause }),
    details: { aborted: true },
  });
}
