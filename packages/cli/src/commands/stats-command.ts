import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { shardPrefix } from '@sluice/core';
import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../ingest/progress-reporter.js';
import { toJson } from '../json-values.js';
import { print } from '../output/write-out.js';
import { openExisting } from '../table-access.js';

export interface DiskUsage {
  readonly files: number;
  readonly bytes: number;
  readonly walSegments: number;
  readonly generationFiles: number;
  readonly manifestVersions: number;
}

async function usage(dir: string): Promise<DiskUsage> {
  let files = 0;
  let bytes = 0;
  const count = async (sub: string): Promise<number> => {
    let n = 0;
    let names: string[];
    try {
      names = await readdir(path.join(dir, sub));
    } catch {
      return 0;
    }
    for (const name of names) {
      if (name.startsWith('.tmp-')) continue;
      const s = await stat(path.join(dir, sub, name)).catch(() => undefined);
      if (!s?.isFile()) continue;
      n++;
      files++;
      bytes += s.size;
    }
    return n;
  };
  const walSegments = await count('wal');
  const generationFiles = await count('gen');
  const manifestVersions = await count('manifest');
  await count('owner');
  return { files, bytes, walSegments, generationFiles, manifestVersions };
}

/**
 * `sluice stats <dir>`: per shard, rows, memtables (bytes in use, and reserved), generations, WAL and files. Opening the table
 * replays the WAL, so memtable figures are what recovery rebuilt.
 */
export async function statsCommand(dir: string, options: { readonly json?: boolean }): Promise<number> {
  const db = await openExisting(dir);
  let text: string;
  try {
    const stats = db.stats();
    const disk = await Promise.all(stats.shards.map((s) => usage(path.join(db.dir, shardPrefix(s.shard)))));
    if (options.json) {
      text = `${toJson({ dir: db.dir, primaryKey: db.schema.primaryKey, ...stats, disk })}\n`;
    } else {
      const header = [
        'shard',
        'state',
        'rows',
        'active',
        'frozen',
        'memtables',
        'reserved',
        'generations',
        'gen rows',
        'WAL',
        'WAL segs',
        'files',
        'disk',
      ];
      const rows = stats.shards.map((s, i) => {
        const d = disk[i]!;
        return [
          String(s.shard),
          s.state,
          String(s.rows),
          String(s.activeRows),
          String(s.frozen),
          formatBytes(s.memtableUsedBytes),
          formatBytes(s.memtableBytes),
          String(s.generations),
          String(s.generationRows),
          formatBytes(s.walBytes),
          String(d.walSegments),
          String(d.files),
          formatBytes(d.bytes),
        ];
      });
      const sum = (f: (s: (typeof stats.shards)[number]) => number): number =>
        stats.shards.reduce((n, s) => n + f(s), 0);
      rows.push([
        'total',
        '',
        String(sum((s) => s.rows)),
        String(sum((s) => s.activeRows)),
        String(sum((s) => s.frozen)),
        formatBytes(sum((s) => s.memtableUsedBytes)),
        formatBytes(sum((s) => s.memtableBytes)),
        String(sum((s) => s.generations)),
        String(sum((s) => s.generationRows)),
        formatBytes(sum((s) => s.walBytes)),
        String(disk.reduce((n, d) => n + d.walSegments, 0)),
        String(disk.reduce((n, d) => n + d.files, 0)),
        formatBytes(disk.reduce((n, d) => n + d.bytes, 0)),
      ]);
      const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
      const line = (cells: readonly string[]): string =>
        cells.map((v, c) => (c < 2 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  ');
      const r = stats.recovery;
      text =
        `table ${db.dir}: ${stats.shards.length} shards, key ${db.schema.primaryKey}; rows count every stored version\n` +
        `${line(header)}\n${rows.map(line).join('\n')}\n` +
        `recovery: replayed ${r.records} WAL records (${r.rows} rows) in ${Math.round(r.ms)} ms; ` +
        `unflushed ${formatBytes(stats.unflushedBytes)}; put stalls ${stats.putStalls}\n`;
    }
  } finally {
    await db.close();
  }
  await print(text);
  return ExitCode.OK;
}
