/**
 * Server-side iterate averaging of the global model over the last rounds of each stage (tail
 * averaging).
 *
 * With a constant learning rate the global model of a federation does not settle: each round's
 * aggregate moves it by a noisy step (a few clients, label skew, crashes), so its last round is one
 * point of a cloud around the optimum and its test accuracy swings from round to round. The mean of
 * the last iterates sits near the middle of that cloud: Polyak & Juditsky 1992, "Acceleration of
 * Stochastic Approximation by Averaging" (https://doi.org/10.1137/0330046); Izmailov et al. 2018,
 * "Averaging Weights Leads to Wider Optima and Better Generalization" (SWA,
 * https://arxiv.org/abs/1803.05407). Clients keep training from the last iterate (as SWA's
 * optimizer does); only the model the coordinator evaluates and exports is the mean.
 *
 * The window is the tail of each stage of a fine-tuning schedule: when the trainable set widens the
 * parameters that move change, and an average over both stages would mix a probe's weights into a
 * fine-tuned model, so averaging restarts at every stage boundary. Within stage s of `n` rounds the
 * last ⌈n · tailFraction⌉ rounds are averaged — with 0.5 the second half, as the centralized
 * baselines average their second half's epoch-end weights (scripts/simulation/baselines.ts).
 *
 * Pure arithmetic on flat float32 models (the sum is float64); no tensors.
 */
import { FedtlError } from '../core/errors.ts';

export interface IterateAveragingOptions {
  /**
   * Share of each stage's rounds, counted back from its last round, whose global models are
   * averaged: in (0, 1]. 0.5 averages the second half of every stage; 1 the whole stage.
   * @default 0.5
   */
  tailFraction?: number;
}

export const ITERATE_AVERAGING_DEFAULTS = { tailFraction: 0.5 } as const;

/** The rounds of one stage and the first of them that is averaged (rounds are 1-based). */
export interface AveragingWindow {
  /** First round of the stage. */
  stageStart: number;
  /** Last round of the stage. */
  stageEnd: number;
  /** First averaged round: stageEnd − ⌈n · tailFraction⌉ + 1 for a stage of n rounds. */
  from: number;
}

/** What a checkpoint stores to resume the average exactly. */
export interface IterateAveragingState {
  /** First round of the window the sum belongs to; 0 while nothing is summed. */
  from: number;
  /** Iterates in the sum. */
  count: number;
  /** Σ of the averaged iterates (float64); null while nothing is summed. */
  sum: Float64Array | null;
}

/** Checks `tailFraction` (in (0, 1]); the default when absent. */
export function checkedTailFraction(value: number | undefined): number {
  const fraction = value ?? ITERATE_AVERAGING_DEFAULTS.tailFraction;
  if (!(fraction > 0 && fraction <= 1)) throw new FedtlError('BAD_CONFIG', `iterate averaging tailFraction must be in (0, 1], got ${fraction}`);
  return fraction;
}

/**
 * The averaging window of `round`: its stage's rounds (stages start at `stageStarts`, increasing,
 * the first at round 1; the last ends at `rounds`) and the first averaged one.
 */
export function averagingWindow(round: number, stageStarts: readonly number[], rounds: number, tailFraction: number): AveragingWindow {
  if (!Number.isSafeInteger(round) || round < 1 || round > rounds) throw new FedtlError('BAD_CONFIG', `round ${round} is outside 1…${rounds}`);
  if (stageStarts[0] !== 1) throw new FedtlError('BAD_CONFIG', `the first stage must start at round 1, not ${String(stageStarts[0])}`);
  let s = 0;
  while (s + 1 < stageStarts.length && stageStarts[s + 1]! <= round) s++;
  const stageStart = stageStarts[s]!;
  const next = stageStarts[s + 1];
  const stageEnd = next === undefined ? rounds : Math.min(rounds, next - 1);
  const length = stageEnd - stageStart + 1;
  // A float product such as 6 · 0.5 is exact; the small slack keeps e.g. 10 · 0.3 = 3.0000000000000004 at 3.
  const averaged = Math.max(1, Math.min(length, Math.ceil(length * tailFraction - 1e-9)));
  return { stageStart, stageEnd, from: stageEnd - averaged + 1 };
}

/**
 * The running mean of the global models of the current window. Feed every completed round's model
 * to {@link observe}; {@link model} is then what to evaluate and export.
 */
export class IterateAverage {
  readonly tailFraction: number;
  readonly #stageStarts: readonly number[];
  readonly #rounds: number;
  #from = 0;
  #count = 0;
  #sum: Float64Array | null = null;

  /** `stageStarts`: the first round of each stage ([1] without a schedule); `rounds`: the run's last round. */
  constructor(options: IterateAveragingOptions, stageStarts: readonly number[], rounds: number) {
    this.tailFraction = checkedTailFraction(options.tailFraction);
    if (!Number.isSafeInteger(rounds) || rounds < 1) throw new FedtlError('BAD_CONFIG', `rounds must be a positive integer, got ${rounds}`);
    this.#stageStarts = [...stageStarts];
    this.#rounds = rounds;
    // Checks the stage list once, up front, rather than at the first round.
    averagingWindow(1, this.#stageStarts, rounds, this.tailFraction);
  }

  /** The window of `round`. */
  windowOf(round: number): AveragingWindow {
    return averagingWindow(round, this.#stageStarts, this.#rounds, this.tailFraction);
  }

  /**
   * Folds in the global model after `round`. Before its window it changes nothing (and drops a sum
   * left from an earlier stage); the first round of a window starts a new sum.
   */
  observe(round: number, weights: Float32Array): void {
    const window = this.windowOf(round);
    if (round < window.from) {
      this.#reset();
      return;
    }
    if (this.#from !== window.from || (this.#sum !== null && this.#sum.length !== weights.length)) {
      this.#reset();
      this.#from = window.from;
    }
    const sum = (this.#sum ??= new Float64Array(weights.length));
    for (let i = 0; i < weights.length; i++) sum[i]! += weights[i]!;
    this.#count++;
  }

  /** Iterates in the current average (0 before the window of the last observed round). */
  get count(): number {
    return this.#count;
  }

  /** The mean of the current window's iterates as float32, or null when none is summed. */
  get model(): Float32Array | null {
    const sum = this.#sum;
    if (sum === null || this.#count === 0) return null;
    const mean = new Float32Array(sum.length);
    for (let i = 0; i < sum.length; i++) mean[i] = sum[i]! / this.#count;
    return mean;
  }

  state(): IterateAveragingState {
    return { from: this.#from, count: this.#count, sum: this.#sum ? Float64Array.from(this.#sum) : null };
  }

  /** Restores what {@link state} returned (a checkpoint's), checking it fits a model of `length` values. */
  restore(state: IterateAveragingState, length: number): void {
    const consistent = Number.isSafeInteger(state.from) && state.from >= 0 && Number.isSafeInteger(state.count) && state.count >= 0 && (state.sum === null ? state.count === 0 : state.count > 0 && state.sum.length === length);
    if (!consistent) throw new FedtlError('CORRUPT_FILE', `iterate averaging state does not fit a model of ${length} values (from ${state.from}, ${state.count} iterate(s), ${state.sum?.length ?? 'no'} sum values)`);
    this.#from = state.from;
    this.#count = state.count;
    this.#sum = state.sum ? Float64Array.from(state.sum) : null;
  }

  #reset(): void {
    this.#from = 0;
    this.#count = 0;
    this.#sum = null;
  }
}
