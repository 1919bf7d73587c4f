/**
 * The strategy contract: what a federated algorithm decides, separated from the round loop that
 * runs it (server/round-loop.ts, written once). Modelled on Flower's strategy: the strategy
 *
 * - configures a training round: picks the clients and the instructions each one trains with
 *   ({@link Strategy.configureFit});
 * - aggregates the round's updates, streaming: the loop hands each validated update to
 *   {@link Aggregation.add} as it arrives and drops it, so memory is one accumulator, not one
 *   buffer per client, wherever the math allows ({@link Strategy.aggregateFit});
 * - configures federated evaluation ({@link Strategy.configureEvaluate}) and aggregates the
 *   replies and the training metrics ({@link Strategy.aggregateEvaluate},
 *   {@link Strategy.aggregateFitMetrics});
 * - exposes its server-side state (momentum, moments) for checkpoints ({@link Strategy.state},
 *   {@link Strategy.restore}).
 *
 * Behaviour is layered by wrapping (see strategy-wrapper.ts): a wrapper is itself a Strategy that
 * holds an inner one and may change what clients are told, transform or hold updates, and change
 * the aggregation, without the loop knowing.
 */
import type { OptimizerName } from '../model/training-defaults.ts';
import type { SparseDelta } from '../weights/sparse-rows.ts';
import type { StrategyState } from './strategy-state.ts';

/** A ready client that can be picked for a round. */
export interface Candidate {
  clientId: string;
  /** Training examples the client reported when it became ready (strategies may weigh selection on it). */
  lastExampleCount?: number;
}

/** A value of a fit config's `extra` map: what wrappers add for their client-side counterpart. */
export type ConfigValue = number | string | boolean;

/** What a selected client trains with in one round. Covered by the round's signature. */
export interface FitConfig {
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: OptimizerName;
  /**
   * FedProx proximal weight μ: the client adds μ/2·‖w − w_round‖² to its loss. Absent or 0 is plain
   * local training.
   */
  proximalMu?: number;
  /**
   * Open-ended settings for behaviour layered on a strategy (a privacy wrapper's clipping norm, a
   * secure-aggregation round's parameters). Keys match /^[a-zA-Z][\w.-]{0,63}$/; at most 64 keys.
   */
  extra?: Readonly<Record<string, ConfigValue>>;
}

/** One selected client and what it is told this round (Flower's FitIns). */
export interface FitInstruction {
  clientId: string;
  config: FitConfig;
}

/** One client's validated update: the trained head minus the round's global head. */
export interface ClientUpdate {
  clientId: string;
  delta: Float32Array;
  exampleCount: number;
  metrics: Readonly<Record<string, number>>;
}

/** A {@link ClientUpdate} whose delta arrived row-sparse (shared/weights/sparse-rows.ts). */
export interface SparseClientUpdate extends Omit<ClientUpdate, 'delta'> {
  delta: SparseDelta;
}

/** An embedding table's place in the flat model: `rows × cols` values from `offset`. */
export interface RowTable {
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
}

/** Streaming aggregation of one fit round. */
export interface Aggregation {
  /** Folds one update in; the caller may reuse or drop `update.delta` afterwards (copy what you keep). */
  add(update: ClientUpdate): void;
  /**
   * Present only when the result is a weighted mean of the deltas: folds `sum` = Σ n_k·Δ_k over
   * `count` updates worth `exampleCount` examples, summed elsewhere (the round loop's ingest
   * workers, server/update-ingest.ts); the same as `count` calls of `add` up to float64
   * reassociation. Aggregations that need each update (robust rules, clipping, privacy, secure
   * aggregation) leave it out and get every update through `add`. @default absent
   */
  addPartial?(sum: Float64Array, exampleCount: number, count: number): void;
  /**
   * Present only when the result is a weighted mean of the deltas: folds an update whose delta is
   * sparse (a row-sparse upload: zero outside its runs) without widening it, the same as `add` of
   * its dense delta. Others get such updates densely through `add`. @default absent
   */
  addSparse?(update: SparseClientUpdate): void;
  /**
   * Present only when the result is `global + η · Σ n_k Δ_k / N` (FedAvg's weighted mean): the same
   * result with each listed row's denominator N replaced by `rowExamples[r]`, the examples behind
   * that row (rows numbered table after table; 0 keeps N). Computed in float64 and rounded once to
   * float32, so a row one client of many sent moves by exactly η times its delta, up to that one
   * rounding (shared/strategy/row-averaging.ts). Called once instead of `finish`. @default absent
   */
  finishRows?(tables: readonly RowTable[], rowExamples: Float64Array): Float32Array;
  /** Number of updates folded in so far. */
  readonly count: number;
  /** Total examples behind the folded updates. */
  readonly exampleCount: number;
  /** The next global head. Throws if nothing was added. Called once, after the round closes. */
  finish(): Float32Array;
  /**
   * When present, the round loop calls this instead of `finish`: for aggregations that still
   * talk to the clients after the round closed (secure aggregation over sockets). @default absent
   */
  finishAsync?(): Promise<Float32Array>;
}

/** One client's federated-evaluation reply. */
export interface EvaluationReply {
  clientId: string;
  examples: number;
  loss: number;
  accuracy: number;
}

/** Streaming fold of per-client metrics (training metrics of a fit round, or evaluation replies). */
export interface MetricAggregation {
  add(clientId: string, examples: number, metrics: Readonly<Record<string, number>>): void;
  /** The folded metrics, or an empty object if nothing usable was added. */
  finish(): Record<string, number>;
}

export interface Strategy {
  /** Registry name (`fedavg`, `fedprox`, …), recorded in checkpoints. */
  readonly name: string;
  /** Ready clients a round waits for before it is configured. */
  readonly minClients: number;
  /** Smallest number of accepted updates for a round to count. */
  readonly minUpdates: number;
  /**
   * The round loop averages each embedding-table row over the updates that sent it
   * (shared/strategy/row-averaging.ts) rather than over the whole round. @default absent (false)
   */
  readonly rowAveraging?: boolean;
  /**
   * λ of drift correction with this round's control variates (shared/strategy/drift-correction.ts):
   * the round loop then asks the selected clients for their gradients at the round's model before
   * the fit, and sends each their mean with the fit request. @default absent (no gradient exchange)
   */
  readonly driftCorrection?: number;
  /**
   * The parameters it was built with by name (`serverMomentum`, `driftCorrection`, …; the
   * registry's, defaults applied). Checkpoints record them, and a resume with other values is
   * refused. @default absent (not recorded)
   */
  readonly params?: Readonly<Record<string, number>>;
  /**
   * Clients of this round and what each is told, drawn from the ready ones with `random` in [0, 1).
   * `global` is the head they will receive.
   */
  configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[];
  /** Starts folding this round's updates onto `global`. */
  aggregateFit(round: number, global: Float32Array): Aggregation;
  /** Folds the clients' training metrics (reported inside their updates). */
  aggregateFitMetrics(round: number): MetricAggregation;
  /**
   * Clients asked to evaluate the new head: `fitted` are the round's selected clients still ready,
   * `candidates` every ready client. An empty list skips federated evaluation.
   */
  configureEvaluate(round: number, candidates: readonly Candidate[], fitted: readonly string[]): string[];
  /** Folds the evaluation replies into `loss` / `accuracy` / `examples`. */
  aggregateEvaluate(round: number): MetricAggregation;
  /** Server-side state to checkpoint (after a round's aggregation finished); `null` if stateless. */
  state(): StrategyState | null;
  /** Restores what {@link state} returned (on resume, before the first round). */
  restore(state: StrategyState | null): void;
}
