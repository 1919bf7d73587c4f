/**
 * Distributed Gaussian noise that composes with secure aggregation: a simpler documented variant
 * of the distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML 2021), using continuous
 * Gaussian shares and subtractive dither instead of discrete noise.
 *
 * ## Mechanism (per round, per client k of the survivors U, |U| ≥ m)
 * 1. clip: x_k ← x_k·min(1, S/‖x_k‖)                                  (sensitivity S)
 * 2. noise: y_k = x_k + n_k, n_k ~ N(0, σ²/m·I), σ = z·S
 * 3. quantize with subtractive dither: q_k = round(s·y_k + u_k), u_k ~ U[−½, ½)^d from the
 *    client's self-mask seed (the coordinator learns u_k when it unmasks, not before)
 * 4. mask and send q_k (secure aggregation); the coordinator obtains Σq_k and Σu_k and outputs
 *    (Σq_k − Σu_k)/s.
 *
 * ## Proof sketch (the coordinator's output is (z, S)-Gaussian-mechanism private)
 * - Dither: by Schuchman's theorem (IEEE Trans. Comm. 1964), with u_k uniform on one quantization
 *   step and independent of y_k, the error e_k = (q_k − u_k)/s − y_k is uniform on [−½s⁻¹, ½s⁻¹)^d
 *   and independent of y_k. So (Σq_k − Σu_k)/s = Σx_k + Σn_k + Σe_k with (e_k) independent of
 *   everything else.
 * - Noise: Σn_k ~ N(0, (|U|/m)·σ²·I) with |U| ≥ m, i.e. at least σ² per coordinate.
 * - Hence the output is Σx_k + N(0, σ'²I) with σ' ≥ z·S (Gaussian mechanism on a sum of
 *   sensitivity S), followed by adding independent noise Σe_k: post-processing, which costs no
 *   privacy. Secure aggregation reveals nothing beyond Σq_k (and the dithers, which are independent
 *   of the data), so the coordinator's view is a post-processing of this Gaussian mechanism and the
 *   sampled-Gaussian accountant applies with noise multiplier z.
 * - Clamping to the ring's clipping range c = S + 10·σ/√m would break the argument, so c is set so
 *   that a clamp is a tail event: per coordinate |x| ≤ S and P(|n| > 10σ/√m) < 2·10⁻²³; over
 *   d·|U| ≤ 10⁹ coordinates the probability any clamp happens in a round is < 10⁻¹³, which is
 *   added to δ (negligible next to δ = 10⁻⁵).
 * - What it does not cover: clients colluding with the coordinator can subtract their own noise,
 *   leaving σ²·(|U| − colluders)/m. Choose m below the honest clients expected, as Kairouz et al.
 *   do.
 */
import { FedtlError } from '../core/errors.ts';
import { addGaussianNoise, type NormalSource } from './clip.ts';

/** The clamp tail: coordinates are within S + TAIL_SIGMAS·σ_client except with negligible probability. */
export const TAIL_SIGMAS = 10;

/** Standard deviation each client adds so that any sum of ≥ `minContributors` inputs has std ≥ z·S. */
export function clientNoiseStddev(noiseMultiplier: number, clipNorm: number, minContributors: number): number {
  if (!Number.isSafeInteger(minContributors) || minContributors < 1) throw new FedtlError('BAD_CONFIG', `minimum contributors must be an integer >= 1, got ${minContributors}`);
  return (noiseMultiplier * clipNorm) / Math.sqrt(minContributors);
}

/** Clipping range c of the secure-aggregation ring for a DP run: S + 10·σ_client. */
export function ringClipRange(noiseMultiplier: number, clipNorm: number, minContributors: number): number {
  return clipNorm + TAIL_SIGMAS * clientNoiseStddev(noiseMultiplier, clipNorm, minContributors);
}

/** Step 2 on a client: adds its share of the noise to its clipped delta, in place. */
export function addDistributedNoise(delta: Float32Array, noiseMultiplier: number, clipNorm: number, minContributors: number, normal?: NormalSource): void {
  addGaussianNoise(delta, clientNoiseStddev(noiseMultiplier, clipNorm, minContributors), normal);
}
