export { SabQueue, WARM_BYTES } from './sab-queue.js';
export { SabQueueError, SabQueueErrorCode } from './errors.js';
export { HEADER_BYTES, MAX_CAPACITY, MIN_CAPACITY, RECORD_ALIGN, RECORD_HEADER_BYTES } from './layout.js';
