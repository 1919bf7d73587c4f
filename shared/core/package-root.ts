/**
 * Where the fedtl package lives on disk, for the sources (a clone, run through tsx) and for the
 * built JavaScript in `dist/` (an installed package) alike. Files that are not modules — the
 * `bin/fedtl.js` launcher, worker entries, `package.json` — are found from here.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when this code runs from the TypeScript sources, false when from the built `dist/`. */
export const RUNS_FROM_SOURCES = import.meta.url.endsWith('.ts');

/** Extension of fedtl's own modules as they run: `.ts` from sources, `.js` when built. */
export const MODULE_EXTENSION = RUNS_FROM_SOURCES ? '.ts' : '.js';

/** The package root: the directory holding `package.json` and `bin/` (this file is `shared/core/` or `dist/shared/core/` below it). */
export function packageRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return path.resolve(here, RUNS_FROM_SOURCES ? '../..' : '../../..');
}
