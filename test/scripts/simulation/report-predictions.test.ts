/**
 * The predicted classes behind the report's confusion matrix: a head on features, and the final
 * model of a fine-tuning run (a small GloVe base whose embedding table trains from round 3), whose
 * accuracy from the predictions must equal the accuracy the run itself measured.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { type LabeledDataset } from '../../../client/data/dataset.ts';
import { initialHeadWeights } from '../../../server/start-coordinator.ts';
import type { Logger } from '../../../shared/core/log.ts';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import type { FeatureMatrix } from '../../../shared/model/feature-matrix.ts';
import { buildHead, setHeadWeights } from '../../../shared/model/head.ts';
import { evaluateHead, predictHead } from '../../../shared/model/head-training.ts';
import { clientOrder, groupByClient } from '../../../scripts/simulation/client-shards.ts';
import type { SimulationConfig } from '../../../scripts/simulation/presets.ts';
import { finalModelPredictions, predictClasses } from '../../../scripts/simulation/report-predictions.ts';
import { finalEvaluation } from '../../../scripts/simulation/report-tables.ts';
import { runFederated } from '../../../scripts/simulation/run-federated.ts';
import { featuresOf, simulationCache } from '../../../scripts/simulation/simulation-data.ts';
import { smallImdbConfig, useSmallImdb } from '../../support/small-imdb.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const imdb = useSmallImdb('predictions');
let glove: LoadedBase;
let train: LabeledDataset;
let test: LabeledDataset;
let testFeatures: FeatureMatrix;
beforeAll(() => {
  ({ glove, train, test, testFeatures } = imdb);
});

function config(overrides: Partial<SimulationConfig>): SimulationConfig {
  return smallImdbConfig({ trainingWorkers: 0, ...overrides });
}

describe('predictClasses', () => {
  it('is the argmax of the head\'s probabilities, in batches, without leaking tensors', async () => {
    const spec = config({}).head;
    const head = buildHead(glove.embeddingSize, spec);
    try {
      setHeadWeights(head, initialHeadWeights(glove.embeddingSize, spec, 9));
      const before = tf.memory().numTensors;
      const classes = await predictClasses(head, testFeatures, 7);
      expect(tf.memory().numTensors).toBe(before);
      const probabilities = await predictHead(head, testFeatures);
      const k = spec.classes;
      const argmax = Array.from({ length: testFeatures.rows }, (_, row) => {
        const p = probabilities.subarray(row * k, (row + 1) * k);
        return p.indexOf(Math.max(...p));
      });
      expect(Array.from(classes)).toEqual(argmax);
    } finally {
      head.dispose();
    }
  });
});

describe('finalModelPredictions', () => {
  it('head alone: the accuracy of its predictions is the head\'s evaluated accuracy', async () => {
    const cfg = config({});
    const initial = initialHeadWeights(glove.embeddingSize, cfg.head, 3);
    const predicted = await finalModelPredictions({ config: cfg, base: glove, weights: initial.data, round: 1, testFeatures, testDataset: test });
    const head = buildHead(glove.embeddingSize, cfg.head);
    try {
      setHeadWeights(head, initial);
      const evaluated = await evaluateHead(head, testFeatures, test.labels);
      expect(finalEvaluation(test.labels, predicted, 2).metrics.accuracy).toBeCloseTo(evaluated.accuracy, 10);
    } finally {
      head.dispose();
    }
  });

  it('fine-tuning: the last stage\'s model on its own boundary features gives the run\'s last accuracy', async () => {
    const cfg = config({
      trainable: {
        stages: [
          { fromRound: 1, groups: [{ select: 'head' }] },
          // A fast-moving table, so the last stage's model differs visibly from the pretrained one.
          { fromRound: 3, groups: [{ select: 'head' }, { select: 'pattern', pattern: '^glove_embedding$', lrMultiplier: 20 }] },
        ],
      },
    });
    const parts = [Int32Array.from({ length: 50 }, (_, i) => i), Int32Array.from({ length: 70 }, (_, i) => 50 + i)];
    const shards = groupByClient(clientOrder(parts), await featuresOf(glove, train, simulationCache()), train.labels);
    const result = await runFederated({ config: cfg, base: glove, baseDirectory: glove.dir, shards, parts, trainDataset: train, testDataset: test, testFeatures, testLabels: test.labels, mode: 'virtual', label: 'report-predictions', logger: quiet });
    const last = result.history.at(-1)!;
    expect(last.round).toBe(4);
    const predicted = await finalModelPredictions({ config: cfg, base: glove, weights: result.weights, round: last.round, testFeatures, testDataset: test });
    expect(finalEvaluation(test.labels, predicted, 2).metrics.accuracy).toBeCloseTo(last.serverAccuracy!, 10);
    const early = await finalModelPredictions({ config: cfg, base: glove, weights: result.weights, round: 1, testFeatures, testDataset: test });
    // The stage matters: read through round 1's stage (the pretrained table), the same weights predict otherwise.
    expect(predicted.filter((c, i) => c !== early[i]).length).toBeGreaterThan(0);
  }, 180_000);
});
