/**
 * Deterministic, stratified train/test splits and seeded example selection.
 *
 * All randomness comes from the project's one generator (`shared/math/random.ts`), forked by
 * purpose, so a split never depends on how much randomness some other step consumed.
 */
import { FedtlError } from '../../shared/core/errors.ts';
import { createRandom } from '../../shared/math/random.ts';
import { subset, type LabeledDataset } from './dataset.ts';

/** `[0, 1, …, n-1]` shuffled by the seeded generator `createRandom(seed).fork(purpose)`. */
function seededPermutation(n: number, seed: number, purpose: string): Uint32Array {
  const indices = new Uint32Array(n);
  for (let i = 0; i < n; i++) indices[i] = i;
  return createRandom(seed).fork(purpose).shuffle(indices);
}

/** Options of {@link selectIndices}. */
export interface SelectIndicesOptions {
  /** Keep a seeded random sample of this many (all when larger than `total`). @default all */
  limit?: number | undefined;
  /** Seed of the sample or shuffle. */
  seed: number;
  /** Without `limit`, return every index in a seeded shuffled order instead of file order. @default false */
  shuffleAll?: boolean;
}

/**
 * Which of `total` examples a packaged loader keeps: all of them in file order when `limit` is
 * undefined (shuffled when `shuffleAll`), otherwise a seeded uniform sample of `limit` distinct
 * indices, in sampled order.
 *
 * @throws FedtlError `BAD_CONFIG` when `limit` is not a positive integer
 * @example selectIndices(60_000, { limit: 500, seed: 1 }) // 500 distinct indices, same for seed 1
 */
export function selectIndices(total: number, options: SelectIndicesOptions): Uint32Array {
  const { limit, seed } = options;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new FedtlError('BAD_CONFIG', `limit must be a positive integer, got ${String(limit)}; omit it to keep every example.`);
  }
  if (limit === undefined) {
    if (options.shuffleAll) return seededPermutation(total, seed, 'select-all');
    const all = new Uint32Array(total);
    for (let i = 0; i < total; i++) all[i] = i;
    return all;
  }
  return Uint32Array.from(createRandom(seed).fork('select-sample').sample(Math.min(limit, total), total));
}

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
 * Test examples per class: `count × testFraction` rounded so that the total is exactly
 * `round(N × testFraction)` (largest remainder: classes with the largest fractional parts get
 * the extra example; rounding each class on its own made 2,000/2,000 come out 1,999/2,001), then
 * at least one and never all of a class that has two or more.
 *
 * @example stratifiedCounts([2001, 1999], 0.5) // [1001, 999] (2,000 in total)
 */
export function stratifiedCounts(classSizes: readonly number[], testFraction: number): number[] {
  const total = classSizes.reduce((a, b) => a + b, 0);
  const exact = classSizes.map((n) => n * testFraction);
  const counts = exact.map((x) => Math.floor(x));
  let missing = Math.round(total * testFraction) - counts.reduce((a, b) => a + b, 0);
  const byRemainder = exact.map((x, c) => ({ c, remainder: x - Math.floor(x) })).sort((a, b) => b.remainder - a.remainder || a.c - b.c);
  for (const { c } of byRemainder) {
    if (missing <= 0) break;
    counts[c]! += 1;
    missing--;
  }
  return counts.map((count, c) => {
    const n = classSizes[c] as number;
    return n >= 2 ? Math.min(Math.max(count, 1), n - 1) : count;
  });
}

/**
 * Stratified split of example indices: each class contributes its share of the test side
 * ({@link stratifiedCounts}: the total is exactly `round(N × testFraction)`) — at least one and
 * never all of a class when it has two or more — so class balance is the same on both sides. Both sides come out shuffled (with seeds
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
  for (const i of seededPermutation(labels.length, seed, 'split-order')) byClass[labels[i] as number]?.push(i);
  const train: number[] = [];
  const test: number[] = [];
  const counts = stratifiedCounts(byClass.map((members) => members.length), testFraction);
  byClass.forEach((members, c) => {
    const testCount = counts[c] as number;
    for (let k = 0; k < members.length; k++) (k < testCount ? test : train).push(members[k] as number);
  });
  return {
    train: createRandom(seed).fork('split-train').shuffle(Uint32Array.from(train)),
    test: createRandom(seed).fork('split-test').shuffle(Uint32Array.from(test)),
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

/** A client with fewer examples than this keeps them all for training (a split would leave too few). */
export const MIN_EXAMPLES_FOR_VALIDATION = 10;

/**
 * A client's own split of its data into training rows and a validation slice for federated
 * evaluation: the stratified {@link splitIndices} with the client's seed, or no split at all when
 * `validationFraction` is 0 or the client holds fewer than {@link MIN_EXAMPLES_FOR_VALIDATION}
 * examples. `fedtl client` and every simulated client (virtual, socket, process) call this one
 * function, so with the same seed they train on the same rows.
 *
 * @returns null when every example trains
 * @throws FedtlError `BAD_CONFIG` when `validationFraction` is outside [0, 1)
 */
export function validationSplit(labels: Int32Array, classCount: number, validationFraction: number, seed: number): TrainTestIndices | null {
  if (!(validationFraction >= 0 && validationFraction < 1)) {
    throw new FedtlError('BAD_CONFIG', `validation fraction must be in [0, 1), got ${validationFraction}; 0 keeps every example for training.`);
  }
  if (validationFraction === 0 || labels.length < MIN_EXAMPLES_FOR_VALIDATION) return null;
  return splitIndices(labels, classCount, { testFraction: validationFraction, seed });
}
