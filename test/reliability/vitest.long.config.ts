import { defineConfig } from 'vitest/config';

/** The long modes (test/reliability/long.mjs): one file at a time, no time limit, live output. */
export default defineConfig({
  test: {
    include: ['test/reliability/long/*.long.ts'],
    testTimeout: 24 * 3600_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 1,
    disableConsoleIntercept: true,
  },
});
