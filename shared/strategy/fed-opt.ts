/**
 * FedAdam, FedYogi and FedAdagrad: Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar and
 * McMahan, "Adaptive Federated Optimization", ICLR 2021 (https://arxiv.org/abs/2003.00295),
 * Algorithm 2.
 *
 * The round's example-weighted mean delta Δ is a pseudo-gradient (its negative); the server keeps
 * a first moment m ← β₁m + (1 − β₁)Δ and a second moment v, and moves the head by
 * x ← x + η·m / (√v + τ). The three differ only in v:
 * - FedAdagrad: v ← v + Δ²
 * - FedAdam:    v ← β₂v + (1 − β₂)Δ²
 * - FedYogi:    v ← v − (1 − β₂)Δ²·sign(v − Δ²)
 * Moments start at m = 0 and v = τ² (the paper's v₋₁ ≥ τ²), without bias correction (as in the
 * paper). They are server state, checkpointed every round.
 */
import { FedtlError } from '../core/errors.ts';
import { FedAvg, type FedAvgOptions } from './fed-avg.ts';
import { checkedOption, isPositive, isUnitInterval } from './option-check.ts';
import { PseudoGradientAggregation } from './pseudo-gradient.ts';
import { stateArray, type StrategyState } from './strategy-state.ts';
import type { Aggregation } from './strategy.ts';

export const FEDOPT_DEFAULTS = { serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 } as const;

export interface FedOptOptions extends FedAvgOptions {
  /** Server learning rate η. @default 0.01 */
  serverLearningRate?: number;
  /** First-moment decay β₁ in [0, 1). @default 0.9 */
  beta1?: number;
  /** Second-moment decay β₂ in [0, 1) (FedAdam, FedYogi). @default 0.99 */
  beta2?: number;
  /** Adaptivity τ > 0: larger is closer to momentum SGD. @default 1e-3 */
  tau?: number;
}

type SecondMoment = 'adagrad' | 'adam' | 'yogi';

abstract class FedOpt extends FedAvg {
  readonly beta1: number;
  readonly beta2: number;
  readonly tau: number;
  protected abstract readonly rule: SecondMoment;
  #m: Float64Array | null = null;
  #v: Float64Array | null = null;

  constructor(options: FedOptOptions = {}) {
    super({ ...options, serverLearningRate: options.serverLearningRate ?? FEDOPT_DEFAULTS.serverLearningRate });
    this.beta1 = checkedOption(options.beta1, FEDOPT_DEFAULTS.beta1, 'beta1', isUnitInterval, 'in [0, 1)');
    this.beta2 = checkedOption(options.beta2, FEDOPT_DEFAULTS.beta2, 'beta2', isUnitInterval, 'in [0, 1)');
    this.tau = checkedOption(options.tau, FEDOPT_DEFAULTS.tau, 'tau', isPositive, 'a positive number');
  }

  override aggregateFit(_round: number, global: Float32Array): Aggregation {
    return new PseudoGradientAggregation(global, (delta, next) => {
      const n = global.length;
      const m = (this.#m ??= new Float64Array(n));
      const v = (this.#v ??= new Float64Array(n).fill(this.tau * this.tau));
      if (m.length !== n || v.length !== n) throw new FedtlError('BAD_SHAPE', 'head size changed between rounds');
      const { beta1, beta2, tau, rule } = this;
      const eta = this.options.serverLearningRate;
      for (let i = 0; i < n; i++) {
        const d = delta[i]!;
        const d2 = d * d;
        m[i] = beta1 * m[i]! + (1 - beta1) * d;
        if (rule === 'adagrad') v[i] = v[i]! + d2;
        else if (rule === 'adam') v[i] = beta2 * v[i]! + (1 - beta2) * d2;
        else v[i] = v[i]! - (1 - beta2) * d2 * Math.sign(v[i]! - d2);
        next[i] = global[i]! + (eta * m[i]!) / (Math.sqrt(v[i]!) + tau);
      }
    });
  }

  override state(): StrategyState {
    return { m: this.#m ? Float64Array.from(this.#m) : null, v: this.#v ? Float64Array.from(this.#v) : null };
  }

  override restore(state: StrategyState | null): void {
    this.#m = state ? stateArray(state, 'm', -1, this.name) : null;
    this.#v = state ? stateArray(state, 'v', -1, this.name) : null;
  }
}

export class FedAdagrad extends FedOpt {
  override readonly name: string = 'fedadagrad';
  protected readonly rule = 'adagrad';
}

export class FedAdam extends FedOpt {
  override readonly name: string = 'fedadam';
  protected readonly rule = 'adam';
}

export class FedYogi extends FedOpt {
  override readonly name: string = 'fedyogi';
  protected readonly rule = 'yogi';
}
