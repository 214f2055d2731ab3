import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Metric, MetricType, MetricValueWithName } from 'prom-client';
import type { DbStats, LatencyView } from 'sluice';

/**
 * The service's Prometheus metrics (prom-client, text format at GET /metrics). Engine state
 * comes from `db.stats()`, read at each scrape; request-side measures (rows ingested, put
 * latency) are recorded as requests run.
 */
export class ServiceMetrics {
  readonly registry = new Registry();
  readonly rowsIngested: Counter<'format'>;
  readonly rowsDeleted: Counter;
  readonly putSeconds: Histogram<'op'>;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly #shardGauges: Record<string, Gauge<'shard'>>;
  readonly #shardCounters: Record<string, Counter<'shard'>>;
  readonly #state: Gauge<'shard' | 'state'>;
  readonly #unflushed: Gauge;
  readonly #putStalls: Counter;
  readonly #last = new Map<string, number>();
  /** The stats of the latest refresh: the engine-kept histograms render from them. */
  #stats: DbStats | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.rowsIngested = new Counter({
      name: 'sluice_rows_ingested_total',
      help: 'Rows acknowledged by put through POST /v1/rows, by body format',
      labelNames: ['format'],
      registers,
    });
    this.rowsDeleted = new Counter({
      name: 'sluice_rows_deleted_total',
      help: 'Keys deleted through DELETE /v1/rows',
      registers,
    });
    this.putSeconds = new Histogram({
      name: 'sluice_put_duration_seconds',
      help: 'Latency of db.put / db.delete calls (one batch each), until acknowledged at the configured durability',
      labelNames: ['op'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.requests = new Counter({
      name: 'sluice_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    const shardHistogram = (
      name: string,
      help: string,
      pick: (s: DbStats['shards'][number]) => LatencyView,
    ): void => this.registry.registerMetric(engineHistogram(name, help, () => this.#stats, pick));
    shardHistogram(
      'sluice_wal_sync_duration_seconds',
      'WAL fsync (group commit) latency, per shard, as timed by the shard thread',
      (s) => s.walSyncLatency,
    );
    shardHistogram(
      'sluice_flush_duration_seconds',
      'Time to write a frozen memtable to its generation file, per shard (every flush, timed by the broker)',
      (s) => s.flushLatency,
    );
    const gauge = (name: string, help: string): Gauge<'shard'> =>
      new Gauge({ name, help, labelNames: ['shard'], registers });
    const counter = (name: string, help: string): Counter<'shard'> =>
      new Counter({ name, help, labelNames: ['shard'], registers });
    this.#shardGauges = {
      rows: gauge('sluice_shard_rows', 'Row versions held by the shard (memtables and generation files)'),
      activeRows: gauge('sluice_shard_active_rows', 'Rows in the active memtable'),
      memtableBytes: gauge(
        'sluice_shard_memtable_bytes',
        'Bytes reserved for the active and frozen memtables',
      ),
      memtableUsedBytes: gauge(
        'sluice_shard_memtable_used_bytes',
        'Bytes the rows of the active and frozen memtables occupy',
      ),
      memtableHeldBytes: gauge(
        'sluice_shard_memtable_held_bytes',
        'Bytes of every memtable buffer the shard holds (active, frozen, spare, kept for reuse)',
      ),
      frozen: gauge('sluice_shard_frozen_memtables', 'Frozen memtables waiting to be flushed or retired'),
      generations: gauge('sluice_shard_generations', 'Generation files in the current manifest'),
      generationRows: gauge('sluice_shard_generation_rows', 'Rows in generation files'),
      walBytes: gauge('sluice_shard_wal_bytes', 'Bytes of live WAL segments'),
      manifestVersion: gauge('sluice_shard_manifest_version', 'Current manifest version'),
    };
    this.#shardCounters = {
      walSyncs: counter('sluice_shard_wal_syncs_total', 'WAL fsyncs (group commits)'),
      walSyncSeconds: counter(
        'sluice_shard_wal_sync_seconds_total',
        'Time spent in WAL fsyncs; divided by sluice_shard_wal_syncs_total it is the mean sync latency',
      ),
      stalls: counter('sluice_shard_stalls_total', 'Times the shard waited for a spare memtable'),
      flushes: counter('sluice_shard_flushes_total', 'Memtables flushed to generation files'),
      flushFailures: counter('sluice_shard_flush_failures_total', 'Failed flush attempts (retried)'),
      commitFailures: counter('sluice_shard_commit_failures_total', 'Failed manifest commits (retried)'),
    };
    this.#state = new Gauge({
      name: 'sluice_shard_state',
      help: 'Shard thread state: 1 for the current state label',
      labelNames: ['shard', 'state'],
      registers,
    });
    this.#unflushed = new Gauge({
      name: 'sluice_unflushed_bytes',
      help: 'Bytes counted against the backpressure limit (memtables not yet flushed)',
      registers,
    });
    this.#putStalls = new Counter({
      name: 'sluice_put_stalls_total',
      help: 'Puts that waited under backpressure',
      registers,
    });
  }

  /** Copies engine state into the metrics; call right before rendering them. */
  refresh(stats: DbStats): void {
    this.#stats = stats;
    for (const s of stats.shards) {
      const shard = String(s.shard);
      const g = this.#shardGauges;
      g.rows!.set({ shard }, s.rows);
      g.activeRows!.set({ shard }, s.activeRows);
      g.memtableBytes!.set({ shard }, s.memtableBytes);
      g.memtableUsedBytes!.set({ shard }, s.memtableUsedBytes);
      g.memtableHeldBytes!.set({ shard }, s.memtableHeldBytes);
      g.frozen!.set({ shard }, s.frozen);
      g.generations!.set({ shard }, s.generations);
      g.generationRows!.set({ shard }, s.generationRows);
      g.walBytes!.set({ shard }, s.walBytes);
      g.manifestVersion!.set({ shard }, s.manifestVersion);
      this.#advance('walSyncs', shard, s.walSyncs);
      this.#advance('walSyncSeconds', shard, s.walSyncSeconds);
      this.#advance('stalls', shard, s.stalls);
      this.#advance('flushes', shard, s.flushes);
      this.#advance('flushFailures', shard, s.flushFailures);
      this.#advance('commitFailures', shard, s.commitFailures);
    }
    this.#state.reset();
    for (const s of stats.shards) this.#state.set({ shard: String(s.shard), state: s.state }, 1);
    this.#unflushed.set(stats.unflushedBytes);
    const delta = this.#delta('putStalls', stats.putStalls);
    if (delta > 0) this.#putStalls.inc(delta);
  }

  /** Counters mirror engine counts: add what the engine counted since the last scrape. */
  #advance(name: string, shard: string, value: number): void {
    const key = `${name}/${shard}`;
    const first = !this.#last.has(key);
    const delta = this.#delta(key, value);
    // inc(0) on first sight: a shard's series exists from the first scrape, at 0 if need be.
    if (delta > 0 || first) this.#shardCounters[name]!.inc({ shard }, delta);
  }

  #delta(key: string, value: number): number {
    const before = this.#last.get(key) ?? 0;
    this.#last.set(key, value);
    // A restarted shard thread starts its counts again: count from zero then.
    return value >= before ? value - before : value;
  }
}

// prom-client declares MetricType as a TypeScript enum but does not export it at run time.
const HISTOGRAM = 'histogram' as unknown as MetricType;

/**
 * A histogram the engine keeps (bucket counts in shared memory or in the broker), exported
 * as is: prom-client's Histogram only takes single observations, so this collector hands the
 * registry the cumulative bucket, sum and count lines itself.
 */

function engineHistogram(
  name: string,
  help: string,
  stats: () => DbStats | undefined,
  pick: (s: DbStats['shards'][number]) => LatencyView,
): Metric {
  const get = (): { name: string; help: string; type: MetricType; values: MetricValueWithName<string>[] } => {
    const values: MetricValueWithName<string>[] = [];
    for (const s of stats()?.shards ?? []) {
      const shard = String(s.shard);
      const h = pick(s);
      let cumulative = 0;
      h.counts.forEach((n, b) => {
        cumulative += n;
        const le = b < h.boundsSeconds.length ? String(h.boundsSeconds[b]) : '+Inf';
        values.push({ metricName: `${name}_bucket`, labels: { shard, le }, value: cumulative });
      });
      values.push({ metricName: `${name}_sum`, labels: { shard }, value: h.sumSeconds });
      values.push({ metricName: `${name}_count`, labels: { shard }, value: cumulative });
    }
    return { name, help, type: HISTOGRAM, values };
  };
  return {
    name,
    help,
    type: HISTOGRAM,
    aggregator: 'sum',
    get,
    reset: () => undefined,
  } as unknown as Metric;
}
