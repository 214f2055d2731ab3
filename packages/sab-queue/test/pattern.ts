/** Deterministic record contents, so a reader can verify a record from its sequence number alone. */
export function fillRecord(view: Uint8Array, seq: number): void {
  for (let j = 0; j < view.length; j++) view[j] = (seq * 31 + j * 7) & 0xff;
}

export function makeRecord(seq: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  fillRecord(bytes, seq);
  return bytes;
}

/** Index of the first byte that differs from the pattern for `seq`, or -1. */
export function firstMismatch(view: Uint8Array, seq: number): number {
  for (let j = 0; j < view.length; j++) {
    if (view[j] !== ((seq * 31 + j * 7) & 0xff)) return j;
  }
  return -1;
}
