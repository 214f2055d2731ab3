import type { GenerationEntry } from '../manifest/manifest.js';
import type { TableSchema } from '../schema.js';
import type { Storage } from '../storage/storage.js';
import { GenerationReader } from './generation-reader.js';

export interface GenerationCacheOptions {
  /** Budget for the bytes of open generation files (each is held whole in memory). */
  readonly maxBytes: number;
}

export interface GenerationCacheStats {
  readonly entries: number;
  readonly bytes: number;
  readonly hits: number;
  readonly misses: number;
  readonly evictions: number;
}

interface Slot {
  readonly promise: Promise<GenerationReader>;
  readonly bytes: number;
  settled: boolean;
}

/**
 * Open GenerationReaders, least recently used evicted first once their bytes pass
 * `maxBytes`. Concurrent `get`s of one file share one load. A failed load is not kept, so
 * the next `get` tries again (a transient SLUICE_IO must not stick). Loads in flight count
 * against the budget but are never evicted; a file larger than the whole budget is returned
 * to its callers and then dropped.
 *
 * Generation files are immutable, so a cached reader never goes stale; `delete` exists for
 * files that compaction removes, to free their memory early.
 */
export class GenerationCache {
  readonly #maxBytes: number;
  /** Map order is recency order: a hit moves its slot to the end. */
  readonly #slots = new Map<string, Slot>();
  #bytes = 0;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  constructor(options: GenerationCacheOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 0) {
      throw new RangeError(
        `options.maxBytes must be a non-negative integer, got ${String(options.maxBytes)}`,
      );
    }
    this.#maxBytes = options.maxBytes;
  }

  get(storage: Storage, entry: GenerationEntry, schema: TableSchema): Promise<GenerationReader> {
    const key = cacheKey(storage, entry.file);
    const hit = this.#slots.get(key);
    if (hit !== undefined) {
      this.#slots.delete(key);
      this.#slots.set(key, hit);
      this.#hits++;
      return hit.promise;
    }
    this.#misses++;
    const slot: Slot = {
      promise: GenerationReader.open(storage, entry, schema),
      bytes: entry.bytes,
      settled: false,
    };
    this.#slots.set(key, slot);
    this.#bytes += slot.bytes;
    slot.promise.then(
      () => {
        slot.settled = true;
        this.#trim();
      },
      () => this.#remove(key, slot),
    );
    return slot.promise;
  }

  /** Drops a file's reader (callers holding it keep a working reader). */
  delete(storage: Storage, file: string): void {
    const key = cacheKey(storage, file);
    const slot = this.#slots.get(key);
    if (slot !== undefined) this.#remove(key, slot);
  }

  clear(): void {
    for (const [key, slot] of [...this.#slots]) this.#remove(key, slot);
  }

  get stats(): GenerationCacheStats {
    return {
      entries: this.#slots.size,
      bytes: this.#bytes,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
    };
  }

  #remove(key: string, slot: Slot): void {
    // The slot may have been replaced (deleted, then loaded again) while its load ran.
    if (this.#slots.get(key) !== slot) return;
    this.#slots.delete(key);
    this.#bytes -= slot.bytes;
  }

  #trim(): void {
    for (const [key, slot] of this.#slots) {
      if (this.#bytes <= this.#maxBytes) return;
      if (!slot.settled) continue;
      this.#remove(key, slot);
      this.#evictions++;
    }
  }
}

function cacheKey(storage: Storage, file: string): string {
  // The root names the store: two Storage objects over one directory share cached files.
  return `${storage.root}\u0000${file}`;
}
