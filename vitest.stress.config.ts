import { defineConfig } from 'vitest/config';

/**
 * `npm run test:stress`: load, coordinator crash and flaky-network tests (test/stress). Not part
 * of `npm test`: they take minutes, start child processes and open hundreds of loopback sockets.
 * One file at a time, so each measures the machine alone.
 */
export default defineConfig({
  test: {
    include: ['test/stress/**/*.test.ts'],
    testTimeout: 1_800_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    maxWorkers: 1,
  },
});
