/**
 * The "federated from scratch" baselines: the same federation, the same clients and the same
 * rounds, on features that owe nothing to pretraining. A transfer model is only worth its base if
 * it beats the strongest of them, so every one listed in the config is run and the strongest is
 * the one the pretrained model is judged against ({@link negativeTransfer}).
 */
import type { LabeledDataset } from '../../client/data/dataset.ts';
import { FedtlError } from '../../shared/core/errors.ts';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import type { HeadSpec } from '../../shared/model/head.ts';
import type { ScratchFeatures, SimulationConfig } from './presets.ts';
import type { RoundRecord } from './report-html.ts';
import { bagOfWords, pixelRows, randomEmbeddingRows } from './simulation-data.ts';

/** What each from-scratch baseline is, in words for the report. */
export const SCRATCH_DESCRIPTIONS: Record<ScratchFeatures, string> = {
  'tf-idf': 'tf-idf bag-of-words over the 5,000 most frequent training words (sublinear tf, smoothed idf)',
  'bag-of-words': 'bag-of-words counts over the 5,000 most frequent training words',
  'random-embedding': 'the same base architecture with random instead of pretrained word vectors',
  pixels: 'raw pixels',
  cnn: 'a small CNN on raw pixels, the pretrained base\'s architecture from random weights',
};

/** One from-scratch federation's result. */
export interface ScratchBaseline {
  /** Which features it trained on (a {@link ScratchFeatures} name). */
  features: ScratchFeatures;
  description: string;
  /** Test accuracy of its final global model; null if never evaluated. */
  accuracy: number | null;
  rounds: RoundRecord[];
}

/**
 * The train and test rows of one from-scratch baseline, as flat numeric rows (`tensor` examples)
 * that an identity base passes through unchanged.
 *
 * @throws FedtlError `BAD_CONFIG` when the features do not fit the data (text features on images…)
 */
export function scratchRows(features: ScratchFeatures, train: LabeledDataset, test: LabeledDataset, base: FrozenBase | null, seed: number): [LabeledDataset, LabeledDataset] {
  const text = train.examples.kind === 'text';
  const needsText = features !== 'pixels' && features !== 'cnn';
  if (needsText !== text) {
    throw new FedtlError('BAD_CONFIG', `the "${features}" from-scratch baseline needs ${needsText ? 'text' : 'image'} data, but ${train.name} holds ${train.examples.kind} examples`);
  }
  switch (features) {
    case 'tf-idf':
    case 'bag-of-words': {
      const [trainRows, testRows] = bagOfWords(train, [test], { weighting: features === 'tf-idf' ? 'tf-idf' : 'counts' });
      return [trainRows!, testRows!];
    }
    case 'random-embedding': {
      if (!base) throw new FedtlError('BAD_CONFIG', 'the "random-embedding" from-scratch baseline needs the text base whose architecture it copies');
      const [trainRows, testRows] = randomEmbeddingRows(base, [train, test], seed);
      return [trainRows!, testRows!];
    }
    case 'pixels':
    case 'cnn':
      return [pixelRows(train), pixelRows(test)];
    default:
      throw new FedtlError('BAD_CONFIG', `unknown from-scratch baseline ${String(features)}`);
  }
}

/**
 * The head a from-scratch baseline trains: the config's head, and for `cnn` the CNN's
 * convolutions and hidden layers in front of it.
 */
export function scratchHead(features: ScratchFeatures, config: Pick<SimulationConfig, 'head' | 'scratchCnn'>): HeadSpec {
  if (features !== 'cnn') return config.head;
  if (!config.scratchCnn) throw new FedtlError('BAD_CONFIG', 'the cnn from-scratch baseline needs scratchCnn (its convolutions)');
  return { ...config.head, conv: config.scratchCnn.conv, hidden: [...config.scratchCnn.hidden, ...config.head.hidden] };
}

/** The baseline with the highest final accuracy (the first listed wins a tie), or undefined for none. */
export function strongestScratch(baselines: readonly ScratchBaseline[]): ScratchBaseline | undefined {
  let best: ScratchBaseline | undefined;
  for (const baseline of baselines) {
    if (baseline.accuracy === null) continue;
    if (!best || baseline.accuracy > best.accuracy!) best = baseline;
  }
  return best;
}

/** The pretrained model trailing a from-scratch baseline: the "negative transfer" of the report. */
export interface NegativeTransfer {
  /** The strongest from-scratch baseline's features. */
  features: ScratchFeatures;
  pretrainedAccuracy: number;
  scratchAccuracy: number;
  /** `scratchAccuracy − pretrainedAccuracy`, > 0. */
  gap: number;
  /** One plain sentence for the CLI summary and the report. */
  message: string;
}

/**
 * Negative transfer, said plainly: when the federated model on the pretrained base ends below the
 * strongest from-scratch baseline of the same federation, the base hurts rather than helps on
 * this task (Rosenstein et al. 2005, "To transfer or not to transfer"; Wang et al. 2019,
 * "Characterizing and Avoiding Negative Transfer", https://arxiv.org/abs/1811.09751).
 *
 * @returns null when the pretrained model is at least as good, or when either was never evaluated
 */
export function negativeTransfer(pretrainedAccuracy: number | null, strongest: ScratchBaseline | undefined): NegativeTransfer | null {
  if (pretrainedAccuracy === null || !strongest || strongest.accuracy === null) return null;
  const gap = strongest.accuracy - pretrainedAccuracy;
  if (!(gap > 0)) return null;
  const points = (value: number) => `${(100 * value).toFixed(1)}%`;
  return {
    features: strongest.features,
    pretrainedAccuracy,
    scratchAccuracy: strongest.accuracy,
    gap,
    message:
      `negative transfer: the pretrained model (${points(pretrainedAccuracy)}) trails the same federation trained from scratch on ${strongest.features} ` +
      `(${points(strongest.accuracy)}) by ${(100 * gap).toFixed(1)} points; on this task the pretrained base does not pay.`,
  };
}
