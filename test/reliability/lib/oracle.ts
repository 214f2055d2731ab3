/**
 * The expected-state oracle (RocksDB crash test style): kept by the test, outside the process
 * that writes. It knows every operation ever issued, in issue order (= the engine's sequence
 * order: a put is sequenced synchronously when it is called), and what happened to it:
 * acknowledged, rejected, or still in flight when the writer died. From that it decides, for
 * each key, which states a recovered table may show:
 *
 *  - the effect of the last acknowledged operation on the key, or of any later one (an
 *    operation rejected or in flight has an unknown outcome: old or new value are both fine);
 *  - anything older is a LOST acknowledged write (or a resurrected acknowledged delete);
 *  - a value never written to that key is a PHANTOM.
 *
 * On top of that, the log is a prefix: within one shard the WAL replays a prefix of what one
 * writer incarnation wrote, so if an in-flight operation's effect is visible, every earlier
 * in-flight operation of the same writer on that shard must be visible too (a HOLE otherwise).
 * Rejected operations are exempt: a failed write does not stop later ones from landing. (A
 * writer's operations are told apart by `writer`; a later writer continues from whatever
 * survived, so its operations say nothing about an earlier writer's lost tail.)
 *
 * `settle` accepts a checked state as the new baseline (it is what the disk now holds).
 */

/** The value column of the put that wrote the key, or null for a delete. */
export type Effect = bigint | null;

export type OpStatus = 'pending' | 'acked' | 'failed';

export interface OpRecord {
  readonly id: number;
  /** Which writer (process run) issued it; holes are only looked for within one writer. */
  readonly writer: number;
  readonly effects: ReadonlyMap<bigint, Effect>;
  status: OpStatus;
  code?: string;
}

interface KeyHistory {
  base: Effect;
  ops: OpRecord[];
}

export interface Violation {
  readonly kind: 'lost' | 'phantom' | 'hole';
  readonly key: bigint;
  readonly detail: string;
}

export interface CheckResult {
  /** Acknowledged operations whose effects were checked. */
  readonly ackedOps: number;
  /** Keys checked (every key ever written, plus every key read back). */
  readonly keys: number;
  readonly lost: number;
  readonly phantoms: number;
  readonly holes: number;
  /** In-flight or rejected operations whose effect is visible / not visible. */
  readonly uncertainLanded: number;
  readonly uncertainDropped: number;
  readonly violations: readonly Violation[];
}

export class Oracle {
  readonly #keys = new Map<bigint, KeyHistory>();
  readonly #ops = new Map<number, OpRecord>();
  /** Every value each key ever had, across settles: a rollback to one of them is a loss, not a phantom. */
  readonly #written = new Map<bigint, Set<bigint>>();
  readonly #shardOf: (key: bigint) => number;

  constructor(shardOf: (key: bigint) => number) {
    this.#shardOf = shardOf;
  }

  /** An operation about to be issued. `effects`: key → written value (null: deleted). */
  intent(id: number, effects: ReadonlyMap<bigint, Effect>, writer = 0): OpRecord {
    if (this.#ops.has(id)) throw new Error(`operation ${id} issued twice`);
    const op: OpRecord = { id, writer, effects, status: 'pending' };
    this.#ops.set(id, op);
    for (const k of effects.keys()) {
      let h = this.#keys.get(k);
      if (!h) {
        h = { base: null, ops: [] };
        this.#keys.set(k, h);
      }
      h.ops.push(op);
      const v = effects.get(k)!;
      if (v !== null) {
        let w = this.#written.get(k);
        if (!w) this.#written.set(k, (w = new Set()));
        w.add(v);
      }
    }
    return op;
  }

  ack(id: number): void {
    this.#op(id).status = 'acked';
  }

  fail(id: number, code: string): void {
    const op = this.#op(id);
    op.status = 'failed';
    op.code = code;
  }

  /** Every key that has a history. */
  keys(): bigint[] {
    return [...this.#keys.keys()];
  }

  #op(id: number): OpRecord {
    const op = this.#ops.get(id);
    if (!op) throw new Error(`operation ${id} was never issued`);
    return op;
  }

  /** Checks a recovered state: `observed` maps every live key to its value column. */
  check(observed: ReadonlyMap<bigint, bigint>): CheckResult {
    const violations: Violation[] = [];
    let lost = 0;
    let phantoms = 0;
    let uncertainLanded = 0;
    let uncertainDropped = 0;
    // Per key: the range of history positions its observed state is consistent with.
    const spans = new Map<bigint, { lo: number; hi: number }>();
    const lowerBound = new Map<string, number>(); // shard/writer → newest op id known to have landed
    const all = new Set<bigint>([...this.#keys.keys(), ...observed.keys()]);
    for (const k of all) {
      const h = this.#keys.get(k);
      const o = observed.get(k) ?? null;
      if (!h) {
        if (o !== null) {
          phantoms++;
          violations.push({ kind: 'phantom', key: k, detail: `value ${o} for a key never written` });
        }
        continue;
      }
      const value = (i: number): Effect => (i < 0 ? h.base : h.ops[i]!.effects.get(k)!);
      let floor = -1;
      for (let i = h.ops.length - 1; i >= 0; i--) {
        if (h.ops[i]!.status === 'acked') {
          floor = i;
          break;
        }
      }
      let lo = Infinity;
      let hi = -Infinity;
      for (let i = floor; i < h.ops.length; i++) {
        if (value(i) === o) {
          lo = Math.min(lo, i);
          hi = Math.max(hi, i);
        }
      }
      if (lo === Infinity) {
        let older = o !== null && (this.#written.get(k)?.has(o) ?? false);
        for (let i = -1; i < floor; i++) if (value(i) === o) older = true;
        const want = value(floor);
        const what = `observed ${o === null ? 'absent' : `v=${o}`}, last acknowledged ${floor < 0 ? 'baseline' : `op ${h.ops[floor]!.id}`} wrote ${want === null ? 'a delete' : `v=${want}`}`;
        if (older || o === null) {
          lost++;
          violations.push({ kind: 'lost', key: k, detail: what });
        } else {
          phantoms++;
          violations.push({
            kind: 'phantom',
            key: k,
            detail: `${what}; v=${o} was never written to this key`,
          });
        }
        continue;
      }
      spans.set(k, { lo, hi });
      if (lo >= 0) {
        const at = `${this.#shardOf(k)}/${h.ops[lo]!.writer}`;
        lowerBound.set(at, Math.max(lowerBound.get(at) ?? -Infinity, h.ops[lo]!.id));
      }
      for (let i = floor + 1; i < h.ops.length; i++) {
        if (h.ops[i]!.status === 'acked') continue;
        if (i <= lo) uncertainLanded++;
        else if (i > hi) uncertainDropped++;
      }
    }
    // Holes: an in-flight op that did not land, below an op of the same shard that did.
    let holes = 0;
    for (const [k, span] of spans) {
      const h = this.#keys.get(k)!;
      for (let i = span.hi + 1; i < h.ops.length; i++) {
        const op = h.ops[i]!;
        const bound = lowerBound.get(`${this.#shardOf(k)}/${op.writer}`) ?? -Infinity;
        if (op.status === 'pending' && op.id < bound) {
          holes++;
          violations.push({
            kind: 'hole',
            key: k,
            detail: `in-flight op ${op.id} is missing while op ${bound} of shard ${this.#shardOf(k)} landed`,
          });
          break;
        }
      }
    }
    let ackedOps = 0;
    for (const op of this.#ops.values()) if (op.status === 'acked') ackedOps++;
    return {
      ackedOps,
      keys: all.size,
      lost,
      phantoms,
      holes,
      uncertainLanded,
      uncertainDropped,
      violations,
    };
  }

  /** Takes `observed` as the new durable baseline and forgets every operation. */
  settle(observed: ReadonlyMap<bigint, bigint>): void {
    for (const [k, h] of this.#keys) {
      h.base = observed.get(k) ?? null;
      h.ops = [];
    }
    for (const [k, v] of observed) if (!this.#keys.has(k)) this.#keys.set(k, { base: v, ops: [] });
    this.#ops.clear();
  }
}
