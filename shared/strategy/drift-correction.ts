/**
 * Drift correction with this round's control variates: SCAFFOLD's corrected local steps
 * (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", ICML
 * 2020, https://arxiv.org/abs/1910.06378, option I) with c_i and c taken fresh at the round's model,
 * as FedLin does (Mitra et al., "Linear Convergence in Federated Learning: Tackling Client
 * Heterogeneity and Sparse Gradients", NeurIPS 2021, https://arxiv.org/abs/2102.07053).
 *
 * Each round then has two exchanges with the selected clients:
 *
 * 1. **gradient**: each client sends its full-batch gradient c_i at the round's model, sealed and
 *    checked like an update; the round loop averages them by example count into c;
 * 2. **fit**: each client that answered gets c with its fit request and trains with every step's
 *    gradient plus λ·(c − c_i), c_i recomputed locally at the same model (so a client keeps no state
 *    between the two exchanges). Its steps then follow the federation's descent direction instead
 *    of its own label-skewed one; the aggregation is the inner strategy's, unchanged.
 *
 * Why fresh variates: SCAFFOLD's usual c from the previous round lags a fine-tuned embedding table
 * that moves fast, and the correction then pushes in stale directions (imdb-glove's federation
 * probe: 49.9–83.1 % swinging with last round's c, 83.5 % with this round's at λ = 0.5, against
 * 81.8 % without). The price is a second exchange and one more pass over each client's data per
 * round. What the gradient phase reveals is what an update reveals (SECURITY.md).
 *
 * The strategy side is a wrapper ({@link DriftCorrected}): it announces λ; the round loop
 * (server/round-loop.ts) runs the gradient exchange and attaches c; the client side reads the
 * settings below from the signed fit config (client/local-trainer.ts, client/stage-trainer.ts).
 */
import { FedtlError } from '../core/errors.ts';
import { checkedOption, isPositive } from './option-check.ts';
import type { FitConfig, Strategy } from './strategy.ts';
import { StrategyWrapper } from './strategy-wrapper.ts';

/** `extra` key of a gradient-exchange request: `'gradient'` asks for c_i instead of training. */
export const DRIFT_PHASE_KEY = 'drift.phase';
/** `extra` key of a corrected fit: λ, the correction's weight. */
export const DRIFT_WEIGHT_KEY = 'drift.weight';
/** `extra` key of a corrected fit: SHA-256 (hex) of the control vector c the request carries, so the signature covers it. */
export const DRIFT_CONTROL_KEY = 'drift.control';

export const DRIFT_DEFAULTS = {
  /** λ: 0.5 was steady on imdb-glove's probe (82.8–83.6 % over the last rounds); λ = 1 swung 81.4–84.2 %. */
  weight: 0.5,
} as const;

/** What a fit config asks of the client's drift correction. */
export type DriftInstruction = { kind: 'gradient' } | { kind: 'corrected'; weight: number; controlDigest: string } | null;

/** Reads (and checks) the drift-correction settings of a signed fit config. */
export function driftInstruction(config: FitConfig): DriftInstruction {
  const extra = config.extra ?? {};
  const phase = extra[DRIFT_PHASE_KEY];
  const weight = extra[DRIFT_WEIGHT_KEY];
  const digest = extra[DRIFT_CONTROL_KEY];
  if (phase !== undefined) {
    if (phase !== 'gradient') throw new FedtlError('BAD_MESSAGE', `fit.config.extra.${DRIFT_PHASE_KEY}: expected "gradient", got ${JSON.stringify(phase)}`);
    if (weight !== undefined || digest !== undefined) throw new FedtlError('BAD_MESSAGE', 'a gradient request carries no drift correction');
    return { kind: 'gradient' };
  }
  if (weight === undefined && digest === undefined) return null;
  if (!(typeof weight === 'number' && weight > 0 && Number.isFinite(weight))) throw new FedtlError('BAD_MESSAGE', `fit.config.extra.${DRIFT_WEIGHT_KEY}: expected a finite number > 0`);
  if (!(typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest))) throw new FedtlError('BAD_MESSAGE', `fit.config.extra.${DRIFT_CONTROL_KEY}: expected a SHA-256 hex digest`);
  return { kind: 'corrected', weight, controlDigest: digest };
}

/** The config of a round's gradient exchange: the fit config, marked. */
export function gradientConfig(config: FitConfig): FitConfig {
  return { ...config, extra: { ...config.extra, [DRIFT_PHASE_KEY]: 'gradient' } };
}

/** The config of a corrected fit: λ and the digest of the control vector sent with it. */
export function correctedConfig(config: FitConfig, weight: number, controlDigest: string): FitConfig {
  return { ...config, extra: { ...config.extra, [DRIFT_WEIGHT_KEY]: weight, [DRIFT_CONTROL_KEY]: controlDigest } };
}

/** Why each privacy layer refuses drift correction. */
const REFUSED = {
  'secure aggregation': 'the gradient exchange would send each client\'s gradient unmasked, which is what secure aggregation hides',
  'differential privacy': 'the gradient exchange would send each client\'s gradient without clipping or noise, outside the privacy accounting',
} as const;

/** BAD_CONFIG at start when `inner` corrects drift and `layer` would wrap it. */
export function refuseDriftCorrection(inner: Strategy, layer: keyof typeof REFUSED): void {
  if (inner.driftCorrection !== undefined) throw new FedtlError('BAD_CONFIG', `strategy scaffold (drift correction) cannot be combined with ${layer}: ${REFUSED[layer]}; use another strategy`);
}

export interface DriftCorrectionOptions {
  /** λ, the correction's weight (> 0, finite). @default 0.5 ({@link DRIFT_DEFAULTS}) */
  weight?: number;
  /** The name checkpoints record (the registry's `scaffold`). @default `drift(<inner>)` */
  name?: string;
}

/**
 * A strategy whose clients train with drift correction: everything is the inner strategy's; the
 * round loop sees {@link driftCorrection} and runs the gradient exchange before each fit.
 */
export class DriftCorrected extends StrategyWrapper {
  readonly wrapperName = 'drift';
  readonly #weight: number;
  readonly #name: string | undefined;

  constructor(inner: Strategy, options: DriftCorrectionOptions = {}) {
    super(inner);
    this.#weight = checkedOption(options.weight, DRIFT_DEFAULTS.weight, 'driftCorrection', isPositive, 'a finite number > 0');
    this.#name = options.name;
  }

  override get name(): string {
    return this.#name ?? super.name;
  }

  /** λ. */
  override get driftCorrection(): number {
    return this.#weight;
  }
}
