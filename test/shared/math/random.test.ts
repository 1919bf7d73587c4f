import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { Random, createRandom } from '../../../shared/math/index.ts';

function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return sum / values.length;
}

function variance(values: ArrayLike<number>): number {
  const m = mean(values);
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += (values[i]! - m) ** 2;
  return sum / (values.length - 1);
}

describe('Random: determinism and streams', () => {
  it('gives the same sequence for the same seed and a different one for another seed', () => {
    const a = createRandom(42);
    const b = createRandom(42);
    const c = createRandom(43);
    const seqA = Array.from({ length: 20 }, () => a.nextUint32());
    const seqB = Array.from({ length: 20 }, () => b.nextUint32());
    const seqC = Array.from({ length: 20 }, () => c.nextUint32());
    expect(seqA).toEqual(seqB);
    expect(seqA).not.toEqual(seqC);
  });

  it('accepts string seeds and large integer seeds, rejects non-integers', () => {
    expect(new Random('run-1').nextUint32()).toBe(new Random('run-1').nextUint32());
    expect(new Random(2 ** 40).nextUint32()).not.toBe(new Random(0).nextUint32());
    expect(() => new Random(1.5)).toThrow(FedtlError);
    expect(() => new Random(Number.NaN)).toThrow(/safe integer/);
  });

  it('fork depends on the seed and label only, not on draws made before', () => {
    const used = new Random(7);
    for (let i = 0; i < 100; i++) used.nextFloat();
    const fresh = new Random(7);
    expect(used.fork('client-3').nextUint32()).toBe(fresh.fork('client-3').nextUint32());
    expect(fresh.fork('client-3').nextUint32()).not.toBe(fresh.fork('client-4').nextUint32());
    expect(fresh.fork('a').fork('b').nextUint32()).not.toBe(fresh.fork('b').fork('a').nextUint32());
    // A child stream is not the parent stream.
    expect(new Random(7).fork('x').nextUint32()).not.toBe(new Random(7).nextUint32());
  });
});

describe('Random: uniform draws', () => {
  it('nextFloat lies in [0, 1) with mean ≈ 1/2 and variance ≈ 1/12', () => {
    const rng = new Random(1);
    const xs = Float64Array.from({ length: 100_000 }, () => rng.nextFloat());
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    expect(mean(xs)).toBeCloseTo(0.5, 2);
    expect(variance(xs)).toBeCloseTo(1 / 12, 2);
  });

  it('nextInt covers [0, n) evenly and validates n', () => {
    const rng = new Random(2);
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 70_000; i++) counts[rng.nextInt(7)]! += 1;
    for (const count of counts) expect(Math.abs(count - 10_000)).toBeLessThan(400);
    expect(rng.nextInt(1)).toBe(0);
    expect(() => rng.nextInt(0)).toThrow(FedtlError);
    expect(() => rng.nextInt(2.5)).toThrow(/integer n/);
  });
});

describe('Random: distributions', () => {
  it('normal has mean ≈ 0 and variance ≈ 1', () => {
    const rng = new Random(3);
    const xs = Float64Array.from({ length: 100_000 }, () => rng.normal());
    expect(Math.abs(mean(xs))).toBeLessThan(0.015);
    expect(Math.abs(variance(xs) - 1)).toBeLessThan(0.02);
  });

  it.each([0.1, 0.5, 1, 2.5, 10])('gamma(%d) has mean ≈ k and variance ≈ k', (shape) => {
    const rng = new Random(4);
    const xs = Float64Array.from({ length: 60_000 }, () => rng.gamma(shape));
    // Gamma(k, 1): mean k, variance k. Tolerances are ~5 standard errors.
    const se = Math.sqrt(shape / xs.length);
    expect(Math.abs(mean(xs) - shape)).toBeLessThan(5 * se);
    expect(Math.abs(variance(xs) - shape) / shape).toBeLessThan(0.08);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
  });

  it('gamma scale multiplies the mean; bad parameters throw', () => {
    const rng = new Random(5);
    const xs = Float64Array.from({ length: 40_000 }, () => rng.gamma(2, 3));
    expect(mean(xs)).toBeCloseTo(6, 0);
    expect(() => rng.gamma(0)).toThrow(FedtlError);
    expect(() => rng.gamma(-1)).toThrow(/shape/);
    expect(() => rng.gamma(1, 0)).toThrow(/scale/);
    expect(() => rng.gamma(Number.POSITIVE_INFINITY)).toThrow(FedtlError);
  });

  it('dirichlet components have mean α_i / Σα and sum to 1', () => {
    // Prepare: Dir(1, 2, 7) has means 0.1, 0.2, 0.7.
    const rng = new Random(6);
    const alpha = [1, 2, 7];
    const sums = [0, 0, 0];
    const draws = 20_000;
    let worstSumError = 0;
    // Execute
    for (let i = 0; i < draws; i++) {
      const p = rng.dirichlet(alpha);
      worstSumError = Math.max(worstSumError, Math.abs(p[0]! + p[1]! + p[2]! - 1));
      for (let j = 0; j < 3; j++) sums[j]! += p[j]!;
    }
    // Assert
    expect(worstSumError).toBeLessThan(1e-12);
    expect(sums[0]! / draws).toBeCloseTo(0.1, 2);
    expect(sums[1]! / draws).toBeCloseTo(0.2, 2);
    expect(sums[2]! / draws).toBeCloseTo(0.7, 2);
  });

  it('dirichlet with a tiny α is valid and concentrated (no NaN from underflow)', () => {
    const rng = new Random(8);
    let maxShareSum = 0;
    for (let i = 0; i < 200; i++) {
      const p = rng.dirichlet(new Float64Array(100).fill(0.001));
      let sum = 0;
      for (const v of p) {
        expect(Number.isFinite(v)).toBe(true);
        sum += v;
      }
      expect(sum).toBeCloseTo(1, 12);
      maxShareSum += Math.max(...p);
    }
    expect(maxShareSum / 200).toBeGreaterThan(0.9);
    expect(() => rng.dirichlet([])).toThrow(FedtlError);
    expect(() => rng.dirichlet([1, 0])).toThrow(/alpha\[1\]/);
  });
});

describe('Random: shuffle and sample', () => {
  it('shuffle permutes in place and every position is uniform', () => {
    const rng = new Random(9);
    const array = Int32Array.from({ length: 10 }, (_, i) => i);
    expect(rng.shuffle(array)).toBe(array);
    expect([...array].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // Where does element 0 end up? Each of 4 positions ≈ 1/4 of the time.
    const positions = [0, 0, 0, 0];
    for (let t = 0; t < 40_000; t++) positions[rng.shuffle(['a', 'b', 'c', 'd']).indexOf('a')]! += 1;
    for (const count of positions) expect(Math.abs(count - 10_000)).toBeLessThan(400);
  });

  it.each([
    [5, 1000],
    [600, 1000],
    [1000, 1000],
    [0, 10],
  ])('sample(%d of %d) returns distinct in-range indices', (k, n) => {
    const picked = new Random(10).sample(k, n);
    expect(picked.length).toBe(k);
    expect(new Set(picked).size).toBe(k);
    for (const i of picked) expect(i >= 0 && i < n).toBe(true);
  });

  it('sample is uniform over the population and validates k', () => {
    const rng = new Random(11);
    const hits = new Array<number>(20).fill(0);
    for (let t = 0; t < 20_000; t++) for (const i of rng.sample(3, 20)) hits[i]! += 1;
    // Each index is picked with probability 3/20 per draw: 3000 expected.
    for (const count of hits) expect(Math.abs(count - 3000)).toBeLessThan(250);
    expect(() => rng.sample(11, 10)).toThrow(FedtlError);
    expect(() => rng.sample(-1, 10)).toThrow(/k in/);
  });
});
