import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openBase } from '../../../shared/bases/prepare-base.ts';
import { Tokenizer } from '../../../shared/bases/tokenizer.ts';
import { fileLoadHandler, type LoadedBase } from '../../../shared/model/base-loader.ts';
import { extractFeatures, extractJointFeatures } from '../../../shared/model/feature-cache.ts';
import {
  exportFineTunedModel,
  findBoundary,
  gatherWeights,
  initialModelWeights,
  jointFeatureBases,
  scatterWeights,
  stageFeatureBase,
  tokenIdsOf,
  TrainableTop,
} from '../../../shared/model/fine-tune-model.ts';
import type { FrozenBase } from '../../../shared/model/frozen-base.ts';
import { buildHead, getHeadWeights, type HeadSpec } from '../../../shared/model/head.ts';
import { predictHead, trainHead } from '../../../shared/model/head-training.ts';
import { resolveTrainableSet, stageForRound, type TrainableSetSpec } from '../../../shared/model/trainable-set.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';
import { REVIEWS, SMALL_GLOVE, maxAbsDiff } from '../../support/text-model.ts';

const HEAD: HeadSpec = { hidden: [], activation: 'relu', dropout: 0, classes: 2 };
const PROBE_THEN_TABLE: TrainableSetSpec = {
  stages: [
    { fromRound: 1, groups: [{ select: 'head' }] },
    { fromRound: 3, groups: [{ select: 'head' }, { select: 'pattern', pattern: 'embedding', lrMultiplier: 0.5 }] },
  ],
};

let work: string;
let glove: LoadedBase;
let ids: tf.Tensor2D;
let texts: string[];

beforeAll(async () => {
  await selectBackend({ log: false });
  work = await mkdtemp(path.join(os.tmpdir(), 'fedtl-finetune-'));
  glove = await openBase('glove-100d', { cacheDir: path.join(work, 'cache'), ...SMALL_GLOVE });
  const tokenizer = new Tokenizer(glove.input.kind === 'text' ? glove.input.vocabulary : [], { sequenceLength: SMALL_GLOVE.sequenceLength });
  texts = [...REVIEWS, 'a great film', 'the worst film of the year', 'great acting and a fine plot', 'boring boring boring'];
  ids = tokenizer.encodeBatch(texts) as tf.Tensor2D;
});
afterAll(async () => {
  glove.dispose();
  ids.dispose();
  await rm(work, { recursive: true, force: true });
});

async function featuresOf(base: FrozenBase, x: tf.Tensor) {
  return extractFeatures(base, x.shape[0]!, () => x.clone());
}

/** Base + head as the feature-extraction path computes them: the reference for every stage. */
async function referenceProbabilities(model: ReturnType<typeof initialModelWeights>): Promise<Float32Array> {
  const head = buildHead(glove.embeddingSize, HEAD);
  const headManifest = getHeadWeights(head).manifest;
  const top = TrainableTop.build(glove, HEAD, { index: 0, fromRound: 1, headLrMultiplier: 1, layers: [] }, model);
  try {
    expect(top.manifest).toEqual(headManifest);
    return await predictHead(top.model, await featuresOf(top.featureBase, ids));
  } finally {
    head.dispose();
    top.dispose();
  }
}

describe('TrainableTop on the GloVe base', () => {
  it('splits at the input when the table trains, and computes the same probabilities as base + head', async () => {
    // Prepare
    const schedule = resolveTrainableSet(PROBE_THEN_TABLE, glove.model);
    const model = initialModelWeights(glove, HEAD, 7);
    const expected = await referenceProbabilities(model);

    // Execute
    const top = TrainableTop.build(glove, HEAD, stageForRound(schedule, 3), model);
    const features = await featuresOf(top.featureBase, ids);
    const actual = await predictHead(top.model, features);
    top.dispose();

    // Assert: features are the token ids, the manifest is the table then the head
    expect(top.boundary?.layerIndex).toBe(0);
    expect(features.cols).toBe(SMALL_GLOVE.sequenceLength);
    expect(top.manifest.entries.map((e) => e.name)).toEqual(['glove_embedding/embeddings', 'head_output/kernel', 'head_output/bias']);
    expect(top.featureKey).not.toBe(glove.hash);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
  });

  it('trains the table only on rows the texts use, keeps padding at zero, and gives the pretrained rows the smaller rate', async () => {
    // Prepare
    const schedule = resolveTrainableSet(PROBE_THEN_TABLE, glove.model);
    const stage = stageForRound(schedule, 3);
    const model = initialModelWeights(glove, HEAD, 7);
    const top = TrainableTop.build(glove, HEAD, stage, model);
    const before = top.getWeights();
    const features = await featuresOf(top.featureBase, ids);
    const labels = Int32Array.from(texts, (_, i) => i % 2);

    // Execute
    await trainHead(top.model, features, labels, { epochs: 3, batchSize: 4, learningRate: 0.05, learningRateMultipliers: top.learningRateMultipliers });
    const after = top.getWeights();
    top.dispose();

    // Assert
    const used = new Set(Array.from(features.values, (v) => Math.round(v)));
    const table = after.manifest.entries[0]!;
    const dims = table.shape[1]!;
    let changedRows = 0;
    for (let row = 0; row < table.shape[0]!; row++) {
      let changed = false;
      for (let d = 0; d < dims; d++) changed ||= after.data[row * dims + d] !== before.data[row * dims + d];
      if (changed) changedRows++;
      if (changed) expect(used.has(row) && row !== 0).toBe(true);
    }
    expect(changedRows).toBeGreaterThan(10);
    expect(Array.from(after.data.subarray(0, dims)).every((v) => v === 0)).toBe(true);
    expect([...top.learningRateMultipliers.values()].sort()).toEqual([0.5, 1, 1]);
  });

  it('trains a sub-table of the rows a client uses exactly as the whole table', async () => {
    // Prepare
    const stage = stageForRound(resolveTrainableSet(PROBE_THEN_TABLE, glove.model), 3);
    const model = initialModelWeights(glove, HEAD, 11);
    const features = await featuresOf(stageFeatureBase(glove, stage), ids);
    const labels = Int32Array.from(texts, (_, i) => (i % 3 === 0 ? 1 : 0));
    const whole = TrainableTop.build(glove, HEAD, stage, model);
    const sub = TrainableTop.build(glove, HEAD, stage, model, { embeddingRows: tokenIdsOf([features]) });
    const options = { epochs: 2, batchSize: 4, learningRate: 0.05, seed: 3 };

    // Execute
    await trainHead(whole.model, features, labels, { ...options, learningRateMultipliers: whole.learningRateMultipliers });
    await trainHead(sub.model, features, labels, { ...options, learningRateMultipliers: sub.learningRateMultipliers });
    const [a, b] = [whole.getWeights().data, sub.getWeights().data];
    whole.dispose();
    sub.dispose();

    // Assert
    expect(a.length).toBe(b.length);
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-6);
  });

  it('exports the fine-tuned model as stock layers that tf.loadLayersModel loads with identical predictions', async () => {
    // Prepare: train the table a little, fold it into the whole model
    const schedule = resolveTrainableSet(PROBE_THEN_TABLE, glove.model);
    const stage = stageForRound(schedule, 5);
    const model = initialModelWeights(glove, HEAD, 3);
    const top = TrainableTop.build(glove, HEAD, stage, model);
    const features = await featuresOf(top.featureBase, ids);
    await trainHead(top.model, features, Int32Array.from(texts, (_, i) => (i * 7) % 2), { epochs: 2, batchSize: 3, learningRate: 0.1 });
    scatterWeights(model, top.getWeights());
    const expected = await predictHead(top.model, features);
    top.dispose();
    const dir = path.join(work, 'fine-tuned');

    // Execute
    const result = await exportFineTunedModel(glove, HEAD, model, dir, { classNames: ['negative', 'positive'], trainedLayers: ['glove_embedding'] });
    const loaded = await tf.loadLayersModel(fileLoadHandler(dir));
    const out = loaded.predict(ids) as tf.Tensor;
    const actual = (await out.data()) as Float32Array;
    out.dispose();
    loaded.dispose();

    // Assert
    expect(result.contents).toBe('base+head');
    expect(result.sidecar.provenance.extra['fineTunedLayers']).toEqual(['glove_embedding']);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
    expect(maxAbsDiff(gatherWeights(model, top.manifest), gatherWeights(model, top.manifest))).toBe(0);
  });

  it('keeps tf.memory().numTensors stable across unfreezing, training and rebuilding tops', async () => {
    // Prepare
    const schedule = resolveTrainableSet(PROBE_THEN_TABLE, glove.model);
    const model = initialModelWeights(glove, HEAD, 1);
    const labels = Int32Array.from(texts, (_, i) => i % 2);
    const counts: number[] = [];

    // Execute: rounds 1..6 cross the stage boundary at round 3
    for (let round = 1; round <= 6; round++) {
      const top = TrainableTop.build(glove, HEAD, stageForRound(schedule, round), model);
      const features = await featuresOf(top.featureBase, ids);
      await trainHead(top.model, features, labels, { epochs: 1, batchSize: 4, learningRateMultipliers: top.learningRateMultipliers });
      scatterWeights(model, top.getWeights());
      top.dispose();
      counts.push(tf.memory().numTensors);
    }

    // Assert
    expect(counts, counts.join(",")).toEqual(counts.map(() => counts[0]));
  });
});

describe('findBoundary on a residual network', () => {
  it('never cuts inside a residual block, and the top reproduces the whole model', async () => {
    // Prepare
    const base = tinyResnet();
    const baseModel = base.model!;
    const schedule = resolveTrainableSet({ stages: [{ fromRound: 1, groups: [{ select: 'top', count: 1, unit: 'blocks', lrMultiplier: 0.1 }] }] }, baseModel);
    const model = initialModelWeights(base, HEAD, 2);
    const x = tf.randomUniform([5, 8, 8, 3], 0, 1, 'float32', 9);
    const expected = await referenceOnBase(base, model, x);

    // Execute
    const top = TrainableTop.build(base, HEAD, stageForRound(schedule, 1), model);
    const actual = await predictHead(top.model, await featuresOf(top.featureBase, x));
    const boundary = findBoundary(baseModel, stageForRound(schedule, 1));
    top.dispose();
    x.dispose();
    base.dispose();

    // Assert: block_1 trains (conv + bn); the cut is at stem_conv_bn, the skip connection's source
    expect(schedule.stages[0]!.layers.map((l) => l.name)).toEqual(['block_1_conv', 'block_1_bn']);
    expect(boundary.layerName).toBe('stem_conv_bn');
    expect(top.manifest.entries.map((e) => e.name)).toEqual(['block_1_conv/kernel', 'block_1_conv/bias', 'block_1_bn/gamma', 'block_1_bn/beta', 'head_output/kernel', 'head_output/bias']);
    expect(maxAbsDiff(actual, expected)).toBeLessThan(1e-5);
  });
});

/** input → conv → bn → [conv → bn] + skip → relu → gap: a residual network in miniature. */
function tinyResnet(): FrozenBase {
  const input = tf.input({ shape: [8, 8, 3] });
  const c1 = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'stem_conv' }).apply(input) as tf.SymbolicTensor;
  const b1 = tf.layers.batchNormalization({ name: 'stem_conv_bn' }).apply(c1) as tf.SymbolicTensor;
  const c2 = tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', name: 'block_1_conv' }).apply(b1) as tf.SymbolicTensor;
  const b2 = tf.layers.batchNormalization({ name: 'block_1_bn' }).apply(c2) as tf.SymbolicTensor;
  const added = tf.layers.add({ name: 'block_1_add' }).apply([b1, b2]) as tf.SymbolicTensor;
  const relu = tf.layers.reLU({ name: 'out_relu' }).apply(added) as tf.SymbolicTensor;
  const pooled = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(relu) as tf.SymbolicTensor;
  const baseModel = tf.model({ inputs: input, outputs: pooled });
  const base: FrozenBase = {
    name: 'tiny-resnet',
    hash: 'a'.repeat(64),
    input: { kind: 'image', size: 8, channels: 3, range: [0, 1] },
    embeddingSize: 4,
    model: baseModel,
    embed: (x) => baseModel.predict(x) as tf.Tensor2D,
    dispose: () => baseModel.dispose(),
  };
  return base;
}

describe('jointFeatureBases', () => {
  it('gives the base output and a stage boundary from one pass, equal to each taken alone', async () => {
    // Prepare: a linear probe, then block_1 (boundary stem_conv_bn)
    const base = tinyResnet();
    const schedule = resolveTrainableSet(
      { stages: [{ fromRound: 1, groups: [{ select: 'head' }] }, { fromRound: 2, groups: [{ select: 'top', count: 1, unit: 'blocks' }] }] },
      base.model,
    );
    const x = tf.randomUniform([7, 8, 8, 3], 0, 1, 'float32', 3);
    const alone = [await featuresOf(base, x), await featuresOf(stageFeatureBase(base, schedule.stages[1]!), x)];
    const before = tf.memory().numTensors;

    // Execute
    const joint = jointFeatureBases(base, schedule.stages)!;
    const together = await extractJointFeatures(joint, 7, (start, end) => x.slice([start], [end - start]), { batchSize: 3 });

    // Assert: same keys as the stage feature bases, identical values, nothing left on the backend
    const after = tf.memory().numTensors;
    expect(joint.bases.map((b) => b.hash)).toEqual([base.hash, stageFeatureBase(base, schedule.stages[1]!).hash]);
    expect(together.map((m) => [m.rows, m.cols])).toEqual([[7, 4], [7, 8 * 8 * 4]]);
    expect(maxAbsDiff(together[0]!.values, alone[0]!.values)).toBe(0);
    expect(maxAbsDiff(together[1]!.values, alone[1]!.values)).toBe(0);
    expect(after).toBe(before);
    expect(jointFeatureBases(base, [schedule.stages[0]!])).toBeNull();
    x.dispose();
    base.dispose();
  });
});

async function referenceOnBase(base: FrozenBase, model: ReturnType<typeof initialModelWeights>, x: tf.Tensor): Promise<Float32Array> {
  const top = TrainableTop.build(base, HEAD, { index: 0, fromRound: 1, headLrMultiplier: 1, layers: [] }, model);
  try {
    return await predictHead(top.model, await featuresOf(top.featureBase, x));
  } finally {
    top.dispose();
  }
}
