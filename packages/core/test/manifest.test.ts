import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, isSluiceError } from '@sluice/protocol';
import type { SluiceError } from '@sluice/protocol';
import type { Manifest } from '../src/manifest/manifest.js';
import { decodeManifest, encodeManifest } from '../src/manifest/manifest.js';
import { ManifestStore, PREDECESSOR_COMMIT } from '../src/manifest/manifest-store.js';
import { FaultyStorage } from '../src/storage/faulty-storage.js';
import { LocalStorage } from '../src/storage/local-storage.js';
import type { Storage } from '../src/storage/storage.js';

const SHARD = 'shard-002';

let dir: string;
let storage: LocalStorage;
let warnings: string[];
let store: ManifestStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-manifest-'));
  storage = new LocalStorage(dir);
  warnings = [];
  store = new ManifestStore(storage, SHARD, { warn: (m) => warnings.push(m) });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fileOf = (version: number): string =>
  join(dir, SHARD, 'manifest', `${String(version).padStart(20, '0')}.json`);
const files = async (): Promise<string[]> =>
  (await readdir(join(dir, SHARD, 'manifest')).catch(() => [])).sort();

function manifest(version: number, overrides: Partial<Manifest> = {}): Manifest {
  return {
    format: 1,
    shard: 2,
    version,
    writerEpoch: 1,
    replayFromLsn: version * 10,
    nextGeneration: version,
    generations: Array.from({ length: version - 1 }, (_, i) => ({
      gen: i,
      file: `${SHARD}/gen/${i}.arrow`,
      rows: 100,
      bytes: 4096,
      minKey: `k${i}0`,
      maxKey: `k${i}9`,
      batches: [
        { offset: 8, rows: 60, minKey: `k${i}0`, maxKey: `k${i}5` },
        { rows: 40, minKey: `k${i}6`, maxKey: `k${i}9 "quoted" ünïcode` },
      ],
    })),
    ...overrides,
  };
}

async function rejection(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

async function flipByte(version: number, at: (size: number) => number): Promise<void> {
  const bytes = await readFile(fileOf(version));
  const i = at(bytes.byteLength);
  bytes.writeUInt8(bytes.readUInt8(i) ^ 0x04, i);
  await writeFile(fileOf(version), bytes);
}

describe('ManifestStore commit / latest', () => {
  it('has no manifest at first, then returns the newest committed version', async () => {
    expect(await store.latest()).toBeUndefined();
    await store.commit(manifest(1));
    await store.commit(manifest(2));
    await store.commit(manifest(3));
    expect(await store.latest()).toEqual(manifest(3));
    expect(await files()).toEqual([1, 2, 3].map((v) => `${String(v).padStart(20, '0')}.json`));
    // The file is plain JSON with a checksum of the body.
    const parsed = JSON.parse(await readFile(fileOf(3), 'utf8')) as { crc32: string; manifest: Manifest };
    expect(parsed.crc32).toMatch(/^[0-9a-f]{8}$/);
    expect(parsed.manifest).toEqual(manifest(3));
  });

  it('never overwrites: FENCED when a higher epoch holds the version', async () => {
    await store.commit(manifest(1, { writerEpoch: 5 }));
    const err = await rejection(store.commit(manifest(1, { writerEpoch: 4, replayFromLsn: 99 })));
    expect(err.code).toBe(ErrorCode.FENCED);
    expect(err.message).toMatch(/shard 2/);
    expect(err.message).toMatch(/version 1/);
    expect(err.details).toMatchObject({ shard: 2, version: 1, epoch: 4, existingEpoch: 5 });
    expect(await store.latest()).toEqual(manifest(1, { writerEpoch: 5 }));
  });

  it('a conflict within one epoch is INTERNAL; with a lower epoch it is a predecessor commit', async () => {
    await store.commit(manifest(1, { writerEpoch: 3 }));
    const same = await rejection(store.commit(manifest(1, { writerEpoch: 3, replayFromLsn: 77 })));
    expect(same.code).toBe(ErrorCode.INTERNAL);
    expect(same.details.reason).toBe('same-writer');
    const newer = await rejection(store.commit(manifest(1, { writerEpoch: 4 })));
    expect(newer.code).toBe(ErrorCode.INTERNAL);
    expect(newer.details.reason).toBe(PREDECESSOR_COMMIT);
  });

  it('re-committing identical bytes succeeds (a retry after a commit that landed)', async () => {
    const faulty = new FaultyStorage(storage);
    const flaky = new ManifestStore(faulty, SHARD);
    faulty.inject({ op: 'putIfAbsent', when: 'after', errno: 'EIO' });
    const err = await rejection(flaky.commit(manifest(1)));
    expect(err.code).toBe(ErrorCode.IO);
    expect(err.details.errno).toBe('EIO');
    await flaky.commit(manifest(1));
    expect(await flaky.latest()).toEqual(manifest(1));
  });

  it('refuses to write an invalid manifest', async () => {
    const bad = [
      { ...manifest(1), version: 0 },
      { ...manifest(1), replayFromLsn: 0 },
      { ...manifest(3), generations: [...manifest(3).generations].reverse() },
      { ...manifest(3), nextGeneration: 1 },
      { ...manifest(1), format: 2 as unknown as 1 },
    ];
    for (const m of bad) expect((await rejection(store.commit(m))).code).toBe(ErrorCode.INTERNAL);
    expect(await files()).toEqual([]);
  });

  it('round-trips maxSeq and refuses fields format 1 does not define', async () => {
    const base = manifest(3);
    const withSeq: Manifest = {
      ...base,
      maxSeq: 41,
      generations: base.generations.map((g, i) => ({ ...g, maxSeq: 40 + i })),
    };
    await store.commit(withSeq);
    expect(await store.latest()).toEqual(withSeq);
    const unknown = [
      { ...manifest(4), extra: 'x' },
      { ...manifest(4), generations: [{ ...base.generations[0], extra: 1 }] },
      { ...manifest(4), maxSeq: -Infinity },
    ] as Manifest[];
    for (const m of unknown) expect((await rejection(store.commit(m))).code).toBe(ErrorCode.INTERNAL);
  });
});

describe('ManifestStore damaged files', () => {
  it('skips a damaged newest version with a warning when the previous one is valid', async () => {
    await store.commit(manifest(1));
    await store.commit(manifest(2));
    await flipByte(2, (size) => size - 20);
    expect(await store.latest()).toEqual(manifest(1));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/00000000000000000002\.json/);
    expect(warnings[0]).toMatch(/crc32 mismatch/);
  });

  it('a damaged only version, or damaged newest two, is SLUICE_CORRUPT_MANIFEST', async () => {
    await store.commit(manifest(1));
    await flipByte(1, (size) => size - 10);
    const only = await rejection(store.latest());
    expect(only.code).toBe(ErrorCode.CORRUPT_MANIFEST);
    expect(only.details.path).toBe(`${SHARD}/manifest/00000000000000000001.json`);

    await store.commit(manifest(2));
    await flipByte(2, () => 3);
    expect((await rejection(store.latest())).code).toBe(ErrorCode.CORRUPT_MANIFEST);
    expect(warnings).toEqual([]);
  });

  it('only the newest may be skipped: a damaged older version behind a valid newest is ignored', async () => {
    await store.commit(manifest(1));
    await store.commit(manifest(2));
    await flipByte(1, (size) => size - 10);
    expect(await store.latest()).toEqual(manifest(2));
    expect(warnings).toEqual([]);
  });

  it('detects truncation, garbage, bad framing and a version that does not match its name', async () => {
    await store.commit(manifest(1));
    const good = await readFile(fileOf(1));
    const path = 'p.json';
    for (const bytes of [
      good.subarray(0, good.byteLength - 1),
      good.subarray(0, 10),
      new Uint8Array(0),
      new TextEncoder().encode('{"crc32":"00000000","manifest":{}}\n'),
      new TextEncoder().encode('not json at all, but long enough to pass the size check\n'),
      new Uint8Array([0xff, 0xfe, ...good.subarray(2)]),
    ]) {
      let err: unknown;
      try {
        decodeManifest(bytes, path);
      } catch (e) {
        err = e;
      }
      expect(isSluiceError(err, ErrorCode.CORRUPT_MANIFEST)).toBe(true);
    }
    // A structurally valid file under the wrong name.
    await writeFile(fileOf(2), encodeManifest(manifest(3)));
    expect(await store.latest()).toEqual(manifest(1));
    expect(warnings[0]).toMatch(/holds version 3/);
  });

  it('committing onto a damaged version is SLUICE_CORRUPT_MANIFEST; fence commits above it', async () => {
    await store.commit(manifest(1));
    await store.commit(manifest(2));
    await flipByte(2, (size) => size - 20);
    const current = await store.latest();
    expect(current?.version).toBe(1);
    const err = await rejection(store.commit(manifest(2)));
    expect(err.code).toBe(ErrorCode.CORRUPT_MANIFEST);
    const fenced = await store.fence(7, manifest(1));
    expect(fenced).toEqual({ ...manifest(1), version: 3, writerEpoch: 7 });
    expect(await store.latest()).toEqual(fenced);
  });
});

describe('ManifestStore ownership', () => {
  it('claimEpoch increments and isFenced flips once a successor claims', async () => {
    const first = await store.claimEpoch();
    expect(first).toBe(1);
    expect(store.isFenced(first)).toBe(false);
    const other = new ManifestStore(new LocalStorage(dir), SHARD);
    const second = await other.claimEpoch();
    expect(second).toBe(2);
    expect(store.isFenced(first)).toBe(true);
    expect(other.isFenced(second)).toBe(false);
    expect(await store.claimEpoch()).toBe(3);
    expect(other.isFenced(second)).toBe(true);
  });

  it('concurrent claims get distinct epochs', async () => {
    const stores = Array.from({ length: 6 }, () => new ManifestStore(new LocalStorage(dir), SHARD));
    const epochs = await Promise.all(stores.map((s) => s.claimEpoch()));
    expect([...epochs].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('fence: after a takeover the predecessor can no longer commit', async () => {
    const oldEpoch = await store.claimEpoch();
    const initial = manifest(1, { writerEpoch: oldEpoch });
    expect(await store.fence(oldEpoch, initial)).toEqual(initial);
    await store.commit(manifest(2, { writerEpoch: oldEpoch }));

    // The zombie commits version 3 between the successor's read and its write: the
    // successor's fencing commit hits it, reads again and lands at version 4.
    const local = new LocalStorage(dir);
    let zombieCommitted = false;
    const racing: Storage = {
      root: local.root,
      sync: local.sync,
      get: (p) => local.get(p),
      getRange: (p, o, l) => local.getRange(p, o, l),
      size: (p) => local.size(p),
      list: (p) => local.list(p),
      delete: (p) => local.delete(p),
      openAppend: (p) => local.openAppend(p),
      stage: (d) => local.stage(d),
      clearStaged: (d) => local.clearStaged(d),
      putIfAbsent: async (p, data) => {
        if (p.includes('/manifest/') && !zombieCommitted) {
          zombieCommitted = true;
          await store.commit(manifest(3, { writerEpoch: oldEpoch }));
        }
        return local.putIfAbsent(p, data);
      },
    };
    const successor = new ManifestStore(racing, SHARD);
    const newEpoch = await successor.claimEpoch();
    expect(store.isFenced(oldEpoch)).toBe(true);
    const fenced = await successor.fence(newEpoch, initial);
    expect(zombieCommitted).toBe(true);
    expect(fenced).toEqual({ ...manifest(3), writerEpoch: newEpoch, version: 4 });

    const err = await rejection(store.commit(manifest(4, { writerEpoch: oldEpoch })));
    expect(err.code).toBe(ErrorCode.FENCED);
    expect(err.details).toMatchObject({ shard: 2, version: 4, epoch: oldEpoch, existingEpoch: newEpoch });
  });
});

describe('ManifestStore.prune', () => {
  it('keeps the newest N versions', async () => {
    for (let v = 1; v <= 6; v++) await store.commit(manifest(v));
    await store.prune(2);
    expect(await files()).toEqual([5, 6].map((v) => `${String(v).padStart(20, '0')}.json`));
    await store.prune(5);
    expect((await files()).length).toBe(2);
    expect(await store.latest()).toEqual(manifest(6));
    await expect(store.prune(0)).rejects.toThrow(RangeError);
  });

  it('never deletes the newest valid manifest, even behind a damaged newest file', async () => {
    for (let v = 1; v <= 3; v++) await store.commit(manifest(v));
    await flipByte(3, (size) => size - 20);
    await store.prune(1);
    expect(await files()).toEqual([2, 3].map((v) => `${String(v).padStart(20, '0')}.json`));
    expect(await store.latest()).toEqual(manifest(2));
  });
});
