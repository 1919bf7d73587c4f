/**
 * Byzantine-robust aggregation: the round's updates are combined so that a few arbitrary ones
 * (scaled, random, sign-flipped) cannot drag the head far. Each holds every update of the round
 * (see held-updates.ts for the memory: selected clients × parameters × 4 bytes, capped by
 * `maxHeldMB`), and all but norm bounding ignore example counts: a weight a client reports
 * itself is exactly what an attacker would inflate.
 *
 * - {@link FedMedian}: coordinate-wise median. Yin, Chen, Ramchandran and Bartlett,
 *   "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018
 *   (https://arxiv.org/abs/1803.01498).
 * - {@link FedTrimmedMean}: coordinate-wise β-trimmed mean, same paper.
 * - {@link Krum}: Krum and Multi-Krum. Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine
 *   Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017
 *   (https://papers.nips.cc/paper/6617). Also holds the n×n distance matrix (8n² bytes).
 * - {@link NormBounding}: each delta clipped to c × the round's median delta norm, then FedAvg.
 *   Norm bounding as studied by Sun, Kairouz, Suresh and McMahan, "Can You Really Backdoor
 *   Federated Learning?", 2019 (https://arxiv.org/abs/1911.07963), with the bound set from the
 *   round's median norm instead of a fixed constant.
 */
import { FedtlError } from '../core/errors.ts';
import { l2Norm } from './clipped-strategy.ts';
import { checkedOption, isPositive } from './option-check.ts';
import { applyDelta, HoldingStrategy, type HeldUpdate, type HoldingOptions } from './held-updates.ts';

/** Median of `values` (sorted in place); the mean of the middle two for an even count. */
function medianInPlace(values: Float64Array): number {
  values.sort();
  const mid = values.length >> 1;
  return values.length % 2 === 1 ? values[mid]! : (values[mid - 1]! + values[mid]!) / 2;
}

/** Applies `reduce` to each coordinate's column of values across the updates. */
function coordinateWise(updates: readonly HeldUpdate[], global: Float32Array, reduce: (column: Float64Array) => number): Float32Array {
  const column = new Float64Array(updates.length);
  const combined = new Float64Array(global.length);
  for (let i = 0; i < global.length; i++) {
    for (let k = 0; k < updates.length; k++) column[k] = updates[k]!.delta[i]!;
    combined[i] = reduce(column);
  }
  return applyDelta(global, combined);
}

export class FedMedian extends HoldingStrategy {
  override readonly name: string = 'median';

  protected combine(updates: readonly HeldUpdate[], global: Float32Array): Float32Array {
    return coordinateWise(updates, global, medianInPlace);
  }
}

export const TRIMMED_MEAN_DEFAULTS = { trimFraction: 0.2 } as const;

export interface TrimmedMeanOptions extends HoldingOptions {
  /** Fraction β of the values cut from each end of every coordinate, in [0, 0.5). @default 0.2 */
  trimFraction?: number;
}

export class FedTrimmedMean extends HoldingStrategy {
  override readonly name: string = 'trimmed-mean';
  readonly trimFraction: number;

  constructor(options: TrimmedMeanOptions = {}) {
    super(options);
    this.trimFraction = checkedOption(options.trimFraction, TRIMMED_MEAN_DEFAULTS.trimFraction, 'trimFraction', (v) => v >= 0 && v < 0.5, 'in [0, 0.5)');
  }

  protected combine(updates: readonly HeldUpdate[], global: Float32Array): Float32Array {
    // k = ⌊βn⌋ from each end; β < 0.5 leaves at least one value.
    const k = Math.floor(this.trimFraction * updates.length);
    return coordinateWise(updates, global, (column) => {
      column.sort();
      let sum = 0;
      for (let j = k; j < column.length - k; j++) sum += column[j]!;
      return sum / (column.length - 2 * k);
    });
  }
}

export const KRUM_DEFAULTS = { byzantine: 1, multiKrum: 1 } as const;

export interface KrumOptions extends HoldingOptions {
  /** Byzantine clients f tolerated; a round needs n ≥ 2f + 3 updates. @default 1 */
  byzantine?: number;
  /** Updates averaged, m (1 = Krum, more = Multi-Krum), at most n − f. @default 1 */
  multiKrum?: number;
}

/** Krum scores: for each update, the sum of squared distances to its n − f − 2 nearest others. */
export function krumScores(deltas: readonly Float32Array[], byzantine: number): Float64Array {
  const n = deltas.length;
  const distances = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const a = deltas[i]!;
      const b = deltas[j]!;
      let sum = 0;
      for (let p = 0; p < a.length; p++) {
        const d = a[p]! - b[p]!;
        sum += d * d;
      }
      distances[i * n + j] = sum;
      distances[j * n + i] = sum;
    }
  }
  const neighbours = n - byzantine - 2;
  const scores = new Float64Array(n);
  const row = new Float64Array(n - 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0, r = 0; j < n; j++) if (j !== i) row[r++] = distances[i * n + j]!;
    row.sort();
    let score = 0;
    for (let r = 0; r < neighbours; r++) score += row[r]!;
    scores[i] = score;
  }
  return scores;
}

export class Krum extends HoldingStrategy {
  override readonly name: string = 'krum';
  readonly byzantine: number;
  readonly multiKrum: number;

  constructor(options: KrumOptions = {}) {
    const byzantine = options.byzantine ?? KRUM_DEFAULTS.byzantine;
    const needed = 2 * byzantine + 3;
    // Krum's guarantee needs n ≥ 2f + 3 updates: the quorum says so, and rounds wait for it.
    super({ ...options, minClients: Math.max(options.minClients ?? needed, needed), minUpdates: Math.max(options.minUpdates ?? needed, needed) });
    this.byzantine = byzantine;
    this.multiKrum = options.multiKrum ?? KRUM_DEFAULTS.multiKrum;
    if (!Number.isSafeInteger(byzantine) || byzantine < 0) throw new FedtlError('BAD_CONFIG', `byzantine must be an integer ≥ 0, got ${byzantine}`);
    if (!Number.isSafeInteger(this.multiKrum) || this.multiKrum < 1) throw new FedtlError('BAD_CONFIG', `multiKrum must be a positive integer, got ${this.multiKrum}`);
  }

  protected combine(updates: readonly HeldUpdate[], global: Float32Array): Float32Array {
    const n = updates.length;
    if (n < 2 * this.byzantine + 3) throw new FedtlError('QUORUM_NOT_MET', `Krum with f = ${this.byzantine} needs at least ${2 * this.byzantine + 3} updates, got ${n}`);
    const scores = krumScores(updates.map((u) => u.delta), this.byzantine);
    const m = Math.min(this.multiKrum, n - this.byzantine);
    // Lowest scores first; ties keep arrival order.
    const chosen = [...scores.keys()].sort((a, b) => scores[a]! - scores[b]! || a - b).slice(0, m);
    const mean = new Float64Array(global.length);
    for (const index of chosen) {
      const delta = updates[index]!.delta;
      for (let i = 0; i < mean.length; i++) mean[i]! += delta[i]! / m;
    }
    return applyDelta(global, mean);
  }
}

export const NORM_BOUNDING_DEFAULTS = { normMultiplier: 1 } as const;

export interface NormBoundingOptions extends HoldingOptions {
  /** Bound c: deltas are clipped to c × the round's median norm. @default 1 */
  normMultiplier?: number;
}

export class NormBounding extends HoldingStrategy {
  override readonly name: string = 'norm-bounding';
  readonly normMultiplier: number;

  constructor(options: NormBoundingOptions = {}) {
    super(options);
    this.normMultiplier = checkedOption(options.normMultiplier, NORM_BOUNDING_DEFAULTS.normMultiplier, 'normMultiplier', isPositive, 'a positive number');
  }

  protected combine(updates: readonly HeldUpdate[], global: Float32Array): Float32Array {
    const norms = Float64Array.from(updates, (u) => l2Norm(u.delta));
    const bound = this.normMultiplier * medianInPlace(Float64Array.from(norms));
    const sum = new Float64Array(global.length);
    let examples = 0;
    updates.forEach((update, k) => {
      const scale = norms[k]! > bound ? bound / norms[k]! : 1;
      const weight = update.exampleCount * scale;
      for (let i = 0; i < sum.length; i++) sum[i]! += weight * update.delta[i]!;
      examples += update.exampleCount;
    });
    for (let i = 0; i < sum.length; i++) sum[i] = sum[i]! / examples;
    return applyDelta(global, sum);
  }
}
