// Baseline: append Arrow IPC record batches to one file (an IPC stream), fsync per batch in
// durable mode. No index: point gets are not supported; a scan deduplicates by id (last wins).
import { closeSync, fsync, openSync, readFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { arrowBatch, arrowSchema } from '../data.mjs';

const fsyncAsync = promisify(fsync);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let arrow;

export default {
  name: 'arrow-ipc',
  modes: {
    durable: 'write the IPC message, then fsync, per batch',
    buffered: 'write the IPC message per batch, no fsync',
  },
  arrowInput: true,
  async load() {
    // The workspace's apache-arrow (21), the same library Sluice uses.
    const dir = realpathSync(path.join(ROOT, 'packages/sluice/node_modules/apache-arrow'));
    arrow = await import(pathToFileURL(path.join(dir, 'Arrow.node.mjs')).href);
    const { version } = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    return { version: `apache-arrow ${version}`, arrow };
  },
  async open(dir, { mode }) {
    const file = path.join(dir, 'rows.arrows');
    const schema = arrowSchema(arrow);
    const fd = openSync(file, 'a');
    // A byte sink that writes straight to the file, so each batch is on disk before its fsync.
    class FileSink extends arrow.AsyncByteQueue {
      write(chunk) {
        writeSync(fd, chunk);
      }
    }
    const writer = new arrow.RecordBatchStreamWriter({ autoDestroy: false });
    writer.reset(new FileSink(), schema);
    const durable = mode === 'durable';
    const put = async (batch) => {
      writer.write(batch);
      if (durable) await fsyncAsync(fd);
    };
    return {
      putRows: (rows) => put(arrowBatch(arrow, schema, rows)),
      putArrow: (batch) => put(batch),
      async scanSum() {
        const latest = new Map();
        for (const batch of arrow.RecordBatchReader.from(readFileSync(file))) {
          const ids = batch.getChild('id').data[0].values;
          const values = batch.getChild('value').data[0].values;
          for (let i = 0; i < batch.numRows; i++) latest.set(Number(ids[i]), values[i]);
        }
        let sum = 0;
        for (const v of latest.values()) sum += v;
        return { rows: latest.size, sum };
      },
      async close() {
        closeSync(fd);
      },
    };
  },
};
