/**
 * Chooses the TensorFlow.js backend once per process.
 *
 * Order of preference: `tensorflow` (native libtensorflow through the optional
 * `@tensorflow/tfjs-node`), then `wasm` (XNNPACK + SIMD, the .wasm files ship inside
 * `@tensorflow/tfjs-backend-wasm`, so nothing is fetched), then pure-JS `cpu`.
 * `FEDTL_BACKEND` or an explicit `prefer` pins one; if the pinned one cannot load that is an error,
 * not a silent fallback, because a user who asked for a backend wants to know.
 *
 * tfjs-node is loaded with a dynamic import by name: it is optional, and most machines here
 * cannot install its native library.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { registerWasmGradientKernels } from './wasm-kernels/index.ts';

export const BACKEND_NAMES = ['tensorflow', 'wasm', 'cpu'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendChoice {
  /** The backend that runs. */
  name: BackendName;
  /** Why each better backend was not used, in order of preference. */
  skipped: Array<{ name: BackendName; reason: string }>;
}

export interface SelectBackendOptions {
  /** Pin one backend. @default process.env.FEDTL_BACKEND, else the best that loads */
  prefer?: BackendName | undefined;
  /** Log the choice. @default true */
  log?: boolean;
}

let chosen: Promise<BackendChoice> | undefined;

export function isBackendName(value: unknown): value is BackendName {
  return typeof value === 'string' && (BACKEND_NAMES as readonly string[]).includes(value);
}

async function tryTensorflow(): Promise<void> {
  const moduleName = '@tensorflow/tfjs-node';
  await import(moduleName);
  if (!(await tf.setBackend('tensorflow'))) throw new Error('tfjs-node loaded but the tensorflow backend did not initialise');
}

async function tryWasm(): Promise<void> {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const require = createRequire(import.meta.url);
  const distDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + path.sep;
  // Local files only: without this the backend would try to fetch the .wasm from a CDN.
  wasm.setWasmPaths(distDir);
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
  // tfjs-backend-wasm lacks the convolution and embedding gradient kernels; fedtl supplies them.
  registerWasmGradientKernels();
}

async function tryCpu(): Promise<void> {
  if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
}

const LOADERS: Record<BackendName, () => Promise<void>> = { tensorflow: tryTensorflow, wasm: tryWasm, cpu: tryCpu };

/** One short hint per backend that did not load: what it would give and how to get it, not a stack of reasons. */
function skipHint(skipped: { name: BackendName; reason: string }): string {
  if (skipped.name === 'tensorflow' && /Cannot find (package|module)/.test(skipped.reason)) {
    return 'the faster native backend needs the optional @tensorflow/tfjs-node (see README, Backends)';
  }
  return `${skipped.name} did not load (FEDTL_LOG=debug shows why)`;
}

function shortReason(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!.slice(0, 160);
}

/** The backend asked for by `prefer` or FEDTL_BACKEND, if any; an invalid env value is an error. */
function requestedBackend(options: SelectBackendOptions): BackendName | undefined {
  const fromEnv = process.env['FEDTL_BACKEND'];
  if (fromEnv !== undefined && fromEnv !== '' && !isBackendName(fromEnv)) {
    throw new FedtlError('BACKEND', `FEDTL_BACKEND="${fromEnv}" is not a backend; use one of ${BACKEND_NAMES.join(', ')}`);
  }
  return options.prefer ?? (isBackendName(fromEnv) ? fromEnv : undefined);
}

async function choose(options: SelectBackendOptions): Promise<BackendChoice> {
  const prefer = requestedBackend(options);
  const log = createLogger('backend');
  // Production mode skips tfjs's debug checks and its "install tfjs-node" banner (the choice and
  // the reason are logged below instead).
  tf.enableProdMode();
  if (prefer) {
    try {
      await LOADERS[prefer]();
    } catch (error) {
      throw new FedtlError('BACKEND', `backend "${prefer}" was requested but could not load: ${shortReason(error)}`, { cause: error });
    }
    if (options.log !== false) log.info(`backend: ${prefer} (requested)`);
    return { name: prefer, skipped: [] };
  }
  const skipped: BackendChoice['skipped'] = [];
  for (const name of BACKEND_NAMES) {
    try {
      await LOADERS[name]();
      if (options.log !== false) {
        log.info(`backend: ${name}${skipped.length > 0 ? ` — ${skipped.map(skipHint).join('; ')}` : ''}`);
        // The full reasons stay available for whoever needs them.
        for (const s of skipped) log.debug(`backend ${s.name} not used: ${s.reason}`);
      }
      return { name, skipped };
    } catch (error) {
      skipped.push({ name, reason: shortReason(error) });
    }
  }
  throw new FedtlError('BACKEND', `no TensorFlow.js backend could load: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

/**
 * Selects and initialises the backend. Idempotent per process: later calls return the first choice
 * unless `prefer` (or FEDTL_BACKEND) names a different backend, which switches to it.
 */
export async function selectBackend(options: SelectBackendOptions = {}): Promise<BackendChoice> {
  const requested = requestedBackend(options);
  if (chosen && (requested === undefined || (await chosen).name === requested)) return chosen;
  chosen = choose(options);
  try {
    return await chosen;
  } catch (error) {
    chosen = undefined;
    throw error;
  }
}
