/**
 * The strategy contract: what a federated algorithm decides, separated from the round loop that
 * runs it (the loop lives once, in the coordinator). A strategy picks the clients of a round,
 * the config they train with, and folds their updates into the next global head.
 *
 * Aggregation streams: the loop hands each validated update to {@link Aggregation.add} as it
 * arrives and drops it, so memory is one accumulator, not one buffer per client.
 */
import type { OptimizerName } from '../model/head-training.ts';

/** A client that can be picked for a round. */
export interface Candidate {
  clientId: string;
  /** Examples the client reported at its last update, if known (strategies may weigh selection on it). */
  lastExampleCount?: number;
}

/** What a selected client trains with in one round. */
export interface FitConfig {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
}

/** One client's validated update: the trained head minus the round's global head. */
export interface ClientUpdate {
  clientId: string;
  delta: Float32Array;
  exampleCount: number;
  metrics: Readonly<Record<string, number>>;
}

export interface Aggregation {
  /** Folds one update in; the caller may reuse or drop `update.delta` afterwards. */
  add(update: ClientUpdate): void;
  /** Number of updates folded in so far. */
  readonly count: number;
  /** Total examples behind the folded updates. */
  readonly exampleCount: number;
  /** The next global head. Throws if nothing was added. */
  finish(): Float32Array;
}

export interface Strategy {
  readonly name: string;
  /** Clients for this round, drawn from the connected ones with `random` in [0, 1). */
  selectClients(round: number, candidates: readonly Candidate[], random: () => number): Candidate[];
  /** Ready clients a round waits for before it selects any. */
  readonly minClients: number;
  /** Smallest number of accepted updates for a round to count. */
  readonly minUpdates: number;
  /** Training config sent to every selected client this round. */
  fitConfig(round: number): FitConfig;
  /** Starts folding updates onto the round's global head. */
  beginAggregation(round: number, global: Float32Array): Aggregation;
}
