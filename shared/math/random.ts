/**
 * A small seeded pseudo-random number generator for reproducible simulations.
 *
 * The core is xoshiro128** (Blackman & Vigna, "Scrambled Linear Pseudorandom Number Generators",
 * ACM TOMS 2021): 128 bits of state, period 2^128 − 1, passes BigCrush, and needs only 32-bit
 * integer operations, which JavaScript does exactly via `Math.imul` and `>>>`. The state is filled
 * from the seed with splitmix32 so that similar seeds (0, 1, 2…) still give unrelated streams.
 *
 * Not cryptographic: never use it for keys, nonces or secure-aggregation masks.
 *
 * @example
 * ```ts
 * const rng = createRandom(42);
 * const clientRng = rng.fork('client-7'); // independent of how much `rng` has been used
 * const p = clientRng.dirichlet([0.5, 0.5, 0.5]);
 * ```
 */
import { FedtlError } from '../core/errors.ts';

/** A seed: a safe integer (any sign) or a string, hashed to 32 bits. */
export type RandomSeed = number | string;

/** Anything indexable and writable by position: plain arrays and every typed array. */
export interface MutableArrayLike<T> {
  readonly length: number;
  [index: number]: T;
}

const TWO_POW_32 = 4294967296;

/** FNV-1a over UTF-16 code units: cheap, deterministic and good enough to turn labels into seeds. */
function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The murmur3 32-bit finalizer: an invertible mix, so distinct inputs stay distinct. */
function mix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function seedToUint32(seed: RandomSeed): number {
  if (typeof seed === 'string') return hashString(seed);
  if (!Number.isSafeInteger(seed)) {
    throw new FedtlError('BAD_CONFIG', `Random seed must be a safe integer or a string, got ${String(seed)}.`);
  }
  // Fold the high bits in so that seeds differing only above bit 32 still differ.
  const low = seed >>> 0;
  const high = Math.floor(seed / TWO_POW_32) >>> 0;
  return (low ^ mix32(high ^ 0x9e3779b9)) >>> 0;
}

/**
 * A seeded generator. All methods advance this stream's state except {@link Random.fork}, which
 * depends only on the seed this stream was created with and the label.
 */
export class Random {
  /** The 32-bit seed this stream was created from; `fork` derives child seeds from it. */
  readonly seed: number;
  readonly #state = new Uint32Array(4);
  /** The second value from the polar method, kept so normals cost one pair per two draws. */
  #spareNormal: number | null = null;

  constructor(seed: RandomSeed) {
    this.seed = seedToUint32(seed);
    // splitmix32 fills the state; it never yields four zeros (the one forbidden xoshiro state)
    // in practice, but guard anyway because a zero state would emit zeros forever.
    let s = this.seed;
    for (let i = 0; i < 4; i++) {
      s = (s + 0x9e3779b9) >>> 0;
      this.#state[i] = mix32(s);
    }
    if (this.#state.every((word) => word === 0)) this.#state[0] = 1;
  }

  /** The next raw 32-bit unsigned integer (xoshiro128**). */
  nextUint32(): number {
    const s = this.#state;
    const s0 = s[0]!;
    const s1 = s[1]!;
    const s2 = s[2]!;
    const s3 = s[3]!;
    const product = Math.imul(s1, 5);
    const result = Math.imul((product << 7) | (product >>> 25), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    const n2 = (s2 ^ s0) >>> 0;
    const n3 = (s3 ^ s1) >>> 0;
    const n1 = (s1 ^ n2) >>> 0;
    const n0 = (s0 ^ n3) >>> 0;
    s[0] = n0;
    s[1] = n1;
    s[2] = (n2 ^ t) >>> 0;
    s[3] = ((n3 << 11) | (n3 >>> 21)) >>> 0;
    return result;
  }

  /** A uniform float in [0, 1) with 53 random bits (two 32-bit draws). */
  nextFloat(): number {
    // 27 + 26 bits, the same construction as the reference `genrand_res53`.
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /**
   * A uniform integer in [0, n), without modulo bias (rejection on the incomplete last block).
   *
   * @param n - exclusive upper bound, an integer in [1, 2^32].
   */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n < 1 || n > TWO_POW_32) {
      throw new FedtlError('BAD_CONFIG', `nextInt(n) needs an integer n in [1, 2^32], got ${String(n)}.`);
    }
    const limit = TWO_POW_32 - (TWO_POW_32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** A standard normal draw, N(0, 1), by Marsaglia's polar method. */
  normal(): number {
    if (this.#spareNormal !== null) {
      const spare = this.#spareNormal;
      this.#spareNormal = null;
      return spare;
    }
    for (;;) {
      const u = 2 * this.nextFloat() - 1;
      const v = 2 * this.nextFloat() - 1;
      const s = u * u + v * v;
      if (s > 0 && s < 1) {
        const factor = Math.sqrt((-2 * Math.log(s)) / s);
        this.#spareNormal = v * factor;
        return u * factor;
      }
    }
  }

  /**
   * The natural log of a Gamma(shape, 1) draw.
   *
   * Working in log space keeps tiny shapes usable: for shape 0.01 the boost `U^(1/shape)` below
   * underflows to exactly 0 in double precision most of the time, which would make a Dirichlet
   * draw divide 0 by 0. Its logarithm, `log(U) / shape`, is an ordinary finite number.
   */
  logGamma(shape: number): number {
    assertPositive(shape, 'shape', 'gamma');
    if (shape < 1) {
      // Boost (Marsaglia & Tsang 2000, section 6): if X ~ Gamma(a + 1) and U ~ U(0, 1), then
      // X · U^(1/a) ~ Gamma(a). 1 − nextFloat() lies in (0, 1], so its log is finite.
      return Math.log(this.#marsagliaTsang(shape + 1)) + Math.log(1 - this.nextFloat()) / shape;
    }
    return Math.log(this.#marsagliaTsang(shape));
  }

  /** Marsaglia–Tsang squeeze-and-reject for shape ≥ 1; accepts about 95 % of the time or better. */
  #marsagliaTsang(shape: number): number {
    const d = shape - 1 / 3;
    const c = 1 / Math.sqrt(9 * d);
    for (;;) {
      let x: number;
      let v: number;
      do {
        x = this.normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const u = this.nextFloat();
      const x2 = x * x;
      // Cheap squeeze first, then the exact log test.
      if (u < 1 - 0.0331 * x2 * x2) return d * v;
      if (u > 0 && Math.log(u) < 0.5 * x2 + d * (1 - v + Math.log(v))) return d * v;
    }
  }

  /**
   * A Gamma(shape, scale) draw by Marsaglia & Tsang, "A Simple Method for Generating Gamma
   * Variables" (ACM TOMS 26(3), 2000), with their boost for shape < 1.
   *
   * @param shape - k > 0.
   * @param scale - θ > 0; the mean is k·θ. @default 1
   */
  gamma(shape: number, scale = 1): number {
    assertPositive(scale, 'scale', 'gamma');
    return Math.exp(this.logGamma(shape)) * scale;
  }

  /**
   * A draw from the Dirichlet distribution Dir(alpha): independent Gamma(alpha_i) draws,
   * normalised to sum to 1. Computed in log space (log-sum-exp), so very small concentrations
   * (α = 0.001) still give a valid, highly concentrated probability vector instead of NaN.
   *
   * @param alpha - concentration parameters, each > 0; at least one.
   * @returns a new Float64Array of the same length whose entries sum to 1.
   */
  dirichlet(alpha: ArrayLike<number>): Float64Array {
    if (alpha.length === 0) throw new FedtlError('BAD_CONFIG', 'dirichlet(alpha) needs at least one concentration.');
    const out = new Float64Array(alpha.length);
    let max = -Infinity;
    for (let i = 0; i < alpha.length; i++) {
      const a = alpha[i]!;
      assertPositive(a, `alpha[${i}]`, 'dirichlet');
      const logX = this.logGamma(a);
      out[i] = logX;
      if (logX > max) max = logX;
    }
    let sum = 0;
    for (let i = 0; i < out.length; i++) {
      const x = Math.exp(out[i]! - max);
      out[i] = x;
      sum += x;
    }
    for (let i = 0; i < out.length; i++) out[i] = out[i]! / sum;
    return out;
  }

  /**
   * Shuffles `array` in place with Fisher–Yates (Durstenfeld's variant): every permutation is
   * equally likely.
   *
   * @returns the same array, for chaining.
   */
  shuffle<A extends MutableArrayLike<unknown>>(array: A): A {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  /**
   * Draws `k` distinct integers from [0, n), uniformly, in random order.
   *
   * For k much smaller than n it rejects repeats against a Set (memory O(k), so picking 10 of
   * 10,000 clients does not allocate 10,000 slots); otherwise it runs a partial Fisher–Yates.
   *
   * @param k - how many to draw, 0 ≤ k ≤ n.
   * @param n - population size, a non-negative integer.
   */
  sample(k: number, n: number): Int32Array {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) {
      throw new FedtlError('BAD_CONFIG', `sample(k, n) needs an integer population n ≥ 0, got ${String(n)}.`);
    }
    if (!Number.isInteger(k) || k < 0 || k > n) {
      throw new FedtlError('BAD_CONFIG', `sample(k, n) needs an integer k in [0, n=${n}], got ${String(k)}.`);
    }
    const out = new Int32Array(k);
    if (k * 4 <= n) {
      // At most a quarter of the population is taken, so each draw is new with probability ≥ 3/4.
      const seen = new Set<number>();
      let filled = 0;
      while (filled < k) {
        const candidate = this.nextInt(n);
        if (seen.has(candidate)) continue;
        seen.add(candidate);
        out[filled++] = candidate;
      }
      return out;
    }
    const pool = new Int32Array(n);
    for (let i = 0; i < n; i++) pool[i] = i;
    for (let i = 0; i < k; i++) {
      const j = i + this.nextInt(n - i);
      const tmp = pool[i]!;
      pool[i] = pool[j]!;
      pool[j] = tmp;
      out[i] = pool[i]!;
    }
    return out;
  }

  /**
   * Derives an independent child stream from this stream's seed and a label.
   *
   * The child depends only on (seed, label), not on how many numbers this stream has produced,
   * so adding a draw in one component never changes another component's randomness. Use distinct
   * labels for distinct purposes (`'partition'`, `'client-3'`, `'dropout'`). Forks nest:
   * `rng.fork('a').fork('b')` differs from `rng.fork('b').fork('a')`.
   */
  fork(label: string | number): Random {
    const labelHash = hashString(String(label));
    return new Random(mix32(this.seed ^ mix32(labelHash + 0x6a09e667)));
  }
}

function assertPositive(value: number, name: string, operation: string): void {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new FedtlError('BAD_CONFIG', `Argument '${name}' passed to '${operation}' must be a finite number > 0, got ${String(value)}.`);
  }
}

/** Creates a seeded generator; same seed ⇒ same sequence on every platform. */
export function createRandom(seed: RandomSeed): Random {
  return new Random(seed);
}
