import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHead, getHeadWeights, setHeadWeights } from '../../../shared/model/head.ts';
import { trainHead } from '../../../shared/model/head-training.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

describe('trainHead: the leftover batch', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  it('gives every example of an epoch the same weight, the last partial batch included', async () => {
    // Prepare: a softmax-regression head with zero weights and three identical rows (feature 0,
    // label 1), so the shuffle cannot matter and only the output bias moves.
    const head = buildHead(1, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    const weights = getHeadWeights(head);
    setHeadWeights(head, { manifest: weights.manifest, data: new Float32Array(weights.data.length) });
    const features = { values: new Float32Array(3), rows: 3, cols: 1 };
    const labels = Int32Array.from([1, 1, 1]);

    // Execute: B = 2 on 3 rows is one full batch and a leftover batch of 1, SGD with rate 1.
    const result = await trainHead(head, features, labels, { batchSize: 2, learningRate: 1, optimizer: 'sgd', seed: 7 });

    // Assert, by hand: the gradient of cross-entropy w.r.t. the logits is p − y.
    // Full batch: p = (½, ½) → bias (−½, ½). Leftover batch: p = softmax(−½, ½) = (0.26894, 0.73106),
    // a step of size 1/2 (one example of a batch of 2) → bias (−0.5 − 0.13447, 0.5 + 0.13447).
    // Averaging the leftover batch's loss over its own size would take a full step (−0.76894, …),
    // giving its one example twice the weight of the others.
    const p = 1 / (1 + Math.exp(1));
    const bias = getHeadWeights(head).data.subarray(2);
    expect(bias[0]).toBeCloseTo(-0.5 - p / 2, 5);
    expect(bias[1]).toBeCloseTo(0.5 + p / 2, 5);
    // The reported loss is the mean over the epoch's examples: two at ln 2, one at −ln(1 − p).
    expect(result.loss).toBeCloseTo((2 * Math.LN2 - Math.log(1 - p)) / 3, 5);
    expect(result.steps).toBe(2);
    head.dispose();
  });

  it('leaves a full last batch untouched (rows a multiple of B)', async () => {
    const head = buildHead(1, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    const weights = getHeadWeights(head);
    setHeadWeights(head, { manifest: weights.manifest, data: new Float32Array(weights.data.length) });
    const before = tf.memory().numTensors;
    await trainHead(head, { values: new Float32Array(2), rows: 2, cols: 1 }, Int32Array.from([1, 1]), { batchSize: 2, learningRate: 1, optimizer: 'sgd' });
    const bias = getHeadWeights(head).data.subarray(2);
    expect(bias[0]).toBeCloseTo(-0.5, 6);
    expect(bias[1]).toBeCloseTo(0.5, 6);
    expect(tf.memory().numTensors).toBe(before);
    head.dispose();
  });
});
