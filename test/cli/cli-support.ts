import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = path.join(REPO, 'packages/cli/dist/bin.js');

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const dirs: string[] = [];
const children = new Set<ChildProcess>();

export async function tempDir(label: string): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), `sluice-cli-${label}-`));
  dirs.push(d);
  return d;
}

/** Kills every child still running and removes every temp dir made by this file. */
export async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** Runs the built `sluice` binary to its end. */
export function sluice(
  args: readonly string[],
  options: { readonly cwd?: string; readonly input?: string | Uint8Array; readonly timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd ?? REPO,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs the binary and returns raw stdout bytes (for --format arrow). */
export function sluiceBytes(
  args: readonly string[],
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const chunks: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout: Buffer.concat(chunks), stderr });
    });
  });
}

export interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `sluice serve <dir> --port 0 ...` and waits for its "listening on <url>" line. */
export function startServer(dir: string, extra: readonly string[] = []): Promise<Server> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve', dir, '--port', '0', ...extra], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on('exit', (code, signal) => {
        children.delete(child);
        done({ code, signal });
      }),
    );
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}`)), 30_000);
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const m = /listening on (http:\/\/\S+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, child, stderr: () => stderr, exited });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${stderr}`));
    });
  });
}

/** NDJSON lines of rows id in [from, to). */
export function ndjsonRows(from: number, to: number): string {
  let s = '';
  for (let id = from; id < to; id++) {
    s += `{"id":${id},"ts":${1_700_000_000_000 + id},"value":${id / 2},"tag":"t${id % 97}"}\n`;
  }
  return s;
}
