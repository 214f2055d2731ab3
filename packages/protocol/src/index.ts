export * from './errors.js';
export * from './control-block.js';
export * from './messages.js';
