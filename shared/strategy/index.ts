/** Public API of `shared/strategy`: the strategy contract, the strategies, and the wrapper mechanism. */
export type { Strategy, Aggregation, Candidate, ClientUpdate, ConfigValue, EvaluationReply, FitConfig, FitInstruction, MetricAggregation } from './strategy.ts';
export { FedAvg, WeightedDeltaMean, WeightedMetricMean, sampleClients } from './fed-avg.ts';
export type { FedAvgOptions } from './fed-avg.ts';
export { FedAvgM } from './fed-avg-m.ts';
export type { FedAvgMOptions } from './fed-avg-m.ts';
export { PseudoGradientAggregation, type ServerStep } from './pseudo-gradient.ts';
export { StrategyWrapper, mapUpdates } from './strategy-wrapper.ts';
export { ClippedStrategy, clipToNorm, l2Norm } from './clipped-strategy.ts';
export type { ClippedStrategyOptions } from './clipped-strategy.ts';
export { encodeState, decodeState, stateArray, stateChild, stateNumber } from './strategy-state.ts';
export type { StrategyState, StateValue } from './strategy-state.ts';
