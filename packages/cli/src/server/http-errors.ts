import { ErrorCode } from '@sluice/protocol';
import { CliCode, codeOf } from '../cli-error.js';

const STATUS: Readonly<Record<string, number>> = {
  [ErrorCode.INVALID_ROW]: 400,
  [ErrorCode.INVALID_KEY]: 400,
  [ErrorCode.INVALID_FILTER]: 400,
  [ErrorCode.INVALID_OPTIONS]: 400,
  [ErrorCode.INVALID_SCHEMA]: 400,
  [CliCode.INVALID_INPUT]: 400,
  [CliCode.INVALID_BODY]: 400,
  [CliCode.USAGE]: 400,
  [ErrorCode.NOT_FOUND]: 404,
  [CliCode.BODY_TOO_LARGE]: 413,
  [CliCode.UNSUPPORTED_MEDIA_TYPE]: 415,
  [ErrorCode.BACKPRESSURE]: 429,
  [ErrorCode.FENCED]: 503,
  [ErrorCode.CLOSED]: 503,
  [ErrorCode.SHARD_CRASHED]: 503,
  [CliCode.DRAINING]: 503,
  [CliCode.BUSY]: 503,
};

/** The HTTP status for an error code; 500 for damage, I/O errors and anything unknown. */
export function httpStatusOf(code: string | undefined): number {
  return (code !== undefined ? STATUS[code] : undefined) ?? 500;
}

/** Seconds a client should wait before retrying, for the codes that are worth retrying. */
export function retryAfterOf(code: string | undefined, backpressureSeconds: number): number | undefined {
  if (code === ErrorCode.BACKPRESSURE) return backpressureSeconds;
  if (code === ErrorCode.SHARD_CRASHED || code === CliCode.DRAINING) return 1;
  return undefined;
}

export interface ErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly [detail: string]: unknown;
  };
  /** Rows of the request that were applied before the failure (row bodies only). */
  readonly rows?: number;
}

/** The JSON body of an error response: code, message and the error's details (line, column, row ...). */
export function errorBody(err: unknown, rows?: number): ErrorBody {
  const code = codeOf(err) ?? ErrorCode.INTERNAL;
  const message = err instanceof Error ? err.message : String(err);
  const details = (err as { details?: Record<string, unknown> } | undefined)?.details ?? {};
  const { raw, ...rest } = details;
  return {
    error: { code, message, ...rest, ...(raw === undefined ? {} : { row: raw }) },
    ...(rows === undefined ? {} : { rows }),
  };
}
