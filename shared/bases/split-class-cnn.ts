/**
 * A small CNN base pretrained by fedtl itself on *source* classes of an image data set, so that a
 * federation can adapt it to the *target* classes its clients hold: split-class transfer, as in the
 * few-shot and transfer literature (Yosinski et al. 2014, "How transferable are features in deep
 * neural networks?", https://arxiv.org/abs/1411.1792, which splits ImageNet's classes in two
 * halves the same way).
 *
 * The build is seeded end to end (initial weights, batch order) on one thread, so the same source
 * data gives the same weights; the cache then verifies the result by hash like any other base.
 * The source data is handed in by the caller (`shared/` does not read data sets), and what it was
 * goes into the sidecar's `origin`, which exports carry on as the base's provenance.
 *
 * The model: the input image, the convolutions of {@link SplitClassCnnOptions.conv} (ReLU, `same`
 * padding) and a flatten; the base is cut at the flatten. While pretraining, a dense ReLU layer and
 * a softmax over the source classes sit on top; they are dropped afterwards, because the dense
 * layer's 64 source-specific units measured worse as target features than the convolutions'
 * output (linear probes on 300 target images). A from-scratch baseline with the same architecture
 * is `buildHead` with the same `conv`.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { createLogger, type Logger } from '../core/log.ts';
import { createRandom } from '../math/random.ts';
import { fileSaveHandler, writeSidecar, type BaseSidecar } from '../model/base-loader.ts';
import { convLayers, type ConvFrontSpec } from '../model/head.ts';
import { hashModelDir } from '../model/model-hash.ts';
import { selectBackend } from '../tf/select-backend.ts';

/** Source images for the pretraining, 8-bit, `[n, size, size, channels]`. */
export interface SplitClassSource {
  pixels: Uint8Array;
  size: number;
  channels: number;
  /** Labels in [0, classes). */
  labels: Int32Array;
  classes: number;
  /** What the data is (package, split, classes, count): written into the base's provenance. */
  description: string;
}

/** Options of {@link buildSplitClassCnnBase}. */
export interface SplitClassCnnOptions {
  /** Base name written into the sidecar. */
  name: string;
  /** The convolutions; `inputShape` must match the source images. */
  conv: ConvFrontSpec;
  /** Units of the dense layer between the convolutions and the source softmax while pretraining. @default 64 */
  pretrainHidden?: number;
  /** Passes over the source images. @default 2 */
  epochs?: number;
  /** @default 64 */
  batchSize?: number;
  /** Adam's learning rate. @default 0.002 */
  learningRate?: number;
  /** Seed of the initial weights and of the batch order. @default 0 */
  seed?: number;
  /** @default createLogger('bases') */
  logger?: Logger;
}

const PREFIX = 'base';

/**
 * Version of the pretraining code below: bump it when a change to the loop would change the
 * weights a recipe gives, so caches built by the old code are rebuilt rather than trusted.
 */
const TRAINING_CODE_VERSION = 1;

/** The documented defaults of {@link SplitClassCnnOptions}. */
const DEFAULTS = { pretrainHidden: 64, epochs: 2, batchSize: 64, learningRate: 0.002, seed: 0 };

/**
 * The cache key of a split-class base: its name and a digest of everything that decides its
 * weights (the source data as described by the caller, the convolutions, the training recipe and
 * the training code's version). The cache verifies a base only against its own recorded hash, so a
 * recipe change must change the directory it lives in, or an old build would be served as the new.
 *
 * @param source what the source data is (package, classes, count, sampling seed): any change
 *   there must change this value
 */
export function splitClassCnnCacheKey(name: string, source: string, options: Omit<SplitClassCnnOptions, 'name' | 'logger'>): string {
  const recipe = {
    code: TRAINING_CODE_VERSION,
    source,
    conv: options.conv,
    pretrainHidden: options.pretrainHidden ?? DEFAULTS.pretrainHidden,
    epochs: options.epochs ?? DEFAULTS.epochs,
    batchSize: options.batchSize ?? DEFAULTS.batchSize,
    learningRate: options.learningRate ?? DEFAULTS.learningRate,
    seed: options.seed ?? DEFAULTS.seed,
  };
  return `${name}-${createHash('sha256').update(JSON.stringify(recipe)).digest('hex').slice(0, 12)}`;
}
/** The network up to its embedding (the flattened convolutions), on `[n, h, w, c]` images in [0, 1]. Weights seeded. */
export function splitClassCnnModel(conv: ConvFrontSpec, seed: number): tf.LayersModel {
  const input = tf.input({ shape: conv.inputShape, name: `${PREFIX}_input` });
  let x: tf.SymbolicTensor = input;
  for (const layer of convLayers(conv, PREFIX, seed)) x = layer.apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: x, name: 'split_class_cnn' });
}

/**
 * Pretrains the CNN on the source images and writes the base directory (`model.json`,
 * `weights.bin`, `fedtl-base.json`) into `dir`. Input: `[n, size, size, channels]` in [0, 1].
 *
 * @returns the sidecar written, whose `origin` states the source data and the training recipe
 * @throws FedtlError `BAD_DATA` when the source images do not fit `conv.inputShape`
 */
export async function buildSplitClassCnnBase(dir: string, source: SplitClassSource, options: SplitClassCnnOptions): Promise<BaseSidecar> {
  const epochs = options.epochs ?? DEFAULTS.epochs;
  const batchSize = options.batchSize ?? DEFAULTS.batchSize;
  const learningRate = options.learningRate ?? DEFAULTS.learningRate;
  const seed = options.seed ?? DEFAULTS.seed;
  const log = options.logger ?? createLogger('bases');
  const [height, width, channels] = options.conv.inputShape;
  const pixelsPerImage = source.size * source.size * source.channels;
  const count = source.labels.length;
  if (height !== source.size || width !== source.size || channels !== source.channels || source.pixels.length !== count * pixelsPerImage) {
    throw new FedtlError('BAD_DATA', `source images are ${source.size}x${source.size}x${source.channels} (${source.pixels.length} bytes for ${count} labels), but the base expects ${options.conv.inputShape.join('x')}`);
  }
  // Pretraining convolutions is far too slow on the pure-JS cpu backend: use the fastest there is.
  await selectBackend({ log: false });
  const pretrainHidden = options.pretrainHidden ?? DEFAULTS.pretrainHidden;
  const trunk = splitClassCnnModel(options.conv, seed);
  const embeddingSize = trunk.outputs[0]!.shape[1]!;
  const classifier = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [embeddingSize], units: pretrainHidden, activation: 'relu', name: `${PREFIX}_source_hidden`, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 300 }) }),
      // Logits: softmaxCrossEntropy applies the softmax itself.
      tf.layers.dense({ units: source.classes, name: `${PREFIX}_source_classes`, kernelInitializer: tf.initializers.glorotUniform({ seed: seed + 301 }) }),
    ],
  });
  const optimizer = tf.train.adam(learningRate);
  const random = createRandom(`split-class-cnn-${seed}`);
  const order = Int32Array.from({ length: count }, (_, i) => i);
  const started = Date.now();
  try {
    for (let epoch = 0; epoch < epochs; epoch++) {
      random.shuffle(order);
      let lossSum = 0;
      let batches = 0;
      for (let start = 0; start < count; start += batchSize) {
        const rows = order.subarray(start, Math.min(count, start + batchSize));
        const images = new Float32Array(rows.length * pixelsPerImage);
        rows.forEach((row, i) => {
          for (let p = 0; p < pixelsPerImage; p++) images[i * pixelsPerImage + p] = source.pixels[row * pixelsPerImage + p]! / 255;
        });
        const labels = Int32Array.from(rows, (row) => source.labels[row]!);
        const loss = tf.tidy(() => {
          const x = tf.tensor4d(images, [rows.length, height, width, channels]);
          const y = tf.oneHot(tf.tensor1d(labels, 'int32'), source.classes);
          return optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, classifier.apply(trunk.apply(x) as tf.Tensor) as tf.Tensor) as tf.Scalar, true) as tf.Scalar;
        });
        lossSum += (await loss.data())[0]!;
        loss.dispose();
        batches++;
      }
      log.info(`${options.name}: pretraining epoch ${epoch + 1}/${epochs}, loss ${(lossSum / batches).toFixed(4)}, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
    for (const layer of trunk.layers) layer.trainable = false;
    await mkdir(dir, { recursive: true });
    await trunk.save(fileSaveHandler(dir));
  } finally {
    optimizer.dispose();
    trunk.dispose();
    classifier.dispose();
  }
  const recipe = `${options.conv.layers.map((l) => `conv ${l.kernelSize}x${l.kernelSize}/${l.strides} x${l.filters}`).join(', ')}, flatten → ${embeddingSize}`;
  const sidecar: BaseSidecar = {
    format: 'fedtl-base',
    version: 1,
    name: options.name,
    kind: 'layers',
    input: { kind: 'image', size: source.size, channels: source.channels, range: [0, 1] },
    embeddingSize,
    hash: await hashModelDir(dir),
    origin:
      `Small CNN (${recipe}) pretrained by fedtl from random weights on ${source.description}: ${epochs} epochs, batch ${batchSize}, ` +
      `Adam lr ${learningRate}, seed ${seed}, ${((Date.now() - started) / 1000).toFixed(0)} s on tfjs ${tf.version.tfjs} (${tf.getBackend()}). ` +
      `Cut at the flatten; the source classifier used while pretraining (dense ${pretrainHidden} ReLU, softmax) is dropped. All layers frozen.`,
  };
  await writeSidecar(dir, sidecar);
  return sidecar;
}
