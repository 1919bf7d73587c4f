/**
 * Training through fedtl's wasm gradient kernels: the gradients of small models built from the
 * layers fedtl's bases use agree between wasm and cpu, and training on wasm leaks no tensor.
 * Runs on both backends explicitly, whatever FEDTL_BACKEND the suite runs under.
 */
import * as tf from '@tensorflow/tfjs';
import { afterAll, describe, expect, it } from 'vitest';
import { createRandom } from '../../../../shared/math/random.ts';
import { selectBackend } from '../../../../shared/tf/index.ts';


/** Seeded values in [-scale, scale). */
function random(size: number, seed: number, scale = 1): Float32Array {
  const rng = createRandom(seed);
  return Float32Array.from({ length: size }, () => (rng.nextFloat() * 2 - 1) * scale);
}

/** A miniature MobileNetV2 block plus a small CNN's pieces: every conv-gradient path of the bases. */
function convModel(): tf.LayersModel {
  const input = tf.input({ shape: [10, 10, 3] });
  const padded = tf.layers.zeroPadding2d({ padding: [[0, 1], [0, 1]] }).apply(input);
  const stem = tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', useBias: false }).apply(padded);
  const stemAct = tf.layers.reLU({ maxValue: 6 }).apply(tf.layers.batchNormalization().apply(stem));
  const depthwise = tf.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', useBias: false }).apply(stemAct);
  const depthAct = tf.layers.reLU({ maxValue: 6 }).apply(tf.layers.batchNormalization().apply(depthwise));
  const project = tf.layers.conv2d({ filters: 8, kernelSize: 1, padding: 'same', useBias: false }).apply(depthAct);
  const residual = tf.layers.add().apply([stemAct as tf.SymbolicTensor, project as tf.SymbolicTensor]);
  const down = tf.layers.depthwiseConv2d({ kernelSize: 3, strides: 2, padding: 'valid' }).apply(residual);
  const conv = tf.layers.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu' }).apply(down);
  const pooled = tf.layers.maxPooling2d({ poolSize: 2, padding: 'same' }).apply(conv);
  const avg = tf.layers.globalAveragePooling2d({}).apply(pooled);
  const output = tf.layers.dense({ units: 3, activation: 'softmax' }).apply(avg) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: output });
}

/** An embedding table (GloVe-like base, fine-tuned) under a mean-pooling head. */
function embeddingModel(): tf.LayersModel {
  const model = tf.sequential();
  model.add(tf.layers.embedding({ inputDim: 200, outputDim: 8, inputLength: 6 }));
  model.add(tf.layers.globalAveragePooling1d({}));
  model.add(tf.layers.dense({ units: 3, activation: 'softmax' }));
  return model;
}

interface Case { name: string; build: () => tf.LayersModel; input: () => tf.Tensor }

const CASES: Case[] = [
  { name: 'MobileNetV2-like conv model', build: convModel, input: () => tf.tensor4d(random(4 * 10 * 10 * 3, 3), [4, 10, 10, 3]) },
  { name: 'embedding model', build: embeddingModel, input: () => tf.tensor2d(Int32Array.from(random(5 * 6, 4).map((v) => Math.floor((v + 1) * 100))), [5, 6], 'int32') },
];

/** Builds the model on `backend` with seeded weights and returns the loss gradients of every trainable weight. */
async function gradientsOn(backend: 'cpu' | 'wasm', c: Case): Promise<Map<string, Float32Array>> {
  await selectBackend({ prefer: backend, log: false });
  const model = c.build();
  const weights = model.getWeights().map((w, i) => tf.tensor(random(w.size, 100 + i, 0.5), w.shape));
  model.setWeights(weights);
  tf.dispose(weights);
  const x = c.input();
  const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1, 0].slice(0, x.shape[0]), 'int32'), 3);
  const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor));
  const out = new Map<string, Float32Array>();
  // Positional names: layer names differ between the two builds (tfjs numbers them globally).
  const order = model.trainableWeights.map((w) => w.originalName);
  for (const [name, grad] of Object.entries(grads)) out.set(`${order.indexOf(name)}:${grad.shape.join('x')}`, grad.dataSync() as Float32Array);
  tf.dispose([x, labels, ...Object.values(grads)]);
  model.dispose();
  return out;
}

describe('training through the wasm gradient kernels', () => {
  afterAll(async () => {
    await selectBackend({ prefer: process.env['FEDTL_BACKEND'] === 'cpu' ? 'cpu' : 'wasm', log: false });
  });

  it.each(CASES)('$name: every weight gradient on wasm matches cpu', async (c) => {
    const cpu = await gradientsOn('cpu', c);
    const wasm = await gradientsOn('wasm', c);
    expect([...wasm.keys()]).toEqual([...cpu.keys()]);
    let worst = 0;
    for (const [name, expected] of cpu) {
      const actual = wasm.get(name)!;
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < expected.length; i++) {
        scale = Math.max(scale, Math.abs(expected[i]!));
        diff = Math.max(diff, Math.abs(actual[i]! - expected[i]!));
      }
      expect(scale, `gradient ${name} is zero: the case would not test it`).toBeGreaterThan(0);
      expect(diff, `gradient ${name}`).toBeLessThan(1e-4 * Math.max(1, scale));
      worst = Math.max(worst, diff);
    }
    console.info(`${c.name}: ${cpu.size} weight gradients, max abs difference wasm vs cpu ${worst.toExponential(2)}`);
  });

  it.each(CASES)('$name: training steps on wasm keep numTensors flat', async (c) => {
    await selectBackend({ prefer: 'wasm', log: false });
    const model = c.build();
    const optimizer = tf.train.adam(0.01);
    const x = c.input();
    const labels = tf.oneHot(tf.tensor1d([0, 1, 2, 1, 0].slice(0, x.shape[0]), 'int32'), 3);
    const step = (): number => {
      const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor), true);
      const value = loss!.dataSync()[0]!;
      loss!.dispose();
      return value;
    };
    const first = step();
    const after = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 5; i++) last = step();
    expect(tf.memory().numTensors).toBe(after);
    expect(last).toBeLessThan(first);
    tf.dispose([x, labels]);
    optimizer.dispose();
    model.dispose();
  });
});
