/**
 * Issue 3, item 4: corruption fuzzing. Bytes of WAL segments, generation files, manifests and
 * the table description are flipped, zeroed, truncated and spliced (deleted, inserted,
 * duplicated, or copied from another file of the same kind). Every case must end in one of:
 *  - recovery to the last valid point, with a warning when anything was cut: what is
 *    recovered is exactly a prefix of what was written (WAL records byte for byte, a manifest
 *    version that really existed, no generation file accepted with a wrong byte);
 *  - a typed SLUICE_CORRUPT_* error;
 * never an untyped error, a hang, or garbage.
 *
 * Most cases run the recovery components `open` runs (replayWal, ManifestStore.latest,
 * GenerationReader.decode, readTableMeta) on an in-memory copy of the table, thousands a
 * second; a sample runs end to end: a corrupted copy on disk, `open`, scan and getMany.
 */
import { createHash } from 'node:crypto';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  GenerationReader,
  ManifestStore,
  decodeManifest,
  readTableMeta,
  replayWal,
  schemaFromJson,
} from '@sluice/core';
import type { GenerationEntry, Manifest, TableMeta, TableSchema } from '@sluice/core';
import { isSluiceError } from '@sluice/protocol';
import { open } from 'sluice';
import { MemoryStorage } from './memory-storage.js';
import type { Rng } from './rng.js';
import { harnessRow, openHarness, tempDir, within } from './table.js';

export type FileKind = 'wal' | 'manifest' | 'generation' | 'meta' | 'owner';

export interface BaseTable {
  readonly dir: string;
  readonly files: ReadonlyMap<string, Uint8Array>;
  readonly meta: TableMeta;
  readonly schema: TableSchema;
  readonly shards: number;
  /** Per shard: the newest manifest and every manifest version's bytes. */
  readonly manifests: readonly { newest: Manifest; versions: ReadonlyMap<string, string> }[];
  /** Per shard: what replay yields on the intact table, as [lsn, sha1(payload)]. */
  readonly wal: readonly (readonly [number, string])[][];
  /** Every value each key ever had (v column); the final live state. */
  readonly history: ReadonlyMap<bigint, ReadonlySet<bigint>>;
  readonly final: ReadonlyMap<bigint, bigint>;
}

export function kindOf(p: string): FileKind | undefined {
  if (p === 'sluice.json') return 'meta';
  if (/\/wal\/\d{20}\.wal$/.test(p)) return 'wal';
  if (/\/manifest\/\d{20}\.json$/.test(p)) return 'manifest';
  if (/\/gen\/.*\.arrow$/.test(p)) return 'generation';
  if (/\/owner\/\d{20}$/.test(p)) return 'owner';
  return undefined;
}

const sha1 = (b: Uint8Array): string => createHash('sha1').update(b).digest('hex');

/**
 * Builds the table every case corrupts: two shards, several generations and manifest
 * versions per shard (flushes), a second incarnation (reopen), and an unflushed WAL tail.
 */
export async function buildBase(): Promise<BaseTable> {
  const dir = path.join(await tempDir('fuzz-base'), 'table');
  const history = new Map<bigint, Set<bigint>>();
  const final = new Map<bigint, bigint>();
  let v = 1;
  const put = async (db: Awaited<ReturnType<typeof openHarness>>, keys: number[]): Promise<void> => {
    const rows = keys.map((k) => harnessRow(k, v++));
    await db.put(rows);
    for (const r of rows) {
      const k = BigInt(r.id);
      if (!history.has(k)) history.set(k, new Set());
      history.get(k)!.add(BigInt(r.v));
      final.set(k, BigInt(r.v));
    }
  };
  const del = async (db: Awaited<ReturnType<typeof openHarness>>, keys: number[]): Promise<void> => {
    await db.delete(keys);
    for (const k of keys) final.delete(BigInt(k));
  };
  const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
  let db = await openHarness(dir);
  for (let i = 0; i < 300; i += 30) await put(db, range(i, i + 30));
  await db.flush();
  for (let i = 100; i < 300; i += 25) await put(db, range(i, i + 25));
  await del(db, range(0, 30));
  await db.flush();
  await db.close();
  db = await openHarness(dir);
  for (let i = 250; i < 400; i += 15) await put(db, range(i, i + 15));
  await del(db, range(280, 300));
  await db.close();

  const files = new Map<string, Uint8Array>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (!e.name.startsWith('.')) {
        // A copy: a Buffer's slice() is a view, and cases must never write into the base.
        files.set(path.relative(dir, p).split(path.sep).join('/'), new Uint8Array(await readFile(p)));
      }
    }
  };
  await walk(dir);
  const mem = new MemoryStorage(files);
  const meta = (await readTableMeta(mem))!;
  const schema = schemaFromJson(meta.schema);
  const manifests: BaseTable['manifests'][number][] = [];
  const wal: [number, string][][] = [];
  for (let s = 0; s < meta.shards; s++) {
    const prefix = `shard-${String(s).padStart(3, '0')}`;
    const newest = (await new ManifestStore(mem, prefix, { warn: () => undefined }).latest())!;
    const versions = new Map<string, string>();
    for (const [p, b] of files)
      if (p.startsWith(`${prefix}/manifest/`)) versions.set(p, canonical(decodeManifest(b, p)));
    manifests.push({ newest, versions });
    const records: [number, string][] = [];
    await replayWal(new MemoryStorage(files), prefix, newest.replayFromLsn, (lsn, payload) => {
      records.push([lsn, sha1(payload)]);
    });
    wal.push(records);
  }
  return { dir, files, meta, schema, shards: meta.shards, manifests, wal, history, final };
}

function canonical(m: Manifest): string {
  return JSON.stringify(m);
}

export type Mutation =
  | 'flip-bit'
  | 'set-byte'
  | 'zero-range'
  | 'truncate'
  | 'delete-range'
  | 'insert'
  | 'duplicate'
  | 'transplant'
  | 'append';

export const MUTATIONS: readonly Mutation[] = [
  'flip-bit',
  'set-byte',
  'zero-range',
  'truncate',
  'delete-range',
  'insert',
  'duplicate',
  'transplant',
  'append',
];

/** Applies one random mutation of `kind` to `bytes`; `donor` is another file of the same kind. */
export function mutate(
  rng: Rng,
  bytes: Uint8Array,
  mutation: Mutation,
  donor: Uint8Array | undefined,
): Uint8Array {
  const n = bytes.byteLength;
  const at = (max = n): number => (max <= 0 ? 0 : rng.int(max));
  const span = (): number => 1 + rng.int(rng.chance(0.7) ? 8 : 256);
  const randomBytes = (len: number): Uint8Array => Uint8Array.from({ length: len }, () => rng.int(256));
  const cat = (...parts: Uint8Array[]): Uint8Array => {
    const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.byteLength;
    }
    return out;
  };
  switch (mutation) {
    case 'flip-bit': {
      const out = new Uint8Array(bytes);
      if (n > 0) out[at()]! ^= 1 << rng.int(8);
      return out;
    }
    case 'set-byte': {
      const out = new Uint8Array(bytes);
      if (n > 0) out[at()] = rng.int(256);
      return out;
    }
    case 'zero-range': {
      const out = new Uint8Array(bytes);
      const a = at();
      out.fill(0, a, Math.min(n, a + span()));
      return out;
    }
    case 'truncate':
      return new Uint8Array(bytes.subarray(0, at()));
    case 'delete-range': {
      const a = at();
      return cat(bytes.subarray(0, a), bytes.subarray(Math.min(n, a + span())));
    }
    case 'insert': {
      const a = at(n + 1);
      return cat(bytes.subarray(0, a), randomBytes(span()), bytes.subarray(a));
    }
    case 'duplicate': {
      const a = at();
      const piece = bytes.subarray(a, Math.min(n, a + span()));
      const c = at(n + 1);
      return cat(bytes.subarray(0, c), piece, bytes.subarray(c));
    }
    case 'transplant': {
      if (!donor || donor.byteLength === 0) return mutate(rng, bytes, 'set-byte', undefined);
      const out = new Uint8Array(bytes);
      const a = at();
      const d = rng.int(donor.byteLength);
      const len = Math.min(span(), n - a, donor.byteLength - d);
      out.set(donor.subarray(d, d + len), a);
      return out;
    }
    case 'append':
      return cat(bytes, randomBytes(span()));
  }
}

export interface FuzzCase {
  readonly file: string;
  readonly kind: FileKind;
  readonly mutation: Mutation;
  readonly bytes: Uint8Array;
}

/** A random corruption of a random file (WAL segments weighted up: they are read the most). */
export function randomCase(rng: Rng, base: BaseTable, kinds?: readonly FileKind[]): FuzzCase {
  const byKind = new Map<FileKind, string[]>();
  for (const p of base.files.keys()) {
    const k = kindOf(p);
    if (k && (!kinds || kinds.includes(k)) && (base.files.get(p)!.byteLength > 0 || k === 'owner')) {
      if (!byKind.has(k)) byKind.set(k, []);
      byKind.get(k)!.push(p);
    }
  }
  const weights: [FileKind, number][] = (
    [
      ['wal', 5],
      ['manifest', 2],
      ['generation', 2],
      ['meta', 1],
      ['owner', 0.3],
    ] as [FileKind, number][]
  ).filter(([k]) => byKind.has(k));
  let r = rng.next() * weights.reduce((s, [, w]) => s + w, 0);
  let kind = weights[0]![0];
  for (const [k, w] of weights) {
    if ((r -= w) < 0) {
      kind = k;
      break;
    }
  }
  const candidates = byKind.get(kind)!;
  const file = rng.pick(candidates);
  const donorFile = candidates.length > 1 ? rng.pick(candidates.filter((c) => c !== file)) : undefined;
  const mutation = rng.pick(MUTATIONS);
  const bytes = mutate(
    rng,
    base.files.get(file)!,
    mutation,
    donorFile ? base.files.get(donorFile) : undefined,
  );
  return { file, kind, mutation, bytes };
}

export type Verdict =
  'unchanged' | 'recovered' | 'cut-with-warning' | 'clean-cut' | 'typed-error' | 'violation';

export interface CaseResult {
  readonly verdict: Verdict;
  readonly code?: string;
  readonly detail?: string;
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && Buffer.from(a).equals(Buffer.from(b));

/** WAL record framing: a 24-byte header whose bytes 4..8 hold the payload length (LE), then the payload. */
const WAL_HEADER = 24;

/**
 * Whether the case cut the newest WAL segment of its shard exactly after a whole record. The
 * log then simply ends earlier: nothing is torn and nothing follows, so no reader can tell it
 * from a log whose writer stopped there, and replay rightly yields the shorter log without a
 * warning. (Only a record of the last LSN kept elsewhere could tell, at the price of another
 * write per group commit.) Such cases are counted as 'clean-cut', not as violations.
 */
function cleanCutOfNewestSegment(base: BaseTable, c: FuzzCase): boolean {
  if (c.kind !== 'wal') return false;
  const orig = base.files.get(c.file)!;
  const n = c.bytes.byteLength;
  if (n >= orig.byteLength || !equalBytes(c.bytes, orig.subarray(0, n))) return false;
  const dir = c.file.slice(0, c.file.lastIndexOf('/') + 1);
  const segments = [...base.files.keys()].filter((p) => p.startsWith(dir) && p.endsWith('.wal')).sort();
  if (segments.at(-1) !== c.file) return false;
  const view = new DataView(orig.buffer, orig.byteOffset, orig.byteLength);
  let at = 0;
  while (at < n && at + WAL_HEADER <= orig.byteLength) at += WAL_HEADER + view.getUint32(at + 4, true);
  return at === n;
}

/** Runs the recovery component that reads the corrupted file, and judges the outcome. */
export async function runComponentCase(base: BaseTable, c: FuzzCase): Promise<CaseResult> {
  if (equalBytes(c.bytes, base.files.get(c.file)!)) return { verdict: 'unchanged' };
  const files = new Map(base.files);
  files.set(c.file, c.bytes);
  const mem = new MemoryStorage(files);
  const shard = Number(/^shard-(\d+)\//.exec(c.file)?.[1] ?? -1);
  const prefix = `shard-${String(shard).padStart(3, '0')}`;
  const warnings: string[] = [];
  const warn = (m: string): void => void warnings.push(m);
  try {
    switch (c.kind) {
      case 'wal': {
        const want = base.wal[shard]!;
        const got: [number, string][] = [];
        await within(
          replayWal(
            mem,
            prefix,
            base.manifests[shard]!.newest.replayFromLsn,
            (lsn, payload) => {
              got.push([lsn, sha1(payload)]);
            },
            { warn },
          ),
          10_000,
          'replayWal',
        );
        for (let i = 0; i < got.length; i++) {
          if (got[i]![0] !== want[i]?.[0] || got[i]![1] !== want[i]?.[1]) {
            return {
              verdict: 'violation',
              detail: `replay yielded LSN ${got[i]![0]} with bytes that were never written there`,
            };
          }
        }
        if (got.length < want.length) {
          if (warnings.length === 0 && cleanCutOfNewestSegment(base, c)) return { verdict: 'clean-cut' };
          if (warnings.length === 0)
            return {
              verdict: 'violation',
              detail: `replay silently stopped after ${got.length} of ${want.length} records`,
            };
          return { verdict: 'cut-with-warning' };
        }
        return { verdict: warnings.length ? 'cut-with-warning' : 'recovered' };
      }
      case 'manifest': {
        const { newest, versions } = base.manifests[shard]!;
        const m = await within(
          new ManifestStore(mem, prefix, { warn }).latest(),
          10_000,
          'ManifestStore.latest',
        );
        if (!m) return { verdict: 'violation', detail: 'no manifest at all' };
        const got = canonical(m);
        if (![...versions.values()].includes(got))
          return { verdict: 'violation', detail: `a manifest that was never written: ${got.slice(0, 200)}` };
        if (got !== canonical(newest) && warnings.length === 0) {
          return {
            verdict: 'violation',
            detail: `silently fell back to version ${m.version} (newest ${newest.version})`,
          };
        }
        return { verdict: warnings.length ? 'cut-with-warning' : 'recovered' };
      }
      case 'generation': {
        const entry = base.manifests[shard]!.newest.generations.find(
          (g: GenerationEntry) => g.file === c.file,
        );
        if (!entry) return { verdict: 'unchanged' }; // a file no manifest lists is never read
        GenerationReader.decode(c.bytes, entry, base.schema);
        return {
          verdict: 'violation',
          detail: `a generation file with different bytes (${c.mutation}) was accepted`,
        };
      }
      case 'meta': {
        // What open does with it: read the description, then build the schema from it.
        const meta = await readTableMeta(mem);
        if (meta === undefined)
          return { verdict: 'violation', detail: 'a damaged table description reads as no table at all' };
        const schema = schemaFromJson(meta.schema);
        const same =
          JSON.stringify(schema.columns.map((col) => [col.name, col.type])) ===
            JSON.stringify(base.schema.columns.map((col) => [col.name, col.type])) &&
          schema.primaryKey === base.schema.primaryKey &&
          meta.shards === base.meta.shards;
        if (!same) {
          return {
            verdict: 'violation',
            detail: `a damaged table description was accepted as another table: ${JSON.stringify(meta.schema)} shards ${meta.shards}`,
          };
        }
        return { verdict: 'recovered' };
      }
      case 'owner':
        return { verdict: 'unchanged' }; // markers are read by name only
    }
  } catch (err) {
    if (isSluiceError(err) && err.code.startsWith('SLUICE_CORRUPT_'))
      return { verdict: 'typed-error', code: err.code };
    const e = err as { code?: string; message?: string };
    return {
      verdict: 'violation',
      code: e.code ?? 'UNTYPED',
      detail: `${isSluiceError(err) ? err.code : 'untyped error'}: ${e.message ?? String(err)}`,
    };
  }
}

/** Runs one case end to end: a corrupted copy of the table on disk, open, scan and getMany. */
export async function runEndToEndCase(base: BaseTable, c: FuzzCase): Promise<CaseResult> {
  const dir = path.join(await tempDir('fuzz-e2e'), 'table');
  await cp(base.dir, dir, { recursive: true });
  await writeFile(path.join(dir, c.file), c.bytes);
  const warnings: string[] = [];
  let db;
  try {
    db = await within(open(dir, { onWarning: (m) => warnings.push(m) }), 60_000, 'open');
  } catch (err) {
    return judgeError(err);
  }
  try {
    const rows = await within(db.scan().toArray(), 60_000, 'scan');
    const keys = [...base.history.keys()];
    const many = await within(db.getMany(keys), 60_000, 'getMany');
    const seen = new Map<bigint, bigint>();
    for (const r of rows) {
      const id = r.id as bigint;
      const v = r.v as bigint;
      if (seen.has(id)) return { verdict: 'violation', detail: `key ${id} twice in one scan` };
      if (r.p !== `k${id}-v${v}` || !base.history.get(id)?.has(v)) {
        return {
          verdict: 'violation',
          detail: `garbage row ${JSON.stringify(r, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}` : x))}`,
        };
      }
      seen.set(id, v);
    }
    for (const [i, k] of keys.entries()) {
      if (((many[i]?.v as bigint | undefined) ?? null) !== (seen.get(k) ?? null)) {
        return { verdict: 'violation', detail: `key ${k}: scan and getMany disagree` };
      }
    }
    const exact = seen.size === base.final.size && [...base.final].every(([k, v]) => seen.get(k) === v);
    if (!exact && warnings.length === 0 && cleanCutOfNewestSegment(base, c)) return { verdict: 'clean-cut' };
    if (!exact && warnings.length === 0) {
      return {
        verdict: 'violation',
        detail: `rows lost or changed without a warning (${seen.size} of ${base.final.size} keys)`,
      };
    }
    return { verdict: exact && warnings.length === 0 ? 'recovered' : 'cut-with-warning' };
  } catch (err) {
    return judgeError(err);
  } finally {
    await db.close().catch(() => undefined);
  }
}

function judgeError(err: unknown): CaseResult {
  if (isSluiceError(err) && err.code.startsWith('SLUICE_CORRUPT_'))
    return { verdict: 'typed-error', code: err.code };
  const e = err as { code?: string; message?: string };
  return {
    verdict: 'violation',
    code: e.code ?? 'UNTYPED',
    detail: `${isSluiceError(err) ? err.code : 'untyped error'}: ${e.message ?? String(err)}`,
  };
}

export interface FuzzTotals {
  cases: number;
  endToEnd: number;
  byKind: Record<string, number>;
  byVerdict: Record<string, number>;
  codes: Record<string, number>;
  violations: string[];
}

export function emptyFuzz(): FuzzTotals {
  return { cases: 0, endToEnd: 0, byKind: {}, byVerdict: {}, codes: {}, violations: [] };
}

export function addFuzz(
  t: FuzzTotals,
  c: FuzzCase,
  r: CaseResult,
  e2e: boolean,
  seed: number,
  index: number,
): void {
  t.cases++;
  if (e2e) t.endToEnd++;
  t.byKind[c.kind] = (t.byKind[c.kind] ?? 0) + 1;
  t.byVerdict[r.verdict] = (t.byVerdict[r.verdict] ?? 0) + 1;
  if (r.code) t.codes[r.code] = (t.codes[r.code] ?? 0) + 1;
  if (r.verdict === 'violation') {
    t.violations.push(
      `seed ${seed} case ${index}${e2e ? ' (end to end)' : ''}: ${c.mutation} of ${c.file}: ${r.detail}`,
    );
  }
}
