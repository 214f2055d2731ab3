import { ErrorCode } from '@sluice/protocol';
import { CliCode } from './cli-error.js';

/**
 * Exit codes of the `sluice` command. Stable API: scripts branch on them. Documented in
 * packages/cli/README.md#exit-codes and printed by `sluice --help`.
 */
export const ExitCode = {
  /** Everything asked for was done. */
  OK: 0,
  /** An unexpected failure (SLUICE_INTERNAL, a bug, an unknown error). */
  FAILURE: 1,
  /** The command line was wrong: unknown command or option, missing or malformed argument. */
  USAGE: 2,
  /** Input data was rejected: a bad row, key, filter, schema or option (SLUICE_INVALID_*). */
  INVALID_INPUT: 3,
  /** No table at the directory, or a key asked for by `get` does not exist. */
  NOT_FOUND: 4,
  /** `verify` found damage, or a command met a damaged file (SLUICE_CORRUPT_*). */
  DAMAGED: 5,
  /** The table is busy or owned elsewhere: served by `sluice serve`, fenced, backpressure. Retry later. */
  BUSY: 6,
  /** A storage call failed (SLUICE_IO: EIO, ENOSPC, EACCES ...). */
  IO: 7,
  /** Interrupted by SIGINT (128 + 2). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const BY_CODE: Readonly<Record<string, ExitCode>> = {
  [ErrorCode.INVALID_ROW]: ExitCode.INVALID_INPUT,
  [ErrorCode.INVALID_KEY]: ExitCode.INVALID_INPUT,
  [ErrorCode.INVALID_FILTER]: ExitCode.INVALID_INPUT,
  [ErrorCode.INVALID_OPTIONS]: ExitCode.INVALID_INPUT,
  [ErrorCode.INVALID_SCHEMA]: ExitCode.INVALID_INPUT,
  [ErrorCode.INCOMPATIBLE]: ExitCode.INVALID_INPUT,
  [ErrorCode.NOT_FOUND]: ExitCode.NOT_FOUND,
  [ErrorCode.CORRUPT_WAL]: ExitCode.DAMAGED,
  [ErrorCode.CORRUPT_MANIFEST]: ExitCode.DAMAGED,
  [ErrorCode.CORRUPT_GENERATION]: ExitCode.DAMAGED,
  [ErrorCode.BACKPRESSURE]: ExitCode.BUSY,
  [ErrorCode.FENCED]: ExitCode.BUSY,
  [ErrorCode.CLOSED]: ExitCode.BUSY,
  [ErrorCode.SHARD_CRASHED]: ExitCode.FAILURE,
  [ErrorCode.IO]: ExitCode.IO,
  [ErrorCode.INTERNAL]: ExitCode.FAILURE,
  [CliCode.USAGE]: ExitCode.USAGE,
  [CliCode.EXISTS]: ExitCode.INVALID_INPUT,
  [CliCode.BUSY]: ExitCode.BUSY,
  [CliCode.INVALID_INPUT]: ExitCode.INVALID_INPUT,
};

/** The exit code for an error code (an engine SluiceError code or a CLI code). */
export function exitCodeOf(code: string | undefined): ExitCode {
  return (code !== undefined ? BY_CODE[code] : undefined) ?? ExitCode.FAILURE;
}

/** The exit-code table as `sluice --help` prints it. */
export const EXIT_CODE_HELP = `Exit codes:
  0    success
  1    unexpected failure (SLUICE_INTERNAL, SLUICE_SHARD_CRASHED, a bug)
  2    usage error (unknown command or option, missing or malformed argument)
  3    input rejected (SLUICE_INVALID_ROW/KEY/FILTER/OPTIONS/SCHEMA, SLUICE_INCOMPATIBLE,
       an ingest aborted on a bad row, SLUICE_EXISTS)
  4    not found (no table at the directory, or a key given to \`get\` is absent)
  5    damage (\`verify\` found damage, or SLUICE_CORRUPT_*)
  6    busy, retry later (SLUICE_BUSY: the table is being served; SLUICE_FENCED,
       SLUICE_CLOSED, SLUICE_BACKPRESSURE)
  7    storage I/O error (SLUICE_IO)
  130  interrupted (SIGINT)`;
