import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Stress tests run on their own: `npm run test:stress` (vitest.stress.config.ts).
    // The packaged-install test runs on its own too: `npm run test:package` (vitest.package.config.ts).
    exclude: ['test/stress/**', 'test/package/**', 'test/browser/**', 'node_modules/**'],
    // Tests start real coordinators and train real tensors; the machines have 2 cores.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
