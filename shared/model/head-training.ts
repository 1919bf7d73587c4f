/**
 * Local training and evaluation of a head on cached base features.
 *
 * The base is frozen, so its features are computed once per data set (see feature extraction) and
 * every epoch of every round trains only the head on those rows: the cost of an epoch is the
 * head's, not the base's.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { createRandom } from '../math/random.ts';
import type { FeatureMatrix } from './feature-matrix.ts';
import { TRAINING_DEFAULTS, type OptimizerName } from './training-defaults.ts';
import { GroupedOptimizer } from './grouped-optimizer.ts';

export { OPTIMIZERS, TRAINING_DEFAULTS, type OptimizerName } from './training-defaults.ts';

export interface TrainOptions {
  /** Local epochs E. @default 1 */
  epochs?: number;
  /** Mini-batch size B. @default 32 */
  batchSize?: number;
  /** @default 0.01 */
  learningRate?: number;
  /** Optimizer, created fresh for every call (no state carries over between rounds). @default 'adam' */
  optimizer?: OptimizerName;
  /** Seed of the per-epoch shuffles. @default 0 */
  seed?: number;
  /**
   * FedProx proximal weight μ (Li et al., "Federated Optimization in Heterogeneous Networks",
   * MLSys 2020, https://arxiv.org/abs/1812.06127): the loss minimised is the cross-entropy plus
   * μ/2·‖w − w₀‖², w₀ the weights at the start of the call, which keeps local steps near the
   * round's global head under skewed data. Reported losses are the cross-entropy alone. @default 0
   */
  proximalMu?: number;
  /**
   * Logit adjustment τ by the client's own label prior (Menon et al., "Long-tail learning via logit
   * adjustment", ICLR 2021, https://arxiv.org/abs/2007.07314; under federated label skew: Zhang et
   * al., "Federated Learning with Label Distribution Skew via Logits Calibration", ICML 2022): during
   * training only, the loss is the cross-entropy of softmax(z + τ·log π), π the (count + 1)/(n + C)
   * frequencies of the labels passed in. A client then stops spending its steps pushing down the
   * classes it rarely or never sees, which is what drags skewed local heads apart. Evaluation,
   * predictions and the reported training loss use the plain softmax. @default 0 (off)
   */
  logitAdjustment?: number;
  /**
   * Learning-rate multiplier per `tf.Variable` name (e.g. a smaller rate for pretrained layers,
   * see `TrainableTop.learningRateMultipliers`); each group gets its own optimizer. @default none: one rate
   */
  learningRateMultipliers?: ReadonlyMap<string, number>;
  /**
   * Transforms each training batch of feature rows before the model sees it (augmentation; see
   * augmentation.ts). Runs inside the batch's tidy. @default none
   */
  augment?: (batch: tf.Tensor2D, random: () => number) => tf.Tensor2D;
  /**
   * Tail averaging: from this epoch on (0-based), the weights at the end of each epoch are summed,
   * and the call ends with their mean instead of the last iterate. With a constant learning rate
   * the last iterate keeps bouncing around the optimum (imdb-glove's centralized head, Adam 0.02,
   * 20 epochs: 66.0 % in the run's order of the rows, 73.2 % in the data's own order; the mean of
   * the second half's epoch-end weights: 75.1 % and 76.2 %); the mean of the iterates does not (Polyak & Juditsky 1992, "Acceleration of Stochastic Approximation by
   * Averaging", https://doi.org/10.1137/0330046; Izmailov et al. 2018, "Averaging Weights Leads to
   * Wider Optima and Better Generalization", https://arxiv.org/abs/1803.05407). The returned
   * metrics stay those of the last epoch's training. @default none: the last iterate
   */
  averageFromEpoch?: number;
  /**
   * Drift correction (SCAFFOLD, Karimireddy et al. 2020, https://arxiv.org/abs/1910.06378): a fixed
   * vector added to the gradient of every step, by trainable weight name (`LayerVariable.name`).
   * The client passes λ·(c − c_i), c the federation's mean gradient at the round's model and c_i its
   * own ({@link meanGradient}), so its local steps follow the federation's descent direction rather
   * than its own skewed one. Added as the linear term ⟨w, correction⟩ to the loss, so a leftover
   * batch takes `share` of it as of everything else. Reported losses leave it out. @default none
   */
  gradientCorrection?: ReadonlyMap<string, tf.Tensor>;
  /** Called after every epoch. */
  onEpoch?: (epoch: number, metrics: { loss: number; accuracy: number }) => void;
}

export interface TrainResult {
  /** Mean training loss over the last epoch. */
  loss: number;
  /** Training accuracy over the last epoch. */
  accuracy: number;
  examples: number;
  steps: number;
}

export interface EvalResult {
  loss: number;
  accuracy: number;
  examples: number;
}

function checkData(head: tf.LayersModel, features: FeatureMatrix, labels: Int32Array): number {
  const inputShape = head.inputs[0]?.shape;
  const expected = inputShape?.[1];
  if (expected !== features.cols) {
    throw new FedtlError('BAD_SHAPE', `features have ${features.cols} columns but the head expects ${String(expected)}`);
  }
  if (labels.length !== features.rows) {
    throw new FedtlError('BAD_SHAPE', `${features.rows} feature rows but ${labels.length} labels`);
  }
  const classes = head.outputs[0]?.shape[1] ?? 0;
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (!(label >= 0 && label < classes)) throw new FedtlError('BAD_DATA', `label ${label} at row ${i} is outside [0, ${classes})`);
  }
  return classes;
}

/** Mean cross-entropy of softmax outputs; probabilities are clipped so log never sees 0. */
function crossEntropy(probabilities: tf.Tensor, oneHot: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.neg(tf.mean(tf.sum(tf.mul(oneHot, tf.log(tf.clipByValue(probabilities, 1e-7, 1))), 1))) as tf.Scalar);
}

/**
 * Log of the smoothed label prior, (count_c + 1)/(n + C): +1 keeps a class the rows never show at a
 * finite, small prior.
 */
export function logLabelPrior(labels: Int32Array, classes: number): Float32Array {
  const counts = new Float64Array(classes);
  for (const label of labels) counts[label]!++;
  return Float32Array.from(counts, (count) => Math.log((count + 1) / (labels.length + classes)));
}

/**
 * Mean cross-entropy of softmax(z + offset) from the softmax outputs p = softmax(z): log p differs
 * from z by a per-row constant, which the log-softmax removes, so this is the logit-adjusted loss.
 */
export function adjustedCrossEntropy(probabilities: tf.Tensor, oneHot: tf.Tensor, offset: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const adjusted = tf.logSoftmax(tf.add(tf.log(tf.clipByValue(probabilities, 1e-7, 1)), offset));
    return tf.neg(tf.mean(tf.sum(tf.mul(oneHot, adjusted), 1))) as tf.Scalar;
  });
}

function makeOptimizer(name: OptimizerName, learningRate: number): tf.Optimizer {
  return name === 'sgd' ? tf.train.sgd(learningRate) : tf.train.adam(learningRate);
}

/** Trains the head in place on feature rows; returns metrics of the last epoch. */
export async function trainHead(head: tf.LayersModel, features: FeatureMatrix, labels: Int32Array, options: TrainOptions = {}): Promise<TrainResult> {
  const epochs = options.epochs ?? TRAINING_DEFAULTS.epochs;
  const batchSize = options.batchSize ?? TRAINING_DEFAULTS.batchSize;
  const learningRate = options.learningRate ?? TRAINING_DEFAULTS.learningRate;
  if (!Number.isSafeInteger(epochs) || epochs < 1) throw new FedtlError('BAD_CONFIG', `epochs must be a positive integer, got ${epochs}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new FedtlError('BAD_CONFIG', `batchSize must be a positive integer, got ${batchSize}`);
  if (!(learningRate > 0 && Number.isFinite(learningRate))) throw new FedtlError('BAD_CONFIG', `learningRate must be positive, got ${learningRate}`);
  const averageFrom = options.averageFromEpoch ?? epochs;
  if (!Number.isSafeInteger(averageFrom) || averageFrom < 0) throw new FedtlError('BAD_CONFIG', `averageFromEpoch must be an integer ≥ 0, got ${averageFrom}`);
  const classes = checkData(head, features, labels);
  const rows = features.rows;
  if (rows === 0) return { loss: Number.NaN, accuracy: Number.NaN, examples: 0, steps: 0 };

  const rng = createRandom(options.seed ?? 0);
  const order = new Int32Array(rows);
  for (let i = 0; i < rows; i++) order[i] = i;
  const variables = head.trainableWeights.map((w) => w.read() as tf.Variable);
  const corrections = correctionsOf(head, options.gradientCorrection);
  const proximalMu = options.proximalMu ?? 0;
  if (!(proximalMu >= 0 && Number.isFinite(proximalMu))) throw new FedtlError('BAD_CONFIG', `proximalMu must be a finite number ≥ 0, got ${proximalMu}`);
  const tau = options.logitAdjustment ?? 0;
  if (!(tau >= 0 && Number.isFinite(tau))) throw new FedtlError('BAD_CONFIG', `logitAdjustment must be a finite number ≥ 0, got ${tau}`);
  const optimizerName = options.optimizer ?? TRAINING_DEFAULTS.optimizer;
  const optimizer = options.learningRateMultipliers
    ? new GroupedOptimizer(learningRate, options.learningRateMultipliers, (rate) => makeOptimizer(optimizerName, rate))
    : makeOptimizer(optimizerName, learningRate);
  const augmentRandom = createRandom(`${options.seed ?? 0}-augment`);
  // w₀ of the proximal term: a copy of the weights the call starts from.
  const anchors = proximalMu > 0 ? variables.map((v) => v.clone()) : [];
  // Float64 sums of the epoch-end weights, one per variable (only when averaging).
  const sums = averageFrom < epochs ? variables.map((v) => new Float64Array(v.size)) : [];
  let averaged = 0;
  const x = tf.tensor2d(features.values, [rows, features.cols]);
  const y = tf.tensor1d(labels, 'int32');
  const offset = tau > 0 ? tf.tensor1d(logLabelPrior(labels, classes).map((v) => tau * v)) : null;
  let steps = 0;
  let lossSum = 0;
  let correct = 0;
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      rng.shuffle(order);
      const lossParts: tf.Scalar[] = [];
      const correctParts: tf.Scalar[] = [];
      for (let start = 0; start < rows; start += batchSize) {
        const batchIndices = order.subarray(start, Math.min(rows, start + batchSize));
        // The step's loss is the batch's summed loss over B, not over the batch's own size: a leftover
        // batch of 8 at B = 64 then moves the weights 8/64 of a full step, so each of its examples weighs
        // what any other example of the epoch weighs. Averaged over its own size, those few examples took
        // a full step as the epoch's last update and swung the model from round to round.
        const share = batchIndices.length / batchSize;
        tf.tidy(() => {
          const index = tf.tensor1d(batchIndices, 'int32');
          const rows = tf.gather(x, index) as tf.Tensor2D;
          const xb = options.augment ? options.augment(rows, () => augmentRandom.nextFloat()) : rows;
          const yb = tf.gather(y, index);
          const oneHot = tf.oneHot(yb, classes);
          optimizer.minimize(
            () => {
              const predictions = head.apply(xb, { training: true }) as tf.Tensor;
              // Counted here because minimize() frees its intermediates, predictions included.
              correctParts.push(tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(predictions, 1), yb), 'float32'))));
              const cost = crossEntropy(predictions, oneHot);
              // Summed on the device and read once per epoch: a sync read per batch would stall the backend.
              lossParts.push(tf.keep(tf.mul(cost, batchIndices.length)));
              let objective = offset ? adjustedCrossEntropy(predictions, oneHot, offset) : cost;
              if (anchors.length > 0) {
                const distance = tf.addN(variables.map((v, i) => tf.sum(tf.square(tf.sub(v, anchors[i]!)))));
                objective = tf.add(objective, tf.mul(distance, proximalMu / 2)) as tf.Scalar;
              }
              if (corrections.length > 0) {
                objective = tf.add(objective, tf.addN(corrections.map(({ index, tensor }) => tf.sum(tf.mul(variables[index]!, tensor))))) as tf.Scalar;
              }
              // A leftover batch is `share` of a step, its proximal pull included.
              return share === 1 ? objective : (tf.mul(objective, share) as tf.Scalar);
            },
            false,
            variables,
          );
        });
        steps++;
      }
      const lossTotal = tf.addN(lossParts);
      const correctTotal = tf.addN(correctParts);
      lossSum = (await lossTotal.data())[0]!;
      correct = (await correctTotal.data())[0]!;
      tf.dispose([lossTotal, correctTotal, ...lossParts, ...correctParts]);
      if (epoch >= averageFrom) {
        for (const [i, v] of variables.entries()) {
          const values = (await v.data()) as Float32Array;
          const sum = sums[i]!;
          for (let k = 0; k < values.length; k++) sum[k]! += values[k]!;
        }
        averaged++;
      }
      options.onEpoch?.(epoch, { loss: lossSum / rows, accuracy: correct / rows });
    }
    if (averaged > 0) for (const [i, v] of variables.entries()) {
      const mean = Float32Array.from(sums[i]!, (value) => value / averaged);
      const value = tf.tensor(mean, v.shape, 'float32');
      v.assign(value);
      value.dispose();
    }
  } finally {
    tf.dispose([x, y, ...anchors, ...(offset ? [offset] : [])]);
    optimizer.dispose();
  }
  return { loss: lossSum / rows, accuracy: correct / rows, examples: rows, steps };
}

/** The corrections of `trainHead`, each with the index of its variable; shapes checked. */
function correctionsOf(head: tf.LayersModel, byName: ReadonlyMap<string, tf.Tensor> | undefined): { index: number; tensor: tf.Tensor }[] {
  if (!byName) return [];
  const out: { index: number; tensor: tf.Tensor }[] = [];
  const names = new Set<string>();
  head.trainableWeights.forEach((w, index) => {
    names.add(w.name);
    const tensor = byName.get(w.name);
    if (!tensor) return;
    if (tensor.shape.join(',') !== w.shape.join(',')) throw new FedtlError('BAD_SHAPE', `the gradient correction of ${w.name} is [${tensor.shape.join(',')}], the weight [${w.shape.join(',')}]`);
    out.push({ index, tensor });
  });
  for (const name of byName.keys()) if (!names.has(name)) throw new FedtlError('BAD_SHAPE', `a gradient correction names ${name}, which does not train`);
  return out;
}

export interface MeanGradientOptions {
  /** Rows per forward pass (memory only; the result is the same). @default 256 */
  batchSize?: number;
  /** As `TrainOptions.logitAdjustment`: the gradient is of the loss local training minimises. @default 0 */
  logitAdjustment?: number;
}

export interface MeanGradient {
  /** ∇ of the mean training loss over every row, by trainable weight name (`LayerVariable.name`). */
  gradients: Map<string, Float32Array>;
  /** Mean cross-entropy and accuracy of the model as it is, over the same rows. */
  loss: number;
  accuracy: number;
  examples: number;
}

/**
 * The gradient of the mean training loss over all of `features` at the model's current weights
 * (inference mode, no augmentation: the same rows give the same vector), summed batch by batch.
 * A client's control variate for drift correction (`TrainOptions.gradientCorrection`).
 */
export async function meanGradient(head: tf.LayersModel, features: FeatureMatrix, labels: Int32Array, options: MeanGradientOptions = {}): Promise<MeanGradient> {
  const classes = checkData(head, features, labels);
  const rows = features.rows;
  if (rows === 0) throw new FedtlError('BAD_DATA', 'a mean gradient needs at least one row');
  const batchSize = options.batchSize ?? 256;
  const tau = options.logitAdjustment ?? 0;
  if (!(tau >= 0 && Number.isFinite(tau))) throw new FedtlError('BAD_CONFIG', `logitAdjustment must be a finite number ≥ 0, got ${tau}`);
  const weights = head.trainableWeights;
  const variables = weights.map((w) => w.read() as tf.Variable);
  const offset = tau > 0 ? tf.tensor1d(logLabelPrior(labels, classes).map((v) => tau * v)) : null;
  const sums: tf.Tensor[] = variables.map((v) => tf.zerosLike(v));
  let lossSum = tf.scalar(0);
  let correctSum = tf.scalar(0);
  try {
    for (let start = 0; start < rows; start += batchSize) {
      const end = Math.min(rows, start + batchSize);
      const kept: tf.Scalar[] = [];
      const next = tf.tidy(() => {
        const xb = tf.tensor2d(features.values.subarray(start * features.cols, end * features.cols), [end - start, features.cols]);
        const yb = tf.tensor1d(labels.subarray(start, end), 'int32');
        const oneHot = tf.oneHot(yb, classes);
        const { grads } = tf.variableGrads(() => {
          const predictions = head.apply(xb, { training: false }) as tf.Tensor;
          // Kept past variableGrads, which frees its intermediates; disposed below.
          kept.push(tf.keep(tf.mul(crossEntropy(predictions, oneHot), end - start) as tf.Scalar));
          kept.push(tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(predictions, 1), yb), 'float32')) as tf.Scalar));
          const objective = offset ? adjustedCrossEntropy(predictions, oneHot, offset) : crossEntropy(predictions, oneHot);
          // Weighted by the batch's share of all rows: the sum over batches is the mean over rows.
          return tf.mul(objective, (end - start) / rows) as tf.Scalar;
        }, variables);
        return {
          sums: variables.map((v, i) => (grads[v.name] ? tf.add(sums[i]!, grads[v.name]!) : sums[i]!.clone())),
          loss: tf.add(lossSum, kept[0]!) as tf.Scalar,
          correct: tf.add(correctSum, kept[1]!) as tf.Scalar,
        };
      });
      tf.dispose([...sums, lossSum, correctSum, ...kept]);
      sums.splice(0, sums.length, ...next.sums);
      lossSum = next.loss;
      correctSum = next.correct;
    }
    const gradients = new Map<string, Float32Array>();
    for (const [i, w] of weights.entries()) gradients.set(w.name, (await sums[i]!.data()) as Float32Array);
    return { gradients, loss: (await lossSum.data())[0]! / rows, accuracy: (await correctSum.data())[0]! / rows, examples: rows };
  } finally {
    tf.dispose([...sums, lossSum, correctSum, ...(offset ? [offset] : [])]);
  }
}

/** Loss and accuracy of the head on feature rows, in batches. */
export async function evaluateHead(head: tf.LayersModel, features: FeatureMatrix, labels: Int32Array, options: { batchSize?: number } = {}): Promise<EvalResult> {
  const classes = checkData(head, features, labels);
  const rows = features.rows;
  if (rows === 0) return { loss: Number.NaN, accuracy: Number.NaN, examples: 0 };
  const batchSize = options.batchSize ?? 1024;
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < rows; start += batchSize) {
    const end = Math.min(rows, start + batchSize);
    const [loss, hits] = tf.tidy(() => {
      const xb = tf.tensor2d(features.values.subarray(start * features.cols, end * features.cols), [end - start, features.cols]);
      const yb = tf.tensor1d(labels.subarray(start, end), 'int32');
      const predictions = head.apply(xb, { training: false }) as tf.Tensor;
      return [
        tf.mul(crossEntropy(predictions, tf.oneHot(yb, classes)), end - start),
        tf.sum(tf.cast(tf.equal(tf.argMax(predictions, 1), yb), 'float32')),
      ];
    });
    lossSum += (await loss.data())[0]!;
    correct += (await hits.data())[0]!;
    tf.dispose([loss, hits]);
  }
  return { loss: lossSum / rows, accuracy: correct / rows, examples: rows };
}

/** Class probabilities for feature rows; plain numbers, no tensors escape. */
export async function predictHead(head: tf.LayersModel, features: FeatureMatrix): Promise<Float32Array> {
  const output = tf.tidy(() => head.apply(tf.tensor2d(features.values, [features.rows, features.cols]), { training: false }) as tf.Tensor);
  try {
    return (await output.data()) as Float32Array;
  } finally {
    output.dispose();
  }
}
