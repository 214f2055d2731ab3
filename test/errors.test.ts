import { describe, expect, it } from 'vitest';
import { ErrorCode, SluiceError, fromWire, toWire } from '@sluice/protocol';

describe('SluiceError across threads', () => {
  it('keeps code, message, details and cause through the wire form', () => {
    const err = new SluiceError(ErrorCode.INVALID_ROW, 'row 3 column "id": expected int64', {
      details: { row: 3, column: 'id' },
      cause: new SluiceError(ErrorCode.INTERNAL, 'inner'),
    });
    const back = fromWire(structuredClone(toWire(err)));
    expect(back).toBeInstanceOf(SluiceError);
    expect(back.code).toBe('SLUICE_INVALID_ROW');
    expect(back.details).toEqual({ row: 3, column: 'id' });
    expect((back.cause as SluiceError).code).toBe('SLUICE_INTERNAL');
  });

  it('maps system errors to SLUICE_IO and unknown codes to SLUICE_INTERNAL', () => {
    const sys = Object.assign(new Error('no space'), { code: 'ENOSPC' });
    expect(fromWire(toWire(sys)).code).toBe('SLUICE_IO');
    expect(fromWire({ code: 'BOGUS', message: 'x' }).code).toBe('SLUICE_INTERNAL');
    expect(new SluiceError(ErrorCode.BACKPRESSURE, 'x').retryable).toBe(true);
    expect(new SluiceError(ErrorCode.FENCED, 'x').retryable).toBe(false);
  });
});
