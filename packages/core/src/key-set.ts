import type { ColumnBuffers } from './columnar.js';
import { keysEqual } from './columnar.js';
import { hashInt64Parts, hashUtf8Bytes } from './hash.js';

/**
 * A set of primary keys seen during a merge, without one JS value per key: open addressing
 * over typed arrays whose entries point back at (source, row), compared by exact key.
 * Scans use it to let the newest source of a key decide it.
 */
export class KeySet {
  readonly #kind: 'i64' | 'utf8';
  readonly #sources: ColumnBuffers[] = [];
  #hashes: Uint32Array;
  #src: Int32Array; // source index + 1; 0 = empty
  #row: Int32Array;
  #size = 0;
  #mask: number;

  constructor(kind: 'i64' | 'utf8', expected = 1024) {
    this.#kind = kind;
    let cap = 16;
    while (cap < expected * 2) cap *= 2;
    this.#hashes = new Uint32Array(cap);
    this.#src = new Int32Array(cap);
    this.#row = new Int32Array(cap);
    this.#mask = cap - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Registers a source's key column; returns its index for `add`/`has`. */
  source(keys: ColumnBuffers): number {
    this.#sources.push(keys);
    return this.#sources.length - 1;
  }

  hashOf(source: number, row: number): number {
    const col = this.#sources[source]!;
    const v = col.values as Int32Array;
    return this.#kind === 'i64'
      ? hashInt64Parts(v[2 * row]!, v[2 * row + 1]!)
      : hashUtf8Bytes(col.data!, v[row]!, v[row + 1]!);
  }

  /** Adds the key at (source, row); false when an equal key was already present. */
  add(source: number, row: number, hash = this.hashOf(source, row)): boolean {
    if (this.#size * 2 >= this.#mask) this.#grow();
    const col = this.#sources[source]!;
    const h = hash >>> 0;
    for (let slot = h & this.#mask; ; slot = (slot + 1) & this.#mask) {
      const s = this.#src[slot]!;
      if (s === 0) {
        this.#src[slot] = source + 1;
        this.#row[slot] = row;
        this.#hashes[slot] = h;
        this.#size++;
        return true;
      }
      if (
        this.#hashes[slot] === h &&
        keysEqual(this.#kind, this.#sources[s - 1]!, this.#row[slot]!, col, row)
      ) {
        return false;
      }
    }
  }

  /** Whether an equal key is present (no insertion). */
  has(source: number, row: number, hash = this.hashOf(source, row)): boolean {
    const col = this.#sources[source]!;
    const h = hash >>> 0;
    for (let slot = h & this.#mask; ; slot = (slot + 1) & this.#mask) {
      const s = this.#src[slot]!;
      if (s === 0) return false;
      if (
        this.#hashes[slot] === h &&
        keysEqual(this.#kind, this.#sources[s - 1]!, this.#row[slot]!, col, row)
      ) {
        return true;
      }
    }
  }

  #grow(): void {
    const hashes = this.#hashes;
    const src = this.#src;
    const row = this.#row;
    const cap = hashes.length * 2;
    this.#hashes = new Uint32Array(cap);
    this.#src = new Int32Array(cap);
    this.#row = new Int32Array(cap);
    this.#mask = cap - 1;
    for (let i = 0; i < hashes.length; i++) {
      if (src[i] === 0) continue;
      let slot = hashes[i]! & this.#mask;
      while (this.#src[slot] !== 0) slot = (slot + 1) & this.#mask;
      this.#src[slot] = src[i]!;
      this.#row[slot] = row[i]!;
      this.#hashes[slot] = hashes[i]!;
    }
  }
}
