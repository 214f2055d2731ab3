// Durability check: runs a tiny W1 of each engine and mode under `strace -f` and counts the
// syscalls that make data durable, per acknowledged batch.
//
//   node bench/strace.mjs [--only engine,...]     (also run by `pnpm bench` unless --no-strace)
//
// Each (engine, mode) runs twice, with SMALL and LARGE batches; the per-batch figure is the
// difference divided by the extra batches, so syncs done once at open/close cancel out.
// Counted: fsync, fdatasync, msync, sync_file_range, syncfs, sync, and writes to file descriptors
// opened with O_SYNC/O_DSYNC (LMDB writes its meta page that way). io_uring_enter is reported
// separately: a sync submitted through io_uring would not show up as a syscall. Counts do not say
// whether a sync happens before or after the ack (lmdb's async commit syncs after it).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SMALL = 5;
const LARGE = 25;
const SYNC_CALLS = ['fsync', 'fdatasync', 'msync', 'sync_file_range', 'syncfs', 'sync'];
const WRITE_CALLS = ['write', 'pwrite64', 'writev', 'pwritev', 'pwritev2'];
const TRACE = [...SYNC_CALLS, ...WRITE_CALLS, 'openat', 'close', 'io_uring_enter'].join(',');

export function straceAvailable() {
  return spawnSync('strace', ['-V'], { encoding: 'utf8' }).status === 0;
}

/** Counts from one strace output file. */
function parseTrace(text) {
  const counts = Object.fromEntries(SYNC_CALLS.map((c) => [c, 0]));
  let dsyncWrites = 0;
  let ioUring = 0;
  const dsyncFds = new Set();
  const dsyncFiles = new Set();
  for (const line of text.split('\n')) {
    // "PID call(args) = ret", or an interrupted call: "PID call(args <unfinished ...>" + "<... call resumed>".
    const m = /^\d+\s+(?:<\.\.\. )?(\w+)[( ]/.exec(line);
    if (!m) continue;
    const call = m[1];
    const resumed = line.includes('resumed>');
    if (call === 'openat') {
      if (resumed || line.includes('<unfinished')) continue;
      if (/O_D?SYNC/.test(line)) {
        const fd = /= (\d+)$/.exec(line);
        if (fd) dsyncFds.add(fd[1]);
        const file = /"([^"]*)"/.exec(line);
        if (file) dsyncFiles.add(path.basename(file[1]));
      }
    } else if (call === 'close') {
      const fd = /close\((\d+)/.exec(line);
      if (fd) dsyncFds.delete(fd[1]);
    } else if (SYNC_CALLS.includes(call)) {
      if (!resumed) counts[call]++;
    } else if (WRITE_CALLS.includes(call)) {
      const fd = new RegExp(`${call}\\((\\d+)`).exec(line);
      if (!resumed && fd && dsyncFds.has(fd[1])) dsyncWrites++;
    } else if (call === 'io_uring_enter') {
      if (!resumed) ioUring++;
    }
  }
  return { counts, dsyncWrites, ioUring, dsyncFiles: [...dsyncFiles] };
}

function traceRun(engine, mode, batches) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sluice-strace-${engine}-`));
  const out = path.join(dir, 'strace.txt');
  const data = path.join(dir, 'data');
  try {
    const r = spawnSync(
      'strace',
      [
        '-f',
        '-qq',
        '-o',
        out,
        '-e',
        `trace=${TRACE}`,
        process.execPath,
        path.join(HERE, 'trial.mjs'),
        '--engine',
        engine,
        '--workload',
        'w1',
        '--mode',
        mode,
        '--rows',
        String(batches * 1000),
        '--dir',
        data,
        '--no-verify',
      ],
      { encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 },
    );
    const line = (r.stdout ?? '').split('\n').find((l) => l.startsWith('BENCH_RESULT '));
    const result = line ? JSON.parse(line.slice('BENCH_RESULT '.length)) : undefined;
    if (!result || result.status !== 'ok') {
      return {
        error: result?.reason ?? result?.error ?? `exit ${r.status}: ${(r.stderr ?? '').slice(-300)}`,
      };
    }
    return parseTrace(readFileSync(out, 'utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * For every (engine, mode) in `plan` ([{ engine, mode }]): sync syscalls per acknowledged batch.
 * Returns [{ engine, mode, syncsPerBatch, byCall, dsyncWritesPerBatch, ioUring, verdict }].
 */
export function straceCheck(plan, log = console.error) {
  const out = [];
  for (const { engine, mode } of plan) {
    log(`strace: ${engine} ${mode} ...`);
    const a = traceRun(engine, mode, SMALL);
    const b = a.error ? a : traceRun(engine, mode, LARGE);
    if (b.error) {
      out.push({ engine, mode, error: String(b.error).split('\n')[0] });
      continue;
    }
    const extra = LARGE - SMALL;
    const byCall = {};
    let syncs = 0;
    for (const c of SYNC_CALLS) {
      const d = (b.counts[c] - a.counts[c]) / extra;
      if (b.counts[c] > 0) byCall[c] = round(d);
      syncs += d;
    }
    const dsync = (b.dsyncWrites - a.dsyncWrites) / extra;
    const perBatch = syncs + dsync;
    const verdict =
      perBatch >= 0.95
        ? 'syncs every batch'
        : perBatch > 0.05
          ? 'syncs some batches (group commit or timer)'
          : 'no sync per batch';
    out.push({
      engine,
      mode,
      syncsPerBatch: round(syncs),
      dsyncWritesPerBatch: round(dsync),
      byCall,
      dsyncFiles: b.dsyncFiles,
      ioUringEnters: b.ioUring,
      verdict,
    });
  }
  return out;
}

function round(x) {
  return Math.round(x * 100) / 100;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const { ENGINES } = await import('./engines/index.mjs');
  const only = values.only?.split(',');
  const plan = [];
  for (const engine of ENGINES) {
    if (only && !only.includes(engine)) continue;
    for (const mode of ['durable', 'buffered']) plan.push({ engine, mode });
  }
  if (!straceAvailable()) {
    console.error('strace is not installed (apt-get install -y strace)');
    process.exit(1);
  }
  console.log(JSON.stringify(straceCheck(plan), null, 2));
}
