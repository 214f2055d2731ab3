// The row codec every key-value peer (lmdb, classic-level, rocksdb-native) uses, so they all pay
// the same, cheap serialization cost: key = id as 8 bytes big-endian (sorts numerically);
// value = ts f64 | value f64 | u16 tag length | tag | u16 payload length | payload (LE, utf8).
import { Buffer } from 'node:buffer';

export function encodeKey(id) {
  const k = Buffer.allocUnsafe(8);
  k.writeUInt32BE(Math.floor(id / 4294967296), 0);
  k.writeUInt32BE(id >>> 0, 4);
  return k;
}

export function encodeRow(r) {
  const tagLen = Buffer.byteLength(r.tag, 'utf8');
  const payloadLen = Buffer.byteLength(r.payload, 'utf8');
  const b = Buffer.allocUnsafe(20 + tagLen + payloadLen);
  b.writeDoubleLE(r.ts, 0);
  b.writeDoubleLE(r.value, 8);
  b.writeUInt16LE(tagLen, 16);
  b.utf8Write(r.tag, 18, tagLen);
  b.writeUInt16LE(payloadLen, 18 + tagLen);
  b.utf8Write(r.payload, 20 + tagLen, payloadLen);
  return b;
}

export function decodeRow(id, buf) {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const tagLen = b.readUInt16LE(16);
  const payloadLen = b.readUInt16LE(18 + tagLen);
  return {
    id,
    ts: b.readDoubleLE(0),
    value: b.readDoubleLE(8),
    tag: b.toString('utf8', 18, 18 + tagLen),
    payload: b.toString('utf8', 20 + tagLen, 20 + tagLen + payloadLen),
  };
}

/** The value column only, for scans. */
export function decodeValue(buf) {
  return Buffer.isBuffer(buf)
    ? buf.readDoubleLE(8)
    : new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getFloat64(8, true);
}
