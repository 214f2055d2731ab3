/**
 * Codes thrown by SabQueue. The strings equal the matching codes of the Sluice error registry
 * (@sluice/protocol), so a caller can rethrow them as a SluiceError without a lookup table; this
 * package stays free of dependencies and therefore spells them out here.
 */
export const SabQueueErrorCode = {
  /** A push (tryReserve, tryPush, commit) ran after close(). */
  CLOSED: 'SLUICE_CLOSED',
  /**
   * The queue was used against its contract: commit() without a reservation, release() on an empty
   * queue, or records out of sequence (two instances producing or consuming at once).
   */
  INTERNAL: 'SLUICE_INTERNAL',
} as const;

export type SabQueueErrorCode = (typeof SabQueueErrorCode)[keyof typeof SabQueueErrorCode];

export class SabQueueError extends Error {
  override readonly name = 'SabQueueError';
  readonly code: SabQueueErrorCode;

  constructor(code: SabQueueErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}
