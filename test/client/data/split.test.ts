import { describe, expect, it } from 'vitest';
import { classCounts, createDataset } from '../../../client/data/dataset.ts';
import { selectIndices, splitIndices, splitTrainTest, stratifiedCounts } from '../../../client/data/split.ts';

function labelsOf(counts: number[]): Int32Array {
  return Int32Array.from(counts.flatMap((n, label) => new Array<number>(n).fill(label)));
}

describe('selectIndices', () => {
  it('keeps every index in file order without a limit', () => {
    expect(Array.from(selectIndices(4, { seed: 3 }))).toEqual([0, 1, 2, 3]);
  });

  it('shuffles every index with shuffleAll: a seeded permutation, repeatable, seed-dependent', () => {
    const a = Array.from(selectIndices(50, { seed: 1, shuffleAll: true }));
    expect(Array.from(selectIndices(50, { seed: 1, shuffleAll: true }))).toEqual(a);
    expect(Array.from(selectIndices(50, { seed: 2, shuffleAll: true }))).not.toEqual(a);
    expect(a).not.toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('takes a seeded sample of distinct in-range indices with a limit', () => {
    const sample = selectIndices(100, { limit: 10, seed: 3 });
    expect(sample.length).toBe(10);
    expect(new Set(sample).size).toBe(10);
    expect(Array.from(sample).every((i) => i < 100)).toBe(true);
    expect(Array.from(selectIndices(100, { limit: 10, seed: 3 }))).toEqual(Array.from(sample));
    expect(Array.from(selectIndices(100, { limit: 10, seed: 4 }))).not.toEqual(Array.from(sample));
    // Limits of a quarter or more of the population take the partial Fisher–Yates path.
    const large = selectIndices(20, { limit: 15, seed: 3 });
    expect(new Set(large).size).toBe(15);
    expect(selectIndices(5, { limit: 10, seed: 0 }).length).toBe(5);
  });

  it('refuses a limit that is not a positive integer', () => {
    for (const limit of [0, -1, 2.5]) {
      expect(() => selectIndices(5, { limit, seed: 0 })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    }
  });
});

describe('stratifiedCounts', () => {
  it('gives exactly round(N × fraction) test examples in total, by largest remainder', () => {
    // Two odd classes at 0.5: rounding each class alone gave 1001 + 1000 = 2001 of 4000.
    expect(stratifiedCounts([2001, 1999], 0.5)).toEqual([1001, 999]);
    expect(stratifiedCounts([3, 3, 3], 0.5)).toEqual([2, 2, 1]); // 4.5 → 5 (round half up), extras to the lowest classes on ties
    expect(stratifiedCounts([10, 1, 5], 0.1)).toEqual([1, 0, 1]); // a class of two or more keeps at least one on each side
  });
});

describe('splitIndices', () => {
  it('splits 4,000 examples of two odd classes 2,000 / 2,000', () => {
    const labels = Int32Array.from({ length: 4000 }, (_, i) => (i < 2001 ? 0 : 1));
    const { train, test } = splitIndices(labels, 2, { testFraction: 0.5, seed: 3 });
    expect([train.length, test.length]).toEqual([2000, 2000]);
  });

  it('is stratified, disjoint and complete', () => {
    const labels = labelsOf([100, 50, 10]);
    const { train, test } = splitIndices(labels, 3, { testFraction: 0.2, seed: 7 });
    const testCounts = [0, 0, 0];
    for (const i of test) testCounts[labels[i] as number]! += 1;
    expect(testCounts).toEqual([20, 10, 2]);
    expect(train.length + test.length).toBe(160);
    expect(new Set([...train, ...test]).size).toBe(160);
  });

  it('keeps at least one example on each side of a class with two or more', () => {
    const { train, test } = splitIndices(labelsOf([2, 1]), 2, { testFraction: 0.1, seed: 0 });
    expect(test.length).toBe(1);
    expect(train.length).toBe(2);
  });

  it('is deterministic per seed and differs across seeds', () => {
    const labels = labelsOf([30, 30]);
    const a = splitIndices(labels, 2, { seed: 1 });
    expect(Array.from(splitIndices(labels, 2, { seed: 1 }).test)).toEqual(Array.from(a.test));
    expect(Array.from(splitIndices(labels, 2, { seed: 2 }).test)).not.toEqual(Array.from(a.test));
  });

  it('shuffles each side so a class-ordered source does not stay ordered', () => {
    const labels = labelsOf([50, 50]);
    const { train } = splitIndices(labels, 2, { seed: 0 });
    const firstHalf = Array.from(train.subarray(0, 40), (i) => labels[i]);
    expect(new Set(firstHalf).size).toBe(2);
  });

  it('refuses a fraction outside (0, 1)', () => {
    for (const testFraction of [0, 1, -0.5, Number.NaN]) {
      expect(() => splitIndices(labelsOf([4]), 1, { testFraction })).toThrow(expect.objectContaining({ code: 'BAD_CONFIG' }));
    }
  });
});

describe('splitTrainTest', () => {
  it('returns datasets with the same class names and matching counts', () => {
    const labels = labelsOf([6, 4]);
    const ds = createDataset({ name: 'toy', examples: { kind: 'text', texts: Array.from(labels, (l, i) => `${l}:${i}`) }, labels, classNames: ['a', 'b'] });
    const { train, test } = splitTrainTest(ds, { testFraction: 0.5, seed: 3 });
    expect([train.name, test.name]).toEqual(['toy-train', 'toy-test']);
    expect(classCounts(test)).toEqual([3, 2]);
    expect(classCounts(train)).toEqual([3, 2]);
    // each text still carries its own label
    for (const part of [train, test]) {
      if (part.examples.kind !== 'text') throw new Error('expected text');
      part.examples.texts.forEach((text, i) => expect(text.split(':')[0]).toBe(String(part.labels[i])));
    }
  });
});
