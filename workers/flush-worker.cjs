// Piscina entry for flush tasks. Piscina loads task files with require() first; on Node 20,
// require() of an ES module can abort the process when a worker is terminated while the module
// graph is still loading. This CommonJS shim loads the ES module with import() instead.
/* eslint-env node */
/* global module */
'use strict';
let flush;
module.exports = async function runFlush(task) {
  flush ??= (await import('./dist/flush-worker.js')).default;
  return flush(task);
};
