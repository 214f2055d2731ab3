/**
 * Runs test/reliability/fixtures/ingest-child.mjs in its own Node process and turns its ack
 * journal into oracle updates.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FaultRule } from '@sluice/core';
import type { Oracle } from './oracle.js';
import { deleteEffects, putEffects } from './table.js';
import type { HarnessRow } from './table.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/ingest-child.mjs', import.meta.url));
const REPO = path.resolve(path.dirname(FIXTURE), '..', '..', '..');

export interface RoleConfig {
  readonly rules?: readonly FaultRule[];
  readonly powerLoss?: { readonly journal: string };
}

export interface ChildConfig {
  readonly dir: string;
  readonly ackJournal: string;
  readonly seed: number;
  /** First operation id: ids stay unique across the runs of one test. */
  readonly opBase: number;
  readonly producers?: number;
  readonly keys?: number;
  readonly maxRows?: number;
  readonly maxOps?: number;
  readonly deleteRatio?: number;
  /** Explicit db.flush() every so often; 0: never. */
  readonly flushEveryMs?: number;
  /** A put, flush or close that takes longer is reported as failed with code HANG. Default 30 s. */
  readonly hangMs?: number;
  /** JSON-able open options (schema etc. when creating). */
  readonly options?: Record<string, unknown>;
  readonly roles?: { readonly shard?: RoleConfig; readonly flush?: RoleConfig; readonly main?: RoleConfig };
}

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class IngestChild {
  readonly child: ChildProcess;
  readonly config: ChildConfig;
  /** Resolves when the table is open and ingest has started; false when the child died first. */
  readonly ready: Promise<boolean>;
  readonly exited: Promise<ChildExit>;
  stderr = '';
  #exit: ChildExit | undefined;

  constructor(config: ChildConfig) {
    this.config = config;
    this.child = spawn(process.execPath, [FIXTURE, JSON.stringify(config)], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-20_000);
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    });
    this.ready = new Promise<boolean>((resolve) => {
      let out = '';
      this.child.stdout!.setEncoding('utf8');
      this.child.stdout!.on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('ready\n')) resolve(true);
      });
      void this.exited.then(() => resolve(false));
    });
  }

  get hasExited(): boolean {
    return this.#exit !== undefined;
  }

  /** kill -9 (if still alive), then waits until the process is gone. */
  async kill9(): Promise<ChildExit> {
    if (this.#exit === undefined) this.child.kill('SIGKILL');
    return this.exited;
  }
}

export interface JournalSummary {
  readonly intents: number;
  readonly acked: number;
  readonly failed: number;
  readonly pending: number;
  /** Rejection codes seen, with counts. */
  readonly codes: Record<string, number>;
  readonly flushOk: number;
  readonly flushFailed: Record<string, number>;
  /** 'E' lines: open/close failures, verbatim. */
  readonly errors: string[];
  readonly openMs: number | undefined;
  readonly closed: boolean;
  /** Ids of acknowledged operations, in journal order. */
  readonly ackedIds: number[];
  /** Oracle violations in the state the child read right after opening. */
  readonly snapshotViolations: string[];
}

/**
 * Feeds a child's ack journal to the oracle (intents in order, then outcomes). A last line
 * without its newline was cut by the kill and is ignored: its write had not returned.
 */
export function applyJournal(file: string, oracle: Oracle): JournalSummary {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const lines = text.split('\n');
  lines.pop(); // '' after the last newline, or a torn line
  let intents = 0;
  let acked = 0;
  let failed = 0;
  let flushOk = 0;
  let openMs: number | undefined;
  let closed = false;
  const codes: Record<string, number> = {};
  const flushFailed: Record<string, number> = {};
  const errors: string[] = [];
  const ackedIds: number[] = [];
  const snapshotViolations: string[] = [];
  for (const line of lines) {
    const [tag, a, b, c] = line.split(' ');
    switch (tag) {
      case 'I': {
        const id = Number(a);
        if (b === 'P') {
          const rows: HarnessRow[] = c!.split(',').map((kv) => {
            const [k, v] = kv.split('=');
            return { id: Number(k), v: Number(v), p: '' };
          });
          oracle.intent(id, putEffects(rows), writerOf(id));
        } else {
          oracle.intent(id, deleteEffects(c!.split(',').map(Number)), writerOf(id));
        }
        intents++;
        break;
      }
      case 'A':
        oracle.ack(Number(a));
        ackedIds.push(Number(a));
        acked++;
        break;
      case 'F':
        oracle.fail(Number(a), b!);
        codes[b!] = (codes[b!] ?? 0) + 1;
        failed++;
        break;
      case 'Y':
        flushOk++;
        break;
      case 'X':
        flushFailed[a!] = (flushFailed[a!] ?? 0) + 1;
        break;
      case 'O':
        openMs = Number(a);
        break;
      case 'S': {
        // What the child read right after opening: everything it could have served to readers.
        // It must agree with the oracle, and from then on it must survive (even a power cut).
        const seen = new Map<bigint, bigint>();
        if (a) {
          for (const kv of a.split(',')) {
            const [k, v] = kv.split('=');
            seen.set(BigInt(k!), BigInt(v!));
          }
        }
        const res = oracle.check(seen);
        for (const v of res.violations)
          snapshotViolations.push(`at the child's open: ${v.kind} key ${v.key}: ${v.detail}`);
        oracle.settle(seen);
        break;
      }
      case 'E':
        errors.push(line);
        break;
      case 'C':
        closed = true;
        break;
    }
  }
  return {
    intents,
    acked,
    failed,
    pending: intents - acked - failed,
    codes,
    flushOk,
    flushFailed,
    errors,
    openMs,
    closed,
    ackedIds,
    snapshotViolations,
  };
}

/** Operation ids are `opBase + n`, opBase a multiple of 1 000 000 per child run. */
export function writerOf(id: number): number {
  return Math.floor(id / 1_000_000);
}
