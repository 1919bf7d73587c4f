/**
 * Fine-tuning simulations in socket and process modes: a real coordinator on loopback fine-tunes a
 * small GloVe base with real clients (socket.io clients in this process, or `fedtl client` child
 * processes), the trainable set widening from the head to the embedding table mid-run.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type LabeledDataset } from '../../../client/data/dataset.ts';
import type { RoundRecord } from '../../../server/round-record.ts';
import type { Logger } from '../../../shared/core/log.ts';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import type { FeatureMatrix } from '../../../shared/model/feature-matrix.ts';
import { initialModelWeights } from '../../../shared/model/fine-tune-model.ts';
import type { SimulationConfig, SimulationMode } from '../../../scripts/simulation/presets.ts';
import { runFederated } from '../../../scripts/simulation/run-federated.ts';
import { clientOrder, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import { baseSkeleton, openSkeleton } from '../../../scripts/simulation/base-skeleton.ts';
import { featuresOf, simulationCache } from '../../../scripts/simulation/simulation-data.ts';
import { smallImdbConfig, useSmallImdb } from '../../support/small-imdb.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const ROUNDS = 4;
const WIDEN_AT = 3;
const SCHEDULE = {
  stages: [
    { fromRound: 1, groups: [{ select: 'head' as const }] },
    { fromRound: WIDEN_AT, groups: [{ select: 'head' as const }, { select: 'pattern' as const, pattern: '^glove_embedding$', lrMultiplier: 1 }] },
  ],
};

const imdb = useSmallImdb('modes');
let glove: LoadedBase;
let train: LabeledDataset;
let test: LabeledDataset;
let testFeatures: FeatureMatrix;
beforeAll(() => {
  ({ glove, train, test, testFeatures } = imdb);
});

function config(mode: SimulationMode): SimulationConfig {
  return smallImdbConfig({ mode, rounds: ROUNDS, trainable: SCHEDULE, augmentation: { tokenDropout: 0.1 }, logitAdjustment: 1, roundTimeoutMs: 120_000 });
}

/** Drift correction (strategy scaffold, λ = 0.5): a gradient exchange before every fit. */
const DRIFT: Partial<SimulationConfig> = { strategy: 'scaffold', strategyParams: { driftCorrection: 0.5 } };

async function run(mode: SimulationMode, trainingWorkers = 0, overrides: Partial<SimulationConfig> = {}) {
  const records: RoundRecord[] = [];
  const tensors: number[] = [];
  const parts = [Int32Array.from({ length: 50 }, (_, i) => i), Int32Array.from({ length: 70 }, (_, i) => 50 + i)];
  // Virtual clients start from the base's features grouped by client (as run-simulation.ts gives them).
  const shards = mode === 'virtual' ? groupByClient(clientOrder(parts), await featuresOf(glove, train, simulationCache()), train.labels) : undefined;
  const result = await runFederated({
    config: { ...config(mode), trainingWorkers, ...overrides },
    base: glove,
    baseDirectory: glove.dir,
    parts,
    ...(shards ? { shards } : {}),
    trainDataset: train,
    testDataset: test,
    testFeatures,
    testLabels: test.labels,
    mode,
    label: `fine-tune-${mode}`,
    logger: quiet,
    onRound: (record) => {
      records.push(record);
      tensors.push(tf.memory().numTensors);
    },
  });
  return { result, records, tensors };
}

/** What every mode must show: the set widens at WIDEN_AT, deltas follow it, only the used rows of the table move. */
/** Rounds 1–4 with both clients; the whole model comes back, and the pretrained table moved only in rows the reviews use. */
function expectTableMoved({ result, records }: Awaited<ReturnType<typeof run>>) {
  expect(records.map((r) => r.round)).toEqual([1, 2, 3, 4]);
  expect(records.every((r) => r.accepted === 2)).toBe(true);
  const pretrained = initialModelWeights(glove, config('socket').head, 5);
  expect(result.weights.length).toBe(pretrained.data.length);
  const table = pretrained.manifest.entries.find((entry) => entry.name.includes('glove_embedding'))!;
  const dims = table.shape[1]!;
  let moved = 0;
  let movedRows = 0;
  for (let row = 0; row < table.shape[0]!; row++) {
    const start = table.offset + row * dims;
    let changed = 0;
    for (let i = start; i < start + dims; i++) if (result.weights[i] !== pretrained.data[i]) changed++;
    moved += changed;
    if (changed > 0) movedRows++;
  }
  expect(moved).toBeGreaterThan(0);
  expect(moved).toBeLessThan(table.length);
  expect(records.every((r) => r.serverAccuracy !== undefined && r.serverAccuracy !== null)).toBe(true);
  return { table, dims, movedRows };
}

function expectWidening(outcome: Awaited<ReturnType<typeof run>>) {
  const { records } = outcome;
  const { table, dims, movedRows } = expectTableMoved(outcome);
  // Uploads: the head's delta in rounds 1–2; from round 3 the head plus the table's rows a client's
  // words moved (row-sparse: index + 100 floats each), not the whole 2,002 × 100 table.
  const up = records.map((r) => r.bytesUp / r.accepted);
  expect(up[1]).toBeCloseTo(up[0]!, -2);
  const rowBytes = 4 * (1 + dims);
  const sparseFraming = 4 + ',"encoding":"row-sparse"'.length; // the row count, and the header's encoding field
  const slack = 64; // headers differ by a few bytes between uploads (the metrics' digits)
  for (const round of [2, 3]) {
    expect(up[round]! - up[1]!).toBeGreaterThan(0);
    // A client sends only rows that moved in the aggregate (another client's rows never cancel it exactly).
    expect(up[round]! - up[1]!).toBeLessThanOrEqual(movedRows * rowBytes + sparseFraming + slack);
    expect(up[round]! - up[1]!).toBeLessThan(table.length * 4 * 0.25);
  }
  // Every row that moved was sent by some client in round 3 or 4.
  const tableBytesSent = records.slice(2).reduce((sum, r) => sum + r.bytesUp - r.accepted * (up[1]! + sparseFraming), 0);
  expect(tableBytesSent).toBeGreaterThanOrEqual(movedRows * rowBytes - 4 * slack);
}

describe('fine-tuning simulation, socket mode', () => {
  it('widens the trainable set at round 3 over real sockets, tensor count stable across unfreezing', async () => {
    const outcome = await run('socket');
    expectWidening(outcome);
    // Clients and server evaluation build a stage's top per use and dispose of it: the same count
    // after every round, before and after the table starts training.
    expect(new Set(outcome.tensors).size).toBe(1);
  }, 180_000);
});

describe('fine-tuning simulation, virtual mode', () => {
  it('trains the widening rounds in a pool of two workers to the same numbers as in the main thread, the table\'s rows shared read-only', async () => {
    const inThread = await run('virtual', 0);
    const pooled = await run('virtual', 2);
    expectWidening(pooled);
    const numbers = ({ result, records }: typeof inThread) => ({ weights: Array.from(result.weights), records: records.map(({ seconds: _seconds, roundId: _roundId, ...rest }) => rest) });
    expect(numbers(pooled)).toEqual(numbers(inThread));
    expect(new Set([...inThread.tensors, ...pooled.tensors]).size).toBe(1);
  }, 180_000);

  it('rebuilds the base\'s graph in a worker without allocating its table: one row, the true row count back in the layer', async () => {
    const table = glove.model!.getLayer('glove_embedding');
    const rows = table.getConfig()['inputDim'] as number;
    const skeleton = baseSkeleton(glove);
    expect(skeleton.embeddingRows).toEqual({ glove_embedding: rows });
    const before = tf.memory().numBytes;
    const rebuilt = await openSkeleton(skeleton);
    try {
      const copy = rebuilt.model!.getLayer('glove_embedding');
      expect(copy.getConfig()['inputDim']).toBe(rows);
      expect(copy.weights[0]!.shape).toEqual([1, table.weights[0]!.shape[1]]);
      expect(tf.memory().numBytes - before).toBeLessThan(rows * 4);
      expect(() => tf.tidy(() => rebuilt.embed(tf.zeros([1, 4])))).toThrow(/no weights/);
    } finally {
      rebuilt.dispose();
    }
  });
});

describe('fine-tuning with drift correction (strategy scaffold)', () => {
  it('runs the gradient exchange on every path: in the main thread and in a pool of two workers to the same numbers, and over real sockets', async () => {
    const plain = await run('virtual', 0);
    const inThread = await run('virtual', 0, DRIFT);
    const pooled = await run('virtual', 2, DRIFT);
    const sockets = await run('socket', 0, DRIFT);
    for (const outcome of [inThread, pooled, sockets]) {
      expectTableMoved(outcome);
      // Up, a gradient and a delta per client: more than the plain run's deltas alone; still
      // row-sparse in the table's rounds (a gradient is zero outside the rows a client holds).
      outcome.records.forEach((record, i) => expect(record.bytesUp).toBeGreaterThan(plain.records[i]!.bytesUp * 1.5));
      outcome.records.forEach((record, i) => expect(record.bytesUp).toBeLessThan(plain.records[i]!.bytesUp * 2.5));
    }
    const numbers = ({ result, records }: typeof inThread) => ({ weights: Array.from(result.weights), records: records.map(({ seconds: _seconds, roundId: _roundId, ...rest }) => rest) });
    expect(numbers(pooled)).toEqual(numbers(inThread));
    // The correction steers the clients: the model is not the plain run's.
    expect(inThread.result.weights.some((v, i) => v !== plain.result.weights[i])).toBe(true);
    expect(new Set([...inThread.tensors, ...pooled.tensors]).size).toBe(1);
    expect(new Set(sockets.tensors).size).toBe(1);
  }, 300_000);
});

describe('SLOW end to end: fine-tuning simulation, process mode', () => {
  it('fine-tunes through fedtl client processes (augmentation and logit adjustment passed on their command line)', async () => {
    expectWidening(await run('process'));
  }, 240_000);
});
