/**
 * Behaviour layered around any strategy, as Flower wraps a strategy for differential privacy
 * instead of subclassing it. A wrapper is itself a {@link Strategy}: it holds an inner one and
 * forwards every decision to it; a concrete wrapper overrides only what it changes:
 *
 * - what clients are told: override `configureFit` and edit each instruction's config (its
 *   `extra` map carries settings for a client-side counterpart);
 * - the updates: override `aggregateFit` and return an {@link Aggregation} that transforms each
 *   update before passing it on (clipping), or holds them (secure aggregation's masked sums);
 * - the aggregation: the same `aggregateFit` can change the result of `finish()` (adding noise).
 *
 * Its state nests the inner strategy's under `inner`, so a checkpoint of a wrapped strategy
 * restores both layers. The round loop never knows a wrapper is there.
 */
import type { StrategyState } from './strategy-state.ts';
import { stateChild } from './strategy-state.ts';
import type { Aggregation, Candidate, ClientUpdate, ConfigValue, FitConfig, FitInstruction, MetricAggregation, Strategy } from './strategy.ts';

export abstract class StrategyWrapper implements Strategy {
  protected readonly inner: Strategy;

  constructor(inner: Strategy) {
    this.inner = inner;
  }

  /** `<wrapper>(<inner>)`, e.g. `clipped(fedavg)`: checkpoints refuse to resume under another stack. */
  abstract readonly wrapperName: string;

  get name(): string {
    return `${this.wrapperName}(${this.inner.name})`;
  }

  get minClients(): number {
    return this.inner.minClients;
  }

  get minUpdates(): number {
    return this.inner.minUpdates;
  }

  get rowAveraging(): boolean {
    return this.inner.rowAveraging === true;
  }

  get driftCorrection(): number | undefined {
    return this.inner.driftCorrection;
  }

  get params(): Readonly<Record<string, number>> | undefined {
    return this.inner.params;
  }

  /**
   * The instructions with `extra` added to their configs: one new config per distinct config, so
   * clients told the same thing still share one config object (the round loop signs one request
   * per config object, not one per client).
   */
  protected static withExtra(instructions: readonly FitInstruction[], extra: Readonly<Record<string, ConfigValue>>): FitInstruction[] {
    const marked = new Map<FitConfig, FitConfig>();
    return instructions.map((instruction) => {
      let config = marked.get(instruction.config);
      if (!config) {
        config = { ...instruction.config, extra: { ...instruction.config.extra, ...extra } };
        marked.set(instruction.config, config);
      }
      return { ...instruction, config };
    });
  }

  configureFit(round: number, global: Float32Array, candidates: readonly Candidate[], random: () => number): FitInstruction[] {
    return this.inner.configureFit(round, global, candidates, random);
  }

  aggregateFit(round: number, global: Float32Array): Aggregation {
    return this.inner.aggregateFit(round, global);
  }

  aggregateFitMetrics(round: number): MetricAggregation {
    return this.inner.aggregateFitMetrics(round);
  }

  configureEvaluate(round: number, candidates: readonly Candidate[], fitted: readonly string[]): string[] {
    return this.inner.configureEvaluate(round, candidates, fitted);
  }

  aggregateEvaluate(round: number): MetricAggregation {
    return this.inner.aggregateEvaluate(round);
  }

  /** The wrapper's own state; override to keep some. @default null */
  protected ownState(): StrategyState | null {
    return null;
  }

  /** Restores what {@link ownState} returned. */
  protected restoreOwn(_state: StrategyState | null): void {
    // Stateless by default.
  }

  state(): StrategyState | null {
    const inner = this.inner.state();
    const own = this.ownState();
    if (inner === null && own === null) return null;
    return { own, inner };
  }

  restore(state: StrategyState | null): void {
    this.restoreOwn(state ? stateChild(state, 'own') : null);
    this.inner.restore(state ? stateChild(state, 'inner') : null);
  }
}

/**
 * An aggregation that passes each update through `transform` before the inner one folds it
 * (the building block of update-transforming wrappers). The result is still the inner one's, so
 * its per-row finish is forwarded (clipping keeps FedAvg's mean a mean of the clipped deltas).
 */
export function mapUpdates(inner: Aggregation, transform: (update: ClientUpdate) => ClientUpdate): Aggregation {
  return {
    add: (update) => inner.add(transform(update)),
    ...(inner.finishRows ? { finishRows: inner.finishRows.bind(inner) } : {}),
    get count() {
      return inner.count;
    },
    get exampleCount() {
      return inner.exampleCount;
    },
    finish: () => inner.finish(),
  };
}
