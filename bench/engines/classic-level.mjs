// classic-level: LevelDB through abstract-level. Keys/values through the shared binary codec.
import { decodeRow, decodeValue, encodeKey, encodeRow } from './codec.mjs';
import { pkgVersion } from './util.mjs';

let ClassicLevel;

export default {
  name: 'classic-level',
  modes: {
    durable: 'db.batch(ops, { sync: true }) per batch',
    buffered: 'db.batch(ops, { sync: false }) per batch',
  },
  arrowInput: false,
  async load() {
    ({ ClassicLevel } = await import('classic-level'));
    return { version: pkgVersion('classic-level') };
  },
  async open(dir, { mode }) {
    const db = new ClassicLevel(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    await db.open();
    const sync = mode === 'durable';
    return {
      putRows(rows) {
        const ops = new Array(rows.length);
        for (let i = 0; i < rows.length; i++) {
          const r = rows[i];
          ops[i] = { type: 'put', key: encodeKey(r.id), value: encodeRow(r) };
        }
        return db.batch(ops, { sync });
      },
      async get(id) {
        const v = await db.get(encodeKey(id));
        return v === undefined ? undefined : decodeRow(id, v);
      },
      async scanSum() {
        let rows = 0;
        let sum = 0;
        const it = db.values();
        try {
          for (;;) {
            const vs = await it.nextv(1000);
            if (vs.length === 0) break;
            for (const v of vs) sum += decodeValue(v);
            rows += vs.length;
          }
        } finally {
          await it.close();
        }
        return { rows, sum };
      },
      close: () => db.close(),
    };
  },
};
