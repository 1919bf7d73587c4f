/**
 * From a client's raw data to cached base features: the one place where a data set meets a base.
 *
 * Text goes through the base's tokenizer, images through the loaders' pixel preparation, numeric
 * rows straight in. The result is cached by (base hash, data fingerprint), so the base runs once
 * per example however many epochs and rounds follow.
 */
import * as tf from '@tensorflow/tfjs';
import { FedtlError } from '../shared/core/errors.ts';
import { Tokenizer } from '../shared/bases/tokenizer.ts';
import type { FeatureMatrix } from '../shared/model/feature-matrix.ts';
import { extractJointFeatures, type BatchSource, type FeatureCache, type JointEmbedder } from '../shared/model/feature-cache.ts';
import type { FrozenBase } from '../shared/model/frozen-base.ts';
import type { LabeledDataset } from './data/dataset.ts';
import { prepareInputs } from './data/prepare-inputs.ts';

export interface ComputeFeaturesOptions {
  /** Where features are cached; without one, they are computed every call. */
  cache?: FeatureCache;
  /** Examples per base forward pass. @default 64 */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/** Builds the base-input batch source for a data set, checking that the data fits the base. */
export function batchSourceFor(base: FrozenBase, dataset: LabeledDataset): BatchSource {
  const input = base.input;
  const kind = dataset.examples.kind;
  if (input.kind === 'text') {
    if (kind !== 'text') throw new FedtlError('BAD_DATA', `base ${base.name} reads text, but ${dataset.name} holds ${kind} examples`);
    const tokenizer = new Tokenizer(input.vocabulary, { sequenceLength: input.sequenceLength });
    const texts = dataset.examples.texts;
    return (start, end) => tokenizer.encodeBatch(texts.slice(start, end));
  }
  if (input.kind === 'image') {
    if (kind !== 'image') throw new FedtlError('BAD_DATA', `base ${base.name} reads images, but ${dataset.name} holds ${kind} examples`);
    return (start, end) => {
      const prepared = prepareInputs(dataset, input, { start, end });
      if (prepared.kind !== 'image') throw new FedtlError('INTERNAL', 'image preparation returned another kind');
      return tf.tensor4d(prepared.data, prepared.shape);
    };
  }
  if (kind === 'text') throw new FedtlError('BAD_DATA', `base ${base.name} reads numeric rows, but ${dataset.name} holds text`);
  return (start, end) => {
    const prepared = prepareInputs(dataset, input, { start, end });
    if (prepared.kind === 'text') throw new FedtlError('INTERNAL', 'tensor preparation returned text');
    const rows = end - start;
    const width = prepared.data.length / rows;
    if (width !== input.size) throw new FedtlError('BAD_DATA', `${dataset.name} rows have ${width} values; base ${base.name} expects ${input.size}`);
    return tf.tensor2d(prepared.data, [rows, width]);
  };
}

/** The data set's base features, from the cache when it has them. */
export async function computeFeatures(base: FrozenBase, dataset: LabeledDataset, options: ComputeFeaturesOptions = {}): Promise<FeatureMatrix> {
  const [features] = await computeJointFeatures({ bases: [base], embed: (batch) => [base.embed(batch)] }, dataset, options);
  return features!;
}

/**
 * {@link computeFeatures} for every base of `joint` (see `jointFeatureBases`): one pass of the
 * network when any of them is missing from the cache, none when all are cached.
 */
export async function computeJointFeatures(joint: JointEmbedder, dataset: LabeledDataset, options: ComputeFeaturesOptions = {}): Promise<FeatureMatrix[]> {
  const first = joint.bases[0];
  if (!first) return [];
  const source = batchSourceFor(first, dataset);
  const compute = () =>
    extractJointFeatures(joint, dataset.size, source, {
      ...(options.batchSize !== undefined ? { batchSize: options.batchSize } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  if (!options.cache) return compute();
  if (joint.bases.length === 1) return [await options.cache.get(first.hash, dataset.fingerprint, dataset.size, async () => (await compute())[0]!)];
  return options.cache.getJoint(joint.bases.map((base) => base.hash), dataset.fingerprint, dataset.size, compute);
}
