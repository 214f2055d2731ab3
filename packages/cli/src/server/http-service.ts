import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { arrowSchemaOf } from '@sluice/core';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import type { Db } from 'sluice';
import { CliCode, CliError, codeOf } from '../cli-error.js';
import { adaptFilter } from '../filter-arg.js';
import { ArrowSource } from '../input/arrow-source.js';
import { NdjsonSource } from '../input/ndjson-source.js';
import type { RecordSource } from '../input/record-source.js';
import { RowIngestor } from '../ingest/row-ingestor.js';
import { parseKey, toJson } from '../json-values.js';
import { arrowStream, textStream } from '../output/row-formats.js';
import { RowCoercer } from '../value-coercion.js';
import { errorBody, httpStatusOf, retryAfterOf } from './http-errors.js';
import { LimitedBody, discardRest, tooLarge } from './request-body.js';
import { ServiceMetrics } from './service-metrics.js';

export const NDJSON_TYPES = [
  'application/x-ndjson',
  'application/ndjson',
  'application/jsonl',
  'application/x-jsonlines',
  'application/jsonlines',
];
export const ARROW_STREAM_TYPE = 'application/vnd.apache.arrow.stream';
const ARROW_FILE_TYPE = 'application/vnd.apache.arrow.file';

/** How much of a rejected upload is still read (and dropped) so the client sees the answer. */
const LINGER_BYTES = 64 << 20;
const LINGER_MS = 5000;

export interface ServiceOptions {
  /** Largest row body (NDJSON or Arrow) in bytes. Default 1 GiB. */
  readonly bodyLimit?: number;
  /** Largest JSON body (DELETE /v1/rows, POST /v1/scan) in bytes. Default 16 MiB. */
  readonly jsonBodyLimit?: number;
  /** Rows per put while a body streams in. Default 4096. */
  readonly batchRows?: number;
  /** Retry-After seconds sent with 429. Default 1. */
  readonly retryAfterSeconds?: number;
  /** Idle socket timeout in ms (no bytes either way). Default 120 000. */
  readonly idleTimeoutMs?: number;
  /** Fastify's (pino) request log on stderr. Default off. */
  readonly log?: boolean;
}

interface ScanBody {
  readonly columns?: unknown;
  readonly filter?: unknown;
  readonly limit?: unknown;
  readonly format?: unknown;
}

/**
 * The HTTP ingest service over one open table (Fastify on node:http).
 *
 * | route                 | does                                                                  |
 * |-----------------------|-----------------------------------------------------------------------|
 * | POST /v1/rows         | NDJSON or Arrow IPC stream body (by Content-Type), streamed into put   |
 * | DELETE /v1/rows       | `{"keys": [...]}`                                                     |
 * | GET /v1/rows/:key     | the row, or 404                                                       |
 * | POST /v1/scan         | `{"columns","filter","limit"}` → NDJSON, or Arrow IPC stream by Accept |
 * | POST /v1/flush        | flush every memtable                                                  |
 * | GET /metrics          | Prometheus text format                                                |
 * | GET /healthz          | 200 when serving, 503 when draining or a shard is down                |
 *
 * Row bodies are read as they arrive and put in batches, so memory stays bounded whatever the
 * body's size, and a slow table slows the upload (TCP backpressure) instead of buffering it.
 */
export class HttpService {
  readonly app: FastifyInstance;
  readonly metrics = new ServiceMetrics();
  readonly #db: Db;
  readonly #coercer: RowCoercer;
  readonly #options: Required<ServiceOptions>;
  #draining = false;

  constructor(db: Db, options: ServiceOptions = {}) {
    this.#db = db;
    this.#coercer = new RowCoercer(db.schema);
    this.#options = {
      bodyLimit: options.bodyLimit ?? 1 << 30,
      jsonBodyLimit: options.jsonBodyLimit ?? 16 << 20,
      batchRows: options.batchRows ?? 4096,
      retryAfterSeconds: options.retryAfterSeconds ?? 1,
      idleTimeoutMs: options.idleTimeoutMs ?? 120_000,
      log: options.log ?? false,
    };
    this.app = Fastify({
      logger: this.#options.log ? { level: 'info' } : false,
      bodyLimit: this.#options.jsonBodyLimit,
      connectionTimeout: this.#options.idleTimeoutMs,
      // While closing, idle connections are closed and requests already running finish; new
      // requests on kept-alive connections get 503 SLUICE_DRAINING from the onRequest hook.
      return503OnClosing: false,
      forceCloseConnections: 'idle',
    });
    // Row bodies stay streams: the handler reads them incrementally.
    this.app.addContentTypeParser(
      [...NDJSON_TYPES, ARROW_STREAM_TYPE, ARROW_FILE_TYPE],
      (_req, payload, done) => done(null, payload),
    );
    this.app.setErrorHandler((err, _req, reply) => this.#sendError(reply, err));
    this.app.setNotFoundHandler((req, reply) =>
      this.#sendError(reply, new CliError(ErrorCode.NOT_FOUND, `no route ${req.method} ${req.url}`)),
    );
    this.app.addHook('onRequest', (_req, reply, done) => {
      if (!this.#draining) {
        done();
        return;
      }
      reply.header('connection', 'close');
      this.#sendError(
        reply,
        new CliError(CliCode.DRAINING, 'the service is shutting down; retry on another instance'),
      );
    });
    // While draining, every answer closes its connection, so that server.close() is not left
    // waiting for kept-alive sockets of requests that were running when the drain began.
    this.app.addHook('onSend', (_req, reply, payload, done) => {
      if (this.#draining) reply.header('connection', 'close');
      done(null, payload);
    });
    this.app.addHook('onResponse', (req, reply, done) => {
      this.metrics.requests.inc({
        route: req.routeOptions.url ?? 'unknown',
        method: req.method,
        status: String(reply.statusCode),
      });
      done();
    });
    this.#routes();
    // `Expect: 100-continue` (curl sends it for bodies over 1 MiB): refuse a declared oversized
    // row body before the client sends it; anything else proceeds as a normal request.
    this.app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      const declared = Number(req.headers['content-length']);
      if (req.method === 'POST' && Number.isFinite(declared) && declared > this.#options.bodyLimit) {
        res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
        res.end(toJson(errorBody(tooLarge(this.#options.bodyLimit), 0)));
        return;
      }
      res.writeContinue();
      this.app.server.emit('request', req, res);
    });
  }

  /** Listens on host:port (port 0 picks a free one); resolves with the base URL. */
  async listen(host: string, port: number): Promise<string> {
    await this.app.listen({ host, port });
    const address = this.app.server.address() as AddressInfo;
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${shownHost}:${address.port}`;
  }

  /**
   * Graceful shutdown: stop accepting connections, let running requests finish (cut after
   * `timeoutMs`), then close the table: in-flight puts drain, every WAL is synced, threads stop.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    const force = setTimeout(() => this.app.server.closeAllConnections(), timeoutMs);
    force.unref();
    // A request that ends after close() began leaves its socket idle: close those as they appear.
    const sweep = setInterval(() => this.app.server.closeIdleConnections(), 100);
    sweep.unref();
    try {
      await this.app.close();
    } finally {
      clearTimeout(force);
      clearInterval(sweep);
    }
    await this.#db.close();
  }

  #routes(): void {
    const app = this.app;
    app.post('/v1/rows', (req, reply) => this.#postRows(req, reply));
    app.delete('/v1/rows', (req) => this.#deleteRows(req.body));
    app.delete<{ Params: { key: string } }>('/v1/rows/:key', (req) =>
      this.#deleteRows({ keys: [req.params.key] }),
    );
    app.get<{ Params: { key: string } }>('/v1/rows/:key', async (req, reply) => {
      const row = await this.#db.get(parseKey(this.#db.schema, req.params.key));
      if (row === undefined) {
        throw new SluiceError(ErrorCode.NOT_FOUND, `no row with key ${JSON.stringify(req.params.key)}`);
      }
      return reply.type('application/json').send(toJson(row));
    });
    app.post('/v1/scan', (req, reply) => this.#scan(req, reply));
    app.post('/v1/flush', async () => {
      await this.#db.flush();
      return { flushed: true };
    });
    app.get('/metrics', async (_req, reply) => {
      this.metrics.refresh(this.#db.stats());
      return reply.type(this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
    });
    app.get('/healthz', async (_req, reply) => {
      const shards = this.#db.stats().shards;
      const down = shards.filter((s) => s.state !== 'running').map((s) => s.shard);
      const ok = !this.#draining && down.length === 0;
      return reply.code(ok ? 200 : 503).send({
        status: this.#draining ? 'draining' : ok ? 'ok' : 'degraded',
        shards: shards.length,
        ...(down.length > 0 ? { down } : {}),
      });
    });
  }

  async #postRows(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const type = mediaType(req.headers['content-type']);
    if (!(req.body instanceof Readable) || type === ARROW_FILE_TYPE) {
      throw new CliError(
        CliCode.UNSUPPORTED_MEDIA_TYPE,
        type === ARROW_FILE_TYPE
          ? 'the Arrow IPC file format needs random access: send the stream format (application/vnd.apache.arrow.stream)'
          : `POST /v1/rows reads NDJSON (${NDJSON_TYPES[0]}) or an Arrow IPC stream (${ARROW_STREAM_TYPE}), not ${type || 'an empty body'}`,
      );
    }
    const raw = req.raw as IncomingMessage;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > this.#options.bodyLimit) {
      return this.#rejectUpload(raw, reply, tooLarge(this.#options.bodyLimit), 0);
    }
    const body = new LimitedBody(raw, this.#options.bodyLimit);
    const format = type === ARROW_STREAM_TYPE ? 'arrow' : 'ndjson';
    const source: RecordSource =
      format === 'arrow'
        ? ArrowSource.stream('body', body, this.#db.schema)
        : new NdjsonSource('body', body, { bytesRead: () => body.bytes });
    const ingestor = new RowIngestor(
      async (rows) => {
        const end = this.metrics.putSeconds.startTimer({ op: 'put' });
        await this.#db.put(rows);
        end();
        this.metrics.rowsIngested.inc({ format }, rows.length);
      },
      this.#coercer,
      { skipBad: false, batchRows: this.#options.batchRows, work: 'request' },
    );
    try {
      await ingestor.ingest(source);
    } catch (err) {
      if (!body.destroyed) body.destroy();
      return this.#rejectUpload(raw, reply, err, ingestor.rows);
    }
    return reply.send({ rows: ingestor.rows });
  }

  /** Answers an upload that stops being read midway, lingering on the rest of its body. */
  #rejectUpload(raw: IncomingMessage, reply: FastifyReply, err: unknown, rows: number): FastifyReply {
    discardRest(raw, LINGER_BYTES, LINGER_MS);
    return this.#sendError(reply, err, rows);
  }

  async #deleteRows(body: unknown): Promise<{ rows: number }> {
    const keys = (body as { keys?: unknown } | undefined)?.keys;
    if (!Array.isArray(keys)) {
      throw new CliError(CliCode.INVALID_BODY, 'DELETE /v1/rows takes a JSON body {"keys": [...]}');
    }
    const parsed = keys.map((k) => parseKey(this.#db.schema, k));
    const end = this.metrics.putSeconds.startTimer({ op: 'delete' });
    await this.#db.delete(parsed);
    end();
    this.metrics.rowsDeleted.inc(parsed.length);
    return { rows: parsed.length };
  }

  async #scan(req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const body = (req.body ?? {}) as ScanBody;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new CliError(
        CliCode.INVALID_BODY,
        'POST /v1/scan takes a JSON object {"columns","filter","limit"}',
      );
    }
    const schema = this.#db.schema;
    const accept = String(req.headers.accept ?? '');
    const arrow = body.format === 'arrow' || accept.includes(ARROW_STREAM_TYPE);
    const columns = body.columns === undefined ? undefined : (body.columns as string[]);
    const scan = this.#db.scan({
      ...(columns === undefined ? {} : { columns }),
      ...(body.filter === undefined ? {} : { filter: adaptFilter(body.filter, schema) }),
      ...(body.limit === undefined || body.limit === null ? {} : { limit: body.limit as number }),
    });
    const specs = (columns ?? schema.columns.map((c) => c.name)).map((n) => schema.byName.get(n)!);
    if (arrow) {
      return reply.type(ARROW_STREAM_TYPE).send(arrowStream(scan, arrowSchemaOf(schema, specs)));
    }
    return reply.type('application/x-ndjson').send(textStream('ndjson', scan, specs));
  }

  #sendError(reply: FastifyReply, err: unknown, rows?: number): FastifyReply {
    const e = normalize(err);
    const code = codeOf(e);
    const status = httpStatusOf(code);
    const retry = retryAfterOf(code, this.#options.retryAfterSeconds);
    if (retry !== undefined) reply.header('retry-after', String(retry));
    if (status >= 500 && this.#options.log) reply.log.error({ err }, 'request failed');
    return reply
      .code(status)
      .type('application/json')
      .send(toJson(errorBody(e, rows)));
  }
}

/** Fastify's own errors (bad JSON, wrong media type, too large) in the service's vocabulary. */
function normalize(err: unknown): unknown {
  if (codeOf(err) !== undefined) return err;
  const e = err as { code?: string; statusCode?: number; message?: string } | undefined;
  const message = e?.message ?? String(err);
  switch (e?.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new CliError(CliCode.UNSUPPORTED_MEDIA_TYPE, message);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CliError(CliCode.BODY_TOO_LARGE, message);
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new CliError(CliCode.INVALID_BODY, message, { details: e.code ? { reason: e.code } : {} });
  }
  return err;
}

function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}
