import { describe, expect, it } from 'vitest';
import { centralizedBaseline, localOnlyBaseline, type BaselineInput } from '../../../scripts/simulation/baselines.ts';
import { clientOrder, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import { partition } from '../../../shared/math/partition.ts';
import { createRandom } from '../../../shared/math/random.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

/** Two Gaussian classes in 8 dimensions, apart along the first 3: easy but not trivial. */
function gaussians(rows: number, seed: string) {
  const random = createRandom(seed);
  const values = new Float32Array(rows * 8);
  const labels = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    labels[r] = r % 2;
    for (let c = 0; c < 8; c++) values[r * 8 + c] = random.normal() + (c < 3 ? (labels[r] === 1 ? 1 : -1) : 0);
  }
  return { features: { values, rows, cols: 8 }, labels };
}

const train = gaussians(400, 'train');
const test = gaussians(200, 'test');
const input: BaselineInput = {
  head: { hidden: [], activation: 'relu', dropout: 0, classes: 2 },
  trainFeatures: train.features,
  trainLabels: train.labels,
  testFeatures: test.features,
  testLabels: test.labels,
  batchSize: 16,
  learningRate: 0.05,
  optimizer: 'adam',
  seed: 7,
};
const shards = groupByClient(clientOrder(partition(train.labels, { scheme: 'dirichlet', numClients: 20, seed: 7, numClasses: 2, alpha: 0.3 })), train.features, train.labels);

describe('simulation baselines', () => {
  it('centralized: learns the pooled data, the same numbers for the same seed', async () => {
    await selectBackend({ log: false });
    const first = await centralizedBaseline(input, 5);
    expect(first.accuracy).toBeGreaterThan(0.85);
    expect(first.accuracy).toBeLessThanOrEqual(1);
    expect(first.loss).toBeGreaterThan(0);
    expect(Number.isFinite(first.loss)).toBe(true);
    expect(await centralizedBaseline(input, 5)).toEqual(first);
  });

  it('local-only: one score per client, summary statistics consistent, deterministic', async () => {
    const result = await localOnlyBaseline(input, shards, 5, 50);
    expect(result.clients).toBe(20);
    expect(result.min).toBeGreaterThanOrEqual(0);
    expect(result.max).toBeLessThanOrEqual(1);
    expect(result.min).toBeLessThanOrEqual(result.mean);
    expect(result.mean).toBeLessThanOrEqual(result.max);
    expect(result.std).toBeGreaterThanOrEqual(0);
    expect(result.std).toBeLessThanOrEqual(result.max - result.min);
    // Per client: its partition index, its rows, and recalls that give back its accuracy on the test set.
    const perClient = result.perClient!;
    expect(perClient.map((c) => c.client)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(perClient.map((c) => c.examples)).toEqual(Array.from({ length: 20 }, (_, i) => shards.offsets[i + 1]! - shards.offsets[i]!));
    const support = Array.from({ length: input.head.classes }, (_, c) => input.testLabels.filter((label) => label === c).length);
    for (const client of perClient) {
      const fromRecall = client.recall.reduce((sum: number, r, c) => sum + (r ?? 0) * support[c]!, 0) / input.testLabels.length;
      expect(fromRecall).toBeCloseTo(client.accuracy, 6);
    }
    expect(await localOnlyBaseline(input, shards, 5, 50)).toEqual(result);
  });

  it('local-only: trains at most maxClients clients, a seeded sample', async () => {
    const sampled = await localOnlyBaseline(input, shards, 2, 4);
    expect(sampled.clients).toBe(4);
    expect(await localOnlyBaseline(input, shards, 2, 4)).toEqual(sampled);
  });
});
