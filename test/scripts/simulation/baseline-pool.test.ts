/**
 * The baselines of a fine-tuning run (centralized fine-tuning and feature extraction, local-only,
 * from scratch on pixels and with a CNN) on a real tiny split-class CNN base: run in this thread
 * one after the other, and side by side in a pool of two worker threads, they give the same
 * numbers; a job that fails rejects with its reason and leaves the pool working.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Logger } from '../../../shared/core/log.ts';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import { FeatureCache } from '../../../shared/model/feature-cache.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { baselineJobs, longestFirst, runBaselineJob, type BaselineContext, type BaselineJobResult } from '../../../scripts/simulation/baseline-jobs.ts';
import { BaselinePool } from '../../../scripts/simulation/baseline-pool.ts';
import { clientOrder, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';
import { featuresOf } from '../../../scripts/simulation/simulation-data.ts';
import { buildTinySplitCnn, TINY_CONV, tinyImages } from '../../support/tiny-split-cnn.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const config = resolveConfig('fashion-transfer', {
  classes: null,
  head: { hidden: [4], activation: 'relu', dropout: 0, classes: 2 },
  trainable: {
    stages: [
      { fromRound: 1, groups: [{ select: 'head' }] },
      { fromRound: 2, groups: [{ select: 'head' }, { select: 'top', count: 1, unit: 'layers', lrMultiplier: 1 }] },
    ],
  },
  scratchFeatures: ['pixels', 'cnn'],
  scratchCnn: { conv: TINY_CONV, hidden: [] },
  clients: 3,
  rounds: 3,
  minClients: 2,
  batchSize: 8,
  learningRate: 0.01,
  // Crashes too: the fault draws must not depend on the thread either.
  dropoutRate: 0.2,
  seed: 3,
  centralizedEpochs: 3,
  localOnlyClients: 3,
  // The from-scratch federations of this thread train in it, as in a baseline worker (which starts no training pool of its own).
  trainingWorkers: 0,
  trainExamples: 36,
  testExamples: 24,
});

/** A result without its wall times, the one thing that may differ between threads. */
function numbers(result: BaselineJobResult) {
  const { seconds: _seconds, ...rest } = result;
  if (rest.kind !== 'scratch') return rest;
  return { ...rest, baseline: { ...rest.baseline, rounds: rest.baseline.rounds.map(({ seconds: _s, ...round }) => round) } };
}

let work: string;
let base: LoadedBase;
let context: BaselineContext;
const savedCache = process.env['FEDTL_CACHE'];

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(join(tmpdir(), 'fedtl-baseline-pool-'));
  // The workers' feature caches (simulationCache) go to the temp folder, not the repository's.
  process.env['FEDTL_CACHE'] = join(work, 'cache');
  base = await buildTinySplitCnn(join(work, 'base'));
  const train = tinyImages(36, 'train');
  const test = tinyImages(24, 'test');
  const order = clientOrder([Int32Array.from({ length: 18 }, (_, i) => i), Int32Array.from({ length: 12 }, (_, i) => 18 + i), Int32Array.from({ length: 6 }, (_, i) => 30 + i)]);
  const cache = new FeatureCache({ directory: join(work, 'features') });
  context = {
    config,
    train,
    test,
    order,
    shards: groupByClient(order, await featuresOf(base, train, cache), train.labels),
    testFeatures: await featuresOf(base, test, cache),
    base: async () => base,
    cache,
    log: quiet,
  };
}, 60_000);

afterAll(async () => {
  base?.dispose();
  if (savedCache === undefined) delete process.env['FEDTL_CACHE'];
  else process.env['FEDTL_CACHE'] = savedCache;
  await rm(work, { recursive: true, force: true });
});

describe('baseline jobs', () => {
  it('lists every baseline of a fine-tuning run, and orders the longest first', () => {
    const jobs = baselineJobs(config);
    expect(jobs).toEqual([{ kind: 'centralized-feature-extraction' }, { kind: 'centralized-fine-tuning' }, { kind: 'local-only' }, { kind: 'scratch', features: 'pixels' }, { kind: 'scratch', features: 'cnn' }]);
    expect(longestFirst(jobs).map((job) => (job.kind === 'scratch' ? job.features : job.kind))).toEqual(['cnn', 'centralized-fine-tuning', 'pixels', 'local-only', 'centralized-feature-extraction']);
    expect(baselineJobs({ ...config, trainable: null, baselines: { centralized: true, localOnly: false, scratch: false } })).toEqual([{ kind: 'centralized-feature-extraction' }]);
  });

  it('give the same numbers in two worker threads, side by side, as one after the other in this thread', async () => {
    const jobs = baselineJobs(config);
    const before = tf.memory().numTensors;
    const here: BaselineJobResult[] = [];
    for (const job of jobs) here.push(await runBaselineJob(job, context));
    expect(tf.memory().numTensors).toBe(before);
    // They trained: the fine-tuned and the CNN runs learn the task, and every result is there.
    const byKind = (kind: BaselineJobResult['kind']) => here.filter((result) => result.kind === kind);
    expect(byKind('centralized-fine-tuning')[0]).toMatchObject({ stageEpochs: [1, 2] });
    for (const result of here) if (result.kind === 'centralized-fine-tuning' || result.kind === 'centralized-feature-extraction') expect(result.accuracy).toBeGreaterThan(0.7);
    expect(byKind('scratch')).toHaveLength(2);

    const pool = await BaselinePool.start({ workers: 2, setup: { config, baseDirectory: join(work, 'base'), train: context.train, test: context.test, order: context.order, shards: context.shards, testFeatures: context.testFeatures }, log: quiet });
    try {
      const running = new Map(longestFirst(jobs).map((job) => [job, pool.run(job)]));
      const there = await Promise.all(jobs.map((job) => running.get(job)!));
      expect(there.map(numbers)).toEqual(here.map(numbers));

      // A job that cannot run rejects with its reason; the worker goes on with the next one.
      await expect(pool.run({ kind: 'scratch', features: 'tf-idf' })).rejects.toThrow(/needs text data/);
      expect(numbers(await pool.run({ kind: 'centralized-feature-extraction' }))).toEqual(numbers(here[0]!));
    } finally {
      await pool.close();
    }
    await expect(pool.run({ kind: 'local-only' })).rejects.toThrow(/closed/);
  }, 120_000);

  it('fails the job of a worker that dies, and every queued job once no worker is left, instead of waiting forever', async () => {
    const pool = await BaselinePool.start({
      workers: 1,
      setup: { config, baseDirectory: null, train: context.train, test: context.test, order: context.order, shards: context.shards, testFeatures: context.testFeatures },
      log: quiet,
      workerUrl: new URL('../../support/dying-baseline-worker.ts', import.meta.url),
    });
    try {
      const running = pool.run({ kind: 'local-only' });
      const queued = pool.run({ kind: 'centralized-feature-extraction' });
      await expect(running).rejects.toThrow(/exited with code 3/);
      await expect(queued).rejects.toThrow(/every baseline worker has died/);
      await expect(pool.run({ kind: 'local-only' })).rejects.toThrow(/every baseline worker has died/);
    } finally {
      await pool.close();
    }
  }, 60_000);

  it('averages a from-scratch federation’s global models when the run averages its own (they share the config)', async () => {
    // Prepare: the whole of the one stage (rounds 1–3) averaged
    const averaging = { ...context, config: { ...config, iterateAveraging: { tailFraction: 1 } } };

    // Execute
    const plain = await runBaselineJob({ kind: 'scratch', features: 'pixels' }, context);
    const averaged = await runBaselineJob({ kind: 'scratch', features: 'pixels' }, averaging);

    // Assert: the rounds say how many models each evaluated one averages; without averaging they say nothing
    if (plain.kind !== 'scratch' || averaged.kind !== 'scratch') throw new Error('expected scratch results');
    expect(plain.baseline.rounds.map((round) => round.averagedRounds)).toEqual([undefined, undefined, undefined]);
    expect(averaged.baseline.rounds.map((round) => round.averagedRounds)).toEqual([1, 2, 3]);
    // Round 1 is one model either way: the same accuracy; the training itself is unchanged by averaging.
    expect(averaged.baseline.rounds[0]!.accuracy).toBe(plain.baseline.rounds[0]!.accuracy);
  });

  it('refuses centralized fine-tuning for a run without a trainable schedule', async () => {
    await expect(runBaselineJob({ kind: 'centralized-fine-tuning' }, { ...context, config: { ...config, trainable: null } })).rejects.toThrow(/has none/);
  });
});
