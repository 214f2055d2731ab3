/**
 * In-process concurrent producers (puts and deletes) feeding the oracle, for the thread-fault
 * and backpressure tests: each producer awaits its operation, records the outcome, and goes on
 * until stopped. Every operation is bounded by a timeout, so a hang is an outcome ('HANG').
 */
import type { Db } from 'sluice';
import type { Oracle } from './oracle.js';
import type { Rng } from './rng.js';
import { deleteEffects, harnessRow, outcome, putEffects, sleep } from './table.js';

export interface LoadOptions {
  readonly producers: number;
  readonly keys: number;
  readonly maxRows: number;
  readonly deleteRatio?: number;
  /** Pause between a producer's operations (0: none). */
  readonly pauseMs?: number;
  readonly hangMs?: number;
  /** Retry after these codes after a short pause, instead of counting them as final. */
  readonly backoffOn?: ReadonlySet<string>;
}

export class Load {
  readonly codes: Record<string, number> = {};
  acked = 0;
  failed = 0;
  #stop = false;
  #nextOp: number;
  readonly #running: Promise<void>[];

  constructor(db: () => Db, oracle: Oracle, rng: Rng, opts: LoadOptions, firstOp = 1) {
    this.#nextOp = firstOp;
    this.#running = Array.from({ length: opts.producers }, () => this.#producer(db, oracle, rng, opts));
  }

  get nextOp(): number {
    return this.#nextOp;
  }

  async #producer(db: () => Db, oracle: Oracle, rng: Rng, o: LoadOptions): Promise<void> {
    while (!this.#stop) {
      const id = this.#nextOp++;
      let p: Promise<void>;
      if (rng.chance(o.deleteRatio ?? 0.2)) {
        const keys = Array.from({ length: 1 + rng.int(6) }, () => rng.int(o.keys));
        oracle.intent(id, deleteEffects(keys));
        p = db().delete(keys);
      } else {
        const rows = Array.from({ length: 1 + rng.int(o.maxRows) }, (_, i) =>
          harnessRow(rng.int(o.keys), id * 64 + i),
        );
        oracle.intent(id, putEffects(rows));
        p = db().put(rows);
      }
      const r = await outcome(p, o.hangMs ?? 30_000, `op ${id}`);
      if (r.ok) {
        oracle.ack(id);
        this.acked++;
      } else {
        oracle.fail(id, r.code);
        this.failed++;
        this.codes[r.code] = (this.codes[r.code] ?? 0) + 1;
        if (r.code === 'HANG' || r.code === 'UNTYPED') this.#stop = true;
        await sleep(o.backoffOn?.has(r.code) ? 20 : 2);
      }
      if (o.pauseMs) await sleep(o.pauseMs);
    }
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#running);
  }
}
