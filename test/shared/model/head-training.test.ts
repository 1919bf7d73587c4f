import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHead, getHeadWeights, setHeadWeights } from '../../../shared/model/head.ts';
import { adjustedCrossEntropy, logLabelPrior, meanGradient, trainHead } from '../../../shared/model/head-training.ts';
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

describe('trainHead: tail averaging (averageFromEpoch)', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  it('ends with the mean of the epoch-end weights from that epoch on, by hand with SGD', async () => {
    // Prepare: the one-row, one-step-per-epoch case, zero weights, SGD at rate 1: only the output
    // bias moves, by p − y each epoch.
    const head = buildHead(1, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    const weights = getHeadWeights(head);
    setHeadWeights(head, { manifest: weights.manifest, data: new Float32Array(weights.data.length) });
    const before = tf.memory().numTensors;

    // Execute: 3 epochs, averaging the ends of epochs 2 and 3 (0-based 1 and 2).
    await trainHead(head, { values: new Float32Array(1), rows: 1, cols: 1 }, Int32Array.from([1]), { epochs: 3, batchSize: 1, learningRate: 1, optimizer: 'sgd', averageFromEpoch: 1 });

    // Assert: epoch ends b₁ = ½, b₂ = b₁ + σ(−2b₁), b₃ = b₂ + σ(−2b₂) for the positive logit's bias
    // (the two biases stay opposite); the head holds (b₂ + b₃) / 2.
    const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
    const b1 = 0.5;
    const b2 = b1 + sigmoid(-2 * b1);
    const b3 = b2 + sigmoid(-2 * b2);
    const bias = getHeadWeights(head).data.subarray(2);
    expect(bias[1]).toBeCloseTo((b2 + b3) / 2, 5);
    expect(bias[0]).toBeCloseTo(-(b2 + b3) / 2, 5);
    expect(tf.memory().numTensors).toBe(before);
    head.dispose();
  });

  it('is the last iterate when it averages the last epoch alone, and refuses a negative epoch', async () => {
    const run = async (averageFromEpoch?: number) => {
      const head = buildHead(3, { hidden: [], activation: 'relu', dropout: 0, classes: 2 }, { seed: 1 });
      const features = { values: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), rows: 8, cols: 3 };
      await trainHead(head, features, Int32Array.from([0, 1, 0, 1, 1, 0, 1, 0]), { epochs: 3, batchSize: 3, learningRate: 0.1, seed: 3, ...(averageFromEpoch !== undefined ? { averageFromEpoch } : {}) });
      const data = getHeadWeights(head).data;
      head.dispose();
      return data;
    };
    const last = await run();
    const averagedLast = await run(2);
    for (let i = 0; i < last.length; i++) expect(averagedLast[i]).toBeCloseTo(last[i]!, 6);
    const head = buildHead(1, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    await expect(trainHead(head, { values: new Float32Array(1), rows: 1, cols: 1 }, Int32Array.from([1]), { averageFromEpoch: -1 })).rejects.toThrow(/averageFromEpoch/);
    head.dispose();
  });
});

describe('trainHead: logit adjustment by the label prior (logitAdjustment)', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  /** A softmax-regression head on one zero feature, all weights zero: only the output bias moves. */
  function zeroHead(classes: number) {
    const head = buildHead(1, { hidden: [], activation: 'relu', dropout: 0, classes });
    const weights = getHeadWeights(head);
    setHeadWeights(head, { manifest: weights.manifest, data: new Float32Array(weights.data.length) });
    return head;
  }

  it('smooths the prior by +1, so a class the client never saw keeps a finite prior', () => {
    // Labels (0, 0) of 3 classes: (2 + 1, 0 + 1, 0 + 1) / (2 + 3).
    expect(Array.from(logLabelPrior(Int32Array.from([0, 0]), 3))).toEqual([Math.log(3 / 5), Math.log(1 / 5), Math.log(1 / 5)].map(Math.fround));
  });

  it('computes the cross-entropy of softmax(z + offset), by hand', () => {
    // z = (0, ln 3) → p = (¼, ¾); offset (ln 2, 0) → softmax(ln 2, ln 3) = (⅖, ⅗).
    // Labels: row 1 class 0 (−ln ⅖), row 2 class 1 (−ln ⅗); mean (ln 5/2 + ln 5/3) / 2.
    const before = tf.memory().numTensors;
    const probabilities = tf.tensor2d([[0.25, 0.75], [0.25, 0.75]]);
    const oneHot = tf.tensor2d([[1, 0], [0, 1]]);
    const offset = tf.tensor1d([Math.LN2, 0]);
    const loss = adjustedCrossEntropy(probabilities, oneHot, offset);
    expect(loss.dataSync()[0]).toBeCloseTo((Math.log(5 / 2) + Math.log(5 / 3)) / 2, 5);
    tf.dispose([probabilities, oneHot, offset, loss]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('steps by softmax(z + τ log π) − y during training, reports the plain loss, and frees its tensors', async () => {
    // Rows labelled (1, 1, 0), one batch of 3, SGD at rate 1, τ = 1. Prior (1 + 1, 2 + 1) / (3 + 2)
    // = (⅖, ⅗); at z = 0 the adjusted softmax is the prior itself, so the bias gradient is
    // (⅖ − ⅓, ⅗ − ⅔) = (1/15, −1/15) and the bias ends at (−1/15, 1/15). Without the adjustment
    // p = (½, ½): the gradient (⅙, −⅙), the bias (−⅙, ⅙).
    const features = { values: new Float32Array(3), rows: 3, cols: 1 };
    const labels = Int32Array.from([1, 1, 0]);
    const adjusted = zeroHead(2);
    const plain = zeroHead(2);
    const before = tf.memory().numTensors;
    const result = await trainHead(adjusted, features, labels, { batchSize: 3, learningRate: 1, optimizer: 'sgd', logitAdjustment: 1 });
    expect(tf.memory().numTensors).toBe(before);
    await trainHead(plain, features, labels, { batchSize: 3, learningRate: 1, optimizer: 'sgd', logitAdjustment: 0 });
    const adjustedBias = getHeadWeights(adjusted).data.subarray(2);
    expect(adjustedBias[0]).toBeCloseTo(-1 / 15, 6);
    expect(adjustedBias[1]).toBeCloseTo(1 / 15, 6);
    const plainBias = getHeadWeights(plain).data.subarray(2);
    expect(plainBias[0]).toBeCloseTo(-1 / 6, 6);
    expect(plainBias[1]).toBeCloseTo(1 / 6, 6);
    // The reported loss is the plain cross-entropy at z = 0: ln 2 for every row.
    expect(result.loss).toBeCloseTo(Math.LN2, 6);
    adjusted.dispose();
    plain.dispose();
  });

  it('refuses a negative or non-finite τ with BAD_CONFIG', async () => {
    const head = zeroHead(2);
    const features = { values: new Float32Array(2), rows: 2, cols: 1 };
    for (const tau of [-0.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      await expect(trainHead(head, features, Int32Array.from([0, 1]), { logitAdjustment: tau })).rejects.toMatchObject({ code: 'BAD_CONFIG', message: expect.stringContaining('logitAdjustment') });
    }
    head.dispose();
  });
});

describe('meanGradient and trainHead\'s gradientCorrection (drift correction)', () => {
  beforeAll(async () => {
    await selectBackend({ log: false });
  });

  /** A softmax-regression head on 2 features with fixed weights, and 5 rows of 2 classes. */
  function fixture() {
    const head = buildHead(2, { hidden: [], activation: 'relu', dropout: 0, classes: 2 });
    const manifest = getHeadWeights(head).manifest;
    const start = Float32Array.from([0.3, -0.2, 0.1, 0.4, 0.05, -0.05]);
    setHeadWeights(head, { manifest, data: start });
    const features = { values: Float32Array.from([1, 0, 0, 1, 0.5, 0.5, -1, 2, 2, -1]), rows: 5, cols: 2 };
    const labels = Int32Array.from([0, 1, 1, 0, 1]);
    return { head, manifest, start, features, labels };
  }

  it('is the mean over rows of (p − y) ⊗ x for softmax regression, by hand, in any batch size, and frees its tensors', async () => {
    const { head, start, features, labels } = fixture();
    const before = tf.memory().numTensors;
    // By hand: logits z = x·W + b with W = [[0.3, −0.2], [0.1, 0.4]] (row-major 2×2), b = (0.05, −0.05).
    const kernel = new Float64Array(4);
    const bias = new Float64Array(2);
    let loss = 0;
    for (let r = 0; r < 5; r++) {
      const x = [features.values[2 * r]!, features.values[2 * r + 1]!];
      const z = [0, 1].map((c) => x[0]! * start[c]! + x[1]! * start[2 + c]! + start[4 + c]!);
      const e = z.map((v) => Math.exp(v));
      const p = e.map((v) => v / (e[0]! + e[1]!));
      loss -= Math.log(p[labels[r]!]!) / 5;
      for (let c = 0; c < 2; c++) {
        const g = (p[c]! - (labels[r] === c ? 1 : 0)) / 5;
        kernel[c]! += x[0]! * g;
        kernel[2 + c]! += x[1]! * g;
        bias[c]! += g;
      }
    }
    for (const batchSize of [1, 2, 256]) {
      const result = await meanGradient(head, features, labels, { batchSize });
      const [k, b] = [...result.gradients.values()];
      expect(result.gradients.size).toBe(2);
      [...kernel].forEach((v, i) => expect(k![i]).toBeCloseTo(v, 6));
      [...bias].forEach((v, i) => expect(b![i]).toBeCloseTo(v, 6));
      expect(result.loss).toBeCloseTo(loss, 6);
      expect(result.examples).toBe(5);
    }
    // The model is as it was: a gradient does not step.
    expect(Array.from(getHeadWeights(head).data)).toEqual(Array.from(start));
    expect(tf.memory().numTensors).toBe(before);
    head.dispose();
  });

  it('a correction adds exactly −rate × correction to each SGD step, and a zero correction changes nothing', async () => {
    const { head, manifest, start, features, labels } = fixture();
    const options = { batchSize: 5, learningRate: 0.1, optimizer: 'sgd' as const, seed: 1, epochs: 1 };
    // Plain: one full-batch SGD step.
    await trainHead(head, features, labels, options);
    const plain = getHeadWeights(head).data.slice();
    // Corrected by a fixed vector: the step moves each weight by a further −0.1 × its correction.
    setHeadWeights(head, { manifest, data: start });
    const names = head.trainableWeights.map((w) => w.name);
    const kernelCorrection = tf.tensor2d([[1, -2], [0.5, 3]]);
    const biasCorrection = tf.tensor1d([-1, 0.25]);
    const before = tf.memory().numTensors;
    await trainHead(head, features, labels, { ...options, gradientCorrection: new Map<string, tf.Tensor>([[names[0]!, kernelCorrection], [names[1]!, biasCorrection]]) });
    expect(tf.memory().numTensors).toBe(before);
    const corrected = getHeadWeights(head).data;
    const shift = [1, -2, 0.5, 3, -1, 0.25];
    shift.forEach((c, i) => expect(corrected[i]).toBeCloseTo(plain[i]! - 0.1 * c, 6));
    // Zero correction: the plain step, bit for bit.
    setHeadWeights(head, { manifest, data: start });
    const zeros = new Map(head.trainableWeights.map((w) => [w.name, tf.zeros(w.shape as number[])]));
    await trainHead(head, features, labels, { ...options, gradientCorrection: zeros });
    expect(Array.from(getHeadWeights(head).data)).toEqual(Array.from(plain));
    tf.dispose([kernelCorrection, biasCorrection, ...zeros.values()]);
    head.dispose();
  });

  it('refuses a correction of the wrong shape or for a weight that does not train, with BAD_SHAPE', async () => {
    const { head, features, labels } = fixture();
    const wrong = tf.zeros([3, 2]);
    await expect(trainHead(head, features, labels, { gradientCorrection: new Map([[head.trainableWeights[0]!.name, wrong]]) })).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    await expect(trainHead(head, features, labels, { gradientCorrection: new Map([['no/such/weight', wrong]]) })).rejects.toMatchObject({ code: 'BAD_SHAPE' });
    wrong.dispose();
    head.dispose();
  });
});
