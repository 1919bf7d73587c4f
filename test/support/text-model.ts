/** Shared fixtures of the export and predict tests: a small GloVe text model and how to check it. */
import * as tf from '@tensorflow/tfjs';
import { expect } from 'vitest';
import type { FrozenBase } from '../../shared/model/frozen-base.ts';
import type { HeadSpec } from '../../shared/model/head.ts';

export const TEXT_HEAD: HeadSpec = { hidden: [8], activation: 'relu', dropout: 0.1, classes: 2 };

/** Reviews that exercise the tokenizer: punctuation, HTML breaks, contractions, unknown words, empty. */
export const REVIEWS = [
  'A wonderful, moving film with a brilliant cast.',
  "I didn't like it. Boring and far too long.<br /><br />Avoid.",
  'the plot was fine but the acting was terrible',
  'zzqx unknownword', // all out of vocabulary
  '',
];

/** A small vocabulary keeps the GloVe build and the export fast; the model is the same kind of thing. */
export const SMALL_GLOVE = { vocabularySize: 2000, sequenceLength: 32 } as const;

/** Probabilities of base.embed → head, the reference an exported model must reproduce. */
export async function reference(base: FrozenBase, head: tf.LayersModel, x: tf.Tensor): Promise<Float32Array> {
  const out = tf.tidy(() => head.predict(base.embed(x)) as tf.Tensor);
  const values = (await out.data()) as Float32Array;
  out.dispose();
  return values;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}
