import { crc32 } from 'node:zlib';
import path from 'node:path';
import { ErrorCode, isSluiceError } from '@sluice/protocol';
import {
  GenerationReader,
  LocalStorage,
  TABLE_META_PATH,
  decodeManifest,
  generationDir,
  listSegments,
  parseGenerationFileName,
  parseSequence,
  readTableMeta,
  replayWal,
  schemaFromJson,
  shardPrefix,
  walDir,
} from '@sluice/core';
import type { Manifest, Storage, TableMeta, TableSchema } from '@sluice/core';
import { SERVE_LOCK } from '../serve-lock.js';

export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  readonly severity: Severity;
  /** Storage path the finding is about, relative to the table directory. */
  readonly path: string;
  readonly message: string;
  readonly shard?: number;
  /** The engine error code the damage corresponds to, when there is one. */
  readonly code?: string;
}

export interface ShardSummary {
  readonly shard: number;
  readonly manifestVersion: number | null;
  readonly manifests: number;
  readonly generations: number;
  readonly generationRows: number;
  readonly generationBytes: number;
  readonly walSegments: number;
  readonly walRecords: number;
  readonly walBytes: number;
  readonly replayFromLsn: number | null;
}

export interface VerifyReport {
  readonly root: string;
  readonly ok: boolean;
  readonly errors: number;
  readonly warnings: number;
  readonly shards: readonly ShardSummary[];
  readonly findings: readonly Finding[];
}

const SHARD_DIR_RE = /^shard-(\d{3,})$/;

/**
 * Checks a table directory without opening it: no ownership is taken and nothing is written
 * (storage is only listed and read; WAL replay runs with repair off). Checks:
 *
 * - `sluice.json` parses and its schema is valid;
 * - every manifest version of every shard: framing, crc32, structure, version and shard numbers;
 * - every generation file the current manifest references: present, size, crc32 (in its name),
 *   Arrow framing, columns and types, batches, key order and key ranges against the manifest;
 *   every other generation file: its crc32;
 * - every WAL record from the oldest segment on: header, LSN sequence and crc32; records the
 *   manifest's replay cursor needs must all be there.
 *
 * Damage is an error. A torn tail at the very end of a shard's newest WAL segment is a warning:
 * it is what a crash mid-append leaves, recovery cuts it, and no acknowledged write is in it.
 */
export async function verifyTable(dir: string): Promise<VerifyReport> {
  const root = path.resolve(dir);
  const storage = new LocalStorage(root);
  const findings: Finding[] = [];
  const shards: ShardSummary[] = [];
  const add = (f: Finding): void => {
    findings.push(f);
  };

  let meta: TableMeta | undefined;
  try {
    meta = await readTableMeta(storage);
  } catch (err) {
    add({ severity: 'error', path: TABLE_META_PATH, message: messageOf(err), code: codeOf(err) });
  }
  if (meta === undefined) {
    if (findings.length === 0) {
      add({
        severity: 'error',
        path: TABLE_META_PATH,
        message: `${root} holds no Sluice table (no ${TABLE_META_PATH})`,
        code: ErrorCode.NOT_FOUND,
      });
    }
    return report(root, shards, findings);
  }
  let schema: TableSchema | undefined;
  try {
    schema = schemaFromJson(meta.schema);
  } catch (err) {
    add({
      severity: 'error',
      path: TABLE_META_PATH,
      message: `invalid schema: ${messageOf(err)}`,
      code: ErrorCode.CORRUPT_MANIFEST,
    });
  }

  for (const name of await storage.list('')) {
    const top = name.split('/')[0]!;
    if (top === TABLE_META_PATH || top === SERVE_LOCK) continue;
    const m = SHARD_DIR_RE.exec(top);
    if (!m || Number(m[1]) >= meta.shards) {
      if (!findings.some((f) => f.path === top)) {
        add({ severity: 'warning', path: top, message: `not part of a ${meta.shards}-shard table` });
      }
    }
  }

  for (let s = 0; s < meta.shards; s++) {
    shards.push(await verifyShard(storage, s, schema, add));
  }
  return report(root, shards, findings);
}

function report(root: string, shards: ShardSummary[], findings: Finding[]): VerifyReport {
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.filter((f) => f.severity === 'warning').length;
  return { root, ok: errors === 0, errors, warnings, shards, findings };
}

async function verifyShard(
  storage: Storage,
  shard: number,
  schema: TableSchema | undefined,
  add: (f: Finding) => void,
): Promise<ShardSummary> {
  const prefix = shardPrefix(shard);
  const at = (severity: Severity, p: string, message: string, code?: string): void =>
    add({ severity, path: p, message, shard, ...(code === undefined ? {} : { code }) });

  // Manifests: every version, newest valid one is current (as ManifestStore.latest reads it).
  const manifestDir = `${prefix}/manifest`;
  const versions: { version: number; path: string }[] = [];
  for (const name of await storage.list(manifestDir)) {
    const version = parseSequence(name, '.json');
    if (version === undefined || version < 1) {
      at('warning', `${manifestDir}/${name}`, 'not a manifest file name');
      continue;
    }
    versions.push({ version, path: `${manifestDir}/${name}` });
  }
  versions.sort((a, b) => a.version - b.version);
  let current: Manifest | undefined;
  for (const v of versions) {
    try {
      const bytes = await storage.get(v.path);
      if (bytes === undefined) throw new Error('listed but missing');
      const m = decodeManifest(bytes, v.path);
      if (m.version !== v.version) throw new Error(`holds version ${m.version}`);
      if (m.shard !== shard) throw new Error(`belongs to shard ${m.shard}`);
      current = m;
    } catch (err) {
      at('error', v.path, `manifest version ${v.version}: ${messageOf(err)}`, ErrorCode.CORRUPT_MANIFEST);
    }
  }
  if (versions.length === 0) {
    at('warning', manifestDir, 'no manifest yet (the table was created but this shard never opened)');
  }

  // Generation files: the referenced ones fully, every other one by its checksum.
  let generationRows = 0;
  let generationBytes = 0;
  const referenced = new Set<string>();
  for (const entry of current?.generations ?? []) {
    referenced.add(entry.file);
    generationBytes += entry.bytes;
    generationRows += entry.rows;
    if (!entry.file.startsWith(`${generationDir(prefix)}/`)) {
      at(
        'error',
        entry.file,
        `generation ${entry.gen} is referenced outside ${generationDir(prefix)}/`,
        ErrorCode.CORRUPT_MANIFEST,
      );
    }
    if (schema === undefined) continue;
    try {
      await GenerationReader.open(storage, entry, schema);
    } catch (err) {
      at('error', entry.file, messageOf(err), codeOf(err) ?? ErrorCode.CORRUPT_GENERATION);
    }
  }
  const genDir = generationDir(prefix);
  for (const name of await storage.list(genDir)) {
    const p = `${genDir}/${name}`;
    if (referenced.has(p)) continue;
    const parsed = parseGenerationFileName(p);
    if (parsed === undefined) {
      at('warning', p, 'not a generation file name');
      continue;
    }
    const bytes = await storage.get(p);
    if (bytes !== undefined && crc32(bytes) !== parsed.crc32) {
      at('warning', p, 'unreferenced generation file with a wrong checksum (not read by the table)');
    } else {
      at('info', p, 'unreferenced generation file (left by an interrupted flush, or awaiting cleanup)');
    }
  }

  // WAL: checksum every record from the oldest segment on, without repairing anything.
  const segments = await listSegments(storage, prefix);
  const replayFrom = current?.replayFromLsn ?? 1;
  let walRecords = 0;
  let walBytes = 0;
  for (const seg of segments) walBytes += (await storage.size(seg.path)) ?? 0;
  const first = segments[0];
  if (first !== undefined) {
    const from = Math.min(first.start, replayFrom);
    const cuts: string[] = [];
    try {
      const result = await replayWal(storage, prefix, from, () => undefined, {
        repair: false,
        warn: (m) => cuts.push(m),
      });
      walRecords = result.records;
      const cut = result.truncated;
      if (cut !== null) {
        const cutLsn = result.lastLsn + 1;
        const last = segments[segments.length - 1]!;
        const tornTail = /^(torn tail|zero-filled tail)/.test(cut.reason) && cut.path === last.path;
        if (cutLsn < replayFrom) {
          at(
            'warning',
            cut.path,
            `${cut.reason} at byte ${cut.at}, below the replay cursor (LSN ${replayFrom}): those records are already in generation files`,
          );
          // The part recovery reads must still be intact: check it on its own.
          try {
            const live = await replayWal(storage, prefix, replayFrom, () => undefined, {
              repair: false,
              warn: () => undefined,
            });
            walRecords = live.records;
            if (live.truncated !== null) walFinding(at, live.truncated, segments[segments.length - 1]!.path);
          } catch (err) {
            at('error', walDir(prefix), messageOf(err), codeOf(err) ?? ErrorCode.CORRUPT_WAL);
          }
        } else if (tornTail) {
          at(
            'warning',
            cut.path,
            `${cut.reason} at byte ${cut.at} (what a crash during an append leaves; the next open cuts it, no acknowledged write is lost)`,
          );
        } else {
          walFinding(at, cut, last.path);
        }
      }
    } catch (err) {
      at('error', walDir(prefix), messageOf(err), codeOf(err) ?? ErrorCode.CORRUPT_WAL);
    }
  }

  for (const name of await storage.list(prefix)) {
    const top = name.split('/')[0]!;
    if (!['manifest', 'wal', 'gen', 'owner'].includes(top))
      at('warning', `${prefix}/${name}`, 'unexpected file in a shard directory');
  }

  return {
    shard,
    manifestVersion: current?.version ?? null,
    manifests: versions.length,
    generations: current?.generations.length ?? 0,
    generationRows,
    generationBytes,
    walSegments: segments.length,
    walRecords,
    walBytes,
    replayFromLsn: current?.replayFromLsn ?? null,
  };
}

function walFinding(
  at: (severity: Severity, p: string, message: string, code?: string) => void,
  cut: { readonly path: string; readonly at: number; readonly reason: string },
  lastPath: string,
): void {
  const tornTail = /^(torn tail|zero-filled tail)/.test(cut.reason) && cut.path === lastPath;
  if (tornTail) {
    at('warning', cut.path, `${cut.reason} at byte ${cut.at} (crash artifact; the next open cuts it)`);
    return;
  }
  at(
    'error',
    cut.path,
    `${cut.reason} at byte ${cut.at}: records from there on cannot be replayed (acknowledged writes may be lost)`,
    ErrorCode.CORRUPT_WAL,
  );
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function codeOf(err: unknown): string | undefined {
  return isSluiceError(err) ? err.code : undefined;
}
