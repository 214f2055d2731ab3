/**
 * Piscina task: write one frozen memtable (read straight from its SharedArrayBuffer) as an
 * Arrow IPC generation file. The broker commits the manifest; this task only writes the file.
 * The result is data ({ ok, ... }) because piscina would strip a SluiceError's code.
 */
import {
  LocalStorage,
  Memtable,
  schemaFromJson,
  shardPrefix,
  storageWithFaults,
  writeGeneration,
} from '@sluice/core';
import type { GenerationWritten, Storage } from '@sluice/core';
import { toWire } from '@sluice/protocol';
import type { FlushTask, WireError } from '@sluice/protocol';

export type FlushResult = { ok: true; entry: GenerationWritten } | { ok: false; error: WireError };

/**
 * One storage per (table, fault script) for the life of this pool thread, so a scripted fault
 * ("fail the next 2 generation writes") counts across flush tasks as it would across calls.
 */
const storages = new Map<string, Storage>();
function storageFor(task: FlushTask): Storage {
  const key = `${task.root}\0${JSON.stringify(task.faults ?? null)}`;
  let storage = storages.get(key);
  if (!storage) {
    storage = storageWithFaults(new LocalStorage(task.root), task.faults);
    storages.set(key, storage);
  }
  return storage;
}

export default async function flush(task: FlushTask): Promise<FlushResult> {
  try {
    const schema = schemaFromJson(task.schema as Parameters<typeof schemaFromJson>[0]);
    const storage = storageFor(task);
    const memtable = new Memtable(task.memtable, schema);
    const entry = await writeGeneration(storage, shardPrefix(task.shard), memtable, task.rows, {
      gen: task.gen,
      epoch: task.epoch,
      rowsPerBatch: task.rowsPerBatch,
    });
    return { ok: true, entry };
  } catch (err) {
    return { ok: false, error: toWire(err) };
  }
}
