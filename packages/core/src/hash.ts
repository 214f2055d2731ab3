/**
 * Key hashing. One 32-bit hash per primary key, computed from the key's canonical bytes so
 * every thread gets the same value: int64 keys hash their two 32-bit halves, utf8 keys hash
 * their UTF-8 bytes. The shard is chosen from the HIGH bits (multiply-shift) and memtable
 * indexes probe with the LOW bits, so keys that share a shard still spread over its index.
 * Equality is always decided on the exact key, never on the hash.
 */

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function hashInt64Parts(lo: number, hi: number): number {
  return fmix((Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi ^ 0x7f4a7c15, 0x85ebca77)) + hi);
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

export function hashUtf8Bytes(bytes: Uint8Array, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, FNV_PRIME);
  return fmix(h ^ (end - start));
}

/** Hash of the UTF-8 encoding of `s`, without materialising the bytes. */
export function hashUtf8String(s: string): number {
  let h = FNV_OFFSET;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      n += 1;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else c = 0xfffd;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd; // lone surrogate: TextEncoder writes U+FFFD, so hash what is stored
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 63)), FNV_PRIME);
      n += 2;
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 63)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 63)), FNV_PRIME);
      n += 3;
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 63)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 63)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | (c & 63)), FNV_PRIME);
      n += 4;
    }
  }
  return fmix(h ^ n);
}

/** Shard of a key hash: multiply-shift on the full 32 bits (uses the high bits). */
export function shardOfHash(hash: number, shards: number): number {
  return Math.floor(((hash >>> 0) * shards) / 4294967296);
}

const TWO32 = 4294967296;

/** Splits an int64 given as a JS number (safe integer) into little-endian 32-bit halves. */
export function int64PartsOfNumber(n: number, out: Int32Array, at: number): void {
  const hi = Math.floor(n / TWO32);
  out[at] = n - hi * TWO32; // stored as int32 bit pattern
  out[at + 1] = hi;
}
