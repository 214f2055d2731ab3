// The benchmark runner: `pnpm bench [--quick] [--only a,b,...] [--reps N] ...` (see README.md).
// Builds the workspace, installs bench/ on demand, checks durability with strace, then runs every
// trial in a fresh process and writes results/<date>.json, .md and .svg.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { prng } from './data.mjs';
import { ENGINES } from './engines/index.mjs';
import { WORKLOADS, markdown, svg } from './report.mjs';
import { straceAvailable, straceCheck } from './strace.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    reps: { type: 'string' },
    rows: { type: 'string' },
    gets: { type: 'string' },
    'max-seconds': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    'no-install': { type: 'boolean', default: false },
    'no-strace': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (opt.help) {
  console.log(`usage: pnpm bench [options]
  --quick             100k rows, 10k gets, 1 repetition, 60 s cap per phase (a smoke run)
  --only LIST         comma-separated engines and/or workloads, e.g. --only sluice,lmdb,w1,w2
                      engines: ${ENGINES.join(', ')}
                      workloads: ${Object.keys(WORKLOADS).join(', ')}
  --reps N            repetitions of every trial (default 3; quick: 1)
  --rows N            rows per trial (default 1,000,000; quick: 100,000)
  --gets N            W2 point gets (default 100,000; quick: 10,000)
  --max-seconds S     time cap per measured phase; a capped run is reported as partial (default 180; quick: 60)
  --no-build          skip \`pnpm build\` of the workspace
  --no-install        skip installing bench/ dependencies
  --no-strace         skip the strace durability check`);
  process.exit(0);
}

const quick = opt.quick;
const options = {
  quick,
  reps: Math.max(1, Number(opt.reps ?? (quick ? 1 : 3))),
  rows: Number(opt.rows ?? (quick ? 100_000 : 1_000_000)),
  gets: Number(opt.gets ?? (quick ? 10_000 : 100_000)),
  maxSeconds: Number(opt['max-seconds'] ?? (quick ? 60 : 180)),
  producers: 16,
  only: opt.only ?? null,
};

const log = (...a) => console.error(...a);

function sh(cmd, args, cwd = ROOT) {
  const r = spawnSync(cmd, args, { cwd, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

// 1. Build the workspace (Sluice is imported from packages/sluice/dist).
let build = 'skipped (--no-build)';
if (!opt['no-build']) {
  log('bench: pnpm build');
  if (sh('pnpm', ['build'])) build = 'ok';
  else if (existsSync(path.join(ROOT, 'packages/sluice/dist/index.js'))) {
    build = 'FAILED: `pnpm build` exited non-zero; measured the existing packages/sluice/dist';
    log(`bench: WARNING ${build}`);
  } else {
    log('bench: `pnpm build` failed and there is no packages/sluice/dist to measure');
    process.exit(1);
  }
}

// 2. Install bench/ (its own package.json and lockfile, outside the workspace) when missing or stale.
const marker = path.join(BENCH, 'node_modules/.modules.yaml');
const stale =
  !existsSync(marker) || statSync(path.join(BENCH, 'pnpm-lock.yaml')).mtimeMs > statSync(marker).mtimeMs;
if (!opt['no-install'] && stale) {
  log('bench: installing bench dependencies (pnpm --dir bench install --ignore-workspace)');
  if (!sh('pnpm', ['--dir', BENCH, 'install', '--ignore-workspace', '--frozen-lockfile'])) {
    log('bench: WARNING install failed; engines that cannot load are reported as unavailable');
  }
}

// 3. Which engines load, and what they support.
const probe = spawnSync(process.execPath, [path.join(BENCH, 'trial.mjs'), '--probe'], { encoding: 'utf8' });
const probeLine = (probe.stdout ?? '').split('\n').find((l) => l.startsWith('BENCH_RESULT '));
const engines = probeLine ? JSON.parse(probeLine.slice('BENCH_RESULT '.length)).probe : {};
for (const name of ENGINES) engines[name] ??= { ok: false, reason: 'probe failed' };
for (const [name, p] of Object.entries(engines)) {
  log(`bench: ${name.padEnd(15)} ${p.ok ? p.version : `unavailable: ${p.reason}`}`);
}

// 4. --only
const tokens = options.only
  ? options.only
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  : [];
for (const t of tokens) {
  if (!ENGINES.includes(t) && !(t in WORKLOADS)) {
    log(`bench: --only: unknown engine or workload "${t}"`);
    process.exit(2);
  }
}
const onlyEngines = tokens.filter((t) => ENGINES.includes(t));
const onlyWorkloads = tokens.filter((t) => t in WORKLOADS);
const engineList = onlyEngines.length ? ENGINES.filter((e) => onlyEngines.includes(e)) : ENGINES;
const workloadList = onlyWorkloads.length
  ? Object.keys(WORKLOADS).filter((w) => onlyWorkloads.includes(w))
  : Object.keys(WORKLOADS);

// 5. The plan: trials to run, and n/a entries recorded without running.
const cores = os.availableParallelism();
const specs = [];
const skipped = [];
const has = (e, mode) => Boolean(engines[e].modes?.[mode]);
const prefer = (e, ...modes) => modes.find((m) => has(e, m));
for (const w of workloadList) {
  for (const e of engineList) {
    const p = engines[e];
    const na = (mode, reason, shards = null) =>
      skipped.push({ engine: e, workload: w, mode, shards, status: 'n/a', reason, version: p.version });
    if (!p.ok) {
      skipped.push({
        engine: e,
        workload: w,
        mode: 'durable',
        shards: null,
        status: 'unavailable',
        reason: p.reason,
      });
      continue;
    }
    if (['w1', 'w1c', 'w1a', 'w1s'].includes(w)) {
      for (const mode of ['durable', 'buffered']) {
        if (!has(e, mode)) na(mode, p.unavailableModes?.[mode] ?? `no ${mode} mode`);
        else if (w === 'w1a' && !p.arrowInput) na(mode, 'takes no Arrow input');
        else specs.push({ engine: e, workload: w, mode });
      }
    } else if (w === 'w2' || w === 'w3') {
      const mode = prefer(e, 'buffered', 'durable');
      if (w === 'w2' && !p.gets) na(mode, 'no point gets (no index)');
      else specs.push({ engine: e, workload: w, mode });
    } else if (w === 'w2i') {
      const mode = prefer(e, 'durable', 'buffered');
      if (!p.gets) na(mode, 'no point gets (no index)');
      else specs.push({ engine: e, workload: w, mode });
    } else if (w === 'recovery') {
      const mode = prefer(e, 'durable', 'buffered');
      if (e === 'arrow-ipc') na(mode, 'nothing to recover: reopening appends to the file');
      else specs.push({ engine: e, workload: w, mode });
    } else if (w === 'scale') {
      if (!p.shardable) continue;
      for (let s = 1; s <= cores; s++) specs.push({ engine: e, workload: w, mode: 'buffered', shards: s });
    } else if (w === 'w1a-threads') {
      if (!p.threads) continue;
      for (const mode of ['durable', 'buffered']) {
        if (!has(e, mode)) continue;
        for (const variant of WORKLOADS[w].variants) specs.push({ engine: e, workload: w, mode, variant });
      }
    }
  }
}

// 6. Durability check.
let strace = [];
if (!opt['no-strace']) {
  if (!straceAvailable()) {
    log('bench: strace not installed (apt-get install -y strace): durability not checked');
  } else {
    const plan = [];
    for (const e of engineList) {
      if (!engines[e].ok) continue;
      for (const mode of ['durable', 'buffered']) if (has(e, mode)) plan.push({ engine: e, mode });
    }
    strace = straceCheck(plan, log);
  }
}

// 7. Run: repetition by repetition (every engine once per round), in a seeded shuffled order.
const date = new Date()
  .toISOString()
  .replace(/:/g, '-')
  .replace(/\.\d+Z$/, 'Z');
const resultsDir = path.join(BENCH, 'results');
mkdirSync(resultsDir, { recursive: true });
const name = `${date}${quick ? '-quick' : ''}`;
const run = {
  date,
  options,
  build,
  environment: environment(),
  engines,
  strace,
  trials: [...skipped],
};

function environment() {
  const tmp = os.tmpdir();
  const fs = spawnSync('stat', ['-f', '-c', '%T', tmp], { encoding: 'utf8' }).stdout?.trim() || 'unknown fs';
  return {
    cpu: os.cpus()[0]?.model?.trim() ?? 'unknown CPU',
    cores,
    memGB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()}-${os.arch()}`,
    kernel: os.release(),
    node: process.version,
    tmpdir: tmp,
    tmpfs: fs,
    loadStart: os.loadavg()[0].toFixed(2),
  };
}

function save(final) {
  const file = path.join(resultsDir, `${name}.json`);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, JSON.stringify(run, null, 1));
  if (final) renameSync(tmp, file);
}

function runTrial(spec) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `sluice-bench-${spec.engine}-`));
  const args = [
    '--expose-gc',
    '--max-old-space-size=8192',
    path.join(BENCH, 'trial.mjs'),
    '--engine',
    spec.engine,
    '--workload',
    spec.workload,
    '--mode',
    spec.mode,
    '--rows',
    String(options.rows),
    '--gets',
    String(options.gets),
    '--producers',
    String(options.producers),
    '--max-seconds',
    String(options.maxSeconds),
    '--dir',
    path.join(dir, 'data'),
    ...(spec.shards ? ['--shards', String(spec.shards)] : []),
    ...(spec.variant ? ['--variant', spec.variant] : []),
  ];
  const load = os.loadavg()[0];
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (stderr.length > 1 << 16) stderr = stderr.slice(-(1 << 15));
    });
    // Generation, load and the measured phases each have their own cap; this only catches a hang.
    const limitMs = (options.maxSeconds * 3 + 180) * 1000;
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, limitMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try {
        process.kill(-child.pid, 'SIGKILL'); // anything the trial left behind (e.g. a recovery loader)
      } catch {
        // none
      }
      rmSync(dir, { recursive: true, force: true });
      const line = stdout.split('\n').find((l) => l.startsWith('BENCH_RESULT '));
      let result;
      if (line) result = JSON.parse(line.slice('BENCH_RESULT '.length));
      else {
        result = {
          ...spec,
          status: signal === 'SIGKILL' ? 'timeout' : 'error',
          error:
            signal === 'SIGKILL'
              ? `killed after ${limitMs / 1000} s`
              : `exit ${code ?? signal}: ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
        };
      }
      if (result.status === 'error' && stderr.trim()) result.stderrTail = stderr.trim().slice(-2000);
      result.loadAvg = load;
      resolve(result);
    });
  });
}

function shuffle(list, seed) {
  const rand = prng(seed);
  const a = [...list];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rand.int(0, i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

function describe(r) {
  const v = r.value;
  const unit = r.metric === 'getsPerSec' ? 'gets/s' : 'rows/s';
  if (r.status === 'ok' || r.status === 'partial' || r.status === 'wrong') {
    const extra = r.status === 'ok' ? '' : ` [${r.status}]`;
    return `${Math.round(v).toLocaleString('en-US')} ${unit}${extra}`;
  }
  return `${r.status}: ${(r.reason ?? r.error ?? '').split('\n')[0]}`;
}

const total = specs.length * options.reps;
log(
  `bench: ${total} trials (${specs.length} × ${options.reps} reps), ${options.rows.toLocaleString('en-US')} rows each` +
    `${skipped.length ? `, ${skipped.length} n/a` : ''}`,
);
let n = 0;
const started = Date.now();
for (let rep = 0; rep < options.reps; rep++) {
  for (const spec of shuffle(specs, 1000 + rep)) {
    n++;
    // Start every trial from the same state: dirty pages of the previous trial written back.
    spawnSync('sync');
    await sleep(200);
    const label =
      `${spec.workload} ${spec.mode} ${spec.engine}` +
      `${spec.shards ? ` shards=${spec.shards}` : ''}${spec.variant ? ` ${spec.variant}` : ''}`;
    const t0 = Date.now();
    const r = await runTrial(spec);
    r.rep = rep;
    run.trials.push(r);
    save(false);
    log(
      `[${String(n).padStart(3)}/${total}] ${label.padEnd(40)} ${describe(r)}  (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
    if (r.status === 'error' && r.stderrTail) log(r.stderrTail.split('\n').slice(-5).join('\n'));
  }
}
run.environment.loadEnd = os.loadavg()[0].toFixed(2);
run.elapsedSeconds = (Date.now() - started) / 1000;
save(true);
const md = markdown(run);
writeFileSync(path.join(resultsDir, `${name}.md`), md);
writeFileSync(path.join(resultsDir, `${name}.svg`), svg(run));
console.log(md);
log(`bench: wrote bench/results/${name}.json, .md and .svg (${Math.round(run.elapsedSeconds)} s)`);
