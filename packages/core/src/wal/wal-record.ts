import { constants as bufferConstants } from 'node:buffer';
import { crc32 } from 'node:zlib';

/**
 * On-disk layout of one WAL record: a 24-byte little-endian header, then the payload.
 *
 * | offset | size | field                                           |
 * |--------|------|-------------------------------------------------|
 * | 0      | 4    | magic `WAL_MAGIC`                               |
 * | 4      | 4    | payload length                                  |
 * | 8      | 8    | LSN (u64)                                       |
 * | 16     | 4    | crc32 over LSN bytes + length bytes + payload   |
 * | 20     | 4    | flags, reserved, always 0                       |
 */
export const WAL_HEADER_BYTES = 24;
/** 'SLW1' as bytes on disk: a zero-filled or foreign tail never starts with it. */
export const WAL_MAGIC = 0x31574c53;
export const kMagicField = 0;
export const kLengthField = 4;
export const kLsnField = 8;
export const kCrcField = 16;
export const kFlagsField = 20;
/** The length field is a u32, and one record is one Buffer. */
export const WAL_MAX_PAYLOAD = Math.min(0xffff_ffff, bufferConstants.MAX_LENGTH - WAL_HEADER_BYTES);

const TWO_POW_32 = 0x1_0000_0000;

/**
 * Encodes header + payload into `record`, which holds exactly WAL_HEADER_BYTES +
 * payloadLength bytes. The payload is copied, so the caller may reuse its memory as soon as
 * this returns; the crc is computed over the copy, so it protects exactly the bytes that
 * will be written.
 */
export function encodeRecordInto(
  record: Buffer,
  lsn: number,
  parts: readonly Uint8Array[],
  payloadLength: number,
): Buffer {
  record.writeUInt32LE(WAL_MAGIC, kMagicField);
  record.writeUInt32LE(payloadLength, kLengthField);
  // `>>> 0` keeps the low 32 bits of any safe integer; the division yields the high bits.
  record.writeUInt32LE(lsn >>> 0, kLsnField);
  record.writeUInt32LE(Math.floor(lsn / TWO_POW_32), kLsnField + 4);
  record.writeUInt32LE(0, kFlagsField);
  let at = WAL_HEADER_BYTES;
  for (const part of parts) {
    record.set(part, at);
    at += part.byteLength;
  }
  record.writeUInt32LE(recordCrc(record), kCrcField);
  return record;
}

/** crc32 over LSN bytes, then length bytes, then payload, of a whole record. */
export function recordCrc(record: Uint8Array): number {
  let crc = crc32(record.subarray(kLsnField, kLsnField + 8));
  crc = crc32(record.subarray(kLengthField, kLengthField + 4), crc);
  return crc32(record.subarray(WAL_HEADER_BYTES), crc);
}

export interface RecordHeader {
  readonly magic: number;
  readonly payloadLength: number;
  /** NaN when the stored u64 is beyond the safe-integer range (never written by Sluice). */
  readonly lsn: number;
  readonly crc: number;
  readonly flags: number;
}

export function readHeader(bytes: Uint8Array): RecordHeader {
  const view = new DataView(bytes.buffer, bytes.byteOffset, WAL_HEADER_BYTES);
  const lo = view.getUint32(kLsnField, true);
  const hi = view.getUint32(kLsnField + 4, true);
  const lsn = hi * TWO_POW_32 + lo;
  return {
    magic: view.getUint32(kMagicField, true),
    payloadLength: view.getUint32(kLengthField, true),
    lsn: Number.isSafeInteger(lsn) ? lsn : Number.NaN,
    crc: view.getUint32(kCrcField, true),
    flags: view.getUint32(kFlagsField, true),
  };
}
