import { describe, expect, it } from 'vitest';
import { CB_LOCK, CB_MAX_FROZEN, CB_SEQ, ErrorCode, isSluiceError } from '@sluice/protocol';
import {
  allocateControlBlock,
  publishShardState,
  readControl,
  releaseDeadWriter,
  retireFrozen,
} from '../src/control.js';

function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return isSluiceError(e) ? e.code : e;
  }
  return undefined;
}

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

  it('a write refused by its own checks changes nothing and leaves the block readable', () => {
    const cb = allocateControlBlock();
    publishShardState(
      cb,
      [
        { gen: 3, rows: 10 },
        { gen: 4, rows: 11 },
      ],
      5,
      2,
    );
    const seq = Atomics.load(cb, CB_SEQ);
    const before = readControl(cb);
    // Retiring a generation that is not the oldest frozen one is refused...
    expect(codeOf(() => retireFrozen(cb, 4, 9))).toBe(ErrorCode.INTERNAL);
    // ...and so is a publish that would overflow the frozen list, even partly.
    const many = Array.from({ length: CB_MAX_FROZEN - 1 }, (_, i) => ({ gen: 10 + i, rows: 1 }));
    expect(codeOf(() => publishShardState(cb, many, 99, 1))).toBe(ErrorCode.INTERNAL);
    // Neither left the sequence odd or the lock taken, nor stored anything.
    expect(Atomics.load(cb, CB_SEQ) % 2).toBe(0);
    expect(Atomics.load(cb, CB_SEQ)).toBe(seq + 4);
    expect(Atomics.load(cb, CB_LOCK)).toBe(0);
    expect(readControl(cb)).toEqual(before);
    retireFrozen(cb, 3, 9);
    expect(readControl(cb)).toEqual({
      activeGen: 5,
      activeRows: 2,
      frozen: [{ gen: 4, rows: 11 }],
      manifestVersion: 9,
    });
  });
});
