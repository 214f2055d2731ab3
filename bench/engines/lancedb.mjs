// LanceDB (@lancedb/lancedb): the table is created by the first batch (`createTable`, an add),
// every later batch is `mergeInsert('id').whenMatchedUpdateAll().whenNotMatchedInsertAll()`.
// LanceDB pins apache-arrow <= 18.1, so its input is built with the "apache-arrow-18" alias.
import { arrowBatch, arrowSchema } from '../data.mjs';
import { dedupeLast, serialize, pkgVersion } from './util.mjs';

let lancedb;
let arrow;

export default {
  name: 'lancedb',
  // strace shows LanceDB never fsyncs (data files, manifests or deletion files): an acknowledged
  // write is only as durable as the page cache, so it is measured in the buffered column.
  modes: {
    buffered: 'createTable (add) for the first batch, then mergeInsert on id per batch (no fsync)',
  },
  unavailableModes: { durable: 'LanceDB does not fsync what it writes (strace: 0 sync calls per batch)' },
  arrowInput: true,
  async load() {
    lancedb = await import('@lancedb/lancedb');
    arrow = await import('apache-arrow-18');
    return { version: pkgVersion('@lancedb/lancedb'), arrow };
  },
  async open(dir) {
    const db = await lancedb.connect(dir);
    const schema = arrowSchema(arrow);
    let table = (await db.tableNames()).includes('t') ? await db.openTable('t') : undefined;
    const write = serialize(async (batch) => {
      const data = new arrow.Table(batch);
      if (!table) table = await db.createTable('t', data);
      else {
        await table.mergeInsert('id').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data);
      }
    });
    return {
      putRows: (rows) => write(arrowBatch(arrow, schema, dedupeLast(rows))),
      // mergeInsert's behaviour on duplicate keys in one input is undefined: such batches go by rows.
      putArrow: (batch, rows) =>
        write(dedupeLast(rows) === rows ? batch : arrowBatch(arrow, schema, dedupeLast(rows))),
      async get(id) {
        if (!table) return undefined;
        const rows = await table.query().where(`id = ${id}`).limit(1).toArray();
        return rows[0];
      },
      async scanSum() {
        if (!table) return { rows: 0, sum: 0 };
        const t = await table.query().select(['value']).toArrow();
        let sum = 0;
        for (const data of t.getChild('value').data) {
          const v = data.values;
          for (let i = 0, n = data.length; i < n; i++) sum += v[i];
        }
        return { rows: t.numRows, sum };
      },
      async close() {
        table?.close();
        db.close();
      },
    };
  },
};
