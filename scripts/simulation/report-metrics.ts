/**
 * The statistics of the simulation report, as pure functions over plain numbers: the confusion
 * matrix and per-class precision, recall and F1 of a classifier, confidence intervals for an
 * accuracy (Wilson score interval) and for a mean over clients (Student t), and a client's
 * accuracy on its own label mix.
 *
 * Nothing here touches tensors, so every number the report prints can be checked by hand
 * (test/scripts/simulation/report-metrics.test.ts does exactly that).
 */
import { FedtlError } from '../../shared/core/errors.ts';

/**
 * `matrix[t][p]`: how many test examples of true class `t` the model predicted as class `p`.
 * Rows are true classes, columns predicted classes (the scikit-learn convention).
 */
export type ConfusionMatrix = number[][];

/**
 * Counts (true, predicted) pairs into a `numClasses × numClasses` matrix.
 *
 * @throws FedtlError `BAD_SHAPE` when the two lists differ in length, `BAD_DATA` when a class id
 *   is not an integer in `[0, numClasses)`.
 */
export function confusionMatrix(labels: ArrayLike<number>, predicted: ArrayLike<number>, numClasses: number): ConfusionMatrix {
  if (!Number.isSafeInteger(numClasses) || numClasses < 1) throw new FedtlError('BAD_CONFIG', `confusion matrix: numClasses must be a positive integer, got ${numClasses}`);
  if (labels.length !== predicted.length) throw new FedtlError('BAD_SHAPE', `confusion matrix: ${labels.length} labels but ${predicted.length} predictions`);
  const matrix = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  for (let i = 0; i < labels.length; i++) {
    const t = labels[i]!;
    const p = predicted[i]!;
    for (const [name, value] of [['label', t], ['prediction', p]] as const) {
      if (!Number.isInteger(value) || value < 0 || value >= numClasses) throw new FedtlError('BAD_DATA', `confusion matrix: ${name} ${value} at row ${i} is not a class in [0, ${numClasses})`);
    }
    matrix[t]![p]!++;
  }
  return matrix;
}

/** Per-class scores of one model; `null` where a score is undefined (0 / 0). */
export interface ClassMetrics {
  /** Of the examples predicted as class c, the share that are c; null when nothing was predicted as c. */
  precision: (number | null)[];
  /** Of the examples of class c, the share predicted as c; null when the test set holds no c. */
  recall: (number | null)[];
  /**
   * Harmonic mean of precision and recall, an undefined one counting as 0 (a class never predicted
   * has no true positives, so its recall is 0 anyway); null only for a class neither present nor predicted.
   */
  f1: (number | null)[];
  /** Test examples of each true class (row sums). */
  support: number[];
  /** Correct predictions over all examples (the trace over the total); null for an empty matrix. */
  accuracy: number | null;
  /**
   * Unweighted means over the classes present in the test set (support > 0), an undefined
   * precision (class never predicted) counting as 0, so a model that ignores a class is not
   * flattered by leaving it out.
   */
  macro: { precision: number | null; recall: number | null; f1: number | null };
}

/** Mean over the classes with support, null counting as 0; null when no class has support. */
function macroMean(values: readonly (number | null)[], support: readonly number[]): number | null {
  let sum = 0;
  let count = 0;
  values.forEach((v, c) => {
    if (!(support[c]! > 0)) return;
    sum += v ?? 0;
    count++;
  });
  return count === 0 ? null : sum / count;
}

/** Precision, recall, F1 and support per class, with their macro averages, from a confusion matrix. */
export function classMetrics(matrix: ConfusionMatrix): ClassMetrics {
  const n = matrix.length;
  const support = matrix.map((row) => row.reduce((a, b) => a + b, 0));
  const predictedCount = Array.from({ length: n }, (_, p) => matrix.reduce((sum, row) => sum + (row[p] ?? 0), 0));
  const total = support.reduce((a, b) => a + b, 0);
  const correct = matrix.reduce((sum, row, c) => sum + (row[c] ?? 0), 0);
  const precision = matrix.map((row, c) => (predictedCount[c]! > 0 ? row[c]! / predictedCount[c]! : null));
  const recall = matrix.map((row, c) => (support[c]! > 0 ? row[c]! / support[c]! : null));
  const f1 = precision.map((precisionC, c) => {
    const recallC = recall[c]!;
    if (precisionC === null && recallC === null) return null;
    const p = precisionC ?? 0;
    const r = recallC ?? 0;
    return p + r === 0 ? 0 : (2 * p * r) / (p + r);
  });
  return {
    precision,
    recall,
    f1,
    support,
    accuracy: total > 0 ? correct / total : null,
    macro: { precision: macroMean(precision, support), recall: macroMean(recall, support), f1: macroMean(f1, support) },
  };
}

/** A two-sided confidence interval. */
export interface Interval {
  low: number;
  high: number;
}

/** z of a two-sided 95 % normal interval: the 0.975 quantile of the standard normal. */
export const Z_95 = 1.959963984540054;

/**
 * Wilson score interval for a proportion (Wilson 1927, "Probable inference, the law of succession,
 * and statistical inference", JASA 22): the accuracy of a model on `n` independent test examples,
 * `successes` of them right. Unlike the normal ("Wald") interval it stays inside [0, 1] and does
 * not collapse to a point at 0 % or 100 %.
 *
 * @param z the normal quantile, @default Z_95 (95 % two-sided)
 * @returns null when `n` is 0.
 */
export function wilsonInterval(successes: number, n: number, z = Z_95): Interval | null {
  if (!(n > 0)) return null;
  if (!(successes >= 0 && successes <= n)) throw new FedtlError('BAD_DATA', `Wilson interval: ${successes} successes out of ${n}`);
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = ((z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n)));
  // At 0 % and 100 % one end is exactly 0 or 1; rounding would leave it a hair inside.
  return { low: successes === 0 ? 0 : Math.max(0, centre - half), high: successes === n ? 1 : Math.min(1, centre + half) };
}

/** The 0.975 quantile of Student's t with 1…30 degrees of freedom (standard tables, 3 decimals). */
const T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

/**
 * The 0.975 quantile of Student's t with `df` degrees of freedom: the table up to 30, beyond it the
 * first Cornish–Fisher correction of the normal quantile, z + (z³ + z) / (4 df), within 0.001 there.
 */
export function tQuantile975(df: number): number {
  if (!Number.isInteger(df) || df < 1) throw new FedtlError('BAD_DATA', `t quantile: degrees of freedom must be a positive integer, got ${df}`);
  return df <= T_975.length ? T_975[df - 1]! : Z_95 + (Z_95 ** 3 + Z_95) / (4 * df);
}

/** A mean over a sample with its 95 % Student t interval. */
export interface MeanWithInterval {
  mean: number;
  /** Sample standard deviation (divides by k − 1). */
  sd: number;
  count: number;
  /** mean ± t(0.975, k − 1) · sd / √k; null with fewer than 2 values. */
  interval: Interval | null;
}

/**
 * The mean of `values` with a 95 % Student t interval: for the local-only baseline, the mean test
 * accuracy over the clients that trained alone, where the spread between clients, not the test
 * set's size, is what makes the mean uncertain.
 */
export function meanInterval(values: readonly number[]): MeanWithInterval | null {
  const k = values.length;
  if (k === 0) return null;
  const mean = values.reduce((a, b) => a + b, 0) / k;
  if (k === 1) return { mean, sd: 0, count: 1, interval: null };
  const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (k - 1));
  const half = (tQuantile975(k - 1) * sd) / Math.sqrt(k);
  return { mean, sd, count: k, interval: { low: mean - half, high: mean + half } };
}

/**
 * A client's expected accuracy on data drawn from its own label mix: the per-class recalls of a
 * model on the shared test set, weighted by the client's label counts,
 * Σ_c n_c · recall_c / Σ_c n_c.
 *
 * This is the test set re-weighted to the client's classes. It is exact for label skew (a
 * client's examples of class c look like the test set's class c, which holds for the partitions
 * the simulator makes: IID, Dirichlet, shards and quantity skew all deal out the same pool by
 * label), needs no examples held back from training, and treats every model alike. Classes the
 * client holds but the test set lacks (recall undefined) are left out and the weights
 * renormalised.
 *
 * @returns null when no class of the client has a defined recall.
 */
export function labelMixAccuracy(recall: readonly (number | null)[], labelCounts: readonly number[]): number | null {
  let weighted = 0;
  let weight = 0;
  for (let c = 0; c < labelCounts.length; c++) {
    const r = recall[c];
    const count = labelCounts[c]!;
    if (r === null || r === undefined || !(count > 0)) continue;
    weighted += count * r;
    weight += count;
  }
  return weight > 0 ? weighted / weight : null;
}
