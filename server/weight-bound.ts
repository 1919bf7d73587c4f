/**
 * The default bound on one client's weight in FedAvg.
 *
 * FedAvg weighs each update by the example count its client claims (McMahan et al., AISTATS 2017),
 * and nothing can check the claim. One client claiming far more than the others takes nearly all of
 * the round's weight and can replace the aggregate with its own update (model replacement:
 * Bagdasaryan et al., *How To Backdoor Federated Learning*, AISTATS 2020, arXiv:1807.00459).
 *
 * The bound: in each round, an update counts at most `ratio` × the median of the training-set sizes
 * the round's selected clients declared in their signed `ready`. The median is set before any
 * update arrives (so aggregation still streams) and cannot be moved by fewer than half of the
 * selected clients. With n selected clients of about the median size m, one liar's share is at most
 * ratio·m / (ratio·m + (n − 1)·m) = ratio / (ratio + n − 1); with the default ratio 5 and 10
 * clients, 36 % instead of ~100 %.
 *
 * Trade-off: an honest site holding more than `ratio` × the median is under-weighted too (it counts
 * as `ratio` × median examples), which moves the aggregate towards the smaller sites. Raise the
 * ratio (or set it to Infinity) for federations whose sizes really differ that much.
 */

import { median } from '../shared/math/statistics.ts';

/** Default of `maxExampleRatio`. */
export const DEFAULT_MAX_EXAMPLE_RATIO = 5;

/** Largest example count one update may weigh with, given the selected clients' declared counts. */
export function exampleCountCap(declared: readonly number[], ratio: number): number {
  if (!(ratio > 0)) throw new RangeError(`maxExampleRatio must be positive, got ${ratio}`);
  if (declared.length === 0 || ratio === Number.POSITIVE_INFINITY) return Number.POSITIVE_INFINITY;
  // At least one example, so a round of clients that declared nothing still weighs updates equally.
  return Math.max(1, Math.floor(ratio * median(declared)));
}
