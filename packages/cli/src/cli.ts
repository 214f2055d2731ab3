import { Command, CommanderError, Option } from 'commander';
import { codeOf, formatError } from './cli-error.js';
import type { IngestOptions } from './commands/ingest-command.js';
import type { ScanCommandOptions } from './commands/read-commands.js';
import type { ServeOptions } from './commands/serve-command.js';
import { EXIT_CODE_HELP, ExitCode, exitCodeOf } from './exit-codes.js';
import { INPUT_FORMATS } from './input/record-source.js';
import { byteSize, nameList, nonNegativeInt, port, positiveInt, positiveNumber } from './option-parsers.js';

/** Same as output/row-formats.ts, kept here so that parsing arguments loads no command code. */
const OUTPUT_FORMATS = ['table', 'ndjson', 'csv', 'arrow'] as const;

const VERSION = '0.1.0';

const FILTER_HELP = `Filters are JSON (or @file.json), the engine's filter data:
  {"column":"value","op":">","value":10}        ops: = != < <= > >=
  {"column":"tag","op":"in","values":["a","b"]}
  {"column":"tag","op":"is null"}                 also "is not null"
  {"and":[...]}  {"or":[...]}  {"not":{...}}
int64 constants beyond 2^53 go as decimal strings; timestamps as epoch ms or ISO-8601 text.`;

/**
 * The `sluice` command line. Every command returns an exit code (see exit-codes.ts); errors are
 * printed by runCli as one line with their code.
 */
export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('sluice')
    .description('Sluice: a multicore LSM ingest engine for Node.js — command line and HTTP ingest service')
    .version(VERSION, '-V, --version')
    .option('--verbose', 'print stack traces and causes with errors')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `\n${EXIT_CODE_HELP}\n\nErrors print as one line: "sluice: SLUICE_CODE: message" (stack with --verbose).`,
    )
    // Before any subcommand is added: subcommands copy this setting when they are created.
    .exitOverride();

  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      setExit(await fn(...args));
    };

  program
    .command('init')
    .description('create a table: schema, primary key and shard count are fixed at creation')
    .argument('<dir>', 'table directory (created if missing)')
    .requiredOption(
      '--schema <schema>',
      'a JSON file, inline JSON {"id":"int64",...}, or id:int64,tag:utf8,emb:float32[8]',
    )
    .option('--key <column>', 'primary key column (int64 or utf8)')
    .option('--shards <n>', 'shard threads (default: the number of cores)', positiveInt)
    .addHelpText(
      'after',
      `
Types: int32 int64 float32 float64 bool utf8 timestamp float32[N]

Example:
  sluice init ./events --schema 'id:int64,ts:timestamp,value:float64,tag:utf8' --key id --shards 4`,
    )
    .action(
      act(async (dir: string, o: { schema: string; key?: string; shards?: number }) =>
        (await import('./commands/init-command.js')).initCommand(dir, o),
      ),
    );

  program
    .command('ingest')
    .description('stream CSV, NDJSON, Arrow IPC (file or stream) and Parquet files into a table')
    .argument('<dir>', 'table directory')
    .argument('<files...>', "input files ('-' for stdin, with --format)")
    .addOption(
      new Option('--format <format>', 'input format (default: by extension, then by content)').choices(
        INPUT_FORMATS,
      ),
    )
    .option('--skip-bad', 'skip bad rows (each reported with file, line and column) instead of aborting')
    .option('--bad-rows <file>', 'also write every skipped row as NDJSON to this file')
    .option('--batch-rows <n>', 'rows per put (default 8192)', positiveInt)
    .option('--delimiter <char>', 'CSV field delimiter (default "," and tab for .tsv)')
    .option('--no-header', 'CSV without a header line: fields are in schema column order')
    .option('--empty-strings', 'CSV: empty fields of utf8 columns are empty strings, not nulls')
    .addOption(
      new Option('--progress <mode>', 'progress display')
        .choices(['auto', 'bar', 'plain', 'none'])
        .default('auto'),
    )
    .option(
      '--progress-interval <seconds>',
      'seconds between plain progress lines (default 5)',
      positiveNumber,
    )
    .option('--dry-run', 'read and validate every row, write nothing')
    .addOption(new Option('--durability <mode>', 'WAL durability while ingesting').choices(['sync', 'async']))
    .option('--memtable-bytes <size>', 'memtable size while ingesting (e.g. 64MiB)', byteSize)
    .addHelpText(
      'after',
      `
Inputs are streamed (memory stays bounded for inputs larger than RAM). A bad row aborts the
ingest (exit 3) with its file, line and column; nothing of the batch holding it is applied, and
earlier batches are. With --skip-bad it is skipped and counted instead.

CSV: RFC 4180 quoting; an empty field is null (see --empty-strings); values are converted
to the column types (timestamps as epoch ms or ISO-8601; vectors as [1,2,3]).
NDJSON: one object per line; int64 beyond 2^53 as decimal strings.

Progress: a bar on a terminal (rows, rows/s, bytes, ETA), plain periodic lines otherwise (stderr).

Example:
  sluice ingest ./events data/*.csv events.parquet --skip-bad`,
    )
    .action(
      act(async (dir: string, files: string[], o: IngestOptions) =>
        (await import('./commands/ingest-command.js')).ingestCommand(dir, files, o),
      ),
    );

  program
    .command('get')
    .description('print the latest row of each key (NDJSON), from one snapshot; exit 4 if a key is absent')
    .argument('<dir>', 'table directory')
    .argument('<keys...>', 'primary keys')
    .addOption(
      new Option('--format <format>', 'output format').choices(['ndjson', 'table']).default('ndjson'),
    )
    .action(
      act(async (dir: string, keys: string[], o: { format?: 'ndjson' | 'table' }) =>
        (await import('./commands/read-commands.js')).getCommand(dir, keys, o),
      ),
    );

  program
    .command('scan')
    .description('print the newest live version of every key, optionally filtered')
    .argument('<dir>', 'table directory')
    .option('--columns <names>', 'comma-separated columns to print (default: all)', nameList)
    .option('--filter <json>', 'filter as JSON, or @file.json')
    .option('--limit <n>', 'at most this many rows', nonNegativeInt)
    .addOption(
      new Option(
        '--format <format>',
        'output format (default: table on a terminal, ndjson otherwise)',
      ).choices(OUTPUT_FORMATS),
    )
    .option('--output <file>', 'write to a file instead of stdout')
    .addHelpText(
      'after',
      `\n${FILTER_HELP}\n\nExample:\n  sluice scan ./events --filter '{"column":"value","op":">=","value":0.5}' --limit 10 --format csv`,
    )
    .action(
      act(async (dir: string, o: ScanCommandOptions) =>
        (await import('./commands/read-commands.js')).scanCommand(dir, o),
      ),
    );

  program
    .command('count')
    .description('count live rows (matching --filter)')
    .argument('<dir>', 'table directory')
    .option('--filter <json>', 'filter as JSON, or @file.json')
    .addHelpText('after', `\n${FILTER_HELP}`)
    .action(
      act(async (dir: string, o: { filter?: string }) =>
        (await import('./commands/read-commands.js')).countCommand(dir, o),
      ),
    );

  program
    .command('stats')
    .description('per shard: rows, memtables, generations, WAL bytes and files')
    .argument('<dir>', 'table directory')
    .option('--json', 'print JSON')
    .action(
      act(async (dir: string, o: { json?: boolean }) =>
        (await import('./commands/stats-command.js')).statsCommand(dir, o),
      ),
    );

  program
    .command('flush')
    .description('write every memtable (and rows recovered from the WAL) to generation files')
    .argument('<dir>', 'table directory')
    .action(act(async (dir: string) => (await import('./commands/read-commands.js')).flushCommand(dir)));

  program
    .command('verify')
    .description('check every checksum, manifest and file reference, without opening the table')
    .argument('<dir>', 'table directory')
    .option('--json', 'print the report as JSON')
    .option('--strict', 'fail (exit 5) on warnings too, e.g. a torn WAL tail left by a crash')
    .option('--quiet', 'leave informational findings out')
    .addHelpText(
      'after',
      `
Reads sluice.json, every manifest version, every generation file and every WAL record, and
writes nothing (safe while the table is in use). Exit 0: sound; 5: damage found (each finding
names its file); 4: no table. A torn tail at the end of the newest WAL segment (what a crash
leaves, cut at the next open) is a warning.`,
    )
    .action(
      act(async (dir: string, o: { json?: boolean; strict?: boolean; quiet?: boolean }) =>
        (await import('./commands/verify-command.js')).verifyCommand(dir, o),
      ),
    );

  program
    .command('serve')
    .description('serve a table over HTTP (ingest, get, scan, delete, metrics)')
    .argument('<dir>', 'table directory')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'port (0 picks a free one; the URL is printed)', port, 8080)
    .addOption(
      new Option('--durability <mode>', 'responses wait for this durability')
        .choices(['sync', 'async'])
        .default('sync'),
    )
    .option('--body-limit <size>', 'largest row body (default 1GiB)', byteSize)
    .option('--batch-rows <n>', 'rows per put while a body streams in (default 4096)', positiveInt)
    .option('--memtable-bytes <size>', 'memtable size (e.g. 64MiB)', byteSize)
    .option(
      '--backpressure-timeout-ms <ms>',
      'how long a put waits under backpressure before 429 (default 5000)',
      nonNegativeInt,
    )
    .option('--retry-after <seconds>', 'Retry-After sent with 429 (default 1)', positiveInt)
    .option(
      '--drain-timeout-ms <ms>',
      'on SIGTERM, how long running requests may take before they are cut',
      nonNegativeInt,
      30_000,
    )
    .option('--log', 'log every request (JSON lines on stdout)')
    .addHelpText(
      'after',
      `
Routes:
  POST   /v1/rows        body: NDJSON (application/x-ndjson) or Arrow IPC stream
                         (application/vnd.apache.arrow.stream), streamed into put; answers
                         {"rows": n} once acknowledged at the configured durability
  DELETE /v1/rows        body: {"keys": [...]}
  GET    /v1/rows/:key   the row as JSON, or 404
  POST   /v1/scan        body: {"columns","filter","limit"}; NDJSON, or an Arrow IPC stream
                         with Accept: application/vnd.apache.arrow.stream
  POST   /v1/flush       flush every memtable
  GET    /metrics        Prometheus text format
  GET    /healthz        200 serving, 503 draining or degraded
Errors: JSON {"error":{"code","message",...},"rows"}; 400 bad input (with line, column and the
row), 404, 413 body too large, 415, 429 backpressure (Retry-After), 503 fenced/closed/draining.
SIGTERM drains: stops accepting, finishes running requests, syncs the WAL, closes, exits 0.`,
    )
    .action(
      act(async (dir: string, o: ServeOptions) =>
        (await import('./commands/serve-command.js')).serveCommand(dir, o),
      ),
    );

  program
    .command('demo')
    .description("run the README's demo ingest (options pass through: --rows N --dir PATH --shards N ...)")
    .argument('[args...]', 'demo options')
    .allowUnknownOption()
    .helpOption('-h, --help', 'show help for demo')
    .action(
      act(async (args: string[]) => (await import('./commands/delegate-commands.js')).demoCommand(args)),
    );

  program
    .command('bench')
    .description('run the benchmark suite (delegates to `pnpm bench` in the repository)')
    .argument('[args...]', 'arguments for the suite')
    .allowUnknownOption()
    .addHelpText(
      'after',
      "\nOptions pass through: sluice bench --quick --only sluice. The suite's own help: sluice bench -- --help",
    )
    .action(
      act(async (args: string[]) => (await import('./commands/delegate-commands.js')).benchCommand(args)),
    );

  return program;
}

/** Runs the CLI on argv (as process.argv); resolves with the exit code, never throws. */
export async function runCli(argv: readonly string[]): Promise<number> {
  let exit: number = ExitCode.OK;
  const program = buildProgram((code) => {
    exit = code;
  });
  try {
    await program.parseAsync([...argv]);
    return exit;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the message (or the help) already.
      return err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
        ? ExitCode.OK
        : ExitCode.USAGE;
    }
    const verbose = program.opts<{ verbose?: boolean }>().verbose === true || argv.includes('--verbose');
    process.stderr.write(`sluice: ${formatError(err, verbose)}\n`);
    return exitCodeOf(codeOf(err));
  }
}
