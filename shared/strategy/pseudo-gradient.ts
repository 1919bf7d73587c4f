/**
 * The aggregation shared by the strategies that keep server state across rounds (FedAvgM, FedAdam,
 * FedYogi, FedAdagrad): stream the example-weighted mean delta Δ of the round — Reddi et al.'s
 * "pseudo-gradient" (its negative) — then hand it once to a server step that writes the next head.
 */
import { WeightedDeltaMean } from './fed-avg.ts';
import type { Aggregation, ClientUpdate, SparseClientUpdate } from './strategy.ts';

/** `step(delta, next)` fills `next` from the round's mean delta (float64) and updates its state. */
export type ServerStep = (delta: Float64Array, next: Float32Array) => void;

export class PseudoGradientAggregation implements Aggregation {
  readonly #global: Float32Array;
  readonly #mean: WeightedDeltaMean;
  readonly #step: ServerStep;

  constructor(global: Float32Array, step: ServerStep) {
    this.#global = global;
    this.#mean = new WeightedDeltaMean(new Float32Array(global.length));
    this.#step = step;
  }

  add(update: ClientUpdate): void {
    this.#mean.add(update);
  }

  /** Row-sparse updates fold in as they do into FedAvg's, for the same reason. */
  addSparse(update: SparseClientUpdate): void {
    this.#mean.addSparse(update);
  }

  /** The pseudo-gradient is the weighted mean of the deltas, so partial sums fold in as they do into FedAvg's. */
  addPartial(sum: Float64Array, exampleCount: number, count: number): void {
    this.#mean.addPartial(sum, exampleCount, count);
  }

  get count(): number {
    return this.#mean.count;
  }

  get exampleCount(): number {
    return this.#mean.exampleCount;
  }

  finish(): Float32Array {
    const next = new Float32Array(this.#global.length);
    this.#step(this.#mean.meanDelta(), next);
    return next;
  }
}
