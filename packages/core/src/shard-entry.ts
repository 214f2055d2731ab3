/**
 * What a shard worker thread needs, and nothing that loads apache-arrow: a shard writes its
 * WAL and memtables, never Arrow, and every shard start would otherwise pay for parsing it.
 */
export { ShardEngine } from './shard/shard-engine.js';
export type { ShardHost } from './shard/shard-engine.js';
export { LocalStorage } from './storage/local-storage.js';
export { storageWithFaults } from './storage-factory.js';
