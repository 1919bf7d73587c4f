/**
 * Training-time augmentation of feature rows, for `trainHead`'s `augment` hook.
 *
 * Augmentation changes the *input*, so it applies only when a stage's features are the raw input
 * (the boundary is the base's input layer: a text model whose embedding table trains, or an image
 * model trained whole). Features cached deeper in a frozen base cannot be augmented without
 * running the base again every epoch; {@link augmenterFor} returns `undefined` for them.
 *
 * - Images: random crop (pad by `cropPadding` pixels, cut a random window of the original size),
 *   horizontal flip, and brightness shift — the standard CIFAR/ImageNet recipe (Krizhevsky et al.
 *   2012; He et al. 2016).
 * - Text: token dropout — each token replaced by padding with probability `tokenDropout`, i.e.
 *   left out of the mean (word dropout, Iyyer et al. 2015, "Deep Unordered Composition Rivals
 *   Syntactic Methods for Text Classification", https://aclanthology.org/P15-1162/).
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../core/errors.ts';
import { PAD_ID } from '../bases/tokenizer.ts';
import { trainsFromInput } from './fine-tune-model.ts';
import type { BaseInputSpec } from './frozen-base.ts';
import type { TrainableSchedule } from './trainable-set.ts';

export interface AugmentationSpec {
  /** Images: flip left–right with probability ½. @default false */
  flip?: boolean;
  /** Images: pad by this many pixels and crop a random window of the original size. @default 0 */
  cropPadding?: number;
  /** Images: add a uniform shift in [−b, b] (in input units) to every pixel of an example. @default 0 */
  brightness?: number;
  /** Text: probability of dropping each token. @default 0 */
  tokenDropout?: number;
}

export type Augmenter = (batch: tf.Tensor2D, random: () => number) => tf.Tensor2D;

/** Parses an untrusted augmentation spec (config file). */
export function parseAugmentation(value: unknown, source = 'augmentation'): AugmentationSpec {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FedtlError('BAD_CONFIG', `${source} must be an object like {"flip":true,"cropPadding":2}`);
  const record = value as Record<string, unknown>;
  const out: AugmentationSpec = {};
  for (const [key, raw] of Object.entries(record)) {
    if (key === 'flip') {
      if (typeof raw !== 'boolean') throw new FedtlError('BAD_CONFIG', `${source}.flip must be true or false`);
      out.flip = raw;
    } else if (key === 'cropPadding') {
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw) || raw < 0 || raw > 64) throw new FedtlError('BAD_CONFIG', `${source}.cropPadding must be an integer in [0, 64]`);
      out.cropPadding = raw;
    } else if (key === 'brightness') {
      if (typeof raw !== 'number' || !(raw >= 0 && raw <= 1)) throw new FedtlError('BAD_CONFIG', `${source}.brightness must be a number in [0, 1]`);
      out.brightness = raw;
    } else if (key === 'tokenDropout') {
      if (typeof raw !== 'number' || !(raw >= 0 && raw < 1)) throw new FedtlError('BAD_CONFIG', `${source}.tokenDropout must be a number in [0, 1)`);
      out.tokenDropout = raw;
    } else {
      throw new FedtlError('BAD_CONFIG', `${source}.${key} is not an augmentation; use flip, cropPadding, brightness or tokenDropout`);
    }
  }
  return out;
}

/** A JSON augmentation spec from a command-line flag (`--augment`), checked like a config file's. */
export function parseAugmentationJson(text: string, source = '--augment'): AugmentationSpec {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new FedtlError('BAD_CONFIG', `${source} must be JSON like {"flip":true,"cropPadding":2} or {"tokenDropout":0.2}: ${(cause as Error).message}`, { cause });
  }
  return parseAugmentation(json, source);
}

/** Token dropout on rows of token ids (as float32 values). */
export function tokenDropout(rate: number): Augmenter {
  return (batch, random) => {
    if (rate <= 0) return batch;
    const keep = new Float32Array(batch.size);
    for (let i = 0; i < keep.length; i++) keep[i] = random() < rate ? 0 : 1;
    // Dropped tokens become PAD_ID (0), which the mean leaves out.
    return tf.tidy(() => (PAD_ID === 0 ? tf.mul(batch, tf.tensor2d(keep, batch.shape)) : batch)) as tf.Tensor2D;
  };
}

/** Random crop, flip and brightness on rows of flattened `[size, size, channels]` images. */
export function imageAugmenter(size: number, channels: number, spec: AugmentationSpec): Augmenter {
  const padding = spec.cropPadding ?? 0;
  const brightness = spec.brightness ?? 0;
  return (batch, random) =>
    tf.tidy(() => {
      const n = batch.shape[0];
      let images = tf.reshape(batch, [n, size, size, channels]) as tf.Tensor4D;
      if (spec.flip) {
        const flips = Float32Array.from({ length: n }, () => (random() < 0.5 ? 1 : 0));
        const mask = tf.tensor4d(flips, [n, 1, 1, 1]);
        images = tf.add(tf.mul(tf.reverse(images, 2), mask), tf.mul(images, tf.sub(1, mask))) as tf.Tensor4D;
      }
      if (padding > 0) {
        const padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]]);
        const full = size + 2 * padding;
        const boxes: number[] = [];
        for (let i = 0; i < n; i++) {
          const dy = Math.floor(random() * (2 * padding + 1));
          const dx = Math.floor(random() * (2 * padding + 1));
          // Normalised corners of a size × size window whose pixel centres land on whole pixels.
          boxes.push(dy / (full - 1), dx / (full - 1), (dy + size - 1) / (full - 1), (dx + size - 1) / (full - 1));
        }
        images = tf.image.cropAndResize(padded as tf.Tensor4D, tf.tensor2d(boxes, [n, 4]), tf.range(0, n, 1, 'int32') as tf.Tensor1D, [size, size], 'nearest');
      }
      if (brightness > 0) {
        const shifts = Float32Array.from({ length: n }, () => (2 * random() - 1) * brightness);
        images = tf.add(images, tf.tensor4d(shifts, [n, 1, 1, 1])) as tf.Tensor4D;
      }
      return tf.reshape(images, [n, size * size * channels]) as tf.Tensor2D;
    });
}

/**
 * The augmenter for a stage, or `undefined` when nothing applies: the features are not the raw
 * input (see the module doc), or the spec asks for nothing that fits the input kind.
 */
export function augmenterFor(input: BaseInputSpec, featuresAreInput: boolean, spec: AugmentationSpec): Augmenter | undefined {
  if (!featuresAreInput) return undefined;
  if (input.kind === 'text') return (spec.tokenDropout ?? 0) > 0 ? tokenDropout(spec.tokenDropout!) : undefined;
  if (input.kind === 'image' && (spec.flip || (spec.cropPadding ?? 0) > 0 || (spec.brightness ?? 0) > 0)) return imageAugmenter(input.size, input.channels, spec);
  return undefined;
}

/**
 * Why `spec` would change nothing in a run that trains `schedule` (null: the head alone) on
 * `model`, or null when some stage applies it. A spec that asks nothing of this input kind, or a
 * schedule with no stage whose features are the raw input, would otherwise be ignored without a
 * word; callers warn with this text.
 */
export function ineffectiveAugmentation(input: BaseInputSpec, spec: AugmentationSpec, model: tf.LayersModel | null, schedule: TrainableSchedule | null): string | null {
  const asked = Object.values(spec).some((value) => value !== undefined && value !== false && value !== 0);
  if (!asked) return null;
  const what = `augmentation ${JSON.stringify(spec)}`;
  if (!augmenterFor(input, true, spec)) {
    const fits = input.kind === 'text' ? 'tokenDropout' : input.kind === 'image' ? 'flip, cropPadding or brightness' : 'nothing';
    return `${what} is ignored: it asks nothing that applies to ${input.kind} input (${fits})`;
  }
  const atInput = model !== null && schedule !== null && schedule.stages.some((stage) => trainsFromInput(model, stage));
  if (atInput) return null;
  const whole = input.kind === 'text' ? 'the embedding table' : 'the whole base';
  return `${what} is ignored: it applies only in stages that train from the raw input (${whole}), and no stage of the trainable set does`;
}
