import { readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CliCode, CliError } from './cli-error.js';

/**
 * `<table>/.serve.json` marks a table owned by a running `sluice serve`. Opening a table takes
 * ownership (a higher writer epoch fences the previous owner), so any other command that
 * opened it would silently fence the server; commands check this marker first and refuse.
 * The marker names a process id: one whose process is gone (a crash, kill -9) is stale and
 * ignored.
 */
export const SERVE_LOCK = '.serve.json';

export interface ServeLock {
  readonly pid: number;
  readonly url: string;
  readonly startedAt: string;
}

function lockPath(root: string): string {
  return path.join(root, SERVE_LOCK);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live serve marker of the table, or undefined (none, unreadable or stale). */
export async function readServeLock(root: string): Promise<ServeLock | undefined> {
  let text: string;
  try {
    text = await readFile(lockPath(root), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const lock = JSON.parse(text) as ServeLock;
    return Number.isInteger(lock.pid) && alive(lock.pid) ? lock : undefined;
  } catch {
    return undefined;
  }
}

/** Refuses with SLUICE_BUSY when a live server owns the table. */
export async function assertNotServed(root: string): Promise<void> {
  const lock = await readServeLock(root);
  if (lock) {
    throw new CliError(
      CliCode.BUSY,
      `${root} is being served by process ${lock.pid} at ${lock.url}; opening it here would fence that server. ` +
        'Use the HTTP API, or stop the server first',
      { details: { pid: lock.pid, url: lock.url } },
    );
  }
}

/** Takes the marker for this process (exclusive create; a stale marker is replaced). */
export async function acquireServeLock(root: string, url: string): Promise<void> {
  const body = `${JSON.stringify({ pid: process.pid, url, startedAt: new Date().toISOString() })}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockPath(root), body, { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      await assertNotServed(root);
      await unlink(lockPath(root)).catch(() => undefined);
    }
  }
  await assertNotServed(root);
}

/** Updates the marker's URL once the port is known. */
export async function updateServeLock(root: string, url: string): Promise<void> {
  await writeFile(
    lockPath(root),
    `${JSON.stringify({ pid: process.pid, url, startedAt: new Date().toISOString() })}\n`,
  );
}

/** Removes the marker if it is this process's. */
export async function releaseServeLock(root: string): Promise<void> {
  try {
    const lock = JSON.parse(await readFile(lockPath(root), 'utf8')) as ServeLock;
    if (lock.pid === process.pid) await unlink(lockPath(root));
  } catch {
    // Already gone, or never ours.
  }
}
