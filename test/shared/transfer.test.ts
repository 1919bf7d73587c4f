/**
 * The transfer-learning claim, on real data: a frozen pretrained base (GloVe 6B 100-d) plus a
 * small head trained on a few hundred IMDB reviews beats chance clearly on held-out reviews, and
 * the base runs once per example however many epochs and rounds the head trains for.
 *
 * DATA.md measured 0.689 (100 training reviews) and 0.754 (500) test accuracy for a logistic head
 * on the same features; this split reaches 0.738 (0.70–0.74 over other seeds), so the bound
 * below leaves room for the sample.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classCounts, type LabeledDataset } from '../../client/data/dataset.ts';
import { loadImdb } from '../../client/data/imdb.ts';
import { splitTrainTest } from '../../client/data/split.ts';
import { computeFeatures } from '../../client/features.ts';
import { loadExportedModel, predict } from '../../client/predict.ts';
import { openBase } from '../../shared/bases/prepare-base.ts';
import type { LoadedBase } from '../../shared/model/base-loader.ts';
import { exportTransferModel } from '../../shared/model/export.ts';
import { FeatureCache } from '../../shared/model/feature-cache.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import { buildHead, type HeadSpec } from '../../shared/model/head.ts';
import { evaluateHead, trainHead } from '../../shared/model/head-training.ts';
import { selectBackend } from '../../shared/tf/select-backend.ts';

const LOGISTIC: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };

let work: string;
let glove: LoadedBase;
let train: LabeledDataset;
let test: LabeledDataset;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-transfer-'));
  // The real base: 20,000 words, 256 tokens. Built into the shared cache once (~1 s), then reused.
  glove = await openBase('glove-100d');
  const reviews = await loadImdb({ limit: 1000, seed: 7 });
  ({ train, test } = splitTrainTest(reviews, { testFraction: 0.4, seed: 7 }));
});
afterAll(async () => {
  glove.dispose();
  await rm(work, { recursive: true, force: true });
});

/** Wraps a base so every row it embeds is counted. */
function counting(base: FrozenBase): { base: FrozenBase; rows: () => number } {
  let rows = 0;
  return {
    base: { ...base, embed: (batch) => ((rows += batch.shape[0]!), base.embed(batch)) },
    rows: () => rows,
  };
}

describe('transfer: frozen GloVe + trained head on IMDB', () => {
  it('beats chance clearly on held-out reviews after training on ~600', async () => {
    // Prepare
    const cache = new FeatureCache();
    const trainFeatures = await computeFeatures(glove, train, { cache });
    const testFeatures = await computeFeatures(glove, test, { cache });
    const head = buildHead(glove.embeddingSize, LOGISTIC, { seed: 1 });
    const majority = Math.max(...classCounts(test)) / test.size;

    // Execute
    const trained = await trainHead(head, trainFeatures, train.labels, { epochs: 40, batchSize: 32, learningRate: 0.02, seed: 1 });
    const result = await evaluateHead(head, testFeatures, test.labels);

    // Assert
    expect(train.size).toBeGreaterThanOrEqual(590);
    expect(test.size).toBeGreaterThanOrEqual(390);
    expect(majority).toBeLessThan(0.56); // chance is about one half
    expect(trained.accuracy).toBeGreaterThan(0.65);
    expect(result.accuracy).toBeGreaterThanOrEqual(0.65);

    // The exported model gets the same accuracy from the raw review strings.
    const dir = path.join(work, 'imdb-model');
    await exportTransferModel(glove, head, dir, { classNames: train.classNames, headSpec: LOGISTIC, extra: { trainReviews: train.size, testAccuracy: result.accuracy } });
    const model = await loadExportedModel(dir);
    const texts = test.examples.kind === 'text' ? test.examples.texts : [];
    const predictions = await predict(model, texts);
    const correct = predictions.filter((p, i) => p.label === test.labels[i]).length;
    expect(correct / test.size).toBeCloseTo(result.accuracy, 6);
    model.dispose();
    head.dispose();
  });

  it('runs the base once per example across epochs and rounds, reads the disk cache later, and recomputes a corrupt one', async () => {
    // Prepare
    const directory = path.join(work, 'features');
    const { base, rows } = counting(glove);
    const cache = new FeatureCache({ directory });
    const head = buildHead(glove.embeddingSize, LOGISTIC, { seed: 2 });
    const before = tf.memory().numTensors;

    // Execute: three "rounds" of three local epochs each, each round asking for the features again.
    let first: Float32Array | undefined;
    for (let round = 0; round < 3; round++) {
      const features = await computeFeatures(base, train, { cache });
      first ??= features.values;
      await trainHead(head, features, train.labels, { epochs: 3, seed: round });
    }

    // Assert: one base run per training example, and no tensor left behind by the training calls.
    expect(rows()).toBe(train.size);
    expect(cache.baseRuns).toBe(train.size);
    expect(tf.memory().numTensors).toBe(before);

    // A client that restarts: a new cache on the same directory runs the base zero times.
    const restarted = new FeatureCache({ directory });
    const reread = await computeFeatures(base, train, { cache: restarted });
    await trainHead(head, reread, train.labels, { epochs: 2 });
    expect(restarted.baseRuns).toBe(0);
    expect(rows()).toBe(train.size);
    expect(reread.values).toEqual(first);

    // A corrupted cache file is ignored and recomputed (once), giving the same features.
    const files = await readdir(directory);
    expect(files).toHaveLength(1);
    await writeFile(path.join(directory, files[0]!), 'garbage');
    const recovering = new FeatureCache({ directory });
    const recomputed = await computeFeatures(base, train, { cache: recovering });
    await computeFeatures(base, train, { cache: recovering });
    expect(recovering.baseRuns).toBe(train.size);
    expect(rows()).toBe(2 * train.size);
    expect(recomputed.values).toEqual(first);
    head.dispose();
  });
});
