import { ErrorCode, SluiceError, ioError } from '@sluice/protocol';
import type { Storage } from '../storage/storage.js';
import { WAL_HEADER_BYTES, WAL_MAGIC, readHeader, recordCrc } from './wal-record.js';
import type { WalSegment } from './wal-segments.js';
import { listSegments } from './wal-segments.js';

export interface ReplayOptions {
  /**
   * Cut the log durably at the last valid record: truncate the segment holding the first
   * invalid record and delete every later segment. Default true. Without it nothing is
   * modified, and a writer must not be opened on the log.
   */
  readonly repair?: boolean;
  /** Receives one message per cut. Default: process.emitWarning. */
  readonly warn?: (message: string) => void;
  /** Bytes read per storage call; a larger record is read whole. Default 4 MiB. */
  readonly readChunkBytes?: number;
}

export interface ReplayResult {
  /**
   * The last LSN of the log, never below `fromLsn - 1`: the writer continues at
   * `lastLsn + 1`. (Records below `fromLsn` are already in flushed generations; reusing
   * their LSNs would hide new records from the next replay.)
   */
  readonly lastLsn: number;
  /** Records handed to onRecord. */
  readonly records: number;
  /** Bytes (headers included) of the records handed to onRecord. */
  readonly bytes: number;
  /** The first byte that was not replayed, when the log had to be cut; null otherwise. */
  readonly truncated: { readonly path: string; readonly at: number; readonly reason: string } | null;
}

const DEFAULT_READ_CHUNK = 4 << 20;

/**
 * Replays the shard's WAL from `fromLsn`: calls `onRecord` for every record with
 * LSN >= fromLsn, in LSN order, awaiting it before the next. The payload handed over is a
 * view that is only valid during the call.
 *
 * Recovers to the last valid point: the log ends at the first invalid record (bad magic
 * or flags, length past the end of the file, crc mismatch, LSN not the next one) or at
 * the first segment that does not continue the previous one. Everything after that point
 * is unreachable and, with `repair`, removed so that a new writer can continue the log.
 *
 * Throws SLUICE_CORRUPT_WAL when the oldest segment starts after `fromLsn`: records the
 * manifest needs are missing.
 *
 * Records below `fromLsn` are skipped by header alone (their payloads are neither read
 * nor checksummed): they are already in flushed generations, and only their headers are
 * needed to find the next record.
 */
export async function replayWal(
  storage: Storage,
  shardPrefix: string,
  fromLsn: number,
  onRecord: (lsn: number, payload: Uint8Array) => void | Promise<void>,
  options: ReplayOptions = {},
): Promise<ReplayResult> {
  if (!Number.isSafeInteger(fromLsn) || fromLsn < 1) {
    throw new RangeError(`fromLsn must be a positive safe integer, got ${fromLsn}`);
  }
  const repair = options.repair ?? true;
  const warn = options.warn ?? defaultWarn;
  const chunkBytes = options.readChunkBytes ?? DEFAULT_READ_CHUNK;
  const segments = await listSegments(storage, shardPrefix);
  if (segments.length === 0) return { lastLsn: fromLsn - 1, records: 0, bytes: 0, truncated: null };

  // Start at the last segment that begins at or before fromLsn. Older segments hold only
  // records below fromLsn (deleteSegmentsBefore has not caught up yet) and are not read,
  // so leftovers there can never cut the log.
  let first = -1;
  for (let i = 0; i < segments.length; i++) if ((segments[i]?.start ?? Infinity) <= fromLsn) first = i;
  if (first < 0) {
    const oldest = segments[0] as WalSegment;
    throw new SluiceError(
      ErrorCode.CORRUPT_WAL,
      `WAL segment ${oldest.path} starts at LSN ${oldest.start} but replay must start at LSN ${fromLsn}: ` +
        `records ${fromLsn}..${oldest.start - 1} are missing`,
      { details: { path: oldest.path, missingFrom: fromLsn, missingTo: oldest.start - 1 } },
    );
  }

  // One read buffer for the whole replay, reused by every window of every segment: a fresh
  // buffer per window would first-touch its pages on every read, which costs more than the
  // read itself on hosts where page faults are slow.
  const buffer = { bytes: new Uint8Array(0) };
  let expected = (segments[first] as WalSegment).start;
  let records = 0;
  let bytes = 0;
  let cut: { index: number; at: number; reason: string } | undefined;
  for (let i = first; i < segments.length && cut === undefined; i++) {
    const segment = segments[i] as WalSegment;
    if (segment.start !== expected) {
      cut = { index: i, at: 0, reason: `segment starts at LSN ${segment.start}, expected ${expected}` };
      break;
    }
    // A segment ends where the next one starts. Records past that point can only come from a
    // writer that was fenced: its successor started the next segment at the LSN after what it
    // replayed, so anything the fenced writer appended later is superseded, never replayed.
    const end = segments[i + 1]?.start ?? Infinity;
    const read = await replaySegment(storage, segment, fromLsn, onRecord, chunkBytes, end, buffer);
    expected = read.nextLsn;
    records += read.records;
    bytes += read.bytes;
    if (read.cut !== undefined) cut = { index: i, ...read.cut };
  }

  const lastLsn = Math.max(expected - 1, fromLsn - 1);
  if (cut === undefined) return { lastLsn, records, bytes, truncated: null };

  const at = segments[cut.index] as WalSegment;
  const later = segments.slice(cut.index + 1);
  warn(
    `WAL of ${shardPrefix}: ${cut.reason} in ${at.path} at byte ${cut.at}; replayed up to LSN ${expected - 1}` +
      (later.length > 0
        ? `; ${later.length} later segment(s) unreachable: ${later.map((s) => s.path).join(', ')}`
        : '') +
      (repair ? '; cutting the log there' : '; repair disabled, nothing changed'),
  );
  if (repair) await cutLog(storage, at, cut.at, later);
  return { lastLsn, records, bytes, truncated: { path: at.path, at: cut.at, reason: cut.reason } };
}

/**
 * Makes the cut durable. Later segments go first, newest first, and the cut segment last:
 * a crash at any step leaves a log that is still a valid prefix followed by garbage the
 * next replay cuts again, never a gap in front of live records.
 */
async function cutLog(storage: Storage, segment: WalSegment, at: number, later: WalSegment[]): Promise<void> {
  for (const dead of [...later].reverse()) await storage.delete(dead.path);
  if (at === 0) {
    // Nothing valid in it: removing it (rather than leaving an empty file) keeps the
    // next writer free to create a segment of the same name.
    await storage.delete(segment.path);
    return;
  }
  const file = await storage.openAppend(segment.path);
  try {
    await file.truncate(at);
  } finally {
    await file.close();
  }
}

interface SegmentRead {
  nextLsn: number;
  records: number;
  bytes: number;
  cut?: { at: number; reason: string };
}

async function replaySegment(
  storage: Storage,
  segment: WalSegment,
  fromLsn: number,
  onRecord: (lsn: number, payload: Uint8Array) => void | Promise<void>,
  chunkBytes: number,
  endLsn: number,
  buffer: { bytes: Uint8Array },
): Promise<SegmentRead> {
  const { path } = segment;
  const size = await storage.size(path);
  if (size === undefined) {
    throw ioError(
      'replay',
      path,
      Object.assign(new Error('segment vanished during replay'), { code: 'ENOENT' }),
    );
  }
  // A window of the file, read into `buffer`; records inside it are handed over as views
  // (valid until the next fill, which only happens after onRecord has settled), a record
  // larger than the window is read whole in one call. Memory stays at max(chunkBytes,
  // largest record).
  let window: Uint8Array = new Uint8Array(0);
  let windowAt = 0;
  const inWindow = (at: number, length: number): boolean =>
    at >= windowAt && at + length <= windowAt + window.byteLength;
  const fill = async (at: number, length: number): Promise<void> => {
    const want = Math.min(size - at, Math.max(length, chunkBytes));
    if (buffer.bytes.byteLength < want) buffer.bytes = new Uint8Array(want);
    window = await storage.getRange(path, at, want, buffer.bytes);
    windowAt = at;
  };
  const view = (at: number, length: number): Uint8Array =>
    window.subarray(at - windowAt, Math.min(at - windowAt + length, window.byteLength));

  const result: SegmentRead = { nextLsn: segment.start, records: 0, bytes: 0 };
  let pos = 0;
  const stop = (reason: string): SegmentRead => ({ ...result, cut: { at: pos, reason } });
  while (pos < size && result.nextLsn < endLsn) {
    const remaining = size - pos;
    if (remaining < WAL_HEADER_BYTES)
      return stop(`torn tail (${remaining} bytes, less than a record header)`);
    // Awaiting only on a window miss keeps small records off the microtask queue.
    if (!inWindow(pos, WAL_HEADER_BYTES)) await fill(pos, WAL_HEADER_BYTES);
    const headerBytes = view(pos, WAL_HEADER_BYTES);
    // The file may have shrunk under us (only a concurrent truncation could do that).
    if (headerBytes.byteLength < WAL_HEADER_BYTES) return stop('segment shorter than its size');
    const header = readHeader(headerBytes);
    if (header.magic !== WAL_MAGIC || header.flags !== 0) {
      const zero = headerBytes.every((b) => b === 0);
      return stop(zero ? 'zero-filled tail (torn write)' : 'bad record magic');
    }
    const total = WAL_HEADER_BYTES + header.payloadLength;
    if (total > remaining) {
      return stop(`torn tail (record of ${total} bytes, ${remaining} left in the file)`);
    }
    if (header.lsn !== result.nextLsn) {
      return stop(`LSN ${header.lsn} where ${result.nextLsn} was expected`);
    }
    if (header.lsn >= fromLsn) {
      if (!inWindow(pos, total)) await fill(pos, total);
      const record = view(pos, total);
      if (record.byteLength < total) return stop('segment shorter than its size');
      if (recordCrc(record) !== header.crc) {
        const last = pos + total === size;
        return stop(
          last ? 'torn tail (crc mismatch in the last record)' : `crc mismatch in LSN ${header.lsn}`,
        );
      }
      const applied = onRecord(header.lsn, record.subarray(WAL_HEADER_BYTES));
      if (applied !== undefined) await applied;
      result.records++;
      result.bytes += total;
    }
    pos += total;
    result.nextLsn = header.lsn + 1;
  }
  return result;
}

function defaultWarn(message: string): void {
  process.emitWarning(message, { code: 'SLUICE_WAL_CUT' });
}
