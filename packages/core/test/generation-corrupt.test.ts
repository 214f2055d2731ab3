import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, SluiceError } from '@sluice/protocol';
import { viewBatch } from '../src/batch-format.js';
import type { CellValue } from '../src/columnar.js';
import { OP_DELETE, OP_PUT, rowObjectAt } from '../src/columnar.js';
import type { GenerationEntry } from '../src/manifest/manifest.js';
import { Memtable, MemtableWriter } from '../src/memtable/memtable.js';
import { RowEncoder } from '../src/row-encoder.js';
import type { TableSchema } from '../src/schema.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import { LocalStorage } from '../src/storage/local-storage.js';
import { generationFileName } from '../src/generation/generation-file.js';
import { GenerationReader } from '../src/generation/generation-reader.js';
import type { GenerationWritten } from '../src/generation/generation-writer.js';
import { writeGeneration } from '../src/generation/generation-writer.js';

type Row = Record<string, unknown>;

function buildMemtable(
  schema: TableSchema,
  puts: Row[],
  deletes: unknown[] = [],
): { mt: Memtable; rows: number } {
  const encoder = new RowEncoder(schema, 1, { maxValueBytes: 1 << 20 });
  const mt = Memtable.allocate(
    schema,
    1024,
    schema.columns.map((c) => (c.kind === 'utf8' ? 1 << 16 : 0)),
    1,
    0,
  );
  const writer = new MemtableWriter(mt);
  let seq = 0;
  for (const [input, op] of [
    [puts, OP_PUT],
    [deletes, OP_DELETE],
  ] as const) {
    if (input.length === 0) continue;
    const plan = encoder.plan(input, op);
    const target = new Uint8Array(new ArrayBuffer(plan.shardBytes[0]!));
    encoder.write(plan, 0, target, ++seq);
    writer.append(viewBatch(schema, target), 0);
  }
  return { mt, rows: writer.rows };
}

const schema = schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64', b: 'bool', v: 'float32[2]' }, 'id');
const rowsIn: Row[] = Array.from({ length: 40 }, (_, i) => ({
  id: i * 3 - 50,
  s: i % 5 === 0 ? null : `row ${i} ✓`,
  n: i % 7 === 0 ? null : i / 4,
  b: i % 3 === 0 ? null : i % 2 === 0,
  v: i % 4 === 0 ? null : [i, -i],
}));

let dir: string;
let storage: LocalStorage;
let written: GenerationWritten;
let original: Uint8Array;
let originalRows: { row: Record<string, CellValue>; op: number; seq: number }[];

function rowsOf(reader: GenerationReader): typeof originalRows {
  return reader.batches.flatMap((b) =>
    Array.from({ length: b.rows }, (_, r) => ({
      row: rowObjectAt(schema, b, r),
      op: b.op![r]!,
      seq: b.seq![r]!,
    })),
  );
}

async function expectCorrupt(promise: Promise<unknown>, pattern?: RegExp): Promise<SluiceError> {
  const err = await promise.then(
    () => {
      throw new Error('expected SLUICE_CORRUPT_GENERATION, but the file was accepted');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SluiceError);
  const e = err as SluiceError;
  expect(e.code).toBe(ErrorCode.CORRUPT_GENERATION);
  // The error names the file, in the message and as data.
  expect(typeof e.details.path).toBe('string');
  expect(e.message).toContain(e.details.path);
  if (pattern) expect(e.message).toMatch(pattern);
  return e;
}

/**
 * The entry of `bytes` stored under a name whose checksum matches them: it gets past the
 * crc check, so the structural checks behind it face the damage on their own.
 */
async function storeWithValidName(
  bytes: Uint8Array,
  entry: GenerationEntry = written,
): Promise<GenerationEntry> {
  const file = generationFileName('shard-000', entry.gen, 0, crc32(bytes), 'abcdef01');
  await storage.putIfAbsent(file, bytes);
  return { ...entry, file, bytes: bytes.byteLength };
}

function decodeWithValidName(bytes: Uint8Array, entry: GenerationEntry = written): GenerationReader {
  const file = generationFileName('shard-000', entry.gen, 0, crc32(bytes), 'abcdef01');
  return GenerationReader.decode(bytes, { ...entry, file, bytes: bytes.byteLength }, schema);
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-gen-corrupt-'));
  storage = new LocalStorage(dir);
  const { mt, rows } = buildMemtable(schema, rowsIn, [-50, -47, 1000]);
  written = await writeGeneration(storage, 'shard-000', mt, rows, { gen: 5, epoch: 2, rowsPerBatch: 16 });
  // A plain Uint8Array copy: Buffer#slice would share memory, so every "copy" damaged below
  // would damage the original too.
  original = new Uint8Array((await storage.get(written.file))!);
  originalRows = rowsOf(await GenerationReader.open(storage, written, schema));
  expect(originalRows).toHaveLength(41);
  expect(originalRows[0]!.op).toBe(OP_DELETE);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('damaged generation files are SLUICE_CORRUPT_GENERATION', () => {
  it('missing file', async () => {
    await storage.delete(written.file);
    await expectCorrupt(GenerationReader.open(storage, written, schema), /does not exist/);
  });

  it('empty file', async () => {
    await writeFile(join(dir, written.file), new Uint8Array(0));
    await expectCorrupt(GenerationReader.open(storage, written, schema), /has 0 bytes/);
    await expectCorrupt(GenerationReader.open(storage, await storeWithValidName(new Uint8Array(0)), schema));
  });

  it('truncated at many points', async () => {
    const points = [
      1,
      6,
      8,
      64,
      200,
      original.byteLength >> 1,
      original.byteLength - 200,
      original.byteLength - 11,
      original.byteLength - 6,
      original.byteLength - 1,
    ];
    for (const at of points) {
      // As found on disk under its name: the size (and checksum) no longer match.
      await writeFile(join(dir, written.file), original);
      await truncate(join(dir, written.file), at);
      await expectCorrupt(GenerationReader.open(storage, written, schema), /bytes, the manifest says/);
      // With size and checksum made to match, the Arrow-level checks still refuse it.
      await expectCorrupt(
        GenerationReader.open(storage, await storeWithValidName(original.slice(0, at)), schema),
      );
    }
    for (let at = 0; at < original.byteLength; at += 7) {
      expect(() => decodeWithValidName(original.slice(0, at))).toThrow(
        expect.objectContaining({ code: ErrorCode.CORRUPT_GENERATION }),
      );
    }
  });

  it('any flipped byte fails the checksum, before Arrow parses anything', async () => {
    // The order matters: fed a damaged footer or batch header, Arrow's parser can return
    // wrong rows (a dropped validity bitmap) or spin for minutes on a bogus length.
    const path = join(dir, written.file);
    for (let i = 0; i < original.byteLength; i++) {
      const damaged = original.slice();
      damaged[i]! ^= 1 << (i % 8);
      if (i % 97 === 0 || i >= original.byteLength - 16) {
        await writeFile(path, damaged);
        await expectCorrupt(GenerationReader.open(storage, written, schema), /crc32 mismatch/);
      } else {
        expect(() => GenerationReader.decode(damaged, written, schema)).toThrow(/crc32 mismatch/);
      }
    }
  });

  it('a table schema that differs from the file', async () => {
    const cases: [TableSchema, RegExp][] = [
      [
        schemaFromUser({ id: 'int64', s: 'utf8', n: 'float32', b: 'bool', v: 'float32[2]' }, 'id'),
        /column "n" has type Float64/,
      ],
      [
        schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64', b: 'bool', v: 'float32[3]' }, 'id'),
        /column "v"/,
      ],
      [
        schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64', b: 'bool' }, 'id'),
        /columns id, s, n, b, v, __op, __seq/,
      ],
      [
        schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64', v: 'float32[2]', b: 'bool' }, 'id'),
        /expected id, s, n, v, b/,
      ],
      [
        schemaFromUser(
          { id: 'int64', s: 'utf8', n: 'float64', b: 'bool', v: 'float32[2]', x: 'int32' },
          'id',
        ),
        /expected/,
      ],
      [
        schemaFromUser({ id: 'int64', s: 'utf8', n: 'float64', b: 'bool', v: 'float32[2]' }, 's'),
        /primary key is "id"/,
      ],
    ];
    for (const [other, pattern] of cases) {
      await expectCorrupt(GenerationReader.open(storage, written, other), pattern);
    }
  });

  it('an entry that does not describe the file', async () => {
    const unnamed = written.file.replace(/-[0-9a-f]{16}\.arrow$/, '.arrow');
    await storage.putIfAbsent(unnamed, original);
    const cases: [GenerationEntry, RegExp][] = [
      [{ ...written, rows: written.rows + 1 }, /41 rows, the manifest says 42/],
      [{ ...written, batches: written.batches.slice(1) }, /3 record batches, the manifest says 2/],
      [
        { ...written, batches: written.batches.map((b, i) => (i === 1 ? { ...b, rows: b.rows - 1 } : b)) },
        /batch 1 has 16 rows/,
      ],
      [
        { ...written, batches: written.batches.map((b, i) => (i === 2 ? { ...b, maxKey: '999' } : b)) },
        /batch 2 holds keys/,
      ],
      [{ ...written, minKey: '-51' }, /key range/],
      [{ ...written, gen: 6 }, /file name says generation 5/],
      [{ ...written, file: unnamed }, /does not carry/],
      [{ ...written, bytes: written.bytes - 1 }, /the manifest says/],
    ];
    for (const [entry, pattern] of cases) {
      await expectCorrupt(GenerationReader.open(storage, entry, schema), pattern);
    }
  });

  it('Arrow files that are not Sluice generations', async () => {
    const plain = tableToIPC(
      tableFromArrays({ id: BigInt64Array.from([1n, 2n]), s: ['a', 'b'], n: Float64Array.from([1, 2]) }),
      'file',
    );
    await expectCorrupt(
      GenerationReader.open(storage, await storeWithValidName(plain), schema),
      /unknown generation format/,
    );
    // The IPC stream format (no footer) is not accepted either.
    const stream = tableToIPC(tableFromArrays({ id: BigInt64Array.from([1n]) }), 'stream');
    await expectCorrupt(
      GenerationReader.open(storage, await storeWithValidName(stream), schema),
      /not an Arrow IPC file/,
    );
    const text = new TextEncoder().encode('ARROW1 this is not really arrow ARROW1');
    await expectCorrupt(GenerationReader.open(storage, await storeWithValidName(text), schema));
  });

  it('a generation of another number under this entry', async () => {
    // Same bytes, entry claiming gen 6 with a matching file name: the file's metadata disagrees.
    const entry = await storeWithValidName(original, { ...written, gen: 6 });
    await expectCorrupt(GenerationReader.open(storage, entry, schema), /file says generation "5"/);
  });
});
