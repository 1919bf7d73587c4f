/**
 * Update clipping around any strategy: every client delta Δ is scaled to Δ·min(1, C/‖Δ‖₂) before
 * the inner strategy aggregates it, so no single client can move the head by more than C. The
 * clipping step of DP-FedAvg (McMahan et al., "Learning Differentially Private Recurrent Language
 * Models", ICLR 2018, https://arxiv.org/abs/1710.06963), here without noise.
 */
import { FedtlError } from '../core/errors.ts';
import { mapUpdates, StrategyWrapper } from './strategy-wrapper.ts';
import type { Aggregation, Strategy } from './strategy.ts';

export interface ClippedStrategyOptions {
  /** Largest L2 norm of a delta after clipping, C. */
  clipNorm: number;
}

/** L2 norm of a vector, accumulated in float64. */
export function l2Norm(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]! * values[i]!;
  return Math.sqrt(sum);
}

/** `delta` scaled to norm at most `limit` (a copy when scaled; the input itself when already within). */
export function clipToNorm(delta: Float32Array, limit: number): Float32Array {
  const norm = l2Norm(delta);
  if (norm <= limit) return delta;
  const factor = limit / norm;
  const clipped = new Float32Array(delta.length);
  for (let i = 0; i < delta.length; i++) clipped[i] = delta[i]! * factor;
  return clipped;
}

export class ClippedStrategy extends StrategyWrapper {
  readonly wrapperName = 'clipped';
  readonly clipNorm: number;

  constructor(inner: Strategy, options: ClippedStrategyOptions) {
    super(inner);
    if (!(options.clipNorm > 0 && Number.isFinite(options.clipNorm))) throw new FedtlError('BAD_CONFIG', `clipNorm must be a positive number, got ${options.clipNorm}`);
    this.clipNorm = options.clipNorm;
  }

  override aggregateFit(round: number, global: Float32Array): Aggregation {
    return mapUpdates(this.inner.aggregateFit(round, global), (update) => ({ ...update, delta: clipToNorm(update.delta, this.clipNorm) }));
  }
}
