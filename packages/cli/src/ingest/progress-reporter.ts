import cliProgress from 'cli-progress';

export type ProgressMode = 'auto' | 'bar' | 'plain' | 'none';

export interface ProgressSnapshot {
  readonly rows: number;
  readonly badRows: number;
  readonly bytes: number;
}

export interface ProgressOptions {
  readonly mode: ProgressMode;
  /** Total input bytes when known (regular files), for the percentage and the ETA. */
  readonly totalBytes: number | undefined;
  /** Seconds between plain lines. Default 5. */
  readonly intervalSeconds?: number;
  readonly stream?: NodeJS.WriteStream;
  /** Clock in milliseconds; injectable for tests. */
  readonly now?: () => number;
}

/**
 * Ingest progress: a cli-progress bar on a terminal (rows, rows/s, bytes, ETA), and plain
 * periodic lines otherwise (logs, pipes, CI), both on stderr so stdout stays for results.
 */
export class ProgressReporter {
  readonly #snapshot: () => ProgressSnapshot;
  readonly #options: ProgressOptions;
  readonly #stream: NodeJS.WriteStream;
  readonly #now: () => number;
  readonly #started: number;
  #bar: cliProgress.SingleBar | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(snapshot: () => ProgressSnapshot, options: ProgressOptions) {
    this.#snapshot = snapshot;
    this.#options = options;
    this.#stream = options.stream ?? process.stderr;
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
  }

  get mode(): Exclude<ProgressMode, 'auto'> {
    const m = this.#options.mode;
    if (m !== 'auto') return m;
    return this.#stream.isTTY === true ? 'bar' : 'plain';
  }

  start(): void {
    const mode = this.mode;
    if (mode === 'none') return;
    if (mode === 'bar') {
      const total = this.#options.totalBytes;
      this.#bar = new cliProgress.SingleBar(
        {
          stream: this.#stream,
          format:
            total !== undefined
              ? ' ingest [{bar}] {percentage}% | {rows} rows | {rate} rows/s | {done}/{size} | ETA {eta_formatted}'
              : ' ingest {rows} rows | {rate} rows/s | {done}',
          hideCursor: true,
          etaBuffer: 50,
          fps: 5,
          forceRedraw: false,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#bar.start(total ?? 0, 0, this.#payload());
      this.#timer = setInterval(() => this.#tick(), 200);
    } else {
      const every = Math.max(0.05, this.#options.intervalSeconds ?? 5) * 1000;
      this.#timer = setInterval(() => this.#stream.write(`${this.line()}\n`), every);
    }
    this.#timer.unref();
  }

  /** The plain progress line: `ingest: 120000 rows, 45000 rows/s, 12.3 MiB/50.0 MiB (24%), ETA 3s`. */
  line(): string {
    const s = this.#snapshot();
    const secs = (this.#now() - this.#started) / 1000;
    const rate = secs > 0 ? Math.round(s.rows / secs) : 0;
    const total = this.#options.totalBytes;
    let bytes = formatBytes(s.bytes);
    let eta = '';
    if (total !== undefined && total > 0) {
      const frac = Math.min(1, s.bytes / total);
      bytes += `/${formatBytes(total)} (${Math.floor(frac * 100)}%)`;
      if (frac > 0 && secs > 0) eta = `, ETA ${formatDuration((secs * (1 - frac)) / frac)}`;
    }
    const bad = s.badRows > 0 ? `, ${s.badRows} bad skipped` : '';
    return `ingest: ${s.rows} rows, ${rate} rows/s, ${bytes}${eta}${bad}`;
  }

  #payload(): Record<string, string | number> {
    const s = this.#snapshot();
    const secs = (this.#now() - this.#started) / 1000;
    return {
      rows: s.rows,
      rate: secs > 0 ? Math.round(s.rows / secs) : 0,
      done: formatBytes(s.bytes),
      size: formatBytes(this.#options.totalBytes ?? 0),
    };
  }

  #tick(): void {
    const s = this.#snapshot();
    this.#bar?.update(Math.min(s.bytes, this.#options.totalBytes ?? s.bytes), this.#payload());
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#bar) {
      this.#tick();
      this.#bar.stop();
      this.#bar = undefined;
    }
  }
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
