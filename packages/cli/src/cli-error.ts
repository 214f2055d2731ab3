import { isSluiceError } from '@sluice/protocol';

/**
 * Error codes the CLI and the HTTP service add to the engine's registry (@sluice/protocol's
 * ErrorCode). Same shape and stability rules: upper-case, `SLUICE_` prefix, matched by code.
 */
export const CliCode = {
  /** The command line was wrong. */
  USAGE: 'SLUICE_USAGE',
  /** `init` on a directory that already holds a table. */
  EXISTS: 'SLUICE_EXISTS',
  /** The table is owned by a running `sluice serve`; opening it would fence the server. */
  BUSY: 'SLUICE_BUSY',
  /** An input file could not be read as its format (bad header, not Arrow, not Parquet ...). */
  INVALID_INPUT: 'SLUICE_INVALID_INPUT',
  /** HTTP: the request body is larger than the service's limit (413). */
  BODY_TOO_LARGE: 'SLUICE_BODY_TOO_LARGE',
  /** HTTP: the Content-Type is not one the endpoint reads (415). */
  UNSUPPORTED_MEDIA_TYPE: 'SLUICE_UNSUPPORTED_MEDIA_TYPE',
  /** HTTP: the body is not well-formed (bad JSON request, broken Arrow stream) (400). */
  INVALID_BODY: 'SLUICE_INVALID_BODY',
  /** HTTP: the service is shutting down (503). */
  DRAINING: 'SLUICE_DRAINING',
} as const;

export type CliCode = (typeof CliCode)[keyof typeof CliCode];

/** Facts about where bad input was found, for reports and HTTP error bodies. */
export interface InputLocation {
  readonly file?: string;
  /** 1-based line (CSV, NDJSON) or record number (Arrow, Parquet). */
  readonly line?: number;
  readonly column?: string;
  /** What `line` counts: text lines or records. */
  readonly unit?: 'line' | 'row';
}

/** An error raised by the CLI itself (not the engine), with a stable code. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly code: CliCode | string;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: CliCode | string,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options?.details ?? {};
  }
}

/** The stable code of any error the CLI may meet, or undefined for foreign errors. */
export function codeOf(err: unknown): string | undefined {
  if (err instanceof CliError || isSluiceError(err)) return err.code;
  return undefined;
}

/** "file:12" / "file:row 12" / "line 12" — where a bad input record is. */
export function formatLocation(loc: InputLocation): string {
  const parts: string[] = [];
  const line =
    loc.line === undefined ? undefined : loc.unit === 'row' ? `row ${loc.line}` : `line ${loc.line}`;
  if (loc.file !== undefined)
    parts.push(line === undefined ? loc.file : `${loc.file}:${loc.unit === 'row' ? line : loc.line}`);
  else if (line !== undefined) parts.push(line);
  if (loc.column !== undefined) parts.push(`column "${loc.column}"`);
  return parts.join(': ');
}

/**
 * One clear line for an error: `SLUICE_CODE: message`. With `verbose`, the stack and the
 * cause chain follow on later lines.
 */
export function formatError(err: unknown, verbose: boolean): string {
  const code = codeOf(err) ?? (err instanceof Error ? 'SLUICE_INTERNAL' : 'SLUICE_INTERNAL');
  const message = err instanceof Error ? err.message : String(err);
  const head = `${code}: ${message.replace(/\s*\n\s*/g, ' ')}`;
  if (!verbose) return head;
  const lines = [head];
  let e: unknown = err;
  let depth = 0;
  while (e instanceof Error && depth < 8) {
    if (e.stack) lines.push(e.stack);
    e = e.cause;
    depth++;
    if (e !== undefined) lines.push('caused by:');
  }
  if (e !== undefined && !(e instanceof Error)) lines.push(String(e));
  return lines.join('\n');
}
