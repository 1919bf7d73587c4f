import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { partition, summarizePartition, Random, type PartitionOptions, type PartitionScheme } from '../../../shared/math/index.ts';

/** Balanced labels 0…classes−1, repeated, then shuffled (so label order carries no structure). */
function makeLabels(n: number, classes: number, seed = 99): Int32Array {
  const labels = Int32Array.from({ length: n }, (_, i) => i % classes);
  return new Random(seed).shuffle(labels);
}

/** Asserts the partition contract: every index in [0, n) exactly once, each part sorted. */
function expectExactCover(parts: readonly Int32Array[], n: number): void {
  const seen = new Uint8Array(n);
  let total = 0;
  for (const part of parts) {
    total += part.length;
    for (let i = 0; i < part.length; i++) {
      const index = part[i]!;
      expect(index >= 0 && index < n).toBe(true);
      seen[index]! += 1;
      if (i > 0) expect(part[i - 1]!).toBeLessThan(index);
    }
  }
  expect(total).toBe(n);
  expect(seen.every((count) => count === 1)).toBe(true);
}

const SCHEMES: PartitionScheme[] = ['iid', 'dirichlet', 'quantity', 'shards'];
const labels = makeLabels(6000, 10);

describe('partition: contract for every scheme', () => {
  it.each(SCHEMES)('%s uses every index exactly once, sizes sum to n, min 1 per client', (scheme) => {
    const parts = partition(labels, { scheme, numClients: 37, seed: 1, alpha: 0.1, beta: 0.1 });
    expect(parts).toHaveLength(37);
    expectExactCover(parts, labels.length);
    for (const part of parts) expect(part.length).toBeGreaterThanOrEqual(1);
  });

  it.each(SCHEMES)('%s is deterministic: same seed ⇒ identical, other seed ⇒ different', (scheme) => {
    const options: PartitionOptions = { scheme, numClients: 20, seed: 5 };
    const a = partition(labels, options);
    const b = partition(labels, options);
    const c = partition(labels, { ...options, seed: 6 });
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('honours a larger minPerClient even with extreme skew (moves examples, does not loop)', () => {
    const parts = partition(labels, { scheme: 'dirichlet', numClients: 200, seed: 2, alpha: 0.01, minPerClient: 10 });
    expectExactCover(parts, labels.length);
    for (const part of parts) expect(part.length).toBeGreaterThanOrEqual(10);
  });

  it('minPerClient 0 allows empty clients', () => {
    const parts = partition(labels, { scheme: 'dirichlet', numClients: 200, seed: 2, alpha: 0.01, minPerClient: 0 });
    expectExactCover(parts, labels.length);
    expect(parts.some((part) => part.length === 0)).toBe(true);
  });
});

describe('partition: schemes', () => {
  it('iid gives equal sizes ±1 and low skew', () => {
    const parts = partition(labels, { scheme: 'iid', numClients: 7, seed: 3 });
    const sizes = parts.map((p) => p.length);
    // 6000 = 7 × 857 + 1: one client of 858, six of 857.
    expect(sizes.sort()).toEqual([857, 857, 857, 857, 857, 857, 858]);
    expect(summarizePartition(parts, labels, 10).skew).toBeLessThan(0.06);
  });

  it('dirichlet skew falls as α grows (α=0.1 high, α=100 near IID)', () => {
    const skewAt = (alpha: number): number =>
      summarizePartition(partition(labels, { scheme: 'dirichlet', numClients: 20, seed: 4, alpha }), labels, 10).skew;
    const low = skewAt(0.1);
    const mid = skewAt(1);
    const high = skewAt(100);
    expect(low).toBeGreaterThan(0.6);
    expect(mid).toBeLessThan(low);
    expect(high).toBeLessThan(mid);
    expect(high).toBeLessThan(0.06);
  });

  it('shards give each client at most shardsPerClient labels (McMahan setting)', () => {
    const parts = partition(labels, { scheme: 'shards', numClients: 30, seed: 5, shardsPerClient: 2 });
    expectExactCover(parts, labels.length);
    const summary = summarizePartition(parts, labels, 10);
    for (const row of summary.labelCounts) expect(row.filter((count) => count > 0).length).toBeLessThanOrEqual(2);
    // 60 shards of 100: every client holds exactly 200 examples.
    expect(summary.sizeStats).toMatchObject({ min: 200, max: 200 });
  });

  it('shards stay label-pure with unbalanced classes', () => {
    // Prepare: class sizes 1000, 300, 77 — not multiples of any shard size.
    const unbalanced = new Random(1).shuffle(Int32Array.from({ length: 1377 }, (_, i) => (i < 1000 ? 0 : i < 1300 ? 1 : 2)));
    const parts = partition(unbalanced, { scheme: 'shards', numClients: 11, seed: 5, shardsPerClient: 3 });
    expectExactCover(parts, unbalanced.length);
    for (const row of summarizePartition(parts, unbalanced, 3).labelCounts) {
      expect(row.filter((count) => count > 0).length).toBeLessThanOrEqual(3);
    }
  });

  it('shards fall back to contiguous cuts when there are fewer shards than classes', () => {
    const parts = partition(labels, { scheme: 'shards', numClients: 3, seed: 5, shardsPerClient: 1 });
    expectExactCover(parts, labels.length);
    expect(parts.map((p) => p.length)).toEqual([2000, 2000, 2000]);
  });

  it.each(['dirichlet', 'log-normal'] as const)('quantity skew (%s) spreads sizes but keeps labels mixed', (quantityModel) => {
    const parts = partition(labels, { scheme: 'quantity', numClients: 20, seed: 6, beta: 0.5, quantityModel, sigma: 1.5 });
    expectExactCover(parts, labels.length);
    const summary = summarizePartition(parts, labels, 10);
    expect(summary.sizeStats.max / summary.sizeStats.min).toBeGreaterThan(5);
    // Large clients keep the global label mix: label skew comes from small clients only.
    const largest = summary.labelCounts[summary.sizes.indexOf(summary.sizeStats.max)]!;
    expect(largest.every((count) => count > 0)).toBe(true);
  });

  // Speed at this scale is measured by `npm run bench:simulation`, not asserted here.
  it('splits 60,000 examples over 10,000 clients, every client non-empty', () => {
    const big = makeLabels(60_000, 10);
    for (const scheme of SCHEMES) {
      const parts = partition(big, { scheme, numClients: 10_000, seed: 7 });
      expect(parts).toHaveLength(10_000);
      expect(parts.reduce((sum, p) => sum + p.length, 0)).toBe(60_000);
      expect(Math.min(...parts.map((p) => p.length))).toBeGreaterThanOrEqual(1);
    }
  });
});

describe('partition: bad configuration', () => {
  const expectBadConfig = (options: PartitionOptions, message: RegExp, input = labels): void => {
    let thrown: unknown;
    try {
      partition(input, options);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(FedtlError);
    expect((thrown as FedtlError).code).toBe('BAD_CONFIG');
    expect((thrown as FedtlError).message).toMatch(message);
  };

  it('rejects more clients than examples', () => {
    expectBadConfig({ scheme: 'iid', numClients: 11, seed: 1 }, /larger than the number of examples/, makeLabels(10, 2));
  });

  it('rejects numClients × minPerClient > examples', () => {
    expectBadConfig({ scheme: 'dirichlet', numClients: 100, seed: 1, minPerClient: 61 }, /minPerClient/);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('rejects alpha = %d', (alpha) => {
    expectBadConfig({ scheme: 'dirichlet', numClients: 5, seed: 1, alpha }, /alpha/);
  });

  it('rejects bad beta, shardsPerClient, numClients and scheme', () => {
    expectBadConfig({ scheme: 'quantity', numClients: 5, seed: 1, beta: 0 }, /beta/);
    expectBadConfig({ scheme: 'shards', numClients: 5, seed: 1, shardsPerClient: 0 }, /shardsPerClient/);
    expectBadConfig({ scheme: 'shards', numClients: 3000, seed: 1, shardsPerClient: 3 }, /shardsPerClient/);
    expectBadConfig({ scheme: 'iid', numClients: 0, seed: 1 }, /numClients/);
    expectBadConfig({ scheme: 'iid', numClients: 2.5, seed: 1 }, /numClients/);
    expectBadConfig({ scheme: 'banana' as PartitionScheme, numClients: 2, seed: 1 }, /Unknown partition scheme/);
  });

  it('rejects labels outside [0, numClasses) as BAD_DATA', () => {
    expect(() => partition(Int32Array.from([0, 1, -1]), { scheme: 'iid', numClients: 1, seed: 1 })).toThrow(/≥ 0/);
    expect(() => partition(Int32Array.from([0, 1, 5]), { scheme: 'iid', numClients: 1, seed: 1, numClasses: 3 })).toThrow(
      expect.objectContaining({ code: 'BAD_DATA' }),
    );
  });
});

describe('summarizePartition', () => {
  it('computes sizes, histograms and TV skew by hand on a tiny example', () => {
    // Prepare: labels [0,0,1,1]; client 0 = {0,1} (all class 0), client 1 = {2,3} (all class 1).
    const tiny = Int32Array.from([0, 0, 1, 1]);
    const parts = [Int32Array.from([0, 1]), Int32Array.from([2, 3])];
    // Execute
    const summary = summarizePartition(parts, tiny, 2);
    // Assert: each client's distribution (1,0) vs global (½,½): TV = ½(½ + ½) = ½.
    expect(summary.labelCounts).toEqual([
      [2, 0],
      [0, 2],
    ]);
    expect(summary.globalLabelCounts).toEqual([2, 2]);
    expect(summary.skew).toBeCloseTo(0.5, 12);
    expect(summary.meanLabelsPerClient).toBe(1);
    expect(summary.sizeStats).toEqual({ min: 2, median: 2, max: 2, mean: 2 });
  });

  it('ignores empty clients in the skew and takes the median of an even count', () => {
    const tiny = Int32Array.from([0, 1, 0, 1, 0]);
    const parts = [Int32Array.from([0, 1]), Int32Array.from([2, 3, 4]), new Int32Array(0), Int32Array.from([])];
    const summary = summarizePartition(parts, tiny, 2);
    expect(summary.sizeStats).toEqual({ min: 0, median: 1, max: 3, mean: 1.25 });
    // Global (0.6, 0.4); client 0 (0.5, 0.5): TV 0.1; client 1 (2/3, 1/3): TV 1/15.
    expect(summary.skew).toBeCloseTo((0.1 + 1 / 15) / 2, 12);
    expect(() => summarizePartition([Int32Array.from([9])], tiny, 2)).toThrow(FedtlError);
  });
});
