import { defineConfig } from 'vitest/config';

// `npm run test:package`: packs fedtl, installs the tarball into an empty folder and uses it as a
// user would. Minutes, not seconds (a build and an npm install), so it is not part of `npm test`;
// CI runs it (.ci/run).
export default defineConfig({
  test: {
    include: ['test/package/**/*.test.ts'],
    testTimeout: 900_000,
    hookTimeout: 900_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
