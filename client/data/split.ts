/**
 * Deterministic, stratified train/test splits.
 */
import { FedtlError } from '../../shared/core/errors.ts';
import { subset, type LabeledDataset } from './dataset.ts';
import { seededPermutation, shuffleInPlace } from './seeded-random.ts';

export interface SplitOptions {
  /** Fraction of each class held out for testing, in (0, 1). @default 0.2 */
  testFraction?: number;
  /** Seed of the shuffles; same seed and data, same split. @default 0 */
  seed?: number;
}

export interface TrainTestIndices {
  train: Uint32Array;
  test: Uint32Array;
}

/**
 * Stratified split of example indices: each class contributes `round(count × testFraction)`
 * examples to the test side — at least one and never all of them when the class has two or
 * more — so class balance is the same on both sides. Both sides come out shuffled (with seeds
 * derived from `seed`), because sources such as image folders are ordered by class and a
 * trainer reading them in order would see one class at a time.
 */
export function splitIndices(labels: Int32Array, classCount: number, options: SplitOptions = {}): TrainTestIndices {
  const testFraction = options.testFraction ?? 0.2;
  const seed = options.seed ?? 0;
  if (!(testFraction > 0 && testFraction < 1)) {
    throw new FedtlError('BAD_CONFIG', `testFraction must be strictly between 0 and 1, got ${testFraction}.`);
  }
  const byClass: number[][] = Array.from({ length: classCount }, () => []);
  // Visiting examples in one seeded order (rather than shuffling per class) keeps the split
  // independent of how many classes there are.
  for (const i of seededPermutation(labels.length, seed)) byClass[labels[i] as number]?.push(i);
  const train: number[] = [];
  const test: number[] = [];
  for (const members of byClass) {
    const n = members.length;
    let testCount = Math.round(n * testFraction);
    if (n >= 2) testCount = Math.min(Math.max(testCount, 1), n - 1);
    for (let k = 0; k < n; k++) (k < testCount ? test : train).push(members[k] as number);
  }
  return {
    train: shuffleInPlace(Uint32Array.from(train), seed ^ 0x5eed1),
    test: shuffleInPlace(Uint32Array.from(test), seed ^ 0x5eed2),
  };
}

/**
 * Splits a dataset into stratified train and test datasets (see {@link splitIndices}).
 *
 * @example
 * const { train, test } = splitTrainTest(imdb, { testFraction: 0.2, seed: 42 });
 */
export function splitTrainTest(dataset: LabeledDataset, options: SplitOptions = {}): { train: LabeledDataset; test: LabeledDataset } {
  const { train, test } = splitIndices(dataset.labels, dataset.classNames.length, options);
  return {
    train: subset(dataset, train, { name: `${dataset.name}-train` }),
    test: subset(dataset, test, { name: `${dataset.name}-test` }),
  };
}
