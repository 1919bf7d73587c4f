/**
 * FedAvgM: FedAvg with server momentum. Hsu, Qi and Brown, "Measuring the Effects of Non-Identical
 * Data Distribution for Federated Visual Classification", 2019 (https://arxiv.org/abs/1909.06335).
 *
 * The averaged delta Δ of a round feeds a velocity v ← βv + Δ and the head moves by ηv. Under
 * label skew, consecutive rounds' averages point different ways; momentum averages them over
 * rounds, which is what lets a skewed federation settle. The velocity is server state: it is part
 * of every checkpoint ({@link FedAvgM.state}), so a resumed run continues with it.
 */
import { FedtlError } from '../core/errors.ts';
import { FedAvg, type FedAvgOptions } from './fed-avg.ts';
import { checkedOption, isUnitInterval } from './option-check.ts';
import { PseudoGradientAggregation } from './pseudo-gradient.ts';
import { stateArray, type StrategyState } from './strategy-state.ts';
import type { Aggregation } from './strategy.ts';

export const FEDAVGM_DEFAULTS = { serverMomentum: 0.9 } as const;

export interface FedAvgMOptions extends FedAvgOptions {
  /** Server momentum β. @default 0.9 */
  serverMomentum?: number;
}

export class FedAvgM extends FedAvg {
  override readonly name: string = 'fedavgm';
  readonly #momentum: number;
  #velocity: Float64Array | null = null;

  constructor(options: FedAvgMOptions = {}) {
    super(options);
    this.#momentum = checkedOption(options.serverMomentum, FEDAVGM_DEFAULTS.serverMomentum, 'serverMomentum', isUnitInterval, 'in [0, 1)');
  }

  override aggregateFit(_round: number, global: Float32Array): Aggregation {
    // Average plain deltas (no server learning rate yet), then apply momentum and η once.
    return new PseudoGradientAggregation(global, (delta, next) => {
      const velocity = (this.#velocity ??= new Float64Array(global.length));
      if (velocity.length !== global.length) throw new FedtlError('BAD_SHAPE', 'head size changed between rounds');
      const eta = this.options.serverLearningRate;
      for (let i = 0; i < next.length; i++) {
        velocity[i] = this.#momentum * velocity[i]! + delta[i]!;
        next[i] = global[i]! + eta * velocity[i]!;
      }
    });
  }

  override state(): StrategyState {
    return { velocity: this.#velocity ? Float64Array.from(this.#velocity) : null };
  }

  override restore(state: StrategyState | null): void {
    this.#velocity = state ? stateArray(state, 'velocity', -1, this.name) : null;
  }
}
