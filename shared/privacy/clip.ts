/**
 * Client-level clipping and Gaussian noise of DP-FedAvg (McMahan, Ramage, Talwar & Zhang,
 * "Learning Differentially Private Recurrent Language Models", ICLR 2018): each client's delta is
 * scaled down to L2 norm at most S, which bounds one client's influence on the sum (the
 * sensitivity), and Gaussian noise of standard deviation z·S is added to the sum.
 *
 * Noise is drawn from the system CSPRNG (`crypto.randomBytes`) by Box–Muller in float64: noise
 * the coordinator could predict would be no noise. (Floating-point Gaussian samplers have known
 * subtle leaks at the lowest bits, Mironov, CCS 2012; the added float32 rounding of the result
 * is the usual practical mitigation and is what happens here.)
 */
import { randomBytes } from 'node:crypto';
import { FedtlError } from '../core/errors.ts';

/** L2 norm in float64. */
export function l2Norm(x: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i] as number) * (x[i] as number);
  return Math.sqrt(s);
}

/**
 * Scales `delta` in place to norm ≤ S: x·min(1, S/‖x‖). Returns the norm before clipping (used by
 * adaptive clipping) and whether it was clipped.
 */
export function clipToNorm(delta: Float32Array, clipNorm: number): { norm: number; clipped: boolean } {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new FedtlError('BAD_CONFIG', `DP clipping norm S must be a finite number > 0, got ${clipNorm}`);
  const norm = l2Norm(delta);
  if (!Number.isFinite(norm)) throw new FedtlError('NON_FINITE', 'cannot clip a delta with non-finite values');
  if (norm <= clipNorm) return { norm, clipped: false };
  // Shrink slightly below S so float32 rounding cannot push the result above S.
  const factor = (clipNorm / norm) * (1 - 1e-6);
  for (let i = 0; i < delta.length; i++) delta[i] = (delta[i] as number) * factor;
  return { norm, clipped: true };
}

/** A source of standard normal draws; defaults to the CSPRNG. */
export type NormalSource = () => number;

/** Standard normal draws from `crypto.randomBytes`, buffered (Box–Muller on 53-bit uniforms). */
export function cryptoNormalSource(): NormalSource {
  let buf = new Uint32Array(0);
  let pos = 0;
  let spare: number | null = null;
  const uniform = (): number => {
    if (pos + 2 > buf.length) {
      buf = new Uint32Array(new Uint8Array(randomBytes(64 * 1024)).buffer);
      pos = 0;
    }
    const a = (buf[pos++] as number) >>> 5;
    const b = (buf[pos++] as number) >>> 6;
    return (a * 67108864 + b + 0.5) / 9007199254740992; // (0, 1)
  };
  return () => {
    if (spare !== null) {
      const s = spare;
      spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(uniform()));
    const theta = 2 * Math.PI * uniform();
    spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/** Adds N(0, σ²) to every element of `x`, in place. */
export function addGaussianNoise(x: Float32Array | Float64Array, stddev: number, normal: NormalSource = cryptoNormalSource()): void {
  if (!(stddev >= 0) || !Number.isFinite(stddev)) throw new FedtlError('BAD_CONFIG', `noise standard deviation must be finite and >= 0, got ${stddev}`);
  if (stddev === 0) return;
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + stddev * normal();
}
