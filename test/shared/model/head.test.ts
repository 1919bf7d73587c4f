import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHead, getHeadWeights, parseHeadSpec, setHeadWeights } from '../../../shared/model/head.ts';
import { evaluateHead, trainHead } from '../../../shared/model/head-training.ts';
import type { FeatureMatrix } from '../../../shared/model/feature-matrix.ts';
import { selectBackend } from '../../../shared/tf/select-backend.ts';

/** Two Gaussian blobs in 8 dimensions, linearly separable with margin. */
function blobs(n: number, seed: number): { features: FeatureMatrix; labels: Int32Array } {
  let s = seed;
  const random = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  const values = new Float32Array(n * 8);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const label = i % 2;
    labels[i] = label;
    for (let j = 0; j < 8; j++) values[i * 8 + j] = (label ? 1 : -1) * (j < 2 ? 1.5 : 0) + (random() - 0.5) * 2;
  }
  return { features: { values, rows: n, cols: 8 }, labels };
}

describe('head', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  it('parses specs and refuses bad ones', () => {
    expect(parseHeadSpec({ classes: 3 })).toEqual({ hidden: [], activation: 'relu', dropout: 0, classes: 3 });
    expect(() => parseHeadSpec({ classes: 1 })).toThrow(/classes/);
    expect(() => parseHeadSpec({ classes: 2, hidden: [0] })).toThrow(/hidden/);
    expect(() => parseHeadSpec({ classes: 2, activation: 'swish!' })).toThrow(/activation/);
  });

  it('round-trips weights through one flat buffer and refuses a mismatched manifest', () => {
    const head = buildHead(8, { hidden: [4], activation: 'relu', dropout: 0.1, classes: 2 }, { seed: 3 });
    const weights = getHeadWeights(head);
    expect(weights.manifest.parameterCount).toBe(8 * 4 + 4 + 4 * 2 + 2);
    const doubled = { manifest: weights.manifest, data: weights.data.map((v) => v * 2) };
    setHeadWeights(head, doubled);
    expect(Array.from(getHeadWeights(head).data)).toEqual(Array.from(doubled.data));
    const other = buildHead(8, { hidden: [5], activation: 'relu', dropout: 0, classes: 2 });
    expect(() => setHeadWeights(other, weights)).toThrow(/do not fit/);
    head.dispose();
    other.dispose();
  });

  it('learns separable data, and leaks no tensor across repeated training calls', async () => {
    const train = blobs(400, 7);
    const test = blobs(200, 11);
    const head = buildHead(8, { hidden: [16], activation: 'relu', dropout: 0, classes: 2 }, { seed: 1 });
    const before = await evaluateHead(head, test.features, test.labels);
    await trainHead(head, train.features, train.labels, { epochs: 2, batchSize: 32, learningRate: 0.05 });
    const baseline = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) await trainHead(head, train.features, train.labels, { epochs: 1, batchSize: 32, learningRate: 0.05, seed: i });
    expect(tf.memory().numTensors).toBe(baseline);
    const after = await evaluateHead(head, test.features, test.labels);
    expect(after.accuracy).toBeGreaterThan(0.9);
    expect(after.loss).toBeLessThan(before.loss);
    head.dispose();
  });

  it('refuses features of the wrong width and labels out of range', async () => {
    const head = buildHead(8, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    const { features, labels } = blobs(10, 1);
    await expect(trainHead(head, { ...features, cols: 4, values: features.values.subarray(0, 40) }, labels)).rejects.toThrow(/columns/);
    await expect(trainHead(head, features, labels.map(() => 5))).rejects.toThrow(/outside/);
    head.dispose();
  });
});

describe('a head with a convolutional front', () => {
  const conv = { inputShape: [6, 6, 1] as [number, number, number], layers: [{ filters: 2, kernelSize: 3, strides: 2 }] };

  it('reshapes flat rows, convolves, flattens, then the dense layers', () => {
    const head = buildHead(36, { conv, hidden: [4], activation: 'relu', dropout: 0, classes: 3 });
    try {
      expect(head.layers.map((l) => l.getClassName())).toEqual(['Reshape', 'Conv2D', 'Flatten', 'Dense', 'Dense']);
      const out = tf.tidy(() => (head.predict(tf.ones([5, 36])) as tf.Tensor).shape);
      expect(out).toEqual([5, 3]);
    } finally {
      head.dispose();
    }
  });

  it('parses a conv front and refuses a bad one with a message that says what is expected', () => {
    expect(parseHeadSpec({ conv, hidden: [], classes: 2 }).conv).toEqual(conv);
    expect(() => parseHeadSpec({ conv: { inputShape: [6, 6], layers: conv.layers }, classes: 2 })).toThrow(/conv.inputShape must be \[height, width, channels\]/);
    expect(() => parseHeadSpec({ conv: { inputShape: [6, 6, 1], layers: [] }, classes: 2 })).toThrow(/conv.layers must list 1 to 8/);
    expect(() => parseHeadSpec({ conv: { inputShape: [6, 6, 1], layers: [{ filters: 0, kernelSize: 3, strides: 1 }] }, classes: 2 })).toThrow(/conv.layers\[0\] needs filters/);
    expect(() => buildHead(35, { conv, hidden: [], activation: 'relu', dropout: 0, classes: 2 })).toThrow(/holds 36 values but the head's input rows have 35/);
  });
});
