/**
 * FedAvgM: FedAvg with server momentum. Hsu, Qi and Brown, "Measuring the Effects of Non-Identical
 * Data Distribution for Federated Visual Classification", 2019 (https://arxiv.org/abs/1909.06335).
 *
 * The averaged delta Δ of a round feeds a velocity v ← βv + Δ and the head moves by ηv. Under
 * label skew, consecutive rounds' averages point different ways; momentum averages them over
 * rounds, which is what lets a skewed federation settle. The velocity is strategy state: it lives
 * as long as the coordinator process (a resumed coordinator restarts it at zero).
 */
import { FedtlError } from '../core/errors.ts';
import { FedAvg, WeightedDeltaMean, type FedAvgOptions } from './fed-avg.ts';
import type { Aggregation, ClientUpdate } from './strategy.ts';

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
    this.#momentum = options.serverMomentum ?? 0.9;
    if (!(this.#momentum >= 0 && this.#momentum < 1)) throw new FedtlError('BAD_CONFIG', `serverMomentum must be in [0, 1), got ${this.#momentum}`);
  }

  override beginAggregation(_round: number, global: Float32Array): Aggregation {
    // Average plain deltas (no server learning rate yet), then apply momentum and η once.
    const mean = new WeightedDeltaMean(new Float32Array(global.length));
    const momentum = this.#momentum;
    const serverLearningRate = this.options.serverLearningRate;
    return {
      add: (update: ClientUpdate) => mean.add(update),
      get count() {
        return mean.count;
      },
      get exampleCount() {
        return mean.exampleCount;
      },
      finish: () => {
        const delta = mean.finish();
        const velocity = (this.#velocity ??= new Float64Array(global.length));
        if (velocity.length !== global.length) throw new FedtlError('BAD_SHAPE', 'head size changed between rounds');
        const next = new Float32Array(global.length);
        for (let i = 0; i < next.length; i++) {
          velocity[i] = momentum * velocity[i]! + delta[i]!;
          next[i] = global[i]! + serverLearningRate * velocity[i]!;
        }
        return next;
      },
    };
  }
}
