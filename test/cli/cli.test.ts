import { cp, readdir, readFile, stat, writeFile, appendFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int64,
  Table,
  TimestampMillisecond,
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
  vectorFromArray,
} from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import { REPO, cleanup, sluice, sluiceBytes, tempDir } from './cli-support.js';

/** parquet-wasm (arrow-rs compiled to WebAssembly): a Parquet writer independent of the hyparquet reader. */
interface ParquetWasm {
  Table: { fromIPCStream(bytes: Uint8Array): unknown };
  WriterPropertiesBuilder: new () => { setCompression(c: number): { build(): unknown } };
  Compression: { SNAPPY: number };
  writeParquet(table: unknown, props: unknown): Uint8Array;
}
const parquetWasm = createRequire(path.join(REPO, 'packages/cli/package.json'))(
  'parquet-wasm',
) as ParquetWasm;

const SCHEMA = 'id:int64,ts:timestamp,value:float64,tag:utf8,ok:bool,emb:float32[3]';

let work: string;
let table: string;

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

function parseRows(text: string): Record<string, unknown>[] {
  return lines(text).map((l) => JSON.parse(l) as Record<string, unknown>);
}

beforeAll(async () => {
  work = await tempDir('cli');
  table = path.join(work, 'events');
});

afterAll(cleanup);

describe('sluice CLI (built binary)', () => {
  it('prints --help for every command and the exit codes on the main help', async () => {
    const commands = [
      'init',
      'ingest',
      'get',
      'scan',
      'count',
      'stats',
      'flush',
      'verify',
      'serve',
      'demo',
      'bench',
    ];
    const results = await Promise.all(commands.map((c) => sluice([c, '--help'])));
    results.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: sluice ${commands[i]}`);
    });
    const main = await sluice(['--help']);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/Exit codes:[\s\S]*130/);
  });

  it('exits 2 on usage errors', async () => {
    const r = await sluice(['scan', table, '--limit', 'many']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("option '--limit <n>' argument 'many' is invalid");
    expect((await sluice(['frobnicate'])).code).toBe(2);
  });

  it('exits 4 without creating anything when there is no table', async () => {
    const missing = path.join(work, 'nope');
    const r = await sluice(['get', missing, '1']);
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/^sluice: SLUICE_NOT_FOUND: .* holds no Sluice table/);
    expect(existsSync(missing)).toBe(false);
  });

  it('init creates a table, and refuses to create it twice', async () => {
    const r = await sluice(['init', table, '--schema', SCHEMA, '--key', 'id', '--shards', '2']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/created table .*events: 2 shards, key id/);
    const again = await sluice(['init', table, '--schema', SCHEMA, '--key', 'id']);
    expect(again.code).toBe(3);
    expect(again.stderr).toMatch(/^sluice: SLUICE_EXISTS: /);
  });

  const csv = [
    'id,ts,value,tag,ok,emb',
    '1,2024-01-01T00:00:00Z,1.5,"Smith, John",true,"[1,2,3]"',
    '2,1700000000000,2.5,"say ""hi"", then go",false,1 2 3',
    '3,1700000000000,3.5,"two',
    'lines",yes,',
    '4,1700000000000,oops,bad value,true,',
    '5,1700000000000,5.5,too,many,fields,here',
    '6,,6.5,,,',
    '',
  ].join('\n');

  it('aborts on a bad CSV row, naming file, line and column; nothing of its batch is applied', async () => {
    const file = path.join(work, 'people.csv');
    await writeFile(file, csv);
    const r = await sluice(['ingest', table, file, '--batch-rows', '2', '--progress', 'none']);
    expect(r.code).toBe(3);
    const errLines = lines(r.stderr);
    expect(errLines).toHaveLength(1);
    expect(errLines[0]).toBe(
      `sluice: SLUICE_INVALID_ROW: ${file}:6: column "value": expected a number, got string "oops" ` +
        `(ingest aborted: 2 rows before line 4 of ${file} were applied, nothing from there on)`,
    );
    // Rows 1 and 2 were one acknowledged batch; row 3 shared a batch with the bad row 4.
    const got = await sluice(['get', table, '1', '2', '3']);
    expect(got.code).toBe(4);
    expect(parseRows(got.stdout).map((row) => row.id)).toEqual([1, 2]);
    expect(got.stderr).toContain('not found: key 3');
  });

  it('--skip-bad skips and counts bad rows (quoted commas, quotes and newlines read right)', async () => {
    const file = path.join(work, 'people.csv');
    const badRows = path.join(work, 'bad.ndjson');
    const r = await sluice([
      'ingest',
      table,
      file,
      '--skip-bad',
      '--bad-rows',
      badRows,
      '--progress',
      'none',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ingested 4 rows from 1 file .*; 2 bad rows skipped/);
    expect(lines(r.stderr)).toEqual([
      `sluice: skipped ${file}:6: column "value": expected a number, got string "oops"`,
      `sluice: skipped ${file}:7: malformed CSV record: 6 fields expected, got 7`,
    ]);
    const bad = parseRows(await readFile(badRows, 'utf8'));
    expect(bad.map((b) => [b.line, b.column ?? null])).toEqual([
      [6, 'value'],
      [7, null],
    ]);
    const got = await sluice(['get', table, '1', '2', '3', '6']);
    expect(got.code).toBe(0);
    expect(parseRows(got.stdout)).toEqual([
      {
        id: 1,
        ts: Date.parse('2024-01-01T00:00:00Z'),
        value: 1.5,
        tag: 'Smith, John',
        ok: true,
        emb: [1, 2, 3],
      },
      { id: 2, ts: 1_700_000_000_000, value: 2.5, tag: 'say "hi", then go', ok: false, emb: [1, 2, 3] },
      { id: 3, ts: 1_700_000_000_000, value: 3.5, tag: 'two\nlines', ok: true, emb: null },
      { id: 6, ts: null, value: 6.5, tag: null, ok: null, emb: null },
    ]);
  });

  it('ingests NDJSON, Arrow IPC file and stream, and Parquet written by another library, in one run', async () => {
    const ndjson = path.join(work, 'a.ndjson');
    let text = '';
    for (let id = 100; id < 200; id++)
      text += `{"id":${id},"value":${id},"tag":"nd${id}","emb":[${id},0,1]}\n`;
    text += '{"id":"9007199254740993","tag":"big","ts":"2024-06-01T12:00:00.000Z"}\n';
    await writeFile(ndjson, text);

    const arrowTable = (from: number): Table => {
      const ids = Array.from({ length: 100 }, (_, i) => from + i);
      return new Table({
        id: vectorFromArray(
          ids.map((i) => BigInt(i)),
          new Int64(),
        ),
        ts: vectorFromArray(
          ids.map((i) => new Date(1_700_000_000_000 + i)),
          new TimestampMillisecond(),
        ),
        value: vectorFromArray(
          ids.map((i) => i / 4),
          new Float64(),
        ),
        tag: vectorFromArray(ids.map((i) => `ar${i}`)), // dictionary-encoded strings
        emb: vectorFromArray(
          ids.map((i) => [i, 1, 2]),
          new FixedSizeList(3, new Field('item', new Float32(), false)),
        ),
      });
    };
    const arrowFile = path.join(work, 'b.arrow');
    await writeFile(arrowFile, tableToIPC(arrowTable(200), 'file'));
    const arrowStream = path.join(work, 'c.arrows');
    await writeFile(arrowStream, tableToIPC(arrowTable(300), 'stream'));

    const parquet = path.join(work, 'd.parquet');
    const pqSource = tableFromArrays({
      id: BigInt64Array.from({ length: 100 }, (_, i) => BigInt(400 + i)),
      value: Float64Array.from({ length: 100 }, (_, i) => (400 + i) / 8),
      tag: Array.from({ length: 100 }, (_, i) => (i === 7 ? null : `pq${400 + i}`)),
      ok: Array.from({ length: 100 }, (_, i) => i % 2 === 0),
    });
    const props = new parquetWasm.WriterPropertiesBuilder()
      .setCompression(parquetWasm.Compression.SNAPPY)
      .build();
    await writeFile(
      parquet,
      parquetWasm.writeParquet(parquetWasm.Table.fromIPCStream(tableToIPC(pqSource, 'stream')), props),
    );

    const r = await sluice(['ingest', table, ndjson, arrowFile, arrowStream, parquet, '--progress', 'none']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ingested 401 rows from 4 files/);

    const got = await sluice(['get', table, '150', '9007199254740993', '250', '350', '407', '408']);
    expect(got.code).toBe(0);
    expect(parseRows(got.stdout)).toEqual([
      { id: 150, ts: null, value: 150, tag: 'nd150', ok: null, emb: [150, 0, 1] },
      {
        id: '9007199254740993',
        ts: Date.parse('2024-06-01T12:00:00Z'),
        value: null,
        tag: 'big',
        ok: null,
        emb: null,
      },
      { id: 250, ts: 1_700_000_000_250, value: 62.5, tag: 'ar250', ok: null, emb: [250, 1, 2] },
      { id: 350, ts: 1_700_000_000_350, value: 87.5, tag: 'ar350', ok: null, emb: [350, 1, 2] },
      { id: 407, ts: null, value: 50.875, tag: null, ok: false, emb: null },
      { id: 408, ts: null, value: 51, tag: 'pq408', ok: true, emb: null },
    ]);
  });

  it('reads stdin with --format and reports progress as plain lines when not on a terminal', async () => {
    let text = '';
    for (let id = 1000; id < 31_000; id++) text += `{"id":${id},"value":${id}}\n`;
    const r = await sluice(
      [
        'ingest',
        table,
        '-',
        '--format',
        'ndjson',
        '--progress',
        'plain',
        '--progress-interval',
        '0.05',
        '--batch-rows',
        '1000',
      ],
      { input: text },
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ingested 30000 rows from 1 file in/);
    expect(r.stderr).toMatch(/^ingest: \d+ rows, \d+ rows\/s, [\d.]+ (B|KiB|MiB)/m);
  });

  it('scan: filters, columns, limit, and table, ndjson, csv and arrow output; count', async () => {
    const csvOut = await sluice([
      'scan',
      table,
      '--filter',
      '{"and":[{"column":"id","op":">=","value":400},{"column":"tag","op":"is not null"}]}',
      '--columns',
      'id,tag,ok',
      '--format',
      'csv',
    ]);
    expect(csvOut.code).toBe(0);
    const rows = lines(csvOut.stdout);
    expect(rows[0]).toBe('id,tag,ok');
    // ids 400..499 from Parquet less one null tag, and the int64 beyond 2^53 from NDJSON.
    expect(rows.slice(1)).toHaveLength(100);
    expect(rows).toContain('9007199254740993,big,');
    expect(rows).toContain('408,pq408,true');

    const big = await sluice([
      'scan',
      table,
      '--filter',
      '{"column":"id","op":"=","value":"9007199254740993"}',
    ]);
    expect(parseRows(big.stdout).map((r) => r.tag)).toEqual(['big']);

    const arrow = await sluiceBytes([
      'scan',
      table,
      '--columns',
      'id,emb',
      '--limit',
      '10',
      '--format',
      'arrow',
    ]);
    expect(arrow.code).toBe(0);
    const t = tableFromIPC(arrow.stdout);
    expect(t.numRows).toBe(10);
    expect(t.schema.fields.map((f) => f.name)).toEqual(['id', 'emb']);

    const empty = await sluiceBytes([
      'scan',
      table,
      '--filter',
      '{"column":"id","op":"<","value":-5}',
      '--format',
      'arrow',
    ]);
    expect(tableFromIPC(empty.stdout).numRows).toBe(0);

    const pretty = await sluice(['scan', table, '--limit', '3', '--format', 'table']);
    expect(pretty.stdout).toMatch(/^ *id +ts +value +tag +ok +emb\n[- ]+\n/);
    expect(pretty.stdout).toContain('(3 rows)');

    const count = await sluice(['count', table]);
    expect(count.stdout).toBe(`${4 + 401 + 30_000}\n`);
    const nullTags = await sluice(['count', table, '--filter', '{"column":"tag","op":"is null"}']);
    expect(Number(nullTags.stdout)).toBe(1 + 1 + 30_000);
  });

  it('prints errors as one line with the code, and the stack with --verbose', async () => {
    const r = await sluice(['scan', table, '--filter', '{"column":"nope","op":"=","value":1}']);
    expect(r.code).toBe(3);
    expect(lines(r.stderr)).toEqual([
      'sluice: SLUICE_INVALID_FILTER: filter.column: unknown column "nope" (the schema has id, ts, value, tag, ok, emb)',
    ]);
    const v = await sluice(['scan', table, '--filter', '{bad', '--verbose']);
    expect(v.code).toBe(3);
    expect(v.stderr).toMatch(/^sluice: SLUICE_INVALID_FILTER: --filter is not valid JSON/);
    expect(lines(v.stderr).length).toBeGreaterThan(2);
    expect(v.stderr).toMatch(/\n\s+at /);
  });

  it('stats, flush and verify', async () => {
    const s = await sluice(['stats', table]);
    expect(s.stderr).toBe('');
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/^shard +state +rows +active +frozen +memtables +reserved +generations/m);
    expect(s.stdout).toMatch(/^total /m);
    const f = await sluice(['flush', table]);
    expect(f.stderr).toBe('');
    expect(f.code).toBe(0);
    expect(f.stdout).toMatch(/^flushed 2 shards: [1-9]\d* new generation files? \(\d+ rows\)/);
    const j = await sluice(['stats', table, '--json']);
    expect(j.stderr).toBe('');
    expect(j.code).toBe(0);
    const stats = JSON.parse(j.stdout) as {
      shards: { generations: number; activeRows: number }[];
      disk: unknown[];
    };
    expect(stats.shards).toHaveLength(2);
    expect(stats.shards.reduce((n, x) => n + x.generations, 0)).toBeGreaterThan(0);
    const v = await sluice(['verify', table, '--json']);
    expect(v.code).toBe(0);
    const report = JSON.parse(v.stdout) as { ok: boolean; errors: number; shards: { generations: number }[] };
    expect(report.ok).toBe(true);
    expect(report.shards.reduce((n, x) => n + x.generations, 0)).toBeGreaterThan(0);
  });

  it('verify reports a damaged generation file, manifest or WAL with exit code 5', async () => {
    const copy = path.join(work, 'damaged');
    await cp(table, copy, { recursive: true });
    const genDir = path.join(copy, 'shard-000', 'gen');
    const gen = path.join(
      genDir,
      (await readdir(genDir)).find((n) => n.endsWith('.arrow'))!,
    );
    const bytes = await readFile(gen);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    await writeFile(gen, bytes);
    const r = await sluice(['verify', copy]);
    expect(r.code).toBe(5);
    expect(r.stdout).toContain(`ERROR   shard-000/gen/${path.basename(gen)}: generation`);
    expect(r.stdout).toMatch(/crc32 mismatch .*\[SLUICE_CORRUPT_GENERATION\]/);
    expect(r.stdout).toMatch(/verify .*damaged: DAMAGED: 1 error/);

    const manifests = path.join(copy, 'shard-001', 'manifest');
    const newest = path.join(manifests, (await readdir(manifests)).sort().at(-1)!);
    const m = await readFile(newest);
    m[40]! ^= 0x01;
    await writeFile(newest, m);
    const r2 = await sluice(['verify', copy, '--json']);
    expect(r2.code).toBe(5);
    const report = JSON.parse(r2.stdout) as { errors: number; findings: { path: string; code?: string }[] };
    expect(report.errors).toBe(2);
    expect(
      report.findings.some(
        (x) => x.code === 'SLUICE_CORRUPT_MANIFEST' && x.path.startsWith('shard-001/manifest/'),
      ),
    ).toBe(true);
  });

  it('verify: a torn WAL tail is a warning, a damaged WAL record an error', async () => {
    // Made in process (this test is about verify): 5 puts of 10 rows, so 5 WAL records.
    const small = path.join(work, 'wal');
    const db = await open(small, {
      schema: { id: 'int64', v: 'utf8' },
      primaryKey: 'id',
      shards: 1,
      onWarning: () => undefined,
    });
    for (let b = 0; b < 5; b++) {
      await db.put(Array.from({ length: 10 }, (_, i) => ({ id: b * 10 + i, v: `value ${b * 10 + i}` })));
    }
    await db.close();
    const walDir = path.join(small, 'shard-000', 'wal');
    const segments = (await readdir(walDir)).sort();
    const last = path.join(walDir, segments.at(-1)!);

    const torn = path.join(work, 'wal-torn');
    await cp(small, torn, { recursive: true });
    await appendFile(
      path.join(torn, 'shard-000', 'wal', path.basename(last)),
      Buffer.from('SLW1\x10\x00\x00'),
    );
    const t = await sluice(['verify', torn]);
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/WARNING .*wal.* torn tail/);
    expect((await sluice(['verify', torn, '--strict'])).code).toBe(5);

    const broken = path.join(work, 'wal-broken');
    await cp(small, broken, { recursive: true });
    const seg = path.join(broken, 'shard-000', 'wal', path.basename(last));
    const size = (await stat(seg)).size;
    const b = await readFile(seg);
    b[30]! ^= 0xff; // inside the first record's payload, with more records after it
    await writeFile(seg, b);
    expect(size).toBeGreaterThan(200);
    const e = await sluice(['verify', broken]);
    expect(e.code).toBe(5);
    expect(e.stdout).toMatch(/ERROR .*wal.*crc mismatch in LSN \d+.*\[SLUICE_CORRUPT_WAL\]/);
  });

  it('demo runs the README demo; pnpm sluice runs the binary', async () => {
    const dir = path.join(work, 'demo');
    const d = await sluice(['demo', '--rows', '3000', '--dir', dir, '--shards', '2', '--producers', '2']);
    expect(d.stderr).toBe('');
    expect(d.code).toBe(0);
    expect(d.stdout).toContain('Sluice demo: 3000 row writes');
    const p = await new Promise<{ code: number | null; out: string }>((resolve) => {
      void import('node:child_process').then(({ execFile }) =>
        execFile('pnpm', ['-s', 'sluice', '--version'], { cwd: REPO }, (err, out) =>
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out }),
        ),
      );
    });
    expect(p).toEqual({ code: 0, out: '0.1.0\n' });
  });
});
