/**
 * The one registry of Sluice error codes. Codes are stable API: tests and callers match on
 * `err.code`, never on the message. Every code is documented in README.md#errors.
 */
export const ErrorCode = {
  /** A row, key, filter or option was malformed; nothing was applied. */
  INVALID_ROW: 'SLUICE_INVALID_ROW',
  INVALID_KEY: 'SLUICE_INVALID_KEY',
  INVALID_FILTER: 'SLUICE_INVALID_FILTER',
  INVALID_OPTIONS: 'SLUICE_INVALID_OPTIONS',
  INVALID_SCHEMA: 'SLUICE_INVALID_SCHEMA',
  /** Unflushed bytes stayed above the limit for too long; retry later. */
  BACKPRESSURE: 'SLUICE_BACKPRESSURE',
  /** Another writer took ownership of the table (higher writer epoch). */
  FENCED: 'SLUICE_FENCED',
  /** The table (or handle) was closed. */
  CLOSED: 'SLUICE_CLOSED',
  /** A shard worker thread died; the call's outcome is unknown to the caller. */
  SHARD_CRASHED: 'SLUICE_SHARD_CRASHED',
  /** A storage call failed (EIO, ENOSPC, ...); `cause` holds the system error. */
  IO: 'SLUICE_IO',
  CORRUPT_WAL: 'SLUICE_CORRUPT_WAL',
  CORRUPT_MANIFEST: 'SLUICE_CORRUPT_MANIFEST',
  CORRUPT_GENERATION: 'SLUICE_CORRUPT_GENERATION',
  /** The directory holds no table and no schema was given, or holds something else. */
  NOT_FOUND: 'SLUICE_NOT_FOUND',
  /** Options given at reopen contradict the table's fixed settings. */
  INCOMPATIBLE: 'SLUICE_INCOMPATIBLE',
  /** An invariant of the engine did not hold: a bug, reported instead of hidden. */
  INTERNAL: 'SLUICE_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const RETRYABLE: ReadonlySet<ErrorCode> = new Set([ErrorCode.BACKPRESSURE, ErrorCode.SHARD_CRASHED]);

/** Extra structured facts about a failure (which row, which column, which shard...). */
export interface ErrorDetails {
  readonly row?: number;
  readonly column?: string;
  readonly shard?: number;
  readonly path?: string;
  readonly [key: string]: unknown;
}

export interface WireError {
  readonly code: string;
  readonly message: string;
  readonly details?: ErrorDetails;
  readonly cause?: WireError;
}

export class SluiceError extends Error {
  override readonly name = 'SluiceError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: ErrorDetails }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }

  /** True when the same call may succeed later without any change by the caller. */
  get retryable(): boolean {
    return RETRYABLE.has(this.code);
  }
}

export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * Errors cross threads as plain data: a thrown subclass loses its prototype (and so its
 * code) through postMessage, piscina and comlink. Non-Sluice errors become SLUICE_INTERNAL
 * or SLUICE_IO (system errors with an errno code), keeping their message.
 */
export function toWire(err: unknown): WireError {
  if (err instanceof SluiceError) {
    const cause = err.cause === undefined ? undefined : toWire(err.cause);
    return { code: err.code, message: err.message, details: err.details, ...(cause ? { cause } : {}) };
  }
  if (err instanceof Error) {
    const sys = (err as NodeJS.ErrnoException).code;
    if (typeof sys === 'string' && /^E[A-Z]+$/.test(sys)) {
      return { code: ErrorCode.IO, message: err.message, details: { errno: sys } };
    }
    return { code: ErrorCode.INTERNAL, message: err.message };
  }
  return { code: ErrorCode.INTERNAL, message: String(err) };
}

export function fromWire(wire: WireError): SluiceError {
  const code = KNOWN_CODES.has(wire.code) ? (wire.code as ErrorCode) : ErrorCode.INTERNAL;
  const cause = wire.cause ? fromWire(wire.cause) : undefined;
  return new SluiceError(code, wire.message, { details: wire.details ?? {}, ...(cause ? { cause } : {}) });
}

/** Wraps a system error from a storage call into SLUICE_IO, naming the operation and path. */
export function ioError(op: string, path: string, cause: unknown): SluiceError {
  if (cause instanceof SluiceError) return cause;
  const errno = (cause as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN';
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new SluiceError(ErrorCode.IO, `${op} ${path} failed: ${msg}`, {
    cause,
    details: { path, errno, op },
  });
}
