import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@sluice/protocol';
import { GenerationCache } from '../src/generation/generation-cache.js';
import { GenerationReader } from '../src/generation/generation-reader.js';
import { writeGeneration } from '../src/generation/generation-writer.js';
import type { TableSchema } from '../src/schema.js';
import { schemaFromUser } from '../src/schema-arrow.js';
import type { LocalStorage } from '../src/storage/local-storage.js';
import type { Storage } from '../src/storage/storage.js';
import { buildMemtable, withTempStorage } from './generation-fixtures.js';

let storage: LocalStorage;
withTempStorage((_dir, s) => {
  storage = s;
});

describe('GenerationCache', () => {
  async function writeSome(
    count: number,
  ): Promise<{ schema: TableSchema; entries: Awaited<ReturnType<typeof writeGeneration>>[] }> {
    const schema = schemaFromUser({ id: 'int64', s: 'utf8' }, 'id');
    const entries = [];
    for (let g = 0; g < count; g++) {
      const { mt, rows } = buildMemtable(schema, [
        { put: Array.from({ length: 50 }, (_, id) => ({ id, s: `g${g}` })) },
      ]);
      entries.push(await writeGeneration(storage, 's', mt, rows, { gen: g, epoch: 0, rowsPerBatch: 16 }));
    }
    return { schema, entries };
  }

  function countingStorage(): { storage: Storage; gets: string[] } {
    const gets: string[] = [];
    const s: Storage = Object.create(storage, {
      get: {
        value: async (path: string): Promise<Uint8Array | undefined> => {
          gets.push(path);
          await new Promise((r) => setTimeout(r, 5));
          return storage.get(path);
        },
      },
    }) as Storage;
    return { storage: s, gets };
  }

  it('shares one load between concurrent gets of a file', async () => {
    const { schema, entries } = await writeSome(2);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 1 << 20 });
    const readers = await Promise.all([
      cache.get(s, entries[0]!, schema),
      cache.get(s, entries[0]!, schema),
      cache.get(s, entries[1]!, schema),
      cache.get(s, entries[0]!, schema),
    ]);
    expect(readers[0]).toBe(readers[1]);
    expect(readers[0]).toBe(readers[3]);
    expect(readers[2]).not.toBe(readers[0]);
    expect(gets).toEqual([entries[0]!.file, entries[1]!.file]);
    expect(await cache.get(s, entries[0]!, schema)).toBe(readers[0]);
    expect(cache.stats).toMatchObject({ entries: 2, hits: 3, misses: 2, evictions: 0 });
    expect(cache.stats.bytes).toBe(entries[0]!.bytes + entries[1]!.bytes);
  });

  it('evicts least recently used files by bytes', async () => {
    const { schema, entries } = await writeSome(4);
    const size = entries[0]!.bytes;
    expect(entries.every((e) => e.bytes === size)).toBe(true);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 2 * size + size / 2 });
    const [e0, e1, e2, e3] = entries as [
      (typeof entries)[0],
      (typeof entries)[0],
      (typeof entries)[0],
      (typeof entries)[0],
    ];
    const r0 = await cache.get(s, e0, schema);
    await cache.get(s, e1, schema);
    expect(await cache.get(s, e0, schema)).toBe(r0); // e0 is now the most recent
    await cache.get(s, e2, schema); // evicts e1
    expect(cache.stats).toMatchObject({ entries: 2, bytes: 2 * size, evictions: 1 });
    expect(await cache.get(s, e0, schema)).toBe(r0);
    gets.length = 0;
    await cache.get(s, e1, schema); // reloaded; evicts e2
    expect(gets).toEqual([e1.file]);
    await cache.get(s, e0, schema);
    await cache.get(s, e3, schema); // evicts e1
    gets.length = 0;
    await cache.get(s, e0, schema);
    await cache.get(s, e3, schema);
    expect(gets).toEqual([]);
    expect(cache.stats.evictions).toBe(3);

    cache.delete(s, e0.file);
    expect(cache.stats).toMatchObject({ entries: 1, bytes: size });
    expect(await cache.get(s, e0, schema)).not.toBe(r0);
    cache.clear();
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('returns but does not keep a file larger than the budget', async () => {
    const { schema, entries } = await writeSome(1);
    const { storage: s, gets } = countingStorage();
    const cache = new GenerationCache({ maxBytes: 10 });
    const a = await cache.get(s, entries[0]!, schema);
    expect(a.rows).toBe(50);
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
    await cache.get(s, entries[0]!, schema);
    expect(gets).toHaveLength(2);
  });

  it('does not keep failed loads', async () => {
    const { schema, entries } = await writeSome(1);
    const cache = new GenerationCache({ maxBytes: 1 << 20 });
    const missing = { ...entries[0]!, file: entries[0]!.file.replace('/gen/', '/elsewhere/') };
    await expect(cache.get(storage, missing, schema)).rejects.toMatchObject({
      code: ErrorCode.CORRUPT_GENERATION,
    });
    expect(cache.stats).toMatchObject({ entries: 0, bytes: 0 });
    await expect(cache.get(storage, entries[0]!, schema)).resolves.toBeInstanceOf(GenerationReader);
  });

  it('rejects a bad budget', () => {
    expect(() => new GenerationCache({ maxBytes: -1 })).toThrow(/options.maxBytes/);
  });
});
