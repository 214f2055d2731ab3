// Results → markdown table and SVG chart. `node bench/report.mjs results/<date>.json` re-renders
// a saved run (writes <date>.md and <date>.svg beside it).
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ENGINES } from './engines/index.mjs';
import { summarize } from './stats.mjs';

export const WORKLOADS = {
  w1: { title: 'W1 ingest (1 producer, plain objects)', unit: 'rows/s', byMode: true },
  w1c: { title: 'W1c ingest, 16 concurrent producers', unit: 'rows/s', byMode: true },
  w1a: { title: 'W1a ingest, Arrow RecordBatches', unit: 'rows/s', byMode: true },
  'w1a-threads': {
    title: 'W1a from producer threads: attach() vs. the main thread vs. postMessage (Sluice)',
    unit: 'rows/s',
    byMode: true,
    // <path>-<n>: main-n = n concurrent puts on the main thread; attach-n = n worker threads each
    // putting through attach(db.handle()); post-n = n worker threads posting Arrow IPC to the main
    // thread, which puts it. main-1 is the reference of the ratios.
    variants: ['main-1', 'main-4', 'attach-1', 'attach-2', 'attach-4', 'post-1', 'post-2', 'post-4'],
  },
  w1s: { title: 'W1 ingest under a concurrent full scan', unit: 'rows/s', byMode: true },
  w2: { title: 'W2 point gets after ingest', unit: 'gets/s', byMode: false },
  w2i: { title: 'W2 point gets while W1 runs', unit: 'rows/s', byMode: false },
  w3: { title: 'W3 full scan of live rows to Arrow, summing value', unit: 'rows/s', byMode: false },
  scale: { title: 'Scaling: W1a buffered by shard count (Sluice)', unit: 'rows/s', byMode: false },
  recovery: { title: 'Recovery: reopen after W1 killed without flush', unit: 'rows/s', byMode: false },
};

const ORDER = Object.keys(WORKLOADS);

/** Groups trials by (workload, mode, engine, shards, variant) and summarizes each metric. */
export function aggregate(trials) {
  const groups = new Map();
  for (const t of trials) {
    const key = [t.workload, t.mode, t.engine, t.shards ?? '', t.variant ?? ''].join('|');
    let g = groups.get(key);
    if (!g) {
      g = {
        workload: t.workload,
        mode: t.mode,
        engine: t.engine,
        shards: t.shards ?? null,
        variant: t.variant ?? null,
        trials: [],
      };
      groups.set(key, g);
    }
    g.trials.push(t);
  }
  const out = [];
  for (const g of groups.values()) {
    const ok = g.trials.filter((t) => t.status === 'ok' || t.status === 'partial');
    const pick = (f) => summarize(ok.map(f));
    const statuses = [...new Set(g.trials.map((t) => t.status))];
    out.push({
      workload: g.workload,
      mode: g.mode,
      engine: g.engine,
      shards: g.shards,
      variant: g.variant,
      version: g.trials.find((t) => t.version)?.version,
      runs: g.trials.length,
      okRuns: ok.length,
      statuses,
      reason: g.trials.find((t) => t.reason)?.reason ?? g.trials.find((t) => t.error)?.error?.split('\n')[0],
      partial: g.trials.some((t) => t.status === 'partial'),
      wrong: g.trials.some((t) => t.status === 'wrong'),
      value: pick((t) => t.value),
      mbPerSec: pick((t) => t.mbPerSec),
      ackP50Ms: pick((t) => t.ackP50Ms),
      ackP99Ms: pick((t) => t.ackP99Ms),
      peakRssMB: pick((t) => t.peakRssMB),
      engineRssMB: pick((t) => t.engineRssMB),
      rssOverData: pick((t) => t.rssOverData),
      getP50Us: pick((t) => t.getP50Us),
      getP99Us: pick((t) => t.getP99Us),
      reopenMs: pick((t) => t.reopenMs),
      replayRowsPerSec: pick((t) => t.replayRowsPerSec),
      replayedRows: pick((t) => t.replayedRows),
      scans: pick((t) => t.background?.scans),
      gets: pick((t) => (t.workload === 'w2i' ? t.background?.gets : undefined)),
      rows: pick((t) => t.rows ?? t.gets),
      secondScan: pick((t) => t.secondScanRowsPerSec),
      secondGets: pick((t) => t.secondGetsPerSec),
    });
  }
  const rank = (e) => (ENGINES.includes(e) ? ENGINES.indexOf(e) : ENGINES.length);
  const variants = WORKLOADS['w1a-threads'].variants;
  return out.sort(
    (a, b) =>
      rank(a.engine) - rank(b.engine) ||
      (a.shards ?? 0) - (b.shards ?? 0) ||
      variants.indexOf(a.variant) - variants.indexOf(b.variant),
  );
}

const fmt = (x, digits = 0) => {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1e6) return `${(x / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${(x / 1e3).toFixed(0)}k`;
  if (a >= 1e3) return `${(x / 1e3).toFixed(1)}k`;
  return x.toFixed(digits);
};
const med = (s, d) => (s ? fmt(s.median, d) : '—');
const range = (s, d) => {
  if (!s) return '—';
  if (s.n === 1) return fmt(s.median, d);
  return `${fmt(s.median, d)} (${fmt(s.min, d)}–${fmt(s.max, d)})`;
};
const ratio = (a, b) => {
  if (!a || !b || !(b.median > 0)) return '—';
  const r = a.median / b.median;
  return `${r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;
};

/** A w1a-threads variant as [producer path, producers] for the tables and chart. */
export function variantLabel(variant) {
  const [via, n] = (variant ?? '').split('-');
  if (via === 'main') return ['main thread: `db.put`', n === '1' ? '1' : `${n} concurrent puts`];
  if (via === 'attach')
    return ['worker threads: `attach(db.handle())`, `put`', `${n} thread${n === '1' ? '' : 's'}`];
  if (via === 'post') {
    return [
      'worker threads: Arrow IPC by `postMessage` (transferred), main thread decodes, `db.put`',
      `${n} thread${n === '1' ? '' : 's'}`,
    ];
  }
  return [String(variant), '—'];
}

function durabilityNote(strace, engine, mode) {
  const s = strace?.find((x) => x.engine === engine && x.mode === mode);
  if (!s) return 'not checked';
  if (s.error) return 'not checked';
  const parts = [];
  for (const [call, n] of Object.entries(s.byCall)) if (n > 0) parts.push(`${n} ${call}`);
  if (s.dsyncWritesPerBatch > 0) parts.push(`${s.dsyncWritesPerBatch} O_DSYNC write`);
  return parts.length ? `${parts.join(' + ')} /batch` : 'no sync /batch';
}

function status(g) {
  if (g.okRuns === 0) {
    const st = g.statuses.join(', ');
    return `${st}${g.reason ? `: ${g.reason}` : ''}`;
  }
  const notes = [];
  if (g.partial)
    notes.push('partial: a phase hit the time cap; measured on the rows it did (a smaller table for W2/W3)');
  if (g.wrong) notes.push('WRONG results in some runs');
  if (g.okRuns < g.runs) notes.push(`${g.runs - g.okRuns} of ${g.runs} runs failed`);
  return notes.join('; ');
}

function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${r.map((c) => String(c).replaceAll('|', '\\|')).join(' | ')} |`);
  return lines.join('\n');
}

function findSluice(groups, g) {
  const byMode = WORKLOADS[g.workload]?.byMode;
  return groups.find(
    (x) =>
      x.engine === 'sluice' && x.workload === g.workload && (!byMode || x.mode === g.mode) && x.okRuns > 0,
  );
}

/** The markdown report. */
export function markdown(run) {
  const groups = aggregate(run.trials);
  const out = [];
  const e = run.environment;
  out.push(`# Sluice benchmark — ${run.date}${run.options.quick ? ' (quick mode)' : ''}`);
  out.push('');
  out.push(
    `${e.cpu}, ${e.cores} cores, ${e.memGB} GB RAM, ${e.platform} ${e.kernel}, Node ${e.node}; data in ${e.tmpdir} (${e.tmpfs}). ` +
      `${run.options.rows.toLocaleString('en-US')} rows per trial, ${run.options.reps} repetition(s), each trial a fresh process; ` +
      `medians with (min–max). Load average ${e.loadStart} at start, ${e.loadEnd ?? '?'} at end. Methodology: bench/README.md.`,
  );
  if (run.options.quick) {
    out.push('');
    out.push(
      '> Quick mode: 10× fewer rows and one repetition. Fine for checking that everything runs; not the numbers to quote.',
    );
  }
  if (run.build && run.build !== 'ok') out.push('', `> Build: ${run.build}`);
  for (const w of ORDER) {
    const spec = WORKLOADS[w];
    const rows = groups.filter((g) => g.workload === w);
    if (rows.length === 0) continue;
    out.push('', `## ${spec.title}`, '');
    const modes = spec.byMode
      ? ['durable', 'buffered'].filter((m) => rows.some((g) => g.mode === m))
      : [null];
    const body = [];
    const notMeasured = [];
    let header;
    for (const mode of modes) {
      for (const g of rows.filter((x) => mode === null || x.mode === mode)) {
        if (g.okRuns === 0 && g.statuses.every((st) => st === 'n/a' || st === 'unavailable')) {
          notMeasured.push(
            `${g.engine}${spec.byMode ? ` ${g.mode}` : ''} (${g.statuses.join(', ')}: ${g.reason})`,
          );
          continue;
        }
        const sl = findSluice(groups, g);
        const r = g.engine === 'sluice' ? '—' : ratio(sl?.value, g.value);
        const dur = durabilityNote(run.strace, g.engine, g.mode);
        if (['w1', 'w1c', 'w1a'].includes(w)) {
          header = [
            'engine',
            'mode',
            'sync per batch (strace)',
            'rows/s',
            'MB/s',
            'ack p50 / p99 ms',
            'peak RSS MB',
            'RSS growth / data',
            'Sluice ÷ engine',
            'notes',
          ];
          body.push([
            g.engine,
            g.mode,
            dur,
            range(g.value),
            med(g.mbPerSec, 1),
            `${med(g.ackP50Ms, 2)} / ${med(g.ackP99Ms, 2)}`,
            med(g.peakRssMB),
            g.rssOverData ? `${g.rssOverData.median.toFixed(2)}×` : '—',
            r,
            status(g),
          ]);
        } else if (w === 'w1s') {
          const base = groups.find(
            (x) => x.workload === 'w1' && x.mode === g.mode && x.engine === g.engine && x.okRuns > 0,
          );
          header = [
            'engine',
            'mode',
            'rows/s under scan',
            'W1 rows/s',
            'change',
            'scans done',
            'Sluice ÷ engine',
            'notes',
          ];
          body.push([
            g.engine,
            g.mode,
            range(g.value),
            med(base?.value),
            base && g.value ? `${((g.value.median / base.value.median - 1) * 100).toFixed(0)} %` : '—',
            med(g.scans),
            r,
            status(g),
          ]);
        } else if (w === 'w2') {
          header = [
            'engine',
            'gets/s',
            'get p50 / p99 µs',
            'same gets again, gets/s',
            'Sluice ÷ engine',
            'notes',
          ];
          body.push([
            g.engine,
            range(g.value),
            `${med(g.getP50Us, 1)} / ${med(g.getP99Us, 1)}`,
            med(g.secondGets),
            r,
            status(g),
          ]);
        } else if (w === 'w2i') {
          header = [
            'engine',
            'ingest mode',
            'get p50 / p99 µs during ingest',
            'gets done',
            'ingest rows/s',
            'notes',
          ];
          const starved = g.gets && g.gets.max === 0;
          body.push([
            g.engine,
            g.mode,
            starved ? 'no get ran' : `${med(g.getP50Us, 1)} / ${med(g.getP99Us, 1)}`,
            med(g.gets),
            range(g.value),
            [starved ? 'the ingest never yields the event loop, so the reader never ran' : '', status(g)]
              .filter(Boolean)
              .join('; '),
          ]);
        } else if (w === 'w3') {
          header = [
            'engine',
            'rows/s (first scan)',
            'second scan rows/s',
            'live rows',
            'Sluice ÷ engine',
            'notes',
          ];
          body.push([g.engine, range(g.value), med(g.secondScan), med(g.rows), r, status(g)]);
        } else if (w === 'w1a-threads') {
          const main = rows.find((x) => x.variant === 'main-1' && x.mode === g.mode && x.okRuns > 0);
          header = [
            'mode',
            'producer path',
            'producers',
            'rows/s',
            'MB/s',
            'ack p50 / p99 ms',
            'peak RSS MB',
            '÷ main thread (1 put at a time)',
            'notes',
          ];
          body.push([
            g.mode,
            ...variantLabel(g.variant),
            range(g.value),
            med(g.mbPerSec, 1),
            `${med(g.ackP50Ms, 2)} / ${med(g.ackP99Ms, 2)}`,
            med(g.peakRssMB),
            g.variant === 'main-1' ? '—' : ratio(g.value, main?.value),
            status(g),
          ]);
        } else if (w === 'scale') {
          const one = rows.find((x) => x.shards === 1 && x.okRuns > 0);
          header = ['shards', 'rows/s', 'speed-up vs 1 shard', 'ack p50 / p99 ms', 'notes'];
          body.push([
            g.shards,
            range(g.value),
            ratio(g.value, one?.value),
            `${med(g.ackP50Ms, 2)} / ${med(g.ackP99Ms, 2)}`,
            status(g),
          ]);
        } else if (w === 'recovery') {
          header = [
            'engine',
            'load mode',
            'reopen ms',
            'rows recovered / s of reopen',
            'WAL rows replayed',
            'replayed rows/s',
            'Sluice ÷ engine',
            'notes',
          ];
          body.push([
            g.engine,
            g.mode,
            range(g.reopenMs),
            range(g.value),
            med(g.replayedRows),
            med(g.replayRowsPerSec),
            r,
            status(g),
          ]);
        }
      }
    }
    if (w === 'scale') body.sort((a, b) => a[0] - b[0]);
    if (body.length) out.push(table(header, body));
    if (notMeasured.length) out.push('', `Not measured: ${notMeasured.join('; ')}.`);
  }
  out.push('', '## Targets (informational, from this run)', '');
  out.push(table(['target', 'measured', 'met?'], targets(groups)));
  if (run.strace?.length) {
    out.push('', '## Durability check (strace -f, per acknowledged batch)', '');
    out.push(
      table(
        ['engine', 'mode', 'sync syscalls', 'O_DSYNC writes', 'io_uring_enter', 'verdict'],
        run.strace.map((s) =>
          s.error
            ? [s.engine, s.mode, '—', '—', '—', `not run: ${s.error}`]
            : [
                s.engine,
                s.mode,
                Object.entries(s.byCall)
                  .filter(([, n]) => n > 0)
                  .map(([c, n]) => `${c} ${n}`)
                  .join(', ') || '0',
                s.dsyncWritesPerBatch,
                s.ioUringEnters,
                s.verdict,
              ],
        ),
      ),
    );
  }
  const versions = Object.entries(run.engines)
    .map(([name, p]) => `${name} ${p.ok ? p.version : `unavailable (${p.reason})`}`)
    .join('; ');
  out.push('', `Engines: ${versions}.`, '');
  return out.join('\n');
}

function targets(groups) {
  const get = (w, m, e, shards = null, variant = null) =>
    groups.find(
      (g) =>
        g.workload === w &&
        (m === null || g.mode === m) &&
        g.engine === e &&
        g.shards === shards &&
        g.variant === variant,
    );
  const v = (g) => (g && g.okRuns > 0 ? g.value.median : undefined);
  const rows = [];
  const cmp = (label, measured, ok, text) =>
    rows.push([
      label,
      measured === undefined ? 'not measured' : text,
      measured === undefined ? '—' : ok ? 'yes' : 'no',
    ]);
  const rel = (label, a, b, k) => {
    const x = a !== undefined && b !== undefined ? a / b : undefined;
    cmp(label, x, x >= k, x === undefined ? '' : `${x.toFixed(2)}×`);
  };
  rel(
    'W1 durable ≥ 3.5× lmdb (durable)',
    v(get('w1', 'durable', 'sluice')),
    v(get('w1', 'durable', 'lmdb')),
    3.5,
  );
  rel(
    'W1 buffered ≥ 4× rocksdb-native',
    v(get('w1', 'buffered', 'sluice')),
    v(get('w1', 'buffered', 'rocksdb-native')),
    4,
  );
  const w1a = v(get('w1a', 'buffered', 'sluice'));
  cmp('W1a buffered (async) ≥ 4M rows/s', w1a, w1a >= 4e6, `${fmt(w1a)} rows/s`);
  rel('W2 gets/s ≥ lmdb', v(get('w2', null, 'sluice')), v(get('w2', null, 'lmdb')), 1);
  const w3 = v(get('w3', null, 'sluice'));
  cmp('W3 ≥ 10M rows/s to Arrow', w3, w3 >= 1e7, `${fmt(w3)} rows/s`);
  rel(
    '2 shards ≥ 1.6× 1 shard (W1a buffered)',
    v(get('scale', null, 'sluice', 2)),
    v(get('scale', null, 'sluice', 1)),
    1.6,
  );
  // The thread count is the user's choice: the best attach variant is compared, and named.
  const attachVariants = WORKLOADS['w1a-threads'].variants.filter((x) => x.startsWith('attach-'));
  for (const m of ['durable', 'buffered']) {
    const best = attachVariants
      .map((x) => ({ x, r: v(get('w1a-threads', m, 'sluice', null, x)) }))
      .filter((c) => c.r !== undefined)
      .sort((p, q) => q.r - p.r)[0];
    const main = v(get('w1a-threads', m, 'sluice', null, 'main-1'));
    const x = best && main !== undefined ? best.r / main : undefined;
    cmp(
      `W1a from worker threads (attach) ≥ 1.5× the main thread (${m}; best of ${attachVariants.map((x) => x.slice('attach-'.length)).join(', ')} threads)`,
      x,
      x >= 1.5,
      `${x?.toFixed(2)}× (${best?.x}: ${fmt(best?.r)} rows/s; main-1: ${fmt(main)} rows/s)`,
    );
  }
  for (const m of ['durable', 'buffered']) {
    const a = v(get('w1s', m, 'sluice'));
    const b = v(get('w1', m, 'sluice'));
    const drop = a !== undefined && b !== undefined ? 1 - a / b : undefined;
    cmp(
      `ingest drop under a concurrent scan ≤ 20 % (${m})`,
      drop,
      drop <= 0.2,
      `${((drop ?? 0) * 100).toFixed(0)} %`,
    );
  }
  for (const m of ['durable', 'buffered']) {
    const g = get('w1', m, 'sluice');
    const x = g && g.okRuns > 0 ? g.rssOverData?.median : undefined;
    cmp(
      `peak RSS over the input data ≤ 1.5× its size (W1 ${m}; RSS growth during ingest ÷ input bytes)`,
      x,
      x <= 1.5,
      `${x?.toFixed(2)}× (peak RSS ${fmt(g?.peakRssMB?.median)} MB)`,
    );
  }
  const rec = get('recovery', null, 'sluice');
  const rr = rec && rec.okRuns > 0 ? rec.replayRowsPerSec?.median : undefined;
  cmp(
    'recovery ≥ 2M rows/s replayed',
    rr,
    rr >= 2e6,
    `${fmt(rr)} rows/s replayed (${fmt(rec?.replayedRows?.median)} rows; whole reopen ${fmt(rec?.value?.median)} rows/s)`,
  );
  return rows;
}

const COLORS = {
  sluice: '#d9480f',
  lmdb: '#1971c2',
  'classic-level': '#2f9e44',
  'rocksdb-native': '#7048e8',
  duckdb: '#e8a100',
  lancedb: '#0c8599',
  'arrow-ipc': '#868e96',
};

const tick = (v) => (v >= 1e6 ? `${v / 1e6}M` : v >= 1e3 ? `${v / 1e3}k` : String(v));

const esc = (s) =>
  String(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]);

/** A hand-written SVG: horizontal bars (log scale) per engine, grouped by workload and mode. */
export function svg(run) {
  const groups = aggregate(run.trials).filter((g) => g.okRuns > 0 && g.value);
  const sections = [];
  for (const w of ORDER) {
    const spec = WORKLOADS[w];
    const ws = groups.filter((g) => g.workload === w);
    if (ws.length === 0) continue;
    if (w === 'scale') {
      sections.push({
        title: `${spec.title}`,
        unit: spec.unit,
        bars: ws
          .sort((a, b) => a.shards - b.shards)
          .map((g) => ({ label: `sluice ×${g.shards}`, engine: 'sluice', s: g.value })),
      });
      continue;
    }
    const modes = spec.byMode ? ['durable', 'buffered'] : [null];
    for (const m of modes) {
      const bars = ws
        .filter((g) => m === null || g.mode === m)
        .map((g) => ({
          label: g.variant
            ? `${g.engine} ${g.variant.replace('-', ' ×').replace('post', 'postMessage')}`
            : spec.byMode
              ? g.engine
              : `${g.engine} (${g.mode})`,
          engine: g.engine,
          s: g.value,
        }));
      if (bars.length) {
        sections.push({
          title: `${spec.title}${m ? ` — ${m}` : ''}`,
          unit: w === 'w2i' ? 'ingest rows/s' : spec.unit,
          bars,
        });
      }
    }
  }
  const all = sections.flatMap((s) => s.bars.flatMap((b) => [b.s.min, b.s.max]));
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(1, Math.min(...all)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
  const W = 960;
  const left = 230;
  const right = 90;
  const barH = 16;
  const gap = 4;
  const plotW = W - left - right;
  const x = (v) =>
    left + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotW;
  let y = 70;
  const parts = [];
  for (const sec of sections) {
    parts.push(
      `<text x="10" y="${y + 12}" class="h">${esc(sec.title)} <tspan class="u">(${esc(sec.unit)})</tspan></text>`,
    );
    y += 20;
    for (const b of sec.bars) {
      const color = COLORS[b.engine] ?? '#495057';
      parts.push(`<text x="${left - 8}" y="${y + barH - 4}" class="l">${esc(b.label)}</text>`);
      parts.push(
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(b.s.median) - left).toFixed(1)}" height="${barH}" fill="${color}"${b.engine === 'sluice' ? '' : ' fill-opacity="0.8"'}/>`,
      );
      if (b.s.n > 1) {
        const cy = y + barH / 2;
        parts.push(
          `<path d="M${x(b.s.min).toFixed(1)} ${cy}H${x(b.s.max).toFixed(1)}M${x(b.s.min).toFixed(1)} ${cy - 4}v8M${x(b.s.max).toFixed(1)} ${cy - 4}v8" class="w"/>`,
        );
      }
      parts.push(
        `<text x="${(x(b.s.max) + 6).toFixed(1)}" y="${y + barH - 4}" class="v">${esc(fmt(b.s.median))}</text>`,
      );
      y += barH + gap;
    }
    y += 14;
  }
  const grid = [];
  for (let v = lo; v <= hi; v *= 10) {
    grid.push(`<line x1="${x(v).toFixed(1)}" y1="60" x2="${x(v).toFixed(1)}" y2="${y}" class="g"/>`);
    grid.push(`<text x="${x(v).toFixed(1)}" y="55" class="t">${tick(v)}</text>`);
    for (const k of [2, 5]) {
      if (v * k < hi)
        grid.push(
          `<line x1="${x(v * k).toFixed(1)}" y1="60" x2="${x(v * k).toFixed(1)}" y2="${y}" class="m"/>`,
        );
    }
  }
  const title = `Sluice vs. peers — ${run.date}${run.options.quick ? ' (quick mode)' : ''}: median of ${run.options.reps} run(s), whiskers min–max, log scale`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y + 30}" viewBox="0 0 ${W} ${y + 30}" font-family="system-ui, sans-serif">`,
    '<style>.h{font-size:13px;font-weight:600}.u{font-weight:400;fill:#666}.l{font-size:12px;text-anchor:end}.v{font-size:11px;fill:#333}.t{font-size:11px;text-anchor:middle;fill:#666}.g{stroke:#ccc}.m{stroke:#eee}.w{stroke:#000;stroke-width:1.2;fill:none}</style>',
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="24" font-size="15" font-weight="700">${esc(title)}</text>`,
    `<text x="10" y="42" font-size="11" fill="#666">${esc(`${run.environment.cpu}, ${run.environment.cores} cores, Node ${run.environment.node}; ${run.options.rows.toLocaleString('en-US')} rows per trial`)}</text>`,
    ...grid,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node bench/report.mjs results/<date>.json');
    process.exit(1);
  }
  const run = JSON.parse(readFileSync(file, 'utf8'));
  const base = file.replace(/\.json$/, '');
  writeFileSync(`${base}.md`, markdown(run));
  writeFileSync(`${base}.svg`, svg(run));
  console.log(markdown(run));
}
