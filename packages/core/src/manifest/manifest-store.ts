import { ErrorCode, SluiceError, isSluiceError } from '@sluice/protocol';
import type { Storage } from '../storage/storage.js';
import { formatSequence, parseSequence } from '../storage/storage.js';
import type { Manifest } from './manifest.js';
import { decodeManifest, encodeManifest } from './manifest.js';

export interface ManifestStoreOptions {
  /** Receives a message when a damaged newest manifest is skipped. Default: process.emitWarning. */
  readonly warn?: (message: string) => void;
}

/** Detail `reason` of the SLUICE_INTERNAL error `commit` throws when a lower epoch took the version first. */
export const PREDECESSOR_COMMIT = 'predecessor-commit';

const MAX_CLAIM_ATTEMPTS = 1000;
const MAX_FENCE_ATTEMPTS = 100;

/**
 * The manifests of one shard, `<shard>/manifest/<version, 20 digits>.json`, and its
 * writer ownership markers, `<shard>/owner/<epoch, 20 digits>`.
 *
 * Every manifest version is written once with put-if-absent and never overwritten, which
 * makes commit a compare-and-swap on the version number. Ownership is a monotonic epoch:
 * a new writer creates the next marker, which fences every lower epoch.
 *
 * @example
 * ```ts
 * const store = new ManifestStore(storage, 'shard-003');
 * const epoch = await store.claimEpoch();
 * let manifest = await store.fence(epoch, emptyManifest(3));
 * manifest = { ...manifest, version: manifest.version + 1, generations: [...] };
 * await store.commit(manifest); // SLUICE_FENCED once a successor has taken over
 * ```
 */
export class ManifestStore {
  readonly #storage: Storage;
  readonly #manifestDir: string;
  readonly #ownerDir: string;
  readonly #warn: (message: string) => void;
  /** Highest version seen on storage, damaged or not: `fence` must commit above it. */
  #highestSeen = 0;

  constructor(storage: Storage, shardPrefix: string, options: ManifestStoreOptions = {}) {
    this.#storage = storage;
    this.#manifestDir = `${shardPrefix}/manifest`;
    this.#ownerDir = `${shardPrefix}/owner`;
    this.#warn = options.warn ?? ((message) => process.emitWarning(message, { code: 'SLUICE_MANIFEST' }));
  }

  /**
   * The newest manifest, or undefined when the shard has none. A damaged newest version
   * is skipped with a warning when the version before it is valid (that older state is
   * still consistent with the WAL, whose segments are only deleted up to the replay cursor
   * the reader sees). Anything else damaged is SLUICE_CORRUPT_MANIFEST.
   */
  async latest(): Promise<Manifest | undefined> {
    const versions = await this.#versions();
    const newest = versions.at(-1);
    if (newest === undefined) return undefined;
    const read = await this.#read(newest);
    if (read instanceof SluiceError) {
      const older = versions.at(-2);
      const fallback = older === undefined ? undefined : await this.#read(older);
      if (fallback === undefined || fallback instanceof SluiceError) throw read;
      this.#warn(`${read.message}; using the previous version ${fallback.version} instead`);
      return fallback;
    }
    return read;
  }

  /**
   * Commits `next` as version `next.version`, which must not exist yet. When it does:
   * - written by a higher writer epoch: SLUICE_FENCED (a successor owns the shard);
   * - byte-identical to `next`: success (a retry of a commit that landed);
   * - damaged: SLUICE_CORRUPT_MANIFEST;
   * - otherwise SLUICE_INTERNAL; `details.reason` is PREDECESSOR_COMMIT when a lower epoch
   *   wrote it (re-read with `latest()` and retry, as `fence` does), 'same-writer' when this
   *   epoch did (a bug).
   */
  async commit(next: Manifest): Promise<void> {
    const bytes = encodeManifest(next);
    const path = this.#path(next.version);
    if (await this.#storage.putIfAbsent(path, bytes)) {
      this.#highestSeen = Math.max(this.#highestSeen, next.version);
      return;
    }
    const existingBytes = await this.#storage.get(path);
    if (existingBytes === undefined) {
      throw new SluiceError(ErrorCode.INTERNAL, `manifest ${path} existed and then vanished during commit`, {
        details: { path, shard: next.shard },
      });
    }
    if (Buffer.from(existingBytes).equals(bytes)) return;
    const existing = decodeManifest(existingBytes, path);
    const details = {
      path,
      shard: next.shard,
      version: next.version,
      epoch: next.writerEpoch,
      existingEpoch: existing.writerEpoch,
    };
    if (existing.writerEpoch > next.writerEpoch) {
      throw new SluiceError(
        ErrorCode.FENCED,
        `shard ${next.shard}: manifest version ${next.version} was committed by writer epoch ` +
          `${existing.writerEpoch}; this writer (epoch ${next.writerEpoch}) is fenced`,
        { details },
      );
    }
    const reason = existing.writerEpoch < next.writerEpoch ? PREDECESSOR_COMMIT : 'same-writer';
    throw new SluiceError(
      ErrorCode.INTERNAL,
      `shard ${next.shard}: manifest version ${next.version} already exists (writer epoch ` +
        `${existing.writerEpoch}, committing epoch ${next.writerEpoch})`,
      { details: { ...details, reason } },
    );
  }

  /**
   * Takes ownership: creates the owner marker one above the highest existing one
   * (put-if-absent, moving up on conflict) and returns its epoch. From then on
   * `isFenced(epoch - 1)` is true for the previous owner.
   */
  async claimEpoch(): Promise<number> {
    let highest = 0;
    for (const name of await this.#storage.list(this.#ownerDir)) {
      const epoch = parseSequence(name, '');
      if (epoch !== undefined) highest = Math.max(highest, epoch);
    }
    for (let epoch = highest + 1, i = 0; i < MAX_CLAIM_ATTEMPTS; epoch++, i++) {
      const marker = new TextEncoder().encode(
        `${JSON.stringify({ epoch, claimedAt: new Date().toISOString() })}\n`,
      );
      if (await this.#storage.putIfAbsent(this.#ownerPath(epoch), marker)) return epoch;
    }
    throw new SluiceError(
      ErrorCode.INTERNAL,
      `could not claim a writer epoch in ${this.#ownerDir} after ${MAX_CLAIM_ATTEMPTS} attempts`,
      { details: { path: this.#ownerDir } },
    );
  }

  /**
   * Whether a successor has claimed the epoch after `epoch`. Synchronous (one stat) so it
   * can run on the acknowledgement path: a fenced writer must not acknowledge writes its
   * successor will not replay.
   */
  isFenced(epoch: number): boolean {
    return this.#storage.sync.exists(this.#ownerPath(epoch + 1));
  }

  /**
   * Completes a takeover after `claimEpoch`: commits the current manifest again, one
   * version up (above any damaged version), under `epoch`. After it, every commit by an
   * older epoch fails with SLUICE_FENCED, because the next version it could write is
   * already taken by this epoch. A shard without a manifest gets `initial` as version 1.
   * Returns the manifest now current.
   */
  async fence(epoch: number, initial: Manifest): Promise<Manifest> {
    for (let attempt = 0; attempt < MAX_FENCE_ATTEMPTS; attempt++) {
      const current = (await this.latest()) ?? { ...initial, version: 0 };
      const next: Manifest = {
        ...current,
        version: Math.max(current.version, this.#highestSeen) + 1,
        writerEpoch: epoch,
      };
      try {
        await this.commit(next);
        return next;
      } catch (err) {
        // An older writer committed between our read and our write: read again.
        if (isSluiceError(err, ErrorCode.INTERNAL) && err.details.reason === PREDECESSOR_COMMIT) continue;
        throw err;
      }
    }
    throw new SluiceError(
      ErrorCode.INTERNAL,
      `could not fence ${this.#manifestDir} after ${MAX_FENCE_ATTEMPTS} attempts`,
    );
  }

  /**
   * Deletes old manifest versions, keeping the newest `keepVersions` files and always the
   * newest valid manifest. Oldest first, so a crash leaves the newest ones in place.
   */
  async prune(keepVersions: number): Promise<void> {
    if (!Number.isInteger(keepVersions) || keepVersions < 1) {
      throw new RangeError('keepVersions must be a positive integer');
    }
    const versions = await this.#versions();
    if (versions.length <= keepVersions) return;
    // Throws on a damaged store: better to keep every file than to delete the last good one.
    const current = await this.latest();
    for (const version of versions.slice(0, versions.length - keepVersions)) {
      if (version !== current?.version) await this.#storage.delete(this.#path(version));
    }
  }

  async #versions(): Promise<number[]> {
    const versions: number[] = [];
    for (const name of await this.#storage.list(this.#manifestDir)) {
      const version = parseSequence(name, '.json');
      if (version !== undefined && version > 0) versions.push(version);
    }
    versions.sort((a, b) => a - b);
    this.#highestSeen = Math.max(this.#highestSeen, versions.at(-1) ?? 0);
    return versions;
  }

  /** The manifest of `version`, or the SLUICE_CORRUPT_MANIFEST error describing why it is unusable. */
  async #read(version: number): Promise<Manifest | SluiceError> {
    const path = this.#path(version);
    const bytes = await this.#storage.get(path);
    if (bytes === undefined) {
      return new SluiceError(ErrorCode.CORRUPT_MANIFEST, `manifest ${path} is listed but missing`, {
        details: { path },
      });
    }
    try {
      const manifest = decodeManifest(bytes, path);
      if (manifest.version !== version) {
        return new SluiceError(
          ErrorCode.CORRUPT_MANIFEST,
          `manifest ${path} is damaged: it holds version ${manifest.version}`,
          { details: { path } },
        );
      }
      return manifest;
    } catch (err) {
      if (isSluiceError(err, ErrorCode.CORRUPT_MANIFEST)) return err;
      throw err;
    }
  }

  #path(version: number): string {
    return `${this.#manifestDir}/${formatSequence(version)}.json`;
  }

  #ownerPath(epoch: number): string {
    return `${this.#ownerDir}/${formatSequence(epoch)}`;
  }
}
