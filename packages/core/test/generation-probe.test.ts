import { it } from 'vitest';
import { RecordBatchReader, tableFromArrays, tableToIPC } from 'apache-arrow';
it('probe', () => {
  const bytes = tableToIPC(tableFromArrays({ a: Int32Array.from([1, 2, 3]) }), 'file');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = RecordBatchReader.from(bytes);
  if (!r.isFile()) throw new Error();
  const f = r.open().footer!;
  console.log(bytes.byteLength, dv.getInt32(8, true).toString(16), dv.getInt32(12, true), f.getRecordBatch(0));
});
