import { ExitCode } from '../exit-codes.js';
import { formatBytes } from '../ingest/progress-reporter.js';
import { toJson } from '../json-values.js';
import { print } from '../output/write-out.js';
import { verifyTable } from '../verify/table-verifier.js';

/**
 * `sluice verify <dir>`: checks every checksum, manifest and file reference without opening the
 * table (no ownership taken, nothing written). Exit 0 when sound, 5 on damage (and, with
 * --strict, on warnings), 4 when there is no table.
 */
export async function verifyCommand(
  dir: string,
  options: { readonly json?: boolean; readonly strict?: boolean; readonly quiet?: boolean },
): Promise<number> {
  const report = await verifyTable(dir);
  const noTable = report.findings.some((f) => f.code === 'SLUICE_NOT_FOUND');
  const failed = !report.ok || (options.strict === true && report.warnings > 0);
  if (options.json) {
    await print(`${toJson(report)}\n`);
  } else {
    const lines: string[] = [];
    for (const s of report.shards) {
      lines.push(
        `shard ${s.shard}: manifest v${s.manifestVersion ?? '-'} (${s.manifests} versions), ` +
          `${s.generations} generations (${s.generationRows} rows, ${formatBytes(s.generationBytes)}), ` +
          `WAL ${s.walSegments} segments, ${s.walRecords} records, ${formatBytes(s.walBytes)}`,
      );
    }
    for (const f of report.findings) {
      if (f.severity === 'info' && options.quiet) continue;
      lines.push(
        `${f.severity.toUpperCase().padEnd(7)} ${f.path}: ${f.message}${f.code ? ` [${f.code}]` : ''}`,
      );
    }
    const verdict = report.ok
      ? report.warnings > 0
        ? `OK with ${report.warnings} warning${report.warnings === 1 ? '' : 's'}`
        : 'OK'
      : `DAMAGED: ${report.errors} error${report.errors === 1 ? '' : 's'}, ${report.warnings} warning${report.warnings === 1 ? '' : 's'}`;
    lines.push(`verify ${report.root}: ${verdict}`);
    await print(`${lines.join('\n')}\n`);
  }
  if (noTable) return ExitCode.NOT_FOUND;
  return failed ? ExitCode.DAMAGED : ExitCode.OK;
}
