import { defineConfig } from 'vitest/config';

// `npm run test:browser`: the dashboard in a real headless Chromium (Debian's package, installed
// by scripts/install-browser.sh). Not part of `npm test`; CI runs it (.ci/run).
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
