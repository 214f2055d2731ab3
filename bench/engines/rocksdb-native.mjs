// rocksdb-native (Holepunch's librocksdb bindings). Keys/values through the shared binary codec.
// Its write path takes no WriteOptions: every write uses RocksDB's default sync=false (WAL written,
// not fsynced), so there is no durable mode to measure.
import { decodeRow, decodeValue, encodeKey, encodeRow } from './codec.mjs';
import { pkgVersion } from './util.mjs';

let RocksDB;

export default {
  name: 'rocksdb-native',
  modes: {
    buffered: 'write batch per batch, default WriteOptions (WAL written, not fsynced)',
  },
  unavailableModes: {
    durable: 'rocksdb-native exposes no WriteOptions.sync (writes always use sync=false)',
  },
  arrowInput: false,
  async load() {
    RocksDB = (await import('rocksdb-native')).default;
    return { version: pkgVersion('rocksdb-native') };
  },
  async open(dir) {
    const db = new RocksDB(dir);
    await db.ready();
    return {
      async putRows(rows) {
        const w = db.write({ capacity: rows.length });
        for (const r of rows) w.tryPut(encodeKey(r.id), encodeRow(r));
        await w.flush();
        w.destroy();
      },
      async get(id) {
        const v = await db.get(encodeKey(id));
        return v === null || v === undefined ? undefined : decodeRow(id, v);
      },
      async scanSum() {
        let rows = 0;
        let sum = 0;
        for await (const { value } of db.iterator({})) {
          sum += decodeValue(value);
          rows++;
        }
        return { rows, sum };
      },
      close: () => db.close(),
    };
  },
};
