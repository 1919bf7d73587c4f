import type { ErrorCode } from '../shared/core/errors.ts';

/** What the coordinator keeps about one completed round (the metrics history). */
export interface RoundRecord {
  round: number;
  roundId: string;
  /** Attempts it took (a round whose quorum was not met is retried with a new roundId). */
  attempts: number;
  selected: number;
  accepted: number;
  /** Clients that disconnected or missed the deadline. */
  dropped: number;
  /** Rejected updates by error code. */
  rejected: Partial<Record<ErrorCode, number>>;
  /** Examples behind the accepted updates. */
  examples: number;
  /** Example-weighted mean of the clients' local training metrics. */
  trainLoss: number | null;
  trainAccuracy: number | null;
  /** Federated evaluation of the new global head on the clients' validation splits. */
  evalLoss: number | null;
  evalAccuracy: number | null;
  evalExamples: number;
  /** Server-side evaluation, when the coordinator has a test set (simulations). */
  serverLoss: number | null;
  serverAccuracy: number | null;
  /**
   * Global models averaged into the model this round evaluated and would export (server-side
   * iterate averaging, shared/model/iterate-averaging.ts); absent when it is the round's own model.
   */
  averagedRounds?: number;
  /** Bytes of weights sent to clients and received from them this round. */
  bytesDown: number;
  bytesUp: number;
  seconds: number;
  /** Differential privacy spent, when the strategy is DP-wrapped (shared/privacy). */
  privacy?: { epsilonRound: number; epsilonTotal: number; delta: number; noiseMultiplier: number; clipNorm: number };
}
