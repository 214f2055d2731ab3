// The seeded data generator shared by every engine: identical rows, in identical batches, for
// every engine and every repetition. See README.md "Workloads" for the definition.
import { Buffer } from 'node:buffer';

export const SEED = 0x5eed_2025;
export const BATCH_ROWS = 1000;
export const UPSERT_FRACTION = 0.1;
export const TS_BASE = 1_700_000_000_000;

/** The table every engine gets (Sluice's column names and types; peers map them). */
export const SCHEMA = { id: 'int64', ts: 'timestamp', value: 'float64', tag: 'utf8', payload: 'utf8' };

/** Fixed bytes per row counted in "input bytes": id (8) + ts (8) + value (8). */
export const FIXED_ROW_BYTES = 24;

const ALPHABET = Buffer.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_', 'latin1');

/** xorshift128+ style 32-bit generator with a splitmix32 seed expansion: fast and reproducible. */
export function prng(seed) {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split() | 1;
  let b = split() | 1;
  let c = split() | 1;
  let d = split() | 1;
  const u32 = () => {
    // xoshiro128**
    const r = Math.imul(rotl(Math.imul(b, 5), 7), 9) >>> 0;
    const t = b << 9;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return r;
  };
  return {
    u32,
    /** Uniform in [0, 1) with 53 random bits. */
    float() {
      return ((u32() >>> 5) * 67108864 + (u32() >>> 6)) / 9007199254740992;
    },
    /** Uniform integer in [lo, hi]. */
    int(lo, hi) {
      return lo + Math.floor(((u32() >>> 0) / 4294967296) * (hi - lo + 1));
    },
  };
}

function rotl(x, k) {
  return (x << k) | (x >>> (32 - k));
}

/**
 * Generates the dataset up front (before any clock starts), as batches of plain JS objects:
 * `{ id: number, ts: number, value: number, tag: string, payload: string }`.
 *
 * - ids: fresh ids are 1, 2, 3, ... in order; each row is, with probability 10 %, an upsert of a
 *   uniformly chosen earlier id instead (the first row is always fresh).
 * - ts: TS_BASE + row index (epoch milliseconds); value: uniform float64 in [0, 1000).
 * - tag: 8-24 ASCII chars (uniform length); payload: 56-72 ASCII chars (uniform, mean 64).
 *
 * Also returns what the checks need: the latest value of every id (single-producer order),
 * the number of distinct ids and the input size in bytes (README "MB/s").
 */
export function makeDataset({ rows, batchRows = BATCH_ROWS, seed = SEED }) {
  const rand = prng(seed);
  const scratch = Buffer.allocUnsafe(128);
  const text = (len) => {
    for (let i = 0; i < len; i += 5) {
      const r = rand.u32();
      scratch[i] = ALPHABET[r & 63];
      scratch[i + 1] = ALPHABET[(r >>> 6) & 63];
      scratch[i + 2] = ALPHABET[(r >>> 12) & 63];
      scratch[i + 3] = ALPHABET[(r >>> 18) & 63];
      scratch[i + 4] = ALPHABET[(r >>> 24) & 63];
    }
    return scratch.toString('latin1', 0, len);
  };
  const latestValue = new Float64Array(rows + 1).fill(NaN);
  const batches = [];
  let nextId = 1;
  let inputBytes = 0;
  let upserts = 0;
  let index = 0;
  while (index < rows) {
    const n = Math.min(batchRows, rows - index);
    const batch = new Array(n);
    for (let i = 0; i < n; i++, index++) {
      let id;
      if (nextId > 2 && rand.float() < UPSERT_FRACTION) {
        id = rand.int(1, nextId - 1);
        upserts++;
      } else {
        id = nextId++;
      }
      const value = rand.float() * 1000;
      const tag = text(rand.int(8, 24));
      const payload = text(rand.int(56, 72));
      batch[i] = { id, ts: TS_BASE + index, value, tag, payload };
      latestValue[id] = value;
      inputBytes += FIXED_ROW_BYTES + tag.length + payload.length;
    }
    batches.push(batch);
  }
  const maxId = nextId - 1;
  let expectedSum = 0;
  for (let id = 1; id <= maxId; id++) expectedSum += latestValue[id];
  return {
    batches,
    rows,
    batchRows,
    maxId,
    distinctIds: maxId,
    upserts,
    inputBytes,
    latestValue,
    expectedSum,
  };
}

/**
 * The same batches as Arrow RecordBatches, built column-wise with the given apache-arrow module
 * (Sluice and the IPC baseline use the workspace's apache-arrow 21, LanceDB its pinned 18.1):
 * id Int64, ts Timestamp(ms), value Float64, tag Utf8, payload Utf8.
 */
export function toArrowBatches(arrow, dataset) {
  const schema = arrowSchema(arrow);
  return dataset.batches.map((rows) => arrowBatch(arrow, schema, rows));
}

export function arrowSchema(arrow) {
  return new arrow.Schema([
    new arrow.Field('id', new arrow.Int64(), false),
    new arrow.Field('ts', new arrow.TimestampMillisecond(), false),
    new arrow.Field('value', new arrow.Float64(), false),
    new arrow.Field('tag', new arrow.Utf8(), false),
    new arrow.Field('payload', new arrow.Utf8(), false),
  ]);
}

export function arrowBatch(arrow, schema, rows) {
  const n = rows.length;
  const id = new BigInt64Array(n);
  const ts = new BigInt64Array(n);
  const value = new Float64Array(n);
  let tagBytes = 0;
  let payloadBytes = 0;
  for (let i = 0; i < n; i++) {
    tagBytes += rows[i].tag.length;
    payloadBytes += rows[i].payload.length;
  }
  const tagOffsets = new Int32Array(n + 1);
  const payloadOffsets = new Int32Array(n + 1);
  const tagData = Buffer.allocUnsafe(tagBytes);
  const payloadData = Buffer.allocUnsafe(payloadBytes);
  let to = 0;
  let po = 0;
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    id[i] = BigInt(r.id);
    ts[i] = BigInt(r.ts);
    value[i] = r.value;
    to += tagData.latin1Write(r.tag, to);
    tagOffsets[i + 1] = to;
    po += payloadData.latin1Write(r.payload, po);
    payloadOffsets[i + 1] = po;
  }
  const u8 = (b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  const fields = schema.fields;
  const children = [
    arrow.makeData({ type: fields[0].type, length: n, data: id }),
    arrow.makeData({ type: fields[1].type, length: n, data: ts }),
    arrow.makeData({ type: fields[2].type, length: n, data: value }),
    arrow.makeData({ type: fields[3].type, length: n, valueOffsets: tagOffsets, data: u8(tagData) }),
    arrow.makeData({ type: fields[4].type, length: n, valueOffsets: payloadOffsets, data: u8(payloadData) }),
  ];
  const struct = arrow.makeData({ type: new arrow.Struct(fields), length: n, children });
  return new arrow.RecordBatch(schema, struct);
}

/** Ids for W2's point gets: uniform over the ingested id range, from their own seed. */
export function getIds(count, maxId, seed = SEED ^ 0x6e7) {
  const rand = prng(seed);
  const ids = new Float64Array(count);
  for (let i = 0; i < count; i++) ids[i] = rand.int(1, maxId);
  return ids;
}
