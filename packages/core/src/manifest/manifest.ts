import { crc32 } from 'node:zlib';
import { ErrorCode, SluiceError } from '@sluice/protocol';

/** One batch of a generation file: its row count and primary-key range (for point lookups). */
export interface GenerationBatch {
  /** Byte offset of the batch in the generation file, when the format exposes one. */
  readonly offset?: number;
  readonly rows: number;
  readonly minKey: string;
  readonly maxKey: string;
}

/** One flushed generation: an immutable file plus what a reader needs to skip it. Keys are encoded by the caller. */
export interface GenerationEntry {
  readonly gen: number;
  /** Path of the generation file, relative to the storage root. */
  readonly file: string;
  readonly rows: number;
  readonly bytes: number;
  readonly minKey: string;
  readonly maxKey: string;
  readonly batches: readonly GenerationBatch[];
  /** Newest row sequence number in the generation. */
  readonly maxSeq?: number;
}

/** The versioned state of one shard. A version is written once and never changed. */
export interface Manifest {
  readonly format: 1;
  readonly shard: number;
  readonly version: number;
  /** Epoch of the writer that committed this version (see ManifestStore.claimEpoch). */
  readonly writerEpoch: number;
  /** Every WAL record below this LSN is in a generation listed here; replay starts at it. */
  readonly replayFromLsn: number;
  readonly nextGeneration: number;
  /** Sorted by `gen`, ascending. */
  readonly generations: readonly GenerationEntry[];
  /**
   * Newest row sequence number the shard has made durable in generations, so sequence
   * numbering survives the deletion of the WAL records that carried it.
   */
  readonly maxSeq?: number;
}

const MANIFEST_FIELDS: ReadonlySet<string> = new Set([
  'format',
  'shard',
  'version',
  'writerEpoch',
  'replayFromLsn',
  'nextGeneration',
  'generations',
  'maxSeq',
]);
const GENERATION_FIELDS: ReadonlySet<string> = new Set([
  'gen',
  'file',
  'rows',
  'bytes',
  'minKey',
  'maxKey',
  'batches',
  'maxSeq',
]);
const BATCH_FIELDS: ReadonlySet<string> = new Set(['offset', 'rows', 'minKey', 'maxKey']);

/**
 * A manifest file is one JSON object, `{"crc32":"<8 hex>","manifest":<body>}` plus a
 * newline, where the crc covers the exact body bytes. The prefix has a fixed length, so
 * the body is located without parsing and a flipped byte anywhere in it is detected,
 * even one that leaves valid JSON behind.
 */
const PREFIX_START = '{"crc32":"';
const PREFIX_END = '","manifest":';
const PREFIX_BYTES = PREFIX_START.length + 8 + PREFIX_END.length;
const SUFFIX = '}\n';

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeManifest(manifest: Manifest): Uint8Array {
  // Unknown fields are refused rather than dropped: a field the format does not know would
  // silently vanish at the next read, and whatever relied on it with it.
  const problem = manifestProblem(manifest) ?? unknownField(manifest);
  if (problem !== undefined) {
    throw new SluiceError(ErrorCode.INTERNAL, `refusing to write an invalid manifest: ${problem}`);
  }
  const body = utf8.encode(JSON.stringify(normalize(manifest)));
  const crc = crc32(body).toString(16).padStart(8, '0');
  const head = utf8.encode(`${PREFIX_START}${crc}${PREFIX_END}`);
  const tail = utf8.encode(SUFFIX);
  const out = new Uint8Array(head.byteLength + body.byteLength + tail.byteLength);
  out.set(head, 0);
  out.set(body, head.byteLength);
  out.set(tail, head.byteLength + body.byteLength);
  return out;
}

/** Parses and validates a manifest file; any damage is SLUICE_CORRUPT_MANIFEST naming `path`. */
export function decodeManifest(bytes: Uint8Array, path: string): Manifest {
  const corrupt = (why: string, cause?: unknown): SluiceError =>
    new SluiceError(ErrorCode.CORRUPT_MANIFEST, `manifest ${path} is damaged: ${why}`, {
      details: { path },
      ...(cause === undefined ? {} : { cause }),
    });
  if (bytes.byteLength < PREFIX_BYTES + SUFFIX.length) throw corrupt(`only ${bytes.byteLength} bytes`);
  let head: string;
  let tail: string;
  try {
    head = strictUtf8.decode(bytes.subarray(0, PREFIX_BYTES));
    tail = strictUtf8.decode(bytes.subarray(bytes.byteLength - SUFFIX.length));
  } catch (err) {
    throw corrupt('not UTF-8', err);
  }
  const crcHex = head.slice(PREFIX_START.length, PREFIX_START.length + 8);
  if (
    !head.startsWith(PREFIX_START) ||
    !head.endsWith(PREFIX_END) ||
    !/^[0-9a-f]{8}$/.test(crcHex) ||
    tail !== SUFFIX
  ) {
    throw corrupt('not a Sluice manifest file (bad framing)');
  }
  const body = bytes.subarray(PREFIX_BYTES, bytes.byteLength - SUFFIX.length);
  const actual = crc32(body);
  if (actual !== Number.parseInt(crcHex, 16)) {
    throw corrupt(`crc32 mismatch (stored ${crcHex}, computed ${actual.toString(16).padStart(8, '0')})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(strictUtf8.decode(body));
  } catch (err) {
    throw corrupt('body is not JSON', err);
  }
  const problem = manifestProblem(value);
  if (problem !== undefined) throw corrupt(problem);
  return normalize(value as Manifest);
}

/** Why `value` is not a valid format-1 manifest, or undefined when it is one. */
export function manifestProblem(value: unknown): string | undefined {
  if (!isRecord(value)) return 'not an object';
  if (value.format !== 1) return `unknown format ${JSON.stringify(value.format)}`;
  for (const [field, min] of [
    ['shard', 0],
    ['version', 1],
    ['writerEpoch', 0],
    ['replayFromLsn', 1],
    ['nextGeneration', 0],
  ] as const) {
    if (!isInt(value[field], min)) return `${field} must be an integer >= ${min}`;
  }
  if (value.maxSeq !== undefined && !isInt(value.maxSeq, 0)) return 'maxSeq must be an integer >= 0';
  const nextGeneration = value.nextGeneration as number;
  if (!Array.isArray(value.generations)) return 'generations must be an array';
  let previous = -1;
  for (const [i, entry] of (value.generations as unknown[]).entries()) {
    const where = `generations[${i}]`;
    if (!isRecord(entry)) return `${where} is not an object`;
    if (!isInt(entry.gen, 0)) return `${where}.gen must be an integer >= 0`;
    if (entry.gen <= previous) return `${where}.gen ${entry.gen} is not above ${previous} (must ascend)`;
    if (entry.gen >= nextGeneration) return `${where}.gen ${entry.gen} is not below nextGeneration`;
    previous = entry.gen;
    if (typeof entry.file !== 'string' || entry.file === '')
      return `${where}.file must be a non-empty string`;
    if (!isInt(entry.rows, 0) || !isInt(entry.bytes, 0)) return `${where}.rows/bytes must be integers >= 0`;
    if (typeof entry.minKey !== 'string' || typeof entry.maxKey !== 'string') {
      return `${where}.minKey/maxKey must be strings`;
    }
    if (entry.maxSeq !== undefined && !isInt(entry.maxSeq, 0))
      return `${where}.maxSeq must be an integer >= 0`;
    if (!Array.isArray(entry.batches)) return `${where}.batches must be an array`;
    for (const [j, batch] of (entry.batches as unknown[]).entries()) {
      const at = `${where}.batches[${j}]`;
      if (!isRecord(batch)) return `${at} is not an object`;
      if (batch.offset !== undefined && !isInt(batch.offset, 0))
        return `${at}.offset must be an integer >= 0`;
      if (!isInt(batch.rows, 0)) return `${at}.rows must be an integer >= 0`;
      if (typeof batch.minKey !== 'string' || typeof batch.maxKey !== 'string') {
        return `${at}.minKey/maxKey must be strings`;
      }
    }
  }
  return undefined;
}

/** The first field of a (structurally valid) manifest that format 1 does not define. */
function unknownField(m: Manifest): string | undefined {
  const extra = (keys: string[], known: ReadonlySet<string>): string | undefined =>
    keys.find((k) => !known.has(k));
  const top = extra(Object.keys(m), MANIFEST_FIELDS);
  if (top !== undefined) return `unknown field "${top}"`;
  for (const [i, g] of m.generations.entries()) {
    const field = extra(Object.keys(g), GENERATION_FIELDS);
    if (field !== undefined) return `unknown field "generations[${i}].${field}"`;
    for (const [j, b] of g.batches.entries()) {
      const batchField = extra(Object.keys(b), BATCH_FIELDS);
      if (batchField !== undefined) return `unknown field "generations[${i}].batches[${j}].${batchField}"`;
    }
  }
  return undefined;
}

/**
 * A copy with exactly the format-1 fields in a fixed order. On read this drops fields a
 * later format may add; on write `unknownField` has already refused them.
 */
function normalize(m: Manifest): Manifest {
  return {
    format: 1,
    shard: m.shard,
    version: m.version,
    writerEpoch: m.writerEpoch,
    replayFromLsn: m.replayFromLsn,
    nextGeneration: m.nextGeneration,
    generations: m.generations.map((g) => ({
      gen: g.gen,
      file: g.file,
      rows: g.rows,
      bytes: g.bytes,
      minKey: g.minKey,
      maxKey: g.maxKey,
      batches: g.batches.map((b) => ({
        ...(b.offset === undefined ? {} : { offset: b.offset }),
        rows: b.rows,
        minKey: b.minKey,
        maxKey: b.maxKey,
      })),
      ...(g.maxSeq === undefined ? {} : { maxSeq: g.maxSeq }),
    })),
    ...(m.maxSeq === undefined ? {} : { maxSeq: m.maxSeq }),
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isInt(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= min;
}
