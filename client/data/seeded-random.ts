/**
 * Seeded randomness for data selection and splits.
 *
 * Selections and splits must be reproducible across machines and runs (two simulated hospitals
 * given the same seed must hold the same examples), so nothing here touches `Math.random`.
 */
import { FedtlError } from '../../shared/core/errors.ts';

/**
 * mulberry32: a 32-bit generator, small and fast, good enough for shuffling data (not for keys).
 * Returns floats in [0, 1).
 */
export function createRandom(seed: number): () => number {
  // `>>> 0` folds any number (negative, fractional, > 2^32) into a 32-bit state deterministically.
  let state = Math.trunc(seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Shuffles `values` in place (Fisher–Yates) with a seeded generator and returns it. */
export function shuffleInPlace<T extends { length: number; [index: number]: number }>(values: T, seed: number): T {
  const random = createRandom(seed);
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const a = values[i] as number;
    values[i] = values[j] as number;
    values[j] = a;
  }
  return values;
}

/** `[0, 1, …, n-1]` shuffled with `seed`. */
export function seededPermutation(n: number, seed: number): Uint32Array {
  const indices = new Uint32Array(n);
  for (let i = 0; i < n; i++) indices[i] = i;
  return shuffleInPlace(indices, seed);
}

/**
 * Which of `total` examples a packaged loader keeps: all of them in file order when `limit` is
 * undefined, otherwise a seeded random sample of `limit` (in sampled order).
 */
export function selectIndices(total: number, options: { limit?: number | undefined; seed: number; shuffleAll?: boolean }): Uint32Array {
  const { limit, seed } = options;
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) {
    throw new FedtlError('BAD_CONFIG', `limit must be a positive integer, got ${String(limit)}; omit it to keep every example.`);
  }
  if (limit === undefined) {
    if (options.shuffleAll) return seededPermutation(total, seed);
    const all = new Uint32Array(total);
    for (let i = 0; i < total; i++) all[i] = i;
    return all;
  }
  return seededPermutation(total, seed).slice(0, Math.min(limit, total));
}
