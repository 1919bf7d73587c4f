export type { Strategy, Aggregation, Candidate, ClientUpdate, FitConfig } from './strategy.ts';
export { FedAvg, WeightedDeltaMean, sampleClients } from './fed-avg.ts';
export { FedAvgM } from './fed-avg-m.ts';
export type { FedAvgMOptions } from './fed-avg-m.ts';
export type { FedAvgOptions } from './fed-avg.ts';
