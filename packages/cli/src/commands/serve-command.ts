import path from 'node:path';
import { open } from 'sluice';
import { ExitCode } from '../exit-codes.js';
import { HttpService } from '../server/http-service.js';
import { acquireServeLock, releaseServeLock, updateServeLock } from '../serve-lock.js';
import { readMeta, warnToStderr } from '../table-access.js';

export interface ServeOptions {
  readonly host: string;
  readonly port: number;
  readonly durability?: 'sync' | 'async';
  readonly memtableBytes?: number;
  readonly bodyLimit?: number;
  readonly batchRows?: number;
  readonly backpressureTimeoutMs?: number;
  readonly retryAfter?: number;
  readonly drainTimeoutMs: number;
  readonly log?: boolean;
}

/**
 * `sluice serve <dir>`: the HTTP ingest service. Prints `listening on <url>` once ready. SIGTERM
 * (or SIGINT) drains: stop accepting, finish running requests, sync every WAL, close, exit 0.
 */
export async function serveCommand(dir: string, options: ServeOptions): Promise<number> {
  const root = path.resolve(dir);
  await readMeta(root);
  await acquireServeLock(root, `http://${options.host}:${options.port}`);
  let service: HttpService | undefined;
  try {
    const db = await open(root, {
      durability: options.durability ?? 'sync',
      ...(options.memtableBytes ? { memtableBytes: options.memtableBytes } : {}),
      // A service answers 429 quickly rather than holding a request for the engine's default 30 s.
      backpressureTimeoutMs: options.backpressureTimeoutMs ?? 5000,
      onWarning: warnToStderr,
    });
    service = new HttpService(db, {
      ...(options.bodyLimit ? { bodyLimit: options.bodyLimit } : {}),
      ...(options.batchRows ? { batchRows: options.batchRows } : {}),
      ...(options.retryAfter ? { retryAfterSeconds: options.retryAfter } : {}),
      log: options.log ?? false,
    });
    const url = await service.listen(options.host, options.port);
    await updateServeLock(root, url);
    process.stdout.write(
      `listening on ${url} (table ${root}, durability ${options.durability ?? 'sync'}, ${db.stats().shards.length} shards)\n`,
    );
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGTERM', () => resolve('SIGTERM'));
      process.once('SIGINT', () => resolve('SIGINT'));
    });
    process.stderr.write(`sluice: ${signal}: draining (no new connections; running requests finish)\n`);
    const started = performance.now();
    await service.drain(options.drainTimeoutMs);
    process.stderr.write(`sluice: drained and closed in ${Math.round(performance.now() - started)} ms\n`);
    return ExitCode.OK;
  } finally {
    await releaseServeLock(root);
  }
}
