/**
 * Rényi-DP accountant for the sampled Gaussian mechanism (Mironov, "Rényi Differential Privacy",
 * CSF 2017; Mironov, Talwar & Zhang, "Rényi Differential Privacy of the Sampled Gaussian
 * Mechanism", arXiv:1908.10530, 2019), the analysis used by DP-FedAvg (McMahan et al., ICLR 2018)
 * with clients as the privacy unit.
 *
 * For a sampling rate q and noise multiplier z (noise std = z × sensitivity), at an integer
 * order α ≥ 2:
 *   A_α = Σ_{k=0}^{α} C(α,k) (1−q)^{α−k} q^k exp((k² − k) / (2z²)),   RDP(α) = log(A_α) / (α − 1),
 * computed in log space. Rounds compose by adding RDP at every order. Integer orders give a valid
 * upper bound (fractional orders can only tighten it). Conversion to (ε, δ):
 * - `'balle2020'` (default): ε = RDP(α) + log((α−1)/α) − (log δ + log α)/(α − 1)
 *   (Balle et al., "Hypothesis Testing Interpretations and Rényi Differential Privacy", AISTATS 2020);
 * - `'classic'`: ε = RDP(α) − log δ / (α − 1) (Mironov 2017, Prop. 3), always larger.
 * The smallest ε over the orders is reported.
 *
 * Assumption stated: the analysis is for Poisson sampling of clients with rate q. fedtl selects a
 * fixed number of clients uniformly per round; the same q = selected / population is used, as is
 * common practice (it is an approximation, not a proof, for sampling without replacement).
 */
import { FedtlError } from '../core/errors.ts';

/** Orders used unless the caller gives its own: 2 … 256, dense where the optimum usually is. */
export const DEFAULT_ORDERS: readonly number[] = [
  ...Array.from({ length: 63 }, (_, i) => i + 2), // 2..64
  80, 96, 128, 160, 192, 256,
];

export type Conversion = 'balle2020' | 'classic';

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log(Math.exp(a - m) + Math.exp(b - m));
}

function logBinomial(n: number, k: number): number {
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k);
}

const logFactorials: number[] = [0];
function logFactorial(n: number): number {
  for (let i = logFactorials.length; i <= n; i++) logFactorials.push((logFactorials[i - 1] as number) + Math.log(i));
  return logFactorials[n] as number;
}

function checkMechanism(q: number, noiseMultiplier: number): void {
  if (!(q >= 0 && q <= 1)) throw new FedtlError('BAD_CONFIG', `sampling rate q must be in [0, 1], got ${q}`);
  if (!(noiseMultiplier > 0) || !Number.isFinite(noiseMultiplier)) throw new FedtlError('BAD_CONFIG', `noise multiplier must be a finite number > 0, got ${noiseMultiplier}`);
}

/** RDP at integer order α of one step of the sampled Gaussian mechanism. */
export function rdpSampledGaussian(q: number, noiseMultiplier: number, order: number): number {
  checkMechanism(q, noiseMultiplier);
  if (!Number.isInteger(order) || order < 2) throw new FedtlError('BAD_CONFIG', `RDP orders must be integers >= 2, got ${order}`);
  if (q === 0) return 0;
  const z2 = noiseMultiplier * noiseMultiplier;
  if (q === 1) return order / (2 * z2);
  let logA = -Infinity;
  const logQ = Math.log(q);
  const log1q = Math.log1p(-q);
  for (let k = 0; k <= order; k++) {
    logA = logAdd(logA, logBinomial(order, k) + k * logQ + (order - k) * log1q + (k * k - k) / (2 * z2));
  }
  return logA / (order - 1);
}

/** RDP per order of `steps` compositions. */
export function rdpCurve(q: number, noiseMultiplier: number, steps: number, orders: readonly number[] = DEFAULT_ORDERS): number[] {
  return orders.map((a) => steps * rdpSampledGaussian(q, noiseMultiplier, a));
}

/** (ε, best order) from an RDP curve at δ. */
export function epsilonFromRdp(rdp: readonly number[], delta: number, orders: readonly number[] = DEFAULT_ORDERS, conversion: Conversion = 'balle2020'): { epsilon: number; order: number } {
  if (!(delta > 0 && delta < 1)) throw new FedtlError('BAD_CONFIG', `δ must be in (0, 1), got ${delta}`);
  let best = { epsilon: Infinity, order: orders[0] ?? 2 };
  orders.forEach((a, i) => {
    const r = rdp[i] as number;
    const eps =
      conversion === 'classic' ? r - Math.log(delta) / (a - 1) : r + Math.log((a - 1) / a) - (Math.log(delta) + Math.log(a)) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: Math.max(0, eps), order: a };
  });
  return best;
}

/** ε after `steps` rounds of the sampled Gaussian at (q, z), for δ. */
export function epsilonFor(q: number, noiseMultiplier: number, steps: number, delta: number, options: { orders?: readonly number[]; conversion?: Conversion } = {}): number {
  const orders = options.orders ?? DEFAULT_ORDERS;
  return epsilonFromRdp(rdpCurve(q, noiseMultiplier, steps, orders), delta, orders, options.conversion).epsilon;
}

/**
 * The smallest noise multiplier whose ε after `steps` rounds is at most `targetEpsilon`
 * (bisection to a relative 1e-4), for `--dp-epsilon` without `--dp-noise-multiplier`.
 */
export function noiseMultiplierFor(targetEpsilon: number, q: number, steps: number, delta: number): number {
  if (!(targetEpsilon > 0) || !Number.isFinite(targetEpsilon)) throw new FedtlError('BAD_CONFIG', `target ε must be a finite number > 0, got ${targetEpsilon}`);
  if (!Number.isSafeInteger(steps) || steps < 1) throw new FedtlError('BAD_CONFIG', `rounds must be an integer >= 1, got ${steps}`);
  let lo = 1e-3;
  let hi = 1;
  while (epsilonFor(q, hi, steps, delta) > targetEpsilon) {
    hi *= 2;
    if (hi > 1e6) throw new FedtlError('BAD_CONFIG', `no noise multiplier reaches ε = ${targetEpsilon} in ${steps} rounds at q = ${q}`);
  }
  while (hi - lo > 1e-4 * hi) {
    const mid = (lo + hi) / 2;
    if (epsilonFor(q, mid, steps, delta) > targetEpsilon) lo = mid;
    else hi = mid;
  }
  return hi;
}
