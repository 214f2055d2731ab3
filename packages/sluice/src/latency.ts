import {
  CB_SYNC_HIST,
  CB_SYNC_US_HI,
  CB_SYNC_US_LO,
  SYNC_LATENCY_BOUNDS_US,
  bucketOf,
} from '@sluice/protocol';

/**
 * A latency distribution as Prometheus histograms want it: per-bucket counts (not cumulative)
 * for the upper bounds in `boundsSeconds`, then one bucket for everything slower, and the sum.
 */
export interface LatencyView {
  readonly boundsSeconds: readonly number[];
  readonly counts: readonly number[];
  readonly sumSeconds: number;
}

/** Upper bounds of the flush duration histogram, in seconds. */
export const FLUSH_LATENCY_BOUNDS_S: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];

/** A histogram kept on one thread (the broker's flush timings). */
export class LatencyHistogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;

  constructor(boundsSeconds: readonly number[]) {
    this.#bounds = boundsSeconds;
    this.#counts = new Array<number>(boundsSeconds.length + 1).fill(0);
  }

  record(seconds: number): void {
    this.#counts[bucketOf(this.#bounds, seconds)]!++;
    this.#sum += seconds;
  }

  view(): LatencyView {
    return { boundsSeconds: this.#bounds, counts: [...this.#counts], sumSeconds: this.#sum };
  }
}

/** The WAL fsync histogram a shard thread keeps in its control block. */
export function walSyncLatency(cb: Int32Array): LatencyView {
  const counts = Array.from({ length: SYNC_LATENCY_BOUNDS_US.length + 1 }, (_, b) =>
    Atomics.load(cb, CB_SYNC_HIST + b),
  );
  return {
    boundsSeconds: SYNC_LATENCY_BOUNDS_US.map((us) => us / 1e6),
    counts,
    sumSeconds: (Atomics.load(cb, CB_SYNC_US_HI) * 2 ** 31 + Atomics.load(cb, CB_SYNC_US_LO)) / 1e6,
  };
}
