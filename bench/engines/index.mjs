// The engines under test, in table order. Each adapter module exports:
//   { name, modes: {durable?, buffered?}, unavailableModes?, arrowInput, shardable?,
//     load() -> { version, arrow? }, open(dir, { mode, shards, create }) -> handle,
//     attach?(descriptor) -> { putArrow(batch), close() } (in another thread) }
// handle: { putRows(rows), putArrow?(batch, rows), get?(id) -> row | undefined,
//           scanSum() -> { rows, sum }, handle?() -> descriptor, recovery?(), info?(), close() }
export const ENGINES = [
  'sluice',
  'lmdb',
  'classic-level',
  'rocksdb-native',
  'duckdb',
  'lancedb',
  'arrow-ipc',
];

export async function loadAdapter(name) {
  if (!ENGINES.includes(name)) throw new Error(`unknown engine ${name} (known: ${ENGINES.join(', ')})`);
  return (await import(`./${name}.mjs`)).default;
}
