/** Public API of the client side. */
export { FedtlClient } from './client.ts';
export type { ClientOptions, ClientData, ClientRoundEvent } from './client.ts';
export { LocalTrainer } from './local-trainer.ts';
export { clientSeed, roundSeed, runEvaluateRound, runFitRound, verifyRoundRequest } from './client-round.ts';
export type { ClientRoundContext, FitRoundResult } from './client-round.ts';
export type { LabeledFeatures, LocalFitResult } from './local-trainer.ts';
export { computeFeatures } from './features.ts';
export type { ComputeFeaturesOptions } from './features.ts';
export { ensureBase } from './base-cache.ts';
export { loadExportedModel, predict } from './predict.ts';
export type { ExportedModel, Prediction } from './predict.ts';
export * from './data/index.ts';
