/**
 * Issue 3, item 4 (short mode, fixed seeds): corruption fuzzing of WAL segments, generation
 * files and manifests, component cases and end-to-end cases, plus named regressions for the
 * table description (sluice.json). `pnpm test:fuzz --cases N` runs more, sluice.json included.
 */
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from 'sluice';
import { addFuzz, buildBase, emptyFuzz, randomCase, runComponentCase, runEndToEndCase } from './lib/fuzz.js';
import type { BaseTable } from './lib/fuzz.js';
import { Rng } from './lib/rng.js';
import { outcome, removeTempDirs, tempDir } from './lib/table.js';

afterAll(removeTempDirs);

describe('corruption fuzzing (short, fixed seeds)', () => {
  let base: BaseTable;

  beforeAll(async () => {
    base = await buildBase();
  }, 120_000);

  it('1500 corruptions of WAL, manifests and generations: last valid point with a warning, or SLUICE_CORRUPT_*', async () => {
    const seed = 4004;
    const rng = new Rng(seed);
    const t = emptyFuzz();
    for (let i = 0; i < 1500; i++) {
      const c = randomCase(rng, base, ['wal', 'manifest', 'generation', 'owner']);
      addFuzz(t, c, await runComponentCase(base, c), false, seed, i);
    }
    expect(t.violations.slice(0, 20)).toEqual([]);
    expect(t.byVerdict['typed-error'] ?? 0).toBeGreaterThan(0);
    expect(t.byVerdict['cut-with-warning'] ?? 0).toBeGreaterThan(0);
  }, 120_000);

  it('a cut exactly after a whole record of the newest WAL segment is a shorter log, one byte off is a torn tail', async () => {
    const file = [...base.files.keys()]
      .filter((p) => p.startsWith('shard-000/wal/'))
      .sort()
      .at(-1)!;
    const orig = base.files.get(file)!;
    const second = 24 + new DataView(orig.buffer, orig.byteOffset).getUint32(4, true);
    expect(second).toBeLessThan(orig.byteLength);
    const cut = (n: number) => ({
      file,
      kind: 'wal' as const,
      mutation: 'truncate' as const,
      bytes: orig.slice(0, n),
    });
    // The log ends after its first record: nothing is torn, nothing could say it went on.
    expect(await runComponentCase(base, cut(second))).toEqual({ verdict: 'clean-cut' });
    // A byte more or less leaves part of a record: replay must say it cut something.
    expect((await runComponentCase(base, cut(second + 1))).verdict).toBe('cut-with-warning');
    expect((await runComponentCase(base, cut(second - 1))).verdict).toBe('cut-with-warning');
  });

  it('corrupted tables opened end to end: no untyped error, hang or garbage row', async () => {
    const seed = 4005;
    const rng = new Rng(seed);
    const t = emptyFuzz();
    for (let i = 0; i < 5; i++) {
      const c = randomCase(rng, base, ['wal', 'manifest', 'generation']);
      addFuzz(t, c, await runEndToEndCase(base, c), true, seed, i);
    }
    expect(t.violations).toEqual([]);
  }, 300_000);

  /**
   * Regression. Before the fix, sluice.json has no checksum and readTableMeta (core/src/table-meta.ts)
   * checks little of its structure, so a damaged table description reaches schemaFromJson:
   * a column without a name throws an untyped TypeError, a damaged type or primary key is
   * reported as SLUICE_INVALID_SCHEMA (a user-input code), and a damaged column name is
   * silently read as another table. Each should be SLUICE_CORRUPT_MANIFEST.
   */
  describe('regression: a damaged sluice.json fails with SLUICE_CORRUPT_MANIFEST', () => {
    it.each([
      ['a column without a name', '"name":"v"', '"nXme":"v"'],
      ['a damaged column type', '"type":"int64"', '"type":"inv64"'],
      ['a damaged primary key', '"primaryKey":"id"', '"primaryKey":"iC"'],
      ['a renamed column', '"name":"p"', '"name":"q"'],
    ])('%s', async (_what, from, to) => {
      const dir = path.join(await tempDir('fuzz-meta'), 'table');
      await cp(base.dir, dir, { recursive: true });
      const file = path.join(dir, 'sluice.json');
      const text = (await readFile(file, 'utf8')).replace(/\s+/g, '');
      expect(text).toContain(from);
      await writeFile(file, text.replace(from, to));
      const r = await outcome(open(dir, { onWarning: () => undefined }), 60_000, 'open');
      if (r.ok) await r.value.close();
      expect(r.ok ? 'opened as another table' : `${r.code}: ${r.message}`).toMatch(
        /^SLUICE_CORRUPT_MANIFEST/,
      );
    });
  });
});
