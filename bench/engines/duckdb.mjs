// DuckDB (@duckdb/node-api): each batch goes through an appender into a TEMP staging table, then
// one autocommit `INSERT OR REPLACE INTO t SELECT * FROM staging` upserts it on the primary key.
// DuckDB has no unsynced-commit mode: every commit writes and syncs its WAL.
import path from 'node:path';
import { dedupeLast, serialize, pkgVersion } from './util.mjs';

let duck;

const COLUMNS = 'id BIGINT, ts TIMESTAMP_MS, value DOUBLE, tag VARCHAR, payload VARCHAR';

export default {
  name: 'duckdb',
  modes: {
    durable: 'appender into a TEMP staging table, then INSERT OR REPLACE on the key (autocommit)',
  },
  unavailableModes: { buffered: 'DuckDB has no commit mode that skips the WAL sync' },
  arrowInput: false,
  async load() {
    duck = await import('@duckdb/node-api');
    return { version: pkgVersion('@duckdb/node-api') };
  },
  async open(dir, { create }) {
    const instance = await duck.DuckDBInstance.create(path.join(dir, 'bench.duckdb'));
    const conn = await duck.DuckDBConnection.create(instance);
    if (create) await conn.run(`CREATE TABLE t (${COLUMNS}, PRIMARY KEY (id))`);
    await conn.run(`CREATE TEMP TABLE staging (${COLUMNS})`);
    const appender = await conn.createAppender('staging', 'main', 'temp');
    const getStmt = await conn.prepare('SELECT id, ts, value, tag, payload FROM t WHERE id = $1');
    // One connection: writes, gets and scans from concurrent callers run one at a time (a
    // streaming result is invalidated by any other query on its connection).
    const queue = serialize((fn) => fn());
    const one =
      (fn) =>
      (...a) =>
        queue(() => fn(...a));
    const putRows = one(async (input) => {
      const rows = dedupeLast(input);
      for (const r of rows) {
        appender.appendBigInt(BigInt(r.id));
        appender.appendTimestampMilliseconds(new duck.DuckDBTimestampMillisecondsValue(BigInt(r.ts)));
        appender.appendDouble(r.value);
        appender.appendVarchar(r.tag);
        appender.appendVarchar(r.payload);
        appender.endRow();
      }
      appender.flushSync();
      await conn.run('INSERT OR REPLACE INTO t SELECT * FROM staging');
      await conn.run('DELETE FROM staging');
    });
    return {
      putRows,
      get: one(async (id) => {
        getStmt.bindBigInt(1, BigInt(id));
        const reader = await getStmt.runAndReadAll();
        const rows = reader.getRowObjects();
        return rows.length === 0 ? undefined : rows[0];
      }),
      scanSum: one(async () => {
        const result = await conn.stream('SELECT value FROM t');
        let rows = 0;
        let sum = 0;
        for (;;) {
          const chunk = await result.fetchChunk();
          if (!chunk || chunk.rowCount === 0) break;
          const v = chunk.getColumnVector(0);
          for (let i = 0, n = v.itemCount; i < n; i++) sum += v.getItem(i);
          rows += chunk.rowCount;
        }
        return { rows, sum };
      }),
      async close() {
        appender.closeSync();
        conn.closeSync();
        instance.closeSync();
      },
    };
  },
};
