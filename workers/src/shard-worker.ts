/**
 * Entry of a shard worker thread: decodes broker messages and hands them to a ShardEngine.
 * Nothing else lives here (the engine is in @sluice/core, free of worker_threads).
 */
import { parentPort } from 'node:worker_threads';
import { LocalStorage, ShardEngine, storageWithFaults } from '@sluice/core/shard';
import type { ShardEvent, ShardRequest } from '@sluice/protocol';

const port = parentPort;
if (!port) throw new Error('shard-worker must run in a worker thread');

let engine: ShardEngine | undefined;
port.on('message', (msg: ShardRequest) => {
  if (msg.kind === 'init' && engine === undefined) {
    const storage = storageWithFaults(new LocalStorage(msg.root), msg.faults);
    engine = new ShardEngine(msg, storage, { post: (event: ShardEvent) => port.postMessage(event) });
    void engine.start();
    return;
  }
  engine?.handle(msg);
});
