import { describe, expect, it } from 'vitest';
import { CB_LOCK, CB_SEQ, ErrorCode, isSluiceError } from '@sluice/protocol';
import { allocateControlBlock, publishShardState, readControl, releaseDeadWriter } from '../src/control.js';

describe('control block sequence lock', () => {
  it('a writer that died mid-update fails readers with a typed error instead of hanging them', () => {
    const cb = allocateControlBlock();
    publishShardState(cb, [{ gen: 3, rows: 10 }], 4, 7);
    // What a thread terminated inside writeControl leaves behind: the lock taken, the sequence odd.
    Atomics.store(cb, CB_LOCK, 1);
    Atomics.add(cb, CB_SEQ, 1);
    let err: unknown;
    try {
      readControl(cb);
    } catch (e) {
      err = e;
    }
    expect(isSluiceError(err) && err.code).toBe(ErrorCode.SHARD_CRASHED);
    // The broker's repair makes the block readable again, with the state last published whole.
    releaseDeadWriter(cb);
    expect(Atomics.load(cb, CB_LOCK)).toBe(0);
    expect(readControl(cb)).toMatchObject({ activeGen: 4, activeRows: 7, frozen: [{ gen: 3, rows: 10 }] });
  });
});
