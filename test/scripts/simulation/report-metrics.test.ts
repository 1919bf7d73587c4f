import { describe, expect, it } from 'vitest';
import { FedtlError } from '../../../shared/core/errors.ts';
import { classMetrics, confusionMatrix, labelMixAccuracy, meanInterval, tQuantile975, wilsonInterval } from '../../../scripts/simulation/report-metrics.ts';

describe('confusionMatrix and classMetrics', () => {
  // Prepare: 6 examples of 3 classes; 4 right, one 0 taken for a 1, one 1 taken for a 2.
  const labels = [0, 0, 0, 1, 1, 2];
  const predicted = [0, 0, 1, 1, 2, 2];

  it('counts true classes in rows and predicted classes in columns', () => {
    expect(confusionMatrix(labels, predicted, 3)).toEqual([
      [2, 1, 0],
      [0, 1, 1],
      [0, 0, 1],
    ]);
  });

  it('gives the hand-computed precision, recall, F1, support and macro averages', () => {
    const m = classMetrics(confusionMatrix(labels, predicted, 3));
    // precision: column sums are 2, 2, 2 → 2/2, 1/2, 1/2; recall: row sums 3, 2, 1 → 2/3, 1/2, 1/1.
    expect(m.precision).toEqual([1, 0.5, 0.5]);
    expect(m.recall[0]).toBeCloseTo(2 / 3, 12);
    expect(m.recall.slice(1)).toEqual([0.5, 1]);
    // F1 = 2pr / (p + r): class 0 → 2·1·⅔ / (5/3) = 0.8; class 2 → 2·½·1 / 1.5 = ⅔.
    expect(m.f1[0]).toBeCloseTo(0.8, 12);
    expect(m.f1[1]).toBeCloseTo(0.5, 12);
    expect(m.f1[2]).toBeCloseTo(2 / 3, 12);
    expect(m.support).toEqual([3, 2, 1]);
    expect(m.accuracy).toBeCloseTo(4 / 6, 12);
    expect(m.macro.precision).toBeCloseTo(2 / 3, 12);
    expect(m.macro.recall).toBeCloseTo((2 / 3 + 0.5 + 1) / 3, 12);
    expect(m.macro.f1).toBeCloseTo((0.8 + 0.5 + 2 / 3) / 3, 12);
  });

  it('leaves undefined scores null, and averages over the classes present with a never-predicted class at precision 0', () => {
    // Class 2 never occurs and is never predicted; class 1 occurs but is never predicted.
    const m = classMetrics(confusionMatrix([0, 0, 1], [0, 0, 0], 3));
    expect(m.precision).toEqual([2 / 3, null, null]);
    expect(m.recall).toEqual([1, 0, null]);
    expect(m.f1[0]).toBeCloseTo(0.8, 12);
    expect(m.f1.slice(1)).toEqual([0, null]);
    // Over classes 0 and 1: precision (⅔ + 0) / 2, recall (1 + 0) / 2, F1 (0.8 + 0) / 2.
    expect(m.macro.precision).toBeCloseTo(1 / 3, 12);
    expect(m.macro.recall).toBeCloseTo(0.5, 12);
    expect(m.macro.f1).toBeCloseTo(0.4, 12);
    // A class predicted but absent from the test set: precision 0, recall undefined, F1 0.
    const absent = classMetrics(confusionMatrix([0, 0], [0, 1], 2));
    expect([absent.precision[1], absent.recall[1], absent.f1[1]]).toEqual([0, null, 0]);
    // A class with precision 0 and recall 0 has F1 0, not NaN.
    expect(classMetrics([[0, 1], [1, 0]]).f1).toEqual([0, 0]);
  });

  it('refuses mismatched lengths and out-of-range classes with a clear error', () => {
    expect(() => confusionMatrix([0, 1], [0], 2)).toThrow(/2 labels but 1 predictions/);
    expect(() => confusionMatrix([0, 3], [0, 1], 3)).toThrow(/label 3 at row 1 is not a class in \[0, 3\)/);
    expect(() => confusionMatrix([0], [-1], 3)).toThrow(FedtlError);
    expect(() => confusionMatrix([0], [0], 0)).toThrow(/positive integer/);
  });
});

describe('wilsonInterval', () => {
  it('matches the hand-computed 95 % interval for 8 of 10', () => {
    // p = 0.8, z = 1.96, z² = 3.8416; centre = (0.8 + z²/20) / (1 + z²/10) = 0.716738;
    // half = z / (1 + z²/10) · √(0.016 + z²/400) = 0.226581.
    const interval = wilsonInterval(8, 10)!;
    expect(interval.low).toBeCloseTo(0.490157, 4);
    expect(interval.high).toBeCloseTo(0.943319, 4);
  });

  it('stays inside [0, 1] and does not collapse at 0 % or 100 %', () => {
    const none = wilsonInterval(0, 10)!;
    expect(none.low).toBe(0);
    expect(none.high).toBeCloseTo(0.277535, 4);
    const all = wilsonInterval(10, 10)!;
    expect(all.high).toBe(1);
    expect(all.low).toBeCloseTo(1 - 0.277535, 4);
  });

  it('narrows as the test set grows, and is null for an empty one', () => {
    const small = wilsonInterval(90, 100)!;
    const large = wilsonInterval(9000, 10_000)!;
    expect(large.high - large.low).toBeLessThan((small.high - small.low) / 5);
    expect(wilsonInterval(0, 0)).toBeNull();
    expect(() => wilsonInterval(11, 10)).toThrow(/11 successes out of 10/);
  });
});

describe('meanInterval', () => {
  it('gives mean ± t(0.975, k − 1) · sd / √k, by hand for three clients', () => {
    // mean 0.6, sample sd 0.1, t(0.975, 2) = 4.303: half width 4.303 · 0.1 / √3 = 0.248434.
    const result = meanInterval([0.5, 0.6, 0.7])!;
    expect(result.mean).toBeCloseTo(0.6, 12);
    expect(result.sd).toBeCloseTo(0.1, 12);
    expect(result.count).toBe(3);
    expect(result.interval!.low).toBeCloseTo(0.351566, 5);
    expect(result.interval!.high).toBeCloseTo(0.848434, 5);
  });

  it('has no interval for a single value and nothing for none', () => {
    expect(meanInterval([0.4])).toEqual({ mean: 0.4, sd: 0, count: 1, interval: null });
    expect(meanInterval([])).toBeNull();
  });

  it('uses the t table up to 30 degrees of freedom and tends to the normal quantile beyond', () => {
    expect(tQuantile975(1)).toBe(12.706);
    expect(tQuantile975(30)).toBe(2.042);
    // Tables give 2.021 at 40 and 1.984 at 100.
    expect(tQuantile975(40)).toBeCloseTo(2.021, 2);
    expect(tQuantile975(100)).toBeCloseTo(1.984, 2);
    expect(() => tQuantile975(0)).toThrow(/positive integer/);
  });
});

describe('labelMixAccuracy', () => {
  it('weights the per-class recalls by the client\'s label counts', () => {
    // Recalls ⅔, ½, 1 and a client holding 10 of class 0 and 30 of class 2: (10·⅔ + 30·1) / 40.
    expect(labelMixAccuracy([2 / 3, 0.5, 1], [10, 0, 30])).toBeCloseTo(0.916667, 6);
  });

  it('equals plain accuracy for a client whose mix is the test set\'s', () => {
    const matrix = confusionMatrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3);
    const m = classMetrics(matrix);
    expect(labelMixAccuracy(m.recall, m.support)).toBeCloseTo(m.accuracy!, 12);
  });

  it('leaves out classes the test set lacks, and is null when nothing is left', () => {
    expect(labelMixAccuracy([0.5, null], [10, 90])).toBe(0.5);
    expect(labelMixAccuracy([null, null], [10, 90])).toBeNull();
    expect(labelMixAccuracy([0.5, 0.5], [0, 0])).toBeNull();
  });
});
