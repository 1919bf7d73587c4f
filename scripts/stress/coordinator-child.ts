/**
 * A coordinator in its own process, for the stress tests (test/stress): the load test measures
 * this process's memory alone, and the crash test kills it with SIGKILL and starts it again on the
 * same port and checkpoint directory.
 *
 * Run: `node --import tsx scripts/stress/coordinator-child.ts <config.json>` (see {@link ChildConfig}).
 * The base is the 784-input identity base and the head is the 10-class linear head of the test
 * fixtures, started through `startCoordinator` exactly as `fedtl coordinator` does.
 *
 * Output: one JSON object per line on stdout, each with an `event` field:
 * `listening` {port, resumedRounds}, `round` {record, memory}, `finished` {rounds, memory},
 * `memory` {unadmitted, memory} (with `memoryEveryMs`), `failed` {code, message}. Logs (at the level of FEDTL_LOG) go to stderr so they never mix with
 * the events.
 */
import { readFile } from 'node:fs/promises';
import type { AdmissionLimits } from '../../server/admission.ts';
import { startCoordinator } from '../../server/start-coordinator.ts';
import { createIdentityBase } from '../../shared/bases/identity.ts';
import { toFedtlError } from '../../shared/core/errors.ts';
import type { Logger } from '../../shared/core/log.ts';
import { AllowList } from '../../shared/crypto/allow-list.ts';
import { loadIdentity } from '../../shared/crypto/identity.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import { createStrategy } from '../../shared/strategy/registry.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';

export interface ChildConfig {
  /** Coordinator identity file (0600, written by `saveIdentity`). */
  identityFile: string;
  /** Allow-list file. */
  allowFile: string;
  /** @default 0 (any free port) */
  port?: number;
  rounds: number;
  minClients: number;
  /** @default null (no checkpoints) */
  checkpointDir?: string | null;
  /** @default 60000 */
  roundTimeoutMs?: number;
  /** @default 120000 */
  waitForClientsMs?: number;
  /** Seed of the initial head and of selection. @default 3 */
  seed?: number;
  /** Aggregation strategy by registry name (shared/strategy/registry.ts), with its defaults. @default 'fedavg' */
  strategy?: string;
  /** Log level of the child's stderr logger. @default 'warn' */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Admission-path limits (server/admission.ts). @default the coordinator's defaults */
  admissionLimits?: AdmissionLimits;
  /** Emit a `memory` event (with the unadmitted-connection count) this often, in ms. @default never */
  memoryEveryMs?: number;
}

/** The 10-class linear head over 784 pixels (the test fixtures' DIGIT_HEAD). */
export const STRESS_HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 10 };

export interface MemorySample {
  rssMB: number;
  heapUsedMB: number;
  peakRssMB: number;
  peakHeapUsedMB: number;
}

function emit(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

function stderrLogger(level: NonNullable<ChildConfig['logLevel']>): Logger {
  const order = { debug: 10, info: 20, warn: 30, error: 40 } as const;
  const write = (at: keyof typeof order) => (message: string) => {
    if (order[at] >= order[level]) process.stderr.write(`[child:${at}] ${message}\n`);
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

async function main(): Promise<void> {
  const configFile = process.argv[2];
  if (!configFile) throw new Error('usage: coordinator-child.ts <config.json>');
  const config = JSON.parse(await readFile(configFile, 'utf8')) as ChildConfig;
  const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
  let peakRss = 0;
  let peakHeap = 0;
  const sample = (): MemorySample => {
    const usage = process.memoryUsage();
    peakRss = Math.max(peakRss, usage.rss);
    peakHeap = Math.max(peakHeap, usage.heapUsed);
    return { rssMB: mb(usage.rss), heapUsedMB: mb(usage.heapUsed), peakRssMB: mb(peakRss), peakHeapUsedMB: mb(peakHeap) };
  };
  const sampler = setInterval(sample, 100);
  sampler.unref();

  await selectBackend({ log: false, prefer: 'cpu' });
  const allowList = AllowList.load(config.allowFile);
  const coordinator = await startCoordinator({
    identity: loadIdentity(config.identityFile),
    allowList,
    base: createIdentityBase(784, { name: 'pixels-784' }),
    baseDirectory: null,
    headSpec: STRESS_HEAD,
    strategy: createStrategy(config.strategy ?? 'fedavg', { minClients: config.minClients, learningRate: 0.05 }),
    rounds: config.rounds,
    seed: config.seed ?? 3,
    port: config.port ?? 0,
    logger: stderrLogger(config.logLevel ?? 'warn'),
    ...(config.admissionLimits ? { admissionLimits: config.admissionLimits } : {}),
    loop: {
      roundTimeoutMs: config.roundTimeoutMs ?? 60_000,
      waitForClientsMs: config.waitForClientsMs ?? 120_000,
      federatedEvaluation: false,
      checkpointDir: config.checkpointDir ?? null,
      // Called after the round's checkpoint is on disk.
      onRound: (record) => emit({ event: 'round', record, memory: sample() }),
    },
  });
  emit({ event: 'listening', port: coordinator.port, resumedRounds: coordinator.loop.completedRounds, memory: sample() });
  if (config.memoryEveryMs) {
    setInterval(() => emit({ event: 'memory', unadmitted: coordinator.admissionStats.unadmitted, memory: sample() }), config.memoryEveryMs).unref();
  }
  const history = await coordinator.run();
  emit({ event: 'finished', rounds: history.length, memory: sample() });
  await coordinator.close();
  allowList.close();
}

main().then(
  () => process.exit(0),
  (thrown: unknown) => {
    const error = toFedtlError(thrown);
    emit({ event: 'failed', code: error.code, message: error.message });
    process.exit(1);
  },
);
