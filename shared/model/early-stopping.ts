/**
 * Early stopping on a federated validation metric, keeping the best global model.
 *
 * After each round the coordinator reports the round's validation metric (federated evaluation
 * on the clients' held-out data) and the whole model. The tracker keeps a copy of the best model;
 * when `patience` rounds pass without an improvement of at least `minDelta`, it says stop, and the
 * best model — not the last — is the one to export (Prechelt 1998, "Early Stopping — But When?",
 * https://doi.org/10.1007/3-540-49430-8_3).
 */
import { FedtlError } from '../core/errors.ts';

export interface EarlyStoppingOptions {
  /** Rounds without improvement before stopping. @default 5 */
  patience?: number;
  /** Smallest change that counts as an improvement. @default 0 */
  minDelta?: number;
  /** `max` for accuracy, `min` for loss. @default 'max' */
  mode?: 'max' | 'min';
}

export interface EarlyStoppingDecision {
  improved: boolean;
  stop: boolean;
}

/** What a checkpoint stores to resume the tracker exactly (the best weights are stored beside it). */
export interface EarlyStoppingState {
  bestRound: number;
  bestMetric: number | null;
  roundsWithoutImprovement: number;
}

export class EarlyStopping {
  readonly patience: number;
  readonly minDelta: number;
  readonly mode: 'max' | 'min';
  #bestRound = 0;
  #bestMetric: number | null = null;
  #bestWeights: Float32Array | null = null;
  #stale = 0;

  constructor(options: EarlyStoppingOptions = {}) {
    this.patience = options.patience ?? 5;
    this.minDelta = options.minDelta ?? 0;
    this.mode = options.mode ?? 'max';
    if (!Number.isSafeInteger(this.patience) || this.patience < 1) throw new FedtlError('BAD_CONFIG', `early stopping patience must be a positive integer, got ${this.patience}`);
    if (!(this.minDelta >= 0 && Number.isFinite(this.minDelta))) throw new FedtlError('BAD_CONFIG', `early stopping minDelta must be a finite number ≥ 0, got ${this.minDelta}`);
  }

  /**
   * Folds in one round. A missing metric (no client evaluated) is neither better nor worse: it
   * does not count towards patience either.
   */
  observe(round: number, metric: number | null, weights: Float32Array): EarlyStoppingDecision {
    if (metric === null || !Number.isFinite(metric)) return { improved: false, stop: false };
    const best = this.#bestMetric;
    const improved = best === null || (this.mode === 'max' ? metric > best + this.minDelta : metric < best - this.minDelta);
    if (improved) {
      this.#bestRound = round;
      this.#bestMetric = metric;
      this.#bestWeights = weights.slice();
      this.#stale = 0;
    } else {
      this.#stale++;
    }
    return { improved, stop: this.#stale >= this.patience };
  }

  get bestRound(): number {
    return this.#bestRound;
  }

  get bestMetric(): number | null {
    return this.#bestMetric;
  }

  /** A copy of the best model so far, or null before any metric. */
  get bestWeights(): Float32Array | null {
    return this.#bestWeights;
  }

  state(): EarlyStoppingState {
    return { bestRound: this.#bestRound, bestMetric: this.#bestMetric, roundsWithoutImprovement: this.#stale };
  }

  restore(state: EarlyStoppingState, bestWeights: Float32Array | null): void {
    this.#bestRound = state.bestRound;
    this.#bestMetric = state.bestMetric;
    this.#stale = state.roundsWithoutImprovement;
    this.#bestWeights = bestWeights;
  }
}
