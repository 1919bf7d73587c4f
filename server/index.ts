/** Public API of the coordinator side. */
export { Coordinator } from './coordinator.ts';
export type { CoordinatorOptions, Admission, AdmissionStatus } from './coordinator.ts';
export { startCoordinator, describeBase, initialHeadWeights } from './start-coordinator.ts';
export type { StartCoordinatorOptions } from './start-coordinator.ts';
export { RoundLoop } from './round-loop.ts';
export type { RoundLoopOptions, Participant, UpdateOpener, OpenedUpdate } from './round-loop.ts';
export { ClientManager } from './client-manager.ts';
export type { ClientStatus } from './client-manager.ts';
export { FitRound, EvaluateRound } from './round-state.ts';
export type { ActiveRound, RoundKind } from './round-state.ts';
export type { RoundRecord } from './round-record.ts';
export { saveCheckpoint, loadCheckpoint } from './checkpoint.ts';
export type { Checkpoint } from './checkpoint.ts';
export { createUpdateOpener } from './update-opener.ts';
export type { UpdateOpenerOptions } from './update-opener.ts';
