import { request } from 'node:http';
import { tableFromArrays, tableFromIPC, tableToIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { schemaFromJson } from '@sluice/core';
import { ErrorCode, SluiceError, open } from 'sluice';
import { HttpService } from '@sluice/cli';
import type { Db } from 'sluice';
import { cleanup, ndjsonRows, sluice, startServer, tempDir } from './cli-support.js';
import type { Server } from './cli-support.js';

const SCHEMA = { id: 'int64', ts: 'timestamp', value: 'float64', tag: 'utf8' };

afterAll(cleanup);

/** A fresh 2-shard table (created in process: quicker than spawning `sluice init`). */
async function newTable(label: string): Promise<string> {
  const dir = await tempDir(label);
  const db = await open(dir, { schema: SCHEMA, primaryKey: 'id', shards: 2, onWarning: () => undefined });
  await db.close();
  return dir;
}

/** A request body produced piece by piece, as a client streaming a large upload would. */
function streamOf(pieces: () => Iterator<Uint8Array | string>): ReadableStream<Uint8Array> {
  const it = pieces();
  const enc = new TextEncoder();
  return new ReadableStream({
    pull(controller) {
      const next = it.next();
      if (next.done) controller.close();
      else controller.enqueue(typeof next.value === 'string' ? enc.encode(next.value) : next.value);
    },
  });
}

function post(
  url: string,
  type: string,
  body: RequestInit['body'],
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    body,
    headers: { 'content-type': type, ...headers },
    duplex: 'half',
  } as RequestInit);
}

async function scanIds(url: string): Promise<Set<number>> {
  const res = await post(`${url}/v1/scan`, 'application/json', JSON.stringify({ columns: ['id'] }));
  expect(res.status).toBe(200);
  const ids = new Set<number>();
  for (const line of (await res.text()).split('\n'))
    if (line) ids.add((JSON.parse(line) as { id: number }).id);
  return ids;
}

/** POST /v1/rows (NDJSON) with node:http, resolving with the answer even if sending fails midway. */
function rawPost(
  url: string,
  headers: Record<string, string>,
  chunks: readonly Uint8Array[],
): Promise<{ status: number; body: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port: Number(port),
      method: 'POST',
      path: '/v1/rows',
      headers: { 'content-type': 'application/x-ndjson', ...headers },
    });
    req.on('error', () => undefined); // EPIPE/ECONNRESET after the answer: expected
    req.flushHeaders();
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    void (async () => {
      for (const c of chunks) {
        if (req.destroyed) return;
        if (!req.write(c)) await new Promise((r) => req.once('drain', r));
      }
      if (headers['content-length'] === undefined) req.end();
    })();
  });
}

function arrowRows(from: number, n: number): Uint8Array {
  const ids = Array.from({ length: n }, (_, i) => from + i);
  return tableToIPC(
    tableFromArrays({
      id: BigInt64Array.from(ids, BigInt),
      ts: ids.map((i) => new Date(1_700_000_000_000 + i)),
      value: Float64Array.from(ids, (i) => i / 2),
      tag: ids.map((i) => `t${i % 97}`),
    }),
    'stream',
  );
}

/** The value of one Prometheus sample line `name{labels} value`. */
function sample(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined) throw new Error(`no sample ${name}{${labels}} in the scrape`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('sluice serve: ingest and read back over loopback', () => {
  let server: Server;

  beforeAll(async () => {
    server = await startServer(await newTable('serve'), ['--body-limit', '16MiB']);
  });

  it('ingests 100k rows as a streamed NDJSON body', async () => {
    const res = await post(
      `${server.url}/v1/rows`,
      'application/x-ndjson',
      streamOf(function* () {
        for (let from = 0; from < 100_000; from += 5000) yield ndjsonRows(from, from + 5000);
      }),
    );
    expect(await res.json()).toEqual({ rows: 100_000 });
    expect(res.status).toBe(200);
  });

  it('ingests 100k rows as a streamed Arrow IPC stream body', async () => {
    const bytes = arrowRows(100_000, 100_000);
    const res = await post(
      `${server.url}/v1/rows`,
      'application/vnd.apache.arrow.stream',
      streamOf(function* () {
        for (let at = 0; at < bytes.byteLength; at += 64 << 10) yield bytes.subarray(at, at + (64 << 10));
      }),
    );
    expect(await res.json()).toEqual({ rows: 100_000 });
  });

  it('reads rows back by key, by NDJSON scan and by Arrow scan', async () => {
    const one = await fetch(`${server.url}/v1/rows/12345`);
    expect(await one.json()).toEqual({
      id: 12345,
      ts: 1_700_000_012_345,
      value: 6172.5,
      tag: `t${12345 % 97}`,
    });
    const two = await fetch(`${server.url}/v1/rows/150001`);
    expect(await two.json()).toEqual({
      id: 150001,
      ts: 1_700_000_150_001,
      value: 75000.5,
      tag: `t${150001 % 97}`,
    });
    expect((await fetch(`${server.url}/v1/rows/999999999`)).status).toBe(404);

    const ids = await scanIds(server.url);
    expect(ids.size).toBe(200_000);
    for (const probe of [0, 99_999, 100_000, 199_999]) expect(ids.has(probe)).toBe(true);

    const res = await post(
      `${server.url}/v1/scan`,
      'application/json',
      JSON.stringify({ filter: { column: 'value', op: '<', value: 50 }, columns: ['id', 'value'] }),
      { accept: 'application/vnd.apache.arrow.stream' },
    );
    expect(res.headers.get('content-type')).toContain('application/vnd.apache.arrow.stream');
    const t = tableFromIPC(new Uint8Array(await res.arrayBuffer()));
    expect(t.numRows).toBe(100);
    expect(t.schema.fields.map((f) => f.name)).toEqual(['id', 'value']);
  });

  it('deletes keys', async () => {
    const res = await fetch(`${server.url}/v1/rows`, {
      method: 'DELETE',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ keys: [1, '2'] }),
    });
    expect(await res.json()).toEqual({ rows: 2 });
    expect((await fetch(`${server.url}/v1/rows/1`)).status).toBe(404);
  });

  it('serves Prometheus metrics', async () => {
    expect((await post(`${server.url}/v1/flush`, 'application/json', '{}')).status).toBe(200);
    const res = await fetch(`${server.url}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('sluice_rows_ingested_total{format="ndjson"} 100000');
    expect(text).toContain('sluice_rows_ingested_total{format="arrow"} 100000');
    expect(text).toMatch(/^sluice_put_duration_seconds_count\{op="put"\} [1-9]\d*$/m);
    for (const shard of ['0', '1']) {
      for (const name of [
        'sluice_shard_memtable_bytes',
        'sluice_shard_frozen_memtables',
        'sluice_shard_wal_bytes',
        'sluice_shard_wal_syncs_total',
        'sluice_shard_wal_sync_seconds_total',
        'sluice_shard_stalls_total',
        'sluice_shard_generations',
        'sluice_shard_flushes_total',
      ]) {
        expect(text).toMatch(new RegExp(`^${name}\\{shard="${shard}"\\} [0-9.e+-]+$`, 'm'));
      }
      // The engine-kept histograms: cumulative buckets ending in +Inf = _count, one sample per
      // WAL fsync and per flush.
      const syncs = sample(text, 'sluice_shard_wal_syncs_total', `shard="${shard}"`);
      expect(syncs).toBeGreaterThan(0);
      for (const [name, count] of [
        ['sluice_wal_sync_duration_seconds', syncs],
        ['sluice_flush_duration_seconds', sample(text, 'sluice_shard_flushes_total', `shard="${shard}"`)],
      ] as const) {
        expect(count).toBeGreaterThan(0);
        const buckets = [
          ...text.matchAll(new RegExp(`^${name}_bucket\\{shard="${shard}",le="([^"]+)"\\} (\\d+)$`, 'gm')),
        ];
        expect(buckets.length).toBeGreaterThan(5);
        const counts = buckets.map((m) => Number(m[2]));
        expect(counts).toEqual([...counts].sort((a, b) => a - b));
        expect(buckets.at(-1)![1]).toBe('+Inf');
        expect(counts.at(-1)).toBe(count);
        expect(sample(text, `${name}_count`, `shard="${shard}"`)).toBe(count);
        expect(sample(text, `${name}_sum`, `shard="${shard}"`)).toBeGreaterThan(0);
      }
    }
    expect(text).toMatch(/^sluice_shard_state\{shard="0",state="running"\} 1$/m);
    expect(await (await fetch(`${server.url}/healthz`)).json()).toEqual({ status: 'ok', shards: 2 });
  });

  it('answers bad rows with 400, the code, line, column and the row; nothing of the batch applied', async () => {
    const body = `${ndjsonRows(500_000, 500_002)}{"id":500002,"value":"high"}\n${ndjsonRows(500_003, 500_004)}`;
    const res = await post(`${server.url}/v1/rows`, 'application/x-ndjson', body);
    expect(res.status).toBe(400);
    const json = (await res.json()) as { error: Record<string, unknown>; rows: number };
    expect(json.rows).toBe(0);
    expect(json.error).toMatchObject({
      code: 'SLUICE_INVALID_ROW',
      line: 3,
      column: 'value',
      row: '{"id":500002,"value":"high"}',
    });
    expect(json.error['message']).toMatch(/\(request aborted: nothing was applied\)$/);
    expect((await fetch(`${server.url}/v1/rows/500000`)).status).toBe(404);

    const arrow = tableToIPC(tableFromArrays({ id: BigInt64Array.from([1n]), color: ['red'] }), 'stream');
    const res2 = await post(`${server.url}/v1/rows`, 'application/vnd.apache.arrow.stream', arrow);
    expect(res2.status).toBe(400);
    expect(((await res2.json()) as { error: { code: string; column: string } }).error).toMatchObject({
      code: 'SLUICE_INVALID_INPUT',
      column: 'color',
    });
  });

  it('413 past the body limit, 415 for other content types, 404 for other routes', async () => {
    // node:http rather than fetch: a server may answer 413 and close while the client is still
    // sending, and fetch reports the broken pipe instead of the answer.
    const declared = await rawPost(server.url, { 'content-length': String(17 << 20) }, []);
    expect(declared.status).toBe(413);
    expect((JSON.parse(declared.body) as { error: { code: string } }).error.code).toBe(
      'SLUICE_BODY_TOO_LARGE',
    );
    const expecting = await rawPost(
      server.url,
      { 'content-length': String(17 << 20), expect: '100-continue' },
      [],
    );
    expect(expecting.status).toBe(413);
    const chunked = await rawPost(
      server.url,
      {},
      Array.from({ length: 20 }, () => new Uint8Array(1 << 20).fill(0x41)),
    );
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body)).toMatchObject({ error: { code: 'SLUICE_BODY_TOO_LARGE' }, rows: 0 });
    const csv = await post(`${server.url}/v1/rows`, 'text/csv', 'id\n1\n');
    expect(csv.status).toBe(415);
    expect(((await csv.json()) as { error: { code: string } }).error.code).toBe(
      'SLUICE_UNSUPPORTED_MEDIA_TYPE',
    );
    expect((await fetch(`${server.url}/v2/nothing`)).status).toBe(404);
  });

  it('survives fuzzed, malformed and aborted bodies', async () => {
    let seed = 42;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const valid = arrowRows(700_000, 50);
    const pieces = [
      '{"id":1,"value":1}',
      '{"id":',
      '[1,2,3]',
      'null',
      '{"id":1e400}',
      '{"id":"12345678901234567890123"}',
      '{"__proto__":{"x":1},"id":3}',
      '{"id":4,"ts":"yesterday"}',
      `{"id":5,"tag":"${'x'.repeat(3000)}"}`,
      '\u0000\u0001\uffff',
      '{"id":6,"value":{"nested":[[[[]]]]}}',
      '{"id":7}',
    ];
    const statuses = new Set<number>();
    for (let i = 0; i < 60; i++) {
      let body: Uint8Array;
      let type: string;
      if (i % 3 === 0) {
        type = 'application/vnd.apache.arrow.stream';
        body =
          i % 2 === 0
            ? valid.subarray(0, rand(valid.byteLength))
            : valid.map((b) => (rand(50) === 0 ? rand(256) : b));
      } else if (i % 3 === 1) {
        type = 'application/x-ndjson';
        body = Uint8Array.from({ length: 1 + rand(4096) }, () => rand(256));
      } else {
        type = 'application/x-ndjson';
        body = new TextEncoder().encode(
          Array.from({ length: 1 + rand(8) }, () => pieces[rand(pieces.length)]).join('\n'),
        );
      }
      const res = await post(`${server.url}/v1/rows`, type, body);
      await res.arrayBuffer();
      statuses.add(res.status);
      expect([200, 400, 413]).toContain(res.status);
    }
    expect(statuses.has(400)).toBe(true);

    const { port } = new URL(server.url);
    for (let i = 0; i < 12; i++) {
      await new Promise<void>((resolve) => {
        const req = request({
          host: '127.0.0.1',
          port: Number(port),
          method: 'POST',
          path: '/v1/rows',
          headers: {
            'content-type': i % 2 === 0 ? 'application/x-ndjson' : 'application/vnd.apache.arrow.stream',
            ...(i % 3 === 0 ? { 'content-length': '1000000' } : {}),
          },
        });
        req.on('error', () => resolve());
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve());
        });
        req.write(
          i % 2 === 0
            ? ndjsonRows(800_000 + i * 10, 800_000 + i * 10 + 5) + '{"id":8'
            : valid.subarray(0, 300),
        );
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 30);
      });
    }
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(server.child.exitCode).toBeNull();
    expect((await fetch(`${server.url}/v1/rows/12345`)).status).toBe(200);
  });
});

describe('sluice serve: crashes and shutdown', () => {
  let dir: string;
  const acked: [number, number][] = [];
  let restarted: Server;

  it('SIGKILL mid-ingest, restart: every acknowledged row is present', async () => {
    dir = await newTable('kill');
    const server = await startServer(dir, ['--batch-rows', '500']);
    let stop = false;
    const producer = async (p: number): Promise<void> => {
      for (let b = 0; !stop; b++) {
        const from = p * 1_000_000 + b * 1000;
        try {
          const res = await post(
            `${server.url}/v1/rows`,
            'application/x-ndjson',
            ndjsonRows(from, from + 1000),
          );
          const json = (await res.json()) as { rows?: number };
          if (res.status === 200 && json.rows === 1000) acked.push([from, from + 1000]);
        } catch {
          return; // the server died under this request: not acknowledged
        }
      }
    };
    const producers = [0, 1, 2].map(producer);
    while (acked.length < 12) await new Promise((r) => setTimeout(r, 20));
    server.child.kill('SIGKILL');
    stop = true;
    await Promise.all(producers);
    expect((await server.exited).signal).toBe('SIGKILL');

    // The crash leaves no damage (at most a torn WAL tail, which the next open cuts).
    const v = await sluice(['verify', dir]);
    expect(v.code).toBe(0);

    restarted = await startServer(dir);
    const ids = await scanIds(restarted.url);
    let missing = 0;
    for (const [from, to] of acked) for (let id = from; id < to; id++) if (!ids.has(id)) missing++;
    expect(missing).toBe(0);
    const [from] = acked[acked.length - 1]!;
    expect(await (await fetch(`${restarted.url}/v1/rows/${from + 7}`)).json()).toEqual({
      id: from + 7,
      ts: 1_700_000_000_000 + from + 7,
      value: (from + 7) / 2,
      tag: `t${(from + 7) % 97}`,
    });
  });

  it('SIGTERM drains: a running upload completes, new connections are refused, exit 0', async () => {
    const server = restarted;
    let sent = 0;
    const base = 5_000_000;
    const res = await post(
      `${server.url}/v1/rows`,
      'application/x-ndjson',
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent === 5) server.child.kill('SIGTERM');
          if (sent === 20) {
            controller.close();
            return;
          }
          await new Promise((r) => setTimeout(r, 20));
          controller.enqueue(
            new TextEncoder().encode(ndjsonRows(base + sent * 1000, base + (sent + 1) * 1000)),
          );
          sent++;
        },
      }),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ rows: 20_000 });
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    const exit = await server.exited;
    expect(exit.code).toBe(0);
    expect(server.stderr()).toMatch(/SIGTERM: draining[\s\S]*drained and closed/);
    // The drained upload is durable: a fresh process finds all of it.
    const count = await sluice(['count', dir, '--filter', `{"column":"id","op":">=","value":${base}}`]);
    expect(count.stdout).toBe('20000\n');
  });
});

describe('HTTP error mapping (in process)', () => {
  it('backpressure is 429 with Retry-After; fenced and closed are 503; I/O is 500', async () => {
    const schema = schemaFromJson({ columns: [{ name: 'id', type: 'int64' }], primaryKey: 'id' });
    let failure: Error = new Error('unset');
    const db = {
      schema,
      put: () => Promise.reject(failure),
      stats: () => ({
        shards: [],
        visibleSeq: 0,
        putStalls: 0,
        unflushedBytes: 0,
        recovery: { records: 0, rows: 0, ms: 0 },
      }),
      close: () => Promise.resolve(),
    } as unknown as Db;
    const service = new HttpService(db, { retryAfterSeconds: 3 });
    const url = await service.listen('127.0.0.1', 0);
    try {
      const cases: [SluiceError, number, string | null][] = [
        [new SluiceError(ErrorCode.BACKPRESSURE, 'slow down'), 429, '3'],
        [new SluiceError(ErrorCode.FENCED, 'another writer'), 503, null],
        [new SluiceError(ErrorCode.CLOSED, 'closed'), 503, null],
        [new SluiceError(ErrorCode.SHARD_CRASHED, 'crashed'), 503, '1'],
        [new SluiceError(ErrorCode.IO, 'EIO'), 500, null],
      ];
      for (const [err, status, retry] of cases) {
        failure = err;
        const res = await post(`${url}/v1/rows`, 'application/x-ndjson', '{"id":1}\n');
        expect(res.status).toBe(status);
        expect(res.headers.get('retry-after')).toBe(retry);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe(err.code);
      }
    } finally {
      await service.drain(1000);
    }
  });
});
