/**
 * A test file's temp folder that also holds every feature cache (FEDTL_CACHE points into it) from
 * its `beforeAll` to its `afterAll`, so the file neither reads nor leaves anything in the
 * repository's cache. The fixtures of the simulation tests build on it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { selectBackend } from '../../shared/tf/select-backend.ts';

/**
 * Registers the hooks: `setup(work)` runs once the folder exists (with the backend selected),
 * `teardown()` before it is removed. `name` names the folder.
 */
export function useTempWork(name: string, setup: (work: string) => Promise<void>, teardown: () => void, timeoutMs: number): void {
  const savedCache = process.env['FEDTL_CACHE'];
  let work = '';
  beforeAll(async () => {
    await selectBackend({ log: false });
    work = await mkdtemp(path.join(os.tmpdir(), `fedtl-${name}-`));
    process.env['FEDTL_CACHE'] = path.join(work, 'cache');
    await setup(work);
  }, timeoutMs);
  afterAll(async () => {
    teardown();
    if (savedCache === undefined) delete process.env['FEDTL_CACHE'];
    else process.env['FEDTL_CACHE'] = savedCache;
    if (work) await rm(work, { recursive: true, force: true });
  });
}
