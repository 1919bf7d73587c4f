/**
 * The centralized fine-tuning baseline on a real (tiny) split-class CNN base: epochs shared out
 * over the stages, the same schedule trained on pooled data, the fine-tuned layer actually moving,
 * and no tensors left behind.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadedBase } from '../../../shared/model/base-loader.ts';
import { FeatureCache } from '../../../shared/model/feature-cache.ts';
import { initialModelWeights } from '../../../shared/model/fine-tune-model.ts';
import type { HeadSpec } from '../../../shared/model/head.ts';
import { resolveTrainableSet, type TrainableSetSpec } from '../../../shared/model/trainable-set.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { centralizedFineTuning, stageEpochs } from '../../../scripts/simulation/centralized-fine-tuning.ts';
import { clientOrder } from '../../../scripts/simulation/client-shards.ts';
import { buildTinySplitCnn, tinyImages } from '../../support/tiny-split-cnn.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const PROBE_THEN_CONV: TrainableSetSpec = {
  stages: [
    { fromRound: 1, groups: [{ select: 'head' }] },
    { fromRound: 3, groups: [{ select: 'head' }, { select: 'top', count: 1, unit: 'layers', lrMultiplier: 0.5 }] },
  ],
};

let work: string;
let base: LoadedBase;

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(join(tmpdir(), 'fedtl-central-ft-'));
  base = await buildTinySplitCnn(join(work, 'base'));
});

afterAll(async () => {
  base?.dispose();
  await rm(work, { recursive: true, force: true });
});

describe('stageEpochs', () => {
  const schedule = (froms: number[]) => ({ stages: froms.map((fromRound, index) => ({ index, fromRound, headLrMultiplier: 1, layers: [] })) });

  it('shares the epochs out in proportion to the rounds each stage lasts', () => {
    expect(stageEpochs(schedule([1, 3]), 8, 20)).toEqual([5, 15]);
    expect(stageEpochs(schedule([1, 5]), 8, 8)).toEqual([4, 4]);
    expect(stageEpochs(schedule([1]), 8, 12)).toEqual([12]);
    // Largest remainders: 10 × (2/7, 5/7) = (2.86, 7.14) → 3 + 7.
    expect(stageEpochs(schedule([1, 3]), 7, 10)).toEqual([3, 7]);
  });

  it('gives every stage at least one epoch and refuses fewer epochs than stages', () => {
    expect(stageEpochs(schedule([1, 8]), 8, 4)).toEqual([3, 1]);
    expect(() => stageEpochs(schedule([1, 3, 5]), 8, 2)).toThrow(/cannot cover 3 trainable stages/);
  });
});

describe('centralizedFineTuning', () => {
  it('trains the schedule on pooled data: the top convolution moves, the bottom does not, and it learns the task', async () => {
    const train = tinyImages(64, 'train');
    const test = tinyImages(40, 'test');
    const schedule = resolveTrainableSet(PROBE_THEN_CONV, base.model, 'test');
    const cache = new FeatureCache({ directory: join(work, 'features') });
    const before = tf.memory().numTensors;
    const result = await centralizedFineTuning({
      base,
      head: HEAD,
      schedule,
      rounds: 4,
      train,
      order: clientOrder([Int32Array.from({ length: 32 }, (_, i) => i), Int32Array.from({ length: 32 }, (_, i) => 32 + i)]),
      test,
      cache,
      epochs: 8,
      batchSize: 8,
      learningRate: 0.01,
      optimizer: 'adam',
      seed: 1,
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(result.stageEpochs).toEqual([4, 4]);
    expect(result.stages).toEqual(['from round 1: head', 'from round 3: head + base_conv_1 ×0.5']);
    expect(result.accuracy).toBeGreaterThan(0.9);
    const pretrained = initialModelWeights(base, HEAD, 1);
    const moved = (name: string) => {
      const entry = pretrained.manifest.entries.find((e) => e.name === name)!;
      const a = pretrained.data.subarray(entry.offset, entry.offset + entry.length);
      const b = result.model.data.subarray(entry.offset, entry.offset + entry.length);
      return a.some((value, i) => value !== b[i]);
    };
    expect(moved('base_conv_1/kernel')).toBe(true);
    expect(moved('base_conv_0/kernel')).toBe(false);
  });
});
