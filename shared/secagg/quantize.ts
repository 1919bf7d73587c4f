/**
 * Fixed-point quantization of float deltas into the integer ring Z_{2^b} that secure aggregation
 * sums in (Bonawitz et al., CCS 2017, §3: inputs are vectors over Z_R so that masks cancel
 * exactly under modular addition).
 *
 * ## Encoding
 * Each client clamps every coordinate to the clipping range [−c, c], multiplies by its integer
 * weight w ∈ [1, W] and by the scale s, rounds to the nearest integer and stores it in two's
 * complement modulo 2^b. The weight itself travels as one extra exact coordinate, so the sum of
 * weights (the FedAvg denominator) is also only known in aggregate.
 *
 * ## Why the sum of K clients cannot overflow
 * One client's coordinate is round(w·v·s + d) with |v| ≤ c and a dither |d| ≤ ½ (0 without
 * dither), an integer of magnitude at most W·c·s + 1. We choose s = (2^{b−1} − 1 − K) / (K·W·c),
 * so that the sum of K such integers has magnitude at most K·W·c·s + K = 2^{b−1} − 1. Every true sum then lies in
 * [−(2^{b−1} − 1), 2^{b−1} − 1], an interval of fewer than 2^b integers, and the two's-complement
 * reading of the ring sum is the true integer sum, exactly. The weight coordinate sums to at most
 * K·W, which we also require to be ≤ 2^{b−1} − 1.
 *
 * ## Error bound
 * Deterministic rounding errs by at most ½ per client and coordinate, so the decoded weighted sum
 * differs from Σ w_k·clamp(x_k) by at most K/(2s) per coordinate, and the weighted mean by at most
 * K/(2s·Σw). With subtractive dither (used under distributed DP, see shared/privacy) the error is
 * instead uniform on [−½, ½) per client, independent of the input (Schuchman, IEEE Trans. Comm.
 * 1964), with the same worst-case bound.
 */
import { FedtlError } from '../core/errors.ts';

/** Options of {@link ringCodec}. */
export interface RingOptions {
  /** Bit width b of the ring Z_{2^b}; an integer in [8, 32]. @default 32 */
  readonly bits?: number;
  /** Clipping range c: each coordinate is clamped to [−c, c] before quantizing; > 0. @default 1 */
  readonly clipRange?: number;
  /** Largest number K of inputs ever summed in one round (the selected clients); integer ≥ 1. */
  readonly maxClients: number;
  /** Largest integer weight W a client may apply (1 = unweighted mean); integer ≥ 1. @default 1 */
  readonly maxWeight?: number;
  /**
   * Smallest acceptable number of quantization levels per client over [−c, c], i.e. 2·c·s. Below
   * this the ring is "too small for K": the rounding error would swamp the deltas. @default 256
   */
  readonly minLevels?: number;
}

/** A fully resolved codec: every option with its value, plus the derived scale. */
export interface RingCodec {
  readonly bits: number;
  readonly clipRange: number;
  readonly maxClients: number;
  readonly maxWeight: number;
  /** Fixed-point scale s: a float x becomes round(x·s). */
  readonly scale: number;
  /** 2^b − 1, the mask that reduces modulo 2^b. */
  readonly mask: number;
  /** Worst-case |decoded − exact| of one coordinate of a sum of K weighted inputs: K/(2s). */
  readonly sumErrorBound: number;
}

export const DEFAULT_RING_BITS = 32;
export const DEFAULT_CLIP_RANGE = 1;
export const DEFAULT_MIN_LEVELS = 256;

/**
 * Validates the options and derives the scale. Throws `BAD_CONFIG` with what to change when the
 * ring cannot hold the sum of K inputs at the requested resolution.
 */
export function ringCodec(options: RingOptions): RingCodec {
  const bits = options.bits ?? DEFAULT_RING_BITS;
  const clipRange = options.clipRange ?? DEFAULT_CLIP_RANGE;
  const maxWeight = options.maxWeight ?? 1;
  const minLevels = options.minLevels ?? DEFAULT_MIN_LEVELS;
  const { maxClients } = options;
  if (!Number.isInteger(bits) || bits < 8 || bits > 32) {
    throw new FedtlError('BAD_CONFIG', `secure aggregation ring bits must be an integer in [8, 32], got ${bits}`);
  }
  if (!(clipRange > 0) || !Number.isFinite(clipRange)) {
    throw new FedtlError('BAD_CONFIG', `secure aggregation clip range must be a finite number > 0, got ${clipRange}`);
  }
  if (!Number.isSafeInteger(maxClients) || maxClients < 1) {
    throw new FedtlError('BAD_CONFIG', `secure aggregation needs an integer number of clients >= 1, got ${maxClients}`);
  }
  if (!Number.isSafeInteger(maxWeight) || maxWeight < 1) {
    throw new FedtlError('BAD_CONFIG', `secure aggregation max weight must be an integer >= 1, got ${maxWeight}`);
  }
  const half = 2 ** (bits - 1) - 1;
  const scale = (half - maxClients) / (maxClients * maxWeight * clipRange);
  if (maxClients * maxWeight > half || !(2 * clipRange * scale >= minLevels)) {
    const needed = Math.ceil(Math.log2(maxClients * maxWeight * (minLevels / 2) + maxClients + 1)) + 1;
    throw new FedtlError(
      'BAD_CONFIG',
      `a ring of 2^${bits} is too small for ${maxClients} clients with weight up to ${maxWeight}: each client would get ` +
        `${Math.max(0, Math.floor(2 * clipRange * scale))} levels, fewer than ${minLevels}. Use at least ${needed} bits, fewer clients per round or a smaller max weight`,
    );
  }
  return {
    bits,
    clipRange,
    maxClients,
    maxWeight,
    scale,
    mask: bits === 32 ? 0xffffffff : 2 ** bits - 1,
    sumErrorBound: maxClients / (2 * scale),
  };
}

/**
 * Encodes `w·clamp(x)` into a ring vector of length x.length + 1 (last slot: the weight).
 *
 * @param dither - optional subtractive dither in [−½, ½) per coordinate (same length as x); the
 *   decoder must subtract the sum of the dithers ({@link decodeSum}).
 */
export function quantize(codec: RingCodec, x: Float32Array, weight: number, dither?: Float64Array): Uint32Array {
  if (!Number.isSafeInteger(weight) || weight < 1 || weight > codec.maxWeight) {
    throw new FedtlError('BAD_CONFIG', `quantize: weight must be an integer in [1, ${codec.maxWeight}], got ${weight}`);
  }
  const n = x.length;
  const out = new Uint32Array(n + 1);
  const c = codec.clipRange;
  const ws = weight * codec.scale;
  const { mask } = codec;
  for (let i = 0; i < n; i++) {
    let v = x[i] as number;
    if (v > c) v = c;
    else if (v < -c) v = -c;
    else if (v !== v) nonFinite(i); // NaN fails every comparison
    const d = dither === undefined ? 0 : (dither[i] as number);
    out[i] = Math.round(v * ws + d) & mask;
  }
  out[n] = weight & mask;
  return out;
}

function nonFinite(index: number): never {
  throw new FedtlError('NON_FINITE', `quantize: x[${index}] is NaN; every value must be finite`);
}

/** Adds `b` into `a` modulo 2^bits, in place. */
export function addInto(codec: RingCodec, a: Uint32Array, b: Uint32Array): void {
  if (a.length !== b.length) throw new FedtlError('BAD_SHAPE', `ring vectors differ in length: ${a.length} vs ${b.length}`);
  const { mask } = codec;
  for (let i = 0; i < a.length; i++) a[i] = ((a[i] as number) + (b[i] as number)) & mask;
}

/** Subtracts `b` from `a` modulo 2^bits, in place. */
export function subtractInto(codec: RingCodec, a: Uint32Array, b: Uint32Array): void {
  if (a.length !== b.length) throw new FedtlError('BAD_SHAPE', `ring vectors differ in length: ${a.length} vs ${b.length}`);
  const { mask } = codec;
  for (let i = 0; i < a.length; i++) a[i] = ((a[i] as number) - (b[i] as number)) & mask;
}

/** The decoded sum: Σ w_k·x_k (float64), Σ w_k, and the sums of any exact extra slots. */
export interface DecodedSum {
  readonly weightedSum: Float64Array;
  readonly totalWeight: number;
  readonly extras: readonly number[];
}

/**
 * Reads an unmasked ring sum back as floats: two's complement, divided by the scale. The caller
 * divides by `totalWeight` for the mean. Layout: `dataLength` data slots, the weight, extras.
 *
 * @param ditherSum - Σ of the clients' dithers per data coordinate, if dither was used.
 */
export function decodeSum(codec: RingCodec, sum: Uint32Array, dataLength: number, ditherSum?: Float64Array): DecodedSum {
  if (dataLength < 1 || sum.length < dataLength + 1) throw new FedtlError('BAD_SHAPE', `decodeSum: ring vector of ${sum.length} cannot hold ${dataLength} data slots and a weight`);
  const mod = 2 ** codec.bits;
  const half = mod / 2;
  const signed = (u: number) => (u >= half ? u - mod : u);
  const out = new Float64Array(dataLength);
  const inv = 1 / codec.scale;
  for (let i = 0; i < dataLength; i++) {
    out[i] = (signed(sum[i] as number) - (ditherSum === undefined ? 0 : (ditherSum[i] as number))) * inv;
  }
  const extras: number[] = [];
  for (let i = dataLength + 1; i < sum.length; i++) extras.push(signed(sum[i] as number));
  return { weightedSum: out, totalWeight: signed(sum[dataLength] as number), extras };
}
