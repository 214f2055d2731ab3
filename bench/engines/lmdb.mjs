// lmdb (lmdb-js): a memory-mapped B+tree. Keys/values through the shared binary codec.
import { decodeRow, decodeValue, encodeKey, encodeRow } from './codec.mjs';
import { pkgVersion } from './util.mjs';

let lmdb;

export default {
  name: 'lmdb',
  modes: {
    durable: 'transactionSync per batch: its commit fdatasyncs on the calling thread before the ack',
    buffered: 'async commit: db.put per row, ack when the batch transaction is committed (sync follows)',
  },
  arrowInput: false,
  async load() {
    lmdb = await import('lmdb');
    return { version: pkgVersion('lmdb') };
  },
  async open(dir, { mode }) {
    const db = lmdb.open({ path: dir, keyEncoding: 'binary', encoding: 'binary' });
    return {
      putRows:
        mode === 'durable'
          ? async (rows) => {
              // The commit fdatasyncs on this thread (strace) before transactionSync returns;
              // `flushed` then resolves at once and only makes the intent explicit.
              db.transactionSync(() => {
                for (const r of rows) db.putSync(encodeKey(r.id), encodeRow(r));
              });
              await db.flushed;
            }
          : (rows) => {
              let last;
              for (const r of rows) last = db.put(encodeKey(r.id), encodeRow(r));
              return last;
            },
      async get(id) {
        const v = db.getBinary(encodeKey(id));
        return v === undefined ? undefined : decodeRow(id, v);
      },
      async scanSum() {
        let rows = 0;
        let sum = 0;
        for (const { value } of db.getRange({ values: true })) {
          sum += decodeValue(value);
          rows++;
        }
        return { rows, sum };
      },
      async close() {
        await db.close();
      },
    };
  },
};
