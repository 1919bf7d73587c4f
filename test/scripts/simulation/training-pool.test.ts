/**
 * Virtual clients trained by a pool of worker threads (scripts/simulation/training-pool.ts): the
 * same seed gives bit-identical global weights and the same faults in the main thread and in a pool,
 * for heads and for fine-tuning rounds (trainable base layers) alike.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { createIdentityBase } from '../../../shared/bases/identity.ts';
import type { Logger } from '../../../shared/core/log.ts';
import { partition } from '../../../shared/math/partition.ts';
import { createRandom } from '../../../shared/math/random.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { clientOrder, clientSize, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import { resolveConfig } from '../../../scripts/simulation/presets.ts';
import { fitOrder, startTrainingPool, VirtualFederation } from '../../../scripts/simulation/run-federated.ts';
import { IN_FLIGHT_PER_WORKER, sharedRows, sharedWeights, TrainingPool } from '../../../scripts/simulation/training-pool.ts';
import { baseSkeleton } from '../../../scripts/simulation/base-skeleton.ts';
import { ModelSchedule } from '../../../shared/model/model-schedule.ts';
import { trainableScheduleFromConfig } from '../../../shared/model/trainable-set.ts';
import { LocalTrainer } from '../../../client/local-trainer.ts';
import { buildHead, getHeadWeights, type HeadSpec } from '../../../shared/model/head.ts';
import { initialModelWeights } from '../../../shared/model/fine-tune-model.ts';
import { featuresOf, simulationCache } from '../../../scripts/simulation/simulation-data.ts';
import { tinyImages, useTinySplitCnn } from '../../support/tiny-split-cnn.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

describe('training pool', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  /**
   * 12 clients of a 3-class, 16-feature problem split by a Dirichlet(0.5) draw (sizes differ, so
   * the longest-first order differs from the selection order), a hidden layer, 3 rounds, a third
   * of the clients crash at random.
   */
  async function run(workers: number, logitAdjustment?: number) {
    const random = createRandom('pool');
    const rows = 360;
    const values = new Float32Array(rows * 16).map(() => random.normal());
    const labels = Int32Array.from({ length: rows }, (_, i) => i % 3);
    for (let i = 0; i < rows; i++) values[i * 16 + labels[i]!]! += 2;
    const config = resolveConfig('imdb-glove', {
      head: { hidden: [8], activation: 'relu', dropout: 0, classes: 3 },
      clients: 12, rounds: 3, fractionFit: 0.75, minClients: 2, trainExamples: rows, testExamples: 60,
      epochs: 2, batchSize: 7, learningRate: 0.05, optimizer: 'sgd', mode: 'virtual', dropoutRate: 0.3, stragglerRate: 0, trainingWorkers: workers,
      ...(logitAdjustment !== undefined ? { logitAdjustment } : {}),
    });
    const shards = groupByClient(clientOrder(partition(labels, { scheme: 'dirichlet', numClients: 12, seed: 4, numClasses: 3, alpha: 0.5 })), { values, rows, cols: 16 }, labels);
    const base = createIdentityBase(16);
    const pool = workers > 0 ? await startTrainingPool({ config, base }, shards, workers) : null;
    const federation = new VirtualFederation({
      config, base, baseDirectory: null, shards, pool,
      testFeatures: { values: values.subarray(0, 60 * 16), rows: 60, cols: 16 },
      testLabels: labels.subarray(0, 60),
      mode: 'virtual', label: 'pool', logger: quiet,
    });
    try {
      const { history, weights } = await federation.run();
      return {
        weights: Array.from(weights),
        participation: history.map((r) => [r.selected, r.accepted, r.dropped]),
        server: history.map((r) => [r.serverLoss, r.serverAccuracy]),
        sizes: Array.from({ length: shards.count }, (_, i) => clientSize(shards, i)),
        updates: federation.updates,
      };
    } finally {
      federation.dispose();
      await pool?.close();
    }
  }

  it('gives the same weights and faults with two workers as in the main thread', async () => {
    const tensorsBefore = tf.memory().numTensors;
    const inThread = await run(0);
    const two = await run(2);

    expect(inThread.participation.some(([, , dropped]) => dropped! > 0)).toBe(true);
    expect(inThread.updates).toBeGreaterThan(0);
    // Clients of different sizes, so the longest-first order is not the selection order.
    expect(Math.max(...inThread.sizes)).toBeGreaterThan(2 * Math.min(...inThread.sizes));
    expect(inThread.server.every(([loss, accuracy]) => Number.isFinite(loss) && Number.isFinite(accuracy))).toBe(true);
    expect(two).toEqual(inThread);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  }, 120_000);

  it('trains every client with its own logit adjustment alike in two workers and in the main thread, and the option changes the model', async () => {
    // The clients' Dirichlet(0.5) label skew is what the adjustment corrects: each client's prior differs.
    const tensorsBefore = tf.memory().numTensors;
    const plain = await run(0);
    const inThread = await run(0, 1);
    const two = await run(2, 1);
    expect(two).toEqual(inThread);
    expect(inThread.participation).toEqual(plain.participation);
    expect(inThread.weights).not.toEqual(plain.weights);
    expect(inThread.server.every(([loss, accuracy]) => Number.isFinite(loss) && Number.isFinite(accuracy))).toBe(true);
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  }, 120_000);

  it('orders a round longest first: optimizer steps, then rows, then the order sent', () => {
    // Prepare: client sizes and two configs; steps = epochs × ⌈rows / batch size⌉.
    const rows = [10, 64, 33, 40, 7, 64];
    const e1 = { config: { epochs: 1, batchSize: 32, learningRate: 0.1, optimizer: 'sgd' as const } };
    const e3 = { config: { ...e1.config, epochs: 3 } };
    const batch = [
      { index: 0, request: e1 }, // 1 step
      { index: 1, request: e1 }, // 2 steps, 64 rows
      { index: 2, request: e1 }, // 2 steps, 33 rows
      { index: 3, request: e1 }, // 2 steps, 40 rows
      { index: 4, request: e3 }, // 3 steps
      { index: 5, request: e1 }, // 2 steps, 64 rows, sent after client 1
    ];
    // Execute
    const order = fitOrder(batch, (i) => rows[i]!).map((b) => b.index);
    // Assert
    expect(order).toEqual([4, 1, 5, 3, 2, 0]);
  });

  it('trains rows jobs bring (socket clients of a simulation) exactly as LocalTrainer does in this thread, queued jobs included', async () => {
    // Prepare: one client's rows, a head and its starting weights.
    const random = createRandom('rows');
    const spec: HeadSpec = { hidden: [8], activation: 'relu', dropout: 0, classes: 3 };
    const labels = Int32Array.from({ length: 90 }, (_, i) => i % 3);
    const rows = { features: { values: new Float32Array(90 * 16).map(() => random.normal()), rows: 90, cols: 16 }, labels };
    const head = buildHead(16, spec, { seed: 5 });
    const start = getHeadWeights(head);
    const trainer = new LocalTrainer(head, start.manifest);
    const config = { epochs: 2, batchSize: 7, learningRate: 0.05, optimizer: 'sgd' as const };
    const pool = await TrainingPool.start({ workers: 1, inputSize: 16, headSpec: spec, manifest: start.manifest });
    try {
      // Execute: more jobs at once than the worker takes in flight, so some wait in the pool's queue.
      const seeds = [11, 12, 13];
      const shared = sharedRows(rows);
      const inWorker = await Promise.all(seeds.map((seed) => pool.fitRows(shared, start.data, config, seed)));
      const inThread = [];
      for (const seed of seeds) inThread.push(await trainer.fit(start.data, rows, config, seed));
      // Assert: each job's delta bit for bit; a job by client index needs the pool's shards.
      expect(seeds.length).toBeGreaterThan(IN_FLIGHT_PER_WORKER);
      expect(inWorker.map((r) => Array.from(r.delta))).toEqual(inThread.map((r) => Array.from(r.delta)));
      expect(new Set(inWorker.map((r) => r.delta[0])).size).toBe(seeds.length);
      expect(inWorker[0]!.exampleCount).toBe(90);
      await expect(pool.fit(0, start.data, config, 11)).rejects.toThrow(/without shards/);
    } finally {
      await pool.close();
      head.dispose();
    }
  }, 60_000);

  it('refuses rows that are not in shared memory, and a pool of no worker', async () => {
    const shards = { count: 1, features: { values: new Float32Array(4), rows: 1, cols: 4 }, labels: new Int32Array(1), offsets: Int32Array.from([0, 1]) };
    const options = { inputSize: 4, headSpec: { hidden: [], activation: 'relu' as const, dropout: 0, classes: 2 }, manifest: { entries: [], parameterCount: 0 } };
    await expect(TrainingPool.start({ ...options, shards })).rejects.toThrow(/SharedArrayBuffers/);
    await expect(TrainingPool.start({ ...options, shards, workers: 0 })).rejects.toThrow(/at least one worker/);
  });
});

/**
 * Fine-tuning virtual clients in the pool: a real tiny split-class CNN base, the trainable set
 * widening from the head to the base's top convolution at round 2, so the features move to a new
 * boundary mid-run. In the main thread, in one worker and in two, the same seed gives the same
 * weights, metrics and faults bit for bit, and no thread keeps tensors from round to round.
 */
describe('training pool, fine-tuning', () => {
  const tiny = useTinySplitCnn('pool-fine-tune');
  const train = tinyImages(60, 'pool-train');
  const test = tinyImages(24, 'pool-test');
  // Four clients of different sizes (longest-first order differs from the selection order).
  const parts = [[0, 24], [24, 36], [36, 44], [44, 60]].map(([from, to]) => Int32Array.from({ length: to! - from! }, (_, i) => from! + i));
  const config = resolveConfig('fashion-transfer', {
    classes: null,
    head: { hidden: [4], activation: 'relu', dropout: 0, classes: 2 },
    trainable: { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, { fromRound: 2, groups: [{ select: 'head' }, { select: 'top', count: 1, unit: 'layers', lrMultiplier: 1 }] }] },
    clients: 4, rounds: 3, fractionFit: 1, minClients: 2, epochs: 1, batchSize: 5, learningRate: 0.02, optimizer: 'sgd',
    dropoutRate: 0.25, stragglerRate: 0, seed: 9, trainExamples: 60, testExamples: 24, mode: 'virtual',
  });

  async function run(workers: number) {
    const base = tiny.base;
    const cache = simulationCache();
    const shards = groupByClient(clientOrder(parts), await featuresOf(base, train, cache), train.labels);
    const testFeatures = await featuresOf(base, test, cache);
    const pool = workers > 0 ? await startTrainingPool({ config, base }, shards, workers) : null;
    const federation = new VirtualFederation({ config: { ...config, trainingWorkers: workers }, base, baseDirectory: base.dir, shards, parts, trainDataset: train, testDataset: test, testFeatures, testLabels: test.labels, pool, mode: 'virtual', label: 'pool-fine-tune', logger: quiet });
    try {
      const mainBefore = tf.memory().numTensors;
      const workersBefore = (await pool?.numTensors()) ?? [];
      const { history, weights } = await federation.run();
      return {
        weights: Array.from(weights),
        participation: history.map((r) => [r.selected, r.accepted, r.dropped]),
        server: history.map((r) => [r.serverLoss, r.serverAccuracy]),
        updates: federation.updates,
        tensors: { main: tf.memory().numTensors - mainBefore, workers: ((await pool?.numTensors()) ?? []).map((count, i) => count - workersBefore[i]!) },
        workerCount: workersBefore.length,
      };
    } finally {
      federation.dispose();
      await pool?.close();
    }
  }

  it('gives bit-identical weights, metrics and faults in the main thread and in pools of one and two workers, tensor counts flat', async () => {
    const initial = initialModelWeights(tiny.base, config.head, config.seed);
    const inThread = await run(0);
    const one = await run(1);
    const two = await run(2);

    // It trained: some clients crashed, others were accepted, and the base's top convolution moved after the widening.
    expect(inThread.participation.some(([, , dropped]) => dropped! > 0)).toBe(true);
    expect(inThread.updates).toBeGreaterThan(0);
    const conv = initial.manifest.entries.filter((entry) => !entry.name.startsWith('head_')).at(-1)!;
    const moved = (weights: number[]) => weights.slice(conv.offset, conv.offset + conv.length).some((value, k) => value !== initial.data[conv.offset + k]);
    expect(moved(inThread.weights)).toBe(true);
    expect(inThread.server.every(([loss, accuracy]) => Number.isFinite(loss) && Number.isFinite(accuracy))).toBe(true);
    // The same numbers whatever the pool size.
    const numbers = ({ tensors: _tensors, workerCount: _count, ...rest }: typeof inThread) => rest;
    expect(numbers(one)).toEqual(numbers(inThread));
    expect(numbers(two)).toEqual(numbers(inThread));
    // No tensor kept across rounds, in this thread or in any worker.
    expect([one.workerCount, two.workerCount]).toEqual([1, 2]);
    expect([inThread.tensors, one.tensors, two.tensors]).toEqual([{ main: 0, workers: [] }, { main: 0, workers: [0] }, { main: 0, workers: [0, 0] }]);
  }, 180_000);

  it('refuses fine-tuning it was not set up for, a model or features outside shared memory, a second set-up, and a stage whose features were not shared', async () => {
    // Prepare: a one-worker pool, the widened stage and its slice of the starting model.
    const base = tiny.base;
    const model = initialModelWeights(base, config.head, config.seed);
    const schedule = new ModelSchedule(base, config.head, trainableScheduleFromConfig(config.trainable!, base.model, config.rounds, 'trainable'), model.manifest);
    const stage = schedule.stageFor(2);
    const weights = schedule.gather(model.data, stage);
    const fitConfig = { epochs: 1, batchSize: 5, learningRate: 0.02, optimizer: 'sgd' as const };
    const pool = await TrainingPool.start({ workers: 1, inputSize: base.embeddingSize, headSpec: config.head, manifest: { entries: [], parameterCount: 0 } });
    try {
      // Execute and assert: each refusal names what is missing.
      await expect(pool.fitStage(0, stage, weights, fitConfig, 1)).rejects.toThrow(/not set up for fine-tuning/);
      expect(() => pool.fineTune({ base: baseSkeleton(base), model })).toThrow(/SharedArrayBuffer/);
      pool.fineTune({ base: baseSkeleton(base), model: sharedWeights(model) });
      expect(() => pool.fineTune({ base: baseSkeleton(base), model: sharedWeights(model) })).toThrow(/already set up/);
      const unshared = { count: 1, features: { values: new Float32Array(4), rows: 1, cols: 4 }, labels: new Int32Array(1), offsets: Int32Array.from([0, 1]) };
      expect(() => pool.shareStageFeatures('some-boundary', unshared)).toThrow(/SharedArrayBuffers/);
      await expect(pool.fitStage(0, stage, weights, fitConfig, 1)).rejects.toThrow(/no features were shared for boundary/);
      // The worker goes on: its tensor count is readable after the failed job.
      expect(await pool.numTensors()).toHaveLength(1);
    } finally {
      await pool.close();
    }
  }, 60_000);
});
