import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CliCode, CliError } from '../cli-error.js';

/** Runs a child with our stdio and resolves with its exit code (signals as 128 + n). */
function run(command: string, args: readonly string[], cwd?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: 'inherit', ...(cwd ? { cwd } : {}) });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (err) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      reject(err);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', forward);
      process.off('SIGTERM', forward);
      resolve(code ?? (signal === 'SIGINT' ? 130 : signal === 'SIGTERM' ? 143 : 1));
    });
  });
}

/**
 * `sluice demo [options]`: runs the README's demo ingest (packages/sluice's demo.js), passing
 * its options through (--rows, --dir, --shards, --durability, --producers, --batch).
 */
export async function demoCommand(args: readonly string[]): Promise<number> {
  const demo = fileURLToPath(new URL('./demo.js', import.meta.resolve('sluice')));
  if (!existsSync(demo)) {
    throw new CliError(CliCode.USAGE, `the demo is not built (${demo} is missing): run \`pnpm build\``);
  }
  return run(process.execPath, [demo, ...args]);
}

/** The workspace root (holding pnpm-workspace.yaml), from this file's place in packages/cli/dist. */
export function workspaceRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(path.join(dir, 'pnpm-workspace.yaml'))) return dir;
    dir = path.dirname(dir);
  }
  return undefined;
}

/** `sluice bench [args]`: delegates to the workspace's benchmark suite, `pnpm bench [args]`. */
export async function benchCommand(args: readonly string[]): Promise<number> {
  const root = workspaceRoot();
  if (root === undefined) {
    throw new CliError(
      CliCode.USAGE,
      '`sluice bench` runs the bench/ suite of the Sluice repository; no repository found here',
    );
  }
  try {
    return await run('pnpm', ['run', 'bench', ...args], root);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CliError(CliCode.USAGE, '`sluice bench` needs pnpm on the PATH (npm i -g pnpm@10)', {
        cause: err,
      });
    }
    throw err;
  }
}
