/**
 * Issue 3, item 9: the bad input catalogue. Each kind of malformed row, key, filter, scan
 * option or open option is rejected with a typed error whose message names what is wrong, and
 * is checked to have changed nothing: the table's rows, its visible sequence and every byte of
 * its files are the same before and after.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '@sluice/protocol';
import { open } from 'sluice';
import type { Db, OpenOptions } from 'sluice';
import { removeTempDirs, tempDir } from './lib/table.js';

afterAll(removeTempDirs);

const SCHEMA = {
  id: 'int64',
  ts: 'timestamp',
  value: 'float64',
  tag: 'utf8',
  emb: 'float32[4]',
  n: 'int32',
  ok: 'bool',
  f: 'float32',
} as const;

const OPTIONS: OpenOptions = {
  schema: SCHEMA,
  primaryKey: 'id',
  shards: 2,
  memtableBytes: 64 << 10,
  maxValueBytes: 64,
  onWarning: () => undefined,
};

const good = (id: number): Record<string, unknown> => ({
  id,
  ts: 1_700_000_000_000 + id,
  value: id + 0.5,
  tag: `t${id}`,
  emb: [id, 1, 2, 3],
  n: id,
  ok: id % 2 === 0,
  f: id / 4,
});

/** A row that is good except for `patch` (undefined values delete the column). */
const bad = (patch: Record<string, unknown>): Record<string, unknown> => {
  const r = { ...good(900), ...patch };
  for (const [k, v] of Object.entries(patch)) if (v === undefined) delete r[k];
  return r;
};

interface Case {
  readonly name: string;
  readonly code: string;
  /** Substrings the message must contain: it names what is wrong. */
  readonly names: readonly string[];
  readonly call: (db: Db) => Promise<unknown> | unknown;
  /** For rows: the details the error must carry. */
  readonly details?: Record<string, unknown>;
}

const rowCase = (name: string, patch: Record<string, unknown>, column: string): Case => ({
  name,
  code: 'SLUICE_INVALID_ROW',
  names: [column],
  details: { row: 1, column },
  call: (db) => db.put([good(901), bad(patch), good(902)]),
});

const deep = (levels: number): unknown => {
  let f: unknown = { column: 'n', op: '=', value: 1 };
  for (let i = 0; i < levels; i++) f = { not: f };
  return f;
};

const TABLE_CASES: Case[] = [
  rowCase('float64 given a string', { value: 'not a number' }, 'value'),
  rowCase('float64 given an object', { value: {} }, 'value'),
  rowCase('float32 given a string', { f: 'x' }, 'f'),
  rowCase('int32 given a fraction', { n: 1.5 }, 'n'),
  rowCase('int32 out of range', { n: 2 ** 31 }, 'n'),
  rowCase('int32 given a string', { n: '3' }, 'n'),
  rowCase('int64 key given a fraction', { id: 1.5 }, 'id'),
  rowCase('int64 key beyond 2^53 as a number', { id: 2 ** 53 + 2 }, 'id'),
  rowCase('int64 key outside int64 as a bigint', { id: 2n ** 63n }, 'id'),
  rowCase('int64 key given a string', { id: '12' }, 'id'),
  rowCase('null primary key', { id: null }, 'id'),
  rowCase('missing primary key', { id: undefined }, 'id'),
  rowCase('unknown column', { bogus: 1 }, 'bogus'),
  rowCase('utf8 given a number', { tag: 42 }, 'tag'),
  rowCase('utf8 value over maxValueBytes', { tag: 'x'.repeat(65) }, 'tag'),
  rowCase('timestamp given a string', { ts: 'yesterday' }, 'ts'),
  rowCase('timestamp given an invalid Date', { ts: new Date('nope') }, 'ts'),
  rowCase('timestamp given a fraction', { ts: 1.5 }, 'ts'),
  rowCase('vector of the wrong length', { emb: [1, 2, 3] }, 'emb'),
  rowCase('vector with a non-number element', { emb: [1, 2, 'x', 4] }, 'emb'),
  rowCase('vector given a string', { emb: 'abcd' }, 'emb'),
  rowCase('bool given a number', { ok: 1 }, 'ok'),
  rowCase('bool given a string', { ok: 'true' }, 'ok'),
  {
    name: 'row that is null',
    code: 'SLUICE_INVALID_ROW',
    names: ['row 1'],
    details: { row: 1 },
    call: (db) => db.put([good(901), null, good(902)]),
  },
  {
    name: 'row that is a number',
    code: 'SLUICE_INVALID_ROW',
    names: ['row 1'],
    details: { row: 1 },
    call: (db) => db.put([good(901), 7]),
  },
  {
    name: 'row that is an array',
    code: 'SLUICE_INVALID_ROW',
    names: ['row 0'],
    details: { row: 0 },
    call: (db) => db.put([[1, 2, 3]]),
  },
  {
    name: 'put of a single object',
    code: 'SLUICE_INVALID_ROW',
    names: ['array'],
    call: (db) => db.put(good(903)),
  },
  { name: 'put of a string', code: 'SLUICE_INVALID_ROW', names: ['array'], call: (db) => db.put('rows') },
  { name: 'delete of a non-array', code: 'SLUICE_INVALID_KEY', names: ['array'], call: (db) => db.delete(1) },
  {
    name: 'delete of a fractional key',
    code: 'SLUICE_INVALID_KEY',
    names: ['id'],
    call: (db) => db.delete([1, 1.5]),
  },
  {
    name: 'delete of a string key',
    code: 'SLUICE_INVALID_KEY',
    names: ['id'],
    call: (db) => db.delete(['a']),
  },
  {
    name: 'delete of a null key',
    code: 'SLUICE_INVALID_KEY',
    names: ['id'],
    call: (db) => db.delete([null]),
  },
  { name: 'get of undefined', code: 'SLUICE_INVALID_KEY', names: ['id'], call: (db) => db.get(undefined) },
  { name: 'get of a string key', code: 'SLUICE_INVALID_KEY', names: ['id'], call: (db) => db.get('1') },
  {
    name: 'get of a key beyond int64',
    code: 'SLUICE_INVALID_KEY',
    names: ['id'],
    call: (db) => db.get(2n ** 64n),
  },
  {
    name: 'getMany of a non-array',
    code: 'SLUICE_INVALID_KEY',
    names: ['array'],
    call: (db) => db.getMany('x'),
  },
  {
    name: 'getMany with an object key',
    code: 'SLUICE_INVALID_KEY',
    names: ['id'],
    call: (db) => db.getMany([1, {}]),
  },
  {
    name: 'filter on an unknown column',
    code: 'SLUICE_INVALID_FILTER',
    names: ['nope'],
    call: (db) => db.scan({ filter: { column: 'nope', op: '=', value: 1 } }).toArray(),
  },
  {
    name: 'filter with an unknown operator',
    code: 'SLUICE_INVALID_FILTER',
    names: ['~'],
    call: (db) => db.scan({ filter: { column: 'n', op: '~', value: 1 } }).toArray(),
  },
  {
    name: 'filter comparing int32 with a string',
    code: 'SLUICE_INVALID_FILTER',
    names: ['n'],
    call: (db) => db.scan({ filter: { column: 'n', op: '<', value: 'x' } }).toArray(),
  },
  {
    name: "filter 'in' without an array",
    code: 'SLUICE_INVALID_FILTER',
    names: ['values'],
    call: (db) => db.scan({ filter: { column: 'n', op: 'in', values: 3 } }).toArray(),
  },
  {
    name: "filter 'and' of a non-array",
    code: 'SLUICE_INVALID_FILTER',
    names: ['and'],
    call: (db) => db.scan({ filter: { and: 'x' } }).toArray(),
  },
  {
    name: "filter 'not' of null",
    code: 'SLUICE_INVALID_FILTER',
    names: ['not'],
    call: (db) => db.scan({ filter: { not: null } }).toArray(),
  },
  {
    name: 'filter that is a function',
    code: 'SLUICE_INVALID_FILTER',
    names: ['filter'],
    call: (db) => db.scan({ filter: () => true }).toArray(),
  },
  {
    name: 'filter nested too deep',
    code: 'SLUICE_INVALID_FILTER',
    names: ['deep'],
    call: (db) => db.scan({ filter: deep(100) }).toArray(),
  },
  {
    name: 'scan of an unknown column',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['nope'],
    call: (db) => db.scan({ columns: ['id', 'nope'] }).toArray(),
  },
  {
    name: 'scan columns that are not an array',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['columns'],
    call: (db) => db.scan({ columns: 'id' as unknown as string[] }).toArray(),
  },
  {
    name: 'negative scan limit',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['limit'],
    call: (db) => db.scan({ limit: -1 }).toArray(),
  },
  {
    name: 'fractional scan limit',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['limit'],
    call: (db) => db.scan({ limit: 1.5 }).toArray(),
  },
];

interface OpenCase {
  readonly name: string;
  readonly code: string;
  readonly names: readonly string[];
  /** Options for open; `existing` opens the populated table, otherwise a new directory. */
  readonly options: unknown;
  readonly existing: boolean;
}

const OPEN_CASES: OpenCase[] = [
  {
    name: 'zero shards',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['shards'],
    existing: false,
    options: { ...OPTIONS, shards: 0 },
  },
  {
    name: 'fractional shards',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['shards'],
    existing: false,
    options: { ...OPTIONS, shards: 1.5 },
  },
  {
    name: 'unknown durability',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['durability'],
    existing: false,
    options: { ...OPTIONS, durability: 'fast' },
  },
  {
    name: 'memtableBytes too small',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['memtableBytes'],
    existing: false,
    options: { ...OPTIONS, memtableBytes: 10 },
  },
  {
    name: 'unknown option',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['colour'],
    existing: false,
    options: { ...OPTIONS, colour: 'red' },
  },
  {
    name: 'options that are not an object',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['options'],
    existing: false,
    options: 5,
  },
  {
    name: 'onWarning that is not a function',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['onWarning'],
    existing: false,
    options: { ...OPTIONS, onWarning: 'x' },
  },
  {
    name: 'schema with an unknown type',
    code: 'SLUICE_INVALID_SCHEMA',
    names: ['int128'],
    existing: false,
    options: { ...OPTIONS, schema: { ...SCHEMA, big: 'int128' } },
  },
  {
    name: 'primary key not in the schema',
    code: 'SLUICE_INVALID_SCHEMA',
    names: ['nope'],
    existing: false,
    options: { ...OPTIONS, primaryKey: 'nope' },
  },
  {
    name: 'primary key on a float column',
    code: 'SLUICE_INVALID_SCHEMA',
    names: ['value'],
    existing: false,
    options: { ...OPTIONS, primaryKey: 'value' },
  },
  {
    name: 'reopen with another shard count',
    code: 'SLUICE_INCOMPATIBLE',
    names: ['shards'],
    existing: true,
    options: { shards: 3 },
  },
  {
    name: 'reopen with another schema',
    code: 'SLUICE_INCOMPATIBLE',
    names: ['schema'],
    existing: true,
    options: { schema: { ...SCHEMA, extra: 'utf8' } },
  },
  {
    name: 'reopen with another primary key',
    code: 'SLUICE_INCOMPATIBLE',
    names: ['tag'],
    existing: true,
    options: { primaryKey: 'tag' },
  },
  {
    name: 'reopen with an invalid maxUnflushedBytes',
    code: 'SLUICE_INVALID_OPTIONS',
    names: ['maxUnflushedBytes'],
    existing: true,
    options: { maxUnflushedBytes: 1 },
  },
];

/** Name → sha256 of every file under `dir`, temp files included. */
async function fingerprint(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else
        out[path.relative(dir, p)] = createHash('sha256')
          .update(await readFile(p))
          .digest('hex');
    }
  };
  await walk(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  return out;
}

async function rejection(p: () => Promise<unknown> | unknown): Promise<unknown> {
  try {
    await p();
  } catch (err) {
    return err;
  }
  return undefined;
}

function expectTyped(err: unknown, c: { code: string; names: readonly string[] }): void {
  expect(err, 'accepted, should have been rejected').toBeDefined();
  expect(isSluiceError(err), `not a SluiceError: ${String(err)}`).toBe(true);
  const e = err as { code: string; message: string };
  expect(e.code, e.message).toBe(c.code);
  for (const n of c.names) expect(e.message, `the message does not name "${n}"`).toContain(n);
}

describe('bad input catalogue', () => {
  let dir: string;
  let db: Db;
  let rowsBefore: string;

  const state = async (): Promise<string> => {
    const rows = await db.scan().toArray();
    rows.sort((a, b) => ((a.id as bigint) < (b.id as bigint) ? -1 : 1));
    return JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));
  };

  beforeAll(async () => {
    dir = path.join(await tempDir('bad'), 'table');
    db = await open(dir, OPTIONS);
    await db.put(Array.from({ length: 50 }, (_, i) => good(i)));
    await db.flush();
    await db.put(Array.from({ length: 20 }, (_, i) => good(i + 40)));
    rowsBefore = await state();
  });

  it('has at least 30 kinds of bad input', () => {
    expect(TABLE_CASES.length + OPEN_CASES.length).toBeGreaterThanOrEqual(30);
  });

  it.each(TABLE_CASES.map((c) => [c.name, c] as const))(
    '%s: typed error naming it, nothing changed',
    async (_n, c) => {
      const seqBefore = db.stats().visibleSeq;
      const files = await fingerprint(dir);
      const err = await rejection(() => c.call(db));
      expectTyped(err, c);
      if (c.details) expect((err as { details: unknown }).details).toMatchObject(c.details);
      expect(db.stats().visibleSeq).toBe(seqBefore);
      expect(await state()).toBe(rowsBefore);
      expect(await fingerprint(dir)).toEqual(files);
      // The table still takes good input afterwards (nothing half-applied is in the way).
      expect(await db.get(1)).toBeDefined();
    },
  );

  describe('open options', () => {
    beforeAll(async () => {
      await db.close();
    });

    it.each(OPEN_CASES.map((c) => [c.name, c] as const))(
      '%s: typed error naming it, nothing changed',
      async (_n, c) => {
        const target = c.existing ? dir : path.join(await tempDir('bad-open'), 'table');
        const files = await fingerprint(target);
        const err = await rejection(() => open(target, c.options as OpenOptions));
        expectTyped(err, c);
        // No file written: no table created, no epoch claimed, no manifest committed.
        expect(await fingerprint(target)).toEqual(files);
      },
    );

    it('the table is intact after every rejected open', async () => {
      db = await open(dir, { onWarning: () => undefined });
      try {
        expect(await state()).toBe(rowsBefore);
      } finally {
        await db.close();
      }
    });
  });
});
