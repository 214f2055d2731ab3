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
  /** The reader, once loaded. */
  reader: GenerationReader | undefined;
  /** Recency stamp: the cache's clock at the last get. */
  used: number;
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
  /**
   * Store root → file → slot. The root names the store: two Storage objects over one
   * directory share cached files. Two lookups by strings the caller already holds (their
   * hashes are cached) instead of building a key per get, which a point lookup would pay.
   */
  readonly #slots = new Map<string, Map<string, Slot>>();
  #bytes = 0;
  #clock = 0;
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
    let files = this.#slots.get(storage.root);
    const hit = files?.get(entry.file);
    if (hit !== undefined) {
      hit.used = ++this.#clock;
      this.#hits++;
      return hit.promise;
    }
    this.#misses++;
    const slot: Slot = {
      promise: GenerationReader.open(storage, entry, schema),
      bytes: entry.bytes,
      settled: false,
      reader: undefined,
      used: ++this.#clock,
    };
    if (files === undefined) {
      files = new Map();
      this.#slots.set(storage.root, files);
    }
    files.set(entry.file, slot);
    this.#bytes += slot.bytes;
    const root = storage.root;
    slot.promise.then(
      (reader) => {
        slot.settled = true;
        slot.reader = reader;
        this.#trim();
      },
      () => this.#remove(root, entry.file, slot),
    );
    return slot.promise;
  }

  /**
   * The file's reader if it is loaded already, without waiting (counted as a hit); undefined
   * if it is not cached or still loading (then `get` it).
   */
  peek(storage: Storage, entry: GenerationEntry): GenerationReader | undefined {
    const slot = this.#slots.get(storage.root)?.get(entry.file);
    if (slot?.reader === undefined) return undefined;
    slot.used = ++this.#clock;
    this.#hits++;
    return slot.reader;
  }

  /** Drops a file's reader (callers holding it keep a working reader). */
  delete(storage: Storage, file: string): void {
    const slot = this.#slots.get(storage.root)?.get(file);
    if (slot !== undefined) this.#remove(storage.root, file, slot);
  }

  get stats(): GenerationCacheStats {
    return {
      entries: [...this.#slots.values()].reduce((n, files) => n + files.size, 0),
      bytes: this.#bytes,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
    };
  }

  clear(): void {
    for (const [root, files] of [...this.#slots]) {
      for (const [file, slot] of [...files]) this.#remove(root, file, slot);
    }
  }

  #remove(root: string, file: string, slot: Slot): void {
    // The slot may have been replaced (deleted, then loaded again) while its load ran.
    const files = this.#slots.get(root);
    if (files?.get(file) !== slot) return;
    files.delete(file);
    if (files.size === 0) this.#slots.delete(root);
    this.#bytes -= slot.bytes;
  }

  /** Evicts least recently used settled readers until the bytes fit (a scan per eviction: few files). */
  #trim(): void {
    while (this.#bytes > this.#maxBytes) {
      let victim: { root: string; file: string; slot: Slot } | undefined;
      for (const [root, files] of this.#slots) {
        for (const [file, slot] of files) {
          if (slot.settled && (victim === undefined || slot.used < victim.slot.used))
            victim = { root, file, slot };
        }
      }
      if (victim === undefined) return;
      this.#remove(victim.root, victim.file, victim.slot);
      this.#evictions++;
    }
  }
}
