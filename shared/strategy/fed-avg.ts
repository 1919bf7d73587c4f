/**
 * FedAvg: McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
 * Data", AISTATS 2017 (https://arxiv.org/abs/1602.05629).
 *
 * Each round a fraction C of the clients (at least `minClients`) trains E local epochs with batch
 * size B, and the server replaces the global weights by the example-weighted mean of the clients'
 * weights. With deltas that is w ← w + Σ n_k Δ_k / Σ n_k, which is what {@link weightedMeanDelta}
 * computes, streaming, in float64 so a thousand small updates do not lose precision.
 */
import { FedtlError } from '../core/errors.ts';
import { foldQuad } from '../math/delta-kernels.ts';
import { TRAINING_DEFAULTS } from '../model/training-defaults.ts';
import type { StrategyState } from './strategy-state.ts';
import { foldSparse } from '../weights/sparse-rows.ts';
import type { Aggregation, Candidate, ClientUpdate, FitConfig, FitInstruction, MetricAggregation, RowTable, SparseClientUpdate, Strategy } from './strategy.ts';

/** Server-side defaults of FedAvg, written once (client-side ones are TRAINING_DEFAULTS). */
export const FEDAVG_DEFAULTS = { fractionFit: 1, minClients: 2, serverLearningRate: 1, rowAveraging: false } as const;

export interface FedAvgOptions {
  /** Fraction C of ready clients picked each round. @default 1 */
  fractionFit?: number;
  /** Fewest clients picked; a round waits until this many are ready. @default 2 */
  minClients?: number;
  /** Most clients picked in one round. @default Infinity */
  maxClients?: number;
  /** Fewest accepted updates for a round to count. @default minClients */
  minUpdates?: number;
  /** Local epochs E. @default TRAINING_DEFAULTS.epochs (1) */
  epochs?: number;
  /** Local batch size B. @default TRAINING_DEFAULTS.batchSize (32) */
  batchSize?: number;
  /** Client learning rate. @default TRAINING_DEFAULTS.learningRate (0.01) */
  learningRate?: number;
  /** Client optimizer. @default TRAINING_DEFAULTS.optimizer ('adam') */
  optimizer?: FitConfig['optimizer'];
  /** Server learning rate η applied to the averaged delta (1 = plain FedAvg). @default 1 */
  serverLearningRate?: number;
  /** Who evaluates each new head: the round's fitted clients still ready, every ready client, or nobody. @default 'selected' */
  evaluateClients?: 'selected' | 'all' | 'none';
  /**
   * Average each embedding-table row over the clients that sent it (shared/strategy/row-averaging.ts;
   * the round loop applies it). Only FedAvg and FedProx take it (their aggregation is the weighted
   * mean it re-weights row by row, in float64 before the one rounding to float32); every other
   * strategy refuses it with BAD_CONFIG. @default false
   */
  rowAveraging?: boolean;
}

/** `acc[i] += weight · delta[i]` in float64: the one accumulation loop of the weighted mean (main thread and ingest workers). */
export function foldWeighted(acc: Float64Array, delta: Float32Array, weight: number): void {
  const n = acc.length;
  for (let i = 0; i < n; i++) acc[i] = acc[i]! + weight * delta[i]!;
}

/**
 * {@link foldWeighted} of two deltas in one pass: `acc[i] += wa·a[i] + wb·b[i]`. The float64 sum is
 * read and written once for two updates instead of twice, which on a 1M-parameter head (8 MB of
 * float64, beyond the core's cache) takes 1.2 ms per update against 2.2 ms
 * (scripts/bench/ingest.ts). Equal to two {@link foldWeighted} calls up to float64 reassociation.
 */
export function foldWeightedPair(acc: Float64Array, a: Float32Array, wa: number, b: Float32Array, wb: number): void {
  const n = acc.length;
  for (let i = 0; i < n; i++) acc[i] = acc[i]! + (wa * a[i]! + wb * b[i]!);
}

/**
 * {@link foldWeighted} of four deltas in one pass: `acc[i] += (wa·a[i] + wb·b[i]) + (wc·c[i] + wd·d[i])`.
 * The float64 sum is read and written once per four updates instead of four times. Where all five
 * arrays live in one kernel memory (an ingest worker's, shared/math/delta-kernels.ts) the loop runs
 * in WebAssembly SIMD, bit for bit the same as in JavaScript, about 4× faster per update (one thread;
 * `npm run bench:delta-kernels`, figures in README Performance). Equal to four {@link foldWeighted}
 * calls up to float64 reassociation.
 */
export function foldWeightedQuad(acc: Float64Array, a: Float32Array, wa: number, b: Float32Array, wb: number, c: Float32Array, wc: number, d: Float32Array, wd: number): void {
  foldQuad(acc, a, wa, b, wb, c, wc, d, wd);
}

/** Streaming example-weighted mean of deltas, applied to `global`. Pure; float64 accumulator. */
export class WeightedDeltaMean implements Aggregation {
  readonly #global: Float32Array;
  readonly #sum: Float64Array;
  readonly #scale: number;
  #count = 0;
  #examples = 0;

  constructor(global: Float32Array, options: { serverLearningRate?: number } = {}) {
    this.#global = global;
    this.#sum = new Float64Array(global.length);
    this.#scale = options.serverLearningRate ?? 1;
  }

  get count(): number {
    return this.#count;
  }

  get exampleCount(): number {
    return this.#examples;
  }

  add(update: ClientUpdate | SparseClientUpdate): void {
    const { delta, exampleCount } = update;
    if (delta.length !== this.#sum.length) {
      throw new FedtlError('BAD_SHAPE', `update from ${update.clientId} has ${delta.length} values, the head has ${this.#sum.length}`);
    }
    if (!Number.isSafeInteger(exampleCount) || exampleCount <= 0) {
      throw new FedtlError('BAD_MESSAGE', `update from ${update.clientId} claims ${exampleCount} examples`);
    }
    if (delta instanceof Float32Array) foldWeighted(this.#sum, delta, exampleCount);
    else foldSparse(this.#sum, delta, exampleCount);
    this.#count++;
    this.#examples += exampleCount;
  }

  /** A row-sparse update: only its sent values are added (the others add exactly 0 in {@link add}). */
  addSparse(update: SparseClientUpdate): void {
    this.add(update);
  }

  /**
   * Folds a pre-summed partial: `sum` = Σ n_k·Δ_k over `count` updates whose example counts add up
   * to `exampleCount` (what the round loop's worker ingest returns, server/update-ingest.ts). Equivalent to `count` calls
   * of {@link add}, up to float64 reassociation. `sum` is read, not kept.
   */
  addPartial(sum: Float64Array, exampleCount: number, count: number): void {
    if (sum.length !== this.#sum.length) {
      throw new FedtlError('BAD_SHAPE', `partial sum has ${sum.length} values, the head has ${this.#sum.length}`);
    }
    if (!Number.isSafeInteger(count) || count < 0) throw new FedtlError('BAD_MESSAGE', `partial sum claims ${count} updates`);
    if (!Number.isSafeInteger(exampleCount) || exampleCount < count || (count === 0 && exampleCount !== 0)) {
      throw new FedtlError('BAD_MESSAGE', `partial sum of ${count} updates claims ${exampleCount} examples`);
    }
    const acc = this.#sum;
    for (let i = 0; i < acc.length; i++) acc[i]! += sum[i]!;
    this.#count += count;
    this.#examples += exampleCount;
  }

  /** Σ n_k Δ_k / Σ n_k in float64, without the server learning rate (for server optimizers). */
  meanDelta(): Float64Array {
    if (this.#examples === 0) throw new FedtlError('QUORUM_NOT_MET', 'no update was aggregated');
    const mean = new Float64Array(this.#sum.length);
    for (let i = 0; i < mean.length; i++) mean[i] = this.#sum[i]! / this.#examples;
    return mean;
  }

  finish(): Float32Array {
    if (this.#examples === 0) throw new FedtlError('QUORUM_NOT_MET', 'no update was aggregated');
    const factor = this.#scale / this.#examples;
    const next = new Float32Array(this.#global.length);
    for (let i = 0; i < next.length; i++) next[i] = this.#global[i]! + this.#sum[i]! * factor;
    return next;
  }

  /**
   * {@link finish} with each table row whose `rowExamples` n is in (0, N) set to
   * `global + η · Σ n_k Δ_k / n` from the float64 sum: one rounding to float32, never a rescaled
   * float32 step (whose rounding error would grow by N / n, and which is 0 for a step below half an
   * ulp of the weight times n / N).
   */
  finishRows(tables: readonly RowTable[], rowExamples: Float64Array): Float32Array {
    const rows = tables.reduce((total, t) => total + t.rows, 0);
    if (rowExamples.length !== rows) throw new FedtlError('BAD_SHAPE', `${rowExamples.length} row counts for ${rows} table rows`);
    const next = this.finish();
    let at = 0;
    for (const t of tables) {
      for (let r = 0; r < t.rows; r++, at++) {
        const n = rowExamples[at]!;
        if (!(n > 0 && n < this.#examples)) continue;
        const factor = this.#scale / n;
        const from = t.offset + r * t.cols;
        for (let i = from; i < from + t.cols; i++) next[i] = this.#global[i]! + this.#sum[i]! * factor;
      }
    }
    return next;
  }
}

/** Picks `max(minClients, round(fraction × n))` clients, at most `maxClients`, uniformly without replacement. */
export function sampleClients(candidates: readonly Candidate[], count: number, random: () => number): Candidate[] {
  const pool = [...candidates];
  const k = Math.min(count, pool.length);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, k);
}

/** Streaming example-weighted mean of named metrics; non-finite values are skipped per metric. */
export class WeightedMetricMean implements MetricAggregation {
  readonly #sums = new Map<string, { sum: number; weight: number }>();
  #examples = 0;

  add(_clientId: string, examples: number, metrics: Readonly<Record<string, number>>): void {
    if (!(examples > 0)) return;
    this.#examples += examples;
    for (const [name, value] of Object.entries(metrics)) {
      if (!Number.isFinite(value)) continue;
      const entry = this.#sums.get(name) ?? { sum: 0, weight: 0 };
      entry.sum += value * examples;
      entry.weight += examples;
      this.#sums.set(name, entry);
    }
  }

  finish(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, { sum, weight }] of this.#sums) out[name] = sum / weight;
    if (this.#examples > 0) out['examples'] = this.#examples;
    return out;
  }
}

/**
 * FedAvg, and the base every other strategy here extends: each of its five decisions is one
 * method, so a variant overrides one (FedProx {@link configureFit}, FedAvgM and the server
 * optimizers {@link aggregateFit}, the robust ones {@link aggregateFit} too).
 */
export class FedAvg implements Strategy {
  /**
   * This class's aggregation is the weighted mean that per-row averaging re-weights. Read as an own
   * property of the constructed class, so a subclass that changes the aggregation (FedAvgM, the
   * server optimizers, the robust rules) does not inherit it; FedProx declares it again.
   */
  protected static readonly takesRowAveraging: boolean = true;
  readonly name: string = 'fedavg';
  readonly minUpdates: number;
  readonly minClients: number;
  readonly rowAveraging: boolean;
  protected readonly options: Required<FedAvgOptions>;

  constructor(options: FedAvgOptions = {}) {
    const minClients = options.minClients ?? FEDAVG_DEFAULTS.minClients;
    this.options = {
      fractionFit: options.fractionFit ?? FEDAVG_DEFAULTS.fractionFit,
      minClients,
      maxClients: options.maxClients ?? Number.POSITIVE_INFINITY,
      minUpdates: options.minUpdates ?? minClients,
      epochs: options.epochs ?? TRAINING_DEFAULTS.epochs,
      batchSize: options.batchSize ?? TRAINING_DEFAULTS.batchSize,
      learningRate: options.learningRate ?? TRAINING_DEFAULTS.learningRate,
      optimizer: options.optimizer ?? TRAINING_DEFAULTS.optimizer,
      serverLearningRate: options.serverLearningRate ?? FEDAVG_DEFAULTS.serverLearningRate,
      evaluateClients: options.evaluateClients ?? 'selected',
      rowAveraging: options.rowAveraging ?? FEDAVG_DEFAULTS.rowAveraging,
    };
    const o = this.options;
    if (!(o.fractionFit > 0 && o.fractionFit <= 1)) throw new FedtlError('BAD_CONFIG', `fractionFit must be in (0, 1], got ${o.fractionFit}`);
    if (!Number.isSafeInteger(o.minClients) || o.minClients < 1) throw new FedtlError('BAD_CONFIG', `minClients must be a positive integer, got ${o.minClients}`);
    if (!(o.maxClients >= o.minClients)) throw new FedtlError('BAD_CONFIG', `maxClients (${o.maxClients}) must be at least minClients (${o.minClients})`);
    if (!Number.isSafeInteger(o.minUpdates) || o.minUpdates < 1) throw new FedtlError('BAD_CONFIG', `minUpdates must be a positive integer, got ${o.minUpdates}`);
    if (!(o.serverLearningRate > 0 && Number.isFinite(o.serverLearningRate))) throw new FedtlError('BAD_CONFIG', `serverLearningRate must be positive, got ${o.serverLearningRate}`);
    if (o.rowAveraging && !(Object.hasOwn(new.target, 'takesRowAveraging') && new.target.takesRowAveraging)) {
      throw new FedtlError('BAD_CONFIG', `${new.target.name} does not take rowAveraging: per-row averaging re-weights FedAvg's weighted mean, and only FedAvg and FedProx aggregate with it (--strategy fedavg or fedprox, or --row-averaging 0)`);
    }
    this.minUpdates = o.minUpdates;
    this.minClients = o.minClients;
    this.rowAveraging = o.rowAveraging;
  }

  /** Picks `max(minClients, round(C × n))` ready clients, at most `maxClients`. */
  selectClients(_round: number, candidates: readonly Candidate[], random: () => number): Candidate[] {
    const wanted = Math.min(this.options.maxClients, Math.max(this.options.minClients, Math.round(this.options.fractionFit * candidates.length)));
    return sampleClients(candidates, wanted, random);
  }

  /** The training config every selected client gets this round. */
  fitConfig(_round: number): FitConfig {
    const { epochs, batchSize, learningRate, optimizer } = this.options;
    return { epochs, batchSize, learningRate, optimizer };
  }

  configureFit(round: number, _global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    const config = this.fitConfig(round);
    return this.selectClients(round, candidates, random).map(({ clientId }) => ({ clientId, config }));
  }

  aggregateFit(_round: number, global: Float32Array): Aggregation {
    return new WeightedDeltaMean(global, { serverLearningRate: this.options.serverLearningRate });
  }

  aggregateFitMetrics(_round: number): MetricAggregation {
    return new WeightedMetricMean();
  }

  configureEvaluate(_round: number, candidates: readonly Candidate[], fitted: readonly string[]): string[] {
    switch (this.options.evaluateClients) {
      case 'none':
        return [];
      case 'all':
        return candidates.map((c) => c.clientId);
      default:
        return [...fitted];
    }
  }

  aggregateEvaluate(_round: number): MetricAggregation {
    return new WeightedMetricMean();
  }

  state(): StrategyState | null {
    return null;
  }

  restore(_state: StrategyState | null): void {
    // FedAvg keeps nothing between rounds.
  }
}
