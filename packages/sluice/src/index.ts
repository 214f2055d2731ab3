export { open, Db, kInternals } from './db.js';
export type { DbStats, ShardStatsView } from './db.js';
export { attach, AttachedTable } from './attach.js';
export type { TableDescriptor } from './descriptor.js';
export type { OpenOptions } from './options.js';
export type { Row, ScanOptions, ScanResult } from './reader.js';
export { SluiceError, ErrorCode, isSluiceError } from '@sluice/protocol';
export type { Filter } from '@sluice/core';
