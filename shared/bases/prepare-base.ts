/**
 * Builds embedded bases into a local cache once, and opens them.
 *
 * A cached base is a directory `<cacheDir>/<key>` (e.g. `.fedtl-cache/mobilenet-v2-96`). It is
 * built in a temporary sibling directory and renamed into place, so a crash or a concurrent
 * process never leaves a half-written base under the final name. Every call re-verifies the
 * cached directory's hashes (a few milliseconds): a corrupt or truncated cache is rebuilt, not
 * trusted.
 */
import { RUNS_FROM_SOURCES, packageRoot } from '../core/package-root.ts';
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FedtlError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { loadBase, readSidecar, SIDECAR_FILE, type BaseSidecar, type LoadBaseOptions, type LoadedBase } from '../model/base-loader.ts';
import { hashFile, hashModelDir, resolveShardPath } from '../model/model-hash.ts';
import { identityBaseHash } from './identity.ts';
import { resolveBase, type BaseVariantOptions } from './registry.ts';

/** Options of {@link prepareBase}. */
export interface PrepareBaseOptions extends BaseVariantOptions {
  /** Cache root. @default process.env.FEDTL_CACHE ?? '<repo>/.fedtl-cache' */
  cacheDir?: string;
  /** Progress and cache decisions go here. @default createLogger('bases') */
  logger?: Logger;
  /** Rebuild even if a valid cached copy exists. @default false */
  rebuild?: boolean;
}

/**
 * The cache root used when none is given: `$FEDTL_CACHE`, else `.fedtl-cache` in the clone (sources),
 * else `.fedtl-cache` in the working directory (an installed package must not write into node_modules).
 */
export function defaultCacheDir(): string {
  const fromEnv = process.env['FEDTL_CACHE'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return path.join(RUNS_FROM_SOURCES ? packageRoot() : process.cwd(), '.fedtl-cache');
}

/**
 * Checks a base directory against its sidecar: model hash, side-file hashes, identity hash.
 *
 * @returns the sidecar when everything matches
 * @throws FedtlError `HASH_MISMATCH`, `CORRUPT_FILE` or `BAD_MODEL` describing the first problem
 */
export async function verifyBaseDir(dir: string): Promise<BaseSidecar> {
  const sidecar = await readSidecar(dir);
  if (!sidecar) throw new FedtlError('CORRUPT_FILE', `${dir} has no ${SIDECAR_FILE}`);
  if (sidecar.hash === undefined) throw new FedtlError('CORRUPT_FILE', `${path.join(dir, SIDECAR_FILE)} records no hash, so the cache cannot be verified`);
  const actual =
    sidecar.kind === 'identity'
      ? identityBaseHash(sidecar.name, sidecar.input.kind === 'tensor' ? sidecar.input.size : -1)
      : await hashModelDir(dir);
  if (actual !== sidecar.hash) throw new FedtlError('HASH_MISMATCH', `model in ${dir} does not match the hash in its ${SIDECAR_FILE}`);
  for (const [file, expected] of Object.entries(sidecar.files ?? {})) {
    if ((await hashFile(resolveShardPath(dir, file))) !== expected) throw new FedtlError('HASH_MISMATCH', `${path.join(dir, file)} does not match the hash in ${SIDECAR_FILE}`);
  }
  return sidecar;
}

async function exists(target: string): Promise<boolean> {
  try {
    await stat(target);
    return true;
  } catch {
    return false;
  }
}

// Concurrent calls in one process share one build instead of racing two.
const inFlight = new Map<string, Promise<string>>();

/**
 * Makes sure the named base is built and valid in the cache and returns its directory.
 * Idempotent: when a verified copy exists this only re-hashes it. A copy that fails verification
 * (bad hash, truncated weights, missing files) is logged and rebuilt.
 *
 * @param name a registered base (`glove-100d`, `mobilenet-v2`, `mobilenet-v2-96`, `identity-784`, …)
 * @example const dir = await prepareBase('mobilenet-v2', { size: 96 });
 */
export async function prepareBase(name: string, options: PrepareBaseOptions = {}): Promise<string> {
  const { recipe } = resolveBase(name, options);
  const root = path.resolve(options.cacheDir ?? defaultCacheDir());
  const dir = path.join(root, recipe.key);
  const running = inFlight.get(dir);
  if (running) return running;
  const job = prepareUncached(dir, root, recipe.key, recipe.build, options);
  inFlight.set(dir, job);
  try {
    return await job;
  } finally {
    inFlight.delete(dir);
  }
}

async function prepareUncached(
  dir: string,
  root: string,
  key: string,
  build: (dir: string, logger: Logger) => Promise<BaseSidecar>,
  options: PrepareBaseOptions,
): Promise<string> {
  const log = options.logger ?? createLogger('bases');
  if (!options.rebuild && (await exists(dir))) {
    try {
      await verifyBaseDir(dir);
      log.debug(`base ${key}: cached at ${dir}`);
      return dir;
    } catch (error) {
      log.warn(`base ${key}: cached copy at ${dir} is invalid (${(error as Error).message}); rebuilding`);
    }
  }
  await mkdir(root, { recursive: true });
  const tmp = path.join(root, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  const started = Date.now();
  log.info(`base ${key}: building into ${dir}`);
  try {
    await build(tmp, log);
    // Verify what was just written before publishing it, so the cache never holds a bad build.
    await verifyBaseDir(tmp);
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(tmp, dir);
    } catch (error) {
      // Another process published the same base between our rm and rename: keep theirs if valid.
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      try {
        await verifyBaseDir(dir);
      } catch {
        await rm(dir, { recursive: true, force: true });
        await rename(tmp, dir);
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  log.info(`base ${key}: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return dir;
}

/** Options of {@link openBase}: where/which variant to prepare, then how to load it. */
export type OpenBaseOptions = PrepareBaseOptions & LoadBaseOptions;

function looksLikePath(nameOrDir: string): boolean {
  return path.isAbsolute(nameOrDir) || nameOrDir.startsWith('.') || nameOrDir.includes('/') || nameOrDir.includes(path.sep);
}

/**
 * Opens a base by registered name (prepared into the cache first) or by directory path.
 * The caller owns the returned base and must `dispose()` it.
 *
 * @example
 * const base = await openBase('glove-100d');
 * const base2 = await openBase('./my-models/resnet', { cutLayer: 'avg_pool' });
 */
export async function openBase(nameOrDir: string, options: OpenBaseOptions = {}): Promise<LoadedBase> {
  const dir = looksLikePath(nameOrDir) ? nameOrDir : await prepareBase(nameOrDir, options);
  return loadBase(dir, options);
}
