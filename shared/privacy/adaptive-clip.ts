/**
 * Adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy, "Differentially Private Learning with
 * Adaptive Clipping", NeurIPS 2021): instead of a fixed S, track the γ-quantile of the clients'
 * update norms. Each client reports one bit b = [‖Δ‖ ≤ S]; the coordinator takes the noisy
 * fraction b̄ = (Σb + N(0, σ_b²)) / m and moves S geometrically: S ← S·exp(−η_C·(b̄ − γ)).
 *
 * The bit costs privacy too. With a total noise multiplier z for the round, the delta's noise
 * multiplier becomes z_Δ = (z^{−2} − (2σ_b)^{−2})^{−1/2} (their Theorem 1), so the accountant
 * keeps charging z for the whole round. Defaults are the paper's: γ = 0.5, η_C = 0.2,
 * σ_b = m/20.
 */
import { FedtlError } from '../core/errors.ts';
import { cryptoNormalSource, type NormalSource } from './clip.ts';

/** Options of {@link AdaptiveClip}. */
export interface AdaptiveClipOptions {
  /** Starting clipping norm S₀ > 0. */
  readonly initialClipNorm: number;
  /** Target quantile γ ∈ (0, 1) of unclipped updates. @default 0.5 */
  readonly targetQuantile?: number;
  /** Geometric learning rate η_C > 0. @default 0.2 */
  readonly learningRate?: number;
  /** Noise std of the clipped-count, as a fraction of the clients per round (σ_b = fraction·m). @default 0.05 */
  readonly countNoiseFraction?: number;
}

export class AdaptiveClip {
  #clipNorm: number;
  readonly targetQuantile: number;
  readonly learningRate: number;
  readonly countNoiseFraction: number;

  constructor(options: AdaptiveClipOptions) {
    if (!(options.initialClipNorm > 0) || !Number.isFinite(options.initialClipNorm)) {
      throw new FedtlError('BAD_CONFIG', `initial clipping norm must be a finite number > 0, got ${options.initialClipNorm}`);
    }
    this.#clipNorm = options.initialClipNorm;
    this.targetQuantile = options.targetQuantile ?? 0.5;
    this.learningRate = options.learningRate ?? 0.2;
    this.countNoiseFraction = options.countNoiseFraction ?? 0.05;
    if (!(this.targetQuantile > 0 && this.targetQuantile < 1)) throw new FedtlError('BAD_CONFIG', `target quantile must be in (0, 1), got ${this.targetQuantile}`);
    if (!(this.learningRate > 0)) throw new FedtlError('BAD_CONFIG', `adaptive clipping learning rate must be > 0, got ${this.learningRate}`);
    if (!(this.countNoiseFraction > 0)) throw new FedtlError('BAD_CONFIG', `count noise fraction must be > 0, got ${this.countNoiseFraction}`);
  }

  get clipNorm(): number {
    return this.#clipNorm;
  }

  /**
   * Noise multiplier left for the delta when the round's total is `z` and m clients take part;
   * throws if the bit's noise alone would exceed the budget of z (σ_b too small).
   */
  deltaNoiseMultiplier(z: number, clients: number): number {
    const sigmaB = this.countNoiseFraction * clients;
    const rest = z ** -2 - (2 * sigmaB) ** -2;
    if (!(rest > 0)) {
      throw new FedtlError('BAD_CONFIG', `adaptive clipping: the count noise σ_b = ${sigmaB} leaves no privacy for the update at noise multiplier ${z}; raise z or the clients per round`);
    }
    return rest ** -0.5;
  }

  /** Updates S from the count Σb of unclipped updates among m clients, adding N(0, σ_b²) to the count first. Returns the new S. */
  update(unclippedCount: number, clients: number, normal: NormalSource = cryptoNormalSource()): number {
    if (!(clients > 0)) throw new FedtlError('BAD_CONFIG', 'adaptive clipping needs at least one client');
    const noisy = unclippedCount + this.countNoiseFraction * clients * normal();
    const fraction = noisy / clients;
    this.#clipNorm *= Math.exp(-this.learningRate * (fraction - this.targetQuantile));
    return this.#clipNorm;
  }
}
